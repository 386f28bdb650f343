//! AAC: `AudioSpecificConfig` parsing and a decoder for raw AAC frames.
//!
//! RTMP (FLV `AACPacketType` 0) carries the `AudioSpecificConfig` (ISO/IEC 14496-3
//! §1.6.2.1) once as the sequence header, then one raw AAC frame (no ADTS header)
//! per message. [`AudioSpecificConfig::parse`] reads the config, and [`AacDecoder`]
//! turns each raw frame into f32 PCM.
//!
//! Decoding uses Symphonia's pure-Rust AAC-LC decoder. **HE-AAC** (SBR, and
//! HE-AACv2's parametric stereo) is decoded as its AAC-LC core: the output is at the
//! core sampling rate (half the nominal rate: 22.05 kHz for "44.1 kHz HE-AAC") and the
//! SBR high band (above about a quarter of the nominal rate) and PS stereo image are
//! not reconstructed. HE-AACv2 therefore plays as mono. The frame duration is right
//! either way (1024 core samples), so timing and A/V sync are unaffected; only the
//! treble is missing. Streams that signal SBR implicitly (an AAC-LC config at
//! ≤ 24 kHz, SBR data only inside the frames) are handled the same way, naturally.

use std::panic::{catch_unwind, AssertUnwindSafe};

use symphonia_codec_aac::AacDecoder as SymphoniaAac;
use symphonia_core::audio::Channels;
use symphonia_core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia_core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia_core::packet::PacketRef;
use symphonia_core::units::{Duration, Timestamp};

use crate::{AudioError, Pcm};

/// The sampling frequencies of `samplingFrequencyIndex` 0..=12 (13 and 14 are
/// reserved, 15 means an explicit 24-bit frequency follows).
pub const SAMPLING_FREQUENCIES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Audio object types this module names (ISO/IEC 14496-3 Table 1.1).
pub mod object_type {
    /// AAC Main.
    pub const AAC_MAIN: u8 = 1;
    /// AAC Low Complexity: what nearly every RTMP publisher sends.
    pub const AAC_LC: u8 = 2;
    /// AAC Scalable Sample Rate.
    pub const AAC_SSR: u8 = 3;
    /// AAC Long Term Prediction.
    pub const AAC_LTP: u8 = 4;
    /// Spectral Band Replication (HE-AAC v1).
    pub const SBR: u8 = 5;
    /// AAC Scalable.
    pub const AAC_SCALABLE: u8 = 6;
    /// ER BSAC.
    pub const ER_BSAC: u8 = 22;
    /// Parametric Stereo (HE-AAC v2).
    pub const PS: u8 = 29;
}

/// How SBR (and PS) is signalled by a config (ISO/IEC 14496-3 §1.6.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SbrSignalling {
    /// Explicit, hierarchical: the config starts with object type 5 (SBR) or 29 (PS),
    /// then the extension (output) frequency, then the core object type.
    Hierarchical,
    /// Explicit, backward compatible: an AAC config followed by the sync extension
    /// `0x2b7` (and possibly `0x548` for PS). Also used to say "no SBR" explicitly.
    BackwardCompatible,
    /// Nothing is signalled: the frames may still carry SBR data (implicit
    /// signalling), which only a decoder that parses the frames can tell.
    None,
}

/// A parsed `AudioSpecificConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// The object type the config starts with (5 or 29 for hierarchical HE-AAC).
    pub signalled_object_type: u8,
    /// The core object type (2 for AAC-LC and for the core of HE-AAC).
    pub object_type: u8,
    /// The core `samplingFrequencyIndex`, or `None` when an explicit frequency was given.
    pub sampling_frequency_index: Option<u8>,
    /// The core sampling rate in Hz (the rate the AAC frames are coded at).
    pub sample_rate: u32,
    /// `channelConfiguration` (0 means a program config element describes the channels).
    pub channel_configuration: u8,
    /// Samples per frame per channel: 1024, or 960 when `frameLengthFlag` is set.
    pub frame_length: u16,
    /// `Some(true)` or `Some(false)` when SBR presence is signalled explicitly, `None`
    /// when it is not (the stream may still use SBR implicitly).
    pub sbr_present: Option<bool>,
    /// Like `sbr_present`, for parametric stereo (HE-AAC v2).
    pub ps_present: Option<bool>,
    /// The output sampling rate of the SBR tool when SBR is signalled as present.
    pub extension_sample_rate: Option<u32>,
    /// How SBR was signalled.
    pub sbr_signalling: SbrSignalling,
}

