//! Congestion control in the simulator (issue 5, must-show 5), for NewReno and CUBIC:
//! utilisation of a 100 Mbit/s, 40 ms RTT path with a BDP-sized buffer; two flows sharing a
//! bottleneck; retransmitted bytes against bytes the network lost (SACK); recovery after a
//! 5-second partition; and, sampled after every simulator step of all of these, a window
//! that never reaches zero and never overflows.

use std::time::Duration;

use tern_core::cc::CongestionKind;
use tern_core::{Config, TransportInfo};
use tern_sim::transfer::{Opener, TransferBook, TransferSpec, Transfers};
use tern_sim::{Direction, Fault, HostId, LinkConfig, Loss, Sim, Topology, seeds};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
const KINDS: [CongestionKind; 2] = [CongestionKind::NewReno, CongestionKind::Cubic];

fn config(kind: CongestionKind) -> Config {
    let mut c = Config::default();
    c.transport.congestion = kind;
    c
}

fn transport(sim: &Sim, h: HostId) -> Option<TransportInfo> {
    sim.node(h).sessions().next().and_then(|s| s.transport)
}

/// Smallest and largest congestion window seen, checked after every step.
#[derive(Clone, Copy, Debug)]
struct Window {
    min: u64,
    max: u64,
    /// The most bytes in flight seen at any step.
    max_in_flight: u64,
}

impl Window {
    fn new() -> Self {
        Self {
            min: u64::MAX,
            max: 0,
            max_in_flight: 0,
        }
    }

    fn sample(&mut self, sim: &Sim, hosts: &[HostId]) {
        for &h in hosts {
            if let Some(t) = transport(sim, h) {
                self.min = self.min.min(t.cwnd);
                self.max = self.max.max(t.cwnd);
                self.max_in_flight = self.max_in_flight.max(t.bytes_in_flight);
            }
        }
    }

    /// Never below two datagrams of the smallest size (never zero), never above 1 TiB.
    fn check(&self, what: &str) {
        assert!(
            self.min >= 2 * 1200 && self.max <= tern_core::cc::MAX_WINDOW,
            "{what}: window went to {self:?}"
        );
    }
}

/// Bytes of the wire (UDP payload + 28 bytes of IPv4/UDP headers) a link passed.
fn wire_bytes(sim: &Sim, h: HostId, d: Direction) -> u64 {
    let s = sim.link(h, d).stats();
    s.passed_bytes + 28 * s.passed
}

/// ≥ 90 % utilisation of a 100 Mbit/s bottleneck with a 40 ms RTT and a BDP-sized (500 kB)
/// queue, one bulk stream, measured from 4 s (after slow start) for 6 s or 30 s. Twice: with the
/// default windows (4 MiB per stream, four times what the path plus its queue hold) and with
/// 8 MiB windows, where only
/// congestion control stands between the sender and the queue: it must overflow it, back
/// off, and still keep the link busy.
#[test]
fn a_single_flow_fills_a_100_mbit_40_ms_path() {
    for big_windows in [false, true] {
        for kind in KINDS {
            let seed = seeds(1)[0];
            let rate = 100_000_000u64;
            let bdp = (rate / 8) as usize * 40 / 1000;
            let up = LinkConfig {
                delay: 20 * MS,
                bandwidth_bps: Some(rate),
                queue_bytes: bdp,
                ..LinkConfig::default()
            };
            let down = LinkConfig {
                delay: 20 * MS,
                ..LinkConfig::default()
            };
            let mut c = config(kind);
            if big_windows {
                c.transport.stream_recv_window = 8 << 20;
                c.transport.session_recv_window = 8 << 20;
                c.transport.stream_send_buffer = 8 << 20;
            }
            let book = TransferBook::new(vec![TransferSpec::new(1 << 40, Opener::Dialer)]);
            let mut t = Topology::new("utilisation", seed);
            let b = t
                .host("b")
                .config(c.clone())
                .app(Transfers::acceptor(&book))
                .add();
            let a = t
                .host("a")
                .links(up, down)
                .config(c)
                .app(Transfers::dialer(&book, "b"))
                .add();
            let mut sim = t.build();
            let mut w = Window::new();
            sim.run_until(4 * S, |s| {
                w.sample(s, &[a, b]);
                false
            });
            let (wire0, read0) = (wire_bytes(&sim, a, Direction::Up), book.read(0));
            let lost0 = transport(&sim, a).unwrap().lost_packets;
            // A NewReno sawtooth at this window takes about 25 s: measure a whole one.
            let span = if big_windows { 30 * S } else { 6 * S };
            sim.run_until(span, |s| {
                w.sample(s, &[a, b]);
                false
            });
            let wire = wire_bytes(&sim, a, Direction::Up) - wire0;
            let goodput = book.read(0) - read0;
            let util = wire as f64 * 8.0 / (rate as f64 * span.as_secs_f64());
            let good = goodput as f64 * 8.0 / (rate as f64 * span.as_secs_f64());
            let ti = transport(&sim, a).unwrap();
            let what = format!(
                "{kind:?}, {} windows",
                if big_windows { "8 MiB" } else { "default" }
            );
            eprintln!(
                "{what}: link utilisation {:.1} %, goodput {:.1} % of 100 Mbit/s; window {:?}, {} packets lost while measured, srtt {:?}",
                util * 100.0,
                good * 100.0,
                w,
                ti.lost_packets - lost0,
                ti.srtt
            );
            assert!(util >= 0.90, "{what}: utilisation {util:.3}");
            if big_windows {
                assert!(
                    ti.lost_packets > lost0,
                    "{what}: the queue never overflowed"
                );
            }
            w.check(&what);
        }
    }
}

