//! RTMP ingest: OBS, ffmpeg, GStreamer publish to
//! `rtmp://HOST:PORT/APP/STREAM-KEY`, the stream key an rtmp token that
//! names the room and the peer. Each connection is a task on this node's
//! RTMP thread: bytes go through `mediamesh_rtmp::ServerSession` (the
//! protocol, sans-IO), media through [`convert::Converter`] into the media
//! worker as an ingest (a core peer whose tracks it feeds).
//!
//! Keyframe requests from viewers cannot reach an RTMP encoder: the worker
//! keeps each ingest video track's last GOP for viewers who start on it, and
//! after a loss a viewer waits for the encoder's next keyframe (its GOP
//! length; OBS's default keyframe interval is 2 s... set it to 1-2 s).

mod convert;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mediamesh_rtmp::{Event, ServerSession, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::api::unix_now;
use crate::token::{self, TokenKind};
use crate::worker::{Caller, Command};
use convert::{Converter, IngestError};

/// A publisher that sends nothing for this long is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct RtmpState {
    pub secret: String,
    pub worker: mpsc::Sender<Command>,
}

/// Accepts connections until the listener fails or the runtime ends.
pub async fn serve(listener: TcpListener, state: RtmpState) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let mut conn = Connection::new(from, state);
                    if let Err(e) = conn.run(stream).await {
                        tracing::info!(%from, "RTMP connection ended: {e}");
                    }
                    conn.end().await;
                });
            }
            Err(e) => {
                tracing::warn!("RTMP accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct Connection {
    from: SocketAddr,
    state: RtmpState,
    session: ServerSession,
    /// The ingest this connection feeds and its RTMP stream, once publishing.
    ingest: Option<(u64, u32)>,
    convert: Converter,
    /// Said to the publisher, then the connection closes.
    failed: Option<String>,
}

impl Connection {
    fn new(from: SocketAddr, state: RtmpState) -> Self {
        Self {
            from,
            state,
            session: ServerSession::new(SessionConfig::default()),
            ingest: None,
            convert: Converter::new(),
            failed: None,
        }
    }

    async fn run(&mut self, mut stream: TcpStream) -> Result<(), String> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut buf)).await {
                Err(_) => return Err(format!("nothing for {} s", IDLE_TIMEOUT.as_secs())),
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(0)) => return Err("closed by the publisher".into()),
                Ok(Ok(n)) => n,
            };
            if let Err(e) = self.session.feed(&buf[..n]) {
                return Err(format!("protocol error: {e}"));
            }
            while let Some(event) = self.session.poll_event() {
                self.on_event(event).await;
            }
            while let Some(out) = self.session.poll_output() {
                stream.write_all(&out).await.map_err(|e| e.to_string())?;
            }
            if let Some(why) = self.failed.take() {
                let _ = stream.flush().await;
                return Err(why);
            }
        }
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::PublishRequest {
                stream_id,
                stream_key,
                app,
                ..
            } => self.publish(stream_id, &app, &stream_key).await,
            Event::Video {
                timestamp_ms, data, ..
            } => {
                let r = self.convert.video(timestamp_ms, &data, Instant::now());
                self.media(r).await;
            }
            Event::Audio {
                timestamp_ms, data, ..
            } => {
                let r = self.convert.audio(timestamp_ms, &data, Instant::now());
                self.media(r).await;
            }
            Event::Unpublish { .. } => self.end().await,
            other => tracing::debug!(from = %self.from, ?other, "RTMP"),
        }
    }

    async fn publish(&mut self, stream_id: u32, app: &str, key: &str) {
        // The key may carry a query string (`key?param=...`): the token is before it.
        let key = key.split('?').next().unwrap_or_default();
        let claims = match token::decode(key, &self.state.secret, unix_now()) {
            Ok(c) if c.kind == TokenKind::Rtmp => c,
            Ok(c) => {
                return self.refuse(
                    stream_id,
                    &format!("the stream key is a {:?} token, not an rtmp token", c.kind)
                        .to_lowercase(),
                );
            }
            Err(e) => {
                return self.refuse(
                    stream_id,
                    &format!("the stream key is not a valid token: {e}"),
                )
            }
        };
        let Some(peer) = claims.peer.clone() else {
            return self.refuse(stream_id, "the stream key's token names no peer");
        };
        let caller = Caller {
            app: claims.sub.clone(),
            room: claims.room.clone(),
            peer: Some(peer.clone()),
        };
        let (tx, rx) = oneshot::channel();
        let sent = self
            .state
            .worker
            .send(Command::IngestStart {
                caller,
                peer: peer.clone(),
                listen: None,
                reply: tx,
            })
            .await;
        match (sent, rx.await) {
            (Ok(()), Ok(Ok(id))) => {
                tracing::info!(from = %self.from, %app, room = %claims.room, %peer, ingest = id, "RTMP publish started");
                self.ingest = Some((id, stream_id));
                if let Err(e) = self.session.accept_publish(stream_id) {
                    self.failed = Some(format!("cannot accept the publish: {e}"));
                }
            }
            (_, Ok(Err(e))) => self.refuse(stream_id, &e.to_string()),
            _ => self.refuse(stream_id, "the server is shutting down"),
        }
    }

    fn refuse(&mut self, stream_id: u32, why: &str) {
        tracing::warn!(from = %self.from, "RTMP publish refused: {why}");
        let _ = self.session.reject_publish(stream_id, why);
        self.failed = Some(format!("publish refused: {why}"));
    }

    async fn media(&mut self, converted: Result<Vec<mediamesh_core::MediaPacket>, IngestError>) {
        let Some((id, stream_id)) = self.ingest else {
            return;
        };
        match converted {
            Ok(packets) => {
                for packet in packets {
                    if self
                        .state
                        .worker
                        .send(Command::IngestMedia { id, packet })
                        .await
                        .is_err()
                    {
                        self.failed = Some("the server is shutting down".into());
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(from = %self.from, ingest = id, "RTMP stream refused: {e}");
                let code = match e {
                    IngestError::BFrames
                    | IngestError::VideoCodec(_)
                    | IngestError::AudioCodec(_) => "NetStream.Publish.Rejected",
                    IngestError::Malformed(_) => "NetStream.Failed",
                };
                let _ = self
                    .session
                    .send_status_error(stream_id, code, &e.to_string());
                self.failed = Some(e.to_string());
            }
        }
    }

    /// The publisher stopped or went away: its peer leaves the room.
    async fn end(&mut self) {
        if let Some((id, _)) = self.ingest.take() {
            let _ = self.state.worker.send(Command::IngestStop { id }).await;
        }
    }
}
