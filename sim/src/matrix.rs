//! The NAT matrix (issue 6, must-shows 1 and 2): for a pair of NAT presets and a seed, two
//! nodes register with a rendezvous server, one resolves the other by hostname, connects
//! (relay first) and writes to a stream at once; the run records when the first byte
//! arrived, over which path, whether and when both sides went direct, and how many
//! hole-punching probes it took. [`run_cell`] is one such run, [`Matrix`] aggregates runs per
//! preset pair against the oracle, and [`Matrix::render`] writes `sim/NAT_MATRIX.md`
//! (`cargo run --release -p tern-sim --bin nat-matrix`).

use std::fmt::Write as _;
use std::time::Duration;

use tern_core::rendezvous::{Query, Registration, Request, Response};
use tern_core::{Event, PathInfo, RendezvousProblem, SessionId};

use crate::ids::HostId;
use crate::link::LinkConfig;
use crate::nat::NatPreset;
use crate::oracle::{Outcome, Technique, expected_for_presets};
use crate::sim::Sim;
use crate::topology::Topology;

/// One-way delay of every access link in the matrix (so a node–server round trip is 40 ms
/// and a relayed round trip between two nodes 80 ms).
pub const LINK_DELAY: Duration = Duration::from_millis(10);
/// Hole-punching sockets each node has (the hard side of birthday probing uses them).
pub const PUNCH_SOCKETS: u16 = 256;
/// How long after the directory answer a pair has to go direct (two punching attempts).
pub const DIRECT_WINDOW: Duration = Duration::from_secs(75);
/// A run that went direct before this had no need of a retry.
const FIRST_ATTEMPT: Duration = Duration::from_secs(25);
/// Stream bytes written at once when the session is up.
pub const STREAM_BYTES: usize = 16 * 1024;
/// Virtual port the responder listens on.
const PORT: u16 = 5000;
const S: Duration = Duration::from_secs(1);

/// What one run ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Both sides on a direct path at the end.
    Direct,
    /// A working session through the relay.
    Relayed,
    /// No session at all, and why.
    NoConnection(NoConnection),
}

/// Why a pair got no session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoConnection {
    /// A node could not reach the rendezvous server; its node reported this problem.
    Unreachable {
        /// Which side (`"a"` or `"b"`).
        side: &'static str,
        /// What the node reported (`RendezvousStatus::problem`).
        problem: RendezvousProblem,
    },
    /// Everything registered but no session came up (a bug).
    NoSession,
}

/// One run of one cell.
#[derive(Clone, Debug)]
pub struct CellRun {
    /// `a`'s preset (the dialer).
    pub a: NatPreset,
    /// `b`'s preset.
    pub b: NatPreset,
    /// The seed.
    pub seed: u64,
    /// How it ended.
    pub observed: Observed,
    /// Directory answer → first stream byte at `b`.
    pub first_byte: Option<Duration>,
    /// The path the first byte came over was the relay.
    pub first_byte_relayed: bool,
    /// Relayed round trip: `a`'s and `b`'s smoothed RTT to the server, summed.
    pub relay_rtt: Option<Duration>,
    /// Directory answer → both sides on a direct path.
    pub to_direct: Option<Duration>,
    /// Every stream byte written arrived, in order.
    pub stream_intact: bool,
    /// Hole-punching probes both nodes sent.
    pub probes: u64,
}

fn link() -> LinkConfig {
    LinkConfig {
        delay: LINK_DELAY,
        jitter: Duration::from_millis(1),
        bandwidth_bps: Some(100_000_000),
        queue_bytes: 256 * 1024,
        ..LinkConfig::default()
    }
}

fn registration(name: &str) -> Registration {
    Registration {
        hostname: Some(name.into()),
        tags: vec!["mcp".into()],
        public: true,
        ..Registration::default()
    }
}

/// Builds the matrix topology: a public rendezvous server `rdv` (two ports), `a` behind
/// `pa` and `b` behind `pb`, each registered under its name with [`PUNCH_SOCKETS`] punching
/// sockets.
pub fn topology(pa: NatPreset, pb: NatPreset, seed: u64) -> Topology {
    let mut t = Topology::new(&format!("nat_matrix_{}_{}", pa.name(), pb.name()), seed);
    t.host("rdv")
        .links(link(), link())
        .rendezvous_server()
        .add();
    for (name, preset) in [("a", pa), ("b", pb)] {
        t.host(name)
            .behind_preset(preset)
            .links(link(), link())
            .punch_sockets(PUNCH_SOCKETS)
            .rendezvous_client("rdv", registration(name))
            .add();
    }
    t
}

