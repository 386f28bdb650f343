//! Whole calls against scripted phones and trunks, time passed in.

use std::time::Duration;

use super::*;
use crate::auth::{answer_challenge, pick_challenge, Verify};
use crate::sdp::{answer, AudioConfig, LocalMedia};
use crate::testutil::{addr, baresip_invite, msg};
use crate::transaction::{ack_for_non_2xx, cancel_for};

const MS: Duration = Duration::from_millis(1);

fn phone() -> Peer {
    Peer::udp(addr("198.51.100.7:40000"))
}

fn trunk() -> Peer {
    Peer::udp(addr("192.0.2.50:5060"))
}

/// An endpoint that has just sent an INVITE with our offer to the trunk:
/// the call and that INVITE.
fn dialled(t0: Instant) -> (Endpoint, CallHandle, Request) {
    let mut ep = endpoint();
    let offer = crate::sdp::offer(&local_media(), &AudioConfig::default());
    let call = ep.dial(dial_options(), &offer, t0).unwrap();
    let invite = request(&sent(&mut ep)[0]).clone();
    (ep, call, invite)
}

fn endpoint() -> Endpoint {
    Endpoint::new(
        EndpointConfig {
            host: "203.0.113.5".into(),
            token_header: Some("X-Token".into()),
            ..Default::default()
        },
        [7; 32],
    )
}

fn local_media() -> LocalMedia {
    LocalMedia {
        address: "203.0.113.5".parse().unwrap(),
        port: 20000,
        session_id: 9,
        session_version: 1,
        direction: Direction::SendRecv,
    }
}

fn sent(ep: &mut Endpoint) -> Vec<Transmit> {
    std::iter::from_fn(|| ep.poll_transmit()).collect()
}

fn events(ep: &mut Endpoint) -> Vec<EndpointEvent> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

fn response(t: &Transmit) -> &Response {
    match &t.message {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {}", r.method),
    }
}

fn request(t: &Transmit) -> &Request {
    match &t.message {
        Message::Request(r) => r,
        Message::Response(r) => panic!("expected a request, got {}", r.status),
    }
}

fn statuses(ts: &[Transmit]) -> Vec<u16> {
    ts.iter().map(|t| response(t).status).collect()
}

/// Passes a message through bytes, as the network would.
fn deliver(ep: &mut Endpoint, from: Peer, m: impl Into<Message>, now: Instant) {
    ep.handle_datagram(from, &m.into().to_bytes(), now);
}

fn invite_bytes(extra: &[&str]) -> Vec<u8> {
    let s = String::from_utf8(baresip_invite()).unwrap();
    let mut add = String::new();
    for e in extra {
        add.push_str(e);
        add.push_str("\r\n");
    }
    s.replacen("Content-Type:", &format!("{add}Content-Type:"), 1)
        .into_bytes()
}

/// An incoming call from the phone, offered: (endpoint, call, the 100's
/// Via-stamped INVITE as the endpoint saw it).
fn incoming(ep: &mut Endpoint, extra: &[&str], now: Instant) -> (CallHandle, SessionDescription) {
    ep.handle_datagram(phone(), &invite_bytes(extra), now);
    let out = sent(ep);
    assert_eq!(statuses(&out), [100]);
    assert_eq!(out[0].to, phone(), "rport: back to the source");
    match &events(ep)[..] {
        [EndpointEvent::IncomingCall { call, offer, .. }] => (*call, offer.clone().unwrap()),
        e => panic!("{e:?}"),
    }
}

/// A request from the phone inside the call whose 200 was `ok`.
fn in_dialog(
    ok: &Response,
    method: &str,
    seq: u32,
    branch: &str,
    extra: &[&str],
    body: &str,
) -> Request {
    let to = ok.headers.get("To").unwrap().to_string();
    let mut head = vec![
        format!("{method} sip:mediamesh@203.0.113.5:5060 SIP/2.0"),
        format!("Via: SIP/2.0/UDP 192.168.1.20:5060;branch={branch};rport"),
        "From: \"Alice\" <sip:alice@example.com>;tag=4e2f7c1a9b3d".into(),
        format!("To: {to}"),
        "Call-ID: 0c9e8a7d6f5b4c3a".into(),
        format!("CSeq: {seq} {method}"),
        "Contact: <sip:alice-0x55d0@192.168.1.20:5060;transport=udp>".into(),
    ];
    head.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = head.iter().map(String::as_str).collect();
    Request::parse(&msg(&refs, body)).unwrap()
}

