//! The directory, beacon and relay attacks that work on Pilot (`pilot-reference.md` §6),
//! tried against tern at the network level (issue 6, must-show 5): real nodes, a real
//! rendezvous server and an attacker, `mallory`, who is registered like everyone else, sees
//! every datagram of its victims (`Sim::watch`) and can spoof any source address
//! (`Sim::inject`). The directory state machine's own checks (signatures, nonces, quotas)
//! are tested message by message in `core/tests/rendezvous.rs`; here the question is
//! whether anything leaks, moves or amplifies on the wire.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::rdv::{PORT, S, link, registration};
use tern_core::rendezvous::{ErrorCode, Query, Request, Response, ServerConfig};
use tern_core::wire::header::{self, INIT_MIN_LEN, TYPE_INIT, VERSION};
use tern_core::{CloseReason, Config, Event, IncomingPolicy, PathInfo};
use tern_sim::rng::SimRng;
use tern_sim::{Fault, HostId, NatPreset, Pump, PumpState, Sim, Topology, seeds};

type Shared = std::rc::Rc<std::cell::RefCell<PumpState>>;

/// Who is on the network.
#[derive(Clone, Copy)]
enum Kind {
    Public,
    Private,
    Sender(u64),
    Receiver,
}

struct World {
    sim: Sim,
    rdv: HostId,
    pumps: Vec<(HostId, Shared)>,
}

impl World {
    /// A server (with `server` limits) and the named nodes, each behind `preset`.
    fn new(name: &str, seed: u64, server: ServerConfig, nodes: &[(&str, NatPreset, Kind)]) -> Self {
        let mut t = Topology::new(name, seed);
        let mut c = Config::default();
        c.rendezvous_server = Some(server);
        let rdv = t
            .host("rdv")
            .links(link(), link())
            .config(c)
            .rendezvous_server()
            .add();
        let mut pumps = Vec::new();
        let mut pending = Vec::new();
        for &(name, preset, kind) in nodes {
            let public = !matches!(kind, Kind::Private);
            let mut config = Config::default();
            if !public {
                config.incoming = IncomingPolicy::TrustedOnly;
            }
            let mut h = t
                .host(name)
                .behind_preset(preset)
                .links(link(), link())
                .punch_sockets(64)
                .config(config)
                .rendezvous_client("rdv", registration(name, public));
            let mut shared = None;
            match kind {
                Kind::Sender(n) => {
                    let (p, s) = Pump::sender(PORT, n);
                    h = h.app(p);
                    shared = Some(s);
                }
                Kind::Receiver => {
                    let (p, s) = Pump::receiver(PORT);
                    h = h.app(p);
                    shared = Some(s);
                }
                _ => {}
            }
            let id = h.add();
            if let Some(s) = shared {
                pending.push((id, s));
            }
        }
        pumps.extend(pending);
        let mut sim = t.build();
        let ids: Vec<HostId> = nodes
            .iter()
            .map(|(n, _, _)| sim.host_id(n).unwrap())
            .collect();
        assert!(
            sim.run_until(20 * S, |s| ids.iter().all(|&h| registered(s, h))),
            "registration"
        );
        World { sim, rdv, pumps }
    }

    fn id(&self, name: &str) -> HostId {
        self.sim.host_id(name).unwrap()
    }

    fn pump(&self, h: HostId) -> Shared {
        self.pumps
            .iter()
            .find(|(x, _)| *x == h)
            .map(|(_, s)| std::rc::Rc::clone(s))
            .unwrap()
    }

    /// Sends a directory request from `h` and returns the answer.
    fn ask(&mut self, h: HostId, body: Request) -> Response {
        let id = self
            .sim
            .command(h, |n, now| n.rendezvous_request(now, body))
            .expect("connected");
        assert!(self.sim.run_until(5 * S, |s| {
            s.events(h)
                .iter()
                .any(|(_, e)| *e == Event::RendezvousResponse { req_id: id })
        }));
        self.sim
            .command(h, |n, _| n.take_rendezvous_response(id))
            .expect("response")
    }

    fn server(&self) -> &tern_core::rendezvous::Server {
        self.sim.node(self.rdv).rendezvous_server().unwrap()
    }

