//! Audio between SIP phones and rooms: the phone's codec on one side (G.711 µ-law or
//! A-law, G.722, or Opus, RTP payload formats of RFC 3551 and RFC 7587), Opus at
//! 48 kHz on the room's side.
//!
//! ```text
//! PhoneToRoom: RTP payloads ─JitterBuffer─▶ decode (or conceal) ─resample─▶ 48 kHz ─Opus─▶ room frames
//! RoomToPhone: mixed 48 kHz PCM ─resample─▶ 8/16/48 kHz ─encode─▶ RTP payloads every ptime
//! ```
//!
//! RTP clocks: 8000 Hz for PCMU, PCMA and G.722 (RFC 3551 §4.5.2: G.722 is sampled at
//! 16 kHz but its RTP clock runs at 8000 Hz, one timestamp unit per code byte), and
//! 48000 Hz for Opus (RFC 7587) whatever its audio bandwidth.

use std::time::Instant;

use crate::g711::{f32_to_i16, G711Law};
use crate::g722::{G722Decoder, G722Encoder};
use crate::jitter::{Frame, JitterBuffer, JitterConfig, JitterStats, Pushed, RtpAudioPacket};
use crate::opus::{OpusConfig, OpusDecoder, OpusEncoder, OPUS_SAMPLE_RATE};
use crate::plc::Plc;
use crate::resample::AudioConverter;
use crate::{AudioError, OpusFrame, PcmToOpus};

/// A phone's audio codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhoneCodec {
    /// G.711 µ-law, 8 kHz.
    Pcmu,
    /// G.711 A-law, 8 kHz.
    Pcma,
    /// G.722 at 64 kbit/s, 16 kHz.
    G722,
    /// Opus (mono here), 48 kHz.
    Opus,
}

impl PhoneCodec {
    /// The static RTP payload type (RFC 3551), if the codec has one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            PhoneCodec::Pcmu => Some(0),
            PhoneCodec::Pcma => Some(8),
            PhoneCodec::G722 => Some(9),
            PhoneCodec::Opus => None,
        }
    }

    /// The encoding name of the SDP `rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            PhoneCodec::Pcmu => "PCMU",
            PhoneCodec::Pcma => "PCMA",
            PhoneCodec::G722 => "G722",
            PhoneCodec::Opus => "opus",
        }
    }

    /// The RTP clock rate (the `rtpmap` rate).
    pub fn rtp_clock_rate(self) -> u32 {
        match self {
            PhoneCodec::Opus => OPUS_SAMPLE_RATE,
            _ => 8000,
        }
    }

    /// The audio sampling rate the codec works at.
    pub fn sample_rate(self) -> u32 {
        match self {
            PhoneCodec::Pcmu | PhoneCodec::Pcma => 8000,
            PhoneCodec::G722 => 16000,
            PhoneCodec::Opus => OPUS_SAMPLE_RATE,
        }
    }

    /// The codec of an SDP `rtpmap` encoding name and clock rate (names compared
    /// without case).
    pub fn from_rtpmap(name: &str, clock_rate: u32) -> Option<Self> {
        [
            PhoneCodec::Pcmu,
            PhoneCodec::Pcma,
            PhoneCodec::G722,
            PhoneCodec::Opus,
        ]
        .into_iter()
        .find(|c| c.encoding_name().eq_ignore_ascii_case(name) && c.rtp_clock_rate() == clock_rate)
    }

    /// Audio samples per RTP timestamp unit (2 for G.722, else 1).
    fn samples_per_unit(self) -> usize {
        if self == PhoneCodec::G722 {
            2
        } else {
            1
        }
    }
}

enum Decoder {
    G711(G711Law),
    G722(Box<G722Decoder>),
    Opus(Box<OpusDecoder>),
}

/// Counters of a [`PhoneToRoom`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhoneToRoomStats {
    /// The jitter buffer's counters.
    pub jitter: JitterStats,
    /// Frames decoded from packets.
    pub decoded: u64,
    /// Frames concealed (lost, inserted, or undecodable).
    pub concealed: u64,
    /// Packets the decoder rejected (concealed instead).
    pub decode_errors: u64,
    /// Times the room clock skipped ahead over a pause of the phone.
    pub gaps: u64,
}

