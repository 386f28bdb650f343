//! Every timer path of the four transaction machines, with time passed in.

use super::*;
use crate::testutil::{addr, baresip_invite, msg};

const MS: Duration = Duration::from_millis(1);

fn drain(t: &mut Transactions) -> Vec<TxOutput> {
    std::iter::from_fn(|| t.poll_output()).collect()
}

fn sent(out: &[TxOutput]) -> Vec<(Peer, Message)> {
    out.iter()
        .filter_map(|o| match o {
            TxOutput::Send { to, message } => Some((*to, message.clone())),
            _ => None,
        })
        .collect()
}

fn events(out: &[TxOutput]) -> Vec<TxEvent> {
    out.iter()
        .filter_map(|o| match o {
            TxOutput::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn status_of(m: &Message) -> u16 {
    match m {
        Message::Response(r) => r.status,
        Message::Request(_) => 0,
    }
}

/// Runs every timer up to `until`, returning (time, outputs) of each firing.
/// The last timer of `fired` ends the transaction at 64*T1 (32 s): Timeout
/// then Terminated (timers B, F, H).
fn assert_timed_out_at_32s(fired: &[(Instant, Vec<TxOutput>)], t0: Instant, key: TransactionKey) {
    let (at, last) = fired.last().unwrap();
    assert_eq!(*at - t0, Duration::from_secs(32));
    assert_eq!(
        events(last),
        [
            TxEvent::Timeout { key: key.clone() },
            TxEvent::Terminated { key }
        ]
    );
}

fn run_until(t: &mut Transactions, until: Instant) -> Vec<(Instant, Vec<TxOutput>)> {
    let mut fired = Vec::new();
    while let Some(at) = t.poll_timeout() {
        if at > until {
            break;
        }
        t.handle_timeout(at);
        fired.push((at, drain(t)));
    }
    fired
}

fn phone_request(method: &str, branch: &str, via_extra: &str) -> Request {
    Request::parse(&msg(
        &[
            &format!("{method} sip:room1@203.0.113.5 SIP/2.0"),
            &format!("Via: SIP/2.0/UDP phone.example.com:5062;branch={branch}{via_extra}"),
            "From: <sip:alice@example.com>;tag=a1",
            "To: <sip:room1@203.0.113.5>",
            "Call-ID: call-1",
            &format!("CSeq: 1 {method}"),
            "Contact: <sip:alice@192.168.1.20:5062>",
            "Max-Forwards: 70",
        ],
        "",
    ))
    .unwrap()
}

fn phone() -> Peer {
    Peer::udp(addr("198.51.100.7:40000"))
}

fn server_invite(
    t: &mut Transactions,
    now: Instant,
    transport: Transport,
) -> (TransactionKey, Request) {
    let from = Peer {
        transport,
        ..phone()
    };
    t.handle_message(phone_request("INVITE", "z9hG4bKinv1", "").into(), from, now)
        .unwrap();
    let out = drain(t);
    let s = sent(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(status_of(&s[0].1), 100);
    match &events(&out)[..] {
        [TxEvent::Request { key, request, .. }] => (key.clone(), request.clone()),
        e => panic!("{e:?}"),
    }
}

#[test]
fn server_invite_stamps_via_and_answers_100_to_the_sent_by_port() {
    let mut t = Transactions::new(TimerConfig::default());
    let now = Instant::now();
    t.handle_message(
        phone_request("INVITE", "z9hG4bKinv1", "").into(),
        phone(),
        now,
    )
    .unwrap();
    let out = drain(&mut t);
    let (to, m) = &sent(&out)[0];
    // No rport: source IP, sent-by port (18.2.2).
    assert_eq!(to.addr, addr("198.51.100.7:5062"));
    let via = m.headers().top_via().unwrap();
    assert_eq!(via.received(), Some("198.51.100.7"));
    assert_eq!(via.rport(), None);
    assert_eq!(m.headers().to().unwrap().tag(), None);
}

#[test]
fn rport_sends_responses_to_the_source() {
    let mut t = Transactions::new(TimerConfig::default());
    let now = Instant::now();
    let req = Request::parse(&baresip_invite()).unwrap();
    t.handle_message(req.into(), phone(), now).unwrap();
    let out = drain(&mut t);
    let (to, m) = &sent(&out)[0];
    assert_eq!(*to, phone());
    let via = m.headers().top_via().unwrap();
    assert_eq!(via.received(), Some("198.51.100.7"));
    assert_eq!(via.rport(), Some(Some(40000)));
    let TxEvent::Request { key, request, .. } = &events(&out)[0] else {
        panic!()
    };
    assert_eq!(
        request.headers.top_via().unwrap().rport(),
        Some(Some(40000))
    );
    assert_eq!(t.response_destination(key), Some(phone()));

    // Over TCP the response goes back on the connection whatever Via says.
    let mut t = Transactions::new(TimerConfig::default());
    let tcp = Peer {
        transport: Transport::Tcp,
        ..phone()
    };
    t.handle_message(phone_request("OPTIONS", "z9hG4bKo", "").into(), tcp, now)
        .unwrap();
    let out = drain(&mut t);
    let TxEvent::Request { key, .. } = &events(&out)[0] else {
        panic!()
    };
    assert_eq!(t.response_destination(key), Some(tcp));
}

#[test]
fn server_invite_non_2xx_retransmits_until_ack() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let (key, req) = server_invite(&mut t, t0, Transport::Udp);

    // A retransmitted INVITE gets the last provisional again.
    t.respond(&key, Response::for_request(&req, 180), t0 + 10 * MS)
        .unwrap();
    assert_eq!(status_of(&sent(&drain(&mut t))[0].1), 180);
    t.handle_message(req.clone().into(), phone(), t0 + 20 * MS)
        .unwrap();
    let out = drain(&mut t);
    assert_eq!(sent(&out).len(), 1);
    assert_eq!(status_of(&sent(&out)[0].1), 180);
    assert!(events(&out).is_empty());

    let t1 = t0 + 100 * MS;
    t.respond(&key, Response::for_request(&req, 486), t1)
        .unwrap();
    assert_eq!(status_of(&sent(&drain(&mut t))[0].1), 486);
    assert!(t.has_final_response(&key));
    // Timer G: T1, 2T1, 4T1, then T2.
    let fired = run_until(&mut t, t1 + Duration::from_millis(7600));
    let times: Vec<u128> = fired.iter().map(|(at, _)| (*at - t1).as_millis()).collect();
    assert_eq!(times, [500, 1500, 3500, 7500]);
    for (_, out) in &fired {
        assert_eq!(status_of(&sent(out)[0].1), 486);
    }
    // The ACK stops them; timer I (T4) ends the transaction.
    let mut ack = ack_for_non_2xx(&req, &Response::for_request(&req, 486));
    ack.headers.set("Via", req.headers.get("Via").unwrap());
    let ta = t1 + Duration::from_secs(8);
    t.handle_message(ack.clone().into(), phone(), ta).unwrap();
    assert!(drain(&mut t).is_empty());
    // ACK retransmissions are absorbed.
    t.handle_message(ack.into(), phone(), ta + MS).unwrap();
    assert!(drain(&mut t).is_empty());
    assert_eq!(t.poll_timeout(), Some(ta + Duration::from_secs(5)));
    let fired = run_until(&mut t, ta + Duration::from_secs(60));
    assert_eq!(fired.len(), 1);
    assert_eq!(events(&fired[0].1), [TxEvent::Terminated { key }]);
    assert!(t.is_empty());
}

#[test]
fn server_invite_timer_h_without_ack() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let (key, req) = server_invite(&mut t, t0, Transport::Udp);
    t.respond(&key, Response::for_request(&req, 603), t0)
        .unwrap();
    drain(&mut t);
    let fired = run_until(&mut t, t0 + Duration::from_secs(60));
    let resends = fired.iter().filter(|(_, o)| !sent(o).is_empty()).count();
    // G at 0.5, 1.5, 3.5, 7.5, 11.5, ... 31.5 s; H at 32 s.
    assert_eq!(resends, 10);
    assert_timed_out_at_32s(&fired, t0, key);
}

#[test]
fn server_invite_2xx_is_accepted_and_acks_go_to_the_tu() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let (key, req) = server_invite(&mut t, t0, Transport::Udp);
    let mut ok = Response::for_request(&req, 200);
    ok.set_to_tag("uas1");
    t.respond(&key, ok.clone(), t0).unwrap();
    assert_eq!(sent(&drain(&mut t)).len(), 1);
    // INVITE retransmissions are absorbed (RFC 6026); the TU may resend its 2xx.
    t.handle_message(req.clone().into(), phone(), t0 + MS)
        .unwrap();
    assert!(drain(&mut t).is_empty());
    t.respond(&key, ok.clone(), t0 + 500 * MS).unwrap();
    assert_eq!(sent(&drain(&mut t)).len(), 1);
    assert_eq!(
        t.respond(&key, Response::for_request(&req, 486), t0),
        Err(TxError::InvalidResponse)
    );
    // The ACK of a 2xx has its own branch: it goes to the TU.
    let mut ack = phone_request("ACK", "z9hG4bKack2", "");
    ack.headers.set("CSeq", "1 ACK");
    t.handle_message(ack.into(), phone(), t0 + 600 * MS)
        .unwrap();
    let out = drain(&mut t);
    assert!(matches!(&events(&out)[..], [TxEvent::Ack { .. }]));
    // Timer L: gone after 64*T1 without a timeout event.
    let fired = run_until(&mut t, t0 + Duration::from_secs(40));
    assert_eq!(fired.len(), 1);
    assert_eq!(events(&fired[0].1), [TxEvent::Terminated { key }]);
}

#[test]
fn server_invite_over_tcp_has_no_retransmissions() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let (key, req) = server_invite(&mut t, t0, Transport::Tcp);
    t.respond(&key, Response::for_request(&req, 404), t0)
        .unwrap();
    drain(&mut t);
    assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(32))); // H only
    let mut ack = ack_for_non_2xx(&req, &Response::for_request(&req, 404));
    ack.headers.set("Via", req.headers.get("Via").unwrap());
    let tcp = Peer {
        transport: Transport::Tcp,
        ..phone()
    };
    t.handle_message(ack.into(), tcp, t0 + MS).unwrap();
    // Timer I is zero on reliable transports.
    assert_eq!(events(&drain(&mut t)), [TxEvent::Terminated { key }]);
    assert!(t.is_empty());
}

