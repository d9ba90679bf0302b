//! A receiver that stops reading blocks only its own stream (issue 5, must-show 4): the
//! sender is told (`WriteError::Blocked`), memory stays within the configured windows, and
//! other streams of the same session, other sessions and pings keep flowing. Includes the
//! regression test for Pilot's whole-daemon stall (Pilot reference §7: "one local client
//! binds a port and never reads; peer streams 8 MB to it — the whole daemon stopped routing:
//! pings from two other nodes timed out").

use std::time::Duration;

use tern_core::{Config, Event, TransportInfo};
use tern_sim::transfer::{Opener, TransferBook, TransferSpec, Transfers};
use tern_sim::{HostId, LinkConfig, Sim, Topology, seeds};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
const MIB: u64 = 1 << 20;

fn link() -> LinkConfig {
    LinkConfig {
        delay: 10 * MS,
        jitter: MS,
        bandwidth_bps: Some(50_000_000),
        queue_bytes: 256 << 10,
        ..LinkConfig::default()
    }
}

/// Transport state of every session `h` holds, summed: (send buffered, receive buffered).
fn buffered(sim: &Sim, h: HostId) -> (u64, u64) {
    sim.node(h)
        .sessions()
        .filter_map(|s| s.transport)
        .fold((0, 0), |(a, b), t: TransportInfo| {
            (a + t.send_buffered, b + t.recv_buffered)
        })
}

/// The most any one session of `h` buffers for receiving, in bytes per stream it holds.
fn worst_session_recv(sim: &Sim, h: HostId) -> (u64, usize) {
    sim.node(h)
        .sessions()
        .filter_map(|s| s.transport)
        .map(|t| (t.recv_buffered, t.streams))
        .max()
        .unwrap_or((0, 0))
}

/// Pings answered between `from` and `to` (by the time the PONG arrived).
fn pongs_between(sim: &Sim, h: HostId, from: Duration, to: Duration) -> usize {
    sim.events(h)
        .iter()
        .filter(|(t, e)| matches!(e, Event::Pong { .. }) && *t >= from && *t < to)
        .count()
}

