//! `mediamesh`: the server binary. Reads the configuration, binds the
//! sockets, starts the media worker thread and serves the HTTP API.

use clap::Parser;
use mediamesh::config::{Cli, Config};
use mediamesh::node::Node;
use tracing_subscriber::EnvFilter;

/// zenoh's runtimes (app, acc, tx, rx, net) on one worker thread each
/// unless the operator says otherwise (its default gives rx two).
const ZENOH_RUNTIME: &str = "(app:(worker_threads:1),acc:(worker_threads:1),tx:(worker_threads:1),rx:(worker_threads:1),net:(worker_threads:1))";

fn main() -> std::process::ExitCode {
    // Before any thread exists and before zenoh reads it.
    if std::env::var_os("ZENOH_RUNTIME").is_none() {
        std::env::set_var("ZENOH_RUNTIME", ZENOH_RUNTIME);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match Config::resolve(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mediamesh: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mediamesh: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> Result<(), String> {
    if config.is_dev_secret() {
        tracing::warn!(
            "using the built-in development secret: anyone who knows it can mint tokens; set --secret for real use"
        );
    }
    if config.demo_tokens {
        tracing::warn!("demo tokens enabled: /demo/token/* hands out tokens without the secret (development convenience)");
    }
    let public = config.public_addr;
    let node = Node::start(config)?;
    tracing::info!(
        "MediaMesh ready: HTTP http://{} (demo: http://{}/demo/), media UDP {} (candidate {}), RTMP {}, SIP {}",
        node.http_addr,
        node.http_addr,
        node.media_addr,
        if public.port() == 0 {
            node.media_addr
        } else {
            public
        },
        node.rtmp_addr
            .map_or("off".to_owned(), |a| format!("rtmp://{a}/live/STREAM-KEY")),
        match (node.sip_addr, node.sip_tls_addr) {
            (None, _) => "off".to_owned(),
            (Some(a), None) => format!("sip:ROOM@{a} (UDP, TCP)"),
            (Some(a), Some(t)) => format!("sip:ROOM@{a} (UDP, TCP), TLS {t}"),
        }
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("signal runtime: {e}"))?;
    rt.block_on(shutdown_signal());
    node.shutdown()?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot watch SIGTERM: {e}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
