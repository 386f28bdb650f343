//! Parsing and serializing real-shaped messages, compact forms, folding,
//! framing, and the errors that become 400 reason phrases.

use super::*;
use crate::header::Refresher;
use crate::sdp::SessionDescription;
use crate::testutil::{baresip_invite, msg, ringing_two_vias, sipp_invite, Rng, SIPP_SDP};

fn round_trip(bytes: &[u8]) -> Message {
    let m = Message::parse(bytes).unwrap();
    let out = m.to_bytes();
    let again = Message::parse(&out).unwrap();
    assert_eq!(again, m);
    assert_eq!(again.to_bytes(), out);
    m
}

#[test]
fn sipp_invite_round_trips() {
    let Message::Request(r) = round_trip(&sipp_invite()) else {
        panic!("not a request")
    };
    r.validate().unwrap();
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri.to_string(), "sip:service@127.0.0.1:5060");
    let h = &r.headers;
    let via = h.top_via().unwrap();
    assert_eq!(via.branch(), Some("z9hG4bK-12345-1-0"));
    assert_eq!(via.port, Some(5061));
    assert_eq!(h.from().unwrap().tag(), Some("12345SIPpTag001"));
    assert_eq!(h.from().unwrap().display_name.as_deref(), Some("sipp"));
    assert_eq!(h.to().unwrap().tag(), None);
    assert_eq!(h.call_id().unwrap(), "1-12345@127.0.0.1");
    assert_eq!(h.cseq().unwrap().seq, 1);
    assert_eq!(
        h.contacts().unwrap()[0].uri.to_string(),
        "sip:sipp@127.0.0.1:5061"
    );
    assert_eq!(h.max_forwards().unwrap(), Some(70));
    assert_eq!(h.content_type().as_deref(), Some("application/sdp"));
    assert_eq!(h.get("subject"), Some("Performance Test"));
    assert_eq!(r.body, SIPP_SDP.as_bytes());
    let sdp = SessionDescription::parse(&r.body).unwrap();
    assert_eq!(sdp.media[0].port, 6000);
}

#[test]
fn baresip_invite_with_sdp() {
    let r = Request::parse(&baresip_invite()).unwrap();
    r.validate().unwrap();
    let via = r.headers.top_via().unwrap();
    assert_eq!(via.rport(), Some(None));
    assert_eq!(via.host, "192.168.1.20");
    assert_eq!(r.uri.user.as_deref(), Some("room1"));
    assert!(r.headers.supports("100rel"));
    assert!(!r.headers.supports("timer"));
    assert_eq!(r.headers.list("Allow").len(), 11);
    assert_eq!(
        r.headers.from().unwrap().display_name.as_deref(),
        Some("Alice")
    );
    let contact = &r.headers.contacts().unwrap()[0];
    assert_eq!(contact.uri.transport(), Some("udp"));
    let sdp = SessionDescription::parse(&r.body).unwrap();
    assert_eq!(sdp.media[0].payload_types(), vec![96, 9, 0, 8, 101]);
    round_trip(&baresip_invite());
}

#[test]
fn response_with_two_vias() {
    let Message::Response(r) = round_trip(&ringing_two_vias()) else {
        panic!("not a response")
    };
    r.validate().unwrap();
    assert_eq!(r.status, 180);
    assert_eq!(r.reason, "Ringing");
    let vias = r.headers.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].received(), Some("192.0.2.111"));
    assert_eq!(vias[1].branch(), Some("z9hG4bK74bf9"));
    assert_eq!(
        r.headers.record_routes().unwrap()[0].uri.host,
        "ss1.example.com"
    );

    // The same Vias as one comma-separated header.
    let one = msg(
        &[
            "SIP/2.0 200 OK",
            "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com:5070;branch=z9hG4bK2",
            "Via: SIP/2.0/UDP c.example.com;branch=z9hG4bK3",
            "From: <sip:a@example.com>;tag=1",
            "To: <sip:b@example.com>;tag=2",
            "Call-ID: x",
            "CSeq: 2 BYE",
        ],
        "",
    );
    let mut r = Response::parse(&one).unwrap();
    let vias = r.headers.vias().unwrap();
    assert_eq!(
        vias.iter().map(|v| v.host.as_str()).collect::<Vec<_>>(),
        ["a.example.com", "b.example.com", "c.example.com"]
    );
    r.headers.pop_top_via();
    assert_eq!(r.headers.top_via().unwrap().transport, "TCP");
    r.headers.pop_top_via();
    r.headers.pop_top_via();
    assert_eq!(r.headers.top_via(), Err(ParseError::MissingHeader("Via")));
}