fn registered(sim: &Sim, h: HostId) -> bool {
    sim.events(h)
        .iter()
        .any(|(_, e)| matches!(e, Event::Registered { .. }))
}

fn problem(sim: &Sim, h: HostId) -> Option<RendezvousProblem> {
    sim.node(h).rendezvous_status().and_then(|s| s.problem)
}

fn direct(sim: &Sim, h: HostId, s: Option<SessionId>) -> bool {
    s.and_then(|s| sim.node(h).session_info(s))
        .is_some_and(|i| matches!(i.path, PathInfo::Direct(_)))
}

fn incoming(sim: &Sim, h: HostId) -> Option<SessionId> {
    sim.events(h).iter().find_map(|(_, e)| match e {
        Event::SessionEstablished {
            session,
            initiator: false,
            ..
        } => Some(*session),
        _ => None,
    })
}

fn server_rtt(sim: &Sim, h: HostId) -> Option<Duration> {
    let s = sim.node(h).rendezvous_status()?.session?;
    sim.node(h).session_info(s)?.rtt
}

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// The simulation seed of run `seed` of the cell `pa` × `pb`: distinct per cell, so that
/// cells whose NATs behave alike still draw independent ports and probes.
pub fn cell_seed(pa: NatPreset, pb: NatPreset, seed: u64) -> u64 {
    let index = |p: NatPreset| NatPreset::ALL.iter().position(|x| *x == p).unwrap_or(0) as u64;
    seed * 1000 + index(pa) * 10 + index(pb)
}

