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

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: u64 = if full { 100_000 } else { 1_000 };
    let w = common::world(1_000, 10_000_000);
    let buyer = Actor::Customer {
        user: UserId::new(),
    };
    common::prune(&w.store);
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..n {
        let c = common::checkout_two(&w, &buyer, i);
        assert_eq!(c.tickets.len(), 2);
    }
    let with_log = LIVE.load(Ordering::Relaxed);
    common::prune(&w.store);
    let without_log = LIVE.load(Ordering::Relaxed);
    println!("confirmed bookings: {n} (2 tickets each, 1,000 events)");
    println!(
        "heap per booking incl. hold, payment, tickets, indexes: {} bytes",
        (without_log - before) / n as isize
    );
    println!(
        "heap per booking incl. its domain events in the log:    {} bytes",
        (with_log - before) / n as isize
    );
}
