//! # tern-driver-mio: tern on real UDP sockets, behind a blocking handle
//!
//! [`Endpoint::bind`] starts one event-loop thread that owns a `tern_core::Node`, its UDP
//! socket (from `tern-udp`: batched receives with GRO, GSO sends with run-time fallback) and
//! a `mio::Poll`. The thread reads until the socket would block (a bounded number of
//! batches per cycle), feeds every datagram to the node, drains the node's transmits
//! through a [`tern_udp::TransmitQueue`] (so bulk output leaves as GSO runs), and sleeps in
//! `epoll` until a datagram, a command or the node's next deadline. Nothing spins: with no
//! traffic the thread wakes only for the node's timers (keepalives).
//!
//! The node, the socket and the waiters sit behind one mutex shared by the thread and the
//! handles. A call locks it and performs itself on the calling thread: the core operation
//! (reads copy straight into the caller's buffer, writes straight from it), the events it
//! causes and the datagrams it produces, sent on the socket before the lock is released, so
//! a call that can complete costs no thread hand-off. A call that must wait (nothing to
//! read, a full stream, an accept, a connect, a ping) leaves a reply channel with the
//! driver, and the thread answers it when input lets it go on. The thread is woken (a
//! `mio::Waker`) only when a call moved the node's next deadline earlier or left output
//! unsent; an open or a completed write leaves its frames for the caller's next call, so
//! open + write + finish go out as one datagram. A bounded command channel remains for
//! shutdown. Every handle ([`Endpoint`], [`Session`], [`Stream`], [`Listener`]) is `Send`;
//! [`Endpoint`] and [`Session`] are `Clone`. Calls block the calling thread while they
//! wait, so use them from ordinary threads (not from inside an async runtime;
//! `tern-driver-smol` is the async driver).
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use tern_driver_mio::{Endpoint, EndpointConfig, Identity};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Endpoint::bind("127.0.0.1:0".parse()?, Identity::from_secret([1; 32]),
//!     EndpointConfig::default())?;
//! let listener = server.listen(80)?;
//! let server_id = server.peer_id();
//! let addr = server.local_addr();
//! std::thread::spawn(move || {
//!     while let Ok(mut stream) = listener.accept() {
//!         let mut request = Vec::new();
//!         stream.read_to_end(&mut request).unwrap();
//!         stream.write_all(&request).unwrap();
//!         stream.finish().unwrap();
//!     }
//! });
//!
//! let client = Endpoint::bind("127.0.0.1:0".parse()?, Identity::from_secret([2; 32]),
//!     EndpointConfig::default())?;
//! let session = client.connect(addr, Some(server_id))?;
//! let mut stream = session.open_stream(80)?;
//! stream.write_all(b"hello")?;
//! stream.finish()?;
//! let mut answer = Vec::new();
//! stream.read_to_end(&mut answer)?;
//! assert_eq!(answer, b"hello");
//! # Ok(()) }
//! ```
//!
//! ## Concepts (shared with `tern-driver-smol`, same names)
//!
//! * [`Endpoint`]: one node on one UDP socket. `connect` dials, `accept` takes sessions
//!   peers opened, `listen` opens a [`Listener`] for streams to a virtual port,
//!   `next_event` reports session-level events.
//! * [`Session`]: an authenticated, encrypted session with one peer: `open_stream`,
//!   datagrams, `ping`, `close`, `closed`.
//! * [`Stream`]: a reliable, ordered byte stream (`std::io::Read` + `std::io::Write`);
//!   `finish` ends the sending half. Dropping a stream finishes what was not finished and
//!   stops receiving what was not read.
//!
//! ## Shutdown
//!
//! [`Endpoint::shutdown`] (or dropping the last handle) closes every session (the peers are
//! told), joins the thread and closes the socket. Calls on any handle afterwards return
//! [`Error::EndpointClosed`].

// Drivers own the real clock and the OS randomness: `Instant::now`/`SystemTime::now` are
// allowed here, unlike in the deterministic core (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![warn(missing_docs)]

mod driver;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use tern_core::{
    CloseReason, Config, Event, Identity, NodeStats, PeerId, SessionId, SessionInfo, StreamId,
    close_code,
};
/// Why a driver call failed (shared with the other tern driver).
pub use tern_udp::DriverError as Error;
pub use tern_udp::{GsoState, UdpConfig};

use driver::{Cmd, Reply, Shared, Waiting};

/// Settings of an [`Endpoint`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// The protocol core's settings (timeouts, windows, limits).
    pub node: Config,
    /// Socket settings (buffers, GSO, GRO). Set `udp.gso = false` to force one datagram
    /// per send.
    pub udp: UdpConfig,
    /// Commands queued towards the event loop before callers block (default 1024).
    pub command_queue: usize,
    /// Session-level events kept for [`Endpoint::next_event`]; the oldest is dropped
    /// beyond it (default 1024).
    pub event_queue: usize,
    /// Receive batches (each up to 64 messages) handled per loop cycle before the loop
    /// turns to commands and timers (default 16).
    pub recv_batches_per_cycle: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            node: Config::default(),
            udp: UdpConfig::default(),
            command_queue: 1024,
            event_queue: 1024,
            recv_batches_per_cycle: 16,
        }
    }
}