/// Runs one cell: `a` behind `pa` resolves and dials `b` behind `pb` (run `seed`, simulated
/// with [`cell_seed`]).
pub fn run_cell(pa: NatPreset, pb: NatPreset, seed: u64) -> CellRun {
    let mut sim = topology(pa, pb, cell_seed(pa, pb, seed)).build();
    let (a, b) = (sim.host_id("a").unwrap(), sim.host_id("b").unwrap());
    let mut run = CellRun {
        a: pa,
        b: pb,
        seed,
        observed: Observed::NoConnection(NoConnection::NoSession),
        first_byte: None,
        first_byte_relayed: false,
        relay_rtt: None,
        to_direct: None,
        stream_intact: false,
        probes: 0,
    };
    sim.command(b, |n, _| n.listen(PORT).expect("listen"));
    // Registration, or a typed reason why not.
    sim.run_until(60 * S, |s| {
        [a, b]
            .iter()
            .all(|&h| registered(s, h) || problem(s, h).is_some())
    });
    for (side, h) in [("a", a), ("b", b)] {
        if !registered(&sim, h) {
            if let Some(problem) = problem(&sim, h) {
                run.observed = Observed::NoConnection(NoConnection::Unreachable { side, problem });
            }
            return run;
        }
    }
    // Let the beacon's second observation arrive (it is part of registration).
    sim.run_for(S);
    // The directory answer.
    let req = sim
        .command(a, |n, now| {
            n.rendezvous_request(now, Request::Resolve(Query::Hostname("b".into())))
        })
        .expect("connected");
    let answered = sim.run_until(10 * S, |s| {
        s.events(a)
            .iter()
            .any(|(_, e)| *e == Event::RendezvousResponse { req_id: req })
    });
    assert!(answered, "no directory answer");
    let t_answer = sim.now();
    let Some(Response::Resolved(entry)) = sim.command(a, |n, _| n.take_rendezvous_response(req))
    else {
        panic!("b did not resolve");
    };
    // Relay-first connect, and the first bytes as soon as the session is up.
    let sa = sim
        .command(a, |n, now| n.connect_peer(now, entry.record.peer))
        .expect("connect_peer");
    let up = sim.run_until(10 * S, |s| {
        s.events(a)
            .iter()
            .any(|(_, e)| matches!(e, Event::SessionEstablished { session, .. } if *session == sa))
    });
    if !up {
        return run;
    }
    let data: Vec<u8> = (0..STREAM_BYTES).map(pattern).collect();
    let tx = sim.command(a, |n, _| {
        let id = n.open_stream(sa, PORT).expect("open");
        let wrote = n.stream(id).expect("stream").write(&data).expect("write");
        n.stream(id).expect("stream").finish().expect("finish");
        (id, wrote)
    });
    assert_eq!(
        tx.1, STREAM_BYTES,
        "the first write fits the initial window"
    );
    let readable = sim.run_until(10 * S, |s| {
        s.events(b)
            .iter()
            .any(|(_, e)| matches!(e, Event::StreamReadable { .. }))
    });
    if !readable {
        return run;
    }
    run.first_byte = Some(sim.now() - t_answer);
    let sb = incoming(&sim, b);
    run.first_byte_relayed = sb
        .and_then(|s| sim.node(b).session_info(s))
        .is_some_and(|i| matches!(i.path, PathInfo::Relayed { .. }));
    run.relay_rtt = server_rtt(&sim, a)
        .zip(server_rtt(&sim, b))
        .map(|(x, y)| x + y);
    // Direct, or the window closes.
    let deadline = t_answer + DIRECT_WINDOW;
    let went_direct = sim.run_until(deadline - sim.now(), |s| {
        direct(s, a, Some(sa)) && direct(s, b, incoming(s, b))
    });
    if went_direct {
        run.to_direct = Some(sim.now() - t_answer);
        // It must stay direct.
        sim.run_for(5 * S);
    }
    let sb = incoming(&sim, b);
    let alive = sim.node(a).session_info(sa).is_some() && sb.is_some();
    run.observed = if !alive {
        Observed::NoConnection(NoConnection::NoSession)
    } else if direct(&sim, a, Some(sa)) && direct(&sim, b, sb) {
        Observed::Direct
    } else {
        Observed::Relayed
    };
    // Every byte, in order.
    let rx = sim
        .events(b)
        .iter()
        .find_map(|(_, e)| match e {
            Event::StreamOpened { stream, port } if *port == PORT => Some(*stream),
            _ => None,
        })
        .expect("stream opened");
    let got = sim.command(b, |n, _| {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        if let Some(mut s) = n.stream(rx) {
            while let Ok(Some(k)) = s.read(&mut buf) {
                if k == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..k]);
            }
        }
        out
    });
    run.stream_intact = got == data;
    run.probes = [a, b]
        .iter()
        .map(|&h| sim.node(h).stats().punch_probes)
        .sum();
    run
}

/// Runs of every seed of one preset pair.
#[derive(Clone, Debug)]
pub struct Cell {
    /// `a`'s preset.
    pub a: NatPreset,
    /// `b`'s preset.
    pub b: NatPreset,
    /// What the oracle expects.
    pub expected: Outcome,
    /// The runs.
    pub runs: Vec<CellRun>,
}

/// The share of runs that must go direct where the oracle says a direct path is possible.
pub fn required_direct_share(expected: Outcome) -> f64 {
    match expected {
        Outcome::Direct(Technique::OneSideDials | Technique::SimultaneousOpen) => 1.0,
        Outcome::Direct(_) => 0.95,
        Outcome::Relay | Outcome::UdpImpossible => 0.0,
    }
}

