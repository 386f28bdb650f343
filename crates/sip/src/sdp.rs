//! The small SDP (RFC 8866, formerly 4566) that plain RTP audio calls need,
//! with the offer/answer rules of RFC 3264 (sections 5, 6, 8.4 for hold),
//! static payload types of RFC 3551, Opus of RFC 7587 and telephone-event
//! of RFC 4733.
//!
//! [`SessionDescription`] parses and displays `v= o= s= c= t= m= a=`; other
//! lines are skipped. Media lines keep typed `rtpmap`, `fmtp`, direction,
//! `ptime` and `rtcp`, other attributes as they are. [`answer`] picks one
//! codec from our preference list among the first usable audio stream of an
//! offer (plus telephone-event for DTMF), rejects every other stream with
//! port 0, and reverses the direction; [`offer`] builds our offer for
//! dial-out and [`negotiated_from_answer`] reads the answer to it. Not
//! WebRTC: no ICE, DTLS or SRTP (RTP/SAVP streams are rejected).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

/// Errors of SDP parsing and negotiation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    #[error("SDP is not UTF-8")]
    NotUtf8,
    #[error("SDP does not start with v=0")]
    Version,
    #[error("malformed SDP line {0}")]
    Line(usize),
    #[error("SDP is missing {0}")]
    Missing(&'static str),
    #[error("SDP too large")]
    TooLarge,
    #[error("no acceptable audio stream")]
    NoAudio,
    #[error("no common audio codec")]
    NoCodec,
}

const MAX_LINES: usize = 1024;
const MAX_MEDIA: usize = 32;
const MAX_FORMATS: usize = 64;

/// Media direction attribute (RFC 3264 section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn parse(s: &str) -> Option<Direction> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answer takes for this offered one (6.1).
    pub fn reverse(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// `o=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: u64,
    pub session_version: u64,
    pub address: String,
}

/// `c=IN IP4|IP6 address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub ipv6: bool,
    /// As written (may carry `/ttl` for multicast, or be a host name).
    pub address: String,
}

impl Connection {
    pub fn new(ip: IpAddr) -> Connection {
        Connection {
            ipv6: ip.is_ipv6(),
            address: ip.to_string(),
        }
    }

    /// The address as an IP, if it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.split('/').next()?.parse().ok()
    }

    /// `c=IN IP4 0.0.0.0`: the RFC 2543 way to put a call on hold.
    pub fn is_unspecified(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }

    fn parse(v: &str) -> Option<Connection> {
        let mut it = v.split_whitespace();
        let (Some("IN"), Some(t), Some(a), None) = (it.next(), it.next(), it.next(), it.next())
        else {
            return None;
        };
        let ipv6 = match t {
            "IP4" => false,
            "IP6" => true,
            _ => return None,
        };
        Some(Connection {
            ipv6,
            address: a.to_string(),
        })
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IN {} {}",
            if self.ipv6 { "IP6" } else { "IP4" },
            self.address
        )
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u8>,
}

impl RtpMap {
    fn parse(v: &str) -> Option<RtpMap> {
        let (pt, rest) = v.split_once(' ')?;
        let mut parts = rest.trim().split('/');
        let encoding = parts.next()?.to_string();
        let clock_rate = parts.next()?.parse().ok()?;
        let channels = match parts.next() {
            Some(c) => Some(c.parse().ok()?),
            None => None,
        };
        if parts.next().is_some() || encoding.is_empty() {
            return None;
        }
        Some(RtpMap {
            payload_type: parse_pt(pt)?,
            encoding,
            clock_rate,
            channels,
        })
    }
}

