//! Telephony: G.711 and G.722 keep a tone's frequency and level; G.722 matches a
//! reference bitstream; the phone <-> room pipelines carry tones through jitter,
//! loss and every codec; garbage never panics.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mediamesh_audio::g711::f32_to_i16;
use mediamesh_audio::{
    G711Law, G722Decoder, G722Encoder, OpusConfig, OpusDecoder, OpusEncoder, OpusFrame, PhoneCodec,
    PhoneToRoom, RoomToPhone, RtpAudioPacket,
};

const CODECS: [PhoneCodec; 4] = [
    PhoneCodec::Pcmu,
    PhoneCodec::Pcma,
    PhoneCodec::G722,
    PhoneCodec::Opus,
];

fn to_i16(x: &[f32]) -> Vec<i16> {
    x.iter().map(|&s| f32_to_i16(s)).collect()
}

fn to_f32(x: &[i16]) -> Vec<f32> {
    x.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

/// Asserts `x` is a tone of `freq` at `amp` (within `tol`), with at least `purity`
/// of its energy in the tone.
fn assert_tone(x: &[f32], rate: u32, freq: f64, amp: f64, tol: f64, purity: f64, what: &str) {
    let a = tone_amplitude(x, rate, freq);
    let f = tone_fraction(x, rate, freq);
    println!("{what}: {freq} Hz amplitude {a:.4}, tone fraction {f:.5}");
    assert!((a - amp).abs() < tol, "{what}: amplitude {a} (want {amp})");
    assert!(f > purity, "{what}: tone fraction {f}");
}

#[test]
fn g711_keeps_tones() {
    for law in [G711Law::Ulaw, G711Law::Alaw] {
        for (freq, amp) in [(1000.0, 0.5), (440.0, 0.05), (3000.0, 0.9)] {
            let x = sine(8000, 1, freq, amp, 8000);
            let mut coded = Vec::new();
            law.encode_f32(&x, &mut coded);
            assert_eq!(coded.len(), x.len());
            let mut y = Vec::new();
            law.decode_f32(&coded, &mut y);
            // About 38 dB SNR for companded speech-level tones.
            let noise: f64 = x
                .iter()
                .zip(&y)
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum::<f64>()
                / x.len() as f64;
            let snr = 10.0 * (mean_square(&x) / noise).log10();
            println!("{law:?} {freq} Hz amp {amp}: SNR {snr:.1} dB");
            assert!(snr > 33.0, "{law:?} SNR {snr}");
            assert_tone(
                &y,
                8000,
                freq,
                f64::from(amp),
                f64::from(amp) * 0.02,
                0.999,
                &format!("{law:?}"),
            );
        }
    }
}

fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A deterministic integer test signal (noise, a triangle wave, full-scale noise,
/// a mix, silence and a full-scale square wave, 100 ms each, repeated).
fn g722_test_signal(n: usize) -> Vec<i16> {
    let mut seed = 12345u32;
    (0..n)
        .map(|i| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let noise = ((seed >> 16) & 0x7FFF) as i32 - 16384;
            let tri = ((i % 37) as i32 * 2 - 37) * 600;
            let s = match (i / 1600) % 6 {
                0 => noise / 8,
                1 => tri,
                2 => noise * 2,
                3 => tri / 2 + noise / 4,
                4 => 0,
                _ => {
                    if (i / 20) % 2 == 0 {
                        32767
                    } else {
                        -32768
                    }
                }
            };
            s.clamp(-32768, 32767) as i16
        })
        .collect()
}

#[test]
fn g722_matches_the_reference_bitstream() {
    // Hashes of the encoding of `g722_test_signal(48000)`, and of its decoding, made
    // by libg722 (a G.722 implementation that passes the ITU-T test vectors) at
    // 64 kbit/s; and of its decoding of 20000 pseudo-random code bytes.
    let input = g722_test_signal(48_000);
    let mut enc = G722Encoder::new();
    let mut coded = Vec::new();
    // In uneven pieces, to exercise the odd-sample carry.
    for chunk in input.chunks(333) {
        enc.encode(chunk, &mut coded);
    }
    assert_eq!(coded.len(), 24_000);
    assert_eq!(
        &coded[..8],
        &[0xde, 0x37, 0x9b, 0x30, 0x9b, 0x20, 0x07, 0x04]
    );
    assert_eq!(fnv1a(coded.iter().copied()), 0x1267_c52a_e7c7_4882);

    let mut dec = G722Decoder::new();
    let mut out = Vec::new();
    dec.decode(&coded, &mut out);
    assert_eq!(out.len(), 48_000);
    assert_eq!(
        fnv1a(out.iter().flat_map(|s| s.to_le_bytes())),
        0x893b_2a29_89ff_05a6
    );

    let mut seed = 99u32;
    let random: Vec<u8> = (0..20_000)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as u8
        })
        .collect();
    let mut dec = G722Decoder::new();
    let mut out = Vec::new();
    dec.decode(&random, &mut out);
    assert_eq!(
        fnv1a(out.iter().flat_map(|s| s.to_le_bytes())),
        0x2193_d597_45f6_bace
    );
}