impl AudioSpecificConfig {
    /// Parses an `AudioSpecificConfig` (the FLV/RTMP AAC sequence header payload, or
    /// MP4 `esds` `DecoderSpecificInfo`).
    pub fn parse(data: &[u8]) -> Result<Self, AudioError> {
        let mut r = BitReader::new(data);
        let signalled = read_object_type(&mut r)?;
        let (sfi, sample_rate) = read_frequency(&mut r)?;
        let channel_configuration = r.read(4)? as u8;
        let mut object_type = signalled;
        let mut sbr_present = None;
        let mut ps_present = None;
        let mut extension_sample_rate = None;
        let mut sbr_signalling = SbrSignalling::None;

        if signalled == object_type::SBR || signalled == object_type::PS {
            sbr_signalling = SbrSignalling::Hierarchical;
            sbr_present = Some(true);
            ps_present = Some(signalled == object_type::PS);
            let (_, ext_rate) = read_frequency(&mut r)?;
            extension_sample_rate = Some(ext_rate);
            object_type = read_object_type(&mut r)?;
            if object_type == object_type::ER_BSAC {
                let _extension_channel_configuration = r.read(4)?;
            }
        }

        let mut frame_length = 1024;
        let mut ga_complete = false;
        if is_ga_object_type(object_type) {
            // GASpecificConfig.
            if r.read(1)? == 1 {
                frame_length = 960;
            }
            if r.read(1)? == 1 {
                let _core_coder_delay = r.read(14)?;
            }
            let extension_flag = r.read(1)?;
            if channel_configuration == 0 {
                // A program_config_element follows; we do not parse it (the decoder
                // cannot use it either), so nothing after it can be read.
            } else {
                if object_type == object_type::AAC_SCALABLE || object_type == 20 {
                    let _layer_nr = r.read(3)?;
                }
                if extension_flag == 1 {
                    if object_type == object_type::ER_BSAC {
                        let _num_of_sub_frame = r.read(5)?;
                        let _layer_length = r.read(11)?;
                    }
                    if matches!(object_type, 17 | 19 | 20 | 23) {
                        let _resilience_flags = r.read(3)?;
                    }
                    let _extension_flag3 = r.read(1)?;
                }
                if matches!(object_type, 17 | 19..=27) {
                    let _ep_config = r.read(2)?;
                }
                ga_complete = true;
            }
        }

        // Backward-compatible explicit signalling: sync extension 0x2b7 after the
        // core config (only when the config did not start hierarchically).
        if ga_complete && sbr_signalling == SbrSignalling::None && r.bits_left() >= 16 {
            let sync = r.read(11)?;
            if sync == 0x2b7 {
                let ext_object_type = read_object_type(&mut r)?;
                if ext_object_type == object_type::SBR {
                    sbr_signalling = SbrSignalling::BackwardCompatible;
                    let present = r.read(1)? == 1;
                    sbr_present = Some(present);
                    if present {
                        let (_, ext_rate) = read_frequency(&mut r)?;
                        extension_sample_rate = Some(ext_rate);
                        if r.bits_left() >= 12 && r.read(11)? == 0x548 {
                            ps_present = Some(r.read(1)? == 1);
                        }
                    }
                } else if ext_object_type == object_type::ER_BSAC {
                    sbr_signalling = SbrSignalling::BackwardCompatible;
                    let present = r.read(1)? == 1;
                    sbr_present = Some(present);
                    if present {
                        let (_, ext_rate) = read_frequency(&mut r)?;
                        extension_sample_rate = Some(ext_rate);
                    }
                    let _extension_channel_configuration = r.read(4)?;
                }
            }
        }

        Ok(AudioSpecificConfig {
            signalled_object_type: signalled,
            object_type,
            sampling_frequency_index: sfi,
            sample_rate,
            channel_configuration,
            frame_length,
            sbr_present,
            ps_present,
            extension_sample_rate,
            sbr_signalling,
        })
    }

    /// The number of channels of `channel_configuration`, or `None` for 0 (defined by
    /// a program config element) and the reserved values.
    pub fn channels(&self) -> Option<u8> {
        match self.channel_configuration {
            1..=6 => Some(self.channel_configuration),
            7 => Some(8),
            11 => Some(7),
            12 | 14 => Some(8),
            13 => Some(24),
            _ => None,
        }
    }

    /// True when SBR (HE-AAC) is explicitly signalled as present.
    pub fn is_he_aac(&self) -> bool {
        self.sbr_present == Some(true)
    }

    /// True when PS (HE-AAC v2) is explicitly signalled as present.
    pub fn is_he_aac_v2(&self) -> bool {
        self.ps_present == Some(true)
    }

