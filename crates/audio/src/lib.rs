//! Audio transcoding for MediaMesh ingest and telephony, in pure Rust.
//!
//! RTMP publishers send AAC; WebRTC viewers need Opus at 48 kHz. [`AacToOpus`] takes
//! the publisher's `AudioSpecificConfig` and raw AAC frames with their timestamps and
//! gives 20 ms Opus frames with RTP timestamps on the 48 kHz clock:
//!
//! ```text
//! raw AAC ──AacDecoder──▶ f32 PCM (core rate) ──AudioConverter──▶ 48 kHz mono/stereo ──OpusEncoder──▶ Opus
//! ```
//!
//! [`PcmToOpus`] is the same without the AAC step (PCM at any rate in, Opus out).
//!
//! The pieces: [`aac`] (config parsing and decoding, via Symphonia's AAC-LC decoder;
//! HE-AAC decodes as its AAC-LC core at half rate, without the SBR high band),
//! [`resample`] (a streaming windowed-sinc resampler and channel mixing) and
//! [`opus`] (encoding and decoding via `opus-pure`, a port of libopus).
//!
//! For SIP telephony: [`g711`] (PCMU/PCMA) and [`g722`] codecs, [`dtmf`] (RFC 4733
//! telephone events), a [`jitter`] buffer, packet loss concealment ([`plc`]), an
//! N-1 [`mix`]er with RFC 6464 levels, and the pipelines of [`phone`]:
//!
//! ```text
//! PhoneToRoom: RTP payloads ─JitterBuffer─▶ G.711/G.722/Opus decode or conceal ─▶ 48 kHz ─▶ Opus
//! RoomToPhone: 48 kHz mix ─▶ 8/16/48 kHz ─▶ PCMU/PCMA/G.722/Opus RTP payloads (20 ms)
//! ```

pub mod aac;
pub mod dtmf;
pub mod g711;
pub mod g722;
pub mod jitter;
pub mod mix;
pub mod opus;
pub mod phone;
pub mod plc;
pub mod resample;

use std::collections::VecDeque;

pub use aac::{AacDecoder, AudioSpecificConfig};
pub use dtmf::{Digit, DtmfPacket, DtmfReceiver, DtmfSender, TelephoneEvent};
pub use g711::G711Law;
pub use g722::{G722Decoder, G722Encoder};
pub use jitter::{Frame, JitterBuffer, JitterConfig, JitterStats, Pushed, RtpAudioPacket};
pub use mix::{audio_level, soft_clip, Mixer, MIX_FRAME_SAMPLES};
pub use opus::{OpusConfig, OpusDecoder, OpusEncoder, OPUS_FRAME_SAMPLES, OPUS_SAMPLE_RATE};
pub use phone::{PhoneCodec, PhonePacket, PhoneToRoom, PhoneToRoomStats, RoomToPhone};
pub use plc::Plc;
pub use resample::{AudioConverter, Resampler};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The `AudioSpecificConfig` is malformed.
    #[error("invalid AudioSpecificConfig: {0}")]
    InvalidConfig(String),
    /// Well-formed, but not something this crate handles.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A frame could not be decoded (corrupt or truncated).
    #[error("decode error: {0}")]
    Decode(String),
    /// The encoder failed.
    #[error("encode error: {0}")]
    Encode(String),
    /// A caller-supplied argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Decoded audio: interleaved f32 samples, nominally in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Pcm {
    /// Interleaved samples (`frames() * channels` values).
    pub samples: Vec<f32>,
    /// Sampling rate in Hz.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u8,
}

impl Pcm {
    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    /// The samples of one channel.
    pub fn channel(&self, index: u8) -> Vec<f32> {
        self.samples
            .iter()
            .skip(usize::from(index))
            .step_by(usize::from(self.channels.max(1)))
            .copied()
            .collect()
    }
}

/// One encoded 20 ms Opus frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusFrame {
    /// The Opus packet (the RTP payload).
    pub data: Vec<u8>,
    /// RTP timestamp of the frame's first sample on the 48 kHz clock.
    pub rtp_timestamp: u32,
    /// Samples per channel in the frame (960).
    pub samples: u32,
}

/// When the input timestamp differs from the one the sample count predicts by more
/// than this, [`AacToOpus`] re-anchors its clock (publisher reconnect, gap, drift).
pub const REANCHOR_THRESHOLD_MS: u64 = 100;