#[test]
fn g722_keeps_tones_in_both_bands() {
    for (freq, amp) in [(1000.0, 0.5), (300.0, 0.1), (5000.0, 0.3), (7000.0, 0.2)] {
        let x = sine(16000, 1, freq, amp, 16000);
        let mut enc = G722Encoder::new();
        let mut coded = Vec::new();
        enc.encode(&to_i16(&x), &mut coded);
        assert_eq!(coded.len(), 8000);
        let mut dec = G722Decoder::new();
        let mut y = Vec::new();
        dec.decode(&coded, &mut y);
        let y = to_f32(&y);
        // Skip the adaptation at the start. The higher band (4-8 kHz) has only 2 bits
        // per sample: about 22 dB SNR there.
        let purity = if freq > 4000.0 { 0.98 } else { 0.995 };
        assert_tone(
            &y[4000..],
            16000,
            freq,
            f64::from(amp),
            f64::from(amp) * 0.06,
            purity,
            "G.722",
        );
    }
}

/// 20 ms payloads of `pcm` (at the codec's sampling rate) in `codec`.
fn encode_phone(codec: PhoneCodec, pcm: &[f32]) -> Vec<Vec<u8>> {
    let n = codec.sample_rate() as usize / 50;
    let mut g722 = G722Encoder::new();
    let mut opus = OpusEncoder::new(OpusConfig::new(1)).unwrap();
    pcm.chunks_exact(n)
        .map(|f| {
            let mut p = Vec::new();
            match codec {
                PhoneCodec::Pcmu => G711Law::Ulaw.encode_f32(f, &mut p),
                PhoneCodec::Pcma => G711Law::Alaw.encode_f32(f, &mut p),
                PhoneCodec::G722 => g722.encode(&to_i16(f), &mut p),
                PhoneCodec::Opus => p = opus.encode_frame(f).unwrap(),
            }
            p
        })
        .collect()
}

/// Sends `payloads` as RTP packets 20 ms apart (arriving 30 ms after their time plus
/// `jitter_ms(i)`, unless `lost(i)`), polling every 5 ms; returns the room frames.
fn phone_to_room(
    codec: PhoneCodec,
    payloads: &[Vec<u8>],
    lost: impl Fn(usize) -> bool,
    jitter_ms: impl Fn(usize) -> u64,
) -> (Vec<OpusFrame>, PhoneToRoom) {
    let mut p2r = PhoneToRoom::new(codec).unwrap();
    let t0 = Instant::now();
    let step = codec.rtp_clock_rate() / 50;
    let mut arrivals: Vec<(u64, RtpAudioPacket)> = payloads
        .iter()
        .enumerate()
        .filter(|(i, _)| !lost(*i))
        .map(|(i, p)| {
            (
                i as u64 * 20 + 30 + jitter_ms(i),
                RtpAudioPacket {
                    ssrc: 0x1234,
                    seq: 60_000u16.wrapping_add(i as u16),
                    timestamp: 4_000_000_000u32.wrapping_add(i as u32 * step),
                    marker: i == 0,
                    payload: p.clone(),
                },
            )
        })
        .collect();
    arrivals.sort_by_key(|(at, _)| *at);
    let end = payloads.len() as u64 * 20 + 400;
    let mut frames = Vec::new();
    let mut next = 0;
    let mut ms = 0;
    while ms <= end {
        let now = t0 + Duration::from_millis(ms);
        while next < arrivals.len() && arrivals[next].0 <= ms {
            p2r.push(arrivals[next].1.clone(), now);
            next += 1;
        }
        frames.extend(p2r.poll(now).unwrap());
        ms += 5;
    }
    frames.extend(p2r.flush().unwrap());
    (frames, p2r)
}

