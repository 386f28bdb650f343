//! Scripted sessions: the bytes a publisher sends, the replies we decode.

use super::*;
use crate::avc::tests::{avcc, config_record};
use crate::chunk::tests::raw_chunk;
use crate::handshake::HANDSHAKE_SIZE;
use mediamesh_testkit::Rng;

/// Builds what a publisher sends.
struct Client {
    w: ChunkWriter,
    out: Vec<u8>,
}

impl Client {
    fn new() -> Self {
        let mut out = vec![3];
        out.extend((0..HANDSHAKE_SIZE).map(|i| (i % 253) as u8)); // C1
        out.extend(vec![0x5a; HANDSHAKE_SIZE]); // C2
        Client {
            w: ChunkWriter::new(),
            out,
        }
    }

    fn command(&mut self, msid: u32, values: &[Amf0Value]) {
        let p = amf0::encode_all(values);
        self.w.write(&mut self.out, 3, 0, 20, msid, &p).unwrap();
    }

    fn data(&mut self, msid: u32, values: &[Amf0Value]) {
        let p = amf0::encode_all(values);
        self.w.write(&mut self.out, 4, 0, 18, msid, &p).unwrap();
    }

    fn media(&mut self, type_id: u8, msid: u32, ts: u32, payload: &[u8]) {
        let csid = if type_id == 8 { 4 } else { 6 };
        self.w
            .write(&mut self.out, csid, ts, type_id, msid, payload)
            .unwrap();
    }

    fn control(&mut self, type_id: u8, payload: &[u8]) {
        self.w
            .write(&mut self.out, 2, 0, type_id, 0, payload)
            .unwrap();
    }

    fn set_chunk_size(&mut self, size: u32) {
        self.control(1, &size.to_be_bytes());
        self.w.set_chunk_size(size).unwrap();
    }

    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

fn s(v: &str) -> Amf0Value {
    Amf0Value::string(v)
}

fn n(v: f64) -> Amf0Value {
    Amf0Value::Number(v)
}

fn connect(c: &mut Client) {
    c.command(
        0,
        &[
            s("connect"),
            n(1.0),
            Amf0Value::object([
                ("app", s("live")),
                ("type", s("nonprivate")),
                ("flashVer", s("FMLE/3.0 (compatible; FMSc/1.0)")),
                ("tcUrl", s("rtmp://127.0.0.1:1935/live")),
            ]),
        ],
    );
}

/// Decodes what the server sends.
struct Peer {
    skipped: usize,
    reader: ChunkReader,
}

impl Peer {
    fn new() -> Self {
        Peer {
            skipped: 0,
            reader: ChunkReader::default(),
        }
    }

    fn push(&mut self, mut bytes: &[u8]) -> Vec<Message> {
        let hs = 1 + 2 * HANDSHAKE_SIZE;
        if self.skipped < hs {
            if self.skipped == 0 && !bytes.is_empty() {
                assert_eq!(bytes[0], 3, "S0");
            }
            let k = (hs - self.skipped).min(bytes.len());
            self.skipped += k;
            bytes = &bytes[k..];
        }
        self.reader.push(bytes);
        let mut out = Vec::new();
        while let Some(m) = self.reader.next_message().unwrap() {
            out.push(m);
        }
        out
    }

    fn drain(&mut self, session: &mut ServerSession) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(b) = session.poll_output() {
            out.extend(self.push(&b));
        }
        out
    }
}

fn events(session: &mut ServerSession) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

fn decode(m: &Message) -> Vec<Amf0Value> {
    assert_eq!(m.type_id, 20, "command message");
    amf0::decode_all(&m.payload).unwrap()
}

fn u32_at(p: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]])
}

/// A keyframe (SEI + IDR) and an inter frame as AVCC in FLV video tags.
fn video_tags() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut seq = vec![0x17, 0, 0, 0, 0];
    seq.extend(config_record());
    let mut key = vec![0x17, 1, 0, 0, 0];
    let idr: Vec<u8> = std::iter::once(0x65)
        .chain((0..3000u32).map(|i| i as u8))
        .collect();
    key.extend(avcc(&[&[0x06, 0x05, 0x01, 0x80], &idr]));
    let mut inter = vec![0x27, 1, 0, 0, 40];
    inter.extend(avcc(&[&[0x41, 0x9a, 0x00]]));
    (seq, key, inter)
}