/// From a phone to a room: RTP payloads of the phone's codec in, 20 ms Opus frames
/// at 48 kHz with room RTP timestamps out.
///
/// Packets go through a [`JitterBuffer`]; every frame interval the frame due is
/// decoded, or concealed when lost (G.711 and G.722 by [`Plc`], Opus by its decoder,
/// from the next packet's in-band FEC when it is already buffered), resampled to
/// 48 kHz and encoded. Payloads longer or shorter than the packet interval are cut or
/// padded so the room's clock follows real time.
///
/// The room's RTP clock advances with the audio; when the phone pauses (the buffer
/// goes idle) the audio so far is flushed (its last frame padded with silence) and
/// the clock jumps by the pause, so it keeps pace with wall time.
pub struct PhoneToRoom {
    codec: PhoneCodec,
    jitter: JitterBuffer,
    decoder: Decoder,
    plc: Plc,
    core: PcmToOpus,
    pcm: Vec<f32>,
    samples: Vec<i16>,
    /// Room RTP timestamp of the first input sample since the last re-anchoring, and
    /// input samples since.
    anchor_rtp: u32,
    in_samples: u64,
    last_frame_time: Option<Instant>,
    resets_seen: u64,
    stretched_seen: u64,
    stats: PhoneToRoomStats,
}

impl PhoneToRoom {
    /// A pipeline for `codec` with the default jitter settings (20 ms packets, 20 to
    /// 200 ms delay) and mono Opus for the room at 32 kbit/s.
    pub fn new(codec: PhoneCodec) -> Result<Self, AudioError> {
        Self::with_config(
            codec,
            JitterConfig::new(codec.rtp_clock_rate()),
            OpusConfig::new(1),
        )
    }

    /// Like [`PhoneToRoom::new`] with explicit jitter buffer and room encoder settings
    /// (the jitter buffer's clock rate is taken from the codec).
    pub fn with_config(
        codec: PhoneCodec,
        jitter: JitterConfig,
        room: OpusConfig,
    ) -> Result<Self, AudioError> {
        let decoder = match codec {
            PhoneCodec::Pcmu => Decoder::G711(G711Law::Ulaw),
            PhoneCodec::Pcma => Decoder::G711(G711Law::Alaw),
            PhoneCodec::G722 => Decoder::G722(Box::default()),
            PhoneCodec::Opus => Decoder::Opus(Box::new(OpusDecoder::new(1)?)),
        };
        let jitter = JitterBuffer::new(JitterConfig {
            clock_rate: codec.rtp_clock_rate(),
            ..jitter
        });
        Ok(PhoneToRoom {
            codec,
            jitter,
            decoder,
            plc: Plc::new(codec.sample_rate()),
            core: PcmToOpus::with_config(codec.sample_rate(), 1, room)?,
            pcm: Vec::new(),
            samples: Vec::new(),
            anchor_rtp: 0,
            in_samples: 0,
            last_frame_time: None,
            resets_seen: 0,
            stretched_seen: 0,
            stats: PhoneToRoomStats::default(),
        })
    }

    /// The phone's codec.
    pub fn codec(&self) -> PhoneCodec {
        self.codec
    }

    /// The jitter buffer (target delay, jitter, ...).
    pub fn jitter(&self) -> &JitterBuffer {
        &self.jitter
    }

    /// Counters.
    pub fn stats(&self) -> PhoneToRoomStats {
        PhoneToRoomStats {
            jitter: self.jitter.stats(),
            ..self.stats
        }
    }

    /// Sets the room RTP timestamp of the next audio (before the first poll, say).
    pub fn set_rtp_timestamp(&mut self, rtp: u32) {
        self.core.set_rtp_timestamp(rtp);
        self.anchor_rtp = rtp;
        self.in_samples = 0;
    }

    /// Adds an RTP packet of the phone's audio (not DTMF or comfort noise: route
    /// those by payload type first) that arrived at `arrival`.
    pub fn push(&mut self, packet: RtpAudioPacket, arrival: Instant) -> Pushed {
        self.jitter.push(packet, arrival)
    }

    /// Plays out what is due at `now` and returns the room frames completed. Call
    /// every 20 ms or more often.
    pub fn poll(&mut self, now: Instant) -> Result<Vec<OpusFrame>, AudioError> {
        let mut out = Vec::new();
        while let Some(frame) = self.jitter.poll(now) {
            let stats = self.jitter.stats();
            if stats.resets != self.resets_seen {
                // A new stream: the decoder starts over too.
                self.resets_seen = stats.resets;
                self.reset_decoder();
            }
            if let Some(t) = self.jitter.frame_time() {
                if let Some(prev) = self.last_frame_time {
                    let step = self.jitter.frame_duration();
                    let elapsed = t.saturating_duration_since(prev);
                    if elapsed > step + step / 2 {
                        out.extend(self.skip_gap(elapsed - step)?);
                    }
                }
                self.last_frame_time = Some(t);
            }
            // A frame inserted to grow the delay is not a lost packet: the next
            // packet's FEC describes the frame already played.
            let inserted = stats.stretched != self.stretched_seen;
            self.stretched_seen = stats.stretched;
            self.decode_frame(frame, inserted);
            self.in_samples += self.pcm.len() as u64;
            out.extend(self.core.push_f32(&self.pcm)?);
        }
        Ok(out)
    }

