//! The conformance suite every storage backend runs.
//!
//! Each scenario is a plain `pub async fn(TestStores)` asserting one behaviour
//! through the ports (via [`Ems`](crate::Ems)), so it runs unchanged on any backend. A backend
//! runs all of them, plus the concurrency stress and the model test, with one line:
//!
//! ```text
//! ems_core::conformance_tests!(|| async {
//!     let store = MyStore::connect_fresh().await;
//!     ems_core::testkit::TestStores::new(Arc::new(store.clone()), Arc::new(store.second_handle()))
//! });
//! ```
//!
//! `TestStores::b` must be an independent handle to the same data (a second pool,
//! as a second server process would have), so the races go through two handles.

mod fixture;
pub mod model;
pub mod scenarios;
pub mod throwaway;

use std::future::Future;
use std::sync::Arc;

pub use fixture::{epoch, eur, Fixture};

use crate::Store;

/// Two handles to one fresh, empty store.
#[derive(Clone)]
pub struct TestStores {
    /// The first handle.
    pub a: Arc<dyn Store>,
    /// A second, independent handle to the same data.
    pub b: Arc<dyn Store>,
    /// Whether the services built over them batch holds.
    pub batching: crate::inventory::HoldBatching,
}

impl std::fmt::Debug for TestStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestStores")
    }
}

impl TestStores {
    /// Pairs two handles to the same data.
    pub fn new(a: Arc<dyn Store>, b: Arc<dyn Store>) -> Self {
        Self {
            a,
            b,
            batching: crate::inventory::HoldBatching::Auto,
        }
    }

    /// The same handles, with services that batch holds (`On`) or not (`Off`).
    pub fn batching(mut self, batching: crate::inventory::HoldBatching) -> Self {
        self.batching = batching;
        self
    }
}

/// Runs one scenario on a fresh store from `factory`, on a multi-thread runtime.
pub fn run<F, Fut, S, SFut>(factory: F, scenario: S)
where
    F: Fn() -> Fut,
    Fut: Future<Output = TestStores>,
    S: FnOnce(TestStores) -> SFut,
    SFut: Future<Output = ()>,
{
    run_batching(factory, crate::inventory::HoldBatching::Auto, scenario);
}

/// Runs one scenario on a fresh store from `factory` with services that batch
/// holds as `batching` says.
pub fn run_batching<F, Fut, S, SFut>(
    factory: F,
    batching: crate::inventory::HoldBatching,
    scenario: S,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = TestStores>,
    S: FnOnce(TestStores) -> SFut,
    SFut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a test runtime starts");
    rt.block_on(async {
        let stores = factory().await.batching(batching);
        scenario(stores).await;
    });
}

/// Generates one `#[test]` per conformance scenario, plus the model test, for
/// the backend `factory` creates (an expression of type `Fn() -> impl Future<Output = TestStores>`),
/// twice: in module `holds_one_by_one` with hold batching off, and in
/// `holds_batched` with it on.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        mod holds_one_by_one {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_suite!($factory, $crate::inventory::HoldBatching::Off);
        }
        mod holds_batched {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_suite!($factory, $crate::inventory::HoldBatching::On);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_suite {
    ($factory:expr, $batching:expr) => {
        $crate::__conformance_tests!($factory, $batching;
            duplicate_email_is_rejected,
            draft_event_is_invisible_to_customers,
            stale_event_update_is_a_conflict,
            hold_on_draft_event_is_rejected,
            hold_on_cancelled_event_is_rejected,
            unauthorized_actor_cannot_manage_an_event,
            event_capacity_cannot_drop_below_units_taken,
            reschedule_keeps_bookings_valid_and_tells_holders,
            cancel_event_releases_holds_and_refunds_paid_bookings,
            completed_event_stops_sales,
            event_search_applies_every_filter,
            event_pages_stay_stable_under_inserts,
            hold_reserves_units_on_every_quota,
            hold_that_does_not_fit_changes_nothing,
            shared_quota_limits_its_tiers_together,
            expired_hold_units_are_available_again,
            sweep_expires_holds_and_their_pending_bookings,
            released_hold_returns_units_once,
            purge_forgets_only_ended_unbooked_holds,
            quantity_outside_per_order_limits_is_rejected,
            zero_quantity_is_rejected_without_partial_state,
            sales_window_is_enforced,
            tier_priced_in_another_currency_is_rejected,
            negative_price_and_zero_capacity_are_rejected,
            hold_crossing_a_surge_threshold_pays_base_then_surge,
            one_order_or_several_cost_the_same,
            retry_of_an_order_split_by_surge_returns_the_same_booking,
            quote_is_locked_until_confirmation,
            price_preview_matches_the_hold_it_predicts,
            payment_amount_is_the_quote_total,
            velocity_rule_raises_the_price_after_a_burst,
            coupon_discounts_the_order_and_counts_a_use,
            last_coupon_use_goes_to_exactly_one_racer,
            unpaid_hold_gives_its_coupon_use_back,
            invalid_coupons_are_refused_without_taking_units,
            exclusive_resource_is_never_double_booked,
            stocked_resource_never_exceeds_its_stock,
            facility_package_is_all_or_nothing,
            racing_for_an_exclusive_slot_one_wins,
            invalid_facility_requests_are_rejected,
            facility_authorization_is_enforced,
            alternatives_offer_nearest_dates_and_similar_resources,
            availability_by_kind_lists_each_resource,
            availability_window_matches_per_date_availability,
            cancelling_an_event_releases_its_facilities,
            checkout_confirms_and_issues_one_ticket_per_unit,
            same_idempotency_key_returns_the_same_booking,
            same_key_with_other_items_is_rejected,
            concurrent_checkouts_with_one_key_make_one_booking,
            declined_payment_fails_the_booking_and_releases_units,
            gateway_timeout_releases_units_and_reconcile_settles,
            pending_payment_confirms_on_webhook,
            duplicate_webhook_is_applied_once,
            failure_webhook_after_success_is_ignored,
            late_payment_reacquires_units_when_available,
            late_payment_is_refunded_when_sold_out,
            forged_webhook_signature_is_rejected,
            booking_a_foreign_hold_is_rejected,
            a_hold_id_is_taken_once,
            a_booking_id_is_taken_once,
            a_payment_key_is_given_once_whoever_uses_it,
            customer_cancellation_refunds_per_policy,
            cancellation_after_the_last_deadline_is_refused,
            failed_refund_is_recorded_and_retry_pays_once,
            free_tickets_confirm_without_charging,
            check_in_admits_once_and_says_when,
            check_in_refuses_forged_codes,
            check_in_refuses_tickets_of_other_events,
            check_in_refuses_void_tickets,
            concurrent_check_ins_admit_once,
            domain_events_are_read_in_order_from_a_cursor,
            booking_history_is_paginated_newest_first,
            concurrent_holds_through_two_handles_never_oversell,
            concurrent_checkouts_sell_exactly_capacity,
            checkout_batches_match_one_by_one,
            holds_with_their_openings_match_one_by_one,
            release_batches_match_one_by_one,
            hold_batch_grants_what_fits_in_arrival_order,
            hold_batches_see_changes_made_between_them,
            holds_see_changes_to_the_event_and_its_tiers,
            retry_after_selling_out_returns_the_booking,
        );

        #[test]
        fn model_test_counters_and_money_agree_with_an_oracle() {
            $crate::testkit::model::run_model_test(
                || async { ($factory)().await.batching($batching) },
                48,
            );
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($factory:expr, $batching:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::testkit::run_batching(
                    $factory,
                    $batching,
                    $crate::testkit::scenarios::$name,
                );
            }
        )*
    };
}
