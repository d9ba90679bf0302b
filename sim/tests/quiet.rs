//! Closed streams and idle sessions go quiet (issue 5, must-show 2): once both sides closed
//! a stream, nothing more is sent for it (Pilot's endless FIN+ACK ping-pong, §1.4 of the
//! Pilot reference, as a regression test), and an idle session sends only keepalives,
//! counted by frame type over an hour of simulated time.

use std::time::Duration;

use tern_core::{FrameCounts, FrameKind, SessionStats};
use tern_sim::transfer::{Opener, TransferBook, TransferSpec, Transfers};
use tern_sim::{HostId, LinkConfig, Loss, Sim, Topology, seeds};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// Frames that concern streams.
const STREAM_FRAMES: [FrameKind; 6] = [
    FrameKind::Stream,
    FrameKind::ResetStream,
    FrameKind::StopSending,
    FrameKind::MaxStreamData,
    FrameKind::StreamDataBlocked,
    FrameKind::MaxData,
];

fn stats(sim: &Sim, h: HostId) -> SessionStats {
    let s = sim.established(h).expect("session");
    sim.node(h).session_info(s).expect("live session").stats
}

fn streams_held(sim: &Sim, h: HostId) -> usize {
    sim.established(h)
        .and_then(|s| sim.node(h).session_info(s))
        .and_then(|i| i.transport)
        .map_or(usize::MAX, |t| t.streams)
}

fn describe(c: &FrameCounts) -> String {
    c.nonzero()
        .map(|(k, n)| format!("{}={n}", k.name()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn link(loss: f64) -> LinkConfig {
    LinkConfig {
        loss: Loss::Bernoulli(loss),
        delay: 10 * MS,
        jitter: 2 * MS,
        bandwidth_bps: Some(50_000_000),
        queue_bytes: 256 << 10,
        ..LinkConfig::default()
    }
}

/// Pilot: "every closed stream starts a FIN+ACK ping-pong that never ends on a lossless
/// path (~50k packets/s)". Here a 300 KB stream is written and closed, the receiver reads it
/// to the end and closes its half; once both nodes have freed the stream, ten minutes pass:
/// not one stream-related frame is sent by either side, and the only packets are keepalives.
/// On a lossless path the whole life of the stream costs no more STREAM frames than the
/// data needs (one per packet of data, plus the FIN).
#[test]
fn pilot_regression_a_closed_stream_goes_quiet() {
    for (loss, seed) in [(0.0, 1), (0.05, 2), (0.05, 3)] {
        for seed in seeds(1).into_iter().map(|s| s + seed) {
            let size = 300_000u64;
            let book = TransferBook::new(vec![TransferSpec::new(size, Opener::Dialer)]);
            let mut t = Topology::new("closed_stream_quiet", seed);
            let b = t.host("b").app(Transfers::acceptor(&book)).add();
            let a = t
                .host("a")
                .links(link(loss), link(loss))
                .app(Transfers::dialer(&book, "b"))
                .add();
            let mut sim = t.build();
            let closed = sim.run_until(120 * S, |s| {
                book.all_done() && streams_held(s, a) == 0 && streams_held(s, b) == 0
            });
            book.check().unwrap();
            assert!(
                closed,
                "loss {loss} seed {seed}: the stream was never freed on both"
            );
            let closed_at = sim.now();
            let (a0, b0) = (stats(&sim, a), stats(&sim, b));
            if loss == 0.0 {
                // One STREAM frame per full packet of data, the opening frame and the FIN.
                let mss = 1452 - 60;
                let bound = size.div_ceil(mss) + 2;
                let sent = a0.tx_frames.get(FrameKind::Stream);
                assert!(
                    sent <= bound,
                    "{sent} STREAM frames for {size} bytes (bound {bound})"
                );
            }
            let quiet = 600 * S;
            sim.run_for(quiet);
            for (h, before) in [(a, a0), (b, b0)] {
                let after = stats(&sim, h);
                let tx = after.tx_frames.since(&before.tx_frames);
                for k in STREAM_FRAMES {
                    assert_eq!(
                        tx.get(k),
                        0,
                        "loss {loss} seed {seed}: host {h:?} sent {} after the stream closed at {closed_at:?}: {}",
                        k.name(),
                        describe(&tx)
                    );
                }
                // Keepalives only: one packet per 15 s keepalive interval per side on a
                // lossless path; with loss, a lost PING or PONG costs a probe timeout and its
                // two probe packets (about 10 % of rounds at 5 % loss each way).
                let packets = after.tx_packets - before.tx_packets;
                let intervals = quiet.as_secs() / 15;
                let bound = intervals + 1 + if loss > 0.0 { intervals / 2 } else { 0 };
                assert!(
                    packets <= bound,
                    "host {h:?} sent {packets} packets in {quiet:?} of quiet (bound {bound}): {}",
                    describe(&tx)
                );
            }
        }
    }
}

/// An established session with no traffic for one simulated hour sends nothing but
/// keepalives: PING, and its PONG carrying the ACK. Counted by frame type on both sides
/// after the first minute (the PMTU search is done by then), and bounded by the keepalive
/// interval: one round trip of two packets per 15 s.
#[test]
fn an_idle_session_sends_only_keepalives() {
    let mut t = Topology::new("idle_hour", seeds(1)[0]);
    let b = t.host("b").links(link(0.0), link(0.0)).add();
    let a = t
        .host("a")
        .links(link(0.0), link(0.0))
        .app(tern_sim::Dialer::new("b").silent())
        .add();
    let mut sim = t.build();
    assert!(sim.run_until(10 * S, |s| s.established(a).is_some()
        && s.established(b).is_some()));
    sim.run_for(60 * S);
    let (a0, b0) = (stats(&sim, a), stats(&sim, b));
    let hour = 3600 * S;
    sim.run_for(hour);
    let intervals = hour.as_secs() / 15;
    let mut total_packets = 0;
    for (h, before) in [(a, a0), (b, b0)] {
        let after = stats(&sim, h);
        let tx = after.tx_frames.since(&before.tx_frames);
        eprintln!(
            "host {h:?}: {} packets in an idle hour: {}",
            after.tx_packets - before.tx_packets,
            describe(&tx)
        );
        for (k, n) in tx.nonzero() {
            assert!(
                matches!(k, FrameKind::Ping | FrameKind::Pong | FrameKind::Ack),
                "host {h:?} sent {n} {} frames while idle: {}",
                k.name(),
                describe(&tx)
            );
        }
        total_packets += after.tx_packets - before.tx_packets;
    }
    // Both sides together: the initiator's PING, the responder's PONG with the ACK of the
    // PING (a PONG elicits no ACK).
    assert!(
        total_packets <= 2 * intervals + 2,
        "{total_packets} packets in an idle hour ({intervals} keepalive intervals)"
    );
    assert!(
        total_packets >= intervals,
        "keepalives stopped: {total_packets} packets in an hour"
    );
    assert!(
        sim.node(a)
            .session_info(sim.established(a).unwrap())
            .is_some()
    );
}
