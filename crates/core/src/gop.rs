//! The last group of pictures of a video track, for tracks whose publisher
//! cannot be asked for a keyframe (RTMP encoders): a receiver that starts
//! on such a track gets the packets since the last keyframe at once and
//! decodes the current picture, instead of waiting up to a whole GOP.

use std::time::Instant;

use crate::keyframe::MAX_STREAMS;
use crate::MediaPacket;

/// A GOP bigger than this is not kept (until the next keyframe): a
/// publisher with very long GOPs costs memory, not correctness.
pub const GOP_CACHE_MAX_BYTES: usize = 4 << 20;

#[derive(Debug, Default)]
struct Stream {
    packets: Vec<MediaPacket>,
    bytes: usize,
}

#[derive(Debug)]
pub struct GopCache {
    streams: Vec<Stream>,
    max_bytes: usize,
}

impl GopCache {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            streams: (0..MAX_STREAMS).map(|_| Stream::default()).collect(),
            max_bytes,
        }
    }

    /// Keeps `packet` of simulcast stream `stream`: a keyframe starts the
    /// stream's cache anew; other packets join a started cache; a cache
    /// grown over the limit is dropped until the next keyframe.
    pub fn on_packet(&mut self, stream: u8, packet: &MediaPacket) {
        let Some(s) = self.streams.get_mut(usize::from(stream)) else {
            return;
        };
        // A keyframe may start in several packets of its picture (H264:
        // SPS/PPS, then the IDR slice): only a new picture starts over.
        let same_picture = s
            .packets
            .first()
            .is_some_and(|p| p.timestamp == packet.timestamp);
        if packet.keyframe && !same_picture {
            s.packets.clear();
            s.bytes = 0;
        } else if s.packets.is_empty() {
            return;
        }
        s.bytes += packet.payload.len();
        s.packets.push(packet.clone());
        if s.bytes > self.max_bytes {
            s.packets = Vec::new();
            s.bytes = 0;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.streams.iter().all(|s| s.packets.is_empty())
    }

    /// The cached packets, stream by stream, each from its keyframe on.
    pub fn packets(&self) -> impl Iterator<Item = (u8, &MediaPacket)> {
        self.streams
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.packets.iter().map(move |p| (i as u8, p)))
    }

    /// When the newest cached packet arrived.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.packets().map(|(_, p)| p.arrival).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;
    use std::sync::Arc;

    fn pkt(seq: u64, keyframe: bool, len: usize) -> MediaPacket {
        MediaPacket {
            codec: Codec::H264,
            seq,
            timestamp: seq as u32 * 3000,
            marker: true,
            keyframe,
            audio_level: None,
            dependency_descriptor: None,
            arrival: Instant::now(),
            payload: Arc::from(vec![0u8; len]),
        }
    }

    fn seqs(c: &GopCache) -> Vec<(u8, u64)> {
        c.packets().map(|(s, p)| (s, p.seq)).collect()
    }

    #[test]
    fn keeps_packets_from_the_last_keyframe() {
        let mut c = GopCache::new(1000);
        c.on_packet(0, &pkt(1, false, 10));
        assert!(c.is_empty(), "nothing before the first keyframe");
        c.on_packet(0, &pkt(2, true, 10));
        c.on_packet(0, &pkt(3, false, 10));
        assert_eq!(seqs(&c), [(0, 2), (0, 3)]);
        c.on_packet(0, &pkt(4, true, 10));
        c.on_packet(0, &pkt(5, false, 10));
        assert_eq!(seqs(&c), [(0, 4), (0, 5)]);
        // Parameter sets and the IDR slice of one picture both start a
        // keyframe: the picture is kept whole.
        let mut sps = pkt(6, true, 10);
        let mut idr = pkt(7, true, 10);
        idr.timestamp = sps.timestamp;
        sps.marker = false;
        c.on_packet(0, &sps);
        c.on_packet(0, &idr);
        assert_eq!(seqs(&c), [(0, 6), (0, 7)]);
        // Streams are kept apart; out of range streams are ignored.
        c.on_packet(1, &pkt(9, true, 10));
        c.on_packet(200, &pkt(10, true, 10));
        assert_eq!(seqs(&c), [(0, 6), (0, 7), (1, 9)]);
    }

    #[test]
    fn an_oversized_gop_is_dropped_until_the_next_keyframe() {
        let mut c = GopCache::new(25);
        c.on_packet(0, &pkt(1, true, 10));
        c.on_packet(0, &pkt(2, false, 10));
        c.on_packet(0, &pkt(3, false, 10));
        assert!(c.is_empty());
        c.on_packet(0, &pkt(4, false, 10));
        assert!(c.is_empty(), "no partial GOP after the drop");
        c.on_packet(0, &pkt(5, true, 10));
        assert_eq!(seqs(&c), [(0, 5)]);
    }
}
