//! A SIP user agent for MediaMesh rooms: the transactions, dialogs, digest
//! authentication and SDP of this crate tied together, sans-IO (RFC 3261
//! sections 8, 12-15, 17-18; RFC 3581; RFC 4028; RFC 3264).
//!
//! Incoming calls: an INVITE to `sip:ROOM@host` becomes
//! [`EndpointEvent::IncomingCall`] (room, caller, SDP offer, the token
//! header if configured); the driver may check digest credentials with
//! [`Endpoint::authenticate`] (which sends the 401 itself), then answers
//! with [`Endpoint::ringing`], [`Endpoint::accept`] (200 with its SDP
//! answer, retransmitted until the ACK) or [`Endpoint::reject`]. CANCEL,
//! BYE, re-INVITE and UPDATE (hold, session refresh) and INFO are handled
//! here; re-offers are answered with our last SDP, its direction mirrored
//! ([`EndpointEvent::RemoteSdp`] tells the media side). OPTIONS gets 200.
//!
//! Outgoing calls: [`Endpoint::dial`] sends an INVITE with our offer to a
//! SIP URI through a next hop (a trunk or the target), answering 401/407
//! with the credentials given, and 422 with a larger Session-Expires; the
//! driver sees [`EndpointEvent::Ringing`] (with early media SDP on 183) and
//! [`EndpointEvent::Answered`]. [`Endpoint::hangup`] sends CANCEL or BYE as
//! the state needs; every call ends with one [`EndpointEvent::Ended`].
//!
//! Malformed requests get 400 (or 505/416/513) with the parse error as
//! reason phrase, statelessly; unsupported `Require` gets 420, methods we
//! know but do not serve 405 with Allow, unknown methods 501. Memory is
//! bounded by `max_calls` and the transaction limit.
//!
//! The driver owns the sockets: it passes datagrams to
//! [`Endpoint::handle_datagram`] (or messages from a per-connection
//! [`crate::StreamFramer`] to [`Endpoint::handle_message`]), sends every
//! [`Endpoint::poll_transmit`], handles every [`Endpoint::poll_event`], and
//! calls [`Endpoint::handle_timeout`] at [`Endpoint::poll_timeout`]. Host
//! names are not resolved here: dial-out takes the next hop as an address,
//! and in-dialog requests go back over the flow the call came in on (which
//! is what works behind NATs).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::auth::{authorize, AuthOutcome, DigestServer};
use crate::dialog::{
    add_session_timer_headers, negotiate_uac, negotiate_uas, retry_interval_after_422, Dialog,
    DialogEvent, DialogState, SessionTimerConfig, SessionTimerParams,
};
use crate::header::NameAddr;
use crate::message::{Message, Method, Request, Response};
use crate::sdp::{Direction, SessionDescription};
use crate::transaction::{
    our_via, response_destination, stamp_via, Peer, TimerConfig, TransactionKey, Transactions,
    Transport, TxError, TxEvent, TxOutput,
};
use crate::uri::Uri;

/// Methods we serve.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO";
/// Option tags we support.
const SUPPORTED: &[&str] = &["timer"];

/// Settings of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Our host (public address or name) for Via and Contact.
    pub host: String,
    /// Our SIP port (UDP and TCP).
    pub port: u16,
    /// Our SIP-over-TLS port, when it differs from `port` (Via and Contact
    /// of TLS flows name it, so phones open new connections to it).
    pub tls_port: Option<u16>,
    /// User part of our Contact.
    pub contact_user: String,
    /// Sent as User-Agent and Server.
    pub user_agent: String,
    pub timers: TimerConfig,
    pub session_timer: SessionTimerConfig,
    /// Most calls at once; more INVITEs get 503.
    pub max_calls: usize,
    /// Most transactions at once (each keeps its request, up to 64 KiB);
    /// more requests get 503.
    pub max_transactions: usize,
    /// A header whose value is passed on as the call's token (e.g.
    /// `X-MediaMesh-Token`).
    pub token_header: Option<String>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            host: "127.0.0.1".to_string(),
            port: 5060,
            tls_port: None,
            contact_user: "mediamesh".to_string(),
            user_agent: "MediaMesh".to_string(),
            timers: TimerConfig::default(),
            session_timer: SessionTimerConfig::default(),
            max_calls: 1000,
            max_transactions: 4096,
            token_header: None,
        }
    }
}

/// Identifies a call of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(pub u64);

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    pub message: Message,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The remote sent BYE.
    RemoteHangup,
    /// [`Endpoint::hangup`] or [`Endpoint::reject`].
    LocalHangup,
    /// The caller cancelled before we answered.
    Cancelled,
    /// Our INVITE got this final response (or the 401 of
    /// [`Endpoint::authenticate`]).
    Rejected(u16),
    /// No response to our request.
    Timeout,
    /// Our request could not be delivered (no connection to the next hop,
    /// or its TLS certificate was refused).
    Unreachable,
    /// No ACK for our 2xx (13.3.1.4).
    AckTimeout,
    /// No session refresh (RFC 4028).
    SessionExpired,
    /// An in-dialog request failed with this status (481, 408).
    Failed(u16),
}

/// What the endpoint tells the driver.
// A few events per call: the size of the SDP-carrying variants is no cost
// worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// Answer with `ringing`, `accept` or `reject` (after `authenticate`
    /// if the room needs it).
    IncomingCall {
        call: CallHandle,
        /// The user part of the Request-URI.
        room: String,
        from: NameAddr,
        request_uri: Uri,
        /// `None` for an INVITE without SDP (our 200 then carries an offer
        /// and the answer comes with the ACK as [`EndpointEvent::RemoteSdp`]).
        offer: Option<SessionDescription>,
        /// The value of the configured token header.
        token: Option<String>,
        /// Where the INVITE came from.
        source: Peer,
    },
    /// Our INVITE is ringing; a 183 may carry early media.
    Ringing {
        call: CallHandle,
        early_media: Option<SessionDescription>,
    },
    /// Our INVITE was answered (and acknowledged).
    Answered {
        call: CallHandle,
        answer: Option<SessionDescription>,
    },
    /// The ACK for our 200 came: media flows.
    Established {
        call: CallHandle,
    },
    /// The remote sent new SDP (a re-INVITE or UPDATE offer, answered
    /// already, or the answer in an ACK); `hold` when it holds the call.
    RemoteSdp {
        call: CallHandle,
        sdp: SessionDescription,
        hold: bool,
    },
    /// An INFO in the call (DTMF relay and the like), answered 200.
    Info {
        call: CallHandle,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    Ended {
        call: CallHandle,
        reason: EndReason,
    },
    /// The answer to [`Endpoint::send_options`] (`None`: no answer).
    OptionsResult {
        to: Peer,
        status: Option<u16>,
    },
}

