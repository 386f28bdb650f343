//! What crosses the cluster, byte for byte: media packets of a track's
//! channel, feedback to a track's publisher, and a node's part of a room.
//!
//! Media is binary and small-headed (16 bytes before the optional audio
//! level and Dependency Descriptor); feedback and room shares are JSON, rare
//! and small. Every decoder returns an error for bytes that do not parse: a
//! peer node (or anything that reached the overlay) cannot panic us.

use std::sync::Arc;
use std::time::Instant;

use mediamesh_core::{Codec, MediaKind, MediaPacket};
use serde::{Deserialize, Serialize};

/// Version byte of the media encoding.
const MEDIA_V1: u8 = 1;
const FLAG_MARKER: u8 = 1;
const FLAG_KEYFRAME: u8 = 2;
const FLAG_LEVEL: u8 = 4;
const FLAG_DD: u8 = 8;
/// version, stream, codec, flags, seq (8), timestamp (4).
const MEDIA_HEADER: usize = 16;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("media message of {0} bytes is shorter than its header")]
    Truncated(usize),
    #[error("media message version {0} is not understood")]
    Version(u8),
    #[error("unknown codec id {0}")]
    Codec(u8),
    #[error("bad JSON: {0}")]
    Json(String),
}

fn codec_id(c: Codec) -> u8 {
    match c {
        Codec::Opus => 1,
        Codec::Pcmu => 2,
        Codec::Pcma => 3,
        Codec::G722 => 4,
        Codec::Vp8 => 5,
        Codec::Vp9 => 6,
        Codec::H264 => 7,
        Codec::Av1 => 8,
    }
}

fn codec_of(id: u8) -> Result<Codec, WireError> {
    Ok(match id {
        1 => Codec::Opus,
        2 => Codec::Pcmu,
        3 => Codec::Pcma,
        4 => Codec::G722,
        5 => Codec::Vp8,
        6 => Codec::Vp9,
        7 => Codec::H264,
        8 => Codec::Av1,
        x => return Err(WireError::Codec(x)),
    })
}

/// Encodes one packet of simulcast stream `stream`.
pub fn encode_media(stream: u8, p: &MediaPacket) -> Vec<u8> {
    let dd = p
        .dependency_descriptor
        .as_deref()
        .filter(|d| d.len() <= 255);
    let mut out =
        Vec::with_capacity(MEDIA_HEADER + 2 + dd.map_or(0, |d| d.len() + 1) + p.payload.len());
    let mut flags = 0;
    if p.marker {
        flags |= FLAG_MARKER;
    }
    if p.keyframe {
        flags |= FLAG_KEYFRAME;
    }
    if p.audio_level.is_some() {
        flags |= FLAG_LEVEL;
    }
    if dd.is_some() {
        flags |= FLAG_DD;
    }
    out.extend_from_slice(&[MEDIA_V1, stream, codec_id(p.codec), flags]);
    out.extend_from_slice(&p.seq.to_be_bytes());
    out.extend_from_slice(&p.timestamp.to_be_bytes());
    if let Some(level) = p.audio_level {
        out.push(level as u8);
    }
    if let Some(dd) = dd {
        // At most 255 (filtered above).
        out.push(dd.len() as u8);
        out.extend_from_slice(dd);
    }
    out.extend_from_slice(&p.payload);
    out
}

/// Decodes a media message; `arrival` is when it reached this node.
pub fn decode_media(b: &[u8], arrival: Instant) -> Result<(u8, MediaPacket), WireError> {
    let truncated = || WireError::Truncated(b.len());
    let header = b.get(..MEDIA_HEADER).ok_or_else(truncated)?;
    if header[0] != MEDIA_V1 {
        return Err(WireError::Version(header[0]));
    }
    let stream = header[1];
    let codec = codec_of(header[2])?;
    let flags = header[3];
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&header[4..12]);
    let mut ts = [0u8; 4];
    ts.copy_from_slice(&header[12..16]);
    let mut at = MEDIA_HEADER;
    let audio_level = if flags & FLAG_LEVEL != 0 {
        let l = *b.get(at).ok_or_else(truncated)?;
        at += 1;
        Some(l as i8)
    } else {
        None
    };
    let dependency_descriptor = if flags & FLAG_DD != 0 {
        let len = usize::from(*b.get(at).ok_or_else(truncated)?);
        let dd = b.get(at + 1..at + 1 + len).ok_or_else(truncated)?;
        at += 1 + len;
        Some(Arc::from(dd))
    } else {
        None
    };
    let payload = b.get(at..).ok_or_else(truncated)?;
    Ok((
        stream,
        MediaPacket {
            codec,
            seq: u64::from_be_bytes(seq),
            timestamp: u32::from_be_bytes(ts),
            marker: flags & FLAG_MARKER != 0,
            keyframe: flags & FLAG_KEYFRAME != 0,
            audio_level,
            dependency_descriptor,
            arrival,
            payload: Arc::from(payload),
        },
    ))
}

/// What a subscribing node tells a track's publisher node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Feedback {
    /// Its viewers need a keyframe of this simulcast stream (`None`: any).
    /// Already aggregated on the subscribing node.
    Keyframe { stream: Option<u8> },
    /// Someone on that node watches the track (sent periodically while
    /// true): the publisher must not be capped as unwatched.
    Watching,
}

/// A track as a room share lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedTrack {
    pub name: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// The track's channel number on its node (see [`crate::ChannelId`]).
    pub channel: u64,
    /// Its publisher takes no keyframe requests (RTMP): nodes that receive
    /// it keep its last GOP for viewers who start on it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gop_cached: bool,
}

/// [`MediaKind`] on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Audio,
    Video,
}

