//! The worker's side of the cluster: this node's part of each room goes out
//! as a share, other nodes' shares come in as peers and tracks of the core
//! (the core does not know they are remote), media of local tracks goes
//! out on their channels when another node subscribes, and a remote track
//! is subscribed while a receiver here takes it.
//!
//! A local track's channel number is its core [`TrackId`]: unique for the
//! life of this process, whose incarnation the channel key also names.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use mediamesh_cluster::{
    keys, ChannelId, ClusterEvent, Feedback, RoomShare, SharedPeer, SharedTrack, ViewEvent,
};
use mediamesh_core::{MediaKind, PeerId, RoomId, TrackId, Visibility};

use super::Worker;

/// A peer of another node, as the core knows it.
#[derive(Debug)]
struct RemotePeer {
    shared: SharedPeer,
    id: PeerId,
    /// Track name -> core track.
    tracks: HashMap<String, TrackId>,
}

/// A room this node has peers in, and what the other nodes have there.
#[derive(Debug)]
struct WatchedRoom {
    id: RoomId,
    /// Node -> its peers.
    nodes: HashMap<String, Vec<RemotePeer>>,
}

/// The worker's cluster state.
#[derive(Default)]
pub struct ClusterState {
    /// Room key -> room.
    rooms: HashMap<String, WatchedRoom>,
    /// Core peers that stand for other nodes' peers -> their node.
    remote_peers: HashMap<PeerId, String>,
    /// Core tracks that stand for other nodes' tracks.
    remote_tracks: HashMap<TrackId, ChannelId>,
    by_channel: HashMap<ChannelId, TrackId>,
    /// Rooms whose local part may have changed.
    dirty: Vec<RoomId>,
    /// The core's subscription epoch last reconciled.
    epoch: Option<u64>,
}

