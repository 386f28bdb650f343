//! G.722 at 64 kbit/s (ITU-T G.722, 09/2012): 16 kHz audio in two sub-bands.
//!
//! Each pair of 16-bit input samples goes through the 24-tap quadrature mirror
//! filter (QMF) into one lower-band (0-4 kHz) and one higher-band (4-8 kHz) sample at
//! 8 kHz. The lower band is coded with 6-bit ADPCM, the higher band with 2-bit ADPCM,
//! both with the backward-adaptive pole-zero predictor of the Recommendation (its
//! blocks 1 to 6 and the shared block 4), and the two codes make one byte:
//! `(higher << 6) | lower`. The arithmetic is the Recommendation's fixed-point
//! arithmetic, so the bitstream interworks with other implementations (checked
//! bit for bit against an implementation that passes the ITU test vectors).
//!
//! Only mode 1 (64 kbit/s, all 6 lower-band bits) is provided, the one the RTP
//! payload format uses (RFC 3551 §4.5.2: payload type 9, one byte per two samples,
//! and an RTP clock of 8000 Hz although the audio is sampled at 16 kHz).

/// The transmit and receive QMF coefficients h(0)..h(11) of the even taps
/// (the odd taps are the same in reverse order), scaled by 2^13.
const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// Lower-band quantiser decision levels (table 6/G.722, in units of det / 4096).
const Q6: [i32; 30] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919,
];

/// Lower-band 6-bit code for quantiser interval `mil` (1..=30), negative error.
fn iln(mil: usize) -> i32 {
    match mil {
        1 => 63,
        2 => 62,
        _ => 34 - mil as i32,
    }
}

/// Lower-band 6-bit code for quantiser interval `mil` (1..=30), positive error.
fn ilp(mil: usize) -> i32 {
    62 - mil as i32
}

/// Inverse quantiser outputs of the 4-bit (core) lower-band code, which drives the
/// predictor and scale factor in every mode.
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];

/// Inverse quantiser outputs of the 6-bit lower-band code (mode 1 reconstruction).
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];

/// Magnitude class of the 4-bit lower-band code, for the scale factor update.
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
/// Lower-band log scale factor multipliers.
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];

/// Higher-band inverse quantiser outputs.
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
/// Magnitude class of the higher-band code.
const RH2: [usize; 4] = [2, 1, 2, 1];
/// Higher-band log scale factor multipliers.
const WH: [i32; 3] = [0, -214, 798];

/// Antilog table for the scale factor: 2^(i/32) scaled by 2048.
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];

/// Saturates to the 16-bit range, like the Recommendation's arithmetic.
fn sat16(x: i32) -> i32 {
    x.clamp(-32768, 32767)
}

/// The state of one sub-band's ADPCM: scale factor and pole-zero predictor.
#[derive(Debug, Clone)]
struct Band {
    /// Predicted signal (SL / SH).
    s: i32,
    /// Pole part of the prediction.
    sp: i32,
    /// Zero part of the prediction.
    sz: i32,
    /// Reconstructed signal r(n), r(n-1), r(n-2).
    r: [i32; 3],
    /// Pole predictor coefficients a1, a2 (index 0 unused).
    a: [i32; 3],
    /// Zero predictor coefficients b1..b6 (index 0 unused).
    b: [i32; 7],
    /// Quantised difference d(n)..d(n-6).
    d: [i32; 7],
    /// Partially reconstructed signal p(n), p(n-1), p(n-2).
    p: [i32; 3],
    /// Log scale factor (NBL / NBH).
    nb: i32,
    /// Scale factor (DETL / DETH).
    det: i32,
}

impl Band {
    fn new(det: i32) -> Self {
        Band {
            s: 0,
            sp: 0,
            sz: 0,
            r: [0; 3],
            a: [0; 3],
            b: [0; 7],
            d: [0; 7],
            p: [0; 3],
            nb: 0,
            det,
        }
    }

    /// LOGSCL and SCALEL/SCALEH: adapts the scale factor from the magnitude class.
    fn adapt_scale(&mut self, w: i32, nb_max: i32, shift_base: i32) {
        self.nb = ((self.nb * 127) >> 7) + w;
        self.nb = self.nb.clamp(0, nb_max);
        let frac = ((self.nb >> 6) & 31) as usize;
        let shift = shift_base - (self.nb >> 11);
        let wd = if shift < 0 {
            ILB[frac] << -shift
        } else {
            ILB[frac] >> shift
        };
        self.det = wd << 2;
    }

