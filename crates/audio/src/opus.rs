//! Opus encoding (and decoding, for tests and telephony) at 48 kHz in 20 ms frames.
//!
//! Wraps `opus-pure`, a pure-Rust port of libopus 1.6 (BSD-3-Clause), with its
//! tonality analysis and constrained VBR like libopus's defaults.

use opus_pure::{Application, OpusDecoder as RawDecoder, OpusEncoder as RawEncoder, RateControl};

use crate::AudioError;

/// The Opus RTP clock and the rate this module encodes at.
pub const OPUS_SAMPLE_RATE: u32 = 48000;
/// Samples per channel in one 20 ms frame at 48 kHz.
pub const OPUS_FRAME_SAMPLES: usize = 960;
/// The largest Opus packet (RFC 6716).
pub const MAX_PACKET_BYTES: usize = 1276;

/// Opus encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusConfig {
    /// 1 (mono) or 2 (stereo).
    pub channels: u8,
    /// Target bitrate in bit/s (VBR).
    pub bitrate_bps: u32,
    /// Encoder complexity 0..=10 (libopus's default is 10; 9 saves some CPU).
    pub complexity: u8,
    /// In-band forward error correction (only used by SILK/hybrid frames).
    pub inband_fec: bool,
}

impl OpusConfig {
    /// Music-friendly defaults: 64 kbit/s stereo, 32 kbit/s mono, complexity 9.
    pub fn new(channels: u8) -> Self {
        OpusConfig {
            channels,
            bitrate_bps: if channels == 1 { 32_000 } else { 64_000 },
            complexity: 9,
            inband_fec: false,
        }
    }

    /// The same settings with another bitrate.
    pub fn with_bitrate(mut self, bitrate_bps: u32) -> Self {
        self.bitrate_bps = bitrate_bps;
        self
    }
}

/// An Opus encoder (application "audio") for 20 ms frames at 48 kHz.
pub struct OpusEncoder {
    inner: RawEncoder,
    config: OpusConfig,
    clamped: Vec<f32>,
    packet: Vec<u8>,
}

impl OpusEncoder {
    /// Creates an encoder.
    pub fn new(config: OpusConfig) -> Result<Self, AudioError> {
        if !(1..=2).contains(&config.channels) {
            return Err(AudioError::InvalidArgument(format!(
                "{} Opus channels (1 or 2)",
                config.channels
            )));
        }
        let mut inner = RawEncoder::new(
            OPUS_SAMPLE_RATE as i32,
            usize::from(config.channels),
            Application::Audio,
        )
        .map_err(|e| AudioError::Encode(e.to_string()))?;
        inner.bitrate_bps = config.bitrate_bps.clamp(6_000, 510_000) as i32;
        inner.complexity = i32::from(config.complexity.min(10));
        inner.rate_control = RateControl::ConstrainedVbr;
        inner.use_inband_fec = config.inband_fec;
        Ok(OpusEncoder {
            inner,
            config,
            clamped: Vec::with_capacity(OPUS_FRAME_SAMPLES * 2),
            packet: vec![0; MAX_PACKET_BYTES],
        })
    }

    /// The settings.
    pub fn config(&self) -> OpusConfig {
        self.config
    }

    /// Changes the target bitrate from the next frame on.
    pub fn set_bitrate(&mut self, bitrate_bps: u32) {
        self.config.bitrate_bps = bitrate_bps;
        self.inner.bitrate_bps = bitrate_bps.clamp(6_000, 510_000) as i32;
    }

    /// Encodes one 20 ms frame: exactly 960 samples per channel, interleaved, in
    /// [-1, 1] (values beyond are clipped, non-finite ones taken as 0).
    pub fn encode_frame(&mut self, pcm: &[f32]) -> Result<Vec<u8>, AudioError> {
        let want = OPUS_FRAME_SAMPLES * usize::from(self.config.channels);
        if pcm.len() != want {
            return Err(AudioError::InvalidArgument(format!(
                "an Opus frame takes {want} samples, got {}",
                pcm.len()
            )));
        }
        self.clamped.clear();
        self.clamped.extend(pcm.iter().map(|&s| {
            if s.is_finite() {
                s.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        }));
        let n = self
            .inner
            .encode(&self.clamped, OPUS_FRAME_SAMPLES, &mut self.packet)
            .map_err(|e| AudioError::Encode(e.to_string()))?;
        Ok(self.packet[..n].to_vec())
    }
}

/// An Opus decoder to 48 kHz interleaved f32.
pub struct OpusDecoder {
    inner: RawDecoder,
    channels: u8,
    out: Vec<f32>,
}

impl OpusDecoder {
    /// Creates a decoder with `channels` output channels (1 or 2).
    pub fn new(channels: u8) -> Result<Self, AudioError> {
        if !(1..=2).contains(&channels) {
            return Err(AudioError::InvalidArgument(format!(
                "{channels} Opus channels (1 or 2)"
            )));
        }
        let inner = RawDecoder::new(OPUS_SAMPLE_RATE as i32, usize::from(channels))
            .map_err(|e| AudioError::Decode(e.to_string()))?;
        Ok(OpusDecoder {
            inner,
            channels,
            out: vec![0.0; 5760 * 2],
        })
    }

    /// Decodes one packet (up to 120 ms) to interleaved samples. An empty packet
    /// conceals one lost 20 ms frame.
    pub fn decode(&mut self, packet: &[u8]) -> Result<Vec<f32>, AudioError> {
        let max = if packet.is_empty() {
            OPUS_FRAME_SAMPLES
        } else {
            5760
        };
        let n = self
            .inner
            .decode(packet, max, &mut self.out)
            .map_err(|e| AudioError::Decode(e.to_string()))?;
        Ok(self.out[..n * usize::from(self.channels)].to_vec())
    }

    /// Conceals `samples` lost samples per channel (a multiple of 2.5 ms, at most
    /// 120 ms) with the decoder's own packet loss concealment.
    pub fn conceal(&mut self, samples: usize) -> Result<Vec<f32>, AudioError> {
        let n = self.decode_limited(&[], samples, false)?;
        Ok(self.out[..n * usize::from(self.channels)].to_vec())
    }

    /// Recovers `samples` lost samples per channel (the frame before `next_packet`)
    /// from the in-band FEC of `next_packet`, concealing where it carries none. The
    /// next packet itself must still be decoded afterwards.
    pub fn decode_fec(
        &mut self,
        next_packet: &[u8],
        samples: usize,
    ) -> Result<Vec<f32>, AudioError> {
        let n = self.decode_limited(next_packet, samples, true)?;
        Ok(self.out[..n * usize::from(self.channels)].to_vec())
    }

    fn decode_limited(
        &mut self,
        packet: &[u8],
        samples: usize,
        fec: bool,
    ) -> Result<usize, AudioError> {
        if samples == 0 || samples > 5760 || !samples.is_multiple_of(120) {
            return Err(AudioError::InvalidArgument(format!(
                "{samples} samples is not a whole number of 2.5 ms up to 120 ms"
            )));
        }
        let out = &mut self.out[..samples * usize::from(self.channels)];
        if fec {
            self.inner.decode_fec(packet, samples, out)
        } else {
            self.inner.decode(packet, samples, out)
        }
        .map_err(|e| AudioError::Decode(e.to_string()))
    }

    /// Forgets the stream (a new encoder on the other side).
    pub fn reset(&mut self) -> Result<(), AudioError> {
        self.inner
            .reset_state()
            .map_err(|e| AudioError::Decode(e.to_string()))
    }
}
