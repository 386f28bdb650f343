//! SIP transactions (RFC 3261 section 17, with the INVITE changes of RFC
//! 6026 and the response routing of 18.2.2 and RFC 3581).
//!
//! [`Transactions`] holds every client and server transaction of an
//! endpoint, keyed by the top Via branch and the method (17.1.3, 17.2.3;
//! ACK matches its INVITE). It is sans-IO: the driver gives it every
//! received message with [`Transactions::handle_message`], calls
//! [`Transactions::handle_timeout`] at [`Transactions::poll_timeout`], and
//! sends or handles what [`Transactions::poll_output`] returns.
//!
//! Server transactions (17.2): a new INVITE is answered `100 Trying` at
//! once; retransmitted requests are absorbed or answered with the last
//! response; a final non-2xx to an INVITE is retransmitted on unreliable
//! transports (timer G, doubling to T2) until the ACK (then timer I) or
//! timer H (64*T1: [`TxEvent::Timeout`]); a 2xx moves the INVITE to the
//! Accepted state of RFC 6026 (timer L), the TU retransmitting the 2xx
//! itself (13.3.1.4, see `dialog`); a non-INVITE transaction keeps its final
//! response for retransmissions for timer J.
//!
//! Client transactions (17.1): INVITE with timers A (retransmit,
//! unreliable only), B (timeout), D (wait for retransmitted finals after a
//! non-2xx, whose ACK the transaction builds and sends, 17.1.1.3) and M
//! (RFC 6026: 2xx retransmissions still go to the TU); non-INVITE with E
//! (retransmit, capped at T2), F (timeout) and K. On reliable transports
//! the retransmission timers are off and D, I, J and K are zero.
//!
//! Received requests get `received` and, when the client asked with
//! `;rport`, `rport` added to their top Via (RFC 3581 section 4), and
//! responses go back to the source address of the request in that case,
//! else to the source IP and the port in sent-by (18.2.2).

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::header::{Via, MAGIC_COOKIE};
use crate::message::{Message, Method, ParseError, Request, Response};

/// Transaction timer values (17.1.1.1, table 4 of A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, 500 ms.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE
    /// responses, 4 s.
    pub t2: Duration,
    /// Longest time a message stays in the network, 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// The transport a message came over or goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    pub fn is_reliable(self) -> bool {
        self != Transport::Udp
    }

    /// The name in a Via header.
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }
}

/// Where a message came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: SocketAddr,
    pub transport: Transport,
}

impl Peer {
    pub fn udp(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            transport: Transport::Udp,
        }
    }
}

/// Identifies a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionKey {
    /// Client or server side.
    pub server: bool,
    /// The top Via branch (for requests without an RFC 3261 branch, a key
    /// made of Call-ID, From tag, CSeq number and sent-by).
    pub branch: String,
    /// The method (INVITE for an ACK).
    pub method: Method,
}

impl TransactionKey {
    /// The key of the server transaction a request belongs to (17.2.3).
    pub fn for_request(req: &Request) -> Result<TransactionKey, ParseError> {
        let via = req.headers.top_via()?;
        let method = match &req.method {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        let branch = match via.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) => format!("{b}|{}", via.sent_by()),
            _ => {
                // RFC 2543 matching, simplified (17.2.3).
                let cseq = req.headers.cseq()?;
                let from = req.headers.from()?;
                format!(
                    "2543|{}|{}|{}|{}",
                    req.headers.call_id()?,
                    from.tag().unwrap_or(""),
                    cseq.seq,
                    via.sent_by()
                )
            }
        };
        Ok(TransactionKey {
            server: true,
            branch,
            method,
        })
    }

    /// The key of the client transaction a response belongs to (17.1.3).
    pub fn for_response(resp: &Response) -> Result<TransactionKey, ParseError> {
        let via = resp.headers.top_via()?;
        let cseq = resp.headers.cseq()?;
        Ok(TransactionKey {
            server: false,
            branch: via.branch().unwrap_or("").to_string(),
            method: cseq.method,
        })
    }
}

