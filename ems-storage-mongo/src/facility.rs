use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::facility::*;
use ems_core::id::{EventId, FacilityBookingId, OrganizationId, PackageId, ResourceId};
use ems_core::outbox::DomainEvent;
use ems_core::{Error, Result};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::ClientSession;

use crate::bsonx::{body, date, from_body, money, tag};
use crate::error::is_duplicate;
use crate::outbox::record;
use crate::tx::transaction;
use crate::{db, MongoStore};

async fn bookings_where(
    store: &MongoStore,
    s: Option<&mut ClientSession>,
    filter: Document,
) -> Result<Vec<FacilityBooking>> {
    let col = store.col("facility_bookings");
    let q = col.find(filter).sort(doc! { "start": 1, "_id": 1 });
    let docs: Vec<Document> = match s {
        Some(s) => q
            .session(&mut *s)
            .await
            .map_err(db)?
            .stream(&mut *s)
            .try_collect()
            .await
            .map_err(db)?,
        None => q.await.map_err(db)?.try_collect().await.map_err(db)?,
    };
    let mut out: Vec<FacilityBooking> = docs
        .iter()
        .map(|d| from_body("facility booking", d))
        .collect::<Result<_>>()?;
    out.sort_by_key(|b| (b.start, b.id));
    Ok(out)
}

