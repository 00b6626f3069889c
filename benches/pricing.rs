//! A quote of 10 units under a 10-rule surge policy (pure pricing, no store).
//!
//! `cargo bench --bench pricing`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::Duration;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use ems::id::{EventId, OrganizationId, TierId};
use ems::money::{Currency, Money};
use ems::pricing::*;
use rust_decimal::Decimal;

fn quote_10_units_10_rules(c: &mut Criterion) {
    let eur = |minor| Money::from_minor(minor, Currency::EUR);
    let mut rules = Vec::new();
    for i in 0..4u32 {
        rules.push(SurgeRule {
            trigger: Trigger::RemainingAtMost {
                scope: Scope::Tier,
                units: 40 - i * 10,
            },
            effect: Effect::Add(eur(250)),
        });
    }
    for i in 0..3i64 {
        rules.push(SurgeRule {
            trigger: Trigger::SoldRatioAtLeast {
                scope: Scope::Event,
                ratio: Decimal::new(50 + 10 * i, 2),
            },
            effect: Effect::Multiply(Decimal::new(105, 2)),
        });
    }
    rules.push(SurgeRule {
        trigger: Trigger::TimeToStart {
            min_before: Some(chrono::Duration::days(30)),
            max_before: None,
        },
        effect: Effect::Multiply(Decimal::new(80, 2)),
    });
    rules.push(SurgeRule {
        trigger: Trigger::TimeToStart {
            min_before: None,
            max_before: Some(chrono::Duration::days(2)),
        },
        effect: Effect::Add(eur(1000)),
    });
    rules.push(SurgeRule {
        trigger: Trigger::Velocity {
            units: 50,
            window: chrono::Duration::minutes(10),
        },
        effect: Effect::Multiply(Decimal::new(110, 2)),
    });
    let policy = SurgePolicy {
        rules,
        floor: Some(eur(2000)),
        ceiling: Some(eur(20000)),
        ..Default::default()
    };
    policy.validate(eur(5000)).expect("valid policy");
    let starts = Utc
        .with_ymd_and_hms(2030, 6, 1, 20, 0, 0)
        .single()
        .expect("valid instant");
    let first = UnitPosition {
        tier_sold_before: 65,
        tier_capacity: 100,
        event_sold_before: 480,
        event_capacity: 1000,
        sold_in_windows: [45, 0, 0, 0],
        at: starts - chrono::Duration::days(5),
        starts_at: starts,
    };
    let ctx = OrderContext {
        event_id: EventId::new(),
        organization: OrganizationId::new(),
        now: first.at,
        currency: Currency::EUR,
    };
    let item = OrderItem {
        tier_id: TierId::new(),
        base: eur(5000),
        policy: &policy,
        quantity: 10,
        first,
    };
    let fees = Fees::default();
    c.bench_function("quote_10_units_10_rules", |b| {
        b.iter(|| {
            price_order(
                std::hint::black_box(&ctx),
                std::hint::black_box(&[item]),
                None,
                &fees,
                None,
            )
            .expect("priced")
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = quote_10_units_10_rules
}
criterion_main!(benches);
