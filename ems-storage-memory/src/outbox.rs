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
        Ok(outbox.read(after.unwrap_or(0), limit as usize))
    }

    async fn prune_events(&self, up_to: u64) -> Result<u64> {
        Ok(self.inner.outbox.lock().prune(up_to))
    }
}
