//! Plugging in your own payment provider: a bank-transfer gateway that answers
//! "pending" and confirms later by a signed webhook, built by name from
//! configuration through the registry and wrapped with timeouts, retries and a
//! circuit breaker.
//!
//! Run it with `cargo run --example custom_gateway`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Duration;
use ems::payment::*;
use ems::prelude::*;

/// Customers pay by bank transfer; the bank's notification settles the payment.
struct BankTransfer {
    secret: String,
    transfers: Mutex<HashMap<String, String>>, // idempotency key → reference
}

impl BankTransfer {
    /// What the bank would POST to your webhook endpoint once money arrived.
    fn notification(&self, reference: &str) -> WebhookRequest {
        let body = format!(
            r#"{{"id":"n-{reference}","payment_reference":"{reference}","kind":{{"kind":"payment_succeeded"}}}}"#
        );
        WebhookRequest {
            signature: Some(format!("{}:{}", self.secret, body.len())),
            body: body.into_bytes(),
        }
    }
}

#[async_trait]
impl PaymentGateway for BankTransfer {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            partial_refunds: true,
            idempotency_keys: true,
            manual_capture: false,
            void: false,
            webhooks: true,
        }
    }

    async fn create_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<GatewayPayment, GatewayError> {
        let mut transfers = self.transfers.lock().expect("not poisoned");
        let n = transfers.len();
        let reference = transfers
            .entry(request.idempotency_key.clone())
            .or_insert_with(|| format!("TRF-{:05}", n + 1))
            .clone();
        Ok(GatewayPayment {
            reference,
            status: GatewayPaymentStatus::Pending,
        })
    }

    async fn payment_status(&self, reference: &str) -> Result<GatewayPayment, GatewayError> {
        Ok(GatewayPayment {
            reference: reference.to_owned(),
            status: GatewayPaymentStatus::Pending,
        })
    }

    async fn refund(&self, request: &RefundRequest) -> Result<GatewayRefund, GatewayError> {
        Ok(GatewayRefund {
            reference: format!("RET-{}", request.idempotency_key),
            completed: true,
        })
    }

    fn parse_webhook(&self, request: &WebhookRequest) -> Result<WebhookEvent, GatewayError> {
        // A real bank signs with an HMAC; this toy checks a shared secret and the length.
        let expected = format!("{}:{}", self.secret, request.body.len());
        if request.signature.as_deref() != Some(expected.as_str()) {
            return Err(GatewayError::InvalidSignature);
        }
        serde_json::from_slice(&request.body).map_err(|e| GatewayError::InvalidWebhook {
            reason: e.to_string(),
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Register the kind once; build instances by name from configuration.
    let mut registry = GatewayRegistry::new();
    let bank = Arc::new(BankTransfer {
        secret: "s3cret".into(),
        transfers: Mutex::new(HashMap::new()),
    });
    let for_factory = Arc::clone(&bank);
    registry.register(
        "bank_transfer",
        Arc::new(move |_config: &GatewayConfig| {
            Ok(Arc::clone(&for_factory) as Arc<dyn PaymentGateway>)
        }),
    );
    let config = GatewayConfig {
        name: "transfer".into(),
        kind: "bank_transfer".into(),
        settings: BTreeMap::new(),
        resilience: Some(ResiliencePolicy::default()),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let gateway = registry.build(&config, Arc::clone(&clock))?;
    println!("registered gateway kinds: {:?}", registry.kinds());

    let ems = Ems::builder(Arc::new(ems::memory::MemoryStore::new()))
        .clock(clock)
        .gateway(&config.name, gateway)
        .hold_ttl(Duration::hours(24)) // transfers take a while
        .build()?;

    let org = ems
        .create_organization(&Actor::System, "Harbour Stage")
        .await?;
    let organizer = Actor::Organizer {
        user: UserId::new(),
        organization: org.id,
    };
    let starts = ems.now() + Duration::days(60);
    let event = ems
        .create_event(
            &organizer,
            NewEvent::builder(org.id, "Folk Weekend", starts, starts + Duration::days(2))
                .capacity(500)
                .build(),
        )
        .await?;
    let tier = ems
        .add_tier(
            &organizer,
            event.id,
            NewTier::new("Weekend pass", Money::parse("89.00", "EUR")?, 500),
        )
        .await?;
    ems.publish_event(&organizer, event.id, event.version)
        .await?;

    let buyer = Actor::Customer {
        user: UserId::new(),
    };
    let checkout = ems
        .checkout(
            &buyer,
            CheckoutRequest {
                event_id: event.id,
                items: vec![HoldItem {
                    tier_id: tier.id,
                    quantity: 2,
                }],
                idempotency_key: "weekend-1".into(),
                gateway: Some("transfer".into()),
                on_behalf_of: None,
                coupon: None,
            },
        )
        .await?;
    let reference = checkout
        .payment
        .as_ref()
        .and_then(|p| p.reference.clone())
        .expect("the bank gave a reference");
    println!(
        "booking {:?}: pay {} by transfer, reference {reference}",
        checkout.booking.status, checkout.booking.total
    );

    let mut forged = bank.notification(&reference);
    forged.signature = Some("guess".into());
    println!(
        "forged notification: {}",
        ems.handle_webhook("transfer", &forged)
            .await
            .expect_err("refused")
    );

    let settled = ems
        .handle_webhook("transfer", &bank.notification(&reference))
        .await?
        .expect("names a booking");
    println!(
        "after the bank's notification: {:?} with {} tickets",
        settled.booking.status,
        settled.tickets.len()
    );
    Ok(())
}
