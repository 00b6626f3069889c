//! The data behind the lock of one event, and the helpers every port shares.

use std::collections::{BTreeSet, VecDeque};

use chrono::{DateTime, Utc};
use ems_core::booking::{Booking, BookingReason, BookingStatus};
use ems_core::directory::{Organization, UserProfile};
use ems_core::event::Event;
use ems_core::id::*;
use ems_core::inventory::{
    Hold, HoldLine, HoldStatus, HoldTerms, QuotaKey, SharedQuota, TicketTier,
};
use ems_core::money::{Currency, Money};
use ems_core::outbox::{DomainEvent, RecordedEvent};
use ems_core::payment::{
    booking_payment_key, is_booking_payment_key, Payment, PaymentStatus, Refund,
};
use ems_core::pricing::{Coupon, Quote, QuoteLine, TaxMode};
use ems_core::ticket::{Ticket, TicketStatus};
use ems_core::{Error, Result};
use rust_decimal::Decimal;
use std::sync::Arc;

use crate::index::Key;
use crate::lock::Mutex;

/// Hash maps keyed by ids (see `Index` for why aHash).
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

#[derive(Default)]
pub(crate) struct Directory {
    pub(crate) organizations: HashMap<OrganizationId, Organization>,
    pub(crate) users: HashMap<UserId, UserProfile>,
    pub(crate) emails: HashMap<String, UserId>,
}

#[derive(Default)]
pub(crate) struct EventIndex {
    pub(crate) by_start: BTreeSet<(DateTime<Utc>, EventId)>,
}

/// Events per chunk of the outbox.
const OUTBOX_CHUNK: usize = 4096;

/// The domain-event log in fixed-size chunks: appending never reallocates (and
/// so never copies) the whole log under its lock, however long it grows.
#[derive(Default)]
pub(crate) struct Outbox {
    chunks: VecDeque<Vec<RecordedEvent>>,
    pub(crate) last_seq: u64,
}

impl Outbox {
    pub(crate) fn push(&mut self, occurred_at: DateTime<Utc>, event: DomainEvent) {
        self.last_seq += 1;
        if self.chunks.back().is_none_or(|c| c.len() == OUTBOX_CHUNK) {
            self.chunks.push_back(Vec::with_capacity(OUTBOX_CHUNK));
        }
        if let Some(chunk) = self.chunks.back_mut() {
            chunk.push(RecordedEvent {
                seq: self.last_seq,
                occurred_at,
                event,
            });
        }
    }

    /// Up to `limit` events with `seq > after`, oldest first.
    pub(crate) fn read(&self, after: u64, limit: usize) -> Vec<RecordedEvent> {
        let first = self
            .chunks
            .partition_point(|c| c.last().is_none_or(|e| e.seq <= after));
        let mut out = Vec::with_capacity(limit.min(1024));
        for chunk in self.chunks.iter().skip(first) {
            let start = chunk.partition_point(|e| e.seq <= after);
            for e in &chunk[start..] {
                if out.len() == limit {
                    return out;
                }
                out.push(e.clone());
            }
        }
        out
    }

    /// Drops the events with `seq <= up_to`; returns how many.
    pub(crate) fn prune(&mut self, up_to: u64) -> u64 {
        let mut dropped = 0u64;
        while self
            .chunks
            .front()
            .is_some_and(|c| c.last().is_none_or(|e| e.seq <= up_to))
        {
            if let Some(c) = self.chunks.pop_front() {
                dropped += c.len() as u64;
            }
        }
        if let Some(front) = self.chunks.front_mut() {
            let n = front.partition_point(|e| e.seq <= up_to);
            front.drain(..n);
            dropped += n as u64;
        }
        dropped
    }
}

/// Coupons and their use counts, shared by every event (an organization's coupon
/// spans its events). Locked after a shard's lock, never before.
#[derive(Default)]
pub(crate) struct CouponBook {
    pub(crate) by_id: HashMap<CouponId, CouponState>,
    pub(crate) by_code: HashMap<(OrganizationId, String), CouponId>,
}

pub(crate) struct CouponState {
    pub(crate) coupon: Coupon,
    pub(crate) uses: u32,
    pub(crate) per_customer: HashMap<UserId, u32>,
}

impl CouponBook {
    /// Counts one use by `customer`.
    pub(crate) fn take(&mut self, id: CouponId, customer: UserId) {
        if let Some(c) = self.by_id.get_mut(&id) {
            c.uses += 1;
            *c.per_customer.entry(customer).or_insert(0) += 1;
        }
    }

