//! SIP, SIPS and tel URIs (RFC 3261 section 19.1, grammar in section 25.1;
//! RFC 3966 for `tel:`).
//!
//! `sip:user:password@host:port;uri-parameters?headers`. The user part is
//! kept as written (escapes are not decoded, so a URI displays exactly as it
//! was parsed); the scheme is lower-cased; an IPv6 host keeps its brackets.
//! A `tel:` URI has the number as its user and an empty host.

use std::fmt;

use thiserror::Error;

/// Why a URI did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UriError {
    #[error("unsupported URI scheme")]
    Scheme,
    #[error("URI has no host")]
    MissingHost,
    #[error("URI host is malformed")]
    Host,
    #[error("URI port is malformed")]
    Port,
    #[error("URI user part is malformed")]
    User,
    #[error("URI parameter is malformed")]
    Param,
    #[error("URI contains forbidden characters")]
    Chars,
}

/// URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
        }
    }
}

/// A list of `name[=value]` parameters (URI parameters, header parameters).
/// Names compare case-insensitively; order is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    pub fn new() -> Self {
        Params(Vec::new())
    }

    /// The parameter's value: `Some(None)` for a parameter without a value
    /// (`;lr`), `None` when the parameter is absent.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The parameter's value, if it has one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets (replacing) a parameter.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_string);
        if let Some(slot) = self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            slot.1 = value;
        } else {
            self.0.push((name.to_string(), value));
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `;a=b;c` (the leading `;` of each parameter included). Values
    /// may be quoted strings (kept with their quotes).
    pub(crate) fn parse(s: &str) -> Result<Params, UriError> {
        let mut out = Vec::new();
        for part in split_outside_quotes(s, ';', false) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (part, None),
            };
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(UriError::Param);
            }
            if let Some(v) = value {
                let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
                if v.is_empty() || (!quoted && !v.bytes().all(is_param_value_byte)) {
                    return Err(UriError::Param);
                }
            }
            out.push((name.to_string(), value.map(str::to_string)));
        }
        Ok(Params(out))
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// A SIP, SIPS or tel URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub scheme: Scheme,
    /// User part (for `tel:` the number), as written.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Host name, IPv4 address or bracketed IPv6 reference; empty for `tel:`.
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
    /// URI headers (`?name=value&...`), as written.
    pub headers: Vec<(String, String)>,
}

impl Uri {
    /// `sip:user@host`.
    pub fn sip(user: Option<&str>, host: &str, port: Option<u16>) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: user.map(str::to_string),
            password: None,
            host: host.to_string(),
            port,
            params: Params::new(),
            headers: Vec::new(),
        }
    }

    /// Parses a URI (without surrounding angle brackets).
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        let s = s.trim();
        if s.bytes()
            .any(|b| b <= b' ' || b == 0x7f || b == b'<' || b == b'>' || b == b'"')
        {
            return Err(UriError::Chars);
        }
        let (scheme, rest) = s.split_once(':').ok_or(UriError::Scheme)?;
        let scheme = if scheme.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            return Err(UriError::Scheme);
        };
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, parse_uri_headers(h)?),
            None => (rest, Vec::new()),
        };
        if scheme == Scheme::Tel {
            let (number, params) = match rest.split_once(';') {
                Some((n, p)) => (n, Params::parse(p)?),
                None => (rest, Params::new()),
            };
            if number.is_empty() || !number.bytes().all(is_user_byte) {
                return Err(UriError::User);
            }
            return Ok(Uri {
                scheme,
                user: Some(number.to_string()),
                password: None,
                host: String::new(),
                port: None,
                params,
                headers,
            });
        }
        // userinfo ends at the '@' (an '@' in the user part must be escaped).
        let (userinfo, hostpart) = match rest.split_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pw) = match u.split_once(':') {
                    Some((a, b)) => (a, Some(b)),
                    None => (u, None),
                };
                if user.is_empty() || !user.bytes().all(is_user_byte) {
                    return Err(UriError::User);
                }
                if let Some(pw) = pw {
                    if !pw.bytes().all(is_user_byte) {
                        return Err(UriError::User);
                    }
                }
                (Some(user.to_string()), pw.map(str::to_string))
            }
        };
        let (hostport, params) = match hostpart.split_once(';') {
            Some((h, p)) => (h, Params::parse(p)?),
            None => (hostpart, Params::new()),
        };
        let (host, port) = parse_hostport(hostport)?;
        Ok(Uri {
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// `host` or `host:port`.
    pub fn host_port(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// The `transport` URI parameter, if any.
    pub fn transport(&self) -> Option<&str> {
        self.params.value("transport")
    }

    /// The host as an IP address, if it is one.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }

    /// The host and port as a socket address when the host is an IP (port
    /// 5061 for `sips:`, 5060 otherwise when absent); a host name needs DNS
    /// (RFC 3263), which is the driver's business.
    pub fn socket_addr(&self) -> Option<std::net::SocketAddr> {
        let default = if self.scheme == Scheme::Sips {
            5061
        } else {
            5060
        };
        Some(std::net::SocketAddr::new(
            self.ip()?,
            self.port.unwrap_or(default),
        ))
    }

    /// Whether the URI has the `lr` parameter (a loose router, RFC 3261 16.12).
    pub fn is_loose_router(&self) -> bool {
        self.params.contains("lr")
    }
}

impl std::str::FromStr for Uri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Uri, UriError> {
        Uri::parse(s)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme.as_str())?;
        if self.scheme == Scheme::Tel {
            if let Some(u) = &self.user {
                f.write_str(u)?;
            }
        } else {
            if let Some(u) = &self.user {
                f.write_str(u)?;
                if let Some(p) = &self.password {
                    write!(f, ":{p}")?;
                }
                f.write_str("@")?;
            }
            f.write_str(&self.host)?;
            if let Some(p) = self.port {
                write!(f, ":{p}")?;
            }
        }
        write!(f, "{}", self.params)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// Parses `host[:port]`; IPv6 references are bracketed.
pub(crate) fn parse_hostport(s: &str) -> Result<(String, Option<u16>), UriError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(UriError::MissingHost);
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or(UriError::Host)?;
        if addr.is_empty() || addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UriError::Host);
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UriError::Port)?),
        };
        (format!("[{addr}]"), port)
    } else {
        let (h, p) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(UriError::Host);
        }
        (h.to_string(), p)
    };
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(UriError::Port);
            }
            Some(p.parse::<u16>().map_err(|_| UriError::Port)?)
        }
    };
    Ok((host, port))
}

