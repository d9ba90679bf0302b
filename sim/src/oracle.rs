//! The oracle: for a pair of NAT setups, can two hosts get a direct UDP path, and by which
//! technique — or do they need a relay? This encodes the matrix of `p2p-anchors.md` §4.3.
//!
//! A setup (one NAT or a chain) is first reduced to a [`NatClass`]; a chain is as strict as
//! its strictest layer: UDP blocked anywhere blocks it; endpoint-dependent mapping anywhere
//! makes the chain endpoint-dependent, with the least predictable port allocation of the
//! layers from the innermost endpoint-dependent one outwards; otherwise the chain is EIM with
//! the strictest filtering of its layers. The matrix assumes APDF for endpoint-dependent
//! NATs. Two hosts behind the same NAT (hairpin, LAN candidates) are out of its scope.
//!
//! One refinement of §4.3: EDM-preserve × EDM-random is 🎲, not ❌. A port-preserving
//! endpoint-dependent NAT maps a socket to its own port for every destination, so its side
//! is as predictable as an EIM side and birthday probing works the same way (the raw-host
//! check in `tests/oracle_vs_sim.rs` confirms it against the NAT model).

use std::fmt::Write as _;

use crate::nat::{Filtering, NatConfig, NatPreset, PortAlloc};

/// The columns of the §4.3 matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatClass {
    /// No NAT, or EIM + EIF (full cone): reachable at its reflexive address by anyone.
    Open,
    /// EIM + ADF (restricted cone).
    EimAdf,
    /// EIM + APDF (port-restricted cone; most home routers and CGNs).
    EimApdf,
    /// Endpoint-dependent mapping that preserves the internal port.
    EdmPreserve,
    /// Endpoint-dependent mapping with sequential ports.
    EdmSequential,
    /// Endpoint-dependent mapping with random ports.
    EdmRandom,
    /// No UDP at all.
    UdpBlocked,
}

impl NatClass {
    /// Every class, in the matrix's order.
    pub const ALL: [NatClass; 7] = [
        NatClass::Open,
        NatClass::EimAdf,
        NatClass::EimApdf,
        NatClass::EdmPreserve,
        NatClass::EdmSequential,
        NatClass::EdmRandom,
        NatClass::UdpBlocked,
    ];

    /// The matrix's label for the class.
    pub const fn label(self) -> &'static str {
        match self {
            NatClass::Open => "public / EIM+EIF",
            NatClass::EimAdf => "EIM+ADF",
            NatClass::EimApdf => "EIM+APDF",
            NatClass::EdmPreserve => "EDM-preserve",
            NatClass::EdmSequential => "EDM-sequential",
            NatClass::EdmRandom => "EDM-random",
            NatClass::UdpBlocked => "UDP blocked",
        }
    }

    /// Classifies a chain of NATs, innermost first (empty = public).
    pub fn of_chain(chain: &[NatConfig]) -> NatClass {
        if chain.iter().any(|c| c.block_udp) {
            return NatClass::UdpBlocked;
        }
        if let Some(inner_edm) = chain.iter().position(|c| c.mapping.is_endpoint_dependent()) {
            let worst = chain[inner_edm..]
                .iter()
                .map(|c| allocation_rank(c.ports))
                .max()
                .unwrap_or(0);
            return match worst {
                0 => NatClass::EdmPreserve,
                1 => NatClass::EdmSequential,
                _ => NatClass::EdmRandom,
            };
        }
        match chain.iter().map(|c| c.filtering).max() {
            None | Some(Filtering::EndpointIndependent) => NatClass::Open,
            Some(Filtering::AddressDependent) => NatClass::EimAdf,
            Some(Filtering::AddressAndPortDependent) => NatClass::EimApdf,
        }
    }

    /// Classifies a preset.
    pub fn of_preset(preset: NatPreset) -> NatClass {
        Self::of_chain(&preset.stack())
    }
}

/// 0 = predictable (preserve), 1 = predictable with contention (sequential, blocks),
/// 2 = unpredictable (random).
fn allocation_rank(p: PortAlloc) -> u8 {
    match p {
        PortAlloc::Preserve { .. } => 0,
        PortAlloc::Sequential { .. } | PortAlloc::Block { .. } => 1,
        PortAlloc::Random { .. } => 2,
    }
}

/// How a direct path is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Technique {
    /// One side dials the other's reflexive address; no punching needed (✅¹).
    OneSideDials,
    /// Both send to each other's reflexive address at about the same time (✅).
    SimultaneousOpen,
    /// Guess the endpoint-dependent side's next public port (✅ᴾ).
    PortPrediction,
    /// Both sides predict; works only while allocation is undisturbed (✅ᴾ/❌).
    PortPredictionFragile,
    /// Many sockets on one side, many probed ports on the other (🎲, ≈98 % at 256 × 1024).
    BirthdayProbing,
}

/// The expected outcome for a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A direct UDP path is possible with this technique.
    Direct(Technique),
    /// No practical direct path: relay over UDP (❌).
    Relay,
    /// UDP impossible on one side: relay over TCP/TLS 443 (⛔).
    UdpImpossible,
}

impl Outcome {
    /// The matrix symbol.
    pub const fn symbol(self) -> &'static str {
        match self {
            Outcome::Direct(Technique::OneSideDials) => "✅¹",
            Outcome::Direct(Technique::SimultaneousOpen) => "✅",
            Outcome::Direct(Technique::PortPrediction) => "✅ᴾ",
            Outcome::Direct(Technique::PortPredictionFragile) => "✅ᴾ/❌",
            Outcome::Direct(Technique::BirthdayProbing) => "🎲",
            Outcome::Relay => "❌",
            Outcome::UdpImpossible => "⛔",
        }
    }

    /// True if some direct technique applies.
    pub fn is_direct(self) -> bool {
        matches!(self, Outcome::Direct(_))
    }
}

