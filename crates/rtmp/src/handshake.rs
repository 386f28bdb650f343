//! The server side of the RTMP handshake (Adobe RTMP specification 1.0,
//! section 5.2: C0/S0, C1/S1, C2/S2).
//!
//! We answer with the simple handshake: once C0 (version 3) and C1 (1536 bytes)
//! are in, we send S0 (version 3), S1 (time 0, zero bytes 4..8, 1528
//! pseudo-random bytes) and S2 (an echo of C1), then wait for C2 (1536 bytes,
//! not checked: clients fill it differently). Zero bytes at S1[4..8] tell
//! clients that start the digest ("FP9") scheme that this server does not
//! sign; librtmp, ffmpeg and GStreamer then finish with the simple scheme, and
//! an echoed C1 is what they accept as S2.

use thiserror::Error;

/// Size of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;
/// The RTMP version in C0/S0.
pub const RTMP_VERSION: u8 = 3;

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    /// C0 named another version: 6 is RTMPE (encrypted), a letter usually
    /// means HTTP or TLS on the RTMP port.
    #[error("unsupported RTMP version {0} in C0 (only plain RTMP version 3 is supported)")]
    UnsupportedVersion(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for C0 and C1 (together 1537 bytes).
    C0C1,
    /// S0+S1+S2 sent; waiting for C2.
    C2,
    Done,
}

/// The handshake state machine: [`Handshake::feed`] it bytes, it appends the
/// reply to `out` and says how many bytes it used.
#[derive(Debug, Clone)]
pub struct Handshake {
    state: State,
    buf: Vec<u8>,
}

impl Default for Handshake {
    fn default() -> Self {
        Self::new()
    }
}

impl Handshake {
    pub fn new() -> Self {
        Handshake {
            state: State::C0C1,
            buf: Vec::new(),
        }
    }

    /// True once C2 has been read; bytes after it belong to the chunk stream.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes handshake bytes from `input` and returns how many were used
    /// (all of them unless the handshake completed part-way through). S0, S1
    /// and S2 are appended to `out` when C1 is complete.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HandshakeError> {
        let mut used = 0;
        while used < input.len() && self.state != State::Done {
            // C0 is checked as soon as it arrives so that a wrong protocol
            // fails fast instead of waiting for 1536 more bytes.
            if self.state == State::C0C1 && self.buf.is_empty() && input[used] != RTMP_VERSION {
                return Err(HandshakeError::UnsupportedVersion(input[used]));
            }
            let want = match self.state {
                State::C0C1 => 1 + HANDSHAKE_SIZE,
                State::C2 => HANDSHAKE_SIZE,
                State::Done => 0,
            };
            let take = (want - self.buf.len()).min(input.len() - used);
            self.buf.extend_from_slice(&input[used..used + take]);
            used += take;
            if self.buf.len() < want {
                break;
            }
            match self.state {
                State::C0C1 => {
                    let c1 = &self.buf[1..];
                    out.reserve(1 + 2 * HANDSHAKE_SIZE);
                    out.push(RTMP_VERSION);
                    write_s1(c1, out);
                    out.extend_from_slice(c1);
                    self.state = State::C2;
                }
                State::C2 => {
                    self.state = State::Done;
                }
                State::Done => {}
            }
            self.buf.clear();
        }
        if self.state == State::Done {
            self.buf = Vec::new();
        }
        Ok(used)
    }
}

/// S1: time 0, four zero bytes, then 1528 bytes of xorshift noise seeded from
/// C1 (the spec asks for random-looking bytes; nothing depends on them being
/// unpredictable, and this keeps the state machine deterministic).
fn write_s1(c1: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[0; 8]);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for &b in c1.iter().take(64) {
        seed = (seed ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut x = seed | 1;
    let mut written = 8;
    while written < HANDSHAKE_SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_be_bytes();
        let n = (HANDSHAKE_SIZE - written).min(8);
        out.extend_from_slice(&bytes[..n]);
        written += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c0c1() -> Vec<u8> {
        let mut v = vec![RTMP_VERSION];
        v.extend((0..HANDSHAKE_SIZE).map(|i| (i * 7 + 3) as u8));
        v
    }

    #[test]
    fn replies_s0_s1_s2_and_stops_after_c2() {
        let mut hs = Handshake::new();
        let mut out = Vec::new();
        let mut input = c0c1();
        input.extend(vec![0xaa; HANDSHAKE_SIZE]);
        input.extend_from_slice(b"rest");
        let used = hs.feed(&input, &mut out).unwrap();
        assert_eq!(used, input.len() - 4);
        assert!(hs.is_done());
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(out[0], 3);
        assert_eq!(&out[1..9], &[0; 8]);
        assert_eq!(&out[1 + HANDSHAKE_SIZE..], &input[1..1 + HANDSHAKE_SIZE]);
        // Done: nothing more is consumed.
        assert_eq!(hs.feed(b"xyz", &mut out).unwrap(), 0);
    }

    #[test]
    fn byte_by_byte() {
        let mut hs = Handshake::new();
        let mut out = Vec::new();
        let mut input = c0c1();
        input.extend(vec![1; HANDSHAKE_SIZE]);
        for (i, b) in input.iter().enumerate() {
            assert_eq!(hs.feed(std::slice::from_ref(b), &mut out).unwrap(), 1);
            if i < HANDSHAKE_SIZE {
                assert!(out.is_empty());
            } else {
                assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
            }
        }
        assert!(hs.is_done());
    }

    #[test]
    fn rejects_other_versions() {
        let mut out = Vec::new();
        assert_eq!(
            Handshake::new().feed(&[6, 0, 0], &mut out),
            Err(HandshakeError::UnsupportedVersion(6))
        );
        assert_eq!(
            Handshake::new().feed(b"GET / HTTP/1.1", &mut out),
            Err(HandshakeError::UnsupportedVersion(b'G'))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn s1_is_deterministic_and_not_constant() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_s1(&[1, 2, 3], &mut a);
        write_s1(&[1, 2, 3], &mut b);
        assert_eq!(a, b);
        assert_eq!(a.len(), HANDSHAKE_SIZE);
        assert!(a[8..].iter().any(|&x| x != a[8]));
    }
}
