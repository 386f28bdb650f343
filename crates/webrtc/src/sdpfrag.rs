//! SDP fragments for trickle ICE and ICE restart (RFC 8840, as used by WHIP
//! and WHEP PATCH requests).

/// What a PATCH body carries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SdpFrag {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    /// `candidate:...` attribute values, in order.
    pub candidates: Vec<String>,
    pub end_of_candidates: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpFragError {
    #[error("line {0}: not an SDP line (expected `x=value`)")]
    NotSdp(usize),
    #[error("line {0}: empty candidate")]
    EmptyCandidate(usize),
    #[error("ice-ufrag and ice-pwd must come together")]
    HalfCredentials,
    #[error("conflicting ice-ufrag values in one fragment")]
    ConflictingUfrag,
}

impl SdpFrag {
    pub fn parse(body: &str) -> Result<SdpFrag, SdpFragError> {
        let mut f = SdpFrag::default();
        for (n, raw) in body.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let b = line.as_bytes();
            if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
                return Err(SdpFragError::NotSdp(n + 1));
            }
            let Some(attr) = line.strip_prefix("a=") else {
                // m=, c= and others carry nothing for ICE here.
                continue;
            };
            if let Some(v) = attr.strip_prefix("ice-ufrag:") {
                let v = v.trim().to_owned();
                if f.ufrag.as_ref().is_some_and(|u| *u != v) {
                    return Err(SdpFragError::ConflictingUfrag);
                }
                f.ufrag = Some(v);
            } else if let Some(v) = attr.strip_prefix("ice-pwd:") {
                f.pwd = Some(v.trim().to_owned());
            } else if attr.starts_with("candidate:") {
                if attr.len() == "candidate:".len() {
                    return Err(SdpFragError::EmptyCandidate(n + 1));
                }
                f.candidates.push(attr.to_owned());
            } else if attr == "end-of-candidates" {
                f.end_of_candidates = true;
            }
        }
        if f.ufrag.is_some() != f.pwd.is_some() {
            return Err(SdpFragError::HalfCredentials);
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_several_candidates_and_end() {
        let body = "a=ice-options:trickle ice2\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw\r\na=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw\r\na=end-of-candidates\r\n";
        let f = SdpFrag::parse(body).unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.pwd.as_deref(), Some("P2uYro0UCOQ4zxjKXaWCBui1"));
        assert_eq!(f.candidates.len(), 2);
        assert!(f.candidates[1].contains("198.51.100.2"));
        assert!(f.end_of_candidates);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(SdpFrag::parse("hello"), Err(SdpFragError::NotSdp(1)));
        assert_eq!(
            SdpFrag::parse("a=ice-ufrag:x\n"),
            Err(SdpFragError::HalfCredentials)
        );
        assert_eq!(
            SdpFrag::parse("a=ice-ufrag:x\na=ice-pwd:y\na=ice-ufrag:z"),
            Err(SdpFragError::ConflictingUfrag)
        );
        assert_eq!(
            SdpFrag::parse("a=candidate:"),
            Err(SdpFragError::EmptyCandidate(1))
        );
        assert_eq!(SdpFrag::parse("").unwrap(), SdpFrag::default());
    }
}
