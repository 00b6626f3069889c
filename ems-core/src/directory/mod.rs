//! Organizations (who runs events) and user profiles (who buys and organizes).
//!
//! Password handling is not here: hosts authenticate and hand ems an [`Actor`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{OrganizationId, UserId};
use crate::{Actor, Ems, Error, Result};

/// An organization that runs events and owns facilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Organization {
    /// Its id.
    pub id: OrganizationId,
    /// Display name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// The platform role of a user profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Buys tickets.
    Customer,
    /// Runs events for an organization.
    Organizer,
    /// Administers the platform.
    Admin,
}

/// A user's profile (no credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserProfile {
    /// Its id.
    pub id: UserId,
    /// Unique, stored lower-case.
    pub email: String,
    /// Name shown on tickets and receipts.
    pub display_name: String,
    /// Platform role.
    pub role: Role,
    /// The organization an organizer belongs to.
    pub organization: Option<OrganizationId>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl UserProfile {
    /// The [`Actor`] this profile acts as.
    pub fn actor(&self) -> Actor {
        match (self.role, self.organization) {
            (Role::Admin, _) => Actor::Admin { user: self.id },
            (Role::Organizer, Some(organization)) => Actor::Organizer {
                user: self.id,
                organization,
            },
            _ => Actor::Customer { user: self.id },
        }
    }
}

/// Input for [`Ems::register_user`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewUser {
    /// Email address (unique, case-insensitive).
    pub email: String,
    /// Name shown on tickets.
    pub display_name: String,
    /// Platform role.
    pub role: Role,
    /// Required for organizers.
    pub organization: Option<OrganizationId>,
}

/// Storage port for organizations and user profiles.
///
/// # Contract
/// - `insert_user` refuses a second profile with the same (lower-cased) email with
///   [`Error::AlreadyExists`] and stores nothing.
/// - lookups return `Ok(None)` for unknown ids.
#[async_trait]
pub trait DirectoryStore: Send + Sync + 'static {
    /// Stores a new organization.
    async fn insert_organization(&self, org: &Organization) -> Result<()>;
    /// Reads an organization.
    async fn organization(&self, id: OrganizationId) -> Result<Option<Organization>>;
    /// Stores a new user profile; the email must be unused.
    async fn insert_user(&self, user: &UserProfile) -> Result<()>;
    /// Reads a user profile.
    async fn user(&self, id: UserId) -> Result<Option<UserProfile>>;
    /// Finds a profile by email (case-insensitive).
    async fn user_by_email(&self, email: &str) -> Result<Option<UserProfile>>;
}

fn validate_name(field: &'static str, name: &str, max: usize) -> Result<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    Ok(trimmed.to_owned())
}

impl Ems {
    /// Creates an organization. Admins and the system only.
    pub async fn create_organization(&self, actor: &Actor, name: &str) -> Result<Organization> {
        actor.require_privileged("create organization")?;
        let org = Organization {
            id: OrganizationId::new(),
            name: validate_name("name", name, 200)?,
            created_at: self.now(),
        };
        self.port().insert_organization(&org).await?;
        Ok(org)
    }

    /// Reads an organization.
    pub async fn organization(&self, id: OrganizationId) -> Result<Organization> {
        self.port()
            .organization(id)
            .await?
            .ok_or_else(|| Error::not_found("organization", id))
    }

    /// Registers a user profile. Anyone may register a customer; organizers and
    /// admins are created by admins (or the system).
    pub async fn register_user(&self, actor: &Actor, new: NewUser) -> Result<UserProfile> {
        if new.role != Role::Customer {
            actor.require_privileged("register organizer or admin")?;
        }
        let email = new.email.trim().to_lowercase();
        let at = email.find('@');
        if !matches!(at, Some(i) if i > 0 && i + 1 < email.len())
            || email.len() > 254
            || email.contains(char::is_whitespace)
        {
            return Err(Error::invalid(
                "email",
                format!("{:?} is not an email address", new.email),
            ));
        }
        let organization = match (new.role, new.organization) {
            (Role::Organizer, None) => {
                return Err(Error::invalid(
                    "organization",
                    "an organizer belongs to an organization",
                ))
            }
            (Role::Organizer, Some(org)) => {
                self.organization(org).await?;
                Some(org)
            }
            (_, Some(_)) => {
                return Err(Error::invalid(
                    "organization",
                    "only organizers belong to an organization",
                ))
            }
            (_, None) => None,
        };
        let user = UserProfile {
            id: UserId::new(),
            email,
            display_name: validate_name("display_name", &new.display_name, 200)?,
            role: new.role,
            organization,
            created_at: self.now(),
        };
        self.port().insert_user(&user).await?;
        Ok(user)
    }

    /// Reads a user profile: the user itself or an admin.
    pub async fn user(&self, actor: &Actor, id: UserId) -> Result<UserProfile> {
        if actor.user() != Some(id) && !actor.is_privileged() {
            return Err(Error::forbidden(
                "read user",
                "only the user itself or an admin",
            ));
        }
        self.port()
            .user(id)
            .await?
            .ok_or_else(|| Error::not_found("user", id))
    }
}
