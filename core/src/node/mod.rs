//! The `Node`: one per local UDP endpoint. It owns every session, the timer heap, the event
//! queue and the stateless-reply queue, and dispatches datagrams by their header. Public
//! methods are thin; the logic lives in `session/` and `accept`.

/// The session context (`Ctx`) over a node's shared fields, borrowed field by field so the
/// caller may hold `slots` (or any other field) at the same time.
macro_rules! ctx {
    ($node:expr) => {
        Ctx {
            identity: &$node.identity,
            keys: &mut $node.keys,
            config: &$node.config,
            rng: &mut $node.rng,
            events: &mut $node.events,
            stats: &mut $node.stats,
            clock: &mut $node.clock,
            relay_in: &mut $node.relay_in,
            nat: &mut $node.nat,
        }
    };
}

mod accept;
mod nat;
mod relay;
mod rendezvous;
mod replies;
mod reset;
mod streams;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::trace;

use crate::config::{Config, ConfigError};
use crate::crypto::cookie::{self, CookieJar};
use crate::crypto::precompute::KeyCache;
use crate::error::{ConnectError, SessionError};
use crate::event::{CloseReason, Event, close_code};
use crate::identity::{Identity, PeerId};
use crate::ids::SessionId;
use crate::io::{RecvMeta, Transmit};
use crate::rng::NodeRng;
use crate::session::handshake::start_initiator;
use crate::session::{
    Ctx, DropReason, HsState, NatLocal, NodeStats, PathInfo, Route, Session, SessionState,
    SessionStats, UnixClock,
};
use crate::time::{TimerHeap, TimerKind};
use crate::wire::header::{self, Header, HeaderError};

pub use relay::{RelayError, RelayQueue, RelayRequest};
pub use rendezvous::{RendezvousConfig, RendezvousError, RendezvousProblem, RendezvousStatus};
use replies::Replies;
#[cfg(feature = "fuzzing")]
pub use streams::PacketHookFn;
pub use streams::{ListenError, OpenStreamError, REFUSED_PORT_CODE, SendDatagramError, Stream};

/// A read-only view of one session, for status displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session.
    pub id: SessionId,
    /// The authenticated peer (once known).
    pub peer: Option<PeerId>,
    /// Where the session is in its life.
    pub state: SessionState,
    /// True if this node dialed.
    pub initiator: bool,
    /// The path the session uses now (a validated address, or a relay).
    pub path: PathInfo,
    /// Smoothed round-trip time, once measured.
    pub rtt: Option<Duration>,
    /// The data AEAD, once negotiated.
    pub aead: Option<crate::crypto::AeadKind>,
    /// Key updates so far.
    pub key_generation: u64,
    /// Counters.
    pub stats: SessionStats,
    /// Reliable-transport state (once established).
    pub transport: Option<TransportInfo>,
}

/// A snapshot of one session's reliable transport: congestion control, loss recovery, PMTU
/// and stream memory (for status displays and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportInfo {
    /// Congestion controller in use.
    pub congestion: crate::cc::CongestionKind,
    /// Congestion window, bytes.
    pub cwnd: u64,
    /// Slow-start threshold (`u64::MAX` before the first loss).
    pub ssthresh: u64,
    /// Bytes in flight (sent, neither acknowledged nor declared lost).
    pub bytes_in_flight: u64,
    /// Smoothed RTT from loss recovery.
    pub srtt: Duration,
    /// Minimum RTT seen.
    pub min_rtt: Duration,
    /// Consecutive probe timeouts.
    pub pto_count: u32,
    /// Packet size in use (discovered path MTU, UDP payload bytes).
    pub mtu: u16,
    /// Packets declared lost so far.
    pub lost_packets: u64,
    /// Bytes of those packets.
    pub lost_bytes: u64,
    /// Stream bytes sent for the first time.
    pub stream_bytes_sent: u64,
    /// Stream bytes sent again after a loss.
    pub stream_bytes_retransmitted: u64,
    /// Streams held (open in at least one direction).
    pub streams: usize,
    /// Bytes written by the application and not yet acknowledged by the peer, all streams.
    pub send_buffered: u64,
    /// Bytes received and not yet read by the application, all streams.
    pub recv_buffered: u64,
}