/// Two flows from two hosts into one receiver whose 20 Mbit/s downlink (40 ms RTT, one BDP
/// of queue) is the bottleneck, starting 2 s apart: from 20 s to 60 s each gets within 20 %
/// of the other's throughput.
#[test]
fn two_flows_share_a_bottleneck_within_20_percent() {
    for kind in KINDS {
        let seed = seeds(1)[0];
        let rate = 20_000_000u64;
        let bdp = (rate / 8) as usize * 40 / 1000;
        // A little jitter (without reordering) on the access links: a perfectly periodic
        // simulation locks drop-tail losses onto one flow (the "phase effect" of Floyd and
        // Jacobson), which real networks do not do.
        let access = LinkConfig {
            delay: 10 * MS,
            jitter: 2 * MS,
            ..LinkConfig::default()
        };
        let bottleneck = LinkConfig {
            delay: 10 * MS,
            bandwidth_bps: Some(rate),
            queue_bytes: bdp,
            ..LinkConfig::default()
        };
        let book = TransferBook::new(vec![
            TransferSpec::new(1 << 40, Opener::Dialer).on_host("a1"),
            TransferSpec::new(1 << 40, Opener::Dialer)
                .on_host("a2")
                .at(2 * S),
        ]);
        let mut t = Topology::new("fairness", seed);
        let b = t
            .host("b")
            .links(access.clone(), bottleneck)
            .config(config(kind))
            .app(Transfers::acceptor(&book))
            .add();
        let senders: Vec<HostId> = ["a1", "a2"]
            .iter()
            .map(|n| {
                t.host(n)
                    .links(access.clone(), access.clone())
                    .config(config(kind))
                    .app(Transfers::dialer(&book, "b"))
                    .add()
            })
            .collect();
        let mut sim = t.build();
        let mut w = Window::new();
        let mut sample = |s: &Sim| {
            w.sample(s, &senders);
            false
        };
        sim.run_until(20 * S, &mut sample);
        let start = [book.read(0), book.read(1)];
        sim.run_until(40 * S, &mut sample);
        let got = [book.read(0) - start[0], book.read(1) - start[1]];
        let mbit = |b: u64| b as f64 * 8.0 / 40.0 / 1e6;
        let (hi, lo) = (got[0].max(got[1]), got[0].min(got[1]));
        eprintln!(
            "{kind:?}: flow 1 {:.2} Mbit/s, flow 2 {:.2} Mbit/s (ratio {:.3}), together {:.1} % of the bottleneck",
            mbit(got[0]),
            mbit(got[1]),
            lo as f64 / hi as f64,
            (mbit(got[0]) + mbit(got[1])) / 20.0 * 100.0
        );
        assert!(
            lo as f64 >= 0.8 * hi as f64,
            "{kind:?}: unfair share {got:?}"
        );
        assert!(
            mbit(got[0]) + mbit(got[1]) >= 0.85 * 20.0,
            "{kind:?}: bottleneck underused"
        );
        w.check(&format!("{kind:?} fairness"));
        let _ = b;
    }
}

