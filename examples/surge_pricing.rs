//! Surge pricing: an on-sale where the last 20% of a tier cost 25% more, early
//! birds get 20% off, and last-minute buyers pay a flat premium. Every quote shows
//! how its price came about.
//!
//! Run it with `cargo run --example surge_pricing`.

use std::sync::Arc;

use chrono::{Duration, Utc};
use ems::clock::ManualClock;
use ems::prelude::*;
use ems::pricing::{Effect, Fees, Quote, Scope, SurgePolicy, SurgeRule, Tax, TaxMode, Trigger};
use rust_decimal_macros::dec;

fn show(label: &str, q: &Quote) {
    println!("{label}: {}", q.total);
    let tax = if q.tax_mode == Some(TaxMode::Inclusive) {
        "incl. tax"
    } else {
        "+ tax"
    };
    for l in &q.lines {
        println!(
            "    {} × {} (units {}..={}, base {}, rules {:?}) + fees {} {tax} {}",
            l.quantity,
            l.unit_price,
            l.first_position + 1,
            l.first_position + l.quantity,
            l.base_price,
            l.rules_applied,
            l.fees,
            l.tax
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::new(Utc::now());
    let ems = Ems::builder(Arc::new(ems::memory::MemoryStore::new()))
        .clock(Arc::new(clock.clone()))
        .build()?;
    let org = ems.create_organization(&Actor::System, "Arena").await?;
    let organizer = Actor::Organizer {
        user: UserId::new(),
        organization: org.id,
    };
    let starts = clock.now() + Duration::days(60);
    let eur = |s: &str| Money::parse(s, "EUR");

    let event = ems
        .create_event(
            &organizer,
            NewEvent::builder(org.id, "Summer Finale", starts, starts + Duration::hours(4))
                .capacity(100)
                .fees(Fees {
                    per_ticket: Some(eur("1.50")?),
                    per_order: None,
                })
                .tax(Tax {
                    rate: dec!(6),
                    mode: TaxMode::Inclusive,
                })
                .build(),
        )
        .await?;
    let policy = SurgePolicy {
        rules: vec![
            // Early birds: 20% off while the show is 30 days or more away.
            SurgeRule {
                trigger: Trigger::TimeToStart {
                    min_before: Some(Duration::days(30)),
                    max_before: None,
                },
                effect: Effect::Multiply(dec!(0.80)),
            },
            // The last 20% of the tier: +25%.
            SurgeRule {
                trigger: Trigger::RemainingAtMost {
                    scope: Scope::Tier,
                    units: 20,
                },
                effect: Effect::Multiply(dec!(1.25)),
            },
            // The last two days: +10 EUR.
            SurgeRule {
                trigger: Trigger::TimeToStart {
                    min_before: None,
                    max_before: Some(Duration::days(2)),
                },
                effect: Effect::Add(eur("10")?),
            },
        ],
        floor: Some(eur("30")?),
        ceiling: Some(eur("80")?),
        ..Default::default()
    };
    let tier = ems
        .add_tier(
            &organizer,
            event.id,
            NewTier::new("Standing", eur("45")?, 100)
                .per_order(1, 20)
                .pricing(policy),
        )
        .await?;
    ems.publish_event(&organizer, event.id, event.version)
        .await?;
    let four = [HoldItem {
        tier_id: tier.id,
        quantity: 4,
    }];

    println!("== 60 days out: early-bird");
    show(
        "4 tickets",
        &ems.quote(&Actor::Anonymous, event.id, &four, None).await?,
    );

    println!("\n== 20 days out, after 70 sales");
    clock.set(starts - Duration::days(20));
    for i in 0..7 {
        let buyer = Actor::Customer {
            user: UserId::new(),
        };
        let order = CheckoutRequest {
            event_id: event.id,
            items: vec![HoldItem {
                tier_id: tier.id,
                quantity: 10,
            }],
            idempotency_key: format!("bulk-{i}"),
            gateway: None,
            on_behalf_of: None,
            coupon: None,
        };
        ems.checkout(&buyer, order).await?;
    }
    show(
        "4 tickets",
        &ems.quote(&Actor::Anonymous, event.id, &four, None).await?,
    );
    let crossing = [HoldItem {
        tier_id: tier.id,
        quantity: 12,
    }];
    show(
        "12 tickets crossing into the last 20%",
        &ems.quote(&Actor::Anonymous, event.id, &crossing, None)
            .await?,
    );

    println!("\n== A hold locks its quote");
    let buyer = Actor::Customer {
        user: UserId::new(),
    };
    let hold = ems
        .place_hold(&buyer, event.id, &crossing, HoldOptions::default())
        .await?;
    show("held", &hold.quote);
    show(
        "the next buyer's 4",
        &ems.quote(&Actor::Anonymous, event.id, &four, None).await?,
    );
    ems.release_hold(&buyer, hold.id).await?;

    println!("\n== One day out: last-minute premium on top");
    clock.set(starts - Duration::days(1));
    show(
        "4 tickets",
        &ems.quote(&Actor::Anonymous, event.id, &four, None).await?,
    );
    Ok(())
}
