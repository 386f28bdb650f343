//! Synthetic media with the shape of a real encoder's output, and the tag
//! every packet carries so receivers can match it to its send time.
//!
//! - Audio: one Opus-sized packet every 20 ms.
//! - Video: VP8 frames at a frame rate, packetized per RFC 7741 (payload
//!   descriptor with a 15-bit picture id, start bit, frame header whose low
//!   bit marks keyframes), a keyframe every GOP and on request, keyframes
//!   several times the size of delta frames, delta sizes varying per frame.
//!
//! The last [`TAG_LEN`] bytes of every payload are the tag: a magic, the
//! stream id, a per-stream counter and the send time in nanoseconds since
//! the benchmark's epoch. The tag sits at the end so that receivers need not
//! parse codec headers, and servers that rewrite headers leave it alone.

use std::time::{Duration, Instant};

pub const TAG_LEN: usize = 20;
const MAGIC: [u8; 4] = *b"MMB1";
/// Largest RTP payload a video packet gets (keeps datagrams under 1200 B).
const MAX_VIDEO_PAYLOAD: usize = 1100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub stream: u32,
    pub counter: u32,
    pub sent_ns: u64,
}

impl Tag {
    fn write(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&MAGIC);
        out[4..8].copy_from_slice(&self.stream.to_be_bytes());
        out[8..12].copy_from_slice(&self.counter.to_be_bytes());
        out[12..20].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// The tag at the end of a payload, if it has one.
    pub fn read(payload: &[u8]) -> Option<Tag> {
        let t = payload.get(payload.len().checked_sub(TAG_LEN)?..)?;
        if t[..4] != MAGIC {
            return None;
        }
        Some(Tag {
            stream: u32::from_be_bytes(t[4..8].try_into().ok()?),
            counter: u32::from_be_bytes(t[8..12].try_into().ok()?),
            sent_ns: u64::from_be_bytes(t[12..20].try_into().ok()?),
        })
    }
}

/// What a publisher sends.
#[derive(Debug, Clone, Copy)]
pub struct MediaConfig {
    pub audio_kbps: u32,
    pub video_kbps: u32,
    pub fps: u32,
    /// Seconds between periodic keyframes.
    pub gop_secs: u32,
    /// Keyframe size as a multiple of the mean delta frame.
    pub key_ratio: u32,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            audio_kbps: 32,
            video_kbps: 800,
            fps: 30,
            gop_secs: 3,
            key_ratio: 8,
        }
    }
}

/// One RTP packet to write.
#[derive(Debug)]
pub struct Packet {
    pub video: bool,
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
}

/// Produces a publisher's audio and video packets on time.
#[derive(Debug)]
pub struct MediaSource {
    cfg: MediaConfig,
    epoch: Instant,
    audio_stream: u32,
    video_stream: u32,
    audio_next: Instant,
    audio_seq: u64,
    audio_ts: u32,
    audio_counter: u32,
    video_next: Instant,
    video_seq: u64,
    video_ts: u32,
    video_counter: u32,
    picture_id: u16,
    frame: u64,
    key_requested: bool,
    rng: u64,
}

impl MediaSource {
    /// `stream_base` names the two streams (`base` audio, `base + 1` video).
    pub fn new(cfg: MediaConfig, epoch: Instant, start: Instant, stream_base: u32) -> Self {
        Self {
            cfg,
            epoch,
            audio_stream: stream_base,
            video_stream: stream_base + 1,
            audio_next: start,
            audio_seq: 1,
            audio_ts: 0,
            audio_counter: 0,
            video_next: start,
            video_seq: 1,
            video_ts: 0,
            video_counter: 0,
            picture_id: 0,
            frame: 0,
            key_requested: true,
            rng: 0x9e37_79b9_7f4a_7c15 ^ u64::from(stream_base),
        }
    }

    pub fn next_due(&self) -> Instant {
        self.audio_next.min(self.video_next)
    }

    /// A receiver asked for a keyframe (PLI/FIR): the next frame is one.
    pub fn request_keyframe(&mut self) {
        self.key_requested = true;
    }

