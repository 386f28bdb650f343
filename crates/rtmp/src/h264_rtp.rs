//! H.264 RTP packetization (RFC 6184), packetization-mode 1 (non-interleaved):
//! single NAL unit packets (5.6) for NAL units that fit the payload budget,
//! STAP-A (5.7.1) to aggregate consecutive small ones (SPS + PPS before a
//! keyframe), FU-A (5.8) to fragment the rest. The marker bit is set on the
//! last packet of the access unit (5.1). Access unit delimiters (type 9) and
//! filler data (type 12) are dropped: they mean nothing to an RTP receiver.

use crate::avc::{nal, nal_type};

/// RTP payload type numbers for the NAL unit header.
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// One RTP payload; every packet of an access unit has its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPayload {
    pub payload: Vec<u8>,
    /// Set on the last packet of the access unit.
    pub marker: bool,
    /// 90 kHz RTP timestamp.
    pub timestamp: u32,
}

/// Turns access units into RTP payloads.
#[derive(Debug, Clone)]
pub struct H264Packetizer {
    max_payload: usize,
    stap_a: bool,
}

impl Default for H264Packetizer {
    fn default() -> Self {
        Self::new(1200)
    }
}

impl H264Packetizer {
    /// `max_payload`: bytes of RTP payload per packet, kept within 3 (so
    /// FU-A fragments carry data) and 65535 (STAP-A sizes are 16-bit).
    /// STAP-A aggregation is on.
    pub fn new(max_payload: usize) -> Self {
        H264Packetizer {
            max_payload: max_payload.clamp(3, 0xFFFF),
            stap_a: true,
        }
    }

