//! The audio mixer feature: a peer gets the loudest audio tracks of its room
//! on a fixed number of output slots instead of one receiver per track.
//!
//! MediaMesh does not decode and sum audio for WebRTC peers: each slot carries
//! one selected track as is (the browser mixes the slots). What the core
//! decides is which track sits on which slot, from the RFC 6464 audio levels
//! the publishers put on their packets:
//!
//! - a track is *speaking* while a packet louder than [`SPEECH_DBOV`] came in
//!   the last [`SPEECH_HOLD`]; its loudness is a peak meter that rises at once
//!   and falls by [`DECAY_DB_PER_S`];
//! - a free slot takes the loudest speaking track that has none;
//! - a slot whose track went quiet for [`SILENCE_UNSET`] (or stopped, or was
//!   detached) is freed;
//! - a speaking track without a slot takes the slot of the quietest track that
//!   has held its slot for at least [`MIN_HOLD`], if it is louder by
//!   [`SWITCH_MARGIN_DB`]: no flapping between two similar voices.
//!
//! In AUTO mode the candidates are the audio tracks of the room's other peers;
//! in MANUAL mode only the sources the peer attached.

use std::time::{Duration, Instant};

use super::{Output, Sfu, SfuError};
use crate::{MediaKind, PeerId, TrackId};

/// How often the slots are re-evaluated.
pub const MIXER_TICK: Duration = Duration::from_millis(100);
/// A packet at least this loud (RFC 6464 level, dBov) counts as speech.
pub const SPEECH_DBOV: i8 = -50;
/// A track is speaking for this long after its last speech packet.
pub const SPEECH_HOLD: Duration = Duration::from_millis(1500);
/// A slot's track that has not spoken for this long frees the slot.
pub const SILENCE_UNSET: Duration = Duration::from_secs(3);
/// A track keeps its slot at least this long before a louder one may take it.
pub const MIN_HOLD: Duration = Duration::from_secs(1);
/// How much louder a track must be to take an occupied slot.
pub const SWITCH_MARGIN_DB: f32 = 6.0;
/// How fast the peak meter falls.
pub const DECAY_DB_PER_S: f32 = 20.0;

/// A track named by its peer and track names (as clients name sources).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackRef {
    pub peer: String,
    pub track: String,
}

/// Which tracks a mixer chooses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixerMode {
    /// Every audio track of the room's other peers.
    Auto,
    /// Only the attached sources.
    Manual,
}

/// A peer's mixer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixerConfig {
    pub mode: MixerMode,
    /// Number of output slots.
    pub slots: usize,
    /// Attached sources (MANUAL mode chooses among these).
    pub sources: Vec<TrackRef>,
}

/// The loudness of one audio track as its packets report it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LevelMeter {
    /// Peak-meter loudness in dB above silence (0 = -127 dBov).
    peak: f32,
    at: Option<Instant>,
    last_speech: Option<Instant>,
}

impl LevelMeter {
    /// One packet's level (RFC 6464, dBov: 0 loudest, -127 silence).
    pub(super) fn on_level(&mut self, dbov: i8, now: Instant) {
        let loud = f32::from(dbov.clamp(-127, 0)) + 127.0;
        let decayed = self.value(now);
        self.peak = decayed.max(loud);
        self.at = Some(now);
        if dbov >= SPEECH_DBOV {
            self.last_speech = Some(now);
        }
    }

    /// Loudness now, after decay since the last packet.
    pub(super) fn value(&self, now: Instant) -> f32 {
        match self.at {
            Some(at) => {
                let dt = now.saturating_duration_since(at).as_secs_f32();
                (self.peak - DECAY_DB_PER_S * dt).max(0.0)
            }
            None => 0.0,
        }
    }

