//! Building a scenario: NATs (and NATs behind NATs), hosts with their links and
//! applications, raw probe endpoints and scheduled faults.
//!
//! ```
//! use std::time::Duration;
//! use tern_sim::{Dialer, LinkPreset, NatPreset, Topology};
//!
//! let mut t = Topology::new("doc_example", 1);
//! let server = t.host("server").link(LinkPreset::Lan).add();
//! let laptop = t
//!     .host("laptop")
//!     .behind_preset(NatPreset::Home)
//!     .link(LinkPreset::Wifi)
//!     .app(Dialer::new("server"))
//!     .add();
//! let mut sim = t.build();
//! assert!(sim.run_until(Duration::from_secs(10), |s| s.pongs(laptop) == 1));
//! assert!(sim.established(server).is_some());
//! ```

use std::time::Duration;

use tern_core::rendezvous::{Registration, ServerConfig};
use tern_core::{Config, Identity, Node, RendezvousConfig};

use crate::app::{App, Directory, Idle, PeerInfo};
use crate::clock::{self, UNIX_START};
use crate::fault::Fault;
use crate::host::{Host, HostKind, NodeHost, RawHost};
use crate::ids::{HostId, NatId, RealmId};
use crate::link::{LinkConfig, LinkPreset, LinkState};
use crate::nat::{Nat, NatConfig, NatPreset};
use crate::net::{Net, Realm};
use crate::rng::RngTree;
use crate::sim::Sim;
use crate::trace::Keep;

/// Default port of a host's socket.
pub const DEFAULT_PORT: u16 = 4000;
/// First port of a host's extra hole-punching sockets ([`HostBuilder::punch_sockets`]).
pub const PUNCH_PORT_BASE: u16 = 40_000;
/// Most hole-punching sockets a host may have.
pub const MAX_PUNCH_SOCKETS: u16 = 1024;

#[derive(Debug)]
struct NatSpec {
    name: String,
    config: NatConfig,
    parent: Option<NatId>,
}

enum Kind {
    Node {
        config: Box<Config>,
        app: Box<dyn App>,
    },
    Raw {
        reflect: bool,
        echo: bool,
    },
}

/// A host's part in the rendezvous service.
#[derive(Clone, Debug)]
enum Role {
    None,
    /// Runs the rendezvous server (directory, beacon, relay).
    Server,
    /// Registers with the server running on the named host.
    Client {
        server: String,
        registration: Registration,
    },
}

struct HostSpec {
    name: String,
    behind: Option<NatId>,
    port: u16,
    extra_ports: Vec<u16>,
    punch_sockets: u16,
    role: Role,
    up: LinkConfig,
    down: LinkConfig,
    kind: Kind,
}

/// A scenario under construction. Hosts and NATs get handles in the order they are added.
pub struct Topology {
    name: String,
    seed: u64,
    nats: Vec<NatSpec>,
    hosts: Vec<HostSpec>,
    faults: Vec<(Duration, Fault)>,
    keep: Keep,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("name", &self.name)
            .field("seed", &self.seed)
            .field("nats", &self.nats.len())
            .field("hosts", &self.hosts.len())
            .finish_non_exhaustive()
    }
}

impl Topology {
    /// An empty internet. `name` is printed with the seed when a test fails.
    pub fn new(name: &str, seed: u64) -> Self {
        Self {
            name: name.to_owned(),
            seed,
            nats: Vec::new(),
            hosts: Vec::new(),
            faults: Vec::new(),
            keep: Keep::Last(64),
        }
    }

