//! # tern-driver-smol: tern on real UDP sockets for smol / async-io
//!
//! An [`Endpoint`] is one `tern_core::Node` on one UDP socket (from `tern-udp`: batched
//! receives with GRO, GSO sends with run-time fallback). Its [`Driver`] future receives
//! until the socket would block, feeds the node, sends its output through a
//! [`tern_udp::TransmitQueue`] (bulk output leaves as GSO runs), sleeps on an
//! `async_io::Timer` set from the node's `poll_timeout`, and wakes exactly the tasks the
//! node's events concern (wakers are kept per stream and per session). Nothing spins:
//! an idle endpoint wakes only for the node's timers (keepalives).
//!
//! [`Endpoint::bind`] runs the driver on a thread of its own, which works with any
//! executor. [`Endpoint::bind_unspawned`] hands the driver back instead, to spawn on your
//! executor (e.g. on the same thread as the tasks that use the endpoint, which saves a
//! cross-thread wake-up per operation).
//!
//! ```no_run
//! use smol::io::AsyncReadExt;
//! use tern_driver_smol::{Endpoint, EndpointConfig, Identity};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     let lo = "127.0.0.1:0".parse()?;
//!     let server = Endpoint::bind(lo, Identity::from_secret([1; 32]), EndpointConfig::default())?;
//!     let listener = server.listen(80)?;
//!     smol::spawn(async move {
//!         while let Ok(mut stream) = listener.accept().await {
//!             let mut request = Vec::new();
//!             stream.read_to_end(&mut request).await.unwrap();
//!             stream.write_all(&request).await.unwrap();
//!             stream.finish().unwrap();
//!         }
//!     })
//!     .detach();
//!
//!     let client = Endpoint::bind(lo, Identity::from_secret([2; 32]), EndpointConfig::default())?;
//!     let session = client.connect(server.local_addr(), Some(server.peer_id())).await?;
//!     let mut stream = session.open_stream(80).await?;
//!     stream.write_all(b"hello").await?;
//!     stream.finish()?;
//!     let mut answer = Vec::new();
//!     stream.read_to_end(&mut answer).await?;
//!     assert_eq!(answer, b"hello");
//!     Ok(())
//! })
//! # }
//! ```
//!
//! (`smol::io::AsyncReadExt` stands for any crate's extension traits over
//! `futures_io::AsyncRead`/`AsyncWrite`, such as `futures` or `futures-lite`; `write_all`
//! above is the stream's own, typed method.)
//!
//! ## Concepts (shared with `tern-driver-mio`, same names)
//!
//! * [`Endpoint`]: one node on one UDP socket. `connect` dials, `accept` takes sessions
//!   peers opened, `listen` opens a [`Listener`] for streams to a virtual port,
//!   `next_event` reports session-level events.
//! * [`Session`]: an authenticated, encrypted session with one peer: `open_stream`,
//!   datagrams, `ping`, `close`, `closed`.
//! * [`Stream`]: a reliable, ordered byte stream implementing `futures_io::AsyncRead` and
//!   `AsyncWrite` (`close` finishes the sending half). Dropping a stream finishes what was
//!   not finished and stops receiving what was not read.
//!
//! Every future here is cancel-safe in the sense that dropping it loses no data: reads and
//! writes take effect only when they complete, and a dropped `connect` closes the session
//! it started.
//!
//! ## Shutdown
//!
//! [`Endpoint::shutdown`] (or dropping the last handle) closes every session (the peers are
//! told) and ends the driver, which closes the socket. Calls afterwards return
//! [`Error::EndpointClosed`].

// Drivers own the real clock and the OS randomness: `Instant::now`/`SystemTime::now` are
// allowed here, unlike in the deterministic core (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![warn(missing_docs)]

mod driver;
mod state;

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_io::Async;
pub use driver::Driver;
use state::{ConnectSlot, State, StreamState, park};
pub use tern_core::{
    CloseReason, Config, Event, Identity, NodeStats, PeerId, SessionId, SessionInfo, StreamId,
    close_code,
};
use tern_core::{Node, OpenStreamError, SessionError};
/// Why a driver call failed (shared with the other tern driver).
pub use tern_udp::DriverError as Error;
pub use tern_udp::{GsoState, UdpConfig};
use tern_udp::{SocketSet, UdpSocket};

