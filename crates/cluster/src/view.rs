//! What a node knows of the others, as a pure state machine (time passed
//! in): which nodes are alive, and each live node's latest share of every
//! room this node watches.
//!
//! A node is alive while its liveliness token exists. A token that goes
//! away is only believed after [`View::new`]'s `debounce`: when a relay
//! router restarts, every node behind it is reported gone and back within
//! seconds, and dropping their peers and tracks meanwhile would flash
//! PeerLeft/PeerJoined at every viewer. A token of a *new* incarnation of
//! a node (it restarted) replaces the old one at once: the old one's
//! channels are gone with its process.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::wire::RoomShare;

/// A node of the cluster as its liveliness token names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node: String,
    pub zone: String,
    pub incarnation: u64,
}

/// What changed in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewEvent {
    NodeUp(NodeInfo),
    /// The node is gone (or restarted as a new incarnation): every share of
    /// it was withdrawn just before (as [`ViewEvent::Share`] with `None`).
    NodeDown(NodeInfo),
    /// A live node's part of a watched room changed; `None`: it has nobody
    /// there any more.
    Share {
        room: String,
        node: String,
        share: Option<RoomShare>,
    },
}

#[derive(Debug)]
struct Node {
    info: NodeInfo,
    /// The token went away at this time; gone for good after the debounce.
    lost_at: Option<Instant>,
}

#[derive(Debug)]
pub struct View {
    me: String,
    debounce: Duration,
    nodes: HashMap<String, Node>,
    /// Room key -> node -> its latest share (non-empty).
    shares: HashMap<String, BTreeMap<String, RoomShare>>,
    events: Vec<ViewEvent>,
}

impl View {
    /// The view of node `me` (its own token and shares are ignored: a node
    /// knows its own state first-hand).
    pub fn new(me: impl Into<String>, debounce: Duration) -> Self {
        Self {
            me: me.into(),
            debounce,
            nodes: HashMap::new(),
            shares: HashMap::new(),
            events: Vec::new(),
        }
    }

    /// A liveliness token appeared.
    pub fn token_up(&mut self, info: NodeInfo) {
        if info.node == self.me {
            return;
        }
        match self.nodes.get_mut(&info.node) {
            Some(n) if n.info.incarnation == info.incarnation => {
                // A flap: it was never reported down.
                n.lost_at = None;
            }
            Some(_) => {
                self.node_down(&info.node);
                self.node_up(info);
            }
            None => self.node_up(info),
        }
    }

    /// A liveliness token went away.
    pub fn token_down(&mut self, info: &NodeInfo, now: Instant) {
        if let Some(n) = self.nodes.get_mut(&info.node) {
            if n.info.incarnation == info.incarnation && n.lost_at.is_none() {
                n.lost_at = Some(now);
            }
        }
    }

    fn node_up(&mut self, info: NodeInfo) {
        self.events.push(ViewEvent::NodeUp(info.clone()));
        self.nodes.insert(
            info.node.clone(),
            Node {
                info,
                lost_at: None,
            },
        );
    }

    fn node_down(&mut self, node: &str) {
        let Some(n) = self.nodes.remove(node) else {
            return;
        };
        let mut rooms: Vec<String> = self
            .shares
            .iter()
            .filter(|(_, by_node)| by_node.contains_key(node))
            .map(|(room, _)| room.clone())
            .collect();
        rooms.sort();
        for room in rooms {
            self.withdraw(&room, node);
        }
        self.events.push(ViewEvent::NodeDown(n.info));
    }

    fn withdraw(&mut self, room: &str, node: &str) {
        let Some(by_node) = self.shares.get_mut(room) else {
            return;
        };
        if by_node.remove(node).is_some_and(|s| !s.peers.is_empty()) {
            self.events.push(ViewEvent::Share {
                room: room.to_owned(),
                node: node.to_owned(),
                share: None,
            });
        }
        if by_node.is_empty() {
            self.shares.remove(room);
        }
    }

