//! `ServerSession`: one RTMP connection from a publisher, as a sans-IO state
//! machine. The driver feeds received bytes with [`ServerSession::feed`] (split
//! anywhere), sends what [`ServerSession::poll_output`] returns, and handles
//! what [`ServerSession::poll_event`] returns.
//!
//! Follows the Adobe RTMP specification 1.0: handshake (5.2), chunking (5.3),
//! protocol control messages (5.4: Set Chunk Size, Abort, Acknowledgement,
//! Window Acknowledgement Size, Set Peer Bandwidth), User Control messages
//! (6.2: StreamBegin, PingRequest/PingResponse), NetConnection commands
//! (7.2.1: connect, createStream, deleteStream) and NetStream commands (7.2.2:
//! publish, closeStream, deleteStream), plus what encoders send beyond the
//! spec (releaseStream, FCPublish, FCUnpublish, `@setDataFrame`).
//!
//! A publish goes through the driver: `publish` gives
//! [`Event::PublishRequest`]; the driver answers with
//! [`ServerSession::accept_publish`] (onStatus NetStream.Publish.Start) or
//! [`ServerSession::reject_publish`] (onStatus error, then it closes the
//! connection). Media and metadata of a stream whose publish is pending or
//! accepted become events, in order; media of other streams is dropped and
//! counted. Because `feed` parses everything it is given, media that arrives
//! in the same `feed` as the `publish` is already queued behind the
//! `PublishRequest` when the driver decides; a driver that rejects drops it.

use std::collections::{BTreeMap, VecDeque};

use thiserror::Error;

use crate::amf0::{self, Amf0Error, Amf0Value};
use crate::chunk::{msg_type, ChunkError, ChunkLimits, ChunkReader, ChunkWriter, Message};
use crate::handshake::{Handshake, HandshakeError};

/// Chunk stream ids we send on.
const CSID_CONTROL: u32 = 2;
const CSID_COMMAND: u32 = 3;
const CSID_STREAM_STATUS: u32 = 5;

/// User Control event types (6.2).
const UC_STREAM_BEGIN: u16 = 0;
const UC_PING_REQUEST: u16 = 6;
const UC_PING_RESPONSE: u16 = 7;

/// Settings of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Chunk size we send with, announced right after `connect`.
    pub chunk_size: u32,
    /// Window Acknowledgement Size we give the client.
    pub window_ack_size: u32,
    /// Set Peer Bandwidth we send (limit type dynamic).
    pub peer_bandwidth: u32,
    /// Longest message we accept (a large keyframe must fit).
    pub max_message_len: u32,
    /// Chunk streams the client may use.
    pub max_chunk_streams: usize,
    /// Message streams (createStream) the client may open.
    pub max_streams: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            max_message_len: 4 << 20,
            max_chunk_streams: 64,
            max_streams: 8,
        }
    }
}

/// Why a session failed. Every error ends the connection; after one, `feed`
/// returns [`RtmpError::Failed`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtmpError {
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("malformed command: {0}")]
    Command(#[from] Amf0Error),
    #[error("command message without a command name")]
    CommandWithoutName,
    #[error("command {0:?} before connect")]
    CommandBeforeConnect(String),
    #[error("second connect on one connection")]
    DuplicateConnect,
    #[error("more than {0} streams created")]
    TooManyStreams(usize),
    #[error("stream {0} has no publish waiting for an answer")]
    NotPending(u32),
    #[error("stream {0} does not exist")]
    UnknownStream(u32),
    #[error("the session failed earlier")]
    Failed,
}

/// What the driver learns from a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `connect` was answered with NetConnection.Connect.Success.
    Connect {
        /// `app` of the command object (a trailing `/` removed).
        app: String,
        tc_url: Option<String>,
        flash_ver: Option<String>,
        /// 0 (AMF0) unless the client asked for 3.
        object_encoding: f64,
        /// The whole command object.
        properties: Vec<(String, Amf0Value)>,
        /// Optional user arguments after the command object.
        args: Vec<Amf0Value>,
    },
    /// `publish`: answer with `accept_publish` or `reject_publish`.
    PublishRequest {
        stream_id: u32,
        app: String,
        /// The publishing name, as sent (may include `?query`).
        stream_key: String,
        /// "live", "record" or "append".
        publish_type: String,
    },
    /// The publisher stopped (FCUnpublish, closeStream or deleteStream).
    /// Given once per publish; a closed connection gives none.
    Unpublish { stream_id: u32 },
    /// `onMetaData` (with or without `@setDataFrame`): the values after the
    /// name, usually one ECMA array.
    Metadata {
        stream_id: u32,
        values: Vec<Amf0Value>,
    },
    /// Another data message (onTextData, onCuePoint, ...).
    Data {
        stream_id: u32,
        name: String,
        values: Vec<Amf0Value>,
    },
    /// An audio message: an FLV audio tag body (see [`crate::flv`]).
    Audio {
        stream_id: u32,
        /// RTMP timestamp (decode time), extended past 32-bit wraparound.
        timestamp_ms: u64,
        data: Vec<u8>,
    },
    /// A video message: an FLV video tag body (see [`crate::flv`]).
    Video {
        stream_id: u32,
        timestamp_ms: u64,
        data: Vec<u8>,
    },
}