/// Settings of an [`Endpoint`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// The protocol core's settings (timeouts, windows, limits).
    pub node: Config,
    /// Socket settings (buffers, GSO, GRO). Set `udp.gso = false` to force one datagram
    /// per send.
    pub udp: UdpConfig,
    /// Session-level events kept for [`Endpoint::next_event`]; the oldest is dropped
    /// beyond it (default 1024).
    pub event_queue: usize,
    /// Receive batches (each up to 64 messages) handled per driver round before it turns
    /// to timers and output (default 16).
    pub recv_batches_per_cycle: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            node: Config::default(),
            udp: UdpConfig::default(),
            event_queue: 1024,
            recv_batches_per_cycle: 16,
        }
    }
}

/// What the driver and the handles share.
pub(crate) struct Shared {
    state: Mutex<State>,
    socket: Arc<Async<UdpSocket>>,
    local: SocketAddr,
    peer_id: PeerId,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the node in an unknown state; carrying on
        // with it is still better than poisoning every handle.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state, wakes the driver if the node now has work, and wakes (after
    /// unlocking) whoever `f` made ready.
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.lock();
        let r = f(&mut st);
        st.after_app();
        let wake = std::mem::take(&mut st.to_wake);
        drop(st);
        for w in wake {
            w.wake();
        }
        r
    }

    fn stop(&self) {
        self.with(|st| {
            st.stopping = true;
            if let Some(d) = st.driver.clone() {
                st.to_wake.push(d);
            }
        });
    }
}

/// The handles' side of an endpoint; dropping the last one stops the driver.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// One tern node on one UDP socket. Cheap to clone; every clone (and every [`Session`],
/// [`Stream`] and [`Listener`]) keeps the endpoint alive.
#[derive(Clone)]
pub struct Endpoint {
    handle: Arc<Handle>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("local", &self.handle.shared.local)
            .field("peer_id", &self.handle.shared.peer_id)
            .finish()
    }
}

impl Endpoint {
    /// Binds a UDP socket to `addr` (port 0 picks one), creates the node with `identity`
    /// and a seed from the OS random generator, and runs the driver on a thread of its own
    /// (`async_io::block_on`), so the endpoint works whatever executor the caller uses.
    ///
    /// # Errors
    /// [`Error::Socket`] when the address cannot be bound, [`Error::Config`] for an invalid
    /// node configuration, [`Error::Io`] when the reactor registration, the thread or the
    /// OS random generator cannot be had.
    pub fn bind(
        addr: SocketAddr,
        identity: Identity,
        config: EndpointConfig,
    ) -> Result<Self, Error> {
        let (endpoint, driver) = Self::bind_unspawned(addr, identity, config)?;
        std::thread::Builder::new()
            .name(format!("tern-smol {}", endpoint.local_addr()))
            .spawn(move || async_io::block_on(driver))?;
        Ok(endpoint)
    }

