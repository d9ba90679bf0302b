//! The CLI's errors: a stable machine-readable code (for `--json`), a one-line cause, a hint
//! that says what to do, and a documented exit code.
//!
//! | exit | meaning | codes |
//! |---|---|---|
//! | 0 | success | |
//! | 1 | internal error (a bug, or the daemon answered nonsense) | `INTERNAL`, `PROTOCOL` |
//! | 2 | bad command-line usage | `USAGE` |
//! | 3 | the daemon is not running (or already is) | `DAEMON_NOT_RUNNING`, `DAEMON_ALREADY_RUNNING` |
//! | 4 | not found | `HOST_NOT_FOUND`, `NO_SUCH_REQUEST` |
//! | 5 | not allowed | `NOT_TRUSTED`, `PRIVATE_NODE`, `REFUSED` |
//! | 6 | unreachable or timed out | `UNREACHABLE`, `TIMEOUT`, `CONNECTION_LOST`, `PORT_CLOSED` |
//! | 7 | conflict | `PORT_IN_USE`, `HOSTNAME_TAKEN`, `ADDRESS_IN_USE` |
//! | 8 | rendezvous problem | `RENDEZVOUS_UNREACHABLE`, `NO_RENDEZVOUS` |
//! | 9 | invalid input | `INVALID_ADDRESS`, `INVALID_ARGUMENT`, `PATH_ESCAPES` |
//! | 10 | file or I/O problem | `FILE_ERROR`, `HASH_MISMATCH`, `IO` |

use std::fmt;

use serde::{Deserialize, Serialize};

/// A user-facing error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CliError {
    /// Stable code, e.g. `HOST_NOT_FOUND`.
    pub code: String,
    /// One line: what went wrong.
    pub message: String,
    /// One line: what to do about it.
    pub hint: String,
}

impl CliError {
    /// A new error.
    pub fn new(code: &str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// The process exit code for this error (see the module table).
    pub fn exit_code(&self) -> u8 {
        match self.code.as_str() {
            "USAGE" => 2,
            "DAEMON_NOT_RUNNING" | "DAEMON_ALREADY_RUNNING" => 3,
            "HOST_NOT_FOUND" | "NO_SUCH_REQUEST" => 4,
            "NOT_TRUSTED" | "PRIVATE_NODE" | "REFUSED" => 5,
            "UNREACHABLE" | "TIMEOUT" | "CONNECTION_LOST" | "PORT_CLOSED" => 6,
            "PORT_IN_USE" | "HOSTNAME_TAKEN" | "ADDRESS_IN_USE" => 7,
            "RENDEZVOUS_UNREACHABLE" | "NO_RENDEZVOUS" => 8,
            "INVALID_ADDRESS" | "INVALID_ARGUMENT" | "PATH_ESCAPES" => 9,
            "FILE_ERROR" | "HASH_MISMATCH" | "IO" => 10,
            _ => 1,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            "INTERNAL",
            message,
            "this is a bug in tern; please report it with the daemon log (tern daemon status shows where it is)",
        )
    }

    pub fn daemon_not_running() -> Self {
        Self::new(
            "DAEMON_NOT_RUNNING",
            "the tern daemon is not running",
            "start it with: tern daemon start",
        )
    }

    pub fn io(what: &str, e: &std::io::Error) -> Self {
        Self::new(
            "IO",
            format!("{what}: {e}"),
            "check the path and permissions",
        )
    }

    pub fn invalid(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new("INVALID_ARGUMENT", message, hint)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for CliError {}

/// Maps a driver error to a user-facing one.
pub fn from_driver(e: &tern_driver_mio::Error) -> CliError {
    use tern_core::CloseReason;
    use tern_driver_mio::Error as E;
    match e {
        E::SessionClosed(reason) => match reason {
            CloseReason::Refused => CliError::new(
                "NOT_TRUSTED",
                "the peer does not accept sessions from this node",
                "ask it to trust you: tern handshake <host>, then wait for its approval",
            ),
            CloseReason::HandshakeTimeout => CliError::new(
                "UNREACHABLE",
                "the peer did not answer the handshake",
                "check that its daemon runs and that you may reach it (tern find <host>)",
            ),
            CloseReason::PeerMismatch { .. } => CliError::new(
                "UNREACHABLE",
                "another key answered at that address",
                "the directory entry may be stale; try again with tern find <host>",
            ),
            CloseReason::Peer { code } if *code == tern_core::close_code::REVOKED => CliError::new(
                "NOT_TRUSTED",
                "the peer revoked its trust in this node",
                "ask it to trust you again: tern handshake <host>",
            ),
            other => CliError::new(
                "CONNECTION_LOST",
                format!("the session ended: {other:?}"),
                "try again; tern peers shows live sessions",
            ),
        },
        E::Connect(tern_core::ConnectError::NoRelay) => CliError::new(
            "RENDEZVOUS_UNREACHABLE",
            "not connected to the rendezvous server",
            "check the rendezvous address (tern netcheck) and that it is running",
        ),
        E::Refused(port) => CliError::new(
            "PORT_CLOSED",
            format!("nothing listens on port {port} at the peer"),
            "start a listener there (tern listen <port>) or pick the right port",
        ),
        E::Socket(e) => CliError::new(
            "ADDRESS_IN_USE",
            format!("cannot bind the UDP socket: {e}"),
            "pick another --listen address or stop what uses it",
        ),
        E::EndpointClosed => CliError::new(
            "DAEMON_NOT_RUNNING",
            "the daemon is shutting down",
            "start it again with: tern daemon start",
        ),
        other => CliError::new(
            "CONNECTION_LOST",
            other.to_string(),
            "try again; tern peers shows live sessions",
        ),
    }
}
