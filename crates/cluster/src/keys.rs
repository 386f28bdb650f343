//! The key expressions MediaMesh uses in zenoh, in one place.
//!
//! ```text
//! mm/node/{zone}/{node}/{incarnation}        liveliness token: the node is alive
//! mm/room/{room key}/{node}                  the node's share of a room (put, and queryable)
//! mm/track/{node}/{incarnation}/{channel}    a track's media packets
//! mm/fb/{node}/{incarnation}/{channel}/{from} feedback from node `from` to a track's publisher
//! mm/api/{node}                              the node's API: requests other nodes forward (queryable)
//! mm/load/{zone}/{node}                      the node's load report (put every second)
//! ```
//!
//! Room names are free text; the key holds a stable hash of app and room
//! (SHA-256, the same on every build and platform).

use sha2::{Digest, Sha256};

/// Node ids and zones go into key expressions: a small alphabet keeps them
/// valid (no `/`, `*`, `$`, `?`, `#`).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The key of a room: 32 hex digits of SHA-256("{app}\0{room}").
pub fn room_key(app: &str, room: &str) -> String {
    let mut h = Sha256::new();
    h.update(app.as_bytes());
    h.update([0]);
    h.update(room.as_bytes());
    let d = h.finalize();
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

pub fn node_token(zone: &str, node: &str, incarnation: u64) -> String {
    format!("mm/node/{zone}/{node}/{incarnation}")
}

pub const NODE_TOKENS: &str = "mm/node/*/*/*";

/// Parses a node token key into (zone, node, incarnation).
pub fn parse_node_token(key: &str) -> Option<(&str, &str, u64)> {
    let mut it = key.strip_prefix("mm/node/")?.split('/');
    let zone = it.next()?;
    let node = it.next()?;
    let inc = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((zone, node, inc))
}

/// zenoh's id of one session of a node: SHA-256(node id, incarnation,
/// session generation) as lowercase hex, 128 bits, without leading zeros
/// (zenoh refuses them). Every session is a new router to zenoh: reusing an
/// id for a new session (a restart, or a reopen with new link weights)
/// leaves the others' routing with stale state of the old one. A node that
/// dials this one learns it from the RTT echo (`probe.rs`) to name it in its
/// link weights.
pub fn zid(node: &str, incarnation: u64, generation: u32) -> String {
    let d =
        Sha256::digest(format!("mediamesh-node\0{node}\0{incarnation}\0{generation}").as_bytes());
    let s: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let s = s.trim_start_matches('0');
    // A zenoh id must not be zero.
    if s.is_empty() {
        "1".into()
    } else {
        s.to_owned()
    }
}

pub fn room_share(room: &str, node: &str) -> String {
    format!("mm/room/{room}/{node}")
}

/// Every node's share of one room.
pub fn room_shares(room: &str) -> String {
    format!("mm/room/{room}/*")
}

/// One node's shares of every room (what its queryable answers).
pub fn node_shares(node: &str) -> String {
    format!("mm/room/*/{node}")
}

/// The room key of a share key.
pub fn parse_room_share(key: &str) -> Option<&str> {
    let mut it = key.strip_prefix("mm/room/")?.split('/');
    let room = it.next()?;
    it.next()?;
    Some(room)
}

pub fn track(node: &str, incarnation: u64, channel: u64) -> String {
    format!("mm/track/{node}/{incarnation}/{channel}")
}

pub fn feedback(node: &str, incarnation: u64, channel: u64, from: &str) -> String {
    format!("mm/fb/{node}/{incarnation}/{channel}/{from}")
}

/// Feedback to every track of one node incarnation.
pub fn feedback_to(node: &str, incarnation: u64) -> String {
    format!("mm/fb/{node}/{incarnation}/*/*")
}

/// Parses a feedback key into (channel, from).
pub fn parse_feedback(key: &str) -> Option<(u64, &str)> {
    let mut it = key.strip_prefix("mm/fb/")?.split('/');
    it.next()?;
    it.next()?;
    let channel = it.next()?.parse().ok()?;
    let from = it.next()?;
    Some((channel, from))
}

/// Where a node answers the requests other nodes forward to it.
pub fn api(node: &str) -> String {
    format!("mm/api/{node}")
}

pub fn load(zone: &str, node: &str) -> String {
    format!("mm/load/{zone}/{node}")
}

pub const LOADS: &str = "mm/load/*/*";

/// Parses a load report key into (zone, node).
pub fn parse_load(key: &str) -> Option<(&str, &str)> {
    let mut it = key.strip_prefix("mm/load/")?.split('/');
    let zone = it.next()?;
    let node = it.next()?;
    if it.next().is_some() {
        return None;
    }
    Some((zone, node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_keys_are_stable_and_key_safe() {
        // Fixed across builds: other nodes (other versions) must agree.
        assert_eq!(room_key("app", "room"), room_key("app", "room"));
        assert_eq!(room_key("default", "demo").len(), 32);
        assert_ne!(room_key("a", "bc"), room_key("ab", "c"));
        assert_eq!(room_key("default", "demo"), {
            let d = Sha256::digest(b"default\0demo");
            d.iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
        assert!(room_key("app", "a/b*c$d?#")
            .bytes()
            .all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn zids_are_stable_nonzero_hex_without_leading_zeros() {
        for n in ["a", "b", "node-1", "x.y_z"] {
            let z = zid(n, 7, 0);
            assert_eq!(z, zid(n, 7, 0));
            assert_ne!(z, zid(n, 8, 0));
            assert_ne!(z, zid(n, 7, 1));
            assert!(!z.starts_with('0') && !z.is_empty() && z.len() <= 32, "{z}");
            assert!(z
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        assert_ne!(zid("a", 1, 0), zid("b", 1, 0));
    }

    #[test]
    fn names_and_keys_parse_back() {
        assert!(valid_name("node-1.zone_a"));
        for bad in ["", "a/b", "a*", "x$", "é", &"n".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(
            parse_node_token(&node_token("z1", "a", 42)),
            Some(("z1", "a", 42))
        );
        assert_eq!(parse_node_token("mm/node/z/a/x"), None);
        assert_eq!(parse_node_token("mm/node/z/a/1/2"), None);
        assert_eq!(parse_room_share(&room_share("abc", "n")), Some("abc"));
        assert_eq!(parse_feedback(&feedback("a", 1, 7, "b")), Some((7, "b")));
        assert_eq!(parse_feedback("mm/fb/a/1/x/b"), None);
        assert_eq!(parse_load(&load("z1", "n.1")), Some(("z1", "n.1")));
        assert_eq!(parse_load("mm/load/z1/n/x"), None);
    }
}
