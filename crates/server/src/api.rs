//! The HTTP API: tokens, WHIP and WHEP (RFC 9725), demo pages.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, LOCATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use mediamesh_webrtc::{Role, SdpFrag};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tower_http::cors::{Any, CorsLayer};

use crate::call::{ApiCall, ApiOk};
use crate::config::Config;
use crate::dispatch::{dispatch, ClientAddr};
use crate::geo::GeoDb;
use crate::token::{self, Claims, TokenKind};
use crate::web;
use crate::worker::{Caller, Command, Patched, WorkerError};

/// An answer of a kind the request cannot have (a bug, not the client's).
fn unexpected(what: &str, got: ApiOk) -> ApiError {
    tracing::error!(?got, "unexpected answer to {what}");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("unexpected answer to {what}"),
    )
}

/// Largest request body accepted (SDP offers are a few KiB).
pub const MAX_BODY: usize = 64 * 1024;
/// Longest token lifetime `POST /token/*` grants.
const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub worker: mpsc::Sender<Command>,
    pub draining: Arc<AtomicBool>,
    /// Locates clients for placement (gateways with a GeoIP database).
    pub geo: Option<Arc<GeoDb>>,
    /// Requests to the SIP thread (`None`: SIP is off).
    pub sip: Option<mpsc::Sender<crate::sip::SipRequest>>,
}

/// An error a person can act on: a status and a one-line reason.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reason: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, format!("{}\n", self.reason)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<WorkerError> for ApiError {
    fn from(e: WorkerError) -> Self {
        let status = match e {
            WorkerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WorkerError::NotFound => StatusCode::NOT_FOUND,
            WorkerError::Forbidden(_) => StatusCode::FORBIDDEN,
            WorkerError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            WorkerError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

pub fn router(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE, IF_MATCH])
        .expose_headers([LOCATION, ETAG]);
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/demo/") }))
        .route("/healthz", get(healthz))
        .route("/token/{kind}", post(create_token))
        .route("/api/node", get(node_view))
        .route("/metrics", get(metrics))
        .route("/api/rooms/{room}", get(room_view))
        .route("/api/sip/dial", post(crate::sip::http::dial))
        .route("/api/sip/calls", get(crate::sip::http::list))
        .route(
            "/api/sip/calls/{call}",
            axum::routing::delete(crate::sip::http::hangup),
        )
        .route(
            "/whip/endpoint",
            post(|State(s), c, h, b| create(s, Role::Publish, c, h, b)),
        )
        .route(
            "/whip/conn/{id}",
            patch(|State(s), Path(id), c, h, b| patch_session(s, Role::Publish, id, c, h, b))
                .delete(|State(s), Path(id), c, h| delete_session(s, Role::Publish, id, c, h)),
        )
        .route(
            "/whep/endpoint",
            post(|State(s), c, h, b| create(s, Role::Play, c, h, b)),
        )
        .route(
            "/whep/conn/{id}",
            patch(|State(s), Path(id), c, h, b| patch_session(s, Role::Play, id, c, h, b))
                .delete(|State(s), Path(id), c, h| delete_session(s, Role::Play, id, c, h)),
        )
        .route("/webrtc/connect", post(sdk_connect))
        .route("/webrtc/{id}/ice-candidate", post(sdk_ice))
        .route("/webrtc/{id}/restart-ice", post(sdk_restart_ice))
        .route("/demo/", get(|| async { Html(web::INDEX) }))
        .route("/demo/whip", get(|| async { Html(web::WHIP) }))
        .route("/demo/whep", get(|| async { Html(web::WHEP) }))
        .route(
            "/demo/demo.css",
            get(|| async { ([(CONTENT_TYPE, "text/css; charset=utf-8")], web::CSS) }),
        )
        .route(
            "/demo/demo.js",
            get(|| async { ([(CONTENT_TYPE, "text/javascript; charset=utf-8")], web::JS) }),
        )
        .route("/demo/room", get(|| async { Html(web::ROOM) }))
        .route(
            "/demo/mediamesh-sdk.js",
            get(|| async {
                (
                    [(CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    web::SDK_JS,
                )
            }),
        )
        .route("/demo/token/{kind}", get(demo_token))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(cors)
        .with_state(state)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) async fn ask<T>(
    state: &AppState,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "media worker stopped");
    state
        .worker
        .send(make(tx))
        .await
        .map_err(|_| unavailable())?;
    rx.await.map_err(|_| unavailable())
}

async fn healthz(State(state): State<AppState>) -> Response {
    match ask(&state, |reply| Command::Stats { reply }).await {
        Ok(stats) => Json(stats).into_response(),
        Err(e) => e.into_response(),
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <token>",
        )
    })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "Authorization header is not text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Authorization must be `Bearer <token>`",
            )
        })?;
    Ok(token.trim())
}

