//! The start of an AAC AudioSpecificConfig (ISO/IEC 14496-3, 1.6.2.1): audio
//! object type, sampling frequency and channel configuration, which a driver
//! needs to set up a decoder for the AAC an RTMP publisher sends.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AacError {
    #[error("AudioSpecificConfig truncated")]
    Truncated,
    #[error("AudioSpecificConfig has reserved sampling frequency index {0}")]
    ReservedFrequencyIndex(u8),
}

/// The fields of an AudioSpecificConfig we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// 2 = AAC LC, 5 = SBR (HE-AAC), 29 = PS (HE-AACv2), ...
    pub object_type: u8,
    pub sample_rate: u32,
    /// 1..=7 for the standard layouts (7 = 7.1); 0 = defined in-band.
    pub channel_config: u8,
}

const RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

impl AudioSpecificConfig {
    pub fn parse(data: &[u8]) -> Result<Self, AacError> {
        let mut r = Bits { data, pos: 0 };
        let mut object_type = r.read(5)? as u8;
        if object_type == 31 {
            object_type = 32 + r.read(6)? as u8;
        }
        let index = r.read(4)? as u8;
        let sample_rate = if index == 15 {
            r.read(24)?
        } else {
            *RATES
                .get(usize::from(index))
                .ok_or(AacError::ReservedFrequencyIndex(index))?
        };
        let channel_config = r.read(4)? as u8;
        Ok(AudioSpecificConfig {
            object_type,
            sample_rate,
            channel_config,
        })
    }

    /// Channel count for configurations 1..=7 (7 means 8 channels).
    pub fn channels(&self) -> Option<u8> {
        match self.channel_config {
            1..=6 => Some(self.channel_config),
            7 => Some(8),
            _ => None,
        }
    }
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Result<u32, AacError> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.data.get(self.pos / 8).ok_or(AacError::Truncated)?;
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_configs() {
        // AAC LC, 44.1 kHz, stereo (what voaacenc and OBS send).
        let c = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
        assert_eq!(
            c,
            AudioSpecificConfig {
                object_type: 2,
                sample_rate: 44100,
                channel_config: 2
            }
        );
        assert_eq!(c.channels(), Some(2));
        // AAC LC, 48 kHz, mono.
        let c = AudioSpecificConfig::parse(&[0x11, 0x88]).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channel_config), (2, 48000, 1));
        // Explicit frequency 0x00ac44 = 44100, escaped object type 31 + 6 bits.
        let c = AudioSpecificConfig::parse(&[0xf8, 0x1e, 0x00, 0xac, 0x44, 0x10]).unwrap();
        assert_eq!(c.object_type, 32);
        assert_eq!(c.sample_rate, 44100);
        assert_eq!(c.channel_config, 1);
        assert_eq!(
            AudioSpecificConfig::parse(&[0x12]),
            Err(AacError::Truncated)
        );
        assert_eq!(
            AudioSpecificConfig::parse(&[0x16, 0x90]),
            Err(AacError::ReservedFrequencyIndex(13))
        );
    }
}
