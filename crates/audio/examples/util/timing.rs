//! Timing for the examples that measure the audio paths.

use std::time::{Duration, Instant};

/// How often each measurement runs; the fastest run counts.
pub const RUNS: usize = 5;

/// The fastest of [`RUNS`] runs of `f` (the others include noise from the
/// rest of the machine).
pub fn best<F: FnMut()>(mut f: F) -> Duration {
    (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}
