//! TLS links between nodes (mutual: both present a certificate of the
//! cluster's CA), with certificates made by the openssl command for the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mediamesh_cluster::{Cluster, ClusterConfig, ClusterEvent, TlsFiles, ViewEvent};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and one node certificate for 127.0.0.1 signed by it, in `dir`.
fn pki(dir: &Path) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=mediamesh-test-ca",
    ]);
    openssl(dir, &ca);
    let mut req = vec!["req"];
    req.extend(ec);
    req.extend([
        "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=node",
    ]);
    openssl(dir, &req);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "node.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "node.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    TlsFiles {
        cert: dir.join("node.pem"),
        key: dir.join("node.key"),
        ca: dir.join("ca.pem"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn node(name: &str, tls: TlsFiles, listen: Option<u16>, connect: Option<u16>) -> ClusterConfig {
    let mut c = ClusterConfig::standalone(name);
    c.listen = listen
        .map(|p| vec![format!("tls/127.0.0.1:{p}")])
        .unwrap_or_default();
    c.connect = connect
        .map(|p| vec![format!("tls/127.0.0.1:{p}")])
        .unwrap_or_default();
    c.tls = Some(tls);
    c.secret = Some("k".into());
    c
}

async fn sees(c: &mut Cluster, other: &str, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(ClusterEvent::View(ViewEvent::NodeUp(n))) =
            tokio::time::timeout(Duration::from_millis(100), c.next()).await
        {
            if n.node == other {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_link_over_mutual_tls_and_a_foreign_certificate_is_refused() {
    let base: PathBuf = std::env::temp_dir().join(format!("mm-cluster-tls-{}", std::process::id()));
    let ours = pki(&base.join("ours"));
    let theirs = pki(&base.join("theirs"));
    let port = free_port();
    let mut a = Cluster::join(&node("tls-a", ours.clone(), Some(port), None), 1).unwrap();
    let mut b = Cluster::join(&node("tls-b", ours, None, Some(port)), 1).unwrap();
    assert!(
        sees(&mut b, "tls-a", Duration::from_secs(10)).await,
        "b never saw a over TLS"
    );
    assert!(
        sees(&mut a, "tls-b", Duration::from_secs(10)).await,
        "a never saw b over TLS"
    );
    // Same secret, but a certificate of another CA: no link.
    let mut x = Cluster::join(&node("tls-x", theirs, None, Some(port)), 1).unwrap();
    assert!(
        !sees(&mut x, "tls-a", Duration::from_secs(3)).await,
        "x joined with a foreign certificate"
    );
    assert!(a.nodes().iter().all(|n| n.node != "tls-x"));
    let _ = std::fs::remove_dir_all(base);
}