/// An accepted and acknowledged call: (call, the 200).
fn established(ep: &mut Endpoint, extra: &[&str], t0: Instant) -> (CallHandle, Response) {
    let (call, offer) = incoming(ep, extra, t0);
    let (ans, _) = answer(&offer, &local_media(), &AudioConfig::default()).unwrap();
    ep.accept(call, &ans, t0).unwrap();
    let out = sent(ep);
    let ok = response(&out[0]).clone();
    deliver(
        ep,
        phone(),
        in_dialog(&ok, "ACK", 38517, "z9hG4bKack1", &[], ""),
        t0 + 10 * MS,
    );
    assert_eq!(events(ep), [EndpointEvent::Established { call }]);
    (call, ok)
}

#[test]
fn incoming_call_from_answer_to_bye() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    ep.handle_datagram(phone(), &invite_bytes(&["X-Token: secret-token"]), t0);
    assert_eq!(statuses(&sent(&mut ep)), [100]);
    let (call, offer) = match &events(&mut ep)[..] {
        [EndpointEvent::IncomingCall {
            call,
            room,
            from,
            offer,
            token,
            source,
            ..
        }] => {
            assert_eq!(room, "room1");
            assert_eq!(from.uri.user.as_deref(), Some("alice"));
            assert_eq!(token.as_deref(), Some("secret-token"));
            assert_eq!(*source, phone());
            (*call, offer.clone().unwrap())
        }
        e => panic!("{e:?}"),
    };
    let (ans, n) = answer(&offer, &local_media(), &AudioConfig::default()).unwrap();
    assert_eq!(n.codec, crate::sdp::Codec::Opus);
    ep.ringing(call, None, t0).unwrap();
    assert_eq!(statuses(&sent(&mut ep)), [180]);
    ep.accept(call, &ans, t0 + 100 * MS).unwrap();
    let out = sent(&mut ep);
    assert_eq!(statuses(&out), [200]);
    let ok = response(&out[0]).clone();
    assert_eq!(out[0].to, phone());
    assert!(ok.headers.to().unwrap().tag().is_some());
    assert_eq!(
        ok.headers.contacts().unwrap()[0].uri.to_string(),
        "sip:mediamesh@203.0.113.5:5060"
    );
    assert_eq!(
        ok.headers.content_type().as_deref(),
        Some("application/sdp")
    );
    assert_eq!(SessionDescription::parse(&ok.body).unwrap(), ans);
    // No timer support from baresip: we refresh ourselves, nothing required.
    assert_eq!(
        ok.headers.get("Session-Expires"),
        Some("1800;refresher=uas")
    );
    assert!(!ok.headers.requires("timer"));
    // The 2xx is retransmitted until the ACK.
    ep.handle_timeout(t0 + 600 * MS);
    assert_eq!(statuses(&sent(&mut ep)), [200]);
    deliver(
        &mut ep,
        phone(),
        in_dialog(&ok, "ACK", 38517, "z9hG4bKack1", &[], ""),
        t0 + 700 * MS,
    );
    assert_eq!(events(&mut ep), [EndpointEvent::Established { call }]);
    ep.handle_timeout(t0 + Duration::from_secs(5));
    assert!(sent(&mut ep).is_empty());
    // The phone hangs up.
    deliver(
        &mut ep,
        phone(),
        in_dialog(&ok, "BYE", 38518, "z9hG4bKbye1", &[], ""),
        t0 + Duration::from_secs(10),
    );
    let out = sent(&mut ep);
    assert_eq!(statuses(&out), [200]);
    assert_eq!(
        response(&out[0]).headers.cseq().unwrap().method,
        Method::Bye
    );
    assert_eq!(
        events(&mut ep),
        [EndpointEvent::Ended {
            call,
            reason: EndReason::RemoteHangup
        }]
    );
    assert_eq!(ep.call_count(), 0);
    // A BYE for a dialog we no longer have.
    deliver(
        &mut ep,
        phone(),
        in_dialog(&ok, "BYE", 38519, "z9hG4bKbye2", &[], ""),
        t0 + Duration::from_secs(11),
    );
    assert_eq!(statuses(&sent(&mut ep)), [481]);
}