/// Verifies a session token and that it is for `kind`.
fn authorize(state: &AppState, headers: &HeaderMap, kind: TokenKind) -> Result<Claims, ApiError> {
    let token = bearer(headers)?;
    let claims = token::decode(token, &state.config.secret, unix_now())
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    if claims.kind != kind {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this endpoint needs a {kind:?} token, not a {:?} token",
                claims.kind
            )
            .to_lowercase(),
        ));
    }
    Ok(claims)
}

fn require_content_type(headers: &HeaderMap, want: &str) -> Result<(), ApiError> {
    let got = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let base = got.split(';').next().unwrap_or("").trim();
    if !base.eq_ignore_ascii_case(want) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be {want} (got `{got}`)"),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct TokenRequest {
    room: String,
    peer: Option<String>,
    ttl: u64,
    #[serde(default)]
    record: bool,
    extra_data: Option<String>,
}

fn parse_kind(kind: &str) -> Result<TokenKind, ApiError> {
    match kind {
        "whip" => Ok(TokenKind::Whip),
        "whep" => Ok(TokenKind::Whep),
        "webrtc" => Ok(TokenKind::Webrtc),
        "rtmp" => Ok(TokenKind::Rtmp),
        "sip" => Ok(TokenKind::Sip),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no token kind `{kind}` (whip, whep, webrtc, rtmp, sip)"),
        )),
    }
}

fn mint(state: &AppState, kind: TokenKind, req: TokenRequest) -> Result<Response, ApiError> {
    if req.room.is_empty() || req.room.len() > 128 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "room must be 1 to 128 bytes",
        ));
    }
    if req
        .peer
        .as_ref()
        .is_some_and(|p| p.is_empty() || p.len() > 128)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "peer must be 1 to 128 bytes",
        ));
    }
    if kind != TokenKind::Whep && req.peer.is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "peer is required for this token kind",
        ));
    }
    if req.ttl == 0 || req.ttl > MAX_TTL_SECS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("ttl must be 1 to {MAX_TTL_SECS} seconds"),
        ));
    }
    let now = unix_now();
    let claims = Claims {
        sub: state.config.app_id.clone(),
        kind,
        room: req.room,
        peer: req.peer,
        iat: now,
        exp: now + req.ttl,
        record: req.record,
        extra_data: req.extra_data,
    };
    let token = token::encode(&claims, &state.config.secret);
    Ok(Json(json!({ "status": true, "data": { "token": token } })).into_response())
}

/// Operator endpoints take the app secret as Bearer token.
pub(crate) fn check_app_secret(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let secret = bearer(headers)?;
    if !constant_time_eq(secret.as_bytes(), state.config.secret.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the Bearer token is not the app secret",
        ));
    }
    Ok(())
}