/// Live state shared by every handle of one endpoint; dropping the last one shuts the
/// event loop down.
struct Inner {
    /// The node, socket and waiters, locked by the loop thread for each cycle and by the
    /// handles for each call.
    shared: Arc<Shared>,
    /// Shutdown, and calls made while this thread already holds the lock (a handle dropped
    /// inside a `with_node` closure): the loop thread performs them.
    tx: SyncSender<Cmd>,
    local: SocketAddr,
    peer_id: PeerId,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    /// Queues `cmd` for the loop thread and wakes it.
    fn send(&self, cmd: Cmd) -> Result<(), Error> {
        if Shared::holding() {
            // The loop needs the lock this thread holds to drain the channel: never block.
            self.tx.try_send(cmd).map_err(|_| Error::EndpointClosed)?;
        } else {
            self.tx.send(cmd).map_err(|_| Error::EndpointClosed)?;
        }
        self.shared.wake()
    }

    /// Performs `cmd` on this thread under the lock (or, if this thread already holds it,
    /// through the loop thread).
    fn exec(&self, cmd: Cmd) -> Result<(), Error> {
        if Shared::holding() {
            return self.send(cmd);
        }
        self.shared.run(|d, _| d.command(cmd))
    }

    /// Performs a call and waits for its answer: at once when it could complete on this
    /// thread, else when the loop's input lets it go on.
    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.exec(make(tx))?;
        rx.recv().map_err(|_| Error::EndpointClosed)
    }

    /// Like [`call`](Self::call) for a call usually followed by another (an open): what it
    /// produces leaves with the next call's output (see `Shared::run_corked`).
    fn call_corked<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let cmd = make(tx);
        if Shared::holding() {
            self.send(cmd)?;
        } else {
            self.shared.run_corked(|d, _| (d.command(cmd), true))?;
        }
        rx.recv().map_err(|_| Error::EndpointClosed)
    }

    /// Queues a call for the loop thread and returns the channel its answer comes on.
    fn call_raw<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Cmd,
    ) -> Result<std::sync::mpsc::Receiver<T>, Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(make(tx))?;
        Ok(rx)
    }

    /// Waits for the answer to a call that had to wait.
    fn wait<T, W>(waiting: Waiting<T, W>) -> Result<Result<T, W>, Error> {
        match waiting {
            Waiting::Done(r) => r.map(Ok),
            Waiting::Wait(rx) => rx.recv().map_err(|_| Error::EndpointClosed)?.map(Err),
        }
    }

    fn shutdown(&self) {
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = self.tx.try_send(Cmd::Shutdown);
            let _ = self.shared.wake();
            let _ = handle.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One tern node on one UDP socket, driven by its own thread. Cheap to clone; every clone
/// (and every [`Session`], [`Stream`] and [`Listener`]) keeps the endpoint alive.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("local", &self.inner.local)
            .field("peer_id", &self.inner.peer_id)
            .finish()
    }
}

