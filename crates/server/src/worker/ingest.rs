//! Sessions that publish without WebRTC (RTMP): a core peer whose tracks
//! are fed by a driver outside the worker, packet by packet. Their
//! publishers take no keyframe requests, so their video tracks keep their
//! last GOP for receivers that start on them.

use std::collections::HashMap;
use std::time::Instant;

use mediamesh_core::{
    Codec, MediaKind, MediaPacket, MixerConfig, MixerMode, PeerId, ReceiverId, ReceiverSource,
    RoomId, TrackId, TrackRef,
};
use tokio::sync::mpsc;

use super::{Caller, Worker, WorkerError};

/// An ingest that also hears the room (a phone): the core's mixer puts the
/// loudest other speakers on its slots, and their packets go to `tx` as
/// (slot, packet) for the driver to decode and mix.
#[derive(Debug)]
pub struct Listen {
    pub slots: usize,
    pub tx: mpsc::Sender<(usize, MediaPacket)>,
}

#[derive(Debug)]
struct Hearing {
    receivers: Vec<ReceiverId>,
    tx: mpsc::Sender<(usize, MediaPacket)>,
}

#[derive(Debug)]
pub(super) struct Ingest {
    peer: PeerId,
    hearing: Option<Hearing>,
    room: String,
    peer_name: String,
    audio: Option<TrackId>,
    video: Option<TrackId>,
}

#[derive(Debug, Default)]
pub(super) struct Ingests {
    next: u64,
    live: HashMap<u64, Ingest>,
    by_peer: HashMap<PeerId, u64>,
}

impl Ingests {
    pub(super) fn len(&self) -> usize {
        self.live.len()
    }
}

impl Worker {
    /// A publisher starts: a peer in the caller's room. An older ingest of
    /// the same peer in that room (a reconnect whose old connection has not
    /// ended yet) is replaced.
    pub(super) fn ingest_start(
        &mut self,
        caller: &Caller,
        peer_name: &str,
        listen: Option<Listen>,
        now: Instant,
    ) -> Result<u64, WorkerError> {
        if self.draining {
            return Err(WorkerError::Unavailable);
        }
        let older: Vec<u64> = self
            .ingests
            .live
            .iter()
            .filter(|(_, i)| i.room == caller.room && i.peer_name == peer_name)
            .map(|(id, _)| *id)
            .collect();
        for id in older {
            tracing::info!(peer = %peer_name, room = %caller.room, "ingest replaced by a newer one of the same peer");
            self.ingest_stop(id, now);
        }
        let peer = self
            .sfu
            .add_peer(RoomId::new(&caller.app, &caller.room), peer_name);
        self.ingests.next += 1;
        let id = self.ingests.next;
        let hearing = match listen {
            Some(l) => {
                let receivers = (0..l.slots)
                    .filter_map(|_| {
                        self.sfu
                            .add_receiver(
                                peer,
                                MediaKind::Audio,
                                vec![Codec::Opus],
                                ReceiverSource::Detached,
                                now,
                            )
                            .ok()
                    })
                    .collect();
                let config = MixerConfig {
                    mode: MixerMode::Auto,
                    slots: l.slots,
                    sources: Vec::new(),
                };
                if let Err(e) = self.sfu.set_mixer(peer, config, now) {
                    tracing::warn!(ingest = id, "ingest mixer: {e}");
                }
                Some(Hearing {
                    receivers,
                    tx: l.tx,
                })
            }
            None => None,
        };
        self.ingests.by_peer.insert(peer, id);
        self.ingests.live.insert(
            id,
            Ingest {
                peer,
                hearing,
                room: caller.room.clone(),
                peer_name: peer_name.to_owned(),
                audio: None,
                video: None,
            },
        );
        tracing::info!(ingest = id, room = %caller.room, peer = %peer_name, "ingest started");
        self.process(now);
        Ok(id)
    }

    /// A packet of an ingest: its track (audio or video, by codec) is
    /// published with the first one.
    pub(super) fn ingest_media(&mut self, id: u64, packet: MediaPacket, now: Instant) {
        let Some(ingest) = self.ingests.live.get_mut(&id) else {
            return;
        };
        let kind = packet.codec.kind();
        let slot = match kind {
            MediaKind::Audio => &mut ingest.audio,
            MediaKind::Video => &mut ingest.video,
        };
        let track = match *slot {
            Some(t) => t,
            None => {
                let name = match kind {
                    MediaKind::Audio => "audio",
                    MediaKind::Video => "video",
                };
                match self.sfu.publish_track(ingest.peer, kind, name, None, now) {
                    Ok(t) => {
                        let _ = self.sfu.cache_gop(t);
                        *slot = Some(t);
                        t
                    }
                    Err(e) => {
                        tracing::warn!(ingest = id, "ingest track: {e}");
                        return;
                    }
                }
            }
        };
        self.cluster_send_media(track, 0, &packet);
        if let Err(e) = self.sfu.on_media(track, 0, packet) {
            tracing::debug!(ingest = id, "ingest media: {e}");
        }
        self.process(now);
    }

    /// The publisher stopped: its peer leaves (viewers see its tracks stop).
    pub(super) fn ingest_stop(&mut self, id: u64, now: Instant) {
        let Some(ingest) = self.ingests.live.remove(&id) else {
            return;
        };
        self.ingests.by_peer.remove(&ingest.peer);
        let _ = self.sfu.remove_peer(ingest.peer, now);
        tracing::info!(ingest = id, room = %ingest.room, peer = %ingest.peer_name, "ingest ended");
        self.process(now);
    }

    /// The core put a track on (or took one off) a listening ingest's mixer
    /// slot: its receiver follows. False when `peer` is no ingest.
    pub(super) fn ingest_mixer_slot(
        &mut self,
        peer: PeerId,
        slot: usize,
        source: Option<TrackRef>,
        now: Instant,
    ) -> bool {
        let Some(id) = self.ingests.by_peer.get(&peer) else {
            return false;
        };
        let receiver = self
            .ingests
            .live
            .get(id)
            .and_then(|i| i.hearing.as_ref())
            .and_then(|h| h.receivers.get(slot).copied());
        if let Some(r) = receiver {
            let want = match source {
                Some(s) => ReceiverSource::Track {
                    peer: s.peer,
                    track: s.track,
                },
                None => ReceiverSource::Detached,
            };
            let _ = self.sfu.set_receiver_source(r, want, now);
        }
        true
    }

    /// A packet the core sends to a listening ingest's receiver.
    pub(super) fn ingest_hears(&mut self, peer: PeerId, receiver: ReceiverId, packet: MediaPacket) {
        let Some(id) = self.ingests.by_peer.get(&peer) else {
            return;
        };
        if let Some(h) = self.ingests.live.get(id).and_then(|i| i.hearing.as_ref()) {
            if let Some(slot) = h.receivers.iter().position(|r| *r == receiver) {
                // A driver that falls behind loses packets, not the worker.
                let _ = h.tx.try_send((slot, packet));
            }
        }
    }
}