    /// Gives one use by `customer` back.
    pub(crate) fn give_back(&mut self, id: CouponId, customer: UserId) {
        if let Some(c) = self.by_id.get_mut(&id) {
            c.uses = c.uses.saturating_sub(1);
            if let Some(n) = c.per_customer.get_mut(&customer) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

/// The gateway names an event's records use, each kept once; records name
/// them by number (an event sees a handful).
#[derive(Default)]
pub(crate) struct Names(Vec<Box<str>>);

/// A name's number in its event's [`Names`].
#[derive(Clone, Copy)]
pub(crate) struct Name(u32);

impl Names {
    /// The number of `name`, added if new.
    pub(crate) fn number(&mut self, name: &str) -> Name {
        let i = match self.0.iter().position(|n| &**n == name) {
            Some(i) => i,
            None => {
                self.0.push(name.into());
                self.0.len() - 1
            }
        };
        // Four billion distinct names would need far more memory than a process has.
        Name(u32::try_from(i).expect("fewer than 2^32 names"))
    }

    /// The name numbered `n` here.
    pub(crate) fn get(&self, n: Name) -> &str {
        &self.0[n.0 as usize]
    }
}

/// The domain events one operation causes, gathered under the shard's lock
/// and recorded before it is released: most operations cause one or two, and
/// keeping those inline spares a heap allocation inside the critical section.
pub(crate) type Events = smallvec::SmallVec<[DomainEvent; 2]>;

/// What an event's holds are planned against: the event, its tiers and its
/// shared quotas.
///
/// A shard shares it with holds planned before its lock is taken (see
/// [`crate::ShardCell`]); every change goes through [`Shard::config_mut`],
/// which copies it whenever anyone else still has it, so a plan made from an
/// older version is told apart by the address of the version it was made
/// from.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) event: Event,
    pub(crate) tiers: Vec<TicketTier>,
    pub(crate) shared: Vec<SharedQuota>,
}

/// Everything of one event, changed only under its lock.
pub(crate) struct Shard {
    pub(crate) coupons: Arc<Mutex<CouponBook>>,
    /// The event, its tiers and shared quotas: what holds are planned
    /// against. Changed only through [`Shard::config_mut`].
    pub(crate) config: Arc<Config>,
    /// Per tier with velocity rules: (when, units) of recent holds, oldest first,
    /// kept as long as the tier's longest velocity window.
    pub(crate) recent: HashMap<TierId, VecDeque<(DateTime<Utc>, u32)>>,
    /// Units taken (held + sold) per quota; a handful of entries, scanned linearly.
    pub(crate) taken: Vec<(QuotaKey, u32)>,
    /// The holds kept here rather than in a lane (see [`crate::ShardCell`]):
    /// every hold with a booking, and the holds of batches.
    pub(crate) own: HoldSet,
    /// No hold in a lane of this shard expires before this (`None`: no
    /// lane holds one): a hold entering a lane lowers it, and an operation
    /// at a later instant first expires the lanes' due holds (see
    /// [`crate::MemoryStore::lock_at`]).
    pub(crate) lanes_due: Option<DateTime<Utc>>,
    /// Each booking with its payments, refunds and tickets, in its slot.
    pub(crate) bookings: Bookings,
    /// This shard's number in the store (indexes name shards by it).
    pub(crate) number: u32,
    /// Gateway names of the event's bookings and payments.
    pub(crate) gateways: Names,
}

/// Holds of one event with what finds them by expiry and by end.
#[derive(Default)]
pub(crate) struct HoldSet {
    pub(crate) holds: HashMap<HoldId, Box<HoldRec>>,
    pub(crate) expiry: BTreeSet<(DateTime<Utc>, HoldId)>,
    /// Ended holds without a booking, oldest first: what `purge_ended_holds` may forget.
    pub(crate) ended: VecDeque<(DateTime<Utc>, HoldId)>,
}

impl HoldSet {
    /// When the first active hold here expires.
    pub(crate) fn first_due(&self) -> Option<DateTime<Utc>> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// Enters a new active hold.
    pub(crate) fn insert(&mut self, rec: Box<HoldRec>) {
        self.expiry.insert((rec.expires_at, rec.id));
        self.holds.insert(rec.id, rec);
    }

    /// Takes hold `id` out, with its place in the expiry order.
    pub(crate) fn take(&mut self, id: &HoldId) -> Option<Box<HoldRec>> {
        let rec = self.holds.remove(id)?;
        self.expiry.remove(&(rec.expires_at, rec.id));
        Some(rec)
    }

    /// Enters a hold taken from another set as it was (see [`HoldSet::take`]).
    pub(crate) fn put(&mut self, rec: Box<HoldRec>) {
        if rec.status == HoldStatus::Active {
            self.expiry.insert((rec.expires_at, rec.id));
        }
        self.holds.insert(rec.id, rec);
    }
}

/// An event's bookings. Each record is boxed in a slot whose number never
/// changes (bookings are never removed), so the store's indexes name a booking
/// by shard and slot in 8 bytes instead of by its 16-byte id; the slots are
/// also kept by booking id, for lookups by id and listings in id order.
#[derive(Default)]
pub(crate) struct Bookings {
    /// (id, slot), sorted by id: ids are minted in time order, so a new
    /// booking's goes at the end (or near it, overtaken by a concurrent one).
    by_id: Vec<(Key, u32)>,
    #[allow(
        clippy::vec_box,
        reason = "a grown Vec's spare capacity costs 8 bytes per slot boxed, \
                  a whole record unboxed, and growing copies pointers, not records"
    )]
    slots: Vec<Box<BookingRec>>,
}

impl Bookings {
    /// Where booking `id` is (`Ok`) or would go (`Err`) in `by_id`.
    fn position(&self, id: &BookingId) -> std::result::Result<usize, usize> {
        let key = Key::id(*id);
        // The newest booking is the one a checkout's next steps (its
        // payment, its confirmation) look up, and a new one goes after it.
        match self.by_id.last() {
            Some((last, _)) if *last < key => Err(self.by_id.len()),
            Some((last, _)) if *last == key => Ok(self.by_id.len() - 1),
            _ => self.by_id.binary_search_by(|(k, _)| k.cmp(&key)),
        }
    }

    /// Booking `id`'s record.
    pub(crate) fn get(&self, id: &BookingId) -> Option<&BookingRec> {
        self.slot_of(id).and_then(|n| self.at(n))
    }

    /// Booking `id`'s record, to change.
    pub(crate) fn get_mut(&mut self, id: &BookingId) -> Option<&mut BookingRec> {
        let n = self.slot_of(id)?;
        self.at_mut(n)
    }

    /// The slot of booking `id`.
    pub(crate) fn slot_of(&self, id: &BookingId) -> Option<u32> {
        self.position(id).ok().map(|i| self.by_id[i].1)
    }

    /// The record in slot `n`.
    pub(crate) fn at(&self, n: u32) -> Option<&BookingRec> {
        self.slots.get(n as usize).map(|r| &**r)
    }

    /// The record in slot `n`, to change.
    pub(crate) fn at_mut(&mut self, n: u32) -> Option<&mut BookingRec> {
        self.slots.get_mut(n as usize).map(|r| &mut **r)
    }

    /// The number of the slot the next booking kept goes to.
    pub(crate) fn next_slot(&self) -> u32 {
        // Four billion bookings of one event would need far more memory than a
        // process has.
        u32::try_from(self.slots.len()).expect("fewer than 2^32 bookings per event")
    }

    /// Keeps `rec`, booking `id`'s (not kept yet: the caller checked), in a
    /// new slot ([`Bookings::next_slot`]); returns the slot's number.
    pub(crate) fn insert(&mut self, id: BookingId, rec: BookingRec) -> u32 {
        let n = self.next_slot();
        self.slots.push(Box::new(rec));
        match self.position(&id) {
            Ok(i) => self.by_id[i].1 = n,
            Err(i) => self.by_id.insert(i, (Key::id(id), n)),
        }
        n
    }

    /// The records in id order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &BookingRec> + '_ {
        self.by_id.iter().filter_map(|&(_, n)| self.at(n))
    }

    /// The records newest id first: all, or those with ids below `before`.
    pub(crate) fn newest_first(
        &self,
        before: Option<BookingId>,
    ) -> impl Iterator<Item = &BookingRec> + '_ {
        let end = match before {
            Some(b) => {
                let key = Key::id(b);
                self.by_id.partition_point(|(k, _)| *k < key)
            }
            None => self.by_id.len(),
        };
        self.by_id[..end]
            .iter()
            .rev()
            .filter_map(|&(_, n)| self.at(n))
    }
}

impl std::ops::Index<&BookingId> for Bookings {
    type Output = BookingRec;

    /// Booking `id`'s record; panics if the event has no such booking (as a
    /// map's index does).
    fn index(&self, id: &BookingId) -> &BookingRec {
        self.get(id).expect("a booking of this event")
    }
}

/// A hold as its event's shard keeps it. Its event and organization are the
/// shard's; its quote is kept beside its lines: a quote line's tier, quantity
/// and unit price are the hold line's, and every amount's currency is the
/// quote's, so only what the lines do not say is stored. A hold whose quote
/// does not line up with its lines that way (no hold this store makes, but
/// kept exactly all the same) keeps its whole quote.
pub(crate) struct HoldRec {
    pub(crate) id: HoldId,
    pub(crate) customer: UserId,
    pub(crate) status: HoldStatus,
    pub(crate) booking_id: Option<BookingId>,
    pub(crate) coupon: Option<CouponId>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) lines: Box<[HoldLine]>,
    priced: Priced,
}

