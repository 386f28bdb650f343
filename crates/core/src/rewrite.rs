//! Sequence number and timestamp rewriting for one outgoing stream.
//!
//! A subscriber sees one continuous RTP stream even when its source changes
//! (a publisher leaves and another starts, or a simulcast stream switch):
//! sequence numbers continue without a gap and timestamps advance by the
//! wall-clock time between the last packet of the old source and the first
//! of the new one. Packets a layer selector drops are reported with
//! [`Rewriter::drop_packet`] so they leave no gap either.

use std::collections::VecDeque;
use std::time::Instant;

/// How many disjoint runs of dropped sequence numbers a mapping remembers.
/// When more are needed the oldest run is forgotten, and packets older than
/// its end are refused (their output number is no longer known).
pub const DROP_RUNS: usize = 64;

/// Maps a source's (extended) sequence numbers and timestamps onto one
/// continuous output stream.
///
/// Within a source, output = `first_out + (seq - first_in) - dropped(seq)`
/// where `dropped(seq)` counts the dropped packets below `seq`. A drop is
/// counted only when no later packet has been forwarded yet (otherwise
/// output numbers already sent would move): a packet dropped after later
/// ones went out leaves a hole, like a lost packet. A packet never seen keeps
/// its number, so a late (reordered) one lands in it.
#[derive(Debug)]
pub struct Rewriter {
    clock_rate: u32,
    last: Option<LastOut>,
    mapping: Option<Mapping>,
    drops: Drops,
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
    /// The highest source sequence number forwarded.
    highest_in: u64,
}

/// Dropped source sequence numbers of the current mapping, as sorted,
/// disjoint, non-adjacent half-open runs `[start, end)`.
#[derive(Debug, Default)]
struct Drops {
    runs: VecDeque<(u64, u64)>,
    /// All drops counted, including forgotten runs.
    total: u64,
    /// Sequence numbers below this are refused (a run below was forgotten).
    floor: u64,
}

impl Drops {
    fn clear(&mut self) {
        self.runs.clear();
        self.total = 0;
        self.floor = 0;
    }

    fn contains(&self, seq: u64) -> bool {
        for &(start, end) in self.runs.iter().rev() {
            if end <= seq {
                return false;
            }
            if start <= seq {
                return true;
            }
        }
        false
    }

    /// Dropped sequence numbers below `seq` (for `seq >= floor`).
    fn below(&self, seq: u64) -> u64 {
        let mut above = 0;
        for &(start, end) in self.runs.iter().rev() {
            if end <= seq {
                break;
            }
            above += end - start.max(seq);
        }
        self.total - above
    }

    /// Adds `seq`; `false` if it was already there.
    fn insert(&mut self, seq: u64) -> bool {
        // Index of the first run starting above `seq`.
        let after = self
            .runs
            .iter()
            .rposition(|&(start, _)| start <= seq)
            .map_or(0, |i| i + 1);
        let prev = after.checked_sub(1).and_then(|i| self.runs.get(i).copied());
        let next = self.runs.get(after).copied();
        match (prev, next) {
            (Some((_, end)), _) if seq < end => return false,
            (Some((start, end)), Some((next_start, next_end)))
                if end == seq && seq + 1 == next_start =>
            {
                // Joins two runs.
                if let Some(r) = self.runs.get_mut(after - 1) {
                    *r = (start, next_end);
                }
                self.runs.remove(after);
            }
            (Some((start, end)), _) if end == seq => {
                if let Some(r) = self.runs.get_mut(after - 1) {
                    *r = (start, seq + 1);
                }
            }
            (_, Some((next_start, next_end))) if seq + 1 == next_start => {
                if let Some(r) = self.runs.get_mut(after) {
                    *r = (seq, next_end);
                }
            }
            _ => {
                self.runs.insert(after, (seq, seq + 1));
                if self.runs.len() > DROP_RUNS {
                    if let Some((_, end)) = self.runs.pop_front() {
                        self.floor = self.floor.max(end);
                    }
                }
            }
        }
        self.total += 1;
        true
    }
}

