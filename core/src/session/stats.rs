//! Counters. Network input never returns an error; it is counted here by reason instead.

/// Why an incoming datagram (or part of one) was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Header could not be parsed.
    Malformed,
    /// Unknown packet type byte.
    UnknownType,
    /// No session has this receiver index.
    UnknownSession,
    /// The session cannot accept this packet in its current state.
    UnexpectedState,
    /// Counter already seen or too old for the replay window.
    Replay,
    /// AEAD authentication failed (forged, corrupted or wrong key).
    DecryptFailed,
    /// Authenticated payload whose frames did not parse.
    BadFrames,
    /// A Noise handshake message was rejected.
    HandshakeFailed,
    /// A handshake init older than one already seen from the same peer.
    HandshakeReplay,
    /// An init made for another node's key (mac1 mismatch).
    WrongKey,
    /// Under load and the init had no valid cookie (a cookie was sent instead).
    CookieRequired,
    /// Pending-handshake table full.
    PendingFull,
    /// Session table full.
    SessionLimit,
    /// An init shorter than the anti-amplification minimum.
    TooShort,
    /// Unsupported version, suite or AEAD offer.
    Unsupported,
    /// The output queue for stateless replies was full.
    ReplyQueueFull,
    /// Sending would exceed 3x what an unvalidated address sent us.
    AmplificationLimit,
    /// Relayed packets arrived faster than they were processed (or from a session that is
    /// not a relay).
    RelayQueueFull,
    /// A relayed packet was not forwarded (policy, quota, or the target is not connected).
    RelayDenied,
    /// A stateless reset that matched no session's token (forged, stale or misdirected).
    ResetUnmatched,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 20;

    /// Every reason, in declaration order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::UnknownType,
        DropReason::UnknownSession,
        DropReason::UnexpectedState,
        DropReason::Replay,
        DropReason::DecryptFailed,
        DropReason::BadFrames,
        DropReason::HandshakeFailed,
        DropReason::HandshakeReplay,
        DropReason::WrongKey,
        DropReason::CookieRequired,
        DropReason::PendingFull,
        DropReason::SessionLimit,
        DropReason::TooShort,
        DropReason::Unsupported,
        DropReason::ReplyQueueFull,
        DropReason::AmplificationLimit,
        DropReason::RelayQueueFull,
        DropReason::RelayDenied,
        DropReason::ResetUnmatched,
    ];

    /// A stable snake_case name (for logs, `tern info --json` and metrics).
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownType => "unknown_type",
            DropReason::UnknownSession => "unknown_session",
            DropReason::UnexpectedState => "unexpected_state",
            DropReason::Replay => "replay",
            DropReason::DecryptFailed => "decrypt_failed",
            DropReason::BadFrames => "bad_frames",
            DropReason::HandshakeFailed => "handshake_failed",
            DropReason::HandshakeReplay => "handshake_replay",
            DropReason::WrongKey => "wrong_key",
            DropReason::CookieRequired => "cookie_required",
            DropReason::PendingFull => "pending_full",
            DropReason::SessionLimit => "session_limit",
            DropReason::TooShort => "too_short",
            DropReason::Unsupported => "unsupported",
            DropReason::ReplyQueueFull => "reply_queue_full",
            DropReason::AmplificationLimit => "amplification_limit",
            DropReason::RelayQueueFull => "relay_queue_full",
            DropReason::RelayDenied => "relay_denied",
            DropReason::ResetUnmatched => "reset_unmatched",
        }
    }
}

/// Drop counters by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts([u64; DropReason::COUNT]);

impl DropCounts {
    /// Drops for one reason.
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r as usize]
    }

    /// Total drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub(crate) fn add(&mut self, r: DropReason) {
        self.0[r as usize] += 1;
    }

    /// `(reason, count)` for every non-zero counter.
    pub fn nonzero(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .filter(|(_, n)| *n > 0)
    }
}

/// Node-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Datagrams received.
    pub rx_datagrams: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Datagrams sent.
    pub tx_datagrams: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Handshakes this node started.
    pub handshakes_initiated: u64,
    /// Sessions established (either role).
    pub sessions_established: u64,
    /// Incoming handshakes refused by the trust policy.
    pub handshakes_refused: u64,
    /// Cookies (stateless retries) sent.
    pub cookies_sent: u64,
    /// Reject hints sent.
    pub rejects_sent: u64,
    /// Stateless resets sent (data for a session this node does not have).
    pub resets_sent: u64,
    /// Sessions closed by a valid stateless reset from the peer.
    pub resets_received: u64,
    /// Key updates (either side started).
    pub key_updates: u64,
    /// Hole-punching probes sent (every session).
    pub punch_probes: u64,
    /// Dropped input by reason.
    pub drops: DropCounts,
}

/// Per-session counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Authenticated packets received.
    pub rx_packets: u64,
    /// Bytes of authenticated packets received.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets dropped as replays.
    pub replays: u64,
    /// Packets that failed authentication.
    pub decrypt_failures: u64,
    /// Key updates on this session.
    pub key_updates: u64,
    /// Path changes after validation.
    pub path_changes: u64,
    /// Frames sent, by type.
    pub tx_frames: FrameCounts,
    /// Frames received in authenticated packets, by type.
    pub rx_frames: FrameCounts,
}

