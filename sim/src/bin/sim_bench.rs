//! Simulator speed: simulated seconds per wall-clock second.
//!
//! `cargo run --release -p tern-sim --bin sim-bench [-- runs]` runs two scenarios `runs`
//! times (default 7) and prints the median and range:
//!
//! * **idle**: two public nodes on LAN links with one established session and nothing but
//!   keepalives, for one simulated hour;
//! * **busy**: the same pair, one side pinging every 250 µs over a 10 ms round trip (4 000
//!   pings and 4 000 pongs, each its own encrypted packet, per simulated second), for 20
//!   simulated seconds.
// A benchmark measures wall-clock time, which the simulator itself never reads.
#![allow(clippy::disallowed_methods)]
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use tern_core::Event;
use tern_sim::{App, AppCx, Dialer, LinkConfig, LinkPreset, Sim, Topology};

/// Pings the session it dials every `every`, each ping in its own packet.
struct Flood {
    target: &'static str,
    every: Duration,
    session: Option<tern_core::SessionId>,
}

impl App for Flood {
    fn start(&mut self, cx: &mut AppCx<'_>) {
        let t = cx.lookup(self.target).expect("target");
        let now = cx.now();
        cx.node.connect(now, t.addr, t.peer_id).expect("connect");
    }

    fn on_event(&mut self, cx: &mut AppCx<'_>, event: &Event) {
        if let Event::SessionEstablished { session, .. } = *event {
            self.session = Some(session);
            cx.set_timer(self.every, 0);
        }
    }

    fn on_timer(&mut self, cx: &mut AppCx<'_>, _tag: u64) {
        let now = cx.now();
        if let Some(s) = self.session {
            let _ = cx.node.ping(now, s);
        }
        cx.set_timer(self.every, 0);
    }
}

fn idle_pair() -> Sim {
    let mut t = Topology::new("bench_idle", 1);
    t.host("b").link(LinkPreset::Lan).add();
    t.host("a")
        .link(LinkPreset::Lan)
        .app(Dialer::new("b").silent())
        .add();
    let mut sim = t.build();
    let a = sim.host_id("a").unwrap();
    assert!(sim.run_until(Duration::from_secs(5), |s| s.established(a).is_some()));
    sim
}

fn busy_pair() -> Sim {
    let link = LinkConfig {
        delay: Duration::from_micros(2500),
        ..LinkPreset::Lan.config()
    };
    let mut t = Topology::new("bench_busy", 1);
    t.host("b").links(link.clone(), link.clone()).add();
    t.host("a")
        .links(link.clone(), link)
        .app(Flood {
            target: "b",
            every: Duration::from_micros(250),
            session: None,
        })
        .add();
    let mut sim = t.build();
    let a = sim.host_id("a").unwrap();
    assert!(sim.run_until(Duration::from_secs(5), |s| s.established(a).is_some()));
    sim
}

/// Runs `simulated` of the scenario; returns (simulated s per wall s, packets per wall s).
fn measure(mut sim: Sim, simulated: Duration) -> (f64, f64) {
    let packets = sim.counters().created;
    let start = Instant::now();
    sim.run_for(simulated);
    let wall = start.elapsed().as_secs_f64();
    let sent = sim.counters().created - packets;
    sim.check_invariants().expect("invariants");
    for h in sim.hosts() {
        assert!(
            !h.events()
                .iter()
                .any(|(_, e)| matches!(e, Event::SessionClosed { .. })),
            "the session must stay up for the whole run"
        );
    }
    (simulated.as_secs_f64() / wall, sent as f64 / wall)
}

fn report(name: &str, mut runs: Vec<(f64, f64)>, what: &str) {
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let med = runs[runs.len() / 2];
    println!(
        "{name:<5} median {:>12.0} simulated s / wall s  ({:>10.0} packets / wall s)  range {:.0}–{:.0}  [{what}]",
        med.0,
        med.1,
        runs[0].0,
        runs[runs.len() - 1].0
    );
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let hour = Duration::from_secs(3600);
    let idle: Vec<_> = (0..runs).map(|_| measure(idle_pair(), hour)).collect();
    report("idle", idle, "1 session, keepalives only, 1 simulated hour");
    let busy: Vec<_> = (0..runs)
        .map(|_| measure(busy_pair(), Duration::from_secs(20)))
        .collect();
    report(
        "busy",
        busy,
        "a ping every 250 µs, 10 ms RTT, 20 simulated s",
    );
}
