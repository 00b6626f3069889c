//! Authentication: argon2id password hashes, short-lived JWT access tokens and
//! rotating refresh tokens whose reuse revokes their whole family, password
//! reset by a token sent through a [`Notifier`].

mod extract;
#[cfg(feature = "mongo")]
mod mongo;
#[cfg(feature = "postgres")]
mod postgres;
mod store;

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use ems_core::clock::Clock;
use ems_core::directory::{Role, UserProfile};
use ems_core::id::{OrganizationId, UserId};
use ems_core::Actor;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

pub use extract::{Authenticated, MaybeAuthenticated};
#[cfg(feature = "mongo")]
pub use mongo::MongoCredentials;
#[cfg(feature = "postgres")]
pub use postgres::PostgresCredentials;
pub use store::{CredentialStore, MemoryCredentials, RefreshRecord, RefreshUse, TokenDigest};

use crate::error::ApiError;

/// Token lifetimes and the signing secret.
#[derive(Clone)]
pub struct AuthConfig {
    /// HMAC secret for access tokens (at least 32 bytes).
    pub secret: Vec<u8>,
    /// Access token lifetime (default 15 minutes).
    pub access_ttl: Duration,
    /// Refresh token lifetime (default 7 days).
    pub refresh_ttl: Duration,
    /// Password-reset token lifetime (default 30 minutes).
    pub reset_ttl: Duration,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("secret", &"<redacted>")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("reset_ttl", &self.reset_ttl)
            .finish()
    }
}

impl AuthConfig {
    /// Default lifetimes with `secret`.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
            access_ttl: Duration::minutes(15),
            refresh_ttl: Duration::days(7),
            reset_ttl: Duration::minutes(30),
        }
    }
}

/// Delivers password-reset tokens to their users (email, SMS …).
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Sends `token` to `user`, who asked to reset their password.
    async fn password_reset(&self, user: &UserProfile, token: &str);
}

/// The default notifier: logs that a reset was requested (the token itself only
/// at debug level, for local development).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn password_reset(&self, user: &UserProfile, token: &str) {
        tracing::info!(user = %user.id, "password reset requested");
        tracing::debug!(user = %user.id, token, "password reset token");
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: UserId,
    /// Platform role.
    pub role: Role,
    /// An organizer's organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<OrganizationId>,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
}

impl Claims {
    /// The core actor these claims act as.
    pub fn actor(&self) -> Actor {
        match (self.role, self.org) {
            (Role::Admin, _) => Actor::Admin { user: self.sub },
            (Role::Organizer, Some(organization)) => Actor::Organizer {
                user: self.sub,
                organization,
            },
            _ => Actor::Customer { user: self.sub },
        }
    }
}

/// An access token and the refresh token that renews it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenPair {
    /// JWT (HS256) to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Opaque token for `POST /auth/refresh`; each use returns a new one, and
    /// presenting a used one revokes every token of its login.
    pub refresh_token: String,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: i64,
}

/// Issues and checks credentials.
pub struct AuthService {
    config: AuthConfig,
    encoding: EncodingKey,
    decoding: DecodingKey,
    store: Arc<dyn CredentialStore>,
    clock: Arc<dyn Clock>,
    notifier: Arc<dyn Notifier>,
    /// A hash verified when the email is unknown, so timing does not tell.
    dummy_hash: String,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The longest password accepted (hashing cost is bounded).
pub const MAX_PASSWORD_CHARS: usize = 256;

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

impl AuthService {
    /// A service over `store`, timing by `clock`, delivering resets by `notifier`.
    pub fn new(
        config: AuthConfig,
        store: Arc<dyn CredentialStore>,
        clock: Arc<dyn Clock>,
        notifier: Arc<dyn Notifier>,
    ) -> Result<Self, ApiError> {
        if config.secret.len() < 32 {
            return Err(ApiError::invalid("jwt_secret", "must be at least 32 bytes"));
        }
        let dummy_hash = hash_password("not-a-real-password-0")?;
        Ok(Self {
            encoding: EncodingKey::from_secret(&config.secret),
            decoding: DecodingKey::from_secret(&config.secret),
            config,
            store,
            clock,
            notifier,
            dummy_hash,
        })
    }

    /// The credential store.
    pub fn store(&self) -> &Arc<dyn CredentialStore> {
        &self.store
    }

    /// Sets a user's password after checking its length.
    pub async fn set_password(&self, user: UserId, password: &str) -> Result<(), ApiError> {
        let phc = hash_password(password)?;
        self.store.set_password(user, phc).await?;
        Ok(())
    }