    /// Starts adding a NAT on the internet (or, with `.behind`, inside another NAT).
    pub fn nat(&mut self, name: &str, config: NatConfig) -> NatBuilder<'_> {
        NatBuilder {
            t: self,
            spec: NatSpec {
                name: name.to_owned(),
                config,
                parent: None,
            },
        }
    }

    /// Starts adding a host running a tern node (default config, [`Idle`] app, public
    /// address, ideal link, port 4000).
    pub fn host(&mut self, name: &str) -> HostBuilder<'_> {
        HostBuilder {
            t: self,
            spec: HostSpec {
                name: name.to_owned(),
                behind: None,
                port: DEFAULT_PORT,
                extra_ports: Vec::new(),
                punch_sockets: 0,
                role: Role::None,
                up: LinkConfig::default(),
                down: LinkConfig::default(),
                kind: Kind::Node {
                    config: Box::default(),
                    app: Box::new(Idle),
                },
            },
        }
    }

    /// Schedules a fault.
    pub fn fault(&mut self, at: Duration, fault: Fault) -> &mut Self {
        self.faults.push((at, fault));
        self
    }

    /// What the trace keeps (default: the last 64 records).
    pub fn keep(&mut self, keep: Keep) -> &mut Self {
        self.keep = keep;
        self
    }

    /// Builds the simulation: assigns addresses, derives every RNG stream, identity and node
    /// seed from the master seed and the entity's name. Panics if two hosts share a name or
    /// a node config is invalid.
    pub fn build(self) -> Sim {
        let tree = RngTree::new(self.seed);
        let mut net = Net::default();
        net.realms.push(Realm::new(RealmId::INTERNET, None));
        for (i, spec) in self.nats.into_iter().enumerate() {
            let id = NatId(i as u32);
            let outside = spec.parent.map_or(RealmId::INTERNET, |p| RealmId(p.0 + 1));
            let inside = RealmId(i as u32 + 1);
            net.realms.push(Realm::new(inside, Some(id)));
            let ips: Vec<_> = (0..spec.config.public_ips.max(1))
                .map(|_| net.realms[outside.0 as usize].allocate())
                .collect();
            for ip in &ips {
                net.attach_nat(outside, *ip, id);
            }
            let rng = tree.stream("nat", &spec.name);
            net.nats.push(Nat::new(
                id,
                spec.name,
                spec.config,
                ips,
                outside,
                inside,
                rng,
            ));
        }
        let mut dir = Directory::default();
        // First pass: addresses and identities, so that rendezvous clients can pin their
        // server's address and key.
        let mut placed = Vec::with_capacity(self.hosts.len());
        for (i, spec) in self.hosts.iter().enumerate() {
            let id = HostId(i as u32);
            assert!(
                dir.names.insert(spec.name.clone(), id).is_none(),
                "two hosts named {:?}",
                spec.name
            );
            let realm = spec.behind.map_or(RealmId::INTERNET, |n| RealmId(n.0 + 1));
            let ip = net.realms[realm.0 as usize].allocate();
            net.attach_host(realm, ip, id);
            let identity = Identity::from_secret(tree.seed_bytes("identity", &spec.name));
            placed.push((realm, ip, identity));
        }
        let servers: std::collections::BTreeMap<
            String,
            (std::net::SocketAddr, Option<u16>, usize),
        > = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| matches!(h.role, Role::Server))
            .map(|(i, h)| {
                assert_eq!(
                    placed[i].0,
                    RealmId::INTERNET,
                    "rendezvous server {:?} must be public",
                    h.name
                );
                (
                    h.name.clone(),
                    (
                        (placed[i].1, h.port).into(),
                        h.extra_ports.first().copied(),
                        i,
                    ),
                )
            })
            .collect();
        let mut hosts = Vec::new();
        for (i, spec) in self.hosts.into_iter().enumerate() {
            let id = HostId(i as u32);
            let (realm, ip, identity) = placed[i].clone();
            let up = LinkState::new(spec.up, tree.stream("link", &format!("{}/up", spec.name)));
            let down = LinkState::new(
                spec.down,
                tree.stream("link", &format!("{}/down", spec.name)),
            );
            let (kind, peer_id) = match spec.kind {
                Kind::Node { mut config, app } => {
                    match &spec.role {
                        Role::None => {}
                        Role::Server => {
                            if config.rendezvous_server.is_none() {
                                config.rendezvous_server = Some(ServerConfig::default());
                            }
                        }
                        Role::Client {
                            server,
                            registration,
                        } => {
                            let &(addr, beacon, k) = servers.get(server).unwrap_or_else(|| {
                                panic!("host {:?}: no rendezvous server {server:?}", spec.name)
                            });
                            let mut rc = RendezvousConfig::new(
                                addr,
                                placed[k].2.peer_id(),
                                registration.clone(),
                            );
                            rc.beacon = beacon.map(|p| (addr.ip(), p).into());
                            config.rendezvous = Some(rc);
                        }
                    }
                    let node = Node::new(
                        identity,
                        *config,
                        tree.seed_bytes("node", &spec.name),
                        clock::instant(Duration::ZERO),
                        UNIX_START,
                    )
                    .unwrap_or_else(|e| panic!("host {:?}: {e}", spec.name));
                    let peer = node.peer_id();
                    (HostKind::Node(Box::new(NodeHost { node, app })), Some(peer))
                }
                Kind::Raw { reflect, echo } => (
                    HostKind::Raw(RawHost {
                        received: Vec::new(),
                        reflect,
                        echo,
                    }),
                    None,
                ),
            };
            dir.info.push(PeerInfo {
                host: id,
                addr: (ip, spec.port).into(),
                peer_id,
            });
            let punch_ports: Vec<u16> = (0..spec.punch_sockets)
                .map(|k| PUNCH_PORT_BASE + k)
                .collect();
            let bound = spec
                .extra_ports
                .iter()
                .chain(&punch_ports)
                .copied()
                .collect();
            hosts.push(Host {
                id,
                name: spec.name,
                realm,
                ip,
                port: spec.port,
                extra_ports: spec.extra_ports,
                punch_ports,
                up,
                down,
                udp_blocked: false,
                kind,
                bound,
                events: Vec::new(),
                wake_at: None,
                wake_gen: 0,
                captured: None,
            });
        }
        Sim::assemble(
            self.name,
            self.seed,
            hosts,
            net,
            dir,
            self.keep,
            self.faults,
        )
    }
}

/// Adds one NAT; finish with [`NatBuilder::add`].
#[derive(Debug)]
pub struct NatBuilder<'t> {
    t: &'t mut Topology,
    spec: NatSpec,
}