struct Slot {
    generation: u32,
    /// Deadline last pushed to the heap for this slot.
    scheduled: Option<Instant>,
    /// In the send-ready queue.
    queued: bool,
    /// Counted in `pending` (responder half-open); the initiator's ephemeral key indexes it
    /// in `pending_by_ephemeral`.
    pending: Option<[u8; 32]>,
    /// `(by_peer_epoch, peer)` when `by_peer[peer]` was last seen to name this slot's
    /// session: while the epoch is unchanged the map lookup can be skipped (it would
    /// otherwise run on every packet received).
    by_peer_verified: Option<(u64, PeerId)>,
    session: Option<Session>,
}

/// The sans-IO tern endpoint. See the crate docs for the loop contract.
pub struct Node {
    identity: Identity,
    /// Handshake keys computed off the critical path (see `crypto::precompute`).
    keys: KeyCache,
    config: Config,
    rng: NodeRng,
    clock: UnixClock,
    last_now: Instant,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    by_index: BTreeMap<u32, u32>,
    pending: usize,
    pending_by_ephemeral: BTreeMap<[u8; 32], u32>,
    timers: TimerHeap,
    ready: VecDeque<u32>,
    events: VecDeque<Event>,
    replies: Replies,
    resets: reset::ResetLimiter,
    cookies: CookieJar,
    mac1_key: [u8; 32],
    timestamps: accept::TimestampCache,
    trusted: BTreeSet<PeerId>,
    rate_window: (Instant, u32),
    stats: NodeStats,
    /// RELAY frames received by sessions, processed after each input.
    relay_in: RelayQueue,
    /// Relay server: forwarding requests for `poll_relay`.
    relay_requests: RelayQueue,
    /// Client: sessions used as relays, with the server's key.
    relays: BTreeMap<SessionId, PeerId>,
    /// The latest established session with each peer.
    by_peer: BTreeMap<PeerId, SessionId>,
    /// Bumped on every change to `by_peer` (see `Slot::by_peer_verified`).
    by_peer_epoch: u64,
    /// Scratch space for wrapping relayed datagrams.
    scratch: Vec<u8>,
    /// Ports applications listen on.
    listening: BTreeSet<u16>,
    /// Streams served by the built-in echo.
    echo_streams: BTreeSet<crate::stream::StreamId>,
    /// Scratch space for the echo service and relaying.
    scratch_big: Vec<u8>,
    /// Rendezvous client role.
    rdv_client: Option<rendezvous::ClientRole>,
    /// Rendezvous server role.
    rdv_server: Option<rendezvous::ServerRole>,
    /// Spare event queue (keeps its capacity) for filtering internal events.
    events_spare: VecDeque<Event>,
    /// What we know about our own reachability (for hole punching).
    nat: NatLocal,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.identity.peer_id())
            .field("sessions", &self.live)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Creates a node. `seed` must come from a CSPRNG in production (tests pass fixed seeds);
    /// `unix_now` is the wall-clock time at `now` (used for handshake timestamps and cookie
    /// epochs). Fails only if `config` is invalid; the error names the field.
    pub fn new(
        identity: Identity,
        config: Config,
        seed: [u8; 32],
        now: Instant,
        unix_now: Duration,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut config = config;
        if config.rendezvous_server.is_some() {
            config.relay_server = true;
            config.send_observed_addresses = true;
        }
        let mut rng = NodeRng::new(seed);
        let rdv_client = config
            .rendezvous
            .clone()
            .map(|c| rendezvous::ClientRole::new(c, rng.seed(), now));
        let rdv_server = config
            .rendezvous_server
            .clone()
            .map(|c| rendezvous::ServerRole::new(identity.clone(), c, rng.seed()));
        let mut listening = BTreeSet::new();
        if rdv_server.is_some() {
            listening.insert(crate::rendezvous::channel::RENDEZVOUS_PORT);
        }
        let cookies = CookieJar::new(rng.seed());
        let mac1_key = cookie::mac1_key(&identity.x25519_public());
        let timestamps = accept::TimestampCache::new(config.max_replay_timestamps);
        let config_relay_queue = config.max_relay_queue;
        Ok(Self {
            identity,
            keys: KeyCache::new(),
            config,
            rng,
            clock: UnixClock {
                start: now,
                unix_start: unix_now,
                last_timestamp: 0,
            },
            last_now: now,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            by_index: BTreeMap::new(),
            pending: 0,
            pending_by_ephemeral: BTreeMap::new(),
            timers: TimerHeap::default(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
            replies: Replies::new(),
            resets: reset::ResetLimiter::default(),
            cookies,
            mac1_key,
            timestamps,
            trusted: BTreeSet::new(),
            rate_window: (now, 0),
            stats: NodeStats::default(),
            relay_in: RelayQueue::new(config_relay_queue),
            relay_requests: RelayQueue::new(config_relay_queue),
            relays: BTreeMap::new(),
            by_peer: BTreeMap::new(),
            by_peer_epoch: 1,
            scratch: Vec::with_capacity(2048),
            listening,
            echo_streams: BTreeSet::new(),
            scratch_big: vec![0; 16 << 10],
            rdv_client,
            rdv_server,
            events_spare: VecDeque::new(),
            nat: NatLocal::default(),
        })
    }

    // ---- getters ----

    /// This node's identity.
    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Node-wide counters, including drops by reason.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Sessions currently held (any state).
    pub fn session_count(&self) -> usize {
        self.live
    }

    /// Responder handshakes currently half-open.
    pub fn pending_handshakes(&self) -> usize {
        self.pending
    }

    /// A view of one session, or `None` for a stale handle.
    pub fn session_info(&self, id: SessionId) -> Option<SessionInfo> {
        let s = self.session(id)?;
        Some(SessionInfo {
            id,
            peer: s.peer,
            state: s.state,
            initiator: s.initiator,
            path: match s.route {
                Route::Direct { remote, .. } => PathInfo::Direct(remote),
                Route::Relay { .. } => PathInfo::Relayed {
                    relay: s.relay_peer.unwrap_or(PeerId::from_bytes([0; 32])),
                },
            },
            rtt: s.rtt.smoothed,
            aead: s.keys.as_ref().map(|k| k.kind()),
            key_generation: s.keys.as_ref().map_or(0, |k| k.generation()),
            stats: s.stats,
            transport: s.tp.as_deref().map(|tp| {
                use crate::cc::Controller;
                let cc = tp.recovery.congestion();
                let rtt = tp.recovery.rtt();
                let (lost_packets, lost_bytes) = tp.recovery.lost();
                let (sent, resent) = tp.streams.bytes_sent();
                let (send_buffered, recv_buffered) = tp.streams.buffered_bytes();
                TransportInfo {
                    congestion: tp.recovery.congestion_kind(),
                    cwnd: cc.window(),
                    ssthresh: cc.ssthresh(),
                    bytes_in_flight: tp.recovery.bytes_in_flight(),
                    srtt: rtt.smoothed(),
                    min_rtt: rtt.min(),
                    pto_count: tp.recovery.pto_count(),
                    mtu: tp.mtu.current(),
                    lost_packets,
                    lost_bytes,
                    stream_bytes_sent: sent,
                    stream_bytes_retransmitted: resent,
                    streams: tp.streams.len(),
                    send_buffered,
                    recv_buffered,
                }
            }),
        })
    }

    /// Every session the application knows about, in slot order.
    pub fn sessions(&self) -> impl Iterator<Item = SessionInfo> + '_ {
        self.slots
            .iter()
            .filter_map(|slot| slot.session.as_ref())
            .filter(|s| s.reported && s.state != SessionState::Closed)
            .filter_map(|s| self.session_info(s.id))
    }

    /// Every peer marked trusted, in key order.
    pub fn trusted_peers(&self) -> Vec<PeerId> {
        self.trusted.iter().copied().collect()
    }

    /// Whether `peer` may open sessions to this node under [`IncomingPolicy::TrustedOnly`](crate::IncomingPolicy).
    pub fn is_trusted(&self, peer: &PeerId) -> bool {
        self.trusted.contains(peer)
    }

    // ---- input ----

    /// Processes one received datagram (decrypted in place in `bytes`). Never fails: bad
    /// input is counted in [`Node::stats`] and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &mut [u8]) {
        self.handle_datagram_meta(now, RecvMeta { from, local: None }, bytes);
    }

    /// Like [`Node::handle_datagram`], with the local address it arrived on (nodes with
    /// several sockets).
    pub fn handle_datagram_meta(&mut self, now: Instant, meta: RecvMeta, bytes: &mut [u8]) {
        self.last_now = self.last_now.max(now);
        self.stats.rx_datagrams += 1;
        self.stats.rx_bytes += bytes.len() as u64;
        self.handle_routed(now, Route::direct(meta.from, meta.local), bytes);
        self.drain_relay_in(now);
        self.rdv_process(now);
    }

    /// Dispatches one datagram that arrived over `route` (directly, or unwrapped from a
    /// relay session).
    fn handle_routed(&mut self, now: Instant, route: Route, bytes: &mut [u8]) {
        let header = match header::parse(bytes) {
            Ok(h) => h,
            Err(e) => {
                self.stats.drops.add(match e {
                    HeaderError::UnknownType => DropReason::UnknownType,
                    _ => DropReason::Malformed,
                });
                trace!(?route, error = %e, "undecodable datagram");
                return;
            }
        };
        match header {
            Header::Data {
                key_phase,
                receiver,
                counter,
            } => {
                let Some(slot) = self.slot_for_index(receiver) else {
                    self.send_reset(now, route, receiver, bytes.len());
                    return;
                };
                self.with_session(slot, |s, ctx| {
                    s.handle_data(now, route, key_phase, counter, bytes, ctx)
                });
            }
            Header::Init(init) => {
                self.handle_init(now, route, init, bytes);
            }
            Header::Response { receiver, noise } => {
                let Some(slot) = self.slot_for_index(receiver) else {
                    return;
                };
                self.with_session(slot, |s, ctx| s.on_response(now, noise, ctx));
            }
            Header::Final { receiver, noise } => {
                let Some(slot) = self.slot_for_index(receiver) else {
                    return;
                };
                if let Some(s) = self.slots[slot as usize].session.as_mut() {
                    let mut ctx = ctx!(self);
                    s.on_final(now, route, noise, &self.trusted, &mut ctx);
                }
                self.after_session(slot);
            }
            Header::Cookie { receiver, cookie } => {
                let Some(slot) = self.slot_for_index(receiver) else {
                    return;
                };
                self.with_session(slot, |s, ctx| s.on_cookie(cookie, ctx));
            }
            Header::Reset { index, token } => self.handle_reset(route, index, &token),
            Header::Reject { receiver, reason } => {
                let Some(slot) = self.slot_for_index(receiver) else {
                    return;
                };
                self.with_session(slot, |s, ctx| s.on_reject(now, reason, ctx));
            }
        }
    }

    /// Runs every timer due at `now`. Idempotent and safe to call early.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        // Each due entry is handled once per call: a session that is still due after its
        // turn (it waits for output to be polled) does not spin this loop.
        let mut budget = self.timers.len();
        while let Some((at, slot, generation)) = self.timers.peek() {
            if at > now || budget == 0 {
                break;
            }
            budget -= 1;
            self.timers.pop();
            let live = self.slots.get(slot as usize).is_some_and(|s| {
                s.generation == generation && s.scheduled == Some(at) && s.session.is_some()
            });
            if !live {
                continue;
            }
            self.slots[slot as usize].scheduled = None;
            self.with_session(slot, |s, ctx| s.handle_timeout(now, ctx));
        }
        self.clean_heap_top();
        self.rdv_process(now);
        // Precomputation (next ephemeral key, static-static secrets) only once every queued
        // datagram has been polled, so it never delays a handshake message.
        if self.keys.has_work() && self.ready.is_empty() && self.replies.is_empty() {
            self.keys.do_work(&self.identity, &mut self.rng);
        }
    }

    /// The local network changed (interface up/down, new address; call
    /// [`Node::set_local_addresses`] first with the new sockets): every session sends a PING
    /// at once, so NAT mappings are refreshed and the peer re-validates our path; sessions
    /// on a direct path that have a relay move to it (the direct path most likely died with
    /// the old address) and punch again once our new reflexive address is known; the
    /// rendezvous client re-learns that address from both server addresses.
    pub fn handle_network_change(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        for slot in 0..self.slots.len() as u32 {
            self.with_session(slot, |s, ctx| {
                if s.is_established() {
                    s.on_network_change(now, ctx);
                    s.queue_ping(now, false, ctx.config);
                }
            });
        }
        self.rdv_network_change(now);
        self.rdv_process(now);
    }

    // ---- output ----

    /// Writes at most one datagram into `buf` (at least `max_udp_payload` bytes; 1500 is
    /// always enough) and says where to send it. Call until it returns `None`.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.last_now = self.last_now.max(now);
        loop {
            if let Some((route, len)) = self.replies.pop(buf) {
                if let Some(t) = self.finish_transmit(now, route, len, buf) {
                    return Some(t);
                }
                continue;
            }
            let slot = self.ready.pop_front()?;
            let t = self.with_session_no_ready(slot, |s, ctx| s.poll_transmit(now, buf, ctx));
            match t.flatten() {
                Some((route, len)) => {
                    // It may have more; keep it queued, behind the others (round robin).
                    // Its timers are rescheduled when it runs out of packets (the `None`
                    // arm); until then `poll_timeout` answers "now" anyway, as it is ready.
                    self.ready.push_back(slot);
                    if let Some(t) = self.finish_transmit(now, route, len, buf) {
                        return Some(t);
                    }
                }
                None => {
                    if let Some(s) = self.slots.get_mut(slot as usize) {
                        s.queued = false;
                    }
                    self.after_session_no_ready(slot);
                }
            }
        }
    }

    /// Turns a datagram in `buf[..len]` for `route` into a transmit: as is for a direct
    /// route, wrapped into the relay session's packet for a relayed one.
    fn finish_transmit(
        &mut self,
        now: Instant,
        route: Route,
        len: usize,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let t = match route {
            Route::Direct { remote, local } => Transmit {
                dst: remote,
                src: local,
                len,
                segment_size: None,
            },
            Route::Relay { via, peer } => {
                let mut scratch = std::mem::take(&mut self.scratch);
                scratch.clear();
                scratch.extend_from_slice(&buf[..len]);
                let outer = self
                    .check(via)
                    .ok()
                    .and_then(|slot| {
                        self.with_session(slot, |s, ctx| {
                            s.build_relay_packet(now, buf, peer, &scratch, ctx)
                        })
                    })
                    .flatten();
                self.scratch = scratch;
                match outer {
                    Some((Route::Direct { remote, local }, n)) => Transmit {
                        dst: remote,
                        src: local,
                        len: n,
                        segment_size: None,
                    },
                    _ => {
                        // No usable relay session (or relay over relay): drop.
                        self.stats.drops.add(DropReason::RelayDenied);
                        return None;
                    }
                }
            }
        };
        self.count_tx(&t);
        Some(t)
    }

    /// When `handle_timeout` must next be called: `None` if nothing is scheduled. While
    /// transmits or events are queued, or handshake keys wait to be precomputed, it returns
    /// the last `now` seen. O(1).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.ready.is_empty()
            || !self.events.is_empty()
            || !self.replies.is_empty()
            || self.relay_requests_pending()
            || self.keys.has_work()
        {
            return Some(self.last_now);
        }
        let heap = self.timers.peek().map(|(at, _, _)| at);
        [heap, self.rdv_poll_timeout()].into_iter().flatten().min()
    }

    /// Like [`Node::poll_timeout`], with the kind of timer (for traces and debugging).
    #[must_use]
    pub fn poll_timeout_reason(&self) -> Option<(Instant, TimerKind)> {
        let (at, slot, _) = self.timers.peek()?;
        let kind = self
            .slots
            .get(slot as usize)
            .and_then(|s| s.session.as_ref())
            .and_then(Session::next_timeout_reason)
            .map_or(TimerKind::Idle, |(_, k)| k);
        Some((at, kind))
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- commands ----

    /// Starts a session to `remote`. With `peer` the handshake is Noise IK and only that key
    /// can answer (a different key ends the session with `CloseReason::PeerMismatch`);
    /// without it, Noise XX accepts whoever answers and reports its id in
    /// `Event::SessionEstablished`. Returns at once; watch for `SessionEstablished` or
    /// `SessionClosed`.
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        peer: Option<PeerId>,
    ) -> Result<SessionId, ConnectError> {
        self.connect_from(now, remote, None, peer)
    }

    /// Like [`Node::connect`], sending from a specific local socket.
    pub fn connect_from(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local: Option<SocketAddr>,
        peer: Option<PeerId>,
    ) -> Result<SessionId, ConnectError> {
        self.start_connect(now, Route::direct(remote, local), peer)
    }

    fn start_connect(
        &mut self,
        now: Instant,
        route: Route,
        peer: Option<PeerId>,
    ) -> Result<SessionId, ConnectError> {
        self.last_now = self.last_now.max(now);
        let peer_x25519 = peer.as_ref().and_then(|p| self.keys.peer_x25519(p));
        if let Some(p) = &peer {
            if peer_x25519.is_none() {
                return Err(ConnectError::InvalidPeer);
            }
            if *p == self.identity.peer_id() {
                return Err(ConnectError::SelfConnect);
            }
        }
        if self.live >= self.config.max_sessions {
            return Err(ConnectError::TooManySessions);
        }
        let suite = self.suite_for(peer.as_ref());
        let (slot, id, local_index) = self.alloc_slot();
        let timestamp = self.clock.timestamp(now);
        let mut ctx = ctx!(self);
        let Ok((noise, msg, recipe)) =
            start_initiator(suite, &mut ctx, peer.as_ref(), local_index, timestamp)
        else {
            self.release_slot(slot);
            return Err(ConnectError::InvalidPeer);
        };
        let hs = HsState {
            noise: Some(noise),
            recipe: Some(recipe),
            suite,
            msg,
            cookie: None,
            cookie_uses: 0,
            attempts: 0,
            need_send: true,
            reply_to: None,
            fell_back: false,
            mac1_key: peer_x25519.map(|x| cookie::mac1_key(&x)),
            aead: self.config.aeads[0],
        };
        let mut s = Session::new(id, local_index, true, route, hs, &self.config);
        s.expected_peer = peer;
        s.timers.set(
            TimerKind::HandshakeResend,
            now + self.config.handshake_retransmit,
        );
        s.timers.set(
            TimerKind::HandshakeExpire,
            now + self.config.handshake_timeout,
        );
        self.slots[slot as usize].session = Some(s);
        self.stats.handshakes_initiated += 1;
        self.after_session(slot);
        Ok(id)
    }

    /// Closes a session: the peer is told (CLOSE), `SessionClosed` is reported now, and the
    /// handle becomes stale. Errors only for an unknown handle.
    pub fn close(
        &mut self,
        now: Instant,
        session: SessionId,
        code: u64,
    ) -> Result<(), SessionError> {
        let slot = self.check(session)?;
        self.with_session(slot, |s, ctx| {
            s.close(now, code, CloseReason::Local { code }, ctx)
        });
        Ok(())
    }

    /// Sends an encrypted PING; the answer arrives as `Event::Pong` with the returned id and
    /// the round-trip time. Fails if the session is unknown or not established yet.
    pub fn ping(&mut self, now: Instant, session: SessionId) -> Result<u64, SessionError> {
        let slot = self.check(session)?;
        let s = self.session(session).ok_or(SessionError::UnknownSession)?;
        match s.state {
            SessionState::Established => {}
            SessionState::Closing | SessionState::Draining => return Err(SessionError::Closing),
            _ => return Err(SessionError::NotEstablished),
        }
        self.with_session(slot, |s, ctx| s.queue_ping(now, true, ctx.config))
            .ok_or(SessionError::UnknownSession)
    }

    /// Marks `peer` trusted (it may open sessions under `IncomingPolicy::TrustedOnly`) or
    /// revokes that trust; revoking closes every session with the peer (code `REVOKED`).
    pub fn set_trusted(&mut self, now: Instant, peer: PeerId, trusted: bool) {
        if trusted {
            self.trusted.insert(peer);
            return;
        }
        self.trusted.remove(&peer);
        for slot in 0..self.slots.len() as u32 {
            self.with_session(slot, |s, ctx| {
                if s.peer == Some(peer) {
                    s.close(
                        now,
                        close_code::REVOKED,
                        CloseReason::Local {
                            code: close_code::REVOKED,
                        },
                        ctx,
                    );
                }
            });
        }
    }

    // ---- internals ----

    fn unix_secs(&self, now: Instant) -> u64 {
        self.clock.unix(now).as_secs()
    }

    fn session(&self, id: SessionId) -> Option<&Session> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.session
            .as_ref()
            .filter(|s| s.state != SessionState::Closed)
    }

    fn check(&self, id: SessionId) -> Result<u32, SessionError> {
        self.session(id)
            .filter(|s| s.reported)
            .map(|_| id.index)
            .ok_or(SessionError::UnknownSession)
    }

    fn slot_for_index(&mut self, index: u32) -> Option<u32> {
        let slot = self.by_index.get(&index).copied();
        if slot.is_none() {
            self.stats.drops.add(DropReason::UnknownSession);
        }
        slot
    }

    fn alloc_slot(&mut self) -> (u32, SessionId, u32) {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    scheduled: None,
                    queued: false,
                    pending: None,
                    by_peer_verified: None,
                    session: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let local_index = loop {
            let i = self.rng.u32();
            if i != 0 && !self.by_index.contains_key(&i) {
                break i;
            }
        };
        self.by_index.insert(local_index, slot);
        self.live += 1;
        let generation = self.slots[slot as usize].generation;
        (
            slot,
            SessionId {
                index: slot,
                generation,
            },
            local_index,
        )
    }

    fn release_slot(&mut self, slot: u32) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if let Some(session) = s.session.take() {
            self.by_index.remove(&session.local_index);
            if let Some(peer) = session.peer
                && self.by_peer.get(&peer) == Some(&session.id)
            {
                self.by_peer.remove(&peer);
                self.by_peer_epoch += 1;
            }
            self.relays.remove(&session.id);
            let id = session.id;
            self.echo_streams.retain(|s| s.session() != id);
        } else {
            self.by_index.retain(|_, v| *v != slot);
        }
        s.by_peer_verified = None;
        if let Some(eph) = s.pending.take() {
            self.pending_by_ephemeral.remove(&eph);
            self.pending -= 1;
        }
        s.generation = s.generation.wrapping_add(1);
        s.scheduled = None;
        s.queued = false;
        self.live -= 1;
        self.free.push(slot);
    }

    fn with_session<R>(
        &mut self,
        slot: u32,
        f: impl FnOnce(&mut Session, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let r = self.with_session_no_ready(slot, f);
        self.after_session(slot);
        r
    }

    fn with_session_no_ready<R>(
        &mut self,
        slot: u32,
        f: impl FnOnce(&mut Session, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let s = self.slots.get_mut(slot as usize)?.session.as_mut()?;
        let mut ctx = ctx!(self);
        Some(f(s, &mut ctx))
    }

    /// Bookkeeping after a session changed: reap, pending accounting, timers, send queue.
    fn after_session(&mut self, slot: u32) {
        self.drain_stream_events(slot);
        self.after_session_no_ready(slot);
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if let Some(session) = &s.session
            && !s.queued
            && session.wants_to_send(self.last_now)
        {
            s.queued = true;
            self.ready.push_back(slot);
        }
    }

    fn after_session_no_ready(&mut self, slot: u32) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(session) = s.session.as_ref() else {
            return;
        };
        if session.state == SessionState::Closed {
            self.release_slot(slot);
            self.clean_heap_top();
            return;
        }
        if session.state == SessionState::Established
            && session.reported
            && let Some(peer) = session.peer
            && s.by_peer_verified != Some((self.by_peer_epoch, peer))
        {
            if self.by_peer.get(&peer) != Some(&session.id) {
                self.by_peer.insert(peer, session.id);
                self.by_peer_epoch += 1;
            }
            s.by_peer_verified = Some((self.by_peer_epoch, peer));
        }
        if session.state != SessionState::AwaitConfirm
            && let Some(eph) = s.pending.take()
        {
            self.pending -= 1;
            self.pending_by_ephemeral.remove(&eph);
        }
        // A later deadline keeps the earlier heap entry: the session wakes early once (a
        // spurious `handle_timeout` does nothing) and is rescheduled then. Pushing an entry
        // for every move would cost a heap insertion per packet: the loss-detection and
        // keepalive deadlines move with every packet sent.
        let next = session.next_timeout(self.last_now);
        if let Some(at) = next
            && s.scheduled.is_none_or(|cur| at < cur)
        {
            s.scheduled = Some(at);
            self.timers.push(at, slot, s.generation);
        }
        self.clean_heap_top();
    }

    /// Pops stale entries off the heap top so `poll_timeout` can peek in O(1).
    fn clean_heap_top(&mut self) {
        while let Some((at, slot, generation)) = self.timers.peek() {
            let live = self.slots.get(slot as usize).is_some_and(|s| {
                s.generation == generation && s.scheduled == Some(at) && s.session.is_some()
            });
            if live {
                break;
            }
            self.timers.pop();
        }
    }

    fn count_tx(&mut self, t: &Transmit) {
        self.stats.tx_datagrams += 1;
        self.stats.tx_bytes += t.len as u64;
    }
}
