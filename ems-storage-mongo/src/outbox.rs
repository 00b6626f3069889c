use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::outbox::{DomainEvent, OutboxStore, RecordedEvent};
use ems_core::{Error, Result};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::ClientSession;

use crate::bsonx::{body, date, from_body, int};
use crate::tx::transaction;
use crate::{db, MongoStore};

/// Events numbered per call of `read_events` at most.
const NUMBER_BATCH: i64 = 1_000;

/// Appends domain events to the outbox inside the transaction, in order. They
/// get their sequence number when a reader first needs them.
pub(crate) async fn record(
    store: &MongoStore,
    s: &mut ClientSession,
    at: DateTime<Utc>,
    events: impl IntoIterator<Item = DomainEvent>,
) -> Result<()> {
    let docs = events
        .into_iter()
        .map(|e| {
            Ok(doc! {
                "numbered": false,
                "at": date(at),
                "body": body(&(at, e))?,
            })
        })
        .collect::<Result<Vec<Document>>>()?;
    if docs.is_empty() {
        return Ok(());
    }
    store
        .col("outbox")
        .insert_many(docs)
        .ordered(true)
        .session(&mut *s)
        .await
        .map_err(db)?;
    Ok(())
}

impl MongoStore {
    /// Numbers committed, unnumbered events after the last number given, in
    /// insertion order. Only committed events are seen and numbers only grow, so
    /// an event that commits late gets a number after those already read.
    async fn number_events(&self) -> Result<()> {
        transaction!(self, |s| {
            // Writing the state document makes concurrent numberings conflict.
            let state = self
                .col("outbox_state")
                .find_one_and_update(doc! { "_id": "outbox" }, doc! { "$inc": { "rev": 1_i64 } })
                .upsert(true)
                .return_document(mongodb::options::ReturnDocument::After)
                .session(&mut s)
                .await
                .map_err(db)?
                .unwrap_or_default();
            // The first numbering finds no `last` yet.
            let mut last = match state.get("last") {
                None => 0,
                Some(_) => int("outbox state", &state, "last")?,
            };
            let rev = int("outbox state", &state, "rev")?;
            let pending: Vec<Document> = self
                .col("outbox")
                .find(doc! { "numbered": false })
                .sort(doc! { "_id": 1 })
                .limit(NUMBER_BATCH)
                .projection(doc! { "_id": 1 })
                .session(&mut s)
                .await
                .map_err(db)?
                .stream(&mut s)
                .try_collect()
                .await
                .map_err(db)?;
            if pending.is_empty() {
                return Ok(());
            }
            for d in &pending {
                last += 1;
                let id = d.get("_id").cloned().unwrap_or(Bson::Null);
                self.col("outbox")
                    .update_one(
                        doc! { "_id": id },
                        doc! { "$set": { "numbered": true, "seq": last } },
                    )
                    .session(&mut s)
                    .await
                    .map_err(db)?;
            }
            self.col("outbox_state")
                .update_one(
                    doc! { "_id": "outbox", "rev": rev },
                    doc! { "$set": { "last": last }, "$inc": { "rev": 1_i64 } },
                )
                .session(&mut s)
                .await
                .map_err(db)
                .and_then(|r| {
                    if r.matched_count == 1 {
                        Ok(())
                    } else {
                        Err(crate::tx::conflict("outbox"))
                    }
                })?;
            Ok(())
        })
    }
}

#[async_trait]
impl OutboxStore for MongoStore {
    async fn read_events(&self, after: Option<u64>, limit: u32) -> Result<Vec<RecordedEvent>> {
        self.number_events().await?;
        let after = i64::try_from(after.unwrap_or(0)).unwrap_or(i64::MAX);
        let docs: Vec<Document> = self
            .col("outbox")
            .find(doc! { "numbered": true, "seq": { "$gt": after } })
            .sort(doc! { "seq": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(db)?
            .try_collect()
            .await
            .map_err(db)?;
        docs.iter()
            .map(|d| {
                let seq = int("domain event", d, "seq")?;
                let (occurred_at, event): (DateTime<Utc>, DomainEvent) =
                    from_body("domain event", d)?;
                Ok(RecordedEvent {
                    seq: u64::try_from(seq).map_err(|_| Error::Corrupt {
                        entity: "domain event",
                        id: seq.to_string(),
                        reason: "negative sequence".into(),
                    })?,
                    occurred_at,
                    event,
                })
            })
            .collect()
    }

    async fn prune_events(&self, up_to: u64) -> Result<u64> {
        let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
        let gone = self
            .col("outbox")
            .delete_many(doc! { "numbered": true, "seq": { "$lte": up_to } })
            .await
            .map_err(db)?;
        Ok(gone.deleted_count)
    }
}
