use async_trait::async_trait;
use ems_core::id::{BookingId, PaymentId, RefundId};
use ems_core::outbox::DomainEvent;
use ems_core::payment::*;
use ems_core::{Error, Result};

use crate::MemoryStore;

#[async_trait]
impl PaymentStore for MemoryStore {
    async fn insert_payment(&self, payment: &Payment) -> Result<Payment> {
        let shard = self.shard_or_missing(payment.event_id)?;
        let existing = {
            let mut s = shard.lock();
            if !s.bookings.contains_key(&payment.booking_id) {
                return Err(Error::not_found("booking", payment.booking_id));
            }
            match self
                .inner
                .payment_keys
                .entry(payment.idempotency_key.clone())
            {
                dashmap::Entry::Occupied(o) => Some(*o.get()),
                dashmap::Entry::Vacant(v) => {
                    s.payments.insert(payment.id, Box::new(payment.clone()));
                    s.booking_payments
                        .entry(payment.booking_id)
                        .or_default()
                        .push(payment.id);
                    v.insert((payment.id, payment.event_id));
                    self.inner.payments.insert(payment.id, payment.event_id);
                    if let Some(r) = &payment.reference {
                        self.inner
                            .payment_refs
                            .insert((payment.gateway.clone(), r.clone()), payment.id);
                    }
                    self.record(
                        payment.created_at,
                        [DomainEvent::PaymentStarted {
                            booking_id: payment.booking_id,
                            payment_id: payment.id,
                            amount: payment.amount,
                        }],
                    );
                    None
                }
            }
        };
        match existing {
            None => Ok(payment.clone()),
            Some((id, _)) => self
                .payment(id)
                .await?
                .ok_or_else(|| Error::not_found("payment", id)),
        }
    }

    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>> {
        Ok(self
            .shard_via(&self.inner.payments, &id)
            .and_then(|s| s.lock().payments.get(&id).map(|p| (**p).clone())))
    }

    async fn payment_by_reference(
        &self,
        gateway: &str,
        reference: &str,
    ) -> Result<Option<Payment>> {
        let id = self
            .inner
            .payment_refs
            .get(&(gateway.to_owned(), reference.to_owned()))
            .map(|e| *e.value());
        match id {
            Some(id) => self.payment(id).await,
            None => Ok(None),
        }
    }

    async fn payments_for_booking(&self, booking: BookingId) -> Result<Vec<Payment>> {
        let Some(shard) = self.shard_via(&self.inner.bookings, &booking) else {
            return Ok(Vec::new());
        };
        let s = shard.lock();
        Ok(s.booking_payments
            .get(&booking)
            .into_iter()
            .flatten()
            .filter_map(|id| s.payments.get(id).map(|p| (**p).clone()))
            .collect())
    }

    async fn update_payment(&self, payment: &Payment) -> Result<()> {
        let shard = self
            .shard_via(&self.inner.payments, &payment.id)
            .ok_or_else(|| Error::not_found("payment", payment.id))?;
        let mut s = shard.lock();
        let current = s
            .payments
            .get(&payment.id)
            .ok_or_else(|| Error::not_found("payment", payment.id))?;
        if current.version + 1 != payment.version {
            return Err(Error::Conflict {
                entity: "payment",
                id: payment.id.to_string(),
                expected: payment.version - 1,
                found: current.version,
            });
        }
        let event = payment_change_event(current, payment);
        if let Some(r) = &payment.reference {
            if current.reference.as_ref() != Some(r) {
                self.inner
                    .payment_refs
                    .insert((payment.gateway.clone(), r.clone()), payment.id);
            }
        }
        s.payments.insert(payment.id, Box::new(payment.clone()));
        self.record(payment.updated_at, event);
        Ok(())
    }

    async fn insert_refund(&self, refund: &Refund) -> Result<()> {
        let shard = self
            .shard_via(&self.inner.payments, &refund.payment_id)
            .ok_or_else(|| Error::not_found("payment", refund.payment_id))?;
        let mut s = shard.lock();
        if s.refunds.contains_key(&refund.id) {
            return Err(Error::AlreadyExists {
                entity: "refund",
                field: "id",
                value: refund.id.to_string(),
            });
        }
        let payment = s
            .payments
            .get(&refund.payment_id)
            .ok_or_else(|| Error::not_found("payment", refund.payment_id))?;
        if payment.booking_id != refund.booking_id {
            return Err(Error::invalid(
                "booking_id",
                "refund names another booking than its payment",
            ));
        }
        let event_id = payment.event_id;
        s.check_refundable(refund)?;
        s.insert_refund(refund);
        self.inner.refunds.insert(refund.id, event_id);
        self.record(
            refund.created_at,
            [DomainEvent::RefundRequested {
                booking_id: refund.booking_id,
                refund_id: refund.id,
                amount: refund.amount,
            }],
        );
        Ok(())
    }

    async fn refund(&self, id: RefundId) -> Result<Option<Refund>> {
        Ok(self
            .shard_via(&self.inner.refunds, &id)
            .and_then(|s| s.lock().refunds.get(&id).cloned()))
    }

    async fn update_refund(&self, refund: &Refund) -> Result<()> {
        let shard = self
            .shard_via(&self.inner.refunds, &refund.id)
            .ok_or_else(|| Error::not_found("refund", refund.id))?;
        let mut s = shard.lock();
        let current = s
            .refunds
            .get(&refund.id)
            .ok_or_else(|| Error::not_found("refund", refund.id))?
            .clone();
        check_refund_change(&current, refund)?;
        if refund.status == RefundStatus::Succeeded && current.status != RefundStatus::Succeeded {
            let payment = s
                .payments
                .get_mut(&refund.payment_id)
                .ok_or_else(|| Error::not_found("payment", refund.payment_id))?;
            payment.refunded = payment.refunded.checked_add(refund.amount)?;
            payment.version += 1;
            payment.updated_at = refund.updated_at;
        }
        let event = refund_change_event(&current, refund);
        s.refunds.insert(refund.id, refund.clone());
        self.record(refund.updated_at, event);
        Ok(())
    }

    async fn refunds_for_booking(&self, booking: BookingId) -> Result<Vec<Refund>> {
        let Some(shard) = self.shard_via(&self.inner.bookings, &booking) else {
            return Ok(Vec::new());
        };
        let s = shard.lock();
        Ok(s.booking_refunds
            .get(&booking)
            .into_iter()
            .flatten()
            .filter_map(|id| s.refunds.get(id).cloned())
            .collect())
    }
}
