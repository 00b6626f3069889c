use chrono::Duration;

use super::*;
use crate::event::service_helpers::{validate_capacity, validate_text};
use crate::id::Minter;
use crate::{Actor, Ems, Error, Result};

/// Options of [`Ems::place_hold`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HoldOptions {
    /// Buy for this customer (admins and the system only).
    pub on_behalf_of: Option<UserId>,
    /// Hold duration; `None` uses the configured default.
    pub ttl: Option<Duration>,
    /// A promo code whose use the hold consumes (given back if the hold ends unpaid).
    pub coupon: Option<String>,
}

/// Largest quantity one order line may ask for, whatever a tier allows.
pub const MAX_PER_ORDER: u32 = 1_000;

fn validate_tier(event: &crate::event::Event, new: &NewTier) -> Result<()> {
    validate_text("name", &new.name, 100, true)?;
    if new.price.currency() != event.currency {
        return Err(Error::invalid(
            "price.currency",
            format!(
                "event {} is priced in {}, not {}",
                event.id,
                event.currency,
                new.price.currency()
            ),
        ));
    }
    if new.price.is_negative() {
        return Err(Error::invalid("price", "must not be negative"));
    }
    if !new.price.is_minor_exact() {
        return Err(Error::invalid(
            "price",
            format!(
                "{} has more decimals than {} allows",
                new.price, event.currency
            ),
        ));
    }
    validate_capacity("capacity", new.capacity)?;
    new.pricing.validate(new.price)?;
    if new.min_per_order == 0 {
        return Err(Error::invalid("min_per_order", "must be at least 1"));
    }
    if new.max_per_order < new.min_per_order {
        return Err(Error::invalid(
            "max_per_order",
            "must not be below min_per_order",
        ));
    }
    if new.max_per_order > MAX_PER_ORDER {
        return Err(Error::invalid(
            "max_per_order",
            format!("at most {MAX_PER_ORDER}"),
        ));
    }
    if let (Some(s), Some(e)) = (new.sales_start, new.sales_end) {
        if e <= s {
            return Err(Error::invalid("sales_end", "must be after sales_start"));
        }
    }
    Ok(())
}

impl Ems {
    async fn event_for_inventory(
        &self,
        actor: &Actor,
        event_id: EventId,
        action: &'static str,
    ) -> Result<crate::event::Event> {
        let event = self
            .port()
            .event(event_id)
            .await?
            .ok_or_else(|| Error::not_found("event", event_id))?;
        actor.require_manages(event.organization, action)?;
        if event.status.is_final() {
            return Err(Error::invalid_state(
                "event",
                event_id,
                event.status,
                action,
            ));
        }
        Ok(event)
    }

    /// Adds a ticket tier to an event that is not cancelled or completed.
    pub async fn add_tier(
        &self,
        actor: &Actor,
        event_id: EventId,
        new: NewTier,
    ) -> Result<TicketTier> {
        let event = self
            .event_for_inventory(actor, event_id, "add tier")
            .await?;
        validate_tier(&event, &new)?;
        let tier = TicketTier {
            id: TierId::new(),
            event_id,
            name: new.name.trim().to_owned(),
            price: new.price,
            capacity: new.capacity,
            min_per_order: new.min_per_order,
            max_per_order: new.max_per_order,
            sales_start: new.sales_start,
            sales_end: new.sales_end,
            shared_quotas: new.shared_quotas,
            pricing: new.pricing,
            version: 1,
        };
        self.port().insert_tier(&tier).await?;
        Ok(tier)
    }

    /// Changes a tier (price changes apply to later holds; held prices stay locked).
    pub async fn update_tier(
        &self,
        actor: &Actor,
        event_id: EventId,
        tier_id: TierId,
        expected_version: u64,
        new: NewTier,
    ) -> Result<TicketTier> {
        let event = self
            .event_for_inventory(actor, event_id, "update tier")
            .await?;
        validate_tier(&event, &new)?;
        let current = self
            .port()
            .tiers(event_id)
            .await?
            .into_iter()
            .find(|t| t.id == tier_id)
            .ok_or_else(|| Error::not_found("tier", tier_id))?;
        if current.version != expected_version {
            return Err(Error::Conflict {
                entity: "tier",
                id: tier_id.to_string(),
                expected: expected_version,
                found: current.version,
            });
        }
        let tier = TicketTier {
            name: new.name.trim().to_owned(),
            price: new.price,
            capacity: new.capacity,
            min_per_order: new.min_per_order,
            max_per_order: new.max_per_order,
            sales_start: new.sales_start,
            sales_end: new.sales_end,
            shared_quotas: new.shared_quotas,
            pricing: new.pricing,
            version: current.version + 1,
            ..current
        };
        self.port().update_tier(&tier).await?;
        Ok(tier)
    }

