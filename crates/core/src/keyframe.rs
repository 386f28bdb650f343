//! Keyframe request aggregation for one published track.
//!
//! Many subscribers may ask for a keyframe at once (joins, losses); the
//! publisher gets at most one request per `answered` interval once its last
//! request was answered by a keyframe, and an unanswered request is repeated
//! every `unanswered` interval until a keyframe comes. The short interval keeps
//! a late joiner's wait small; the long one keeps a slow keyframe (big frame,
//! slow link) from being requested twice.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct KeyframeRequests {
    answered_gap: Duration,
    unanswered_gap: Duration,
    last_sent: Option<Instant>,
    /// A keyframe arrived since the last request went out.
    answered: bool,
    pending: bool,
}

impl KeyframeRequests {
    pub fn new(answered_gap: Duration, unanswered_gap: Duration) -> Self {
        Self {
            answered_gap,
            unanswered_gap,
            last_sent: None,
            answered: false,
            pending: false,
        }
    }

    fn gap(&self) -> Duration {
        if self.answered {
            self.answered_gap
        } else {
            self.unanswered_gap
        }
    }

    /// Someone needs a keyframe. Returns true when a request should go to
    /// the publisher now.
    pub fn request(&mut self, now: Instant) -> bool {
        self.pending = true;
        self.poll(now)
    }

    /// A request is owed or out, not yet answered by a keyframe.
    pub fn pending(&self) -> bool {
        self.pending
    }

    /// A keyframe arrived: nothing is owed any more.
    pub fn on_keyframe(&mut self) {
        self.pending = false;
        self.answered = true;
    }

    /// Returns true when a pending request is due now.
    pub fn poll(&mut self, now: Instant) -> bool {
        if !self.pending {
            return false;
        }
        let due = self.last_sent.is_none_or(|t| now >= t + self.gap());
        if due {
            self.last_sent = Some(now);
            self.answered = false;
        }
        due
    }

    /// When [`Self::poll`] next has something to do.
    pub fn timeout(&self) -> Option<Instant> {
        match (self.pending, self.last_sent) {
            (true, Some(t)) => Some(t + self.gap()),
            _ => None,
        }
    }
}

/// Simulcast streams a track's requests are kept apart for; a higher index
/// (never sent by browsers) is treated as "any stream".
pub const MAX_STREAMS: usize = 4;

/// Keyframe requests of one published track, aggregated per simulcast stream:
/// a subscriber waiting to switch to stream 2 is answered by a keyframe of
/// stream 2 only (a keyframe of stream 0 does not stop the repeats), and a
/// repeat asks stream 2 alone, so the publisher's other encoders are left
/// alone. `None` asks every stream (a subscriber that cannot say which one
/// it needs) and is answered by any keyframe.
#[derive(Debug)]
pub struct TrackKeyframes {
    answered_gap: Duration,
    unanswered_gap: Duration,
    any: KeyframeRequests,
    streams: [Option<KeyframeRequests>; MAX_STREAMS],
}

impl TrackKeyframes {
    pub fn new(answered_gap: Duration, unanswered_gap: Duration) -> Self {
        Self {
            answered_gap,
            unanswered_gap,
            any: KeyframeRequests::new(answered_gap, unanswered_gap),
            streams: Default::default(),
        }
    }

    fn slot(&mut self, stream: Option<u8>) -> &mut KeyframeRequests {
        match stream.map(usize::from).filter(|s| *s < MAX_STREAMS) {
            Some(s) => {
                let (a, u) = (self.answered_gap, self.unanswered_gap);
                self.streams[s].get_or_insert_with(|| KeyframeRequests::new(a, u))
            }
            None => &mut self.any,
        }
    }

    /// Someone needs a keyframe of `stream` (`None`: of any). Returns the
    /// request to send now, if one is due: `Some(stream)`. While a request
    /// to every stream is out, one for a single stream adds nothing.
    pub fn request(&mut self, stream: Option<u8>, now: Instant) -> Option<Option<u8>> {
        let stream = stream.filter(|s| usize::from(*s) < MAX_STREAMS);
        if stream.is_some() && self.any.pending() {
            return None;
        }
        self.slot(stream).request(now).then_some(stream)
    }

