//! The RTMP chunk stream (Adobe RTMP specification 1.0, section 5.3): a
//! [`ChunkReader`] that reassembles messages from chunks and a
//! [`ChunkWriter`] that splits ours into chunks.
//!
//! Reader: basic headers in the 1-, 2- and 3-byte forms (chunk stream ids
//! 2..=65599), message headers of types 0-3 (5.3.1.2), extended timestamps
//! (5.3.1.3), per-chunk-stream state, interleaved messages, and the two
//! protocol control messages that belong to this layer (5.4.1 Set Chunk Size,
//! 5.4.2 Abort), which it applies itself and does not return.
//!
//! Timestamps: a type 0 header carries the absolute timestamp, types 1 and 2 a
//! delta, and a type 3 chunk that starts a message adds the chunk stream's last
//! delta again (for that purpose a type 0 header's timestamp counts as the
//! delta, as ffmpeg, librtmp and GStreamer write it).
//!
//! Extended timestamps in type 3 chunks: the 2012 text says type 3 chunks never
//! carry one, but Adobe's servers and every common encoder repeat the 4-byte
//! extended timestamp in type 3 chunks of a chunk stream whose last header
//! used one. We expect it there; in a chunk that continues a message we accept
//! its absence too (when the 4 bytes differ from the stored value they are
//! payload), as tolerant servers do.
//!
//! Memory is bounded: messages longer than `max_message_len` are refused, as
//! are more than `max_chunk_streams` chunk streams, and partial messages may not
//! together hold more than twice the message limit. Buffers grow with the bytes
//! that actually arrive, never with a length a header claims.

use std::collections::HashMap;

use thiserror::Error;

/// Message type ids (RTMP 1.0 sections 5.4, 6.2, 7.1).
pub mod msg_type {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// The chunk size both sides start with (5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size that makes a difference: message lengths are 24-bit.
pub const MAX_CHUNK_SIZE: u32 = 0xFF_FFFF;
/// Largest chunk stream id (3-byte form: 65535 + 64).
pub const MAX_CSID: u32 = 65599;
const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;

/// Errors of the chunk layer. All of them end the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    #[error("chunk stream {csid}: header type {fmt} without an earlier type 0 header")]
    NoPreviousHeader { csid: u32, fmt: u8 },
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge { len: u32, max: u32 },
    #[error("more than {0} chunk streams in use")]
    TooManyChunkStreams(usize),
    #[error("partial messages exceed {0} bytes in total")]
    TooMuchBuffered(usize),
    #[error("invalid Set Chunk Size {0}")]
    InvalidChunkSize(u32),
    #[error("protocol control message type {type_id} is too short ({len} bytes)")]
    ShortControlMessage { type_id: u8, len: usize },
    #[error("chunk stream id {0} cannot be written (valid: 2..=65599)")]
    InvalidCsid(u32),
}

/// One reassembled RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub csid: u32,
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Vec<u8>,
}

/// Limits of a [`ChunkReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    pub max_message_len: u32,
    pub max_chunk_streams: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_message_len: 4 << 20,
            max_chunk_streams: 64,
        }
    }
}

#[derive(Debug, Default)]
struct ChunkStreamState {
    /// Timestamp of the last message started on this chunk stream.
    timestamp: u32,
    /// Last timestamp field (the delta; for type 0 the absolute value).
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last header used the extended timestamp field.
    extended: bool,
    /// Payload of the message being reassembled, if any.
    partial: Option<Vec<u8>>,
}

/// Reassembles messages from the chunk stream. Feed bytes with
/// [`ChunkReader::push`], then take messages with [`ChunkReader::next_message`]
/// until it returns `None`. Bytes may be split anywhere.
#[derive(Debug)]
pub struct ChunkReader {
    buf: Vec<u8>,
    pos: usize,
    chunk_size: u32,
    limits: ChunkLimits,
    streams: HashMap<u32, ChunkStreamState>,
    buffered: usize,
    aborted: u64,
}

impl Default for ChunkReader {
    fn default() -> Self {
        Self::new(ChunkLimits::default())
    }
}

/// A parsed chunk header, before it is applied.
struct Header {
    fmt: u8,
    csid: u32,
    /// Bytes of basic + message header + extended timestamp.
    len: usize,
    ts_field: u32,
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

impl ChunkReader {
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkReader {
            buf: Vec::new(),
            pos: 0,
            chunk_size: DEFAULT_CHUNK_SIZE,
            limits,
            streams: HashMap::new(),
            buffered: 0,
            aborted: 0,
        }
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Messages dropped by Abort.
    pub fn aborted_messages(&self) -> u64 {
        self.aborted
    }

