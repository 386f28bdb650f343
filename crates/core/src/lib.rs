//! The MediaMesh SFU core: rooms, peers, tracks and subscriptions as a pure
//! state machine. No sockets, no threads, no clock: every input carries the
//! time, and outputs are drained with [`Sfu::poll_output`].
//!
//! A transport (WebRTC, later RTMP and SIP) turns its protocol into calls on
//! [`Sfu`] and turns [`Output`]s back into its protocol.

pub mod codec;
pub mod gop;
pub mod ids;
pub mod keyframe;
pub mod layers;
pub mod packet;
pub mod rewrite;
mod sfu;

pub use codec::{Codec, MediaKind};
pub use ids::{PeerId, ReceiverId, RoomId, TrackId};
pub use packet::MediaPacket;
pub use sfu::{
    MixerConfig, MixerMode, Output, PeerDetails, PeerInfo, QualitySummary, ReceiverCounters,
    ReceiverQuality, ReceiverSource, ReceiverState, RoomEvent, Sfu, SfuError, TrackDetails,
    TrackRef, Visibility, REMOTE_WATCH_TTL,
};
