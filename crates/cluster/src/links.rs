//! Link weights from measured round-trip times, as a pure state machine.
//!
//! zenoh routers pick the path with the least total link weight; weights
//! are configuration, read when a session opens (zenoh 1.10 has no way to
//! change them on a live session). So a router node measures the RTT of
//! each link it dials (a UDP echo to the endpoint's address and port, which
//! every node answers with its node id and zenoh id: see `probe.rs`; a few
//! samples per round, smoothed), turns it into a weight (0.1 ms units), and
//! when the weights it runs with are off by more than [`SIGNIFICANT`], or
//! a far node answers with a new zenoh id, it reopens its session with the
//! new ones (at most once per [`MIN_REOPEN_GAP`]; the node keeps its
//! incarnation, so the others see a flap shorter than their debounce, not a
//! departure).
//!
//! Only the dialing side of a link sets its weight (zenoh takes the larger
//! of the two ends' weights, or the one set).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How often the links are measured.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Samples per link per round (the median is taken).
pub const PROBE_SAMPLES: usize = 3;
/// A new weight set is applied only this long after the last.
pub const MIN_REOPEN_GAP: Duration = Duration::from_secs(5);
/// A weight change smaller than a quarter (or 0.5 ms) is noise.
pub const SIGNIFICANT: (u32, u32) = (1, 4);
const MIN_DELTA: u32 = 5;

/// The weight of a link of this RTT: 0.1 ms units, at least 1.
pub fn weight_of(rtt: Duration) -> u16 {
    let w = rtt.as_micros() / 100;
    w.clamp(1, u128::from(u16::MAX)) as u16
}

/// Who answered at the far end of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Far {
    pub node: String,
    /// Its current zenoh id (what a link weight names).
    pub zid: String,
}

#[derive(Debug, Default)]
pub struct Links {
    /// Endpoints this node dials.
    connect: Vec<String>,
    /// Smoothed RTT per endpoint, and who answered there (node, zenoh id).
    rtt: HashMap<String, (Duration, Far)>,
    /// The weights the session runs with (node -> weight), and the far
    /// nodes' zenoh ids they were given for.
    applied: BTreeMap<String, u16>,
    applied_zids: BTreeMap<String, String>,
    next_probe: Option<Instant>,
    last_reopen: Option<Instant>,
}

impl Links {
    /// Links of a router that dials `connect` (empty: nothing to weigh).
    pub fn new(connect: Vec<String>, now: Instant) -> Self {
        let next_probe = (!connect.is_empty()).then_some(now);
        Self {
            connect,
            next_probe,
            ..Self::default()
        }
    }

    /// A node is gone: its links are forgotten until measured again.
    pub fn node_gone(&mut self, node: &str) {
        self.rtt.retain(|_, (_, far)| far.node != node);
    }

    fn zid_of(&self, node: &str) -> Option<&str> {
        self.rtt
            .values()
            .find(|(_, far)| far.node == node)
            .map(|(_, far)| far.zid.as_str())
    }

    /// Endpoints to measure now, if a round is due (the caller measures and
    /// reports with [`Links::on_rtt`]).
    pub fn probe_due(&mut self, now: Instant) -> Option<Vec<String>> {
        let t = self.next_probe?;
        if now < t {
            return None;
        }
        self.next_probe = Some(now + PROBE_INTERVAL);
        Some(self.connect.clone())
    }

    /// A round's median RTT of an endpoint and who answered there
    /// (`None`: unreachable, forgotten).
    pub fn on_rtt(&mut self, endpoint: &str, rtt: Option<(Duration, Far)>) {
        match rtt {
            None => {
                self.rtt.remove(endpoint);
            }
            Some((r, far)) => {
                // Half old, half new: one outlier round moves it halfway
                // (a new node there starts afresh).
                let v = match self.rtt.get(endpoint) {
                    Some((old, f)) if *f == far => (*old + r) / 2,
                    _ => r,
                };
                self.rtt.insert(endpoint.to_owned(), (v, far));
            }
        }
    }

    /// The weights the measurements ask for (node -> weight), for the links
    /// whose far node is known.
    pub fn desired(&self) -> BTreeMap<String, u16> {
        let mut out = BTreeMap::new();
        for (rtt, far) in self.rtt.values() {
            let w = weight_of(*rtt);
            out.entry(far.node.clone())
                .and_modify(|x: &mut u16| *x = (*x).min(w))
                .or_insert(w);
        }
        out
    }

