//! The drivers' error type (`tern-driver-mio` and `tern-driver-smol` both re-export it as
//! `Error`): one enum for every handle call, each variant saying when it happens and what to do.

use std::io;

use crate::SocketError;
use tern_core::{
    CloseReason, ConfigError, ConnectError, ListenError, RelayError, SendDatagramError,
};

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The UDP socket could not be bound or configured (address in use, not local, no
    /// permission). Pick another address or port.
    #[error("socket: {0}")]
    Socket(#[from] SocketError),
    /// The node configuration is invalid; the message names the field.
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    /// The OS refused a resource the driver needs (poller, wake-up descriptor, thread).
    /// Usually out of file descriptors or memory.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The endpoint was shut down (or its event loop died): every handle of it is now
    /// useless. Bind a new endpoint.
    #[error("endpoint is shut down")]
    EndpointClosed,
    /// The core refused to start a session (table full, invalid peer key, own key, no such
    /// relay); see [`ConnectError`].
    #[error("connect: {0}")]
    Connect(#[from] ConnectError),
    /// The session ended (or never got established), for this reason. Streams and
    /// datagrams of it are gone; connect again if needed.
    #[error("session closed: {0:?}")]
    SessionClosed(CloseReason),
    /// The session handle is stale: the session ended before this call and its reason is
    /// no longer known.
    #[error("unknown or closed session")]
    UnknownSession,
    /// The session is not established yet (only for relay set-up on a handshaking
    /// session): wait for `connect` to return.
    #[error("session not established yet")]
    NotEstablished,
    /// Listening failed: the port is taken (by another listener of this endpoint) or is
    /// the built-in echo port 7.
    #[error("listen: {0}")]
    Listen(#[from] ListenError),
    /// The peer reset its sending half of the stream with this code: no more data comes.
    #[error("stream reset by the peer with code {0}")]
    Reset(u64),
    /// The peer asked us to stop sending on the stream with this code (our sending half
    /// is reset); stop writing.
    #[error("the peer stopped the stream with code {0}")]
    Stopped(u64),
    /// The peer refused the stream: nothing listens on that port there.
    #[error("stream refused: nothing listens on port {0} at the peer")]
    Refused(u16),
    /// That half of the stream is already closed by this side (written after `finish` or
    /// `reset`, read after `stop`), or the stream is gone.
    #[error("stream closed in that direction")]
    StreamClosed,
    /// A datagram could not be queued: larger than the path allows now
    /// (see `max_datagram_size`), or the session is not established.
    #[error("datagram: {0}")]
    Datagram(#[from] SendDatagramError),
    /// A relay operation failed (see [`RelayError`]).
    #[error("relay: {0}")]
    Relay(#[from] RelayError),
}

impl From<Error> for io::Error {
    /// Maps to the nearest `io::ErrorKind`, keeping the typed error as the source (get it
    /// back with `io::Error::get_ref` and `downcast_ref::<Error>`).
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Io(io) => io.kind(),
            Error::Reset(_) | Error::SessionClosed(_) => io::ErrorKind::ConnectionReset,
            Error::Stopped(_) | Error::StreamClosed => io::ErrorKind::BrokenPipe,
            Error::Refused(_) => io::ErrorKind::ConnectionRefused,
            Error::EndpointClosed | Error::UnknownSession => io::ErrorKind::NotConnected,
            Error::Datagram(_) | Error::Config(_) => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
