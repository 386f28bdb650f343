//! One phone call's media: plain RTP with the phone (symmetric: we answer
//! where its packets come from), bridged to the room through an ingest that
//! hears the room's loudest other speakers.
//!
//! Phone -> room: RTP -> jitter buffer -> decode (G.711, G.722, Opus) ->
//! 48 kHz -> Opus frames -> the ingest's audio track. Telephone-events
//! (RFC 4733) become digits, published to the room's `dtmf` message channel.
//! Room -> phone: the core's mixer puts up to three loudest speakers (never
//! the phone itself) on the ingest's slots; their Opus packets are decoded,
//! mixed every 20 ms, and encoded with the phone's codec.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mediamesh_audio::dtmf::DtmfReceiver;
use mediamesh_audio::jitter::RtpAudioPacket;
use mediamesh_audio::mix::Mixer;
use mediamesh_audio::opus::OpusDecoder;
use mediamesh_audio::phone::{PhoneCodec, PhoneToRoom, RoomToPhone};
use mediamesh_core::{Codec, MediaPacket};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::worker::Command;

/// How many room speakers a phone hears at once.
pub const SLOTS: usize = 3;

/// A 20 ms frame of 48 kHz mono.
const FRAME: usize = 960;

pub struct CallMedia {
    pub ingest: u64,
    pub socket: UdpSocket,
    /// Where to send until RTP arrives (the SDP's address).
    pub remote: Option<SocketAddr>,
    /// Whether the phone wants our audio now (not on hold).
    pub send: bool,
    pub codec: PhoneCodec,
    pub payload_type: u8,
    pub dtmf_payload_type: Option<u8>,
    pub worker: mpsc::Sender<Command>,
    pub hears: mpsc::Receiver<(usize, MediaPacket)>,
    /// New SDP from the phone (re-INVITE, UPDATE, the answer after early media).
    pub control: mpsc::Receiver<Control>,
    /// Room and peer, for DTMF messages.
    pub app: String,
    pub room: String,
    pub peer: String,
}

/// What new SDP from the phone changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    /// Its RTP address, if it gave one.
    pub remote: Option<SocketAddr>,
    /// Whether it wants our audio (false: hold).
    pub send: bool,
}

/// An RTP packet's header fields and payload (RFC 3550 5.1).
#[derive(Debug, PartialEq, Eq)]
struct Rtp<'a> {
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: &'a [u8],
}

/// Parses an RTP packet; `None` for anything else (RTCP, garbage).
fn parse_rtp(b: &[u8]) -> Option<Rtp<'_>> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(b[0] & 0x0f);
    let mut off = 12 + 4 * cc;
    if b[0] & 0x10 != 0 {
        let len = usize::from(u16::from_be_bytes([*b.get(off + 2)?, *b.get(off + 3)?]));
        off += 4 + 4 * len;
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        let pad = usize::from(*b.last()?);
        end = end.checked_sub(pad)?;
    }
    let payload = b.get(off..end)?;
    let pt = b[1] & 0x7f;
    // RTCP on the same port (rtcp-mux is not negotiated, but some phones do).
    if (72..=76).contains(&pt) {
        return None;
    }
    Some(Rtp {
        pt,
        marker: b[1] & 0x80 != 0,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        payload,
    })
}

