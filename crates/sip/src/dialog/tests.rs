//! Dialog creation, in-dialog requests, 2xx retransmission, session timers,
//! hold and CANCEL.

use super::*;
use crate::testutil::{baresip_invite, msg};

fn contact() -> NameAddr {
    NameAddr::new(Uri::parse("sip:room1@203.0.113.5:5060").unwrap())
}

fn invite_with_routes() -> Request {
    let mut r = Request::parse(&baresip_invite()).unwrap();
    r.headers.push(
        "Record-Route",
        "<sip:p1.example.net;lr>, <sip:p2.example.net;lr>",
    );
    r
}

fn uas_dialog() -> Dialog {
    Dialog::uas(
        &invite_with_routes(),
        "mm-tag",
        contact(),
        TimerConfig::default(),
    )
    .unwrap()
}

/// A request from the remote within the UAS dialog.
fn remote_request(method: &str, seq: u32, extra: &[&str], body: &str) -> Request {
    let mut head = vec![
        format!("{method} sip:room1@203.0.113.5:5060 SIP/2.0"),
        "Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKr1;rport".to_string(),
        "From: \"Alice\" <sip:alice@example.com>;tag=4e2f7c1a9b3d".to_string(),
        "To: <sip:room1@203.0.113.5>;tag=mm-tag".to_string(),
        "Call-ID: 0c9e8a7d6f5b4c3a".to_string(),
        format!("CSeq: {seq} {method}"),
    ];
    head.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = head.iter().map(String::as_str).collect();
    Request::parse(&msg(&refs, body)).unwrap()
}

#[test]
fn uas_dialog_builds_bye_with_the_route_set() {
    let mut d = uas_dialog();
    assert_eq!(d.role(), Role::Uas);
    assert_eq!(d.state(), DialogState::Early);
    assert_eq!(
        d.id(),
        &DialogId {
            call_id: "0c9e8a7d6f5b4c3a".into(),
            local_tag: "mm-tag".into(),
            remote_tag: "4e2f7c1a9b3d".into(),
        }
    );
    assert_eq!(
        d.remote_target().to_string(),
        "sip:alice-0x55d0@192.168.1.20:5060;transport=udp"
    );
    assert_eq!(d.next_hop().host, "p1.example.net");
    d.confirm();
    let bye = d.create_request(Method::Bye);
    assert_eq!(d.state(), DialogState::Terminated);
    assert_eq!(bye.uri, *d.remote_target());
    let h = &bye.headers;
    assert_eq!(h.from().unwrap().tag(), Some("mm-tag"));
    assert_eq!(h.from().unwrap().uri.to_string(), "sip:room1@203.0.113.5");
    assert_eq!(h.to().unwrap().tag(), Some("4e2f7c1a9b3d"));
    assert_eq!(h.to().unwrap().display_name.as_deref(), Some("Alice"));
    assert_eq!(h.call_id().unwrap(), "0c9e8a7d6f5b4c3a");
    assert_eq!(h.cseq().unwrap().to_string(), "1 BYE");
    let routes: Vec<String> = h
        .routes()
        .unwrap()
        .iter()
        .map(|r| r.uri.host.clone())
        .collect();
    assert_eq!(routes, ["p1.example.net", "p2.example.net"]);
    assert!(!h.contains("Via"));
    assert!(!h.contains("Contact"));
    // In-dialog INVITE carries our Contact and a higher CSeq.
    let mut d = uas_dialog();
    d.start_2xx_retransmission(Response::new(200), Instant::now());
    d.on_ack(&remote_request("ACK", 38517, &[], ""));
    let reinvite = d.create_request(Method::Invite);
    assert_eq!(reinvite.headers.cseq().unwrap().seq, 1);
    assert_eq!(reinvite.headers.contacts().unwrap()[0], contact());
}

