//! # ems-storage-memory
//!
//! The in-memory backend of ems: the reference semantics of every storage port,
//! fast enough to embed, and the test double of every other crate.
//!
//! [`MemoryStore`] is a cheap `Clone` handle over shared state: clones see the same
//! data, so two clones behave like two server processes over one database. Each
//! event's inventory, bookings, payments and tickets live behind one lock, and
//! its holds not yet booked in lanes beside it, one per thread that places
//! them (so that the cores selling one hot event do not pass the holds' tables
//! back and forth); every domain-atomic port operation holds the locks of all
//! it touches at once, so it is a single critical section; different events
//! never contend. A booking is one record with its payments, refunds and
//! tickets, in a numbered slot of its event's shard; the store's indexes name
//! a booking, payment, refund or ticket by shard and slot (8 bytes), and
//! idempotency keys and gateway references by a keyed 128-bit digest, every
//! lookup checking the record it finds against the key asked for (a
//! booking's own payment key, `booking-{id}`
//! ([`booking_payment_key`](ems_core::payment::booking_payment_key)), is not
//! indexed at all: its record tells). The indexes of bookings, payments and
//! tickets by id keep their entries sorted, in chunks: ids are minted in
//! time order (UUID v7), so a new entry goes right after the last one, in
//! memory already in cache, where a hash table would put it at a random
//! place. Records keep each fact once: a booking takes its lines, quote and
//! customer from its hold, a hold's quote keeps only what its lines do not say
//! (amounts in 8 bytes each), and payments and tickets take their booking and
//! event from the record they live in; what is read is rebuilt whole and
//! equal to what was written.
//! Listings are deterministic (ordered by keys, never by hash order). Nothing
//! is persisted.
//!
//! ```
//! use std::sync::Arc;
//! use ems_core::Ems;
//! use ems_storage_memory::MemoryStore;
//!
//! let ems = Ems::builder(Arc::new(MemoryStore::new())).build().unwrap();
//! # let _ = ems;
//! ```

mod booking;
mod directory;
mod event;
mod facility;
mod index;
mod inventory;
mod lock;
mod outbox;
mod payment;
mod pricing;
mod state;
mod ticket;

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use ems_core::id::*;
use ems_core::{Error, Result};
use lock::Mutex;
use parking_lot::RwLock;

use index::IdIndex;
use state::{Config, CouponBook, Directory, EventIndex, Events, HoldSet, Outbox, Shard};

/// The in-memory store. See the crate docs.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("events", &self.inner.events.len())
            .finish_non_exhaustive()
    }
}

/// Concurrent maps keyed by ids: aHash, since SipHash's DoS resistance buys
/// nothing for random UUID keys and costs a fifth of a hold's time.
type Index<K, V> = DashMap<K, V, ahash::RandomState>;

/// An index whose values are [`Loc`]s: a hash map (keys of no order) or an
/// [`IdIndex`] (time-ordered ids).
trait LocIndex<K> {
    /// Where `key`'s record is.
    fn loc(&self, key: &K) -> Option<Loc>;
}

impl<K: std::hash::Hash + Eq> LocIndex<K> for Index<K, Loc> {
    fn loc(&self, key: &K) -> Option<Loc> {
        self.get(key).map(|e| *e.value())
    }
}

impl<K: index::Id> LocIndex<K> for IdIndex<K, Loc> {
    fn loc(&self, key: &K) -> Option<Loc> {
        self.get(key)
    }
}

/// Where a booking's record lives: its event's shard (by number, see
/// [`Inner::numbered`]) and its slot there (see [`state::Bookings`]). Indexes
/// of bookings and of what hangs off them (payments, refunds, tickets) name
/// this, 8 bytes, instead of an id that another index would have to resolve.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Loc {
    shard: u32,
    slot: u32,
}

/// A shard's lock and data on cache lines of their own: shards sit side by
/// side in [`Inner::numbered`], and one hot event's lock must not share a
/// line with its neighbour's data.
///
/// Beside the lock, the shard's [`Config`] as last published: a hold is
/// planned from it before the lock is taken (pricing is most of a hold's
/// work, and on a hot event every core can price at once), and under the lock
/// the plan is used only if the shard's config is still that very version.
/// Reading it writes nothing shared, so planners on different cores do not
/// contend. A change to the config is published by the first hold that finds
/// the published version behind.
///
/// Beside them, the event's *lanes*: a hold placed by a single `try_hold`
/// is kept, until it is booked, in the lane of the thread that placed it,
/// under that lane's own lock (a thread always using the same one). The
/// shard's lock then only guards what every hold must
/// see (the units taken, the event's domain events), a few cache lines,
/// while each hold's record, its place in the expiry order and the queue of
/// ended holds stay in the cache of the core that made them: when several
/// cores sell one hot event, the lines that move between them at each turn
/// of the shard's lock are those few, not the holds' tables. An event's
/// lanes are made with its first such hold after a thread has had to wait
/// for its lock (an event one thread at a time sells pays nothing for
/// them: its holds stay the shard's own), twice as many as the machine has
/// cores ([`lane_count`]). Locks are always taken lanes first (in their
/// order), then the shard. A lane's holds that lapse are expired by the
/// first operation at a later instant (see [`MemoryStore::lock_at`]), as
/// the shard's own are.
#[repr(align(128))]
struct ShardCell {
    lock: Mutex<Shard>,
    published: ArcSwap<Config>,
    lanes: OnceLock<Box<[Lane]>>,
}

