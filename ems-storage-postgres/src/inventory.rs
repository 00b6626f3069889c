use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::booking::{BookingReason, BookingStatus};
use ems_core::event::Event;
use ems_core::id::{CouponId, EventId, HoldId, OrganizationId, TierId, UserId};
use ems_core::inventory::*;
use ems_core::outbox::DomainEvent;
use ems_core::pricing::{check_coupon_uses, coupon_code_key, unknown_coupon, Coupon};
use ems_core::{Error, Result};
use sqlx::Row;
use uuid::Uuid;

use crate::batch_fn::BatchStatement;
use crate::row::{
    self, begin, commit, count, from_doc, get, json, json_text, record, tag, Docs, JsonText, Jsonb,
    PerDocs, Tx, HOLD,
};
use crate::{db, PostgresStore};

/// An event with its tiers, shared quotas and counters, read under the event's
/// row lock: the lock every change of its inventory takes first.
pub(crate) struct Locked {
    pub(crate) event: Event,
    pub(crate) tiers: Vec<TicketTier>,
    pub(crate) shared: Vec<SharedQuota>,
    taken: Vec<(QuotaKey, u32)>,
    /// The event row's change counter (`ems_events.seq`) as this transaction
    /// leaves it: each statement here that changes the counters moves it by one.
    seq: i64,
}

impl Locked {
    pub(crate) fn taken(&self, key: QuotaKey) -> u32 {
        self.taken
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(0, |(_, n)| *n)
    }

    pub(crate) fn capacity(&self, key: QuotaKey) -> u32 {
        quota_capacity(&self.event, &self.tiers, &self.shared, key)
    }

    pub(crate) fn available(&self, key: QuotaKey) -> u32 {
        self.capacity(key).saturating_sub(self.taken(key))
    }

    fn adjust(&mut self, demand: &Demand, sign: i64) {
        for (key, n) in demand {
            if let Some((_, t)) = self.taken.iter_mut().find(|(k, _)| k == key) {
                *t = (i64::from(*t) + sign * i64::from(*n)).max(0) as u32;
            }
        }
    }
}

/// Locks event `id` and reads its inventory; `None` if there is no such event.
/// Holds of the event that lapsed by `now` are expired first (in `tx`).
pub(crate) async fn lock_event(
    tx: &mut Tx,
    id: EventId,
    now: DateTime<Utc>,
) -> Result<Option<Locked>> {
    let Some((mut locked, due)) = read_locked(tx, id, now).await? else {
        return Ok(None);
    };
    if due {
        let holds = sqlx::query(&format!(
            "SELECT {HOLD} FROM ems_holds WHERE event_id = $1 AND status = 'active' \
             AND expires_at <= $2 ORDER BY expires_at, id"
        ))
        .bind(id.0)
        .bind(now)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?
        .iter()
        .map(row::hold)
        .collect::<Result<Vec<_>>>()?;
        let events = end_holds(
            tx,
            &mut locked,
            holds,
            HoldStatus::Expired,
            Some((BookingStatus::Expired, BookingReason::HoldExpired)),
            now,
        )
        .await?;
        record(tx, now, events).await?;
    }
    Ok(Some(locked))
}

/// Like [`lock_event`], but a missing event is `NotFound`.
pub(crate) async fn lock_existing(tx: &mut Tx, id: EventId, now: DateTime<Utc>) -> Result<Locked> {
    lock_event(tx, id, now)
        .await?
        .ok_or_else(|| Error::not_found("event", id))
}

async fn read_locked(
    tx: &mut Tx,
    id: EventId,
    now: DateTime<Utc>,
) -> Result<Option<(Locked, bool)>> {
    let row = sqlx::query(
        "SELECT e.doc, e.taken, e.seq, \
           coalesce((SELECT jsonb_agg(jsonb_build_array(t.doc, t.taken) ORDER BY t.seq) \
                     FROM ems_tiers t WHERE t.event_id = e.id), '[]'::jsonb) AS tiers, \
           coalesce((SELECT jsonb_agg(jsonb_build_array(q.doc, q.taken) ORDER BY q.seq) \
                     FROM ems_shared_quotas q WHERE q.event_id = e.id), '[]'::jsonb) AS shared, \
           EXISTS (SELECT 1 FROM ems_holds h WHERE h.event_id = e.id AND h.status = 'active' \
                   AND h.expires_at <= $2) AS due \
         FROM ems_events e WHERE e.id = $1 FOR UPDATE OF e",
    )
    .bind(id.0)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let event: Event = from_doc("event", id, get(&row, "doc")?)?;
    let mut taken = vec![(QuotaKey::Event, count("event", id.0, get(&row, "taken")?)?)];
    let mut tiers = Vec::new();
    let rows: Vec<(TicketTier, i64)> = from_doc("event's tiers", id, get(&row, "tiers")?)?;
    for (t, n) in rows {
        taken.push((QuotaKey::Tier(t.id), count("tier", t.id.0, n)?));
        tiers.push(t);
    }
    let mut shared = Vec::new();
    let rows: Vec<(SharedQuota, i64)> =
        from_doc("event's shared quotas", id, get(&row, "shared")?)?;
    for (q, n) in rows {
        taken.push((QuotaKey::Shared(q.id), count("shared quota", q.id.0, n)?));
        shared.push(q);
    }
    let due: bool = get(&row, "due")?;
    Ok(Some((
        Locked {
            event,
            tiers,
            shared,
            taken,
            seq: get(&row, "seq")?,
        },
        due,
    )))
}

/// The CTEs `t` and `s` of [`DEMAND_CTES`], each row joined to `$gate` (a CTE
/// of one row to write, none to write nothing; empty for no gate).
macro_rules! quota_ctes {
    ($gate:literal) => {
        concat!(
            "t AS (UPDATE ems_tiers x SET taken = x.taken + d.n \
                   FROM unnest($3::uuid[], $4::int8[]) AS d(id, n)",
            $gate,
            " WHERE x.id = d.id RETURNING 1), \
             s AS (UPDATE ems_shared_quotas x SET taken = x.taken + d.n \
                   FROM unnest($5::uuid[], $6::int8[]) AS d(id, n)",
            $gate,
            " WHERE x.id = d.id RETURNING 1)"
        )
    };
}

/// Data-modifying CTEs `e`, `t`, `s` adding `$2` units to event `$1`'s own quota
/// and `$4[i]` units to tier `$3[i]` and shared quota `$5[i]` by `$6[i]`; the
/// event's change counter moves by one.
const DEMAND_CTES: &str = concat!(
    "WITH e AS (UPDATE ems_events SET taken = taken + $2, seq = seq + 1 WHERE id = $1 RETURNING 1), ",
    quota_ctes!("")
);

/// A demand as the bind values of [`DEMAND_CTES`] (`sign` -1 returns units).
struct DemandBinds {
    event: i64,
    tiers: Vec<Uuid>,
    tier_n: Vec<i64>,
    shared: Vec<Uuid>,
    shared_n: Vec<i64>,
}

