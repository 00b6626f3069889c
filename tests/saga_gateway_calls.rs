//! The checkout saga's conversation with a gateway, checked call by call with a
//! mockall double: what it sends, how often, and what it never does.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use ems::payment::*;
use ems::prelude::*;
use ems::ticket::TicketStore;
use mockall::predicate::function;

mockall::mock! {
    Gateway {}
    #[async_trait]
    impl PaymentGateway for Gateway {
        fn capabilities(&self) -> Capabilities;
        async fn create_payment(&self, request: &PaymentRequest) -> Result<GatewayPayment, GatewayError>;
        async fn payment_status(&self, reference: &str) -> Result<GatewayPayment, GatewayError>;
        async fn refund(&self, request: &RefundRequest) -> Result<GatewayRefund, GatewayError>;
        async fn void(&self, reference: &str) -> Result<(), GatewayError>;
    }
}

fn caps() -> Capabilities {
    Capabilities {
        partial_refunds: true,
        idempotency_keys: true,
        manual_capture: false,
        void: true,
        webhooks: true,
    }
}

async fn on_sale(gateway: MockGateway) -> (Ems, EventId, TierId) {
    on_sale_in(ems::memory::MemoryStore::new(), gateway).await
}

/// [`on_sale`] over `store`, which the caller keeps a handle of.
async fn on_sale_in(
    store: ems::memory::MemoryStore,
    gateway: MockGateway,
) -> (Ems, EventId, TierId) {
    let ems = Ems::builder(Arc::new(store))
        .gateway("mock", Arc::new(gateway))
        .build()
        .expect("valid configuration");
    let org = ems
        .create_organization(&Actor::System, "Org")
        .await
        .expect("org");
    let organizer = Actor::Organizer {
        user: UserId::new(),
        organization: org.id,
    };
    let starts = ems.now() + Duration::days(10);
    let event = ems
        .create_event(
            &organizer,
            NewEvent::builder(org.id, "Show", starts, starts + Duration::hours(2))
                .capacity(10)
                .build(),
        )
        .await
        .expect("event");
    let tier = ems
        .add_tier(
            &organizer,
            event.id,
            NewTier::new("GA", Money::parse("30", "EUR").expect("amount"), 10),
        )
        .await
        .expect("tier");
    ems.publish_event(&organizer, event.id, event.version)
        .await
        .expect("published");
    (ems, event.id, tier.id)
}

fn order(event: EventId, tier: TierId, key: &str) -> CheckoutRequest {
    CheckoutRequest {
        event_id: event,
        items: vec![HoldItem {
            tier_id: tier,
            quantity: 3,
        }],
        idempotency_key: key.into(),
        gateway: None,
        on_behalf_of: None,
        coupon: None,
    }
}

#[tokio::test]
async fn checkout_charges_the_booking_total_once_under_a_key_derived_from_the_booking() {
    let mut gateway = MockGateway::new();
    gateway.expect_capabilities().return_const(caps());
    gateway
        .expect_create_payment()
        .with(function(|r: &PaymentRequest| {
            r.amount == Money::parse("90", "EUR").expect("amount")
                && r.idempotency_key == format!("booking-{}", r.booking_id)
        }))
        .times(1)
        .returning(|_| {
            Ok(GatewayPayment {
                reference: "p-1".into(),
                status: GatewayPaymentStatus::Succeeded,
            })
        });
    gateway.expect_refund().never();
    let (ems, event, tier) = on_sale(gateway).await;
    let buyer = Actor::Customer {
        user: UserId::new(),
    };
    let first = ems
        .checkout(&buyer, order(event, tier, "k"))
        .await
        .expect("checkout");
    assert_eq!(first.booking.status, BookingStatus::Confirmed);
    let again = ems
        .checkout(&buyer, order(event, tier, "k"))
        .await
        .expect("retry");
    assert_eq!(
        again.booking.id, first.booking.id,
        "the retry reaches no gateway (times(1))"
    );
}

