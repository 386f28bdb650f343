//! The session requests of the HTTP API as values: served by this node's
//! worker, or sent over the cluster to the node that holds (or will hold)
//! the session. One shape for both, so a forwarded request is handled by
//! exactly the code that handles a local one.

use mediamesh_protocol::gateway::{ConnectRequest, RemoteIceRequest};
use mediamesh_webrtc::Role;
use serde::{Deserialize, Serialize};

use crate::worker::{Caller, Patched, WorkerError};

/// A request that creates, changes or ends a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ApiCall {
    /// WHIP or WHEP `POST .../endpoint`.
    Create {
        #[serde(with = "role")]
        role: Role,
        caller: Caller,
        peer: String,
        offer: String,
    },
    /// WHIP or WHEP `PATCH .../conn/{id}` (the sdpfrag as sent).
    Patch {
        #[serde(with = "role")]
        role: Role,
        id: String,
        caller: Caller,
        if_match: Option<String>,
        frag: String,
    },
    /// WHIP or WHEP `DELETE .../conn/{id}`.
    Delete {
        #[serde(with = "role")]
        role: Role,
        id: String,
        caller: Caller,
    },
    /// SDK `POST /webrtc/connect`.
    SdkConnect {
        caller: Caller,
        #[serde(with = "protobuf")]
        request: ConnectRequest,
    },
    /// SDK `POST /webrtc/{id}/ice-candidate`.
    SdkIce {
        id: String,
        #[serde(with = "protobuf")]
        request: RemoteIceRequest,
    },
    /// SDK `POST /webrtc/{id}/restart-ice`.
    SdkRestartIce {
        id: String,
        caller: Caller,
        #[serde(with = "protobuf")]
        request: ConnectRequest,
    },
}

impl ApiCall {
    /// The connection the request is about (none for the ones that create).
    pub fn conn_id(&self) -> Option<&str> {
        match self {
            ApiCall::Create { .. } | ApiCall::SdkConnect { .. } => None,
            ApiCall::Patch { id, .. }
            | ApiCall::Delete { id, .. }
            | ApiCall::SdkIce { id, .. }
            | ApiCall::SdkRestartIce { id, .. } => Some(id),
        }
    }
}

/// What a served [`ApiCall`] gives back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ok", rename_all = "snake_case")]
pub enum ApiOk {
    Created {
        id: String,
        answer: String,
        etag: String,
    },
    Patched(Patched),
    Deleted,
    /// An SDK reply, protobuf-encoded as the client gets it.
    Sdk {
        #[serde(with = "bytes")]
        body: Vec<u8>,
    },
}

pub type ApiResult = Result<ApiOk, WorkerError>;

pub fn encode_call(call: &ApiCall) -> Vec<u8> {
    serde_json::to_vec(call).unwrap_or_default()
}

pub fn decode_call(b: &[u8]) -> Result<ApiCall, String> {
    serde_json::from_slice(b).map_err(|e| format!("undecodable forwarded request: {e}"))
}

pub fn encode_result(r: &ApiResult) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_default()
}

pub fn decode_result(b: &[u8]) -> Result<ApiResult, String> {
    serde_json::from_slice(b).map_err(|e| format!("undecodable forwarded answer: {e}"))
}

mod role {
    use mediamesh_webrtc::Role;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &Role, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match r {
            Role::Publish => "whip",
            Role::Play => "whep",
            Role::Sdk => "sdk",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        match String::deserialize(d)?.as_str() {
            "whip" => Ok(Role::Publish),
            "whep" => Ok(Role::Play),
            "sdk" => Ok(Role::Sdk),
            other => Err(serde::de::Error::custom(format!("unknown role {other:?}"))),
        }
    }
}

mod bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        base64::engine::general_purpose::STANDARD
            .decode(String::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }
}

/// A protobuf message as base64 of its encoding.
mod protobuf {
    use mediamesh_protocol::Message;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer, M: Message>(m: &M, s: S) -> Result<S::Ok, S::Error> {
        super::bytes::serialize(&m.encode_to_vec(), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, M: Message + Default>(
        d: D,
    ) -> Result<M, D::Error> {
        let b = super::bytes::deserialize(d)?;
        M::decode(b.as_slice()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediamesh_protocol::gateway::ConnectRequest;

    fn caller() -> Caller {
        Caller {
            app: "app".into(),
            room: "room".into(),
            peer: Some("alice".into()),
        }
    }

    #[test]
    fn calls_and_results_survive_the_wire() {
        let calls = [
            ApiCall::Create {
                role: Role::Play,
                caller: caller(),
                peer: "viewer-1".into(),
                offer: "v=0\r\n".into(),
            },
            ApiCall::Patch {
                role: Role::Publish,
                id: "n.0.ab".into(),
                caller: caller(),
                if_match: Some("\"x\"".into()),
                frag: "a=ice-ufrag:x\r\n".into(),
            },
            ApiCall::SdkRestartIce {
                id: "n.0.ab".into(),
                caller: caller(),
                request: ConnectRequest {
                    version: "t".into(),
                    sdp: "v=0\r\n".into(),
                    ..Default::default()
                },
            },
        ];
        for c in calls {
            assert_eq!(decode_call(&encode_call(&c)), Ok(c));
        }
        let results: [ApiResult; 4] = [
            Ok(ApiOk::Sdk {
                body: vec![0, 1, 255],
            }),
            Ok(ApiOk::Patched(Patched::Restarted {
                frag: "f".into(),
                etag: "e".into(),
            })),
            Err(WorkerError::NotFound),
            Err(WorkerError::BadRequest("bad sdp".into())),
        ];
        for r in results {
            assert_eq!(decode_result(&encode_result(&r)), Ok(r));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_call(b"").is_err());
        assert!(decode_call(b"{\"op\":\"create\"}").is_err());
        assert!(decode_call(b"{\"op\":\"sdk_ice\",\"id\":\"x\",\"request\":\"!!\"}").is_err());
        assert!(decode_result(b"[1,2]").is_err());
    }
}
