//! The MediaMesh server: configuration, tokens, the HTTP API and the media
//! worker that wires the WebRTC transport to the SFU core.

pub mod api;
mod call;
pub mod config;
mod connid;
mod dispatch;
pub mod geo;
pub mod node;
mod placement;
mod rtmp;
mod sip;
pub mod token;
pub mod web;
pub mod worker;

/// The cluster crate, for embedders and tests.
pub use mediamesh_cluster as cluster;
