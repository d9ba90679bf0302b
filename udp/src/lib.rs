//! # tern-udp: the UDP socket layer shared by tern's drivers
//!
//! The core (`tern-core`) never touches a socket; the drivers (`tern-driver-mio`,
//! `tern-driver-smol`) move its datagrams through the sockets of this crate, which make
//! loopback-class throughput possible on Linux:
//!
//! * **Big buffers**: `SO_SNDBUF`/`SO_RCVBUF` of 8 MiB by default, forced past
//!   `rmem_max` when the process has `CAP_NET_ADMIN`; [`UdpSocket::buffer_sizes`] tells
//!   what the kernel granted.
//! * **Batching**: [`UdpSocket::send`] uses `sendmmsg`, [`UdpSocket::recv`] /
//!   [`UdpSocket::recv_batch`] use `recvmmsg` into caller-owned buffers; nothing is
//!   allocated per packet.
//! * **GSO** (`UDP_SEGMENT`): a [`Transmit`] with a segment size leaves as one message
//!   the kernel splits. When the kernel refuses (`EIO`, `EINVAL`, `ENOPROTOOPT`) the
//!   socket re-sends one datagram per message, remembers the refusal and stops trying
//!   ([`GsoState`]).
//! * **GRO** (`UDP_GRO`): the kernel may hand over several datagrams of one flow as one
//!   message; [`RecvMeta::stride`] gives the datagram size and [`RecvMeta::datagrams`] /
//!   [`RecvBatch::datagrams`] split them.
//! * **Path MTU**: don't-fragment is set ([`PmtuMode`]), so oversize sends fail with
//!   `EMSGSIZE` instead of fragmenting.
//! * **Local address**: `IP_PKTINFO`/`IPV6_PKTINFO` report where each datagram arrived
//!   ([`RecvMeta::local`]), which the core's `RecvMeta { from, local }` wants.
//! * **Several sockets** per node for hole punching and birthday probing: [`SocketSet`].
//! * **GSO from one-datagram output**: [`TransmitQueue`] lets the core write datagram after
//!   datagram into one buffer and packs same-destination, same-size runs into GSO sends.
//!
//! `TERN_NO_GSO=1` / `TERN_NO_GRO=1` in the environment turn the offloads off for every
//! socket bound afterwards, so a test suite can run the fallback paths.
//!
//! ```no_run
//! use tern_udp::{RecvBatch, Transmit, UdpConfig, UdpSocket};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let a = UdpSocket::bind("127.0.0.1:0".parse()?, &UdpConfig::default())?;
//! let b = UdpSocket::bind("127.0.0.1:0".parse()?, &UdpConfig::default())?;
//! let payload = vec![7u8; 10 * 1200];
//! // Ten 1200-byte datagrams in one system call (one GSO message when supported).
//! a.send(&[Transmit::segmented(b.local_addr(), &payload, 1200)])?;
//! let mut batch = RecvBatch::default();
//! b.wait_readable(None)?;
//! b.recv_batch(&mut batch)?;
//! for d in batch.datagrams() {
//!     assert_eq!(d.data.len(), 1200);
//! }
//! # Ok(()) }
//! ```
//!
//! Linux only for now: the batch calls and offloads are Linux interfaces.
//!
//! This crate and the drivers are the only places with `unsafe` in tern; all of it is in
//! the private `sys` module, one `// SAFETY:` comment per block.

// The socket layer deals in real time (socket waits, CPU accounting); the determinism
// rules of clippy.toml are for the core and the simulator, and drivers own the real clock.
#![allow(clippy::disallowed_methods)]
#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!("tern-udp supports Linux only (sendmmsg/recvmmsg, UDP GSO/GRO)");

mod batch;
mod config;
mod driver_error;
mod error;
mod queue;
mod set;
mod socket;
mod stream_fate;
mod sys;

pub use batch::{Datagram, GRO_SLOT_LEN, RecvBatch};
pub use config::{DEFAULT_BUFFER, DEFAULT_MAX_GSO_SEGMENTS, PmtuMode, UdpConfig};
pub use driver_error::Error as DriverError;
pub use error::SocketError;
pub use queue::{QueueStats, TransmitQueue};
pub use set::{DEFAULT_MAX_SOCKETS, SocketId, SocketSet};
pub use socket::{
    BufferSizes, GsoOff, GsoState, MAX_BATCH, MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6, RecvMeta,
    Transmit, UdpSocket,
};
pub use stream_fate::StreamFate;

/// CPU time (user + system) consumed so far by this process, all threads included
/// (`getrusage(RUSAGE_SELF)`). Benchmarks and idle-load tests take the difference of two
/// readings.
///
/// # Errors
/// Only if `getrusage` fails, which Linux does not do for `RUSAGE_SELF`.
pub fn process_cpu_time() -> std::io::Result<std::time::Duration> {
    sys::process_cpu_time()
}
