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

use super::{Booking, BookingStore, ConfirmBooking, ConfirmOutcome};
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
    pub fn new(booking: Booking, now: chrono::DateTime<chrono::Utc>) -> Self {
        let payment = Payment {
            id: crate::id::PaymentId::new(),
            booking_id: booking.id,
            event_id: booking.event_id,
            gateway: booking.gateway.clone(),
            reference: None,
            amount: booking.total,
            refunded: crate::money::Money::zero(booking.total.currency()),
            status: crate::payment::PaymentStatus::Pending,
            failure: None,
            idempotency_key: format!("booking-{}", booking.id),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        Self { booking, payment }
    }
}

/// What [`CheckoutStore::open_checkouts`] did with one request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // a short-lived answer, moved once to its caller
pub enum Opened {
    /// The booking was opened; `payment` is the payment record as stored under
    /// its idempotency key (another request's, should one have got there first).
    Created {
        /// The booking as stored.
        booking: Booking,
        /// The payment record as stored.
        payment: Payment,
    },
    /// The customer already had a booking under this idempotency key; nothing
    /// was stored.
    Existing(Booking),
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
pub struct Settled {
    /// The payment as stored.
    pub payment: Payment,
    /// What confirming the booking did.
    pub outcome: ConfirmOutcome,
}

/// Storage port for the checkout steps in batches.
///
/// # Contract
/// - `open_checkouts`: the result at position `i` is what
///   `create_booking(&batch[i].booking)` followed (if that opened our booking)
///   by `insert_payment(&batch[i].payment)` would give: `Existing` when the key
///   already named another booking, else `Created`.
/// - `settle_paid`: the result at position `i` is what
///   `update_payment(&batch[i].payment)` followed by
///   `confirm_booking(&batch[i].confirm)` would give; a version conflict on the
///   payment is returned as `Conflict` with nothing of that request changed.
/// - A request's failure never changes another request's result.
#[async_trait]
pub trait CheckoutStore: BookingStore + PaymentStore {
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
}

/// One [`OpenCheckout`] through the single-step operations.
pub async fn open_one<S: BookingStore + PaymentStore + ?Sized>(
    store: &S,
    request: &OpenCheckout,
) -> Result<Opened> {
    let stored = store.create_booking(&request.booking).await?;
    if stored.id != request.booking.id {
        return Ok(Opened::Existing(stored));
    }
    let payment = store.insert_payment(&request.payment).await?;
    Ok(Opened::Created {
        booking: stored,
        payment,
    })
}

/// One [`SettlePaid`] through the single-step operations.
pub async fn settle_one<S: BookingStore + PaymentStore + ?Sized>(
    store: &S,
    request: &SettlePaid,
) -> Result<Settled> {
    store.update_payment(&request.payment).await?;
    let outcome = store.confirm_booking(&request.confirm).await?;
    Ok(Settled {
        payment: request.payment.clone(),
        outcome,
    })
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
        self.0.open_checkouts(requests).await
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
        self.0.settle_paid(requests).await
    }
    // A caller that left has been paid and confirmed all the same; the booking
    // and its tickets are there for the customer to read.
}
