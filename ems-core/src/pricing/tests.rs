use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::*;
use crate::id::{CouponId, EventId, OrganizationId, TierId};
use crate::money::{Currency, Money, Rounding};
use crate::Error;

fn eur(s: &str) -> Money {
    Money::parse(s, "EUR").unwrap()
}

fn at(days_before: i64) -> UnitPosition {
    let starts = Utc.with_ymd_and_hms(2030, 6, 1, 20, 0, 0).unwrap();
    UnitPosition {
        tier_sold_before: 0,
        tier_capacity: 100,
        event_sold_before: 0,
        event_capacity: 1000,
        sold_in_windows: [0; 4],
        at: starts - Duration::days(days_before),
        starts_at: starts,
    }
}

fn ctx(org: OrganizationId, event: EventId, currency: Currency) -> OrderContext {
    OrderContext {
        event_id: event,
        organization: org,
        now: at(10).at,
        currency,
    }
}

fn quote(policy: &SurgePolicy, base: Money, qty: u32, first: UnitPosition) -> Quote {
    let item = OrderItem {
        tier_id: TierId::from(uuid::Uuid::nil()),
        base,
        policy,
        quantity: qty,
        first,
    };
    price_order(
        &ctx(
            OrganizationId::from(uuid::Uuid::nil()),
            EventId::from(uuid::Uuid::nil()),
            base.currency(),
        ),
        &[item],
        None,
        &Fees::default(),
        None,
    )
    .unwrap()
}

#[test]
fn a_threshold_rule_is_one_line_and_prices_the_last_units() {
    let policy = SurgePolicy {
        rules: vec![SurgeRule::below_remaining(20, eur("60"))],
        ..Default::default()
    };
    let mut pos = at(10);
    pos.tier_sold_before = 75;
    let q = quote(&policy, eur("50"), 10, pos);
    assert_eq!(q.lines.len(), 2, "base for units 76..80, surge from 81");
    assert_eq!((q.lines[0].quantity, q.lines[0].unit_price), (5, eur("50")));
    assert_eq!(
        (
            q.lines[1].quantity,
            q.lines[1].unit_price,
            q.lines[1].rules_applied.clone()
        ),
        (5, eur("60"), vec![0])
    );
    assert_eq!(q.total, eur("550"));
}

#[test]
fn early_bird_and_last_minute_windows_apply_by_time_to_start() {
    let policy = SurgePolicy {
        rules: vec![
            SurgeRule {
                trigger: Trigger::TimeToStart {
                    min_before: Some(Duration::days(30)),
                    max_before: None,
                },
                effect: Effect::Multiply(dec!(0.8)),
            },
            SurgeRule {
                trigger: Trigger::TimeToStart {
                    min_before: None,
                    max_before: Some(Duration::days(2)),
                },
                effect: Effect::Add(eur("15")),
            },
        ],
        ..Default::default()
    };
    policy.validate(eur("50")).unwrap();
    assert_eq!(quote(&policy, eur("50"), 1, at(40)).total, eur("40"));
    assert_eq!(quote(&policy, eur("50"), 1, at(10)).total, eur("50"));
    assert_eq!(quote(&policy, eur("50"), 1, at(1)).total, eur("65"));
}

#[test]
fn velocity_counts_the_orders_own_earlier_units() {
    let policy = SurgePolicy {
        rules: vec![SurgeRule {
            trigger: Trigger::Velocity {
                units: 3,
                window: Duration::minutes(10),
            },
            effect: Effect::Multiply(dec!(1.5)),
        }],
        ..Default::default()
    };
    let mut pos = at(10);
    pos.sold_in_windows[0] = 1;
    let q = quote(&policy, eur("20"), 4, pos);
    assert_eq!(
        q.lines
            .iter()
            .map(|l| (l.quantity, l.unit_price))
            .collect::<Vec<_>>(),
        vec![(2, eur("20")), (2, eur("30"))]
    );
}

#[test]
fn contradictory_policies_are_rejected_naming_the_rule() {
    let base = eur("10");
    let bad = [
        SurgePolicy {
            floor: Some(eur("20")),
            ceiling: Some(eur("10")),
            ..Default::default()
        },
        SurgePolicy {
            rules: vec![SurgeRule {
                trigger: Trigger::RemainingAtMost {
                    scope: Scope::Tier,
                    units: 5,
                },
                effect: Effect::Multiply(dec!(0)),
            }],
            ..Default::default()
        },
        SurgePolicy {
            rules: vec![
                SurgeRule {
                    trigger: Trigger::TimeToStart {
                        min_before: None,
                        max_before: Some(Duration::days(3)),
                    },
                    effect: Effect::Add(eur("5")),
                },
                SurgeRule {
                    trigger: Trigger::TimeToStart {
                        min_before: Some(Duration::days(1)),
                        max_before: Some(Duration::days(5)),
                    },
                    effect: Effect::Add(eur("9")),
                },
            ],
            ..Default::default()
        },
        SurgePolicy {
            rules: vec![SurgeRule::below_remaining(
                5,
                Money::parse("10", "USD").unwrap(),
            )],
            ..Default::default()
        },
        SurgePolicy {
            rules: vec![SurgeRule {
                trigger: Trigger::SoldRatioAtLeast {
                    scope: Scope::Event,
                    ratio: dec!(1.5),
                },
                effect: Effect::Add(eur("1")),
            }],
            ..Default::default()
        },
    ];
    for p in bad {
        let err = p.validate(base).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{p:?} → {err:?}");
    }
}

