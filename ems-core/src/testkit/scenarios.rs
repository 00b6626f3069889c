//! One behaviour per scenario. Each takes fresh [`TestStores`] and panics with a
//! message saying what was expected.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Duration;
use rust_decimal::Decimal;

use super::fixture::{eur, Fixture};
use super::TestStores;
use crate::booking::{BookingReason, BookingStatus, RefundPolicy};
use crate::directory::{NewUser, Role};
use crate::event::{EventFilter, EventPatch, EventStatus, NewEvent};
use crate::id::*;
use crate::inventory::{HoldItem, HoldOptions, HoldOwner, HoldStatus, NewTier, QuotaKey};
use crate::money::{Currency, Money};
use crate::outbox::DomainEvent;
use crate::page::PageRequest;
use crate::payment::{FakeBehavior, PaymentStatus, RefundStatus, WebhookKind};
use crate::ticket::{CheckIn, CheckInRefusal};
use crate::{Actor, Error};

fn items(tier: TierId, quantity: u32) -> Vec<HoldItem> {
    vec![HoldItem {
        tier_id: tier,
        quantity,
    }]
}

/// A store-level hold request (no coupon) of `quantity` units of `tier`,
/// made at `now` and lapsing `ttl_minutes` later.
fn hold_request(
    event: EventId,
    tier: TierId,
    quantity: u32,
    now: chrono::DateTime<chrono::Utc>,
    ttl_minutes: i64,
) -> crate::inventory::HoldRequest {
    crate::inventory::HoldRequest {
        id: HoldId::new(),
        event_id: event,
        customer: UserId::new(),
        items: items(tier, quantity),
        now,
        expires_at: now + Duration::minutes(ttl_minutes),
        coupon: None,
    }
}

/// Asserts `result` is the refusal of a hold id already taken, saying `what`
/// was refused otherwise.
#[track_caller]
fn assert_hold_id_taken<T: std::fmt::Debug>(result: &crate::Result<T>, what: &str) {
    assert!(
        matches!(
            result,
            Err(Error::AlreadyExists {
                entity: "hold",
                field: "id",
                ..
            })
        ),
        "{what}: {result:?}"
    );
}