impl ShardCell {
    fn new(shard: Shard) -> Self {
        Self {
            published: ArcSwap::new(Arc::clone(&shard.config)),
            lock: Mutex::new(shard),
            lanes: OnceLock::new(),
        }
    }

    /// The lanes made so far (none before the event's first hold placed in
    /// one).
    fn lanes(&self) -> &[Lane] {
        self.lanes.get().map_or(&[], |lanes| lanes)
    }

    /// Lane `n`, made with the others on first use.
    fn lane(&self, n: u8) -> &Lane {
        let lanes = self
            .lanes
            .get_or_init(|| (0..lane_count()).map(|_| Lane::default()).collect());
        &lanes[usize::from(n) % lanes.len()]
    }
}

/// Lanes per event (see [`ShardCell`]): twice the machine's cores, so that
/// a runtime's workers rarely share one, from 2 to 64.
fn lane_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(2, |n| 2 * n.get())
            .clamp(2, 64)
    })
}

/// One lane's holds, on cache lines of its own.
#[derive(Default)]
#[repr(align(128))]
struct Lane(parking_lot::Mutex<HoldSet>);

/// The lane of the calling thread: threads are given lanes in turn as they
/// first ask, so a runtime's few workers each get their own.
fn my_lane() -> u8 {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static LANE: u8 = u8::try_from(NEXT.fetch_add(1, Relaxed) % lane_count()).unwrap_or(0);
    }
    LANE.with(|lane| *lane)
}

/// Where a hold is: its event's shard (by number) and the lane keeping it,
/// or [`OWN`] for the shard's own set.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct HoldAt {
    shard: u32,
    lane: u8,
}

/// [`HoldAt::lane`] of a hold the shard keeps itself.
const OWN: u8 = u8::MAX;

type ShardGuard<'a> = parking_lot::MutexGuard<'a, Shard>;
type LaneGuard<'a> = parking_lot::MutexGuard<'a, HoldSet>;

#[derive(Default)]
struct Inner {
    directory: RwLock<Directory>,
    /// Each event's shard number.
    events: Index<EventId, u32>,
    /// Every event's shard, by number, in order of creation (events are never
    /// removed, so a number never changes and a shard lives as long as the
    /// store: callers borrow it instead of counting references to it).
    numbered: boxcar::Vec<ShardCell>,
    event_index: RwLock<EventIndex>,
    /// The shard number of each hold without a booking. A hash map, not an
    /// [`IdIndex`]: such holds are forgotten in bulk once ended
    /// (`purge_ended_holds`), and on a hot event concurrent holds overtake
    /// each other; `cargo bench --bench hot_event` ran 10–15 % slower at 8
    /// tasks with an `IdIndex` here.
    holds: Index<HoldId, HoldAt>,
    /// The shard number of each hold with a booking, moved here from `holds`
    /// when the booking is opened: such a hold is never forgotten, and in an
    /// `IdIndex` the many holds of a store's bookings stay out of the hash
    /// map every new hold is entered in (which stays small, and in cache).
    booked_holds: IdIndex<HoldId, u32>,
    bookings: IdIndex<BookingId, Loc>,
    keys: Fingerprinter,
    booking_keys: Index<Fingerprint, Loc>,
    /// Each customer's bookings, sorted: a vector costs a fraction of a
    /// B-tree's nodes (one node holds eleven ids, whatever the customer has).
    customer_bookings: Index<UserId, Vec<BookingId>>,
    payments: IdIndex<PaymentId, Loc>,
    payment_keys: Index<Fingerprint, PaymentId>,
    payment_refs: Index<Fingerprint, Loc>,
    refunds: Index<RefundId, Loc>,
    tickets: IdIndex<TicketId, Loc>,
    outbox: Mutex<Outbox>,
    coupons: Arc<Mutex<CouponBook>>,
    facilities: Mutex<facility::FacilityState>,
}

