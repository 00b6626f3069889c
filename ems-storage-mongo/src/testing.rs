//! Throwaway databases for tests and benchmarks (feature `testing`).
//!
//! The server comes from `MONGODB_URL` (default `mongodb://127.0.0.1:27017`).
//! Each call uses a new database with a unique name, so tests run in parallel and
//! never see each other's documents. An unreachable server is an error, never a
//! silent skip.

use std::time::Duration;

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

/// A store on a fresh database `<prefix>_<random>` of the test server, indexes made.
pub async fn fresh_store(prefix: &str) -> Result<MongoStore> {
    let client = client().await?;
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let store = MongoStore::from_client(client, &name).with_compatibility(compatibility());
    store.ensure_indexes().await?;
    Ok(store)
}