    /// Appends received bytes.
    pub fn push(&mut self, input: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(input);
    }

    /// The next complete message, `Ok(None)` if more bytes are needed. Set
    /// Chunk Size and Abort are applied here and not returned.
    pub fn next_message(&mut self) -> Result<Option<Message>, ChunkError> {
        loop {
            let Some(msg) = self.next_chunk()? else {
                return Ok(None);
            };
            match msg.type_id {
                msg_type::SET_CHUNK_SIZE => {
                    let v = read_u32_control(&msg)? & 0x7FFF_FFFF;
                    if v == 0 {
                        return Err(ChunkError::InvalidChunkSize(v));
                    }
                    self.chunk_size = v.min(MAX_CHUNK_SIZE);
                }
                msg_type::ABORT => {
                    let csid = read_u32_control(&msg)?;
                    if let Some(st) = self.streams.get_mut(&csid) {
                        if let Some(p) = st.partial.take() {
                            self.buffered -= p.len();
                            self.aborted += 1;
                        }
                    }
                }
                _ => return Ok(Some(msg)),
            }
        }
    }

    /// Parses the header at the read position, or `None` if incomplete.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, ChunkError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut off) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(&b) => (64 + u32::from(b), 2),
                None => return Ok(None),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&lo), Some(&hi)) => (64 + u32::from(lo) + 256 * u32::from(hi), 3),
                _ => return Ok(None),
            },
            n => (u32::from(n), 1),
        };
        let prev = self.streams.get(&csid);
        if fmt != 0 && prev.is_none() {
            return Err(ChunkError::NoPreviousHeader { csid, fmt });
        }
        let mh_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(mh) = buf.get(off..off + mh_len) else {
            return Ok(None);
        };
        off += mh_len;
        let mut h = Header {
            fmt,
            csid,
            len: 0,
            ts_field: 0,
            extended: false,
            length: prev.map_or(0, |p| p.length),
            type_id: prev.map_or(0, |p| p.type_id),
            stream_id: prev.map_or(0, |p| p.stream_id),
        };
        if fmt <= 2 {
            h.ts_field = be24(&mh[0..3]);
        }
        if fmt <= 1 {
            h.length = be24(&mh[3..6]);
            h.type_id = mh[6];
        }
        if fmt == 0 {
            h.stream_id = u32::from_le_bytes([mh[7], mh[8], mh[9], mh[10]]);
        }
        if fmt <= 2 {
            if h.ts_field == EXTENDED_TIMESTAMP {
                let Some(ext) = buf.get(off..off + 4) else {
                    return Ok(None);
                };
                h.ts_field = be32(ext);
                h.extended = true;
                off += 4;
            }
        } else if let Some(p) = prev {
            h.ts_field = p.delta;
            if p.extended {
                let Some(ext) = buf.get(off..off + 4) else {
                    return Ok(None);
                };
                // Continuation chunk: the repeated field may be missing.
                if p.partial.is_none() || be32(ext) == p.delta {
                    off += 4;
                }
                h.extended = true;
            }
        }
        if h.length > self.limits.max_message_len {
            return Err(ChunkError::MessageTooLarge {
                len: h.length,
                max: self.limits.max_message_len,
            });
        }
        h.len = off;
        Ok(Some(h))
    }

    /// Reads one chunk; returns the message it completes, if any.
    fn next_chunk(&mut self) -> Result<Option<Message>, ChunkError> {
        loop {
            let avail = &self.buf[self.pos..];
            let Some(h) = self.parse_header(avail)? else {
                return Ok(None);
            };
            let prev = self.streams.get(&h.csid);
            let continuing = h.fmt == 3 && prev.is_some_and(|p| p.partial.is_some());
            let have = if continuing {
                prev.and_then(|p| p.partial.as_ref()).map_or(0, Vec::len)
            } else {
                0
            };
            let n = (h.length as usize - have).min(self.chunk_size as usize);
            let Some(data) = avail.get(h.len..h.len + n) else {
                return Ok(None);
            };
            // The chunk is complete: apply it.
            if prev.is_none() && self.streams.len() >= self.limits.max_chunk_streams {
                return Err(ChunkError::TooManyChunkStreams(
                    self.limits.max_chunk_streams,
                ));
            }
            let cap = 2 * self.limits.max_message_len as usize;
            let dropped = if continuing {
                0
            } else {
                // A new header in the middle of a message drops the rest of it.
                prev.and_then(|p| p.partial.as_ref()).map_or(0, Vec::len)
            };
            if self.buffered - dropped + n > cap {
                return Err(ChunkError::TooMuchBuffered(cap));
            }
            self.buffered -= dropped;
            let st = self.streams.entry(h.csid).or_default();
            if !continuing {
                st.partial = None;
                st.delta = h.ts_field;
                st.extended = h.extended;
                st.length = h.length;
                st.type_id = h.type_id;
                st.stream_id = h.stream_id;
                st.timestamp = if h.fmt == 0 {
                    h.ts_field
                } else {
                    st.timestamp.wrapping_add(h.ts_field)
                };
                st.partial = Some(Vec::with_capacity((h.length as usize).min(64 * 1024)));
            }
            let partial = st.partial.get_or_insert_with(Vec::new);
            partial.extend_from_slice(data);
            self.buffered += n;
            self.pos += h.len + n;
            if partial.len() == st.length as usize {
                let payload = st.partial.take().unwrap_or_default();
                self.buffered -= payload.len();
                return Ok(Some(Message {
                    csid: h.csid,
                    timestamp: st.timestamp,
                    type_id: st.type_id,
                    stream_id: st.stream_id,
                    payload,
                }));
            }
        }
    }
}