#[test]
fn malformed_and_unsupported_requests() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let base = String::from_utf8(baresip_invite()).unwrap();
    let check = |ep: &mut Endpoint, bytes: &[u8], want: Option<(u16, &str)>| {
        ep.handle_datagram(phone(), bytes, t0);
        let out = sent(ep);
        match want {
            None => assert!(out.is_empty(), "{out:?}"),
            Some((status, reason)) => {
                assert_eq!(out.len(), 1, "{}", String::from_utf8_lossy(bytes));
                let r = response(&out[0]);
                assert_eq!((r.status, r.reason.as_str()), (status, reason));
                assert_eq!(out[0].to, phone());
                assert!(r.headers.to().unwrap().tag().is_some());
            }
        }
        assert!(events(ep).is_empty());
    };
    let no_call_id = base.replacen("Call-ID: 0c9e8a7d6f5b4c3a\r\n", "", 1);
    check(
        &mut ep,
        no_call_id.as_bytes(),
        Some((400, "Missing Call-ID header")),
    );
    let bad_cl = base.replacen("Content-Length: ", "Content-Length: 9", 1);
    check(
        &mut ep,
        bad_cl.as_bytes(),
        Some((400, "Body shorter than Content-Length")),
    );
    let bad_mf = base.replacen("Max-Forwards: 70", "Max-Forwards: -70", 1);
    check(
        &mut ep,
        bad_mf.as_bytes(),
        Some((400, "Malformed Max-Forwards header")),
    );
    check(&mut ep, b"\x00\x01garbage\r\n\r\n", None);
    check(&mut ep, b"\r\n\r\n", None);
    let foo = base
        .replace("INVITE", "FOO")
        .replacen("z9hG4bK5a6f", "z9hG4bKfoo", 1);
    check(&mut ep, foo.as_bytes(), Some((501, "Not Implemented")));
    let sub = base
        .replace("INVITE", "SUBSCRIBE")
        .replacen("z9hG4bK5a6f", "z9hG4bKsub", 1);
    ep.handle_datagram(phone(), sub.as_bytes(), t0);
    let out = sent(&mut ep);
    assert_eq!(statuses(&out), [405]);
    assert_eq!(response(&out[0]).headers.get("Allow"), Some(ALLOW));
    let req100rel = base.replacen("Supported:", "Require: 100rel, timer\r\nSupported:", 1);
    ep.handle_datagram(phone(), req100rel.as_bytes(), t0);
    let out = sent(&mut ep);
    assert_eq!(statuses(&out), [420]);
    assert_eq!(response(&out[0]).headers.get("Unsupported"), Some("100rel"));
    let options = base
        .replace("INVITE", "OPTIONS")
        .replacen("z9hG4bK5a6f", "z9hG4bKopt", 1);
    ep.handle_datagram(phone(), options.as_bytes(), t0);
    let out = sent(&mut ep);
    assert_eq!(statuses(&out), [200]);
    assert_eq!(
        response(&out[0]).headers.get("Accept"),
        Some("application/sdp")
    );
    assert_eq!(response(&out[0]).headers.get("Allow"), Some(ALLOW));

    // INVITEs the core refuses (each after its 100 Trying).
    let mut invite = |edit: &dyn Fn(&str) -> String, branch: &str, want: (u16, &str)| {
        let s = edit(&base).replacen("z9hG4bK5a6f0c1e4b8d9a2f", branch, 1);
        ep.handle_datagram(phone(), s.as_bytes(), t0);
        let out = sent(&mut ep);
        assert_eq!(statuses(&out), [100, want.0], "{s}");
        assert_eq!(response(&out[1]).reason, want.1);
        assert!(events(&mut ep).is_empty());
    };
    invite(
        &|s| s.replacen("application/sdp", "text/plain", 1),
        "z9hG4bKi1",
        (415, "Unsupported Media Type"),
    );
    invite(
        &|s| s.replacen("v=0", "v=9", 1),
        "z9hG4bKi2",
        (400, "Malformed SDP"),
    );
    invite(
        &|s| s.replacen("INVITE sip:room1@", "INVITE sip:", 1),
        "z9hG4bKi3",
        (404, "No room in the Request-URI"),
    );
    invite(
        &|s| s.replacen("Supported: ", "Session-Expires: 30\r\nSupported: timer,", 1),
        "z9hG4bKi4",
        (422, "Session Interval Too Small"),
    );
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn cancel_before_the_answer() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, _) = incoming(&mut ep, &[], t0);
    ep.ringing(call, None, t0).unwrap();
    let ringing = response(&sent(&mut ep)[0]).clone();
    let invite = Request::parse(&baresip_invite()).unwrap();
    deliver(&mut ep, phone(), cancel_for(&invite), t0 + 100 * MS);
    let out = sent(&mut ep);
    assert_eq!(statuses(&out), [200, 487]);
    assert_eq!(
        response(&out[0]).headers.cseq().unwrap().method,
        Method::Cancel
    );
    let terminated = response(&out[1]).clone();
    assert_eq!(
        terminated.headers.to().unwrap().tag(),
        ringing.headers.to().unwrap().tag()
    );
    assert_eq!(
        events(&mut ep),
        [EndpointEvent::Ended {
            call,
            reason: EndReason::Cancelled
        }]
    );
    assert_eq!(ep.call_count(), 0);
    // The phone's ACK for the 487 stops its retransmission.
    deliver(
        &mut ep,
        phone(),
        ack_for_non_2xx(&invite, &terminated),
        t0 + 200 * MS,
    );
    ep.handle_timeout(t0 + Duration::from_secs(2));
    assert!(sent(&mut ep).is_empty());
    assert!(events(&mut ep).is_empty());
    // Commands on the ended call fail cleanly.
    assert_eq!(
        ep.accept(
            call,
            &SessionDescription::parse(crate::testutil::SIPP_SDP.as_bytes()).unwrap(),
            t0
        ),
        Err(EndpointError::NoSuchCall)
    );
}

