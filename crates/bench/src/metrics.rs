//! What the clients measure, shared by all of them on the benchmark thread,
//! and what `/proc` says about a process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::media::Tag;

/// Duplicate detection window per received stream.
const WINDOW: usize = 1024;

#[derive(Debug)]
struct StreamRx {
    first: u32,
    highest: u32,
    unique: u64,
    seen: Box<[u32; WINDOW]>,
}

impl StreamRx {
    fn new(counter: u32) -> Self {
        Self {
            first: counter,
            highest: counter,
            unique: 0,
            seen: Box::new([u32::MAX; WINDOW]),
        }
    }

    /// Returns false for a duplicate (e.g. a retransmission that was not needed).
    fn record(&mut self, counter: u32) -> bool {
        let slot = &mut self.seen[counter as usize % WINDOW];
        if *slot == counter {
            return false;
        }
        *slot = counter;
        self.unique += 1;
        if counter.wrapping_sub(self.highest) < u32::MAX / 2 {
            self.highest = counter;
        }
        true
    }

    fn expected(&self) -> u64 {
        u64::from(self.highest.wrapping_sub(self.first)) + 1
    }
}

/// Counters and histograms of every client. Cumulative; a scenario step
/// takes a [`Snapshot`] at its start and end and reports the difference.
#[derive(Debug)]
pub struct Metrics {
    epoch: Instant,
    pub sessions_started: u64,
    pub sessions_connected: u64,
    pub sessions_failed: u64,
    pub sessions_closed: u64,
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub recv_packets: u64,
    pub recv_bytes: u64,
    pub dup_packets: u64,
    pub keyframe_requests: u64,
    streams: HashMap<(u64, u32), StreamRx>,
    /// Expected and unique packets of streams whose subscriber left.
    retired: (u64, u64),
    /// One-way latency, microseconds (reset per step).
    pub latency_us: Histogram<u64>,
    /// WHEP POST to first media packet, microseconds (reset per step).
    pub first_packet_us: Histogram<u64>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub at: Option<Instant>,
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub recv_packets: u64,
    pub recv_bytes: u64,
    pub expected: u64,
    pub unique: u64,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s at 3 significant digits; these bounds are valid.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

impl Metrics {
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            sessions_started: 0,
            sessions_connected: 0,
            sessions_failed: 0,
            sessions_closed: 0,
            sent_packets: 0,
            sent_bytes: 0,
            recv_packets: 0,
            recv_bytes: 0,
            dup_packets: 0,
            keyframe_requests: 0,
            streams: HashMap::new(),
            retired: (0, 0),
            latency_us: histogram(),
            first_packet_us: histogram(),
            errors: Vec::new(),
        }
    }

    /// A subscriber (`client`) received a payload at `at`.
    pub fn on_received(&mut self, client: u64, payload: &[u8], at: Instant) {
        let Some(tag) = Tag::read(payload) else {
            return;
        };
        let s = self
            .streams
            .entry((client, tag.stream))
            .or_insert_with(|| StreamRx::new(tag.counter));
        if !s.record(tag.counter) {
            self.dup_packets += 1;
            return;
        }
        self.recv_packets += 1;
        self.recv_bytes += payload.len() as u64;
        let now_ns = at.saturating_duration_since(self.epoch).as_nanos() as u64;
        let us = now_ns.saturating_sub(tag.sent_ns) / 1000;
        let _ = self.latency_us.record(us.max(1));
    }

    pub fn on_first_packet(&mut self, after: Duration) {
        let _ = self
            .first_packet_us
            .record((after.as_micros() as u64).max(1));
    }

    /// Forget a subscriber's streams (it left).
    pub fn forget(&mut self, client: u64) {
        let retired = &mut self.retired;
        self.streams.retain(|(c, _), s| {
            if *c == client {
                retired.0 += s.expected();
                retired.1 += s.unique;
            }
            *c != client
        });
    }

    pub fn snapshot(&self, at: Instant) -> Snapshot {
        let (expected, unique) = self
            .streams
            .values()
            .fold(self.retired, |(e, u), s| (e + s.expected(), u + s.unique));
        Snapshot {
            at: Some(at),
            sent_packets: self.sent_packets,
            sent_bytes: self.sent_bytes,
            recv_packets: self.recv_packets,
            recv_bytes: self.recv_bytes,
            expected,
            unique,
        }
    }

    pub fn reset_histograms(&mut self) {
        self.latency_us.reset();
        self.first_packet_us.reset();
    }
}

/// CPU time and memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub cpu_secs: f64,
    pub rss_mib: f64,
}

/// `pid` of `None` means this process.
pub fn proc_sample(pid: Option<u32>) -> Option<ProcSample> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_owned(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // Fields after the command name, which may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(ProcSample {
        // USER_HZ is 100 on Linux.
        cpu_secs: (utime + stime) / 100.0,
        rss_mib: rss_kb / 1024.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(stream: u32, counter: u32, sent_ns: u64) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[20..24].copy_from_slice(b"MMB1");
        p[24..28].copy_from_slice(&stream.to_be_bytes());
        p[28..32].copy_from_slice(&counter.to_be_bytes());
        p[32..40].copy_from_slice(&sent_ns.to_be_bytes());
        p
    }

    #[test]
    fn loss_duplicates_and_latency() {
        let epoch = Instant::now();
        let mut m = Metrics::new(epoch);
        let at = epoch + Duration::from_millis(10);
        for c in [5u32, 6, 8, 9, 9, 7] {
            m.on_received(1, &payload(3, c, 9_000_000), at);
        }
        let s = m.snapshot(at);
        assert_eq!(s.unique, 5);
        assert_eq!(s.expected, 5);
        assert_eq!(m.dup_packets, 1);
        // 10 ms - 9 ms = 1 ms.
        assert_eq!(m.latency_us.value_at_quantile(0.5) / 10, 100);
        // A gap counts as loss.
        m.on_received(1, &payload(3, 20, 9_000_000), at);
        let s = m.snapshot(at);
        assert_eq!((s.unique, s.expected), (6, 16));
        // Another subscriber of the same stream is counted apart.
        m.on_received(2, &payload(3, 20, 9_000_000), at);
        assert_eq!(m.snapshot(at).expected, 17);
        m.forget(1);
        let s = m.snapshot(at);
        assert_eq!(
            (s.unique, s.expected),
            (7, 17),
            "a leaving subscriber's counts stay"
        );
        // Untagged payloads are ignored.
        m.on_received(1, &[0u8; 30], at);
        assert_eq!(m.recv_packets, 7);
    }

    #[test]
    fn reads_own_process() {
        let s = proc_sample(None).unwrap();
        assert!(s.cpu_secs >= 0.0 && s.rss_mib > 0.0);
        assert!(proc_sample(Some(u32::MAX)).is_none());
    }
}