impl Endpoint {
    /// Binds a UDP socket to `addr` (port 0 picks one), creates the node with `identity`
    /// and a seed from the OS random generator, and starts the event-loop thread.
    ///
    /// # Errors
    /// [`Error::Socket`] when the address cannot be bound, [`Error::Config`] for an invalid
    /// node configuration, [`Error::Io`] when the poller, the waker, the thread or the OS
    /// random generator cannot be had.
    pub fn bind(
        addr: SocketAddr,
        identity: Identity,
        config: EndpointConfig,
    ) -> Result<Self, Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(config.command_queue.max(1));
        let peer_id = identity.peer_id();
        let (event_loop, shared, local) = driver::Loop::new(addr, identity, &config, rx)?;
        let thread = std::thread::Builder::new()
            .name(format!("tern-mio {local}"))
            .spawn(move || event_loop.run())?;
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                tx,
                local,
                peer_id,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The socket's local address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// This node's identity.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// Dials `addr` and blocks until the session is established. With `peer` the handshake
    /// is Noise IK and only that key may answer; without it (XX) whoever answers is
    /// accepted and reported by [`Session::peer`].
    ///
    /// # Errors
    /// [`Error::SessionClosed`] with the reason when the handshake fails
    /// (`HandshakeTimeout`: the peer is unreachable; `PeerMismatch`: another key answered;
    /// `Refused`: the peer's policy refuses us), [`Error::Connect`] when the core refuses to
    /// start, [`Error::EndpointClosed`] after shutdown.
    pub fn connect(&self, addr: SocketAddr, peer: Option<PeerId>) -> Result<Session, Error> {
        let (id, peer) = self
            .inner
            .call(|reply| Cmd::Connect { addr, peer, reply })??;
        Ok(self.session(id, peer))
    }

    /// Blocks until a peer opens a session to this endpoint and returns it. Sessions are
    /// queued until accepted.
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn accept(&self) -> Result<Session, Error> {
        let (id, peer) = self.inner.call(|reply| Cmd::Accept { reply })?;
        Ok(self.session(id, peer))
    }

    /// Accepts streams that peers open to virtual `port`, from any session, until the
    /// returned [`Listener`] is dropped.
    ///
    /// # Errors
    /// [`Error::Listen`] when the port is already listened on or is the built-in echo port
    /// (7), [`Error::EndpointClosed`] after shutdown.
    pub fn listen(&self, port: u16) -> Result<Listener, Error> {
        self.inner.call(|reply| Cmd::Listen { port, reply })??;
        Ok(Listener {
            endpoint: self.clone(),
            port,
        })
    }

    /// Blocks until the next session-level event: `SessionEstablished`, `SessionClosed`,
    /// `IncomingRefused`, `Pong`, `PathChanged`, `ObservedAddress`. (Stream and datagram
    /// events are consumed by the handles.) At most [`EndpointConfig::event_queue`] are
    /// kept; older ones are dropped.
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn next_event(&self) -> Result<Event, Error> {
        self.inner.call(|reply| Cmd::NextEvent { reply })
    }

    /// Every established or handshaking session the application knows about.
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn sessions(&self) -> Result<Vec<SessionInfo>, Error> {
        self.inner.call(|reply| Cmd::Sessions { reply })
    }

    /// The node's counters (datagrams, bytes, drops by reason).
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn stats(&self) -> Result<NodeStats, Error> {
        self.inner.call(|reply| Cmd::Stats { reply })
    }

    /// Whether the socket segments sends in the kernel (GSO), and if not, why.
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn gso_state(&self) -> Result<GsoState, Error> {
        self.inner.call(|reply| Cmd::GsoState { reply })
    }

    /// Marks `session` (with a rendezvous server) as a relay, so sessions to peers behind
    /// it can be opened with [`connect_relayed`](Self::connect_relayed).
    ///
    /// # Errors
    /// [`Error::UnknownSession`] / [`Error::NotEstablished`], or
    /// [`Error::EndpointClosed`].
    pub fn use_relay(&self, session: &Session) -> Result<(), Error> {
        let id = session.id;
        self.inner.call(|reply| Cmd::UseRelay { id, reply })?
    }

    /// Opens a session to `peer` through the relay session `relay` (see
    /// [`use_relay`](Self::use_relay)) and blocks until it is established.
    ///
    /// # Errors
    /// As [`connect`](Self::connect); [`Error::Connect`] with `NoRelay` when `relay` is not
    /// marked as a relay.
    pub fn connect_relayed(&self, peer: PeerId, relay: &Session) -> Result<Session, Error> {
        let via = relay.id;
        let (id, peer) = self
            .inner
            .call(|reply| Cmd::ConnectRelayed { peer, via, reply })??;
        Ok(self.session(id, peer))
    }

