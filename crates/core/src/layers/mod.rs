//! Video layer selection: which packets of a layered source (simulcast streams,
//! temporal layers, SVC spatial layers) one subscriber gets, and how their
//! codec headers are rewritten so the subscriber's decoder sees one clean,
//! continuous stream.
//!
//! Each codec has a selector (one per subscription) that implements
//! [`Selector`]. The SFU feeds it every packet of the source together with the
//! simulcast stream the packet came on, after setting a target [`Layer`]; the
//! selector answers [`Decision::Drop`] or [`Decision::Forward`]. It switches
//! down at once and switches up only at a decodable point (a keyframe of the
//! new spatial layer, or a temporal switching point), asking for a keyframe
//! when it needs one. Sequence numbers and timestamps are not the selector's
//! job: the SFU rewrites them with [`crate::rewrite::Rewriter`], which is told
//! about every dropped packet of the forwarded stream
//! ([`Selector::forwarded_stream`]) so the output has no gaps the selector
//! made.

use crate::{Codec, MediaPacket};

pub mod simulcast;
pub mod vp8;

pub mod alloc;
pub mod meter;

pub mod av1_dd;
pub mod dd;
pub mod vp9;

/// A spatial and temporal layer index (0 = lowest). For simulcast the spatial
/// index is the stream's index in quality order (rid `q`/`h`/`f` or `0`/`1`/`2`
/// map to 0/1/2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Layer {
    pub spatial: u8,
    pub temporal: u8,
}

impl Layer {
    pub const fn new(spatial: u8, temporal: u8) -> Self {
        Self { spatial, temporal }
    }

    /// Each index limited to `max`'s.
    pub fn capped(self, max: Layer) -> Layer {
        Layer::new(
            self.spatial.min(max.spatial),
            self.temporal.min(max.temporal),
        )
    }
}

/// A replacement for the first bytes of a packet's payload: the output payload
/// is `bytes()` followed by `original[replaced..]`. Codec descriptors are
/// short, so the header lives inline without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadPatch {
    /// How many bytes at the start of the original payload are replaced.
    pub replaced: usize,
    len: u8,
    buf: [u8; PayloadPatch::MAX],
}

impl PayloadPatch {
    /// The longest header a patch can carry.
    pub const MAX: usize = 32;

    /// A patch that replaces `replaced` bytes with `header`. `None` if the
    /// header is longer than [`PayloadPatch::MAX`].
    pub fn new(replaced: usize, header: &[u8]) -> Option<Self> {
        if header.len() > Self::MAX {
            return None;
        }
        let mut buf = [0u8; Self::MAX];
        buf[..header.len()].copy_from_slice(header);
        Some(Self {
            replaced,
            len: header.len() as u8,
            buf,
        })
    }

    /// The new header bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// Builds the output payload from the original one. Returns `None` when
    /// the original is shorter than the replaced span.
    pub fn apply(&self, original: &[u8]) -> Option<Vec<u8>> {
        let rest = original.get(self.replaced..)?;
        let mut out = Vec::with_capacity(usize::from(self.len) + rest.len());
        out.extend_from_slice(self.bytes());
        out.extend_from_slice(rest);
        Some(out)
    }
}

/// What to do with one packet of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not for this subscriber (another stream or layer, or waiting for a
    /// decodable point). The SFU tells the rewriter so no sequence gap shows.
    Drop,
    /// Send it, with this marker bit and, when the codec header changes, this
    /// patch of the payload's first bytes.
    Forward(Forward),
}

/// A forwarded packet's rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// The RTP marker bit for the output (for SVC the end of the highest
    /// forwarded spatial layer of a picture, not the source's marker).
    pub marker: bool,
    /// The codec header rewrite (VP8/VP9 picture ids, TL0PICIDX), if any.
    pub patch: Option<PayloadPatch>,
    /// Whether the forwarded stream switched source here (a simulcast stream
    /// change): the SFU starts a new sequence/timestamp mapping.
    pub new_source: bool,
    /// The layer this packet belongs to.
    pub layer: Layer,
}

