//! Sequence number and timestamp rewriting for one outgoing stream.
//!
//! A subscriber sees one continuous RTP stream even when its source changes
//! (a publisher leaves and another starts, or later a simulcast layer
//! switch): sequence numbers continue without a gap and timestamps advance by
//! the wall-clock time between the last packet of the old source and the
//! first of the new one.

use std::time::Instant;

/// Maps a source's (extended) sequence numbers and timestamps onto one
/// continuous output stream.
#[derive(Debug)]
pub struct Rewriter {
    clock_rate: u32,
    last: Option<LastOut>,
    mapping: Option<Mapping>,
}

#[derive(Debug, Clone, Copy)]
struct LastOut {
    seq: u64,
    ts: u32,
    at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Mapping {
    first_in: u64,
    first_out: u64,
    ts_offset: u32,
}

impl Rewriter {
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            last: None,
            mapping: None,
        }
    }

    /// The next packet starts a new source; packets of the old one are dropped.
    pub fn switch_source(&mut self) {
        self.mapping = None;
    }

    /// Whether a mapping for the current source exists (a packet went out).
    pub fn is_mapped(&self) -> bool {
        self.mapping.is_some()
    }

    /// Rewrites one packet. Returns `None` for a packet older than the first
    /// one forwarded from the current source (it belongs to a previous state
    /// of the output and would land on sequence numbers already used).
    pub fn rewrite(&mut self, seq: u64, ts: u32, arrival: Instant) -> Option<(u64, u32)> {
        let m = match self.mapping {
            Some(m) => m,
            None => {
                let m = self.start_mapping(seq, ts, arrival);
                self.mapping = Some(m);
                m
            }
        };
        if seq < m.first_in {
            return None;
        }
        let out_seq = m.first_out + (seq - m.first_in);
        let out_ts = ts.wrapping_add(m.ts_offset);
        let newest = self.last.is_none_or(|l| out_seq > l.seq);
        if newest {
            self.last = Some(LastOut {
                seq: out_seq,
                ts: out_ts,
                at: arrival,
            });
        }
        Some((out_seq, out_ts))
    }

    fn start_mapping(&self, seq: u64, ts: u32, arrival: Instant) -> Mapping {
        match self.last {
            // First source ever: keep its numbering (offset 0 for timestamps),
            // starting sequence numbers at 1 so there is room below.
            None => Mapping {
                first_in: seq,
                first_out: 1,
                ts_offset: 0,
            },
            Some(last) => {
                let elapsed = arrival.saturating_duration_since(last.at);
                let ticks = (elapsed.as_secs_f64() * f64::from(self.clock_rate)) as u64;
                // Advance at least one tick so the new frame is a new frame.
                let ticks = ticks.clamp(1, u64::from(u32::MAX / 2)) as u32;
                let want = last.ts.wrapping_add(ticks);
                Mapping {
                    first_in: seq,
                    first_out: last.seq + 1,
                    ts_offset: want.wrapping_sub(ts),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keeps_gaps_and_order_within_a_source() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        assert_eq!(r.rewrite(1000, 5000, t0), Some((1, 5000)));
        assert_eq!(r.rewrite(1002, 5000, t0), Some((3, 5000)));
        // Reordered packet lands in its gap.
        assert_eq!(r.rewrite(1001, 5000, t0), Some((2, 5000)));
        // Older than the first forwarded packet: dropped.
        assert_eq!(r.rewrite(999, 4000, t0), None);
    }

    #[test]
    fn switch_continues_sequence_and_advances_time() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.rewrite(70_000, u32::MAX - 100, t0);
        r.rewrite(70_001, u32::MAX - 100, t0);
        r.switch_source();
        // New source with unrelated numbering, 100 ms later.
        let (seq, ts) = r.rewrite(5, 1234, t0 + Duration::from_millis(100)).unwrap();
        assert_eq!(seq, 3);
        assert_eq!(ts, (u32::MAX - 100).wrapping_add(9000));
        // Timestamps keep their relation within the new source, across u32 wrap.
        let (seq2, ts2) = r
            .rewrite(6, 1234 + 3000, t0 + Duration::from_millis(133))
            .unwrap();
        assert_eq!(seq2, 4);
        assert_eq!(ts2, ts.wrapping_add(3000));
        // A late packet of the old source is dropped.
        assert!(r.rewrite(4, 1, t0).is_none());
    }

    #[test]
    fn switch_with_no_elapsed_time_still_moves_forward() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(48_000);
        r.rewrite(10, 480, t0);
        r.switch_source();
        let (_, ts) = r.rewrite(10, 480, t0).unwrap();
        assert_eq!(ts, 481);
    }

    #[test]
    fn late_packet_does_not_move_last_backwards() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.rewrite(10, 1000, t0);
        r.rewrite(12, 4000, t0 + Duration::from_millis(66));
        r.rewrite(11, 2000, t0 + Duration::from_millis(70));
        r.switch_source();
        let (seq, ts) = r.rewrite(500, 0, t0 + Duration::from_millis(76)).unwrap();
        assert_eq!(seq, 4);
        assert_eq!(ts, 4000 + 900);
    }
}
