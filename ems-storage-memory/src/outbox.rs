use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::outbox::{DomainEvent, OutboxStore, RecordedEvent};
use ems_core::Result;

use crate::MemoryStore;

impl MemoryStore {
    /// Appends events; called while the changed shard is still locked, so a reader
    /// that sees an event and then reads the entity blocks until the change is visible.
    pub(crate) fn record(&self, at: DateTime<Utc>, events: impl IntoIterator<Item = DomainEvent>) {
        let mut outbox = self.inner.outbox.lock();
        for e in events {
            outbox.push(at, e);
        }
    }
}

#[async_trait]
impl OutboxStore for MemoryStore {
    async fn read_events(&self, after: Option<u64>, limit: u32) -> Result<Vec<RecordedEvent>> {
        let outbox = self.inner.outbox.lock();
        let after = after.unwrap_or(0);
        let start = outbox.events.partition_point(|e| e.seq <= after);
        Ok(outbox
            .events
            .iter()
            .skip(start)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn prune_events(&self, up_to: u64) -> Result<u64> {
        let mut outbox = self.inner.outbox.lock();
        let n = outbox.events.partition_point(|e| e.seq <= up_to);
        outbox.events.drain(..n);
        if outbox.events.capacity() > 4 * outbox.events.len() + 1024 {
            outbox.events.shrink_to_fit();
        }
        Ok(n as u64)
    }
}