/// Decodes room frames that must be back to back on the 48 kHz clock.
fn decode_room(frames: &[OpusFrame]) -> Vec<f32> {
    for w in frames.windows(2) {
        assert_eq!(
            w[1].rtp_timestamp,
            w[0].rtp_timestamp.wrapping_add(960),
            "room RTP gap"
        );
    }
    let mut dec = OpusDecoder::new(1).unwrap();
    frames
        .iter()
        .flat_map(|f| dec.decode(&f.data).unwrap())
        .collect()
}

#[test]
fn phone_to_room_carries_a_tone_with_every_codec() {
    for codec in CODECS {
        let rate = codec.sample_rate();
        let pcm = sine(rate, 1, 1000.0, 0.5, rate as usize * 2);
        let payloads = encode_phone(codec, &pcm);
        assert_eq!(payloads.len(), 100);
        let mut seed = 3u64;
        let jitter: Vec<u64> = (0..100)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (seed >> 33) % 25
            })
            .collect();
        let (frames, p2r) = phone_to_room(codec, &payloads, |_| false, |i| jitter[i]);
        let stats = p2r.stats();
        println!("{codec:?}: {} room frames, {stats:?}", frames.len());
        // Two seconds of audio (plus concealment at the end and padding).
        assert!((100..=110).contains(&frames.len()), "{}", frames.len());
        assert_eq!(stats.decode_errors, 0);
        assert!(stats.jitter.lost <= 8, "{stats:?}");
        let out = decode_room(&frames);
        assert_tone(
            &out[28_800..86_400],
            48000,
            1000.0,
            0.5,
            0.06,
            0.97,
            &format!("{codec:?} -> room"),
        );
    }
}

#[test]
fn phone_to_room_conceals_losses() {
    for codec in CODECS {
        let rate = codec.sample_rate();
        let pcm = sine(rate, 1, 1000.0, 0.5, rate as usize * 2);
        let payloads = encode_phone(codec, &pcm);
        // One packet in ten lost.
        let (frames, p2r) = phone_to_room(codec, &payloads, |i| i % 10 == 5, |_| 0);
        let stats = p2r.stats();
        println!("{codec:?} with loss: {stats:?}");
        assert!(stats.concealed >= 10 && stats.jitter.lost >= 10);
        let out = decode_room(&frames);
        // Still the tone, somewhat weaker where concealment faded.
        let body = &out[28_800..86_400];
        let a = tone_amplitude(body, 48000, 1000.0);
        let f = tone_fraction(body, 48000, 1000.0);
        println!("{codec:?} with loss: amplitude {a:.4}, tone fraction {f:.4}");
        assert!(a > 0.4 && a < 0.55, "{codec:?}: {a}");
        assert!(f > 0.9, "{codec:?}: {f}");
    }
}

