//! SIP: phones and trunks call into rooms (`sip:ROOM@host`, with a token in
//! the `X-MediaMesh-Token` header naming the room and the peer). The
//! protocol is `mediamesh_sip::Endpoint` (sans-IO); this thread owns its UDP
//! socket and one RTP socket per call, whose media task (`call.rs`) bridges
//! the phone to the room as an ingest that hears the room.

mod call;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mediamesh_audio::phone::PhoneCodec;
use mediamesh_sip::endpoint::CallHandle;
use mediamesh_sip::sdp::{
    self, AudioConfig, Codec as SdpCodec, Direction, LocalMedia, Negotiated, SessionDescription,
};
use mediamesh_sip::{DialOptions, Endpoint, EndpointConfig, EndpointEvent, Peer, Uri};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::api::unix_now;
use crate::token::{self, TokenKind};
use crate::worker::{Caller, Command, Listen};

/// The header that carries a call's token.
pub const TOKEN_HEADER: &str = "X-MediaMesh-Token";

#[derive(Clone)]
pub struct SipState {
    pub secret: String,
    pub worker: mpsc::Sender<Command>,
}

struct LiveCall {
    ingest: Option<u64>,
    stop: Option<oneshot::Sender<()>>,
    /// A call we dialled, until it is answered: its RTP socket and offer.
    dialled: Option<Dialled>,
}

struct Dialled {
    rtp: UdpSocket,
    offer: SessionDescription,
    caller: Caller,
    peer: String,
}

/// `POST /api/sip/dial`: call `target` (through `next_hop`) and bring the
/// callee into the room as `caller.peer` when it answers.
pub struct Dial {
    pub caller: Caller,
    pub target: Uri,
    pub next_hop: SocketAddr,
    pub credentials: Option<(String, String)>,
    pub reply: oneshot::Sender<Result<u64, String>>,
}

fn phone_codec(c: SdpCodec) -> PhoneCodec {
    match c {
        SdpCodec::Opus => PhoneCodec::Opus,
        SdpCodec::Pcmu => PhoneCodec::Pcmu,
        SdpCodec::Pcma => PhoneCodec::Pcma,
        SdpCodec::G722 => PhoneCodec::G722,
    }
}

/// Serves SIP on `socket` (and dial requests from the API) until the
/// runtime ends.
pub async fn serve(socket: UdpSocket, state: SipState, mut dials: mpsc::Receiver<Dial>) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => return tracing::error!("SIP socket: {e}"),
    };
    let cfg = EndpointConfig {
        host: local.ip().to_string(),
        port: local.port(),
        user_agent: "MediaMesh".into(),
        token_header: Some(TOKEN_HEADER.into()),
        ..Default::default()
    };
    let mut ep = Endpoint::new(cfg, rand::random());
    let mut calls: HashMap<CallHandle, LiveCall> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let wait = ep
            .poll_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                match r {
                    Ok((n, from)) => ep.handle_datagram(Peer::udp(from), &buf[..n], Instant::now()),
                    Err(e) => tracing::debug!("SIP recv: {e}"),
                }
            }
            _ = tokio::time::sleep(wait) => ep.handle_timeout(Instant::now()),
            Some(d) = dials.recv() => {
                let r = dial(&mut ep, &mut calls, local.ip(), d.caller, d.target, d.next_hop, d.credentials).await;
                let _ = d.reply.send(r);
            }
        }
        while let Some(event) = ep.poll_event() {
            on_event(&mut ep, &mut calls, &state, local.ip(), event).await;
        }
        while let Some(t) = ep.poll_transmit() {
            let bytes = t.message.to_bytes();
            if let Err(e) = socket.send_to(&bytes, t.to.addr).await {
                tracing::debug!(to = %t.to.addr, "SIP send: {e}");
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
            let Some(token) = token else {
                return refuse(ep, 403, "no X-MediaMesh-Token header");
            };
            let claims = match token::decode(&token, &state.secret, unix_now()) {
                Ok(c) if c.kind == TokenKind::Sip && c.room == room => c,
                Ok(_) => return refuse(ep, 403, "the token is not a sip token for this room"),
                Err(e) => return refuse(ep, 403, &format!("bad token: {e}")),
            };
            let Some(offer) = offer else {
                return refuse(ep, 488, "an INVITE without SDP offer");
            };
            let peer = claims.peer.clone().unwrap_or_else(|| {
                from.uri
                    .user
                    .clone()
                    .unwrap_or_else(|| format!("phone-{:06x}", rand::random::<u32>() & 0xff_ffff))
            });
            let rtp = match UdpSocket::bind(SocketAddr::new(ip, 0)).await {
                Ok(s) => s,
                Err(e) => return refuse(ep, 500, &format!("no RTP port: {e}")),
            };
            let local = local_media(&rtp, ip);
            let (answer, neg) = match sdp::answer(&offer, &local, &AudioConfig::default()) {
                Ok(a) => a,
                Err(e) => return refuse(ep, 488, &format!("no common audio: {e}")),
            };
            let caller = Caller {
                app: claims.sub.clone(),
                room: claims.room.clone(),
                peer: Some(peer.clone()),
            };
            let Some(live) = start_media(state, caller, peer.clone(), rtp, &neg).await else {
                return refuse(ep, 503, "the room cannot take the call now");
            };
            if let Err(e) = ep.accept(call, &answer, now) {
                tracing::warn!("SIP accept: {e}");
                end(state, live).await;
                return;
            }
            tracing::info!(%room, %peer, from = %source.addr, codec = ?neg.codec, "SIP call answered");
            calls.insert(call, live);
        }
        EndpointEvent::Answered { call, answer } => {
            let Some(d) = calls.get_mut(&call).and_then(|c| c.dialled.take()) else {
                return;
            };
            let neg = match answer
                .as_ref()
                .map(|a| sdp::negotiated_from_answer(&d.offer, a))
            {
                Some(Ok(n)) => n,
                other => {
                    tracing::warn!(?other, "SIP dial-out: no usable answer; hanging up");
                    calls.remove(&call);
                    let _ = ep.hangup(call, now);
                    return;
                }
            };
            tracing::info!(room = %d.caller.room, peer = %d.peer, codec = ?neg.codec, "SIP dial-out answered");
            match start_media(state, d.caller, d.peer, d.rtp, &neg).await {
                Some(live) => {
                    calls.insert(call, live);
                }
                None => {
                    calls.remove(&call);
                    let _ = ep.hangup(call, now);
                }
            }
        }
        EndpointEvent::Ended { call, reason } => {
            if let Some(c) = calls.remove(&call) {
                tracing::info!(?reason, "SIP call ended");
                end(state, c).await;
            }
        }
        EndpointEvent::RemoteSdp { hold, .. } => {
            tracing::info!(hold, "SIP re-offer");
        }
        other => tracing::debug!(?other, "SIP"),
    }
}

