//! Row <-> record conversions shared by every port.

use std::fmt::Display;

use chrono::{DateTime, Utc};
use ems_core::booking::{Booking, BookingReason, BookingStatus};
use ems_core::inventory::{Hold, HoldStatus};
use ems_core::outbox::DomainEvent;
use ems_core::ticket::{Ticket, TicketStatus};
use ems_core::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row};
use uuid::Uuid;

use crate::db;

/// An open transaction.
pub(crate) type Tx = sqlx::Transaction<'static, Postgres>;

/// A record serialized for a `jsonb` parameter (or an element of a `jsonb[]`).
///
/// Kept as the JSON text itself: a record becomes one string, where a
/// `serde_json::Value` would be a tree of maps and strings built only to be
/// written out again when the statement is sent.
pub(crate) type Jsonb = sqlx::types::Json<Box<serde_json::value::RawValue>>;

/// A record as JSON, for a `jsonb` parameter.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<Jsonb> {
    serde_json::value::to_raw_value(value)
        .map(sqlx::types::Json)
        .map_err(|e| Error::invalid("record", e.to_string()))
}

/// A record's JSON text for a `json` parameter (or an element of a `json[]`):
/// the documents of holds, bookings and payments. Written to a `json` column
/// the server checks that the text is JSON and keeps it as sent; to a `jsonb`
/// one it is cast (parsed) on the way, as a `jsonb` parameter would be.
#[derive(Debug)]
pub(crate) struct JsonText(Box<serde_json::value::RawValue>);

/// `json` (see `pg_type`).
const JSON_OID: sqlx::postgres::types::Oid = sqlx::postgres::types::Oid(114);
/// `json[]` (see `pg_type`).
const JSON_ARRAY_OID: sqlx::postgres::types::Oid = sqlx::postgres::types::Oid(199);

impl sqlx::Type<Postgres> for JsonText {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_oid(JSON_OID)
    }
}

impl sqlx::postgres::PgHasArrayType for JsonText {
    fn array_type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_oid(JSON_ARRAY_OID)
    }
}

impl sqlx::Encode<'_, Postgres> for JsonText {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> std::result::Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        // `json`'s binary form is its text.
        buf.extend_from_slice(self.0.get().as_bytes());
        Ok(sqlx::encode::IsNull::No)
    }
}

/// A record as JSON text, for a `json` parameter.
pub(crate) fn json_text<T: Serialize + ?Sized>(value: &T) -> Result<JsonText> {
    json(value).map(|text| JsonText(text.0))
}

/// Where this version writes the documents of holds, bookings and payments
/// (migration `0005`): each row keeps its document in exactly one of `doc`
/// (`jsonb`, what every version reads) and `body` (`json`, read by this
/// version and later ones), and readers take whichever is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Docs {
    /// `doc`, as versions before `0005` write and read it.
    Jsonb,
    /// `body`: the server keeps the text as sent instead of parsing it.
    Json,
}

impl Docs {
    /// Both, for statements made once per format.
    pub(crate) const ALL: [Self; 2] = [Self::Jsonb, Self::Json];

    /// Position in [`Docs::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The column a new document goes to.
    pub(crate) fn column(self) -> &'static str {
        match self {
            Self::Jsonb => "doc",
            Self::Json => "body",
        }
    }

    /// `SET` of a rewritten document: `value` in this format's column, the
    /// other one cleared (the row may have been written in the other format).
    pub(crate) fn set(self, value: &str) -> String {
        match self {
            Self::Jsonb => format!("doc = {value}, body = NULL"),
            Self::Json => format!("body = {value}, doc = NULL"),
        }
    }
}

/// A statement built once per document format.
pub(crate) struct PerDocs([std::sync::OnceLock<String>; 2]);

impl PerDocs {
    pub(crate) const fn new() -> Self {
        Self([std::sync::OnceLock::new(), std::sync::OnceLock::new()])
    }

    /// The statement for `docs`, built by `build` the first time.
    pub(crate) fn get(
        &'static self,
        docs: Docs,
        build: impl FnOnce(Docs) -> String,
    ) -> &'static str {
        self.0[docs.index()].get_or_init(|| build(docs))
    }
}

/// Where a store writes documents: not looked up yet (0), or a [`Docs`]
/// (its index + 1), from `ems_settings.documents`.
#[derive(Debug, Default)]
pub(crate) struct DocsSetting(std::sync::atomic::AtomicU8);