#[test]
fn cancel_after_the_answer_changes_nothing() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, offer) = incoming(&mut ep, &[], t0);
    let (ans, _) = answer(&offer, &local_media(), &AudioConfig::default()).unwrap();
    ep.accept(call, &ans, t0).unwrap();
    let ok = response(&sent(&mut ep)[0]).clone();
    let invite = Request::parse(&baresip_invite()).unwrap();
    deliver(&mut ep, phone(), cancel_for(&invite), t0 + 5 * MS);
    assert_eq!(statuses(&sent(&mut ep)), [200]);
    assert!(events(&mut ep).is_empty());
    deliver(
        &mut ep,
        phone(),
        in_dialog(&ok, "ACK", 38517, "z9hG4bKack1", &[], ""),
        t0 + 10 * MS,
    );
    assert_eq!(events(&mut ep), [EndpointEvent::Established { call }]);
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn digest_challenge_then_authorized() {
    let t0 = Instant::now();
    let mut ep = endpoint().with_digest(DigestServer::new("mediamesh", b"server-secret", t0));
    let pw = |u: &str| (u == "alice").then(|| "wonderland".to_string());
    let (call, _) = incoming(&mut ep, &[], t0);
    assert_eq!(ep.authenticate(call, t0, pw), Ok(None));
    let out = sent(&mut ep);
    assert_eq!(statuses(&out), [401]);
    let challenge = response(&out[0]).clone();
    assert_eq!(challenge.headers.challenges(false).len(), 2);
    assert_eq!(
        events(&mut ep),
        [EndpointEvent::Ended {
            call,
            reason: EndReason::Rejected(401)
        }]
    );
    let invite = Request::parse(&baresip_invite()).unwrap();
    deliver(
        &mut ep,
        phone(),
        ack_for_non_2xx(&invite, &challenge),
        t0 + 10 * MS,
    );
    assert!(sent(&mut ep).is_empty());

    // The phone retries with credentials.
    let chs = challenge.headers.challenges(false);
    let ch = pick_challenge(&chs).unwrap();
    let creds = answer_challenge(
        ch,
        &Method::Invite,
        &invite.uri,
        "alice",
        "wonderland",
        "c0ffee",
        1,
    );
    let retry = format!("Authorization: {creds}");
    let bytes = String::from_utf8(invite_bytes(&[&retry]))
        .unwrap()
        .replacen("CSeq: 38517", "CSeq: 38518", 1)
        .replacen("z9hG4bK5a6f0c1e4b8d9a2f", "z9hG4bKretry", 1);
    ep.handle_datagram(phone(), bytes.as_bytes(), t0 + 20 * MS);
    assert_eq!(statuses(&sent(&mut ep)), [100]);
    let [EndpointEvent::IncomingCall { call, .. }] = events(&mut ep)[..] else {
        panic!()
    };
    assert_eq!(
        ep.authenticate(call, t0 + 30 * MS, pw),
        Ok(Some("alice".to_string()))
    );
    assert!(sent(&mut ep).is_empty());
    // A wrong password is challenged again.
    let mut ep2 = endpoint().with_digest(DigestServer::new("mediamesh", b"server-secret", t0));
    ep2.handle_datagram(phone(), bytes.as_bytes(), t0 + 20 * MS);
    sent(&mut ep2);
    let [EndpointEvent::IncomingCall { call, .. }] = events(&mut ep2)[..] else {
        panic!()
    };
    assert_eq!(
        ep2.authenticate(call, t0, |_| Some("wrong".into())),
        Ok(None)
    );
    assert_eq!(statuses(&sent(&mut ep2)), [401]);
    assert_eq!(
        endpoint().authenticate(CallHandle(1), t0, pw),
        Err(EndpointError::NoSuchCall)
    );
}

const HOLD: &str = "v=0\r\no=- 1234567890 1234567892 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 10000 RTP/AVP 96 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n";

