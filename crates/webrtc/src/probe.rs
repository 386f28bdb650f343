//! Probing for more egress bandwidth when the SFU asks for it (its receivers
//! wait below their best layers).
//!
//! str0m's estimator (a port of libwebrtc's GCC) probes on its own only
//! while the sender is application-limited (sending under ~65 % of the
//! estimate): periodically every 5 s, and when the desired bitrate rises.
//! Two things the SFU cannot wait for:
//! - a link that got faster is found by the next periodic probe at best:
//!   raising the desired bitrate by 5 % on every other request triggers an
//!   allocation probe at once;
//! - a subscriber whose lowest layer already fills most of a low estimate
//!   is not application-limited, so nothing probes at all, and the estimate
//!   only grows by ~1.5x of what is acknowledged (measured: 100 -> 170
//!   kbit/s in 10 s on a link that had become unlimited). When the estimate
//!   has not risen by a quarter for [`STUCK_AFTER`] while probes were asked for, the
//!   estimator is restarted from its current value, which makes it probe
//!   at 3x and 6x of it (and capped at twice the desired bitrate).

use std::time::{Duration, Instant};

/// How long the estimate may stay without a significant rise, while the
/// SFU asks for probes, before the estimator is restarted.
pub const STUCK_AFTER: Duration = Duration::from_secs(3);

/// What to do to the estimator for one probe request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeAction {
    /// Set the desired bitrate to this.
    Desired(u64),
    /// Restart the estimator from this estimate.
    Reset(u64),
}

/// Probe bookkeeping of one session (sans-IO: time is passed in).
#[derive(Debug, Clone, Default)]
pub struct Prober {
    desired: u64,
    nudged: bool,
    estimate: u64,
    /// The estimate after its last significant rise (25 %: the additive
    /// growth of a stalled estimator creeps by a few % a second), and when.
    peak: u64,
    peak_at: Option<Instant>,
}

impl Prober {
    /// The SFU's desired bitrate changed.
    pub fn set_desired(&mut self, bps: u64) {
        self.desired = bps;
        self.nudged = false;
    }

    /// The estimator reported an estimate.
    pub fn on_estimate(&mut self, bps: u64, now: Instant) {
        self.estimate = bps;
        if self.peak_at.is_none() || bps > self.peak / 4 * 5 {
            self.peak = bps;
            self.peak_at = Some(now);
        } else if bps < self.peak {
            // A fall lowers the mark a rise is measured from (without
            // restarting the clock).
            self.peak = bps;
        }
    }

    /// The SFU asks for a probe.
    pub fn request(&mut self, now: Instant) -> Option<ProbeAction> {
        if self.desired == 0 {
            return None;
        }
        let stuck = self
            .peak_at
            .is_some_and(|at| now.saturating_duration_since(at) >= STUCK_AFTER);
        if stuck && self.estimate > 0 {
            self.peak_at = Some(now);
            self.nudged = false;
            return Some(ProbeAction::Reset(self.estimate));
        }
        self.nudged = !self.nudged;
        Some(ProbeAction::Desired(if self.nudged {
            self.desired / 20 * 21
        } else {
            self.desired
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_alternate_a_raised_desired_bitrate() {
        let t0 = Instant::now();
        let mut p = Prober::default();
        assert_eq!(p.request(t0), None);
        p.set_desired(1_000_000);
        p.on_estimate(300_000, t0);
        let s = Duration::from_millis(500);
        assert_eq!(p.request(t0 + s), Some(ProbeAction::Desired(1_050_000)));
        assert_eq!(p.request(t0 + s * 2), Some(ProbeAction::Desired(1_000_000)));
        assert_eq!(p.request(t0 + s * 3), Some(ProbeAction::Desired(1_050_000)));
        // A new desired bitrate starts from the plain value.
        p.set_desired(2_000_000);
        assert_eq!(p.request(t0 + s * 4), Some(ProbeAction::Desired(2_100_000)));
    }

    #[test]
    fn an_estimate_that_does_not_rise_restarts_the_estimator() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let stuck = STUCK_AFTER.as_secs() as u32;
        let mut p = Prober::default();
        p.set_desired(3_000_000);
        p.on_estimate(150_000, t0);
        // Creeping up by a few % is not a rise.
        for i in 1..stuck {
            p.on_estimate(150_000 + u64::from(i) * 1_000, t0 + s * i);
            assert!(matches!(
                p.request(t0 + s * i),
                Some(ProbeAction::Desired(_))
            ));
        }
        let last = 150_000 + u64::from(stuck - 1) * 1_000;
        assert_eq!(p.request(t0 + s * stuck), Some(ProbeAction::Reset(last)));
        // The restart counts as a fresh start.
        assert!(matches!(
            p.request(t0 + s * (stuck + 1)),
            Some(ProbeAction::Desired(_))
        ));
        // A real rise resets the clock too.
        let rise = stuck + 2;
        p.on_estimate(400_000, t0 + s * rise);
        assert!(matches!(
            p.request(t0 + s * (rise + stuck - 1)),
            Some(ProbeAction::Desired(_))
        ));
        assert_eq!(
            p.request(t0 + s * (rise + stuck)),
            Some(ProbeAction::Reset(400_000))
        );
    }
}
