//! The HTTP API against a real media worker (on an ephemeral loopback UDP
//! port): tokens, WHIP/WHEP session lifecycle, trickle and ICE restart, and
//! every error a client can provoke.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use mediamesh::api::{self, AppState};
use mediamesh::cluster::{Cluster, ClusterConfig};
use mediamesh::config::Config;
use mediamesh::worker::Worker;
use tower::ServiceExt;

const SECRET: &str = "test-secret";
const PUBLISH_OFFER: &str = include_str!("../../webrtc/tests/data/chrome-sendonly-offer.sdp");
const PLAY_OFFER: &str = include_str!("../../webrtc/tests/data/chrome-recvonly-offer.sdp");

fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

async fn app() -> Router {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let identity = mediamesh_webrtc::DtlsIdentity::generate().unwrap();
    let cluster_config = ClusterConfig::standalone("http-api-test");
    // zenoh opens sessions outside current-thread runtimes (like this test's).
    let joining = cluster_config.clone();
    let cluster = std::thread::spawn(move || Cluster::join(&joining, 1).unwrap())
        .join()
        .unwrap();
    tokio::spawn(
        Worker::new(
            socket,
            addr,
            identity,
            SECRET.into(),
            cluster,
            Default::default(),
        )
        .unwrap()
        .run(rx),
    );
    let config = Config {
        http_listen: "127.0.0.1:0".parse().unwrap(),
        media_listen: addr,
        rtmp_listen: None,
        sip: None,
        public_addr: addr,
        secret: SECRET.into(),
        app_id: "app".into(),
        demo_tokens: false,
        cluster: cluster_config,
        load: Default::default(),
        geoip_db: None,
        trusted_proxies: Vec::new(),
    };
    api::router(AppState {
        config: Arc::new(config),
        worker: tx,
        draining: Arc::new(AtomicBool::new(false)),
        geo: None,
        sip: None,
    })
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn call(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn req(
    method: Method,
    uri: &str,
    auth: Option<&str>,
    ctype: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, format!("Bearer {a}"));
    }
    if let Some(c) = ctype {
        b = b.header(header::CONTENT_TYPE, c);
    }
    b.body(body.into()).unwrap()
}

