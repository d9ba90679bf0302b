//! Transport settings: windows, buffers, limits, congestion control and timers for streams,
//! datagrams, loss recovery and PMTU discovery. Every peer-facing limit has a documented
//! default; [`TransportConfig::validate`] rejects values that would break an invariant.

use std::time::Duration;

use crate::cc::CongestionKind;
use crate::config::ConfigError;

/// Transport settings for one session (the node applies the same to every session).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportConfig {
    /// Bytes the peer may send on one stream beyond what the application has read: the
    /// stream's receive buffer bound (default 4 MiB: eight times the 500 kB bandwidth-delay
    /// product of a 100 Mbit/s, 40 ms path, and enough that one loopback stream is not
    /// window-bound; 1 MiB held a loopback stream to 0.6x quinn; browsers use 6 MB).
    pub stream_recv_window: u64,
    /// Bytes the peer may send on all streams together beyond what was read: bounds the
    /// session's total receive memory (default 16 MiB, as browsers' QUIC uses 15 MB).
    pub session_recv_window: u64,
    /// Bytes one stream buffers for sending (written but not yet acknowledged); `write`
    /// returns `Blocked` beyond it (default 4 MiB: with 1 MiB a loopback stream idled waiting
    /// for ACKs to free buffer space).
    pub stream_send_buffer: u64,
    /// Streams the peer may have open at once (default 100). Each closed stream gives the
    /// peer credit for a new one.
    pub max_streams: u64,
    /// Most out-of-order fragments (holes + 1) one stream's reassembly keeps; data that would
    /// need more is refused and the packet left unacknowledged (default 1024). Bounds the
    /// work a peer can cause per frame; an honest peer stays below `stream_recv_window /
    /// 1200` fragments (every other full-size packet of a window lost), about 870 for the
    /// default window, so raise it with the window. Too low a cap turns every tail-drop
    /// burst deeper than the cap into refused packets that are sent again.
    pub max_recv_ranges: usize,
    /// Bytes of unreliable datagrams queued for sending; the oldest are dropped beyond it
    /// (default 64 KiB).
    pub datagram_send_queue: usize,
    /// Bytes of received datagrams held for the application; the oldest are dropped beyond it
    /// (default 64 KiB).
    pub datagram_recv_queue: usize,
    /// Congestion controller (default CUBIC).
    pub congestion: CongestionKind,
    /// Initial congestion window in bytes; `None` uses RFC 9002's
    /// `min(10·mss, max(14720, 2·mss))` (default `None`).
    pub initial_window: Option<u64>,
    /// RTT assumed before the first sample (default 333 ms, RFC 9002).
    pub initial_rtt: Duration,
    /// Longest this side delays an ACK; also assumed for the peer (default 25 ms).
    pub max_ack_delay: Duration,
    /// Acknowledge at once after this many ack-eliciting packets (default 2).
    pub ack_eliciting_threshold: u32,
    /// Received-packet ranges remembered and reported in ACK frames (default 64; the oldest
    /// range is forgotten beyond it).
    pub max_ack_ranges: usize,
    /// Largest UDP payload PMTU discovery probes for (default 1452: a 1500-byte Ethernet MTU
    /// minus IPv6 and UDP headers).
    pub max_mtu: u16,
    /// After a PMTU search completes, search again upward after this long (default 600 s,
    /// RFC 8899 `PMTU_RAISE_TIMER`).
    pub mtu_raise_interval: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            stream_recv_window: 4 << 20,
            session_recv_window: 16 << 20,
            stream_send_buffer: 4 << 20,
            max_streams: 100,
            max_recv_ranges: 1024,
            datagram_send_queue: 64 << 10,
            datagram_recv_queue: 64 << 10,
            congestion: CongestionKind::Cubic,
            initial_window: None,
            initial_rtt: Duration::from_millis(333),
            max_ack_delay: Duration::from_millis(25),
            ack_eliciting_threshold: 2,
            max_ack_ranges: 64,
            max_mtu: 1452,
            mtu_raise_interval: Duration::from_secs(600),
        }
    }
}

impl TransportConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem| Err(ConfigError::Invalid { field, problem });
        if self.stream_recv_window == 0 || self.stream_recv_window > crate::wire::varint::MAX {
            return bad("stream_recv_window", "must be between 1 and 2^62-1");
        }
        if self.session_recv_window < self.stream_recv_window
            || self.session_recv_window > crate::wire::varint::MAX
        {
            return bad(
                "session_recv_window",
                "must be at least stream_recv_window and below 2^62",
            );
        }
        if self.stream_send_buffer == 0 {
            return bad("stream_send_buffer", "must be at least 1");
        }
        if self.max_streams == 0 || self.max_streams > (1 << 40) {
            return bad("max_streams", "must be between 1 and 2^40");
        }
        if self.max_recv_ranges == 0 || self.max_ack_ranges == 0 {
            return bad("max_recv_ranges", "range caps must be at least 1");
        }
        if self.datagram_send_queue < 1200 || self.datagram_recv_queue < 1200 {
            return bad(
                "datagram_send_queue",
                "datagram queues must hold at least 1200 bytes",
            );
        }
        if self.max_mtu < 1200 {
            return bad("max_mtu", "must be at least 1200");
        }
        if self.initial_rtt.is_zero() || self.ack_eliciting_threshold == 0 {
            return bad(
                "initial_rtt",
                "initial_rtt and ack_eliciting_threshold must be non-zero",
            );
        }
        Ok(())
    }

    /// The loss-recovery part of this configuration.
    pub fn recovery(&self) -> RecoveryConfig {
        RecoveryConfig {
            initial_rtt: self.initial_rtt,
            peer_max_ack_delay: self.max_ack_delay,
            congestion: self.congestion,
            initial_window: self.initial_window,
            max_pto: super::MAX_PTO,
        }
    }
}

/// Settings for [`super::Recovery`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// RTT assumed before the first sample.
    pub initial_rtt: Duration,
    /// The peer's maximum ACK delay (reported delays are clamped to it; added to the PTO).
    pub peer_max_ack_delay: Duration,
    /// Congestion controller.
    pub congestion: CongestionKind,
    /// Initial window in bytes (`None`: RFC 9002 default for the MTU).
    pub initial_window: Option<u64>,
    /// Longest backed-off probe timeout (default [`super::MAX_PTO`]).
    pub max_pto: Duration,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        TransportConfig::default().recovery()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_valid_and_bad_values_named() {
        assert_eq!(TransportConfig::default().validate(), Ok(()));
        let c = TransportConfig {
            session_recv_window: 10,
            ..TransportConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("session_recv_window")
        );
        let c = TransportConfig {
            stream_recv_window: 0,
            ..TransportConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
