//! A steady bulk stream transfer through two `Node`s allocates nothing per packet (issue 5,
//! must-show 7): after a warm-up in which buffers, rings and queues reach their working
//! size, tens of thousands of packets (data, ACKs, credit, retransmissions after a 1-in-101
//! loss) cross between the nodes under a counting global allocator without a single
//! allocation. The "wire" is a fixed array of datagram slots with one round of latency;
//! application writes and reads use fixed buffers. (Its own test binary: the allocator is
//! process-wide.)
#![allow(clippy::disallowed_methods)] // the base of virtual time

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_core::{Config, Event, Identity, Node, StreamId};

#[global_allocator]
static GLOBAL: tern_test_alloc::Counting = tern_test_alloc::Counting;

const SLOT: usize = 1500;
const SLOTS: usize = 512;

/// Datagrams in flight in one direction: fixed slots, delivered one round after sending.
struct Wire {
    slots: Box<[[u8; SLOT]; SLOTS]>,
    len: [usize; SLOTS],
    n: usize,
}

impl Wire {
    fn new() -> Self {
        Self {
            slots: vec![[0u8; SLOT]; SLOTS]
                .into_boxed_slice()
                .try_into()
                .unwrap(),
            len: [0; SLOTS],
            n: 0,
        }
    }

    /// Takes everything `from` wants to send now (up to the slot count).
    fn fill(&mut self, now: Instant, from: &mut Node) {
        while self.n < SLOTS {
            let Some(t) = from.poll_transmit(now, &mut self.slots[self.n]) else {
                break;
            };
            self.len[self.n] = t.len;
            self.n += 1;
        }
    }

    /// Delivers what is on the wire to `to`, losing every 101st datagram overall.
    fn deliver(&mut self, now: Instant, to: &mut Node, from: SocketAddr, sent: &mut u64) {
        for k in 0..self.n {
            *sent += 1;
            if *sent % 101 == 0 {
                continue;
            }
            to.handle_datagram(now, from, &mut self.slots[k][..self.len[k]]);
        }
        self.n = 0;
    }
}

fn byte(offset: u64) -> u8 {
    (offset.wrapping_mul(131) % 251) as u8
}

#[test]
fn a_steady_bulk_stream_through_nodes_allocates_nothing_per_packet() {
    tern_test_alloc::count_this_thread();
    let t0 = Instant::now();
    let unix = Duration::from_secs(1_800_000_000);
    let mut config = Config::default();
    // Windows small enough that warm-up reaches them quickly (every buffer at full size).
    config.transport.stream_recv_window = 256 << 10;
    config.transport.session_recv_window = 1 << 20;
    config.transport.stream_send_buffer = 256 << 10;
    let mut a = Node::new(
        Identity::from_secret([1; 32]),
        config.clone(),
        [1; 32],
        t0,
        unix,
    )
    .unwrap();
    let mut b = Node::new(Identity::from_secret([2; 32]), config, [2; 32], t0, unix).unwrap();
    let (addr_a, addr_b): (SocketAddr, SocketAddr) =
        ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap());
    b.listen(5000).unwrap();
    let mut now = t0;
    let session = a.connect(now, addr_b, Some(b.peer_id())).unwrap();
    let (mut ab, mut ba) = (Wire::new(), Wire::new());
    let mut sent = 0u64;
    let mut tx: Option<StreamId> = None;
    let mut rx: Option<StreamId> = None;
    let mut chunk = [0u8; 16 << 10];
    let mut read_buf = [0u8; 16 << 10];
    let (mut written, mut read) = (0u64, 0u64);
    let (warmup, measured) = (6000u32, 6000u32);
    let mut mark = None;
    for round in 0..warmup + measured {
        if round == warmup {
            mark = Some((
                tern_test_alloc::allocations(),
                read,
                a.stats().tx_datagrams + b.stats().tx_datagrams,
            ));
        }
        now += Duration::from_micros(250);
        a.handle_timeout(now);
        b.handle_timeout(now);
        // Application: open once established, keep the send buffer full, drain the receiver.
        while let Some(e) = a.poll_event() {
            if let Event::SessionEstablished { .. } = e {
                tx = Some(a.open_stream(session, 5000).unwrap());
            }
        }
        while let Some(e) = b.poll_event() {
            if let Event::StreamOpened { stream, .. } = e {
                rx = Some(stream);
            }
        }
        if let Some(id) = tx {
            let mut s = a.stream(id).unwrap();
            loop {
                for (k, c) in chunk.iter_mut().enumerate() {
                    *c = byte(written + k as u64);
                }
                match s.write(&chunk) {
                    Ok(n) if n > 0 => written += n as u64,
                    _ => break,
                }
            }
        }
        if let Some(id) = rx {
            let mut s = b.stream(id).unwrap();
            while let Ok(Some(n)) = s.read(&mut read_buf) {
                for (k, c) in read_buf[..n].iter().enumerate() {
                    assert_eq!(
                        *c,
                        byte(read + k as u64),
                        "corrupted at {}",
                        read + k as u64
                    );
                }
                read += n as u64;
            }
        }
        // The wire: what each side sent last round arrives now.
        ab.deliver(now, &mut b, addr_a, &mut sent);
        ba.deliver(now, &mut a, addr_b, &mut sent);
        ab.fill(now, &mut a);
        ba.fill(now, &mut b);
    }
    let (allocs0, read0, packets0) = mark.unwrap();
    let allocs = tern_test_alloc::allocations() - allocs0;
    let moved = read - read0;
    let packets = a.stats().tx_datagrams + b.stats().tx_datagrams - packets0;
    let info = a.session_info(session).unwrap().transport.unwrap();
    eprintln!(
        "measured: {moved} bytes in {packets} packets over {measured} rounds of 250 µs, \
         {allocs} allocations; cwnd {}, {} packets lost so far, {} B retransmitted",
        info.cwnd, info.lost_packets, info.stream_bytes_retransmitted
    );
    assert!(moved > 20 << 20, "only {moved} bytes moved while measured");
    assert!(packets > 15_000, "only {packets} packets while measured");
    assert!(info.lost_packets > 0 && info.stream_bytes_retransmitted > 0);
    assert_eq!(allocs, 0, "{allocs} allocations for {packets} packets");
}