#[test]
fn coupons_fees_and_tax_apply_in_the_stated_order() {
    let org = OrganizationId::new();
    let event = EventId::new();
    let tier = TierId::new();
    let policy = SurgePolicy::default();
    let item = OrderItem {
        tier_id: tier,
        base: eur("40"),
        policy: &policy,
        quantity: 3,
        first: at(10),
    };
    let coupon = Coupon {
        id: CouponId::new(),
        code: "SPRING".into(),
        organization: org,
        scope: CouponScope::Event(event),
        discount: Discount::Percent(dec!(25)),
        valid_from: None,
        valid_until: None,
        min_quantity: 2,
        max_uses: Some(100),
        max_uses_per_customer: Some(1),
    };
    let fees = Fees {
        per_ticket: Some(eur("2")),
        per_order: Some(eur("1.50")),
    };
    let tax = Tax {
        rate: dec!(10),
        mode: TaxMode::Exclusive,
    };
    let q = price_order(
        &ctx(org, event, Currency::EUR),
        &[item],
        Some(&coupon),
        &fees,
        Some(&tax),
    )
    .unwrap();
    let l = &q.lines[0];
    // 3 × 40 = 120, −25% = 90, +3 × 2 fees = 96, +10% tax = 9.60.
    assert_eq!(
        (l.discount, l.fees, l.tax, l.total),
        (eur("30"), eur("6"), eur("9.60"), eur("105.60"))
    );
    assert_eq!((q.order_fee, q.order_fee_tax), (eur("1.50"), eur("0.15")));
    assert_eq!(q.total, eur("107.25"));

    let inclusive = Tax {
        rate: dec!(20),
        mode: TaxMode::Inclusive,
    };
    let q = price_order(
        &ctx(org, event, Currency::EUR),
        &[item],
        None,
        &Fees::default(),
        Some(&inclusive),
    )
    .unwrap();
    assert_eq!(
        (q.lines[0].tax, q.total),
        (eur("20"), eur("120")),
        "inclusive tax is shown, not added"
    );

    let fixed = Coupon {
        discount: Discount::Fixed(eur("500")),
        ..coupon.clone()
    };
    let q = price_order(
        &ctx(org, event, Currency::EUR),
        &[item],
        Some(&fixed),
        &Fees::default(),
        None,
    )
    .unwrap();
    assert_eq!(
        (q.lines[0].discount, q.total),
        (eur("120"), eur("0")),
        "never below zero"
    );

    let foreign = Coupon {
        organization: OrganizationId::new(),
        ..coupon.clone()
    };
    assert!(price_order(
        &ctx(org, event, Currency::EUR),
        &[item],
        Some(&foreign),
        &Fees::default(),
        None
    )
    .is_err());
    let expired = Coupon {
        valid_until: Some(at(20).at),
        ..coupon.clone()
    };
    assert!(price_order(
        &ctx(org, event, Currency::EUR),
        &[item],
        Some(&expired),
        &Fees::default(),
        None
    )
    .is_err());
    let single = OrderItem {
        quantity: 1,
        ..item
    };
    assert!(
        price_order(
            &ctx(org, event, Currency::EUR),
            &[single],
            Some(&coupon),
            &Fees::default(),
            None
        )
        .is_err(),
        "minimum quantity"
    );
    let usd = OrderItem {
        base: Money::parse("40", "USD").unwrap(),
        ..item
    };
    assert!(
        price_order(
            &ctx(org, event, Currency::EUR),
            &[usd],
            None,
            &Fees::default(),
            None
        )
        .is_err(),
        "currency mismatch"
    );
}

fn currency() -> impl Strategy<Value = Currency> {
    prop_oneof![
        Just(Currency::JPY),
        Just(Currency::EUR),
        Just(Currency::KWD)
    ]
}

fn money_in(c: Currency, max_minor: i64) -> impl Strategy<Value = Money> {
    (0..max_minor).prop_map(move |m| Money::from_minor(m, c))
}

