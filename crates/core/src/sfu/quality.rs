//! Quality control per subscriber: its send-side bandwidth estimate is
//! split across its video receivers (see [`crate::layers::alloc`]) and each
//! receiver's selector is given the chosen layer.

use std::time::Instant;

use super::{Output, Sfu, SfuError};
use crate::layers::alloc::{self, Allocation, LayerLimits, LayerRates, Subscription};
use crate::layers::Layer;
use crate::{MediaKind, PeerId, ReceiverId, TrackId};

/// What audio costs per receiver when the allocator reserves it (Opus at
/// typical voice rates plus headers).
const AUDIO_BPS: u64 = 50_000;
/// The share of the estimate video may fill: headroom for the encoder's
/// bursts (keyframes), retransmissions and probes, so the link never sits at
/// its limit.
const USABLE_PERCENT: u64 = 90;

/// A peer's bandwidth state.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PeerBudget {
    estimate: u64,
    /// The desired bitrate last told to the transport.
    desired: u64,
}

impl Allocation {
    /// The layer a selector should aim at under this allocation.
    pub(super) fn target(&self, limits: LayerLimits) -> Layer {
        match self {
            Allocation::Layer(l) => *l,
            Allocation::Unknown => limits.max,
        }
    }
}

impl Sfu {
    /// A receiver's priority and layer limits (SDK receiver config).
    pub fn set_receiver_config(
        &mut self,
        receiver: ReceiverId,
        priority: u32,
        limits: LayerLimits,
        now: Instant,
    ) -> Result<(), SfuError> {
        let r = self
            .receivers
            .get_mut(&receiver)
            .ok_or(SfuError::UnknownReceiver(receiver))?;
        r.priority = priority;
        r.limits = limits;
        let owner = r.owner;
        self.reallocate(owner, now);
        Ok(())
    }

    /// The send-side bandwidth estimate towards a peer changed.
    pub fn set_estimate(&mut self, peer: PeerId, bps: u64, now: Instant) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        self.estimates.entry(peer).or_default().estimate = bps;
        self.reallocate(peer, now);
    }

    /// A track's measured layer rates changed: its subscribers' peers
    /// re-split their budgets.
    pub(super) fn reallocate_subscribers_of(&mut self, track: TrackId, now: Instant) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let mut owners: Vec<PeerId> = t
            .subscribers
            .iter()
            .filter_map(|r| self.receivers.get(r).map(|r| r.owner))
            .collect();
        owners.sort();
        owners.dedup();
        for peer in owners {
            self.reallocate(peer, now);
        }
    }

    /// Splits a peer's estimate across its video receivers and sets their
    /// targets. Without an estimate (yet) every receiver aims at its limit.
    fn reallocate(&mut self, peer: PeerId, _now: Instant) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let empty = LayerRates::default();
        let mut video: Vec<ReceiverId> = Vec::new();
        let mut audio = 0u64;
        for rid in &p.receivers {
            let Some(r) = self.receivers.get(rid) else {
                continue;
            };
            if r.source.is_none() || r.paused {
                continue;
            }
            match r.kind {
                MediaKind::Audio => audio += AUDIO_BPS,
                MediaKind::Video => video.push(*rid),
            }
        }
        let subs: Vec<Subscription<'_>> = video
            .iter()
            .filter_map(|rid| {
                let r = self.receivers.get(rid)?;
                let rates = r
                    .source
                    .and_then(|t| self.tracks.get(&t))
                    .and_then(|t| t.meter.as_ref())
                    .map_or(&empty, |m| m.rates());
                Some(Subscription {
                    priority: r.priority,
                    limits: r.limits,
                    rates,
                })
            })
            .collect();
        let budget = self.estimates.get(&peer).copied();
        let usable = budget.map_or(u64::MAX, |b| b.estimate / 100 * USABLE_PERCENT);
        let plan = alloc::allocate(usable, audio, &subs);
        let desired = plan.desired;
        drop(subs);
        for (rid, a) in video.iter().zip(plan.allocations) {
            let Some(r) = self.receivers.get_mut(rid) else {
                continue;
            };
            if r.allocation == a {
                continue;
            }
            // The selector takes it at the source's next packet, clamped
            // to the layers that arrive.
            r.allocation = a;
        }
        if let Some(b) = self.estimates.get_mut(&peer) {
            // Tell the transport when the wish moved by more than 10 %.
            if desired.abs_diff(b.desired) > b.desired / 10 {
                b.desired = desired;
                self.outputs
                    .push_back(Output::DesiredBitrate { peer, bps: desired });
            }
        }
    }
}