enum Priced {
    Compact(CompactQuote),
    Whole(Box<(Quote, Money)>),
}

/// A decimal in 8 bytes instead of 16: its mantissa (below 2^55 in size,
/// which every amount of money is) and its scale. `of` refuses what does not
/// fit, so `get` gives back exactly the decimal kept, scale and all.
#[derive(Clone, Copy)]
struct Dec8(i64);

impl Dec8 {
    const LIMIT: i128 = 1 << 55;

    fn of(d: Decimal) -> Option<Self> {
        let mantissa = d.mantissa();
        // A negative zero keeps its sign in a flag the mantissa does not carry.
        let fits = (-Self::LIMIT..Self::LIMIT).contains(&mantissa)
            && !(mantissa == 0 && d.is_sign_negative());
        // The mantissa fits in 56 bits and the scale (≤ 28) in the low 8.
        fits.then(|| Self(((mantissa as i64) << 8) | i64::from(d.scale() as u8)))
    }

    fn get(self) -> Decimal {
        let mantissa = self.0 >> 8;
        let magnitude = mantissa.unsigned_abs();
        // Below 2^55: the low two of the decimal's three 32-bit words.
        Decimal::from_parts(
            magnitude as u32,
            (magnitude >> 32) as u32,
            0,
            mantissa < 0,
            (self.0 & 0xff) as u32,
        )
    }
}

/// A quote without what its hold says (its lines, its coupon), amounts in
/// 8 bytes each.
struct CompactQuote {
    currency: Currency,
    tax_mode: Option<TaxMode>,
    order_fee: Dec8,
    order_fee_tax: Dec8,
    total: Dec8,
    lines: Box<[CompactQuoteLine]>,
}

struct CompactQuoteLine {
    first_position: u32,
    base_price: Dec8,
    rules_applied: Box<[u8]>,
    discount: Dec8,
    fees: Dec8,
    tax: Dec8,
    total: Dec8,
}

impl CompactQuote {
    /// `quote` of a hold with `lines`, `total` and `coupon`, if it fits the
    /// compact form.
    fn of(
        quote: &Quote,
        lines: &[HoldLine],
        total: Money,
        coupon: Option<CouponId>,
    ) -> Option<Self> {
        let c = quote.currency;
        let lined_up = quote.coupon == coupon
            && quote.lines.len() == lines.len()
            && quote.lines.iter().zip(lines).all(|(q, l)| {
                q.tier_id == l.tier_id
                    && q.quantity == l.quantity
                    && q.unit_price == l.unit_price
                    && q.unit_price.currency() == c
                    && [q.base_price, q.discount, q.fees, q.tax, q.total]
                        .iter()
                        .all(|m| m.currency() == c)
            })
            && [quote.order_fee, quote.order_fee_tax, quote.total]
                .iter()
                .all(|m| m.currency() == c)
            && total == quote.total
            && total.currency() == c;
        if !lined_up {
            return None;
        }
        let dec = |m: Money| Dec8::of(m.amount());
        // Sized exactly up front: collecting into an `Option` would grow a
        // vector from nothing and then shrink it into the box.
        let mut lines = Vec::with_capacity(quote.lines.len());
        for q in &quote.lines {
            lines.push(CompactQuoteLine {
                first_position: q.first_position,
                base_price: dec(q.base_price)?,
                rules_applied: q.rules_applied.as_slice().into(),
                discount: dec(q.discount)?,
                fees: dec(q.fees)?,
                tax: dec(q.tax)?,
                total: dec(q.total)?,
            });
        }
        Some(Self {
            currency: c,
            tax_mode: quote.tax_mode,
            order_fee: dec(quote.order_fee)?,
            order_fee_tax: dec(quote.order_fee_tax)?,
            total: dec(quote.total)?,
            lines: lines.into_boxed_slice(),
        })
    }

    /// Whether `quote` is `self.quote(lines, coupon)`, compared field by
    /// field without building it.
    fn is(&self, quote: &Quote, lines: &[HoldLine], coupon: Option<CouponId>) -> bool {
        let money = |amount: Dec8| Money::new(amount.get(), self.currency);
        quote.currency == self.currency
            && quote.coupon == coupon
            && quote.order_fee == money(self.order_fee)
            && quote.order_fee_tax == money(self.order_fee_tax)
            && quote.tax_mode == self.tax_mode
            && quote.total == money(self.total)
            && quote.lines.len() == self.lines.len().min(lines.len())
            && quote
                .lines
                .iter()
                .zip(self.lines.iter().zip(lines))
                .all(|(line, (q, l))| {
                    line.tier_id == l.tier_id
                        && line.quantity == l.quantity
                        && line.first_position == q.first_position
                        && line.base_price == money(q.base_price)
                        && same_bytes(&line.rules_applied, &q.rules_applied)
                        && line.unit_price == l.unit_price
                        && line.discount == money(q.discount)
                        && line.fees == money(q.fees)
                        && line.tax == money(q.tax)
                        && line.total == money(q.total)
                })
    }

    fn quote(&self, lines: &[HoldLine], coupon: Option<CouponId>) -> Quote {
        let money = |amount: Dec8| Money::new(amount.get(), self.currency);
        Quote {
            currency: self.currency,
            lines: self
                .lines
                .iter()
                .zip(lines)
                .map(|(q, l)| QuoteLine {
                    tier_id: l.tier_id,
                    quantity: l.quantity,
                    first_position: q.first_position,
                    base_price: money(q.base_price),
                    rules_applied: q.rules_applied.to_vec(),
                    unit_price: l.unit_price,
                    discount: money(q.discount),
                    fees: money(q.fees),
                    tax: money(q.tax),
                    total: money(q.total),
                })
                .collect(),
            coupon,
            order_fee: money(self.order_fee),
            order_fee_tax: money(self.order_fee_tax),
            tax_mode: self.tax_mode,
            total: money(self.total),
        }
    }
}

/// `a == b`, without calling `memcmp` for two empty slices: an empty
/// slice's pointer is dangling (address 1), and glibc's AVX-512 `memcmp`
/// reads even zero bytes through a masked load, which on an unmapped page
/// the processor completes only through a slow fault-suppression assist
/// (most quotes apply no rule, so this was one in every booking opened).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

impl HoldRec {
    /// Keeps `hold`, a hold of the shard's event (checked by the caller).
    pub(crate) fn of(hold: &Hold) -> Self {
        let priced = match CompactQuote::of(&hold.quote, &hold.lines, hold.total, hold.coupon) {
            Some(q) => Priced::Compact(q),
            None => Priced::Whole(Box::new((hold.quote.clone(), hold.total))),
        };
        Self {
            id: hold.id,
            customer: hold.customer,
            status: hold.status,
            booking_id: hold.booking_id,
            coupon: hold.coupon,
            created_at: hold.created_at,
            expires_at: hold.expires_at,
            lines: hold.lines.as_slice().into(),
            priced,
        }
    }