fn read_u32_control(msg: &Message) -> Result<u32, ChunkError> {
    match msg.payload.get(0..4) {
        Some(b) => Ok(be32(b)),
        None => Err(ChunkError::ShortControlMessage {
            type_id: msg.type_id,
            len: msg.payload.len(),
        }),
    }
}

fn be24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Writes messages as chunks: a type 0 header, then type 3 continuation
/// chunks at our chunk size, with the extended timestamp in every chunk when
/// the timestamp needs it.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    chunk_size: u32,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        ChunkWriter {
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

impl ChunkWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Changes the chunk size for the messages written after this call. The
    /// caller sends the Set Chunk Size message (written before the change).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > 0x7FFF_FFFF {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        self.chunk_size = size.min(MAX_CHUNK_SIZE);
        Ok(())
    }

    /// Appends `payload` as one message to `out`.
    pub fn write(
        &self,
        out: &mut Vec<u8>,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<(), ChunkError> {
        if !(2..=MAX_CSID).contains(&csid) {
            return Err(ChunkError::InvalidCsid(csid));
        }
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l <= 0xFF_FFFF)
            .ok_or(ChunkError::MessageTooLarge {
                len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                max: 0xFF_FFFF,
            })?;
        let extended = timestamp >= EXTENDED_TIMESTAMP;
        write_basic_header(out, 0, csid);
        let ts_field = if extended {
            EXTENDED_TIMESTAMP
        } else {
            timestamp
        };
        out.extend_from_slice(&ts_field.to_be_bytes()[1..]);
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(type_id);
        out.extend_from_slice(&stream_id.to_le_bytes());
        if extended {
            out.extend_from_slice(&timestamp.to_be_bytes());
        }
        let mut chunks = payload.chunks(self.chunk_size as usize);
        if let Some(first) = chunks.next() {
            out.extend_from_slice(first);
        }
        for chunk in chunks {
            write_basic_header(out, 3, csid);
            if extended {
                out.extend_from_slice(&timestamp.to_be_bytes());
            }
            out.extend_from_slice(chunk);
        }
        Ok(())
    }
}

