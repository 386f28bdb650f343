//! The SDK protocol (wire-compatible with atm0s-media-server v0.2) on a
//! WebRTC session: `ConnectRequest.tracks` mapped onto m-lines, control
//! requests over the data channel, room events back to the client. The facts
//! it follows are in docs/sdk-protocol.md.

use std::time::{Duration, Instant};

use mediamesh_core::layers::{alloc::LayerLimits, Layer};
use mediamesh_core::{
    Codec, MediaKind, ReceiverId, ReceiverSource, ReceiverState, RoomEvent, RoomId, TrackId,
    Visibility,
};
use mediamesh_protocol::session::{self as proto, request, response, server_event};
use mediamesh_protocol::{gateway, shared, Message};
use mediamesh_webrtc::{Mid, Role, Session};

use super::{Caller, Conn, Key, Worker, WorkerError};
use crate::token::{self, TokenKind};

/// Error codes the server puts in `Response.error.code`.
pub(super) mod code {
    pub const BAD_REQUEST: u32 = 400;
    pub const FORBIDDEN: u32 = 403;
    pub const NOT_FOUND: u32 = 404;
    pub const NOT_JOINED: u32 = 409;
}

/// The SDK side of one connection.
#[derive(Debug, Default)]
pub struct SdkState {
    joined: Option<Joined>,
    senders: Vec<SenderSlot>,
    receivers: Vec<ReceiverSlot>,
    /// Server event counter.
    seq: u32,
    /// Events queued before the data channel opened.
    outbox: Vec<Vec<u8>>,
    /// Message channels this peer subscribes to (labels).
    subscribed: Vec<String>,
    /// Mixer output receivers by slot (`features.mixer.outputs`).
    pub(super) mixer_outputs: Vec<String>,
}

#[derive(Debug, Clone)]
struct Joined {
    room: String,
    peer: String,
}

#[derive(Debug)]
struct SenderSlot {
    name: String,
    kind: MediaKind,
    mid: Option<Mid>,
    /// Attached: the track's metadata (itself optional).
    source: Option<Option<String>>,
    track: Option<TrackId>,
}

#[derive(Debug)]
struct ReceiverSlot {
    name: String,
    kind: MediaKind,
    mid: Option<Mid>,
    want: ReceiverSource,
    /// Known once the m-line is connected.
    codecs: Option<Vec<Codec>>,
    receiver: Option<ReceiverId>,
    /// Bytes sent at the last stats report.
    reported_bytes: u64,
    /// Priority and layer limits (from the connect request, attach or config).
    config: Option<shared::receiver::Config>,
}

fn kind_of(k: i32) -> MediaKind {
    if k == shared::Kind::Video as i32 {
        MediaKind::Video
    } else {
        MediaKind::Audio
    }
}

fn kind_to_proto(k: MediaKind) -> i32 {
    match k {
        MediaKind::Audio => shared::Kind::Audio as i32,
        MediaKind::Video => shared::Kind::Video as i32,
    }
}

fn visibility(join: &proto::RoomJoin) -> Visibility {
    let p = join.publish.unwrap_or_default();
    let s = join.subscribe.unwrap_or_default();
    Visibility {
        announce_peer: p.peer,
        announce_tracks: p.tracks,
        watch_peers: s.peers,
        watch_tracks: s.tracks,
    }
}

fn source_of(s: Option<shared::receiver::Source>) -> ReceiverSource {
    match s {
        Some(s) => ReceiverSource::Track {
            peer: s.peer,
            track: s.track,
        },
        None => ReceiverSource::Detached,
    }
}

impl SdkState {
    /// Takes in the client's full list of senders and receivers: new names
    /// are new slots with the state they carry; known names keep theirs.
    fn reconcile(&mut self, tracks: Option<shared::Tracks>) {
        let Some(tracks) = tracks else { return };
        for s in tracks.senders {
            if self.senders.iter().any(|x| x.name == s.name) {
                continue;
            }
            let source = s.state.and_then(|st| st.source).map(|src| src.metadata);
            self.senders.push(SenderSlot {
                name: s.name,
                kind: kind_of(s.kind),
                mid: None,
                source,
                track: None,
            });
        }
        for r in tracks.receivers {
            if self.receivers.iter().any(|x| x.name == r.name) {
                continue;
            }
            let config = r.state.as_ref().and_then(|st| st.config);
            let want = source_of(r.state.and_then(|st| st.source));
            self.receivers.push(ReceiverSlot {
                config,
                name: r.name,
                kind: kind_of(r.kind),
                mid: None,
                want,
                codecs: None,
                receiver: None,
                reported_bytes: 0,
            });
        }
    }

