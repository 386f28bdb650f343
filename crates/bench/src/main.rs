//! `mediamesh-bench`: a load generator for WHIP/WHEP servers. Opens real
//! WebRTC sessions (str0m: ICE, DTLS, SRTP) as publishers and subscribers,
//! sends synthetic media tagged with send times, and reports loss, one-way
//! latency, time to first packet, egress and the server's CPU and memory.

use clap::{Args, Parser, Subcommand};
use mediamesh_bench::http::Url;
use mediamesh_bench::media::MediaConfig;
use mediamesh_bench::report::{self, StepReport};
use mediamesh_bench::scenario::{self, Env, FanoutArgs, Runner};
use mediamesh_bench::tokens::TokenSource;
use mediamesh_bench::BenchError;

#[derive(Parser)]
#[command(
    name = "mediamesh-bench",
    version,
    about = "Load generator for WHIP/WHEP media servers"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args)]
struct Common {
    /// Server base URL; endpoints default to {url}/whip/endpoint and {url}/whep/endpoint.
    #[arg(long, global = true, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// WHIP endpoint, when not {url}/whip/endpoint.
    #[arg(long, global = true)]
    whip_url: Option<String>,
    /// WHEP endpoint, when not {url}/whep/endpoint.
    #[arg(long, global = true)]
    whep_url: Option<String>,
    /// App secret: mint a token per session with POST {url}/token/{whip,whep} (MediaMesh, atm0s).
    #[arg(long, global = true, env = "MEDIAMESH_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// One Bearer token for every session.
    #[arg(long, global = true, conflicts_with = "secret")]
    token: Option<String>,
    /// A command printing a token, run with KIND ROOM PEER appended.
    #[arg(long, global = true, conflicts_with_all = ["secret", "token"])]
    token_cmd: Option<String>,
    /// Server process to measure (CPU and RSS from /proc).
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Print the reports as JSON (one array) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Opus-like audio bitrate per publisher, kbit/s.
    #[arg(long, global = true, default_value_t = 32)]
    audio_kbps: u32,
    /// VP8-like video bitrate per publisher, kbit/s (0: audio only).
    #[arg(long, global = true, default_value_t = 800)]
    video_kbps: u32,
    /// Video frames per second.
    #[arg(long, global = true, default_value_t = 30)]
    fps: u32,
    /// Seconds between periodic keyframes.
    #[arg(long, global = true, default_value_t = 3)]
    gop_secs: u32,
}

#[derive(Subcommand)]
enum Scenario {
    /// P publishers (one room each) to N subscribers each, N ramping until loss or latency passes a limit.
    Fanout {
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Subscribers per publisher at each step, e.g. 1,10,50,100.
        #[arg(long, value_delimiter = ',', default_value = "1,5,10,25,50")]
        subscribers: Vec<usize>,
        /// Seconds measured per step.
        #[arg(long, default_value_t = 10.0)]
        step_secs: f64,
        /// Seconds to settle after a step's subscribers connect.
        #[arg(long, default_value_t = 2.0)]
        warmup_secs: f64,
        /// Stop ramping when loss passes this percentage.
        #[arg(long, default_value_t = 1.0)]
        max_loss: f64,
        /// Stop ramping when p99 one-way latency passes this many milliseconds.
        #[arg(long, default_value_t = 50.0)]
        max_p99_ms: f64,
    },
    /// R rooms of K participants; each publishes (WHIP) and plays the room (WHEP).
    Rooms {
        #[arg(long, default_value_t = 2)]
        rooms: usize,
        #[arg(long, default_value_t = 3)]
        participants: usize,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
    },
    /// Repeated join and leave of a subscriber: time to first media, leaks.
    Join {
        #[arg(long, default_value_t = 100)]
        cycles: usize,
        /// Seconds a join may wait for its first packet.
        #[arg(long, default_value_t = 5.0)]
        timeout_secs: f64,
    },
}

fn env(c: &Common) -> Result<Env, BenchError> {
    let base = Url::parse(&c.url)?;
    let endpoint = |given: &Option<String>, path: &str| match given {
        Some(u) => Url::parse(u),
        None => Ok(Url {
            path: format!("{}{path}", base.path.trim_end_matches('/')),
            ..base.clone()
        }),
    };
    let tokens = match (&c.secret, &c.token, &c.token_cmd) {
        (_, Some(t), _) => TokenSource::Static(t.clone()),
        (_, _, Some(cmd)) => TokenSource::Command(cmd.clone()),
        (Some(s), _, _) => TokenSource::Secret {
            base: base.clone(),
            secret: s.clone(),
        },
        (None, None, None) => {
            return Err(BenchError::Config(
                "give --secret, --token or --token-cmd (or MEDIAMESH_SECRET)".into(),
            ))
        }
    };
    Ok(Env {
        whip: endpoint(&c.whip_url, "/whip/endpoint")?,
        whep: endpoint(&c.whep_url, "/whep/endpoint")?,
        tokens,
        media: MediaConfig {
            audio_kbps: c.audio_kbps,
            video_kbps: c.video_kbps,
            fps: c.fps.max(1),
            gop_secs: c.gop_secs.max(1),
            ..MediaConfig::default()
        },
        server_pid: c.server_pid,
        progress: !c.json,
    })
}

async fn run(cli: Cli) -> Result<Vec<StepReport>, BenchError> {
    let mut runner = Runner::new(env(&cli.common)?);
    let result = match cli.scenario {
        Scenario::Fanout {
            publishers,
            subscribers,
            step_secs,
            warmup_secs,
            max_loss,
            max_p99_ms,
        } => {
            let args = FanoutArgs {
                publishers,
                ramp: subscribers,
                step_secs,
                warmup_secs,
                max_loss_pct: max_loss,
                max_p99_ms,
            };
            scenario::fanout(&mut runner, &args).await
        }
        Scenario::Rooms {
            rooms,
            participants,
            secs,
        } => scenario::rooms(&mut runner, rooms, participants, secs).await,
        Scenario::Join {
            cycles,
            timeout_secs,
        } => scenario::join(&mut runner, cycles, timeout_secs).await,
    };
    runner.stop_all().await;
    result
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let json = cli.common.json;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mediamesh-bench: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&rt, run(cli)) {
        Ok(reports) => {
            if json {
                match serde_json::to_string_pretty(&reports) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("mediamesh-bench: {e}");
                        return std::process::ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report::table(&reports));
                for e in reports.iter().flat_map(|r| r.errors.iter()).take(5) {
                    eprintln!("session error: {e}");
                }
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mediamesh-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