#[test]
fn server_non_invite_absorbs_and_repeats() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = phone_request("OPTIONS", "z9hG4bKopt", ";rport");
    t.handle_message(req.clone().into(), phone(), t0).unwrap();
    let out = drain(&mut t);
    assert!(sent(&out).is_empty(), "no 100 for non-INVITE");
    let [TxEvent::Request { key, request, .. }] = &events(&out)[..] else {
        panic!()
    };
    // Retransmission in Trying: absorbed.
    t.handle_message(req.clone().into(), phone(), t0 + MS)
        .unwrap();
    assert!(drain(&mut t).is_empty());
    t.respond(key, Response::for_request(request, 200), t0 + 2 * MS)
        .unwrap();
    assert_eq!(sent(&drain(&mut t)).len(), 1);
    // Retransmission in Completed: the response again.
    t.handle_message(req.into(), phone(), t0 + 3 * MS).unwrap();
    let out = drain(&mut t);
    assert_eq!(status_of(&sent(&out)[0].1), 200);
    assert_eq!(sent(&out)[0].0, phone());
    // Timer J = 64*T1.
    assert_eq!(
        t.poll_timeout(),
        Some(t0 + 2 * MS + Duration::from_secs(32))
    );
    run_until(&mut t, t0 + Duration::from_secs(33));
    assert!(t.is_empty());

    // Over TCP it ends with the final response.
    let tcp = Peer {
        transport: Transport::Tcp,
        ..phone()
    };
    t.handle_message(phone_request("BYE", "z9hG4bKbye", "").into(), tcp, t0)
        .unwrap();
    let out = drain(&mut t);
    let [TxEvent::Request { key, request, .. }] = &events(&out)[..] else {
        panic!()
    };
    t.respond(key, Response::for_request(request, 200), t0)
        .unwrap();
    let out = drain(&mut t);
    assert_eq!(events(&out), [TxEvent::Terminated { key: key.clone() }]);
}

