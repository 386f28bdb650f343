//! VP9 scalable video: the RTP payload descriptor (RFC 9628) and the layer
//! selector for one subscriber ([`Vp9Selector`]).
//!
//! # What the selector forwards
//!
//! A VP9 picture is a set of layer frames (one per spatial layer, same RTP
//! timestamp and picture id, lowest spatial layer first). The selector keeps
//! two limits, a spatial and a temporal one, and forwards a layer frame when
//! `SID <= spatial` and `TID <= temporal`. The limits of a picture are fixed
//! when its first packet arrives, so every packet of a layer frame gets the
//! same answer, also when it comes late (reordering, retransmission).
//!
//! It serves Chromium's three VP9 modes alike, without having to know which
//! one the publisher uses:
//! - **full SVC** (`L3T3`): upper layers are inter-layer predicted (D=1) on
//!   every picture and also predicted from their own earlier frames;
//! - **k-SVC** (`L3T3_KEY`): inter-layer prediction on keyframes only;
//! - **temporal only** (`L1T3`): no layer indices beyond TID, or SID always 0.
//!
//! All lower spatial layers are forwarded with the target one, also in k-SVC
//! where the top layer alone would decode: that keeps every lower layer's
//! references at the subscriber, so switching down is possible at any picture.
//!
//! # Switching
//!
//! - **Down** (spatial or temporal): at the start of the next picture. Lower
//!   layers never reference higher ones, so what was forwarded stays decodable.
//! - **Spatial up**: only where the new layer decodes without its own earlier
//!   frames, which the subscriber never got. Accepted:
//!   - a keyframe (SID 0 with P=0 at the start of a picture): every layer of a
//!     keyframe picture is intra or inter-layer predicted only. The limit is
//!     then set to the target itself, even above the layers the publisher
//!     sends now: a layer it enables later starts without inter-picture
//!     prediction (or references frames after this keyframe, all forwarded);
//!   - a layer frame of the next spatial layer with P=0 (RFC 9628: "up-switching
//!     to the current spatial layer's frame is possible from a directly lower
//!     spatial layer frame"), in full SVC or any mode, but only while no
//!     packet of that picture went out with the marker bit: the marker ends the
//!     picture for the receiver (libwebrtc decodes the superframe at it), so a
//!     layer added after it would arrive after its picture was decoded. In
//!     practice the lower layer's end has always been sent by then, so this
//!     covers reordered pictures and pictures whose lower layer is missing.
//!
//!   Chromium produces non-key P=0 upper layer frames only when the encoder
//!   enables a layer (or answers an LRR, which it does not support), so
//!   [`Selector::wants_keyframe`] is true while a spatial up-switch waits, in
//!   full SVC as in k-SVC: in full SVC the upper layer is also predicted from
//!   its own earlier frames, so inter-layer prediction alone does not make a
//!   picture a switching point.
//! - **Temporal up**: at a keyframe, or one layer at a time at a picture with
//!   `TID == limit + 1` and U=1. libwebrtc has set U with two meanings over
//!   time (the frame references only lower temporal layers; or later frames of
//!   higher layers do not reference earlier ones, RFC 9628): its GOFs satisfy
//!   both when the U=1 picture is exactly one layer above what was forwarded,
//!   so the step is one layer. In flexible mode the P_DIFF references of the
//!   picture must also all be pictures whose layer frame was forwarded.
//!
//! # Output
//!
//! - **Marker bit**: set on the last packet (E=1) of the highest spatial layer
//!   the picture is forwarded up to, or kept when the source set it (the
//!   source marks the last layer frame it sent, which may be lower than the
//!   limit when the publisher does not send every layer).
//! - **Picture ids and TL0PICIDX are not rewritten**. Spatial drops remove no
//!   picture; temporal drops remove whole pictures of TID > 0, so TL0PICIDX
//!   stays continuous and picture ids get gaps. Those gaps must stay: in
//!   flexible mode references are P_DIFF deltas of picture ids, and in
//!   non-flexible mode the receiver maps picture ids onto the GOF of the
//!   scalability structure (libwebrtc counts the missing ids against the
//!   temporal layer the GOF gives them, and frames of lower layers do not
//!   wait for them). Renumbering would break both.
//! - **The scalability structure is forwarded unchanged**: it describes the
//!   publisher's encoding (N_S, resolutions, GOF), decoders read the
//!   resolution from the bitstream, and the GOF stays true for the forwarded
//!   pictures. Trimming N_S would make it wrong again after a switch up
//!   without a keyframe. So no [`PayloadPatch`](super::PayloadPatch) is needed.

use super::{Decision, Forward, Layer, Selector};
use crate::{Codec, MediaPacket};

/// Why a payload descriptor could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Vp9Error {
    #[error("the VP9 payload descriptor is truncated")]
    Truncated,
    #[error("the VP9 payload descriptor has more than three P_DIFF references")]
    TooManyReferences,
}

/// A picture id: 7 bits (M=0) or 15 bits (M=1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PictureId {
    pub value: u16,
    /// Whether this is the 15-bit form.
    pub long: bool,
}

impl PictureId {
    /// The number of distinct ids (128 or 32768).
    pub fn modulus(self) -> u32 {
        if self.long {
            1 << 15
        } else {
            1 << 7
        }
    }

    /// The id `diff` pictures earlier, wrapping around.
    pub fn minus(self, diff: u8) -> PictureId {
        let m = self.modulus();
        let value = (u32::from(self.value) + m - u32::from(diff) % m) % m;
        PictureId {
            value: value as u16,
            long: self.long,
        }
    }
}

/// The layer indices byte (L=1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerIndices {
    /// TID.
    pub temporal: u8,
    /// U: a switching up point.
    pub switching_up: bool,
    /// SID.
    pub spatial: u8,
    /// D: the layer frame depends on the spatial layer below in the same picture.
    pub inter_layer_dependent: bool,
}