/// A pending booking of all of `hold`, for its customer, under `key`, made
/// `now`.
fn booking_of(
    hold: &crate::inventory::Hold,
    key: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::booking::Booking {
    crate::booking::Booking {
        id: BookingId::new(),
        event_id: hold.event_id,
        organization: hold.organization,
        customer: hold.customer,
        hold_id: hold.id,
        lines: hold.lines.clone(),
        quote: hold.quote.clone(),
        total: hold.total,
        status: BookingStatus::Pending,
        reason: None,
        idempotency_key: key.into(),
        gateway: "fake".into(),
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

/// A second profile with an email already used (in any case) is refused.
pub async fn duplicate_email_is_rejected(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let new = |email: &str| NewUser {
        email: email.into(),
        display_name: "Ana".into(),
        role: Role::Customer,
        organization: None,
    };
    f.ems
        .register_user(&Actor::Anonymous, new("ana@example.com"))
        .await
        .expect("first registration");
    let err = f
        .ems
        .register_user(&Actor::Anonymous, new("ANA@example.com"))
        .await
        .expect_err("duplicate email refused");
    assert!(
        matches!(err, Error::AlreadyExists { field: "email", .. }),
        "expected AlreadyExists on email, got {err:?}"
    );
    let found = f
        .ems
        .store()
        .user_by_email("Ana@Example.com")
        .await
        .expect("lookup works");
    assert!(found.is_some(), "lookup by email is case-insensitive");
}

/// Drafts are hidden from customers in reads and listings.
pub async fn draft_event_is_invisible_to_customers(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let draft = f.draft_event(10).await;
    let err = f
        .ems
        .event(&f.customer(), draft.id)
        .await
        .expect_err("draft hidden");
    assert!(
        matches!(err, Error::NotFound { .. }),
        "expected NotFound, got {err:?}"
    );
    let page = f
        .ems
        .list_events(
            &f.customer(),
            EventFilter::default(),
            PageRequest::first(10),
        )
        .await
        .expect("listing");
    assert!(page.items.is_empty(), "customers list no drafts");
    let page = f
        .ems
        .list_events(&f.organizer, EventFilter::default(), PageRequest::first(10))
        .await
        .expect("listing");
    assert_eq!(page.items.len(), 1, "its organizer lists the draft");
}

/// Updating with a version that is no longer current is a `Conflict` and stores nothing.
pub async fn stale_event_update_is_a_conflict(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let e = f.draft_event(10).await;
    let patch = |t: &str| EventPatch {
        title: Some(t.into()),
        ..Default::default()
    };
    let updated = f
        .ems
        .update_event(&f.organizer, e.id, e.version, patch("First"))
        .await
        .expect("first update");
    assert_eq!(updated.version, e.version + 1);
    let err = f
        .ems_b
        .update_event(&f.organizer, e.id, e.version, patch("Second"))
        .await
        .expect_err("stale write refused");
    assert!(
        matches!(err, Error::Conflict { expected, found, .. } if expected == e.version && found == e.version + 1),
        "got {err:?}"
    );
    let now = f.ems.event(&f.organizer, e.id).await.expect("readable");
    assert_eq!(now.title, "First", "the stale write changed nothing");
}

/// A hold on a draft is refused with `InvalidState` and takes nothing.
pub async fn hold_on_draft_event_is_rejected(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let e = f.draft_event(10).await;
    let tier = f
        .ems
        .add_tier(&f.organizer, e.id, NewTier::new("GA", eur("10"), 10))
        .await
        .expect("tier");
    let err = f
        .ems
        .place_hold(
            &Actor::System,
            e.id,
            &items(tier.id, 1),
            HoldOptions {
                on_behalf_of: Some(UserId::new()),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(err, Err(Error::InvalidState { .. })),
        "expected InvalidState, got {err:?}"
    );
    let hidden = f
        .ems
        .place_hold(
            &f.customer(),
            e.id,
            &items(tier.id, 1),
            HoldOptions::default(),
        )
        .await;
    assert!(
        matches!(
            hidden,
            Err(Error::NotFound {
                entity: "event",
                ..
            })
        ),
        "a customer does not learn the draft exists: {hidden:?}"
    );
    assert_eq!(f.event_taken(e.id).await, 0, "nothing taken");
}

/// A hold on a cancelled event is refused.
pub async fn hold_on_cancelled_event_is_rejected(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    f.ems
        .cancel_event(&f.organizer, e.id, e.version)
        .await
        .expect("cancelled");
    let err = f
        .ems
        .place_hold(
            &f.customer(),
            e.id,
            &items(tiers[0].id, 1),
            HoldOptions::default(),
        )
        .await;
    assert!(
        matches!(err, Err(Error::InvalidState { .. })),
        "expected InvalidState, got {err:?}"
    );
    assert_eq!(f.event_taken(e.id).await, 0);
}

/// Customers, anonymous callers and other organizations' organizers cannot manage events.
pub async fn unauthorized_actor_cannot_manage_an_event(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let e = f.draft_event(10).await;
    let outsider = Actor::Organizer {
        user: UserId::new(),
        organization: OrganizationId::new(),
    };
    for actor in [f.customer(), Actor::Anonymous, outsider] {
        let err = f
            .ems
            .publish_event(&actor, e.id, e.version)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, Error::Forbidden { .. }),
            "{actor:?}: expected Forbidden, got {err:?}"
        );
        let err = f
            .ems
            .add_tier(&actor, e.id, NewTier::new("X", eur("1"), 1))
            .await
            .expect_err("refused");
        assert!(
            matches!(err, Error::Forbidden { .. }),
            "{actor:?}: expected Forbidden, got {err:?}"
        );
    }
    let new = NewEvent::builder(
        f.org.id,
        "Mine",
        f.clock_now() + Duration::days(1),
        f.clock_now() + Duration::days(2),
    )
    .capacity(5)
    .build();
    assert!(matches!(
        f.ems.create_event(&f.customer(), new).await,
        Err(Error::Forbidden { .. })
    ));
    let still = f.ems.event(&f.organizer, e.id).await.expect("readable");
    assert_eq!(still.status, EventStatus::Draft, "nothing changed");
}

/// Capacity cannot be lowered below the units already held or sold.
pub async fn event_capacity_cannot_drop_below_units_taken(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    f.buy(&f.customer(), e.id, tiers[0].id, 4).await;
    let err = f
        .ems
        .update_event(
            &f.organizer,
            e.id,
            e.version,
            EventPatch {
                capacity: Some(3),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(
            err,
            Err(Error::InvalidInput {
                field: "capacity",
                ..
            })
        ),
        "got {err:?}"
    );
    let ok = f
        .ems
        .update_event(
            &f.organizer,
            e.id,
            e.version,
            EventPatch {
                capacity: Some(4),
                ..Default::default()
            },
        )
        .await;
    assert!(
        ok.is_ok(),
        "capacity equal to units taken is allowed: {ok:?}"
    );
    assert_eq!(f.available(e.id, tiers[0].id).await, 0);
}

/// Rescheduling keeps confirmed bookings and tickets valid and records `EventRescheduled`.
pub async fn reschedule_keeps_bookings_valid_and_tells_holders(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 2).await;
    let new_start = e.starts_at + Duration::days(7);
    let moved = f
        .ems
        .reschedule_event(
            &f.organizer,
            e.id,
            e.version,
            new_start,
            new_start + Duration::hours(3),
        )
        .await
        .expect("rescheduled");
    assert_eq!(moved.status, EventStatus::Rescheduled);
    assert_eq!(moved.rescheduled_from, Some(e.starts_at));
    let b = f
        .ems
        .booking(&f.organizer, c.booking.id)
        .await
        .expect("booking readable");
    assert_eq!(b.status, BookingStatus::Confirmed, "bookings stay valid");
    let events = f
        .ems
        .events_after(&Actor::System, None, 500)
        .await
        .expect("log readable");
    assert!(
        events.iter().any(|r| matches!(r.event, DomainEvent::EventRescheduled { event_id, starts_at, .. } if event_id == e.id && starts_at == new_start)),
        "an EventRescheduled domain event tells integrators"
    );
    let check = f
        .ems
        .check_in(&f.organizer, e.id, &c.tickets[0].code)
        .await
        .expect("check-in runs");
    assert!(
        matches!(check, CheckIn::Admitted { .. }),
        "tickets still admit: {check:?}"
    );
}

/// Cancelling an event releases open holds, fails pending bookings, and refunds
/// every paid booking in full through its gateway.
pub async fn cancel_event_releases_holds_and_refunds_paid_bookings(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(20, &[("GA", "12.50", 20)]).await;
    let paid = f.buy(&f.customer(), e.id, tiers[0].id, 2).await;
    let held = f
        .ems
        .place_hold(
            &f.customer(),
            e.id,
            &items(tiers[0].id, 3),
            HoldOptions::default(),
        )
        .await
        .expect("hold");
    f.gateway.push(FakeBehavior::Pending);
    let pending = f.buy(&f.customer(), e.id, tiers[0].id, 1).await;
    assert_eq!(pending.booking.status, BookingStatus::Pending);
    let c = f
        .ems
        .cancel_event(&f.organizer, e.id, e.version)
        .await
        .expect("cancelled");
    assert_eq!(
        c.released_holds, 2,
        "the bare hold and the pending booking's hold"
    );
    assert_eq!(c.confirmed_bookings, vec![paid.booking.id]);
    let hold = f
        .ems
        .store()
        .hold(held.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(hold.status, HoldStatus::Released);
    let p = f
        .ems
        .booking(&f.organizer, pending.booking.id)
        .await
        .expect("read");
    assert_eq!(p.status, BookingStatus::Failed);
    let b = f
        .ems
        .booking(&f.organizer, paid.booking.id)
        .await
        .expect("read");
    assert_eq!(
        (b.status, b.reason),
        (
            BookingStatus::Cancelled,
            Some(BookingReason::EventCancelled)
        )
    );
    let (_, refunds) = f
        .ems
        .payments(&f.organizer, paid.booking.id)
        .await
        .expect("payments");
    assert_eq!(refunds.len(), 1);
    assert_eq!(
        (refunds[0].status, refunds[0].amount),
        (RefundStatus::Succeeded, eur("25.00"))
    );
    let reference = paid
        .payment
        .and_then(|p| p.reference)
        .expect("paid at the gateway");
    assert_eq!(
        f.gateway.net_charged(&reference),
        Some(eur("0")),
        "the gateway returned everything"
    );
    assert_eq!(f.event_taken(e.id).await, 0, "every unit is back");
}

/// A completed event sells nothing more.
pub async fn completed_event_stops_sales(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let early = f.ems.complete_event(&f.organizer, e.id, e.version).await;
    assert!(
        matches!(early, Err(Error::InvalidState { .. })),
        "cannot complete before the start: {early:?}"
    );
    f.clock.set(e.starts_at + Duration::hours(1));
    let done = f
        .ems
        .complete_event(&f.organizer, e.id, e.version)
        .await
        .expect("completed");
    assert_eq!(done.status, EventStatus::Completed);
    let err = f
        .ems
        .place_hold(
            &f.customer(),
            e.id,
            &items(tiers[0].id, 1),
            HoldOptions::default(),
        )
        .await;
    assert!(
        matches!(err, Err(Error::InvalidState { .. })),
        "got {err:?}"
    );
}

/// Search applies organizer, status, category, dates, text, city and venue filters together.
pub async fn event_search_applies_every_filter(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let base = f.clock_now() + Duration::days(10);
    let mk = |title: &str, city: &str, venue: &str, cat: &str, days: i64| {
        NewEvent::builder(
            f.org.id,
            title,
            base + Duration::days(days),
            base + Duration::days(days) + Duration::hours(2),
        )
        .capacity(10)
        .venue(venue, city)
        .category(cat)
        .description(format!("An evening of {cat}"))
        .build()
    };
    let jazz = f
        .ems
        .create_event(
            &f.organizer,
            mk("Jazz at the Docks", "Porto", "Docks Club", "concert", 1),
        )
        .await
        .expect("created");
    let f2 = f
        .ems
        .create_event(
            &f.organizer,
            mk("Fado Night", "Lisbon", "Alfama House", "concert", 2),
        )
        .await
        .expect("created");
    let talk = f
        .ems
        .create_event(
            &f.organizer,
            mk("Rust Talk", "Lisbon", "Tech Hub", "talk", 3),
        )
        .await
        .expect("created");
    for e in [&jazz, &f2, &talk] {
        f.ems
            .publish_event(&f.organizer, e.id, e.version)
            .await
            .expect("published");
    }
    let other_org = f
        .ems
        .create_organization(&Actor::System, "Other")
        .await
        .expect("org");
    let other = Actor::Organizer {
        user: UserId::new(),
        organization: other_org.id,
    };
    let foreign = NewEvent::builder(
        other_org.id,
        "Jazz Elsewhere",
        base,
        base + Duration::hours(1),
    )
    .capacity(5)
    .venue("Docks Club", "Porto")
    .build();
    let foreign = f.ems.create_event(&other, foreign).await.expect("created");
    f.ems
        .publish_event(&other, foreign.id, foreign.version)
        .await
        .expect("published");

    let titles = |filter: EventFilter| {
        let ems = f.ems.clone();
        async move {
            let page = ems
                .list_events(&Actor::Anonymous, filter, PageRequest::first(50))
                .await
                .expect("listing");
            page.items.into_iter().map(|e| e.title).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        titles(EventFilter {
            text: Some("JAZZ".into()),
            ..Default::default()
        })
        .await,
        vec!["Jazz Elsewhere", "Jazz at the Docks"]
    );
    assert_eq!(
        titles(EventFilter {
            text: Some("jazz".into()),
            organization: Some(f.org.id),
            ..Default::default()
        })
        .await,
        vec!["Jazz at the Docks"]
    );
    assert_eq!(
        titles(EventFilter {
            city: Some("lisbon".into()),
            ..Default::default()
        })
        .await,
        vec!["Fado Night", "Rust Talk"]
    );
    assert_eq!(
        titles(EventFilter {
            category: Some("Talk".into()),
            ..Default::default()
        })
        .await,
        vec!["Rust Talk"]
    );
    assert_eq!(
        titles(EventFilter {
            venue: Some("docks".into()),
            ..Default::default()
        })
        .await,
        vec!["Jazz Elsewhere", "Jazz at the Docks"]
    );
    assert_eq!(
        titles(EventFilter {
            text: Some("evening of talk".into()),
            ..Default::default()
        })
        .await,
        vec!["Rust Talk"],
        "description is searched"
    );
    assert_eq!(
        titles(EventFilter {
            starts_from: Some(base + Duration::days(2)),
            starts_before: Some(base + Duration::days(3)),
            ..Default::default()
        })
        .await,
        vec!["Fado Night"]
    );
    f.ems
        .cancel_event(&f.organizer, talk.id, talk.version + 1)
        .await
        .expect("cancelled");
    assert_eq!(
        titles(EventFilter {
            statuses: Some(vec![EventStatus::Cancelled]),
            ..Default::default()
        })
        .await,
        vec!["Rust Talk"]
    );
}

/// Keyset pages neither skip nor repeat events when new ones are inserted between reads.
pub async fn event_pages_stay_stable_under_inserts(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let base = f.clock_now() + Duration::days(10);
    let mut created = Vec::new();
    for i in 0..7 {
        let s = base + Duration::hours(i * 2);
        let e = f
            .ems
            .create_event(
                &f.organizer,
                NewEvent::builder(f.org.id, format!("E{i}"), s, s + Duration::hours(1))
                    .capacity(5)
                    .build(),
            )
            .await
            .expect("created");
        created.push(e.id);
    }
    let first = f
        .ems
        .list_events(&f.organizer, EventFilter::default(), PageRequest::first(3))
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 3);
    // An event inserted before the cursor and one after it.
    let early = base - Duration::hours(1);
    f.ems
        .create_event(
            &f.organizer,
            NewEvent::builder(f.org.id, "Early", early, early + Duration::hours(1))
                .capacity(5)
                .build(),
        )
        .await
        .expect("created");
    let late = base + Duration::days(5);
    let late_e = f
        .ems
        .create_event(
            &f.organizer,
            NewEvent::builder(f.org.id, "Late", late, late + Duration::hours(1))
                .capacity(5)
                .build(),
        )
        .await
        .expect("created");
    let mut seen: Vec<_> = first.items.iter().map(|e| e.id).collect();
    let mut next = first.next.clone();
    while let Some(cursor) = next {
        let page = f
            .ems
            .list_events(
                &f.organizer,
                EventFilter::default(),
                PageRequest::after(cursor, 3),
            )
            .await
            .expect("next page");
        seen.extend(page.items.iter().map(|e| e.id));
        next = page.next;
    }
    let mut expected = created.clone();
    expected.push(late_e.id);
    assert_eq!(
        seen, expected,
        "every event after the cursor exactly once, in start order"
    );
    let bad = f
        .ems
        .list_events(
            &f.organizer,
            EventFilter::default(),
            PageRequest::after("garbage!".to_owned().into(), 3),
        )
        .await;
    assert!(
        matches!(
            bad,
            Err(Error::InvalidInput {
                field: "cursor",
                ..
            })
        ),
        "got {bad:?}"
    );
}

/// A hold takes its units on the tier, the event and every shared quota.
pub async fn hold_reserves_units_on_every_quota(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let e = f.draft_event(50).await;
    let q = f
        .ems
        .add_shared_quota(&f.organizer, e.id, "Seated", 30)
        .await
        .expect("quota");
    let tier = f
        .ems
        .add_tier(
            &f.organizer,
            e.id,
            NewTier::new("Stalls", eur("20"), 20).shared_quota(q.id),
        )
        .await
        .expect("tier");
    f.ems
        .publish_event(&f.organizer, e.id, e.version)
        .await
        .expect("published");
    let hold = f
        .ems
        .place_hold(
            &f.customer(),
            e.id,
            &items(tier.id, 3),
            HoldOptions::default(),
        )
        .await
        .expect("hold");
    assert_eq!(hold.total, eur("60"));
    assert_eq!(hold.status, HoldStatus::Active);
    let a = f.availability(e.id).await;
    let taken = |k: QuotaKey| a.quotas.iter().find(|x| x.quota == k).map(|x| x.taken);
    assert_eq!(taken(QuotaKey::Event), Some(3));
    assert_eq!(taken(QuotaKey::Tier(tier.id)), Some(3));
    assert_eq!(taken(QuotaKey::Shared(q.id)), Some(3));
    assert_eq!(a.tier(tier.id).map(|t| t.available), Some(17));
}

/// A multi-tier hold that does not fit on one quota takes nothing on any quota.
pub async fn hold_that_does_not_fit_changes_nothing(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f
        .published_event(100, &[("A", "10", 10), ("B", "5", 2)])
        .await;
    let req = vec![
        HoldItem {
            tier_id: tiers[0].id,
            quantity: 5,
        },
        HoldItem {
            tier_id: tiers[1].id,
            quantity: 3,
        },
    ];
    let err = f
        .ems
        .place_hold(&f.customer(), e.id, &req, HoldOptions::default())
        .await
        .expect_err("B lacks room");
    assert!(
        matches!(
            err,
            Error::SoldOut {
                requested: 3,
                available: 2,
                ..
            }
        ),
        "expected SoldOut{{requested 3, available 2}}, got {err:?}"
    );
    let a = f.availability(e.id).await;
    assert!(
        a.quotas.iter().all(|q| q.taken == 0),
        "no quota changed: {a:?}"
    );
}

/// Tiers attached to one shared quota together never exceed it.
pub async fn shared_quota_limits_its_tiers_together(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let e = f.draft_event(100).await;
    let q = f
        .ems
        .add_shared_quota(&f.organizer, e.id, "Balcony", 5)
        .await
        .expect("quota");
    let a = f
        .ems
        .add_tier(
            &f.organizer,
            e.id,
            NewTier::new("Adult", eur("20"), 10).shared_quota(q.id),
        )
        .await
        .expect("tier");
    let c = f
        .ems
        .add_tier(
            &f.organizer,
            e.id,
            NewTier::new("Child", eur("10"), 10).shared_quota(q.id),
        )
        .await
        .expect("tier");
    f.ems
        .publish_event(&f.organizer, e.id, e.version)
        .await
        .expect("published");
    f.buy(&f.customer(), e.id, a.id, 3).await;
    assert_eq!(
        f.available(e.id, c.id).await,
        2,
        "the child tier sees the shared quota's 2 left"
    );
    let err = f
        .ems
        .place_hold(&f.customer(), e.id, &items(c.id, 3), HoldOptions::default())
        .await;
    assert!(
        matches!(err, Err(Error::SoldOut { available: 2, .. })),
        "got {err:?}"
    );
}

/// Units of an expired hold are available again without any sweep.
pub async fn expired_hold_units_are_available_again(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(5, &[("GA", "10", 5)]).await;
    let hold = f
        .ems
        .place_hold(
            &f.customer(),
            e.id,
            &items(tiers[0].id, 5),
            HoldOptions {
                ttl: Some(Duration::minutes(5)),
                ..Default::default()
            },
        )
        .await
        .expect("hold");
    assert_eq!(f.available(e.id, tiers[0].id).await, 0);
    f.clock.advance(Duration::minutes(5));
    assert_eq!(hold.status_at(f.clock_now()), HoldStatus::Expired);
    assert_eq!(
        f.available(e.id, tiers[0].id).await,
        5,
        "expired units count as available"
    );
    f.ems_b
        .place_hold(
            &f.customer(),
            e.id,
            &items(tiers[0].id, 5),
            HoldOptions::default(),
        )
        .await
        .expect("units can be held again");
}

/// The sweeper expires lapsed holds and their pending bookings and records both.
pub async fn sweep_expires_holds_and_their_pending_bookings(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    f.gateway.push(FakeBehavior::Pending);
    let pending = f.buy(&f.customer(), e.id, tiers[0].id, 2).await;
    let bare = f
        .ems
        .place_hold(
            &f.customer(),
            e.id,
            &items(tiers[0].id, 1),
            HoldOptions::default(),
        )
        .await
        .expect("hold");
    assert_eq!(
        f.ems
            .sweep_expired(&Actor::System, 100)
            .await
            .expect("sweep"),
        0,
        "nothing due yet"
    );
    f.clock
        .advance(f.ems.config().hold_ttl + Duration::seconds(1));
    assert_eq!(
        f.ems
            .sweep_expired(&Actor::System, 100)
            .await
            .expect("sweep"),
        2
    );
    let b = f
        .ems
        .booking(&f.organizer, pending.booking.id)
        .await
        .expect("read");
    assert_eq!(
        (b.status, b.reason),
        (BookingStatus::Expired, Some(BookingReason::HoldExpired))
    );
    let h = f
        .ems
        .store()
        .hold(bare.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(h.status, HoldStatus::Expired);
    let log = f
        .ems
        .events_after(&Actor::System, None, 500)
        .await
        .expect("log");
    assert_eq!(
        log.iter()
            .filter(|r| matches!(r.event, DomainEvent::HoldExpired { .. }))
            .count(),
        2
    );
    assert!(log.iter().any(|r| matches!(r.event, DomainEvent::BookingExpired { booking_id, .. } if booking_id == pending.booking.id)));
    assert!(matches!(
        f.ems.sweep_expired(&f.customer(), 10).await,
        Err(Error::Forbidden { .. })
    ));
}

/// Releasing returns the units once; releasing again changes nothing; only
/// the holder (or the event's managers) may, and the store tells who that is.
pub async fn released_hold_returns_units_once(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let buyer = f.customer();
    let other = f
        .ems
        .place_hold(
            &f.customer(),
            e.id,
            &items(tiers[0].id, 2),
            HoldOptions::default(),
        )
        .await
        .expect("hold");
    let hold = f
        .ems
        .place_hold(&buyer, e.id, &items(tiers[0].id, 3), HoldOptions::default())
        .await
        .expect("hold");
    assert!(
        matches!(
            f.ems.release_hold(&f.customer(), hold.id).await,
            Err(Error::NotFound { .. })
        ),
        "a stranger cannot see it"
    );
    // What authorizing a release reads: the hold's owner, on either handle.
    let owner = Some(HoldOwner::of(&hold));
    assert_eq!(
        f.ems.store().hold_owner(hold.id).await.expect("read"),
        owner
    );
    assert_eq!(
        f.ems_b.store().hold_owner(hold.id).await.expect("read"),
        owner
    );
    assert_eq!(
        f.ems.store().hold_owner(HoldId::new()).await.expect("read"),
        None,
        "no such hold"
    );
    // The store's own check, whichever path the service takes.
    assert!(
        matches!(
            f.ems_b
                .store()
                .release_customer_hold(hold.id, UserId::new(), f.clock_now())
                .await,
            Err(Error::NotFound { .. })
        ),
        "another customer's release is refused as if there were no such hold"
    );
    assert!(matches!(
        f.ems
            .store()
            .release_customer_hold(HoldId::new(), hold.customer, f.clock_now())
            .await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        f.event_taken(e.id).await,
        5,
        "both holds still take their units"
    );
    let released = f.ems.release_hold(&buyer, hold.id).await.expect("released");
    assert_eq!(released.status, HoldStatus::Released);
    let again = f
        .ems_b
        .store()
        .release_customer_hold(hold.id, hold.customer, f.clock_now())
        .await
        .expect("the holder's second release is a no-op");
    assert_eq!(again.status, HoldStatus::Released);
    assert_eq!(
        f.ems_b.store().hold_owner(hold.id).await.expect("read"),
        owner,
        "an ended hold keeps its owner"
    );
    let again = f
        .ems_b
        .release_hold(&buyer, hold.id)
        .await
        .expect("second release is a no-op");
    assert_eq!(again.status, HoldStatus::Released);
    assert_eq!(
        f.event_taken(e.id).await,
        2,
        "only the other hold's units are taken"
    );
    let _ = other;
}

/// Purging forgets ended holds without a booking and keeps everything else.
pub async fn purge_forgets_only_ended_unbooked_holds(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(20, &[("GA", "10", 20)]).await;
    let buyer = f.customer();
    let released = f
        .ems
        .place_hold(&buyer, e.id, &items(tiers[0].id, 1), HoldOptions::default())
        .await
        .expect("hold");
    f.ems
        .release_hold(&buyer, released.id)
        .await
        .expect("released");
    let active = f
        .ems
        .place_hold(&buyer, e.id, &items(tiers[0].id, 2), HoldOptions::default())
        .await
        .expect("hold");
    f.gateway.push(FakeBehavior::Decline("no".into()));
    let failed = f.buy(&buyer, e.id, tiers[0].id, 1).await;
    assert_eq!(failed.booking.status, BookingStatus::Failed);
    assert_eq!(
        f.ems
            .purge_ended_holds(&Actor::System, Duration::minutes(1), 100)
            .await
            .expect("purge"),
        0,
        "too recent"
    );
    f.clock.advance(Duration::minutes(2));
    let purged = f
        .ems_b
        .purge_ended_holds(&Actor::System, Duration::minutes(1), 100)
        .await
        .expect("purge");
    assert_eq!(purged, 1, "only the released bare hold");
    assert!(
        f.ems
            .store()
            .hold(released.id)
            .await
            .expect("read")
            .is_none(),
        "forgotten"
    );
    assert!(
        f.ems.store().hold(active.id).await.expect("read").is_some(),
        "active holds stay"
    );
    assert!(
        f.ems
            .store()
            .hold(failed.booking.hold_id)
            .await
            .expect("read")
            .is_some(),
        "booked holds stay"
    );
    assert_eq!(f.event_taken(e.id).await, 2, "counters untouched");
    assert!(matches!(
        f.ems.purge_ended_holds(&buyer, Duration::zero(), 1).await,
        Err(Error::Forbidden { .. })
    ));
}

/// Quantities outside the tier's per-order range are refused.
pub async fn quantity_outside_per_order_limits_is_rejected(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let e = f.draft_event(100).await;
    let t = f
        .ems
        .add_tier(
            &f.organizer,
            e.id,
            NewTier::new("Pairs", eur("10"), 50).per_order(2, 4),
        )
        .await
        .expect("tier");
    f.ems
        .publish_event(&f.organizer, e.id, e.version)
        .await
        .expect("published");
    for q in [1, 5] {
        let err = f
            .ems
            .place_hold(&f.customer(), e.id, &items(t.id, q), HoldOptions::default())
            .await;
        assert!(
            matches!(
                err,
                Err(Error::InvalidInput {
                    field: "items.quantity",
                    ..
                })
            ),
            "{q}: got {err:?}"
        );
    }
    assert!(f
        .ems
        .place_hold(&f.customer(), e.id, &items(t.id, 4), HoldOptions::default())
        .await
        .is_ok());
}

/// Zero quantities, empty orders and unknown tiers are typed errors that take nothing.
pub async fn zero_quantity_is_rejected_without_partial_state(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let c = f.customer();
    let zero = f
        .ems
        .place_hold(&c, e.id, &items(tiers[0].id, 0), HoldOptions::default())
        .await;
    assert!(
        matches!(
            zero,
            Err(Error::InvalidInput {
                field: "items.quantity",
                ..
            })
        ),
        "got {zero:?}"
    );
    let empty = f
        .ems
        .place_hold(&c, e.id, &[], HoldOptions::default())
        .await;
    assert!(
        matches!(empty, Err(Error::InvalidInput { field: "items", .. })),
        "got {empty:?}"
    );
    let mixed = vec![
        HoldItem {
            tier_id: tiers[0].id,
            quantity: 2,
        },
        HoldItem {
            tier_id: TierId::new(),
            quantity: 1,
        },
    ];
    let unknown = f
        .ems
        .place_hold(&c, e.id, &mixed, HoldOptions::default())
        .await;
    assert!(
        matches!(unknown, Err(Error::NotFound { entity: "tier", .. })),
        "got {unknown:?}"
    );
    let twice = vec![
        HoldItem {
            tier_id: tiers[0].id,
            quantity: 1,
        },
        HoldItem {
            tier_id: tiers[0].id,
            quantity: 1,
        },
    ];
    assert!(matches!(
        f.ems
            .place_hold(&c, e.id, &twice, HoldOptions::default())
            .await,
        Err(Error::InvalidInput { .. })
    ));
    let ttl = f
        .ems
        .place_hold(
            &c,
            e.id,
            &items(tiers[0].id, 1),
            HoldOptions {
                ttl: Some(Duration::seconds(-5)),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(ttl, Err(Error::InvalidInput { field: "ttl", .. })),
        "got {ttl:?}"
    );
    assert_eq!(f.event_taken(e.id).await, 0, "no partial state");
}

/// Holds are refused before a tier's sales open and after they close.
pub async fn sales_window_is_enforced(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let e = f.draft_event(100).await;
    let now = f.clock_now();
    let t = f
        .ems
        .add_tier(
            &f.organizer,
            e.id,
            NewTier::new("Early bird", eur("8"), 50)
                .sales_window(Some(now + Duration::days(1)), Some(now + Duration::days(2))),
        )
        .await
        .expect("tier");
    f.ems
        .publish_event(&f.organizer, e.id, e.version)
        .await
        .expect("published");
    let before = f
        .ems
        .place_hold(&f.customer(), e.id, &items(t.id, 1), HoldOptions::default())
        .await;
    assert!(
        matches!(before, Err(Error::InvalidState { .. })),
        "before opening: {before:?}"
    );
    f.clock.advance(Duration::days(1));
    assert!(
        f.ems
            .place_hold(&f.customer(), e.id, &items(t.id, 1), HoldOptions::default())
            .await
            .is_ok(),
        "open at its start"
    );
    f.clock.advance(Duration::days(1));
    let after = f
        .ems
        .place_hold(&f.customer(), e.id, &items(t.id, 1), HoldOptions::default())
        .await;
    assert!(
        matches!(after, Err(Error::InvalidState { .. })),
        "closed at its end: {after:?}"
    );
}

/// A tier priced in another currency than its event is refused.
pub async fn tier_priced_in_another_currency_is_rejected(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let e = f.draft_event(10).await;
    let usd = Money::parse("10", "USD").expect("amount");
    let err = f
        .ems
        .add_tier(&f.organizer, e.id, NewTier::new("GA", usd, 10))
        .await;
    assert!(
        matches!(
            err,
            Err(Error::InvalidInput {
                field: "price.currency",
                ..
            })
        ),
        "got {err:?}"
    );
    assert!(f
        .ems
        .tiers(&f.organizer, e.id)
        .await
        .expect("tiers")
        .is_empty());
}

/// Negative prices, sub-cent prices and zero capacities are typed errors.
pub async fn negative_price_and_zero_capacity_are_rejected(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let e = f.draft_event(10).await;
    let cases = [
        (NewTier::new("Neg", eur("-1"), 10), "price"),
        (NewTier::new("Frac", eur("1.005"), 10), "price"),
        (NewTier::new("Zero", eur("1"), 0), "capacity"),
        (
            NewTier::new("Limits", eur("1"), 5).per_order(3, 2),
            "max_per_order",
        ),
        (NewTier::new("", eur("1"), 5), "name"),
    ];
    for (tier, field) in cases {
        let err = f.ems.add_tier(&f.organizer, e.id, tier).await;
        assert!(
            matches!(err, Err(Error::InvalidInput { field: got, .. }) if got == field),
            "expected InvalidInput on {field}, got {err:?}"
        );
    }
    let bad_event = NewEvent::builder(
        f.org.id,
        "Empty",
        f.clock_now() + Duration::days(1),
        f.clock_now() + Duration::days(2),
    )
    .capacity(0)
    .build();
    assert!(matches!(
        f.ems.create_event(&f.organizer, bad_event).await,
        Err(Error::InvalidInput {
            field: "capacity",
            ..
        })
    ));
    let backwards = NewEvent::builder(
        f.org.id,
        "Back",
        f.clock_now() + Duration::days(2),
        f.clock_now() + Duration::days(1),
    )
    .capacity(5)
    .build();
    assert!(matches!(
        f.ems.create_event(&f.organizer, backwards).await,
        Err(Error::InvalidInput {
            field: "ends_at",
            ..
        })
    ));
    assert!(
        f.ems
            .tiers(&f.organizer, e.id)
            .await
            .expect("tiers")
            .is_empty(),
        "nothing stored"
    );
}

async fn surge_event(
    f: &Fixture,
    capacity: u32,
    policy: crate::pricing::SurgePolicy,
) -> (crate::event::Event, TierId) {
    let e = f.draft_event(capacity).await;
    let t = f
        .ems
        .add_tier(
            &f.organizer,
            e.id,
            NewTier::new("GA", eur("10"), capacity).pricing(policy),
        )
        .await
        .expect("tier");
    let e = f
        .ems
        .publish_event(&f.organizer, e.id, e.version)
        .await
        .expect("published");
    (e, t.id)
}

/// A hold that crosses a surge threshold pays base before it and surge after it.
pub async fn hold_crossing_a_surge_threshold_pays_base_then_surge(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let policy = crate::pricing::SurgePolicy {
        rules: vec![crate::pricing::SurgeRule::below_remaining(3, eur("15"))],
        ..Default::default()
    };
    let (e, tier) = surge_event(&f, 10, policy).await;
    f.buy(&f.customer(), e.id, tier, 6).await;
    let hold = f
        .ems
        .place_hold(&f.customer(), e.id, &items(tier, 3), HoldOptions::default())
        .await
        .expect("hold");
    let lines: Vec<_> = hold
        .quote
        .lines
        .iter()
        .map(|l| (l.first_position, l.quantity, l.unit_price))
        .collect();
    assert_eq!(
        lines,
        vec![(6, 1, eur("10")), (7, 2, eur("15"))],
        "unit 7 is base (4 left), units 8 and 9 surge"
    );
    assert_eq!(hold.total, eur("40"));
}

/// Retrying an order whose units were priced in several lines returns its booking.
pub async fn retry_of_an_order_split_by_surge_returns_the_same_booking(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let policy = crate::pricing::SurgePolicy {
        rules: vec![crate::pricing::SurgeRule::below_remaining(3, eur("15"))],
        ..Default::default()
    };
    let (e, tier) = surge_event(&f, 10, policy).await;
    let buyer = f.customer();
    let first = f
        .ems
        .checkout(&buyer, f.order(e.id, tier, 9, "split"))
        .await
        .expect("checkout");
    assert_eq!(first.booking.lines.len(), 2, "base and surge lines");
    let again = f
        .ems_b
        .checkout(&buyer, f.order(e.id, tier, 9, "split"))
        .await
        .expect("the same order again");
    assert_eq!(again.booking.id, first.booking.id);
    let other = f
        .ems
        .checkout(&buyer, f.order(e.id, tier, 8, "split"))
        .await;
    assert!(
        matches!(
            other,
            Err(Error::AlreadyExists {
                field: "idempotency_key",
                ..
            })
        ),
        "another order under the key: {other:?}"
    );
}

/// One order of n or several orders adding up to n, at the same moment, cost the same.
pub async fn one_order_or_several_cost_the_same(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let policy = crate::pricing::SurgePolicy {
        rules: vec![
            crate::pricing::SurgeRule::below_remaining(6, eur("12")),
            crate::pricing::SurgeRule {
                trigger: crate::pricing::Trigger::RemainingAtMost {
                    scope: crate::pricing::Scope::Tier,
                    units: 3,
                },
                effect: crate::pricing::Effect::Add(eur("5")),
            },
        ],
        ..Default::default()
    };
    let (a, ta) = surge_event(&f, 10, policy.clone()).await;
    let (b, tb) = surge_event(&f, 10, policy).await;
    let whole = f
        .ems
        .place_hold(&f.customer(), a.id, &items(ta, 8), HoldOptions::default())
        .await
        .expect("hold");
    let mut split = Money::zero(Currency::EUR);
    for q in [3, 1, 4] {
        let h = f
            .ems_b
            .place_hold(&f.customer(), b.id, &items(tb, q), HoldOptions::default())
            .await
            .expect("hold");
        split = split.checked_add(h.total).expect("same currency");
    }
    assert_eq!(whole.total, split, "marginal pricing is split-invariant");
}

/// A hold's quote is honoured at confirmation even if the tier's price rose meanwhile.
pub async fn quote_is_locked_until_confirmation(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "20", 10)]).await;
    f.gateway.push(FakeBehavior::Pending);
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 2).await;
    assert_eq!(c.booking.total, eur("40"));
    let t = &tiers[0];
    let dearer = NewTier::new(t.name.clone(), eur("35"), t.capacity)
        .per_order(t.min_per_order, t.max_per_order);
    f.ems
        .update_tier(&f.organizer, e.id, t.id, t.version, dearer)
        .await
        .expect("price raised");
    let reference = c.payment.and_then(|p| p.reference).expect("reference");
    let done = f
        .ems
        .handle_webhook("fake", &f.gateway.settle(&reference, true))
        .await
        .expect("handled")
        .expect("checkout");
    assert_eq!(
        (done.booking.status, done.booking.total),
        (BookingStatus::Confirmed, eur("40")),
        "the locked quote holds"
    );
    let next = f
        .ems
        .quote(&f.customer(), e.id, &items(t.id, 2), None)
        .await
        .expect("preview");
    assert_eq!(next.total, eur("70"), "new orders pay the new price");
}

/// A price preview equals the quote of a hold placed at the same moment, and takes nothing.
pub async fn price_preview_matches_the_hold_it_predicts(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let e = f.draft_event(20).await;
    let fees = crate::pricing::Fees {
        per_ticket: Some(eur("1.25")),
        per_order: Some(eur("2")),
    };
    let tax = crate::pricing::Tax {
        rate: Decimal::from(21),
        mode: crate::pricing::TaxMode::Exclusive,
    };
    let e = f
        .ems
        .update_event(
            &f.organizer,
            e.id,
            e.version,
            EventPatch {
                fees: Some(fees),
                tax: Some(Some(tax)),
                ..Default::default()
            },
        )
        .await
        .expect("fees set");
    let policy = crate::pricing::SurgePolicy {
        rules: vec![crate::pricing::SurgeRule::below_remaining(5, eur("14.99"))],
        ..Default::default()
    };
    let t = f
        .ems
        .add_tier(
            &f.organizer,
            e.id,
            NewTier::new("GA", eur("9.99"), 20).pricing(policy),
        )
        .await
        .expect("tier");
    f.ems
        .publish_event(&f.organizer, e.id, e.version)
        .await
        .expect("published");
    f.buy(&f.customer(), e.id, t.id, 10).await;
    let buyer = f.customer();
    let preview = f
        .ems
        .quote(&buyer, e.id, &items(t.id, 8), None)
        .await
        .expect("preview");
    assert_eq!(f.event_taken(e.id).await, 10, "a preview takes nothing");
    let hold = f
        .ems
        .place_hold(&buyer, e.id, &items(t.id, 8), HoldOptions::default())
        .await
        .expect("hold");
    assert_eq!(preview.lines, hold.quote.lines);
    assert_eq!(preview.total, hold.total);
    // Remaining 10..=6 at base, 5..=3 surge: 5 × 9.99 + 3 × 14.99 = 94.92; fees 8 × 1.25 = 10;
    // 21% tax on 104.92 = 22.03; order fee 2 + 0.42 tax.
    assert_eq!(hold.total, eur("129.37"));
}

/// Fees and tax are part of what the customer pays.
pub async fn payment_amount_is_the_quote_total(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let e = f.draft_event(10).await;
    let fees = crate::pricing::Fees {
        per_ticket: Some(eur("1")),
        per_order: None,
    };
    let e = f
        .ems
        .update_event(
            &f.organizer,
            e.id,
            e.version,
            EventPatch {
                fees: Some(fees),
                ..Default::default()
            },
        )
        .await
        .expect("fees set");
    let t = f
        .ems
        .add_tier(&f.organizer, e.id, NewTier::new("GA", eur("10"), 10))
        .await
        .expect("tier");
    f.ems
        .publish_event(&f.organizer, e.id, e.version)
        .await
        .expect("published");
    let c = f.buy(&f.customer(), e.id, t.id, 3).await;
    assert_eq!(c.booking.total, eur("33"));
    assert_eq!(c.payment.map(|p| p.amount), Some(eur("33")));
    assert_eq!(
        c.booking.quote.total, c.booking.total,
        "the booking keeps its breakdown"
    );
}

/// A burst of sales within a velocity window raises the price of later units.
pub async fn velocity_rule_raises_the_price_after_a_burst(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let policy = crate::pricing::SurgePolicy {
        rules: vec![crate::pricing::SurgeRule {
            trigger: crate::pricing::Trigger::Velocity {
                units: 4,
                window: Duration::minutes(10),
            },
            effect: crate::pricing::Effect::Multiply(Decimal::new(15, 1)),
        }],
        ..Default::default()
    };
    let (e, tier) = surge_event(&f, 100, policy).await;
    f.buy(&f.customer(), e.id, tier, 3).await;
    let hold = f
        .ems
        .place_hold(&f.customer(), e.id, &items(tier, 2), HoldOptions::default())
        .await
        .expect("hold");
    let prices: Vec<_> = hold
        .quote
        .lines
        .iter()
        .map(|l| (l.quantity, l.unit_price))
        .collect();
    assert_eq!(
        prices,
        vec![(1, eur("10")), (1, eur("15"))],
        "the 5th unit within 10 minutes surges"
    );
    f.clock.advance(Duration::minutes(11));
    let later = f
        .ems
        .quote(&f.customer(), e.id, &items(tier, 2), None)
        .await
        .expect("preview");
    assert_eq!(later.total, eur("20"), "the window has passed");
}

fn spring_coupon(
    f: &Fixture,
    event: EventId,
    max_uses: Option<u32>,
    per_customer: Option<u32>,
) -> crate::pricing::NewCoupon {
    crate::pricing::NewCoupon {
        organization: f.org.id,
        code: "SPRING25".into(),
        scope: crate::pricing::CouponScope::Event(event),
        discount: crate::pricing::Discount::Percent(Decimal::from(25)),
        valid_from: None,
        valid_until: None,
        min_quantity: 1,
        max_uses,
        max_uses_per_customer: per_customer,
    }
}

/// A coupon discounts the hold and counts one use; confirming keeps the use.
pub async fn coupon_discounts_the_order_and_counts_a_use(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "20", 10)]).await;
    let coupon = f
        .ems
        .create_coupon(&f.organizer, spring_coupon(&f, e.id, Some(5), None))
        .await
        .expect("coupon");
    let c = f
        .ems
        .checkout(
            &f.customer(),
            f.order(e.id, tiers[0].id, 2, "k").coupon("spring25"),
        )
        .await
        .expect("checkout");
    assert_eq!(
        (c.booking.status, c.booking.total),
        (BookingStatus::Confirmed, eur("30")),
        "25% off 40, code case-insensitive"
    );
    assert_eq!(c.booking.quote.coupon, Some(coupon.id));
    assert_eq!(
        f.ems
            .coupon_uses(&f.organizer, coupon.id)
            .await
            .expect("uses"),
        1
    );
    let dup = f
        .ems
        .create_coupon(&f.organizer, spring_coupon(&f, e.id, None, None))
        .await;
    assert!(
        matches!(dup, Err(Error::AlreadyExists { field: "code", .. })),
        "codes are unique per organization: {dup:?}"
    );
}

