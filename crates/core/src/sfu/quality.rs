//! Quality control per subscriber: its send-side bandwidth estimate is
//! split across its video receivers (see [`crate::layers::alloc`]) and each
//! receiver's selector is given the chosen layer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

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
/// The share used while the estimate cannot pay for every receiver's best
/// layer. str0m (like libwebrtc) probes for more bandwidth only while the
/// sender is application-limited (below ~65 % of its estimate); a sender that
/// fills its estimate only grows it by ~1.5x of what it sends, so it would
/// never discover a link that got faster. Staying under that line keeps the
/// periodic probes going, and the receivers move up as soon as one succeeds.
/// It never takes away the lowest layers' full frame rate when the usable
/// share pays for it (see [`deficient_budget`]).
const DEFICIENT_PERCENT: u64 = 60;

/// What the transport is told to probe for per video receiver whose source
/// has no measured layers yet (a receiver that is not subscribed yet, or a
/// publisher whose first packets have not been metered). The estimator's
/// first probes (3x and 6x its start value) are capped at twice the desired
/// bitrate and happen once: sized on the audio alone they would only confirm
/// a few hundred kbit/s and leave the estimate there, while a camera's top
/// layer wants 1-2.5 Mbit/s.
const UNKNOWN_VIDEO_BPS: u64 = 1_500_000;

/// How long a higher estimate must hold before receivers move up on it. A
/// probe cluster can pass a shaper's burst allowance and lift the estimate
/// for a moment; moving up on that and back down costs a freeze. Moving
/// down is never delayed.
const UPGRADE_HOLD: Duration = Duration::from_millis(1500);

/// How long a receiver that a falling estimate moved down waits before it
/// may move up again; doubled (up to [`UP_BACKOFF_MAX`]) each time it is
/// moved down within [`UP_FAILED_WITHIN`] of moving up. On a lossy link the
/// loss-based estimate swings, and every simulcast switch costs a keyframe
/// of the stream switched to, which the publisher's encoder makes for all
/// its streams at once: every other subscriber gets it too (measured with
/// the lossy-link e2e test: 8 switches of the lossy subscriber in 12 s
/// moved the unlimited one off its top layer).
const UP_BACKOFF: Duration = Duration::from_secs(2);
const UP_BACKOFF_MAX: Duration = Duration::from_secs(16);
const UP_FAILED_WITHIN: Duration = Duration::from_secs(5);

/// Upgrade backoff of one receiver (see [`UP_BACKOFF`]).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct UpBackoff {
    hold: Duration,
    until: Option<Instant>,
    last_up: Option<Instant>,
}

impl UpBackoff {
    fn may_go_up(&self, now: Instant) -> bool {
        self.until.is_none_or(|t| now >= t)
    }

    fn went_up(&mut self, now: Instant) {
        self.last_up = Some(now);
    }

    fn went_down(&mut self, now: Instant) {
        let failed = self
            .last_up
            .is_some_and(|t| now.saturating_duration_since(t) < UP_FAILED_WITHIN);
        self.hold = if failed {
            (self.hold * 2).clamp(UP_BACKOFF, UP_BACKOFF_MAX)
        } else {
            UP_BACKOFF
        };
        self.until = Some(now + self.hold);
    }
}

