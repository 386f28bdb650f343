//! Where a session request is served. A request about a connection goes to
//! the node its id names (here, or over the cluster); a request that
//! creates a session is served here on a media node, and placed on the
//! best media node by a gateway. An SDK ICE restart whose node is gone (or
//! no longer knows the session) becomes a new connection on a live node:
//! same peer, tracks and subscriptions, a new connection id.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use mediamesh_cluster::CallError;

use crate::api::{ask, ApiError, AppState};
use crate::call::{ApiCall, ApiOk, ApiResult};
use crate::connid::ConnId;
use crate::worker::{Command, WorkerError};

/// Media nodes a gateway tries for one new session before giving up.
const PLACE_ATTEMPTS: usize = 3;

/// The client's address: the TCP peer, or what trusted proxies say.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
        else {
            return Ok(ClientAddr(None));
        };
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(ClientAddr(Some(crate::geo::client_ip(
            peer,
            &forwarded,
            &state.config.trusted_proxies,
        ))))
    }
}

/// Serves `call` where it belongs and gives its result.
pub async fn dispatch(
    state: &AppState,
    call: ApiCall,
    client: ClientAddr,
) -> Result<ApiOk, ApiError> {
    let Some(id) = call.conn_id() else {
        return create(state, call, client).await;
    };
    let Some(node) = ConnId::parse(id).map(|c| c.node) else {
        return Err(WorkerError::NotFound.into());
    };
    let answer = if node == state.config.cluster.node {
        Ok(local(state, call.clone()).await?)
    } else {
        forward(state, &node, call.clone()).await?
    };
    match (answer, call) {
        // The session is gone with its node (or the node forgot it): an
        // SDK client that restarts ICE moves to a live node.
        (
            Err(_),
            ApiCall::SdkRestartIce {
                caller, request, ..
            },
        )
        | (
            Ok(Err(WorkerError::NotFound)),
            ApiCall::SdkRestartIce {
                caller, request, ..
            },
        ) => {
            tracing::info!(%node, room = %caller.room, peer = ?caller.peer, "session's node is gone: reconnecting the client elsewhere");
            create(state, ApiCall::SdkConnect { caller, request }, client).await
        }
        (Ok(r), _) => Ok(r?),
        (Err(e), _) => {
            tracing::debug!(%node, "forwarded request unanswered: {e}");
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no such session (its node {node} does not answer)"),
            ))
        }
    }
}

/// A new session: here, or (gateways) on the best media node.
async fn create(state: &AppState, call: ApiCall, client: ClientAddr) -> Result<ApiOk, ApiError> {
    if !state.config.load.gateway {
        return Ok(local(state, call).await??);
    }
    let location = match (&state.geo, client.0) {
        (Some(db), Some(ip)) => db.locate(ip).map(|l| (l.lat, l.lon)),
        _ => None,
    };
    let nodes = ask(state, |reply| Command::Place {
        client: location,
        reply,
    })
    .await?;
    let mut last = None;
    for node in nodes.iter().take(PLACE_ATTEMPTS) {
        match forward(state, node, call.clone()).await? {
            // Full or shutting down since its last report: the next one.
            Ok(Err(WorkerError::Unavailable)) => last = Some(format!("{node} is shutting down")),
            Ok(r) => {
                tracing::info!(%node, client = ?client.0, ?location, "session placed");
                return Ok(r?);
            }
            Err(e) => last = Some(e.to_string()),
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        match last {
            Some(e) => format!("no media node could take the session (last: {e})"),
            None => "no media node can take a session now (all full or none up)".to_owned(),
        },
    ))
}

async fn local(state: &AppState, call: ApiCall) -> Result<ApiResult, ApiError> {
    ask(state, |reply| Command::Api { call, reply }).await
}

async fn forward(
    state: &AppState,
    node: &str,
    call: ApiCall,
) -> Result<Result<ApiResult, CallError>, ApiError> {
    ask(state, |reply| Command::Forward {
        node: node.to_owned(),
        call,
        reply,
    })
    .await
}
