//! The counter sees the opted-in thread's allocations and no other thread's, so a test that
//! reads zero through it measured something.

#[global_allocator]
static GLOBAL: tern_test_alloc::Counting = tern_test_alloc::Counting;

#[test]
fn counts_the_opted_in_thread_only() {
    // Another thread, not opted in: its allocations do not count.
    let before = tern_test_alloc::allocations();
    std::thread::spawn(|| std::hint::black_box(vec![1u8; 4096]))
        .join()
        .unwrap();
    tern_test_alloc::count_this_thread();
    let other = tern_test_alloc::allocations() - before;
    assert_eq!(other, 0, "another thread's allocations were counted");

    let before = tern_test_alloc::allocations();
    let v = std::hint::black_box(vec![7u8; 1000]);
    let mut w = std::hint::black_box(Vec::<u64>::with_capacity(1));
    w.extend(0..100); // a reallocation
    assert!(tern_test_alloc::allocations() - before >= 2);
    assert_eq!(v.len() + w.len(), 1100);
}