/// Errors of the transaction layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    #[error("message cannot be matched to a transaction: {0}")]
    Unmatchable(#[from] ParseError),
    #[error("ACK is not sent through a client transaction")]
    AckNotAllowed,
    #[error("request has no RFC 3261 branch in its top Via")]
    NoBranch,
    #[error("a transaction with this key exists")]
    Exists,
    #[error("no such transaction")]
    NoSuchTransaction,
    #[error("the transaction cannot send this response now")]
    InvalidResponse,
    #[error("too many transactions")]
    Overloaded,
}

/// What the transaction layer asks of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOutput {
    /// Send this message to `to`.
    Send {
        to: Peer,
        message: Message,
    },
    Event(TxEvent),
}

/// What the transaction layer tells the transaction user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// A new request; answer with [`Transactions::respond`] (an INVITE has
    /// had its 100 Trying). Its top Via has `received`/`rport` filled in.
    Request {
        key: TransactionKey,
        request: Request,
        from: Peer,
    },
    /// An ACK that is not for a non-2xx final response: the ACK of a 2xx.
    Ack { request: Request, from: Peer },
    /// A response of a client transaction (retransmitted 2xx to an INVITE
    /// included, RFC 6026).
    Response {
        key: TransactionKey,
        response: Response,
    },
    /// A response that matches no transaction (e.g. a 2xx retransmitted
    /// after timer M); a UA core re-sends its ACK if it is for a dialog.
    StrayResponse { response: Response, from: Peer },
    /// Timer B or F (client: no final response, act as on 408) or H
    /// (server: no ACK for the final response).
    Timeout { key: TransactionKey },
    /// A client transaction's request could not be delivered (the driver
    /// reported a transport error for its destination: act as on 503,
    /// 8.1.3.1).
    TransportError { key: TransactionKey },
    /// The transaction is gone.
    Terminated { key: TransactionKey },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
}

#[derive(Debug)]
struct Tx {
    invite: bool,
    server: bool,
    state: State,
    peer: Peer,
    /// The request (server: as received; client: as sent).
    request: Request,
    /// Server: the last response sent. Client INVITE: the ACK we sent.
    last: Option<Message>,
    /// Retransmission timer A, E or G.
    retransmit_at: Option<Instant>,
    interval: Duration,
    /// Timer B, F or H (a timeout event) or L or M (no event).
    timeout_at: Option<Instant>,
    timeout_is_failure: bool,
    /// Timer D, I, J or K.
    end_at: Option<Instant>,
    /// Client INVITE: CANCEL asked before any provisional response (9.1).
    cancel_pending: bool,
}

impl Tx {
    fn next_deadline(&self) -> Option<Instant> {
        [self.retransmit_at, self.timeout_at, self.end_at]
            .into_iter()
            .flatten()
            .min()
    }
}

/// The transaction layer of one endpoint.
#[derive(Debug)]
pub struct Transactions {
    timers: TimerConfig,
    max_transactions: usize,
    txs: BTreeMap<TransactionKey, Tx>,
    out: VecDeque<TxOutput>,
}