impl NatBuilder<'_> {
    /// Puts this NAT's public side inside `parent` (a NAT chain, e.g. home behind CGNAT).
    pub fn behind(mut self, parent: NatId) -> Self {
        self.spec.parent = Some(parent);
        self
    }

    /// Adds the NAT and returns its handle.
    pub fn add(self) -> NatId {
        let id = NatId(self.t.nats.len() as u32);
        if let Some(p) = self.spec.parent {
            assert!(p.0 < id.0, "parent NAT must be added first");
        }
        self.t.nats.push(self.spec);
        id
    }
}

/// Adds one host; finish with [`HostBuilder::add`].
pub struct HostBuilder<'t> {
    t: &'t mut Topology,
    spec: HostSpec,
}

impl std::fmt::Debug for HostBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuilder")
            .field("name", &self.spec.name)
            .finish_non_exhaustive()
    }
}

impl HostBuilder<'_> {
    /// Places the host inside `nat`.
    pub fn behind(mut self, nat: NatId) -> Self {
        self.spec.behind = Some(nat);
        self
    }

    /// Places the host behind a fresh NAT chain for `preset` (named `<host>/nat0` innermost,
    /// `<host>/nat1` …); `Public` leaves it on the internet.
    pub fn behind_preset(mut self, preset: NatPreset) -> Self {
        let stack = preset.stack();
        let mut parent = None;
        for (i, config) in stack.into_iter().enumerate().rev() {
            let mut b = self.t.nat(&format!("{}/nat{i}", self.spec.name), config);
            if let Some(p) = parent {
                b = b.behind(p);
            }
            parent = Some(b.add());
        }
        self.spec.behind = parent;
        self
    }

    /// Uses `preset` for both directions of the access link.
    pub fn link(mut self, preset: LinkPreset) -> Self {
        self.spec.up = preset.config();
        self.spec.down = preset.config();
        self
    }

    /// Uses explicit parameters for each direction.
    pub fn links(mut self, up: LinkConfig, down: LinkConfig) -> Self {
        self.spec.up = up;
        self.spec.down = down;
        self
    }

    /// The port of the host's default socket.
    pub fn port(mut self, port: u16) -> Self {
        self.spec.port = port;
        self
    }

    /// More sockets on other ports of the host (a rendezvous server's second address, the
    /// beacon: clients compare what both addresses see to detect endpoint-dependent mapping).
    pub fn extra_ports(mut self, ports: &[u16]) -> Self {
        self.spec.extra_ports = ports.to_vec();
        self
    }

    /// `n` extra sockets for hole punching (ports [`PUNCH_PORT_BASE`]`..`), bound at start
    /// and given to the node with `Node::set_punch_sockets`: the hard side of birthday
    /// probing sends from each so its endpoint-dependent NAT opens one mapping per socket.
    pub fn punch_sockets(mut self, n: u16) -> Self {
        assert!(
            n <= MAX_PUNCH_SOCKETS,
            "at most {MAX_PUNCH_SOCKETS} punch sockets"
        );
        self.spec.punch_sockets = n;
        self
    }

    /// Runs the rendezvous server (directory, beacon, relay) on this host, with a second
    /// socket on port + 1 for the beacon's second observation. The host must be public.
    pub fn rendezvous_server(mut self) -> Self {
        self.spec.role = Role::Server;
        if self.spec.extra_ports.is_empty() {
            self.spec.extra_ports = vec![self.spec.port + 1];
        }
        self
    }

    /// Registers with the rendezvous server running on host `server` (its address, beacon
    /// address and key are filled in when the scenario is built), publishing `registration`.
    pub fn rendezvous_client(mut self, server: &str, registration: Registration) -> Self {
        self.spec.role = Role::Client {
            server: server.to_owned(),
            registration,
        };
        self
    }

    /// The node's configuration (rendezvous roles are added on top of it).
    pub fn config(mut self, config: Config) -> Self {
        if let Kind::Node { config: c, .. } = &mut self.spec.kind {
            **c = config;
        }
        self
    }

    /// The node's application.
    pub fn app(mut self, app: impl App + 'static) -> Self {
        if let Kind::Node { app: a, .. } = &mut self.spec.kind {
            *a = Box::new(app);
        }
        self
    }

    /// Makes this a raw UDP endpoint instead of a node.
    pub fn raw(mut self) -> Self {
        self.spec.kind = Kind::Raw {
            reflect: false,
            echo: false,
        };
        self
    }

    /// Makes this a raw endpoint that sends every datagram straight back.
    pub fn echo(mut self) -> Self {
        self.spec.kind = Kind::Raw {
            reflect: false,
            echo: true,
        };
        self
    }

    /// Makes this a raw endpoint that answers every datagram with the sender's address.
    pub fn reflector(mut self) -> Self {
        self.spec.kind = Kind::Raw {
            reflect: true,
            echo: false,
        };
        self
    }

    /// Adds the host and returns its handle.
    pub fn add(self) -> HostId {
        let id = HostId(self.t.hosts.len() as u32);
        self.t.hosts.push(self.spec);
        id
    }
}
