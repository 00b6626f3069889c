//! The checkout steps after the hold, in batches: opening a booking with its
//! first payment record, and settling a paid booking (payment succeeded and
//! booking confirmed with its tickets).
//!
//! On a database each step is a transaction; when a hot on-sale sends many
//! buyers at once, the service queues these steps like holds (see
//! [`HoldBatching`](crate::inventory::HoldBatching)) and a store that overrides
//! [`CheckoutStore`]'s methods runs a whole batch in one transaction. With
//! batching off, each checkout's step goes to the same operation as a batch of
//! one, so a store that does a step at once is used for it either way. The
//! defaults run the single-step operations one by one, which is what every
//! batch must be equivalent to.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Booking, BookingReason, BookingStatus, BookingStore, ConfirmBooking, ConfirmOutcome};
use crate::id::{BookingId, PaymentId, UserId};
use crate::inventory::{Hold, HoldRequest, InventoryStore};
use crate::payment::{Payment, PaymentStore};
use crate::Result;

/// Input of [`CheckoutStore::open_checkouts`]: a booking on a hold and its
/// first payment record (pending, keyed by the booking).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenCheckout {
    /// The booking to open (as for [`BookingStore::create_booking`]).
    pub booking: Booking,
    /// Its first payment record (as for [`PaymentStore::insert_payment`]).
    pub payment: Payment,
}

impl OpenCheckout {
    /// Opens `booking` with its first payment record: pending, for the
    /// booking's total through its gateway, keyed by the booking (so one
    /// booking is never charged twice).
    pub fn new(booking: Booking, now: DateTime<Utc>) -> Self {
        Self::with_payment_id(booking, PaymentId::new(), now)
    }

    /// As [`OpenCheckout::new`], with the payment record's id chosen by the
    /// caller.
    pub fn with_payment_id(booking: Booking, payment_id: PaymentId, now: DateTime<Utc>) -> Self {
        let payment = Payment {
            id: payment_id,
            booking_id: booking.id,
            event_id: booking.event_id,
            gateway: booking.gateway.clone(),
            reference: None,
            amount: booking.total,
            refunded: crate::money::Money::zero(booking.total.currency()),
            status: crate::payment::PaymentStatus::Pending,
            failure: None,
            idempotency_key: crate::payment::booking_payment_key(booking.id),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        Self { booking, payment }
    }
}

/// A checkout's booking before its hold exists: what the checkout decides
/// itself. The rest (event, organization, lines, quote, total) comes from the
/// hold it is opened on ([`BookingDraft::open_on`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BookingDraft {
    /// The booking's id.
    pub booking_id: BookingId,
    /// Its first payment record's id.
    pub payment_id: PaymentId,
    /// The customer it is for (the hold's customer).
    pub customer: UserId,
    /// The checkout's idempotency key.
    pub idempotency_key: String,
    /// The payment gateway's name.
    pub gateway: String,
    /// When the booking is opened.
    pub now: DateTime<Utc>,
}

impl BookingDraft {
    /// The pending booking of this draft on `hold`, with its first payment
    /// record ([`OpenCheckout::new`]'s), exactly as a checkout opens it after
    /// placing the hold.
    pub fn open_on(&self, hold: &Hold) -> OpenCheckout {
        self.clone().into_opening(Hold {
            lines: hold.lines.clone(),
            quote: hold.quote.clone(),
            ..*hold
        })
    }

    /// [`BookingDraft::open_on`] `hold`, moving the hold's lines and quote
    /// into the booking.
    pub fn into_opening(self, hold: Hold) -> OpenCheckout {
        let booking = Booking {
            id: self.booking_id,
            event_id: hold.event_id,
            organization: hold.organization,
            customer: self.customer,
            hold_id: hold.id,
            lines: hold.lines,
            quote: hold.quote,
            total: hold.total,
            status: BookingStatus::Pending,
            reason: None,
            idempotency_key: self.idempotency_key,
            gateway: self.gateway,
            created_at: self.now,
            updated_at: self.now,
            version: 1,
        };
        OpenCheckout::with_payment_id(booking, self.payment_id, self.now)
    }
}

/// Input of [`CheckoutStore::hold_and_open`]: a hold request and the booking
/// to open on the hold, should it be granted.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldAndOpen {
    /// The hold to place (as for [`InventoryStore::try_hold`]).
    pub hold: HoldRequest,
    /// The booking to open on it (as for [`CheckoutStore::open_checkouts`]
    /// with [`BookingDraft::open_on`] of the hold).
    pub draft: BookingDraft,
}

/// What [`CheckoutStore::hold_and_open`] did with a granted hold.
#[derive(Debug)]
pub struct HeldAndOpened {
    /// The hold as placed.
    pub hold: Hold,
    /// What opening the booking on it did; `None` when the store placed the
    /// hold only and leaves the opening to the caller (nothing of it was
    /// written).
    pub opened: Option<Result<Opened>>,
}

