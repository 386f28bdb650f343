//! SIP: phones and trunks call into rooms (`sip:ROOM@host`, with a token in
//! the `X-MediaMesh-Token` header naming the room and the peer, or digest
//! credentials of a configured account). The protocol is
//! `mediamesh_sip::Endpoint` (sans-IO); this thread owns its UDP socket, its
//! TCP (and TLS) connections (`transport.rs`) and one RTP socket per call,
//! whose media task (`call.rs`) bridges the phone to the room as an ingest
//! that hears the room.

mod call;
pub mod http;
pub mod transport;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediamesh_audio::phone::PhoneCodec;
use mediamesh_sip::auth::Algorithm;
use mediamesh_sip::endpoint::{CallHandle, EndReason};
use mediamesh_sip::sdp::{
    self, AudioConfig, Codec as SdpCodec, Direction, LocalMedia, Negotiated, SessionDescription,
};
use mediamesh_sip::{
    DialOptions, DigestServer, Endpoint, EndpointConfig, EndpointEvent, Peer, Transport, Uri,
};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::api::unix_now;
use crate::token::{self, TokenKind};
use crate::worker::{Caller, Command, Listen};
use call::Control;
use transport::{StreamEvent, StreamInput, Streams};

/// The header that carries a call's token.
pub const TOKEN_HEADER: &str = "X-MediaMesh-Token";

/// The digest realm of our challenges.
pub const REALM: &str = "mediamesh";

#[derive(Clone)]
pub struct SipState {
    pub secret: String,
    /// The app of calls authenticated by digest.
    pub app_id: String,
    /// Digest accounts: user name to password.
    pub accounts: Arc<HashMap<String, String>>,
    pub worker: mpsc::Sender<Command>,
}

/// The sockets SIP is served on.
pub struct SipSockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
    pub tls: Option<(TcpListener, TlsAcceptor)>,
    /// Dial-out over TLS.
    pub connector: TlsConnector,
}

/// What the HTTP API asks of the SIP thread.
pub enum SipRequest {
    Dial(Box<Dial>),
    List {
        reply: oneshot::Sender<Vec<http::CallView>>,
    },
    /// `reply`: whether there was such a call.
    Hangup {
        call: u64,
        reply: oneshot::Sender<bool>,
    },
}

struct LiveCall {
    info: http::CallInfo,
    /// Its media task and ingest, once media flows.
    media: Option<Media>,
    /// A call we dialled, until it is answered: its RTP socket and offer.
    dialled: Option<Dialled>,
    /// A call we dialled: where its requests go.
    hop: Option<Peer>,
    /// Why that hop could not be reached (a connect or TLS error).
    unreachable: Option<String>,
}

/// How long `GET /api/sip/calls` shows a call that ended (a dial-out that
/// failed says why), and how many at most.
const ENDED_KEPT: Duration = Duration::from_secs(60);
const ENDED_MAX: usize = 64;

/// Calls that ended lately.
#[derive(Default)]
struct Ended {
    views: VecDeque<(Instant, http::CallView)>,
}

impl Ended {
    fn push(&mut self, c: &LiveCall, reason: EndReason, now: Instant) {
        let reason = match (reason, &c.unreachable) {
            (EndReason::RemoteHangup, _) => "the remote side hung up".to_string(),
            (EndReason::LocalHangup, _) => "hung up".to_string(),
            (EndReason::Cancelled, _) => "cancelled by the caller".to_string(),
            (EndReason::Rejected(s), _) => format!("rejected with {s}"),
            (EndReason::Timeout, _) => "no response".to_string(),
            (EndReason::Unreachable, Some(e)) => format!("unreachable: {e}"),
            (EndReason::Unreachable, None) => "unreachable".to_string(),
            (EndReason::AckTimeout, _) => "no ACK for our answer".to_string(),
            (EndReason::SessionExpired, _) => "session expired (no refresh)".to_string(),
            (EndReason::Failed(s), _) => format!("an in-dialog request failed with {s}"),
        };
        let mut view = c.view();
        view.state = "ended";
        view.reason = Some(reason);
        self.views.push_back((now, view));
        self.trim(now);
    }

