//! Where session tokens come from: minted by the server's token API with
//! the app secret (MediaMesh, atm0s), one static token for every session, or
//! a command that prints one (any other server's scheme).

use crate::http::{self, Url};
use crate::BenchError;

pub enum TokenSource {
    /// `POST {base}/token/{whip,whep}` with the secret as Bearer.
    Secret {
        base: Url,
        secret: String,
    },
    Static(String),
    /// Run as `sh -c "CMD \"$@\"" -- KIND ROOM PEER`; stdout is the token.
    Command(String),
}

impl TokenSource {
    pub async fn token(&self, kind: &str, room: &str, peer: &str) -> Result<String, BenchError> {
        match self {
            TokenSource::Static(t) => Ok(t.clone()),
            TokenSource::Secret { base, secret } => {
                let url = Url {
                    path: format!("/token/{kind}"),
                    ..base.clone()
                };
                let body =
                    serde_json::json!({ "room": room, "peer": peer, "ttl": 7200 }).to_string();
                let auth = format!("Bearer {secret}");
                let r = http::request(
                    "POST",
                    &url,
                    &[
                        ("Authorization", &auth),
                        ("Content-Type", "application/json"),
                    ],
                    &body,
                )
                .await?;
                if r.status != 200 {
                    return Err(BenchError::Http(format!(
                        "POST {url} -> {} {}",
                        r.status,
                        r.body.trim()
                    )));
                }
                let v: serde_json::Value = serde_json::from_str(&r.body)
                    .map_err(|e| BenchError::Http(format!("POST {url}: {e}")))?;
                v["data"]["token"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        BenchError::Http(format!("POST {url}: no data.token in {}", r.body.trim()))
                    })
            }
            TokenSource::Command(cmd) => {
                let out = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!("{cmd} \"$@\""))
                    .args(["--", kind, room, peer])
                    .output()
                    .await
                    .map_err(|e| BenchError::Config(format!("token command: {e}")))?;
                if !out.status.success() {
                    return Err(BenchError::Config(format!(
                        "token command exited {}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
            }
        }
    }
}