impl Transactions {
    pub fn new(timers: TimerConfig) -> Self {
        Transactions {
            timers,
            max_transactions: 4096,
            txs: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// Most transactions kept at once; a request beyond it gets
    /// [`TxError::Overloaded`] (answer 503 statelessly).
    pub fn with_max_transactions(mut self, n: usize) -> Self {
        self.max_transactions = n;
        self
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn poll_output(&mut self) -> Option<TxOutput> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.txs.values().filter_map(Tx::next_deadline).min()
    }

    fn send(&mut self, to: Peer, message: impl Into<Message>) {
        self.out.push_back(TxOutput::Send {
            to,
            message: message.into(),
        });
    }

    fn event(&mut self, e: TxEvent) {
        self.out.push_back(TxOutput::Event(e));
    }

    fn terminate(&mut self, key: &TransactionKey) {
        if self.txs.remove(key).is_some() {
            self.event(TxEvent::Terminated { key: key.clone() });
        }
    }

    /// Handles a message received from `from`. Requests should have passed
    /// [`Request::validate`] (answer 400 otherwise); an error here means the
    /// message was dropped.
    pub fn handle_message(
        &mut self,
        msg: Message,
        from: Peer,
        now: Instant,
    ) -> Result<(), TxError> {
        match msg {
            Message::Request(r) => self.handle_request(r, from, now),
            Message::Response(r) => self.handle_response(r, from, now),
        }
    }

    fn handle_request(
        &mut self,
        mut req: Request,
        from: Peer,
        now: Instant,
    ) -> Result<(), TxError> {
        stamp_via(&mut req, from)?;
        let key = TransactionKey::for_request(&req)?;
        if req.method == Method::Ack {
            return self.handle_ack(key, req, from, now);
        }
        if let Some(tx) = self.txs.get_mut(&key) {
            // A retransmission (17.2.1, 17.2.2).
            let resend = match tx.state {
                State::Proceeding | State::Completed => tx.last.clone(),
                _ => None,
            };
            if let Some(m) = resend {
                let peer = tx.peer;
                self.send(peer, m);
            }
            return Ok(());
        }
        if self.txs.len() >= self.max_transactions {
            return Err(TxError::Overloaded);
        }
        let invite = req.method == Method::Invite;
        let mut tx = Tx {
            invite,
            server: true,
            state: if invite {
                State::Proceeding
            } else {
                State::Trying
            },
            peer: from,
            request: req.clone(),
            last: None,
            retransmit_at: None,
            interval: self.timers.t1,
            timeout_at: None,
            timeout_is_failure: false,
            end_at: None,
            cancel_pending: false,
        };
        if invite {
            let trying = Message::Response(Response::for_request(&req, 100));
            tx.last = Some(trying.clone());
            let to = response_destination(&req, from);
            self.send(to, trying);
        }
        self.txs.insert(key.clone(), tx);
        self.event(TxEvent::Request {
            key,
            request: req,
            from,
        });
        Ok(())
    }

    fn handle_ack(
        &mut self,
        key: TransactionKey,
        req: Request,
        from: Peer,
        now: Instant,
    ) -> Result<(), TxError> {
        let reliable = from.transport.is_reliable();
        match self.txs.get_mut(&key) {
            Some(tx) if tx.state == State::Completed => {
                // ACK of our non-2xx final response (17.2.1).
                tx.state = State::Confirmed;
                tx.retransmit_at = None;
                tx.timeout_at = None;
                if reliable {
                    self.terminate(&key);
                } else {
                    tx.end_at = Some(now + self.timers.t4); // timer I
                }
            }
            Some(tx) if tx.state == State::Confirmed => {}
            _ => self.event(TxEvent::Ack { request: req, from }),
        }
        Ok(())
    }

    fn handle_response(&mut self, resp: Response, from: Peer, now: Instant) -> Result<(), TxError> {
        let key = TransactionKey::for_response(&resp)?;
        let Some(tx) = self.txs.get_mut(&key) else {
            self.event(TxEvent::StrayResponse {
                response: resp,
                from,
            });
            return Ok(());
        };
        let reliable = tx.peer.transport.is_reliable();
        let t = self.timers;
        let provisional = resp.status < 200;
        let mut send_cancel = false;
        let mut terminate = false;
        let mut resend = None;
        let mut deliver = true;
        if tx.invite {
            match (tx.state, provisional) {
                (State::Calling | State::Proceeding, true) => {
                    if tx.state == State::Calling && tx.cancel_pending {
                        send_cancel = true;
                        tx.cancel_pending = false;
                    }
                    tx.state = State::Proceeding;
                    tx.retransmit_at = None;
                    tx.timeout_at = None;
                }
                (State::Calling | State::Proceeding, false) if resp.status < 300 => {
                    tx.state = State::Accepted;
                    tx.retransmit_at = None;
                    tx.timeout_at = Some(now + 64 * t.t1); // timer M
                    tx.timeout_is_failure = false;
                }
                (State::Calling | State::Proceeding, false) => {
                    let ack = ack_for_non_2xx(&tx.request, &resp);
                    tx.last = Some(Message::Request(ack.clone()));
                    tx.state = State::Completed;
                    tx.retransmit_at = None;
                    tx.timeout_at = None;
                    tx.cancel_pending = false;
                    resend = Some(Message::Request(ack));
                    if reliable {
                        terminate = true;
                    } else {
                        tx.end_at = Some(now + Duration::from_secs(32)); // timer D
                    }
                }
                (State::Accepted, false) if resp.status < 300 => {}
                (State::Completed, false) => {
                    resend = tx.last.clone();
                    deliver = false;
                }
                _ => deliver = false,
            }
        } else {
            match (tx.state, provisional) {
                (State::Trying | State::Proceeding, true) => {
                    tx.state = State::Proceeding;
                    if tx.retransmit_at.is_some() {
                        tx.interval = t.t2;
                    }
                }
                (State::Trying | State::Proceeding, false) => {
                    tx.state = State::Completed;
                    tx.retransmit_at = None;
                    tx.timeout_at = None;
                    if reliable {
                        terminate = true;
                    } else {
                        tx.end_at = Some(now + t.t4); // timer K
                    }
                }
                _ => deliver = false,
            }
        }
        let peer = tx.peer;
        if let Some(m) = resend {
            self.send(peer, m);
        }
        if deliver {
            self.event(TxEvent::Response {
                key: key.clone(),
                response: resp,
            });
        }
        if send_cancel {
            self.start_cancel(&key, now)?;
        }
        if terminate {
            self.terminate(&key);
        }
        Ok(())
    }

    /// Sends a response in the server transaction `key`.
    pub fn respond(
        &mut self,
        key: &TransactionKey,
        resp: Response,
        now: Instant,
    ) -> Result<(), TxError> {
        let t = self.timers;
        let tx = self.txs.get_mut(key).ok_or(TxError::NoSuchTransaction)?;
        if !tx.server {
            return Err(TxError::NoSuchTransaction);
        }
        let reliable = tx.peer.transport.is_reliable();
        let to = response_destination(&tx.request, tx.peer);
        let mut terminate = false;
        let msg = Message::Response(resp.clone());
        if tx.invite {
            match (tx.state, resp.status) {
                (State::Proceeding, 100..=199) => tx.last = Some(msg.clone()),
                (State::Proceeding, 200..=299) => {
                    tx.state = State::Accepted;
                    tx.last = None;
                    tx.timeout_at = Some(now + 64 * t.t1); // timer L
                    tx.timeout_is_failure = false;
                }
                (State::Accepted, 200..=299) => {} // the TU retransmits its 2xx
                (State::Proceeding, _) => {
                    tx.state = State::Completed;
                    tx.last = Some(msg.clone());
                    if !reliable {
                        tx.interval = t.t1;
                        tx.retransmit_at = Some(now + t.t1); // timer G
                    }
                    tx.timeout_at = Some(now + 64 * t.t1); // timer H
                    tx.timeout_is_failure = true;
                }
                _ => return Err(TxError::InvalidResponse),
            }
        } else {
            match (tx.state, resp.status) {
                (State::Trying | State::Proceeding, 100..=199) => {
                    tx.state = State::Proceeding;
                    tx.last = Some(msg.clone());
                }
                (State::Trying | State::Proceeding, _) => {
                    tx.state = State::Completed;
                    tx.last = Some(msg.clone());
                    if reliable {
                        terminate = true;
                    } else {
                        tx.end_at = Some(now + 64 * t.t1); // timer J
                    }
                }
                _ => return Err(TxError::InvalidResponse),
            }
        }
        self.send(to, msg);
        if terminate {
            self.terminate(key);
        }
        Ok(())
    }

    /// Starts a client transaction for `req` (not ACK), whose top Via must
    /// carry a fresh RFC 3261 branch, and sends it to `to`.
    pub fn send_request(
        &mut self,
        req: Request,
        to: Peer,
        now: Instant,
    ) -> Result<TransactionKey, TxError> {
        if req.method == Method::Ack {
            return Err(TxError::AckNotAllowed);
        }
        let via = req.headers.top_via()?;
        let branch = match via.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) => b.to_string(),
            _ => return Err(TxError::NoBranch),
        };
        let key = TransactionKey {
            server: false,
            branch,
            method: req.method.clone(),
        };
        if self.txs.contains_key(&key) {
            return Err(TxError::Exists);
        }
        if self.txs.len() >= self.max_transactions {
            return Err(TxError::Overloaded);
        }
        let t = self.timers;
        let invite = req.method == Method::Invite;
        let reliable = to.transport.is_reliable();
        let tx = Tx {
            invite,
            server: false,
            state: if invite {
                State::Calling
            } else {
                State::Trying
            },
            peer: to,
            request: req.clone(),
            last: None,
            retransmit_at: (!reliable).then(|| now + t.t1), // timer A or E
            interval: t.t1,
            timeout_at: Some(now + 64 * t.t1), // timer B or F
            timeout_is_failure: true,
            end_at: None,
            cancel_pending: false,
        };
        self.txs.insert(key.clone(), tx);
        self.send(to, req);
        Ok(key)
    }

