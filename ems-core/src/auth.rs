//! Who is calling: the [`Actor`] every service call takes, and the rules of who may do what.
//!
//! Authentication (passwords, tokens) is the host's job; ems only decides what an
//! authenticated actor may do.

use serde::{Deserialize, Serialize};

use crate::id::{OrganizationId, UserId};
use crate::{Error, Result};

/// The party on whose behalf a service call is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "role", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Actor {
    /// Nobody signed in: may read published events and availability.
    Anonymous,
    /// A buyer: may buy for itself and read its own bookings.
    Customer {
        /// The customer's user id.
        user: UserId,
    },
    /// A member of an organization: manages that organization's events and checks tickets in.
    Organizer {
        /// The organizer's user id.
        user: UserId,
        /// The organization it acts for.
        organization: OrganizationId,
    },
    /// A platform administrator: may do everything.
    Admin {
        /// The admin's user id.
        user: UserId,
    },
    /// The host application itself (sweepers, webhooks, migrations).
    System,
}

impl Actor {
    /// The user behind this actor, if any.
    pub fn user(&self) -> Option<UserId> {
        match *self {
            Actor::Customer { user } | Actor::Organizer { user, .. } | Actor::Admin { user } => {
                Some(user)
            }
            Actor::Anonymous | Actor::System => None,
        }
    }

    /// Admins and the system act on anything.
    pub fn is_privileged(&self) -> bool {
        matches!(self, Actor::Admin { .. } | Actor::System)
    }

    /// Whether the actor manages `org`'s resources (its organizers, admins, the system).
    pub fn manages(&self, org: OrganizationId) -> bool {
        match *self {
            Actor::Organizer { organization, .. } => organization == org,
            _ => self.is_privileged(),
        }
    }

    /// Ok if [`manages`](Self::manages) `org`, else `Forbidden` naming `action`.
    pub fn require_manages(&self, org: OrganizationId, action: &'static str) -> Result<()> {
        if self.manages(org) {
            Ok(())
        } else if matches!(self, Actor::Organizer { .. }) {
            Err(Error::forbidden(
                action,
                "organizer of another organization",
            ))
        } else {
            Err(Error::forbidden(
                action,
                "requires an organizer of the owning organization or an admin",
            ))
        }
    }

    /// Ok for admins and the system.
    pub fn require_privileged(&self, action: &'static str) -> Result<()> {
        if self.is_privileged() {
            Ok(())
        } else {
            Err(Error::forbidden(action, "requires an admin"))
        }
    }

    /// The customer a purchase is made for: a customer buys for itself; admins and
    /// the system buy on behalf of `on_behalf_of`.
    pub fn purchaser(&self, on_behalf_of: Option<UserId>, action: &'static str) -> Result<UserId> {
        match (*self, on_behalf_of) {
            (Actor::Customer { user }, None) => Ok(user),
            (Actor::Customer { user }, Some(other)) if other == user => Ok(user),
            (Actor::Customer { .. }, Some(_)) => Err(Error::forbidden(
                action,
                "customers buy only for themselves",
            )),
            (Actor::Organizer { user, .. }, None) => Ok(user),
            (Actor::Organizer { user, .. }, Some(other)) if other == user => Ok(user),
            (a, Some(other)) if a.is_privileged() => Ok(other),
            (Actor::Admin { user }, None) => Ok(user),
            (Actor::Anonymous, _) => Err(Error::forbidden(action, "sign in to buy tickets")),
            _ => Err(Error::invalid(
                "customer",
                "the system must name the customer it buys for",
            )),
        }
    }

    /// Ok if the actor is `owner`, or privileged, or manages `org`.
    pub fn require_owner_or_manager(
        &self,
        owner: UserId,
        org: OrganizationId,
        action: &'static str,
    ) -> Result<()> {
        if self.user() == Some(owner) || self.manages(org) {
            Ok(())
        } else {
            Err(Error::forbidden(
                action,
                "only the owner, its event's organizers or an admin",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organizer_of_another_organization_is_refused() {
        let org = OrganizationId::new();
        let other = Actor::Organizer {
            user: UserId::new(),
            organization: OrganizationId::new(),
        };
        assert!(matches!(
            other.require_manages(org, "publish"),
            Err(Error::Forbidden { .. })
        ));
        let mine = Actor::Organizer {
            user: UserId::new(),
            organization: org,
        };
        assert!(mine.require_manages(org, "publish").is_ok());
        assert!(Actor::System.require_manages(org, "publish").is_ok());
        assert!(Actor::Anonymous.require_manages(org, "publish").is_err());
    }

    #[test]
    fn customers_buy_only_for_themselves() {
        let me = UserId::new();
        let c = Actor::Customer { user: me };
        assert_eq!(c.purchaser(None, "hold").unwrap(), me);
        assert!(c.purchaser(Some(UserId::new()), "hold").is_err());
        assert!(Actor::Anonymous.purchaser(None, "hold").is_err());
        let other = UserId::new();
        assert_eq!(Actor::System.purchaser(Some(other), "hold").unwrap(), other);
        assert!(Actor::System.purchaser(None, "hold").is_err());
    }
}
