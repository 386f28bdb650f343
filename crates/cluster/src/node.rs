//! A node's membership of the cluster: one zenoh session, its liveliness
//! token, the channels of its tracks, its subscriptions to other nodes'
//! tracks, and its shares of rooms.
//!
//! zenoh calls our callbacks on its own threads; they only decode and queue
//! what arrived ([`Cluster::recv`] hands it to the media worker). Sending
//! never waits: media goes with congestion control Drop (a full link queue
//! drops the packet rather than stall the worker).

use std::collections::{HashMap, HashSet};
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

use crate::config::ClusterConfig;
use crate::keys;
use crate::view::{NodeInfo, View, ViewEvent};
use crate::wire::{self, Feedback, RoomShare};

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
}

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
}

/// Counters of the media that crossed this node's cluster edge.
#[derive(Debug, Default)]
pub struct Counters {
    /// Packets put into track channels that had a subscriber.
    pub packets_out: AtomicU64,
    /// Packets received from subscribed channels.
    pub packets_in: AtomicU64,
    /// Packets received but not decodable, or dropped because the worker
    /// queue was full.
    pub packets_dropped: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CountersSnapshot {
    pub packets_out: u64,
    pub packets_in: u64,
    pub packets_dropped: u64,
    pub channels_out: usize,
    pub channels_in: usize,
}

struct TrackChannel {
    publisher: Publisher<'static>,
    /// Some node subscribes (kept by zenoh's matching listener).
    matching: Arc<AtomicBool>,
    _listener: zenoh::matching::MatchingListener<()>,
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
    /// `None` only once [`Cluster::leave`] or drop took it.
    session: Option<Session>,
    node: String,
    zone: String,
    incarnation: u64,
    view: View,
    control_rx: mpsc::UnboundedReceiver<Control>,
    control_tx: mpsc::UnboundedSender<Control>,
    media_rx: mpsc::Receiver<ClusterEvent>,
    media_tx: mpsc::Sender<ClusterEvent>,
    /// Our shares by room key, encoded, for the queryable to answer.
    shares: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    share_version: u64,
    watched_rooms: HashMap<String, Subscriber<()>>,
    channels_out: HashMap<u64, TrackChannel>,
    channels_in: HashMap<ChannelId, Subscriber<()>>,
    counters: Arc<Counters>,
    /// Declarations that live as long as the node is in the cluster.
    standing: Option<Standing>,
}

/// What keeps the node announced and listening. Each holds the zenoh
/// session: they are dropped with it, off the worker's runtime.
struct Standing {
    _token: LivelinessToken,
    _nodes: Subscriber<()>,
    _feedback: Subscriber<()>,
    _queryable: Queryable<()>,
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
        let zconfig = config.zenoh_config()?;
        let session = zenoh::open(zconfig).wait().map_err(zerr)?;
        let node = config.node.clone();
        let zone = config.zone.clone();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (media_tx, media_rx) = mpsc::channel(MEDIA_QUEUE);
        let counters = Arc::new(Counters::default());

        let tx = control_tx.clone();
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

        let tx = control_tx.clone();
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

