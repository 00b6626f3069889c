//! The batch statements as PL/pgSQL functions: one round trip per batch.
//!
//! A batch statement (a checkout batch's openings, its settlements, a hot
//! event's holds with their bookings) must run with sequential scans
//! discouraged, so that the plan PostgreSQL keeps for it reaches rows through
//! their indexes even when made on small tables (see [`BEGIN_INDEXED`]). Set
//! in the batch's own transaction, that costs two round trips more than the
//! statement itself (`BEGIN`, `COMMIT`). A function carries the setting
//! itself (`SET enable_seqscan = off` applies while it runs, to the plans it
//! makes and keeps), so the statement runs on its own, committed with its
//! answer: one round trip.
//!
//! [`PostgresStore::migrate`] creates the functions from the statements
//! themselves: each function is named after a hash of the statement it
//! runs, so a new version of the statement is a new function and processes
//! of different versions can share a database (the old ones stay, unused).
//! Where a function is missing (a database migrated by other means, say), the
//! batch runs its statement in a transaction of its own, as before.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use ems_core::Result;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Column, Executor, PgPool, Postgres, Row};

use crate::checkout::{open_sql, settle_sql};
use crate::inventory::hold_and_open_sql;
use crate::row::Docs;
use crate::{db, PostgresStore};

/// Begins the transaction of a batch statement, planned to reach rows
/// through their indexes wherever an index serves: what a batch's function
/// carries itself, for a database without the functions.
///
/// The statements are prepared once per connection and, after a few runs,
/// PostgreSQL keeps one generic plan for them. Made while the tables are
/// small (a new database, the first seconds of an on-sale), that plan reads
/// them whole, and keeps doing so as they grow, until the next `ANALYZE`:
/// a minute or more into the on-sale. Planning each batch anew avoids that
/// but costs about as much server time as running it; discouraging
/// sequential scans in the batch's own transaction gives the plan a large
/// table would get, at any size, and lets it be kept.
pub(crate) const BEGIN_INDEXED: &str = "BEGIN; SET LOCAL enable_seqscan = off";

/// Runs a batch statement in a transaction of its own begun with
/// [`BEGIN_INDEXED`], and commits it: its rows, or the error of whichever
/// step failed (nothing written).
pub(crate) async fn fetch_batch(
    pool: &PgPool,
    query: Query<'_, Postgres, PgArguments>,
) -> Result<Vec<PgRow>> {
    let mut tx = pool.begin_with(BEGIN_INDEXED).await.map_err(db)?;
    let rows = query.fetch_all(&mut *tx).await.map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(rows)
}

/// A batch statement that also runs as a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BatchStatement {
    /// A batch of openings (`checkout::open_sql`).
    Open,
    /// A batch of settlements (`checkout::settle_sql`).
    Settle,
    /// A hot event's holds with their bookings (`inventory::hold_and_open_sql`).
    HoldAndOpen,
}

/// Changing how functions are made changes every function's name.
const TEMPLATE: &str = "plpgsql/1";

impl BatchStatement {
    const ALL: [Self; 3] = [Self::Open, Self::Settle, Self::HoldAndOpen];

    /// The statement, writing documents as `docs` says.
    pub(crate) fn sql(self, docs: Docs) -> &'static str {
        match self {
            Self::Open => open_sql(docs),
            Self::Settle => settle_sql(docs),
            Self::HoldAndOpen => hold_and_open_sql(docs),
        }
    }

    /// Every statement in every document format.
    fn all() -> impl Iterator<Item = (Self, Docs)> {
        Self::ALL
            .into_iter()
            .flat_map(|s| Docs::ALL.into_iter().map(move |d| (s, d)))
    }

    fn index(self, docs: Docs) -> usize {
        self as usize * Docs::ALL.len() + docs.index()
    }

    /// The function's name: `ems_batch_` and a hash of the statement.
    pub(crate) fn function(self, docs: Docs) -> &'static str {
        static NAMES: [OnceLock<String>; 6] = [const { OnceLock::new() }; 6];
        NAMES[self.index(docs)].get_or_init(|| {
            let kind = match self {
                Self::Open => "open",
                Self::Settle => "settle",
                Self::HoldAndOpen => "hold_open",
            };
            format!(
                "ems_batch_{kind}_{:016x}",
                fnv1a(&[TEMPLATE, self.sql(docs)])
            )
        })
    }

    /// `SELECT * FROM function($1, …, $n)`.
    fn call(self, docs: Docs) -> &'static str {
        static CALLS: [OnceLock<String>; 6] = [const { OnceLock::new() }; 6];
        CALLS[self.index(docs)].get_or_init(|| {
            let params: Vec<String> = (1..=parameters(self.sql(docs)))
                .map(|i| format!("${i}"))
                .collect();
            format!(
                "SELECT * FROM {}({})",
                self.function(docs),
                params.join(", ")
            )
        })
    }
}

/// The highest `$n` in `sql`.
fn parameters(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut max = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let digits = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if let Ok(n) = sql[i + 1..i + 1 + digits].parse::<usize>() {
                max = max.max(n);
            }
            i += digits;
        }
        i += 1;
    }
    max
}

/// FNV-1a, 64 bits, over `parts` (stable across builds and platforms).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Whether this store's database has the batch functions: not yet looked
/// (0), yes, or no.
#[derive(Debug, Default)]
pub(crate) struct BatchFunctions(AtomicU8);

const PRESENT: u8 = 1;
const ABSENT: u8 = 2;

impl BatchFunctions {
    pub(crate) fn set(&self, present: bool) {
        self.0
            .store(if present { PRESENT } else { ABSENT }, Ordering::Relaxed);
    }

