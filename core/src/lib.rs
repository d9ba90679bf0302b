//! # tern-core: the sans-IO protocol core of tern
//!
//! A pure state machine: it consumes datagrams and timer ticks and produces datagrams and
//! events. It never touches sockets, threads, clocks, files or the OS random generator, so it
//! runs inside any event loop (the `tern-driver-mio` and `tern-driver-smol` drivers), in the
//! deterministic simulator (`tern-sim`) and under the fuzzer.
//!
//! ## The loop contract
//!
//! One [`Node`] per local UDP endpoint. Every method takes `&mut self`; there is no interior
//! locking. Methods come in four kinds:
//!
//! * **Getters** (`peer_id`, `stats`, `session_info`, …): read state, change nothing.
//! * **Input** (`handle_datagram`, `handle_timeout`, `handle_network_change`): feed what
//!   happened. They never return an error and never panic: malformed, forged, replayed or
//!   unexpected input is counted in [`NodeStats::drops`] by [`DropReason`] and dropped.
//!   `handle_timeout` is idempotent and safe to call early.
//! * **Commands** (`connect`, `close`, `ping`, `set_trusted`, …): what the application wants.
//!   Each returns its own typed, `#[non_exhaustive]` error whose variants say what to do.
//! * **Output** (`poll_transmit`, `poll_event`, `poll_timeout`): drain after every input or
//!   command. After a handshake `poll_timeout` answers the last `now` for a few more calls:
//!   `handle_timeout` then precomputes keys for the next handshake, one bounded piece per
//!   call once every transmit was polled (at most one key pair and a few Diffie-Hellman
//!   operations in all), and the answer becomes a real deadline again.
//!
//! Time is always an argument (`now: Instant`); randomness comes only from the 32-byte seed
//! given to [`Node::new`]. With the same seed and the same inputs, a node produces the same
//! outputs, byte for byte.
//!
//! A driver's loop:
//!
//! ```text
//! loop {
//!     // 1. Drain output: transmits first, then events.
//!     while let Some(t) = node.poll_transmit(now, &mut buf) { socket.send_to(&buf[..t.len], t.dst) }
//!     while let Some(e) = node.poll_event() { app.handle(e) }
//!     // 2. Sleep until a datagram arrives, a command comes in, or the deadline passes.
//!     let deadline = node.poll_timeout();
//!     match wait(deadline) {
//!         Datagram(from, bytes) => node.handle_datagram(now, from, &mut bytes),
//!         Command(c)            => c.apply(&mut node, now),
//!         Timeout               => node.handle_timeout(now),
//!     }
//! }
//! ```
//!
//! Buffers belong to the caller: `handle_datagram` decrypts in place in the slice it is given
//! and `poll_transmit` writes into the slice it is given. Steady-state traffic allocates
//! nothing (a counting-allocator test proves it). Events carry handles ([`SessionId`]),
//! never payloads; handles are generational, so a stale one is an error, never another
//! session.
//!
//! ## Protocol in one paragraph
//!
//! A session starts with a Noise handshake (IK when the peer's key is known, XX otherwise)
//! between X25519 keys derived from each side's Ed25519 identity. Inits are padded to 1200
//! bytes, carry a mac1 keyed by the responder's public key, and under load must echo a
//! stateless cookie before the responder keeps any state. Data packets carry a cleartext
//! header (type with key-phase bit, receiver index, 64-bit counter) and AEAD-protected frames
//! (AES-256-GCM or ChaCha20-Poly1305, negotiated), one key per direction, with a 2048-packet
//! replay window that moves only after authentication and key updates by time and count.
//! See `wire` for the byte layouts.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod cc;
pub mod config;
pub mod crypto;
pub mod datagram;
pub mod error;
pub mod event;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod identity;
pub mod ids;
pub mod io;
pub mod mtu;
pub mod nat;
mod node;
pub mod recovery;
pub mod rendezvous;
pub mod rng;
pub mod session;
pub mod stream;
pub mod time;
pub mod wire;

pub use addr::{Address, AddressParseError, Port};
pub use config::{Config, ConfigError, IncomingPolicy};
pub use crypto::AeadKind;
pub use error::{ConnectError, SessionError};
pub use event::{CloseReason, Event, close_code};
pub use identity::{Identity, PeerId, PeerIdParseError};
pub use ids::SessionId;
pub use io::{RecvMeta, Transmit};
#[cfg(feature = "fuzzing")]
pub use node::PacketHookFn;
pub use node::{
    ListenError, Node, OpenStreamError, REFUSED_PORT_CODE, RelayError, RelayRequest,
    RendezvousConfig, RendezvousError, RendezvousProblem, RendezvousStatus, SendDatagramError,
    SessionInfo, Stream, TransportInfo,
};
pub use session::{
    DropReason, FrameCounts, FrameKind, NodeStats, PathInfo, Route, SessionState, SessionStats,
};
pub use stream::StreamId;
pub use time::TimerKind;
