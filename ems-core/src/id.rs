//! Typed identifiers. Each is a UUID v7 ([`mint`]), so ids sort by creation
//! time: to the millisecond, and within one among the ids a thread mints.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Bits of a v7 id's counter (RFC 9562, section 6.2, method 1): the 12 of
/// `rand_a` and the first 30 of `rand_b`.
const COUNTER_BITS: u32 = 42;

thread_local! {
    /// This thread's last id: its millisecond and counter.
    static LAST: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A fresh UUID v7: the Unix time in milliseconds, a 42-bit counter and 32
/// random bits (RFC 9562, section 6.2, method 1, as `uuid`'s own
/// `ContextV7` lays them out).
///
/// Each thread keeps its own counter, so minting takes no process-wide
/// lock: the counter starts at a random 41-bit value in each new
/// millisecond and counts up within it, so a thread's ids strictly
/// increase (a clock that steps back keeps the last millisecond; a counter
/// that runs out moves to the next one). Ids of different threads in the
/// same millisecond are ordered by chance, and differ in their random
/// counter start and tail.
pub fn mint() -> Uuid {
    Minter::start().mint()
}

/// Mints several ids on one reading of the clock: each is what [`mint`]
/// would give at that reading (a thread's ids still strictly increase), and
/// a checkout's hold, booking and payment, or a booking's tickets, do not
/// read the system clock once each.
pub(crate) struct Minter {
    /// Milliseconds since the Unix epoch when the minter started.
    now: u64,
}

impl Minter {
    /// A minter at the clock's current millisecond.
    pub(crate) fn start() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self { now }
    }

    /// The next id.
    pub(crate) fn mint(&mut self) -> Uuid {
        let (ms, counter) = LAST.with(|last| {
            let next = step(last.get(), self.now, || {
                rand::random::<u64>() >> (64 - (COUNTER_BITS - 1))
            });
            last.set(next);
            next
        });
        v7_of(ms, counter, rand::random())
    }
}

/// The millisecond and counter of the id after `(last_ms, count)` when the
/// clock reads `now`: a new millisecond (or a counter run out) starts at
/// `seed()`, a random value below half the counter's range, leaving room to
/// count up.
fn step((last_ms, count): (u64, u64), now: u64, seed: impl FnOnce() -> u64) -> (u64, u64) {
    if now > last_ms {
        (now, seed())
    } else if count + 1 < 1 << COUNTER_BITS {
        (last_ms, count + 1)
    } else {
        (last_ms + 1, seed())
    }
}

/// The UUID v7 of a millisecond, a 42-bit counter and 32 random bits.
fn v7_of(ms: u64, counter: u64, random: u32) -> Uuid {
    let high = (ms & 0xFFFF_FFFF_FFFF) << 16 | 0x7 << 12 | counter >> 30;
    let low = 0b10 << 62 | (counter & ((1 << 30) - 1)) << 32 | u64::from(random);
    Uuid::from_u64_pair(high, low)
}

/// `prefix` followed by `id` as `Display` spells it (hyphenated, lower
/// case), built in one allocation of its exact size: `format!` would grow
/// its string while writing.
pub(crate) fn prefixed(prefix: &str, id: &Uuid) -> String {
    let mut buf = Uuid::encode_buffer();
    let text = id.hyphenated().encode_lower(&mut buf);
    let mut out = String::with_capacity(prefix.len() + text.len());
    out.push_str(prefix);
    out.push_str(text);
    out
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh id: a UUID v7 (see [`mint`]): time-ordered, and
            /// increasing among the ids one thread mints.
            pub fn new() -> Self {
                Self(mint())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, "({})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|e| crate::Error::invalid($label, e.to_string()))
            }
        }
    };
}

typed_id!(/// Identifies an [`Organization`](crate::directory::Organization).
    OrganizationId, "organization_id");
typed_id!(/// Identifies a user profile.
    UserId, "user_id");
typed_id!(/// Identifies an [`Event`](crate::event::Event).
    EventId, "event_id");
typed_id!(/// Identifies a [`TicketTier`](crate::inventory::TicketTier).
    TierId, "tier_id");
typed_id!(/// Identifies a shared [`Quota`](crate::inventory::SharedQuota).
    QuotaId, "quota_id");
typed_id!(/// Identifies a [`Hold`](crate::inventory::Hold).
    HoldId, "hold_id");
