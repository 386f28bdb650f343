//! What a cluster node needs of the core beyond one node's sessions: the
//! room as it shares it with other nodes, and the feedback that other
//! nodes' viewers send to a local track (keyframes, being watched).
//!
//! Peers and tracks of other nodes are ordinary peers and tracks here (the
//! server adds them from the other nodes' shares); only the server knows
//! which are remote.

use std::time::{Duration, Instant};

use super::{Output, Sfu, SfuError, Visibility};
use crate::{MediaKind, PeerId, TrackId};

/// A remote node's "watching" lasts this long without a refresh.
pub const REMOTE_WATCH_TTL: Duration = Duration::from_secs(3);

/// A peer as other nodes are told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDetails {
    pub name: String,
    pub metadata: Option<String>,
    pub visibility: Visibility,
    pub tracks: Vec<TrackDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackDetails {
    pub id: TrackId,
    pub name: String,
    pub kind: MediaKind,
    pub metadata: Option<String>,
    /// Its last GOP is cached (the publisher takes no keyframe requests).
    pub gop_cached: bool,
}

impl Sfu {
    /// Something other nodes see of `peer`'s room changed.
    pub(super) fn room_changed(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.get(&peer) {
            self.outputs.push_back(Output::RoomChanged {
                room: p.room.clone(),
            });
        }
    }

    /// A peer with its tracks, for sharing.
    pub fn peer_details(&self, peer: PeerId) -> Option<PeerDetails> {
        let p = self.peers.get(&peer)?;
        Some(PeerDetails {
            name: p.name.clone(),
            metadata: p.metadata.clone(),
            visibility: p.visibility,
            tracks: p
                .tracks
                .iter()
                .filter_map(|id| {
                    let t = self.tracks.get(id)?;
                    Some(TrackDetails {
                        id: *id,
                        name: t.name.clone(),
                        kind: t.kind,
                        metadata: t.metadata.clone(),
                        gop_cached: t.gop.is_some(),
                    })
                })
                .collect(),
        })
    }

