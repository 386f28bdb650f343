//! An N-1 mixer for phones in a room, and audio levels as RFC 6464 expresses them.
//!
//! Each 20 ms tick, the decoded frames (48 kHz mono, 960 samples) of up to K room
//! speakers go in, each tagged with its source id; every listener gets the sum of all
//! but its own voice ([`Mixer::mix_for`]). The sum goes through a soft clipper
//! ([`soft_clip`]): linear up to 0.75 of full scale, then a tanh knee that
//! approaches but never reaches full scale, so loud overlaps compress instead of
//! clipping hard or wrapping around when converted to integers.
//!
//! [`audio_level`] measures a frame as RFC 6464 does for its RTP header extension:
//! the RMS level in dB relative to the overload point (dBov, a full-scale square
//! wave being 0 dBov), as a value from 0 (loudest) to 127 (-127 dBov or digital
//! silence). [`Mixer`] keeps the K loudest when more speakers are offered.

use crate::AudioError;

/// Samples in one mixer frame (20 ms at 48 kHz).
pub const MIX_FRAME_SAMPLES: usize = 960;
/// The soft clipper is linear below this magnitude.
const KNEE: f32 = 0.75;

/// Soft clipping: `x` unchanged up to 0.75 in magnitude, then compressed smoothly
/// (continuous slope) towards, and never to, 1.0. NaN gives 0.
pub fn soft_clip(x: f32) -> f32 {
    if x.is_nan() {
        return 0.0;
    }
    let a = x.abs();
    if a <= KNEE {
        return x;
    }
    let y = KNEE + (1.0 - KNEE) * ((a - KNEE) / (1.0 - KNEE)).tanh();
    // tanh rounds to 1.0 for large arguments in f32: stay below full scale.
    let y = y.min(1.0 - f32::EPSILON);
    y.copysign(x)
}

/// The RFC 6464 audio level of `pcm` (samples in [-1, 1]): `-dBov` of its RMS,
/// rounded, from 0 (0 dBov, loudest) to 127 (-127 dBov or quieter, or empty).
pub fn audio_level(pcm: &[f32]) -> u8 {
    if pcm.is_empty() {
        return 127;
    }
    let sum: f64 = pcm
        .iter()
        .map(|&s| {
            let s = if s.is_finite() {
                f64::from(s).clamp(-1.0, 1.0)
            } else {
                0.0
            };
            s * s
        })
        .sum();
    let rms = (sum / pcm.len() as f64).sqrt();
    if rms <= 0.0 {
        return 127;
    }
    (-20.0 * rms.log10()).round().clamp(0.0, 127.0) as u8
}

struct Source<Id> {
    id: Id,
    pcm: Box<[f32; MIX_FRAME_SAMPLES]>,
    level: u8,
}

/// The N-1 mixer of one tick. See the module documentation.
pub struct Mixer<Id> {
    max_sources: usize,
    sources: Vec<Source<Id>>,
}

impl<Id: PartialEq + Clone> Mixer<Id> {
    /// A mixer of at most `max_sources` speakers per tick (at least 1).
    pub fn new(max_sources: usize) -> Self {
        let max_sources = max_sources.max(1);
        Mixer {
            max_sources,
            sources: Vec::with_capacity(max_sources),
        }
    }

    /// Forgets the frames of the last tick.
    pub fn clear(&mut self) {
        self.sources.clear();
    }

