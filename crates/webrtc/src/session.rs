//! One WebRTC peer connection in RTP mode: a WHIP publisher or a WHEP player.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediamesh_core::layers::av1_dd::URI as DD_URI;
use mediamesh_core::{Codec, MediaKind, MediaPacket, ReceiverId, TrackId};
use str0m::bwe::{Bitrate, BweKind};

use crate::probe::{ProbeAction, Prober};
use str0m::change::SdpOffer;
use str0m::channel::ChannelConfig;
use str0m::format::Codec as RtcCodec;
use str0m::media::{KeyframeRequestKind, MediaKind as RtcKind, Mid, Pt, Rid, Rids};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionSerializer, ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcError};

/// The DTLS certificate this node presents to every peer. Made once: a
/// key pair per session would cost milliseconds of the media thread for each
/// join. Peers check it against the fingerprint in the answer.
#[derive(Clone)]
pub struct DtlsIdentity(str0m::config::DtlsCert);

impl DtlsIdentity {
    pub fn generate() -> Result<DtlsIdentity, SessionError> {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .map(DtlsIdentity)
            .ok_or(SessionError::Rejected("cannot generate a DTLS certificate"))
    }
}

/// What the remote peer came for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// WHIP: the peer sends media into a room.
    Publish,
    /// WHEP: the peer plays a room's media.
    Play,
    /// The SDK protocol: senders and receivers on one connection, and a
    /// control data channel (pre-negotiated, SCTP stream 0, label `data`).
    Sdk,
}

/// One audio or video m-line, in offer order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLine {
    pub mid: Mid,
    pub kind: MediaKind,
    /// The client sends on it (a sender); otherwise it receives (a receiver).
    pub client_sends: bool,
}

/// A datagram to send from the shared media socket.
#[derive(Debug)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// What a session tells the server.
#[derive(Debug)]
pub enum SessionEvent {
    /// ICE and DTLS are up; media can flow.
    Connected,
    /// The peer publishes a track on this m-line: the server creates a
    /// track and calls [`Session::bind_track`].
    WantsTrack { mid: Mid, kind: MediaKind },
    /// The peer plays media on this m-line: the server creates a receiver
    /// and calls [`Session::bind_receiver`]. Sent once the connection is up,
    /// so the keyframe the receiver asks for is not spent before it can be
    /// delivered.
    WantsReceiver {
        mid: Mid,
        kind: MediaKind,
        codecs: Vec<Codec>,
    },
    /// A packet of a bound track. `stream` is its simulcast stream index
    /// in quality order (0 without simulcast; see [`simulcast_order`]).
    Media {
        track: TrackId,
        stream: u8,
        packet: MediaPacket,
    },
    /// The send-side bandwidth estimate towards this peer changed (TWCC).
    EgressEstimate { bps: u64 },
    /// The player's decoder asks for a keyframe.
    KeyframeRequest { receiver: ReceiverId },
    /// The control data channel is open (SDK sessions).
    ChannelOpen,
    /// A binary message on the control data channel (SDK sessions).
    ChannelData(Vec<u8>),
    /// The connection is gone (closed, or ICE failed past the grace time).
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("malformed SDP offer: {0}")]
    BadOffer(String),
    #[error("{0}")]
    Rejected(&'static str),
    #[error("malformed ICE candidate `{0}`: {1}")]
    BadCandidate(String, String),
    #[error("WebRTC: {0}")]
    Rtc(#[from] RtcError),
}

#[derive(Debug)]
struct Inbound {
    mid: Mid,
    track: Option<TrackId>,
    /// Simulcast rids in quality order (empty without simulcast).
    rids: Vec<Rid>,
    /// Latest reception statistics of the m-line (str0m, every second).
    stats: Option<IngressStats>,
}

/// How a published track reaches the server.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IngressStats {
    pub bitrate_kbps: u32,
    /// Fraction of packets lost, 0..1.
    pub loss: f32,
    pub rtt_ms: f32,
    /// Interarrival jitter in RTP clock units.
    pub jitter: u32,
    bytes: u64,
    at: Option<Instant>,
}

#[derive(Debug)]
struct Outbound {
    mid: Mid,
    receiver: Option<ReceiverId>,
    /// The player's payload type for each codec it accepted on this m-line.
    pts: Vec<(Codec, Pt)>,
}

/// Retransmissions a send stream keeps for NACKs: str0m's defaults (2,000
/// packets, 3 s), with a higher cap on their share of what it sends.
const RTX_CACHE_PACKETS: usize = 2000;
const RTX_CACHE_AGE: Duration = Duration::from_secs(3);
/// str0m drops every queued retransmission while resends are over 15 % of
/// the bytes a stream sent in the last second. On a link that loses 25 %
/// (measured with the lossy-link e2e test) a quarter of the packets need a
/// resend, so nothing was repaired: the subscriber kept NACKing, never
/// asked for a keyframe, and decoded 2-3 frames/s even at the low layer.
/// Half still stops a runaway (a client NACKing everything) while repairing
/// what a bad mobile link loses; the bandwidth estimate accounts for the
/// resends, and its loss-based part lowers the layer on such a link.
const RTX_RATIO_CAP: f32 = 0.5;

