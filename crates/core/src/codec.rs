//! Codecs and what the core needs to know of their payloads: which packets
//! start a frame that can be decoded without earlier frames (keyframes).

/// Audio or video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

/// The codecs MediaMesh forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    Opus,
    Pcmu,
    Pcma,
    G722,
    Vp8,
    Vp9,
    H264,
    Av1,
}

impl Codec {
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::Opus | Codec::Pcmu | Codec::Pcma | Codec::G722 => MediaKind::Audio,
            Codec::Vp8 | Codec::Vp9 | Codec::H264 | Codec::Av1 => MediaKind::Video,
        }
    }

    /// RTP clock rate in Hz.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Pcmu | Codec::Pcma | Codec::G722 => 8_000,
            Codec::Vp8 | Codec::Vp9 | Codec::H264 | Codec::Av1 => 90_000,
        }
    }

    /// Whether this RTP payload begins a keyframe: a point where a decoder can
    /// start without any earlier packet. Audio packets always are. Malformed
    /// or truncated payloads are never keyframes.
    pub fn is_keyframe_start(self, payload: &[u8]) -> bool {
        match self {
            Codec::Opus | Codec::Pcmu | Codec::Pcma | Codec::G722 => true,
            Codec::Vp8 => vp8_keyframe_start(payload),
            Codec::Vp9 => vp9_keyframe_start(payload),
            Codec::H264 => h264_has_idr(payload),
            Codec::Av1 => av1_new_sequence(payload),
        }
    }
}

/// VP8 (RFC 7741): the payload descriptor, then for the first partition of a
/// frame (S=1, PID=0) the VP8 frame header whose lowest bit is 0 for keyframes.
fn vp8_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let start = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    if !start || pid != 0 {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        // X: extension byte with I, L, T, K flags.
        let Some(&x) = p.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            // I: picture id, 7 or 15 bits.
            let Some(&pid0) = p.get(i) else { return false };
            i += if pid0 & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // L: TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // T or K: TID/Y/KEYIDX
        }
    }
    match p.get(i) {
        Some(&h) => h & 0x01 == 0,
        None => false,
    }
}

/// VP9 (RFC 9628): P=0 (not inter-predicted), B=1 (start of a frame), and the
/// lowest spatial layer when layer indices are present.
fn vp9_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let i_flag = b0 & 0x80 != 0;
    let p_flag = b0 & 0x40 != 0;
    let l_flag = b0 & 0x20 != 0;
    let b_flag = b0 & 0x08 != 0;
    if p_flag || !b_flag {
        return false;
    }
    if !l_flag {
        return true;
    }
    let mut i = 1;
    if i_flag {
        let Some(&pid0) = p.get(i) else { return false };
        i += if pid0 & 0x80 != 0 { 2 } else { 1 };
    }
    match p.get(i) {
        // Layer indices: TID(3) U(1) SID(3) D(1).
        Some(&l) => (l >> 1) & 0x07 == 0,
        None => false,
    }
}

/// H.264 (RFC 6184): an IDR slice (type 5) or SPS (type 7) in a single NAL
/// unit, inside a STAP-A, or at the start of an FU-A.
fn h264_has_idr(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let is_key = |t: u8| t == 5 || t == 7;
    match b0 & 0x1f {
        24 => {
            // STAP-A: [size u16][nal]...
            let mut i = 1;
            while i + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                let Some(&nal) = p.get(i + 2) else {
                    return false;
                };
                if size > 0 && is_key(nal & 0x1f) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => match p.get(1) {
            // FU-A: start bit and original type.
            Some(&fu) => fu & 0x80 != 0 && is_key(fu & 0x1f),
            None => false,
        },
        t => is_key(t),
    }
}

/// AV1 (RTP payload format for AV1): N=1 in the aggregation header marks the
/// first packet of a coded video sequence, which starts with a keyframe.
fn av1_new_sequence(p: &[u8]) -> bool {
    match p.first() {
        Some(&b0) => b0 & 0x08 != 0 && b0 & 0x80 == 0,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframes() {
        // S=1 PID=0, no extension, frame header bit0 = 0: keyframe.
        assert!(Codec::Vp8.is_keyframe_start(&[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        // Same with inter frame bit.
        assert!(!Codec::Vp8.is_keyframe_start(&[0x10, 0x01]));
        // Not start of partition.
        assert!(!Codec::Vp8.is_keyframe_start(&[0x00, 0x00]));
        // X=1, I=1 with 15-bit picture id, L=1, T=1, then key header.
        assert!(Codec::Vp8.is_keyframe_start(&[0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x50]));
        assert!(!Codec::Vp8.is_keyframe_start(&[0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x51]));
        // Truncated descriptors are not keyframes and do not panic.
        assert!(!Codec::Vp8.is_keyframe_start(&[0x90, 0xe0, 0x81]));
        assert!(!Codec::Vp8.is_keyframe_start(&[]));
    }

    #[test]
    fn vp9_keyframes() {
        assert!(Codec::Vp9.is_keyframe_start(&[0x08]));
        assert!(!Codec::Vp9.is_keyframe_start(&[0x48]));
        // I=1 (7-bit pid), L=1, spatial layer 1: not the base of a keyframe.
        assert!(!Codec::Vp9.is_keyframe_start(&[0xa8, 0x05, 0x02]));
        assert!(Codec::Vp9.is_keyframe_start(&[0xa8, 0x05, 0x00]));
        assert!(!Codec::Vp9.is_keyframe_start(&[0xa8]));
    }

    #[test]
    fn h264_keyframes() {
        assert!(Codec::H264.is_keyframe_start(&[0x65, 0x88]));
        assert!(!Codec::H264.is_keyframe_start(&[0x41, 0x9a]));
        // STAP-A carrying SPS.
        assert!(Codec::H264.is_keyframe_start(&[0x78, 0x00, 0x02, 0x67, 0x42]));
        // STAP-A with a size running past the end.
        assert!(!Codec::H264.is_keyframe_start(&[0x78, 0xff, 0xff, 0x41]));
        // FU-A start of IDR, and continuation.
        assert!(Codec::H264.is_keyframe_start(&[0x7c, 0x85]));
        assert!(!Codec::H264.is_keyframe_start(&[0x7c, 0x05]));
    }

    #[test]
    fn av1_keyframes() {
        assert!(Codec::Av1.is_keyframe_start(&[0x18]));
        assert!(!Codec::Av1.is_keyframe_start(&[0x10]));
        assert!(!Codec::Av1.is_keyframe_start(&[0x88]));
    }
}
