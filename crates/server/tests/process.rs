//! The `mediamesh` binary as a process: help, configuration errors, and a
//! clean drain on SIGTERM with a live session.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mediamesh");

fn free_tcp() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A minimal HTTP/1.1 exchange; returns (status, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

struct Server {
    child: Child,
    http: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(secret: &str) -> Server {
    let http_addr = free_tcp();
    let media = free_udp();
    let child = Command::new(BIN)
        .args([
            "--http-listen",
            &http_addr.to_string(),
            "--media-listen",
            &media.to_string(),
            "--rtmp-listen",
            "127.0.0.1:0",
            "--sip-listen",
            "127.0.0.1:0",
            "--secret",
            secret,
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        http: http_addr,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some((200, _)) = http(http_addr, "GET", "/healthz", &[], "") {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not answer /healthz within 20 s");
}

#[test]
fn help_explains_every_setting() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--http-listen",
        "--media-listen",
        "--public-addr",
        "--secret",
        "--app-id",
        "--demo-tokens",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    for env in [
        "MEDIAMESH_HTTP_LISTEN",
        "MEDIAMESH_MEDIA_LISTEN",
        "MEDIAMESH_SECRET",
    ] {
        assert!(text.contains(env), "--help lacks {env}:\n{text}");
    }
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let out = Command::new(BIN)
        .args(["--media-listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--public-addr"));

    let dir = std::env::temp_dir().join(format!("mm-proc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "http_listen = 42\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));

    // An address already in use is reported, not panicked on.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(BIN)
        .args([
            "--http-listen",
            &busy.local_addr().unwrap().to_string(),
            "--media-listen",
            &free_udp().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot bind HTTP"));
}

#[test]
fn sigterm_drains_sessions_and_exits_cleanly() {
    let mut server = start("proc-secret");
    let (status, body) = http(
        server.http,
        "POST",
        "/token/whip",
        &[
            ("Authorization", "Bearer proc-secret"),
            ("Content-Type", "application/json"),
        ],
        r#"{"room":"r","peer":"p","ttl":60}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = v["data"]["token"].as_str().unwrap().to_owned();
    let offer =
        include_str!("../../webrtc/tests/data/chrome-sendonly-offer.sdp").replace('\n', "\r\n");
    let auth = format!("Bearer {token}");
    let (status, body) = http(
        server.http,
        "POST",
        "/whip/endpoint",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/sdp"),
        ],
        &offer,
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");

    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "server still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    let mut stderr = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("draining sessions") && stderr.contains("sessions=1"),
        "{stderr}"
    );
    assert!(stderr.contains("session ended"), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
}
