//! Layer selection driven by the Dependency Descriptor RTP header extension
//! ([`super::av1_dd`]) alone, not the codec payload: AV1 SVC from Chromium
//! (`L1T3`, `L3T3`, `L3T3_KEY`, and any other structure), and any codec the
//! publisher sends the descriptor with.
//!
//! # Decode targets
//!
//! The structure lists decode targets (DTs); each has a highest spatial and
//! temporal id, derived from the DTIs of the templates. The target [`Layer`]
//! maps to the **desired** DT: the best *active* DT (publisher's active
//! decode targets bitmask) whose layers are within the target, best meaning
//! highest spatial id, then highest temporal id, then lowest index (the
//! lowest active DT when none fits). The selector then aims at the **goal**:
//! the best DT within the same bound whose frames include all of the desired
//! DT's frames. It is the desired DT itself unless the publisher has paused
//! upper layers of a nested structure (full SVC, `L1T3`): then the goal stays
//! the full DT, which is still fed by the lower layers, so when the publisher
//! resumes the layer (starting it without inter-picture prediction) the
//! subscriber gets it at once, without a keyframe.
//!
//! A frame is forwarded when its DTI for the current DT is not NOT_PRESENT.
//!
//! # Switching
//!
//! The DT changes at the start of a temporal unit (the first packet with a new
//! RTP timestamp), to the best of the goal and the active DTs below it that is
//! reachable there:
//! - the frame's DTI for it is SWITCH, every frame it references (fdiffs) was
//!   forwarded, and its chain is not broken (a keyframe is a switch point for
//!   every DT); or
//! - the DT is *intact*: every frame of it with DTI SWITCH or REQUIRED since
//!   its last switch point was forwarded. That is what makes switching down
//!   immediate in nested structures (full SVC, `L1T3`: a lower DT's frames are
//!   a subset of the current one's); in `L3T3_KEY` the lower spatial layers'
//!   frames are NOT_PRESENT for the upper DTs and are not forwarded, so
//!   switching down there waits for a switch point, in practice a keyframe.
//!
//! The candidates are tried best first and the first reachable one wins, so
//! a lowered target is obeyed at once when any DT within it is reachable.
//! When none is, the current DT is kept while it is still decodable (above
//! the target, as in `L3T3_KEY` until the keyframe), else forwarding stops
//! until a keyframe ([`Selector::current`] is then `None`).
//!
//! A switch up inside a temporal unit (at a later frame of it) is only taken
//! while no packet of the unit went out with the marker bit, for the same
//! reason as with VP9: the marker ends the temporal unit for the receiver.
//!
//! [`Selector::wants_keyframe`] is true before the first keyframe, when the
//! current DT is no longer decodable (broken chain), and when the goal has
//! another spatial id and is not intact: spatial switch points come with
//! keyframes, temporal ones come by themselves.
//!
//! # Loss
//!
//! Every frame carries, per chain, the frame number difference to the
//! previous frame of the chain. When a frame's predecessor on a chain has
//! not been fully received (its first and last packet and every sequence
//! number between; a duplicated packet can make a frame look complete), the
//! selector waits `loss_grace` (arrival time of later
//! packets, default [`DEFAULT_LOSS_GRACE`]) for it, because retransmissions
//! arrive late; then the chain is broken: the DTs it protects are no longer
//! intact. The selector falls back, at the next temporal unit, to the best
//! intact DT whose chain holds, or stops forwarding, and wants a keyframe. A
//! frame with chain diff 0 (a keyframe) mends the chain. Without chains in
//! the structure, no loss is detected here.
//!
//! # The descriptor sent to the subscriber
//!
//! Frame numbers and template ids are forwarded unchanged: fdiffs and chain
//! diffs are frame number differences, so renumbering would break them, and
//! receivers accept gaps (dropped frames of other DTs). Two things may need
//! a rewrite, which [`DdSelector::descriptor`] gives after each forwarded
//! packet:
//! - the **active decode targets bitmask**: the subscriber can only decode
//!   the DTs whose frames are all forwarded (those contained in the current
//!   DT and active at the publisher). While that set differs from the
//!   publisher's, every forwarded packet carries it; after it changes back it
//!   is carried until a later frame of the current DT's chain was forwarded
//!   after the change (a receiver that has that frame has seen the new mask;
//!   one that lost it will ask for a keyframe anyway);
//! - the **structure**, attached to the first forwarded packet after a new
//!   structure when the packet that carried it was not forwarded.
//!
//! Everything else is forwarded bit for bit.

use std::time::{Duration, Instant};

use super::av1_dd::{self, DdParser, DependencyDescriptor, Dti, FrameDependencyStructure};
use super::{Decision, Forward, Layer, Selector};
use crate::MediaPacket;

/// How long a missing frame of a chain may be late before the chain counts
/// as broken.
pub const DEFAULT_LOSS_GRACE: Duration = Duration::from_millis(200);

/// Frames remembered (frame numbers, completeness, decisions). Chain diffs
/// reach at most 255 frames back.
const FRAME_WINDOW: usize = 256;
/// Temporal units remembered for late packets.
const TU_HISTORY: usize = 16;
/// Missing chain frames waited for at once.
const MAX_PENDING: usize = 64;
/// Without chains, how many forwarded frames carry a changed bitmask.
const ANNOUNCE_FRAMES: u32 = 8;

/// What the selector derives from one structure.
#[derive(Debug)]
struct Targets {
    layers: Vec<Layer>,
    chain: Vec<Option<u8>>,
    /// `contains[e]` bit `d`: every frame of DT `d` is a frame of DT `e`.
    contains: Vec<u32>,
    /// DT indices, best first.
    order: Vec<usize>,
}

