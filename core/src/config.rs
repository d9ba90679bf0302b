//! Node configuration: every limit a peer can push against has a cap here, with a documented
//! default.

use std::time::Duration;

use crate::crypto::{AeadKind, HandshakeCipher};

/// Who may establish a session with this node as responder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IncomingPolicy {
    /// Anyone who completes the handshake (public node).
    AcceptAll,
    /// Only peers marked trusted with [`Node::set_trusted`](crate::Node::set_trusted); others
    /// get an authenticated refusal and leave no state behind (private node).
    TrustedOnly,
}

/// Node settings. Build with `Config::default()` and adjust fields; [`Config::validate`] runs
/// in [`Node::new`](crate::Node::new).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Largest UDP payload sent before path MTU discovery raises it (default 1200, the
    /// minimum every path must carry).
    pub max_udp_payload: u16,
    /// A session with no authenticated packet from the peer for this long is closed
    /// (default 45 s = three missed keepalives).
    pub idle_timeout: Duration,
    /// Send a keepalive PING when nothing was sent for this long (default 15 s, below the
    /// shortest common NAT UDP timeout). The session's responder waits 1.5 times as long, so
    /// an idle session carries one PING and its PONG per interval (the PONG refreshes the
    /// responder's NAT mapping), not two of each.
    pub keepalive_interval: Duration,
    /// Give up on a handshake after this long (default 15 s).
    pub handshake_timeout: Duration,
    /// First handshake retransmission delay; doubles on every retry up to 4 s (default 500 ms).
    pub handshake_retransmit: Duration,
    /// Most sessions this node holds, in any state (default 4096).
    pub max_sessions: usize,
    /// Most half-open responder handshakes held at once; inits beyond it are dropped
    /// (default 256).
    pub max_pending_handshakes: usize,
    /// Once this many responder handshakes are pending, an init must carry a valid cookie
    /// (proof it can receive at its source address) before any state is kept (default 32).
    pub cookie_threshold: usize,
    /// Inits processed per second before cookies are required regardless of pending state
    /// (bounds Diffie-Hellman work per second; default 1000).
    pub handshake_rate_limit: u32,
    /// Start a key update after this long on one key (default 120 s).
    pub rekey_after: Duration,
    /// Start a key update after this many packets on one key (default 2^23, the AES-GCM
    /// confidentiality limit; tests use small values).
    pub rekey_after_packets: u64,
    /// Data AEADs this node accepts, most preferred first (default AES-256-GCM, then
    /// ChaCha20-Poly1305). The responder picks its first choice the initiator offered.
    pub aeads: &'static [AeadKind],
    /// Cipher and hash for the Noise handshake itself (default AES-GCM + SHA-256).
    pub handshake_cipher: HandshakeCipher,
    /// Who may open sessions to this node (default [`IncomingPolicy::AcceptAll`]).
    pub incoming: IncomingPolicy,
    /// Peers whose latest handshake timestamp is remembered for replay protection
    /// (default 4096; the oldest entry is forgotten first).
    pub max_replay_timestamps: usize,
    /// Answer inits made for another key with an (unauthenticated) reject hint so the
    /// initiator learns quickly that the key is wrong (default true).
    pub send_reject_hints: bool,
    /// Outstanding application pings remembered per session (default 16; a newer ping
    /// replaces the oldest).
    pub max_outstanding_pings: usize,
    /// Rendezvous server: RELAY frames from peers are forwarding requests, surfaced through
    /// `Node::poll_relay` (default false: RELAY frames are accepted only from sessions marked
    /// with `Node::use_relay`, as datagrams from the named peer).
    pub relay_server: bool,
    /// Rendezvous server: tell every peer the address its packets arrive from (the beacon;
    /// default false).
    pub send_observed_addresses: bool,
    /// Relayed datagrams buffered between the session that received them and their
    /// processing (default 256; newest dropped when full).
    pub max_relay_queue: usize,
    /// Streams, datagrams, flow control, congestion control and PMTU settings.
    pub transport: crate::stream::TransportConfig,
    /// Answer streams opened to port 7 with an echo of every byte (default true).
    pub echo: bool,
    /// Register with this rendezvous server (directory, beacon, relay); default none.
    pub rendezvous: Option<crate::node::RendezvousConfig>,
    /// Act as a rendezvous server (directory, beacon, relay) with these limits; default none.
    pub rendezvous_server: Option<crate::rendezvous::ServerConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_udp_payload: 1200,
            idle_timeout: Duration::from_secs(45),
            keepalive_interval: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(15),
            handshake_retransmit: Duration::from_millis(500),
            max_sessions: 4096,
            max_pending_handshakes: 256,
            cookie_threshold: 32,
            handshake_rate_limit: 1000,
            rekey_after: Duration::from_secs(120),
            rekey_after_packets: 1 << 23,
            aeads: &[AeadKind::Aes256Gcm, AeadKind::ChaCha20Poly1305],
            handshake_cipher: HandshakeCipher::AesGcmSha256,
            incoming: IncomingPolicy::AcceptAll,
            max_replay_timestamps: 4096,
            send_reject_hints: true,
            max_outstanding_pings: 16,
            relay_server: false,
            send_observed_addresses: false,
            max_relay_queue: 256,
            transport: crate::stream::TransportConfig::default(),
            echo: true,
            rendezvous: None,
            rendezvous_server: None,
        }
    }
}

/// A configuration value is out of range. The message names the field and its valid range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has an invalid value.
    #[error("invalid config: {field} {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong and what is allowed.
        problem: &'static str,
    },
}

impl Config {
    /// Checks every field; called by `Node::new`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem| Err(ConfigError::Invalid { field, problem });
        if !(1200..=65527).contains(&self.max_udp_payload) {
            return bad("max_udp_payload", "must be between 1200 and 65527");
        }
        if self.keepalive_interval.is_zero() || self.keepalive_interval >= self.idle_timeout {
            return bad(
                "keepalive_interval",
                "must be non-zero and below idle_timeout",
            );
        }
        if self.handshake_retransmit.is_zero()
            || self.handshake_retransmit >= self.handshake_timeout
        {
            return bad(
                "handshake_retransmit",
                "must be non-zero and below handshake_timeout",
            );
        }
        if self.max_sessions == 0 || self.max_pending_handshakes == 0 {
            return bad("max_sessions", "limits must be at least 1");
        }
        if self.cookie_threshold > self.max_pending_handshakes {
            return bad("cookie_threshold", "must not exceed max_pending_handshakes");
        }
        if self.aeads.is_empty() {
            return bad("aeads", "must list at least one AEAD");
        }
        if self.rekey_after_packets == 0 || self.rekey_after.is_zero() {
            return bad("rekey_after", "must be non-zero");
        }
        if self.max_replay_timestamps == 0 || self.max_outstanding_pings == 0 {
            return bad("max_replay_timestamps", "limits must be at least 1");
        }
        self.transport.validate()?;
        Ok(())
    }

    /// Bitmask of [`Config::aeads`] for the handshake offer.
    pub(crate) fn aead_offer(&self) -> u8 {
        self.aeads.iter().fold(0, |m, k| m | k.bit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_are_named() {
        assert_eq!(Config::default().validate(), Ok(()));
        let c = Config {
            max_udp_payload: 100,
            ..Config::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("max_udp_payload") && err.contains("1200"),
            "{err}"
        );
        let c = Config {
            keepalive_interval: Duration::from_secs(60),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            aeads: &[],
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }
}