/// PCM in (any rate, any channel count up to 8), 20 ms Opus frames at 48 kHz out.
///
/// RTP timestamps count the 48 kHz samples emitted, from a start value set by
/// [`PcmToOpus::set_rtp_timestamp`] (0 by default).
pub struct PcmToOpus {
    converter: AudioConverter,
    encoder: OpusEncoder,
    out_channels: u8,
    /// 48 kHz interleaved samples waiting to fill a frame.
    pending: Vec<f32>,
    /// RTP timestamp of `pending[0]`.
    next_rtp: u32,
    scratch: Vec<f32>,
}

impl PcmToOpus {
    /// A converter from `in_rate`/`in_channels` to Opus with `out_channels` (1 or 2)
    /// at the default bitrate.
    pub fn new(in_rate: u32, in_channels: u8, out_channels: u8) -> Result<Self, AudioError> {
        Self::with_config(in_rate, in_channels, OpusConfig::new(out_channels))
    }

    /// Like [`PcmToOpus::new`] with explicit encoder settings.
    pub fn with_config(
        in_rate: u32,
        in_channels: u8,
        config: OpusConfig,
    ) -> Result<Self, AudioError> {
        Ok(PcmToOpus {
            converter: AudioConverter::new(
                in_rate,
                in_channels,
                OPUS_SAMPLE_RATE,
                config.channels,
            )?,
            encoder: OpusEncoder::new(config)?,
            out_channels: config.channels,
            pending: Vec::with_capacity(OPUS_FRAME_SAMPLES * 4),
            next_rtp: 0,
            scratch: Vec::new(),
        })
    }

    /// The input rate.
    pub fn in_rate(&self) -> u32 {
        self.converter.in_rate()
    }

    /// The input channel count.
    pub fn in_channels(&self) -> u8 {
        self.converter.in_channels()
    }

    /// The encoder (to change the bitrate, say).
    pub fn encoder_mut(&mut self) -> &mut OpusEncoder {
        &mut self.encoder
    }

    /// Sets the RTP timestamp of the next sample to come out. Use after [`Self::flush`]
    /// (samples still pending would otherwise take it).
    pub fn set_rtp_timestamp(&mut self, rtp: u32) {
        self.next_rtp = rtp;
    }

    /// The RTP timestamp the next 48 kHz sample will have.
    pub fn next_rtp_timestamp(&self) -> u32 {
        self.next_rtp
    }

    /// Pushes interleaved f32 samples; returns the frames completed.
    pub fn push_f32(&mut self, interleaved: &[f32]) -> Result<Vec<OpusFrame>, AudioError> {
        self.converter.process(interleaved, &mut self.pending);
        self.drain_frames()
    }