/// Errors of the driver's commands.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EndpointError {
    #[error("no such call")]
    NoSuchCall,
    #[error("the call is not in a state for this")]
    InvalidState,
    #[error("no digest server configured")]
    NoDigestServer,
    #[error("too many calls")]
    TooManyCalls,
    #[error("transaction layer: {0}")]
    Transaction(#[from] TxError),
}

/// How to dial out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialOptions {
    /// Whom to call (Request-URI and To).
    pub target: Uri,
    /// Where to send the INVITE (a trunk or the target itself).
    pub next_hop: Peer,
    /// Our From: user part and display name.
    pub from_user: String,
    pub from_display: Option<String>,
    /// Credentials for 401/407 challenges (a trunk account).
    pub credentials: Option<(String, String)>,
    /// Extra headers for the INVITE.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// UAS: IncomingCall sent, no final response yet.
    Offered,
    /// UAS: 2xx sent, waiting for the ACK.
    Answered,
    /// UAC: INVITE sent.
    Calling,
    Confirmed,
}

#[derive(Debug)]
struct Call {
    outgoing: bool,
    state: CallState,
    /// UAS: the source of the INVITE; UAC: the next hop.
    peer: Peer,
    /// UAS: where responses to the INVITE go.
    resp_dest: Peer,
    /// The initial INVITE (UAC: the latest one sent).
    invite: Request,
    invite_key: TransactionKey,
    local_tag: String,
    dialog: Option<Dialog>,
    local_sdp: Option<SessionDescription>,
    timer: Option<SessionTimerParams>,
    credentials: Option<(String, String)>,
    retries: u8,
    /// The driver hung up (Ended already reported).
    ended_reported: bool,
    /// UAC: the last ACK sent, for retransmitted 2xx.
    last_ack: Option<Request>,
    /// The remote allows UPDATE (refresh with it rather than re-INVITE).
    remote_allows_update: bool,
    /// UAC: the last provisional response reported (status, had SDP), so
    /// retransmitted ones are not reported again.
    last_provisional: Option<(u16, bool)>,
}

#[derive(Debug, Clone)]
enum Purpose {
    Invite(CallHandle),
    ReInvite(CallHandle, Request),
    Update(CallHandle),
    Bye,
    Cancel,
    Options(Peer),
}

/// Unpredictable identifiers from a seed: SHA-256 of seed and a counter.
#[derive(Debug)]
struct Ids {
    seed: [u8; 32],
    counter: u64,
}

