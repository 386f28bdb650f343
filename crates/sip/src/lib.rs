//! SIP for MediaMesh, sans-IO: the protocol parts of calling into a room
//! from a phone or trunk and of dialling out, as pure state machines (no
//! sockets, no clocks: time comes in as `Instant`; no threads; no panics on
//! any input; bounded memory).
//!
//! - [`message`]: requests and responses, parse and serialize (RFC 3261 7,
//!   25), [`StreamFramer`] for TCP; [`uri`] and [`header`] for the typed
//!   values (URIs, Via, From/To/Contact/Route, CSeq, Session-Expires).
//! - [`transaction`]: client and server transactions with their timers
//!   (RFC 3261 17, RFC 6026), received/rport (RFC 3581).
//! - [`dialog`]: dialogs, in-dialog requests, 2xx retransmission until the
//!   ACK, session timers (RFC 4028), hold detection, CANCEL.
//! - [`auth`]: digest authentication, server and client (RFC 2617, 7616,
//!   8760).
//! - [`sdp`]: the SDP of plain RTP audio calls (RFC 8866, 3264): parse,
//!   choose a codec (Opus, PCMU, PCMA, G.722, telephone-event), answer,
//!   offer.
//! - [`endpoint`]: a user agent tying them together: calls into rooms
//!   (`sip:ROOM@host`) with optional digest authentication or a token
//!   header, dial-out through a trunk with credentials, ringing and early
//!   media, CANCEL, BYE, re-INVITE/UPDATE (hold, session refresh), OPTIONS,
//!   400/405/415/420/422/481/501/503 for what it cannot serve.
//!
//! A driver (see `examples/sip_room.rs`, which SIPp's `uac`/`uas`
//! scenarios and baresip complete calls with) owns the sockets: it feeds
//! datagrams to [`Endpoint::handle_datagram`] (stream connections through a
//! [`StreamFramer`] each, then [`Endpoint::handle_message`]), sends every
//! [`Endpoint::poll_transmit`], handles every [`Endpoint::poll_event`]
//! (answering [`EndpointEvent::IncomingCall`] with [`Endpoint::accept`] or
//! [`Endpoint::reject`]) and calls [`Endpoint::handle_timeout`] at
//! [`Endpoint::poll_timeout`]. The media side uses the
//! [`sdp::Negotiated`] of [`sdp::answer`] or [`sdp::negotiated_from_answer`]
//! and should send RTP back to where RTP comes from (symmetric RTP), which
//! is what works behind NATs.

pub mod auth;
pub mod dialog;
pub mod endpoint;
pub mod header;
pub mod message;
pub mod sdp;
pub mod transaction;
pub mod uri;

#[cfg(test)]
mod testutil;

pub use auth::{Challenge, Credentials, DigestServer};
pub use dialog::{Dialog, DialogEvent, DialogId, DialogState};
pub use endpoint::{
    CallHandle, DialOptions, EndReason, Endpoint, EndpointConfig, EndpointError, EndpointEvent,
    Transmit,
};
pub use header::{CSeq, NameAddr, SessionExpires, Via};
pub use message::{Frame, Headers, Message, Method, ParseError, Request, Response, StreamFramer};
pub use sdp::SessionDescription;
pub use transaction::{
    Peer, TimerConfig, TransactionKey, Transactions, Transport, TxEvent, TxOutput,
};
pub use uri::Uri;
