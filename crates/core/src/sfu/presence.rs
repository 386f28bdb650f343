//! Who sees whom in a room: peers announce themselves and their tracks, and
//! watchers get `PeerJoined`/`PeerLeft`/`TrackStarted`/`TrackStopped` events
//! (the SDK join modes: full, tracks only, manual).

use super::{Output, Peer, Sfu, SfuError};
use crate::{MediaKind, PeerId, TrackId};

/// What a peer shows the room and what it wants to hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visibility {
    /// Others are told this peer joined and left.
    pub announce_peer: bool,
    /// Others are told when this peer's tracks start and stop.
    pub announce_tracks: bool,
    /// This peer is told about the others' presence.
    pub watch_peers: bool,
    /// This peer is told about the others' tracks.
    pub watch_tracks: bool,
}

impl Default for Visibility {
    /// Seen by all, watching nothing: a WHIP publisher or WHEP player.
    fn default() -> Self {
        Self {
            announce_peer: true,
            announce_tracks: true,
            watch_peers: false,
            watch_tracks: false,
        }
    }
}

/// A change in a room, as told to a watching peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    PeerJoined {
        peer: String,
        metadata: Option<String>,
    },
    PeerUpdated {
        peer: String,
        metadata: Option<String>,
    },
    PeerLeft {
        peer: String,
    },
    TrackStarted {
        peer: String,
        track: String,
        kind: MediaKind,
        metadata: Option<String>,
    },
    TrackUpdated {
        peer: String,
        track: String,
        kind: MediaKind,
        metadata: Option<String>,
    },
    TrackStopped {
        peer: String,
        track: String,
        kind: MediaKind,
    },
}

