//! Keyset pagination: pages stay stable while rows are inserted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Largest page a caller may ask for.
pub const MAX_PAGE_SIZE: u32 = 500;

/// An opaque position in a listing; pass it back to get the next page.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct Cursor(String);

impl Cursor {
    /// Encodes a key as an opaque cursor.
    pub(crate) fn encode<K: Serialize>(key: &K) -> Cursor {
        let json =
            serde_json::to_vec(key).expect("cursor keys are plain data and always serialize");
        Cursor(URL_SAFE_NO_PAD.encode(json))
    }

    /// Decodes a cursor produced by [`Cursor::encode`] for the same key type.
    pub(crate) fn decode<K: for<'de> Deserialize<'de>>(&self) -> Result<K> {
        let bytes = URL_SAFE_NO_PAD
            .decode(self.0.as_bytes())
            .map_err(|_| Error::invalid("cursor", "not a cursor returned by this listing"))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| Error::invalid("cursor", "not a cursor returned by this listing"))
    }

    /// The cursor's text, for URLs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Cursor {
    fn from(s: String) -> Self {
        Cursor(s)
    }
}

/// Which page to read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PageRequest {
    /// Continue after this cursor; `None` for the first page.
    pub after: Option<Cursor>,
    /// Page size, 1..=[`MAX_PAGE_SIZE`]; `None` means 50.
    pub limit: Option<u32>,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Self {
        Self {
            after: None,
            limit: Some(limit),
        }
    }

    /// The page after `cursor`.
    pub fn after(cursor: Cursor, limit: u32) -> Self {
        Self {
            after: Some(cursor),
            limit: Some(limit),
        }
    }

    /// The page size and the decoded keyset position, for a listing keyed by `K`.
    pub(crate) fn keyset<K: for<'de> Deserialize<'de>>(&self) -> Result<(u32, Option<K>)> {
        let limit = self.checked_limit()?;
        let after = self.after.as_ref().map(Cursor::decode::<K>).transpose()?;
        Ok((limit, after))
    }

    pub(crate) fn checked_limit(&self) -> Result<u32> {
        match self.limit {
            None => Ok(50),
            Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            Some(n) => Err(Error::invalid(
                "limit",
                format!("{n} is outside 1..={MAX_PAGE_SIZE}"),
            )),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row only tells
    /// that a next page exists.
    pub(crate) fn from_overfetch<K: Serialize>(
        mut rows: Vec<T>,
        limit: u32,
        key: impl Fn(&T) -> K,
    ) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = if more {
            rows.last().map(|r| Cursor::encode(&key(r)))
        } else {
            None
        };
        Page { items: rows, next }
    }
}