    /// Whether all the functions are there (looked up once).
    async fn present(&self, pool: &PgPool) -> bool {
        match self.0.load(Ordering::Relaxed) {
            PRESENT => true,
            ABSENT => false,
            // Not looked yet.
            _ => {
                let names: Vec<&str> = BatchStatement::all().map(|(s, d)| s.function(d)).collect();
                // Found as a call finds it: through the search path.
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT count(*) FROM unnest($1::text[]) AS f(name) \
                     WHERE to_regproc(f.name) IS NOT NULL",
                )
                .bind(&names)
                .fetch_one(pool)
                .await
                .ok();
                // A failed look is not an answer: look again next time.
                if let Some(found) = found {
                    self.set(found == names.len() as i64);
                }
                found == Some(names.len() as i64)
            }
        }
    }
}

/// Creates the functions of the batch statements that the database does not
/// have yet (any number of processes may do so at once).
pub(crate) async fn create_batch_functions(pool: &PgPool) -> Result<()> {
    for (statement, docs) in BatchStatement::all() {
        let name = statement.function(docs);
        let mut tx = pool.begin().await.map_err(db)?;
        // One creator at a time; the others then find the function there.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let exists: bool = sqlx::query_scalar("SELECT to_regproc($1) IS NOT NULL")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if !exists {
            let ddl = function_ddl(&mut tx, statement, docs).await?;
            sqlx::raw_sql(&ddl).execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
    }
    Ok(())
}

/// `CREATE FUNCTION` for `statement`: its parameters and columns as the
/// server describes them.
async fn function_ddl(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    statement: BatchStatement,
    docs: Docs,
) -> Result<String> {
    let sql = statement.sql(docs);
    let described = (&mut **tx).describe(sql).await.map_err(db)?;
    let params = match described.parameters() {
        Some(sqlx::Either::Left(types)) => types.to_vec(),
        _ => Vec::new(),
    };
    let oids = |types: &mut dyn Iterator<Item = &sqlx::postgres::PgTypeInfo>| {
        types
            .map(|t| t.oid().map(|o| i64::from(o.0)))
            .collect::<Option<Vec<i64>>>()
    };
    let unnamed = || ems_core::Error::Backend {
        backend: crate::error::BACKEND,
        source: format!("a type of the {statement:?} batch statement has no oid").into(),
    };
    let param_oids = oids(&mut params.iter()).ok_or_else(unnamed)?;
    let column_oids =
        oids(&mut described.columns().iter().map(|c| c.type_info())).ok_or_else(unnamed)?;
    let param_types = type_names(tx, param_oids).await?;
    let column_types = type_names(tx, column_oids).await?;
    let columns: Vec<String> = described
        .columns()
        .iter()
        .zip(&column_types)
        .map(|(c, t)| format!("\"{}\" {t}", c.name()))
        .collect();
    // Result columns are also variables in the body: a name shared with a
    // table's column means the column.
    Ok(format!(
        "CREATE FUNCTION {name}({params}) RETURNS TABLE ({columns}) \
         LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $ems$\n\
         #variable_conflict use_column\n\
         BEGIN\n\
         RETURN QUERY {sql};\n\
         END\n$ems$",
        name = statement.function(docs),
        params = param_types.join(", "),
        columns = columns.join(", "),
    ))
}

/// The SQL names of the types of `oids`, in order.
async fn type_names(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    oids: Vec<i64>,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT format_type(t::oid, NULL) FROM unnest($1::int8[]) WITH ORDINALITY AS x(t, n) \
         ORDER BY n",
    )
    .bind(oids)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(db))
        .collect()
}

/// Whether `e` says the function called does not exist.
fn undefined_function(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42883"))
}

impl PostgresStore {
    /// Runs `statement` with the arguments `bind` gives it, committed: through
    /// its function where the database has it (one round trip), else in a
    /// transaction of its own begun with [`BEGIN_INDEXED`].
    pub(crate) async fn run_batch<'q, F>(
        &self,
        statement: BatchStatement,
        bind: F,
    ) -> Result<Vec<PgRow>>
    where
        F: Fn(Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments>,
    {
        let docs = self.docs().await;
        if self.functions.present(&self.pool).await {
            match bind(sqlx::query(statement.call(docs)))
                .fetch_all(&self.pool)
                .await
            {
                Ok(rows) => return Ok(rows),
                // Dropped since: the statement itself does the same.
                Err(e) if undefined_function(&e) => self.functions.set(false),
                Err(e) => return Err(db(e)),
            }
        }
        fetch_batch(&self.pool, bind(sqlx::query(statement.sql(docs)))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_counted_by_the_highest_number() {
        assert_eq!(parameters("SELECT $1, $12::int8[], $3"), 12);
        assert_eq!(parameters("SELECT 1"), 0);
        assert_eq!(parameters("SELECT $1 WHERE x = '$'"), 1);
    }

    #[test]
    fn each_statement_has_a_function_named_after_its_text() {
        let names: Vec<&str> = BatchStatement::all().map(|(s, d)| s.function(d)).collect();
        for ((s, d), name) in BatchStatement::all().zip(&names) {
            assert!(name.starts_with("ems_batch_") && name.len() <= 63, "{name}");
            assert_eq!(*name, s.function(d), "the name is stable");
        }
        let distinct: std::collections::HashSet<&&str> = names.iter().collect();
        assert_eq!(
            distinct.len(),
            names.len(),
            "one function per statement and format"
        );
        assert_ne!(fnv1a(&["a", "bc"]), fnv1a(&["ab", "c"]));
    }
}
