//! A node's membership of the cluster: one zenoh session, its liveliness
//! token, the channels of its tracks, its subscriptions to other nodes'
//! tracks, and its shares of rooms.
//!
//! zenoh calls our callbacks on its own threads; they only decode and queue
//! what arrived ([`Cluster::recv`] hands it to the media worker). Sending
//! never waits: media goes with congestion control Drop (a full link queue
//! drops the packet rather than stall the worker).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mediamesh_core::{MediaKind, MediaPacket};
use tokio::sync::mpsc;
use zenoh::liveliness::LivelinessToken;
use zenoh::pubsub::{Publisher, Subscriber};
use zenoh::qos::{CongestionControl, Priority};
use zenoh::query::Queryable;
use zenoh::sample::SampleKind;
use zenoh::{Session, Wait};

use crate::config::{ClusterConfig, NodeRole};
use crate::keys;
use crate::links::Links;
use crate::view::{NodeInfo, View, ViewEvent};
use crate::wire::{self, Feedback, NodeLoad, RoomShare, SharedPeer};

/// A track channel of another node, as its room share names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    pub node: String,
    pub incarnation: u64,
    pub channel: u64,
}

/// Media queued by zenoh's threads for the worker before packets are
/// dropped (the worker fell behind by this many).
const MEDIA_QUEUE: usize = 8192;

/// What arrived from the cluster.
#[derive(Debug)]
pub enum ClusterEvent {
    /// A packet of a subscribed channel.
    Media {
        channel: ChannelId,
        stream: u8,
        packet: MediaPacket,
    },
    /// Another node asks something of one of our tracks.
    Feedback {
        channel: u64,
        from: String,
        feedback: Feedback,
    },
    /// Membership and room changes (see [`ViewEvent`]).
    View(ViewEvent),
    /// Another node forwards a request to this one ([`Cluster::call`]).
    Call(IncomingCall),
}

/// A request another node sent with [`Cluster::call`]; answer it with
/// [`IncomingCall::reply`] (dropping it unanswered ends the caller's wait
/// with [`CallError::NoAnswer`]).
pub struct IncomingCall {
    query: zenoh::query::Query,
    payload: Vec<u8>,
}

impl IncomingCall {
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    pub fn reply(self, bytes: Vec<u8>) {
        let key = self.query.key_expr().clone();
        if let Err(e) = self.query.reply(key, bytes).wait() {
            tracing::debug!(%e, "cluster: cannot answer a call");
        }
    }
}

impl std::fmt::Debug for IncomingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingCall")
            .field("bytes", &self.payload.len())
            .finish()
    }
}

/// Why a [`Cluster::call`] has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Nobody answered: the node is gone, unreachable, or too slow.
    #[error("node {0} did not answer")]
    NoAnswer(String),
    /// This node is between sessions (reopening) or leaving.
    #[error("this node is not connected to the cluster")]
    Disconnected,
    #[error("cluster: {0}")]
    Zenoh(String),
}

/// The latest load report of a live node.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedLoad {
    pub node: String,
    pub zone: String,
    pub load: NodeLoad,
}

/// A load report older than this is not believed (reports come every
/// second).
const LOAD_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3);

/// Control input queued by zenoh's threads.
#[derive(Debug)]
enum Control {
    Token {
        info: NodeInfo,
        alive: bool,
    },
    Share {
        room: String,
        share: RoomShare,
    },
    Feedback {
        channel: u64,
        from: String,
        feedback: Feedback,
    },
    Rtt {
        endpoint: String,
        rtt: Option<(std::time::Duration, crate::links::Far)>,
    },
    Reopened {
        session: Result<Session, String>,
        weights: BTreeMap<String, u16>,
    },
    Call(zenoh::query::Query),
    Load {
        zone: String,
        node: String,
        load: NodeLoad,
    },
    /// A query of one node's share of a room got this many replies.
    Queried {
        room: String,
        node: String,
        attempt: u8,
        replies: usize,
    },
}

/// A node that just came up is asked for its shares again when it did not
/// answer (its queryable may reach us after its token): this often, this
/// many times.
const REQUERY_GAP: std::time::Duration = std::time::Duration::from_millis(500);
const REQUERY_ATTEMPTS: u8 = 8;

/// How long a node waits for each RTT echo before its first session.
const JOIN_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(300);

/// Between closing a session and opening its successor (well under the
/// others' debounce, so they see a flap, not a departure).
const REOPEN_PAUSE: std::time::Duration = std::time::Duration::from_millis(300);