    /// Cancels the client INVITE transaction `invite` (9.1): the CANCEL is
    /// sent now if a provisional response came, else when one comes; after
    /// a final response nothing is sent. Returns the CANCEL's key when sent.
    pub fn cancel(
        &mut self,
        invite: &TransactionKey,
        now: Instant,
    ) -> Result<Option<TransactionKey>, TxError> {
        let tx = self.txs.get_mut(invite).ok_or(TxError::NoSuchTransaction)?;
        if tx.server || !tx.invite {
            return Err(TxError::NoSuchTransaction);
        }
        match tx.state {
            State::Calling => {
                tx.cancel_pending = true;
                Ok(None)
            }
            State::Proceeding => self.start_cancel(invite, now).map(Some),
            _ => Ok(None),
        }
    }

    fn start_cancel(
        &mut self,
        invite: &TransactionKey,
        now: Instant,
    ) -> Result<TransactionKey, TxError> {
        let tx = self.txs.get(invite).ok_or(TxError::NoSuchTransaction)?;
        let cancel = cancel_for(&tx.request);
        let peer = tx.peer;
        self.send_request(cancel, peer, now)
    }

    /// The server INVITE transaction a CANCEL (given its own key) is for.
    pub fn invite_for_cancel(&self, cancel: &TransactionKey) -> Option<TransactionKey> {
        let key = TransactionKey {
            server: true,
            branch: cancel.branch.clone(),
            method: Method::Invite,
        };
        self.txs.contains_key(&key).then_some(key)
    }

