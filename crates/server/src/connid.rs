//! Connection ids: `{node}.{worker}.{32 hex digits}`. The node (and its
//! media worker) that holds a session is part of the id, so any node or
//! gateway routes a request about it without asking anyone; the random part
//! (128 bits) makes it unguessable, since some requests carry no token. The
//! format is plain text: the same on every build and Rust version.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnId {
    pub node: String,
    pub worker: u16,
    pub nonce: u128,
}

impl ConnId {
    pub fn new(node: &str, worker: u16) -> ConnId {
        ConnId {
            node: node.to_owned(),
            worker,
            nonce: rand::random(),
        }
    }

    /// Reads an id (node ids may contain dots: the last two parts are the
    /// worker and the nonce). `None` for anything else.
    pub fn parse(s: &str) -> Option<ConnId> {
        let mut it = s.rsplitn(3, '.');
        let nonce = it.next()?;
        let worker = it.next()?;
        let node = it.next()?;
        if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        if node.is_empty() || worker.is_empty() || !worker.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(ConnId {
            node: node.to_owned(),
            worker: worker.parse().ok()?,
            nonce: u128::from_str_radix(nonce, 16).ok()?,
        })
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{:032x}", self.node, self.worker, self.nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_node_and_parse_back() {
        for node in ["a", "media-1", "eu.west.3", "n_9"] {
            let id = ConnId::new(node, 2);
            let s = id.to_string();
            assert_eq!(ConnId::parse(&s), Some(id.clone()), "{s}");
            assert_eq!(ConnId::parse(&s).map(|c| c.node), Some(node.to_owned()));
        }
        // Fixed format: other builds must read it.
        let id = ConnId {
            node: "b.1".into(),
            worker: 0,
            nonce: 0xab,
        };
        assert_eq!(id.to_string(), "b.1.0.000000000000000000000000000000ab");
        assert_ne!(ConnId::new("a", 0), ConnId::new("a", 0));
    }

    #[test]
    fn other_strings_are_not_ids() {
        for bad in [
            "",
            "abc",
            "0123456789abcdef0123456789abcdef",
            "a.0.0123",
            ".0.0123456789abcdef0123456789abcdef",
            "a..0123456789abcdef0123456789abcdef",
            "a.x.0123456789abcdef0123456789abcdef",
            "a.0.0123456789abcdef0123456789abcdeg",
            "a.99999.0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(ConnId::parse(bad), None, "{bad}");
        }
    }
}