    /// Like [`bind`](Self::bind), but returns the [`Driver`] future instead of running it:
    /// spawn it on your executor (`smol::spawn(driver).detach()`, or a local executor on
    /// the thread that uses the endpoint). Nothing happens until it is polled.
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub fn bind_unspawned(
        addr: SocketAddr,
        identity: Identity,
        config: EndpointConfig,
    ) -> Result<(Self, Driver), Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::Io(io::Error::other(e)))?;
        let peer_id = identity.peer_id();
        let node = Node::new(
            identity,
            config.node.clone(),
            seed,
            Instant::now(),
            unix_now(),
        )?;
        let mut set = SocketSet::new(1);
        let id = set.bind(addr, &config.udp)?;
        let socket = set.remove(id).expect("just bound");
        let local = socket.local_addr();
        let socket = Arc::new(Async::new_nonblocking(socket)?);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(node, config.event_queue)),
            socket: socket.clone(),
            local,
            peer_id,
        });
        let max_datagram = usize::from(config.node.max_udp_payload)
            .max(usize::from(config.node.transport.max_mtu))
            .max(1500);
        let driver = Driver::new(
            shared.clone(),
            socket,
            max_datagram,
            config.recv_batches_per_cycle,
        );
        Ok((
            Self {
                handle: Arc::new(Handle { shared }),
            },
            driver,
        ))
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The socket's local address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared().local
    }

    /// This node's identity.
    pub fn peer_id(&self) -> PeerId {
        self.shared().peer_id
    }

    /// Dials `addr` and completes when the session is established. With `peer` the
    /// handshake is Noise IK and only that key may answer; without it (XX) whoever answers
    /// is accepted and reported by [`Session::peer`]. Dropping the future closes the
    /// half-made session.
    ///
    /// # Errors
    /// [`Error::SessionClosed`] with the reason when the handshake fails
    /// (`HandshakeTimeout`: the peer is unreachable; `PeerMismatch`: another key answered;
    /// `Refused`: the peer's policy refuses us), [`Error::Connect`] when the core refuses to
    /// start, [`Error::EndpointClosed`] after shutdown.
    pub async fn connect(&self, addr: SocketAddr, peer: Option<PeerId>) -> Result<Session, Error> {
        let id = self.shared().with(|st| {
            st.check()?;
            let id = st.node.connect(Instant::now(), addr, peer)?;
            st.connecting.insert(id, ConnectSlot::default());
            Ok::<_, Error>(id)
        })?;
        self.finish_connect(id).await
    }

    /// Opens a session to `peer` through the relay session `relay` (see
    /// [`use_relay`](Self::use_relay)) and completes when it is established.
    ///
    /// # Errors
    /// As [`connect`](Self::connect); [`Error::Connect`] with `NoRelay` when `relay` is not
    /// marked as a relay.
    pub async fn connect_relayed(&self, peer: PeerId, relay: &Session) -> Result<Session, Error> {
        let via = relay.id;
        let id = self.shared().with(|st| {
            st.check()?;
            let id = st.node.connect_relayed(Instant::now(), peer, via)?;
            st.connecting.insert(id, ConnectSlot::default());
            Ok::<_, Error>(id)
        })?;
        self.finish_connect(id).await
    }

    /// Opens a session to `peer` through the node's rendezvous server (relay-first; the
    /// session moves to a direct path by itself once hole punching succeeds) and completes
    /// when it is established.
    ///
    /// # Errors
    /// As [`connect`](Self::connect); [`Error::Connect`] with `NoRelay` when no rendezvous
    /// server is configured or its control channel is not up yet.
    pub async fn connect_peer(&self, peer: PeerId) -> Result<Session, Error> {
        let id = self.shared().with(|st| {
            st.check()?;
            let id = st.node.connect_peer(Instant::now(), peer)?;
            st.connecting.insert(id, ConnectSlot::default());
            Ok::<_, Error>(id)
        })?;
        self.finish_connect(id).await
    }

    /// The latest established session with `peer`, if any (to reuse instead of dialing).
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn session_with(&self, peer: PeerId) -> Result<Option<Session>, Error> {
        let id = self.with_node(|node, _| node.session_with(&peer))?;
        Ok(id.map(|id| self.session(id, peer)))
    }

    /// Runs `f` with the node and the current time and returns its result: access to every
    /// core API the handles do not wrap (rendezvous requests, trust, status). The driver is
    /// woken afterwards if `f` gave the node something to do.
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn with_node<R>(&self, f: impl FnOnce(&mut Node, Instant) -> R) -> Result<R, Error> {
        self.shared().with(|st| {
            st.check()?;
            Ok(f(&mut st.node, Instant::now()))
        })
    }

    async fn finish_connect(&self, id: SessionId) -> Result<Session, Error> {
        /// Closes the session if the connect future is dropped before it completes.
        struct Guard<'a> {
            shared: &'a Shared,
            id: SessionId,
            armed: bool,
        }
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                if self.armed {
                    let id = self.id;
                    self.shared.with(|st| {
                        st.connecting.remove(&id);
                        let _ = st.node.close(Instant::now(), id, close_code::NORMAL);
                    });
                }
            }
        }
        let mut guard = Guard {
            shared: self.shared(),
            id,
            armed: true,
        };
        let r = poll_fn(|cx| {
            self.shared().with(|st| {
                st.check()?;
                let Some(slot) = st.connecting.get_mut(&id) else {
                    return Poll::Ready(Err(Error::UnknownSession));
                };
                match slot.result.take() {
                    Some(r) => {
                        st.connecting.remove(&id);
                        Poll::Ready(r)
                    }
                    None => {
                        slot.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            })
        })
        .await;
        guard.armed = false;
        r.map(|peer| self.session(id, peer))
    }

    /// Completes when a peer opens a session to this endpoint. Sessions are queued until
    /// accepted.
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub async fn accept(&self) -> Result<Session, Error> {
        let (id, peer) = poll_fn(|cx| {
            self.shared().with(|st| {
                st.check()?;
                match st.incoming.pop_front() {
                    Some(s) => Poll::Ready(Ok::<_, Error>(s)),
                    None => {
                        park(&mut st.accepting, cx);
                        Poll::Pending
                    }
                }
            })
        })
        .await?;
        Ok(self.session(id, peer))
    }

    /// Accepts streams that peers open to virtual `port`, from any session, until the
    /// returned [`Listener`] is dropped.
    ///
    /// # Errors
    /// [`Error::Listen`] when the port is already listened on or is the built-in echo port
    /// (7), [`Error::EndpointClosed`] after shutdown.
    pub fn listen(&self, port: u16) -> Result<Listener, Error> {
        self.shared().with(|st| {
            st.check()?;
            st.node.listen(port)?;
            st.listeners.insert(port, Default::default());
            Ok::<_, Error>(())
        })?;
        Ok(Listener {
            endpoint: self.clone(),
            port,
        })
    }

    /// The next session-level event: `SessionEstablished`, `SessionClosed`,
    /// `IncomingRefused`, `Pong`, `PathChanged`, `ObservedAddress`. (Stream and datagram
    /// events are consumed by the handles.) At most [`EndpointConfig::event_queue`] are
    /// kept; older ones are dropped.
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub async fn next_event(&self) -> Result<Event, Error> {
        poll_fn(|cx| {
            self.shared().with(|st| {
                st.check()?;
                match st.events.pop_front() {
                    Some(ev) => Poll::Ready(Ok(ev)),
                    None => {
                        park(&mut st.event_wakers, cx);
                        Poll::Pending
                    }
                }
            })
        })
        .await
    }

    /// Every established or handshaking session the application knows about.
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn sessions(&self) -> Result<Vec<SessionInfo>, Error> {
        self.shared().with(|st| {
            st.check()?;
            Ok(st.node.sessions().collect())
        })
    }

    /// The node's counters (datagrams, bytes, drops by reason).
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn stats(&self) -> Result<NodeStats, Error> {
        self.shared().with(|st| {
            st.check()?;
            Ok(*st.node.stats())
        })
    }

    /// Whether the socket segments sends in the kernel (GSO), and if not, why.
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn gso_state(&self) -> Result<GsoState, Error> {
        self.shared().with(|st| st.check())?;
        Ok(self.shared().socket.get_ref().gso_state())
    }

    /// Marks `session` (with a rendezvous server) as a relay, so sessions to peers behind
    /// it can be opened with [`connect_relayed`](Self::connect_relayed).
    ///
    /// # Errors
    /// [`Error::UnknownSession`] / [`Error::NotEstablished`] / [`Error::SessionClosed`],
    /// [`Error::EndpointClosed`].
    pub fn use_relay(&self, session: &Session) -> Result<(), Error> {
        let id = session.id;
        self.shared().with(|st| {
            st.check()?;
            if let Some(e) = st.dead(id) {
                return Err(e);
            }
            st.node.use_relay(id).map_err(|e| session_error(st, id, e))
        })
    }

    /// Closes every session (peers are told) and completes when the driver has finished
    /// and closed the socket. Idempotent. Waiting calls on other tasks return
    /// [`Error::EndpointClosed`]. (With [`bind_unspawned`](Self::bind_unspawned), the driver
    /// must be polled for this to complete.)
    pub async fn shutdown(&self) {
        self.shared().stop();
        poll_fn(|cx| {
            self.shared().with(|st| {
                if st.done {
                    Poll::Ready(())
                } else {
                    park(&mut st.done_wakers, cx);
                    Poll::Pending
                }
            })
        })
        .await;
    }

    fn session(&self, id: SessionId, peer: PeerId) -> Session {
        Session {
            endpoint: self.clone(),
            id,
            peer,
        }
    }
}

