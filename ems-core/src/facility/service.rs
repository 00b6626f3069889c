use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::*;
use crate::event::service_helpers::validate_text;
use crate::id::{FacilityBookingId, PackageId, ResourceId};
use crate::{Actor, Ems, Error, Result};

/// Input of [`Ems::create_resource`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewResource {
    /// Owning organization.
    pub organization: OrganizationId,
    /// What it is.
    pub kind: ResourceKind,
    /// Display name.
    pub name: String,
    /// Exclusive or stocked.
    pub stock: Stock,
    /// Price (≥ 0, whole minor units).
    pub price: Money,
    /// What the price is per.
    pub price_unit: PriceUnit,
    /// Its time zone.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "Europe/Lisbon"))]
    pub time_zone: Tz,
    /// Its slots; empty means [`default_slots`].
    pub slots: Vec<SlotDef>,
    /// Venue details (required for venues).
    pub venue: Option<VenueDetails>,
}

fn validate_slots(slots: Vec<SlotDef>) -> Result<Vec<SlotDef>> {
    let slots = if slots.is_empty() {
        default_slots()
    } else {
        slots
    };
    for (i, s) in slots.iter().enumerate() {
        validate_text("slots.name", &s.name, 50, true)?;
        if s.end <= s.start {
            return Err(Error::invalid(
                "slots.end",
                format!("slot {:?} must end after it starts", s.name),
            ));
        }
        if slots[..i]
            .iter()
            .any(|o| o.name.eq_ignore_ascii_case(&s.name))
        {
            return Err(Error::invalid(
                "slots.name",
                format!("slot {:?} defined twice", s.name),
            ));
        }
    }
    Ok(slots)
}

impl Ems {
    /// Adds a resource to an organization. Its organizers and admins.
    pub async fn create_resource(&self, actor: &Actor, new: NewResource) -> Result<Resource> {
        actor.require_manages(new.organization, "create resource")?;
        self.organization(new.organization).await?;
        if new.price.is_negative() || !new.price.is_minor_exact() {
            return Err(Error::invalid(
                "price",
                format!(
                    "{} must be a non-negative amount of whole minor units",
                    new.price
                ),
            ));
        }
        if let Stock::Stocked(n) = new.stock {
            crate::event::service_helpers::validate_capacity("stock", n)?;
        }
        match (&new.kind, &new.venue) {
            (ResourceKind::Venue, None) => {
                return Err(Error::invalid("venue", "venues need their details"))
            }
            (ResourceKind::Venue, Some(v)) => {
                validate_text("venue.address", &v.address, 500, true)?;
                if !(-90.0..=90.0).contains(&v.latitude) || !(-180.0..=180.0).contains(&v.longitude)
                {
                    return Err(Error::invalid("venue.latitude", "coordinates out of range"));
                }
                crate::event::service_helpers::validate_capacity("venue.capacity", v.capacity)?;
            }
            (_, Some(_)) => return Err(Error::invalid("venue", "only venues have venue details")),
            _ => {}
        }
        if let ResourceKind::Custom(name) = &new.kind {
            validate_text("kind", name, 50, true)?;
        }
        let resource = Resource {
            id: ResourceId::new(),
            organization: new.organization,
            kind: new.kind,
            name: validate_text("name", &new.name, 200, true)?,
            stock: new.stock,
            price: new.price,
            price_unit: new.price_unit,
            time_zone: new.time_zone,
            slots: validate_slots(new.slots)?,
            venue: new.venue,
            created_at: self.now(),
        };
        self.port().insert_resource(&resource).await?;
        Ok(resource)
    }

    async fn resource_record(&self, id: ResourceId) -> Result<Resource> {
        self.port()
            .resource(id)
            .await?
            .ok_or_else(|| Error::not_found("resource", id))
    }