impl DemandBinds {
    fn new(demand: &Demand, sign: i64) -> Self {
        let mut b = DemandBinds {
            event: 0,
            tiers: Vec::new(),
            tier_n: Vec::new(),
            shared: Vec::new(),
            shared_n: Vec::new(),
        };
        for (key, n) in demand {
            let n = sign * i64::from(*n);
            match key {
                QuotaKey::Event => b.event += n,
                QuotaKey::Tier(t) => {
                    b.tiers.push(t.0);
                    b.tier_n.push(n);
                }
                QuotaKey::Shared(q) => {
                    b.shared.push(q.0);
                    b.shared_n.push(n);
                }
            }
        }
        b
    }

    fn bind<'q>(
        &'q self,
        event: EventId,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(event.0)
            .bind(self.event)
            .bind(&self.tiers)
            .bind(&self.tier_n)
            .bind(&self.shared)
            .bind(&self.shared_n)
    }
}

/// Adds (`sign` 1) or returns (`sign` -1) units on the event's quotas, in one statement.
pub(crate) async fn apply_demand(
    tx: &mut Tx,
    locked: &mut Locked,
    demand: &Demand,
    sign: i64,
) -> Result<()> {
    let binds = DemandBinds::new(demand, sign);
    let sql = format!("{DEMAND_CTES} SELECT 1");
    binds
        .bind(locked.event.id, sqlx::query(&sql))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    locked.adjust(demand, sign);
    locked.seq += 1;
    Ok(())
}

