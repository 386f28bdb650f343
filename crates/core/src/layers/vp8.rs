//! VP8 (RFC 7741): the payload descriptor, and the selector for simulcast
//! streams and temporal layers.
//!
//! The payload descriptor:
//!
//! ```text
//!       0 1 2 3 4 5 6 7
//!      +-+-+-+-+-+-+-+-+
//!      |X|R|N|S|R| PID | (required)
//!      +-+-+-+-+-+-+-+-+
//! X:   |I|L|T|K| RSV   | (optional)
//!      +-+-+-+-+-+-+-+-+
//! I:   |M| PictureID   | (optional; 15 bits when M = 1)
//!      +-+-+-+-+-+-+-+-+
//! M:   |   PictureID   |
//!      +-+-+-+-+-+-+-+-+
//! L:   |   TL0PICIDX   | (optional)
//!      +-+-+-+-+-+-+-+-+
//! T/K: |TID|Y| KEYIDX  | (optional, present when T or K)
//!      +-+-+-+-+-+-+-+-+
//! ```
//!
//! [`Vp8Selector`] forwards one simulcast stream and the temporal layers up to
//! a target, and rewrites PictureID (always 15 bits), TL0PICIDX and KEYIDX so
//! the subscriber sees one continuous numbering across stream switches and
//! across pictures the selector drops.

use super::{Decision, Forward, Layer, PayloadPatch, Selector};
use crate::MediaPacket;

/// A picture id as carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureId {
    /// M = 0: 7 bits (0..=127).
    Short(u8),
    /// M = 1: 15 bits (0..=32767).
    Long(u16),
}

impl PictureId {
    /// The numeric value (masked to the field's width).
    pub fn value(self) -> u16 {
        match self {
            PictureId::Short(v) => u16::from(v & 0x7f),
            PictureId::Long(v) => v & 0x7fff,
        }
    }

    /// The number of distinct values of the field (128 or 32768).
    fn modulus(self) -> u64 {
        match self {
            PictureId::Short(_) => 1 << 7,
            PictureId::Long(_) => 1 << 15,
        }
    }

    fn len(self) -> usize {
        match self {
            PictureId::Short(_) => 1,
            PictureId::Long(_) => 2,
        }
    }
}

/// A VP8 payload descriptor (RFC 7741 section 4.2). Reserved bits are not
/// kept: [`Vp8Descriptor::write`] writes them as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Descriptor {
    /// N: the frame is not used as a reference.
    pub non_reference: bool,
    /// S: the packet starts a VP8 partition.
    pub start_of_partition: bool,
    /// PID: the partition index (3 bits).
    pub partition_index: u8,
    /// I: the picture id.
    pub picture_id: Option<PictureId>,
    /// L: TL0PICIDX, the running index of temporal base layer pictures.
    pub tl0_pic_idx: Option<u8>,
    /// T: the temporal layer index TID (2 bits).
    pub tid: Option<u8>,
    /// Y: layer sync (the frame depends only on the base layer). Meaningful
    /// only with `tid`.
    pub layer_sync: bool,
    /// K: KEYIDX, the running index of key pictures (5 bits).
    pub key_idx: Option<u8>,
}

impl Vp8Descriptor {
    /// The longest descriptor: required byte, X byte, 2 picture id bytes,
    /// TL0PICIDX, TID/Y/KEYIDX.
    pub const MAX_LEN: usize = 6;

    /// Parses the descriptor at the start of `payload`. Returns it with its
    /// length in bytes, or `None` when the payload is truncated.
    pub fn parse(payload: &[u8]) -> Option<(Self, usize)> {
        let b0 = *payload.first()?;
        let mut d = Vp8Descriptor {
            non_reference: b0 & 0x20 != 0,
            start_of_partition: b0 & 0x10 != 0,
            partition_index: b0 & 0x07,
            ..Self::default()
        };
        let mut i = 1;
        if b0 & 0x80 != 0 {
            let x = *payload.get(i)?;
            i += 1;
            if x & 0x80 != 0 {
                let p0 = *payload.get(i)?;
                i += 1;
                d.picture_id = Some(if p0 & 0x80 != 0 {
                    let p1 = *payload.get(i)?;
                    i += 1;
                    PictureId::Long(u16::from_be_bytes([p0 & 0x7f, p1]))
                } else {
                    PictureId::Short(p0)
                });
            }
            if x & 0x40 != 0 {
                d.tl0_pic_idx = Some(*payload.get(i)?);
                i += 1;
            }
            let t = x & 0x20 != 0;
            let k = x & 0x10 != 0;
            if t || k {
                let b = *payload.get(i)?;
                i += 1;
                if t {
                    d.tid = Some(b >> 6);
                    d.layer_sync = b & 0x20 != 0;
                }
                if k {
                    d.key_idx = Some(b & 0x1f);
                }
            }
        }
        Some((d, i))
    }

    /// Whether the extension byte (X) is needed.
    fn extended(&self) -> bool {
        self.picture_id.is_some()
            || self.tl0_pic_idx.is_some()
            || self.tid.is_some()
            || self.key_idx.is_some()
    }

    /// The length [`Vp8Descriptor::write`] produces.
    pub fn encoded_len(&self) -> usize {
        if !self.extended() {
            return 1;
        }
        2 + self.picture_id.map_or(0, PictureId::len)
            + usize::from(self.tl0_pic_idx.is_some())
            + usize::from(self.tid.is_some() || self.key_idx.is_some())
    }

    /// Writes the descriptor to the start of `out` and returns its length, or
    /// `None` when `out` is too short.
    pub fn write(&self, out: &mut [u8]) -> Option<usize> {
        let len = self.encoded_len();
        let out = out.get_mut(..len)?;
        let x = self.extended();
        out[0] = (u8::from(x) << 7)
            | (u8::from(self.non_reference) << 5)
            | (u8::from(self.start_of_partition) << 4)
            | (self.partition_index & 0x07);
        if !x {
            return Some(len);
        }
        out[1] = (u8::from(self.picture_id.is_some()) << 7)
            | (u8::from(self.tl0_pic_idx.is_some()) << 6)
            | (u8::from(self.tid.is_some()) << 5)
            | (u8::from(self.key_idx.is_some()) << 4);
        let mut i = 2;
        match self.picture_id {
            Some(PictureId::Short(v)) => {
                out[i] = v & 0x7f;
                i += 1;
            }
            Some(PictureId::Long(v)) => {
                let [hi, lo] = (v & 0x7fff).to_be_bytes();
                out[i] = 0x80 | hi;
                out[i + 1] = lo;
                i += 2;
            }
            None => {}
        }
        if let Some(t) = self.tl0_pic_idx {
            out[i] = t;
            i += 1;
        }
        if self.tid.is_some() || self.key_idx.is_some() {
            let mut b = 0;
            if let Some(tid) = self.tid {
                b |= (tid & 0x03) << 6 | u8::from(self.layer_sync) << 5;
            }
            if let Some(k) = self.key_idx {
                b |= k & 0x1f;
            }
            out[i] = b;
        }
        Some(len)
    }
}

