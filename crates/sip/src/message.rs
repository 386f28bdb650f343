//! SIP messages: parsing and serialization of requests and responses
//! (RFC 3261 section 7, grammar in section 25; framing in 18.3; compact
//! header names in 7.3.3 and 20).
//!
//! - Start line: `METHOD Request-URI SIP/2.0` or `SIP/2.0 code reason`.
//!   Leading CRLFs are ignored (7.5).
//! - Headers: names are case-insensitive and stored in their canonical form
//!   (compact forms `i m f t v l c k s e o u r b x` expanded); folded lines
//!   (a line starting with SP or HTAB continues the previous one) are
//!   joined; a header may be repeated and may hold a comma-separated list,
//!   and [`Headers::list`] sees both the same way (7.3.1). Lines may end in
//!   CRLF or, leniently, in LF alone.
//! - Body: on a datagram, `Content-Length` is optional (the rest of the
//!   datagram is the body), and a body longer than it is cut to it (18.3); on
//!   a stream it is required, and [`StreamFramer`] splits the byte stream
//!   into messages with it. CRLF keep-alives (RFC 5626 3.5.1) are reported.
//!   Content-Length is not kept among the headers of a parsed message:
//!   serialization always writes it from the body.
//!
//! Parsing is strict about what the core needs and bounded
//! ([`MAX_MESSAGE_LEN`], [`MAX_HEADERS`]); a [`ParseError`] says what is
//! wrong in words fit for a 400 reason phrase (it never echoes input).
//! [`Request::validate`] checks the mandatory headers (8.1.1, 8.2.2) and
//! their syntax; typed accessors on [`Headers`] read single headers.

use std::fmt;

use thiserror::Error;

use crate::auth::{Challenge, Credentials};
use crate::header::{parse_delta, split_list, CSeq, NameAddr, SessionExpires, Via};
use crate::uri::{is_token_byte, Uri, UriError};

/// Longest message accepted (header section and body together).
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// Most header fields in one message (after unfolding).
pub const MAX_HEADERS: usize = 128;

/// What is wrong with a message. `Display` gives a short English reason,
/// usable as the reason phrase of the error response ([`ParseError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("Empty message")]
    Empty,
    #[error("Incomplete header section")]
    Truncated,
    #[error("Message too large")]
    TooLarge,
    #[error("Too many headers")]
    TooManyHeaders,
    #[error("Malformed start line")]
    StartLine,
    #[error("Unsupported SIP version")]
    Version,
    #[error("Malformed method")]
    Method,
    #[error("Malformed status code")]
    StatusCode,
    #[error("Malformed Request-URI: {0}")]
    RequestUri(UriError),
    #[error("Malformed header line")]
    HeaderLine,
    #[error("Header is not valid UTF-8")]
    NotUtf8,
    #[error("Malformed Content-Length")]
    ContentLength,
    #[error("Missing Content-Length")]
    MissingContentLength,
    #[error("Body shorter than Content-Length")]
    BodyTruncated,
    #[error("Missing {0} header")]
    MissingHeader(&'static str),
    #[error("Malformed {0} header")]
    BadHeader(&'static str),
    #[error("CSeq method does not match the request method")]
    CSeqMethod,
}

impl ParseError {
    /// The status code a server answers a request with this error with:
    /// 505 for the version, 416 for a URI scheme, 513 for the size, else 400.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Version => 505,
            ParseError::RequestUri(UriError::Scheme) => 416,
            ParseError::TooLarge => 513,
            _ => 400,
        }
    }
}

/// A SIP method (case-sensitive, 7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Update,
    Info,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other token.
    Other(String),
}

