//! The scenarios: `fanout`, `rooms`, `join`. Each spawns clients on the
//! benchmark thread, measures steps, and returns their reports.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::{self, ClientSpec, Role};
use crate::http::Url;
use crate::media::MediaConfig;
use crate::metrics::{proc_sample, Metrics, ProcSample, Snapshot};
use crate::report::StepReport;
use crate::tokens::TokenSource;
use crate::BenchError;

/// What every scenario needs.
pub struct Env {
    pub whip: Url,
    pub whep: Url,
    pub tokens: TokenSource,
    pub media: MediaConfig,
    pub server_pid: Option<u32>,
    pub progress: bool,
}

struct Client {
    handle: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

/// Spawns clients and measures them.
pub struct Runner {
    env: Env,
    epoch: Instant,
    metrics: Rc<RefCell<Metrics>>,
    clients: Vec<Client>,
    next_id: u64,
    bar: ProgressBar,
}

impl Runner {
    pub fn new(env: Env) -> Self {
        let epoch = Instant::now();
        let bar = if env.progress {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        } else {
            ProgressBar::hidden()
        };
        Self {
            env,
            epoch,
            metrics: Rc::new(RefCell::new(Metrics::new(epoch))),
            clients: Vec::new(),
            next_id: 1,
            bar,
        }
    }

    pub fn metrics(&self) -> std::cell::Ref<'_, Metrics> {
        self.metrics.borrow()
    }

    async fn spawn(&mut self, role: Role, room: &str) -> Result<usize, BenchError> {
        let id = self.next_id;
        self.next_id += 1;
        let (kind, endpoint) = match role {
            Role::Publish => ("whip", self.env.whip.clone()),
            Role::Subscribe => ("whep", self.env.whep.clone()),
        };
        let peer = format!("bench-{kind}-{id}");
        let token = self.env.tokens.token(kind, room, &peer).await?;
        let spec = ClientSpec {
            id,
            role,
            endpoint,
            token,
            media: self.env.media,
            epoch: self.epoch,
        };
        let (stop, stop_rx) = watch::channel(false);
        let handle = tokio::task::spawn_local(client::run(spec, self.metrics.clone(), stop_rx));
        self.clients.push(Client { handle, stop });
        Ok(self.clients.len() - 1)
    }

    /// Stops one client and waits for it to leave (DELETE sent).
    async fn stop(&mut self, index: usize) {
        let c = self.clients.swap_remove(index);
        let _ = c.stop.send(true);
        let _ = c.handle.await;
    }

    pub async fn stop_all(&mut self) {
        for c in &self.clients {
            let _ = c.stop.send(true);
        }
        for c in self.clients.drain(..) {
            let _ = c.handle.await;
        }
        self.bar.finish_and_clear();
    }

