//! The `Clock` port: the only source of "now" in ems.

use std::sync::atomic::{fence, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use parking_lot::Mutex;

/// Source of the current instant. Nothing in `ems-core` reads the system time
/// directly, so expiry, sales windows and circuit breakers are testable.
pub trait Clock: Send + Sync + 'static {
    /// The current instant in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to. Clones share the same instant.
///
/// ```
/// use ems_core::clock::{Clock, ManualClock};
/// let clock = ManualClock::new("2030-01-01T10:00:00Z".parse().unwrap());
/// clock.advance(chrono::Duration::minutes(15));
/// assert_eq!(clock.now().to_rfc3339(), "2030-01-01T10:15:00+00:00");
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Shared>,
}

/// The instant a [`ManualClock`] and its clones show, as a sequence lock:
/// reading it writes no shared memory, so tasks on many threads asking the
/// time do not contend (a mutex would pass its cache line between them on
/// every read); the rare writers take turns.
#[derive(Debug)]
struct Shared {
    /// Even while `secs` and `nanos` agree; odd while a writer changes them.
    version: AtomicU64,
    secs: AtomicI64,
    nanos: AtomicU32,
    /// Serializes writers.
    writer: Mutex<()>,
}

impl Shared {
    fn read(&self) -> DateTime<Utc> {
        loop {
            let before = self.version.load(Ordering::Acquire);
            let secs = self.secs.load(Ordering::Relaxed);
            let nanos = self.nanos.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if before % 2 == 0 && self.version.load(Ordering::Relaxed) == before {
                return DateTime::from_timestamp(secs, nanos)
                    .expect("the parts of an instant that was stored whole");
            }
            std::hint::spin_loop();
        }
    }

    fn write(&self, change: impl FnOnce(DateTime<Utc>) -> DateTime<Utc>) {
        let _turn = self.writer.lock();
        let at = change(self.read());
        let version = self.version.load(Ordering::Relaxed);
        self.version.store(version + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.secs.store(at.timestamp(), Ordering::Relaxed);
        self.nanos
            .store(at.timestamp_subsec_nanos(), Ordering::Relaxed);
        self.version.store(version + 2, Ordering::Release);
    }
}

impl ManualClock {
    /// A clock frozen at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Shared {
                version: AtomicU64::new(0),
                secs: AtomicI64::new(start.timestamp()),
                nanos: AtomicU32::new(start.timestamp_subsec_nanos()),
                writer: Mutex::new(()),
            }),
        }
    }

    /// Moves the clock forward (or backward, for a negative duration).
    pub fn advance(&self, by: Duration) {
        self.now.write(|now| now + by);
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        self.now.write(|_| at);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.now.read()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_keeps_every_nanosecond_and_moves_both_ways() {
        let start: DateTime<Utc> = "2030-01-01T10:00:00.123456789Z".parse().unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::nanoseconds(-123_456_790));
        assert_eq!(
            clock.now().to_rfc3339(),
            "2030-01-01T09:59:59.999999999+00:00"
        );
        let early: DateTime<Utc> = "1000-06-01T00:00:00Z".parse().unwrap();
        clock.set(early);
        assert_eq!(clock.clone().now(), early, "clones share the instant");
    }

    #[test]
    fn readers_never_see_half_of_a_change() {
        // The two instants differ in both parts: a torn read would mix them.
        let a: DateTime<Utc> = "2030-01-01T10:00:00.999999999Z".parse().unwrap();
        let b: DateTime<Utc> = "2030-01-01T10:00:01Z".parse().unwrap();
        let clock = ManualClock::new(a);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (clock, stop) = (clock.clone(), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Relaxed) || reads < 1_000 {
                        let now = clock.now();
                        assert!(now == a || now == b, "torn read: {now}");
                        reads += 1;
                    }
                })
            })
            .collect();
        for i in 0..20_000 {
            clock.set(if i % 2 == 0 { b } else { a });
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().expect("no torn read");
        }
    }
}
