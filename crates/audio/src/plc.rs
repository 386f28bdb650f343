//! Packet loss concealment for waveform codecs (G.711, G.722), in the spirit of
//! ITU-T G.711 Appendix I: repeat the last pitch period, fade out, then silence.
//!
//! On the first lost frame the pitch period of the last 30 ms of output is estimated
//! by normalised autocorrelation over lags of 2.5 to 15 ms; where nothing periodic
//! is found (noise, silence) the last 10 ms are used instead. That segment (a whole
//! number of periods, at least 5 ms, with its end cross-faded into what preceded its
//! start so the repetitions join without a click) is repeated with a gain falling
//! linearly from 1 to 0 over three lost frames; later lost frames are silence. The
//! first good frame after a loss is cross-faded in over 5 ms from the continuing
//! concealment.
//!
//! Simpler than Appendix I (which delays output by 3.75 ms to smooth the start of the
//! concealment and varies the number of repeated periods), and honest about it: good
//! for the odd lost packet, a fade to silence for long gaps. Opus has its own
//! concealment in the decoder (see [`crate::OpusDecoder::conceal`]).

/// Lost frames over which the concealment fades to silence.
pub const FADE_FRAMES: u32 = 3;

/// Concealment for one mono stream of f32 samples at a fixed rate.
#[derive(Debug, Clone)]
pub struct Plc {
    rate: u32,
    /// The last output (good or concealed), newest last, at most `history_len`.
    history: Vec<f32>,
    history_len: usize,
    /// The segment repeated while concealing.
    segment: Vec<f32>,
    /// Position in `segment` of the next concealed sample.
    pos: usize,
    /// Concealed samples in the current run, and the run's fade length.
    concealed: usize,
    fade_len: usize,
    /// Lost frames in the current run.
    losses: u32,
}

impl Plc {
    /// Concealment at `sample_rate` Hz.
    pub fn new(sample_rate: u32) -> Self {
        let rate = sample_rate.clamp(1000, 192_000);
        let history_len = ms(rate, 30.0);
        Plc {
            rate,
            history: Vec::with_capacity(history_len * 2),
            history_len,
            segment: Vec::new(),
            pos: 0,
            concealed: 0,
            fade_len: 0,
            losses: 0,
        }
    }

    /// The sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// Lost frames since the last good one.
    pub fn consecutive_losses(&self) -> u32 {
        self.losses
    }

    /// Forgets everything (a new stream).
    pub fn reset(&mut self) {
        self.history.clear();
        self.segment.clear();
        self.pos = 0;
        self.concealed = 0;
        self.fade_len = 0;
        self.losses = 0;
    }

    /// Records a good (decoded) frame. After a loss, its start is cross-faded from
    /// the concealment in place.
    pub fn good(&mut self, pcm: &mut [f32]) {
        if self.losses > 0 {
            let n = ms(self.rate, 5.0).min(pcm.len());
            for (i, s) in pcm.iter_mut().take(n).enumerate() {
                let w = (i + 1) as f32 / (n + 1) as f32;
                let c = self.next_concealed();
                *s = w * *s + (1.0 - w) * c;
            }
            self.losses = 0;
            self.concealed = 0;
        }
        self.remember(pcm);
    }

    /// Produces `len` samples standing in for a lost frame, appended to `out`.
    pub fn conceal(&mut self, len: usize, out: &mut Vec<f32>) {
        if self.losses == 0 {
            self.start_run(len);
        }
        self.losses = self.losses.saturating_add(1);
        let start = out.len();
        for _ in 0..len {
            let s = self.next_concealed();
            out.push(s);
        }
        let concealed = out[start..].to_vec();
        self.remember(&concealed);
    }

    /// The next concealment sample, advancing the fade.
    fn next_concealed(&mut self) -> f32 {
        if self.segment.is_empty() || self.concealed >= self.fade_len {
            self.concealed = self.concealed.saturating_add(1);
            return 0.0;
        }
        let gain = 1.0 - self.concealed as f32 / self.fade_len as f32;
        let s = self.segment[self.pos] * gain;
        self.pos = (self.pos + 1) % self.segment.len();
        self.concealed += 1;
        s
    }

    fn remember(&mut self, pcm: &[f32]) {
        self.history
            .extend(pcm.iter().map(|&s| if s.is_finite() { s } else { 0.0 }));
        if self.history.len() > self.history_len {
            let excess = self.history.len() - self.history_len;
            self.history.drain(..excess);
        }
    }