    /// Opens a session to `peer` through the node's rendezvous server (relay-first; the
    /// session moves to a direct path by itself once hole punching succeeds) and blocks until
    /// it is established.
    ///
    /// # Errors
    /// As [`connect`](Self::connect); [`Error::Connect`] with `NoRelay` when no rendezvous
    /// server is configured or its control channel is not up yet.
    pub fn connect_peer(&self, peer: PeerId) -> Result<Session, Error> {
        let (id, peer) = self
            .inner
            .call(|reply| Cmd::ConnectPeer { peer, reply })??;
        Ok(self.session(id, peer))
    }

    /// The latest established session with `peer`, if any (to reuse instead of dialing).
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn session_with(&self, peer: PeerId) -> Result<Option<Session>, Error> {
        let id = self.with_node(move |node, _| node.session_with(&peer))?;
        Ok(id.map(|id| self.session(id, peer)))
    }

    /// Runs `f` with the node and the current time, on the calling thread with the driver
    /// locked, and returns its result: access to every core API the handles do not wrap
    /// (rendezvous requests, trust, status). What `f` makes the node send leaves before this
    /// returns. Keep `f` short: the event loop and every other call wait for it.
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn with_node<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut tern_core::Node, std::time::Instant) -> R + Send + 'static,
    ) -> Result<R, Error> {
        if Shared::holding() {
            // Inside another `with_node` closure: the lock is taken. (As before, the loop
            // thread would have to run it, and it waits for this thread.)
            return Err(Error::EndpointClosed);
        }
        self.inner.shared.run(|d, now| f(&mut d.node, now))
    }

    /// Closes every session (peers are told), stops the event loop, joins its thread and
    /// closes the socket. Idempotent. Blocked calls on other threads return
    /// [`Error::EndpointClosed`].
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    fn session(&self, id: SessionId, peer: PeerId) -> Session {
        Session {
            endpoint: self.clone(),
            id,
            peer,
        }
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

    /// Opens a stream to virtual `port` at the peer, blocking while the peer's stream
    /// limit is reached. The peer learns of it at once; if nothing listens there, the first
    /// read or write afterwards fails with [`Error::Refused`].
    ///
    /// # Errors
    /// [`Error::SessionClosed`] / [`Error::UnknownSession`] when the session is gone,
    /// [`Error::EndpointClosed`].
    pub fn open_stream(&self, port: u16) -> Result<Stream, Error> {
        let session = self.id;
        let id = self.endpoint.inner.call_corked(|reply| Cmd::OpenStream {
            session,
            port,
            reply,
        })??;
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
        let data = data.to_vec();
        self.endpoint.inner.call(|reply| Cmd::SendDatagram {
            session,
            data,
            reply,
        })?
    }

    /// Blocks until a datagram from the peer arrives and returns it.
    ///
    /// # Errors
    /// [`Error::SessionClosed`] when the session ends, [`Error::EndpointClosed`].
    pub fn recv_datagram(&self) -> Result<Vec<u8>, Error> {
        let session = self.id;
        self.endpoint
            .inner
            .call(|reply| Cmd::RecvDatagram { session, reply })?
    }

    /// The largest datagram [`send_datagram`](Self::send_datagram) accepts now (it grows
    /// as path-MTU discovery succeeds).
    ///
    /// # Errors
    /// [`Error::UnknownSession`], [`Error::EndpointClosed`].
    pub fn max_datagram_size(&self) -> Result<usize, Error> {
        let session = self.id;
        self.endpoint
            .inner
            .call(|reply| Cmd::MaxDatagram { session, reply })?
    }

    /// Sends an encrypted ping and blocks until the answer; returns the round-trip time.
    ///
    /// # Errors
    /// [`Error::SessionClosed`] when the session ends first, [`Error::EndpointClosed`].
    pub fn ping(&self) -> Result<Duration, Error> {
        let session = self.id;
        self.endpoint
            .inner
            .call(|reply| Cmd::Ping { session, reply })?
    }

    /// A snapshot of the session: state, path, RTT, cipher, counters.
    ///
    /// # Errors
    /// [`Error::UnknownSession`] once the session is gone, [`Error::EndpointClosed`].
    pub fn info(&self) -> Result<SessionInfo, Error> {
        let session = self.id;
        self.endpoint
            .inner
            .call(|reply| Cmd::Info { session, reply })?
    }

    /// Closes the session with an application `code` (see [`close_code`]); the peer is
    /// told. Pending calls on its streams fail with [`Error::SessionClosed`].
    ///
    /// # Errors
    /// [`Error::UnknownSession`] when it is already gone, [`Error::EndpointClosed`].
    pub fn close(&self, code: u64) -> Result<(), Error> {
        let session = self.id;
        self.endpoint.inner.call(|reply| Cmd::Close {
            session,
            code,
            reply,
        })?
    }

    /// Blocks until the session ends and returns why (`None` when it ended too long ago for
    /// the reason to be remembered).
    ///
    /// # Errors
    /// [`Error::EndpointClosed`].
    pub fn closed(&self) -> Result<Option<CloseReason>, Error> {
        let session = self.id;
        self.endpoint
            .inner
            .call(|reply| Cmd::WaitClosed { session, reply })
    }
}