/// Up to three P_DIFF references of a layer frame (flexible mode, P=1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PDiffs {
    vals: [u8; 3],
    len: u8,
}

impl PDiffs {
    pub fn as_slice(&self) -> &[u8] {
        &self.vals[..usize::from(self.len)]
    }

    fn push(&mut self, v: u8) -> Result<(), Vp9Error> {
        let slot = self
            .vals
            .get_mut(usize::from(self.len))
            .ok_or(Vp9Error::TooManyReferences)?;
        *slot = v;
        self.len += 1;
        Ok(())
    }
}

/// One picture of the group of frames in a scalability structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GofPicture {
    pub temporal: u8,
    pub switching_up: bool,
    /// P_DIFF of each reference (R of them, 0 to 3).
    pub p_diffs: Vec<u8>,
}

/// The scalability structure (V=1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalabilityStructure {
    /// N_S + 1.
    pub spatial_layers: u8,
    /// Width and height of each spatial layer (Y=1), else empty.
    pub resolutions: Vec<(u16, u16)>,
    /// The picture group (G=1), else `None`.
    pub gof: Option<Vec<GofPicture>>,
}

/// A parsed VP9 payload descriptor (RFC 9628, section 4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vp9Descriptor {
    /// I: picture id.
    pub picture_id: Option<PictureId>,
    /// P: the layer frame is predicted from earlier pictures.
    pub inter_picture_predicted: bool,
    /// F: flexible mode.
    pub flexible: bool,
    /// B: the packet starts a layer frame.
    pub start_of_layer_frame: bool,
    /// E: the packet ends a layer frame.
    pub end_of_layer_frame: bool,
    /// Z: not a reference for upper spatial layers.
    pub not_upper_reference: bool,
    /// L: layer indices.
    pub layer: Option<LayerIndices>,
    /// TL0PICIDX (non-flexible mode with L=1).
    pub tl0_pic_idx: Option<u8>,
    /// P_DIFF references (flexible mode with P=1).
    pub p_diffs: PDiffs,
    /// V: the scalability structure.
    pub scalability: Option<ScalabilityStructure>,
    /// Length of the descriptor in bytes (where the VP9 frame data starts).
    pub header_len: usize,
}

impl Vp9Descriptor {
    /// Spatial layer id (0 without layer indices).
    pub fn spatial(&self) -> u8 {
        self.layer.map_or(0, |l| l.spatial)
    }

    /// Temporal layer id (0 without layer indices).
    pub fn temporal(&self) -> u8 {
        self.layer.map_or(0, |l| l.temporal)
    }

    /// Whether the packet starts a keyframe picture: the first packet of the
    /// lowest spatial layer frame, not inter-picture predicted.
    pub fn starts_keyframe(&self) -> bool {
        self.start_of_layer_frame && !self.inter_picture_predicted && self.spatial() == 0
    }

    /// Parses the descriptor at the start of an RTP payload. Never panics.
    pub fn parse(payload: &[u8]) -> Result<Self, Vp9Error> {
        let mut r = Reader {
            buf: payload,
            pos: 0,
        };
        let b0 = r.byte()?;
        let has_pid = b0 & 0x80 != 0;
        let inter_picture_predicted = b0 & 0x40 != 0;
        let has_layer = b0 & 0x20 != 0;
        let flexible = b0 & 0x10 != 0;
        let mut d = Vp9Descriptor {
            picture_id: None,
            inter_picture_predicted,
            flexible,
            start_of_layer_frame: b0 & 0x08 != 0,
            end_of_layer_frame: b0 & 0x04 != 0,
            not_upper_reference: b0 & 0x01 != 0,
            layer: None,
            tl0_pic_idx: None,
            p_diffs: PDiffs::default(),
            scalability: None,
            header_len: 0,
        };
        let has_ss = b0 & 0x02 != 0;
        if has_pid {
            let p0 = r.byte()?;
            d.picture_id = Some(if p0 & 0x80 != 0 {
                let p1 = r.byte()?;
                PictureId {
                    value: (u16::from(p0 & 0x7f) << 8) | u16::from(p1),
                    long: true,
                }
            } else {
                PictureId {
                    value: u16::from(p0),
                    long: false,
                }
            });
        }
        if has_layer {
            let l = r.byte()?;
            d.layer = Some(LayerIndices {
                temporal: l >> 5,
                switching_up: l & 0x10 != 0,
                spatial: (l >> 1) & 0x07,
                inter_layer_dependent: l & 0x01 != 0,
            });
            if !flexible {
                d.tl0_pic_idx = Some(r.byte()?);
            }
        }
        if flexible && inter_picture_predicted {
            loop {
                let p = r.byte()?;
                d.p_diffs.push(p >> 1)?;
                if p & 0x01 == 0 {
                    break;
                }
            }
        }
        if has_ss {
            d.scalability = Some(parse_ss(&mut r)?);
        }
        d.header_len = r.pos;
        Ok(d)
    }
}