/// Counters of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub messages_in: u64,
    /// Audio/video for a stream that is not publishing (or empty).
    pub media_ignored: u64,
    /// Data messages that did not decode or belong to no publishing stream.
    pub data_ignored: u64,
    /// Commands we do not know (answered with `_error` when they expect a reply).
    pub unknown_commands: u64,
    /// Shared objects, unknown message types, malformed control messages.
    pub other_ignored: u64,
    pub acks_sent: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PublishState {
    Idle,
    Pending,
    Publishing,
    Rejected,
}

#[derive(Debug)]
struct Stream {
    state: PublishState,
    key: String,
    audio_ts: TimestampExtender,
    video_ts: TimestampExtender,
}

impl Stream {
    fn new() -> Self {
        Stream {
            state: PublishState::Idle,
            key: String::new(),
            audio_ts: TimestampExtender::default(),
            video_ts: TimestampExtender::default(),
        }
    }

    fn active(&self) -> bool {
        matches!(self.state, PublishState::Pending | PublishState::Publishing)
    }
}

/// Extends 32-bit millisecond timestamps to 64 bits across wraparound.
#[derive(Debug, Default)]
struct TimestampExtender {
    last: Option<u32>,
    epoch: u64,
}

impl TimestampExtender {
    fn extend(&mut self, ts: u32) -> u64 {
        let Some(last) = self.last else {
            self.last = Some(ts);
            return u64::from(ts);
        };
        if (ts.wrapping_sub(last) as i32) >= 0 {
            if ts < last {
                self.epoch += 1 << 32;
            }
            self.last = Some(ts);
            self.epoch + u64::from(ts)
        } else if ts > last {
            // Slightly late, from before the last wrap.
            self.epoch.saturating_sub(1 << 32) + u64::from(ts)
        } else {
            self.epoch + u64::from(ts)
        }
    }
}

/// One RTMP connection, server side.
#[derive(Debug)]
pub struct ServerSession {
    config: SessionConfig,
    handshake: Handshake,
    reader: ChunkReader,
    writer: ChunkWriter,
    out: Vec<u8>,
    events: VecDeque<Event>,
    failed: bool,
    connected: bool,
    app: String,
    streams: BTreeMap<u32, Stream>,
    next_stream_id: u32,
    peer_window: Option<u32>,
    last_ack_at: u64,
    stats: SessionStats,
}

impl ServerSession {
    pub fn new(config: SessionConfig) -> Self {
        let mut config = config;
        config.chunk_size = config.chunk_size.clamp(1, crate::chunk::MAX_CHUNK_SIZE);
        let reader = ChunkReader::new(ChunkLimits {
            max_message_len: config.max_message_len,
            max_chunk_streams: config.max_chunk_streams,
        });
        ServerSession {
            config,
            handshake: Handshake::new(),
            reader,
            writer: ChunkWriter::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            failed: false,
            connected: false,
            app: String::new(),
            streams: BTreeMap::new(),
            next_stream_id: 1,
            peer_window: None,
            last_ack_at: 0,
            stats: SessionStats::default(),
        }
    }