/// Two customers racing through two handles for a coupon's last use: one gets it.
pub async fn last_coupon_use_goes_to_exactly_one_racer(stores: TestStores) {
    let f = Arc::new(Fixture::new(stores).await);
    let (e, tiers) = f.published_event(100, &[("GA", "20", 100)]).await;
    let coupon = f
        .ems
        .create_coupon(&f.organizer, spring_coupon(&f, e.id, Some(1), None))
        .await
        .expect("coupon");
    let tier = tiers[0].id;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                let ems = if i % 2 == 0 { &f.ems } else { &f.ems_b };
                let options = HoldOptions {
                    coupon: Some("SPRING25".into()),
                    ..Default::default()
                };
                ems.place_hold(
                    &Actor::Customer {
                        user: UserId::new(),
                    },
                    e.id,
                    &items(tier, 1),
                    options,
                )
                .await
            })
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "one hold got the last use");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(
                e,
                Error::InvalidInput {
                    field: "coupon",
                    ..
                }
            )),
        "{results:?}"
    );
    assert_eq!(
        f.ems
            .coupon_uses(&f.organizer, coupon.id)
            .await
            .expect("uses"),
        1
    );
    assert_eq!(f.event_taken(e.id).await, 1, "losers took no units");
}

/// A hold that ends unpaid gives its coupon use back.
pub async fn unpaid_hold_gives_its_coupon_use_back(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "20", 10)]).await;
    let coupon = f
        .ems
        .create_coupon(&f.organizer, spring_coupon(&f, e.id, Some(1), None))
        .await
        .expect("coupon");
    let buyer = f.customer();
    let options = HoldOptions {
        coupon: Some("SPRING25".into()),
        ..Default::default()
    };
    let hold = f
        .ems
        .place_hold(&buyer, e.id, &items(tiers[0].id, 1), options.clone())
        .await
        .expect("hold");
    assert_eq!(hold.total, eur("15"));
    f.ems.release_hold(&buyer, hold.id).await.expect("released");
    assert_eq!(
        f.ems
            .coupon_uses(&f.organizer, coupon.id)
            .await
            .expect("uses"),
        0,
        "release gives the use back"
    );
    f.ems
        .place_hold(&buyer, e.id, &items(tiers[0].id, 1), options.clone())
        .await
        .expect("the use is free again");
    f.clock.advance(f.ems.config().hold_ttl);
    assert_eq!(f.available(e.id, tiers[0].id).await, 10);
    assert_eq!(
        f.ems
            .coupon_uses(&f.organizer, coupon.id)
            .await
            .expect("uses"),
        0,
        "expiry gives the use back"
    );
    f.gateway.push(FakeBehavior::Decline("no".into()));
    let failed = f
        .ems
        .checkout(
            &buyer,
            f.order(e.id, tiers[0].id, 1, "k").coupon("SPRING25"),
        )
        .await
        .expect("checkout");
    assert_eq!(failed.booking.status, BookingStatus::Failed);
    assert_eq!(
        f.ems
            .coupon_uses(&f.organizer, coupon.id)
            .await
            .expect("uses"),
        0,
        "a declined payment gives the use back"
    );
}

