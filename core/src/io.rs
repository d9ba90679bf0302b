//! What crosses the boundary between the core and a driver: outgoing transmits and incoming
//! datagram metadata. No sockets here.

use std::net::SocketAddr;

/// One datagram the driver must send. The payload is the first `len` bytes of the buffer
/// passed to `poll_transmit`.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination address.
    pub dst: SocketAddr,
    /// Local socket to send from, when the node uses several (hole punching); `None` means
    /// the node's default socket.
    pub src: Option<SocketAddr>,
    /// Bytes written into the caller's buffer.
    pub len: usize,
    /// For GSO transmits: size of each segment (the last may be shorter).
    pub segment_size: Option<usize>,
}

/// Metadata of a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    /// Source address.
    pub from: SocketAddr,
    /// Local address it arrived on, when the node uses several sockets.
    pub local: Option<SocketAddr>,
}