/// How many recent pictures of the forwarded stream the selector remembers
/// (about two seconds at 30 fps). A packet of a picture older than this is
/// dropped.
const PICTURE_WINDOW: usize = 64;

/// Extended picture ids (source and output) start here, a multiple of 2^15,
/// so they can move back by a window without going below zero and keep the
/// wire value in their low bits.
const EXT_BASE: u64 = 1 << 32;

/// One remembered picture of the forwarded stream.
#[derive(Debug, Clone, Copy)]
struct Picture {
    /// Extended source picture id (`u64::MAX`: empty slot).
    src: u64,
    /// Extended output picture id, when forwarded.
    out: Option<u64>,
}

const EMPTY: Picture = Picture {
    src: u64::MAX,
    out: None,
};

/// Picture id mapping of the stream being forwarded: output ids are
/// consecutive over forwarded pictures. A picture dropped while no later one
/// was forwarded takes no output id; a picture not seen yet keeps its slot
/// (upstream loss or reordering), so a late one lands in it.
#[derive(Debug)]
struct Pictures {
    /// The first picture of the mapping (the keyframe switched to).
    first: u64,
    highest_seen: u64,
    highest_fwd: u64,
    highest_fwd_out: u64,
    /// Dropped pictures above `highest_fwd`.
    drops_above_fwd: u64,
    ring: [Picture; PICTURE_WINDOW],
}

impl Pictures {
    fn new(src: u64, out: u64) -> Self {
        let mut p = Pictures {
            first: src,
            highest_seen: src,
            highest_fwd: src,
            highest_fwd_out: out,
            drops_above_fwd: 0,
            ring: [EMPTY; PICTURE_WINDOW],
        };
        p.put(src, Some(out));
        p
    }

    /// The extended id of `pid`, the candidate nearest to the newest seen
    /// (works across a change between 7- and 15-bit ids: the short one is the
    /// low bits of the same counter).
    fn unwrap(&self, pid: PictureId) -> u64 {
        let m = pid.modulus();
        let ahead = (u64::from(pid.value()) + m - self.highest_seen % m) % m;
        if ahead < m / 2 {
            self.highest_seen + ahead
        } else {
            self.highest_seen - (m - ahead)
        }
    }

    /// Whether a picture not seen yet is outside the numbering (before the
    /// first picture, or older than the window).
    fn is_stale(&self, p: u64) -> bool {
        self.get(p).is_none() && (p < self.first || p + PICTURE_WINDOW as u64 <= self.highest_seen)
    }

    fn slot(src: u64) -> usize {
        (src % PICTURE_WINDOW as u64) as usize
    }

    fn get(&self, src: u64) -> Option<Picture> {
        self.ring
            .get(Self::slot(src))
            .copied()
            .filter(|p| p.src == src)
    }

    fn put(&mut self, src: u64, out: Option<u64>) {
        if let Some(p) = self.ring.get_mut(Self::slot(src)) {
            *p = Picture { src, out };
        }
    }

    /// Dropped pictures in `from..to` (the range spans less than the window).
    fn dropped_in(&self, from: u64, to: u64) -> u64 {
        (from..to)
            .filter(|&s| self.get(s).is_some_and(|p| p.out.is_none()))
            .count() as u64
    }

    /// Decides picture `p`: `Some((out, newest))` to forward it with output
    /// id `out` (`newest`: it is the newest forwarded picture), `None` to drop.
    /// `temporal` is the temporal layer being forwarded, switched here at a
    /// new picture.
    fn decide(&mut self, p: u64, info: PictureInfo, temporal: &mut u8) -> Option<(u64, bool)> {
        if let Some(known) = self.get(p) {
            return known.out.map(|o| (o, false));
        }
        if self.is_stale(p) {
            return None;
        }
        let new = p > self.highest_seen;
        if new {
            self.highest_seen = p;
            // Down at once; up at a keyframe, or one layer at a time at a
            // layer sync picture of the next layer.
            if info.keyframe || info.target < *temporal {
                *temporal = info.target;
            } else if info.target > *temporal && info.sync && info.tid == *temporal + 1 {
                *temporal = info.tid;
            }
        }
        if !info.keyframe && info.tid > *temporal {
            if p > self.highest_fwd {
                self.drops_above_fwd += 1;
            }
            self.put(p, None);
            return None;
        }
        let (out, newest) = if p > self.highest_fwd {
            let above = if new {
                0
            } else {
                self.dropped_in(p + 1, self.highest_seen + 1)
            };
            let between = self.drops_above_fwd.saturating_sub(above);
            let out = self.highest_fwd_out + (p - self.highest_fwd) - between;
            self.highest_fwd = p;
            self.highest_fwd_out = out;
            self.drops_above_fwd = above;
            (out, true)
        } else {
            let between = self.dropped_in(p + 1, self.highest_fwd);
            let out = self.highest_fwd_out - (self.highest_fwd - p) + between;
            (out, false)
        };
        self.put(p, Some(out));
        Some((out, newest))
    }
}

/// What [`Pictures::decide`] needs to know of a picture.
#[derive(Debug, Clone, Copy)]
struct PictureInfo {
    tid: u8,
    sync: bool,
    keyframe: bool,
    /// The target temporal layer.
    target: u8,
}

/// The stream being forwarded.
#[derive(Debug)]
struct Active {
    stream: u8,
    /// The temporal layer forwarded.
    temporal: u8,
    /// The sequence number of the keyframe switched to: earlier packets of
    /// the stream belong to pictures before it.
    first_seq: u64,
    /// `None` until the stream sends a picture id.
    pictures: Option<Pictures>,
    /// Added to the source TL0PICIDX, set at the first one seen.
    tl0_offset: Option<u8>,
    /// Added to the source KEYIDX (mod 32), set at the first one seen.
    key_idx_offset: Option<u8>,
}

/// The last values the subscriber got (of the newest forwarded picture),
/// which the next stream continues from.
#[derive(Debug, Default)]
struct Output {
    picture_id: Option<u64>,
    tl0: Option<u8>,
    key_idx: Option<u8>,
}

impl Output {
    /// The output id of the first picture of a new mapping: the next after
    /// the last one sent, or the source's own for the very first.
    fn next_picture_id(&self, pid: PictureId) -> u64 {
        self.picture_id
            .map_or(EXT_BASE + u64::from(pid.value()), |last| last + 1)
    }
}

/// VP8 layer selection for one subscriber: one simulcast stream (the
/// `stream` index given to [`Selector::on_packet`] is the spatial layer) and
/// its temporal layers up to the target.
///
/// - Only the current stream is forwarded. A different target stream is
///   switched to at its next keyframe (that packet has `new_source`); until
///   then the current one goes on and [`Selector::wants_keyframe`] is true.
/// - Temporal layers: pictures with TID above the forwarded layer are
///   dropped. Down-switches happen at the next new picture; up-switches one
///   layer at a time at a picture of the next layer with Y = 1, or at once at
///   a keyframe.
/// - PictureID (always written in 15 bits), TL0PICIDX and KEYIDX are rewritten
///   so the output has no gap the selector made, across drops and switches.
///   Packets without a picture id are forwarded unchanged (layer 0).
#[derive(Debug)]
pub struct Vp8Selector {
    target: Layer,
    active: Option<Active>,
    output: Output,
}