impl Targets {
    fn new(s: &FrameDependencyStructure) -> Self {
        let n = usize::from(s.decode_target_count);
        let layers: Vec<Layer> = (0..n)
            .map(|d| {
                let (sp, tp) = s.decode_target_layer(d).unwrap_or((0, 0));
                Layer::new(sp, tp)
            })
            .collect();
        let chain = (0..n).map(|d| s.chain_of(d)).collect();
        let contains = (0..n)
            .map(|e| {
                (0..n)
                    .filter(|&d| {
                        s.templates.iter().all(|t| {
                            t.dtis.get(d) == Dti::NotPresent || t.dtis.get(e) != Dti::NotPresent
                        })
                    })
                    .fold(0u32, |m, d| m | bit(d))
            })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&d| (std::cmp::Reverse(layers[d]), d));
        Self {
            layers,
            chain,
            contains,
            order,
        }
    }

    fn layer(&self, dt: usize) -> Layer {
        self.layers.get(dt).copied().unwrap_or_default()
    }

    fn contains(&self, e: usize, d: usize) -> bool {
        self.contains.get(e).is_some_and(|m| m & bit(d) != 0)
    }
}

fn bit(i: usize) -> u32 {
    1u32.checked_shl(i as u32).unwrap_or(0)
}

fn within(l: Layer, bound: Layer) -> bool {
    l.spatial <= bound.spatial && l.temporal <= bound.temporal
}

/// What is known of one frame.
#[derive(Debug, Clone, Copy, Default)]
struct FrameSlot {
    ext: u64,
    first: u64,
    last: u64,
    packets: u32,
    used: bool,
    has_first: bool,
    has_last: bool,
    decided: bool,
    forwarded: bool,
}

impl FrameSlot {
    fn complete(&self) -> bool {
        self.has_first
            && self.has_last
            && self.last >= self.first
            && u64::from(self.packets) > self.last - self.first
    }
}

#[derive(Debug, Clone, Copy)]
struct Tu {
    ts: u32,
    dt: Option<usize>,
    marker_sent: bool,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    frame: u64,
    chains: u32,
    /// `None`: never (a grace period too long to add).
    deadline: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Announce {
    since: u64,
    frames: u32,
}

enum Seen {
    New,
    Again,
    TooOld,
}

/// The Dependency Descriptor layer selector of one subscriber. It must see
/// every packet of the source from its creation on (the descriptor is
/// stateful). See the module docs.
#[derive(Debug)]
pub struct DdSelector {
    target: Layer,
    parser: DdParser,
    /// The parser generation the state below belongs to.
    generation: u32,
    targets: Option<Targets>,
    current: Option<usize>,
    /// DTs the subscriber can decode from here on (bit per DT).
    intact: u32,
    /// Broken chains (bit per chain).
    broken: u32,
    pending: Vec<Pending>,
    frames: Vec<FrameSlot>,
    highest: Option<u64>,
    tus: [Option<Tu>; TU_HISTORY],
    tu_newest: usize,
    loss_grace: Duration,
    out: Vec<u8>,
    out_valid: bool,
    sent_mask: Option<u32>,
    announce: Option<Announce>,
    subscriber_generation: Option<u32>,
}

impl Default for DdSelector {
    fn default() -> Self {
        Self::new(Layer::default())
    }
}

impl DdSelector {
    /// A selector that starts at the first keyframe, aiming at `target`.
    pub fn new(target: Layer) -> Self {
        Self {
            target,
            parser: DdParser::new(),
            generation: 0,
            targets: None,
            current: None,
            intact: 0,
            broken: 0,
            pending: Vec::new(),
            frames: vec![FrameSlot::default(); FRAME_WINDOW],
            highest: None,
            tus: [None; TU_HISTORY],
            tu_newest: 0,
            loss_grace: DEFAULT_LOSS_GRACE,
            out: Vec::new(),
            out_valid: false,
            sent_mask: None,
            announce: None,
            subscriber_generation: None,
        }
    }

    /// Sets how long a missing chain frame may be late (see the module docs).
    pub fn with_loss_grace(mut self, grace: Duration) -> Self {
        self.loss_grace = grace;
        self
    }

    /// The Dependency Descriptor to send with the packet
    /// [`Selector::on_packet`] just forwarded, when it differs from the
    /// packet's own; `None`: send the packet's descriptor unchanged.
    pub fn descriptor(&self) -> Option<&[u8]> {
        self.out_valid.then_some(self.out.as_slice())
    }

    /// The decode target being forwarded (an index into the structure's DTs).
    pub fn decode_target(&self) -> Option<usize> {
        self.current
    }

    /// The publisher's latest structure.
    pub fn structure(&self) -> Option<&FrameDependencyStructure> {
        self.parser.structure()
    }

    /// The active decode targets the subscriber is told (bit i: DT i).
    pub fn subscriber_decode_targets(&self) -> Option<u32> {
        self.sent_mask
    }

    /// A different structure arrived. When its decode targets are the same
    /// (same layers, chains and containment: a new resolution, new template
    /// ids) the decode target state carries over; otherwise it starts again.
    fn reset_for_structure(&mut self) {
        self.generation = self.parser.generation();
        let targets = self.parser.structure().map(Targets::new);
        let same = match (&self.targets, &targets) {
            (Some(a), Some(b)) => {
                a.layers == b.layers && a.chain == b.chain && a.contains == b.contains
            }
            _ => false,
        };
        self.targets = targets;
        if same {
            return;
        }
        self.current = None;
        self.intact = 0;
        self.broken = 0;
        self.pending.clear();
        self.tus = [None; TU_HISTORY];
        self.sent_mask = None;
        self.announce = None;
    }