impl Method {
    pub fn parse(s: &str) -> Result<Method, ParseError> {
        Ok(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "UPDATE" => Method::Update,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            _ => {
                if s.is_empty() || s.len() > 32 || !s.bytes().all(is_token_byte) {
                    return Err(ParseError::Method);
                }
                Method::Other(s.to_string())
            }
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Canonical spelling of well-known header names, and the compact forms.
const KNOWN_HEADERS: &[(&str, Option<char>)] = &[
    ("Accept", None),
    ("Accept-Contact", Some('a')),
    ("Accept-Encoding", None),
    ("Accept-Language", None),
    ("Alert-Info", None),
    ("Allow", None),
    ("Allow-Events", Some('u')),
    ("Authentication-Info", None),
    ("Authorization", None),
    ("Call-ID", Some('i')),
    ("Call-Info", None),
    ("Contact", Some('m')),
    ("Content-Disposition", None),
    ("Content-Encoding", Some('e')),
    ("Content-Language", None),
    ("Content-Length", Some('l')),
    ("Content-Type", Some('c')),
    ("CSeq", None),
    ("Date", None),
    ("Error-Info", None),
    ("Event", Some('o')),
    ("Expires", None),
    ("From", Some('f')),
    ("In-Reply-To", None),
    ("Max-Forwards", None),
    ("MIME-Version", None),
    ("Min-Expires", None),
    ("Min-SE", None),
    ("Organization", None),
    ("P-Asserted-Identity", None),
    ("Priority", None),
    ("Proxy-Authenticate", None),
    ("Proxy-Authorization", None),
    ("Proxy-Require", None),
    ("RAck", None),
    ("Reason", None),
    ("Record-Route", None),
    ("Refer-To", Some('r')),
    ("Referred-By", Some('b')),
    ("Reject-Contact", Some('j')),
    ("Reply-To", None),
    ("Request-Disposition", Some('d')),
    ("Require", None),
    ("Retry-After", None),
    ("Route", None),
    ("RSeq", None),
    ("Server", None),
    ("Session-Expires", Some('x')),
    ("Subject", Some('s')),
    ("Supported", Some('k')),
    ("Timestamp", None),
    ("To", Some('t')),
    ("Unsupported", None),
    ("User-Agent", None),
    ("Via", Some('v')),
    ("Warning", None),
    ("WWW-Authenticate", None),
];

/// The canonical form of a header name: the full name for a compact form,
/// the usual spelling for a known name, else the name as written.
pub fn canonical_name(name: &str) -> String {
    if name.len() == 1 {
        let c = name.as_bytes()[0].to_ascii_lowercase() as char;
        if let Some((full, _)) = KNOWN_HEADERS.iter().find(|(_, short)| *short == Some(c)) {
            return full.to_string();
        }
    }
    match KNOWN_HEADERS
        .iter()
        .find(|(full, _)| full.eq_ignore_ascii_case(name))
    {
        Some((full, _)) => full.to_string(),
        None => name.to_string(),
    }
}

/// The header fields of a message, in order. Names are stored canonical
/// (see [`canonical_name`]) and compared case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All fields as (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The value of the first field with this name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// The values of every field with this name.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = canonical_name(name);
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(&name))
            .map(|(_, v)| v.as_str())
    }