    fn tag(&self, stream: u32, counter: u32, now: Instant) -> Tag {
        Tag {
            stream,
            counter,
            sent_ns: now.saturating_duration_since(self.epoch).as_nanos() as u64,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: deterministic per stream, no dependency.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Appends every packet due at `now` to `out`.
    pub fn produce(&mut self, now: Instant, out: &mut Vec<Packet>) {
        while self.audio_next <= now {
            let size = (self.cfg.audio_kbps as usize * 20 / 8).max(TAG_LEN + 1);
            let mut payload = vec![0u8; size];
            // A plausible Opus TOC byte (SILK/CELT hybrid, 20 ms).
            payload[0] = 0x78;
            let tag = self.tag(self.audio_stream, self.audio_counter, now);
            tag.write(&mut payload[size - TAG_LEN..]);
            out.push(Packet {
                video: false,
                seq: self.audio_seq,
                timestamp: self.audio_ts,
                marker: false,
                payload,
            });
            self.audio_seq += 1;
            self.audio_counter = self.audio_counter.wrapping_add(1);
            self.audio_ts = self.audio_ts.wrapping_add(960);
            self.audio_next += Duration::from_millis(20);
        }
        if self.cfg.video_kbps == 0 {
            self.video_next = now + Duration::from_secs(3600);
            return;
        }
        while self.video_next <= now {
            self.video_frame(now, out);
            self.video_next += Duration::from_secs(1) / self.cfg.fps.max(1);
        }
    }

    fn video_frame(&mut self, now: Instant, out: &mut Vec<Packet>) {
        let fps = u64::from(self.cfg.fps.max(1));
        let gop = (fps * u64::from(self.cfg.gop_secs.max(1))).max(1);
        let key = self.key_requested || self.frame.is_multiple_of(gop);
        if key {
            self.key_requested = false;
            // Restart the GOP so periodic keyframes follow this one.
            self.frame = 0;
        }
        let mean = u64::from(self.cfg.video_kbps) * 1000 / 8 / fps;
        let ratio = u64::from(self.cfg.key_ratio.max(1));
        // GOP budget: one key of `ratio` deltas plus (gop - 1) deltas.
        let delta = mean * gop / (ratio + gop - 1);
        let size = if key {
            delta * ratio
        } else {
            // +-30 % around the mean delta.
            let jitter = self.random() % 61;
            delta * (70 + jitter) / 100
        };
        let size = (size as usize).max(TAG_LEN + 16);
        let per_packet = MAX_VIDEO_PAYLOAD - 4 - TAG_LEN;
        let packets = size.div_ceil(per_packet);
        let mut left = size;
        for i in 0..packets {
            let first = i == 0;
            let body = left.min(per_packet);
            left -= body;
            let mut p = Vec::with_capacity(4 + body + TAG_LEN);
            // VP8 payload descriptor: X=1, S on the first packet, PID 0;
            // I=1 with a 15-bit picture id.
            p.push(0x80 | if first { 0x10 } else { 0 });
            p.push(0x80);
            p.push(0x80 | ((self.picture_id >> 8) as u8 & 0x7f));
            p.push(self.picture_id as u8);
            let start = p.len();
            p.resize(start + body, 0);
            if first {
                // VP8 frame tag: low bit 0 = keyframe, show_frame set.
                p[start] = if key { 0x10 } else { 0x11 };
                if key && body >= 10 {
                    p[start + 3..start + 6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
                    p[start + 6..start + 10].copy_from_slice(&[0x80, 0x02, 0xe0, 0x01]);
                }
            }
            let tag = self.tag(self.video_stream, self.video_counter, now);
            self.video_counter = self.video_counter.wrapping_add(1);
            let at = p.len();
            p.resize(at + TAG_LEN, 0);
            tag.write(&mut p[at..]);
            out.push(Packet {
                video: true,
                seq: self.video_seq,
                timestamp: self.video_ts,
                marker: i + 1 == packets,
                payload: p,
            });
            self.video_seq += 1;
        }
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        self.video_ts = self.video_ts.wrapping_add((90_000 / fps) as u32);
        self.frame += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trip_and_rejects_untagged() {
        let t = Tag {
            stream: 7,
            counter: 9,
            sent_ns: 123_456_789,
        };
        let mut buf = vec![1u8; 50];
        t.write(&mut buf[30..]);
        assert_eq!(Tag::read(&buf), Some(t));
        assert_eq!(Tag::read(&buf[..19]), None);
        assert_eq!(Tag::read(&[0u8; 40]), None);
    }

    #[test]
    fn rates_keyframes_and_vp8_shape() {
        let epoch = Instant::now();
        let cfg = MediaConfig {
            audio_kbps: 32,
            video_kbps: 1000,
            fps: 30,
            gop_secs: 2,
            key_ratio: 8,
        };
        let mut src = MediaSource::new(cfg, epoch, epoch, 10);
        let mut out = Vec::new();
        // Ten seconds in 10 ms steps.
        for i in 0..=1000 {
            src.produce(epoch + Duration::from_millis(i * 10), &mut out);
        }
        let audio: Vec<_> = out.iter().filter(|p| !p.video).collect();
        let video: Vec<_> = out.iter().filter(|p| p.video).collect();
        assert_eq!(audio.len(), 501);
        assert!(audio.iter().all(|p| p.payload.len() == 80));
        let video_bytes: usize = video.iter().map(|p| p.payload.len()).sum();
        let kbps = video_bytes * 8 / 10 / 1000;
        assert!((900..=1150).contains(&kbps), "video {kbps} kbps");
        // Frame starts: S bit with PID 0; keyframes every 2 s (plus the first).
        let keys = video
            .iter()
            .filter(|p| p.payload[0] & 0x10 != 0 && p.payload[4] & 0x01 == 0)
            .count();
        assert_eq!(keys, 6);
        assert!(video.iter().all(|p| p.payload.len() <= MAX_VIDEO_PAYLOAD));
        // Sequence numbers are continuous, counters in the tags too.
        for w in video.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1);
            let (a, b) = (
                Tag::read(&w[0].payload).unwrap(),
                Tag::read(&w[1].payload).unwrap(),
            );
            assert_eq!(b.counter, a.counter + 1);
            assert_eq!(a.stream, 11);
        }
        // A keyframe request makes the next frame a keyframe.
        out.clear();
        src.request_keyframe();
        src.produce(epoch + Duration::from_millis(10_034), &mut out);
        let first_video = out.iter().find(|p| p.video).unwrap();
        assert_eq!(first_video.payload[4] & 0x01, 0);
    }
}