fn our_request(method: &str, branch: &str) -> Request {
    Request::parse(&msg(
        &[
            &format!("{method} sip:+15551234@trunk.example.net SIP/2.0"),
            &format!("Via: SIP/2.0/UDP 203.0.113.5:5060;branch={branch};rport"),
            "From: <sip:mediamesh@203.0.113.5>;tag=mm1",
            "To: <sip:+15551234@trunk.example.net>",
            "Call-ID: out-1",
            &format!("CSeq: 1 {method}"),
            "Route: <sip:proxy.example.net;lr>",
            "Max-Forwards: 70",
        ],
        "",
    ))
    .unwrap()
}

fn trunk() -> Peer {
    Peer::udp(addr("192.0.2.50:5060"))
}

fn answer(req: &Request, status: u16, tag: Option<&str>) -> Message {
    let mut r = Response::for_request(req, status);
    if let Some(tag) = tag {
        r.set_to_tag(tag);
    }
    // As received: Content-Length present.
    Message::parse(&r.to_bytes()).unwrap()
}

#[test]
fn client_invite_timer_a_and_b() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let key = t
        .send_request(our_request("INVITE", "z9hG4bKc1"), trunk(), t0)
        .unwrap();
    assert_eq!(sent(&drain(&mut t))[0].0, trunk());
    let fired = run_until(&mut t, t0 + Duration::from_secs(60));
    let times: Vec<u128> = fired
        .iter()
        .filter(|(_, o)| !sent(o).is_empty())
        .map(|(at, _)| (*at - t0).as_millis())
        .collect();
    // Timer A doubles without a cap: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s.
    assert_eq!(times, [500, 1500, 3500, 7500, 15500, 31500]);
    assert_timed_out_at_32s(&fired, t0, key);
}

