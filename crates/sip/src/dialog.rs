//! Dialogs of INVITE sessions (RFC 3261 sections 12, 13.3.1.4, 14, 15; RFC
//! 4028 session timers; RFC 3264 section 8.4 hold; CANCEL per section 9.2).
//!
//! A [`Dialog`] is created by the UAS when it answers an INVITE with a tag
//! ([`Dialog::uas`], 12.1.1) or by the UAC from a response with a To tag
//! ([`Dialog::uac`], 12.1.2). It keeps the dialog id (Call-ID and tags), the
//! CSeq numbers, the remote target (Contact, refreshed by re-INVITE and
//! UPDATE) and the route set (Record-Route, reversed for the UAC), and
//! builds in-dialog requests ([`Dialog::create_request`], 12.2.1.1, with
//! loose and strict routing) and the ACK of a 2xx ([`Dialog::create_ack`],
//! 13.2.2.4). Incoming in-dialog requests are checked with
//! [`Dialog::on_request`] (CSeq order: 500; re-INVITE glare: 491, 14.2).
//!
//! The UAS retransmits its 2xx itself (the INVITE server transaction ends
//! with it): [`Dialog::start_2xx_retransmission`] resends it at T1, 2*T1,
//! ... capped at T2 until the ACK ([`Dialog::on_ack`]) or 64*T1
//! ([`DialogEvent::AckTimeout`]: end the session with BYE, 13.3.1.4).
//!
//! Session timers ([`SessionTimerConfig`], [`negotiate_uas`],
//! [`negotiate_uac`]): the interval and refresher are settled from
//! Session-Expires, Min-SE and `Supported: timer` (RFC 4028 sections 7-9);
//! the refresher gets [`DialogEvent::RefreshDue`] at half the interval, and
//! either side [`DialogEvent::SessionExpired`] when no refresh came by the
//! interval minus min(32 s, interval/3) (section 10).
//!
//! Everything takes the time as an argument; [`Dialog::poll_timeout`] and
//! [`Dialog::handle_timeout`] drive the timers, [`Dialog::poll_event`]
//! returns what happened.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::header::{NameAddr, Refresher, SessionExpires};
use crate::message::{Method, ParseError, Request, Response};
use crate::sdp::SessionDescription;
use crate::transaction::TimerConfig;
use crate::uri::{Scheme, Uri};

/// Errors of dialog handling; [`DialogError::status`] gives the response.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DialogError {
    #[error("malformed message: {0}")]
    Parse(#[from] ParseError),
    #[error("message has no tag to make a dialog with")]
    NoTag,
    #[error("request has no usable Contact")]
    NoContact,
    #[error("request does not belong to this dialog")]
    NotThisDialog,
    #[error("CSeq lower than the last one")]
    CSeqOutOfOrder,
    #[error("a re-INVITE of ours is pending")]
    Glare,
    #[error("a re-INVITE is still being processed")]
    InvitePending,
    #[error("the dialog is terminated")]
    Terminated,
}

impl DialogError {
    /// The status code to answer a request that caused this error with.
    pub fn status(&self) -> u16 {
        match self {
            DialogError::Parse(e) => e.status(),
            DialogError::NoTag | DialogError::NoContact => 400,
            DialogError::NotThisDialog | DialogError::Terminated => 481,
            DialogError::CSeqOutOfOrder | DialogError::InvitePending => 500,
            DialogError::Glare => 491,
        }
    }
}

/// Which side of the INVITE that made the dialog we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Uac,
    Uas,
}

/// Dialog state (12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
    Terminated,
}

