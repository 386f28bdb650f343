//! A jitter buffer for one incoming RTP audio stream (sequence numbers, timestamps,
//! SSRC and interarrival jitter as in RFC 3550), made to feed a decoder at a fixed
//! cadence.
//!
//! Packets go in with their arrival time ([`JitterBuffer::push`]); frames come out,
//! one per packet interval (20 ms unless the stream shows otherwise), when the caller
//! polls with the current time ([`JitterBuffer::poll`]): the packet due, or
//! [`Frame::Lost`] when it is missing, for the decoder to conceal. Nothing sleeps:
//! time is always passed in.
//!
//! # Timing model
//!
//! For each packet the *transit* is its arrival time minus its RTP timestamp (both in
//! microseconds, relative to the first packet). Over the last 250 packets (5 s) the
//! smallest transit is the *base* (the fastest the network delivered) and the 99th
//! percentile minus the base is the jitter spread. The percentile is taken over the
//! packets that head a burst (that arrive at least a quarter frame after the one
//! before), so a stall whose packets then arrive all at once counts once, not once
//! per packet: two stalls in 5 s leave the target alone, a third raises it. The
//! *target delay* is the spread plus half a frame, within
//! [`JitterConfig::min_delay`] and [`JitterConfig::max_delay`]. The frame with timestamp `ts` is played when
//! `now - ts - base` reaches the target; a packet is on time if its transit is within
//! the target (minus half a frame) of the base.
//!
//! While playing, each frame's actual delay is compared with the target: more than
//! one and a half frames over (a burst after a gap, the network getting faster, the
//! target shrinking) and frames are dropped until the delay is back within half a
//! frame; more than half a frame under (the target growing after late packets) and a
//! concealment frame is inserted without advancing. Packets older than the next frame
//! are late and dropped; a second copy of a buffered or just-played packet is a
//! duplicate.
//!
//! After five missing frames in a row with nothing buffered (the phone stopped
//! sending: silence suppression, hold, a long outage) the buffer goes idle and
//! `poll` returns `None` until packets arrive again; it then starts over at the
//! target delay.
//!
//! # Discontinuities
//!
//! Sequence numbers (16 bits) and timestamps (32 bits) are extended across their
//! wraparound. A new SSRC (a re-INVITE, a forwarded call) starts a new timeline, and
//! so does a packet whose transit is more than a second away from the base (a
//! timestamp jump) if it has the marker bit (a new talkspurt), arrives while the
//! buffer is idle, or is confirmed by the next packet in sequence; a lone wild
//! packet is dropped. A new timeline is mapped onto the old one: its first packet
//! is placed where its arrival puts it (as if it had come over the fastest path),
//! and never before what is already buffered, which still plays out. The network
//! statistics carry over. Packets of the previous SSRC arriving within a second of
//! the change are dropped as late.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Transit samples kept for the base and the jitter spread (5 s of 20 ms packets).
const WINDOW: usize = 250;
/// A transit this far from the base is a timestamp jump, not network delay.
const JUMP_US: i64 = 1_000_000;
/// Missing frames in a row, with nothing buffered, after which the buffer idles.
const IDLE_FRAMES: u32 = 5;
/// Packets kept at most (older ones are dropped first).
const MAX_PACKETS: usize = 100;
/// A caller this late (in frames) is not caught up frame by frame: the cadence
/// restarts from now.
const RESYNC_FRAMES: u32 = 10;
/// Recently played sequence numbers remembered to tell duplicates from late packets.
const PLAYED_MEMORY: usize = 64;

/// Settings of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// The RTP clock rate of the stream (8000 for G.711 and G.722, 48000 for Opus).
    pub clock_rate: u32,
    /// Packet interval (ptime) in ms to start with; the buffer follows the interval
    /// the stream actually uses (5 to 120 ms) once three packets in a row show it.
    pub frame_ms: u32,
    /// The least target delay.
    pub min_delay: Duration,
    /// The largest target delay.
    pub max_delay: Duration,
}

impl JitterConfig {
    /// 20 ms frames, delay between 20 and 200 ms.
    pub fn new(clock_rate: u32) -> Self {
        JitterConfig {
            clock_rate,
            frame_ms: 20,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        }
    }
}

/// An RTP packet of the audio stream (header fields the buffer needs, and payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpAudioPacket {
    /// Synchronisation source.
    pub ssrc: u32,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Marker bit (the first packet of a talkspurt).
    pub marker: bool,
    /// The codec payload.
    pub payload: Vec<u8>,
}

/// One frame interval of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The packet for this interval.
    Packet {
        /// Its RTP timestamp.
        timestamp: u32,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// Nothing to play: conceal one frame. `timestamp` is the one the missing packet
    /// would have had (for a frame inserted to grow the delay, the timestamp of the
    /// frame that follows it).
    Lost {
        /// RTP timestamp of the interval.
        timestamp: u32,
    },
}

