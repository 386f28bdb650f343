//! The media worker: one thread that owns the shared UDP socket, every
//! WebRTC session and the SFU core. A packet that arrives here is forwarded
//! from here, without crossing threads. The HTTP API talks to it through
//! [`Command`]s.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mediamesh_core::{Output, PeerId, ReceiverSource, Sfu};
use mediamesh_webrtc::{is_stun, Demux, DtlsIdentity, Session, SessionEvent, Transmit};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

mod api;
mod cluster;
mod ingest;
mod load;
mod metrics;
mod mixer;
mod sdk;
mod timer;

use crate::call::{ApiCall, ApiResult};
pub use cluster::{NodeView, RoomView};
use mediamesh_cluster::{CallError, Cluster};

pub use ingest::Listen;
pub use load::LoadConfig;
pub use sdk::SdkState;

/// Why the worker refused a command; the HTTP layer turns it into a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum WorkerError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no such session")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error("ETag does not match the session's current ICE session")]
    PreconditionFailed,
    #[error("server is shutting down")]
    Unavailable,
}

/// Who is asking: the app and room of a verified token, and its peer if it
/// names one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Caller {
    pub app: String,
    pub room: String,
    pub peer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Patched {
    /// Candidates added.
    Trickled,
    /// ICE restarted: answer with this fragment and ETag.
    Restarted { frag: String, etag: String },
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Stats {
    pub sessions: usize,
    pub rooms: usize,
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub send_drops: u64,
}

pub enum Command {
    /// A session request (WHIP, WHEP, SDK) for this node.
    Api {
        call: ApiCall,
        reply: oneshot::Sender<ApiResult>,
    },
    /// A session request for another node, sent over the cluster.
    Forward {
        node: String,
        call: ApiCall,
        reply: oneshot::Sender<Result<ApiResult, CallError>>,
    },
    /// The media nodes to try for a new session, best first (gateways).
    Place {
        client: Option<(f64, f64)>,
        reply: oneshot::Sender<Vec<String>>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
    /// A publisher without WebRTC (RTMP) starts in the caller's room: the
    /// reply is its ingest id.
    IngestStart {
        caller: Caller,
        peer: String,
        /// Hear the room's loudest other speakers (phones).
        listen: Option<ingest::Listen>,
        reply: oneshot::Sender<Result<u64, WorkerError>>,
    },
    /// A packet of an ingest's audio or video (by its codec).
    IngestMedia {
        id: u64,
        packet: mediamesh_core::MediaPacket,
    },
    IngestStop {
        id: u64,
    },
    /// A message on a room's message channel from a peer without an SDK
    /// session (a phone's DTMF digits on `dtmf`).
    RoomMessage {
        app: String,
        room: String,
        label: String,
        peer: String,
        data: Vec<u8>,
    },
    /// A room as this node sees it (its peers and the other nodes').
    RoomView {
        app: String,
        room: String,
        reply: oneshot::Sender<RoomView>,
    },
    /// This node and the cluster it sees.
    NodeView {
        reply: oneshot::Sender<NodeView>,
    },
    /// This node's metrics, Prometheus text format.
    Metrics {
        reply: oneshot::Sender<String>,
    },
    /// Close every session, flush, and stop.
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

type Key = u64;

struct Conn {
    id: String,
    session: Session,
    /// The core peer; an SDK connection has none until it joins a room.
    peer: Option<PeerId>,
    app: String,
    room: String,
    peer_name: String,
    etag: String,
    /// The SDK protocol state of an SDK connection.
    sdk: Option<SdkState>,
    /// Ends at this time (SDK Disconnect: after its reply had time to go).
    close_at: Option<Instant>,
    /// Queued in `Worker::dirty` for a poll.
    dirty: bool,
}

pub struct Worker {
    socket: UdpSocket,
    /// Verifies tokens that arrive over the data channel (SDK Join).
    secret: String,
    candidate: SocketAddr,
    identity: DtlsIdentity,
    sfu: Sfu,
    conns: HashMap<Key, Conn>,
    by_id: HashMap<String, Key>,
    by_peer: HashMap<PeerId, Key>,
    demux: Demux<Key>,
    next_key: Key,
    dirty: Vec<Key>,
    events: Vec<(Key, SessionEvent)>,
    /// When SDK receivers next get their stats and voice activity.
    next_stats: Instant,
    /// Wakes the loop at the next deadline (sub-millisecond).
    timer: timer::Timer,
    /// `stats.send_drops` when last logged.
    reported_send_drops: u64,
    draining: bool,
    stats: Stats,
    cluster: Cluster,
    cluster_state: cluster::ClusterState,
    load: load::LoadState,
    ingests: ingest::Ingests,
}

/// How often SDK clients get receiver stats and voice activity.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Datagrams read in one go before timers and commands get a turn.
const RECV_BATCH: usize = 64;

impl Worker {
    pub fn new(
        socket: UdpSocket,
        candidate: SocketAddr,
        identity: DtlsIdentity,
        secret: String,
        mut cluster: Cluster,
        load: LoadConfig,
    ) -> std::io::Result<Self> {
        if load.gateway {
            if let Err(e) = cluster.watch_loads() {
                tracing::error!("cannot follow the media nodes' load: {e}");
            }
        }
        Ok(Self {
            timer: timer::Timer::new()?,
            socket,
            secret,
            candidate,
            identity,
            sfu: Sfu::new(),
            conns: HashMap::new(),
            by_id: HashMap::new(),
            by_peer: HashMap::new(),
            demux: Demux::new(),
            next_key: 0,
            dirty: Vec::new(),
            events: Vec::new(),
            next_stats: Instant::now() + STATS_INTERVAL,
            reported_send_drops: 0,
            draining: false,
            stats: Stats::default(),
            cluster,
            cluster_state: cluster::ClusterState::default(),
            load: load::LoadState::new(load),
            ingests: ingest::Ingests::default(),
        })
    }

    /// Runs until a `Shutdown` command has been served (or every command
    /// sender is gone).
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 2048];
        loop {
            let mut deadline = self.next_deadline();
            // Timers first: under steady traffic the sleep below would be
            // re-armed before it ever fires.
            let now = Instant::now();
            if deadline <= now {
                self.on_timeout(now);
                deadline = self.next_deadline();
                if deadline > now {
                    continue;
                }
                // A deadline its handler did not move: sockets, commands and
                // the cluster get their turn (what it waits for may be there)
                // rather than this loop spinning on it alone.
                tracing::trace!("a timer is still due after its handling");
            }
            self.timer.arm(deadline);
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    let now = Instant::now();
                    match r {
                        Ok((n, from)) => self.on_datagram(now, from, &buf[..n]),
                        Err(e) => tracing::debug!("udp recv: {e}"),
                    }
                    for _ in 1..RECV_BATCH {
                        match self.socket.try_recv_from(&mut buf) {
                            Ok((n, from)) => self.on_datagram(now, from, &buf[..n]),
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) => { tracing::debug!("udp recv: {e}"); break; }
                        }
                    }
                    self.process(now);
                }
                ev = self.cluster.next() => {
                    let now = Instant::now();
                    self.on_cluster_event(ev, now);
                    for _ in 1..RECV_BATCH {
                        match self.cluster.try_next_media() {
                            Some(ev) => self.on_cluster_event(ev, now),
                            None => break,
                        }
                    }
                    self.process(now);
                }
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { break };
                    if let Some(done) = self.on_command(cmd) {
                        self.shutdown().await;
                        let _ = done.send(());
                        break;
                    }
                }
                _ = self.timer.fired() => {}
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(1);
        self.conns
            .values()
            .flat_map(|c| std::iter::once(c.session.next_timeout()).chain(c.close_at))
            .chain(self.sfu.poll_timeout())
            .chain(self.cluster.poll_timeout())
            .chain(std::iter::once(self.next_stats))
            .min()
            .map_or(far, |t| t.min(far))
    }

    fn on_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += data.len() as u64;
        let Some(key) = self.demux.route(from, data) else {
            tracing::trace!(%from, len = data.len(), "datagram for no session");
            return;
        };
        tracing::trace!(%from, len = data.len(), key, "datagram");
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if let Err(e) = conn.session.handle_receive(now, from, data) {
            tracing::debug!(session = %conn.id, "input rejected: {e}");
        }
        self.poll_session(key, now);
    }

    fn on_timeout(&mut self, now: Instant) {
        for (key, conn) in self.conns.iter_mut() {
            if conn.close_at.is_some_and(|t| t <= now) {
                conn.close_at = None;
                conn.session.close();
                queue(&mut self.dirty, *key, conn);
            }
            if conn.session.next_timeout() <= now {
                if let Err(e) = conn.session.handle_timeout(now) {
                    tracing::debug!(session = %conn.id, "timeout: {e}");
                }
                queue(&mut self.dirty, *key, conn);
            }
        }
        self.sfu.handle_timeout(now);
        self.cluster.handle_timeout(now);
        if now >= self.next_stats {
            self.next_stats = now + STATS_INTERVAL;
            if self.stats.send_drops > self.reported_send_drops {
                tracing::debug!(
                    dropped = self.stats.send_drops - self.reported_send_drops,
                    total = self.stats.send_drops,
                    "media socket: datagrams dropped on send (socket buffer full)"
                );
                self.reported_send_drops = self.stats.send_drops;
            }
            self.sdk_stats(STATS_INTERVAL);
            self.cluster_heartbeat();
            self.report_load(now);
        }
        self.process(now);
    }

    /// Queues a session for a poll, once however often it got work (a
    /// subscriber gets one write per forwarded packet).
    fn mark(&mut self, key: Key) {
        if let Some(conn) = self.conns.get_mut(&key) {
            queue(&mut self.dirty, key, conn);
        }
    }

    /// Drains one session: datagrams out, events queued for [`Self::process`].
    /// str0m keeps a single pending RTP packet, so a session must be polled
    /// after every datagram it is given.
    fn poll_session(&mut self, key: Key, now: Instant) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        conn.dirty = false;
        let socket = &self.socket;
        let stats = &mut self.stats;
        let demux = &mut self.demux;
        let nt = conn.session.poll(now, &mut |t: Transmit| {
            if is_stun(&t.contents) {
                demux.learn(t.destination, key);
            }
            match socket.try_send_to(&t.contents, t.destination) {
                Ok(n) => {
                    stats.packets_out += 1;
                    stats.bytes_out += n as u64;
                }
                Err(_) => stats.send_drops += 1,
            }
        });
        tracing::trace!(key, next_in = ?nt.saturating_duration_since(now), "polled");
        self.events
            .extend(conn.session.take_events().map(|e| (key, e)));
    }

    /// Applies what sessions reported to the core, delivers what the core
    /// decides, and polls the sessions that got work, until nothing moves.
    fn process(&mut self, now: Instant) {
        loop {
            // What the core decided outside session events (timeouts).
            while let Some(out) = self.sfu.poll_output() {
                self.on_core_output(out, now);
            }
            while let Some(key) = self.dirty.pop() {
                self.poll_session(key, now);
            }
            if self.events.is_empty() {
                // Shares and subscriptions last: they may add core outputs.
                if self.cluster_sync(now) {
                    continue;
                }
                break;
            }
            let mut events = std::mem::take(&mut self.events);
            for (key, event) in events.drain(..) {
                self.on_session_event(key, event, now);
                while let Some(out) = self.sfu.poll_output() {
                    self.on_core_output(out, now);
                }
            }
            // Keep the allocation.
            self.events = events;
        }
    }

    fn on_session_event(&mut self, key: Key, event: SessionEvent, now: Instant) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        match event {
            SessionEvent::Connected => {
                tracing::info!(session = %conn.id, room = %conn.room, peer = %conn.peer_name, "connected");
                if let Some(peer) = conn.peer {
                    self.sfu.set_peer_connected(peer, true);
                }
            }
            SessionEvent::WantsTrack { mid, .. } if conn.sdk.is_some() => {
                self.sdk_on_sender_line(key, mid, now);
            }
            SessionEvent::WantsReceiver { mid, codecs, .. } if conn.sdk.is_some() => {
                self.sdk_on_receiver_line(key, mid, codecs, now);
            }
            SessionEvent::ChannelOpen => self.sdk_on_channel_open(key),
            SessionEvent::ChannelData(data) => self.sdk_on_channel_data(key, &data, now),
            SessionEvent::WantsTrack { mid, kind } => {
                let Some(peer) = conn.peer else { return };
                let name = match kind {
                    mediamesh_core::MediaKind::Audio => "audio",
                    mediamesh_core::MediaKind::Video => "video",
                };
                match self.sfu.publish_track(peer, kind, name, None, now) {
                    Ok(track) => conn.session.bind_track(mid, track),
                    Err(e) => tracing::warn!("publish: {e}"),
                }
            }
            SessionEvent::WantsReceiver { mid, kind, codecs } => {
                let Some(peer) = conn.peer else { return };
                match self
                    .sfu
                    .add_receiver(peer, kind, codecs, ReceiverSource::FollowRoom, now)
                {
                    Ok(r) => conn.session.bind_receiver(mid, r),
                    Err(e) => tracing::warn!("receiver: {e}"),
                }
            }
            SessionEvent::Media {
                track,
                stream,
                packet,
            } => {
                self.cluster_send_media(track, stream, &packet);
                if let Err(e) = self.sfu.on_media(track, stream, packet) {
                    tracing::debug!("media: {e}");
                }
            }
            SessionEvent::KeyframeRequest { receiver } => {
                tracing::debug!(session = %conn.id, %receiver, "keyframe request from player");
                let _ = self.sfu.request_keyframe(receiver, now);
            }
            SessionEvent::EgressEstimate { bps } => {
                tracing::trace!(session = %conn.id, bps, "egress estimate");
                if let Some(peer) = conn.peer {
                    self.sfu.set_estimate(peer, bps, now);
                }
            }
            SessionEvent::Closed => self.remove(key, now),
        }
    }

    fn on_core_output(&mut self, out: Output, now: Instant) {
        match out {
            Output::Media {
                peer,
                receiver,
                packet,
            } => {
                // WebRTC sessions first: one lookup per packet on the hot path;
                // a peer without a session may be a listening ingest (a phone).
                match self.by_peer.get(&peer).copied() {
                    Some(key) => {
                        if let Some(conn) = self.conns.get_mut(&key) {
                            conn.session.send_media(receiver, &packet);
                            self.mark(key);
                        }
                    }
                    None => self.ingest_hears(peer, receiver, packet),
                }
            }
            Output::TrackLive { peer, track } => {
                if let Some(key) = self.by_peer.get(&peer).copied() {
                    self.sdk_sender_state(key, track, true);
                }
            }
            Output::ReceiverState {
                peer,
                receiver,
                state,
            } => {
                if let Some(key) = self.by_peer.get(&peer).copied() {
                    self.sdk_receiver_state(key, receiver, state);
                }
            }
            Output::RoomEvent { to, event } => {
                if let Some(key) = self.by_peer.get(&to).copied() {
                    self.sdk_room_event(key, event);
                }
            }
            Output::MixerSlot { peer, slot, source } => {
                if !self.ingest_mixer_slot(peer, slot, source.clone(), now) {
                    self.mixer_slot(peer, slot, source, now);
                }
            }
            Output::RoomChanged { room } => self.cluster_room_changed(room),
            Output::PublisherCap { peer, track, bps } => {
                tracing::debug!(%peer, %track, ?bps, "publisher bitrate cap");
                self.with_session(peer, |s| s.cap_bitrate(track, bps));
            }
            Output::DesiredBitrate { peer, bps } => {
                tracing::debug!(%peer, bps, "desired egress bitrate");
                self.with_session(peer, |s| s.set_desired_bitrate(bps));
            }
            Output::PublisherLayers {
                peer,
                track,
                max_spatial,
            } => {
                tracing::debug!(%peer, %track, max_spatial, "publisher layers wanted");
                if let Some(key) = self.by_peer.get(&peer).copied() {
                    self.sdk_sender_layers(key, track, max_spatial);
                }
            }
            Output::ProbeBandwidth { peer } => self.with_session(peer, |s| s.request_probe(now)),
            Output::RequestKeyframe {
                peer,
                track,
                stream,
            } => {
                tracing::debug!(%peer, %track, ?stream, "keyframe request to publisher");
                if self.is_remote_peer(peer) {
                    self.cluster_request_keyframe(track, stream);
                    return;
                }
                self.with_session(peer, |s| s.request_keyframe(track, stream));
            }
        }
    }

    /// Runs `f` on the session of a local peer (if it has one) and marks
    /// the session for polling.
    fn with_session(&mut self, peer: PeerId, f: impl FnOnce(&mut Session)) {
        let Some(key) = self.by_peer.get(&peer).copied() else {
            return;
        };
        if let Some(conn) = self.conns.get_mut(&key) {
            f(&mut conn.session);
            self.mark(key);
        }
    }

    fn remove(&mut self, key: Key, now: Instant) {
        let Some(conn) = self.conns.remove(&key) else {
            return;
        };
        self.by_id.remove(&conn.id);
        self.demux.remove(key);
        if let Some(peer) = conn.peer {
            self.by_peer.remove(&peer);
            let _ = self.sfu.remove_peer(peer, now);
        }
        tracing::info!(session = %conn.id, room = %conn.room, peer = %conn.peer_name, "session ended");
    }

    /// Serves one command; returns the reply channel of a shutdown.
    fn on_command(&mut self, cmd: Command) -> Option<oneshot::Sender<()>> {
        let now = Instant::now();
        match cmd {
            Command::Api { call, reply } => {
                let r = self.serve(call, now);
                self.process(now);
                let _ = reply.send(r);
            }
            Command::Forward { node, call, reply } => self.forward(&node, &call, reply),
            Command::Place { client, reply } => {
                let _ = reply.send(self.place(client, now));
            }
            Command::IngestStart {
                caller,
                peer,
                listen,
                reply,
            } => {
                let _ = reply.send(self.ingest_start(&caller, &peer, listen, now));
            }
            Command::IngestMedia { id, packet } => self.ingest_media(id, packet, now),
            Command::IngestStop { id } => self.ingest_stop(id, now),
            Command::RoomMessage {
                app,
                room,
                label,
                peer,
                data,
            } => self.room_message(&app, &room, &label, &peer, data),
            Command::Stats { reply } => {
                let mut s = self.stats;
                s.sessions = self.conns.len();
                s.rooms = self.sfu.room_count();
                let _ = reply.send(s);
            }
            Command::RoomView { app, room, reply } => self.serve_room_view(&app, &room, reply),
            Command::NodeView { reply } => {
                let _ = reply.send(self.node_view());
            }
            Command::Metrics { reply } => {
                let _ = reply.send(self.metrics_text());
            }
            Command::Shutdown { reply } => return Some(reply),
        }
        None
    }

    async fn shutdown(&mut self) {
        self.draining = true;
        let now = Instant::now();
        let keys: Vec<Key> = self.conns.keys().copied().collect();
        tracing::info!(sessions = keys.len(), "draining sessions");
        for key in keys {
            if let Some(conn) = self.conns.get_mut(&key) {
                conn.session.close();
            }
            self.mark(key);
        }
        self.process(now);
    }
}

fn queue(dirty: &mut Vec<Key>, key: Key, conn: &mut Conn) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(key);
    }
}
