//! The lock of the store's hot structures: it learns how its waiters should
//! wait.
//!
//! Store operations hold a shard's lock for a microsecond or two. Two ways of
//! waiting for it win on different machines, and the lock measures which:
//!
//! - **Spinning** ([`Policy::Spin`]): a waiter looks at the lock with a
//!   growing pause for a bounded time ([`SPINS`] looks, tens of microseconds
//!   at most), then parks in `parking_lot`'s queue. Parking (`futex`) and being
//!   woken cost more than a whole critical section, so this is best when a
//!   cache line moves between the cores quickly: the two cores then
//!   overlap everything outside the critical section, and a hot event
//!   does half again as much with two cores as with one.
//! - **Sleeping** ([`Policy::Sleep`]): a waiter sleeps [`NAP`] between looks,
//!   leaving the lock to whichever core holds it, which then takes it again
//!   and again with everything the critical section touches in its own
//!   cache. This is best when the cores sit apart (two vCPUs on separate
//!   dies: ~180 ns a cache line each way), where taking turns moves every
//!   line the section writes: on such a machine two spinning cores on one
//!   hot event did 0.36–0.38 of what one does alone, two sleeping ones
//!   0.57–0.62 (the rest went to the event's working set, its hold table
//!   and indexes, moving over whenever the other core got the lock; that
//!   was measured before an event's holds moved to per-thread lanes, see
//!   [`crate::ShardCell`]). A
//!   waiter then waits tens of microseconds, not one or two; where the
//!   cores share a cache, sleeping gives ~0.95 against spinning's ~1.5,
//!   and the lock stays with spinning.
//!
//! While threads wait, the lock counts how many acquisitions a window of
//! [`WINDOW`] of them takes per unit of time under the current policy,
//! keeps the better one, and every [`EXPLORE`]th contended window tries
//! the other again (machines change: a VM's vCPUs move between dies). A
//! lock nobody waits for never changes policy and pays for one clock
//! reading per [`WINDOW`] acquisitions.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;

/// How many times a spinning waiter looks at the lock before it parks; the
/// pause between looks doubles up to 32 `spin_loop` hints.
const SPINS: u32 = 64;

/// How long a sleeping waiter sleeps between looks.
const NAP: Duration = Duration::from_micros(20);

/// How many naps a sleeping waiter takes before it parks (a bound on how
/// long it can be passed over, ~10 ms).
const NAPS: u32 = 128;

/// Acquisitions per measuring window.
const WINDOW: u32 = 2048;

/// Every this many contended windows, the policy not in use is measured
/// again.
const EXPLORE: u32 = 32;

/// How a waiter waits (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum Policy {
    /// Spin with a growing pause, then park.
    Spin = 0,
    /// Sleep between looks.
    Sleep = 1,
}

impl Policy {
    fn of(n: u8) -> Self {
        if n == Self::Sleep as u8 {
            Self::Sleep
        } else {
            Self::Spin
        }
    }

    fn other(self) -> Self {
        match self {
            Self::Spin => Self::Sleep,
            Self::Sleep => Self::Spin,
        }
    }
}

/// A `parking_lot` mutex whose waiters wait as the lock has measured best
/// (see the module docs).
// The tuner first, so that it shares the lock word's cache line.
#[repr(C)]
pub(crate) struct Mutex<T> {
    tuner: Tuner,
    inner: parking_lot::Mutex<T>,
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> Mutex<T> {
    /// A mutex holding `value`.
    pub(crate) fn new(value: T) -> Self {
        Self {
            tuner: Tuner::default(),
            inner: parking_lot::Mutex::new(value),
        }
    }

    /// Locks, waiting as the lock's policy says.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        match self.inner.try_lock() {
            Some(guard) => {
                self.tuner.acquired(false);
                guard
            }
            None => {
                if !self.tuner.waited.load(Relaxed) {
                    self.tuner.waited.store(true, Relaxed);
                }
                self.tuner.waiting.fetch_add(1, Relaxed);
                let guard = self.wait(self.tuner.policy());
                self.tuner.waiting.fetch_sub(1, Relaxed);
                self.tuner.acquired(true);
                guard
            }
        }
    }

    /// Whether a thread has ever had to wait for this lock.
    pub(crate) fn has_waited(&self) -> bool {
        self.tuner.waited.load(Relaxed)
    }

    /// Locks if nobody holds the lock.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let guard = self.inner.try_lock()?;
        self.tuner.acquired(false);
        Some(guard)
    }

    /// Waits for the lock under `policy`, then takes it.
    fn wait(&self, policy: Policy) -> MutexGuard<'_, T> {
        match policy {
            Policy::Spin => {
                for round in 0..SPINS {
                    for _ in 0..(1u32 << round.min(5)) {
                        std::hint::spin_loop();
                    }
                    if !self.inner.is_locked() {
                        if let Some(guard) = self.inner.try_lock() {
                            return guard;
                        }
                    }
                }
            }
            Policy::Sleep => {
                for _ in 0..NAPS {
                    std::thread::sleep(NAP);
                    if let Some(guard) = self.inner.try_lock() {
                        return guard;
                    }
                }
            }
        }
        self.inner.lock()
    }
}

