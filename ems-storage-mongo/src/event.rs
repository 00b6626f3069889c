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
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::ClientSession;

use crate::bsonx::{body, date, doc_id, from_body, tag};
use crate::error::is_duplicate;
use crate::inventory::{end_holds, find_holds, lock_event};
use crate::outbox::record;
use crate::tx::transaction;
use crate::{db, MongoStore};

fn conflict(event: &Event, expected: u64) -> Error {
    Error::Conflict {
        entity: "event",
        id: event.id.to_string(),
        expected,
        found: event.version,
    }
}

fn key(text: &str) -> String {
    text.trim().to_lowercase()
}

/// The searchable fields of an event, as stored beside its body.
fn fields(store: &MongoStore, event: &Event) -> Result<Document> {
    Ok(doc! {
        "organization": store.uid(event.organization.0),
        "status": tag(&event.status),
        "category_key": key(&event.category),
        "city_key": key(&event.venue.city),
        "starts_at": date(event.starts_at),
        "body": body(event)?,
    })
}

async fn write_event(store: &MongoStore, s: &mut ClientSession, event: &Event) -> Result<()> {
    store
        .col("events")
        .update_one(
            doc! { "_id": store.uid(event.id.0) },
            doc! { "$set": fields(store, event)? },
        )
        .session(&mut *s)
        .await
        .map_err(db)?;
    Ok(())
}

#[async_trait]
impl EventStore for MongoStore {
    async fn insert_event(&self, event: &Event) -> Result<()> {
        transaction!(self, |s| {
            let mut d = fields(self, event)?;
            d.insert("_id", self.uid(event.id.0));
            d.insert("rev", 0_i64);
            d.insert("tiers", Bson::Array(Vec::new()));
            d.insert("shared", Bson::Array(Vec::new()));
            d.insert("taken", doc! { "event": 0_i64 });
            match self.col("events").insert_one(d).session(&mut s).await {
                Err(e) if is_duplicate(&e) => {
                    return Err(Error::already_exists("event", "id", event.id))
                }
                other => other.map_err(db)?,
            };
            record(
                self,
                &mut s,
                event.created_at,
                [DomainEvent::EventCreated {
                    event_id: event.id,
                    organization: event.organization,
                }],
            )
            .await
        })
    }

    async fn event(&self, id: EventId) -> Result<Option<Event>> {
        self.col("events")
            .find_one(doc! { "_id": self.uid(id.0) })
            .projection(doc! { "body": 1 })
            .await
            .map_err(db)?
            .map(|d| from_body("event", &d))
            .transpose()
    }

    async fn update_event(&self, event: &Event, change: DomainEvent) -> Result<()> {
        transaction!(self, |s| {
            let mut locked = lock_event(self, &mut s, event.id, None)
                .await?
                .ok_or_else(|| Error::not_found("event", event.id))?;
            let expected = event.version.saturating_sub(1);
            if locked.event.version != expected {
                return Err(conflict(&locked.event, expected));
            }
            let taken = locked.taken(QuotaKey::Event);
            if event.capacity < taken {
                return Err(Error::invalid(
                    "capacity",
                    format!("{taken} units are already taken"),
                ));
            }
            write_event(self, &mut s, event).await?;
            locked.seal(self, &mut s).await?;
            record(self, &mut s, event.updated_at, [change.clone()]).await
        })
    }