impl Ids {
    fn hex(&mut self, bytes: usize) -> String {
        self.counter += 1;
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(self.counter.to_be_bytes());
        let d = h.finalize();
        d.iter()
            .take(bytes.min(32))
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The user agent.
#[derive(Debug)]
pub struct Endpoint {
    cfg: EndpointConfig,
    tx: Transactions,
    digest: Option<DigestServer>,
    ids: Ids,
    next_call: u64,
    calls: BTreeMap<CallHandle, Call>,
    /// (Call-ID, our tag) -> call.
    by_dialog: HashMap<(String, String), CallHandle>,
    /// Initial INVITE server transactions -> call (for CANCEL).
    server_invites: BTreeMap<TransactionKey, CallHandle>,
    client_txs: BTreeMap<TransactionKey, Purpose>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<EndpointEvent>,
}

impl Endpoint {
    /// `seed` makes tags, branches and Call-IDs (give it random bytes).
    pub fn new(cfg: EndpointConfig, seed: [u8; 32]) -> Endpoint {
        let tx = Transactions::new(cfg.timers).with_max_transactions(cfg.max_transactions);
        Endpoint {
            cfg,
            tx,
            digest: None,
            ids: Ids { seed, counter: 0 },
            next_call: 1,
            calls: BTreeMap::new(),
            by_dialog: HashMap::new(),
            server_invites: BTreeMap::new(),
            client_txs: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Enables [`Endpoint::authenticate`].
    pub fn with_digest(mut self, server: DigestServer) -> Endpoint {
        self.digest = Some(server);
        self
    }

    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Transactions in progress (bounded; they end by their timers).
    pub fn transaction_count(&self) -> usize {
        self.tx.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .filter_map(|c| c.dialog.as_ref().and_then(Dialog::poll_timeout))
            .chain(self.tx.poll_timeout())
            .min()
    }

    /// A datagram from `from`. What does not parse is answered 400 when
    /// enough of it can be read to answer, else dropped.
    pub fn handle_datagram(&mut self, from: Peer, bytes: &[u8], now: Instant) {
        match Message::parse(bytes) {
            Ok(m) => self.handle_message(from, m, now),
            Err(e) => {
                if let Some(req) = Request::salvage(bytes) {
                    if req.method != Method::Ack {
                        self.stateless(req, from, e.status(), Some(&e.to_string()), &[]);
                    }
                }
            }
        }
    }

    /// A parsed message from `from` (for streams, from a
    /// [`crate::StreamFramer`]).
    pub fn handle_message(&mut self, from: Peer, msg: Message, now: Instant) {
        match msg {
            Message::Request(req) => {
                if let Err(e) = req.validate() {
                    if req.method != Method::Ack {
                        self.stateless(req, from, e.status(), Some(&e.to_string()), &[]);
                    }
                    return;
                }
                if !matches!(req.method, Method::Ack | Method::Cancel) {
                    let unsupported: Vec<String> = req
                        .headers
                        .require()
                        .into_iter()
                        .filter(|t| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
                        .map(str::to_string)
                        .collect();
                    if !unsupported.is_empty() {
                        let h = [("Unsupported", unsupported.join(", "))];
                        self.stateless(req, from, 420, None, &h);
                        return;
                    }
                }
                match self
                    .tx
                    .handle_message(Message::Request(req.clone()), from, now)
                {
                    Ok(()) => {}
                    Err(TxError::Overloaded) if req.method != Method::Ack => {
                        self.stateless(req, from, 503, None, &[]);
                    }
                    Err(_) => {}
                }
            }
            Message::Response(resp) => {
                if resp.validate().is_ok() {
                    let _ = self.tx.handle_message(Message::Response(resp), from, now);
                }
            }
        }
        self.process(now);
    }

    /// The driver could not deliver to `to` (see
    /// [`Transactions::transport_error`]): calls whose request waited on it
    /// end with [`EndReason::Unreachable`].
    pub fn transport_error(&mut self, to: Peer, now: Instant) {
        self.tx.transport_error(to);
        self.process(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
        self.process(now);
        let due: Vec<CallHandle> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.dialog
                    .as_ref()
                    .and_then(Dialog::poll_timeout)
                    .is_some_and(|t| t <= now)
            })
            .map(|(h, _)| *h)
            .collect();
        for h in due {
            let mut evs = Vec::new();
            if let Some(d) = self.calls.get_mut(&h).and_then(|c| c.dialog.as_mut()) {
                d.handle_timeout(now);
                while let Some(e) = d.poll_event() {
                    evs.push(e);
                }
            }
            for e in evs {
                self.on_dialog_event(h, e, now);
            }
        }
        self.process(now);
    }

    fn on_dialog_event(&mut self, h: CallHandle, e: DialogEvent, now: Instant) {
        let Some(call) = self.calls.get(&h) else {
            return;
        };
        match e {
            DialogEvent::Retransmit2xx(r) => {
                let to = call.resp_dest;
                self.transmits.push_back(Transmit {
                    to,
                    message: Message::Response(r),
                });
            }
            DialogEvent::AckTimeout => self.end_with_bye(h, EndReason::AckTimeout, now),
            DialogEvent::SessionExpired => self.end_with_bye(h, EndReason::SessionExpired, now),
            DialogEvent::RefreshDue => self.send_refresh(h, now),
        }
    }

    fn process(&mut self, now: Instant) {
        while let Some(o) = self.tx.poll_output() {
            match o {
                TxOutput::Send { to, message } => {
                    self.transmits.push_back(Transmit { to, message })
                }
                TxOutput::Event(e) => self.on_tx_event(e, now),
            }
        }
    }

    fn new_handle(&mut self) -> CallHandle {
        let h = CallHandle(self.next_call);
        self.next_call += 1;
        h
    }

    fn via(&mut self, transport: Transport) -> String {
        let branch = format!("z9hG4bK{}", self.ids.hex(12));
        our_via(
            transport,
            &self.cfg.host,
            Some(self.port(transport)),
            &branch,
        )
        .to_string()
    }

    /// Our port for `transport`.
    fn port(&self, transport: Transport) -> u16 {
        match (transport, self.cfg.tls_port) {
            (Transport::Tls, Some(p)) => p,
            _ => self.cfg.port,
        }
    }

    fn contact(&self, transport: Transport) -> NameAddr {
        let mut uri = Uri::sip(
            Some(&self.cfg.contact_user),
            &self.cfg.host,
            Some(self.port(transport)),
        );
        if transport != Transport::Udp {
            uri.params.set(
                "transport",
                Some(&transport.via_name().to_ascii_lowercase()),
            );
        }
        NameAddr::new(uri)
    }

    /// A response to `req` with our To tag and Server header.
    fn response(&self, req: &Request, status: u16, tag: Option<&str>) -> Response {
        let mut r = Response::for_request(req, status);
        if status > 100 {
            if let Some(t) = tag {
                r.set_to_tag(t);
            }
        }
        r.headers.push("Server", self.cfg.user_agent.clone());
        if status == 405 || (req.method == Method::Options && status == 200) {
            r.headers.push("Allow", ALLOW);
        }
        r
    }

    /// Answers without a transaction (malformed requests, overload, 420).
    fn stateless(
        &mut self,
        mut req: Request,
        from: Peer,
        status: u16,
        reason: Option<&str>,
        extra: &[(&str, String)],
    ) {
        if stamp_via(&mut req, from).is_err() {
            return;
        }
        let tag = self.ids.hex(8);
        let mut r = self.response(&req, status, Some(&tag));
        if let Some(reason) = reason {
            r = r.with_reason(reason);
        }
        for (n, v) in extra {
            r.headers.push(n, v.clone());
        }
        let to = response_destination(&req, from);
        self.transmits.push_back(Transmit {
            to,
            message: Message::Response(r),
        });
    }

    fn respond(&mut self, key: &TransactionKey, resp: Response, now: Instant) {
        let _ = self.tx.respond(key, resp, now);
    }

    fn on_tx_event(&mut self, e: TxEvent, now: Instant) {
        match e {
            TxEvent::Request { key, request, from } => self.on_request(key, request, from, now),
            TxEvent::Ack { request, .. } => self.on_ack(request),
            TxEvent::Response { key, response } => self.on_response(key, response, now),
            TxEvent::StrayResponse { response, .. } => self.on_stray_response(response),
            TxEvent::Timeout { key } => self.on_timeout(key, EndReason::Timeout, now),
            TxEvent::TransportError { key } => self.on_timeout(key, EndReason::Unreachable, now),
            TxEvent::Terminated { key } => {
                self.server_invites.remove(&key);
                self.client_txs.remove(&key);
            }
        }
    }

    fn on_request(&mut self, key: TransactionKey, req: Request, from: Peer, now: Instant) {
        let has_to_tag = req.headers.to().is_ok_and(|t| t.tag().is_some());
        match req.method {
            Method::Invite if !has_to_tag => self.on_new_invite(key, req, from, now),
            Method::Invite | Method::Update => self.on_reoffer(key, req, now),
            Method::Bye => self.on_bye(key, req, now),
            Method::Cancel => self.on_cancel(key, req, now),
            Method::Options => {
                let tag = self.ids.hex(8);
                let mut r = self.response(&req, 200, Some(&tag));
                r.headers.push("Accept", "application/sdp");
                r.headers.push("Supported", SUPPORTED.join(", "));
                self.respond(&key, r, now);
            }
            Method::Info => {
                let status = match self.find_dialog_call(&req) {
                    Some(h) => {
                        let ok = self
                            .calls
                            .get_mut(&h)
                            .and_then(|c| c.dialog.as_mut())
                            .map(|d| d.on_request(&req));
                        match ok {
                            Some(Ok(())) => {
                                self.events.push_back(EndpointEvent::Info {
                                    call: h,
                                    content_type: req.headers.content_type(),
                                    body: req.body.clone(),
                                });
                                200
                            }
                            Some(Err(e)) => e.status(),
                            None => 481,
                        }
                    }
                    None => 481,
                };
                let r = self.response(&req, status, None);
                self.respond(&key, r, now);
            }
            Method::Ack => {}
            Method::Other(_) => {
                let tag = self.ids.hex(8);
                let r = self.response(&req, 501, Some(&tag));
                self.respond(&key, r, now);
            }
            _ => {
                let tag = self.ids.hex(8);
                let r = self.response(&req, 405, Some(&tag));
                self.respond(&key, r, now);
            }
        }
    }

    fn find_dialog_call(&self, req: &Request) -> Option<CallHandle> {
        let call_id = req.headers.call_id().ok()?.to_string();
        let tag = req.headers.to().ok()?.tag()?.to_string();
        self.by_dialog.get(&(call_id, tag)).copied()
    }

    fn parse_sdp_body(
        req_body: &[u8],
        content_type: Option<String>,
    ) -> Result<Option<SessionDescription>, u16> {
        if req_body.is_empty() {
            return Ok(None);
        }
        match content_type.as_deref() {
            Some("application/sdp") => SessionDescription::parse(req_body)
                .map(Some)
                .map_err(|_| 400),
            _ => Err(415),
        }
    }

    fn on_new_invite(&mut self, key: TransactionKey, req: Request, from: Peer, now: Instant) {
        let tag = self.ids.hex(8);
        let reject =
            |this: &mut Self, status: u16, reason: Option<&str>, extra: &[(&str, String)]| {
                let mut r = this.response(&req, status, Some(&tag));
                if let Some(reason) = reason {
                    r = r.with_reason(reason);
                }
                for (n, v) in extra {
                    r.headers.push(n, v.clone());
                }
                this.respond(&key, r, now);
            };
        if self.calls.len() >= self.cfg.max_calls {
            return reject(self, 503, None, &[]);
        }
        let room = match &req.uri.user {
            Some(u) if !u.is_empty() && u.len() <= 128 => u.clone(),
            _ => return reject(self, 404, Some("No room in the Request-URI"), &[]),
        };
        let offer = match Self::parse_sdp_body(&req.body, req.headers.content_type()) {
            Ok(o) => o,
            Err(415) => return reject(self, 415, None, &[("Accept", "application/sdp".into())]),
            Err(s) => return reject(self, s, Some("Malformed SDP"), &[]),
        };
        let timer = match negotiate_uas(&req, &self.cfg.session_timer) {
            Ok(t) => t,
            Err(min) => return reject(self, 422, None, &[("Min-SE", min.to_string())]),
        };
        let contact = self.contact(from.transport);
        let dialog = match Dialog::uas(&req, &tag, contact, self.cfg.timers) {
            Ok(d) => d,
            Err(e) => {
                let reason = e.to_string();
                return reject(self, e.status(), Some(&reason), &[]);
            }
        };
        let h = self.new_handle();
        let token = self
            .cfg
            .token_header
            .as_deref()
            .and_then(|name| req.headers.get(name))
            .map(str::to_string);
        let from_addr = req.headers.from().ok();
        let remote_allows_update = req
            .headers
            .list("Allow")
            .iter()
            .any(|m| m.eq_ignore_ascii_case("UPDATE"));
        let call_id = dialog.id().call_id.clone();
        self.by_dialog.insert((call_id, tag.clone()), h);
        self.server_invites.insert(key.clone(), h);
        let resp_dest = self.tx.response_destination(&key).unwrap_or(from);
        self.calls.insert(
            h,
            Call {
                outgoing: false,
                state: CallState::Offered,
                peer: from,
                resp_dest,
                invite: req.clone(),
                invite_key: key,
                local_tag: tag,
                dialog: Some(dialog),
                local_sdp: None,
                timer,
                credentials: None,
                retries: 0,
                ended_reported: false,
                last_ack: None,
                remote_allows_update,
                last_provisional: None,
            },
        );
        if let Some(from_addr) = from_addr {
            self.events.push_back(EndpointEvent::IncomingCall {
                call: h,
                room,
                from: from_addr,
                request_uri: req.uri.clone(),
                offer,
                token,
                source: from,
            });
        }
    }

    fn offered(&self, h: CallHandle) -> Result<&Call, EndpointError> {
        let c = self.calls.get(&h).ok_or(EndpointError::NoSuchCall)?;
        if c.state != CallState::Offered || c.outgoing {
            return Err(EndpointError::InvalidState);
        }
        Ok(c)
    }

    /// Checks the digest credentials of an incoming call's INVITE against
    /// our [`DigestServer`]: `Ok(Some(user))` when they are right; else the
    /// endpoint sends a 401 with fresh challenges, ends the call and
    /// returns `Ok(None)` (the caller retries with a new INVITE).
    pub fn authenticate(
        &mut self,
        call: CallHandle,
        now: Instant,
        password_of: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, EndpointError> {
        let c = self.offered(call)?;
        let digest = self.digest.as_ref().ok_or(EndpointError::NoDigestServer)?;
        match digest.check(&c.invite, false, now, password_of) {
            AuthOutcome::Authorized(user) => Ok(Some(user)),
            AuthOutcome::Challenge(mut r) => {
                r.set_to_tag(&c.local_tag);
                let key = c.invite_key.clone();
                self.respond(&key, r, now);
                self.remove_call(call, Some(EndReason::Rejected(401)));
                self.process(now);
                Ok(None)
            }
        }
    }

    /// Sends 180 Ringing, or 183 Session Progress with early media SDP.
    pub fn ringing(
        &mut self,
        call: CallHandle,
        early_media: Option<&SessionDescription>,
        now: Instant,
    ) -> Result<(), EndpointError> {
        let c = self.offered(call)?;
        let status = if early_media.is_some() { 183 } else { 180 };
        let mut r = self.response(&c.invite, status, Some(&c.local_tag));
        r.headers
            .push("Contact", self.contact(c.peer.transport).to_string());
        if let Some(sdp) = early_media {
            r.headers.push("Content-Type", "application/sdp");
            r.body = sdp.to_bytes();
        }
        let key = c.invite_key.clone();
        self.respond(&key, r, now);
        self.process(now);
        Ok(())
    }

    /// Answers an incoming call with 200 and our SDP (the answer to the
    /// offer, or our offer when the INVITE had none).
    pub fn accept(
        &mut self,
        call: CallHandle,
        sdp: &SessionDescription,
        now: Instant,
    ) -> Result<(), EndpointError> {
        let c = self.offered(call)?;
        let mut r = self.response(&c.invite, 200, Some(&c.local_tag));
        r.headers
            .push("Contact", self.contact(c.peer.transport).to_string());
        r.headers.push("Allow", ALLOW);
        r.headers.push("Supported", SUPPORTED.join(", "));
        if let Some(t) = &c.timer {
            t.apply_to_response(&mut r);
        }
        r.headers.push("Content-Type", "application/sdp");
        r.body = sdp.to_bytes();
        let key = c.invite_key.clone();
        let timer = c.timer;
        self.respond(&key, r.clone(), now);
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = CallState::Answered;
            c.local_sdp = Some(sdp.clone());
            if let Some(d) = c.dialog.as_mut() {
                d.start_2xx_retransmission(r, now);
                if let Some(t) = timer {
                    d.set_session_timer(t, false, now);
                }
            }
        }
        self.process(now);
        Ok(())
    }

    /// Declines an incoming call with `status` (4xx-6xx).
    pub fn reject(
        &mut self,
        call: CallHandle,
        status: u16,
        now: Instant,
    ) -> Result<(), EndpointError> {
        let c = self.offered(call)?;
        let status = if (300..700).contains(&status) {
            status
        } else {
            603
        };
        let r = self.response(&c.invite, status, Some(&c.local_tag));
        let key = c.invite_key.clone();
        self.respond(&key, r, now);
        self.remove_call(call, Some(EndReason::LocalHangup));
        self.process(now);
        Ok(())
    }

    /// Ends a call: 603 to an unanswered incoming call, CANCEL for an
    /// outgoing one not answered yet (an answer that crosses it is
    /// acknowledged and ended with BYE), BYE otherwise. Reports
    /// [`EndReason::LocalHangup`] at once.
    pub fn hangup(&mut self, call: CallHandle, now: Instant) -> Result<(), EndpointError> {
        let c = self.calls.get_mut(&call).ok_or(EndpointError::NoSuchCall)?;
        if c.ended_reported {
            return Ok(());
        }
        match (c.outgoing, c.state) {
            (false, CallState::Offered) => return self.reject(call, 603, now),
            (true, CallState::Calling) => {
                c.ended_reported = true;
                let key = c.invite_key.clone();
                if let Ok(Some(k)) = self.tx.cancel(&key, now) {
                    self.client_txs.insert(k, Purpose::Cancel);
                }
                self.events.push_back(EndpointEvent::Ended {
                    call,
                    reason: EndReason::LocalHangup,
                });
            }
            _ => self.end_with_bye(call, EndReason::LocalHangup, now),
        }
        self.process(now);
        Ok(())
    }

    /// Sends a re-INVITE with new SDP (to hold the remote: our SDP with
    /// `a=sendonly`; to resume: `a=sendrecv`).
    pub fn reinvite(
        &mut self,
        call: CallHandle,
        sdp: &SessionDescription,
        now: Instant,
    ) -> Result<(), EndpointError> {
        let c = self.calls.get_mut(&call).ok_or(EndpointError::NoSuchCall)?;
        if c.state != CallState::Confirmed {
            return Err(EndpointError::InvalidState);
        }
        c.local_sdp = Some(sdp.clone());
        let d = c.dialog.as_mut().ok_or(EndpointError::InvalidState)?;
        let mut req = d.create_request(Method::Invite);
        if c.timer.is_some() {
            d.session_timer_headers(&mut req, &self.cfg.session_timer);
        }
        req.headers.push("Content-Type", "application/sdp");
        req.body = sdp.to_bytes();
        self.send_in_dialog(call, req, now, |r| Purpose::ReInvite(call, r))?;
        self.process(now);
        Ok(())
    }

    /// Sends an OPTIONS ping (keep-alive of a trunk or a NAT binding); the
    /// answer comes as [`EndpointEvent::OptionsResult`].
    pub fn send_options(
        &mut self,
        target: Uri,
        to: Peer,
        now: Instant,
    ) -> Result<(), EndpointError> {
        let mut req = Request::new(Method::Options, target.clone());
        let via = self.via(to.transport);
        req.headers.push("Via", via);
        req.headers.push("Max-Forwards", "70");
        let from = format!(
            "<sip:{}@{}>;tag={}",
            self.cfg.contact_user,
            self.cfg.host,
            self.ids.hex(8)
        );
        req.headers.push("From", from);
        req.headers.push("To", NameAddr::new(target).to_string());
        req.headers.push("Call-ID", self.ids.hex(16));
        req.headers.push("CSeq", "1 OPTIONS");
        req.headers.push("User-Agent", self.cfg.user_agent.clone());
        let key = self.tx.send_request(req, to, now)?;
        self.client_txs.insert(key, Purpose::Options(to));
        self.process(now);
        Ok(())
    }

    /// Calls `opts.target` with our SDP offer.
    pub fn dial(
        &mut self,
        opts: DialOptions,
        offer: &SessionDescription,
        now: Instant,
    ) -> Result<CallHandle, EndpointError> {
        if self.calls.len() >= self.cfg.max_calls {
            return Err(EndpointError::TooManyCalls);
        }
        let transport = opts.next_hop.transport;
        let tag = self.ids.hex(8);
        let mut from = NameAddr::new(Uri::sip(Some(&opts.from_user), &self.cfg.host, None));
        from.display_name = opts.from_display.clone();
        from.set_tag(&tag);
        let call_id = self.ids.hex(16);
        let mut req = Request::new(Method::Invite, opts.target.clone());
        req.headers.push("Via", self.via(transport));
        req.headers.push("Max-Forwards", "70");
        req.headers.push("From", from.to_string());
        req.headers
            .push("To", NameAddr::new(opts.target.clone()).to_string());
        req.headers.push("Call-ID", call_id.clone());
        req.headers.push("CSeq", "1 INVITE");
        req.headers
            .push("Contact", self.contact(transport).to_string());
        req.headers.push("Allow", ALLOW);
        req.headers.push("User-Agent", self.cfg.user_agent.clone());
        add_session_timer_headers(
            &mut req,
            self.cfg.session_timer.session_expires,
            &self.cfg.session_timer,
        );
        for (n, v) in &opts.headers {
            req.headers.push(n, v.clone());
        }
        req.headers.push("Content-Type", "application/sdp");
        req.body = offer.to_bytes();
        let key = self.tx.send_request(req.clone(), opts.next_hop, now)?;
        let h = self.new_handle();
        self.client_txs.insert(key.clone(), Purpose::Invite(h));
        self.by_dialog.insert((call_id, tag.clone()), h);
        self.calls.insert(
            h,
            Call {
                outgoing: true,
                state: CallState::Calling,
                peer: opts.next_hop,
                resp_dest: opts.next_hop,
                invite: req,
                invite_key: key,
                local_tag: tag,
                dialog: None,
                local_sdp: Some(offer.clone()),
                timer: None,
                credentials: opts.credentials,
                retries: 0,
                ended_reported: false,
                last_ack: None,
                remote_allows_update: false,
                last_provisional: None,
            },
        );
        self.process(now);
        Ok(h)
    }

    /// Where requests inside a call go: back over the flow of a call that
    /// came in (NAT-friendly); for our calls, the Contact when it is an
    /// address and no route set is in use, else the next hop.
    fn target_of(call: &Call) -> Peer {
        if !call.outgoing {
            return call.peer;
        }
        match &call.dialog {
            Some(d) if d.route_set().is_empty() => {
                d.remote_target()
                    .socket_addr()
                    .map_or(call.peer, |addr| Peer {
                        addr,
                        transport: call.peer.transport,
                    })
            }
            _ => call.peer,
        }
    }

    fn send_in_dialog(
        &mut self,
        h: CallHandle,
        mut req: Request,
        now: Instant,
        purpose: impl FnOnce(Request) -> Purpose,
    ) -> Result<(), EndpointError> {
        let call = self.calls.get(&h).ok_or(EndpointError::NoSuchCall)?;
        let to = Self::target_of(call);
        let via = self.via(to.transport);
        req.headers.push_front("Via", via);
        req.headers.push("User-Agent", self.cfg.user_agent.clone());
        let key = self.tx.send_request(req.clone(), to, now)?;
        self.client_txs.insert(key, purpose(req));
        Ok(())
    }

    fn end_with_bye(&mut self, h: CallHandle, reason: EndReason, now: Instant) {
        let bye = self
            .calls
            .get_mut(&h)
            .and_then(|c| c.dialog.as_mut())
            .filter(|d| d.state() != DialogState::Terminated)
            .map(|d| d.create_request(Method::Bye));
        if let Some(bye) = bye {
            let _ = self.send_in_dialog(h, bye, now, |_| Purpose::Bye);
        }
        self.remove_call(h, Some(reason));
    }

    fn remove_call(&mut self, h: CallHandle, reason: Option<EndReason>) {
        if let Some(c) = self.calls.remove(&h) {
            self.by_dialog.retain(|_, v| *v != h);
            self.server_invites.remove(&c.invite_key);
            if let Some(reason) = reason {
                if !c.ended_reported {
                    self.events
                        .push_back(EndpointEvent::Ended { call: h, reason });
                }
            }
        }
    }

    fn send_refresh(&mut self, h: CallHandle, now: Instant) {
        let st = self.cfg.session_timer;
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let use_update = c.remote_allows_update;
        let sdp = c.local_sdp.clone();
        let Some(d) = c.dialog.as_mut() else {
            return;
        };
        if use_update {
            let mut req = d.create_request(Method::Update);
            d.session_timer_headers(&mut req, &st);
            let _ = self.send_in_dialog(h, req, now, |_| Purpose::Update(h));
        } else {
            let mut req = d.create_request(Method::Invite);
            d.session_timer_headers(&mut req, &st);
            if let Some(sdp) = sdp {
                req.headers.push("Content-Type", "application/sdp");
                req.body = sdp.to_bytes();
            }
            let _ = self.send_in_dialog(h, req, now, |r| Purpose::ReInvite(h, r));
        }
    }

    /// Our SDP again, version bumped, answering an offer's direction.
    fn reanswer(
        local: &SessionDescription,
        offer: Option<&SessionDescription>,
    ) -> SessionDescription {
        let mut sdp = local.clone();
        sdp.origin.session_version = sdp.origin.session_version.wrapping_add(1);
        let dir = match offer.and_then(|o| o.audio().map(|m| (o, m))) {
            Some((o, m)) => {
                let unspecified = o.connection_for(m).is_some_and(|c| c.is_unspecified());
                match (o.direction_of(m), unspecified) {
                    (Direction::Inactive, _) | (Direction::RecvOnly, true) => Direction::Inactive,
                    (Direction::SendOnly, _) | (_, true) => Direction::RecvOnly,
                    (Direction::RecvOnly, false) => Direction::SendOnly,
                    (Direction::SendRecv, false) => Direction::SendRecv,
                }
            }
            None => Direction::SendRecv,
        };
        if let Some(m) = sdp
            .media
            .iter_mut()
            .find(|m| m.media == "audio" && m.port != 0)
        {
            m.direction = Some(dir);
        }
        sdp
    }

    fn on_reoffer(&mut self, key: TransactionKey, req: Request, now: Instant) {
        let Some(h) = self.find_dialog_call(&req) else {
            let r = self.response(&req, 481, None);
            return self.respond(&key, r, now);
        };
        let st = self.cfg.session_timer;
        let is_invite = req.method == Method::Invite;
        let checked = match self.calls.get_mut(&h).and_then(|c| c.dialog.as_mut()) {
            Some(d) => d.on_request(&req),
            None => {
                let r = self.response(&req, 481, None);
                return self.respond(&key, r, now);
            }
        };
        let fail = |this: &mut Self, status: u16, extra: Option<(&str, String)>| {
            if is_invite {
                if let Some(d) = this.calls.get_mut(&h).and_then(|c| c.dialog.as_mut()) {
                    d.incoming_invite_failed();
                }
            }
            let mut r = this.response(&req, status, None);
            if let Some((n, v)) = extra {
                r.headers.push(n, v);
            }
            this.respond(&key, r, now);
        };
        if let Err(e) = checked {
            let retry = (e.status() == 500).then(|| ("Retry-After", "1".to_string()));
            // Our dialog state is unchanged by a rejected request.
            let mut r = self.response(&req, e.status(), None);
            if let Some((n, v)) = retry {
                r.headers.push(n, v);
            }
            return self.respond(&key, r, now);
        }
        let offer = match Self::parse_sdp_body(&req.body, req.headers.content_type()) {
            Ok(o) => o,
            Err(s) => return fail(self, s, None),
        };
        let timer = match negotiate_uas(&req, &st) {
            Ok(t) => t,
            Err(min) => return fail(self, 422, Some(("Min-SE", min.to_string()))),
        };
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(local) = c.local_sdp.clone() else {
            return fail(self, 491, None);
        };
        // UPDATE without SDP is a pure session refresh.
        let answer = (is_invite || offer.is_some()).then(|| Self::reanswer(&local, offer.as_ref()));
        if let Some(a) = &answer {
            c.local_sdp = Some(a.clone());
        }
        let hold = match (offer.as_ref(), c.dialog.as_mut()) {
            (Some(o), Some(d)) => {
                d.on_remote_offer(o);
                d.remote_hold()
            }
            (_, d) => d.is_some_and(|d| d.remote_hold()),
        };
        let transport = c.peer.transport;
        let mut r = self.response(&req, 200, None);
        r.headers
            .push("Contact", self.contact(transport).to_string());
        if let Some(t) = &timer {
            t.apply_to_response(&mut r);
        }
        if let Some(a) = &answer {
            r.headers.push("Content-Type", "application/sdp");
            r.body = a.to_bytes();
        }
        self.respond(&key, r.clone(), now);
        if let Some(d) = self.calls.get_mut(&h).and_then(|c| c.dialog.as_mut()) {
            if is_invite {
                d.start_2xx_retransmission(r, now);
            }
            if let Some(t) = timer {
                d.set_session_timer(t, false, now);
            }
        }
        if let Some(sdp) = offer {
            self.events
                .push_back(EndpointEvent::RemoteSdp { call: h, sdp, hold });
        }
    }

    fn on_bye(&mut self, key: TransactionKey, req: Request, now: Instant) {
        let Some(h) = self.find_dialog_call(&req) else {
            let r = self.response(&req, 481, None);
            return self.respond(&key, r, now);
        };
        let checked = self
            .calls
            .get_mut(&h)
            .and_then(|c| c.dialog.as_mut())
            .map(|d| d.on_request(&req));
        match checked {
            Some(Ok(())) => {
                let r = self.response(&req, 200, None);
                self.respond(&key, r, now);
                // A BYE before our final response ends the INVITE too.
                if let Some(c) = self.calls.get(&h) {
                    if !c.outgoing && !self.tx.has_final_response(&c.invite_key) {
                        let r487 = self.response(&c.invite, 487, Some(&c.local_tag));
                        let ik = c.invite_key.clone();
                        self.respond(&ik, r487, now);
                    }
                }
                self.remove_call(h, Some(EndReason::RemoteHangup));
            }
            Some(Err(e)) => {
                let r = self.response(&req, e.status(), None);
                self.respond(&key, r, now);
            }
            None => {
                let r = self.response(&req, 481, None);
                self.respond(&key, r, now);
            }
        }
    }

    fn on_cancel(&mut self, key: TransactionKey, req: Request, now: Instant) {
        let target = self
            .tx
            .invite_for_cancel(&key)
            .and_then(|ik| self.server_invites.get(&ik).map(|h| (ik, *h)));
        let Some((ik, h)) = target else {
            let r = self.response(&req, 481, None);
            return self.respond(&key, r, now);
        };
        let Some(c) = self.calls.get(&h) else {
            let r = self.response(&req, 481, None);
            return self.respond(&key, r, now);
        };
        let has_final = self.tx.has_final_response(&ik);
        let (ok, terminated) =
            crate::dialog::cancel_responses(&req, Some((&c.invite, has_final)), &c.local_tag);
        self.respond(&key, ok, now);
        if let Some(mut r487) = terminated {
            r487.headers.push("Server", self.cfg.user_agent.clone());
            self.respond(&ik, r487, now);
            self.remove_call(h, Some(EndReason::Cancelled));
        }
    }

    fn on_ack(&mut self, ack: Request) {
        let Some(h) = self.find_dialog_call(&ack) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(d) = c.dialog.as_mut() else {
            return;
        };
        if d.on_request(&ack).is_err() || !d.on_ack(&ack) {
            return;
        }
        let first = c.state == CallState::Answered;
        if first {
            c.state = CallState::Confirmed;
            self.events
                .push_back(EndpointEvent::Established { call: h });
        }
        if !ack.body.is_empty() {
            if let Ok(Some(sdp)) = Self::parse_sdp_body(&ack.body, ack.headers.content_type()) {
                let hold = sdp.is_hold();
                self.events
                    .push_back(EndpointEvent::RemoteSdp { call: h, sdp, hold });
            }
        }
    }

    fn send_ack(&mut self, h: CallHandle, invite: &Request, now: Instant) {
        let _ = now;
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(d) = c.dialog.as_mut() else {
            return;
        };
        let mut ack = d.create_ack(invite);
        let to = Self::target_of(c);
        let via = {
            let branch = format!("z9hG4bK{}", self.ids.hex(12));
            our_via(
                to.transport,
                &self.cfg.host,
                Some(self.port(to.transport)),
                &branch,
            )
            .to_string()
        };
        ack.headers.push_front("Via", via);
        if let Some(c) = self.calls.get_mut(&h) {
            c.last_ack = Some(ack.clone());
        }
        self.transmits.push_back(Transmit {
            to,
            message: Message::Request(ack),
        });
    }

    fn resend_ack(&mut self, h: CallHandle, resp: &Response) {
        let Some(c) = self.calls.get(&h) else {
            return;
        };
        let seq = resp.headers.cseq().map(|c| c.seq).ok();
        if let Some(ack) = &c.last_ack {
            if ack.headers.cseq().map(|c| c.seq).ok() == seq {
                let to = Self::target_of(c);
                self.transmits.push_back(Transmit {
                    to,
                    message: Message::Request(ack.clone()),
                });
            }
        }
    }

    fn on_stray_response(&mut self, resp: Response) {
        let Ok(cseq) = resp.headers.cseq() else {
            return;
        };
        if cseq.method != Method::Invite || !resp.is_success() {
            return;
        }
        let key = (|| {
            Some((
                resp.headers.call_id().ok()?.to_string(),
                resp.headers.from().ok()?.tag()?.to_string(),
            ))
        })();
        if let Some(h) = key.and_then(|k| self.by_dialog.get(&k).copied()) {
            self.resend_ack(h, &resp);
        }
    }

    fn on_response(&mut self, key: TransactionKey, resp: Response, now: Instant) {
        let Some(purpose) = self.client_txs.get(&key).cloned() else {
            return;
        };
        match purpose {
            Purpose::Options(to) => {
                if resp.is_final() {
                    self.events.push_back(EndpointEvent::OptionsResult {
                        to,
                        status: Some(resp.status),
                    });
                }
            }
            Purpose::Invite(h) => self.on_invite_response(h, key, resp, now),
            Purpose::ReInvite(h, req) => {
                if resp.is_provisional() {
                    return;
                }
                let already_acked = self
                    .calls
                    .get(&h)
                    .and_then(|c| c.last_ack.as_ref())
                    .and_then(|a| a.headers.cseq().ok())
                    .map(|c| c.seq)
                    == resp.headers.cseq().ok().map(|c| c.seq);
                if resp.is_success() && already_acked {
                    return self.resend_ack(h, &resp);
                }
                let terminated = match self.calls.get_mut(&h).and_then(|c| c.dialog.as_mut()) {
                    Some(d) => {
                        let _ = d.on_response(&resp, now);
                        d.state() == DialogState::Terminated
                    }
                    None => return,
                };
                if resp.is_success() {
                    self.send_ack(h, &req, now);
                    if let Ok(Some(sdp)) =
                        Self::parse_sdp_body(&resp.body, resp.headers.content_type())
                    {
                        let hold = sdp.is_hold();
                        self.events
                            .push_back(EndpointEvent::RemoteSdp { call: h, sdp, hold });
                    }
                } else if terminated || resp.status == 408 {
                    self.end_with_bye(h, EndReason::Failed(resp.status), now);
                }
            }
            Purpose::Update(h) => {
                if resp.is_final() {
                    let terminated = match self.calls.get_mut(&h).and_then(|c| c.dialog.as_mut()) {
                        Some(d) => {
                            let _ = d.on_response(&resp, now);
                            d.state() == DialogState::Terminated
                        }
                        None => return,
                    };
                    if terminated || resp.status == 408 {
                        self.end_with_bye(h, EndReason::Failed(resp.status), now);
                    }
                }
            }
            Purpose::Bye | Purpose::Cancel => {}
        }
    }

    fn on_invite_response(
        &mut self,
        h: CallHandle,
        key: TransactionKey,
        resp: Response,
        now: Instant,
    ) {
        let Some(transport) = self.calls.get(&h).map(|c| c.peer.transport) else {
            return;
        };
        let contact = self.contact(transport);
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        if key != c.invite_key {
            return;
        }
        let invite = c.invite.clone();
        let has_tag = resp.headers.to().is_ok_and(|t| t.tag().is_some());
        match resp.status {
            100 => {}
            101..=199 => {
                if has_tag && c.dialog.is_none() {
                    c.dialog = Dialog::uac(&invite, &resp, contact, self.cfg.timers).ok();
                }
                let early_media = Self::parse_sdp_body(&resp.body, resp.headers.content_type())
                    .ok()
                    .flatten();
                let seen = (resp.status, early_media.is_some());
                if !c.ended_reported && c.last_provisional != Some(seen) {
                    c.last_provisional = Some(seen);
                    self.events.push_back(EndpointEvent::Ringing {
                        call: h,
                        early_media,
                    });
                }
            }
            200..=299 => {
                if c.state == CallState::Confirmed {
                    return self.resend_ack(h, &resp);
                }
                let same_dialog = c.dialog.as_ref().is_some_and(|d| {
                    resp.headers
                        .to()
                        .ok()
                        .and_then(|t| t.tag().map(str::to_string))
                        .as_deref()
                        == Some(d.id().remote_tag.as_str())
                });
                if same_dialog {
                    if let Some(d) = c.dialog.as_mut() {
                        let _ = d.on_response(&resp, now);
                    }
                } else {
                    c.dialog = Dialog::uac(&invite, &resp, contact, self.cfg.timers).ok();
                    if let (Some(d), Some(t)) = (c.dialog.as_mut(), negotiate_uac(&resp)) {
                        d.set_session_timer(t, true, now);
                    }
                }
                c.timer = negotiate_uac(&resp);
                c.remote_allows_update = resp
                    .headers
                    .list("Allow")
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case("UPDATE"));
                if c.dialog.is_none() {
                    // A 2xx we cannot make a dialog from (no tag or Contact).
                    return self.remove_call(h, Some(EndReason::Failed(resp.status)));
                }
                c.state = CallState::Confirmed;
                let hung_up = c.ended_reported;
                self.send_ack(h, &invite, now);
                if hung_up {
                    // The answer crossed our CANCEL: end it now.
                    self.end_with_bye(h, EndReason::LocalHangup, now);
                } else {
                    let answer = Self::parse_sdp_body(&resp.body, resp.headers.content_type())
                        .ok()
                        .flatten();
                    self.events
                        .push_back(EndpointEvent::Answered { call: h, answer });
                }
            }
            401 | 407 | 422 if c.retries < 2 && !c.ended_reported => {
                let peer = c.peer;
                let credentials = c.credentials.clone();
                let mut retry = invite.clone();
                let ok = match resp.status {
                    422 => match retry_interval_after_422(&resp, &self.cfg.session_timer) {
                        Some(se) => {
                            add_session_timer_headers(&mut retry, se, &self.cfg.session_timer);
                            true
                        }
                        None => false,
                    },
                    _ => match &credentials {
                        Some((user, pass)) => {
                            let cnonce = self.ids.hex(8);
                            authorize(&mut retry, &resp, user, pass, &cnonce).is_ok()
                        }
                        None => false,
                    },
                };
                if !ok {
                    return self.remove_call(h, Some(EndReason::Rejected(resp.status)));
                }
                let seq = retry.headers.cseq().map_or(1, |c| c.seq) + 1;
                retry.headers.set("CSeq", format!("{seq} INVITE"));
                retry.headers.remove("Via");
                let via = self.via(peer.transport);
                retry.headers.push_front("Via", via);
                match self.tx.send_request(retry.clone(), peer, now) {
                    Ok(k) => {
                        self.client_txs.insert(k.clone(), Purpose::Invite(h));
                        if let Some(c) = self.calls.get_mut(&h) {
                            c.retries += 1;
                            c.invite = retry;
                            c.invite_key = k;
                            c.dialog = None;
                        }
                    }
                    Err(_) => self.remove_call(h, Some(EndReason::Rejected(resp.status))),
                }
            }
            status => self.remove_call(h, Some(EndReason::Rejected(status))),
        }
    }

    /// A client transaction failed without a final response (`reason`:
    /// timer B/F, or a transport error).
    fn on_timeout(&mut self, key: TransactionKey, reason: EndReason, now: Instant) {
        match self.client_txs.get(&key).cloned() {
            Some(Purpose::Invite(h)) if self.calls.get(&h).is_some_and(|c| c.invite_key == key) => {
                self.remove_call(h, Some(reason));
            }
            Some(Purpose::ReInvite(h, _)) | Some(Purpose::Update(h)) => {
                self.end_with_bye(h, reason, now)
            }
            Some(Purpose::Options(to)) => self
                .events
                .push_back(EndpointEvent::OptionsResult { to, status: None }),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
