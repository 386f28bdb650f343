//! SDP parsing and the offer/answer choices for plain RTP audio.

use super::*;
use crate::testutil::{BARESIP_SDP, SIPP_SDP};

fn local() -> LocalMedia {
    LocalMedia {
        address: "203.0.113.5".parse().unwrap(),
        port: 20000,
        session_id: 42,
        session_version: 1,
        direction: Direction::SendRecv,
    }
}

fn sd(s: &str) -> SessionDescription {
    SessionDescription::parse(s.as_bytes()).unwrap()
}

#[test]
fn parses_a_baresip_offer() {
    let o = sd(BARESIP_SDP);
    assert_eq!(o.origin.session_id, 1234567890);
    assert_eq!(
        o.connection.as_ref().unwrap().ip(),
        Some("192.168.1.20".parse().unwrap())
    );
    let m = o.audio().unwrap();
    assert_eq!(m.port, 10000);
    assert_eq!(m.proto, "RTP/AVP");
    assert_eq!(m.rtpmap(96).unwrap().encoding, "opus");
    assert_eq!(m.rtpmap(96).unwrap().channels, Some(2));
    assert_eq!(m.fmtp(96), Some("stereo=1;sprop-stereo=1"));
    assert_eq!(m.ptime, Some(20));
    assert_eq!(m.direction, Some(Direction::SendRecv));
    assert_eq!(
        m.attributes,
        vec![("label".to_string(), Some("1".to_string()))]
    );
    assert!(!o.is_hold());
    // Display then parse gives the same description.
    assert_eq!(SessionDescription::parse(&o.to_bytes()).unwrap(), o);
}

#[test]
fn answers_opus_with_telephone_event() {
    let (a, n) = answer(&sd(BARESIP_SDP), &local(), &AudioConfig::default()).unwrap();
    assert_eq!(n.codec, Codec::Opus);
    assert_eq!(n.payload_type, 96);
    assert_eq!(n.dtmf_payload_type, Some(101));
    assert_eq!(n.remote_rtp, Some("192.168.1.20:10000".parse().unwrap()));
    assert_eq!(n.direction, Direction::SendRecv);
    assert_eq!(n.fmtp.as_deref(), Some("stereo=1;sprop-stereo=1"));
    let text = a.to_string();
    assert_eq!(
        text,
        "v=0\r\no=- 42 1 IN IP4 203.0.113.5\r\ns=MediaMesh\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 96 101\r\n\
a=rtpmap:96 opus/48000/2\r\na=fmtp:96 minptime=10;useinbandfec=1\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n\
a=ptime:20\r\na=sendrecv\r\n"
    );
}

#[test]
fn answers_pcmu_to_sipp_and_follows_preferences() {
    let (a, n) = answer(&sd(SIPP_SDP), &local(), &AudioConfig::default()).unwrap();
    assert_eq!(
        (n.codec, n.payload_type, n.dtmf_payload_type),
        (Codec::Pcmu, 0, None)
    );
    assert_eq!(a.media[0].formats, ["0"]);

    // Static payload types without rtpmap; our order decides.
    let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 9\r\n";
    let cfg = AudioConfig {
        codecs: vec![Codec::G722, Codec::Pcma],
        dtmf: true,
        ptime: None,
    };
    let (a, n) = answer(&sd(offer), &local(), &cfg).unwrap();
    assert_eq!((n.codec, n.payload_type), (Codec::G722, 9));
    assert_eq!(a.media[0].rtpmaps[0].to_string(), "9 G722/8000");
    assert_eq!(a.media[0].ptime, None);

    // Opus at 48000/1 is not ours; a te at 48000 is chosen with Opus.
    let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 100 111 0 101 110\r\na=rtpmap:100 opus/48000/1\r\na=rtpmap:111 OPUS/48000/2\r\n\
a=rtpmap:101 telephone-event/8000\r\na=rtpmap:110 telephone-event/48000\r\n";
    let (_, n) = answer(&sd(offer), &local(), &AudioConfig::default()).unwrap();
    assert_eq!(
        (n.codec, n.payload_type, n.dtmf_payload_type),
        (Codec::Opus, 111, Some(110))
    );
}

#[test]
fn rejects_other_streams_with_port_zero() {
    let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n\
m=audio 5002 RTP/SAVP 0\r\n\
m=audio 5004 RTP/AVP 8\r\nc=IN IP4 10.0.0.9\r\n";
    let (a, n) = answer(&sd(offer), &local(), &AudioConfig::default()).unwrap();
    assert_eq!(a.media.len(), 3);
    assert_eq!((a.media[0].media.as_str(), a.media[0].port), ("video", 0));
    assert_eq!(
        (a.media[1].proto.as_str(), a.media[1].port),
        ("RTP/SAVP", 0)
    );
    assert_eq!(a.media[2].port, 20000);
    assert_eq!(n.codec, Codec::Pcma);
    assert_eq!(n.remote_rtp, Some("10.0.0.9:5004".parse().unwrap()));
    // The answer parses.
    SessionDescription::parse(&a.to_bytes()).unwrap();
}

