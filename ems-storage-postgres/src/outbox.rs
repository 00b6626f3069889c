use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::outbox::{OutboxStore, RecordedEvent};
use ems_core::Result;

use crate::row::{begin, commit, from_doc, get};
use crate::{db, PostgresStore};

impl PostgresStore {
    /// Numbers every committed, unnumbered event after the last number given, in
    /// (transaction, insertion) order. Numbers are given only to committed rows and
    /// only ever grow, so an event that commits late gets a number after those
    /// already read: a reader's cursor never skips one.
    async fn number_events(&self) -> Result<()> {
        let mut tx = begin(&self.pool).await?;
        // Serializes numbering; the next statement then sees the latest numbers.
        let last: i64 = sqlx::query_scalar("SELECT last_seq FROM ems_outbox_state FOR UPDATE")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let numbered: i64 = sqlx::query_scalar(
            "WITH pending AS ( \
               SELECT id, row_number() OVER (ORDER BY txid, id) AS n FROM ems_outbox \
               WHERE seq IS NULL), \
             done AS (UPDATE ems_outbox o SET seq = $1 + p.n FROM pending p WHERE o.id = p.id RETURNING 1) \
             SELECT count(*) FROM done",
        )
        .bind(last)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if numbered > 0 {
            sqlx::query("UPDATE ems_outbox_state SET last_seq = $1")
                .bind(last + numbered)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        commit(tx).await
    }
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn read_events(&self, after: Option<u64>, limit: u32) -> Result<Vec<RecordedEvent>> {
        self.number_events().await?;
        let rows = sqlx::query(
            "SELECT seq, occurred_at, doc FROM ems_outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after.unwrap_or(0) as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let seq: i64 = get(r, "seq")?;
                let occurred_at: DateTime<Utc> = get(r, "occurred_at")?;
                Ok(RecordedEvent {
                    seq: seq as u64,
                    occurred_at,
                    event: from_doc("domain event", seq, get(r, "doc")?)?,
                })
            })
            .collect()
    }

    async fn prune_events(&self, up_to: u64) -> Result<u64> {
        let n = sqlx::query("DELETE FROM ems_outbox WHERE seq <= $1")
            .bind(up_to as i64)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
        Ok(n)
    }
}