/// A lock's waiting policy and its measurements, on the lock word's cache
/// line. All but `waiting` and `waited` (which waiters write)
/// are written only by the thread holding the lock, with plain loads and
/// stores of atomics, so they add no traffic of their own.
#[derive(Default)]
struct Tuner {
    policy: AtomicU8,
    /// Whether a thread has ever waited (set by the waiter).
    waited: AtomicBool,
    /// Threads waiting now.
    waiting: AtomicU32,
    /// Acquisitions in the current window, and how many of them were made
    /// while some thread waited.
    taken: AtomicU32,
    contended: AtomicU32,
    /// Contended windows measured so far.
    windows: AtomicU32,
    /// Whether a contended window has gone by under the current policy: the
    /// first is not measured (waiters that began under the old policy are
    /// still in it).
    settled: AtomicBool,
    /// When the current window began (nanoseconds since [`epoch`]; 0: not
    /// begun).
    window_start: AtomicU64,
    /// The last contended window's acquisitions per millisecond under each
    /// policy (0: not measured yet).
    rates: [AtomicU64; 2],
}

/// The instant the lock's clock readings count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos_now() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Tuner {
    /// The policy waiters use now.
    fn policy(&self) -> Policy {
        Policy::of(self.policy.load(Relaxed))
    }

    /// Counts an acquisition (called with the lock held; `waited`: by a
    /// thread that had to wait for it) and, at the end of a window,
    /// measures it and picks the policy for the next. An acquisition is
    /// contended if its thread waited or another thread waits: two spinning
    /// threads taking turns each wait for every acquisition, while a thread
    /// taking the lock again and again as the other sleeps never does.
    fn acquired(&self, waited: bool) {
        let taken = self.taken.load(Relaxed) + 1;
        self.taken.store(taken, Relaxed);
        if waited || self.waiting.load(Relaxed) > 0 {
            self.contended
                .store(self.contended.load(Relaxed) + 1, Relaxed);
        }
        if taken < WINDOW {
            return;
        }
        let now = nanos_now();
        let start = self.window_start.load(Relaxed);
        let contended = self.contended.load(Relaxed);
        self.taken.store(0, Relaxed);
        self.contended.store(0, Relaxed);
        self.window_start.store(now, Relaxed);
        // A window counts only if threads waited through most of it (and it
        // has a start): otherwise it measured the callers, not the lock.
        if start == 0 || contended * 2 < taken {
            return;
        }
        if !self.settled.load(Relaxed) {
            self.settled.store(true, Relaxed);
            return;
        }
        let elapsed = now.saturating_sub(start).max(1);
        let rate = (u64::from(taken) * 1_000_000 / elapsed).max(1);
        let current = self.policy();
        let kept = &self.rates[current as usize];
        kept.store(smoothed(kept.load(Relaxed), rate), Relaxed);
        let windows = self.windows.load(Relaxed).wrapping_add(1);
        self.windows.store(windows, Relaxed);
        let next = choose(
            current,
            [self.rates[0].load(Relaxed), self.rates[1].load(Relaxed)],
            windows,
        );
        if next != current {
            self.settled.store(false, Relaxed);
            self.policy.store(next as u8, Relaxed);
        }
    }
}

/// A policy's rate with a new window's `sample` folded in (a quarter of the
/// weight: one window is noisy).
fn smoothed(kept: u64, sample: u64) -> u64 {
    if kept == 0 {
        sample
    } else {
        (3 * kept + sample) / 4
    }
}

