//! Socket configuration.

/// Default send/receive buffer request: 8 MiB each. At the loopback ceiling
/// (≈ 1.1 M datagrams/s of 1200 B, each costing ≈ 2.3 KiB of kernel memory) that absorbs
/// a few milliseconds of burst, which is what keeps an unpaced sender from losing half its
/// datagrams (perf anchors §2.3).
pub const DEFAULT_BUFFER: usize = 8 << 20;

/// Default cap on GSO segments per send. Linux accepts up to `UDP_MAX_SEGMENTS` (64 before
/// 6.9, 128 since); 64 works everywhere. Each send is also kept under the 64 KiB IP limit.
pub const DEFAULT_MAX_GSO_SEGMENTS: usize = 64;

/// How the socket treats IP fragmentation (path-MTU discovery).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PmtuMode {
    /// Set the don't-fragment bit and honour the kernel's path-MTU cache
    /// (`IP_PMTUDISC_DO` / `IPV6_PMTUDISC_DO` + `IPV6_DONTFRAG`): a send larger than the
    /// known path MTU fails with `EMSGSIZE` instead of being fragmented.
    Do,
    /// Set the don't-fragment bit but ignore the kernel's path-MTU cache
    /// (`IP_PMTUDISC_PROBE` / `IPV6_PMTUDISC_PROBE`): for packetization-layer probing
    /// (RFC 8899), where a forged ICMP "too big" must not shrink the MTU.
    Probe,
    /// Leave the kernel default (which may fragment).
    KernelDefault,
}

/// Options for [`crate::UdpSocket::bind`]. Build with `UdpConfig::default()` and change the
/// fields you need.
///
/// Whatever the config says, the environment can only turn offloads *off*:
/// `TERN_NO_GSO=1` disables GSO and `TERN_NO_GRO=1` disables GRO on every socket bound
/// while it is set (so tests and CI can exercise the one-datagram-per-send paths).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpConfig {
    /// Requested `SO_SNDBUF` in bytes ([`DEFAULT_BUFFER`]).
    pub send_buffer: usize,
    /// Requested `SO_RCVBUF` in bytes ([`DEFAULT_BUFFER`]).
    pub recv_buffer: usize,
    /// When the kernel caps a buffer below the request (`wmem_max`/`rmem_max`), retry with
    /// `SO_SNDBUFFORCE`/`SO_RCVBUFFORCE`, which succeeds only with `CAP_NET_ADMIN`
    /// (default `true`; without the capability it is a harmless no-op).
    pub force_buffers: bool,
    /// Use UDP GSO (`UDP_SEGMENT`) for transmits that carry a segment size (default `true`).
    pub gso: bool,
    /// Most segments per GSO send ([`DEFAULT_MAX_GSO_SEGMENTS`]). Values above the
    /// kernel's limit make it refuse the send (`EINVAL`), which the socket treats as a GSO
    /// refusal and falls back to one datagram per send: keep the default.
    pub max_gso_segments: usize,
    /// Ask the kernel to coalesce received datagrams (`UDP_GRO`) (default `true`). Receive
    /// buffers must then hold a whole coalesced message: use 64 KiB slots
    /// (`RecvBatch::default()` does).
    pub gro: bool,
    /// Fragmentation policy ([`PmtuMode::Do`]).
    pub pmtu: PmtuMode,
    /// Report the destination address of each datagram (`IP_PKTINFO`/`IPV6_RECVPKTINFO`),
    /// which matters for sockets bound to a wildcard address (default `true`).
    pub pktinfo: bool,
    /// For IPv6 sockets: refuse IPv4 traffic (`IPV6_V6ONLY`, default `true`). Set `false`
    /// on a `[::]` socket to serve both families with one socket (IPv4 peers then appear
    /// as plain IPv4 addresses in [`crate::RecvMeta`]).
    pub v6_only: bool,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            send_buffer: DEFAULT_BUFFER,
            recv_buffer: DEFAULT_BUFFER,
            force_buffers: true,
            gso: true,
            max_gso_segments: DEFAULT_MAX_GSO_SEGMENTS,
            gro: true,
            pmtu: PmtuMode::Do,
            pktinfo: true,
            v6_only: true,
        }
    }
}

impl UdpConfig {
    /// The config with both offloads (GSO and GRO) off: one datagram per send and per
    /// receive slot. Useful for tests and for comparing against the offloaded path.
    pub fn without_offload() -> Self {
        Self {
            gso: false,
            gro: false,
            ..Self::default()
        }
    }

    /// Applies the environment switches `TERN_NO_GSO` and `TERN_NO_GRO` through `lookup`
    /// (normally `std::env::var`): a value of `1`, `true` or `yes` turns that offload off.
    /// [`crate::UdpSocket::bind`] calls this with the real environment.
    pub fn with_env_overrides(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        if env_flag(lookup("TERN_NO_GSO").as_deref()) {
            self.gso = false;
        }
        if env_flag(lookup("TERN_NO_GRO").as_deref()) {
            self.gro = false;
        }
        self
    }
}

/// Whether an environment switch is on.
fn env_flag(value: Option<&str>) -> bool {
    matches!(
        value.map(str::trim).map(str::to_ascii_lowercase).as_deref(),
        Some("1" | "true" | "yes" | "on")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_switches_only_turn_offloads_off() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let c = UdpConfig::default().with_env_overrides(env(&[("TERN_NO_GSO", "1")]));
        assert!(!c.gso && c.gro);
        let c = UdpConfig::default().with_env_overrides(env(&[("TERN_NO_GRO", "yes")]));
        assert!(c.gso && !c.gro);
        let c = UdpConfig::default()
            .with_env_overrides(env(&[("TERN_NO_GSO", "0"), ("TERN_NO_GRO", "")]));
        assert!(c.gso && c.gro);
        // "0" never turns an offload back on.
        let c = UdpConfig::without_offload().with_env_overrides(env(&[("TERN_NO_GSO", "0")]));
        assert!(!c.gso && !c.gro);
    }
}
