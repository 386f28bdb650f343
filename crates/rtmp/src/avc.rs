//! H.264 in RTMP: the AVCDecoderConfigurationRecord of the sequence header
//! (ISO/IEC 14496-15, 5.2.4.1), access units of length-prefixed NAL units
//! (ISO/IEC 14496-15, 5.3.2, "AVCC"), NAL unit types (ITU-T H.264, table
//! 7-1), and putting SPS/PPS in front of keyframes that lack them so each
//! keyframe is decodable on its own (what a WebRTC receiver joining mid-stream
//! needs: RTMP sends the parameter sets only once, in the sequence header).

use thiserror::Error;

/// NAL unit types (H.264 table 7-1) that matter here.
pub mod nal {
    pub const SLICE: u8 = 1;
    pub const IDR: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const AUD: u8 = 9;
    pub const END_OF_SEQUENCE: u8 = 10;
    pub const END_OF_STREAM: u8 = 11;
    pub const FILLER: u8 = 12;
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AvcError {
    #[error("AVCDecoderConfigurationRecord truncated")]
    ConfigTruncated,
    #[error("AVCDecoderConfigurationRecord version {0} (expected 1)")]
    ConfigVersion(u8),
    #[error("NAL unit length at offset {offset} runs past the end of the access unit")]
    NaluTruncated { offset: usize },
    #[error("invalid NAL unit length size {0}")]
    LengthSize(u8),
}

/// A parsed AVCDecoderConfigurationRecord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcDecoderConfig {
    pub profile: u8,
    pub profile_compatibility: u8,
    pub level: u8,
    /// Bytes of each NAL unit length prefix in access units (1, 2 or 4).
    pub nal_length_size: u8,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
}

impl AvcDecoderConfig {
    pub fn parse(data: &[u8]) -> Result<Self, AvcError> {
        let mut pos = 0;
        let mut take = |n: usize| -> Result<&[u8], AvcError> {
            let s = data.get(pos..pos + n).ok_or(AvcError::ConfigTruncated)?;
            pos += n;
            Ok(s)
        };
        let h = take(6)?;
        if h[0] != 1 {
            return Err(AvcError::ConfigVersion(h[0]));
        }
        let (profile, profile_compatibility, level) = (h[1], h[2], h[3]);
        let nal_length_size = (h[4] & 0x03) + 1;
        let n_sps = h[5] & 0x1f;
        let mut sps = Vec::with_capacity(usize::from(n_sps));
        for _ in 0..n_sps {
            let l = take(2)?;
            let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
            sps.push(take(len)?.to_vec());
        }
        let n_pps = take(1)?[0];
        let mut pps = Vec::with_capacity(usize::from(n_pps));
        for _ in 0..n_pps {
            let l = take(2)?;
            let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
            pps.push(take(len)?.to_vec());
        }
        // High profiles append chroma format and SPS extensions; not needed.
        Ok(AvcDecoderConfig {
            profile,
            profile_compatibility,
            level,
            nal_length_size,
            sps,
            pps,
        })
    }

    /// The SDP `profile-level-id` (RFC 6184, 8.1), e.g. `42e01f`.
    pub fn profile_level_id(&self) -> String {
        format!(
            "{:02x}{:02x}{:02x}",
            self.profile, self.profile_compatibility, self.level
        )
    }
}

/// The type of a NAL unit (low 5 bits of its first byte).
pub fn nal_type(nalu: &[u8]) -> Option<u8> {
    nalu.first().map(|b| b & 0x1f)
}

/// Splits an access unit of NAL units, each prefixed with a big-endian length
/// of `length_size` bytes (1 to 4). Empty NAL units are skipped.
pub fn split_nalus(data: &[u8], length_size: u8) -> Result<Vec<&[u8]>, AvcError> {
    if !(1..=4).contains(&length_size) {
        return Err(AvcError::LengthSize(length_size));
    }
    let ls = usize::from(length_size);
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let l = data
            .get(pos..pos + ls)
            .ok_or(AvcError::NaluTruncated { offset: pos })?;
        let len = l.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
        let start = pos + ls;
        let nalu = start
            .checked_add(len)
            .and_then(|end| data.get(start..end))
            .ok_or(AvcError::NaluTruncated { offset: pos })?;
        if !nalu.is_empty() {
            out.push(nalu);
        }
        pos = start + len;
    }
    Ok(out)
}

/// Splits an Annex B byte stream (start codes 00 00 01 / 00 00 00 01).
/// Bytes before the first start code are ignored.
pub fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                let mut end = i;
                while end > s && data[end - 1] == 0 {
                    end -= 1;
                }
                if end > s {
                    out.push(&data[s..end]);
                }
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        if s < data.len() {
            out.push(&data[s..]);
        }
    }
    out
}

/// The NAL units of an RTMP access unit: length-prefixed as the sequence
/// header says, or, when that does not parse and the data starts with a start
/// code, Annex B (some encoders send that against the FLV specification).
pub fn access_unit_nalus(data: &[u8], length_size: u8) -> Result<Vec<&[u8]>, AvcError> {
    match split_nalus(data, length_size) {
        Ok(n) => Ok(n),
        Err(e) => {
            if data.starts_with(&[0, 0, 1]) || data.starts_with(&[0, 0, 0, 1]) {
                Ok(split_annexb(data))
            } else {
                Err(e)
            }
        }
    }
}

/// True if the access unit holds an IDR slice.
pub fn contains_idr(nalus: &[&[u8]]) -> bool {
    nalus.iter().any(|n| nal_type(n) == Some(nal::IDR))
}