    fn trim(&mut self, now: Instant) {
        while self.views.len() > ENDED_MAX
            || self
                .views
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > ENDED_KEPT)
        {
            self.views.pop_front();
        }
    }
}

impl LiveCall {
    /// As the calls API shows it: ringing until a dialled call is answered.
    fn view(&self) -> http::CallView {
        let state = if self.dialled.is_some() {
            "ringing"
        } else {
            "answered"
        };
        http::CallView {
            info: self.info.clone(),
            state,
            reason: None,
        }
    }
}

/// A call's media: the ingest in the room and the task bridging it.
struct Media {
    ingest: u64,
    stop: oneshot::Sender<()>,
    control: mpsc::Sender<Control>,
}

struct Dialled {
    /// `None` once early media took it.
    rtp: Option<UdpSocket>,
    offer: SessionDescription,
    caller: Caller,
    peer: String,
}

/// `POST /api/sip/dial`: call `target` (through `next_hop`) and bring the
/// callee into the room as `caller.peer` when it answers.
pub struct Dial {
    pub caller: Caller,
    pub target: Uri,
    pub next_hop: NextHop,
    pub credentials: Option<(String, String)>,
    pub reply: oneshot::Sender<Result<u64, String>>,
}

/// Where requests to a URI go, before its host is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopSpec {
    /// An IP address or a DNS name.
    pub host: String,
    pub port: u16,
    pub transport: Transport,
}

/// Where requests to `uri` go: its host and port, over the transport its
/// `transport` parameter names (UDP by default; TLS for `sips:`). The
/// default port is 5061 over TLS, 5060 otherwise.
pub fn hop_spec(uri: &Uri) -> Result<HopSpec, String> {
    let sips = uri.scheme == mediamesh_sip::uri::Scheme::Sips;
    let transport = match uri.params.get("transport").flatten() {
        _ if sips => Transport::Tls,
        None => Transport::Udp,
        Some(t) if t.eq_ignore_ascii_case("udp") => Transport::Udp,
        Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
        Some(t) if t.eq_ignore_ascii_case("tls") => Transport::Tls,
        Some(t) => {
            return Err(format!(
                "{uri}: transport {t} is not dialled (udp, tcp or tls)"
            ))
        }
    };
    let host = uri.host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{uri}: no host"));
    }
    let default = if transport == Transport::Tls {
        5061
    } else {
        5060
    };
    Ok(HopSpec {
        host: host.to_string(),
        port: uri.port.unwrap_or(default),
        transport,
    })
}

/// A resolved next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub peer: Peer,
    /// Over TLS: the name the hop's certificate must carry (the URI's host,
    /// a DNS name or an IP address).
    pub tls_name: Option<String>,
}

/// How long resolving a next hop's host name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves `uri`'s next hop: an IP host as it is, a name through the
/// system resolver (A/AAAA records and /etc/hosts; RFC 3263's NAPTR and SRV
/// lookups are not made, so a trunk is named with its port), preferring an
/// address of the family our SIP socket has.
pub async fn next_hop_of(uri: &Uri, local: IpAddr) -> Result<NextHop, String> {
    let spec = hop_spec(uri)?;
    let addr = match spec.host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, spec.port),
        Err(_) => {
            let found = tokio::time::timeout(
                RESOLVE_TIMEOUT,
                tokio::net::lookup_host((spec.host.as_str(), spec.port)),
            )
            .await
            .map_err(|_| format!("{uri}: resolving {} timed out", spec.host))?
            .map_err(|e| format!("{uri}: cannot resolve {}: {e}", spec.host))?
            .collect::<Vec<_>>();
            found
                .iter()
                .find(|a| a.is_ipv4() == local.is_ipv4())
                .or(found.first())
                .copied()
                .ok_or_else(|| format!("{uri}: {} has no address", spec.host))?
        }
    };
    Ok(NextHop {
        peer: Peer {
            addr,
            transport: spec.transport,
        },
        tls_name: (spec.transport == Transport::Tls).then_some(spec.host),
    })
}

