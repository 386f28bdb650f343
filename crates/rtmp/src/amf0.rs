//! AMF0 (Adobe "Action Message Format -- AMF 0", December 2007): the value
//! encoding of RTMP commands and data messages.
//!
//! Decoded: number, boolean, string, object, null, undefined, reference,
//! ECMA array, strict array, date, long string, unsupported, XML document and
//! typed object (section 2.2-2.18); object end (2.11) only as the terminator
//! of objects and ECMA arrays. Movieclip, recordset and the switch to AMF3
//! are refused. Nesting is limited to [`MAX_DEPTH`] levels; counts in the
//! input never size an allocation. Strings that are not UTF-8 are decoded
//! lossily (some encoders put Latin-1 in metadata).

use thiserror::Error;

/// Deepest nesting of objects and arrays we decode.
pub const MAX_DEPTH: usize = 32;

mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const MOVIECLIP: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0a;
    pub const DATE: u8 = 0x0b;
    pub const LONG_STRING: u8 = 0x0c;
    pub const UNSUPPORTED: u8 = 0x0d;
    pub const RECORDSET: u8 = 0x0e;
    pub const XML_DOCUMENT: u8 = 0x0f;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS: u8 = 0x11;
}

/// An AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    Number(f64),
    Boolean(bool),
    /// A string; encoded as a long string when longer than 65535 bytes.
    String(String),
    Object(Vec<(String, Amf0Value)>),
    Null,
    Undefined,
    /// Reference to an earlier complex value, by index (not resolved).
    Reference(u16),
    EcmaArray(Vec<(String, Amf0Value)>),
    StrictArray(Vec<Amf0Value>),
    /// Milliseconds since the epoch, and a time zone field (should be 0).
    Date {
        millis: f64,
        time_zone: i16,
    },
    /// A string that came with the long string marker.
    LongString(String),
    Unsupported,
    XmlDocument(String),
    TypedObject {
        class_name: String,
        properties: Vec<(String, Amf0Value)>,
    },
}

/// Why AMF0 input could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Amf0Error {
    #[error("AMF0 input ends in the middle of a value")]
    Truncated,
    #[error("unknown AMF0 type marker {0:#04x}")]
    UnknownMarker(u8),
    #[error("AMF0 type marker {0:#04x} ({1}) is not supported")]
    UnsupportedMarker(u8, &'static str),
    #[error("AMF0 values nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("AMF0 object end marker outside an object")]
    UnexpectedObjectEnd,
}