impl Default for Vp8Selector {
    fn default() -> Self {
        Self::new()
    }
}

impl Vp8Selector {
    /// A selector targeting layer (0, 0) and waiting for a keyframe.
    pub fn new() -> Self {
        Self {
            target: Layer::default(),
            active: None,
            output: Output::default(),
        }
    }

    /// Starts forwarding `stream` at its keyframe `packet`.
    fn start(
        &mut self,
        stream: u8,
        packet: &MediaPacket,
        desc: &Vp8Descriptor,
        len: usize,
    ) -> Decision {
        let mut active = Active {
            stream,
            temporal: self.target.temporal,
            first_seq: packet.seq,
            pictures: None,
            tl0_offset: None,
            key_idx_offset: None,
        };
        let out = desc.picture_id.map(|pid| {
            let out = self.output.next_picture_id(pid);
            active.pictures = Some(Pictures::new(EXT_BASE + u64::from(pid.value()), out));
            (out, true)
        });
        let active = self.active.insert(active);
        let forward = Forward {
            marker: packet.marker,
            patch: None,
            new_source: true,
            // Without picture ids temporal information is not used (layer 0).
            layer: Layer::new(stream, desc.picture_id.and(desc.tid).unwrap_or(0)),
        };
        finish(active, &mut self.output, packet, desc, len, out, forward)
    }
}

/// Decides the rest of a forwarded packet: its picture's output id (`out`,
/// `None` without picture id) and the header patch; updates the continuity
/// state when the picture is the newest forwarded.
fn finish(
    active: &mut Active,
    output: &mut Output,
    packet: &MediaPacket,
    desc: &Vp8Descriptor,
    len: usize,
    out: Option<(u64, bool)>,
    mut forward: Forward,
) -> Decision {
    let Some((out_pid, newest)) = out else {
        return Decision::Forward(forward);
    };
    let mut d = *desc;
    d.picture_id = Some(PictureId::Long((out_pid & 0x7fff) as u16));
    if let Some(src) = desc.tl0_pic_idx {
        let offset = *active.tl0_offset.get_or_insert_with(|| {
            output
                .tl0
                .map_or(0, |last| last.wrapping_add(1).wrapping_sub(src))
        });
        d.tl0_pic_idx = Some(src.wrapping_add(offset));
    }
    if let Some(src) = desc.key_idx {
        let offset = *active.key_idx_offset.get_or_insert_with(|| {
            output
                .key_idx
                .map_or(0, |last| last.wrapping_add(1).wrapping_sub(src) & 0x1f)
        });
        d.key_idx = Some(src.wrapping_add(offset) & 0x1f);
    }
    if newest {
        output.picture_id = Some(out_pid);
        output.tl0 = d.tl0_pic_idx.or(output.tl0);
        output.key_idx = d.key_idx.or(output.key_idx);
    }
    let mut buf = [0u8; Vp8Descriptor::MAX_LEN];
    let Some(n) = d.write(&mut buf) else {
        return Decision::Drop;
    };
    let header = &buf[..n];
    if packet.payload.get(..len) != Some(header) {
        let Some(patch) = PayloadPatch::new(len, header) else {
            return Decision::Drop;
        };
        forward.patch = Some(patch);
    }
    Decision::Forward(forward)
}

impl Selector for Vp8Selector {
    fn set_target(&mut self, target: Layer) {
        self.target = target;
    }

    fn target(&self) -> Layer {
        self.target
    }

    fn current(&self) -> Option<Layer> {
        self.active
            .as_ref()
            .map(|a| Layer::new(a.stream, a.temporal))
    }

    fn on_packet(&mut self, stream: u8, packet: &MediaPacket) -> Decision {
        let Some((desc, len)) = Vp8Descriptor::parse(&packet.payload) else {
            return Decision::Drop;
        };
        let active = match self.active.as_mut() {
            Some(a) if a.stream == stream => a,
            _ => {
                if stream == self.target.spatial && packet.keyframe {
                    return self.start(stream, packet, &desc, len);
                }
                return Decision::Drop;
            }
        };
        if packet.seq < active.first_seq {
            return Decision::Drop;
        }
        let mut forward = Forward {
            marker: packet.marker,
            patch: None,
            new_source: false,
            layer: Layer::new(stream, 0),
        };
        let Some(pid) = desc.picture_id else {
            // No picture id: nothing to rewrite, no temporal information.
            return Decision::Forward(forward);
        };
        let tid = desc.tid.unwrap_or(0);
        forward.layer.temporal = tid;
        let info = PictureInfo {
            tid,
            sync: desc.layer_sync,
            keyframe: packet.keyframe,
            target: self.target.temporal,
        };
        let known = active.pictures.as_mut().and_then(|pictures| {
            let p = pictures.unwrap(pid);
            // A keyframe that does not fit the numbering (the encoder
            // restarted its counters) starts a new one rather than being
            // dropped as old.
            (!packet.keyframe || !pictures.is_stale(p)).then_some((pictures, p))
        });
        let out = match known {
            Some((pictures, p)) => match pictures.decide(p, info, &mut active.temporal) {
                Some(out) => out,
                None => return Decision::Drop,
            },
            None => {
                // The first picture id of the stream (its keyframe had none),
                // or a keyframe restarting the numbering: the output goes on
                // from the last id (and TL0PICIDX/KEYIDX) sent.
                let out = self.output.next_picture_id(pid);
                active.pictures = Some(Pictures::new(EXT_BASE + u64::from(pid.value()), out));
                active.tl0_offset = None;
                active.key_idx_offset = None;
                if packet.keyframe {
                    active.temporal = self.target.temporal;
                }
                (out, true)
            }
        };
        finish(
            active,
            &mut self.output,
            packet,
            &desc,
            len,
            Some(out),
            forward,
        )
    }

    fn wants_keyframe(&self) -> bool {
        self.active
            .as_ref()
            .is_none_or(|a| a.stream != self.target.spatial)
    }

    fn keyframe_stream(&self) -> u8 {
        self.target.spatial
    }