    /// Picks the segment to repeat at the start of a loss run.
    fn start_run(&mut self, frame_len: usize) {
        self.concealed = 0;
        self.pos = 0;
        self.fade_len = frame_len.saturating_mul(FADE_FRAMES as usize).max(1);
        self.segment.clear();
        let h = &self.history;
        if h.is_empty() || h.iter().all(|&s| s == 0.0) {
            return;
        }
        let period = self.pitch_period().unwrap_or(ms(self.rate, 10.0));
        // A whole number of periods of at least 5 ms, within the history.
        let min_len = ms(self.rate, 5.0);
        let mut seg_len = period * min_len.div_ceil(period).max(1);
        if seg_len > h.len() {
            seg_len = if period <= h.len() { period } else { h.len() };
        }
        let start = h.len() - seg_len;
        self.segment.extend_from_slice(&h[start..]);
        // Cross-fade the segment's end into the samples before its start, so that
        // wrapping from its end to its start continues the signal.
        let ola = (seg_len / 4).min(start);
        for i in 0..ola {
            let w = (i + 1) as f32 / (ola + 1) as f32;
            let k = seg_len - ola + i;
            let before = h[start - ola + i];
            self.segment[k] = (1.0 - w) * self.segment[k] + w * before;
        }
    }

    /// The lag (2.5 to 15 ms) with the highest normalised correlation between the
    /// last 10 ms of history and the history that far back, if it is convincingly
    /// periodic.
    fn pitch_period(&self) -> Option<usize> {
        let h = &self.history;
        let window = ms(self.rate, 10.0);
        let min_lag = ms(self.rate, 2.5).max(2);
        let max_lag = ms(self.rate, 15.0).min(h.len().saturating_sub(window));
        if max_lag < min_lag {
            return None;
        }
        let end = h.len();
        let cur = &h[end - window..];
        let e_cur: f64 = cur.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        if e_cur <= 1e-12 {
            return None;
        }
        let mut best = (0.0f64, 0usize);
        for lag in min_lag..=max_lag {
            let past = &h[end - window - lag..end - lag];
            let (mut c, mut e) = (0.0f64, 0.0f64);
            for (&a, &b) in cur.iter().zip(past) {
                c += f64::from(a) * f64::from(b);
                e += f64::from(b) * f64::from(b);
            }
            if e <= 1e-12 {
                continue;
            }
            let r = c / (e_cur * e).sqrt();
            if r > best.0 {
                best = (r, lag);
            }
        }
        (best.0 >= 0.5).then_some(best.1)
    }
}

/// `millis` milliseconds of samples at `rate`.
fn ms(rate: u32, millis: f64) -> usize {
    (f64::from(rate) * millis / 1000.0).round() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, freq: f64, n: usize, offset: usize) -> Vec<f32> {
        (offset..offset + n)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as f32
            })
            .collect()
    }

    #[test]
    fn repeats_the_period_then_fades_to_silence() {
        let mut plc = Plc::new(8000);
        for k in 0..5 {
            let mut f = tone(8000, 250.0, 160, k * 160);
            plc.good(&mut f);
        }
        let mut out = Vec::new();
        plc.conceal(160, &mut out);
        // The first lost frame continues the 250 Hz tone closely at first.
        let expected = tone(8000, 250.0, 160, 800);
        let err: f32 = out[..40]
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 0.05, "continuation error {err}");
        plc.conceal(160, &mut out);
        plc.conceal(160, &mut out);
        plc.conceal(160, &mut out);
        assert_eq!(plc.consecutive_losses(), 4);
        // Fading: each lost frame quieter than the one before; the fourth is silent.
        let peak = |f: &[f32]| f.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
        let peaks: Vec<f32> = out.chunks(160).map(peak).collect();
        assert!(peaks[0] > 0.4 && peaks[1] < peaks[0] && peaks[2] < peaks[1]);
        assert_eq!(peaks[3], 0.0);
        // A good frame after the loss fades in without a jump.
        let mut f = tone(8000, 250.0, 160, 1440);
        plc.good(&mut f);
        assert!(f[0].abs() < 0.05, "{}", f[0]);
        assert_eq!(plc.consecutive_losses(), 0);
    }

    #[test]
    fn silence_and_empty_history_conceal_with_silence() {
        let mut plc = Plc::new(16000);
        let mut out = Vec::new();
        plc.conceal(320, &mut out);
        assert!(out.iter().all(|&s| s == 0.0));
        let mut f = vec![0.0; 320];
        plc.good(&mut f);
        plc.conceal(320, &mut out);
        assert!(out.iter().all(|&s| s == 0.0));
        // Non-finite input is not carried into the concealment.
        let mut f = vec![f32::NAN; 320];
        plc.good(&mut f);
        out.clear();
        plc.conceal(320, &mut out);
        assert!(out.iter().all(|s| s.is_finite()));
    }
}