/// What a peer short of bandwidth (its estimate cannot pay for every
/// receiver's best layer) spends: [`DEFICIENT_PERCENT`] of its estimate, but
/// at least what audio and every video receiver's lowest layer at its full
/// frame rate cost, when the [`USABLE_PERCENT`] share pays for that. A
/// subscriber behind a 300 kbit/s link (estimate ~220-300k) otherwise got the
/// low stream's lower temporal layers only: 5-10 frames/s, which a browser
/// counts as freezes (measured in the simulcast-bwe e2e test: a 221 ms
/// freeze when the allocation fell to temporal layer 0). Sending above the
/// ALR line ends str0m's periodic probes; the prober's restarts
/// (`mediamesh_webrtc::probe`) still look for more.
fn deficient_budget(estimate: u64, audio: u64, subs: &[Subscription<'_>]) -> u64 {
    let base = audio + subs.iter().map(alloc::base_rate).sum::<u64>();
    let usable = estimate / 100 * USABLE_PERCENT;
    (estimate / 100 * DEFICIENT_PERCENT).max(base.min(usable))
}

/// A peer's bandwidth state.
#[derive(Debug, Clone, Default)]
pub(super) struct PeerBudget {
    /// Estimates with the time they arrived, the oldest one in force at
    /// `now - UPGRADE_HOLD` first.
    estimates: VecDeque<(Instant, u64)>,
    /// The desired bitrate last told to the transport.
    desired: u64,
    /// The last allocation could not pay for every receiver's best layer.
    deficient: bool,
}

impl PeerBudget {
    fn push(&mut self, bps: u64, now: Instant) {
        self.estimates.push_back((now, bps));
        self.trim(now);
    }

    fn trim(&mut self, now: Instant) {
        let Some(cut) = now.checked_sub(UPGRADE_HOLD) else {
            return;
        };
        while self.estimates.len() > 1 && self.estimates.get(1).is_some_and(|(t, _)| *t <= cut) {
            self.estimates.pop_front();
        }
    }

    /// The estimate to allocate by: the lowest one in force during the
    /// last [`UPGRADE_HOLD`] (so the newest when it went down).
    fn sustained(&mut self, now: Instant) -> Option<u64> {
        self.trim(now);
        self.estimates.iter().map(|(_, b)| *b).min()
    }

    /// The newest estimate.
    fn latest(&self) -> Option<u64> {
        self.estimates.back().map(|(_, bps)| *bps)
    }
}

/// What quality control decided for one video receiver (receiver stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverQuality {
    /// The layer the allocator aims at (clamped by the selector to what
    /// arrives, reached at the next decodable point).
    pub target: Layer,
    /// The target layer's measured bitrate at the source, if measured.
    pub target_bps: Option<u64>,
    /// The send-side estimate towards the receiver's peer (shared by all of
    /// its receivers), if its transport estimates.
    pub estimate_bps: Option<u64>,
}

/// Quality control across every playing video receiver of this SFU
/// (node metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QualitySummary {
    /// Receivers by the spatial layer forwarded now (index 3: 3 and up).
    pub by_spatial: [u32; 4],
    /// Receivers whose target is above the layer they get (a switch up
    /// waits for its decodable point).
    pub below_target: u32,
    /// Receivers aimed below the best layer their limits allow and their
    /// source has: held down by their peer's bandwidth.
    pub bandwidth_limited: u32,
    /// The latest send-side estimate of every peer that has one.
    pub estimates: Vec<u64>,
}

impl Sfu {
    /// Quality control across every playing video receiver.
    pub fn quality_summary(&self) -> QualitySummary {
        let mut q = QualitySummary::default();
        for (rid, r) in &self.receivers {
            if r.kind != MediaKind::Video || r.paused || r.source.is_none() {
                continue;
            }
            let Some(now) = r.selector.as_ref().and_then(|s| s.current()) else {
                continue;
            };
            q.by_spatial[usize::from(now.spatial.min(3))] += 1;
            let Some(rq) = self.receiver_quality(*rid) else {
                continue;
            };
            if rq.target.spatial > now.spatial {
                q.below_target += 1;
            }
            let best = r
                .source
                .and_then(|t| self.tracks.get(&t))
                .and_then(|t| t.meter.as_ref())
                .and_then(|m| m.rates().top_spatial())
                .map_or(0, |top| top.min(r.limits.max.spatial));
            if rq.target.spatial < best {
                q.bandwidth_limited += 1;
            }
        }
        let mut peers: Vec<_> = self.estimates.iter().collect();
        peers.sort_by_key(|(p, _)| **p);
        q.estimates = peers.into_iter().filter_map(|(_, b)| b.latest()).collect();
        q
    }

