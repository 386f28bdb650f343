//! Digest authentication for SIP (RFC 3261 section 22, which uses RFC 2617;
//! RFC 7616 for SHA-256 and SHA-512/256; RFC 8760 for their use in SIP).
//!
//! Server side ([`DigestServer`]): challenges carry a stateless nonce, the
//! hex time since the server's epoch and an HMAC-SHA-256 of it under the
//! server's secret, so no state is kept per challenge; a response is checked
//! for MD5, SHA-256 and SHA-512/256 (and their `-sess` forms) with
//! `qop=auth` or without qop (RFC 2069 style); a correct response on an
//! expired nonce is [`Verify::Stale`] (the client retries with the new
//! nonce without asking the user, 3.2.1 of RFC 2617). Nonce counts are not
//! tracked: a captured response can be replayed while its nonce lives (the
//! nonce lifetime bounds that).
//!
//! Client side: [`pick_challenge`] chooses the strongest challenge we can
//! answer, [`answer_challenge`] computes the credentials, and
//! [`authorize`] adds them to a request for a retry through a trunk.

use std::fmt;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};
use thiserror::Error;

use crate::header::{split_list, unquote};
use crate::message::{Method, Request, Response};
use crate::uri::Uri;

/// Errors of digest authentication.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("not a Digest header")]
    NotDigest,
    #[error("Digest header is missing {0}")]
    Missing(&'static str),
    #[error("malformed Digest parameter")]
    Malformed,
    #[error("unsupported digest algorithm")]
    Algorithm,
    #[error("no challenge we can answer")]
    NoUsableChallenge,
}

/// Digest algorithms (RFC 7616 section 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
    Sha512_256,
    Sha512_256Sess,
}

impl Algorithm {
    pub fn parse(s: &str) -> Result<Algorithm, AuthError> {
        let s = s.to_ascii_uppercase();
        Ok(match s.as_str() {
            "MD5" => Algorithm::Md5,
            "MD5-SESS" => Algorithm::Md5Sess,
            "SHA-256" => Algorithm::Sha256,
            "SHA-256-SESS" => Algorithm::Sha256Sess,
            "SHA-512-256" => Algorithm::Sha512_256,
            "SHA-512-256-SESS" => Algorithm::Sha512_256Sess,
            _ => return Err(AuthError::Algorithm),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    fn is_sess(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// Preference when several challenges are offered (higher is better).
    fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 2,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => 3,
        }
    }

    /// Lower-case hex of the hash of `data`.
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(data)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(data)),
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => hex(&Sha512_256::digest(data)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses `Digest a=b, c="d"` into its parameters (names lower-cased).
fn parse_digest_params(s: &str) -> Result<Vec<(String, String)>, AuthError> {
    let s = s.trim();
    let (scheme, rest) = s.split_once([' ', '\t']).ok_or(AuthError::NotDigest)?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthError::NotDigest);
    }
    let mut out = Vec::new();
    for item in split_list(rest) {
        let (n, v) = item.split_once('=').ok_or(AuthError::Malformed)?;
        let n = n.trim().to_ascii_lowercase();
        if n.is_empty() || out.len() >= 32 {
            return Err(AuthError::Malformed);
        }
        let v = v.trim();
        if v.starts_with('"') && (v.len() < 2 || !v.ends_with('"')) {
            return Err(AuthError::Malformed);
        }
        out.push((n, unquote(v)));
    }
    Ok(out)
}

fn param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Writes a value as a quoted string.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// A Digest challenge (WWW-Authenticate / Proxy-Authenticate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub stale: bool,
    pub algorithm: Algorithm,
    /// Offered qop values (empty: none, RFC 2069 style).
    pub qop: Vec<String>,
}