    /// The i-th m-line of a kind and direction is the i-th slot of that kind.
    fn map_lines(&mut self, session: &Session) {
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let sends: Vec<Mid> = session
                .lines()
                .iter()
                .filter(|l| l.kind == kind && l.client_sends)
                .map(|l| l.mid)
                .collect();
            let slots = self.senders.iter_mut().filter(|s| s.kind == kind);
            for (slot, mid) in slots.zip(sends) {
                slot.mid = Some(mid);
            }
            let recvs: Vec<Mid> = session
                .lines()
                .iter()
                .filter(|l| l.kind == kind && !l.client_sends)
                .map(|l| l.mid)
                .collect();
            let slots = self.receivers.iter_mut().filter(|s| s.kind == kind);
            for (slot, mid) in slots.zip(recvs) {
                slot.mid = Some(mid);
            }
        }
    }

    pub(super) fn has_audio_receiver(&self, name: &str) -> bool {
        self.receivers
            .iter()
            .any(|r| r.name == name && r.kind == MediaKind::Audio)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }
}

pub(super) fn respond(req_id: u32, body: response::Body) -> server_event::Event {
    server_event::Event::Response(proto::Response {
        req_id,
        body: Some(body),
    })
}

pub(super) fn error(req_id: u32, code: u32, message: impl Into<String>) -> server_event::Event {
    respond(
        req_id,
        response::Body::Error(shared::Error {
            code,
            message: message.into(),
        }),
    )
}

fn session_ok(req_id: u32, action: response::session::Action) -> server_event::Event {
    respond(
        req_id,
        response::Body::Session(response::Session {
            action: Some(action),
        }),
    )
}

impl Worker {
    /// `POST /webrtc/connect`.
    pub(super) fn sdk_connect(
        &mut self,
        caller: Caller,
        req: gateway::ConnectRequest,
        now: Instant,
    ) -> Result<gateway::ConnectResponse, WorkerError> {
        if self.draining {
            return Err(WorkerError::Unavailable);
        }
        if let Some(j) = &req.join {
            check_join(&caller, j)?;
        }
        let (session, answer) =
            Session::accept(Role::Sdk, &req.sdp, self.candidate, &self.identity, now)
                .map_err(|e| WorkerError::BadRequest(e.to_string()))?;
        let mut sdk = SdkState::default();
        sdk.reconcile(req.tracks);
        sdk.map_lines(&session);
        let key = self.insert_conn(
            session,
            None,
            &caller,
            caller.peer.clone().unwrap_or_default(),
            Some(sdk),
        );
        if let Some(join) = req.join {
            self.sdk_join(key, &caller.app, join, now);
        }
        let id = self
            .conns
            .get(&key)
            .map(|c| c.id.clone())
            .unwrap_or_default();
        Ok(gateway::ConnectResponse {
            conn_id: id,
            sdp: answer,
            ice_lite: false,
        })
    }

    /// `POST /webrtc/{conn}/ice-candidate`: the connection id is the secret.
    pub(super) fn sdk_ice(
        &mut self,
        id: &str,
        req: gateway::RemoteIceRequest,
    ) -> Result<gateway::RemoteIceResponse, WorkerError> {
        let key = *self.by_id.get(id).ok_or(WorkerError::NotFound)?;
        let conn = self.conns.get_mut(&key).ok_or(WorkerError::NotFound)?;
        if conn.sdk.is_none() {
            return Err(WorkerError::NotFound);
        }
        let frag = mediamesh_webrtc::SdpFrag {
            candidates: req
                .candidates
                .into_iter()
                .filter(|c| !c.trim().is_empty())
                .collect(),
            ..Default::default()
        };
        let added = frag.candidates.len() as u32;
        conn.session
            .apply_sdpfrag(&frag)
            .map_err(|e| WorkerError::BadRequest(e.to_string()))?;
        self.mark(key);
        Ok(gateway::RemoteIceResponse { added })
    }

    /// `POST /webrtc/{conn}/restart-ice`: a new offer (new ICE credentials)
    /// on the live session; everything else stays.
    pub(super) fn sdk_restart_ice(
        &mut self,
        id: &str,
        caller: &Caller,
        req: gateway::ConnectRequest,
    ) -> Result<gateway::ConnectResponse, WorkerError> {
        let key = *self.by_id.get(id).ok_or(WorkerError::NotFound)?;
        let conn = self.conns.get_mut(&key).ok_or(WorkerError::NotFound)?;
        if conn.sdk.is_none() || conn.app != caller.app {
            return Err(WorkerError::NotFound);
        }
        let answer = conn
            .session
            .accept_update(&req.sdp)
            .map_err(|e| WorkerError::BadRequest(e.to_string()))?;
        let ufrag = conn.session.local_ufrag().to_owned();
        tracing::info!(session = %conn.id, peer = %conn.peer_name, "ICE restart");
        self.demux.add_ufrag(&ufrag, key);
        self.mark(key);
        Ok(gateway::ConnectResponse {
            conn_id: id.to_owned(),
            sdp: answer,
            ice_lite: false,
        })
    }

