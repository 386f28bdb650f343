//! Session tokens: HS256 JWTs signed with the app secret.
//!
//! Claims follow the shape of atm0s-media-server's tokens (tenant in `sub`,
//! room, peer, expiry, record, extra data) so applications that mint tokens
//! through `POST /token/*` can switch servers.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a token lets its bearer do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Whip,
    Whep,
    Webrtc,
    /// An RTMP stream key: publish into the room as the peer.
    Rtmp,
    /// A phone's call into the room (SIP header `X-MediaMesh-Token`).
    Sip,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Tenant (application) id.
    pub sub: String,
    pub kind: TokenKind,
    pub room: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    pub iat: u64,
    pub exp: u64,
    #[serde(default)]
    pub record: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_data: Option<String>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is not a JWT (expected three base64url parts)")]
    Malformed,
    #[error("token uses an unsupported algorithm (only HS256)")]
    Algorithm,
    #[error("token signature does not match this server's secret")]
    Signature,
    #[error("token claims are invalid: {0}")]
    Claims(String),
    #[error("token expired")]
    Expired,
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn mac(secret: &str) -> HmacSha256 {
    // HMAC accepts keys of any length: this cannot fail.
    HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length")
}

pub fn encode(claims: &Claims, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(HEADER);
    // Serializing a struct of strings and numbers cannot fail.
    let body = serde_json::to_vec(claims).expect("claims serialize");
    let body = URL_SAFE_NO_PAD.encode(body);
    let signing_input = format!("{header}.{body}");
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Checks signature and expiry (`now` in Unix seconds).
pub fn decode(token: &str, secret: &str, now: u64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(b), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| TokenError::Malformed)?;
    let header: Header = serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
    if header.alg != "HS256" {
        return Err(TokenError::Algorithm);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed)?;
    let mut m = mac(secret);
    m.update(h.as_bytes());
    m.update(b".");
    m.update(b.as_bytes());
    m.verify_slice(&sig).map_err(|_| TokenError::Signature)?;
    let body = URL_SAFE_NO_PAD
        .decode(b)
        .map_err(|_| TokenError::Malformed)?;
    let claims: Claims =
        serde_json::from_slice(&body).map_err(|e| TokenError::Claims(e.to_string()))?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            sub: "app".into(),
            kind: TokenKind::Whip,
            room: "r1".into(),
            peer: Some("p1".into()),
            iat: 1000,
            exp: 2000,
            record: false,
            extra_data: None,
        }
    }

    #[test]
    fn round_trip() {
        let t = encode(&claims(), "s");
        assert_eq!(decode(&t, "s", 1500), Ok(claims()));
    }

    #[test]
    fn rejects_wrong_secret_expiry_tampering_and_garbage() {
        let t = encode(&claims(), "s");
        assert_eq!(decode(&t, "other", 1500), Err(TokenError::Signature));
        assert_eq!(decode(&t, "s", 2000), Err(TokenError::Expired));
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        let mut c = claims();
        c.room = "r2".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        assert_eq!(
            decode(&parts.join("."), "s", 1500),
            Err(TokenError::Signature)
        );
        assert_eq!(decode("abc", "s", 0), Err(TokenError::Malformed));
        assert_eq!(decode("a.b.c.d", "s", 0), Err(TokenError::Malformed));
        assert_eq!(decode("!!.!!.!!", "s", 0), Err(TokenError::Malformed));
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            parts[1]
        );
        assert_eq!(decode(&none, "s", 1500), Err(TokenError::Algorithm));
    }
}