/// The kinds of frame a data packet carries (see `wire::frame`), for per-type counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// PADDING (a run counts once).
    Padding,
    /// PING (keepalives, application pings, PTO and PMTU probes).
    Ping,
    /// PONG.
    Pong,
    /// ACK.
    Ack,
    /// RESET_STREAM.
    ResetStream,
    /// STOP_SENDING.
    StopSending,
    /// STREAM.
    Stream,
    /// MAX_DATA.
    MaxData,
    /// MAX_STREAM_DATA.
    MaxStreamData,
    /// MAX_STREAMS.
    MaxStreams,
    /// DATA_BLOCKED.
    DataBlocked,
    /// STREAM_DATA_BLOCKED.
    StreamDataBlocked,
    /// PATH_CHALLENGE.
    PathChallenge,
    /// PATH_RESPONSE.
    PathResponse,
    /// CLOSE.
    Close,
    /// DATAGRAM.
    Datagram,
    /// OBSERVED_ADDRESS.
    ObservedAddress,
    /// APP.
    App,
    /// RELAY.
    Relay,
    /// CANDIDATES.
    Candidates,
}

impl FrameKind {
    /// Number of kinds.
    pub const COUNT: usize = 20;

    /// Every kind, in declaration order.
    pub const ALL: [FrameKind; Self::COUNT] = [
        FrameKind::Padding,
        FrameKind::Ping,
        FrameKind::Pong,
        FrameKind::Ack,
        FrameKind::ResetStream,
        FrameKind::StopSending,
        FrameKind::Stream,
        FrameKind::MaxData,
        FrameKind::MaxStreamData,
        FrameKind::MaxStreams,
        FrameKind::DataBlocked,
        FrameKind::StreamDataBlocked,
        FrameKind::PathChallenge,
        FrameKind::PathResponse,
        FrameKind::Close,
        FrameKind::Datagram,
        FrameKind::ObservedAddress,
        FrameKind::App,
        FrameKind::Relay,
        FrameKind::Candidates,
    ];

    /// The kind of a decoded frame.
    pub fn of(frame: &crate::wire::frame::Frame<'_>) -> Self {
        use crate::wire::frame::Frame as F;
        match frame {
            F::Padding { .. } => Self::Padding,
            F::Ping { .. } => Self::Ping,
            F::Pong { .. } => Self::Pong,
            F::Ack(_) => Self::Ack,
            F::ResetStream { .. } => Self::ResetStream,
            F::StopSending { .. } => Self::StopSending,
            F::Stream { .. } => Self::Stream,
            F::MaxData { .. } => Self::MaxData,
            F::MaxStreamData { .. } => Self::MaxStreamData,
            F::MaxStreams { .. } => Self::MaxStreams,
            F::DataBlocked { .. } => Self::DataBlocked,
            F::StreamDataBlocked { .. } => Self::StreamDataBlocked,
            F::PathChallenge { .. } => Self::PathChallenge,
            F::PathResponse { .. } => Self::PathResponse,
            F::Close { .. } => Self::Close,
            F::Datagram { .. } => Self::Datagram,
            F::ObservedAddress { .. } => Self::ObservedAddress,
            F::App { .. } => Self::App,
            F::Relay { .. } => Self::Relay,
            F::Candidates { .. } => Self::Candidates,
        }
    }

    /// A stable snake_case name.
    pub const fn name(self) -> &'static str {
        match self {
            FrameKind::Padding => "padding",
            FrameKind::Ping => "ping",
            FrameKind::Pong => "pong",
            FrameKind::Ack => "ack",
            FrameKind::ResetStream => "reset_stream",
            FrameKind::StopSending => "stop_sending",
            FrameKind::Stream => "stream",
            FrameKind::MaxData => "max_data",
            FrameKind::MaxStreamData => "max_stream_data",
            FrameKind::MaxStreams => "max_streams",
            FrameKind::DataBlocked => "data_blocked",
            FrameKind::StreamDataBlocked => "stream_data_blocked",
            FrameKind::PathChallenge => "path_challenge",
            FrameKind::PathResponse => "path_response",
            FrameKind::Close => "close",
            FrameKind::Datagram => "datagram",
            FrameKind::ObservedAddress => "observed_address",
            FrameKind::App => "app",
            FrameKind::Relay => "relay",
            FrameKind::Candidates => "candidates",
        }
    }
}

/// Frame counters by [`FrameKind`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts([u64; FrameKind::COUNT]);

impl FrameCounts {
    /// Frames of one kind.
    pub fn get(&self, k: FrameKind) -> u64 {
        self.0[k as usize]
    }

    /// All frames.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub(crate) fn add(&mut self, k: FrameKind) {
        self.0[k as usize] += 1;
    }

    /// `(kind, count)` for every non-zero counter.
    pub fn nonzero(&self) -> impl Iterator<Item = (FrameKind, u64)> + '_ {
        FrameKind::ALL
            .into_iter()
            .map(|k| (k, self.get(k)))
            .filter(|(_, n)| *n > 0)
    }

    /// The counts accumulated since `earlier` (a copy taken before).
    pub fn since(&self, earlier: &FrameCounts) -> FrameCounts {
        let mut out = *self;
        for (o, e) in out.0.iter_mut().zip(earlier.0.iter()) {
            *o = o.saturating_sub(*e);
        }
        out
    }
}