/// The expected outcome between two classes (symmetric), per `p2p-anchors.md` §4.3.
pub fn expected_for_classes(a: NatClass, b: NatClass) -> Outcome {
    use NatClass::*;
    use Technique::*;
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    match (a, b) {
        (_, UdpBlocked) => Outcome::UdpImpossible,
        (Open, _) => Outcome::Direct(OneSideDials),
        // (a): ADF admits any port of an IP it sent to, so the EDM side's new port gets in.
        (EimAdf, _) => Outcome::Direct(SimultaneousOpen),
        (EimApdf, EimApdf) => Outcome::Direct(SimultaneousOpen),
        // (b), (c): guess the EDM side's port (internal port, or last + delta).
        (EimApdf, EdmPreserve) | (EimApdf, EdmSequential) => Outcome::Direct(PortPrediction),
        // (d); and the refinement: a preserving EDM side sprays from one predictable port.
        (EimApdf, EdmRandom) | (EdmPreserve, EdmRandom) => Outcome::Direct(BirthdayProbing),
        // (e)
        (EdmPreserve, EdmPreserve) => Outcome::Direct(PortPrediction),
        (EdmPreserve, EdmSequential) | (EdmSequential, EdmSequential) => {
            Outcome::Direct(PortPredictionFragile)
        }
        // (f): 2^32 search space.
        (_, EdmRandom) => Outcome::Relay,
        _ => unreachable!("pairs are ordered"),
    }
}

/// The expected outcome between hosts behind two NAT chains (innermost first; empty =
/// public).
pub fn expected_outcome(a: &[NatConfig], b: &[NatConfig]) -> Outcome {
    expected_for_classes(NatClass::of_chain(a), NatClass::of_chain(b))
}

/// The expected outcome between two presets.
pub fn expected_for_presets(a: NatPreset, b: NatPreset) -> Outcome {
    expected_outcome(&a.stack(), &b.stack())
}

/// The class matrix (as in §4.3, full square) and the preset × preset table, as Markdown.
pub fn render_tables() -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# NAT pair oracle (p2p-anchors.md §4.3)\n");
    let _ = writeln!(
        s,
        "Legend: ✅¹ one side dials · ✅ simultaneous open · ✅ᴾ port prediction · \
         ✅ᴾ/❌ both predict, fragile · 🎲 birthday probing · ❌ relay · ⛔ UDP impossible (relay over TCP)\n"
    );
    let _ = writeln!(s, "## By NAT class\n");
    table(&mut s, &NatClass::ALL.map(NatClass::label), |i, j| {
        expected_for_classes(NatClass::ALL[i], NatClass::ALL[j])
            .symbol()
            .to_owned()
    });
    let _ = writeln!(s, "\n## By preset\n");
    let _ = writeln!(s, "| preset | class |\n|---|---|");
    for p in NatPreset::ALL {
        let _ = writeln!(s, "| {} | {} |", p.name(), NatClass::of_preset(p).label());
    }
    let _ = writeln!(s);
    table(&mut s, &NatPreset::ALL.map(NatPreset::name), |i, j| {
        expected_for_presets(NatPreset::ALL[i], NatPreset::ALL[j])
            .symbol()
            .to_owned()
    });
    s
}

fn table<const N: usize>(
    s: &mut String,
    labels: &[&str; N],
    cell: impl Fn(usize, usize) -> String,
) {
    let _ = write!(s, "| A \\ B |");
    for l in labels {
        let _ = write!(s, " {l} |");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|{}", "---|".repeat(N));
    for (i, l) in labels.iter().enumerate() {
        let _ = write!(s, "| **{l}** |");
        for j in 0..N {
            let _ = write!(s, " {} |", cell(i, j));
        }
        let _ = writeln!(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_classify_as_documented() {
        use NatClass::*;
        let expect = [
            (NatPreset::Public, Open),
            (NatPreset::FullCone, Open),
            (NatPreset::RestrictedCone, EimAdf),
            (NatPreset::Home, EimApdf),
            (NatPreset::Cgnat, EimApdf),
            (NatPreset::HomeBehindCgnat, EimApdf),
            (NatPreset::MobileHard, EdmPreserve),
            (NatPreset::EdmSequential, EdmSequential),
            (NatPreset::CloudNatGw, EdmRandom),
            (NatPreset::UdpBlocked, UdpBlocked),
        ];
        for (p, c) in expect {
            assert_eq!(NatClass::of_preset(p), c, "{}", p.name());
        }
    }

    #[test]
    fn chains_take_the_strictest_layer() {
        // A preserving EDM behind a sequential CGN looks sequential from outside.
        let chain = [NatConfig::mobile_hard(), NatConfig::cgnat()];
        assert_eq!(NatClass::of_chain(&chain), NatClass::EdmSequential);
        // Full cone behind a home router is as strict as the home router.
        let chain = [NatConfig::full_cone(), NatConfig::home()];
        assert_eq!(NatClass::of_chain(&chain), NatClass::EimApdf);
        let chain = [NatConfig::home(), NatConfig::udp_blocked()];
        assert_eq!(NatClass::of_chain(&chain), NatClass::UdpBlocked);
        let chain = [NatConfig::cloud_natgw(), NatConfig::full_cone()];
        assert_eq!(NatClass::of_chain(&chain), NatClass::EdmRandom);
    }

    #[test]
    fn symmetric() {
        for a in NatClass::ALL {
            for b in NatClass::ALL {
                assert_eq!(expected_for_classes(a, b), expected_for_classes(b, a));
            }
        }
    }
}
