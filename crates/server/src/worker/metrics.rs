//! `GET /metrics`: this node's numbers in the Prometheus text format
//! (aggregates only: no room, peer or track names).

use std::fmt::Write;

use super::Worker;

/// Buckets of the per-peer send-side estimate, in bit/s.
const ESTIMATE_BUCKETS: [u64; 7] = [
    150_000, 300_000, 600_000, 1_200_000, 2_500_000, 5_000_000, 10_000_000,
];

impl Worker {
    pub(super) fn metrics_text(&self) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        gauge(
            "mediamesh_sessions",
            "WebRTC sessions on this node.",
            &[("", self.conns.len() as u64)],
        );
        gauge(
            "mediamesh_rooms",
            "Rooms with a peer on this node.",
            &[("", self.sfu.room_count() as u64)],
        );
        let q = self.sfu.quality_summary();
        let layers: Vec<(String, u64)> = q
            .by_spatial
            .iter()
            .enumerate()
            .map(|(s, n)| (format!("{{spatial=\"{s}\"}}"), u64::from(*n)))
            .collect();
        let layers: Vec<(&str, u64)> = layers.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        gauge(
            "mediamesh_video_receivers",
            "Playing video receivers by the spatial layer forwarded now (3: 3 and up).",
            &layers,
        );
        gauge(
            "mediamesh_video_receivers_below_target",
            "Video receivers waiting for a decodable point to move up to their target layer.",
            &[("", u64::from(q.below_target))],
        );
        gauge(
            "mediamesh_video_receivers_bandwidth_limited",
            "Video receivers aimed below the best layer their limits and source allow, for want of bandwidth.",
            &[("", u64::from(q.bandwidth_limited))],
        );
        // The estimates as a histogram of the current peers (cumulative
        // buckets, as Prometheus histograms are).
        let mut buckets: Vec<(String, u64)> = ESTIMATE_BUCKETS
            .iter()
            .map(|le| {
                let n = q.estimates.iter().filter(|e| **e <= *le).count() as u64;
                (format!("_bucket{{le=\"{le}\"}}"), n)
            })
            .collect();
        buckets.push(("_bucket{le=\"+Inf\"}".into(), q.estimates.len() as u64));
        buckets.push(("_sum".into(), q.estimates.iter().sum()));
        buckets.push(("_count".into(), q.estimates.len() as u64));
        let name = "mediamesh_peer_egress_estimate_bps";
        let _ = writeln!(
            out,
            "# HELP {name} The send-side bandwidth estimate towards each peer, now.\n# TYPE {name} histogram"
        );
        for (suffix, v) in buckets {
            let _ = writeln!(out, "{name}{suffix} {v}");
        }
        let c = self.cluster.counters();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "mediamesh_cluster_packets_out_total",
            "Media packets this node published to the cluster.",
            c.packets_out,
        );
        counter(
            "mediamesh_cluster_packets_in_total",
            "Media packets this node received from the cluster.",
            c.packets_in,
        );
        counter(
            "mediamesh_cluster_bytes_out_total",
            "Media bytes this node published to the cluster.",
            c.bytes_out,
        );
        counter(
            "mediamesh_cluster_bytes_in_total",
            "Media bytes this node received from the cluster.",
            c.bytes_in,
        );
        out
    }
}
