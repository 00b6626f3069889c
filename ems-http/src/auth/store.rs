//! Where credentials live: password hashes, refresh-token families and
//! password-reset tokens. Tokens are stored as SHA-256 digests, never in clear.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::id::UserId;
use ems_core::Result;
use uuid::Uuid;

/// A SHA-256 digest of a token.
pub type TokenDigest = [u8; 32];

/// One refresh token of a family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// Digest of the token.
    pub digest: TokenDigest,
    /// The family: every token rotated from one login.
    pub family: Uuid,
    /// Whose.
    pub user: UserId,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// A live token, now marked used: rotate it.
    Fresh(RefreshRecord),
    /// A token already used or of a revoked family: a replay. The family is now
    /// revoked.
    Reused {
        /// The revoked family.
        family: Uuid,
        /// Whose.
        user: UserId,
    },
    /// Expired or never issued.
    Unknown,
}

/// Storage port for credentials. Every method is atomic on its own: two
/// concurrent uses of one refresh token see one `Fresh` and one `Reused`.
#[async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// Sets (or replaces) a user's password hash (PHC string).
    async fn set_password(&self, user: UserId, phc: String) -> Result<()>;
    /// A user's password hash, if they have one.
    async fn password(&self, user: UserId) -> Result<Option<String>>;
    /// Stores a freshly issued refresh token.
    async fn insert_refresh(&self, record: RefreshRecord) -> Result<()>;
    /// Presents a refresh token: marks it used if live, revokes its family if it
    /// was used before.
    async fn use_refresh(&self, digest: TokenDigest, now: DateTime<Utc>) -> Result<RefreshUse>;
    /// Revokes one family (logout); returns whether it existed.
    async fn revoke_family(&self, family: Uuid) -> Result<bool>;
    /// Revokes every family of a user (password reset).
    async fn revoke_user(&self, user: UserId) -> Result<()>;
    /// Stores a password-reset token valid until `expires_at`.
    async fn insert_reset(
        &self,
        digest: TokenDigest,
        user: UserId,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;
    /// Consumes a reset token: its user if it is live, once.
    async fn take_reset(&self, digest: TokenDigest, now: DateTime<Utc>) -> Result<Option<UserId>>;
}

#[derive(Default)]
struct Inner {
    passwords: HashMap<UserId, String>,
    refresh: HashMap<TokenDigest, (RefreshRecord, bool)>,
    revoked: std::collections::HashSet<Uuid>,
    resets: HashMap<TokenDigest, (UserId, DateTime<Utc>)>,
}

/// Credentials in process memory: for tests, demos and single-process servers.
#[derive(Default)]
pub struct MemoryCredentials {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for MemoryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCredentials").finish_non_exhaustive()
    }
}

impl MemoryCredentials {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a map half-updated (every
        // critical section is a single insert/remove), so a poisoned lock is usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl CredentialStore for MemoryCredentials {
    async fn set_password(&self, user: UserId, phc: String) -> Result<()> {
        self.lock().passwords.insert(user, phc);
        Ok(())
    }

    async fn password(&self, user: UserId) -> Result<Option<String>> {
        Ok(self.lock().passwords.get(&user).cloned())
    }

    async fn insert_refresh(&self, record: RefreshRecord) -> Result<()> {
        self.lock().refresh.insert(record.digest, (record, false));
        Ok(())
    }

    async fn use_refresh(&self, digest: TokenDigest, now: DateTime<Utc>) -> Result<RefreshUse> {
        let mut inner = self.lock();
        let Some((record, used)) = inner.refresh.get_mut(&digest) else {
            return Ok(RefreshUse::Unknown);
        };
        let record = record.clone();
        let replay = *used;
        *used = true;
        if replay || inner.revoked.contains(&record.family) {
            inner.revoked.insert(record.family);
            return Ok(RefreshUse::Reused {
                family: record.family,
                user: record.user,
            });
        }
        if record.expires_at <= now {
            return Ok(RefreshUse::Unknown);
        }
        Ok(RefreshUse::Fresh(record))
    }

    async fn revoke_family(&self, family: Uuid) -> Result<bool> {
        let mut inner = self.lock();
        let known = inner.refresh.values().any(|(r, _)| r.family == family);
        inner.revoked.insert(family);
        Ok(known)
    }

    async fn revoke_user(&self, user: UserId) -> Result<()> {
        let mut inner = self.lock();
        let families: Vec<Uuid> = inner
            .refresh
            .values()
            .filter(|(r, _)| r.user == user)
            .map(|(r, _)| r.family)
            .collect();
        inner.revoked.extend(families);
        Ok(())
    }

    async fn insert_reset(
        &self,
        digest: TokenDigest,
        user: UserId,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        self.lock().resets.insert(digest, (user, expires_at));
        Ok(())
    }

    async fn take_reset(&self, digest: TokenDigest, now: DateTime<Utc>) -> Result<Option<UserId>> {
        Ok(self
            .lock()
            .resets
            .remove(&digest)
            .filter(|(_, expires)| *expires > now)
            .map(|(user, _)| user))
    }
}
