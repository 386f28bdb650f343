//! Streaming sample-rate conversion and channel mixing.
//!
//! [`Resampler`] is a windowed-sinc (Kaiser) polyphase resampler for a fixed pair of
//! rates. It keeps its history across calls, so splitting the input into blocks of
//! any size gives exactly the same output as one call (no clicks at block edges).
//! Output sample `n` is the input signal at time `n * in_rate / out_rate` (in input
//! samples): the conversion adds no timing offset. The price is a lookahead of a few
//! dozen input samples (under 1 ms) that stay buffered until more input (or
//! [`Resampler::flush`]) arrives.
//!
//! For rates whose reduced ratio has a small numerator (every common rate to 48 kHz:
//! 44.1 kHz → 160/147, 22.05 kHz → 320/147, 11.025 kHz → 640/147, 8/16/24/32 kHz), the
//! filter has one exact phase per output position. Other ratios use 1024 phases with
//! linear interpolation between neighbouring phases.
//!
//! [`AudioConverter`] combines a resampler with down/up-mixing to mono or stereo.

use crate::AudioError;

/// Zero crossings of the sinc on each side of the centre.
const ZERO_CROSSINGS: f64 = 40.0;
/// Passband edge as a fraction of the lower Nyquist frequency.
const ROLLOFF: f64 = 0.95;
/// Kaiser window shape (about 85 dB stopband attenuation).
const KAISER_BETA: f64 = 8.6;
/// Largest phase count stored exactly; above it phases are interpolated.
const MAX_EXACT_PHASES: u64 = 1024;

/// A streaming resampler for interleaved f32 audio.
pub struct Resampler {
    in_rate: u32,
    out_rate: u32,
    channels: usize,
    passthrough: bool,
    /// Reduced ratio: output step of `m / l` input samples.
    l: u64,
    step_int: i64,
    step_rem: u64,
    /// Number of phase rows - 1 (table has `phases + 1` rows).
    phases: usize,
    exact: bool,
    /// Half the filter length in input samples.
    k: i64,
    taps: usize,
    table: Vec<f32>,
    /// Per-channel input history; `hist[c][0]` is input index `hist_start`.
    hist: Vec<Vec<f32>>,
    hist_start: i64,
    /// Integer input position and fractional remainder (over `l`) of the next output.
    pos_i: i64,
    pos_rem: u64,
    /// Input frames received since the last reset.
    n_in: i64,
}

impl Resampler {
    /// A resampler from `in_rate` to `out_rate` for `channels` interleaved channels.
    pub fn new(in_rate: u32, out_rate: u32, channels: u8) -> Result<Self, AudioError> {
        if in_rate == 0 || out_rate == 0 || in_rate > 1_000_000 || out_rate > 1_000_000 {
            return Err(AudioError::InvalidArgument(format!(
                "unsupported resampling {in_rate} Hz -> {out_rate} Hz"
            )));
        }
        if channels == 0 {
            return Err(AudioError::InvalidArgument("zero channels".into()));
        }
        let g = gcd(u64::from(in_rate), u64::from(out_rate));
        let l = u64::from(out_rate) / g;
        let m = u64::from(in_rate) / g;
        let passthrough = in_rate == out_rate;
        let exact = l <= MAX_EXACT_PHASES;
        let phases = if exact {
            l as usize
        } else {
            MAX_EXACT_PHASES as usize
        };
        // Cutoff in cycles per input sample, times two.
        let two_fc = ROLLOFF * f64::from(in_rate.min(out_rate)) / f64::from(in_rate);
        let k = (ZERO_CROSSINGS / two_fc).ceil() as i64;
        let taps = 2 * k as usize;
        let mut table = Vec::new();
        if !passthrough {
            table.reserve((phases + 1) * taps);
            for p in 0..=phases {
                let frac = p as f64 / phases as f64;
                let start = table.len();
                let mut sum = 0.0;
                for j in 0..taps {
                    let t = j as f64 - (k - 1) as f64 - frac;
                    let v = two_fc * sinc(two_fc * t) * kaiser(t / k as f64, KAISER_BETA);
                    sum += v;
                    table.push(v as f32);
                }
                // Unity DC gain on every phase.
                let norm = (1.0 / sum) as f32;
                for v in &mut table[start..] {
                    *v *= norm;
                }
            }
        }
        let mut r = Resampler {
            in_rate,
            out_rate,
            channels: usize::from(channels),
            passthrough,
            l,
            step_int: (m / l) as i64,
            step_rem: m % l,
            phases,
            exact,
            k,
            taps,
            table,
            hist: vec![Vec::new(); usize::from(channels)],
            hist_start: 0,
            pos_i: 0,
            pos_rem: 0,
            n_in: 0,
        };
        r.reset();
        Ok(r)
    }