impl Sfu {
    /// The other peers of `peer`'s room for which `pick` holds.
    fn room_mates(&self, peer: PeerId, pick: impl Fn(&Peer) -> bool) -> Vec<PeerId> {
        let Some(room) = self.peers.get(&peer).map(|p| &p.room) else {
            return Vec::new();
        };
        self.rooms
            .get(room)
            .map(|r| {
                r.peers
                    .iter()
                    .copied()
                    .filter(|p| *p != peer)
                    .filter(|p| self.peers.get(p).is_some_and(&pick))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn tell(&mut self, to: Vec<PeerId>, event: RoomEvent) {
        for to in to {
            self.outputs.push_back(Output::RoomEvent {
                to,
                event: event.clone(),
            });
        }
    }

    pub(super) fn announce_peer_joined(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        if !p.visibility.announce_peer {
            return;
        }
        let name = p.name.clone();
        let event = RoomEvent::PeerJoined {
            peer: p.name.clone(),
            metadata: p.metadata.clone(),
        };
        let to = self.room_mates(peer, |w| {
            w.visibility.watch_peers || w.watching.contains(&name)
        });
        self.tell(to, event);
    }

    pub(super) fn announce_peer_left(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        if !p.visibility.announce_peer {
            return;
        }
        let name = p.name.clone();
        let event = RoomEvent::PeerLeft {
            peer: p.name.clone(),
        };
        let to = self.room_mates(peer, |w| {
            w.visibility.watch_peers || w.watching.contains(&name)
        });
        self.tell(to, event);
    }

    fn track_event(&self, track: TrackId, started: bool) -> Option<(PeerId, RoomEvent)> {
        let t = self.tracks.get(&track)?;
        let owner = self.peers.get(&t.owner)?;
        if !owner.visibility.announce_tracks {
            return None;
        }
        let event = if started {
            RoomEvent::TrackStarted {
                peer: owner.name.clone(),
                track: t.name.clone(),
                kind: t.kind,
                metadata: t.metadata.clone(),
            }
        } else {
            RoomEvent::TrackStopped {
                peer: owner.name.clone(),
                track: t.name.clone(),
                kind: t.kind,
            }
        };
        Some((t.owner, event))
    }

    pub(super) fn announce_track(&mut self, track: TrackId, started: bool) {
        if let Some((owner, event)) = self.track_event(track, started) {
            let name = self
                .peers
                .get(&owner)
                .map(|p| p.name.clone())
                .unwrap_or_default();
            let to = self.room_mates(owner, |w| {
                w.visibility.watch_tracks || w.watching.contains(&name)
            });
            self.tell(to, event);
        }
    }

    /// A new watcher learns the room as it is.
    pub(super) fn show_room_to(&mut self, peer: PeerId) {
        let Some(v) = self.peers.get(&peer).map(|p| p.visibility) else {
            return;
        };
        if !v.watch_peers && !v.watch_tracks {
            return;
        }
        for other in self.room_mates(peer, |_| true) {
            self.show_peer_to(peer, other, v.watch_peers, v.watch_tracks);
        }
    }

    /// Tells `watcher` about `other` as it is now: its presence and tracks,
    /// as far as `other` announces them.
    fn show_peer_to(&mut self, watcher: PeerId, other: PeerId, presence: bool, tracks: bool) {
        let Some(o) = self.peers.get(&other) else {
            return;
        };
        let mut events = Vec::new();
        if presence && o.visibility.announce_peer {
            events.push(RoomEvent::PeerJoined {
                peer: o.name.clone(),
                metadata: o.metadata.clone(),
            });
        }
        if tracks {
            for t in &o.tracks {
                if let Some((_, e)) = self.track_event(*t, true) {
                    events.push(e);
                }
            }
        }
        for event in events {
            self.tell(vec![watcher], event);
        }
    }

    /// A peer's metadata changed: watchers get `PeerUpdated`.
    pub fn update_peer_metadata(
        &mut self,
        peer: PeerId,
        metadata: Option<String>,
    ) -> Result<(), SfuError> {
        let p = self
            .peers
            .get_mut(&peer)
            .ok_or(SfuError::UnknownPeer(peer))?;
        if p.metadata == metadata {
            return Ok(());
        }
        p.metadata = metadata.clone();
        self.room_changed(peer);
        let Some(p) = self.peers.get(&peer) else {
            return Ok(());
        };
        if !p.visibility.announce_peer {
            return Ok(());
        }
        let name = p.name.clone();
        let event = RoomEvent::PeerUpdated {
            peer: name.clone(),
            metadata,
        };
        let to = self.room_mates(peer, |w| {
            w.visibility.watch_peers || w.watching.contains(&name)
        });
        self.tell(to, event);
        Ok(())
    }

    /// A track's metadata changed: watchers get `TrackUpdated`.
    pub fn update_track_metadata(
        &mut self,
        track: TrackId,
        metadata: Option<String>,
    ) -> Result<(), SfuError> {
        let t = self
            .tracks
            .get_mut(&track)
            .ok_or(SfuError::UnknownTrack(track))?;
        if t.metadata == metadata {
            return Ok(());
        }
        t.metadata = metadata.clone();
        let (owner, kind, track_name) = (t.owner, t.kind, t.name.clone());
        self.room_changed(owner);
        let Some(o) = self.peers.get(&owner) else {
            return Ok(());
        };
        if !o.visibility.announce_tracks {
            return Ok(());
        }
        let name = o.name.clone();
        let event = RoomEvent::TrackUpdated {
            peer: name.clone(),
            track: track_name,
            kind,
            metadata,
        };
        let to = self.room_mates(owner, |w| {
            w.visibility.watch_tracks || w.watching.contains(&name)
        });
        self.tell(to, event);
        Ok(())
    }

    /// Manual mode: `watcher` follows one named peer of its room (its
    /// presence and tracks), whatever its own watch flags say; it learns at
    /// once what that peer has.
    pub fn watch_peer(&mut self, watcher: PeerId, name: &str) -> Result<(), SfuError> {
        let w = self
            .peers
            .get_mut(&watcher)
            .ok_or(SfuError::UnknownPeer(watcher))?;
        if w.watching.iter().any(|n| n == name) {
            return Ok(());
        }
        w.watching.push(name.to_owned());
        let room = w.room.clone();
        let other = self.rooms.get(&room).and_then(|r| {
            r.peers
                .iter()
                .copied()
                .find(|p| *p != watcher && self.peers.get(p).is_some_and(|x| x.name == name))
        });
        if let Some(other) = other {
            self.show_peer_to(watcher, other, true, true);
        }
        Ok(())
    }

    /// Manual mode: stops following a peer.
    pub fn unwatch_peer(&mut self, watcher: PeerId, name: &str) -> Result<(), SfuError> {
        let w = self
            .peers
            .get_mut(&watcher)
            .ok_or(SfuError::UnknownPeer(watcher))?;
        w.watching.retain(|n| n != name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RoomId;
    use std::time::Instant;

    fn events_to(sfu: &mut Sfu, to: PeerId) -> Vec<RoomEvent> {
        let mut v = Vec::new();
        while let Some(o) = sfu.poll_output() {
            if let Output::RoomEvent { to: t, event } = o {
                if t == to {
                    v.push(event);
                }
            }
        }
        v
    }

    const FULL: Visibility = Visibility {
        announce_peer: true,
        announce_tracks: true,
        watch_peers: true,
        watch_tracks: true,
    };

    #[test]
    fn watchers_see_the_room_now_and_later() {
        let t0 = Instant::now();
        let room = RoomId::new("app", "r");
        let mut sfu = Sfu::new();
        // A WHIP publisher is there first.
        let whip = sfu.add_peer(room.clone(), "cam");
        sfu.publish_track(whip, MediaKind::Video, "video", None, t0)
            .unwrap();
        let alice = sfu.add_peer_with(room.clone(), "alice", FULL, Some("{\"n\":1}".into()));
        assert_eq!(
            events_to(&mut sfu, alice),
            vec![
                RoomEvent::PeerJoined {
                    peer: "cam".into(),
                    metadata: None
                },
                RoomEvent::TrackStarted {
                    peer: "cam".into(),
                    track: "video".into(),
                    kind: MediaKind::Video,
                    metadata: None
                },
            ]
        );
        // Bob joins and publishes: alice hears of it, bob hears of alice.
        let bob = sfu.add_peer_with(room.clone(), "bob", FULL, None);
        let cam = sfu
            .publish_track(bob, MediaKind::Video, "video_main", Some("m".into()), t0)
            .unwrap();
        let to_alice = events_to(&mut sfu, alice);
        assert_eq!(to_alice.len(), 2);
        assert!(
            matches!(&to_alice[1], RoomEvent::TrackStarted { peer, track, metadata, .. }
            if peer == "bob" && track == "video_main" && metadata.as_deref() == Some("m"))
        );
        sfu.unpublish_track(cam, t0).unwrap();
        sfu.remove_peer(bob, t0).unwrap();
        assert_eq!(
            events_to(&mut sfu, alice),
            vec![
                RoomEvent::TrackStopped {
                    peer: "bob".into(),
                    track: "video_main".into(),
                    kind: MediaKind::Video
                },
                RoomEvent::PeerLeft { peer: "bob".into() },
            ]
        );
    }

    #[test]
    fn join_modes_limit_what_is_told() {
        let t0 = Instant::now();
        let room = RoomId::new("app", "r");
        let mut sfu = Sfu::new();
        // Tracks only (webinar): no peer events.
        let viewer = sfu.add_peer_with(
            room.clone(),
            "viewer",
            Visibility {
                announce_peer: false,
                announce_tracks: false,
                watch_peers: false,
                watch_tracks: true,
            },
            None,
        );
        // A hidden peer (manual mode) neither announces nor watches.
        let hidden = sfu.add_peer_with(
            room.clone(),
            "hidden",
            Visibility {
                announce_peer: false,
                announce_tracks: false,
                watch_peers: false,
                watch_tracks: false,
            },
            None,
        );
        sfu.publish_track(hidden, MediaKind::Audio, "mic", None, t0)
            .unwrap();
        let speaker = sfu.add_peer_with(room.clone(), "speaker", FULL, None);
        sfu.publish_track(speaker, MediaKind::Audio, "mic", None, t0)
            .unwrap();
        let seen = events_to(&mut sfu, viewer);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(matches!(&seen[0], RoomEvent::TrackStarted { peer, .. } if peer == "speaker"));
        // The speaker sees neither the hidden peer nor the viewer.
        let _ = events_to(&mut sfu, speaker);
        sfu.remove_peer(viewer, t0).unwrap();
        assert!(events_to(&mut sfu, speaker).is_empty());
    }

    #[test]
    fn manual_mode_follows_chosen_peers_only() {
        let t0 = Instant::now();
        let room = RoomId::new("app", "r");
        let mut sfu = Sfu::new();
        let manual = Visibility {
            announce_peer: true,
            announce_tracks: true,
            watch_peers: false,
            watch_tracks: false,
        };
        let me = sfu.add_peer_with(room.clone(), "me", manual, None);
        let a = sfu.add_peer_with(room.clone(), "a", FULL, None);
        sfu.publish_track(a, MediaKind::Audio, "mic", None, t0)
            .unwrap();
        let b = sfu.add_peer_with(room.clone(), "b", FULL, None);
        assert!(events_to(&mut sfu, me).is_empty());
        sfu.watch_peer(me, "a").unwrap();
        let seen = events_to(&mut sfu, me);
        assert_eq!(seen.len(), 2, "{seen:?}");
        sfu.publish_track(b, MediaKind::Audio, "mic", None, t0)
            .unwrap();
        sfu.publish_track(a, MediaKind::Video, "cam", None, t0)
            .unwrap();
        let seen = events_to(&mut sfu, me);
        assert!(
            matches!(&seen[..], [RoomEvent::TrackStarted { peer, track, .. }] if peer == "a" && track == "cam"),
            "{seen:?}"
        );
        sfu.unwatch_peer(me, "a").unwrap();
        sfu.remove_peer(a, t0).unwrap();
        assert!(events_to(&mut sfu, me).is_empty());
        assert!(sfu.watch_peer(PeerId(999), "a").is_err());
    }

    #[test]
    fn metadata_updates_reach_watchers() {
        let t0 = Instant::now();
        let room = RoomId::new("app", "r");
        let mut sfu = Sfu::new();
        let w = sfu.add_peer_with(room.clone(), "w", FULL, None);
        let p = sfu.add_peer_with(room.clone(), "p", FULL, None);
        let t = sfu
            .publish_track(p, MediaKind::Video, "cam", None, t0)
            .unwrap();
        let _ = events_to(&mut sfu, w);
        sfu.update_peer_metadata(p, Some("away".into())).unwrap();
        sfu.update_track_metadata(t, Some("hd".into())).unwrap();
        // No change, no event.
        sfu.update_track_metadata(t, Some("hd".into())).unwrap();
        assert_eq!(
            events_to(&mut sfu, w),
            vec![
                RoomEvent::PeerUpdated {
                    peer: "p".into(),
                    metadata: Some("away".into())
                },
                RoomEvent::TrackUpdated {
                    peer: "p".into(),
                    track: "cam".into(),
                    kind: MediaKind::Video,
                    metadata: Some("hd".into())
                },
            ]
        );
    }
}
