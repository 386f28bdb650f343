//! The SIP part of the HTTP API (app secret as Bearer): `POST /api/sip/dial`
//! calls out, `GET /api/sip/calls` lists this node's calls, `DELETE
//! /api/sip/calls/{call}` hangs one up. Requests go to the SIP thread as
//! [`SipRequest`]s.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::{Dial, SipRequest};
use crate::api::{check_app_secret, ApiError, AppState};
use crate::worker::Caller;

/// What a call is, for `GET /api/sip/calls`.
#[derive(Debug, Clone, Serialize)]
pub struct CallInfo {
    pub call: u64,
    pub room: String,
    pub peer: String,
    /// `in` (a phone called) or `out` (dialled).
    pub direction: &'static str,
    /// The phone's SIP address and transport.
    pub remote: String,
}

/// A call as `GET /api/sip/calls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CallView {
    #[serde(flatten)]
    pub info: CallInfo,
    /// `ringing` (dialled, no answer yet; media may flow as early media),
    /// `answered`, or `ended` (for a minute after it ended).
    pub state: &'static str,
    /// Why an ended call ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn sip_thread(state: &AppState) -> Result<mpsc::Sender<SipRequest>, ApiError> {
    state.sip.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SIP is off on this node (--sip-listen)",
        )
    })
}

fn stopped() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the SIP thread stopped")
}

#[derive(Deserialize)]
struct DialRequest {
    room: String,
    /// The callee's peer name in the room.
    peer: String,
    /// Whom to call: `sip:user@host:port`.
    to: String,
    /// Where to send the INVITE (`host:port` or a SIP URI, whose
    /// `transport` parameter or `sips:` scheme picks TCP or TLS): a trunk or
    /// proxy; default: the target's host and port.
    via: Option<String>,
    /// Credentials for the trunk's digest challenge.
    username: Option<String>,
    password: Option<String>,
}

/// `POST /api/sip/dial` (app secret): calls a SIP URI; the callee joins the
/// room as `peer` when it answers. `202 {"call": n}` once the INVITE is sent.
pub async fn dial(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    check_app_secret(&state, &headers)?;
    let req: DialRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected JSON {{room, peer, to, via?, username?, password?}}: {e}"),
        )
    })?;
    let tx = sip_thread(&state)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    if req.room.is_empty() || req.peer.is_empty() {
        return Err(bad("room and peer are required".into()));
    }
    let target = mediamesh_sip::Uri::parse(&req.to).map_err(|e| bad(format!("to: {e}")))?;
    let request_credentials = match (req.username, req.password) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => return Err(bad("username and password go together".into())),
    };
    let trunk = state.config.sip.as_ref().and_then(|s| s.trunk.as_ref());
    let local = state
        .config
        .sip
        .as_ref()
        .map_or(std::net::Ipv4Addr::LOCALHOST.into(), |s| s.listen.ip());
    let hop = |uri: mediamesh_sip::Uri| async move { crate::sip::next_hop_of(&uri, local).await };
    // The request's next hop, else the configured trunk (with its
    // credentials), else the target itself.
    let (next_hop, credentials) = match (&req.via, trunk) {
        (Some(v), _) => {
            let uri = mediamesh_sip::Uri::parse(v)
                .or_else(|_| mediamesh_sip::Uri::parse(&format!("sip:{v}")))
                .map_err(|e| bad(format!("via {v}: {e} (host:port or a SIP URI)")))?;
            (
                hop(uri).await.map_err(|e| bad(format!("via {e}")))?,
                request_credentials,
            )
        }
        (None, Some(t)) => (
            hop(t.uri.clone())
                .await
                .map_err(|e| bad(format!("trunk {e}")))?,
            request_credentials.or_else(|| t.credentials.clone()),
        ),
        (None, None) => (
            hop(target.clone())
                .await
                .map_err(|e| bad(format!("to {e} (or give via)")))?,
            request_credentials,
        ),
    };
    let (reply, rx) = oneshot::channel();
    let dial = Dial {
        caller: Caller {
            app: state.config.app_id.clone(),
            room: req.room,
            peer: Some(req.peer),
        },
        target,
        next_hop,
        credentials,
        reply,
    };
    tx.send(SipRequest::Dial(Box::new(dial)))
        .await
        .map_err(|_| stopped())?;
    let call = rx.await.map_err(|_| stopped())?.map_err(bad)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "call": call }))).into_response())
}

/// `GET /api/sip/calls`: this node's calls.
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    check_app_secret(&state, &headers)?;
    let tx = sip_thread(&state)?;
    let (reply, rx) = oneshot::channel();
    tx.send(SipRequest::List { reply })
        .await
        .map_err(|_| stopped())?;
    let calls = rx.await.map_err(|_| stopped())?;
    Ok(Json(json!({ "calls": calls })).into_response())
}

/// `DELETE /api/sip/calls/{call}`: hangs up (BYE, or CANCEL while it rings);
/// the phone's peer leaves the room. 204, or 404 for no such call.
pub async fn hangup(
    State(state): State<AppState>,
    Path(call): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_app_secret(&state, &headers)?;
    let call: u64 = call.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("call {call:?}: a call number"),
        )
    })?;
    let tx = sip_thread(&state)?;
    let (reply, rx) = oneshot::channel();
    tx.send(SipRequest::Hangup { call, reply })
        .await
        .map_err(|_| stopped())?;
    if rx.await.map_err(|_| stopped())? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no SIP call {call} on this node"),
        ))
    }
}
