//! Identifiers. Rooms are named by the application (and namespaced by app id);
//! peers, tracks and receivers get small integer ids from the [`crate::Sfu`].

use std::fmt;

/// A room: the application's id and the room's name within it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId {
    pub app: String,
    pub name: String,
}

impl RoomId {
    pub fn new(app: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.name)
    }
}

macro_rules! small_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

small_id!(
    /// A peer in a room (one WHIP/WHEP session, one SDK connection).
    PeerId,
    "peer#"
);
small_id!(
    /// A track a peer publishes (one audio or video source).
    TrackId,
    "track#"
);
small_id!(
    /// A receiver slot of a peer: where one subscribed track is delivered.
    ReceiverId,
    "recv#"
);
