//! `GET /metrics`: this node's numbers in the Prometheus text format
//! (aggregates only: no room, peer or track names).

use std::fmt::Write;

use super::Worker;

/// Buckets of the per-peer send-side estimate, in bit/s.
const ESTIMATE_BUCKETS: [u64; 7] = [
    150_000, 300_000, 600_000, 1_200_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Writes one metric: its help and type lines, then each sample as the
/// metric's name followed by `suffix` (`{label="…"}`, `_bucket{…}`, `_sum`…).
fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (suffix, v) in samples {
        let _ = writeln!(out, "{name}{suffix} {v}");
    }
}

/// The one sample of an unlabelled metric.
fn one(v: u64) -> [(String, u64); 1] {
    [(String::new(), v)]
}

impl Worker {
    pub(super) fn metrics_text(&self) -> String {
        let mut out = String::new();
        let o = &mut out;
        metric(
            o,
            "mediamesh_sessions",
            "gauge",
            "WebRTC sessions on this node.",
            &one(self.conns.len() as u64),
        );
        metric(
            o,
            "mediamesh_rooms",
            "gauge",
            "Rooms with a peer on this node.",
            &one(self.sfu.room_count() as u64),
        );
        let q = self.sfu.quality_summary();
        let layers: Vec<(String, u64)> = q
            .by_spatial
            .iter()
            .enumerate()
            .map(|(s, n)| (format!("{{spatial=\"{s}\"}}"), u64::from(*n)))
            .collect();
        metric(
            o,
            "mediamesh_video_receivers",
            "gauge",
            "Playing video receivers by the spatial layer forwarded now (3: 3 and up).",
            &layers,
        );
        metric(
            o,
            "mediamesh_video_receivers_below_target",
            "gauge",
            "Video receivers waiting for a decodable point to move up to their target layer.",
            &one(u64::from(q.below_target)),
        );
        metric(
            o,
            "mediamesh_video_receivers_bandwidth_limited",
            "gauge",
            "Video receivers aimed below the best layer their limits and source allow, for want of bandwidth.",
            &one(u64::from(q.bandwidth_limited)),
        );
        // The current peers' estimates as a histogram (cumulative buckets,
        // as Prometheus histograms are).
        let count = q.estimates.len() as u64;
        let mut samples: Vec<(String, u64)> = ESTIMATE_BUCKETS
            .iter()
            .map(|le| {
                let n = q.estimates.iter().filter(|e| **e <= *le).count() as u64;
                (format!("_bucket{{le=\"{le}\"}}"), n)
            })
            .collect();
        samples.push(("_bucket{le=\"+Inf\"}".into(), count));
        samples.push(("_sum".into(), q.estimates.iter().sum()));
        samples.push(("_count".into(), count));
        metric(
            o,
            "mediamesh_peer_egress_estimate_bps",
            "histogram",
            "The send-side bandwidth estimate towards each peer, now.",
            &samples,
        );
        let c = self.cluster.counters();
        for (name, help, v) in [
            (
                "mediamesh_cluster_packets_out_total",
                "Media packets this node published to the cluster.",
                c.packets_out,
            ),
            (
                "mediamesh_cluster_packets_in_total",
                "Media packets this node received from the cluster.",
                c.packets_in,
            ),
            (
                "mediamesh_cluster_bytes_out_total",
                "Media bytes this node published to the cluster.",
                c.bytes_out,
            ),
            (
                "mediamesh_cluster_bytes_in_total",
                "Media bytes this node received from the cluster.",
                c.bytes_in,
            ),
        ] {
            metric(o, name, "counter", help, &one(v));
        }
        out
    }
}