impl fmt::Display for RtpMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.payload_type, self.encoding, self.clock_rate
        )?;
        if let Some(c) = self.channels {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

fn parse_pt(s: &str) -> Option<u8> {
    let pt: u8 = s.trim().parse().ok()?;
    (pt < 128).then_some(pt)
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, ...
    pub media: String,
    pub port: u16,
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, ...
    pub proto: String,
    /// Formats as written (payload type numbers for RTP).
    pub formats: Vec<String>,
    pub connection: Option<Connection>,
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp:<pt> <params>`.
    pub fmtps: Vec<(u8, String)>,
    pub direction: Option<Direction>,
    pub ptime: Option<u32>,
    pub maxptime: Option<u32>,
    /// `a=rtcp:<port>` (RFC 3605), the port only.
    pub rtcp_port: Option<u16>,
    /// Other attributes (`name`, optional value).
    pub attributes: Vec<(String, Option<String>)>,
}

impl MediaDescription {
    fn new(media: &str, port: u16, proto: &str) -> MediaDescription {
        MediaDescription {
            media: media.to_string(),
            port,
            port_count: None,
            proto: proto.to_string(),
            formats: Vec::new(),
            connection: None,
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            direction: None,
            ptime: None,
            maxptime: None,
            rtcp_port: None,
            attributes: Vec::new(),
        }
    }

    /// Payload types of the format list (for RTP).
    pub fn payload_types(&self) -> Vec<u8> {
        self.formats.iter().filter_map(|f| parse_pt(f)).collect()
    }

    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.payload_type == pt)
    }

    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the stream is plain RTP (RTP/AVP or RTP/AVPF).
    pub fn is_plain_rtp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/AVP") || self.proto.eq_ignore_ascii_case("RTP/AVPF")
    }
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    pub connection: Option<Connection>,
    /// `t=` start and stop.
    pub timing: (u64, u64),
    /// Session-level direction attribute.
    pub direction: Option<Direction>,
    /// Other session-level attributes.
    pub attributes: Vec<(String, Option<String>)>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    pub fn parse(bytes: &[u8]) -> Result<SessionDescription, SdpError> {
        if bytes.len() > 64 * 1024 {
            return Err(SdpError::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| SdpError::NotUtf8)?;
        let mut lines = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .enumerate()
            .filter(|(_, l)| !l.is_empty());
        match lines.next() {
            Some((_, "v=0")) => {}
            _ => return Err(SdpError::Version),
        }
        let mut origin = None;
        let mut session_name = None;
        let mut connection = None;
        let mut timing = (0, 0);
        let mut direction = None;
        let mut attributes = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();
        for (count, (i, line)) in lines.enumerate() {
            let n = i + 1;
            let bad = || SdpError::Line(n);
            if count >= MAX_LINES {
                return Err(SdpError::TooLarge);
            }
            let (kind, value) = line.split_once('=').ok_or_else(bad)?;
            if kind.len() != 1 {
                return Err(bad());
            }
            match kind {
                "o" => {
                    let f: Vec<&str> = value.split_whitespace().collect();
                    if f.len() != 6 || f[3] != "IN" {
                        return Err(bad());
                    }
                    origin = Some(Origin {
                        username: f[0].to_string(),
                        session_id: f[1].parse().map_err(|_| bad())?,
                        session_version: f[2].parse().map_err(|_| bad())?,
                        address: f[5].to_string(),
                    });
                }
                "s" => session_name = Some(value.to_string()),
                "c" => {
                    let c = Connection::parse(value).ok_or_else(bad)?;
                    match media.last_mut() {
                        Some(m) => m.connection = Some(c),
                        None => connection = Some(c),
                    }
                }
                "t" => {
                    let mut it = value.split_whitespace();
                    let start = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                    let stop = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                    timing = (start, stop);
                }
                "m" => {
                    if media.len() >= MAX_MEDIA {
                        return Err(SdpError::TooLarge);
                    }
                    let mut it = value.split_whitespace();
                    let kind = it.next().ok_or_else(bad)?;
                    let ports = it.next().ok_or_else(bad)?;
                    let proto = it.next().ok_or_else(bad)?;
                    let (port, count) = match ports.split_once('/') {
                        Some((p, c)) => (p, Some(c.parse().map_err(|_| bad())?)),
                        None => (ports, None),
                    };
                    let mut m =
                        MediaDescription::new(kind, port.parse().map_err(|_| bad())?, proto);
                    m.port_count = count;
                    m.formats = it.map(str::to_string).collect();
                    if m.formats.is_empty() || m.formats.len() > MAX_FORMATS {
                        return Err(bad());
                    }
                    media.push(m);
                }
                "a" => {
                    let (name, val) = match value.split_once(':') {
                        Some((a, b)) => (a, Some(b)),
                        None => (value, None),
                    };
                    match media.last_mut() {
                        None => match Direction::parse(name) {
                            Some(d) if val.is_none() => direction = Some(d),
                            _ => attributes.push((name.to_string(), val.map(str::to_string))),
                        },
                        Some(m) => parse_media_attribute(m, name, val).ok_or_else(bad)?,
                    }
                }
                "v" => return Err(bad()),
                _ => {} // i, u, e, p, b, z, k, r: not needed here
            }
        }
        Ok(SessionDescription {
            origin: origin.ok_or(SdpError::Missing("o="))?,
            session_name: session_name.unwrap_or_else(|| "-".to_string()),
            connection,
            timing,
            direction,
            attributes,
            media,
        })
    }

    /// The first plain-RTP audio stream with a non-zero port.
    pub fn audio(&self) -> Option<&MediaDescription> {
        self.media
            .iter()
            .find(|m| m.media == "audio" && m.port != 0 && m.is_plain_rtp())
    }

    /// The connection that applies to a media section.
    pub fn connection_for<'a>(&'a self, m: &'a MediaDescription) -> Option<&'a Connection> {
        m.connection.as_ref().or(self.connection.as_ref())
    }

    /// The effective direction of a media section (media level, else
    /// session level, else sendrecv).
    pub fn direction_of(&self, m: &MediaDescription) -> Direction {
        m.direction
            .or(self.direction)
            .unwrap_or(Direction::SendRecv)
    }

    /// Whether this description (an offer) puts the audio on hold: its
    /// direction is sendonly or inactive, or its connection address is
    /// 0.0.0.0 (RFC 3264 section 8.4 and the RFC 2543 way).
    pub fn is_hold(&self) -> bool {
        match self.audio() {
            None => false,
            Some(m) => {
                matches!(
                    self.direction_of(m),
                    Direction::SendOnly | Direction::Inactive
                ) || self
                    .connection_for(m)
                    .is_some_and(Connection::is_unspecified)
            }
        }
    }

    /// Where the audio is to be sent: its RTP address, `None` when it has
    /// none (no audio, port 0, or a 0.0.0.0 hold).
    pub fn audio_addr(&self) -> Option<SocketAddr> {
        remote_addr(self, self.audio()?)
    }

    /// Whether the remote of this description wants our audio (its audio
    /// is sendrecv or recvonly, and has an address).
    pub fn wants_audio(&self) -> bool {
        self.audio()
            .is_some_and(|m| self.direction_of(m).receives() && remote_addr(self, m).is_some())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

fn parse_media_attribute(m: &mut MediaDescription, name: &str, val: Option<&str>) -> Option<()> {
    match (name, val) {
        ("rtpmap", Some(v)) => {
            if m.rtpmaps.len() < MAX_FORMATS {
                m.rtpmaps.push(RtpMap::parse(v)?);
            }
        }
        ("fmtp", Some(v)) => {
            let (pt, params) = v.split_once(' ').unwrap_or((v, ""));
            if m.fmtps.len() < MAX_FORMATS {
                m.fmtps.push((parse_pt(pt)?, params.trim().to_string()));
            }
        }
        ("ptime", Some(v)) => m.ptime = Some(v.trim().parse().ok()?),
        ("maxptime", Some(v)) => m.maxptime = Some(v.trim().parse().ok()?),
        ("rtcp", Some(v)) => m.rtcp_port = Some(v.split_whitespace().next()?.parse().ok()?),
        (d, None) if Direction::parse(d).is_some() => m.direction = Direction::parse(d),
        _ => {
            if m.attributes.len() < MAX_LINES {
                m.attributes
                    .push((name.to_string(), val.map(str::to_string)));
            }
        }
    }
    Some(())
}

fn write_attrs(f: &mut fmt::Formatter<'_>, attrs: &[(String, Option<String>)]) -> fmt::Result {
    for (n, v) in attrs {
        match v {
            Some(v) => write!(f, "a={n}:{v}\r\n")?,
            None => write!(f, "a={n}\r\n")?,
        }
    }
    Ok(())
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        let ip6 = o.address.contains(':');
        write!(
            f,
            "v=0\r\no={} {} {} IN {} {}\r\ns={}\r\n",
            o.username,
            o.session_id,
            o.session_version,
            if ip6 { "IP6" } else { "IP4" },
            o.address,
            self.session_name
        )?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write!(f, "t={} {}\r\n", self.timing.0, self.timing.1)?;
        if let Some(d) = self.direction {
            write!(f, "a={}\r\n", d.as_str())?;
        }
        write_attrs(f, &self.attributes)?;
        for m in &self.media {
            write!(f, "m={} {}", m.media, m.port)?;
            if let Some(c) = m.port_count {
                write!(f, "/{c}")?;
            }
            write!(f, " {} {}\r\n", m.proto, m.formats.join(" "))?;
            if let Some(c) = &m.connection {
                write!(f, "c={c}\r\n")?;
            }
            let write_fmtp = |f: &mut fmt::Formatter<'_>, pt: u8, p: &str| {
                if p.is_empty() {
                    write!(f, "a=fmtp:{pt}\r\n")
                } else {
                    write!(f, "a=fmtp:{pt} {p}\r\n")
                }
            };
            for (i, r) in m.rtpmaps.iter().enumerate() {
                write!(f, "a=rtpmap:{r}\r\n")?;
                // Format parameters follow the first rtpmap of their type.
                if m.rtpmaps[..i]
                    .iter()
                    .all(|o| o.payload_type != r.payload_type)
                {
                    for (pt, p) in m.fmtps.iter().filter(|(pt, _)| *pt == r.payload_type) {
                        write_fmtp(f, *pt, p)?;
                    }
                }
            }
            for (pt, p) in &m.fmtps {
                if m.rtpmap(*pt).is_none() {
                    write_fmtp(f, *pt, p)?;
                }
            }
            if let Some(p) = m.rtcp_port {
                write!(f, "a=rtcp:{p}\r\n")?;
            }
            if let Some(p) = m.ptime {
                write!(f, "a=ptime:{p}\r\n")?;
            }
            if let Some(p) = m.maxptime {
                write!(f, "a=maxptime:{p}\r\n")?;
            }
            if let Some(d) = m.direction {
                write!(f, "a={}\r\n", d.as_str())?;
            }
            write_attrs(f, &m.attributes)?;
        }
        Ok(())
    }
}

/// The audio codecs we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Opus 48000/2 (RFC 7587), dynamic payload type.
    Opus,
    /// G.711 µ-law, payload type 0.
    Pcmu,
    /// G.711 A-law, payload type 8.
    Pcma,
    /// G.722, payload type 9 (its RTP clock is 8000, RFC 3551 4.5.2).
    G722,
}

impl Codec {
    pub fn encoding(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48000,
            _ => 8000,
        }
    }

    pub fn channels(self) -> Option<u8> {
        match self {
            Codec::Opus => Some(2),
            _ => None,
        }
    }

    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Opus => None,
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
        }
    }

    /// Whether the format `pt` of `m` is this codec.
    fn matches(self, m: &MediaDescription, pt: u8) -> bool {
        match m.rtpmap(pt) {
            Some(r) => {
                r.encoding.eq_ignore_ascii_case(self.encoding())
                    && r.clock_rate == self.clock_rate()
                    && match self {
                        Codec::Opus => r.channels == Some(2),
                        _ => r.channels.is_none_or(|c| c == 1),
                    }
            }
            None => self.static_payload_type() == Some(pt),
        }
    }
}

/// Our audio preferences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    /// Codecs in order of preference.
    pub codecs: Vec<Codec>,
    /// Offer/accept telephone-event (RFC 4733) for DTMF.
    pub dtmf: bool,
    /// Packet time we ask for, in ms.
    pub ptime: Option<u32>,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma, Codec::G722],
            dtmf: true,
            ptime: Some(20),
        }
    }
}

/// Our side of the media: where we receive RTP, and the `o=` numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    pub address: IpAddr,
    pub port: u16,
    pub session_id: u64,
    /// Increment it for every new offer or answer in a session (RFC 3264 8).
    pub session_version: u64,
    /// Direction we want (sendrecv normally; sendonly to hold the remote).
    pub direction: Direction,
}

/// What an offer/answer exchange settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub payload_type: u8,
    /// Opus parameters the remote gave, if any.
    pub fmtp: Option<String>,
    /// Payload type of telephone-event, when both sides use it.
    pub dtmf_payload_type: Option<u8>,
    /// The remote's RTP address; `None` for port 0 or address 0.0.0.0 (RFC
    /// 2543 hold). Send to it only when `direction` sends. Behind a NAT the
    /// driver should use symmetric RTP (RFC 4961): send to the source of the
    /// RTP that arrives once some does.
    pub remote_rtp: Option<SocketAddr>,
    /// Our direction for the stream.
    pub direction: Direction,
    /// The remote's ptime, if given.
    pub ptime: Option<u32>,
}

fn remote_addr(sd: &SessionDescription, m: &MediaDescription) -> Option<SocketAddr> {
    let ip = sd.connection_for(m)?.ip()?;
    (m.port != 0 && !ip.is_unspecified()).then(|| SocketAddr::new(ip, m.port))
}

/// The telephone-event payload type of `m` for `clock_rate`, else any.
fn find_dtmf(m: &MediaDescription, clock_rate: u32) -> Option<u8> {
    let te = |r: &&RtpMap| r.encoding.eq_ignore_ascii_case("telephone-event");
    let listed = |r: &&RtpMap| m.payload_types().contains(&r.payload_type);
    m.rtpmaps
        .iter()
        .filter(te)
        .filter(listed)
        .find(|r| r.clock_rate == clock_rate)
        .or_else(|| m.rtpmaps.iter().filter(te).find(listed))
        .map(|r| r.payload_type)
}

/// Our session description around `media`.
fn ours(local: &LocalMedia, media: Vec<MediaDescription>) -> SessionDescription {
    SessionDescription {
        origin: Origin {
            username: "-".to_string(),
            session_id: local.session_id,
            session_version: local.session_version,
            address: local.address.to_string(),
        },
        session_name: "MediaMesh".to_string(),
        connection: Some(Connection::new(local.address)),
        timing: (0, 0),
        direction: None,
        attributes: Vec::new(),
        media,
    }
}

/// Adds `codec` on payload type `pt` (with Opus's fmtp).
fn push_codec(a: &mut MediaDescription, pt: u8, codec: Codec) {
    a.formats.push(pt.to_string());
    a.rtpmaps.push(RtpMap {
        payload_type: pt,
        encoding: codec.encoding().to_string(),
        clock_rate: codec.clock_rate(),
        channels: codec.channels(),
    });
    if codec == Codec::Opus {
        a.fmtps.push((pt, "minptime=10;useinbandfec=1".to_string()));
    }
}

/// Adds telephone-event (RFC 4733, events 0-16) at `rate` on `pt`.
fn push_telephone_event(a: &mut MediaDescription, pt: u8, rate: u32) {
    a.formats.push(pt.to_string());
    a.rtpmaps.push(RtpMap {
        payload_type: pt,
        encoding: "telephone-event".to_string(),
        clock_rate: rate,
        channels: None,
    });
    a.fmtps.push((pt, "0-16".to_string()));
}

/// Answers an offer (RFC 3264 section 6): the first plain-RTP audio stream
/// gets one codec (the first of our preferences the offer has) and
/// telephone-event if offered, every other stream is rejected with port 0,
/// and the direction is the offer's reversed, restricted by ours.
pub fn answer(
    offer: &SessionDescription,
    local: &LocalMedia,
    config: &AudioConfig,
) -> Result<(SessionDescription, Negotiated), SdpError> {
    let audio_index = offer
        .media
        .iter()
        .position(|m| m.media == "audio" && m.port != 0 && m.is_plain_rtp())
        .ok_or(SdpError::NoAudio)?;
    let om = &offer.media[audio_index];
    let (codec, pt) = config
        .codecs
        .iter()
        .find_map(|&c| {
            om.payload_types()
                .into_iter()
                .find(|&pt| c.matches(om, pt))
                .map(|pt| (c, pt))
        })
        .ok_or(SdpError::NoCodec)?;
    let dtmf = if config.dtmf {
        find_dtmf(om, codec.clock_rate())
    } else {
        None
    };
    let mut offered_dir = offer.direction_of(om);
    if offer
        .connection_for(om)
        .is_some_and(Connection::is_unspecified)
    {
        // RFC 2543 hold: the offerer wants nothing sent to it.
        offered_dir = match offered_dir {
            Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
            _ => Direction::Inactive,
        };
    }
    let direction = combine(offered_dir.reverse(), local.direction);

    let mut media = Vec::with_capacity(offer.media.len());
    for (i, m) in offer.media.iter().enumerate() {
        if i != audio_index {
            let mut r = MediaDescription::new(&m.media, 0, &m.proto);
            r.formats = m.formats.iter().take(1).cloned().collect();
            media.push(r);
            continue;
        }
        let mut a = MediaDescription::new("audio", local.port, &om.proto);
        push_codec(&mut a, pt, codec);
        if let Some(te) = dtmf {
            push_telephone_event(&mut a, te, om.rtpmap(te).map_or(8000, |r| r.clock_rate));
        }
        a.ptime = om.ptime.or(config.ptime);
        a.direction = Some(direction);
        media.push(a);
    }
    let answer = ours(local, media);
    let negotiated = Negotiated {
        codec,
        payload_type: pt,
        fmtp: om.fmtp(pt).map(str::to_string),
        dtmf_payload_type: dtmf,
        remote_rtp: remote_addr(offer, om),
        direction,
        ptime: om.ptime,
    };
    Ok((answer, negotiated))
}

/// The direction allowed by both what the answer may say and what we want.
fn combine(allowed: Direction, wanted: Direction) -> Direction {
    let send = allowed.sends() && wanted.sends();
    let recv = allowed.receives() && wanted.receives();
    match (send, recv) {
        (true, true) => Direction::SendRecv,
        (true, false) => Direction::SendOnly,
        (false, true) => Direction::RecvOnly,
        (false, false) => Direction::Inactive,
    }
}

/// Dynamic payload types of our offers.
const OPUS_PT: u8 = 111;
const DTMF_PT: u8 = 101;
const DTMF48_PT: u8 = 110;

/// Our offer for dial-out (RFC 3264 section 5): one RTP/AVP audio stream
/// with our codecs in preference order and telephone-event at 8000 Hz (and
/// at 48000 Hz when Opus is offered).
pub fn offer(local: &LocalMedia, config: &AudioConfig) -> SessionDescription {
    let mut a = MediaDescription::new("audio", local.port, "RTP/AVP");
    for &c in &config.codecs {
        let pt = c.static_payload_type().unwrap_or(OPUS_PT);
        if a.formats.contains(&pt.to_string()) {
            continue;
        }
        push_codec(&mut a, pt, c);
    }
    if config.dtmf {
        let mut rates = vec![(DTMF_PT, 8000)];
        if config.codecs.contains(&Codec::Opus) {
            rates.insert(0, (DTMF48_PT, 48000));
        }
        for (pt, rate) in rates {
            push_telephone_event(&mut a, pt, rate);
        }
    }
    a.ptime = config.ptime;
    a.direction = Some(local.direction);
    ours(local, vec![a])
}

/// Reads the answer to our offer: the codec is the answer's first format
/// that our offer had (RFC 3264 section 7).
pub fn negotiated_from_answer(
    our_offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<Negotiated, SdpError> {
    let om = our_offer.audio().ok_or(SdpError::NoAudio)?;
    let am = answer.audio().ok_or(SdpError::NoAudio)?;
    let candidates = [Codec::Opus, Codec::Pcmu, Codec::Pcma, Codec::G722];
    let (codec, pt) = am
        .payload_types()
        .into_iter()
        .filter(|pt| om.payload_types().contains(pt))
        .find_map(|pt| {
            candidates
                .iter()
                .find(|c| c.matches(om, pt) && (am.rtpmap(pt).is_none() || c.matches(am, pt)))
                .map(|&c| (c, pt))
        })
        .ok_or(SdpError::NoCodec)?;
    let dtmf = find_dtmf(am, codec.clock_rate()).filter(|pt| om.payload_types().contains(pt));
    let direction = our_offer.direction_of(om);
    let answered = answer.direction_of(am).reverse();
    let mut direction = combine(direction, answered);
    if answer
        .connection_for(am)
        .is_some_and(Connection::is_unspecified)
    {
        direction = combine(direction, Direction::RecvOnly);
    }
    Ok(Negotiated {
        codec,
        payload_type: pt,
        fmtp: am.fmtp(pt).map(str::to_string),
        dtmf_payload_type: dtmf,
        remote_rtp: remote_addr(answer, am),
        direction,
        ptime: am.ptime,
    })
}

#[cfg(test)]
mod tests;