#[test]
fn reinvite_puts_the_call_on_hold_and_back() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, ok) = established(&mut ep, &[], t0);
    let sdp_hdr = ["Content-Type: application/sdp"];
    let hold = in_dialog(&ok, "INVITE", 38518, "z9hG4bKhold", &sdp_hdr, HOLD);
    deliver(&mut ep, phone(), hold, t0 + Duration::from_secs(1));
    let out = sent(&mut ep);
    assert_eq!(statuses(&out), [100, 200]);
    let ans = SessionDescription::parse(&response(&out[1]).body).unwrap();
    assert_eq!(ans.media[0].direction, Some(Direction::RecvOnly));
    assert_eq!(ans.origin.session_version, 2);
    match &events(&mut ep)[..] {
        [EndpointEvent::RemoteSdp { call: c, hold, sdp }] => {
            assert_eq!(*c, call);
            assert!(*hold);
            assert!(sdp.is_hold());
        }
        e => panic!("{e:?}"),
    }
    deliver(
        &mut ep,
        phone(),
        in_dialog(&ok, "ACK", 38518, "z9hG4bKack2", &[], ""),
        t0 + Duration::from_secs(1),
    );
    let resume = in_dialog(
        &ok,
        "INVITE",
        38519,
        "z9hG4bKresume",
        &sdp_hdr,
        &HOLD.replace("sendonly", "sendrecv"),
    );
    deliver(&mut ep, phone(), resume, t0 + Duration::from_secs(2));
    let out = sent(&mut ep);
    let ans = SessionDescription::parse(&response(&out[1]).body).unwrap();
    assert_eq!(ans.media[0].direction, Some(Direction::SendRecv));
    assert!(matches!(
        &events(&mut ep)[..],
        [EndpointEvent::RemoteSdp { hold: false, .. }]
    ));
    // An out-of-order re-INVITE.
    let old = in_dialog(&ok, "INVITE", 5, "z9hG4bKold", &sdp_hdr, HOLD);
    deliver(&mut ep, phone(), old, t0 + Duration::from_secs(3));
    assert_eq!(statuses(&sent(&mut ep)), [100, 500]);
}

#[test]
fn session_expires_without_refresh() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, offer) = incoming(
        &mut ep,
        &["Session-Expires: 90;refresher=uac", "k: timer"],
        t0,
    );
    let (ans, _) = answer(&offer, &local_media(), &AudioConfig::default()).unwrap();
    ep.accept(call, &ans, t0).unwrap();
    let ok = response(&sent(&mut ep)[0]).clone();
    assert_eq!(ok.headers.get("Session-Expires"), Some("90;refresher=uac"));
    assert!(ok.headers.requires("timer"));
    deliver(
        &mut ep,
        phone(),
        in_dialog(&ok, "ACK", 38517, "z9hG4bKa", &[], ""),
        t0 + 10 * MS,
    );
    events(&mut ep);
    ep.handle_timeout(t0 + Duration::from_secs(59));
    assert!(sent(&mut ep).is_empty());
    ep.handle_timeout(t0 + Duration::from_secs(60));
    let out = sent(&mut ep);
    assert_eq!(out.len(), 1);
    assert_eq!(request(&out[0]).method, Method::Bye);
    assert_eq!(out[0].to, phone());
    assert_eq!(
        events(&mut ep),
        [EndpointEvent::Ended {
            call,
            reason: EndReason::SessionExpired
        }]
    );
}

#[test]
fn we_refresh_with_update() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    // No timer support in baresip's INVITE: we are the refresher.
    let (call, ok) = established(&mut ep, &["Session-Expires: 90"], t0);
    assert_eq!(ok.headers.get("Session-Expires"), Some("90;refresher=uas"));
    ep.handle_timeout(t0 + Duration::from_secs(45));
    let out = sent(&mut ep);
    assert_eq!(out.len(), 1);
    let update = request(&out[0]).clone();
    assert_eq!(update.method, Method::Update, "baresip allows UPDATE");
    assert_eq!(update.uri.host, "192.168.1.20");
    assert_eq!(
        out[0].to,
        phone(),
        "in-dialog requests follow the NATed flow"
    );
    assert_eq!(
        update.headers.get("Session-Expires"),
        Some("90;refresher=uac")
    );
    assert_eq!(update.headers.cseq().unwrap().seq, 1);
    let mut r = Response::for_request(&update, 200);
    r.headers.push("Session-Expires", "90;refresher=uac");
    deliver(&mut ep, phone(), r, t0 + Duration::from_secs(46));
    // Refreshed: no expiry at 60 s, the next refresh at 46 + 45 s.
    ep.handle_timeout(t0 + Duration::from_secs(61));
    assert!(sent(&mut ep).is_empty());
    assert_eq!(ep.poll_timeout(), Some(t0 + Duration::from_secs(91)));
    assert!(events(&mut ep).is_empty());
    let _ = call;
}