    /// Adds a quota several tiers can share.
    pub async fn add_shared_quota(
        &self,
        actor: &Actor,
        event_id: EventId,
        name: &str,
        capacity: u32,
    ) -> Result<SharedQuota> {
        self.event_for_inventory(actor, event_id, "add quota")
            .await?;
        let quota = SharedQuota {
            id: QuotaId::new(),
            event_id,
            name: validate_text("name", name, 100, true)?,
            capacity: validate_capacity("capacity", capacity)?,
        };
        self.port().insert_shared_quota(&quota).await?;
        Ok(quota)
    }

    /// An event's tiers (visible wherever the event is).
    pub async fn tiers(&self, actor: &Actor, event_id: EventId) -> Result<Vec<TicketTier>> {
        self.event(actor, event_id).await?;
        self.port().tiers(event_id).await
    }

    /// What can be bought now, per tier and quota.
    pub async fn availability(
        &self,
        actor: &Actor,
        event_id: EventId,
    ) -> Result<EventAvailability> {
        self.event(actor, event_id).await?;
        self.port().availability(event_id, self.now()).await
    }

    /// What `items` would cost if held now: the same rules and positions a hold
    /// would get at this moment, without taking anything. Concurrent buyers can
    /// move the positions before a hold is placed; a hold's own quote is binding.
    /// A coupon's window, scope and minimum quantity are applied here; its use
    /// limits are checked only by the hold, which consumes a use atomically.
    pub async fn quote(
        &self,
        actor: &Actor,
        event_id: EventId,
        items: &[HoldItem],
        coupon: Option<&str>,
    ) -> Result<crate::pricing::Quote> {
        let event = self.event(actor, event_id).await?;
        let tiers = self.port().tiers(event_id).await?;
        let now = self.now();
        let availability = self.port().availability(event_id, now).await?;
        let taken = |k: QuotaKey| {
            availability
                .quotas
                .iter()
                .find(|q| q.quota == k)
                .map_or(0, |q| q.taken)
        };
        let recent = |t: TierId| availability.tier(t).map_or([0; 4], |a| a.recent);
        let request = HoldRequest {
            id: HoldId::new(),
            event_id,
            customer: actor.user().unwrap_or_default(),
            items: items.to_vec(),
            now,
            expires_at: now + self.config().hold_ttl,
            coupon: coupon.map(str::to_owned),
        };
        let coupon = match coupon {
            Some(code) => Some(
                self.port()
                    .coupon_by_code(event.organization, code)
                    .await?
                    .ok_or_else(|| {
                        Error::invalid(
                            "coupon",
                            format!("{code:?} is not a code of this organizer"),
                        )
                    })?,
            ),
            None => None,
        };
        Ok(plan_hold(&event, &tiers, &request, &taken, &recent, coupon.as_ref())?.quote)
    }

    /// Reserves units for a customer until the hold's TTL runs out. All items or none.
    pub async fn place_hold(
        &self,
        actor: &Actor,
        event_id: EventId,
        items: &[HoldItem],
        options: HoldOptions,
    ) -> Result<Hold> {
        let request = self.hold_request(actor, event_id, items, options, &mut Minter::start())?;
        match self.reserve(request).await {
            Err(e) => Err(self.explain_hold_refusal(actor, event_id, e).await),
            placed => placed,
        }
    }

