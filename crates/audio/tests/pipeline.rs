//! End to end: real AAC (made by GStreamer, see tests/data/README.md) -> decode ->
//! resample -> Opus encode -> Opus decode, timestamps, corrupt frames, re-anchoring.

mod common;

use common::*;
use mediamesh_audio::{AacDecoder, AacToOpus, AudioError, OpusDecoder, OpusFrame, PcmToOpus};

/// RTMP-style millisecond timestamps for AAC frame `i` at `rate`.
fn pts(start_ms: u64, i: usize, rate: u32) -> u64 {
    start_ms + (i as u64 * 1024 * 1000) / u64::from(rate)
}

/// Checks the frames are back to back on the RTP clock, then decodes them.
fn decode_contiguous(frames: &[OpusFrame], channels: u8) -> Vec<f32> {
    for w in frames.windows(2) {
        assert_eq!(
            w[1].rtp_timestamp,
            w[0].rtp_timestamp.wrapping_add(960),
            "gap in RTP clock"
        );
    }
    let mut dec = OpusDecoder::new(channels).unwrap();
    let mut out = Vec::new();
    for f in frames {
        assert_eq!(f.samples, 960);
        out.extend(dec.decode(&f.data).unwrap());
    }
    out
}

/// Asserts the 1 kHz tone of amplitude ~0.5 dominates `x` (mono, 48 kHz).
fn assert_tone(x: &[f32], what: &str) {
    let amp = tone_amplitude(x, 48000, 1000.0);
    let fraction = tone_fraction(x, 48000, 1000.0);
    println!("{what}: 1 kHz amplitude {amp:.4}, tone fraction {fraction:.5}");
    assert!((amp - 0.5).abs() < 0.06, "{what}: amplitude {amp}");
    assert!(fraction > 0.98, "{what}: tone fraction {fraction}");
}

#[test]
fn fixture_asc_matches_gstreamer_codec_data() {
    assert_eq!(load_adts("sine1k_44100_stereo.adts").asc, vec![0x12, 0x10]);
    assert_eq!(load_adts("sine1k_22050_mono.adts").asc, vec![0x13, 0x88]);
    assert_eq!(
        load_adts("sine1k_48000_stereo_avenc.adts").asc,
        vec![0x11, 0x90]
    );
}

#[test]
fn aac_decoder_gives_the_tone_at_the_source_rate() {
    let s = load_adts("sine1k_44100_stereo.adts");
    let mut dec = AacDecoder::new(&s.asc).unwrap();
    assert_eq!((dec.sample_rate(), dec.channels()), (44100, 2));
    let mut pcm = Vec::new();
    for f in &s.frames {
        let p = dec.decode(f).unwrap();
        assert_eq!((p.sample_rate, p.channels, p.frames()), (44100, 2, 1024));
        pcm.extend(p.samples);
    }
    for c in 0..2 {
        let ch = channel(&pcm, 2, c);
        // 0.2 s to 0.8 s (a whole number of 441-sample periods).
        let body = &ch[8820..8820 + 441 * 60];
        let amp = tone_amplitude(body, 44100, 1000.0);
        let fraction = tone_fraction(body, 44100, 1000.0);
        assert!((amp - 0.5).abs() < 0.03, "amplitude {amp}");
        assert!(fraction > 0.999, "fraction {fraction}");
    }
}

#[test]
fn aac_lc_44100_stereo_to_opus_stereo() {
    let s = load_adts("sine1k_44100_stereo.adts");
    let mut t = AacToOpus::new(&s.asc, 2).unwrap();
    let mut frames = Vec::new();
    for (i, f) in s.frames.iter().enumerate() {
        frames.extend(t.push(f, pts(1000, i, 44100)).unwrap());
    }
    let before_flush = frames.len();
    frames.extend(t.flush().unwrap());
    // 43 * 1024 samples at 44.1 kHz = 47926 at 48 kHz: 49 whole frames, 50 with the flush.
    assert_eq!((before_flush, frames.len()), (49, 50));
    assert_eq!(frames[0].rtp_timestamp, 1000 * 48);
    assert_eq!(t.reanchor_count(), 0);
    let pcm = decode_contiguous(&frames, 2);
    for c in 0..2 {
        let ch = channel(&pcm, 2, c);
        assert_tone(
            &ch[9600..9600 + 28800],
            &format!("44.1k stereo, channel {c}"),
        );
    }
}

