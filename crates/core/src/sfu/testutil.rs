//! Packets and feeds shared by the SFU's unit tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Output, ReceiverSource, Sfu};
use crate::{Codec, MediaKind, MediaPacket, PeerId, ReceiverId, RoomId, TrackId};

/// A one-packet VP8 frame of `size` bytes: a payload descriptor starting a
/// frame (S=1), then the frame header's inverse key bit.
pub(super) fn vp8(seq: u64, key: bool, size: usize, at: Instant) -> MediaPacket {
    let mut payload = vec![0u8; size.max(2)];
    payload[0] = 0x10;
    payload[1] = u8::from(!key);
    MediaPacket {
        codec: Codec::Vp8,
        seq,
        timestamp: seq as u32 * 3000,
        marker: true,
        keyframe: key,
        audio_level: None,
        dependency_descriptor: None,
        arrival: at,
        payload: Arc::from(payload),
    }
}

/// Frame `i` (from `t0`, 30 fps) of three VP8 simulcast streams of 200, 600
/// and 1500 B frames (~60, ~160 and ~380 kbit/s with headers), the first a
/// keyframe; runs the SFU's timers when due. Returns the frame's time.
pub(super) fn simulcast_frame(sfu: &mut Sfu, track: TrackId, i: u64, t0: Instant) -> Instant {
    simulcast_frame_key(sfu, track, i, t0, i == 0)
}

/// [`simulcast_frame`], a keyframe on every stream when `key`.
pub(super) fn simulcast_frame_key(
    sfu: &mut Sfu,
    track: TrackId,
    i: u64,
    t0: Instant,
    key: bool,
) -> Instant {
    frame_of_streams(sfu, track, i, t0, key, 3)
}

/// [`simulcast_frame`] of a publisher that paused streams 1 and 2.
pub(super) fn base_stream_frame(sfu: &mut Sfu, track: TrackId, i: u64, t0: Instant) -> Instant {
    frame_of_streams(sfu, track, i, t0, false, 1)
}

fn frame_of_streams(
    sfu: &mut Sfu,
    track: TrackId,
    i: u64,
    t0: Instant,
    key: bool,
    streams: usize,
) -> Instant {
    let at = t0 + Duration::from_millis(i * 33);
    for (stream, size) in [(0u8, 200usize), (1, 600), (2, 1500)]
        .into_iter()
        .take(streams)
    {
        sfu.on_media(track, stream, vp8(i, key, size, at))
            .expect("the test's track exists");
    }
    if sfu.poll_timeout().is_some_and(|t| t <= at) {
        sfu.handle_timeout(at);
    }
    at
}

/// A room where alice publishes a camera ("cam") and bob has a video
/// receiver on it: the SFU, the track, bob and his receiver.
pub(super) fn camera_and_viewer(t0: Instant) -> (Sfu, TrackId, PeerId, ReceiverId) {
    let mut sfu = Sfu::new();
    let room = RoomId::new("app", "r");
    let alice = sfu.add_peer(room.clone(), "alice");
    let cam = sfu
        .publish_track(alice, MediaKind::Video, "cam", None, t0)
        .expect("alice exists");
    let bob = sfu.add_peer(room, "bob");
    let src = ReceiverSource::Track {
        peer: "alice".into(),
        track: "cam".into(),
    };
    let rx = sfu
        .add_receiver(bob, MediaKind::Video, vec![Codec::Vp8], src, t0)
        .expect("bob exists");
    (sfu, cam, bob, rx)
}

/// The outputs waiting in the SFU that `pick` keeps.
pub(super) fn outputs<T>(sfu: &mut Sfu, pick: impl Fn(Output) -> Option<T>) -> Vec<T> {
    std::iter::from_fn(|| sfu.poll_output())
        .filter_map(pick)
        .collect()
}