fn phone_codec(c: SdpCodec) -> PhoneCodec {
    match c {
        SdpCodec::Opus => PhoneCodec::Opus,
        SdpCodec::Pcmu => PhoneCodec::Pcmu,
        SdpCodec::Pcma => PhoneCodec::Pcma,
        SdpCodec::G722 => PhoneCodec::G722,
    }
}

/// Serves SIP on `sockets` (and dial requests from the API) until the
/// runtime ends.
pub async fn serve(sockets: SipSockets, state: SipState, mut requests: mpsc::Receiver<SipRequest>) {
    let SipSockets {
        udp,
        tcp,
        tls,
        connector,
    } = sockets;
    let local = match udp.local_addr() {
        Ok(a) => a,
        Err(e) => return tracing::error!("SIP socket: {e}"),
    };
    let tls_port = tls
        .as_ref()
        .and_then(|(l, _)| l.local_addr().ok())
        .map(|a| a.port());
    let cfg = EndpointConfig {
        host: local.ip().to_string(),
        port: local.port(),
        tls_port,
        user_agent: "MediaMesh".into(),
        token_header: Some(TOKEN_HEADER.into()),
        ..Default::default()
    };
    let mut ep = Endpoint::new(cfg, rand::random());
    if !state.accounts.is_empty() {
        let secret: [u8; 32] = rand::random();
        let digest = DigestServer::new(REALM, &secret, Instant::now())
            // MD5 only: phones on libre (baresip) give up on a call as soon
            // as any challenge names SHA-256, and MD5 is what all support.
            .with_algorithms(&[Algorithm::Md5]);
        ep = ep.with_digest(digest);
    }
    let (stream_tx, mut stream_rx) = mpsc::channel::<StreamEvent>(256);
    let mut streams = Streams::new(stream_tx, connector);
    streams.accept(tcp, None);
    if let Some((l, acceptor)) = tls {
        streams.accept(l, Some(acceptor));
    }
    let mut calls: HashMap<CallHandle, LiveCall> = HashMap::new();
    let mut ended = Ended::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let wait = ep
            .poll_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            r = udp.recv_from(&mut buf) => {
                match r {
                    Ok((n, from)) => ep.handle_datagram(Peer::udp(from), &buf[..n], Instant::now()),
                    Err(e) => tracing::debug!("SIP recv: {e}"),
                }
            }
            Some(ev) = stream_rx.recv() => {
                match streams.on_event(ev) {
                    Some(StreamInput::Message(from, msg)) => ep.handle_message(from, msg, Instant::now()),
                    Some(StreamInput::Unreachable(to, error)) => {
                        for c in calls.values_mut().filter(|c| c.hop == Some(to)) {
                            c.unreachable = Some(error.clone());
                        }
                        ep.transport_error(to, Instant::now());
                    }
                    None => {}
                }
            }
            _ = tokio::time::sleep(wait) => ep.handle_timeout(Instant::now()),
            Some(r) = requests.recv() => match r {
                SipRequest::Dial(d) => {
                    if let Some(name) = d.next_hop.tls_name.clone() {
                        streams.set_tls_name(d.next_hop.peer, name);
                    }
                    dial(&mut ep, &mut calls, local.ip(), tls_port.is_some(), *d).await
                }
                SipRequest::List { reply } => {
                    ended.trim(Instant::now());
                    let mut v: Vec<_> = calls.values().map(LiveCall::view).collect();
                    v.extend(ended.views.iter().map(|(_, c)| c.clone()));
                    v.sort_by_key(|c| c.info.call);
                    let _ = reply.send(v);
                }
                SipRequest::Hangup { call, reply } => {
                    let known = calls.contains_key(&CallHandle(call));
                    if known {
                        tracing::info!(call, "SIP call hung up by the API");
                        let _ = ep.hangup(CallHandle(call), Instant::now());
                    }
                    let _ = reply.send(known);
                }
            },
        }
        while let Some(event) = ep.poll_event() {
            if let EndpointEvent::Ended { call, reason } = &event {
                if let Some(c) = calls.get(call) {
                    ended.push(c, *reason, Instant::now());
                }
            }
            on_event(&mut ep, &mut calls, &state, local.ip(), event).await;
        }
        while let Some(t) = ep.poll_transmit() {
            let bytes = t.message.to_bytes();
            if t.to.transport == Transport::Udp {
                if let Err(e) = udp.send_to(&bytes, t.to.addr).await {
                    tracing::debug!(to = %t.to.addr, "SIP send: {e}");
                }
            } else {
                streams.send(t.to, bytes);
            }
        }
    }
}

