//! Random and mutated AAC frames never panic through the public API.
//!
//! Its own test binary: it installs a panic hook to count panics caught inside the
//! decoder (the hook is process-wide).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use mediamesh_audio::{AacDecoder, AacToOpus, AudioSpecificConfig};

static PANICS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn garbage_never_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Panics inside the third-party decoder are caught by `AacDecoder`; count
        // them quietly. Anything else (a failed assertion here) is reported.
        let in_test = info
            .location()
            .is_some_and(|l| l.file().contains("tests/fuzz.rs"));
        if in_test {
            default_hook(info);
        } else {
            PANICS.fetch_add(1, Ordering::SeqCst);
        }
    }));
    let s = load_adts("sine1k_44100_stereo.adts");
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut dec = AacDecoder::new(&s.asc).unwrap();
    let mut mono = AacDecoder::new(&[0x13, 0x88]).unwrap();
    let (mut ok, mut err) = (0, 0);
    for round in 0..4000 {
        let frame: Vec<u8> = if round % 2 == 0 {
            let n = 1 + rng.below(1500);
            (0..n).map(|_| rng.next_u64() as u8).collect()
        } else {
            // A real frame with a few bits flipped, bytes cut or appended.
            let mut f = s.frames[rng.below(s.frames.len())].clone();
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(f.len());
                f[i] ^= 1 << rng.below(8);
            }
            match rng.below(4) {
                0 => f.truncate(1 + rng.below(f.len())),
                1 => f.extend((0..rng.below(64)).map(|_| rng.next_u64() as u8)),
                _ => {}
            }
            f
        };
        for d in [&mut dec, &mut mono] {
            match d.decode(&frame) {
                Ok(p) => {
                    assert_eq!(p.frames(), 1024);
                    assert!(p.samples.iter().all(|s| s.is_finite()));
                    ok += 1;
                }
                Err(_) => err += 1,
            }
        }
        // The decoder still decodes a good frame afterwards.
        if round % 10 == 0 {
            assert!(dec.decode(&s.frames[20]).is_ok());
        }
    }
    // The whole pipeline too.
    let mut t = AacToOpus::new(&s.asc, 2).unwrap();
    for i in 0..500u64 {
        let n = 1 + rng.below(800);
        let frame: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        let _ = t.push(&frame, i * 23);
    }
    // And configs.
    for _ in 0..20000 {
        let n = rng.below(8);
        let asc: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        let _ = AudioSpecificConfig::parse(&asc);
        let _ = AacDecoder::new(&asc);
    }
    let panics = PANICS.load(Ordering::SeqCst);
    let _ = std::panic::take_hook();
    println!("decoded {ok}, rejected {err}, panics caught inside the decoder: {panics}");
}