/// Counters of the media that crossed this node's cluster edge.
#[derive(Debug, Default)]
pub struct Counters {
    /// Packets put into track channels that had a subscriber.
    pub packets_out: AtomicU64,
    /// Packets received from subscribed channels.
    pub packets_in: AtomicU64,
    /// Media bytes (encoded, as on the link) put and received.
    pub bytes_out: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Packets received but not decodable, or dropped because the worker
    /// queue was full.
    pub packets_dropped: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CountersSnapshot {
    pub packets_out: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub packets_dropped: u64,
    pub channels_out: usize,
    pub channels_in: usize,
}

struct TrackChannel {
    // Fields drop in order: the listener before its publisher.
    _listener: zenoh::matching::MatchingListener<()>,
    publisher: Publisher<'static>,
    /// Some node subscribes (kept by zenoh's matching listener).
    matching: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster configuration: {0}")]
    Config(String),
    #[error("cluster: {0}")]
    Zenoh(String),
}

fn zerr(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Zenoh(e.to_string())
}

/// This node in the cluster.
pub struct Cluster {
    config: ClusterConfig,
    node: String,
    zone: String,
    incarnation: u64,
    view: View,
    links: Links,
    control_rx: mpsc::UnboundedReceiver<Control>,
    control_tx: mpsc::UnboundedSender<Control>,
    media_rx: mpsc::Receiver<ClusterEvent>,
    media_tx: mpsc::Sender<ClusterEvent>,
    /// Our latest share of each room we have peers in (by room key), for
    /// the queryable to answer and to put again.
    shares: Arc<Mutex<HashMap<String, RoomShare>>>,
    share_version: u64,
    /// What this node has declared, by our names: declared again on a new
    /// session.
    rooms: HashSet<String>,
    out: HashMap<u64, MediaKind>,
    ins: HashSet<ChannelId>,
    /// The zenoh session and everything declared on it; `None` while the
    /// session reopens (with new link weights) and after leaving.
    live: Option<Live>,
    counters: Arc<Counters>,
    /// Share queries to repeat: (when, room, node (`None`: all), attempt).
    requery: Vec<(Instant, String, Option<String>, u8)>,
    /// When our shares are put again (see [`RESHARE_INTERVAL`]).
    next_reshare: Instant,
    /// Sessions opened before this one (part of the zenoh id).
    generation: u32,
    /// The current session's zenoh id, as the RTT echo answers it.
    zid: Arc<Mutex<String>>,
    _echo: crate::probe::Responder,
    /// Follow the others' load reports (gateways do).
    watch_loads: bool,
    loads: HashMap<String, (Instant, String, NodeLoad)>,
}

/// Our shares are put again this often, unchanged (same version: a node
/// that has them ignores them). A node whose subscription reached us after
/// a put, and whose query came before it, has them within this.
const RESHARE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3);

/// A session and what is declared on it. Each object holds the session:
/// they are dropped with it, off the worker's runtime (see `close_live`).
struct Live {
    session: Session,
    _token: LivelinessToken,
    _nodes: Subscriber<()>,
    _feedback: Subscriber<()>,
    _queryable: Queryable<()>,
    _api: Queryable<()>,
    _loads: Option<Subscriber<()>>,
    rooms: HashMap<String, Subscriber<()>>,
    out: HashMap<u64, TrackChannel>,
    ins: HashMap<ChannelId, Subscriber<()>>,
}

/// A room share that arrived (put or query reply), decoded.
fn decode_share(sample: &zenoh::sample::Sample) -> Option<Control> {
    let room = keys::parse_room_share(sample.key_expr().as_str())?;
    match wire::decode_json::<RoomShare>(&sample.payload().to_bytes()) {
        Ok(share) => Some(Control::Share {
            room: room.to_owned(),
            share,
        }),
        Err(e) => {
            tracing::debug!(%e, "bad room share");
            None
        }
    }
}

/// Drops a session and its declarations on a thread of their own (zenoh
/// does not take them down on a current-thread runtime), and waits.
fn close_live(live: Live) {
    let closing = std::thread::Builder::new()
        .name("cluster-close".into())
        .spawn(move || {
            let Live {
                session,
                _token,
                _nodes,
                _feedback,
                _queryable,
                _api,
                _loads,
                rooms,
                out,
                ins,
            } = live;
            drop((_token, _nodes, _feedback, _queryable, _api, _loads));
            drop((rooms, out, ins));
            let _ = session.close().wait();
            drop(session);
        });
    if let Ok(t) = closing {
        let _ = t.join();
    }
}

