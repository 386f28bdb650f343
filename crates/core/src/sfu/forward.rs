//! The packet path: a published packet reaches every subscriber of its
//! track, through the subscriber's layer selector (video) and its sequence
//! number/timestamp rewriter.

use std::sync::Arc;

use std::collections::VecDeque;

use super::{Output, Receiver, ReceiverState, Sfu, SfuError};
use crate::layers::av1_dd::DdParser;
use crate::layers::meter::LayerMeter;
use crate::layers::{self, Decision, Layer};
use crate::rewrite::Rewriter;
use crate::{Codec, MediaKind, MediaPacket, ReceiverId, TrackId};

impl Sfu {
    /// A packet of a published track arrived on simulcast stream `stream`
    /// (0 when the track has one stream).
    pub fn on_media(
        &mut self,
        track: TrackId,
        stream: u8,
        packet: MediaPacket,
    ) -> Result<(), SfuError> {
        let t = self
            .tracks
            .get_mut(&track)
            .ok_or(SfuError::UnknownTrack(track))?;
        if packet.keyframe {
            t.keyframes.on_keyframe(stream);
        }
        if let Some(level) = packet.audio_level {
            t.level.on_level(level, packet.arrival);
        }
        if !t.live {
            t.live = true;
            self.outputs.push_back(Output::TrackLive {
                peer: t.owner,
                track,
            });
        }
        let video = t.kind == MediaKind::Video;
        let mut rates_changed = false;
        // The highest layer that arrives, for every subscriber's target.
        let mut live = Layer::default();
        if video {
            // AV1 layers are named by the Dependency Descriptor (stateful).
            let dd_layer = match &packet.dependency_descriptor {
                Some(dd) if packet.codec == Codec::Av1 => {
                    t.dd.get_or_insert_with(DdParser::new)
                        .parse(dd)
                        .ok()
                        .map(|d| Layer::new(d.spatial_id, d.temporal_id))
                }
                _ => None,
            };
            let svc = layers::is_svc(packet.codec) || dd_layer.is_some();
            let layer = dd_layer.unwrap_or_else(|| layers::packet_layer(stream, &packet));
            let meter = t.meter.get_or_insert_with(|| LayerMeter::new(svc));
            self.next_caps
                .get_or_insert(packet.arrival + super::feedback::CAP_INTERVAL);
            rates_changed = meter.on_packet(layer, packet.payload.len(), packet.arrival);
            t.live_layers.on_packet(layer, packet.arrival);
            live = t.live_layers.highest(packet.arrival);
        }
        if let Some(gop) = t.gop.as_mut() {
            gop.on_packet(stream, &packet);
        }
        let mut want_keyframe: Option<u8> = None;
        for rid in &t.subscribers {
            let Some(r) = self.receivers.get_mut(rid) else {
                continue;
            };
            if let Some(s) = forward_to(r, *rid, stream, &packet, live, &mut self.outputs) {
                want_keyframe = Some(s);
            }
        }
        if let Some(stream) =
            want_keyframe.and_then(|s| t.keyframes.request(Some(s), packet.arrival))
        {
            self.outputs.push_back(Output::RequestKeyframe {
                peer: t.owner,
                track,
                stream,
            });
        }
        if rates_changed {
            self.reallocate_subscribers_of(track, packet.arrival);
        }
        Ok(())
    }

    /// A receiver that just started on `track` gets the track's cached
    /// group of pictures at once (tracks whose publisher cannot be asked
    /// for a keyframe, see [`Sfu::cache_gop`]): it decodes from the last
    /// keyframe instead of waiting for the next.
    pub(super) fn replay_gop(&mut self, track: TrackId, receiver: ReceiverId) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let Some((gop, at)) = t.gop.as_ref().and_then(|g| Some((g, g.last_arrival()?))) else {
            return;
        };
        let Some(r) = self.receivers.get_mut(&receiver) else {
            return;
        };
        let live = t.live_layers.highest(at);
        for (stream, packet) in gop.packets() {
            forward_to(r, receiver, stream, packet, live, &mut self.outputs);
        }
    }

    /// The layer a receiver forwards now, if it forwards video.
    pub fn receiver_layer(&self, receiver: crate::ReceiverId) -> Option<Layer> {
        self.receivers.get(&receiver)?.selector.as_ref()?.current()
    }
}

/// Sends `packet` (of simulcast stream `stream`) to one receiver, through
/// its layer selector (video) and rewriter. Gives the stream whose keyframe
/// the receiver's selector waits for, if it waits.
fn forward_to(
    r: &mut Receiver,
    rid: ReceiverId,
    stream: u8,
    packet: &MediaPacket,
    live: Layer,
    outputs: &mut VecDeque<Output>,
) -> Option<u8> {
    if r.paused || !r.codecs.contains(&packet.codec) {
        return None;
    }
    let video = r.kind == MediaKind::Video;
    let mut want_keyframe = None;
    let mut marker = packet.marker;
    let mut patch = None;
    let mut descriptor = None;
    let rw = r
        .rewriter
        .get_or_insert_with(|| Rewriter::new(packet.codec.clock_rate()));
    if video {
        let sel = r
            .selector
            .get_or_insert_with(|| layers::new_selector(packet));
        let target = r.allocation.target(r.limits).capped(live);
        if sel.target() != target {
            sel.set_target(target);
        }
        let decision = sel.on_packet(stream, packet);
        if sel.wants_keyframe() {
            want_keyframe = Some(sel.keyframe_stream());
        }
        match decision {
            Decision::Drop => {
                if sel.forwarded_stream() == Some(stream) {
                    rw.drop_packet(packet.seq);
                }
                return want_keyframe;
            }
            Decision::Forward(f) => {
                if f.new_source {
                    rw.switch_source();
                }
                marker = f.marker;
                patch = f.patch;
                descriptor = sel.descriptor().map(Arc::from);
            }
        }
    }
    let (seq, timestamp) = rw.rewrite(packet.seq, packet.timestamp, packet.arrival)?;
    let mut out = packet.clone();
    if let Some(p) = patch {
        out.payload = Arc::from(p.apply(&packet.payload)?);
    }
    if r.state != ReceiverState::Active {
        r.state = ReceiverState::Active;
        outputs.push_back(Output::ReceiverState {
            peer: r.owner,
            receiver: rid,
            state: ReceiverState::Active,
        });
    }
    r.counters.packets += 1;
    r.counters.bytes += out.payload.len() as u64;
    if packet.audio_level.is_some() {
        r.counters.audio_level = packet.audio_level;
    }
    out.seq = seq;
    out.timestamp = timestamp;
    out.marker = marker;
    if descriptor.is_some() {
        out.dependency_descriptor = descriptor;
    } else if packet.codec != Codec::Av1 {
        // Only the AV1 selector follows the descriptor; for other
        // codecs it would describe frames the subscriber may not get
        // (another simulcast stream's numbering).
        out.dependency_descriptor = None;
    }
    outputs.push_back(Output::Media {
        peer: r.owner,
        receiver: rid,
        packet: out,
    });
    want_keyframe
}