/// What [`CheckoutStore::open_checkouts`] did with one request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Opened {
    /// The booking was opened, stored exactly as requested.
    Created {
        /// `None` when the request's payment record was stored as given;
        /// otherwise the record its idempotency key already named (another
        /// request's, which got there first), which stands for it.
        payment: Option<Box<Payment>>,
    },
    /// The customer already had a booking under this idempotency key; nothing
    /// was stored.
    Existing(Box<Booking>),
}

impl Opened {
    /// `Created`, the request's payment record `requested` and `stored`
    /// being what its idempotency key names now (what
    /// [`PaymentStore::insert_payment`] answered): `None` when that is the
    /// request's own.
    pub fn created(requested: &Payment, stored: Payment) -> Self {
        Opened::Created {
            payment: (stored != *requested).then(|| Box::new(stored)),
        }
    }
}

/// Input of [`CheckoutStore::settle_paid`]: the payment's new record (status
/// succeeded, version one above the stored one) and the confirmation of its
/// booking.
#[derive(Debug, Clone, PartialEq)]
pub struct SettlePaid {
    /// The booking as the caller last read it (its lines and ids never change).
    pub booking: Booking,
    /// The payment's next record (as for [`PaymentStore::update_payment`]).
    pub payment: Payment,
    /// The confirmation (as for [`BookingStore::confirm_booking`]).
    pub confirm: ConfirmBooking,
}

/// What [`CheckoutStore::settle_paid`] did with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// Confirmed now, and the confirmed booking is the request's booking
    /// (the booking as stored before, version for version) with status
    /// `Confirmed`, this `reason`, `updated_at` the confirmation's instant
    /// and its version one up: a store that knows this answers it instead of
    /// building the booking back for the caller, who has it.
    Confirmed {
        /// Why, beyond being paid (`Reacquired` after the hold lapsed).
        reason: Option<BookingReason>,
    },
    /// What confirming did, as [`BookingStore::confirm_booking`] answers
    /// (boxed: the answer of the rarer paths, and of stores that read the
    /// booking back anyway).
    Outcome(Box<ConfirmOutcome>),
}

impl From<ConfirmOutcome> for Settled {
    fn from(outcome: ConfirmOutcome) -> Self {
        Settled::Outcome(Box::new(outcome))
    }
}

impl Settled {
    /// What [`BookingStore::confirm_booking`] would have answered, given
    /// the booking and the instant of the request this answers.
    pub fn into_outcome(self, booking: Booking, now: DateTime<Utc>) -> ConfirmOutcome {
        match self {
            Settled::Confirmed { reason } => ConfirmOutcome::Confirmed(Booking {
                status: BookingStatus::Confirmed,
                reason,
                updated_at: now,
                version: booking.version + 1,
                ..booking
            }),
            Settled::Outcome(outcome) => *outcome,
        }
    }
}

/// Storage port for the checkout steps in batches.
///
/// # Contract
/// - `open_checkouts`: the result at position `i` is what
///   `create_booking(&batch[i].booking)` followed (if that opened our booking)
///   by `insert_payment(&batch[i].payment)` would give: `Existing` when the key
///   already named another booking, else `Created` (the request's booking
///   stored as given; its payment record too, or the one its key named).
///   Stores answer without copying the request back: the caller has it.
/// - `settle_paid`: the result at position `i` is what
///   `update_payment(&batch[i].payment)` followed by
///   `confirm_booking(&batch[i].confirm)` would give: the confirmation's
///   outcome ([`Settled::Confirmed`] when the booking confirmed is the
///   request's, version for version), the payment being stored as given. A
///   version conflict on the payment is returned as `Conflict` with nothing
///   of that request changed.
/// - `hold_and_open`: the result at position `i` is what a batch of the
///   holds (`try_hold_batch` of every `batch[j].hold`) followed by a batch of
///   the openings of the granted ones (`open_checkouts` of
///   `batch[j].draft.open_on(&hold)`) would give: `Err` for a refused hold
///   (nothing opened), else the hold with its opening's result. A store may
///   place a batch's holds only and answer every opening `None` (a large
///   batch, say, whose openings are better batched on their own); the
///   caller then opens them.
/// - A request's failure never changes another request's result.
#[async_trait]
pub trait CheckoutStore: BookingStore + PaymentStore + InventoryStore {
    /// Opens bookings with their first payment records (see the contract).
    async fn open_checkouts(&self, batch: &[OpenCheckout]) -> Vec<Result<Opened>> {
        let mut out = Vec::with_capacity(batch.len());
        for request in batch {
            out.push(open_one(self, request).await);
        }
        out
    }

    /// Records payments as succeeded and confirms their bookings (see the
    /// contract).
    async fn settle_paid(&self, batch: &[SettlePaid]) -> Vec<Result<Settled>> {
        let mut out = Vec::with_capacity(batch.len());
        for request in batch {
            out.push(settle_one(self, request).await);
        }
        out
    }

    /// Places holds and opens a booking on each granted one (see the
    /// contract). The default is [`hold_then_open`]: the two batches one after
    /// the other.
    async fn hold_and_open(&self, batch: &[HoldAndOpen]) -> Vec<Result<HeldAndOpened>> {
        hold_then_open(self, batch).await
    }