    async fn cancel_event(
        &self,
        id: EventId,
        expected_version: u64,
        now: DateTime<Utc>,
    ) -> Result<EventCancellation> {
        transaction!(self, |s| {
            let mut locked = lock_event(self, &mut s, id, Some(now))
                .await?
                .ok_or_else(|| Error::not_found("event", id))?;
            if locked.event.version != expected_version {
                return Err(conflict(&locked.event, expected_version));
            }
            if locked.event.status.is_final() {
                return Err(Error::invalid_state(
                    "event",
                    id,
                    locked.event.status,
                    "cancel",
                ));
            }
            locked.event.status = EventStatus::Cancelled;
            locked.event.version += 1;
            locked.event.updated_at = now;
            let event = locked.event.clone();
            write_event(self, &mut s, &event).await?;
            let mut holds = find_holds(
                self,
                &mut s,
                doc! { "event_id": self.uid(id.0), "status": "active" },
            )
            .await?;
            holds.sort_by_key(|h| h.id);
            let released = holds.len() as u32;
            let failed: Vec<BookingId> = holds.iter().filter_map(|h| h.booking_id).collect();
            let mut out = vec![DomainEvent::EventCancelled { event_id: id }];
            out.extend(
                end_holds(
                    self,
                    &mut s,
                    &mut locked,
                    holds,
                    HoldStatus::Released,
                    Some((BookingStatus::Failed, BookingReason::EventCancelled)),
                    now,
                )
                .await?,
            );
            let confirmed: Vec<Document> = self
                .col("bookings")
                .find(doc! { "event_id": self.uid(id.0), "status": "confirmed" })
                .sort(doc! { "_id": 1 })
                .projection(doc! { "_id": 1 })
                .session(&mut s)
                .await
                .map_err(db)?
                .stream(&mut s)
                .try_collect()
                .await
                .map_err(db)?;
            let mut confirmed = confirmed
                .iter()
                .map(|d| doc_id("booking", d).map(BookingId))
                .collect::<Result<Vec<_>>>()?;
            confirmed.sort();
            record(self, &mut s, now, out).await?;
            locked.seal(self, &mut s).await?;
            Ok(EventCancellation {
                event,
                released_holds: released,
                failed_bookings: failed.clone(),
                confirmed_bookings: confirmed,
            })
        })
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        const BATCH: usize = 256;
        let f = &query.filter;
        let mut base = Document::new();
        if let Some(o) = f.organization {
            base.insert("organization", self.uid(o.0));
        }
        let mut status = Document::new();
        if let Some(st) = &f.statuses {
            status.insert("$in", st.iter().map(tag).collect::<Vec<_>>());
        }
        match query.drafts {
            DraftVisibility::All => {}
            DraftVisibility::Organization(o) => {
                base.insert(
                    "$or",
                    vec![
                        doc! { "status": { "$ne": "draft" } },
                        doc! { "organization": self.uid(o.0) },
                    ],
                );
            }
            _ => {
                status.insert("$ne", "draft");
            }
        }
        if !status.is_empty() {
            base.insert("status", status);
        }
        if let Some(c) = &f.category {
            base.insert("category_key", key(c));
        }
        if let Some(c) = &f.city {
            base.insert("city_key", key(c));
        }
        let mut range = Document::new();
        if let Some(t) = f.starts_from {
            range.insert("$gte", date(t));
        }
        if let Some(t) = f.starts_before {
            // Millisecond dates: keep the bound inclusive here, exact in `matches`.
            range.insert("$lte", date(t));
        }
        // Text and venue-name filters ("contains", case-insensitive) are applied by
        // `EventFilter::matches` on the way: an unanchored pattern cannot use an
        // index on MongoDB either.
        let mut out = Vec::new();
        let mut position = query.after;
        loop {
            let mut filter = base.clone();
            let mut starts = range.clone();
            if let Some((at, id)) = position {
                // Keyset on (starts_at, id); dates are milliseconds, so the exact
                // order is restored below from the bodies.
                starts.insert("$gte", date(at));
                let _ = id;
            }
            if !starts.is_empty() {
                filter.insert("starts_at", starts);
            }
            let docs: Vec<Document> = self
                .col("events")
                .find(filter)
                .sort(doc! { "starts_at": 1, "_id": 1 })
                .projection(doc! { "body": 1 })
                .limit(BATCH as i64)
                .await
                .map_err(db)?
                .try_collect()
                .await
                .map_err(db)?;
            let exhausted = docs.len() < BATCH;
            let mut page: Vec<Event> = docs
                .iter()
                .map(|d| from_body("event", d))
                .collect::<Result<_>>()?;
            page.sort_by_key(|e| (e.starts_at, e.id));
            let mut advanced = false;
            for event in page {
                let key = (event.starts_at, event.id);
                if position.is_some_and(|p| key <= p) {
                    continue;
                }
                position = Some(key);
                advanced = true;
                if f.matches(&event, query.drafts) {
                    out.push(event);
                    if out.len() >= query.limit as usize {
                        return Ok(out);
                    }
                }
            }
            if exhausted || !advanced {
                return Ok(out);
            }
        }
    }
}
