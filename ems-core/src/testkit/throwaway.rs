//! Names for throwaway test databases that later runs can clean up.
//!
//! A test cannot drop its database when it ends (there is no async drop), so
//! a backend's test helpers name each database `<prefix>_<uuid v7>`: the name
//! carries its creation time. The first database a process makes for a
//! prefix is the moment to drop that prefix's databases older than
//! [`STALE_AFTER`] ([`is_stale`]); a run in progress keeps its own.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Error, Result};

/// How old a throwaway database must be before a later run drops it.
pub const STALE_AFTER: Duration = Duration::from_secs(60 * 60);

/// The longest prefix: with the 33 bytes the name adds, PostgreSQL's limit of
/// 63 bytes (MongoDB allows more).
pub const MAX_PREFIX: usize = 30;

/// A new database name `<prefix>_<uuid v7>`. `prefix` must be a lowercase
/// ASCII letter, then lowercase letters, digits and `_`, at most
/// [`MAX_PREFIX`] bytes.
pub fn name(prefix: &str) -> Result<String> {
    name_at(prefix, SystemTime::now())
}

/// The name [`name`] would have given at time `at` (tests of the sweep make
/// databases that look old with it).
pub fn name_at(prefix: &str, at: SystemTime) -> Result<String> {
    let well_formed = prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !well_formed || prefix.len() > MAX_PREFIX {
        return Err(Error::invalid(
            "prefix",
            format!(
                "a lowercase letter, then lowercase letters, digits and '_', \
                 at most {MAX_PREFIX} bytes"
            ),
        ));
    }
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, since.as_secs(), since.subsec_nanos());
    Ok(format!("{prefix}_{}", uuid::Uuid::new_v7(ts).simple()))
}

/// The creation time `name` spells, if it is one of `prefix`'s throwaway
/// names (`<prefix>_<32 hex digits of a UUID v7>`).
pub fn created_at(name: &str, prefix: &str) -> Option<SystemTime> {
    let id = name.strip_prefix(prefix)?.strip_prefix('_')?;
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id = uuid::Uuid::try_parse(id).ok()?;
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Names for a backend's test of its sweep: a prefix of that test alone (so
/// its first call is the test's), a name of it made long enough ago to be
/// stale, and a recent one.
#[derive(Debug, Clone)]
pub struct SweepCase {
    /// The prefix.
    pub prefix: String,
    /// A name made more than [`STALE_AFTER`] ago.
    pub stale: String,
    /// A name made now.
    pub recent: String,
}

impl SweepCase {
    /// A fresh case.
    pub fn new() -> Self {
        let prefix = format!(
            "ems_sweep_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let long_ago = SystemTime::now() - STALE_AFTER - Duration::from_secs(60);
        Self {
            stale: name_at(&prefix, long_ago).expect("a well-formed prefix"),
            recent: name(&prefix).expect("a well-formed prefix"),
            prefix,
        }
    }
}

impl Default for SweepCase {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether `name` is one of `prefix`'s throwaway databases, made more than
/// [`STALE_AFTER`] before `now`.
pub fn is_stale(name: &str, prefix: &str, now: SystemTime) -> bool {
    created_at(name, prefix)
        .is_some_and(|created| now.duration_since(created).unwrap_or_default() >= STALE_AFTER)
}

/// True the first time this process asks for `prefix` (of one backend,
/// `scope`): the moment to sweep that prefix's stale databases.
pub fn first_for(scope: &str, prefix: &str) -> bool {
    static SEEN: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    seen.get_or_insert_with(HashSet::new)
        .insert((scope.to_owned(), prefix.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throwaway_name_spells_its_creation_time() {
        let before = SystemTime::now() - Duration::from_millis(2);
        let name = name("ems_test").unwrap();
        let created = created_at(&name, "ems_test").expect("a throwaway name");
        assert!(created >= before && created <= SystemTime::now());
        assert!(!is_stale(&name, "ems_test", SystemTime::now()));
        assert!(is_stale(&name, "ems_test", SystemTime::now() + STALE_AFTER));
    }

    #[test]
    fn other_names_are_never_taken_for_throwaway_ones() {
        let v7 = uuid::Uuid::now_v7().simple().to_string();
        let later = SystemTime::now() + STALE_AFTER * 2;
        // Another prefix, even one the prefix starts.
        assert!(!is_stale(
            &format!("ems_bench_floor_{v7}"),
            "ems_bench",
            later
        ));
        assert!(!is_stale(&format!("ems_test_{v7}"), "ems_bench", later));
        // Not a v7 UUID, or not one at all.
        let v4 = uuid::Uuid::new_v4().simple().to_string();
        assert!(!is_stale(&format!("ems_test_{v4}"), "ems_test", later));
        let hyphenated = uuid::Uuid::now_v7().hyphenated().to_string();
        assert!(!is_stale(
            &format!("ems_test_{hyphenated}"),
            "ems_test",
            later
        ));
        for other in ["ems_test", "ems_test_postgres", "postgres", "admin"] {
            assert!(!is_stale(other, "ems_test", later), "{other}");
        }
    }

    #[test]
    fn a_prefix_that_cannot_name_a_database_is_refused() {
        let long = "e".repeat(MAX_PREFIX + 1);
        for bad in ["", "Ems", "ems-test", "ems test", "1ems", "ems.test", &long] {
            let err = name(bad).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidInput { field, .. } if *field == "prefix"),
                "{bad:?}: {err:?}"
            );
        }
        assert!(name(&"e".repeat(MAX_PREFIX)).unwrap().len() <= 63);
    }

    #[test]
    fn each_prefix_is_swept_once_per_process_and_backend() {
        let prefix = format!("sweep_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        assert!(first_for("postgres", &prefix));
        assert!(!first_for("postgres", &prefix));
        assert!(first_for("mongodb", &prefix));
    }
}
