//! The SDK protocol's wire types: the HTTP bodies of `/webrtc/*` (package
//! `gateway`) and the data-channel messages (package `session`), generated
//! from `proto/` (our own description of the atm0s-media-server v0.2 wire
//! format; see docs/sdk-protocol.md).

#![allow(clippy::large_enum_variant, clippy::enum_variant_names)]

pub mod shared {
    include!(concat!(env!("OUT_DIR"), "/shared.rs"));
}
pub mod session {
    include!(concat!(env!("OUT_DIR"), "/session.rs"));
}
pub mod gateway {
    include!(concat!(env!("OUT_DIR"), "/gateway.rs"));
}
pub mod features {
    include!(concat!(env!("OUT_DIR"), "/features.rs"));
    pub mod mixer {
        include!(concat!(env!("OUT_DIR"), "/features.mixer.rs"));
    }
}

pub use prost::Message;
