//! BSON conversions: UUIDs as binary subtype 4 (read leniently), instants as
//! BSON dates, money as Int64 minor units with the currency, record bodies.

use std::fmt::Display;

use chrono::{DateTime, Utc};
use ems_core::money::Money;
use ems_core::{Error, Result};
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{self, doc, Binary, Bson, Document};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

/// A UUID as BSON binary subtype 4.
pub(crate) fn uuid_binary(u: Uuid) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Uuid,
        bytes: u.as_bytes().to_vec(),
    })
}

fn corrupt(entity: &'static str, id: impl Display, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        entity,
        id: id.to_string(),
        reason: reason.into(),
    }
}

/// Reads a UUID written as binary subtype 4, generic 16-byte binary, or text.
pub(crate) fn read_uuid(
    entity: &'static str,
    id: impl Display,
    value: Option<&Bson>,
) -> Result<Uuid> {
    match value {
        Some(Bson::Binary(b)) if b.bytes.len() == 16 => {
            Uuid::from_slice(&b.bytes).map_err(|e| corrupt(entity, id, e.to_string()))
        }
        Some(Bson::String(s)) => Uuid::parse_str(s).map_err(|e| corrupt(entity, id, e.to_string())),
        other => Err(corrupt(
            entity,
            id,
            format!("expected a UUID, found {other:?}"),
        )),
    }
}

/// A document's `_id` as a UUID.
pub(crate) fn doc_id(entity: &'static str, d: &Document) -> Result<Uuid> {
    read_uuid(entity, "?", d.get("_id"))
}

/// An instant as a BSON date (millisecond precision: for queries and indexes; the
/// body keeps the exact value).
pub(crate) fn date(at: DateTime<Utc>) -> Bson {
    Bson::DateTime(bson::DateTime::from_millis(at.timestamp_millis()))
}

/// Money, exact and summable: Int64 minor units and the ISO code.
pub(crate) fn money(m: &Money) -> Result<Bson> {
    Ok(Bson::Document(doc! {
        "minor": m.to_minor()?,
        "currency": m.currency().code(),
    }))
}

/// A record's body: its serde form, as a BSON document.
pub(crate) fn body<T: Serialize>(record: &T) -> Result<Bson> {
    let json = serde_json::to_value(record).map_err(|e| Error::invalid("record", e.to_string()))?;
    bson::to_bson(&json).map_err(|e| Error::invalid("record", e.to_string()))
}

/// A record read back from a document's `body`; anything malformed is `Corrupt`,
/// naming the document.
pub(crate) fn from_body<T: DeserializeOwned>(entity: &'static str, d: &Document) -> Result<T> {
    let id = d.get("_id").map_or_else(
        || "?".to_owned(),
        |v| match read_uuid(entity, "?", Some(v)) {
            Ok(u) => u.to_string(),
            Err(_) => v.to_string(),
        },
    );
    let b = d
        .get("body")
        .ok_or_else(|| corrupt(entity, &id, "missing body"))?;
    let json: serde_json::Value =
        bson::from_bson(b.clone()).map_err(|e| corrupt(entity, &id, e.to_string()))?;
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        corrupt(entity, &id, format!("{path}: {}", e.into_inner()))
    })
}

/// The snake_case name of a unit enum variant, as stored in state fields.
pub(crate) fn tag<T: Serialize + std::fmt::Debug>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{value:?}").to_lowercase(),
    }
}

fn id_text(d: &Document) -> String {
    read_uuid("record", "?", d.get("_id")).map_or_else(|_| "?".to_owned(), |u| u.to_string())
}

/// An integer field (Int32 or Int64 on the wire).
pub(crate) fn int(entity: &'static str, d: &Document, field: &str) -> Result<i64> {
    match d.get(field) {
        Some(Bson::Int64(n)) => Ok(*n),
        Some(Bson::Int32(n)) => Ok(i64::from(*n)),
        other => Err(corrupt(
            entity,
            id_text(d),
            format!("{field}: expected an integer, found {other:?}"),
        )),
    }
}

/// A non-negative integer field that fits a `u32`.
pub(crate) fn count(entity: &'static str, d: &Document, field: &str) -> Result<u32> {
    let n = int(entity, d, field)?;
    u32::try_from(n).map_err(|_| corrupt(entity, id_text(d), format!("{field}: {n} out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_written_as_subtype_4_and_read_leniently() {
        let u = Uuid::now_v7();
        let written = uuid_binary(u);
        assert!(matches!(&written, Bson::Binary(b) if b.subtype == BinarySubtype::Uuid));
        assert_eq!(read_uuid("event", "x", Some(&written)).ok(), Some(u));
        let generic = Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: u.as_bytes().to_vec(),
        });
        assert_eq!(read_uuid("event", "x", Some(&generic)).ok(), Some(u));
        let text = Bson::String(u.to_string());
        assert_eq!(read_uuid("event", "x", Some(&text)).ok(), Some(u));
        for bad in [
            None,
            Some(Bson::Int64(7)),
            Some(Bson::String("nope".into())),
            Some(Bson::Binary(Binary {
                subtype: BinarySubtype::Uuid,
                bytes: vec![1, 2, 3],
            })),
        ] {
            assert!(matches!(
                read_uuid("event", "e1", bad.as_ref()),
                Err(Error::Corrupt { entity: "event", ref id, .. }) if id == "e1"
            ));
        }
    }

    #[test]
    fn money_is_int64_minor_units_with_the_currency() {
        let m = Money::parse("19.99", "EUR").expect("money");
        let Ok(Bson::Document(d)) = money(&m) else {
            panic!("money is a document")
        };
        assert_eq!(d.get("minor"), Some(&Bson::Int64(1999)));
        assert_eq!(d.get_str("currency").ok(), Some("EUR"));
        let jpy = Money::parse("500", "JPY").expect("money");
        let Ok(Bson::Document(d)) = money(&jpy) else {
            panic!("money is a document")
        };
        assert_eq!(
            d.get("minor"),
            Some(&Bson::Int64(500)),
            "no minor unit in JPY"
        );
    }
}
