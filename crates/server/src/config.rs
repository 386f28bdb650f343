//! Configuration: embedded defaults, overridden by an optional TOML file,
//! then by environment variables, then by command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use clap::Parser;
use mediamesh_cluster::{ClusterConfig, NodeRole, TlsFiles};
use serde::Deserialize;

use crate::geo::{parse_lat_lon, IpNet};
use crate::worker::LoadConfig;
use mediamesh_cluster::LoadLimits;

/// The secret used when none is configured. Tokens signed with it are only
/// as safe as the machine; the server warns when it is in use.
pub const DEV_SECRET: &str = "mediamesh-insecure-dev-secret";

#[derive(Parser, Debug, Default)]
#[command(
    name = "mediamesh",
    version,
    about = "MediaMesh media server: WebRTC (WHIP/WHEP) SFU.",
    long_about = "MediaMesh media server: WebRTC (WHIP/WHEP) SFU.\n\n\
        With no arguments it runs one node with embedded defaults: HTTP API and demo pages on \
        http://127.0.0.1:3000 (open /demo/whip to publish, /demo/whep to play), WebRTC media on \
        UDP 127.0.0.1:3001.\n\n\
        Every setting comes, by rising precedence, from the embedded default, the TOML file \
        given by --config (keys are the flag names with '_' for '-'), the MEDIAMESH_* \
        environment variable, and the flag."
)]
pub struct Cli {
    /// TOML configuration file (keys: the flag names with '_' for '-', e.g. http_listen, cluster_connect = ["tcp/..."]).
    #[arg(long, env = "MEDIAMESH_CONFIG")]
    pub config: Option<PathBuf>,

    /// TCP address of the HTTP API, WHIP/WHEP endpoints and demo pages [default: 127.0.0.1:3000].
    #[arg(long, env = "MEDIAMESH_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,

    /// UDP address shared by every WebRTC session (ICE, DTLS, SRTP) [default: 127.0.0.1:3001].
    #[arg(long, env = "MEDIAMESH_MEDIA_LISTEN")]
    pub media_listen: Option<SocketAddr>,

    /// RTMP ingest (OBS, ffmpeg: rtmp://HOST:PORT/live/STREAM-KEY, the key an rtmp token),
    /// or "off" [default: 127.0.0.1:1935].
    #[arg(long, env = "MEDIAMESH_RTMP_LISTEN")]
    pub rtmp_listen: Option<String>,

    /// SIP over UDP and TCP: phones call sip:ROOM@HOST:PORT with a sip token in the
    /// X-MediaMesh-Token header (or digest credentials of a --sip-account); RTP on ephemeral
    /// ports of the same address; or "off" [default: 127.0.0.1:5060].
    #[arg(long, env = "MEDIAMESH_SIP_LISTEN")]
    pub sip_listen: Option<String>,

    /// SIP over TLS (with --sip-tls-cert and --sip-tls-key), or "off"
    /// [default: port 5061 of the --sip-listen address when a certificate is given].
    #[arg(long, env = "MEDIAMESH_SIP_TLS_LISTEN")]
    pub sip_tls_listen: Option<String>,

    /// PEM certificate chain for SIP over TLS.
    #[arg(long, env = "MEDIAMESH_SIP_TLS_CERT")]
    pub sip_tls_cert: Option<PathBuf>,

    /// PEM private key of --sip-tls-cert.
    #[arg(long, env = "MEDIAMESH_SIP_TLS_KEY")]
    pub sip_tls_key: Option<PathBuf>,

    /// PEM certificates trusted when dialling out over TLS, besides the public web roots
    /// (a private CA, or a trunk's self-signed certificate).
    #[arg(long, env = "MEDIAMESH_SIP_TLS_CA")]
    pub sip_tls_ca: Option<PathBuf>,

    /// A phone or PBX account, USER:PASSWORD: calls that pass its digest challenge join the
    /// room of their Request-URI (sip:ROOM@host) as the From user. Repeat for several.
    #[arg(
        long,
        env = "MEDIAMESH_SIP_ACCOUNT",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub sip_account: Vec<String>,

    /// Dial-out goes through this SIP trunk or proxy (a URI like sip:203.0.113.5:5060,
    /// sip:pbx.example:5060;transport=tcp or sips:trunk.example:5061; a host name is resolved
    /// at each call, without SRV lookups) unless a request names its own.
    #[arg(long, env = "MEDIAMESH_SIP_TRUNK")]
    pub sip_trunk: Option<String>,