/// Appends a basic header (csid already checked to be 2..=65599).
pub(crate) fn write_basic_header(out: &mut Vec<u8>, fmt: u8, csid: u32) {
    let fmt = (fmt & 3) << 6;
    if csid < 64 {
        out.push(fmt | csid as u8);
    } else if csid < 320 {
        out.push(fmt);
        out.push((csid - 64) as u8);
    } else {
        let v = csid - 64;
        out.push(fmt | 1);
        out.push((v & 0xff) as u8);
        out.push((v >> 8) as u8);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mediamesh_testkit::Rng;

    /// Writes one chunk with any header type, for tests of the reader.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn raw_chunk(
        out: &mut Vec<u8>,
        fmt: u8,
        csid: u32,
        ts: Option<u32>,
        len: u32,
        type_id: u8,
        msid: u32,
        ext_in_type3: Option<u32>,
        data: &[u8],
    ) {
        write_basic_header(out, fmt, csid);
        let ts = ts.unwrap_or(0);
        let ext = ts >= EXTENDED_TIMESTAMP;
        if fmt <= 2 {
            let f = if ext { EXTENDED_TIMESTAMP } else { ts };
            out.extend_from_slice(&f.to_be_bytes()[1..]);
        }
        if fmt <= 1 {
            out.extend_from_slice(&len.to_be_bytes()[1..]);
            out.push(type_id);
        }
        if fmt == 0 {
            out.extend_from_slice(&msid.to_le_bytes());
        }
        if fmt <= 2 && ext {
            out.extend_from_slice(&ts.to_be_bytes());
        }
        if let (3, Some(e)) = (fmt, ext_in_type3) {
            out.extend_from_slice(&e.to_be_bytes());
        }
        out.extend_from_slice(data);
    }

    fn read_all(input: &[u8], split: &mut dyn FnMut(usize) -> usize) -> Vec<Message> {
        let mut r = ChunkReader::default();
        let mut out = Vec::new();
        let mut i = 0;
        while i < input.len() {
            let n = split(input.len() - i).clamp(1, input.len() - i);
            r.push(&input[i..i + n]);
            i += n;
            while let Some(m) = r.next_message().unwrap() {
                out.push(m);
            }
        }
        out
    }

    fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> Message {
        Message {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: payload.to_vec(),
        }
    }

    /// Every header form, extended timestamps, interleaving, Set Chunk Size
    /// and Abort in one stream; the expected messages.
    fn scripted_stream() -> (Vec<u8>, Vec<Message>) {
        let mut s = Vec::new();
        let mut want = Vec::new();
        let p300: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        // Type 0 on a 1-byte csid, split in 3 chunks of 128.
        raw_chunk(&mut s, 0, 4, Some(1000), 300, 9, 1, None, &p300[..128]);
        raw_chunk(&mut s, 3, 4, None, 0, 0, 0, None, &p300[128..256]);
        raw_chunk(&mut s, 3, 4, None, 0, 0, 0, None, &p300[256..]);
        want.push(msg(4, 1000, 9, 1, &p300));
        // Type 1 (delta 40, new length and type), 2-byte csid.
        raw_chunk(&mut s, 0, 100, Some(5), 3, 8, 1, None, b"abc");
        want.push(msg(100, 5, 8, 1, b"abc"));
        raw_chunk(&mut s, 1, 100, Some(40), 2, 9, 0, None, b"de");
        want.push(msg(100, 45, 9, 1, b"de"));
        // Type 2 (delta 20), then type 3 starting a message: delta again.
        raw_chunk(&mut s, 2, 100, Some(20), 0, 0, 0, None, b"fg");
        want.push(msg(100, 65, 9, 1, b"fg"));
        raw_chunk(&mut s, 3, 100, None, 0, 0, 0, None, b"hi");
        want.push(msg(100, 85, 9, 1, b"hi"));
        // 3-byte csid, interleaved with csid 4.
        let big: Vec<u8> = (0..200u32).map(|i| (i * 3) as u8).collect();
        raw_chunk(&mut s, 0, 1000, Some(7), 200, 8, 1, None, &big[..128]);
        raw_chunk(&mut s, 1, 4, Some(10), 4, 9, 0, None, b"wxyz");
        want.push(msg(4, 1010, 9, 1, b"wxyz"));
        raw_chunk(&mut s, 3, 1000, None, 0, 0, 0, None, &big[128..]);
        want.push(msg(1000, 7, 8, 1, &big));
        // Largest csid.
        raw_chunk(&mut s, 0, MAX_CSID, Some(1), 1, 20, 0, None, b"!");
        want.push(msg(MAX_CSID, 1, 20, 0, b"!"));
        // Extended timestamp on type 0, repeated on type 3 continuations.
        let ts = 0x0123_4567;
        raw_chunk(&mut s, 0, 6, Some(ts), 200, 9, 1, None, &big[..128]);
        raw_chunk(&mut s, 3, 6, None, 0, 0, 0, Some(ts), &big[128..]);
        want.push(msg(6, ts, 9, 1, &big));
        // Type 3 starting a message after an extended type 0: field present,
        // the delta is the type 0 value (as GStreamer writes it).
        raw_chunk(&mut s, 3, 6, None, 0, 0, 0, Some(ts), &big[..128]);
        raw_chunk(&mut s, 3, 6, None, 0, 0, 0, Some(ts), &big[128..]);
        want.push(msg(6, ts.wrapping_mul(2), 9, 1, &big));
        // Continuation without the repeated extended timestamp is accepted.
        raw_chunk(
            &mut s,
            0,
            7,
            Some(0x0100_0000),
            130,
            8,
            1,
            None,
            &big[..128],
        );
        raw_chunk(&mut s, 3, 7, None, 0, 0, 0, None, &big[128..130]);
        want.push(msg(7, 0x0100_0000, 8, 1, &big[..130]));
        // Extended delta on type 1 and 2.
        raw_chunk(&mut s, 1, 7, Some(0x0200_0000), 1, 8, 0, None, b"q");
        want.push(msg(7, 0x0300_0000, 8, 1, b"q"));
        raw_chunk(&mut s, 2, 7, Some(5), 0, 0, 0, None, b"r");
        want.push(msg(7, 0x0300_0005, 8, 1, b"r"));
        // Set Chunk Size 256 from the peer, then a 300-byte message in 2 chunks.
        raw_chunk(&mut s, 0, 2, Some(0), 4, 1, 0, None, &256u32.to_be_bytes());
        raw_chunk(&mut s, 0, 5, Some(9), 300, 9, 1, None, &p300[..256]);
        raw_chunk(&mut s, 3, 5, None, 0, 0, 0, None, &p300[256..]);
        want.push(msg(5, 9, 9, 1, &p300));
        // Abort a partial message on csid 8, then a fresh one there.
        raw_chunk(&mut s, 0, 8, Some(1), 400, 9, 1, None, &p300[..256]);
        raw_chunk(&mut s, 0, 2, Some(0), 4, 2, 0, None, &8u32.to_be_bytes());
        raw_chunk(&mut s, 0, 8, Some(2), 2, 9, 1, None, b"ok");
        want.push(msg(8, 2, 9, 1, b"ok"));
        // Empty message.
        raw_chunk(&mut s, 0, 3, Some(0), 0, 20, 0, None, b"");
        want.push(msg(3, 0, 20, 0, b""));
        (s, want)
    }

    #[test]
    fn all_header_forms_in_one_piece() {
        let (s, want) = scripted_stream();
        assert_eq!(read_all(&s, &mut |n| n), want);
    }

    #[test]
    fn split_at_every_offset() {
        let (s, want) = scripted_stream();
        for cut in 1..s.len() {
            let mut r = ChunkReader::default();
            let mut got = Vec::new();
            r.push(&s[..cut]);
            while let Some(m) = r.next_message().unwrap() {
                got.push(m);
            }
            r.push(&s[cut..]);
            while let Some(m) = r.next_message().unwrap() {
                got.push(m);
            }
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn one_byte_at_a_time_and_random_pieces() {
        let (s, want) = scripted_stream();
        assert_eq!(read_all(&s, &mut |_| 1), want);
        let mut rng = Rng::new(7);
        for _ in 0..50 {
            assert_eq!(read_all(&s, &mut |_| rng.below(200) + 1), want);
        }
    }

    #[test]
    fn writer_round_trips_through_reader() {
        let mut w = ChunkWriter::new();
        let mut out = Vec::new();
        let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        w.write(&mut out, 3, 5, 20, 0, &payload).unwrap();
        w.write(&mut out, 70, 0x0FFF_FFFF, 9, 1, &payload).unwrap();
        w.write(&mut out, 400, 0xFF_FFFF, 8, 2, &payload[..10])
            .unwrap();
        // The peer must see Set Chunk Size before the larger chunks.
        w.write(&mut out, 2, 0, 1, 0, &300u32.to_be_bytes())
            .unwrap();
        w.set_chunk_size(300).unwrap();
        w.write(&mut out, 2000, u32::MAX, 9, 1, &payload).unwrap();
        w.write(&mut out, 5, 0, 18, 1, &[]).unwrap();
        let got = read_all(&out, &mut |_| 1);
        let want = vec![
            msg(3, 5, 20, 0, &payload),
            msg(70, 0x0FFF_FFFF, 9, 1, &payload),
            msg(400, 0xFF_FFFF, 8, 2, &payload[..10]),
            msg(2000, u32::MAX, 9, 1, &payload),
            msg(5, 0, 18, 1, &[]),
        ];
        assert_eq!(got, want);
        assert!(w.write(&mut out, 1, 0, 1, 0, &[]).is_err());
        assert!(w.write(&mut out, 65600, 0, 1, 0, &[]).is_err());
        assert!(w.set_chunk_size(0).is_err());
    }

    #[test]
    fn writer_layout() {
        let w = ChunkWriter::new();
        let mut out = Vec::new();
        w.write(&mut out, 3, 0x0100_0000, 20, 1, &[7u8; 130])
            .unwrap();
        // fmt 0 csid 3, ts 0xffffff, len 130, type 20, msid 1 LE, ext ts.
        assert_eq!(
            &out[..16],
            &[0x03, 0xff, 0xff, 0xff, 0, 0, 130, 20, 1, 0, 0, 0, 1, 0, 0, 0]
        );
        // Second chunk: fmt 3 csid 3 and the extended timestamp again.
        assert_eq!(&out[16 + 128..16 + 128 + 5], &[0xc3, 1, 0, 0, 0]);
        assert_eq!(out.len(), 16 + 128 + 5 + 2);
    }

    #[test]
    fn errors() {
        let mut r = ChunkReader::default();
        r.push(&[0x43, 0, 0, 0, 0, 0, 1, 8]);
        assert_eq!(
            r.next_message(),
            Err(ChunkError::NoPreviousHeader { csid: 3, fmt: 1 })
        );

        let mut r = ChunkReader::new(ChunkLimits {
            max_message_len: 100,
            max_chunk_streams: 2,
        });
        let mut s = Vec::new();
        raw_chunk(&mut s, 0, 3, Some(0), 101, 8, 1, None, &[]);
        r.push(&s);
        assert_eq!(
            r.next_message(),
            Err(ChunkError::MessageTooLarge { len: 101, max: 100 })
        );

        let mut r = ChunkReader::new(ChunkLimits {
            max_message_len: 100,
            max_chunk_streams: 2,
        });
        let mut s = Vec::new();
        for csid in 3..6 {
            raw_chunk(&mut s, 0, csid, Some(0), 1, 8, 1, None, b"x");
        }
        r.push(&s);
        assert!(r.next_message().unwrap().is_some());
        assert!(r.next_message().unwrap().is_some());
        assert_eq!(r.next_message(), Err(ChunkError::TooManyChunkStreams(2)));

        let mut r = ChunkReader::default();
        let mut s = Vec::new();
        raw_chunk(&mut s, 0, 2, Some(0), 4, 1, 0, None, &0u32.to_be_bytes());
        r.push(&s);
        assert_eq!(r.next_message(), Err(ChunkError::InvalidChunkSize(0)));

        let mut r = ChunkReader::default();
        let mut s = Vec::new();
        raw_chunk(&mut s, 0, 2, Some(0), 2, 1, 0, None, &[0, 1]);
        r.push(&s);
        assert_eq!(
            r.next_message(),
            Err(ChunkError::ShortControlMessage { type_id: 1, len: 2 })
        );
    }

    #[test]
    fn partial_bytes_are_bounded() {
        let limits = ChunkLimits {
            max_message_len: 1000,
            max_chunk_streams: 64,
        };
        let mut r = ChunkReader::new(limits);
        let mut s = Vec::new();
        raw_chunk(&mut s, 0, 2, Some(0), 4, 1, 0, None, &1000u32.to_be_bytes());
        // Three interleaved partial messages of 999 bytes, 900 bytes each in.
        for csid in 3..6 {
            raw_chunk(&mut s, 0, csid, Some(0), 999, 9, 1, None, &[0; 999][..]);
        }
        let mut r2 = ChunkReader::new(limits);
        let mut s2 = Vec::new();
        raw_chunk(&mut s2, 0, 2, Some(0), 4, 1, 0, None, &900u32.to_be_bytes());
        for csid in 3..6 {
            raw_chunk(&mut s2, 0, csid, Some(0), 999, 9, 1, None, &[0; 900][..]);
        }
        r2.push(&s2);
        assert_eq!(r2.next_message(), Err(ChunkError::TooMuchBuffered(2000)));
        // Complete messages do not count.
        r.push(&s);
        for _ in 0..3 {
            assert!(r.next_message().unwrap().is_some());
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = Rng::new(1);
        for _ in 0..3000 {
            let len = rng.below(300);
            let mut data: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            if rng.below(2) == 0 && !data.is_empty() {
                data[0] &= 0x3f; // start with a type 0 header more often
            }
            let mut r = ChunkReader::new(ChunkLimits {
                max_message_len: 4096,
                max_chunk_streams: 8,
            });
            r.push(&data);
            for _ in 0..100 {
                match r.next_message() {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
    }
}
