//! The load generator's parts, as a library so tests drive them directly.

pub mod client;
pub mod http;
pub mod media;
pub mod metrics;
pub mod report;
pub mod scenario;
pub mod tokens;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Config(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("I/O: {0}")]
    Io(String),
    #[error("WebRTC: {0}")]
    Webrtc(String),
    #[error("{0}")]
    Scenario(String),
}