/// Unknown, foreign, expired, exhausted-per-customer and out-of-scope coupons are typed errors that take nothing.
pub async fn invalid_coupons_are_refused_without_taking_units(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "20", 10)]).await;
    let (other_event, _) = f.published_event(10, &[("GA", "20", 10)]).await;
    let buyer = f.customer();
    let one = items(tiers[0].id, 1);
    let hold = |code: &str| {
        let options = HoldOptions {
            coupon: Some(code.to_owned()),
            ..Default::default()
        };
        f.ems.place_hold(&buyer, e.id, &one, options)
    };
    assert!(
        matches!(
            hold("NOPE").await,
            Err(Error::InvalidInput {
                field: "coupon",
                ..
            })
        ),
        "unknown code"
    );
    let other_org = f
        .ems
        .create_organization(&Actor::System, "Rival")
        .await
        .expect("org");
    let rival = Actor::Organizer {
        user: UserId::new(),
        organization: other_org.id,
    };
    let foreign = crate::pricing::NewCoupon {
        organization: other_org.id,
        code: "RIVAL".into(),
        scope: crate::pricing::CouponScope::Organization,
        ..spring_coupon(&f, e.id, None, None)
    };
    f.ems
        .create_coupon(&rival, foreign)
        .await
        .expect("rival coupon");
    assert!(
        matches!(
            hold("RIVAL").await,
            Err(Error::InvalidInput {
                field: "coupon",
                ..
            })
        ),
        "another organization's code"
    );
    let expired = crate::pricing::NewCoupon {
        code: "OLD".into(),
        valid_until: Some(f.clock_now()),
        ..spring_coupon(&f, e.id, None, None)
    };
    f.ems
        .create_coupon(&f.organizer, expired)
        .await
        .expect("coupon");
    assert!(
        matches!(
            hold("OLD").await,
            Err(Error::InvalidInput {
                field: "coupon",
                ..
            })
        ),
        "expired"
    );
    let elsewhere = crate::pricing::NewCoupon {
        code: "ELSEWHERE".into(),
        ..spring_coupon(&f, other_event.id, None, None)
    };
    f.ems
        .create_coupon(&f.organizer, elsewhere)
        .await
        .expect("coupon");
    assert!(
        matches!(
            hold("ELSEWHERE").await,
            Err(Error::InvalidInput {
                field: "coupon",
                ..
            })
        ),
        "scoped to another event"
    );
    let once = crate::pricing::NewCoupon {
        code: "ONCE".into(),
        ..spring_coupon(&f, e.id, None, Some(1))
    };
    f.ems
        .create_coupon(&f.organizer, once)
        .await
        .expect("coupon");
    hold("ONCE").await.expect("first use");
    assert!(
        matches!(
            hold("ONCE").await,
            Err(Error::InvalidInput {
                field: "coupon",
                ..
            })
        ),
        "per-customer limit"
    );
    assert_eq!(
        f.event_taken(e.id).await,
        1,
        "only the accepted hold took a unit"
    );
    let bad = crate::pricing::NewCoupon {
        code: "BAD".into(),
        discount: crate::pricing::Discount::Percent(Decimal::from(150)),
        ..spring_coupon(&f, e.id, None, None)
    };
    assert!(matches!(
        f.ems.create_coupon(&f.organizer, bad).await,
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        f.ems
            .create_coupon(&f.customer(), spring_coupon(&f, e.id, None, None))
            .await,
        Err(Error::Forbidden { .. })
    ));
}

fn venue_input(f: &Fixture, name: &str) -> crate::facility::NewResource {
    crate::facility::NewResource {
        organization: f.org.id,
        kind: crate::facility::ResourceKind::Venue,
        name: name.into(),
        stock: crate::facility::Stock::Exclusive,
        price: eur("500"),
        price_unit: crate::facility::PriceUnit::PerBooking,
        time_zone: chrono_tz::Europe::Lisbon,
        slots: Vec::new(),
        venue: Some(crate::facility::VenueDetails {
            capacity: 300,
            address: "Rua A 1".into(),
            latitude: 38.7,
            longitude: -9.1,
        }),
    }
}

fn chairs_input(f: &Fixture, stock: u32) -> crate::facility::NewResource {
    crate::facility::NewResource {
        kind: crate::facility::ResourceKind::Decoration,
        name: "Chairs".into(),
        stock: crate::facility::Stock::Stocked(stock),
        price: eur("1.50"),
        price_unit: crate::facility::PriceUnit::PerUnit,
        venue: None,
        ..venue_input(f, "Chairs")
    }
}

fn slot(date: &str, name: &str) -> crate::facility::When {
    crate::facility::When::Slot {
        date: date.parse().expect("a date"),
        slot: name.into(),
    }
}

fn range(start: &str, end: &str) -> crate::facility::When {
    crate::facility::When::Range {
        start: start.parse().expect("a local time"),
        end: end.parse().expect("a local time"),
    }
}

fn want(
    resource: ResourceId,
    when: crate::facility::When,
    quantity: u32,
) -> crate::facility::FacilityRequest {
    crate::facility::FacilityRequest {
        resource,
        when,
        quantity,
    }
}

async fn book_one(
    f: &Fixture,
    resource: ResourceId,
    when: crate::facility::When,
    quantity: u32,
) -> crate::Result<Vec<crate::facility::FacilityBooking>> {
    f.ems
        .book_facilities(
            &f.organizer,
            f.org.id,
            None,
            &[want(resource, when, quantity)],
        )
        .await
}

/// An exclusive resource is never booked twice for overlapping times; back-to-back is fine.
pub async fn exclusive_resource_is_never_double_booked(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let hall = f
        .ems
        .create_resource(&f.organizer, venue_input(&f, "Hall"))
        .await
        .expect("venue");
    let book = |when| book_one(&f, hall.id, when, 1);
    let first = book(slot("2030-02-10", "evening"))
        .await
        .expect("first booking");
    assert_eq!(
        (first[0].slot.as_deref(), first[0].price),
        (Some("Evening"), eur("500"))
    );
    let again = book(slot("2030-02-10", "Evening")).await;
    assert!(
        matches!(again, Err(Error::SoldOut { available: 0, .. })),
        "got {again:?}"
    );
    let overlap = book(range("2030-02-10T22:00:00", "2030-02-11T01:00:00")).await;
    assert!(
        matches!(overlap, Err(Error::SoldOut { .. })),
        "an overlapping range: {overlap:?}"
    );
    book(range("2030-02-10T23:00:00", "2030-02-11T01:00:00"))
        .await
        .expect("back-to-back after the slot ends");
    book(slot("2030-02-10", "Afternoon"))
        .await
        .expect("another slot the same day");
}

/// A stocked resource never has more units out than its stock at any instant.
pub async fn stocked_resource_never_exceeds_its_stock(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let chairs = f
        .ems
        .create_resource(&f.organizer, chairs_input(&f, 300))
        .await
        .expect("chairs");
    let book = |when, q| book_one(&f, chairs.id, when, q);
    let b = book(slot("2030-02-10", "Morning"), 200)
        .await
        .expect("200 in the morning");
    assert_eq!(b[0].price, eur("300.00"), "priced per unit");
    let over = book(range("2030-02-10T11:00:00", "2030-02-10T14:00:00"), 150).await;
    assert!(
        matches!(
            over,
            Err(Error::SoldOut {
                requested: 150,
                available: 100,
                ..
            })
        ),
        "got {over:?}"
    );
    book(range("2030-02-10T11:00:00", "2030-02-10T14:00:00"), 100)
        .await
        .expect("exactly what is left");
    book(slot("2030-02-10", "Evening"), 300)
        .await
        .expect("the evening is free");
    let avail = f
        .ems
        .resource_availability(chairs.id, "2030-02-10".parse().expect("date"))
        .await
        .expect("availability");
    let free: Vec<_> = avail.iter().map(|a| (a.slot.as_str(), a.free)).collect();
    assert_eq!(
        free,
        vec![("Morning", 0), ("Afternoon", 200), ("Evening", 0)]
    );
}

/// A package is booked whole or not at all.
pub async fn facility_package_is_all_or_nothing(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let hall = f
        .ems
        .create_resource(&f.organizer, venue_input(&f, "Hall"))
        .await
        .expect("venue");
    let band = f
        .ems
        .create_resource(
            &f.organizer,
            crate::facility::NewResource {
                kind: crate::facility::ResourceKind::Performer,
                name: "The Band".into(),
                venue: None,
                ..venue_input(&f, "Band")
            },
        )
        .await
        .expect("band");
    let chairs = f
        .ems
        .create_resource(&f.organizer, chairs_input(&f, 100))
        .await
        .expect("chairs");
    let evening = || slot("2030-03-01", "Evening");
    let too_many = [
        want(hall.id, evening(), 1),
        want(band.id, evening(), 1),
        want(chairs.id, evening(), 60),
        want(chairs.id, evening(), 60),
    ];
    let err = f
        .ems
        .book_facilities(&f.organizer, f.org.id, None, &too_many)
        .await;
    assert!(
        matches!(err, Err(Error::SoldOut { available: 40, .. })),
        "the package's own chairs add up: {err:?}"
    );
    for r in [hall.id, band.id, chairs.id] {
        let free = f
            .ems
            .resource_availability(r, "2030-03-01".parse().expect("date"))
            .await
            .expect("availability");
        assert_eq!(
            free[2].free,
            if r == chairs.id { 100 } else { 1 },
            "nothing of the failed package was booked"
        );
    }
    let ok = [
        want(hall.id, evening(), 1),
        want(band.id, evening(), 1),
        want(chairs.id, evening(), 100),
    ];
    let booked = f
        .ems
        .book_facilities(&f.organizer, f.org.id, None, &ok)
        .await
        .expect("package");
    assert!(booked.iter().all(|b| b.package == booked[0].package));
    let cancelled = f
        .ems_b
        .cancel_facilities(&f.organizer, booked[1].id)
        .await
        .expect("cancel");
    assert_eq!(
        cancelled.len(),
        3,
        "cancelling one booking cancels its package"
    );
    f.ems
        .book_facilities(&f.organizer, f.org.id, None, &ok)
        .await
        .expect("everything is free again");
}

/// 32 tasks through two handles race for one exclusive slot: exactly one wins.
pub async fn racing_for_an_exclusive_slot_one_wins(stores: TestStores) {
    let f = Arc::new(Fixture::new(stores).await);
    let hall = f
        .ems
        .create_resource(&f.organizer, venue_input(&f, "Hall"))
        .await
        .expect("venue");
    let chairs = f
        .ems
        .create_resource(&f.organizer, chairs_input(&f, 50))
        .await
        .expect("chairs");
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                let ems = if i % 2 == 0 { &f.ems } else { &f.ems_b };
                let hall_won = ems
                    .book_facilities(
                        &f.organizer,
                        f.org.id,
                        None,
                        &[want(hall.id, slot("2030-02-14", "Evening"), 1)],
                    )
                    .await
                    .is_ok();
                let chairs_won = ems
                    .book_facilities(
                        &f.organizer,
                        f.org.id,
                        None,
                        &[want(chairs.id, slot("2030-02-14", "Evening"), 3)],
                    )
                    .await
                    .is_ok();
                (hall_won, chairs_won)
            })
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.0).count(),
        1,
        "one booking of the exclusive slot"
    );
    assert_eq!(
        results.iter().filter(|r| r.1).count(),
        16,
        "50 chairs hold 16 bookings of 3"
    );
    let avail = f
        .ems
        .resource_availability(chairs.id, "2030-02-14".parse().expect("date"))
        .await
        .expect("availability");
    assert_eq!(avail[2].free, 2, "never over stock");
}

/// Unknown slots, backwards ranges, DST gaps, zero quantities and past times are typed errors.
pub async fn invalid_facility_requests_are_rejected(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let hall = f
        .ems
        .create_resource(&f.organizer, venue_input(&f, "Hall"))
        .await
        .expect("venue");
    let chairs = f
        .ems
        .create_resource(&f.organizer, chairs_input(&f, 10))
        .await
        .expect("chairs");
    let book = |r, when, q| book_one(&f, r, when, q);
    let cases = [
        (
            book(hall.id, slot("2030-02-10", "Brunch"), 1).await,
            "when.slot",
        ),
        (
            book(
                hall.id,
                range("2030-02-10T20:00:00", "2030-02-10T18:00:00"),
                1,
            )
            .await,
            "when.end",
        ),
        // Lisbon moves from 01:00 to 02:00 on 2030-03-31: 01:30 does not exist.
        (
            book(
                hall.id,
                range("2030-03-31T01:30:00", "2030-03-31T03:00:00"),
                1,
            )
            .await,
            "when.start",
        ),
        (
            book(
                hall.id,
                range("2030-03-31T00:30:00", "2030-03-31T03:00:00"),
                1,
            )
            .await,
            "when",
        ),
        (
            book(chairs.id, slot("2030-02-10", "Morning"), 0).await,
            "quantity",
        ),
        (
            book(chairs.id, slot("2030-02-10", "Morning"), 11).await,
            "quantity",
        ),
        (
            book(hall.id, slot("2029-12-31", "Morning"), 1).await,
            "when.start",
        ),
    ];
    for (result, field) in cases {
        assert!(
            matches!(&result, Err(Error::InvalidInput { field: got, .. }) if *got == field),
            "expected InvalidInput on {field}, got {result:?}"
        );
    }
    let avail = f
        .ems
        .resource_availability(hall.id, "2030-02-10".parse().expect("date"))
        .await
        .expect("availability");
    assert!(avail.iter().all(|a| a.free == 1), "nothing booked");
    let bad_slots = crate::facility::NewResource {
        slots: vec![crate::facility::SlotDef {
            name: "Late".into(),
            start: chrono::NaiveTime::from_hms_opt(23, 0, 0).expect("time"),
            end: chrono::NaiveTime::from_hms_opt(22, 0, 0).expect("time"),
        }],
        ..venue_input(&f, "Odd")
    };
    assert!(matches!(
        f.ems.create_resource(&f.organizer, bad_slots).await,
        Err(Error::InvalidInput {
            field: "slots.end",
            ..
        })
    ));
}

/// Only the owning organization manages resources; organizers book for their own organization.
pub async fn facility_authorization_is_enforced(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let outsider_org = f
        .ems
        .create_organization(&Actor::System, "Renter")
        .await
        .expect("org");
    let outsider = Actor::Organizer {
        user: UserId::new(),
        organization: outsider_org.id,
    };
    assert!(matches!(
        f.ems
            .create_resource(&outsider, venue_input(&f, "Not yours"))
            .await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        f.ems
            .create_resource(&f.customer(), venue_input(&f, "No"))
            .await,
        Err(Error::Forbidden { .. })
    ));
    let hall = f
        .ems
        .create_resource(&f.organizer, venue_input(&f, "Hall"))
        .await
        .expect("venue");
    let rented = f
        .ems
        .book_facilities(
            &outsider,
            outsider_org.id,
            None,
            &[want(hall.id, slot("2030-02-10", "Morning"), 1)],
        )
        .await
        .expect("organizers book others' venues");
    assert!(
        matches!(
            f.ems
                .book_facilities(
                    &outsider,
                    f.org.id,
                    None,
                    &[want(hall.id, slot("2030-02-11", "Morning"), 1)]
                )
                .await,
            Err(Error::Forbidden { .. })
        ),
        "only for their own organization"
    );
    assert!(matches!(
        f.ems
            .book_facilities(
                &f.customer(),
                f.org.id,
                None,
                &[want(hall.id, slot("2030-02-12", "Morning"), 1)]
            )
            .await,
        Err(Error::Forbidden { .. })
    ));
    assert!(
        matches!(
            f.ems.cancel_facilities(&f.organizer, rented[0].id).await,
            Err(Error::Forbidden { .. })
        ),
        "the renter's booking is the renter's"
    );
    f.ems
        .resource_availability(hall.id, "2030-02-10".parse().expect("date"))
        .await
        .expect("anyone reads availability");
}

/// A taken slot gets the nearest free dates of the same resource and other free
/// resources of its kind, closest in price first.
pub async fn alternatives_offer_nearest_dates_and_similar_resources(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let hall = f
        .ems
        .create_resource(&f.organizer, venue_input(&f, "Hall"))
        .await
        .expect("venue");
    let pricey = f
        .ems
        .create_resource(
            &f.organizer,
            crate::facility::NewResource {
                price: eur("900"),
                ..venue_input(&f, "Palace")
            },
        )
        .await
        .expect("venue");
    let close = f
        .ems
        .create_resource(
            &f.organizer,
            crate::facility::NewResource {
                price: eur("450"),
                ..venue_input(&f, "Loft")
            },
        )
        .await
        .expect("venue");
    let busy = f
        .ems
        .create_resource(
            &f.organizer,
            crate::facility::NewResource {
                price: eur("500"),
                ..venue_input(&f, "Barn")
            },
        )
        .await
        .expect("venue");
    for day in ["2030-02-09", "2030-02-10", "2030-02-11"] {
        book_one(&f, hall.id, slot(day, "Evening"), 1)
            .await
            .expect("booked");
    }
    book_one(&f, busy.id, slot("2030-02-10", "Evening"), 1)
        .await
        .expect("booked");
    let alt = f
        .ems
        .alternatives(hall.id, &slot("2030-02-10", "Evening"), 1, 3)
        .await
        .expect("alternatives");
    let dates: Vec<_> = alt
        .same_resource
        .iter()
        .map(|(d, _, _)| d.to_string())
        .collect();
    assert_eq!(
        dates,
        vec!["2030-02-08", "2030-02-12", "2030-02-07"],
        "nearest free evenings, earlier first at equal distance"
    );
    let names: Vec<_> = alt
        .other_resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        vec!["Loft", "Palace"],
        "free venues of the same kind, closest in price first"
    );
    let _ = (pricey, close);
}