impl Rewriter {
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            last: None,
            mapping: None,
            drops: Drops::default(),
        }
    }

    /// The next packet starts a new source; packets of the old one are dropped.
    pub fn switch_source(&mut self) {
        self.mapping = None;
        self.drops.clear();
    }

    /// Whether a mapping for the current source exists (a packet went out).
    pub fn is_mapped(&self) -> bool {
        self.mapping.is_some()
    }

    /// A packet of the current source (extended sequence number `seq`) is not
    /// forwarded: later packets move down so the output shows no gap. Returns
    /// whether the drop was counted; it is ignored (and `false`) before the
    /// first forwarded packet of the source, below it, when a later packet
    /// has been forwarded already (the output keeps a hole there), or when
    /// `seq` was reported before.
    ///
    /// Only sequence numbers of the source being forwarded may be reported:
    /// another stream's numbers would hide packets of this one.
    pub fn drop_packet(&mut self, seq: u64) -> bool {
        match self.mapping {
            Some(m) if seq > m.highest_in => self.drops.insert(seq),
            _ => false,
        }
    }

    /// Rewrites one packet. Returns `None` for a packet older than the first
    /// one forwarded from the current source (it belongs to a previous state
    /// of the output and would land on sequence numbers already used), one
    /// reported dropped, or one older than the drops remembered.
    pub fn rewrite(&mut self, seq: u64, ts: u32, arrival: Instant) -> Option<(u64, u32)> {
        let m = match self.mapping {
            Some(m) => m,
            None => {
                let m = self.start_mapping(seq, ts, arrival);
                self.drops.clear();
                self.mapping = Some(m);
                m
            }
        };
        if seq < m.first_in || seq < self.drops.floor || self.drops.contains(seq) {
            return None;
        }
        let out_seq = m.first_out + (seq - m.first_in) - self.drops.below(seq);
        let out_ts = ts.wrapping_add(m.ts_offset);
        if seq > m.highest_in {
            if let Some(m) = self.mapping.as_mut() {
                m.highest_in = seq;
            }
        }
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
                highest_in: seq,
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
                    highest_in: seq,
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

    /// Output sequence numbers of `seqs` (None when refused), all at `t0`.
    fn seqs(r: &mut Rewriter, seqs: &[u64], t0: Instant) -> Vec<Option<u64>> {
        seqs.iter()
            .map(|&s| r.rewrite(s, 0, t0).map(|(o, _)| o))
            .collect()
    }

    #[test]
    fn drops_leave_no_gap() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        // Drops before any mapping mean nothing.
        assert!(!r.drop_packet(99));
        assert_eq!(r.rewrite(100, 0, t0), Some((1, 0)));
        assert!(r.drop_packet(101));
        assert!(r.drop_packet(102));
        assert_eq!(seqs(&mut r, &[103, 104], t0), vec![Some(2), Some(3)]);
        // Reported twice, or below the first forwarded packet: ignored.
        assert!(r.drop_packet(105));
        assert!(!r.drop_packet(105));
        assert!(!r.drop_packet(50));
        assert_eq!(seqs(&mut r, &[106], t0), vec![Some(4)]);
        // A dropped packet that shows up again (duplicate) is not forwarded.
        assert_eq!(seqs(&mut r, &[105, 101], t0), vec![None, None]);
        // A forwarded packet reported as dropped afterwards changes nothing.
        assert!(!r.drop_packet(106));
        assert!(!r.drop_packet(103));
        assert_eq!(seqs(&mut r, &[107], t0), vec![Some(5)]);
    }

    #[test]
    fn drops_with_reordering() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        assert_eq!(r.rewrite(10, 0, t0), Some((1, 0)));
        // 11 not seen yet; 12 dropped; 13 forwarded keeps a slot for 11.
        assert!(r.drop_packet(12));
        assert_eq!(seqs(&mut r, &[13], t0), vec![Some(3)]);
        // 11 arrives late and is forwarded: its slot.
        assert_eq!(seqs(&mut r, &[11], t0), vec![Some(2)]);
        // Drops reported out of order, ahead of what was forwarded.
        assert!(r.drop_packet(16));
        assert!(r.drop_packet(15));
        assert!(r.drop_packet(14));
        assert_eq!(seqs(&mut r, &[17], t0), vec![Some(4)]);
        // 18 is reported dropped after 19 went out: numbers already sent
        // cannot move, so it leaves a hole (5), like a lost packet.
        assert_eq!(seqs(&mut r, &[19], t0), vec![Some(6)]);
        assert!(!r.drop_packet(18));
        assert_eq!(seqs(&mut r, &[20], t0), vec![Some(7)]);
        // Late forwarded packet below dropped runs: counts only drops below it.
        assert!(r.drop_packet(22));
        assert!(r.drop_packet(23));
        assert_eq!(seqs(&mut r, &[24], t0), vec![Some(9)]);
        assert_eq!(seqs(&mut r, &[21], t0), vec![Some(8)]);
        // Joined runs: 26 and 28 dropped, then 27 joins them.
        assert!(r.drop_packet(26));
        assert!(r.drop_packet(28));
        assert!(r.drop_packet(27));
        assert_eq!(seqs(&mut r, &[29, 25], t0), vec![Some(11), Some(10)]);
        assert_eq!(r.drops.runs.iter().filter(|(s, _)| *s >= 26).count(), 1);
    }

    #[test]
    fn drops_around_a_source_switch() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        assert_eq!(r.rewrite(500, 1000, t0), Some((1, 1000)));
        // The last packets of the old source are dropped.
        assert!(r.drop_packet(501));
        assert!(r.drop_packet(502));
        r.switch_source();
        // Drops before the new source's first forwarded packet are ignored.
        assert!(!r.drop_packet(40));
        assert_eq!(r.rewrite(41, 0, t0).map(|o| o.0), Some(2));
        assert!(r.drop_packet(42));
        assert_eq!(seqs(&mut r, &[43], t0), vec![Some(3)]);
        // Old drops do not apply to the new mapping: 501 and 502 are in
        // another numbering, not dropped here.
        r.switch_source();
        assert_eq!(
            seqs(&mut r, &[500, 501, 502], t0),
            vec![Some(4), Some(5), Some(6)]
        );
    }

    #[test]
    fn drops_across_sequence_wrap() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        // A first source that leaves the output at 65533.
        assert_eq!(r.rewrite(7, 0, t0), Some((1, 0)));
        assert_eq!(r.rewrite(7 + 65_532, 0, t0), Some((65_533, 0)));
        r.switch_source();
        // A source whose extended numbers cross the 16-bit wrap (0x2fffd..).
        let base = 3 * 65_536 - 3;
        assert_eq!(r.rewrite(base, 0, t0).map(|o| o.0), Some(65_534));
        assert!(r.drop_packet(base + 1)); // wire 0xfffe
        assert!(r.drop_packet(base + 2)); // wire 0xffff
        let out = seqs(&mut r, &[base + 3, base + 5, base + 4], t0);
        assert_eq!(out, vec![Some(65_535), Some(65_537), Some(65_536)]);
        assert!(r.drop_packet(base + 6));
        assert_eq!(seqs(&mut r, &[base + 7], t0), vec![Some(65_538)]);
        // On the wire the output goes fffe, ffff, 0000, 0001, 0002 with no gap.
        let wire: Vec<u16> = [65_534u64, 65_535, 65_536, 65_537, 65_538]
            .iter()
            .map(|&s| s as u16)
            .collect();
        assert_eq!(wire, vec![0xfffe, 0xffff, 0, 1, 2]);
    }

    #[test]
    fn drop_memory_is_bounded() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        assert_eq!(r.rewrite(0, 0, t0), Some((1, 0)));
        // Every other packet dropped: one run per drop.
        let n = DROP_RUNS as u64 + 10;
        for i in 0..n {
            assert!(r.drop_packet(2 * i + 1));
            assert_eq!(r.rewrite(2 * i + 2, 0, t0).map(|o| o.0), Some(i + 2));
        }
        assert_eq!(r.drops.runs.len(), DROP_RUNS);
        // Packets older than the remembered runs are refused, newer ones map.
        assert_eq!(r.rewrite(4, 0, t0), None);
        let recent = 2 * (n - 1) + 2;
        assert_eq!(r.rewrite(recent, 0, t0).map(|o| o.0), Some(n + 1));
        assert_eq!(r.rewrite(recent + 1, 0, t0).map(|o| o.0), Some(n + 2));
    }
}