/// Runs until `stop` fires or the worker is gone.
pub async fn run(mut m: CallMedia, mut stop: oneshot::Receiver<()>) {
    let mut to_room = match PhoneToRoom::new(m.codec) {
        Ok(p) => p,
        Err(e) => return tracing::warn!("phone call: {e}"),
    };
    let mut to_phone = match RoomToPhone::new(m.codec) {
        Ok(p) => p,
        Err(e) => return tracing::warn!("phone call: {e}"),
    };
    let mut dtmf = DtmfReceiver::new(m.codec.rtp_clock_rate());
    let mut dtmf_ssrc: Option<u32> = None;
    let mut decoders: HashMap<usize, OpusDecoder> = HashMap::new();
    let mut mixer: Mixer<usize> = Mixer::new(SLOTS);
    let mut pending = SlotFrames::default();
    let mut seq: u64 = 0;
    let mut out_seq: u16 = rand::random();
    let (mut sent, mut received) = (0u64, 0u64);
    let out_ssrc: u32 = rand::random();
    let mut remote = m.remote;
    let mut buf = vec![0u8; 2048];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(c) = m.control.recv() => {
                tracing::info!(peer = %m.peer, send = c.send, remote = ?c.remote, "phone call: media updated");
                m.send = c.send;
                if c.remote.is_some() {
                    remote = c.remote;
                }
            }
            r = m.socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let Some(Rtp { pt, marker, seq: s, ts, ssrc, payload }) = parse_rtp(&buf[..n]) else { continue };
                // Symmetric RTP: answer where the phone's packets come from.
                remote = Some(from);
                received += 1;
                let now = Instant::now();
                if Some(pt) == m.dtmf_payload_type {
                    // A new source (a new SSRC) starts its own timeline.
                    if dtmf_ssrc.replace(ssrc).is_some_and(|old| old != ssrc) {
                        if let Some(d) = dtmf.poll(now + Duration::from_secs(1)) {
                            send_digit(&m, d.event).await;
                        }
                        dtmf = DtmfReceiver::new(m.codec.rtp_clock_rate());
                    }
                    for d in dtmf.push(ts, payload, now) {
                        send_digit(&m, d.event).await;
                    }
                } else if pt == m.payload_type {
                    to_room.push(RtpAudioPacket { ssrc, seq: s, timestamp: ts, marker, payload: payload.to_vec() }, now);
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if let Some(d) = dtmf.poll(now) {
                    send_digit(&m, d.event).await;
                }
                // Phone -> room.
                match to_room.poll(now) {
                    Ok(frames) => {
                        for f in frames {
                            seq += 1;
                            let packet = MediaPacket::audio(Codec::Opus, seq, f.rtp_timestamp, f.data, now);
                            if m.worker.send(Command::IngestMedia { id: m.ingest, packet }).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => tracing::debug!("phone -> room: {e}"),
                }
                // Room -> phone: decode what the slots brought, then mix one
                // 20 ms frame of each slot.
                while let Ok((slot, p)) = m.hears.try_recv() {
                    let dec = match decoders.entry(slot) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => match OpusDecoder::new(1) {
                            Ok(d) => v.insert(d),
                            Err(_) => continue,
                        },
                    };
                    if let Ok(pcm) = dec.decode(&p.payload) {
                        pending.push(slot, &pcm);
                    }
                }
                mixer.clear();
                for (slot, frame) in pending.take_frames() {
                    let _ = mixer.add(slot, &frame);
                }
                let pcm = mixer.mix_all();
                // On hold the encoder keeps its timeline; nothing is sent.
                let to = remote.filter(|_| m.send);
                match to_phone.push(&pcm) {
                    Ok(packets) => {
                        let Some(to) = to else { continue };
                        for p in packets {
                            out_seq = out_seq.wrapping_add(1);
                            let mut b = Vec::with_capacity(12 + p.payload.len());
                            b.extend_from_slice(&[0x80, m.payload_type & 0x7f]);
                            b.extend_from_slice(&out_seq.to_be_bytes());
                            b.extend_from_slice(&p.timestamp.to_be_bytes());
                            b.extend_from_slice(&out_ssrc.to_be_bytes());
                            b.extend_from_slice(&p.payload);
                            if m.socket.send_to(&b, to).await.is_ok() {
                                sent += 1;
                            }
                        }
                    }
                    Err(e) => tracing::debug!("room -> phone: {e}"),
                }
            }
        }
    }
    tracing::info!(peer = %m.peer, sent, received, "phone call: media ended (RTP packets)");
}

/// Frames to send before a slot's audio is dropped (its packets arrived in a
/// burst larger than this buffers).
const SLOT_BACKLOG: usize = 3;