#[test]
fn no_ack_ends_the_call() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, offer) = incoming(&mut ep, &[], t0);
    let (ans, _) = answer(&offer, &local_media(), &AudioConfig::default()).unwrap();
    ep.accept(call, &ans, t0).unwrap();
    sent(&mut ep);
    let mut retransmits = 0;
    let mut bye = None;
    while let Some(at) = ep.poll_timeout() {
        if at > t0 + Duration::from_secs(33) {
            break;
        }
        ep.handle_timeout(at);
        for t in sent(&mut ep) {
            match &t.message {
                Message::Response(r) if r.status == 200 => retransmits += 1,
                Message::Request(r) if r.method == Method::Bye => bye = Some(t.to),
                _ => {}
            }
        }
    }
    assert_eq!(retransmits, 10);
    assert_eq!(bye, Some(phone()));
    assert_eq!(
        events(&mut ep),
        [EndpointEvent::Ended {
            call,
            reason: EndReason::AckTimeout
        }]
    );
}

fn dial_options() -> DialOptions {
    DialOptions {
        target: Uri::parse("sip:+15551234@trunk.example.net").unwrap(),
        next_hop: trunk(),
        from_user: "room1".into(),
        from_display: Some("Room 1".into()),
        credentials: Some(("acct".into(), "trunk-pass".into())),
        headers: vec![("X-Room".into(), "room1".into())],
    }
}

fn trunk_response(req: &Request, status: u16, extra: &[(&str, &str)], body: &str) -> Response {
    let mut r = Response::for_request(req, status);
    if status > 100 {
        r.set_to_tag("trunk-tag");
    }
    for (n, v) in extra {
        r.headers.push(n, *v);
    }
    if !body.is_empty() {
        r.headers.push("Content-Type", "application/sdp");
        r.body = body.as_bytes().to_vec();
    }
    r
}

const TRUNK_SDP: &str = "v=0\r\no=- 5 5 IN IP4 192.0.2.60\r\ns=-\r\nc=IN IP4 192.0.2.60\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