    /// Ends the stream: the remaining audio, its last frame padded with silence.
    pub fn flush(&mut self) -> Result<Vec<OpusFrame>, AudioError> {
        let frames = self.core.flush()?;
        self.anchor_rtp = self.core.next_rtp_timestamp();
        self.in_samples = 0;
        Ok(frames)
    }

    /// The phone paused for `gap`: flush, and move the room clock on by the pause.
    fn skip_gap(&mut self, gap: std::time::Duration) -> Result<Vec<OpusFrame>, AudioError> {
        self.stats.gaps += 1;
        let frames = self.core.flush()?;
        let ratio = u64::from(OPUS_SAMPLE_RATE / self.codec.sample_rate());
        let gap_rtp = (gap.as_micros() as u64 * u64::from(OPUS_SAMPLE_RATE) / 1_000_000) as u32;
        let audio_end = self
            .anchor_rtp
            .wrapping_add((self.in_samples * ratio) as u32);
        let wanted = audio_end.wrapping_add(gap_rtp);
        let after_flush = self.core.next_rtp_timestamp();
        // Never go back over the padding the flush added.
        let next = if (wanted.wrapping_sub(after_flush) as i32) > 0 {
            wanted
        } else {
            after_flush
        };
        self.set_rtp_timestamp(next);
        self.plc.reset();
        Ok(frames)
    }

    fn reset_decoder(&mut self) {
        match &mut self.decoder {
            Decoder::G711(_) => {}
            Decoder::G722(d) => d.reset(),
            Decoder::Opus(d) => {
                let _ = d.reset();
            }
        }
        self.plc.reset();
    }

    /// Decodes (or conceals) one frame into `self.pcm`, exactly one frame interval
    /// long.
    fn decode_frame(&mut self, frame: Frame, inserted: bool) {
        let units = self.jitter.frame_samples() as usize;
        let want = units * self.codec.samples_per_unit();
        self.pcm.clear();
        let payload = match frame {
            Frame::Packet { payload, .. } if !payload.is_empty() => Some(payload),
            _ => None,
        };
        let decoded = match (&mut self.decoder, payload) {
            (Decoder::G711(law), Some(p)) => {
                // One byte per sample; cut or pad to the interval.
                let law = *law;
                law.decode_f32(&p[..p.len().min(want)], &mut self.pcm);
                let missing = want - self.pcm.len();
                self.pcm.extend(std::iter::repeat_n(0.0, missing));
                true
            }
            (Decoder::G722(d), Some(p)) => {
                self.samples.clear();
                d.decode(&p[..p.len().min(units)], &mut self.samples);
                self.pcm
                    .extend(self.samples.iter().map(|&s| f32::from(s) / 32768.0));
                self.pcm.resize(want, 0.0);
                true
            }
            (Decoder::Opus(d), Some(p)) => match d.decode(&p) {
                Ok(pcm) => {
                    self.pcm.extend(pcm);
                    self.pcm.resize(want, 0.0);
                    true
                }
                Err(_) => {
                    self.stats.decode_errors += 1;
                    false
                }
            },
            (_, None) => false,
        };
        if decoded {
            self.stats.decoded += 1;
            if !matches!(self.decoder, Decoder::Opus(_)) {
                self.plc.good(&mut self.pcm);
            }
            return;
        }
        self.stats.concealed += 1;
        self.pcm.clear();
        match &mut self.decoder {
            Decoder::Opus(d) => {
                let recovered = match self.jitter.peek_next().filter(|_| !inserted) {
                    Some(next) => d.decode_fec(next, want),
                    None => d.conceal(want),
                };
                match recovered {
                    Ok(pcm) => self.pcm.extend(pcm),
                    Err(_) => self.pcm.resize(want, 0.0),
                }
                self.pcm.resize(want, 0.0);
            }
            _ => self.plc.conceal(want, &mut self.pcm),
        }
    }
}

enum Encoder {
    G711(G711Law),
    G722(Box<G722Encoder>),
    Opus(Box<OpusEncoder>),
}

/// One RTP payload for the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhonePacket {
    /// The payload.
    pub payload: Vec<u8>,
    /// Its RTP timestamp on the phone codec's clock.
    pub timestamp: u32,
}

/// From a room to a phone: mixed 48 kHz mono PCM in, RTP payloads of the phone's
/// codec out, one per packet interval (20 ms unless set), with timestamps on the
/// codec's RTP clock starting at 0 (or [`RoomToPhone::set_rtp_timestamp`]).
pub struct RoomToPhone {
    codec: PhoneCodec,
    converter: AudioConverter,
    encoder: Encoder,
    pending: Vec<f32>,
    frame_samples: usize,
    ts_step: u32,
    next_ts: u32,
    samples: Vec<i16>,
}

