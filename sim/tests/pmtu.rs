//! Path MTU discovery in the simulator (issue 5, must-show 6): the packet size rises above
//! 1200 bytes on a 1500-byte path, and after the path MTU drops mid-transfer (a route change
//! to a narrower path that silently drops larger packets: a black hole) the session notices,
//! falls back, finds the new size, and the stream loses no data.

use std::time::Duration;

use tern_core::{Config, TransportInfo};
use tern_sim::transfer::{Opener, TransferBook, TransferSpec, Transfers};
use tern_sim::{Direction, Fault, HostId, LinkConfig, Sim, Topology, seeds};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn transport(sim: &Sim, h: HostId) -> TransportInfo {
    let s = sim.established(h).expect("session");
    sim.node(h).session_info(s).unwrap().transport.unwrap()
}

fn link(mtu: usize) -> LinkConfig {
    LinkConfig {
        mtu,
        // Some ordinary loss, which must not look like a black hole.
        loss: tern_sim::Loss::Bernoulli(0.005),
        delay: 15 * MS,
        bandwidth_bps: Some(20_000_000),
        queue_bytes: 100_000,
        ..LinkConfig::default()
    }
}

/// On a 1500-byte path (1472 bytes of UDP payload over IPv4) both ends reach the configured
/// ceiling of 1452 bytes within a second of the handshake, and bulk data then travels in
/// packets of that size.
#[test]
fn pmtu_rises_above_1200_on_a_1500_byte_path() {
    let book = TransferBook::new(vec![TransferSpec::new(2 << 20, Opener::Dialer).at(2 * S)]);
    let mut t = Topology::new("pmtu_rise", seeds(1)[0]);
    let b = t
        .host("b")
        .links(link(1500), link(1500))
        .app(Transfers::acceptor(&book))
        .add();
    let a = t
        .host("a")
        .links(link(1500), link(1500))
        .app(Transfers::dialer(&book, "b"))
        .add();
    let mut sim = t.build();
    assert!(sim.run_until(S, |s| s.established(a).is_some()
        && s.established(b).is_some()));
    sim.run_for(S);
    assert_eq!(transport(&sim, a).mtu, 1452);
    assert_eq!(transport(&sim, b).mtu, 1452);
    assert!(sim.run_until(30 * S, |_| book.all_done()));
    book.check().unwrap();
    // Ordinary loss during the transfer was not mistaken for a black hole.
    assert_eq!(transport(&sim, a).mtu, 1452);
    // Full-size data packets crossed the path (1452 bytes of UDP payload).
    let up = sim.link(a, Direction::Up).stats();
    assert!(
        up.passed_bytes / up.passed > 1300,
        "mean packet {}",
        up.passed_bytes / up.passed
    );
    assert_eq!(up.mtu, 0, "nothing was too large for the path");
}

/// Mid-transfer the path MTU drops from 1500 to 1280 bytes in both directions (UDP payloads
/// above 1252 bytes vanish). The sender's full-size packets all die; it detects the black
/// hole within a few seconds, drops back to 1200 bytes, and with a 20 s raise timer searches
/// upward again and settles between 1200 and 1252. The 16 MiB stream arrives intact.
///
/// Regression: all full-size packets vanishing meant no ACK and so no declared loss, only
/// probe timeouts whose probes were full-size too; the detector never heard of the black
/// hole and the session idled out. From the second probe timeout on, probes are small.
#[test]
fn pmtu_recovers_after_the_path_mtu_drops() {
    for seed in seeds(2) {
        let mut config = Config::default();
        config.transport.mtu_raise_interval = 20 * S;
        let size = 16u64 << 20;
        let book = TransferBook::new(vec![TransferSpec::new(size, Opener::Dialer).recorded()]);
        let mut t = Topology::new("pmtu_black_hole", seed);
        let b = t
            .host("b")
            .config(config.clone())
            .app(Transfers::acceptor(&book))
            .add();
        let a = t
            .host("a")
            .links(link(1500), link(1500))
            .config(config)
            .app(Transfers::dialer(&book, "b"))
            .add();
        let drop_at = 3 * S;
        t.fault(
            drop_at,
            Fault::LinkMtu {
                host: a,
                direction: Direction::Both,
                mtu: 1280,
            },
        );
        let mut sim = t.build();
        sim.run_until(drop_at, |_| false);
        assert_eq!(transport(&sim, a).mtu, 1452, "seed {seed}: before the drop");
        let before = book.read(0);
        assert!(before > 0 && before < size);
        let fell = sim.run_until(10 * S, |s| transport(s, a).mtu == 1200);
        assert!(
            fell,
            "seed {seed}: black hole not detected: {:?}",
            transport(&sim, a)
        );
        let detected = sim.now() - drop_at;
        // Data flows again at the base size.
        let at = book.read(0);
        sim.run_for(2 * S);
        assert!(
            book.read(0) > at,
            "seed {seed}: no progress after falling back"
        );
        // The raise timer restarts the search; it settles below the new path MTU.
        let rose = sim.run_until(40 * S, |s| {
            let m = transport(s, a).mtu;
            m > 1200 && m <= 1252
        });
        let mtu = transport(&sim, a).mtu;
        assert!(rose, "seed {seed}: no new search result ({mtu})");
        assert!(
            sim.run_until(120 * S, |s| {
                assert!(transport(s, a).mtu <= 1252, "grew past the path");
                book.all_done()
            }),
            "seed {seed}: transfer did not finish"
        );
        book.check().unwrap();
        eprintln!(
            "seed {seed}: black hole detected {detected:?} after the drop; new PMTU {mtu} (path 1252); {} B delivered in all",
            book.read(0)
        );
        let _ = b;
    }
}