impl Cell {
    /// Runs that went direct.
    pub fn direct(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| r.observed == Observed::Direct)
            .count()
    }

    /// Why the cell does not match the oracle, if it does not.
    pub fn mismatch(&self) -> Option<String> {
        let n = self.runs.len();
        let mut why = Vec::new();
        match self.expected {
            Outcome::UdpImpossible => {
                for r in &self.runs {
                    if !matches!(
                        r.observed,
                        Observed::NoConnection(NoConnection::Unreachable { .. })
                    ) {
                        why.push(format!(
                            "seed {}: {:?}, expected a typed reason",
                            r.seed, r.observed
                        ));
                    }
                }
            }
            expected => {
                for r in &self.runs {
                    if let Observed::NoConnection(c) = r.observed {
                        why.push(format!("seed {}: no connection ({c:?})", r.seed));
                    }
                    if expected == Outcome::Relay && r.observed == Observed::Direct {
                        why.push(format!(
                            "seed {}: direct where the oracle says relay",
                            r.seed
                        ));
                    }
                    if !r.first_byte_relayed {
                        why.push(format!(
                            "seed {}: first byte did not come over the relay",
                            r.seed
                        ));
                    }
                    match (r.first_byte, r.relay_rtt) {
                        (Some(t), Some(rtt)) if t <= 2 * rtt => {}
                        (t, rtt) => why.push(format!(
                            "seed {}: first byte after {t:?}, relayed RTT {rtt:?} (must be ≤ 2 RTT)",
                            r.seed
                        )),
                    }
                    if !r.stream_intact {
                        why.push(format!("seed {}: stream bytes lost or reordered", r.seed));
                    }
                }
                let need = (required_direct_share(expected) * n as f64).ceil() as usize;
                if self.direct() < need {
                    let failed: Vec<u64> = self
                        .runs
                        .iter()
                        .filter(|r| r.observed != Observed::Direct)
                        .map(|r| r.seed)
                        .collect();
                    why.push(format!(
                        "direct in {}/{n} runs, need {need} (not direct: seeds {failed:?})",
                        self.direct()
                    ));
                }
            }
        }
        (!why.is_empty()).then(|| {
            format!(
                "{} × {} (oracle {}): {}",
                self.a.name(),
                self.b.name(),
                self.expected.symbol(),
                why.join("; ")
            )
        })
    }

    fn median(&self, f: impl Fn(&CellRun) -> Option<Duration>) -> Option<Duration> {
        let mut v: Vec<Duration> = self.runs.iter().filter_map(f).collect();
        v.sort();
        v.get(v.len() / 2).copied()
    }

    fn max(&self, f: impl Fn(&CellRun) -> Option<Duration>) -> Option<Duration> {
        self.runs.iter().filter_map(f).max()
    }
}

/// Every preset pair (`a` ≤ `b` in preset order: the matrix is symmetric, and the dialer
/// alternates with the seed) with its runs.
#[derive(Clone, Debug, Default)]
pub struct Matrix {
    /// The cells.
    pub cells: Vec<Cell>,
}

/// Seeds for a cell: `n` by default, more where the oracle's technique is probabilistic.
pub fn seeds_for(expected: Outcome, n: u64, probabilistic: u64) -> Vec<u64> {
    match expected {
        Outcome::Direct(
            Technique::BirthdayProbing
            | Technique::PortPrediction
            | Technique::PortPredictionFragile,
        ) => (0..probabilistic).collect(),
        _ => (0..n).collect(),
    }
}

impl Matrix {
    /// Runs every unordered preset pair with [`seeds_for`]; on even seeds the first preset
    /// dials, on odd seeds the second. `filter` picks the pairs (all: `|_, _| true`).
    pub fn run(n: u64, probabilistic: u64, filter: impl Fn(NatPreset, NatPreset) -> bool) -> Self {
        let mut m = Matrix::default();
        for (i, &pa) in NatPreset::ALL.iter().enumerate() {
            for &pb in &NatPreset::ALL[i..] {
                if !filter(pa, pb) {
                    continue;
                }
                let expected = expected_for_presets(pa, pb);
                let runs = seeds_for(expected, n, probabilistic)
                    .into_iter()
                    .map(|seed| {
                        let (x, y) = if seed % 2 == 0 { (pa, pb) } else { (pb, pa) };
                        run_cell(x, y, seed)
                    })
                    .collect();
                m.cells.push(Cell {
                    a: pa,
                    b: pb,
                    expected,
                    runs,
                });
            }
        }
        m
    }

    /// Every mismatch with the oracle.
    pub fn mismatches(&self) -> Vec<String> {
        self.cells.iter().filter_map(Cell::mismatch).collect()
    }