    /// The elements of every field with this name, comma-separated lists
    /// split (7.3.1).
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.get_all(name).flat_map(split_list).collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Appends a field.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((canonical_name(name), value.into()));
    }

    /// Inserts a field before the first field of the same name (or first of
    /// all when there is none), as a new top Via.
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        let name = canonical_name(name);
        let at = self
            .0
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(&name))
            .unwrap_or(0);
        self.0.insert(at, (name, value.into()));
    }

    /// Replaces every field with this name by one (in the place of the first).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let name = canonical_name(name);
        match self
            .0
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some(at) => {
                self.0[at].1 = value.into();
                let mut i = 0;
                self.0.retain(|(n, _)| {
                    let keep = i <= at || !n.eq_ignore_ascii_case(&name);
                    i += 1;
                    keep
                });
            }
            None => self.0.push((name, value.into())),
        }
    }

    /// Removes every field with this name; returns how many.
    pub fn remove(&mut self, name: &str) -> usize {
        let name = canonical_name(name);
        let before = self.0.len();
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        before - self.0.len()
    }

    /// Removes the first element of the first Via (which may hold a list).
    pub fn pop_top_via(&mut self) {
        if let Some(at) = self.0.iter().position(|(n, _)| n == "Via") {
            let rest: Vec<String> = split_list(&self.0[at].1)
                .into_iter()
                .skip(1)
                .map(str::to_string)
                .collect();
            if rest.is_empty() {
                self.0.remove(at);
            } else {
                self.0[at].1 = rest.join(", ");
            }
        }
    }

    /// Replaces the top Via element.
    pub fn set_top_via(&mut self, via: &Via) {
        self.pop_top_via();
        self.push_front("Via", via.to_string());
    }

    fn required(&self, name: &'static str) -> Result<&str, ParseError> {
        self.get(name).ok_or(ParseError::MissingHeader(name))
    }

    /// Every Via element, top first.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.list("Via").into_iter().map(Via::parse).collect()
    }

    pub fn top_via(&self) -> Result<Via, ParseError> {
        let top = *self
            .list("Via")
            .first()
            .ok_or(ParseError::MissingHeader("Via"))?;
        Via::parse(top)
    }

    pub fn from(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.required("From")?, "From")
    }

    pub fn to(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.required("To")?, "To")
    }

    pub fn call_id(&self) -> Result<&str, ParseError> {
        let v = self.required("Call-ID")?.trim();
        if v.is_empty() || v.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(ParseError::BadHeader("Call-ID"));
        }
        Ok(v)
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        CSeq::parse(self.required("CSeq")?)
    }

    /// Contact elements (none when absent). The `*` wildcard (REGISTER only)
    /// is an error here.
    pub fn contacts(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.list("Contact")
            .into_iter()
            .map(|v| NameAddr::parse(v, "Contact"))
            .collect()
    }

    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        match self.get("Max-Forwards") {
            None => Ok(None),
            Some(v) => match parse_delta(v) {
                Some(n) if n <= 255 => Ok(Some(n)),
                _ => Err(ParseError::BadHeader("Max-Forwards")),
            },
        }
    }

    pub fn routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.list("Route")
            .into_iter()
            .map(|v| NameAddr::parse(v, "Route"))
            .collect()
    }

    pub fn record_routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.list("Record-Route")
            .into_iter()
            .map(|v| NameAddr::parse(v, "Record-Route"))
            .collect()
    }

    /// The media type of Content-Type, lower-cased, without parameters.
    pub fn content_type(&self) -> Option<String> {
        let v = self.get("Content-Type")?;
        let t = v.split(';').next().unwrap_or("").trim();
        (!t.is_empty()).then(|| t.to_ascii_lowercase())
    }

    pub fn session_expires(&self) -> Result<Option<SessionExpires>, ParseError> {
        self.get("Session-Expires")
            .map(SessionExpires::parse)
            .transpose()
    }

    pub fn min_se(&self) -> Result<Option<u32>, ParseError> {
        match self.get("Min-SE") {
            None => Ok(None),
            Some(v) => {
                // Min-SE may carry generic parameters.
                let d = v.split(';').next().unwrap_or("");
                parse_delta(d)
                    .map(Some)
                    .ok_or(ParseError::BadHeader("Min-SE"))
            }
        }
    }

    /// Option tags of Supported.
    pub fn supported(&self) -> Vec<&str> {
        self.list("Supported")
    }

    /// Option tags of Require.
    pub fn require(&self) -> Vec<&str> {
        self.list("Require")
    }

    pub fn supports(&self, tag: &str) -> bool {
        self.supported().iter().any(|t| t.eq_ignore_ascii_case(tag))
    }

    pub fn requires(&self, tag: &str) -> bool {
        self.require().iter().any(|t| t.eq_ignore_ascii_case(tag))
    }

    /// The challenges of WWW-Authenticate (or Proxy-Authenticate when
    /// `proxy`); values that do not parse are skipped.
    pub fn challenges(&self, proxy: bool) -> Vec<Challenge> {
        let name = if proxy {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        self.get_all(name)
            .filter_map(|v| Challenge::parse(v).ok())
            .collect()
    }

    /// The credentials of Authorization (or Proxy-Authorization when
    /// `proxy`); values that do not parse are skipped.
    pub fn credentials(&self, proxy: bool) -> Vec<Credentials> {
        let name = if proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        self.get_all(name)
            .filter_map(|v| Credentials::parse(v).ok())
            .collect()
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        for (n, v) in &self.0 {
            if n == "Content-Length" {
                continue;
            }
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Parses a request from a datagram.
    pub fn parse(datagram: &[u8]) -> Result<Request, ParseError> {
        match Message::parse(datagram)? {
            Message::Request(r) => Ok(r),
            Message::Response(_) => Err(ParseError::StartLine),
        }
    }

    /// Checks what every request must have (8.1.1): Via, From, To, Call-ID,
    /// CSeq whose method is the request's, a well-formed Max-Forwards if
    /// present, and well-formed Contact, Route, Session-Expires and Min-SE.
    pub fn validate(&self) -> Result<(), ParseError> {
        let vias = self.headers.vias()?;
        if vias.is_empty() {
            return Err(ParseError::MissingHeader("Via"));
        }
        self.headers.from()?;
        self.headers.to()?;
        self.headers.call_id()?;
        let cseq = self.headers.cseq()?;
        if cseq.method != self.method {
            return Err(ParseError::CSeqMethod);
        }
        self.headers.max_forwards()?;
        self.headers.contacts()?;
        self.headers.routes()?;
        self.headers.session_expires()?;
        self.headers.min_se()?;
        Ok(())
    }

    /// Parses what can be parsed of a request that failed [`Message::parse`]
    /// (its head, with an empty body, skipping malformed header lines), so
    /// that it can be answered with 400. `None` unless the start line is a
    /// request line and Via, From, To, Call-ID and CSeq are usable.
    pub fn salvage(bytes: &[u8]) -> Option<Request> {
        let bytes = skip_leading_crlf(bytes);
        let bytes = &bytes[..bytes.len().min(MAX_MESSAGE_LEN)];
        let head_end = find_head_end(bytes).map_or(bytes.len(), |(h, _)| h);
        let head = String::from_utf8_lossy(&bytes[..head_end]);
        let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let start = lines.next()?;
        let (method, uri) = parse_request_line(start).ok()?;
        let mut headers = Headers::new();
        for line in lines.take(MAX_HEADERS) {
            if let Some((n, v)) = line.split_once(':') {
                let n = n.trim_end();
                if !n.is_empty() && n.bytes().all(is_token_byte) {
                    headers.push(n, v.trim());
                }
            }
        }
        let req = Request {
            method,
            uri,
            headers,
            body: Vec::new(),
        };
        let h = &req.headers;
        (h.top_via().is_ok()
            && h.from().is_ok()
            && h.to().is_ok()
            && h.call_id().is_ok()
            && h.cseq().is_ok())
        .then_some(req)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(format!("{} {} SIP/2.0\r\n", self.method, self.uri).as_bytes());
        self.headers.write_to(&mut out);
        write_body(&mut out, &self.body);
        out
    }
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Response {
    /// A response with the default reason phrase and no headers.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            reason: reason_phrase(status).to_string(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// A response to `req` (8.2.6.2): Via (all of them), From, To, Call-ID
    /// and CSeq copied, and Timestamp for a 100.
    pub fn for_request(req: &Request, status: u16) -> Response {
        let mut r = Response::new(status);
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            for v in req.headers.get_all(name) {
                r.headers.push(name, v);
            }
        }
        if status == 100 {
            if let Some(ts) = req.headers.get("Timestamp") {
                r.headers.push("Timestamp", ts);
            }
        }
        r
    }

    /// Sets the tag of To (when it has none yet).
    pub fn set_to_tag(&mut self, tag: &str) {
        if let Ok(mut to) = self.headers.to() {
            if to.tag().is_none() {
                to.set_tag(tag);
                self.headers.set("To", to.to_string());
            }
        }
    }

    pub fn with_reason(mut self, reason: &str) -> Response {
        self.reason = sanitize_reason(reason);
        self
    }

    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn is_final(&self) -> bool {
        self.status >= 200
    }

    /// Parses a response from a datagram.
    pub fn parse(datagram: &[u8]) -> Result<Response, ParseError> {
        match Message::parse(datagram)? {
            Message::Response(r) => Ok(r),
            Message::Request(_) => Err(ParseError::StartLine),
        }
    }

    /// Checks the headers every response must have: Via, From, To, Call-ID,
    /// CSeq.
    pub fn validate(&self) -> Result<(), ParseError> {
        self.headers.top_via()?;
        self.headers.from()?;
        self.headers.to()?;
        self.headers.call_id()?;
        self.headers.cseq()?;
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(format!("SIP/2.0 {} {}\r\n", self.status, self.reason).as_bytes());
        self.headers.write_to(&mut out);
        write_body(&mut out, &self.body);
        out
    }
}

fn write_body(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
}

/// A reason phrase without control characters.
fn sanitize_reason(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(128)
        .collect()
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    /// Parses a message received in one datagram (UDP): Content-Length is
    /// optional; trailing bytes past it are ignored (18.3).
    pub fn parse(datagram: &[u8]) -> Result<Message, ParseError> {
        let bytes = skip_leading_crlf(datagram);
        if bytes.is_empty() {
            return Err(ParseError::Empty);
        }
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(ParseError::TooLarge);
        }
        let (head_end, body_start) = find_head_end(bytes).ok_or(ParseError::Truncated)?;
        let (mut msg, content_length) = parse_head(&bytes[..head_end])?;
        let avail = &bytes[body_start..];
        let body = match content_length {
            Some(n) if n > avail.len() => return Err(ParseError::BodyTruncated),
            Some(n) => &avail[..n],
            None => avail,
        };
        msg.set_body(body.to_vec());
        Ok(msg)
    }

    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    pub fn body(&self) -> &[u8] {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    fn set_body(&mut self, body: Vec<u8>) {
        match self {
            Message::Request(r) => r.body = body,
            Message::Response(r) => r.body = body,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Message {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Message {
        Message::Response(r)
    }
}

impl fmt::Display for Message {
    /// The message as text (a binary body shown lossily).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

fn skip_leading_crlf(mut b: &[u8]) -> &[u8] {
    while let Some(rest) = b.strip_prefix(b"\r\n").or_else(|| b.strip_prefix(b"\n")) {
        b = rest;
    }
    b
}

/// Finds the empty line ending the header section: (end of the head
/// without its final line break, start of the body).
fn find_head_end(b: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' {
            match b.get(i + 1) {
                Some(b'\n') => return Some((i, i + 2)),
                Some(b'\r') if b.get(i + 2) == Some(&b'\n') => return Some((i, i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fn parse_request_line(line: &str) -> Result<(Method, Uri), ParseError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::StartLine);
    };
    let method = Method::parse(method)?;
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(
            if version
                .get(..4)
                .is_some_and(|v| v.eq_ignore_ascii_case("SIP/"))
            {
                ParseError::Version
            } else {
                ParseError::StartLine
            },
        );
    }
    let uri = Uri::parse(uri).map_err(ParseError::RequestUri)?;
    Ok((method, uri))
}

/// Parses the start line and headers (without the final empty line);
/// returns the message with an empty body and the Content-Length, if any.
fn parse_head(head: &[u8]) -> Result<(Message, Option<usize>), ParseError> {
    let head = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next().ok_or(ParseError::Empty)?;
    if start.bytes().any(|b| b < b' ' && b != b'\t' || b == 0x7f) {
        return Err(ParseError::StartLine);
    }
    let mut msg = if let Some(rest) = start.strip_prefix("SIP/") {
        let mut parts = rest.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if version != "2.0" {
            return Err(ParseError::Version);
        }
        let code = parts.next().ok_or(ParseError::StartLine)?;
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::StatusCode);
        }
        let status: u16 = code.parse().map_err(|_| ParseError::StatusCode)?;
        if !(100..=699).contains(&status) {
            return Err(ParseError::StatusCode);
        }
        Message::Response(Response {
            status,
            reason: parts.next().unwrap_or("").to_string(),
            headers: Headers::new(),
            body: Vec::new(),
        })
    } else {
        let (method, uri) = parse_request_line(start)?;
        Message::Request(Request::new(method, uri))
    };

    let mut fields: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.bytes().any(|b| b < b' ' && b != b'\t' || b == 0x7f) {
            return Err(ParseError::HeaderLine);
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            // Folded continuation (7.3.1).
            let last = fields.last_mut().ok_or(ParseError::HeaderLine)?;
            let more = line.trim();
            if !more.is_empty() {
                if !last.1.is_empty() {
                    last.1.push(' ');
                }
                last.1.push_str(more);
            }
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::HeaderLine)?;
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(ParseError::HeaderLine);
        }
        if fields.len() >= MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        fields.push((canonical_name(name), value.trim().to_string()));
    }

    let mut content_length = None;
    for (n, v) in &fields {
        if n == "Content-Length" {
            let v = v.trim();
            if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::ContentLength);
            }
            let len: usize = v.parse().map_err(|_| ParseError::ContentLength)?;
            if len > MAX_MESSAGE_LEN {
                return Err(ParseError::TooLarge);
            }
            if content_length.is_some_and(|c| c != len) {
                return Err(ParseError::ContentLength);
            }
            content_length = Some(len);
        }
    }
    // The body's length is what counts from here on; serialization writes
    // Content-Length from it.
    fields.retain(|(n, _)| n != "Content-Length");
    *msg.headers_mut() = Headers(fields);
    Ok((msg, content_length))
}

