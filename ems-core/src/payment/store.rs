use async_trait::async_trait;

use super::{Payment, PaymentStatus, Refund, RefundStatus};
use crate::id::{BookingId, PaymentId, RefundId};
use crate::money::Money;
use crate::outbox::DomainEvent;
use crate::{Error, Result};

/// Storage port for payment and refund records.
///
/// # Contract
/// - `insert_payment`: a payment whose `idempotency_key` is already stored is not
///   inserted again; the stored one is returned. A new one appends `PaymentStarted`.
/// - `update_payment` / `update_refund` store the record only if the stored version
///   is `version - 1` (else `Conflict`), and append [`payment_change_event`] /
///   [`refund_change_event`] in the same atomic step. A refund turning `Succeeded`
///   adds its amount to its payment's `refunded` in that step.
/// - `insert_refund` refuses (`InvalidInput` on `amount`) a refund that would bring
///   the payment's pending + succeeded refunds above its amount; appends `RefundRequested`.
#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    /// Records a payment (idempotent on its key).
    async fn insert_payment(&self, payment: &Payment) -> Result<Payment>;
    /// Reads a payment.
    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>>;
    /// Finds a payment by its gateway and gateway reference.
    async fn payment_by_reference(&self, gateway: &str, reference: &str)
        -> Result<Option<Payment>>;
    /// A booking's payments, oldest first.
    async fn payments_for_booking(&self, booking: BookingId) -> Result<Vec<Payment>>;
    /// Stores a changed payment under optimistic concurrency.
    async fn update_payment(&self, payment: &Payment) -> Result<()>;
    /// Records a refund.
    async fn insert_refund(&self, refund: &Refund) -> Result<()>;
    /// Reads a refund.
    async fn refund(&self, id: RefundId) -> Result<Option<Refund>>;
    /// Stores a changed refund under optimistic concurrency.
    async fn update_refund(&self, refund: &Refund) -> Result<()>;
    /// A booking's refunds, oldest first.
    async fn refunds_for_booking(&self, booking: BookingId) -> Result<Vec<Refund>>;
}

/// The optimistic-concurrency check of [`PaymentStore::update_payment`]: `next`
/// must carry the version one above the stored one, whose version is `found`.
pub fn check_payment_version(next: &Payment, found: u64) -> Result<()> {
    if found + 1 != next.version {
        return Err(crate::Error::Conflict {
            entity: "payment",
            id: next.id.to_string(),
            expected: next.version.saturating_sub(1),
            found,
        });
    }
    Ok(())
}

/// The domain event a payment's change from status `old` to `new` records, if
/// its status changed.
pub fn payment_change_event(old: PaymentStatus, new: &Payment) -> Option<DomainEvent> {
    if old == new.status {
        return None;
    }
    match new.status {
        PaymentStatus::Succeeded => Some(DomainEvent::PaymentSucceeded {
            booking_id: new.booking_id,
            payment_id: new.id,
            amount: new.amount,
        }),
        PaymentStatus::Failed | PaymentStatus::Voided => Some(DomainEvent::PaymentFailed {
            booking_id: new.booking_id,
            payment_id: new.id,
            reason: new
                .failure
                .clone()
                .unwrap_or_else(|| format!("{:?}", new.status).to_lowercase()),
        }),
        PaymentStatus::Pending => None,
    }
}

/// The domain event a refund's change records, if its status changed.
pub fn refund_change_event(old: &Refund, new: &Refund) -> Option<DomainEvent> {
    if old.status == new.status {
        return None;
    }
    match new.status {
        RefundStatus::Succeeded => Some(DomainEvent::RefundSucceeded {
            booking_id: new.booking_id,
            refund_id: new.id,
            amount: new.amount,
        }),
        RefundStatus::Failed => Some(DomainEvent::RefundFailed {
            booking_id: new.booking_id,
            refund_id: new.id,
            reason: new.failure.clone().unwrap_or_default(),
        }),
        RefundStatus::Pending => None,
    }
}

/// Checks that `refund` may be recorded on `payment`: the payment succeeded, the
/// amount is positive, and `refund` plus the payment's other pending and succeeded
/// refunds (`others`, any refunds of its booking) stay within the payment's amount.
pub fn check_refundable<'a>(
    payment: &Payment,
    refund: &Refund,
    others: impl IntoIterator<Item = &'a Refund>,
) -> Result<()> {
    if payment.status != PaymentStatus::Succeeded {
        return Err(Error::invalid_state(
            "payment",
            payment.id,
            payment.status,
            "refund",
        ));
    }
    if refund.amount.is_zero() || refund.amount.is_negative() {
        return Err(Error::invalid("amount", "a refund must be positive"));
    }
    let committed = others
        .into_iter()
        .filter(|r| r.payment_id == payment.id && r.status != RefundStatus::Failed)
        .map(|r| r.amount);
    let committed = Money::sum(payment.amount.currency(), committed)?;
    let after = committed.checked_add(refund.amount)?;
    if after.amount() > payment.amount.amount() {
        return Err(Error::invalid(
            "amount",
            format!(
                "refunds would total {after}, above the payment of {}",
                payment.amount
            ),
        ));
    }
    Ok(())
}

/// Checks a changed refund against the stored one: its version follows the
/// stored version, and its amount and payment are unchanged.
pub fn check_refund_change(current: &Refund, new: &Refund) -> Result<()> {
    if current.version + 1 != new.version {
        return Err(Error::Conflict {
            entity: "refund",
            id: new.id.to_string(),
            expected: new.version.saturating_sub(1),
            found: current.version,
        });
    }
    if current.amount != new.amount || current.payment_id != new.payment_id {
        return Err(Error::invalid(
            "refund",
            "amount and payment of a refund never change",
        ));
    }
    Ok(())
}
