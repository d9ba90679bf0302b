//! The packet path allocates nothing: 10,000 ping round trips on an established session, with
//! a counting global allocator. (Its own test binary: the allocator is process-wide.)
#![allow(clippy::disallowed_methods)] // the base of virtual time

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_core::{Config, Event, Identity, Node};

#[global_allocator]
static GLOBAL: tern_test_alloc::Counting = tern_test_alloc::Counting;

/// Moves every pending datagram between the two nodes, using fixed buffers only.
fn pump(
    now: Instant,
    a: &mut Node,
    b: &mut Node,
    addr_a: SocketAddr,
    addr_b: SocketAddr,
    buf: &mut [u8],
) -> usize {
    let mut moved = 0;
    loop {
        let mut progress = false;
        while let Some(t) = a.poll_transmit(now, buf) {
            b.handle_datagram(now, addr_a, &mut buf[..t.len]);
            moved += 1;
            progress = true;
        }
        while let Some(t) = b.poll_transmit(now, buf) {
            a.handle_datagram(now, addr_b, &mut buf[..t.len]);
            moved += 1;
            progress = true;
        }
        if !progress {
            return moved;
        }
    }
}

#[test]
fn ping_round_trips_allocate_nothing() {
    let mut now = Instant::now();
    let unix = Duration::from_secs(1_800_000_000);
    let mut a = Node::new(
        Identity::from_secret([1; 32]),
        Config::default(),
        [1; 32],
        now,
        unix,
    )
    .unwrap();
    let mut b = Node::new(
        Identity::from_secret([2; 32]),
        Config::default(),
        [2; 32],
        now,
        unix,
    )
    .unwrap();
    let (addr_a, addr_b): (SocketAddr, SocketAddr) =
        ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap());
    let mut buf = vec![0u8; 2048];
    let s = a.connect(now, addr_b, Some(b.peer_id())).unwrap();
    pump(now, &mut a, &mut b, addr_a, addr_b, &mut buf);
    let mut established = false;
    while let Some(e) = a.poll_event() {
        established |= matches!(e, Event::SessionEstablished { .. });
    }
    while b.poll_event().is_some() {}
    assert!(established);

    let mut round = |n: u32, a: &mut Node, b: &mut Node, now: &mut Instant| -> u32 {
        let mut pongs = 0;
        for _ in 0..n {
            *now += Duration::from_micros(50);
            a.ping(*now, s).unwrap();
            pump(*now, a, b, addr_a, addr_b, &mut buf);
            a.handle_timeout(*now);
            b.handle_timeout(*now);
            while let Some(e) = a.poll_event() {
                pongs += u32::from(matches!(e, Event::Pong { .. }));
            }
            while b.poll_event().is_some() {}
        }
        pongs
    };
    // Warm up: queues and the timer heap reach their steady capacity.
    assert_eq!(round(200, &mut a, &mut b, &mut now), 200);
    let before = tern_test_alloc::allocations();
    tern_test_alloc::count_this_thread();
    let pongs = round(10_000, &mut a, &mut b, &mut now);
    let allocs = tern_test_alloc::allocations() - before;
    assert_eq!(pongs, 10_000);
    assert_eq!(allocs, 0, "{allocs} allocations in 10,000 round trips");
}
