use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::booking::{BookingReason, BookingStatus};
use ems_core::event::Event;
use ems_core::id::{CouponId, EventId, HoldId, OrganizationId, TierId, UserId};
use ems_core::inventory::*;
use ems_core::outbox::DomainEvent;
use ems_core::pricing::{check_coupon_uses, coupon_code_key, unknown_coupon, Coupon};
use ems_core::{Error, Result};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use mongodb::ClientSession;
use uuid::Uuid;

use crate::bsonx::{body, count, date, from_body, int, money, read_uuid, tag};
use crate::outbox::record;
use crate::tx::transaction;
use crate::{db, MongoStore};

/// Takes `demand` on the locked event's quotas with one conditional
/// single-document update: the filter states each quota's room and the
/// revision the demand was priced from, so a change since is a conflict
/// (the transaction is retried) and no quota can go over its capacity.
async fn take_units(
    store: &MongoStore,
    s: &mut ClientSession,
    locked: &mut Locked,
    demand: &[(QuotaKey, u32)],
) -> Result<()> {
    let mut filter = doc! { "_id": store.uid(locked.event.id.0), "rev": locked.rev };
    let mut inc = Document::new();
    for (key, n) in demand {
        let field = format!("taken.{}", quota_field(*key));
        let room = i64::from(locked.capacity(*key)) - i64::from(*n);
        filter.insert(field.clone(), doc! { "$lte": room });
        inc.insert(field, i64::from(*n));
    }
    let taken = store
        .col("events")
        .update_one(
            filter,
            doc! { "$inc": inc, "$set": { "rev": locked.rev + 1 } },
        )
        .session(s)
        .await
        .map_err(db)?;
    if taken.matched_count != 1 {
        // Another transaction changed the event after it was priced here.
        return Err(crate::tx::conflict("event"));
    }
    locked.rev += 1;
    Ok(())
}

/// A new (active, unbooked) hold's document.
fn hold_doc(store: &MongoStore, hold: &Hold) -> Result<Document> {
    Ok(doc! {
        "_id": store.uid(hold.id.0),
        "event_id": store.uid(hold.event_id.0),
        "customer": store.uid(hold.customer.0),
        // With the event and the customer, what `hold_owner` reads.
        "organization": store.uid(hold.organization.0),
        "status": "active",
        "booking_id": Bson::Null,
        // Queries test this flag, not `booking_id: null` (the emulator
        // mismatches null equality inside compound filters).
        "booked": false,
        "coupon_id": store.uid_opt(hold.coupon.map(|c| c.0)),
        "quantity": i64::from(hold.quantity()),
        "total": money(&hold.total)?,
        "created_at": date(hold.created_at),
        "expires_at": date(hold.expires_at),
        "body": body(hold)?,
    })
}

/// The field of a quota's counter in an event document's `taken`.
pub(crate) fn quota_field(key: QuotaKey) -> String {
    match key {
        QuotaKey::Event => "event".to_owned(),
        QuotaKey::Tier(t) => format!("t{}", t.0.simple()),
        QuotaKey::Shared(q) => format!("s{}", q.0.simple()),
    }
}

/// An event with its tiers, shared quotas and counters, read after the
/// transaction wrote the event's document (so concurrent changes of its
/// inventory conflict and retry).
pub(crate) struct Locked {
    pub(crate) event: Event,
    pub(crate) tiers: Vec<TicketTier>,
    pub(crate) shared: Vec<SharedQuota>,
    taken: std::collections::HashMap<String, u32>,
    rev: i64,
}

impl Locked {
    pub(crate) fn taken(&self, key: QuotaKey) -> u32 {
        // A quota nobody has taken from yet may have no counter.
        self.taken.get(&quota_field(key)).copied().unwrap_or(0)
    }

    pub(crate) fn capacity(&self, key: QuotaKey) -> u32 {
        quota_capacity(&self.event, &self.tiers, &self.shared, key)
    }

    pub(crate) fn available(&self, key: QuotaKey) -> u32 {
        self.capacity(key).saturating_sub(self.taken(key))
    }

    /// Checks that nobody changed the event since this transaction locked it.
    pub(crate) async fn seal(&mut self, store: &MongoStore, s: &mut ClientSession) -> Result<()> {
        crate::tx::seal(store, s, "events", store.uid(self.event.id.0), self.rev).await?;
        self.rev += 1;
        Ok(())
    }