        let shares: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let answer = shares.clone();
        let me = node.clone();
        let queryable = session
            .declare_queryable(keys::node_shares(&node))
            .callback(move |query| {
                let Some(room) = keys::parse_room_share(query.key_expr().as_str()) else {
                    return;
                };
                // `*` asks for every room of ours.
                let found: Vec<(String, Vec<u8>)> = match answer.lock() {
                    Ok(s) if room == "*" => s.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    Ok(s) => s
                        .get(room)
                        .map(|v| vec![(room.to_owned(), v.clone())])
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                for (room, bytes) in found {
                    let _ = query.reply(keys::room_share(&room, &me), bytes).wait();
                }
            })
            .wait()
            .map_err(zerr)?;

        let token = session
            .liveliness()
            .declare_token(keys::node_token(&zone, &node, incarnation))
            .wait()
            .map_err(zerr)?;

        Ok(Cluster {
            view: View::new(node.clone(), config.debounce),
            session: Some(session),
            node,
            zone,
            incarnation,
            control_rx,
            control_tx,
            media_rx,
            media_tx,
            shares,
            share_version: 0,
            watched_rooms: HashMap::new(),
            channels_out: HashMap::new(),
            channels_in: HashMap::new(),
            counters,
            standing: Some(Standing {
                _token: token,
                _nodes: nodes,
                _feedback: feedback,
                _queryable: queryable,
            }),
        })
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

    pub fn counters(&self) -> CountersSnapshot {
        CountersSnapshot {
            packets_out: self.counters.packets_out.load(Ordering::Relaxed),
            packets_in: self.counters.packets_in.load(Ordering::Relaxed),
            packets_dropped: self.counters.packets_dropped.load(Ordering::Relaxed),
            channels_out: self.channels_out.len(),
            channels_in: self.channels_in.len(),
        }
    }

    /// Waits for the next thing from the cluster. Cancel-safe (use it in
    /// `select!`). Membership changes come through [`Cluster::poll_event`]
    /// after this returns `None`... see [`Cluster::next`].
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
                if self.watched_rooms.contains_key(&room) {
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
        }
    }

    fn on_view_event(&mut self, e: &ViewEvent) {
        if let ViewEvent::NodeUp(info) = e {
            // Its shares may have arrived before its token (and were
            // ignored): ask it for those of the rooms we watch.
            let rooms: Vec<String> = self.watched_rooms.keys().cloned().collect();
            for room in rooms {
                self.query_shares(&keys::room_share(&room, &info.node));
            }
        }
        if let ViewEvent::NodeDown(info) = e {
            // Its channels are gone: so are our subscriptions to them.
            self.channels_in.retain(|c, _| c.node != info.node);
        }
    }

    /// When the view next needs [`Cluster::handle_timeout`] (debounced
    /// departures).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.view.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.view.handle_timeout(now);
    }