#[test]
fn client_invite_failure_is_acked_by_the_transaction() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let invite = our_request("INVITE", "z9hG4bKc2");
    let key = t.send_request(invite.clone(), trunk(), t0).unwrap();
    drain(&mut t);
    t.handle_message(answer(&invite, 180, Some("far")), trunk(), t0 + 100 * MS)
        .unwrap();
    let out = drain(&mut t);
    assert!(sent(&out).is_empty());
    assert!(
        matches!(&events(&out)[..], [TxEvent::Response { response, .. }] if response.status == 180)
    );
    // No more timer A or B in Proceeding.
    assert_eq!(t.poll_timeout(), None);

    let busy = answer(&invite, 486, Some("far"));
    t.handle_message(busy.clone(), trunk(), t0 + 200 * MS)
        .unwrap();
    let out = drain(&mut t);
    let s = sent(&out);
    assert_eq!(s.len(), 1);
    let Message::Request(ack) = &s[0].1 else {
        panic!()
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, invite.uri);
    assert_eq!(ack.headers.top_via().unwrap().branch(), Some("z9hG4bKc2"));
    assert_eq!(ack.headers.to().unwrap().tag(), Some("far"));
    assert_eq!(ack.headers.cseq().unwrap().to_string(), "1 ACK");
    assert_eq!(ack.headers.routes().unwrap().len(), 1);
    assert!(
        matches!(&events(&out)[..], [TxEvent::Response { response, .. }] if response.status == 486)
    );

    // A retransmitted 486: the ACK again, not the TU.
    t.handle_message(busy, trunk(), t0 + 300 * MS).unwrap();
    let out = drain(&mut t);
    assert_eq!(sent(&out).len(), 1);
    assert!(events(&out).is_empty());
    // Timer D = 32 s.
    assert_eq!(
        t.poll_timeout(),
        Some(t0 + 200 * MS + Duration::from_secs(32))
    );
    let fired = run_until(&mut t, t0 + Duration::from_secs(40));
    assert_eq!(events(&fired[0].1), [TxEvent::Terminated { key }]);
}

