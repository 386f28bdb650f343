//! A node's cluster settings, and the zenoh configuration they make.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::keys::valid_name;
use crate::node::ClusterError;

/// How a node takes part in routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeRole {
    /// Routes for others (zone backbones, relays between zones).
    #[default]
    Router,
    /// Talks to the routers it connects to (and peers it meets) only.
    Peer,
}

/// Certificates for TLS links between nodes (PEM files). With them,
/// endpoints are written `tls/host:port`, and both sides present a
/// certificate signed by `ca` (mutual TLS).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Unique in the cluster: letters, digits, `-`, `_`, `.`.
    pub node: String,
    pub zone: String,
    pub role: NodeRole,
    /// zenoh endpoints to accept links on (e.g. `tcp/10.0.0.1:7447`).
    pub listen: Vec<String>,
    /// zenoh endpoints to link to.
    pub connect: Vec<String>,
    /// Shared by the nodes of a cluster; a node without it cannot link.
    pub secret: Option<String>,
    pub tls: Option<TlsFiles>,
    /// A silent link is declared dead after this (frozen host, cut cable;
    /// a killed process's TCP link closes at once).
    pub lease: Duration,
    /// A node's departure is believed after this (relay flaps).
    pub debounce: Duration,
    /// Measure the RTT of dialed links and give zenoh link weights that
    /// follow it, reopening the session when they change (see
    /// [`crate::links`]). Only routers that dial do anything.
    pub rtt_weights: bool,
    /// Where the secret's credential file goes (it must exist while the
    /// node runs).
    pub runtime_dir: PathBuf,
}