    /// Digest user name for the trunk's challenges.
    #[arg(long, env = "MEDIAMESH_SIP_TRUNK_USERNAME")]
    pub sip_trunk_username: Option<String>,

    /// Digest password for the trunk's challenges.
    #[arg(long, env = "MEDIAMESH_SIP_TRUNK_PASSWORD", hide_env_values = true)]
    pub sip_trunk_password: Option<String>,

    /// Address peers are told to send media to (the ICE candidate), when it differs from
    /// --media-listen (a 0.0.0.0 bind, NAT, a container) [default: the media listen address].
    #[arg(long, env = "MEDIAMESH_PUBLIC_ADDR")]
    pub public_addr: Option<SocketAddr>,

    /// App secret: signs session tokens and authorizes POST /token/* as a Bearer token.
    /// [default: a fixed development secret; the server warns while it is in use].
    #[arg(long, env = "MEDIAMESH_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// Application (tenant) id written into the tokens this node mints; rooms are namespaced by it [default: default].
    #[arg(long, env = "MEDIAMESH_APP_ID")]
    pub app_id: Option<String>,

    /// Development convenience: let the demo pages fetch tokens from GET /demo/token/* without the
    /// secret. [default: on only when the secret is the development default and HTTP listens on loopback].
    #[arg(long, env = "MEDIAMESH_DEMO_TOKENS")]
    pub demo_tokens: Option<bool>,

    /// This node's id in the cluster (letters, digits, '-', '_', '.'; unique per cluster)
    /// [default: the host name].
    #[arg(long, env = "MEDIAMESH_NODE_ID")]
    pub node_id: Option<String>,

    /// The zone (region, data centre) of this node [default: default].
    #[arg(long, env = "MEDIAMESH_ZONE")]
    pub zone: Option<String>,

    /// router: routes for other nodes (zone backbones, links between zones); peer: routes for
    /// none, and reaches other peers only over links of its own (a router does not relay
    /// between two of its peers) [default: router].
    #[arg(long, env = "MEDIAMESH_CLUSTER_ROLE", value_parser = ["router", "peer"])]
    pub cluster_role: Option<String>,

    /// Endpoint other nodes link to, e.g. tcp/10.0.0.1:7447 (tls/... with certificates);
    /// repeat for several [default: none: other nodes cannot link to this one].
    #[arg(long, env = "MEDIAMESH_CLUSTER_LISTEN", value_delimiter = ',')]
    pub cluster_listen: Vec<String>,

    /// Endpoint of a node to link to, e.g. tcp/10.0.0.1:7447; repeat for several. With neither
    /// --cluster-listen nor --cluster-connect the node is a cluster of one.
    #[arg(long, env = "MEDIAMESH_CLUSTER_CONNECT", value_delimiter = ',')]
    pub cluster_connect: Vec<String>,

    /// Shared by the nodes of one cluster: a node without it cannot link
    /// [default: derived from --secret, so nodes with one app secret form one cluster].
    #[arg(long, env = "MEDIAMESH_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// PEM certificate of this node for TLS links (with --cluster-tls-key and --cluster-tls-ca;
    /// endpoints are then written tls/HOST:PORT and both sides must present a certificate of the CA).
    #[arg(long, env = "MEDIAMESH_CLUSTER_TLS_CERT")]
    pub cluster_tls_cert: Option<PathBuf>,

    /// PEM private key of --cluster-tls-cert.
    #[arg(long, env = "MEDIAMESH_CLUSTER_TLS_KEY")]
    pub cluster_tls_key: Option<PathBuf>,

    /// PEM certificate of the CA that signs every node's certificate.
    #[arg(long, env = "MEDIAMESH_CLUSTER_TLS_CA")]
    pub cluster_tls_ca: Option<PathBuf>,

    /// Measure the RTT of the links this router dials and give zenoh link weights that follow
    /// it, so media takes the fastest path (the session reopens when they change) [default: true].
    #[arg(long, env = "MEDIAMESH_CLUSTER_RTT_WEIGHTS")]
    pub cluster_rtt_weights: Option<bool>,

    /// A link that stays silent this long is dead (frozen or unplugged node; a killed
    /// process's TCP links close at once) [default: 2000].
    #[arg(long, env = "MEDIAMESH_CLUSTER_LEASE_MS")]
    pub cluster_lease_ms: Option<u64>,