#[test]
fn libavcodec_aac_48000_to_opus_mono() {
    let s = load_adts("sine1k_48000_stereo_avenc.adts");
    // The codec_data libavcodec really writes (with the explicit "no SBR" extension).
    let asc = [0x11, 0x90, 0x56, 0xe5, 0x00];
    let mut t = AacToOpus::new(&asc, 1).unwrap();
    let mut frames = Vec::new();
    for (i, f) in s.frames.iter().enumerate() {
        frames.extend(t.push(f, pts(0, i, 48000)).unwrap());
    }
    frames.extend(t.flush().unwrap());
    assert_eq!(frames.len(), (s.frames.len() * 1024).div_ceil(960));
    let pcm = decode_contiguous(&frames, 1);
    assert_tone(&pcm[4800..4800 + 14400], "libavcodec 48k stereo -> mono");
}

#[test]
fn he_aac_decodes_its_core_at_half_rate() {
    // An explicit HE-AAC config (AOT 5, 22.05 kHz core, 44.1 kHz SBR, mono) over
    // AAC-LC frames coded at 22.05 kHz: the decoder runs the core at 22.05 kHz.
    let s = load_adts("sine1k_22050_mono.adts");
    let he_asc = [0x2b, 0x8a, 0x08, 0x00];
    let mut t = AacToOpus::new(&he_asc, 2).unwrap();
    assert!(t.decoder().config().is_he_aac());
    assert_eq!(t.decoder().config().nominal_sample_rate(), 44100);
    assert_eq!(
        (t.decoder().sample_rate(), t.decoder().channels()),
        (22050, 1)
    );
    let mut frames = Vec::new();
    for (i, f) in s.frames.iter().enumerate() {
        frames.extend(t.push(f, pts(500, i, 22050)).unwrap());
    }
    frames.extend(t.flush().unwrap());
    // Timing follows the core rate: 22 frames of 1024 at 22.05 kHz = 1.0216 s.
    let out_samples = (22 * 1024 * 48000u64).div_ceil(22050);
    assert_eq!(frames.len() as u64, out_samples.div_ceil(960));
    assert_eq!(t.reanchor_count(), 0);
    let pcm = decode_contiguous(&frames, 2);
    assert_eq!(channel(&pcm, 2, 0).len(), frames.len() * 960);
    assert_tone(
        &channel(&pcm, 2, 0)[9600..9600 + 28800],
        "HE-AAC core, left",
    );
    assert_tone(
        &channel(&pcm, 2, 1)[9600..9600 + 28800],
        "HE-AAC core, right",
    );
}

#[test]
fn corrupt_frames_are_errors_and_the_stream_goes_on() {
    let s = load_adts("sine1k_44100_stereo.adts");
    let mut t = AacToOpus::new(&s.asc, 2).unwrap();
    let mut rng = Rng(7);
    let mut frames = Vec::new();
    let mut errors = 0;
    for (i, f) in s.frames.iter().enumerate() {
        let input: Vec<u8> = match i {
            8 => f[..f.len() / 3].to_vec(), // truncated
            9 => Vec::new(),                // empty
            16 => (0..f.len()).map(|_| rng.next_u64() as u8).collect(), // garbage
            17 => vec![0xff; 200],          // junk
            _ => f.clone(),
        };
        match t.push(&input, pts(0, i, 44100)) {
            Ok(out) => frames.extend(out),
            Err(AudioError::Decode(e)) => {
                println!("frame {i}: {e}");
                errors += 1;
            }
            Err(e) => panic!("frame {i}: unexpected error {e}"),
        }
        if i == 8 || i == 9 {
            assert!(
                errors >= if i == 8 { 1 } else { 2 },
                "frame {i} should fail"
            );
        }
    }
    frames.extend(t.flush().unwrap());
    assert!(errors >= 2, "{errors} errors");
    // Concealment kept the clock: as many frames as the clean stream, back to back.
    assert_eq!(frames.len(), 50);
    assert_eq!(t.reanchor_count(), 0);
    let pcm = decode_contiguous(&frames, 2);
    // The tone is back after the damage (frames 20+ are clean: from 0.55 s).
    assert_tone(
        &channel(&pcm, 2, 0)[28800..28800 + 14400],
        "after corrupt frames",
    );
}

