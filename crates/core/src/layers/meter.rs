//! Measures a source's bitrate per layer from the packets the server
//! receives (no reliance on the video-layers-allocation extension, which
//! Firefox and Safari do not send).

use std::time::{Duration, Instant};

use super::alloc::LayerRates;
use super::Layer;

/// How often the rates are recomputed.
pub const WINDOW: Duration = Duration::from_millis(500);
/// Most spatial and temporal layers tracked.
const MAX_LAYERS: usize = 4;

/// Which layers of a source are alive: seen in the last [`LAYER_TIMEOUT`].
/// A publisher may stop sending a layer (Chromium turns its top simulcast
/// stream off when its own uplink is short); a subscriber aiming at it would
/// freeze, so targets are clamped to what is alive.
#[derive(Debug, Clone, Default)]
pub struct LiveLayers {
    spatial: [Option<Instant>; MAX_LAYERS],
    temporal: [Option<Instant>; MAX_LAYERS],
}

/// How long a layer counts as alive after its last packet.
pub const LAYER_TIMEOUT: Duration = Duration::from_secs(1);

impl LiveLayers {
    pub fn on_packet(&mut self, layer: Layer, now: Instant) {
        let s = usize::from(layer.spatial).min(MAX_LAYERS - 1);
        let t = usize::from(layer.temporal).min(MAX_LAYERS - 1);
        self.spatial[s] = Some(now);
        self.temporal[t] = Some(now);
    }

    /// The highest live layer (0/0 when nothing is alive).
    pub fn highest(&self, now: Instant) -> Layer {
        let top = |v: &[Option<Instant>; MAX_LAYERS]| {
            v.iter()
                .rposition(|t| t.is_some_and(|t| now.saturating_duration_since(t) < LAYER_TIMEOUT))
                .unwrap_or(0) as u8
        };
        Layer::new(top(&self.spatial), top(&self.temporal))
    }

    /// `want` limited to the live layers.
    pub fn clamp(&self, want: Layer, now: Instant) -> Layer {
        want.capped(self.highest(now))
    }
}

/// How many recent windows a layer's rate is the median of.
const HISTORY: usize = 3;

/// Per-layer byte counters of one source.
///
/// A layer's rate is the median of its last [`HISTORY`] windows (the lower
/// one while it has two), smoothed against the previous value: a keyframe
/// fills one window several times over what the layer costs, and a rate
/// that jumped on it would move subscribers down a layer and back up again
/// (each move costs a keyframe). A layer seen in one window only is not
/// reported yet.
#[derive(Debug, Clone)]
pub struct LayerMeter {
    /// Spatial layers depend on the ones below (SVC) rather than being
    /// independent streams (simulcast).
    svc: bool,
    bytes: [[u64; MAX_LAYERS]; MAX_LAYERS],
    window_start: Option<Instant>,
    /// The raw rates of the last windows, newest last.
    history: std::collections::VecDeque<Vec<Vec<u64>>>,
    rates: LayerRates,
}

impl LayerMeter {
    pub fn new(svc: bool) -> Self {
        Self {
            svc,
            bytes: [[0; MAX_LAYERS]; MAX_LAYERS],
            window_start: None,
            history: std::collections::VecDeque::with_capacity(HISTORY),
            rates: LayerRates::default(),
        }
    }

    /// Counts one packet (payload plus RTP header bytes as sent). Returns
    /// true when a window closed and the rates changed.
    pub fn on_packet(&mut self, layer: Layer, bytes: usize, now: Instant) -> bool {
        let s = usize::from(layer.spatial).min(MAX_LAYERS - 1);
        let t = usize::from(layer.temporal).min(MAX_LAYERS - 1);
        // RTP (12) + UDP/IP (28) + SRTP tag (10) per packet on the wire.
        self.bytes[s][t] += bytes as u64 + 50;
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed < WINDOW {
            return false;
        }
        self.close_window(elapsed);
        self.window_start = Some(now);
        true
    }