/// Call-ID, local tag, remote tag (12).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The id of the dialog a received request belongs to, as seen by us.
    pub fn for_incoming(req: &Request) -> Result<DialogId, ParseError> {
        Ok(DialogId {
            call_id: req.headers.call_id()?.to_string(),
            local_tag: req.headers.to()?.tag().unwrap_or("").to_string(),
            remote_tag: req.headers.from()?.tag().unwrap_or("").to_string(),
        })
    }

    /// The id of the dialog a received response belongs to, as seen by us.
    pub fn for_response(resp: &Response) -> Result<DialogId, ParseError> {
        Ok(DialogId {
            call_id: resp.headers.call_id()?.to_string(),
            local_tag: resp.headers.from()?.tag().unwrap_or("").to_string(),
            remote_tag: resp.headers.to()?.tag().unwrap_or("").to_string(),
        })
    }
}

/// What a dialog's timers produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogEvent {
    /// Send this 2xx to the INVITE again (13.3.1.4), where the INVITE's
    /// responses go.
    Retransmit2xx(Response),
    /// No ACK came for our 2xx within 64*T1: send BYE (13.3.1.4).
    AckTimeout,
    /// We are the refresher and half the session interval passed: send a
    /// re-INVITE or UPDATE with [`Dialog::session_timer_headers`].
    RefreshDue,
    /// No refresh within the session interval: send BYE (RFC 4028 10).
    SessionExpired,
}

/// Session timer settings (RFC 4028).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerConfig {
    /// The interval we ask for or accept at most, in seconds (1800).
    pub session_expires: u32,
    /// The shortest interval we accept, in seconds (90, the RFC minimum).
    pub min_se: u32,
    /// Run a timer (we refresh) even when the UAC does not support them.
    pub refresh_without_support: bool,
}

impl Default for SessionTimerConfig {
    fn default() -> Self {
        SessionTimerConfig {
            session_expires: 1800,
            min_se: 90,
            refresh_without_support: true,
        }
    }
}

/// A negotiated session interval, relative to one INVITE/UPDATE transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerParams {
    pub interval: u32,
    /// `uac` is the side that sent the request of the transaction.
    pub refresher: Refresher,
    /// The UAC supports the extension (the 2xx then has `Require: timer`).
    pub uac_supports: bool,
}

impl SessionTimerParams {
    /// Adds Session-Expires (and Require/Supported: timer when the UAC
    /// supports it) to the 2xx of the UAS (RFC 4028 9).
    pub fn apply_to_response(&self, resp: &mut Response) {
        resp.headers.set(
            "Session-Expires",
            SessionExpires {
                delta: self.interval,
                refresher: Some(self.refresher),
            }
            .to_string(),
        );
        if self.uac_supports {
            resp.headers.push("Require", "timer");
            if !resp.headers.supports("timer") {
                resp.headers.push("Supported", "timer");
            }
        }
    }
}

/// The UAS side of RFC 4028 (section 9) for an INVITE or UPDATE: `Ok(None)`
/// for no session timer, `Err(min_se)` to reject with 422 and `Min-SE`.
pub fn negotiate_uas(
    req: &Request,
    cfg: &SessionTimerConfig,
) -> Result<Option<SessionTimerParams>, u32> {
    let supports = req.headers.supports("timer");
    let req_min = req.headers.min_se().ok().flatten().unwrap_or(90).max(90);
    let se = req.headers.session_expires().ok().flatten();
    match se {
        Some(se) => {
            let mut interval = se.delta;
            if interval < cfg.min_se {
                if supports {
                    return Err(cfg.min_se.max(req_min));
                }
                interval = cfg.min_se;
            }
            // We may lower the interval, never below the request's Min-SE.
            let interval = interval.min(cfg.session_expires.max(req_min)).max(req_min);
            let refresher = if !supports {
                Refresher::Uas
            } else {
                se.refresher.unwrap_or(Refresher::Uac)
            };
            Ok(Some(SessionTimerParams {
                interval,
                refresher,
                uac_supports: supports,
            }))
        }
        None if supports => Ok(Some(SessionTimerParams {
            interval: cfg.session_expires.max(req_min),
            refresher: Refresher::Uac,
            uac_supports: true,
        })),
        None if cfg.refresh_without_support => Ok(Some(SessionTimerParams {
            interval: cfg.session_expires.max(req_min),
            refresher: Refresher::Uas,
            uac_supports: false,
        })),
        None => Ok(None),
    }
}

