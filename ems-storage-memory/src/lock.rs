//! The lock of the store's hot structures: spins briefly before it parks.
//!
//! Store operations hold a shard's lock for a microsecond or two. A thread
//! that finds it taken does best to wait that long on its own core: parking
//! (`futex`) and being woken cost more than the whole critical section, and
//! `parking_lot`'s own wait yields to the scheduler first, a system call per
//! attempt. [`Mutex::lock`] therefore retries with a growing pause for a
//! bounded time ([`SPINS`] looks, tens of microseconds at most) and only
//! then waits in `parking_lot`'s queue, so a holder that was preempted costs
//! its waiters little more than a parked wait would.

use parking_lot::MutexGuard;

/// How many times a waiter looks at the lock before it parks; the pause
/// between looks doubles up to 32 `spin_loop` hints.
const SPINS: u32 = 64;

/// A `parking_lot` mutex whose waiters spin first (see the module docs).
#[derive(Default)]
pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

impl<T> Mutex<T> {
    /// A mutex holding `value`.
    pub(crate) fn new(value: T) -> Self {
        Self(parking_lot::Mutex::new(value))
    }

    /// Locks, spinning for a bounded time before parking.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        if let Some(guard) = self.0.try_lock() {
            return guard;
        }
        for round in 0..SPINS {
            for _ in 0..(1u32 << round.min(5)) {
                std::hint::spin_loop();
            }
            if !self.0.is_locked() {
                if let Some(guard) = self.0.try_lock() {
                    return guard;
                }
            }
        }
        self.0.lock()
    }

    /// Locks if nobody holds the lock.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.0.try_lock()
    }
}
