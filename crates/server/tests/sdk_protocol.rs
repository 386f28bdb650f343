//! The SDK protocol against a node in this process, driven by a str0m client
//! (a real WebRTC connection with the pre-negotiated control channel): every
//! kind of bad request gets a protobuf error response, and the session keeps
//! answering.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use mediamesh::config::Config;
use mediamesh::node::Node;
use mediamesh_protocol::session::{self as proto, request, response, server_event};
use mediamesh_protocol::{gateway, shared, Message};
use str0m::change::SdpAnswer;
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SECRET: &str = "sdk-protocol-test";

fn node() -> Node {
    Node::start(Config {
        http_listen: "127.0.0.1:0".parse().unwrap(),
        media_listen: "127.0.0.1:0".parse().unwrap(),
        rtmp_listen: None,
        sip: None,
        public_addr: "127.0.0.1:0".parse().unwrap(),
        secret: SECRET.into(),
        app_id: "app".into(),
        demo_tokens: false,
        cluster: mediamesh::cluster::ClusterConfig::standalone("sdk-protocol-test"),
        load: Default::default(),
        geoip_db: None,
        trusted_proxies: Vec::new(),
    })
    .unwrap()
}

fn http(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&out[..split])
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (status, out[split + 4..].to_vec())
}

fn token(addr: SocketAddr, room: &str, peer: &str) -> String {
    let body = format!(r#"{{"room":"{room}","peer":"{peer}","ttl":600}}"#);
    let auth = format!("Bearer {SECRET}");
    let (status, body) = http(
        addr,
        "/token/webrtc",
        &[("Authorization", &auth)],
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["data"]["token"].as_str().unwrap().to_owned()
}

/// A client with a sender `audio_main`, a receiver `video_0` and the
/// control channel.
struct Client {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    channel: ChannelId,
    open: bool,
    seq: u32,
    events: Vec<proto::ServerEvent>,
}

impl Client {
    fn connect(node: &Node, room: &str, peer: &str, join_room: &str) -> Result<Client, u16> {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let local = socket.local_addr().unwrap();
        let mut rtc = Rtc::builder().build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let channel = api.add_channel_with_config(ChannelConfig {
            label: "data".into(),
            negotiated: Some(0),
            ..Default::default()
        });
        let (offer, pending) = api.apply().unwrap();
        let request = gateway::ConnectRequest {
            version: "mediamesh-test".into(),
            join: Some(proto::RoomJoin {
                room: join_room.into(),
                peer: peer.into(),
                publish: Some(shared::RoomInfoPublish {
                    peer: true,
                    tracks: true,
                }),
                subscribe: Some(shared::RoomInfoSubscribe {
                    peers: true,
                    tracks: true,
                }),
                features: None,
                metadata: None,
            }),
            tracks: Some(shared::Tracks {
                senders: vec![shared::Sender {
                    kind: shared::Kind::Audio as i32,
                    name: "audio_main".into(),
                    state: Some(shared::sender::State {
                        config: Some(shared::sender::Config {
                            priority: 1,
                            bitrate: 0,
                        }),
                        source: Some(shared::sender::Source {
                            id: "mic".into(),
                            screen: false,
                            metadata: None,
                        }),
                    }),
                }],
                receivers: vec![shared::Receiver {
                    kind: shared::Kind::Video as i32,
                    name: "video_0".into(),
                    state: None,
                }],
            }),
            sdp: offer.to_sdp_string(),
        };
        let auth = format!("Bearer {}", token(node.http_addr, room, peer));
        let (status, body) = http(
            node.http_addr,
            "/webrtc/connect",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/grpc"),
            ],
            &request.encode_to_vec(),
        );
        if status != 200 {
            return Err(status);
        }
        let reply = gateway::ConnectResponse::decode(body.as_slice()).unwrap();
        // `{node}.{worker}.{32 hex}`: the node that holds the session.
        let (node, nonce) = reply
            .conn_id
            .rsplit_once('.')
            .and_then(|(rest, nonce)| Some((rest.rsplit_once('.')?.0, nonce)))
            .unwrap();
        assert_eq!((node, nonce.len()), ("sdk-protocol-test", 32));
        let answer = SdpAnswer::from_sdp_string(&reply.sdp).unwrap();
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        let mut c = Client {
            rtc,
            socket,
            local,
            channel,
            open: false,
            seq: 0,
            events: Vec::new(),
        };
        c.run_until(|c| c.open, "the control channel to open");
        Ok(c)
    }

    /// Drives the connection until `done` or 10 s.
    fn run_until(&mut self, done: impl Fn(&Client) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 2000];
        loop {
            let timeout = loop {
                match self.rtc.poll_output().unwrap() {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                    Output::Event(Event::ChannelOpen(id, _)) if id == self.channel => {
                        self.open = true
                    }
                    Output::Event(Event::ChannelData(d)) if d.id == self.channel => {
                        self.events
                            .push(proto::ServerEvent::decode(d.data.as_slice()).unwrap());
                    }
                    Output::Event(_) => {}
                }
            };
            if done(self) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let input = Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source: from,
                            destination: self.local,
                            contents: buf[..n].try_into().unwrap(),
                        },
                    );
                    self.rtc.handle_input(input).unwrap();
                }
                Err(_) => {
                    let wait = timeout
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(5));
                    std::thread::sleep(wait);
                    self.rtc
                        .handle_input(Input::Timeout(Instant::now()))
                        .unwrap();
                }
            }
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let mut ch = self.rtc.channel(self.channel).unwrap();
        ch.write(true, bytes).unwrap();
    }

    /// Sends a request and returns its response body.
    fn request(&mut self, group: request::Group) -> response::Body {
        self.send_request(Some(group))
    }

    fn send_request(&mut self, group: Option<request::Group>) -> response::Body {
        self.seq += 1;
        let req_id = self.seq;
        let event = proto::ClientEvent {
            seq: req_id,
            event: Some(proto::client_event::Event::Request(proto::Request {
                req_id,
                group,
            })),
        };
        self.send_raw(&event.encode_to_vec());
        let has = |c: &Client| {
            c.events.iter().any(|e| matches!(&e.event, Some(server_event::Event::Response(r)) if r.req_id == req_id))
        };
        self.run_until(has, "a response");
        self.events
            .iter()
            .find_map(|e| match &e.event {
                Some(server_event::Event::Response(r)) if r.req_id == req_id => r.body.clone(),
                _ => None,
            })
            .expect("response has a body")
    }
}

