//! Routing datagrams of the shared UDP port to sessions.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;

use crate::stun_local_ufrag;

/// Finds the session a datagram belongs to: a STUN message by the ICE ufrag
/// in its USERNAME (and the source address is learned for that session);
/// anything else (DTLS, SRTP, SRTCP) by its source address.
#[derive(Debug)]
pub struct Demux<K> {
    by_ufrag: HashMap<String, K>,
    by_addr: HashMap<SocketAddr, K>,
}

impl<K> Default for Demux<K> {
    fn default() -> Self {
        Self {
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> Demux<K> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_ufrag(&mut self, ufrag: &str, key: K) {
        self.by_ufrag.insert(ufrag.to_owned(), key);
    }

    pub fn remove_ufrag(&mut self, ufrag: &str) {
        self.by_ufrag.remove(ufrag);
    }

    /// Forget every route to a session.
    pub fn remove(&mut self, key: K) {
        self.by_ufrag.retain(|_, k| *k != key);
        self.by_addr.retain(|_, k| *k != key);
    }

    /// A session sends to `remote`: replies from there are its own. Needed
    /// for STUN responses to our connectivity checks, which carry no
    /// USERNAME, before the peer's own checks have taught us its address.
    pub fn learn(&mut self, remote: SocketAddr, key: K) {
        self.by_addr.insert(remote, key);
    }

    pub fn route(&mut self, source: SocketAddr, datagram: &[u8]) -> Option<K> {
        if let Some(ufrag) = stun_local_ufrag(datagram) {
            let key = *self.by_ufrag.get(ufrag)?;
            // A remote address belongs to the session whose checks it sent
            // last (ICE restart or a new session from the same socket).
            self.by_addr.insert(source, key);
            return Some(key);
        }
        self.by_addr.get(&source).copied()
    }

    pub fn len(&self) -> usize {
        self.by_ufrag.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ufrag.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(username: &str) -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        m.extend_from_slice(&[1; 12]);
        let v = username.as_bytes();
        let mut attr = vec![0x00, 0x06];
        attr.extend_from_slice(&(v.len() as u16).to_be_bytes());
        attr.extend_from_slice(v);
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        m[2..4].copy_from_slice(&(attr.len() as u16).to_be_bytes());
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn routes_by_ufrag_then_address() {
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let mut d = Demux::new();
        d.add_ufrag("one", 1u32);
        d.add_ufrag("two", 2u32);
        let dtls = [22u8, 254, 253, 0, 0];
        assert_eq!(d.route(a, &dtls), None);
        assert_eq!(d.route(a, &stun("one:x")), Some(1));
        assert_eq!(d.route(b, &stun("two:y")), Some(2));
        assert_eq!(d.route(a, &dtls), Some(1));
        assert_eq!(d.route(b, &dtls), Some(2));
        assert_eq!(d.route(a, &stun("nobody:x")), None);
        let c: SocketAddr = "127.0.0.1:5002".parse().unwrap();
        assert_eq!(d.route(c, &dtls), None);
        d.learn(c, 1);
        assert_eq!(d.route(c, &dtls), Some(1));
        // The same address moving to another session (ICE restart).
        assert_eq!(d.route(a, &stun("two:z")), Some(2));
        assert_eq!(d.route(a, &dtls), Some(2));
        d.remove(2);
        assert_eq!(d.route(b, &dtls), None);
        assert_eq!(d.len(), 1);
    }
}