/// A 128-bit keyed digest of a string key (a customer's idempotency key, a
/// payment's key, a gateway reference): the indexes keep 16 bytes per key
/// instead of the key itself. Every lookup checks the record it finds against
/// the key asked for, so even a digest collision (odds about 2^-128 per pair)
/// could never hand one customer's booking to another.
// Two halves rather than a u128: a u128 is 16-byte aligned, which would pad
// every entry whose value is smaller than 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Fingerprint([u64; 2]);

/// Two independently seeded hashers (random per store), one for each half of
/// a [`Fingerprint`].
#[derive(Default)]
struct Fingerprinter([ahash::RandomState; 2]);

impl Fingerprinter {
    fn of<T: std::hash::Hash + ?Sized>(&self, value: &T) -> Fingerprint {
        let [a, b] = &self.0;
        Fingerprint([a.hash_one(value), b.hash_one(value)])
    }

    fn booking_key(&self, customer: UserId, key: &str) -> Fingerprint {
        self.of(&(customer, key))
    }

    fn payment_key(&self, key: &str) -> Fingerprint {
        self.of(key)
    }

    fn reference(&self, gateway: &str, reference: &str) -> Fingerprint {
        self.of(&(gateway, reference))
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, event: EventId) -> Option<&Mutex<Shard>> {
        self.cell(event).map(|cell| &cell.lock)
    }

    /// The shard of `event` with its published config.
    fn cell(&self, event: EventId) -> Option<&ShardCell> {
        self.numbered_cell(event).map(|(_, cell)| cell)
    }

    /// The number and shard of `event`.
    fn numbered_cell(&self, event: EventId) -> Option<(u32, &ShardCell)> {
        // The number is copied out, so the map's internal lock is released
        // before the shard is locked.
        let n = *self.inner.events.get(&event)?.value();
        Some((n, self.inner.numbered.get(n as usize)?))
    }

    fn shard_or_missing(&self, event: EventId) -> Result<&Mutex<Shard>> {
        self.cell_or_missing(event).map(|cell| &cell.lock)
    }

    /// [`MemoryStore::numbered_cell`], or `NotFound` for the event.
    fn numbered_cell_or_missing(&self, event: EventId) -> Result<(u32, &ShardCell)> {
        self.numbered_cell(event)
            .ok_or_else(|| Error::not_found("event", event))
    }

    /// [`MemoryStore::cell`], or `NotFound` for the event.
    fn cell_or_missing(&self, event: EventId) -> Result<&ShardCell> {
        self.numbered_cell_or_missing(event).map(|(_, cell)| cell)
    }

    /// Shard number `n`.
    fn numbered(&self, n: u32) -> Option<&Mutex<Shard>> {
        self.inner.numbered.get(n as usize).map(|cell| &cell.lock)
    }

    /// Shard number `n` with its lanes.
    fn numbered_at(&self, n: u32) -> Option<&ShardCell> {
        self.inner.numbered.get(n as usize)
    }