    /// Turns STAP-A aggregation on or off.
    pub fn with_stap_a(mut self, on: bool) -> Self {
        self.stap_a = on;
        self
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Packetizes one access unit (NAL units without start codes or length
    /// prefixes) at RTP timestamp `timestamp` (90 kHz).
    pub fn packetize(&self, nalus: &[&[u8]], timestamp: u32) -> Vec<RtpPayload> {
        let nalus: Vec<&[u8]> = nalus
            .iter()
            .copied()
            .filter(|n| !n.is_empty() && !matches!(nal_type(n), Some(nal::AUD | nal::FILLER)))
            .collect();
        let mut out: Vec<RtpPayload> = Vec::new();
        let mut push = |payload: Vec<u8>| {
            out.push(RtpPayload {
                payload,
                marker: false,
                timestamp,
            })
        };
        let mut i = 0;
        while i < nalus.len() {
            let n = nalus[i];
            if n.len() > self.max_payload {
                self.fragment(n, &mut push);
                i += 1;
                continue;
            }
            // Aggregate as many following NAL units as fit (STAP-A header +
            // a 2-byte size per unit).
            let mut end = i + 1;
            if self.stap_a {
                let mut size = 1 + 2 + n.len();
                while let Some(next) = nalus.get(end) {
                    let grown = size + 2 + next.len();
                    if grown > self.max_payload {
                        break;
                    }
                    size = grown;
                    end += 1;
                }
            }
            if end - i == 1 {
                push(n.to_vec());
            } else {
                let group = &nalus[i..end];
                let f = group.iter().fold(0, |a, n| a | (n[0] & 0x80));
                let nri = group.iter().map(|n| n[0] & 0x60).max().unwrap_or(0);
                let mut p = Vec::with_capacity(self.max_payload);
                p.push(f | nri | STAP_A);
                for n in group {
                    p.extend_from_slice(&(n.len() as u16).to_be_bytes());
                    p.extend_from_slice(n);
                }
                push(p);
            }
            i = end;
        }
        if let Some(last) = out.last_mut() {
            last.marker = true;
        }
        out
    }

    /// FU-A fragments of one NAL unit.
    fn fragment(&self, n: &[u8], push: &mut impl FnMut(Vec<u8>)) {
        let header = n[0];
        let indicator = (header & 0xe0) | FU_A;
        let body = &n[1..];
        let step = self.max_payload - 2;
        let count = body.len().div_ceil(step);
        for (k, piece) in body.chunks(step).enumerate() {
            let mut fu = header & 0x1f;
            if k == 0 {
                fu |= 0x80;
            }
            if k + 1 == count {
                fu |= 0x40;
            }
            let mut p = Vec::with_capacity(piece.len() + 2);
            p.push(indicator);
            p.push(fu);
            p.extend_from_slice(piece);
            push(p);
        }
    }
}

/// RTMP milliseconds to a 90 kHz RTP timestamp (wrapping).
pub fn rtp_timestamp_90khz(ms: u64) -> u32 {
    ms.wrapping_mul(90) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediamesh_testkit::Rng;

    /// Reassembles NAL units from payloads (single, STAP-A, FU-A).
    fn depacketize(packets: &[RtpPayload]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut fu: Option<Vec<u8>> = None;
        for p in packets {
            let b = &p.payload;
            match b[0] & 0x1f {
                STAP_A => {
                    let mut i = 1;
                    while i + 2 <= b.len() {
                        let l = usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
                        out.push(b[i + 2..i + 2 + l].to_vec());
                        i += 2 + l;
                    }
                    assert_eq!(i, b.len());
                }
                FU_A => {
                    let (s, e) = (b[1] & 0x80 != 0, b[1] & 0x40 != 0);
                    if s {
                        assert!(fu.is_none());
                        fu = Some(vec![(b[0] & 0xe0) | (b[1] & 0x1f)]);
                    }
                    fu.as_mut().expect("FU-A start").extend_from_slice(&b[2..]);
                    if e {
                        out.push(fu.take().unwrap());
                    }
                }
                _ => out.push(b.clone()),
            }
        }
        assert!(fu.is_none());
        out
    }

    fn nalu(rng: &mut Rng, header: u8, len: usize) -> Vec<u8> {
        let mut v = vec![header];
        v.extend((1..len).map(|_| rng.byte()));
        v
    }

    #[test]
    fn small_units_aggregate_large_ones_fragment() {
        let mut rng = Rng::new(5);
        let sps = nalu(&mut rng, 0x67, 20);
        let pps = nalu(&mut rng, 0x68, 5);
        let aud = vec![0x09, 0xf0];
        let idr = nalu(&mut rng, 0x65, 5000);
        let p = H264Packetizer::new(1200);
        let packets = p.packetize(&[&aud, &sps, &pps, &idr], 9000);
        // STAP-A(SPS, PPS) + ceil(4999 / 1198) = 5 FU-A.
        assert_eq!(packets.len(), 6);
        assert_eq!(packets[0].payload[0], 0x60 | STAP_A);
        assert!(packets.iter().all(|p| p.payload.len() <= 1200));
        assert!(packets.iter().all(|p| p.timestamp == 9000));
        assert_eq!(packets.iter().filter(|p| p.marker).count(), 1, "one marker");
        assert!(packets.last().unwrap().marker);
        // FU indicator keeps F/NRI, FU header the type with S/E.
        assert_eq!(packets[1].payload[0], 0x60 | FU_A);
        assert_eq!(packets[1].payload[1], 0x80 | 5);
        assert_eq!(packets[3].payload[1], 5);
        assert_eq!(packets[5].payload[1], 0x40 | 5);
        assert_eq!(depacketize(&packets), vec![sps, pps, idr]);
    }

    #[test]
    fn single_units_without_stap_a() {
        let p = H264Packetizer::new(100).with_stap_a(false);
        let a = vec![0x67, 1, 2];
        let b = vec![0x68, 3];
        let c = vec![0x41; 100];
        let packets = p.packetize(&[&a, &b, &c, &[0x0c, 0xff]], 1);
        assert_eq!(packets.len(), 3);
        assert_eq!(packets[2].payload, c);
        assert!(!packets[0].marker && packets[2].marker);
        assert!(p.packetize(&[], 0).is_empty());
        assert!(p.packetize(&[&[0x09, 0x10]], 0).is_empty());
    }

    #[test]
    fn fragmentation_reassembles_for_many_sizes() {
        let mut rng = Rng::new(9);
        for mtu in [3usize, 4, 10, 100, 1200] {
            for _ in 0..50 {
                let count = 1 + rng.below(6);
                let units: Vec<Vec<u8>> = (0..count)
                    .map(|_| {
                        let t = [0x65, 0x41, 0x06, 0x67, 0x68, 0x01][rng.below(6)];
                        let len = 1 + rng.below(3 * mtu + 10);
                        nalu(&mut rng, t, len)
                    })
                    .collect();
                let refs: Vec<&[u8]> = units.iter().map(Vec::as_slice).collect();
                let packets = H264Packetizer::new(mtu).packetize(&refs, 0);
                assert!(packets.iter().all(|p| p.payload.len() <= mtu.max(3)));
                assert_eq!(depacketize(&packets), units, "mtu {mtu}");
                assert!(packets.last().unwrap().marker);
            }
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(rtp_timestamp_90khz(1000), 90_000);
        assert_eq!(
            rtp_timestamp_90khz(u64::from(u32::MAX)),
            u32::MAX.wrapping_mul(90)
        );
    }
}
