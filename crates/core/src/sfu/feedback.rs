//! Publisher feedback: a publisher is told how much it needs to send. When
//! nobody has received a layered video track for [`UNWATCHED_GRACE`], the
//! publisher gets a bitrate cap (the transport sends it as REMB) that covers
//! its base layer with a margin, so its encoder stops spending uplink and CPU
//! on layers nobody receives. A subscriber lifts the cap at the next
//! evaluation.
//!
//! Capping to the layers that subscribers *do* use (say streams 0 and 1 of
//! three) was measured with Chromium and rejected for now: a browser takes
//! REMB as a ceiling for its own estimate, so after the cap is lifted its
//! estimate climbs back at its own pace (seconds to tens of seconds), and the
//! subscriber that asked for the top layer froze while streams came and went.
//! Pausing single encodings needs the publisher's SDK to cooperate.

use std::time::{Duration, Instant};

use super::{Output, Sfu};
use crate::layers::alloc::LayerRates;
use crate::MediaKind;

/// How often caps are evaluated.
pub const CAP_INTERVAL: Duration = Duration::from_secs(1);
/// A standing cap is sent again this often (REMB is best effort).
const CAP_REFRESH: Duration = Duration::from_secs(5);
/// How long a track goes unwatched before its publisher is capped.
pub const UNWATCHED_GRACE: Duration = Duration::from_secs(5);

/// The cap for a track whose subscribers need spatial layers up to
/// `needed`: `None` (no cap) when that is its top layer.
pub(super) fn cap_for(rates: &LayerRates, svc: bool, needed: u8) -> Option<u64> {
    let top = rates.rates.len().checked_sub(1)?;
    let needed = usize::from(needed);
    if needed >= top {
        return None;
    }
    let best = |s: usize| {
        rates
            .rates
            .get(s)
            .and_then(|t| t.last())
            .copied()
            .unwrap_or(0)
    };
    let bps = if svc {
        best(needed)
    } else {
        // Simulcast: every stream up to the needed one is sent.
        (0..=needed).map(best).sum()
    };
    // Margin for the encoder's swings and the next layer's ramp.
    Some(bps * 3 / 2 + 100_000)
}

/// What was last told to a publisher about one track.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CapState {
    sent: Option<u64>,
    at: Option<Instant>,
    /// Since when nobody receives the track.
    unwatched_since: Option<Instant>,
    /// The highest spatial layer last told to be needed
    /// ([`Output::PublisherLayers`]), and since when a lower one is.
    layers_sent: Option<u8>,
    lower_since: Option<Instant>,
    /// The highest spatial layer ever measured (paused streams are not
    /// measured while they pause).
    top_seen: u8,
}

impl CapState {
    /// The highest spatial layer to announce now (and then noted as sent),
    /// given the highest one subscribers need and the highest the source
    /// measures now; `None`: nothing to say. Until something is announced
    /// the publisher sends all its layers.
    fn layers(&mut self, needed: u8, top: u8, now: Instant) -> Option<u8> {
        self.top_seen = self.top_seen.max(top);
        let needed = needed.min(self.top_seen);
        let sent = self.layers_sent.unwrap_or(self.top_seen);
        if needed == sent {
            self.lower_since = None;
            return None;
        }
        if needed < sent {
            let since = *self.lower_since.get_or_insert(now);
            if now.saturating_duration_since(since) < UNWATCHED_GRACE {
                return None;
            }
        }
        self.layers_sent = Some(needed);
        self.lower_since = None;
        Some(needed)
    }
}

impl CapState {
    /// Whether `cap` is worth sending now.
    fn should_send(&self, cap: Option<u64>, now: Instant) -> bool {
        match (self.sent, cap) {
            (None, None) => false,
            (Some(a), Some(b)) => {
                a.abs_diff(b) > a / 4
                    || self
                        .at
                        .is_none_or(|t| now.saturating_duration_since(t) >= CAP_REFRESH)
            }
            _ => true,
        }
    }
}