/// Adds our session timer headers to an INVITE or UPDATE we send (RFC 4028
/// 7.1): `Supported: timer`, Session-Expires (the given interval, without a
/// refresher so the UAS may choose), Min-SE.
pub fn add_session_timer_headers(req: &mut Request, interval: u32, cfg: &SessionTimerConfig) {
    if !req.headers.supports("timer") {
        req.headers.push("Supported", "timer");
    }
    req.headers
        .set("Session-Expires", interval.max(cfg.min_se).to_string());
    req.headers.set("Min-SE", cfg.min_se.to_string());
}

/// The UAC side (RFC 4028 7.2): the timer a 2xx set, if any (a 2xx without
/// Session-Expires means none; without a refresher the UAC refreshes).
pub fn negotiate_uac(resp: &Response) -> Option<SessionTimerParams> {
    let se = resp.headers.session_expires().ok().flatten()?;
    Some(SessionTimerParams {
        interval: se.delta.max(1),
        refresher: se.refresher.unwrap_or(Refresher::Uac),
        uac_supports: true,
    })
}

/// The interval to retry with after a 422 (RFC 4028 7.3): its Min-SE.
pub fn retry_interval_after_422(resp: &Response, cfg: &SessionTimerConfig) -> Option<u32> {
    let min = resp.headers.min_se().ok().flatten()?;
    Some(min.max(cfg.min_se))
}

#[derive(Debug, Clone)]
struct SessionTimer {
    interval: Duration,
    we_refresh: bool,
    last_refresh: Instant,
    refresh_signalled: bool,
}

impl SessionTimer {
    fn refresh_at(&self) -> Option<Instant> {
        (self.we_refresh && !self.refresh_signalled).then(|| self.last_refresh + self.interval / 2)
    }

    fn expires_at(&self) -> Instant {
        let margin = (self.interval / 3).min(Duration::from_secs(32));
        self.last_refresh + self.interval - margin
    }
}

#[derive(Debug, Clone)]
struct Pending2xx {
    response: Response,
    seq: u32,
    next_at: Instant,
    interval: Duration,
    give_up_at: Instant,
}

/// Whether the remote holds the call (from the SDP of its offers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldChange {
    Held,
    Resumed,
}

/// One dialog of an INVITE session.
#[derive(Debug, Clone)]
pub struct Dialog {
    id: DialogId,
    role: Role,
    state: DialogState,
    timers: TimerConfig,
    local_seq: u32,
    remote_seq: Option<u32>,
    local_uri: NameAddr,
    remote_uri: NameAddr,
    remote_target: Uri,
    route_set: Vec<NameAddr>,
    local_contact: NameAddr,
    secure: bool,
    /// CSeq of the last INVITE that made or refreshed the session.
    invite_seq: u32,
    outgoing_invite: bool,
    incoming_invite: bool,
    pending_2xx: Option<Pending2xx>,
    last_ack: Option<Request>,
    session_timer: Option<SessionTimer>,
    remote_hold: bool,
    events: VecDeque<DialogEvent>,
}