impl Challenge {
    pub fn parse(s: &str) -> Result<Challenge, AuthError> {
        let p = parse_digest_params(s)?;
        Ok(Challenge {
            realm: param(&p, "realm")
                .ok_or(AuthError::Missing("realm"))?
                .to_string(),
            nonce: param(&p, "nonce")
                .ok_or(AuthError::Missing("nonce"))?
                .to_string(),
            opaque: param(&p, "opaque").map(str::to_string),
            stale: param(&p, "stale").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            algorithm: param(&p, "algorithm").map_or(Ok(Algorithm::Md5), Algorithm::parse)?,
            qop: param(&p, "qop")
                .map(|q| {
                    q.split(',')
                        .map(|t| t.trim().to_ascii_lowercase())
                        .filter(|t| !t.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest realm={}, nonce={}",
            quoted(&self.realm),
            quoted(&self.nonce)
        )?;
        if let Some(o) = &self.opaque {
            write!(f, ", opaque={}", quoted(o))?;
        }
        if self.stale {
            f.write_str(", stale=TRUE")?;
        }
        write!(f, ", algorithm={}", self.algorithm.as_str())?;
        if !self.qop.is_empty() {
            write!(f, ", qop={}", quoted(&self.qop.join(",")))?;
        }
        Ok(())
    }
}

/// Digest credentials (Authorization / Proxy-Authorization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// The digest-uri, as sent.
    pub uri: String,
    /// The response, lower-case hex.
    pub response: String,
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
    pub qop: Option<String>,
    /// Nonce count, 8 hex digits as sent.
    pub nc: Option<String>,
}

impl Credentials {
    pub fn parse(s: &str) -> Result<Credentials, AuthError> {
        let p = parse_digest_params(s)?;
        let req = |n: &'static str| {
            param(&p, n)
                .map(str::to_string)
                .ok_or(AuthError::Missing(n))
        };
        if param(&p, "userhash").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(AuthError::Algorithm);
        }
        let c = Credentials {
            username: req("username")?,
            realm: req("realm")?,
            nonce: req("nonce")?,
            uri: req("uri")?,
            response: req("response")?.to_ascii_lowercase(),
            algorithm: param(&p, "algorithm").map_or(Ok(Algorithm::Md5), Algorithm::parse)?,
            cnonce: param(&p, "cnonce").map(str::to_string),
            opaque: param(&p, "opaque").map(str::to_string),
            qop: param(&p, "qop").map(|q| q.to_ascii_lowercase()),
            nc: param(&p, "nc").map(str::to_string),
        };
        if c.qop.is_some() && (c.cnonce.is_none() || c.nc.is_none()) {
            return Err(AuthError::Missing("cnonce/nc"));
        }
        if let Some(nc) = &c.nc {
            if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(AuthError::Malformed);
            }
        }
        Ok(c)
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}",
            quoted(&self.username),
            quoted(&self.realm),
            quoted(&self.nonce),
            quoted(&self.uri),
            quoted(&self.response),
            self.algorithm.as_str()
        )?;
        if let Some(c) = &self.cnonce {
            write!(f, ", cnonce={}", quoted(c))?;
        }
        if let Some(o) = &self.opaque {
            write!(f, ", opaque={}", quoted(o))?;
        }
        if let Some(q) = &self.qop {
            write!(f, ", qop={q}")?;
        }
        if let Some(nc) = &self.nc {
            write!(f, ", nc={nc}")?;
        }
        Ok(())
    }
}

/// H(A1) for a user (RFC 7616 3.4.2), before the `-sess` step.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// The `response` value (RFC 7616 3.4.1, RFC 2617 3.2.2.1) from H(A1) of
/// [`ha1`]; `qop` `None` is the RFC 2069 form.
#[allow(clippy::too_many_arguments)]
pub fn compute_response(
    algorithm: Algorithm,
    ha1_hex: &str,
    nonce: &str,
    nc: Option<&str>,
    cnonce: Option<&str>,
    qop: Option<&str>,
    method: &str,
    digest_uri: &str,
) -> String {
    let ha1 = if algorithm.is_sess() {
        algorithm.hash_hex(format!("{ha1_hex}:{nonce}:{}", cnonce.unwrap_or("")).as_bytes())
    } else {
        ha1_hex.to_string()
    };
    let ha2 = algorithm.hash_hex(format!("{method}:{digest_uri}").as_bytes());
    match qop {
        Some(q) => algorithm.hash_hex(
            format!(
                "{ha1}:{nonce}:{}:{}:{q}:{ha2}",
                nc.unwrap_or(""),
                cnonce.unwrap_or("")
            )
            .as_bytes(),
        ),
        None => algorithm.hash_hex(format!("{ha1}:{nonce}:{ha2}").as_bytes()),
    }
}

