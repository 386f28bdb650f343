//! Simulcast stream selection for codecs whose payload needs no rewriting
//! (H.264 simulcast, or any codec sent as independent streams): forward one
//! stream, switch to the target stream at its keyframe.

use super::{Decision, Forward, Layer, Selector};
use crate::MediaPacket;

/// The stream being forwarded.
#[derive(Debug, Clone, Copy)]
struct Active {
    stream: u8,
    /// The sequence number of the keyframe switched to: earlier packets of
    /// the stream are older than it.
    first_seq: u64,
}

/// Forwards one simulcast stream (`stream` of [`Selector::on_packet`] is the
/// spatial layer) and switches to the target stream at the first packet of
/// its next keyframe (as flagged by [`crate::Codec::is_keyframe_start`]; for
/// H.264 an SPS or IDR slice, alone, in a STAP-A or starting an FU-A). That
/// packet has `new_source`; until it comes the current stream goes on and
/// [`Selector::wants_keyframe`] is true. No temporal filtering: the temporal
/// layer is always 0 and the payload is never patched.
#[derive(Debug, Default)]
pub struct SimulcastSelector {
    target: Layer,
    active: Option<Active>,
}

impl SimulcastSelector {
    /// A selector targeting stream 0 and waiting for a keyframe.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Selector for SimulcastSelector {
    fn set_target(&mut self, target: Layer) {
        self.target = target;
    }

    fn target(&self) -> Layer {
        self.target
    }

    fn current(&self) -> Option<Layer> {
        self.active.map(|a| Layer::new(a.stream, 0))
    }

    fn on_packet(&mut self, stream: u8, packet: &MediaPacket) -> Decision {
        let new_source = match self.active {
            Some(a) if a.stream == stream => {
                if packet.seq < a.first_seq {
                    return Decision::Drop;
                }
                false
            }
            _ if stream == self.target.spatial && packet.keyframe => {
                self.active = Some(Active {
                    stream,
                    first_seq: packet.seq,
                });
                true
            }
            _ => return Decision::Drop,
        };
        Decision::Forward(Forward {
            marker: packet.marker,
            patch: None,
            new_source,
            layer: Layer::new(stream, 0),
        })
    }

    fn wants_keyframe(&self) -> bool {
        self.active.is_none_or(|a| a.stream != self.target.spatial)
    }

    fn keyframe_stream(&self) -> u8 {
        self.target.spatial
    }

    fn forwarded_stream(&self) -> Option<u8> {
        self.active.map(|a| a.stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;
    use std::sync::Arc;
    use std::time::Instant;

    /// An H.264 packet: an IDR slice when `key`, else a non-IDR slice.
    fn h264(seq: u64, key: bool) -> MediaPacket {
        let payload: Vec<u8> = if key {
            vec![0x65, 0x88, 0x80]
        } else {
            vec![0x41, 0x9a, 0x00]
        };
        with_payload(seq, payload)
    }

    fn with_payload(seq: u64, payload: Vec<u8>) -> MediaPacket {
        MediaPacket {
            codec: Codec::H264,
            seq,
            timestamp: 0,
            marker: seq.is_multiple_of(2),
            keyframe: Codec::H264.is_keyframe_start(&payload),
            audio_level: None,
            dependency_descriptor: None,
            arrival: Instant::now(),
            payload: Arc::from(payload),
        }
    }

    /// `Some(new_source)` when forwarded.
    fn fwd(sel: &mut SimulcastSelector, stream: u8, p: &MediaPacket) -> Option<bool> {
        match sel.on_packet(stream, p) {
            Decision::Drop => None,
            Decision::Forward(f) => {
                assert_eq!(f.patch, None);
                assert_eq!(f.marker, p.marker);
                assert_eq!(f.layer, Layer::new(stream, 0));
                Some(f.new_source)
            }
        }
    }

    #[test]
    fn starts_at_the_target_streams_keyframe() {
        let mut sel = SimulcastSelector::new();
        sel.set_target(Layer::new(1, 2));
        assert_eq!(sel.target(), Layer::new(1, 2));
        assert!(sel.wants_keyframe());
        assert_eq!(sel.forwarded_stream(), None);
        assert_eq!(fwd(&mut sel, 1, &h264(10, false)), None);
        assert_eq!(fwd(&mut sel, 0, &h264(500, true)), None);
        assert_eq!(fwd(&mut sel, 1, &h264(11, true)), Some(true));
        assert_eq!(sel.current(), Some(Layer::new(1, 0)));
        assert_eq!(sel.forwarded_stream(), Some(1));
        assert!(!sel.wants_keyframe());
        assert_eq!(fwd(&mut sel, 1, &h264(12, false)), Some(false));
        // Late packet from before the keyframe.
        assert_eq!(fwd(&mut sel, 1, &h264(10, false)), None);
        // Another keyframe on the same stream is not a new source.
        assert_eq!(fwd(&mut sel, 1, &h264(13, true)), Some(false));
        assert_eq!(fwd(&mut sel, 0, &h264(501, false)), None);
    }

    #[test]
    fn switches_up_and_down_at_keyframes_only() {
        let mut sel = SimulcastSelector::new();
        assert_eq!(fwd(&mut sel, 0, &h264(1, true)), Some(true));
        sel.set_target(Layer::new(2, 0));
        assert!(sel.wants_keyframe());
        // Keyframe lost: stream 0 goes on, stream 2 dropped, still asking.
        for i in 0..4 {
            assert_eq!(fwd(&mut sel, 2, &h264(900 + i, false)), None);
            assert_eq!(fwd(&mut sel, 0, &h264(2 + i, false)), Some(false));
            assert!(sel.wants_keyframe());
            assert_eq!(sel.current(), Some(Layer::new(0, 0)));
        }
        // A keyframe of a stream that is not the target does nothing.
        assert_eq!(fwd(&mut sel, 1, &h264(300, true)), None);
        // STAP-A with SPS: the switch point.
        let stap = with_payload(
            910,
            vec![0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce],
        );
        assert_eq!(fwd(&mut sel, 2, &stap), Some(true));
        assert_eq!(fwd(&mut sel, 0, &h264(7, false)), None);
        assert_eq!(fwd(&mut sel, 2, &h264(911, false)), Some(false));
        // Down to 1: FU-A start of an IDR is the switch point.
        sel.set_target(Layer::new(1, 0));
        assert_eq!(fwd(&mut sel, 1, &h264(301, false)), None);
        assert_eq!(fwd(&mut sel, 2, &h264(912, false)), Some(false));
        let fu_start = with_payload(302, vec![0x7c, 0x85, 0x00]);
        let fu_end = with_payload(303, vec![0x7c, 0x45, 0x00]);
        assert_eq!(fwd(&mut sel, 1, &fu_start), Some(true));
        assert_eq!(fwd(&mut sel, 1, &fu_end), Some(false));
        assert_eq!(fwd(&mut sel, 2, &h264(913, true)), None);
        assert_eq!(sel.current(), Some(Layer::new(1, 0)));
        assert!(!sel.wants_keyframe());
    }
}