    /// True when the stream may use implicitly signalled SBR: an AAC-LC config with no
    /// explicit SBR flag and a core rate of at most 24 kHz (SBR doubles it).
    pub fn may_have_implicit_sbr(&self) -> bool {
        self.sbr_present.is_none() && self.sample_rate <= 24000
    }

    /// The nominal output rate: the SBR rate when SBR is explicitly present, else the
    /// core rate. [`AacDecoder`] always outputs the core rate (see the module docs).
    pub fn nominal_sample_rate(&self) -> u32 {
        match (self.sbr_present, self.extension_sample_rate) {
            (Some(true), Some(rate)) => rate,
            _ => self.sample_rate,
        }
    }

    /// A minimal AAC-LC config for the core of this stream (what the LC decoder needs).
    fn core_lc_config(&self) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.write(5, u32::from(object_type::AAC_LC));
        match self.sampling_frequency_index {
            Some(i) => w.write(4, u32::from(i)),
            None => {
                w.write(4, 15);
                w.write(24, self.sample_rate);
            }
        }
        w.write(4, u32::from(self.channel_configuration));
        // GASpecificConfig: frameLengthFlag, dependsOnCoreCoder, extensionFlag.
        w.write(1, u32::from(self.frame_length == 960));
        w.write(1, 0);
        w.write(1, 0);
        w.finish()
    }
}

fn is_ga_object_type(aot: u8) -> bool {
    matches!(aot, 1 | 2 | 3 | 4 | 6 | 7 | 17 | 19 | 20 | 21 | 22 | 23)
}

fn read_object_type(r: &mut BitReader<'_>) -> Result<u8, AudioError> {
    let aot = r.read(5)? as u8;
    if aot == 31 {
        // Escape: 32 + a 6-bit extension.
        Ok(32 + r.read(6)? as u8)
    } else {
        Ok(aot)
    }
}