fn error_code(body: &response::Body) -> Option<u32> {
    match body {
        response::Body::Error(e) => Some(e.code),
        _ => None,
    }
}

fn receiver(name: &str, action: request::receiver::Action) -> request::Group {
    request::Group::Receiver(request::Receiver {
        name: name.into(),
        action: Some(action),
    })
}

fn attach(peer: &str, track: &str) -> request::receiver::Action {
    request::receiver::Action::Attach(request::receiver::Attach {
        source: Some(shared::receiver::Source {
            peer: peer.into(),
            track: track.into(),
        }),
        config: None,
    })
}

#[test]
fn bad_requests_get_error_responses_and_the_session_goes_on() {
    let node = node();
    let mut c = Client::connect(&node, "r", "alice", "r").unwrap();

    // Unknown receiver name.
    let b = c.request(receiver("nope", attach("bob", "video_main")));
    assert_eq!(error_code(&b), Some(404), "{b:?}");
    // A request without a group, and one without an action.
    let b = c.send_request(None);
    assert_eq!(error_code(&b), Some(400), "{b:?}");
    let b = c.request(request::Group::Receiver(request::Receiver {
        name: "video_0".into(),
        action: None,
    }));
    assert_eq!(error_code(&b), Some(400), "{b:?}");
    // Bytes that are no protobuf at all are dropped without a word...
    c.send_raw(&[0xff, 0xff, 0xff, 0x0f]);
    // ... and the next request is still served.
    let b = c.request(receiver("video_0", attach("bob", "video_main")));
    assert!(matches!(b, response::Body::Receiver(_)), "{b:?}");
    let b = c.request(request::Group::Receiver(request::Receiver {
        name: "video_0".into(),
        action: Some(request::receiver::Action::Config(
            shared::receiver::Config {
                priority: 2,
                max_spatial: 2,
                max_temporal: 2,
                min_spatial: None,
                min_temporal: None,
            },
        )),
    }));
    assert!(matches!(b, response::Body::Receiver(_)), "{b:?}");
    // Manual mode requests are served (they crash atm0s v0.2).
    let b = c.request(request::Group::Room(request::Room {
        action: Some(request::room::Action::Subscribe(
            request::room::SubscribePeer { peer: "bob".into() },
        )),
    }));
    assert!(matches!(b, response::Body::Room(_)), "{b:?}");
    // A features request without a feature, and a mixer request without a mixer.
    let b = c.request(request::Group::Features(Default::default()));
    assert_eq!(error_code(&b), Some(400), "{b:?}");
    let b = c.request(request::Group::Features(
        mediamesh_protocol::features::Request {
            feature: Some(mediamesh_protocol::features::request::Feature::Mixer(
                mediamesh_protocol::features::mixer::Request {
                    action: Some(
                        mediamesh_protocol::features::mixer::request::Action::Attach(
                            Default::default(),
                        ),
                    ),
                },
            )),
        },
    ));
    assert_eq!(error_code(&b), Some(409), "{b:?}");
    // Sender detach of an unknown sender, then of ours.
    let b = c.request(request::Group::Sender(request::Sender {
        name: "ghost".into(),
        action: Some(request::sender::Action::Detach(request::sender::Detach {})),
    }));
    assert_eq!(error_code(&b), Some(404), "{b:?}");
    let b = c.request(request::Group::Sender(request::Sender {
        name: "audio_main".into(),
        action: Some(request::sender::Action::Detach(request::sender::Detach {})),
    }));
    assert!(matches!(b, response::Body::Sender(_)), "{b:?}");
    // A join with a token for another room is refused.
    let other = token(node.http_addr, "elsewhere", "alice");
    let b = c.request(request::Group::Session(request::Session {
        action: Some(request::session::Action::Join(request::session::Join {
            info: Some(proto::RoomJoin {
                room: "r2".into(),
                peer: "alice".into(),
                ..Default::default()
            }),
            token: other,
        })),
    }));
    assert_eq!(error_code(&b), Some(403), "{b:?}");
    // After leaving, receiver requests need a join first.
    let b = c.request(request::Group::Session(request::Session {
        action: Some(request::session::Action::Leave(request::session::Leave {})),
    }));
    assert!(matches!(b, response::Body::Session(_)), "{b:?}");
    let b = c.request(receiver("video_0", attach("bob", "video_main")));
    assert_eq!(error_code(&b), Some(409), "{b:?}");
    let b = c.request(request::Group::Session(request::Session {
        action: Some(request::session::Action::Disconnect(
            request::session::Disconnect {},
        )),
    }));
    assert!(matches!(b, response::Body::Session(_)), "{b:?}");
    node.shutdown().unwrap();
}