/// One session carries an 8 MiB stream whose reader stalls for 40 s and a 4 MiB stream that
/// is read normally; a second session (another client) carries another 4 MiB stream. Both
/// clients ping the server every 500 ms. While the reader stalls: its sender sees `Blocked`,
/// having written at most the receive window plus its own send buffer; the server holds at
/// most one stream window for it; the other two streams complete; every ping is answered.
/// When the reader resumes, the stalled stream completes intact.
#[test]
fn a_reader_that_stops_blocks_only_its_stream() {
    let config = Config::default();
    let window = config.transport.stream_recv_window;
    let send_buffer = config.transport.stream_send_buffer;
    for seed in seeds(2) {
        let resume = 40 * S;
        let book = TransferBook::new(vec![
            TransferSpec::new(8 * MIB, Opener::Dialer)
                .on_host("a")
                .reader_stalled_until(resume)
                .recorded(),
            TransferSpec::new(4 * MIB, Opener::Dialer)
                .on_host("a")
                .at(2 * S),
            TransferSpec::new(4 * MIB, Opener::Dialer)
                .on_host("c")
                .at(2 * S),
        ]);
        let mut t = Topology::new("stalled_reader", seed);
        let b = t.host("b").app(Transfers::acceptor(&book)).add();
        let a = t
            .host("a")
            .links(link(), link())
            .app(Transfers::dialer(&book, "b").pinging(500 * MS))
            .add();
        let c = t
            .host("c")
            .links(link(), link())
            .app(Transfers::dialer(&book, "b").pinging(500 * MS))
            .add();
        let mut sim = t.build();
        let (mut max_b_recv, mut max_a_send) = ((0, 0), 0);
        sim.run_until(resume - MS, |s| {
            max_b_recv = max_b_recv.max(worst_session_recv(s, b));
            max_a_send = max_a_send.max(buffered(s, a).0);
            false
        });
        let stalled = book.log(0);
        assert_eq!(
            stalled.read, 0,
            "seed {seed}: the stalled reader read nothing"
        );
        assert!(
            stalled.blocked_writes > 0,
            "seed {seed}: the sender was never told Blocked"
        );
        let first_blocked = stalled.blocked_at[0];
        assert!(
            first_blocked < 5 * S,
            "seed {seed}: blocked only at {first_blocked:?}"
        );
        assert!(
            stalled.written >= window && stalled.written <= window + send_buffer,
            "seed {seed}: {} bytes written into a stalled stream (window {window}, send buffer {send_buffer})",
            stalled.written
        );
        // Memory within the windows: no session of the server ever buffered more than one
        // stream window per stream it held (data behind a queue-drop hole waits in
        // reassembly too), nor more than the session window; once the other streams were
        // done, all it holds is the stalled stream's one window. The client holds at most
        // its send buffer per stream.
        let (most, streams) = max_b_recv;
        assert!(
            most <= window * streams as u64 && most <= config.transport.session_recv_window,
            "seed {seed}: a server session buffered {most} bytes over {streams} streams"
        );
        assert_eq!(
            buffered(&sim, b).1,
            stalled.written,
            "seed {seed}: the server holds exactly the stalled stream's bytes"
        );
        assert!(
            max_a_send <= 2 * send_buffer,
            "seed {seed}: client buffered {max_a_send} bytes for two streams"
        );
        for i in [1, 2] {
            assert!(
                book.done(i),
                "seed {seed}: transfer {i} did not complete while another stream stalled: {:?}",
                book.log(i).read
            );
        }
        // 500 ms pings from 1 s to 39 s: 76 each; all answered (no loss on these links).
        for h in [a, c] {
            let n = pongs_between(&sim, h, S, 39 * S);
            assert!(n >= 75, "seed {seed}: host {h:?} got {n} pongs in 38 s");
        }
        assert!(
            sim.run_until(30 * S, |_| book.all_done()),
            "seed {seed}: the stalled stream did not finish after the reader resumed"
        );
        book.check().unwrap();
        sim.check_invariants().unwrap();
    }
}

/// Pilot's whole-daemon stall: a server runs an application that accepts a stream and never
/// reads it, while a client streams 8 MiB to it; two other clients ping the server every
/// 200 ms for the whole minute. Every ping is answered, the stalled stream is stuck at one
/// window (the server holds no more than that), and the client was told `Blocked`.
#[test]
fn pilot_regression_a_reader_that_never_reads_does_not_stall_the_node() {
    let config = Config::default();
    let window = config.transport.stream_recv_window;
    let book = TransferBook::new(vec![
        TransferSpec::new(8 * MIB, Opener::Dialer)
            .on_host("writer")
            .reader_stalled_until(Duration::MAX),
    ]);
    let mut t = Topology::new("pilot_stall", seeds(1)[0]);
    let server = t.host("server").app(Transfers::acceptor(&book)).add();
    let writer = t
        .host("writer")
        .links(link(), link())
        .app(Transfers::dialer(&book, "server"))
        .add();
    let pingers: Vec<HostId> = ["p1", "p2"]
        .iter()
        .map(|name| {
            t.host(name)
                .links(link(), link())
                .app(tern_sim::Dialer::new("server").pinging(200 * MS, 300))
                .add()
        })
        .collect();
    let mut sim = t.build();
    let mut max_recv = 0;
    sim.run_until(61 * S, |s| {
        max_recv = max_recv.max(buffered(s, server).1);
        false
    });
    let l = book.log(0);
    assert_eq!(l.read, 0);
    assert!(l.blocked_writes > 0, "the writer was never told Blocked");
    assert!(l.written < 8 * MIB);
    assert!(
        max_recv <= window,
        "server buffered {max_recv} bytes for a stalled stream (window {window})"
    );
    for p in pingers {
        assert_eq!(sim.pongs(p), 300, "pinger {p:?} lost answers");
    }
    // The writer's session is alive and well.
    let s = sim.established(writer).unwrap();
    assert!(sim.node(writer).session_info(s).is_some());
}