fn read_frequency(r: &mut BitReader<'_>) -> Result<(Option<u8>, u32), AudioError> {
    let index = r.read(4)? as u8;
    match index {
        15 => {
            let rate = r.read(24)?;
            if rate == 0 {
                return Err(AudioError::InvalidConfig(
                    "explicit sampling frequency of 0".into(),
                ));
            }
            Ok((None, rate))
        }
        13 | 14 => Err(AudioError::InvalidConfig(format!(
            "reserved sampling frequency index {index}"
        ))),
        _ => Ok((Some(index), SAMPLING_FREQUENCIES[usize::from(index)])),
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn bits_left(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    /// Reads `n` ≤ 32 bits, most significant first.
    fn read(&mut self, n: usize) -> Result<u32, AudioError> {
        if n > self.bits_left() {
            return Err(AudioError::InvalidConfig(
                "AudioSpecificConfig is truncated".into(),
            ));
        }
        let mut v: u32 = 0;
        for _ in 0..n {
            let byte = self.data[self.pos / 8];
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Ok(v)
    }
}

#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    fn write(&mut self, n: usize, value: u32) {
        for i in (0..n).rev() {
            if self.bits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            let bit = ((value >> i) & 1) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= bit << (7 - self.bits % 8);
            }
            self.bits += 1;
        }
    }

    fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Decodes raw AAC frames (no ADTS header) to f32 PCM.
///
/// Supports AAC-LC mono and stereo with 1024-sample frames, and the AAC-LC core of
/// HE-AAC v1/v2 (see the module docs: output at the core rate, no SBR/PS).
pub struct AacDecoder {
    config: AudioSpecificConfig,
    params: AudioCodecParameters,
    inner: SymphoniaAac,
    channels: u8,
    scratch: Vec<f32>,
}

impl AacDecoder {
    /// Creates a decoder from an `AudioSpecificConfig`.
    pub fn new(asc: &[u8]) -> Result<Self, AudioError> {
        let config = AudioSpecificConfig::parse(asc)?;
        if config.object_type != object_type::AAC_LC {
            return Err(AudioError::Unsupported(format!(
                "AAC object type {} (only AAC-LC, and the LC core of HE-AAC, decode)",
                config.object_type
            )));
        }
        if config.frame_length != 1024 {
            return Err(AudioError::Unsupported("960-sample AAC frames".into()));
        }
        let channels = match config.channels() {
            Some(c @ 1..=2) => c,
            Some(c) => {
                return Err(AudioError::Unsupported(format!(
                    "{c} AAC channels (mono and stereo decode)"
                )))
            }
            None => {
                return Err(AudioError::Unsupported(format!(
                    "AAC channel configuration {}",
                    config.channel_configuration
                )))
            }
        };
        let mut params = AudioCodecParameters::new();
        params
            .for_codec(CODEC_ID_AAC)
            .with_sample_rate(config.sample_rate)
            .with_channels(Channels::Discrete(u16::from(channels)))
            .with_extra_data(config.core_lc_config().into_boxed_slice());
        let inner = new_inner(&params)?;
        Ok(AacDecoder {
            config,
            params,
            inner,
            channels,
            scratch: Vec::new(),
        })
    }

    /// The parsed config.
    pub fn config(&self) -> &AudioSpecificConfig {
        &self.config
    }

    /// The rate of the decoded PCM: the core rate (half the nominal rate for HE-AAC).
    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    /// The channel count of the decoded PCM.
    pub fn channels(&self) -> u8 {
        self.channels
    }

    /// Samples per channel of one decoded frame (1024).
    pub fn frame_length(&self) -> usize {
        usize::from(self.config.frame_length)
    }

    /// Decodes one raw AAC frame to interleaved f32 PCM at [`Self::sample_rate`].
    ///
    /// A corrupt or truncated frame gives an error (never a panic), and the decoder
    /// stays usable for the next frame. [`Self::silence`] gives a concealment frame.
    pub fn decode(&mut self, raw_frame: &[u8]) -> Result<Pcm, AudioError> {
        if raw_frame.is_empty() {
            return Err(AudioError::Decode("empty AAC frame".into()));
        }
        if let Err(e) = self.try_decode(raw_frame) {
            // Symphonia fixes its channel-element layout on the first frame it decodes
            // and rejects every later frame that differs, so one corrupt frame (say, a
            // single channel element in a stereo stream) would fail all that follow.
            // Its state may also be half-updated. Start afresh and try this frame
            // again: if it was the stale state, the frame decodes now.
            self.inner = new_inner(&self.params)?;
            if self.try_decode(raw_frame).is_err() {
                self.inner = new_inner(&self.params)?;
                return Err(e);
            }
        }
        let mut samples = std::mem::take(&mut self.scratch);
        for s in samples.iter_mut() {
            if !s.is_finite() {
                *s = 0.0;
            }
        }
        Ok(Pcm {
            samples,
            sample_rate: self.config.sample_rate,
            channels: self.channels,
        })
    }

    /// Decodes into `self.scratch`; any failure (error, panic, wrong shape) is an error.
    fn try_decode(&mut self, raw_frame: &[u8]) -> Result<(), AudioError> {
        let packet = PacketRef::new(0, Timestamp::new(0), Duration::new(0), raw_frame);
        let scratch = &mut self.scratch;
        let inner = &mut self.inner;
        let result = catch_unwind(AssertUnwindSafe(|| match inner.decode_ref(&packet) {
            Ok(buf) => {
                let frames = buf.frames();
                let channels = buf.spec().channels().count();
                buf.copy_to_vec_interleaved(scratch);
                Ok((frames, channels))
            }
            Err(e) => Err(e.to_string()),
        }));
        let (frames, channels) = match result {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(AudioError::Decode(e)),
            Err(_) => {
                return Err(AudioError::Decode(
                    "AAC decoder panicked on the frame".into(),
                ))
            }
        };
        if channels != usize::from(self.channels) || frames != self.frame_length() {
            return Err(AudioError::Decode(format!(
                "AAC frame decoded to {frames} samples x {channels} channels"
            )));
        }
        Ok(())
    }

    /// A frame of silence of the decoded frame's shape, to conceal a lost frame.
    pub fn silence(&self) -> Pcm {
        Pcm {
            samples: vec![0.0; self.frame_length() * usize::from(self.channels)],
            sample_rate: self.config.sample_rate,
            channels: self.channels,
        }
    }

    /// Forgets the overlap state (for a discontinuity in the stream).
    pub fn reset(&mut self) {
        self.inner.reset();
    }
}

fn new_inner(params: &AudioCodecParameters) -> Result<SymphoniaAac, AudioError> {
    SymphoniaAac::try_new(params, &AudioDecoderOptions::default())
        .map_err(|e| AudioError::Unsupported(format!("AAC decoder: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_config_round_trips() {
        let asc = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
        assert_eq!(asc.core_lc_config(), vec![0x12, 0x10]);
        let explicit = AudioSpecificConfig {
            sampling_frequency_index: None,
            sample_rate: 37800,
            ..asc
        };
        let bytes = explicit.core_lc_config();
        let back = AudioSpecificConfig::parse(&bytes).unwrap();
        assert_eq!(back.sample_rate, 37800);
        assert_eq!(back.sampling_frequency_index, None);
        assert_eq!(back.channel_configuration, 2);
    }
}
