//! Quickstart: an organizer puts a concert on sale, two customers buy tickets, one
//! payment arrives late by webhook, a customer cancels under the refund policy, and
//! the door checks tickets in. Everything runs on the in-memory backend.
//!
//! Run it with `cargo run --example quickstart`.

use std::sync::Arc;

use chrono::{Duration, Utc};
use ems::booking::RefundPolicy;
use ems::clock::ManualClock;
use ems::payment::{FakeBehavior, FakeGateway};
use ems::prelude::*;
use rust_decimal_macros::dec;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A manual clock lets the story jump forward in time; a fake gateway plays the bank.
    let clock = ManualClock::new(Utc::now());
    let bank = FakeGateway::new("whsec_demo");
    let ems = Ems::builder(Arc::new(ems::memory::MemoryStore::new()))
        .clock(Arc::new(clock.clone()))
        .gateway("card", Arc::new(bank.clone()))
        .ticket_key(b"an example key of at least 32 bytes!")
        .build()?;

    println!("== Setting up");
    let org = ems
        .create_organization(&Actor::System, "Riverside Hall")
        .await?;
    let organizer = Actor::Organizer {
        user: UserId::new(),
        organization: org.id,
    };
    let starts = clock.now() + Duration::days(30);
    let policy = RefundPolicy::tiered(&[
        (Duration::days(14), dec!(100)),
        (Duration::days(2), dec!(50)),
    ])?;
    let new = NewEvent::builder(org.id, "Midnight Jazz", starts, starts + Duration::hours(3))
        .venue("Riverside Hall", "Lisbon")
        .category("concert")
        .capacity(150)
        .currency(Currency::EUR)
        .refund_policy(policy)
        .build();
    let event = ems.create_event(&organizer, new).await?;
    let standing = ems
        .add_tier(
            &organizer,
            event.id,
            NewTier::new("Standing", Money::parse("25.00", "EUR")?, 120),
        )
        .await?;
    let vip = ems
        .add_tier(
            &organizer,
            event.id,
            NewTier::new("VIP", Money::parse("80.00", "EUR")?, 30).per_order(1, 4),
        )
        .await?;
    let event = ems
        .publish_event(&organizer, event.id, event.version)
        .await?;
    println!(
        "'{}' on sale: {} seats, starts {}",
        event.title,
        event.capacity,
        event.starts_at.format("%Y-%m-%d %H:%M UTC")
    );

    println!("\n== Ana buys two standing tickets and one VIP");
    let ana = Actor::Customer {
        user: UserId::new(),
    };
    let order = CheckoutRequest {
        event_id: event.id,
        items: vec![
            HoldItem {
                tier_id: standing.id,
                quantity: 2,
            },
            HoldItem {
                tier_id: vip.id,
                quantity: 1,
            },
        ],
        idempotency_key: "ana-order-1".into(),
        gateway: None,
        on_behalf_of: None,
        coupon: None,
    };
    let checkout = ems.checkout(&ana, order.clone()).await?;
    println!(
        "booking {} is {:?}, total {}",
        checkout.booking.id, checkout.booking.status, checkout.booking.total
    );
    for t in &checkout.tickets {
        println!("  ticket …{}", &t.code[t.code.len() - 20..]);
    }
    let retry = ems.checkout(&ana, order).await?;
    println!(
        "a retried request with the same key returns the same booking: {}",
        retry.booking.id == checkout.booking.id
    );

    println!("\n== Ben's bank answers later, by webhook");
    let ben = Actor::Customer {
        user: UserId::new(),
    };
    bank.push(FakeBehavior::Pending);
    let pending = ems
        .checkout(
            &ben,
            CheckoutRequest {
                event_id: event.id,
                items: vec![HoldItem {
                    tier_id: standing.id,
                    quantity: 4,
                }],
                idempotency_key: "ben-1".into(),
                gateway: None,
                on_behalf_of: None,
                coupon: None,
            },
        )
        .await?;
    println!(
        "booking is {:?} while the bank decides",
        pending.booking.status
    );
    let reference = pending
        .payment
        .and_then(|p| p.reference)
        .expect("the bank gave a reference");
    let webhook = bank.settle(&reference, true);
    ems.handle_webhook("card", &webhook).await?;
    let again = ems.handle_webhook("card", &webhook).await?; // delivered twice
    let done = again.expect("the webhook names a booking");
    println!(
        "after the webhook (delivered twice): {:?} with {} tickets",
        done.booking.status,
        done.tickets.len()
    );

    let availability = ems.availability(&Actor::Anonymous, event.id).await?;
    for tier in &availability.tiers {
        println!(
            "  tier {}: {} left",
            if tier.tier_id == vip.id {
                "VIP"
            } else {
                "Standing"
            },
            tier.available
        );
    }

    println!("\n== Ben cancels 10 days before the show (50% back under the policy)");
    clock.set(starts - Duration::days(10));
    let cancelled = ems.cancel_booking(&ben, done.booking.id).await?;
    let (_, refunds) = ems.payments(&ben, done.booking.id).await?;
    println!(
        "booking {:?}; refund {} ({:?})",
        cancelled.status, refunds[0].amount, refunds[0].status
    );

    println!("\n== Doors open");
    clock.set(starts - Duration::minutes(30));
    let door = &organizer;
    for (who, code) in [
        ("Ana", &checkout.tickets[0].code),
        ("Ana again", &checkout.tickets[0].code),
        ("Ben", &done.tickets[0].code),
    ] {
        match ems.check_in(door, event.id, code).await? {
            CheckIn::Admitted { .. } => println!("  {who}: admitted"),
            CheckIn::Refused { refusal } => println!("  {who}: refused ({refusal:?})"),
            other => println!("  {who}: {other:?}"),
        }
    }
    match ems.check_in(door, event.id, "made-up-code").await? {
        CheckIn::Refused { refusal } => println!("  a forged code: refused ({refusal:?})"),
        other => println!("  a forged code: {other:?}"),
    }

    println!("\n== What integrators saw (domain events)");
    let log = ems.events_after(&Actor::System, None, 500).await?;
    let mut counts = std::collections::BTreeMap::new();
    for r in &log {
        let name = serde_json::to_value(&r.event)?["type"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        *counts.entry(name).or_insert(0) += 1;
    }
    for (name, n) in counts {
        println!("  {name:<20} ×{n}");
    }
    Ok(())
}
