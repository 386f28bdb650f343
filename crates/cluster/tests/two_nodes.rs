//! Two (and three) nodes in one process, linked over loopback TCP: presence,
//! room shares, media, feedback, departures and credentials.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mediamesh_cluster::{
    keys, ChannelId, Cluster, ClusterConfig, ClusterEvent, Feedback, Kind, RoomShare, SharedPeer,
    SharedTrack, ViewEvent,
};
use mediamesh_core::{Codec, MediaKind, MediaPacket};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn config(node: &str, listen: Option<u16>, connect: Option<u16>, secret: &str) -> ClusterConfig {
    let mut c = ClusterConfig::standalone(node);
    c.listen = listen
        .map(|p| vec![format!("tcp/127.0.0.1:{p}")])
        .unwrap_or_default();
    c.connect = connect
        .map(|p| vec![format!("tcp/127.0.0.1:{p}")])
        .unwrap_or_default();
    c.secret = Some(secret.into());
    c.lease = Duration::from_millis(1000);
    c.debounce = Duration::from_millis(300);
    c
}

/// The next event that `pick` accepts, within `secs`; others are skipped
/// (timeouts of the view are served meanwhile).
async fn expect<T>(
    c: &mut Cluster,
    secs: u64,
    what: &str,
    mut pick: impl FnMut(ClusterEvent) -> Option<T>,
) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let now = Instant::now();
        assert!(now < end, "{}: timed out waiting for {what}", c.node());
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        let wait = c
            .poll_timeout()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(100))
            .min(end - now)
            .max(Duration::from_millis(1));
        if let Ok(e) = tokio::time::timeout(wait, c.next()).await {
            if let Some(t) = pick(e) {
                return t;
            }
        }
    }
}

fn share(peer: &str, channel: u64) -> RoomShare {
    RoomShare {
        app: "app".into(),
        room: "room".into(),
        node: String::new(),
        incarnation: 0,
        version: 0,
        peers: vec![SharedPeer {
            name: peer.into(),
            metadata: None,
            announce_peer: true,
            announce_tracks: true,
            tracks: vec![SharedTrack {
                name: "audio".into(),
                kind: Kind::Audio,
                metadata: None,
                channel,
                gop_cached: false,
            }],
        }],
    }
}

