//! Resampler: frequency and amplitude kept, block splits invisible.

mod common;

use common::*;
use mediamesh_audio::resample::{AudioConverter, Resampler};

const RATES: [u32; 8] = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000];

fn resample_all(rate: u32, channels: u8, input: &[f32]) -> Vec<f32> {
    let mut r = Resampler::new(rate, 48000, channels).unwrap();
    let mut out = Vec::new();
    r.process(input, &mut out);
    r.flush(&mut out);
    out
}

#[test]
fn sine_1khz_44100_to_48000_keeps_frequency_and_amplitude() {
    let input = sine(44100, 1, 1000.0, 0.5, 44100);
    let out = resample_all(44100, 1, &input);
    assert_eq!(out.len(), 48000);
    // Steady state: skip the first and last 20 ms (filter warm-up / tail).
    let body = &out[960..960 + 48 * 960];
    let amp = tone_amplitude(body, 48000, 1000.0);
    assert!((amp - 0.5).abs() < 0.5 * 0.01, "amplitude {amp}");
    let fraction = tone_fraction(body, 48000, 1000.0);
    assert!(fraction > 0.9999, "tone fraction {fraction}");
    let freq = zero_crossing_frequency(body, 48000);
    assert!((freq - 1000.0).abs() < 0.5, "frequency {freq}");
    // Phase: output sample n is the input at time n * 44100 / 48000, no offset.
    for n in (960..47000).step_by(997) {
        let t = n as f64 / 48000.0;
        let want = 0.5 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin();
        assert!(
            (f64::from(out[n]) - want).abs() < 2e-3,
            "sample {n}: {} vs {want}",
            out[n]
        );
    }
}

#[test]
fn every_common_rate_keeps_a_1khz_tone() {
    for rate in RATES {
        let frames = rate as usize / 2;
        let input = sine(rate, 2, 1000.0, 0.5, frames);
        let out = resample_all(rate, 2, &input);
        let expected = (frames as u64 * 48000).div_ceil(u64::from(rate)) as usize;
        assert_eq!(out.len(), 2 * expected, "rate {rate}");
        for c in 0..2 {
            let ch = channel(&out, 2, c);
            let body = &ch[960..960 + 20 * 960];
            let amp = tone_amplitude(body, 48000, 1000.0);
            let fraction = tone_fraction(body, 48000, 1000.0);
            assert!((amp - 0.5).abs() < 0.005, "rate {rate}: amplitude {amp}");
            assert!(fraction > 0.9999, "rate {rate}: tone fraction {fraction}");
        }
    }
}

#[test]
fn passband_is_flat_and_images_are_suppressed() {
    // 15 kHz at 44.1 kHz: in the passband.
    let input = sine(44100, 1, 15000.0, 0.5, 44100);
    let out = resample_all(44100, 1, &input);
    let body = &out[960..960 + 40 * 960];
    let amp = tone_amplitude(body, 48000, 15000.0);
    assert!((amp - 0.5).abs() < 0.5 * 0.03, "15 kHz amplitude {amp}");
    // 8 kHz -> 48 kHz: a 3 kHz tone's images (5 kHz, 11 kHz, 13 kHz...) must be gone.
    let input = sine(8000, 1, 3000.0, 0.5, 8000);
    let out = resample_all(8000, 1, &input);
    let body = &out[960..960 + 40 * 960];
    let tone = tone_amplitude(body, 48000, 3000.0);
    for image in [5000.0, 11000.0, 13000.0, 19000.0] {
        let a = tone_amplitude(body, 48000, image);
        assert!(a < tone * 1e-3, "image at {image} Hz: {a} vs tone {tone}");
    }
}

#[test]
fn downsampling_removes_content_above_the_new_nyquist() {
    // 96 kHz -> 48 kHz: 30 kHz would alias to 18 kHz.
    let input = sine(96000, 1, 30000.0, 0.5, 96000);
    let out = resample_all(96000, 1, &input);
    let body = &out[960..960 + 40 * 960];
    let alias = tone_amplitude(body, 48000, 18000.0);
    assert!(alias < 0.5e-3, "alias {alias}");
    // And 1 kHz passes.
    let input = sine(96000, 1, 1000.0, 0.5, 96000);
    let out = resample_all(96000, 1, &input);
    let amp = tone_amplitude(&out[960..960 + 40 * 960], 48000, 1000.0);
    assert!((amp - 0.5).abs() < 0.005, "amplitude {amp}");
}

#[test]
fn arbitrary_block_splits_give_identical_output_without_discontinuities() {
    for rate in [44100u32, 22050, 8000, 32000, 37800] {
        let input = sine(rate, 2, 1000.0, 0.5, rate as usize / 2);
        let whole = resample_all(rate, 2, &input);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(rate));
        let mut r = Resampler::new(rate, 48000, 2).unwrap();
        let mut split = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            // Blocks of 0..=700 frames, odd sizes included.
            let frames = rng.below(701);
            let end = (pos + frames * 2).min(input.len());
            r.process(&input[pos..end], &mut split);
            pos = end;
        }
        r.flush(&mut split);
        assert_eq!(whole.len(), split.len(), "rate {rate}");
        let max_diff = whole
            .iter()
            .zip(&split)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            max_diff < 1e-6,
            "rate {rate}: block split changed output by {max_diff}"
        );
        // No step larger than the sine's own slope (2*pi*f/fs*A = 0.065) plus a margin.
        let left = channel(&split, 2, 0);
        let worst = left
            .windows(2)
            .skip(100)
            .take(left.len() - 200)
            .map(|w| (w[1] - w[0]).abs());
        let worst = worst.fold(0.0f32, f32::max);
        assert!(worst < 0.0675, "rate {rate}: largest step {worst}");
    }
}

#[test]
fn converter_mixes_channels() {
    // Stereo 44.1 kHz with 1 kHz left, 2 kHz right, to mono 48 kHz: both at half.
    let frames = 22050;
    let mut input = Vec::with_capacity(frames * 2);
    let l = sine(44100, 1, 1000.0, 0.5, frames);
    let r = sine(44100, 1, 2000.0, 0.5, frames);
    for i in 0..frames {
        input.push(l[i]);
        input.push(r[i]);
    }
    let mut conv = AudioConverter::new(44100, 2, 48000, 1).unwrap();
    let mut out = Vec::new();
    conv.process(&input, &mut out);
    conv.flush(&mut out);
    assert_eq!(out.len(), 24000);
    let body = &out[960..960 + 20 * 960];
    assert!((tone_amplitude(body, 48000, 1000.0) - 0.25).abs() < 0.003);
    assert!((tone_amplitude(body, 48000, 2000.0) - 0.25).abs() < 0.003);

    // Mono 16 kHz to stereo 48 kHz: the same signal on both sides.
    let mut conv = AudioConverter::new(16000, 1, 48000, 2).unwrap();
    let mut out = Vec::new();
    conv.process(&sine(16000, 1, 1000.0, 0.5, 8000), &mut out);
    conv.flush(&mut out);
    assert_eq!(out.len(), 2 * 24000);
    assert_eq!(channel(&out, 2, 0), channel(&out, 2, 1));

    assert!(AudioConverter::new(48000, 2, 48000, 3).is_err());
    assert!(AudioConverter::new(0, 2, 48000, 2).is_err());
}
