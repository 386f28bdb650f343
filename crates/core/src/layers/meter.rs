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

/// Per-layer byte counters of one source.
#[derive(Debug, Clone)]
pub struct LayerMeter {
    /// Spatial layers depend on the ones below (SVC) rather than being
    /// independent streams (simulcast).
    svc: bool,
    bytes: [[u64; MAX_LAYERS]; MAX_LAYERS],
    window_start: Option<Instant>,
    rates: LayerRates,
}

impl LayerMeter {
    pub fn new(svc: bool) -> Self {
        Self {
            svc,
            bytes: [[0; MAX_LAYERS]; MAX_LAYERS],
            window_start: None,
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
        // Smooth against the previous window so a keyframe does not swing
        // the allocation.
        let old = std::mem::take(&mut self.rates.rates);
        for (s, row) in rates.iter_mut().enumerate() {
            for (t, r) in row.iter_mut().enumerate() {
                if let Some(prev) = old.get(s).and_then(|x| x.get(t)) {
                    *r = (*r + prev * 3) / 4;
                }
            }
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
        // (10 * 1000 B + 50 B of the closing packet) * 8 / 0.5 s.
        assert_eq!(m.rates().rates[0], vec![160_800, 160_800 + 80_000]);
        assert_eq!(m.rates().rates[1], vec![320_000]);
    }

    #[test]
    fn svc_layers_include_the_ones_below_and_rates_are_smoothed() {
        let t0 = Instant::now();
        let mut m = LayerMeter::new(true);
        m.on_packet(Layer::new(0, 0), 950, t0);
        m.on_packet(Layer::new(1, 0), 950, t0);
        m.on_packet(Layer::new(0, 0), 0, t0 + WINDOW);
        let s0 = m.rates().rates[0][0];
        assert_eq!(m.rates().rates[1][0], s0 + 16_000);
        // A nearly empty next window pulls the rate down by a quarter of the difference.
        m.on_packet(Layer::new(0, 0), 0, t0 + WINDOW * 2);
        assert_eq!(m.rates().rates.len(), 1);
        assert_eq!(m.rates().rates[0][0], (800 + s0 * 3) / 4);
    }
}
