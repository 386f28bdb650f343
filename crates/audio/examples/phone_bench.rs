//! Times one SIP call's audio work over 10 s of call, for BENCHMARKS.md:
//!
//!     cargo run --release -p mediamesh-audio --example phone_bench
//!
//! Per phone codec, the best of 5 runs of:
//! - phone -> room (`PhoneToRoom`): 500 RTP packets of the phone's codec through the
//!   jitter buffer, decoded, resampled to 48 kHz and encoded to Opus for the room;
//! - room -> phone: three room speakers' Opus frames decoded, mixed, and encoded to
//!   the phone's codec (`RoomToPhone`), as the server does for every call.
//!
//! The phone's packets are made beforehand by a `RoomToPhone` from a speech-like
//! signal; the room's Opus frames by an `OpusEncoder`.

#[path = "util/timing.rs"]
mod timing;

use std::time::{Duration, Instant};

use timing::best;

use mediamesh_audio::{
    Mixer, OpusConfig, OpusDecoder, OpusEncoder, PhoneCodec, PhoneToRoom, RoomToPhone,
    RtpAudioPacket, MIX_FRAME_SAMPLES,
};

const SECONDS: usize = 10;
const FRAMES: usize = SECONDS * 50;
const SPEAKERS: usize = 3;

/// A voice-like 48 kHz mono signal: a gliding fundamental with harmonics, in
/// syllables (`seed` shifts the pitch so speakers differ).
fn voice(seed: usize) -> Vec<f32> {
    let two_pi = 2.0 * std::f64::consts::PI;
    let f0 = 110.0 + 40.0 * seed as f64;
    let mut phase = 0.0f64;
    (0..48000 * SECONDS)
        .map(|i| {
            let t = i as f64 / 48000.0;
            let f = f0 * (1.0 + 0.15 * (two_pi * 0.7 * t).sin());
            phase += two_pi * f / 48000.0;
            let envelope = (two_pi * 3.0 * t).sin().max(0.0);
            let s: f64 = (1..6).map(|k| (phase * k as f64).sin() / k as f64).sum();
            (0.25 * envelope * s) as f32
        })
        .collect()
}

fn report(what: &str, d: Duration) {
    let share = d.as_secs_f64() / SECONDS as f64 * 100.0;
    println!(
        "{what:<44} {:>7.1} ms per {SECONDS} s  ({share:>5.2} % of a core; {:>4.0} calls per core)",
        d.as_secs_f64() * 1000.0,
        100.0 / share
    );
}

fn main() {
    let speech = voice(0);
    let room: Vec<Vec<Vec<u8>>> = (1..=SPEAKERS)
        .map(|s| {
            let mut enc = OpusEncoder::new(OpusConfig::new(1)).unwrap();
            voice(s)
                .chunks_exact(MIX_FRAME_SAMPLES)
                .map(|f| enc.encode_frame(f).unwrap())
                .collect()
        })
        .collect();
    for (name, codec) in [
        ("G.711 µ-law", PhoneCodec::Pcmu),
        ("G.722", PhoneCodec::G722),
        ("Opus", PhoneCodec::Opus),
    ] {
        // The phone's side of the call: its codec's packets, 20 ms each.
        let mut phone = RoomToPhone::new(codec).unwrap();
        let packets: Vec<_> = speech
            .chunks_exact(MIX_FRAME_SAMPLES)
            .flat_map(|f| phone.push(f).unwrap())
            .collect();
        // The resampler holds back a few samples: one packet fewer at most.
        assert!(packets.len() + 1 >= FRAMES, "{} packets", packets.len());

        let d_in = best(|| {
            let mut p = PhoneToRoom::new(codec).unwrap();
            let t0 = Instant::now();
            for (i, pkt) in packets.iter().enumerate() {
                let now = t0 + Duration::from_millis(20 * i as u64);
                p.push(
                    RtpAudioPacket {
                        ssrc: 1,
                        seq: i as u16,
                        timestamp: pkt.timestamp,
                        marker: i == 0,
                        payload: pkt.payload.clone(),
                    },
                    now,
                );
                std::hint::black_box(p.poll(now).unwrap());
            }
        });
        report(&format!("{name}: phone -> room"), d_in);

        let d_out = best(|| {
            let mut decoders: Vec<OpusDecoder> = (0..SPEAKERS)
                .map(|_| OpusDecoder::new(1).unwrap())
                .collect();
            let mut mixer: Mixer<usize> = Mixer::new(SPEAKERS);
            let mut out = RoomToPhone::new(codec).unwrap();
            for i in 0..FRAMES {
                mixer.clear();
                for (s, (dec, frames)) in decoders.iter_mut().zip(&room).enumerate() {
                    let pcm = dec.decode(&frames[i]).unwrap();
                    mixer.add(s, &pcm).unwrap();
                }
                std::hint::black_box(out.push(&mixer.mix_all()).unwrap());
            }
        });
        report(&format!("{name}: room (3 speakers) -> phone"), d_out);
        report(&format!("{name}: the whole call"), d_in + d_out);
    }
}
