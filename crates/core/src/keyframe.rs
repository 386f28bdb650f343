//! Keyframe request aggregation for one published track.
//!
//! Many subscribers may ask for a keyframe at once (joins, losses); the
//! publisher gets at most one request per interval, and a request that was
//! not answered by a keyframe is repeated once the interval has passed.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct KeyframeRequests {
    interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeRequests {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_sent: None,
            pending: false,
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
    }

    /// Returns true when a pending request is due now.
    pub fn poll(&mut self, now: Instant) -> bool {
        if !self.pending {
            return false;
        }
        let due = self.last_sent.is_none_or(|t| now >= t + self.interval);
        if due {
            self.last_sent = Some(now);
        }
        due
    }

    /// When [`Self::poll`] next has something to do.
    pub fn timeout(&self) -> Option<Instant> {
        match (self.pending, self.last_sent) {
            (true, Some(t)) => Some(t + self.interval),
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
        let mut k = KeyframeRequests::new(ms(500));
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
}
