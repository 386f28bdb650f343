//! The selective forwarding unit: who is in which room, what they publish,
//! what they receive, and the packets that result.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::gop::{GopCache, GOP_CACHE_MAX_BYTES};
use crate::keyframe::TrackKeyframes;
use crate::layers::alloc::{Allocation, LayerLimits};
use crate::layers::av1_dd::DdParser;
use crate::layers::meter::{LayerMeter, LiveLayers};
use crate::layers::Selector;
use crate::rewrite::Rewriter;
use crate::{Codec, MediaKind, MediaPacket, PeerId, ReceiverId, RoomId, TrackId};

/// Minimum time between two keyframe requests sent to one publisher when the
/// last one was answered, and when it was not (see [`KeyframeRequests`]).
const KEYFRAME_GAP_ANSWERED: Duration = Duration::from_millis(200);
const KEYFRAME_GAP_UNANSWERED: Duration = Duration::from_millis(500);

mod feedback;
mod forward;
mod mixer;
mod presence;
mod quality;
mod remote;
#[cfg(test)]
mod testutil;

pub use mixer::{MixerConfig, MixerMode, TrackRef};
pub use presence::{RoomEvent, Visibility};
pub use quality::{QualitySummary, ReceiverQuality};
pub use remote::{PeerDetails, TrackDetails, REMOTE_WATCH_TTL};

use mixer::{LevelMeter, Mixer};

/// What the core asks the transports to do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send a (rewritten) packet to a receiver of a peer.
    Media {
        peer: PeerId,
        receiver: ReceiverId,
        packet: MediaPacket,
    },
    /// Ask the publisher of a track for a keyframe.
    /// Ask the publisher of a track for a keyframe: of one simulcast
    /// stream, or of all (`None`).
    RequestKeyframe {
        peer: PeerId,
        track: TrackId,
        stream: Option<u8>,
    },
    /// The bitrate worth probing for towards a peer (its receivers at their
    /// best allowed layers).
    DesiredBitrate { peer: PeerId, bps: u64 },
    /// The peer's receivers are below their best layers for want of
    /// bandwidth: probe now for more (sent once a second while it lasts).
    /// The estimator only probes on its own every few seconds, and a link
    /// that got faster is only discovered by a probe.
    ProbeBandwidth { peer: PeerId },
    /// The spatial layers of a simulcast track that some subscriber may
    /// want, up to `max_spatial`: streams above it can pause until this
    /// rises (our SDK turns those encodings off; a publisher that does not
    /// understand it keeps sending them). Lowered once the need has been
    /// lower for a few seconds, raised at once.
    PublisherLayers {
        peer: PeerId,
        track: TrackId,
        max_spatial: u8,
    },
    /// Cap what the publisher of a track sends (no subscriber needs its
    /// upper layers), or lift the cap (`None`).
    PublisherCap {
        peer: PeerId,
        track: TrackId,
        bps: Option<u64>,
    },
    /// Tell a peer that watches its room what changed there.
    RoomEvent { to: PeerId, event: RoomEvent },
    /// The first packet of a published track arrived.
    TrackLive { peer: PeerId, track: TrackId },
    /// A receiver's state changed (see [`ReceiverState`]).
    ReceiverState {
        peer: PeerId,
        receiver: ReceiverId,
        state: ReceiverState,
    },
    /// The peers of a room, their tracks or their metadata changed (what a
    /// cluster node shares of the room).
    RoomChanged { room: RoomId },
    /// A mixer slot of a peer now carries this track (or nothing).
    MixerSlot {
        peer: PeerId,
        slot: usize,
        source: Option<TrackRef>,
    },
}

/// Where a receiver stands, as its peer is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverState {
    /// Attached, no media sent yet (waiting for the source or a keyframe).
    Waiting,
    /// Media flows.
    Active,
    /// Nothing to play: detached, paused, or its source stopped.
    Inactive,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SfuError {
    #[error("unknown peer {0}")]
    UnknownPeer(PeerId),
    #[error("unknown track {0}")]
    UnknownTrack(TrackId),
    #[error("unknown receiver {0}")]
    UnknownReceiver(ReceiverId),
}

/// A read-only view of a peer, for APIs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub room: RoomId,
    pub name: String,
    pub tracks: Vec<TrackId>,
    pub receivers: Vec<ReceiverId>,
}

#[derive(Debug, Default)]
struct Room {
    peers: Vec<PeerId>,
    /// Live tracks in publish order.
    tracks: Vec<TrackId>,
}

#[derive(Debug)]
struct Peer {
    room: RoomId,
    name: String,
    metadata: Option<String>,
    visibility: Visibility,
    /// Manual mode: names of peers it follows besides its watch flags.
    watching: Vec<String>,
    tracks: Vec<TrackId>,
    receivers: Vec<ReceiverId>,
    /// Its transport can deliver (see [`Sfu::set_peer_connected`]).
    connected: bool,
}

#[derive(Debug)]
struct Track {
    owner: PeerId,
    room: RoomId,
    kind: MediaKind,
    /// Unique per peer (e.g. `audio`, `video_screen`).
    name: String,
    metadata: Option<String>,
    subscribers: Vec<ReceiverId>,
    keyframes: TrackKeyframes,
    /// Viewers on other nodes watch it until then (see [`remote`]).
    remote_watch_until: Option<Instant>,
    /// A packet has arrived.
    live: bool,
    /// Audio loudness from the packets' levels (for mixers).
    level: LevelMeter,
    /// Video bitrate per layer, measured from the packets.
    meter: Option<LayerMeter>,
    /// Video layers that arrive.
    live_layers: LiveLayers,
    /// The AV1 Dependency Descriptor state of the source, when it sends one.
    dd: Option<DdParser>,
    /// The bitrate cap last told to the publisher.
    cap: feedback::CapState,
    /// The last GOP, for tracks whose publisher takes no keyframe requests.
    gop: Option<GopCache>,
}

