//! A short run of every scenario against a MediaMesh node started in this
//! process: media must flow and the reports must be well formed. No timing
//! assertions (performance is measured by `bench/`, not by tests).

use std::process::Command;

use mediamesh::config::Config;
use mediamesh::node::Node;
use mediamesh_bench::http::Url;
use mediamesh_bench::media::MediaConfig;
use mediamesh_bench::report::StepReport;
use mediamesh_bench::scenario::{self, Env, FanoutArgs, Runner};
use mediamesh_bench::tokens::TokenSource;

const SECRET: &str = "bench-smoke";

fn node() -> Node {
    let config = Config {
        http_listen: "127.0.0.1:0".parse().unwrap(),
        media_listen: "127.0.0.1:0".parse().unwrap(),
        rtmp_listen: None,
        sip: None,
        public_addr: "127.0.0.1:0".parse().unwrap(),
        secret: SECRET.into(),
        app_id: "smoke".into(),
        demo_tokens: false,
        cluster: mediamesh::cluster::ClusterConfig::standalone("bench-smoke"),
        load: Default::default(),
        geoip_db: None,
        trusted_proxies: Vec::new(),
    };
    Node::start(config).unwrap()
}

fn env(node: &Node) -> Env {
    let base = Url::parse(&format!("http://{}", node.http_addr)).unwrap();
    Env {
        whip: base.join("/whip/endpoint").unwrap(),
        whep: base.join("/whep/endpoint").unwrap(),
        tokens: TokenSource::Secret {
            base,
            secret: SECRET.into(),
        },
        media: MediaConfig {
            video_kbps: 300,
            fps: 15,
            ..MediaConfig::default()
        },
        server_pid: Some(std::process::id()),
        progress: false,
    }
}

fn run<F>(f: F) -> Vec<StepReport>
where
    F: AsyncFnOnce(&mut Runner) -> Result<Vec<StepReport>, mediamesh_bench::BenchError>,
{
    let node = node();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let reports = local.block_on(&rt, async {
        let mut runner = Runner::new(env(&node));
        let r = f(&mut runner).await;
        runner.stop_all().await;
        r
    });
    node.shutdown().unwrap();
    reports.unwrap()
}

fn well_formed(r: &StepReport) {
    assert!(r.seconds > 0.0, "{r:?}");
    assert!(r.packets_sent > 0, "nothing sent: {r:?}");
    assert!(r.packets_received > 0, "nothing received: {r:?}");
    assert!((0.0..=100.0).contains(&r.loss_pct), "{r:?}");
    assert!(
        r.latency_ms.count > 0 && r.latency_ms.p50 <= r.latency_ms.p99,
        "{r:?}"
    );
    assert!(
        r.server_cpu_pct.is_some() && r.server_rss_mib.is_some(),
        "{r:?}"
    );
    assert!(r.bench_cpu_pct.is_some(), "{r:?}");
    assert_eq!(r.sessions_failed, 0, "{:?}", r.errors);
    let json = serde_json::to_value(r).unwrap();
    for key in [
        "loss_pct",
        "latency_ms",
        "first_packet_ms",
        "egress_mbps",
        "server_cpu_us_per_packet",
    ] {
        assert!(json.get(key).is_some(), "JSON lacks {key}");
    }
}

#[test]
fn fanout_ramps_and_media_flows() {
    let reports = run(async |r| {
        let args = FanoutArgs {
            publishers: 1,
            ramp: vec![1, 2],
            step_secs: 1.5,
            warmup_secs: 0.5,
            max_loss_pct: 100.0,
            max_p99_ms: 10_000.0,
        };
        scenario::fanout(r, &args).await
    });
    assert_eq!(reports.len(), 2);
    for r in &reports {
        well_formed(r);
    }
    // Two subscribers receive about twice what one did.
    assert!(reports[1].packets_received > reports[0].packets_received);
    assert_eq!(reports[1].sessions_up, 3);
    assert!(reports[0].first_packet_ms.count >= 1);
}

#[test]
fn rooms_everyone_publishes_and_plays() {
    let reports = run(async |r| scenario::rooms(r, 2, 2, 1.5).await);
    assert_eq!(reports.len(), 1);
    well_formed(&reports[0]);
    assert_eq!(reports[0].sessions_up, 8);
}

#[test]
fn join_cycles_measure_first_media() {
    let reports = run(async |r| scenario::join(r, 5, 5.0).await);
    let r = &reports[0];
    assert_eq!(r.joins_without_media, Some(0), "{r:?}");
    assert_eq!(r.first_packet_ms.count, 5);
    assert!(r.server_rss_start_mib.is_some());
}

#[test]
fn cli_prints_json_and_refuses_bad_input() {
    let node = node();
    let out = Command::new(env!("CARGO_BIN_EXE_mediamesh-bench"))
        .args([
            "--url",
            &format!("http://{}", node.http_addr),
            "--secret",
            SECRET,
            "--json",
            "--video-kbps",
            "200",
            "fanout",
            "--subscribers",
            "1",
            "--step-secs",
            "1",
            "--warmup-secs",
            "0.2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = v.as_array().unwrap();
    assert_eq!(steps.len(), 1);
    assert!(steps[0]["packets_received"].as_u64().unwrap() > 0);

    // A wrong secret is a clear error, not a hang.
    let out = Command::new(env!("CARGO_BIN_EXE_mediamesh-bench"))
        .args([
            "--url",
            &format!("http://{}", node.http_addr),
            "--secret",
            "wrong",
            "join",
            "--cycles",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_mediamesh-bench"))
        .args(["--url", "https://x", "--token", "t", "join"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http://"));
    node.shutdown().unwrap();
}