    /// Books resources for `organization` as one package: every booking or none.
    /// The organization's organizers and admins; `event`, if given, must be theirs.
    pub async fn book_facilities(
        &self,
        actor: &Actor,
        organization: OrganizationId,
        event: Option<crate::id::EventId>,
        requests: &[FacilityRequest],
    ) -> Result<Vec<FacilityBooking>> {
        actor.require_manages(organization, "book facilities")?;
        if requests.is_empty() {
            return Err(Error::invalid("requests", "at least one resource"));
        }
        if let Some(e) = event {
            let ev = self
                .port()
                .event(e)
                .await?
                .ok_or_else(|| Error::not_found("event", e))?;
            if ev.organization != organization {
                return Err(Error::invalid("event", "belongs to another organization"));
            }
        }
        let now = self.now();
        let package = PackageId::new();
        let mut bookings = Vec::with_capacity(requests.len());
        for r in requests {
            let resource = self.resource_record(r.resource).await?;
            if r.quantity == 0 {
                return Err(Error::invalid("quantity", "must be greater than zero"));
            }
            if r.quantity > resource.units() {
                return Err(Error::invalid(
                    "quantity",
                    format!("{} has {} units", resource.name, resource.units()),
                ));
            }
            let (start, end) = local_interval(&resource, &r.when)?;
            if start <= now {
                return Err(Error::invalid("when.start", "must be in the future"));
            }
            let price = match resource.price_unit {
                PriceUnit::PerBooking => resource.price,
                PriceUnit::PerUnit => resource.price.times(r.quantity)?,
            };
            bookings.push(FacilityBooking {
                id: FacilityBookingId::new(),
                package,
                resource: resource.id,
                organization,
                event,
                start,
                end,
                slot: match &r.when {
                    When::Slot { slot, .. } => resource.slot(slot).map(|s| s.name.clone()),
                    When::Range { .. } => None,
                },
                quantity: r.quantity,
                price,
                status: FacilityStatus::Active,
                created_at: now,
            });
        }
        self.port().book_facilities(&bookings).await?;
        Ok(bookings)
    }

    /// Cancels a package of facility bookings: its booking organization's
    /// organizers and admins. Idempotent.
    pub async fn cancel_facilities(
        &self,
        actor: &Actor,
        booking: FacilityBookingId,
    ) -> Result<Vec<FacilityBooking>> {
        let b = self
            .port()
            .facility_booking(booking)
            .await?
            .ok_or_else(|| Error::not_found("facility booking", booking))?;
        actor.require_manages(b.organization, "cancel facilities")?;
        self.port().cancel_package(b.package, self.now()).await
    }

    /// Whether `quantity` of `resource` is free for all of `[start, end)`.
    async fn fits(
        &self,
        resource: &Resource,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
        quantity: u32,
    ) -> Result<bool> {
        let booked = self
            .port()
            .facility_bookings(resource.id, start, end)
            .await?;
        Ok(peak_usage(&booked, start, end) + quantity <= resource.units())
    }