#[derive(Debug)]
struct Receiver {
    owner: PeerId,
    kind: MediaKind,
    /// Codecs the receiving peer can decode; other packets are not sent.
    codecs: Vec<Codec>,
    /// What the receiver asked for.
    want: ReceiverSource,
    /// The live track it plays now, if `want` resolves to one.
    source: Option<TrackId>,
    /// Paused receivers stay attached but get no packets.
    paused: bool,
    rewriter: Option<Rewriter>,
    /// Video layer selection, made at the first packet of each source (a
    /// source change or resume drops it, so video waits for a keyframe).
    selector: Option<Box<dyn Selector>>,
    /// What the subscriber asked for (SDK receiver config).
    priority: u32,
    limits: LayerLimits,
    /// The allocator's last choice.
    allocation: Allocation,
    /// When it was attached to its current source (video starts at the
    /// lowest spatial layer until the estimate has held a while with it).
    attached_at: Option<Instant>,
    /// Holds back moves up after the estimate moved it down.
    up_backoff: quality::UpBackoff,
    /// Last state told to the peer.
    state: ReceiverState,
    counters: ReceiverCounters,
}

/// What a receiver has been sent, for stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverCounters {
    pub packets: u64,
    pub bytes: u64,
    /// Audio level (RFC 6464, -dBov) of the last packet that carried one.
    pub audio_level: Option<i8>,
}

/// What a receiver plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverSource {
    /// The newest live track of the receiver's kind published by another
    /// peer of the room; moves on when that track stops (WHEP).
    FollowRoom,
    /// One named track of one named peer of the room; waits while it is
    /// not live (SDK receivers).
    Track { peer: String, track: String },
    /// Nothing.
    Detached,
}

/// The SFU state machine. All methods take the current time; none blocks.
#[derive(Debug, Default)]
pub struct Sfu {
    rooms: HashMap<RoomId, Room>,
    peers: HashMap<PeerId, Peer>,
    tracks: HashMap<TrackId, Track>,
    receivers: HashMap<ReceiverId, Receiver>,
    mixers: HashMap<PeerId, Mixer>,
    /// When publisher caps are next evaluated.
    next_caps: Option<Instant>,
    /// Send-side bandwidth estimates per receiving peer.
    estimates: HashMap<PeerId, quality::PeerBudget>,
    next_id: u64,
    /// Grows whenever a receiver starts or stops taking a track.
    subscription_epoch: u64,
    outputs: VecDeque<Output>,
}

impl Sfu {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A peer joins a room (created on first join).
    /// A peer that others see (WHIP/WHEP) and that watches nothing.
    pub fn add_peer(&mut self, room: RoomId, name: impl Into<String>) -> PeerId {
        self.add_peer_with(room, name, Visibility::default(), None)
    }

    /// A peer with its own visibility (SDK join modes) and metadata. A
    /// watcher learns at once who is in the room and what they publish.
    pub fn add_peer_with(
        &mut self,
        room: RoomId,
        name: impl Into<String>,
        visibility: Visibility,
        metadata: Option<String>,
    ) -> PeerId {
        let id = PeerId(self.next_id());
        self.rooms.entry(room.clone()).or_default().peers.push(id);
        self.peers.insert(
            id,
            Peer {
                room,
                name: name.into(),
                metadata,
                visibility,
                watching: Vec::new(),
                tracks: Vec::new(),
                receivers: Vec::new(),
                connected: true,
            },
        );
        self.announce_peer_joined(id);
        self.show_room_to(id);
        self.room_changed(id);
        id
    }

    /// A peer leaves: its tracks stop, its receivers go. The room goes with
    /// its last peer.
    pub fn remove_peer(&mut self, peer: PeerId, now: Instant) -> Result<(), SfuError> {
        let p = self.peers.get(&peer).ok_or(SfuError::UnknownPeer(peer))?;
        let tracks = p.tracks.clone();
        let receivers = p.receivers.clone();
        for t in tracks {
            self.unpublish_track(t, now)?;
        }
        for r in receivers {
            self.remove_receiver(r)?;
        }
        self.announce_peer_left(peer);
        self.room_changed(peer);
        self.mixers.remove(&peer);
        self.estimates.remove(&peer);
        if let Some(p) = self.peers.remove(&peer) {
            if let Some(room) = self.rooms.get_mut(&p.room) {
                room.peers.retain(|x| *x != peer);
                if room.peers.is_empty() {
                    self.rooms.remove(&p.room);
                }
            }
        }
        Ok(())
    }

    pub fn peer(&self, peer: PeerId) -> Option<PeerInfo> {
        self.peers.get(&peer).map(|p| PeerInfo {
            room: p.room.clone(),
            name: p.name.clone(),
            tracks: p.tracks.clone(),
            receivers: p.receivers.clone(),
        })
    }