#[test]
fn compact_forms_expand() {
    let m = msg(
        &[
            "INVITE sip:room@example.com SIP/2.0",
            "v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcompact",
            "f: <sip:a@b.com>;tag=1",
            "t: sip:room@example.com",
            "i: compact-call-id",
            "CSeq: 1 INVITE",
            "m: <sip:a@10.0.0.1>",
            "k: timer",
            "x: 1800;refresher=uac",
            "s: hi",
            "e: gzip",
            "c: application/sdp",
        ],
        "",
    );
    let s = String::from_utf8(m).unwrap().replace("Content-Length", "l");
    let r = Request::parse(s.as_bytes()).unwrap();
    r.validate().unwrap();
    let h = &r.headers;
    assert_eq!(h.call_id().unwrap(), "compact-call-id");
    assert!(h.supports("timer"));
    assert_eq!(
        h.session_expires().unwrap(),
        Some(SessionExpires {
            delta: 1800,
            refresher: Some(Refresher::Uac)
        })
    );
    assert_eq!(h.get("Subject"), Some("hi"));
    assert_eq!(h.get("Content-Encoding"), Some("gzip"));
    let names: Vec<&str> = h.iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "Via",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Contact",
            "Supported",
            "Session-Expires",
            "Subject",
            "Content-Encoding",
            "Content-Type"
        ]
    );
    // Content-Length is framing: not kept as a header, written from the body.
    assert!(!h.contains("Content-Length"));
    let out = String::from_utf8(r.to_bytes()).unwrap();
    assert!(out.contains("\r\nCall-ID: compact-call-id\r\n"));
    assert!(out.ends_with("Content-Length: 0\r\n\r\n"));
}

#[test]
fn names_are_case_insensitive() {
    let m = msg(
        &[
            "OPTIONS sip:x@example.com SIP/2.0",
            "VIA: SIP/2.0/UDP h;branch=z9hG4bKa",
            "fRoM: <sip:a@b>;TAG=9",
            "to: <sip:x@example.com>",
            "call-id: abc",
            "cseq: 7 OPTIONS",
            "MAX-FORWARDS: 0",
            "www-authenticate: Digest realm=\"r\", nonce=\"n\"",
        ],
        "",
    );
    let r = Request::parse(&m).unwrap();
    r.validate().unwrap();
    assert_eq!(r.headers.from().unwrap().tag(), Some("9"));
    assert_eq!(r.headers.get("Call-Id"), Some("abc"));
    assert_eq!(r.headers.max_forwards().unwrap(), Some(0));
    assert_eq!(r.headers.challenges(false).len(), 1);
    assert!(String::from_utf8(r.to_bytes())
        .unwrap()
        .contains("WWW-Authenticate: Digest"));
}

#[test]
fn folded_lines_and_lf_only() {
    let raw = "MESSAGE sip:room@example.com SIP/2.0\n\
Via: SIP/2.0/UDP h:5060\n  ;branch=z9hG4bKfold\n\
From: <sip:a@b>\n\t;tag=1\n\
To: <sip:room@example.com>\n\
Call-ID: fold\n\
CSeq: 1 MESSAGE\n\
Subject: I know you're there,\n     pick up the phone\n     and talk to me!\n\
Content-Length: 2\n\nhi";
    let r = Request::parse(raw.as_bytes()).unwrap();
    r.validate().unwrap();
    assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bKfold"));
    assert_eq!(r.headers.from().unwrap().tag(), Some("1"));
    assert_eq!(
        r.headers.get("Subject"),
        Some("I know you're there, pick up the phone and talk to me!")
    );
    assert_eq!(r.body, b"hi");
}

