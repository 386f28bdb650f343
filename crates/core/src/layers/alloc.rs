//! Bitrate allocation: one subscriber's bandwidth estimate split across its
//! video subscriptions by priority, within each one's layer limits.
//!
//! Pure function of its inputs. The SFU calls it when the estimate, a
//! receiver's limits or the sources' measured layer bitrates change, and
//! gives each selector the layer chosen here.
//!
//! The rule, in order:
//! 1. Audio is served first: its bitrate is taken off the estimate.
//! 2. Every subscription gets its minimum layer, highest priority first,
//!    even past the budget: video is never paused by the allocator (the
//!    estimate of a link that carries little is low until probing raises it;
//!    pausing on it would freeze a picture that the link can carry).
//!    Pausing the lowest priorities under real congestion is future work.
//! 3. Then, highest priority first, each subscription is raised to the best
//!    layer within its maximum that the remaining budget pays for. A higher
//!    priority (e.g. screen share over camera) is therefore filled to its
//!    best before a lower one gets more than its minimum.
//!
//! Frame rate is only traded away on the lowest spatial layer: above it, a
//! layer is a candidate at its full temporal rate only. A bigger picture at a
//! quarter of the frame rate looks worse than a smaller one that moves, and a
//! receiver that drops to a base temporal layer of a few frames per second
//! counts it as a freeze.

use super::Layer;

/// A source's measured bitrate per layer, in bit/s: `rates[s][t]` is what a
/// subscriber receives at spatial `s`, temporal `t` (cumulative over the
/// temporal layers below `t`; for SVC also over the spatial layers below).
/// Empty when nothing was measured yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerRates {
    pub rates: Vec<Vec<u64>>,
}

impl LayerRates {
    /// The bitrate of a layer, if it was measured (a layer that was never
    /// seen does not exist for the allocator).
    pub fn rate(&self, l: Layer) -> Option<u64> {
        let r = *self
            .rates
            .get(usize::from(l.spatial))?
            .get(usize::from(l.temporal))?;
        (r > 0).then_some(r)
    }

    /// The highest spatial layer measured, if any.
    pub fn top_spatial(&self) -> Option<u8> {
        let top = self.rates.len().checked_sub(1)?;
        Some(u8::try_from(top).unwrap_or(u8::MAX))
    }

    /// Whether any layer has been measured.
    pub fn measured(&self) -> bool {
        self.layers().next().is_some()
    }

    /// Layers that exist, lowest first (spatial, then temporal).
    fn layers(&self) -> impl Iterator<Item = (Layer, u64)> + '_ {
        self.rates.iter().enumerate().flat_map(|(s, ts)| {
            ts.iter()
                .enumerate()
                .filter(|(_, r)| **r > 0)
                .map(move |(t, r)| (Layer::new(s as u8, t as u8), *r))
        })
    }
}

/// Limits a subscriber put on one subscription (SDK receiver config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerLimits {
    pub min: Layer,
    pub max: Layer,
}

impl Default for LayerLimits {
    fn default() -> Self {
        Self {
            min: Layer::new(0, 0),
            max: Layer::new(u8::MAX, u8::MAX),
        }
    }
}

impl LayerLimits {
    /// Whether `l` is within the maximum (the minimum is a preference: a
    /// receiver gets less when nothing else arrives).
    pub(crate) fn allows(&self, l: Layer) -> bool {
        l.spatial <= self.max.spatial && l.temporal <= self.max.temporal
    }
}

/// One video subscription as the allocator sees it.
#[derive(Debug, Clone)]
pub struct Subscription<'a> {
    /// Higher is served first.
    pub priority: u32,
    pub limits: LayerLimits,
    pub rates: &'a LayerRates,
}

/// What a subscription gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Send this layer.
    Layer(Layer),
    /// No layer measured yet: the selector keeps its own choice (the best
    /// within the limits) until rates are known.
    Unknown,
}

impl Allocation {
    /// The layer a selector should aim at under this allocation.
    pub fn target(&self, limits: LayerLimits) -> Layer {
        match self {
            Allocation::Layer(l) => *l,
            Allocation::Unknown => limits.max,
        }
    }
}