/// A room as one node sees it, for the HTTP API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomView {
    pub room: String,
    pub peers: Vec<RoomViewPeer>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomViewPeer {
    pub peer: String,
    pub node: String,
    pub tracks: Vec<RoomViewTrack>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomViewTrack {
    pub track: String,
    pub kind: &'static str,
}

/// This node and its cluster, for the HTTP API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeView {
    pub node: String,
    pub zone: String,
    pub sessions: usize,
    pub rooms: usize,
    /// Places sessions on media nodes rather than hosting them.
    pub gateway: bool,
    pub cluster: ClusterView,
    /// Gateways: the media nodes' latest load reports, by node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loads: Option<std::collections::BTreeMap<String, LoadView>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadView {
    pub zone: String,
    #[serde(flatten)]
    pub load: mediamesh_cluster::NodeLoad,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterView {
    /// Live nodes, this one included, sorted.
    pub nodes: Vec<String>,
    /// Weights of the links this node dials (node -> 0.1 ms of measured
    /// RTT), as its zenoh session runs with them.
    pub link_weights: std::collections::BTreeMap<String, u16>,
    #[serde(flatten)]
    pub counters: mediamesh_cluster::CountersSnapshot,
}

fn kind_name(k: MediaKind) -> &'static str {
    match k {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

impl Worker {
    /// Whether a core peer stands for another node's peer.
    pub(super) fn is_remote_peer(&self, peer: PeerId) -> bool {
        self.cluster_state.remote_peers.contains_key(&peer)
    }

    /// The core says a room's peers, tracks or metadata changed.
    pub(super) fn cluster_room_changed(&mut self, room: RoomId) {
        if !self.cluster_state.dirty.contains(&room) {
            self.cluster_state.dirty.push(room);
        }
    }

    /// Shares what changed of this node's rooms and follows what receivers
    /// take. Returns true when the core may have new outputs.
    pub(super) fn cluster_sync(&mut self, now: Instant) -> bool {
        let mut changed = false;
        while let Some(room) = self.cluster_state.dirty.pop() {
            changed |= self.share_room(&room, now);
        }
        let epoch = self.sfu.subscription_epoch();
        if self.cluster_state.epoch != Some(epoch) {
            self.cluster_state.epoch = Some(epoch);
            self.reconcile_subscriptions();
        }
        changed
    }

    /// Publishes this node's part of `room` when it changed; starts or
    /// stops watching the room as local peers come and go.
    fn share_room(&mut self, room: &RoomId, now: Instant) -> bool {
        let key = keys::room_key(&room.app, &room.name);
        let mut peers: Vec<SharedPeer> = Vec::new();
        let mut local_tracks: Vec<(TrackId, MediaKind)> = Vec::new();
        for pid in self.sfu.room_peers(room).to_vec() {
            if self.is_remote_peer(pid) {
                continue;
            }
            let Some(d) = self.sfu.peer_details(pid) else {
                continue;
            };
            local_tracks.extend(d.tracks.iter().map(|t| (t.id, t.kind)));
            peers.push(SharedPeer {
                name: d.name,
                metadata: d.metadata,
                announce_peer: d.visibility.announce_peer,
                announce_tracks: d.visibility.announce_tracks,
                tracks: d
                    .tracks
                    .into_iter()
                    .map(|t| SharedTrack {
                        name: t.name,
                        kind: t.kind.into(),
                        metadata: t.metadata,
                        channel: t.id.0,
                        gop_cached: t.gop_cached,
                    })
                    .collect(),
            });
        }
        let mut core_changed = false;
        if peers.is_empty() {
            if let Some(w) = self.cluster_state.rooms.remove(&key) {
                self.cluster.unwatch_room(&key);
                for (_, node_peers) in w.nodes {
                    for p in node_peers {
                        self.drop_remote_peer(p, now);
                        core_changed = true;
                    }
                }
            }
        } else if !self.cluster_state.rooms.contains_key(&key) {
            if let Err(e) = self.cluster.watch_room(&key) {
                tracing::warn!(room = %room, "cluster: cannot watch the room: {e}");
            }
            self.cluster_state.rooms.insert(
                key.clone(),
                WatchedRoom {
                    id: room.clone(),
                    nodes: HashMap::new(),
                },
            );
        }
        let before = self.cluster.shared_peers(&key);
        if before != peers {
            // Channels follow the tracks shared.
            let old: HashSet<u64> = before
                .iter()
                .flat_map(|p| p.tracks.iter().map(|t| t.channel))
                .collect();
            let new: HashSet<u64> = local_tracks.iter().map(|(t, _)| t.0).collect();
            for gone in old.difference(&new) {
                self.cluster.close_channel(*gone);
            }
            for (t, kind) in &local_tracks {
                if !old.contains(&t.0) {
                    if let Err(e) = self.cluster.open_channel(t.0, *kind) {
                        tracing::warn!(track = %t, "cluster: cannot open the track's channel: {e}");
                    }
                }
            }
            let share = RoomShare {
                app: room.app.clone(),
                room: room.name.clone(),
                node: String::new(),
                incarnation: 0,
                version: 0,
                peers,
            };
            if let Err(e) = self.cluster.share_room(&key, share) {
                tracing::warn!(room = %room, "cluster: cannot share the room: {e}");
            }
        }
        core_changed
    }

    /// Subscribes to the remote tracks receivers here take, and lets go of
    /// the others.
    fn reconcile_subscriptions(&mut self) {
        let st = &self.cluster_state;
        let want: Vec<ChannelId> = st
            .remote_tracks
            .iter()
            .filter(|(t, _)| self.sfu.track_watched(**t))
            .map(|(_, c)| c.clone())
            .collect();
        let have: Vec<ChannelId> = self.cluster.subscribed().into_iter().cloned().collect();
        for c in &have {
            if !want.contains(c) {
                tracing::debug!(?c, "cluster: unsubscribe");
                self.cluster.unsubscribe(c);
            }
        }
        for c in want {
            if !have.contains(&c) {
                tracing::debug!(?c, "cluster: subscribe");
                if let Err(e) = self.cluster.subscribe(&c) {
                    tracing::warn!("cluster: cannot subscribe to {c:?}: {e}");
                }
            }
        }
    }

    /// Something arrived from the cluster.
    pub(super) fn on_cluster_event(&mut self, e: ClusterEvent, now: Instant) {
        match e {
            ClusterEvent::Call(call) => self.serve_call(call, now),
            ClusterEvent::Media {
                channel,
                stream,
                packet,
            } => {
                if let Some(track) = self.cluster_state.by_channel.get(&channel).copied() {
                    if let Err(e) = self.sfu.on_media(track, stream, packet) {
                        tracing::debug!("cluster media: {e}");
                    }
                }
            }
            ClusterEvent::Feedback {
                channel,
                from,
                feedback,
            } => {
                let track = TrackId(channel);
                // Only our own tracks (a channel number is our track id).
                if self
                    .sfu
                    .track_owner(track)
                    .is_none_or(|o| self.is_remote_peer(o))
                {
                    return;
                }
                tracing::trace!(%track, %from, ?feedback, "cluster feedback");
                match feedback {
                    Feedback::Keyframe { stream } => {
                        self.sfu.request_track_keyframe(track, stream, now);
                    }
                    Feedback::Watching => {
                        let _ = self.sfu.remote_watch(track, now);
                    }
                }
            }
            ClusterEvent::View(ViewEvent::NodeUp(n)) => {
                tracing::info!(node = %n.node, zone = %n.zone, incarnation = n.incarnation, "cluster: node up");
            }
            ClusterEvent::View(ViewEvent::NodeDown(n)) => {
                tracing::info!(node = %n.node, zone = %n.zone, "cluster: node down");
            }
            ClusterEvent::View(ViewEvent::Share { room, node, share }) => {
                self.apply_share(&room, &node, share, now);
            }
        }
    }

    /// Brings the core in line with a node's new share of a room.
    fn apply_share(&mut self, key: &str, node: &str, share: Option<RoomShare>, now: Instant) {
        let Some(w) = self.cluster_state.rooms.get_mut(key) else {
            return;
        };
        let room = w.id.clone();
        let incoming = match share {
            Some(s) if s.app == room.app && s.room == room.name => s,
            Some(s) => {
                tracing::warn!(%node, app = %s.app, room = %s.room, "cluster: a share under the wrong room key, ignored");
                return;
            }
            None => RoomShare {
                app: room.app.clone(),
                room: room.name.clone(),
                node: node.to_owned(),
                incarnation: 0,
                version: 0,
                peers: Vec::new(),
            },
        };
        let mut old: HashMap<String, RemotePeer> = w
            .nodes
            .remove(node)
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.shared.name.clone(), p))
            .collect();
        let mut kept: Vec<RemotePeer> = Vec::new();
        for shared in incoming.peers {
            let peer = match old.remove(&shared.name) {
                Some(p) => self.update_remote_peer(p, shared, node, incoming.incarnation, now),
                None => self.add_remote_peer(&room, shared, node, incoming.incarnation, now),
            };
            kept.extend(peer);
        }
        for (_, gone) in old {
            self.drop_remote_peer(gone, now);
        }
        if let Some(w) = self.cluster_state.rooms.get_mut(key) {
            if !kept.is_empty() {
                w.nodes.insert(node.to_owned(), kept);
            }
        }
    }

    fn add_remote_peer(
        &mut self,
        room: &RoomId,
        shared: SharedPeer,
        node: &str,
        incarnation: u64,
        now: Instant,
    ) -> Option<RemotePeer> {
        let visibility = Visibility {
            announce_peer: shared.announce_peer,
            announce_tracks: shared.announce_tracks,
            watch_peers: false,
            watch_tracks: false,
        };
        let id = self.sfu.add_peer_with(
            room.clone(),
            &shared.name,
            visibility,
            shared.metadata.clone(),
        );
        self.cluster_state.remote_peers.insert(id, node.to_owned());
        let mut p = RemotePeer {
            shared: SharedPeer {
                tracks: Vec::new(),
                ..shared.clone()
            },
            id,
            tracks: HashMap::new(),
        };
        for t in shared.tracks {
            self.add_remote_track(&mut p, t, node, incarnation, now);
        }
        Some(p)
    }

    fn add_remote_track(
        &mut self,
        p: &mut RemotePeer,
        t: SharedTrack,
        node: &str,
        incarnation: u64,
        now: Instant,
    ) {
        match self
            .sfu
            .publish_track(p.id, t.kind.into(), &t.name, t.metadata.clone(), now)
        {
            Ok(id) => {
                if t.gop_cached {
                    let _ = self.sfu.cache_gop(id);
                }
                let channel = ChannelId {
                    node: node.to_owned(),
                    incarnation,
                    channel: t.channel,
                };
                self.cluster_state.remote_tracks.insert(id, channel.clone());
                self.cluster_state.by_channel.insert(channel, id);
                p.tracks.insert(t.name.clone(), id);
                p.shared.tracks.push(t);
            }
            Err(e) => tracing::warn!("cluster: remote track: {e}"),
        }
    }

    fn drop_remote_track(&mut self, id: TrackId, now: Instant) {
        if let Some(c) = self.cluster_state.remote_tracks.remove(&id) {
            self.cluster_state.by_channel.remove(&c);
            self.cluster.unsubscribe(&c);
        }
        let _ = self.sfu.unpublish_track(id, now);
    }

    fn update_remote_peer(
        &mut self,
        mut p: RemotePeer,
        shared: SharedPeer,
        node: &str,
        incarnation: u64,
        now: Instant,
    ) -> Option<RemotePeer> {
        if p.shared.announce_peer != shared.announce_peer
            || p.shared.announce_tracks != shared.announce_tracks
        {
            // Visibility is fixed at join in the core: join again.
            let room = self.sfu.peer(p.id)?.room;
            self.drop_remote_peer(p, now);
            return self.add_remote_peer(&room, shared, node, incarnation, now);
        }
        if p.shared.metadata != shared.metadata {
            let _ = self.sfu.update_peer_metadata(p.id, shared.metadata.clone());
            p.shared.metadata = shared.metadata.clone();
        }
        let old: Vec<SharedTrack> = std::mem::take(&mut p.shared.tracks);
        let mut old: HashMap<String, SharedTrack> =
            old.into_iter().map(|t| (t.name.clone(), t)).collect();
        for t in shared.tracks {
            match old.remove(&t.name) {
                // The same track (a republished one has a new channel).
                Some(o) if o.channel == t.channel && o.kind == t.kind => {
                    if o.metadata != t.metadata {
                        if let Some(id) = p.tracks.get(&t.name) {
                            let _ = self.sfu.update_track_metadata(*id, t.metadata.clone());
                        }
                    }
                    p.shared.tracks.push(t);
                }
                Some(_) => {
                    if let Some(id) = p.tracks.remove(&t.name) {
                        self.drop_remote_track(id, now);
                    }
                    self.add_remote_track(&mut p, t, node, incarnation, now);
                }
                None => self.add_remote_track(&mut p, t, node, incarnation, now),
            }
        }
        for (name, _) in old {
            if let Some(id) = p.tracks.remove(&name) {
                self.drop_remote_track(id, now);
            }
        }
        Some(p)
    }

    fn drop_remote_peer(&mut self, p: RemotePeer, now: Instant) {
        for (_, id) in p.tracks {
            self.drop_remote_track(id, now);
        }
        self.cluster_state.remote_peers.remove(&p.id);
        let _ = self.sfu.remove_peer(p.id, now);
    }

    /// A packet of a local track: to the nodes that subscribe to it.
    pub(super) fn cluster_send_media(
        &self,
        track: TrackId,
        stream: u8,
        packet: &mediamesh_core::MediaPacket,
    ) {
        self.cluster.send_media(track.0, stream, packet);
    }

    /// The core asks a keyframe of a remote track's publisher.
    pub(super) fn cluster_request_keyframe(&self, track: TrackId, stream: Option<u8>) {
        if let Some(c) = self.cluster_state.remote_tracks.get(&track) {
            self.cluster
                .send_feedback(c, &Feedback::Keyframe { stream });
        }
    }

    /// Tells the publishers' nodes which of their tracks are watched here
    /// (every stats interval; their caps expire without it).
    pub(super) fn cluster_heartbeat(&self) {
        for (track, c) in &self.cluster_state.remote_tracks {
            if self.sfu.track_watched(*track) {
                self.cluster.send_feedback(c, &Feedback::Watching);
            }
        }
    }

    /// Answers a room view: from the core when this node follows the room,
    /// else from the other nodes' current shares (a query; the answer comes
    /// from a task).
    pub(super) fn serve_room_view(
        &self,
        app: &str,
        name: &str,
        reply: tokio::sync::oneshot::Sender<RoomView>,
    ) {
        if self.cluster.watches(&keys::room_key(app, name)) {
            let _ = reply.send(self.room_view(app, name));
            return;
        }
        let snapshot = self.cluster.room_snapshot(&keys::room_key(app, name));
        let (app, name) = (app.to_owned(), name.to_owned());
        tokio::spawn(async move {
            let shares = snapshot.await;
            let peers = shares
                .into_iter()
                .filter(|s| s.app == app && s.room == name)
                .flat_map(|s| {
                    let node = s.node.clone();
                    s.peers.into_iter().map(move |p| RoomViewPeer {
                        peer: p.name,
                        node: node.clone(),
                        tracks: p
                            .tracks
                            .into_iter()
                            .map(|t| RoomViewTrack {
                                track: t.name,
                                kind: kind_name(t.kind.into()),
                            })
                            .collect(),
                    })
                })
                .collect();
            let _ = reply.send(RoomView { room: name, peers });
        });
    }

    /// A room as this node sees it.
    pub(super) fn room_view(&self, app: &str, name: &str) -> RoomView {
        let room = RoomId::new(app, name);
        let peers = self
            .sfu
            .room_peers(&room)
            .iter()
            .filter_map(|pid| {
                let d = self.sfu.peer_details(*pid)?;
                let node = self
                    .cluster_state
                    .remote_peers
                    .get(pid)
                    .cloned()
                    .unwrap_or_else(|| self.cluster.node().to_owned());
                Some(RoomViewPeer {
                    peer: d.name,
                    node,
                    tracks: d
                        .tracks
                        .into_iter()
                        .map(|t| RoomViewTrack {
                            track: t.name,
                            kind: kind_name(t.kind),
                        })
                        .collect(),
                })
            })
            .collect();
        RoomView {
            room: name.to_owned(),
            peers,
        }
    }

    pub(super) fn node_view(&self) -> NodeView {
        let mut nodes: Vec<String> = self
            .cluster
            .nodes()
            .into_iter()
            .map(|n| n.node.clone())
            .collect();
        nodes.push(self.cluster.node().to_owned());
        nodes.sort();
        NodeView {
            node: self.cluster.node().to_owned(),
            zone: self.cluster.zone().to_owned(),
            sessions: self.conns.len(),
            rooms: self.sfu.room_count(),
            gateway: self.load.config().gateway,
            loads: self.load.config().gateway.then(|| {
                self.cluster
                    .loads(std::time::Instant::now())
                    .into_iter()
                    .map(|r| {
                        (
                            r.node,
                            LoadView {
                                zone: r.zone,
                                load: r.load,
                            },
                        )
                    })
                    .collect()
            }),
            cluster: ClusterView {
                nodes,
                link_weights: self.cluster.link_weights().clone(),
                counters: self.cluster.counters(),
            },
        }
    }
}