    fn unwrap_frame(&mut self, n: u16) -> u64 {
        match self.highest {
            None => {
                let e = (1u64 << 16) + u64::from(n);
                self.highest = Some(e);
                e
            }
            Some(h) => {
                let delta = i64::from(n.wrapping_sub(h as u16) as i16);
                let e = (h as i64 + delta).max(0) as u64;
                if e > h {
                    self.highest = Some(e);
                }
                e
            }
        }
    }

    fn slot(&self, ext: u64) -> Option<&FrameSlot> {
        self.frames
            .get((ext % FRAME_WINDOW as u64) as usize)
            .filter(|s| s.used && s.ext == ext)
    }

    fn complete(&self, ext: u64) -> bool {
        self.slot(ext).is_some_and(FrameSlot::complete)
    }

    fn forwarded(&self, ext: u64) -> bool {
        self.slot(ext).is_some_and(|s| s.forwarded)
    }

    fn note_packet(&mut self, ext: u64, dd: &DependencyDescriptor, seq: u64) -> Seen {
        let Some(slot) = self.frames.get_mut((ext % FRAME_WINDOW as u64) as usize) else {
            return Seen::TooOld;
        };
        let seen = if slot.used && slot.ext == ext {
            Seen::Again
        } else if slot.used && slot.ext > ext {
            return Seen::TooOld;
        } else {
            *slot = FrameSlot {
                ext,
                used: true,
                ..FrameSlot::default()
            };
            Seen::New
        };
        slot.packets = slot.packets.saturating_add(1);
        if dd.start_of_frame {
            slot.first = seq;
            slot.has_first = true;
        }
        if dd.end_of_frame {
            slot.last = seq;
            slot.has_last = true;
        }
        seen
    }

    /// On the first packet of a frame: follow its chain diffs.
    fn check_chains(&mut self, ext: u64, dd: &DependencyDescriptor, now: Instant) {
        for (k, &diff) in dd.chain_fdiffs.as_slice().iter().enumerate() {
            let b = bit(k);
            if diff == 0 {
                self.broken &= !b;
                for p in self.pending.iter_mut() {
                    p.chains &= !b;
                }
                continue;
            }
            let prev = ext.saturating_sub(u64::from(diff));
            let forgotten = self
                .highest
                .is_some_and(|h| h.saturating_sub(prev) >= FRAME_WINDOW as u64);
            if forgotten || self.complete(prev) {
                // Out of the window only for a late frame: nothing to tell.
                continue;
            }
            if let Some(p) = self.pending.iter_mut().find(|p| p.frame == prev) {
                p.chains |= b;
            } else {
                if self.pending.len() >= MAX_PENDING {
                    let oldest = self.pending.remove(0);
                    self.break_chains(oldest.chains);
                }
                self.pending.push(Pending {
                    frame: prev,
                    chains: b,
                    deadline: now.checked_add(self.loss_grace),
                });
            }
        }
        self.pending.retain(|p| p.chains != 0);
    }

    /// Drops pending frames that arrived; breaks chains whose frame is too late.
    fn resolve_pending(&mut self, now: Instant) {
        let frames = &self.frames;
        let mut newly = 0;
        self.pending.retain(|p| {
            let slot = frames
                .get((p.frame % FRAME_WINDOW as u64) as usize)
                .filter(|s| s.used && s.ext == p.frame);
            if slot.is_some_and(FrameSlot::complete) {
                false
            } else if p.deadline.is_some_and(|d| now >= d) {
                newly |= p.chains;
                false
            } else {
                true
            }
        });
        if newly != 0 {
            self.break_chains(newly);
        }
    }

    fn break_chains(&mut self, chains: u32) {
        self.broken |= chains;
        if let Some(t) = &self.targets {
            for (d, c) in t.chain.iter().enumerate() {
                if c.is_some_and(|c| chains & bit(usize::from(c)) != 0) {
                    self.intact &= !bit(d);
                }
            }
        }
    }

    fn chain_ok(&self, dt: usize) -> bool {
        let chain = self
            .targets
            .as_ref()
            .and_then(|t| t.chain.get(dt).copied().flatten());
        chain.is_none_or(|c| self.broken & bit(usize::from(c)) == 0)
    }

    fn refs_forwarded(&self, ext: u64, dd: &DependencyDescriptor) -> bool {
        dd.fdiffs
            .as_slice()
            .iter()
            .all(|&f| ext >= u64::from(f) && self.forwarded(ext - u64::from(f)))
    }

    /// The desired DT's goal (see the module docs).
    fn goal(&self) -> Option<usize> {
        let t = self.targets.as_ref()?;
        let active = self.parser.active_decode_targets();
        let is_active = |d: usize| active & bit(d) != 0;
        let desired = t
            .order
            .iter()
            .copied()
            .find(|&d| is_active(d) && within(t.layer(d), self.target))
            .or_else(|| t.order.iter().rev().copied().find(|&d| is_active(d)))?;
        let bound = if within(t.layer(desired), self.target) {
            self.target
        } else {
            t.layer(desired)
        };
        t.order
            .iter()
            .copied()
            .find(|&e| within(t.layer(e), bound) && t.contains(e, desired))
    }

    /// Whether the subscriber can start decoding `dt` at this frame.
    fn reachable(&self, dt: usize, ext: u64, dd: &DependencyDescriptor, tu_start: bool) -> bool {
        if !self.chain_ok(dt) {
            return false;
        }
        if dd.dtis.get(dt) == Dti::Switch && self.refs_forwarded(ext, dd) {
            return true;
        }
        tu_start && self.intact & bit(dt) != 0
    }

