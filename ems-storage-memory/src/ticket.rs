use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::id::{BookingId, EventId, TicketId};
use ems_core::outbox::DomainEvent;
use ems_core::ticket::*;
use ems_core::Result;

use crate::MemoryStore;

#[async_trait]
impl TicketStore for MemoryStore {
    async fn ticket(&self, id: TicketId) -> Result<Option<Ticket>> {
        Ok(self.read_at(&self.inner.tickets, &id, |s, r| {
            let t = r.tickets.iter().find(|t| t.id == id)?;
            Some(s.ticket(r, t))
        }))
    }

    async fn tickets_for_booking(&self, booking: BookingId) -> Result<Vec<Ticket>> {
        Ok(self
            .read_booking(booking, |s, r| {
                r.tickets.iter().map(|t| s.ticket(r, t)).collect()
            })
            .unwrap_or_default())
    }

    async fn check_in(
        &self,
        ticket: TicketId,
        event: EventId,
        now: DateTime<Utc>,
    ) -> Result<CheckIn> {
        let Some((shard, loc)) = self.shard_at(&self.inner.tickets, &ticket) else {
            return Ok(CheckIn::Refused {
                refusal: CheckInRefusal::Unknown,
            });
        };
        let mut s = shard.lock();
        let ticket_event = s.config.event.id;
        let Some(t) = s
            .bookings
            .at_mut(loc.slot)
            .and_then(|r| r.tickets.iter_mut().find(|t| t.id == ticket))
        else {
            return Ok(CheckIn::Refused {
                refusal: CheckInRefusal::Unknown,
            });
        };
        if ticket_event != event {
            return Ok(CheckIn::Refused {
                refusal: CheckInRefusal::WrongEvent { ticket_event },
            });
        }
        if t.status == TicketStatus::Void {
            return Ok(CheckIn::Refused {
                refusal: CheckInRefusal::Void,
            });
        }
        if let Some(at) = t.checked_in_at {
            return Ok(CheckIn::Refused {
                refusal: CheckInRefusal::AlreadyCheckedIn { at },
            });
        }
        t.checked_in_at = Some(now);
        let rec = s
            .bookings
            .at(loc.slot)
            .expect("changed above under the same lock");
        let admitted = s.ticket(
            rec,
            rec.tickets
                .iter()
                .find(|t| t.id == ticket)
                .expect("changed above under the same lock"),
        );
        self.record(
            now,
            [DomainEvent::TicketCheckedIn {
                event_id: event,
                ticket_id: ticket,
            }],
        );
        Ok(CheckIn::Admitted { ticket: admitted })
    }
}
