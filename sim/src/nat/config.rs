//! NAT behaviour, in RFC 4787's vocabulary, and the named presets of `p2p-anchors.md` §4.2.

use std::time::Duration;

/// How a NAT reuses a public mapping for packets from one internal socket (RFC 4787 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mapping {
    /// EIM: one public socket for every destination (REQ-1).
    EndpointIndependent,
    /// ADM: one public socket per destination IP.
    AddressDependent,
    /// APDM: one public socket per destination IP and port ("symmetric").
    AddressAndPortDependent,
}

impl Mapping {
    /// True for ADM and APDM ("endpoint-dependent", EDM).
    pub fn is_endpoint_dependent(self) -> bool {
        self != Mapping::EndpointIndependent
    }
}

/// Which inbound packets a mapping admits (RFC 4787 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Filtering {
    /// EIF: any source.
    EndpointIndependent,
    /// ADF: any port of an IP the internal socket has sent to.
    AddressDependent,
    /// APDF: only the exact sockets the internal socket has sent to.
    AddressAndPortDependent,
}

/// What a preserving NAT does when the internal port is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// Next free port counting up from the internal port.
    Sequential,
    /// A random free port in 1024–65535.
    Random,
}

/// How public ports are chosen for new mappings (RFC 4787 §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortAlloc {
    /// Public port = internal port when free (an endpoint-dependent NAT reuses it for every
    /// destination of the same internal socket), otherwise `fallback`.
    Preserve {
        /// When the port is taken.
        fallback: Fallback,
    },
    /// `start`, `start + delta`, … per public IP, skipping ports in use; wraps within
    /// 1024–65535.
    Sequential {
        /// First port.
        start: u16,
        /// Step.
        delta: u16,
    },
    /// Uniform in `[lo, hi]`.
    Random {
        /// Lowest port.
        lo: u16,
        /// Highest port.
        hi: u16,
    },
    /// Port-block allocation (RFC 7422): each internal IP gets `size` consecutive ports from
    /// `start` on, used in order.
    Block {
        /// Ports per block.
        size: u16,
        /// First port of the first block.
        start: u16,
    },
}

/// Which public IP a new mapping uses when the NAT has several (RFC 4787 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pooling {
    /// Every mapping of one internal IP uses the same public IP (REQ-2).
    Paired,
    /// Each mapping picks any public IP.
    Arbitrary,
}

/// Hairpinning (RFC 4787 §6): a packet from inside to the NAT's own public address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hairpin {
    /// Dropped.
    Off,
    /// Translated and turned around. `external_source`: the receiver sees the sender's
    /// public address (REQ-9 b); otherwise its internal address.
    On {
        /// Rewrite the source to the public mapping.
        external_source: bool,
    },
}

/// One NAT's behaviour.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NatConfig {
    /// Mapping behaviour.
    pub mapping: Mapping,
    /// Filtering behaviour.
    pub filtering: Filtering,
    /// Port allocation.
    pub ports: PortAlloc,
    /// Keep the internal port's parity (RFC 4787 §4.2.2).
    pub parity: bool,
    /// Pooling of public IPs.
    pub pooling: Pooling,
    /// Number of public IPs (at least 1).
    pub public_ips: usize,
    /// A mapping to a destination that never answered expires this long after the last
    /// refresh.
    pub unreplied_timeout: Duration,
    /// Once the destination answered, this long.
    pub established_timeout: Duration,
    /// Admitted inbound packets refresh the mapping too (RFC 4787 §4.3 MAY); outbound always
    /// does (REQ-6).
    pub inbound_refresh: bool,
    /// Hairpinning.
    pub hairpin: Hairpin,
    /// Most live mappings one internal IP may hold (RFC 6888 REQ-4); `None` is unlimited.
    pub max_mappings_per_host: Option<usize>,
    /// Drops all UDP, both ways (TCP-only networks).
    pub block_udp: bool,
}

impl NatConfig {
    /// EIM + EIF, preserving ("full cone"; a UPnP-mapped router).
    pub fn full_cone() -> Self {
        Self {
            mapping: Mapping::EndpointIndependent,
            filtering: Filtering::EndpointIndependent,
            ports: PortAlloc::Preserve {
                fallback: Fallback::Random,
            },
            parity: false,
            pooling: Pooling::Paired,
            public_ips: 1,
            unreplied_timeout: Duration::from_secs(30),
            established_timeout: Duration::from_secs(300),
            inbound_refresh: false,
            hairpin: Hairpin::On {
                external_source: true,
            },
            max_mappings_per_host: None,
            block_udp: false,
        }
    }

    /// EIM + ADF ("restricted cone").
    pub fn restricted_cone() -> Self {
        Self {
            filtering: Filtering::AddressDependent,
            hairpin: Hairpin::Off,
            ..Self::full_cone()
        }
    }

    /// A home router (FritzBox, OpenWRT, Linux masquerade): EIM + APDF, preserving, 30 s
    /// unreplied / 180 s established, no hairpin.
    pub fn home() -> Self {
        Self {
            filtering: Filtering::AddressAndPortDependent,
            established_timeout: Duration::from_secs(180),
            hairpin: Hairpin::Off,
            ..Self::full_cone()
        }
    }

