//! A running node: the sockets bound, the media worker thread and the HTTP
//! thread started. `main` runs one until a signal; tests and tools embed one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::api::{self, AppState};
use crate::config::Config;
use crate::worker::{Command, Worker};
use mediamesh_cluster::Cluster;
use mediamesh_webrtc::DtlsIdentity;

/// A number that differs between two runs of one node id: its start time
/// in microseconds. Other nodes tell a restarted node from the old one by
/// it (the old one's channels are gone).
fn incarnation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1)
}

/// Socket buffers of the shared media socket. One socket carries every
/// session, so bursts (keyframes to many viewers, many joins at once) need
/// more than the kernel's default ~200 KiB.
const MEDIA_SOCKET_BUFFER: usize = 8 << 20;

fn size_buffers(udp: &std::net::UdpSocket) {
    let sock = socket2::SockRef::from(udp);
    let _ = sock.set_recv_buffer_size(MEDIA_SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(MEDIA_SOCKET_BUFFER);
    let got = sock.recv_buffer_size().unwrap_or(0);
    // Linux reports twice the usable size it granted.
    if got < MEDIA_SOCKET_BUFFER {
        tracing::warn!(
            "media socket receive buffer is {} KiB (asked {} KiB): raise net.core.rmem_max and net.core.wmem_max for heavy load",
            got / 1024,
            MEDIA_SOCKET_BUFFER / 1024
        );
    }
}

/// Handle to a node started by [`Node::start`].
pub struct Node {
    pub http_addr: SocketAddr,
    pub media_addr: SocketAddr,
    /// RTMP ingest, when on.
    pub rtmp_addr: Option<SocketAddr>,
    /// SIP (UDP), when on.
    pub sip_addr: Option<SocketAddr>,
    /// SIP over TLS, when configured.
    pub sip_tls_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    http_thread: Option<JoinHandle<Result<(), String>>>,
    media_thread: Option<JoinHandle<Result<(), String>>>,
}

impl Node {
    /// Binds the HTTP and media sockets (port 0 picks a free one) and starts
    /// serving. Fails with a message a person can act on.
    pub fn start(config: Config) -> Result<Node, String> {
        // A gateway hosts no sessions: its worker's socket is an ephemeral
        // loopback one nobody is told about (--media-listen is not used).
        let media_listen = if config.load.gateway {
            std::net::SocketAddr::from(([127, 0, 0, 1], 0))
        } else {
            config.media_listen
        };
        let udp = std::net::UdpSocket::bind(media_listen)
            .map_err(|e| format!("cannot bind media UDP {media_listen}: {e}"))?;
        udp.set_nonblocking(true)
            .map_err(|e| format!("media socket: {e}"))?;
        size_buffers(&udp);
        let media_addr = udp.local_addr().map_err(|e| format!("media socket: {e}"))?;
        let http = std::net::TcpListener::bind(config.http_listen)
            .map_err(|e| format!("cannot bind HTTP {}: {e}", config.http_listen))?;
        http.set_nonblocking(true)
            .map_err(|e| format!("HTTP socket: {e}"))?;
        let http_addr = http.local_addr().map_err(|e| format!("HTTP socket: {e}"))?;
        let rtmp = match config.rtmp_listen {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr).map_err(|e| {
                    format!("cannot bind RTMP {addr}: {e} (--rtmp-listen off turns RTMP off)")
                })?;
                l.set_nonblocking(true)
                    .map_err(|e| format!("RTMP socket: {e}"))?;
                Some(l)
            }
            None => None,
        };
        let sip = match &config.sip {
            Some(sc) => Some(bind_sip(sc)?),
            None => None,
        };
        let sip_addr = match &sip {
            Some(s) => Some(s.0.local_addr().map_err(|e| format!("SIP socket: {e}"))?),
            None => None,
        };
        let sip_tls_addr = match &sip {
            Some((_, _, Some((l, _)), _)) => {
                Some(l.local_addr().map_err(|e| format!("SIP TLS socket: {e}"))?)
            }
            _ => None,
        };
        let rtmp_addr = match &rtmp {
            Some(l) => Some(l.local_addr().map_err(|e| format!("RTMP socket: {e}"))?),
            None => None,
        };
        // A media port of 0 is only known now: advertise the real one.
        let mut config = config;
        if config.public_addr.port() == 0 {
            config.public_addr.set_port(media_addr.port());
        }

        let geo = match &config.geoip_db {
            Some(path) => Some(Arc::new(
                crate::geo::GeoDb::open(path).map_err(|e| e.to_string())?,
            )),
            None => None,
        };
        let identity = DtlsIdentity::generate().map_err(|e| e.to_string())?;
        let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(1024);
        let candidate = config.public_addr;
        let secret = config.secret.clone();
        let cluster_config = config.cluster.clone();
        let load_config = config.load.clone();
        let (joined_tx, joined_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let media_thread = std::thread::Builder::new()
            .name("media-worker".into())
            .spawn(move || {
                // zenoh opens its session outside current-thread runtimes:
                // join before this thread's runtime exists.
                let cluster = match Cluster::join(&cluster_config, incarnation()) {
                    Ok(c) => {
                        let _ = joined_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = joined_tx.send(Err(e.to_string()));
                        return Err(e.to_string());
                    }
                };
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("media runtime: {e}"))?;
                rt.block_on(async move {
                    let socket = tokio::net::UdpSocket::from_std(udp)
                        .map_err(|e| format!("media socket: {e}"))?;
                    Worker::new(socket, candidate, identity, secret, cluster, load_config)
                        .map_err(|e| format!("media worker timer: {e}"))?
                        .run(cmd_rx)
                        .await;
                    Ok::<(), String>(())
                })
            })
            .map_err(|e| format!("cannot start media thread: {e}"))?;
        match joined_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("the media thread ended while joining the cluster".into()),
        }

        if let Some(listener) = rtmp {
            let state = crate::rtmp::RtmpState {
                secret: config.secret.clone(),
                worker: cmd_tx.clone(),
            };
            spawn_protocol_thread("rtmp", async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => crate::rtmp::serve(l, state).await,
                    Err(e) => tracing::error!("RTMP socket: {e}"),
                }
            })?;
        }
        let (sip_tx, sip_rx) = mpsc::channel::<crate::sip::SipRequest>(16);
        let sip_requests = sip.is_some().then_some(sip_tx);
        if let Some((udp, tcp, tls, connector)) = sip {
            let accounts = config
                .sip
                .as_ref()
                .map(|sc| sc.accounts.iter().cloned().collect())
                .unwrap_or_default();
            let state = crate::sip::SipState {
                secret: config.secret.clone(),
                app_id: config.app_id.clone(),
                accounts: Arc::new(accounts),
                worker: cmd_tx.clone(),
            };
            spawn_protocol_thread("sip", async move {
                let sockets = (|| {
                    Ok::<_, std::io::Error>(crate::sip::SipSockets {
                        udp: tokio::net::UdpSocket::from_std(udp)?,
                        tcp: tokio::net::TcpListener::from_std(tcp)?,
                        tls: match tls {
                            Some((l, a)) => Some((tokio::net::TcpListener::from_std(l)?, a)),
                            None => None,
                        },
                        connector,
                    })
                })();
                match sockets {
                    Ok(s) => crate::sip::serve(s, state, sip_rx).await,
                    Err(e) => tracing::error!("SIP socket: {e}"),
                }
            })?;
        }
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let http_thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("HTTP runtime: {e}"))?;
                let draining = Arc::new(AtomicBool::new(false));
                let state = AppState {
                    config: Arc::new(config),
                    worker: cmd_tx.clone(),
                    draining: draining.clone(),
                    geo,
                    sip: sip_requests,
                };
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(http)
                        .map_err(|e| format!("HTTP socket: {e}"))?;
                    let app =
                        api::router(state).into_make_service_with_connect_info::<SocketAddr>();
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stop_rx.await;
                            draining.store(true, Ordering::Relaxed);
                            tracing::info!("shutting down: no new sessions, draining");
                            let (tx, rx) = oneshot::channel();
                            if cmd_tx.send(Command::Shutdown { reply: tx }).await.is_ok() {
                                let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
                            }
                        })
                        .await
                        .map_err(|e| format!("HTTP server: {e}"))
                })
            })
            .map_err(|e| format!("cannot start HTTP thread: {e}"))?;
        Ok(Node {
            http_addr,
            media_addr,
            rtmp_addr,
            sip_addr,
            sip_tls_addr,
            stop: Some(stop_tx),
            http_thread: Some(http_thread),
            media_thread: Some(media_thread),
        })
    }

    /// Stops taking sessions, closes the live ones, and waits for both
    /// threads.
    pub fn shutdown(mut self) -> Result<(), String> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for t in [self.http_thread.take(), self.media_thread.take()]
            .into_iter()
            .flatten()
        {
            t.join()
                .map_err(|_| "a node thread panicked".to_owned())??;
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Runs a protocol front end (RTMP, SIP) on a thread of its own with a
/// current-thread runtime. Detached: it ends with the process (its sessions
/// end with the worker).
fn spawn_protocol_thread(
    name: &str,
    serve: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let what = name.to_uppercase();
    let failed = format!("cannot start the {what} thread");
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(serve),
                Err(e) => tracing::error!("{what} runtime: {e}"),
            }
        })
        .map(drop)
        .map_err(|e| format!("{failed}: {e}"))
}