#[test]
fn uac_dialog_reverses_routes_and_acks() {
    let invite = Request::parse(&msg(
        &[
            "INVITE sip:+15551234@trunk.example.net SIP/2.0",
            "Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKout;rport",
            "From: <sip:mediamesh@203.0.113.5>;tag=mm1",
            "To: <sip:+15551234@trunk.example.net>",
            "Call-ID: out-1",
            "CSeq: 10 INVITE",
            "Contact: <sip:mediamesh@203.0.113.5>",
            "Proxy-Authorization: Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:+15551234@trunk.example.net\", response=\"00\"",
        ],
        "",
    ))
    .unwrap();
    let mut ok = Response::for_request(&invite, 200);
    ok.set_to_tag("far");
    ok.headers
        .push("Record-Route", "<sip:edge2.example.net;lr>");
    ok.headers
        .push("Record-Route", "<sip:edge1.example.net;lr>");
    ok.headers.push("Contact", "<sip:gw@192.0.2.50:5060>");
    let mut d = Dialog::uac(&invite, &ok, contact(), TimerConfig::default()).unwrap();
    assert_eq!(d.state(), DialogState::Confirmed);
    let hops: Vec<&str> = d.route_set().iter().map(|r| r.uri.host.as_str()).collect();
    assert_eq!(hops, ["edge1.example.net", "edge2.example.net"]);
    let ack = d.create_ack(&invite);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri.to_string(), "sip:gw@192.0.2.50:5060");
    assert_eq!(ack.headers.cseq().unwrap().to_string(), "10 ACK");
    assert_eq!(ack.headers.to().unwrap().tag(), Some("far"));
    assert!(ack.headers.contains("Proxy-Authorization"));
    assert_eq!(d.ack_for_retransmitted_2xx(&ok), Some(&ack));
    // The next request continues the CSeq of the INVITE.
    let bye = d.create_request(Method::Bye);
    assert_eq!(bye.headers.cseq().unwrap().to_string(), "11 BYE");
}

#[test]
fn strict_route_becomes_the_request_uri() {
    let mut r = Request::parse(&baresip_invite()).unwrap();
    r.headers.push(
        "Record-Route",
        "<sip:strict.example.net;transport=udp>, <sip:p2.example.net;lr>",
    );
    let mut d = Dialog::uas(&r, "t", contact(), TimerConfig::default()).unwrap();
    let bye = d.create_request(Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:strict.example.net");
    let routes: Vec<String> = bye
        .headers
        .routes()
        .unwrap()
        .iter()
        .map(|r| r.uri.to_string())
        .collect();
    assert_eq!(
        routes,
        [
            "sip:p2.example.net;lr",
            "sip:alice-0x55d0@192.168.1.20:5060;transport=udp"
        ]
    );
}

fn drive(d: &mut Dialog, until: Instant) -> Vec<(Instant, DialogEvent)> {
    let mut out = Vec::new();
    while let Some(at) = d.poll_timeout() {
        if at > until {
            break;
        }
        d.handle_timeout(at);
        while let Some(e) = d.poll_event() {
            out.push((at, e));
        }
    }
    out
}

#[test]
fn uas_retransmits_2xx_until_ack_or_timeout() {
    let t0 = Instant::now();
    let mut d = uas_dialog();
    let mut ok = Response::for_request(&invite_with_routes(), 200);
    ok.set_to_tag("mm-tag");
    d.start_2xx_retransmission(ok.clone(), t0);
    assert_eq!(d.state(), DialogState::Confirmed);
    let ev = drive(&mut d, t0 + Duration::from_secs(60));
    let times: Vec<u128> = ev.iter().map(|(at, _)| (*at - t0).as_millis()).collect();
    assert_eq!(
        times,
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500, 32000]
    );
    assert!(ev[..10]
        .iter()
        .all(|(_, e)| *e == DialogEvent::Retransmit2xx(ok.clone())));
    assert_eq!(ev[10].1, DialogEvent::AckTimeout);

    // With the ACK after the second retransmission they stop.
    let mut d = uas_dialog();
    d.start_2xx_retransmission(ok, t0);
    assert_eq!(drive(&mut d, t0 + Duration::from_secs(2)).len(), 2);
    assert!(!d.on_ack(&remote_request("ACK", 1, &[], "")), "wrong CSeq");
    assert!(d.on_ack(&remote_request("ACK", 38517, &[], "")));
    assert!(!d.awaiting_ack());
    assert_eq!(d.poll_timeout(), None);
}

#[test]
fn in_dialog_requests_are_checked() {
    let mut d = uas_dialog();
    d.start_2xx_retransmission(Response::new(200), Instant::now());
    d.on_ack(&remote_request("ACK", 38517, &[], ""));
    assert_eq!(
        d.on_request(&remote_request("INFO", 100, &[], ""))
            .unwrap_err(),
        DialogError::CSeqOutOfOrder
    );
    assert_eq!(DialogError::CSeqOutOfOrder.status(), 500);
    d.on_request(&remote_request("INFO", 38518, &[], ""))
        .unwrap();
    let mut stranger = remote_request("BYE", 38519, &[], "");
    stranger
        .headers
        .set("To", "<sip:room1@203.0.113.5>;tag=other");
    assert_eq!(d.on_request(&stranger).unwrap_err().status(), 481);
    d.on_request(&remote_request("BYE", 38519, &[], ""))
        .unwrap();
    assert_eq!(d.state(), DialogState::Terminated);
    assert_eq!(
        d.on_request(&remote_request("BYE", 38520, &[], ""))
            .unwrap_err()
            .status(),
        481
    );
}