    /// The DT to forward from this frame on. At the start of a temporal unit
    /// any reachable DT; later in it only a better one than `now`.
    fn choose(
        &self,
        ext: u64,
        dd: &DependencyDescriptor,
        tu_start: bool,
        now: Option<usize>,
    ) -> Option<usize> {
        let healthy = now.filter(|&c| self.intact & bit(c) != 0);
        let (Some(t), Some(goal)) = (self.targets.as_ref(), self.goal()) else {
            return healthy;
        };
        let active = self.parser.active_decode_targets();
        let bound = t.layer(goal);
        for &d in &t.order {
            if d != goal && (active & bit(d) == 0 || !within(t.layer(d), bound)) {
                continue;
            }
            if Some(d) == now && (healthy.is_some() || !tu_start) {
                return now;
            }
            if self.reachable(d, ext, dd, tu_start) {
                return Some(d);
            }
        }
        if tu_start {
            healthy
        } else {
            now
        }
    }

    fn find_tu(&self, ts: u32) -> Option<usize> {
        (0..TU_HISTORY)
            .map(|k| (self.tu_newest + TU_HISTORY - k) % TU_HISTORY)
            .find(|&i| self.tus[i].is_some_and(|t| t.ts == ts))
    }

    fn decide(
        &mut self,
        ext: u64,
        dd: &DependencyDescriptor,
        packet: &MediaPacket,
        late: bool,
    ) -> bool {
        let tu_idx = match self.find_tu(packet.timestamp) {
            Some(i) => {
                let newest = i == self.tu_newest;
                if let Some(tu) = self.tus[i].filter(|tu| newest && !late && !tu.marker_sent) {
                    let dt = self.choose(ext, dd, false, tu.dt);
                    if dt != tu.dt {
                        self.current = dt;
                        if let Some(tu) = self.tus[i].as_mut() {
                            tu.dt = dt;
                        }
                    }
                }
                Some(i)
            }
            None if late => {
                // A late frame of a temporal unit not seen yet: no switching
                // there, it gets the current DT. It takes the oldest slot.
                let slot = (self.tu_newest + 1) % TU_HISTORY;
                self.tus[slot] = Some(Tu {
                    ts: packet.timestamp,
                    dt: self.current,
                    marker_sent: false,
                });
                Some(slot)
            }
            None => {
                let dt = self.choose(ext, dd, true, self.current);
                self.current = dt;
                self.tu_newest = (self.tu_newest + 1) % TU_HISTORY;
                self.tus[self.tu_newest] = Some(Tu {
                    ts: packet.timestamp,
                    dt,
                    marker_sent: false,
                });
                Some(self.tu_newest)
            }
        };
        let dt = tu_idx.and_then(|i| self.tus[i]).and_then(|tu| tu.dt);
        let fwd = dt.is_some_and(|d| dd.dtis.get(d) != Dti::NotPresent);
        self.update_intact(ext, dd, fwd);
        if let Some(slot) = self.frames.get_mut((ext % FRAME_WINDOW as u64) as usize) {
            slot.decided = true;
            slot.forwarded = fwd;
        }
        if fwd {
            self.acknowledge_announce(ext, dd);
        }
        fwd
    }

    fn update_intact(&mut self, ext: u64, dd: &DependencyDescriptor, fwd: bool) {
        let refs = self.refs_forwarded(ext, dd);
        for (d, dti) in dd.dtis.iter().enumerate() {
            match dti {
                Dti::Switch if fwd && refs && self.chain_ok(d) => self.intact |= bit(d),
                Dti::Switch | Dti::Required if !fwd => self.intact &= !bit(d),
                _ => {}
            }
        }
    }

    /// A changed bitmask is carried until a frame of the current DT's chain
    /// that was forwarded after the change is referenced by a later one.
    fn acknowledge_announce(&mut self, ext: u64, dd: &DependencyDescriptor) {
        let Some(mut a) = self.announce else {
            return;
        };
        let chain = self.current.and_then(|c| {
            self.targets
                .as_ref()
                .and_then(|t| t.chain.get(c).copied().flatten())
        });
        let done = match chain {
            Some(k) => {
                let diff = u64::from(dd.chain_fdiffs.get(usize::from(k)));
                diff != 0 && ext >= diff && ext - diff >= a.since && self.forwarded(ext - diff)
            }
            None => {
                a.frames += 1;
                ext > a.since && a.frames > ANNOUNCE_FRAMES
            }
        };
        self.announce = if done { None } else { Some(a) };
    }

    /// Computes the descriptor to send with a forwarded packet.
    fn prepare_descriptor(&mut self, raw: &[u8], dd: &DependencyDescriptor, ext: u64) {
        let kept = dd.structure_attached && self.parser.structure_taken();
        if kept {
            self.subscriber_generation = Some(self.generation);
        }
        let (Some(t), Some(c)) = (self.targets.as_ref(), self.current) else {
            return;
        };
        let source = self.parser.active_decode_targets();
        let mut sub = t.contains.get(c).copied().unwrap_or(0) & source;
        if sub == 0 {
            sub = source;
        }
        if self.sent_mask != Some(sub) {
            let first = self.sent_mask.is_none();
            self.sent_mask = Some(sub);
            // The first value needs no announcement when it is the source's.
            if !(first && sub == source) {
                self.announce = Some(Announce {
                    since: ext,
                    frames: 0,
                });
            }
        }
        let need_mask = sub != source || self.announce.is_some();
        let attach = self.subscriber_generation != Some(self.generation) && !dd.structure_attached;
        if need_mask || attach {
            let structure = if attach {
                self.parser.structure()
            } else {
                None
            };
            av1_dd::rewrite(raw, dd, structure, need_mask.then_some(sub), &mut self.out);
            self.out_valid = true;
            if attach {
                self.subscriber_generation = Some(self.generation);
            }
        }
    }
}

impl Selector for DdSelector {
    fn descriptor(&self) -> Option<&[u8]> {
        DdSelector::descriptor(self)
    }

    fn set_target(&mut self, target: Layer) {
        self.target = target;
    }

    fn target(&self) -> Layer {
        self.target
    }