    /// Whether [`CheckoutStore::hold_and_open`] does both steps in one (one
    /// transaction on a database): then a batching service opens each
    /// checkout's booking with its hold, one step less per checkout. Off by
    /// default.
    fn opens_with_holds(&self) -> bool {
        false
    }
}

/// [`CheckoutStore::hold_and_open`] as a batch of holds followed by a batch
/// of the granted holds' openings.
pub async fn hold_then_open<S: CheckoutStore + ?Sized>(
    store: &S,
    batch: &[HoldAndOpen],
) -> Vec<Result<HeldAndOpened>> {
    let holds: Vec<HoldRequest> = batch.iter().map(|r| r.hold.clone()).collect();
    let placed = store.try_hold_batch(&holds).await;
    let openings: Vec<OpenCheckout> = batch
        .iter()
        .zip(&placed)
        .filter_map(|(r, p)| p.as_ref().ok().map(|hold| r.draft.open_on(hold)))
        .collect();
    let mut opened = store.open_checkouts(&openings).await.into_iter();
    placed
        .into_iter()
        .map(|p| {
            p.map(|hold| HeldAndOpened {
                hold,
                opened: Some(
                    opened
                        .next()
                        .unwrap_or_else(|| Err(crate::missing_answer())),
                ),
            })
        })
        .collect()
}

/// One [`OpenCheckout`] through the single-step operations.
pub async fn open_one<S: BookingStore + PaymentStore + ?Sized>(
    store: &S,
    request: &OpenCheckout,
) -> Result<Opened> {
    let stored = store.create_booking(&request.booking).await?;
    if stored.id != request.booking.id {
        return Ok(Opened::Existing(Box::new(stored)));
    }
    let payment = store.insert_payment(&request.payment).await?;
    Ok(Opened::created(&request.payment, payment))
}

/// One [`SettlePaid`] through the single-step operations.
pub async fn settle_one<S: BookingStore + PaymentStore + ?Sized>(
    store: &S,
    request: &SettlePaid,
) -> Result<Settled> {
    store.update_payment(&request.payment).await?;
    store
        .confirm_booking(&request.confirm)
        .await
        .map(Settled::from)
}

/// Opening checkouts of one event, batched.
pub(crate) struct OpenOp(pub(crate) std::sync::Arc<dyn crate::Store>);

#[async_trait]
impl crate::batch::BatchOp for OpenOp {
    type Key = crate::id::EventId;
    type Request = OpenCheckout;
    type Item = Opened;

    fn key(&self, request: &OpenCheckout) -> crate::id::EventId {
        request.booking.event_id
    }
    async fn one(&self, request: &OpenCheckout) -> Result<Opened> {
        open_one(&*self.0, request).await
    }
    async fn batch(&self, requests: &[OpenCheckout]) -> Vec<Result<Opened>> {
        (*self.0).open_checkouts(requests).await
    }
    // A caller that left finds its booking pending: retrying its key resumes it,
    // and otherwise its hold lapses and the booking expires with it.
}

/// Settling paid checkouts of one event, batched.
pub(crate) struct SettleOp(pub(crate) std::sync::Arc<dyn crate::Store>);

#[async_trait]
impl crate::batch::BatchOp for SettleOp {
    type Key = crate::id::EventId;
    type Request = SettlePaid;
    type Item = Settled;

    fn key(&self, request: &SettlePaid) -> crate::id::EventId {
        request.booking.event_id
    }
    async fn one(&self, request: &SettlePaid) -> Result<Settled> {
        settle_one(&*self.0, request).await
    }
    async fn batch(&self, requests: &[SettlePaid]) -> Vec<Result<Settled>> {
        (*self.0).settle_paid(requests).await
    }
    // A caller that left has been paid and confirmed all the same; the booking
    // and its tickets are there for the customer to read.
}

/// Holds with their bookings' openings, of one event, batched.
pub(crate) struct HoldOpenOp(pub(crate) std::sync::Arc<dyn crate::Store>);

#[async_trait]
impl crate::batch::BatchOp for HoldOpenOp {
    type Key = crate::id::EventId;
    type Request = HoldAndOpen;
    type Item = HeldAndOpened;

    fn key(&self, request: &HoldAndOpen) -> crate::id::EventId {
        request.hold.event_id
    }
    async fn one(&self, request: &HoldAndOpen) -> Result<HeldAndOpened> {
        crate::sole_answer((*self.0).hold_and_open(std::slice::from_ref(request)).await)
    }
    async fn batch(&self, requests: &[HoldAndOpen]) -> Vec<Result<HeldAndOpened>> {
        (*self.0).hold_and_open(requests).await
    }
    async fn abandoned(&self, request: &HoldAndOpen, answer: HeldAndOpened) {
        // Its caller left while the batch was out: give the units back (which
        // fails the booking opened on the hold, if any). Should that fail,
        // the hold still lapses at its expiry and its booking with it.
        let _ = (*self.0)
            .release_hold(answer.hold.id, request.hold.now)
            .await;
    }
}
