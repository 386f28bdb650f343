//! RTMP media to the packets of the room's tracks: H264 passed through
//! (AVCC access units to RFC 6184 RTP payloads, the sequence header's SPS
//! and PPS in front of every keyframe), AAC decoded and encoded to Opus
//! 48 kHz, enhanced-RTMP Opus passed through. Both take their RTP timestamps from the RTMP timeline (video:
//! presentation time x 90; audio: the 48 kHz sample clock anchored at the
//! first frame's time), so they stay in sync for the viewers.

use std::sync::Arc;
use std::time::Instant;

use mediamesh_audio::AacToOpus;
use mediamesh_core::{Codec, MediaPacket};
use mediamesh_rtmp::avc::{self, AvcDecoderConfig};
use mediamesh_rtmp::flv::{self, AudioCodec, AudioPacket, VideoCodec, VideoPacket};
use mediamesh_rtmp::h264_rtp::H264Packetizer;

/// Why a stream cannot be taken; said to the publisher and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("{0} is not supported: publish H264 video (or none)")]
    VideoCodec(String),
    #[error("{0} is not supported: publish AAC or Opus audio (or none)")]
    AudioCodec(String),
    #[error(
        "B-frames are not supported (WebRTC players need frames in presentation order): \
         encode without them (x264: -bf 0 or profile baseline; OBS: x264 options bframes=0)"
    )]
    BFrames,
    #[error("malformed {0}")]
    Malformed(String),
}

/// RTP payload bytes per packet (fits a 1500 MTU with SRTP and extensions).
const MAX_PAYLOAD: usize = 1200;

/// The audio channels viewers get.
const OUT_CHANNELS: u8 = 2;

pub struct Converter {
    avc: Option<AvcDecoderConfig>,
    packetizer: H264Packetizer,
    aac: Option<AacToOpus>,
    video_seq: u64,
    audio_seq: u64,
    /// The last video presentation time (ms).
    last_pts: Option<u64>,
    /// Decoding errors so far (frames skipped), for the log.
    pub audio_errors: u64,
}

impl Default for Converter {
    fn default() -> Self {
        Self::new()
    }
}

impl Converter {
    pub fn new() -> Self {
        Self {
            avc: None,
            packetizer: H264Packetizer::new(MAX_PAYLOAD),
            aac: None,
            video_seq: 0,
            audio_seq: 0,
            last_pts: None,
            audio_errors: 0,
        }
    }

    /// A video message body at RTMP time `ts_ms`: the packets of its access
    /// unit (none for a sequence header).
    pub fn video(
        &mut self,
        ts_ms: u64,
        body: &[u8],
        now: Instant,
    ) -> Result<Vec<MediaPacket>, IngestError> {
        let tag = flv::parse_video(body).map_err(|e| IngestError::Malformed(e.to_string()))?;
        let keyframe = tag.is_keyframe();
        match tag.packet {
            VideoPacket::SequenceHeader {
                codec: VideoCodec::Avc,
                config,
            } => {
                let c = AvcDecoderConfig::parse(config)
                    .map_err(|e| IngestError::Malformed(format!("AVC sequence header: {e}")))?;
                self.avc = Some(c);
                Ok(Vec::new())
            }
            VideoPacket::Frame {
                codec: VideoCodec::Avc,
                composition_time_ms,
                data,
            } => {
                // Frames in decode order whose presentation times go back:
                // B-frames (a constant composition offset is fine).
                let pts = ts_ms.wrapping_add_signed(i64::from(composition_time_ms));
                if self.last_pts.is_some_and(|last| pts < last) {
                    return Err(IngestError::BFrames);
                }
                self.last_pts = Some(pts);
                let Some(config) = &self.avc else {
                    // Frames before the sequence header cannot be decoded.
                    return Ok(Vec::new());
                };
                let nalus = avc::access_unit_nalus(data, config.nal_length_size)
                    .map_err(|e| IngestError::Malformed(format!("AVC access unit: {e}")))?;
                let nalus = avc::with_parameter_sets(config, &nalus, keyframe);
                let timestamp = (pts * 90) as u32;
                let payloads = self.packetizer.packetize(&nalus, timestamp);
                Ok(payloads
                    .into_iter()
                    .map(|p| {
                        self.video_seq += 1;
                        MediaPacket {
                            codec: Codec::H264,
                            seq: self.video_seq,
                            timestamp: p.timestamp,
                            marker: p.marker,
                            keyframe: Codec::H264.is_keyframe_start(&p.payload),
                            audio_level: None,
                            dependency_descriptor: None,
                            arrival: now,
                            payload: Arc::from(p.payload),
                        }
                    })
                    .collect())
            }
            VideoPacket::SequenceHeader { codec, .. }
            | VideoPacket::Frame { codec, .. }
            | VideoPacket::Mpeg2TsSequenceStart { codec, .. } => {
                Err(IngestError::VideoCodec(codec.name().to_owned()))
            }
            VideoPacket::Unsupported(u) => Err(IngestError::VideoCodec(u.to_string())),
            VideoPacket::EndOfSequence { .. }
            | VideoPacket::Metadata { .. }
            | VideoPacket::Command(_) => Ok(Vec::new()),
        }
    }