/// One peer connection. Drive it with [`Session::handle_receive`],
/// [`Session::handle_timeout`] and [`Session::poll`].
pub struct Session {
    rtc: Rtc,
    role: Role,
    remote_ufrag: Option<String>,
    local_creds: IceCreds,
    candidate: Candidate,
    inbound: Vec<Inbound>,
    outbound: Vec<Outbound>,
    /// Payload type to codec, for the packets the peer sends.
    rx_codecs: Vec<(Pt, Codec)>,
    events: Vec<SessionEvent>,
    /// Audio and video m-lines in offer order.
    lines: Vec<MediaLine>,
    /// The control data channel (SDK sessions), once created.
    channel: Option<str0m::channel::ChannelId>,
    channel_open: bool,
    /// `WantsReceiver` events held until the connection is up.
    until_connected: Vec<SessionEvent>,
    connected: bool,
    disconnected_since: Option<Instant>,
    /// A session that has not connected by then is given up.
    connect_by: Instant,
    closed: bool,
    next_timeout: Instant,
    /// Packets were written since the last poll: str0m only stamps and
    /// releases queued packets when time is advanced.
    wrote: bool,
    /// Probe requests of the SFU (see [`crate::probe`]).
    prober: Prober,
}

/// The AV1 Dependency Descriptor header extension, carried as raw bytes:
/// parsed from publishers' packets into [`MediaPacket::dependency_descriptor`]
/// and written to subscribers as the core's layer selector decides.
#[derive(Debug)]
struct DependencyDescriptorExt;

/// The raw extension bytes in str0m's per-packet user values.
struct DdBytes(Arc<[u8]>);

/// The id MediaMesh offers the extension at (peers' offers map their own).
const DD_EXT_ID: u8 = 12;

impl ExtensionSerializer for DependencyDescriptorExt {
    fn write_to(&self, buf: &mut [u8], ev: &ExtensionValues) -> usize {
        match ev.user_values.get::<DdBytes>() {
            Some(d) if d.0.len() <= buf.len() => {
                buf[..d.0.len()].copy_from_slice(&d.0);
                d.0.len()
            }
            _ => 0,
        }
    }

    fn parse_value(&self, buf: &[u8], ev: &mut ExtensionValues) -> bool {
        // The mandatory part is 3 bytes.
        if buf.len() < 3 {
            return false;
        }
        ev.user_values.set(DdBytes(Arc::from(buf)));
        true
    }

    fn is_video(&self) -> bool {
        true
    }

    fn is_audio(&self) -> bool {
        false
    }

    fn requires_two_byte_form(&self, ev: &ExtensionValues) -> bool {
        ev.user_values
            .get::<DdBytes>()
            .is_none_or(|d| d.0.len() > 16)
    }
}

/// Removes the Dependency Descriptor extension from the offer's video
/// m-sections that the client sends on and that offer VP8. With the
/// extension, libwebrtc strips VP8's payload descriptor to its minimum (no
/// picture id, no temporal layer index), and the VP8 selector needs them; the
/// extension stays where it is needed: AV1 senders, and receiving m-lines.
fn without_vp8_dependency_descriptor(offer: &str) -> String {
    let eol = if offer.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(offer.len());
    for (i, section) in offer.split(&format!("{eol}m=")).enumerate() {
        if i > 0 {
            out.push_str(eol);
            out.push_str("m=");
        }
        let video = i > 0 && section.starts_with("video");
        let sends = section.contains("a=sendonly") || section.contains("a=sendrecv");
        let vp8 = section.contains(" VP8/90000");
        if video && sends && vp8 {
            let kept: Vec<&str> = section
                .split(eol)
                .filter(|l| !(l.starts_with("a=extmap:") && l.contains(DD_URI)))
                .collect();
            out.push_str(&kept.join(eol));
        } else {
            out.push_str(section);
        }
    }
    out
}

/// Where the send-side bandwidth estimate starts.
const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(300);

