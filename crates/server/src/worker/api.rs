//! The worker's side of the session API: requests served here (from this
//! node's HTTP API or forwarded by another node over the cluster), requests
//! forwarded to other nodes, and the choice of a node for a new session.

use std::time::{Duration, Instant};

use mediamesh_cluster::{CallError, IncomingCall};
use mediamesh_core::{PeerId, RoomId};
use mediamesh_protocol::Message;
use mediamesh_webrtc::{Role, SdpFrag, Session, SessionError};
use tokio::sync::oneshot;

use super::{queue, Caller, Conn, Key, Patched, SdkState, Worker, WorkerError};
use crate::call::{self, ApiCall, ApiOk, ApiResult};
use crate::connid::ConnId;
use crate::placement;

/// This node's one media worker (part of connection ids).
pub(super) const WORKER_INDEX: u16 = 0;

/// How long a forwarded request may take (a node that is gone answers
/// "nobody" at once; this bounds a node that hangs).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

impl Worker {
    /// Serves a session request for this node.
    pub(super) fn serve(&mut self, call: ApiCall, now: Instant) -> ApiResult {
        match call {
            ApiCall::Create {
                role,
                caller,
                peer,
                offer,
            } => self.create(role, caller, peer, &offer, now),
            ApiCall::Patch {
                role,
                id,
                caller,
                if_match,
                frag,
            } => {
                let frag = SdpFrag::parse(&frag)
                    .map_err(|e| WorkerError::BadRequest(format!("malformed sdpfrag: {e}")))?;
                self.patch(role, &id, &caller, if_match.as_deref(), &frag)
                    .map(ApiOk::Patched)
            }
            ApiCall::Delete { role, id, caller } => {
                let key = self.find(role, &id, &caller)?;
                if let Some(conn) = self.conns.get_mut(&key) {
                    conn.session.close();
                }
                self.mark(key);
                Ok(ApiOk::Deleted)
            }
            ApiCall::SdkConnect { caller, request } => {
                self.sdk_connect(caller, request, now).map(|r| sdk(&r))
            }
            ApiCall::SdkIce { id, request } => self.sdk_ice(&id, request).map(|r| sdk(&r)),
            ApiCall::SdkRestartIce {
                id,
                caller,
                request,
            } => self.sdk_restart_ice(&id, &caller, request).map(|r| sdk(&r)),
        }
    }

    /// A request another node forwarded: served like a local one.
    pub(super) fn serve_call(&mut self, call: IncomingCall, now: Instant) {
        let result = match call::decode_call(call.payload()) {
            Ok(c) => {
                tracing::debug!(?c, "forwarded request");
                self.serve(c, now)
            }
            Err(e) => Err(WorkerError::BadRequest(e)),
        };
        call.reply(call::encode_result(&result));
    }

    /// Sends a request to `node`; the answer goes to `reply` when it comes.
    pub(super) fn forward(
        &self,
        node: &str,
        call: &ApiCall,
        reply: oneshot::Sender<Result<ApiResult, CallError>>,
    ) {
        let (tx, rx) = oneshot::channel();
        self.cluster
            .call(node, call::encode_call(call), FORWARD_TIMEOUT, tx);
        tokio::spawn(async move {
            let r = match rx.await {
                Ok(Ok(bytes)) => call::decode_result(&bytes).map_err(CallError::Zenoh),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(CallError::Disconnected),
            };
            let _ = reply.send(r);
        });
    }