#[test]
fn scripted_publish_session() {
    let mut sess = ServerSession::new(SessionConfig::default());
    let mut peer = Peer::new();
    let mut c = Client::new();

    // Handshake alone: S0 S1 S2, nothing else.
    let hs = c.take();
    sess.feed(&hs[..1 + HANDSHAKE_SIZE]).unwrap();
    let out = sess.poll_output().unwrap();
    assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
    assert_eq!(&out[1 + HANDSHAKE_SIZE..], &hs[1..1 + HANDSHAKE_SIZE]);
    assert!(!sess.is_handshake_done());
    peer.push(&out);
    sess.feed(&hs[1 + HANDSHAKE_SIZE..]).unwrap();
    assert!(sess.is_handshake_done());
    assert!(sess.poll_output().is_none());

    // connect.
    connect(&mut c);
    sess.feed(&c.take()).unwrap();
    let msgs = peer.drain(&mut sess);
    let types: Vec<u8> = msgs.iter().map(|m| m.type_id).collect();
    // Set Chunk Size is applied by the reader, not returned.
    assert_eq!(types, vec![5, 6, 20]);
    assert_eq!(u32_at(&msgs[0].payload, 0), 2_500_000);
    assert_eq!(msgs[1].payload, [0x00, 0x26, 0x25, 0xa0, 2]);
    assert_eq!(peer.reader.chunk_size(), 4096);
    let r = decode(&msgs[2]);
    assert_eq!(r[0], s("_result"));
    assert_eq!(r[1], n(1.0));
    assert_eq!(r[2].get("fmsVer"), Some(&s("FMS/3,0,1,123")));
    assert_eq!(r[3].get("code"), Some(&s("NetConnection.Connect.Success")));
    assert_eq!(r[3].get("level"), Some(&s("status")));
    assert_eq!(r[3].get("objectEncoding"), Some(&n(0.0)));
    match &events(&mut sess)[..] {
        [Event::Connect {
            app,
            tc_url,
            flash_ver,
            object_encoding,
            properties,
            ..
        }] => {
            assert_eq!(app, "live");
            assert_eq!(tc_url.as_deref(), Some("rtmp://127.0.0.1:1935/live"));
            assert!(flash_ver.as_deref().unwrap().starts_with("FMLE"));
            assert_eq!(*object_encoding, 0.0);
            assert_eq!(properties.len(), 4);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(sess.app(), Some("live"));

    // releaseStream, FCPublish, createStream (as ffmpeg sends them).
    c.command(0, &[s("releaseStream"), n(2.0), Amf0Value::Null, s("key")]);
    c.command(0, &[s("FCPublish"), n(3.0), Amf0Value::Null, s("key")]);
    c.command(0, &[s("createStream"), n(4.0), Amf0Value::Null]);
    sess.feed(&c.take()).unwrap();
    let msgs = peer.drain(&mut sess);
    assert_eq!(msgs.len(), 3);
    assert_eq!(decode(&msgs[0])[..2], [s("_result"), n(2.0)]);
    assert_eq!(decode(&msgs[1])[..2], [s("_result"), n(3.0)]);
    assert_eq!(
        decode(&msgs[2]),
        vec![s("_result"), n(4.0), Amf0Value::Null, n(1.0)]
    );
    assert!(events(&mut sess).is_empty());

    // publish on stream 1: a request, no reply until the driver decides.
    c.command(
        1,
        &[
            s("publish"),
            n(5.0),
            Amf0Value::Null,
            s("key?token=a"),
            s("live"),
        ],
    );
    sess.feed(&c.take()).unwrap();
    assert!(sess.poll_output().is_none());
    assert_eq!(
        events(&mut sess),
        vec![Event::PublishRequest {
            stream_id: 1,
            app: "live".into(),
            stream_key: "key?token=a".into(),
            publish_type: "live".into(),
        }]
    );
    assert_eq!(sess.accept_publish(2), Err(RtmpError::NotPending(2)));
    sess.accept_publish(1).unwrap();
    assert_eq!(sess.accept_publish(1), Err(RtmpError::NotPending(1)));
    let msgs = peer.drain(&mut sess);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].type_id, 4);
    assert_eq!(msgs[0].payload, [0, 0, 0, 0, 0, 1]); // StreamBegin 1
    assert_eq!(msgs[1].stream_id, 1);
    let st = decode(&msgs[1]);
    assert_eq!(st[0], s("onStatus"));
    assert_eq!(st[3].get("code"), Some(&s("NetStream.Publish.Start")));
    assert_eq!(st[3].get("level"), Some(&s("status")));

    // Metadata, sequence headers, frames; the client raises its chunk size
    // and asks for acknowledgements.
    c.control(5, &5000u32.to_be_bytes());
    c.set_chunk_size(1000);
    let meta = Amf0Value::EcmaArray(vec![
        ("width".into(), n(320.0)),
        ("videocodecid".into(), n(7.0)),
    ]);
    c.data(1, &[s("@setDataFrame"), s("onMetaData"), meta.clone()]);
    let (seq, key, inter) = video_tags();
    let aac_seq = [0xaf, 0, 0x12, 0x10];
    let aac_frame = [0xaf, 1, 0x21, 0x00, 0x49, 0x90];
    c.media(9, 1, 0, &seq);
    c.media(8, 1, 0, &aac_seq);
    c.media(9, 1, 0, &key);
    c.media(8, 1, 23, &aac_frame);
    c.media(9, 1, 40, &inter);
    c.media(9, 2, 40, &inter); // stream 2 does not exist: ignored
    c.media(8, 1, 0x0100_0000, &aac_frame); // extended timestamp
                                            // Ping request.
    c.control(4, &[0, 6, 0, 0, 0x12, 0x34]);
    sess.feed(&c.take()).unwrap();
    let evs = events(&mut sess);
    assert_eq!(
        evs,
        vec![
            Event::Metadata {
                stream_id: 1,
                values: vec![meta]
            },
            Event::Video {
                stream_id: 1,
                timestamp_ms: 0,
                data: seq
            },
            Event::Audio {
                stream_id: 1,
                timestamp_ms: 0,
                data: aac_seq.to_vec()
            },
            Event::Video {
                stream_id: 1,
                timestamp_ms: 0,
                data: key
            },
            Event::Audio {
                stream_id: 1,
                timestamp_ms: 23,
                data: aac_frame.to_vec()
            },
            Event::Video {
                stream_id: 1,
                timestamp_ms: 40,
                data: inter
            },
            Event::Audio {
                stream_id: 1,
                timestamp_ms: 0x0100_0000,
                data: aac_frame.to_vec()
            },
        ]
    );
    assert_eq!(sess.stats().media_ignored, 1);
    let msgs = peer.drain(&mut sess);
    // Ping response, then an acknowledgement of everything so far.
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].payload, [0, 7, 0, 0, 0x12, 0x34]);
    assert_eq!(msgs[1].type_id, 3);
    assert_eq!(
        u64::from(u32_at(&msgs[1].payload, 0)),
        sess.stats().bytes_in
    );

    // FCUnpublish then deleteStream: one Unpublish.
    c.command(
        0,
        &[s("FCUnpublish"), n(6.0), Amf0Value::Null, s("key?token=a")],
    );
    c.command(0, &[s("deleteStream"), n(7.0), Amf0Value::Null, n(1.0)]);
    c.media(9, 1, 80, &[0x27, 1, 0, 0, 0]); // after deleteStream: ignored
    sess.feed(&c.take()).unwrap();
    assert_eq!(events(&mut sess), vec![Event::Unpublish { stream_id: 1 }]);
    let msgs = peer.drain(&mut sess);
    assert_eq!(decode(&msgs[0])[..2], [s("_result"), n(6.0)]);
    assert_eq!(msgs.len(), 1);
    assert_eq!(sess.stats().media_ignored, 2);
}

