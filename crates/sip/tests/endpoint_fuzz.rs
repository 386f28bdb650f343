//! Random traffic into an [`Endpoint`]: real-shaped requests and responses
//! from several phones, mutated or not, in random order, with random driver
//! decisions and time jumps. Nothing panics, every call ends exactly once,
//! and once everyone hangs up and the timers run out nothing is left.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mediamesh_sip::sdp::{self, AudioConfig, Direction, LocalMedia};
use mediamesh_sip::{
    CallHandle, Endpoint, EndpointConfig, EndpointEvent, Message, Peer, Request, Response,
    SessionDescription,
};

use mediamesh_testkit::Rng;

const SDP: &str = "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

fn local() -> LocalMedia {
    LocalMedia {
        address: "203.0.113.5".parse().unwrap(),
        port: 20000,
        session_id: 1,
        session_version: 1,
        direction: Direction::SendRecv,
    }
}

/// A request from phone `p` in call `c`.
fn request(
    method: &str,
    p: usize,
    c: usize,
    seq: u32,
    to_tag: Option<&str>,
    branch: u64,
    sdp: bool,
) -> Vec<u8> {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let body = if sdp { SDP } else { "" };
    let ct = if sdp {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    format!(
        "{method} sip:room{c}@203.0.113.5 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.{p}:5060;branch=z9hG4bK{branch:x};rport\r\n\
From: <sip:phone{p}@example.com>;tag=p{p}c{c}\r\n\
To: <sip:room{c}@203.0.113.5>{to_tag}\r\n\
Call-ID: call-{p}-{c}\r\n\
CSeq: {seq} {method}\r\n\
Contact: <sip:phone{p}@10.0.0.{p}:5060>\r\n\
Max-Forwards: 70\r\n\
Supported: timer\r\n\
Session-Expires: 90\r\n\
{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn mutate(rng: &mut Rng, v: &mut Vec<u8>) {
    const SPECIAL: &[u8] = b":;<>\"=, \r\n0123456789\x00\xff";
    for _ in 0..1 + rng.below(3) {
        let len = v.len();
        if len == 0 {
            return;
        }
        let at = rng.below(len);
        match rng.below(4) {
            0 => v[at] = rng.next_u64() as u8,
            1 => v.insert(at, SPECIAL[rng.below(SPECIAL.len())]),
            2 => {
                let end = (at + rng.below(12)).min(len);
                v.drain(at..end);
            }
            _ => v.truncate(at),
        }
    }
}

#[test]
fn random_traffic_into_an_endpoint() {
    let scale: usize = std::env::var("SIP_FUZZ_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for seed in 0..4 * scale as u64 {
        run(seed);
    }
}

fn run(seed: u64) {
    let mut rng = Rng(0x9e37_79b9 ^ (seed + 1).wrapping_mul(0x2545_f491));
    let cfg = EndpointConfig {
        host: "203.0.113.5".into(),
        max_calls: 8,
        ..Default::default()
    };
    let mut ep = Endpoint::new(cfg, [seed as u8; 32]);
    let t0 = Instant::now();
    let mut now = t0;
    let mut branch = 1u64;
    let mut seqs: BTreeMap<(usize, usize), u32> = BTreeMap::new();
    // Our To tag of each (phone, call), learnt from responses.
    let mut tags: BTreeMap<(usize, usize), String> = BTreeMap::new();
    let mut offered: Vec<CallHandle> = Vec::new();
    let mut live: BTreeSet<CallHandle> = BTreeSet::new();
    let mut ended: BTreeSet<CallHandle> = BTreeSet::new();

    for _ in 0..3_000 {
        let p = 1 + rng.below(4);
        let c = rng.below(4);
        let peer = Peer::udp(SocketAddr::from(([10, 0, 0, p as u8], 5060)));
        branch += 1;
        let seq = seqs.entry((p, c)).or_insert(1);
        let tag = tags.get(&(p, c)).cloned();
        match rng.below(12) {
            0..=2 => {
                let mut m = request("INVITE", p, c, *seq, None, branch, rng.below(4) != 0);
                if rng.below(3) == 0 {
                    mutate(&mut rng, &mut m);
                }
                ep.handle_datagram(peer, &m, now);
            }
            3 => {
                *seq += 1;
                let m = request("BYE", p, c, *seq, tag.as_deref(), branch, false);
                ep.handle_datagram(peer, &m, now);
            }
            4 => {
                let m = request("ACK", p, c, 1, tag.as_deref(), branch, false);
                ep.handle_datagram(peer, &m, now);
            }
            5 => {
                // CANCEL of the phone's first INVITE (its branch is unknown
                // here: a random one mostly gets 481).
                let m = request("CANCEL", p, c, 1, None, branch - rng.below(3) as u64, false);
                ep.handle_datagram(peer, &m, now);
            }
            6 => {
                *seq += 1;
                let mut m = request("INVITE", p, c, *seq, tag.as_deref(), branch, true);
                if rng.below(2) == 0 {
                    m = String::from_utf8_lossy(&m)
                        .replace("RTP/AVP 0 101", "RTP/AVP 0 101\r\na=sendonly")
                        .into_bytes();
                    mutate(&mut rng, &mut m);
                }
                ep.handle_datagram(peer, &m, now);
            }
            7 => {
                let mut m = request(
                    ["OPTIONS", "INFO", "UPDATE", "REFER", "FOO"][rng.below(5)],
                    p,
                    c,
                    *seq + 1,
                    tag.as_deref(),
                    branch,
                    false,
                );
                mutate(&mut rng, &mut m);
                ep.handle_datagram(peer, &m, now);
            }
            8 => {
                // Driver decisions.
                if !offered.is_empty() {
                    let call = offered.swap_remove(rng.below(offered.len()));
                    let offer = SessionDescription::parse(SDP.as_bytes()).unwrap();
                    let _ = match rng.below(4) {
                        0 => ep.reject(call, 486, now),
                        1 => ep.ringing(call, None, now),
                        _ => {
                            let (ans, _) =
                                sdp::answer(&offer, &local(), &AudioConfig::default()).unwrap();
                            ep.accept(call, &ans, now)
                        }
                    };
                }
            }
            9 => {
                if let Some(&call) = live.iter().nth(rng.below(live.len().max(1))) {
                    let _ = ep.hangup(call, now);
                }
            }
            10 => {
                now += Duration::from_millis(rng.below(5_000) as u64);
                ep.handle_timeout(now);
            }
            _ => {
                // A response from a phone to whatever we sent last (BYE,
                // UPDATE, re-INVITE), maybe mutated.
                ep.handle_timeout(now);
            }
        }
        while let Some(t) = ep.poll_transmit() {
            // Learn our tags; answer our requests now and then.
            match &t.message {
                Message::Response(r) => {
                    if let (Ok(to), Ok(call_id)) = (r.headers.to(), r.headers.call_id()) {
                        if let (Some(tag), Some(rest)) = (to.tag(), call_id.strip_prefix("call-")) {
                            if let Some((a, b)) = rest.split_once('-') {
                                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                                    tags.insert((a, b), tag.to_string());
                                    // Acknowledge most 200s to INVITEs at once.
                                    let cseq = r.headers.cseq().ok();
                                    if r.status == 200
                                        && cseq.as_ref().is_some_and(|c| {
                                            c.method == mediamesh_sip::Method::Invite
                                        })
                                        && rng.below(4) != 0
                                    {
                                        branch += 1;
                                        let seq = cseq.map_or(1, |c| c.seq);
                                        let ack =
                                            request("ACK", a, b, seq, Some(tag), branch, false);
                                        ep.handle_datagram(t.to, &ack, now);
                                    }
                                }
                            }
                        }
                    }
                }
                Message::Request(req) if rng.below(2) == 0 => {
                    let resp = answer_ours(req, rng.below(3) == 0);
                    let mut bytes = resp.to_bytes();
                    if rng.below(4) == 0 {
                        mutate(&mut rng, &mut bytes);
                    }
                    ep.handle_datagram(t.to, &bytes, now);
                }
                _ => {}
            }
        }
        while let Some(e) = ep.poll_event() {
            match e {
                EndpointEvent::IncomingCall { call, .. } => {
                    offered.push(call);
                    live.insert(call);
                }
                EndpointEvent::Ended { call, .. } => {
                    assert!(ended.insert(call), "{call:?} ended twice");
                    assert!(live.remove(&call), "{call:?} ended but never started");
                    offered.retain(|c| *c != call);
                }
                _ => {}
            }
        }
        assert!(ep.call_count() <= 8);
        assert!(ep.transaction_count() <= 4096);
    }
    // Everyone hangs up; the timers run out.
    for call in live.clone() {
        let _ = ep.hangup(call, now);
    }
    for _ in 0..200 {
        let Some(at) = ep.poll_timeout() else { break };
        now = now.max(at);
        ep.handle_timeout(now);
        while ep.poll_transmit().is_some() {}
        while let Some(e) = ep.poll_event() {
            if let EndpointEvent::Ended { call, .. } = e {
                assert!(ended.insert(call), "{call:?} ended twice");
                live.remove(&call);
            }
        }
    }
    assert!(live.is_empty(), "{live:?} never ended");
    assert_eq!(ep.call_count(), 0);
    assert_eq!(ep.transaction_count(), 0);
    assert_eq!(ep.poll_timeout(), None);
}

/// A phone's answer to a request of ours.
fn answer_ours(req: &Request, fail: bool) -> Response {
    let mut r = Response::for_request(req, if fail { 481 } else { 200 });
    if req.method == mediamesh_sip::Method::Invite {
        r.headers.push("Contact", "<sip:phone@10.0.0.1:5060>");
        r.headers.push("Content-Type", "application/sdp");
        r.body = SDP.as_bytes().to_vec();
    }
    r
}
