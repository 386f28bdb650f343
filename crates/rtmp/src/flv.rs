//! FLV tag bodies as RTMP audio (type 8) and video (type 9) messages carry
//! them: the legacy headers of the FLV specification v10.1 (annex E.4.2.1
//! AUDIODATA, E.4.3.1 VIDEODATA, AACAUDIODATA, AVCVIDEOPACKET) and the
//! extended headers of Enhanced RTMP (Veovera E-RTMP v1/v2: ExVideoTagHeader
//! with VideoPacketType and a video FourCC, ExAudioTagHeader with
//! AudioPacketType and an audio FourCC).
//!
//! Parsing borrows from the message. Codecs and packet kinds we do not handle
//! come back as `Unsupported` values that name them (so a driver can say
//! "Sorenson H.263 is not supported" instead of a parse error); errors are
//! kept for bodies that are malformed.

use std::fmt;

use thiserror::Error;

/// A malformed tag body.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlvError {
    #[error("empty {0} tag")]
    Empty(&'static str),
    #[error("{0} tag header truncated")]
    Truncated(&'static str),
    #[error("invalid AVCPacketType {0}")]
    InvalidAvcPacketType(u8),
    #[error("invalid AACPacketType {0}")]
    InvalidAacPacketType(u8),
}

/// Video frame type (the high bits of the first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    Key,
    Inter,
    DisposableInter,
    GeneratedKey,
    /// Video info / command frame.
    Command,
    Reserved(u8),
}

impl FrameType {
    fn from_bits(v: u8) -> Self {
        match v {
            1 => FrameType::Key,
            2 => FrameType::Inter,
            3 => FrameType::DisposableInter,
            4 => FrameType::GeneratedKey,
            5 => FrameType::Command,
            n => FrameType::Reserved(n),
        }
    }

    pub fn is_key(self) -> bool {
        matches!(self, FrameType::Key | FrameType::GeneratedKey)
    }
}

/// Video codecs a tag can name that we parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264: legacy codec id 7 or FourCC `avc1`.
    Avc,
    /// H.265: FourCC `hvc1`.
    Hevc,
    /// FourCC `av01`.
    Av1,
    /// FourCC `vp09`.
    Vp9,
    /// FourCC `vp08` (E-RTMP v2).
    Vp8,
}

impl VideoCodec {
    fn from_fourcc(f: [u8; 4]) -> Option<Self> {
        Some(match &f {
            b"avc1" => VideoCodec::Avc,
            b"hvc1" => VideoCodec::Hevc,
            b"av01" => VideoCodec::Av1,
            b"vp09" => VideoCodec::Vp9,
            b"vp08" => VideoCodec::Vp8,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::Avc => "H.264",
            VideoCodec::Hevc => "H.265",
            VideoCodec::Av1 => "AV1",
            VideoCodec::Vp9 => "VP9",
            VideoCodec::Vp8 => "VP8",
        }
    }
}

/// Video we do not parse, named for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsupportedVideo {
    /// A legacy FLV codec id other than 7 (AVC).
    LegacyCodec(u8),
    /// An enhanced-RTMP FourCC we do not know.
    FourCc([u8; 4]),
    /// An enhanced-RTMP VideoPacketType we do not handle (6 Multitrack,
    /// 7 ModEx, reserved values).
    PacketType(u8),
}

impl fmt::Display for UnsupportedVideo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            UnsupportedVideo::LegacyCodec(id) => {
                let name = match id {
                    1 => "JPEG",
                    2 => "Sorenson H.263",
                    3 => "Screen video",
                    4 => "On2 VP6",
                    5 => "On2 VP6 with alpha",
                    6 => "Screen video version 2",
                    12 => "HEVC with the non-standard FLV codec id 12 (use enhanced RTMP)",
                    _ => "unknown codec",
                };
                write!(f, "{name} (FLV video codec id {id})")
            }
            UnsupportedVideo::FourCc(c) => write!(f, "video FourCC '{}'", fourcc_str(c)),
            UnsupportedVideo::PacketType(t) => {
                let name = match t {
                    6 => "multitrack video",
                    7 => "ModEx video",
                    _ => "reserved video packet type",
                };
                write!(f, "enhanced RTMP {name} (VideoPacketType {t})")
            }
        }
    }
}

