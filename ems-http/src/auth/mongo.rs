//! Credentials in MongoDB, beside the ems collections, so that every server
//! process over the database shares logins, token families and resets. Each
//! operation is one single-document write (no transaction needed). Token
//! digests are stored as hex text and ids as UUID text.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::id::UserId;
use ems_core::{Error, Result};
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use uuid::Uuid;

use super::store::{CredentialStore, RefreshRecord, RefreshUse, TokenDigest};

fn db(e: mongodb::error::Error) -> Error {
    use mongodb::error::ErrorKind;
    let retryable = e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR)
        || e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR)
        || matches!(
            *e.kind,
            ErrorKind::Io(_)
                | ErrorKind::ServerSelection { .. }
                | ErrorKind::ConnectionPoolCleared { .. }
        );
    if retryable {
        Error::Unavailable {
            retry_after: None,
            source: Box::new(e),
        }
    } else {
        Error::Backend {
            backend: "mongo",
            source: Box::new(e),
        }
    }
}

fn date(t: DateTime<Utc>) -> Bson {
    Bson::DateTime(mongodb::bson::DateTime::from_millis(t.timestamp_millis()))
}

fn hex(d: &TokenDigest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn corrupt(collection: &'static str, d: &Document, reason: &str) -> Error {
    Error::Corrupt {
        entity: collection,
        id: d
            .get("_id")
            .map_or_else(|| "?".to_owned(), ToString::to_string),
        reason: reason.to_owned(),
    }
}

fn uuid_field(collection: &'static str, d: &Document, field: &str) -> Result<Uuid> {
    d.get_str(field)
        .ok()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| corrupt(collection, d, &format!("{field}: expected a UUID string")))
}

fn date_field(collection: &'static str, d: &Document, field: &str) -> Result<DateTime<Utc>> {
    d.get_datetime(field)
        .ok()
        .and_then(|t| DateTime::from_timestamp_millis(t.timestamp_millis()))
        .ok_or_else(|| corrupt(collection, d, &format!("{field}: expected a date")))
}

/// A [`CredentialStore`] on a MongoDB database (the ems store's, typically).
#[derive(Debug, Clone)]
pub struct MongoCredentials {
    db: Database,
}

impl MongoCredentials {
    /// Uses `database`; call [`MongoCredentials::ensure_indexes`] once.
    pub fn new(database: Database) -> Self {
        Self { db: database }
    }

    fn col(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// Creates the indexes the credential collections use (idempotent).
    pub async fn ensure_indexes(&self) -> Result<()> {
        for (collection, keys) in [
            ("http_refresh_tokens", doc! { "user": 1 }),
            ("http_refresh_tokens", doc! { "family": 1 }),
        ] {
            self.col(collection)
                .create_index(
                    IndexModel::builder()
                        .keys(keys)
                        .options(IndexOptions::builder().build())
                        .build(),
                )
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    async fn revoked(&self, family: Uuid) -> Result<bool> {
        Ok(self
            .col("http_revoked_families")
            .find_one(doc! { "_id": family.to_string() })
            .await
            .map_err(db)?
            .is_some())
    }
}

#[async_trait]
impl CredentialStore for MongoCredentials {
    async fn set_password(&self, user: UserId, phc: String) -> Result<()> {
        self.col("http_passwords")
            .update_one(
                doc! { "_id": user.to_string() },
                doc! { "$set": { "phc": phc } },
            )
            .upsert(true)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn password(&self, user: UserId) -> Result<Option<String>> {
        let d = self
            .col("http_passwords")
            .find_one(doc! { "_id": user.to_string() })
            .await
            .map_err(db)?;
        d.map(|d| {
            d.get_str("phc")
                .map(str::to_owned)
                .map_err(|_| corrupt("http_passwords", &d, "phc: expected a string"))
        })
        .transpose()
    }

    async fn insert_refresh(&self, record: RefreshRecord) -> Result<()> {
        self.col("http_refresh_tokens")
            .insert_one(doc! {
                "_id": hex(&record.digest),
                "family": record.family.to_string(),
                "user": record.user.to_string(),
                "expires_at": date(record.expires_at),
                "used": false,
            })
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn use_refresh(&self, digest: TokenDigest, now: DateTime<Utc>) -> Result<RefreshUse> {
        let id = hex(&digest);
        let Some(d) = self
            .col("http_refresh_tokens")
            .find_one(doc! { "_id": &id })
            .await
            .map_err(db)?
        else {
            return Ok(RefreshUse::Unknown);
        };
        let family = uuid_field("http_refresh_tokens", &d, "family")?;
        let user = UserId(uuid_field("http_refresh_tokens", &d, "user")?);
        let expires_at = date_field("http_refresh_tokens", &d, "expires_at")?;
        // Whether the family was revoked is read before the token is spent,
        // as PostgreSQL reads it in the spending statement: the losers of a
        // concurrent reuse revoke the family only after the winner spent the
        // token, and must not turn the winner's use into a reuse.
        let revoked = self.revoked(family).await?;
        // One conditional update: of two concurrent uses, one finds it unused.
        let spent = self
            .col("http_refresh_tokens")
            .find_one_and_update(
                doc! { "_id": &id, "used": false },
                doc! { "$set": { "used": true } },
            )
            .await
            .map_err(db)?;
        if spent.is_none() {
            self.revoke_family(family).await?;
            return Ok(RefreshUse::Reused { family, user });
        }
        if revoked {
            return Ok(RefreshUse::Reused { family, user });
        }
        if expires_at <= now {
            return Ok(RefreshUse::Unknown);
        }
        Ok(RefreshUse::Fresh(RefreshRecord {
            digest,
            family,
            user,
            expires_at,
        }))
    }

    async fn revoke_family(&self, family: Uuid) -> Result<bool> {
        self.col("http_revoked_families")
            .update_one(
                doc! { "_id": family.to_string() },
                doc! { "$set": { "revoked": true } },
            )
            .upsert(true)
            .await
            .map_err(db)?;
        Ok(self
            .col("http_refresh_tokens")
            .find_one(doc! { "family": family.to_string() })
            .await
            .map_err(db)?
            .is_some())
    }

    async fn revoke_user(&self, user: UserId) -> Result<()> {
        use futures::TryStreamExt as _;
        let tokens: Vec<Document> = self
            .col("http_refresh_tokens")
            .find(doc! { "user": user.to_string() })
            .projection(doc! { "family": 1 })
            .await
            .map_err(db)?
            .try_collect()
            .await
            .map_err(db)?;
        let mut families: Vec<Uuid> = tokens
            .iter()
            .map(|d| uuid_field("http_refresh_tokens", d, "family"))
            .collect::<Result<_>>()?;
        families.sort();
        families.dedup();
        for family in families {
            self.revoke_family(family).await?;
        }
        Ok(())
    }

    async fn insert_reset(
        &self,
        digest: TokenDigest,
        user: UserId,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        self.col("http_password_resets")
            .insert_one(doc! {
                "_id": hex(&digest),
                "user": user.to_string(),
                "expires_at": date(expires_at),
            })
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn take_reset(&self, digest: TokenDigest, now: DateTime<Utc>) -> Result<Option<UserId>> {
        let Some(d) = self
            .col("http_password_resets")
            .find_one_and_delete(doc! { "_id": hex(&digest) })
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let expires_at = date_field("http_password_resets", &d, "expires_at")?;
        if expires_at <= now {
            return Ok(None);
        }
        Ok(Some(UserId(uuid_field(
            "http_password_resets",
            &d,
            "user",
        )?)))
    }
}
