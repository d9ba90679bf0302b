//! Errors of socket set-up and of the socket set.
//!
//! Sending and receiving return `std::io::Error` instead: `WouldBlock` must stay an
//! `io::ErrorKind` so the sockets plug into mio and async-io, and the remaining send errors
//! (`EMSGSIZE`, `ENETUNREACH`, …) concern one datagram that the caller simply drops.

use std::io;
use std::net::SocketAddr;

/// Creating, configuring or registering a socket failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// The OS refused to create a UDP socket (out of file descriptors, or the address
    /// family is not supported, e.g. IPv6 disabled). Free descriptors or use the other
    /// family.
    #[error("creating a UDP socket failed: {0}")]
    Create(#[source] io::Error),
    /// Binding failed: the address is in use (pick another port or 0), not local to this
    /// host, or needs privileges.
    #[error("binding {addr} failed: {source}")]
    Bind {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A socket option the socket cannot work correctly without was refused (for example
    /// don't-fragment). The kernel is unusual; set [`crate::PmtuMode::KernelDefault`] to
    /// run without it.
    #[error("setting socket option {option} failed: {source}")]
    Option {
        /// The option's name, as in the C headers.
        option: &'static str,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The [`crate::SocketSet`] already holds its maximum number of sockets; remove one
    /// (e.g. a finished probing socket) or create the set with a larger cap.
    #[error("socket set is full ({max} sockets)")]
    SetFull {
        /// The set's cap.
        max: usize,
    },
}
