//! Random mutations of real-shaped messages: parsing never panics, and
//! whatever parses serializes to bytes that parse to the same message
//! (typed header values, SDP bodies and digest headers too).

use mediamesh_sip::auth::{Challenge, Credentials};
use mediamesh_sip::header::{NameAddr, Via};
use mediamesh_sip::{Frame, Message, Request, SessionDescription, StreamFramer, Uri};

use mediamesh_testkit::Rng;

const SDP: &str = "v=0\r\no=- 1 2 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 10000 RTP/AVP 96 0 101\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendonly\r\n";

fn seeds() -> Vec<Vec<u8>> {
    let invite = format!(
        "INVITE sip:room1@203.0.113.5;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK5a6f;rport\r\n\
Via: SIP/2.0/TCP [2001:db8::1]:5062;received=10.0.0.1;branch=z9hG4bKx, SIP/2.0/UDP p.example.com;branch=z9hG4bKy\r\n\
Max-Forwards: 70\r\n\
To: <sip:room1@203.0.113.5>\r\n\
From: \"Alice \\\"A\\\"\" <sip:alice:pw@example.com:5070;user=phone?subject=hi>;tag=4e2f\r\n\
Call-ID: 0c9e8a7d6f5b4c3a@192.168.1.20\r\n\
CSeq: 38517 INVITE\r\n\
Contact: <sip:alice@192.168.1.20:5060;transport=udp>;expires=3600, sip:b@c\r\n\
Record-Route: <sip:p1.example.net;lr>\r\n\
Supported: timer, 100rel\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
Authorization: Digest username=\"alice\", realm=\"mediamesh\", nonce=\"5f.0123456789abcdef0123456789abcdef\", uri=\"sip:room1@203.0.113.5\", response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=00000001\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    let response = "SIP/2.0 401 Unauthorized\r\n\
v: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK5a6f;rport=40000;received=198.51.100.7\r\n\
f: <sip:alice@example.com>;tag=4e2f\r\n\
t: <sip:room1@203.0.113.5>;tag=mm\r\n\
i: 0c9e8a7d6f5b4c3a@192.168.1.20\r\n\
CSeq: 38517 INVITE\r\n\
WWW-Authenticate: Digest realm=\"mediamesh\", nonce=\"5f.0123\", algorithm=SHA-256, qop=\"auth\"\r\n\
WWW-Authenticate: Digest realm=\"mediamesh\", nonce=\"5f.0123\", algorithm=MD5, qop=\"auth\", stale=TRUE\r\n\
l: 0\r\n\r\n"
        .to_string();
    let bye = "BYE tel:+1-555-0100;phone-context=example.com SIP/2.0\n\
Via: SIP/2.0/UDP h;branch=z9hG4bKb\n\
From: sip:a@b;tag=1\n\
To: Bob <sip:b@c>\n ;tag=2\n\
Call-ID: x\n\
CSeq: 2 BYE\n\n"
        .to_string();
    vec![invite.into_bytes(), response.into_bytes(), bye.into_bytes()]
}

/// Iterations scale with `SIP_FUZZ_SCALE` (default 1) for longer runs.
fn scale() -> usize {
    std::env::var("SIP_FUZZ_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

const SPECIAL: &[u8] = b":;<>\"=, \t\r\n%@[]\\/?&0123456789zZ\xff\x00";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        let at = rng.below(len + 1);
        match rng.below(7) {
            0 if len > 0 => v[at.min(len - 1)] = rng.next_u64() as u8,
            1 => v.insert(at, SPECIAL[rng.below(SPECIAL.len())]),
            2 if len > 0 => {
                let end = (at + rng.below(16)).min(len);
                v.drain(at..end);
            }
            3 if len > 0 => {
                let end = (at + rng.below(64)).min(len);
                let piece = v[at..end].to_vec();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, piece);
            }
            4 => v.truncate(at),
            5 => {
                let n = 1 + rng.below(3);
                for _ in 0..n {
                    v.insert(at.min(v.len()), b"\r\n"[rng.below(2)]);
                }
            }
            _ => {
                if len > 0 {
                    v[at.min(len - 1)] = SPECIAL[rng.below(SPECIAL.len())];
                }
            }
        }
    }
    v
}

