//! The `sim_scenario` fuzz target's body, shared with the corpus-replay test so that a plain
//! `cargo test` runs every committed input.
//!
//! Fuzzer bytes become a small topology (NATs with arbitrary RFC 4787 behaviour, some behind
//! others; raw hosts, reflectors and up to two tern nodes, each with an arbitrary link) and a
//! sequence of operations (send a datagram, let time pass, apply a fault). After every
//! operation the simulator's own invariants must hold: time never goes backwards; every packet
//! created is delivered, dropped with a reason, or still in flight; every NAT table is
//! consistent and within its per-host quota; and nothing panics.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use arbitrary::{Result as ArbResult, Unstructured};

use crate::app::{Dialer, Idle};
use crate::fault::{Direction, Fault};
use crate::ids::{HostId, NatId, RealmId};
use crate::link::{LinkConfig, LinkPreset, Loss, Reorder};
use crate::nat::{Fallback, Filtering, Hairpin, Mapping, NatConfig, Pooling, PortAlloc};
use crate::sim::Sim;
use crate::topology::Topology;

/// Steps one fuzz input may take (bounds the time per input).
pub const STEP_LIMIT: u64 = 2_000_000;

/// What a run did, for corpus statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Operations applied.
    pub ops: usize,
    /// Packets created.
    pub packets: u64,
    /// Packets delivered.
    pub delivered: u64,
    /// Simulated time at the end.
    pub end: Duration,
}

/// Builds and runs the scenario encoded by `data`. Returns the first invariant violation.
/// Inputs too short to describe a scenario run an empty one.
pub fn run(data: &[u8]) -> Result<Summary, String> {
    let mut u = Unstructured::new(data);
    let Ok((mut sim, hosts, nats)) = build(&mut u) else {
        return Ok(Summary::default());
    };
    sim.set_step_limit(STEP_LIMIT);
    let mut ops = 0;
    let mut last = sim.now();
    while !u.is_empty() && ops < 256 {
        let Ok(op) = op(&mut u, &sim, &hosts, &nats) else {
            break;
        };
        apply(&mut sim, op);
        ops += 1;
        check(&sim, &mut last).map_err(|e| format!("after op {ops}: {e}"))?;
    }
    sim.run_for(Duration::from_secs(90));
    check(&sim, &mut last).map_err(|e| format!("at the end: {e}"))?;
    let c = sim.counters();
    Ok(Summary {
        ops,
        packets: c.created,
        delivered: c.delivered,
        end: sim.now(),
    })
}

/// Runs `data` and panics on a violation (the fuzz target's body).
pub fn check_input(data: &[u8]) {
    if let Err(e) = run(data) {
        panic!("sim invariant violated: {e}");
    }
}

fn check(sim: &Sim, last: &mut Duration) -> Result<(), String> {
    if sim.now() < *last {
        return Err(format!("time went backwards: {:?} < {last:?}", sim.now()));
    }
    *last = sim.now();
    sim.check_invariants()
}

#[derive(Debug)]
enum Op {
    Send {
        host: HostId,
        port: u16,
        dst: SocketAddr,
        len: usize,
    },
    Advance(Duration),
    Fault(Fault),
}

fn build(u: &mut Unstructured<'_>) -> ArbResult<(Sim, Vec<HostId>, Vec<NatId>)> {
    let seed = u.arbitrary::<u64>()?;
    let mut t = Topology::new("fuzz_sim_scenario", seed);
    let mut nats = Vec::new();
    for i in 0..u.int_in_range(0..=3u8)? {
        let config = nat_config(u)?;
        let mut b = t.nat(&format!("n{i}"), config);
        if !nats.is_empty() && u.arbitrary::<bool>()? {
            b = b.behind(*u.choose(&nats)?);
        }
        nats.push(b.add());
    }
    let mut hosts = Vec::new();
    let mut node_names: Vec<String> = Vec::new();
    for i in 0..u.int_in_range(1..=6u8)? {
        let name = format!("h{i}");
        let link = link_config(u)?;
        let mut b = t
            .host(&name)
            .links(link.clone(), link)
            .port(u.int_in_range(1024..=65535)?);
        if !nats.is_empty() && u.arbitrary::<bool>()? {
            b = b.behind(*u.choose(&nats)?);
        }
        b = match u.int_in_range(0..=3u8)? {
            0 => b.reflector(),
            1 if node_names.len() < 2 => {
                let b = match node_names.first() {
                    Some(target) if u.arbitrary::<bool>()? => {
                        b.app(Dialer::new(target).pinging(Duration::from_secs(1), 5))
                    }
                    _ => b.app(Idle),
                };
                node_names.push(name.clone());
                b
            }
            _ => b.raw(),
        };
        hosts.push(b.add());
    }
    Ok((t.build(), hosts, nats))
}

