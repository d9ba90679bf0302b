//! Overlay addresses and virtual ports.
//!
//! A tern address is 48 bits: a 16-bit network and a 32-bit node number. Its text form is
//! `N:NNNN.HHHH.LLLL`: the network in decimal, then the network again as four hex digits, then
//! the node number as two groups of four hex digits (for example `0:0000.A91F.7C2E`). The
//! decimal and hex network must agree; hex digits may be upper or lower case and are printed
//! upper case. The address is a *name*: peers are always authenticated by their
//! [`PeerId`](crate::PeerId), never by address.

use std::fmt;
use std::str::FromStr;

/// A 48-bit overlay address: 16-bit network, 32-bit node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    network: u16,
    node: u32,
}

/// A virtual port on a node (like a UDP port, but inside a tern session).
pub type Port = u16;

/// Well-known virtual ports.
pub mod ports {
    use super::Port;
    /// Echo service: every byte written to a stream on this port is written back.
    pub const ECHO: Port = 7;
    /// First port handed out to outgoing streams that do not name their own.
    pub const EPHEMERAL_START: Port = 49152;
}

impl Address {
    /// Builds an address from its network and node numbers.
    pub const fn new(network: u16, node: u32) -> Self {
        Self { network, node }
    }

    /// The 16-bit network number (0 is the public backbone).
    pub const fn network(self) -> u16 {
        self.network
    }

    /// The 32-bit node number inside the network.
    pub const fn node(self) -> u32 {
        self.node
    }

    /// The address as 6 big-endian bytes (network, then node).
    pub fn to_bytes(self) -> [u8; 6] {
        let mut b = [0u8; 6];
        b[..2].copy_from_slice(&self.network.to_be_bytes());
        b[2..].copy_from_slice(&self.node.to_be_bytes());
        b
    }

    /// Reads an address from 6 big-endian bytes.
    pub fn from_bytes(b: [u8; 6]) -> Self {
        Self {
            network: u16::from_be_bytes([b[0], b[1]]),
            node: u32::from_be_bytes([b[2], b[3], b[4], b[5]]),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{:04X}.{:04X}.{:04X}",
            self.network,
            self.network,
            self.node >> 16,
            self.node & 0xFFFF
        )
    }
}

/// Why a string is not a valid [`Address`]. Each variant's message says what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressParseError {
    /// The input was empty.
    #[error("empty address; expected N:NNNN.HHHH.LLLL, e.g. 0:0000.A91F.7C2E")]
    Empty,
    /// No `:` between the decimal network and the hex groups.
    #[error("missing ':' after the network number; expected N:NNNN.HHHH.LLLL")]
    MissingColon,
    /// The part before `:` is not a decimal number from 0 to 65535.
    #[error("network {0:?} is not a decimal number from 0 to 65535")]
    BadNetwork(String),
    /// Not exactly three `.`-separated groups after the `:`.
    #[error("expected three '.'-separated hex groups after ':', found {0}")]
    GroupCount(usize),
    /// A group is not exactly four hex digits.
    #[error("group {0:?} must be exactly four hex digits (0-9, A-F)")]
    BadGroup(String),
    /// The decimal network and the first hex group disagree.
    #[error("network {decimal} does not match its hex group {hex:04X} ({hex}); they must agree")]
    NetworkMismatch {
        /// The decimal network before the `:`.
        decimal: u16,
        /// The network spelled by the first hex group.
        hex: u16,
    },
}

fn parse_group(g: &str) -> Result<u16, AddressParseError> {
    if g.len() != 4 || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AddressParseError::BadGroup(g.to_owned()));
    }
    u16::from_str_radix(g, 16).map_err(|_| AddressParseError::BadGroup(g.to_owned()))
}

impl FromStr for Address {
    type Err = AddressParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(AddressParseError::Empty);
        }
        let Some((net, rest)) = s.split_once(':') else {
            return Err(AddressParseError::MissingColon);
        };
        if net.is_empty() || net.len() > 5 || !net.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AddressParseError::BadNetwork(net.to_owned()));
        }
        let decimal: u16 = net
            .parse()
            .map_err(|_| AddressParseError::BadNetwork(net.to_owned()))?;
        let groups: Vec<&str> = rest.split('.').collect();
        if groups.len() != 3 {
            return Err(AddressParseError::GroupCount(groups.len()));
        }
        let hex = parse_group(groups[0])?;
        let hi = parse_group(groups[1])?;
        let lo = parse_group(groups[2])?;
        if hex != decimal {
            return Err(AddressParseError::NetworkMismatch { decimal, hex });
        }
        Ok(Address::new(decimal, (u32::from(hi) << 16) | u32::from(lo)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        for (net, node) in [
            (0, 0),
            (0, 0xA91F_7C2E),
            (1, 1),
            (65535, u32::MAX),
            (258, 0x10),
        ] {
            let a = Address::new(net, node);
            let s = a.to_string();
            assert_eq!(s.parse::<Address>(), Ok(a), "{s}");
            assert_eq!(Address::from_bytes(a.to_bytes()), a);
        }
        assert_eq!(Address::new(0, 0xA91F_7C2E).to_string(), "0:0000.A91F.7C2E");
        assert_eq!(Address::new(1, 0x1A3D).to_string(), "1:0001.0000.1A3D");
    }

    #[test]
    fn accepts_lower_case_and_whitespace() {
        let a: Address = " 0:0000.a91f.7c2e\n".parse().unwrap();
        assert_eq!(a, Address::new(0, 0xA91F_7C2E));
    }

    #[test]
    fn every_malformed_form_has_its_own_error() {
        use AddressParseError as E;
        let cases: &[(&str, E)] = &[
            ("", E::Empty),
            ("   ", E::Empty),
            ("0000.A91F.7C2E", E::MissingColon),
            (":0000.A91F.7C2E", E::BadNetwork(String::new())),
            ("x:0000.A91F.7C2E", E::BadNetwork("x".into())),
            ("-1:0000.A91F.7C2E", E::BadNetwork("-1".into())),
            ("65536:0000.A91F.7C2E", E::BadNetwork("65536".into())),
            ("123456:0000.A91F.7C2E", E::BadNetwork("123456".into())),
            ("0:0000.A91F", E::GroupCount(2)),
            ("0:0000.A91F.7C2E.0000", E::GroupCount(4)),
            ("0:", E::GroupCount(1)),
            ("0:..", E::BadGroup(String::new())),
            ("0:000.A91F.7C2E", E::BadGroup("000".into())),
            ("0:0000.A91G.7C2E", E::BadGroup("A91G".into())),
            ("0:0000.A91F.+C2E", E::BadGroup("+C2E".into())),
            ("0:0000.A91F.7C2E0", E::BadGroup("7C2E0".into())),
            (
                "0:A91F.0000.7C2E",
                E::NetworkMismatch {
                    decimal: 0,
                    hex: 0xA91F,
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                input.parse::<Address>().as_ref(),
                Err(want),
                "input {input:?}"
            );
            // Every error renders as one line that mentions what was expected.
            let msg = want.to_string();
            assert!(!msg.contains('\n') && !msg.is_empty());
        }
    }
}