/// What a video tag holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoPacket<'a> {
    /// Decoder configuration: AVCDecoderConfigurationRecord,
    /// HEVCDecoderConfigurationRecord, AV1CodecConfigurationRecord or
    /// VPCodecConfigurationRecord.
    SequenceHeader {
        codec: VideoCodec,
        config: &'a [u8],
    },
    /// Coded frame data (for AVC/HEVC: length-prefixed NAL units).
    /// Presentation time = message timestamp + `composition_time_ms`.
    Frame {
        codec: VideoCodec,
        composition_time_ms: i32,
        data: &'a [u8],
    },
    EndOfSequence {
        codec: VideoCodec,
    },
    /// E-RTMP VideoPacketType.Metadata: AMF-encoded (e.g. colorInfo).
    Metadata {
        data: &'a [u8],
    },
    /// E-RTMP MPEG2TSSequenceStart (AV1 video descriptor).
    Mpeg2TsSequenceStart {
        codec: VideoCodec,
        data: &'a [u8],
    },
    /// Video info / command frame: 0 start of seek, 1 end of seek.
    Command(u8),
    Unsupported(UnsupportedVideo),
}

/// A parsed video tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTag<'a> {
    pub frame_type: FrameType,
    /// The tag used the enhanced-RTMP header.
    pub enhanced: bool,
    pub packet: VideoPacket<'a>,
}

impl VideoTag<'_> {
    pub fn is_keyframe(&self) -> bool {
        self.frame_type.is_key()
    }
}

/// Parses a video message payload.
pub fn parse_video(body: &[u8]) -> Result<VideoTag<'_>, FlvError> {
    const WHAT: &str = "video";
    let &b0 = body.first().ok_or(FlvError::Empty(WHAT))?;
    let enhanced = b0 & 0x80 != 0;
    if !enhanced {
        let frame_type = FrameType::from_bits(b0 >> 4);
        let codec_id = b0 & 0x0f;
        let tag = |packet| VideoTag {
            frame_type,
            enhanced,
            packet,
        };
        if frame_type == FrameType::Command {
            let &c = body.get(1).ok_or(FlvError::Truncated(WHAT))?;
            return Ok(tag(VideoPacket::Command(c)));
        }
        if codec_id != 7 {
            return Ok(tag(VideoPacket::Unsupported(
                UnsupportedVideo::LegacyCodec(codec_id),
            )));
        }
        let h = body.get(1..5).ok_or(FlvError::Truncated(WHAT))?;
        let data = &body[5..];
        let codec = VideoCodec::Avc;
        let packet = match h[0] {
            0 => VideoPacket::SequenceHeader {
                codec,
                config: data,
            },
            1 => VideoPacket::Frame {
                codec,
                composition_time_ms: si24(&h[1..4]),
                data,
            },
            2 => VideoPacket::EndOfSequence { codec },
            t => return Err(FlvError::InvalidAvcPacketType(t)),
        };
        return Ok(tag(packet));
    }

    let frame_type = FrameType::from_bits((b0 >> 4) & 0x07);
    let packet_type = b0 & 0x0f;
    let tag = |packet| VideoTag {
        frame_type,
        enhanced,
        packet,
    };
    const METADATA: u8 = 4;
    if packet_type != METADATA && frame_type == FrameType::Command {
        let &c = body.get(1).ok_or(FlvError::Truncated(WHAT))?;
        return Ok(tag(VideoPacket::Command(c)));
    }
    if packet_type > 5 {
        return Ok(tag(VideoPacket::Unsupported(UnsupportedVideo::PacketType(
            packet_type,
        ))));
    }
    let fourcc = fourcc_at(body, 1).ok_or(FlvError::Truncated(WHAT))?;
    let data = &body[5..];
    if packet_type == METADATA {
        return Ok(tag(VideoPacket::Metadata { data }));
    }
    let Some(codec) = VideoCodec::from_fourcc(fourcc) else {
        return Ok(tag(VideoPacket::Unsupported(UnsupportedVideo::FourCc(
            fourcc,
        ))));
    };
    let packet = match packet_type {
        0 => VideoPacket::SequenceHeader {
            codec,
            config: data,
        },
        1 if matches!(codec, VideoCodec::Avc | VideoCodec::Hevc) => {
            let ct = data.get(0..3).ok_or(FlvError::Truncated(WHAT))?;
            VideoPacket::Frame {
                codec,
                composition_time_ms: si24(ct),
                data: &data[3..],
            }
        }
        1 | 3 => VideoPacket::Frame {
            codec,
            composition_time_ms: 0,
            data,
        },
        2 => VideoPacket::EndOfSequence { codec },
        _ => VideoPacket::Mpeg2TsSequenceStart { codec, data },
    };
    Ok(tag(packet))
}