    /// Viewers (here or on other nodes) need a keyframe of `track` (of
    /// simulcast stream `stream`, or any): asked of its publisher,
    /// aggregated with every other request for it. Audio needs none.
    pub fn request_track_keyframe(&mut self, track: TrackId, stream: Option<u8>, now: Instant) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        if t.kind != MediaKind::Video {
            return;
        }
        if let Some(stream) = t.keyframes.request(stream, now) {
            self.outputs.push_back(Output::RequestKeyframe {
                peer: t.owner,
                track,
                stream,
            });
        }
    }

    /// Someone on another node watches `track`: for [`REMOTE_WATCH_TTL`]
    /// its publisher is not capped as unwatched.
    pub fn remote_watch(&mut self, track: TrackId, now: Instant) -> Result<(), SfuError> {
        let t = self
            .tracks
            .get_mut(&track)
            .ok_or(SfuError::UnknownTrack(track))?;
        t.remote_watch_until = Some(now + REMOTE_WATCH_TTL);
        Ok(())
    }

    /// Whether a receiver here takes `track` (attached, not paused).
    pub fn track_watched(&self, track: TrackId) -> bool {
        self.tracks.get(&track).is_some_and(|t| {
            t.subscribers
                .iter()
                .filter_map(|r| self.receivers.get(r))
                .any(|r| !r.paused)
        })
    }

    /// Grows whenever a receiver starts or stops taking a track: a cheap
    /// test of whether [`Sfu::track_watched`] may have changed anywhere.
    pub fn subscription_epoch(&self) -> u64 {
        self.subscription_epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ReceiverSource, RoomId};

    fn changed(sfu: &mut Sfu) -> usize {
        std::iter::from_fn(|| sfu.poll_output())
            .filter(|o| matches!(o, Output::RoomChanged { .. }))
            .count()
    }

    #[test]
    fn room_changes_are_reported_and_details_read_back() {
        let t0 = Instant::now();
        let room = RoomId::new("app", "r");
        let mut sfu = Sfu::new();
        let alice = sfu.add_peer_with(
            room.clone(),
            "alice",
            Visibility::default(),
            Some("m".into()),
        );
        assert_eq!(changed(&mut sfu), 1);
        let cam = sfu
            .publish_track(alice, MediaKind::Video, "cam", None, t0)
            .unwrap();
        assert_eq!(changed(&mut sfu), 1);
        sfu.update_track_metadata(cam, Some("hd".into())).unwrap();
        sfu.update_peer_metadata(alice, Some("m2".into())).unwrap();
        assert_eq!(changed(&mut sfu), 2);
        // No change, no report.
        sfu.update_peer_metadata(alice, Some("m2".into())).unwrap();
        assert_eq!(changed(&mut sfu), 0);
        let d = sfu.peer_details(alice).unwrap();
        assert_eq!(
            (d.name.as_str(), d.metadata.as_deref()),
            ("alice", Some("m2"))
        );
        assert_eq!(d.tracks.len(), 1);
        assert_eq!((d.tracks[0].id, d.tracks[0].name.as_str()), (cam, "cam"));
        assert_eq!(d.tracks[0].metadata.as_deref(), Some("hd"));
        sfu.unpublish_track(cam, t0).unwrap();
        assert_eq!(changed(&mut sfu), 1);
        sfu.remove_peer(alice, t0).unwrap();
        assert_eq!(changed(&mut sfu), 1);
    }

    #[test]
    fn watching_and_the_subscription_epoch_follow_receivers() {
        let t0 = Instant::now();
        let room = RoomId::new("app", "r");
        let mut sfu = Sfu::new();
        let alice = sfu.add_peer(room.clone(), "alice");
        let cam = sfu
            .publish_track(alice, MediaKind::Video, "cam", None, t0)
            .unwrap();
        assert!(!sfu.track_watched(cam));
        let e0 = sfu.subscription_epoch();
        let bob = sfu.add_peer(room.clone(), "bob");
        let r = sfu
            .add_receiver(
                bob,
                MediaKind::Video,
                vec![crate::Codec::Vp8],
                ReceiverSource::FollowRoom,
                t0,
            )
            .unwrap();
        assert!(sfu.track_watched(cam));
        let e1 = sfu.subscription_epoch();
        assert!(e1 > e0);
        sfu.set_receiver_paused(r, true, t0).unwrap();
        assert!(!sfu.track_watched(cam));
        assert!(sfu.subscription_epoch() > e1);
        sfu.set_receiver_paused(r, false, t0).unwrap();
        sfu.remove_receiver(r).unwrap();
        assert!(!sfu.track_watched(cam));
        assert!(sfu.remote_watch(cam, t0).is_ok());
        assert!(sfu.remote_watch(TrackId(999), t0).is_err());
    }

    #[test]
    fn remote_keyframe_requests_are_aggregated_with_local_ones() {
        let t0 = Instant::now();
        let mut sfu = Sfu::new();
        let alice = sfu.add_peer(RoomId::new("app", "r"), "alice");
        let cam = sfu
            .publish_track(alice, MediaKind::Video, "cam", None, t0)
            .unwrap();
        let mic = sfu
            .publish_track(alice, MediaKind::Audio, "mic", None, t0)
            .unwrap();
        while sfu.poll_output().is_some() {}
        let reqs = |sfu: &mut Sfu| {
            std::iter::from_fn(|| sfu.poll_output())
                .filter_map(|o| match o {
                    Output::RequestKeyframe { stream, .. } => Some(stream),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        sfu.request_track_keyframe(cam, Some(1), t0);
        sfu.request_track_keyframe(cam, Some(1), t0 + Duration::from_millis(10));
        sfu.request_track_keyframe(mic, None, t0);
        assert_eq!(reqs(&mut sfu), vec![Some(1)]);
    }
}
