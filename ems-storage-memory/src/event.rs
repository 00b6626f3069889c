use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::booking::{BookingReason, BookingStatus};
use ems_core::event::{Event, EventCancellation, EventQuery, EventStatus, EventStore};
use ems_core::id::EventId;
use ems_core::inventory::{HoldStatus, QuotaKey};
use ems_core::outbox::DomainEvent;
use ems_core::{Error, Result};

use crate::state::{Events, Shard};
use crate::MemoryStore;

fn conflict(event: &Event, expected: u64) -> Error {
    Error::Conflict {
        entity: "event",
        id: event.id.to_string(),
        expected,
        found: event.version,
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn insert_event(&self, event: &Event) -> Result<()> {
        let mut index = self.inner.event_index.write();
        match self.inner.events.entry(event.id) {
            dashmap::Entry::Occupied(_) => {
                return Err(Error::already_exists("event", "id", event.id))
            }
            dashmap::Entry::Vacant(v) => {
                // Numbered while the entry is held: no other call can add
                // this event meanwhile, and nothing names the number before
                // the shard knows it.
                let shard = Shard::new(event.clone(), Arc::clone(&self.inner.coupons));
                let n = self.inner.numbered.push(crate::ShardCell::new(shard));
                // Four billion events would need far more memory than a process has.
                let n = u32::try_from(n).expect("fewer than 2^32 events");
                self.inner.numbered[n as usize].lock.lock().number = n;
                v.insert(n);
            }
        }
        index.by_start.insert((event.starts_at, event.id));
        self.record(
            event.created_at,
            [DomainEvent::EventCreated {
                event_id: event.id,
                organization: event.organization,
            }],
        );
        Ok(())
    }

    async fn event(&self, id: EventId) -> Result<Option<Event>> {
        Ok(self.shard(id).map(|s| s.lock().config.event.clone()))
    }

    async fn update_event(&self, event: &Event, change: DomainEvent) -> Result<()> {
        let shard = self.shard_or_missing(event.id)?;
        // Lock order: index, then shard (listings never hold both).
        let mut index = self.inner.event_index.write();
        let mut s = shard.lock();
        let expected = event.version.saturating_sub(1);
        if s.config.event.version != expected {
            return Err(conflict(&s.config.event, expected));
        }
        let taken = s.taken(QuotaKey::Event);
        if event.capacity < taken {
            return Err(Error::invalid(
                "capacity",
                format!("{} units are already taken", taken),
            ));
        }
        if s.config.event.starts_at != event.starts_at {
            index.by_start.remove(&(s.config.event.starts_at, event.id));
            index.by_start.insert((event.starts_at, event.id));
        }
        s.config_mut().event = event.clone();
        self.record(event.updated_at, [change]);
        Ok(())
    }

    async fn cancel_event(
        &self,
        id: EventId,
        expected_version: u64,
        now: DateTime<Utc>,
    ) -> Result<EventCancellation> {
        let cell = self.cell_or_missing(id)?;
        // Every hold of the event is released: its lanes' too.
        let (mut lanes, mut s) = self.lock_all(cell);
        if s.config.event.version != expected_version {
            return Err(conflict(&s.config.event, expected_version));
        }
        if s.config.event.status.is_final() {
            return Err(Error::invalid_state(
                "event",
                id,
                s.config.event.status,
                "cancel",
            ));
        }
        let mut out = Events::new();
        out.push(DomainEvent::EventCancelled { event_id: id });
        let cancelled = &mut s.config_mut().event;
        cancelled.status = EventStatus::Cancelled;
        cancelled.version += 1;
        cancelled.updated_at = now;
        // (hold, its lane: `None` for the shard's own), in id order.
        let mut active: Vec<(ems_core::id::HoldId, Option<usize>)> =
            std::iter::once((None, &s.own))
                .chain(lanes.iter().enumerate().map(|(i, l)| (Some(i), &**l)))
                .flat_map(|(lane, set)| {
                    set.holds
                        .values()
                        .filter(|h| h.status == HoldStatus::Active)
                        .map(move |h| (h.id, lane))
                })
                .collect();
        active.sort();
        let mut failed = Vec::new();
        for &(hold, lane) in &active {
            let lane = lane.map(|i| &mut *lanes[i]);
            if let Some(b) = lane.as_deref().unwrap_or(&s.own).holds[&hold].booking_id {
                failed.push(b);
            }
            s.end_hold(
                lane,
                hold,
                HoldStatus::Released,
                Some((BookingStatus::Failed, BookingReason::EventCancelled)),
                now,
                &mut out,
            );
        }
        let confirmed = s
            .bookings
            .values()
            .map(|r| r.fields())
            .filter(|b| b.status == BookingStatus::Confirmed)
            .map(|b| b.id)
            .collect();
        self.record(now, out);
        Ok(EventCancellation {
            event: s.config.event.clone(),
            released_holds: active.len() as u32,
            failed_bookings: failed,
            confirmed_bookings: confirmed,
        })
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        const BATCH: usize = 256;
        let mut out = Vec::new();
        let mut position = query.after;
        loop {
            let keys: Vec<_> = {
                let index = self.inner.event_index.read();
                match position {
                    Some(p) => index
                        .by_start
                        .range((std::ops::Bound::Excluded(p), std::ops::Bound::Unbounded))
                        .take(BATCH)
                        .copied()
                        .collect(),
                    None => index.by_start.iter().take(BATCH).copied().collect(),
                }
            };
            let exhausted = keys.len() < BATCH;
            for key in keys {
                position = Some(key);
                if let Some(shard) = self.shard(key.1) {
                    let s = shard.lock();
                    if s.config.event.starts_at == key.0
                        && query.filter.matches(&s.config.event, query.drafts)
                    {
                        out.push(s.config.event.clone());
                        if out.len() >= query.limit as usize {
                            return Ok(out);
                        }
                    }
                }
            }
            if exhausted {
                return Ok(out);
            }
        }
    }
}