impl Dialog {
    /// The UAS's dialog for `invite`, answered with To tag `local_tag`
    /// (12.1.1). Early until [`Dialog::confirm`].
    pub fn uas(
        invite: &Request,
        local_tag: &str,
        local_contact: NameAddr,
        timers: TimerConfig,
    ) -> Result<Dialog, DialogError> {
        let h = &invite.headers;
        let from = h.from()?;
        let mut to = h.to()?;
        let remote_tag = from.tag().ok_or(DialogError::NoTag)?.to_string();
        if local_tag.is_empty() {
            return Err(DialogError::NoTag);
        }
        to.set_tag(local_tag);
        let cseq = h.cseq()?;
        let target = h
            .contacts()?
            .into_iter()
            .next()
            .ok_or(DialogError::NoContact)?
            .uri;
        Ok(Dialog {
            id: DialogId {
                call_id: h.call_id()?.to_string(),
                local_tag: local_tag.to_string(),
                remote_tag,
            },
            role: Role::Uas,
            state: DialogState::Early,
            timers,
            local_seq: 0,
            remote_seq: Some(cseq.seq),
            local_uri: to,
            remote_uri: from,
            remote_target: target,
            route_set: h.record_routes()?,
            local_contact,
            secure: invite.uri.scheme == Scheme::Sips,
            invite_seq: cseq.seq,
            outgoing_invite: false,
            incoming_invite: true,
            pending_2xx: None,
            last_ack: None,
            session_timer: None,
            remote_hold: false,
            events: VecDeque::new(),
        })
    }