    /// Pushes interleaved i16 samples; returns the frames completed.
    pub fn push_i16(&mut self, interleaved: &[i16]) -> Result<Vec<OpusFrame>, AudioError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend(interleaved.iter().map(|&s| f32::from(s) / 32768.0));
        let result = self.push_f32(&scratch);
        self.scratch = scratch;
        result
    }

    /// Ends the current stretch of audio: drains the resampler and pads the last
    /// partial frame with silence. The RTP clock continues after the padded frame.
    pub fn flush(&mut self) -> Result<Vec<OpusFrame>, AudioError> {
        self.converter.flush(&mut self.pending);
        let frame_len = OPUS_FRAME_SAMPLES * usize::from(self.out_channels);
        let rem = self.pending.len() % frame_len;
        if rem != 0 {
            self.pending
                .resize(self.pending.len() + frame_len - rem, 0.0);
        }
        self.drain_frames()
    }

    fn drain_frames(&mut self) -> Result<Vec<OpusFrame>, AudioError> {
        let frame_len = OPUS_FRAME_SAMPLES * usize::from(self.out_channels);
        let mut frames = Vec::with_capacity(self.pending.len() / frame_len);
        let mut used = 0;
        let mut result = Ok(());
        while self.pending.len() - used >= frame_len {
            let pcm = &self.pending[used..used + frame_len];
            used += frame_len;
            let rtp = self.next_rtp;
            self.next_rtp = self.next_rtp.wrapping_add(OPUS_FRAME_SAMPLES as u32);
            match self.encoder.encode_frame(pcm) {
                Ok(data) => frames.push(OpusFrame {
                    data,
                    rtp_timestamp: rtp,
                    samples: OPUS_FRAME_SAMPLES as u32,
                }),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.pending.drain(..used);
        result.map(|()| frames)
    }
}

/// The RTMP audio path: AAC frames with millisecond timestamps in, 20 ms Opus frames
/// with 48 kHz RTP timestamps out.
///
/// The 48 kHz clock starts at the first frame's `pts_ms * 48` and advances with the
/// samples emitted. When a frame's `pts_ms` is more than [`REANCHOR_THRESHOLD_MS`] away
/// from where the decoded sample count puts it (a gap, a publisher reconnect, clock
/// drift), the audio so far is flushed (its last frame padded with silence) and the
/// clock re-anchored at the new `pts_ms * 48`, so audio stays in sync with video.
///
/// A frame that fails to decode returns an error, and is replaced by a frame of
/// silence of the same length so the clock stays right; Opus frames that the
/// silence completes come out of the next successful `push`.
///
/// Timing notes: the resampler adds no offset (output sample `n` is the input at
/// `n / 48000` s). The AAC decoder's own delay (the encoder's priming, about 1024
/// samples, shows as near-silence at the start) and the Opus encoder's lookahead
/// (6.5 ms) are not subtracted, as FLV players do not subtract the former either.
/// A publisher whose sample clock drifts from its timestamps is re-anchored each
/// time the drift passes the threshold, with up to 20 ms of padding each time.
pub struct AacToOpus {
    decoder: AacDecoder,
    core: PcmToOpus,
    /// The pts (ms) the clock is anchored at, and decoded input samples since.
    anchor: Option<(u64, u64)>,
    /// Frames finished during a failed push, returned by the next one.
    held: VecDeque<OpusFrame>,
    reanchors: u64,
}

impl AacToOpus {
    /// A transcoder for the stream described by `asc`, to Opus with `out_channels`
    /// (1 or 2) at the default bitrate (64 kbit/s stereo, 32 kbit/s mono).
    pub fn new(asc: &[u8], out_channels: u8) -> Result<Self, AudioError> {
        Self::with_config(asc, OpusConfig::new(out_channels))
    }

    /// Like [`AacToOpus::new`] with explicit encoder settings.
    pub fn with_config(asc: &[u8], config: OpusConfig) -> Result<Self, AudioError> {
        let decoder = AacDecoder::new(asc)?;
        let core = PcmToOpus::with_config(decoder.sample_rate(), decoder.channels(), config)?;
        Ok(AacToOpus {
            decoder,
            core,
            anchor: None,
            held: VecDeque::new(),
            reanchors: 0,
        })
    }

    /// The AAC decoder (its config, rate and channels).
    pub fn decoder(&self) -> &AacDecoder {
        &self.decoder
    }

    /// The encoder (to change the bitrate, say).
    pub fn encoder_mut(&mut self) -> &mut OpusEncoder {
        self.core.encoder_mut()
    }

    /// How many times the clock was re-anchored after the first frame.
    pub fn reanchor_count(&self) -> u64 {
        self.reanchors
    }

    /// Pushes one raw AAC frame with its presentation time in milliseconds; returns
    /// the Opus frames completed (usually 0 to 2).
    pub fn push(&mut self, aac_frame: &[u8], pts_ms: u64) -> Result<Vec<OpusFrame>, AudioError> {
        let mut out: Vec<OpusFrame> = self.held.drain(..).collect();
        match self.anchor {
            None => self.start_anchor(pts_ms),
            Some((anchor_ms, samples)) => {
                let rate = u64::from(self.decoder.sample_rate());
                let expected_ms = anchor_ms.saturating_add(samples.saturating_mul(1000) / rate);
                if pts_ms.abs_diff(expected_ms) > REANCHOR_THRESHOLD_MS {
                    match self.core.flush() {
                        Ok(frames) => out.extend(frames),
                        Err(e) => {
                            self.held.extend(out);
                            return Err(e);
                        }
                    }
                    self.decoder.reset();
                    self.reanchors += 1;
                    self.start_anchor(pts_ms);
                }
            }
        }
        let (pcm, error) = match self.decoder.decode(aac_frame) {
            Ok(pcm) => (pcm, None),
            Err(e) => (self.decoder.silence(), Some(e)),
        };
        if let Some((_, samples)) = &mut self.anchor {
            *samples += pcm.frames() as u64;
        }
        let frames = match self.core.push_f32(&pcm.samples) {
            Ok(frames) => frames,
            Err(e) => {
                self.held.extend(out);
                return Err(e);
            }
        };
        match error {
            None => {
                out.extend(frames);
                Ok(out)
            }
            Some(e) => {
                self.held.extend(out);
                self.held.extend(frames);
                Err(e)
            }
        }
    }

    /// Ends the stream: returns the remaining audio, the last frame padded with silence.
    pub fn flush(&mut self) -> Result<Vec<OpusFrame>, AudioError> {
        let mut out: Vec<OpusFrame> = self.held.drain(..).collect();
        out.extend(self.core.flush()?);
        self.anchor = None;
        Ok(out)
    }

    fn start_anchor(&mut self, pts_ms: u64) {
        self.anchor = Some((pts_ms, 0));
        self.core.set_rtp_timestamp(pts_ms.wrapping_mul(48) as u32);
    }
}