    /// Moves the quote's lines on by `sold_before(tier)`, as
    /// [`Quote::shift_positions`] does.
    pub(crate) fn shift_positions(&mut self, sold_before: impl Fn(TierId) -> u32) {
        match &mut self.priced {
            // A compact quote's lines are the hold's, tier by tier.
            Priced::Compact(q) => {
                for (line, held) in q.lines.iter_mut().zip(self.lines.iter()) {
                    line.first_position = line
                        .first_position
                        .saturating_add(sold_before(held.tier_id));
                }
            }
            Priced::Whole(whole) => whole.0.shift_positions(sold_before),
        }
    }

    /// Units held.
    pub(crate) fn quantity(&self) -> u32 {
        self.lines.iter().map(|l| l.quantity).sum()
    }

    /// The hold's quote.
    pub(crate) fn quote(&self) -> Quote {
        match &self.priced {
            Priced::Compact(q) => q.quote(&self.lines, self.coupon),
            Priced::Whole(whole) => whole.0.clone(),
        }
    }

    /// What the hold costs.
    pub(crate) fn total(&self) -> Money {
        match &self.priced {
            Priced::Compact(q) => Money::new(q.total.get(), q.currency),
            Priced::Whole(whole) => whole.1,
        }
    }

    /// What booking the hold depends on, of `event` (its shard's event).
    pub(crate) fn terms(&self, event: EventId) -> HoldTerms<'_> {
        HoldTerms {
            id: self.id,
            event_id: event,
            customer: self.customer,
            status: self.status,
            expires_at: self.expires_at,
            booking_id: self.booking_id,
            lines: &self.lines,
            total: self.total(),
        }
    }

    /// Whether `booking` repeats this hold of `event` of `organization`:
    /// event, organization, customer, lines, quote and total, as
    /// `self.hold_of(event, organization)` would compare, without building it.
    pub(crate) fn repeated_by(
        &self,
        booking: &Booking,
        event: EventId,
        organization: OrganizationId,
    ) -> bool {
        booking.event_id == event
            && booking.organization == organization
            && booking.customer == self.customer
            && booking.total == self.total()
            && booking.lines[..] == self.lines[..]
            && match &self.priced {
                Priced::Compact(q) => q.is(&booking.quote, &self.lines, self.coupon),
                Priced::Whole(whole) => whole.0 == booking.quote,
            }
    }

    /// The whole hold, of `event` (its shard's event).
    pub(crate) fn hold(&self, event: &Event) -> Hold {
        self.hold_of(event.id, event.organization)
    }

    /// The whole hold, of `event` of `organization`.
    pub(crate) fn hold_of(&self, event: EventId, organization: OrganizationId) -> Hold {
        Hold {
            id: self.id,
            event_id: event,
            organization,
            customer: self.customer,
            lines: self.lines.to_vec(),
            quote: self.quote(),
            total: self.total(),
            status: self.status,
            booking_id: self.booking_id,
            coupon: self.coupon,
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}

/// A booking and everything that hangs off it, in one record: a checkout adds
/// one allocation instead of one per map, and reading a booking's payments or
/// tickets needs no index of its own.
///
/// A booking repeats much of its hold (event, organization, customer, lines,
/// quote, total): those are kept once, on the hold, and only the booking's own
/// fields here. A booking that differs from its hold in any of them (no
/// checkout makes one, but the port allows it) keeps a whole copy in `own`.
pub(crate) struct BookingRec {
    fields: BookingFields,
    own: Option<Box<Booking>>,
    // Boxed slices: a record's lists are short and rarely grow, and a slice
    // is a third smaller than a `Vec` in every record.
    pub(crate) payments: Box<[StoredPayment]>,
    pub(crate) refunds: Box<[Refund]>,
    pub(crate) tickets: Box<[StoredTicket]>,
}

/// A payment as its booking's record keeps it: its booking and event are the
/// record's, its amounts take 8 bytes each, and the idempotency key every
/// first payment of a checkout has (`booking-{booking id}`) is not spelled
/// out; a key of its own and a failure message, which most payments lack,
/// live in one box.
pub(crate) struct StoredPayment {
    pub(crate) id: PaymentId,
    gateway: Name,
    reference: Option<Box<str>>,
    amounts: Amounts,
    pub(crate) status: PaymentStatus,
    /// `None`: no failure and the booking's own key.
    extra: Option<Box<PaymentExtra>>,
    created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) version: u64,
}

/// A payment's amount and what of it was refunded: packed when both are in
/// one currency and fit [`Dec8`], else whole.
enum Amounts {
    Packed {
        currency: Currency,
        amount: Dec8,
        refunded: Dec8,
    },
    Whole(Box<[Money; 2]>),
}

impl Amounts {
    fn of(amount: Money, refunded: Money) -> Self {
        let packed = (amount.currency() == refunded.currency())
            .then(|| Some((Dec8::of(amount.amount())?, Dec8::of(refunded.amount())?)))
            .flatten();
        match packed {
            Some((a, r)) => Amounts::Packed {
                currency: amount.currency(),
                amount: a,
                refunded: r,
            },
            None => Amounts::Whole(Box::new([amount, refunded])),
        }
    }

    fn get(&self) -> [Money; 2] {
        match self {
            Amounts::Packed {
                currency,
                amount,
                refunded,
            } => [
                Money::new(amount.get(), *currency),
                Money::new(refunded.get(), *currency),
            ],
            Amounts::Whole(whole) => **whole,
        }
    }
}

/// What few payments have: a failure message, a key other than the booking's own.
struct PaymentExtra {
    failure: Option<Box<str>>,
    /// `None`: the booking's own key, `booking-{booking id}`.
    key: Option<Box<str>>,
}

impl StoredPayment {
    /// Keeps `payment` (whose booking and event the caller checked), through
    /// `gateway`, its gateway's number.
    pub(crate) fn of(payment: &Payment, gateway: Name) -> Self {
        let own_key = is_booking_payment_key(&payment.idempotency_key, payment.booking_id);
        let extra = PaymentExtra {
            failure: payment.failure.as_deref().map(Into::into),
            key: (!own_key).then(|| payment.idempotency_key.as_str().into()),
        };
        Self {
            id: payment.id,
            gateway,
            reference: payment.reference.as_deref().map(Into::into),
            amounts: Amounts::of(payment.amount, payment.refunded),
            status: payment.status,
            extra: (extra.failure.is_some() || extra.key.is_some()).then(|| Box::new(extra)),
            created_at: payment.created_at,
            updated_at: payment.updated_at,
            version: payment.version,
        }
    }