/// A reliable, ordered, bidirectional byte stream on a session. Implements
/// `std::io::Read` (0 bytes = the peer finished) and `std::io::Write`; the inherent
/// methods return the typed [`Error`] instead.
///
/// Dropping it finishes the sending half if it was not finished or reset, and stops the
/// receiving half if the end was not read.
pub struct Stream {
    endpoint: Endpoint,
    id: StreamId,
    port: u16,
    /// The loop reported the end of the stream: reads return 0 without asking it.
    eof: bool,
    /// Releases the stream when the last clone is dropped.
    _release: Arc<Release>,
}

/// Sends `Release` for a stream once every handle of it is gone.
struct Release {
    endpoint: Endpoint,
    id: StreamId,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = self.endpoint.inner.exec(Cmd::Release { stream: self.id });
    }
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
        let release = Arc::new(Release {
            endpoint: endpoint.clone(),
            id,
        });
        Self {
            endpoint,
            id,
            port,
            eof: false,
            _release: release,
        }
    }

    /// A second handle to the same stream, so one thread can read while another writes
    /// (one pending read and one pending write at a time). The stream is released when the
    /// last handle is dropped.
    pub fn try_clone(&self) -> Stream {
        Stream {
            endpoint: self.endpoint.clone(),
            id: self.id,
            port: self.port,
            eof: self.eof,
            _release: self._release.clone(),
        }
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

    /// Blocks until bytes are available and copies up to `buf.len()` of them; returns 0
    /// once the peer finished and everything was read.
    ///
    /// # Errors
    /// [`Error::Reset`] (the peer abandoned the stream), [`Error::Refused`],
    /// [`Error::SessionClosed`], [`Error::StreamClosed`] (after [`stop`](Self::stop)),
    /// [`Error::EndpointClosed`].
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() || self.eof {
            return Ok(0);
        }
        let stream = self.id;
        let inner = &self.endpoint.inner;
        let waiting = if Shared::holding() {
            let max = buf.len();
            Waiting::Wait(inner.call_raw(|reply| Cmd::Read { stream, max, reply })?)
        } else {
            inner.shared.run(|d, _| d.read_now(stream, buf))?
        };
        let (n, eof) = match Inner::wait(waiting)? {
            Ok(done) => done,
            Err((data, eof)) => {
                buf[..data.len()].copy_from_slice(&data);
                (data.len(), eof)
            }
        };
        self.eof = eof;
        Ok(n)
    }

    /// Blocks until the stream takes some of `data` (flow control and the send buffer
    /// allow) and returns how much it took (≥ 1 for non-empty `data`).
    ///
    /// # Errors
    /// [`Error::Stopped`] (the peer does not want more), [`Error::StreamClosed`] (after
    /// `finish`/`reset`), [`Error::Refused`], [`Error::SessionClosed`],
    /// [`Error::EndpointClosed`].
    pub fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.write_cmd(data, false)
    }

    /// Blocks until the stream took all of `data`. Performed on the calling thread; when
    /// the stream's buffer is full, the rest waits with the driver and the call returns once
    /// acknowledgements have made room for all of it.
    ///
    /// # Errors
    /// As [`write`](Self::write); after an error, an unknown prefix of `data` was taken.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), Error> {
        self.write_cmd(data, true).map(|_| ())
    }

    fn write_cmd(&mut self, data: &[u8], all: bool) -> Result<usize, Error> {
        if data.is_empty() {
            return Ok(0);
        }
        let stream = self.id;
        let inner = &self.endpoint.inner;
        let waiting = if Shared::holding() {
            let data = data.to_vec();
            Waiting::Wait(inner.call_raw(|reply| Cmd::Write {
                stream,
                data,
                all,
                reply,
            })?)
        } else {
            inner.shared.run_corked(|d, _| {
                let w = d.write_now(stream, data, all);
                let cork = matches!(w, Waiting::Done(Ok(_)));
                (w, cork)
            })?
        };
        Ok(Inner::wait(waiting)?.unwrap_or_else(|n| n))
    }

    /// Ends the sending half after everything written (FIN). Returns at once; the bytes
    /// are delivered reliably unless the session ends.
    ///
    /// # Errors
    /// [`Error::StreamClosed`] when already finished or reset, [`Error::Stopped`],
    /// [`Error::SessionClosed`], [`Error::EndpointClosed`].
    pub fn finish(&mut self) -> Result<(), Error> {
        self.simple(driver::StreamOp::Finish)
    }

    /// Abandons the sending half with an application `code`; unsent data is dropped and
    /// the peer's reads fail with [`Error::Reset`].
    ///
    /// # Errors
    /// [`Error::StreamClosed`] when already reset or fully acknowledged,
    /// [`Error::SessionClosed`], [`Error::EndpointClosed`].
    pub fn reset(&mut self, code: u64) -> Result<(), Error> {
        self.simple(driver::StreamOp::Reset(code))
    }

    /// Stops receiving: buffered data is discarded and the peer is asked to stop sending
    /// (its writes fail with [`Error::Stopped`]).
    ///
    /// # Errors
    /// [`Error::StreamClosed`] when already stopped or the end was read,
    /// [`Error::SessionClosed`], [`Error::EndpointClosed`].
    pub fn stop(&mut self, code: u64) -> Result<(), Error> {
        self.simple(driver::StreamOp::Stop(code))
    }

    /// Sets the stream's send priority: higher goes first, equal priorities share
    /// round-robin.
    ///
    /// # Errors
    /// [`Error::StreamClosed`] when the stream is gone, [`Error::EndpointClosed`].
    pub fn set_priority(&mut self, priority: i8) -> Result<(), Error> {
        self.simple(driver::StreamOp::Priority(priority))
    }

    fn simple(&mut self, op: driver::StreamOp) -> Result<(), Error> {
        let stream = self.id;
        self.endpoint
            .inner
            .call(|reply| Cmd::StreamOp { stream, op, reply })?
    }
}