/// `GET /metrics`: this node's numbers for Prometheus (aggregates only, no
/// names, so no token: scrapers reach it like `/healthz`).
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = ask(&state, |reply| Command::Metrics { reply }).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /api/node`: this node, the cluster nodes it sees, media counters.
async fn node_view(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_app_secret(&state, &headers)?;
    let view = ask(&state, |reply| Command::NodeView { reply }).await?;
    Ok(Json(view).into_response())
}

/// `GET /api/rooms/{room}`: a room of this node's app as this node sees it
/// (its own peers and every other node's).
async fn room_view(
    State(state): State<AppState>,
    Path(room): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_app_secret(&state, &headers)?;
    let app = state.config.app_id.clone();
    let view = ask(&state, |reply| Command::RoomView { app, room, reply }).await?;
    Ok(Json(view).into_response())
}

async fn create_token(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let kind = parse_kind(&kind)?;
    check_app_secret(&state, &headers)?;
    let req: TokenRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))?;
    mint(&state, kind, req)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize)]
struct DemoTokenQuery {
    room: Option<String>,
    peer: Option<String>,
}

/// Development convenience for the demo pages: a token without the secret,
/// only when enabled (by default only with the development secret on a
/// loopback HTTP address).
async fn demo_token(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    Query(q): Query<DemoTokenQuery>,
) -> Result<Response, ApiError> {
    if !state.config.demo_tokens {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "demo tokens are disabled on this server (set --demo-tokens true, or mint a token with POST /token/* and the app secret)",
        ));
    }
    let kind = parse_kind(&kind)?;
    let peer = q
        .peer
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| format!("demo-{:08x}", rand::random::<u32>()));
    mint(
        &state,
        kind,
        TokenRequest {
            room: q.room.unwrap_or_else(|| "demo".into()),
            peer: Some(peer),
            ttl: 3600,
            record: false,
            extra_data: None,
        },
    )
}

fn caller(claims: &Claims) -> Caller {
    Caller {
        app: claims.sub.clone(),
        room: claims.room.clone(),
        peer: claims.peer.clone(),
    }
}

fn paths(role: Role) -> (&'static str, TokenKind) {
    match role {
        Role::Publish => ("/whip/conn/", TokenKind::Whip),
        Role::Play => ("/whep/conn/", TokenKind::Whep),
        Role::Sdk => ("/webrtc/", TokenKind::Webrtc),
    }
}

async fn create(
    state: AppState,
    role: Role,
    client: ClientAddr,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(WorkerError::Unavailable.into());
    }
    let (prefix, kind) = paths(role);
    let claims = authorize(&state, &headers, kind)?;
    require_content_type(&headers, "application/sdp")?;
    if body.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty body: expected an SDP offer",
        ));
    }
    let peer = claims
        .peer
        .clone()
        .unwrap_or_else(|| format!("viewer-{:08x}", rand::random::<u32>()));
    let call = ApiCall::Create {
        role,
        caller: caller(&claims),
        peer,
        offer: body,
    };
    match dispatch(&state, call, client).await? {
        ApiOk::Created { id, answer, etag } => Ok((
            StatusCode::CREATED,
            [
                (CONTENT_TYPE, "application/sdp".to_owned()),
                (LOCATION, format!("{prefix}{id}")),
                (ETAG, etag),
            ],
            answer,
        )
            .into_response()),
        other => Err(unexpected("a session offer", other)),
    }
}

async fn patch_session(
    state: AppState,
    role: Role,
    id: String,
    client: ClientAddr,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let (_, kind) = paths(role);
    let claims = authorize(&state, &headers, kind)?;
    require_content_type(&headers, "application/trickle-ice-sdpfrag")?;
    // Checked here too, so a bad fragment never travels.
    SdpFrag::parse(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed sdpfrag: {e}")))?;
    let if_match = headers
        .get(IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned());
    let call = ApiCall::Patch {
        role,
        id,
        caller: caller(&claims),
        if_match,
        frag: body,
    };
    match dispatch(&state, call, client).await? {
        ApiOk::Patched(Patched::Trickled) => Ok(StatusCode::NO_CONTENT.into_response()),
        ApiOk::Patched(Patched::Restarted { frag, etag }) => Ok((
            StatusCode::OK,
            [
                (CONTENT_TYPE, "application/trickle-ice-sdpfrag".to_owned()),
                (ETAG, etag),
            ],
            frag,
        )
            .into_response()),
        other => Err(unexpected("a PATCH", other)),
    }
}

async fn delete_session(
    state: AppState,
    role: Role,
    id: String,
    client: ClientAddr,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, kind) = paths(role);
    let claims = authorize(&state, &headers, kind)?;
    let call = ApiCall::Delete {
        role,
        id,
        caller: caller(&claims),
    };
    match dispatch(&state, call, client).await? {
        ApiOk::Deleted => Ok(StatusCode::OK.into_response()),
        other => Err(unexpected("a DELETE", other)),
    }
}

/// SDK replies are bare protobuf, labelled as the client labels its requests.
fn protobuf(bytes: Vec<u8>) -> Response {
    ([(CONTENT_TYPE, "application/grpc")], bytes).into_response()
}

fn decode<M: mediamesh_protocol::Message + Default>(
    body: &[u8],
    what: &str,
) -> Result<M, ApiError> {
    M::decode(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed {what}: {e}")))
}

/// The protobuf an SDK request is answered with.
fn sdk_reply(what: &str, ok: ApiOk) -> Result<Response, ApiError> {
    match ok {
        ApiOk::Sdk { body } => Ok(protobuf(body)),
        other => Err(unexpected(what, other)),
    }
}

/// `POST /webrtc/connect`: a protobuf `ConnectRequest` with a webrtc token.
async fn sdk_connect(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(WorkerError::Unavailable.into());
    }
    let claims = authorize(&state, &headers, TokenKind::Webrtc)?;
    let request = decode(&body, "ConnectRequest")?;
    let call = ApiCall::SdkConnect {
        caller: caller(&claims),
        request,
    };
    sdk_reply("connect", dispatch(&state, call, client).await?)
}

/// `POST /webrtc/{id}/ice-candidate`: no token in this protocol; the
/// connection id (128 random bits) is the capability.
async fn sdk_ice(
    State(state): State<AppState>,
    Path(id): Path<String>,
    client: ClientAddr,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let request = decode(&body, "RemoteIceRequest")?;
    let call = ApiCall::SdkIce { id, request };
    sdk_reply("ice-candidate", dispatch(&state, call, client).await?)
}

/// `POST /webrtc/{id}/restart-ice`: a new offer for a live session, or a
/// new session on a live node when the old one's node is gone.
async fn sdk_restart_ice(
    State(state): State<AppState>,
    Path(id): Path<String>,
    client: ClientAddr,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let claims = authorize(&state, &headers, TokenKind::Webrtc)?;
    let request = decode(&body, "ConnectRequest")?;
    let call = ApiCall::SdkRestartIce {
        id,
        caller: caller(&claims),
        request,
    };
    sdk_reply("restart-ice", dispatch(&state, call, client).await?)
}