/// Audio codecs we parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// Legacy sound format 10 or FourCC `mp4a`.
    Aac,
    /// FourCC `Opus` (E-RTMP v2).
    Opus,
}

impl AudioCodec {
    pub fn name(self) -> &'static str {
        match self {
            AudioCodec::Aac => "AAC",
            AudioCodec::Opus => "Opus",
        }
    }
}

/// Audio we do not parse, named for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsupportedAudio {
    /// A legacy SoundFormat other than 10 (AAC).
    LegacyFormat(u8),
    /// An enhanced-RTMP FourCC other than `mp4a` and `Opus`.
    FourCc([u8; 4]),
    /// An enhanced-RTMP AudioPacketType we do not handle (5 Multitrack,
    /// 7 ModEx, reserved values).
    PacketType(u8),
}

impl fmt::Display for UnsupportedAudio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            UnsupportedAudio::LegacyFormat(id) => {
                let name = match id {
                    0 => "Linear PCM, platform endian",
                    1 => "ADPCM",
                    2 => "MP3",
                    3 => "Linear PCM, little endian",
                    4 => "Nellymoser 16 kHz mono",
                    5 => "Nellymoser 8 kHz mono",
                    6 => "Nellymoser",
                    7 => "G.711 A-law",
                    8 => "G.711 mu-law",
                    11 => "Speex",
                    14 => "MP3 8 kHz",
                    15 => "Device-specific sound",
                    _ => "reserved sound format",
                };
                write!(f, "{name} (FLV sound format {id})")
            }
            UnsupportedAudio::FourCc(c) => {
                let name = match &c {
                    b".mp3" => "MP3",
                    b"fLaC" => "FLAC",
                    b"ac-3" => "AC-3",
                    b"ec-3" => "E-AC-3",
                    _ => "unknown codec",
                };
                write!(f, "{name} (audio FourCC '{}')", fourcc_str(c))
            }
            UnsupportedAudio::PacketType(t) => {
                let name = match t {
                    5 => "multitrack audio",
                    7 => "ModEx audio",
                    _ => "reserved audio packet type",
                };
                write!(f, "enhanced RTMP {name} (AudioPacketType {t})")
            }
        }
    }
}

/// What an audio tag holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioPacket<'a> {
    /// AAC: AudioSpecificConfig; Opus: the identification header.
    SequenceHeader {
        codec: AudioCodec,
        config: &'a [u8],
    },
    /// One raw frame (AAC: without ADTS header).
    Frame {
        codec: AudioCodec,
        data: &'a [u8],
    },
    EndOfSequence {
        codec: AudioCodec,
    },
    /// E-RTMP AudioPacketType.MultichannelConfig, unparsed.
    MultichannelConfig {
        codec: AudioCodec,
        data: &'a [u8],
    },
    Unsupported(UnsupportedAudio),
}