async fn on_event(
    ep: &mut Endpoint,
    calls: &mut HashMap<CallHandle, LiveCall>,
    state: &SipState,
    ip: IpAddr,
    event: EndpointEvent,
) {
    let now = Instant::now();
    match event {
        EndpointEvent::IncomingCall {
            call,
            room,
            offer,
            token,
            source,
            from,
            ..
        } => {
            let refuse = |ep: &mut Endpoint, status: u16, why: &str| {
                tracing::warn!(%room, from = %source.addr, "SIP call refused ({status}): {why}");
                let _ = ep.reject(call, status, now);
            };
            let from_user = from.uri.user.clone();
            let caller = match token {
                Some(token) => match token::decode(&token, &state.secret, unix_now()) {
                    Ok(c) if c.kind == TokenKind::Sip && c.room == room => Caller {
                        app: c.sub,
                        room: c.room,
                        peer: c.peer.or(from_user),
                    },
                    Ok(_) => return refuse(ep, 403, "the token is not a sip token for this room"),
                    Err(e) => return refuse(ep, 403, &format!("bad token: {e}")),
                },
                None if !state.accounts.is_empty() => {
                    let accounts = state.accounts.clone();
                    match ep.authenticate(call, now, |u| accounts.get(u).cloned()) {
                        Ok(Some(user)) => Caller {
                            app: state.app_id.clone(),
                            room: room.clone(),
                            peer: Some(from_user.unwrap_or(user)),
                        },
                        Ok(None) => {
                            // Challenged (401 sent): the phone retries.
                            return tracing::debug!(%room, from = %source.addr, "SIP call challenged");
                        }
                        Err(e) => return refuse(ep, 500, &format!("digest: {e}")),
                    }
                }
                None => {
                    return refuse(
                        ep,
                        403,
                        "no X-MediaMesh-Token header (and no --sip-account to authenticate)",
                    )
                }
            };
            if room.is_empty() {
                return refuse(ep, 404, "no room in the Request-URI (sip:ROOM@host)");
            }
            let Some(offer) = offer else {
                return refuse(ep, 488, "an INVITE without SDP offer");
            };
            let peer = caller
                .peer
                .clone()
                .unwrap_or_else(|| format!("phone-{:06x}", rand::random::<u32>() & 0xff_ffff));
            let caller = Caller {
                peer: Some(peer.clone()),
                ..caller
            };
            let rtp = match UdpSocket::bind(SocketAddr::new(ip, 0)).await {
                Ok(s) => s,
                Err(e) => return refuse(ep, 500, &format!("no RTP port: {e}")),
            };
            let local = local_media(&rtp, ip);
            let (answer, neg) = match sdp::answer(&offer, &local, &AudioConfig::default()) {
                Ok(a) => a,
                Err(e) => return refuse(ep, 488, &format!("no common audio: {e}")),
            };
            let sends = offer.wants_audio();
            let info = http::CallInfo {
                call: call.0,
                room: caller.room.clone(),
                peer: peer.clone(),
                direction: "in",
                remote: format!("{} ({:?})", source.addr, source.transport),
            };
            let Some(media) = start_media(state, caller, peer.clone(), rtp, &neg, sends).await
            else {
                return refuse(ep, 503, "the room cannot take the call now");
            };
            let live = LiveCall {
                info,
                media: Some(media),
                dialled: None,
                hop: None,
                unreachable: None,
            };
            if let Err(e) = ep.accept(call, &answer, now) {
                tracing::warn!("SIP accept: {e}");
                end(state, live).await;
                return;
            }
            tracing::info!(%room, %peer, from = %source.addr, transport = ?source.transport, codec = ?neg.codec, "SIP call answered");
            calls.insert(call, live);
        }
        EndpointEvent::Ringing {
            call,
            early_media: Some(early),
        } => {
            // Early media (183): the callee's network plays announcements or
            // ringback; the room hears them from now on.
            let Some(c) = calls.get_mut(&call) else {
                return;
            };
            let Some(d) = c.dialled.as_mut() else {
                return;
            };
            let (Some(rtp), Ok(neg)) =
                (d.rtp.take(), sdp::negotiated_from_answer(&d.offer, &early))
            else {
                return;
            };
            tracing::info!(room = %d.caller.room, peer = %d.peer, codec = ?neg.codec, "SIP dial-out: early media");
            let (caller, peer) = (d.caller.clone(), d.peer.clone());
            match start_media(state, caller, peer, rtp, &neg, early.wants_audio()).await {
                Some(media) => c.media = Some(media),
                None => {
                    calls.remove(&call);
                    let _ = ep.hangup(call, now);
                }
            }
        }
        EndpointEvent::Answered { call, answer } => {
            let Some(c) = calls.get_mut(&call) else {
                return;
            };
            let Some(d) = c.dialled.take() else {
                return;
            };
            let neg = match answer
                .as_ref()
                .map(|a| sdp::negotiated_from_answer(&d.offer, a))
            {
                Some(Ok(n)) => n,
                other => {
                    tracing::warn!(?other, "SIP dial-out: no usable answer; hanging up");
                    if let Some(c) = calls.remove(&call) {
                        end(state, c).await;
                    }
                    let _ = ep.hangup(call, now);
                    return;
                }
            };
            let sends = answer.as_ref().is_some_and(|a| a.wants_audio());
            tracing::info!(room = %d.caller.room, peer = %d.peer, codec = ?neg.codec, "SIP dial-out answered");
            match d.rtp {
                // Early media runs already: the answer may move or hold it.
                None => {
                    if let Some(m) = &c.media {
                        let _ = m.control.try_send(Control {
                            remote: neg.remote_rtp,
                            send: sends,
                        });
                    }
                }
                Some(rtp) => match start_media(state, d.caller, d.peer, rtp, &neg, sends).await {
                    Some(media) => c.media = Some(media),
                    None => {
                        calls.remove(&call);
                        let _ = ep.hangup(call, now);
                    }
                },
            }
        }
        EndpointEvent::Ended { call, reason } => {
            if let Some(c) = calls.remove(&call) {
                tracing::info!(?reason, "SIP call ended");
                end(state, c).await;
            }
        }
        EndpointEvent::RemoteSdp { call, sdp, hold } => {
            // A re-INVITE or UPDATE (answered already with our SDP, its
            // direction mirrored): hold stops what we send, resume restarts
            // it, a new address moves it.
            tracing::info!(hold, "SIP re-offer");
            if let Some(m) = calls.get(&call).and_then(|c| c.media.as_ref()) {
                let _ = m.control.try_send(Control {
                    remote: sdp.audio_addr(),
                    send: !hold && sdp.wants_audio(),
                });
            }
        }
        other => tracing::debug!(?other, "SIP"),
    }
}

