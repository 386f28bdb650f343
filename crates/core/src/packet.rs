//! The one media packet type shared by every transport (and later the cluster).

use std::sync::Arc;
use std::time::Instant;

use crate::Codec;

/// An RTP packet as the core sees it: header fields it may rewrite, and the
/// payload shared (not copied) between every subscriber.
#[derive(Clone, Debug)]
pub struct MediaPacket {
    pub codec: Codec,
    /// Extended (rollover-counted) sequence number.
    pub seq: u64,
    /// RTP timestamp in the codec's clock rate.
    pub timestamp: u32,
    pub marker: bool,
    /// Whether this packet starts a keyframe (see [`Codec::is_keyframe_start`]).
    pub keyframe: bool,
    /// Audio level in -dBov (RFC 6464), when the sender tagged it.
    pub audio_level: Option<i8>,
    /// The AV1 Dependency Descriptor RTP header extension, raw, when present
    /// (parsed by [`crate::layers`] for AV1 SVC; other codecs may carry it too).
    pub dependency_descriptor: Option<Arc<[u8]>>,
    /// When the packet reached the server.
    pub arrival: Instant,
    pub payload: Arc<[u8]>,
}

impl MediaPacket {
    /// An audio packet made by the server itself (transcoded or relayed
    /// from a non-WebRTC source): every audio packet is a decodable start.
    pub fn audio(
        codec: Codec,
        seq: u64,
        timestamp: u32,
        payload: Vec<u8>,
        arrival: Instant,
    ) -> Self {
        MediaPacket {
            codec,
            seq,
            timestamp,
            marker: false,
            keyframe: true,
            audio_level: None,
            dependency_descriptor: None,
            arrival,
            payload: Arc::from(payload),
        }
    }
}