#[test]
fn room_to_phone_makes_packets_every_20_ms() {
    for codec in CODECS {
        let mut r2p = RoomToPhone::new(codec).unwrap();
        r2p.set_rtp_timestamp(u32::MAX - 300);
        let pcm = sine(48000, 1, 1000.0, 0.5, 96_000);
        let mut packets = Vec::new();
        for mix in pcm.chunks(960) {
            packets.extend(r2p.push(mix).unwrap());
        }
        packets.extend(r2p.flush().unwrap());
        let step = codec.rtp_clock_rate() / 50;
        assert!((100..=101).contains(&packets.len()), "{}", packets.len());
        for (i, p) in packets.iter().enumerate() {
            assert_eq!(p.timestamp, (u32::MAX - 300).wrapping_add(i as u32 * step));
            match codec {
                PhoneCodec::Pcmu | PhoneCodec::Pcma | PhoneCodec::G722 => {
                    assert_eq!(p.payload.len(), 160)
                }
                PhoneCodec::Opus => assert!(!p.payload.is_empty() && p.payload.len() < 400),
            }
        }
        // Decode at the phone and look at the tone.
        let rate = codec.sample_rate();
        let mut out = Vec::new();
        let mut g722 = G722Decoder::new();
        let mut opus = OpusDecoder::new(1).unwrap();
        for p in &packets {
            match codec {
                PhoneCodec::Pcmu => G711Law::Ulaw.decode_f32(&p.payload, &mut out),
                PhoneCodec::Pcma => G711Law::Alaw.decode_f32(&p.payload, &mut out),
                PhoneCodec::G722 => {
                    let mut s = Vec::new();
                    g722.decode(&p.payload, &mut s);
                    out.extend(to_f32(&s));
                }
                PhoneCodec::Opus => out.extend(opus.decode(&p.payload).unwrap()),
            }
        }
        let (a, b) = (rate as usize * 6 / 10, rate as usize * 18 / 10);
        assert_tone(
            &out[a..b],
            rate,
            1000.0,
            0.5,
            0.05,
            0.97,
            &format!("room -> {codec:?}"),
        );
    }
}

#[test]
fn room_to_phone_bandwidth() {
    // 6 kHz is beyond narrowband: G.711 removes it, G.722 keeps it.
    let pcm = sine(48000, 1, 6000.0, 0.5, 48_000);
    for codec in [PhoneCodec::Pcmu, PhoneCodec::G722] {
        let mut r2p = RoomToPhone::new(codec).unwrap();
        let mut packets = r2p.push(&pcm).unwrap();
        packets.extend(r2p.flush().unwrap());
        let mut out = Vec::new();
        let mut g722 = G722Decoder::new();
        for p in &packets {
            if codec == PhoneCodec::Pcmu {
                G711Law::Ulaw.decode_f32(&p.payload, &mut out);
            } else {
                let mut s = Vec::new();
                g722.decode(&p.payload, &mut s);
                out.extend(to_f32(&s));
            }
        }
        let rms = mean_square(&out[out.len() / 4..out.len() * 3 / 4]).sqrt();
        println!("{codec:?}: 6 kHz tone RMS {rms:.4}");
        if codec == PhoneCodec::Pcmu {
            assert!(rms < 0.01, "{rms}");
        } else {
            assert!((rms - 0.5 / 2f64.sqrt()).abs() < 0.05, "{rms}");
        }
    }
    assert!(RoomToPhone::with_ptime(PhoneCodec::Pcma, 30).is_ok());
    assert!(RoomToPhone::with_ptime(PhoneCodec::Pcma, 25).is_err());
    assert!(RoomToPhone::with_ptime(PhoneCodec::Opus, 40).is_err());
}

#[test]
fn phone_codec_descriptions() {
    assert_eq!(
        PhoneCodec::from_rtpmap("pcmu", 8000),
        Some(PhoneCodec::Pcmu)
    );
    assert_eq!(
        PhoneCodec::from_rtpmap("G722", 8000),
        Some(PhoneCodec::G722)
    );
    assert_eq!(PhoneCodec::from_rtpmap("G722", 16000), None);
    assert_eq!(
        PhoneCodec::from_rtpmap("OPUS", 48000),
        Some(PhoneCodec::Opus)
    );
    assert_eq!(PhoneCodec::G722.static_payload_type(), Some(9));
    assert_eq!(PhoneCodec::G722.sample_rate(), 16000);
    assert_eq!(PhoneCodec::G722.rtp_clock_rate(), 8000);
}

