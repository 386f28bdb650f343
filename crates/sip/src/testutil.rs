//! Shared test helpers: real-shaped messages, a deterministic RNG.

use std::net::SocketAddr;

pub(crate) use mediamesh_testkit::Rng;

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Joins lines with CRLF and appends the body with a correct
/// Content-Length (the last header line is `Content-Length: {len}`
/// placeholder-free: this adds it).
pub(crate) fn msg(head: &[&str], body: &str) -> Vec<u8> {
    let mut s = head.join("\r\n");
    s.push_str(&format!("\r\nContent-Length: {}\r\n\r\n", body.len()));
    s.push_str(body);
    s.into_bytes()
}

pub(crate) const SIPP_SDP: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

/// An INVITE as SIPp's built-in `uac` scenario sends it.
pub(crate) fn sipp_invite() -> Vec<u8> {
    msg(
        &[
            "INVITE sip:service@127.0.0.1:5060 SIP/2.0",
            "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-12345-1-0",
            "From: sipp <sip:sipp@127.0.0.1:5061>;tag=12345SIPpTag001",
            "To: service <sip:service@127.0.0.1:5060>",
            "Call-ID: 1-12345@127.0.0.1",
            "CSeq: 1 INVITE",
            "Contact: sip:sipp@127.0.0.1:5061",
            "Max-Forwards: 70",
            "Subject: Performance Test",
            "Content-Type: application/sdp",
        ],
        SIPP_SDP,
    )
}

pub(crate) const BARESIP_SDP: &str = "v=0\r\n\
o=- 1234567890 1234567891 IN IP4 192.168.1.20\r\n\
s=-\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
m=audio 10000 RTP/AVP 96 9 0 8 101\r\n\
b=AS:96\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 stereo=1;sprop-stereo=1\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=label:1\r\n";

/// An INVITE as baresip sends it into a room, through a NAT (private
/// addresses, `rport`).
pub(crate) fn baresip_invite() -> Vec<u8> {
    msg(
        &[
            "INVITE sip:room1@203.0.113.5 SIP/2.0",
            "Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK5a6f0c1e4b8d9a2f;rport",
            "Contact: <sip:alice-0x55d0@192.168.1.20:5060;transport=udp>",
            "Max-Forwards: 70",
            "To: <sip:room1@203.0.113.5>",
            "From: \"Alice\" <sip:alice@example.com>;tag=4e2f7c1a9b3d",
            "Call-ID: 0c9e8a7d6f5b4c3a",
            "CSeq: 38517 INVITE",
            "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,REFER,UPDATE",
            "Supported: replaces,norefersub,100rel",
            "User-Agent: baresip v3.10.0 (x86_64/Linux)",
            "Content-Type: application/sdp",
        ],
        BARESIP_SDP,
    )
}

/// A 180 that went through a proxy: two Vias, Record-Route.
pub(crate) fn ringing_two_vias() -> Vec<u8> {
    msg(
        &[
            "SIP/2.0 180 Ringing",
            "Via: SIP/2.0/UDP ss1.example.com:5060;branch=z9hG4bK2d4790.1;received=192.0.2.111",
            "Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;received=192.0.2.101",
            "Record-Route: <sip:ss1.example.com;lr>",
            "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl",
            "To: Bob <sip:bob@biloxi.example.com>;tag=8321234356",
            "Call-ID: 3848276298220188511@atlanta.example.com",
            "Contact: <sip:bob@client.biloxi.example.com>",
            "CSeq: 1 INVITE",
        ],
        "",
    )
}