/// The result of one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One entry per subscription, in input order.
    pub allocations: Vec<Allocation>,
    /// What every subscription at its maximum would cost: the bitrate worth
    /// probing for.
    pub desired: u64,
}

/// The layers a subscription may get: within its limits, and above the
/// lowest spatial layer only at their full temporal rate.
fn candidates(s: &Subscription<'_>) -> Vec<(Layer, u64)> {
    let allowed: Vec<(Layer, u64)> = s
        .rates
        .layers()
        .filter(|(l, _)| s.limits.allows(*l))
        .collect();
    let lowest = allowed.iter().map(|(l, _)| l.spatial).min();
    allowed
        .iter()
        .copied()
        .filter(|(l, _)| {
            Some(l.spatial) == lowest
                || allowed
                    .iter()
                    .filter(|(x, _)| x.spatial == l.spatial)
                    .all(|(x, _)| x.temporal <= l.temporal)
        })
        .collect()
}

/// What a subscription's lowest layer costs at its full frame rate: the
/// lowest spatial layer it may get, at the highest temporal layer its limits
/// allow (0 while nothing is measured).
pub fn base_rate(s: &Subscription<'_>) -> u64 {
    let c = candidates(s);
    let lowest = c
        .iter()
        .find(|(l, _)| l.spatial >= s.limits.min.spatial && l.temporal >= s.limits.min.temporal)
        .or(c.first())
        .map(|(l, _)| l.spatial);
    c.iter()
        .filter(|(l, _)| Some(l.spatial) == lowest)
        .map(|(_, r)| *r)
        .max()
        .unwrap_or(0)
}

