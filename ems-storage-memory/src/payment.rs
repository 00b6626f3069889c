use async_trait::async_trait;
use ems_core::id::{BookingId, PaymentId, RefundId};
use ems_core::outbox::DomainEvent;
use ems_core::payment::*;
use ems_core::{Error, Result};

use crate::state::{Shard, StoredPayment};
use crate::{Loc, MemoryStore};

impl MemoryStore {
    /// `insert_payment` under the lock of the payment's shard: `Ok(None)` when
    /// stored, `Ok(Some(id))` when its idempotency key already names payment
    /// `id` (read it after unlocking: it may live in another shard).
    pub(crate) fn insert_payment_locked(
        &self,
        s: &mut Shard,
        payment: &Payment,
    ) -> Result<Option<PaymentId>> {
        let event_id = s.event.id;
        let gateway = s.gateways.number(&payment.gateway);
        let Some(slot) = s.bookings.slot_of(&payment.booking_id) else {
            return Err(Error::not_found("booking", payment.booking_id));
        };
        if event_id != payment.event_id {
            return Err(Error::not_found("booking", payment.booking_id));
        }
        let loc = Loc {
            shard: s.number,
            slot,
        };
        let rec = s
            .bookings
            .at_mut(slot)
            .ok_or_else(|| Error::not_found("booking", payment.booking_id))?;
        match self
            .inner
            .payment_keys
            .entry(self.inner.keys.payment_key(&payment.idempotency_key))
        {
            dashmap::Entry::Occupied(o) => Ok(Some(*o.get())),
            dashmap::Entry::Vacant(v) => {
                rec.add_payment(payment, gateway);
                v.insert(payment.id);
                self.inner.payments.insert(payment.id, loc);
                if let Some(r) = &payment.reference {
                    self.inner
                        .payment_refs
                        .insert(self.inner.keys.reference(&payment.gateway, r), payment.id);
                }
                self.record(
                    payment.created_at,
                    [DomainEvent::PaymentStarted {
                        booking_id: payment.booking_id,
                        payment_id: payment.id,
                        amount: payment.amount,
                    }],
                );
                Ok(None)
            }
        }
    }

    /// Payment `id`, found under the idempotency key of `new` (checked, see
    /// [`crate::Fingerprint`]).
    pub(crate) async fn keyed_payment(&self, id: PaymentId, new: &Payment) -> Result<Payment> {
        let p = self.stored_payment(id).await?;
        if p.idempotency_key != new.idempotency_key {
            return Err(Error::AlreadyExists {
                entity: "payment",
                field: "idempotency_key",
                value: new.idempotency_key.clone(),
            });
        }
        Ok(p)
    }

    /// `update_payment` under the lock of the payment's shard.
    pub(crate) fn update_payment_locked(&self, s: &mut Shard, payment: &Payment) -> Result<()> {
        let gateway = s.gateways.number(&payment.gateway);
        let current = s
            .bookings
            .get_mut(&payment.booking_id)
            .and_then(|r| r.payments.iter_mut().find(|p| p.id == payment.id))
            .ok_or_else(|| Error::not_found("payment", payment.id))?;
        check_payment_version(payment, current.version)?;
        let event = payment_change_event(current.status, payment);
        if let Some(r) = &payment.reference {
            if current.reference() != Some(r.as_str()) {
                self.inner
                    .payment_refs
                    .insert(self.inner.keys.reference(&payment.gateway, r), payment.id);
            }
        }
        *current = StoredPayment::of(payment, gateway);
        self.record(payment.updated_at, event);
        Ok(())
    }
}

#[async_trait]
impl PaymentStore for MemoryStore {
    async fn insert_payment(&self, payment: &Payment) -> Result<Payment> {
        let shard = self.shard_or_missing(payment.event_id)?;
        let existing = self.insert_payment_locked(&mut shard.lock(), payment)?;
        match existing {
            None => Ok(payment.clone()),
            Some(id) => self.keyed_payment(id, payment).await,
        }
    }

    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>> {
        Ok(self.read_at(&self.inner.payments, &id, |s, r| {
            let p = r.payments.iter().find(|p| p.id == id)?;
            Some(p.payment(r.fields().id, s.event.id, &s.gateways))
        }))
    }