    /// Processes received bytes. On error the connection should be closed
    /// (after sending what `poll_output` still has, if the driver likes).
    pub fn feed(&mut self, input: &[u8]) -> Result<(), RtmpError> {
        if self.failed {
            return Err(RtmpError::Failed);
        }
        let r = self.feed_inner(input);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// Bytes to send, if any (everything pending, in one buffer).
    pub fn poll_output(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            return None;
        }
        self.stats.bytes_out += self.out.len() as u64;
        Some(std::mem::take(&mut self.out))
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// True once the handshake is complete.
    pub fn is_handshake_done(&self) -> bool {
        self.handshake.is_done()
    }

    /// The `app` of `connect`, once connected.
    pub fn app(&self) -> Option<&str> {
        self.connected.then_some(self.app.as_str())
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Accepts a pending publish: StreamBegin and onStatus
    /// NetStream.Publish.Start. The client starts sending media.
    pub fn accept_publish(&mut self, stream_id: u32) -> Result<(), RtmpError> {
        let stream = self.pending(stream_id)?;
        stream.state = PublishState::Publishing;
        let key = stream.key.clone();
        let mut uc = UC_STREAM_BEGIN.to_be_bytes().to_vec();
        uc.extend_from_slice(&stream_id.to_be_bytes());
        self.send_message(CSID_CONTROL, 0, msg_type::USER_CONTROL, &uc)?;
        self.send_on_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            &format!("{key} is now published."),
            Some(&key),
        )
    }

    /// Rejects a pending publish with NetStream.Publish.BadName and the
    /// description; the driver then closes the connection.
    pub fn reject_publish(&mut self, stream_id: u32, description: &str) -> Result<(), RtmpError> {
        self.reject_publish_with_code(stream_id, "NetStream.Publish.BadName", description)
    }

    /// Rejects a pending publish with an onStatus error of the given code
    /// (e.g. NetStream.Publish.Denied).
    pub fn reject_publish_with_code(
        &mut self,
        stream_id: u32,
        code: &str,
        description: &str,
    ) -> Result<(), RtmpError> {
        self.pending(stream_id)?.state = PublishState::Rejected;
        self.send_on_status(stream_id, "error", code, description, None)
    }

    /// Sends an onStatus error on a stream later on (e.g. code
    /// NetStream.Publish.Failed, "H.265 is not supported"). A pending or
    /// publishing stream stops producing events (no Unpublish either: the
    /// driver knows); the driver usually closes the connection next.
    pub fn send_status_error(
        &mut self,
        stream_id: u32,
        code: &str,
        description: &str,
    ) -> Result<(), RtmpError> {
        let stream = self
            .streams
            .get_mut(&stream_id)
            .ok_or(RtmpError::UnknownStream(stream_id))?;
        if stream.active() {
            stream.state = PublishState::Rejected;
        }
        self.send_on_status(stream_id, "error", code, description, None)
    }

    /// Sends a User Control PingRequest (the client answers; answers are not
    /// reported). Useful to keep a silent connection's NAT state alive.
    pub fn send_ping(&mut self, timestamp: u32) -> Result<(), RtmpError> {
        let mut uc = UC_PING_REQUEST.to_be_bytes().to_vec();
        uc.extend_from_slice(&timestamp.to_be_bytes());
        self.send_message(CSID_CONTROL, 0, msg_type::USER_CONTROL, &uc)
    }

    fn pending(&mut self, stream_id: u32) -> Result<&mut Stream, RtmpError> {
        match self.streams.get_mut(&stream_id) {
            Some(s) if s.state == PublishState::Pending => Ok(s),
            _ => Err(RtmpError::NotPending(stream_id)),
        }
    }

    fn feed_inner(&mut self, mut input: &[u8]) -> Result<(), RtmpError> {
        self.stats.bytes_in += input.len() as u64;
        if !self.handshake.is_done() {
            let used = self.handshake.feed(input, &mut self.out)?;
            input = &input[used..];
            if !self.handshake.is_done() {
                return Ok(());
            }
        }
        self.reader.push(input);
        while let Some(msg) = self.reader.next_message()? {
            self.stats.messages_in += 1;
            self.on_message(msg)?;
        }
        self.maybe_ack()
    }

    /// Acknowledgement once the peer's window is crossed (5.4.3, 5.4.4).
    fn maybe_ack(&mut self) -> Result<(), RtmpError> {
        let Some(window) = self.peer_window else {
            return Ok(());
        };
        if self.stats.bytes_in - self.last_ack_at >= u64::from(window) {
            self.last_ack_at = self.stats.bytes_in;
            let seq = (self.stats.bytes_in as u32).to_be_bytes();
            self.send_message(CSID_CONTROL, 0, msg_type::ACKNOWLEDGEMENT, &seq)?;
            self.stats.acks_sent += 1;
        }
        Ok(())
    }

    fn on_message(&mut self, msg: Message) -> Result<(), RtmpError> {
        match msg.type_id {
            msg_type::ACKNOWLEDGEMENT | msg_type::SET_PEER_BANDWIDTH => {}
            msg_type::WINDOW_ACK_SIZE => match msg.payload.get(0..4) {
                Some(b) => {
                    let w = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    self.peer_window = (w > 0).then_some(w);
                }
                None => self.stats.other_ignored += 1,
            },
            msg_type::USER_CONTROL => self.on_user_control(&msg.payload)?,
            msg_type::AUDIO | msg_type::VIDEO => {
                self.on_media(msg.type_id, msg.stream_id, msg.timestamp, msg.payload)
            }
            msg_type::DATA_AMF0 => self.on_data(msg.stream_id, &msg.payload),
            msg_type::DATA_AMF3 => {
                // AMF3 data messages start with a format byte; 0 means AMF0.
                match msg.payload.split_first() {
                    Some((0, rest)) => self.on_data(msg.stream_id, rest),
                    _ => self.stats.data_ignored += 1,
                }
            }
            msg_type::COMMAND_AMF0 => self.on_command(msg.stream_id, &msg.payload)?,
            msg_type::COMMAND_AMF3 => {
                let body = match msg.payload.split_first() {
                    Some((0, rest)) => rest,
                    _ => &msg.payload[..],
                };
                self.on_command(msg.stream_id, body)?
            }
            msg_type::AGGREGATE => self.on_aggregate(&msg),
            _ => self.stats.other_ignored += 1,
        }
        Ok(())
    }

    fn on_user_control(&mut self, payload: &[u8]) -> Result<(), RtmpError> {
        let Some(t) = payload.get(0..2) else {
            self.stats.other_ignored += 1;
            return Ok(());
        };
        if u16::from_be_bytes([t[0], t[1]]) == UC_PING_REQUEST {
            if let Some(ts) = payload.get(2..6) {
                let mut uc = UC_PING_RESPONSE.to_be_bytes().to_vec();
                uc.extend_from_slice(ts);
                self.send_message(CSID_CONTROL, 0, msg_type::USER_CONTROL, &uc)?;
            }
        }
        // SetBufferLength, PingResponse and the rest need nothing.
        Ok(())
    }

    fn on_media(&mut self, type_id: u8, stream_id: u32, timestamp: u32, data: Vec<u8>) {
        let stream = match self.streams.get_mut(&stream_id) {
            Some(s) if s.active() && !data.is_empty() => s,
            _ => {
                self.stats.media_ignored += 1;
                return;
            }
        };
        let event = if type_id == msg_type::AUDIO {
            Event::Audio {
                stream_id,
                timestamp_ms: stream.audio_ts.extend(timestamp),
                data,
            }
        } else {
            Event::Video {
                stream_id,
                timestamp_ms: stream.video_ts.extend(timestamp),
                data,
            }
        };
        self.events.push_back(event);
    }

    fn on_data(&mut self, stream_id: u32, payload: &[u8]) {
        let active = self.streams.get(&stream_id).is_some_and(Stream::active);
        let Ok(mut values) = amf0::decode_all(payload) else {
            self.stats.data_ignored += 1;
            return;
        };
        if values.first().and_then(Amf0Value::as_str) == Some("@setDataFrame") {
            values.remove(0);
        }
        let name = match values.first().and_then(Amf0Value::as_str) {
            Some(n) if active => n.to_owned(),
            _ => {
                self.stats.data_ignored += 1;
                return;
            }
        };
        values.remove(0);
        self.events.push_back(if name == "onMetaData" {
            Event::Metadata { stream_id, values }
        } else {
            Event::Data {
                stream_id,
                name,
                values,
            }
        });
    }

    /// Aggregate messages (7.1.6): FLV tags back to back, each followed by a
    /// 4-byte back pointer; tag timestamps are relative to the first one.
    fn on_aggregate(&mut self, msg: &Message) {
        let p = &msg.payload;
        let mut pos = 0;
        let mut first_ts = None;
        while let Some(h) = p.get(pos..pos + 11) {
            let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
            let ts = (u32::from(h[7]) << 24)
                | (u32::from(h[4]) << 16)
                | (u32::from(h[5]) << 8)
                | u32::from(h[6]);
            let Some(body) = p.get(pos + 11..pos + 11 + size) else {
                self.stats.other_ignored += 1;
                return;
            };
            let base = *first_ts.get_or_insert(ts);
            let timestamp = msg.timestamp.wrapping_add(ts.wrapping_sub(base));
            match h[0] & 0x1f {
                msg_type::AUDIO | msg_type::VIDEO => {
                    self.on_media(h[0] & 0x1f, msg.stream_id, timestamp, body.to_vec())
                }
                msg_type::DATA_AMF0 => self.on_data(msg.stream_id, body),
                _ => self.stats.other_ignored += 1,
            }
            pos += 11 + size + 4;
        }
    }

    fn on_command(&mut self, msg_stream_id: u32, payload: &[u8]) -> Result<(), RtmpError> {
        let mut values = amf0::decode_all(payload)?.into_iter();
        let name = match values.next() {
            Some(Amf0Value::String(s) | Amf0Value::LongString(s)) => s,
            _ => return Err(RtmpError::CommandWithoutName),
        };
        let tid = values.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let command_object = values.next().unwrap_or(Amf0Value::Null);
        let args: Vec<Amf0Value> = values.collect();
        let arg_str = |i: usize| args.get(i).and_then(Amf0Value::as_str);

        if name == "connect" {
            return self.on_connect(tid, command_object, args);
        }
        if !self.connected {
            return Err(RtmpError::CommandBeforeConnect(name));
        }
        match name.as_str() {
            "releaseStream" | "FCPublish" => self.reply_result(tid, Amf0Value::Undefined)?,
            "FCUnpublish" => {
                let key = arg_str(0).unwrap_or_default().to_owned();
                let found = self
                    .streams
                    .iter()
                    .find(|(_, s)| s.active() && s.key == key)
                    .map(|(&id, _)| id);
                if let Some(id) = found {
                    self.unpublish(id);
                }
                self.reply_result(tid, Amf0Value::Undefined)?
            }
            "createStream" => {
                if self.streams.len() >= self.config.max_streams {
                    return Err(RtmpError::TooManyStreams(self.config.max_streams));
                }
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.wrapping_add(1).max(1);
                self.streams.insert(id, Stream::new());
                self.reply_result(tid, Amf0Value::Number(f64::from(id)))?
            }
            "publish" => {
                let key = arg_str(0).unwrap_or_default().to_owned();
                let publish_type = arg_str(1).unwrap_or("live").to_owned();
                self.on_publish(msg_stream_id, key, publish_type)?
            }
            "closeStream" => self.unpublish(msg_stream_id),
            "deleteStream" => {
                let id = args
                    .first()
                    .and_then(Amf0Value::as_f64)
                    .filter(|v| *v >= 0.0 && *v <= f64::from(u32::MAX))
                    .map_or(msg_stream_id, |v| v as u32);
                self.unpublish(id);
                self.streams.remove(&id);
            }
            "play" | "play2" => self.send_on_status(
                msg_stream_id,
                "error",
                "NetStream.Play.Failed",
                "This server only accepts publishing.",
                None,
            )?,
            // Answers and notifications: nothing to reply.
            "_result" | "_error" | "onStatus" | "onBWDone" => {}
            _ => {
                self.stats.unknown_commands += 1;
                if tid != 0.0 {
                    self.send_command(
                        CSID_COMMAND,
                        0,
                        &[
                            Amf0Value::string("_error"),
                            Amf0Value::Number(tid),
                            Amf0Value::Null,
                            status_object(
                                "error",
                                "NetConnection.Call.Failed",
                                &format!("Method not supported: {name}."),
                                None,
                            ),
                        ],
                    )?;
                }
            }
        }
        Ok(())
    }

    fn on_connect(
        &mut self,
        tid: f64,
        command_object: Amf0Value,
        args: Vec<Amf0Value>,
    ) -> Result<(), RtmpError> {
        if self.connected {
            return Err(RtmpError::DuplicateConnect);
        }
        let get_str = |k: &str| {
            command_object
                .get(k)
                .and_then(Amf0Value::as_str)
                .map(str::to_owned)
        };
        let app = get_str("app")
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let tc_url = get_str("tcUrl");
        let flash_ver = get_str("flashVer");
        let object_encoding = command_object
            .get("objectEncoding")
            .and_then(Amf0Value::as_f64)
            .unwrap_or(0.0);
        let properties = match command_object {
            Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => p,
            _ => Vec::new(),
        };

        self.send_message(
            CSID_CONTROL,
            0,
            msg_type::WINDOW_ACK_SIZE,
            &self.config.window_ack_size.to_be_bytes(),
        )?;
        let mut bw = self.config.peer_bandwidth.to_be_bytes().to_vec();
        bw.push(2); // dynamic
        self.send_message(CSID_CONTROL, 0, msg_type::SET_PEER_BANDWIDTH, &bw)?;
        let cs = self.config.chunk_size;
        self.send_message(CSID_CONTROL, 0, msg_type::SET_CHUNK_SIZE, &cs.to_be_bytes())?;
        self.writer.set_chunk_size(cs)?;
        let mut info = match status_object(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
            None,
        ) {
            Amf0Value::Object(p) => p,
            _ => Vec::new(),
        };
        info.push(("objectEncoding".into(), Amf0Value::Number(object_encoding)));
        self.send_command(
            CSID_COMMAND,
            0,
            &[
                Amf0Value::string("_result"),
                Amf0Value::Number(tid),
                Amf0Value::object([
                    ("fmsVer", Amf0Value::string("FMS/3,0,1,123")),
                    ("capabilities", Amf0Value::Number(31.0)),
                    ("mode", Amf0Value::Number(1.0)),
                ]),
                Amf0Value::Object(info),
            ],
        )?;
        self.connected = true;
        self.app = app.clone();
        self.events.push_back(Event::Connect {
            app,
            tc_url,
            flash_ver,
            object_encoding,
            properties,
            args,
        });
        Ok(())
    }

    fn on_publish(
        &mut self,
        stream_id: u32,
        key: String,
        publish_type: String,
    ) -> Result<(), RtmpError> {
        let refuse = |this: &mut Self, why: &str| {
            this.send_on_status(stream_id, "error", "NetStream.Publish.BadName", why, None)
        };
        if stream_id == 0 {
            return refuse(self, "Publish on stream 0; call createStream first.");
        }
        if key.is_empty() {
            return refuse(self, "Missing stream name.");
        }
        if !self.streams.contains_key(&stream_id) {
            // Not created by createStream: accept it as if it had been.
            if self.streams.len() >= self.config.max_streams {
                return Err(RtmpError::TooManyStreams(self.config.max_streams));
            }
            self.streams.insert(stream_id, Stream::new());
        }
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            return Ok(());
        };
        if stream.active() {
            return refuse(self, "The stream is already publishing.");
        }
        stream.state = PublishState::Pending;
        stream.key = key.clone();
        stream.audio_ts = TimestampExtender::default();
        stream.video_ts = TimestampExtender::default();
        self.events.push_back(Event::PublishRequest {
            stream_id,
            app: self.app.clone(),
            stream_key: key,
            publish_type,
        });
        Ok(())
    }

