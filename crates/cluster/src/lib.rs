//! The MediaMesh cluster: the only crate that knows zenoh.
//!
//! In the language of the media server: a node joins the cluster
//! ([`Cluster::join`]), shares its part of each room it hosts
//! ([`Cluster::share_room`]) and follows the rooms its peers are in
//! ([`Cluster::watch_room`]); each local track is a channel
//! ([`Cluster::open_channel`], [`Cluster::send_media`]) that other nodes
//! subscribe to ([`Cluster::subscribe`]) and send feedback to
//! ([`Cluster::send_feedback`]). Membership (nodes up and down, debounced)
//! and room changes come out of [`Cluster::next`] as [`ViewEvent`]s.

mod config;
pub mod keys;
pub mod links;
mod node;
mod probe;
mod view;
pub mod wire;

pub use config::{ClusterConfig, NodeRole, TlsFiles};
pub use node::{
    CallError, ChannelId, Cluster, ClusterError, ClusterEvent, CountersSnapshot, IncomingCall,
    ReportedLoad,
};
pub use view::{NodeInfo, View, ViewEvent};
pub use wire::{Feedback, Kind, LoadLimits, NodeLoad, RoomShare, SharedPeer, SharedTrack};