    /// The UAC's dialog from a response with a To tag to our `invite`
    /// (12.1.2): early for a 1xx, confirmed for a 2xx.
    pub fn uac(
        invite: &Request,
        resp: &Response,
        local_contact: NameAddr,
        timers: TimerConfig,
    ) -> Result<Dialog, DialogError> {
        let to = resp.headers.to()?;
        let remote_tag = to.tag().ok_or(DialogError::NoTag)?.to_string();
        let from = invite.headers.from()?;
        let local_tag = from.tag().ok_or(DialogError::NoTag)?.to_string();
        let cseq = invite.headers.cseq()?;
        let target = resp
            .headers
            .contacts()?
            .into_iter()
            .next()
            .map(|c| c.uri)
            .ok_or(DialogError::NoContact)?;
        let mut route_set = resp.headers.record_routes()?;
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: invite.headers.call_id()?.to_string(),
                local_tag,
                remote_tag,
            },
            role: Role::Uac,
            state: if resp.is_success() {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            timers,
            local_seq: cseq.seq,
            remote_seq: None,
            local_uri: from,
            remote_uri: to,
            remote_target: target,
            route_set,
            local_contact,
            secure: invite.uri.scheme == Scheme::Sips,
            invite_seq: cseq.seq,
            outgoing_invite: !resp.is_success(),
            incoming_invite: false,
            pending_2xx: None,
            last_ack: None,
            session_timer: None,
            remote_hold: false,
            events: VecDeque::new(),
        })
    }

    pub fn id(&self) -> &DialogId {
        &self.id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn state(&self) -> DialogState {
        self.state
    }

    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }

    pub fn route_set(&self) -> &[NameAddr] {
        &self.route_set
    }

    pub fn remote_uri(&self) -> &NameAddr {
        &self.remote_uri
    }

    pub fn local_uri(&self) -> &NameAddr {
        &self.local_uri
    }

    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Whether the remote put the call on hold (its last offer).
    pub fn remote_hold(&self) -> bool {
        self.remote_hold
    }

    /// Where in-dialog requests go first: the first route, else the remote
    /// target (behind a NAT the driver may prefer the flow the dialog came
    /// over).
    pub fn next_hop(&self) -> &Uri {
        self.route_set
            .first()
            .map_or(&self.remote_target, |r| &r.uri)
    }

    /// An early dialog becomes confirmed (a 2xx was sent or received).
    pub fn confirm(&mut self) {
        if self.state == DialogState::Early {
            self.state = DialogState::Confirmed;
        }
    }

    /// Ends the dialog (BYE sent or received, CANCEL, error).
    pub fn terminate(&mut self) {
        self.state = DialogState::Terminated;
        self.pending_2xx = None;
        self.session_timer = None;
    }

    /// A new request in the dialog (12.2.1.1), without Via (the caller adds
    /// one with a new branch). INVITE, UPDATE and BYE bump the local CSeq
    /// like every method but ACK and CANCEL; INVITE and UPDATE carry our
    /// Contact. For ACK use [`Dialog::create_ack`].
    pub fn create_request(&mut self, method: Method) -> Request {
        if method != Method::Ack && method != Method::Cancel {
            self.local_seq = self.local_seq.wrapping_add(1) & 0x7fff_ffff;
        }
        let seq = self.local_seq;
        if method == Method::Invite {
            self.invite_seq = seq;
            self.outgoing_invite = true;
        }
        if method == Method::Bye {
            self.state = DialogState::Terminated;
            self.pending_2xx = None;
            self.session_timer = None;
        }
        let with_contact = matches!(method, Method::Invite | Method::Update);
        self.build(method, seq, with_contact)
    }

    fn build(&self, method: Method, seq: u32, with_contact: bool) -> Request {
        let (uri, routes) = match self.route_set.first() {
            None => (self.remote_target.clone(), Vec::new()),
            Some(first) if first.uri.is_loose_router() => {
                (self.remote_target.clone(), self.route_set.clone())
            }
            Some(first) => {
                // Strict routing (12.2.1.1): the first route becomes the
                // Request-URI, the remote target the last Route.
                let mut uri = first.uri.clone();
                uri.params.remove("method");
                uri.params.remove("maddr");
                uri.params.remove("ttl");
                uri.params.remove("transport");
                uri.params.remove("lr");
                uri.headers.clear();
                let mut routes: Vec<NameAddr> = self.route_set[1..].to_vec();
                routes.push(NameAddr::new(self.remote_target.clone()));
                (uri, routes)
            }
        };
        let mut req = Request::new(method.clone(), uri);
        let h = &mut req.headers;
        h.push("Max-Forwards", "70");
        h.push("From", self.local_uri.to_string());
        h.push("To", self.remote_uri.to_string());
        h.push("Call-ID", self.id.call_id.clone());
        h.push("CSeq", format!("{seq} {method}"));
        for r in routes {
            h.push("Route", r.to_string());
        }
        if with_contact {
            h.push("Contact", self.local_contact.to_string());
        }
        req
    }

    /// The ACK for a 2xx to our INVITE (13.2.2.4), without Via; credentials
    /// of the INVITE are copied. It is kept to answer retransmitted 2xx
    /// ([`Dialog::ack_for_retransmitted_2xx`]).
    pub fn create_ack(&mut self, invite: &Request) -> Request {
        let seq = invite.headers.cseq().map_or(self.invite_seq, |c| c.seq);
        let mut ack = self.build(Method::Ack, seq, false);
        for name in ["Authorization", "Proxy-Authorization"] {
            for v in invite.headers.get_all(name) {
                ack.headers.push(name, v);
            }
        }
        self.outgoing_invite = false;
        self.last_ack = Some(ack.clone());
        ack
    }

    /// A 2xx came again (its ACK was lost): the ACK to send again, if this
    /// 2xx is for the INVITE we acknowledged.
    pub fn ack_for_retransmitted_2xx(&self, resp: &Response) -> Option<&Request> {
        let seq = resp.headers.cseq().ok()?.seq;
        let ack = self.last_ack.as_ref()?;
        (ack.headers.cseq().ok()?.seq == seq).then_some(ack)
    }

    /// A response to a request we sent in this dialog (as UAC of that
    /// transaction): confirms an early dialog on a 2xx to the INVITE
    /// (recomputing the route set, 12.1.2), refreshes the remote target on
    /// a 2xx to INVITE/UPDATE (12.2.1.2), applies the session timer of a
    /// 2xx, and terminates the dialog on 481 or 408 (12.2.1.2) and on a
    /// failed initial INVITE.
    pub fn on_response(&mut self, resp: &Response, now: Instant) -> Result<(), DialogError> {
        let cseq = resp.headers.cseq()?;
        if matches!(resp.status, 408 | 481) && cseq.method != Method::Invite || resp.status == 481 {
            self.terminate();
            return Ok(());
        }
        let target_refresh = matches!(cseq.method, Method::Invite | Method::Update);
        if cseq.method == Method::Invite && resp.is_final() {
            self.outgoing_invite = false;
            if !resp.is_success() && self.state == DialogState::Early {
                self.terminate();
                return Ok(());
            }
        }
        if resp.is_success() && target_refresh {
            if cseq.method == Method::Invite && self.state == DialogState::Early {
                let mut rs = resp.headers.record_routes()?;
                rs.reverse();
                self.route_set = rs;
                self.state = DialogState::Confirmed;
            }
            if let Some(c) = resp.headers.contacts()?.into_iter().next() {
                self.remote_target = c.uri;
            }
            if let Some(p) = negotiate_uac(resp) {
                self.set_session_timer(p, true, now);
            }
        }
        Ok(())
    }

    /// A request the remote sent in this dialog (12.2.2). ACK and CANCEL
    /// are not checked (use [`Dialog::on_ack`]); an error says what to
    /// answer ([`DialogError::status`]). A BYE terminates the dialog; an
    /// INVITE or UPDATE refreshes the remote target.
    pub fn on_request(&mut self, req: &Request) -> Result<(), DialogError> {
        if DialogId::for_incoming(req)? != self.id {
            return Err(DialogError::NotThisDialog);
        }
        if matches!(req.method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        if self.state == DialogState::Terminated {
            return Err(DialogError::Terminated);
        }
        let cseq = req.headers.cseq()?;
        if self.remote_seq.is_some_and(|r| cseq.seq < r) {
            return Err(DialogError::CSeqOutOfOrder);
        }
        if req.method == Method::Invite {
            if self.outgoing_invite {
                return Err(DialogError::Glare);
            }
            if self.incoming_invite || self.pending_2xx.is_some() {
                return Err(DialogError::InvitePending);
            }
        }
        self.remote_seq = Some(cseq.seq);
        match req.method {
            Method::Invite | Method::Update => {
                if req.method == Method::Invite {
                    self.incoming_invite = true;
                    self.invite_seq = cseq.seq;
                }
                if let Some(c) = req.headers.contacts()?.into_iter().next() {
                    self.remote_target = c.uri;
                }
            }
            Method::Bye => self.terminate(),
            _ => {}
        }
        Ok(())
    }

    /// Reads the SDP offer of a remote (re-)INVITE or UPDATE: tells when the
    /// remote puts the call on hold or takes it off (RFC 3264 8.4).
    pub fn on_remote_offer(&mut self, sdp: &SessionDescription) -> Option<HoldChange> {
        let hold = sdp.is_hold();
        if hold == self.remote_hold {
            return None;
        }
        self.remote_hold = hold;
        Some(if hold {
            HoldChange::Held
        } else {
            HoldChange::Resumed
        })
    }

    /// We answered the remote's INVITE with a non-2xx final response: the
    /// next re-INVITE may come.
    pub fn incoming_invite_failed(&mut self) {
        self.incoming_invite = false;
    }

    /// We sent a 2xx to the remote's INVITE (or re-INVITE): the dialog is
    /// confirmed and the 2xx is retransmitted until the ACK (13.3.1.4).
    pub fn start_2xx_retransmission(&mut self, response: Response, now: Instant) {
        self.confirm();
        self.incoming_invite = false;
        let seq = response.headers.cseq().map_or(self.invite_seq, |c| c.seq);
        let t1 = self.timers.t1;
        self.pending_2xx = Some(Pending2xx {
            response,
            seq,
            next_at: now + t1,
            interval: t1,
            give_up_at: now + 64 * t1,
        });
    }

    /// An ACK came in this dialog: stops the 2xx retransmission. Returns
    /// whether it acknowledged our pending 2xx.
    pub fn on_ack(&mut self, ack: &Request) -> bool {
        let Ok(cseq) = ack.headers.cseq() else {
            return false;
        };
        match &self.pending_2xx {
            Some(p) if p.seq == cseq.seq => {
                self.pending_2xx = None;
                true
            }
            _ => false,
        }
    }

    /// Whether we still wait for the ACK of our 2xx.
    pub fn awaiting_ack(&self) -> bool {
        self.pending_2xx.is_some()
    }

    /// Starts or restarts the session timer after a successful INVITE or
    /// UPDATE transaction; `we_sent_request` says whether we were its UAC
    /// (the refresher `uac` then means us).
    pub fn set_session_timer(
        &mut self,
        p: SessionTimerParams,
        we_sent_request: bool,
        now: Instant,
    ) {
        let we_refresh = (p.refresher == Refresher::Uac) == we_sent_request;
        self.session_timer = Some(SessionTimer {
            interval: Duration::from_secs(u64::from(p.interval.max(1))),
            we_refresh,
            last_refresh: now,
            refresh_signalled: false,
        });
    }

    /// Whether a session timer runs and we are its refresher.
    pub fn session_timer(&self) -> Option<(Duration, bool)> {
        self.session_timer
            .as_ref()
            .map(|t| (t.interval, t.we_refresh))
    }

    /// Headers for our refresh request (RFC 4028 7.4): the current interval
    /// with us as refresher.
    pub fn session_timer_headers(&self, req: &mut Request, cfg: &SessionTimerConfig) {
        let interval = self
            .session_timer
            .as_ref()
            .map_or(cfg.session_expires, |t| t.interval.as_secs() as u32);
        add_session_timer_headers(req, interval, cfg);
        req.headers.set(
            "Session-Expires",
            SessionExpires {
                delta: interval.max(cfg.min_se),
                refresher: Some(Refresher::Uac),
            }
            .to_string(),
        );
    }

    pub fn poll_event(&mut self) -> Option<DialogEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut add = |i: Instant| t = Some(t.map_or(i, |x| x.min(i)));
        if let Some(p) = &self.pending_2xx {
            add(p.next_at.min(p.give_up_at));
        }
        if let Some(s) = &self.session_timer {
            if let Some(r) = s.refresh_at() {
                add(r);
            }
            add(s.expires_at());
        }
        t
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let t2 = self.timers.t2;
        if let Some(p) = &mut self.pending_2xx {
            if now >= p.give_up_at {
                self.pending_2xx = None;
                self.events.push_back(DialogEvent::AckTimeout);
            } else if now >= p.next_at {
                p.interval = (p.interval * 2).min(t2);
                p.next_at = now + p.interval;
                let r = p.response.clone();
                self.events.push_back(DialogEvent::Retransmit2xx(r));
            }
        }
        if let Some(s) = &mut self.session_timer {
            if now >= s.expires_at() {
                self.session_timer = None;
                self.events.push_back(DialogEvent::SessionExpired);
            } else if s.refresh_at().is_some_and(|r| now >= r) {
                s.refresh_signalled = true;
                self.events.push_back(DialogEvent::RefreshDue);
            }
        }
    }
}

/// The answers to a CANCEL (9.2): 200 for the CANCEL, and, when the INVITE
/// it matches has no final response yet, a 487 for the INVITE (with the To
/// tag `to_tag` its provisional responses carried). With no matching INVITE
/// the CANCEL gets 481.
pub fn cancel_responses(
    cancel: &Request,
    invite: Option<(&Request, bool)>,
    to_tag: &str,
) -> (Response, Option<Response>) {
    match invite {
        None => (Response::for_request(cancel, 481), None),
        Some((invite, has_final)) => {
            let mut ok = Response::for_request(cancel, 200);
            ok.set_to_tag(to_tag);
            let terminated = (!has_final).then(|| {
                let mut r = Response::for_request(invite, 487);
                r.set_to_tag(to_tag);
                r
            });
            (ok, terminated)
        }
    }
}

#[cfg(test)]
mod tests;