#[test]
fn client_invite_2xx_retransmissions_reach_the_tu_until_timer_m() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let invite = our_request("INVITE", "z9hG4bKc3");
    let key = t.send_request(invite.clone(), trunk(), t0).unwrap();
    drain(&mut t);
    let ok = answer(&invite, 200, Some("far"));
    for i in 0..2 {
        t.handle_message(ok.clone(), trunk(), t0 + (100 + i) * MS)
            .unwrap();
        let out = drain(&mut t);
        assert!(sent(&out).is_empty(), "the TU acks a 2xx");
        assert!(
            matches!(&events(&out)[..], [TxEvent::Response { response, .. }] if response.status == 200)
        );
    }
    let fired = run_until(&mut t, t0 + Duration::from_secs(40));
    assert_eq!(events(&fired[0].1), [TxEvent::Terminated { key }]);
    t.handle_message(ok, trunk(), t0 + Duration::from_secs(41))
        .unwrap();
    assert!(matches!(
        &events(&drain(&mut t))[..],
        [TxEvent::StrayResponse { .. }]
    ));
}

#[test]
fn client_non_invite_timers_e_f_k() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let key = t
        .send_request(our_request("OPTIONS", "z9hG4bKo1"), trunk(), t0)
        .unwrap();
    drain(&mut t);
    let fired = run_until(&mut t, t0 + Duration::from_secs(60));
    let times: Vec<u128> = fired
        .iter()
        .filter(|(_, o)| !sent(o).is_empty())
        .map(|(at, _)| (*at - t0).as_millis())
        .collect();
    // E: 0.5, 1.5, 3.5, 7.5 then every T2 (4 s) until F at 32 s.
    assert_eq!(
        times,
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_timed_out_at_32s(&fired, t0, key);

    // A provisional response moves E to T2; a final one starts K (T4).
    let req = our_request("BYE", "z9hG4bKb1");
    let key = t.send_request(req.clone(), trunk(), t0).unwrap();
    drain(&mut t);
    t.handle_message(answer(&req, 100, None), trunk(), t0 + 100 * MS)
        .unwrap();
    drain(&mut t);
    let fired = run_until(&mut t, t0 + 600 * MS);
    assert_eq!(fired.len(), 1);
    assert_eq!(
        t.poll_timeout(),
        Some(t0 + 500 * MS + Duration::from_secs(4))
    );
    t.handle_message(
        answer(&req, 200, Some("x")),
        trunk(),
        t0 + Duration::from_secs(1),
    )
    .unwrap();
    let out = drain(&mut t);
    assert!(
        matches!(&events(&out)[..], [TxEvent::Response { response, .. }] if response.status == 200)
    );
    assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(6)));
    // A retransmitted final response is absorbed in Completed.
    t.handle_message(
        answer(&req, 200, Some("x")),
        trunk(),
        t0 + Duration::from_secs(2),
    )
    .unwrap();
    assert!(drain(&mut t).is_empty());
    let fired = run_until(&mut t, t0 + Duration::from_secs(7));
    assert_eq!(events(&fired[0].1), [TxEvent::Terminated { key }]);
}

#[test]
fn client_over_tcp_only_times_out() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let tcp = Peer {
        transport: Transport::Tcp,
        ..trunk()
    };
    let req = our_request("INVITE", "z9hG4bKt1");
    t.send_request(req.clone(), tcp, t0).unwrap();
    drain(&mut t);
    assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    // A non-2xx ends it at once (timer D = 0) after the ACK.
    t.handle_message(answer(&req, 503, Some("z")), tcp, t0 + MS)
        .unwrap();
    let out = drain(&mut t);
    assert_eq!(sent(&out).len(), 1);
    assert!(matches!(
        events(&out).last(),
        Some(TxEvent::Terminated { .. })
    ));
    assert!(t.is_empty());
}