    /// A share arrived (a put or a query answer) for room key `room`. It is
    /// taken when it is of the node's live incarnation and newer than what
    /// is held; shares of unknown nodes are ignored (their token comes
    /// first, and a node's shares are queried again when it comes up).
    pub fn share(&mut self, room: &str, share: RoomShare) {
        if share.node == self.me {
            return;
        }
        let Some(n) = self.nodes.get(&share.node) else {
            return;
        };
        if n.info.incarnation != share.incarnation {
            return;
        }
        let node = share.node.clone();
        let by_node = self.shares.entry(room.to_owned()).or_default();
        let had_peers = match by_node.get(&node) {
            Some(s) if s.version >= share.version => return,
            Some(s) => !s.peers.is_empty(),
            None => false,
        };
        let empty = share.peers.is_empty();
        // An empty share is kept for its version: a late, older one must not
        // bring its peers back.
        by_node.insert(node.clone(), share.clone());
        if empty && !had_peers {
            return;
        }
        self.events.push(ViewEvent::Share {
            room: room.to_owned(),
            node,
            share: (!empty).then_some(share),
        });
    }

    /// This node stops watching a room: its shares are forgotten (no
    /// events: the caller drops the room's remote peers itself).
    pub fn forget_room(&mut self, room: &str) {
        self.shares.remove(room);
    }