    /// Speakers in this tick.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether no speaker is in this tick.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Adds the frame of speaker `id` for this tick (replacing an earlier one of the
    /// same id). When the mixer is full, the quietest speaker makes room if `pcm` is
    /// louder; returns whether the frame was taken. Non-finite samples count as 0.
    pub fn add(&mut self, id: Id, pcm: &[f32]) -> Result<bool, AudioError> {
        if pcm.len() != MIX_FRAME_SAMPLES {
            return Err(AudioError::InvalidArgument(format!(
                "a mixer frame takes {MIX_FRAME_SAMPLES} samples, got {}",
                pcm.len()
            )));
        }
        let mut frame = Box::new([0.0f32; MIX_FRAME_SAMPLES]);
        for (d, &s) in frame.iter_mut().zip(pcm) {
            *d = if s.is_finite() {
                s.clamp(-4.0, 4.0)
            } else {
                0.0
            };
        }
        let level = audio_level(&frame[..]);
        let source = Source {
            id,
            pcm: frame,
            level,
        };
        if let Some(existing) = self.sources.iter_mut().find(|s| s.id == source.id) {
            *existing = source;
            return Ok(true);
        }
        if self.sources.len() < self.max_sources {
            self.sources.push(source);
            return Ok(true);
        }
        // Full: replace the quietest (highest level value) if the new one is louder.
        let quietest = self
            .sources
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.level)
            .map(|(i, s)| (i, s.level));
        match quietest {
            Some((i, q)) if level < q => {
                self.sources[i] = source;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The mix of every speaker except `exclude` (a listener who is also a speaker
    /// does not hear itself), soft-clipped.
    pub fn mix_for(&self, exclude: &Id) -> [f32; MIX_FRAME_SAMPLES] {
        self.mix(Some(exclude))
    }

    /// The mix of every speaker, soft-clipped.
    pub fn mix_all(&self) -> [f32; MIX_FRAME_SAMPLES] {
        self.mix(None)
    }

    /// The speakers of this tick with their RFC 6464 levels, loudest first.
    pub fn levels(&self) -> Vec<(Id, u8)> {
        let mut v: Vec<(Id, u8)> = self
            .sources
            .iter()
            .map(|s| (s.id.clone(), s.level))
            .collect();
        v.sort_by_key(|&(_, level)| level);
        v
    }

    fn mix(&self, exclude: Option<&Id>) -> [f32; MIX_FRAME_SAMPLES] {
        let mut out = [0.0f32; MIX_FRAME_SAMPLES];
        for s in &self.sources {
            if exclude.is_some_and(|e| *e == s.id) {
                continue;
            }
            for (o, &x) in out.iter_mut().zip(s.pcm.iter()) {
                *o += x;
            }
        }
        for o in &mut out {
            *o = soft_clip(*o);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, amp: f32) -> Vec<f32> {
        (0..MIX_FRAME_SAMPLES)
            .map(|i| amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 48000.0).sin() as f32)
            .collect()
    }

    #[test]
    fn levels_follow_rfc6464() {
        assert_eq!(audio_level(&[1.0; 960]), 0);
        assert_eq!(audio_level(&[-1.0; 960]), 0);
        // A full-scale sine is -3 dBov.
        assert_eq!(audio_level(&tone(1000.0, 1.0)), 3);
        assert_eq!(audio_level(&tone(1000.0, 0.1)), 23);
        assert_eq!(audio_level(&[0.0; 960]), 127);
        assert_eq!(audio_level(&[1e-9; 960]), 127);
        assert_eq!(audio_level(&[]), 127);
        assert_eq!(audio_level(&[f32::NAN; 4]), 127);
    }

    #[test]
    fn soft_clip_is_bounded_monotonic_and_transparent_below_the_knee() {
        assert_eq!(soft_clip(0.5), 0.5);
        assert_eq!(soft_clip(-0.75), -0.75);
        assert_eq!(soft_clip(f32::NAN), 0.0);
        let mut prev = -1.0f32;
        for i in -4000..=4000 {
            let x = i as f32 / 400.0;
            let y = soft_clip(x);
            assert!(y.abs() < 1.0, "{x} -> {y}");
            assert!(y >= prev, "not monotonic at {x}");
            prev = y;
        }
        assert!(soft_clip(f32::INFINITY) < 1.0 && soft_clip(f32::NEG_INFINITY) > -1.0);
    }

    #[test]
    fn n_minus_one() {
        let mut m = Mixer::new(3);
        let a = tone(500.0, 0.2);
        let b = tone(700.0, 0.2);
        let c = tone(900.0, 0.2);
        assert!(m.add(1u32, &a).unwrap());
        assert!(m.add(2, &b).unwrap());
        assert!(m.add(3, &c).unwrap());
        let for1 = m.mix_for(&1);
        for i in 0..MIX_FRAME_SAMPLES {
            assert!((for1[i] - (b[i] + c[i])).abs() < 1e-6);
        }
        let for9 = m.mix_for(&9);
        let all = m.mix_all();
        assert_eq!(for9, all);
        assert!(m.add(1, &[0.0; 3]).is_err());
    }

    #[test]
    fn loud_overlap_never_clips_or_wraps() {
        let mut m = Mixer::new(4);
        for id in 0..4u8 {
            m.add(id, &[0.9; MIX_FRAME_SAMPLES]).unwrap();
        }
        let mix = m.mix_for(&0);
        // 2.7 in: compressed below full scale, still positive (no wrap-around).
        assert!(mix.iter().all(|&s| s > 0.9 && s < 1.0));
        let i16s: Vec<i16> = mix.iter().map(|&s| crate::g711::f32_to_i16(s)).collect();
        assert!(i16s.iter().all(|&s| s > 29000));
        let mut neg = Mixer::new(2);
        neg.add('a', &[-1.0; MIX_FRAME_SAMPLES]).unwrap();
        neg.add('b', &[f32::NAN; MIX_FRAME_SAMPLES]).unwrap();
        assert!(neg.mix_all().iter().all(|&s| s < -0.9 && s > -1.0));
    }

    #[test]
    fn keeps_the_loudest_when_full() {
        let mut m = Mixer::new(2);
        m.add("quiet", &tone(500.0, 0.01)).unwrap();
        m.add("mid", &tone(500.0, 0.1)).unwrap();
        assert!(m.add("loud", &tone(500.0, 0.5)).unwrap());
        assert!(!m.add("whisper", &tone(500.0, 0.001)).unwrap());
        let ids: Vec<&str> = m.levels().iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, vec!["loud", "mid"]);
        m.clear();
        assert!(m.is_empty());
    }
}
