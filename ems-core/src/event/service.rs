use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::*;
use crate::booking::BookingReason;
use crate::page::{Page, PageRequest};
use crate::pricing::{Fees, Tax};
use crate::{Actor, Ems, Error, Result};

/// Largest capacity a single event or quota may have.
pub const MAX_CAPACITY: u32 = 100_000_000;

/// Builder for [`NewEvent`] with sensible defaults (category `general`, UTC, full
/// refund until the start).
#[derive(Debug, Clone)]
pub struct NewEventBuilder {
    inner: NewEvent,
}

impl NewEvent {
    /// Starts a new event for `organization`.
    pub fn builder(
        organization: crate::id::OrganizationId,
        title: impl Into<String>,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    ) -> NewEventBuilder {
        NewEventBuilder {
            inner: NewEvent {
                organization,
                title: title.into(),
                description: String::new(),
                category: "general".into(),
                venue: VenueInfo {
                    name: "To be announced".into(),
                    city: String::new(),
                    address: None,
                },
                time_zone: Tz::UTC,
                starts_at,
                ends_at,
                capacity: 0,
                currency: crate::money::Currency::EUR,
                refund_policy: RefundPolicy::default(),
                fees: Fees::default(),
                tax: None,
            },
        }
    }
}

impl NewEventBuilder {
    /// Description text.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.inner.description = d.into();
        self
    }
    /// Category.
    pub fn category(mut self, c: impl Into<String>) -> Self {
        self.inner.category = c.into();
        self
    }
    /// Venue.
    pub fn venue(mut self, name: impl Into<String>, city: impl Into<String>) -> Self {
        self.inner.venue = VenueInfo {
            name: name.into(),
            city: city.into(),
            address: None,
        };
        self
    }
    /// Venue time zone.
    pub fn time_zone(mut self, tz: Tz) -> Self {
        self.inner.time_zone = tz;
        self
    }
    /// Total capacity.
    pub fn capacity(mut self, c: u32) -> Self {
        self.inner.capacity = c;
        self
    }
    /// Pricing currency.
    pub fn currency(mut self, c: crate::money::Currency) -> Self {
        self.inner.currency = c;
        self
    }
    /// Refund policy.
    pub fn refund_policy(mut self, p: RefundPolicy) -> Self {
        self.inner.refund_policy = p;
        self
    }
    /// Service fees.
    pub fn fees(mut self, fees: Fees) -> Self {
        self.inner.fees = fees;
        self
    }
    /// Tax on tickets and fees.
    pub fn tax(mut self, tax: Tax) -> Self {
        self.inner.tax = Some(tax);
        self
    }
    /// The finished input (validated by `create_event`).
    pub fn build(self) -> NewEvent {
        self.inner
    }
}