    /// Whether the server transaction has sent a final response (or is gone).
    pub fn has_final_response(&self, key: &TransactionKey) -> bool {
        self.txs
            .get(key)
            .is_none_or(|tx| !matches!(tx.state, State::Trying | State::Proceeding))
    }

    /// The request of a transaction.
    pub fn request(&self, key: &TransactionKey) -> Option<&Request> {
        self.txs.get(key).map(|tx| &tx.request)
    }

    /// Where a response of the server transaction goes.
    pub fn response_destination(&self, key: &TransactionKey) -> Option<Peer> {
        self.txs
            .get(key)
            .map(|tx| response_destination(&tx.request, tx.peer))
    }

    /// The driver could not deliver to `to` (a connection that could not
    /// be opened or was refused at its TLS handshake): every client
    /// transaction still waiting for a final response from it ends with
    /// [`TxEvent::TransportError`] (17.1.1.2, 17.1.2.2).
    pub fn transport_error(&mut self, to: Peer) {
        let failed: Vec<TransactionKey> = self
            .txs
            .iter()
            .filter(|(_, tx)| {
                !tx.server
                    && tx.peer == to
                    && matches!(tx.state, State::Calling | State::Trying | State::Proceeding)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in failed {
            self.event(TxEvent::TransportError { key: key.clone() });
            self.terminate(&key);
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let t = self.timers;
        let due: Vec<TransactionKey> = self
            .txs
            .iter()
            .filter(|(_, tx)| tx.next_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(tx) = self.txs.get_mut(&key) else {
                continue;
            };
            if tx.end_at.is_some_and(|d| d <= now) {
                self.terminate(&key);
                continue;
            }
            if tx.timeout_at.is_some_and(|d| d <= now) {
                let failure = tx.timeout_is_failure;
                if failure {
                    self.event(TxEvent::Timeout { key: key.clone() });
                }
                self.terminate(&key);
                continue;
            }
            if tx.retransmit_at.is_some_and(|d| d <= now) {
                let (msg, to) = if tx.server {
                    // Timer G: the final response again.
                    (tx.last.clone(), response_destination(&tx.request, tx.peer))
                } else {
                    (Some(Message::Request(tx.request.clone())), tx.peer)
                };
                tx.interval = if tx.server || !tx.invite {
                    (tx.interval * 2).min(t.t2)
                } else {
                    tx.interval * 2 // timer A doubles without a cap
                };
                if !tx.invite && !tx.server && tx.state == State::Proceeding {
                    tx.interval = t.t2;
                }
                tx.retransmit_at = Some(now + tx.interval);
                if let Some(m) = msg {
                    self.send(to, m);
                }
            }
        }
    }
}

/// Adds `received` (and `rport` when asked) to the top Via of a received
/// request (18.2.1, RFC 3581 section 4).
pub(crate) fn stamp_via(req: &mut Request, from: Peer) -> Result<(), ParseError> {
    let mut via = req.headers.top_via()?;
    let ip = from.addr.ip().to_string();
    let asked_rport = via.rport().is_some();
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    let same_host = host.parse::<IpAddr>().is_ok_and(|h| h == from.addr.ip());
    if asked_rport || !same_host {
        via.params.set("received", Some(&ip));
    }
    if asked_rport {
        via.params.set("rport", Some(&from.addr.port().to_string()));
    }
    req.headers.set_top_via(&via);
    Ok(())
}

/// Where responses to a request received from `from` go (18.2.2, RFC 3581
/// section 4): the same connection on a reliable transport; the source
/// address when rport was asked; else the source IP (`received`) and the
/// sent-by port (default 5060).
pub fn response_destination(req: &Request, from: Peer) -> Peer {
    if from.transport.is_reliable() {
        return from;
    }
    let Ok(via) = req.headers.top_via() else {
        return from;
    };
    let port = match via.rport() {
        Some(Some(p)) => p,
        Some(None) => from.addr.port(),
        None => via.port.unwrap_or(5060),
    };
    Peer {
        addr: SocketAddr::new(from.addr.ip(), port),
        transport: from.transport,
    }
}

/// The ACK a client INVITE transaction sends for a non-2xx final response
/// (17.1.1.3): Request-URI, Call-ID, From, CSeq number and Route of the
/// INVITE, To of the response, the INVITE's top Via only.
pub fn ack_for_non_2xx(invite: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Some(v) = invite.headers.list("Via").first() {
        ack.headers.push("Via", *v);
    }
    if let Some(mf) = invite.headers.get("Max-Forwards") {
        ack.headers.push("Max-Forwards", mf);
    }
    for name in ["From", "Call-ID"] {
        if let Some(v) = invite.headers.get(name) {
            ack.headers.push(name, v);
        }
    }
    if let Some(to) = resp.headers.get("To") {
        ack.headers.push("To", to);
    }
    if let Ok(cseq) = invite.headers.cseq() {
        ack.headers.push("CSeq", format!("{} ACK", cseq.seq));
    }
    for r in invite.headers.get_all("Route") {
        ack.headers.push("Route", r);
    }
    ack
}

/// A CANCEL for a request (9.1): its Request-URI, Call-ID, To, From, CSeq
/// number, top Via and Route.
pub fn cancel_for(req: &Request) -> Request {
    let mut c = Request::new(Method::Cancel, req.uri.clone());
    if let Some(v) = req.headers.list("Via").first() {
        c.headers.push("Via", *v);
    }
    if let Some(mf) = req.headers.get("Max-Forwards") {
        c.headers.push("Max-Forwards", mf);
    }
    for name in ["From", "To", "Call-ID"] {
        if let Some(v) = req.headers.get(name) {
            c.headers.push(name, v);
        }
    }
    if let Ok(cseq) = req.headers.cseq() {
        c.headers.push("CSeq", format!("{} CANCEL", cseq.seq));
    }
    for r in req.headers.get_all("Route") {
        c.headers.push("Route", r);
    }
    c
}

/// A Via for a request we send: `SIP/2.0/<transport> <host:port>;branch=<branch>;rport`.
pub fn our_via(transport: Transport, host: &str, port: Option<u16>, branch: &str) -> Via {
    let mut v = Via::new(transport.via_name(), host, port, branch);
    v.params.set("rport", None);
    v
}

#[cfg(test)]
mod tests;
