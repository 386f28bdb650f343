//! DTMF over RTP as telephone events (RFC 4733, which obsoletes RFC 2833).
//!
//! The payload (RFC 4733 §2.3) is four bytes: the event code (0-9, 10 = `*`,
//! 11 = `#`, 12-15 = `A`-`D` for DTMF), the end bit, a reserved bit, the volume
//! (0 to 63, in -dBm0) and the duration so far in RTP timestamp units. All packets
//! of one event carry the event's start as their RTP timestamp; the first has the
//! marker bit; updates follow while the key is held, and the final packet (end bit
//! set) is sent three times (§2.5.1.4).
//!
//! [`DtmfReceiver`] turns such packets, in any order and with any redundancy, into
//! each digit once, when it ends (end bit, a following event, or no update for
//! [`EVENT_TIMEOUT`]). Long events split into segments of the maximum duration
//! (§2.5.1.3) are joined. [`DtmfSender`] makes the packet sequence for one digit.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::AudioError;

/// An event not updated for this long is taken as ended (its end packets were lost).
pub const EVENT_TIMEOUT: Duration = Duration::from_millis(250);
/// Finished events remembered to ignore their redundant or reordered packets.
const DONE_MEMORY: usize = 16;

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TelephoneEvent {
    /// Event code (0-15 are the DTMF digits).
    pub event: u8,
    /// The end bit: this is the (or a copy of the) final packet of the event.
    pub end: bool,
    /// Volume, 0 to 63, as -dBm0 (0 is loudest); 0 for events without a volume.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first four bytes of `payload` (more bytes are ignored; the reserved
    /// bit is ignored, as §2.3.3 asks of receivers).
    pub fn parse(payload: &[u8]) -> Result<Self, AudioError> {
        let b: [u8; 4] = payload
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                AudioError::Decode(format!(
                    "telephone-event payload of {} bytes (4 needed)",
                    payload.len()
                ))
            })?;
        Ok(TelephoneEvent {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3F,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// The four payload bytes (reserved bit zero, volume truncated to 6 bits).
    pub fn to_bytes(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }
}

/// The DTMF character of an event code (`0`-`9`, `*`, `#`, `A`-`D`), if it is one.
pub fn event_char(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// The event code of a DTMF character (`a`-`d` accepted for `A`-`D`).
pub fn char_event(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(c as u8 - b'A' + 12),
        'a'..='d' => Some(c as u8 - b'a' + 12),
        _ => None,
    }
}

/// A received DTMF digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    /// `0`-`9`, `*`, `#` or `A`-`D`.
    pub event: char,
    /// How long the key was held, in ms.
    pub duration_ms: u32,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    /// RTP timestamp of the current segment.
    timestamp: u32,
    event: u8,
    /// Duration of the current segment, and of the segments before it.
    duration: u16,
    earlier: u64,
    updated: Instant,
}

/// Turns telephone-event packets into digits, each once.
#[derive(Debug)]
pub struct DtmfReceiver {
    clock_rate: u32,
    current: Option<Current>,
    /// Timestamps of recently finished events (all their segments).
    done: VecDeque<u32>,
    /// Timestamp of the newest event seen, to ignore stale ones.
    newest: Option<u32>,
}

impl DtmfReceiver {
    /// A receiver for telephone events on an RTP clock of `clock_rate` Hz (8000
    /// usually; the rate of the `telephone-event` format negotiated).
    pub fn new(clock_rate: u32) -> Self {
        DtmfReceiver {
            clock_rate: clock_rate.max(1),
            current: None,
            done: VecDeque::with_capacity(DONE_MEMORY + 1),
            newest: None,
        }
    }