impl From<MediaKind> for Kind {
    fn from(k: MediaKind) -> Self {
        match k {
            MediaKind::Audio => Kind::Audio,
            MediaKind::Video => Kind::Video,
        }
    }
}

impl From<Kind> for MediaKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Audio => MediaKind::Audio,
            Kind::Video => MediaKind::Video,
        }
    }
}

/// A peer as a room share lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedPeer {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// Others are told it joined and left.
    pub announce_peer: bool,
    /// Others are told when its tracks start and stop.
    pub announce_tracks: bool,
    pub tracks: Vec<SharedTrack>,
}

/// One node's part of a room: the peers it hosts and their tracks. The
/// room as a node sees it is its own peers plus the latest share of every
/// live node. `version` grows with every change of the node's part, so an
/// older share arriving late (a query answer after a newer put) is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomShare {
    pub app: String,
    pub room: String,
    pub node: String,
    /// Changes when the node restarts (its channels are new).
    pub incarnation: u64,
    pub version: u64,
    pub peers: Vec<SharedPeer>,
}

/// What a media node reports of itself every second, for gateways to
/// place sessions: its load and the limits it takes sessions under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// Live sessions (WebRTC connections).
    pub sessions: u32,
    /// CPU used by the node's process, as a share of the whole machine
    /// (0.0-1.0).
    pub cpu: f32,
    /// Media received plus sent, bits per second.
    pub bitrate: u64,
    #[serde(default)]
    pub limits: LoadLimits,
    /// Where the node's zone is (latitude, longitude), if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<(f64, f64)>,
    /// The node takes no new sessions (shutting down).
    #[serde(default)]
    pub draining: bool,
}

/// A node is full when any measure reaches its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u32>,
    /// Share of the machine (0.0-1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f32>,
    /// Bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u64>,
}

pub fn encode_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (no maps with non-string
    // keys, no custom serializers).
    serde_json::to_vec(v).unwrap_or_default()
}

pub fn decode_json<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(b).map_err(|e| WireError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(level: Option<i8>, dd: Option<&[u8]>) -> MediaPacket {
        MediaPacket {
            codec: Codec::Vp9,
            seq: 0x1_0000_0005,
            timestamp: 0xdead_beef,
            marker: true,
            keyframe: false,
            audio_level: level,
            dependency_descriptor: dd.map(Arc::from),
            arrival: Instant::now(),
            payload: Arc::from(&[1u8, 2, 3, 4][..]),
        }
    }

    #[test]
    fn media_round_trips_with_and_without_extensions() {
        let now = Instant::now();
        for (level, dd) in [
            (None, None),
            (Some(-30), None),
            (None, Some(&[0x80u8, 1, 2][..])),
            (Some(0), Some(&[7u8][..])),
        ] {
            let p = packet(level, dd);
            let b = encode_media(2, &p);
            let (stream, q) = decode_media(&b, now).unwrap();
            assert_eq!(stream, 2);
            assert_eq!(q.codec, p.codec);
            assert_eq!(q.seq, p.seq);
            assert_eq!(q.timestamp, p.timestamp);
            assert_eq!((q.marker, q.keyframe), (true, false));
            assert_eq!(q.audio_level, level);
            assert_eq!(q.dependency_descriptor.as_deref(), dd);
            assert_eq!(&*q.payload, &[1, 2, 3, 4]);
            assert_eq!(q.arrival, now);
        }
    }

    #[test]
    fn bad_media_is_an_error_never_a_panic() {
        let now = Instant::now();
        let good = encode_media(0, &packet(Some(-10), Some(&[1, 2, 3])));
        // Every truncation of a message with both extensions.
        for n in 0..MEDIA_HEADER + 1 + 1 + 3 {
            assert!(decode_media(&good[..n], now).is_err(), "{n} bytes");
        }
        let mut v = good.clone();
        v[0] = 9;
        assert_eq!(decode_media(&v, now).unwrap_err(), WireError::Version(9));
        let mut c = good.clone();
        c[2] = 200;
        assert_eq!(decode_media(&c, now).unwrap_err(), WireError::Codec(200));
        // A descriptor length past the end.
        let mut d = good;
        d[MEDIA_HEADER + 1] = 250;
        assert!(decode_media(&d, now).is_err());
        // Arbitrary bytes.
        for seed in 0u32..2000 {
            let bytes: Vec<u8> = (0..(seed % 40))
                .map(|i| (seed.wrapping_mul(31).wrapping_add(i * 7)) as u8)
                .collect();
            let _ = decode_media(&bytes, now);
        }
    }

    #[test]
    fn shares_and_feedback_round_trip_and_reject_garbage() {
        let s = RoomShare {
            app: "app".into(),
            room: "r/1 é".into(),
            node: "a".into(),
            incarnation: 7,
            version: 3,
            peers: vec![SharedPeer {
                name: "alice".into(),
                metadata: Some("{\"x\":1}".into()),
                announce_peer: true,
                announce_tracks: true,
                tracks: vec![SharedTrack {
                    name: "video_main".into(),
                    kind: Kind::Video,
                    metadata: None,
                    channel: 12,
                    gop_cached: true,
                }],
            }],
        };
        assert_eq!(decode_json::<RoomShare>(&encode_json(&s)).unwrap(), s);
        for f in [
            Feedback::Keyframe { stream: Some(2) },
            Feedback::Keyframe { stream: None },
            Feedback::Watching,
        ] {
            assert_eq!(decode_json::<Feedback>(&encode_json(&f)).unwrap(), f);
        }
        assert!(decode_json::<RoomShare>(b"{\"app\":1}").is_err());
        assert!(decode_json::<Feedback>(b"\xff\xfe").is_err());
    }
}