impl RoomToPhone {
    /// A pipeline to `codec` with 20 ms packets (Opus mono at 32 kbit/s).
    pub fn new(codec: PhoneCodec) -> Result<Self, AudioError> {
        Self::with_ptime(codec, 20)
    }

    /// A pipeline to `codec` with `ptime_ms` packets: 10 to 60 ms in steps of 10 for
    /// G.711 and G.722; 20 for Opus.
    pub fn with_ptime(codec: PhoneCodec, ptime_ms: u32) -> Result<Self, AudioError> {
        Self::with_config(codec, ptime_ms, OpusConfig::new(1))
    }

    /// Like [`RoomToPhone::with_ptime`] with explicit Opus settings (used for Opus
    /// phones only; the channel count is forced to 1).
    pub fn with_config(
        codec: PhoneCodec,
        ptime_ms: u32,
        opus: OpusConfig,
    ) -> Result<Self, AudioError> {
        let ok = match codec {
            PhoneCodec::Opus => ptime_ms == 20,
            _ => (10..=60).contains(&ptime_ms) && ptime_ms.is_multiple_of(10),
        };
        if !ok {
            return Err(AudioError::InvalidArgument(format!(
                "ptime {ptime_ms} ms for {}",
                codec.encoding_name()
            )));
        }
        let encoder = match codec {
            PhoneCodec::Pcmu => Encoder::G711(G711Law::Ulaw),
            PhoneCodec::Pcma => Encoder::G711(G711Law::Alaw),
            PhoneCodec::G722 => Encoder::G722(Box::default()),
            PhoneCodec::Opus => Encoder::Opus(Box::new(OpusEncoder::new(OpusConfig {
                channels: 1,
                ..opus
            })?)),
        };
        Ok(RoomToPhone {
            codec,
            converter: AudioConverter::new(OPUS_SAMPLE_RATE, 1, codec.sample_rate(), 1)?,
            encoder,
            pending: Vec::new(),
            frame_samples: (codec.sample_rate() * ptime_ms / 1000) as usize,
            ts_step: codec.rtp_clock_rate() * ptime_ms / 1000,
            next_ts: 0,
            samples: Vec::new(),
        })
    }

    /// The phone's codec.
    pub fn codec(&self) -> PhoneCodec {
        self.codec
    }

    /// Sets the RTP timestamp of the next packet.
    pub fn set_rtp_timestamp(&mut self, ts: u32) {
        self.next_ts = ts;
    }

    /// The RTP timestamp the next packet will have.
    pub fn next_rtp_timestamp(&self) -> u32 {
        self.next_ts
    }

    /// Pushes 48 kHz mono samples (any amount, usually one 960-sample mix); returns
    /// the packets completed.
    pub fn push(&mut self, pcm_48k: &[f32]) -> Result<Vec<PhonePacket>, AudioError> {
        self.converter.process(pcm_48k, &mut self.pending);
        self.drain()
    }

    /// Ends the stream: the rest of the audio, the last packet padded with silence.
    pub fn flush(&mut self) -> Result<Vec<PhonePacket>, AudioError> {
        self.converter.flush(&mut self.pending);
        let rem = self.pending.len() % self.frame_samples;
        if rem != 0 {
            self.pending
                .resize(self.pending.len() + self.frame_samples - rem, 0.0);
        }
        self.drain()
    }

    fn drain(&mut self) -> Result<Vec<PhonePacket>, AudioError> {
        let n = self.frame_samples;
        let mut out = Vec::with_capacity(self.pending.len() / n);
        let mut used = 0;
        let mut result = Ok(());
        while self.pending.len() - used >= n {
            let frame = &self.pending[used..used + n];
            used += n;
            let payload = match &mut self.encoder {
                Encoder::G711(law) => {
                    let mut p = Vec::with_capacity(n);
                    law.encode_f32(frame, &mut p);
                    p
                }
                Encoder::G722(enc) => {
                    self.samples.clear();
                    self.samples.extend(frame.iter().map(|&s| f32_to_i16(s)));
                    let mut p = Vec::with_capacity(n / 2);
                    enc.encode(&self.samples, &mut p);
                    p
                }
                Encoder::Opus(enc) => match enc.encode_frame(frame) {
                    Ok(p) => p,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                },
            };
            out.push(PhonePacket {
                payload,
                timestamp: self.next_ts,
            });
            self.next_ts = self.next_ts.wrapping_add(self.ts_step);
        }
        self.pending.drain(..used);
        result.map(|()| out)
    }
}