    /// An RFC 6888 carrier-grade NAT: EIM + APDF, 512-port blocks per subscriber (the quota),
    /// two public IPs with paired pooling, 30 s / 60 s, hairpin on.
    pub fn cgnat() -> Self {
        Self {
            mapping: Mapping::EndpointIndependent,
            filtering: Filtering::AddressAndPortDependent,
            ports: PortAlloc::Block {
                size: 512,
                start: 1024,
            },
            parity: false,
            pooling: Pooling::Paired,
            public_ips: 2,
            unreplied_timeout: Duration::from_secs(30),
            established_timeout: Duration::from_secs(60),
            inbound_refresh: false,
            hairpin: Hairpin::On {
                external_source: true,
            },
            max_mappings_per_host: Some(512),
            block_udp: false,
        }
    }

    /// A hard mobile NAT: endpoint-dependent (APDM) but port-preserving, so the public port
    /// is predictable; APDF; 60 s.
    pub fn mobile_hard() -> Self {
        Self {
            mapping: Mapping::AddressAndPortDependent,
            filtering: Filtering::AddressAndPortDependent,
            ports: PortAlloc::Preserve {
                fallback: Fallback::Random,
            },
            parity: false,
            pooling: Pooling::Paired,
            public_ips: 1,
            unreplied_timeout: Duration::from_secs(60),
            established_timeout: Duration::from_secs(60),
            inbound_refresh: false,
            hairpin: Hairpin::Off,
            max_mappings_per_host: None,
            block_udp: false,
        }
    }

    /// APDM with sequential ports (+1 per new mapping from 20000), APDF, 30 s / 120 s.
    pub fn edm_sequential() -> Self {
        Self {
            ports: PortAlloc::Sequential {
                start: 20000,
                delta: 1,
            },
            unreplied_timeout: Duration::from_secs(30),
            established_timeout: Duration::from_secs(120),
            ..Self::mobile_hard()
        }
    }

    /// A cloud NAT gateway: APDM with random ports, APDF, 350 s.
    pub fn cloud_natgw() -> Self {
        Self {
            ports: PortAlloc::Random {
                lo: 1024,
                hi: 65535,
            },
            unreplied_timeout: Duration::from_secs(350),
            established_timeout: Duration::from_secs(350),
            ..Self::mobile_hard()
        }
    }

    /// A network that blocks UDP (corporate or hotel firewall); otherwise EDM-random + APDF.
    pub fn udp_blocked() -> Self {
        Self {
            block_udp: true,
            ..Self::cloud_natgw()
        }
    }
}

/// The NAT setups of `p2p-anchors.md` §4.2 that the issue asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatPreset {
    /// No NAT: a public address.
    Public,
    /// [`NatConfig::full_cone`].
    FullCone,
    /// [`NatConfig::restricted_cone`].
    RestrictedCone,
    /// [`NatConfig::home`].
    Home,
    /// [`NatConfig::cgnat`].
    Cgnat,
    /// A home router behind a carrier-grade NAT (double NAT).
    HomeBehindCgnat,
    /// [`NatConfig::mobile_hard`].
    MobileHard,
    /// [`NatConfig::edm_sequential`].
    EdmSequential,
    /// [`NatConfig::cloud_natgw`].
    CloudNatGw,
    /// [`NatConfig::udp_blocked`].
    UdpBlocked,
}

impl NatPreset {
    /// Every preset, in table order.
    pub const ALL: [NatPreset; 10] = [
        NatPreset::Public,
        NatPreset::FullCone,
        NatPreset::RestrictedCone,
        NatPreset::Home,
        NatPreset::Cgnat,
        NatPreset::HomeBehindCgnat,
        NatPreset::MobileHard,
        NatPreset::EdmSequential,
        NatPreset::CloudNatGw,
        NatPreset::UdpBlocked,
    ];

    /// The preset's name.
    pub const fn name(self) -> &'static str {
        match self {
            NatPreset::Public => "public",
            NatPreset::FullCone => "full-cone",
            NatPreset::RestrictedCone => "restricted-cone",
            NatPreset::Home => "home",
            NatPreset::Cgnat => "cgnat",
            NatPreset::HomeBehindCgnat => "home-behind-cgnat",
            NatPreset::MobileHard => "mobile-hard",
            NatPreset::EdmSequential => "edm-sequential",
            NatPreset::CloudNatGw => "cloud-natgw",
            NatPreset::UdpBlocked => "udp-blocked",
        }
    }

    /// Looks a preset up by name; `None` if unknown.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The NATs between a host and the internet, innermost first (empty for `Public`).
    pub fn stack(self) -> Vec<NatConfig> {
        match self {
            NatPreset::Public => vec![],
            NatPreset::FullCone => vec![NatConfig::full_cone()],
            NatPreset::RestrictedCone => vec![NatConfig::restricted_cone()],
            NatPreset::Home => vec![NatConfig::home()],
            NatPreset::Cgnat => vec![NatConfig::cgnat()],
            NatPreset::HomeBehindCgnat => vec![NatConfig::home(), NatConfig::cgnat()],
            NatPreset::MobileHard => vec![NatConfig::mobile_hard()],
            NatPreset::EdmSequential => vec![NatConfig::edm_sequential()],
            NatPreset::CloudNatGw => vec![NatConfig::cloud_natgw()],
            NatPreset::UdpBlocked => vec![NatConfig::udp_blocked()],
        }
    }
}