/// A new selector for a source, chosen by the first packet seen of it:
/// VP8 (simulcast and temporal layers), VP9 (SVC), AV1 with a Dependency
/// Descriptor (SVC), and whole-stream simulcast for H264 and AV1 without one.
pub fn new_selector(packet: &MediaPacket) -> Box<dyn Selector> {
    let best = Layer::new(u8::MAX, u8::MAX);
    match packet.codec {
        Codec::Vp8 => Box::new(vp8::Vp8Selector::new()),
        Codec::Vp9 => Box::new(vp9::Vp9Selector::new(best)),
        Codec::Av1 if packet.dependency_descriptor.is_some() => Box::new(dd::DdSelector::new(best)),
        _ => Box::new(simulcast::SimulcastSelector::new()),
    }
}

/// Whether a codec's spatial layers build on each other (SVC) rather than
/// being independent simulcast streams, for bitrate measurement.
pub fn is_svc(codec: Codec) -> bool {
    matches!(codec, Codec::Vp9)
}

/// The layer a packet belongs to, read from its payload where the codec
/// says (VP8 TID, VP9 SID/TID); otherwise its simulcast stream, temporal 0.
/// (AV1 layers live in the Dependency Descriptor, which needs the stream's
/// template structure: measured per stream.)
pub fn packet_layer(stream: u8, packet: &MediaPacket) -> Layer {
    match packet.codec {
        Codec::Vp8 => {
            let tid = vp8::Vp8Descriptor::parse(&packet.payload)
                .and_then(|(d, _)| d.tid)
                .unwrap_or(0);
            Layer::new(stream, tid)
        }
        Codec::Vp9 => match vp9::Vp9Descriptor::parse(&packet.payload) {
            Ok(d) => Layer::new(d.spatial(), d.temporal()),
            Err(_) => Layer::new(0, 0),
        },
        _ => Layer::new(stream, 0),
    }
}

/// One subscriber's view of a layered video source.
pub trait Selector: std::fmt::Debug + Send {
    /// The layer the subscriber should get from now on (the allocator's
    /// choice within the receiver's limits). Switching down takes effect at
    /// the next packet boundary that keeps the stream decodable; switching up
    /// waits for a decodable point.
    fn set_target(&mut self, target: Layer);

    /// The target last set.
    fn target(&self) -> Layer;

    /// The layer being forwarded now, `None` before the first decodable point.
    fn current(&self) -> Option<Layer>;

    /// Decides one packet. `stream` is the simulcast stream index the packet
    /// arrived on (0 for single-stream sources).
    fn on_packet(&mut self, stream: u8, packet: &MediaPacket) -> Decision;

    /// Whether the selector waits for a keyframe it has not seen (the SFU asks
    /// the publisher, rate limited). Reading it does not clear it: it clears
    /// when the keyframe arrives or the target no longer needs one.
    fn wants_keyframe(&self) -> bool;

    /// The simulcast stream whose keyframe [`Selector::wants_keyframe`] waits
    /// for. The default suits single-stream sources.
    fn keyframe_stream(&self) -> u8 {
        0
    }

    /// The simulcast stream whose packets are being forwarded (`None` before
    /// the first one). After [`Selector::on_packet`] returned
    /// [`Decision::Drop`] for a packet of this stream, the SFU reports it with
    /// [`crate::rewrite::Rewriter::drop_packet`]; packets of other streams are
    /// in other sequence number spaces and must not be reported. The default
    /// suits single-stream sources (SVC: every packet is on stream 0).
    fn forwarded_stream(&self) -> Option<u8> {
        self.current().map(|_| 0)
    }

    /// The Dependency Descriptor to send with the packet just forwarded, when
    /// it differs from the source's (`None`: forward the source's as is).
    fn descriptor(&self) -> Option<&[u8]> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_replaces_the_header_only() {
        let p = PayloadPatch::new(3, &[9, 8]).unwrap();
        assert_eq!(p.apply(&[1, 2, 3, 4, 5]).unwrap(), vec![9, 8, 4, 5]);
        assert!(p.apply(&[1, 2]).is_none());
        assert!(PayloadPatch::new(0, &[0; 33]).is_none());
    }
}