impl Sfu {
    /// Evaluates every layered video track's cap (see the module docs).
    pub(super) fn publisher_caps(&mut self, now: Instant) {
        let mut out = Vec::new();
        for (id, t) in self.tracks.iter_mut() {
            if t.kind != MediaKind::Video {
                continue;
            }
            let Some(meter) = t.meter.as_ref() else {
                continue;
            };
            let watched = t
                .subscribers
                .iter()
                .filter_map(|r| self.receivers.get(r))
                .any(|r| !r.paused)
                || t.remote_watch_until.is_some_and(|u| now < u);
            let cap = if watched {
                t.cap.unwatched_since = None;
                None
            } else {
                let since = *t.cap.unwatched_since.get_or_insert(now);
                (now.saturating_duration_since(since) >= UNWATCHED_GRACE)
                    .then(|| cap_for(meter.rates(), meter.is_svc(), 0))
                    .flatten()
                    // A publisher that obeyed the cap stopped its upper
                    // layers, so only the base one is measured and there is
                    // nothing above it to cap: keep the cap (lifting it
                    // would bring the layers back, and the cap a second later).
                    .or(t.cap.sent)
            };
            // The streams some subscriber may want (simulcast only: an SVC
            // stream is one encoding). Remote nodes' subscribers are not
            // known here: all. Limits rather than the bandwidth allocation
            // decide, so a layer a subscriber may move up to keeps being
            // measured.
            if !meter.is_svc() {
                let needed = if t.remote_watch_until.is_some_and(|u| now < u) {
                    u8::MAX
                } else {
                    t.subscribers
                        .iter()
                        .filter_map(|r| self.receivers.get(r))
                        .filter(|r| !r.paused)
                        .map(|r| r.limits.max.spatial)
                        .max()
                        .unwrap_or(0)
                };
                let top = meter.rates().top_spatial().unwrap_or(0);
                if let Some(max_spatial) = t.cap.layers(needed, top, now) {
                    out.push(Output::PublisherLayers {
                        peer: t.owner,
                        track: *id,
                        max_spatial,
                    });
                }
            }
            if t.cap.should_send(cap, now) {
                t.cap.sent = cap;
                t.cap.at = Some(now);
                out.push(Output::PublisherCap {
                    peer: t.owner,
                    track: *id,
                    bps: cap,
                });
            }
        }
        self.outputs.extend(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sfu::testutil::{base_stream_frame, camera_and_viewer, outputs, simulcast_frame};

    fn rates() -> LayerRates {
        LayerRates {
            rates: vec![
                vec![50_000, 100_000],
                vec![200_000, 300_000],
                vec![800_000, 1_200_000],
            ],
        }
    }

    #[test]
    fn caps_cover_the_needed_layers_only() {
        // Simulcast: streams 0 and 1 at their top temporal layer, plus margin.
        assert_eq!(
            cap_for(&rates(), false, 1),
            Some((100_000 + 300_000) * 3 / 2 + 100_000)
        );
        assert_eq!(cap_for(&rates(), false, 0), Some(100_000 * 3 / 2 + 100_000));
        // SVC rates are cumulative already.
        assert_eq!(cap_for(&rates(), true, 1), Some(300_000 * 3 / 2 + 100_000));
        // The top layer is needed, or more than exists: no cap.
        assert_eq!(cap_for(&rates(), false, 2), None);
        assert_eq!(cap_for(&rates(), false, 7), None);
        assert_eq!(cap_for(&LayerRates::default(), false, 0), None);
    }

    #[test]
    fn caps_are_sent_on_change_and_refreshed() {
        let t0 = Instant::now();
        let mut s = CapState::default();
        assert!(!s.should_send(None, t0));
        assert!(s.should_send(Some(400_000), t0));
        s = CapState {
            sent: Some(400_000),
            at: Some(t0),
            ..CapState::default()
        };
        // Small moves wait for the refresh; big ones and lifting go at once.
        assert!(!s.should_send(Some(450_000), t0 + CAP_INTERVAL));
        assert!(s.should_send(Some(450_000), t0 + CAP_REFRESH));
        assert!(s.should_send(Some(600_000), t0 + CAP_INTERVAL));
        assert!(s.should_send(None, t0 + CAP_INTERVAL));
    }

    fn caps(sfu: &mut Sfu) -> Vec<Option<u64>> {
        outputs(sfu, |o| match o {
            Output::PublisherCap { bps, .. } => Some(bps),
            _ => None,
        })
    }

    #[test]
    fn sfu_caps_an_unwatched_simulcast_publisher_to_its_base_layer() {
        use crate::layers::{alloc::LayerLimits, Layer};
        let t0 = Instant::now();
        let (mut sfu, cam, _bob, r) = camera_and_viewer(t0);
        let low = LayerLimits {
            min: Layer::new(0, 0),
            max: Layer::new(0, 2),
        };
        sfu.set_receiver_config(r, 1, low, t0).unwrap();
        // Three streams at 30 fps (200, 600, 1500 B frames); bob pauses after 2 s.
        let mut caps_seen = Vec::new();
        for i in 0..300u64 {
            let at = t0 + Duration::from_millis(i * 33);
            if i == 60 {
                sfu.set_receiver_paused(r, true, at).unwrap();
            }
            simulcast_frame(&mut sfu, cam, i, t0);
            caps_seen.extend(caps(&mut sfu).into_iter().map(|c| (i, c)));
        }
        // Watched (even at the low layer): no cap. Unwatched for 5 s: capped
        // to stream 0 (~60 kbit/s with headers) plus margin.
        let [(i, Some(cap))] = caps_seen[..] else {
            panic!("caps: {caps_seen:?}");
        };
        assert!((60 + 150..60 + 190).contains(&i), "capped at packet {i}");
        assert!((150_000..250_000).contains(&cap), "cap {cap}");
        // The publisher obeys: only stream 0 from now on. The cap stays (it
        // is refreshed, never lifted while nobody watches).
        let mut after = Vec::new();
        for i in 300..400u64 {
            base_stream_frame(&mut sfu, cam, i, t0);
            after.extend(caps(&mut sfu));
        }
        assert!(
            after.iter().all(Option::is_some),
            "caps after the top streams stopped: {after:?}"
        );
        // Bob resumes: the cap is lifted at the next evaluation.
        let later = t0 + Duration::from_secs(14);
        sfu.set_receiver_paused(r, false, later).unwrap();
        sfu.handle_timeout(later + CAP_INTERVAL);
        assert_eq!(caps(&mut sfu), vec![None]);
    }

    fn layers(sfu: &mut Sfu) -> Vec<u8> {
        outputs(sfu, |o| match o {
            Output::PublisherLayers { max_spatial, .. } => Some(max_spatial),
            _ => None,
        })
    }

    #[test]
    fn a_publisher_is_told_which_simulcast_streams_its_subscribers_may_want() {
        use crate::layers::{alloc::LayerLimits, Layer};
        let t0 = Instant::now();
        let (mut sfu, cam, _bob, r) = camera_and_viewer(t0);
        let limits = |max_spatial| LayerLimits {
            min: Layer::new(0, 0),
            max: Layer::new(max_spatial, 2),
        };
        // Default limits for 2 s: all streams wanted, nothing to say.
        let mut seen = Vec::new();
        for i in 0..60u64 {
            simulcast_frame(&mut sfu, cam, i, t0);
            seen.extend(layers(&mut sfu));
        }
        assert_eq!(seen, Vec::<u8>::new());
        // Bob wants stream 0 only: after 5 s of that, the publisher hears it.
        sfu.set_receiver_config(r, 1, limits(0), t0 + Duration::from_millis(60 * 33))
            .unwrap();
        for i in 60..300u64 {
            let at = simulcast_frame(&mut sfu, cam, i, t0);
            for l in layers(&mut sfu) {
                seen.push(l);
                let waited = at.saturating_duration_since(t0 + Duration::from_millis(60 * 33));
                assert!(
                    waited >= UNWATCHED_GRACE && waited < UNWATCHED_GRACE + CAP_INTERVAL * 2,
                    "after {waited:?}"
                );
            }
        }
        assert_eq!(seen, vec![0]);
        // The publisher pauses streams 1 and 2; then bob wants them again:
        // told at the next evaluation, whatever is measured meanwhile.
        for i in 300..330u64 {
            base_stream_frame(&mut sfu, cam, i, t0);
        }
        assert_eq!(layers(&mut sfu), Vec::<u8>::new());
        let now = t0 + Duration::from_millis(330 * 33);
        sfu.set_receiver_config(r, 1, limits(2), now).unwrap();
        base_stream_frame(&mut sfu, cam, 330, t0);
        sfu.handle_timeout(now + CAP_INTERVAL);
        assert_eq!(layers(&mut sfu), vec![2]);
    }
}