/// The whole client side of a session, for split and fuzz tests.
fn full_client_stream() -> Vec<u8> {
    let mut c = Client::new();
    connect(&mut c);
    c.command(0, &[s("releaseStream"), n(2.0), Amf0Value::Null, s("k")]);
    c.command(0, &[s("FCPublish"), n(3.0), Amf0Value::Null, s("k")]);
    c.command(0, &[s("createStream"), n(4.0), Amf0Value::Null]);
    c.command(
        1,
        &[s("publish"), n(5.0), Amf0Value::Null, s("k"), s("live")],
    );
    c.control(5, &2000u32.to_be_bytes());
    c.data(
        1,
        &[
            s("@setDataFrame"),
            s("onMetaData"),
            Amf0Value::object([("duration", n(0.0))]),
        ],
    );
    let (seq, key, inter) = video_tags();
    c.media(9, 1, 0, &seq);
    c.media(8, 1, 0, &[0xaf, 0, 0x12, 0x10]);
    c.media(9, 1, 0, &key);
    c.set_chunk_size(333);
    for i in 1..5u32 {
        c.media(8, 1, i * 23, &[0xaf, 1, i as u8]);
        c.media(9, 1, i * 33, &inter);
    }
    // Interleaved: the chunks of a video and an audio message alternate.
    let mut raw = Vec::new();
    let big: Vec<u8> = std::iter::once(0x27)
        .chain((1..700u32).map(|i| i as u8))
        .collect();
    raw_chunk(&mut raw, 1, 6, Some(100), 700, 9, 0, None, &big[..333]);
    raw_chunk(&mut raw, 1, 4, Some(200), 3, 8, 0, None, &[0xaf, 1, 9]);
    raw_chunk(&mut raw, 3, 6, None, 0, 0, 0, None, &big[333..666]);
    raw_chunk(&mut raw, 3, 6, None, 0, 0, 0, None, &big[666..]);
    let mut out = c.take();
    out.extend(raw);
    c.command(1, &[s("closeStream"), n(0.0), Amf0Value::Null]);
    c.command(0, &[s("deleteStream"), n(8.0), Amf0Value::Null, n(1.0)]);
    out.extend(c.take());
    out
}

