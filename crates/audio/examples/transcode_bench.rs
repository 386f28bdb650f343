//! Times the audio path on 10 s of stereo audio, for BENCHMARKS.md:
//!
//!     cargo run --release -p mediamesh-audio --example transcode_bench
//!
//! Reports the best of 5 runs of: Opus encoding alone (48 kHz stereo, 64 kbit/s), the
//! 44.1 -> 48 kHz resampler alone, AAC-LC decoding alone, and the whole RTMP path
//! (`AacToOpus`: AAC-LC 44.1 kHz stereo -> Opus 48 kHz stereo).

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "util/timing.rs"]
mod timing;

use std::time::Duration;

use timing::best;

use mediamesh_audio::{AacDecoder, AacToOpus, OpusConfig, OpusEncoder, Resampler};

const SECONDS: usize = 10;

/// Something music-like: a chord with vibrato, decaying noise bursts, stereo spread.
fn music(rate: u32, frames: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(frames * 2);
    let mut rng = common::Rng(12345);
    let two_pi = 2.0 * std::f64::consts::PI;
    for i in 0..frames {
        let t = i as f64 / f64::from(rate);
        let vibrato = 1.0 + 0.003 * (two_pi * 5.0 * t).sin();
        let mut s = 0.0;
        for (k, f) in [220.0, 277.2, 329.6, 440.0, 880.0, 1760.0]
            .iter()
            .enumerate()
        {
            s += 0.08 / ((k + 1) as f64).sqrt() * (two_pi * f * vibrato * t).sin();
        }
        let noise =
            (rng.next_u64() as f64 / u64::MAX as f64 - 0.5) * 0.3 * (-(t % 0.5) * 30.0).exp();
        v.push((s + noise) as f32);
        v.push((0.8 * s + 0.5 * noise + 0.05 * (two_pi * 3000.0 * t).sin()) as f32);
    }
    v
}

fn report(what: &str, d: Duration) {
    let realtime = SECONDS as f64 / d.as_secs_f64();
    println!(
        "{what:<48} {:>8.1} ms  ({realtime:>6.0}x real time)",
        d.as_secs_f64() * 1000.0
    );
}

fn main() {
    let pcm48 = music(48000, 48000 * SECONDS);
    let d = best(|| {
        let mut enc = OpusEncoder::new(OpusConfig::new(2)).unwrap();
        for frame in pcm48.chunks_exact(1920) {
            std::hint::black_box(enc.encode_frame(frame).unwrap());
        }
    });
    report("Opus encode, 48 kHz stereo 64 kbit/s", d);

    let pcm44 = music(44100, 44100 * SECONDS);
    let d = best(|| {
        let mut r = Resampler::new(44100, 48000, 2).unwrap();
        let mut out = Vec::new();
        for block in pcm44.chunks(2048) {
            out.clear();
            r.process(block, &mut out);
            std::hint::black_box(&out);
        }
    });
    report("Resample 44.1 -> 48 kHz stereo", d);

    // 10 s of AAC: the 1 s fixture looped.
    let s = common::load_adts("sine1k_44100_stereo.adts");
    let n = 44100 * SECONDS / 1024;
    let frames: Vec<&Vec<u8>> = s.frames.iter().cycle().take(n).collect();
    let d = best(|| {
        let mut dec = AacDecoder::new(&s.asc).unwrap();
        for f in &frames {
            std::hint::black_box(dec.decode(f).unwrap());
        }
    });
    report("AAC-LC decode, 44.1 kHz stereo", d);

    let d = best(|| {
        let mut t = AacToOpus::new(&s.asc, 2).unwrap();
        for (i, f) in frames.iter().enumerate() {
            let pts = i as u64 * 1024 * 1000 / 44100;
            std::hint::black_box(t.push(f, pts).unwrap());
        }
    });
    report("AacToOpus, AAC 44.1k stereo -> Opus 48k stereo", d);
}