    fn from_doc(d: &Document) -> Result<Self> {
        let event: Event = from_body("event", d)?;
        let list = |field: &str, entity: &'static str| -> Result<Vec<Document>> {
            match d.get(field) {
                None | Some(Bson::Null) => Ok(Vec::new()),
                Some(Bson::Array(a)) => a
                    .iter()
                    .map(|b| match b {
                        Bson::Document(x) => Ok(doc! { "body": x.clone() }),
                        other => Err(Error::Corrupt {
                            entity,
                            id: event.id.to_string(),
                            reason: format!("{field}: expected documents, found {other:?}"),
                        }),
                    })
                    .collect(),
                Some(other) => Err(Error::Corrupt {
                    entity,
                    id: event.id.to_string(),
                    reason: format!("{field}: expected an array, found {other:?}"),
                }),
            }
        };
        let tiers = list("tiers", "event")?
            .iter()
            .map(|t| from_body("tier", t))
            .collect::<Result<_>>()?;
        let shared = list("shared", "event")?
            .iter()
            .map(|q| from_body("shared quota", q))
            .collect::<Result<_>>()?;
        let corrupt = |reason: String| Error::Corrupt {
            entity: "event",
            id: event.id.to_string(),
            reason,
        };
        let taken = match d.get("taken") {
            Some(Bson::Document(t)) => t
                .iter()
                .map(|(k, v)| {
                    let n = match v {
                        Bson::Int64(n) => u32::try_from(*n).ok(),
                        Bson::Int32(n) => u32::try_from(*n).ok(),
                        _ => None,
                    };
                    n.map(|n| (k.clone(), n))
                        .ok_or_else(|| corrupt(format!("taken.{k}: expected a counter, found {v}")))
                })
                .collect::<Result<_>>()?,
            other => {
                return Err(corrupt(format!(
                    "taken: expected a document, found {other:?}"
                )))
            }
        };
        let rev = int("event", d, "rev")?;
        Ok(Locked {
            event,
            tiers,
            shared,
            taken,
            rev,
        })
    }
}

/// Writes event `id`'s document (its revision) so that every other transaction
/// changing the event's inventory conflicts with this one, and reads it.
/// Lapsed holds of the event are expired first. `None` if there is no such event.
pub(crate) async fn lock_event(
    store: &MongoStore,
    s: &mut ClientSession,
    id: EventId,
    now: Option<DateTime<Utc>>,
) -> Result<Option<Locked>> {
    let Some(d) = store
        .col("events")
        .find_one_and_update(
            doc! { "_id": store.uid(id.0) },
            doc! { "$inc": { "rev": 1_i64 } },
        )
        .return_document(ReturnDocument::After)
        .session(&mut *s)
        .await
        .map_err(db)?
    else {
        return Ok(None);
    };
    let mut locked = Locked::from_doc(&d)?;
    if let Some(now) = now {
        let due: Vec<Hold> = find_holds(
            store,
            s,
            doc! { "event_id": store.uid(id.0), "status": "active", "expires_at": { "$lte": date(now) } },
        )
        .await?
        .into_iter()
        .filter(|h| h.expires_at <= now)
        .collect();
        if !due.is_empty() {
            let events = end_holds(
                store,
                s,
                &mut locked,
                due,
                HoldStatus::Expired,
                Some((BookingStatus::Expired, BookingReason::HoldExpired)),
                now,
            )
            .await?;
            record(store, s, now, events).await?;
        }
    }
    Ok(Some(locked))
}

/// Like [`lock_event`], but a missing event is `NotFound`.
pub(crate) async fn lock_existing(
    store: &MongoStore,
    s: &mut ClientSession,
    id: EventId,
    now: Option<DateTime<Utc>>,
) -> Result<Locked> {
    lock_event(store, s, id, now)
        .await?
        .ok_or_else(|| Error::not_found("event", id))
}