/// Decoded room audio waiting for the phone's 20 ms ticks, per slot: packets
/// come in bursts (network, the worker's batching), the ticks do not, so each
/// tick takes one frame of every slot and keeps the rest.
#[derive(Debug, Default)]
struct SlotFrames {
    slots: HashMap<usize, std::collections::VecDeque<f32>>,
}

impl SlotFrames {
    fn push(&mut self, slot: usize, pcm: &[f32]) {
        let q = self.slots.entry(slot).or_default();
        q.extend(pcm.iter().copied());
        // A backlog beyond a few frames would only add delay: drop the oldest.
        let max = SLOT_BACKLOG * FRAME;
        if q.len() > max {
            let extra = q.len() - max;
            q.drain(..extra);
        }
    }

    /// One frame of every slot that has a whole one.
    fn take_frames(&mut self) -> Vec<(usize, Vec<f32>)> {
        let mut out = Vec::new();
        for (slot, q) in &mut self.slots {
            if q.len() >= FRAME {
                out.push((*slot, q.drain(..FRAME).collect()));
            }
        }
        out.sort_by_key(|(s, _)| *s);
        out
    }
}

async fn send_digit(m: &CallMedia, digit: char) {
    tracing::info!(room = %m.room, peer = %m.peer, %digit, "DTMF");
    let _ = m
        .worker
        .send(Command::RoomMessage {
            app: m.app.clone(),
            room: m.room.clone(),
            label: "dtmf".into(),
            peer: m.peer.clone(),
            data: digit.to_string().into_bytes(),
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_frames_smooth_bursts_and_bound_the_backlog() {
        let mut f = SlotFrames::default();
        assert!(f.take_frames().is_empty());
        // Two frames of slot 0 in one burst, one of slot 1: one each per tick.
        f.push(0, &[0.1; FRAME]);
        f.push(0, &[0.2; FRAME]);
        f.push(1, &[0.3; FRAME]);
        let t1 = f.take_frames();
        assert_eq!(t1.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [0, 1]);
        assert!(t1[0].1.iter().all(|x| *x == 0.1));
        let t2 = f.take_frames();
        assert_eq!(t2.len(), 1);
        assert!(t2[0].1.iter().all(|x| *x == 0.2));
        assert!(f.take_frames().is_empty());
        // Half frames wait for the rest; a long burst keeps only the newest.
        f.push(2, &[0.5; FRAME / 2]);
        assert!(f.take_frames().is_empty());
        f.push(2, &[0.5; FRAME / 2]);
        assert_eq!(f.take_frames().len(), 1);
        for i in 0..10 {
            f.push(3, &[i as f32; FRAME]);
        }
        let mut got = Vec::new();
        while let Some((_, fr)) = f.take_frames().pop() {
            got.push(fr[0]);
        }
        assert_eq!(got, [7.0, 8.0, 9.0]);
    }

    #[test]
    fn rtp_headers_parse_and_garbage_does_not() {
        let mut p = vec![0x80, 0x88, 0x01, 0x02, 0, 0, 0, 160, 0, 0, 0, 7];
        p.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            parse_rtp(&p),
            Some(Rtp {
                pt: 8,
                marker: true,
                seq: 0x0102,
                ts: 160,
                ssrc: 7,
                payload: &[1, 2, 3]
            })
        );
        // Padding: the last byte counts the padding bytes.
        let mut padded = p.clone();
        padded[0] |= 0x20;
        padded.extend_from_slice(&[0, 2]);
        assert_eq!(parse_rtp(&padded).map(|r| r.payload.len()), Some(3));
        // RTCP (PT 200 -> 72 with the marker bit), short, wrong version.
        assert_eq!(parse_rtp(&[0x80, 200, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(parse_rtp(&[0x80, 0]), None);
        assert_eq!(parse_rtp(&[0x40; 20]), None);
        // An extension longer than the packet.
        let mut ext = vec![0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 9];
        ext.extend_from_slice(&[0; 4]);
        assert_eq!(parse_rtp(&ext), None);
    }
}