    /// Run as a gateway: serve the public API (tokens, WHIP, WHEP, SDK) and place each new
    /// session on a media node of the cluster (nearest zone, least loaded); no sessions here,
    /// no media port [default: false].
    #[arg(long, env = "MEDIAMESH_GATEWAY")]
    pub gateway: Option<bool>,

    /// Where this node's zone is, "LAT,LON" in degrees (e.g. 50.11,8.68): gateways send
    /// clients to the nearest zone [default: none].
    #[arg(long, env = "MEDIAMESH_ZONE_LOCATION")]
    pub zone_location: Option<String>,

    /// A MaxMind-format GeoIP City database (.mmdb): gateways locate clients by address
    /// [default: none: clients go to the gateway's own zone first].
    #[arg(long, env = "MEDIAMESH_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,

    /// Proxies (addresses or CIDR networks, comma-separated) whose X-Forwarded-For header
    /// is believed when locating a client [default: none].
    #[arg(long, env = "MEDIAMESH_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// This media node takes no new sessions from gateways at this many [default: no limit].
    #[arg(long, env = "MEDIAMESH_MAX_SESSIONS")]
    pub max_sessions: Option<u32>,

    /// ... nor at this CPU use of the process, in percent of the whole machine
    /// [default: no limit].
    #[arg(long, env = "MEDIAMESH_MAX_CPU")]
    pub max_cpu: Option<f32>,

    /// ... nor at this media bitrate (received plus sent), in Mbit/s [default: no limit].
    #[arg(long, env = "MEDIAMESH_MAX_BITRATE_MBPS")]
    pub max_bitrate_mbps: Option<f64>,
}

/// The same keys, read from a TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http_listen: Option<SocketAddr>,
    media_listen: Option<SocketAddr>,
    rtmp_listen: Option<String>,
    sip_listen: Option<String>,
    sip_tls_listen: Option<String>,
    sip_tls_cert: Option<PathBuf>,
    sip_tls_key: Option<PathBuf>,
    sip_tls_ca: Option<PathBuf>,
    sip_account: Option<Vec<String>>,
    sip_trunk: Option<String>,
    sip_trunk_username: Option<String>,
    sip_trunk_password: Option<String>,
    public_addr: Option<SocketAddr>,
    secret: Option<String>,
    app_id: Option<String>,
    demo_tokens: Option<bool>,
    node_id: Option<String>,
    zone: Option<String>,
    cluster_role: Option<String>,
    cluster_listen: Option<Vec<String>>,
    cluster_connect: Option<Vec<String>>,
    cluster_secret: Option<String>,
    cluster_tls_cert: Option<PathBuf>,
    cluster_tls_key: Option<PathBuf>,
    cluster_tls_ca: Option<PathBuf>,
    cluster_lease_ms: Option<u64>,
    cluster_rtt_weights: Option<bool>,
    gateway: Option<bool>,
    zone_location: Option<String>,
    geoip_db: Option<PathBuf>,
    trusted_proxies: Option<Vec<String>>,
    max_sessions: Option<u32>,
    max_cpu: Option<f32>,
    max_bitrate_mbps: Option<f64>,
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Config {
    pub http_listen: SocketAddr,
    pub media_listen: SocketAddr,
    /// RTMP ingest; `None`: off.
    pub rtmp_listen: Option<SocketAddr>,
    /// SIP; `None`: off.
    pub sip: Option<SipConfig>,
    pub public_addr: SocketAddr,
    pub secret: String,
    pub app_id: String,
    pub demo_tokens: bool,
    pub cluster: ClusterConfig,
    /// Gateway role, limits and zone location.
    pub load: LoadConfig,
    pub geoip_db: Option<PathBuf>,
    pub trusted_proxies: Vec<IpNet>,
}

/// SIP settings.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// UDP and TCP.
    pub listen: SocketAddr,
    pub tls: Option<SipTls>,
    /// Extra certificates trusted for dial-out over TLS.
    pub tls_ca: Option<PathBuf>,
    /// Digest accounts: user name and password.
    pub accounts: Vec<(String, String)>,
    pub trunk: Option<SipTrunk>,
}

