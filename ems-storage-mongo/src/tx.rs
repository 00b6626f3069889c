//! Multi-document transactions with retries on transient failures.

use std::time::Duration;

use ems_core::Result;
use mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT;
use mongodb::ClientSession;

use crate::{db, MongoStore};

/// How often a transaction is tried before its transient failure is returned.
pub(crate) const ATTEMPTS: u32 = 60;

/// Starts a session with a transaction.
pub(crate) async fn begin(store: &MongoStore) -> Result<ClientSession> {
    let mut s = store.client.start_session().await.map_err(db)?;
    s.start_transaction().await.map_err(db)?;
    Ok(s)
}

/// Commits, retrying the commit itself while its outcome is unknown.
pub(crate) async fn commit(s: &mut ClientSession) -> Result<()> {
    let mut tries = 0;
    loop {
        match s.commit_transaction().await {
            Ok(()) => return Ok(()),
            Err(e) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) && tries < 3 => {
                tries += 1;
            }
            Err(e) => return Err(db(e)),
        }
    }
}

/// Aborts, ignoring failures (the server drops the transaction anyway).
pub(crate) async fn abort(s: &mut ClientSession) {
    let _ = s.abort_transaction().await;
}

/// Waits a little longer after each conflict, with jitter, so racing
/// transactions spread out.
pub(crate) async fn backoff(attempt: u32) {
    let base = 1u64 << attempt.min(6);
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % (base + 1);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

/// Runs `$body` (a block evaluating to `Result<T>`, using the session `$s`) in a
/// transaction, retrying the whole transaction on transient failures.
macro_rules! transaction {
    ($store:expr, |$s:ident| $body:block) => {{
        let mut attempt: u32 = 0;
        let _turn = $store.turn().await;
        loop {
            let mut $s = $crate::tx::begin(&$store).await?;
            let outcome: ems_core::Result<_> = async { $body }.await;
            let failure = match outcome {
                Ok(v) => match $crate::tx::commit(&mut $s).await {
                    Ok(()) => break Ok(v),
                    Err(e) => e,
                },
                Err(e) => {
                    $crate::tx::abort(&mut $s).await;
                    e
                }
            };
            attempt += 1;
            if !$crate::error::is_transient(&failure) || attempt >= $crate::tx::ATTEMPTS {
                break Err(failure);
            }
            $crate::tx::backoff(attempt).await;
        }
    }};
}
pub(crate) use transaction;

/// A change that lost a race with another transaction; the whole transaction is
/// retried from the start.
#[derive(Debug)]
pub(crate) struct Conflict(pub(crate) &'static str);

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} changed concurrently", self.0)
    }
}

impl std::error::Error for Conflict {}

/// The error a lost race maps to (retryable; the transaction macro retries it).
pub(crate) fn conflict(what: &'static str) -> ems_core::Error {
    ems_core::Error::Unavailable {
        retry_after: None,
        source: Box::new(Conflict(what)),
    }
}

/// Checks that document `id` of `collection` is still at revision `rev` (nobody
/// changed it since this transaction did) and moves it to `rev + 1`. Transactions
/// that "lock" a document by writing its revision first call this before they
/// commit, so they are correct even where the server detects no write conflicts.
pub(crate) async fn seal(
    store: &MongoStore,
    s: &mut ClientSession,
    collection: &'static str,
    id: mongodb::bson::Bson,
    rev: i64,
) -> Result<()> {
    let done = store
        .col(collection)
        .update_one(
            mongodb::bson::doc! { "_id": id, "rev": rev },
            mongodb::bson::doc! { "$inc": { "rev": 1_i64 } },
        )
        .session(&mut *s)
        .await
        .map_err(db)?;
    if done.matched_count == 1 {
        Ok(())
    } else {
        Err(conflict(collection))
    }
}