    /// The weights to reopen the session with, when they differ enough from
    /// the applied ones and the last reopen is long enough ago. The caller
    /// reopens and then calls [`Links::applied`].
    pub fn reopen_due(&self, now: Instant) -> Option<BTreeMap<String, u16>> {
        if self.last_reopen.is_some_and(|t| now < t + MIN_REOPEN_GAP) {
            return None;
        }
        let want = self.desired();
        // A far node restarted (new zenoh id): its weight must be given again.
        let moved = want
            .keys()
            .any(|node| self.applied_zids.get(node).map(String::as_str) != self.zid_of(node));
        let differs = moved
            || want.iter().any(|(node, w)| match self.applied.get(node) {
                None => true,
                Some(old) => {
                    let (a, b) = (u32::from(*old), u32::from(*w));
                    a.abs_diff(b) > (a * SIGNIFICANT.0 / SIGNIFICANT.1).max(MIN_DELTA)
                }
            });
        differs.then_some(want)
    }

    /// The session now runs with `weights`.
    pub fn applied(&mut self, weights: BTreeMap<String, u16>, now: Instant) {
        self.applied_zids = weights
            .keys()
            .filter_map(|n| Some((n.clone(), self.zid_of(n)?.to_owned())))
            .collect();
        self.applied = weights;
        self.last_reopen = Some(now);
    }

    /// Weights keyed by the far nodes' zenoh ids, for the configuration.
    pub fn by_zid(&self, weights: &BTreeMap<String, u16>) -> BTreeMap<String, u16> {
        weights
            .iter()
            .filter_map(|(n, w)| Some((self.zid_of(n)?.to_owned(), *w)))
            .collect()
    }

    /// The weights in force.
    pub fn weights(&self) -> &BTreeMap<String, u16> {
        &self.applied
    }

    pub fn next_probe(&self) -> Option<Instant> {
        self.next_probe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AB: &str = "tcp/10.0.1.1:7447";
    const AC: &str = "tcp/10.0.3.1:7447";

    fn far(node: &str, zid: &str) -> Far {
        Far {
            node: node.into(),
            zid: zid.into(),
        }
    }

    #[test]
    fn weights_follow_rtt_with_hysteresis_and_a_minimum_gap() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(weight_of(ms(0)), 1);
        assert_eq!(weight_of(ms(5)), 50);
        assert_eq!(weight_of(Duration::from_secs(100)), u16::MAX);

        let mut l = Links::new(vec![AB.into(), AC.into()], t0);
        assert_eq!(l.probe_due(t0), Some(vec![AB.into(), AC.into()]));
        assert_eq!(l.probe_due(t0 + ms(1)), None);
        assert_eq!(l.next_probe(), Some(t0 + PROBE_INTERVAL));
        l.on_rtt(AB, Some((ms(10), far("b", "b1"))));
        l.on_rtt(AC, Some((ms(120), far("a", "a1"))));
        let want = l.reopen_due(t0).unwrap();
        assert_eq!(want.get("b"), Some(&100));
        assert_eq!(want.get("a"), Some(&1200));
        l.applied(want.clone(), t0);
        assert_eq!(l.weights().get("a"), Some(&1200));
        assert_eq!(l.by_zid(&want).get("a1"), Some(&1200));

        // Noise does not reopen; a real change does, after the gap.
        l.on_rtt(AC, Some((ms(130), far("a", "a1"))));
        assert_eq!(l.reopen_due(t0 + ms(6000)), None);
        l.on_rtt(AC, Some((ms(10), far("a", "a1"))));
        l.on_rtt(AC, Some((ms(10), far("a", "a1"))));
        assert_eq!(l.reopen_due(t0 + ms(1000)), None, "within the gap");
        let want = l.reopen_due(t0 + ms(6000)).unwrap();
        assert!(want["a"] < 400, "{want:?}");
        l.applied(want, t0 + ms(6000));
        assert_eq!(l.reopen_due(t0 + ms(20000)), None);
        // The far node restarted: a new id answers, its weight is given again.
        l.on_rtt(AC, Some((ms(10), far("a", "a2"))));
        let want = l.reopen_due(t0 + ms(20000)).unwrap();
        assert_eq!(l.by_zid(&want).get("a2"), Some(&100));

        // An unreachable endpoint is forgotten, and so is its weight.
        l.on_rtt(AB, None);
        assert!(!l.desired().contains_key("b"));
        l.node_gone("a");
        assert!(l.desired().is_empty());
    }

    #[test]
    fn a_node_that_dials_nothing_never_probes() {
        let t0 = Instant::now();
        let mut l = Links::new(vec![], t0);
        assert_eq!(l.probe_due(t0), None);
        assert_eq!(l.next_probe(), None);
        assert_eq!(l.reopen_due(t0), None);
    }
}