    /// Handles one telephone-event packet (its RTP timestamp and payload), arrived at
    /// `now`. Returns the digits it finishes: usually none, one at the end of a key
    /// press, two when the end of one digit was lost and the next one arrives already
    /// ended. Malformed payloads and non-DTMF events are ignored.
    pub fn push(&mut self, timestamp: u32, payload: &[u8], now: Instant) -> Vec<Digit> {
        let mut out = Vec::new();
        let Ok(ev) = TelephoneEvent::parse(payload) else {
            return out;
        };
        if event_char(ev.event).is_none() || self.done.contains(&timestamp) {
            return out;
        }
        if let Some(newest) = self.newest {
            // An event starting before the newest one is stale (reordered from an
            // event already reported).
            if (timestamp.wrapping_sub(newest) as i32) < 0 {
                return out;
            }
        }
        let next_segment = |cur: &Current| {
            cur.event == ev.event
                && timestamp == cur.timestamp.wrapping_add(u32::from(cur.duration))
                && cur.duration >= 0xFF00
        };
        match &mut self.current {
            Some(cur) if cur.timestamp == timestamp => {
                cur.duration = cur.duration.max(ev.duration);
                cur.updated = now;
            }
            Some(cur) if next_segment(cur) => {
                // The next segment of a long event (RFC 4733 §2.5.1.3).
                let finished = cur.timestamp;
                cur.earlier += u64::from(cur.duration);
                cur.timestamp = timestamp;
                cur.duration = ev.duration;
                cur.updated = now;
                self.remember_done(finished);
            }
            _ => {
                if let Some(d) = self.finish() {
                    out.push(d);
                }
                self.current = Some(Current {
                    timestamp,
                    event: ev.event,
                    duration: ev.duration,
                    earlier: 0,
                    updated: now,
                });
            }
        }
        self.newest = Some(timestamp);
        if ev.end {
            if let Some(d) = self.finish() {
                out.push(d);
            }
        }
        out
    }

    /// Ends an event whose updates stopped [`EVENT_TIMEOUT`] ago (its end packets
    /// were lost). Call now and then (every 50 ms, say).
    pub fn poll(&mut self, now: Instant) -> Option<Digit> {
        let cur = self.current?;
        if now.saturating_duration_since(cur.updated) >= EVENT_TIMEOUT {
            self.finish()
        } else {
            None
        }
    }

    /// Whether a key is being held (an event started and not ended).
    pub fn in_event(&self) -> bool {
        self.current.is_some()
    }

    fn finish(&mut self) -> Option<Digit> {
        let cur = self.current.take()?;
        self.remember_done(cur.timestamp);
        let units = cur.earlier + u64::from(cur.duration);
        Some(Digit {
            event: event_char(cur.event)?,
            duration_ms: (units * 1000 / u64::from(self.clock_rate)) as u32,
        })
    }

    fn remember_done(&mut self, timestamp: u32) {
        self.done.push_back(timestamp);
        if self.done.len() > DONE_MEMORY {
            self.done.pop_front();
        }
    }
}

/// One packet to send for a digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// When to send it, in ms after the first packet.
    pub send_offset_ms: u32,
    /// The RTP marker bit (set on the first packet only).
    pub marker: bool,
    /// The RTP timestamp (the event's start, the same on every packet).
    pub timestamp: u32,
    /// The payload.
    pub payload: [u8; 4],
}

/// Makes the packets of a digit: the first one with the marker bit at once, an
/// update every [`DtmfSender::update_interval_ms`] with the duration so far, then the
/// final packet (end bit, full duration) three times, one packet interval apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfSender {
    /// RTP clock rate of the negotiated `telephone-event` format.
    pub clock_rate: u32,
    /// Volume in -dBm0 (0 to 63); 10 is a common level.
    pub volume: u8,
    /// Interval between updates (50 ms as RFC 4733 suggests).
    pub update_interval_ms: u32,
    /// Interval between the copies of the final packet (the audio packet interval).
    pub end_interval_ms: u32,
}

impl DtmfSender {
    /// A sender at `clock_rate` with volume 10, updates every 50 ms and the final
    /// packets 20 ms apart.
    pub fn new(clock_rate: u32) -> Self {
        DtmfSender {
            clock_rate,
            volume: 10,
            update_interval_ms: 50,
            end_interval_ms: 20,
        }
    }