/// Orders simulcast rids from the lowest quality to the highest. Known
/// naming schemes are recognised (`q`/`h`/`f`, `l`/`m`/`h`, `low`/`mid`/`high`,
/// numbers); otherwise the offer's order is kept (lowest first, as the
/// WebRTC `sendEncodings` convention has it).
pub fn simulcast_order(rids: &[Rid]) -> Vec<Rid> {
    const SCHEMES: [&[&str]; 3] = [&["q", "h", "f"], &["l", "m", "h"], &["low", "mid", "high"]];
    let names: Vec<String> = rids.iter().map(|r| r.to_string()).collect();
    for scheme in SCHEMES {
        if names.iter().all(|n| scheme.contains(&n.as_str())) {
            let mut out = rids.to_vec();
            out.sort_by_key(|r| scheme.iter().position(|x| *x == r.to_string()));
            return out;
        }
    }
    if names.iter().all(|n| n.parse::<u32>().is_ok()) {
        let mut out = rids.to_vec();
        out.sort_by_key(|r| r.to_string().parse::<u32>().unwrap_or(0));
        return out;
    }
    rids.to_vec()
}

/// How long ICE may stay disconnected before the session ends.
const DISCONNECT_GRACE: Duration = Duration::from_secs(15);
/// How long a new session may take to connect (ICE + DTLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn to_codec(c: RtcCodec) -> Option<Codec> {
    Some(match c {
        RtcCodec::Opus => Codec::Opus,
        RtcCodec::PCMU => Codec::Pcmu,
        RtcCodec::PCMA => Codec::Pcma,
        RtcCodec::G722 => Codec::G722,
        RtcCodec::Vp8 => Codec::Vp8,
        RtcCodec::Vp9 => Codec::Vp9,
        RtcCodec::H264 => Codec::H264,
        RtcCodec::Av1 => Codec::Av1,
        _ => return None,
    })
}

fn to_kind(k: RtcKind) -> MediaKind {
    match k {
        RtcKind::Audio => MediaKind::Audio,
        RtcKind::Video => MediaKind::Video,
    }
}

/// The `a=ice-ufrag` of an SDP (session or first media level).
fn sdp_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(|u| u.trim().to_owned())
}

/// A parser's message as one line a person can read: no line breaks and no
/// memory addresses.
fn one_line(msg: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for line in msg.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let line = match line.find(" at PointerOffset(") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push(line.to_owned());
    }
    out.join("; ")
}

/// The `a=mid` values of an SDP, in m-line order.
fn sdp_mids(sdp: &str) -> Vec<Mid> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=mid:"))
        .map(|m| Mid::from(m.trim()))
        .collect()
}

