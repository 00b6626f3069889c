//! Maps sqlx errors to the domain's [`Error`]: constraint violations to what they
//! guard, transient failures to the retryable `Unavailable`, the rest to `Backend`.

use ems_core::Error;

pub(crate) const BACKEND: &str = "postgres";

/// The domain error a violated constraint stands for (never its name).
fn constraint_error(constraint: &str) -> Option<Error> {
    let exists = |entity, field| Error::AlreadyExists {
        entity,
        field,
        value: String::new(),
    };
    Some(match constraint {
        "ems_users_email_key" => exists("user", "email"),
        "ems_users_pkey" => exists("user", "id"),
        "ems_organizations_pkey" => exists("organization", "id"),
        "ems_events_pkey" => exists("event", "id"),
        "ems_tiers_pkey" => exists("tier", "id"),
        "ems_tiers_name_key" => exists("tier", "name"),
        "ems_shared_quotas_pkey" => exists("shared quota", "id"),
        "ems_holds_pkey" => exists("hold", "id"),
        "ems_bookings_pkey" => exists("booking", "id"),
        "ems_bookings_idempotency_key" => exists("booking", "idempotency_key"),
        "ems_bookings_hold_key" => exists("booking", "hold_id"),
        "ems_payments_pkey" => exists("payment", "id"),
        "ems_payments_idempotency_key" => exists("payment", "idempotency_key"),
        "ems_refunds_pkey" => exists("refund", "id"),
        "ems_tickets_pkey" => exists("ticket", "id"),
        "ems_coupons_pkey" => exists("coupon", "id"),
        "ems_coupons_code_key" => exists("coupon", "code"),
        "ems_resources_pkey" => exists("resource", "id"),
        "ems_facility_bookings_pkey" => exists("facility booking", "id"),
        "ems_facility_exclusive_overlap" => Error::SoldOut {
            quota: "exclusive resource".into(),
            requested: 1,
            available: 0,
        },
        "ems_events_taken_check" => Error::SoldOut {
            quota: "event capacity".into(),
            requested: 0,
            available: 0,
        },
        "ems_tiers_taken_check" | "ems_shared_quotas_taken_check" => Error::SoldOut {
            quota: "tier or shared quota".into(),
            requested: 0,
            available: 0,
        },
        "ems_payments_refunds_within_amount" => {
            Error::invalid("amount", "refunds would exceed the payment")
        }
        _ => return None,
    })
}

fn unavailable(e: sqlx::Error) -> Error {
    Error::Unavailable {
        retry_after: None,
        source: Box::new(e),
    }
}

/// Maps a sqlx error to the domain error.
pub(crate) fn db(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // Class 08: connection exceptions; 40001/40P01: serialization failure and
            // deadlock; 55P03: lock not available; 57014: statement timeout or
            // cancel; 57P0x: server shutting down or the backend terminated;
            // 53xxx: out of resources (too many connections).
            let transient = code.starts_with("08")
                || code.starts_with("53")
                || matches!(
                    &*code,
                    "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03"
                );
            if transient {
                return unavailable(e);
            }
            if let Some(mapped) = d.constraint().and_then(constraint_error) {
                return mapped;
            }
            if code.starts_with("23") {
                return Error::invalid("input", "the change breaks a rule of the stored data");
            }
            Error::Backend {
                backend: BACKEND,
                source: Box::new(e),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => unavailable(e),
        _ => Error::Backend {
            backend: BACKEND,
            source: Box::new(e),
        },
    }
}