fn session_error(st: &State, id: SessionId, e: SessionError) -> Error {
    match e {
        SessionError::NotEstablished => Error::NotEstablished,
        _ => st.session_error(id),
    }
}

/// An established session with one peer. Cheap to clone; the session lives until
/// [`close`](Self::close), the peer closes it, or it times out (dropping handles does not
/// close it).
#[derive(Clone)]
pub struct Session {
    endpoint: Endpoint,
    id: SessionId,
    peer: PeerId,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .finish()
    }
}

impl Session {
    /// The core's handle of this session.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The authenticated peer.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The endpoint this session belongs to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn shared(&self) -> &Shared {
        self.endpoint.shared()
    }

    /// Opens a stream to virtual `port` at the peer, waiting while the peer's stream
    /// limit is reached. The peer learns of it at once; if nothing listens there, the first
    /// read or write afterwards fails with [`Error::Refused`].
    ///
    /// # Errors
    /// [`Error::SessionClosed`] / [`Error::UnknownSession`] when the session is gone,
    /// [`Error::EndpointClosed`].
    pub async fn open_stream(&self, port: u16) -> Result<Stream, Error> {
        let session = self.id;
        let id = poll_fn(|cx| {
            self.shared().with(|st| {
                st.check()?;
                if let Some(e) = st.dead(session) {
                    return Poll::Ready(Err(e));
                }
                match st.node.open_stream(session, port) {
                    Ok(id) => {
                        st.streams.insert(id, StreamState::new(port, true));
                        Poll::Ready(Ok(id))
                    }
                    Err(OpenStreamError::Blocked) => {
                        park(&mut st.sessions.entry(session).or_default().open, cx);
                        Poll::Pending
                    }
                    Err(OpenStreamError::NotEstablished) => Poll::Ready(Err(Error::NotEstablished)),
                    Err(_) => Poll::Ready(Err(st.session_error(session))),
                }
            })
        })
        .await?;
        Ok(Stream::new(self.endpoint.clone(), id, port))
    }

    /// Queues an unreliable datagram (delivered at most once, maybe not at all; the oldest
    /// queued ones are dropped when the send queue overflows).
    ///
    /// # Errors
    /// [`Error::Datagram`] with `TooLarge` above [`max_datagram_size`](Self::max_datagram_size)
    /// (split it or use a stream), [`Error::SessionClosed`] / [`Error::UnknownSession`],
    /// [`Error::EndpointClosed`].
    pub fn send_datagram(&self, data: &[u8]) -> Result<(), Error> {
        let session = self.id;
        self.shared().with(|st| {
            st.check()?;
            if let Some(e) = st.dead(session) {
                return Err(e);
            }
            st.node.send_datagram(session, data).map_err(|e| match e {
                tern_core::SendDatagramError::UnknownSession => st.session_error(session),
                e => Error::Datagram(e),
            })
        })
    }

    /// Completes with the next datagram from the peer.
    ///
    /// # Errors
    /// [`Error::SessionClosed`] when the session ends, [`Error::EndpointClosed`].
    pub async fn recv_datagram(&self) -> Result<Vec<u8>, Error> {
        let session = self.id;
        poll_fn(|cx| {
            self.shared().with(|st| {
                st.check()?;
                if let Some(e) = st.dead(session) {
                    return Poll::Ready(Err(e));
                }
                let State { node, scratch, .. } = st;
                if let Some(n) = node.recv_datagram(session, scratch) {
                    return Poll::Ready(Ok(scratch[..n].to_vec()));
                }
                if st.node.session_info(session).is_none() {
                    return Poll::Ready(Err(st.session_error(session)));
                }
                park(&mut st.sessions.entry(session).or_default().datagrams, cx);
                Poll::Pending
            })
        })
        .await
    }

    /// The largest datagram [`send_datagram`](Self::send_datagram) accepts now (it grows
    /// as path-MTU discovery succeeds).
    ///
    /// # Errors
    /// [`Error::SessionClosed`] / [`Error::UnknownSession`], [`Error::EndpointClosed`].
    pub fn max_datagram_size(&self) -> Result<usize, Error> {
        let session = self.id;
        self.shared().with(|st| {
            st.check()?;
            st.node
                .max_datagram_size(session)
                .ok_or_else(|| st.session_error(session))
        })
    }

    /// Sends an encrypted ping and completes with the round-trip time.
    ///
    /// # Errors
    /// [`Error::SessionClosed`] when the session ends first, [`Error::EndpointClosed`].
    pub async fn ping(&self) -> Result<Duration, Error> {
        let session = self.id;
        let id = self.shared().with(|st| {
            st.check()?;
            if let Some(e) = st.dead(session) {
                return Err(e);
            }
            let id = st
                .node
                .ping(Instant::now(), session)
                .map_err(|e| session_error(st, session, e))?;
            st.sessions
                .entry(session)
                .or_default()
                .pings
                .insert(id, (None, None));
            Ok(id)
        })?;
        poll_fn(|cx| {
            self.shared().with(|st| {
                st.check()?;
                if let Some(e) = st.dead(session) {
                    return Poll::Ready(Err(e));
                }
                let Some(s) = st.sessions.get_mut(&session) else {
                    return Poll::Ready(Err(st.session_error(session)));
                };
                let Some(slot) = s.pings.get_mut(&id) else {
                    return Poll::Ready(Err(Error::UnknownSession));
                };
                match slot.0 {
                    Some(rtt) => {
                        s.pings.remove(&id);
                        Poll::Ready(Ok(rtt))
                    }
                    None => {
                        slot.1 = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            })
        })
        .await
    }

    /// A snapshot of the session: state, path, RTT, cipher, counters.
    ///
    /// # Errors
    /// [`Error::SessionClosed`] / [`Error::UnknownSession`] once the session is gone,
    /// [`Error::EndpointClosed`].
    pub fn info(&self) -> Result<SessionInfo, Error> {
        let session = self.id;
        self.shared().with(|st| {
            st.check()?;
            if let Some(e) = st.dead(session) {
                return Err(e);
            }
            st.node
                .session_info(session)
                .ok_or_else(|| st.session_error(session))
        })
    }

    /// Closes the session with an application `code` (see [`close_code`]); the peer is
    /// told. Pending calls on its streams fail with [`Error::SessionClosed`].
    ///
    /// # Errors
    /// [`Error::SessionClosed`] / [`Error::UnknownSession`] when it is already gone,
    /// [`Error::EndpointClosed`].
    pub fn close(&self, code: u64) -> Result<(), Error> {
        let session = self.id;
        self.shared().with(|st| {
            st.check()?;
            if let Some(e) = st.dead(session) {
                return Err(e);
            }
            st.node
                .close(Instant::now(), session, code)
                .map_err(|e| session_error(st, session, e))
        })
    }

    /// Completes when the session ends, with why (`None` when it ended too long ago for the
    /// reason to be remembered).
    ///
    /// # Errors
    /// [`Error::EndpointClosed`].
    pub async fn closed(&self) -> Result<Option<CloseReason>, Error> {
        let session = self.id;
        poll_fn(|cx| {
            self.shared().with(|st| {
                if let Some(r) = st.closed_reason(session) {
                    return Poll::Ready(Ok(Some(r)));
                }
                st.check()?;
                if st.node.session_info(session).is_none() {
                    return Poll::Ready(Ok(None));
                }
                park(&mut st.sessions.entry(session).or_default().closing, cx);
                Poll::Pending
            })
        })
        .await
    }
}

/// A reliable, ordered, bidirectional byte stream on a session. Implements
/// `futures_io::AsyncRead` (0 bytes = the peer finished) and `AsyncWrite` (`poll_close`
/// finishes the sending half); the inherent async methods return the typed [`Error`].
///
/// Dropping it finishes the sending half if it was not finished or reset, and stops the
/// receiving half if the end was not read.
pub struct Stream {
    endpoint: Endpoint,
    id: StreamId,
    port: u16,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("port", &self.port)
            .finish()
    }
}