impl Cluster {
    /// Opens the node's zenoh session, announces the node and starts
    /// watching the others. `incarnation` must differ between two runs of
    /// the same node id (e.g. the start time in microseconds).
    ///
    /// Blocks: call it from a plain thread or a multi-threaded tokio
    /// runtime, never from a current-thread runtime (zenoh's session
    /// opening refuses those). The returned handle may then be used from
    /// any runtime; see [`Cluster::leave`] for the end.
    pub fn join(config: &ClusterConfig, incarnation: u64) -> Result<Cluster, ClusterError> {
        let zid = keys::zid(&config.node, incarnation, 0);
        let shared_zid = Arc::new(Mutex::new(zid.clone()));
        let mut links = match config.role {
            NodeRole::Router if config.rtt_weights => {
                Links::new(config.connect.clone(), Instant::now())
            }
            _ => Links::new(Vec::new(), Instant::now()),
        };
        // Measure the links first, so the first session has their weights.
        if let Some(endpoints) = links.probe_due(Instant::now()) {
            for e in endpoints {
                let rtt = crate::probe::rtt_blocking(&e, JOIN_PROBE_TIMEOUT);
                links.on_rtt(&e, rtt);
            }
            let weights = links.desired();
            links.applied(weights, Instant::now());
        }
        let session = zenoh::open(config.zenoh_config(&zid, &links.by_zid(links.weights()))?)
            .wait()
            .map_err(zerr)?;
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (media_tx, media_rx) = mpsc::channel(MEDIA_QUEUE);
        let mut c = Cluster {
            view: View::new(config.node.clone(), config.debounce),
            links,
            node: config.node.clone(),
            zone: config.zone.clone(),
            config: config.clone(),
            incarnation,
            control_rx,
            control_tx,
            media_rx,
            media_tx,
            shares: Arc::default(),
            share_version: 0,
            rooms: HashSet::new(),
            out: HashMap::new(),
            ins: HashSet::new(),
            live: None,
            counters: Arc::new(Counters::default()),
            requery: Vec::new(),
            next_reshare: Instant::now() + RESHARE_INTERVAL,
            generation: 0,
            _echo: crate::probe::Responder::start(&config.listen, &config.node, shared_zid.clone()),
            zid: shared_zid,
            watch_loads: false,
            loads: HashMap::new(),
        };
        c.live = Some(c.declare_live(session)?);
        Ok(c)
    }

