//! Demo data: an organization with a venue, published events with tiers (one
//! with surge pricing), a coupon, and an admin, an organizer and a customer who
//! can log in.

use chrono::Duration;
use ems_core::directory::{NewUser, Role};
use ems_core::event::NewEvent;
use ems_core::facility::{NewResource, PriceUnit, ResourceKind, Stock, VenueDetails};
use ems_core::inventory::NewTier;
use ems_core::money::Money;
use ems_core::pricing::{
    CouponScope, Discount, Effect, NewCoupon, Scope, SurgePolicy, SurgeRule, Trigger,
};
use ems_core::{Actor, Ems};
use rust_decimal::Decimal;

use crate::auth::AuthService;
use crate::error::ApiError;

/// The password of every demo account.
pub const PASSWORD: &str = "demo-password-1";

/// What [`seed`] created: the accounts to log in with.
#[derive(Debug, Clone)]
pub struct Demo {
    /// `(role, email)` of each account; the password is [`PASSWORD`].
    pub accounts: Vec<(&'static str, String)>,
    /// The coupon code.
    pub coupon: String,
}

fn eur(amount: &str) -> Result<Money, ApiError> {
    Ok(Money::parse(amount, "EUR")?)
}

/// Seeds `ems` and `auth` with the demo world.
pub async fn seed(ems: &Ems, auth: &AuthService) -> Result<Demo, ApiError> {
    let system = Actor::System;
    let org = ems.create_organization(&system, "Riverside Hall").await?;
    let mut accounts = Vec::new();
    let mut organizer = None;
    for (label, email, role, organization) in [
        ("admin", "admin@ems.test", Role::Admin, None),
        (
            "organizer",
            "organizer@ems.test",
            Role::Organizer,
            Some(org.id),
        ),
        ("customer", "customer@ems.test", Role::Customer, None),
    ] {
        let user = ems
            .register_user(
                &system,
                NewUser {
                    email: email.to_owned(),
                    display_name: format!("Demo {label}"),
                    role,
                    organization,
                },
            )
            .await?;
        auth.set_password(user.id, PASSWORD).await?;
        if role == Role::Organizer {
            organizer = Some(user.actor());
        }
        accounts.push((label, user.email));
    }
    let organizer = organizer.ok_or_else(|| ApiError::internal("no demo organizer"))?;

    ems.create_resource(
        &organizer,
        NewResource {
            organization: org.id,
            kind: ResourceKind::Venue,
            name: "Riverside Main Hall".to_owned(),
            stock: Stock::Exclusive,
            price: eur("800")?,
            price_unit: PriceUnit::PerBooking,
            time_zone: chrono_tz::Europe::Lisbon,
            slots: Vec::new(),
            venue: Some(VenueDetails {
                capacity: 500,
                address: "Avenida Ribeira 1, Lisboa".to_owned(),
                latitude: 38.707,
                longitude: -9.136,
            }),
        },
    )
    .await?;

    let now = ems.now();
    let shows = [
        ("Jazz by the River", "music", 14, "25.00", 300),
        ("Rust Meetup Lisbon", "tech", 21, "5.00", 120),
        ("Fado Night", "music", 45, "35.00", 200),
    ];
    for (title, category, days, price, capacity) in shows {
        let starts = now + Duration::days(days);
        let event = ems
            .create_event(
                &organizer,
                NewEvent::builder(org.id, title, starts, starts + Duration::hours(3))
                    .description(format!("{title}: a demo event."))
                    .category(category)
                    .venue("Riverside Main Hall", "Lisbon")
                    .capacity(capacity)
                    .build(),
            )
            .await?;
        let standard = NewTier::new("Standard", eur(price)?, capacity - 20).per_order(1, 10);
        let standard = if title == "Jazz by the River" {
            // The last 50 standard tickets cost 20 % more.
            standard.pricing(SurgePolicy {
                rules: vec![SurgeRule {
                    trigger: Trigger::RemainingAtMost {
                        scope: Scope::Tier,
                        units: 50,
                    },
                    effect: Effect::Multiply(Decimal::new(120, 2)),
                }],
                ..Default::default()
            })
        } else {
            standard
        };
        ems.add_tier(&organizer, event.id, standard).await?;
        let vip_price = eur(price)?.amount() * Decimal::from(3) + Decimal::from(10);
        ems.add_tier(
            &organizer,
            event.id,
            NewTier::new("VIP", Money::new(vip_price, event.currency), 20).per_order(1, 4),
        )
        .await?;
        ems.publish_event(&organizer, event.id, event.version)
            .await?;
    }

    let coupon = ems
        .create_coupon(
            &organizer,
            NewCoupon {
                organization: org.id,
                code: "RIVER10".to_owned(),
                scope: CouponScope::Organization,
                discount: Discount::Percent(Decimal::from(10)),
                valid_from: None,
                valid_until: None,
                min_quantity: 1,
                max_uses: Some(1_000),
                max_uses_per_customer: Some(2),
            },
        )
        .await?;
    Ok(Demo {
        accounts,
        coupon: coupon.code,
    })
}