    /// The payment, of `booking` for `event`; `names` are the event's gateway
    /// names.
    pub(crate) fn payment(&self, booking: BookingId, event: EventId, names: &Names) -> Payment {
        let [amount, refunded] = self.amounts.get();
        let extra = self.extra.as_deref();
        Payment {
            id: self.id,
            booking_id: booking,
            event_id: event,
            gateway: names.get(self.gateway).to_owned(),
            reference: self.reference.as_deref().map(str::to_owned),
            amount,
            refunded,
            status: self.status,
            failure: extra.and_then(|e| e.failure.as_deref()).map(str::to_owned),
            idempotency_key: match extra.and_then(|e| e.key.as_deref()) {
                Some(key) => key.to_owned(),
                None => booking_payment_key(booking),
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        }
    }

    /// Whether the payment has its booking's own key (`booking-{id}`).
    pub(crate) fn has_own_key(&self) -> bool {
        self.extra.as_ref().is_none_or(|e| e.key.is_none())
    }

    /// What was refunded of the payment.
    pub(crate) fn refunded(&self) -> Money {
        self.amounts.get()[1]
    }

    /// Records that `refunded` of the payment is now refunded.
    pub(crate) fn set_refunded(&mut self, refunded: Money) {
        let [amount, _] = self.amounts.get();
        self.amounts = Amounts::of(amount, refunded);
    }

    /// The gateway's reference, once it gave one.
    pub(crate) fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }
}

/// Appends `item` to `list`, growing it by one only.
fn push<T>(list: &mut Box<[T]>, item: T) {
    let mut v = std::mem::take(list).into_vec();
    v.reserve_exact(1);
    v.push(item);
    *list = v.into_boxed_slice();
}

/// A ticket as its booking's record keeps it: its booking and event are the
/// record's, its tier is one of the booking's lines' and its holder the
/// booking's customer (a ticket that is not so keeps both in `odd`).
pub(crate) struct StoredTicket {
    pub(crate) id: TicketId,
    pub(crate) status: TicketStatus,
    line: u16,
    pub(crate) issued_at: DateTime<Utc>,
    pub(crate) checked_in_at: Option<DateTime<Utc>>,
    odd: Option<Box<(TierId, UserId)>>,
}

impl StoredTicket {
    /// Keeps `ticket` of a booking of `customer` with `lines` (its booking and
    /// event the caller checked).
    pub(crate) fn of(ticket: &Ticket, lines: &[HoldLine], customer: UserId) -> Self {
        let line = lines
            .iter()
            .position(|l| l.tier_id == ticket.tier_id)
            .and_then(|i| u16::try_from(i).ok())
            .filter(|_| ticket.holder == customer);
        Self {
            id: ticket.id,
            status: ticket.status,
            line: line.unwrap_or(0),
            issued_at: ticket.issued_at,
            checked_in_at: ticket.checked_in_at,
            odd: match line {
                Some(_) => None,
                None => Some(Box::new((ticket.tier_id, ticket.holder))),
            },
        }
    }

    /// The ticket, of `booking` (of `customer`, with `lines`) for `event`.
    pub(crate) fn ticket(
        &self,
        booking: BookingId,
        event: EventId,
        lines: &[HoldLine],
        customer: UserId,
    ) -> Ticket {
        let (tier_id, holder) = match &self.odd {
            Some(odd) => **odd,
            None => (lines[usize::from(self.line)].tier_id, customer),
        };
        Ticket {
            id: self.id,
            booking_id: booking,
            event_id: event,
            tier_id,
            holder,
            status: self.status,
            issued_at: self.issued_at,
            checked_in_at: self.checked_in_at,
        }
    }
}

/// What a booking says beyond its hold.
pub(crate) struct BookingFields {
    pub(crate) id: BookingId,
    pub(crate) hold_id: HoldId,
    pub(crate) status: BookingStatus,
    /// Boxed: most bookings have none, and the box keeps the record small.
    pub(crate) reason: Option<Box<BookingReason>>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) version: u64,
    pub(crate) idempotency_key: Box<str>,
    pub(crate) gateway: Name,
}

impl BookingRec {
    /// Stores `booking` through `gateway`, its gateway's number;
    /// `shares_hold`: whether it repeats its hold (see
    /// [`HoldRec::repeated_by`]), which then keeps what they share.
    pub(crate) fn new(booking: &Booking, shares_hold: bool, gateway: Name) -> Self {
        Self {
            fields: BookingFields {
                id: booking.id,
                hold_id: booking.hold_id,
                status: booking.status,
                reason: booking.reason.clone().map(Box::new),
                created_at: booking.created_at,
                updated_at: booking.updated_at,
                version: booking.version,
                idempotency_key: booking.idempotency_key.as_str().into(),
                gateway,
            },
            own: (!shares_hold).then(|| Box::new(booking.clone())),
            payments: Box::default(),
            refunds: Box::default(),
            tickets: Box::default(),
        }
    }

    /// The booking's own fields.
    pub(crate) fn fields(&self) -> &BookingFields {
        &self.fields
    }

    /// The fields to change in place (status, reason, times, version).
    pub(crate) fn fields_mut(&mut self) -> &mut BookingFields {
        &mut self.fields
    }

    /// Adds a payment record.
    pub(crate) fn add_payment(&mut self, payment: &Payment, gateway: Name) {
        push(&mut self.payments, StoredPayment::of(payment, gateway));
    }

    /// This booking's payments, for `event` with gateway `names`.
    pub(crate) fn payments(&self, event: EventId, names: &Names) -> Vec<Payment> {
        self.payments
            .iter()
            .map(|p| p.payment(self.fields.id, event, names))
            .collect()
    }

    /// Adds a refund record.
    pub(crate) fn add_refund(&mut self, refund: Refund) {
        push(&mut self.refunds, refund);
    }

    /// Whether `refund` may still be recorded (pending and succeeded
    /// refunds counted) on this booking of `event` with gateway `names`.
    pub(crate) fn check_refundable(
        &self,
        refund: &Refund,
        event: EventId,
        names: &Names,
    ) -> Result<()> {
        let payment = self
            .payments
            .iter()
            .find(|p| p.id == refund.payment_id)
            .ok_or_else(|| Error::not_found("payment", refund.payment_id))?
            .payment(self.fields.id, event, names);
        ems_core::payment::check_refundable(&payment, refund, self.refunds.iter())
    }
}

/// Returns units to `taken`.
fn give_back(taken: &mut [(QuotaKey, u32)], demand: &[(QuotaKey, u32)]) {
    for (key, n) in demand {
        if let Some((_, c)) = taken.iter_mut().find(|(k, _)| k == key) {
            debug_assert!(*c >= *n, "quota {key} would go negative");
            *c = c.saturating_sub(*n);
        }
    }
}

impl Shard {
    /// The shard of `event`, numbered 0 until the store numbers it.
    pub(crate) fn new(event: Event, coupons: Arc<Mutex<CouponBook>>) -> Self {
        Self {
            coupons,
            config: Arc::new(Config {
                event,
                tiers: Vec::new(),
                shared: Vec::new(),
            }),
            recent: HashMap::default(),
            taken: vec![(QuotaKey::Event, 0)],
            own: HoldSet::default(),
            lanes_due: None,
            bookings: Bookings::default(),
            number: 0,
            gateways: Names::default(),
        }
    }

