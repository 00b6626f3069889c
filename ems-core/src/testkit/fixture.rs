use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::TestStores;
use crate::booking::{Checkout, CheckoutRequest, RefundPolicy};
use crate::clock::ManualClock;
use crate::directory::Organization;
use crate::event::{Event, NewEvent};
use crate::id::{EventId, TierId, UserId};
use crate::inventory::{EventAvailability, HoldItem, NewTier, QuotaKey, TicketTier};
use crate::money::Money;
use crate::payment::FakeGateway;
use crate::{Actor, Ems};

/// A ready world for scenarios: two `Ems` over the two store handles, sharing one
/// manual clock, one fake gateway (named `fake`) and one ticket key.
pub struct Fixture {
    /// Over handle `a`.
    pub ems: Ems,
    /// Over handle `b`.
    pub ems_b: Ems,
    /// The shared clock, starting at 2030-01-01T10:00:00Z.
    pub clock: ManualClock,
    /// The shared gateway.
    pub gateway: FakeGateway,
    /// An organization.
    pub org: Organization,
    /// An organizer of `org`.
    pub organizer: Actor,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("org", &self.org.id)
            .finish_non_exhaustive()
    }
}

/// The fixed start of every fixture's clock.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 10, 0, 0)
        .single()
        .expect("a valid instant")
}

impl Fixture {
    /// Builds the world over `stores`.
    pub async fn new(stores: TestStores) -> Self {
        let clock = ManualClock::new(epoch());
        let gateway = FakeGateway::new("whsec_conformance");
        let key = [42u8; 32];
        let build = |store| {
            Ems::builder(store)
                .hold_batching(stores.batching)
                .clock(Arc::new(clock.clone()))
                .gateway("fake", Arc::new(gateway.clone()))
                .ticket_key(&key)
                .build()
                .expect("valid test configuration")
        };
        let ems = build(stores.a);
        let ems_b = build(stores.b);
        let org = ems
            .create_organization(&Actor::System, "Conformance Hall")
            .await
            .expect("organization created");
        let organizer = Actor::Organizer {
            user: UserId::new(),
            organization: org.id,
        };
        Self {
            ems,
            ems_b,
            clock,
            gateway,
            org,
            organizer,
        }
    }

    /// A fresh customer.
    pub fn customer(&self) -> Actor {
        Actor::Customer {
            user: UserId::new(),
        }
    }

    /// A draft event starting 30 days from the clock, capacity `capacity`, in EUR.
    pub async fn draft_event(&self, capacity: u32) -> Event {
        let starts = self.clock_now() + Duration::days(30);
        let new = NewEvent::builder(
            self.org.id,
            "Conformance Night",
            starts,
            starts + Duration::hours(3),
        )
        .capacity(capacity)
        .venue("Main Hall", "Lisbon")
        .refund_policy(RefundPolicy::default())
        .build();
        self.ems
            .create_event(&self.organizer, new)
            .await
            .expect("event created")
    }

    /// A published event of `capacity` with one tier per `(name, price in EUR, capacity)`.
    pub async fn published_event(
        &self,
        capacity: u32,
        tiers: &[(&str, &str, u32)],
    ) -> (Event, Vec<TicketTier>) {
        let event = self.draft_event(capacity).await;
        let mut out = Vec::new();
        for (name, price, cap) in tiers {
            let t = NewTier::new(*name, eur(price), *cap).per_order(1, 10);
            out.push(
                self.ems
                    .add_tier(&self.organizer, event.id, t)
                    .await
                    .expect("tier added"),
            );
        }
        let event = self
            .ems
            .publish_event(&self.organizer, event.id, event.version)
            .await
            .expect("published");
        (event, out)
    }

    /// The clock's now.
    pub fn clock_now(&self) -> DateTime<Utc> {
        crate::clock::Clock::now(&self.clock)
    }

    /// A checkout request for `quantity` of `tier`.
    pub fn order(&self, event: EventId, tier: TierId, quantity: u32, key: &str) -> CheckoutRequest {
        CheckoutRequest {
            event_id: event,
            items: vec![HoldItem {
                tier_id: tier,
                quantity,
            }],
            idempotency_key: key.to_owned(),
            gateway: None,
            on_behalf_of: None,
            coupon: None,
        }
    }

    /// Checks out `quantity` of `tier` for `actor`.
    pub async fn buy(
        &self,
        actor: &Actor,
        event: EventId,
        tier: TierId,
        quantity: u32,
    ) -> Checkout {
        let key = format!("order-{}", uuid::Uuid::now_v7());
        self.ems
            .checkout(actor, self.order(event, tier, quantity, &key))
            .await
            .expect("checkout accepted")
    }

    /// Availability as the organizer sees it.
    pub async fn availability(&self, event: EventId) -> EventAvailability {
        self.ems
            .availability(&self.organizer, event)
            .await
            .expect("availability readable")
    }

    /// Units available on a tier now.
    pub async fn available(&self, event: EventId, tier: TierId) -> u32 {
        self.availability(event)
            .await
            .tier(tier)
            .expect("tier listed")
            .available
    }

    /// Units taken on the event-wide quota now.
    pub async fn event_taken(&self, event: EventId) -> u32 {
        self.availability(event)
            .await
            .quotas
            .iter()
            .find(|q| q.quota == QuotaKey::Event)
            .expect("event quota")
            .taken
    }
}

/// Parses an EUR amount.
pub fn eur(amount: &str) -> Money {
    Money::parse(amount, "EUR").expect("a valid amount")
}