impl Stream {
    fn new(endpoint: Endpoint, id: StreamId, port: u16) -> Self {
        Self { endpoint, id, port }
    }

    fn shared(&self) -> &Shared {
        self.endpoint.shared()
    }

    /// The core's handle of this stream.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// The session the stream belongs to.
    pub fn session_id(&self) -> SessionId {
        self.id.session()
    }

    /// The virtual port the stream was opened to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Reads up to `buf.len()` bytes once some are available; 0 once the peer finished
    /// and everything was read.
    ///
    /// # Errors
    /// [`Error::Reset`] (the peer abandoned the stream), [`Error::Refused`],
    /// [`Error::SessionClosed`], [`Error::StreamClosed`] (after [`stop`](Self::stop)),
    /// [`Error::EndpointClosed`].
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let id = self.id;
        poll_fn(|cx| self.shared().with(|st| st.poll_read(cx, id, buf))).await
    }

    /// Writes some of `data` once the stream takes any (flow control and the send buffer
    /// allow) and returns how much (≥ 1 for non-empty `data`).
    ///
    /// # Errors
    /// [`Error::Stopped`] (the peer does not want more), [`Error::StreamClosed`] (after
    /// `finish`/`reset`), [`Error::Refused`], [`Error::SessionClosed`],
    /// [`Error::EndpointClosed`].
    pub async fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        let id = self.id;
        poll_fn(|cx| self.shared().with(|st| st.poll_write(cx, id, data))).await
    }

    /// Writes all of `data`.
    ///
    /// # Errors
    /// As [`write`](Self::write); after an error, an unknown prefix of `data` was taken.
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let n = self.write(data).await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Ends the sending half after everything written (FIN). Returns at once; the bytes
    /// are delivered reliably unless the session ends.
    ///
    /// # Errors
    /// [`Error::StreamClosed`] when already finished or reset, [`Error::Stopped`],
    /// [`Error::SessionClosed`], [`Error::EndpointClosed`].
    pub fn finish(&mut self) -> Result<(), Error> {
        let id = self.id;
        self.shared().with(|st| st.stream_op(id, |s| s.finish()))
    }

    /// Abandons the sending half with an application `code`; unsent data is dropped and
    /// the peer's reads fail with [`Error::Reset`].
    ///
    /// # Errors
    /// [`Error::StreamClosed`] when already reset or fully acknowledged,
    /// [`Error::SessionClosed`], [`Error::EndpointClosed`].
    pub fn reset(&mut self, code: u64) -> Result<(), Error> {
        let id = self.id;
        self.shared().with(|st| st.stream_op(id, |s| s.reset(code)))
    }

    /// Stops receiving: buffered data is discarded and the peer is asked to stop sending
    /// (its writes fail with [`Error::Stopped`]).
    ///
    /// # Errors
    /// [`Error::StreamClosed`] when already stopped or the end was read,
    /// [`Error::SessionClosed`], [`Error::EndpointClosed`].
    pub fn stop(&mut self, code: u64) -> Result<(), Error> {
        let id = self.id;
        self.shared().with(|st| st.stream_op(id, |s| s.stop(code)))
    }

    /// Sets the stream's send priority: higher goes first, equal priorities share
    /// round-robin.
    ///
    /// # Errors
    /// [`Error::StreamClosed`] when the stream is gone, [`Error::EndpointClosed`].
    pub fn set_priority(&mut self, priority: i8) -> Result<(), Error> {
        let id = self.id;
        self.shared()
            .with(|st| st.stream_op(id, |s| s.set_priority(priority)))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let id = self.id;
        self.shared().with(|st| st.release(id));
    }
}

