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
                        MediaPacket::audio(
                            Codec::Opus,
                            self.audio_seq,
                            f.rtp_timestamp,
                            f.data,
                            now,
                        )
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
                let ts = (ts_ms * 48) as u32;
                Ok(vec![MediaPacket::audio(
                    Codec::Opus,
                    self.audio_seq,
                    ts,
                    data.to_vec(),
                    now,
                )])
            }
            AudioPacket::Unsupported(u) => Err(IngestError::AudioCodec(u.to_string())),
            AudioPacket::EndOfSequence { .. } | AudioPacket::MultichannelConfig { .. } => {
                Ok(Vec::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0x8c, 0x68];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    /// An FLV AVC sequence header tag body with one SPS and one PPS.
    fn sequence_header() -> Vec<u8> {
        let mut b = vec![0x17, 0, 0, 0, 0]; // keyframe, AVC, packet type 0, cts 0
        b.extend_from_slice(&[1, SPS[1], SPS[2], SPS[3], 0xff, 0xe1]);
        b.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        b.extend_from_slice(SPS);
        b.push(1);
        b.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        b.extend_from_slice(PPS);
        b
    }

    /// A frame tag body: one NAL unit of `nal_type`, 4-byte length prefix.
    fn frame(key: bool, cts: i32, nal_type: u8, len: usize) -> Vec<u8> {
        let mut b = vec![if key { 0x17 } else { 0x27 }, 1];
        b.extend_from_slice(&cts.to_be_bytes()[1..]);
        let mut nal = vec![0x60 | nal_type];
        nal.resize(len, 0xab);
        b.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        b.extend_from_slice(&nal);
        b
    }

    #[test]
    fn h264_keyframes_carry_the_parameter_sets_and_timestamps_follow_rtmp_time() {
        let now = Instant::now();
        let mut c = Converter::new();
        // Frames before the sequence header are skipped, not errors.
        assert!(c.video(0, &frame(true, 0, 5, 100), now).unwrap().is_empty());
        assert!(c.video(0, &sequence_header(), now).unwrap().is_empty());
        let key = c.video(1000, &frame(true, 0, 5, 3000), now).unwrap();
        // STAP-A (SPS, PPS), then FU-A fragments of the IDR slice.
        assert!(key.len() >= 3, "{}", key.len());
        assert!(key[0].keyframe && key[0].payload[0] & 0x1f == 24);
        assert!(key
            .iter()
            .all(|p| p.timestamp == 90_000 && p.codec == Codec::H264));
        assert!(key.last().is_some_and(|p| p.marker));
        assert!(key.iter().rev().skip(1).all(|p| !p.marker));
        let delta = c.video(1040, &frame(false, 0, 1, 200), now).unwrap();
        assert_eq!(delta.len(), 1);
        assert!(!delta[0].keyframe);
        assert_eq!(delta[0].timestamp, 1040 * 90);
        let seqs: Vec<u64> = key.iter().chain(&delta).map(|p| p.seq).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }

    #[test]
    fn b_frames_are_refused_but_a_constant_composition_offset_is_not() {
        let now = Instant::now();
        let mut c = Converter::new();
        c.video(0, &sequence_header(), now).unwrap();
        // A constant offset of one frame: presentation times still rise.
        for (i, ts) in [0u64, 40, 80].into_iter().enumerate() {
            let r = c.video(ts, &frame(i == 0, 40, if i == 0 { 5 } else { 1 }, 50), now);
            assert!(r.is_ok(), "{r:?}");
        }
        // Decode order I P B: the B-frame's presentation time goes back.
        let mut c = Converter::new();
        c.video(0, &sequence_header(), now).unwrap();
        c.video(0, &frame(true, 0, 5, 50), now).unwrap();
        c.video(40, &frame(false, 80, 1, 50), now).unwrap();
        assert!(matches!(
            c.video(80, &frame(false, 0, 1, 50), now),
            Err(IngestError::BFrames)
        ));
        assert!(IngestError::BFrames.to_string().contains("-bf 0"));
    }

    #[test]
    fn other_codecs_and_garbage_are_clear_errors() {
        let now = Instant::now();
        let mut c = Converter::new();
        // Sorenson H.263 video, MP3 audio.
        let e = c.video(0, &[0x22, 0, 0], now).unwrap_err();
        assert!(e.to_string().contains("H.263"), "{e}");
        let e = c.audio(0, &[0x2f, 0, 0], now).unwrap_err();
        assert!(e.to_string().contains("MP3"), "{e}");
        assert!(matches!(
            c.video(0, &[], now),
            Err(IngestError::Malformed(_))
        ));
        assert!(matches!(
            c.video(0, &[0x17, 0, 0, 0, 0, 9], now),
            Err(IngestError::Malformed(_))
        ));
        // Audio frames before the AAC configuration are skipped.
        assert!(c.audio(0, &[0xaf, 1, 1, 2, 3], now).unwrap().is_empty());
    }
}