/// The call's peer joins the room (an ingest that hears the room) and its
/// media task starts; it sends to the phone when `send`. `None` when the
/// worker refuses.
async fn start_media(
    state: &SipState,
    caller: Caller,
    peer: String,
    rtp: UdpSocket,
    neg: &Negotiated,
    send: bool,
) -> Option<Media> {
    let (hear_tx, hear_rx) = mpsc::channel(256);
    let (tx, rx) = oneshot::channel();
    let (app, room) = (caller.app.clone(), caller.room.clone());
    state
        .worker
        .send(Command::IngestStart {
            caller,
            peer: peer.clone(),
            listen: Some(Listen {
                slots: call::SLOTS,
                tx: hear_tx,
            }),
            reply: tx,
        })
        .await
        .ok()?;
    let ingest = rx.await.ok()?.ok()?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let (control_tx, control_rx) = mpsc::channel(8);
    let media = call::CallMedia {
        ingest,
        socket: rtp,
        remote: neg.remote_rtp,
        send,
        codec: phone_codec(neg.codec),
        payload_type: neg.payload_type,
        dtmf_payload_type: neg.dtmf_payload_type,
        worker: state.worker.clone(),
        hears: hear_rx,
        control: control_rx,
        app,
        room,
        peer,
    };
    tokio::spawn(call::run(media, stop_rx));
    Some(Media {
        ingest,
        stop: stop_tx,
        control: control_tx,
    })
}