/// One unit of a stream transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Message(Message),
    /// A CRLF CRLF keep-alive ping (RFC 5626 3.5.1); answer with one CRLF.
    KeepAlive,
}

/// Splits a stream (TCP, TLS) into messages by Content-Length (18.3).
/// After an error the stream cannot be resynchronized: close the
/// connection. Work is linear in the bytes received however they are split.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// How far (from `pos`) the header section was searched for its end.
    scanned: usize,
    /// The parsed head of the message being received: (message, body start
    /// and body length, both relative to `pos`).
    head: Option<(Message, usize, usize)>,
    failed: Option<ParseError>,
}

impl StreamFramer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes. Call [`StreamFramer::next_frame`] until it
    /// returns `Ok(None)` after each push; more than a few messages' worth of
    /// undrained bytes is an error.
    pub fn push(&mut self, data: &[u8]) -> Result<(), ParseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.len() + data.len() > 4 * MAX_MESSAGE_LEN {
            return Err(self.fail(ParseError::TooLarge));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Bytes buffered and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn fail(&mut self, e: ParseError) -> ParseError {
        self.failed = Some(e.clone());
        self.buf = Vec::new();
        self.pos = 0;
        self.head = None;
        e
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.scanned = 0;
        self.head = None;
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ParseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.head.is_none() {
            // CRLFs between messages: a double CRLF is a ping, single ones
            // are ignored (7.5).
            loop {
                let rest = &self.buf[self.pos..];
                if rest.starts_with(b"\r\n\r\n") {
                    self.consume(4);
                    return Ok(Some(Frame::KeepAlive));
                }
                if !rest.is_empty() && b"\r\n\r\n".starts_with(rest) {
                    return Ok(None);
                }
                if rest.starts_with(b"\r\n") {
                    self.consume(2);
                } else if rest.starts_with(b"\n") {
                    self.consume(1);
                } else {
                    break;
                }
            }
            let rest = &self.buf[self.pos..];
            if rest.is_empty() {
                return Ok(None);
            }
            // Resume the search where the last one stopped (less the 3 bytes
            // a blank line may have started in).
            let from = self.scanned.saturating_sub(3);
            let found = find_head_end(&rest[from..]).map(|(h, b)| (from + h, from + b));
            let Some((head_end, body_start)) = found else {
                self.scanned = rest.len();
                if rest.len() > MAX_MESSAGE_LEN {
                    return Err(self.fail(ParseError::TooLarge));
                }
                return Ok(None);
            };
            if body_start > MAX_MESSAGE_LEN {
                return Err(self.fail(ParseError::TooLarge));
            }
            let (msg, cl) = match parse_head(&rest[..head_end]) {
                Ok(v) => v,
                Err(e) => return Err(self.fail(e)),
            };
            let Some(cl) = cl else {
                return Err(self.fail(ParseError::MissingContentLength));
            };
            if body_start + cl > MAX_MESSAGE_LEN {
                return Err(self.fail(ParseError::TooLarge));
            }
            self.head = Some((msg, body_start, cl));
        }
        let Some((_, body_start, cl)) = &self.head else {
            return Ok(None);
        };
        let (body_start, cl) = (*body_start, *cl);
        if self.buf.len() - self.pos < body_start + cl {
            return Ok(None);
        }
        let body = self.buf[self.pos + body_start..self.pos + body_start + cl].to_vec();
        let Some((mut msg, _, _)) = self.head.take() else {
            return Ok(None);
        };
        msg.set_body(body);
        self.consume(body_start + cl);
        Ok(Some(Frame::Message(msg)))
    }
}

/// The default reason phrase of a status code (21).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Session Progress",
            2 => "OK",
            3 => "Redirect",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

#[cfg(test)]
mod tests;