/// Moves event `id`'s change counter: its tiers or shared quotas changed.
async fn touch_event(tx: &mut Tx, id: EventId) -> Result<()> {
    sqlx::query("UPDATE ems_events SET seq = seq + 1 WHERE id = $1")
        .bind(id.0)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Counts (`take`) or gives back one use per (coupon, customer) entry.
pub(crate) async fn coupon_uses(
    tx: &mut Tx,
    uses: &[(CouponId, UserId)],
    take: bool,
) -> Result<()> {
    if uses.is_empty() {
        return Ok(());
    }
    let coupons: Vec<Uuid> = uses.iter().map(|(c, _)| c.0).collect();
    let customers: Vec<Uuid> = uses.iter().map(|(_, u)| u.0).collect();
    const GROUPED: &str = "WITH d AS (SELECT c, u, count(*)::int8 AS k \
        FROM unnest($1::uuid[], $2::uuid[]) AS d(c, u) GROUP BY c, u), \
        n AS (SELECT c, sum(k)::int8 AS k FROM d GROUP BY c)";
    let sql = if take {
        format!(
            "{GROUPED}, t AS (UPDATE ems_coupons x SET uses = x.uses + n.k FROM n WHERE x.id = n.c RETURNING 1) \
             INSERT INTO ems_coupon_customers (coupon_id, customer, uses) SELECT c, u, k FROM d \
             ON CONFLICT (coupon_id, customer) DO UPDATE SET uses = ems_coupon_customers.uses + EXCLUDED.uses"
        )
    } else {
        format!(
            "{GROUPED}, t AS (UPDATE ems_coupons x SET uses = greatest(x.uses - n.k, 0) FROM n \
             WHERE x.id = n.c RETURNING 1) \
             UPDATE ems_coupon_customers x SET uses = greatest(x.uses - d.k, 0) FROM d \
             WHERE x.coupon_id = d.c AND x.customer = d.u"
        )
    };
    sqlx::query(&sql)
        .bind(&coupons)
        .bind(&customers)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Ends active holds of the locked event: marks them `status`, returns their units
/// and coupon uses, and moves their pending bookings to `outcome`. Holds that are
/// no longer active (a racing confirm won) are left alone. Returns the events to record.
pub(crate) async fn end_holds(
    tx: &mut Tx,
    locked: &mut Locked,
    holds: Vec<Hold>,
    status: HoldStatus,
    outcome: Option<(BookingStatus, BookingReason)>,
    now: DateTime<Utc>,
) -> Result<Vec<DomainEvent>> {
    if holds.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = holds.iter().map(|h| h.id.0).collect();
    // The booking id is read back from the updated row: a booking made on the hold
    // while this call waited for the row is seen.
    let ended: Vec<(Uuid, Option<Uuid>)> = sqlx::query(
        "UPDATE ems_holds SET status = $2 WHERE id = ANY($1) AND status = 'active' \
         RETURNING id, booking_id",
    )
    .bind(&ids)
    .bind(tag(&status))
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?
    .iter()
    .map(|r| Ok((get(r, "id")?, get(r, "booking_id")?)))
    .collect::<Result<_>>()?;
    let holds: Vec<Hold> = holds
        .into_iter()
        .filter_map(|mut h| {
            let (_, booking) = ended.iter().find(|(id, _)| *id == h.id.0)?;
            h.booking_id = booking.map(Into::into);
            h.status = status;
            Some(h)
        })
        .collect();
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
    apply_demand(tx, locked, &demand, -1).await?;
    coupon_uses(tx, &coupons, false).await?;
    let mut moved: Vec<Uuid> = Vec::new();
    if let Some((bstatus, reason)) = &outcome {
        let bookings: Vec<Uuid> = holds
            .iter()
            .filter_map(|h| h.booking_id.map(|b| b.0))
            .collect();
        if !bookings.is_empty() {
            moved = sqlx::query(
                "UPDATE ems_bookings SET status = $2, reason = $3, updated_at = $4, version = version + 1 \
                 WHERE id = ANY($1) AND status = 'pending' RETURNING id",
            )
            .bind(&bookings)
            .bind(tag(bstatus))
            .bind(json(reason)?)
            .bind(now)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?
            .iter()
            .map(|r| r.try_get::<Uuid, _>(0).map_err(db))
            .collect::<Result<_>>()?;
        }
    }
    Ok(hold_end_events(&holds, status, outcome.as_ref(), |b| {
        moved.contains(&b.0)
    }))
}

/// Units of each tier held within each of its velocity windows before `now`.
async fn recent_sales(
    tx: &mut Tx,
    tiers: &[TicketTier],
    now: DateTime<Utc>,
) -> Result<RecentSales> {
    let Some((ids, longest)) = velocity_lookback(tiers) else {
        return Ok(RecentSales::default());
    };
    let ids: Vec<Uuid> = ids.iter().map(|t| t.0).collect();
    let rows = sqlx::query(
        "SELECT tier_id, at, units FROM ems_tier_sales WHERE tier_id = ANY($1) AND at > $2",
    )
    .bind(&ids)
    .bind(now - longest)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?;
    let mut sales = Vec::with_capacity(rows.len());
    for r in &rows {
        let tier: Uuid = get(r, "tier_id")?;
        let at: DateTime<Utc> = get(r, "at")?;
        sales.push((TierId(tier), at, count("tier", tier, get(r, "units")?)?));
    }
    Ok(RecentSales::tally(tiers, &sales, now))
}

/// A coupon by code with its use counts, locked for the hold's transaction.
async fn lock_coupon(tx: &mut Tx, locked: &Locked, code: &str, customer: UserId) -> Result<Coupon> {
    let row = sqlx::query(
        "SELECT c.id, c.doc, c.uses, coalesce(cc.uses, 0) AS mine FROM ems_coupons c \
         LEFT JOIN ems_coupon_customers cc ON cc.coupon_id = c.id AND cc.customer = $3 \
         WHERE c.organization = $1 AND c.code_key = $2 FOR UPDATE OF c",
    )
    .bind(locked.event.organization.0)
    .bind(coupon_code_key(code))
    .bind(customer.0)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?
    .ok_or_else(|| unknown_coupon(code))?;
    let id: Uuid = get(&row, "id")?;
    let coupon: Coupon = from_doc("coupon", id, get(&row, "doc")?)?;
    let uses = count("coupon", id, get(&row, "uses")?)?;
    let mine = count("coupon", id, get(&row, "mine")?)?;
    check_coupon_uses(&coupon, code, uses, mine)?;
    Ok(coupon)
}

/// Reads a hold by id.
pub(crate) async fn read_hold<'e, E>(executor: E, id: HoldId, lock: bool) -> Result<Option<Hold>>
where
    E: sqlx::PgExecutor<'e>,
{
    let sql = format!(
        "SELECT {HOLD} FROM ems_holds WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query(&sql)
        .bind(id.0)
        .fetch_optional(executor)
        .await
        .map_err(db)?
        .as_ref()
        .map(row::hold)
        .transpose()
}

/// Records a hold's units for the velocity rules of its tiers, forgetting what is
/// older than each tier's longest window.
async fn note_sales(tx: &mut Tx, locked: &Locked, request: &HoldRequest) -> Result<()> {
    for item in &request.items {
        let Some(longest) = locked
            .tiers
            .iter()
            .find(|t| t.id == item.tier_id)
            .and_then(|t| t.pricing.velocity_windows().max())
        else {
            continue;
        };
        sqlx::query(
            "WITH gone AS (DELETE FROM ems_tier_sales WHERE tier_id = $1 AND at <= $4) \
             INSERT INTO ems_tier_sales (tier_id, at, units) VALUES ($1, $2, $3)",
        )
        .bind(item.tier_id.0)
        .bind(request.now)
        .bind(i64::from(item.quantity))
        .bind(request.now - longest)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// The records of `table` that belong to `event`, in creation order.
async fn of_event<T: serde::de::DeserializeOwned>(
    pool: &sqlx::PgPool,
    table: &'static str,
    entity: &'static str,
    event: EventId,
) -> Result<Vec<T>> {
    sqlx::query(&format!(
        "SELECT id, doc FROM {table} WHERE event_id = $1 ORDER BY seq"
    ))
    .bind(event.0)
    .fetch_all(pool)
    .await
    .map_err(db)?
    .iter()
    .map(|r| from_doc(entity, get::<Uuid>(r, "id")?, get(r, "doc")?))
    .collect()
}

#[async_trait]
impl InventoryStore for PostgresStore {
    async fn insert_tier(&self, tier: &TicketTier) -> Result<()> {
        let mut tx = begin(&self.pool).await?;
        let locked = lock_existing(&mut tx, tier.event_id, NO_EXPIRY).await?;
        check_new_tier(&locked.event, &locked.tiers, &locked.shared, tier)?;
        sqlx::query(
            "INSERT INTO ems_tiers (id, event_id, name, capacity, version, doc) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tier.id.0)
        .bind(tier.event_id.0)
        .bind(&tier.name)
        .bind(i64::from(tier.capacity))
        .bind(tier.version as i64)
        .bind(json(tier)?)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        touch_event(&mut tx, locked.event.id).await?;
        record(
            &mut tx,
            locked.event.updated_at,
            [DomainEvent::TierChanged {
                event_id: tier.event_id,
                tier_id: tier.id,
            }],
        )
        .await?;
        commit(tx).await
    }

    async fn update_tier(&self, tier: &TicketTier) -> Result<()> {
        let mut tx = begin(&self.pool).await?;
        let locked = lock_existing(&mut tx, tier.event_id, NO_EXPIRY).await?;
        let taken = locked.taken(QuotaKey::Tier(tier.id));
        check_tier_change(&locked.tiers, &locked.shared, tier, taken)?;
        sqlx::query(
            "UPDATE ems_tiers SET name = $2, capacity = $3, version = $4, doc = $5 WHERE id = $1",
        )
        .bind(tier.id.0)
        .bind(&tier.name)
        .bind(i64::from(tier.capacity))
        .bind(tier.version as i64)
        .bind(json(tier)?)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        touch_event(&mut tx, locked.event.id).await?;
        record(
            &mut tx,
            locked.event.updated_at,
            [DomainEvent::TierChanged {
                event_id: tier.event_id,
                tier_id: tier.id,
            }],
        )
        .await?;
        commit(tx).await
    }

    async fn tiers(&self, event: EventId) -> Result<Vec<TicketTier>> {
        of_event(&self.pool, "ems_tiers", "tier", event).await
    }

    async fn insert_shared_quota(&self, quota: &SharedQuota) -> Result<()> {
        let mut tx = begin(&self.pool).await?;
        let locked = lock_existing(&mut tx, quota.event_id, NO_EXPIRY).await?;
        if locked.event.status.is_final() {
            return Err(Error::invalid_state(
                "event",
                quota.event_id,
                locked.event.status,
                "add quota to",
            ));
        }
        sqlx::query(
            "INSERT INTO ems_shared_quotas (id, event_id, capacity, doc) VALUES ($1, $2, $3, $4)",
        )
        .bind(quota.id.0)
        .bind(quota.event_id.0)
        .bind(i64::from(quota.capacity))
        .bind(json(quota)?)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        touch_event(&mut tx, locked.event.id).await?;
        record(
            &mut tx,
            locked.event.updated_at,
            [DomainEvent::QuotaAdded {
                event_id: quota.event_id,
                quota_id: quota.id,
            }],
        )
        .await?;
        commit(tx).await
    }

    async fn shared_quotas(&self, event: EventId) -> Result<Vec<SharedQuota>> {
        of_event(&self.pool, "ems_shared_quotas", "shared quota", event).await
    }

    async fn availability(&self, event: EventId, now: DateTime<Utc>) -> Result<EventAvailability> {
        let mut tx = begin(&self.pool).await?;
        let s = lock_existing(&mut tx, event, now).await?;
        let recent = recent_sales(&mut tx, &s.tiers, now).await?;
        commit(tx).await?;
        Ok(availability_of(
            &s.event,
            &s.tiers,
            &s.shared,
            &|k| s.taken(k),
            &|t| recent.of(t),
        ))
    }

    async fn try_hold_batch(&self, requests: &[HoldRequest]) -> Vec<Result<Hold>> {
        let one_event = requests
            .first()
            .is_some_and(|f| requests.iter().all(|r| r.event_id == f.event_id));
        // A batch of one goes the batch's way too: it keeps the event known
        // for the next batch (see `hold_batch`).
        if !one_event {
            let mut out = Vec::with_capacity(requests.len());
            for r in requests {
                out.push(self.try_hold(r).await);
            }
            return out;
        }
        match hold_batch(&self.pool, &self.known, requests, self.docs().await).await {
            Ok(Some(results)) => results,
            // A hold id was already taken (a retried request): hold one by one,
            // so that only that request is refused.
            Ok(None) => {
                let mut out = Vec::with_capacity(requests.len());
                for r in requests {
                    out.push(self.try_hold(r).await);
                }
                out
            }
            // The transaction failed as a whole: nothing was written, and every
            // request gets the error it would have got alone.
            Err(e) => requests.iter().map(|_| Err(e.replica())).collect(),
        }
    }

    fn prefers_hold_batching(&self) -> bool {
        true
    }

    async fn try_hold(&self, request: &HoldRequest) -> Result<Hold> {
        let docs = self.docs().await;
        let mut tx = begin(&self.pool).await?;
        let s = lock_existing(&mut tx, request.event_id, request.now).await?;
        let recent = recent_sales(&mut tx, &s.tiers, request.now).await?;
        let coupon = match &request.coupon {
            Some(code) => Some(lock_coupon(&mut tx, &s, code, request.customer).await?),
            None => None,
        };
        let plan = plan_hold(
            &s.event,
            &s.tiers,
            request,
            &|k| s.taken(k),
            &|t| recent.of(t),
            coupon.as_ref(),
        )?;
        check_capacity(&plan.demand, |k| s.available(k))?;
        let coupon = coupon.map(|c| c.id);
        if let Some(c) = coupon {
            coupon_uses(&mut tx, &[(c, request.customer)], true).await?;
        }
        note_sales(&mut tx, &s, request).await?;
        let (hold, demand) = plan.into_hold(request, s.event.organization, coupon);
        let placed = hold.placed_event();
        // Counters, hold and its domain event in one statement: the event's row
        // lock is held for one round trip and the commit.
        let binds = DemandBinds::new(&demand, 1);
        let sql = format!(
            "{DEMAND_CTES}, \
             h AS (INSERT INTO ems_holds (id, event_id, customer, status, coupon_id, quantity, total, \
                   currency, created_at, expires_at, {doc}) \
                   VALUES ($7, $1, $8, 'active', $9, $10, $11, $12, $13, $14, $15) \
                   ON CONFLICT (id) DO NOTHING RETURNING id), \
             o AS (INSERT INTO ems_outbox (occurred_at, doc) SELECT $13, $16 FROM h) \
             SELECT count(*) FROM h",
            doc = docs.column()
        );
        let inserted: i64 = binds
            .bind(hold.event_id, sqlx::query(&sql))
            .bind(hold.id.0)
            .bind(hold.customer.0)
            .bind(coupon.map(|c| c.0))
            .bind(i64::from(hold.quantity()))
            .bind(hold.total.amount())
            .bind(hold.total.currency().code())
            .bind(hold.created_at)
            .bind(hold.expires_at)
            .bind(json_text(&hold)?)
            .bind(json(&placed)?)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        if inserted == 0 {
            return Err(Error::already_exists("hold", "id", request.id));
        }
        commit(tx).await?;
        Ok(hold)
    }

    async fn hold(&self, id: HoldId) -> Result<Option<Hold>> {
        read_hold(&self.pool, id, false).await
    }

    /// Three columns, where `hold` reads and parses the whole record.
    async fn hold_owner(&self, id: HoldId) -> Result<Option<HoldOwner>> {
        let row = sqlx::query(
            "SELECT h.event_id, h.customer, e.organization FROM ems_holds h \
             JOIN ems_events e ON e.id = h.event_id WHERE h.id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| {
            Ok(HoldOwner {
                event_id: EventId(get(&r, "event_id")?),
                customer: UserId(get(&r, "customer")?),
                organization: OrganizationId(get(&r, "organization")?),
            })
        })
        .transpose()
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

    async fn release_hold_batch(&self, requests: &[HoldRelease]) -> Vec<Result<Hold>> {
        let mut out: Vec<Option<Result<Hold>>> = requests.iter().map(|_| None).collect();
        if requests.len() > 1 {
            // One transaction per event: its counters take the group's units once.
            let mut groups: Vec<(EventId, Vec<usize>)> = Vec::new();
            for (i, r) in requests.iter().enumerate() {
                match groups.iter_mut().find(|(e, _)| *e == r.event_id) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((r.event_id, vec![i])),
                }
            }
            for (event, members) in groups {
                let group: Vec<HoldRelease> = members.iter().map(|&i| requests[i]).collect();
                match self.release_group(event, &group).await {
                    Ok(results) => {
                        for (i, result) in members.into_iter().zip(results) {
                            out[i] = result;
                        }
                    }
                    Err(e) => {
                        for i in members {
                            out[i] = Some(Err(e.replica()));
                        }
                    }
                }
            }
        }
        // Whatever the batch left undecided is released alone, in order.
        let mut results = Vec::with_capacity(requests.len());
        for (r, decided) in requests.iter().zip(out) {
            results.push(match decided {
                Some(result) => result,
                None => self.release_hold(r.hold_id, r.now).await,
            });
        }
        results
    }

    async fn sweep_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<u32> {
        let events: Vec<Uuid> = sqlx::query(
            "SELECT DISTINCT event_id FROM (SELECT event_id FROM ems_holds \
             WHERE status = 'active' AND expires_at <= $1 ORDER BY expires_at LIMIT $2) due",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.try_get::<Uuid, _>(0).map_err(db))
        .collect::<Result<_>>()?;
        let mut total = 0u32;
        for event in events {
            if total >= limit {
                break;
            }
            let mut tx = begin(&self.pool).await?;
            let Some((mut s, _)) = read_locked(&mut tx, EventId(event), now).await? else {
                continue;
            };
            let holds = sqlx::query(&format!(
                "SELECT {HOLD} FROM ems_holds WHERE event_id = $1 AND status = 'active' \
                 AND expires_at <= $2 ORDER BY expires_at, id LIMIT $3"
            ))
            .bind(event)
            .bind(now)
            .bind(i64::from(limit - total))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            .iter()
            .map(row::hold)
            .collect::<Result<Vec<_>>>()?;
            let events = end_holds(
                &mut tx,
                &mut s,
                holds,
                HoldStatus::Expired,
                Some((BookingStatus::Expired, BookingReason::HoldExpired)),
                now,
            )
            .await?;
            total += events
                .iter()
                .filter(|e| matches!(e, DomainEvent::HoldExpired { .. }))
                .count() as u32;
            record(&mut tx, now, events).await?;
            commit(tx).await?;
        }
        Ok(total)
    }

    async fn purge_ended_holds(&self, created_before: DateTime<Utc>, limit: u32) -> Result<u32> {
        let purged = sqlx::query(
            "DELETE FROM ems_holds WHERE id IN (SELECT id FROM ems_holds \
             WHERE status IN ('released', 'expired') AND booking_id IS NULL AND created_at < $1 \
             ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(created_before)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected();
        Ok(purged as u32)
    }
}

/// The "now" of calls that only change tiers and quotas: they expire nothing.
const NO_EXPIRY: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// Events as this store's last hold batch of each left them (what it read under
/// the event's lock, plus what the batch wrote), so that the next batch of a
/// hot event can be placed in one statement (see [`hold_batch_on_known`]).
/// What is kept is only ever a guess: every use is checked against the
/// event's change counter in the database.
///
/// When another writer keeps changing the event (a second process batching
/// the same on-sale), the guess keeps missing, and each miss costs a wait for
/// the event's row before the locked path's own: after a miss the event's
/// next batches go the locked way directly, 2, 4, … up to 64 of them after
/// consecutive misses, before the one-statement way is tried again.
#[derive(Default)]
pub(crate) struct KnownEvents(parking_lot::Mutex<std::collections::HashMap<EventId, Known>>);

/// One event in [`KnownEvents`].
#[derive(Default)]
struct Known {
    /// The event as the last batch left it; `None` while a batch has it.
    state: Option<Locked>,
    /// One-statement attempts in a row that found the event changed.
    misses: u32,
    /// Batches still to go the locked way before the next attempt.
    skip: u32,
}

/// How many events [`KnownEvents`] keeps; one more forgets an arbitrary one
/// (its next batch reads it under the lock again).
const KNOWN_EVENTS: usize = 256;

/// The most consecutive misses that lengthen the back-off (to 2^6 batches).
const MAX_BACKOFF_SHIFT: u32 = 6;

impl KnownEvents {
    /// The event as this store last left it, for a one-statement attempt;
    /// `None` when unknown, in use by another batch, or backing off.
    fn take(&self, id: EventId) -> Option<Locked> {
        let mut known = self.0.lock();
        let k = known.get_mut(&id)?;
        if k.skip > 0 {
            k.skip -= 1;
            return None;
        }
        k.state.take()
    }

    /// A one-statement attempt found the event changed: back off.
    fn missed(&self, id: EventId) {
        if let Some(k) = self.0.lock().get_mut(&id) {
            k.misses = k.misses.saturating_add(1);
            k.skip = 1 << k.misses.min(MAX_BACKOFF_SHIFT);
        }
    }

    /// Keeps `s` as a batch left it, unless a batch that ran meanwhile left a
    /// later state; `hit`: the batch was placed in one statement.
    fn keep(&self, s: Locked, hit: bool) {
        let mut known = self.0.lock();
        if !known.contains_key(&s.event.id) && known.len() >= KNOWN_EVENTS {
            if let Some(any) = known.keys().next().copied() {
                known.remove(&any);
            }
        }
        let k = known.entry(s.event.id).or_default();
        if hit {
            k.misses = 0;
        }
        if k.state.as_ref().is_none_or(|later| later.seq < s.seq) {
            k.state = Some(s);
        }
    }
}

impl std::fmt::Debug for KnownEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownEvents")
            .field("events", &self.0.lock().len())
            .finish()
    }
}

/// A granted hold with its domain event, and the units it takes.
type Granted = (Hold, DomainEvent);

/// Plans `request` against `s` as the requests before it in its batch left it:
/// its own rules (per-order limits, sales window, coupon) apply to it alone.
/// Granted, its units are taken in `s` and added to the batch's `demand`.
fn plan_in_batch(
    s: &mut Locked,
    request: &HoldRequest,
    recent: &RecentSales,
    coupon: Option<&Coupon>,
    demand: &mut Demand,
) -> Result<Granted> {
    let plan = plan_hold(
        &s.event,
        &s.tiers,
        request,
        &|k| s.taken(k),
        &|t| recent.of(t),
        coupon,
    )?;
    check_capacity(&plan.demand, |k| s.available(k))?;
    let (hold, taken) = plan.into_hold(request, s.event.organization, coupon.map(|c| c.id));
    s.adjust(&taken, 1);
    merge_demand(demand, &taken);
    let placed = hold.placed_event();
    Ok((hold, placed))
}

/// The columns of a batch's holds and their domain events, bound as arrays
/// `$7` to `$17` after [`DemandBinds`]' `$1` to `$6`.
struct HoldRows {
    ids: Vec<Uuid>,
    customers: Vec<Uuid>,
    coupons: Vec<Option<Uuid>>,
    quantities: Vec<i64>,
    totals: Vec<rust_decimal::Decimal>,
    currencies: Vec<String>,
    created: Vec<DateTime<Utc>>,
    expires: Vec<DateTime<Utc>>,
    docs: Vec<JsonText>,
    events: Vec<Jsonb>,
}

/// The holds and domain events of `$7` to `$17` of [`HoldRows`] (after
/// [`DEMAND_CTES`] or its like), each table's rows joined to `{gate}` (a CTE
/// of one row to write, none to write nothing; empty for no gate).
fn hold_rows_ctes(gate: &str, docs: Docs) -> String {
    format!(
        "{}, \
         o AS (INSERT INTO ems_outbox (occurred_at, doc) \
               SELECT y.at, y.doc FROM unnest($16::timestamptz[], $17::jsonb[]) WITH ORDINALITY AS y(at, doc, n){gate} \
               ORDER BY y.n)",
        holds_cte(gate, None, docs)
    )
}

/// The CTE `h` inserting the holds of `$7` to `$15` of [`HoldRows`] for event
/// `$1`, joined to `{gate}` (see [`hold_rows_ctes`]); with `bookings`, a CTE
/// with `id` and `hold_id`, each hold carries the booking of that CTE that
/// names it (if any) as its `booking_id`.
fn holds_cte(gate: &str, bookings: Option<&str>, docs: Docs) -> String {
    let (column, value, join) = match bookings {
        Some(b) => (
            ", booking_id".to_owned(),
            format!(", {b}.id"),
            format!(" LEFT JOIN {b} ON {b}.hold_id = x.id"),
        ),
        None => Default::default(),
    };
    format!(
        "h AS (INSERT INTO ems_holds (id, event_id, customer, status, coupon_id, quantity, total, \
               currency, created_at, expires_at, {doc}{column}) \
               SELECT x.id, $1, x.customer, 'active', x.coupon, x.quantity, x.total, x.currency, \
                      x.created_at, x.expires_at, x.doc{value} \
               FROM unnest($7::uuid[], $8::uuid[], $9::uuid[], $10::int8[], $11::numeric[], \
                           $12::text[], $13::timestamptz[], $14::timestamptz[], $15::json[]) \
                    AS x(id, customer, coupon, quantity, total, currency, created_at, expires_at, doc){join}{gate} \
               {conflict} RETURNING id)",
        // Without a gate the statement runs in a transaction that is rolled
        // back when a hold id is taken; with one it is its own transaction,
        // and a taken id must fail it whole.
        conflict = if gate.is_empty() { "ON CONFLICT (id) DO NOTHING" } else { "" },
        doc = docs.column(),
    )
}

/// Event `$1` (as `e`) is as a store knows it: its change counter is still
/// `{seq}` and none of its holds has lapsed by `{now}` (which the locked path
/// would expire first).
fn unchanged(seq: &str, now: &str) -> String {
    format!(
        "e.id = $1 AND e.seq = {seq} AND NOT EXISTS (SELECT 1 FROM ems_holds d \
         WHERE d.event_id = $1 AND d.status = 'active' AND d.expires_at <= {now})"
    )
}

impl HoldRows {
    fn of(granted: &[Granted]) -> Result<Self> {
        let n = granted.len();
        let mut rows = HoldRows {
            ids: Vec::with_capacity(n),
            customers: Vec::with_capacity(n),
            coupons: Vec::with_capacity(n),
            quantities: Vec::with_capacity(n),
            totals: Vec::with_capacity(n),
            currencies: Vec::with_capacity(n),
            created: Vec::with_capacity(n),
            expires: Vec::with_capacity(n),
            docs: Vec::with_capacity(n),
            events: Vec::with_capacity(n),
        };
        for (hold, placed) in granted {
            rows.ids.push(hold.id.0);
            rows.customers.push(hold.customer.0);
            rows.coupons.push(hold.coupon.map(|c| c.0));
            rows.quantities.push(i64::from(hold.quantity()));
            rows.totals.push(hold.total.amount());
            rows.currencies
                .push(hold.total.currency().code().to_owned());
            rows.created.push(hold.created_at);
            rows.expires.push(hold.expires_at);
            rows.docs.push(json_text(hold)?);
            rows.events.push(json(placed)?);
        }
        Ok(rows)
    }

    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.ids)
            .bind(&self.customers)
            .bind(&self.coupons)
            .bind(&self.quantities)
            .bind(&self.totals)
            .bind(&self.currencies)
            .bind(&self.created)
            .bind(&self.expires)
            .bind(&self.docs)
            .bind(&self.created)
            .bind(&self.events)
    }
}

/// Holds for several requests of one event in one transaction: the event's row
/// is locked and read once, each request is planned in arrival order against
/// the counters as the requests before it left them (its own rules — per-order
/// limits, sales window, coupon uses — apply to it alone), and the counters,
/// holds and domain events of every granted request are written by one
/// statement. `Ok(None)` when a hold id already exists (nothing written).
///
/// When `known` has the event as this store's previous batch left it and the
/// batch needs nothing more (no coupon, no velocity rule), the batch is first
/// tried in one statement against that ([`hold_batch_on_known`]); the locked
/// read is the fallback whenever the event changed since.
async fn hold_batch(
    pool: &sqlx::PgPool,
    known: &KnownEvents,
    requests: &[HoldRequest],
    docs: Docs,
) -> Result<Option<Vec<Result<Hold>>>> {
    let first = &requests[0];
    if let Some(s) = known.take(first.event_id) {
        let simple = requests.iter().all(|r| r.coupon.is_none())
            && !s
                .tiers
                .iter()
                .any(|t| t.pricing.velocity_windows().next().is_some());
        if simple {
            // Any failure here wrote nothing: the locked path decides.
            match hold_batch_on_known(pool, s, requests, docs).await {
                Ok(Some((out, s))) => {
                    known.keep(s, true);
                    return Ok(Some(out));
                }
                _ => known.missed(first.event_id),
            }
        }
    }
    let mut tx = begin(pool).await?;
    let locked = lock_existing(&mut tx, first.event_id, first.now).await;
    let mut s = match locked {
        Ok(s) => s,
        // The event itself refuses (missing, draft, cancelled): the same for all.
        Err(e) if e.is_domain() => {
            return Ok(Some(requests.iter().map(|_| Err(e.replica())).collect()))
        }
        Err(e) => return Err(e),
    };
    let velocity = s
        .tiers
        .iter()
        .any(|t| t.pricing.velocity_windows().next().is_some());
    let mut recent = recent_sales(&mut tx, &s.tiers, first.now).await?;
    let mut out = Vec::with_capacity(requests.len());
    let mut granted: Vec<Granted> = Vec::new();
    let mut demand = Demand::new();
    for (i, request) in requests.iter().enumerate() {
        if velocity && i > 0 {
            // Earlier requests of the batch count for the velocity rules.
            recent = recent_sales(&mut tx, &s.tiers, request.now).await?;
        }
        let coupon = match &request.coupon {
            Some(code) => match lock_coupon(&mut tx, &s, code, request.customer).await {
                Ok(c) => Some(c),
                Err(e) if e.is_domain() => {
                    out.push(Err(e));
                    continue;
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        let (hold, placed) =
            match plan_in_batch(&mut s, request, &recent, coupon.as_ref(), &mut demand) {
                Ok(granted) => granted,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
        if let Some(c) = hold.coupon {
            coupon_uses(&mut tx, &[(c, request.customer)], true).await?;
        }
        if velocity {
            note_sales(&mut tx, &s, request).await?;
        }
        out.push(Ok(hold.clone()));
        granted.push((hold, placed));
    }
    if !granted.is_empty() {
        // Counters (once for the batch), holds and domain events: one statement.
        let binds = DemandBinds::new(&demand, 1);
        let rows = HoldRows::of(&granted)?;
        let inserted: i64 = rows
            .bind(binds.bind(first.event_id, sqlx::query(locked_hold_batch_sql(docs))))
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        if inserted != granted.len() as i64 {
            // Dropping the transaction rolls everything back.
            return Ok(None);
        }
        s.seq += 1;
    }
    commit(tx).await?;
    known.keep(s, false);
    Ok(Some(out))
}

/// The statement of a hold batch under the event's lock (see `hold_batch`):
/// counters, holds and domain events; the holds it inserted. Built once.
fn locked_hold_batch_sql(docs: Docs) -> &'static str {
    static SQL: PerDocs = PerDocs::new();
    SQL.get(docs, |docs| {
        format!(
            "{DEMAND_CTES}, {} SELECT count(*) FROM h",
            hold_rows_ctes("", docs)
        )
    })
}

/// Whether event `$1` is still as known at change counter `$2` by `$3` (see
/// `hold_batch_on_known`). Built once.
fn still_known_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT EXISTS (SELECT 1 FROM ems_events e WHERE {})",
            unchanged("$2", "$3")
        )
    })
}

/// The statement of a hold batch on a known event (see
/// `hold_batch_on_known`): 1 if it wrote, else 0. Built once.
fn known_hold_batch_sql(docs: Docs) -> &'static str {
    static SQL: PerDocs = PerDocs::new();
    SQL.get(docs, |docs| {
        format!(
            "WITH g AS (UPDATE ems_events e SET taken = e.taken + $2, seq = e.seq + 1 \
                        WHERE {} RETURNING 1 AS go), \
             {}, {} \
             SELECT count(*) FROM g",
            unchanged("$18", "$19"),
            quota_ctes!(", g"),
            hold_rows_ctes(", g", docs)
        )
    })
}