fn nat_config(u: &mut Unstructured<'_>) -> ArbResult<NatConfig> {
    let mapping = *u.choose(&[
        Mapping::EndpointIndependent,
        Mapping::AddressDependent,
        Mapping::AddressAndPortDependent,
    ])?;
    let filtering = *u.choose(&[
        Filtering::EndpointIndependent,
        Filtering::AddressDependent,
        Filtering::AddressAndPortDependent,
    ])?;
    let ports = match u.int_in_range(0..=3u8)? {
        0 => PortAlloc::Preserve {
            fallback: if u.arbitrary()? {
                Fallback::Sequential
            } else {
                Fallback::Random
            },
        },
        1 => PortAlloc::Sequential {
            start: u.arbitrary()?,
            delta: u.int_in_range(0..=9)?,
        },
        2 => PortAlloc::Random {
            lo: u.arbitrary()?,
            hi: u.arbitrary()?,
        },
        _ => PortAlloc::Block {
            size: u.int_in_range(0..=64)?,
            start: u.arbitrary()?,
        },
    };
    Ok(NatConfig {
        mapping,
        filtering,
        ports,
        parity: u.arbitrary()?,
        pooling: if u.arbitrary()? {
            Pooling::Paired
        } else {
            Pooling::Arbitrary
        },
        public_ips: u.int_in_range(1..=3)?,
        unreplied_timeout: Duration::from_millis(u.int_in_range(1..=120_000)?),
        established_timeout: Duration::from_millis(u.int_in_range(1..=300_000)?),
        inbound_refresh: u.arbitrary()?,
        hairpin: *u.choose(&[
            Hairpin::Off,
            Hairpin::On {
                external_source: true,
            },
            Hairpin::On {
                external_source: false,
            },
        ])?,
        max_mappings_per_host: if u.arbitrary()? {
            Some(u.int_in_range(0..=8)?)
        } else {
            None
        },
        block_udp: u.ratio(1, 8)?,
    })
}

fn link_config(u: &mut Unstructured<'_>) -> ArbResult<LinkConfig> {
    if u.arbitrary()? {
        return Ok(u.choose(&LinkPreset::ALL)?.config());
    }
    let ms = |u: &mut Unstructured<'_>, max: u64| -> ArbResult<Duration> {
        Ok(Duration::from_micros(u.int_in_range(0..=max * 1000)?))
    };
    let p = |u: &mut Unstructured<'_>| -> ArbResult<f64> {
        Ok(f64::from(u.int_in_range(0..=100u8)?) / 100.0)
    };
    Ok(LinkConfig {
        mtu: u.int_in_range(0..=9000)?,
        bandwidth_bps: if u.arbitrary()? {
            Some(u.int_in_range(1_000..=1_000_000_000)?)
        } else {
            None
        },
        queue_bytes: u.int_in_range(0..=1 << 20)?,
        loss: match u.int_in_range(0..=2u8)? {
            0 => Loss::None,
            1 => Loss::Bernoulli(p(u)?),
            _ => Loss::GilbertElliott {
                p: p(u)?,
                r: p(u)?,
                loss_good: p(u)?,
                loss_bad: p(u)?,
            },
        },
        // Corruption and duplication stay at or below 10 %: a corrupted reflector answer can
        // be answered again, and with duplication on both links a storm would grow without
        // bound (a real network melts down the same way; it is not what this target checks).
        corrupt: p(u)? / 10.0,
        duplicate: p(u)? / 10.0,
        delay: ms(u, 500)?,
        jitter: ms(u, 100)?,
        fifo: u.arbitrary()?,
        reorder: if u.arbitrary()? {
            Some(Reorder {
                rate: p(u)?,
                hold: ms(u, 200)?,
            })
        } else {
            None
        },
    })
}

fn op(u: &mut Unstructured<'_>, sim: &Sim, hosts: &[HostId], nats: &[NatId]) -> ArbResult<Op> {
    Ok(match u.int_in_range(0..=9u8)? {
        0..=4 => {
            let host = *u.choose(hosts)?;
            let ip: Ipv4Addr = match u.int_in_range(0..=2u8)? {
                0 => match sim.addr(*u.choose(hosts)?) {
                    SocketAddr::V4(a) => *a.ip(),
                    SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
                },
                1 if !nats.is_empty() => {
                    let n = sim.nat(*u.choose(nats)?);
                    *u.choose(n.public_ips())?
                }
                _ => Ipv4Addr::from(u.arbitrary::<u32>()?),
            };
            Op::Send {
                host,
                port: u.arbitrary()?,
                dst: SocketAddr::from((ip, u.arbitrary::<u16>()?)),
                len: u.int_in_range(0..=1600)?,
            }
        }
        5..=6 => Op::Advance(Duration::from_millis(u.int_in_range(0..=40_000)?)),
        _ => {
            let host = *u.choose(hosts)?;
            let direction = *u.choose(&[Direction::Up, Direction::Down, Direction::Both])?;
            let fault = match u.int_in_range(0..=7u8)? {
                0 => Fault::Partition { host, direction },
                1 => Fault::Heal { host, direction },
                2 if !nats.is_empty() => Fault::NatRebind(*u.choose(nats)?),
                3 if !nats.is_empty() => Fault::NatReboot(*u.choose(nats)?),
                4 if !nats.is_empty() => Fault::NatNewPublicIp(*u.choose(nats)?),
                5 if !nats.is_empty() => Fault::NatBlockUdp {
                    nat: *u.choose(nats)?,
                    blocked: u.arbitrary()?,
                },
                6 => Fault::Roam {
                    host,
                    realm: RealmId(u.int_in_range(0..=nats.len() as u32)?),
                    notify: u.arbitrary()?,
                },
                _ => Fault::HostBlockUdp {
                    host,
                    blocked: u.ratio(1, 3)?,
                },
            };
            Op::Fault(fault)
        }
    })
}

fn apply(sim: &mut Sim, op: Op) {
    match op {
        Op::Send {
            host,
            port,
            dst,
            len,
        } => {
            let bytes = vec![0x5a; len];
            sim.send_raw(host, port, dst, &bytes);
        }
        Op::Advance(d) => sim.run_for(d),
        Op::Fault(f) => sim.apply(f),
    }
}