impl Frame {
    /// The RTP timestamp of the interval.
    pub fn timestamp(&self) -> u32 {
        match self {
            Frame::Packet { timestamp, .. } | Frame::Lost { timestamp } => *timestamp,
        }
    }

    /// Whether this is a [`Frame::Lost`].
    pub fn is_lost(&self) -> bool {
        matches!(self, Frame::Lost { .. })
    }
}

/// What became of a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Buffered for playout.
    Buffered,
    /// Buffered as the first packet of a new timeline (new SSRC or timestamp jump),
    /// to play after what is already buffered.
    Reset,
    /// A copy of a packet already buffered or played; dropped.
    Duplicate,
    /// Too late for its frame; dropped.
    Late,
    /// Its timestamp is far off the stream's timeline: held as the candidate start
    /// of a new timeline, buffered if the next packet in sequence confirms it,
    /// dropped otherwise.
    OffTimeline,
}

/// Counters of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets pushed.
    pub received: u64,
    /// Frames played from packets.
    pub played: u64,
    /// Frames concealed because their packet was missing.
    pub lost: u64,
    /// Frames concealed to grow the delay.
    pub stretched: u64,
    /// Packets dropped as late.
    pub late: u64,
    /// Packets dropped as duplicates.
    pub duplicates: u64,
    /// Packets dropped to shrink the delay or bound the buffer.
    pub dropped: u64,
    /// Packets dropped as off the timeline.
    pub off_timeline: u64,
    /// Stream restarts (new SSRC, timestamp jumps).
    pub resets: u64,
}

#[derive(Debug, Clone)]
struct Candidate {
    packet: RtpAudioPacket,
    arrival_us: i64,
}

/// A buffered packet.
#[derive(Debug)]
struct Entry {
    /// Extended (mapped) sequence number.
    seq: i64,
    /// The RTP timestamp as received.
    rtp_ts: u32,
    payload: Vec<u8>,
}