    /// The event, its tiers and shared quotas, to change: a copy of its own
    /// whenever a planner (or the published version) still has them.
    pub(crate) fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Where booking `id` is kept, in the store's terms.
    pub(crate) fn loc_of(&self, id: &BookingId) -> Option<crate::Loc> {
        Some(crate::Loc {
            shard: self.number,
            slot: self.bookings.slot_of(id)?,
        })
    }

    /// The hold booking `rec` was made on.
    fn booked_hold(&self, rec: &BookingRec) -> &HoldRec {
        // Only ended holds without a booking are ever purged; a booked one is
        // kept by the shard itself.
        self.own
            .holds
            .get(&rec.fields.hold_id)
            .expect("a booked hold is never purged")
    }

    /// The whole booking of `rec`: its own fields, the rest from its hold.
    pub(crate) fn booking(&self, rec: &BookingRec) -> Booking {
        let f = &rec.fields;
        let (status, reason, updated_at, version) = (
            f.status,
            f.reason.as_deref().cloned(),
            f.updated_at,
            f.version,
        );
        let idempotency_key = f.idempotency_key.to_string();
        let gateway = self.gateways.get(f.gateway).to_owned();
        match &rec.own {
            Some(own) => Booking {
                status,
                reason,
                idempotency_key,
                gateway,
                updated_at,
                version,
                ..(**own).clone()
            },
            None => {
                let h = self.booked_hold(rec);
                Booking {
                    id: f.id,
                    event_id: self.config.event.id,
                    organization: self.config.event.organization,
                    customer: h.customer,
                    hold_id: f.hold_id,
                    lines: h.lines.to_vec(),
                    quote: h.quote(),
                    total: h.total(),
                    status,
                    reason,
                    idempotency_key,
                    gateway,
                    created_at: f.created_at,
                    updated_at,
                    version,
                }
            }
        }
    }

    /// Booking `id`, whole.
    pub(crate) fn booking_by_id(&self, id: BookingId) -> Option<Booking> {
        self.bookings.get(&id).map(|r| self.booking(r))
    }

    /// What booking `rec` bought.
    pub(crate) fn booking_lines<'a>(&'a self, rec: &'a BookingRec) -> &'a [HoldLine] {
        match &rec.own {
            Some(own) => &own.lines,
            None => &self.booked_hold(rec).lines,
        }
    }

    /// Ticket `t` of booking `rec`, whole.
    pub(crate) fn ticket(&self, rec: &BookingRec, t: &StoredTicket) -> Ticket {
        t.ticket(
            rec.fields.id,
            self.config.event.id,
            self.booking_lines(rec),
            self.booking_customer(rec),
        )
    }

    /// The customer of booking `rec`.
    pub(crate) fn booking_customer(&self, rec: &BookingRec) -> UserId {
        match &rec.own {
            Some(own) => own.customer,
            None => self.booked_hold(rec).customer,
        }
    }

    pub(crate) fn taken(&self, key: QuotaKey) -> u32 {
        self.taken
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(0, |(_, n)| *n)
    }

    pub(crate) fn capacity(&self, key: QuotaKey) -> u32 {
        ems_core::inventory::quota_capacity(
            &self.config.event,
            &self.config.tiers,
            &self.config.shared,
            key,
        )
    }

    /// Units of `tier` held within each of its velocity windows before `now`.
    pub(crate) fn recent(&self, tier: TierId, now: DateTime<Utc>) -> [u32; 4] {
        let mut out = [0u32; 4];
        let (Some(t), Some(log)) = (
            self.config.tiers.iter().find(|t| t.id == tier),
            self.recent.get(&tier),
        ) else {
            return out;
        };
        for (slot, window) in out.iter_mut().zip(t.pricing.velocity_windows()) {
            let since = now - window;
            *slot = log
                .iter()
                .rev()
                .take_while(|(at, _)| *at > since)
                .map(|(_, n)| *n)
                .sum();
        }
        out
    }

    /// Records a hold of `units` of `tier` at `now` for velocity rules, forgetting
    /// what is older than the tier's longest window.
    pub(crate) fn note_sale(&mut self, tier: TierId, units: u32, now: DateTime<Utc>) {
        let Some(longest) = self
            .config
            .tiers
            .iter()
            .find(|t| t.id == tier)
            .and_then(|t| t.pricing.velocity_windows().max())
        else {
            return;
        };
        let log = self.recent.entry(tier).or_default();
        log.push_back((now, units));
        while log.front().is_some_and(|(at, _)| *at <= now - longest) {
            log.pop_front();
        }
    }

    pub(crate) fn available(&self, key: QuotaKey) -> u32 {
        self.capacity(key).saturating_sub(self.taken(key))
    }