#[test]
fn datagram_body_framing() {
    let head = "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n";
    // No Content-Length: the rest of the datagram.
    let r = Request::parse(format!("{head}\r\nxyz").as_bytes()).unwrap();
    assert_eq!(r.body, b"xyz");
    // Shorter Content-Length: extra bytes dropped (18.3).
    let r = Request::parse(format!("{head}Content-Length: 1\r\n\r\nxyz").as_bytes()).unwrap();
    assert_eq!(r.body, b"x");
    // Longer: an error.
    let e = Request::parse(format!("{head}Content-Length: 10\r\n\r\nxyz").as_bytes()).unwrap_err();
    assert_eq!(e, ParseError::BodyTruncated);
    assert_eq!(e.to_string(), "Body shorter than Content-Length");
    // Leading CRLFs are ignored (7.5).
    let r = Request::parse(format!("\r\n\r\n{head}\r\n").as_bytes()).unwrap();
    assert_eq!(r.method, Method::Bye);
    // Conflicting Content-Length headers.
    let e = Request::parse(format!("{head}l: 1\r\nContent-Length: 2\r\n\r\nxyz").as_bytes())
        .unwrap_err();
    assert_eq!(e, ParseError::ContentLength);
}

#[test]
fn errors_name_the_problem() {
    let base = sipp_invite();
    let s = String::from_utf8(base).unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "Call-ID: 1-12345@127.0.0.1\r\n",
            "",
            "Missing Call-ID header",
        ),
        (
            "CSeq: 1 INVITE",
            "CSeq: 1 BYE",
            "CSeq method does not match the request method",
        ),
        ("CSeq: 1 INVITE", "CSeq: -1 INVITE", "Malformed CSeq header"),
        (
            "Max-Forwards: 70",
            "Max-Forwards: -3",
            "Malformed Max-Forwards header",
        ),
        (
            "Max-Forwards: 70",
            "Max-Forwards: 99999999999",
            "Malformed Max-Forwards header",
        ),
        (
            "From: sipp <sip:sipp@127.0.0.1:5061>;tag=12345SIPpTag001\r\n",
            "",
            "Missing From header",
        ),
        ("To: service", "To: <<service", "Malformed To header"),
        (
            "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-12345-1-0\r\n",
            "",
            "Missing Via header",
        ),
        ("Via: SIP/2.0/UDP", "Via: SIP/2.0/", "Malformed Via header"),
        (
            "Contact: sip:sipp@127.0.0.1:5061",
            "Contact: <bogus>",
            "Malformed Contact header",
        ),
    ];
    for (from, to, want) in cases {
        let bad = s.replacen(from, to, 1);
        assert_ne!(bad, s, "{from:?} not found");
        let r = Request::parse(bad.as_bytes()).unwrap();
        let e = r.validate().unwrap_err();
        assert_eq!(e.to_string(), *want, "{from:?} -> {to:?}");
        assert_eq!(e.status(), 400);
    }
    let version = s.replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1);
    assert_eq!(
        Request::parse(version.as_bytes()).unwrap_err().status(),
        505
    );
    let scheme = s.replacen("sip:service@127.0.0.1:5060 ", "http://x ", 1);
    assert_eq!(Request::parse(scheme.as_bytes()).unwrap_err().status(), 416);
}

#[test]
fn salvage_allows_a_400() {
    let s = String::from_utf8(sipp_invite()).unwrap();
    let cl = format!("Content-Length: {}", SIPP_SDP.len());
    let bad = s.replacen(&cl, "Content-Length: 9999", 1);
    assert_ne!(bad, s);
    let bad = bad.replacen("Subject: Performance Test", "Subject Performance Test", 1);
    let e = Message::parse(bad.as_bytes()).unwrap_err();
    assert_eq!(e, ParseError::HeaderLine);
    let r = Request::salvage(bad.as_bytes()).unwrap();
    let resp = Response::for_request(&r, e.status()).with_reason(&e.to_string());
    let out = String::from_utf8(resp.to_bytes()).unwrap();
    assert!(out.starts_with("SIP/2.0 400 Malformed header line\r\n"));
    assert!(out.contains("Call-ID: 1-12345@127.0.0.1\r\n"));
    assert!(Request::salvage(b"garbage\r\n\r\n").is_none());
    assert!(Request::salvage(b"").is_none());
}