/// Policies whose effects only raise the price as units sell (non-decreasing).
fn rising_policy(c: Currency) -> impl Strategy<Value = (Money, SurgePolicy)> {
    let rule = prop_oneof![
        (1u32..60, 0i64..5_000).prop_map(move |(units, add)| SurgeRule {
            trigger: Trigger::RemainingAtMost {
                scope: Scope::Tier,
                units
            },
            effect: Effect::Add(Money::from_minor(add, c)),
        }),
        (0u32..=100, 100u32..300).prop_map(|(pct, f)| SurgeRule {
            trigger: Trigger::SoldRatioAtLeast {
                scope: Scope::Tier,
                ratio: Decimal::new(pct as i64, 2)
            },
            effect: Effect::Multiply(Decimal::new(f as i64, 2)),
        }),
    ];
    (
        money_in(c, 100_000),
        proptest::collection::vec(rule, 0..10),
        proptest::option::of(0i64..50_000),
        proptest::option::of(0i64..200_000),
        prop_oneof![
            Just(Rounding::HalfUp),
            Just(Rounding::HalfEven),
            Just(Rounding::Down),
            Just(Rounding::Up)
        ],
    )
        .prop_map(move |(base, mut rules, floor, ceiling, rounding)| {
            // Multiplications before additions keep every rule's effect monotone in position.
            rules.sort_by_key(|r| matches!(r.effect, Effect::Add(_)));
            let (floor, ceiling) = match (floor, ceiling) {
                (Some(f), Some(c2)) if f > c2 => (Some(c2), Some(f)),
                other => other,
            };
            (
                base,
                SurgePolicy {
                    rules,
                    floor: floor.map(|f| Money::from_minor(f, c)),
                    ceiling: ceiling.map(|x| Money::from_minor(x, c)),
                    rounding,
                },
            )
        })
}

proptest! {
    #[test]
    fn one_order_or_any_split_costs_the_same((base, policy) in currency().prop_flat_map(rising_policy), sold in 0u32..100, n in 1u32..12, cut in 0u32..12) {
        let mut first = at(5);
        first.tier_sold_before = sold;
        let cut = cut.min(n);
        let whole = quote(&policy, base, n, first);
        let mut second = first;
        for _ in 0..cut { second = second.next(); }
        let parts = if cut == 0 || cut == n { whole.total } else {
            quote(&policy, base, cut, first).total.checked_add(quote(&policy, base, n - cut, second).total).unwrap()
        };
        prop_assert_eq!(whole.total, parts);
    }

    #[test]
    fn with_rising_rules_unit_prices_never_fall_and_stay_within_bounds((base, policy) in currency().prop_flat_map(rising_policy), n in 1u32..120) {
        let q = quote(&policy, base, n, at(5));
        let prices: Vec<_> = q.lines.iter().map(|l| l.unit_price.amount()).collect();
        prop_assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");
        for l in &q.lines {
            if let Some(f) = policy.floor { prop_assert!(l.unit_price.amount() >= f.amount()); }
            if let Some(c) = policy.ceiling { prop_assert!(l.unit_price.amount() <= c.amount()); }
            prop_assert!(!l.unit_price.is_negative());
        }
    }

    #[test]
    fn totals_are_the_exact_sum_of_their_lines_and_never_negative(
        (base, policy) in currency().prop_flat_map(rising_policy),
        n in 1u32..30,
        pct in 1u32..=100,
        fixed in 0i64..100_000,
        fee in 0i64..1_000,
        rate in 0u32..=30,
        inclusive in any::<bool>(),
        percent in any::<bool>(),
    ) {
        let c = base.currency();
        let org = OrganizationId::new();
        let event = EventId::new();
        let item = OrderItem { tier_id: TierId::new(), base, policy: &policy, quantity: n, first: at(5) };
        let coupon = Coupon {
            id: CouponId::new(), code: "X".into(), organization: org, scope: CouponScope::Organization,
            discount: if percent { Discount::Percent(Decimal::from(pct)) } else { Discount::Fixed(Money::from_minor(fixed.max(1), c)) },
            valid_from: None, valid_until: None, min_quantity: 1, max_uses: None, max_uses_per_customer: None,
        };
        let fees = Fees { per_ticket: Some(Money::from_minor(fee, c)), per_order: Some(Money::from_minor(fee * 3, c)) };
        let tax = Tax { rate: Decimal::from(rate), mode: if inclusive { TaxMode::Inclusive } else { TaxMode::Exclusive } };
        let q = price_order(&ctx(org, event, c), &[item], Some(&coupon), &fees, Some(&tax)).unwrap();
        let mut sum = Money::zero(c);
        for l in &q.lines {
            prop_assert!(!l.discount.is_negative());
            prop_assert!(l.discount.amount() <= l.unit_price.times(l.quantity).unwrap().amount(), "a coupon never takes a line below zero");
            prop_assert!(!l.total.is_negative());
            for m in [l.unit_price, l.discount, l.fees, l.tax, l.total] { prop_assert!(m.is_minor_exact(), "{m} rounded to the minor unit"); }
            sum = sum.checked_add(l.total).unwrap();
        }
        sum = sum.checked_add(q.order_fee).unwrap();
        if !inclusive { sum = sum.checked_add(q.order_fee_tax).unwrap(); }
        prop_assert_eq!(sum, q.total);
        prop_assert!(!q.total.is_negative());
        prop_assert_eq!(q.quantity(), n);
    }
}
