//! Typed values of the SIP headers the protocol core reads (RFC 3261
//! section 20 and the grammar of section 25.1; RFC 3581 for `rport`; RFC
//! 4028 for Session-Expires/Min-SE).
//!
//! - [`NameAddr`]: From, To, Contact, Route, Record-Route (`"Display"
//!   <uri>;params` or a bare `uri;params`, where the parameters then belong
//!   to the header, 20.10).
//! - [`Via`]: sent-protocol, sent-by and its parameters (branch, received,
//!   rport).
//! - [`CSeq`], [`SessionExpires`].
//!
//! Each parses from one header value (one element of a comma-separated
//! list) and displays in a canonical form.

use std::fmt;

use crate::message::{Method, ParseError};
use crate::uri::{is_token_byte, parse_hostport, Params, Uri};

/// The branch prefix of RFC 3261 transactions (8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// `[display-name] <uri>;params` (From, To, Contact, Route, Record-Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted.
    pub display_name: Option<String>,
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, ...).
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display_name: None,
            uri,
            params: Params::new(),
        }
    }

    /// Parses one value; `header` names the header in the error.
    pub fn parse(s: &str, header: &'static str) -> Result<NameAddr, ParseError> {
        let bad = || ParseError::BadHeader(header);
        let s = s.trim();
        let (display_name, rest) = if s.starts_with('"') {
            let (name, rest) = unquote_prefix(s).ok_or_else(bad)?;
            let rest = rest.trim_start();
            if !rest.starts_with('<') {
                return Err(bad());
            }
            (Some(name), rest)
        } else if let Some(lt) = s.find('<') {
            let name = s[..lt].trim();
            if name
                .chars()
                .any(|c| c.is_control() && c != '\t' || c == '"')
            {
                return Err(bad());
            }
            let name = (!name.is_empty()).then(|| name.to_string());
            (name, &s[lt..])
        } else {
            (None, s)
        };
        if let Some(inner) = rest.strip_prefix('<') {
            let (uri, after) = inner.split_once('>').ok_or_else(bad)?;
            let uri = Uri::parse(uri).map_err(|_| bad())?;
            let after = after.trim();
            if !after.is_empty() && !after.starts_with(';') {
                return Err(bad());
            }
            let params = Params::parse(after).map_err(|_| bad())?;
            Ok(NameAddr {
                display_name,
                uri,
                params,
            })
        } else {
            // addr-spec: parameters after the URI belong to the header.
            let (uri, params) = match rest.split_once(';') {
                Some((u, p)) => (u, Params::parse(p).map_err(|_| bad())?),
                None => (rest, Params::new()),
            };
            if uri.contains('?') || uri.contains(',') {
                return Err(bad());
            }
            let uri = Uri::parse(uri).map_err(|_| bad())?;
            Ok(NameAddr {
                display_name: None,
                uri,
                params,
            })
        }
    }

    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    pub fn set_tag(&mut self, tag: &str) {
        self.params.set("tag", Some(tag));
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.display_name {
            f.write_str("\"")?;
            for c in name.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// Reads a quoted string at the start of `s`: (unescaped content, rest).
fn unquote_prefix(s: &str) -> Option<(String, &str)> {
    let inner = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some((out, &inner[i + 1..]));
        } else {
            out.push(c);
        }
    }
    None
}

/// Removes the quotes (and escapes) of a quoted-string value, or returns a
/// token value as it is.
pub fn unquote(s: &str) -> String {
    let s = s.trim();
    match unquote_prefix(s) {
        Some((v, rest)) if rest.trim().is_empty() => v,
        _ => s.to_string(),
    }
}

