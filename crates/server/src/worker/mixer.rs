//! The SDK's audio-mixer feature (`features.mixer`) on top of the core's
//! mixers: a join with `features.mixer{mode, outputs, sources}` gets a core
//! mixer with one slot per output receiver; when the core puts a track on a
//! slot, the output receiver is pointed at it (continuous stream, no
//! renegotiation) and the client gets `slot_set`/`slot_unset`.

use std::time::Instant;

use mediamesh_core::{MixerConfig, MixerMode, PeerId, ReceiverSource, TrackRef};
use mediamesh_protocol::features::{self, mixer};
use mediamesh_protocol::session::{response, server_event};
use mediamesh_protocol::shared;

use super::sdk::{code, error, respond};
use super::{Key, Worker};

fn refs(sources: Vec<shared::receiver::Source>) -> Vec<TrackRef> {
    sources
        .into_iter()
        .map(|s| TrackRef {
            peer: s.peer,
            track: s.track,
        })
        .collect()
}

fn mixer_event(event: mixer::server_event::Event) -> server_event::Event {
    server_event::Event::Features(features::ServerEvent {
        feature: Some(features::server_event::Feature::Mixer(mixer::ServerEvent {
            event: Some(event),
        })),
    })
}

impl Worker {
    /// Sets up (or drops) the peer's mixer from its join's feature config.
    /// Output names that are not audio receivers of the connection are
    /// ignored with a log line (their slots stay, silently unused).
    pub(super) fn mixer_join(
        &mut self,
        key: Key,
        peer: PeerId,
        config: Option<mixer::Config>,
        now: Instant,
    ) {
        let Some(cfg) = config else {
            self.sfu.remove_mixer(peer);
            if let Some(sdk) = self.sdk_mut(key) {
                sdk.mixer_outputs.clear();
            }
            return;
        };
        let mode = if cfg.mode == mixer::Mode::Manual as i32 {
            MixerMode::Manual
        } else {
            MixerMode::Auto
        };
        let Some(sdk) = self.sdk_mut(key) else { return };
        for name in &cfg.outputs {
            if !sdk.has_audio_receiver(name) {
                tracing::warn!(output = %name, "mixer output is not an audio receiver of the connection");
            }
        }
        sdk.mixer_outputs = cfg.outputs.clone();
        let config = MixerConfig {
            mode,
            slots: cfg.outputs.len(),
            sources: refs(cfg.sources),
        };
        if let Err(e) = self.sfu.set_mixer(peer, config, now) {
            tracing::warn!("mixer: {e}");
        }
    }

    /// `Request.features.mixer`: attach or detach sources.
    pub(super) fn mixer_request(
        &mut self,
        key: Key,
        req_id: u32,
        req: features::Request,
    ) -> server_event::Event {
        let Some(features::request::Feature::Mixer(m)) = req.feature else {
            return error(
                req_id,
                code::BAD_REQUEST,
                "features request without a feature",
            );
        };
        let Some(peer) = self.conns.get(&key).and_then(|c| c.peer) else {
            return error(req_id, code::NOT_JOINED, "join a room first");
        };
        if !self.sfu.has_mixer(peer) {
            return error(
                req_id,
                code::NOT_JOINED,
                "no mixer: join with features.mixer to use it",
            );
        }
        use mixer::request::Action as A;
        use mixer::response::{Action as R, Attach, Detach};
        let action = match m.action {
            None => return error(req_id, code::BAD_REQUEST, "mixer request without an action"),
            Some(A::Attach(a)) => {
                let _ = self.sfu.mixer_attach(peer, &refs(a.sources));
                R::Attach(Attach {})
            }
            Some(A::Detach(d)) => {
                let _ = self.sfu.mixer_detach(peer, &refs(d.sources));
                R::Detach(Detach {})
            }
        };
        respond(
            req_id,
            response::Body::Features(features::Response {
                feature: Some(features::response::Feature::Mixer(mixer::Response {
                    action: Some(action),
                })),
            }),
        )
    }

    /// The core put a track on a slot (or emptied it): point the output
    /// receiver at it and tell the client.
    pub(super) fn mixer_slot(
        &mut self,
        peer: PeerId,
        slot: usize,
        source: Option<TrackRef>,
        now: Instant,
    ) {
        let Some(key) = self.by_peer.get(&peer).copied() else {
            return;
        };
        let want = match &source {
            Some(s) => ReceiverSource::Track {
                peer: s.peer.clone(),
                track: s.track.clone(),
            },
            None => ReceiverSource::Detached,
        };
        let output = self
            .sdk_mut(key)
            .and_then(|sdk| sdk.mixer_outputs.get(slot).cloned());
        if let Some(name) = output {
            self.sdk_point_receiver(key, &name, want, now);
        }
        let slot = slot as u32;
        let event = match source {
            Some(s) => mixer::server_event::Event::SlotSet(mixer::server_event::SlotSet {
                slot,
                source: Some(shared::receiver::Source {
                    peer: s.peer,
                    track: s.track,
                }),
            }),
            None => mixer::server_event::Event::SlotUnset(mixer::server_event::SlotUnset { slot }),
        };
        self.sdk_send(key, mixer_event(event));
    }
}