    /// A keyframe of `stream` arrived.
    pub fn on_keyframe(&mut self, stream: u8) {
        self.any.on_keyframe();
        if let Some(Some(k)) = self.streams.get_mut(usize::from(stream)) {
            k.on_keyframe();
        }
    }

    /// The requests due now (repeats of unanswered ones), in stream order,
    /// `None` (every stream) first.
    pub fn poll(&mut self, now: Instant) -> impl Iterator<Item = Option<u8>> + '_ {
        let any = self.any.poll(now).then_some(None);
        let streams = self
            .streams
            .iter_mut()
            .enumerate()
            .filter_map(move |(i, k)| {
                let k = k.as_mut()?;
                // MAX_STREAMS fits in a u8.
                k.poll(now).then_some(Some(i as u8))
            });
        any.into_iter().chain(streams)
    }

    /// When [`Self::poll`] next has something to do.
    pub fn timeout(&self) -> Option<Instant> {
        std::iter::once(&self.any)
            .chain(self.streams.iter().flatten())
            .filter_map(KeyframeRequests::timeout)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_and_repeats_until_answered() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut k = KeyframeRequests::new(ms(200), ms(500));
        assert!(k.request(t0));
        assert!(!k.request(t0 + ms(10)));
        assert!(!k.request(t0 + ms(200)));
        assert_eq!(k.timeout(), Some(t0 + ms(500)));
        assert!(!k.poll(t0 + ms(499)));
        assert!(k.poll(t0 + ms(500)));
        k.on_keyframe();
        assert_eq!(k.timeout(), None);
        assert!(!k.poll(t0 + ms(2000)));
        assert!(k.request(t0 + ms(2000)));
    }

    #[test]
    fn streams_are_answered_and_repeated_on_their_own() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut k = TrackKeyframes::new(ms(200), ms(500));
        assert_eq!(k.request(Some(2), t0), Some(Some(2)));
        assert_eq!(k.request(Some(0), t0), Some(Some(0)));
        assert_eq!(k.request(Some(2), t0 + ms(10)), None);
        // Stream 0's keyframe does not answer stream 2's request.
        k.on_keyframe(0);
        assert_eq!(k.timeout(), Some(t0 + ms(500)));
        assert_eq!(k.poll(t0 + ms(499)).count(), 0);
        assert_eq!(k.poll(t0 + ms(500)).collect::<Vec<_>>(), vec![Some(2)]);
        k.on_keyframe(2);
        assert_eq!(k.timeout(), None);
        // Any stream: answered by a keyframe of any.
        assert_eq!(k.request(None, t0 + ms(600)), Some(None));
        k.on_keyframe(1);
        assert_eq!(k.timeout(), None);
        // While a request to every stream is out, one stream's adds nothing.
        assert_eq!(k.request(None, t0 + ms(900)), Some(None));
        assert_eq!(k.request(Some(1), t0 + ms(910)), None);
        k.on_keyframe(1);
        assert_eq!(k.request(Some(1), t0 + ms(920)), Some(Some(1)));
        // An index past the streams kept apart counts as any.
        assert_eq!(k.request(Some(200), t0 + ms(1200)), Some(None));
    }

    #[test]
    fn answered_requests_allow_a_sooner_next_one() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut k = KeyframeRequests::new(ms(200), ms(500));
        assert!(k.request(t0));
        k.on_keyframe();
        // A new joiner 150 ms later waits only until the short gap ends.
        assert!(!k.request(t0 + ms(150)));
        assert_eq!(k.timeout(), Some(t0 + ms(200)));
        assert!(k.poll(t0 + ms(200)));
        // That one is unanswered: the next waits for the long gap.
        assert!(!k.request(t0 + ms(450)));
        assert_eq!(k.timeout(), Some(t0 + ms(700)));
    }
}
