//! A minimal RTMP ingest on `std::net`, to show how a driver uses
//! `ServerSession` (and to check real encoders against it). It serves one
//! connection, accepts publishes to app `live`, prints the events, parses
//! the FLV tags and packetizes H.264 into RTP payloads.
//!
//!     cargo run -p mediamesh-rtmp --example rtmp_ingest -- 127.0.0.1:19350
//!     # then publish to rtmp://127.0.0.1:19350/live/KEY

use std::io::{Read, Write};
use std::net::TcpListener;

use mediamesh_rtmp::avc::{self, AvcDecoderConfig};
use mediamesh_rtmp::flv::{self, AudioPacket, VideoCodec, VideoPacket};
use mediamesh_rtmp::h264_rtp::{rtp_timestamp_90khz, H264Packetizer};
use mediamesh_rtmp::{Event, ServerSession, SessionConfig};

#[derive(Default)]
struct Media {
    avc: Option<AvcDecoderConfig>,
    packetizer: H264Packetizer,
    video_frames: u64,
    keyframes: u64,
    rtp_packets: u64,
    audio_frames: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:19350".into());
    let listener = TcpListener::bind(&addr)?;
    println!("listening: publish to rtmp://{addr}/live/KEY");
    let (mut sock, peer) = listener.accept()?;
    println!("connection from {peer}");

    let mut session = ServerSession::new(SessionConfig::default());
    let mut media = Media::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut handshake_reported = false;
    loop {
        let n = sock.read(&mut buf)?;
        if n == 0 {
            println!("client closed the connection");
            break;
        }
        let fed = session.feed(&buf[..n]);
        if !handshake_reported && session.is_handshake_done() {
            println!("handshake done");
            handshake_reported = true;
        }
        while let Some(event) = session.poll_event() {
            on_event(&mut session, &mut media, event)?;
        }
        // Replies go out even when feed failed (an error status, say).
        while let Some(out) = session.poll_output() {
            sock.write_all(&out)?;
        }
        if let Err(e) = fed {
            println!("protocol error: {e}");
            break;
        }
    }
    println!(
        "video frames {} (keyframes {}), RTP packets {}, audio frames {}, {:?}",
        media.video_frames,
        media.keyframes,
        media.rtp_packets,
        media.audio_frames,
        session.stats()
    );
    Ok(())
}

fn on_event(
    session: &mut ServerSession,
    media: &mut Media,
    event: Event,
) -> Result<(), mediamesh_rtmp::RtmpError> {
    match event {
        Event::Connect { app, tc_url, .. } => println!("connect app={app} tcUrl={tc_url:?}"),
        Event::PublishRequest {
            stream_id,
            app,
            stream_key,
            publish_type,
        } => {
            println!("publish stream={stream_id} app={app} key={stream_key} type={publish_type}");
            if app == "live" {
                session.accept_publish(stream_id)?;
            } else {
                session.reject_publish(stream_id, "Unknown application.")?;
            }
        }
        Event::Unpublish { stream_id } => println!("unpublish stream={stream_id}"),
        Event::Metadata { values, .. } => println!("metadata {values:?}"),
        Event::Data { name, .. } => println!("data message {name}"),
        Event::Video {
            stream_id,
            timestamp_ms,
            data,
        } => {
            let tag = match flv::parse_video(&data) {
                Ok(t) => t,
                Err(e) => {
                    println!("bad video tag: {e}");
                    return Ok(());
                }
            };
            match tag.packet {
                VideoPacket::SequenceHeader {
                    codec: VideoCodec::Avc,
                    config,
                } => match AvcDecoderConfig::parse(config) {
                    Ok(c) => {
                        println!(
                            "AVC sequence header: profile-level-id {} NAL length {} SPS {} PPS {}",
                            c.profile_level_id(),
                            c.nal_length_size,
                            c.sps.len(),
                            c.pps.len()
                        );
                        media.avc = Some(c);
                    }
                    Err(e) => println!("bad AVC sequence header: {e}"),
                },
                VideoPacket::Frame {
                    codec: VideoCodec::Avc,
                    composition_time_ms,
                    data,
                } => {
                    let Some(config) = &media.avc else {
                        return Ok(());
                    };
                    let Ok(nalus) = avc::access_unit_nalus(data, config.nal_length_size) else {
                        println!("bad access unit at {timestamp_ms} ms");
                        return Ok(());
                    };
                    let nalus = avc::with_parameter_sets(config, &nalus, tag.is_keyframe());
                    let pts = timestamp_ms.saturating_add_signed(composition_time_ms.into());
                    let packets = media.packetizer.packetize(&nalus, rtp_timestamp_90khz(pts));
                    media.video_frames += 1;
                    media.rtp_packets += packets.len() as u64;
                    if tag.is_keyframe() {
                        media.keyframes += 1;
                        let types: Vec<u8> =
                            nalus.iter().filter_map(|n| avc::nal_type(n)).collect();
                        println!(
                            "keyframe at {timestamp_ms} ms (cts {composition_time_ms}): NAL types {types:?}, {} RTP packets",
                            packets.len()
                        );
                    }
                }
                VideoPacket::Unsupported(what) => {
                    println!("unsupported video: {what}");
                    session.send_status_error(
                        stream_id,
                        "NetStream.Publish.Failed",
                        &format!("{what} is not supported."),
                    )?;
                }
                other => println!("video {other:?}"),
            }
        }
        Event::Audio { data, .. } => match flv::parse_audio(&data) {
            Ok(tag) => match tag.packet {
                AudioPacket::SequenceHeader { codec, config } => {
                    println!("{} sequence header: {:02x?}", codec.name(), config);
                }
                AudioPacket::Frame { .. } => media.audio_frames += 1,
                other => println!("audio {other:?}"),
            },
            Err(e) => println!("bad audio tag: {e}"),
        },
    }
    Ok(())
}
