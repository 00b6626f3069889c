//! Availability of one resource over a 90-day window when it has 10,000 existing
//! bookings, on the in-memory backend.
//!
//! `cargo bench --bench facilities`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use ems::clock::ManualClock;
use ems::facility::*;
use ems::prelude::*;
use futures::executor::block_on;

fn availability_90_days(c: &mut Criterion) {
    let clock = ManualClock::new(
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
            .single()
            .expect("valid instant"),
    );
    let ems = Ems::builder(Arc::new(ems::memory::MemoryStore::new()))
        .clock(Arc::new(clock))
        .build()
        .expect("configured");
    let (venue, window_start) = block_on(async {
        let org = ems
            .create_organization(&Actor::System, "Venues")
            .await
            .expect("org");
        let owner = Actor::Organizer {
            user: UserId::new(),
            organization: org.id,
        };
        let venue = ems
            .create_resource(
                &owner,
                NewResource {
                    organization: org.id,
                    kind: ResourceKind::Venue,
                    name: "Hall".into(),
                    stock: Stock::Exclusive,
                    price: Money::parse("500", "EUR").expect("amount"),
                    price_unit: PriceUnit::PerBooking,
                    time_zone: chrono_tz::Europe::Lisbon,
                    slots: Vec::new(),
                    venue: Some(VenueDetails {
                        capacity: 300,
                        address: "Rua A 1".into(),
                        latitude: 38.7,
                        longitude: -9.1,
                    }),
                },
            )
            .await
            .expect("venue");
        // 10,000 bookings: every slot of every day from 2030-01-02 on (~9 years).
        let first = NaiveDate::from_ymd_opt(2030, 1, 2).expect("date");
        let mut n = 0;
        'fill: for day in 0.. {
            for slot in ["Morning", "Afternoon", "Evening"] {
                if n == 10_000 {
                    break 'fill;
                }
                let when = When::Slot {
                    date: first + chrono::Duration::days(day),
                    slot: slot.into(),
                };
                ems.book_facilities(
                    &owner,
                    org.id,
                    None,
                    &[FacilityRequest {
                        resource: venue.id,
                        when,
                        quantity: 1,
                    }],
                )
                .await
                .expect("booked");
                n += 1;
            }
        }
        (venue.id, NaiveDate::from_ymd_opt(2033, 3, 1).expect("date"))
    });
    c.bench_function("availability_window_90_days_10k_bookings", |b| {
        b.iter(|| block_on(ems.availability_window(venue, window_start, 90)).expect("availability"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = availability_90_days
}
criterion_main!(benches);