    /// Locks `cell`'s shard once none of its lanes keeps a hold due at
    /// `now`: lanes whose holds may be due are swept first (lanes, then the
    /// shard, locked in order), so under the guard the units taken count
    /// only holds that are live at `now`, as an operation at `now` must see
    /// them. Expiring the shard's own holds is the caller's part.
    fn lock_at<'a>(&self, cell: &'a ShardCell, now: Option<DateTime<Utc>>) -> ShardGuard<'a> {
        loop {
            let s = cell.lock.lock();
            let Some(now) = now.filter(|now| s.lanes_due_by(*now)) else {
                return s;
            };
            drop(s);
            self.sweep(cell, now, u32::MAX);
        }
    }

    /// As [`MemoryStore::lock_at`], with lane `lane` locked before the shard.
    fn lock_lane_at<'a>(
        &self,
        cell: &'a ShardCell,
        lane: u8,
        now: Option<DateTime<Utc>>,
    ) -> (LaneGuard<'a>, ShardGuard<'a>) {
        loop {
            let l = cell.lane(lane).0.lock();
            let s = cell.lock.lock();
            let Some(now) = now.filter(|now| s.lanes_due_by(*now)) else {
                return (l, s);
            };
            drop(s);
            drop(l);
            self.sweep(cell, now, u32::MAX);
        }
    }

    /// Every lane of `cell` and its shard, locked in order.
    fn lock_all<'a>(&self, cell: &'a ShardCell) -> (Vec<LaneGuard<'a>>, ShardGuard<'a>) {
        let lanes = cell.lanes().iter().map(|l| l.0.lock()).collect();
        (lanes, cell.lock.lock())
    }

    /// Expires the holds of `cell` due at `now`, its own and its lanes' (at
    /// most `limit`); returns how many.
    fn sweep(&self, cell: &ShardCell, now: DateTime<Utc>, limit: u32) -> u32 {
        let (mut lanes, mut s) = self.lock_all(cell);
        let mut out = Events::new();
        let mut n = s.expire_due(None, now, limit, &mut out);
        for lane in &mut lanes {
            n += s.expire_due(Some(lane), now, limit - n, &mut out);
        }
        s.lanes_due = lanes.iter().filter_map(|l| l.first_due()).min();
        self.record(now, out);
        n
    }

    /// Where hold `id` is, and its shard. A hold moving to its shard's own
    /// set (when booked) is entered in `booked_holds` before it leaves
    /// `holds`, so it is always in one of them.
    fn hold_at(&self, id: &HoldId) -> Option<(HoldAt, &ShardCell)> {
        let at = match self.inner.holds.get(id) {
            Some(at) => *at.value(),
            None => HoldAt {
                shard: self.inner.booked_holds.get(id)?,
                lane: OWN,
            },
        };
        Some((at, self.numbered_at(at.shard)?))
    }

    /// Locks hold `id`'s lane (if a lane keeps it) and shard, as
    /// [`MemoryStore::lock_lane_at`] does: `None` if there is no such hold.
    /// The lane is `None` when the shard keeps the hold itself.
    #[allow(clippy::type_complexity)]
    fn lock_hold_at(
        &self,
        id: &HoldId,
        now: Option<DateTime<Utc>>,
    ) -> Option<(Option<LaneGuard<'_>>, ShardGuard<'_>)> {
        loop {
            let (at, cell) = self.hold_at(id)?;
            if at.lane == OWN {
                return Some((None, self.lock_at(cell, now)));
            }
            let (lane, s) = self.lock_lane_at(cell, at.lane, now);
            if lane.holds.contains_key(id) {
                return Some((Some(lane), s));
            }
            // Booked (moved to the shard's own set) or purged meanwhile:
            // look again.
            if self.hold_at(id).is_some_and(|(again, _)| again == at) {
                return Some((Some(lane), s));
            }
        }
    }

    /// Moves hold `id` of shard `number`, just booked (and moved to the
    /// shard's own set), from `holds` to `booked_holds`: entered there
    /// before it leaves `holds`.
    fn hold_booked(&self, id: HoldId, number: u32) {
        self.inner.booked_holds.insert(id, number);
        self.inner.holds.remove(&id);
    }

    /// Whether hold `id` is among the booked ones (a new hold's id, above
    /// every booked one, is answered from the index's last key). Called with
    /// `id`'s entry in `holds` held: a hold that left `holds` for
    /// `booked_holds` was entered there first, which is seen here.
    fn is_booked(&self, id: &HoldId) -> bool {
        self.inner.booked_holds.contains_key(id)
    }

    /// Where `key` of `index` (a booking, payment, refund or ticket id, or a
    /// booking's key) is kept: its shard, and where its booking is there.
    fn shard_at<K>(&self, index: &impl LocIndex<K>, key: &K) -> Option<(&Mutex<Shard>, Loc)> {
        let loc = index.loc(key)?;
        Some((self.numbered(loc.shard)?, loc))
    }

    /// Reads from the booking record at `loc`.
    fn read_loc<T>(
        &self,
        loc: Loc,
        read: impl FnOnce(&Shard, &state::BookingRec) -> Option<T>,
    ) -> Option<T> {
        let shard = self.numbered(loc.shard)?;
        let s = shard.lock();
        s.bookings.at(loc.slot).and_then(|r| read(&s, r))
    }

    /// Reads from the booking record that holds `key` of `index` (see
    /// [`MemoryStore::shard_at`]).
    fn read_at<K, T>(
        &self,
        index: &impl LocIndex<K>,
        key: &K,
        read: impl FnOnce(&Shard, &state::BookingRec) -> Option<T>,
    ) -> Option<T> {
        let loc = index.loc(key)?;
        self.read_loc(loc, read)
    }

    /// Reads from booking `id`'s record.
    fn read_booking<T>(
        &self,
        id: BookingId,
        read: impl FnOnce(&Shard, &state::BookingRec) -> T,
    ) -> Option<T> {
        self.read_at(&self.inner.bookings, &id, |s, r| Some(read(s, r)))
    }
}

#[cfg(test)]
mod conformance {
    use std::sync::Arc;

    use ems_core::testkit::TestStores;

    use crate::MemoryStore;

    ems_core::conformance_tests!(|| async {
        let store = MemoryStore::new();
        TestStores::new(Arc::new(store.clone()), Arc::new(store))
    });
}