    pub fn room_peers(&self, room: &RoomId) -> &[PeerId] {
        self.rooms
            .get(room)
            .map(|r| r.peers.as_slice())
            .unwrap_or(&[])
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// What a receiver has been sent so far.
    pub fn receiver_counters(&self, receiver: ReceiverId) -> Option<ReceiverCounters> {
        self.receivers.get(&receiver).map(|r| r.counters)
    }

    /// The peer that publishes a track.
    pub fn track_owner(&self, track: TrackId) -> Option<PeerId> {
        self.tracks.get(&track).map(|t| t.owner)
    }

    /// The track a receiver is currently attached to.
    pub fn receiver_source(&self, receiver: ReceiverId) -> Option<TrackId> {
        self.receivers.get(&receiver).and_then(|r| r.source)
    }

    /// A peer starts publishing a track named `name`. Receivers of the room
    /// waiting for it attach: those that want exactly this {peer, track},
    /// and idle ones that follow the room for this kind.
    /// Whether `peer`'s transport can deliver packets (peers are born
    /// connected). A WebRTC session sets it false until ICE and DTLS are up
    /// (packets before that are lost): when it becomes true, its receivers
    /// on GOP-cached tracks start over from the cached keyframe.
    pub fn set_peer_connected(&mut self, peer: PeerId, connected: bool) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.connected == connected {
            return;
        }
        p.connected = connected;
        if !connected {
            return;
        }
        for rid in p.receivers.clone() {
            let Some(r) = self.receivers.get_mut(&rid) else {
                continue;
            };
            let Some(track) = r.source else { continue };
            let cached = self
                .tracks
                .get(&track)
                .is_some_and(|t| t.gop.as_ref().is_some_and(|g| !g.is_empty()));
            if r.paused || !cached {
                continue;
            }
            // What was sent before is lost: start over at the keyframe.
            r.selector = None;
            if let Some(rw) = r.rewriter.as_mut() {
                rw.switch_source();
            }
            self.replay_gop(track, rid);
        }
    }

    fn replay_gop_if_connected(&mut self, track: TrackId, receiver: ReceiverId) {
        let connected = self
            .receivers
            .get(&receiver)
            .and_then(|r| self.peers.get(&r.owner))
            .is_some_and(|p| p.connected);
        if connected {
            self.replay_gop(track, receiver);
        }
    }

    /// Keeps the last group of pictures of a video track whose publisher
    /// cannot be asked for keyframes (RTMP): receivers that start on it
    /// get it at once.
    pub fn cache_gop(&mut self, track: TrackId) -> Result<(), SfuError> {
        let t = self
            .tracks
            .get_mut(&track)
            .ok_or(SfuError::UnknownTrack(track))?;
        if t.kind == MediaKind::Video && t.gop.is_none() {
            t.gop = Some(GopCache::new(GOP_CACHE_MAX_BYTES));
        }
        Ok(())
    }

    pub fn publish_track(
        &mut self,
        peer: PeerId,
        kind: MediaKind,
        name: &str,
        metadata: Option<String>,
        now: Instant,
    ) -> Result<TrackId, SfuError> {
        let room = self
            .peers
            .get(&peer)
            .ok_or(SfuError::UnknownPeer(peer))?
            .room
            .clone();
        let id = TrackId(self.next_id());
        self.tracks.insert(
            id,
            Track {
                owner: peer,
                room: room.clone(),
                kind,
                name: name.to_owned(),
                metadata,
                subscribers: Vec::new(),
                keyframes: TrackKeyframes::new(KEYFRAME_GAP_ANSWERED, KEYFRAME_GAP_UNANSWERED),
                live: false,
                level: LevelMeter::default(),
                meter: None,
                live_layers: LiveLayers::default(),
                dd: None,
                cap: feedback::CapState::default(),
                remote_watch_until: None,
                gop: None,
            },
        );
        if let Some(p) = self.peers.get_mut(&peer) {
            p.tracks.push(id);
        }
        let room_peers = match self.rooms.get_mut(&room) {
            Some(r) => {
                r.tracks.push(id);
                r.peers.clone()
            }
            None => Vec::new(),
        };
        let owner_name = self
            .peers
            .get(&peer)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let waiting: Vec<ReceiverId> = room_peers
            .iter()
            .filter(|p| **p != peer)
            .filter_map(|p| self.peers.get(p))
            .flat_map(|p| p.receivers.iter().copied())
            .filter(|r| {
                self.receivers.get(r).is_some_and(|r| {
                    r.kind == kind
                        && match &r.want {
                            ReceiverSource::FollowRoom => r.source.is_none(),
                            ReceiverSource::Track { peer, track } => {
                                *peer == owner_name && track == name
                            }
                            ReceiverSource::Detached => false,
                        }
                })
            })
            .collect();
        self.announce_track(id, true);
        self.room_changed(peer);
        for r in waiting {
            self.attach(r, id, now);
        }
        Ok(id)
    }

    /// A track stops. Its receivers move to the newest other live track of
    /// the same kind in the room, or wait for one.
    pub fn unpublish_track(&mut self, track: TrackId, now: Instant) -> Result<(), SfuError> {
        if let Some(owner) = self.tracks.get(&track).map(|t| t.owner) {
            self.announce_track(track, false);
            self.room_changed(owner);
            self.subscription_epoch += 1;
        }
        let t = self
            .tracks
            .remove(&track)
            .ok_or(SfuError::UnknownTrack(track))?;
        if let Some(p) = self.peers.get_mut(&t.owner) {
            p.tracks.retain(|x| *x != track);
        }
        if let Some(room) = self.rooms.get_mut(&t.room) {
            room.tracks.retain(|x| *x != track);
        }
        for r in t.subscribers {
            let Some(recv) = self.receivers.get_mut(&r) else {
                continue;
            };
            recv.source = None;
            match self.resolve(r) {
                Some(next) => self.attach(r, next, now),
                None => self.set_state(r, ReceiverState::Inactive),
            }
        }
        Ok(())
    }