async fn token(app: &Router, kind: &str, room: &str, peer: &str) -> String {
    let body = format!(r#"{{"room":"{room}","peer":"{peer}","ttl":600}}"#);
    let r = call(
        app,
        req(
            Method::POST,
            &format!("/token/{kind}"),
            Some(SECRET),
            Some("application/json"),
            body,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["status"], true);
    v["data"]["token"].as_str().unwrap().to_owned()
}

/// Creates a session; returns (location, etag).
async fn create(app: &Router, kind: &str, tok: &str, offer: &str) -> (String, String) {
    let r = call(
        app,
        req(
            Method::POST,
            &format!("/{kind}/endpoint"),
            Some(tok),
            Some("application/sdp"),
            crlf(offer),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/sdp");
    assert!(r.body.starts_with("v=0"), "{}", r.body);
    assert!(
        r.body.contains("a=candidate:"),
        "answer carries our candidate: {}",
        r.body
    );
    let location = r.headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("/{kind}/conn/")),
        "{location}"
    );
    let etag = r.headers[header::ETAG].to_str().unwrap().to_owned();
    (location, etag)
}

#[tokio::test]
async fn whip_and_whep_sessions_live_and_die() {
    let app = app().await;
    let pub_tok = token(&app, "whip", "r1", "alice").await;
    let play_tok = token(&app, "whep", "r1", "bob").await;
    let (whip, _) = create(&app, "whip", &pub_tok, PUBLISH_OFFER).await;
    let (whep, _) = create(&app, "whep", &play_tok, PLAY_OFFER).await;

    let health = call(
        &app,
        req(Method::GET, "/healthz", None, None, Body::empty()),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(v["sessions"], 2);
    assert_eq!(v["rooms"], 1);

    // Prometheus metrics: no token needed, aggregates only.
    let m = call(
        &app,
        req(Method::GET, "/metrics", None, None, Body::empty()),
    )
    .await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.headers[axum::http::header::CONTENT_TYPE]
        .to_str()
        .is_ok_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let lines: Vec<&str> = m.body.lines().collect();
    for want in [
        "mediamesh_sessions 2",
        "mediamesh_rooms 1",
        "# TYPE mediamesh_video_receivers gauge",
        "mediamesh_video_receivers{spatial=\"0\"} 0",
        "# TYPE mediamesh_peer_egress_estimate_bps histogram",
        "mediamesh_peer_egress_estimate_bps_bucket{le=\"+Inf\"} 0",
        "mediamesh_peer_egress_estimate_bps_count 0",
    ] {
        assert!(lines.contains(&want), "{want:?} not in\n{}", m.body);
    }
    assert!(
        !m.body.contains("alice") && !m.body.contains("r1"),
        "{}",
        m.body
    );

    // A WHIP session cannot be reached through the WHEP path.
    let cross = whip.replace("/whip/", "/whep/");
    let r = call(
        &app,
        req(Method::DELETE, &cross, Some(&play_tok), None, Body::empty()),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    for (loc, tok) in [(&whip, &pub_tok), (&whep, &play_tok)] {
        let r = call(
            &app,
            req(Method::DELETE, loc, Some(tok), None, Body::empty()),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = call(
            &app,
            req(Method::DELETE, loc, Some(tok), None, Body::empty()),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let health = call(
        &app,
        req(Method::GET, "/healthz", None, None, Body::empty()),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(v["sessions"], 0);
    assert_eq!(v["rooms"], 0);
}

#[tokio::test]
async fn trickle_accepts_multi_line_fragments_and_ice_restart() {
    let app = app().await;
    let tok = token(&app, "whip", "r1", "alice").await;
    let (loc, etag) = create(&app, "whip", &tok, PUBLISH_OFFER).await;
    let frag = "a=ice-ufrag:Ke3X\r\na=ice-pwd:h4Gj0mdV4QkfNb8RQpcyZ7Ru\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
        a=candidate:1 1 udp 2122260223 127.0.0.1 61764 typ host generation 0 ufrag Ke3X\r\n\
        a=candidate:2 1 udp 2122194687 127.0.0.1 61765 typ host generation 0 ufrag Ke3X\r\n\
        a=candidate:3 1 udp 1686052607 127.0.0.1 61766 typ srflx raddr 127.0.0.1 rport 61764 generation 0 ufrag Ke3X\r\n\
        a=end-of-candidates\r\n";
    let trickle = |body: String, if_match: Option<&str>| {
        let mut r = req(
            Method::PATCH,
            &loc,
            Some(&tok),
            Some("application/trickle-ice-sdpfrag"),
            body,
        );
        if let Some(m) = if_match {
            r.headers_mut().insert(header::IF_MATCH, m.parse().unwrap());
        }
        r
    };
    let r = call(&app, trickle(frag.into(), Some(&etag))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    // A stale ETag is refused.
    let r = call(&app, trickle(frag.into(), Some("\"not-the-etag\""))).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);

    // New credentials: ICE restart, answered with ours and a new ETag.
    let restart = "a=ice-ufrag:New1\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
        a=candidate:1 1 udp 2122260223 127.0.0.1 61770 typ host generation 0 ufrag New1\r\n";
    let r = call(&app, trickle(restart.into(), Some("*"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "application/trickle-ice-sdpfrag"
    );
    let new_etag = r.headers[header::ETAG].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag);
    assert!(r.body.contains("a=ice-ufrag:"), "{}", r.body);
    assert!(r.body.contains("a=ice-pwd:"), "{}", r.body);
    // Once, on the BUNDLE-tagged m-line (clients splice candidate lines
    // into their remote description; duplicates break some of them).
    assert_eq!(r.body.matches("a=candidate:").count(), 1, "{}", r.body);
    assert!(r.body.contains("a=end-of-candidates"), "{}", r.body);
    let r = call(&app, trickle(frag.into(), Some(&etag))).await;
    assert_eq!(
        r.status,
        StatusCode::PRECONDITION_FAILED,
        "the old ETag is gone"
    );
    let r = call(
        &app,
        trickle("a=end-of-candidates\r\n".into(), Some(&new_etag)),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    // Malformed fragments and candidates are 400 with a reason.
    let r = call(&app, trickle("this is not sdp".into(), None)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("malformed sdpfrag"), "{}", r.body);
    let r = call(
        &app,
        trickle("a=candidate:1 1 udp nonsense\r\n".into(), None),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("candidate"), "{}", r.body);
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_disturbs_nothing() {
    let app = app().await;
    let pub_tok = token(&app, "whip", "r1", "alice").await;
    let play_tok = token(&app, "whep", "r1", "bob").await;
    let (live, _) = create(&app, "whip", &pub_tok, PUBLISH_OFFER).await;
    let offer = crlf(PUBLISH_OFFER);

    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            req(
                Method::POST,
                "/whip/endpoint",
                None,
                Some("application/sdp"),
                offer.clone(),
            ),
            StatusCode::UNAUTHORIZED,
            "missing Authorization",
        ),
        (
            req(
                Method::POST,
                "/whip/endpoint",
                Some("garbage"),
                Some("application/sdp"),
                offer.clone(),
            ),
            StatusCode::UNAUTHORIZED,
            "not a JWT",
        ),
        (
            req(
                Method::POST,
                "/whip/endpoint",
                Some(&mediamesh::token::encode(
                    &mediamesh::token::Claims {
                        sub: "app".into(),
                        kind: mediamesh::token::TokenKind::Whip,
                        room: "r1".into(),
                        peer: Some("x".into()),
                        iat: 0,
                        exp: 1,
                        record: false,
                        extra_data: None,
                    },
                    SECRET,
                )),
                Some("application/sdp"),
                offer.clone(),
            ),
            StatusCode::UNAUTHORIZED,
            "expired",
        ),
        (
            req(
                Method::POST,
                "/whip/endpoint",
                Some(&play_tok),
                Some("application/sdp"),
                offer.clone(),
            ),
            StatusCode::FORBIDDEN,
            "whip token",
        ),
        (
            req(
                Method::POST,
                "/whip/endpoint",
                Some(&pub_tok),
                Some("text/plain"),
                offer.clone(),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/sdp",
        ),
        (
            req(
                Method::POST,
                "/whip/endpoint",
                Some(&pub_tok),
                None,
                offer.clone(),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/sdp",
        ),
        (
            req(
                Method::POST,
                "/whip/endpoint",
                Some(&pub_tok),
                Some("application/sdp"),
                "v=0\r\no=broken\r\n",
            ),
            StatusCode::BAD_REQUEST,
            "malformed SDP offer",
        ),
        (
            req(
                Method::POST,
                "/whip/endpoint",
                Some(&pub_tok),
                Some("application/sdp"),
                "",
            ),
            StatusCode::BAD_REQUEST,
            "empty body",
        ),
        (
            req(
                Method::POST,
                "/whip/endpoint",
                Some(&pub_tok),
                Some("application/sdp"),
                crlf(PLAY_OFFER),
            ),
            StatusCode::BAD_REQUEST,
            "sendonly",
        ),
        (
            req(
                Method::POST,
                "/whep/endpoint",
                Some(&play_tok),
                Some("application/sdp"),
                offer.clone(),
            ),
            StatusCode::BAD_REQUEST,
            "recvonly",
        ),
        (
            req(
                Method::POST,
                "/whip/endpoint",
                Some(&pub_tok),
                Some("application/sdp"),
                vec![b'a'; 200 * 1024],
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
        (
            req(
                Method::POST,
                "/whip/endpoint",
                Some(&pub_tok),
                Some("application/sdp"),
                vec![0xffu8, 0xfe, 0x00],
            ),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            req(
                Method::PATCH,
                "/whip/conn/nope",
                Some(&pub_tok),
                Some("application/trickle-ice-sdpfrag"),
                "a=end-of-candidates\r\n",
            ),
            StatusCode::NOT_FOUND,
            "no such session",
        ),
        (
            req(
                Method::PATCH,
                &live,
                Some(&pub_tok),
                Some("application/sdp"),
                "a=end-of-candidates\r\n",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "trickle-ice-sdpfrag",
        ),
        (
            req(
                Method::PATCH,
                &live,
                None,
                Some("application/trickle-ice-sdpfrag"),
                "a=end-of-candidates\r\n",
            ),
            StatusCode::UNAUTHORIZED,
            "",
        ),
        (
            req(Method::DELETE, &live, None, None, Body::empty()),
            StatusCode::UNAUTHORIZED,
            "",
        ),
        (
            req(
                Method::DELETE,
                "/whip/conn/nope",
                Some(&pub_tok),
                None,
                Body::empty(),
            ),
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            req(
                Method::POST,
                "/token/whip",
                None,
                Some("application/json"),
                r#"{"room":"r","peer":"p","ttl":60}"#,
            ),
            StatusCode::UNAUTHORIZED,
            "",
        ),
        (
            req(
                Method::POST,
                "/token/whip",
                Some("wrong"),
                Some("application/json"),
                r#"{"room":"r","peer":"p","ttl":60}"#,
            ),
            StatusCode::UNAUTHORIZED,
            "app secret",
        ),
        (
            req(
                Method::POST,
                "/token/whip",
                Some(SECRET),
                Some("application/json"),
                r#"{"room":"r""#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid JSON",
        ),
        (
            req(
                Method::POST,
                "/token/whip",
                Some(SECRET),
                Some("application/json"),
                r#"{"room":"r","ttl":60}"#,
            ),
            StatusCode::BAD_REQUEST,
            "peer is required",
        ),
        (
            req(
                Method::POST,
                "/token/whip",
                Some(SECRET),
                Some("application/json"),
                r#"{"room":"r","peer":"p","ttl":0}"#,
            ),
            StatusCode::BAD_REQUEST,
            "ttl",
        ),
        (
            req(
                Method::POST,
                "/token/xmpp",
                Some(SECRET),
                Some("application/json"),
                r#"{"room":"r","peer":"p","ttl":60}"#,
            ),
            StatusCode::NOT_FOUND,
            "no token kind",
        ),
        (
            req(
                Method::GET,
                "/demo/token/whip?room=r",
                None,
                None,
                Body::empty(),
            ),
            StatusCode::FORBIDDEN,
            "demo tokens are disabled",
        ),
    ];
    for (i, (request, status, reason)) in cases.into_iter().enumerate() {
        let what = format!("case {i}: {} {}", request.method(), request.uri());
        let r = call(&app, request).await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert!(
            r.body.contains(reason),
            "{what}: reason `{}` lacks `{reason}`",
            r.body
        );
        assert!(
            !r.body.contains('\n') || r.body.trim_end().lines().count() <= 1,
            "{what}: one line: {}",
            r.body
        );
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer", "{what}");
        }
    }

    // A token for another room or peer cannot touch the session.
    let other_room = token(&app, "whip", "r2", "alice").await;
    let r = call(
        &app,
        req(
            Method::DELETE,
            &live,
            Some(&other_room),
            None,
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let other_peer = token(&app, "whip", "r1", "mallory").await;
    let r = call(
        &app,
        req(
            Method::PATCH,
            &live,
            Some(&other_peer),
            Some("application/trickle-ice-sdpfrag"),
            "a=end-of-candidates\r\n",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // After all of it the live session is still there and answers.
    let r = call(
        &app,
        req(
            Method::PATCH,
            &live,
            Some(&pub_tok),
            Some("application/trickle-ice-sdpfrag"),
            "a=end-of-candidates\r\n",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let health = call(
        &app,
        req(Method::GET, "/healthz", None, None, Body::empty()),
    )
    .await;
    assert!(health.body.contains("\"sessions\":1"), "{}", health.body);
}

#[tokio::test]
async fn cors_preflight_allows_browser_clients() {
    let app = app().await;
    let r = Request::builder()
        .method(Method::OPTIONS)
        .uri("/whip/endpoint")
        .header(header::ORIGIN, "http://example.test")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .body(Body::empty())
        .unwrap();
    let r = call(&app, r).await;
    assert!(r.status.is_success(), "{}", r.status);
    assert_eq!(r.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let methods = r.headers[header::ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .unwrap();
    for m in ["POST", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = r.headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("if-match"),
        "{allowed}"
    );

    // Responses expose Location and ETag to scripts.
    let tok = token(&app, "whip", "r", "p").await;
    let mut r = req(
        Method::POST,
        "/whip/endpoint",
        Some(&tok),
        Some("application/sdp"),
        crlf(PUBLISH_OFFER),
    );
    r.headers_mut()
        .insert(header::ORIGIN, "http://example.test".parse().unwrap());
    let r = call(&app, r).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let exposed = r.headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        exposed.contains("location") && exposed.contains("etag"),
        "{exposed}"
    );
}