    fn forwarded_stream(&self) -> Option<u8> {
        self.active.as_ref().map(|a| a.stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;
    use std::sync::Arc;
    use std::time::Instant;

    /// One VP8 packet with I (15-bit), L and T set: stream picture `pid`,
    /// TL0PICIDX `tl0`, layer `tid` with sync `y`; `start` marks the first
    /// packet of a frame, `key` a keyframe (only meaningful with `start`).
    #[derive(Clone, Copy)]
    struct P {
        seq: u64,
        pid: u16,
        tl0: u8,
        tid: u8,
        y: bool,
        start: bool,
        key: bool,
    }

    fn p(seq: u64, pid: u16, tl0: u8, tid: u8) -> P {
        P {
            seq,
            pid,
            tl0,
            tid,
            y: false,
            start: true,
            key: false,
        }
    }

    impl P {
        fn key(mut self) -> Self {
            self.key = true;
            self
        }
        fn sync(mut self) -> Self {
            self.y = true;
            self
        }
        fn cont(mut self) -> Self {
            self.start = false;
            self
        }
        fn build(self) -> MediaPacket {
            let d = Vp8Descriptor {
                start_of_partition: self.start,
                picture_id: Some(PictureId::Long(self.pid)),
                tl0_pic_idx: Some(self.tl0),
                tid: Some(self.tid),
                layer_sync: self.y,
                ..Default::default()
            };
            packet_with(self.seq, d, self.key)
        }
    }

    fn packet_with(seq: u64, d: Vp8Descriptor, key: bool) -> MediaPacket {
        let mut buf = [0u8; Vp8Descriptor::MAX_LEN];
        let n = d.write(&mut buf).unwrap();
        let mut payload = buf[..n].to_vec();
        // VP8 frame header: bit 0 is 0 for keyframes; then some bytes.
        payload.extend_from_slice(&[if key { 0x00 } else { 0x01 }, 0xaa, 0xbb]);
        packet(seq, payload)
    }

    fn packet(seq: u64, payload: Vec<u8>) -> MediaPacket {
        MediaPacket {
            codec: Codec::Vp8,
            seq,
            timestamp: (seq as u32).wrapping_mul(3000),
            marker: false,
            keyframe: Codec::Vp8.is_keyframe_start(&payload),
            audio_level: None,
            dependency_descriptor: None,
            arrival: Instant::now(),
            payload: Arc::from(payload),
        }
    }

    /// The descriptor the subscriber receives, or `None` when dropped.
    fn out(sel: &mut Vp8Selector, stream: u8, pkt: &MediaPacket) -> Option<(Vp8Descriptor, bool)> {
        match sel.on_packet(stream, pkt) {
            Decision::Drop => None,
            Decision::Forward(f) => {
                let payload = match f.patch {
                    Some(patch) => patch.apply(&pkt.payload).unwrap(),
                    None => pkt.payload.to_vec(),
                };
                // The VP8 data after the descriptor is untouched.
                assert_eq!(
                    payload[payload.len() - 2..],
                    pkt.payload[pkt.payload.len() - 2..]
                );
                let (d, _) = Vp8Descriptor::parse(&payload).unwrap();
                Some((d, f.new_source))
            }
        }
    }

    /// Output (picture id, TL0PICIDX) of a packet, `None` when dropped.
    fn ids(sel: &mut Vp8Selector, stream: u8, pkt: P) -> Option<(u16, u8)> {
        out(sel, stream, &pkt.build())
            .map(|(d, _)| (d.picture_id.unwrap().value(), d.tl0_pic_idx.unwrap()))
    }

    fn started(target: Layer) -> Vp8Selector {
        let mut sel = Vp8Selector::new();
        sel.set_target(target);
        sel
    }

    /// The SFU's loop over a selector and a rewriter: two interleaved
    /// streams with three temporal layers, switches of stream and of
    /// temporal layer; the subscriber must see contiguous sequence numbers
    /// and picture ids, and TL0PICIDX advancing by one per base picture.
    #[test]
    fn with_the_rewriter_the_output_is_continuous() {
        use crate::rewrite::Rewriter;
        use std::time::Duration;

        let t0 = Instant::now();
        let mut sel = started(Layer::new(0, 2));
        let mut rw = Rewriter::new(90_000);
        // Per stream: first seq (overlapping numbers, both crossing the
        // 16-bit wrap), first picture id (stream 0 crosses the 15-bit wrap),
        // first TL0PICIDX (stream 0 crosses 255), keyframe pictures.
        let seq0 = [65_480u64, 65_500];
        let pid0 = [32_740u16, 100];
        let tl00 = [250u8, 17];
        let keys: [&[u16]; 2] = [&[0, 20, 40], &[12, 32]];
        let mut out = Vec::new();
        let mut switches = 0;
        for pic in 0..60u16 {
            match pic {
                5 => sel.set_target(Layer::new(1, 0)),
                15 => sel.set_target(Layer::new(1, 2)),
                25 => sel.set_target(Layer::new(0, 1)),
                _ => {}
            }
            let tid = [0, 2, 1, 2][usize::from(pic % 4)];
            for stream in 0..2u8 {
                let i = usize::from(stream);
                for part in 0..2u64 {
                    let pk = P {
                        seq: seq0[i] + u64::from(pic) * 2 + part,
                        pid: (pid0[i] + pic) & 0x7fff,
                        tl0: tl00[i].wrapping_add((pic / 4) as u8),
                        tid,
                        // Sync: the first TL2 and the TL1 after each base picture.
                        y: pic % 4 != 3,
                        start: part == 0,
                        key: part == 0 && keys[i].contains(&pic),
                    };
                    let mut packet = pk.build();
                    packet.timestamp = u32::from(pic) * 3000;
                    packet.marker = part == 1;
                    let arrival = t0 + Duration::from_millis(u64::from(pic) * 33);
                    match sel.on_packet(stream, &packet) {
                        Decision::Forward(f) => {
                            if f.new_source {
                                switches += 1;
                                rw.switch_source();
                            }
                            let (seq, ts) =
                                rw.rewrite(packet.seq, packet.timestamp, arrival).unwrap();
                            let payload = match f.patch {
                                Some(patch) => patch.apply(&packet.payload).unwrap(),
                                None => packet.payload.to_vec(),
                            };
                            let (d, _) = Vp8Descriptor::parse(&payload).unwrap();
                            assert_eq!(f.marker, packet.marker);
                            out.push((stream, pic, packet.seq, seq, ts, d));
                        }
                        Decision::Drop => {
                            if sel.forwarded_stream() == Some(stream) {
                                rw.drop_packet(packet.seq);
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(switches, 3);
        // Which pictures went out: stream 0 all layers, then only TL0 once the
        // target is (1, 0) at 5, until stream 1's keyframe at 12; stream 1
        // TL0, then (target TL2 at 15) up to TL1 at its sync picture 18 and
        // TL2 at 21, down to TL1 at 25 (target (0, 1)); stream 0 TL0 and TL1
        // from its keyframe at 40.
        let pics: Vec<(u8, u16)> = out
            .iter()
            .filter(|o| o.5.start_of_partition)
            .map(|o| (o.0, o.1))
            .collect();
        let mut want: Vec<(u8, u16)> = [0, 1, 2, 3, 4, 8, 12].map(|p| (0, p)).to_vec();
        want.extend([12, 16, 18, 20, 21, 22, 23, 24].map(|p| (1, p)));
        want.extend((26..40).step_by(2).map(|p| (1, p)));
        want.extend((40..60).step_by(2).map(|p| (0, p)));
        assert_eq!(pics, want);
        // Sequence numbers: 1, 2, 3, ... with no gap.
        for (i, o) in out.iter().enumerate() {
            assert_eq!(o.3, i as u64 + 1, "{:?}", (o.0, o.1));
        }
        // Picture ids: the same within a picture, +1 from one picture to the
        // next (mod 2^15); TL0PICIDX +1 at each base picture, else the same.
        assert_eq!(out[0].5.picture_id, Some(PictureId::Long(32_740)));
        for w in out.windows(2) {
            let (a, b) = (&w[0].5, &w[1].5);
            let (pa, pb) = (a.picture_id.unwrap(), b.picture_id.unwrap());
            assert!(matches!(pb, PictureId::Long(_)));
            let step = (pb.value() + 0x8000 - pa.value()) & 0x7fff;
            let new_picture = b.start_of_partition;
            assert_eq!(step, u16::from(new_picture), "{:?}", (w[1].0, w[1].1));
            let tl0_step = b.tl0_pic_idx.unwrap().wrapping_sub(a.tl0_pic_idx.unwrap());
            let base = new_picture && b.tid == Some(0);
            assert_eq!(tl0_step, u8::from(base), "{:?}", (w[1].0, w[1].1));
            // Timestamps never go back.
            assert!(w[1].4.wrapping_sub(w[0].4) < u32::MAX / 2);
        }
        // The wraps did happen: picture id past 32767, TL0PICIDX past 255,
        // source sequence numbers of stream 1 past 65535.
        let n = pics.len() as u16;
        assert!(32_740 + n > 0x8000);
        let last = out.last().unwrap().5;
        assert_eq!(last.picture_id.unwrap().value(), (32_740 + n - 1) & 0x7fff);
        assert!(out.iter().any(|o| o.5.tl0_pic_idx == Some(0)));
        assert!(out.iter().any(|o| o.0 == 1 && o.2 > 65_536));
    }

    #[test]
    fn descriptor_round_trips() {
        let cases = [
            Vp8Descriptor::default(),
            Vp8Descriptor {
                non_reference: true,
                start_of_partition: true,
                partition_index: 5,
                ..Default::default()
            },
            Vp8Descriptor {
                picture_id: Some(PictureId::Short(0x55)),
                ..Default::default()
            },
            Vp8Descriptor {
                start_of_partition: true,
                picture_id: Some(PictureId::Long(0x1234)),
                tl0_pic_idx: Some(200),
                tid: Some(2),
                layer_sync: true,
                key_idx: Some(17),
                ..Default::default()
            },
            Vp8Descriptor {
                key_idx: Some(31),
                ..Default::default()
            },
            Vp8Descriptor {
                tid: Some(3),
                ..Default::default()
            },
        ];
        for d in cases {
            let mut buf = [0u8; Vp8Descriptor::MAX_LEN];
            let n = d.write(&mut buf).unwrap();
            assert_eq!(n, d.encoded_len());
            let mut payload = buf[..n].to_vec();
            payload.push(0x42);
            assert_eq!(Vp8Descriptor::parse(&payload), Some((d, n)), "{d:?}");
        }
        // Exact bytes of the full form.
        let mut buf = [0u8; 6];
        cases[3].write(&mut buf).unwrap();
        assert_eq!(buf, [0x90, 0xf0, 0x92, 0x34, 200, 0b1011_0001]);
        // Too small an output buffer.
        assert_eq!(cases[3].write(&mut [0u8; 5]), None);
    }

    #[test]
    fn descriptor_parses_wire_bytes() {
        // X, S; I with 7-bit id 0x12; L; T/K byte TID=1 Y=0 KEYIDX=3.
        let (d, n) = Vp8Descriptor::parse(&[0x90, 0xf0, 0x12, 7, 0x43, 0x9d]).unwrap();
        assert_eq!(n, 5);
        assert_eq!(d.picture_id, Some(PictureId::Short(0x12)));
        assert_eq!(d.tl0_pic_idx, Some(7));
        assert_eq!(d.tid, Some(1));
        assert!(!d.layer_sync);
        assert_eq!(d.key_idx, Some(3));
        // K only: TID bits ignored.
        let (d, n) = Vp8Descriptor::parse(&[0x80, 0x10, 0xff]).unwrap();
        assert_eq!((d.tid, d.key_idx, n), (None, Some(31), 3));
        // X with no fields.
        let (d, n) = Vp8Descriptor::parse(&[0x80, 0x00, 0x01]).unwrap();
        assert_eq!((d, n), (Vp8Descriptor::default(), 2));
    }

    #[test]
    fn truncated_or_garbage_never_panics() {
        let full = [0x90, 0xf0, 0x92, 0x34, 200, 0b1011_0001];
        for n in 0..full.len() {
            assert_eq!(Vp8Descriptor::parse(&full[..n]), None, "{n}");
        }
        let mut sel = started(Layer::new(0, 2));
        let mut x: u32 = 12345;
        for seq in 0..5000u64 {
            let len = (seq % 9) as usize;
            let payload: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let pkt = packet(seq, payload);
            let stream = (seq % 3) as u8;
            if let Decision::Forward(f) = sel.on_packet(stream, &pkt) {
                if let Some(patch) = f.patch {
                    assert!(patch.apply(&pkt.payload).is_some());
                }
            }
        }
        // A truncated packet on the forwarded stream is dropped.
        let mut sel = started(Layer::new(0, 0));
        assert!(ids(&mut sel, 0, p(1, 10, 1, 0).key()).is_some());
        assert_eq!(
            sel.on_packet(0, &packet(2, vec![0x90, 0xf0, 0x80])),
            Decision::Drop
        );
    }

    #[test]
    fn waits_for_the_first_keyframe_of_the_target_stream() {
        let mut sel = started(Layer::new(1, 0));
        assert!(sel.wants_keyframe());
        assert_eq!(sel.current(), None);
        assert_eq!(ids(&mut sel, 1, p(1, 100, 5, 0)), None);
        // A keyframe of another stream does not start anything.
        assert_eq!(ids(&mut sel, 0, p(900, 7, 1, 0).key()), None);
        assert!(sel.wants_keyframe());
        let (d, new) = out(&mut sel, 1, &p(2, 101, 6, 0).key().build()).unwrap();
        assert!(new);
        // The first mapping keeps the source's numbering.
        assert_eq!(d.picture_id, Some(PictureId::Long(101)));
        assert_eq!(d.tl0_pic_idx, Some(6));
        assert!(!sel.wants_keyframe());
        assert_eq!(sel.current(), Some(Layer::new(1, 0)));
        // A late packet from before the keyframe is dropped.
        assert_eq!(ids(&mut sel, 1, p(1, 100, 5, 0).cont()), None);
        // Following packets are not a new source.
        let (_, new) = out(&mut sel, 1, &p(3, 101, 6, 0).cont().build()).unwrap();
        assert!(!new);
    }

    #[test]
    fn no_patch_when_nothing_changes() {
        let mut sel = started(Layer::new(0, 2));
        let pkt = p(1, 300, 9, 0).key().build();
        match sel.on_packet(0, &pkt) {
            Decision::Forward(f) => {
                assert_eq!(f.patch, None);
                assert_eq!(f.layer, Layer::new(0, 0));
            }
            Decision::Drop => panic!("dropped"),
        }
    }

    #[test]
    fn marker_follows_the_source() {
        let mut sel = started(Layer::new(0, 0));
        let mut pkt = p(1, 300, 9, 0).key().build();
        pkt.marker = true;
        let Decision::Forward(f) = sel.on_packet(0, &pkt) else {
            panic!("dropped")
        };
        assert!(f.marker);
        let pkt = p(2, 301, 10, 0).build();
        let Decision::Forward(f) = sel.on_packet(0, &pkt) else {
            panic!("dropped")
        };
        assert!(!f.marker);
    }

    /// L1T3 pattern: TID 0,2,1,2 repeating, TL0PICIDX counting base pictures.
    fn l1t3(pic: u16) -> (u8, u8) {
        let tid = [0, 2, 1, 2][usize::from(pic % 4)];
        (tid, (pic / 4) as u8)
    }

    #[test]
    fn temporal_filtering_keeps_picture_ids_contiguous() {
        let mut sel = started(Layer::new(0, 0));
        let mut got = Vec::new();
        for pic in 0..12u16 {
            let (tid, tl0) = l1t3(pic);
            let mut pk = p(u64::from(pic) * 2, 1000 + pic, tl0, tid);
            if pic == 0 {
                pk = pk.key();
            }
            // Two packets per picture.
            let a = ids(&mut sel, 0, pk);
            let b = ids(
                &mut sel,
                0,
                P {
                    seq: pk.seq + 1,
                    ..pk.cont()
                },
            );
            assert_eq!(a, b);
            got.push(a);
        }
        let fwd: Vec<_> = got.iter().flatten().copied().collect();
        assert_eq!(fwd, vec![(1000, 0), (1001, 1), (1002, 2)]);
        assert_eq!(got.iter().filter(|g| g.is_none()).count(), 9);
    }

    #[test]
    fn temporal_switch_up_waits_for_sync_and_down_is_immediate() {
        let mut sel = started(Layer::new(0, 0));
        assert_eq!(ids(&mut sel, 0, p(1, 0, 0, 0).key()), Some((0, 0)));
        assert_eq!(ids(&mut sel, 0, p(2, 1, 0, 2)), None);
        sel.set_target(Layer::new(0, 2));
        // TL2 without sync, TL2 sync (but TL1 is not forwarded yet), TL1 without sync.
        assert_eq!(ids(&mut sel, 0, p(3, 2, 0, 2)), None);
        assert_eq!(ids(&mut sel, 0, p(4, 3, 0, 2).sync()), None);
        assert_eq!(ids(&mut sel, 0, p(5, 4, 0, 1)), None);
        assert_eq!(sel.current(), Some(Layer::new(0, 0)));
        assert_eq!(ids(&mut sel, 0, p(6, 5, 1, 0)), Some((1, 1)));
        // TL1 with sync: up to 1.
        assert_eq!(ids(&mut sel, 0, p(7, 6, 1, 1).sync()), Some((2, 1)));
        assert_eq!(sel.current(), Some(Layer::new(0, 1)));
        assert_eq!(ids(&mut sel, 0, p(8, 7, 1, 2)), None);
        assert_eq!(ids(&mut sel, 0, p(9, 8, 1, 1)), Some((3, 1)));
        // TL2 with sync: up to 2.
        assert_eq!(ids(&mut sel, 0, p(10, 9, 1, 2).sync()), Some((4, 1)));
        assert_eq!(ids(&mut sel, 0, p(11, 10, 2, 0)), Some((5, 2)));
        assert_eq!(ids(&mut sel, 0, p(12, 11, 2, 2)), Some((6, 2)));
        assert_eq!(sel.current(), Some(Layer::new(0, 2)));
        // Down to 0: the picture in progress completes, the next new one is filtered.
        sel.set_target(Layer::new(0, 0));
        assert_eq!(ids(&mut sel, 0, p(13, 11, 2, 2).cont()), Some((6, 2)));
        assert_eq!(ids(&mut sel, 0, p(14, 12, 2, 1)), None);
        assert_eq!(sel.current(), Some(Layer::new(0, 0)));
        assert_eq!(ids(&mut sel, 0, p(15, 13, 2, 2)), None);
        assert_eq!(ids(&mut sel, 0, p(16, 14, 3, 0)), Some((7, 3)));
        // Up at a keyframe: all layers at once.
        sel.set_target(Layer::new(0, 2));
        assert_eq!(ids(&mut sel, 0, p(17, 15, 3, 2)), None);
        assert_eq!(ids(&mut sel, 0, p(18, 16, 4, 0).key()), Some((8, 4)));
        assert_eq!(ids(&mut sel, 0, p(19, 17, 4, 2)), Some((9, 4)));
        assert!(!sel.wants_keyframe());
    }

    #[test]
    fn switch_up_and_down_between_streams() {
        let mut sel = started(Layer::new(0, 2));
        assert_eq!(ids(&mut sel, 0, p(100, 500, 50, 0).key()), Some((500, 50)));
        assert_eq!(ids(&mut sel, 1, p(7000, 9000, 200, 0)), None);
        assert_eq!(ids(&mut sel, 0, p(101, 501, 50, 1)), Some((501, 50)));
        // Up to stream 1: keeps stream 0 until stream 1's keyframe.
        sel.set_target(Layer::new(1, 2));
        assert!(sel.wants_keyframe());
        assert_eq!(ids(&mut sel, 1, p(7001, 9001, 200, 2)), None);
        assert_eq!(ids(&mut sel, 0, p(102, 502, 51, 0)), Some((502, 51)));
        assert_eq!(sel.current(), Some(Layer::new(0, 2)));
        let (d, new) = out(&mut sel, 1, &p(7002, 9002, 201, 0).key().build()).unwrap();
        assert!(new);
        assert_eq!(d.picture_id, Some(PictureId::Long(503)));
        assert_eq!(d.tl0_pic_idx, Some(52));
        assert!(!sel.wants_keyframe());
        assert_eq!(sel.current(), Some(Layer::new(1, 2)));
        // Stream 0 is not forwarded any more (including a late packet of its last picture).
        assert_eq!(ids(&mut sel, 0, p(103, 502, 51, 0).cont()), None);
        assert_eq!(ids(&mut sel, 0, p(104, 503, 51, 2)), None);
        assert_eq!(ids(&mut sel, 1, p(7003, 9003, 201, 2)), Some((504, 52)));
        assert_eq!(ids(&mut sel, 1, p(7004, 9004, 202, 0)), Some((505, 53)));
        // Down to stream 0 at temporal 0: waits for stream 0's keyframe.
        sel.set_target(Layer::new(0, 0));
        assert!(sel.wants_keyframe());
        assert_eq!(ids(&mut sel, 0, p(105, 504, 52, 0)), None);
        assert_eq!(
            ids(&mut sel, 1, p(7005, 9005, 202, 2)),
            None,
            "temporal down applies meanwhile"
        );
        assert_eq!(ids(&mut sel, 1, p(7006, 9006, 203, 0)), Some((506, 54)));
        let (d, new) = out(&mut sel, 0, &p(106, 505, 53, 0).key().build()).unwrap();
        assert!(new);
        assert_eq!(d.picture_id, Some(PictureId::Long(507)));
        assert_eq!(d.tl0_pic_idx, Some(55));
        assert_eq!(ids(&mut sel, 0, p(107, 506, 53, 2)), None);
        assert_eq!(ids(&mut sel, 0, p(108, 507, 54, 0)), Some((508, 56)));
        assert_eq!(ids(&mut sel, 1, p(7007, 9007, 204, 0).key()), None);
    }

    #[test]
    fn lost_keyframe_keeps_current_and_keeps_asking() {
        let mut sel = started(Layer::new(0, 0));
        assert_eq!(ids(&mut sel, 0, p(1, 10, 1, 0).key()), Some((10, 1)));
        sel.set_target(Layer::new(2, 0));
        // Stream 2's keyframe is lost: its other packets are dropped, stream 0 goes on.
        for i in 0..5u16 {
            assert_eq!(
                ids(&mut sel, 2, p(3000 + u64::from(i), 70 + i, 9, 0).cont()),
                None
            );
            let s = 2 + u64::from(i);
            assert_eq!(
                ids(&mut sel, 0, p(s, 11 + i, 2 + i as u8, 0)),
                Some((11 + i, 2 + i as u8))
            );
            assert!(sel.wants_keyframe());
            assert_eq!(sel.current(), Some(Layer::new(0, 0)));
        }
        // A later keyframe completes the switch.
        let (d, new) = out(&mut sel, 2, &p(3010, 80, 10, 0).key().build()).unwrap();
        assert!(new);
        assert_eq!(d.picture_id.unwrap().value(), 16);
        assert_eq!(d.tl0_pic_idx, Some(7));
        assert!(!sel.wants_keyframe());
        // Changing the target back to the current stream stops asking.
        sel.set_target(Layer::new(1, 0));
        assert!(sel.wants_keyframe());
        sel.set_target(Layer::new(2, 0));
        assert!(!sel.wants_keyframe());
    }

    #[test]
    fn reordered_packets_get_their_pictures_ids() {
        let mut sel = started(Layer::new(0, 1));
        // Layers: TID 0 and 1 forwarded, TID 2 dropped.
        assert_eq!(ids(&mut sel, 0, p(1, 20, 5, 0).key()), Some((20, 5)));
        // Picture 22 arrives before 21: 21 is not known yet, so it keeps its
        // slot (21) in case it is forwarded.
        assert_eq!(ids(&mut sel, 0, p(4, 22, 5, 1)), Some((22, 5)));
        // 21 turns out to be TL2: dropped, leaving a hole like a lost picture.
        assert_eq!(ids(&mut sel, 0, p(3, 21, 5, 2)), None);
        // Second packet of 20 arrives late: picture 20's id.
        assert_eq!(ids(&mut sel, 0, p(2, 20, 5, 0).cont()), Some((20, 5)));
        // 23 (TL2) is dropped before 24 comes: no id taken.
        assert_eq!(ids(&mut sel, 0, p(5, 23, 5, 2)), None);
        assert_eq!(ids(&mut sel, 0, p(6, 24, 6, 0)), Some((23, 6)));
        // A forwardable picture seen late fills its slot: 26 before 25.
        assert_eq!(ids(&mut sel, 0, p(9, 26, 6, 1)), Some((25, 6)));
        assert_eq!(ids(&mut sel, 0, p(7, 25, 6, 1)), Some((24, 6)));
        assert_eq!(ids(&mut sel, 0, p(8, 25, 6, 1).cont()), Some((24, 6)));
        assert_eq!(ids(&mut sel, 0, p(10, 26, 6, 1).cont()), Some((25, 6)));
        // Dropped pictures on both sides of a late forwarded one:
        // 27 (TL2) and 29 (TL2) dropped, then 28 (TL1) arrives, then 30.
        assert_eq!(ids(&mut sel, 0, p(11, 27, 6, 2)), None);
        assert_eq!(ids(&mut sel, 0, p(13, 29, 6, 2)), None);
        assert_eq!(ids(&mut sel, 0, p(12, 28, 6, 1)), Some((26, 6)));
        assert_eq!(ids(&mut sel, 0, p(14, 30, 7, 0)), Some((27, 7)));
        // Packets of a dropped picture stay dropped, even reordered.
        assert_eq!(ids(&mut sel, 0, p(15, 29, 6, 2).cont()), None);
        assert_eq!(ids(&mut sel, 0, p(16, 31, 7, 1)), Some((28, 7)));
    }

    #[test]
    fn upstream_loss_keeps_its_gap() {
        let mut sel = started(Layer::new(0, 0));
        assert_eq!(ids(&mut sel, 0, p(1, 40, 1, 0).key()), Some((40, 1)));
        assert_eq!(ids(&mut sel, 0, p(2, 41, 1, 2)), None);
        // Picture 42 (TL0, TL0PICIDX 2) is lost upstream.
        assert_eq!(ids(&mut sel, 0, p(6, 43, 2, 2)), None);
        // 44: the gap of the lost picture stays (41 is its slot), the dropped
        // ones take no id; TL0PICIDX keeps the source's gap too.
        assert_eq!(ids(&mut sel, 0, p(7, 44, 3, 0)), Some((42, 3)));
        // 42 arrives very late after all: it gets its slot.
        assert_eq!(ids(&mut sel, 0, p(4, 42, 2, 0)), Some((41, 2)));
        // A window of dropped pictures later, 44 is too old: dropped.
        let mut seq = 10;
        for pic in 45..45 + PICTURE_WINDOW as u16 {
            assert_eq!(ids(&mut sel, 0, p(seq, pic, 3, 2)), None);
            seq += 1;
        }
        let next = 45 + PICTURE_WINDOW as u16;
        assert_eq!(ids(&mut sel, 0, p(seq, next, 4, 0)), Some((43, 4)));
        assert_eq!(ids(&mut sel, 0, p(8, 44, 3, 0).cont()), None);
        // Any picture older than the window is dropped, whatever its layer.
        assert_eq!(
            ids(&mut sel, 0, p(9, next - PICTURE_WINDOW as u16, 3, 0)),
            None
        );
        assert_eq!(ids(&mut sel, 0, p(seq + 1, next + 1, 5, 0)), Some((44, 5)));
    }

    #[test]
    fn keyframe_restarting_the_numbering_is_forwarded() {
        let mut sel = started(Layer::new(0, 0));
        assert_eq!(
            ids(&mut sel, 0, p(1, 20_000, 100, 0).key()),
            Some((20_000, 100))
        );
        assert_eq!(ids(&mut sel, 0, p(2, 20_001, 101, 0)), Some((20_001, 101)));
        // The encoder restarts its numbering 1000 behind: a non-keyframe
        // there is dropped as old, a keyframe restarts the mapping and the
        // output continues.
        assert_eq!(ids(&mut sel, 0, p(3, 19_000, 7, 0)), None);
        assert_eq!(
            ids(&mut sel, 0, p(4, 19_001, 8, 0).key()),
            Some((20_002, 102))
        );
        assert_eq!(
            ids(&mut sel, 0, p(5, 19_001, 8, 0).cont()),
            Some((20_002, 102))
        );
        assert_eq!(ids(&mut sel, 0, p(6, 19_002, 9, 0)), Some((20_003, 103)));
        // A jump ahead is a gap the source made: kept.
        assert_eq!(ids(&mut sel, 0, p(7, 19_012, 10, 0)), Some((20_013, 104)));
        assert!(!sel.wants_keyframe());
    }

    #[test]
    fn picture_id_wraps_in_15_bits() {
        let mut sel = started(Layer::new(0, 0));
        assert_eq!(
            ids(&mut sel, 0, p(1, 32766, 255, 0).key()),
            Some((32766, 255))
        );
        assert_eq!(ids(&mut sel, 0, p(2, 32767, 255, 1)), None);
        // Source wraps; output (one less after the drop) wraps a step later.
        assert_eq!(ids(&mut sel, 0, p(3, 0, 0, 0)), Some((32767, 0)));
        assert_eq!(ids(&mut sel, 0, p(4, 1, 1, 0)), Some((0, 1)));
        // Late packet from before the wrap.
        assert_eq!(
            ids(&mut sel, 0, p(5, 32766, 255, 0).cont()),
            Some((32766, 255))
        );
        // Switch to a stream with picture ids near the top too.
        sel.set_target(Layer::new(1, 0));
        assert_eq!(ids(&mut sel, 1, p(9, 32767, 250, 0).key()), Some((1, 2)));
        assert_eq!(ids(&mut sel, 1, p(10, 0, 251, 0)), Some((2, 3)));
    }

    #[test]
    fn picture_id_7_bit_wrap_and_change_to_15_bits() {
        let mut sel = started(Layer::new(0, 0));
        let short = |seq: u64, pid: u8, key: bool| {
            let d = Vp8Descriptor {
                start_of_partition: true,
                picture_id: Some(PictureId::Short(pid)),
                ..Default::default()
            };
            packet_with(seq, d, key)
        };
        let id = |sel: &mut Vp8Selector, pkt: &MediaPacket| {
            out(sel, 0, pkt).map(|(d, _)| d.picture_id.unwrap())
        };
        // Always written in 15 bits.
        assert_eq!(
            id(&mut sel, &short(1, 126, true)),
            Some(PictureId::Long(126))
        );
        assert_eq!(
            id(&mut sel, &short(2, 127, false)),
            Some(PictureId::Long(127))
        );
        // 7-bit wrap continues at 128.
        assert_eq!(
            id(&mut sel, &short(3, 0, false)),
            Some(PictureId::Long(128))
        );
        // The source moves to 15 bits (same counter: 129).
        assert_eq!(
            id(&mut sel, &p(4, 129, 0, 0).build()),
            Some(PictureId::Long(129))
        );
        assert_eq!(
            id(&mut sel, &p(5, 130, 0, 0).build()),
            Some(PictureId::Long(130))
        );
        // A late 7-bit packet of picture 127.
        assert_eq!(
            id(&mut sel, &short(6, 127, false)),
            Some(PictureId::Long(127))
        );
        // The patch grows the descriptor by one byte and keeps the rest.
        let pkt = short(7, 3, false);
        let Decision::Forward(f) = sel.on_packet(0, &pkt) else {
            panic!("dropped")
        };
        let patch = f.patch.unwrap();
        assert_eq!(patch.replaced, 3);
        assert_eq!(patch.bytes(), &[0x90, 0x80, 0x80, 131]);
    }

    #[test]
    fn tl0picidx_and_keyidx_wrap_across_switches() {
        let with_key = |pk: P, keyidx: u8| {
            let d = Vp8Descriptor {
                start_of_partition: pk.start,
                picture_id: Some(PictureId::Long(pk.pid)),
                tl0_pic_idx: Some(pk.tl0),
                tid: Some(pk.tid),
                key_idx: Some(keyidx),
                ..Default::default()
            };
            packet_with(pk.seq, d, pk.key)
        };
        let mut sel = started(Layer::new(0, 0));
        let o = out(&mut sel, 0, &with_key(p(1, 5, 254, 0).key(), 30))
            .unwrap()
            .0;
        assert_eq!((o.tl0_pic_idx, o.key_idx), (Some(254), Some(30)));
        let o = out(&mut sel, 0, &with_key(p(2, 6, 255, 0), 31)).unwrap().0;
        assert_eq!((o.tl0_pic_idx, o.key_idx), (Some(255), Some(31)));
        let o = out(&mut sel, 0, &with_key(p(3, 7, 0, 0), 0)).unwrap().0;
        assert_eq!((o.tl0_pic_idx, o.key_idx), (Some(0), Some(0)));
        // Switch: the new stream continues from 0 -> 1, whatever its own values.
        sel.set_target(Layer::new(1, 0));
        let o = out(&mut sel, 1, &with_key(p(50, 900, 100, 0).key(), 12))
            .unwrap()
            .0;
        assert_eq!(o.picture_id, Some(PictureId::Long(8)));
        assert_eq!((o.tl0_pic_idx, o.key_idx), (Some(1), Some(1)));
        let o = out(&mut sel, 1, &with_key(p(51, 901, 101, 0), 12))
            .unwrap()
            .0;
        assert_eq!((o.tl0_pic_idx, o.key_idx), (Some(2), Some(1)));
        // Switch to a stream whose TL0PICIDX wraps right after the keyframe.
        sel.set_target(Layer::new(2, 0));
        let o = out(&mut sel, 2, &with_key(p(80, 3, 255, 0).key(), 31))
            .unwrap()
            .0;
        assert_eq!((o.tl0_pic_idx, o.key_idx), (Some(3), Some(2)));
        let o = out(&mut sel, 2, &with_key(p(81, 4, 0, 0), 0)).unwrap().0;
        assert_eq!((o.tl0_pic_idx, o.key_idx), (Some(4), Some(3)));
    }

    #[test]
    fn without_picture_id_forwards_unchanged() {
        let mut sel = started(Layer::new(0, 0));
        let plain = |seq, key| {
            let d = Vp8Descriptor {
                start_of_partition: true,
                ..Default::default()
            };
            packet_with(seq, d, key)
        };
        assert_eq!(sel.on_packet(0, &plain(1, false)), Decision::Drop);
        let Decision::Forward(f) = sel.on_packet(0, &plain(2, true)) else {
            panic!("dropped")
        };
        assert!(f.new_source);
        assert_eq!(f.patch, None);
        let Decision::Forward(f) = sel.on_packet(0, &plain(3, false)) else {
            panic!("dropped")
        };
        assert_eq!(
            (f.patch, f.new_source, f.layer),
            (None, false, Layer::new(0, 0))
        );
        // A late packet from before the keyframe is dropped.
        assert_eq!(sel.on_packet(0, &plain(1, false)), Decision::Drop);
        // TID without a picture id is treated as layer 0.
        let d = Vp8Descriptor {
            tid: Some(2),
            ..Default::default()
        };
        let Decision::Forward(f) = sel.on_packet(0, &packet_with(4, d, false)) else {
            panic!("dropped")
        };
        assert_eq!((f.patch, f.layer), (None, Layer::new(0, 0)));
        // Switching from it to a stream with ids keeps the new stream's ids.
        sel.set_target(Layer::new(1, 0));
        assert_eq!(ids(&mut sel, 1, p(10, 77, 3, 0).key()), Some((77, 3)));
    }
}