/// Chooses the challenge to answer: the strongest algorithm we support
/// whose qop list is empty or has `auth`.
pub fn pick_challenge(challenges: &[Challenge]) -> Option<&Challenge> {
    challenges
        .iter()
        .filter(|c| c.qop.is_empty() || c.qop.iter().any(|q| q == "auth"))
        .max_by_key(|c| c.algorithm.strength())
}

/// Answers a challenge for `method` on `uri` (client side). `cnonce` should
/// be unpredictable; `nc` counts the uses of this nonce, from 1.
pub fn answer_challenge(
    challenge: &Challenge,
    method: &Method,
    uri: &Uri,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> Credentials {
    let digest_uri = uri.to_string();
    let use_qop = challenge.qop.iter().any(|q| q == "auth");
    let nc_s = format!("{nc:08x}");
    let h1 = ha1(challenge.algorithm, username, &challenge.realm, password);
    let (nc_o, cnonce_o, qop_o) = if use_qop {
        (Some(nc_s.as_str()), Some(cnonce), Some("auth"))
    } else if challenge.algorithm.is_sess() {
        (None, Some(cnonce), None)
    } else {
        (None, None, None)
    };
    let response = compute_response(
        challenge.algorithm,
        &h1,
        &challenge.nonce,
        nc_o,
        cnonce_o,
        qop_o,
        method.as_str(),
        &digest_uri,
    );
    Credentials {
        username: username.to_string(),
        realm: challenge.realm.clone(),
        nonce: challenge.nonce.clone(),
        uri: digest_uri,
        response,
        algorithm: challenge.algorithm,
        cnonce: cnonce_o.map(str::to_string),
        opaque: challenge.opaque.clone(),
        qop: qop_o.map(str::to_string),
        nc: nc_o.map(str::to_string),
    }
}

/// Adds credentials answering the 401/407 `response` to `request` (which
/// the caller then sends again with a new branch and CSeq + 1, 22.2).
pub fn authorize(
    request: &mut Request,
    response: &Response,
    username: &str,
    password: &str,
    cnonce: &str,
) -> Result<(), AuthError> {
    let proxy = response.status == 407;
    let challenges = response.headers.challenges(proxy);
    let ch = pick_challenge(&challenges).ok_or(AuthError::NoUsableChallenge)?;
    let creds = answer_challenge(
        ch,
        &request.method,
        &request.uri,
        username,
        password,
        cnonce,
        1,
    );
    let name = if proxy {
        "Proxy-Authorization"
    } else {
        "Authorization"
    };
    request.headers.set(name, creds.to_string());
    Ok(())
}

/// Result of checking credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    Ok,
    /// The response was right but the nonce expired: challenge again with
    /// `stale=TRUE`.
    Stale,
    /// Wrong: challenge again (or 403). The reason is for logs.
    Failed(&'static str),
}

/// What [`DigestServer::check`] decided about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Authenticated as this user.
    Authorized(String),
    /// Send this 401 (or 407) with fresh challenges.
    Challenge(Response),
}

type HmacSha256 = Hmac<Sha256>;

/// The server side: makes challenges and verifies credentials.
#[derive(Debug, Clone)]
pub struct DigestServer {
    realm: String,
    secret: Vec<u8>,
    epoch: Instant,
    nonce_lifetime: Duration,
    algorithms: Vec<Algorithm>,
}