/// Active bookings of `resource` that may overlap `[from, to)` (dates are
/// milliseconds in queries; callers compare the exact instants).
fn overlapping(
    store: &MongoStore,
    resource: ResourceId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Document {
    doc! {
        "resource_id": store.uid(resource.0),
        "status": "active",
        "start": { "$lte": date(to) },
        "end": { "$gte": date(from) },
    }
}

/// A resource kind as one comparable string (its JSON form): equality on an
/// embedded document is what the emulator gets wrong, and a string indexes well.
fn kind_key(kind: &ResourceKind) -> Result<String> {
    serde_json::to_string(kind).map_err(|e| Error::invalid("kind", e.to_string()))
}

#[async_trait]
impl FacilityStore for MongoStore {
    async fn insert_resource(&self, resource: &Resource) -> Result<()> {
        let _turn = self.turn().await;
        let inserted = self
            .col("resources")
            .insert_one(doc! {
                "_id": self.uid(resource.id.0),
                "organization": self.uid(resource.organization.0),
                "kind": kind_key(&resource.kind)?,
                "name": &resource.name,
                "rev": 0_i64,
                "body": body(resource)?,
            })
            .await;
        match inserted {
            Err(e) if is_duplicate(&e) => Err(Error::already_exists("resource", "id", resource.id)),
            other => other.map(|_| ()).map_err(db),
        }
    }

    async fn resource(&self, id: ResourceId) -> Result<Option<Resource>> {
        self.col("resources")
            .find_one(doc! { "_id": self.uid(id.0) })
            .await
            .map_err(db)?
            .map(|d| from_body("resource", &d))
            .transpose()
    }

    async fn resources(
        &self,
        organization: Option<OrganizationId>,
        kind: Option<&ResourceKind>,
    ) -> Result<Vec<Resource>> {
        let mut filter = Document::new();
        if let Some(o) = organization {
            filter.insert("organization", self.uid(o.0));
        }
        if let Some(k) = kind {
            filter.insert("kind", kind_key(k)?);
        }
        let docs: Vec<Document> = self
            .col("resources")
            .find(filter)
            .await
            .map_err(db)?
            .try_collect()
            .await
            .map_err(db)?;
        let mut out: Vec<Resource> = docs
            .iter()
            .map(|d| from_body("resource", d))
            .collect::<Result<_>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn book_facilities(&self, bookings: &[FacilityBooking]) -> Result<()> {
        let mut ids: Vec<ResourceId> = bookings.iter().map(|b| b.resource).collect();
        ids.sort();
        ids.dedup();
        transaction!(self, |s| {
            // Writing each resource (in id order) makes racing packages conflict.
            let mut resources = Vec::with_capacity(ids.len());
            let mut revs = Vec::with_capacity(ids.len());
            for id in &ids {
                let d = self
                    .col("resources")
                    .find_one_and_update(
                        doc! { "_id": self.uid(id.0) },
                        doc! { "$inc": { "rev": 1_i64 } },
                    )
                    .return_document(mongodb::options::ReturnDocument::After)
                    .session(&mut s)
                    .await
                    .map_err(db)?
                    .ok_or_else(|| Error::not_found("resource", id))?;
                revs.push((*id, crate::bsonx::int("resource", &d, "rev")?));
                resources.push(from_body::<Resource>("resource", &d)?);
            }
            for (i, b) in bookings.iter().enumerate() {
                let resource = resources
                    .iter()
                    .find(|r| r.id == b.resource)
                    .ok_or_else(|| Error::not_found("resource", b.resource))?;
                let units = resource.units();
                let stored = bookings_where(
                    self,
                    Some(&mut s),
                    overlapping(self, b.resource, b.start, b.end),
                )
                .await?;
                let earlier = bookings[..i].iter().filter(|o| o.resource == b.resource);
                let used = peak_usage(stored.iter().chain(earlier), b.start, b.end);
                if used + b.quantity > units {
                    return Err(Error::SoldOut {
                        quota: format!("resource {}", b.resource),
                        requested: b.quantity,
                        available: units.saturating_sub(used),
                    });
                }
            }
            let docs = bookings
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    Ok(doc! {
                        "_id": self.uid(b.id.0),
                        "package": self.uid(b.package.0),
                        "resource_id": self.uid(b.resource.0),
                        "event_id": self.uid_opt(b.event.map(|e| e.0)),
                        "start": date(b.start),
                        "end": date(b.end),
                        "quantity": i64::from(b.quantity),
                        "status": tag(&b.status),
                        "price": money(&b.price)?,
                        "seq": i as i64,
                        "body": body(b)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if !docs.is_empty() {
                self.col("facility_bookings")
                    .insert_many(docs)
                    .session(&mut s)
                    .await
                    .map_err(db)?;
            }
            for (id, rev) in &revs {
                crate::tx::seal(self, &mut s, "resources", self.uid(id.0), *rev).await?;
            }
            if let Some(first) = bookings.first() {
                record(
                    self,
                    &mut s,
                    first.created_at,
                    [DomainEvent::FacilitiesBooked {
                        package: first.package,
                        organization: first.organization,
                        bookings: bookings.len() as u32,
                    }],
                )
                .await?;
            }
            Ok(())
        })
    }

    async fn cancel_package(
        &self,
        package: PackageId,
        now: DateTime<Utc>,
    ) -> Result<Vec<FacilityBooking>> {
        transaction!(self, |s| {
            let changed = self
                .col("facility_bookings")
                .update_many(
                    doc! { "package": self.uid(package.0), "status": "active" },
                    doc! { "$set": { "status": "cancelled", "body.status": "cancelled" } },
                )
                .session(&mut s)
                .await
                .map_err(db)?
                .modified_count;
            let mut all =
                bookings_where(self, Some(&mut s), doc! { "package": self.uid(package.0) }).await?;
            if all.is_empty() {
                return Err(Error::not_found("facility package", package));
            }
            all.sort_by_key(|b| b.id);
            if changed > 0 {
                record(
                    self,
                    &mut s,
                    now,
                    [DomainEvent::FacilitiesCancelled { package }],
                )
                .await?;
            }
            Ok(all)
        })
    }

    async fn facility_bookings(
        &self,
        resource: ResourceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<FacilityBooking>> {
        let mut out = bookings_where(self, None, overlapping(self, resource, from, to)).await?;
        out.retain(|b| b.status == FacilityStatus::Active && b.start < to && b.end > from);
        Ok(out)
    }

    async fn facility_booking(&self, id: FacilityBookingId) -> Result<Option<FacilityBooking>> {
        self.col("facility_bookings")
            .find_one(doc! { "_id": self.uid(id.0) })
            .await
            .map_err(db)?
            .map(|d| from_body("facility booking", &d))
            .transpose()
    }

    async fn event_facilities(&self, event: EventId) -> Result<Vec<FacilityBooking>> {
        bookings_where(
            self,
            None,
            doc! { "event_id": self.uid(event.0), "status": "active"},
        )
        .await
        .map(|mut v| {
            v.retain(|b| b.event == Some(event));
            v
        })
    }
}