fn parse_uri_headers(s: &str) -> Result<Vec<(String, String)>, UriError> {
    let mut out = Vec::new();
    for part in s.split('&') {
        if part.is_empty() {
            continue;
        }
        let (n, v) = part.split_once('=').ok_or(UriError::Param)?;
        if n.is_empty() {
            return Err(UriError::Param);
        }
        out.push((n.to_string(), v.to_string()));
    }
    Ok(out)
}

/// `token` characters (RFC 3261 25.1).
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Characters of an unquoted parameter value (token, plus what host names,
/// IPv6 references and escapes use).
fn is_param_value_byte(b: u8) -> bool {
    is_token_byte(b) || b"[]:/&$@".contains(&b)
}

/// Characters of the user part (unreserved, escaped, user-unreserved).
fn is_user_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()%&=+$,;?/#".contains(&b)
}

/// Splits on `sep` outside double-quoted strings (with backslash escapes)
/// and, when `angles`, outside `<...>` too.
pub(crate) fn split_outside_quotes(s: &str, sep: char, angles: bool) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    let mut in_angle = false;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if angles && c == '<' {
            in_angle = true;
        } else if angles && c == '>' {
            in_angle = false;
        } else if c == sep && !in_angle {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_sip_uri() {
        let u = Uri::parse(
            "sip:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=project&priority=urgent",
        )
        .unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, "atlanta.com");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport(), Some("tcp"));
        assert!(u.is_loose_router());
        assert_eq!(u.headers.len(), 2);
        assert_eq!(
            u.to_string(),
            "sip:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=project&priority=urgent"
        );
    }

    #[test]
    fn parses_ipv6_sips_and_tel() {
        let u = Uri::parse("sips:[2001:db8::10]:5061").unwrap();
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.host, "[2001:db8::10]");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.to_string(), "sips:[2001:db8::10]:5061");

        let t = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(t.scheme, Scheme::Tel);
        assert_eq!(t.user.as_deref(), Some("+1-201-555-0123"));
        assert_eq!(t.params.value("phone-context"), Some("example.com"));
        assert_eq!(
            t.to_string(),
            "tel:+1-201-555-0123;phone-context=example.com"
        );

        let u = Uri::parse("SIP:room1@10.0.0.1").unwrap();
        assert_eq!(u.to_string(), "sip:room1@10.0.0.1");
        let u = Uri::parse("sip:+1234;phone-context=x@gw.example.com;user=phone").unwrap();
        assert_eq!(u.user.as_deref(), Some("+1234;phone-context=x"));
        assert_eq!(u.params.value("user"), Some("phone"));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "sip:",
            "http://x",
            "sip:@host",
            "sip:user@",
            "sip:host:99999",
            "sip:host:-1",
            "sip:host:",
            "sip:[::1",
            "sip:[zz]",
            "sip:ho st",
            "sip:host;=x",
            "sip:a<b@host",
            "tel:",
            "sip:host?noequals",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn params_are_case_insensitive() {
        let u = Uri::parse("sip:h;Transport=UDP;LR").unwrap();
        assert_eq!(u.transport(), Some("UDP"));
        assert!(u.is_loose_router());
        let mut p = u.params.clone();
        p.set("transport", Some("tcp"));
        p.remove("lr");
        assert_eq!(p.to_string(), ";Transport=tcp");
    }
}