#[derive(Debug, Clone)]
pub struct SipTls {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where dial-out goes by default, and its credentials.
#[derive(Debug, Clone)]
pub struct SipTrunk {
    pub uri: mediamesh_sip::Uri,
    pub credentials: Option<(String, String)>,
}

impl SipConfig {
    #[allow(clippy::too_many_arguments)]
    fn resolve(
        listen: SocketAddr,
        tls_listen: Option<String>,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
        tls_ca: Option<PathBuf>,
        accounts: &[String],
        trunk: Option<String>,
        trunk_username: Option<String>,
        trunk_password: Option<String>,
    ) -> Result<SipConfig, String> {
        let tls = match (tls_listen.as_deref(), tls_cert, tls_key) {
            (Some("off"), _, _) | (None, None, None) => None,
            (at, Some(cert), Some(key)) => {
                let listen = match at {
                    None => SocketAddr::new(listen.ip(), 5061),
                    Some(a) => a.parse().map_err(|e| {
                        format!(
                            "--sip-tls-listen {a}: {e} (an address like 203.0.113.7:5061, or off)"
                        )
                    })?,
                };
                if listen.ip().is_unspecified() {
                    return Err(format!(
                        "--sip-tls-listen {listen}: give the concrete address phones reach"
                    ));
                }
                Some(SipTls { listen, cert, key })
            }
            _ => return Err("SIP over TLS needs both --sip-tls-cert and --sip-tls-key".into()),
        };
        let accounts = accounts
            .iter()
            .filter(|a| !a.trim().is_empty())
            .map(|a| match a.split_once(':') {
                Some((u, p)) if !u.is_empty() && !p.is_empty() => {
                    Ok((u.to_string(), p.to_string()))
                }
                _ => Err(format!(
                    "--sip-account {}: expected USER:PASSWORD",
                    a.split(':').next().unwrap_or_default()
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let trunk = match trunk {
            None => None,
            Some(t) => {
                let uri = mediamesh_sip::Uri::parse(&t).map_err(|e| {
                    format!("--sip-trunk {t}: {e} (a URI like sip:203.0.113.5:5060)")
                })?;
                crate::sip::hop_spec(&uri).map_err(|e| format!("--sip-trunk {e}"))?;
                let credentials = match (trunk_username, trunk_password) {
                    (Some(u), Some(p)) => Some((u, p)),
                    (None, None) => None,
                    _ => {
                        return Err(
                            "--sip-trunk-username and --sip-trunk-password go together".into()
                        )
                    }
                };
                Some(SipTrunk { uri, credentials })
            }
        };
        Ok(SipConfig {
            listen,
            tls,
            tls_ca,
            accounts,
            trunk,
        })
    }
}

/// The host name, made a valid node id (or "node" when there is none).
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let id: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if id.is_empty() {
        "node".into()
    } else {
        id
    }
}

impl Config {
    pub fn is_dev_secret(&self) -> bool {
        self.secret == DEV_SECRET
    }

    /// Merges flags/environment (already in `cli`) over the file over defaults.
    pub fn resolve(cli: Cli) -> Result<Config, String> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("config file {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let http_listen = cli
            .http_listen
            .or(file.http_listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000)));
        let media_listen = cli
            .media_listen
            .or(file.media_listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3001)));
        let rtmp_listen = match cli.rtmp_listen.or(file.rtmp_listen).as_deref() {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 1935))),
            Some("off") => None,
            Some(a) => Some(a.parse().map_err(|e| {
                format!("--rtmp-listen {a}: {e} (an address like 0.0.0.0:1935, or off)")
            })?),
        };
        let sip_listen = match cli.sip_listen.or(file.sip_listen).as_deref() {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 5060))),
            Some("off") => None,
            Some(a) => {
                let addr: SocketAddr = a.parse().map_err(|e| {
                    format!("--sip-listen {a}: {e} (an address like 203.0.113.7:5060, or off)")
                })?;
                if addr.ip().is_unspecified() {
                    return Err(format!(
                        "--sip-listen {a}: give the concrete address phones reach (it goes into SDP and Via)"
                    ));
                }
                Some(addr)
            }
        };
        let sip = match sip_listen {
            None => None,
            Some(listen) => {
                let accounts = if cli.sip_account.is_empty() {
                    file.sip_account.unwrap_or_default()
                } else {
                    cli.sip_account
                };
                Some(SipConfig::resolve(
                    listen,
                    cli.sip_tls_listen.or(file.sip_tls_listen),
                    cli.sip_tls_cert.or(file.sip_tls_cert),
                    cli.sip_tls_key.or(file.sip_tls_key),
                    cli.sip_tls_ca.or(file.sip_tls_ca),
                    &accounts,
                    cli.sip_trunk.or(file.sip_trunk),
                    cli.sip_trunk_username.or(file.sip_trunk_username),
                    cli.sip_trunk_password.or(file.sip_trunk_password),
                )?)
            }
        };
        let public_addr = match cli.public_addr.or(file.public_addr) {
            Some(a) => a,
            None if media_listen.ip().is_unspecified() => {
                return Err(format!(
                    "--media-listen {media_listen} binds every interface: set --public-addr to the address peers should send media to"
                ));
            }
            None => media_listen,
        };
        // Port 0 (a media port picked at bind time) is filled in then.
        if public_addr.ip().is_unspecified() {
            return Err(format!("--public-addr {public_addr} must be a concrete IP"));
        }
        let secret = cli
            .secret
            .or(file.secret)
            .unwrap_or_else(|| DEV_SECRET.to_owned());
        if secret.is_empty() {
            return Err("--secret must not be empty".into());
        }
        let app_id = cli
            .app_id
            .or(file.app_id)
            .unwrap_or_else(|| "default".to_owned());
        let demo_tokens = cli
            .demo_tokens
            .or(file.demo_tokens)
            .unwrap_or(secret == DEV_SECRET && http_listen.ip().is_loopback());
        let node = cli.node_id.or(file.node_id).unwrap_or_else(default_node_id);
        let mut cluster = ClusterConfig::standalone(node);
        if let Some(z) = cli.zone.or(file.zone) {
            cluster.zone = z;
        }
        cluster.role = match cli.cluster_role.or(file.cluster_role).as_deref() {
            None | Some("router") => NodeRole::Router,
            Some("peer") => NodeRole::Peer,
            Some(x) => return Err(format!("--cluster-role {x}: use router or peer")),
        };
        cluster.listen = if cli.cluster_listen.is_empty() {
            file.cluster_listen.unwrap_or_default()
        } else {
            cli.cluster_listen
        };
        cluster.connect = if cli.cluster_connect.is_empty() {
            file.cluster_connect.unwrap_or_default()
        } else {
            cli.cluster_connect
        };
        cluster.secret = Some(
            cli.cluster_secret
                .or(file.cluster_secret)
                .unwrap_or_else(|| format!("app-secret\0{secret}")),
        );
        let tls = (
            cli.cluster_tls_cert.or(file.cluster_tls_cert),
            cli.cluster_tls_key.or(file.cluster_tls_key),
            cli.cluster_tls_ca.or(file.cluster_tls_ca),
        );
        cluster.tls = match tls {
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles { cert, key, ca }),
            (None, None, None) => None,
            _ => return Err(
                "TLS links need all of --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca"
                    .into(),
            ),
        };
        cluster.rtt_weights = cli
            .cluster_rtt_weights
            .or(file.cluster_rtt_weights)
            .unwrap_or(true);
        if let Some(ms) = cli.cluster_lease_ms.or(file.cluster_lease_ms) {
            cluster.lease = Duration::from_millis(ms);
        }
        cluster.validate().map_err(|e| e.to_string())?;
        let location = match cli.zone_location.or(file.zone_location) {
            Some(s) => Some(parse_lat_lon(&s).map_err(|e| format!("--zone-location {s}: {e}"))?),
            None => None,
        };
        let max_cpu = match cli.max_cpu.or(file.max_cpu) {
            Some(p) if !(p > 0.0 && p <= 100.0) => {
                return Err(format!("--max-cpu {p}: a percentage above 0, at most 100"))
            }
            p => p.map(|p| p / 100.0),
        };
        let max_bitrate = match cli.max_bitrate_mbps.or(file.max_bitrate_mbps) {
            Some(m) if !(m > 0.0 && m.is_finite()) => {
                return Err(format!("--max-bitrate-mbps {m}: a positive number"))
            }
            m => m.map(|m| (m * 1e6) as u64),
        };
        let load = LoadConfig {
            gateway: cli.gateway.or(file.gateway).unwrap_or(false),
            limits: LoadLimits {
                sessions: cli.max_sessions.or(file.max_sessions),
                cpu: max_cpu,
                bitrate: max_bitrate,
            },
            location,
        };
        let proxies = if cli.trusted_proxies.is_empty() {
            file.trusted_proxies.unwrap_or_default()
        } else {
            cli.trusted_proxies
        };
        let trusted_proxies = proxies
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                p.trim()
                    .parse::<IpNet>()
                    .map_err(|e| format!("--trusted-proxies {p}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let geoip_db = cli.geoip_db.or(file.geoip_db);
        Ok(Config {
            load,
            geoip_db,
            trusted_proxies,
            http_listen,
            media_listen,
            rtmp_listen,
            sip,
            public_addr,
            secret,
            app_id,
            demo_tokens,
            cluster,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_working_single_node() {
        let c = Config::resolve(Cli::default()).unwrap();
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.public_addr.to_string(), "127.0.0.1:3001");
        assert!(c.is_dev_secret());
        assert!(c.demo_tokens);
    }

    #[test]
    fn file_then_flags_override() {
        let dir = std::env::temp_dir().join(format!("mm-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "http_listen = \"127.0.0.1:4000\"\nsecret = \"s3\"\nmedia_listen = \"0.0.0.0:4001\"\npublic_addr = \"127.0.0.2:4001\"\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path.clone()),
            http_listen: Some("127.0.0.1:5000".parse().unwrap()),
            ..Cli::default()
        };
        let c = Config::resolve(cli).unwrap();
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:5000");
        assert_eq!(c.secret, "s3");
        assert_eq!(c.public_addr.to_string(), "127.0.0.2:4001");
        // A real secret turns the demo token shortcut off.
        assert!(!c.demo_tokens);

        std::fs::write(&path, "htp_listen = 1\n").unwrap();
        let err = Config::resolve(Cli {
            config: Some(path),
            ..Cli::default()
        })
        .unwrap_err();
        assert!(err.contains("htp_listen"), "{err}");
    }

    #[test]
    fn unspecified_bind_needs_a_public_address() {
        let err = Config::resolve(Cli {
            media_listen: Some("0.0.0.0:3001".parse().unwrap()),
            ..Cli::default()
        })
        .unwrap_err();
        assert!(err.contains("--public-addr"), "{err}");
    }

    #[test]
    fn sip_settings_resolve_and_bad_ones_are_explained() {
        let sip = |cli: Cli| Config::resolve(cli).map(|c| c.sip);
        let c = sip(Cli {
            sip_account: vec!["alice:pw:with:colons".into(), "bob:x".into()],
            sip_tls_cert: Some("c.pem".into()),
            sip_tls_key: Some("k.pem".into()),
            sip_trunk: Some("sip:192.0.2.1:5080;transport=tcp".into()),
            sip_trunk_username: Some("u".into()),
            sip_trunk_password: Some("p".into()),
            ..Cli::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:5060");
        assert_eq!(
            c.accounts,
            [
                ("alice".to_string(), "pw:with:colons".to_string()),
                ("bob".to_string(), "x".to_string())
            ]
        );
        assert_eq!(c.tls.unwrap().listen.to_string(), "127.0.0.1:5061");
        let trunk = c.trunk.unwrap();
        assert_eq!(
            trunk.uri.socket_addr().unwrap().to_string(),
            "192.0.2.1:5080"
        );
        // A named trunk over TLS is resolved per call.
        let c = sip(Cli {
            sip_trunk: Some("sips:trunk.example".into()),
            ..Cli::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(c.trunk.unwrap().uri.host, "trunk.example");
        assert_eq!(trunk.credentials, Some(("u".into(), "p".into())));
        assert!(sip(Cli {
            sip_listen: Some("off".into()),
            ..Cli::default()
        })
        .unwrap()
        .is_none());
        for (cli, needle) in [
            (
                Cli {
                    sip_account: vec!["nopassword".into()],
                    ..Cli::default()
                },
                "USER:PASSWORD",
            ),
            (
                Cli {
                    sip_tls_cert: Some("c.pem".into()),
                    ..Cli::default()
                },
                "--sip-tls-key",
            ),
            (
                Cli {
                    sip_trunk: Some("sip:pbx.example;transport=sctp".into()),
                    ..Cli::default()
                },
                "transport sctp",
            ),
            (
                Cli {
                    sip_trunk: Some("sip:192.0.2.1".into()),
                    sip_trunk_username: Some("u".into()),
                    ..Cli::default()
                },
                "go together",
            ),
        ] {
            let err = sip(cli).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }
}
