//! SIP over streams (TCP, and TLS when a certificate is configured): one
//! task per connection splits its bytes into messages (`StreamFramer`) for
//! the SIP loop and writes what the loop sends on it. Connections are keyed
//! by the remote address and transport, the flow the endpoint answers on;
//! dial-out over TCP or TLS opens one when there is none (TLS verifies the
//! next hop's certificate against the public web roots and any CA given
//! with `--sip-tls-ca`, for the name the dialled URI carried).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mediamesh_sip::message::Frame;
use mediamesh_sip::{Message, Peer, StreamFramer, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Most stream connections at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 1024;
/// A connection that sends nothing for this long is closed (phones send
/// CRLF keep-alives or re-register well within it).
const IDLE: Duration = Duration::from_secs(300);
/// Messages queued for one connection's writer; beyond it they are dropped
/// (SIP retransmits over UDP only, so a stuck TCP peer just loses them).
const WRITE_QUEUE: usize = 64;
/// How long opening a connection (and its TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What connection tasks tell the SIP loop.
pub enum StreamEvent {
    Opened {
        peer: Peer,
        tx: mpsc::Sender<Vec<u8>>,
    },
    Message {
        peer: Peer,
        msg: Message,
    },
    Closed {
        peer: Peer,
    },
    /// A dial-out connection could not be opened (or its TLS handshake
    /// failed).
    Failed {
        peer: Peer,
        error: String,
    },
}

/// What a stream event means to the SIP loop.
pub enum StreamInput {
    Message(Peer, Message),
    /// Nothing can be sent to this peer (why): its requests fail.
    Unreachable(Peer, String),
}

/// The SIP loop's view of its stream connections.
pub struct Streams {
    conns: HashMap<Peer, mpsc::Sender<Vec<u8>>>,
    /// Messages for connections being opened.
    connecting: HashMap<Peer, Vec<Vec<u8>>>,
    events: mpsc::Sender<StreamEvent>,
    count: Arc<AtomicUsize>,
    /// Dial-out over TLS.
    connector: TlsConnector,
    /// The name a TLS peer's certificate must carry (the host of the URI
    /// dialled); a peer without one is checked for its IP address.
    tls_names: HashMap<Peer, String>,
}

impl Streams {
    pub fn new(events: mpsc::Sender<StreamEvent>, connector: TlsConnector) -> Streams {
        Streams {
            conns: HashMap::new(),
            connecting: HashMap::new(),
            events,
            count: Arc::new(AtomicUsize::new(0)),
            connector,
            tls_names: HashMap::new(),
        }
    }

    /// The name `peer`'s TLS certificate must carry when we connect to it.
    pub fn set_tls_name(&mut self, peer: Peer, name: String) {
        if self.tls_names.len() >= MAX_CONNECTIONS && !self.tls_names.contains_key(&peer) {
            // Names of peers long gone: start over rather than grow.
            self.tls_names.clear();
        }
        self.tls_names.insert(peer, name);
    }

    /// Bookkeeping for an event; returns what it means to the SIP loop.
    pub fn on_event(&mut self, event: StreamEvent) -> Option<StreamInput> {
        match event {
            StreamEvent::Opened { peer, tx } => {
                for bytes in self.connecting.remove(&peer).unwrap_or_default() {
                    let _ = tx.try_send(bytes);
                }
                self.conns.insert(peer, tx);
                None
            }
            StreamEvent::Message { peer, msg } => Some(StreamInput::Message(peer, msg)),
            StreamEvent::Closed { peer } => {
                self.conns.remove(&peer);
                None
            }
            StreamEvent::Failed { peer, error } => {
                let lost = self.connecting.remove(&peer).map_or(0, |q| q.len());
                tracing::warn!(to = %peer.addr, transport = ?peer.transport, "SIP: cannot connect ({error}); {lost} message(s) lost");
                Some(StreamInput::Unreachable(peer, error))
            }
        }
    }

    /// Sends `bytes` on the connection to `to`, opening one if needed.
    pub fn send(&mut self, to: Peer, bytes: Vec<u8>) {
        if let Some(tx) = self.conns.get(&to) {
            if tx.try_send(bytes).is_err() {
                tracing::debug!(to = %to.addr, "SIP stream: writer full or gone; message dropped");
            }
            return;
        }
        if let Some(q) = self.connecting.get_mut(&to) {
            if q.len() < WRITE_QUEUE {
                q.push(bytes);
            }
            return;
        }
        let tls = match to.transport {
            Transport::Tcp => None,
            Transport::Tls => {
                let name = match self.tls_names.get(&to) {
                    Some(n) => ServerName::try_from(n.clone()),
                    None => Ok(ServerName::IpAddress(to.addr.ip().into())),
                };
                match name {
                    Ok(n) => Some((self.connector.clone(), n)),
                    Err(e) => {
                        tracing::warn!(to = %to.addr, "SIP over TLS: bad server name ({e}); message dropped");
                        return;
                    }
                }
            }
            Transport::Udp | Transport::Ws | Transport::Wss => {
                tracing::warn!(to = %to.addr, transport = ?to.transport, "SIP: no connection to send on; message dropped");
                return;
            }
        };
        self.connecting.insert(to, vec![bytes]);
        let events = self.events.clone();
        let count = self.count.clone();
        tokio::spawn(async move {
            let fail = |error: String| StreamEvent::Failed { peer: to, error };
            let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to.addr)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return drop(events.send(fail(e.to_string())).await),
                Err(_) => return drop(events.send(fail("timed out".into())).await),
            };
            let _ = tcp.set_nodelay(true);
            let Some((connector, name)) = tls else {
                return connection(tcp, to, events, count).await;
            };
            let label = name.to_str().into_owned();
            match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await {
                Ok(Ok(s)) => connection(s, to, events, count).await,
                Ok(Err(e)) => {
                    let error = format!("TLS handshake with {label}: {e}");
                    let _ = events.send(fail(error)).await;
                }
                Err(_) => {
                    let error = format!("TLS handshake with {label} timed out");
                    let _ = events.send(fail(error)).await;
                }
            }
        });
    }

    /// Accepts connections on `listener` (TLS ones when `tls` is set)
    /// until the runtime ends.
    pub fn accept(&self, listener: TcpListener, tls: Option<TlsAcceptor>) {
        let events = self.events.clone();
        let count = self.count.clone();
        tokio::spawn(async move {
            loop {
                let (stream, from) = match listener.accept().await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!("SIP accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if count.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    tracing::warn!(%from, "SIP: too many connections; closing the new one");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let (events, count) = (events.clone(), count.clone());
                match tls.clone() {
                    None => {
                        let peer = Peer {
                            addr: from,
                            transport: Transport::Tcp,
                        };
                        tokio::spawn(connection(stream, peer, events, count));
                    }
                    Some(acceptor) => {
                        tokio::spawn(async move {
                            let hs = tokio::time::timeout(
                                Duration::from_secs(10),
                                acceptor.accept(stream),
                            )
                            .await;
                            match hs {
                                Ok(Ok(s)) => {
                                    let peer = Peer {
                                        addr: from,
                                        transport: Transport::Tls,
                                    };
                                    connection(s, peer, events, count).await;
                                }
                                Ok(Err(e)) => tracing::info!(%from, "SIP TLS handshake: {e}"),
                                Err(_) => tracing::info!(%from, "SIP TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
        });
    }
}

/// Reads and writes one connection until either side ends it.
async fn connection<S>(
    stream: S,
    peer: Peer,
    events: mpsc::Sender<StreamEvent>,
    count: Arc<AtomicUsize>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    count.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    if events
        .send(StreamEvent::Opened {
            peer,
            tx: tx.clone(),
        })
        .await
        .is_err()
    {
        count.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match tokio::time::timeout(IDLE, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Err(_) => {
                tracing::debug!(from = %peer.addr, "SIP connection idle; closing");
                break;
            }
            Ok(Ok(n)) => n,
        };
        if let Err(e) = framer.push(&buf[..n]) {
            tracing::info!(from = %peer.addr, "SIP stream: {e}; closing the connection");
            break;
        }
        loop {
            match framer.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::KeepAlive)) => {
                    // RFC 5626 3.5.1: a CRLF CRLF ping gets a CRLF pong.
                    let _ = tx.try_send(b"\r\n".to_vec());
                }
                Ok(Some(Frame::Message(msg))) => {
                    if events
                        .send(StreamEvent::Message { peer, msg })
                        .await
                        .is_err()
                    {
                        break 'read;
                    }
                }
                Err(e) => {
                    // The stream cannot be resynchronized after a framing
                    // error (18.3): the connection ends.
                    tracing::info!(from = %peer.addr, "SIP stream: {e}; closing the connection");
                    break 'read;
                }
            }
        }
    }
    drop(tx);
    let _ = events.send(StreamEvent::Closed { peer }).await;
    writer.abort();
    count.fetch_sub(1, Ordering::Relaxed);
}

/// A TLS acceptor for the PEM certificate chain and key in `cert`/`key`.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", cert.display()));
    }
    let key_der = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS connector for dial-out: the public web roots, plus the PEM
/// certificates in `ca` (a private CA, or a trunk's own certificate).
pub fn tls_connector(ca: Option<&Path>) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let certs = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no PEM certificate", path.display()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The local address a TCP listener for SIP would bind: the UDP one.
pub fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}
