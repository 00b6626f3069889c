//! Tickets: issued on confirmation, one per unit, each with an unguessable signed
//! code; check-in admits a code once and says why it refuses.

mod code;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use code::{CodeError, TicketSigner};

use crate::id::{BookingId, EventId, TicketId, TierId, UserId};
use crate::{Actor, Ems, Error, Result};

/// Whether a ticket admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TicketStatus {
    /// Admits once.
    Valid,
    /// Cancelled or refunded: admits never.
    Void,
}

/// One admission to an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ticket {
    /// Its id (embedded in its code).
    pub id: TicketId,
    /// The booking it was issued for.
    pub booking_id: BookingId,
    /// The event it admits to.
    pub event_id: EventId,
    /// Its tier.
    pub tier_id: TierId,
    /// The buyer.
    pub holder: UserId,
    /// Valid or void.
    pub status: TicketStatus,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it was admitted, if it was.
    pub checked_in_at: Option<DateTime<Utc>>,
}

/// A ticket with its code (what goes on the PDF / QR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuedTicket {
    /// The ticket.
    pub ticket: Ticket,
    /// Its signed code.
    pub code: String,
}

/// Why check-in refused a code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CheckInRefusal {
    /// Not a code ems issued (garbled or forged) or no such ticket.
    Unknown,
    /// A real ticket, for another event.
    WrongEvent {
        /// The event the ticket is for.
        ticket_event: EventId,
    },
    /// Cancelled or refunded.
    Void,
    /// Already admitted.
    AlreadyCheckedIn {
        /// When.
        at: DateTime<Utc>,
    },
}

/// The answer at the door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CheckIn {
    /// Let in.
    Admitted {
        /// The ticket, now checked in.
        ticket: Ticket,
    },
    /// Refused.
    Refused {
        /// Why.
        refusal: CheckInRefusal,
    },
}

/// Storage port for tickets.
///
/// # Contract
/// - `check_in` atomically admits a valid ticket of `event` that was not yet
///   checked in (recording `now` and appending `TicketCheckedIn`) and otherwise
///   refuses with the first reason that applies: unknown, wrong event, void,
///   already checked in. Two concurrent check-ins of one ticket admit once.
#[async_trait]
pub trait TicketStore: Send + Sync + 'static {
    /// Reads a ticket.
    async fn ticket(&self, id: TicketId) -> Result<Option<Ticket>>;
    /// A booking's tickets in issue order.
    async fn tickets_for_booking(&self, booking: BookingId) -> Result<Vec<Ticket>>;
    /// Admits a ticket once.
    async fn check_in(
        &self,
        ticket: TicketId,
        event: EventId,
        now: DateTime<Utc>,
    ) -> Result<CheckIn>;
}

impl Ems {
    /// A booking's tickets with their codes: its customer, the event's organizers, admins.
    pub async fn tickets(&self, actor: &Actor, booking: BookingId) -> Result<Vec<IssuedTicket>> {
        self.booking(actor, booking).await?;
        let tickets = self.port().tickets_for_booking(booking).await?;
        Ok(tickets.into_iter().map(|t| self.issue(t)).collect())
    }

    pub(crate) fn issue(&self, ticket: Ticket) -> IssuedTicket {
        let code = self.signer().sign(ticket.id, ticket.event_id);
        IssuedTicket { ticket, code }
    }

    /// Checks a code in at `event`'s door. The event's organizers, admins and the
    /// system only. A forged or garbled code is refused without a store lookup.
    pub async fn check_in(&self, actor: &Actor, event: EventId, code: &str) -> Result<CheckIn> {
        let e = self
            .port()
            .event(event)
            .await?
            .ok_or_else(|| Error::not_found("event", event))?;
        actor.require_manages(e.organization, "check in")?;
        let (ticket_id, ticket_event) = match self.signer().verify(code) {
            Ok(parts) => parts,
            Err(_) => {
                return Ok(CheckIn::Refused {
                    refusal: CheckInRefusal::Unknown,
                })
            }
        };
        if ticket_event != event {
            return Ok(CheckIn::Refused {
                refusal: CheckInRefusal::WrongEvent { ticket_event },
            });
        }
        self.port().check_in(ticket_id, event, self.now()).await
    }
}