/// Selective acknowledgement works: under random loss (independent and in bursts) and the
/// tail drops of a queue, the stream bytes the sender retransmits are at most 1.5 times the
/// bytes the network actually dropped on the data path (UDP payload bytes of dropped
/// packets, so the headers make the bound slightly looser than 1.5 times the stream bytes
/// lost). No reordering here: a reordered packet may rightly be declared lost and resent.
#[test]
fn retransmissions_stay_within_one_and_a_half_times_the_losses() {
    let losses = [
        Loss::Bernoulli(0.01),
        Loss::Bernoulli(0.05),
        Loss::GilbertElliott {
            p: 0.01,
            r: 0.3,
            loss_good: 0.0,
            loss_bad: 0.7,
        },
    ];
    for kind in KINDS {
        for loss in losses {
            let seed = seeds(1)[0];
            let up = LinkConfig {
                delay: 15 * MS,
                jitter: 2 * MS,
                bandwidth_bps: Some(30_000_000),
                queue_bytes: 100_000,
                loss,
                ..LinkConfig::default()
            };
            let down = LinkConfig {
                delay: 15 * MS,
                loss,
                ..LinkConfig::default()
            };
            let size = 16u64 << 20;
            let book = TransferBook::new(vec![TransferSpec::new(size, Opener::Dialer)]);
            let mut t = Topology::new("sack", seed);
            let b = t
                .host("b")
                .config(config(kind))
                .app(Transfers::acceptor(&book))
                .add();
            let a = t
                .host("a")
                .links(up, down)
                .config(config(kind))
                .app(Transfers::dialer(&book, "b"))
                .add();
            let mut sim = t.build();
            let mut w = Window::new();
            let done = sim.run_until(600 * S, |s| {
                w.sample(s, &[a, b]);
                book.all_done()
            });
            assert!(done, "{kind:?} {loss:?}: transfer did not finish");
            book.check().unwrap();
            let ti = transport(&sim, a).unwrap();
            let dropped = sim.link(a, Direction::Up).stats().dropped_bytes();
            let ratio = ti.stream_bytes_retransmitted as f64 / dropped.max(1) as f64;
            eprintln!(
                "{kind:?} {loss:?}: {} B resent for {dropped} B dropped on the data path (ratio {ratio:.3}); {} packets declared lost, {:.1} s",
                ti.stream_bytes_retransmitted,
                ti.lost_packets,
                sim.now().as_secs_f64()
            );
            assert!(dropped > 0);
            assert!(ratio <= 1.5, "{kind:?} {loss:?}: ratio {ratio:.3}");
            w.check(&format!("{kind:?} {loss:?}"));
        }
    }
}

/// A bulk transfer over a 20 Mbit/s, 40 ms RTT path is cut off completely for 5 s. The
/// session survives; data flows again at the first probe after the path comes back (probe
/// timeouts double, so that is never later than the outage was long); from one second
/// after that, the transfer runs at least at half the link rate, and it completes intact.
#[test]
fn a_session_recovers_after_a_five_second_partition() {
    for kind in KINDS {
        let seed = seeds(1)[0];
        let rate = 20_000_000u64;
        let up = LinkConfig {
            delay: 20 * MS,
            bandwidth_bps: Some(rate),
            queue_bytes: 100_000,
            ..LinkConfig::default()
        };
        let down = LinkConfig {
            delay: 20 * MS,
            ..LinkConfig::default()
        };
        let size = 40u64 << 20;
        let book = TransferBook::new(vec![TransferSpec::new(size, Opener::Dialer).recorded()]);
        let mut t = Topology::new("partition", seed);
        let b = t
            .host("b")
            .config(config(kind))
            .app(Transfers::acceptor(&book))
            .add();
        let a = t
            .host("a")
            .links(up, down)
            .config(config(kind))
            .app(Transfers::dialer(&book, "b"))
            .add();
        let (cut, outage) = (5 * S, 5 * S);
        let heal = cut + outage;
        t.fault(
            cut,
            Fault::Partition {
                host: a,
                direction: Direction::Both,
            },
        );
        t.fault(
            heal,
            Fault::Heal {
                host: a,
                direction: Direction::Both,
            },
        );
        let mut sim = t.build();
        let mut w = Window::new();
        let mut sample = |s: &Sim| {
            w.sample(s, &[a, b]);
            false
        };
        sim.run_until(heal, &mut sample);
        let at_heal = book.read(0);
        assert!(
            at_heal > 0 && at_heal < size,
            "{kind:?}: {at_heal} bytes before the cut"
        );
        sim.run_until(outage, &mut sample);
        let resumed = book
            .log(0)
            .reads
            .iter()
            .find(|&&(t, _)| t >= heal)
            .map(|&(t, _)| t);
        let resumed = resumed
            .unwrap_or_else(|| panic!("{kind:?}: nothing delivered within {outage:?} of healing"));
        let from_t = resumed + S;
        sim.run_until(from_t.saturating_sub(sim.now()), &mut sample);
        let from = book.read(0);
        sim.run_until(5 * S, &mut sample);
        let mbit = (book.read(0) - from) as f64 * 8.0 / 5.0 / 1e6;
        let ti = transport(&sim, a).unwrap();
        eprintln!(
            "{kind:?}: delivery resumed {:?} after healing; {mbit:.1} Mbit/s over the 5 s from one second later; cwnd {} ssthresh {}",
            resumed - heal,
            ti.cwnd,
            ti.ssthresh
        );
        assert!(
            mbit >= 10.0,
            "{kind:?}: only {mbit:.1} Mbit/s after healing"
        );
        assert!(sim.run_until(120 * S, |s| {
            w.sample(s, &[a, b]);
            book.all_done()
        }));
        book.check().unwrap();
        w.check(&format!("{kind:?} partition"));
    }
}