/// Feeds `input` in pieces, accepting publishes; returns the events and the
/// decoded replies other than acknowledgements.
fn run(input: &[u8], split: &mut dyn FnMut() -> usize) -> (Vec<Event>, Vec<Message>) {
    let mut sess = ServerSession::new(SessionConfig::default());
    let mut peer = Peer::new();
    let mut evs = Vec::new();
    let mut replies = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let k = split().clamp(1, input.len() - i);
        sess.feed(&input[i..i + k]).unwrap();
        i += k;
        while let Some(e) = sess.poll_event() {
            if let Event::PublishRequest { stream_id, .. } = e {
                // Fails when the publish already ended within this feed.
                let _ = sess.accept_publish(stream_id);
            }
            evs.push(e);
        }
        replies.extend(peer.drain(&mut sess).into_iter().filter(|m| m.type_id != 3));
    }
    (evs, replies)
}

#[test]
fn any_split_gives_the_same_session() {
    let input = full_client_stream();
    let (want_events, want_replies) = run(&input, &mut || 1);
    let kinds: Vec<&str> = want_events
        .iter()
        .map(|e| match e {
            Event::Connect { .. } => "connect",
            Event::PublishRequest { .. } => "publish",
            Event::Unpublish { .. } => "unpublish",
            Event::Metadata { .. } => "meta",
            Event::Data { .. } => "data",
            Event::Audio { .. } => "a",
            Event::Video { .. } => "v",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "connect",
            "publish",
            "meta",
            "v",
            "a",
            "v",
            "a",
            "v",
            "a",
            "v",
            "a",
            "v",
            "a",
            "v",
            "a",
            "v",
            "unpublish"
        ]
    );
    // The interleaved pair: audio completes first, relative timestamps.
    assert!(matches!(
        want_events[14],
        Event::Audio {
            timestamp_ms: 292,
            ..
        }
    ));
    assert!(matches!(
        want_events[15],
        Event::Video {
            timestamp_ms: 232,
            ..
        }
    ));
    assert_eq!(want_replies.len(), 3 + 3 + 2); // connect, 3 results, publish
                                               // All at once: the publish ends before the driver can accept it, so
                                               // there is no reply to it, but the events are the same.
    let whole = run(&input, &mut || usize::MAX);
    assert_eq!(whole.0, want_events);
    assert_eq!(whole.1[..], want_replies[..6]);
    let mut rng = Rng::new(42);
    for _ in 0..30 {
        let got = run(&input, &mut || 1 + rng.below(700));
        assert_eq!(got.0, want_events);
        // Replies keep their order; only their split into outputs varies.
        assert_eq!(got.1, want_replies);
    }
}

#[test]
fn split_at_every_offset() {
    let input = full_client_stream();
    let (want, _) = run(&input, &mut || usize::MAX);
    for cut in 1..input.len() {
        let mut first = true;
        let got = run(&input, &mut || {
            if std::mem::take(&mut first) {
                cut
            } else {
                usize::MAX
            }
        });
        assert_eq!(got.0, want, "cut {cut}");
    }
}

