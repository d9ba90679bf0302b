//! Errors returned by commands: one enum per operation, each variant saying what to do.

/// `Node::connect` failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The session table is full (`Config::max_sessions`); close idle sessions or raise the
    /// limit.
    #[error("too many sessions; close some or raise max_sessions")]
    TooManySessions,
    /// The peer id is not a valid Ed25519 key; check where it came from.
    #[error("the peer id is not a valid public key")]
    InvalidPeer,
    /// Connecting to ourselves.
    #[error("cannot connect to this node's own key")]
    SelfConnect,
    /// The relay session given is not marked with `Node::use_relay` (or is gone).
    #[error("no such relay session; connect to a rendezvous server and call use_relay first")]
    NoRelay,
}

/// A command on an existing session failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The handle is stale or was never valid; the session is gone (see `SessionClosed`).
    #[error("unknown or closed session")]
    UnknownSession,
    /// The session is still handshaking; wait for `SessionEstablished`.
    #[error("session not established yet")]
    NotEstablished,
    /// The session is closing.
    #[error("session is closing")]
    Closing,
}