/// The jitter buffer. See the module documentation.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    /// Frame length in RTP timestamp units.
    frame_ts: i64,
    epoch: Option<Instant>,
    ssrc: Option<u32>,
    /// The SSRC before the last change, and when it changed (µs).
    old_ssrc: Option<(u32, i64)>,
    /// Extended sequence number and timestamp of the newest packet (by sequence), in
    /// the mapped space every timeline is placed in.
    seq_ref: i64,
    ts_ref: i64,
    /// Mapped minus received values for the current timeline.
    seq_shift: i64,
    ts_shift: i64,
    /// Interval seen between consecutive packets, and how often in a row.
    step_run: (i64, u32),
    /// Transits of all recent packets, and of those heading a burst.
    transits: VecDeque<i64>,
    heads: VecDeque<i64>,
    last_arrival: Option<i64>,
    scratch: Vec<i64>,
    base_us: i64,
    target_us: i64,
    /// RFC 3550 interarrival jitter in microseconds, and the previous transit.
    jitter_us: f64,
    last_transit: Option<i64>,
    /// Buffered packets by extended (mapped) timestamp.
    buffer: BTreeMap<i64, Entry>,
    /// Extended timestamp of the next frame to play; `None` before the start or when
    /// idle.
    play_ts: Option<i64>,
    next_due: Option<Instant>,
    frame_time: Option<Instant>,
    empty_run: u32,
    played: VecDeque<i64>,
    candidate: Option<Candidate>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A jitter buffer with `config` (a zero clock rate or frame length is taken as
    /// 8000 Hz and 20 ms; a maximum delay below the minimum as the minimum).
    pub fn new(config: JitterConfig) -> Self {
        let mut config = config;
        if config.clock_rate == 0 {
            config.clock_rate = 8000;
        }
        if config.frame_ms == 0 {
            config.frame_ms = 20;
        }
        config.max_delay = config.max_delay.max(config.min_delay);
        let frame_ts = (i64::from(config.clock_rate) * i64::from(config.frame_ms) / 1000).max(1);
        let target_us = config.min_delay.as_micros() as i64;
        JitterBuffer {
            config,
            frame_ts,
            epoch: None,
            ssrc: None,
            old_ssrc: None,
            seq_ref: 0,
            ts_ref: 0,
            seq_shift: 0,
            ts_shift: 0,
            step_run: (0, 0),
            transits: VecDeque::with_capacity(WINDOW + 1),
            heads: VecDeque::with_capacity(WINDOW + 1),
            last_arrival: None,
            scratch: Vec::with_capacity(WINDOW + 1),
            base_us: 0,
            target_us,
            jitter_us: 0.0,
            last_transit: None,
            buffer: BTreeMap::new(),
            play_ts: None,
            next_due: None,
            frame_time: None,
            empty_run: 0,
            played: VecDeque::with_capacity(PLAYED_MEMORY + 1),
            candidate: None,
            stats: JitterStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> JitterConfig {
        self.config
    }

    /// Counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The current target delay.
    pub fn target_delay(&self) -> Duration {
        Duration::from_micros(self.target_us.max(0) as u64)
    }

    /// The RFC 3550 interarrival jitter estimate.
    pub fn jitter(&self) -> Duration {
        Duration::from_micros(self.jitter_us.max(0.0) as u64)
    }

    /// The interarrival jitter in RTP timestamp units (for RTCP receiver reports).
    pub fn jitter_rtp(&self) -> u32 {
        (self.jitter_us * f64::from(self.config.clock_rate) / 1e6) as u32
    }

    /// The frame interval in RTP timestamp units (the packet interval in use).
    pub fn frame_samples(&self) -> u32 {
        self.frame_ts as u32
    }

    /// The frame interval.
    pub fn frame_duration(&self) -> Duration {
        Duration::from_micros(self.ts_to_us(self.frame_ts) as u64)
    }

    /// Packets buffered.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Whether nothing is playing (before the first frame, or after the stream went
    /// quiet).
    pub fn is_idle(&self) -> bool {
        self.play_ts.is_none()
    }

    /// The playout time of the last frame `poll` returned (frames are 20 ms apart on
    /// this clock while playing; a gap shows an idle period).
    pub fn frame_time(&self) -> Option<Instant> {
        self.frame_time
    }

    /// The payload of the next frame to play, if it is buffered (for decoders that
    /// recover a lost frame from the next packet, like Opus in-band FEC).
    pub fn peek_next(&self) -> Option<&[u8]> {
        let play = self.play_ts?;
        let (lo, hi) = self.window(play);
        self.buffer
            .range(lo..hi)
            .next()
            .map(|(_, e)| e.payload.as_slice())
    }

    /// Adds a packet that arrived at `arrival`.
    pub fn push(&mut self, packet: RtpAudioPacket, arrival: Instant) -> Pushed {
        self.stats.received += 1;
        let epoch = *self.epoch.get_or_insert(arrival);
        let arrival_us = arrival.saturating_duration_since(epoch).as_micros() as i64;

        match self.ssrc {
            None => {
                self.ssrc = Some(packet.ssrc);
                self.seq_ref = i64::from(packet.seq);
                self.ts_ref = i64::from(packet.timestamp);
                self.seq_shift = 0;
                self.ts_shift = 0;
                return self.accept(packet, arrival_us, Pushed::Buffered);
            }
            Some(ssrc) if ssrc != packet.ssrc => {
                if self
                    .old_ssrc
                    .is_some_and(|(old, at)| old == packet.ssrc && arrival_us - at < JUMP_US)
                {
                    // A straggler of the stream we just left.
                    self.stats.late += 1;
                    return Pushed::Late;
                }
                self.old_ssrc = Some((ssrc, arrival_us));
                self.ssrc = Some(packet.ssrc);
                self.remap(&packet, arrival_us);
                self.stats.resets += 1;
                return self.accept(packet, arrival_us, Pushed::Reset);
            }
            Some(_) => {}
        }

        let ext_ts = self.map_ts(packet.timestamp);
        let transit = arrival_us - self.ts_to_us(ext_ts);
        if !self.transits.is_empty() && (transit - self.base_us).abs() > JUMP_US {
            let idle = self.play_ts.is_none() && self.buffer.is_empty();
            let confirmed = self.candidate.as_ref().is_some_and(|c| {
                let dt = packet.timestamp.wrapping_sub(c.packet.timestamp) as i32;
                c.packet.seq.wrapping_add(1) == packet.seq
                    && (arrival_us - c.arrival_us - self.ts_to_us(i64::from(dt))).abs() < 200_000
            });
            if packet.marker || idle || confirmed {
                self.stats.resets += 1;
                match self.candidate.take().filter(|_| confirmed) {
                    Some(c) => {
                        // The candidate starts the new timeline.
                        self.remap(&c.packet, c.arrival_us);
                        self.accept(c.packet, c.arrival_us, Pushed::Buffered);
                    }
                    None => self.remap(&packet, arrival_us),
                }
                return self.accept(packet, arrival_us, Pushed::Reset);
            }
            self.candidate = Some(Candidate { packet, arrival_us });
            self.stats.off_timeline += 1;
            return Pushed::OffTimeline;
        }
        self.candidate = None;
        self.accept(packet, arrival_us, Pushed::Buffered)
    }

    /// Returns the frame due at `now`, if one is: call at least every frame interval
    /// (more often is fine), and again while it returns `Some` if calls were missed.
    pub fn poll(&mut self, now: Instant) -> Option<Frame> {
        let epoch = self.epoch?;
        let frame_dur = self.frame_duration();
        let t = match self.next_due {
            Some(due) if now < due => return None,
            Some(due) if now.saturating_duration_since(due) > frame_dur * RESYNC_FRAMES => now,
            Some(due) => due,
            None => now,
        };
        let t_us = t.saturating_duration_since(epoch).as_micros() as i64;
        let frame_us = self.ts_to_us(self.frame_ts);
        let target = self.target_us;

        let mut play = match self.play_ts {
            Some(p) => p,
            None => {
                let (&first, _) = self.buffer.first_key_value()?;
                if self.delay_us(t_us, first) < target {
                    return None;
                }
                self.empty_run = 0;
                first
            }
        };
        let delay = self.delay_us(t_us, play);
        if delay > target + frame_us * 3 / 2 {
            // Too much buffered: skip whole frames until the delay is within half a
            // frame of the target.
            let excess = delay - (target + frame_us / 2);
            let frames = (excess + frame_us - 1) / frame_us.max(1);
            play += frames * self.frame_ts;
        } else if self.play_ts.is_some() && delay < target - frame_us / 2 {
            // Too little: conceal one frame without advancing.
            self.stats.stretched += 1;
            self.next_due = Some(t + frame_dur);
            self.frame_time = Some(t);
            return Some(Frame::Lost {
                timestamp: (play - self.ts_shift) as u32,
            });
        }

        let (lo, hi) = self.window(play);
        self.drop_below(lo);
        let hit = self.buffer.range(lo..hi).next().map(|(&ts, _)| ts);
        let frame = match hit.and_then(|ts| self.buffer.remove(&ts).map(|v| (ts, v))) {
            Some((ts, entry)) => {
                play = ts;
                self.played.push_back(entry.seq);
                if self.played.len() > PLAYED_MEMORY {
                    self.played.pop_front();
                }
                self.stats.played += 1;
                self.empty_run = 0;
                Frame::Packet {
                    timestamp: entry.rtp_ts,
                    payload: entry.payload,
                }
            }
            None => {
                self.stats.lost += 1;
                if self.buffer.is_empty() {
                    self.empty_run += 1;
                } else {
                    self.empty_run = 0;
                }
                Frame::Lost {
                    timestamp: (play - self.ts_shift) as u32,
                }
            }
        };
        self.frame_time = Some(t);
        if self.empty_run >= IDLE_FRAMES {
            self.play_ts = None;
            self.next_due = None;
            self.empty_run = 0;
        } else {
            self.play_ts = Some(play + self.frame_ts);
            self.next_due = Some(t + frame_dur);
        }
        Some(frame)
    }

    /// Drops everything buffered and the stream's timing (the next packet starts
    /// over as a new stream, SSRC included).
    pub fn reset(&mut self) {
        self.ssrc = None;
        self.old_ssrc = None;
        self.buffer.clear();
        self.play_ts = None;
        self.next_due = None;
        self.transits.clear();
        self.heads.clear();
        self.last_arrival = None;
        self.candidate = None;
        self.played.clear();
        self.empty_run = 0;
        self.last_transit = None;
        self.step_run = (0, 0);
    }

    /// Places a new timeline starting with `packet` after the current one.
    fn remap(&mut self, packet: &RtpAudioPacket, arrival_us: i64) {
        // Where its arrival puts it, had it come over the fastest path...
        let by_arrival = self.us_to_ts(arrival_us - self.base_us);
        // ...but after everything buffered or played.
        let mut newest = self.ts_ref;
        if let Some((&last, _)) = self.buffer.last_key_value() {
            newest = newest.max(last);
        }
        if let Some(play) = self.play_ts {
            newest = newest.max(play - self.frame_ts);
        }
        let first = by_arrival.max(newest + self.frame_ts);
        self.ts_shift = first - i64::from(packet.timestamp);
        self.ts_ref = first;
        self.seq_shift = self.seq_ref + 1 - i64::from(packet.seq);
        self.seq_ref += 1;
        self.step_run = (0, 0);
        self.candidate = None;
        // The jitter estimate must not see the jump.
        self.last_transit = None;
    }

    fn map_seq(&self, seq: u16) -> i64 {
        extend(self.seq_ref - self.seq_shift, i64::from(seq), 16) + self.seq_shift
    }

    fn map_ts(&self, ts: u32) -> i64 {
        extend(self.ts_ref - self.ts_shift, i64::from(ts), 32) + self.ts_shift
    }

    fn accept(&mut self, packet: RtpAudioPacket, arrival_us: i64, outcome: Pushed) -> Pushed {
        let ext_seq = self.map_seq(packet.seq);
        let ext_ts = self.map_ts(packet.timestamp);
        let transit = arrival_us - self.ts_to_us(ext_ts);
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            self.jitter_us += (d - self.jitter_us) / 16.0;
        }
        self.last_transit = Some(transit);
        let head = self
            .last_arrival
            .is_none_or(|a| arrival_us - a >= self.ts_to_us(self.frame_ts) / 4);
        self.last_arrival = Some(arrival_us);
        self.record_transit(transit, head);

        if ext_seq > self.seq_ref {
            if ext_seq == self.seq_ref + 1 {
                self.observe_step(ext_ts - self.ts_ref);
            } else {
                self.step_run = (0, 0);
            }
            self.seq_ref = ext_seq;
            self.ts_ref = ext_ts;
        }

        if let Some(play) = self.play_ts {
            if ext_ts < self.window(play).0 {
                return if self.played.contains(&ext_seq) {
                    self.stats.duplicates += 1;
                    Pushed::Duplicate
                } else {
                    self.stats.late += 1;
                    Pushed::Late
                };
            }
        }
        if self.buffer.contains_key(&ext_ts) {
            self.stats.duplicates += 1;
            return Pushed::Duplicate;
        }
        self.buffer.insert(
            ext_ts,
            Entry {
                seq: ext_seq,
                rtp_ts: packet.timestamp,
                payload: packet.payload,
            },
        );
        while self.buffer.len() > MAX_PACKETS {
            self.buffer.pop_first();
            self.stats.dropped += 1;
        }
        outcome
    }

    /// Follows a change of packet interval seen on three consecutive packets.
    fn observe_step(&mut self, step: i64) {
        let rate = i64::from(self.config.clock_rate);
        let plausible = step >= rate / 200 && step <= rate * 3 / 25;
        if !plausible || step == self.frame_ts {
            self.step_run = (0, 0);
            return;
        }
        if self.step_run.0 == step {
            self.step_run.1 += 1;
        } else {
            self.step_run = (step, 1);
        }
        if self.step_run.1 >= 3 {
            self.frame_ts = step;
            self.step_run = (0, 0);
            self.retarget();
        }
    }

    fn record_transit(&mut self, transit: i64, head: bool) {
        self.transits.push_back(transit);
        if self.transits.len() > WINDOW {
            self.transits.pop_front();
        }
        if head {
            self.heads.push_back(transit);
            if self.heads.len() > WINDOW {
                self.heads.pop_front();
            }
        }
        self.retarget();
    }

    fn retarget(&mut self) {
        if self.transits.is_empty() {
            return;
        }
        let base = self.transits.iter().copied().min().unwrap_or(0);
        self.scratch.clear();
        self.scratch.extend(self.heads.iter().copied());
        if self.scratch.is_empty() {
            self.scratch.push(base);
        }
        // The 99th percentile, leaving out at least the two largest once there are
        // ten values.
        let n = self.scratch.len();
        let excluded = if n >= 10 { (n / 100).max(2) } else { 0 };
        let k = n - 1 - excluded;
        let (_, &mut p99, _) = self.scratch.select_nth_unstable(k);
        self.base_us = base;
        let spread = p99 - base;
        let min = self.config.min_delay.as_micros() as i64;
        let max = self.config.max_delay.as_micros() as i64;
        self.target_us = (spread + self.ts_to_us(self.frame_ts) / 2).clamp(min, max);
    }

    /// How long ago, at `t_us`, the frame `ts` would have arrived over the fastest
    /// path.
    fn delay_us(&self, t_us: i64, ts: i64) -> i64 {
        t_us - self.ts_to_us(ts) - self.base_us
    }

    /// The timestamps that count as the frame at `play` (half a frame either side,
    /// for senders whose timestamps are not on our frame grid).
    fn window(&self, play: i64) -> (i64, i64) {
        (play - self.frame_ts / 2, play + (self.frame_ts + 1) / 2)
    }

    fn drop_below(&mut self, ts: i64) {
        while let Some((&first, _)) = self.buffer.first_key_value() {
            if first >= ts {
                break;
            }
            self.buffer.pop_first();
            self.stats.dropped += 1;
        }
    }

    fn us_to_ts(&self, us: i64) -> i64 {
        (i128::from(us) * i128::from(self.config.clock_rate) / 1_000_000) as i64
    }

    fn ts_to_us(&self, ts: i64) -> i64 {
        (i128::from(ts) * 1_000_000 / i128::from(self.config.clock_rate)) as i64
    }
}

/// Extends a `bits`-wide wrapping counter `value` to the i64 closest to `reference`.
fn extend(reference: i64, value: i64, bits: u32) -> i64 {
    let modulus = 1i64 << bits;
    let half = modulus / 2;
    let diff = (value - reference).rem_euclid(modulus);
    let diff = if diff >= half { diff - modulus } else { diff };
    reference + diff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet whose payload names its sequence number.
    fn pkt(ssrc: u32, seq: u16, ts: u32, marker: bool) -> RtpAudioPacket {
        RtpAudioPacket {
            ssrc,
            seq,
            timestamp: ts,
            marker,
            payload: seq.to_be_bytes().to_vec(),
        }
    }

    /// Pushes packets at their arrival times (ms) and polls every millisecond until
    /// `end_ms`; returns the frames with the time they came out.
    fn simulate(
        jb: &mut JitterBuffer,
        mut arrivals: Vec<(u64, RtpAudioPacket)>,
        end_ms: u64,
    ) -> (Vec<(u64, Frame)>, Vec<Pushed>) {
        let t0 = Instant::now();
        arrivals.sort_by_key(|(at, _)| *at);
        let mut frames = Vec::new();
        let mut pushed = Vec::new();
        let mut next = 0;
        for ms in 0..=end_ms {
            let now = t0 + Duration::from_millis(ms);
            while next < arrivals.len() && arrivals[next].0 <= ms {
                pushed.push(jb.push(arrivals[next].1.clone(), now));
                next += 1;
            }
            while let Some(f) = jb.poll(now) {
                frames.push((ms, f));
            }
        }
        (frames, pushed)
    }

    /// The sequence numbers played (None for lost frames).
    fn played(frames: &[(u64, Frame)]) -> Vec<Option<u16>> {
        frames
            .iter()
            .map(|(_, f)| match f {
                Frame::Packet { payload, .. } => Some(u16::from_be_bytes([payload[0], payload[1]])),
                Frame::Lost { .. } => None,
            })
            .collect()
    }

    /// 20 ms G.711-style packets `first..first+n`, arriving `transit` ms after their
    /// nominal time plus `extra(i)`.
    fn stream(
        n: u16,
        seq0: u16,
        ts0: u32,
        transit: u64,
        extra: impl Fn(u16) -> u64,
    ) -> Vec<(u64, RtpAudioPacket)> {
        (0..n)
            .map(|i| {
                let at = u64::from(i) * 20 + transit + extra(i);
                (
                    at,
                    pkt(
                        7,
                        seq0.wrapping_add(i),
                        ts0.wrapping_add(u32::from(i) * 160),
                        i == 0,
                    ),
                )
            })
            .collect()
    }

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *seed >> 33
    }

    #[test]
    fn in_order_plays_everything_at_the_minimum_delay() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let (frames, pushed) = simulate(&mut jb, stream(100, 0, 0, 30, |_| 0), 2300);
        assert!(pushed.iter().all(|&p| p == Pushed::Buffered));
        let seqs = played(&frames);
        let expected: Vec<Option<u16>> = (0..100).map(Some).collect();
        assert_eq!(&seqs[..100], &expected[..]);
        // Then five lost frames and the buffer idles.
        assert_eq!(&seqs[100..], &[None; 5]);
        assert!(jb.is_idle());
        // The first frame 20 ms after its arrival, then one every 20 ms.
        assert_eq!(frames[0].0, 30 + 20);
        for w in frames.windows(2) {
            assert_eq!(w[1].0 - w[0].0, 20);
        }
        for (i, (_, f)) in frames.iter().enumerate() {
            assert_eq!(f.timestamp(), i as u32 * 160);
        }
        assert_eq!(jb.target_delay(), Duration::from_millis(20));
        let s = jb.stats();
        assert_eq!((s.played, s.lost, s.late, s.dropped), (100, 5, 0, 0));
    }

    #[test]
    fn reordering_within_the_target_is_undone() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        // Odd packets overtake even ones by 15 ms (even ones 15 ms late).
        let packets = stream(200, 0, 0, 30, |i| if i.is_multiple_of(2) { 15 } else { 0 });
        let (frames, _) = simulate(&mut jb, packets, 4300);
        let seqs = played(&frames);
        let got: Vec<u16> = seqs.iter().flatten().copied().collect();
        // Early on the target is still growing: a few may be late. Afterwards
        // everything plays, in order.
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        let first_second_losses = seqs[..50].iter().filter(|s| s.is_none()).count();
        let later_losses = seqs[50..195].iter().filter(|s| s.is_none()).count();
        assert!(first_second_losses <= 3, "{seqs:?}");
        assert_eq!(later_losses, 0, "{seqs:?}");
        assert!(jb.target_delay() >= Duration::from_millis(25));
        assert!(
            jb.target_delay() <= Duration::from_millis(40),
            "{:?}",
            jb.target_delay()
        );
    }

    #[test]
    fn random_jitter_adapts_the_target() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let mut seed = 42u64;
        let extra: Vec<u64> = (0..500).map(|_| lcg(&mut seed) % 60).collect();
        let (frames, _) = simulate(
            &mut jb,
            stream(500, 0, 0, 10, |i| extra[usize::from(i)]),
            10_400,
        );
        let seqs = played(&frames);
        let losses_after_2s = seqs[100..490].iter().filter(|s| s.is_none()).count();
        let target = jb.target_delay();
        println!(
            "target {target:?}, jitter {:?}, losses after 2 s {losses_after_2s}, stats {:?}",
            jb.jitter(),
            jb.stats()
        );
        assert!(target >= Duration::from_millis(55) && target <= Duration::from_millis(80));
        assert!(losses_after_2s <= 4, "{losses_after_2s}");
        assert!(jb.jitter() > Duration::from_millis(5));
        assert!(jb.jitter_rtp() > 40);
    }

    #[test]
    fn losses_become_lost_frames_at_their_timestamps() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let packets: Vec<_> = stream(60, 0, 0, 30, |_| 0)
            .into_iter()
            .filter(|(_, p)| ![10, 11, 30].contains(&p.seq))
            .collect();
        let (frames, _) = simulate(&mut jb, packets, 1400);
        let lost: Vec<u32> = frames[..60]
            .iter()
            .filter(|(_, f)| f.is_lost())
            .map(|(_, f)| f.timestamp())
            .collect();
        assert_eq!(lost, vec![1600, 1760, 4800]);
        assert_eq!(jb.stats().lost, 3 + 5);
    }

    #[test]
    fn duplicates_play_once() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let mut packets = stream(50, 0, 0, 30, |_| 0);
        let copies: Vec<_> = packets
            .iter()
            .map(|(at, p)| {
                (
                    *at + if p.seq.is_multiple_of(5) { 100 } else { 3 },
                    p.clone(),
                )
            })
            .collect();
        packets.extend(copies);
        let (frames, pushed) = simulate(&mut jb, packets, 1300);
        let seqs: Vec<u16> = played(&frames).into_iter().flatten().collect();
        assert_eq!(seqs, (0..50).collect::<Vec<u16>>());
        assert_eq!(
            pushed.iter().filter(|&&p| p == Pushed::Duplicate).count(),
            50
        );
        assert_eq!(jb.stats().duplicates, 50);
    }

    #[test]
    fn late_packets_are_dropped() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        // Packet 20 arrives 300 ms late: its frame was concealed long before.
        let packets = stream(40, 0, 0, 30, |i| if i == 20 { 300 } else { 0 });
        let (frames, pushed) = simulate(&mut jb, packets, 1200);
        assert!(pushed.contains(&Pushed::Late));
        assert_eq!(played(&frames)[20], None);
        assert_eq!(jb.stats().late, 1);
        // One spike does not move the target.
        assert_eq!(jb.target_delay(), Duration::from_millis(20));
    }

    #[test]
    fn burst_after_a_gap_drops_to_the_target() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        // Packets 50..=60 are held up by a 220 ms stall and arrive together with 61.
        let packets = stream(150, 0, 0, 30, |i| {
            if (50..61).contains(&i) {
                (61 - u64::from(i)) * 20
            } else {
                0
            }
        });
        let (frames, _) = simulate(&mut jb, packets, 3300);
        // After the burst the delay is back at the target: the frame of packet n
        // comes out about 30 (transit) + 20 (target) ms after n * 20.
        for (at, f) in &frames {
            if let Frame::Packet { payload, .. } = f {
                let seq = u64::from(u16::from_be_bytes([payload[0], payload[1]]));
                if seq > 62 {
                    let delay = at - seq * 20 - 30;
                    assert!((10..=50).contains(&delay), "seq {seq} delay {delay}");
                }
            }
        }
        let s = jb.stats();
        println!("{s:?}, target {:?}", jb.target_delay());
        assert!(s.dropped + s.late >= 5, "{s:?}");
        assert!(jb.target_delay() <= Duration::from_millis(30));
        let seqs: Vec<u16> = played(&frames).into_iter().flatten().collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        assert!(seqs.contains(&149));
    }

    #[test]
    fn sequence_and_timestamp_wraparound() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let ts0 = u32::MAX - 160 * 30 + 1;
        // Reordered pairs across both wraps.
        let packets = stream(100, 65_500, ts0, 30, |i| {
            if i.is_multiple_of(2) {
                10
            } else {
                0
            }
        });
        let (frames, pushed) = simulate(&mut jb, packets, 2400);
        assert!(pushed.iter().all(|&p| p == Pushed::Buffered), "{pushed:?}");
        let seqs: Vec<u16> = played(&frames).into_iter().flatten().collect();
        let expected: Vec<u16> = (0..100u16).map(|i| 65_500u16.wrapping_add(i)).collect();
        assert_eq!(seqs, expected);
        for (i, (_, f)) in frames.iter().take(100).enumerate() {
            assert_eq!(f.timestamp(), ts0.wrapping_add(i as u32 * 160));
        }
    }

    #[test]
    fn new_ssrc_resets() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let mut packets = stream(50, 100, 5000, 30, |_| 0);
        // A re-INVITE: another SSRC, sequence and timestamp base, right after.
        for i in 0..50u16 {
            let at = 1000 + u64::from(i) * 20 + 30;
            let mut p = pkt(99, 40_000 + i, 3_000_000_000 + u32::from(i) * 160, i == 0);
            p.payload = (1000 + i).to_be_bytes().to_vec();
            packets.push((at, p));
        }
        // A straggler of the old stream after the change.
        packets.push((1100, pkt(7, 150, 5000 + 50 * 160, false)));
        let (frames, pushed) = simulate(&mut jb, packets, 2500);
        assert_eq!(pushed.iter().filter(|&&p| p == Pushed::Reset).count(), 1);
        assert_eq!(pushed.iter().filter(|&&p| p == Pushed::Late).count(), 1);
        assert_eq!(jb.stats().resets, 1);
        // The old stream's tail plays out, the new one follows without a gap.
        let seqs = played(&frames);
        let expected: Vec<Option<u16>> = (100..150).chain(1000..1050).map(Some).collect();
        assert_eq!(&seqs[..100], &expected[..]);
        assert!(frames.windows(2).take(99).all(|w| w[1].0 - w[0].0 == 20));
        // Frames carry the timestamps as received.
        assert_eq!(frames[50].1.timestamp(), 3_000_000_000);
    }

    #[test]
    fn timestamp_jumps_reset_with_marker_or_confirmation() {
        // With the marker bit: at once.
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let mut packets = stream(30, 0, 0, 30, |_| 0);
        for i in 30..60u16 {
            let at = u64::from(i) * 20 + 30;
            packets.push((at, pkt(7, i, 80_000_000 + u32::from(i) * 160, i == 30)));
        }
        let (frames, pushed) = simulate(&mut jb, packets, 1500);
        assert_eq!(pushed[30], Pushed::Reset);
        let seqs = played(&frames);
        let expected: Vec<Option<u16>> = (0..60).map(Some).collect();
        assert_eq!(&seqs[..60], &expected[..]);
        assert_eq!(frames[30].1.timestamp(), 80_000_000 + 30 * 160);

        // Without it: the first packet is held off, the second confirms.
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let mut packets = stream(30, 0, 0, 30, |_| 0);
        for i in 30..60u16 {
            let at = u64::from(i) * 20 + 30;
            packets.push((at, pkt(7, i, 80_000_000 + u32::from(i) * 160, false)));
        }
        // A lone packet far off the timeline in the middle of the first part.
        packets.push((205, pkt(7, 10, 1_000_000, false)));
        let (frames, pushed) = simulate(&mut jb, packets, 1500);
        assert_eq!(
            pushed.iter().filter(|&&p| p == Pushed::OffTimeline).count(),
            2
        );
        assert_eq!(pushed.iter().filter(|&&p| p == Pushed::Reset).count(), 1);
        // Packet 30 was held as the candidate until 31 confirmed it: all play.
        let seqs = played(&frames);
        let expected: Vec<Option<u16>> = (0..60).map(Some).collect();
        assert_eq!(&seqs[..60], &expected[..]);
    }

    #[test]
    fn idle_then_resume() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        // A talkspurt, 2 s of silence suppression (timestamps keep counting), another.
        let mut packets = stream(25, 0, 0, 30, |_| 0);
        for i in 0..25u16 {
            let n = 125 + u32::from(i);
            packets.push((u64::from(n) * 20 + 30, pkt(7, 25 + i, n * 160, i == 0)));
        }
        let (frames, pushed) = simulate(&mut jb, packets, 3500);
        assert!(pushed.iter().all(|&p| p == Pushed::Buffered));
        let seqs = played(&frames);
        assert_eq!(seqs.len(), 25 + 5 + 25 + 5);
        assert_eq!(frames[30].0, 125 * 20 + 30 + 20);
        assert_eq!(frames[30].1.timestamp(), 125 * 160);
        // A long pause shows as a gap in frame times.
        assert_eq!(jb.stats().resets, 0);
    }

    #[test]
    fn follows_the_packet_interval() {
        // 30 ms packets although 20 ms were expected.
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let packets: Vec<_> = (0..60u16)
            .map(|i| (u64::from(i) * 30 + 30, pkt(7, i, u32::from(i) * 240, false)))
            .collect();
        let (frames, _) = simulate(&mut jb, packets, 2000);
        assert_eq!(jb.frame_samples(), 240);
        assert_eq!(jb.frame_duration(), Duration::from_millis(30));
        let seqs = played(&frames);
        // Perhaps a frame lost while switching; then 30 ms frames with every packet.
        let lost = seqs[..60].iter().filter(|s| s.is_none()).count();
        assert!(lost <= 2, "{seqs:?}");
        let got: Vec<u16> = seqs.iter().flatten().copied().collect();
        assert!(got.len() >= 58 && got.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(frames[50].0 - frames[49].0, 30);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 1u64;
        for config in [
            JitterConfig::new(8000),
            JitterConfig::new(48_000),
            JitterConfig {
                clock_rate: 0,
                frame_ms: 0,
                min_delay: Duration::from_secs(1),
                max_delay: Duration::ZERO,
            },
        ] {
            let mut jb = JitterBuffer::new(config);
            let t0 = Instant::now();
            let mut t = t0;
            for _ in 0..20_000 {
                let r = lcg(&mut seed);
                let p = RtpAudioPacket {
                    ssrc: if r.is_multiple_of(97) { r as u32 } else { 1 },
                    seq: (lcg(&mut seed) % 70_000) as u16,
                    timestamp: if r.is_multiple_of(3) {
                        lcg(&mut seed) as u32
                    } else {
                        (r % 100_000) as u32
                    },
                    marker: r.is_multiple_of(11),
                    payload: vec![0; (r % 5) as usize],
                };
                t += Duration::from_micros(lcg(&mut seed) % 30_000);
                let _ = jb.push(p, t);
                while jb.poll(t).is_some() {}
                assert!(jb.buffered() <= MAX_PACKETS);
            }
            // Polls with times going backwards, and long after.
            let _ = jb.poll(t0);
            let _ = jb.poll(t + Duration::from_secs(3600));
        }
    }
}