    /// What to offer when `resource` is taken at `when`: the same resource on the
    /// nearest dates (±[`ALTERNATIVE_SEARCH_DAYS`],
    /// at most `limit`, future only) and other resources of the same kind free at
    /// that time, closest in price first. Anyone may ask.
    pub async fn alternatives(
        &self,
        resource: ResourceId,
        when: &When,
        quantity: u32,
        limit: usize,
    ) -> Result<Alternatives> {
        let r = self.resource_record(resource).await?;
        let (start, end) = local_interval(&r, when)?;
        let now = self.now();
        let shifted = |days: i64| -> When {
            let d = chrono::Duration::days(days);
            match when {
                When::Slot { date, slot } => When::Slot {
                    date: *date + d,
                    slot: slot.clone(),
                },
                When::Range { start, end } => When::Range {
                    start: *start + d,
                    end: *end + d,
                },
            }
        };
        let mut same_resource = Vec::new();
        'search: for distance in 1..=super::ALTERNATIVE_SEARCH_DAYS {
            for days in [-distance, distance] {
                if same_resource.len() >= limit {
                    break 'search;
                }
                let candidate = shifted(days);
                let Ok((s, e)) = local_interval(&r, &candidate) else {
                    continue;
                };
                if s > now && self.fits(&r, s, e, quantity).await? {
                    let date = match &candidate {
                        When::Slot { date, .. } => *date,
                        When::Range { start, .. } => start.date(),
                    };
                    same_resource.push((date, s, e));
                }
            }
        }
        let mut other_resources = Vec::new();
        for other in self.port().resources(None, Some(&r.kind)).await? {
            if other.id == r.id
                || other.units() < quantity
                || other.price.currency() != r.price.currency()
            {
                continue;
            }
            if self.fits(&other, start, end, quantity).await? {
                other_resources.push(other);
            }
        }
        other_resources.sort_by(|a, b| {
            let gap = |x: &Resource| (x.price.amount() - r.price.amount()).abs();
            gap(a).cmp(&gap(b)).then_with(|| a.name.cmp(&b.name))
        });
        other_resources.truncate(limit);
        Ok(Alternatives {
            same_resource,
            other_resources,
        })
    }

    /// Resources of `kind` (of one organization, or all) with their free slots on
    /// `date`, by name. Anyone may read it.
    pub async fn kind_availability(
        &self,
        kind: &ResourceKind,
        organization: Option<OrganizationId>,
        date: NaiveDate,
    ) -> Result<Vec<(Resource, Vec<SlotAvailability>)>> {
        let mut out = Vec::new();
        for r in self.port().resources(organization, Some(kind)).await? {
            let slots = self.resource_availability(r.id, date).await?;
            out.push((r, slots));
        }
        Ok(out)
    }

    /// The active facility bookings made for `event` (its venue, performers …): its
    /// organizers and admins.
    pub async fn event_facilities(
        &self,
        actor: &Actor,
        event: crate::id::EventId,
    ) -> Result<Vec<FacilityBooking>> {
        let e = self
            .port()
            .event(event)
            .await?
            .ok_or_else(|| Error::not_found("event", event))?;
        actor.require_manages(e.organization, "read event facilities")?;
        self.port().event_facilities(event).await
    }

    /// Cancels every facility package booked for `event` (idempotent; cancelling
    /// the event does it, and this retries it). Its organizers and admins.
    pub async fn release_event_facilities(
        &self,
        actor: &Actor,
        event: crate::id::EventId,
    ) -> Result<u32> {
        let e = self
            .port()
            .event(event)
            .await?
            .ok_or_else(|| Error::not_found("event", event))?;
        actor.require_manages(e.organization, "release facilities")?;
        let mut packages: Vec<_> = self
            .port()
            .event_facilities(event)
            .await?
            .into_iter()
            .map(|b| b.package)
            .collect();
        packages.sort();
        packages.dedup();
        for p in &packages {
            self.port().cancel_package(*p, self.now()).await?;
        }
        Ok(packages.len() as u32)
    }

    /// Free slots of `resource` for `days` consecutive local dates from `from`: one
    /// read of the window's bookings, then the slots in time order. Dates whose
    /// slots fall into a daylight-saving gap list only the slots that exist.
    pub async fn availability_window(
        &self,
        resource: ResourceId,
        from: NaiveDate,
        days: u32,
    ) -> Result<Vec<(NaiveDate, Vec<SlotAvailability>)>> {
        if days == 0 || days > 366 {
            return Err(Error::invalid("days", "1..=366"));
        }
        let r = self.resource_record(resource).await?;
        let mut grid = Vec::with_capacity(days as usize);
        for d in 0..days {
            let date = from + chrono::Duration::days(i64::from(d));
            let slots: Vec<_> = r
                .slots
                .iter()
                .filter_map(|slot| {
                    let (start, end) = slot_interval(r.time_zone, date, slot).ok()?;
                    Some(SlotAvailability {
                        slot: slot.name.clone(),
                        start,
                        end,
                        free: 0,
                    })
                })
                .collect();
            grid.push((date, slots));
        }
        let (Some(first), Some(last)) = (
            grid.iter()
                .flat_map(|(_, s)| s.iter())
                .map(|s| s.start)
                .min(),
            grid.iter().flat_map(|(_, s)| s.iter()).map(|s| s.end).max(),
        ) else {
            return Ok(grid);
        };
        let booked = self.port().facility_bookings(resource, first, last).await?;
        // Bookings come by start; a booking reaching a slot starts at most `longest`
        // before it, so each slot looks at a short run found by binary search.
        let longest = booked
            .iter()
            .map(|b| b.end - b.start)
            .max()
            .unwrap_or_default();
        for slot in grid.iter_mut().flat_map(|(_, s)| s.iter_mut()) {
            let lo = booked.partition_point(|b| b.start < slot.start - longest);
            let hi = booked.partition_point(|b| b.start < slot.end);
            let used = peak_usage(&booked[lo..hi.max(lo)], slot.start, slot.end);
            slot.free = r.units().saturating_sub(used);
        }
        Ok(grid)
    }

    /// Which slots of `date` (local to the resource) are free, and how much stock
    /// each has left for its whole length. Anyone may read it.
    pub async fn resource_availability(
        &self,
        resource: ResourceId,
        date: NaiveDate,
    ) -> Result<Vec<SlotAvailability>> {
        let r = self.resource_record(resource).await?;
        let mut out = Vec::with_capacity(r.slots.len());
        for slot in &r.slots {
            let when = When::Slot {
                date,
                slot: slot.name.clone(),
            };
            let Ok((start, end)) = local_interval(&r, &when) else {
                continue;
            };
            let booked = self.port().facility_bookings(resource, start, end).await?;
            let used = peak_usage(&booked, start, end);
            out.push(SlotAvailability {
                slot: slot.name.clone(),
                start,
                end,
                free: r.units().saturating_sub(used),
            });
        }
        Ok(out)
    }
}
