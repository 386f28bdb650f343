//! One WHIP publisher or WHEP subscriber: a real WebRTC session (ICE, DTLS,
//! SRTP) on str0m in RTP mode, over its own UDP socket, driven as a task on
//! the benchmark's single thread.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::http::{self, Url};
use crate::media::{MediaConfig, MediaSource, Packet};
use crate::metrics::Metrics;
use crate::BenchError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publish,
    Subscribe,
}

#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub id: u64,
    pub role: Role,
    /// The WHIP or WHEP endpoint.
    pub endpoint: Url,
    pub token: String,
    pub media: MediaConfig,
    pub epoch: Instant,
}

/// The local address to bind so the server can reach us: the one the
/// kernel would use toward the server.
async fn local_ip_toward(endpoint: &Url) -> Result<IpAddr, BenchError> {
    let server = endpoint.socket_addr().await?;
    let probe = std::net::UdpSocket::bind(if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .map_err(|e| BenchError::Io(format!("udp bind: {e}")))?;
    probe
        .connect(server)
        .map_err(|e| BenchError::Io(format!("udp route to {server}: {e}")))?;
    Ok(probe
        .local_addr()
        .map_err(|e| BenchError::Io(e.to_string()))?
        .ip())
}

/// Runs one session until `stop` turns true, then DELETEs it. Errors are
/// recorded in the metrics, not returned: one failed session must not stop
/// the run.
pub async fn run(spec: ClientSpec, metrics: Rc<RefCell<Metrics>>, stop: watch::Receiver<bool>) {
    metrics.borrow_mut().sessions_started += 1;
    let result = session(&spec, &metrics, stop).await;
    let mut m = metrics.borrow_mut();
    m.sessions_closed += 1;
    if spec.role == Role::Subscribe {
        m.forget(spec.id);
    }
    if let Err(e) = result {
        m.sessions_failed += 1;
        if m.errors.len() < 20 {
            m.errors.push(format!("client {}: {e}", spec.id));
        }
    }
}

struct Negotiated {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    resource: Url,
    audio: Option<(Mid, Pt)>,
    video: Option<(Mid, Pt)>,
    posted_at: Instant,
}

async fn negotiate(spec: &ClientSpec) -> Result<Negotiated, BenchError> {
    let ip = local_ip_toward(&spec.endpoint).await?;
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(|e| BenchError::Io(format!("udp bind: {e}")))?;
    let local = socket
        .local_addr()
        .map_err(|e| BenchError::Io(e.to_string()))?;
    let now = Instant::now();
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(now);
    let cand = Candidate::host(local, "udp").map_err(|e| BenchError::Io(e.to_string()))?;
    rtc.add_local_candidate(cand);
    let dir = match spec.role {
        Role::Publish => Direction::SendOnly,
        Role::Subscribe => Direction::RecvOnly,
    };
    let mut api = rtc.sdp_api();
    let audio_mid = api.add_media(
        MediaKind::Audio,
        dir,
        Some("bench".into()),
        Some("audio".into()),
        None,
    );
    let video_mid = (spec.role == Role::Subscribe || spec.media.video_kbps > 0).then(|| {
        api.add_media(
            MediaKind::Video,
            dir,
            Some("bench".into()),
            Some("video".into()),
            None,
        )
    });
    let Some((offer, pending)) = api.apply() else {
        return Err(BenchError::Webrtc("no offer to make".into()));
    };
    let posted_at = Instant::now();
    let auth = format!("Bearer {}", spec.token);
    let resp = http::request(
        "POST",
        &spec.endpoint,
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &auth),
        ],
        &offer.to_sdp_string(),
    )
    .await?;
    if resp.status != 201 {
        return Err(BenchError::Http(format!(
            "POST {} -> {} {}",
            spec.endpoint,
            resp.status,
            resp.body.trim()
        )));
    }
    let location = resp
        .header("location")
        .ok_or_else(|| BenchError::Http("201 without Location".into()))?;
    let resource = spec.endpoint.join(location)?;
    let answer = SdpAnswer::from_sdp_string(&resp.body)
        .map_err(|e| BenchError::Webrtc(format!("answer: {e}")))?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| BenchError::Webrtc(format!("answer: {e}")))?;
    rtc.handle_input(Input::Timeout(Instant::now()))
        .map_err(|e| BenchError::Webrtc(e.to_string()))?;
    let pt_of = |rtc: &Rtc, mid: Mid, codec: Codec| -> Option<(Mid, Pt)> {
        let remote = rtc.media(mid)?.remote_pts().to_vec();
        rtc.codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == codec && remote.contains(&p.pt()))
            .map(|p| (mid, p.pt()))
    };
    let audio = pt_of(&rtc, audio_mid, Codec::Opus);
    let video = video_mid.and_then(|m| pt_of(&rtc, m, Codec::Vp8));
    Ok(Negotiated {
        rtc,
        socket,
        local,
        resource,
        audio,
        video,
        posted_at,
    })
}

