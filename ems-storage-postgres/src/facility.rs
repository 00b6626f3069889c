use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::facility::*;
use ems_core::id::{EventId, FacilityBookingId, OrganizationId, PackageId, ResourceId};
use ems_core::outbox::DomainEvent;
use ems_core::{Error, Result};
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::row::{begin, commit, from_doc, get, json, record, tag};
use crate::{db, PostgresStore};

/// Columns of a facility booking row, in the order [`booking_row`] reads them.
const FB: &str = "id, doc, status";

fn booking_row(row: &PgRow) -> Result<FacilityBooking> {
    let id: Uuid = get(row, "id")?;
    let mut b: FacilityBooking = from_doc("facility booking", id, get(row, "doc")?)?;
    b.status = crate::row::untag("facility booking", id, get(row, "status")?)?;
    Ok(b)
}

fn resource_row(row: &PgRow) -> Result<Resource> {
    from_doc("resource", get::<Uuid>(row, "id")?, get(row, "doc")?)
}

#[async_trait]
impl FacilityStore for PostgresStore {
    async fn insert_resource(&self, resource: &Resource) -> Result<()> {
        sqlx::query(
            "INSERT INTO ems_resources (id, organization, kind, name, units, doc) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(resource.id.0)
        .bind(resource.organization.0)
        .bind(json(&resource.kind)?)
        .bind(&resource.name)
        .bind(i64::from(resource.units()))
        .bind(json(resource)?)
        .execute(&self.pool)
        .await
        .map_err(|e| match db(e) {
            Error::AlreadyExists { entity, field, .. } => Error::AlreadyExists {
                entity,
                field,
                value: resource.id.to_string(),
            },
            other => other,
        })?;
        Ok(())
    }

    async fn resource(&self, id: ResourceId) -> Result<Option<Resource>> {
        sqlx::query("SELECT id, doc FROM ems_resources WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(resource_row)
            .transpose()
    }

    async fn resources(
        &self,
        organization: Option<OrganizationId>,
        kind: Option<&ResourceKind>,
    ) -> Result<Vec<Resource>> {
        let kind = kind.map(json).transpose()?;
        sqlx::query(
            "SELECT id, doc FROM ems_resources WHERE ($1::uuid IS NULL OR organization = $1) \
             AND ($2::jsonb IS NULL OR kind = $2) ORDER BY name COLLATE \"C\", id",
        )
        .bind(organization.map(|o| o.0))
        .bind(kind)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(resource_row)
        .collect()
    }

    async fn book_facilities(&self, bookings: &[FacilityBooking]) -> Result<()> {
        let mut tx = begin(&self.pool).await?;
        // Lock the resources in id order (the order every package takes them), so
        // stocked resources are counted with nobody else booking them meanwhile.
        let mut ids: Vec<Uuid> = bookings.iter().map(|b| b.resource.0).collect();
        ids.sort();
        ids.dedup();
        let resources: Vec<Resource> = sqlx::query(
            "SELECT id, doc FROM ems_resources WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .iter()
        .map(resource_row)
        .collect::<Result<_>>()?;
        for (i, b) in bookings.iter().enumerate() {
            let resource = resources
                .iter()
                .find(|r| r.id == b.resource)
                .ok_or_else(|| Error::not_found("resource", b.resource))?;
            let units = resource.units();
            let stored: Vec<FacilityBooking> = sqlx::query(&format!(
                "SELECT {FB} FROM ems_facility_bookings WHERE resource_id = $1 AND status = 'active' \
                 AND period && tstzrange($2, $3, '[)')"
            ))
            .bind(b.resource.0)
            .bind(b.start)
            .bind(b.end)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            .iter()
            .map(booking_row)
            .collect::<Result<_>>()?;
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
        let docs = bookings.iter().map(json).collect::<Result<Vec<_>>>()?;
        let exclusive: Vec<bool> = bookings
            .iter()
            .map(|b| {
                resources
                    .iter()
                    .any(|r| r.id == b.resource && r.stock == Stock::Exclusive)
            })
            .collect();
        let statuses: Vec<String> = bookings.iter().map(|b| tag(&b.status)).collect();
        sqlx::query(
            "INSERT INTO ems_facility_bookings (id, package, resource_id, event_id, period, quantity, \
             exclusive, status, price, currency, doc) \
             SELECT (d->>'id')::uuid, (d->>'package')::uuid, (d->>'resource')::uuid, (d->>'event')::uuid, \
                    tstzrange((d->>'start')::timestamptz, (d->>'end')::timestamptz, '[)'), \
                    (d->>'quantity')::bigint, x, s, (d->'price'->>'amount')::numeric, \
                    d->'price'->>'currency', d \
             FROM unnest($1::jsonb[], $2::bool[], $3::text[]) WITH ORDINALITY AS u(d, x, s, n) ORDER BY n",
        )
        .bind(&docs)
        .bind(&exclusive)
        .bind(&statuses)
        .execute(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            Error::SoldOut { .. } => Error::SoldOut {
                quota: "exclusive resource".into(),
                requested: 1,
                available: 0,
            },
            other => other,
        })?;
        if let Some(first) = bookings.first() {
            record(
                &mut tx,
                first.created_at,
                [DomainEvent::FacilitiesBooked {
                    package: first.package,
                    organization: first.organization,
                    bookings: bookings.len() as u32,
                }],
            )
            .await?;
        }
        commit(tx).await
    }

    async fn cancel_package(
        &self,
        package: PackageId,
        now: DateTime<Utc>,
    ) -> Result<Vec<FacilityBooking>> {
        let mut tx = begin(&self.pool).await?;
        let changed = sqlx::query(
            "UPDATE ems_facility_bookings SET status = 'cancelled' \
             WHERE package = $1 AND status = 'active'",
        )
        .bind(package.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        let all: Vec<FacilityBooking> = sqlx::query(&format!(
            "SELECT {FB} FROM ems_facility_bookings WHERE package = $1 ORDER BY seq"
        ))
        .bind(package.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .iter()
        .map(booking_row)
        .collect::<Result<_>>()?;
        if all.is_empty() {
            return Err(Error::not_found("facility package", package));
        }
        if changed > 0 {
            record(&mut tx, now, [DomainEvent::FacilitiesCancelled { package }]).await?;
        }
        commit(tx).await?;
        Ok(all)
    }

    async fn facility_bookings(
        &self,
        resource: ResourceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<FacilityBooking>> {
        sqlx::query(&format!(
            "SELECT {FB} FROM ems_facility_bookings WHERE resource_id = $1 AND status = 'active' \
             AND period && tstzrange($2, $3, '[)') ORDER BY lower(period), id"
        ))
        .bind(resource.0)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(booking_row)
        .collect()
    }

    async fn facility_booking(&self, id: FacilityBookingId) -> Result<Option<FacilityBooking>> {
        sqlx::query(&format!(
            "SELECT {FB} FROM ems_facility_bookings WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(booking_row)
        .transpose()
    }

    async fn event_facilities(&self, event: EventId) -> Result<Vec<FacilityBooking>> {
        sqlx::query(&format!(
            "SELECT {FB} FROM ems_facility_bookings WHERE event_id = $1 AND status = 'active' \
             ORDER BY lower(period), id"
        ))
        .bind(event.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(booking_row)
        .collect()
    }
}
