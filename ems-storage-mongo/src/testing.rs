//! Throwaway databases for tests and benchmarks (feature `testing`).
//!
//! The server comes from `MONGODB_URL` (default `mongodb://127.0.0.1:27017`).
//! Each call uses a new database with a unique name, so tests run in parallel and
//! never see each other's documents. An unreachable server is an error, never a
//! silent skip.
//!
//! The names carry their creation time ([`ems_core::testkit::throwaway`]), and
//! the first call of each process for a prefix drops that prefix's databases
//! left by runs more than an hour ago, so they do not pile up on the server.

use std::time::{Duration, SystemTime};

use ems_core::testkit::throwaway;
use ems_core::{Error, Result};
use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::Client;

use crate::{db, Compatibility, MongoStore};

/// The server tests run against when `MONGODB_URL` is not set.
pub const DEFAULT_URL: &str = "mongodb://127.0.0.1:27017";

/// The server URL tests use.
pub fn server_url() -> String {
    std::env::var("MONGODB_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A client of the test server, checked to answer.
pub async fn client() -> Result<Client> {
    let url = server_url();
    let mut options = ClientOptions::parse(&url).await.map_err(db)?;
    options.server_selection_timeout = Some(Duration::from_secs(5));
    let client = Client::with_options(options).map_err(db)?;
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .map_err(|e| Error::Unavailable {
            retry_after: None,
            source: format!("cannot reach the test MongoDB at {url}: {e}").into(),
        })?;
    Ok(client)
}

/// The kind of test server: `EMS_MONGO_COMPAT=emulator` for the `nx-27017`
/// emulator (the test command sets it when it starts one), a real MongoDB
/// otherwise.
pub fn compatibility() -> Compatibility {
    match std::env::var("EMS_MONGO_COMPAT").as_deref() {
        Ok("emulator") => Compatibility::SingleWriterEmulator,
        _ => Compatibility::MongoDb,
    }
}

/// A store on a fresh database `<prefix>_<uuid v7>` of the test server,
/// indexes made; see [`throwaway::name`] for what a prefix may be. The first
/// call for each prefix in a process also drops that prefix's stale databases
/// ([`throwaway::is_stale`]).
pub async fn fresh_store(prefix: &str) -> Result<MongoStore> {
    let name = throwaway::name(prefix)?;
    let client = client().await?;
    if throwaway::first_for("mongodb", prefix) {
        drop_stale(&client, prefix).await?;
    }
    let store = MongoStore::from_client(client, &name).with_compatibility(compatibility());
    store.ensure_indexes().await?;
    Ok(store)
}

/// Drops `prefix`'s stale throwaway databases (one another run drops first is
/// left to it).
async fn drop_stale(client: &Client, prefix: &str) -> Result<()> {
    let now = SystemTime::now();
    for name in client.list_database_names().await.map_err(db)? {
        if throwaway::is_stale(&name, prefix, now) {
            let _ = client.database(&name).drop().await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_call_drops_its_prefixs_stale_databases_only() {
        let client = client().await.expect("the test MongoDB");
        let throwaway::SweepCase {
            prefix,
            stale,
            recent,
        } = throwaway::SweepCase::new();
        for name in [&stale, &recent] {
            // A database exists once it holds something.
            client
                .database(name)
                .collection("probe")
                .insert_one(doc! { "x": 1 })
                .await
                .unwrap();
        }

        let fresh = fresh_store(&prefix).await.unwrap();
        fresh
            .database()
            .collection("probe")
            .insert_one(doc! { "x": 1 })
            .await
            .unwrap();

        let left: Vec<String> = client
            .list_database_names()
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        for name in &left {
            client.database(name).drop().await.unwrap();
        }
        assert!(!left.contains(&stale), "the stale database is dropped");
        assert!(left.contains(&recent), "a recent one is kept");
        assert_eq!(left.len(), 2, "{left:?}");
    }

    #[tokio::test]
    async fn a_prefix_that_cannot_name_a_database_is_refused_before_connecting() {
        let err = fresh_store("Not-A-Prefix").await.unwrap_err();
        assert!(matches!(&err, Error::InvalidInput { field, .. } if *field == "prefix"));
    }
}