/// Holds matching `filter`, read in the transaction.
pub(crate) async fn find_holds(
    store: &MongoStore,
    s: &mut ClientSession,
    filter: Document,
) -> Result<Vec<Hold>> {
    let docs: Vec<Document> = store
        .col("holds")
        .find(filter)
        .sort(doc! { "expires_at": 1, "_id": 1 })
        .session(&mut *s)
        .await
        .map_err(db)?
        .stream(&mut *s)
        .try_collect()
        .await
        .map_err(db)?;
    docs.iter().map(|d| from_body("hold", d)).collect()
}

/// A hold by id, in the transaction or outside it.
pub(crate) async fn read_hold(
    store: &MongoStore,
    s: Option<&mut ClientSession>,
    id: HoldId,
) -> Result<Option<Hold>> {
    store.read_by_id(s, "holds", "hold", id.0).await
}

/// Adds (`sign` 1) or returns (`sign` -1) units on the locked event's quotas.
pub(crate) async fn apply_demand(
    store: &MongoStore,
    s: &mut ClientSession,
    locked: &mut Locked,
    demand: &Demand,
    sign: i64,
) -> Result<()> {
    if demand.is_empty() {
        return Ok(());
    }
    let mut inc = Document::new();
    for (key, n) in demand {
        inc.insert(format!("taken.{}", quota_field(*key)), sign * i64::from(*n));
    }
    let done = store
        .col("events")
        .update_one(
            doc! { "_id": store.uid(locked.event.id.0), "rev": locked.rev },
            doc! { "$inc": inc.clone(), "$set": { "rev": locked.rev + 1 } },
        )
        .session(&mut *s)
        .await
        .map_err(db)?;
    if done.matched_count != 1 {
        return Err(crate::tx::conflict("event"));
    }
    locked.rev += 1;
    for (key, n) in demand {
        let counter = locked.taken.entry(quota_field(*key)).or_insert(0);
        *counter = if sign > 0 {
            counter.saturating_add(*n)
        } else {
            counter.saturating_sub(*n)
        };
    }
    Ok(())
}