#[test]
fn no_common_codec_or_audio() {
    let g729 = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n";
    assert_eq!(
        answer(&sd(g729), &local(), &AudioConfig::default()).unwrap_err(),
        SdpError::NoCodec
    );
    let video = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\n";
    assert_eq!(
        answer(&sd(video), &local(), &AudioConfig::default()).unwrap_err(),
        SdpError::NoAudio
    );
    let webrtc =
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
    assert_eq!(
        answer(&sd(webrtc), &local(), &AudioConfig::default()).unwrap_err(),
        SdpError::NoAudio
    );
}

#[test]
fn directions_and_hold() {
    let base = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    for (attr, hold, ours) in [
        ("", false, Direction::SendRecv),
        ("a=sendrecv\r\n", false, Direction::SendRecv),
        ("a=sendonly\r\n", true, Direction::RecvOnly),
        ("a=recvonly\r\n", false, Direction::SendOnly),
        ("a=inactive\r\n", true, Direction::Inactive),
    ] {
        let o = sd(&format!("{base}{attr}"));
        assert_eq!(o.is_hold(), hold, "{attr:?}");
        let (a, n) = answer(&o, &local(), &AudioConfig::default()).unwrap();
        assert_eq!(n.direction, ours, "{attr:?}");
        assert_eq!(a.media[0].direction, Some(ours));
    }
    // Session-level direction applies to the media.
    let o = sd(&base.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n"));
    assert!(o.is_hold());
    // RFC 2543 hold: c=0.0.0.0.
    let o = sd(&base.replace("c=IN IP4 10.0.0.1", "c=IN IP4 0.0.0.0"));
    assert!(o.is_hold());
    let (_, n) = answer(&o, &local(), &AudioConfig::default()).unwrap();
    assert_eq!(n.direction, Direction::RecvOnly);
    assert_eq!(n.remote_rtp, None);
    // We hold: our sendonly restricts the answer.
    let mut l = local();
    l.direction = Direction::SendOnly;
    let (_, n) = answer(&sd(base), &l, &AudioConfig::default()).unwrap();
    assert_eq!(n.direction, Direction::SendOnly);
}

#[test]
fn offer_and_answer_for_dial_out() {
    let o = offer(&local(), &AudioConfig::default());
    let text = o.to_string();
    assert!(
        text.contains("m=audio 20000 RTP/AVP 111 0 8 9 110 101\r\n"),
        "{text}"
    );
    let parsed = SessionDescription::parse(text.as_bytes()).unwrap();
    assert_eq!(parsed, o);

    let ans = sd("v=0\r\no=- 7 7 IN IP4 192.0.2.50\r\ns=-\r\nc=IN IP4 192.0.2.50\r\nt=0 0\r\n\
m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\n");
    let n = negotiated_from_answer(&o, &ans).unwrap();
    assert_eq!(
        (n.codec, n.payload_type, n.dtmf_payload_type),
        (Codec::Pcmu, 0, Some(101))
    );
    assert_eq!(n.remote_rtp, Some("192.0.2.50:30000".parse().unwrap()));
    assert_eq!(n.ptime, Some(30));
    assert_eq!(n.direction, Direction::SendRecv);

    let ans_opus = sd("v=0\r\no=- 7 7 IN IP4 192.0.2.50\r\ns=-\r\nc=IN IP4 192.0.2.50\r\nt=0 0\r\n\
m=audio 30000 RTP/AVP 111 110\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:110 telephone-event/48000\r\na=recvonly\r\n");
    let n = negotiated_from_answer(&o, &ans_opus).unwrap();
    assert_eq!((n.codec, n.dtmf_payload_type), (Codec::Opus, Some(110)));
    assert_eq!(n.direction, Direction::SendOnly);

    let bad = sd("v=0\r\no=- 7 7 IN IP4 192.0.2.50\r\ns=-\r\nc=IN IP4 192.0.2.50\r\nt=0 0\r\nm=audio 30000 RTP/AVP 18\r\n");
    assert_eq!(
        negotiated_from_answer(&o, &bad).unwrap_err(),
        SdpError::NoCodec
    );
}

#[test]
fn malformed_sdp_is_an_error() {
    for bad in [
        "",
        "o=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=1\r\n",
        "v=0\r\ns=-\r\n",
        "v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:300 PCMU/8000\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:x\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP9 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ngarbage\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n",
    ] {
        assert!(
            SessionDescription::parse(bad.as_bytes()).is_err(),
            "{bad:?}"
        );
    }
    assert_eq!(
        SessionDescription::parse(b"v=0\r\n\xff\r\n"),
        Err(SdpError::NotUtf8)
    );
    let many = format!(
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n{}",
        "m=audio 1 RTP/AVP 0\r\n".repeat(40)
    );
    assert_eq!(
        SessionDescription::parse(many.as_bytes()),
        Err(SdpError::TooLarge)
    );
}