impl io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Stream::read(self, buf).map_err(io::Error::from)
    }
}

impl io::Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Stream::write(self, buf).map_err(io::Error::from)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Stream::write_all(self, buf).map_err(io::Error::from)
    }

    /// Nothing to do: written bytes are already with the event loop, which sends them as
    /// fast as congestion control allows.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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

    /// Blocks until a peer opens a stream to this port and returns it (its session is
    /// [`Stream::session_id`]).
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn accept(&self) -> Result<Stream, Error> {
        let port = self.port;
        let id = self
            .endpoint
            .inner
            .call(|reply| Cmd::AcceptStream { port, reply })??;
        Ok(Stream::new(self.endpoint.clone(), id, port))
    }

    /// Like [`accept`](Self::accept) without blocking: `None` if no stream is waiting.
    ///
    /// # Errors
    /// [`Error::EndpointClosed`] after shutdown.
    pub fn try_accept(&self) -> Result<Option<Stream>, Error> {
        let port = self.port;
        let id = self
            .endpoint
            .inner
            .call(|reply| Cmd::TryAcceptStream { port, reply })??;
        Ok(id.map(|id| Stream::new(self.endpoint.clone(), id, port)))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.endpoint.inner.exec(Cmd::Unlisten { port: self.port });
    }
}