const HOLD_SDP: &str = "v=0\r\no=- 1 2 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 10000 RTP/AVP 0\r\na=sendonly\r\n";

#[test]
fn reinvite_hold_and_resume() {
    let t0 = Instant::now();
    let mut d = uas_dialog();
    d.start_2xx_retransmission(Response::new(200), t0);
    d.on_ack(&remote_request("ACK", 38517, &[], ""));

    let hold = remote_request(
        "INVITE",
        38518,
        &[
            "Contact: <sip:alice@198.51.100.7:40000>",
            "Content-Type: application/sdp",
        ],
        HOLD_SDP,
    );
    d.on_request(&hold).unwrap();
    assert_eq!(
        d.remote_target().to_string(),
        "sip:alice@198.51.100.7:40000"
    );
    let sdp = SessionDescription::parse(&hold.body).unwrap();
    assert_eq!(d.on_remote_offer(&sdp), Some(HoldChange::Held));
    assert!(d.remote_hold());
    // A second re-INVITE before we answered the first: 500.
    let early = remote_request("INVITE", 38519, &[], "");
    assert_eq!(
        d.on_request(&early).unwrap_err(),
        DialogError::InvitePending
    );
    d.start_2xx_retransmission(Response::for_request(&hold, 200), t0);
    assert!(d.on_ack(&remote_request("ACK", 38518, &[], "")));

    let resume = remote_request(
        "INVITE",
        38520,
        &[],
        &HOLD_SDP.replace("sendonly", "sendrecv"),
    );
    d.on_request(&resume).unwrap();
    let sdp = SessionDescription::parse(&resume.body).unwrap();
    assert_eq!(d.on_remote_offer(&sdp), Some(HoldChange::Resumed));
    assert_eq!(d.on_remote_offer(&sdp), None);
    d.incoming_invite_failed();

    // Old-style hold with c=0.0.0.0.
    let old = HOLD_SDP
        .replace("a=sendonly\r\n", "")
        .replace("IN IP4 192.168.1.20\r\nt", "IN IP4 0.0.0.0\r\nt");
    assert_eq!(
        d.on_remote_offer(&SessionDescription::parse(old.as_bytes()).unwrap()),
        Some(HoldChange::Held)
    );
}

#[test]
fn reinvite_glare_gets_491() {
    let mut d = uas_dialog();
    d.start_2xx_retransmission(Response::new(200), Instant::now());
    d.on_ack(&remote_request("ACK", 38517, &[], ""));
    let _ours = d.create_request(Method::Invite);
    let theirs = remote_request("INVITE", 38518, &[], "");
    assert_eq!(d.on_request(&theirs).unwrap_err().status(), 491);
    // Our re-INVITE completes; theirs may come again.
    let mut ok = Response::new(200);
    ok.headers.push("CSeq", "1 INVITE");
    d.on_response(&ok, Instant::now()).unwrap();
    d.on_request(&theirs).unwrap();
}

fn invite_with(extra: &[&str]) -> Request {
    let mut head = vec![
        "INVITE sip:room1@203.0.113.5 SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKst",
        "From: <sip:a@example.com>;tag=1",
        "To: <sip:room1@203.0.113.5>",
        "Call-ID: st",
        "CSeq: 1 INVITE",
        "Contact: <sip:a@10.0.0.1>",
    ];
    head.extend_from_slice(extra);
    Request::parse(&msg(&head, "")).unwrap()
}