/// A batch placed against `s`, the event as this store's previous batch left
/// it, in one statement and one round trip: the statement takes the event's
/// row only if its change counter is still `s`'s and none of its holds has
/// lapsed by the first request's "now" (which the locked path would expire
/// first), and writes counters, holds and domain events only then. A change
/// committed by anyone since (another process, a release, an edit) moved the
/// counter, so the statement writes nothing; one still in flight holds the
/// row, and the statement waits for it and then sees the counter moved.
/// `Ok(Some)` with the event as this batch leaves it; `Ok(None)` or `Err`:
/// nothing was written.
async fn hold_batch_on_known(
    pool: &sqlx::PgPool,
    mut s: Locked,
    requests: &[HoldRequest],
    docs: Docs,
) -> Result<Option<(Vec<Result<Hold>>, Locked)>> {
    let first = &requests[0];
    let expected = s.seq;
    let none = RecentSales::default();
    let mut out = Vec::with_capacity(requests.len());
    let mut granted: Vec<Granted> = Vec::new();
    let mut demand = Demand::new();
    for request in requests {
        match plan_in_batch(&mut s, request, &none, None, &mut demand) {
            Ok((hold, placed)) => {
                out.push(Ok(hold.clone()));
                granted.push((hold, placed));
            }
            Err(e) => out.push(Err(e)),
        }
    }
    if granted.is_empty() {
        // Every request refused: valid only if the event is still as known.
        let current: bool = sqlx::query_scalar(still_known_sql())
            .bind(first.event_id.0)
            .bind(expected)
            .bind(first.now)
            .fetch_one(pool)
            .await
            .map_err(db)?;
        return Ok(current.then_some((out, s)));
    }
    let binds = DemandBinds::new(&demand, 1);
    let rows = HoldRows::of(&granted)?;
    let applied: i64 = rows
        .bind(binds.bind(first.event_id, sqlx::query(known_hold_batch_sql(docs))))
        .bind(expected)
        .bind(first.now)
        .fetch_one(pool)
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    if applied != 1 {
        return Ok(None);
    }
    s.seq = expected + 1;
    Ok(Some((out, s)))
}