/// A call is over: its media task stops and its peer leaves the room.
async fn end(state: &SipState, c: LiveCall) {
    if let Some(m) = c.media {
        let _ = m.stop.send(());
        let _ = state
            .worker
            .send(Command::IngestStop { id: m.ingest })
            .await;
    }
}

/// Sends an INVITE with our offer; the callee joins when it answers (or
/// with its early media). Replies with the call's number.
async fn dial(
    ep: &mut Endpoint,
    calls: &mut HashMap<CallHandle, LiveCall>,
    ip: IpAddr,
    tls_listener: bool,
    d: Dial,
) {
    let r = async {
        let peer = d.caller.peer.clone().ok_or("the callee needs a peer name")?;
        let hop = d.next_hop.peer;
        if hop.transport == Transport::Tls && !tls_listener {
            // Our Contact must be reachable over TLS for the callee's
            // requests (its BYE).
            return Err("dialling over TLS needs this node's SIP TLS listener (--sip-tls-cert, --sip-tls-key)".to_string());
        }
        let rtp = UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(|e| format!("no RTP port: {e}"))?;
        let local = local_media(&rtp, ip);
        let offer = sdp::offer(&local, &AudioConfig::default());
        let opts = DialOptions {
            target: d.target.clone(),
            next_hop: hop,
            from_user: d.caller.room.clone(),
            from_display: Some("MediaMesh".into()),
            credentials: d.credentials,
            headers: Vec::new(),
        };
        let call = ep
            .dial(opts, &offer, Instant::now())
            .map_err(|e| e.to_string())?;
        tracing::info!(room = %d.caller.room, %peer, target = %d.target, next_hop = %hop.addr, transport = ?hop.transport, "SIP dial-out");
        calls.insert(
            call,
            LiveCall {
                info: http::CallInfo {
                    call: call.0,
                    room: d.caller.room.clone(),
                    peer: peer.clone(),
                    direction: "out",
                    remote: format!("{} ({:?})", hop.addr, hop.transport),
                },
                media: None,
                dialled: Some(Dialled {
                    rtp: Some(rtp),
                    offer,
                    caller: d.caller,
                    peer,
                }),
                hop: Some(hop),
                unreachable: None,
            },
        );
        Ok::<u64, String>(call.0)
    }
    .await;
    let _ = d.reply.send(r);
}