impl futures_io::AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let id = self.id;
        self.shared()
            .with(|st| st.poll_read(cx, id, buf))
            .map_err(io::Error::from)
    }
}

impl futures_io::AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let id = self.id;
        self.shared()
            .with(|st| st.poll_write(cx, id, buf))
            .map_err(io::Error::from)
    }

    /// Ready at once: written bytes are already with the node, which sends them as fast
    /// as congestion control allows.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Finishes the sending half (no-op if already finished).
    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = match self.finish() {
            Ok(()) | Err(Error::StreamClosed) => Ok(()),
            Err(e) => Err(e.into()),
        };
        Poll::Ready(r)
    }
}

/// Streams peers open to one virtual port, from any session. Dropping it stops listening;
/// streams that arrived but were not accepted are refused.
pub struct Listener {
    endpoint: Endpoint,
    port: u16,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("port", &self.port)
            .finish()
    }
}

impl Listener {
    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Completes when a peer opens a stream to this port (its session is
    /// [`Stream::session_id`]).
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub async fn accept(&self) -> Result<Stream, Error> {
        let port = self.port;
        let id = poll_fn(|cx| {
            self.endpoint.shared().with(|st| {
                st.check()?;
                if let Some(id) = st.accept_stream(port) {
                    return Poll::Ready(Ok(id));
                }
                match st.listeners.get_mut(&port) {
                    Some(l) => {
                        park(&mut l.wakers, cx);
                        Poll::Pending
                    }
                    None => Poll::Ready(Err(Error::EndpointClosed)),
                }
            })
        })
        .await?;
        Ok(Stream::new(self.endpoint.clone(), id, port))
    }
}

impl Listener {
    /// Like [`accept`](Self::accept) without waiting: `None` if no stream is queued.
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn try_accept(&self) -> Result<Option<Stream>, Error> {
        let port = self.port;
        let id = self.endpoint.shared().with(|st| {
            st.check()?;
            Ok::<_, Error>(st.accept_stream(port))
        })?;
        Ok(id.map(|id| Stream::new(self.endpoint.clone(), id, port)))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let port = self.port;
        self.endpoint.shared().with(|st| st.unlisten(port));
    }
}
