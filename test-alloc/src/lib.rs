//! A counting global allocator for tern's "no allocation per packet" tests.
//!
//! A test binary installs it and opts its own thread in (the test harness allocates on other
//! threads, which must not count):
//!
//! ```text
//! #[global_allocator]
//! static GLOBAL: tern_test_alloc::Counting = tern_test_alloc::Counting;
//!
//! tern_test_alloc::count_this_thread();
//! let before = tern_test_alloc::allocations();
//! // ... the steady state under test ...
//! assert_eq!(tern_test_alloc::allocations() - before, 0);
//! ```
//!
//! The `unsafe` that a `GlobalAlloc` needs lives here, not in `tern-core`'s tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

/// Counts allocations and reallocations made on threads that called [`count_this_thread`];
/// the memory itself comes from [`System`].
#[derive(Debug)]
pub struct Counting;

fn count() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`, so the `GlobalAlloc` contract is
// upheld exactly as `System` upholds it; counting touches only an atomic and a thread-local
// flag (neither allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Counts the allocations of the calling thread from now on.
pub fn count_this_thread() {
    COUNTED.with(|c| c.set(true));
}

/// Allocations counted so far (all opted-in threads together); compare two readings.
#[must_use]
pub fn allocations() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}