fn opus(seq: u64) -> MediaPacket {
    MediaPacket {
        codec: Codec::Opus,
        seq,
        timestamp: seq as u32 * 960,
        marker: false,
        keyframe: false,
        audio_level: Some(-20),
        dependency_descriptor: None,
        arrival: Instant::now(),
        payload: Arc::from(vec![seq as u8; 80]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_media_and_feedback_cross_two_nodes_and_vanish_with_the_node() {
    let port = free_port();
    let mut a = Cluster::join(&config("a", Some(port), None, "s3cret"), 1).unwrap();
    let mut b = Cluster::join(&config("b", None, Some(port), "s3cret"), 1).unwrap();
    let room = keys::room_key("app", "room");

    expect(&mut b, 10, "a up", |e| {
        matches!(e, ClusterEvent::View(ViewEvent::NodeUp(ref n)) if n.node == "a").then_some(())
    })
    .await;
    b.watch_room(&room).unwrap();
    a.open_channel(1, MediaKind::Audio).unwrap();
    a.share_room(&room, share("alice", 1)).unwrap();
    let got = expect(&mut b, 10, "a's share", |e| match e {
        ClusterEvent::View(ViewEvent::Share {
            node,
            share: Some(s),
            ..
        }) if node == "a" => Some(s),
        _ => None,
    })
    .await;
    assert_eq!(got.peers[0].name, "alice");
    assert_eq!(got.incarnation, 1);

    // B subscribes; A sees a match and sends; B gets the packets in order.
    let ch = ChannelId {
        node: "a".into(),
        incarnation: 1,
        channel: 1,
    };
    b.subscribe(&ch).unwrap();
    let mut next = 0u64;
    let end = Instant::now() + Duration::from_secs(10);
    let mut seqs = Vec::new();
    while seqs.len() < 20 {
        assert!(Instant::now() < end, "media did not arrive: {seqs:?}");
        a.send_media(1, 0, &opus(next));
        next += 1;
        while let Ok(e) = tokio::time::timeout(Duration::from_millis(20), b.next()).await {
            if let ClusterEvent::Media {
                channel, packet, ..
            } = e
            {
                assert_eq!(channel, ch);
                assert_eq!(packet.audio_level, Some(-20));
                seqs.push(packet.seq);
            }
        }
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(b.counters().packets_in, seqs.len() as u64);
    assert!(a.counters().packets_out >= seqs.len() as u64);

    // Feedback travels back, tagged with its sender.
    b.send_feedback(&ch, &Feedback::Keyframe { stream: Some(1) });
    let (channel, from, fb) = expect(&mut a, 10, "feedback", |e| match e {
        ClusterEvent::Feedback {
            channel,
            from,
            feedback,
        } => Some((channel, from, feedback)),
        _ => None,
    })
    .await;
    assert_eq!(
        (channel, from.as_str(), fb),
        (1, "b", Feedback::Keyframe { stream: Some(1) })
    );

    // A leaves: B withdraws alice's share, then A is down.
    a.leave();
    let t = Instant::now();
    expect(&mut b, 10, "share withdrawn", |e| {
        matches!(e, ClusterEvent::View(ViewEvent::Share { share: None, .. })).then_some(())
    })
    .await;
    expect(&mut b, 10, "a down", |e| {
        matches!(e, ClusterEvent::View(ViewEvent::NodeDown(ref n)) if n.node == "a").then_some(())
    })
    .await;
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(b.nodes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_secret_cannot_join() {
    let port = free_port();
    let mut a = Cluster::join(&config("a2", Some(port), None, "right"), 1).unwrap();
    let mut c = Cluster::join(&config("c2", None, Some(port), "wrong"), 1).unwrap();
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        tokio::select! {
            e = a.next() => assert!(!matches!(e, ClusterEvent::View(ViewEvent::NodeUp(_))), "a saw {e:?}"),
            e = c.next() => assert!(!matches!(e, ClusterEvent::View(ViewEvent::NodeUp(_))), "c saw {e:?}"),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    assert!(a.nodes().is_empty() && c.nodes().is_empty());
    // The right secret joins.
    let mut d = Cluster::join(&config("d2", None, Some(port), "right"), 1).unwrap();
    expect(&mut d, 10, "a2 up", |e| {
        matches!(e, ClusterEvent::View(ViewEvent::NodeUp(ref n)) if n.node == "a2").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_forwards_to_a_node_with_no_direct_link() {
    // A <- B <- C: C reaches A only through B.
    let pa = free_port();
    let pb = free_port();
    let a = Cluster::join(&config("a3", Some(pa), None, "k"), 1).unwrap();
    let mut cb = config("b3", Some(pb), Some(pa), "k");
    cb.listen = vec![format!("tcp/127.0.0.1:{pb}")];
    let _b = Cluster::join(&cb, 1).unwrap();
    let mut c = Cluster::join(&config("c3", None, Some(pb), "k"), 1).unwrap();
    expect(&mut c, 10, "a3 up", |e| {
        matches!(e, ClusterEvent::View(ViewEvent::NodeUp(ref n)) if n.node == "a3").then_some(())
    })
    .await;
    let mut a = a;
    a.open_channel(5, MediaKind::Audio).unwrap();
    let ch = ChannelId {
        node: "a3".into(),
        incarnation: 1,
        channel: 5,
    };
    c.subscribe(&ch).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    let mut seq = 0;
    while n < 5 {
        assert!(Instant::now() < end, "no media through the relay");
        a.send_media(5, 0, &opus(seq));
        seq += 1;
        while let Ok(e) = tokio::time::timeout(Duration::from_millis(20), c.next()).await {
            if matches!(e, ClusterEvent::Media { .. }) {
                n += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reopen_with_rtt_weights_feedback_and_media_still_flow() {
    let port = free_port();
    // A first run of a4 that b reopens for, then a4 restarted.
    let mut a = Cluster::join(&config("a4", Some(port), None, "k"), 1).unwrap();
    let mut cb = config("b4", None, Some(port), "k");
    cb.rtt_weights = true;
    let mut b = Cluster::join(&cb, 1).unwrap();
    a.open_channel(9, MediaKind::Audio).unwrap();
    // b measured its link to a before its first session: it runs with a weight.
    let end = Instant::now() + Duration::from_secs(15);
    while b.link_weights().is_empty() {
        assert!(Instant::now() < end, "b never applied a link weight");
        let now = Instant::now();
        if b.poll_timeout().is_some_and(|t| t <= now) {
            b.handle_timeout(now);
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), b.next()).await;
    }
    a.leave();
    let mut a = Cluster::join(&config("a4", Some(port), None, "k"), 2).unwrap();
    a.open_channel(9, MediaKind::Audio).unwrap();
    // b learns the new run's id and reopens again.
    let end = Instant::now() + Duration::from_secs(20);
    let mut reopened = false;
    while !reopened {
        assert!(Instant::now() < end, "b did not reopen for a4's new run");
        let now = Instant::now();
        if b.poll_timeout().is_some_and(|t| t <= now) {
            b.handle_timeout(now);
        }
        if let Ok(ClusterEvent::View(ViewEvent::NodeUp(n))) =
            tokio::time::timeout(Duration::from_millis(50), b.next()).await
        {
            assert_eq!(n.incarnation, 2);
        }
        reopened = b.generation() >= 1;
    }
    let ch = ChannelId {
        node: "a4".into(),
        incarnation: 2,
        channel: 9,
    };
    b.subscribe(&ch).unwrap();
    // Feedback b -> a.
    let end = Instant::now() + Duration::from_secs(10);
    let mut got_feedback = false;
    let mut got_media = false;
    let mut seq = 0;
    while !(got_feedback && got_media) {
        assert!(
            Instant::now() < end,
            "after the reopen: feedback {got_feedback}, media {got_media}"
        );
        b.send_feedback(&ch, &Feedback::Keyframe { stream: None });
        a.send_media(9, 0, &opus(seq));
        seq += 1;
        if let Ok(ClusterEvent::Feedback { .. }) =
            tokio::time::timeout(Duration::from_millis(20), a.next()).await
        {
            got_feedback = true;
        }
        if let Ok(ClusterEvent::Media { .. }) =
            tokio::time::timeout(Duration::from_millis(20), b.next()).await
        {
            got_media = true;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_answered_by_the_named_node_and_loads_vanish_with_it() {
    use mediamesh_cluster::{CallError, LoadLimits, NodeLoad};
    let port = free_port();
    let mut a = Cluster::join(&config("a", Some(port), None, "s3cret"), 1).unwrap();
    let mut b = Cluster::join(&config("b", None, Some(port), "s3cret"), 1).unwrap();
    a.watch_loads().unwrap();
    expect(&mut a, 10, "b up", |e| {
        matches!(e, ClusterEvent::View(ViewEvent::NodeUp(ref n)) if n.node == "b").then_some(())
    })
    .await;

    // A calls B; B's worker sees the call and answers it.
    let (tx, rx) = tokio::sync::oneshot::channel();
    a.call("b", b"ping".to_vec(), Duration::from_secs(5), tx);
    let call = expect(&mut b, 10, "a's call", |e| match e {
        ClusterEvent::Call(c) => Some(c),
        _ => None,
    })
    .await;
    assert_eq!(call.payload(), b"ping");
    call.reply(b"pong".to_vec());
    let answer = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("an answer in time")
        .expect("the callback ran");
    assert_eq!(answer, Ok(b"pong".to_vec()));

    // A call nobody can answer ends at once (no queryable), not at the timeout.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let t0 = Instant::now();
    a.call("nobody", b"x".to_vec(), Duration::from_secs(5), tx);
    let answer = tokio::time::timeout(Duration::from_secs(6), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, Err(CallError::NoAnswer("nobody".into())));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

    // A call that B drops unanswered ends too.
    let (tx, rx) = tokio::sync::oneshot::channel();
    a.call("b", b"ignored".to_vec(), Duration::from_millis(800), tx);
    let call = expect(&mut b, 10, "a's second call", |e| match e {
        ClusterEvent::Call(c) => Some(c),
        _ => None,
    })
    .await;
    drop(call);
    let answer = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .unwrap()
        .unwrap();
    assert!(answer.is_err(), "{answer:?}");

    // B's load reports reach A (which watches them) and go with B.
    let load = NodeLoad {
        sessions: 3,
        cpu: 0.25,
        bitrate: 1_000_000,
        limits: LoadLimits {
            sessions: Some(10),
            ..Default::default()
        },
        location: Some((50.1, 8.7)),
        draining: false,
    };
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        b.report_load(&load);
        let _ = tokio::time::timeout(Duration::from_millis(100), a.next()).await;
        let seen = a.loads(Instant::now());
        if let Some(r) = seen.first() {
            assert_eq!((r.node.as_str(), r.zone.as_str()), ("b", "default"));
            assert_eq!(r.load, load);
            break;
        }
        assert!(Instant::now() < end, "no load report from b");
    }
    assert!(a.is_up("b"));
    b.leave();
    expect(&mut a, 10, "b down", |e| {
        matches!(e, ClusterEvent::View(ViewEvent::NodeDown(ref n)) if n.node == "b").then_some(())
    })
    .await;
    assert!(!a.is_up("b"));
    assert!(a.loads(Instant::now()).is_empty());
    a.leave();
}