    fn current(&self) -> Option<Layer> {
        let t = self.targets.as_ref()?;
        self.current.map(|c| t.layer(c))
    }

    fn on_packet(&mut self, _stream: u8, packet: &MediaPacket) -> Decision {
        self.out_valid = false;
        let Some(raw) = packet.dependency_descriptor.clone() else {
            return Decision::Drop;
        };
        let Ok(dd) = self.parser.parse(&raw) else {
            return Decision::Drop;
        };
        if self.parser.generation() != self.generation {
            self.reset_for_structure();
        }
        let late = self.highest.is_some_and(|h| {
            let delta = dd.frame_number.wrapping_sub(h as u16) as i16;
            delta < 0
        });
        let ext = self.unwrap_frame(dd.frame_number);
        let now = packet.arrival;
        let seen = self.note_packet(ext, &dd, packet.seq);
        if matches!(seen, Seen::New) {
            self.check_chains(ext, &dd, now);
        }
        self.resolve_pending(now);
        let forwarded = match seen {
            Seen::TooOld => false,
            Seen::Again if self.slot(ext).is_some_and(|s| s.decided) => self.forwarded(ext),
            _ => self.decide(ext, &dd, packet, late),
        };
        if !forwarded {
            return Decision::Drop;
        }
        let tu = self.find_tu(packet.timestamp);
        let dt = match tu.and_then(|i| self.tus[i]) {
            Some(tu) => tu.dt,
            None => self.current,
        };
        let top = dt.and_then(|d| self.targets.as_ref().map(|t| t.layer(d).spatial));
        let marker = packet.marker || (dd.end_of_frame && Some(dd.spatial_id) == top);
        if let Some(tu) = tu.and_then(|i| self.tus[i].as_mut()) {
            tu.marker_sent |= marker;
        }
        self.prepare_descriptor(&raw, &dd, ext);
        Decision::Forward(Forward {
            marker,
            patch: None,
            new_source: false,
            layer: Layer::new(dd.spatial_id, dd.temporal_id),
        })
    }

    fn wants_keyframe(&self) -> bool {
        let Some(c) = self.current else {
            return true;
        };
        if self.intact & bit(c) == 0 {
            return true;
        }
        let (Some(t), Some(g)) = (self.targets.as_ref(), self.goal()) else {
            return false;
        };
        g != c && t.layer(g).spatial != t.layer(c).spatial && self.intact & bit(g) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::av1_dd::testing::{build, l1t3, l3t3, l3t3_key, Pkt, Sim, F};
    use super::*;
    use std::sync::Arc;

    /// Per packet: `None` dropped, `Some(marker)` forwarded.
    fn feed(sel: &mut DdSelector, pkts: &[Pkt]) -> Vec<Option<bool>> {
        pkts.iter()
            .map(|p| match sel.on_packet(0, &p.packet) {
                Decision::Drop => None,
                Decision::Forward(f) => {
                    assert_eq!(f.layer, Layer::new(p.spatial, p.temporal));
                    assert!(f.patch.is_none() && !f.new_source);
                    Some(f.marker)
                }
            })
            .collect()
    }

    /// The spatial layers forwarded in one temporal unit, and the packet
    /// indices that carry the marker.
    fn summary(pkts: &[Pkt], out: &[Option<bool>]) -> (Vec<u8>, Vec<usize>) {
        let mut layers = Vec::new();
        let mut markers = Vec::new();
        for (i, (p, o)) in pkts.iter().zip(out).enumerate() {
            if o.is_some() && !layers.contains(&p.spatial) {
                layers.push(p.spatial);
            }
            if *o == Some(true) {
                markers.push(i);
            }
        }
        (layers, markers)
    }

    /// Feeds a temporal unit and returns its summary.
    fn tu(sel: &mut DdSelector, sim: &mut Sim, key: bool) -> (Vec<u8>, Vec<usize>) {
        let pkts = sim.tu(key);
        let out = feed(sel, &pkts);
        summary(&pkts, &out)
    }

    fn none() -> (Vec<u8>, Vec<usize>) {
        (vec![], vec![])
    }

    #[test]
    fn l1t3_starts_at_a_keyframe_and_switches_temporal_layers() {
        let mut sim = Sim::new(l1t3(), true);
        let mut sel = DdSelector::new(Layer::new(0, 2));
        assert!(sel.wants_keyframe());
        // Joining mid-stream: the keyframe (and its structure) was missed.
        let _lost = sim.tu(true);
        for _ in 0..3 {
            assert_eq!(tu(&mut sel, &mut sim, false), none());
        }
        assert!(sel.wants_keyframe());
        assert_eq!(sel.current(), None);

        // Keyframe: one frame, two packets, marker on the second.
        assert_eq!(tu(&mut sel, &mut sim, true), (vec![0], vec![1]));
        assert_eq!(sel.current(), Some(Layer::new(0, 2)));
        assert!(!sel.wants_keyframe());
        for _ in 0..3 {
            assert_eq!(tu(&mut sel, &mut sim, false), (vec![0], vec![1]));
        }

        // Down to T0 at once: T0 forwarded, T2 T1 T2 dropped.
        sel.set_target(Layer::new(0, 0));
        let got: Vec<_> = (0..5).map(|_| tu(&mut sel, &mut sim, false)).collect();
        assert_eq!(
            got,
            vec![
                (vec![0], vec![1]),
                none(),
                none(),
                none(),
                (vec![0], vec![1])
            ]
        );
        assert_eq!(sel.current(), Some(Layer::new(0, 0)));
        assert!(!sel.wants_keyframe());

        // Up to T2 without a keyframe: the T2 frame after a T0 references
        // only that T0, so DT2 is intact there.
        sel.set_target(Layer::new(0, 2));
        assert!(!sel.wants_keyframe());
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![0], vec![1]));
        assert_eq!(sel.current(), Some(Layer::new(0, 2)));

