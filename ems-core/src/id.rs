//! Typed identifiers. Each is a UUID v7, so ids sort by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh id (UUID v7: time-ordered, 74 random bits).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, "({})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|e| crate::Error::invalid($label, e.to_string()))
            }
        }
    };
}

typed_id!(/// Identifies an [`Organization`](crate::directory::Organization).
    OrganizationId, "organization_id");
typed_id!(/// Identifies a user profile.
    UserId, "user_id");
typed_id!(/// Identifies an [`Event`](crate::event::Event).
    EventId, "event_id");
typed_id!(/// Identifies a [`TicketTier`](crate::inventory::TicketTier).
    TierId, "tier_id");
typed_id!(/// Identifies a shared [`Quota`](crate::inventory::SharedQuota).
    QuotaId, "quota_id");
typed_id!(/// Identifies a [`Hold`](crate::inventory::Hold).
    HoldId, "hold_id");
typed_id!(/// Identifies a [`Booking`](crate::booking::Booking).
    BookingId, "booking_id");
typed_id!(/// Identifies a [`Payment`](crate::payment::Payment).
    PaymentId, "payment_id");
typed_id!(/// Identifies a [`Refund`](crate::payment::Refund).
    RefundId, "refund_id");
typed_id!(/// Identifies a [`Ticket`](crate::ticket::Ticket).
    TicketId, "ticket_id");
typed_id!(/// Identifies a [`Coupon`](crate::pricing::Coupon).
    CouponId, "coupon_id");
typed_id!(/// Identifies a facility [`Resource`](crate::facility::Resource).
    ResourceId, "resource_id");
typed_id!(/// Identifies a [`FacilityBooking`](crate::facility::FacilityBooking).
    FacilityBookingId, "facility_booking_id");
typed_id!(/// Identifies a package of facility bookings made together.
    PackageId, "package_id");