    /// A peer adds a receiver of `kind` that plays `source` (see
    /// [`ReceiverSource`]), now and after the room changes.
    pub fn add_receiver(
        &mut self,
        peer: PeerId,
        kind: MediaKind,
        codecs: Vec<Codec>,
        source: ReceiverSource,
        now: Instant,
    ) -> Result<ReceiverId, SfuError> {
        if !self.peers.contains_key(&peer) {
            return Err(SfuError::UnknownPeer(peer));
        }
        let id = ReceiverId(self.next_id());
        self.receivers.insert(
            id,
            Receiver {
                owner: peer,
                kind,
                codecs,
                want: source,
                source: None,
                paused: false,
                rewriter: None,
                selector: None,
                priority: 1,
                limits: LayerLimits::default(),
                allocation: Allocation::Unknown,
                state: ReceiverState::Inactive,
                counters: ReceiverCounters::default(),
                attached_at: None,
                up_backoff: Default::default(),
            },
        );
        if let Some(p) = self.peers.get_mut(&peer) {
            p.receivers.push(id);
        }
        if let Some(track) = self.resolve(id) {
            self.attach(id, track, now);
        }
        Ok(id)
    }

    /// Points a receiver at another source without renegotiation. The
    /// stream it sends stays continuous (sequence numbers, timestamps) and
    /// video resumes at the new source's next keyframe, requested now.
    pub fn set_receiver_source(
        &mut self,
        receiver: ReceiverId,
        source: ReceiverSource,
        now: Instant,
    ) -> Result<(), SfuError> {
        let r = self
            .receivers
            .get_mut(&receiver)
            .ok_or(SfuError::UnknownReceiver(receiver))?;
        r.want = source;
        match self.resolve(receiver) {
            Some(track) => self.attach(receiver, track, now),
            None => self.detach(receiver),
        }
        Ok(())
    }

    /// Pauses or resumes a receiver. Paused, it gets nothing; resumed, it
    /// continues its numbering from where it stopped and video waits for a
    /// keyframe (requested now).
    pub fn set_receiver_paused(
        &mut self,
        receiver: ReceiverId,
        paused: bool,
        now: Instant,
    ) -> Result<(), SfuError> {
        let r = self
            .receivers
            .get_mut(&receiver)
            .ok_or(SfuError::UnknownReceiver(receiver))?;
        if r.paused == paused {
            return Ok(());
        }
        r.paused = paused;
        let owner = r.owner;
        self.subscription_epoch += 1;
        if paused {
            self.set_state(receiver, ReceiverState::Inactive);
            self.reallocate(owner, now);
            return Ok(());
        }
        r.selector = None;
        if let Some(rw) = r.rewriter.as_mut() {
            rw.switch_source();
        }
        if let Some(track) = r.source {
            self.set_state(receiver, ReceiverState::Waiting);
            self.want_keyframe(track, now);
            self.replay_gop_if_connected(track, receiver);
        }
        self.reallocate(owner, now);
        Ok(())
    }

    pub fn remove_receiver(&mut self, receiver: ReceiverId) -> Result<(), SfuError> {
        let r = self
            .receivers
            .remove(&receiver)
            .ok_or(SfuError::UnknownReceiver(receiver))?;
        if let Some(src) = r.source.and_then(|s| self.tracks.get_mut(&s)) {
            src.subscribers.retain(|x| *x != receiver);
            self.subscription_epoch += 1;
        }
        if let Some(p) = self.peers.get_mut(&r.owner) {
            p.receivers.retain(|x| *x != receiver);
        }
        Ok(())
    }

    /// The live track a receiver's wish points at now.
    fn resolve(&self, receiver: ReceiverId) -> Option<TrackId> {
        let r = self.receivers.get(&receiver)?;
        let room = &self.peers.get(&r.owner)?.room;
        let tracks = &self.rooms.get(room)?.tracks;
        match &r.want {
            ReceiverSource::Detached => None,
            ReceiverSource::FollowRoom => tracks.iter().rev().copied().find(|t| {
                self.tracks
                    .get(t)
                    .is_some_and(|t| t.kind == r.kind && t.owner != r.owner)
            }),
            ReceiverSource::Track { peer, track } => tracks.iter().copied().find(|t| {
                self.tracks.get(t).is_some_and(|t| {
                    t.kind == r.kind
                        && t.name == *track
                        && self.peers.get(&t.owner).is_some_and(|p| p.name == *peer)
                })
            }),
        }
    }

    /// Takes a receiver off its track (it keeps its wish).
    fn detach(&mut self, receiver: ReceiverId) {
        let Some(r) = self.receivers.get_mut(&receiver) else {
            return;
        };
        if let Some(old) = r.source.take() {
            if let Some(t) = self.tracks.get_mut(&old) {
                t.subscribers.retain(|x| *x != receiver);
                self.subscription_epoch += 1;
            }
        }
        self.set_state(receiver, ReceiverState::Inactive);
    }

    fn attach(&mut self, receiver: ReceiverId, track: TrackId, now: Instant) {
        if !self.tracks.contains_key(&track) {
            return;
        }
        match self.receivers.get(&receiver) {
            Some(r) if r.source == Some(track) => return,
            Some(_) => {}
            None => return,
        }
        self.detach(receiver);
        let (Some(t), Some(r)) = (
            self.tracks.get_mut(&track),
            self.receivers.get_mut(&receiver),
        ) else {
            return;
        };
        r.source = Some(track);
        r.attached_at = Some(now);
        r.selector = None;
        if let Some(rw) = r.rewriter.as_mut() {
            rw.switch_source();
        }
        t.subscribers.push(receiver);
        self.subscription_epoch += 1;
        let (paused, owner) = (r.paused, r.owner);
        // Its peer's budget is split again (and a new receiver gets its
        // first layer) before the keyframe request names a stream.
        self.reallocate(owner, now);
        if !paused {
            self.set_state(receiver, ReceiverState::Waiting);
            self.want_keyframe(track, now);
            self.replay_gop_if_connected(track, receiver);
        }
    }

