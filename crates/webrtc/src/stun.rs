//! Just enough STUN (RFC 8489) to route a binding request: the local part of
//! its USERNAME attribute, which is our ICE ufrag.

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;
const HEADER_LEN: usize = 20;

/// Whether a datagram is a STUN message (RFC 7983 demultiplexing plus the
/// magic cookie).
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] & 0xc0 == 0 && buf[4..8] == MAGIC_COOKIE
}

/// For a STUN message, the ufrag before the `:` of its USERNAME
/// (`local:remote` as seen by the receiver). `None` for anything else.
pub fn stun_local_ufrag(buf: &[u8]) -> Option<&str> {
    if !is_stun(buf) {
        return None;
    }
    let body_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let body = buf.get(HEADER_LEN..HEADER_LEN + body_len)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[i], body[i + 1]]);
        let len = usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
        let value = body.get(i + 4..i + 4 + len)?;
        if typ == ATTR_USERNAME {
            let s = std::str::from_utf8(value).ok()?;
            return s.split(':').next();
        }
        // Attributes are padded to 4 bytes.
        i += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn finds_username_after_other_attributes() {
        let m = binding_request(&[(0x8022, b"abcde"), (ATTR_USERNAME, b"srv1:cli")]);
        assert_eq!(stun_local_ufrag(&m), Some("srv1"));
    }

    #[test]
    fn rejects_non_stun_and_truncated() {
        let m = binding_request(&[(ATTR_USERNAME, b"srv1:cli")]);
        assert_eq!(stun_local_ufrag(&m[..m.len() - 3]), None);
        // RTP (version 2) and DTLS (content type 22) are not STUN.
        let mut rtp = m.clone();
        rtp[0] = 0x80;
        assert_eq!(stun_local_ufrag(&rtp), None);
        assert_eq!(stun_local_ufrag(&[22, 254, 253]), None);
        // An attribute length pointing past the end.
        let mut bad = binding_request(&[(ATTR_USERNAME, b"srv1:cli")]);
        bad[22] = 0xff;
        assert_eq!(stun_local_ufrag(&bad), None);
        assert_eq!(stun_local_ufrag(&binding_request(&[])), None);
    }
}