/// A window of dates gives, day by day, what per-date availability gives.
pub async fn availability_window_matches_per_date_availability(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let chairs = f
        .ems
        .create_resource(&f.organizer, chairs_input(&f, 50))
        .await
        .expect("chairs");
    book_one(
        &f,
        chairs.id,
        range("2030-04-11T10:00:00", "2030-04-14T20:00:00"),
        20,
    )
    .await
    .expect("a long booking");
    book_one(&f, chairs.id, slot("2030-04-12", "Afternoon"), 25)
        .await
        .expect("booked");
    book_one(&f, chairs.id, slot("2030-04-13", "Evening"), 30)
        .await
        .expect("booked");
    let from: chrono::NaiveDate = "2030-04-10".parse().expect("date");
    let window = f
        .ems
        .availability_window(chairs.id, from, 6)
        .await
        .expect("window");
    assert_eq!(window.len(), 6);
    for (date, slots) in &window {
        let single = f
            .ems
            .resource_availability(chairs.id, *date)
            .await
            .expect("per date");
        assert_eq!(slots, &single, "{date}");
    }
    let frees: Vec<_> = window
        .iter()
        .map(|(_, s)| s.iter().map(|a| a.free).collect::<Vec<_>>())
        .collect();
    // The long booking (20) covers 04-11 10:00 to 04-14 20:00, so the Morning of
    // 04-11 and the Evening of 04-14 are partly in it.
    assert_eq!(
        frees,
        vec![
            vec![50, 50, 50],
            vec![30, 30, 30],
            vec![30, 5, 30],
            vec![30, 30, 0],
            vec![30, 30, 30],
            vec![50, 50, 50]
        ]
    );
}

/// Availability by kind lists every resource of the kind with its free slots.
pub async fn availability_by_kind_lists_each_resource(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let a = f
        .ems
        .create_resource(&f.organizer, venue_input(&f, "A Hall"))
        .await
        .expect("venue");
    f.ems
        .create_resource(&f.organizer, venue_input(&f, "B Hall"))
        .await
        .expect("venue");
    f.ems
        .create_resource(&f.organizer, chairs_input(&f, 10))
        .await
        .expect("chairs");
    book_one(&f, a.id, slot("2030-02-10", "Morning"), 1)
        .await
        .expect("booked");
    let list = f
        .ems
        .kind_availability(
            &crate::facility::ResourceKind::Venue,
            Some(f.org.id),
            "2030-02-10".parse().expect("date"),
        )
        .await
        .expect("list");
    let summary: Vec<_> = list
        .iter()
        .map(|(r, slots)| {
            (
                r.name.as_str(),
                slots.iter().map(|s| s.free).collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![("A Hall", vec![0, 1, 1]), ("B Hall", vec![1, 1, 1])]
    );
}

/// Cancelling an event releases the facilities booked for it.
pub async fn cancelling_an_event_releases_its_facilities(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let e = f.draft_event(10).await;
    let hall = f
        .ems
        .create_resource(&f.organizer, venue_input(&f, "Hall"))
        .await
        .expect("venue");
    let when = slot("2030-01-31", "Evening");
    f.ems
        .book_facilities(
            &f.organizer,
            f.org.id,
            Some(e.id),
            &[want(hall.id, when.clone(), 1)],
        )
        .await
        .expect("booked for the event");
    let linked = f
        .ems
        .event_facilities(&f.organizer, e.id)
        .await
        .expect("the event's facilities");
    assert_eq!(
        linked.iter().map(|b| b.resource).collect::<Vec<_>>(),
        vec![hall.id],
        "the event references its venue booking"
    );
    assert!(matches!(
        f.ems.event_facilities(&f.customer(), e.id).await,
        Err(Error::Forbidden { .. })
    ));
    let other = f
        .ems
        .create_organization(&Actor::System, "Other")
        .await
        .expect("org");
    let other_event = NewEvent::builder(
        other.id,
        "Theirs",
        f.clock_now() + Duration::days(5),
        f.clock_now() + Duration::days(6),
    )
    .capacity(5)
    .build();
    let other_event = f
        .ems
        .create_event(&Actor::System, other_event)
        .await
        .expect("event");
    let err = f
        .ems
        .book_facilities(
            &f.organizer,
            f.org.id,
            Some(other_event.id),
            &[want(hall.id, slot("2030-02-01", "Evening"), 1)],
        )
        .await;
    assert!(
        matches!(err, Err(Error::InvalidInput { field: "event", .. })),
        "another organization's event: {err:?}"
    );
    f.ems
        .cancel_event(&f.organizer, e.id, e.version)
        .await
        .expect("cancelled");
    book_one(&f, hall.id, when, 1)
        .await
        .expect("the hall is free again");
    assert_eq!(
        f.ems
            .release_event_facilities(&f.organizer, e.id)
            .await
            .expect("idempotent"),
        0
    );
}

/// A successful checkout confirms the booking and issues one valid ticket per unit.
pub async fn checkout_confirms_and_issues_one_ticket_per_unit(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f
        .published_event(10, &[("GA", "19.99", 10), ("VIP", "50", 5)])
        .await;
    let buyer = f.customer();
    let req = crate::booking::CheckoutRequest {
        event_id: e.id,
        items: vec![
            HoldItem {
                tier_id: tiers[0].id,
                quantity: 2,
            },
            HoldItem {
                tier_id: tiers[1].id,
                quantity: 1,
            },
        ],
        idempotency_key: "k".into(),
        gateway: None,
        on_behalf_of: None,
        coupon: None,
    };
    let c = f.ems.checkout(&buyer, req).await.expect("checkout");
    assert_eq!(c.booking.status, BookingStatus::Confirmed);
    assert_eq!(c.booking.total, eur("89.98"));
    assert_eq!(c.tickets.len(), 3);
    let codes: HashSet<_> = c.tickets.iter().map(|t| t.code.clone()).collect();
    assert_eq!(codes.len(), 3, "codes are distinct");
    let p = c.payment.expect("payment recorded");
    assert_eq!(
        (p.status, p.amount),
        (PaymentStatus::Succeeded, eur("89.98"))
    );
    let hold = f
        .ems
        .store()
        .hold(c.booking.hold_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(hold.status, HoldStatus::Confirmed);
    assert_eq!(f.event_taken(e.id).await, 3, "sold units stay taken");
    let again = f
        .ems
        .tickets(&buyer, c.booking.id)
        .await
        .expect("tickets readable");
    assert_eq!(again, c.tickets, "tickets and codes read back identically");
}

/// The same idempotency key twice gives the same booking and charges once.
pub async fn same_idempotency_key_returns_the_same_booking(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let buyer = f.customer();
    let first = f
        .ems
        .checkout(&buyer, f.order(e.id, tiers[0].id, 2, "same"))
        .await
        .expect("first");
    let second = f
        .ems_b
        .checkout(&buyer, f.order(e.id, tiers[0].id, 2, "same"))
        .await
        .expect("second");
    assert_eq!(first.booking.id, second.booking.id);
    assert_eq!(first.tickets.len(), second.tickets.len());
    assert_eq!(f.gateway.calls().0, 1, "charged once");
    assert_eq!(f.event_taken(e.id).await, 2);
    let other = f
        .ems
        .checkout(&f.customer(), f.order(e.id, tiers[0].id, 2, "same"))
        .await
        .expect("another customer");
    assert_ne!(other.booking.id, first.booking.id, "keys are per customer");
}

/// Reusing a key for a different order is refused.
pub async fn same_key_with_other_items_is_rejected(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let buyer = f.customer();
    f.ems
        .checkout(&buyer, f.order(e.id, tiers[0].id, 2, "k1"))
        .await
        .expect("first");
    let err = f
        .ems
        .checkout(&buyer, f.order(e.id, tiers[0].id, 3, "k1"))
        .await;
    assert!(
        matches!(
            err,
            Err(Error::AlreadyExists {
                field: "idempotency_key",
                ..
            })
        ),
        "got {err:?}"
    );
    assert_eq!(f.event_taken(e.id).await, 2);
}

/// Many concurrent checkouts with one key through two handles make one booking.
pub async fn concurrent_checkouts_with_one_key_make_one_booking(stores: TestStores) {
    let f = Arc::new(Fixture::new(stores).await);
    let (e, tiers) = f.published_event(100, &[("GA", "10", 100)]).await;
    let buyer = f.customer();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let f = Arc::clone(&f);
        let req = f.order(e.id, tiers[0].id, 2, "race");
        tasks.push(tokio::spawn(async move {
            let ems = if i % 2 == 0 { &f.ems } else { &f.ems_b };
            ems.checkout(&buyer, req)
                .await
                .expect("checkout")
                .booking
                .id
        }));
    }
    let ids: HashSet<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    assert_eq!(ids.len(), 1, "one booking for one key");
    assert_eq!(f.event_taken(e.id).await, 2, "losers' holds were released");
    assert_eq!(f.gateway.calls().0, 1, "charged once");
}

/// A declined payment fails the booking and returns its units.
pub async fn declined_payment_fails_the_booking_and_releases_units(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    f.gateway
        .push(FakeBehavior::Decline("card declined".into()));
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 3).await;
    assert_eq!(c.booking.status, BookingStatus::Failed);
    assert_eq!(
        c.booking.reason,
        Some(BookingReason::PaymentDeclined {
            message: "card declined".into()
        })
    );
    assert_eq!(c.payment.map(|p| p.status), Some(PaymentStatus::Failed));
    assert!(c.tickets.is_empty());
    assert_eq!(f.event_taken(e.id).await, 0);
}

/// A gateway timeout releases the units; reconciling later finds the charge and
/// takes the units again.
pub async fn gateway_timeout_releases_units_and_reconcile_settles(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    f.gateway.push(FakeBehavior::TimeoutAfterCharge);
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 2).await;
    assert_eq!(c.booking.status, BookingStatus::Failed);
    assert!(matches!(
        c.booking.reason,
        Some(BookingReason::PaymentError { .. })
    ));
    assert_eq!(
        f.event_taken(e.id).await,
        0,
        "units released while the outcome is unknown"
    );
    let payment = c.payment.expect("payment recorded");
    assert_eq!(payment.status, PaymentStatus::Pending, "outcome unknown");
    let settled = f
        .ems
        .reconcile_payment(&Actor::System, payment.id)
        .await
        .expect("reconciled");
    assert_eq!(settled.booking.status, BookingStatus::Confirmed);
    assert_eq!(settled.booking.reason, Some(BookingReason::Reacquired));
    assert_eq!(settled.tickets.len(), 2);
    assert_eq!(f.event_taken(e.id).await, 2);
}

/// A pending payment is confirmed by the gateway's success webhook.
pub async fn pending_payment_confirms_on_webhook(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    f.gateway.push(FakeBehavior::Pending);
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 2).await;
    assert_eq!(c.booking.status, BookingStatus::Pending);
    let reference = c
        .payment
        .and_then(|p| p.reference)
        .expect("gateway reference");
    let hook = f.gateway.settle(&reference, true);
    let done = f
        .ems_b
        .handle_webhook("fake", &hook)
        .await
        .expect("webhook handled")
        .expect("a checkout");
    assert_eq!(done.booking.status, BookingStatus::Confirmed);
    assert_eq!(done.tickets.len(), 2);
}

/// A success webhook delivered twice (concurrently) confirms once.
pub async fn duplicate_webhook_is_applied_once(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    f.gateway.push(FakeBehavior::Pending);
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 2).await;
    let reference = c.payment.and_then(|p| p.reference).expect("reference");
    let hook = f.gateway.settle(&reference, true);
    let (a, b) = tokio::join!(
        f.ems.handle_webhook("fake", &hook),
        f.ems_b.handle_webhook("fake", &hook)
    );
    let (a, b) = (
        a.expect("first").expect("checkout"),
        b.expect("second").expect("checkout"),
    );
    assert_eq!(a.booking.status, BookingStatus::Confirmed);
    assert_eq!(b.booking.status, BookingStatus::Confirmed);
    let tickets = f
        .ems
        .store()
        .tickets_for_booking(c.booking.id)
        .await
        .expect("tickets");
    assert_eq!(tickets.len(), 2, "tickets issued once");
    assert_eq!(f.event_taken(e.id).await, 2);
}

/// A failure notice arriving after the success notice changes nothing.
pub async fn failure_webhook_after_success_is_ignored(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    f.gateway.push(FakeBehavior::Pending);
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 1).await;
    let reference = c.payment.and_then(|p| p.reference).expect("reference");
    let success = f.gateway.settle(&reference, true);
    let failure = f.gateway.webhook(
        &reference,
        WebhookKind::PaymentFailed {
            reason: "late".into(),
        },
    );
    f.ems
        .handle_webhook("fake", &success)
        .await
        .expect("success handled");
    f.ems
        .handle_webhook("fake", &failure)
        .await
        .expect("failure handled");
    let b = f
        .ems
        .booking(&f.organizer, c.booking.id)
        .await
        .expect("read");
    assert_eq!(b.status, BookingStatus::Confirmed);
    let (payments, _) = f
        .ems
        .payments(&f.organizer, c.booking.id)
        .await
        .expect("payments");
    assert_eq!(payments[0].status, PaymentStatus::Succeeded);
}

/// A payment succeeding after its hold expired takes the units again when they are free.
pub async fn late_payment_reacquires_units_when_available(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    f.gateway.push(FakeBehavior::Pending);
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 3).await;
    f.clock
        .advance(f.ems.config().hold_ttl + Duration::minutes(1));
    assert_eq!(f.event_taken(e.id).await, 0, "expired hold released");
    let reference = c.payment.and_then(|p| p.reference).expect("reference");
    let done = f
        .ems
        .handle_webhook("fake", &f.gateway.settle(&reference, true))
        .await
        .expect("handled")
        .expect("checkout");
    assert_eq!(done.booking.status, BookingStatus::Confirmed);
    assert_eq!(done.booking.reason, Some(BookingReason::Reacquired));
    assert_eq!(done.tickets.len(), 3);
    assert_eq!(f.event_taken(e.id).await, 3);
}

/// A payment succeeding after its hold expired and the units sold out is refunded
/// in full and the booking says why; nothing is oversold.
pub async fn late_payment_is_refunded_when_sold_out(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(3, &[("GA", "10", 3)]).await;
    f.gateway.push(FakeBehavior::Pending);
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 2).await;
    f.clock
        .advance(f.ems.config().hold_ttl + Duration::minutes(1));
    f.buy(&f.customer(), e.id, tiers[0].id, 3).await;
    let reference = c.payment.and_then(|p| p.reference).expect("reference");
    let done = f
        .ems
        .handle_webhook("fake", &f.gateway.settle(&reference, true))
        .await
        .expect("handled")
        .expect("checkout");
    assert_eq!(done.booking.status, BookingStatus::Unfulfilled);
    assert_eq!(done.booking.reason, Some(BookingReason::SoldOutAfterExpiry));
    assert!(done.tickets.is_empty());
    assert_eq!(f.event_taken(e.id).await, 3, "never oversold");
    let (_, refunds) = f
        .ems
        .payments(&f.organizer, c.booking.id)
        .await
        .expect("payments");
    assert_eq!(refunds.len(), 1);
    assert_eq!(
        (refunds[0].status, refunds[0].amount),
        (RefundStatus::Succeeded, eur("20"))
    );
    assert_eq!(f.gateway.net_charged(&reference), Some(eur("0")));
    // The same webhook again refunds nothing more.
    f.ems
        .handle_webhook("fake", &f.gateway.settle(&reference, true))
        .await
        .expect("handled");
    let (_, refunds) = f
        .ems
        .payments(&f.organizer, c.booking.id)
        .await
        .expect("payments");
    assert_eq!(
        refunds.len(),
        1,
        "one refund, however often the webhook comes"
    );
}

/// A webhook with a wrong signature is refused and changes nothing.
pub async fn forged_webhook_signature_is_rejected(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    f.gateway.push(FakeBehavior::Pending);
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 1).await;
    let reference = c.payment.and_then(|p| p.reference).expect("reference");
    let mut hook = f.gateway.settle(&reference, true);
    hook.signature = Some("v1=AAAA".into());
    let err = f.ems.handle_webhook("fake", &hook).await;
    assert!(
        matches!(
            err,
            Err(Error::Payment(
                crate::payment::GatewayError::InvalidSignature
            ))
        ),
        "got {err:?}"
    );
    hook.signature = None;
    assert!(f.ems.handle_webhook("fake", &hook).await.is_err());
    let b = f
        .ems
        .booking(&f.organizer, c.booking.id)
        .await
        .expect("read");
    assert_eq!(b.status, BookingStatus::Pending, "nothing changed");
}

/// A booking on another customer's hold, or on a hold already booked, is refused.
pub async fn booking_a_foreign_hold_is_rejected(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let owner = f.customer();
    let hold = f
        .ems
        .place_hold(&owner, e.id, &items(tiers[0].id, 2), HoldOptions::default())
        .await
        .expect("hold");
    let now = f.clock_now();
    let thief = UserId::new();
    let booking = crate::booking::Booking {
        customer: thief,
        ..booking_of(&hold, "steal", now)
    };
    let err = f.ems.store().create_booking(&booking).await;
    assert!(matches!(err, Err(Error::Forbidden { .. })), "got {err:?}");
    assert!(
        f.ems
            .store()
            .booking_by_key(thief, "steal")
            .await
            .expect("lookup")
            .is_none(),
        "nothing stored"
    );
    f.clock.advance(f.ems.config().hold_ttl);
    let expired = crate::booking::Booking {
        customer: owner.user().expect("a user"),
        id: BookingId::new(),
        created_at: f.clock_now(),
        ..booking
    };
    let err = f.ems.store().create_booking(&expired).await;
    assert!(
        matches!(err, Err(Error::InvalidState { .. })),
        "an expired hold cannot be booked: {err:?}"
    );
}