    fn counter(&mut self, key: QuotaKey) -> &mut u32 {
        let i = match self.taken.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.taken.push((key, 0));
                self.taken.len() - 1
            }
        };
        &mut self.taken[i].1
    }

    /// Takes units; the caller checked capacity.
    pub(crate) fn take(&mut self, demand: &[(QuotaKey, u32)]) {
        for (key, n) in demand {
            *self.counter(*key) += n;
        }
    }

    pub(crate) fn give_back(&mut self, demand: &[(QuotaKey, u32)]) {
        give_back(&mut self.taken, demand);
    }

    /// Whether a hold in a lane may be due at `now`.
    pub(crate) fn lanes_due_by(&self, now: DateTime<Utc>) -> bool {
        self.lanes_due.is_some_and(|due| due <= now)
    }

    /// Notes that a lane now keeps a hold expiring at `at`.
    pub(crate) fn lane_holds_until(&mut self, at: DateTime<Utc>) {
        self.lanes_due = Some(self.lanes_due.map_or(at, |due| due.min(at)));
    }

    /// Returns an active hold's units and moves it to `status`; fails its pending
    /// booking with `booking_status`/`reason`. Records the matching events.
    /// The hold is in `lane`, or with `None` in the shard's own set.
    pub(crate) fn end_hold(
        &mut self,
        lane: Option<&mut HoldSet>,
        id: HoldId,
        status: HoldStatus,
        booking_outcome: Option<(BookingStatus, BookingReason)>,
        now: DateTime<Utc>,
        out: &mut Events,
    ) {
        let set = lane.unwrap_or(&mut self.own);
        let Some(hold) = set.holds.get_mut(&id) else {
            return;
        };
        if hold.status != HoldStatus::Active {
            return;
        }
        hold.status = status;
        let (expires_at, booking, quantity, event_id) = (
            hold.expires_at,
            hold.booking_id,
            hold.quantity(),
            self.config.event.id,
        );
        let demand = ems_core::inventory::demand_of(&self.config.tiers, &hold.lines);
        if let Some(coupon) = hold.coupon {
            self.coupons.lock().give_back(coupon, hold.customer);
        }
        if booking.is_none() {
            set.ended.push_back((hold.created_at, id));
        }
        set.expiry.remove(&(expires_at, id));
        give_back(&mut self.taken, &demand);
        out.push(match status {
            HoldStatus::Expired => DomainEvent::HoldExpired {
                event_id,
                hold_id: id,
                quantity,
            },
            _ => DomainEvent::HoldReleased {
                event_id,
                hold_id: id,
                quantity,
            },
        });
        if let (Some(bid), Some((bstatus, reason))) = (booking, booking_outcome) {
            if let Some(b) = self.bookings.get_mut(&bid).map(|r| r.fields_mut()) {
                if b.status == BookingStatus::Pending {
                    b.status = bstatus;
                    b.reason = Some(Box::new(reason.clone()));
                    b.updated_at = now;
                    b.version += 1;
                    out.push(match bstatus {
                        BookingStatus::Expired => DomainEvent::BookingExpired {
                            event_id,
                            booking_id: bid,
                        },
                        _ => DomainEvent::BookingFailed {
                            event_id,
                            booking_id: bid,
                            reason,
                        },
                    });
                }
            }
        }
    }

    /// Expires every active hold of `lane` (`None`: of the shard's own set)
    /// due at `now` (at most `limit`); returns how many.
    pub(crate) fn expire_due(
        &mut self,
        mut lane: Option<&mut HoldSet>,
        now: DateTime<Utc>,
        limit: u32,
        out: &mut Events,
    ) -> u32 {
        let mut n = 0;
        while n < limit {
            let set = lane.as_deref_mut().unwrap_or(&mut self.own);
            let Some(&(at, id)) = set.expiry.first() else {
                break;
            };
            if at > now {
                break;
            }
            set.expiry.pop_first();
            self.end_hold(
                lane.as_deref_mut(),
                id,
                HoldStatus::Expired,
                Some((BookingStatus::Expired, BookingReason::HoldExpired)),
                now,
                out,
            );
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_packed_decimal_is_the_decimal_kept(
            mantissa in -(1i128 << 60)..(1i128 << 60),
            scale in 0u32..=28,
        ) {
            let d = Decimal::from_i128_with_scale(mantissa, scale);
            match Dec8::of(d) {
                Some(packed) => {
                    let back = packed.get();
                    prop_assert_eq!(back, d);
                    prop_assert_eq!(back.scale(), d.scale());
                    prop_assert_eq!(back.to_string(), d.to_string());
                }
                None => prop_assert!(mantissa.abs() >= 1 << 55),
            }
        }
    }

    #[test]
    fn a_payment_is_kept_exactly_in_any_shape() {
        use ems_core::testkit::eur;
        let booking = BookingId::new();
        let event = EventId::new();
        let base = Payment {
            id: PaymentId::new(),
            booking_id: booking,
            event_id: event,
            gateway: "fake".into(),
            reference: Some("ref_1".into()),
            amount: eur("120.50"),
            refunded: eur("0"),
            status: PaymentStatus::Succeeded,
            failure: None,
            idempotency_key: format!("booking-{booking}"),
            created_at: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            updated_at: DateTime::<Utc>::from_timestamp(1_700_000_100, 0).unwrap_or_default(),
            version: 3,
        };
        let usd = Money::parse("1", "USD").unwrap();
        let shapes = [
            base.clone(),
            Payment {
                failure: Some("card declined".into()),
                status: PaymentStatus::Failed,
                ..base.clone()
            },
            Payment {
                idempotency_key: "retry-7".into(),
                ..base.clone()
            },
            Payment {
                idempotency_key: format!("booking-{}", BookingId::new()),
                reference: None,
                ..base.clone()
            },
            // Amounts that do not pack: too many digits, two currencies.
            Payment {
                amount: Money::new(Decimal::MAX, eur("1").currency()),
                ..base.clone()
            },
            Payment {
                refunded: usd,
                ..base.clone()
            },
            Payment {
                amount: eur("120.5000"),
                refunded: eur("20.5"),
                ..base.clone()
            },
        ];
        let mut names = Names::default();
        for p in shapes {
            let kept = StoredPayment::of(&p, names.number(&p.gateway));
            let back = kept.payment(booking, event, &names);
            assert_eq!(back, p);
            assert_eq!(back.amount.amount().scale(), p.amount.amount().scale());
            assert_eq!(kept.refunded(), p.refunded);
        }
        let mut kept = StoredPayment::of(&base, names.number("fake"));
        kept.set_refunded(eur("20.25"));
        assert_eq!(kept.payment(booking, event, &names).refunded, eur("20.25"));
        assert_eq!(kept.payment(booking, event, &names).amount, eur("120.50"));
    }

    #[test]
    fn what_does_not_pack_is_refused() {
        assert!(Dec8::of(Decimal::MAX).is_none());
        assert!(Dec8::of(Decimal::MIN).is_none());
        let negative_zero = -Decimal::new(0, 2);
        if negative_zero.is_sign_negative() {
            assert!(Dec8::of(negative_zero).is_none());
        }
        let edge = Decimal::from_i128_with_scale((1 << 55) - 1, 28);
        assert_eq!(Dec8::of(edge).map(Dec8::get), Some(edge));
        let over = Decimal::from_i128_with_scale(1 << 55, 0);
        assert!(Dec8::of(over).is_none());
        let under = Decimal::from_i128_with_scale(-(1 << 55), 3);
        assert_eq!(Dec8::of(under).map(Dec8::get), Some(under));
    }

    fn filled(n: u64) -> Outbox {
        let mut o = Outbox::default();
        for i in 0..n {
            o.push(
                DateTime::<Utc>::from_timestamp(i as i64, 0).unwrap_or_default(),
                DomainEvent::UserRegistered {
                    user: UserId::new(),
                },
            );
        }
        o
    }

    fn money(amount: &str) -> Money {
        Money::parse(amount, "EUR").expect("valid amount")
    }

    /// A hold of two price lines with a coupon, fees and tax, priced exactly
    /// as its lines say.
    fn priced_hold() -> Hold {
        let tier = TierId::new();
        let line = |quantity, first_position, unit: &str, total: &str| QuoteLine {
            tier_id: tier,
            quantity,
            first_position,
            base_price: money("20.00"),
            rules_applied: vec![0, 2],
            unit_price: money(unit),
            discount: money("1.5"),
            fees: money("0.75"),
            tax: money("3.10"),
            total: money(total),
        };
        let quote = Quote {
            currency: Currency::EUR,
            lines: vec![line(2, 10, "25.00", "52.35"), line(1, 12, "31.25", "33.60")],
            coupon: Some(CouponId::new()),
            order_fee: money("2"),
            order_fee_tax: money("0.38"),
            tax_mode: Some(TaxMode::Exclusive),
            total: money("88.33"),
        };
        let created_at = Utc::now();
        Hold {
            id: HoldId::new(),
            event_id: EventId::new(),
            organization: OrganizationId::new(),
            customer: UserId::new(),
            lines: quote
                .lines
                .iter()
                .map(|q| HoldLine {
                    tier_id: q.tier_id,
                    quantity: q.quantity,
                    unit_price: q.unit_price,
                })
                .collect(),
            total: quote.total,
            coupon: quote.coupon,
            quote,
            status: HoldStatus::Active,
            booking_id: None,
            created_at,
            expires_at: created_at + chrono::Duration::minutes(10),
        }
    }

    fn kept(hold: &Hold) -> Hold {
        HoldRec::of(hold).hold_of(hold.event_id, hold.organization)
    }

    #[test]
    fn a_hold_priced_as_its_lines_say_is_kept_exactly() {
        let hold = priced_hold();
        assert!(matches!(HoldRec::of(&hold).priced, Priced::Compact(_)));
        let back = kept(&hold);
        assert_eq!(back, hold);
        // Equal decimals may differ in scale ("1.5" vs "1.50"); the scale is kept too.
        assert_eq!(
            serde_json::to_string(&back).expect("serializes"),
            serde_json::to_string(&hold).expect("serializes"),
        );
    }

    /// A booking that repeats `hold` in everything it shares, as a checkout
    /// opens it.
    fn booking_on(hold: &Hold) -> Booking {
        ems_core::booking::BookingDraft {
            booking_id: BookingId::new(),
            payment_id: ems_core::id::PaymentId::new(),
            customer: hold.customer,
            idempotency_key: "k".into(),
            gateway: "fake".into(),
            now: hold.created_at,
        }
        .open_on(hold)
        .booking
    }

    #[test]
    fn a_booking_repeats_its_hold_exactly_when_the_whole_hold_says_so() {
        let mut whole = priced_hold();
        whole.quote.lines[1].tier_id = TierId::new();
        for hold in [priced_hold(), whole] {
            let rec = HoldRec::of(&hold);
            let (event, mut organization) = (hold.event_id, hold.organization);
            let same = booking_on(&hold);
            let mut changed: Vec<Booking> = Vec::new();
            let mut b = same.clone();
            b.customer = UserId::new();
            changed.push(b);
            let mut b = same.clone();
            b.total = money("1.00");
            changed.push(b);
            let mut b = same.clone();
            b.lines[0].quantity += 1;
            changed.push(b);
            let mut b = same.clone();
            b.quote.lines[0].fees = money("0.76");
            changed.push(b);
            let mut b = same.clone();
            b.quote.lines[1].rules_applied.push(3);
            changed.push(b);
            let mut b = same.clone();
            b.quote.lines[0].first_position += 1;
            changed.push(b);
            let mut b = same.clone();
            b.quote.coupon = None;
            changed.push(b);
            let mut b = same.clone();
            b.quote.order_fee_tax = money("0.39");
            changed.push(b);
            let mut b = same.clone();
            b.quote.tax_mode = None;
            changed.push(b);
            let mut b = same.clone();
            b.quote.lines.pop();
            changed.push(b);
            let mut b = same.clone();
            // Equal amounts in another scale are the same amount.
            b.quote.lines[0].discount = money("1.50");
            assert!(rec.repeated_by(&b, event, organization), "{b:?}");
            let whole = rec.hold_of(event, organization);
            let shares = |b: &Booking| {
                b.event_id == whole.event_id
                    && b.organization == whole.organization
                    && b.customer == whole.customer
                    && b.total == whole.total
                    && b.lines == whole.lines
                    && b.quote == whole.quote
            };
            assert!(rec.repeated_by(&same, event, organization));
            for b in &changed {
                assert_eq!(rec.repeated_by(b, event, organization), shares(b), "{b:?}");
                assert!(!rec.repeated_by(b, event, organization), "{b:?}");
            }
            organization = OrganizationId::new();
            assert!(!rec.repeated_by(&same, event, organization));
        }
    }

    #[test]
    fn a_hold_whose_quote_does_not_line_up_is_kept_whole() {
        let mut other_tier = priced_hold();
        other_tier.quote.lines[1].tier_id = TierId::new();
        let mut fewer_lines = priced_hold();
        fewer_lines.quote.lines.pop();
        let mut other_total = priced_hold();
        other_total.total = money("90.00");
        let mut other_coupon = priced_hold();
        other_coupon.coupon = None;
        let mut other_currency = priced_hold();
        other_currency.quote.lines[0].fees = Money::parse("0.75", "USD").expect("valid");
        for hold in [
            other_tier,
            fewer_lines,
            other_total,
            other_coupon,
            other_currency,
        ] {
            assert!(matches!(HoldRec::of(&hold).priced, Priced::Whole(_)));
            assert_eq!(kept(&hold), hold);
        }
    }

    #[test]
    fn tickets_are_kept_exactly_whatever_their_tier_and_holder() {
        let hold = priced_hold();
        let (booking, event) = (BookingId::new(), hold.event_id);
        let ticket = |tier_id, holder| Ticket {
            id: TicketId::new(),
            booking_id: booking,
            event_id: event,
            tier_id,
            holder,
            status: TicketStatus::Valid,
            issued_at: hold.created_at,
            checked_in_at: Some(hold.expires_at),
        };
        let plain = ticket(hold.lines[1].tier_id, hold.customer);
        let other_tier = ticket(TierId::new(), hold.customer);
        let other_holder = ticket(hold.lines[0].tier_id, UserId::new());
        for t in [plain, other_tier, other_holder] {
            let kept = StoredTicket::of(&t, &hold.lines, hold.customer);
            assert_eq!(kept.ticket(booking, event, &hold.lines, hold.customer), t);
        }
    }

    #[test]
    fn reads_and_prunes_across_chunks() {
        let mut o = filled(3 * OUTBOX_CHUNK as u64 + 10);
        let page = o.read(OUTBOX_CHUNK as u64 - 2, 5);
        let seqs: Vec<u64> = page.iter().map(|e| e.seq).collect();
        let c = OUTBOX_CHUNK as u64;
        assert_eq!(
            seqs,
            vec![c - 1, c, c + 1, c + 2, c + 3],
            "a page spans chunks"
        );
        assert_eq!(o.read(3 * c + 10, 5).len(), 0);
        assert_eq!(o.read(0, usize::MAX).len() as u64, 3 * c + 10);

        assert_eq!(o.prune(c + 5), c + 5);
        assert_eq!(
            o.read(0, 1)[0].seq,
            c + 6,
            "the oldest left is the next one"
        );
        assert_eq!(o.prune(c + 5), 0, "pruning twice drops nothing");
        assert_eq!(o.prune(u64::MAX), 2 * c + 5);
        assert!(o.read(0, 10).is_empty());
        o.push(
            Utc::now(),
            DomainEvent::UserRegistered {
                user: UserId::new(),
            },
        );
        assert_eq!(o.read(0, 10)[0].seq, 3 * c + 11, "numbering goes on");
    }
}