impl DigestServer {
    /// `epoch` is any fixed instant (the server's start): nonces count
    /// seconds from it. Challenges offer SHA-256 and MD5 (RFC 8760 section
    /// 2.4: the preferred one first); nonces live 5 minutes.
    pub fn new(realm: &str, secret: &[u8], epoch: Instant) -> DigestServer {
        DigestServer {
            realm: realm.to_string(),
            secret: secret.to_vec(),
            epoch,
            nonce_lifetime: Duration::from_secs(300),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        }
    }

    pub fn with_nonce_lifetime(mut self, d: Duration) -> Self {
        self.nonce_lifetime = d;
        self
    }

    /// The algorithms challenged with, in order (at least one).
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        if !algorithms.is_empty() {
            self.algorithms = algorithms.to_vec();
        }
        self
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn mac(&self, ts_hex: &str) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(ts_hex.as_bytes());
        mac.update(b":");
        mac.update(self.realm.as_bytes());
        mac
    }

    /// A nonce for `now`: `<seconds since epoch, hex>.<HMAC, 32 hex>`.
    pub fn nonce(&self, now: Instant) -> String {
        let ts = format!("{:x}", now.saturating_duration_since(self.epoch).as_secs());
        let tag = self.mac(&ts).finalize().into_bytes();
        format!("{ts}.{}", hex(&tag[..16]))
    }

    /// `Ok(age)` for a nonce we made, else why not.
    fn nonce_age(&self, nonce: &str, now: Instant) -> Result<Duration, &'static str> {
        let (ts, tag) = nonce.split_once('.').ok_or("malformed nonce")?;
        if ts.is_empty() || ts.len() > 16 || tag.len() != 32 {
            return Err("malformed nonce");
        }
        let secs = u64::from_str_radix(ts, 16).map_err(|_| "malformed nonce")?;
        let mut tag_bytes = [0u8; 16];
        for (i, b) in tag_bytes.iter_mut().enumerate() {
            let pair = tag.get(2 * i..2 * i + 2).ok_or("malformed nonce")?;
            *b = u8::from_str_radix(pair, 16).map_err(|_| "malformed nonce")?;
        }
        self.mac(ts)
            .verify_truncated_left(&tag_bytes)
            .map_err(|_| "nonce not ours")?;
        let now_secs = now.saturating_duration_since(self.epoch).as_secs();
        if secs > now_secs {
            return Err("nonce from the future");
        }
        Ok(Duration::from_secs(now_secs - secs))
    }

    /// One challenge per configured algorithm.
    pub fn challenges(&self, now: Instant, stale: bool) -> Vec<Challenge> {
        let nonce = self.nonce(now);
        self.algorithms
            .iter()
            .map(|&algorithm| Challenge {
                realm: self.realm.clone(),
                nonce: nonce.clone(),
                opaque: None,
                stale,
                algorithm,
                qop: vec!["auth".to_string()],
            })
            .collect()
    }

    /// A 401 (or 407 when `proxy`) to `req` with fresh challenges. The
    /// caller adds the To tag.
    pub fn challenge_response(
        &self,
        req: &Request,
        now: Instant,
        stale: bool,
        proxy: bool,
    ) -> Response {
        let mut r = Response::for_request(req, if proxy { 407 } else { 401 });
        let name = if proxy {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        for c in self.challenges(now, stale) {
            r.headers.push(name, c.to_string());
        }
        r
    }

    /// Checks credentials for a request with `method` and Request-URI
    /// `request_uri`, given the user's password.
    pub fn verify(
        &self,
        method: &Method,
        request_uri: &Uri,
        creds: &Credentials,
        password: &str,
        now: Instant,
    ) -> Verify {
        let h1 = ha1(creds.algorithm, &creds.username, &self.realm, password);
        self.verify_ha1(method, request_uri, creds, &h1, now)
    }

    /// Like [`DigestServer::verify`] with a stored H(A1) (for the
    /// credentials' algorithm) instead of the password.
    pub fn verify_ha1(
        &self,
        method: &Method,
        request_uri: &Uri,
        creds: &Credentials,
        ha1_hex: &str,
        now: Instant,
    ) -> Verify {
        if creds.realm != self.realm {
            return Verify::Failed("wrong realm");
        }
        if !self.algorithms.contains(&creds.algorithm) {
            return Verify::Failed("algorithm not offered");
        }
        if let Some(q) = &creds.qop {
            if q != "auth" {
                return Verify::Failed("unsupported qop");
            }
        }
        let uri_matches = creds.uri == request_uri.to_string()
            || Uri::parse(&creds.uri).is_ok_and(|u| &u == request_uri);
        if !uri_matches {
            return Verify::Failed("digest uri does not match the Request-URI");
        }
        let age = match self.nonce_age(&creds.nonce, now) {
            Ok(age) => age,
            Err(why) => return Verify::Failed(why),
        };
        let expected = compute_response(
            creds.algorithm,
            ha1_hex,
            &creds.nonce,
            creds.nc.as_deref(),
            creds.cnonce.as_deref(),
            creds.qop.as_deref(),
            method.as_str(),
            &creds.uri,
        );
        if !constant_time_eq(expected.as_bytes(), creds.response.as_bytes()) {
            return Verify::Failed("wrong response");
        }
        if age > self.nonce_lifetime {
            return Verify::Stale;
        }
        Verify::Ok
    }

    /// Authenticates a request: the credentials for our realm (in
    /// Authorization, or Proxy-Authorization when `proxy`) are checked with
    /// the password `password_of` gives for their user; anything else gives
    /// the 401/407 to send.
    pub fn check(
        &self,
        req: &Request,
        proxy: bool,
        now: Instant,
        password_of: impl Fn(&str) -> Option<String>,
    ) -> AuthOutcome {
        let mut stale = false;
        for creds in req.headers.credentials(proxy) {
            if creds.realm != self.realm {
                continue;
            }
            let Some(pw) = password_of(&creds.username) else {
                continue;
            };
            match self.verify(&req.method, &req.uri, &creds, &pw, now) {
                Verify::Ok => return AuthOutcome::Authorized(creds.username),
                Verify::Stale => stale = true,
                Verify::Failed(_) => {}
            }
        }
        AuthOutcome::Challenge(self.challenge_response(req, now, stale, proxy))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_known_answer() {
        // RFC 2617 section 3.5.
        let h1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let r = compute_response(
            Algorithm::Md5,
            &h1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some("00000001"),
            Some("0a4f113b"),
            Some("auth"),
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_known_answers() {
        // RFC 7616 section 3.9.1 (note: "Circle of Life", lower-case o).
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let run = |alg| {
            let h1 = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
            compute_response(
                alg,
                &h1,
                nonce,
                Some("00000001"),
                Some(cnonce),
                Some("auth"),
                "GET",
                "/dir/index.html",
            )
        };
        assert_eq!(run(Algorithm::Md5), "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(
            run(Algorithm::Sha256),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn challenge_and_credentials_round_trip() {
        let c = Challenge::parse(
            "Digest realm=\"atlanta.com\", domain=\"sip:ss1.carrier.com\", qop=\"auth,auth-int\", nonce=\"f84f1cec41e6cbe5aea9c8e88d359\", opaque=\"\", stale=FALSE, algorithm=MD5",
        )
        .unwrap();
        assert_eq!(c.realm, "atlanta.com");
        assert_eq!(c.qop, vec!["auth", "auth-int"]);
        assert_eq!(c.opaque.as_deref(), Some(""));
        assert!(!c.stale);
        assert_eq!(Challenge::parse(&c.to_string()).unwrap(), c);

        let uri = Uri::parse("sip:bob@biloxi.com").unwrap();
        let cr = answer_challenge(&c, &Method::Invite, &uri, "bob", "zanzibar", "0a4f113b", 1);
        assert_eq!(cr.qop.as_deref(), Some("auth"));
        assert_eq!(cr.nc.as_deref(), Some("00000001"));
        let back = Credentials::parse(&cr.to_string()).unwrap();
        assert_eq!(back, cr);

        for bad in [
            "Basic realm=\"x\"",
            "Digest",
            "Digest realm=\"x\"",
            "Digest realm=\"x\", nonce=\"y\", algorithm=SHA-1",
            "Digest realm=\"x, nonce=\"y\"",
            "Digest realm",
        ] {
            assert!(Challenge::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Credentials::parse(
            "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:x\", response=\"0\", qop=auth"
        )
        .is_err());
    }

    #[test]
    fn server_verifies_sha256_and_md5_and_detects_stale() {
        let t0 = Instant::now();
        let server = DigestServer::new("mediamesh", b"secret", t0);
        let uri = Uri::parse("sip:room1@example.com").unwrap();
        let now = t0 + Duration::from_secs(10);
        let chs = server.challenges(now, false);
        assert_eq!(chs.len(), 2);
        assert_eq!(pick_challenge(&chs).unwrap().algorithm, Algorithm::Sha256);
        for ch in &chs {
            let cr = answer_challenge(ch, &Method::Invite, &uri, "alice", "pw", "abc", 1);
            assert_eq!(
                server.verify(&Method::Invite, &uri, &cr, "pw", now),
                Verify::Ok
            );
            assert!(matches!(
                server.verify(&Method::Invite, &uri, &cr, "nope", now),
                Verify::Failed(_)
            ));
            assert!(matches!(
                server.verify(&Method::Bye, &uri, &cr, "pw", now),
                Verify::Failed(_)
            ));
            let other = Uri::parse("sip:room2@example.com").unwrap();
            assert!(matches!(
                server.verify(&Method::Invite, &other, &cr, "pw", now),
                Verify::Failed(_)
            ));
            let later = now + Duration::from_secs(301);
            assert_eq!(
                server.verify(&Method::Invite, &uri, &cr, "pw", later),
                Verify::Stale
            );
            let other_server = DigestServer::new("mediamesh", b"other", t0);
            assert!(matches!(
                other_server.verify(&Method::Invite, &uri, &cr, "pw", now),
                Verify::Failed(_)
            ));
        }
        // A forged nonce.
        let mut ch = chs[0].clone();
        ch.nonce = "a.00000000000000000000000000000000".into();
        let cr = answer_challenge(&ch, &Method::Invite, &uri, "alice", "pw", "abc", 1);
        assert!(matches!(
            server.verify(&Method::Invite, &uri, &cr, "pw", now),
            Verify::Failed(_)
        ));
        for n in [
            "",
            ".",
            "zz.00",
            "ffffffffffffffffff.00000000000000000000000000000000",
            "1.é0000000000000000000000000000000",
        ] {
            ch.nonce = n.into();
            let cr = answer_challenge(&ch, &Method::Invite, &uri, "alice", "pw", "abc", 1);
            assert!(matches!(
                server.verify(&Method::Invite, &uri, &cr, "pw", now),
                Verify::Failed(_)
            ));
        }
    }

    #[test]
    fn rfc2069_and_sess_forms_verify() {
        let t0 = Instant::now();
        let server =
            DigestServer::new("r", b"k", t0).with_algorithms(&[Algorithm::Md5Sess, Algorithm::Md5]);
        let uri = Uri::parse("sip:x@y").unwrap();
        for alg in [Algorithm::Md5Sess, Algorithm::Md5] {
            for qop in [vec![], vec!["auth".to_string()]] {
                let ch = Challenge {
                    realm: "r".into(),
                    nonce: server.nonce(t0),
                    opaque: Some("o".into()),
                    stale: false,
                    algorithm: alg,
                    qop,
                };
                let cr = answer_challenge(&ch, &Method::Invite, &uri, "u", "p", "cn", 7);
                let cr = Credentials::parse(&cr.to_string()).unwrap();
                assert_eq!(
                    server.verify(&Method::Invite, &uri, &cr, "p", t0),
                    Verify::Ok,
                    "{alg:?}"
                );
            }
        }
    }
}
