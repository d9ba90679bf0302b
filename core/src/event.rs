//! Events the node reports through `poll_event`. They carry handles, never payloads.

use std::time::Duration;

use crate::identity::PeerId;
use crate::ids::SessionId;

/// Close codes carried by CLOSE frames.
pub mod close_code {
    /// Normal close by the application.
    pub const NORMAL: u64 = 0;
    /// The responder's trust policy does not accept this peer.
    pub const REFUSED: u64 = 1;
    /// The peer's trust was revoked.
    pub const REVOKED: u64 = 2;
    /// The peer violated the protocol.
    pub const PROTOCOL_ERROR: u64 = 3;
    /// Keys ran out (counter or integrity limit); reconnect.
    pub const KEYS_EXHAUSTED: u64 = 4;
}

/// Why a session ended. Every variant is authenticated except the timeouts, which are local
/// observations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// This side called `close` (or revoked trust) with this code.
    Local {
        /// The code sent to the peer.
        code: u64,
    },
    /// The peer closed the session with this code.
    Peer {
        /// The peer's code (see [`close_code`]).
        code: u64,
    },
    /// The peer's trust policy does not accept us; ask it to approve our handshake request.
    Refused,
    /// The responder proved it holds a different key than the one we asked for: the address
    /// belongs to someone else or the directory entry is stale.
    PeerMismatch {
        /// The key we dialed.
        expected: PeerId,
        /// The key that answered.
        actual: PeerId,
    },
    /// No handshake answer before `handshake_timeout`: the peer is offline, unreachable or
    /// UDP is blocked.
    HandshakeTimeout,
    /// Nothing heard from the peer for `idle_timeout`.
    IdleTimeout,
    /// The session's keys reached their use limit; reconnect.
    KeysExhausted,
    /// The peer no longer has this session (it restarted) and said so with a valid stateless
    /// reset; connect again.
    PeerReset,
}

/// Something the application should know about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A session completed its handshake and can carry data.
    SessionEstablished {
        /// The session.
        session: SessionId,
        /// The authenticated peer.
        peer: PeerId,
        /// True if this node dialed.
        initiator: bool,
    },
    /// A session ended; its handle is now stale.
    SessionClosed {
        /// The session.
        session: SessionId,
        /// The peer, if it was ever authenticated.
        peer: Option<PeerId>,
        /// Why.
        reason: CloseReason,
    },
    /// An authenticated peer tried to open a session and was refused by the trust policy.
    IncomingRefused {
        /// Who asked.
        peer: PeerId,
    },
    /// Answer to [`Node::ping`](crate::Node::ping).
    Pong {
        /// The session.
        session: SessionId,
        /// The id `ping` returned.
        id: u64,
        /// Round-trip time.
        rtt: Duration,
    },
    /// The peer opened a stream to a port this node listens on.
    StreamOpened {
        /// The stream.
        stream: crate::stream::StreamId,
        /// The virtual port.
        port: u16,
    },
    /// Bytes (or the end, or a reset) can be read from the stream.
    StreamReadable {
        /// The stream.
        stream: crate::stream::StreamId,
    },
    /// `write` accepts data again after it returned `Blocked`.
    StreamWritable {
        /// The stream.
        stream: crate::stream::StreamId,
    },
    /// Everything written and the FIN were acknowledged by the peer.
    StreamFinished {
        /// The stream.
        stream: crate::stream::StreamId,
    },
    /// The peer abandoned its sending half.
    StreamReset {
        /// The stream.
        stream: crate::stream::StreamId,
        /// The peer's code.
        code: u64,
    },
    /// The peer asked us to stop sending; our sending half was reset.
    StreamStopped {
        /// The stream.
        stream: crate::stream::StreamId,
        /// The peer's code.
        code: u64,
    },
    /// The peer refused a stream we opened: nothing listens on that port there.
    StreamRefused {
        /// The stream (now closed).
        stream: crate::stream::StreamId,
        /// The port we tried.
        port: u16,
    },
    /// More streams may be opened on the session (after `open_stream` returned `Blocked`).
    StreamsAvailable {
        /// The session.
        session: SessionId,
    },
    /// A datagram arrived; take it with `Node::recv_datagram`.
    DatagramReceived {
        /// The session.
        session: SessionId,
    },
    /// The rendezvous server accepted our registration (first time, or after a reconnect
    /// with a changed record); see `Node::rendezvous_status`.
    Registered {
        /// Our overlay address.
        address: crate::Address,
    },
    /// The rendezvous server refused our registration; the reason is the response to
    /// `req_id` (`Node::take_rendezvous_response`), e.g. the hostname is taken.
    RegistrationRefused {
        /// The registration request.
        req_id: u32,
    },
    /// The answer to a `Node::rendezvous_request` arrived.
    RendezvousResponse {
        /// The request.
        req_id: u32,
    },
    /// The rendezvous server sent an unsolicited message (`Node::take_rendezvous_push`).
    RendezvousPush,
    /// The control channel to the rendezvous server dropped; the node reconnects by itself
    /// (`Node::rendezvous_status` says why).
    RendezvousDisconnected,
    /// A connection attempt to the rendezvous server failed; the node retries with backoff.
    /// `RendezvousProblem::Unreachable` means no answer at all: the server is down or UDP is
    /// blocked on the way.
    RendezvousFailed {
        /// Why.
        problem: crate::node::RendezvousProblem,
    },
    /// A rendezvous server told us the address it sees our packets come from (our
    /// reflexive address as seen through that session).
    ObservedAddress {
        /// The session with the server.
        session: SessionId,
        /// Our address as the server sees it.
        addr: std::net::SocketAddr,
    },
    /// The session moved to another path (a new validated address, or between relayed and
    /// direct).
    PathChanged {
        /// The session.
        session: SessionId,
        /// The new path.
        path: crate::session::PathInfo,
    },
}