impl DocsSetting {
    pub(crate) fn set(&self, docs: Docs) {
        self.0
            .store(docs.index() as u8 + 1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The format, looked up in the database the first time.
    pub(crate) async fn get(&self, pool: &sqlx::PgPool) -> Docs {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            1 => Docs::Jsonb,
            2 => Docs::Json,
            _ => {
                let value: std::result::Result<Option<String>, _> =
                    sqlx::query_scalar("SELECT value FROM ems_settings WHERE name = 'documents'")
                        .fetch_optional(pool)
                        .await;
                match value {
                    Ok(value) => {
                        let docs = if value.as_deref() == Some("json") {
                            Docs::Json
                        } else {
                            Docs::Jsonb
                        };
                        self.set(docs);
                        docs
                    }
                    // A failed look is not an answer: `jsonb`, which every
                    // version reads, and look again next time.
                    Err(_) => Docs::Jsonb,
                }
            }
        }
    }
}

/// A row's document from whichever of `body` and `doc` holds it.
pub(crate) fn document(row: &PgRow) -> Result<Jsonb> {
    match get::<Option<Jsonb>>(row, "body")? {
        Some(body) => Ok(body),
        None => get(row, "doc"),
    }
}

/// `Corrupt`, naming the malformed record and what is wrong with it.
fn corrupt(entity: &'static str, id: impl Display, e: serde_json::Error) -> Error {
    Error::Corrupt {
        entity,
        id: id.to_string(),
        reason: e.to_string(),
    }
}

/// A record read back from a `jsonb` column, parsed straight from its text;
/// a malformed one is `Corrupt`, naming it.
pub(crate) fn from_doc<T: DeserializeOwned>(
    entity: &'static str,
    id: impl Display,
    doc: Jsonb,
) -> Result<T> {
    serde_json::from_str(doc.0.get()).map_err(|e| corrupt(entity, id, e))
}

/// The snake_case name of a unit enum variant, as stored in state columns.
pub(crate) fn tag<T: Serialize + std::fmt::Debug>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => format!("{value:?}").to_lowercase(),
    }
}

/// A state column read back into its enum.
pub(crate) fn untag<T: DeserializeOwned>(entity: &'static str, id: Uuid, s: String) -> Result<T> {
    serde_json::from_value(Value::String(s)).map_err(|e| corrupt(entity, id, e))
}

/// A column, decoded.
pub(crate) fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column).map_err(db)
}

/// Converts a non-negative stored count.
pub(crate) fn count(entity: &'static str, id: Uuid, n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Corrupt {
        entity,
        id: id.to_string(),
        reason: format!("count {n} out of range"),
    })
}

/// Columns of a hold row, in the order [`hold`] reads them.
pub(crate) const HOLD: &str = "id, doc, body, status, booking_id";

/// A hold: its body with the live state columns on top.
pub(crate) fn hold(row: &PgRow) -> Result<Hold> {
    let id: Uuid = get(row, "id")?;
    let mut h: Hold = from_doc("hold", id, document(row)?)?;
    h.status = untag::<HoldStatus>("hold", id, get(row, "status")?)?;
    h.booking_id = get::<Option<Uuid>>(row, "booking_id")?.map(Into::into);
    Ok(h)
}

/// Columns of a booking row, in the order [`booking`] reads them.
pub(crate) const BOOKING: &str = "id, doc, body, status, reason, updated_at, version";

/// A booking: its body with the live state columns on top.
pub(crate) fn booking(row: &PgRow) -> Result<Booking> {
    let id: Uuid = get(row, "id")?;
    let mut b: Booking = from_doc("booking", id, document(row)?)?;
    b.status = untag::<BookingStatus>("booking", id, get(row, "status")?)?;
    b.reason = match get::<Option<Jsonb>>(row, "reason")? {
        Some(r) => Some(from_doc::<BookingReason>("booking", id, r)?),
        None => None,
    };
    b.updated_at = get(row, "updated_at")?;
    b.version = get::<i64>(row, "version")? as u64;
    Ok(b)
}

/// Columns of a ticket row, in the order [`ticket`] reads them.
pub(crate) const TICKET: &str = "id, doc, status, checked_in_at";

/// A ticket: its body with the live state columns on top.
pub(crate) fn ticket(row: &PgRow) -> Result<Ticket> {
    let id: Uuid = get(row, "id")?;
    let mut t: Ticket = from_doc("ticket", id, get(row, "doc")?)?;
    t.status = untag::<TicketStatus>("ticket", id, get(row, "status")?)?;
    t.checked_in_at = get(row, "checked_in_at")?;
    Ok(t)
}

/// Appends domain events to the outbox inside `tx`, in order.
pub(crate) async fn record(
    tx: &mut Tx,
    at: DateTime<Utc>,
    events: impl IntoIterator<Item = DomainEvent>,
) -> Result<()> {
    let events: Vec<DomainEvent> = events.into_iter().collect();
    if events.is_empty() {
        return Ok(());
    }
    let docs = json(&events)?;
    sqlx::query(
        "INSERT INTO ems_outbox (occurred_at, doc) \
         SELECT $1, e FROM jsonb_array_elements($2) WITH ORDINALITY AS x(e, n) ORDER BY n",
    )
    .bind(at)
    .bind(docs)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Starts a transaction.
pub(crate) async fn begin(pool: &sqlx::PgPool) -> Result<Tx> {
    pool.begin().await.map_err(db)
}

/// Commits a transaction.
pub(crate) async fn commit(tx: Tx) -> Result<()> {
    tx.commit().await.map_err(db)
}