    /// Block 4: reconstruction, predictor adaptation and the next prediction, from
    /// the quantised difference `d`.
    fn update(&mut self, d: i32) {
        // RECONS, PARREC.
        self.d[0] = d;
        self.r[0] = sat16(self.s + d);
        self.p[0] = sat16(self.sz + d);
        let neg = |x: i32| x < 0;

        // UPPOL2: second pole coefficient.
        let wd1 = sat16(self.a[1] << 2);
        let wd2 = if neg(self.p[0]) == neg(self.p[1]) {
            -wd1
        } else {
            wd1
        }
        .min(32767);
        let mut a2 = (wd2 >> 7)
            + if neg(self.p[0]) == neg(self.p[2]) {
                128
            } else {
                -128
            };
        a2 += (self.a[2] * 32512) >> 15;
        let a2 = a2.clamp(-12288, 12288);

        // UPPOL1: first pole coefficient, limited by the new a2.
        let step = if neg(self.p[0]) == neg(self.p[1]) {
            192
        } else {
            -192
        };
        let a1 = sat16(step + ((self.a[1] * 32640) >> 15));
        let limit = sat16(15360 - a2);
        let a1 = a1.clamp(-limit, limit);

        // UPZERO: zero coefficients, leaking, nudged by sign agreement.
        let gain = if d == 0 { 0 } else { 128 };
        let mut b = [0i32; 7];
        for ((bn, &bo), &di) in b.iter_mut().zip(&self.b).zip(&self.d).skip(1) {
            let wd = if neg(di) == neg(d) { gain } else { -gain };
            *bn = sat16(wd + ((bo * 32640) >> 15));
        }

        // DELAYA.
        for i in (1..7).rev() {
            self.d[i] = self.d[i - 1];
        }
        self.b = b;
        for i in (1..3).rev() {
            self.r[i] = self.r[i - 1];
            self.p[i] = self.p[i - 1];
        }
        self.a = [0, a1, a2];

        // FILTEP: pole prediction.
        let wd1 = (self.a[1] * sat16(self.r[1] + self.r[1])) >> 15;
        let wd2 = (self.a[2] * sat16(self.r[2] + self.r[2])) >> 15;
        self.sp = sat16(wd1 + wd2);

        // FILTEZ: zero prediction.
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * sat16(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = sat16(sz);

        // PREDIC.
        self.s = sat16(self.sp + self.sz);
    }
}

/// The initial scale factors of the lower and higher band.
const DET_LOW_INIT: i32 = 32;
const DET_HIGH_INIT: i32 = 8;
/// Upper limits of the log scale factors.
const NBL_MAX: i32 = 18432;
const NBH_MAX: i32 = 22528;

/// A G.722 encoder (64 kbit/s): 16 kHz 16-bit samples in, one byte per two samples
/// out.
#[derive(Debug, Clone)]
pub struct G722Encoder {
    low: Band,
    high: Band,
    /// Input history for the transmit QMF, newest last.
    x: [i32; 24],
    /// A sample waiting for its pair (odd-length input).
    odd: Option<i16>,
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Encoder {
    /// A new encoder in the Recommendation's reset state.
    pub fn new() -> Self {
        G722Encoder {
            low: Band::new(DET_LOW_INIT),
            high: Band::new(DET_HIGH_INIT),
            x: [0; 24],
            odd: None,
        }
    }

    /// Back to the reset state.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Encodes `pcm` (16 kHz), appending one byte per two samples to `out`. An odd
    /// trailing sample is kept for the next call.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        out.reserve(pcm.len() / 2 + 1);
        let mut samples = pcm.iter().copied();
        if let Some(first) = self.odd.take() {
            match samples.next() {
                Some(second) => out.push(self.encode_pair(first, second)),
                None => {
                    self.odd = Some(first);
                    return;
                }
            }
        }
        loop {
            match (samples.next(), samples.next()) {
                (Some(a), Some(b)) => out.push(self.encode_pair(a, b)),
                (Some(a), None) => {
                    self.odd = Some(a);
                    break;
                }
                _ => break,
            }
        }
    }

