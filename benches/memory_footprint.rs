//! Bytes of heap per confirmed booking with its tickets on the in-memory backend,
//! measured with a counting allocator.
//!
//! `cargo bench --bench memory_footprint` (100,000 checkouts of 2 tickets; under
//! `cargo test` it runs 1,000 to stay quick).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use ems::prelude::*;

mod common;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call delegates unchanged to the system allocator; the counter has no effect on memory.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap bytes per confirmed booking in `w` after `n` checkouts: without the
/// domain-event log (pruned, as a deployment does), and with it.
fn per_booking(w: &common::World, n: u64) -> (isize, isize) {
    let buyer = Actor::Customer {
        user: UserId::new(),
    };
    common::prune(&w.store);
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..n {
        let c = common::checkout_two(w, &buyer, i);
        assert_eq!(c.tickets.len(), 2);
    }
    let with_log = LIVE.load(Ordering::Relaxed);
    common::prune(&w.store);
    let without_log = LIVE.load(Ordering::Relaxed);
    let n = n as isize;
    ((without_log - before) / n, (with_log - before) / n)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: u64 = if full { 100_000 } else { 1_000 };
    println!("confirmed bookings: {n} (2 tickets each, 1,000 events)");
    // The store alone: a gateway that keeps nothing in this process.
    let w = common::world_paid_by(1_000, 10_000_000, std::sync::Arc::new(common::ApproveAll));
    let (store, store_log) = per_booking(&w, n);
    drop(w);
    // The same with the FakeGateway, whose own records of every payment count too.
    let w = common::world(1_000, 10_000_000);
    let (fake, fake_log) = per_booking(&w, n);
    println!("heap per booking incl. hold, payment, tickets, indexes: {store} bytes");
    println!("  the same plus its domain events in the log:           {store_log} bytes");
    println!("  the same with FakeGateway's records of each payment:  {fake} bytes ({fake_log} with the log)");
}