#[test]
fn session_timer_negotiation_as_uas() {
    let cfg = SessionTimerConfig::default();
    let p = negotiate_uas(
        &invite_with(&["Supported: timer", "Session-Expires: 1800"]),
        &cfg,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (p.interval, p.refresher, p.uac_supports),
        (1800, Refresher::Uac, true)
    );
    let mut r = Response::new(200);
    p.apply_to_response(&mut r);
    assert_eq!(r.headers.get("Session-Expires"), Some("1800;refresher=uac"));
    assert!(r.headers.requires("timer"));

    // Too small with support: 422 with our Min-SE.
    assert_eq!(
        negotiate_uas(
            &invite_with(&["Supported: timer", "Session-Expires: 60"]),
            &cfg
        ),
        Err(90)
    );
    // Too small without support (a proxy added it): raised, we refresh.
    let p = negotiate_uas(&invite_with(&["Session-Expires: 60"]), &cfg)
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.interval, p.refresher, p.uac_supports),
        (90, Refresher::Uas, false)
    );
    let mut r = Response::new(200);
    p.apply_to_response(&mut r);
    assert!(!r.headers.requires("timer"));
    // Too long: lowered to ours, but not below the request's Min-SE.
    let p = negotiate_uas(&invite_with(&["k: timer", "x: 7200;refresher=uas"]), &cfg)
        .unwrap()
        .unwrap();
    assert_eq!((p.interval, p.refresher), (1800, Refresher::Uas));
    let p = negotiate_uas(&invite_with(&["k: timer", "x: 7200", "Min-SE: 3600"]), &cfg)
        .unwrap()
        .unwrap();
    assert_eq!(p.interval, 3600);
    // None asked: we run one anyway (refresh_without_support), or not.
    let p = negotiate_uas(&invite_with(&[]), &cfg).unwrap().unwrap();
    assert_eq!((p.interval, p.refresher), (1800, Refresher::Uas));
    let off = SessionTimerConfig {
        refresh_without_support: false,
        ..cfg
    };
    assert_eq!(negotiate_uas(&invite_with(&[]), &off), Ok(None));
    // Supported without Session-Expires: the UAC refreshes.
    let p = negotiate_uas(&invite_with(&["Supported: timer, 100rel"]), &off)
        .unwrap()
        .unwrap();
    assert_eq!(p.refresher, Refresher::Uac);
}

#[test]
fn session_timer_refresh_and_expiry() {
    let t0 = Instant::now();
    let invite = invite_with(&["Session-Expires: 90"]);
    let mut d = Dialog::uas(&invite, "x", contact(), TimerConfig::default()).unwrap();
    let p = negotiate_uas(&invite, &SessionTimerConfig::default())
        .unwrap()
        .unwrap();
    d.set_session_timer(p, false, t0);
    assert_eq!(d.session_timer(), Some((Duration::from_secs(90), true)));
    // We refresh at half the interval...
    let ev = drive(&mut d, t0 + Duration::from_secs(50));
    assert_eq!(
        ev,
        [(t0 + Duration::from_secs(45), DialogEvent::RefreshDue)]
    );
    let mut refresh = d.create_request(Method::Update);
    d.session_timer_headers(&mut refresh, &SessionTimerConfig::default());
    assert_eq!(
        refresh.headers.get("Session-Expires"),
        Some("90;refresher=uac")
    );
    assert!(refresh.headers.supports("timer"));
    // ... and its 2xx (refresher=uac: us) restarts the timer.
    let mut ok = Response::new(200);
    ok.headers.push(
        "CSeq",
        format!("{} UPDATE", refresh.headers.cseq().unwrap().seq),
    );
    ok.headers.push("Session-Expires", "90;refresher=uac");
    d.on_response(&ok, t0 + Duration::from_secs(50)).unwrap();
    let ev = drive(&mut d, t0 + Duration::from_secs(96));
    assert_eq!(
        ev,
        [(t0 + Duration::from_secs(95), DialogEvent::RefreshDue)]
    );
    // Without a successful refresh the session expires at 90 - 30 s after it.
    let ev = drive(&mut d, t0 + Duration::from_secs(200));
    assert_eq!(
        ev,
        [(t0 + Duration::from_secs(110), DialogEvent::SessionExpired)]
    );
    assert_eq!(d.poll_timeout(), None);

    // When the remote refreshes, we only watch for expiry: 1800 - 32 s.
    let mut d = Dialog::uas(&invite, "x", contact(), TimerConfig::default()).unwrap();
    d.set_session_timer(
        SessionTimerParams {
            interval: 1800,
            refresher: Refresher::Uac,
            uac_supports: true,
        },
        false,
        t0,
    );
    assert_eq!(d.session_timer(), Some((Duration::from_secs(1800), false)));
    let ev = drive(&mut d, t0 + Duration::from_secs(4000));
    assert_eq!(
        ev,
        [(t0 + Duration::from_secs(1768), DialogEvent::SessionExpired)]
    );
}

