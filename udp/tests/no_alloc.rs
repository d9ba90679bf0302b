//! Steady-state sends and receives allocate nothing: a counting global allocator (per
//! thread, so the test harness's own threads do not disturb it) watches a loop of GSO
//! sends (direct and through a `TransmitQueue`), batched receives and GRO splitting.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::ErrorKind;
use std::time::Duration;

use tern_udp::{RecvBatch, Transmit, TransmitQueue, UdpConfig, UdpSocket};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator with the caller's arguments
// unchanged, so it upholds GlobalAlloc's contract exactly as `System` does; the counter is
// a const-initialised thread-local `Cell` without destructor, so touching it never
// allocates or re-enters the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's: `layout` has non-zero size.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this `layout` (we forward all allocs).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged; `ptr`/`layout` came from `System` as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn steady_state_send_and_receive_allocate_nothing() {
    let lo = "127.0.0.1:0".parse().unwrap();
    let tx = UdpSocket::bind(lo, &UdpConfig::default()).unwrap();
    let rx = UdpSocket::bind(lo, &UdpConfig::default()).unwrap();
    let dst = rx.local_addr();
    let gso = vec![0x11u8; 20 * 1200 + 300];
    let single = vec![0x22u8; 700];
    let mut batch = RecvBatch::default();
    let mut queue = TransmitQueue::new(1 << 20, 64);
    let mut received = 0usize;
    let before = allocations();
    for round in 0..200 {
        if round % 2 == 0 {
            // Direct: one GSO transmit and one plain datagram per call.
            let transmits = [
                Transmit::segmented(dst, &gso, 1200),
                Transmit::new(dst, &single),
            ];
            let mut rest: &[Transmit<'_>] = &transmits;
            while !rest.is_empty() {
                match tx.send(rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        tx.wait_writable(Some(Duration::from_secs(5))).unwrap();
                    }
                    Err(e) => panic!("send: {e}"),
                }
            }
        } else {
            // Through the queue, datagram by datagram, as a driver feeds it from the core.
            for chunk in gso.chunks(1200).chain([single.as_slice()]) {
                let slot = queue.slot(1500).expect("room");
                slot[..chunk.len()].copy_from_slice(chunk);
                queue.commit(dst, None, chunk.len());
            }
            while let Err(e) = queue.flush(|_| Some((&tx, None))) {
                assert_eq!(e.kind(), ErrorKind::WouldBlock);
                tx.wait_writable(Some(Duration::from_secs(5))).unwrap();
            }
        }
        let mut this_round = 0;
        while this_round < 22 {
            match rx.recv_batch(&mut batch) {
                Ok(_) => {
                    for d in batch.datagrams() {
                        assert!(matches!(d.data.len(), 1200 | 300 | 700));
                        this_round += 1;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(rx.wait_readable(Some(Duration::from_secs(10))).unwrap());
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(this_round, 22);
        received += this_round;
    }
    let allocated = allocations() - before;
    assert_eq!(received, 200 * 22);
    assert_eq!(
        allocated, 0,
        "{allocated} allocations in the steady-state loop"
    );
}