fn publish_pending() -> (ServerSession, Peer, Client) {
    let mut sess = ServerSession::new(SessionConfig::default());
    let mut peer = Peer::new();
    let mut c = Client::new();
    connect(&mut c);
    c.command(0, &[s("createStream"), n(2.0), Amf0Value::Null]);
    c.command(
        1,
        &[s("publish"), n(3.0), Amf0Value::Null, s("bad"), s("live")],
    );
    sess.feed(&c.take()).unwrap();
    peer.drain(&mut sess);
    let evs = events(&mut sess);
    assert!(matches!(evs.last(), Some(Event::PublishRequest { .. })));
    (sess, peer, c)
}

#[test]
fn reject_publish() {
    let (mut sess, mut peer, mut c) = publish_pending();
    sess.reject_publish(1, "Unknown stream key.").unwrap();
    assert_eq!(
        sess.reject_publish(1, "again"),
        Err(RtmpError::NotPending(1))
    );
    let msgs = peer.drain(&mut sess);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].stream_id, 1);
    let st = decode(&msgs[0]);
    assert_eq!(st[0], s("onStatus"));
    assert_eq!(st[3].get("level"), Some(&s("error")));
    assert_eq!(st[3].get("code"), Some(&s("NetStream.Publish.BadName")));
    assert_eq!(st[3].get("description"), Some(&s("Unknown stream key.")));
    // Media sent anyway is dropped; no Unpublish for a rejected stream.
    c.media(9, 1, 0, &[0x17, 0, 0, 0, 0]);
    c.command(0, &[s("deleteStream"), n(4.0), Amf0Value::Null, n(1.0)]);
    sess.feed(&c.take()).unwrap();
    assert!(events(&mut sess).is_empty());
    assert_eq!(sess.stats().media_ignored, 1);

    let (mut sess, mut peer, _) = publish_pending();
    sess.reject_publish_with_code(1, "NetStream.Publish.Denied", "No.")
        .unwrap();
    let st = decode(&peer.drain(&mut sess)[0]);
    assert_eq!(st[3].get("code"), Some(&s("NetStream.Publish.Denied")));
}

#[test]
fn status_error_later_stops_events() {
    let (mut sess, mut peer, mut c) = publish_pending();
    sess.accept_publish(1).unwrap();
    peer.drain(&mut sess);
    c.media(9, 1, 0, &[0x27, 0, 0, 0, 0]);
    sess.feed(&c.take()).unwrap();
    assert_eq!(events(&mut sess).len(), 1);
    sess.send_status_error(1, "NetStream.Publish.Failed", "H.263 is not supported.")
        .unwrap();
    let st = decode(&peer.drain(&mut sess)[0]);
    assert_eq!(st[3].get("code"), Some(&s("NetStream.Publish.Failed")));
    c.media(9, 1, 40, &[0x27, 0, 0, 0, 0]);
    sess.feed(&c.take()).unwrap();
    assert!(events(&mut sess).is_empty());
    assert_eq!(
        sess.send_status_error(9, "x", "y"),
        Err(RtmpError::UnknownStream(9))
    );
}

#[test]
fn media_before_accept_is_queued_behind_the_request() {
    let mut sess = ServerSession::new(SessionConfig::default());
    let mut c = Client::new();
    connect(&mut c);
    c.command(0, &[s("createStream"), n(2.0), Amf0Value::Null]);
    c.command(1, &[s("publish"), n(3.0), Amf0Value::Null, s("k")]);
    c.media(8, 1, 5, &[0xaf, 1, 0]);
    sess.feed(&c.take()).unwrap();
    let evs = events(&mut sess);
    assert!(matches!(
        &evs[1],
        Event::PublishRequest { publish_type, .. } if publish_type == "live"
    ));
    assert!(matches!(
        evs[2],
        Event::Audio {
            timestamp_ms: 5,
            ..
        }
    ));
}