    /// Declares on `session` everything this node has: its token, its
    /// watchers and queryables, its rooms, channels and subscriptions.
    fn declare_live(&mut self, session: Session) -> Result<Live, ClusterError> {
        let (node, incarnation) = (self.node.clone(), self.incarnation);
        let tx = self.control_tx.clone();
        let nodes = session
            .liveliness()
            .declare_subscriber(keys::NODE_TOKENS)
            .history(true)
            .callback(move |sample| {
                let Some((zone, node, incarnation)) =
                    keys::parse_node_token(sample.key_expr().as_str())
                else {
                    return;
                };
                let info = NodeInfo {
                    node: node.to_owned(),
                    zone: zone.to_owned(),
                    incarnation,
                };
                let alive = sample.kind() == SampleKind::Put;
                let _ = tx.send(Control::Token { info, alive });
            })
            .wait()
            .map_err(zerr)?;

        let tx = self.control_tx.clone();
        let feedback = session
            .declare_subscriber(keys::feedback_to(&node, incarnation))
            .callback(move |sample| {
                let Some((channel, from)) = keys::parse_feedback(sample.key_expr().as_str()) else {
                    return;
                };
                let bytes = sample.payload().to_bytes();
                match wire::decode_json::<Feedback>(&bytes) {
                    Ok(feedback) => {
                        let _ = tx.send(Control::Feedback {
                            channel,
                            from: from.to_owned(),
                            feedback,
                        });
                    }
                    Err(e) => tracing::debug!(%e, "bad cluster feedback"),
                }
            })
            .wait()
            .map_err(zerr)?;

        let answer = self.shares.clone();
        let me = node.clone();
        let queryable = session
            .declare_queryable(keys::node_shares(&node))
            .callback(move |query| {
                let Some(room) = keys::parse_room_share(query.key_expr().as_str()) else {
                    return;
                };
                // `*` asks for every room of ours.
                let found: Vec<(String, Vec<u8>)> = match answer.lock() {
                    Ok(s) => s
                        .iter()
                        .filter(|(k, _)| room == "*" || k.as_str() == room)
                        .map(|(k, v)| (k.clone(), wire::encode_json(v)))
                        .collect(),
                    Err(_) => Vec::new(),
                };
                for (room, bytes) in found {
                    let _ = query.reply(keys::room_share(&room, &me), bytes).wait();
                }
            })
            .wait()
            .map_err(zerr)?;

        let tx = self.control_tx.clone();
        let api = session
            .declare_queryable(keys::api(&node))
            .callback(move |query| {
                let _ = tx.send(Control::Call(query));
            })
            .wait()
            .map_err(zerr)?;
        let loads = if self.watch_loads {
            Some(self.declare_loads(&session)?)
        } else {
            None
        };

        let token = session
            .liveliness()
            .declare_token(keys::node_token(&self.zone, &node, incarnation))
            .wait()
            .map_err(zerr)?;

        let mut live = Live {
            session,
            _token: token,
            _nodes: nodes,
            _feedback: feedback,
            _queryable: queryable,
            _api: api,
            _loads: loads,
            rooms: HashMap::new(),
            out: HashMap::new(),
            ins: HashMap::new(),
        };
        for room in self.rooms.clone() {
            let sub = self.declare_room(&live.session, &room)?;
            live.rooms.insert(room.clone(), sub);
            self.query_shares(&live.session, &room, None, 0);
        }
        for (channel, kind) in self.out.clone() {
            let c = self.declare_channel(&live.session, channel, kind)?;
            live.out.insert(channel, c);
        }
        for channel in self.ins.clone() {
            let sub = self.declare_subscription(&live.session, &channel)?;
            live.ins.insert(channel, sub);
        }
        Ok(live)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn zone(&self) -> &str {
        &self.zone
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Live nodes other than this one.
    pub fn nodes(&self) -> Vec<&NodeInfo> {
        self.view.nodes()
    }

    /// Sessions this node opened before the current one.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The link weights this node's session runs with (node -> weight in
    /// 0.1 ms of RTT; see [`Links`]).
    pub fn link_weights(&self) -> &BTreeMap<String, u16> {
        self.links.weights()
    }

    pub fn counters(&self) -> CountersSnapshot {
        CountersSnapshot {
            packets_out: self.counters.packets_out.load(Ordering::Relaxed),
            packets_in: self.counters.packets_in.load(Ordering::Relaxed),
            bytes_out: self.counters.bytes_out.load(Ordering::Relaxed),
            bytes_in: self.counters.bytes_in.load(Ordering::Relaxed),
            packets_dropped: self.counters.packets_dropped.load(Ordering::Relaxed),
            channels_out: self.out.len(),
            channels_in: self.ins.len(),
        }
    }

    /// Waits for the next thing from the cluster. Cancel-safe (use it in
    /// `select!`).
    pub async fn next(&mut self) -> ClusterEvent {
        loop {
            if let Some(e) = self.view.poll_event() {
                self.on_view_event(&e);
                return ClusterEvent::View(e);
            }
            tokio::select! {
                biased;
                Some(c) = self.control_rx.recv() => {
                    if let Some(e) = self.on_control(c) {
                        return e;
                    }
                }
                Some(m) = self.media_rx.recv() => return m,
            }
        }
    }

    /// A queued media event without waiting (to drain a burst).
    pub fn try_next_media(&mut self) -> Option<ClusterEvent> {
        self.media_rx.try_recv().ok()
    }

    fn on_control(&mut self, c: Control) -> Option<ClusterEvent> {
        match c {
            Control::Token { info, alive } => {
                if alive {
                    self.view.token_up(info);
                } else {
                    self.view.token_down(&info, Instant::now());
                }
                None
            }
            Control::Share { room, share } => {
                if self.rooms.contains(&room) {
                    self.view.share(&room, share);
                }
                None
            }
            Control::Feedback {
                channel,
                from,
                feedback,
            } => Some(ClusterEvent::Feedback {
                channel,
                from,
                feedback,
            }),
            Control::Call(query) => {
                let payload = query
                    .payload()
                    .map(|p| p.to_bytes().to_vec())
                    .unwrap_or_default();
                Some(ClusterEvent::Call(IncomingCall { query, payload }))
            }
            Control::Load { zone, node, load } => {
                if node != self.node {
                    self.loads.insert(node, (Instant::now(), zone, load));
                }
                None
            }
            Control::Queried {
                room,
                node,
                attempt,
                replies,
            } => {
                // A node with nothing in the room answers nothing too: ask
                // a few times, then rely on its puts.
                if replies == 0
                    && attempt < REQUERY_ATTEMPTS
                    && self.rooms.contains(&room)
                    && self.view.incarnation(&node).is_some()
                {
                    self.requery.push((
                        Instant::now() + REQUERY_GAP,
                        room,
                        Some(node),
                        attempt + 1,
                    ));
                }
                None
            }
            Control::Rtt { endpoint, rtt } => {
                tracing::trace!(%endpoint, ?rtt, "cluster link RTT");
                self.links.on_rtt(&endpoint, rtt);
                None
            }
            Control::Reopened { session, weights } => {
                match session {
                    Ok(session) => match self.declare_live(session) {
                        Ok(live) => {
                            self.live = Some(live);
                            tracing::info!(
                                ?weights,
                                "cluster: session reopened with new link weights"
                            );
                            self.links.applied(weights, Instant::now());
                            self.reshare();
                        }
                        Err(e) => {
                            tracing::error!("cluster: cannot declare on the reopened session: {e}")
                        }
                    },
                    Err(e) => tracing::error!("cluster: cannot reopen the session: {e}"),
                }
                None
            }
        }
    }

    fn on_view_event(&mut self, e: &ViewEvent) {
        if let ViewEvent::NodeUp(info) = e {
            // Its shares may have arrived before its token (and were
            // ignored): ask it for those of the rooms we watch.
            if let Some(live) = &self.live {
                for room in &self.rooms {
                    self.query_shares(&live.session, room, Some(&info.node), 1);
                }
            }
        }
        if let ViewEvent::NodeDown(info) = e {
            // Its channels are gone: so are our subscriptions to them.
            self.ins.retain(|c| c.node != info.node);
            if let Some(live) = self.live.as_mut() {
                live.ins.retain(|c, _| c.node != info.node);
            }
            self.links.node_gone(&info.node);
            self.loads.remove(&info.node);
        }
    }

    /// When [`Cluster::handle_timeout`] next has work: debounced
    /// departures, link probes (and reopens), share re-puts and re-queries.
    ///
    /// Called on every turn of the media worker: only reads stored times.
    /// A reopen is decided at the probe rounds (weights only change with
    /// their results).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let requery = self.requery.iter().map(|r| r.0).min();
        // Due every interval, shares or not (nothing to put is cheap).
        let reshare = Some(self.next_reshare);
        [
            self.view.poll_timeout(),
            self.links.next_probe(),
            requery,
            reshare,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Serves timers. Call from within a tokio runtime (probes are tasks).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.view.handle_timeout(now);
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.requery)
            .into_iter()
            .partition(|r| r.0 <= now);
        self.requery = later;
        if let Some(live) = &self.live {
            for (_, room, node, attempt) in due {
                let live_node = node
                    .as_deref()
                    .is_none_or(|n| self.view.incarnation(n).is_some());
                if self.rooms.contains(&room) && live_node {
                    self.query_shares(&live.session, &room, node.as_deref(), attempt);
                }
            }
            if now >= self.next_reshare {
                let shares: Vec<(String, Vec<u8>)> = self
                    .shares
                    .lock()
                    .map(|s| {
                        s.iter()
                            .map(|(k, v)| (k.clone(), wire::encode_json(v)))
                            .collect()
                    })
                    .unwrap_or_default();
                for (room, bytes) in shares {
                    let _ = live
                        .session
                        .put(keys::room_share(&room, &self.node), bytes)
                        .priority(Priority::InteractiveLow)
                        .congestion_control(CongestionControl::Drop)
                        .wait();
                }
            }
        }
        // Due or not, the next reshare is an interval away: while the session
        // reopens there is none to put on (and it reshares when it is back);
        // a deadline left behind would be due forever.
        if now >= self.next_reshare {
            self.next_reshare = now + RESHARE_INTERVAL;
        }
        if let Some(endpoints) = self.links.probe_due(now) {
            for endpoint in endpoints {
                let tx = self.control_tx.clone();
                tokio::spawn(async move {
                    let rtt = crate::probe::rtt(&endpoint).await;
                    let _ = tx.send(Control::Rtt { endpoint, rtt });
                });
            }
        }
        if self.live.is_some() {
            if let Some(weights) = self.links.reopen_due(now) {
                self.reopen(weights);
            }
        }
    }

    /// Reopens the session with new link weights, off this thread: the old
    /// one closes (the node's links drop; the others see a flap shorter
    /// than their debounce), a new one opens with the same id, and
    /// [`Control::Reopened`] declares everything again on it.
    fn reopen(&mut self, weights: BTreeMap<String, u16>) {
        let Some(live) = self.live.take() else {
            return;
        };
        self.generation += 1;
        let zid = keys::zid(&self.node, self.incarnation, self.generation);
        if let Ok(mut z) = self.zid.lock() {
            z.clone_from(&zid);
        }
        let config = match self.config.zenoh_config(&zid, &self.links.by_zid(&weights)) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("cluster: link weights: {e}");
                self.live = Some(live);
                return;
            }
        };
        // Not again before the gap, whatever happens.
        self.links
            .applied(self.links.weights().clone(), Instant::now());
        let tx = self.control_tx.clone();
        tracing::info!(
            ?weights,
            "cluster: link RTTs changed, reopening the session"
        );
        let spawned = std::thread::Builder::new()
            .name("cluster-reopen".into())
            .spawn(move || {
                close_live(live);
                // Let the other routers finish with the old session first: a
                // new one that links while they still tear the old one down
                // was seen to miss their existing declarations (zenoh 1.10).
                std::thread::sleep(REOPEN_PAUSE);
                let session = zenoh::open(config).wait().map_err(|e| e.to_string());
                let _ = tx.send(Control::Reopened { session, weights });
            });
        if let Err(e) = spawned {
            tracing::error!("cluster: cannot start the reopen thread: {e}");
        }
    }

    /// Puts every share again (a new session: others may have missed the
    /// last ones).
    fn reshare(&mut self) {
        let rooms: Vec<(String, RoomShare)> = self
            .shares
            .lock()
            .map(|s| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (room, share) in rooms {
            if let Err(e) = self.share_room(&room, share) {
                tracing::warn!("cluster: share again: {e}");
            }
        }
    }

    /// Asks for the shares of `room`: of one node (`attempt` counts from
    /// 1, and an unanswered query is repeated) or of every node.
    fn query_shares(&self, session: &Session, room: &str, node: Option<&str>, attempt: u8) {
        let selector = match node {
            Some(n) => keys::room_share(room, n),
            None => keys::room_shares(room),
        };
        let tx = self.control_tx.clone();
        let replies = match session.get(&selector).wait() {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%e, %selector, "room share query failed");
                return;
            }
        };
        let asked = node.map(|n| (room.to_owned(), n.to_owned()));
        tokio::spawn(async move {
            let mut count = 0;
            while let Ok(reply) = replies.recv_async().await {
                let Ok(sample) = reply.result() else {
                    continue;
                };
                if let Some(c) = decode_share(sample) {
                    count += 1;
                    let _ = tx.send(c);
                }
            }
            if let Some((room, node)) = asked {
                let _ = tx.send(Control::Queried {
                    room,
                    node,
                    attempt,
                    replies: count,
                });
            }
        });
    }

    fn declare_loads(&self, session: &Session) -> Result<Subscriber<()>, ClusterError> {
        let tx = self.control_tx.clone();
        session
            .declare_subscriber(keys::LOADS)
            .callback(move |sample| {
                let Some((zone, node)) = keys::parse_load(sample.key_expr().as_str()) else {
                    return;
                };
                match wire::decode_json::<NodeLoad>(&sample.payload().to_bytes()) {
                    Ok(load) => {
                        let _ = tx.send(Control::Load {
                            zone: zone.to_owned(),
                            node: node.to_owned(),
                            load,
                        });
                    }
                    Err(e) => tracing::debug!(%e, "bad load report"),
                }
            })
            .wait()
            .map_err(zerr)
    }

    /// Starts following the other nodes' load reports ([`Cluster::loads`]).
    pub fn watch_loads(&mut self) -> Result<(), ClusterError> {
        if self.watch_loads {
            return Ok(());
        }
        self.watch_loads = true;
        if let Some(session) = self.live.as_ref().map(|l| l.session.clone()) {
            let sub = self.declare_loads(&session)?;
            if let Some(live) = self.live.as_mut() {
                live._loads = Some(sub);
            }
        }
        Ok(())
    }

    /// Tells the cluster this node's load (every second or so).
    pub fn report_load(&self, load: &NodeLoad) {
        if let Some(live) = &self.live {
            let _ = live
                .session
                .put(keys::load(&self.zone, &self.node), wire::encode_json(load))
                .priority(Priority::InteractiveLow)
                .congestion_control(CongestionControl::Drop)
                .wait();
        }
    }

    /// The latest load of every live node that reported one recently (not
    /// this node; see [`Cluster::watch_loads`]).
    pub fn loads(&self, now: Instant) -> Vec<ReportedLoad> {
        let mut v: Vec<ReportedLoad> = self
            .loads
            .iter()
            .filter(|(node, (at, _, _))| {
                self.view.is_up(node) && now.saturating_duration_since(*at) <= LOAD_MAX_AGE
            })
            .map(|(node, (_, zone, load))| ReportedLoad {
                node: node.clone(),
                zone: zone.clone(),
                load: load.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.node.cmp(&b.node));
        v
    }

    /// The node is up in the cluster now (its token is there).
    pub fn is_up(&self, node: &str) -> bool {
        self.view.is_up(node)
    }

    /// Sends `payload` to node `node`'s API and passes its answer (or why
    /// there is none within `timeout`) to `done`. Never waits.
    pub fn call(
        &self,
        node: &str,
        payload: Vec<u8>,
        timeout: std::time::Duration,
        done: tokio::sync::oneshot::Sender<Result<Vec<u8>, CallError>>,
    ) {
        let Some(live) = &self.live else {
            let _ = done.send(Err(CallError::Disconnected));
            return;
        };
        /// Answers the caller once: with the first reply, or when zenoh
        /// drops the callback (the query ended without one).
        struct Once {
            done: Option<tokio::sync::oneshot::Sender<Result<Vec<u8>, CallError>>>,
            node: String,
        }
        impl Once {
            fn send(&mut self, r: Result<Vec<u8>, CallError>) {
                if let Some(tx) = self.done.take() {
                    let _ = tx.send(r);
                }
            }
        }
        impl Drop for Once {
            fn drop(&mut self) {
                let node = std::mem::take(&mut self.node);
                self.send(Err(CallError::NoAnswer(node)));
            }
        }
        let once = Arc::new(Mutex::new(Once {
            done: Some(done),
            node: node.to_owned(),
        }));
        let failed = once.clone();
        let sent = live
            .session
            .get(keys::api(node))
            .payload(payload)
            .timeout(timeout)
            .consolidation(zenoh::query::ConsolidationMode::None)
            .callback(move |reply| {
                let r = match reply.result() {
                    Ok(sample) => Ok(sample.payload().to_bytes().to_vec()),
                    Err(e) => Err(CallError::Zenoh(
                        String::from_utf8_lossy(&e.payload().to_bytes()).into_owned(),
                    )),
                };
                if let Ok(mut o) = once.lock() {
                    o.send(r);
                }
            })
            .wait();
        if let Err(e) = sent {
            if let Ok(mut o) = failed.lock() {
                o.send(Err(CallError::Zenoh(e.to_string())));
            }
        }
    }

    fn declare_room(&self, session: &Session, room: &str) -> Result<Subscriber<()>, ClusterError> {
        let tx = self.control_tx.clone();
        session
            .declare_subscriber(keys::room_shares(room))
            .callback(move |sample| {
                if let Some(c) = decode_share(&sample) {
                    let _ = tx.send(c);
                }
            })
            .wait()
            .map_err(zerr)
    }

    /// Starts following a room (this node has peers in it): every node's
    /// share of it arrives as [`ViewEvent::Share`].
    pub fn watch_room(&mut self, room: &str) -> Result<(), ClusterError> {
        if !self.rooms.insert(room.to_owned()) {
            return Ok(());
        }
        if let Some(live) = &self.live {
            let sub = self.declare_room(&live.session, room)?;
            self.query_shares(&live.session, room, None, 0);
            // Once more when our subscription has surely reached every
            // node (a share put meanwhile may have missed it).
            self.requery.push((
                Instant::now() + REQUERY_GAP,
                room.to_owned(),
                None,
                REQUERY_ATTEMPTS,
            ));
            if let Some(live) = self.live.as_mut() {
                live.rooms.insert(room.to_owned(), sub);
            }
        }
        Ok(())
    }

    /// Every live node's current share of a room this node may not watch
    /// (one query; answers within a second). For views of rooms without
    /// local peers.
    pub fn room_snapshot(
        &self,
        room: &str,
    ) -> impl std::future::Future<Output = Vec<RoomShare>> + Send + 'static {
        let alive: HashMap<String, u64> = self
            .view
            .nodes()
            .into_iter()
            .map(|n| (n.node.clone(), n.incarnation))
            .collect();
        let replies = self.live.as_ref().and_then(|l| {
            l.session
                .get(keys::room_shares(room))
                .timeout(std::time::Duration::from_secs(1))
                .wait()
                .ok()
        });
        async move {
            let mut out: Vec<RoomShare> = Vec::new();
            let Some(replies) = replies else {
                return out;
            };
            while let Ok(reply) = replies.recv_async().await {
                let Ok(sample) = reply.result() else {
                    continue;
                };
                let Ok(share) = wire::decode_json::<RoomShare>(&sample.payload().to_bytes()) else {
                    continue;
                };
                if alive.get(&share.node) == Some(&share.incarnation) && !share.peers.is_empty() {
                    out.push(share);
                }
            }
            out.sort_by(|a, b| a.node.cmp(&b.node));
            out
        }
    }

    /// Whether this node follows a room (it has peers there).
    pub fn watches(&self, room: &str) -> bool {
        self.rooms.contains(room)
    }

    /// Stops following a room (no peer of ours left in it).
    pub fn unwatch_room(&mut self, room: &str) {
        self.rooms.remove(room);
        if let Some(live) = self.live.as_mut() {
            live.rooms.remove(room);
        }
        self.view.forget_room(room);
    }

    /// The peers this node last shared of a room (none: empty).
    pub fn shared_peers(&self, room: &str) -> Vec<SharedPeer> {
        self.shares
            .lock()
            .ok()
            .and_then(|s| s.get(room).map(|r| r.peers.clone()))
            .unwrap_or_default()
    }

    /// Publishes this node's part of a room (`share.peers` empty: none).
    pub fn share_room(&mut self, room: &str, mut share: RoomShare) -> Result<(), ClusterError> {
        self.share_version += 1;
        share.version = self.share_version;
        share.node = self.node.clone();
        share.incarnation = self.incarnation;
        let bytes = wire::encode_json(&share);
        if let Ok(mut s) = self.shares.lock() {
            if share.peers.is_empty() {
                s.remove(room);
            } else {
                s.insert(room.to_owned(), share);
            }
        }
        let Some(live) = &self.live else {
            // Put again once the session is back.
            return Ok(());
        };
        live.session
            .put(keys::room_share(room, &self.node), bytes)
            .priority(Priority::InteractiveLow)
            .congestion_control(CongestionControl::Block)
            .wait()
            .map_err(zerr)
    }

    fn declare_channel(
        &self,
        session: &Session,
        channel: u64,
        kind: MediaKind,
    ) -> Result<TrackChannel, ClusterError> {
        // Audio first: a congested link drops video before audio.
        let priority = match kind {
            MediaKind::Audio => Priority::InteractiveHigh,
            MediaKind::Video => Priority::DataHigh,
        };
        let publisher = session
            .declare_publisher(keys::track(&self.node, self.incarnation, channel))
            .priority(priority)
            .congestion_control(CongestionControl::Drop)
            .express(false)
            .wait()
            .map_err(zerr)?;
        let matching = Arc::new(AtomicBool::new(false));
        let m = matching.clone();
        let listener = publisher
            .matching_listener()
            .callback(move |status| m.store(status.matching(), Ordering::Relaxed))
            .wait()
            .map_err(zerr)?;
        Ok(TrackChannel {
            publisher,
            matching,
            _listener: listener,
        })
    }

    /// Opens the channel of a local track.
    pub fn open_channel(&mut self, channel: u64, kind: MediaKind) -> Result<(), ClusterError> {
        if self.out.insert(channel, kind).is_some() {
            return Ok(());
        }
        if let Some(live) = &self.live {
            let c = self.declare_channel(&live.session, channel, kind)?;
            if let Some(live) = self.live.as_mut() {
                live.out.insert(channel, c);
            }
        }
        Ok(())
    }

    pub fn close_channel(&mut self, channel: u64) {
        self.out.remove(&channel);
        if let Some(live) = self.live.as_mut() {
            live.out.remove(&channel);
        }
    }

    /// Sends a packet of a local track to the nodes that subscribe to it
    /// (nothing when none does).
    pub fn send_media(&self, channel: u64, stream: u8, packet: &MediaPacket) {
        let Some(c) = self.live.as_ref().and_then(|l| l.out.get(&channel)) else {
            return;
        };
        if !c.matching.load(Ordering::Relaxed) {
            return;
        }
        let bytes = wire::encode_media(stream, packet);
        let len = bytes.len() as u64;
        match c.publisher.put(bytes).wait() {
            Ok(()) => {
                self.counters.packets_out.fetch_add(1, Ordering::Relaxed);
                self.counters.bytes_out.fetch_add(len, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(%e, channel, "cluster media put failed"),
        }
    }

    fn declare_subscription(
        &self,
        session: &Session,
        channel: &ChannelId,
    ) -> Result<Subscriber<()>, ClusterError> {
        let tx = self.media_tx.clone();
        let counters = self.counters.clone();
        let id = channel.clone();
        session
            .declare_subscriber(keys::track(
                &channel.node,
                channel.incarnation,
                channel.channel,
            ))
            .callback(move |sample| {
                let bytes = sample.payload().to_bytes();
                match wire::decode_media(&bytes, Instant::now()) {
                    Ok((stream, packet)) => {
                        counters.packets_in.fetch_add(1, Ordering::Relaxed);
                        counters
                            .bytes_in
                            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        let e = ClusterEvent::Media {
                            channel: id.clone(),
                            stream,
                            packet,
                        };
                        if tx.try_send(e).is_err() {
                            counters.packets_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        counters.packets_dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%e, "bad cluster media");
                    }
                }
            })
            .wait()
            .map_err(zerr)
    }

    /// Subscribes to another node's track.
    pub fn subscribe(&mut self, channel: &ChannelId) -> Result<(), ClusterError> {
        if !self.ins.insert(channel.clone()) {
            return Ok(());
        }
        if let Some(live) = &self.live {
            let sub = self.declare_subscription(&live.session, channel)?;
            if let Some(live) = self.live.as_mut() {
                live.ins.insert(channel.clone(), sub);
            }
        }
        Ok(())
    }

    pub fn unsubscribe(&mut self, channel: &ChannelId) {
        self.ins.remove(channel);
        if let Some(live) = self.live.as_mut() {
            live.ins.remove(channel);
        }
    }

    pub fn subscribed(&self) -> HashSet<&ChannelId> {
        self.ins.iter().collect()
    }

    /// Tells a track's publisher node something (keyframe, watching).
    pub fn send_feedback(&self, channel: &ChannelId, feedback: &Feedback) {
        let key = keys::feedback(
            &channel.node,
            channel.incarnation,
            channel.channel,
            &self.node,
        );
        let Some(live) = &self.live else {
            return;
        };
        if let Err(e) = live
            .session
            .put(key, wire::encode_json(feedback))
            .priority(Priority::InteractiveHigh)
            .congestion_control(CongestionControl::Drop)
            .wait()
        {
            tracing::debug!(%e, "cluster feedback put failed");
        }
    }

    /// Leaves the cluster: the token goes, others drop this node at once.
    /// (Dropping the handle does the same.)
    pub fn leave(mut self) {
        if let Some(live) = self.live.take() {
            close_live(live);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            close_live(live);
        }
        if self.config.secret.is_some() {
            let _ = std::fs::remove_file(self.config.auth_file());
        }
    }
}