#[test]
fn cancel_waits_for_a_provisional_response() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let invite = our_request("INVITE", "z9hG4bKc4");
    let key = t.send_request(invite.clone(), trunk(), t0).unwrap();
    drain(&mut t);
    // Before any provisional response: held back (9.1).
    assert_eq!(t.cancel(&key, t0 + MS), Ok(None));
    assert!(drain(&mut t).is_empty());
    t.handle_message(answer(&invite, 180, Some("far")), trunk(), t0 + 50 * MS)
        .unwrap();
    let out = drain(&mut t);
    let s = sent(&out);
    assert_eq!(s.len(), 1);
    let Message::Request(cancel) = &s[0].1 else {
        panic!()
    };
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(
        cancel.headers.top_via().unwrap().branch(),
        Some("z9hG4bKc4")
    );
    assert_eq!(cancel.headers.cseq().unwrap().to_string(), "1 CANCEL");
    assert_eq!(cancel.headers.to().unwrap().tag(), None);
    // 200 to the CANCEL, 487 to the INVITE (acknowledged).
    t.handle_message(answer(cancel, 200, Some("far")), trunk(), t0 + 60 * MS)
        .unwrap();
    t.handle_message(answer(&invite, 487, Some("far")), trunk(), t0 + 70 * MS)
        .unwrap();
    let out = drain(&mut t);
    assert_eq!(sent(&out).len(), 1);
    let statuses: Vec<u16> = events(&out)
        .iter()
        .filter_map(|e| match e {
            TxEvent::Response { response, .. } => Some(response.status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, [200, 487]);
    // After a final response there is nothing to cancel.
    assert_eq!(t.cancel(&key, t0 + 80 * MS), Ok(None));
}

#[test]
fn server_cancel_finds_its_invite() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let (invite_key, invite) = server_invite(&mut t, t0, Transport::Udp);
    let cancel = cancel_for(&phone_request("INVITE", "z9hG4bKinv1", ""));
    t.handle_message(cancel.into(), phone(), t0 + MS).unwrap();
    let out = drain(&mut t);
    let [TxEvent::Request { key, request, .. }] = &events(&out)[..] else {
        panic!()
    };
    assert_eq!(request.method, Method::Cancel);
    assert_eq!(t.invite_for_cancel(key), Some(invite_key.clone()));
    assert!(!t.has_final_response(&invite_key));
    assert_eq!(t.request(&invite_key), Some(&invite));
}

#[test]
fn rfc2543_requests_still_match() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let mut req = phone_request("OPTIONS", "1", "");
    req.headers.set("Via", "SIP/2.0/UDP old.example.com");
    t.handle_message(req.clone().into(), phone(), t0).unwrap();
    assert_eq!(events(&drain(&mut t)).len(), 1);
    t.handle_message(req.into(), phone(), t0 + MS).unwrap();
    assert!(drain(&mut t).is_empty());
}

#[test]
fn limits_and_misuse() {
    let mut t = Transactions::new(TimerConfig::default()).with_max_transactions(1);
    let t0 = Instant::now();
    t.handle_message(phone_request("OPTIONS", "z9hG4bK1", "").into(), phone(), t0)
        .unwrap();
    assert_eq!(
        t.handle_message(phone_request("OPTIONS", "z9hG4bK2", "").into(), phone(), t0),
        Err(TxError::Overloaded)
    );
    let mut t = Transactions::new(TimerConfig::default());
    assert_eq!(
        t.send_request(our_request("ACK", "z9hG4bKa"), trunk(), t0),
        Err(TxError::AckNotAllowed)
    );
    assert_eq!(
        t.send_request(our_request("BYE", "nocookie"), trunk(), t0),
        Err(TxError::NoBranch)
    );
    t.send_request(our_request("BYE", "z9hG4bKx"), trunk(), t0)
        .unwrap();
    assert_eq!(
        t.send_request(our_request("BYE", "z9hG4bKx"), trunk(), t0),
        Err(TxError::Exists)
    );
    let mut no_via = our_request("BYE", "z9hG4bKy");
    no_via.headers.remove("Via");
    assert!(t.handle_message(no_via.into(), phone(), t0).is_err());
    let bogus = TransactionKey {
        server: true,
        branch: "nope".into(),
        method: Method::Bye,
    };
    assert_eq!(
        t.respond(&bogus, Response::new(200), t0),
        Err(TxError::NoSuchTransaction)
    );
}