    fn quiet_for(&self, now: Instant) -> Duration {
        match self.last_speech {
            Some(t) => now.saturating_duration_since(t),
            None => Duration::MAX,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    track: TrackId,
    since: Instant,
}

/// One peer's mixer.
#[derive(Debug)]
pub(super) struct Mixer {
    config: MixerConfig,
    slots: Vec<Option<Slot>>,
    next_tick: Instant,
}

/// A candidate track as the slot choice sees it.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    track: TrackId,
    loudness: f32,
    speaking: bool,
    quiet_for: Duration,
}

/// Chooses the slots' tracks: returns `(slot, new track or None)` for every
/// slot that changes. Pure function of the candidates and the time.
fn choose(slots: &mut [Option<Slot>], candidates: &[Candidate], now: Instant) -> Vec<usize> {
    let mut changed = Vec::new();
    // Free slots whose track is gone or silent.
    for (i, slot) in slots.iter_mut().enumerate() {
        let Some(s) = slot else { continue };
        let keep = candidates
            .iter()
            .find(|c| c.track == s.track)
            .is_some_and(|c| c.quiet_for < SILENCE_UNSET);
        if !keep {
            *slot = None;
            changed.push(i);
        }
    }
    let mut waiting: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.speaking && !slots.iter().flatten().any(|s| s.track == c.track))
        .collect();
    waiting.sort_by(|a, b| {
        b.loudness
            .total_cmp(&a.loudness)
            .then(a.track.cmp(&b.track))
    });
    let loudness = |t: TrackId| {
        candidates
            .iter()
            .find(|c| c.track == t)
            .map_or(0.0, |c| c.loudness)
    };
    for c in waiting {
        let target = match slots.iter().position(Option::is_none) {
            Some(free) => Some(free),
            None => slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.map(|s| (i, s)))
                .filter(|(_, s)| now.saturating_duration_since(s.since) >= MIN_HOLD)
                .min_by(|(_, a), (_, b)| loudness(a.track).total_cmp(&loudness(b.track)))
                .filter(|(_, s)| c.loudness > loudness(s.track) + SWITCH_MARGIN_DB)
                .map(|(i, _)| i),
        };
        let Some(i) = target else { continue };
        slots[i] = Some(Slot {
            track: c.track,
            since: now,
        });
        if !changed.contains(&i) {
            changed.push(i);
        }
    }
    changed.sort_unstable();
    changed
}

impl Sfu {
    /// Gives a peer a mixer (replacing any it had). Its slots start empty
    /// and fill at the next evaluation, [`MIXER_TICK`] from now at most.
    pub fn set_mixer(
        &mut self,
        peer: PeerId,
        config: MixerConfig,
        now: Instant,
    ) -> Result<(), SfuError> {
        if !self.peers.contains_key(&peer) {
            return Err(SfuError::UnknownPeer(peer));
        }
        if let Some(old) = self.mixers.remove(&peer) {
            for (i, s) in old.slots.iter().enumerate() {
                if s.is_some() {
                    self.outputs.push_back(Output::MixerSlot {
                        peer,
                        slot: i,
                        source: None,
                    });
                }
            }
        }
        let slots = vec![None; config.slots];
        self.mixers.insert(
            peer,
            Mixer {
                config,
                slots,
                next_tick: now,
            },
        );
        Ok(())
    }

    /// Removes a peer's mixer (no events: the peer asked for it or left).
    pub fn remove_mixer(&mut self, peer: PeerId) {
        self.mixers.remove(&peer);
    }

    /// Whether a peer has a mixer.
    pub fn has_mixer(&self, peer: PeerId) -> bool {
        self.mixers.contains_key(&peer)
    }

    /// Adds sources to a peer's mixer (MANUAL mode mixes only these).
    pub fn mixer_attach(&mut self, peer: PeerId, sources: &[TrackRef]) -> Result<(), SfuError> {
        let m = self
            .mixers
            .get_mut(&peer)
            .ok_or(SfuError::UnknownPeer(peer))?;
        for s in sources {
            if !m.config.sources.contains(s) {
                m.config.sources.push(s.clone());
            }
        }
        Ok(())
    }

