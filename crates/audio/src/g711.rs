//! G.711 µ-law (PCMU) and A-law (PCMA) companding, following ITU-T G.711 (11/88).
//!
//! Table-free: each code is computed from the segment (exponent) and the four
//! mantissa bits. Linear samples are 16-bit; µ-law works on the top 14 bits and
//! A-law on the top 13, as G.711 specifies. Decoding gives the middle of each
//! quantisation interval, so `decode(encode(x))` is within half a step of `x`
//! (steps of 8 to 1024 in the 16-bit scale for µ-law, 16 to 1024 for A-law) until
//! the largest code (µ-law ±32124, A-law ±32256), where input beyond saturates.
//!
//! The RTP payload formats (RFC 3551 §4.5.14): one byte per sample at 8 kHz,
//! static payload types 0 (PCMU) and 8 (PCMA).

/// µ-law bias (33 in the 14-bit scale of G.711, 132 in the 16-bit scale).
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude µ-law represents before saturation (16-bit scale, before bias).
const ULAW_CLIP: i32 = 32635;

/// Encodes one 16-bit sample as µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let s = i32::from(sample);
    // Sign and magnitude (sign bit set for negative values before inversion).
    let (sign, magnitude) = if s < 0 { (0x80, -s) } else { (0x00, s) };
    let biased = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    // Segment: position of the highest set bit above bit 7 (biased is at least 132,
    // at most 32767, so the leading bit is in 7..=14).
    let segment = (31 - biased.leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (biased >> (segment + 3)) & 0x0F;
    // Sent with every bit inverted: 0 encodes to 0xFF.
    !(sign | (segment << 4) as u8 | mantissa as u8)
}

/// Decodes one µ-law code to a 16-bit sample.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let c = !code;
    let segment = i32::from((c >> 4) & 0x07);
    let mantissa = i32::from(c & 0x0F);
    // Middle of the interval: mantissa * 2 + 1 half-steps, plus the bias, shifted.
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << segment) - ULAW_BIAS;
    if c & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encodes one 16-bit sample as A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    // A-law uses the top 13 bits; negative values are one's-complement-like, so that
    // -1 (just below zero) lands in the first interval of the negative side.
    let s = i32::from(sample) >> 3;
    let (mask, magnitude) = if s >= 0 {
        (0xD5u8, s)
    } else {
        (0x55u8, -s - 1)
    };
    // Segment 0 and 1 share a step (the "linear" part); above, the step doubles.
    let segment = if magnitude < 32 {
        0
    } else {
        (31 - magnitude.leading_zeros() as i32 - 4).min(8)
    };
    let code = if segment >= 8 {
        0x7F
    } else if segment < 2 {
        (segment << 4) | ((magnitude >> 1) & 0x0F)
    } else {
        (segment << 4) | ((magnitude >> segment) & 0x0F)
    };
    code as u8 ^ mask
}

/// Decodes one A-law code to a 16-bit sample.
pub fn alaw_to_linear(code: u8) -> i16 {
    let c = code ^ 0x55;
    let segment = i32::from((c >> 4) & 0x07);
    let mantissa = i32::from(c & 0x0F);
    // In the 16-bit scale: interval start plus half a step.
    let magnitude = match segment {
        0 => (mantissa << 4) + 8,
        _ => ((mantissa << 4) + 0x108) << (segment - 1),
    };
    if c & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// Which G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711Law {
    /// µ-law (PCMU), North America and Japan.
    Ulaw,
    /// A-law (PCMA), elsewhere.
    Alaw,
}

impl G711Law {
    /// Encodes one sample.
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            G711Law::Ulaw => linear_to_ulaw(sample),
            G711Law::Alaw => linear_to_alaw(sample),
        }
    }

    /// Decodes one code.
    pub fn decode(self, code: u8) -> i16 {
        match self {
            G711Law::Ulaw => ulaw_to_linear(code),
            G711Law::Alaw => alaw_to_linear(code),
        }
    }

    /// The code of digital silence (0xFF for µ-law, 0xD5 for A-law).
    pub fn silence(self) -> u8 {
        self.encode(0)
    }

    /// Encodes f32 samples in [-1, 1] (values beyond saturate, NaN is 0), appending
    /// one byte per sample to `out`.
    pub fn encode_f32(self, pcm: &[f32], out: &mut Vec<u8>) {
        out.extend(pcm.iter().map(|&s| self.encode(f32_to_i16(s))));
    }

    /// Decodes bytes to f32 samples in [-1, 1], appending to `out`.
    pub fn decode_f32(self, data: &[u8], out: &mut Vec<f32>) {
        out.extend(data.iter().map(|&c| f32::from(self.decode(c)) / 32768.0));
    }
}

/// Converts an f32 sample in [-1, 1] to i16 with rounding and saturation (NaN is 0).
pub fn f32_to_i16(s: f32) -> i16 {
    if s.is_nan() {
        0
    } else {
        (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        // Extremes.
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        // A few mid-range values checked by hand against the segment tables.
        assert_eq!(linear_to_ulaw(1000), 0xCE);
        assert_eq!(ulaw_to_linear(0xCE), 988);
        assert_eq!(linear_to_alaw(1000), 0xFA);
        assert_eq!(alaw_to_linear(0xFA), 1008);
    }

    #[test]
    fn every_code_round_trips() {
        for law in [G711Law::Ulaw, G711Law::Alaw] {
            for code in 0..=255u8 {
                let x = law.decode(code);
                let back = law.encode(x);
                // µ-law has two zeros (0x7F, 0xFF); both decode to 0, which encodes
                // to 0xFF.
                if law == G711Law::Ulaw && code == 0x7F {
                    assert_eq!(back, 0xFF);
                } else {
                    assert_eq!(back, code, "{law:?} code {code:#04x} -> {x}");
                }
            }
        }
    }

    #[test]
    fn full_range_error_bounds_and_monotonic() {
        for law in [G711Law::Ulaw, G711Law::Alaw] {
            let mut prev = i16::MIN;
            let max_code_value = if law == G711Law::Ulaw { 32124 } else { 32256 };
            for x in i16::MIN..=i16::MAX {
                let y = law.decode(law.encode(x));
                assert!(y >= prev, "{law:?} not monotonic at {x}");
                prev = y;
                let (x, y) = (i32::from(x), i32::from(y));
                if x.abs() > max_code_value {
                    // Saturation: at most the distance to the largest code.
                    assert!((x - y).abs() <= x.abs() - max_code_value + 1024);
                    continue;
                }
                // Half a step: steps double per segment; relative error at most
                // 1/32 above the first segments (plus the small linear region).
                let bound = if law == G711Law::Ulaw {
                    (x.abs() + 132) / 32 + 4
                } else {
                    (x.abs() / 32).max(8) + 1
                };
                assert!((x - y).abs() <= bound, "{law:?}: {x} -> {y}");
            }
        }
    }

    #[test]
    fn f32_helpers() {
        let mut bytes = Vec::new();
        G711Law::Ulaw.encode_f32(&[0.0, 0.5, -0.5, 2.0, f32::NAN], &mut bytes);
        assert_eq!(bytes[0], 0xFF);
        assert_eq!(bytes[3], 0x80);
        assert_eq!(bytes[4], 0xFF);
        let mut pcm = Vec::new();
        G711Law::Ulaw.decode_f32(&bytes, &mut pcm);
        assert!((pcm[1] - 0.5).abs() < 0.02 && (pcm[2] + 0.5).abs() < 0.02);
        assert_eq!(G711Law::Alaw.silence(), 0xD5);
    }
}