/// A booking id is taken once: a second booking with it (another hold,
/// another key) is refused and changes nothing.
pub async fn a_booking_id_is_taken_once(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let owner = f.customer();
    let customer = owner.user().expect("a user");
    let mut holds = Vec::new();
    for _ in 0..2 {
        let hold = f
            .ems
            .place_hold(&owner, e.id, &items(tiers[0].id, 1), HoldOptions::default())
            .await
            .expect("hold");
        holds.push(hold);
    }
    let now = f.clock_now();
    let booking_on =
        |hold: &crate::inventory::Hold, id: BookingId, key: &str| crate::booking::Booking {
            id,
            ..booking_of(hold, key, now)
        };
    let id = BookingId::new();
    let first = booking_on(&holds[0], id, "first");
    f.ems.store().create_booking(&first).await.expect("booked");
    let again = booking_on(&holds[1], id, "second");
    let err = f.ems.store().create_booking(&again).await;
    assert!(
        matches!(
            err,
            Err(Error::AlreadyExists {
                entity: "booking",
                field: "id",
                ..
            })
        ),
        "got {err:?}"
    );
    let store = f.ems.store();
    assert_eq!(store.booking(id).await.expect("read"), Some(first.clone()));
    assert_eq!(
        store
            .booking_by_key(customer, "second")
            .await
            .expect("read"),
        None
    );
    let second_hold = store.hold(holds[1].id).await.expect("read").expect("kept");
    assert_eq!(
        second_hold.booking_id, None,
        "the second hold stays unbooked"
    );
    let listed = store
        .bookings_for_customer(customer, None, 10)
        .await
        .expect("list");
    assert_eq!(listed, vec![first]);
}

/// A hold id is taken once across events: a second hold with it, on the
/// same event or another, is refused and takes no units.
pub async fn a_hold_id_is_taken_once(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e1, t1) = f.published_event(10, &[("GA", "10", 10)]).await;
    let (e2, t2) = f.published_event(10, &[("GA", "10", 10)]).await;
    let store = f.ems.store();
    let first = hold_request(e1.id, t1[0].id, 2, f.clock_now(), 15);
    let held = store.try_hold(&first).await.expect("held");
    for (event, tier) in [(e1.id, t1[0].id), (e2.id, t2[0].id)] {
        let again = crate::inventory::HoldRequest {
            id: first.id,
            ..hold_request(event, tier, 3, f.clock_now(), 15)
        };
        let err = store.try_hold(&again).await;
        assert_hold_id_taken(&err, "a second hold with a taken id");
    }
    // In a batch, the request with a taken id alone is refused.
    let fresh = hold_request(e2.id, t2[0].id, 1, f.clock_now(), 15);
    let taken = crate::inventory::HoldRequest {
        id: first.id,
        ..hold_request(e2.id, t2[0].id, 1, f.clock_now(), 15)
    };
    let answers = store.try_hold_batch(&[fresh.clone(), taken]).await;
    assert_eq!(answers.len(), 2);
    assert!(answers[0].is_ok(), "got {:?}", answers[0]);
    assert_hold_id_taken(&answers[1], "the batch's request with a taken id");
    assert_eq!(
        store.hold(first.id).await.expect("read"),
        Some(held.clone())
    );
    assert_eq!(f.available(e1.id, t1[0].id).await, 8);
    assert_eq!(
        f.available(e2.id, t2[0].id).await,
        9,
        "only the fresh hold's unit"
    );

    // A hold that fails takes no id: the next request may use it, alone or
    // in a batch.
    let refused = hold_request(e1.id, t1[0].id, 9, f.clock_now(), 15);
    let err = store.try_hold(&refused).await;
    assert!(
        matches!(err, Err(Error::SoldOut { available: 8, .. })),
        "got {err:?}"
    );
    assert_eq!(store.hold(refused.id).await.expect("read"), None);
    let batch_refused = hold_request(e2.id, t2[0].id, 10, f.clock_now(), 15);
    let answers = store
        .try_hold_batch(std::slice::from_ref(&batch_refused))
        .await;
    assert!(
        matches!(answers[..], [Err(Error::SoldOut { available: 9, .. })]),
        "got {answers:?}"
    );
    let retried = crate::inventory::HoldRequest {
        id: refused.id,
        ..hold_request(e1.id, t1[0].id, 1, f.clock_now(), 15)
    };
    let held_again = store.try_hold(&retried).await.expect("the id is free");
    assert_eq!(
        store.hold(refused.id).await.expect("read"),
        Some(held_again)
    );
    let batch_retried = crate::inventory::HoldRequest {
        id: batch_refused.id,
        ..hold_request(e2.id, t2[0].id, 1, f.clock_now(), 15)
    };
    let answers = store.try_hold_batch(&[batch_retried]).await;
    assert!(answers[0].is_ok(), "got {answers:?}");
    assert_eq!(f.available(e1.id, t1[0].id).await, 7);
    assert_eq!(f.available(e2.id, t2[0].id).await, 8);

    // Booked, a hold keeps its id taken and stays readable, through either
    // handle.
    let booking = booking_of(&held, "booked-hold", f.clock_now());
    store.create_booking(&booking).await.expect("booked");
    for handle in [f.ems.store(), f.ems_b.store()] {
        let again = crate::inventory::HoldRequest {
            id: first.id,
            ..hold_request(e2.id, t2[0].id, 1, f.clock_now(), 15)
        };
        let err = handle.try_hold(&again).await;
        assert_hold_id_taken(&err, "a booked hold's id is taken");
        let read = handle.hold(first.id).await.expect("read").expect("kept");
        assert_eq!(read.booking_id, Some(booking.id));
        let owner = handle.hold_owner(first.id).await.expect("read");
        assert_eq!(owner.map(|o| o.customer), Some(first.customer));
    }
    assert_eq!(f.available(e2.id, t2[0].id).await, 8, "no units taken");
}

/// A booking stored directly through the port, on a fresh hold of one unit
/// of `tier` of `event` for `customer`.
async fn stored_booking(
    f: &Fixture,
    customer: &Actor,
    event: &crate::event::Event,
    tier: TierId,
) -> crate::booking::Booking {
    let hold = f
        .ems
        .place_hold(customer, event.id, &items(tier, 1), HoldOptions::default())
        .await
        .expect("hold");
    let booking = booking_of(&hold, &format!("key-{}", hold.id), f.clock_now());
    f.ems
        .store()
        .create_booking(&booking)
        .await
        .expect("booked")
}

/// A payment key is given once across every booking and event, the key a
/// checkout gives a booking's first payment (`booking-{id}`) included, in
/// whichever order its payments come; a payment id too.
pub async fn a_payment_key_is_given_once_whoever_uses_it(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e1, t1) = f.published_event(10, &[("GA", "10", 10)]).await;
    let (e2, t2) = f.published_event(10, &[("GA", "10", 10)]).await;
    let buyer = f.customer();
    let b1 = stored_booking(&f, &buyer, &e1, t1[0].id).await;
    let b3 = stored_booking(&f, &buyer, &e1, t1[0].id).await;
    let b2 = stored_booking(&f, &buyer, &e2, t2[0].id).await;
    let store = f.ems.store();
    let payment = |b: &crate::booking::Booking, key: String| {
        let mut p = crate::booking::OpenCheckout::new(b.clone(), f.clock_now()).payment;
        p.idempotency_key = key;
        p
    };
    let own = |b: &crate::booking::Booking| format!("booking-{}", b.id);

    // Another event's booking takes b1's own key first: b1's own payment
    // then gets that payment back, and b1 has none of its own.
    let p2 = payment(&b2, own(&b1));
    assert_eq!(store.insert_payment(&p2).await.expect("stored"), p2);
    let p1 = payment(&b1, own(&b1));
    assert_eq!(store.insert_payment(&p1).await.expect("answered"), p2);
    assert!(store.payment(p1.id).await.expect("read").is_none());
    assert!(store
        .payments_for_booking(b1.id)
        .await
        .expect("list")
        .is_empty());

    // b3 pays under its own key first: nobody else gets that key after,
    // from another event or from the same one.
    let p3 = payment(&b3, own(&b3));
    assert_eq!(store.insert_payment(&p3).await.expect("stored"), p3);
    for other in [&b2, &b1] {
        let p = payment(other, own(&b3));
        assert_eq!(store.insert_payment(&p).await.expect("answered"), p3);
        assert!(store.payment(p.id).await.expect("read").is_none());
    }
    assert_eq!(
        store.payments_for_booking(b2.id).await.expect("list"),
        vec![p2.clone()]
    );
    assert_eq!(
        store.payments_for_booking(b3.id).await.expect("list"),
        vec![p3.clone()]
    );

    // A key of no booking's, and an id already taken.
    let p4 = payment(&b1, "retry-1".into());
    assert_eq!(store.insert_payment(&p4).await.expect("stored"), p4);
    let same_id = crate::payment::Payment {
        idempotency_key: "retry-2".into(),
        ..p4.clone()
    };
    let err = store.insert_payment(&same_id).await;
    assert!(
        matches!(
            err,
            Err(Error::AlreadyExists {
                entity: "payment",
                field: "id",
                ..
            })
        ),
        "got {err:?}"
    );
    assert_eq!(
        store.payments_for_booking(b1.id).await.expect("list"),
        vec![p4]
    );
}

/// A published event of 10 with `policy` and one tier at `price` EUR.
async fn event_with_refund_policy(
    f: &Fixture,
    policy: RefundPolicy,
    price: &str,
) -> (crate::event::Event, crate::inventory::TicketTier) {
    let e = f.draft_event(10).await;
    let patch = EventPatch {
        refund_policy: Some(policy),
        ..Default::default()
    };
    let e = f
        .ems
        .update_event(&f.organizer, e.id, e.version, patch)
        .await
        .expect("updated");
    let t = f
        .ems
        .add_tier(&f.organizer, e.id, NewTier::new("GA", eur(price), 10))
        .await
        .expect("tier");
    f.ems
        .publish_event(&f.organizer, e.id, e.version)
        .await
        .expect("published");
    (e, t)
}

/// A customer's cancellation refunds what the event's policy gives at that time.
pub async fn customer_cancellation_refunds_per_policy(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let policy = RefundPolicy::tiered(&[
        (Duration::days(14), Decimal::ONE_HUNDRED),
        (Duration::days(2), Decimal::from(50)),
    ])
    .expect("policy");
    let (e, t) = event_with_refund_policy(&f, policy, "15.55").await;
    let buyer = f.customer();
    let c = f.buy(&buyer, e.id, t.id, 2).await;
    f.clock.set(e.starts_at - Duration::days(5));
    let cancelled = f
        .ems
        .cancel_booking(&buyer, c.booking.id)
        .await
        .expect("cancelled");
    assert_eq!(
        (cancelled.status, cancelled.reason),
        (
            BookingStatus::Cancelled,
            Some(BookingReason::CustomerCancelled)
        )
    );
    let (payments, refunds) = f
        .ems
        .payments(&buyer, c.booking.id)
        .await
        .expect("payments");
    assert_eq!(refunds.len(), 1, "each refund is its own record");
    assert_eq!(
        (refunds[0].status, refunds[0].amount),
        (RefundStatus::Succeeded, eur("15.55")),
        "50% of 31.10"
    );
    assert_eq!(payments[0].refunded, eur("15.55"));
    assert_eq!(f.event_taken(e.id).await, 0, "units returned");
    let tickets = f
        .ems
        .store()
        .tickets_for_booking(c.booking.id)
        .await
        .expect("tickets");
    assert!(
        tickets
            .iter()
            .all(|t| t.status == crate::ticket::TicketStatus::Void),
        "tickets void"
    );
    let again = f
        .ems
        .cancel_booking(&buyer, c.booking.id)
        .await
        .expect("idempotent");
    assert_eq!(again.status, BookingStatus::Cancelled);
    assert_eq!(
        f.ems
            .payments(&buyer, c.booking.id)
            .await
            .expect("payments")
            .1
            .len(),
        1,
        "no second refund"
    );
}

/// Past the policy's last deadline, a customer cannot cancel; an organizer still can, in full.
pub async fn cancellation_after_the_last_deadline_is_refused(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let policy =
        RefundPolicy::tiered(&[(Duration::days(7), Decimal::ONE_HUNDRED)]).expect("policy");
    let (e, t) = event_with_refund_policy(&f, policy, "10").await;
    let buyer = f.customer();
    let c = f.buy(&buyer, e.id, t.id, 1).await;
    f.clock.set(e.starts_at - Duration::days(3));
    let err = f.ems.cancel_booking(&buyer, c.booking.id).await;
    assert!(
        matches!(err, Err(Error::InvalidState { .. })),
        "got {err:?}"
    );
    assert!(
        matches!(
            f.ems.cancel_booking(&f.customer(), c.booking.id).await,
            Err(Error::NotFound { .. })
        ),
        "strangers do not see it"
    );
    let by_org = f
        .ems
        .cancel_booking(&f.organizer, c.booking.id)
        .await
        .expect("organizer cancels");
    assert_eq!(by_org.reason, Some(BookingReason::OrganizerCancelled));
    let (_, refunds) = f
        .ems
        .payments(&buyer, c.booking.id)
        .await
        .expect("payments");
    assert_eq!(refunds[0].amount, eur("10"));
}

/// A refund the gateway refuses is recorded as failed; retrying pays it exactly once.
pub async fn failed_refund_is_recorded_and_retry_pays_once(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let buyer = f.customer();
    let c = f.buy(&buyer, e.id, tiers[0].id, 2).await;
    f.gateway.fail_next_refunds(1);
    f.ems
        .cancel_booking(&f.organizer, c.booking.id)
        .await
        .expect("cancelled");
    let (_, refunds) = f
        .ems
        .payments(&buyer, c.booking.id)
        .await
        .expect("payments");
    assert_eq!(refunds[0].status, RefundStatus::Failed);
    assert!(refunds[0].failure.is_some(), "the failure says why");
    assert!(matches!(
        f.ems.retry_refund(&buyer, refunds[0].id).await,
        Err(Error::Forbidden { .. })
    ));
    let retried = f
        .ems
        .retry_refund(&f.organizer, refunds[0].id)
        .await
        .expect("retried");
    assert_eq!(retried.status, RefundStatus::Succeeded);
    let again = f.ems.retry_refund(&f.organizer, refunds[0].id).await;
    assert!(
        matches!(again, Err(Error::InvalidState { .. })),
        "a succeeded refund is not sent again: {again:?}"
    );
    let reference = c.payment.and_then(|p| p.reference).expect("reference");
    assert_eq!(f.gateway.net_charged(&reference), Some(eur("0")));
}

/// Free tickets confirm without calling the gateway.
pub async fn free_tickets_confirm_without_charging(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("Free", "0", 10)]).await;
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 2).await;
    assert_eq!(c.booking.status, BookingStatus::Confirmed);
    assert_eq!(c.tickets.len(), 2);
    assert_eq!(f.gateway.calls().0, 0, "nothing charged");
    let cancelled = f
        .ems
        .cancel_booking(&f.organizer, c.booking.id)
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, BookingStatus::Cancelled);
}

/// A ticket is admitted once; the second scan says when it was used.
pub async fn check_in_admits_once_and_says_when(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 1).await;
    let code = &c.tickets[0].code;
    let first_at = f.clock_now();
    assert!(matches!(
        f.ems
            .check_in(&f.organizer, e.id, code)
            .await
            .expect("runs"),
        CheckIn::Admitted { .. }
    ));
    f.clock.advance(Duration::minutes(3));
    let second = f
        .ems_b
        .check_in(&f.organizer, e.id, code)
        .await
        .expect("runs");
    assert_eq!(
        second,
        CheckIn::Refused {
            refusal: CheckInRefusal::AlreadyCheckedIn { at: first_at }
        }
    );
    assert!(
        matches!(
            f.ems.check_in(&f.customer(), e.id, code).await,
            Err(Error::Forbidden { .. })
        ),
        "customers cannot check in"
    );
}

/// Garbled and forged codes are refused as unknown.
pub async fn check_in_refuses_forged_codes(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 1).await;
    let forged = crate::ticket::TicketSigner::new(&[9u8; 32])
        .expect("signer")
        .sign(c.tickets[0].ticket.id, e.id);
    for code in [forged.as_str(), "not-a-code", ""] {
        let r = f
            .ems
            .check_in(&f.organizer, e.id, code)
            .await
            .expect("runs");
        assert_eq!(
            r,
            CheckIn::Refused {
                refusal: CheckInRefusal::Unknown
            },
            "{code:?}"
        );
    }
    let genuine_unknown = f.ems.signer().sign(TicketId::new(), e.id);
    let r = f
        .ems
        .check_in(&f.organizer, e.id, &genuine_unknown)
        .await
        .expect("runs");
    assert_eq!(
        r,
        CheckIn::Refused {
            refusal: CheckInRefusal::Unknown
        },
        "a signed code of no ticket"
    );
}

/// A ticket of another event is refused as such.
pub async fn check_in_refuses_tickets_of_other_events(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (a, ta) = f.published_event(10, &[("GA", "10", 10)]).await;
    let (b, _) = f.published_event(10, &[("GA", "10", 10)]).await;
    let c = f.buy(&f.customer(), a.id, ta[0].id, 1).await;
    let r = f
        .ems
        .check_in(&f.organizer, b.id, &c.tickets[0].code)
        .await
        .expect("runs");
    assert_eq!(
        r,
        CheckIn::Refused {
            refusal: CheckInRefusal::WrongEvent { ticket_event: a.id }
        }
    );
}