/// A batch of holds with their bookings' openings written by
/// [`hold_and_open_on_known`].
pub(crate) struct HeldBatch {
    /// Per request: the index of its granted hold in `holds`, or why it was
    /// refused.
    pub(crate) planned: Vec<Result<usize>>,
    /// The granted holds, as placed.
    pub(crate) holds: Vec<Hold>,
    /// Each granted hold's opening, at the same index.
    pub(crate) openings: Vec<ems_core::booking::OpenCheckout>,
    /// Ids of the bookings the statement inserted (the others' keys were
    /// taken: their holds carry no booking).
    pub(crate) booked: std::collections::HashSet<Uuid>,
    /// Ids of the payment records it inserted.
    pub(crate) paid: std::collections::HashSet<Uuid>,
}

/// A checkout batch's holds and the bookings opened on them, in one statement
/// against the event as this store's previous batch left it (see
/// [`hold_batch_on_known`]): the event's counters, the holds (each carrying
/// its booking), the bookings whose key is new, their payment records and
/// every domain event, in request order, one commit. `None` when the batch is
/// not for this path (several events, a coupon, a velocity rule, a hold,
/// booking or key named twice, every hold refused) or the event changed: then
/// nothing was written, and the caller runs the two steps instead.
pub(crate) async fn hold_and_open_on_known(
    store: &PostgresStore,
    batch: &[ems_core::booking::HoldAndOpen],
) -> Option<HeldBatch> {
    use crate::checkout::{BookingColumns, PaymentColumns};
    use std::collections::HashSet;
    let known = &*store.known;
    let event = batch.first()?.hold.event_id;
    let mut hold_ids = HashSet::new();
    let mut booking_ids = HashSet::new();
    let mut keys = HashSet::new();
    let plain = batch.iter().all(|r| {
        r.hold.event_id == event
            && r.hold.coupon.is_none()
            && r.draft.customer == r.hold.customer
            && hold_ids.insert(r.hold.id)
            && booking_ids.insert(r.draft.booking_id)
            && keys.insert((r.draft.customer, r.draft.idempotency_key.as_str()))
    });
    if !plain {
        return None;
    }
    let mut s = known.take(event)?;
    if s.tiers
        .iter()
        .any(|t| t.pricing.velocity_windows().next().is_some())
    {
        return None;
    }
    let before = s.seq;
    let none = RecentSales::default();
    let mut planned = Vec::with_capacity(batch.len());
    let mut granted: Vec<Granted> = Vec::new();
    let mut openings = Vec::new();
    let mut demand = Demand::new();
    for r in batch {
        match plan_in_batch(&mut s, &r.hold, &none, None, &mut demand) {
            Ok((hold, placed)) => {
                openings.push(r.draft.open_on(&hold));
                planned.push(Ok(granted.len()));
                granted.push((hold, placed));
            }
            Err(e) => planned.push(Err(e)),
        }
    }
    if granted.is_empty() {
        // Nothing taken: the event is as it was; the hold batch's own path
        // tells whether the refusals stand.
        known.keep(s, false);
        return None;
    }
    let written = async {
        let binds = DemandBinds::new(&demand, 1);
        let rows = HoldRows::of(&granted)?;
        let mut bookings = BookingColumns::default();
        let mut payments = PaymentColumns::default();
        for o in &openings {
            bookings.push(o)?;
            payments.push(&o.payment)?;
        }
        // `g`: the event is as known (see `hold_batch_on_known`); everything
        // is written only then. `f`: the bookings whose key is new as of the
        // statement; each hold is inserted carrying its booking if it has
        // one, and a key taken by a commit since makes the deferred check of
        // that link fail the transaction at its commit (nothing written).
        let now = batch[0].hold.now;
        store
            .run_batch(BatchStatement::HoldAndOpen, |q| {
                let q = rows.bind(binds.bind(event, q)).bind(before).bind(now);
                payments.bind(bookings.bind(q))
            })
            .await
    }
    .await;
    let mut booked = HashSet::new();
    let mut paid = HashSet::new();
    let mut applied = false;
    for row in written.ok().unwrap_or_default() {
        let (id, kind): (Option<Uuid>, i32) = match (row.try_get(0), row.try_get(1)) {
            (Ok(id), Ok(kind)) => (id, kind),
            _ => continue,
        };
        match (kind, id) {
            (0, Some(id)) => {
                booked.insert(id);
            }
            (1, Some(id)) => {
                paid.insert(id);
            }
            (2, _) => applied = true,
            _ => {}
        }
    }
    if !applied {
        known.missed(event);
        return None;
    }
    s.seq = before + 1;
    known.keep(s, true);
    Some(HeldBatch {
        planned,
        holds: granted.into_iter().map(|(hold, _)| hold).collect(),
        openings,
        booked,
        paid,
    })
}

