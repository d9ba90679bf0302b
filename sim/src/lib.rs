//! # tern-sim: a deterministic network simulator for tern
//!
//! Drives [`tern_core::Node`]s directly, in virtual time, through a modelled network: access
//! links with MTU, bandwidth and queue, Bernoulli or Gilbert–Elliott loss, corruption,
//! duplication, delay, jitter, reordering and partitions ([`link`]); RFC 4787 NATs with every
//! mapping, filtering and port-allocation behaviour, timeouts, hairpinning, quotas, chains and
//! faults ([`nat`]); and an [`oracle`] of which NAT pairs can connect directly and how.
//!
//! Everything is reproducible from one `u64` seed: each entity (link direction, NAT, node)
//! draws from its own stream derived from the seed and its name, containers are ordered, time
//! is a [`Duration`](std::time::Duration) since the start, and events due at the same instant
//! run in the order they were scheduled. Every decision is recorded in a [`Trace`] whose hash
//! two runs must agree on. A failing test prints `SIM_SEED=<n>`; set that variable to replay
//! it, and `SIM_LOG=1` to print every decision stamped with simulated time.
//!
//! Build a scenario with [`Topology`], run it with [`Sim`]'s `run_*` methods, and assert on
//! node events, raw datagrams, NAT tables and the trace's counters. Hosts can run the
//! rendezvous server (`rendezvous_server`, two ports for the beacon) or register with it
//! (`rendezvous_client`), carry extra hole-punching sockets (`punch_sockets`) and a [`Pump`]
//! stream transfer; tests can spoof datagrams (`Sim::inject`), record a host's traffic
//! (`Sim::watch`) and cut the direct path between two hosts (`Fault::Blackhole`). The
//! [`matrix`] module runs the NAT matrix of issue 6.
//!
//! ## Commands
//!
//! ```text
//! cargo test -p tern-sim                                   # every model and scenario test
//! SIM_SEED=2 cargo test -p tern-sim --test sessions        # replay one seed
//! SIM_LOG=1 cargo test -p tern-sim --test scenarios -- --nocapture   # trace lines (sim time)
//! SIM_LOG=debug …                                          # plus the core's tracing output
//! cargo run -p tern-sim --bin oracle                       # NAT pair table (p2p-anchors §4.3)
//! cargo run -p tern-sim --bin nat-matrix                   # every pair end to end → NAT_MATRIX.md
//! cargo run -p tern-sim --bin nat-matrix -- 4 4 home cloud-natgw   # one pair, run by run
//! cargo run --release -p tern-sim --bin sim-bench          # simulated s per wall s
//! cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run sim_scenario # the simulator's own fuzz target
//! ```
//!
//! A pcap of a run: `sim.enable_pcap(Capture::Both)`, then `sim.pcap().unwrap().write_to(path)`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod clock;
pub mod fault;
pub mod fuzzing;
pub mod host;
pub mod ids;
pub mod link;
pub mod log;
pub mod matrix;
pub mod nat;
pub mod net;
pub mod oracle;
pub mod pcap;
pub mod queue;
pub mod rng;
pub mod sim;
pub mod topology;
pub mod trace;
pub mod transfer;

pub use app::{App, AppCx, Dialer, Idle, PeerInfo, Pump, PumpState, Script, pump_byte};
pub use fault::{Direction, Fault};
pub use host::{Captured, Host, RawDatagram};
pub use ids::{HostId, NatId, PacketId, RealmId};
pub use link::{LinkConfig, LinkPreset, Loss, Reorder};
pub use nat::{Fallback, Filtering, Hairpin, Mapping, NatConfig, NatPreset, Pooling, PortAlloc};
pub use oracle::{NatClass, Outcome, Technique, expected_outcome};
pub use pcap::Capture;
pub use sim::{Sim, seed_from_env, seeds};
pub use topology::Topology;
pub use trace::{DropReason, Keep, Record, Trace};