/// A cancelled booking's tickets are refused as void.
pub async fn check_in_refuses_void_tickets(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 1).await;
    f.ems
        .cancel_booking(&f.organizer, c.booking.id)
        .await
        .expect("cancelled");
    let r = f
        .ems
        .check_in(&f.organizer, e.id, &c.tickets[0].code)
        .await
        .expect("runs");
    assert_eq!(
        r,
        CheckIn::Refused {
            refusal: CheckInRefusal::Void
        }
    );
}

/// Concurrent scans of one ticket through two handles admit exactly once.
pub async fn concurrent_check_ins_admit_once(stores: TestStores) {
    let f = Arc::new(Fixture::new(stores).await);
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 1).await;
    let code = c.tickets[0].code.clone();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (f, code) = (Arc::clone(&f), code.clone());
            tokio::spawn(async move {
                let ems = if i % 2 == 0 { &f.ems } else { &f.ems_b };
                ems.check_in(&f.organizer, e.id, &code).await.expect("runs")
            })
        })
        .collect();
    let results = futures::future::join_all(tasks).await;
    let admitted = results
        .into_iter()
        .filter(|r| matches!(r, Ok(CheckIn::Admitted { .. })))
        .count();
    assert_eq!(admitted, 1, "exactly one scan admits");
}

/// The domain-event log is ordered and resumable from any cursor.
pub async fn domain_events_are_read_in_order_from_a_cursor(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let c = f.buy(&f.customer(), e.id, tiers[0].id, 1).await;
    let all = f
        .ems
        .events_after(&Actor::System, None, 500)
        .await
        .expect("log");
    assert!(
        all.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq strictly increases"
    );
    let kinds: Vec<_> = all
        .iter()
        .filter(|r| {
            matches!(
                &r.event,
                DomainEvent::EventPublished { .. }
                    | DomainEvent::HoldPlaced { .. }
                    | DomainEvent::BookingCreated { .. }
                    | DomainEvent::BookingConfirmed { .. }
            )
        })
        .map(|r| std::mem::discriminant(&r.event))
        .collect();
    assert_eq!(
        kinds.len(),
        4,
        "publish, hold, booking, confirmation all recorded: {all:?}"
    );
    assert!(all.iter().any(|r| matches!(r.event, DomainEvent::BookingConfirmed { booking_id, tickets: 1, .. } if booking_id == c.booking.id)));
    let cut = all[all.len() / 2].seq;
    let rest = f
        .ems_b
        .events_after(&Actor::System, Some(cut), 500)
        .await
        .expect("log");
    assert_eq!(
        rest.first().map(|r| r.seq),
        all.iter().find(|r| r.seq > cut).map(|r| r.seq),
        "resumes right after the cursor"
    );
    assert_eq!(rest.len(), all.iter().filter(|r| r.seq > cut).count());
    assert!(matches!(
        f.ems.events_after(&f.customer(), None, 10).await,
        Err(Error::Forbidden { .. })
    ));
}

/// Customer and event booking histories are newest first and paginate without gaps.
pub async fn booking_history_is_paginated_newest_first(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(50, &[("GA", "10", 50)]).await;
    let buyer = f.customer();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(f.buy(&buyer, e.id, tiers[0].id, 1).await.booking.id);
    }
    f.buy(&f.customer(), e.id, tiers[0].id, 1).await;
    ids.reverse();
    let user = buyer.user().expect("a user");
    let p1 = f
        .ems
        .bookings_of_customer(&buyer, user, PageRequest::first(2))
        .await
        .expect("page");
    let p2 = f
        .ems
        .bookings_of_customer(
            &buyer,
            user,
            PageRequest::after(p1.next.clone().expect("more"), 2),
        )
        .await
        .expect("page");
    let p3 = f
        .ems
        .bookings_of_customer(
            &buyer,
            user,
            PageRequest::after(p2.next.clone().expect("more"), 2),
        )
        .await
        .expect("page");
    let got: Vec<_> = [p1.items, p2.items, p3.items.clone()]
        .concat()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(got, ids, "newest first, no gaps");
    assert!(p3.next.is_none());
    assert!(matches!(
        f.ems
            .bookings_of_customer(&f.customer(), user, PageRequest::first(2))
            .await,
        Err(Error::Forbidden { .. })
    ));
    let ev = f
        .ems
        .bookings_of_event(&f.organizer, e.id, PageRequest::first(100))
        .await
        .expect("event bookings");
    assert_eq!(ev.items.len(), 6);
    assert!(matches!(
        f.ems
            .bookings_of_event(&buyer, e.id, PageRequest::first(10))
            .await,
        Err(Error::Forbidden { .. })
    ));
}

/// 64 tasks race for the last units through two handles: exactly capacity is
/// taken, every hold ends confirmed or released, and sold units equal tickets.
pub async fn concurrent_holds_through_two_handles_never_oversell(stores: TestStores) {
    let f = Arc::new(Fixture::new(stores).await);
    let capacity = 120;
    let (e, tiers) = f.published_event(capacity, &[("GA", "10", 500)]).await;
    let tier = tiers[0].id;
    let tasks: Vec<_> = (0..64u32)
        .map(|i| {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                let ems = if i % 2 == 0 {
                    f.ems.clone()
                } else {
                    f.ems_b.clone()
                };
                let buyer = Actor::Customer {
                    user: UserId::new(),
                };
                let (mut confirmed, mut released) = (0u32, 0u32);
                for round in 0..20u32 {
                    let qty = 1 + (i + round) % 3;
                    match ems
                        .place_hold(&buyer, e.id, &items(tier, qty), HoldOptions::default())
                        .await
                    {
                        Ok(hold) => {
                            if (i + round) % 4 == 0 {
                                ems.release_hold(&buyer, hold.id).await.expect("release");
                                released += 1;
                            } else {
                                let key = format!("{i}-{round}");
                                let c = ems.checkout(
                                    &buyer,
                                    crate::booking::CheckoutRequest {
                                        event_id: e.id,
                                        items: items(tier, qty),
                                        idempotency_key: key,
                                        gateway: None,
                                        on_behalf_of: None,
                                        coupon: None,
                                    },
                                );
                                ems.release_hold(&buyer, hold.id).await.expect("release");
                                released += 1;
                                if let Ok(c) = c.await {
                                    if c.booking.status == BookingStatus::Confirmed {
                                        confirmed += c.booking.quantity();
                                    }
                                }
                            }
                        }
                        Err(Error::SoldOut { .. }) => {}
                        Err(other) => panic!("unexpected error {other:?}"),
                    }
                }
                (confirmed, released)
            })
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let sold: u32 = results.iter().map(|r| r.0).sum();
    let a = f.availability(e.id).await;
    let event_quota = a.event_quota().expect("event quota");
    assert!(
        event_quota.taken <= capacity,
        "never oversold: {event_quota:?}"
    );
    assert_eq!(
        event_quota.taken, sold,
        "units taken equal units sold once every bare hold is released"
    );
    let bookings = f
        .ems
        .bookings_of_event(&f.organizer, e.id, PageRequest::first(500))
        .await
        .expect("bookings");
    let mut tickets = 0;
    for b in bookings
        .items
        .iter()
        .filter(|b| b.status == BookingStatus::Confirmed)
    {
        tickets += f
            .ems
            .store()
            .tickets_for_booking(b.id)
            .await
            .expect("tickets")
            .len() as u32;
    }
    assert_eq!(tickets, sold, "one ticket per sold unit");
    assert!(
        bookings
            .items
            .iter()
            .all(|b| b.status != BookingStatus::Pending),
        "no booking left pending"
    );
}

/// Full checkouts from 64 tasks through two handles sell exactly the capacity.
pub async fn concurrent_checkouts_sell_exactly_capacity(stores: TestStores) {
    let f = Arc::new(Fixture::new(stores).await);
    let capacity = 100;
    let (e, tiers) = f
        .published_event(capacity, &[("GA", "7.50", capacity)])
        .await;
    let tier = tiers[0].id;
    let tasks: Vec<_> = (0..64u32)
        .map(|i| {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                let ems = if i % 2 == 0 {
                    f.ems.clone()
                } else {
                    f.ems_b.clone()
                };
                let buyer = Actor::Customer {
                    user: UserId::new(),
                };
                let mut bought = 0;
                for round in 0..10u32 {
                    let qty = 1 + (i * 7 + round) % 4;
                    match ems
                        .checkout(&buyer, f.order(e.id, tier, qty, &format!("{round}")))
                        .await
                    {
                        Ok(c) if c.booking.status == BookingStatus::Confirmed => {
                            bought += c.booking.quantity()
                        }
                        Ok(c) => panic!("unexpected booking state {:?}", c.booking.status),
                        Err(Error::SoldOut { .. }) => {}
                        Err(other) => panic!("unexpected error {other:?}"),
                    }
                }
                bought
            })
        })
        .collect();
    let sold: u32 = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .sum();
    assert_eq!(
        sold, capacity,
        "demand exceeds supply, so exactly capacity is sold"
    );
    assert_eq!(f.event_taken(e.id).await, capacity);
    let bookings = f
        .ems
        .bookings_of_event(&f.organizer, e.id, PageRequest::first(500))
        .await
        .expect("bookings");
    let paid: Vec<_> = bookings
        .items
        .iter()
        .filter(|b| b.status == BookingStatus::Confirmed)
        .collect();
    let total = Money::sum(Currency::EUR, paid.iter().map(|b| b.total)).expect("sum");
    assert_eq!(
        total,
        eur("7.50").times(capacity).expect("product"),
        "money agrees with units"
    );
}

/// A pending booking on `hold` under `key`, and its first payment record, as
/// the checkout saga builds them.
fn opening(f: &Fixture, hold: &crate::inventory::Hold, key: &str) -> crate::booking::OpenCheckout {
    let now = f.clock_now();
    crate::booking::OpenCheckout::new(booking_of(hold, key, now), now)
}

/// The settlement of an opened checkout: payment succeeded (with `version`),
/// one ticket per unit.
fn settlement(
    f: &Fixture,
    opened: &crate::booking::OpenCheckout,
    version: u64,
) -> crate::booking::SettlePaid {
    let now = f.clock_now();
    let mut payment = opened.payment.clone();
    payment.status = PaymentStatus::Succeeded;
    payment.reference = Some(format!("ref-{}", opened.booking.id));
    payment.updated_at = now;
    payment.version = version;
    crate::booking::SettlePaid {
        booking: opened.booking.clone(),
        payment,
        confirm: crate::booking::ConfirmBooking::issuing(&opened.booking, now),
    }
}

/// Holds with the bookings opened on them, in one batch, give each request
/// what a batch of the holds and then a batch of the granted ones' openings
/// would: a refused hold opens nothing; a key already used answers with its
/// booking and books nothing on the new hold; the others are opened on
/// their holds with their first payment records.
pub async fn holds_with_their_openings_match_one_by_one(stores: TestStores) {
    use crate::booking::{BookingDraft, CheckoutStore, HoldAndOpen, Opened};
    use crate::inventory::InventoryStore;
    use crate::payment::PaymentStore;
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let tier = tiers[0].id;
    let store = f.ems.store();
    let now = f.clock_now();
    // Ann already has a booking under "ann-old" (its hold placed as a batch
    // of one, as a batching service would: a store may then know the event).
    let first = store
        .try_hold_batch(&[hold_request(e.id, tier, 1, now, 15)])
        .await
        .pop()
        .expect("one answer")
        .expect("held");
    let ann = first.customer;
    let old = opening(&f, &first, "ann-old");
    assert!(matches!(
        &store.open_checkouts(std::slice::from_ref(&old)).await[..],
        [Ok(Opened::Created { .. })]
    ));

    let request = |customer: UserId, qty: u32, key: &str| {
        let mut hold = hold_request(e.id, tier, qty, now, 15);
        hold.customer = customer;
        HoldAndOpen {
            hold,
            draft: BookingDraft {
                booking_id: BookingId::new(),
                payment_id: PaymentId::new(),
                customer,
                idempotency_key: key.to_owned(),
                gateway: "fake".to_owned(),
                now,
            },
        }
    };
    let (bob, cat) = (UserId::new(), UserId::new());
    let ann_new = request(ann, 2, "ann-new");
    let too_many = request(bob, 9, "bob-key");
    let cat_new = request(cat, 3, "cat-key");
    let ann_again = request(ann, 1, "ann-old");
    let requests = [
        ann_new.clone(),
        too_many,
        cat_new.clone(),
        ann_again.clone(),
    ];
    let mut answers = store.hold_and_open(&requests).await;
    assert_eq!(answers.len(), 4, "one answer per request");
    // A store may leave the openings to the caller: open those now, in order.
    for (answer, r) in answers.iter_mut().zip(&requests) {
        if let Ok(held) = answer {
            if held.opened.is_none() {
                let opening = r.draft.open_on(&held.hold);
                held.opened = store.open_checkouts(&[opening]).await.pop();
            }
        }
    }

    for (i, r) in [(0, &ann_new), (2, &cat_new)] {
        let held = answers[i].as_ref().expect("granted");
        assert_eq!(held.hold.id, r.hold.id);
        let expected = r.draft.open_on(&held.hold);
        match held.opened.as_ref().expect("opened") {
            // Stored as requested (checked below), its own payment record with it.
            Ok(Opened::Created { payment: None }) => {}
            other => panic!("request {i} opens its booking: {other:?}"),
        }
        let stored = store.hold(r.hold.id).await.expect("read").expect("kept");
        assert_eq!(
            stored.booking_id,
            Some(r.draft.booking_id),
            "the hold points to it"
        );
        assert_eq!(
            store.booking(r.draft.booking_id).await.expect("read"),
            Some(expected.booking.clone())
        );
        assert_eq!(
            store
                .payments_for_booking(r.draft.booking_id)
                .await
                .expect("read"),
            vec![expected.payment]
        );
    }
    assert!(
        matches!(answers[1], Err(Error::SoldOut { available: 7, .. })),
        "refused as alone at its place in the line: {:?}",
        answers[1]
    );
    let again = answers[3].as_ref().expect("the hold is granted");
    assert!(
        matches!(&again.opened, Some(Ok(Opened::Existing(b))) if b.id == old.booking.id),
        "a used key answers with its booking: {:?}",
        again.opened
    );
    let unbooked = store
        .hold(ann_again.hold.id)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(unbooked.booking_id, None, "the used key booked nothing");
    assert_eq!(
        store
            .booking(ann_again.draft.booking_id)
            .await
            .expect("read"),
        None
    );
    // A hold id taken already, here or earlier in the same batch, is refused
    // for that request alone.
    let mut taken_id = request(bob, 1, "bob-other");
    taken_id.hold.id = ann_new.hold.id;
    let dan_new = request(UserId::new(), 1, "dan-key");
    let mut twice = request(UserId::new(), 1, "eve-key");
    twice.hold.id = dan_new.hold.id;
    let answers = store
        .hold_and_open(&[taken_id, dan_new.clone(), twice])
        .await;
    assert_eq!(answers.len(), 3, "one answer per request");
    for refused in [&answers[0], &answers[2]] {
        assert_hold_id_taken(refused, "a taken hold id is refused");
    }
    let dan = answers[1].as_ref().expect("granted");
    assert_eq!(dan.hold.id, dan_new.hold.id);
    assert_eq!(f.event_taken(e.id).await, 1 + 2 + 3 + 1 + 1);
}