    /// Joins the room: a core peer with the join's visibility; senders with
    /// a source are published, connected receivers created.
    fn sdk_join(&mut self, key: Key, app: &str, join: proto::RoomJoin, now: Instant) {
        // One session per peer: an older session of the same peer in this
        // room (a reloaded tab, a second device) leaves and is closed.
        let room = RoomId::new(app, &join.room);
        let older: Vec<Key> = self
            .sfu
            .room_peers(&room)
            .iter()
            .filter(|p| self.sfu.peer(**p).is_some_and(|i| i.name == join.peer))
            .filter_map(|p| self.by_peer.get(p).copied())
            .filter(|k| *k != key)
            .collect();
        for old in older {
            tracing::info!(peer = %join.peer, room = %join.room, "replaced by a newer session of the same peer");
            self.sdk_leave(old, now);
            if let Some(c) = self.conns.get_mut(&old) {
                c.session.close();
            }
            self.mark(old);
        }
        let vis = visibility(&join);
        let peer = self.sfu.add_peer_with(
            RoomId::new(app, &join.room),
            &join.peer,
            vis,
            join.metadata.clone(),
        );
        self.by_peer.insert(peer, key);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        conn.peer = Some(peer);
        let connected = conn.session.is_connected();
        self.sfu.set_peer_connected(peer, connected);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        conn.room = join.room.clone();
        conn.peer_name = join.peer.clone();
        if let Some(sdk) = conn.sdk.as_mut() {
            sdk.joined = Some(Joined {
                room: join.room,
                peer: join.peer,
            });
        }
        let senders: Vec<String> = conn
            .sdk
            .as_ref()
            .map(|s| s.senders.iter().map(|x| x.name.clone()).collect())
            .unwrap_or_default();
        for name in senders {
            self.sdk_publish(key, &name, now);
        }
        let receivers: Vec<String> = conn_sdk(&self.conns, key)
            .map(|s| s.receivers.iter().map(|x| x.name.clone()).collect())
            .unwrap_or_default();
        for name in receivers {
            self.sdk_ensure_receiver(key, &name, now);
        }
        self.mixer_join(key, peer, join.features.and_then(|f| f.mixer), now);
    }