    /// Nodes whose token has been gone for the debounce are dropped.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut gone: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.lost_at.is_some_and(|t| now >= t + self.debounce))
            .map(|n| n.info.node.clone())
            .collect();
        gone.sort();
        for node in gone {
            self.node_down(&node);
        }
    }

    /// When [`View::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.nodes
            .values()
            .filter_map(|n| n.lost_at)
            .min()
            .map(|t| t + self.debounce)
    }

    pub fn poll_event(&mut self) -> Option<ViewEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    /// Live nodes (not counting this one), sorted.
    pub fn nodes(&self) -> Vec<&NodeInfo> {
        let mut v: Vec<&NodeInfo> = self.nodes.values().map(|n| &n.info).collect();
        v.sort_by(|a, b| a.node.cmp(&b.node));
        v
    }

    /// The node's token is there now (not lost, even within the debounce):
    /// it can take new work.
    pub fn is_up(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|n| n.lost_at.is_none())
    }

    /// The node's live incarnation, if it is up.
    pub fn incarnation(&self, node: &str) -> Option<u64> {
        self.nodes.get(node).map(|n| n.info.incarnation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SharedPeer;

    fn info(node: &str, inc: u64) -> NodeInfo {
        NodeInfo {
            node: node.into(),
            zone: "z".into(),
            incarnation: inc,
        }
    }

    fn share(node: &str, inc: u64, version: u64, peers: &[&str]) -> RoomShare {
        RoomShare {
            app: "app".into(),
            room: "r".into(),
            node: node.into(),
            incarnation: inc,
            version,
            peers: peers
                .iter()
                .map(|p| SharedPeer {
                    name: (*p).into(),
                    metadata: None,
                    announce_peer: true,
                    announce_tracks: true,
                    tracks: vec![],
                })
                .collect(),
        }
    }

    fn events(v: &mut View) -> Vec<ViewEvent> {
        std::iter::from_fn(|| v.poll_event()).collect()
    }

    fn peers_of(e: &ViewEvent) -> Option<Vec<String>> {
        match e {
            ViewEvent::Share { share, .. } => Some(
                share
                    .as_ref()
                    .map(|s| s.peers.iter().map(|p| p.name.clone()).collect())
                    .unwrap_or_default(),
            ),
            _ => None,
        }
    }

    #[test]
    fn shares_follow_versions_and_the_node_lifetime() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut v = View::new("me", ms(1000));
        // Shares of unknown nodes wait for the token (and a re-query).
        v.share("R", share("a", 1, 1, &["alice"]));
        assert!(events(&mut v).is_empty());
        v.token_up(info("a", 1));
        assert_eq!(events(&mut v), vec![ViewEvent::NodeUp(info("a", 1))]);
        v.share("R", share("a", 1, 2, &["alice"]));
        assert_eq!(peers_of(&events(&mut v)[0]), Some(vec!["alice".into()]));
        // An older version (a late query answer) is ignored; a newer one taken.
        v.share("R", share("a", 1, 1, &[]));
        assert!(events(&mut v).is_empty());
        v.share("R", share("a", 1, 3, &["alice", "bob"]));
        assert_eq!(events(&mut v).len(), 1);
        // Our own token and shares are ignored.
        v.token_up(info("me", 9));
        v.share("R", share("me", 9, 1, &["x"]));
        assert!(events(&mut v).is_empty());
        // The token goes: nothing before the debounce, then the share is
        // withdrawn and the node is down.
        v.token_down(&info("a", 1), t0);
        assert_eq!(v.poll_timeout(), Some(t0 + ms(1000)));
        v.handle_timeout(t0 + ms(999));
        assert!(events(&mut v).is_empty());
        v.handle_timeout(t0 + ms(1000));
        let e = events(&mut v);
        assert_eq!(peers_of(&e[0]), Some(vec![]));
        assert_eq!(e[1], ViewEvent::NodeDown(info("a", 1)));
        assert!(v.nodes().is_empty());
        assert_eq!(v.poll_timeout(), None);
    }

    #[test]
    fn a_flap_within_the_debounce_changes_nothing() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut v = View::new("me", ms(1000));
        v.token_up(info("a", 1));
        v.share("R", share("a", 1, 1, &["alice"]));
        events(&mut v);
        v.token_down(&info("a", 1), t0);
        v.token_up(info("a", 1));
        v.handle_timeout(t0 + ms(5000));
        assert!(events(&mut v).is_empty());
        assert_eq!(v.nodes().len(), 1);
    }

    #[test]
    fn a_restarted_node_replaces_its_old_incarnation_at_once() {
        let t0 = Instant::now();
        let mut v = View::new("me", Duration::from_secs(1));
        v.token_up(info("a", 1));
        v.share("R", share("a", 1, 5, &["alice"]));
        events(&mut v);
        // kill -9 and restart faster than the old token's removal.
        v.token_up(info("a", 2));
        let e = events(&mut v);
        assert_eq!(peers_of(&e[0]), Some(vec![]));
        assert_eq!(e[1], ViewEvent::NodeDown(info("a", 1)));
        assert_eq!(e[2], ViewEvent::NodeUp(info("a", 2)));
        // The old incarnation's late shares and token removal are ignored.
        v.share("R", share("a", 1, 6, &["ghost"]));
        v.token_down(&info("a", 1), t0);
        v.handle_timeout(t0 + Duration::from_secs(5));
        assert!(events(&mut v).is_empty());
        // The new one's versions start again from 1.
        v.share("R", share("a", 2, 1, &["alice"]));
        assert_eq!(events(&mut v).len(), 1);
        assert_eq!(v.incarnation("a"), Some(2));
    }

    #[test]
    fn an_empty_share_withdraws_the_node_from_the_room() {
        let mut v = View::new("me", Duration::from_secs(1));
        v.token_up(info("a", 1));
        v.share("R", share("a", 1, 1, &["alice"]));
        events(&mut v);
        v.share("R", share("a", 1, 2, &[]));
        assert_eq!(peers_of(&events(&mut v)[0]), Some(vec![]));
        // Nothing held: an empty share says nothing, and a late older one
        // does not bring alice back.
        v.share("R", share("a", 1, 3, &[]));
        v.share("R", share("a", 1, 1, &["alice"]));
        assert!(events(&mut v).is_empty());
    }
}