impl Session {
    /// Answers an offer. `candidate` is the address of the shared media
    /// socket as the peer should reach it.
    pub fn accept(
        role: Role,
        offer: &str,
        candidate: SocketAddr,
        identity: &DtlsIdentity,
        now: Instant,
    ) -> Result<(Session, String), SessionError> {
        let parsed = SdpOffer::from_sdp_string(&without_vp8_dependency_descriptor(offer))
            .map_err(|e| SessionError::BadOffer(one_line(&e.to_string())))?;
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_vp9(true)
            .enable_h264(true)
            .enable_av1(true)
            .set_stats_interval(Some(Duration::from_secs(1)))
            .enable_bwe((role != Role::Publish).then_some(INITIAL_ESTIMATE))
            .set_extension(
                DD_EXT_ID,
                Extension::with_serializer(DD_URI, DependencyDescriptorExt),
            )
            .set_dtls_cert(identity.0.clone())
            .build(now);
        let cand = Candidate::host(candidate, "udp")
            .map_err(|e| SessionError::BadCandidate(candidate.to_string(), e.to_string()))?;
        rtc.add_local_candidate(cand.clone());
        let answer = rtc
            .sdp_api()
            .accept_offer(parsed)
            .map_err(|e| SessionError::BadOffer(one_line(&e.to_string())))?;
        // Start the clocks: str0m's ICE agent schedules no check before its
        // first timeout input.
        rtc.handle_input(Input::Timeout(now))?;
        let local_creds = rtc.direct_api().local_ice_credentials();
        let mut s = Session {
            rtc,
            role,
            remote_ufrag: sdp_ufrag(offer),
            local_creds,
            candidate: cand,
            inbound: Vec::new(),
            outbound: Vec::new(),
            rx_codecs: Vec::new(),
            events: Vec::new(),
            lines: Vec::new(),
            channel: None,
            channel_open: false,
            until_connected: Vec::new(),
            connected: false,
            disconnected_since: None,
            connect_by: now + CONNECT_TIMEOUT,
            closed: false,
            next_timeout: now,
            wrote: false,
            prober: Prober::default(),
        };
        s.refresh_rx_codecs();
        s.add_lines(offer);
        if role == Role::Sdk {
            let id = s.rtc.direct_api().create_data_channel(ChannelConfig {
                label: "data".into(),
                negotiated: Some(0),
                ..Default::default()
            });
            s.channel = Some(id);
        }
        let usable = match role {
            Role::Publish => !s.inbound.is_empty(),
            Role::Play => !s.outbound.is_empty(),
            // A connection may carry only the control channel at first.
            Role::Sdk => true,
        };
        if !usable {
            return Err(SessionError::Rejected(match role {
                Role::Publish => "the offer has no audio or video m-line the client sends (sendonly/sendrecv) with a codec MediaMesh supports",
                Role::Play | Role::Sdk => "the offer has no audio or video m-line the client receives (recvonly/sendrecv) with a codec MediaMesh supports",
            }));
        }
        Ok((s, answer.to_sdp_string()))
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Audio and video m-lines in offer order.
    pub fn lines(&self) -> &[MediaLine] {
        &self.lines
    }

    /// Registers the m-lines of an offer that are new to this session.
    /// str0m announces m-lines (MediaAdded) only once DTLS is up; the server
    /// needs them at once to create tracks and receivers.
    fn add_lines(&mut self, offer: &str) {
        for mid in sdp_mids(offer) {
            if self.lines.iter().any(|l| l.mid == mid) {
                continue;
            }
            if let Some(kind) = self.rtc.media(mid).map(|m| m.kind()) {
                self.on_media_added(mid, kind);
            }
        }
    }

    /// The payload type to codec map for what the peer sends, from the
    /// negotiated codec configuration.
    fn refresh_rx_codecs(&mut self) {
        self.rx_codecs = self
            .rtc
            .codec_config()
            .params()
            .iter()
            .filter_map(|p| Some((p.pt(), to_codec(p.spec().codec)?)))
            .collect();
    }

    /// Answers a renegotiation offer (SDK `UpdateSdp`, or an offer with new
    /// ICE credentials) on the live connection. New m-lines are reported as
    /// `WantsTrack`/`WantsReceiver` like the first ones.
    pub fn accept_update(&mut self, offer: &str) -> Result<String, SessionError> {
        let parsed = SdpOffer::from_sdp_string(&without_vp8_dependency_descriptor(offer))
            .map_err(|e| SessionError::BadOffer(one_line(&e.to_string())))?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(parsed)
            .map_err(|e| SessionError::BadOffer(one_line(&e.to_string())))?;
        self.remote_ufrag = sdp_ufrag(offer).or(self.remote_ufrag.take());
        self.local_creds = self.rtc.direct_api().local_ice_credentials();
        // A codec the first offer did not carry (a session that had no
        // video m-line until now) gets the payload types this offer gave it.
        self.refresh_rx_codecs();
        self.add_lines(offer);
        if self.connected {
            self.events.append(&mut self.until_connected);
        }
        Ok(answer.to_sdp_string())
    }

    /// Sends one binary message on the control data channel. Returns false
    /// when the channel is not open (yet).
    pub fn send_channel(&mut self, data: &[u8]) -> bool {
        if !self.channel_open {
            return false;
        }
        let Some(id) = self.channel else {
            return false;
        };
        match self.rtc.channel(id) {
            Some(mut ch) => ch.write(true, data).is_ok(),
            None => false,
        }
    }

    /// Reception statistics of a track this session publishes.
    pub fn ingress_stats(&self, track: TrackId) -> Option<IngressStats> {
        self.inbound
            .iter()
            .find(|i| i.track == Some(track))
            .and_then(|i| i.stats)
    }

    /// Unbinds the track of an m-line (its sender stopped publishing).
    pub fn unbind_track(&mut self, mid: Mid) {
        if let Some(i) = self.inbound.iter_mut().find(|i| i.mid == mid) {
            i.track = None;
        }
    }

    pub fn local_ufrag(&self) -> &str {
        &self.local_creds.ufrag
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// When [`Session::handle_timeout`] must next be called.
    pub fn next_timeout(&self) -> Instant {
        self.next_timeout
    }

    pub fn bind_track(&mut self, mid: Mid, track: TrackId) {
        if let Some(i) = self.inbound.iter_mut().find(|i| i.mid == mid) {
            i.track = Some(track);
        }
    }

    pub fn bind_receiver(&mut self, mid: Mid, receiver: ReceiverId) {
        if let Some(o) = self.outbound.iter_mut().find(|o| o.mid == mid) {
            o.receiver = Some(receiver);
        }
    }

    /// A datagram for this session arrived.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        data: &[u8],
    ) -> Result<(), SessionError> {
        let Ok(contents) = data.try_into() else {
            // Not STUN, DTLS or (S)RTP: nothing for us.
            return Ok(());
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.candidate.addr(),
                contents,
            },
        );
        self.rtc.handle_input(input)?;
        Ok(())
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        if self.give_up_at().is_some_and(|t| now >= t) {
            self.close();
            return Ok(());
        }
        self.rtc.handle_input(Input::Timeout(now))?;
        Ok(())
    }

    /// Ends the session; the next [`Session::poll`] reports `Closed`.
    pub fn close(&mut self) {
        self.rtc.disconnect();
    }