    /// Checks `password` for `user` (or burns the same time if `user` is `None`).
    pub async fn verify(
        &self,
        user: Option<&UserProfile>,
        password: &str,
    ) -> Result<bool, ApiError> {
        let stored = match user {
            Some(u) => self.store.password(u.id).await?,
            None => None,
        };
        let phc = stored.as_deref().unwrap_or(&self.dummy_hash);
        let ok = verify_password(phc, password);
        Ok(ok && stored.is_some())
    }

    /// Issues a new login: an access token and the first refresh token of a new family.
    pub async fn login(&self, user: &UserProfile) -> Result<TokenPair, ApiError> {
        self.issue(user, uuid::Uuid::now_v7()).await
    }

    async fn issue(&self, user: &UserProfile, family: uuid::Uuid) -> Result<TokenPair, ApiError> {
        let now = self.clock.now();
        let claims = Claims {
            sub: user.id,
            role: user.role,
            org: user.organization,
            iat: now.timestamp(),
            exp: (now + self.config.access_ttl).timestamp(),
        };
        let access_token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
                .map_err(ApiError::internal)?;
        let refresh_token = random_token();
        self.store
            .insert_refresh(RefreshRecord {
                digest: digest(&refresh_token),
                family,
                user: user.id,
                expires_at: now + self.config.refresh_ttl,
            })
            .await?;
        Ok(TokenPair {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_in: self.config.access_ttl.num_seconds(),
            refresh_token,
            refresh_expires_in: self.config.refresh_ttl.num_seconds(),
        })
    }

    /// Checks an access token's signature and expiry (on the service clock).
    pub fn verify_access(&self, token: &str) -> Result<Claims, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked below against the service clock, not the wall clock.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "sub"].into_iter().map(String::from).collect();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| ApiError::unauthenticated(format!("invalid access token: {e}")))?;
        if data.claims.exp <= self.clock.now().timestamp() {
            return Err(ApiError::unauthenticated("access token expired"));
        }
        Ok(data.claims)
    }

    /// Spends a refresh token: its user and family, to rotate with
    /// [`AuthService::rotate`]. A token spent before revokes its family.
    pub async fn refresh(&self, token: &str) -> Result<(UserId, uuid::Uuid), ApiError> {
        match self
            .store
            .use_refresh(digest(token), self.clock.now())
            .await?
        {
            RefreshUse::Fresh(r) => Ok((r.user, r.family)),
            RefreshUse::Reused { family, user } => {
                tracing::warn!(%user, %family, "refresh token reused: family revoked");
                Err(ApiError::unauthenticated(
                    "refresh token already used: every session of this login is revoked",
                ))
            }
            RefreshUse::Unknown => Err(ApiError::unauthenticated(
                "unknown or expired refresh token",
            )),
        }
    }

    /// Issues the next pair of `family` for `user` (after [`AuthService::refresh`]).
    pub async fn rotate(
        &self,
        user: &UserProfile,
        family: uuid::Uuid,
    ) -> Result<TokenPair, ApiError> {
        self.issue(user, family).await
    }

    /// Revokes the login `token` belongs to.
    pub async fn logout(&self, token: &str) -> Result<(), ApiError> {
        match self
            .store
            .use_refresh(digest(token), self.clock.now())
            .await?
        {
            RefreshUse::Fresh(r) => {
                self.store.revoke_family(r.family).await?;
                Ok(())
            }
            // Logging out twice is fine; a replayed token is already handled.
            RefreshUse::Reused { .. } | RefreshUse::Unknown => Ok(()),
        }
    }

    /// Starts a password reset for `user`: a token delivered by the notifier.
    pub async fn request_reset(&self, user: &UserProfile) -> Result<(), ApiError> {
        let token = random_token();
        self.store
            .insert_reset(
                digest(&token),
                user.id,
                self.clock.now() + self.config.reset_ttl,
            )
            .await?;
        self.notifier.password_reset(user, &token).await;
        Ok(())
    }

    /// Finishes a reset: sets the new password and revokes every login of the user.
    pub async fn reset(&self, token: &str, password: &str) -> Result<UserId, ApiError> {
        // Check the password before spending the token, so a weak one can be retried.
        let phc = hash_password(password)?;
        let user = self
            .store
            .take_reset(digest(token), self.clock.now())
            .await?
            .ok_or_else(|| ApiError::invalid("token", "unknown, used or expired reset token"))?;
        self.store.set_password(user, phc).await?;
        self.store.revoke_user(user).await?;
        Ok(user)
    }

    /// The service clock's now.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// Hashes a password with argon2id (default parameters, random salt).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            "password",
            format!("at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            "password",
            format!("at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}