pub(crate) fn validate_text(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<String> {
    let v = value.trim();
    if required && v.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    Ok(v.to_owned())
}

pub(crate) fn validate_capacity(field: &'static str, capacity: u32) -> Result<u32> {
    if capacity == 0 {
        return Err(Error::invalid(field, "must be greater than zero"));
    }
    if capacity > MAX_CAPACITY {
        return Err(Error::invalid(field, format!("at most {MAX_CAPACITY}")));
    }
    Ok(capacity)
}

fn validate_venue(v: &VenueInfo) -> Result<VenueInfo> {
    Ok(VenueInfo {
        name: validate_text("venue.name", &v.name, 200, true)?,
        city: validate_text("venue.city", &v.city, 100, false)?,
        address: v
            .address
            .as_deref()
            .map(|a| validate_text("venue.address", a, 500, false))
            .transpose()?,
    })
}

impl Ems {
    /// Creates an event as a draft. The organization's organizers and admins only.
    pub async fn create_event(&self, actor: &Actor, new: NewEvent) -> Result<Event> {
        actor.require_manages(new.organization, "create event")?;
        let now = self.now();
        if new.ends_at <= new.starts_at {
            return Err(Error::invalid("ends_at", "must be after starts_at"));
        }
        if new.starts_at <= now {
            return Err(Error::invalid("starts_at", "must be in the future"));
        }
        new.refund_policy.validate()?;
        new.fees.validate(new.currency)?;
        if let Some(t) = &new.tax {
            t.validate()?;
        }
        self.organization(new.organization).await?;
        let event = Event {
            id: crate::id::EventId::new(),
            organization: new.organization,
            title: validate_text("title", &new.title, 200, true)?,
            description: validate_text("description", &new.description, 10_000, false)?,
            category: validate_text("category", &new.category, 100, false)?,
            venue: validate_venue(&new.venue)?,
            time_zone: new.time_zone,
            starts_at: new.starts_at,
            ends_at: new.ends_at,
            capacity: validate_capacity("capacity", new.capacity)?,
            currency: new.currency,
            refund_policy: new.refund_policy,
            fees: new.fees,
            tax: new.tax,
            status: EventStatus::Draft,
            rescheduled_from: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.port().insert_event(&event).await?;
        Ok(event)
    }

    /// Reads an event. Drafts are visible only to their organizers and admins.
    pub async fn event(&self, actor: &Actor, id: crate::id::EventId) -> Result<Event> {
        let event = self
            .port()
            .event(id)
            .await?
            .ok_or_else(|| Error::not_found("event", id))?;
        if event.status == EventStatus::Draft && !actor.manages(event.organization) {
            return Err(Error::not_found("event", id));
        }
        Ok(event)
    }

    async fn managed_event(
        &self,
        actor: &Actor,
        id: crate::id::EventId,
        action: &'static str,
    ) -> Result<Event> {
        let event = self
            .port()
            .event(id)
            .await?
            .ok_or_else(|| Error::not_found("event", id))?;
        actor.require_manages(event.organization, action)?;
        Ok(event)
    }

    fn check_version(event: &Event, expected: u64) -> Result<()> {
        if event.version != expected {
            return Err(Error::Conflict {
                entity: "event",
                id: event.id.to_string(),
                expected,
                found: event.version,
            });
        }
        Ok(())
    }

    async fn save_event(
        &self,
        mut event: Event,
        change: crate::outbox::DomainEvent,
    ) -> Result<Event> {
        event.version += 1;
        event.updated_at = self.now();
        self.port().update_event(&event, change).await?;
        Ok(event)
    }

    /// Edits an event's details. `expected_version` is the version the caller read.
    pub async fn update_event(
        &self,
        actor: &Actor,
        id: crate::id::EventId,
        expected_version: u64,
        patch: EventPatch,
    ) -> Result<Event> {
        let mut event = self.managed_event(actor, id, "update event").await?;
        Self::check_version(&event, expected_version)?;
        if event.status.is_final() {
            return Err(Error::invalid_state("event", id, event.status, "update"));
        }
        if let Some(t) = &patch.title {
            event.title = validate_text("title", t, 200, true)?;
        }
        if let Some(d) = &patch.description {
            event.description = validate_text("description", d, 10_000, false)?;
        }
        if let Some(c) = &patch.category {
            event.category = validate_text("category", c, 100, false)?;
        }
        if let Some(v) = &patch.venue {
            event.venue = validate_venue(v)?;
        }
        if let Some(c) = patch.capacity {
            event.capacity = validate_capacity("capacity", c)?;
        }
        if let Some(p) = patch.refund_policy {
            p.validate()?;
            event.refund_policy = p;
        }
        if let Some(f) = patch.fees {
            f.validate(event.currency)?;
            event.fees = f;
        }
        if let Some(t) = patch.tax {
            if let Some(tax) = &t {
                tax.validate()?;
            }
            event.tax = t;
        }
        let change = crate::outbox::DomainEvent::EventUpdated {
            event_id: id,
            version: event.version + 1,
        };
        self.save_event(event, change).await
    }

    /// Puts a draft on sale.
    pub async fn publish_event(
        &self,
        actor: &Actor,
        id: crate::id::EventId,
        expected_version: u64,
    ) -> Result<Event> {
        let mut event = self.managed_event(actor, id, "publish event").await?;
        Self::check_version(&event, expected_version)?;
        if event.status != EventStatus::Draft {
            return Err(Error::invalid_state("event", id, event.status, "publish"));
        }
        if event.starts_at <= self.now() {
            return Err(Error::invalid(
                "starts_at",
                "an event that already started cannot be published",
            ));
        }
        event.status = EventStatus::Published;
        self.save_event(
            event,
            crate::outbox::DomainEvent::EventPublished { event_id: id },
        )
        .await
    }

    /// Moves a published event to new times. Bookings stay valid; an
    /// `EventRescheduled` domain event tells integrators to notify holders.
    pub async fn reschedule_event(
        &self,
        actor: &Actor,
        id: crate::id::EventId,
        expected_version: u64,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    ) -> Result<Event> {
        let mut event = self.managed_event(actor, id, "reschedule event").await?;
        Self::check_version(&event, expected_version)?;
        if !event.status.is_on_sale() {
            return Err(Error::invalid_state(
                "event",
                id,
                event.status,
                "reschedule",
            ));
        }
        if ends_at <= starts_at {
            return Err(Error::invalid("ends_at", "must be after starts_at"));
        }
        if starts_at <= self.now() {
            return Err(Error::invalid("starts_at", "must be in the future"));
        }
        let previous = event.starts_at;
        event.rescheduled_from = Some(previous);
        event.starts_at = starts_at;
        event.ends_at = ends_at;
        event.status = EventStatus::Rescheduled;
        let change = crate::outbox::DomainEvent::EventRescheduled {
            event_id: id,
            previous_starts_at: previous,
            starts_at,
            ends_at,
        };
        self.save_event(event, change).await
    }

    /// Marks an event that has started as completed; sales stop, check-in goes on.
    pub async fn complete_event(
        &self,
        actor: &Actor,
        id: crate::id::EventId,
        expected_version: u64,
    ) -> Result<Event> {
        let mut event = self.managed_event(actor, id, "complete event").await?;
        Self::check_version(&event, expected_version)?;
        if !event.status.is_on_sale() {
            return Err(Error::invalid_state("event", id, event.status, "complete"));
        }
        if self.now() < event.starts_at {
            return Err(Error::invalid_state("event", id, "not started", "complete"));
        }
        event.status = EventStatus::Completed;
        self.save_event(
            event,
            crate::outbox::DomainEvent::EventCompleted { event_id: id },
        )
        .await
    }

    /// Cancels an event: open holds are released, pending bookings fail, its
    /// facility bookings are released, and every
    /// confirmed booking is cancelled and refunded in full through its gateway.
    /// Refunds the gateway refuses are recorded as failed and can be retried with
    /// [`Ems::retry_refund`].
    pub async fn cancel_event(
        &self,
        actor: &Actor,
        id: crate::id::EventId,
        expected_version: u64,
    ) -> Result<EventCancellation> {
        let event = self.managed_event(actor, id, "cancel event").await?;
        Self::check_version(&event, expected_version)?;
        if event.status.is_final() {
            return Err(Error::invalid_state("event", id, event.status, "cancel"));
        }
        let cancellation = self
            .port()
            .cancel_event(id, expected_version, self.now())
            .await?;
        // Its facilities next; if this step fails, `release_event_facilities` retries it.
        self.release_event_facilities(actor, id).await?;
        for booking in &cancellation.confirmed_bookings {
            self.cancel_confirmed_booking(
                *booking,
                BookingReason::EventCancelled,
                Some(rust_decimal::Decimal::ONE_HUNDRED),
            )
            .await?;
        }
        Ok(cancellation)
    }

    /// Lists events visible to `actor`, ordered by start time.
    pub async fn list_events(
        &self,
        actor: &Actor,
        filter: EventFilter,
        page: PageRequest,
    ) -> Result<Page<Event>> {
        let (limit, after) = page.keyset::<(DateTime<Utc>, crate::id::EventId)>()?;
        let drafts = match *actor {
            Actor::Admin { .. } | Actor::System => DraftVisibility::All,
            Actor::Organizer { organization, .. } => DraftVisibility::Organization(organization),
            _ => DraftVisibility::None,
        };
        if let (Some(a), Some(b)) = (filter.starts_from, filter.starts_before) {
            if b <= a {
                return Err(Error::invalid("starts_before", "must be after starts_from"));
            }
        }
        let query = EventQuery {
            filter,
            drafts,
            after,
            limit: limit + 1,
        };
        let rows = self.port().list_events(&query).await?;
        Ok(Page::from_overfetch(rows, limit, |e: &Event| {
            (e.starts_at, e.id)
        }))
    }
}