#[test]
fn clock_reanchors_on_gaps_and_reconnects_but_not_on_jitter() {
    let s = load_adts("sine1k_44100_stereo.adts");
    let mut t = AacToOpus::new(&s.asc, 2).unwrap();
    let mut frames = Vec::new();
    // 15 frames from 5 s, with +-30 ms jitter: no re-anchor.
    for (i, f) in s.frames[..15].iter().enumerate() {
        let jitter = [0i64, 30, -30, 12, -25][i % 5];
        let p = (pts(5000, i, 44100) as i64 + jitter) as u64;
        frames.extend(t.push(f, p).unwrap());
    }
    assert_eq!(t.reanchor_count(), 0);
    assert_eq!(frames[0].rtp_timestamp, 5000 * 48);
    let old_len = frames.len();
    // A 10 s gap: the old stretch is flushed, the clock restarts at the new pts.
    let mut out = t.push(&s.frames[15], 15000).unwrap();
    assert_eq!(t.reanchor_count(), 1);
    // 15 * 1024 samples at 44.1k = 16718 at 48k: 17 frames + the padded one.
    let flushed = 18 - old_len;
    assert!(out.len() >= flushed);
    assert_eq!(out[flushed - 1].rtp_timestamp, 5000 * 48 + 17 * 960);
    for f in out.drain(..flushed) {
        frames.push(f);
    }
    assert_eq!(frames.len(), 18);
    let mut second = out;
    for (i, f) in s.frames[16..30].iter().enumerate() {
        second.extend(t.push(f, pts(15000, i + 1, 44100)).unwrap());
    }
    assert_eq!(second[0].rtp_timestamp, 15000 * 48);
    decode_contiguous(&second, 2);
    // A publisher reconnect with timestamps from 0 again: backwards jump.
    let mut third = Vec::new();
    for (i, f) in s.frames[30..].iter().enumerate() {
        third.extend(t.push(f, pts(0, i, 44100)).unwrap());
    }
    assert_eq!(t.reanchor_count(), 2);
    let first_new = third
        .iter()
        .position(|f| f.rtp_timestamp == 0)
        .expect("frame at rtp 0");
    decode_contiguous(&third[first_new..], 2);
}

#[test]
fn rtp_timestamps_wrap() {
    let s = load_adts("sine1k_44100_stereo.adts");
    let mut t = AacToOpus::new(&s.asc, 1).unwrap();
    let start = 89_478_000u64; // * 48 is just below 2^32
    let mut frames = Vec::new();
    for (i, f) in s.frames.iter().enumerate() {
        frames.extend(t.push(f, pts(start, i, 44100)).unwrap());
    }
    assert_eq!(frames[0].rtp_timestamp, (start * 48) as u32);
    assert!(
        frames.last().unwrap().rtp_timestamp < frames[0].rtp_timestamp,
        "wrapped"
    );
    decode_contiguous(&frames, 1);
}

#[test]
fn pcm_to_opus_from_8khz_i16() {
    // Telephony: 8 kHz mono i16 in, Opus mono out.
    let mut p = PcmToOpus::new(8000, 1, 1).unwrap();
    p.set_rtp_timestamp(1234);
    let pcm: Vec<i16> = sine(8000, 1, 1000.0, 0.5, 8000)
        .iter()
        .map(|&s| (s * 32767.0) as i16)
        .collect();
    let mut frames = Vec::new();
    for block in pcm.chunks(160) {
        frames.extend(p.push_i16(block).unwrap());
    }
    frames.extend(p.flush().unwrap());
    assert_eq!(frames.len(), 50);
    assert_eq!(frames[0].rtp_timestamp, 1234);
    let out = decode_contiguous(&frames, 1);
    assert_tone(&out[24000..24000 + 19200], "8 kHz i16");
}