impl ClusterConfig {
    /// A one-node cluster (no links), the standalone default.
    pub fn standalone(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            zone: "default".into(),
            role: NodeRole::Router,
            listen: Vec::new(),
            connect: Vec::new(),
            secret: None,
            tls: None,
            lease: Duration::from_millis(2000),
            debounce: Duration::from_millis(1000),
            rtt_weights: true,
            runtime_dir: std::env::temp_dir(),
        }
    }

    pub fn validate(&self) -> Result<(), ClusterError> {
        if !valid_name(&self.node) {
            return Err(ClusterError::Config(format!(
                "node id {:?}: use 1-64 letters, digits, '-', '_' or '.'",
                self.node
            )));
        }
        if !valid_name(&self.zone) {
            return Err(ClusterError::Config(format!(
                "zone {:?}: use 1-64 letters, digits, '-', '_' or '.'",
                self.zone
            )));
        }
        for e in self.listen.iter().chain(&self.connect) {
            let proto = e.split('/').next().unwrap_or("");
            if !matches!(proto, "tcp" | "tls") || !e.contains('/') {
                return Err(ClusterError::Config(format!(
                    "endpoint {e:?}: write tcp/HOST:PORT (or tls/HOST:PORT with certificates)"
                )));
            }
            if proto == "tls" && self.tls.is_none() {
                return Err(ClusterError::Config(format!(
                    "endpoint {e:?} is TLS: give the node's certificate, key and CA"
                )));
            }
        }
        if self.lease < Duration::from_millis(500) {
            return Err(ClusterError::Config("lease under 500 ms".into()));
        }
        Ok(())
    }

    /// The credential both sides of a link present: derived from the
    /// secret, so the secret itself never crosses the network.
    fn credential(secret: &str) -> String {
        let d = Sha256::digest(format!("mediamesh-cluster\0{secret}").as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The zenoh configuration of a session with zenoh id `zid` (see
    /// [`crate::keys::zid`]), with link weights (far node's zenoh id ->
    /// weight) for the links it dials (routers only).
    pub(crate) fn zenoh_config(
        &self,
        zid: &str,
        weights: &std::collections::BTreeMap<String, u16>,
    ) -> Result<zenoh::Config, ClusterError> {
        self.validate()?;
        let json = |v: &dyn erased::Json| v.json();
        let mut c = zenoh::Config::default();
        let mut set = |key: &str, value: String| {
            c.insert_json5(key, &value)
                .map_err(|e| ClusterError::Config(format!("{key}: {e}")))
        };
        let mode = match self.role {
            NodeRole::Router => "router",
            NodeRole::Peer => "peer",
        };
        set("mode", json(&mode))?;
        set("id", json(&zid))?;
        if self.role == NodeRole::Router && !weights.is_empty() {
            let list: Vec<serde_json::Value> = weights
                .iter()
                .map(|(zid, w)| serde_json::json!({ "dst_zid": zid, "weight": w }))
                .collect();
            set("routing/router/linkstate/transport_weights", json(&list))?;
        }
        set("listen/endpoints", json(&self.listen))?;
        set("connect/endpoints", json(&self.connect))?;
        // Never multicast: nodes meet only through configured endpoints (and
        // what those tell them).
        set("scouting/multicast/enabled", "false".into())?;
        // A router waits this long for scouting at open: nothing to wait for.
        set("scouting/delay", "0".into())?;
        // Keep trying configured endpoints: a node started before its
        // router links up when the router comes.
        set("connect/timeout_ms", "-1".into())?;
        set("connect/exit_on_failure", "false".into())?;
        set("listen/exit_on_failure", "true".into())?;
        set(
            "transport/link/tx/lease",
            self.lease.as_millis().to_string(),
        )?;
        set("transport/link/tx/keep_alive", "4".into())?;
        // No admin space, no plugins, no timestamps: a media node needs none.
        set("adminspace/enabled", "false".into())?;
        if let Some(secret) = &self.secret {
            let user = "mediamesh";
            let password = Self::credential(secret);
            let dict = self.auth_file();
            write_private(&dict, &format!("{user}:{password}\n"))?;
            set("transport/auth/usrpwd/user", json(&user))?;
            set("transport/auth/usrpwd/password", json(&password))?;
            set(
                "transport/auth/usrpwd/dictionary_file",
                json(&dict.to_string_lossy()),
            )?;
        }
        if let Some(tls) = &self.tls {
            let path = |p: &PathBuf| json(&p.to_string_lossy());
            set("transport/link/tls/root_ca_certificate", path(&tls.ca))?;
            set("transport/link/tls/listen_certificate", path(&tls.cert))?;
            set("transport/link/tls/listen_private_key", path(&tls.key))?;
            set("transport/link/tls/connect_certificate", path(&tls.cert))?;
            set("transport/link/tls/connect_private_key", path(&tls.key))?;
            set("transport/link/tls/enable_mtls", "true".into())?;
        }
        Ok(c)
    }
}

impl ClusterConfig {
    /// zenoh's user/password dictionary of this process (read when a
    /// session opens): one per process, so two clusters on one host with
    /// the same node ids never share one.
    pub(crate) fn auth_file(&self) -> PathBuf {
        self.runtime_dir.join(format!(
            "mediamesh-cluster-{}-{}.auth",
            self.node,
            std::process::id()
        ))
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> Result<(), ClusterError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    let mut f = o
        .open(path)
        .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))
}

/// JSON text of a value, for `insert_json5`.
mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize + ?Sized> Json for T {
        fn json(&self) -> String {
            // Strings and string lists always serialize.
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let mut c = ClusterConfig::standalone("a");
        assert!(c.validate().is_ok());
        c.node = "a/b".into();
        assert!(c.validate().unwrap_err().to_string().contains("node id"));
        let mut c = ClusterConfig::standalone("a");
        c.connect = vec!["udp/1.2.3.4:5".into()];
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("tcp/HOST:PORT"));
        c.connect = vec!["tls/127.0.0.1:5".into()];
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("certificate"));
    }

    #[test]
    fn the_zenoh_config_builds() {
        let mut c = ClusterConfig::standalone("a");
        c.listen = vec!["tcp/127.0.0.1:0".into()];
        c.secret = Some("s".into());
        c.runtime_dir = std::env::temp_dir();
        let me = crate::keys::zid("a", 1, 0);
        assert!(c.zenoh_config(&me, &Default::default()).is_ok());
        let weights = [("b".to_string(), 120u16), ("c".to_string(), 7)]
            .into_iter()
            .collect();
        if let Err(e) = c.zenoh_config(&me, &weights) {
            panic!("{e}");
        }
        assert_ne!(
            ClusterConfig::credential("s"),
            ClusterConfig::credential("t")
        );
    }
}