/// The statement of a batch of holds on a known event, each with its
/// booking opened (see `hold_and_open_on_known`), built once.
pub(crate) fn hold_and_open_sql(docs: Docs) -> &'static str {
    use crate::checkout::{payments_of_booked, BookingColumns, PaymentColumns};
    static SQL: PerDocs = PerDocs::new();
    SQL.get(docs, |docs| {
        format!(
            "WITH g AS (UPDATE ems_events e SET taken = e.taken + $2, seq = e.seq + 1 \
                 WHERE {unchanged} RETURNING 1 AS go), \
             {quotas}, {u}, \
             f AS (SELECT u.* FROM u WHERE NOT EXISTS (SELECT 1 FROM ems_bookings x \
                 WHERE x.customer = u.customer AND x.idempotency_key = u.key)), \
             {h}, \
             b AS (INSERT INTO ems_bookings (id, event_id, customer, hold_id, idempotency_key, \
                   status, reason, total, currency, created_at, updated_at, version, {doc}) \
                   SELECT f.id, f.event_id, f.customer, f.hold_id, f.key, f.status, f.reason, \
                          f.total, f.currency, f.created_at, f.updated_at, f.version, f.doc \
                   FROM f CROSS JOIN g ORDER BY f.n \
                   ON CONFLICT (customer, idempotency_key) DO NOTHING RETURNING id), \
             {pu}, {p}, \
             o AS (INSERT INTO ems_outbox (occurred_at, doc) \
                 SELECT at, ev FROM ( \
                     SELECT y.at, y.doc AS ev, y.n, 0 AS k \
                         FROM unnest($16::timestamptz[], $17::jsonb[]) WITH ORDINALITY \
                              AS y(at, doc, n) CROSS JOIN g \
                     UNION ALL \
                     SELECT u.created_at, u.ev, u.n, 1 FROM u WHERE u.id IN (SELECT id FROM b) \
                     UNION ALL \
                     SELECT pu.at, pu.ev, pu.n, 2 FROM pu WHERE pu.id IN (SELECT id FROM p)) e \
                 ORDER BY n, k) \
             SELECT id, 0 AS kind FROM b UNION ALL SELECT id, 1 FROM p \
             UNION ALL SELECT NULL::uuid, 2 FROM g",
            unchanged = unchanged("$18", "$19"),
            quotas = quota_ctes!(", g"),
            h = holds_cte(", g", Some("f"), docs),
            doc = docs.column(),
            u = BookingColumns::unnest_cte(20),
            pu = PaymentColumns::unnest_cte(35),
            p = payments_of_booked(docs),
        )
    })
}