/// A parsed audio tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTag<'a> {
    /// The tag used the enhanced-RTMP header (sound format 9).
    pub enhanced: bool,
    pub packet: AudioPacket<'a>,
}

/// Parses an audio message payload.
pub fn parse_audio(body: &[u8]) -> Result<AudioTag<'_>, FlvError> {
    const WHAT: &str = "audio";
    let &b0 = body.first().ok_or(FlvError::Empty(WHAT))?;
    let format = b0 >> 4;
    match format {
        10 => {
            let &t = body.get(1).ok_or(FlvError::Truncated(WHAT))?;
            let data = &body[2..];
            let codec = AudioCodec::Aac;
            let packet = match t {
                0 => AudioPacket::SequenceHeader {
                    codec,
                    config: data,
                },
                1 => AudioPacket::Frame { codec, data },
                t => return Err(FlvError::InvalidAacPacketType(t)),
            };
            Ok(AudioTag {
                enhanced: false,
                packet,
            })
        }
        9 => {
            let packet_type = b0 & 0x0f;
            let tag = |packet| AudioTag {
                enhanced: true,
                packet,
            };
            if !matches!(packet_type, 0 | 1 | 2 | 4) {
                return Ok(tag(AudioPacket::Unsupported(UnsupportedAudio::PacketType(
                    packet_type,
                ))));
            }
            let fourcc = fourcc_at(body, 1).ok_or(FlvError::Truncated(WHAT))?;
            let codec = match &fourcc {
                b"mp4a" => AudioCodec::Aac,
                b"Opus" => AudioCodec::Opus,
                _ => {
                    return Ok(tag(AudioPacket::Unsupported(UnsupportedAudio::FourCc(
                        fourcc,
                    ))))
                }
            };
            let data = &body[5..];
            Ok(tag(match packet_type {
                0 => AudioPacket::SequenceHeader {
                    codec,
                    config: data,
                },
                1 => AudioPacket::Frame { codec, data },
                2 => AudioPacket::EndOfSequence { codec },
                _ => AudioPacket::MultichannelConfig { codec, data },
            }))
        }
        f => Ok(AudioTag {
            enhanced: false,
            packet: AudioPacket::Unsupported(UnsupportedAudio::LegacyFormat(f)),
        }),
    }
}

fn fourcc_at(body: &[u8], at: usize) -> Option<[u8; 4]> {
    let b = body.get(at..at + 4)?;
    Some([b[0], b[1], b[2], b[3]])
}