    fn observed(&self, h: HostId) -> SocketAddr {
        self.sim.node(h).rendezvous_status().unwrap().observed[0].unwrap()
    }

    fn connect(&mut self, from: HostId, to: HostId) -> tern_core::SessionId {
        let peer = self.sim.peer_id(to);
        self.sim
            .command(from, |n, now| n.connect_peer(now, peer))
            .expect("connect_peer")
    }

    fn path(&self, h: HostId, peer: HostId) -> Option<PathInfo> {
        let p = self.sim.peer_id(peer);
        let s = self.sim.node(h).session_with(&p)?;
        self.sim.node(h).session_info(s).map(|i| i.path)
    }
}

fn registered(sim: &Sim, h: HostId) -> bool {
    sim.events(h)
        .iter()
        .any(|(_, e)| matches!(e, Event::Registered { .. }))
}

fn code(r: &Response) -> Option<ErrorCode> {
    match r {
        Response::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// Every IP that delivered a datagram to `h` since it was watched.
fn sources(sim: &Sim, h: HostId) -> BTreeSet<IpAddr> {
    sim.captured(h)
        .iter()
        .filter(|c| !c.outgoing)
        .map(|c| c.src.ip())
        .collect()
}

/// S1, S2: the attacker registers, then claims the victim's hostname, and replays the
/// victim's own registration datagrams from its address. The name, the key behind it and
/// the endpoint the directory gives out stay the victim's, and a session to that name
/// reaches the victim.
#[test]
fn s1_s2_a_hostname_and_its_endpoint_stay_with_the_key_that_registered_them() {
    let mut w = World::new(
        "s1_s2",
        1,
        ServerConfig::default(),
        &[
            ("alpha", NatPreset::Home, Kind::Receiver),
            ("bravo", NatPreset::Home, Kind::Sender(4096)),
            ("mallory", NatPreset::Public, Kind::Public),
        ],
    );
    let (alpha, bravo, mallory) = (w.id("alpha"), w.id("bravo"), w.id("mallory"));
    let alpha_key = w.sim.peer_id(alpha);
    let alpha_seen = w.observed(alpha);
    // Claim the name.
    let mut reg = registration("alpha", true);
    reg.candidates = vec![w.sim.addr(mallory)];
    w.sim
        .command(mallory, |n, now| n.set_registration(now, reg));
    assert!(w.sim.run_until(5 * S, |s| {
        s.events(mallory)
            .iter()
            .any(|(_, e)| matches!(e, Event::RegistrationRefused { .. }))
    }));
    let req = w
        .sim
        .events(mallory)
        .iter()
        .find_map(|(_, e)| match e {
            Event::RegistrationRefused { req_id } => Some(*req_id),
            _ => None,
        })
        .unwrap();
    let r = w
        .sim
        .command(mallory, |n, _| n.take_rendezvous_response(req));
    assert_eq!(r.as_ref().and_then(code), Some(ErrorCode::HostnameTaken));
    // What bravo learns from the directory is still alpha.
    let Response::Resolved(entry) = w.ask(bravo, Request::Resolve(Query::Hostname("alpha".into())))
    else {
        panic!("alpha resolves")
    };
    assert_eq!(entry.record.peer, alpha_key);
    let endpoints = entry.endpoints.expect("public node");
    assert!(endpoints.reflexive.contains(&alpha_seen));
    let mallory_ip = w.sim.addr(mallory).ip();
    assert!(endpoints.reflexive.iter().all(|a| a.ip() != mallory_ip));
    assert!(endpoints.host.iter().all(|a| a.ip() != mallory_ip));
    // And a session to that key reaches alpha (the pump's bytes arrive there).
    w.connect(bravo, alpha);
    let rx = w.pump(alpha);
    assert!(w.sim.run_until(5 * S, |_| rx.borrow().fin));
    assert_eq!(rx.borrow().received, 4096);
}

/// S3, S13: a private node's trust can be granted only by the node itself. The attacker
/// approves itself in every way the protocol offers, then dials the private node's real
/// address directly (as if it had leaked): the node itself refuses the handshake.
#[test]
fn s3_s13_trust_cannot_be_self_granted_and_the_node_enforces_its_own() {
    let mut w = World::new(
        "s3_s13",
        2,
        ServerConfig::default(),
        &[
            ("vault", NatPreset::Public, Kind::Private),
            ("mallory", NatPreset::Public, Kind::Public),
        ],
    );
    let (vault, mallory) = (w.id("vault"), w.id("mallory"));
    let (vk, mk) = (w.sim.peer_id(vault), w.sim.peer_id(mallory));
    // "I approve vault's request" (there is none), "I approve myself on vault's behalf".
    let r = w.ask(
        mallory,
        Request::TrustDecision {
            requester: vk,
            approve: true,
        },
    );
    assert!(code(&r).is_some(), "{r:?}");
    let r = w.ask(
        mallory,
        Request::TrustRequest {
            target: Query::Peer(vk),
            note: "let me in".into(),
        },
    );
    assert_eq!(r, Response::Ok, "asking is allowed");
    assert!(!w.server().trusts(&vk, &mk));
    assert!(!w.sim.node(vault).is_trusted(&mk));
    // The endpoint did not leak, but suppose it did: dial it directly.
    let vault_addr = w.sim.addr(vault);
    let s = w
        .sim
        .command(mallory, |n, now| n.connect(now, vault_addr, Some(vk)))
        .unwrap();
    assert!(w.sim.run_until(5 * S, |sim| sim.events(mallory).iter().any(
        |(_, e)| matches!(
            e,
            Event::SessionClosed { session, reason: CloseReason::Refused, .. } if *session == s
        )
    )));
    assert!(
        w.sim
            .events(vault)
            .iter()
            .any(|(_, e)| *e == Event::IncomingRefused { peer: mk })
    );
    assert!(
        !w.sim
            .events(vault)
            .iter()
            .any(|(_, e)| matches!(e, Event::SessionEstablished { .. }))
    );
    // Only vault's own decision opens the door.
    let r = w.ask(
        vault,
        Request::TrustDecision {
            requester: mk,
            approve: true,
        },
    );
    assert_eq!(r, Response::Ok);
    assert!(w.server().trusts(&vk, &mk) && w.sim.node(vault).is_trusted(&mk));
}

/// S4: the attacker records every datagram a node sends the server (its approval and then
/// its revocation of a peer), and replays them all after the revocation: from the node's
/// own address (spoofed) and from its own. Nothing is processed twice.
#[test]
fn s4_replayed_directory_requests_are_not_processed_again() {
    let mut w = World::new(
        "s4",
        3,
        ServerConfig::default(),
        &[
            ("vault", NatPreset::Home, Kind::Private),
            ("bravo", NatPreset::Home, Kind::Public),
            ("mallory", NatPreset::Public, Kind::Public),
        ],
    );
    let (vault, bravo, mallory) = (w.id("vault"), w.id("bravo"), w.id("mallory"));
    let (vk, bk) = (w.sim.peer_id(vault), w.sim.peer_id(bravo));
    w.sim.watch(vault);
    let r = w.ask(
        bravo,
        Request::TrustRequest {
            target: Query::Peer(vk),
            note: String::new(),
        },
    );
    assert_eq!(r, Response::Ok);
    let r = w.ask(
        vault,
        Request::TrustDecision {
            requester: bk,
            approve: true,
        },
    );
    assert_eq!(r, Response::Ok);
    assert_eq!(w.ask(vault, Request::Revoke { peer: bk }), Response::Ok);
    assert!(!w.server().trusts(&vk, &bk));
    let server = w.sim.addr(w.rdv);
    let recorded: Vec<Vec<u8>> = w
        .sim
        .captured(vault)
        .iter()
        .filter(|c| c.outgoing && c.dst == server)
        .map(|c| c.bytes.clone())
        .collect();
    assert!(recorded.len() >= 3);
    let requests = w.server().stats().requests;
    let vault_public = w.observed(vault);
    let mallory_addr = w.sim.addr(mallory);
    for bytes in &recorded {
        w.sim.inject(vault_public, server, bytes);
        w.sim.inject(mallory_addr, server, bytes);
    }
    w.sim.run_for(5 * S);
    assert_eq!(
        w.server().stats().requests,
        requests,
        "no request processed again"
    );
    assert!(
        !w.server().trusts(&vk, &bk),
        "the approval did not come back"
    );
    let drops = w.sim.node(w.rdv).stats().drops;
    assert!(drops.get(tern_core::DropReason::Replay) > 0);
    // And vault's control channel is unharmed.
    assert_eq!(
        w.ask(vault, Request::Pending),
        Response::Pending(vec![]),
        "vault still talks to the directory"
    );
}

/// S6, S7: the attacker enumerates and resolves, asks to be trusted, and tries to reach a
/// private node through the relay. It learns nothing about where the node is: no datagram
/// from the node's network ever reaches the attacker, the node never sends one toward it,
/// and the beacon only ever told the attacker its own address.
#[test]
fn s6_s7_a_private_node_cannot_be_found_resolved_or_located() {
    for seed in seeds(2) {
        let mut w = World::new(
            "s6_s7",
            seed,
            ServerConfig::default(),
            &[
                ("vault", NatPreset::Home, Kind::Private),
                ("open", NatPreset::Home, Kind::Public),
                ("mallory", NatPreset::Home, Kind::Public),
            ],
        );
        let (vault, open, mallory) = (w.id("vault"), w.id("open"), w.id("mallory"));
        w.sim.watch(vault);
        w.sim.watch(mallory);
        let vk = w.sim.peer_id(vault);
        let vault_addr = w
            .sim
            .node(vault)
            .rendezvous_status()
            .unwrap()
            .record
            .unwrap()
            .address;
        // Enumerate: only public nodes come back.
        let Response::Found(found) = w.ask(
            mallory,
            Request::Find {
                words: "mcp vault".into(),
                limit: 64,
            },
        ) else {
            panic!()
        };
        assert!(found.iter().all(|e| e.record.peer != vk));
        assert!(found.iter().any(|e| e.record.peer == w.sim.peer_id(open)));
        // Resolve by every handle.
        for q in [
            Query::Hostname("vault".into()),
            Query::Peer(vk),
            Query::Address(vault_addr),
        ] {
            let r = w.ask(mallory, Request::Resolve(q.clone()));
            assert_eq!(code(&r), Some(ErrorCode::NotAllowed), "{q:?}: {r:?}");
        }
        // Ask to be trusted (pending, no endpoint), and dial through the relay.
        assert_eq!(
            w.ask(
                mallory,
                Request::TrustRequest {
                    target: Query::Hostname("vault".into()),
                    note: String::new()
                }
            ),
            Response::Ok
        );
        let s = w.connect(mallory, vault);
        w.sim.run_for(20 * S);
        assert!(w.sim.events(mallory).iter().any(|(_, e)| matches!(
            e,
            Event::SessionClosed { session, reason: CloseReason::HandshakeTimeout, .. } if *session == s
        )));
        // Nothing came from the vault's network; the vault sent nothing toward mallory.
        let vault_ips: BTreeSet<IpAddr> = w
            .sim
            .public_ips(vault)
            .into_iter()
            .map(IpAddr::V4)
            .collect();
        let mallory_ips: BTreeSet<IpAddr> = w
            .sim
            .public_ips(mallory)
            .into_iter()
            .map(IpAddr::V4)
            .collect();
        let rdv_ip = w.sim.addr(w.rdv).ip();
        assert_eq!(
            sources(&w.sim, mallory),
            BTreeSet::from([rdv_ip]),
            "seed {seed}"
        );
        assert!(sources(&w.sim, mallory).is_disjoint(&vault_ips));
        assert!(
            w.sim
                .captured(vault)
                .iter()
                .filter(|c| c.outgoing)
                .all(|c| c.dst.ip() == rdv_ip && !mallory_ips.contains(&c.dst.ip())),
            "seed {seed}: the vault only ever talked to the server"
        );
        // The beacon told mallory where mallory is, and nothing else.
        let st = w.sim.node(mallory).rendezvous_status().unwrap();
        for o in st.observed.iter().flatten() {
            assert!(mallory_ips.contains(&o.ip()));
        }
    }
}

/// S8: the attacker tries to get the relay to deliver another node's traffic to it: it
/// replays the victim's datagrams to the server from its own address and spoofs the
/// victim's address with garbage, while the victim streams to a peer through the relay.
/// The server keeps relaying to the victim's real address; the attacker receives nothing of
/// the stream; the stream arrives intact.
#[test]
fn s8_another_nodes_relay_traffic_cannot_be_claimed() {
    let total = 2u64 << 20;
    let mut w = World::new(
        "s8",
        4,
        ServerConfig::default(),
        &[
            ("alpha", NatPreset::CloudNatGw, Kind::Sender(total)),
            ("bravo", NatPreset::CloudNatGw, Kind::Receiver),
            ("mallory", NatPreset::Public, Kind::Public),
        ],
    );
    let (alpha, bravo, mallory) = (w.id("alpha"), w.id("bravo"), w.id("mallory"));
    w.sim.watch(alpha);
    w.sim.watch(mallory);
    let server = w.sim.addr(w.rdv);
    let alpha_key = w.sim.peer_id(alpha);
    let alpha_public = w.observed(alpha);
    w.connect(alpha, bravo);
    w.sim.run_for(S);
    let mut rng = SimRng::from_seed(4);
    for round in 0..20 {
        let recorded: Vec<Vec<u8>> = w
            .sim
            .captured(alpha)
            .iter()
            .filter(|c| c.outgoing && c.dst == server)
            .rev()
            .take(20)
            .map(|c| c.bytes.clone())
            .collect();
        let mallory_addr = w.sim.addr(mallory);
        for b in &recorded {
            w.sim.inject(mallory_addr, server, b);
            let mut junk = b.clone();
            let at = rng.below(junk.len() as u64) as usize;
            junk[at] ^= 1;
            w.sim.inject(alpha_public, server, &junk);
        }
        w.sim.run_for(Duration::from_millis(100 + round));
    }
    let rx = w.pump(bravo);
    assert!(w.sim.run_until(60 * S, |_| rx.borrow().fin));
    assert_eq!(rx.borrow().received, total);
    assert_eq!(rx.borrow().corrupt_at, None);
    // The server's session with alpha never left alpha's real address.
    let rdv = w.rdv;
    let s = w.sim.node(rdv).session_with(&alpha_key).unwrap();
    assert_eq!(
        w.sim.node(rdv).session_info(s).unwrap().path,
        PathInfo::Direct(alpha_public)
    );
    assert!(
        !w.sim
            .events(rdv)
            .iter()
            .any(|(_, e)| matches!(e, Event::PathChanged { .. }))
    );
    // mallory got its own control traffic and nothing of the 2 MiB stream.
    let got: usize = w
        .sim
        .captured(mallory)
        .iter()
        .filter(|c| !c.outgoing)
        .map(|c| c.bytes.len())
        .sum();
    assert!(got < 64 << 10, "mallory received {got} bytes");
    assert_eq!(
        w.path(alpha, bravo),
        Some(PathInfo::Relayed {
            relay: w.sim.peer_id(rdv)
        })
    );
}

/// S9: while two nodes talk directly, the attacker tries to push them onto the relay: it
/// replays one node's packets to the other spoofed from that node's address and from its
/// own, has the relay deliver copies to the victim as datagrams from the attacker, and
/// sprays garbage with the session's index. The session never leaves its direct path.
#[test]
fn s9_a_peer_cannot_be_forced_onto_the_relay() {
    let total = 2u64 << 20;
    let mut w = World::new(
        "s9",
        5,
        ServerConfig::default(),
        &[
            ("alpha", NatPreset::Home, Kind::Sender(total)),
            ("bravo", NatPreset::Home, Kind::Receiver),
            ("mallory", NatPreset::Public, Kind::Public),
        ],
    );
    let (alpha, bravo, mallory) = (w.id("alpha"), w.id("bravo"), w.id("mallory"));
    let (mk, bk) = (w.sim.peer_id(mallory), w.sim.peer_id(bravo));
    w.connect(alpha, bravo);
    // mallory has its own (legitimate) relayed session with bravo, so the relay carries
    // datagrams from mallory to bravo.
    w.connect(mallory, bravo);
    let (a, b) = (alpha, bravo);
    assert!(w.sim.run_until(10 * S, |s| {
        let pa = s.peer_id(a);
        let pb = s.peer_id(b);
        [(a, pb), (b, pa)].iter().all(|&(h, p)| {
            s.node(h)
                .session_with(&p)
                .and_then(|id| s.node(h).session_info(id))
                .is_some_and(|i| matches!(i.path, PathInfo::Direct(_)))
        })
    }));
    let t_attack = w.sim.now();
    w.sim.watch(alpha);
    let alpha_public = w.observed(alpha);
    let bravo_public = w.observed(bravo);
    let mallory_addr = w.sim.addr(mallory);
    let denied_before = w
        .sim
        .node(bravo)
        .stats()
        .drops
        .get(tern_core::DropReason::RelayDenied);
    let mut relayed = 0u64;
    let mut rng = SimRng::from_seed(5);
    for _ in 0..30 {
        w.sim.run_for(Duration::from_millis(50));
        let recorded: Vec<Vec<u8>> = w
            .sim
            .captured(alpha)
            .iter()
            .filter(|c| c.outgoing && c.dst.ip() == bravo_public.ip())
            .rev()
            .take(10)
            .map(|c| c.bytes.clone())
            .collect();
        for bytes in &recorded {
            // Replays, spoofed and not.
            w.sim.inject(alpha_public, bravo_public, bytes);
            w.sim.inject(mallory_addr, bravo_public, bytes);
            // Through the relay, as datagrams from mallory (authentic bytes of alpha's
            // session, some of them fresher than what bravo has seen).
            // (What a relay can carry: the small ones.)
            let rdv = w.rdv;
            if bytes.len() + tern_core::session::RELAY_OVERHEAD <= 1200
                && w.sim
                    .command(rdv, |n, _| n.send_relay(mk, bk, bytes))
                    .is_ok()
            {
                relayed += 1;
            }
            // Garbage with the session's receiver index.
            let mut junk = bytes.clone();
            for x in junk.iter_mut().skip(header::DATA_HEADER_LEN) {
                *x = rng.below(256) as u8;
            }
            w.sim.inject(alpha_public, bravo_public, &junk);
        }
    }
    let rx = w.pump(bravo);
    assert!(w.sim.run_until(60 * S, |_| rx.borrow().fin));
    assert_eq!(
        (rx.borrow().received, rx.borrow().corrupt_at),
        (total, None)
    );
    // No path change of the alpha–bravo session on either side since the attack began.
    for (h, peer) in [(alpha, bravo), (bravo, alpha)] {
        let pk = w.sim.peer_id(peer);
        let s = w.sim.node(h).session_with(&pk).unwrap();
        let moved: Vec<_> = w
            .sim
            .events(h)
            .iter()
            .filter(|(t, e)| {
                *t > t_attack && matches!(e, Event::PathChanged { session, .. } if *session == s)
            })
            .map(|(t, e)| (*t, *e))
            .collect();
        assert!(moved.is_empty(), "{moved:?}");
    }
    assert!(matches!(w.path(bravo, alpha), Some(PathInfo::Direct(_))));
    // Every relayed copy was refused for coming from the wrong peer.
    assert!(relayed > 0);
    let denied = w
        .sim
        .node(bravo)
        .stats()
        .drops
        .get(tern_core::DropReason::RelayDenied)
        - denied_before;
    assert_eq!(denied, relayed);
    let _ = Fault::NatRebind;
}

/// Builds a flood of `n` datagrams: random garbage, data packets for session indices the
/// node never issued, and well-formed handshake inits from unknown keys.
fn flood(rng: &mut SimRng, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| match i % 3 {
            0 => {
                let len = 1 + rng.below(1400) as usize;
                (0..len).map(|_| rng.below(256) as u8).collect()
            }
            1 => {
                let mut b = vec![0u8; 80];
                header::write_data_header(
                    &mut b,
                    false,
                    rng.below(u64::from(u32::MAX)) as u32,
                    i as u64,
                )
                .unwrap();
                for x in b.iter_mut().skip(header::DATA_HEADER_LEN) {
                    *x = rng.below(256) as u8;
                }
                b
            }
            _ => {
                let mut b = vec![0u8; INIT_MIN_LEN];
                for x in b.iter_mut() {
                    *x = rng.below(256) as u8;
                }
                b[0] = TYPE_INIT;
                b[1] = VERSION;
                b
            }
        })
        .collect()
}

/// S16: a flood of garbage, unknown session indices and inits from unknown keys at a
/// registered node makes it send the rendezvous server nothing it would not have sent
/// anyway: the same run without the flood sends exactly as much.
#[test]
fn s16_a_flood_at_a_node_causes_no_traffic_toward_the_directory() {
    let run = |with_flood: bool| {
        let mut w = World::new(
            "s16",
            6,
            ServerConfig::default(),
            &[("alpha", NatPreset::Public, Kind::Public)],
        );
        let alpha = w.id("alpha");
        w.sim.run_for(S);
        w.sim.watch(alpha);
        let server = w.sim.addr(w.rdv);
        let target = w.sim.addr(alpha);
        let requests = w.server().stats().requests;
        let mut rng = SimRng::from_seed(16);
        for burst in 0..100u64 {
            if with_flood {
                for (k, bytes) in flood(&mut rng, 100).iter().enumerate() {
                    let src: SocketAddr = format!("203.0.113.{}:{}", 1 + k % 200, 1024 + burst)
                        .parse()
                        .unwrap();
                    w.sim.inject(src, target, bytes);
                }
            }
            w.sim.run_for(Duration::from_millis(100));
        }
        w.sim.run_for(S);
        let to_server: Vec<usize> = w
            .sim
            .captured(alpha)
            .iter()
            .filter(|c| c.outgoing && c.dst.ip() == server.ip())
            .map(|c| c.bytes.len())
            .collect();
        let received = w.sim.captured(alpha).iter().filter(|c| !c.outgoing).count();
        let sent_elsewhere = w
            .sim
            .captured(alpha)
            .iter()
            .filter(|c| c.outgoing && c.dst.ip() != server.ip())
            .count();
        (
            to_server,
            w.server().stats().requests - requests,
            received,
            sent_elsewhere,
            w.sim.node(alpha).stats().drops.total(),
        )
    };
    let (quiet, quiet_requests, _, _, _) = run(false);
    let (flooded, flood_requests, received, answered, drops) = run(true);
    assert!(
        received >= 10_000 && drops >= 9_000,
        "the flood arrived: {received}, {drops} drops"
    );
    assert_eq!(flooded, quiet, "traffic toward the rendezvous server");
    assert_eq!((flood_requests, quiet_requests), (0, 0));
    // What the node sent the flood's sources is bounded (cookies and handshake answers are
    // rate-limited and never larger than what came in).
    assert!(
        answered <= received / 2,
        "{answered} answers to {received} datagrams"
    );
}

/// A relay flood from one client stays within its quota while other clients are served.
#[test]
fn a_relay_flood_stays_within_its_quota_while_others_are_served() {
    let mut quota = ServerConfig::default();
    quota.relay_bytes_per_sec = 200_000;
    quota.relay_burst = 400_000;
    let flood_bytes = 16u64 << 20;
    let mut w = World::new(
        "relay_quota",
        7,
        quota.clone(),
        &[
            ("mallory", NatPreset::CloudNatGw, Kind::Sender(flood_bytes)),
            ("bravo", NatPreset::CloudNatGw, Kind::Receiver),
            ("alpha", NatPreset::CloudNatGw, Kind::Sender(256 << 10)),
            ("charlie", NatPreset::CloudNatGw, Kind::Receiver),
        ],
    );
    let (mallory, bravo, alpha, charlie) = (
        w.id("mallory"),
        w.id("bravo"),
        w.id("alpha"),
        w.id("charlie"),
    );
    let t0 = w.sim.now();
    w.connect(mallory, bravo);
    w.connect(alpha, charlie);
    let served = w.pump(charlie);
    assert!(
        w.sim.run_until(20 * S, |_| served.borrow().fin),
        "alpha's transfer completes"
    );
    assert_eq!(served.borrow().received, 256 << 10);
    w.sim.run_for(10 * S);
    let elapsed = (w.sim.now() - t0).as_secs_f64();
    let flooded = w.pump(bravo).borrow().received as f64;
    let bound = quota.relay_burst as f64 + quota.relay_bytes_per_sec as f64 * elapsed;
    assert!(
        flooded <= bound,
        "mallory got {flooded} bytes through in {elapsed:.1} s (bound {bound})"
    );
    assert!(flooded > 0.0);
    assert!(w.server().stats().relay_denied > 0, "the quota was hit");
    // Both pairs are still relayed (cloud NATs on both sides), and alpha's session is up.
    assert!(matches!(
        w.path(alpha, charlie),
        Some(PathInfo::Relayed { .. })
    ));
}