    fn close_window(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(0.001);
        let bps = |b: u64| (b as f64 * 8.0 / secs) as u64;
        let spatial = (0..MAX_LAYERS)
            .rev()
            .find(|s| self.bytes[*s].iter().any(|b| *b > 0))
            .map_or(0, |s| s + 1);
        let mut rates = vec![Vec::new(); spatial];
        for (s, row) in rates.iter_mut().enumerate() {
            let temporal = (0..MAX_LAYERS)
                .rev()
                .find(|t| self.bytes[s][*t] > 0)
                .map_or(0, |t| t + 1);
            let mut sum = 0u64;
            for t in 0..temporal {
                sum += if self.svc {
                    (0..=s).map(|ss| self.bytes[ss][t]).sum::<u64>()
                } else {
                    self.bytes[s][t]
                };
                // A layer with no packets of its own in this window still
                // exists if a higher one does.
                row.push(bps(sum).max(1));
            }
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(rates.clone());
        // Median over the windows that saw the layer, then smoothed
        // against the previous value.
        let old = std::mem::take(&mut self.rates.rates);
        for (s, row) in rates.iter_mut().enumerate() {
            let mut kept = 0;
            for (t, cell) in row.iter_mut().enumerate() {
                let mut seen = [0u64; HISTORY];
                let mut n = 0;
                for w in &self.history {
                    if let Some(v) = w.get(s).and_then(|x| x.get(t)) {
                        seen[n] = *v;
                        n += 1;
                    }
                }
                if n < 2 {
                    break;
                }
                let seen = &mut seen[..n];
                seen.sort_unstable();
                let median = seen[(n - 1) / 2];
                *cell = match old.get(s).and_then(|x| x.get(t)) {
                    Some(prev) => (median + prev * 3) / 4,
                    None => median,
                };
                kept = t + 1;
            }
            row.truncate(kept);
        }
        while rates.last().is_some_and(Vec::is_empty) {
            rates.pop();
        }
        self.rates.rates = rates;
        self.bytes = [[0; MAX_LAYERS]; MAX_LAYERS];
    }

    /// Whether spatial layers build on each other (SVC).
    pub fn is_svc(&self) -> bool {
        self.svc
    }

    /// The latest rates.
    pub fn rates(&self) -> &LayerRates {
        &self.rates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_layers_clamp_targets_to_what_arrives() {
        let t0 = Instant::now();
        let mut l = LiveLayers::default();
        assert_eq!(l.highest(t0), Layer::new(0, 0));
        l.on_packet(Layer::new(2, 1), t0);
        l.on_packet(Layer::new(0, 2), t0 + Duration::from_millis(500));
        assert_eq!(
            l.clamp(Layer::new(9, 9), t0 + Duration::from_millis(900)),
            Layer::new(2, 2)
        );
        // Stream 2 silent for a second: the target falls back to stream 0.
        assert_eq!(
            l.clamp(Layer::new(9, 9), t0 + LAYER_TIMEOUT),
            Layer::new(0, 2)
        );
        assert_eq!(l.clamp(Layer::new(1, 0), t0), Layer::new(1, 0));
    }

    #[test]
    fn simulcast_rates_are_per_stream_and_cumulative_in_time() {
        let t0 = Instant::now();
        let mut m = LayerMeter::new(false);
        // 500 ms: stream 0 TL0 10 x 950 B, TL1 10 x 450 B; stream 1 TL0 10 x 1950 B.
        for i in 0..10u64 {
            let at = t0 + Duration::from_millis(i * 40);
            m.on_packet(Layer::new(0, 0), 950, at);
            m.on_packet(Layer::new(0, 1), 450, at);
            m.on_packet(Layer::new(1, 0), 1950, at);
        }
        assert!(m.rates().rates.is_empty());
        assert!(m.on_packet(Layer::new(0, 0), 0, t0 + WINDOW));
        // One window is not a measurement yet.
        assert!(m.rates().rates.is_empty());
        for i in 0..10u64 {
            let at = t0 + WINDOW + Duration::from_millis(i * 40);
            m.on_packet(Layer::new(0, 0), 950, at);
            m.on_packet(Layer::new(0, 1), 450, at);
            m.on_packet(Layer::new(1, 0), 1950, at);
        }
        assert!(m.on_packet(Layer::new(0, 0), 0, t0 + WINDOW * 2));
        // (10 * 1000 B + 50 B of the closing packet) * 8 / 0.5 s.
        assert_eq!(m.rates().rates[0], vec![160_800, 160_800 + 80_000]);
        assert_eq!(m.rates().rates[1], vec![320_000]);
    }

    #[test]
    fn a_keyframe_window_does_not_swing_the_rate() {
        let t0 = Instant::now();
        let mut m = LayerMeter::new(false);
        // 100 kbit/s steady (25 x 200 B + headers per 500 ms), one window
        // with a 30 kB keyframe in it, then steady again.
        let mut at = t0;
        let mut rates = Vec::new();
        for w in 0..8u32 {
            let start = t0 + WINDOW * w;
            for i in 0..25u32 {
                at = start + WINDOW * i / 25;
                let size = if w == 4 && i == 0 { 30_000 } else { 200 };
                if m.on_packet(Layer::new(0, 0), size, at) {
                    rates.push(m.rates().rate(Layer::new(0, 0)));
                }
            }
        }
        let _ = at;
        let steady = 25 * 250 * 8 * 2;
        for r in rates.iter().flatten() {
            assert!(r.abs_diff(steady) < steady / 5, "rates {rates:?}");
        }
        assert!(rates.iter().flatten().count() >= 5, "rates {rates:?}");
    }

    #[test]
    fn svc_layers_include_the_ones_below_and_rates_are_smoothed() {
        let t0 = Instant::now();
        let mut m = LayerMeter::new(true);
        // Each window: its packets, then the packet that closes it (50 B of headers on layer 0).
        let window = |m: &mut LayerMeter, w: u32, packets: &[(u8, usize)]| {
            let start = t0 + WINDOW * w;
            for (s, size) in packets {
                m.on_packet(Layer::new(*s, 0), *size, start + Duration::from_millis(1));
            }
            assert!(m.on_packet(Layer::new(0, 0), 0, start + WINDOW));
        };
        m.on_packet(Layer::new(0, 0), 0, t0);
        window(&mut m, 0, &[(0, 950), (1, 950)]);
        window(&mut m, 1, &[(0, 950), (1, 950)]);
        let s0 = m.rates().rates[0][0];
        // Spatial layer 1 costs its own packets plus layer 0's.
        assert_eq!(m.rates().rates[1][0], s0 + 16_000);
        // Two nearly empty windows: the median falls, and the rate by a
        // quarter of the difference.
        window(&mut m, 2, &[]);
        window(&mut m, 3, &[]);
        assert_eq!(m.rates().rates.len(), 1);
        assert_eq!(m.rates().rates[0][0], (800 + s0 * 3) / 4);
    }
}