#[test]
fn peers_see_each_other_and_connect_checks_the_join() {
    let node = node();
    // A token for room `r` cannot join room `x`.
    assert_eq!(Client::connect(&node, "r", "mallory", "x").err(), Some(403));
    let mut alice = Client::connect(&node, "r", "alice", "r").unwrap();
    let _bob = Client::connect(&node, "r", "bob", "r").unwrap();
    let saw = |c: &Client| {
        let mut joined = false;
        let mut started = false;
        for e in &c.events {
            if let Some(server_event::Event::Room(r)) = &e.event {
                match &r.event {
                    Some(server_event::room::Event::PeerJoined(p)) if p.peer == "bob" => {
                        joined = true
                    }
                    Some(server_event::room::Event::TrackStarted(t))
                        if t.peer == "bob" && t.track == "audio_main" =>
                    {
                        started = true
                    }
                    _ => {}
                }
            }
        }
        joined && started
    };
    alice.run_until(saw, "bob's PeerJoined and TrackStarted");
    // Bob connects again (a reloaded tab): the older session leaves the room.
    let _bob2 = Client::connect(&node, "r", "bob", "r").unwrap();
    let count = |c: &Client, leaved: bool| {
        c.events
            .iter()
            .filter(|e| match &e.event {
                Some(server_event::Event::Room(r)) => match &r.event {
                    Some(server_event::room::Event::PeerLeaved(p)) => leaved && p.peer == "bob",
                    Some(server_event::room::Event::PeerJoined(p)) => !leaved && p.peer == "bob",
                    _ => false,
                },
                _ => false,
            })
            .count()
    };
    alice.run_until(
        |c| count(c, true) == 1 && count(c, false) == 2,
        "bob's older session to leave and the newer one to join",
    );
    node.shutdown().unwrap();
}
