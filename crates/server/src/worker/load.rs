//! This node's load, as media nodes report it every second for gateways
//! to place sessions (CPU of the process, sessions, media bitrate), and the
//! sessions a gateway placed that the reports do not show yet.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mediamesh_cluster::{LoadLimits, NodeLoad};

use super::Worker;

/// A session placed this recently may be missing from its node's last
/// report (reports come every second).
const PLACED_MEMORY: Duration = Duration::from_secs(2);

/// Linux reports process CPU time in these ticks per second (USER_HZ).
const TICKS_PER_SEC: f64 = 100.0;

/// Who the node is in placement, from its configuration.
#[derive(Debug, Clone, Default)]
pub struct LoadConfig {
    /// Places sessions on media nodes, takes none itself.
    pub gateway: bool,
    pub limits: LoadLimits,
    /// Where this node's zone is (latitude, longitude).
    pub location: Option<(f64, f64)>,
}

#[derive(Debug, Default)]
pub(super) struct LoadState {
    config: LoadConfig,
    /// The previous sample: when, process CPU ticks, media bytes.
    last: Option<(Instant, u64, u64)>,
    cpu: f32,
    bitrate: u64,
    placed: HashMap<String, Vec<Instant>>,
}

impl LoadState {
    pub(super) fn new(config: LoadConfig) -> Self {
        Self {
            config,
            ..Default::default()
        }
    }

    pub(super) fn config(&self) -> &LoadConfig {
        &self.config
    }

    pub(super) fn location(&self) -> Option<(f64, f64)> {
        self.config.location
    }

    /// Takes a sample: the CPU share and bitrate since the last one.
    fn sample(&mut self, now: Instant, bytes: u64) {
        let ticks = process_cpu_ticks().unwrap_or(0);
        if let Some((at, t0, b0)) = self.last {
            let secs = now.saturating_duration_since(at).as_secs_f64();
            if secs > 0.0 {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
                let used = ticks.saturating_sub(t0) as f64 / TICKS_PER_SEC;
                self.cpu = (used / secs / cores).clamp(0.0, 1.0) as f32;
                self.bitrate = (bytes.saturating_sub(b0) as f64 * 8.0 / secs) as u64;
            }
        }
        self.last = Some((now, ticks, bytes));
    }

    pub(super) fn placed(&mut self, node: &str, now: Instant) {
        self.placed.entry(node.to_owned()).or_default().push(now);
    }

    /// Sessions placed on each node within [`PLACED_MEMORY`].
    pub(super) fn recently_placed(&mut self, now: Instant) -> HashMap<String, u32> {
        self.placed.retain(|_, v| {
            v.retain(|t| now.saturating_duration_since(*t) < PLACED_MEMORY);
            !v.is_empty()
        });
        self.placed
            .iter()
            .map(|(n, v)| (n.clone(), v.len() as u32))
            .collect()
    }
}

/// utime + stime of this process from /proc/self/stat.
fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count from its ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the file are the 12th and 13th after the name.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

impl Worker {
    /// Every second: media nodes measure and report their load.
    pub(super) fn report_load(&mut self, now: Instant) {
        if self.load.config.gateway {
            return;
        }
        self.load
            .sample(now, self.stats.bytes_in + self.stats.bytes_out);
        let report = NodeLoad {
            sessions: (self.conns.len() + self.ingests.len()) as u32,
            cpu: self.load.cpu,
            bitrate: self.load.bitrate,
            limits: self.load.config.limits,
            location: self.load.config.location,
            draining: self.draining,
        };
        self.cluster.report_load(&report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_ticks() {
        // Burn a little CPU so the count is not zero on a fast machine.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_cpu_ticks().is_some());
    }

    #[test]
    fn placements_are_remembered_briefly() {
        let mut s = LoadState::default();
        let t0 = Instant::now();
        s.placed("a", t0);
        s.placed("a", t0 + Duration::from_millis(500));
        s.placed("b", t0);
        assert_eq!(s.recently_placed(t0 + Duration::from_secs(1))["a"], 2);
        let later = s.recently_placed(t0 + Duration::from_millis(2100));
        assert_eq!(later.get("a"), Some(&1));
        assert_eq!(later.get("b"), None);
    }
}