    async fn payment_by_reference(
        &self,
        gateway: &str,
        reference: &str,
    ) -> Result<Option<Payment>> {
        let id = self
            .inner
            .payment_refs
            .get(&self.inner.keys.reference(gateway, reference))
            .map(|e| *e.value());
        match id {
            Some(id) => Ok(self
                .payment(id)
                .await?
                .filter(|p| p.gateway == gateway && p.reference.as_deref() == Some(reference))),
            None => Ok(None),
        }
    }

    async fn payments_for_booking(&self, booking: BookingId) -> Result<Vec<Payment>> {
        Ok(self
            .read_booking(booking, |s, r| r.payments(s.event.id, &s.gateways))
            .unwrap_or_default())
    }

    async fn update_payment(&self, payment: &Payment) -> Result<()> {
        let (shard, slot) = self
            .shard_at(&self.inner.payments, &payment.id)
            .ok_or_else(|| Error::not_found("payment", payment.id))?;
        let mut s = shard.lock();
        let booking = s.bookings.at(slot).map(|r| r.fields().id);
        if booking != Some(payment.booking_id) {
            return Err(Error::invalid(
                "booking_id",
                "a payment stays with the booking it was made for",
            ));
        }
        self.update_payment_locked(&mut s, payment)
    }

    async fn insert_refund(&self, refund: &Refund) -> Result<()> {
        let (shard, slot) = self
            .shard_at(&self.inner.payments, &refund.payment_id)
            .ok_or_else(|| Error::not_found("payment", refund.payment_id))?;
        let mut guard = shard.lock();
        let s = &mut *guard;
        let loc = Loc {
            shard: s.number,
            slot,
        };
        if self.inner.refunds.contains_key(&refund.id) {
            return Err(Error::AlreadyExists {
                entity: "refund",
                field: "id",
                value: refund.id.to_string(),
            });
        }
        let event_id = s.event.id;
        let rec = s
            .bookings
            .at_mut(slot)
            .ok_or_else(|| Error::not_found("payment", refund.payment_id))?;
        if rec.fields().id != refund.booking_id {
            return Err(Error::invalid(
                "booking_id",
                "refund names another booking than its payment",
            ));
        }
        rec.check_refundable(refund, event_id, &s.gateways)?;
        rec.add_refund(refund.clone());
        self.inner.refunds.insert(refund.id, loc);
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
        Ok(self.read_at(&self.inner.refunds, &id, |_, r| {
            r.refunds.iter().find(|x| x.id == id).cloned()
        }))
    }

    async fn update_refund(&self, refund: &Refund) -> Result<()> {
        let (shard, slot) = self
            .shard_at(&self.inner.refunds, &refund.id)
            .ok_or_else(|| Error::not_found("refund", refund.id))?;
        let mut s = shard.lock();
        let rec = s
            .bookings
            .at_mut(slot)
            .ok_or_else(|| Error::not_found("refund", refund.id))?;
        let at = rec
            .refunds
            .iter()
            .position(|x| x.id == refund.id)
            .ok_or_else(|| Error::not_found("refund", refund.id))?;
        let current = rec.refunds[at].clone();
        check_refund_change(&current, refund)?;
        if refund.status == RefundStatus::Succeeded && current.status != RefundStatus::Succeeded {
            let payment = rec
                .payments
                .iter_mut()
                .find(|p| p.id == refund.payment_id)
                .ok_or_else(|| Error::not_found("payment", refund.payment_id))?;
            payment.set_refunded(payment.refunded().checked_add(refund.amount)?);
            payment.version += 1;
            payment.updated_at = refund.updated_at;
        }
        let event = refund_change_event(&current, refund);
        rec.refunds[at] = refund.clone();
        self.record(refund.updated_at, event);
        Ok(())
    }

    async fn refunds_for_booking(&self, booking: BookingId) -> Result<Vec<Refund>> {
        Ok(self
            .read_booking(booking, |_, r| r.refunds.to_vec())
            .unwrap_or_default())
    }
}