    /// Input rate in Hz.
    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    /// Output rate in Hz.
    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    /// Channel count.
    pub fn channels(&self) -> u8 {
        self.channels as u8
    }

    /// Forgets all history: the next input starts a new signal (preceded by silence).
    pub fn reset(&mut self) {
        let lead = (self.k - 1).max(0);
        for h in &mut self.hist {
            h.clear();
            h.resize(lead as usize, 0.0);
        }
        self.hist_start = -lead;
        self.pos_i = 0;
        self.pos_rem = 0;
        self.n_in = 0;
    }

    /// Resamples interleaved `input` (a trailing partial frame is ignored) and appends
    /// the interleaved output available so far to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let frames = input.len() / self.channels;
        let input = &input[..frames * self.channels];
        self.n_in += frames as i64;
        if self.passthrough {
            out.extend_from_slice(input);
            return;
        }
        for (c, h) in self.hist.iter_mut().enumerate() {
            h.extend(input.iter().skip(c).step_by(self.channels));
        }
        self.run(out, None);
    }

    /// Emits the output still owed for the input given so far (the filter tail is
    /// completed with silence), then resets. Over a whole stream the output has
    /// `ceil(input_frames * out_rate / in_rate)` frames.
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        if !self.passthrough {
            for h in &mut self.hist {
                h.resize(h.len() + self.k as usize + 1, 0.0);
            }
            let end = self.n_in;
            self.run(out, Some(end));
        }
        self.reset();
    }

    fn run(&mut self, out: &mut Vec<f32>, limit: Option<i64>) {
        let hist_len = self.hist.first().map_or(0, Vec::len) as i64;
        let hist_end = self.hist_start + hist_len;
        let taps = self.taps;
        while self.pos_i + self.k < hist_end {
            if limit.is_some_and(|end| self.pos_i >= end) {
                break;
            }
            let offset = (self.pos_i - self.k + 1 - self.hist_start) as usize;
            if self.exact {
                let row = self.pos_rem as usize * taps;
                let coeffs = &self.table[row..row + taps];
                for h in &self.hist {
                    out.push(dot(&h[offset..offset + taps], coeffs));
                }
            } else {
                let phase = self.pos_rem as f64 * self.phases as f64 / self.l as f64;
                let idx = (phase.floor() as usize).min(self.phases - 1);
                let t = (phase - idx as f64) as f32;
                let a = &self.table[idx * taps..(idx + 1) * taps];
                let b = &self.table[(idx + 1) * taps..(idx + 2) * taps];
                for h in &self.hist {
                    let x = &h[offset..offset + taps];
                    let s0 = dot(x, a);
                    let s1 = dot(x, b);
                    out.push(s0 + t * (s1 - s0));
                }
            }
            self.pos_i += self.step_int;
            self.pos_rem += self.step_rem;
            if self.pos_rem >= self.l {
                self.pos_rem -= self.l;
                self.pos_i += 1;
            }
        }
        // Drop history no future output needs.
        let keep_from = self.pos_i - self.k + 1;
        let drop = (keep_from - self.hist_start).clamp(0, hist_len) as usize;
        if drop > 0 {
            for h in &mut self.hist {
                h.drain(..drop);
            }
            self.hist_start += drop as i64;
        }
    }
}