/// Counts (`take`) or gives back one use per (coupon, customer) entry.
pub(crate) async fn coupon_uses(
    store: &MongoStore,
    s: &mut ClientSession,
    uses: &[(CouponId, UserId)],
    take: bool,
) -> Result<()> {
    let delta: i64 = if take { 1 } else { -1 };
    for (coupon, customer) in uses {
        store
            .col("coupons")
            .update_one(
                doc! { "_id": store.uid(coupon.0) },
                doc! { "$inc": {
                    "uses": delta,
                    format!("per_customer.{}", customer.0.simple()): delta,
                    "rev": 1_i64,
                } },
            )
            .session(&mut *s)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Ends active holds of the locked event: marks them `status`, returns their
/// units and coupon uses, and moves their pending bookings to `outcome`. Returns
/// the events to record.
pub(crate) async fn end_holds(
    store: &MongoStore,
    s: &mut ClientSession,
    locked: &mut Locked,
    holds: Vec<Hold>,
    status: HoldStatus,
    outcome: Option<(BookingStatus, BookingReason)>,
    now: DateTime<Utc>,
) -> Result<Vec<DomainEvent>> {
    let holds: Vec<Hold> = holds
        .into_iter()
        .filter(|h| h.status == HoldStatus::Active)
        .collect();
    if holds.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Bson> = holds.iter().map(|h| store.uid(h.id.0)).collect();
    let ended = store
        .col("holds")
        .update_many(
            doc! { "_id": { "$in": ids }, "status": "active" },
            doc! { "$set": { "status": tag(&status), "body.status": tag(&status) } },
        )
        .session(&mut *s)
        .await
        .map_err(db)?;
    if ended.modified_count != holds.len() as u64 {
        // A racing confirmation or release got to one of them first.
        return Err(crate::tx::conflict("hold"));
    }
    let mut demand = Demand::new();
    let mut coupons = Vec::new();
    for h in &holds {
        for (k, n) in demand_of(&locked.tiers, &h.lines) {
            match demand.binary_search_by(|(d, _)| d.cmp(&k)) {
                Ok(i) => demand[i].1 += n,
                Err(i) => demand.insert(i, (k, n)),
            }
        }
        if let Some(c) = h.coupon {
            coupons.push((c, h.customer));
        }
    }
    apply_demand(store, s, locked, &demand, -1).await?;
    coupon_uses(store, s, &coupons, false).await?;
    let mut moved: Vec<Uuid> = Vec::new();
    if let Some((bstatus, reason)) = &outcome {
        let bookings: Vec<Bson> = holds
            .iter()
            .filter_map(|h| h.booking_id.map(|b| store.uid(b.0)))
            .collect();
        if !bookings.is_empty() {
            let filter = doc! { "_id": { "$in": bookings }, "status": "pending" };
            let pending: Vec<Document> = store
                .col("bookings")
                .find(filter.clone())
                .projection(doc! { "_id": 1 })
                .session(&mut *s)
                .await
                .map_err(db)?
                .stream(&mut *s)
                .try_collect()
                .await
                .map_err(db)?;
            for d in &pending {
                moved.push(crate::bsonx::doc_id("booking", d)?);
            }
            crate::booking::set_states(store, s, filter, *bstatus, Some(reason), now).await?;
        }
    }
    Ok(hold_end_events(&holds, status, outcome.as_ref(), |b| {
        moved.contains(&b.0)
    }))
}

/// Units of each velocity-priced tier held within each of its windows before `now`.
async fn recent_sales(
    store: &MongoStore,
    s: &mut ClientSession,
    tiers: &[TicketTier],
    now: DateTime<Utc>,
) -> Result<RecentSales> {
    let Some((ids, longest)) = velocity_lookback(tiers) else {
        return Ok(RecentSales::default());
    };
    let ids: Vec<Bson> = ids.iter().map(|t| store.uid(t.0)).collect();
    let docs: Vec<Document> = store
        .col("tier_sales")
        .find(doc! { "tier_id": { "$in": ids }, "at": { "$gte": date(now - longest) } })
        .session(&mut *s)
        .await
        .map_err(db)?
        .stream(&mut *s)
        .try_collect()
        .await
        .map_err(db)?;
    let mut sales = Vec::with_capacity(docs.len());
    for d in &docs {
        let tier = crate::bsonx::read_uuid("tier sale", "?", d.get("tier_id"))?;
        let at: DateTime<Utc> = from_body("tier sale", d)?;
        sales.push((TierId(tier), at, count("tier sale", d, "units")?));
    }
    Ok(RecentSales::tally(tiers, &sales, now))
}

/// The coupon `code` names for the event's organization, if `customer` may use it.
async fn resolve_coupon(
    store: &MongoStore,
    s: &mut ClientSession,
    locked: &Locked,
    code: &str,
    customer: UserId,
) -> Result<(Coupon, i64)> {
    let d = store
        .col("coupons")
        .find_one(doc! {
            "organization": store.uid(locked.event.organization.0),
            "code_key": coupon_code_key(code),
        })
        .session(&mut *s)
        .await
        .map_err(db)?
        .ok_or_else(|| unknown_coupon(code))?;
    let coupon: Coupon = from_body("coupon", &d)?;
    let uses = count("coupon", &d, "uses")?;
    let key = customer.0.simple().to_string();
    let mine = match d.get("per_customer") {
        // No use by anyone yet, or none by this customer.
        None => 0,
        Some(Bson::Document(p)) if !p.contains_key(&key) => 0,
        Some(Bson::Document(p)) => count("coupon", p, &key).map_err(|_| Error::Corrupt {
            entity: "coupon",
            id: coupon.id.to_string(),
            reason: format!(
                "per_customer.{key}: expected a count, found {:?}",
                p.get(&key)
            ),
        })?,
        Some(other) => {
            return Err(Error::Corrupt {
                entity: "coupon",
                id: coupon.id.to_string(),
                reason: format!("per_customer: expected a document, found {other:?}"),
            })
        }
    };
    check_coupon_uses(&coupon, code, uses, mine)?;
    Ok((coupon, int("coupon", &d, "rev")?))
}

/// Records a hold's units for the velocity rules of its tiers.
async fn note_sales(
    store: &MongoStore,
    s: &mut ClientSession,
    locked: &Locked,
    request: &HoldRequest,
) -> Result<()> {
    for item in &request.items {
        let Some(longest) = locked
            .tiers
            .iter()
            .find(|t| t.id == item.tier_id)
            .and_then(|t| t.pricing.velocity_windows().max())
        else {
            continue;
        };
        let sales = store.col("tier_sales");
        sales
            .delete_many(doc! { "tier_id": store.uid(item.tier_id.0), "at": { "$lt": date(request.now - longest) } })
            .session(&mut *s)
            .await
            .map_err(db)?;
        sales
            .insert_one(doc! {
                "_id": store.uid(Uuid::now_v7()),
                "tier_id": store.uid(item.tier_id.0),
                "at": date(request.now),
                "units": i64::from(item.quantity),
                "body": body(&request.now)?,
            })
            .session(&mut *s)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Replaces the event's tiers and shared quotas arrays (whole: no positional updates).
async fn write_inventory(
    store: &MongoStore,
    s: &mut ClientSession,
    locked: &Locked,
    new_quota: Option<QuotaKey>,
) -> Result<()> {
    let tiers = locked.tiers.iter().map(body).collect::<Result<Vec<_>>>()?;
    let shared = locked.shared.iter().map(body).collect::<Result<Vec<_>>>()?;
    let mut set = doc! { "tiers": tiers, "shared": shared };
    if let Some(key) = new_quota {
        // A counter exists from the start: conditions on a missing field never match.
        set.insert(format!("taken.{}", quota_field(key)), 0_i64);
    }
    store
        .col("events")
        .update_one(
            doc! { "_id": store.uid(locked.event.id.0) },
            doc! { "$set": set },
        )
        .session(&mut *s)
        .await
        .map_err(db)?;
    Ok(())
}

#[async_trait]
impl InventoryStore for MongoStore {
    async fn insert_tier(&self, tier: &TicketTier) -> Result<()> {
        transaction!(self, |s| {
            let mut locked = lock_existing(self, &mut s, tier.event_id, None).await?;
            check_new_tier(&locked.event, &locked.tiers, &locked.shared, tier)?;
            locked.tiers.push(tier.clone());
            write_inventory(self, &mut s, &locked, Some(QuotaKey::Tier(tier.id))).await?;
            locked.seal(self, &mut s).await?;
            record(
                self,
                &mut s,
                locked.event.updated_at,
                [DomainEvent::TierChanged {
                    event_id: tier.event_id,
                    tier_id: tier.id,
                }],
            )
            .await
        })
    }

    async fn update_tier(&self, tier: &TicketTier) -> Result<()> {
        transaction!(self, |s| {
            let mut locked = lock_existing(self, &mut s, tier.event_id, None).await?;
            let taken = locked.taken(QuotaKey::Tier(tier.id));
            check_tier_change(&locked.tiers, &locked.shared, tier, taken)?;
            for t in &mut locked.tiers {
                if t.id == tier.id {
                    *t = tier.clone();
                }
            }
            write_inventory(self, &mut s, &locked, None).await?;
            locked.seal(self, &mut s).await?;
            record(
                self,
                &mut s,
                locked.event.updated_at,
                [DomainEvent::TierChanged {
                    event_id: tier.event_id,
                    tier_id: tier.id,
                }],
            )
            .await
        })
    }

    async fn tiers(&self, event: EventId) -> Result<Vec<TicketTier>> {
        Ok(self
            .read_inventory(event)
            .await?
            .map_or_else(Vec::new, |l| l.tiers))
    }

    async fn insert_shared_quota(&self, quota: &SharedQuota) -> Result<()> {
        transaction!(self, |s| {
            let mut locked = lock_existing(self, &mut s, quota.event_id, None).await?;
            if locked.event.status.is_final() {
                return Err(Error::invalid_state(
                    "event",
                    quota.event_id,
                    locked.event.status,
                    "add quota to",
                ));
            }
            locked.shared.push(quota.clone());
            write_inventory(self, &mut s, &locked, Some(QuotaKey::Shared(quota.id))).await?;
            locked.seal(self, &mut s).await?;
            record(
                self,
                &mut s,
                locked.event.updated_at,
                [DomainEvent::QuotaAdded {
                    event_id: quota.event_id,
                    quota_id: quota.id,
                }],
            )
            .await
        })
    }

    async fn shared_quotas(&self, event: EventId) -> Result<Vec<SharedQuota>> {
        Ok(self
            .read_inventory(event)
            .await?
            .map_or_else(Vec::new, |l| l.shared))
    }

    async fn availability(&self, event: EventId, now: DateTime<Utc>) -> Result<EventAvailability> {
        transaction!(self, |s| {
            let mut locked = lock_existing(self, &mut s, event, Some(now)).await?;
            let recent = recent_sales(self, &mut s, &locked.tiers, now).await?;
            locked.seal(self, &mut s).await?;
            Ok(availability_of(
                &locked.event,
                &locked.tiers,
                &locked.shared,
                &|k| locked.taken(k),
                &|t| recent.of(t),
            ))
        })
    }

    async fn try_hold_batch(&self, requests: &[HoldRequest]) -> Vec<Result<Hold>> {
        // A hold id named twice in the batch goes one by one too: the bulk
        // insert would refuse the whole batch, not just the second request.
        let mut ids = std::collections::HashSet::new();
        let bulk = requests.len() > 1
            && requests.iter().all(|r| {
                r.event_id == requests[0].event_id && r.coupon.is_none() && ids.insert(r.id)
            });
        if bulk {
            match self.hold_batch(requests).await {
                Ok(Some(results)) => return results,
                Ok(None) => {}
                // The transaction failed as a whole: nothing was written.
                Err(e) => return requests.iter().map(|_| Err(e.replica())).collect(),
            }
        }
        // Coupons and velocity rules read and write per request: one by one.
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            out.push(self.try_hold(r).await);
        }
        out
    }

    fn prefers_hold_batching(&self) -> bool {
        true
    }

    async fn try_hold(&self, request: &HoldRequest) -> Result<Hold> {
        transaction!(self, |s| {
            let mut locked =
                lock_existing(self, &mut s, request.event_id, Some(request.now)).await?;
            let recent = recent_sales(self, &mut s, &locked.tiers, request.now).await?;
            let (coupon, coupon_rev) = match &request.coupon {
                Some(code) => {
                    let (c, rev) =
                        resolve_coupon(self, &mut s, &locked, code, request.customer).await?;
                    let id = c.id;
                    (Some(c), Some((id, rev)))
                }
                None => (None, None),
            };
            let plan = plan_hold(
                &locked.event,
                &locked.tiers,
                request,
                &|k| locked.taken(k),
                &|t| recent.of(t),
                coupon.as_ref(),
            )?;
            check_capacity(&plan.demand, |k| locked.available(k))?;
            take_units(self, &mut s, &mut locked, &plan.demand).await?;
            let coupon = coupon.map(|c| c.id);
            if let Some((c, rev)) = coupon_rev {
                // The use is counted on the revision its limits were checked on.
                let counted = self
                    .col("coupons")
                    .update_one(
                        doc! { "_id": self.uid(c.0), "rev": rev },
                        doc! { "$inc": {
                            "uses": 1_i64,
                            format!("per_customer.{}", request.customer.0.simple()): 1_i64,
                            "rev": 1_i64,
                        } },
                    )
                    .session(&mut s)
                    .await
                    .map_err(db)?;
                if counted.matched_count != 1 {
                    return Err(crate::tx::conflict("coupon"));
                }
            }
            note_sales(self, &mut s, &locked, request).await?;
            let (hold, _) = plan.into_hold(request, locked.event.organization, coupon);
            let inserted = self
                .col("holds")
                .insert_one(hold_doc(self, &hold)?)
                .session(&mut s)
                .await;
            if let Err(e) = inserted {
                return Err(if crate::error::is_duplicate(&e) {
                    Error::already_exists("hold", "id", request.id)
                } else {
                    db(e)
                });
            }
            record(self, &mut s, request.now, [hold.placed_event()]).await?;
            Ok(hold)
        })
    }

    async fn hold(&self, id: HoldId) -> Result<Option<Hold>> {
        read_hold(self, None, id).await
    }

    /// Three top-level fields of the hold's document, where `hold` reads and
    /// rebuilds the whole hold. A document written before holds carried
    /// their organization at the top is read whole.
    async fn hold_owner(&self, id: HoldId) -> Result<Option<HoldOwner>> {
        let Some(d) = self
            .col("holds")
            .find_one(doc! { "_id": self.uid(id.0) })
            .projection(doc! { "event_id": 1, "customer": 1, "organization": 1 })
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        if d.get("organization").is_none() {
            return Ok(read_hold(self, None, id).await?.as_ref().map(HoldOwner::of));
        }
        Ok(Some(HoldOwner {
            event_id: EventId(read_uuid("hold", id, d.get("event_id"))?),
            organization: OrganizationId(read_uuid("hold", id, d.get("organization"))?),
            customer: UserId(read_uuid("hold", id, d.get("customer"))?),
        }))
    }

    async fn release_hold(&self, id: HoldId, now: DateTime<Utc>) -> Result<Hold> {
        self.release_as(id, None, now).await
    }

    /// The read `release_hold` makes anyway tells the customer: no round
    /// trip more than a release.
    async fn release_customer_hold(
        &self,
        id: HoldId,
        customer: UserId,
        now: DateTime<Utc>,
    ) -> Result<Hold> {
        self.release_as(id, Some(customer), now).await
    }

    async fn sweep_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<u32> {
        let due: Vec<Document> = self
            .col("holds")
            .find(doc! { "status": "active", "expires_at": { "$lte": date(now) } })
            .sort(doc! { "expires_at": 1 })
            .limit(i64::from(limit))
            .projection(doc! { "event_id": 1 })
            .await
            .map_err(db)?
            .try_collect()
            .await
            .map_err(db)?;
        let mut events: Vec<Uuid> = Vec::new();
        for d in &due {
            let e = crate::bsonx::read_uuid("hold", "?", d.get("event_id"))?;
            if !events.contains(&e) {
                events.push(e);
            }
        }
        let mut total = 0u32;
        for event in events {
            if total >= limit {
                break;
            }
            let room = limit - total;
            let n: u32 = transaction!(self, |s| {
                let Some(mut locked) = lock_event(self, &mut s, EventId(event), None).await? else {
                    return Ok(0);
                };
                let mut due = find_holds(
                    self,
                    &mut s,
                    doc! { "event_id": self.uid(event), "status": "active", "expires_at": { "$lte": date(now) } },
                )
                .await?;
                due.retain(|h| h.expires_at <= now);
                due.truncate(room as usize);
                let n = due.len() as u32;
                let events = end_holds(
                    self,
                    &mut s,
                    &mut locked,
                    due,
                    HoldStatus::Expired,
                    Some((BookingStatus::Expired, BookingReason::HoldExpired)),
                    now,
                )
                .await?;
                record(self, &mut s, now, events).await?;
                locked.seal(self, &mut s).await?;
                Ok(n)
            })?;
            total += n;
        }
        Ok(total)
    }

    async fn purge_ended_holds(&self, created_before: DateTime<Utc>, limit: u32) -> Result<u32> {
        let _turn = self.turn().await;
        let ended: Vec<Document> = self
            .col("holds")
            .find(doc! {
                "status": { "$in": ["released", "expired"] },
                "booked": false,
                "created_at": { "$lt": date(created_before) },
            })
            .sort(doc! { "created_at": 1 })
            .limit(i64::from(limit))
            .projection(doc! { "_id": 1 })
            .await
            .map_err(db)?
            .try_collect()
            .await
            .map_err(db)?;
        if ended.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Bson> = ended.iter().filter_map(|d| d.get("_id").cloned()).collect();
        // Re-checked in the delete: a hold booked meanwhile is kept.
        let gone = self
            .col("holds")
            .delete_many(doc! {
                "_id": { "$in": ids },
                "status": { "$in": ["released", "expired"] },
                "booked": false,
            })
            .await
            .map_err(db)?;
        Ok(gone.deleted_count as u32)
    }
}

impl MongoStore {
    /// An event's inventory as stored, read outside any transaction; `None`
    /// without such an event.
    async fn read_inventory(&self, event: EventId) -> Result<Option<Locked>> {
        self.col("events")
            .find_one(doc! { "_id": self.uid(event.0) })
            .await
            .map_err(db)?
            .as_ref()
            .map(Locked::from_doc)
            .transpose()
    }

    /// Holds for several coupon-free requests of one event in one transaction:
    /// each is planned in arrival order against the counters as the requests
    /// before it left them, then one conditional update of the event document
    /// takes the granted units on every quota and one `insertMany` stores the
    /// holds. `Ok(None)` (nothing written) when the batch must go one by one:
    /// velocity rules, or a hold id that already exists.
    async fn hold_batch(&self, requests: &[HoldRequest]) -> Result<Option<Vec<Result<Hold>>>> {
        let first = &requests[0];
        transaction!(self, |s| {
            let mut locked =
                match lock_existing(self, &mut s, first.event_id, Some(first.now)).await {
                    Ok(l) => l,
                    // The event itself refuses (missing, draft, cancelled): the same for all.
                    Err(e) if e.is_domain() => {
                        return Ok(Some(requests.iter().map(|_| Err(e.replica())).collect()))
                    }
                    Err(e) => return Err(e),
                };
            if locked
                .tiers
                .iter()
                .any(|t| t.pricing.velocity_windows().next().is_some())
            {
                return Ok(None);
            }
            let ids: Vec<Bson> = requests.iter().map(|r| self.uid(r.id.0)).collect();
            let reused = self
                .col("holds")
                .find_one(doc! { "_id": { "$in": ids } })
                .session(&mut s)
                .await
                .map_err(db)?;
            if reused.is_some() {
                return Ok(None);
            }
            let mut out = Vec::with_capacity(requests.len());
            let mut granted = Vec::new();
            let mut demand = Demand::new();
            for request in requests {
                let plan = plan_hold(
                    &locked.event,
                    &locked.tiers,
                    request,
                    &|k| locked.taken(k),
                    &|_| [0; 4],
                    None,
                )
                .and_then(|plan| {
                    check_capacity(&plan.demand, |k| locked.available(k)).map(|()| plan)
                });
                let plan = match plan {
                    Ok(plan) => plan,
                    Err(e) => {
                        out.push(Err(e));
                        continue;
                    }
                };
                let (hold, taken) = plan.into_hold(request, locked.event.organization, None);
                for (key, n) in &taken {
                    *locked.taken.entry(quota_field(*key)).or_insert(0) += n;
                }
                merge_demand(&mut demand, &taken);
                out.push(Ok(hold.clone()));
                granted.push(hold);
            }
            if granted.is_empty() {
                return Ok(Some(out));
            }
            // One conditional update takes the whole batch's units (the room
            // it states is each quota's capacity less the batch's total).
            take_units(self, &mut s, &mut locked, &demand).await?;
            let docs = granted
                .iter()
                .map(|h| hold_doc(self, h))
                .collect::<Result<Vec<_>>>()?;
            self.col("holds")
                .insert_many(docs)
                .session(&mut s)
                .await
                .map_err(db)?;
            record(
                self,
                &mut s,
                first.now,
                granted.iter().map(Hold::placed_event),
            )
            .await?;
            Ok(Some(out))
        })
    }

    /// `release_hold`; with `customer`, only a hold of theirs (another's is
    /// `NotFound`). The hold's owner (read first, to know which event's
    /// counters to take) says both; a hold's event and customer never change.
    async fn release_as(
        &self,
        id: HoldId,
        customer: Option<UserId>,
        now: DateTime<Utc>,
    ) -> Result<Hold> {
        let event = self
            .hold_owner(id)
            .await?
            .filter(|o| customer.is_none_or(|c| o.customer == c))
            .ok_or_else(|| Error::not_found("hold", id))?
            .event_id;
        transaction!(self, |s| {
            let mut locked = lock_existing(self, &mut s, event, Some(now)).await?;
            let hold = read_hold(self, Some(&mut s), id)
                .await?
                .ok_or_else(|| Error::not_found("hold", id))?;
            match hold.status {
                HoldStatus::Active => {
                    let events = end_holds(
                        self,
                        &mut s,
                        &mut locked,
                        vec![hold],
                        HoldStatus::Released,
                        Some((BookingStatus::Failed, BookingReason::Abandoned)),
                        now,
                    )
                    .await?;
                    record(self, &mut s, now, events).await?;
                }
                HoldStatus::Released | HoldStatus::Expired => {}
                other => return Err(Error::invalid_state("hold", id, other, "release")),
            }
            locked.seal(self, &mut s).await?;
            read_hold(self, Some(&mut s), id)
                .await?
                .ok_or_else(|| Error::not_found("hold", id))
        })
    }
}
