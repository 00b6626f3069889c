//! # ems-storage-memory
//!
//! The in-memory backend of ems: the reference semantics of every storage port,
//! fast enough to embed, and the test double of every other crate.
//!
//! [`MemoryStore`] is a cheap `Clone` handle over shared state: clones see the same
//! data, so two clones behave like two server processes over one database. Each
//! event's inventory, holds, bookings, payments and tickets live behind one lock,
//! so every domain-atomic port operation is a single critical section; different
//! events never contend. A booking is one record with its payments, refunds and
//! tickets, in a numbered slot of its event's shard; the store's indexes name
//! a booking, payment, refund or ticket by shard and slot (8 bytes), and
//! idempotency keys and gateway references by a keyed 128-bit digest, every
//! lookup checking the record it finds against the key asked for (a
//! booking's own payment key, `booking-{id}`, is not indexed at all: its
//! record tells). The indexes of bookings, payments and tickets by id keep
//! their entries sorted, in chunks: ids are minted in time order (UUID
//! v7), so a new entry goes right after the last one, in memory already in
//! cache, where a hash table would put it at a random place. Records keep
//! each fact once: a booking takes its lines, quote and
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

use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use ems_core::id::*;
use ems_core::{Error, Result};
use lock::Mutex;
use parking_lot::RwLock;

use index::IdIndex;
use state::{Config, CouponBook, Directory, EventIndex, Outbox, Shard};

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
#[repr(align(128))]
struct ShardCell {
    lock: Mutex<Shard>,
    published: ArcSwap<Config>,
}

impl ShardCell {
    fn new(shard: Shard) -> Self {
        Self {
            published: ArcSwap::new(Arc::clone(&shard.config)),
            lock: Mutex::new(shard),
        }
    }
}

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
    holds: Index<HoldId, u32>,
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

    /// Every event's shard.
    fn all_shards(&self) -> impl Iterator<Item = &Mutex<Shard>> {
        self.inner.numbered.iter().map(|(_, cell)| &cell.lock)
    }

    fn shard_or_missing(&self, event: EventId) -> Result<&Mutex<Shard>> {
        self.shard(event)
            .ok_or_else(|| Error::not_found("event", event))
    }

    /// Shard number `n`.
    fn numbered(&self, n: u32) -> Option<&Mutex<Shard>> {
        self.inner.numbered.get(n as usize).map(|cell| &cell.lock)
    }

    /// The shard of hold `id`.
    fn hold_shard(&self, id: &HoldId) -> Option<&Mutex<Shard>> {
        self.numbered(self.hold_number(id)?)
    }

    /// Moves hold `id` of shard `number`, just booked, from `holds` to
    /// `booked_holds`: entered there before it leaves `holds`.
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

    /// The shard number of hold `id`. A hold moving to `booked_holds` is
    /// entered there before it leaves `holds`, so it is always in one of them.
    fn hold_number(&self, id: &HoldId) -> Option<u32> {
        match self.inner.holds.get(id) {
            Some(n) => Some(*n.value()),
            None => self.inner.booked_holds.get(id),
        }
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