    /// The media nodes to try for a new session, best first.
    pub(super) fn place(&mut self, client: Option<(f64, f64)>, now: Instant) -> Vec<String> {
        let loads = self.cluster.loads(now);
        let ranked = placement::rank(
            &loads,
            client,
            self.cluster.zone(),
            self.load.location(),
            &self.load.recently_placed(now),
        );
        if let Some(first) = ranked.first() {
            self.load.placed(first, now);
        }
        ranked
    }
    pub(super) fn create(
        &mut self,
        role: Role,
        caller: Caller,
        peer_name: String,
        offer: &str,
        now: Instant,
    ) -> Result<ApiOk, WorkerError> {
        if self.draining {
            return Err(WorkerError::Unavailable);
        }
        // Every way an offer can fail is the client's to fix.
        let (session, answer) =
            Session::accept(role, offer, self.candidate, &self.identity, now)
                .map_err(|e: SessionError| WorkerError::BadRequest(e.to_string()))?;
        let peer = self
            .sfu
            .add_peer(RoomId::new(&caller.app, &caller.room), &peer_name);
        // Until ICE and DTLS are up (SessionEvent::Connected).
        self.sfu.set_peer_connected(peer, false);
        let answer_etag = format!("\"{}\"", session.local_ufrag());
        let key = self.insert_conn(session, Some(peer), &caller, peer_name, None);
        let id = self
            .conns
            .get(&key)
            .map(|c| c.id.clone())
            .unwrap_or_default();
        Ok(ApiOk::Created {
            id,
            answer,
            etag: answer_etag,
        })
    }

    /// Registers a new connection: an unguessable id naming this node, its ICE ufrag with the
    /// demux, its core peer if it has one.
    pub(super) fn insert_conn(
        &mut self,
        session: Session,
        peer: Option<PeerId>,
        caller: &Caller,
        peer_name: String,
        sdk: Option<SdkState>,
    ) -> Key {
        self.next_key += 1;
        let key = self.next_key;
        let id = ConnId::new(self.cluster.node(), WORKER_INDEX).to_string();
        let etag = format!("\"{}\"", session.local_ufrag());
        self.demux.add_ufrag(session.local_ufrag(), key);
        self.by_id.insert(id.clone(), key);
        if let Some(peer) = peer {
            self.by_peer.insert(peer, key);
        }
        tracing::info!(session = %id, room = %caller.room, peer = %peer_name, role = ?session.role(), "session created");
        self.conns.insert(
            key,
            Conn {
                id,
                session,
                peer,
                app: caller.app.clone(),
                room: caller.room.clone(),
                peer_name,
                etag,
                sdk,
                close_at: None,
                dirty: false,
            },
        );
        // The answer's m-lines are waiting as events: bind them now.
        self.mark(key);
        key
    }

    fn find(&self, role: Role, id: &str, caller: &Caller) -> Result<Key, WorkerError> {
        let key = *self.by_id.get(id).ok_or(WorkerError::NotFound)?;
        let conn = self.conns.get(&key).ok_or(WorkerError::NotFound)?;
        if conn.session.role() != role {
            return Err(WorkerError::NotFound);
        }
        let same_peer = caller.peer.as_ref().is_none_or(|p| *p == conn.peer_name);
        if conn.app != caller.app || conn.room != caller.room || !same_peer {
            return Err(WorkerError::Forbidden(
                "the token is for another room or peer than this session".into(),
            ));
        }
        Ok(key)
    }

    fn patch(
        &mut self,
        role: Role,
        id: &str,
        caller: &Caller,
        if_match: Option<&str>,
        frag: &SdpFrag,
    ) -> Result<Patched, WorkerError> {
        let key = self.find(role, id, caller)?;
        let conn = self.conns.get_mut(&key).ok_or(WorkerError::NotFound)?;
        if let Some(tag) = if_match {
            if tag != "*" && tag != conn.etag {
                return Err(WorkerError::PreconditionFailed);
            }
        }
        let restarted = conn
            .session
            .apply_sdpfrag(frag)
            .map_err(|e| WorkerError::BadRequest(e.to_string()))?;
        queue(&mut self.dirty, key, conn);
        match restarted {
            None => Ok(Patched::Trickled),
            Some(creds) => {
                conn.etag = format!("\"{}\"", creds.ufrag);
                let frag = conn.session.restart_answer(&creds);
                let etag = conn.etag.clone();
                self.demux.add_ufrag(&creds.ufrag, key);
                Ok(Patched::Restarted { frag, etag })
            }
        }
    }
}

fn sdk(m: &impl Message) -> ApiOk {
    ApiOk::Sdk {
        body: m.encode_to_vec(),
    }
}