    /// The store's request for [`Ems::place_hold`]'s arguments, checked.
    pub(crate) fn hold_request(
        &self,
        actor: &Actor,
        event_id: EventId,
        items: &[HoldItem],
        options: HoldOptions,
        ids: &mut Minter,
    ) -> Result<HoldRequest> {
        let customer = actor.purchaser(options.on_behalf_of, "hold tickets")?;
        let ttl = options.ttl.unwrap_or(self.config().hold_ttl);
        if ttl <= Duration::zero() || ttl > Duration::days(1) {
            return Err(Error::invalid("ttl", "must be between 1 second and 1 day"));
        }
        if let Some(bad) = items
            .iter()
            .find(|i| i.quantity == 0 || i.quantity > MAX_PER_ORDER)
        {
            return Err(Error::invalid(
                "items.quantity",
                format!("{} is outside 1..={MAX_PER_ORDER}", bad.quantity),
            ));
        }
        let now = self.now();
        Ok(HoldRequest {
            id: HoldId(ids.mint()),
            event_id,
            customer,
            items: items.to_vec(),
            now,
            expires_at: now + ttl,
            coupon: options.coupon.map(|c| c.trim().to_owned()),
        })
    }

    /// The error `actor` gets for a hold on `event_id` that the store refused
    /// with `e`.
    pub(crate) async fn explain_hold_refusal(
        &self,
        actor: &Actor,
        event_id: EventId,
        e: Error,
    ) -> Error {
        match e {
            // A draft is invisible to whoever does not manage it: say so, without
            // reading the event on the hot path.
            Error::InvalidState {
                entity: "event",
                ref state,
                ..
            } if state == "Draft" => {
                let event = match self.port().event(event_id).await {
                    Ok(Some(event)) => event,
                    Ok(None) => return Error::not_found("event", event_id),
                    Err(e) => return e,
                };
                if actor.manages(event.organization) {
                    Error::invalid_state("event", event_id, event.status, "hold tickets of")
                } else {
                    Error::not_found("event", event_id)
                }
            }
            other => other,
        }
    }

    /// Reads a hold: its customer, the event's organizers, admins.
    pub async fn hold(&self, actor: &Actor, id: HoldId) -> Result<Hold> {
        let hold = self.port().hold(id).await?;
        let owner = hold.as_ref().map(HoldOwner::of);
        visible(actor, id, owner, "read hold")?;
        hold.ok_or_else(|| Error::not_found("hold", id))
    }

    /// Gives a hold up before it expires, returning its units.
    pub async fn release_hold(&self, actor: &Actor, id: HoldId) -> Result<Hold> {
        // A customer releasing their own hold, with no queue to join: the
        // store checks whose it is in the same step.
        if let (Actor::Customer { user }, false) = (actor, self.batches_holds()) {
            return self
                .port()
                .release_customer_hold(id, *user, self.now())
                .await;
        }
        let owner = self.port().hold_owner(id).await?;
        let owner = visible(actor, id, owner, "release hold")?;
        self.unreserve_hold(id, owner.event_id).await
    }

    /// Forgets released and expired holds without a booking that are older than
    /// `older_than` (up to `limit`), keeping storage bounded; run it periodically
    /// after [`Ems::sweep_expired`]. The system or admins.
    pub async fn purge_ended_holds(
        &self,
        actor: &Actor,
        older_than: Duration,
        limit: u32,
    ) -> Result<u32> {
        actor.require_privileged("purge holds")?;
        if older_than < Duration::zero() {
            return Err(Error::invalid("older_than", "must not be negative"));
        }
        self.port()
            .purge_ended_holds(self.now() - older_than, limit)
            .await
    }

    /// Expires lapsed holds (up to `limit`); run it periodically. The system or admins.
    pub async fn sweep_expired(&self, actor: &Actor, limit: u32) -> Result<u32> {
        actor.require_privileged("sweep expired holds")?;
        self.port().sweep_expired(self.now(), limit).await
    }
}

/// `owner`, the owner of hold `id` if there is one, when `actor` may `action`
/// the hold (its customer, the event's organizers, admins); `NotFound`
/// otherwise: who may not act on a hold learns nothing of it.
fn visible(
    actor: &Actor,
    id: HoldId,
    owner: Option<HoldOwner>,
    action: &'static str,
) -> Result<HoldOwner> {
    owner
        .filter(|o| {
            actor
                .require_owner_or_manager(o.customer, o.organization, action)
                .is_ok()
        })
        .ok_or_else(|| Error::not_found("hold", id))
}