    /// Drains str0m: datagrams go to `transmit`, events are queued for
    /// [`Session::take_events`]. Returns the next timeout.
    pub fn poll(&mut self, now: Instant, transmit: &mut impl FnMut(Transmit)) -> Instant {
        if std::mem::take(&mut self.wrote) {
            if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!("session tick: {e}");
            }
        }
        loop {
            if !self.rtc.is_alive() {
                if !self.closed {
                    self.closed = true;
                    self.events.push(SessionEvent::Closed);
                }
                self.next_timeout = now + Duration::from_secs(3600);
                return self.next_timeout;
            }
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!("session poll error: {e}");
                    self.rtc.disconnect();
                    continue;
                }
            };
            match out {
                Output::Timeout(t) => {
                    self.next_timeout = match self.give_up_at() {
                        Some(g) => t.min(g),
                        None => t,
                    };
                    return self.next_timeout;
                }
                Output::Transmit(t) => transmit(Transmit {
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Output::Event(e) => self.on_event(e, now),
            }
        }
    }

    /// When the session ends unless ICE (re)connects.
    fn give_up_at(&self) -> Option<Instant> {
        if !self.connected {
            return Some(self.connect_by);
        }
        self.disconnected_since.map(|s| s + DISCONNECT_GRACE)
    }

    pub fn take_events(&mut self) -> std::vec::Drain<'_, SessionEvent> {
        self.events.drain(..)
    }

    fn on_event(&mut self, e: Event, now: Instant) {
        match e {
            Event::Connected => {
                self.connected = true;
                self.events.push(SessionEvent::Connected);
                self.events.append(&mut self.until_connected);
            }
            Event::IceConnectionStateChange(state) => match state {
                IceConnectionState::Disconnected => {
                    self.disconnected_since.get_or_insert(now);
                }
                IceConnectionState::Connected | IceConnectionState::Completed => {
                    self.disconnected_since = None;
                }
                _ => {}
            },
            Event::RtpPacket(p) => self.on_rtp(p),
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                self.prober.on_estimate(estimate.as_u64(), now);
                self.events.push(SessionEvent::EgressEstimate {
                    bps: estimate.as_u64(),
                });
            }
            Event::MediaIngressStats(st) => {
                if let Some(i) = self.inbound.iter_mut().find(|i| i.mid == st.mid) {
                    let prev = i.stats.unwrap_or_default();
                    let secs = prev
                        .at
                        .map(|t| st.timestamp.saturating_duration_since(t).as_secs_f64())
                        .unwrap_or(0.0);
                    let bitrate_kbps = if secs > 0.0 {
                        (st.bytes.saturating_sub(prev.bytes) as f64 * 8.0 / 1000.0 / secs) as u32
                    } else {
                        0
                    };
                    i.stats = Some(IngressStats {
                        bitrate_kbps,
                        loss: st.loss.unwrap_or(0.0),
                        rtt_ms: st.rtt.map(|d| d.as_secs_f32() * 1000.0).unwrap_or(0.0),
                        jitter: st.jitter,
                        bytes: st.bytes,
                        at: Some(st.timestamp),
                    });
                }
            }
            Event::ChannelOpen(id, _) if Some(id) == self.channel => {
                self.channel_open = true;
                self.events.push(SessionEvent::ChannelOpen);
            }
            Event::ChannelData(d) if Some(d.id) == self.channel && d.binary => {
                self.events.push(SessionEvent::ChannelData(d.data));
            }
            Event::ChannelClose(id) if Some(id) == self.channel => {
                self.channel_open = false;
                self.rtc.disconnect();
            }
            Event::KeyframeRequest(req) => {
                if let Some(receiver) = self
                    .outbound
                    .iter()
                    .find(|o| o.mid == req.mid)
                    .and_then(|o| o.receiver)
                {
                    self.events.push(SessionEvent::KeyframeRequest { receiver });
                }
            }
            _ => {}
        }
    }

    fn on_media_added(&mut self, mid: Mid, kind: RtcKind) {
        let Some(media) = self.rtc.media(mid) else {
            return;
        };
        let dir = media.direction();
        let kind = to_kind(kind);
        let sdk = self.role == Role::Sdk;
        if dir.is_receiving() && (self.role == Role::Publish || sdk) {
            self.lines.push(MediaLine {
                mid,
                kind,
                client_sends: true,
            });
            let rids = match media.rids_rx() {
                Rids::Specific(r) => simulcast_order(r),
                _ => Vec::new(),
            };
            self.inbound.push(Inbound {
                mid,
                track: None,
                rids,
                stats: None,
            });
            self.events.push(SessionEvent::WantsTrack { mid, kind });
        }
        if dir.is_sending() && (self.role == Role::Play || (sdk && !dir.is_receiving())) {
            let remote = media.remote_pts().to_vec();
            let mut pts: Vec<(Codec, Pt)> = Vec::new();
            for p in self.rtc.codec_config().params() {
                if !remote.contains(&p.pt()) {
                    continue;
                }
                if let Some(c) = to_codec(p.spec().codec) {
                    if c.kind() == kind && !pts.iter().any(|(x, _)| *x == c) {
                        pts.push((c, p.pt()));
                    }
                }
            }
            if pts.is_empty() {
                return;
            }
            let codecs = pts.iter().map(|(c, _)| *c).collect();
            self.lines.push(MediaLine {
                mid,
                kind,
                client_sends: false,
            });
            // str0m declares the m-line's send stream when it applies the
            // SDP, before it reports the m-line: its resend limits are set once.
            match self.rtc.direct_api().stream_tx_by_mid(mid, None) {
                Some(tx) => tx.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, Some(RTX_RATIO_CAP)),
                None => tracing::debug!(%mid, "no send stream for a sending m-line"),
            }
            self.outbound.push(Outbound {
                mid,
                receiver: None,
                pts,
            });
            self.until_connected
                .push(SessionEvent::WantsReceiver { mid, kind, codecs });
        }
    }

    fn on_rtp(&mut self, p: str0m::rtp::RtpPacket) {
        let pt = p.header.payload_type;
        let Some(codec) = self
            .rx_codecs
            .iter()
            .find(|(x, _)| *x == pt)
            .map(|(_, c)| *c)
        else {
            return;
        };
        let (mid, rid) = match p.header.ext_vals.mid {
            Some(m) => (Some(m), p.header.ext_vals.rid),
            None => self
                .rtc
                .direct_api()
                .stream_rx(&p.header.ssrc)
                .map_or((None, None), |s| (Some(s.mid()), s.rid())),
        };
        let Some(inbound) = mid.and_then(|m| self.inbound.iter().find(|i| i.mid == m)) else {
            return;
        };
        let Some(track) = inbound.track else { return };
        let stream = match rid {
            Some(r) => match inbound.rids.iter().position(|x| *x == r) {
                Some(i) => i as u8,
                None => return,
            },
            None => 0,
        };
        let keyframe = codec.is_keyframe_start(&p.payload);
        self.events.push(SessionEvent::Media {
            track,
            stream,
            packet: MediaPacket {
                codec,
                seq: *p.seq_no,
                timestamp: p.header.timestamp,
                marker: p.header.marker,
                keyframe,
                audio_level: p.header.ext_vals.audio_level,
                dependency_descriptor: p
                    .header
                    .ext_vals
                    .user_values
                    .get::<DdBytes>()
                    .map(|d| d.0.clone()),
                arrival: p.timestamp,
                payload: p.payload,
            },
        });
    }

    /// Sends a packet to the player on the m-line bound to `receiver`.
    pub fn send_media(&mut self, receiver: ReceiverId, packet: &MediaPacket) {
        if !self.connected {
            return;
        }
        let Some(o) = self.outbound.iter().find(|o| o.receiver == Some(receiver)) else {
            return;
        };
        let Some(pt) = o
            .pts
            .iter()
            .find(|(c, _)| *c == packet.codec)
            .map(|(_, pt)| *pt)
        else {
            return;
        };
        let mid = o.mid;
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        let mut ext = ExtensionValues {
            audio_level: packet.audio_level,
            voice_activity: packet.audio_level.map(|l| l > -127),
            ..Default::default()
        };
        if let Some(dd) = &packet.dependency_descriptor {
            ext.user_values.set(DdBytes(dd.clone()));
        }
        tx.write_rtp(
            RtpWrite::new(
                pt,
                packet.seq.into(),
                packet.timestamp,
                packet.arrival,
                packet.payload.clone(),
            )
            .marker(packet.marker)
            .ext_vals(ext)
            .nackable(packet.codec.kind() == MediaKind::Video),
        );
        self.wrote = true;
    }

    /// Asks the publisher for a keyframe on the track's m-line: of one
    /// simulcast stream, or (`None`) of every stream.
    pub fn request_keyframe(&mut self, track: TrackId, stream: Option<u8>) {
        let Some(i) = self.inbound.iter().find(|i| i.track == Some(track)) else {
            return;
        };
        let mid = i.mid;
        let rids: Vec<Option<Rid>> = if i.rids.is_empty() {
            vec![None]
        } else {
            match stream {
                Some(s) => i
                    .rids
                    .get(usize::from(s))
                    .map(|r| vec![Some(*r)])
                    .unwrap_or_default(),
                None => i.rids.iter().map(|r| Some(*r)).collect(),
            }
        };
        let mut api = self.rtc.direct_api();
        for rid in rids {
            if let Some(rx) = api.stream_rx_by_mid(mid, rid) {
                rx.request_keyframe(KeyframeRequestKind::Pli);
            }
        }
    }

    /// Caps what the peer sends on a track's m-line (REMB; `None` lifts the
    /// cap). Browsers take REMB as an upper bound of their own estimate and
    /// drop their top simulcast/SVC layers to fit.
    pub fn cap_bitrate(&mut self, track: TrackId, bps: Option<u64>) {
        let Some(i) = self.inbound.iter().find(|i| i.track == Some(track)) else {
            return;
        };
        let (mid, rid) = (i.mid, i.rids.first().copied());
        // Lifting: a cap far above any camera or screen.
        let bitrate = Bitrate::bps(bps.unwrap_or(100_000_000));
        if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            rx.request_remb(bitrate);
        }
    }

    /// The bitrate the server would like to send this peer (all its
    /// receivers at their best layers): the estimator probes up to it.
    pub fn set_desired_bitrate(&mut self, bps: u64) {
        self.prober.set_desired(bps);
        self.rtc.bwe().set_desired_bitrate(Bitrate::bps(bps));
    }

    /// Probes for more egress bandwidth now (the SFU's receivers wait for
    /// it; see [`crate::probe`]).
    pub fn request_probe(&mut self, now: Instant) {
        match self.prober.request(now) {
            Some(ProbeAction::Desired(bps)) => {
                self.rtc.bwe().set_desired_bitrate(Bitrate::bps(bps))
            }
            Some(ProbeAction::Reset(bps)) => {
                tracing::debug!(
                    bps,
                    "egress estimate stuck while receivers wait: estimator restarted"
                );
                self.rtc.bwe().reset(Bitrate::bps(bps));
            }
            None => {}
        }
    }

    /// Applies a trickle ICE fragment. When it carries new ICE credentials
    /// (an ICE restart), returns the new local credentials to answer with.
    pub fn apply_sdpfrag(
        &mut self,
        frag: &crate::SdpFrag,
    ) -> Result<Option<IceCreds>, SessionError> {
        // Check every candidate before changing anything.
        let mut candidates = Vec::new();
        for c in &frag.candidates {
            match Candidate::from_sdp_string(c) {
                Ok(cand) => candidates.push(cand),
                // mDNS names (`xxxx.local`) are valid but unresolvable here.
                Err(_) if c.contains(".local ") => continue,
                Err(e) => return Err(SessionError::BadCandidate(c.clone(), e.to_string())),
            }
        }
        let mut restarted = None;
        if let (Some(ufrag), Some(pwd)) = (&frag.ufrag, &frag.pwd) {
            if self.remote_ufrag.as_deref() != Some(ufrag.as_str()) {
                let local = IceCreds::new();
                let mut api = self.rtc.direct_api();
                api.set_local_ice_credentials(local.clone());
                api.set_remote_ice_credentials(IceCreds {
                    ufrag: ufrag.clone(),
                    pass: pwd.clone(),
                });
                self.remote_ufrag = Some(ufrag.clone());
                self.local_creds = local.clone();
                restarted = Some(local);
            }
        }
        for cand in candidates {
            let stale = match (cand.ufrag(), &self.remote_ufrag) {
                (Some(c), Some(r)) => c != r,
                _ => false,
            };
            if !stale {
                self.rtc.add_remote_candidate(cand);
            }
        }
        Ok(restarted)
    }

    /// The fragment answering an ICE restart (RFC 8840): our new
    /// credentials, and our candidate once, on the BUNDLE-tagged (first)
    /// m-line, which carries the transport for every m-line.
    pub fn restart_answer(&self, creds: &IceCreds) -> String {
        let mut s = format!(
            "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n",
            creds.ufrag, creds.pass
        );
        let first = self
            .inbound
            .iter()
            .map(|i| i.mid)
            .chain(self.outbound.iter().map(|o| o.mid))
            .next();
        if let Some(mid) = first {
            let mut cand = self.candidate.clone();
            cand.set_ufrag(&creds.ufrag);
            s.push_str(&format!(
                "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:{mid}\r\na={}\r\na=end-of-candidates\r\n",
                cand.to_sdp_string()
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_and_unusable_offers() {
        let now = Instant::now();
        let addr: SocketAddr = "127.0.0.1:3478".parse().unwrap();
        let id = DtlsIdentity::generate().unwrap();
        match Session::accept(Role::Publish, "v=0\r\nnonsense", addr, &id, now) {
            Err(SessionError::BadOffer(reason)) => assert!(!reason.is_empty()),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("accepted garbage"),
        }
    }

    #[test]
    fn parser_messages_become_one_line() {
        assert_eq!(
            one_line("SDP parse: Parse error at PointerOffset(0x7f00)\nUnexpected ``\n\nUnexpected `o`\n"),
            "SDP parse: Parse error; Unexpected ``; Unexpected `o`"
        );
    }

    #[test]
    fn vp8_senders_are_not_offered_the_dependency_descriptor() {
        let dd = format!("a=extmap:12 {DD_URI}");
        let offer = format!(
            "v=0\r\ns=-\r\nm=video 9 X 96\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n{dd}\r\n\
             m=video 9 X 45\r\na=sendonly\r\na=rtpmap:45 AV1/90000\r\n{dd}\r\n\
             m=video 9 X 96\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n{dd}\r\n"
        );
        let out = without_vp8_dependency_descriptor(&offer);
        let sections: Vec<&str> = out.split("m=").collect();
        assert!(!sections[1].contains(DD_URI), "{out}");
        assert!(
            sections[2].contains(DD_URI) && sections[3].contains(DD_URI),
            "{out}"
        );
        assert_eq!(out.len(), offer.len() - dd.len() - 2);
        assert!(out.starts_with("v=0\r\ns=-\r\nm=video 9 X 96\r\na=sendonly"));
    }

    #[test]
    fn orders_simulcast_rids_low_to_high() {
        let order = |names: &[&str]| -> Vec<String> {
            let rids: Vec<Rid> = names.iter().map(|n| Rid::from(*n)).collect();
            simulcast_order(&rids)
                .iter()
                .map(|r| r.to_string())
                .collect()
        };
        assert_eq!(order(&["f", "h", "q"]), ["q", "h", "f"]);
        assert_eq!(order(&["h", "m", "l"]), ["l", "m", "h"]);
        assert_eq!(order(&["2", "0", "1"]), ["0", "1", "2"]);
        assert_eq!(order(&["high", "low"]), ["low", "high"]);
        // Unknown names keep the offer's order.
        assert_eq!(order(&["a", "b"]), ["a", "b"]);
    }

    #[test]
    fn extracts_ufrag() {
        assert_eq!(
            sdp_ufrag("v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:x\r\n").as_deref(),
            Some("abcd")
        );
        assert_eq!(sdp_ufrag("v=0\r\n"), None);
    }
}

#[cfg(test)]
mod offer_tests {
    use super::*;

    #[test]
    fn answers_a_chrome_recvonly_offer() {
        let offer = include_str!("../tests/data/chrome-recvonly-offer.sdp").replace('\n', "\r\n");
        let addr: SocketAddr = "127.0.0.1:3478".parse().unwrap();
        let id = DtlsIdentity::generate().unwrap();
        let r = Session::accept(Role::Play, &offer, addr, &id, Instant::now());
        let (s, answer) = r.map_err(|e| e.to_string()).unwrap();
        assert_eq!(s.outbound.len(), 2, "{answer}");
    }

    /// An SDK session whose first offer had no video m-line, then publishes
    /// H.264 (renegotiation): the payload types of the new offer must map
    /// to H.264, or its packets are dropped as unknown.
    #[test]
    fn a_codec_first_offered_in_a_renegotiation_is_received() {
        let full = include_str!("../tests/data/chrome-recvonly-offer.sdp").replace('\n', "\r\n");
        // The first offer: the audio m-line only.
        let video_at = full.find("m=video").unwrap();
        let first = full[..video_at].replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
        let addr: SocketAddr = "127.0.0.1:3478".parse().unwrap();
        let id = DtlsIdentity::generate().unwrap();
        let now = Instant::now();
        let (mut s, _) = Session::accept(Role::Sdk, &first, addr, &id, now)
            .map_err(|e| e.to_string())
            .unwrap();
        // The update: audio as before, plus video sent by the peer with
        // H.264 at a payload type of its own choosing.
        let update = format!(
            "{first}m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\n\
             c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
             a=ice-ufrag:Ke3X\r\na=ice-pwd:h4Gj0mdV4QkfNb8RQpcyZ7Ru\r\na=ice-options:trickle\r\n\
             a=fingerprint:sha-256 0F:74:31:25:CB:A2:13:EC:28:6F:6D:2C:61:FF:5D:C2:BC:B9:DB:3D:98:14:8D:1A:BB:EA:33:0C:A4:60:A8:8E\r\n\
             a=setup:actpass\r\na=mid:1\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
             a=sendonly\r\na=msid:- v\r\na=rtcp-mux\r\na=rtcp-rsize\r\n\
             a=rtpmap:102 H264/90000\r\na=rtcp-fb:102 nack\r\na=rtcp-fb:102 nack pli\r\n\
             a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
             a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=ssrc:1111 cname:x\r\n"
        )
        .replace("a=group:BUNDLE 0", "a=group:BUNDLE 0 1");
        let answer = s.accept_update(&update).map_err(|e| e.to_string()).unwrap();
        assert!(answer.contains("H264/90000"), "{answer}");
        let h264: Vec<Pt> = s
            .rx_codecs
            .iter()
            .filter(|(_, c)| *c == Codec::H264)
            .map(|(pt, _)| *pt)
            .collect();
        assert!(
            h264.contains(&Pt::from(102)),
            "H.264 payload types {h264:?}\n{answer}"
        );
    }
}
