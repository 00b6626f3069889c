use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::booking::{BookingReason, BookingStatus};
use ems_core::event::{
    DraftVisibility, Event, EventCancellation, EventQuery, EventStatus, EventStore,
};
use ems_core::id::{BookingId, EventId};
use ems_core::inventory::{HoldStatus, QuotaKey};
use ems_core::outbox::DomainEvent;
use ems_core::{Error, Result};
use sqlx::Row;
use uuid::Uuid;

use crate::inventory::{end_holds, lock_event};
use crate::row::{self, begin, commit, from_doc, get, json, record, tag, Tx, HOLD};
use crate::{db, PostgresStore};

fn conflict(event: &Event, expected: u64) -> Error {
    Error::Conflict {
        entity: "event",
        id: event.id.to_string(),
        expected,
        found: event.version,
    }
}

/// Writes every column of an event from the record.
async fn write_event(tx: &mut Tx, event: &Event) -> Result<()> {
    sqlx::query(
        "UPDATE ems_events SET organization = $2, status = $3, title = $4, description = $5, \
         category = $6, city = $7, venue = $8, starts_at = $9, ends_at = $10, capacity = $11, \
         version = $12, doc = $13, seq = seq + 1 WHERE id = $1",
    )
    .bind(event.id.0)
    .bind(event.organization.0)
    .bind(tag(&event.status))
    .bind(&event.title)
    .bind(&event.description)
    .bind(&event.category)
    .bind(&event.venue.city)
    .bind(&event.venue.name)
    .bind(event.starts_at)
    .bind(event.ends_at)
    .bind(i64::from(event.capacity))
    .bind(event.version as i64)
    .bind(json(event)?)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// `%…%` for `ILIKE`, with the pattern's own wildcards escaped.
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn insert_event(&self, event: &Event) -> Result<()> {
        let mut tx = begin(&self.pool).await?;
        let inserted = sqlx::query(
            "INSERT INTO ems_events (id, organization, status, title, description, category, city, \
             venue, starts_at, ends_at, capacity, version, doc) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING",
        )
        .bind(event.id.0)
        .bind(event.organization.0)
        .bind(tag(&event.status))
        .bind(&event.title)
        .bind(&event.description)
        .bind(&event.category)
        .bind(&event.venue.city)
        .bind(&event.venue.name)
        .bind(event.starts_at)
        .bind(event.ends_at)
        .bind(i64::from(event.capacity))
        .bind(event.version as i64)
        .bind(json(event)?)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if inserted == 0 {
            return Err(Error::already_exists("event", "id", event.id));
        }
        record(
            &mut tx,
            event.created_at,
            [DomainEvent::EventCreated {
                event_id: event.id,
                organization: event.organization,
            }],
        )
        .await?;
        commit(tx).await
    }

    async fn event(&self, id: EventId) -> Result<Option<Event>> {
        let row = sqlx::query("SELECT doc FROM ems_events WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| from_doc("event", id, get(&r, "doc")?))
            .transpose()
    }

    async fn update_event(&self, event: &Event, change: DomainEvent) -> Result<()> {
        let mut tx = begin(&self.pool).await?;
        let s = lock_event(&mut tx, event.id, DateTime::UNIX_EPOCH)
            .await?
            .ok_or_else(|| Error::not_found("event", event.id))?;
        let expected = event.version.saturating_sub(1);
        if s.event.version != expected {
            return Err(conflict(&s.event, expected));
        }
        let taken = s.taken(QuotaKey::Event);
        if event.capacity < taken {
            return Err(Error::invalid(
                "capacity",
                format!("{taken} units are already taken"),
            ));
        }
        write_event(&mut tx, event).await?;
        record(&mut tx, event.updated_at, [change]).await?;
        commit(tx).await
    }

    async fn cancel_event(
        &self,
        id: EventId,
        expected_version: u64,
        now: DateTime<Utc>,
    ) -> Result<EventCancellation> {
        let mut tx = begin(&self.pool).await?;
        let mut s = lock_event(&mut tx, id, now)
            .await?
            .ok_or_else(|| Error::not_found("event", id))?;
        if s.event.version != expected_version {
            return Err(conflict(&s.event, expected_version));
        }
        if s.event.status.is_final() {
            return Err(Error::invalid_state("event", id, s.event.status, "cancel"));
        }
        s.event.status = EventStatus::Cancelled;
        s.event.version += 1;
        s.event.updated_at = now;
        let event = s.event.clone();
        write_event(&mut tx, &event).await?;
        let holds = sqlx::query(&format!(
            "SELECT {HOLD} FROM ems_holds WHERE event_id = $1 AND status = 'active' ORDER BY id FOR UPDATE"
        ))
        .bind(id.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .iter()
        .map(row::hold)
        .collect::<Result<Vec<_>>>()?;
        let released = holds.len() as u32;
        let failed: Vec<BookingId> = holds.iter().filter_map(|h| h.booking_id).collect();
        let mut out = vec![DomainEvent::EventCancelled { event_id: id }];
        out.extend(
            end_holds(
                &mut tx,
                &mut s,
                holds,
                HoldStatus::Released,
                Some((BookingStatus::Failed, BookingReason::EventCancelled)),
                now,
            )
            .await?,
        );
        let confirmed = sqlx::query(
            "SELECT id FROM ems_bookings WHERE event_id = $1 AND status = 'confirmed' ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.try_get::<Uuid, _>(0).map(BookingId).map_err(db))
        .collect::<Result<Vec<_>>>()?;
        record(&mut tx, now, out).await?;
        commit(tx).await?;
        Ok(EventCancellation {
            event,
            released_holds: released,
            failed_bookings: failed,
            confirmed_bookings: confirmed,
        })
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        const BATCH: usize = 256;
        let f = &query.filter;
        let statuses: Option<Vec<String>> =
            f.statuses.as_ref().map(|s| s.iter().map(tag).collect());
        let (draft_mode, draft_org): (u8, Option<Uuid>) = match query.drafts {
            DraftVisibility::None => (0, None),
            DraftVisibility::Organization(o) => (1, Some(o.0)),
            DraftVisibility::All => (2, None),
            _ => (0, None),
        };
        let text = f.text.as_deref().map(contains_pattern);
        let venue = f.venue.as_deref().map(contains_pattern);
        let mut out = Vec::new();
        let mut position = query.after;
        // SQL narrows with the indexes; `EventFilter::matches` has the last word, so
        // a page is full unless the listing is exhausted. Only the filters in use
        // enter the statement, so each combination gets a plan of its own.
        loop {
            let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "SELECT id, doc, starts_at FROM ems_events WHERE true",
            );
            if let Some((at, id)) = position {
                q.push(" AND (starts_at, id) > (")
                    .push_bind(at)
                    .push(", ")
                    .push_bind(id.0)
                    .push(")");
            }
            if let Some(o) = f.organization {
                q.push(" AND organization = ").push_bind(o.0);
            }
            if let Some(s) = &statuses {
                q.push(" AND status = ANY(").push_bind(s.clone()).push(")");
            }
            if let Some(c) = &f.category {
                q.push(" AND lower(btrim(category)) = lower(")
                    .push_bind(c.trim().to_owned())
                    .push(")");
            }
            if let Some(t) = f.starts_from {
                q.push(" AND starts_at >= ").push_bind(t);
            }
            if let Some(t) = f.starts_before {
                q.push(" AND starts_at < ").push_bind(t);
            }
            if let Some(t) = &text {
                q.push(" AND (title ILIKE ")
                    .push_bind(t.clone())
                    .push(" OR description ILIKE ")
                    .push_bind(t.clone())
                    .push(")");
            }
            if let Some(c) = &f.city {
                q.push(" AND lower(btrim(city)) = lower(")
                    .push_bind(c.trim().to_owned())
                    .push(")");
            }
            if let Some(v) = &venue {
                q.push(" AND venue ILIKE ").push_bind(v.clone());
            }
            match draft_org {
                _ if draft_mode == 2 => {}
                Some(o) => {
                    q.push(" AND (status <> 'draft' OR organization = ")
                        .push_bind(o)
                        .push(")");
                }
                None => {
                    q.push(" AND status <> 'draft'");
                }
            }
            let want = (query.limit as usize)
                .saturating_sub(out.len())
                .clamp(1, BATCH) as i64;
            q.push(" ORDER BY starts_at, id LIMIT ").push_bind(want);
            let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
            let exhausted = (rows.len() as i64) < want;
            for r in &rows {
                let id: Uuid = get(r, "id")?;
                let event: Event = from_doc("event", id, get(r, "doc")?)?;
                position = Some((get(r, "starts_at")?, EventId(id)));
                if f.matches(&event, query.drafts) {
                    out.push(event);
                    if out.len() >= query.limit as usize {
                        return Ok(out);
                    }
                }
            }
            if exhausted {
                return Ok(out);
            }
        }
    }
}
