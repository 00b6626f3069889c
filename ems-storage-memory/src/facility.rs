use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use ems_core::facility::*;
use ems_core::id::{EventId, FacilityBookingId, OrganizationId, PackageId, ResourceId};
use ems_core::outbox::DomainEvent;
use ems_core::{Error, Result};
use uuid::Uuid;

use crate::state::HashMap;
use crate::MemoryStore;

/// Every resource and facility booking, behind one lock so a package spanning
/// several resources is one critical section. Locked before the outbox.
#[derive(Default)]
pub(crate) struct FacilityState {
    resources: HashMap<ResourceId, Resource>,
    bookings: HashMap<ResourceId, Timeline>,
    index: HashMap<FacilityBookingId, (ResourceId, DateTime<Utc>)>,
    packages: HashMap<PackageId, Vec<FacilityBookingId>>,
}

/// One resource's bookings by start; `longest` bounds how far before a period a
/// booking overlapping it can start, so overlap queries scan a short range.
#[derive(Default)]
struct Timeline {
    by_start: BTreeMap<(DateTime<Utc>, FacilityBookingId), FacilityBooking>,
    longest: Duration,
}

impl Timeline {
    fn overlapping(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Iterator<Item = &FacilityBooking> {
        let low = (from - self.longest, FacilityBookingId(Uuid::nil()));
        let high = (to, FacilityBookingId(Uuid::nil()));
        self.by_start
            .range(low..high)
            .map(|(_, b)| b)
            .filter(move |b| b.status == FacilityStatus::Active && b.end > from && b.start < to)
    }
}

#[async_trait]
impl FacilityStore for MemoryStore {
    async fn insert_resource(&self, resource: &Resource) -> Result<()> {
        let mut f = self.inner.facilities.lock();
        if f.resources.contains_key(&resource.id) {
            return Err(Error::already_exists("resource", "id", resource.id));
        }
        f.resources.insert(resource.id, resource.clone());
        Ok(())
    }

    async fn resource(&self, id: ResourceId) -> Result<Option<Resource>> {
        Ok(self.inner.facilities.lock().resources.get(&id).cloned())
    }

    async fn resources(
        &self,
        organization: Option<OrganizationId>,
        kind: Option<&ResourceKind>,
    ) -> Result<Vec<Resource>> {
        let f = self.inner.facilities.lock();
        let mut out: Vec<_> = f
            .resources
            .values()
            .filter(|r| {
                organization.is_none_or(|o| o == r.organization)
                    && kind.is_none_or(|k| *k == r.kind)
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn book_facilities(&self, bookings: &[FacilityBooking]) -> Result<()> {
        let mut f = self.inner.facilities.lock();
        for (i, b) in bookings.iter().enumerate() {
            let resource = f
                .resources
                .get(&b.resource)
                .ok_or_else(|| Error::not_found("resource", b.resource))?;
            let units = resource.units();
            let empty = Timeline::default();
            let timeline = f.bookings.get(&b.resource).unwrap_or(&empty);
            let earlier = bookings[..i].iter().filter(|o| o.resource == b.resource);
            let used = peak_usage(
                timeline.overlapping(b.start, b.end).chain(earlier),
                b.start,
                b.end,
            );
            if used + b.quantity > units {
                return Err(Error::SoldOut {
                    quota: format!("resource {}", b.resource),
                    requested: b.quantity,
                    available: units.saturating_sub(used),
                });
            }
        }
        for b in bookings {
            let t = f.bookings.entry(b.resource).or_default();
            t.longest = t.longest.max(b.end - b.start);
            t.by_start.insert((b.start, b.id), b.clone());
            f.index.insert(b.id, (b.resource, b.start));
            f.packages.entry(b.package).or_default().push(b.id);
        }
        if let Some(first) = bookings.first() {
            self.record(
                first.created_at,
                [DomainEvent::FacilitiesBooked {
                    package: first.package,
                    organization: first.organization,
                    bookings: bookings.len() as u32,
                }],
            );
        }
        Ok(())
    }

    async fn cancel_package(
        &self,
        package: PackageId,
        now: DateTime<Utc>,
    ) -> Result<Vec<FacilityBooking>> {
        let mut f = self.inner.facilities.lock();
        let ids = f
            .packages
            .get(&package)
            .cloned()
            .ok_or_else(|| Error::not_found("facility package", package))?;
        let mut out = Vec::with_capacity(ids.len());
        let mut changed = false;
        for id in ids {
            let Some(&(resource, start)) = f.index.get(&id) else {
                continue;
            };
            if let Some(b) = f
                .bookings
                .get_mut(&resource)
                .and_then(|t| t.by_start.get_mut(&(start, id)))
            {
                changed |= b.status == FacilityStatus::Active;
                b.status = FacilityStatus::Cancelled;
                out.push(b.clone());
            }
        }
        if changed {
            self.record(now, [DomainEvent::FacilitiesCancelled { package }]);
        }
        Ok(out)
    }

    async fn facility_bookings(
        &self,
        resource: ResourceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<FacilityBooking>> {
        let f = self.inner.facilities.lock();
        Ok(f.bookings
            .get(&resource)
            .map(|t| t.overlapping(from, to).cloned().collect())
            .unwrap_or_default())
    }

    async fn event_facilities(&self, event: EventId) -> Result<Vec<FacilityBooking>> {
        let f = self.inner.facilities.lock();
        let mut out: Vec<_> = f
            .bookings
            .values()
            .flat_map(|t| t.by_start.values())
            .filter(|b| b.event == Some(event) && b.status == FacilityStatus::Active)
            .cloned()
            .collect();
        out.sort_by_key(|b| (b.start, b.id));
        Ok(out)
    }

    async fn facility_booking(&self, id: FacilityBookingId) -> Result<Option<FacilityBooking>> {
        let f = self.inner.facilities.lock();
        Ok(f.index
            .get(&id)
            .and_then(|(r, s)| f.bookings.get(r)?.by_start.get(&(*s, id)).cloned()))
    }
}