    /// Ends a pending or accepted publish with one Unpublish event.
    fn unpublish(&mut self, stream_id: u32) {
        if let Some(s) = self.streams.get_mut(&stream_id) {
            if s.active() {
                s.state = PublishState::Idle;
                self.events.push_back(Event::Unpublish { stream_id });
            } else if s.state == PublishState::Rejected {
                s.state = PublishState::Idle;
            }
        }
    }

    fn reply_result(&mut self, tid: f64, value: Amf0Value) -> Result<(), RtmpError> {
        if tid == 0.0 {
            return Ok(());
        }
        self.send_command(
            CSID_COMMAND,
            0,
            &[
                Amf0Value::string("_result"),
                Amf0Value::Number(tid),
                Amf0Value::Null,
                value,
            ],
        )
    }

    fn send_on_status(
        &mut self,
        stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
        details: Option<&str>,
    ) -> Result<(), RtmpError> {
        self.send_command(
            CSID_STREAM_STATUS,
            stream_id,
            &[
                Amf0Value::string("onStatus"),
                Amf0Value::Number(0.0),
                Amf0Value::Null,
                status_object(level, code, description, details),
            ],
        )
    }

    fn send_command(
        &mut self,
        csid: u32,
        stream_id: u32,
        values: &[Amf0Value],
    ) -> Result<(), RtmpError> {
        let payload = amf0::encode_all(values);
        self.send_message(csid, stream_id, msg_type::COMMAND_AMF0, &payload)
    }

    fn send_message(
        &mut self,
        csid: u32,
        stream_id: u32,
        type_id: u8,
        payload: &[u8],
    ) -> Result<(), RtmpError> {
        self.writer
            .write(&mut self.out, csid, 0, type_id, stream_id, payload)?;
        Ok(())
    }
}

fn status_object(level: &str, code: &str, description: &str, details: Option<&str>) -> Amf0Value {
    let mut props = vec![
        ("level".to_owned(), Amf0Value::string(level)),
        ("code".to_owned(), Amf0Value::string(code)),
        ("description".to_owned(), Amf0Value::string(description)),
    ];
    if let Some(d) = details {
        props.push(("details".to_owned(), Amf0Value::string(d)));
    }
    Amf0Value::Object(props)
}

#[cfg(test)]
mod tests;