    /// Quality control's view of a video receiver with a source.
    pub fn receiver_quality(&self, receiver: ReceiverId) -> Option<ReceiverQuality> {
        let r = self.receivers.get(&receiver)?;
        if r.kind != MediaKind::Video {
            return None;
        }
        let meter = r.source.and_then(|t| self.tracks.get(&t))?.meter.as_ref();
        let want = r.allocation.target(r.limits);
        let measured = |l: Layer| meter.is_some_and(|m| m.rates().rate(l).is_some());
        // The best measured layer at or below the allocator's aim (limits
        // default to "any": u8::MAX).
        let target = (0..=want.spatial.min(3))
            .rev()
            .flat_map(|s| {
                (0..=want.temporal.min(3))
                    .rev()
                    .map(move |t| Layer::new(s, t))
            })
            .find(|l| measured(*l))
            .unwrap_or(want);
        Some(ReceiverQuality {
            target,
            target_bps: meter.and_then(|m| m.rates().rate(target)),
            estimate_bps: self.estimates.get(&r.owner).and_then(PeerBudget::latest),
        })
    }

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
        self.estimates.entry(peer).or_default().push(bps, now);
        self.reallocate(peer, now);
    }

    /// Asks for a probe towards every peer whose receivers wait for
    /// bandwidth (see [`Output::ProbeBandwidth`]).
    pub(super) fn probe_requests(&mut self) {
        let mut peers: Vec<PeerId> = self
            .estimates
            .iter()
            .filter(|(_, b)| b.deficient)
            .map(|(p, _)| *p)
            .collect();
        peers.sort();
        self.outputs.extend(
            peers
                .into_iter()
                .map(|peer| Output::ProbeBandwidth { peer }),
        );
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
    pub(super) fn reallocate(&mut self, peer: PeerId, now: Instant) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let empty = LayerRates::default();
        let mut video: Vec<ReceiverId> = Vec::new();
        let mut audio = 0u64;
        let mut unknown_video = 0u64;
        for rid in &p.receivers {
            let Some(r) = self.receivers.get(rid) else {
                continue;
            };
            if r.paused {
                continue;
            }
            if r.source.is_none() {
                // A receiver never attached yet (an SDK's slot waiting for
                // its first subscription) is probed for; one the client
                // detached (paused) is not: a higher desired bitrate makes
                // str0m probe, and its padding resends old packets of the
                // paused stream.
                if r.kind == MediaKind::Video && r.attached_at.is_none() {
                    unknown_video += UNKNOWN_VIDEO_BPS;
                }
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
        // Attached video whose source has no measured layers yet.
        unknown_video +=
            UNKNOWN_VIDEO_BPS * subs.iter().filter(|s| !s.rates.measured()).count() as u64;
        let estimate = self.estimates.get_mut(&peer).and_then(|b| b.sustained(now));
        let usable = estimate.map_or(u64::MAX, |e| e / 100 * USABLE_PERCENT);
        let mut plan = alloc::allocate(usable, audio, &subs);
        let deficient = estimate.is_some_and(|e| plan.desired > e);
        if let Some(e) = estimate.filter(|_| deficient) {
            plan = alloc::allocate(deficient_budget(e, audio, &subs), audio, &subs);
        }
        // Probe for the best layers plus the headroom kept on top of them.
        let desired = (plan.desired + unknown_video) / USABLE_PERCENT * 100;
        drop(subs);
        for (rid, a) in video.iter().zip(plan.allocations) {
            let Some(r) = self.receivers.get_mut(rid) else {
                continue;
            };
            // Layers not measured yet: with an estimate to respect, start
            // at the lowest layer (at its full frame rate) and move up once
            // the source's rates show what fits; without one (no bandwidth
            // estimation on this transport) aim at the best.
            // A receiver attached less than UPGRADE_HOLD ago stays on the
            // lowest spatial layer too: the estimate it would move up on has
            // not yet seen this video on the link (a fresh estimate is the
            // transport's guess or its probes', and a higher layer's keyframe
            // on a slow link queues for seconds).
            let lowest = Layer::new(r.limits.min.spatial, r.limits.max.temporal);
            let fresh = r
                .attached_at
                .is_some_and(|at| now.saturating_duration_since(at) < UPGRADE_HOLD);
            let mut a = match a {
                Allocation::Unknown if estimate.is_some() => Allocation::Layer(lowest),
                Allocation::Layer(l)
                    if estimate.is_some() && fresh && l.spatial > lowest.spatial =>
                {
                    Allocation::Layer(lowest)
                }
                a => a,
            };
            // Spatial moves on the estimate (the old layer is still within
            // the limits; a change of limits moves at once): up only once
            // the backoff allows, down at once and it starts.
            if let (Allocation::Layer(old), Allocation::Layer(new)) = (r.allocation, a) {
                if r.limits.allows(old) {
                    if new.spatial > old.spatial {
                        if r.up_backoff.may_go_up(now) {
                            r.up_backoff.went_up(now);
                        } else {
                            a = r.allocation;
                        }
                    } else if new.spatial < old.spatial {
                        r.up_backoff.went_down(now);
                    }
                }
            }
            if r.allocation == a {
                continue;
            }
            // The selector takes it at the source's next packet, clamped
            // to the layers that arrive.
            r.allocation = a;
        }
        if let Some(b) = self.estimates.get_mut(&peer) {
            b.deficient = deficient;
            // Tell the transport when the wish moved by more than 10 %.
            if desired.abs_diff(b.desired) > b.desired / 10 {
                b.desired = desired;
                self.outputs
                    .push_back(Output::DesiredBitrate { peer, bps: desired });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sfu::testutil::{camera_and_viewer, outputs, simulcast_frame, simulcast_frame_key};
    use crate::sfu::ReceiverSource;
    use crate::{Codec, RoomId};

    fn desired(sfu: &mut Sfu) -> Vec<u64> {
        outputs(sfu, |o| match o {
            Output::DesiredBitrate { bps, .. } => Some(bps),
            _ => None,
        })
    }

    #[test]
    fn video_receivers_without_measured_layers_are_probed_for_a_camera() {
        let t0 = Instant::now();
        let mut sfu = Sfu::new();
        let room = RoomId::new("app", "r");
        let viewer = sfu.add_peer(room.clone(), "viewer");
        let mic = sfu
            .add_receiver(
                viewer,
                MediaKind::Audio,
                vec![Codec::Opus],
                ReceiverSource::FollowRoom,
                t0,
            )
            .unwrap();
        sfu.set_estimate(viewer, 300_000, t0);
        // Audio alone: its reserve plus headroom (nothing is playing yet, so
        // not even that).
        let audio_only = desired(&mut sfu);
        assert!(audio_only.iter().all(|b| *b < 100_000), "{audio_only:?}");
        // A video receiver, not attached yet: the first probes must be able
        // to find a camera's top layer, not just the audio.
        let cam = sfu
            .add_receiver(
                viewer,
                MediaKind::Video,
                vec![Codec::Vp8],
                ReceiverSource::Track {
                    peer: "pub".into(),
                    track: "cam".into(),
                },
                t0,
            )
            .unwrap();
        sfu.set_estimate(viewer, 300_000, t0);
        assert_eq!(
            desired(&mut sfu).last().copied(),
            Some(UNKNOWN_VIDEO_BPS / USABLE_PERCENT * 100)
        );
        // A paused video receiver wants nothing.
        sfu.set_receiver_paused(cam, true, t0).unwrap();
        assert!(desired(&mut sfu).iter().all(|b| *b < 100_000));
        let _ = mic;
    }

    #[test]
    fn the_summary_counts_receivers_by_layer_and_those_held_down() {
        let t0 = Instant::now();
        let (mut sfu, cam, bob, _rx) = camera_and_viewer(t0);
        assert_eq!(sfu.quality_summary(), QualitySummary::default());
        sfu.set_estimate(bob, 10_000_000, t0);
        // The publisher answers keyframe requests at its next frame.
        let mut key = true;
        let mut run = |sfu: &mut Sfu, frames: std::ops::Range<u64>| {
            for i in frames {
                simulcast_frame_key(sfu, cam, i, t0, key);
                key = !outputs(sfu, |o| {
                    matches!(o, Output::RequestKeyframe { .. }).then_some(())
                })
                .is_empty();
            }
        };
        run(&mut sfu, 0..90);
        let q = sfu.quality_summary();
        assert_eq!(q.by_spatial, [0, 0, 1, 0], "{q:?}");
        assert_eq!((q.below_target, q.bandwidth_limited), (0, 0), "{q:?}");
        assert_eq!(q.estimates, vec![10_000_000]);
        // Short of bandwidth: down to stream 0 at once, counted as held down.
        sfu.set_estimate(bob, 100_000, t0 + Duration::from_millis(90 * 33));
        run(&mut sfu, 90..120);
        let q = sfu.quality_summary();
        assert_eq!(q.by_spatial, [1, 0, 0, 0], "{q:?}");
        assert_eq!(q.bandwidth_limited, 1, "{q:?}");
    }

    #[test]
    fn a_receiver_detached_by_its_client_is_not_probed_for() {
        let t0 = Instant::now();
        let (mut sfu, _cam, bob, rx) = camera_and_viewer(t0);
        sfu.set_estimate(bob, 300_000, t0);
        let _ = desired(&mut sfu);
        sfu.set_receiver_source(rx, ReceiverSource::Detached, t0)
            .unwrap();
        sfu.set_estimate(bob, 310_000, t0);
        let after = desired(&mut sfu);
        assert!(
            !after.is_empty() && after.iter().all(|b| *b < 100_000),
            "{after:?}"
        );
    }

    #[test]
    fn a_peer_short_of_bandwidth_asks_for_probes_until_it_has_enough() {
        let t0 = Instant::now();
        let (mut sfu, cam, bob, _) = camera_and_viewer(t0);
        sfu.set_estimate(bob, 100_000, t0);
        // Three VP8 streams (~60, ~160, ~380 kbit/s) for 4 s.
        let mut probes = Vec::new();
        let run = |sfu: &mut Sfu, from: u64, to: u64| {
            let mut n = 0;
            for i in from..to {
                simulcast_frame(sfu, cam, i, t0);
                n += std::iter::from_fn(|| sfu.poll_output())
                    .filter(|o| matches!(o, Output::ProbeBandwidth { peer } if *peer == bob))
                    .count();
            }
            n
        };
        probes.push(run(&mut sfu, 0, 120));
        // Enough for every stream: no more probes asked for.
        sfu.set_estimate(bob, 5_000_000, t0 + Duration::from_millis(120 * 33));
        // (While the higher estimate has not held for UPGRADE_HOLD, the
        // peer is still short.)
        probes.push(run(&mut sfu, 120, 180));
        probes.push(run(&mut sfu, 180, 240));
        assert!(probes[0] >= 2, "probes while short: {probes:?}");
        assert_eq!(probes[2], 0, "probes with enough: {probes:?}");
    }

    #[test]
    fn a_new_receiver_starts_low_and_moves_up_once_the_estimate_held() {
        let t0 = Instant::now();
        let (mut sfu, cam, bob, rx) = camera_and_viewer(t0);
        // A generous estimate, from the start.
        sfu.set_estimate(bob, 10_000_000, t0);
        let mut targets = Vec::new();
        for i in 0..90u64 {
            simulcast_frame(&mut sfu, cam, i, t0);
            while sfu.poll_output().is_some() {}
            if i % 15 == 14 {
                let q = sfu.receiver_quality(rx).unwrap();
                targets.push((i * 33, q.target.spatial));
            }
        }
        // Lowest until 1.5 s after attaching, the top after.
        for (ms, s) in &targets {
            if *ms < 1_500 {
                assert_eq!(*s, 0, "{targets:?}");
            }
        }
        assert_eq!(targets.last().map(|t| t.1), Some(2), "{targets:?}");
        let q = sfu.receiver_quality(rx).unwrap();
        assert_eq!(q.estimate_bps, Some(10_000_000));
        assert!(q.target_bps.is_some_and(|b| b > 300_000), "{q:?}");
    }

    #[test]
    fn short_of_bandwidth_the_lowest_layer_keeps_its_frame_rate() {
        // VP8 simulcast with three temporal layers; the low stream's full rate
        // is 140k.
        let rates = LayerRates {
            rates: vec![
                vec![60_000, 95_000, 140_000],
                vec![200_000, 320_000, 450_000],
                vec![700_000, 1_000_000, 1_400_000],
            ],
        };
        let subs = [Subscription {
            priority: 1,
            limits: LayerLimits::default(),
            rates: &rates,
        }];
        let low = |e: u64| {
            let plan = alloc::allocate(deficient_budget(e, AUDIO_BPS, &subs), AUDIO_BPS, &subs);
            plan.allocations[0]
        };
        // 60 % of 240k leaves 94k for video: temporal layer 0 or 1 (5-10 fps).
        // The usable 90 % (216k) pays for audio and the low stream at 20 fps.
        assert!(
            alloc::allocate(240_000 / 100 * DEFICIENT_PERCENT, AUDIO_BPS, &subs).allocations[0]
                != Allocation::Layer(Layer::new(0, 2))
        );
        assert_eq!(low(240_000), Allocation::Layer(Layer::new(0, 2)));
        // Not even the usable share pays for it: as much as it does.
        assert_eq!(low(170_000), Allocation::Layer(Layer::new(0, 1)));
        // More than the base: the ALR share, which is more.
        assert_eq!(deficient_budget(1_000_000, AUDIO_BPS, &subs), 600_000);
    }

    #[test]
    fn moves_up_after_a_fall_wait_longer_each_time_one_fails() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut b = UpBackoff::default();
        assert!(b.may_go_up(t0));
        b.went_down(t0);
        assert!(!b.may_go_up(t0 + s(1)));
        assert!(b.may_go_up(t0 + UP_BACKOFF));
        // Up, and down again within UP_FAILED_WITHIN: twice as long.
        b.went_up(t0 + s(2));
        b.went_down(t0 + s(3));
        assert!(!b.may_go_up(t0 + s(3) + UP_BACKOFF));
        assert!(b.may_go_up(t0 + s(3) + UP_BACKOFF * 2));
        // Failing again and again stops at the maximum.
        for i in 0..10u64 {
            let at = t0 + s(10 + i * 20);
            b.went_up(at);
            b.went_down(at + s(1));
        }
        assert_eq!(b.hold, UP_BACKOFF_MAX);
        // An upgrade that held is no failure: back to the base hold.
        b.went_up(t0 + s(400));
        b.went_down(t0 + s(400) + UP_FAILED_WITHIN);
        assert_eq!(b.hold, UP_BACKOFF);
    }

    #[test]
    fn a_receiver_the_estimate_moved_down_waits_before_moving_up() {
        let t0 = Instant::now();
        let (mut sfu, cam, bob, rx) = camera_and_viewer(t0);
        // At the top after 2 s on a generous estimate; at 3 s the estimate falls
        // and comes back 100 ms later.
        let mut fell_at = None;
        let mut spatial = Vec::new();
        for i in 0..200u64 {
            let at = t0 + Duration::from_millis(i * 33);
            let ms = i * 33;
            let bps = if (3_000..3_100).contains(&ms) {
                150_000
            } else {
                10_000_000
            };
            sfu.set_estimate(bob, bps, at);
            simulcast_frame(&mut sfu, cam, i, t0);
            while sfu.poll_output().is_some() {}
            let q = sfu.receiver_quality(rx).unwrap();
            if ms >= 3_000 && fell_at.is_none() && q.target.spatial == 0 {
                fell_at = Some(ms);
            }
            spatial.push((ms, q.target.spatial));
        }
        let at = |ms: u64| spatial.iter().rev().find(|(t, _)| *t <= ms).map(|x| x.1);
        assert_eq!(at(2_900), Some(2), "{spatial:?}");
        let fell_at = fell_at.expect("moved down when the estimate fell");
        assert!(fell_at < 3_100, "{fell_at}");
        // The estimate is back after 100 ms (and held 1.5 s by 4.6 s), but the
        // receiver stays down for UP_BACKOFF after its fall, then moves up.
        let back = spatial
            .iter()
            .find(|(t, s)| *t > fell_at && *s > 0)
            .map(|x| x.0)
            .expect("moved up again");
        assert!(
            back >= fell_at + UP_BACKOFF.as_millis() as u64,
            "up at {back} ms, fell at {fell_at} ms"
        );
        assert_eq!(at(6_500), Some(2), "{spatial:?}");
    }

    #[test]
    fn a_higher_estimate_counts_after_it_held_a_drop_at_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut b = PeerBudget::default();
        assert_eq!(b.sustained(t0), None);
        b.push(300_000, t0);
        b.push(900_000, t0 + ms(1000));
        // The probe's 900k is not trusted until it held 1.5 s.
        assert_eq!(b.sustained(t0 + ms(1200)), Some(300_000));
        assert_eq!(b.sustained(t0 + ms(2400)), Some(300_000));
        assert_eq!(b.sustained(t0 + ms(2500)), Some(900_000));
        // A drop counts at once.
        b.push(250_000, t0 + ms(2600));
        assert_eq!(b.sustained(t0 + ms(2600)), Some(250_000));
        assert!(b.estimates.len() <= 2);
    }
}