#[test]
fn protocol_errors() {
    // Command before connect.
    let mut sess = ServerSession::new(SessionConfig::default());
    let mut c = Client::new();
    c.command(0, &[s("createStream"), n(2.0), Amf0Value::Null]);
    assert_eq!(
        sess.feed(&c.take()),
        Err(RtmpError::CommandBeforeConnect("createStream".into()))
    );
    assert_eq!(sess.feed(&[0]), Err(RtmpError::Failed));

    // Wrong version.
    let mut sess = ServerSession::new(SessionConfig::default());
    assert!(matches!(
        sess.feed(&[6]),
        Err(RtmpError::Handshake(HandshakeError::UnsupportedVersion(6)))
    ));

    // A command that is not AMF0.
    let mut sess = ServerSession::new(SessionConfig::default());
    let mut c = Client::new();
    c.w.write(&mut c.out, 3, 0, 20, 0, &[0x42, 1]).unwrap();
    assert!(matches!(
        sess.feed(&c.take()),
        Err(RtmpError::Command(Amf0Error::UnknownMarker(0x42)))
    ));

    // A command whose first value is not a string.
    let mut sess = ServerSession::new(SessionConfig::default());
    let mut c = Client::new();
    c.command(0, &[n(1.0)]);
    assert_eq!(sess.feed(&c.take()), Err(RtmpError::CommandWithoutName));

    // Too many streams.
    let mut sess = ServerSession::new(SessionConfig {
        max_streams: 2,
        ..SessionConfig::default()
    });
    let mut c = Client::new();
    connect(&mut c);
    for tid in 2..5 {
        c.command(0, &[s("createStream"), n(f64::from(tid)), Amf0Value::Null]);
    }
    assert_eq!(sess.feed(&c.take()), Err(RtmpError::TooManyStreams(2)));

    // A message over the limit.
    let mut sess = ServerSession::new(SessionConfig {
        max_message_len: 1000,
        ..SessionConfig::default()
    });
    let mut c = Client::new();
    c.media(9, 1, 0, &[0; 1001]);
    assert!(matches!(
        sess.feed(&c.take()),
        Err(RtmpError::Chunk(ChunkError::MessageTooLarge { .. }))
    ));
}

#[test]
fn unknown_commands_and_bad_publishes_get_answers() {
    let mut sess = ServerSession::new(SessionConfig::default());
    let mut peer = Peer::new();
    let mut c = Client::new();
    connect(&mut c);
    c.command(0, &[s("_checkbw"), n(2.0), Amf0Value::Null]);
    c.command(0, &[s("somethingElse"), n(0.0), Amf0Value::Null]);
    c.command(0, &[s("onBWDone"), n(0.0), Amf0Value::Null]);
    c.command(0, &[s("publish"), n(0.0), Amf0Value::Null, s("k")]);
    c.command(1, &[s("publish"), n(0.0), Amf0Value::Null]);
    c.command(1, &[s("play"), n(0.0), Amf0Value::Null, s("k")]);
    sess.feed(&c.take()).unwrap();
    let msgs = peer.drain(&mut sess);
    let replies: Vec<Vec<Amf0Value>> = msgs.iter().skip(3).map(decode).collect();
    assert_eq!(replies.len(), 4);
    assert_eq!(replies[0][0], s("_error"));
    assert_eq!(replies[0][1], n(2.0));
    assert_eq!(
        replies[0][3].get("code"),
        Some(&s("NetConnection.Call.Failed"))
    );
    for r in &replies[1..3] {
        assert_eq!(r[3].get("code"), Some(&s("NetStream.Publish.BadName")));
    }
    assert_eq!(replies[3][3].get("code"), Some(&s("NetStream.Play.Failed")));
    assert_eq!(sess.stats().unknown_commands, 2);
    assert_eq!(events(&mut sess).len(), 1); // connect only

    // Publishing twice on one stream.
    let (mut sess, mut peer, mut c) = publish_pending();
    c.command(1, &[s("publish"), n(0.0), Amf0Value::Null, s("again")]);
    sess.feed(&c.take()).unwrap();
    let st = decode(&peer.drain(&mut sess)[0]);
    assert_eq!(
        st[3].get("description"),
        Some(&s("The stream is already publishing."))
    );
    assert!(events(&mut sess).is_empty());
}