#[test]
fn dial_out_through_a_trunk_with_credentials() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let trunk_auth = DigestServer::new("trunk.example.net", b"trunk-secret", t0);
    let offer = crate::sdp::offer(&local_media(), &AudioConfig::default());
    let call = ep.dial(dial_options(), &offer, t0).unwrap();
    let out = sent(&mut ep);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, trunk());
    let invite = request(&out[0]).clone();
    invite.validate().unwrap();
    assert_eq!(invite.uri.to_string(), "sip:+15551234@trunk.example.net");
    assert_eq!(invite.headers.top_via().unwrap().rport(), Some(None));
    assert_eq!(invite.headers.get("X-Room"), Some("room1"));
    assert!(invite.headers.supports("timer"));
    assert_eq!(
        invite.headers.from().unwrap().display_name.as_deref(),
        Some("Room 1")
    );
    assert_eq!(SessionDescription::parse(&invite.body).unwrap(), offer);

    // 407: the transaction ACKs it, the endpoint retries with credentials.
    let mut challenge = trunk_auth.challenge_response(&invite, t0, false, true);
    challenge.set_to_tag("trunk-tag");
    deliver(&mut ep, trunk(), challenge, t0 + 50 * MS);
    let out = sent(&mut ep);
    assert_eq!(out.len(), 2);
    assert_eq!(request(&out[0]).method, Method::Ack);
    let invite2 = request(&out[1]).clone();
    assert_eq!(invite2.headers.cseq().unwrap().seq, 2);
    assert_ne!(
        invite2.headers.top_via().unwrap().branch(),
        invite.headers.top_via().unwrap().branch()
    );
    assert_eq!(invite2.headers.call_id(), invite.headers.call_id());
    let creds = &invite2.headers.credentials(true)[0];
    assert_eq!(creds.username, "acct");
    assert_eq!(
        trunk_auth.verify(
            &Method::Invite,
            &invite2.uri,
            creds,
            "trunk-pass",
            t0 + 60 * MS
        ),
        Verify::Ok
    );
    assert!(events(&mut ep).is_empty());

    // Early media, then the answer.
    deliver(
        &mut ep,
        trunk(),
        trunk_response(&invite2, 100, &[], ""),
        t0 + 100 * MS,
    );
    let contact = [("Contact", "<sip:gw@192.0.2.60:5060>")];
    deliver(
        &mut ep,
        trunk(),
        trunk_response(&invite2, 183, &contact, TRUNK_SDP),
        t0 + 200 * MS,
    );
    assert!(sent(&mut ep).is_empty());
    match &events(&mut ep)[..] {
        [EndpointEvent::Ringing {
            call: c,
            early_media: Some(sdp),
        }] => {
            assert_eq!(*c, call);
            assert_eq!(sdp.media[0].port, 30000);
        }
        e => panic!("{e:?}"),
    }
    let ok = trunk_response(
        &invite2,
        200,
        &[
            ("Contact", "<sip:gw@192.0.2.60:5060>"),
            ("Session-Expires", "1800;refresher=uac"),
        ],
        TRUNK_SDP,
    );
    deliver(&mut ep, trunk(), ok.clone(), t0 + Duration::from_secs(3));
    let out = sent(&mut ep);
    assert_eq!(out.len(), 1);
    let ack = request(&out[0]).clone();
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(
        out[0].to,
        Peer::udp(addr("192.0.2.60:5060")),
        "no route set: straight to the Contact"
    );
    assert_eq!(ack.headers.cseq().unwrap().to_string(), "2 ACK");
    assert!(ack.headers.contains("Proxy-Authorization"));
    assert!(matches!(
        &events(&mut ep)[..],
        [EndpointEvent::Answered {
            answer: Some(_),
            ..
        }]
    ));
    // A retransmitted 200 gets the same ACK.
    deliver(&mut ep, trunk(), ok, t0 + Duration::from_secs(4));
    let out = sent(&mut ep);
    assert_eq!(out.len(), 1);
    assert_eq!(request(&out[0]), &ack);
    // We are the refresher (refresher=uac): nothing is due for 900 s.
    ep.handle_timeout(t0 + Duration::from_secs(9));
    assert!(sent(&mut ep).is_empty());
    ep.hangup(call, t0 + Duration::from_secs(10)).unwrap();
    let out = sent(&mut ep);
    let bye = request(&out[0]).clone();
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.headers.cseq().unwrap().to_string(), "3 BYE");
    assert_eq!(bye.headers.to().unwrap().tag(), Some("trunk-tag"));
    assert_eq!(
        events(&mut ep),
        [EndpointEvent::Ended {
            call,
            reason: EndReason::LocalHangup
        }]
    );
    deliver(
        &mut ep,
        Peer::udp(addr("192.0.2.60:5060")),
        trunk_response(&bye, 200, &[], ""),
        t0 + Duration::from_secs(11),
    );
    assert!(sent(&mut ep).is_empty());
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn dial_out_cancelled_while_ringing() {
    let t0 = Instant::now();
    let (mut ep, call, invite) = dialled(t0);
    deliver(
        &mut ep,
        trunk(),
        trunk_response(&invite, 180, &[("Contact", "<sip:gw@192.0.2.60>")], ""),
        t0 + 100 * MS,
    );
    assert!(matches!(
        &events(&mut ep)[..],
        [EndpointEvent::Ringing {
            early_media: None,
            ..
        }]
    ));
    // A retransmitted 180 is not reported again.
    deliver(
        &mut ep,
        trunk(),
        trunk_response(&invite, 180, &[("Contact", "<sip:gw@192.0.2.60>")], ""),
        t0 + 600 * MS,
    );
    assert!(events(&mut ep).is_empty());
    ep.hangup(call, t0 + Duration::from_secs(1)).unwrap();
    let out = sent(&mut ep);
    let cancel = request(&out[0]).clone();
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(out[0].to, trunk());
    assert_eq!(
        events(&mut ep),
        [EndpointEvent::Ended {
            call,
            reason: EndReason::LocalHangup
        }]
    );
    deliver(
        &mut ep,
        trunk(),
        trunk_response(&cancel, 200, &[], ""),
        t0 + Duration::from_secs(1),
    );
    deliver(
        &mut ep,
        trunk(),
        trunk_response(&invite, 487, &[], ""),
        t0 + Duration::from_secs(1),
    );
    let out = sent(&mut ep);
    assert_eq!(out.len(), 1);
    assert_eq!(request(&out[0]).method, Method::Ack);
    assert!(events(&mut ep).is_empty(), "ended once");
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn dial_out_answer_crossing_our_cancel_is_acked_and_ended() {
    let t0 = Instant::now();
    let (mut ep, call, invite) = dialled(t0);
    // Hang up before any provisional response: the CANCEL waits (9.1).
    ep.hangup(call, t0 + 10 * MS).unwrap();
    assert!(sent(&mut ep).is_empty());
    assert_eq!(
        events(&mut ep),
        [EndpointEvent::Ended {
            call,
            reason: EndReason::LocalHangup
        }]
    );
    // The callee answers at once.
    let ok = trunk_response(
        &invite,
        200,
        &[("Contact", "<sip:callee@192.0.2.70:5060>")],
        TRUNK_SDP,
    );
    deliver(&mut ep, trunk(), ok, t0 + 20 * MS);
    let out = sent(&mut ep);
    let methods: Vec<Method> = out.iter().map(|t| request(t).method.clone()).collect();
    assert_eq!(methods, [Method::Ack, Method::Bye]);
    assert!(events(&mut ep).is_empty());
}

#[test]
fn dial_out_failures() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let offer = crate::sdp::offer(&local_media(), &AudioConfig::default());
    // Nobody answers: timer B.
    let call = ep.dial(dial_options(), &offer, t0).unwrap();
    sent(&mut ep);
    ep.handle_timeout(t0 + Duration::from_secs(32));
    assert_eq!(
        events(&mut ep),
        [EndpointEvent::Ended {
            call,
            reason: EndReason::Timeout
        }]
    );
    // The next hop cannot be reached (a connection refused, a TLS
    // certificate not trusted): the call ends at once, a transport error
    // for another destination changes nothing, and no timer fires later.
    let call = ep.dial(dial_options(), &offer, t0).unwrap();
    sent(&mut ep);
    ep.transport_error(Peer::udp(addr("192.0.2.99:5060")), t0 + MS);
    assert!(events(&mut ep).is_empty());
    ep.transport_error(trunk(), t0 + MS);
    assert_eq!(
        events(&mut ep),
        [EndpointEvent::Ended {
            call,
            reason: EndReason::Unreachable
        }]
    );
    ep.handle_timeout(t0 + Duration::from_secs(40));
    assert!(events(&mut ep).is_empty());
    assert!(sent(&mut ep).is_empty());
    // Busy.
    let call = ep.dial(dial_options(), &offer, t0).unwrap();
    let invite = request(&sent(&mut ep)[0]).clone();
    deliver(
        &mut ep,
        trunk(),
        trunk_response(&invite, 486, &[], ""),
        t0 + MS,
    );
    assert_eq!(
        events(&mut ep),
        [EndpointEvent::Ended {
            call,
            reason: EndReason::Rejected(486)
        }]
    );
    assert_eq!(request(&sent(&mut ep)[0]).method, Method::Ack);
    // A challenge without credentials to answer it.
    let mut opts = dial_options();
    opts.credentials = None;
    let call = ep.dial(opts, &offer, t0).unwrap();
    let invite = request(&sent(&mut ep)[0]).clone();
    let challenge = DigestServer::new("t", b"k", t0).challenge_response(&invite, t0, false, false);
    deliver(&mut ep, trunk(), challenge, t0 + MS);
    assert_eq!(
        events(&mut ep),
        [EndpointEvent::Ended {
            call,
            reason: EndReason::Rejected(401)
        }]
    );
    assert_eq!(request(&sent(&mut ep)[0]).method, Method::Ack);
    // 422: retried once with the Min-SE asked for.
    let call = ep.dial(dial_options(), &offer, t0).unwrap();
    let invite = request(&sent(&mut ep)[0]).clone();
    deliver(
        &mut ep,
        trunk(),
        trunk_response(&invite, 422, &[("Min-SE", "3600")], ""),
        t0 + MS,
    );
    let out = sent(&mut ep);
    assert_eq!(
        request(&out[1]).headers.get("Session-Expires"),
        Some("3600")
    );
    assert!(events(&mut ep).is_empty());
    let _ = call;
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn options_keepalive() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    ep.send_options(Uri::parse("sip:trunk.example.net").unwrap(), trunk(), t0)
        .unwrap();
    let out = sent(&mut ep);
    let ping = request(&out[0]).clone();
    ping.validate().unwrap();
    deliver(
        &mut ep,
        trunk(),
        trunk_response(&ping, 200, &[], ""),
        t0 + 30 * MS,
    );
    assert_eq!(
        events(&mut ep),
        [EndpointEvent::OptionsResult {
            to: trunk(),
            status: Some(200)
        }]
    );
    ep.send_options(Uri::parse("sip:trunk.example.net").unwrap(), trunk(), t0)
        .unwrap();
    sent(&mut ep);
    ep.handle_timeout(t0 + Duration::from_secs(32));
    assert_eq!(
        events(&mut ep),
        [EndpointEvent::OptionsResult {
            to: trunk(),
            status: None
        }]
    );
}

#[test]
fn call_limit_gives_503() {
    let mut ep = Endpoint::new(
        EndpointConfig {
            max_calls: 1,
            ..Default::default()
        },
        [1; 32],
    );
    let t0 = Instant::now();
    incoming(&mut ep, &[], t0);
    let second = String::from_utf8(baresip_invite())
        .unwrap()
        .replacen("z9hG4bK5a6f0c1e4b8d9a2f", "z9hG4bKsecond", 1)
        .replacen("Call-ID: 0c9e", "Call-ID: 1c9e", 1);
    ep.handle_datagram(phone(), second.as_bytes(), t0);
    assert_eq!(statuses(&sent(&mut ep)), [100, 503]);
}