#[test]
fn stream_framer_splits_anywhere() {
    let a = sipp_invite();
    let b = ringing_two_vias();
    let mut stream = Vec::new();
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(&a);
    stream.extend_from_slice(b"\r\n\r\n");
    stream.extend_from_slice(&b);
    stream.extend_from_slice(&a);
    let want = vec![
        Frame::Message(Message::parse(&a).unwrap()),
        Frame::KeepAlive,
        Frame::Message(Message::parse(&b).unwrap()),
        Frame::Message(Message::parse(&a).unwrap()),
    ];
    let mut rng = Rng::new(7);
    for step in [1usize, 2, 3, 7, 64, 1000, 100_000] {
        for _ in 0..3 {
            let mut f = StreamFramer::new();
            let mut got = Vec::new();
            let mut i = 0;
            while i < stream.len() {
                let n = if step < 8 { step } else { 1 + rng.below(step) };
                let end = (i + n).min(stream.len());
                f.push(&stream[i..end]).unwrap();
                while let Some(fr) = f.next_frame().unwrap() {
                    got.push(fr);
                }
                i = end;
            }
            assert_eq!(got, want, "step {step}");
            assert_eq!(f.buffered(), 0);
        }
    }
}

#[test]
fn stream_framer_errors() {
    // Content-Length is required on streams.
    let no_cl = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n";
    let mut f = StreamFramer::new();
    f.push(no_cl).unwrap();
    assert_eq!(f.next_frame(), Err(ParseError::MissingContentLength));
    // The framer stays failed.
    assert_eq!(f.push(b"x"), Err(ParseError::MissingContentLength));
    assert_eq!(f.next_frame(), Err(ParseError::MissingContentLength));

    // An endless header section.
    let mut f = StreamFramer::new();
    f.push(b"INVITE sip:a@b SIP/2.0\r\n").unwrap();
    let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut result = Ok(None);
    for _ in 0..2000 {
        if f.push(line).is_err() {
            break;
        }
        result = f.next_frame();
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(ParseError::TooLarge));

    // A huge Content-Length is refused before any body arrives.
    let mut f = StreamFramer::new();
    f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 4000000000\r\n\r\n")
        .unwrap();
    assert_eq!(f.next_frame(), Err(ParseError::TooLarge));
    let mut f = StreamFramer::new();
    f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n")
        .unwrap();
    assert_eq!(f.next_frame(), Err(ParseError::ContentLength));
    let mut f = StreamFramer::new();
    f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 70000\r\n\r\n")
        .unwrap();
    assert_eq!(f.next_frame(), Err(ParseError::TooLarge));
}

#[test]
fn header_editing() {
    let mut h = Headers::new();
    h.push("v", "SIP/2.0/UDP a;branch=z9hG4bK1");
    h.push("From", "<sip:a@b>");
    h.push("Route", "<sip:r1;lr>");
    h.push("route", "<sip:r2;lr>");
    h.push_front("Via", "SIP/2.0/UDP b;branch=z9hG4bK2");
    assert_eq!(h.top_via().unwrap().host, "b");
    assert_eq!(h.routes().unwrap().len(), 2);
    h.set("Route", "<sip:r3;lr>");
    assert_eq!(h.list("Route"), ["<sip:r3;lr>"]);
    assert_eq!(h.remove("ROUTE"), 1);
    assert!(!h.contains("Route"));
    let mut via = h.top_via().unwrap();
    via.params.set("received", Some("192.0.2.1"));
    h.set_top_via(&via);
    assert_eq!(h.vias().unwrap().len(), 2);
    assert_eq!(h.top_via().unwrap().received(), Some("192.0.2.1"));
    assert_eq!(canonical_name("WWW-authenticate"), "WWW-Authenticate");
    assert_eq!(canonical_name("X-Custom"), "X-Custom");
    assert_eq!(canonical_name("i"), "Call-ID");
}

#[test]
fn response_for_request_copies_headers() {
    let r = Request::parse(&baresip_invite()).unwrap();
    let mut resp = Response::for_request(&r, 200);
    resp.set_to_tag("as7d");
    resp.validate().unwrap();
    assert_eq!(resp.headers.to().unwrap().tag(), Some("as7d"));
    assert_eq!(resp.headers.cseq().unwrap().seq, 38517);
    assert_eq!(resp.reason, "OK");
    let resp = Response::new(486).with_reason("Busy\r\nInjected: yes");
    assert_eq!(resp.reason, "Busy  Injected: yes");
    assert_eq!(reason_phrase(487), "Request Terminated");
    assert_eq!(reason_phrase(599), "Server Error");
}
