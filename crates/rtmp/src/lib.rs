//! RTMP ingest for MediaMesh, sans-IO: the server side of the protocol as
//! pure state machines (no sockets, no clocks, no threads), and the media
//! parsing an ingest needs to turn what an RTMP publisher (OBS, ffmpeg,
//! GStreamer `rtmp2sink`) sends into RTP.
//!
//! - [`session`]: [`ServerSession`], one connection: bytes in, bytes out,
//!   [`Event`]s (connect, publish requests, metadata, audio, video).
//! - [`handshake`], [`chunk`], [`amf0`]: the protocol layers it is built on.
//! - [`flv`]: audio/video message bodies (legacy FLV and enhanced RTMP).
//! - [`avc`]: H.264 decoder configuration and access units (AAC's
//!   configuration is read by `mediamesh-audio`, which decodes it).
//! - [`h264_rtp`]: RFC 6184 packetization of H.264 access units.
//!
//! A driver (see `examples/rtmp_ingest.rs`) reads from the socket, calls
//! [`ServerSession::feed`], writes every [`ServerSession::poll_output`], and
//! handles every [`ServerSession::poll_event`], answering
//! [`Event::PublishRequest`] with [`ServerSession::accept_publish`] or
//! [`ServerSession::reject_publish`].

pub mod amf0;
pub mod avc;
pub mod chunk;
pub mod flv;
pub mod h264_rtp;
pub mod handshake;
pub mod session;

pub use amf0::Amf0Value;
pub use session::{Event, RtmpError, ServerSession, SessionConfig, SessionStats};
