use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::id::{BookingId, EventId, TicketId};
use ems_core::outbox::DomainEvent;
use ems_core::ticket::*;
use ems_core::Result;

use crate::row::{self, begin, commit, record, TICKET};
use crate::{db, PostgresStore};

#[async_trait]
impl TicketStore for PostgresStore {
    async fn ticket(&self, id: TicketId) -> Result<Option<Ticket>> {
        sqlx::query(&format!("SELECT {TICKET} FROM ems_tickets WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(row::ticket)
            .transpose()
    }

    async fn tickets_for_booking(&self, booking: BookingId) -> Result<Vec<Ticket>> {
        sqlx::query(&format!(
            "SELECT {TICKET} FROM ems_tickets WHERE booking_id = $1 ORDER BY seq"
        ))
        .bind(booking.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(row::ticket)
        .collect()
    }

    async fn check_in(
        &self,
        ticket: TicketId,
        event: EventId,
        now: DateTime<Utc>,
    ) -> Result<CheckIn> {
        let mut tx = begin(&self.pool).await?;
        // The row lock decides racing scanners: one admits, the others see when.
        let Some(t) = sqlx::query(&format!(
            "SELECT {TICKET} FROM ems_tickets WHERE id = $1 FOR UPDATE"
        ))
        .bind(ticket.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .as_ref()
        .map(row::ticket)
        .transpose()?
        else {
            return Ok(CheckIn::Refused {
                refusal: CheckInRefusal::Unknown,
            });
        };
        let refusal = if t.event_id != event {
            Some(CheckInRefusal::WrongEvent {
                ticket_event: t.event_id,
            })
        } else if t.status == TicketStatus::Void {
            Some(CheckInRefusal::Void)
        } else {
            t.checked_in_at
                .map(|at| CheckInRefusal::AlreadyCheckedIn { at })
        };
        if let Some(refusal) = refusal {
            return Ok(CheckIn::Refused { refusal });
        }
        sqlx::query("UPDATE ems_tickets SET checked_in_at = $2 WHERE id = $1")
            .bind(ticket.0)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        record(
            &mut tx,
            now,
            [DomainEvent::TicketCheckedIn {
                event_id: event,
                ticket_id: ticket,
            }],
        )
        .await?;
        commit(tx).await?;
        let mut admitted = t;
        admitted.checked_in_at = Some(now);
        Ok(CheckIn::Admitted { ticket: admitted })
    }
}