#[test]
fn phone_pause_moves_the_room_clock_on() {
    // One second of tone, two seconds of nothing (silence suppression), one more.
    let codec = PhoneCodec::Pcmu;
    let pcm = sine(8000, 1, 1000.0, 0.5, 8000);
    let payloads = encode_phone(codec, &pcm);
    let mut p2r = PhoneToRoom::new(codec).unwrap();
    let t0 = Instant::now();
    let mut frames = Vec::new();
    let mut seq = 0u16;
    for burst in 0..2u32 {
        for (i, p) in payloads.iter().enumerate() {
            let n = burst * 150 + i as u32;
            let at = t0 + Duration::from_millis(u64::from(n) * 20 + 30);
            p2r.push(
                RtpAudioPacket {
                    ssrc: 1,
                    seq,
                    timestamp: n * 160,
                    marker: i == 0,
                    payload: p.clone(),
                },
                at,
            );
            seq = seq.wrapping_add(1);
            frames.extend(p2r.poll(at).unwrap());
        }
        for k in 1..=60 {
            frames.extend(
                p2r.poll(t0 + Duration::from_millis(u64::from(burst * 150 + 50) * 20 + k * 10))
                    .unwrap(),
            );
        }
    }
    assert_eq!(p2r.stats().gaps, 1);
    // One jump in room timestamps; after it the room clock is where the phone's
    // timeline puts the second talkspurt (3 s after the start: 144000 at 48 kHz).
    let jumps: Vec<usize> = (1..frames.len())
        .filter(|&i| {
            frames[i]
                .rtp_timestamp
                .wrapping_sub(frames[i - 1].rtp_timestamp)
                != 960
        })
        .collect();
    assert_eq!(jumps.len(), 1);
    let resumed = frames[jumps[0]].rtp_timestamp;
    println!("room clock resumes at {resumed}");
    assert_eq!(resumed, 144_000);
    assert_eq!(frames[0].rtp_timestamp, 0);
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for codec in CODECS {
        let mut p2r = PhoneToRoom::new(codec).unwrap();
        let t0 = Instant::now();
        for i in 0..3000u64 {
            let n = rng.below(400);
            let payload: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            let r = rng.next_u64();
            let now = t0 + Duration::from_millis(i * 7);
            p2r.push(
                RtpAudioPacket {
                    ssrc: if r.is_multiple_of(50) { 2 } else { 1 },
                    seq: (i as u16).wrapping_add((r % 7) as u16),
                    timestamp: if r.is_multiple_of(13) {
                        r as u32
                    } else {
                        (i as u32 * 7 * codec.rtp_clock_rate() / 1000)
                            .wrapping_add((r % 500) as u32)
                    },
                    marker: r.is_multiple_of(17),
                    payload,
                },
                now,
            );
            for f in p2r.poll(now).unwrap() {
                assert!(!f.data.is_empty());
            }
        }
        let _ = p2r.flush().unwrap();
        let mut r2p = RoomToPhone::new(codec).unwrap();
        let wild: Vec<f32> = (0..5000)
            .map(|k| match k % 5 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => -7.0,
                _ => (rng.next_u64() as i64 as f64 / i64::MAX as f64) as f32,
            })
            .collect();
        for _ in 0..3 {
            let _ = r2p.push(&wild).unwrap();
        }
    }
    // The Opus decoder on its own, with raw garbage.
    let mut dec = OpusDecoder::new(1).unwrap();
    let (mut ok, mut err) = (0, 0);
    for _ in 0..5000 {
        let n = 1 + rng.below(300);
        let packet: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        match dec.decode(&packet) {
            Ok(pcm) => {
                assert!(pcm.iter().all(|s| s.is_finite()));
                ok += 1;
            }
            Err(_) => err += 1,
        }
        let _ = dec.conceal(960);
        let _ = dec.decode_fec(&packet, 960);
    }
    println!("opus garbage: {ok} decoded, {err} rejected");
    assert!(dec.conceal(100).is_err());
}