fn parse_ss(r: &mut Reader<'_>) -> Result<ScalabilityStructure, Vp9Error> {
    let v = r.byte()?;
    let spatial_layers = (v >> 5) + 1;
    let has_res = v & 0x10 != 0;
    let has_gof = v & 0x08 != 0;
    let mut resolutions = Vec::new();
    if has_res {
        for _ in 0..spatial_layers {
            let w = r.u16()?;
            let h = r.u16()?;
            resolutions.push((w, h));
        }
    }
    let gof = if has_gof {
        let n = r.byte()?;
        let mut pics = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let b = r.byte()?;
            let refs = (b >> 2) & 0x03;
            let mut p_diffs = Vec::with_capacity(usize::from(refs));
            for _ in 0..refs {
                p_diffs.push(r.byte()?);
            }
            pics.push(GofPicture {
                temporal: b >> 5,
                switching_up: b & 0x10 != 0,
                p_diffs,
            });
        }
        Some(pics)
    } else {
        None
    };
    Ok(ScalabilityStructure {
        spatial_layers,
        resolutions,
        gof,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, Vp9Error> {
        let b = *self.buf.get(self.pos).ok_or(Vp9Error::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, Vp9Error> {
        Ok(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }
}

/// How many pictures the selector remembers (for late packets and flexible
/// mode references: P_DIFF reaches at most 127 pictures back, but references
/// that far are not used by real-time encoders).
const HISTORY: usize = 64;

/// What the selector decided for one picture.
#[derive(Debug, Clone, Copy)]
struct Picture {
    ts: u32,
    /// Sequence number of the first packet seen of the picture.
    first_seq: u64,
    pid: Option<PictureId>,
    /// The layer limits of this picture.
    max_spatial: u8,
    max_temporal: u8,
    /// Spatial layers with a packet forwarded / dropped, as bit masks.
    forwarded: u8,
    dropped: u8,
    marker_sent: bool,
    keyframe: bool,
    /// Whether the selector was forwarding at all when the picture started.
    active: bool,
}

/// The VP9 SVC layer selector of one subscriber. See the module docs.
///
/// [`Selector::current`] gives the forwarding limits: after a keyframe they
/// are the target itself, which may be above the layers the publisher sends
/// ([`Forward::layer`] tells the layer of each forwarded packet).
#[derive(Debug)]
pub struct Vp9Selector {
    target: Layer,
    /// Forwarding limits; `None` before the first keyframe.
    limits: Option<Layer>,
    pictures: [Option<Picture>; HISTORY],
    /// Index of the newest picture in `pictures`.
    newest: usize,
}

impl Default for Vp9Selector {
    fn default() -> Self {
        Self::new(Layer::default())
    }
}

impl Vp9Selector {
    /// A selector that starts at the first keyframe, aiming at `target`.
    pub fn new(target: Layer) -> Self {
        Self {
            target,
            limits: None,
            pictures: [None; HISTORY],
            newest: 0,
        }
    }

    fn find(&self, ts: u32) -> Option<usize> {
        (0..HISTORY)
            .map(|k| (self.newest + HISTORY - k) % HISTORY)
            .find(|&i| self.pictures[i].is_some_and(|p| p.ts == ts))
    }

    fn find_pid(&self, pid: PictureId) -> Option<&Picture> {
        self.pictures.iter().flatten().find(|p| p.pid == Some(pid))
    }

    /// Whether every P_DIFF reference of a flexible-mode layer frame is a
    /// picture whose layer frame of the same spatial layer was forwarded.
    fn references_forwarded(&self, d: &Vp9Descriptor) -> bool {
        let Some(pid) = d.picture_id else {
            return false;
        };
        let bit = 1u8 << d.spatial();
        d.p_diffs.as_slice().iter().all(|&diff| {
            diff != 0
                && self
                    .find_pid(pid.minus(diff))
                    .is_some_and(|p| p.forwarded & bit != 0)
        })
    }

    /// Sets the limits for a new picture and records it.
    fn start_picture(&mut self, packet: &MediaPacket, d: &Vp9Descriptor) -> usize {
        let key = d.starts_keyframe();
        let target = self.target;
        let limits = match self.limits {
            // A keyframe resets both limits to the target.
            _ if key => Some(target),
            None => None,
            Some(cur) => {
                let spatial = cur.spatial.min(target.spatial);
                let mut temporal = cur.temporal.min(target.temporal);
                let tid = d.temporal();
                let up = d.layer.is_some_and(|l| l.switching_up);
                if up
                    && u16::from(tid) == u16::from(temporal) + 1
                    && tid <= target.temporal
                    && (!d.flexible || self.references_forwarded(d))
                {
                    temporal = tid;
                }
                Some(Layer::new(spatial, temporal))
            }
        };
        self.limits = limits;
        let pic = Picture {
            ts: packet.timestamp,
            first_seq: packet.seq,
            pid: d.picture_id,
            max_spatial: limits.map_or(0, |l| l.spatial),
            max_temporal: limits.map_or(0, |l| l.temporal),
            forwarded: 0,
            dropped: 0,
            marker_sent: false,
            keyframe: key,
            active: limits.is_some(),
        };
        self.newest = (self.newest + 1) % HISTORY;
        self.pictures[self.newest] = Some(pic);
        self.newest
    }

    /// Raises the spatial limit of a picture already under way when this
    /// layer frame is a decodable switching point that can still be added.
    fn maybe_raise(&mut self, idx: usize, d: &Vp9Descriptor) {
        if idx != self.newest {
            // Pictures after it were decided without the layer: adding it to
            // an older one would not make the layer decodable.
            return;
        }
        let target = self.target;
        let Some(pic) = self.pictures[idx].as_mut() else {
            return;
        };
        if !pic.active || pic.marker_sent {
            return;
        }
        let sid = d.spatial();
        if d.starts_keyframe() && !pic.keyframe {
            // The keyframe's first packet came late: the whole picture is a
            // switching point, unless an upper layer was already dropped.
            pic.keyframe = true;
            let above = (!0u8)
                .checked_shl(u32::from(pic.max_spatial) + 1)
                .unwrap_or(0);
            if pic.dropped & above == 0 {
                pic.max_spatial = pic.max_spatial.max(target.spatial);
            }
            pic.max_temporal = pic.max_temporal.max(target.temporal);
        } else if u16::from(sid) == u16::from(pic.max_spatial) + 1
            && sid <= target.spatial
            && d.start_of_layer_frame
            && !d.inter_picture_predicted
            && pic.dropped & (1 << sid) == 0
            && d.temporal() <= pic.max_temporal
        {
            pic.max_spatial = sid;
        } else {
            return;
        }
        self.limits = Some(Layer::new(pic.max_spatial, pic.max_temporal));
    }
}

impl Selector for Vp9Selector {
    fn set_target(&mut self, target: Layer) {
        self.target = target;
    }

    fn target(&self) -> Layer {
        self.target
    }

    fn current(&self) -> Option<Layer> {
        self.limits
    }

    fn on_packet(&mut self, _stream: u8, packet: &MediaPacket) -> Decision {
        if packet.codec != Codec::Vp9 {
            return Decision::Drop;
        }
        let Ok(d) = Vp9Descriptor::parse(&packet.payload) else {
            return Decision::Drop;
        };
        let sid = d.spatial();
        let tid = d.temporal();
        if sid > 7 || tid > 7 {
            return Decision::Drop;
        }
        let idx = match self.find(packet.timestamp) {
            Some(i) => i,
            None => {
                let older = self.pictures[self.newest].is_some_and(|p| packet.seq < p.first_seq);
                if older {
                    // A late packet of a picture no longer remembered.
                    return Decision::Drop;
                }
                self.start_picture(packet, &d)
            }
        };
        self.maybe_raise(idx, &d);
        let Some(pic) = self.pictures[idx].as_mut() else {
            return Decision::Drop;
        };
        let bit = 1u8 << sid;
        if !pic.active || sid > pic.max_spatial || tid > pic.max_temporal {
            pic.dropped |= bit;
            return Decision::Drop;
        }
        let marker = packet.marker || (d.end_of_layer_frame && sid == pic.max_spatial);
        pic.forwarded |= bit;
        pic.marker_sent |= marker;
        Decision::Forward(Forward {
            marker,
            patch: None,
            new_source: false,
            layer: Layer::new(sid, tid),
        })
    }

    fn wants_keyframe(&self) -> bool {
        match self.limits {
            None => true,
            Some(cur) => self.target.spatial > cur.spatial,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// A payload descriptor, written field by field.
    #[derive(Clone, Default)]
    struct D {
        p: bool,
        f: bool,
        b: bool,
        e: bool,
        z: bool,
        pid: Option<(u16, bool)>,
        layer: Option<(u8, bool, u8, bool)>,
        tl0: Option<u8>,
        pdiffs: Vec<u8>,
        ss: Option<Vec<u8>>,
    }

    impl D {
        fn bytes(&self) -> Vec<u8> {
            let mut v = vec![
                u8::from(self.pid.is_some()) << 7
                    | u8::from(self.p) << 6
                    | u8::from(self.layer.is_some()) << 5
                    | u8::from(self.f) << 4
                    | u8::from(self.b) << 3
                    | u8::from(self.e) << 2
                    | u8::from(self.ss.is_some()) << 1
                    | u8::from(self.z),
            ];
            match self.pid {
                Some((id, true)) => v.extend([0x80 | (id >> 8) as u8, id as u8]),
                Some((id, false)) => v.push(id as u8 & 0x7f),
                None => {}
            }
            if let Some((tid, u, sid, d)) = self.layer {
                v.push(tid << 5 | u8::from(u) << 4 | sid << 1 | u8::from(d));
                if !self.f {
                    v.push(self.tl0.unwrap());
                }
            }
            if self.f && self.p {
                for (i, &pd) in self.pdiffs.iter().enumerate() {
                    v.push(pd << 1 | u8::from(i + 1 < self.pdiffs.len()));
                }
            }
            if let Some(ss) = &self.ss {
                v.extend_from_slice(ss);
            }
            v.extend([0xaa, 0xbb]); // frame data
            v
        }
    }

    struct Pkt {
        packet: MediaPacket,
        sid: u8,
        tid: u8,
        pid: u16,
    }

    /// A Chromium-like VP9 SVC encoder: temporal pattern T0 T2 T1 T2.
    struct Sim {
        layers: u8,
        ksvc: bool,
        flexible: bool,
        long_pid: bool,
        /// U bit per position in the pattern.
        up: [bool; 4],
        packets_per_layer: usize,
        pid: u16,
        tl0: u8,
        seq: u64,
        pic: u32,
        pos: usize,
        base: Instant,
    }

    impl Sim {
        fn new(layers: u8, ksvc: bool) -> Self {
            Self {
                layers,
                ksvc,
                flexible: false,
                long_pid: true,
                // libwebrtc's older GOF for three temporal layers.
                up: [false, true, true, false],
                packets_per_layer: 2,
                pid: 1000,
                tl0: 0,
                seq: 5000,
                pic: 0,
                pos: 0,
                base: Instant::now(),
            }
        }

        fn picture(&mut self, key: bool) -> Vec<Pkt> {
            if key {
                self.pos = 0;
            }
            let tid = [0u8, 2, 1, 2][self.pos % 4];
            let up = self.up[self.pos % 4];
            let pdiff = [4u8, 1, 2, 1][self.pos % 4];
            self.pos += 1;
            if tid == 0 {
                self.tl0 = self.tl0.wrapping_add(1);
            }
            let pid = self.pid;
            let modulus = if self.long_pid { 1 << 15 } else { 1 << 7 };
            self.pid = ((u32::from(self.pid) + 1) % modulus) as u16;
            let ts = self.pic * 3000;
            let arrival = self.base + Duration::from_millis(33 * u64::from(self.pic));
            self.pic += 1;
            let mut out = Vec::new();
            for sid in 0..self.layers {
                for k in 0..self.packets_per_layer {
                    let b = k == 0;
                    let e = k + 1 == self.packets_per_layer;
                    let ss = (key && sid == 0 && b && !self.flexible).then(|| {
                        let mut ss = vec![(self.layers - 1) << 5 | 0x18];
                        for s in 0..self.layers {
                            let w = 320u16 << s;
                            let h = 180u16 << s;
                            ss.extend(w.to_be_bytes());
                            ss.extend(h.to_be_bytes());
                        }
                        ss.extend([4, 0x04, 4, 0x54, 1, 0x34, 2, 0x44, 1]);
                        ss
                    });
                    let d = D {
                        p: !key,
                        f: self.flexible,
                        b,
                        e,
                        z: sid + 1 == self.layers,
                        pid: Some((pid, self.long_pid)),
                        layer: Some((tid, up, sid, sid > 0 && (key || !self.ksvc))),
                        tl0: Some(self.tl0),
                        pdiffs: vec![pdiff],
                        ss,
                    };
                    let payload = d.bytes();
                    out.push(Pkt {
                        packet: MediaPacket {
                            codec: Codec::Vp9,
                            seq: self.seq,
                            timestamp: ts,
                            marker: e && sid + 1 == self.layers,
                            keyframe: Codec::Vp9.is_keyframe_start(&payload),
                            audio_level: None,
                            dependency_descriptor: None,
                            arrival,
                            payload: Arc::from(payload),
                        },
                        sid,
                        tid,
                        pid,
                    });
                    self.seq += 1;
                }
            }
            out
        }
    }

    fn feed(sel: &mut Vp9Selector, pkts: &[Pkt]) -> Vec<Option<bool>> {
        pkts.iter()
            .map(|p| match sel.on_packet(0, &p.packet) {
                Decision::Drop => None,
                Decision::Forward(f) => {
                    assert_eq!(f.layer, Layer::new(p.sid, p.tid));
                    assert!(f.patch.is_none() && !f.new_source);
                    Some(f.marker)
                }
            })
            .collect()
    }

    /// Spatial layers forwarded and the indices of packets with the marker.
    fn pic(sel: &mut Vp9Selector, sim: &mut Sim, key: bool) -> (Vec<u8>, Vec<usize>) {
        let pkts = sim.picture(key);
        let out = feed(sel, &pkts);
        summary(&pkts, &out)
    }

    fn summary(pkts: &[Pkt], out: &[Option<bool>]) -> (Vec<u8>, Vec<usize>) {
        let mut layers = Vec::new();
        let mut markers = Vec::new();
        for (i, (p, o)) in pkts.iter().zip(out).enumerate() {
            if o.is_some() && !layers.contains(&p.sid) {
                layers.push(p.sid);
            }
            if *o == Some(true) {
                markers.push(i);
            }
        }
        (layers, markers)
    }

    fn none() -> (Vec<u8>, Vec<usize>) {
        (vec![], vec![])
    }

    #[test]
    fn parses_a_non_flexible_descriptor_with_scalability_structure() {
        let bytes = [
            0xae, // I=1 P=0 L=1 F=0 B=1 E=1 V=1 Z=0
            0x92, 0x34, // M=1, picture id 0x1234
            0x53, // TID=2 U=1 SID=1 D=1
            0x07, // TL0PICIDX
            0x58, // N_S=2 Y=1 G=1
            0x01, 0x40, 0x00, 0xb4, // 320x180
            0x02, 0x80, 0x01, 0x68, // 640x360
            0x05, 0x00, 0x02, 0xd0, // 1280x720
            0x02, // N_G=2
            0x04, 0x04, // TID=0 U=0 R=1, P_DIFF 4
            0x34, 0x01, // TID=1 U=1 R=1, P_DIFF 1
            0xff, // frame data
        ];
        let d = Vp9Descriptor::parse(&bytes).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 0x1234,
                long: true
            })
        );
        assert!(!d.inter_picture_predicted && !d.flexible && !d.not_upper_reference);
        assert!(d.start_of_layer_frame && d.end_of_layer_frame);
        assert_eq!(
            d.layer,
            Some(LayerIndices {
                temporal: 2,
                switching_up: true,
                spatial: 1,
                inter_layer_dependent: true
            })
        );
        assert_eq!(d.tl0_pic_idx, Some(7));
        assert!(d.p_diffs.as_slice().is_empty());
        let ss = d.scalability.as_ref().unwrap();
        assert_eq!(ss.spatial_layers, 3);
        assert_eq!(ss.resolutions, vec![(320, 180), (640, 360), (1280, 720)]);
        assert_eq!(
            ss.gof,
            Some(vec![
                GofPicture {
                    temporal: 0,
                    switching_up: false,
                    p_diffs: vec![4]
                },
                GofPicture {
                    temporal: 1,
                    switching_up: true,
                    p_diffs: vec![1]
                },
            ])
        );
        assert_eq!(d.header_len, 23);
        assert!(!d.starts_keyframe()); // spatial layer 1
                                       // Every truncation fails cleanly.
        for len in 0..23 {
            assert_eq!(
                Vp9Descriptor::parse(&bytes[..len]),
                Err(Vp9Error::Truncated),
                "{len}"
            );
        }
    }

    #[test]
    fn parses_a_flexible_descriptor() {
        // I=1 P=1 L=1 F=1 B=1 E=0 V=0 Z=1, 7-bit pid 5, TID=1 SID=0, 3 P_DIFFs.
        let bytes = [0xf9, 0x05, 0x20, 0x03, 0x05, 0x06, 0xee];
        let d = Vp9Descriptor::parse(&bytes).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 5,
                long: false
            })
        );
        assert!(d.inter_picture_predicted && d.flexible && d.not_upper_reference);
        assert!(d.start_of_layer_frame && !d.end_of_layer_frame);
        assert_eq!(d.tl0_pic_idx, None);
        assert_eq!(d.temporal(), 1);
        assert_eq!(d.spatial(), 0);
        assert_eq!(d.p_diffs.as_slice(), &[1, 2, 3]);
        assert_eq!(d.header_len, 6);
        assert!(d.scalability.is_none());
        // A fourth reference is malformed.
        let bad = [0xf8, 0x05, 0x20, 0x03, 0x05, 0x07, 0x08];
        assert_eq!(Vp9Descriptor::parse(&bad), Err(Vp9Error::TooManyReferences));
        // The shortest descriptor: one byte.
        let d = Vp9Descriptor::parse(&[0x08]).unwrap();
        assert!(d.starts_keyframe());
        assert_eq!(d.header_len, 1);
        assert_eq!(Vp9Descriptor::parse(&[]), Err(Vp9Error::Truncated));
        // Picture ids wrap.
        let p = PictureId {
            value: 1,
            long: true,
        };
        assert_eq!(p.minus(3).value, 32766);
        let p = PictureId {
            value: 1,
            long: false,
        };
        assert_eq!(p.minus(3).value, 126);
        // Arbitrary bytes never panic.
        let mut x = 7u32;
        for _ in 0..20_000 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let len = (x >> 27) as usize;
            let v: Vec<u8> = (0..len)
                .map(|i| (x.rotate_left(i as u32 * 5) >> 3) as u8)
                .collect();
            let _ = Vp9Descriptor::parse(&v);
        }
    }

    #[test]
    fn full_svc_switches_down_at_the_next_picture_and_up_at_a_keyframe() {
        let mut sim = Sim::new(3, false);
        let mut sel = Vp9Selector::new(Layer::new(2, 2));
        assert!(sel.wants_keyframe());
        // Before the keyframe nothing goes.
        assert_eq!(pic(&mut sel, &mut sim, false), none());
        assert_eq!(sel.current(), None);
        // Six packets: S0 S0 S1 S1 S2 S2.
        assert_eq!(pic(&mut sel, &mut sim, true), (vec![0, 1, 2], vec![5]));
        assert!(!sel.wants_keyframe());
        assert_eq!(sel.current(), Some(Layer::new(2, 2)));
        assert_eq!(pic(&mut sel, &mut sim, false), (vec![0, 1, 2], vec![5]));

        // Down one spatial layer: the marker moves to S1's last packet.
        sel.set_target(Layer::new(1, 2));
        assert_eq!(pic(&mut sel, &mut sim, false), (vec![0, 1], vec![3]));
        assert_eq!(pic(&mut sel, &mut sim, false), (vec![0, 1], vec![3]));
        // Down to T0: pictures of TID > 0 go away whole.
        sel.set_target(Layer::new(1, 0));
        let got: Vec<_> = (0..4).map(|_| pic(&mut sel, &mut sim, false)).collect();
        assert_eq!(got, vec![(vec![0, 1], vec![3]), none(), none(), none()]);
        assert_eq!(sel.current(), Some(Layer::new(1, 0)));

        // Temporal up, one layer per switching point: pattern T0 T2(U) T1(U)
        // T2 T0 T2(U): T1 at the first T1, T2 at the T2 with U after it.
        sel.set_target(Layer::new(1, 2));
        assert!(!sel.wants_keyframe());
        let got: Vec<_> = (0..6).map(|_| pic(&mut sel, &mut sim, false)).collect();
        let s01 = (vec![0, 1], vec![3]);
        assert_eq!(
            got,
            vec![
                s01.clone(),
                none(),
                s01.clone(),
                none(),
                s01.clone(),
                s01.clone()
            ]
        );
        assert_eq!(sel.current(), Some(Layer::new(1, 2)));

        // Spatial up needs a keyframe.
        sel.set_target(Layer::new(2, 2));
        assert!(sel.wants_keyframe());
        for _ in 0..3 {
            assert_eq!(pic(&mut sel, &mut sim, false), s01);
        }
        assert!(sel.wants_keyframe());
        assert_eq!(pic(&mut sel, &mut sim, true), (vec![0, 1, 2], vec![5]));
        assert!(!sel.wants_keyframe());
        assert_eq!(pic(&mut sel, &mut sim, false), (vec![0, 1, 2], vec![5]));
    }

    #[test]
    fn the_highest_possible_target_forwards_everything_with_the_source_marker() {
        let mut sim = Sim::new(3, false);
        let best = Layer::new(u8::MAX, u8::MAX);
        let mut sel = Vp9Selector::new(best);
        assert_eq!(pic(&mut sel, &mut sim, true), (vec![0, 1, 2], vec![5]));
        for _ in 0..5 {
            assert_eq!(pic(&mut sel, &mut sim, false), (vec![0, 1, 2], vec![5]));
        }
        assert_eq!(sel.current(), Some(best));
        assert!(!sel.wants_keyframe());
        sel.set_target(Layer::new(0, 0));
        let got: Vec<_> = (0..4).map(|_| pic(&mut sel, &mut sim, false)).collect();
        assert_eq!(got[2], (vec![0], vec![1]));
        // Back up: temporal steps (one layer per U=1 picture), spatial waits.
        sel.set_target(best);
        assert!(sel.wants_keyframe());
        for _ in 0..8 {
            let _ = pic(&mut sel, &mut sim, false);
        }
        assert_eq!(sel.current(), Some(Layer::new(0, 2)));
        assert_eq!(pic(&mut sel, &mut sim, true), (vec![0, 1, 2], vec![5]));
        assert_eq!(sel.current(), Some(best));
    }

    #[test]
    fn k_svc_keeps_the_lower_layers_so_it_switches_down_at_once() {
        let mut sim = Sim::new(3, true);
        let mut sel = Vp9Selector::new(Layer::new(2, 2));
        assert_eq!(pic(&mut sel, &mut sim, true), (vec![0, 1, 2], vec![5]));
        assert_eq!(pic(&mut sel, &mut sim, false), (vec![0, 1, 2], vec![5]));
        sel.set_target(Layer::new(0, 2));
        assert_eq!(pic(&mut sel, &mut sim, false), (vec![0], vec![1]));
        assert!(!sel.wants_keyframe());
        sel.set_target(Layer::new(1, 2));
        assert!(sel.wants_keyframe());
        assert_eq!(pic(&mut sel, &mut sim, false), (vec![0], vec![1]));
        assert_eq!(pic(&mut sel, &mut sim, true), (vec![0, 1], vec![3]));
        assert!(!sel.wants_keyframe());
    }

    #[test]
    fn a_lost_keyframe_start_is_no_starting_point() {
        let mut sim = Sim::new(2, false);
        let mut sel = Vp9Selector::new(Layer::new(1, 2));
        let mut key = sim.picture(true);
        key.remove(0); // S0's first packet (B=1, P=0)
        assert!(feed(&mut sel, &key).iter().all(Option::is_none));
        assert!(sel.wants_keyframe());
        for _ in 0..3 {
            assert_eq!(pic(&mut sel, &mut sim, false), none());
        }
        assert_eq!(pic(&mut sel, &mut sim, true), (vec![0, 1], vec![3]));
        assert!(!sel.wants_keyframe());

        // Going up at a keyframe whose S1 first packet is lost: the switch
        // happens at the picture start (S0 is a keyframe); the receiver
        // repairs or asks for another keyframe like for any loss.
        sel.set_target(Layer::new(0, 2));
        assert_eq!(pic(&mut sel, &mut sim, false), (vec![0], vec![1]));
        sel.set_target(Layer::new(1, 2));
        let mut key = sim.picture(true);
        key.remove(2);
        let out = feed(&mut sel, &key);
        assert_eq!(out, vec![Some(false), Some(false), Some(true)]);
    }

    #[test]
    fn a_late_keyframe_start_still_switches_up_if_nothing_was_marked() {
        let mut sim = Sim::new(2, false);
        sim.packets_per_layer = 3;
        let mut sel = Vp9Selector::new(Layer::new(0, 2));
        assert_eq!(pic(&mut sel, &mut sim, true), (vec![0], vec![2]));
        sel.set_target(Layer::new(1, 2));
        let mut key = sim.picture(true);
        key.swap(0, 1); // S0: middle packet first, then B, then E.
        let out = feed(&mut sel, &key);
        assert_eq!(
            out,
            vec![
                Some(false),
                Some(false),
                Some(false),
                Some(false),
                Some(false),
                Some(true)
            ]
        );
        assert_eq!(sel.current(), Some(Layer::new(1, 2)));
        assert!(!sel.wants_keyframe());
    }

    /// Clears P in the packets' descriptors.
    fn not_inter_picture_predicted(pkts: &mut [Pkt]) {
        for p in pkts {
            let mut bytes = p.packet.payload.to_vec();
            bytes[0] &= !0x40;
            p.packet.payload = Arc::from(bytes);
        }
    }

    #[test]
    fn upper_layers_the_publisher_adds_later_are_forwarded_from_their_p0_frame() {
        // The publisher sends S0 and S1 when the subscriber starts at S2.
        let mut sim = Sim::new(2, false);
        let mut sel = Vp9Selector::new(Layer::new(2, 2));
        assert_eq!(pic(&mut sel, &mut sim, true), (vec![0, 1], vec![3]));
        // The source marker on S1 ends the picture.
        assert_eq!(pic(&mut sel, &mut sim, false), (vec![0, 1], vec![3]));
        assert_eq!(sel.current(), Some(Layer::new(2, 2)));
        assert!(!sel.wants_keyframe());
        // S2 starts (P=0 on its first frame, inter-layer predicted).
        sim.layers = 3;
        let mut p = sim.picture(false);
        not_inter_picture_predicted(&mut p[4..6]);
        let out = feed(&mut sel, &p);
        assert_eq!(summary(&p, &out), (vec![0, 1, 2], vec![5]));
        assert_eq!(pic(&mut sel, &mut sim, false), (vec![0, 1, 2], vec![5]));
    }

    #[test]
    fn a_p0_upper_layer_frame_is_a_switching_point_until_the_picture_is_marked() {
        let mut sim = Sim::new(3, false);
        let mut sel = Vp9Selector::new(Layer::new(1, 2));
        assert_eq!(pic(&mut sel, &mut sim, true), (vec![0, 1], vec![3]));
        sel.set_target(Layer::new(2, 2));
        let p0 = |p: &mut Vec<Pkt>| not_inter_picture_predicted(&mut p[4..6]);
        // In order, S1's end (marked) goes before S2 starts: too late.
        let mut p = sim.picture(false);
        p0(&mut p);
        let out = feed(&mut sel, &p);
        assert_eq!(summary(&p, &out), (vec![0, 1], vec![3]));
        assert!(sel.wants_keyframe());
        // S1's last packet comes after S2's first: S2 is added.
        let mut p = sim.picture(false);
        p0(&mut p);
        p.swap(3, 4);
        let out = feed(&mut sel, &p);
        assert_eq!(
            out,
            vec![Some(false); 5]
                .into_iter()
                .chain([Some(true)])
                .collect::<Vec<_>>()
        );
        assert_eq!(sel.current(), Some(Layer::new(2, 2)));
        assert!(!sel.wants_keyframe());
    }

    #[test]
    fn late_packets_keep_the_decision_of_their_picture() {
        let mut sim = Sim::new(2, false);
        let mut sel = Vp9Selector::new(Layer::new(1, 2));
        assert_eq!(pic(&mut sel, &mut sim, true), (vec![0, 1], vec![3]));
        let a = sim.picture(false);
        let b = sim.picture(false);
        // a's S1 end is late; b starts after a target change.
        assert_eq!(feed(&mut sel, &a[..3]), vec![Some(false); 3]);
        sel.set_target(Layer::new(0, 2));
        assert_eq!(
            feed(&mut sel, &b),
            vec![Some(false), Some(true), None, None]
        );
        assert_eq!(feed(&mut sel, &a[3..]), vec![Some(true)]);
        // And the other way: a dropped layer frame stays dropped.
        let c = sim.picture(false);
        let d = sim.picture(false);
        assert_eq!(feed(&mut sel, &c[..3]), vec![Some(false), Some(true), None]);
        sel.set_target(Layer::new(1, 2));
        assert_eq!(feed(&mut sel, &d[..2]), vec![Some(false), Some(true)]);
        assert_eq!(feed(&mut sel, &c[3..]), vec![None]);
        // Packets older than the remembered pictures are dropped.
        let old = sim.picture(false);
        for _ in 0..HISTORY {
            let _ = pic(&mut sel, &mut sim, false);
        }
        assert_eq!(feed(&mut sel, &old[..1]), vec![None]);
    }

    fn flexible_sim(pid: u16, long: bool) -> Sim {
        let mut sim = Sim::new(1, false);
        sim.flexible = true;
        sim.long_pid = long;
        sim.pid = pid;
        // libwebrtc's newer GOF: every picture is a switching up point.
        sim.up = [true; 4];
        sim
    }

    #[test]
    fn flexible_mode_references_cross_the_picture_id_wrap() {
        for (start, long) in [(32766u16, true), (126, false)] {
            let mut sim = flexible_sim(start, long);
            let mut sel = Vp9Selector::new(Layer::new(0, 0));
            let one = (vec![0], vec![1]);
            let mut pids = Vec::new();
            let mut run = |sel: &mut Vp9Selector, sim: &mut Sim, key: bool| {
                let p = sim.picture(key);
                let out = feed(sel, &p);
                if out[0].is_some() {
                    pids.push(p[0].pid);
                }
                summary(&p, &out)
            };
            assert_eq!(run(&mut sel, &mut sim, true), one); // T0 at start
            assert_eq!(run(&mut sel, &mut sim, false), none()); // T2
            sel.set_target(Layer::new(0, 2));
            // T1 (id 0) references the T0 two ids back, across the wrap.
            assert_eq!(run(&mut sel, &mut sim, false), one);
            assert_eq!(run(&mut sel, &mut sim, false), one); // T2, refs T1
            assert_eq!(sel.current(), Some(Layer::new(0, 2)));
            let m = if long { 32768 } else { 128 };
            assert_eq!(pids, vec![start, (start + 2) % m, (start + 3) % m]);
        }
    }

    #[test]
    fn flexible_mode_does_not_switch_up_where_a_reference_was_not_forwarded() {
        let mut sim = flexible_sim(32762, true);
        let mut sel = Vp9Selector::new(Layer::new(0, 0));
        let one = (vec![0], vec![1]);
        assert_eq!(pic(&mut sel, &mut sim, true), one); // 32762 T0
        for _ in 0..3 {
            assert_eq!(pic(&mut sel, &mut sim, false), none()); // T2 T1 T2
        }
        let _lost = sim.picture(false); // 32766 T0 never arrives
        assert_eq!(pic(&mut sel, &mut sim, false), none()); // 32767 T2
        sel.set_target(Layer::new(0, 2));
        // 0: T1 with U=1, but its reference (32766) was not forwarded.
        assert_eq!(pic(&mut sel, &mut sim, false), none());
        assert_eq!(pic(&mut sel, &mut sim, false), none()); // 1: T2
        assert_eq!(pic(&mut sel, &mut sim, false), one); // 2: T0
        assert_eq!(pic(&mut sel, &mut sim, false), none()); // 3: T2, TID 2 > 0 + 1
        assert_eq!(pic(&mut sel, &mut sim, false), one); // 4: T1 refs 2
        assert_eq!(pic(&mut sel, &mut sim, false), one); // 5: T2 refs 4
        assert_eq!(sel.current(), Some(Layer::new(0, 2)));
    }

    #[test]
    fn other_packets_are_dropped() {
        let mut sim = Sim::new(1, false);
        let mut sel = Vp9Selector::new(Layer::new(0, 2));
        let mut p = sim.picture(true);
        p[0].packet.codec = Codec::Vp8;
        assert!(matches!(sel.on_packet(0, &p[0].packet), Decision::Drop));
        p[0].packet.codec = Codec::Vp9;
        p[0].packet.payload = Arc::from(vec![0xa8]); // I=1 L=1, truncated
        assert!(matches!(sel.on_packet(0, &p[0].packet), Decision::Drop));
        // Without layer indices: one layer, forwarded from the keyframe on.
        let key = D {
            b: true,
            e: true,
            ..D::default()
        };
        let delta = D {
            p: true,
            b: true,
            e: true,
            ..D::default()
        };
        let mk = |d: &D, ts: u32, seq: u64| MediaPacket {
            codec: Codec::Vp9,
            seq,
            timestamp: ts,
            marker: true,
            keyframe: false,
            audio_level: None,
            dependency_descriptor: None,
            arrival: sim.base,
            payload: Arc::from(d.bytes()),
        };
        let mut sel = Vp9Selector::new(Layer::new(0, 0));
        assert!(matches!(
            sel.on_packet(0, &mk(&delta, 0, 1)),
            Decision::Drop
        ));
        assert!(matches!(sel.on_packet(0, &mk(&key, 3000, 2)), Decision::Forward(f) if f.marker));
        assert!(matches!(sel.on_packet(0, &mk(&delta, 6000, 3)), Decision::Forward(f) if f.marker));
    }
}
