//! Where a gateway puts a new session: the client's nearest zone first,
//! the least-loaded node of it that is under its limits, then the other
//! zones nearest first (a zone that is full or down is skipped).
//!
//! Pure: the worker passes the nodes' latest load reports, the client's
//! location and its own sessions placed since those reports.

use std::collections::{BTreeMap, HashMap};

use mediamesh_cluster::{NodeLoad, ReportedLoad};

use crate::geo::distance_km;

/// How full a node is: the largest share of any of its limits (1.0 and
/// more: full). Nodes without limits count sessions against a nominal
/// 1,000 so that they still spread.
pub fn fill(load: &NodeLoad, extra_sessions: u32) -> f64 {
    let sessions = f64::from(load.sessions.saturating_add(extra_sessions));
    let mut f = match load.limits.sessions {
        Some(0) => f64::INFINITY,
        Some(max) => sessions / f64::from(max),
        None => sessions / 1000.0,
    };
    if let Some(max) = load.limits.cpu.filter(|m| *m > 0.0) {
        f = f.max(f64::from(load.cpu) / f64::from(max));
    }
    if let Some(max) = load.limits.bitrate.filter(|m| *m > 0) {
        f = f.max(load.bitrate as f64 / max as f64);
    }
    f
}

/// The nodes to try for a new session, best first. `client`: where the
/// client is, if known; otherwise `home_zone` (the gateway's) comes first.
/// `placed`: sessions this gateway put on a node since its last report.
pub fn rank(
    nodes: &[ReportedLoad],
    client: Option<(f64, f64)>,
    home_zone: &str,
    home_location: Option<(f64, f64)>,
    placed: &HashMap<String, u32>,
) -> Vec<String> {
    // Zones, each with its location (the first node that tells one).
    let mut zones: BTreeMap<&str, Option<(f64, f64)>> = BTreeMap::new();
    for n in nodes {
        let z = zones.entry(n.zone.as_str()).or_default();
        if z.is_none() {
            *z = n.load.location;
        }
    }
    let origin = client.or(home_location);
    let mut order: Vec<(&str, Option<(f64, f64)>)> = zones.into_iter().collect();
    // Nearest first; without a client location the home zone leads; zones
    // of unknown location after the located ones, by name (stable).
    order.sort_by(|a, b| {
        let key = |z: &(&str, Option<(f64, f64)>)| {
            let home = client.is_none() && z.0 == home_zone;
            let d = match (origin, z.1) {
                (Some(o), Some(l)) => distance_km(o, l),
                _ => f64::INFINITY,
            };
            (!home, d)
        };
        let (ha, da) = key(a);
        let (hb, db) = key(b);
        ha.cmp(&hb).then(da.total_cmp(&db)).then(a.0.cmp(b.0))
    });
    let mut out = Vec::new();
    for (zone, _) in order {
        let mut members: Vec<(f64, &str)> = nodes
            .iter()
            .filter(|n| n.zone == zone && !n.load.draining)
            .map(|n| {
                let extra = placed.get(&n.node).copied().unwrap_or(0);
                (fill(&n.load, extra), n.node.as_str())
            })
            .filter(|(f, _)| *f < 1.0)
            .collect();
        members.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
        out.extend(members.into_iter().map(|(_, n)| n.to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediamesh_cluster::LoadLimits;

    const FRANKFURT: (f64, f64) = (50.11, 8.68);
    const SINGAPORE: (f64, f64) = (1.35, 103.82);
    const PARIS: (f64, f64) = (48.86, 2.35);

    fn node(name: &str, zone: &str, sessions: u32, max: Option<u32>) -> ReportedLoad {
        ReportedLoad {
            node: name.into(),
            zone: zone.into(),
            load: NodeLoad {
                sessions,
                cpu: 0.0,
                bitrate: 0,
                limits: LoadLimits {
                    sessions: max,
                    ..Default::default()
                },
                location: Some(if zone == "eu" { FRANKFURT } else { SINGAPORE }),
                draining: false,
            },
        }
    }

    #[test]
    fn nearest_zone_first_then_least_loaded() {
        let nodes = [
            node("eu1", "eu", 5, Some(10)),
            node("eu2", "eu", 2, Some(10)),
            node("ap1", "ap", 0, Some(10)),
        ];
        let none = HashMap::new();
        assert_eq!(
            rank(&nodes, Some(PARIS), "ap", Some(SINGAPORE), &none),
            ["eu2", "eu1", "ap1"]
        );
        assert_eq!(
            rank(&nodes, Some(SINGAPORE), "eu", Some(FRANKFURT), &none),
            ["ap1", "eu2", "eu1"]
        );
        // No client location: the gateway's own zone first.
        assert_eq!(
            rank(&nodes, None, "ap", Some(SINGAPORE), &none),
            ["ap1", "eu2", "eu1"]
        );
        assert_eq!(rank(&nodes, None, "eu", None, &none), ["eu2", "eu1", "ap1"]);
    }

    #[test]
    fn full_draining_and_just_placed_count() {
        let mut nodes = vec![
            node("eu1", "eu", 10, Some(10)),
            node("eu2", "eu", 3, Some(10)),
            node("ap1", "ap", 0, Some(10)),
        ];
        let none = HashMap::new();
        // eu1 is at its limit: never offered.
        assert_eq!(rank(&nodes, Some(PARIS), "eu", None, &none), ["eu2", "ap1"]);
        // Sessions placed since the last report fill eu2 up too: the zone
        // is full, the next zone takes them.
        let placed = HashMap::from([("eu2".to_owned(), 7)]);
        assert_eq!(rank(&nodes, Some(PARIS), "eu", None, &placed), ["ap1"]);
        nodes[2].load.draining = true;
        assert!(rank(&nodes, Some(PARIS), "eu", None, &placed).is_empty());
    }

    #[test]
    fn cpu_and_bitrate_limits_fill_a_node() {
        let mut n = node("a", "eu", 1, Some(100)).load;
        assert!(fill(&n, 0) < 0.05);
        n.cpu = 0.5;
        n.limits.cpu = Some(0.6);
        assert!((fill(&n, 0) - 0.5 / 0.6).abs() < 1e-6);
        n.bitrate = 90_000_000;
        n.limits.bitrate = Some(80_000_000);
        assert!(fill(&n, 0) >= 1.0);
        n.limits = LoadLimits::default();
        n.sessions = 500;
        assert!((fill(&n, 0) - 0.5).abs() < 1e-9);
        n.limits.sessions = Some(0);
        assert!(fill(&n, 0) >= 1.0);
    }
}