#[test]
fn pcm_to_opus_from_44100_stereo_f32() {
    let mut p = PcmToOpus::new(44100, 2, 2).unwrap();
    let pcm = sine(44100, 2, 1000.0, 0.5, 44100);
    let mut frames = Vec::new();
    // Odd block sizes, as a capture callback might deliver.
    for block in pcm.chunks(2 * 333) {
        frames.extend(p.push_f32(block).unwrap());
    }
    frames.extend(p.flush().unwrap());
    assert_eq!(frames.len(), 50);
    let out = decode_contiguous(&frames, 2);
    assert_tone(&channel(&out, 2, 1)[24000..24000 + 19200], "44.1 kHz f32");
}

/// MSB-first bit writer for hand-built frames.
struct Bits(Vec<u8>, usize);

impl Bits {
    fn put(&mut self, n: usize, v: u32) {
        for i in (0..n).rev() {
            if self.1.is_multiple_of(8) {
                self.0.push(0);
            }
            let last = self.0.len() - 1;
            self.0[last] |= (((v >> i) & 1) as u8) << (7 - self.1 % 8);
            self.1 += 1;
        }
    }
}

/// A silent AAC-LC mono frame (one SCE, no spectral data) followed by a fill element
/// carrying an SBR extension payload (EXT_SBR_DATA), as an HE-AAC frame does.
fn silent_frame_with_sbr_payload() -> Vec<u8> {
    let mut b = Bits(Vec::new(), 0);
    b.put(3, 0); // ID_SCE
    b.put(4, 0); // element_instance_tag
    b.put(8, 100); // global_gain
    b.put(1, 0); // ics_reserved_bit
    b.put(2, 0); // window_sequence ONLY_LONG_SEQUENCE
    b.put(1, 0); // window_shape
    b.put(6, 0); // max_sfb = 0: no sections, no scale factors
    b.put(1, 0); // predictor_data_present
    b.put(1, 0); // pulse_data_present
    b.put(1, 0); // tns_data_present
    b.put(1, 0); // gain_control_data_present
    b.put(3, 6); // ID_FIL
    b.put(4, 6); // count: 6 payload bytes
    b.put(4, 0xd); // extension_type EXT_SBR_DATA
    b.put(4, 0); // (rest of the first byte)
    for _ in 0..5 {
        b.put(8, 0x5a); // SBR payload bytes (not interpreted)
    }
    b.put(3, 7); // ID_END
    b.0
}

#[test]
fn frames_with_sbr_payload_decode_as_their_core() {
    let he_asc = [0x2b, 0x8a, 0x08, 0x00]; // HE-AAC, 22.05 kHz core, mono
    let frame = silent_frame_with_sbr_payload();
    let mut dec = AacDecoder::new(&he_asc).unwrap();
    for _ in 0..3 {
        let pcm = dec.decode(&frame).unwrap();
        assert_eq!(
            (pcm.sample_rate, pcm.channels, pcm.frames()),
            (22050, 1, 1024)
        );
        assert!(pcm.samples.iter().all(|s| s.abs() < 1e-6), "silent core");
    }
    // An LC config at 22.05 kHz with SBR in the frames (implicit signalling) too.
    let mut dec = AacDecoder::new(&[0x13, 0x88]).unwrap();
    assert!(dec.config().may_have_implicit_sbr());
    assert_eq!(dec.decode(&frame).unwrap().frames(), 1024);
    // And through the pipeline: 1024 core samples per frame on the 48 kHz clock.
    let mut t = AacToOpus::new(&he_asc, 1).unwrap();
    let mut frames = Vec::new();
    for i in 0..44 {
        frames.extend(t.push(&frame, pts(0, i, 22050)).unwrap());
    }
    frames.extend(t.flush().unwrap());
    assert_eq!(
        frames.len() as u64,
        (44 * 1024 * 48000u64).div_ceil(22050).div_ceil(960)
    );
    assert_eq!(t.reanchor_count(), 0);
}