/// Slow start into a 500 kB queue at 100 Mbit/s: the overshoot loses a few hundred packets
/// in one burst, leaving hundreds of holes in the stream.
fn overshoot(windows: u64) -> (Sim, HostId, HostId, Window) {
    let rate = 100_000_000u64;
    let up = LinkConfig {
        delay: 20 * MS,
        bandwidth_bps: Some(rate),
        queue_bytes: 500_000,
        ..LinkConfig::default()
    };
    let down = LinkConfig {
        delay: 20 * MS,
        ..LinkConfig::default()
    };
    let mut c = Config::default();
    c.transport.stream_recv_window = windows;
    c.transport.session_recv_window = windows;
    c.transport.stream_send_buffer = windows;
    let book = TransferBook::new(vec![TransferSpec::new(1 << 40, Opener::Dialer)]);
    let mut t = Topology::new("overshoot", seeds(1)[0]);
    let b = t
        .host("b")
        .config(c.clone())
        .app(Transfers::acceptor(&book))
        .add();
    let a = t
        .host("a")
        .links(up, down)
        .config(c)
        .app(Transfers::dialer(&book, "b"))
        .add();
    let mut sim = t.build();
    let mut w = Window::new();
    sim.run_until(5 * S, |s| {
        w.sample(s, &[a]);
        false
    });
    (sim, a, b, w)
}

/// Regression: with a reassembly cap of 64 fragments per stream, the receiver refused
/// packets it had received once a tail-drop burst left more holes than that; the sender
/// declared them lost, resent them and cut its window for them (360 spurious losses per 189
/// real ones). Every loss the sender declares must be a packet the network dropped.
#[test]
fn regression_a_deep_tail_drop_burst_causes_no_spurious_losses() {
    let (sim, a, b, _) = overshoot(8 << 20);
    let dropped = sim.link(a, Direction::Up).stats().queue_full;
    let ti = transport(&sim, a).unwrap();
    assert!(
        dropped > 100,
        "the overshoot dropped only {dropped} packets"
    );
    assert_eq!(
        sim.node(b)
            .stats()
            .drops
            .get(tern_core::DropReason::BadFrames),
        0,
        "the receiver refused packets"
    );
    assert_eq!(ti.lost_packets, dropped, "declared lost vs dropped");
}

/// Regression: a sender limited by flow control (a stream window far below what the path
/// could take: 512 KiB against 500 kB of bandwidth-delay product plus a 500 kB queue) kept
/// growing its congestion window on every ACK (to 3.7 MB with 1 MiB windows, and in slow
/// start without limit). The window may grow only while at least half of it is in flight
/// (RFC 9002 §7.8); the ACKs of such a flight can still add one flight in slow start, so
/// the window stays within three times the most bytes ever in flight.
#[test]
fn regression_a_flow_control_limited_window_does_not_run_away() {
    let windows = 512u64 << 10;
    let (sim, a, _, w) = overshoot(windows);
    assert!(w.max_in_flight > 0);
    let bound = 3 * w.max_in_flight;
    assert!(
        w.max <= bound,
        "window reached {} (max in flight {}, bound {bound})",
        w.max,
        w.max_in_flight
    );
    assert_eq!(transport(&sim, a).unwrap().lost_packets, 0);
}