fn fourcc_str(c: [u8; 4]) -> String {
    c.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

/// A signed 24-bit big-endian integer.
fn si24(b: &[u8]) -> i32 {
    let v = (i32::from(b[0]) << 16) | (i32::from(b[1]) << 8) | i32::from(b[2]);
    (v << 8) >> 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediamesh_testkit::Rng;

    #[test]
    fn legacy_avc() {
        // Keyframe, sequence header.
        let body = [0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f];
        let t = parse_video(&body).unwrap();
        assert!(t.is_keyframe());
        assert!(!t.enhanced);
        assert_eq!(
            t.packet,
            VideoPacket::SequenceHeader {
                codec: VideoCodec::Avc,
                config: &[1, 0x64, 0, 0x1f]
            }
        );
        // Inter frame, NALUs, composition time -33 (0xffffdf).
        let body = [0x27, 1, 0xff, 0xff, 0xdf, 0, 0, 0, 1, 0x41];
        let t = parse_video(&body).unwrap();
        assert_eq!(t.frame_type, FrameType::Inter);
        assert_eq!(
            t.packet,
            VideoPacket::Frame {
                codec: VideoCodec::Avc,
                composition_time_ms: -33,
                data: &[0, 0, 0, 1, 0x41]
            }
        );
        let body = [0x17, 1, 0, 0, 66, 0, 0, 0, 1, 0x65];
        assert!(matches!(
            parse_video(&body).unwrap().packet,
            VideoPacket::Frame {
                composition_time_ms: 66,
                ..
            }
        ));
        assert_eq!(
            parse_video(&[0x17, 2, 0, 0, 0]).unwrap().packet,
            VideoPacket::EndOfSequence {
                codec: VideoCodec::Avc
            }
        );
        assert_eq!(
            parse_video(&[0x57, 1]).unwrap().packet,
            VideoPacket::Command(1)
        );
        assert_eq!(
            parse_video(&[0x17, 3, 0, 0, 0]),
            Err(FlvError::InvalidAvcPacketType(3))
        );
        assert_eq!(
            parse_video(&[0x17, 1, 0]),
            Err(FlvError::Truncated("video"))
        );
        assert_eq!(parse_video(&[]), Err(FlvError::Empty("video")));
    }

    #[test]
    fn legacy_unsupported_codecs_are_named() {
        let t = parse_video(&[0x22, 0, 0]).unwrap();
        assert_eq!(
            t.packet,
            VideoPacket::Unsupported(UnsupportedVideo::LegacyCodec(2))
        );
        assert_eq!(
            UnsupportedVideo::LegacyCodec(2).to_string(),
            "Sorenson H.263 (FLV video codec id 2)"
        );
        assert_eq!(
            UnsupportedVideo::LegacyCodec(4).to_string(),
            "On2 VP6 (FLV video codec id 4)"
        );
    }

    #[test]
    fn enhanced_video() {
        // Keyframe, SequenceStart, hvc1.
        let body = [0x90, b'h', b'v', b'c', b'1', 1, 2, 3];
        let t = parse_video(&body).unwrap();
        assert!(t.enhanced && t.is_keyframe());
        assert_eq!(
            t.packet,
            VideoPacket::SequenceHeader {
                codec: VideoCodec::Hevc,
                config: &[1, 2, 3]
            }
        );
        // Inter, CodedFrames, hvc1: composition time present.
        let body = [0xa1, b'h', b'v', b'c', b'1', 0, 0, 40, 9, 9];
        assert_eq!(
            parse_video(&body).unwrap().packet,
            VideoPacket::Frame {
                codec: VideoCodec::Hevc,
                composition_time_ms: 40,
                data: &[9, 9]
            }
        );
        // CodedFrames av01: no composition time.
        let body = [0x91, b'a', b'v', b'0', b'1', 0x12, 0];
        assert_eq!(
            parse_video(&body).unwrap().packet,
            VideoPacket::Frame {
                codec: VideoCodec::Av1,
                composition_time_ms: 0,
                data: &[0x12, 0]
            }
        );
        // CodedFramesX avc1: no composition time.
        let body = [0x93, b'a', b'v', b'c', b'1', 0, 0, 0, 2, 0x65, 0];
        assert_eq!(
            parse_video(&body).unwrap().packet,
            VideoPacket::Frame {
                codec: VideoCodec::Avc,
                composition_time_ms: 0,
                data: &[0, 0, 0, 2, 0x65, 0]
            }
        );
        // CodedFrames avc1 needs its 3 composition time bytes.
        assert!(parse_video(&[0x91, b'a', b'v', b'c', b'1', 0]).is_err());
        assert_eq!(
            parse_video(&[0x92, b'v', b'p', b'0', b'9']).unwrap().packet,
            VideoPacket::EndOfSequence {
                codec: VideoCodec::Vp9
            }
        );
        assert_eq!(
            parse_video(&[0x84, b'a', b'v', b'0', b'1', 2, 0])
                .unwrap()
                .packet,
            VideoPacket::Metadata { data: &[2, 0] }
        );
        assert_eq!(
            parse_video(&[0x95, b'a', b'v', b'0', b'1', 7])
                .unwrap()
                .packet,
            VideoPacket::Mpeg2TsSequenceStart {
                codec: VideoCodec::Av1,
                data: &[7]
            }
        );
        // Command frame: a UI8 after the first byte, no FourCC.
        assert_eq!(
            parse_video(&[0xd1, 0]).unwrap().packet,
            VideoPacket::Command(0)
        );
        let t = parse_video(&[0x91, b'x', b'y', b'z', b'!', 0]).unwrap();
        assert_eq!(
            t.packet,
            VideoPacket::Unsupported(UnsupportedVideo::FourCc(*b"xyz!"))
        );
        assert_eq!(
            UnsupportedVideo::FourCc(*b"xyz!").to_string(),
            "video FourCC 'xyz!'"
        );
        assert_eq!(
            parse_video(&[0x96, 0]).unwrap().packet,
            VideoPacket::Unsupported(UnsupportedVideo::PacketType(6))
        );
        assert_eq!(
            parse_video(&[0x90, b'a']),
            Err(FlvError::Truncated("video"))
        );
    }

    #[test]
    fn audio() {
        // AAC, 44.1 kHz, 16 bit, stereo; AudioSpecificConfig 0x1210.
        let t = parse_audio(&[0xaf, 0, 0x12, 0x10]).unwrap();
        assert_eq!(
            t.packet,
            AudioPacket::SequenceHeader {
                codec: AudioCodec::Aac,
                config: &[0x12, 0x10]
            }
        );
        assert_eq!(
            parse_audio(&[0xaf, 1, 0x21, 0x10]).unwrap().packet,
            AudioPacket::Frame {
                codec: AudioCodec::Aac,
                data: &[0x21, 0x10]
            }
        );
        assert_eq!(
            parse_audio(&[0xaf, 2]),
            Err(FlvError::InvalidAacPacketType(2))
        );
        assert_eq!(parse_audio(&[0xaf]), Err(FlvError::Truncated("audio")));
        let t = parse_audio(&[0x2f, 0xff]).unwrap();
        assert_eq!(
            t.packet,
            AudioPacket::Unsupported(UnsupportedAudio::LegacyFormat(2))
        );
        assert_eq!(
            UnsupportedAudio::LegacyFormat(2).to_string(),
            "MP3 (FLV sound format 2)"
        );
        assert_eq!(
            UnsupportedAudio::LegacyFormat(11).to_string(),
            "Speex (FLV sound format 11)"
        );
        // Enhanced: Opus sequence start and frame, FLAC unsupported.
        assert_eq!(
            parse_audio(&[0x90, b'O', b'p', b'u', b's', 1])
                .unwrap()
                .packet,
            AudioPacket::SequenceHeader {
                codec: AudioCodec::Opus,
                config: &[1]
            }
        );
        assert_eq!(
            parse_audio(&[0x91, b'O', b'p', b'u', b's', 0xfc])
                .unwrap()
                .packet,
            AudioPacket::Frame {
                codec: AudioCodec::Opus,
                data: &[0xfc]
            }
        );
        let t = parse_audio(&[0x91, b'f', b'L', b'a', b'C']).unwrap();
        assert_eq!(
            t.packet,
            AudioPacket::Unsupported(UnsupportedAudio::FourCc(*b"fLaC"))
        );
        assert_eq!(
            UnsupportedAudio::FourCc(*b"fLaC").to_string(),
            "FLAC (audio FourCC 'fLaC')"
        );
        assert_eq!(
            parse_audio(&[0x95]).unwrap().packet,
            AudioPacket::Unsupported(UnsupportedAudio::PacketType(5))
        );
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = Rng::new(11);
        for _ in 0..20000 {
            let n = rng.below(12);
            let b: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            let _ = parse_video(&b);
            let _ = parse_audio(&b);
        }
    }
}
