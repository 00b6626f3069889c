//! The checkout saga and the booking operations around it.

use std::future::Future;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::*;
use crate::id::{PaymentId, RefundId};
use crate::inventory::{HoldItem, HoldOptions};
use crate::money::Rounding;
use crate::page::{Page, PageRequest};
use crate::payment::*;
use crate::ticket::IssuedTicket;
use crate::{Actor, Ems, Error, Result};

/// What a customer asks to buy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckoutRequest {
    /// The event.
    pub event_id: EventId,
    /// Tiers and quantities.
    pub items: Vec<HoldItem>,
    /// The client's key for this purchase: retrying with the same key returns the
    /// same booking and never charges twice. 1..=200 characters.
    pub idempotency_key: String,
    /// Gateway name; `None` for the default gateway.
    pub gateway: Option<String>,
    /// Buy for this customer (admins and the system only).
    pub on_behalf_of: Option<UserId>,
    /// A promo code; its use is consumed with the hold and given back if the hold
    /// ends unpaid.
    #[serde(default)]
    pub coupon: Option<String>,
}

impl CheckoutRequest {
    /// Buys `items` of `event` under the client's `idempotency_key`, through the
    /// default gateway, for the calling customer.
    pub fn new(
        event_id: EventId,
        items: Vec<HoldItem>,
        idempotency_key: impl Into<String>,
    ) -> Self {
        Self {
            event_id,
            items,
            idempotency_key: idempotency_key.into(),
            gateway: None,
            on_behalf_of: None,
            coupon: None,
        }
    }

    /// Applies a promo code.
    pub fn coupon(mut self, code: impl Into<String>) -> Self {
        self.coupon = Some(code.into());
        self
    }

    /// Pays through the named gateway.
    pub fn gateway(mut self, name: impl Into<String>) -> Self {
        self.gateway = Some(name.into());
        self
    }

    /// Buys for another customer (admins and the system only).
    pub fn on_behalf_of(mut self, customer: UserId) -> Self {
        self.on_behalf_of = Some(customer);
        self
    }
}

/// Where a checkout ended up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Checkout {
    /// The booking: `Confirmed` with tickets, `Pending` while the gateway decides
    /// (a webhook will finish it), or `Failed`/`Unfulfilled` with a reason.
    pub booking: Booking,
    /// The booking's latest payment.
    pub payment: Option<Payment>,
    /// Tickets with their codes (empty unless confirmed).
    pub tickets: Vec<IssuedTicket>,
}

fn validate_key(key: &str) -> Result<()> {
    if key.trim().is_empty() || key.len() > 200 {
        return Err(Error::invalid("idempotency_key", "1..=200 characters"));
    }
    Ok(())
}