impl PostgresStore {
    /// Releases a group of one event's holds in one transaction; `None` for a
    /// request the group cannot decide (its hold is not of this event).
    async fn release_group(
        &self,
        event: EventId,
        group: &[HoldRelease],
    ) -> Result<Vec<Option<Result<Hold>>>> {
        let Some(first) = group.iter().map(|r| r.now).min() else {
            return Ok(Vec::new());
        };
        let mut tx = begin(&self.pool).await?;
        // Locking the event expires its holds that lapsed by the earliest "now".
        let Some(mut s) = lock_event(&mut tx, event, first).await? else {
            return Ok(group.iter().map(|_| None).collect());
        };
        let ids: Vec<Uuid> = group.iter().map(|r| r.hold_id.0).collect();
        let locked: Vec<Hold> = sqlx::query(&format!(
            "SELECT {HOLD} FROM ems_holds WHERE id = ANY($1) AND event_id = $2 ORDER BY id FOR UPDATE"
        ))
        .bind(&ids)
        .bind(event.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .iter()
        .map(row::hold)
        .collect::<Result<_>>()?;
        // Each active hold ends as its first request finds it: lapsed by that
        // request's "now" it expires, else it is released.
        let mut expiring = Vec::new();
        let mut releasing = Vec::new();
        let mut decided = std::collections::HashSet::new();
        for r in group {
            let Some(h) = locked.iter().find(|h| h.id == r.hold_id) else {
                continue;
            };
            if h.status != HoldStatus::Active || !decided.insert(h.id) {
                continue;
            }
            if h.expires_at <= r.now {
                expiring.push(h.clone());
            } else {
                releasing.push(h.clone());
            }
        }
        let mut events = end_holds(
            &mut tx,
            &mut s,
            expiring,
            HoldStatus::Expired,
            Some((BookingStatus::Expired, BookingReason::HoldExpired)),
            first,
        )
        .await?;
        events.extend(
            end_holds(
                &mut tx,
                &mut s,
                releasing,
                HoldStatus::Released,
                Some((BookingStatus::Failed, BookingReason::Abandoned)),
                first,
            )
            .await?,
        );
        record(&mut tx, first, events).await?;
        let ended: Vec<Hold> =
            sqlx::query(&format!("SELECT {HOLD} FROM ems_holds WHERE id = ANY($1)"))
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?
                .iter()
                .map(row::hold)
                .collect::<Result<_>>()?;
        commit(tx).await?;
        Ok(group
            .iter()
            .map(|r| {
                let h = ended
                    .iter()
                    .find(|h| h.id == r.hold_id && h.event_id == event)?;
                Some(match h.status {
                    HoldStatus::Released | HoldStatus::Expired => Ok(h.clone()),
                    other => Err(Error::invalid_state("hold", h.id, other, "release")),
                })
            })
            .collect())
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
        let owner = self
            .hold_owner(id)
            .await?
            .filter(|o| customer.is_none_or(|c| o.customer == c))
            .ok_or_else(|| Error::not_found("hold", id))?;
        let mut tx = begin(&self.pool).await?;
        let mut s = lock_existing(&mut tx, owner.event_id, now).await?;
        let hold = read_hold(&mut *tx, id, true)
            .await?
            .ok_or_else(|| Error::not_found("hold", id))?;
        match hold.status {
            HoldStatus::Active => {
                let events = end_holds(
                    &mut tx,
                    &mut s,
                    vec![hold],
                    HoldStatus::Released,
                    Some((BookingStatus::Failed, BookingReason::Abandoned)),
                    now,
                )
                .await?;
                record(&mut tx, now, events).await?;
            }
            HoldStatus::Released | HoldStatus::Expired => {}
            other => return Err(Error::invalid_state("hold", id, other, "release")),
        }
        let hold = read_hold(&mut *tx, id, false)
            .await?
            .ok_or_else(|| Error::not_found("hold", id))?;
        commit(tx).await?;
        Ok(hold)
    }
}