    /// Encodes two consecutive samples into one code byte.
    pub fn encode_pair(&mut self, first: i16, second: i16) -> u8 {
        // Transmit QMF.
        self.x.copy_within(2.., 0);
        self.x[22] = i32::from(first);
        self.x[23] = i32::from(second);
        // Even taps on the newest sample and every other one before it; odd taps on
        // the others.
        let mut even = 0i32;
        let mut odd = 0i32;
        for i in 0..12 {
            even += self.x[23 - 2 * i] * QMF[i];
            odd += self.x[22 - 2 * i] * QMF[11 - i];
        }
        let xlow = (even + odd) >> 14;
        let xhigh = (even - odd) >> 14;

        // Lower band: SUBTRA, QUANTL.
        let el = sat16(xlow - self.low.s);
        let wd = if el >= 0 { el } else { -(el + 1) };
        let mut mil = 30;
        for (i, &q) in Q6.iter().enumerate().skip(1) {
            if wd < (q * self.low.det) >> 12 {
                mil = i;
                break;
            }
        }
        let ilow = if el < 0 { iln(mil) } else { ilp(mil) };
        // INVQAL with the 4-bit core code, LOGSCL, SCALEL, then block 4.
        let ril = (ilow >> 2) as usize;
        let dlow = (self.low.det * QM4[ril]) >> 15;
        self.low.adapt_scale(WL[RL42[ril]], NBL_MAX, 8);
        self.low.update(dlow);

        // Higher band: SUBTRA, QUANTH.
        let eh = sat16(xhigh - self.high.s);
        let wd = if eh >= 0 { eh } else { -(eh + 1) };
        let big = wd >= (564 * self.high.det) >> 12;
        let ihigh: usize = match (eh < 0, big) {
            (true, false) => 1,
            (true, true) => 0,
            (false, false) => 3,
            (false, true) => 2,
        };
        // INVQAH, LOGSCH, SCALEH, block 4.
        let dhigh = (self.high.det * QM2[ihigh]) >> 15;
        self.high.adapt_scale(WH[RH2[ihigh]], NBH_MAX, 10);
        self.high.update(dhigh);

        ((ihigh as u8) << 6) | (ilow as u8)
    }
}

/// A G.722 decoder (64 kbit/s): one byte in, two 16 kHz 16-bit samples out.
#[derive(Debug, Clone)]
pub struct G722Decoder {
    low: Band,
    high: Band,
    /// Receive QMF history (sums and differences of the bands), newest last.
    x: [i32; 24],
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    /// A new decoder in the Recommendation's reset state.
    pub fn new() -> Self {
        G722Decoder {
            low: Band::new(DET_LOW_INIT),
            high: Band::new(DET_HIGH_INIT),
            x: [0; 24],
        }
    }

    /// Back to the reset state.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Decodes `data`, appending two samples per byte to `out`. Every byte is a
    /// valid code, so this cannot fail.
    pub fn decode(&mut self, data: &[u8], out: &mut Vec<i16>) {
        out.reserve(data.len() * 2);
        for &code in data {
            let [a, b] = self.decode_byte(code);
            out.push(a);
            out.push(b);
        }
    }

    /// Decodes one code byte into two samples.
    pub fn decode_byte(&mut self, code: u8) -> [i16; 2] {
        let ilow = usize::from(code & 0x3F);
        let ihigh = usize::from(code >> 6);

        // Lower band: INVQBL (6-bit reconstruction), RECONS, LIMIT.
        let dl6 = (self.low.det * QM6[ilow]) >> 15;
        let rlow = (self.low.s + dl6).clamp(-16384, 16383);
        // The predictor follows the 4-bit core code, as in the encoder.
        let ril = ilow >> 2;
        let dlow = (self.low.det * QM4[ril]) >> 15;
        self.low.adapt_scale(WL[RL42[ril]], NBL_MAX, 8);
        self.low.update(dlow);

        // Higher band: INVQAH, RECONS, LIMIT.
        let dhigh = (self.high.det * QM2[ihigh]) >> 15;
        let rhigh = (dhigh + self.high.s).clamp(-16384, 16383);
        self.high.adapt_scale(WH[RH2[ihigh]], NBH_MAX, 10);
        self.high.update(dhigh);

        // Receive QMF.
        self.x.copy_within(2.., 0);
        self.x[22] = rlow + rhigh;
        self.x[23] = rlow - rhigh;
        let mut first = 0i32;
        let mut second = 0i32;
        for i in 0..12 {
            first += self.x[23 - 2 * i] * QMF[i];
            second += self.x[22 - 2 * i] * QMF[11 - i];
        }
        [
            (first >> 11).clamp(-32768, 32767) as i16,
            (second >> 11).clamp(-32768, 32767) as i16,
        ]
    }
}