typed_id!(/// Identifies a [`Booking`](crate::booking::Booking).
    BookingId, "booking_id");
typed_id!(/// Identifies a [`Payment`](crate::payment::Payment).
    PaymentId, "payment_id");
typed_id!(/// Identifies a [`Refund`](crate::payment::Refund).
    RefundId, "refund_id");
typed_id!(/// Identifies a [`Ticket`](crate::ticket::Ticket).
    TicketId, "ticket_id");
typed_id!(/// Identifies a [`Coupon`](crate::pricing::Coupon).
    CouponId, "coupon_id");
typed_id!(/// Identifies a facility [`Resource`](crate::facility::Resource).
    ResourceId, "resource_id");
typed_id!(/// Identifies a [`FacilityBooking`](crate::facility::FacilityBooking).
    FacilityBookingId, "facility_booking_id");
typed_id!(/// Identifies a package of facility bookings made together.
    PackageId, "package_id");

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_prefixed_id_is_spelled_as_format_spells_it() {
        let id = BookingId::new();
        let built = prefixed("booking-", id.as_uuid());
        assert_eq!(built, format!("booking-{id}"));
        assert_eq!(built.capacity(), built.len());
    }

    #[test]
    fn minted_ids_are_rfc_9562_version_7_with_the_current_millisecond() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let id = mint();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        let ms = u128::from(secs) * 1000 + u128::from(nanos) / 1_000_000;
        assert!(before.as_millis() <= ms && ms <= after.as_millis());
    }

    #[test]
    fn a_minter_s_ids_carry_its_millisecond_and_increase_with_the_thread_s() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let mut ids = Minter::start();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let first = mint();
        // Minted after `first`, on a reading taken before it: still after it.
        let batch: Vec<Uuid> = (0..1_000).map(|_| ids.mint()).collect();
        let last = mint();
        assert!(first < batch[0] && batch.windows(2).all(|w| w[0] < w[1]));
        assert!(batch[batch.len() - 1] < last);
        // The minter's millisecond, or a later one the thread's ids reached.
        let latest = after.as_millis().max(millisecond_of(&first));
        for id in &batch {
            assert_eq!(id.get_version_num(), 7);
            let ms = millisecond_of(id);
            assert!(before.as_millis() <= ms && ms <= latest);
        }
    }

    fn millisecond_of(id: &Uuid) -> u128 {
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        u128::from(secs) * 1000 + u128::from(nanos) / 1_000_000
    }

    #[test]
    fn one_threads_ids_strictly_increase() {
        let ids: Vec<Uuid> = (0..100_000).map(|_| mint()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_counter_counts_within_a_millisecond_and_carries_into_the_next() {
        let ms = 1_700_000_000_000;
        let max = (1 << COUNTER_BITS) - 1;
        let seed = || 5;
        // A later millisecond starts afresh; the same one, or a clock that
        // stepped back, counts on; a full counter moves to the next.
        assert_eq!(step((ms, 9), ms + 3, seed), (ms + 3, 5));
        assert_eq!(step((ms, 9), ms, seed), (ms, 10));
        assert_eq!(step((ms, 9), ms - 20, seed), (ms, 10));
        assert_eq!(step((ms, max), ms, seed), (ms + 1, 5));
        assert!(v7_of(ms, max, u32::MAX) < v7_of(ms + 1, 5, 0));
        // The counter's bits land in rand_a and rand_b, clear of the
        // version and variant bits.
        let (high, low) = v7_of(0, max, 0).as_u64_pair();
        assert_eq!(high, 0x7FFF);
        assert_eq!(low, 0xBFFF_FFFF_0000_0000);
        // A seed leaves room to count up.
        let seeds = (0..1_000).map(|_| rand::random::<u64>() >> (64 - (COUNTER_BITS - 1)));
        assert!(seeds.into_iter().all(|s| s < 1 << (COUNTER_BITS - 1)));
    }

    #[test]
    fn ids_minted_on_many_threads_at_once_are_all_distinct() {
        let threads: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| (0..50_000).map(|_| mint()).collect::<Vec<_>>()))
            .collect();
        let mut seen = HashSet::new();
        for t in threads {
            for id in t.join().unwrap() {
                assert!(seen.insert(id), "{id} minted twice");
            }
        }
        assert_eq!(seen.len(), 400_000);
    }
}