/// The policy after a measured window of `current`: the other one every
/// [`EXPLORE`]th window or while it is unmeasured; otherwise the other only
/// if its rate beats this one's by a tenth (one window's noise should not
/// flip it back and forth).
fn choose(current: Policy, rates: [u64; 2], windows: u32) -> Policy {
    let other = current.other();
    let (mine, theirs) = (rates[current as usize], rates[other as usize]);
    if theirs == 0 || windows % EXPLORE == 0 || theirs * 10 > mine * 11 {
        other
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_better_measured_policy_is_kept_and_the_other_tried_now_and_then() {
        assert_eq!(smoothed(0, 400), 400);
        assert_eq!(smoothed(400, 800), 500);
        use Policy::*;
        // Unmeasured: try it.
        assert_eq!(choose(Spin, [100, 0], 1), Sleep);
        assert_eq!(choose(Sleep, [0, 100], 1), Spin);
        // Both measured: the faster, by more than a tenth.
        assert_eq!(choose(Spin, [100, 300], 3), Sleep);
        assert_eq!(choose(Sleep, [100, 300], 3), Sleep);
        assert_eq!(choose(Spin, [300, 100], 5), Spin);
        assert_eq!(choose(Sleep, [300, 100], 5), Spin);
        assert_eq!(choose(Spin, [100, 105], 5), Spin);
        assert_eq!(choose(Sleep, [105, 100], 5), Sleep);
        // Every EXPLORE-th window: the other, whatever was measured.
        assert_eq!(choose(Spin, [300, 100], EXPLORE), Sleep);
        assert_eq!(choose(Sleep, [100, 300], 2 * EXPLORE), Spin);
    }

    #[test]
    fn a_lock_tells_whether_a_thread_ever_waited_for_it() {
        let lock = Arc::new(Mutex::new(0u32));
        for _ in 0..3 {
            *lock.lock() += 1;
        }
        assert!(lock.try_lock().is_some());
        assert!(!lock.has_waited(), "taken in turn, never waited for");
        let held = lock.lock();
        let waiter = {
            let lock = Arc::clone(&lock);
            std::thread::spawn(move || *lock.lock() += 1)
        };
        // The waiter cannot get the lock while it is held: it waits (and
        // says so) until then, however long it takes to start.
        while lock.tuner.waiting.load(Relaxed) == 0 {
            std::thread::yield_now();
        }
        drop(held);
        waiter.join().expect("waiter finishes");
        assert!(lock.has_waited());
        assert_eq!(*lock.lock(), 4);
    }

    /// Many threads add to one counter under the lock, under each policy
    /// and while it measures: none of their additions is lost.
    fn hammer(threads: usize, per_thread: u64, policy: Option<Policy>) -> u64 {
        let lock = Arc::new(Mutex::new(0u64));
        if let Some(p) = policy {
            lock.tuner.policy.store(p as u8, Relaxed);
        }
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..per_thread {
                        let mut n = lock.lock();
                        // A read, a pause and a write: a lost update shows.
                        let seen = *n;
                        std::hint::spin_loop();
                        *n = seen + 1;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread finishes");
        }
        let total = *lock.lock();
        total
    }

    #[test]
    fn every_policy_excludes_and_makes_progress() {
        assert_eq!(hammer(4, 20_000, Some(Policy::Spin)), 80_000);
        assert_eq!(hammer(4, 2_000, Some(Policy::Sleep)), 8_000);
        // Left to measure: windows of both policies go by.
        assert_eq!(hammer(4, 50_000, None), 200_000);
    }

    #[test]
    fn contended_windows_measure_both_policies() {
        let lock = Mutex::new(());
        let raw = &lock.tuner;
        // As if a thread waited throughout: every window is contended.
        raw.waiting.store(1, Relaxed);
        for _ in 0..5 * WINDOW {
            drop(lock.lock());
        }
        // The first window only starts the clock, and the first under each
        // policy is not measured: windows 3 (spin, then a switch to the
        // unmeasured sleep) and 5 (sleep) are.
        assert_eq!(raw.windows.load(Relaxed), 2);
        let rates = [raw.rates[0].load(Relaxed), raw.rates[1].load(Relaxed)];
        assert!(rates.iter().all(|&r| r > 0), "both measured: {rates:?}");
        // Nobody waiting: windows go by unmeasured, the policy stays.
        raw.waiting.store(0, Relaxed);
        let policy = raw.policy();
        for _ in 0..4 * WINDOW {
            drop(lock.lock());
        }
        assert_eq!(raw.windows.load(Relaxed), 2);
        assert_eq!(raw.policy(), policy);
    }
}
