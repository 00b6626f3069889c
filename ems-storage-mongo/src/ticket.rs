use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::id::{BookingId, EventId, TicketId};
use ems_core::outbox::DomainEvent;
use ems_core::ticket::*;
use ems_core::Result;
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};

use crate::bsonx::{body, from_body};
use crate::outbox::record;
use crate::tx::transaction;
use crate::{db, MongoStore};

#[async_trait]
impl TicketStore for MongoStore {
    async fn ticket(&self, id: TicketId) -> Result<Option<Ticket>> {
        self.col("tickets")
            .find_one(doc! { "_id": self.uid(id.0) })
            .await
            .map_err(db)?
            .map(|d| from_body("ticket", &d))
            .transpose()
    }

    async fn tickets_for_booking(&self, booking: BookingId) -> Result<Vec<Ticket>> {
        let docs: Vec<Document> = self
            .col("tickets")
            .find(doc! { "booking_id": self.uid(booking.0) })
            .sort(doc! { "seq": 1 })
            .await
            .map_err(db)?
            .try_collect()
            .await
            .map_err(db)?;
        docs.iter().map(|d| from_body("ticket", d)).collect()
    }

    async fn check_in(
        &self,
        ticket: TicketId,
        event: EventId,
        now: DateTime<Utc>,
    ) -> Result<CheckIn> {
        transaction!(self, |s| {
            // Writing the ticket first makes racing scanners conflict: one admits.
            let Some(d) = self
                .col("tickets")
                .find_one_and_update(
                    doc! { "_id": self.uid(ticket.0) },
                    doc! { "$inc": { "rev": 1_i64 } },
                )
                .return_document(mongodb::options::ReturnDocument::After)
                .session(&mut s)
                .await
                .map_err(db)?
            else {
                return Ok(CheckIn::Refused {
                    refusal: CheckInRefusal::Unknown,
                });
            };
            let mut t: Ticket = from_body("ticket", &d)?;
            let rev = crate::bsonx::int("ticket", &d, "rev")?;
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
            t.checked_in_at = Some(now);
            self.col("tickets")
                .update_one(
                    doc! { "_id": self.uid(ticket.0) },
                    doc! { "$set": { "body.checked_in_at": body(&now)? } },
                )
                .session(&mut s)
                .await
                .map_err(db)?;
            crate::tx::seal(self, &mut s, "tickets", self.uid(ticket.0), rev).await?;
            record(
                self,
                &mut s,
                now,
                [DomainEvent::TicketCheckedIn {
                    event_id: event,
                    ticket_id: ticket,
                }],
            )
            .await?;
            Ok(CheckIn::Admitted { ticket: t })
        })
    }
}