async fn session(
    spec: &ClientSpec,
    metrics: &Rc<RefCell<Metrics>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BenchError> {
    let n = negotiate(spec).await?;
    let Negotiated {
        mut rtc,
        socket,
        local,
        resource,
        audio,
        video,
        posted_at,
    } = n;
    if spec.role == Role::Publish && audio.is_none() && video.is_none() {
        return Err(BenchError::Webrtc(
            "the answer accepted neither Opus nor VP8".into(),
        ));
    }
    let mut source = MediaSource::new(spec.media, spec.epoch, Instant::now(), (spec.id as u32) * 2);
    let mut packets: Vec<Packet> = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut connected = false;
    let mut got_media = false;
    let mut rtc_timeout: Instant;
    let connect_by = Instant::now() + Duration::from_secs(15);
    let result = 'session: loop {
        // Drain str0m: after every input, before the next (it keeps one
        // pending RTP packet).
        loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    rtc_timeout = t;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        connected = true;
                        metrics.borrow_mut().sessions_connected += 1;
                    }
                    Event::RtpPacket(p) => {
                        if !got_media {
                            got_media = true;
                            metrics
                                .borrow_mut()
                                .on_first_packet(p.timestamp.saturating_duration_since(posted_at));
                        }
                        metrics
                            .borrow_mut()
                            .on_received(spec.id, &p.payload, p.timestamp);
                    }
                    Event::KeyframeRequest(_) => {
                        source.request_keyframe();
                        metrics.borrow_mut().keyframe_requests += 1;
                    }
                    _ => {}
                },
                Err(e) => break 'session Err(BenchError::Webrtc(e.to_string())),
            }
            if !rtc.is_alive() {
                break 'session Err(BenchError::Webrtc("connection closed".into()));
            }
        }
        if *stop.borrow() {
            break Ok(());
        }
        if !connected && Instant::now() > connect_by {
            break Err(BenchError::Webrtc("not connected within 15 s".into()));
        }
        let media_due = if connected && spec.role == Role::Publish {
            source.next_due()
        } else {
            rtc_timeout + Duration::from_secs(3600)
        };
        let wake = rtc_timeout.min(media_due);
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                if let Ok((len, source_addr)) = r {
                    let now = Instant::now();
                    if let Ok(contents) = buf[..len].try_into() {
                        let input = Input::Receive(now, Receive {
                            proto: Protocol::Udp,
                            source: source_addr,
                            destination: local,
                            contents,
                        });
                        if let Err(e) = rtc.handle_input(input) {
                            break 'session Err(BenchError::Webrtc(e.to_string()));
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if connected && spec.role == Role::Publish && source.next_due() <= now {
                    source.produce(now, &mut packets);
                    send_packets(&mut rtc, &mut packets, audio, video, now, metrics);
                }
                if let Err(e) = rtc.handle_input(Input::Timeout(now)) {
                    break 'session Err(BenchError::Webrtc(e.to_string()));
                }
            }
            _ = stop.changed() => {}
        }
    };
    // Leave politely either way.
    let auth = format!("Bearer {}", spec.token);
    let _ = http::request("DELETE", &resource, &[("Authorization", &auth)], "").await;
    result
}

fn send_packets(
    rtc: &mut Rtc,
    packets: &mut Vec<Packet>,
    audio: Option<(Mid, Pt)>,
    video: Option<(Mid, Pt)>,
    now: Instant,
    metrics: &Rc<RefCell<Metrics>>,
) {
    let mut sent = 0u64;
    let mut bytes = 0u64;
    for p in packets.drain(..) {
        let Some((mid, pt)) = (if p.video { video } else { audio }) else {
            continue;
        };
        let mut api = rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            continue;
        };
        bytes += p.payload.len() as u64;
        sent += 1;
        tx.write_rtp(
            RtpWrite::new(pt, p.seq.into(), p.timestamp, now, p.payload)
                .marker(p.marker)
                .nackable(p.video),
        );
    }
    let mut m = metrics.borrow_mut();
    m.sent_packets += sent;
    m.sent_bytes += bytes;
}