/// Our side of a call's media: its RTP socket's port on `ip`.
fn local_media(rtp: &UdpSocket, ip: IpAddr) -> LocalMedia {
    LocalMedia {
        address: ip,
        port: rtp.local_addr().map(|a| a.port()).unwrap_or(0),
        session_id: rand::random::<u32>().into(),
        session_version: 1,
        direction: Direction::SendRecv,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hops_follow_the_uri() {
        let spec = |u: &str| hop_spec(&Uri::parse(u).unwrap());
        let s = spec("sip:bob@192.0.2.7").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.transport),
            ("192.0.2.7", 5060, Transport::Udp)
        );
        let s = spec("sip:bob@192.0.2.7:5080;transport=TCP").unwrap();
        assert_eq!((s.port, s.transport), (5080, Transport::Tcp));
        // TLS: by parameter or by the sips: scheme, on 5061 unless given.
        let s = spec("sip:bob@pbx.example;transport=tls").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.transport),
            ("pbx.example", 5061, Transport::Tls)
        );
        let s = spec("sips:bob@[2001:db8::7]:5071").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.transport),
            ("2001:db8::7", 5071, Transport::Tls)
        );
        assert!(spec("sip:bob@192.0.2.7;transport=sctp")
            .unwrap_err()
            .contains("sctp"));
    }

    #[test]
    fn ended_calls_say_why_and_are_kept_a_minute() {
        let t0 = Instant::now();
        let hop = Peer {
            addr: "127.0.0.1:5061".parse().unwrap(),
            transport: Transport::Tls,
        };
        let call = |n: u64, unreachable: Option<&str>| LiveCall {
            info: http::CallInfo {
                call: n,
                room: "r".into(),
                peer: "p".into(),
                direction: "out",
                remote: String::new(),
            },
            media: None,
            dialled: None,
            hop: Some(hop),
            unreachable: unreachable.map(str::to_string),
        };
        let mut e = Ended::default();
        let tls = Some("TLS handshake with pbx: bad certificate");
        e.push(&call(1, tls), EndReason::Unreachable, t0);
        e.push(&call(2, None), EndReason::Unreachable, t0);
        e.push(&call(3, None), EndReason::Rejected(486), t0);
        let reasons: Vec<_> = e
            .views
            .iter()
            .map(|(_, v)| (v.state, v.reason.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "ended",
                    "unreachable: TLS handshake with pbx: bad certificate".to_string()
                ),
                ("ended", "unreachable".to_string()),
                ("ended", "rejected with 486".to_string())
            ]
        );
        // At most ENDED_MAX, for ENDED_KEPT.
        for n in 0..100 {
            e.push(
                &call(10 + n, None),
                EndReason::Timeout,
                t0 + Duration::from_secs(1),
            );
        }
        assert_eq!(e.views.len(), ENDED_MAX);
        e.trim(t0 + Duration::from_secs(1) + ENDED_KEPT + Duration::from_millis(1));
        assert!(e.views.is_empty());
    }

    #[tokio::test]
    async fn next_hops_resolve_names_and_keep_the_tls_name() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let hop = |u: &str| {
            let uri = Uri::parse(u).unwrap();
            async move { next_hop_of(&uri, v4).await }
        };
        let h = hop("sip:bob@192.0.2.7:5080;transport=tcp").await.unwrap();
        assert_eq!(h.peer.addr.to_string(), "192.0.2.7:5080");
        assert_eq!(h.tls_name, None);
        // localhost comes from /etc/hosts: no DNS traffic.
        let h = hop("sip:bob@localhost:5099;transport=tls").await.unwrap();
        assert_eq!(h.peer.addr.to_string(), "127.0.0.1:5099");
        assert_eq!(h.peer.transport, Transport::Tls);
        assert_eq!(h.tls_name.as_deref(), Some("localhost"));
        let h = hop("sips:bob@127.0.0.1").await.unwrap();
        assert_eq!(h.peer.addr.to_string(), "127.0.0.1:5061");
        assert_eq!(h.tls_name.as_deref(), Some("127.0.0.1"));
    }
}