/// One Via value (20.42): `SIP/2.0/UDP host:port;branch=...;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport, upper-cased (`UDP`, `TCP`, `TLS`, `WS`, `WSS`, ...).
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn new(transport: &str, host: &str, port: Option<u16>, branch: &str) -> Via {
        let mut params = Params::new();
        params.set("branch", Some(branch));
        Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_string(),
            port,
            params,
        }
    }

    pub fn parse(s: &str) -> Result<Via, ParseError> {
        let bad = || ParseError::BadHeader("Via");
        let s = s.trim();
        // sent-protocol: name SLASH version SLASH transport, LWS allowed around
        // the slashes; then LWS and sent-by.
        let mut parts = s.splitn(3, '/');
        let name = parts.next().ok_or_else(bad)?.trim();
        let version = parts.next().ok_or_else(bad)?.trim();
        let rest = parts.next().ok_or_else(bad)?.trim_start();
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return Err(bad());
        }
        let split = rest.find([' ', '\t']).ok_or_else(bad)?;
        let transport = &rest[..split];
        if transport.is_empty() || !transport.bytes().all(is_token_byte) {
            return Err(bad());
        }
        let rest = rest[split..].trim_start();
        let (sent_by, params) = match rest.split_once(';') {
            Some((a, p)) => (a, Params::parse(p).map_err(|_| bad())?),
            None => (rest, Params::new()),
        };
        let (host, port) = parse_hostport(sent_by.trim()).map_err(|_| bad())?;
        if let Some(Some(rport)) = params.get("rport") {
            if rport.parse::<u16>().is_err() {
                return Err(bad());
            }
        }
        Ok(Via {
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// Whether the branch has the RFC 3261 magic cookie.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    pub fn received(&self) -> Option<&str> {
        self.params.value("received")
    }

    /// `None`: no rport; `Some(None)`: `;rport` (asks for it, RFC 3581);
    /// `Some(Some(p))`: filled in by a server.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// `host[:port]`.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// Whether the transport is a reliable one (not UDP).
    pub fn is_reliable(&self) -> bool {
        !self.transport.eq_ignore_ascii_case("UDP")
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

/// CSeq (20.16): sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        let bad = || ParseError::BadHeader("CSeq");
        let mut it = s.split_whitespace();
        let seq = it.next().ok_or_else(bad)?;
        let method = it.next().ok_or_else(bad)?;
        if it.next().is_some() || seq.len() > 10 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        // 2**31 - 1 at most (8.1.1.5).
        let seq: u32 = seq.parse().map_err(|_| bad())?;
        if seq > 0x7fff_ffff {
            return Err(bad());
        }
        let method = Method::parse(method).map_err(|_| bad())?;
        Ok(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// Which side refreshes a session (RFC 4028 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// Session-Expires (RFC 4028 section 4): interval in seconds and refresher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionExpires {
    pub delta: u32,
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    pub fn parse(s: &str) -> Result<SessionExpires, ParseError> {
        let bad = || ParseError::BadHeader("Session-Expires");
        let (delta, params) = match s.split_once(';') {
            Some((d, p)) => (d.trim(), Params::parse(p).map_err(|_| bad())?),
            None => (s.trim(), Params::new()),
        };
        let delta = parse_delta(delta).ok_or_else(bad)?;
        let refresher = match params.value("refresher") {
            None => None,
            Some(r) if r.eq_ignore_ascii_case("uac") => Some(Refresher::Uac),
            Some(r) if r.eq_ignore_ascii_case("uas") => Some(Refresher::Uas),
            Some(_) => return Err(bad()),
        };
        Ok(SessionExpires { delta, refresher })
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.delta)?;
        if let Some(r) = self.refresher {
            write!(f, ";refresher={}", r.as_str())?;
        }
        Ok(())
    }
}

/// A delta-seconds value (digits only, fits in u32).
pub(crate) fn parse_delta(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Splits a header value into its comma-separated elements, outside quoted
/// strings and angle brackets (7.3.1).
pub fn split_list(s: &str) -> Vec<&str> {
    crate::uri::split_outside_quotes(s, ',', true)
        .into_iter()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let a = NameAddr::parse(
            "\"Bob \\\"B\\\" Smith\" <sip:bob@biloxi.com>;tag=a6c85cf",
            "From",
        )
        .unwrap();
        assert_eq!(a.display_name.as_deref(), Some("Bob \"B\" Smith"));
        assert_eq!(a.uri.user.as_deref(), Some("bob"));
        assert_eq!(a.tag(), Some("a6c85cf"));
        assert_eq!(
            a.to_string(),
            "\"Bob \\\"B\\\" Smith\" <sip:bob@biloxi.com>;tag=a6c85cf"
        );

        let b = NameAddr::parse(
            "Alice <sip:alice@atlanta.com;transport=tcp>;tag=1928",
            "From",
        )
        .unwrap();
        assert_eq!(b.display_name.as_deref(), Some("Alice"));
        assert_eq!(b.uri.transport(), Some("tcp"));
        assert_eq!(b.tag(), Some("1928"));

        // Bare addr-spec: the parameters are the header's.
        let c = NameAddr::parse("sip:carol@chicago.com;tag=xyz", "To").unwrap();
        assert!(c.uri.params.is_empty());
        assert_eq!(c.tag(), Some("xyz"));
        assert_eq!(c.to_string(), "<sip:carol@chicago.com>;tag=xyz");

        let d = NameAddr::parse("<sip:p1.example.com;lr>", "Route").unwrap();
        assert!(d.uri.is_loose_router());

        for bad in [
            "",
            "<sip:x",
            "\"unterminated <sip:a@b>",
            "<http://x>",
            "<sip:a@b> junk",
            "sip:a@b?x=y",
        ] {
            assert!(NameAddr::parse(bad, "To").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn via_forms() {
        let v = Via::parse("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "pc33.atlanta.com");
        assert_eq!(v.port, None);
        assert_eq!(v.branch(), Some("z9hG4bK776asdhds"));
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.rport(), Some(None));
        assert!(!v.is_reliable());

        let v = Via::parse(
            "SIP / 2.0 / tcp  [2001:db8::1]:5062 ;received=192.0.2.1;rport=5070;branch=z9hG4bKx",
        )
        .unwrap();
        assert_eq!(v.transport, "TCP");
        assert_eq!(v.host, "[2001:db8::1]");
        assert_eq!(v.port, Some(5062));
        assert_eq!(v.received(), Some("192.0.2.1"));
        assert_eq!(v.rport(), Some(Some(5070)));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/TCP [2001:db8::1]:5062;received=192.0.2.1;rport=5070;branch=z9hG4bKx"
        );

        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/3.0/UDP h",
            "SIP/2.0/UDP h:x",
            "HTTP/2.0/UDP h",
            "SIP/2.0/UDP h;rport=99999",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cseq_and_session_expires() {
        let c = CSeq::parse("314159 INVITE").unwrap();
        assert_eq!(c.seq, 314159);
        assert_eq!(c.method, Method::Invite);
        for bad in [
            "",
            "1",
            "-1 INVITE",
            "x INVITE",
            "1 INVITE extra",
            "4294967296 INVITE",
            "2147483648 BYE",
        ] {
            assert!(CSeq::parse(bad).is_err(), "{bad:?}");
        }
        let s = SessionExpires::parse("1800;refresher=uas").unwrap();
        assert_eq!(s.delta, 1800);
        assert_eq!(s.refresher, Some(Refresher::Uas));
        assert_eq!(s.to_string(), "1800;refresher=uas");
        assert!(SessionExpires::parse("90;refresher=both").is_err());
        assert!(SessionExpires::parse("-5").is_err());
    }

    #[test]
    fn list_splitting() {
        assert_eq!(
            split_list("<sip:a@b;x=1,2>, \"c, d\" <sip:c@d> ,sip:e@f"),
            vec!["<sip:a@b;x=1,2>", "\"c, d\" <sip:c@d>", "sip:e@f"]
        );
        assert_eq!(split_list(" , "), Vec::<&str>::new());
    }
}