        // Up to T1 from T0: T1 frames are DISCARDABLE within DT1, so dropping
        // them left DT1 intact and it is taken at the next temporal unit.
        sel.set_target(Layer::new(0, 0));
        assert_eq!(tu(&mut sel, &mut sim, false), none()); // T1
        assert_eq!(tu(&mut sel, &mut sim, false), none()); // T2
        sel.set_target(Layer::new(0, 1));
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![0], vec![1])); // T0
        assert_eq!(tu(&mut sel, &mut sim, false), none()); // T2
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![0], vec![1])); // T1
        assert_eq!(sel.current(), Some(Layer::new(0, 1)));
    }

    #[test]
    fn l1t3_from_t0_reaches_t2_only_where_its_references_were_forwarded() {
        let mut sim = Sim::new(l1t3(), true);
        let mut sel = DdSelector::new(Layer::new(0, 0));
        assert_eq!(tu(&mut sel, &mut sim, true), (vec![0], vec![1])); // T0 key
        assert_eq!(tu(&mut sel, &mut sim, false), none()); // T2
        sel.set_target(Layer::new(0, 2));
        // T1: SWITCH for DT2 and references the T0: taken.
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![0], vec![1]));
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![0], vec![1]));
        assert_eq!(sel.current(), Some(Layer::new(0, 2)));
    }

    #[test]
    fn l3t3_full_svc_switches_down_at_once_and_up_at_a_keyframe() {
        let mut sim = Sim::new(l3t3(), true);
        let mut sel = DdSelector::new(Layer::new(2, 2));
        // Packets 0..6: S0 S0 S1 S1 S2 S2; the marker on the last of S2.
        assert_eq!(tu(&mut sel, &mut sim, true), (vec![0, 1, 2], vec![5]));
        assert_eq!(sel.current(), Some(Layer::new(2, 2)));
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![0, 1, 2], vec![5])); // T2

        sel.set_target(Layer::new(1, 2));
        // S2 dropped from the next temporal unit on; the marker moves to S1.
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![0, 1], vec![3])); // T1
        assert_eq!(sel.current(), Some(Layer::new(1, 2)));
        assert!(!sel.wants_keyframe());

        sel.set_target(Layer::new(0, 0));
        assert_eq!(tu(&mut sel, &mut sim, false), none()); // T2
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![0], vec![1])); // T0
        assert_eq!(sel.current(), Some(Layer::new(0, 0)));

        // Up: temporal at once (S0 frames were all forwarded), spatial
        // needs a keyframe: the upper layers reference their own past.
        sel.set_target(Layer::new(2, 2));
        assert!(sel.wants_keyframe());
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![0], vec![1])); // T2
        assert_eq!(sel.current(), Some(Layer::new(0, 2)));
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![0], vec![1])); // T1
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![0], vec![1])); // T2
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![0], vec![1])); // T0
        assert!(sel.wants_keyframe());
        assert_eq!(tu(&mut sel, &mut sim, true), (vec![0, 1, 2], vec![5]));
        assert_eq!(sel.current(), Some(Layer::new(2, 2)));
        assert!(!sel.wants_keyframe());
    }

    #[test]
    fn the_highest_possible_target_is_the_best_decode_target() {
        let mut sim = Sim::new(l3t3(), true);
        let mut sel = DdSelector::new(Layer::new(u8::MAX, u8::MAX)).with_loss_grace(Duration::MAX);
        assert_eq!(tu(&mut sel, &mut sim, true), (vec![0, 1, 2], vec![5]));
        assert_eq!(sel.decode_target(), Some(8));
        assert_eq!(sel.current(), Some(Layer::new(2, 2)));
        // A lost chain frame never breaks the chain with an endless grace.
        for _ in 0..3 {
            assert_eq!(tu(&mut sel, &mut sim, false), (vec![0, 1, 2], vec![5]));
        }
        let mut t0 = sim.tu(false);
        assert_eq!(t0[0].temporal, 0);
        t0.retain(|p| p.spatial != 1);
        let _ = feed(&mut sel, &t0);
        assert_eq!(sel.pending.len(), 1);
        for _ in 0..20 {
            assert_eq!(tu(&mut sel, &mut sim, false), (vec![0, 1, 2], vec![5]));
        }
        assert_eq!(sel.broken, 0);
        assert!(!sel.wants_keyframe());
    }

    #[test]
    fn l3t3_key_forwards_only_the_target_layer_between_keyframes() {
        let mut sim = Sim::new(l3t3_key(), false);
        let mut sel = DdSelector::new(Layer::new(2, 2));
        assert_eq!(tu(&mut sel, &mut sim, true), (vec![0, 1, 2], vec![5]));
        // S0 and S1 frames are NOT_PRESENT for the S2 decode targets.
        for _ in 0..5 {
            assert_eq!(tu(&mut sel, &mut sim, false), (vec![2], vec![5]));
        }
        assert!(!sel.wants_keyframe());

        // Down: S1's frames were not forwarded, so it needs a switch point;
        // S2 goes on meanwhile (once an S0T0 frame was dropped too, no lower
        // decode target is intact: right after a keyframe, S0T0 would be,
        // and the selector would take it rather than exceed the target).
        sel.set_target(Layer::new(1, 2));
        assert!(sel.wants_keyframe());
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![2], vec![5]));
        assert_eq!(sel.current(), Some(Layer::new(2, 2)));
        assert_eq!(tu(&mut sel, &mut sim, true), (vec![0, 1], vec![3]));
        assert_eq!(sel.current(), Some(Layer::new(1, 2)));
        assert!(!sel.wants_keyframe());
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![1], vec![3]));
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![1], vec![3]));
        // Temporal down works within the spatial layer.
        sel.set_target(Layer::new(1, 0));
        assert_eq!(tu(&mut sel, &mut sim, false), none()); // T2
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![1], vec![3])); // T0
    }

    #[test]
    fn lost_keyframe_packet_breaks_the_chains_after_the_grace_period() {
        let mut sim = Sim::new(l3t3(), true);
        let mut sel = DdSelector::new(Layer::new(2, 2));
        let mut key = sim.tu(true);
        key.remove(1); // the second packet of the S0 keyframe never comes
        let out = feed(&mut sel, &key);
        assert_eq!(summary(&key, &out), (vec![0, 1, 2], vec![4]));
        // Within 200 ms (33 ms per TU) frames still go: it may be late.
        for _ in 0..5 {
            assert_eq!(tu(&mut sel, &mut sim, false), (vec![0, 1, 2], vec![5]));
            assert!(!sel.wants_keyframe());
        }
        // TU 6 arrives at 198 ms; at TU 7 (231 ms) the chains are broken
        // before its first frame is decided.
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![0, 1, 2], vec![5]));
        assert_eq!(tu(&mut sel, &mut sim, false), none());
        assert!(sel.wants_keyframe());
        assert_eq!(sel.current(), None);
        assert_eq!(tu(&mut sel, &mut sim, false), none());
        assert_eq!(tu(&mut sel, &mut sim, true), (vec![0, 1, 2], vec![5]));
        assert!(!sel.wants_keyframe());
        assert_eq!(sel.current(), Some(Layer::new(2, 2)));
    }

    #[test]
    fn lost_upper_chain_frame_falls_back_to_the_intact_lower_layer() {
        let mut sim = Sim::new(l3t3(), true);
        let mut sel = DdSelector::new(Layer::new(2, 2));
        for key in [true, false, false, false] {
            assert_eq!(tu(&mut sel, &mut sim, key), (vec![0, 1, 2], vec![5]));
        }
        // T0 unit: the S1 frame is lost.
        let mut t0 = sim.tu(false);
        t0.retain(|p| p.spatial != 1);
        let out = feed(&mut sel, &t0);
        assert_eq!(summary(&t0, &out), (vec![0, 2], vec![3]));
        // The loss is noticed at 132 ms (the S2 frame's chain diffs): up to
        // 332 ms the S1 frame may still come.
        for _ in 0..6 {
            assert_eq!(tu(&mut sel, &mut sim, false), (vec![0, 1, 2], vec![5]));
        }
        assert!(!sel.wants_keyframe());
        // 363 ms: chains 1 and 2 break, chain 0 holds: S0 only.
        assert_eq!(tu(&mut sel, &mut sim, false), (vec![0], vec![1]));
        assert!(sel.wants_keyframe());
        assert_eq!(sel.current(), Some(Layer::new(0, 2)));
        assert_eq!(tu(&mut sel, &mut sim, true), (vec![0, 1, 2], vec![5]));
        assert!(!sel.wants_keyframe());
    }

    #[test]
    fn reordered_packets_and_frames_keep_their_decisions() {
        let mut sim = Sim::new(l1t3(), true);
        let mut sel = DdSelector::new(Layer::new(0, 2));
        assert_eq!(tu(&mut sel, &mut sim, true), (vec![0], vec![1]));
        // TU 1 (T2) arrives after TU 2 (T1).
        let t1 = sim.tu(false);
        let t2 = sim.tu(false);
        assert_eq!(feed(&mut sel, &t2), vec![Some(false), Some(true)]);
        assert_eq!(feed(&mut sel, &t1), vec![Some(false), Some(true)]);
        // Packets of one frame swapped: the marker stays on the last packet.
        let t3 = sim.tu(false);
        let swapped: Vec<Pkt> = t3.into_iter().rev().collect();
        assert_eq!(feed(&mut sel, &swapped), vec![Some(true), Some(false)]);
        // A T0 frame (on the chain) after the T2 that follows it: the chain
        // waits for it, and it arrives within the grace period.
        let t4 = sim.tu(false);
        let t5 = sim.tu(false);
        assert_eq!(feed(&mut sel, &t5), vec![Some(false), Some(true)]);
        assert_eq!(sel.pending.len(), 1);
        assert_eq!(feed(&mut sel, &t4), vec![Some(false), Some(true)]);
        assert!(sel.pending.is_empty());
        for _ in 0..14 {
            assert_eq!(tu(&mut sel, &mut sim, false), (vec![0], vec![1]));
        }
        assert!(!sel.wants_keyframe());
        assert_eq!(sel.broken, 0);
        // Down to T0 while a late T2 comes in: the late frame keeps the
        // decision of its temporal unit (forwarded), new ones follow the target.
        let a = sim.tu(false);
        let b = sim.tu(false);
        assert_eq!((a[0].temporal, b[0].temporal), (0, 2));
        assert_eq!(feed(&mut sel, &b[..1]), vec![Some(false)]);
        sel.set_target(Layer::new(0, 0));
        assert_eq!(feed(&mut sel, &a), vec![Some(false), Some(true)]);
        assert_eq!(feed(&mut sel, &b[1..]), vec![Some(true)]);
        assert_eq!(tu(&mut sel, &mut sim, false), none()); // T1
    }

    #[test]
    fn frame_numbers_wrap_around() {
        let mut sim = Sim::new(l1t3(), true);
        sim.frame_number = 65533;
        let mut sel = DdSelector::new(Layer::new(0, 2));
        assert_eq!(tu(&mut sel, &mut sim, true), (vec![0], vec![1]));
        for _ in 0..11 {
            assert_eq!(tu(&mut sel, &mut sim, false), (vec![0], vec![1]));
        }
        assert!(sim.frame_number < 100);
        assert!(sel.pending.is_empty() && sel.broken == 0);
        assert!(!sel.wants_keyframe());
        // A T0 lost after the wrap is still found missing.
        let mut t0 = sim.tu(false);
        assert_eq!(t0[0].temporal, 0);
        assert!(t0[0].frame_number < 100);
        t0.clear();
        // Noticed by the next frame (T2, 429 ms), broken at 660 ms.
        for _ in 0..7 {
            assert_eq!(tu(&mut sel, &mut sim, false).0, vec![0]);
            assert!(!sel.wants_keyframe());
        }
        assert_eq!(tu(&mut sel, &mut sim, false), none());
        assert!(sel.wants_keyframe());
        assert_eq!(sel.current(), None);
    }

    fn parse_out(
        p: &mut av1_dd::DdParser,
        sel: &DdSelector,
        pkt: &Pkt,
    ) -> av1_dd::DependencyDescriptor {
        let bytes: Vec<u8> = match sel.descriptor() {
            Some(b) => b.to_vec(),
            None => pkt
                .packet
                .dependency_descriptor
                .as_deref()
                .unwrap()
                .to_vec(),
        };
        p.parse(&bytes).unwrap()
    }

    #[test]
    fn the_subscriber_is_told_which_decode_targets_it_gets() {
        let mut sim = Sim::new(l1t3(), true);
        let mut sel = DdSelector::new(Layer::new(0, 0));
        // The subscriber's own parser sees only what is sent to it.
        let mut sub = av1_dd::DdParser::new();
        let key = sim.tu(true);
        for p in &key {
            assert!(matches!(sel.on_packet(0, &p.packet), Decision::Forward(_)));
            assert!(sel.descriptor().is_some());
            let dd = parse_out(&mut sub, &sel, p);
            assert_eq!(dd.active_decode_targets, Some(0b001));
        }
        assert_eq!(sub.active_decode_targets(), 0b001);
        assert_eq!(sel.subscriber_decode_targets(), Some(0b001));
        // Every forwarded packet carries it while it differs from the source.
        for _ in 0..4 {
            for p in sim.tu(false) {
                if let Decision::Forward(_) = sel.on_packet(0, &p.packet) {
                    assert_eq!(
                        parse_out(&mut sub, &sel, &p).active_decode_targets,
                        Some(0b001)
                    );
                } else {
                    assert!(sel.descriptor().is_none());
                }
            }
        }
        // Back to everything: announced until a chain frame forwarded after
        // the change is referenced (T2 T1 T2 T0 carry it, the next T2 not).
        sel.set_target(Layer::new(0, 2));
        let mut carried = Vec::new();
        for _ in 0..6 {
            let pkts = sim.tu(false);
            for p in &pkts {
                assert!(matches!(sel.on_packet(0, &p.packet), Decision::Forward(_)));
                let dd = parse_out(&mut sub, &sel, p);
                carried.push((p.temporal, dd.active_decode_targets));
            }
        }
        let m = Some(0b111);
        assert_eq!(
            carried,
            vec![
                (2, m),
                (2, m),
                (1, m),
                (1, m),
                (2, m),
                (2, m),
                (0, m),
                (0, m),
                (2, None),
                (2, None),
                (1, None),
                (1, None)
            ]
        );
        assert_eq!(sub.active_decode_targets(), 0b111);
    }

    #[test]
    fn a_structure_in_a_dropped_packet_is_attached_to_the_next_forwarded_one() {
        let mut sim = Sim::new(l1t3(), true);
        let mut sel = DdSelector::new(Layer::new(0, 0));
        assert_eq!(tu(&mut sel, &mut sim, true), (vec![0], vec![1]));
        assert_eq!(tu(&mut sel, &mut sim, false), none()); // T2
                                                           // The T1 frame brings a new structure (new resolution).
        let mut other = l1t3();
        other.res = vec![(1280, 720)];
        let mut t1 = sim.tu(false);
        assert_eq!(t1[0].temporal, 1);
        let dd = build(&F {
            sof: true,
            eof: false,
            template_id: 2,
            frame_number: t1[0].frame_number,
            structure: Some(&other),
            ..F::default()
        });
        t1[0].packet.dependency_descriptor = Some(Arc::from(dd));
        assert_eq!(feed(&mut sel, &t1), vec![None, None]);
        assert_eq!(sel.structure().unwrap().resolutions[0].width, 1280);
        // Same decode targets: no restart needed.
        assert_eq!(sel.current(), Some(Layer::new(0, 0)));
        assert_eq!(tu(&mut sel, &mut sim, false), none()); // T2
        let t0 = sim.tu(false);
        assert_eq!(feed(&mut sel, &t0[..1]), vec![Some(false)]);
        // A receiver that never saw a structure can parse what is sent.
        let mut fresh = av1_dd::DdParser::new();
        let got = fresh.parse(sel.descriptor().unwrap()).unwrap();
        assert!(got.structure_attached);
        assert_eq!(got.resolution.unwrap().width, 1280);
        assert_eq!(got.active_decode_targets, Some(0b001));
        // Only once.
        assert_eq!(feed(&mut sel, &t0[1..]), vec![Some(true)]);
        let got = fresh.parse(sel.descriptor().unwrap()).unwrap();
        assert!(!got.structure_attached);
    }

    #[test]
    fn packets_without_or_with_broken_descriptors_are_dropped() {
        let mut sim = Sim::new(l1t3(), true);
        let mut sel = DdSelector::new(Layer::new(0, 2));
        let mut key = sim.tu(true);
        key[0].packet.dependency_descriptor = None;
        assert_eq!(feed(&mut sel, &key[..1]), vec![None]);
        key[1].packet.dependency_descriptor = Some(Arc::from(vec![0xff]));
        assert_eq!(feed(&mut sel, &key[1..]), vec![None]);
        assert!(sel.wants_keyframe());
    }
}