/// Splits `estimate` (bit/s) minus `audio` across `subs`.
pub fn allocate(estimate: u64, audio: u64, subs: &[Subscription<'_>]) -> Plan {
    let mut budget = estimate.saturating_sub(audio);
    let mut order: Vec<usize> = (0..subs.len()).collect();
    order.sort_by(|a, b| subs[*b].priority.cmp(&subs[*a].priority).then(a.cmp(b)));
    let mut out = vec![Allocation::Unknown; subs.len()];
    let mut desired = audio;
    let candidates: Vec<Vec<(Layer, u64)>> = subs.iter().map(candidates).collect();
    // The minimum of each, in priority order.
    for &i in &order {
        let s = &subs[i];
        let allowed = &candidates[i];
        let Some(&(_, best)) = allowed.iter().max_by_key(|(_, r)| *r) else {
            continue;
        };
        desired += best;
        // The lowest allowed layer at or above the minimum, else the lowest allowed.
        let floor = allowed
            .iter()
            .find(|(l, _)| l.spatial >= s.limits.min.spatial && l.temporal >= s.limits.min.temporal)
            .or(allowed.first())
            .copied();
        if let Some((l, r)) = floor {
            budget = budget.saturating_sub(r);
            out[i] = Allocation::Layer(l);
        }
    }
    // Upgrades, in priority order.
    for &i in &order {
        let Allocation::Layer(cur) = out[i] else {
            continue;
        };
        let s = &subs[i];
        let cur_rate = s.rates.rate(cur).unwrap_or(0);
        let better = candidates[i]
            .iter()
            .copied()
            .filter(|(_, r)| *r > cur_rate && *r - cur_rate <= budget)
            .max_by_key(|(l, r)| (*r, *l));
        if let Some((l, r)) = better {
            budget -= r - cur_rate;
            out[i] = Allocation::Layer(l);
        }
    }
    Plan {
        allocations: out,
        desired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three simulcast streams with three temporal layers each (kbit/s).
    fn simulcast() -> LayerRates {
        LayerRates {
            rates: vec![
                vec![60_000, 90_000, 120_000],
                vec![250_000, 380_000, 500_000],
                vec![900_000, 1_300_000, 1_700_000],
            ],
        }
    }

    fn sub(priority: u32, rates: &LayerRates) -> Subscription<'_> {
        Subscription {
            priority,
            limits: LayerLimits::default(),
            rates,
        }
    }

    #[test]
    fn the_base_rate_is_the_lowest_layer_at_its_full_frame_rate() {
        let r = simulcast();
        assert_eq!(base_rate(&sub(1, &r)), 120_000);
        // Limits: the lowest spatial layer allowed, the highest temporal one.
        let mut s = sub(1, &r);
        s.limits.min.spatial = 1;
        s.limits.max.temporal = 1;
        assert_eq!(base_rate(&s), 380_000);
        assert_eq!(base_rate(&sub(1, &LayerRates::default())), 0);
    }

    #[test]
    fn one_subscription_gets_the_best_layer_that_fits() {
        let r = simulcast();
        let plan = allocate(600_000, 40_000, &[sub(1, &r)]);
        assert_eq!(plan.allocations, vec![Allocation::Layer(Layer::new(1, 2))]);
        assert_eq!(plan.desired, 40_000 + 1_700_000);
        let plan = allocate(3_000_000, 40_000, &[sub(1, &r)]);
        assert_eq!(plan.allocations, vec![Allocation::Layer(Layer::new(2, 2))]);
        // 260k after audio: the middle stream's base layer (250k) would fit, but
        // at a quarter of the frame rate; the low stream at full rate wins.
        let plan = allocate(300_000, 40_000, &[sub(1, &r)]);
        assert_eq!(plan.allocations, vec![Allocation::Layer(Layer::new(0, 2))]);
    }

    #[test]
    fn too_little_for_the_minimum_still_gets_the_minimum() {
        let r = simulcast();
        let plan = allocate(80_000, 40_000, &[sub(1, &r), sub(2, &r)]);
        assert_eq!(
            plan.allocations,
            vec![Allocation::Layer(Layer::new(0, 0)); 2]
        );
    }

    #[test]
    fn priority_fills_the_first_before_raising_the_second() {
        let screen = simulcast();
        let cam = simulcast();
        // Input order camera, screen; screen has the higher priority.
        let subs = [sub(1, &cam), sub(5, &screen)];
        let plan = allocate(1_100_000, 0, &subs);
        // Both get their minimum (60k each); the screen is raised first, to the
        // most that fits at full frame rate (500k), the camera with what remains
        // (540k -> 500k).
        assert_eq!(
            plan.allocations,
            vec![
                Allocation::Layer(Layer::new(1, 2)),
                Allocation::Layer(Layer::new(1, 2))
            ]
        );
        // With less, the screen keeps its layer and the camera pays.
        let plan = allocate(700_000, 0, &subs);
        assert_eq!(
            plan.allocations,
            vec![
                Allocation::Layer(Layer::new(0, 2)),
                Allocation::Layer(Layer::new(1, 2))
            ]
        );
    }

    #[test]
    fn limits_bound_the_layer_and_the_desired_rate() {
        let r = simulcast();
        let mut s = sub(1, &r);
        s.limits.max = Layer::new(0, 1);
        let plan = allocate(5_000_000, 0, &[s.clone()]);
        assert_eq!(plan.allocations, vec![Allocation::Layer(Layer::new(0, 1))]);
        assert_eq!(plan.desired, 90_000);
        // A minimum above the lowest layer is honoured (at full frame rate),
        // even past the budget.
        s.limits = LayerLimits {
            min: Layer::new(1, 0),
            max: Layer::new(2, 2),
        };
        let plan = allocate(260_000, 0, &[s]);
        assert_eq!(plan.allocations, vec![Allocation::Layer(Layer::new(1, 2))]);
    }

    #[test]
    fn unmeasured_sources_are_left_to_their_selector() {
        let none = LayerRates::default();
        let r = simulcast();
        let plan = allocate(200_000, 0, &[sub(1, &none), sub(1, &r)]);
        assert_eq!(
            plan.allocations,
            vec![Allocation::Unknown, Allocation::Layer(Layer::new(0, 2))]
        );
        assert_eq!(LayerRates::default().rate(Layer::new(0, 0)), None);
    }
}