    /// Records a receiver's state and tells its peer when it changed.
    fn set_state(&mut self, receiver: ReceiverId, state: ReceiverState) {
        let Some(r) = self.receivers.get_mut(&receiver) else {
            return;
        };
        if r.state != state {
            r.state = state;
            self.outputs.push_back(Output::ReceiverState {
                peer: r.owner,
                receiver,
                state,
            });
        }
    }

    /// A video receiver (re)starts on `track`. Once the track's packets flow,
    /// the receiver's new selector asks for the keyframe of the stream it
    /// needs at its first packet; before that, every stream is asked.
    fn want_keyframe(&mut self, track: TrackId, now: Instant) {
        if self.tracks.get(&track).is_some_and(|t| !t.live) {
            self.request_track_keyframe(track, None, now);
        }
    }

    /// A receiving peer lost its picture (PLI/FIR from its decoder): the
    /// stream it is forwarded is asked (a receiver still waiting for its
    /// first keyframe has asked already).
    pub fn request_keyframe(&mut self, receiver: ReceiverId, now: Instant) -> Result<(), SfuError> {
        let r = self
            .receivers
            .get(&receiver)
            .ok_or(SfuError::UnknownReceiver(receiver))?;
        if let (Some(track), Some(forwarded)) = (
            r.source,
            r.selector.as_ref().and_then(|s| s.forwarded_stream()),
        ) {
            self.request_track_keyframe(track, Some(forwarded), now);
        }
        Ok(())
    }