    /// Leaves the room: the core peer goes (its tracks stop and receivers
    /// go, watchers are told); the connection and its slots stay.
    fn sdk_leave(&mut self, key: Key, now: Instant) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let Some(peer) = conn.peer.take() else { return };
        if let Some(sdk) = conn.sdk.as_mut() {
            sdk.joined = None;
            sdk.subscribed.clear();
            for s in &mut sdk.senders {
                if let (Some(mid), Some(_)) = (s.mid, s.track.take()) {
                    conn.session.unbind_track(mid);
                }
            }
            for r in &mut sdk.receivers {
                r.receiver = None;
            }
        }
        self.by_peer.remove(&peer);
        let _ = self.sfu.remove_peer(peer, now);
    }

    /// Publishes a sender when it has a source, an m-line and a room.
    fn sdk_publish(&mut self, key: Key, name: &str, now: Instant) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let Some(peer) = conn.peer else { return };
        let Some(sdk) = conn.sdk.as_mut() else { return };
        let Some(slot) = sdk.senders.iter_mut().find(|s| s.name == name) else {
            return;
        };
        let (Some(mid), Some(meta), None) = (slot.mid, slot.source.clone(), slot.track) else {
            return;
        };
        match self
            .sfu
            .publish_track(peer, slot.kind, &slot.name, meta, now)
        {
            Ok(track) => {
                slot.track = Some(track);
                conn.session.bind_track(mid, track);
            }
            Err(e) => tracing::warn!("sdk publish: {e}"),
        }
    }

    fn sdk_unpublish(&mut self, key: Key, name: &str, now: Instant) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let Some(sdk) = conn.sdk.as_mut() else { return };
        let Some(slot) = sdk.senders.iter_mut().find(|s| s.name == name) else {
            return;
        };
        if let (Some(mid), Some(track)) = (slot.mid, slot.track.take()) {
            conn.session.unbind_track(mid);
            let _ = self.sfu.unpublish_track(track, now);
            let name = slot.name.clone();
            self.sdk_send_sender_state(key, name, false);
        }
    }

    /// Creates the core receiver of a slot once its m-line is connected and
    /// the peer is in a room.
    fn sdk_ensure_receiver(&mut self, key: Key, name: &str, now: Instant) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let Some(peer) = conn.peer else { return };
        let Some(sdk) = conn.sdk.as_mut() else { return };
        let Some(slot) = sdk.receivers.iter_mut().find(|s| s.name == name) else {
            return;
        };
        let (Some(mid), Some(codecs), None) = (slot.mid, slot.codecs.clone(), slot.receiver) else {
            return;
        };
        match self
            .sfu
            .add_receiver(peer, slot.kind, codecs, slot.want.clone(), now)
        {
            Ok(r) => {
                slot.receiver = Some(r);
                conn.session.bind_receiver(mid, r);
                if let Some(c) = slot.config {
                    self.apply_receiver_config(r, c, now);
                }
            }
            Err(e) => tracing::warn!("sdk receiver: {e}"),
        }
    }

    /// A sender m-line of an SDK session exists (at connect or UpdateSdp).
    pub(super) fn sdk_on_sender_line(&mut self, key: Key, mid: Mid, now: Instant) {
        let name = conn_sdk(&self.conns, key)
            .and_then(|s| s.senders.iter().find(|x| x.mid == Some(mid)))
            .map(|s| s.name.clone());
        if let Some(name) = name {
            self.sdk_publish(key, &name, now);
        }
    }

    /// A receiver m-line of an SDK session is connected.
    pub(super) fn sdk_on_receiver_line(
        &mut self,
        key: Key,
        mid: Mid,
        codecs: Vec<Codec>,
        now: Instant,
    ) {
        let name = {
            let Some(sdk) = self.conns.get_mut(&key).and_then(|c| c.sdk.as_mut()) else {
                return;
            };
            let Some(slot) = sdk.receivers.iter_mut().find(|x| x.mid == Some(mid)) else {
                return;
            };
            slot.codecs = Some(codecs);
            slot.name.clone()
        };
        self.sdk_ensure_receiver(key, &name, now);
    }

    /// The data channel opened: flush what waited for it.
    pub(super) fn sdk_on_channel_open(&mut self, key: Key) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let Some(sdk) = conn.sdk.as_mut() else { return };
        for msg in std::mem::take(&mut sdk.outbox) {
            conn.session.send_channel(&msg);
        }
        self.mark(key);
    }

    /// Sends one server event on the connection's data channel (queued
    /// until the channel opens).
    pub(super) fn sdk_send(&mut self, key: Key, event: server_event::Event) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let Some(sdk) = conn.sdk.as_mut() else { return };
        let msg = proto::ServerEvent {
            seq: sdk.next_seq(),
            event: Some(event),
        }
        .encode_to_vec();
        if !conn.session.send_channel(&msg) {
            sdk.outbox.push(msg);
        }
        self.mark(key);
    }

    /// A room event from the core for an SDK peer.
    pub(super) fn sdk_room_event(&mut self, key: Key, event: RoomEvent) {
        use server_event::room::{
            Event as E, PeerJoined, PeerLeaved, PeerUpdated, TrackStarted, TrackStopped,
            TrackUpdated,
        };
        let e = match event {
            RoomEvent::PeerJoined { peer, metadata } => E::PeerJoined(PeerJoined {
                peer,
                metadata,
                extra_data: None,
            }),
            RoomEvent::PeerLeft { peer } => E::PeerLeaved(PeerLeaved { peer }),
            RoomEvent::PeerUpdated { peer, metadata } => {
                E::PeerUpdated(PeerUpdated { peer, metadata })
            }
            RoomEvent::TrackUpdated {
                peer,
                track,
                kind,
                metadata,
            } => E::TrackUpdated(TrackUpdated {
                peer,
                track,
                kind: kind_to_proto(kind),
                metadata,
            }),
            RoomEvent::TrackStarted {
                peer,
                track,
                kind,
                metadata,
            } => E::TrackStarted(TrackStarted {
                peer,
                track,
                kind: kind_to_proto(kind),
                metadata,
            }),
            RoomEvent::TrackStopped { peer, track, kind } => E::TrackStopped(TrackStopped {
                peer,
                track,
                kind: kind_to_proto(kind),
            }),
        };
        self.sdk_send(
            key,
            server_event::Event::Room(server_event::Room { event: Some(e) }),
        );
    }

    /// A sender's state for the client: active once its media arrives,
    /// inactive when it stops.
    pub(super) fn sdk_sender_state(&mut self, key: Key, track: TrackId, active: bool) {
        if let Some(name) = self.sdk_sender_name(key, track) {
            self.sdk_send_sender_state(key, name, active);
        }
    }

    /// The name of the SDK sender slot that publishes `track`.
    fn sdk_sender_name(&self, key: Key, track: TrackId) -> Option<String> {
        conn_sdk(&self.conns, key)
            .and_then(|s| s.senders.iter().find(|x| x.track == Some(track)))
            .map(|x| x.name.clone())
    }

    /// The simulcast streams a publication's subscribers may want (see
    /// `Output::PublisherLayers`); publishers without our SDK never hear it.
    pub(super) fn sdk_sender_layers(&mut self, key: Key, track: TrackId, max_spatial: u8) {
        let Some(name) = self.sdk_sender_name(key, track) else {
            return;
        };
        let event = server_event::Event::Sender(server_event::Sender {
            name,
            event: Some(server_event::sender::Event::Layers(
                server_event::sender::Layers {
                    max_spatial: u32::from(max_spatial),
                },
            )),
        });
        self.sdk_send(key, event);
    }

    fn sdk_send_sender_state(&mut self, key: Key, name: String, active: bool) {
        let status = if active {
            shared::sender::Status::Active
        } else {
            shared::sender::Status::Inactive
        };
        let event = server_event::Event::Sender(server_event::Sender {
            name,
            event: Some(server_event::sender::Event::State(
                server_event::sender::State {
                    status: status as i32,
                },
            )),
        });
        self.sdk_send(key, event);
    }

    /// A receiver's state for the client (`Receiver{name, state{status}}`).
    pub(super) fn sdk_receiver_state(
        &mut self,
        key: Key,
        receiver: ReceiverId,
        state: ReceiverState,
    ) {
        let Some(name) = conn_sdk(&self.conns, key)
            .and_then(|s| s.receivers.iter().find(|r| r.receiver == Some(receiver)))
            .map(|r| r.name.clone())
        else {
            return;
        };
        let status = match state {
            ReceiverState::Waiting => shared::receiver::Status::Waiting,
            ReceiverState::Active => shared::receiver::Status::Active,
            ReceiverState::Inactive => shared::receiver::Status::Inactive,
        };
        let event = server_event::Event::Receiver(server_event::Receiver {
            name,
            event: Some(server_event::receiver::Event::State(
                server_event::receiver::State {
                    status: status as i32,
                },
            )),
        });
        self.sdk_send(key, event);
    }

    /// Every SDK receiver that has a core receiver gets its stats (what is
    /// sent to it) and, for audio with a level, its voice activity.
    pub(super) fn sdk_stats(&mut self, interval: Duration) {
        use server_event::receiver::{stats, Event as E, Stats, VoiceActivity};
        let mut out: Vec<(Key, server_event::Event)> = Vec::new();
        let keys: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| c.sdk.is_some())
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let slots: Vec<(usize, ReceiverId)> = conn_sdk(&self.conns, key)
                .map(|s| {
                    s.receivers
                        .iter()
                        .enumerate()
                        .filter_map(|(i, r)| Some((i, r.receiver?)))
                        .collect()
                })
                .unwrap_or_default();
            for (i, rid) in slots {
                let Some(c) = self.sfu.receiver_counters(rid) else {
                    continue;
                };
                // How the source reaches us, from its publisher's session.
                let source = self
                    .sfu
                    .receiver_source(rid)
                    .and_then(|t| Some((t, self.sfu.track_owner(t)?)))
                    .and_then(|(t, owner)| {
                        let k = self.by_peer.get(&owner)?;
                        self.conns.get(k)?.session.ingress_stats(t)
                    })
                    .map(|s| stats::Source {
                        bitrate_kbps: s.bitrate_kbps,
                        rtt: s.rtt_ms,
                        lost: s.loss,
                        jitter: s.jitter as f32,
                    });
                let Some(slot) = self
                    .conns
                    .get_mut(&key)
                    .and_then(|c| c.sdk.as_mut())
                    .and_then(|s| s.receivers.get_mut(i))
                else {
                    continue;
                };
                let delta = c.bytes.saturating_sub(slot.reported_bytes);
                slot.reported_bytes = c.bytes;
                let kbps = (delta * 8 / 1000) as f64 / interval.as_secs_f64();
                let layer = self.sfu.receiver_layer(rid).unwrap_or_default();
                let quality = self.sfu.receiver_quality(rid);
                let kbit = |bps: u64| u32::try_from(bps / 1000).unwrap_or(u32::MAX);
                let stats = Stats {
                    source,
                    transmit: Some(stats::Transmit {
                        spatial: u32::from(layer.spatial),
                        temporal: u32::from(layer.temporal),
                        bitrate_kbps: kbps as u32,
                        target_spatial: quality.map(|q| u32::from(q.target.spatial)),
                        target_temporal: quality.map(|q| u32::from(q.target.temporal)),
                        target_kbps: quality.and_then(|q| q.target_bps).map(kbit),
                        estimate_kbps: quality.and_then(|q| q.estimate_bps).map(kbit),
                    }),
                };
                let name = slot.name.clone();
                let receiver = |event| {
                    server_event::Event::Receiver(server_event::Receiver {
                        name: name.clone(),
                        event: Some(event),
                    })
                };
                out.push((key, receiver(E::Stats(stats))));
                // RFC 6464 levels are -dBov: -127 is silence.
                if let Some(level) = c.audio_level.filter(|l| *l > -127 && delta > 0) {
                    out.push((
                        key,
                        receiver(E::VoiceActivity(VoiceActivity {
                            audio_level: i32::from(level),
                        })),
                    ));
                }
            }
        }
        for (key, event) in out {
            self.sdk_send(key, event);
        }
    }

    /// A control message from the client.
    pub(super) fn sdk_on_channel_data(&mut self, key: Key, data: &[u8], now: Instant) {
        let event = match proto::ClientEvent::decode(data) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!("sdk: undecodable client event: {e}");
                return;
            }
        };
        let Some(proto::client_event::Event::Request(req)) = event.event else {
            return;
        };
        let req_id = req.req_id;
        let reply = match req.group {
            None => error(req_id, code::BAD_REQUEST, "request without a group"),
            Some(request::Group::Session(s)) => self.sdk_session_request(key, req_id, s, now),
            Some(request::Group::Sender(s)) => self.sdk_sender_request(key, req_id, s, now),
            Some(request::Group::Receiver(r)) => self.sdk_receiver_request(key, req_id, r, now),
            Some(request::Group::MessageChannel(m)) => self.sdk_message_request(key, req_id, m),
            Some(request::Group::Room(r)) => self.sdk_room_request(key, req_id, r),
            Some(request::Group::Features(f)) => self.mixer_request(key, req_id, f),
        };
        self.sdk_send(key, reply);
    }

    fn sdk_session_request(
        &mut self,
        key: Key,
        req_id: u32,
        s: request::Session,
        now: Instant,
    ) -> server_event::Event {
        use request::session::Action as A;
        use response::session as r;
        match s.action {
            None => error(
                req_id,
                code::BAD_REQUEST,
                "session request without an action",
            ),
            Some(A::Join(j)) => {
                let Some(info) = j.info else {
                    return error(req_id, code::BAD_REQUEST, "join without room info");
                };
                let claims = match token::decode(&j.token, &self.secret, crate::api::unix_now()) {
                    Ok(c) => c,
                    Err(e) => return error(req_id, code::FORBIDDEN, e.to_string()),
                };
                let caller = Caller {
                    app: claims.sub.clone(),
                    room: claims.room.clone(),
                    peer: claims.peer.clone(),
                };
                if claims.kind != TokenKind::Webrtc {
                    return error(req_id, code::FORBIDDEN, "join needs a webrtc token");
                }
                if self.conns.get(&key).is_some_and(|c| c.app != claims.sub) {
                    return error(
                        req_id,
                        code::FORBIDDEN,
                        "the token is for another application",
                    );
                }
                if let Err(e) = check_join(&caller, &info) {
                    return error(req_id, code::FORBIDDEN, e.to_string());
                }
                let same = self.conns.get(&key).and_then(|c| {
                    let j = c.sdk.as_ref()?.joined.as_ref()?;
                    (j.room == info.room && j.peer == info.peer)
                        .then_some(c.peer)
                        .flatten()
                });
                match same {
                    // Joining the room it is in: only the metadata can change.
                    Some(peer) => {
                        let _ = self.sfu.update_peer_metadata(peer, info.metadata);
                        self.mixer_join(key, peer, info.features.and_then(|f| f.mixer), now);
                    }
                    None => {
                        self.sdk_leave(key, now);
                        self.sdk_join(key, &caller.app, info, now);
                    }
                }
                session_ok(req_id, r::Action::Join(r::Join {}))
            }
            Some(A::Leave(_)) => {
                self.sdk_leave(key, now);
                session_ok(req_id, r::Action::Leave(r::Leave {}))
            }
            Some(A::Sdp(u)) => {
                let Some(conn) = self.conns.get_mut(&key) else {
                    return error(req_id, code::NOT_FOUND, "no session");
                };
                let answer = match conn.session.accept_update(&u.sdp) {
                    Ok(a) => a,
                    Err(e) => return error(req_id, code::BAD_REQUEST, e.to_string()),
                };
                if let Some(sdk) = conn.sdk.as_mut() {
                    sdk.reconcile(u.tracks);
                    sdk.map_lines(&conn.session);
                }
                self.mark(key);
                session_ok(req_id, r::Action::Sdp(r::UpdateSdp { sdp: answer }))
            }
            Some(A::Disconnect(_)) => {
                self.sdk_leave(key, now);
                // Answer first; the client closes its side on the answer.
                // The session ends after a moment in any case.
                if let Some(conn) = self.conns.get_mut(&key) {
                    conn.close_at = Some(now + Duration::from_secs(2));
                }
                session_ok(req_id, r::Action::Disconnect(r::Disconnect {}))
            }
        }
    }

    /// Manual mode: follow or stop following one peer of the room.
    fn sdk_room_request(&mut self, key: Key, req_id: u32, r: request::Room) -> server_event::Event {
        use request::room::Action as A;
        use response::room as rr;
        let Some(peer) = self.conns.get(&key).and_then(|c| c.peer) else {
            return error(req_id, code::NOT_JOINED, "join a room first");
        };
        let (result, action) = match r.action {
            None => return error(req_id, code::BAD_REQUEST, "room request without an action"),
            Some(A::Subscribe(s)) => (
                self.sfu.watch_peer(peer, &s.peer),
                rr::Action::Subscribe(rr::SubscribePeer {}),
            ),
            Some(A::Unsubscribe(s)) => (
                self.sfu.unwatch_peer(peer, &s.peer),
                rr::Action::Unsubscribe(rr::UnsubscribePeer {}),
            ),
        };
        match result {
            Ok(()) => respond(
                req_id,
                response::Body::Room(response::Room {
                    action: Some(action),
                }),
            ),
            Err(e) => error(req_id, code::NOT_FOUND, e.to_string()),
        }
    }

    fn sdk_sender_request(
        &mut self,
        key: Key,
        req_id: u32,
        s: request::Sender,
        now: Instant,
    ) -> server_event::Event {
        use request::sender::Action as A;
        use response::sender as r;
        let ok = |a| {
            respond(
                req_id,
                response::Body::Sender(response::Sender { action: Some(a) }),
            )
        };
        let Some(sdk) = self.conns.get_mut(&key).and_then(|c| c.sdk.as_mut()) else {
            return error(req_id, code::NOT_FOUND, "no session");
        };
        let Some(slot) = sdk.senders.iter_mut().find(|x| x.name == s.name) else {
            return error(
                req_id,
                code::NOT_FOUND,
                format!("no sender named `{}`", s.name),
            );
        };
        match s.action {
            None => error(
                req_id,
                code::BAD_REQUEST,
                "sender request without an action",
            ),
            Some(A::Attach(a)) => {
                let metadata = a.source.and_then(|x| x.metadata);
                slot.source = Some(metadata.clone());
                match slot.track {
                    // Already live (a new source on the same sender).
                    Some(track) => {
                        let _ = self.sfu.update_track_metadata(track, metadata);
                    }
                    None => self.sdk_publish(key, &s.name, now),
                }
                ok(r::Action::Attach(r::Attach {}))
            }
            Some(A::Detach(_)) => {
                slot.source = None;
                self.sdk_unpublish(key, &s.name, now);
                ok(r::Action::Detach(r::Detach {}))
            }
            // Priority and bitrate mode matter once bitrate allocation exists.
            Some(A::Config(_)) => ok(r::Action::Config(r::Config {})),
        }
    }

    fn sdk_receiver_request(
        &mut self,
        key: Key,
        req_id: u32,
        q: request::Receiver,
        now: Instant,
    ) -> server_event::Event {
        use request::receiver::Action as A;
        use response::receiver as r;
        let ok = |a| {
            respond(
                req_id,
                response::Body::Receiver(response::Receiver { action: Some(a) }),
            )
        };
        let Some(sdk) = self.conns.get_mut(&key).and_then(|c| c.sdk.as_mut()) else {
            return error(req_id, code::NOT_FOUND, "no session");
        };
        if sdk.joined.is_none() {
            return error(req_id, code::NOT_JOINED, "join a room first");
        }
        let Some(slot) = sdk.receivers.iter_mut().find(|x| x.name == q.name) else {
            return error(
                req_id,
                code::NOT_FOUND,
                format!("no receiver named `{}`", q.name),
            );
        };
        let (want, action) = match q.action {
            None => {
                return error(
                    req_id,
                    code::BAD_REQUEST,
                    "receiver request without an action",
                )
            }
            Some(A::Attach(a)) => {
                let Some(src) = a.source else {
                    return error(req_id, code::BAD_REQUEST, "attach without a source");
                };
                if a.config.is_some() {
                    slot.config = a.config;
                }
                (source_of(Some(src)), r::Action::Attach(r::Attach {}))
            }
            Some(A::Detach(_)) => (ReceiverSource::Detached, r::Action::Detach(r::Detach {})),
            Some(A::Config(c)) => {
                slot.config = Some(c);
                if let Some(rid) = slot.receiver {
                    self.apply_receiver_config(rid, c, now);
                }
                return ok(r::Action::Config(r::Config {}));
            }
        };
        let (receiver, name, config) = (slot.receiver, slot.name.clone(), slot.config);
        // Limits first, so the new source starts at the right layer.
        if let (Some(r), Some(c)) = (receiver, config) {
            self.apply_receiver_config(r, c, now);
        }
        self.sdk_point_receiver(key, &name, want, now);
        ok(action)
    }

    fn sdk_message_request(
        &mut self,
        key: Key,
        req_id: u32,
        m: request::MessageChannel,
    ) -> server_event::Event {
        use request::message_channel::Action as A;
        use response::message_channel as r;
        let label = m.label.clone();
        let ok = |a| {
            respond(
                req_id,
                response::Body::MessageChannel(response::MessageChannel {
                    label: label.clone(),
                    action: Some(a),
                }),
            )
        };
        let Some(conn) = self.conns.get_mut(&key) else {
            return error(req_id, code::NOT_FOUND, "no session");
        };
        let Some(joined) = conn.sdk.as_ref().and_then(|s| s.joined.clone()) else {
            return error(req_id, code::NOT_JOINED, "join a room first");
        };
        let app = conn.app.clone();
        let Some(sdk) = conn.sdk.as_mut() else {
            return error(req_id, code::NOT_FOUND, "no session");
        };
        match m.action {
            None => error(
                req_id,
                code::BAD_REQUEST,
                "message channel request without an action",
            ),
            Some(A::Sub(_)) => {
                if !sdk.subscribed.contains(&m.label) {
                    sdk.subscribed.push(m.label.clone());
                }
                ok(r::Action::Sub(r::Subscribe {}))
            }
            Some(A::Unsub(_)) => {
                sdk.subscribed.retain(|l| *l != m.label);
                ok(r::Action::Unsub(r::Unsubscribe {}))
            }
            // Anyone in the room may publish; start/stop are acknowledged.
            Some(A::StartPub(_)) => ok(r::Action::StartPub(r::StartPublish {})),
            Some(A::StopPub(_)) => ok(r::Action::StopPub(r::StopPublish {})),
            Some(A::Pub(p)) => {
                self.room_message(&app, &joined.room, &m.label, &joined.peer, p.data);
                ok(r::Action::Pub(r::Publish {}))
            }
        }
    }

    /// Delivers a message on a room's channel `label` to every SDK session
    /// of the room on this node that subscribed to it.
    pub(super) fn room_message(
        &mut self,
        app: &str,
        room: &str,
        label: &str,
        from: &str,
        data: Vec<u8>,
    ) {
        let to: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.app == app
                    && c.sdk.as_ref().is_some_and(|s| {
                        s.joined.as_ref().is_some_and(|j| j.room == room)
                            && s.subscribed.iter().any(|l| l == label)
                    })
            })
            .map(|(k, _)| *k)
            .collect();
        for k in to {
            let event = server_event::Event::MessageChannel(server_event::MessageChannel {
                label: label.to_owned(),
                event: Some(server_event::message_channel::Event::Message(
                    server_event::message_channel::Message {
                        peer: from.to_owned(),
                        message: data.clone(),
                    },
                )),
            });
            self.sdk_send(k, event);
        }
    }
}