#[test]
fn amf3_commands_aggregates_and_data() {
    let (mut sess, mut peer, mut c) = publish_pending();
    sess.accept_publish(1).unwrap();
    peer.drain(&mut sess);
    // An AMF3 command message (format byte 0, then AMF0).
    let mut p = vec![0];
    p.extend(amf0::encode_all(&[
        s("FCPublish"),
        n(9.0),
        Amf0Value::Null,
        s("x"),
    ]));
    c.w.write(&mut c.out, 3, 0, 17, 0, &p).unwrap();
    // An aggregate of an audio and a video tag, tag times 1000 and 1040, at
    // message time 500.
    let mut agg = Vec::new();
    for (t, ts, body) in [
        (8u8, 1000u32, &[0xaf, 1, 7][..]),
        (9, 1040, &[0x27, 1, 0, 0, 0]),
    ] {
        agg.push(t);
        agg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        agg.extend_from_slice(&ts.to_be_bytes()[1..]);
        agg.push((ts >> 24) as u8);
        agg.extend_from_slice(&[0, 0, 0]);
        agg.extend_from_slice(body);
        agg.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
    }
    c.w.write(&mut c.out, 6, 500, 22, 1, &agg).unwrap();
    // onMetaData without @setDataFrame, another data message, broken data.
    c.data(1, &[s("onMetaData"), Amf0Value::object([("a", n(1.0))])]);
    c.data(1, &[s("onTextData"), s("hi")]);
    c.w.write(&mut c.out, 4, 0, 18, 1, &[0x02, 0x00]).unwrap();
    sess.feed(&c.take()).unwrap();
    let msgs = peer.drain(&mut sess);
    assert_eq!(decode(&msgs[0])[..2], [s("_result"), n(9.0)]);
    assert_eq!(
        events(&mut sess),
        vec![
            Event::Audio {
                stream_id: 1,
                timestamp_ms: 500,
                data: vec![0xaf, 1, 7]
            },
            Event::Video {
                stream_id: 1,
                timestamp_ms: 540,
                data: vec![0x27, 1, 0, 0, 0]
            },
            Event::Metadata {
                stream_id: 1,
                values: vec![Amf0Value::object([("a", n(1.0))])]
            },
            Event::Data {
                stream_id: 1,
                name: "onTextData".into(),
                values: vec![s("hi")]
            },
        ]
    );
    assert_eq!(sess.stats().data_ignored, 1);
}

#[test]
fn timestamps_extend_across_wraparound() {
    let mut t = TimestampExtender::default();
    assert_eq!(t.extend(u32::MAX - 10), u64::from(u32::MAX - 10));
    assert_eq!(t.extend(5), (1 << 32) + 5);
    assert_eq!(t.extend(u32::MAX - 20), u64::from(u32::MAX - 20)); // late
    assert_eq!(t.extend(3), (1 << 32) + 3); // slightly backwards
    assert_eq!(t.extend(100), (1 << 32) + 100);
}

#[test]
fn ping_and_output_accounting() {
    let mut sess = ServerSession::new(SessionConfig::default());
    let mut peer = Peer::new();
    let mut c = Client::new();
    connect(&mut c);
    sess.feed(&c.take()).unwrap();
    peer.drain(&mut sess);
    sess.send_ping(77).unwrap();
    let out = sess.poll_output().unwrap();
    let total = sess.stats().bytes_out;
    assert_eq!(peer.push(&out)[0].payload, [0, 6, 0, 0, 0, 77]);
    assert!(total > 3073);
    assert!(sess.poll_output().is_none());
}

#[test]
fn fuzz_never_panics() {
    let input = full_client_stream();
    let mut rng = Rng::new(99);
    let hs = 1 + 2 * HANDSHAKE_SIZE;
    let drive = |bytes: &[u8], rng: &mut Rng| {
        let mut sess = ServerSession::new(SessionConfig {
            max_message_len: 64 * 1024,
            ..SessionConfig::default()
        });
        let mut i = 0;
        while i < bytes.len() {
            let k = (1 + rng.below(400)).min(bytes.len() - i);
            let r = sess.feed(&bytes[i..i + k]);
            i += k;
            while let Some(e) = sess.poll_event() {
                if let Event::PublishRequest { stream_id, .. } = e {
                    let _ = sess.accept_publish(stream_id);
                }
            }
            let _ = sess.poll_output();
            if r.is_err() {
                break;
            }
        }
    };
    // Truncations.
    for cut in (0..input.len()).step_by(13) {
        drive(&input[..cut], &mut rng);
    }
    // Mutations after the handshake.
    for _ in 0..400 {
        let mut b = input.clone();
        for _ in 0..1 + rng.below(8) {
            let i = hs + rng.below(b.len() - hs);
            b[i] = rng.byte();
        }
        drive(&b, &mut rng);
    }
    // Random bytes after a valid handshake.
    for _ in 0..400 {
        let mut b = input[..hs].to_vec();
        let n = rng.below(2000);
        b.extend((0..n).map(|_| rng.byte()));
        drive(&b, &mut rng);
    }
}