    /// Waits until `want` sessions have connected in total (bounded).
    async fn wait_connected(&self, want: u64, timeout: Duration) -> Result<(), BenchError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (connected, failed, first_error) = {
                let m = self.metrics.borrow();
                (
                    m.sessions_connected,
                    m.sessions_failed,
                    m.errors.first().cloned(),
                )
            };
            if connected >= want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BenchError::Scenario(format!(
                    "{connected} of {want} sessions connected after {timeout:?} ({failed} failed){}",
                    first_error
                        .map(|e| format!("; first error: {e}"))
                        .unwrap_or_default()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Measures `secs` of steady state and reports it.
    async fn measure(&self, scenario: &str, step: String, secs: f64) -> StepReport {
        let start = Instant::now();
        let (s0, p0, b0) = self.sample(start);
        self.metrics.borrow_mut().latency_us.reset();
        let end = start + Duration::from_secs_f64(secs);
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            let (up, received) = {
                let m = self.metrics.borrow();
                (
                    m.sessions_connected.saturating_sub(m.sessions_closed),
                    m.recv_packets - s0.recv_packets,
                )
            };
            let elapsed = now.duration_since(start).as_secs_f64();
            self.bar.set_message(format!(
                "{scenario} {step}: {elapsed:.0}/{secs:.0} s, {up} sessions up, {received} packets received"
            ));
            tokio::time::sleep((end - now).min(Duration::from_millis(250))).await;
        }
        let (s1, p1, b1) = self.sample(Instant::now());
        StepReport::new(
            scenario,
            step,
            &self.metrics.borrow(),
            (s0, s1),
            (p0, p1),
            (b0, b1),
        )
    }

    fn sample(&self, at: Instant) -> (Snapshot, Option<ProcSample>, Option<ProcSample>) {
        (
            self.metrics.borrow().snapshot(at),
            self.env.server_pid.and_then(|p| proc_sample(Some(p))),
            proc_sample(None),
        )
    }
}

pub struct FanoutArgs {
    pub publishers: usize,
    pub ramp: Vec<usize>,
    pub step_secs: f64,
    pub warmup_secs: f64,
    pub max_loss_pct: f64,
    pub max_p99_ms: f64,
}

/// P publishers, each in its own room, to N subscribers each, N ramping.
/// Stops ramping once loss or p99 latency passes its limit.
pub async fn fanout(r: &mut Runner, a: &FanoutArgs) -> Result<Vec<StepReport>, BenchError> {
    let rooms: Vec<String> = (0..a.publishers).map(|i| format!("fanout-{i}")).collect();
    for room in &rooms {
        r.spawn(Role::Publish, room).await?;
    }
    r.wait_connected(a.publishers as u64, Duration::from_secs(20))
        .await?;
    let mut reports = Vec::new();
    let mut have = 0;
    for &n in &a.ramp {
        r.metrics.borrow_mut().first_packet_us.reset();
        while have < n {
            for room in &rooms {
                r.spawn(Role::Subscribe, room).await?;
            }
            have += 1;
        }
        let want = (a.publishers * (1 + have)) as u64;
        // First-packet times of this step's joins; latency is reset when
        // the step's measurement starts.
        r.wait_connected(
            want,
            Duration::from_secs(20) + Duration::from_millis(20 * want),
        )
        .await?;
        tokio::time::sleep(Duration::from_secs_f64(a.warmup_secs)).await;
        let rep = r
            .measure("fanout", format!("P={} N={n}", a.publishers), a.step_secs)
            .await;
        let over = rep.loss_pct > a.max_loss_pct || rep.latency_ms.p99 > a.max_p99_ms;
        reports.push(rep);
        if over {
            break;
        }
    }
    Ok(reports)
}

/// R rooms of K participants: each publishes by WHIP and plays the room by
/// WHEP (a WHEP session carries one audio and one video: the room's newest
/// other publisher).
pub async fn rooms(
    r: &mut Runner,
    rooms: usize,
    participants: usize,
    secs: f64,
) -> Result<Vec<StepReport>, BenchError> {
    for i in 0..rooms {
        let room = format!("rooms-{i}");
        for _ in 0..participants {
            r.spawn(Role::Publish, &room).await?;
            r.spawn(Role::Subscribe, &room).await?;
        }
    }
    let want = (rooms * participants * 2) as u64;
    r.wait_connected(
        want,
        Duration::from_secs(20) + Duration::from_millis(20 * want),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(vec![
        r.measure("rooms", format!("R={rooms} K={participants}"), secs)
            .await,
    ])
}

/// Repeated join and leave of one subscriber to a publishing room: time to
/// first media, and the server's memory before and after.
pub async fn join(
    r: &mut Runner,
    cycles: usize,
    timeout_secs: f64,
) -> Result<Vec<StepReport>, BenchError> {
    r.spawn(Role::Publish, "join").await?;
    r.wait_connected(1, Duration::from_secs(20)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = r.env.server_pid.and_then(|p| proc_sample(Some(p)));
    let start = Instant::now();
    let (s0, p0, b0) = r.sample(start);
    r.metrics.borrow_mut().reset_histograms();
    let mut timeouts = 0u64;
    for i in 0..cycles {
        let seen = r.metrics.borrow().first_packet_us.len();
        let idx = r.spawn(Role::Subscribe, "join").await?;
        let deadline = Instant::now() + Duration::from_secs_f64(timeout_secs);
        loop {
            if r.metrics.borrow().first_packet_us.len() > seen {
                break;
            }
            if Instant::now() > deadline {
                timeouts += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        r.stop(idx).await;
        r.bar.set_message(format!(
            "join: {}/{cycles} cycles, {timeouts} without media",
            i + 1
        ));
    }
    // Let the server finish closing the last sessions before sampling.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s1, p1, b1) = r.sample(Instant::now());
    let mut rep = StepReport::new(
        "join",
        format!("cycles={cycles}"),
        &r.metrics.borrow(),
        (s0, s1),
        (p0, p1),
        (b0, b1),
    );
    rep.joins_without_media = Some(timeouts);
    rep.server_rss_start_mib = rss_before.map(|s| s.rss_mib);
    Ok(vec![rep])
}