    /// Removes sources from a peer's mixer; a slot they held frees at the
    /// next evaluation.
    pub fn mixer_detach(&mut self, peer: PeerId, sources: &[TrackRef]) -> Result<(), SfuError> {
        let m = self
            .mixers
            .get_mut(&peer)
            .ok_or(SfuError::UnknownPeer(peer))?;
        m.config.sources.retain(|s| !sources.contains(s));
        Ok(())
    }

    /// The track on each of a peer's mixer slots.
    pub fn mixer_slots(&self, peer: PeerId) -> Vec<Option<TrackRef>> {
        self.mixers
            .get(&peer)
            .map(|m| {
                m.slots
                    .iter()
                    .map(|s| s.and_then(|s| self.track_ref(s.track)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn track_ref(&self, track: TrackId) -> Option<TrackRef> {
        let t = self.tracks.get(&track)?;
        let p = self.peers.get(&t.owner)?;
        Some(TrackRef {
            peer: p.name.clone(),
            track: t.name.clone(),
        })
    }

    /// The next mixer evaluation, if any mixer exists.
    pub(super) fn mixer_timeout(&self) -> Option<Instant> {
        self.mixers.values().map(|m| m.next_tick).min()
    }

    /// Re-evaluates the mixers that are due.
    pub(super) fn mixer_tick(&mut self, now: Instant) {
        let due: Vec<PeerId> = self
            .mixers
            .iter()
            .filter(|(_, m)| m.next_tick <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            let candidates = self.mixer_candidates(peer, now);
            let Some(m) = self.mixers.get_mut(&peer) else {
                continue;
            };
            m.next_tick = now + MIXER_TICK;
            let changed = choose(&mut m.slots, &candidates, now);
            let slots: Vec<(usize, Option<TrackId>)> = changed
                .into_iter()
                .map(|i| (i, m.slots.get(i).copied().flatten().map(|s| s.track)))
                .collect();
            for (slot, track) in slots {
                let source = track.and_then(|t| self.track_ref(t));
                self.outputs
                    .push_back(Output::MixerSlot { peer, slot, source });
            }
        }
    }

    fn mixer_candidates(&self, peer: PeerId, now: Instant) -> Vec<Candidate> {
        let (Some(m), Some(p)) = (self.mixers.get(&peer), self.peers.get(&peer)) else {
            return Vec::new();
        };
        let Some(room) = self.rooms.get(&p.room) else {
            return Vec::new();
        };
        room.tracks
            .iter()
            .filter_map(|id| Some((*id, self.tracks.get(id)?)))
            .filter(|(_, t)| t.kind == MediaKind::Audio && t.owner != peer)
            .filter(|(_, t)| match m.config.mode {
                MixerMode::Auto => true,
                MixerMode::Manual => self.peers.get(&t.owner).is_some_and(|o| {
                    m.config
                        .sources
                        .iter()
                        .any(|s| s.peer == o.name && s.track == t.name)
                }),
            })
            .map(|(id, t)| Candidate {
                track: id,
                loudness: t.level.value(now),
                speaking: t.level.quiet_for(now) < SPEECH_HOLD,
                quiet_for: t.level.quiet_for(now),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(track: u64, loudness: f32, quiet_ms: u64) -> Candidate {
        let quiet_for = Duration::from_millis(quiet_ms);
        Candidate {
            track: TrackId(track),
            loudness,
            speaking: quiet_for < SPEECH_HOLD,
            quiet_for,
        }
    }

    fn tracks(slots: &[Option<Slot>]) -> Vec<Option<u64>> {
        slots.iter().map(|s| s.map(|s| s.track.0)).collect()
    }

    #[test]
    fn meter_rises_at_once_and_decays() {
        let t0 = Instant::now();
        let mut m = LevelMeter::default();
        assert_eq!(m.value(t0), 0.0);
        m.on_level(-30, t0);
        assert_eq!(m.value(t0), 97.0);
        assert_eq!(m.value(t0 + Duration::from_millis(500)), 87.0);
        // A quieter packet does not pull the peak below its decayed value.
        m.on_level(-100, t0 + Duration::from_millis(100));
        assert_eq!(m.value(t0 + Duration::from_millis(100)), 95.0);
        assert_eq!(
            m.quiet_for(t0 + Duration::from_millis(100)),
            Duration::from_millis(100)
        );
        // Out-of-range levels are clamped.
        m.on_level(5, t0 + Duration::from_millis(200));
        assert_eq!(m.value(t0 + Duration::from_millis(200)), 127.0);
        let mut silent = LevelMeter::default();
        silent.on_level(-127, t0);
        assert_eq!(silent.quiet_for(t0), Duration::MAX);
    }

    #[test]
    fn free_slots_take_the_loudest_speakers() {
        let t0 = Instant::now();
        let mut slots = vec![None; 2];
        let c = [
            cand(1, 40.0, 0),
            cand(2, 80.0, 0),
            cand(3, 60.0, 0),
            cand(4, 90.0, 5000),
        ];
        assert_eq!(choose(&mut slots, &c, t0), vec![0, 1]);
        // Track 4 is loudest but not speaking (quiet for 5 s).
        assert_eq!(tracks(&slots), vec![Some(2), Some(3)]);
        // Nothing changes on the next tick.
        assert!(choose(&mut slots, &c, t0 + MIXER_TICK).is_empty());
    }

    #[test]
    fn louder_speaker_takes_the_quietest_slot_after_min_hold_with_margin() {
        let t0 = Instant::now();
        let mut slots = vec![None; 2];
        choose(&mut slots, &[cand(1, 70.0, 0), cand(2, 60.0, 0)], t0);
        assert_eq!(tracks(&slots), vec![Some(1), Some(2)]);
        let louder = [cand(1, 70.0, 0), cand(2, 60.0, 0), cand(3, 75.0, 0)];
        // Within MIN_HOLD nobody is displaced.
        assert!(choose(&mut slots, &louder, t0 + Duration::from_millis(500)).is_empty());
        // After it, track 3 (75) beats the quietest (2 at 60) by more than the margin.
        let t1 = t0 + MIN_HOLD;
        assert_eq!(choose(&mut slots, &louder, t1), vec![1]);
        assert_eq!(tracks(&slots), vec![Some(1), Some(3)]);
        // A speaker only 5 dB louder than the quietest holder (1 at 70) does not switch.
        let close = [cand(1, 70.0, 0), cand(3, 75.0, 0), cand(2, 75.0, 0)];
        assert!(choose(&mut slots, &close, t1 + MIN_HOLD * 2).is_empty());
    }

    #[test]
    fn silent_or_gone_tracks_free_their_slot() {
        let t0 = Instant::now();
        let mut slots = vec![None; 2];
        choose(&mut slots, &[cand(1, 70.0, 0), cand(2, 60.0, 0)], t0);
        // Track 1 quiet for 2.9 s: kept; track 2 gone: freed.
        let c = [cand(1, 10.0, 2900)];
        assert_eq!(choose(&mut slots, &c, t0 + MIXER_TICK), vec![1]);
        assert_eq!(tracks(&slots), vec![Some(1), None]);
        // Quiet for 3 s: freed.
        assert_eq!(choose(&mut slots, &[cand(1, 0.0, 3000)], t0), vec![0]);
        assert_eq!(tracks(&slots), vec![None, None]);
    }

    #[test]
    fn a_freed_slot_is_refilled_in_the_same_tick() {
        let t0 = Instant::now();
        let mut slots = vec![None; 1];
        choose(&mut slots, &[cand(1, 70.0, 0)], t0);
        let c = [cand(1, 0.0, 4000), cand(2, 50.0, 0)];
        assert_eq!(choose(&mut slots, &c, t0 + MIXER_TICK), vec![0]);
        assert_eq!(tracks(&slots), vec![Some(2)]);
    }

    fn audio(level: i8, seq: u64, at: Instant) -> crate::MediaPacket {
        crate::MediaPacket {
            codec: crate::Codec::Opus,
            seq,
            timestamp: seq as u32 * 960,
            marker: false,
            keyframe: true,
            audio_level: Some(level),
            dependency_descriptor: None,
            arrival: at,
            payload: std::sync::Arc::from(&[1u8][..]),
        }
    }

    fn slot_events(sfu: &mut Sfu) -> Vec<(usize, Option<String>)> {
        std::iter::from_fn(|| sfu.poll_output())
            .filter_map(|o| match o {
                Output::MixerSlot { slot, source, .. } => {
                    Some((slot, source.map(|s| format!("{}/{}", s.peer, s.track))))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn sfu_auto_and_manual_mixers_follow_the_levels() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let room = crate::RoomId::new("app", "r");
        let mut sfu = Sfu::new();
        let listener = sfu.add_peer(room.clone(), "listener");
        let own = sfu
            .publish_track(listener, MediaKind::Audio, "mic", None, t0)
            .unwrap();
        let a = sfu.add_peer(room.clone(), "a");
        let ta = sfu
            .publish_track(a, MediaKind::Audio, "mic", None, t0)
            .unwrap();
        let b = sfu.add_peer(room.clone(), "b");
        let tb = sfu
            .publish_track(b, MediaKind::Audio, "mic", None, t0)
            .unwrap();
        let video = sfu
            .publish_track(b, MediaKind::Video, "cam", None, t0)
            .unwrap();
        let manual = sfu.add_peer(room, "manual");
        let auto = MixerConfig {
            mode: MixerMode::Auto,
            slots: 1,
            sources: vec![],
        };
        sfu.set_mixer(listener, auto, t0).unwrap();
        let b_mic = TrackRef {
            peer: "b".into(),
            track: "mic".into(),
        };
        let cfg = MixerConfig {
            mode: MixerMode::Manual,
            slots: 2,
            sources: vec![b_mic.clone()],
        };
        sfu.set_mixer(manual, cfg, t0).unwrap();
        while sfu.poll_output().is_some() {}
        assert_eq!(sfu.poll_timeout(), Some(t0));

        // The listener's own voice, the loudest, never fills its slot; b is louder than a.
        for i in 0..5u64 {
            let at = t0 + ms(20 * i);
            sfu.on_media(own, 0, audio(-5, i, at)).unwrap();
            sfu.on_media(ta, 0, audio(-40, i, at)).unwrap();
            sfu.on_media(tb, 0, audio(-20, i, at)).unwrap();
        }
        let _ = video;
        let t1 = t0 + ms(100);
        sfu.handle_timeout(t1);
        assert_eq!(
            slot_events(&mut sfu),
            vec![(0, Some("b/mic".into())), (0, Some("b/mic".into()))]
        );
        assert_eq!(sfu.mixer_slots(listener), vec![Some(b_mic.clone())]);
        assert_eq!(sfu.poll_timeout(), Some(t1 + MIXER_TICK));

        // The manual mixer attaches a and detaches b: b's slot goes to a in one step.
        let a_mic = TrackRef {
            peer: "a".into(),
            track: "mic".into(),
        };
        sfu.mixer_attach(manual, std::slice::from_ref(&a_mic))
            .unwrap();
        sfu.mixer_detach(manual, &[b_mic]).unwrap();
        sfu.handle_timeout(t1 + MIXER_TICK);
        assert_eq!(sfu.mixer_slots(manual), vec![Some(a_mic.clone()), None]);
        assert_eq!(slot_events(&mut sfu), vec![(0, Some("a/mic".into()))]);

        // b leaves: the listener's slot goes to a at the next tick.
        sfu.remove_peer(b, t1).unwrap();
        sfu.handle_timeout(t1 + MIXER_TICK * 2);
        assert_eq!(sfu.mixer_slots(listener), vec![Some(a_mic)]);
        assert!(sfu.mixer_attach(a, &[]).is_err());
    }
}