/// The batched checkout steps give each request what it would have got alone,
/// whatever its neighbours do: a reused key answers with the existing
/// booking, a hold booked earlier in the batch or held by someone else is
/// refused, a stale payment version is a conflict that changes nothing, and a
/// booking whose hold lapsed takes its units again.
pub async fn checkout_batches_match_one_by_one(stores: TestStores) {
    use crate::booking::{CheckoutStore, ConfirmOutcome, Opened};
    use crate::inventory::InventoryStore;
    use crate::payment::PaymentStore;
    use crate::ticket::TicketStore;
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(20, &[("GA", "10", 20)]).await;
    let tier = tiers[0].id;
    let ann = f.customer();
    let bob = f.customer();
    let cat = f.customer();
    let hold = |who: Actor, qty: u32, ttl: Option<Duration>| {
        let ems = f.ems.clone();
        async move {
            ems.place_hold(
                &who,
                e.id,
                &items(tier, qty),
                HoldOptions {
                    ttl,
                    ..HoldOptions::default()
                },
            )
            .await
            .expect("hold placed")
        }
    };
    let ann_1 = hold(ann, 2, None).await;
    let ann_2 = hold(ann, 1, None).await;
    let bob_1 = hold(bob, 3, None).await;
    let cat_1 = hold(cat, 1, Some(Duration::seconds(30))).await;
    assert_eq!(f.event_taken(e.id).await, 7);

    let store = f.ems.store();
    let a = opening(&f, &ann_1, "ann-key");
    let reused = opening(&f, &ann_2, "ann-key");
    let b = opening(&f, &bob_1, "bob-key");
    let again = opening(&f, &ann_1, "ann-other-key");
    let mut foreign = opening(&f, &bob_1, "cat-key");
    foreign.booking.customer = cat_1.customer;
    let c = opening(&f, &cat_1, "cat-key");
    let opened = store
        .open_checkouts(&[
            a.clone(),
            reused.clone(),
            b.clone(),
            again,
            foreign,
            c.clone(),
        ])
        .await;
    assert_eq!(opened.len(), 6, "one answer per request");
    match &opened[0] {
        // Stored as requested, its own payment record with it (both read
        // back below).
        Ok(Opened::Created { payment: None }) => {}
        other => panic!("the first request opens its booking: {other:?}"),
    }
    match &opened[1] {
        Ok(Opened::Existing(existing)) => assert_eq!(existing.id, a.booking.id),
        other => panic!("a reused key answers with its booking: {other:?}"),
    }
    assert!(
        matches!(&opened[2], Ok(Opened::Created { payment: None })),
        "a neighbour's outcome does not change another's: {:?}",
        opened[2]
    );
    assert!(
        matches!(opened[3], Err(Error::InvalidState { .. })),
        "a hold booked earlier in the batch cannot be booked again: {:?}",
        opened[3]
    );
    assert!(
        matches!(
            opened[4],
            Err(Error::Forbidden { .. } | Error::InvalidInput { .. } | Error::InvalidState { .. })
        ),
        "another customer's hold is refused: {:?}",
        opened[4]
    );
    assert!(matches!(&opened[5], Ok(Opened::Created { .. })));
    let ann_2_now = store.hold(ann_2.id).await.expect("read").expect("kept");
    assert_eq!(ann_2_now.booking_id, None, "the reused key booked nothing");
    for (o, hold) in [(&a, &ann_1), (&b, &bob_1), (&c, &cat_1)] {
        let stored = store
            .booking(o.booking.id)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(stored, o.booking, "stored as requested");
        let h = store.hold(hold.id).await.expect("read").expect("kept");
        assert_eq!(h.booking_id, Some(o.booking.id), "the hold points to it");
        let payments = store
            .payments_for_booking(o.booking.id)
            .await
            .expect("read");
        assert_eq!(payments, vec![o.payment.clone()], "one pending payment");
    }

    // Cat's hold lapses before her payment lands; units are still there.
    f.clock.advance(Duration::seconds(60));
    let requests = [
        settlement(&f, &a, 2),
        settlement(&f, &b, 3), // stale: the stored version is 1
        settlement(&f, &c, 2),
    ];
    let settled = store.settle_paid(&requests).await;
    assert_eq!(settled.len(), 3);
    // What a settlement answers, as `confirm_booking` would: the booking it
    // names must be the one stored, whichever form the store answered in.
    let confirmed = |i: usize| match &settled[i] {
        Ok(s) => s
            .clone()
            .into_outcome(requests[i].booking.clone(), requests[i].confirm.now),
        other => panic!("request {i} settles: {other:?}"),
    };
    let outcome = confirmed(0);
    assert!(
        matches!(&outcome, ConfirmOutcome::Confirmed(b) if b.reason.is_none()),
        "a paid booking on its hold is confirmed: {outcome:?}"
    );
    assert_eq!(
        store.booking(a.booking.id).await.expect("read").as_ref(),
        Some(outcome.booking()),
        "the answer is the booking as stored"
    );
    let paid = store.payment(a.payment.id).await.expect("read");
    assert_eq!(
        paid,
        Some(requests[0].payment.clone()),
        "the payment is stored as sent"
    );
    assert!(
        matches!(settled[1], Err(Error::Conflict { .. })),
        "a stale payment version is a conflict: {:?}",
        settled[1]
    );
    let outcome = confirmed(2);
    assert!(
        matches!(&outcome, ConfirmOutcome::Confirmed(b)
            if b.reason == Some(BookingReason::Reacquired)),
        "a lapsed hold's units are taken again: {outcome:?}"
    );
    assert_eq!(
        store.booking(c.booking.id).await.expect("read").as_ref(),
        Some(outcome.booking()),
        "the answer is the booking as stored"
    );
    let bob_pay = store
        .payment(b.payment.id)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(
        bob_pay.status,
        PaymentStatus::Pending,
        "the conflict changed nothing"
    );
    let bob_booking = store
        .booking(b.booking.id)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(bob_booking.status, BookingStatus::Pending);
    assert_eq!(
        store
            .tickets_for_booking(a.booking.id)
            .await
            .expect("read")
            .len(),
        2
    );
    assert!(store
        .tickets_for_booking(b.booking.id)
        .await
        .expect("read")
        .is_empty());
    assert_eq!(
        store
            .tickets_for_booking(c.booking.id)
            .await
            .expect("read")
            .len(),
        1
    );
    // Ann's 2 confirmed, her unbooked 1 and Bob's 3 still held, Cat's 1 taken again.
    assert_eq!(f.event_taken(e.id).await, 7, "units agree with the holds");
    // Every change is in the log once, in order per booking.
    let log = f.ems.store().read_events(None, 1_000).await.expect("log");
    let count = |pred: &dyn Fn(&DomainEvent) -> bool| log.iter().filter(|r| pred(&r.event)).count();
    assert_eq!(
        count(&|e| matches!(e, DomainEvent::BookingCreated { .. })),
        3
    );
    assert_eq!(
        count(&|e| matches!(e, DomainEvent::PaymentStarted { .. })),
        3
    );
    assert_eq!(
        count(&|e| matches!(e, DomainEvent::PaymentSucceeded { .. })),
        2
    );
    assert_eq!(
        count(&|e| matches!(e, DomainEvent::BookingConfirmed { .. })),
        2
    );
}

/// Releasing holds in a batch gives each request what it would have got alone:
/// an active hold is released (and releasing it again is a no-op), a lapsed
/// one is found expired, a confirmed one cannot be released, an unknown one is
/// not found; every unit comes back exactly once.
pub async fn release_batches_match_one_by_one(stores: TestStores) {
    use crate::inventory::{HoldRelease, InventoryStore};
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(20, &[("GA", "10", 20)]).await;
    let tier = tiers[0].id;
    let hold = |qty: u32, ttl: Option<Duration>| {
        let ems = f.ems.clone();
        let who = f.customer();
        async move {
            ems.place_hold(
                &who,
                e.id,
                &items(tier, qty),
                HoldOptions {
                    ttl,
                    ..HoldOptions::default()
                },
            )
            .await
            .expect("hold placed")
        }
    };
    let open = hold(3, None).await;
    let lapsing = hold(2, Some(Duration::seconds(30))).await;
    let kept = hold(4, None).await;
    let buyer = f.customer();
    let sold = f
        .ems
        .checkout(&buyer, f.order(e.id, tier, 1, "sold"))
        .await
        .expect("checkout");
    assert_eq!(sold.booking.status, BookingStatus::Confirmed);
    assert_eq!(f.event_taken(e.id).await, 10);

    f.clock.advance(Duration::seconds(60));
    let now = f.clock_now();
    let release = |hold_id| HoldRelease {
        hold_id,
        event_id: e.id,
        now,
    };
    let results = f
        .ems
        .store()
        .release_hold_batch(&[
            release(open.id),
            release(open.id),
            release(sold.booking.hold_id),
            release(lapsing.id),
            release(HoldId::new()),
        ])
        .await;
    assert_eq!(results.len(), 5, "one answer per request");
    assert!(
        matches!(&results[0], Ok(h) if h.status == HoldStatus::Released),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(&results[1], Ok(h) if h.status == HoldStatus::Released),
        "releasing again is a no-op: {:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(Error::InvalidState { .. })),
        "a confirmed hold cannot be released: {:?}",
        results[2]
    );
    assert!(
        matches!(&results[3], Ok(h) if h.status == HoldStatus::Expired),
        "a lapsed hold is found expired: {:?}",
        results[3]
    );
    assert!(
        matches!(results[4], Err(Error::NotFound { .. })),
        "{:?}",
        results[4]
    );
    assert_eq!(
        f.event_taken(e.id).await,
        5,
        "the sold unit and the kept hold's 4 stay taken; the rest came back once"
    );
    let kept_now = f
        .ems
        .store()
        .hold(kept.id)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(
        kept_now.status,
        HoldStatus::Active,
        "a bystander is untouched"
    );
    let log = f.ems.store().read_events(None, 1_000).await.expect("log");
    let released = log
        .iter()
        .filter(
            |r| matches!(r.event, DomainEvent::HoldReleased { hold_id, .. } if hold_id == open.id),
        )
        .count();
    assert_eq!(released, 1, "one HoldReleased for the released hold");
}

/// A batch of holds grants, in arrival order, every request that fits and
/// refuses the rest exactly as each would be refused alone; a request's own
/// rules apply to it alone, and marginal price positions stay exact.
pub async fn hold_batch_grants_what_fits_in_arrival_order(stores: TestStores) {
    use crate::inventory::InventoryStore;
    let f = Fixture::new(stores).await;
    let store = f.ems.store();
    let (event, tiers) = f.published_event(5, &[("GA", "10", 5)]).await;
    let now = f.clock_now();
    let request = |quantity| hold_request(event.id, tiers[0].id, quantity, now, 10);
    let zero = request(0);
    let batch = [request(3), request(3), zero, request(2), request(1)];
    let results = store.try_hold_batch(&batch).await;
    assert_eq!(results.len(), 5);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(
        matches!(
            results[1],
            Err(Error::SoldOut {
                available: 2,
                requested: 3,
                ..
            })
        ),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(Error::InvalidInput { .. })),
        "a request's own rules apply to it alone: {:?}",
        results[2]
    );
    assert!(results[3].is_ok(), "a later request that fits is granted");
    assert!(matches!(
        results[4],
        Err(Error::SoldOut { available: 0, .. })
    ));
    assert_eq!(f.available(event.id, tiers[0].id).await, 0);
    assert_eq!(f.event_taken(event.id).await, 5);
    // Each granted hold is stored as returned.
    for r in results.iter().flatten() {
        let stored = store.hold(r.id).await.expect("readable").expect("stored");
        assert_eq!(&stored, r);
    }
    // Marginal positions stay exact: the second grant starts where the first ended.
    let first = results[0].as_ref().expect("granted");
    let second = results[3].as_ref().expect("granted");
    assert_eq!(first.quote.lines[0].first_position, 0);
    assert_eq!(second.quote.lines[0].first_position, 3);
}

/// Single holds see every change made to the event and its tiers before
/// them, through either store handle: a new price and per-order limit, a new
/// tier, the event cancelled; and their positions stay exact (a store that
/// prices holds from a copy of the event must check the copy is current).
pub async fn holds_see_changes_to_the_event_and_its_tiers(stores: TestStores) {
    use crate::event::EventStore;
    use crate::inventory::InventoryStore;
    let f = Fixture::new(stores).await;
    let (a, b) = (f.ems.store(), f.ems_b.store());
    let (event, tiers) = f.published_event(100, &[("GA", "20", 50)]).await;
    let now = f.clock_now();
    let ga = |quantity| hold_request(event.id, tiers[0].id, quantity, now, 10);
    let priced = |h: &crate::inventory::Hold| {
        (
            h.lines[0].unit_price,
            h.quote.lines[0].first_position,
            h.total,
        )
    };

    let first = a.try_hold(&ga(2)).await.expect("granted");
    assert_eq!(priced(&first), (eur("20"), 0, eur("40")));

    let mut dearer = tiers[0].clone();
    dearer.price = eur("30");
    dearer.max_per_order = 3;
    dearer.version += 1;
    b.update_tier(&dearer).await.expect("tier updated");
    for position in [2, 4] {
        let h = a.try_hold(&ga(2)).await.expect("granted");
        assert_eq!(
            priced(&h),
            (eur("30"), position, eur("60")),
            "the new price"
        );
        let stored = a.hold(h.id).await.expect("readable").expect("stored");
        assert_eq!(stored, h, "stored as returned");
    }
    let too_many = a.try_hold(&ga(4)).await;
    assert!(
        matches!(too_many, Err(Error::InvalidInput { .. })),
        "the new per-order limit: {too_many:?}"
    );

    let mut balcony = tiers[0].clone();
    balcony.id = TierId::new();
    balcony.name = "Balcony".into();
    balcony.price = eur("15");
    balcony.capacity = 10;
    balcony.version = 1;
    b.insert_tier(&balcony).await.expect("tier added");
    let h = a
        .try_hold(&hold_request(event.id, balcony.id, 3, now, 10))
        .await
        .expect("a hold of the new tier");
    assert_eq!(priced(&h), (eur("15"), 0, eur("45")));
    assert_eq!(f.event_taken(event.id).await, 9);

    let current = b.event(event.id).await.expect("readable").expect("exists");
    b.cancel_event(event.id, current.version, now)
        .await
        .expect("cancelled");
    let refused = a.try_hold(&ga(1)).await;
    assert!(
        matches!(refused, Err(Error::InvalidState { .. })),
        "a cancelled event sells nothing: {refused:?}"
    );
    assert_eq!(f.event_taken(event.id).await, 0, "its holds were released");
}

/// Consecutive hold batches see every change made between them, through
/// either store handle: holds and releases by the other handle, holds that
/// lapsed in between, and refusals are decided against the event as it is
/// (a store that remembers an event between batches must check it is unchanged).
pub async fn hold_batches_see_changes_made_between_them(stores: TestStores) {
    use crate::inventory::{Hold, InventoryStore};
    let f = Fixture::new(stores).await;
    let (a, b) = (f.ems.store(), f.ems_b.store());
    let (event, tiers) = f.published_event(6, &[("GA", "10", 6)]).await;
    let now = f.clock_now();
    let request = |quantity, at, ttl| hold_request(event.id, tiers[0].id, quantity, at, ttl);
    let granted = |r: &crate::Result<Hold>| r.as_ref().expect("granted").clone();
    let sold_out = |r: &crate::Result<Hold>, left: u32| {
        assert!(
            matches!(r, Err(Error::SoldOut { available, .. }) if *available == left),
            "expected sold out with {left} left: {r:?}"
        )
    };
    let position = |h: &Hold| h.quote.lines[0].first_position;

    // Two holds that lapse in a minute, then one that does not; the event is full.
    let first = a
        .try_hold_batch(&[request(2, now, 1), request(2, now, 1)])
        .await;
    let (lapsing, lapsing_2) = (granted(&first[0]), granted(&first[1]));
    assert_eq!((position(&lapsing), position(&lapsing_2)), (0, 2));
    let second = a
        .try_hold_batch(&[request(2, now, 10), request(1, now, 10)])
        .await;
    assert_eq!(position(&granted(&second[0])), 4);
    sold_out(&second[1], 0);

    // A release through the other handle frees its units for this one.
    b.release_hold(lapsing.id, now).await.expect("released");
    let third = a
        .try_hold_batch(&[request(2, now, 10), request(1, now, 10)])
        .await;
    let third_hold = granted(&third[0]);
    sold_out(&third[1], 0);
    assert_eq!(f.event_taken(event.id).await, 6);

    // Refusals too are decided against the event as it is.
    let refused = a
        .try_hold_batch(&[request(1, now, 10), request(1, now, 10)])
        .await;
    sold_out(&refused[0], 0);
    sold_out(&refused[1], 0);
    b.release_hold(third_hold.id, now).await.expect("released");
    let fourth = a
        .try_hold_batch(&[request(1, now, 10), request(1, now, 10)])
        .await;
    let fourth: Vec<Hold> = fourth.iter().map(granted).collect();
    assert_eq!((position(&fourth[0]), position(&fourth[1])), (4, 5));

    // A hold that lapsed since the last batch is expired before the next one.
    let later = now + Duration::minutes(2);
    let fifth = a
        .try_hold_batch(&[request(2, later, 10), request(2, later, 10)])
        .await;
    assert_eq!(position(&granted(&fifth[0])), 4);
    sold_out(&fifth[1], 0);
    let lapsed = a.hold(lapsing_2.id).await.expect("readable").expect("kept");
    assert_eq!(lapsed.status, HoldStatus::Expired);

    // The other handle sees the same full event.
    let other = b
        .try_hold_batch(&[request(1, later, 10), request(1, later, 10)])
        .await;
    sold_out(&other[0], 0);
    sold_out(&other[1], 0);
    assert_eq!(f.event_taken(event.id).await, 6);
    assert_eq!(f.available(event.id, tiers[0].id).await, 0);
}

/// A retry of a purchase that bought the last units returns its booking, not
/// "sold out", and takes nothing more.
pub async fn retry_after_selling_out_returns_the_booking(stores: TestStores) {
    let f = Fixture::new(stores).await;
    let (e, tiers) = f.published_event(2, &[("GA", "10", 2)]).await;
    let buyer = f.customer();
    let first = f
        .ems
        .checkout(&buyer, f.order(e.id, tiers[0].id, 2, "last-two"))
        .await
        .expect("first");
    assert_eq!(first.booking.status, BookingStatus::Confirmed);
    assert_eq!(f.available(e.id, tiers[0].id).await, 0, "sold out");
    let retry = f
        .ems_b
        .checkout(&buyer, f.order(e.id, tiers[0].id, 2, "last-two"))
        .await
        .expect("the retry finds its booking");
    assert_eq!(retry.booking.id, first.booking.id);
    assert_eq!(retry.tickets.len(), 2);
    assert_eq!(f.gateway.calls().0, 1, "charged once");
    assert_eq!(f.event_taken(e.id).await, 2, "nothing more is taken");
}