    /// The packets for `digit` held for `duration_ms`, starting at RTP timestamp
    /// `timestamp`. The first packet reports a duration of one 20 ms packet interval
    /// (or the whole event if shorter), later updates the time elapsed. The audio
    /// stream's timestamps should continue after `timestamp + duration`.
    pub fn packets(
        &self,
        digit: char,
        duration_ms: u32,
        timestamp: u32,
    ) -> Result<Vec<DtmfPacket>, AudioError> {
        let event = char_event(digit)
            .ok_or_else(|| AudioError::InvalidArgument(format!("{digit:?} is not a DTMF digit")))?;
        if self.clock_rate == 0 || duration_ms == 0 {
            return Err(AudioError::InvalidArgument(
                "zero clock rate or duration".into(),
            ));
        }
        let units = |ms: u32| u64::from(ms) * u64::from(self.clock_rate) / 1000;
        let total = units(duration_ms);
        if total > u64::from(u16::MAX) {
            return Err(AudioError::InvalidArgument(format!(
                "a {duration_ms} ms event does not fit one segment at {} Hz",
                self.clock_rate
            )));
        }
        let total = total as u16;
        let packet = |offset: u32, marker: bool, end: bool, duration: u16| DtmfPacket {
            send_offset_ms: offset,
            marker,
            timestamp,
            payload: TelephoneEvent {
                event,
                end,
                volume: self.volume.min(63),
                duration,
            }
            .to_bytes(),
        };
        let mut out = Vec::new();
        let first = (units(20) as u16).min(total);
        out.push(packet(0, true, false, first));
        let step = self.update_interval_ms.max(1);
        let mut t = step;
        while t < duration_ms {
            out.push(packet(t, false, false, (units(t) as u16).max(first)));
            t += step;
        }
        for i in 0..3 {
            out.push(packet(
                duration_ms + i * self.end_interval_ms,
                false,
                true,
                total,
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_and_fields() {
        // RFC 4733 §2.3 layout: event 5, end bit, volume 10, duration 800.
        let bytes = [0x05, 0x8A, 0x03, 0x20];
        let ev = TelephoneEvent::parse(&bytes).unwrap();
        assert_eq!(
            ev,
            TelephoneEvent {
                event: 5,
                end: true,
                volume: 10,
                duration: 800
            }
        );
        assert_eq!(ev.to_bytes(), bytes);
        // The reserved bit is ignored on receipt and not sent.
        let ev2 = TelephoneEvent::parse(&[0x05, 0xCA, 0x03, 0x20, 0xFF]).unwrap();
        assert_eq!(ev2, ev);
        assert!(TelephoneEvent::parse(&[1, 2, 3]).is_err());
        for e in 0..16u8 {
            let c = event_char(e).unwrap();
            assert_eq!(char_event(c), Some(e));
        }
        assert_eq!(event_char(10), Some('*'));
        assert_eq!(event_char(11), Some('#'));
        assert_eq!(event_char(15), Some('D'));
        assert_eq!(event_char(16), None);
        assert_eq!(char_event('x'), None);
    }

    fn feed(rx: &mut DtmfReceiver, packets: &[DtmfPacket], t0: Instant) -> Vec<Digit> {
        let mut out = Vec::new();
        for p in packets {
            let at = t0 + Duration::from_millis(u64::from(p.send_offset_ms));
            out.extend(rx.push(p.timestamp, &p.payload, at));
        }
        out
    }

    #[test]
    fn sender_sequence_shape() {
        let tx = DtmfSender::new(8000);
        let p = tx.packets('7', 200, 1000).unwrap();
        // Start at 0, updates at 50, 100, 150, three ends at 200, 220, 240.
        let offsets: Vec<u32> = p.iter().map(|p| p.send_offset_ms).collect();
        assert_eq!(offsets, vec![0, 50, 100, 150, 200, 220, 240]);
        assert!(p[0].marker && p[1..].iter().all(|p| !p.marker));
        assert!(p.iter().all(|p| p.timestamp == 1000));
        let evs: Vec<TelephoneEvent> = p
            .iter()
            .map(|p| TelephoneEvent::parse(&p.payload).unwrap())
            .collect();
        let durations: Vec<u16> = evs.iter().map(|e| e.duration).collect();
        assert_eq!(durations, vec![160, 400, 800, 1200, 1600, 1600, 1600]);
        assert_eq!(evs.iter().filter(|e| e.end).count(), 3);
        assert!(evs.iter().all(|e| e.event == 7 && e.volume == 10));
        assert!(tx.packets('x', 100, 0).is_err());
        assert!(tx.packets('1', 9000, 0).is_err());
        assert!(DtmfSender::new(48000).packets('1', 1300, 0).is_ok());
    }

    #[test]
    fn redundant_packets_give_each_digit_once() {
        let tx = DtmfSender::new(8000);
        let mut rx = DtmfReceiver::new(8000);
        let t0 = Instant::now();
        let mut all = Vec::new();
        let mut ts = 50_000u32;
        for (i, c) in "159#*AD0".chars().enumerate() {
            let mut p = tx.packets(c, 120 + 10 * i as u32, ts).unwrap();
            for q in &mut p {
                q.send_offset_ms += i as u32 * 400;
            }
            // Every packet twice (a sender with RFC 2198-style repetition).
            let doubled: Vec<DtmfPacket> = p.iter().flat_map(|q| [*q, *q]).collect();
            all.extend(feed(&mut rx, &doubled, t0));
            ts = ts.wrapping_add(3200);
        }
        let digits: String = all.iter().map(|d| d.event).collect();
        assert_eq!(digits, "159#*AD0");
        for (i, d) in all.iter().enumerate() {
            assert_eq!(d.duration_ms, 120 + 10 * i as u32);
        }
        assert!(!rx.in_event());
    }

    #[test]
    fn lost_end_packets_end_on_next_event_or_timeout() {
        let tx = DtmfSender::new(8000);
        let mut rx = DtmfReceiver::new(8000);
        let t0 = Instant::now();
        // '3' loses all its end packets; '4' follows.
        let p3 = tx.packets('3', 150, 0).unwrap();
        let got = feed(&mut rx, &p3[..p3.len() - 3], t0);
        assert!(got.is_empty());
        assert!(rx.in_event());
        let mut p4 = tx.packets('4', 100, 2400).unwrap();
        for q in &mut p4 {
            q.send_offset_ms += 400;
        }
        let got = feed(&mut rx, &p4, t0);
        assert_eq!(
            got,
            vec![
                Digit {
                    event: '3',
                    duration_ms: 100
                },
                Digit {
                    event: '4',
                    duration_ms: 100
                }
            ]
        );
        // Late end packets of '3' are ignored.
        assert!(feed(&mut rx, &p3[p3.len() - 3..], t0).is_empty());
        // '5' without end packets and nothing after it: the timeout ends it.
        let p5 = tx.packets('5', 100, 9000).unwrap();
        let start = t0 + Duration::from_secs(2);
        for q in &p5[..p5.len() - 3] {
            assert!(rx
                .push(
                    q.timestamp,
                    &q.payload,
                    start + Duration::from_millis(u64::from(q.send_offset_ms))
                )
                .is_empty());
        }
        assert_eq!(rx.poll(start + Duration::from_millis(100)), None);
        assert_eq!(
            rx.poll(start + Duration::from_millis(400)),
            Some(Digit {
                event: '5',
                duration_ms: 50
            })
        );
        assert_eq!(rx.poll(start + Duration::from_millis(800)), None);
    }

    #[test]
    fn long_event_segments_join() {
        // A 10 s '#' at 8 kHz: segments of 0xFFFF units (RFC 4733 §2.5.1.3).
        let mut rx = DtmfReceiver::new(8000);
        let t0 = Instant::now();
        let ev = |duration: u16, end: bool| {
            TelephoneEvent {
                event: 11,
                end,
                volume: 10,
                duration,
            }
            .to_bytes()
        };
        assert!(rx.push(100, &ev(30_000, false), t0).is_empty());
        assert!(rx.push(100, &ev(0xFFFF, false), t0).is_empty());
        let ts2 = 100u32 + 0xFFFF;
        assert!(rx.push(ts2, &ev(14_465, false), t0).is_empty());
        let got = rx.push(ts2, &ev(14_465, true), t0);
        assert_eq!(
            got,
            vec![Digit {
                event: '#',
                duration_ms: 10_000
            }]
        );
        assert!(rx.push(ts2, &ev(14_465, true), t0).is_empty());
        assert!(rx.push(100, &ev(0xFFFF, false), t0).is_empty());
    }

    #[test]
    fn garbage_is_ignored() {
        let mut rx = DtmfReceiver::new(8000);
        let t0 = Instant::now();
        let mut seed = 7u32;
        for i in 0..5000u32 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = (seed >> 28) as usize;
            let payload: Vec<u8> = (0..len).map(|k| (seed >> (k % 24)) as u8).collect();
            for d in rx.push(
                seed >> 3,
                &payload,
                t0 + Duration::from_millis(u64::from(i)),
            ) {
                assert!("0123456789*#ABCD".contains(d.event));
            }
            let _ = rx.poll(t0 + Duration::from_millis(u64::from(i)));
        }
        let _ = DtmfReceiver::new(0).push(0, &[1, 0x80, 0, 0], t0);
    }
}
