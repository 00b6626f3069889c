//! The checkout saga's conversation with a gateway, checked call by call with a
//! mockall double: what it sends, how often, and what it never does.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use ems::payment::*;
use ems::prelude::*;
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
    let ems = Ems::builder(Arc::new(ems::memory::MemoryStore::new()))
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
