//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// A fixture: the ASC built from the ADTS header, and the raw AAC frames.
pub struct AdtsStream {
    pub asc: Vec<u8>,
    pub sample_rate: u32,
    pub channels: u8,
    pub frames: Vec<Vec<u8>>,
}

const RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Reads `tests/data/NAME` and splits the ADTS stream into raw frames.
pub fn load_adts(name: &str) -> AdtsStream {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut pos = 0;
    let mut frames = Vec::new();
    let mut asc = Vec::new();
    let mut sample_rate = 0;
    let mut channels = 0;
    while pos + 7 <= data.len() {
        let h = &data[pos..pos + 7];
        assert_eq!((h[0], h[1] & 0xf0), (0xff, 0xf0), "ADTS sync at {pos}");
        let protection_absent = h[1] & 1 == 1;
        let profile = h[2] >> 6; // object type - 1
        let sfi = (h[2] >> 2) & 0xf;
        let chan = ((h[2] & 1) << 2) | (h[3] >> 6);
        let len = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        let blocks = (h[6] & 3) + 1;
        assert_eq!(blocks, 1, "one raw data block per ADTS frame");
        let header = if protection_absent { 7 } else { 9 };
        frames.push(data[pos + header..pos + len].to_vec());
        let aot = u16::from(profile) + 1;
        let asc_bits = (aot << 11) | (u16::from(sfi) << 7) | (u16::from(chan) << 3);
        asc = asc_bits.to_be_bytes().to_vec();
        sample_rate = RATES[usize::from(sfi)];
        channels = chan;
        pos += len;
    }
    assert_eq!(pos, data.len(), "trailing bytes in {name}");
    AdtsStream {
        asc,
        sample_rate,
        channels,
        frames,
    }
}

/// Amplitude of the `freq` component of `x` (a DFT bin over a whole number of cycles
/// when `x.len()` is a multiple of `rate / gcd(rate, freq)`).
pub fn tone_amplitude(x: &[f32], rate: u32, freq: f64) -> f64 {
    // Goertzel recursion.
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f64
}

/// Mean square of `x`.
pub fn mean_square(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len().max(1) as f64
}

/// The share of `x`'s energy that is in the `freq` tone (1.0 for a pure tone).
pub fn tone_fraction(x: &[f32], rate: u32, freq: f64) -> f64 {
    let a = tone_amplitude(x, rate, freq);
    a * a / 2.0 / mean_square(x).max(1e-30)
}

/// Frequency estimated from rising zero crossings (linear interpolation between samples).
pub fn zero_crossing_frequency(x: &[f32], rate: u32) -> f64 {
    let mut first = None;
    let mut last = 0.0;
    let mut count = 0usize;
    for i in 1..x.len() {
        if x[i - 1] < 0.0 && x[i] >= 0.0 {
            let t = (i - 1) as f64 + f64::from(-x[i - 1]) / f64::from(x[i] - x[i - 1]);
            if first.is_none() {
                first = Some(t);
            } else {
                count += 1;
            }
            last = t;
        }
    }
    let first = first.expect("no zero crossing");
    count as f64 * f64::from(rate) / (last - first)
}

/// An interleaved sine of `freq` Hz, amplitude `amp`, on every channel.
pub fn sine(rate: u32, channels: u8, freq: f64, amp: f32, frames: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(frames * usize::from(channels));
    for n in 0..frames {
        let s = amp * (2.0 * std::f64::consts::PI * freq * n as f64 / f64::from(rate)).sin() as f32;
        for _ in 0..channels {
            v.push(s);
        }
    }
    v
}

/// Channel `c` of interleaved `x`.
pub fn channel(x: &[f32], channels: u8, c: u8) -> Vec<f32> {
    x.iter()
        .skip(usize::from(c))
        .step_by(usize::from(channels))
        .copied()
        .collect()
}

// Not every test binary draws random numbers.
#[allow(unused_imports)]
pub use mediamesh_testkit::Rng;