fn dot(x: &[f32], c: &[f32]) -> f32 {
    // Four accumulators let the compiler vectorise without reassociation licence.
    let mut acc = [0.0f32; 4];
    let xc = x.chunks_exact(4);
    let cc = c.chunks_exact(4);
    let (xr, cr) = (xc.remainder(), cc.remainder());
    for (a, b) in xc.zip(cc) {
        acc[0] += a[0] * b[0];
        acc[1] += a[1] * b[1];
        acc[2] += a[2] * b[2];
        acc[3] += a[3] * b[3];
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (a, b) in xr.iter().zip(cr) {
        s += a * b;
    }
    s
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// Kaiser window at `x` in [-1, 1].
fn kaiser(x: f64, beta: f64) -> f64 {
    if x.abs() > 1.0 {
        return 0.0;
    }
    bessel_i0(beta * (1.0 - x * x).sqrt()) / bessel_i0(beta)
}

fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..64 {
        term *= half / k as f64;
        let t2 = term * term;
        sum += t2;
        if t2 < sum * 1e-17 {
            break;
        }
    }
    sum
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Converts interleaved audio between channel counts, appending to `out`.
///
/// To mono: the average of all channels. From mono: the channel copied to every
/// output channel. Otherwise the first `out_channels` channels are kept (or, going up
/// from more than one channel, the extra outputs repeat the last input channel).
pub fn remix(input: &[f32], in_channels: u8, out_channels: u8, out: &mut Vec<f32>) {
    let (ic, oc) = (usize::from(in_channels), usize::from(out_channels));
    if ic == 0 || oc == 0 {
        return;
    }
    if ic == oc {
        out.extend_from_slice(&input[..input.len() / ic * ic]);
        return;
    }
    out.reserve(input.len() / ic * oc);
    for frame in input.chunks_exact(ic) {
        if oc == 1 {
            out.push(frame.iter().sum::<f32>() / ic as f32);
        } else {
            for c in 0..oc {
                out.push(frame[c.min(ic - 1)]);
            }
        }
    }
}

/// Resampling plus channel mixing: any rate and channel count in, a fixed rate and
/// mono or stereo out. Streaming, like [`Resampler`].
pub struct AudioConverter {
    in_channels: u8,
    out_channels: u8,
    resampler: Resampler,
    tmp: Vec<f32>,
    tmp2: Vec<f32>,
}

impl AudioConverter {
    /// A converter from `in_rate`/`in_channels` to `out_rate`/`out_channels` (1 or 2).
    pub fn new(
        in_rate: u32,
        in_channels: u8,
        out_rate: u32,
        out_channels: u8,
    ) -> Result<Self, AudioError> {
        if !(1..=2).contains(&out_channels) {
            return Err(AudioError::InvalidArgument(format!(
                "{out_channels} output channels (1 or 2)"
            )));
        }
        if !(1..=8).contains(&in_channels) {
            return Err(AudioError::InvalidArgument(format!(
                "{in_channels} input channels (1 to 8)"
            )));
        }
        // Resample the smaller channel count: mix down first, or up afterwards.
        let mid = in_channels.min(out_channels);
        Ok(AudioConverter {
            in_channels,
            out_channels,
            resampler: Resampler::new(in_rate, out_rate, mid)?,
            tmp: Vec::new(),
            tmp2: Vec::new(),
        })
    }

    /// Input rate in Hz.
    pub fn in_rate(&self) -> u32 {
        self.resampler.in_rate()
    }

    /// Input channel count.
    pub fn in_channels(&self) -> u8 {
        self.in_channels
    }

    /// Output channel count.
    pub fn out_channels(&self) -> u8 {
        self.out_channels
    }

    /// Converts interleaved `input`, appending the interleaved output to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let mid = self.resampler.channels();
        let resampled = if self.in_channels != mid {
            self.tmp.clear();
            remix(input, self.in_channels, mid, &mut self.tmp);
            self.tmp2.clear();
            self.resampler.process(&self.tmp, &mut self.tmp2);
            &self.tmp2
        } else {
            self.tmp2.clear();
            self.resampler.process(input, &mut self.tmp2);
            &self.tmp2
        };
        remix(resampled, mid, self.out_channels, out);
    }

    /// Emits the buffered tail and resets (see [`Resampler::flush`]).
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        self.tmp2.clear();
        self.resampler.flush(&mut self.tmp2);
        remix(
            &self.tmp2,
            self.resampler.channels(),
            self.out_channels,
            out,
        );
    }

    /// Forgets the history.
    pub fn reset(&mut self) {
        self.resampler.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_length_matches_ratio_after_flush() {
        for &rate in &[
            8000u32, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 96000, 37800,
        ] {
            let mut r = Resampler::new(rate, 48000, 1).unwrap();
            let input = vec![0.25f32; rate as usize / 10 + 7];
            let mut out = Vec::new();
            r.process(&input, &mut out);
            r.flush(&mut out);
            let expected = (input.len() as u64 * 48000).div_ceil(u64::from(rate));
            assert_eq!(out.len() as u64, expected, "rate {rate}");
            // DC passes at unity once the filter has filled.
            let mid = out[out.len() / 2];
            assert!((mid - 0.25).abs() < 1e-3, "rate {rate}: {mid}");
        }
    }

    #[test]
    fn remix_rules() {
        let mut out = Vec::new();
        remix(&[1.0, 0.0, 0.5, 0.5], 2, 1, &mut out);
        assert_eq!(out, vec![0.5, 0.5]);
        out.clear();
        remix(&[0.3, -0.2], 1, 2, &mut out);
        assert_eq!(out, vec![0.3, 0.3, -0.2, -0.2]);
    }
}