    fn query_shares(&self, selector: &str) {
        let tx = self.control_tx.clone();
        let Some(session) = self.session.clone() else {
            return;
        };
        let selector = selector.to_owned();
        tokio::spawn(async move {
            let replies = session.get(&selector).await;
            // Not the last handle to outlive the node (see `close`).
            drop(session);
            let replies = match replies {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(%e, %selector, "room share query failed");
                    return;
                }
            };
            while let Ok(reply) = replies.recv_async().await {
                let Ok(sample) = reply.result() else {
                    continue;
                };
                let Some(room) = keys::parse_room_share(sample.key_expr().as_str()) else {
                    continue;
                };
                match wire::decode_json::<RoomShare>(&sample.payload().to_bytes()) {
                    Ok(share) => {
                        let _ = tx.send(Control::Share {
                            room: room.to_owned(),
                            share,
                        });
                    }
                    Err(e) => tracing::debug!(%e, "bad room share"),
                }
            }
        });
    }

    /// Starts following a room (this node has peers in it): every node's
    /// share of it arrives as [`ViewEvent::Share`].
    pub fn watch_room(&mut self, room: &str) -> Result<(), ClusterError> {
        if self.watched_rooms.contains_key(room) {
            return Ok(());
        }
        let tx = self.control_tx.clone();
        let sub = self
            .session()?
            .declare_subscriber(keys::room_shares(room))
            .callback(move |sample| {
                let Some(room) = keys::parse_room_share(sample.key_expr().as_str()) else {
                    return;
                };
                match wire::decode_json::<RoomShare>(&sample.payload().to_bytes()) {
                    Ok(share) => {
                        let _ = tx.send(Control::Share {
                            room: room.to_owned(),
                            share,
                        });
                    }
                    Err(e) => tracing::debug!(%e, "bad room share"),
                }
            })
            .wait()
            .map_err(zerr)?;
        self.watched_rooms.insert(room.to_owned(), sub);
        self.query_shares(&keys::room_shares(room));
        Ok(())
    }

    /// Stops following a room (no peer of ours left in it).
    pub fn unwatch_room(&mut self, room: &str) {
        self.watched_rooms.remove(room);
        self.view.forget_room(room);
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
                s.insert(room.to_owned(), bytes.clone());
            }
        }
        self.session()?
            .put(keys::room_share(room, &self.node), bytes)
            .priority(Priority::InteractiveLow)
            .congestion_control(CongestionControl::Block)
            .wait()
            .map_err(zerr)
    }

    /// Opens the channel of a local track.
    pub fn open_channel(&mut self, channel: u64, kind: MediaKind) -> Result<(), ClusterError> {
        if self.channels_out.contains_key(&channel) {
            return Ok(());
        }
        // Audio first: a congested link drops video before audio.
        let priority = match kind {
            MediaKind::Audio => Priority::InteractiveHigh,
            MediaKind::Video => Priority::DataHigh,
        };
        let publisher = self
            .session()?
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
        self.channels_out.insert(
            channel,
            TrackChannel {
                publisher,
                matching,
                _listener: listener,
            },
        );
        Ok(())
    }

    pub fn close_channel(&mut self, channel: u64) {
        self.channels_out.remove(&channel);
    }

    /// Sends a packet of a local track to the nodes that subscribe to it
    /// (nothing when none does).
    pub fn send_media(&self, channel: u64, stream: u8, packet: &MediaPacket) {
        let Some(c) = self.channels_out.get(&channel) else {
            return;
        };
        if !c.matching.load(Ordering::Relaxed) {
            return;
        }
        match c.publisher.put(wire::encode_media(stream, packet)).wait() {
            Ok(()) => {
                self.counters.packets_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(%e, channel, "cluster media put failed"),
        }
    }

    /// Subscribes to another node's track.
    pub fn subscribe(&mut self, channel: &ChannelId) -> Result<(), ClusterError> {
        if self.channels_in.contains_key(channel) {
            return Ok(());
        }
        let tx = self.media_tx.clone();
        let counters = self.counters.clone();
        let id = channel.clone();
        let sub = self
            .session()?
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
            .map_err(zerr)?;
        self.channels_in.insert(channel.clone(), sub);
        Ok(())
    }

    pub fn unsubscribe(&mut self, channel: &ChannelId) {
        self.channels_in.remove(channel);
    }

    pub fn subscribed(&self) -> HashSet<&ChannelId> {
        self.channels_in.keys().collect()
    }

    /// Tells a track's publisher node something (keyframe, watching).
    pub fn send_feedback(&self, channel: &ChannelId, feedback: &Feedback) {
        let key = keys::feedback(
            &channel.node,
            channel.incarnation,
            channel.channel,
            &self.node,
        );
        let Ok(session) = self.session() else {
            return;
        };
        if let Err(e) = session
            .put(key, wire::encode_json(feedback))
            .priority(Priority::InteractiveHigh)
            .congestion_control(CongestionControl::Drop)
            .wait()
        {
            tracing::debug!(%e, "cluster feedback put failed");
        }
    }

    fn session(&self) -> Result<&Session, ClusterError> {
        self.session
            .as_ref()
            .ok_or_else(|| ClusterError::Zenoh("the node left the cluster".into()))
    }

    /// Leaves the cluster: the token goes, others drop this node at once.
    /// (Dropping the handle does the same.) zenoh closes a session only
    /// outside current-thread runtimes: it is closed on a thread of its
    /// own, which this waits for.
    pub fn leave(mut self) {
        self.close();
    }

    fn close(&mut self) {
        // Everything that holds the session goes to the closing thread: the
        // last of them to drop takes zenoh's runtime down, which zenoh does
        // only outside current-thread runtimes.
        let held = (
            std::mem::take(&mut self.channels_in),
            std::mem::take(&mut self.channels_out),
            std::mem::take(&mut self.watched_rooms),
            self.standing.take(),
        );
        if let Some(session) = self.session.take() {
            let closing = std::thread::Builder::new()
                .name("cluster-close".into())
                .spawn(move || {
                    drop(held);
                    let _ = session.close().wait();
                    drop(session);
                });
            if let Ok(t) = closing {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.close();
    }
}