impl Worker {
    /// Points a receiver slot at a source: its core receiver follows at once
    /// (no renegotiation), or is created with it once its m-line is connected.
    pub(super) fn sdk_point_receiver(
        &mut self,
        key: Key,
        name: &str,
        want: ReceiverSource,
        now: Instant,
    ) {
        let Some(slot) = self
            .sdk_mut(key)
            .and_then(|s| s.receivers.iter_mut().find(|r| r.name == name))
        else {
            return;
        };
        slot.want = want.clone();
        match slot.receiver {
            Some(r) => {
                if let Err(e) = self.sfu.set_receiver_source(r, want, now) {
                    tracing::debug!("receiver source: {e}");
                }
            }
            None => self.sdk_ensure_receiver(key, name, now),
        }
    }

    /// Gives the core a receiver's priority and layer limits.
    fn apply_receiver_config(
        &mut self,
        receiver: ReceiverId,
        c: shared::receiver::Config,
        now: Instant,
    ) {
        let layer = |s: u32, t: u32| Layer::new(s.min(255) as u8, t.min(255) as u8);
        let limits = LayerLimits {
            min: layer(c.min_spatial.unwrap_or(0), c.min_temporal.unwrap_or(0)),
            max: layer(c.max_spatial, c.max_temporal),
        };
        if let Err(e) = self
            .sfu
            .set_receiver_config(receiver, c.priority, limits, now)
        {
            tracing::debug!("receiver config: {e}");
        }
    }

    pub(super) fn sdk_mut(&mut self, key: Key) -> Option<&mut SdkState> {
        self.conns.get_mut(&key).and_then(|c| c.sdk.as_mut())
    }
}

fn conn_sdk(conns: &std::collections::HashMap<Key, Conn>, key: Key) -> Option<&SdkState> {
    conns.get(&key).and_then(|c| c.sdk.as_ref())
}

/// The token names the room and peer a client may join.
fn check_join(caller: &Caller, join: &proto::RoomJoin) -> Result<(), WorkerError> {
    let same_peer = caller.peer.as_ref().is_none_or(|p| *p == join.peer);
    if caller.room != join.room || !same_peer {
        return Err(WorkerError::Forbidden(
            "the token is for another room or peer than the join".into(),
        ));
    }
    Ok(())
}
