//! Step reports: a human table and JSON.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::metrics::{Metrics, ProcSample, Snapshot};

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub count: u64,
}

impl Percentiles {
    /// From a histogram of microseconds, in milliseconds.
    fn from_us(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Self {
            p50: ms(0.5),
            p99: ms(0.99),
            p999: ms(0.999),
            count: h.len(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub scenario: String,
    pub step: String,
    pub seconds: f64,
    pub sessions_up: u64,
    pub sessions_failed: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub loss_pct: f64,
    pub latency_ms: Percentiles,
    pub first_packet_ms: Percentiles,
    pub egress_mbps: f64,
    pub server_cpu_pct: Option<f64>,
    pub server_cpu_us_per_packet: Option<f64>,
    pub server_rss_mib: Option<f64>,
    pub server_rss_start_mib: Option<f64>,
    pub bench_cpu_pct: Option<f64>,
    pub bench_cpu_us_per_packet: Option<f64>,
    pub joins_without_media: Option<u64>,
    pub errors: Vec<String>,
}

impl StepReport {
    pub fn new(
        scenario: &str,
        step: String,
        m: &Metrics,
        (s0, s1): (Snapshot, Snapshot),
        (p0, p1): (Option<ProcSample>, Option<ProcSample>),
        (b0, b1): (Option<ProcSample>, Option<ProcSample>),
    ) -> Self {
        let seconds = match (s0.at, s1.at) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64().max(1e-6),
            _ => 1e-6,
        };
        let received = s1.recv_packets.saturating_sub(s0.recv_packets);
        let expected = s1.expected.saturating_sub(s0.expected);
        let unique = s1.unique.saturating_sub(s0.unique);
        let loss_pct = if expected > 0 {
            100.0 * expected.saturating_sub(unique) as f64 / expected as f64
        } else {
            0.0
        };
        let cpu = |a: Option<ProcSample>, b: Option<ProcSample>| match (a, b) {
            (Some(a), Some(b)) => Some((b.cpu_secs - a.cpu_secs).max(0.0)),
            _ => None,
        };
        let per_packet = |c: Option<f64>| {
            c.filter(|_| received > 0)
                .map(|c| c * 1e6 / received as f64)
        };
        let server_cpu = cpu(p0, p1);
        let bench_cpu = cpu(b0, b1);
        Self {
            scenario: scenario.to_owned(),
            step,
            seconds,
            sessions_up: m.sessions_connected.saturating_sub(m.sessions_closed),
            sessions_failed: m.sessions_failed,
            packets_sent: s1.sent_packets.saturating_sub(s0.sent_packets),
            packets_received: received,
            loss_pct,
            latency_ms: Percentiles::from_us(&m.latency_us),
            first_packet_ms: Percentiles::from_us(&m.first_packet_us),
            egress_mbps: s1.recv_bytes.saturating_sub(s0.recv_bytes) as f64 * 8.0 / seconds / 1e6,
            server_cpu_pct: server_cpu.map(|c| 100.0 * c / seconds),
            server_cpu_us_per_packet: per_packet(server_cpu),
            server_rss_mib: p1.map(|p| p.rss_mib),
            server_rss_start_mib: None,
            bench_cpu_pct: bench_cpu.map(|c| 100.0 * c / seconds),
            bench_cpu_us_per_packet: per_packet(bench_cpu),
            joins_without_media: None,
            errors: m.errors.clone(),
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

/// The human table.
pub fn table(reports: &[StepReport]) -> String {
    let mut s = format!(
        "{:<16} {:>5} {:>4} {:>9} {:>9} {:>6} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>7} {:>7} {:>6} {:>7}\n",
        "step", "up", "fail", "sent", "recv", "loss%", "lat p50", "p99", "p99.9", "1st pkt", "Mbps", "srv%", "srv µs", "srv MiB", "gen%", "gen µs"
    );
    for r in reports {
        s.push_str(&format!(
            "{:<16} {:>5} {:>4} {:>9} {:>9} {:>6.2} {:>8.2} {:>8.2} {:>8.2} {:>8} {:>7.1} {:>6} {:>7} {:>7} {:>6} {:>7}\n",
            r.step,
            r.sessions_up,
            r.sessions_failed,
            r.packets_sent,
            r.packets_received,
            r.loss_pct,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.p999,
            if r.first_packet_ms.count > 0 { format!("{:.1}", r.first_packet_ms.p50) } else { "-".into() },
            r.egress_mbps,
            opt(r.server_cpu_pct, 1),
            opt(r.server_cpu_us_per_packet, 1),
            opt(r.server_rss_mib, 1),
            opt(r.bench_cpu_pct, 1),
            opt(r.bench_cpu_us_per_packet, 1),
        ));
        if let Some(n) = r.joins_without_media {
            s.push_str(&format!(
                "  joins: first packet p50 {:.1} ms, p99 {:.1} ms over {} joins, {n} without media; server RSS {} -> {} MiB\n",
                r.first_packet_ms.p50,
                r.first_packet_ms.p99,
                r.first_packet_ms.count,
                opt(r.server_rss_start_mib, 1),
                opt(r.server_rss_mib, 1)
            ));
        }
    }
    s
}