    /// The Markdown report: the outcome grid, then one row per cell with the numbers.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# NAT matrix\n\nGenerated by `cargo run --release -p tern-sim --bin nat-matrix` (do not edit).\n\
             Every preset pair of `tern_sim::NatPreset`, several seeds each: a public rendezvous \
             server (two ports, for the beacon), `a` and `b` behind their NATs with {PUNCH_SOCKETS} \
             hole-punching sockets each, every access link {} ms one way. `a` resolves `b` by \
             hostname, connects (relay first) and writes {STREAM_BYTES} bytes to a stream at once; \
             on odd seeds the pair is dialled the other way round. Times count from the \
             directory answer. Oracle: `tern_sim::oracle` (`p2p-anchors.md` §4.3).\n",
            LINK_DELAY.as_millis()
        );
        let _ = writeln!(
            s,
            "Legend: **D** direct in every run · **D n/m** direct in n of m runs · **R** relayed · \
             **⛔** no UDP: the node reports `RendezvousProblem::Unreachable` · ✗ mismatch with the oracle\n"
        );
        let _ = write!(s, "| A \\ B |");
        for p in NatPreset::ALL {
            let _ = write!(s, " {} |", p.name());
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "|---|{}", "---|".repeat(NatPreset::ALL.len()));
        for pa in NatPreset::ALL {
            let _ = write!(s, "| **{}** |", pa.name());
            for pb in NatPreset::ALL {
                let cell = self
                    .cells
                    .iter()
                    .find(|c| (c.a, c.b) == (pa, pb) || (c.a, c.b) == (pb, pa));
                let txt = match cell {
                    None => "".to_owned(),
                    Some(c) => {
                        let mark = if c.mismatch().is_some() { " ✗" } else { "" };
                        let (d, n) = (c.direct(), c.runs.len());
                        let body = if c.expected == Outcome::UdpImpossible {
                            "⛔".to_owned()
                        } else if d == n {
                            "D".to_owned()
                        } else if d == 0 {
                            "R".to_owned()
                        } else {
                            format!("D {d}/{n}")
                        };
                        format!("{body} ({}){mark}", c.expected.symbol())
                    }
                };
                let _ = write!(s, " {txt} |");
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "\n## Per cell\n\nFirst attempt: runs direct before the first retry (attempts are \
             retried 30 s after one fails, with backoff). \
             First byte and time to direct: median / max over the runs. \
             Relayed RTT: both nodes' round trip to the server, summed (the bound for the first \
             byte is 2 × that). Probes: hole-punching probes both nodes sent per run (mean).\n"
        );
        let _ = writeln!(
            s,
            "| A | B | oracle | runs | direct | first attempt | first byte | relayed RTT | first byte over relay | to direct | probes | stream intact | matches |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let ms =
            |d: Option<Duration>| d.map_or("–".to_owned(), |d| format!("{} ms", d.as_millis()));
        for c in &self.cells {
            let n = c.runs.len();
            if c.expected == Outcome::UdpImpossible {
                let reasons: Vec<String> = c
                    .runs
                    .iter()
                    .filter_map(|r| match r.observed {
                        Observed::NoConnection(NoConnection::Unreachable { side, problem }) => {
                            Some(format!("{side}: {problem:?}"))
                        }
                        _ => None,
                    })
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {n} | – | – | no connection: {} | – | – | – | – | – | {} |",
                    c.a.name(),
                    c.b.name(),
                    c.expected.symbol(),
                    reasons.join(", "),
                    if c.mismatch().is_none() {
                        "yes"
                    } else {
                        "**no**"
                    }
                );
                continue;
            }
            let probes = c.runs.iter().map(|r| r.probes).sum::<u64>() / n.max(1) as u64;
            let relayed_first = c.runs.iter().filter(|r| r.first_byte_relayed).count();
            let intact = c.runs.iter().filter(|r| r.stream_intact).count();
            let first_attempt = c
                .runs
                .iter()
                .filter(|r| r.to_direct.is_some_and(|t| t < FIRST_ATTEMPT))
                .count();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {n} | {}/{n} | {first_attempt}/{n} | {} / {} | {} | {relayed_first}/{n} | {} / {} | {probes} | {intact}/{n} | {} |",
                c.a.name(),
                c.b.name(),
                c.expected.symbol(),
                c.direct(),
                ms(c.median(|r| r.first_byte)),
                ms(c.max(|r| r.first_byte)),
                ms(c.median(|r| r.relay_rtt)),
                ms(c.median(|r| r.to_direct)),
                ms(c.max(|r| r.to_direct)),
                if c.mismatch().is_none() {
                    "yes"
                } else {
                    "**no**"
                }
            );
        }
        s
    }
}