#[tokio::test]
async fn a_payment_recorded_as_paid_while_the_gateway_answers_is_confirmed_once() {
    // The gateway's webhook (here: a write straight to the store) records the
    // payment as succeeded before the gateway's own answer reaches the saga,
    // whose settling then finds the payment moved on (a version conflict).
    let store = ems::memory::MemoryStore::new();
    let webhook = store.clone();
    let mut gateway = MockGateway::new();
    gateway.expect_capabilities().return_const(caps());
    gateway
        .expect_create_payment()
        .times(1)
        .returning(move |request: &PaymentRequest| {
            futures::executor::block_on(async {
                let mut paid = webhook
                    .payments_for_booking(request.booking_id)
                    .await
                    .expect("payments read")
                    .pop()
                    .expect("the pending payment");
                paid.status = PaymentStatus::Succeeded;
                paid.reference = Some("p-1".into());
                paid.version += 1;
                webhook.update_payment(&paid).await.expect("webhook write");
            });
            Ok(GatewayPayment {
                reference: "p-1".into(),
                status: GatewayPaymentStatus::Succeeded,
            })
        });
    gateway.expect_refund().never();
    let (ems, event, tier) = on_sale_in(store.clone(), gateway).await;
    let buyer = Actor::Customer {
        user: UserId::new(),
    };
    let done = ems
        .checkout(&buyer, order(event, tier, "k"))
        .await
        .expect("checkout");
    assert_eq!(done.booking.status, BookingStatus::Confirmed);
    assert_eq!(done.tickets.len(), 3);
    let payments = store
        .payments_for_booking(done.booking.id)
        .await
        .expect("payments read");
    assert_eq!(payments.len(), 1, "one payment record, settled once");
    assert_eq!(payments[0].status, PaymentStatus::Succeeded);
    assert_eq!(payments[0].reference.as_deref(), Some("p-1"));
    let tickets = store
        .tickets_for_booking(done.booking.id)
        .await
        .expect("tickets read");
    assert_eq!(tickets.len(), 3, "tickets issued once");
}

#[tokio::test]
async fn a_declined_payment_is_neither_retried_nor_refunded() {
    let mut gateway = MockGateway::new();
    gateway.expect_capabilities().return_const(caps());
    gateway.expect_create_payment().times(1).returning(|_| {
        Err(GatewayError::Declined {
            reason: "insufficient funds".into(),
        })
    });
    gateway.expect_refund().never();
    gateway.expect_void().never();
    let (ems, event, tier) = on_sale(gateway).await;
    let c = ems
        .checkout(
            &Actor::Customer {
                user: UserId::new(),
            },
            order(event, tier, "k"),
        )
        .await
        .expect("checkout");
    assert_eq!(c.booking.status, BookingStatus::Failed);
    let left = ems
        .availability(&Actor::Anonymous, event)
        .await
        .expect("availability");
    assert_eq!(
        left.tier(tier).map(|t| t.available),
        Some(10),
        "units released"
    );
}

#[tokio::test]
async fn cancelling_refunds_exactly_the_policy_amount_against_the_payment_reference() {
    let mut gateway = MockGateway::new();
    gateway.expect_capabilities().return_const(caps());
    gateway.expect_create_payment().returning(|_| {
        Ok(GatewayPayment {
            reference: "p-77".into(),
            status: GatewayPaymentStatus::Succeeded,
        })
    });
    gateway
        .expect_refund()
        .with(function(|r: &RefundRequest| {
            r.payment_reference == "p-77" && r.amount == Money::parse("90", "EUR").expect("amount")
        }))
        .times(1)
        .returning(|r| {
            Ok(GatewayRefund {
                reference: format!("re-{}", r.idempotency_key),
                completed: true,
            })
        });
    let (ems, event, tier) = on_sale(gateway).await;
    let buyer = Actor::Customer {
        user: UserId::new(),
    };
    let c = ems
        .checkout(&buyer, order(event, tier, "k"))
        .await
        .expect("checkout");
    let cancelled = ems
        .cancel_booking(&buyer, c.booking.id)
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, BookingStatus::Cancelled);
    ems.cancel_booking(&buyer, c.booking.id)
        .await
        .expect("a second cancel is a no-op and refunds nothing (times(1))");
}