type SipBound = (
    std::net::UdpSocket,
    std::net::TcpListener,
    Option<(std::net::TcpListener, tokio_rustls::TlsAcceptor)>,
    tokio_rustls::TlsConnector,
);

/// Binds SIP's UDP socket and TCP listener (one address) and its TLS
/// listener, and loads the TLS certificate.
fn bind_sip(sc: &crate::config::SipConfig) -> Result<SipBound, String> {
    let addr = sc.listen;
    let off = "(--sip-listen off turns SIP off)";
    let udp = std::net::UdpSocket::bind(addr)
        .map_err(|e| format!("cannot bind SIP {addr} (UDP): {e} {off}"))?;
    udp.set_nonblocking(true)
        .map_err(|e| format!("SIP socket: {e}"))?;
    // Port 0 picks a UDP port; TCP takes the same one.
    let udp_addr = udp.local_addr().map_err(|e| format!("SIP socket: {e}"))?;
    let tcp = crate::sip::transport::tcp_listener(udp_addr)
        .map_err(|e| format!("cannot bind SIP {udp_addr} (TCP): {e} {off}"))?;
    let tls = match &sc.tls {
        Some(t) => {
            let acceptor = crate::sip::transport::tls_acceptor(&t.cert, &t.key)
                .map_err(|e| format!("SIP TLS certificate: {e}"))?;
            let l = crate::sip::transport::tcp_listener(t.listen).map_err(|e| {
                format!(
                    "cannot bind SIP TLS {}: {e} (--sip-tls-listen off turns it off)",
                    t.listen
                )
            })?;
            Some((l, acceptor))
        }
        None => None,
    };
    let connector = crate::sip::transport::tls_connector(sc.tls_ca.as_deref())
        .map_err(|e| format!("--sip-tls-ca {e}"))?;
    Ok((udp, tcp, tls, connector))
}
