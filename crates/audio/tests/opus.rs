//! Opus: a 1 kHz sine survives encode -> decode (opus-pure both ways).

mod common;

use common::*;
use mediamesh_audio::{AudioError, OpusConfig, OpusDecoder, OpusEncoder, OPUS_FRAME_SAMPLES};

/// Encodes `seconds` of a 1 kHz sine, decodes it, returns (decoded, total bytes).
fn round_trip(config: OpusConfig, seconds: usize) -> (Vec<f32>, usize) {
    let ch = config.channels;
    let mut enc = OpusEncoder::new(config).unwrap();
    let mut dec = OpusDecoder::new(ch).unwrap();
    let pcm = sine(48000, ch, 1000.0, 0.5, 48000 * seconds);
    let mut decoded = Vec::new();
    let mut bytes = 0;
    for frame in pcm.chunks_exact(OPUS_FRAME_SAMPLES * usize::from(ch)) {
        let packet = enc.encode_frame(frame).unwrap();
        assert!(!packet.is_empty() && packet.len() <= 1276);
        bytes += packet.len();
        let out = dec.decode(&packet).unwrap();
        assert_eq!(out.len(), frame.len());
        decoded.extend(out);
    }
    (decoded, bytes)
}

fn check_tone(decoded: &[f32], channels: u8) {
    for c in 0..channels {
        let ch = channel(decoded, channels, c);
        // Skip the first 500 ms: like libopus, the encoder starts in hybrid mode until
        // its tonality analysis has settled on "music" and switches to CELT.
        let body = &ch[24000..24000 + 72000];
        let amp = tone_amplitude(body, 48000, 1000.0);
        let fraction = tone_fraction(body, 48000, 1000.0);
        let others: f64 = [250.0, 500.0, 1500.0, 2000.0, 3000.0, 5000.0, 10000.0]
            .iter()
            .map(|&f| tone_amplitude(body, 48000, f))
            .fold(0.0, f64::max);
        println!(
            "channel {c}: 1 kHz amplitude {amp:.4}, tone fraction {fraction:.5}, largest other {others:.6}"
        );
        assert!((amp - 0.5).abs() < 0.05, "amplitude {amp}");
        assert!(fraction > 0.99, "tone fraction {fraction}");
        assert!(amp > 100.0 * others, "1 kHz {amp} vs elsewhere {others}");
    }
}

#[test]
fn stereo_64k_sine_survives() {
    let (decoded, bytes) = round_trip(OpusConfig::new(2), 2);
    check_tone(&decoded, 2);
    let kbps = bytes as f64 * 8.0 / 2.0 / 1000.0;
    println!("stereo: {kbps:.1} kbit/s");
    assert!(kbps > 20.0 && kbps < 100.0, "{kbps} kbit/s");
}

#[test]
fn mono_32k_sine_survives() {
    let (decoded, bytes) = round_trip(OpusConfig::new(1), 2);
    check_tone(&decoded, 1);
    let kbps = bytes as f64 * 8.0 / 2.0 / 1000.0;
    println!("mono: {kbps:.1} kbit/s");
    assert!(kbps > 10.0 && kbps < 60.0, "{kbps} kbit/s");
}

#[test]
fn stereo_channels_stay_apart() {
    let mut enc = OpusEncoder::new(OpusConfig::new(2)).unwrap();
    let mut dec = OpusDecoder::new(2).unwrap();
    let l = sine(48000, 1, 1000.0, 0.4, 96000);
    let r = sine(48000, 1, 2500.0, 0.4, 96000);
    let pcm: Vec<f32> = l.iter().zip(&r).flat_map(|(&a, &b)| [a, b]).collect();
    let mut decoded = Vec::new();
    for frame in pcm.chunks_exact(1920) {
        decoded.extend(dec.decode(&enc.encode_frame(frame).unwrap()).unwrap());
    }
    let left = channel(&decoded, 2, 0);
    let right = channel(&decoded, 2, 1);
    let (lb, rb) = (&left[24000..96000], &right[24000..96000]);
    let (l1, l2) = (
        tone_amplitude(lb, 48000, 1000.0),
        tone_amplitude(lb, 48000, 2500.0),
    );
    let (r1, r2) = (
        tone_amplitude(rb, 48000, 1000.0),
        tone_amplitude(rb, 48000, 2500.0),
    );
    println!("left: 1k {l1:.4} 2.5k {l2:.4}; right: 1k {r1:.4} 2.5k {r2:.4}");
    assert!(l1 > 0.35 && r2 > 0.35, "{l1} {r2}");
    assert!(l2 < l1 / 30.0 && r1 < r2 / 30.0, "crosstalk: {l2} {r1}");
}

#[test]
fn bitrate_is_configurable() {
    let (_, low) = round_trip(OpusConfig::new(2).with_bitrate(24_000), 2);
    let (_, high) = round_trip(OpusConfig::new(2).with_bitrate(128_000), 2);
    println!("24k: {low} bytes, 128k: {high} bytes");
    assert!(high > low * 2, "{high} vs {low}");
}

#[test]
fn wrong_frame_size_is_an_error() {
    let mut enc = OpusEncoder::new(OpusConfig::new(2)).unwrap();
    assert!(matches!(
        enc.encode_frame(&[0.0; 960]),
        Err(AudioError::InvalidArgument(_))
    ));
    assert!(OpusEncoder::new(OpusConfig::new(3)).is_err());
    // Out-of-range and non-finite input is clipped, not fatal.
    let mut frame = vec![3.0f32; 1920];
    frame[7] = f32::NAN;
    frame[8] = f32::INFINITY;
    assert!(!enc.encode_frame(&frame).unwrap().is_empty());
}
