//! A small HTTP/1.1 client for WHIP/WHEP signalling and tokens: one request
//! per connection (`Connection: close`), plain `http://` URLs. Enough for
//! loopback benchmarks; it keeps the load generator free of a TLS stack.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::BenchError;

/// An `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, BenchError> {
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| BenchError::Config(format!("`{s}`: only http:// URLs are supported")))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| BenchError::Config(format!("`{s}`: bad port")))?,
            ),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(BenchError::Config(format!("`{s}`: no host")));
        }
        Ok(Url {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// Resolves a `Location` header (absolute URL or absolute path).
    pub fn join(&self, location: &str) -> Result<Url, BenchError> {
        if location.starts_with("http://") {
            return Url::parse(location);
        }
        if location.starts_with('/') {
            return Ok(Url {
                path: location.to_owned(),
                ..self.clone()
            });
        }
        // Relative to the endpoint's directory.
        let dir = match self.path.rfind('/') {
            Some(i) => &self.path[..=i],
            None => "/",
        };
        Ok(Url {
            path: format!("{dir}{location}"),
            ..self.clone()
        })
    }

    pub async fn socket_addr(&self) -> Result<SocketAddr, BenchError> {
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| BenchError::Http(format!("resolve {}: {e}", self.host)))?
            .next()
            .ok_or_else(|| BenchError::Http(format!("{} does not resolve", self.host)))
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.path)
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

pub async fn request(
    method: &str,
    url: &Url,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response, BenchError> {
    let fut = async {
        let addr = url.socket_addr().await?;
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| BenchError::Http(format!("connect {url}: {e}")))?;
        let _ = s.set_nodelay(true);
        let mut req = format!(
            "{method} {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            url.path,
            url.host,
            url.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| BenchError::Http(format!("{method} {url}: {e}")))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .await
            .map_err(|e| BenchError::Http(format!("{method} {url}: {e}")))?;
        parse_response(&raw)
            .ok_or_else(|| BenchError::Http(format!("{method} {url}: malformed response")))
    };
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .map_err(|_| BenchError::Http(format!("{method} {url}: no answer in {TIMEOUT:?}")))?
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    let mut chunked = false;
    for l in lines {
        let (k, v) = l.split_once(':')?;
        let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
        if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
        headers.push((k, v));
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n")?;
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..n)?);
        s = rest.get(n + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:3000/whip/endpoint").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 3000, "/whip/endpoint")
        );
        assert_eq!(u.join("/whip/conn/1").unwrap().path, "/whip/conn/1");
        assert_eq!(u.join("conn/1").unwrap().path, "/whip/conn/1");
        assert_eq!(u.join("http://h:1/x").unwrap().host, "h");
        assert!(Url::parse("https://x/").is_err());
        assert!(Url::parse("http://:3/").is_err());
    }

    #[test]
    fn responses() {
        let r =
            parse_response(b"HTTP/1.1 201 Created\r\nLocation: /a\r\nContent-Length: 3\r\n\r\nv=0")
                .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.header("location"), Some("/a"));
        assert_eq!(r.body, "v=0");
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, "abcde");
        assert!(parse_response(b"garbage").is_none());
    }
}