/// For a keyframe (`is_keyframe`, or an IDR slice present) without in-band
/// SPS and PPS, returns the NAL units with the configuration's SPS and PPS in
/// front (after a leading access unit delimiter, as H.264 7.4.1.2.3 orders
/// them); otherwise the NAL units unchanged.
pub fn with_parameter_sets<'a>(
    config: &'a AvcDecoderConfig,
    nalus: &[&'a [u8]],
    is_keyframe: bool,
) -> Vec<&'a [u8]> {
    let has = |t| nalus.iter().any(|n| nal_type(n) == Some(t));
    let key = is_keyframe || contains_idr(nalus);
    if !key || (has(nal::SPS) && has(nal::PPS)) {
        return nalus.to_vec();
    }
    let mut out = Vec::with_capacity(nalus.len() + config.sps.len() + config.pps.len());
    let at = usize::from(nalus.first().and_then(|n| nal_type(n)) == Some(nal::AUD));
    out.extend_from_slice(&nalus[..at]);
    if !has(nal::SPS) {
        out.extend(config.sps.iter().map(Vec::as_slice));
    }
    if !has(nal::PPS) {
        out.extend(config.pps.iter().map(Vec::as_slice));
    }
    out.extend_from_slice(&nalus[at..]);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real x264 baseline sequence header (profile 66, level 3.0).
    pub(crate) const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8, 0x08, 0x80, 0x00, 0x00, 0x03,
        0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8b, 0x17, 0x24,
    ];
    pub(crate) const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

    pub(crate) fn config_record() -> Vec<u8> {
        let mut v = vec![1, 0x42, 0xc0, 0x1e, 0xff, 0xe1];
        v.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        v.extend_from_slice(SPS);
        v.push(1);
        v.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        v.extend_from_slice(PPS);
        v
    }

    pub(crate) fn avcc(nalus: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nalus {
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn parses_record() {
        let c = AvcDecoderConfig::parse(&config_record()).unwrap();
        assert_eq!(c.profile, 66);
        assert_eq!(c.level, 30);
        assert_eq!(c.nal_length_size, 4);
        assert_eq!(c.sps, vec![SPS.to_vec()]);
        assert_eq!(c.pps, vec![PPS.to_vec()]);
        assert_eq!(c.profile_level_id(), "42c01e");
        // High-profile trailer is ignored.
        let mut ext = config_record();
        ext.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0]);
        assert_eq!(AvcDecoderConfig::parse(&ext).unwrap(), c);
    }

    #[test]
    fn record_errors() {
        let r = config_record();
        for cut in 0..r.len() {
            assert_eq!(
                AvcDecoderConfig::parse(&r[..cut]),
                Err(AvcError::ConfigTruncated),
                "cut {cut}"
            );
        }
        let mut bad = r.clone();
        bad[0] = 0;
        assert_eq!(
            AvcDecoderConfig::parse(&bad),
            Err(AvcError::ConfigVersion(0))
        );
    }

    #[test]
    fn splits_access_units() {
        let idr: &[u8] = &[0x65, 0x88, 0x84, 0x00];
        let sei: &[u8] = &[0x06, 0x05, 0x01];
        let au = avcc(&[sei, idr]);
        assert_eq!(split_nalus(&au, 4).unwrap(), vec![sei, idr]);
        // 2-byte lengths, with an empty NAL unit skipped.
        let au2 = [0, 3, 6, 5, 1, 0, 0, 0, 4, 0x65, 0x88, 0x84, 0];
        assert_eq!(split_nalus(&au2, 2).unwrap(), vec![sei, idr]);
        assert_eq!(
            split_nalus(&au[..au.len() - 1], 4),
            Err(AvcError::NaluTruncated { offset: 7 })
        );
        assert_eq!(
            split_nalus(&[0, 0, 0], 4),
            Err(AvcError::NaluTruncated { offset: 0 })
        );
        assert_eq!(split_nalus(&au, 0), Err(AvcError::LengthSize(0)));
        assert_eq!(
            split_nalus(&[0xff, 0xff, 0xff, 0xff, 1], 4),
            Err(AvcError::NaluTruncated { offset: 0 })
        );
    }

    #[test]
    fn annexb_fallback() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        let want: Vec<&[u8]> = vec![&[0x67, 1, 2], &[0x68, 3], &[0x65, 4, 5]];
        assert_eq!(split_annexb(&data), want);
        assert_eq!(access_unit_nalus(&data, 4).unwrap(), want);
        assert!(access_unit_nalus(&[0, 0, 9], 4).is_err());
    }

    #[test]
    fn parameter_sets_go_with_keyframes() {
        let c = AvcDecoderConfig::parse(&config_record()).unwrap();
        let aud: &[u8] = &[0x09, 0xf0];
        let idr: &[u8] = &[0x65, 0x88];
        let p: &[u8] = &[0x41, 0x9a];
        let got = with_parameter_sets(&c, &[aud, idr], false);
        assert_eq!(got, vec![aud, SPS, PPS, idr]);
        let got = with_parameter_sets(&c, &[idr], true);
        assert_eq!(got, vec![SPS, PPS, idr]);
        // Already there: unchanged.
        let got = with_parameter_sets(&c, &[SPS, PPS, idr], true);
        assert_eq!(got, vec![SPS, PPS, idr]);
        // Not a keyframe: unchanged.
        assert_eq!(with_parameter_sets(&c, &[p], false), vec![p]);
        // Flagged keyframe without IDR (recovery point): still gets them.
        assert_eq!(with_parameter_sets(&c, &[p], true), vec![SPS, PPS, p]);
        assert_eq!(nal_type(idr), Some(nal::IDR));
        assert_eq!(nal_type(&[]), None);
    }
}