#[test]
fn uac_session_timer_from_2xx_and_422() {
    let cfg = SessionTimerConfig::default();
    let mut invite = invite_with(&[]);
    add_session_timer_headers(&mut invite, 1800, &cfg);
    assert_eq!(invite.headers.get("Session-Expires"), Some("1800"));
    assert_eq!(invite.headers.get("Min-SE"), Some("90"));
    let mut too_small = Response::for_request(&invite, 422);
    too_small.headers.push("Min-SE", "3600");
    assert_eq!(retry_interval_after_422(&too_small, &cfg), Some(3600));

    let mut ok = Response::for_request(&invite, 200);
    ok.set_to_tag("far");
    ok.headers.push("Contact", "<sip:far@10.0.0.2>");
    ok.headers.push("Session-Expires", "1800;refresher=uas");
    let p = negotiate_uac(&ok).unwrap();
    assert_eq!(p.refresher, Refresher::Uas);
    let mut d = Dialog::uac(&invite, &ok, contact(), TimerConfig::default()).unwrap();
    d.set_session_timer(p, true, Instant::now());
    assert_eq!(d.session_timer(), Some((Duration::from_secs(1800), false)));
    ok.headers.remove("Session-Expires");
    assert_eq!(negotiate_uac(&ok), None);
}

#[test]
fn early_dialog_confirmed_or_ended_by_final_response() {
    let invite = invite_with(&[]);
    let mut ringing = Response::for_request(&invite, 180);
    ringing.set_to_tag("far");
    ringing.headers.push("Contact", "<sip:far@10.0.0.2>");
    ringing
        .headers
        .push("Record-Route", "<sip:early.example.net;lr>");
    let mut d = Dialog::uac(&invite, &ringing, contact(), TimerConfig::default()).unwrap();
    assert_eq!(d.state(), DialogState::Early);
    assert_eq!(d.route_set().len(), 1);
    let mut ok = Response::for_request(&invite, 200);
    ok.set_to_tag("far");
    ok.headers.push("Contact", "<sip:far@10.0.0.3>");
    d.on_response(&ok, Instant::now()).unwrap();
    assert_eq!(d.state(), DialogState::Confirmed);
    assert!(d.route_set().is_empty(), "recomputed from the 2xx");
    assert_eq!(d.remote_target().host, "10.0.0.3");
    // 481 to an in-dialog request ends the dialog.
    let mut gone = Response::new(481);
    gone.headers.push("CSeq", "2 INFO");
    d.on_response(&gone, Instant::now()).unwrap();
    assert_eq!(d.state(), DialogState::Terminated);

    let mut d = Dialog::uac(&invite, &ringing, contact(), TimerConfig::default()).unwrap();
    let mut busy = Response::for_request(&invite, 486);
    busy.set_to_tag("far");
    d.on_response(&busy, Instant::now()).unwrap();
    assert_eq!(d.state(), DialogState::Terminated);

    // Dialogs need tags and a Contact.
    let ringing_no_tag = Response::for_request(&invite, 180);
    assert_eq!(
        Dialog::uac(&invite, &ringing_no_tag, contact(), TimerConfig::default()).unwrap_err(),
        DialogError::NoTag
    );
    let mut no_contact = invite.clone();
    no_contact.headers.remove("Contact");
    assert_eq!(
        Dialog::uas(&no_contact, "t", contact(), TimerConfig::default()).unwrap_err(),
        DialogError::NoContact
    );
}

#[test]
fn cancel_before_and_after_the_final_response() {
    let invite = invite_with(&[]);
    let cancel = crate::transaction::cancel_for(&invite);
    let (ok, terminated) = cancel_responses(&cancel, Some((&invite, false)), "mm");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers.cseq().unwrap().method, Method::Cancel);
    let terminated = terminated.unwrap();
    assert_eq!(terminated.status, 487);
    assert_eq!(terminated.reason, "Request Terminated");
    assert_eq!(terminated.headers.to().unwrap().tag(), Some("mm"));
    assert_eq!(terminated.headers.cseq().unwrap().method, Method::Invite);
    // The race: the 200 to the INVITE went first; the CANCEL changes nothing.
    let (ok, terminated) = cancel_responses(&cancel, Some((&invite, true)), "mm");
    assert_eq!((ok.status, terminated), (200, None));
    let (nope, _) = cancel_responses(&cancel, None, "mm");
    assert_eq!(nope.status, 481);
}
