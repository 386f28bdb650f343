//! The worker's wake-up timer. Tokio's timer wheel has millisecond slots and
//! fires up to ~2 ms after the deadline; str0m's pacer and its probe
//! clusters (packets 2 ms apart for 15 ms) are timed finer than that, and a
//! probe sent a third slower than planned measures a third less bandwidth.
//! On Linux this is a `timerfd` (a kernel high-resolution timer, woken
//! through the runtime's epoll like a socket); elsewhere tokio's sleep.

use std::time::Instant;

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Instant;

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    pub struct Timer {
        fd: AsyncFd<OwnedFd>,
    }

    impl Timer {
        pub fn new() -> io::Result<Timer> {
            // SAFETY: timerfd_create takes no pointers; a non-negative result
            // is a new descriptor that we own from here on.
            let raw = unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a valid descriptor nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: the AsyncFd owns the descriptor and nothing closes or
            // replaces it while registered.
            let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
            Ok(Timer { fd })
        }

        /// Arms the timer for `deadline` (at least 1 µs ahead: zero would
        /// disarm it), replacing any earlier setting.
        pub fn arm(&self, deadline: Instant) {
            let d = deadline
                .saturating_duration_since(Instant::now())
                .max(std::time::Duration::from_micros(1));
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: d.as_secs() as libc::time_t,
                    tv_nsec: d.subsec_nanos() as libc::c_long,
                },
            };
            // SAFETY: the descriptor is ours and `spec` outlives the call;
            // the old value is not asked for (null).
            let r = unsafe {
                libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut())
            };
            if r < 0 {
                tracing::warn!("timerfd_settime: {}", io::Error::last_os_error());
            }
        }

        /// Waits until the armed deadline has passed.
        pub async fn fired(&self) {
            loop {
                let Ok(mut guard) = self.fd.readable().await else {
                    // The reactor is gone: the runtime is shutting down.
                    return std::future::pending().await;
                };
                let mut count = [0u8; 8];
                let r = guard.try_io(|fd| {
                    // SAFETY: reads at most 8 bytes into `count`.
                    let n = unsafe {
                        libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len())
                    };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                });
                match r {
                    Ok(Ok(())) => return,
                    // Not expired yet (readiness was stale): wait again.
                    Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Ok(Err(e)) => {
                        tracing::warn!("timerfd read: {e}");
                        return;
                    }
                    Err(_would_block) => continue,
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::cell::Cell;
    use std::time::Instant;

    pub struct Timer {
        deadline: Cell<Instant>,
    }

    impl Timer {
        pub fn new() -> std::io::Result<Timer> {
            Ok(Timer {
                deadline: Cell::new(Instant::now()),
            })
        }

        pub fn arm(&self, deadline: Instant) {
            self.deadline.set(deadline);
        }

        pub async fn fired(&self) {
            tokio::time::sleep_until(self.deadline.get().into()).await
        }
    }
}

/// A one-shot timer re-armed before each wait.
pub struct Timer(imp::Timer);

impl Timer {
    pub fn new() -> std::io::Result<Timer> {
        imp::Timer::new().map(Timer)
    }

    pub fn arm(&self, deadline: Instant) {
        self.0.arm(deadline)
    }

    pub async fn fired(&self) {
        self.0.fired().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fires_after_the_deadline_and_rearming_replaces_it() {
        let t = Timer::new().unwrap();
        let start = Instant::now();
        t.arm(start + Duration::from_secs(30));
        // Re-armed sooner: the later setting is gone.
        t.arm(start + Duration::from_millis(3));
        t.fired().await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(3), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        // A deadline in the past fires at once.
        t.arm(start);
        t.fired().await;
    }
}
