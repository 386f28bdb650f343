//! `mediamesh`: the server binary. Reads the configuration, binds the
//! sockets, starts the media worker thread and serves the HTTP API.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mediamesh::api::{self, AppState};
use mediamesh::config::{Cli, Config};
use mediamesh::worker::{Command, Worker};
use tokio::sync::{mpsc, oneshot};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
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
    let udp = std::net::UdpSocket::bind(config.media_listen)
        .map_err(|e| format!("cannot bind media UDP {}: {e}", config.media_listen))?;
    udp.set_nonblocking(true)
        .map_err(|e| format!("media socket: {e}"))?;
    let http = std::net::TcpListener::bind(config.http_listen)
        .map_err(|e| format!("cannot bind HTTP {}: {e}", config.http_listen))?;
    http.set_nonblocking(true)
        .map_err(|e| format!("HTTP socket: {e}"))?;

    let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(1024);
    let candidate = config.public_addr;
    let media_thread = std::thread::Builder::new()
        .name("media-worker".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("media runtime: {e}"))?;
            rt.block_on(async move {
                let socket = tokio::net::UdpSocket::from_std(udp)
                    .map_err(|e| format!("media socket: {e}"))?;
                Worker::new(socket, candidate).run(cmd_rx).await;
                Ok::<(), String>(())
            })
        })
        .map_err(|e| format!("cannot start media thread: {e}"))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("http")
        .enable_all()
        .build()
        .map_err(|e| format!("HTTP runtime: {e}"))?;
    let draining = Arc::new(AtomicBool::new(false));
    let state = AppState {
        config: Arc::new(config.clone()),
        worker: cmd_tx.clone(),
        draining: draining.clone(),
    };
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(http).map_err(|e| format!("HTTP socket: {e}"))?;
        tracing::info!(
            "MediaMesh ready: HTTP http://{} (demo: http://{}/demo/), media UDP {} (candidate {})",
            config.http_listen,
            config.http_listen,
            config.media_listen,
            config.public_addr
        );
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                draining.store(true, Ordering::Relaxed);
                tracing::info!("shutting down: no new sessions, draining");
                let (tx, rx) = oneshot::channel();
                if cmd_tx.send(Command::Shutdown { reply: tx }).await.is_ok() {
                    let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
                }
            })
            .await
            .map_err(|e| format!("HTTP server: {e}"))
    })?;
    match media_thread.join() {
        Ok(r) => r?,
        Err(_) => return Err("media thread panicked".into()),
    }
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
