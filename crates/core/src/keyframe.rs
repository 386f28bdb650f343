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
