//! The MediaMesh server: configuration, tokens, the HTTP API and the media
//! worker that wires the WebRTC transport to the SFU core.

pub mod api;
pub mod config;
pub mod node;
pub mod token;
pub mod web;
pub mod worker;

/// The cluster crate, for embedders and tests.
pub use mediamesh_cluster as cluster;