impl Ems {
    /// Runs the whole checkout: hold → pending booking → payment → confirmation with
    /// tickets. Every step is idempotent on `request.idempotency_key`; any failure
    /// after the hold compensates (units released, payment voided or refunded).
    ///
    /// Returns an error only when no booking could be opened (sold out, bad input,
    /// forbidden); once a booking exists its state tells the outcome.
    pub async fn checkout(&self, actor: &Actor, request: CheckoutRequest) -> Result<Checkout> {
        let customer = actor.purchaser(request.on_behalf_of, "check out")?;
        validate_key(&request.idempotency_key)?;
        let gateway_name = self.gateway_name(request.gateway.as_deref())?;
        // A retried key is found before holding, except when holds are batched:
        // there the read would cost every buyer a round trip, so a retry is
        // found where it shows (the opening answers with the existing booking,
        // or the hold is refused and the key is looked up then).
        let batching = self.batches_holds();
        if !batching {
            if let Some(existing) = self
                .port()
                .booking_by_key(customer, &request.idempotency_key)
                .await?
            {
                return Box::pin(self.resume_checkout(existing, &request)).await;
            }
        }
        // The hold's, the booking's and the payment's ids, on one reading
        // of the clock.
        let mut ids = crate::id::Minter::start();
        let hold_request = self.hold_request(
            actor,
            request.event_id,
            &request.items,
            HoldOptions {
                on_behalf_of: Some(customer),
                ttl: None,
                coupon: request.coupon.clone(),
            },
            &mut ids,
        )?;
        let draft = BookingDraft {
            booking_id: BookingId(ids.mint()),
            payment_id: PaymentId(ids.mint()),
            customer,
            idempotency_key: request.idempotency_key.clone(),
            gateway: gateway_name,
            now: hold_request.now,
        };
        let (booking_id, ours) = (draft.booking_id, draft.payment_id);
        // The hold, then the booking opened on it: in one store step where the
        // store does both at once, else one after the other.
        let (hold, opened) = if let Some(queue) = self.hold_opens() {
            // Boxed, as the queued steps are (see `Ems::reserve`).
            let placed = Box::pin(queue.run(HoldAndOpen {
                hold: hold_request,
                // Kept for an opening the store leaves to us.
                draft: draft.clone(),
            }))
            .await;
            match placed {
                Ok(HeldAndOpened { hold, opened }) => (hold, opened),
                Err(e) => {
                    return Box::pin(self.hold_refused(actor, &request, customer, batching, e))
                        .await
                }
            }
        } else {
            match self.reserve_to_book(hold_request).await {
                Ok(hold) => (hold, None),
                Err(e) => {
                    return Box::pin(self.hold_refused(actor, &request, customer, batching, e))
                        .await
                }
            }
        };
        let (hold_id, hold_event) = (hold.id, hold.event_id);
        // The opening stays here; the store's step borrows it and answers
        // without copying it back.
        let opening: OpenCheckout;
        let opened = match opened {
            // Opened with the hold, as the store opens a draft on it.
            Some(opened) => {
                opening = draft.open_on(&hold);
                opened
            }
            None => {
                // At its own instant; the booking carries the hold's lines and
                // quote: moved, not copied.
                opening = BookingDraft {
                    now: self.now(),
                    ..draft
                }
                .into_opening(hold);
                self.open_checkout(&opening).await
            }
        };
        match opened {
            Ok(Opened::Created { payment }) => {
                let OpenCheckout {
                    booking,
                    payment: mine,
                } = opening;
                // Another request's payment record under the key stands for ours.
                let payment = payment.map_or(mine, |theirs| *theirs);
                self.charge(booking, payment, ours).await
            }
            Ok(Opened::Existing(stored)) => {
                // A concurrent request with the same key won; give our units back.
                self.unreserve_hold(hold_id, hold_event).await?;
                Box::pin(self.resume_checkout(*stored, &request)).await
            }
            Err(e) => {
                // Compensate unless our booking got opened: then it stays pending
                // and a retry with the key resumes it.
                let opened = self
                    .port()
                    .booking_by_key(customer, &request.idempotency_key)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|b| b.id == booking_id);
                if !opened {
                    self.unreserve_hold(hold_id, hold_event).await?;
                }
                Err(e)
            }
        }
    }

    /// A checkout whose hold was refused: the refusal explained; with
    /// batching, a retried key finds its booking here (see `checkout`).
    async fn hold_refused(
        &self,
        actor: &Actor,
        request: &CheckoutRequest,
        customer: UserId,
        batching: bool,
        e: Error,
    ) -> Result<Checkout> {
        let e = self.explain_hold_refusal(actor, request.event_id, e).await;
        if !(batching && e.is_domain()) {
            return Err(e);
        }
        match self
            .port()
            .booking_by_key(customer, &request.idempotency_key)
            .await?
        {
            Some(existing) => Box::pin(self.resume_checkout(existing, request)).await,
            None => Err(e),
        }
    }

    async fn resume_checkout(
        &self,
        existing: Booking,
        request: &CheckoutRequest,
    ) -> Result<Checkout> {
        // A tier may span several lines (one per price), so compare units per tier.
        let requested: u32 = request.items.iter().map(|i| i.quantity).sum();
        let same_items = requested == existing.quantity()
            && request
                .items
                .iter()
                .all(|i| existing.quantity_of(i.tier_id) == i.quantity);
        if existing.event_id != request.event_id || !same_items {
            return Err(Error::already_exists(
                "booking",
                "idempotency_key",
                &request.idempotency_key,
            ));
        }
        if existing.status == BookingStatus::Pending {
            let mut payments = self.port().payments_for_booking(existing.id).await?;
            match payments.pop() {
                // The first attempt stopped between booking and payment.
                None => return self.pay(existing).await,
                // It stopped after the payment succeeded but before confirming.
                Some(p) if p.status == PaymentStatus::Succeeded => {
                    return self.complete_paid(p, Some(existing)).await;
                }
                Some(_) => {}
            }
        }
        self.checkout_state(existing).await
    }

    async fn checkout_state(&self, booking: Booking) -> Result<Checkout> {
        let payment = self.port().payments_for_booking(booking.id).await?.pop();
        let tickets = if booking.status == BookingStatus::Confirmed {
            self.port()
                .tickets_for_booking(booking.id)
                .await?
                .into_iter()
                .map(|t| self.issue(t))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Checkout {
            booking,
            payment,
            tickets,
        })
    }

    /// Takes payment for a pending booking through its gateway.
    async fn pay(&self, booking: Booking) -> Result<Checkout> {
        let payment = OpenCheckout::new(booking.clone(), self.now()).payment;
        let ours = payment.id;
        let payment = self.port().insert_payment(&payment).await?;
        self.charge(booking, payment, ours).await
    }

    /// Charges `payment` (as stored; ours if its id is `ours`) through the
    /// booking's gateway and settles the outcome.
    // A plain fn returning an `async move` block: an `async fn` would keep its
    // arguments twice in its future (as captured and as moved to locals).
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice in its future"
    )]
    fn charge(
        &self,
        booking: Booking,
        payment: Payment,
        ours: PaymentId,
    ) -> impl Future<Output = Result<Checkout>> + Send + '_ {
        async move {
            let gateway = self.gateway(&booking.gateway)?;
            if payment.id != ours || payment.status != PaymentStatus::Pending {
                // Another request with the same key started this payment first: it alone
                // talks to the gateway (a retry later resumes through `reconcile_payment`).
                return self.checkout_state(booking).await;
            }
            if booking.total.is_zero() {
                // Free tickets: nothing to charge, so no gateway reference either.
                return self.settle(payment, None, booking).await;
            }
            let request = PaymentRequest {
                idempotency_key: payment.idempotency_key.clone(),
                amount: booking.total,
                booking_id: booking.id,
                customer: booking.customer,
                description: crate::id::prefixed("booking ", booking.id.as_uuid()),
            };
            let mut outcome = (*gateway).create_payment(&request).await;
            if let Ok(GatewayPayment {
                reference,
                status: GatewayPaymentStatus::Authorized,
            }) = &outcome
            {
                outcome = (*gateway)
                    .capture(reference, &request.idempotency_key)
                    .await;
            }
            match outcome {
                Ok(GatewayPayment {
                    reference,
                    status: GatewayPaymentStatus::Succeeded,
                }) => self.settle(payment, Some(reference), booking).await,
                Ok(GatewayPayment {
                    reference,
                    status: GatewayPaymentStatus::Pending | GatewayPaymentStatus::Authorized,
                }) => {
                    self.set_payment_status(payment, PaymentStatus::Pending, Some(reference), None)
                        .await?;
                    self.checkout_state(booking).await
                }
                Ok(GatewayPayment {
                    reference,
                    status: GatewayPaymentStatus::Declined { reason },
                }) => Box::pin(self.decline(payment, Some(reference), reason)).await,
                Err(GatewayError::Declined { reason }) => {
                    Box::pin(self.decline(payment, None, reason)).await
                }
                Err(e) => {
                    // Outcome unknown: release the units now; the payment stays pending
                    // so `reconcile_payment` (or a webhook) settles it: a late success
                    // takes the units again or is refunded.
                    self.fail_pending(
                        booking.id,
                        BookingReason::PaymentError {
                            message: e.to_string(),
                        },
                    )
                    .await?;
                    self.checkout_state(self.booking_record(booking.id).await?)
                        .await
                }
            }
        }
    }

    async fn decline(
        &self,
        payment: Payment,
        reference: Option<String>,
        reason: String,
    ) -> Result<Checkout> {
        let booking = payment.booking_id;
        self.set_payment_status(
            payment,
            PaymentStatus::Failed,
            reference,
            Some(reason.clone()),
        )
        .await?;
        self.fail_pending(booking, BookingReason::PaymentDeclined { message: reason })
            .await?;
        self.checkout_state(self.booking_record(booking).await?)
            .await
    }

    async fn fail_pending(&self, booking: BookingId, reason: BookingReason) -> Result<Booking> {
        self.port().fail_booking(booking, reason, self.now()).await
    }

    /// Records the payment `next` describes as succeeded (with `next`'s
    /// reference) over the record stored now, whoever wrote it last.
    async fn record_paid(&self, next: &Payment) -> Result<Payment> {
        let stored = self.payment_record(next.id).await?;
        self.set_payment_status(
            stored,
            PaymentStatus::Succeeded,
            next.reference.clone(),
            None,
        )
        .await
    }

    async fn payment_record(&self, id: PaymentId) -> Result<Payment> {
        self.port()
            .payment(id)
            .await?
            .ok_or_else(|| Error::not_found("payment", id))
    }

    pub(crate) async fn booking_record(&self, id: BookingId) -> Result<Booking> {
        self.port()
            .booking(id)
            .await?
            .ok_or_else(|| Error::not_found("booking", id))
    }

    /// Moves a payment to `status`, tolerating a concurrent writer that got there first.
    async fn set_payment_status(
        &self,
        payment: Payment,
        status: PaymentStatus,
        reference: Option<String>,
        failure: Option<String>,
    ) -> Result<Payment> {
        let mut current = payment;
        for _ in 0..5 {
            if current.status == status && (reference.is_none() || current.reference == reference) {
                return Ok(current);
            }
            if current.status == PaymentStatus::Succeeded && status != PaymentStatus::Succeeded {
                // Success is final: a late failure notice changes nothing.
                return Ok(current);
            }
            let mut next = current.clone();
            next.status = status;
            if reference.is_some() {
                next.reference = reference.clone();
            }
            next.failure = failure.clone();
            next.updated_at = self.now();
            next.version += 1;
            match self.port().update_payment(&next).await {
                Ok(()) => return Ok(next),
                Err(Error::Conflict { .. }) => {
                    current = self.payment_record(current.id).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict {
            entity: "payment",
            id: current.id.to_string(),
            expected: current.version,
            found: current.version + 1,
        })
    }

    /// Records a pending payment as succeeded and confirms its booking, in one
    /// step (batched with other buyers' when batching is on).
    ///
    /// The request is built before the future: its parts are moved in once
    /// and never kept twice (an async block would also keep the arguments
    /// it captured), and the answer takes them from it in place.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice in its future"
    )]
    fn settle(
        &self,
        payment: Payment,
        reference: Option<String>,
        booking: Booking,
    ) -> impl Future<Output = Result<Checkout>> + Send + '_ {
        let now = self.now();
        let confirm = ConfirmBooking::issuing(&booking, now);
        let mut next = payment;
        next.status = PaymentStatus::Succeeded;
        if reference.is_some() {
            next.reference = reference;
        }
        next.failure = None;
        next.updated_at = now;
        next.version += 1;
        let request = SettlePaid {
            booking,
            payment: next,
            confirm,
        };
        async move {
            match self.settle_paid(&request).await {
                // Confirmed now, the usual answer, without `confirmed`'s future;
                // the payment is stored as sent.
                Ok(settled) => match settled.into_outcome(request.booking, request.confirm.now) {
                    ConfirmOutcome::Confirmed(b) => {
                        Ok(self.confirmed_now(b, request.payment, request.confirm))
                    }
                    outcome => {
                        Box::pin(self.confirmed(request.payment, request.confirm, outcome)).await
                    }
                },
                Err(Error::Conflict { .. }) => {
                    // Someone else (a webhook, a reconciliation) moved the payment
                    // first: merge with what is stored, then confirm.
                    Box::pin(async move {
                        let paid = self.record_paid(&request.payment).await?;
                        self.complete_paid(paid, Some(request.booking)).await
                    })
                    .await
                }
                Err(e) => {
                    // Settling failed as a whole. Keep at least what the gateway said
                    // (status and reference), so webhooks find the payment and a retry
                    // or reconciliation confirms without asking the gateway again;
                    // should this fail too, reconciliation asks it under the
                    // payment's idempotency key.
                    let _ = Box::pin(self.record_paid(&request.payment)).await;
                    Err(e)
                }
            }
        }
    }

    /// Confirms the booking of a succeeded payment; refunds if it cannot be delivered.
    /// `booking` is the booking as the caller last read it (its lines and ids never
    /// change), to spare a read on the checkout path.
    async fn complete_paid(&self, payment: Payment, booking: Option<Booking>) -> Result<Checkout> {
        let booking = match booking {
            Some(b) => b,
            None => self.booking_record(payment.booking_id).await?,
        };
        let request = ConfirmBooking::issuing(&booking, self.now());
        let outcome = self.port().confirm_booking(&request).await?;
        self.confirmed(payment, request, outcome).await
    }

    /// The checkout after confirming: the tickets if confirmed now, a refund if
    /// the booking cannot be delivered.
    async fn confirmed(
        &self,
        payment: Payment,
        request: ConfirmBooking,
        outcome: ConfirmOutcome,
    ) -> Result<Checkout> {
        match outcome {
            ConfirmOutcome::Confirmed(b) => Ok(self.confirmed_now(b, payment, request)),
            ConfirmOutcome::Unfulfilled(b) => {
                Box::pin(self.refund_unfulfilled(&b, &payment)).await?;
                self.checkout_state(b).await
            }
            other => self.checkout_state(other.booking().clone()).await,
        }
    }

    /// The checkout of booking `b`, confirmed now by `request`: the stored
    /// tickets are exactly the ones the request built.
    fn confirmed_now(&self, b: Booking, payment: Payment, request: ConfirmBooking) -> Checkout {
        Checkout {
            booking: b,
            payment: Some(payment),
            tickets: request.tickets.into_iter().map(|t| self.issue(t)).collect(),
        }
    }

    async fn refund_unfulfilled(&self, booking: &Booking, payment: &Payment) -> Result<()> {
        let existing = self.port().refunds_for_booking(booking.id).await?;
        let already: Vec<_> = existing
            .iter()
            .filter(|r| r.payment_id == payment.id)
            .collect();
        if !already.is_empty() {
            for r in already
                .into_iter()
                .filter(|r| r.status == RefundStatus::Failed)
            {
                self.execute_refund(r.clone()).await?;
            }
            return Ok(());
        }
        let refundable = payment.amount.checked_sub(payment.refunded)?;
        if refundable.is_zero() || refundable.is_negative() {
            return Ok(());
        }
        let refund = self.new_refund(payment, refundable, "booking could not be fulfilled");
        match self.port().insert_refund(&refund).await {
            Ok(()) => self.execute_refund(refund).await.map(|_| ()),
            // A concurrent delivery of the same success already recorded it.
            Err(Error::InvalidInput {
                field: "amount", ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn new_refund(&self, payment: &Payment, amount: Money, reason: &str) -> Refund {
        let now = self.now();
        Refund {
            id: RefundId::new(),
            payment_id: payment.id,
            booking_id: payment.booking_id,
            amount,
            status: RefundStatus::Pending,
            reason: reason.to_owned(),
            reference: None,
            failure: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    /// Sends a recorded refund to its payment's gateway and records the answer.
    async fn execute_refund(&self, refund: Refund) -> Result<Refund> {
        let payment = self.payment_record(refund.payment_id).await?;
        let mut next = refund.clone();
        next.version += 1;
        next.updated_at = self.now();
        // Refunds are positive, so their payment took money at a gateway and has its reference.
        match payment.reference.as_deref() {
            Some(reference) => {
                let gateway = self.gateway(&payment.gateway)?;
                let request = RefundRequest {
                    idempotency_key: crate::id::prefixed("refund-", refund.id.as_uuid()),
                    payment_reference: reference.to_owned(),
                    amount: refund.amount,
                    reason: refund.reason.clone(),
                };
                match (*gateway).refund(&request).await {
                    Ok(r) => {
                        next.status = RefundStatus::Succeeded;
                        next.reference = Some(r.reference);
                        next.failure = None;
                    }
                    Err(e) => {
                        next.status = RefundStatus::Failed;
                        next.failure = Some(e.to_string());
                    }
                }
            }
            None => {
                next.status = RefundStatus::Failed;
                next.failure = Some(format!("payment {} has no gateway reference", payment.id));
            }
        }
        self.port().update_refund(&next).await?;
        Ok(next)
    }

    /// Sends a failed refund to the gateway again (same idempotency key, so it is
    /// never paid out twice). The event's organizers, admins and the system.
    pub async fn retry_refund(&self, actor: &Actor, refund: RefundId) -> Result<Refund> {
        let r = self
            .port()
            .refund(refund)
            .await?
            .ok_or_else(|| Error::not_found("refund", refund))?;
        let booking = self.booking_record(r.booking_id).await?;
        actor.require_manages(booking.organization, "retry refund")?;
        if r.status != RefundStatus::Failed {
            return Err(Error::invalid_state("refund", refund, r.status, "retry"));
        }
        self.execute_refund(r).await
    }

    /// Handles a payment gateway's webhook: verifies it, then settles the payment
    /// it names. Deliveries may repeat, come out of order, or come after the hold
    /// lapsed; each is handled once and never oversells. An unknown payment
    /// reference is `NotFound` so the gateway delivers it again later.
    pub async fn handle_webhook(
        &self,
        gateway_name: &str,
        request: &WebhookRequest,
    ) -> Result<Option<Checkout>> {
        let gateway = self.gateway(gateway_name)?;
        let event = gateway.parse_webhook(request)?;
        let payment = self
            .port()
            .payment_by_reference(gateway_name, &event.payment_reference)
            .await?
            .ok_or_else(|| Error::not_found("payment", &event.payment_reference))?;
        match event.kind {
            WebhookKind::PaymentSucceeded => Ok(Some(self.payment_succeeded(payment).await?)),
            WebhookKind::PaymentFailed { reason } => {
                if payment.status == PaymentStatus::Succeeded {
                    return Ok(None);
                }
                self.set_payment_status(
                    payment.clone(),
                    PaymentStatus::Failed,
                    None,
                    Some(reason.clone()),
                )
                .await?;
                let booking = self.booking_record(payment.booking_id).await?;
                if booking.status == BookingStatus::Pending {
                    self.fail_pending(
                        booking.id,
                        BookingReason::PaymentDeclined { message: reason },
                    )
                    .await?;
                }
                Ok(Some(
                    self.checkout_state(self.booking_record(payment.booking_id).await?)
                        .await?,
                ))
            }
            WebhookKind::RefundSucceeded { .. } => Ok(None),
        }
    }

    async fn payment_succeeded(&self, payment: Payment) -> Result<Checkout> {
        let paid = self
            .set_payment_status(payment, PaymentStatus::Succeeded, None, None)
            .await?;
        self.complete_paid(paid, None).await
    }

    /// Asks the gateway for the outcome of a payment whose result was never seen
    /// (timeouts) and settles it like a webhook would. The system and admins.
    pub async fn reconcile_payment(&self, actor: &Actor, payment: PaymentId) -> Result<Checkout> {
        actor.require_privileged("reconcile payment")?;
        let p = self.payment_record(payment).await?;
        if p.status != PaymentStatus::Pending {
            let booking = self.booking_record(p.booking_id).await?;
            if p.status == PaymentStatus::Succeeded && booking.status == BookingStatus::Pending {
                // Paid, but the confirmation never landed (the store failed after the
                // payment was recorded): finish it now.
                return self.complete_paid(p, Some(booking)).await;
            }
            return self.checkout_state(booking).await;
        }
        let gateway = self.gateway(&p.gateway)?;
        let answer = match &p.reference {
            Some(r) => (*gateway).payment_status(r).await,
            None => {
                let booking = self.booking_record(p.booking_id).await?;
                // Same idempotency key: the gateway returns the original attempt.
                gateway
                    .create_payment(&PaymentRequest {
                        idempotency_key: p.idempotency_key.clone(),
                        amount: p.amount,
                        booking_id: p.booking_id,
                        customer: booking.customer,
                        description: crate::id::prefixed("booking ", booking.id.as_uuid()),
                    })
                    .await
            }
        };
        match answer {
            Ok(GatewayPayment {
                reference,
                status: GatewayPaymentStatus::Succeeded,
            }) => {
                let paid = self
                    .set_payment_status(p, PaymentStatus::Succeeded, Some(reference), None)
                    .await?;
                self.complete_paid(paid, None).await
            }
            Ok(GatewayPayment {
                reference,
                status: GatewayPaymentStatus::Declined { reason },
            }) => {
                self.set_payment_status(
                    p.clone(),
                    PaymentStatus::Failed,
                    Some(reference),
                    Some(reason.clone()),
                )
                .await?;
                let booking = self.booking_record(p.booking_id).await?;
                if booking.status == BookingStatus::Pending {
                    self.fail_pending(
                        booking.id,
                        BookingReason::PaymentDeclined { message: reason },
                    )
                    .await?;
                }
                self.checkout_state(self.booking_record(p.booking_id).await?)
                    .await
            }
            Ok(GatewayPayment { reference, .. }) => {
                self.set_payment_status(p.clone(), PaymentStatus::Pending, Some(reference), None)
                    .await?;
                self.checkout_state(self.booking_record(p.booking_id).await?)
                    .await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a booking: its customer, the event's organizers, admins.
    pub async fn booking(&self, actor: &Actor, id: BookingId) -> Result<Booking> {
        let b = self.booking_record(id).await?;
        if actor
            .require_owner_or_manager(b.customer, b.organization, "read booking")
            .is_err()
        {
            return Err(Error::not_found("booking", id));
        }
        Ok(b)
    }

    /// A booking with its latest payment and its tickets.
    pub async fn checkout_status(&self, actor: &Actor, id: BookingId) -> Result<Checkout> {
        let b = self.booking(actor, id).await?;
        self.checkout_state(b).await
    }

    /// A customer's booking history, newest first: the customer itself or admins.
    pub async fn bookings_of_customer(
        &self,
        actor: &Actor,
        customer: UserId,
        page: PageRequest,
    ) -> Result<Page<Booking>> {
        if actor.user() != Some(customer) && !actor.is_privileged() {
            return Err(Error::forbidden(
                "list bookings",
                "only the customer itself or an admin",
            ));
        }
        let (limit, before) = page.keyset::<BookingId>()?;
        let rows = self
            .port()
            .bookings_for_customer(customer, before, limit + 1)
            .await?;
        Ok(Page::from_overfetch(rows, limit, |b: &Booking| b.id))
    }

    /// An event's bookings, newest first: its organizers and admins.
    pub async fn bookings_of_event(
        &self,
        actor: &Actor,
        event: EventId,
        page: PageRequest,
    ) -> Result<Page<Booking>> {
        let e = self
            .port()
            .event(event)
            .await?
            .ok_or_else(|| Error::not_found("event", event))?;
        actor.require_manages(e.organization, "list bookings")?;
        let (limit, before) = page.keyset::<BookingId>()?;
        let rows = self
            .port()
            .bookings_for_event(event, before, limit + 1)
            .await?;
        Ok(Page::from_overfetch(rows, limit, |b: &Booking| b.id))
    }

    /// A booking's payments and refunds (each its own record).
    pub async fn payments(
        &self,
        actor: &Actor,
        booking: BookingId,
    ) -> Result<(Vec<Payment>, Vec<Refund>)> {
        self.booking(actor, booking).await?;
        Ok((
            self.port().payments_for_booking(booking).await?,
            self.port().refunds_for_booking(booking).await?,
        ))
    }

    /// Cancels a booking.
    ///
    /// - its customer: a pending booking is abandoned (units returned); a confirmed
    ///   one is cancelled with the refund its event's [`RefundPolicy`] gives now —
    ///   refused once no rule applies;
    /// - the event's organizers and admins: full refund.
    pub async fn cancel_booking(&self, actor: &Actor, id: BookingId) -> Result<Booking> {
        let booking = self.booking(actor, id).await?;
        let by_manager = actor.manages(booking.organization);
        match booking.status {
            BookingStatus::Pending => return self.fail_pending(id, BookingReason::Abandoned).await,
            BookingStatus::Confirmed => {}
            BookingStatus::Cancelled => return Ok(booking),
            other => return Err(Error::invalid_state("booking", id, other, "cancel")),
        }
        let (reason, percent) = if by_manager {
            (BookingReason::OrganizerCancelled, Decimal::ONE_HUNDRED)
        } else {
            let event = self
                .port()
                .event(booking.event_id)
                .await?
                .ok_or_else(|| Error::not_found("event", booking.event_id))?;
            let percent = event
                .refund_policy
                .percent_at(self.now(), event.starts_at)
                .ok_or_else(|| {
                    Error::invalid_state(
                        "booking",
                        id,
                        "past the refund policy's last deadline",
                        "cancel",
                    )
                })?;
            (BookingReason::CustomerCancelled, percent)
        };
        self.cancel_confirmed_booking(id, reason, Some(percent))
            .await
    }

    /// Cancels a confirmed booking, records the refund of `percent` of its payment
    /// with the cancellation, then sends the refund to the gateway.
    pub(crate) async fn cancel_confirmed_booking(
        &self,
        id: BookingId,
        reason: BookingReason,
        percent: Option<Decimal>,
    ) -> Result<Booking> {
        let booking = self.booking_record(id).await?;
        let payment = self
            .port()
            .payments_for_booking(id)
            .await?
            .into_iter()
            .find(|p| p.status == PaymentStatus::Succeeded);
        let refund = match (payment, percent) {
            (Some(p), Some(pct)) if pct > Decimal::ZERO => {
                let amount = booking
                    .total
                    .scale(pct / Decimal::ONE_HUNDRED, Rounding::Down)?
                    .min(p.amount.checked_sub(p.refunded)?)?;
                (amount.amount() > Decimal::ZERO)
                    .then(|| self.new_refund(&p, amount, &format!("{reason:?}")))
            }
            _ => None,
        };
        let cancelled = self
            .port()
            .cancel_booking(&CancelBooking {
                booking_id: id,
                reason,
                refund: refund.clone(),
                now: self.now(),
            })
            .await?;
        if let Some(r) = refund {
            if self.port().refund(r.id).await?.is_some() {
                self.execute_refund(r).await?;
            }
        }
        Ok(cancelled)
    }
}