    /// When [`Sfu::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let keyframes = self
            .tracks
            .values()
            .filter_map(|t| t.keyframes.timeout())
            .min();
        [keyframes, self.mixer_timeout(), self.next_caps]
            .into_iter()
            .flatten()
            .min()
    }

    /// Time passed: repeat keyframe requests that were not answered,
    /// re-evaluate mixers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.mixer_tick(now);
        if self.next_caps.is_some_and(|t| t <= now) {
            self.next_caps = Some(now + feedback::CAP_INTERVAL);
            self.publisher_caps(now);
            self.probe_requests();
        }
        let mut due: Vec<(TrackId, PeerId, Option<u8>)> = Vec::new();
        for (id, t) in self.tracks.iter_mut() {
            due.extend(t.keyframes.poll(now).map(|s| (*id, t.owner, s)));
        }
        due.sort();
        for (track, peer, stream) in due {
            self.outputs.push_back(Output::RequestKeyframe {
                peer,
                track,
                stream,
            });
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pkt(codec: Codec, seq: u64, ts: u32, keyframe: bool, at: Instant) -> MediaPacket {
        MediaPacket {
            codec,
            seq,
            timestamp: ts,
            marker: false,
            keyframe,
            audio_level: None,
            dependency_descriptor: None,
            arrival: at,
            // VP8: a payload descriptor starting a frame (S=1), then the
            // frame header's inverse key bit.
            payload: match codec {
                Codec::Vp8 => Arc::from(&[0x10, u8::from(!keyframe), 0x9d][..]),
                _ => Arc::from(&[1u8, 2, 3][..]),
            },
        }
    }

    /// Outputs other than states (tested on their own).
    fn drain(sfu: &mut Sfu) -> Vec<Output> {
        std::iter::from_fn(|| sfu.poll_output())
            .filter(|o| {
                !matches!(
                    o,
                    Output::ReceiverState { .. }
                        | Output::TrackLive { .. }
                        | Output::RoomChanged { .. }
                )
            })
            .collect()
    }

    #[test]
    fn a_track_goes_live_once_with_its_first_packet() {
        let t0 = Instant::now();
        let mut sfu = Sfu::new();
        let p = sfu.add_peer(RoomId::new("app", "r"), "p");
        let t = sfu
            .publish_track(p, MediaKind::Audio, "mic", None, t0)
            .unwrap();
        let live = |sfu: &mut Sfu| {
            std::iter::from_fn(|| sfu.poll_output())
                .filter(|o| matches!(o, Output::TrackLive { track, .. } if *track == t))
                .count()
        };
        assert_eq!(live(&mut sfu), 0);
        sfu.on_media(t, 0, pkt(Codec::Opus, 1, 0, true, t0))
            .unwrap();
        sfu.on_media(t, 0, pkt(Codec::Opus, 2, 960, true, t0))
            .unwrap();
        assert_eq!(live(&mut sfu), 1);
    }

    #[test]
    fn a_receiver_starting_on_a_gop_cached_track_gets_the_last_gop_at_once() {
        let t0 = Instant::now();
        let room = RoomId::new("app", "r");
        for cached in [true, false] {
            let mut sfu = Sfu::new();
            let p = sfu.add_peer(room.clone(), "rtmp");
            let t = sfu
                .publish_track(p, MediaKind::Video, "video", None, t0)
                .unwrap();
            if cached {
                sfu.cache_gop(t).unwrap();
            }
            for (seq, key) in [(9, false), (10, true), (11, false), (12, false)] {
                sfu.on_media(t, 0, pkt(Codec::Vp8, seq, seq as u32 * 3000, key, t0))
                    .unwrap();
            }
            drain(&mut sfu);
            let v = sfu.add_peer(room.clone(), "viewer");
            let r = sfu
                .add_receiver(
                    v,
                    MediaKind::Video,
                    ALL.to_vec(),
                    ReceiverSource::FollowRoom,
                    t0,
                )
                .unwrap();
            let sent = |sfu: &mut Sfu| -> Vec<(u64, u32)> {
                drain(sfu)
                    .into_iter()
                    .filter_map(|o| match o {
                        Output::Media {
                            receiver, packet, ..
                        } if receiver == r => Some((packet.seq, packet.timestamp)),
                        _ => None,
                    })
                    .collect()
            };
            let replayed = sent(&mut sfu);
            sfu.on_media(t, 0, pkt(Codec::Vp8, 13, 39000, false, t0))
                .unwrap();
            let live = sent(&mut sfu);
            if cached {
                // The GOP from keyframe 10, then live packet 13, numbered on.
                assert_eq!(replayed.len(), 3, "{replayed:?}");
                assert_eq!(live.len(), 1);
                let all: Vec<(u64, u32)> = replayed.into_iter().chain(live).collect();
                for w in all.windows(2) {
                    assert_eq!(w[1].0, w[0].0 + 1, "contiguous: {all:?}");
                    assert_eq!(w[1].1.wrapping_sub(w[0].1), 3000, "{all:?}");
                }
                // A second receiver gets the same GOP, the first nothing again.
                let v2 = sfu.add_peer(room.clone(), "viewer2");
                sfu.add_receiver(
                    v2,
                    MediaKind::Video,
                    ALL.to_vec(),
                    ReceiverSource::FollowRoom,
                    t0,
                )
                .unwrap();
                let media: Vec<Output> = drain(&mut sfu)
                    .into_iter()
                    .filter(|o| matches!(o, Output::Media { .. }))
                    .collect();
                assert_eq!(media.len(), 4, "keyframe 10..13 to the new receiver only");
                assert!(media
                    .iter()
                    .all(|o| matches!(o, Output::Media { receiver, .. } if *receiver != r)));
            } else {
                // Without the cache: nothing until the next keyframe.
                assert!(replayed.is_empty() && live.is_empty());
            }
        }
    }

    fn states(sfu: &mut Sfu) -> Vec<ReceiverState> {
        std::iter::from_fn(|| sfu.poll_output())
            .filter_map(|o| match o {
                Output::ReceiverState { state, .. } => Some(state),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn receivers_report_waiting_active_inactive() {
        let t0 = Instant::now();
        let room = RoomId::new("app", "r");
        let mut sfu = Sfu::new();
        let v = sfu.add_peer(room.clone(), "v");
        let rv = sfu
            .add_receiver(
                v,
                MediaKind::Video,
                ALL.to_vec(),
                ReceiverSource::FollowRoom,
                t0,
            )
            .unwrap();
        assert!(
            states(&mut sfu).is_empty(),
            "born inactive, nothing to tell"
        );
        let p = sfu.add_peer(room.clone(), "p");
        let t = sfu
            .publish_track(p, MediaKind::Video, "video", None, t0)
            .unwrap();
        assert_eq!(states(&mut sfu), vec![ReceiverState::Waiting]);
        sfu.on_media(t, 0, pkt(Codec::Vp8, 1, 0, false, t0))
            .unwrap();
        assert!(states(&mut sfu).is_empty(), "still waiting for a keyframe");
        sfu.on_media(t, 0, pkt(Codec::Vp8, 2, 0, true, t0)).unwrap();
        sfu.on_media(t, 0, pkt(Codec::Vp8, 3, 0, false, t0))
            .unwrap();
        assert_eq!(states(&mut sfu), vec![ReceiverState::Active]);
        let c = sfu.receiver_counters(rv).unwrap();
        assert_eq!((c.packets, c.bytes), (2, 6));
        sfu.set_receiver_paused(rv, true, t0).unwrap();
        assert_eq!(states(&mut sfu), vec![ReceiverState::Inactive]);
        sfu.set_receiver_paused(rv, false, t0).unwrap();
        assert_eq!(states(&mut sfu), vec![ReceiverState::Waiting]);
        sfu.unpublish_track(t, t0).unwrap();
        assert_eq!(states(&mut sfu), vec![ReceiverState::Inactive]);
    }

    fn media_seqs(out: &[Output], to: ReceiverId) -> Vec<u64> {
        out.iter()
            .filter_map(|o| match o {
                Output::Media {
                    receiver, packet, ..
                } if *receiver == to => Some(packet.seq),
                _ => None,
            })
            .collect()
    }

    const ALL: [Codec; 2] = [Codec::Opus, Codec::Vp8];

    #[test]
    fn viewer_before_publisher_waits_then_gets_keyframe_first() {
        let t0 = Instant::now();
        let room = RoomId::new("app", "r");
        let mut sfu = Sfu::new();
        let viewer = sfu.add_peer(room.clone(), "v");
        let rv = sfu
            .add_receiver(
                viewer,
                MediaKind::Video,
                ALL.to_vec(),
                ReceiverSource::FollowRoom,
                t0,
            )
            .unwrap();
        assert!(drain(&mut sfu).is_empty());

        let publisher = sfu.add_peer(room.clone(), "p");
        let track = sfu
            .publish_track(publisher, MediaKind::Video, "video", None, t0)
            .unwrap();
        assert_eq!(sfu.receiver_source(rv), Some(track));
        let out = drain(&mut sfu);
        assert!(matches!(
            out.as_slice(),
            [Output::RequestKeyframe { peer, track: t, .. }] if *peer == publisher && *t == track
        ));

        // Delta frames are held back until a keyframe arrives.
        sfu.on_media(track, 0, pkt(Codec::Vp8, 100, 0, false, t0))
            .unwrap();
        assert!(drain(&mut sfu).is_empty());
        sfu.on_media(track, 0, pkt(Codec::Vp8, 101, 3000, true, t0))
            .unwrap();
        sfu.on_media(track, 0, pkt(Codec::Vp8, 102, 3000, false, t0))
            .unwrap();
        assert_eq!(media_seqs(&drain(&mut sfu), rv), vec![1, 2]);
    }

    #[test]
    fn unanswered_keyframe_request_is_repeated_and_aggregated() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let room = RoomId::new("app", "r");
        let mut sfu = Sfu::new();
        let publisher = sfu.add_peer(room.clone(), "p");
        let track = sfu
            .publish_track(publisher, MediaKind::Video, "video", None, t0)
            .unwrap();
        for i in 0..3 {
            let v = sfu.add_peer(room.clone(), format!("v{i}"));
            sfu.add_receiver(
                v,
                MediaKind::Video,
                ALL.to_vec(),
                ReceiverSource::FollowRoom,
                t0 + ms(i),
            )
            .unwrap();
        }
        let reqs = |o: &[Output]| {
            o.iter()
                .filter(|o| matches!(o, Output::RequestKeyframe { .. }))
                .count()
        };
        assert_eq!(reqs(&drain(&mut sfu)), 1);
        assert_eq!(sfu.poll_timeout(), Some(t0 + ms(500)));
        sfu.handle_timeout(t0 + ms(500));
        assert_eq!(reqs(&drain(&mut sfu)), 1);
        sfu.on_media(track, 0, pkt(Codec::Vp8, 1, 0, true, t0 + ms(600)))
            .unwrap();
        // Answered: no more repeats; only the publisher-cap evaluation is due.
        assert_eq!(
            sfu.poll_timeout(),
            Some(t0 + ms(600) + feedback::CAP_INTERVAL)
        );
        assert_eq!(drain(&mut sfu).len(), 3);
    }

    #[test]
    fn viewers_follow_a_new_publisher_with_continuous_numbering() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let room = RoomId::new("app", "r");
        let mut sfu = Sfu::new();
        let p1 = sfu.add_peer(room.clone(), "p1");
        let a1 = sfu
            .publish_track(p1, MediaKind::Audio, "audio", None, t0)
            .unwrap();
        let viewer = sfu.add_peer(room.clone(), "v");
        let ra = sfu
            .add_receiver(
                viewer,
                MediaKind::Audio,
                ALL.to_vec(),
                ReceiverSource::FollowRoom,
                t0,
            )
            .unwrap();
        for i in 0..3 {
            sfu.on_media(a1, 0, pkt(Codec::Opus, 50 + i, 960 * i as u32, true, t0))
                .unwrap();
        }
        assert_eq!(media_seqs(&drain(&mut sfu), ra), vec![1, 2, 3]);

        sfu.remove_peer(p1, t0 + ms(20)).unwrap();
        assert_eq!(sfu.receiver_source(ra), None);
        let p2 = sfu.add_peer(room.clone(), "p2");
        let a2 = sfu
            .publish_track(p2, MediaKind::Audio, "audio", None, t0 + ms(1000))
            .unwrap();
        assert_eq!(sfu.receiver_source(ra), Some(a2));
        sfu.on_media(a2, 0, pkt(Codec::Opus, 9000, 7, true, t0 + ms(1000)))
            .unwrap();
        let out = drain(&mut sfu);
        assert_eq!(media_seqs(&out, ra), vec![4]);
        let Output::Media { packet, .. } = &out[0] else {
            panic!("expected media");
        };
        assert_eq!(packet.timestamp, 960 * 2 + 48_000);
    }

    #[test]
    fn a_peer_never_receives_itself_and_codecs_are_respected() {
        let t0 = Instant::now();
        let room = RoomId::new("app", "r");
        let mut sfu = Sfu::new();
        let p = sfu.add_peer(room.clone(), "p");
        let rv = sfu
            .add_receiver(
                p,
                MediaKind::Video,
                vec![Codec::H264],
                ReceiverSource::FollowRoom,
                t0,
            )
            .unwrap();
        let t = sfu
            .publish_track(p, MediaKind::Video, "video", None, t0)
            .unwrap();
        assert_eq!(sfu.receiver_source(rv), None);

        let v = sfu.add_peer(room.clone(), "v");
        let rv2 = sfu
            .add_receiver(
                v,
                MediaKind::Video,
                vec![Codec::H264],
                ReceiverSource::FollowRoom,
                t0,
            )
            .unwrap();
        assert_eq!(sfu.receiver_source(rv2), Some(t));
        drain(&mut sfu);
        sfu.on_media(t, 0, pkt(Codec::Vp8, 1, 0, true, t0)).unwrap();
        assert!(drain(&mut sfu).is_empty());
    }

    #[test]
    fn rooms_are_isolated_and_vanish_with_their_last_peer() {
        let t0 = Instant::now();
        let mut sfu = Sfu::new();
        let a = sfu.add_peer(RoomId::new("app", "a"), "p");
        let b = sfu.add_peer(RoomId::new("app", "b"), "v");
        let other_app = sfu.add_peer(RoomId::new("other", "a"), "v");
        sfu.publish_track(a, MediaKind::Audio, "audio", None, t0)
            .unwrap();
        let rb = sfu
            .add_receiver(
                b,
                MediaKind::Audio,
                ALL.to_vec(),
                ReceiverSource::FollowRoom,
                t0,
            )
            .unwrap();
        let ro = sfu
            .add_receiver(
                other_app,
                MediaKind::Audio,
                ALL.to_vec(),
                ReceiverSource::FollowRoom,
                t0,
            )
            .unwrap();
        assert_eq!(sfu.receiver_source(rb), None);
        assert_eq!(sfu.receiver_source(ro), None);
        assert_eq!(sfu.room_count(), 3);
        sfu.remove_peer(a, t0).unwrap();
        sfu.remove_peer(b, t0).unwrap();
        assert_eq!(sfu.room_count(), 1);
        assert_eq!(sfu.remove_peer(a, t0), Err(SfuError::UnknownPeer(a)));
    }

    fn video_pkt(seq: u64, key: bool, at: Instant) -> MediaPacket {
        pkt(Codec::Vp8, seq, seq as u32 * 3000, key, at)
    }

    #[test]
    fn named_source_waits_switches_and_pauses_without_gaps() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let room = RoomId::new("app", "r");
        let mut sfu = Sfu::new();
        let viewer = sfu.add_peer(room.clone(), "v");
        let want_cam = ReceiverSource::Track {
            peer: "alice".into(),
            track: "camera".into(),
        };
        let rv = sfu
            .add_receiver(viewer, MediaKind::Video, ALL.to_vec(), want_cam.clone(), t0)
            .unwrap();
        let alice = sfu.add_peer(room.clone(), "alice");
        let bob = sfu.add_peer(room.clone(), "bob");
        // A track of another name or peer does not satisfy it.
        let screen = sfu
            .publish_track(alice, MediaKind::Video, "screen", None, t0)
            .unwrap();
        let bob_cam = sfu
            .publish_track(bob, MediaKind::Video, "camera", None, t0)
            .unwrap();
        assert_eq!(sfu.receiver_source(rv), None);
        let cam = sfu
            .publish_track(alice, MediaKind::Video, "camera", None, t0)
            .unwrap();
        assert_eq!(sfu.receiver_source(rv), Some(cam));
        drain(&mut sfu);
        sfu.on_media(cam, 0, video_pkt(10, true, t0)).unwrap();
        sfu.on_media(cam, 0, video_pkt(11, false, t0)).unwrap();
        assert_eq!(media_seqs(&drain(&mut sfu), rv), vec![1, 2]);

        // Switch to bob's camera: nothing from alice any more, keyframe asked of bob.
        let to_bob = ReceiverSource::Track {
            peer: "bob".into(),
            track: "camera".into(),
        };
        sfu.set_receiver_source(rv, to_bob, t0 + ms(100)).unwrap();
        let out = drain(&mut sfu);
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::RequestKeyframe { track, .. } if *track == bob_cam)));
        sfu.on_media(cam, 0, video_pkt(12, false, t0 + ms(110)))
            .unwrap();
        sfu.on_media(bob_cam, 0, video_pkt(500, false, t0 + ms(110)))
            .unwrap();
        assert!(
            drain(&mut sfu).is_empty(),
            "waits for bob's keyframe, drops alice"
        );
        sfu.on_media(bob_cam, 0, video_pkt(501, true, t0 + ms(120)))
            .unwrap();
        assert_eq!(media_seqs(&drain(&mut sfu), rv), vec![3]);

        // Pause: nothing; resume: keyframe first, numbering continues.
        sfu.set_receiver_paused(rv, true, t0 + ms(200)).unwrap();
        sfu.on_media(bob_cam, 0, video_pkt(502, true, t0 + ms(210)))
            .unwrap();
        assert!(drain(&mut sfu).is_empty());
        sfu.set_receiver_paused(rv, false, t0 + ms(300)).unwrap();
        // Bob's camera is live: the receiver's selector asks for the keyframe
        // of the stream it needs at the next packet.
        drain(&mut sfu);
        sfu.on_media(bob_cam, 0, video_pkt(600, false, t0 + ms(310)))
            .unwrap();
        assert!(drain(&mut sfu).iter().any(|o| matches!(o,
            Output::RequestKeyframe { track, stream: Some(0), .. } if *track == bob_cam)));
        sfu.on_media(bob_cam, 0, video_pkt(601, true, t0 + ms(320)))
            .unwrap();
        assert_eq!(media_seqs(&drain(&mut sfu), rv), vec![4]);

        // Bob's camera stops: the receiver waits (no fallback to other tracks).
        sfu.unpublish_track(bob_cam, t0 + ms(400)).unwrap();
        assert_eq!(sfu.receiver_source(rv), None);
        sfu.on_media(screen, 0, video_pkt(1, true, t0 + ms(410)))
            .unwrap();
        assert!(drain(&mut sfu).is_empty());
        // ... and takes it back when bob publishes it again.
        let bob_cam2 = sfu
            .publish_track(bob, MediaKind::Video, "camera", None, t0 + ms(500))
            .unwrap();
        assert_eq!(sfu.receiver_source(rv), Some(bob_cam2));
        drain(&mut sfu);
        // Detached: nothing at all.
        sfu.set_receiver_source(rv, ReceiverSource::Detached, t0 + ms(600))
            .unwrap();
        assert_eq!(sfu.receiver_source(rv), None);
        sfu.on_media(bob_cam2, 0, video_pkt(1, true, t0 + ms(610)))
            .unwrap();
        assert!(drain(&mut sfu).is_empty());
        // Unknown receivers are an error, not a panic.
        assert!(sfu
            .set_receiver_source(ReceiverId(999), want_cam, t0)
            .is_err());
        assert!(sfu.set_receiver_paused(ReceiverId(999), true, t0).is_err());
    }
}
