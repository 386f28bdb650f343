//! The WebRTC transport of MediaMesh, on str0m in RTP mode.
//!
//! - [`Session`]: one peer connection (a WHIP publisher or a WHEP player);
//!   turns str0m's events into core-level [`SessionEvent`]s and writes core
//!   packets back out.
//! - [`Demux`]: finds the session a datagram on the shared UDP port belongs
//!   to, by ICE username first and remote address after.
//! - [`SdpFrag`]: the trickle/ICE-restart fragments of RFC 8840.
//!
//! No sockets and no clock here either: the server's worker owns those.

pub use str0m::media::Mid;

mod demux;
pub mod probe;
mod sdpfrag;
mod session;
mod stun;

pub use demux::Demux;
pub use sdpfrag::{SdpFrag, SdpFragError};
pub use session::{
    DtlsIdentity, IngressStats, MediaLine, Role, Session, SessionError, SessionEvent, Transmit,
};
pub use stun::{is_stun, stun_local_ufrag};