impl Amf0Value {
    /// The string of a String or LongString.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The properties of an Object, ECMA array or typed object.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(p)
            | Amf0Value::EcmaArray(p)
            | Amf0Value::TypedObject { properties: p, .. } => Some(p),
            _ => None,
        }
    }

    /// The first property named `key` of an Object, ECMA array or typed object.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// An Object from `(name, value)` pairs.
    pub fn object<K: Into<String>>(props: impl IntoIterator<Item = (K, Amf0Value)>) -> Self {
        Amf0Value::Object(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn string(s: impl Into<String>) -> Self {
        Amf0Value::String(s.into())
    }
}

/// Decodes one value from the front of `input`; returns it and the bytes used.
pub fn decode(input: &[u8]) -> Result<(Amf0Value, usize), Amf0Error> {
    let mut r = Reader { buf: input, pos: 0 };
    let v = r.value(0)?;
    Ok((v, r.pos))
}

/// Decodes values until `input` ends.
pub fn decode_all(input: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut r = Reader { buf: input, pos: 0 };
    let mut out = Vec::new();
    while r.pos < input.len() {
        out.push(r.value(0)?);
    }
    Ok(out)
}

/// Appends the encoding of `value`.
pub fn encode(value: &Amf0Value, out: &mut Vec<u8>) {
    match value {
        Amf0Value::Number(n) => {
            out.push(marker::NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf0Value::Boolean(b) => {
            out.push(marker::BOOLEAN);
            out.push(u8::from(*b));
        }
        Amf0Value::String(s) => {
            if s.len() <= usize::from(u16::MAX) {
                out.push(marker::STRING);
                short_string(s, out);
            } else {
                out.push(marker::LONG_STRING);
                long_string(s, out);
            }
        }
        Amf0Value::LongString(s) => {
            out.push(marker::LONG_STRING);
            long_string(s, out);
        }
        Amf0Value::XmlDocument(s) => {
            out.push(marker::XML_DOCUMENT);
            long_string(s, out);
        }
        Amf0Value::Object(props) => {
            out.push(marker::OBJECT);
            properties(props, out);
        }
        Amf0Value::EcmaArray(props) => {
            out.push(marker::ECMA_ARRAY);
            out.extend_from_slice(&(props.len().min(u32::MAX as usize) as u32).to_be_bytes());
            properties(props, out);
        }
        Amf0Value::TypedObject {
            class_name,
            properties: props,
        } => {
            out.push(marker::TYPED_OBJECT);
            short_string(class_name, out);
            properties(props, out);
        }
        Amf0Value::StrictArray(items) => {
            out.push(marker::STRICT_ARRAY);
            let n = items.len().min(u32::MAX as usize);
            out.extend_from_slice(&(n as u32).to_be_bytes());
            for item in &items[..n] {
                encode(item, out);
            }
        }
        Amf0Value::Null => out.push(marker::NULL),
        Amf0Value::Undefined => out.push(marker::UNDEFINED),
        Amf0Value::Unsupported => out.push(marker::UNSUPPORTED),
        Amf0Value::Reference(i) => {
            out.push(marker::REFERENCE);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Amf0Value::Date { millis, time_zone } => {
            out.push(marker::DATE);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&time_zone.to_be_bytes());
        }
    }
}

/// Encodes a sequence of values.
pub fn encode_all(values: &[Amf0Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode(v, &mut out);
    }
    out
}

/// A UTF-8 string with a 16-bit length, cut at a character boundary if longer.
fn short_string(s: &str, out: &mut Vec<u8>) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn long_string(s: &str, out: &mut Vec<u8>) {
    let mut end = s.len().min(u32::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u32).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn properties(props: &[(String, Amf0Value)], out: &mut Vec<u8>) {
    for (k, v) in props {
        short_string(k, out);
        encode(v, out);
    }
    out.extend_from_slice(&[0, 0, marker::OBJECT_END]);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Amf0Error> {
        let end = self.pos.checked_add(n).ok_or(Amf0Error::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(Amf0Error::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn string(&mut self, len: usize) -> Result<String, Amf0Error> {
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, Amf0Error> {
        if depth > MAX_DEPTH {
            return Err(Amf0Error::TooDeep);
        }
        let m = self.u8()?;
        Ok(match m {
            marker::NUMBER => Amf0Value::Number(self.f64()?),
            marker::BOOLEAN => Amf0Value::Boolean(self.u8()? != 0),
            marker::STRING => {
                let n = self.u16()?;
                Amf0Value::String(self.string(usize::from(n))?)
            }
            marker::LONG_STRING => {
                let n = self.u32()?;
                Amf0Value::LongString(self.string(n as usize)?)
            }
            marker::XML_DOCUMENT => {
                let n = self.u32()?;
                Amf0Value::XmlDocument(self.string(n as usize)?)
            }
            marker::OBJECT => Amf0Value::Object(self.properties(depth)?),
            marker::ECMA_ARRAY => {
                // The count is only a hint (encoders get it wrong); the
                // object end marker ends the array.
                self.u32()?;
                Amf0Value::EcmaArray(self.properties(depth)?)
            }
            marker::TYPED_OBJECT => {
                let n = self.u16()?;
                let class_name = self.string(usize::from(n))?;
                Amf0Value::TypedObject {
                    class_name,
                    properties: self.properties(depth)?,
                }
            }
            marker::STRICT_ARRAY => {
                let n = self.u32()? as usize;
                // Every value takes at least one byte.
                if n > self.buf.len() - self.pos {
                    return Err(Amf0Error::Truncated);
                }
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(items)
            }
            marker::NULL => Amf0Value::Null,
            marker::UNDEFINED => Amf0Value::Undefined,
            marker::UNSUPPORTED => Amf0Value::Unsupported,
            marker::REFERENCE => Amf0Value::Reference(self.u16()?),
            marker::DATE => {
                let millis = self.f64()?;
                let tz = self.u16()?;
                Amf0Value::Date {
                    millis,
                    time_zone: tz as i16,
                }
            }
            marker::OBJECT_END => return Err(Amf0Error::UnexpectedObjectEnd),
            marker::MOVIECLIP => return Err(Amf0Error::UnsupportedMarker(m, "movieclip")),
            marker::RECORDSET => return Err(Amf0Error::UnsupportedMarker(m, "recordset")),
            marker::AVMPLUS => return Err(Amf0Error::UnsupportedMarker(m, "switch to AMF3")),
            _ => return Err(Amf0Error::UnknownMarker(m)),
        })
    }

    /// Properties up to the empty-name + object end terminator.
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            let n = self.u16()?;
            if n == 0 {
                // An empty name: the object end marker should follow. Some
                // encoders write an empty key with a real value; accept it.
                if self.buf.get(self.pos) == Some(&marker::OBJECT_END) {
                    self.pos += 1;
                    return Ok(props);
                }
                let v = self.value(depth + 1)?;
                props.push((String::new(), v));
                continue;
            }
            let key = self.string(usize::from(n))?;
            let v = self.value(depth + 1)?;
            props.push((key, v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediamesh_testkit::Rng;

    fn sample() -> Vec<Amf0Value> {
        vec![
            Amf0Value::string("connect"),
            Amf0Value::Number(1.0),
            Amf0Value::object([
                ("app", Amf0Value::string("live")),
                ("tcUrl", Amf0Value::string("rtmp://h/live")),
                ("fpad", Amf0Value::Boolean(false)),
                ("capabilities", Amf0Value::Number(239.0)),
                ("nothing", Amf0Value::Null),
                ("undef", Amf0Value::Undefined),
                (
                    "fourCcList",
                    Amf0Value::StrictArray(vec![
                        Amf0Value::string("av01"),
                        Amf0Value::string("hvc1"),
                    ]),
                ),
            ]),
            Amf0Value::EcmaArray(vec![
                ("width".into(), Amf0Value::Number(1280.0)),
                ("encoder".into(), Amf0Value::string("Lavf61")),
                (
                    "nested".into(),
                    Amf0Value::object([("x", Amf0Value::Boolean(true))]),
                ),
            ]),
            Amf0Value::Date {
                millis: 1.7e12,
                time_zone: -60,
            },
            Amf0Value::LongString("long".into()),
            Amf0Value::XmlDocument("<a/>".into()),
            Amf0Value::TypedObject {
                class_name: "Cls".into(),
                properties: vec![("k".into(), Amf0Value::Number(-0.5))],
            },
            Amf0Value::Reference(3),
            Amf0Value::Unsupported,
            Amf0Value::string("héllo ✓"),
        ]
    }

    #[test]
    fn round_trip() {
        let values = sample();
        let bytes = encode_all(&values);
        assert_eq!(decode_all(&bytes).unwrap(), values);
        let (first, used) = decode(&bytes).unwrap();
        assert_eq!(first, values[0]);
        assert_eq!(used, 1 + 2 + 7);
    }

    #[test]
    fn known_bytes() {
        // "_result", 1.0, null
        let bytes = encode_all(&[
            Amf0Value::string("_result"),
            Amf0Value::Number(1.0),
            Amf0Value::Null,
        ]);
        assert_eq!(
            bytes,
            [
                2, 0, 7, b'_', b'r', b'e', b's', b'u', b'l', b't', 0, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0,
                5
            ]
        );
        let obj = encode_all(&[Amf0Value::object([("a", Amf0Value::Boolean(true))])]);
        assert_eq!(obj, [3, 0, 1, b'a', 1, 1, 0, 0, 9]);
    }

    #[test]
    fn long_strings_switch_marker() {
        let s = "x".repeat(70_000);
        let bytes = encode_all(&[Amf0Value::String(s.clone())]);
        assert_eq!(bytes[0], marker::LONG_STRING);
        assert_eq!(decode_all(&bytes).unwrap(), vec![Amf0Value::LongString(s)]);
    }

    #[test]
    fn ecma_array_count_is_a_hint() {
        let mut bytes = vec![marker::ECMA_ARRAY, 0xff, 0xff, 0xff, 0xff];
        bytes.extend_from_slice(&[0, 1, b'a', 5, 0, 0, 9]);
        assert_eq!(
            decode_all(&bytes).unwrap(),
            vec![Amf0Value::EcmaArray(vec![("a".into(), Amf0Value::Null)])]
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(decode(&[]), Err(Amf0Error::Truncated));
        assert_eq!(decode(&[0, 1, 2]), Err(Amf0Error::Truncated));
        assert_eq!(decode(&[2, 0, 5, b'a']), Err(Amf0Error::Truncated));
        assert_eq!(decode(&[3, 0, 1, b'a', 5]), Err(Amf0Error::Truncated));
        assert_eq!(decode(&[9]), Err(Amf0Error::UnexpectedObjectEnd));
        assert_eq!(decode(&[0x12]), Err(Amf0Error::UnknownMarker(0x12)));
        assert!(matches!(
            decode(&[0x11, 0]),
            Err(Amf0Error::UnsupportedMarker(0x11, _))
        ));
        // A strict array claiming 4 billion items fails without allocating.
        assert_eq!(
            decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 5]),
            Err(Amf0Error::Truncated)
        );
        assert_eq!(
            decode(&[0x0c, 0xff, 0xff, 0xff, 0xff, 5]),
            Err(Amf0Error::Truncated)
        );
        // Invalid UTF-8 is replaced, not an error.
        assert_eq!(
            decode(&[2, 0, 2, 0xe9, b'a']).unwrap().0,
            Amf0Value::string("\u{fffd}a")
        );
    }

    #[test]
    fn depth_limit() {
        let mut v = Amf0Value::Null;
        for _ in 0..MAX_DEPTH {
            v = Amf0Value::StrictArray(vec![v]);
        }
        let ok = encode_all(&[v.clone()]);
        assert_eq!(decode_all(&ok).unwrap(), vec![v.clone()]);
        let deep = encode_all(&[Amf0Value::object([("k", v)])]);
        assert_eq!(decode(&deep), Err(Amf0Error::TooDeep));
        // 100k nested objects: an error, not a stack overflow.
        let mut bomb = Vec::new();
        for _ in 0..100_000 {
            bomb.extend_from_slice(&[3, 0, 1, b'k']);
        }
        assert_eq!(decode(&bomb), Err(Amf0Error::TooDeep));
    }

    #[test]
    fn random_and_truncated_input_never_panics() {
        let full = encode_all(&sample());
        for cut in 0..full.len() {
            let _ = decode_all(&full[..cut]);
        }
        let mut rng = Rng::new(3);
        for _ in 0..5000 {
            let mut b = full.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                b[i] = rng.byte();
            }
            let _ = decode_all(&b);
            let n = rng.below(64);
            let r: Vec<u8> = (0..n).map(|_| rng.byte() % 20).collect();
            let _ = decode_all(&r);
        }
    }
}
