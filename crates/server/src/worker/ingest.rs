//! Sessions that publish without WebRTC (RTMP): a core peer whose tracks
//! are fed by a driver outside the worker, packet by packet. Their
//! publishers take no keyframe requests, so their video tracks keep their
//! last GOP for receivers that start on them.

use std::collections::HashMap;
use std::time::Instant;

use mediamesh_core::{MediaKind, MediaPacket, PeerId, RoomId, TrackId};

use super::{Caller, Worker, WorkerError};

#[derive(Debug)]
pub(super) struct Ingest {
    peer: PeerId,
    room: String,
    peer_name: String,
    audio: Option<TrackId>,
    video: Option<TrackId>,
}

#[derive(Debug, Default)]
pub(super) struct Ingests {
    next: u64,
    live: HashMap<u64, Ingest>,
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
        self.ingests.live.insert(
            id,
            Ingest {
                peer,
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
        let _ = self.sfu.remove_peer(ingest.peer, now);
        tracing::info!(ingest = id, room = %ingest.room, peer = %ingest.peer_name, "ingest ended");
        self.process(now);
    }
}