    /// An audio message body at RTMP time `ts_ms`: Opus packets (20 ms
    /// each; AAC frames of 1024 samples make one or two).
    pub fn audio(
        &mut self,
        ts_ms: u64,
        body: &[u8],
        now: Instant,
    ) -> Result<Vec<MediaPacket>, IngestError> {
        let tag = flv::parse_audio(body).map_err(|e| IngestError::Malformed(e.to_string()))?;
        match tag.packet {
            AudioPacket::SequenceHeader {
                codec: AudioCodec::Aac,
                config,
            } => {
                let t = AacToOpus::new(config, OUT_CHANNELS).map_err(|e| {
                    IngestError::AudioCodec(format!("this AAC configuration ({e})"))
                })?;
                self.aac = Some(t);
                Ok(Vec::new())
            }
            AudioPacket::Frame {
                codec: AudioCodec::Aac,
                data,
            } => {
                let Some(t) = self.aac.as_mut() else {
                    return Ok(Vec::new());
                };
                let frames = match t.push(data, ts_ms) {
                    Ok(f) => f,
                    Err(e) => {
                        self.audio_errors += 1;
                        tracing::debug!("AAC frame skipped: {e}");
                        return Ok(Vec::new());
                    }
                };
                Ok(frames
                    .into_iter()
                    .map(|f| {
                        self.audio_seq += 1;
                        MediaPacket {
                            codec: Codec::Opus,
                            seq: self.audio_seq,
                            timestamp: f.rtp_timestamp,
                            marker: false,
                            keyframe: true,
                            audio_level: None,
                            dependency_descriptor: None,
                            arrival: now,
                            payload: Arc::from(f.data),
                        }
                    })
                    .collect())
            }
            // Enhanced RTMP Opus: passed through (one Opus packet a frame).
            AudioPacket::SequenceHeader {
                codec: AudioCodec::Opus,
                ..
            } => Ok(Vec::new()),
            AudioPacket::Frame {
                codec: AudioCodec::Opus,
                data,
            } => {
                self.audio_seq += 1;
                Ok(vec![MediaPacket {
                    codec: Codec::Opus,
                    seq: self.audio_seq,
                    timestamp: (ts_ms * 48) as u32,
                    marker: false,
                    keyframe: true,
                    audio_level: None,
                    dependency_descriptor: None,
                    arrival: now,
                    payload: Arc::from(data),
                }])
            }
            AudioPacket::Unsupported(u) => Err(IngestError::AudioCodec(u.to_string())),
            AudioPacket::EndOfSequence { .. } | AudioPacket::MultichannelConfig { .. } => {
                Ok(Vec::new())
            }
        }
    }
}