/// An SDP displays to text that parses back to a description with the same
/// text (attribute order may change: format parameters follow their rtpmap).
fn check_sdp(sdp: &SessionDescription) {
    let text = sdp.to_bytes();
    let again = SessionDescription::parse(&text).unwrap();
    assert_eq!(again.to_bytes(), text);
    assert_eq!(again.media.len(), sdp.media.len());
}

fn check_message(m: &Message) {
    let _ = match m {
        Message::Request(r) => r.validate(),
        Message::Response(r) => r.validate(),
    };
    // Serialization is stable.
    let out = m.to_bytes();
    let again = Message::parse(&out)
        .unwrap_or_else(|e| panic!("reparse failed: {e}\n{}", String::from_utf8_lossy(&out)));
    assert_eq!(&again, m, "{}", String::from_utf8_lossy(&out));
    // Typed values display to text that parses to the same value.
    let h = m.headers();
    if let Ok(vias) = h.vias() {
        for v in vias {
            assert_eq!(Via::parse(&v.to_string()).as_ref(), Ok(&v), "{v}");
        }
    }
    for na in [h.from(), h.to()]
        .into_iter()
        .flatten()
        .chain(h.contacts().unwrap_or_default())
    {
        assert_eq!(
            NameAddr::parse(&na.to_string(), "To").as_ref(),
            Ok(&na),
            "{na}"
        );
    }
    if let Message::Request(r) = m {
        assert_eq!(Uri::parse(&r.uri.to_string()).as_ref(), Ok(&r.uri));
        let _ = Request::salvage(&out);
    }
    for c in h.challenges(false) {
        assert_eq!(Challenge::parse(&c.to_string()).as_ref(), Ok(&c));
    }
    for c in h.credentials(false) {
        assert_eq!(Credentials::parse(&c.to_string()).as_ref(), Ok(&c));
    }
    let _ = h.cseq();
    let _ = h.session_expires();
    let _ = h.min_se();
    let _ = h.max_forwards();
    let _ = h.record_routes();
    if let Ok(sdp) = SessionDescription::parse(m.body()) {
        check_sdp(&sdp);
    }
}

#[test]
fn mutated_datagrams_never_panic_and_round_trip() {
    let seeds = seeds();
    for s in &seeds {
        check_message(&Message::parse(s).unwrap());
    }
    let mut rng = Rng(0x5eed_1234_5678_9abc ^ scale() as u64);
    let mut parsed = 0;
    for i in 0..30_000 * scale() {
        let input = mutate(&mut rng, &seeds[i % seeds.len()]);
        let _ = Request::salvage(&input);
        if let Ok(m) = Message::parse(&input) {
            parsed += 1;
            check_message(&m);
        }
    }
    // The mutations leave many messages parseable: the checks above ran.
    assert!(parsed > 3_000 * scale(), "only {parsed} parsed");
}

#[test]
fn mutated_sdp_never_panics() {
    let mut rng = Rng(42 ^ scale() as u64);
    for _ in 0..20_000 * scale() {
        let input = mutate(&mut rng, SDP.as_bytes());
        if let Ok(sdp) = SessionDescription::parse(&input) {
            check_sdp(&sdp);
        }
    }
}

#[test]
fn mutated_streams_never_panic() {
    let seeds = seeds();
    let mut rng = Rng(7 ^ scale() as u64);
    for _ in 0..3_000 * scale() {
        let mut stream = Vec::new();
        for _ in 0..3 {
            stream.extend_from_slice(&seeds[rng.below(seeds.len())]);
        }
        let stream = mutate(&mut rng, &stream);
        let mut f = StreamFramer::new();
        let mut i = 0;
        'feed: while i < stream.len() {
            let end = (i + 1 + rng.below(200)).min(stream.len());
            if f.push(&stream[i..end]).is_err() {
                break;
            }
            i = end;
            loop {
                match f.next_frame() {
                    Ok(Some(Frame::Message(m))) => check_message(&m),
                    Ok(Some(Frame::KeepAlive)) => {}
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
}