/// The call's peer joins the room (an ingest that hears the room) and its
/// media task starts. `None` when the worker refuses.
async fn start_media(
    state: &SipState,
    caller: Caller,
    peer: String,
    rtp: UdpSocket,
    neg: &Negotiated,
) -> Option<LiveCall> {
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
    let media = call::CallMedia {
        ingest,
        socket: rtp,
        remote: neg.remote_rtp,
        codec: phone_codec(neg.codec),
        payload_type: neg.payload_type,
        dtmf_payload_type: neg.dtmf_payload_type,
        worker: state.worker.clone(),
        hears: hear_rx,
        app,
        room,
        peer,
    };
    tokio::spawn(call::run(media, stop_rx));
    Some(LiveCall {
        ingest: Some(ingest),
        stop: Some(stop_tx),
        dialled: None,
    })
}

/// A call is over: its media task stops and its peer leaves the room.
async fn end(state: &SipState, mut c: LiveCall) {
    if let Some(stop) = c.stop.take() {
        let _ = stop.send(());
    }
    if let Some(id) = c.ingest.take() {
        let _ = state.worker.send(Command::IngestStop { id }).await;
    }
}

/// Sends an INVITE with our offer; the callee joins when it answers.
async fn dial(
    ep: &mut Endpoint,
    calls: &mut HashMap<CallHandle, LiveCall>,
    ip: IpAddr,
    caller: Caller,
    target: Uri,
    next_hop: SocketAddr,
    credentials: Option<(String, String)>,
) -> Result<u64, String> {
    let peer = caller.peer.clone().ok_or("the callee needs a peer name")?;
    let rtp = UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(|e| format!("no RTP port: {e}"))?;
    let local = local_media(&rtp, ip);
    let offer = sdp::offer(&local, &AudioConfig::default());
    let opts = DialOptions {
        target: target.clone(),
        next_hop: Peer::udp(next_hop),
        from_user: caller.room.clone(),
        from_display: Some("MediaMesh".into()),
        credentials,
        headers: Vec::new(),
    };
    let call = ep
        .dial(opts, &offer, Instant::now())
        .map_err(|e| e.to_string())?;
    tracing::info!(room = %caller.room, %peer, %target, %next_hop, "SIP dial-out");
    calls.insert(
        call,
        LiveCall {
            ingest: None,
            stop: None,
            dialled: Some(Dialled {
                rtp,
                offer,
                caller,
                peer,
            }),
        },
    );
    Ok(call.0)
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
