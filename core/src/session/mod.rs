//! One session with one peer: handshake progress, keys, replay window, active path and its
//! validation, control frames and timers.
//!
//! Lifecycle: `InitSent` (initiator) or `AwaitConfirm` (responder) → `Established` →
//! `Closing` (we sent CLOSE) or `Draining` (peer sent CLOSE) → `Closed` (removed).
//! A responder keeps its half-open state only after the initiator was authenticated (IK) or
//! its address validated (cookie), and only up to `max_pending_handshakes`; it reports the
//! session to the application only once the initiator proved it holds the keys (first
//! authenticated data packet, or XX message 3), so a replayed init never creates a session.

pub(crate) mod handshake;
mod path;
mod punch;
pub mod stats;
mod transmit;
pub(crate) mod transport;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::trace;

use crate::config::Config;
use crate::crypto::AeadKind;
use crate::crypto::handshake::{Handshake, Recipe, Suite};
use crate::crypto::keys::{Opened, SessionKeys};
use crate::crypto::replay::ReplayWindow;
use crate::event::{CloseReason, Event, close_code};
use crate::identity::{Identity, PeerId};
use crate::ids::SessionId;
use crate::rng::NodeRng;
use crate::time::{TimerKind, TimerTable, earliest};
use crate::wire::frame::{Frame, frames};
use crate::wire::header::{DATA_HEADER_LEN, TAG_LEN};

pub use path::{PathInfo, PathProbe, RELAY_OVERHEAD, Route};
pub use punch::NatLocal;
pub use stats::{DropReason, FrameCounts, FrameKind, NodeStats, SessionStats};

/// Shared node state a session needs while handling input or building output.
pub(crate) struct Ctx<'a> {
    pub identity: &'a Identity,
    /// Precomputed handshake keys (peer key memo, spare ephemeral).
    pub keys: &'a mut crate::crypto::precompute::KeyCache,
    pub config: &'a Config,
    pub rng: &'a mut NodeRng,
    pub events: &'a mut VecDeque<Event>,
    pub stats: &'a mut NodeStats,
    pub clock: &'a mut UnixClock,
    pub relay_in: &'a mut crate::node::RelayQueue,
    pub nat: &'a mut NatLocal,
}

/// Wall-clock time derived from the `Instant` timeline (captured once at `Node::new`), and
/// strictly increasing handshake timestamps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UnixClock {
    pub start: Instant,
    pub unix_start: Duration,
    pub last_timestamp: u64,
}

impl UnixClock {
    /// Unix time at `now`.
    pub fn unix(&self, now: Instant) -> Duration {
        self.unix_start + now.saturating_duration_since(self.start)
    }

    /// A handshake timestamp (ns) newer than every one issued before.
    pub fn timestamp(&mut self, now: Instant) -> u64 {
        let ts = u64::try_from(self.unix(now).as_nanos()).unwrap_or(u64::MAX);
        self.last_timestamp = ts.max(self.last_timestamp.saturating_add(1));
        self.last_timestamp
    }
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionState {
    /// Initiator: init sent, waiting for the response.
    InitSent,
    /// Responder: response sent, waiting for proof the initiator holds the keys.
    AwaitConfirm,
    /// Data flows both ways.
    Established,
    /// We closed; CLOSE is repeated to late packets until the period ends.
    Closing,
    /// The peer closed; we stay silent until the period ends.
    Draining,
    /// Gone.
    Closed,
}

/// Handshake bookkeeping kept until the peer is confirmed.
pub(crate) struct HsState {
    pub noise: Option<Handshake>,
    /// Rebuilds `noise` after a failed read (see `Recipe`).
    pub recipe: Option<Recipe>,
    pub suite: Suite,
    /// Initiator: Noise message 1 (the init datagram is rebuilt around it with the current
    /// cookie). Responder: the full response datagram. Initiator after XX message 2: the
    /// full final datagram.
    pub msg: Vec<u8>,
    pub cookie: Option<[u8; 16]>,
    pub cookie_uses: u8,
    pub attempts: u32,
    pub need_send: bool,
    /// Responder: where to send the response.
    pub reply_to: Option<Route>,
    /// Initiator: already fell back from IK to XX after a reject hint.
    pub fell_back: bool,
    /// Initiator: mac1 key for the responder (IK).
    pub mac1_key: Option<[u8; 32]>,
    /// Responder: the data AEAD chosen for this session.
    pub aead: AeadKind,
}

/// A simple RTT estimate from PING/PONG (RFC 6298 smoothing).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Rtt {
    pub latest: Option<Duration>,
    pub smoothed: Option<Duration>,
    pub var: Duration,
    pub min: Option<Duration>,
}

impl Rtt {
    fn sample(&mut self, r: Duration) {
        self.latest = Some(r);
        self.min = Some(self.min.map_or(r, |m| m.min(r)));
        match self.smoothed {
            None => {
                self.smoothed = Some(r);
                self.var = r / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(r);
                self.var = (self.var * 3 + diff) / 4;
                self.smoothed = Some((s * 7 + r) / 8);
            }
        }
    }

    /// Probe timeout: srtt + 4 rttvar, at least 200 ms; 1 s before any sample.
    pub fn pto(&self) -> Duration {
        match self.smoothed {
            Some(s) => (s + 4 * self.var).max(Duration::from_millis(200)),
            None => Duration::from_secs(1),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct OutstandingPing {
    id: u64,
    sent: Instant,
    app: bool,
}

pub(crate) struct Session {
    pub id: SessionId,
    pub local_index: u32,
    pub remote_index: u32,
    /// The peer's stateless reset token for `remote_index` (from the handshake).
    pub peer_reset_token: Option<crate::crypto::reset::Token>,
    pub initiator: bool,
    pub peer: Option<PeerId>,
    pub expected_peer: Option<PeerId>,
    pub state: SessionState,
    /// The application knows this session (initiator: always; responder: once established).
    pub reported: bool,
    pub hs: Option<Box<HsState>>,
    pub keys: Option<SessionKeys>,
    replay: ReplayWindow,
    /// Where packets go now.
    pub route: Route,
    /// The relay server's key, when this session may use a relay.
    pub relay_peer: Option<PeerId>,
    pub probe: Option<PathProbe>,
    pub timers: TimerTable,
    pongs_to_send: VecDeque<u64>,
    pings_to_send: VecDeque<u64>,
    pings_out: VecDeque<OutstandingPing>,
    next_ping_id: u64,
    path_response: Option<(Route, [u8; 8])>,
    close_code: u64,
    close_pending: bool,
    close_sends: u32,
    pub peer_confirmed: bool,
    pub rtt: Rtt,
    /// `max(3 PTO, 1 s)` for the current `rtt`, kept up to date on every RTT sample (it is
    /// needed for every packet opened).
    discard_after: Duration,
    pub stats: SessionStats,
    /// Relay server only: datagrams to forward to this session's peer, with the peer they
    /// come from (bounded by [`MAX_RELAY_OUT`]; newest dropped when full).
    relay_out: VecDeque<(PeerId, Vec<u8>)>,
    relay_pool: Vec<Vec<u8>>,
    /// The last address a rendezvous server told us it sees us at.
    pub observed: Option<SocketAddr>,
    /// Server: tell the peer the address we see it at (beacon).
    pub send_observed: bool,
    /// Streams, datagrams, ACKs and loss recovery (once established).
    pub tp: Option<Box<transport::Transport>>,
    /// A hole-punching attempt in progress.
    punch: Option<crate::nat::Punch>,
    /// When to try punching again.
    next_punch: Option<Instant>,
    /// Failed attempts in a row (for the retry backoff).
    punch_failures: u32,
    /// When the last attempt started (attempts restart at most every `MIN_RESTART`).
    punch_started: Option<Instant>,
    /// Sent with our candidates; bumped to ask the peer for a synchronised retry.
    punch_epoch: u8,
    /// Waiting for the peer's answer to a retry request until then.
    sync_until: Option<Instant>,
    /// The relay route to fall back to when a direct path dies.
    pub relay_route: Option<Route>,
    /// When an authenticated packet last arrived on the current direct route.
    pub(super) last_direct_rx: Option<Instant>,
    /// What the peer told us about reaching it.
    peer_hints: Option<crate::nat::Hints>,
    /// Our CANDIDATES must be sent.
    send_candidates: bool,
    /// The generation of our candidates the peer was last sent.
    candidates_gen: Option<u64>,
    /// The hints being announced (taken when first sent, resent unchanged if lost).
    candidates_out: Option<crate::nat::Hints>,
    pub(crate) observed_seq: u64,
}

/// Datagrams a relay queues per session before it drops new ones.
pub const MAX_RELAY_OUT: usize = 256;

/// Pending PONGs kept per session; further PINGs are answered once these drain.
const MAX_PONGS: usize = 8;
/// Most CLOSE packets sent while closing.
const MAX_CLOSE_SENDS: u32 = 4;

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("peer", &self.peer)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(
        id: SessionId,
        local_index: u32,
        initiator: bool,
        route: Route,
        hs: HsState,
        config: &Config,
    ) -> Self {
        Self {
            id,
            local_index,
            remote_index: 0,
            peer_reset_token: None,
            initiator,
            peer: None,
            expected_peer: None,
            state: if initiator {
                SessionState::InitSent
            } else {
                SessionState::AwaitConfirm
            },
            reported: initiator,
            hs: Some(Box::new(hs)),
            keys: None,
            replay: ReplayWindow::new(),
            route,
            relay_peer: None,
            probe: None,
            timers: TimerTable::default(),
            pongs_to_send: VecDeque::with_capacity(MAX_PONGS),
            pings_to_send: VecDeque::with_capacity(config.max_outstanding_pings),
            pings_out: VecDeque::with_capacity(config.max_outstanding_pings),
            next_ping_id: 1,
            path_response: None,
            close_code: 0,
            close_pending: false,
            close_sends: 0,
            peer_confirmed: false,
            rtt: Rtt::default(),
            discard_after: Self::discard_after_for(&Rtt::default()),
            stats: SessionStats::default(),
            relay_out: VecDeque::new(),
            relay_pool: Vec::new(),
            observed: None,
            send_observed: false,
            tp: None,
            punch: None,
            next_punch: None,
            punch_failures: 0,
            punch_started: None,
            punch_epoch: 0,
            sync_until: None,
            relay_route: None,
            last_direct_rx: None,
            peer_hints: None,
            send_candidates: false,
            candidates_gen: None,
            candidates_out: None,
            observed_seq: 0,
        }
    }

    /// Relay server: queues `data` (a datagram from `from`) for this session's peer.
    /// Returns false when the queue is full (the datagram is dropped).
    pub fn queue_relay(&mut self, from: PeerId, data: &[u8]) -> bool {
        if self.relay_out.len() >= MAX_RELAY_OUT || !self.is_established() {
            return false;
        }
        let mut v = self.relay_pool.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(data);
        self.relay_out.push_back((from, v));
        true
    }

    /// Client of a relay: wraps `inner` (a datagram for `peer`) into a packet on this
    /// session (with the relay server).
    pub fn build_relay_packet(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        peer: PeerId,
        inner: &[u8],
        ctx: &mut Ctx<'_>,
    ) -> Option<(Route, usize)> {
        if !self.is_established() {
            return None;
        }
        let route = self.route;
        let max = buf.len().min(usize::from(ctx.config.max_udp_payload));
        self.build_packet(now, &mut buf[..max], route, ctx, |s, w| {
            Frame::Relay {
                peer: *peer.as_bytes(),
                data: inner,
            }
            .encode(w)
            .ok()?;
            s.stats.tx_frames.add(FrameKind::Relay);
            Some(transmit::PacketMeta::UNTRACKED)
        })
    }

    /// Earliest timer.
    pub fn next_timeout(&self, now: Instant) -> Option<Instant> {
        let t = earliest(
            self.timers.next_at(),
            self.keys.as_ref().and_then(SessionKeys::poll_timeout),
        );
        let t = earliest(t, self.tp.as_ref().and_then(|t| t.next_timeout(now)));
        earliest(t, self.punch_next_timeout())
    }

    /// Earliest timer with its reason.
    pub fn next_timeout_reason(&self) -> Option<(Instant, TimerKind)> {
        let own = self.timers.next();
        let keys = self
            .keys
            .as_ref()
            .and_then(SessionKeys::poll_timeout)
            .map(|at| (at, TimerKind::KeyDiscard));
        match (own, keys) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// How long this side stays silent before it sends a keepalive PING. The initiator uses
    /// the configured interval; the responder waits half as long again, so on an idle
    /// session the initiator's PINGs (and the responder's PONGs to them, which refresh the
    /// responder's NAT mapping) are all that flows, instead of both sides pinging at once.
    /// The responder still pings on its own if the initiator falls silent.
    pub fn keepalive_interval(&self, config: &Config) -> Duration {
        if self.initiator {
            config.keepalive_interval
        } else {
            config.keepalive_interval + config.keepalive_interval / 2
        }
    }

    pub fn is_established(&self) -> bool {
        self.state == SessionState::Established
    }

    fn discard_after(&self) -> Duration {
        self.discard_after
    }

    fn discard_after_for(rtt: &Rtt) -> Duration {
        (rtt.pto() * 3).max(Duration::from_secs(1))
    }

    /// Moves to `Established` and tells the application.
    pub fn establish(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        self.state = SessionState::Established;
        self.tp = Some(Box::new(transport::Transport::new(
            self.id,
            self.initiator,
            &ctx.config.transport,
            ctx.config.idle_timeout,
            now,
        )));
        self.reported = true;
        ctx.stats.sessions_established += 1;
        if let Some(peer) = self.peer {
            ctx.events.push_back(Event::SessionEstablished {
                session: self.id,
                peer,
                initiator: self.initiator,
            });
        }
        self.timers
            .set(TimerKind::Idle, now + ctx.config.idle_timeout);
        self.timers.set(
            TimerKind::Keepalive,
            now + self.keepalive_interval(ctx.config),
        );
        self.send_observed = ctx.config.send_observed_addresses;
        if self.route.is_relay() {
            // Relay-first: tell the peer how we might be reached directly.
            self.relay_route = Some(self.route);
            if ctx.nat.has_candidates() {
                self.announce_candidates();
            }
        }
        // A first PING: confirms the handshake to the peer and gives an RTT sample.
        self.queue_ping(now, false, ctx.config);
    }

    /// Ends the session without sending anything and reports why (if the app knows it).
    pub fn terminate(&mut self, reason: CloseReason, ctx: &mut Ctx<'_>) {
        if self.state == SessionState::Closed {
            return;
        }
        let was_draining_or_closing =
            matches!(self.state, SessionState::Closing | SessionState::Draining);
        self.state = SessionState::Closed;
        self.timers.clear();
        if self.reported && !was_draining_or_closing {
            ctx.events.push_back(Event::SessionClosed {
                session: self.id,
                peer: self.peer,
                reason,
            });
        }
    }

    /// Starts closing: CLOSE is sent, the application is told now.
    pub fn close(&mut self, now: Instant, code: u64, reason: CloseReason, ctx: &mut Ctx<'_>) {
        match self.state {
            SessionState::Closed | SessionState::Closing | SessionState::Draining => return,
            SessionState::Established => {}
            // Nothing to tell a peer that cannot read us yet.
            SessionState::InitSent | SessionState::AwaitConfirm => {
                self.terminate(reason, ctx);
                return;
            }
        }
        if self.reported {
            ctx.events.push_back(Event::SessionClosed {
                session: self.id,
                peer: self.peer,
                reason,
            });
        }
        self.state = SessionState::Closing;
        self.close_code = code;
        self.close_pending = true;
        self.timers.clear();
        self.timers
            .set(TimerKind::Close, now + self.discard_after());
    }

    /// Queues a PING. App pings are reported with `Event::Pong`.
    pub fn queue_ping(&mut self, now: Instant, app: bool, config: &Config) -> u64 {
        let id = self.next_ping_id;
        self.next_ping_id += 1;
        if self.pings_out.len() >= config.max_outstanding_pings {
            self.pings_out.pop_front();
        }
        self.pings_out
            .push_back(OutstandingPing { id, sent: now, app });
        if self.pings_to_send.len() >= config.max_outstanding_pings {
            self.pings_to_send.pop_front();
        }
        self.pings_to_send.push_back(id);
        id
    }

    /// Handles an encrypted data packet addressed to this session. `buf` is the whole
    /// datagram; it is decrypted in place.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_data(
        &mut self,
        now: Instant,
        from: Route,
        key_phase: bool,
        counter: u64,
        buf: &mut [u8],
        ctx: &mut Ctx<'_>,
    ) {
        let len = buf.len();
        let discard_after = self.discard_after();
        let Some(keys) = self.keys.as_mut() else {
            ctx.stats.drops.add(DropReason::UnexpectedState);
            return;
        };
        if matches!(self.state, SessionState::Closed | SessionState::Draining) {
            ctx.stats.drops.add(DropReason::UnexpectedState);
            return;
        }
        // A relayed packet must come through a relay from this session's own peer: another
        // relay client cannot inject into (or replay onto) our session (Pilot S8, S9).
        if let Route::Relay { peer, .. } = from
            && self.peer.is_some_and(|p| p != peer)
        {
            ctx.stats.drops.add(DropReason::RelayDenied);
            return;
        }
        if !self.replay.check(counter) {
            ctx.stats.drops.add(DropReason::Replay);
            self.stats.replays += 1;
            trace!(session = ?self.id, counter, "replayed packet dropped");
            return;
        }
        let (header, rest) = buf.split_at_mut(DATA_HEADER_LEN);
        let Some(tag_at) = rest.len().checked_sub(TAG_LEN) else {
            ctx.stats.drops.add(DropReason::Malformed);
            return;
        };
        let (payload, tag) = rest.split_at_mut(tag_at);
        let mut tag_bytes = [0u8; TAG_LEN];
        tag_bytes.copy_from_slice(tag);
        let Ok(opened) = keys.open(
            now,
            discard_after,
            key_phase,
            counter,
            header,
            payload,
            &tag_bytes,
        ) else {
            ctx.stats.drops.add(DropReason::DecryptFailed);
            self.stats.decrypt_failures += 1;
            if keys.exhausted() {
                self.close(
                    now,
                    close_code::KEYS_EXHAUSTED,
                    CloseReason::KeysExhausted,
                    ctx,
                );
            }
            return;
        };
        // Authenticated: only now may the replay window move.
        let newest = counter >= self.replay.next_expected();
        self.replay.update(counter);
        if opened == Opened::Updated {
            ctx.stats.key_updates += 1;
            self.stats.key_updates += 1;
        }
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += len as u64;
        if self.state == SessionState::Closing {
            // Late packets get our CLOSE again (bounded).
            if self.close_sends < MAX_CLOSE_SENDS {
                self.close_pending = true;
            }
            self.process_close_frames(payload, ctx);
            return;
        }
        self.timers
            .set(TimerKind::Idle, now + ctx.config.idle_timeout);
        if !self.peer_confirmed {
            self.peer_confirmed = true;
            self.hs = None;
            self.timers.stop(TimerKind::HandshakeResend);
            self.timers.stop(TimerKind::HandshakeExpire);
            if self.state == SessionState::AwaitConfirm {
                // IK responder: the initiator proved it holds the keys, from `from`.
                self.route = from;
                self.establish(now, ctx);
            }
        }
        let mut non_probing = false;
        let mut eliciting = false;
        let mut fates = transport::Fates::default();
        for frame in frames(payload) {
            let Ok(frame) = frame else {
                ctx.stats.drops.add(DropReason::BadFrames);
                return;
            };
            self.stats.rx_frames.add(FrameKind::of(&frame));
            // A PONG is itself the answer to an ack-eliciting PING: acknowledging it would
            // only add a packet to every keepalive round trip.
            if !matches!(
                frame,
                Frame::Ack(_) | Frame::Padding { .. } | Frame::Close { .. } | Frame::Pong { .. }
            ) {
                eliciting = true;
            }
            match frame {
                Frame::Padding { .. } => {}
                Frame::PathChallenge { data } => {
                    self.path_response = Some((from, data));
                    if let Route::Direct { remote, .. } = from
                        && from != self.route
                    {
                        self.on_direct_challenge(now, remote);
                    }
                }
                Frame::PathResponse { data } => {
                    if let Route::Direct { remote, local } = from
                        && !self.on_punch_response(now, remote, local, &data, ctx)
                    {
                        self.on_path_response(now, remote, local, data, ctx);
                    }
                }
                Frame::Candidates { data } => {
                    non_probing = true;
                    self.on_candidates(now, data, ctx);
                }
                Frame::Relay { peer, data } => {
                    non_probing = true;
                    if !ctx.relay_in.push(self.id, PeerId::from_bytes(peer), data) {
                        ctx.stats.drops.add(DropReason::RelayQueueFull);
                    }
                }
                Frame::Ping { id } => {
                    non_probing = true;
                    if self.pongs_to_send.len() < MAX_PONGS {
                        self.pongs_to_send.push_back(id);
                    }
                }
                Frame::Pong { id } => {
                    non_probing = true;
                    self.on_pong(now, id, ctx);
                }
                Frame::Close { code, .. } => {
                    self.on_peer_close(now, code, ctx);
                    return;
                }
                Frame::ObservedAddress { addr, .. } => {
                    if self.observed != Some(addr) {
                        self.observed = Some(addr);
                        ctx.events.push_back(Event::ObservedAddress {
                            session: self.id,
                            addr,
                        });
                    }
                }
                Frame::Ack(_)
                | Frame::Stream { .. }
                | Frame::ResetStream { .. }
                | Frame::StopSending { .. }
                | Frame::MaxData { .. }
                | Frame::MaxStreamData { .. }
                | Frame::MaxStreams { .. }
                | Frame::DataBlocked { .. }
                | Frame::StreamDataBlocked { .. }
                | Frame::Datagram { .. } => {
                    non_probing = true;
                    let Some(tp) = self.tp.as_mut() else { continue };
                    match tp.on_frame(now, &frame, &mut fates) {
                        transport::FrameOutcome::Ok => {}
                        transport::FrameOutcome::Refuse => {
                            // Reassembly is full: leave the packet unacknowledged so the
                            // peer sends it again later.
                            ctx.stats.drops.add(DropReason::BadFrames);
                            return;
                        }
                        transport::FrameOutcome::Violation => {
                            self.close(
                                now,
                                close_code::PROTOCOL_ERROR,
                                CloseReason::Local {
                                    code: close_code::PROTOCOL_ERROR,
                                },
                                ctx,
                            );
                            return;
                        }
                    }
                }
                _ => non_probing = true,
            }
        }
        if fates.observed_lost && ctx.config.send_observed_addresses {
            self.send_observed = true;
        }
        if fates.candidates_lost {
            self.send_candidates = true;
        }
        // Compared once: nothing below changes `self.route` before the second use.
        let on_route = from == self.route;
        if from.is_relay() {
            self.relay_route = Some(from);
        } else if on_route {
            self.last_direct_rx = Some(now);
        }
        if let Some(tp) = self.tp.as_mut() {
            tp.acks.on_packet_received(now, counter, eliciting);
        }
        if let (Some(p), Route::Direct { remote, .. }) = (self.probe.as_mut(), from)
            && p.addr == remote
        {
            p.bytes_received += len as u64;
        }
        if !on_route && self.state == SessionState::Established {
            match from {
                // A new address must prove itself before traffic moves there.
                Route::Direct { remote, local } if non_probing => {
                    self.start_probe(now, remote, local, len, ctx);
                }
                // The peer went (back) to the relay: the relay vouches for the route and the
                // packet is authenticated. Follow it only if our direct path has gone quiet
                // (the peer may simply not have switched yet; following it would flap).
                Route::Relay { .. }
                    if newest
                        && self.last_direct_rx.is_none_or(|t| {
                            now.saturating_duration_since(t)
                                > (self.rtt.pto() * 3).max(Duration::from_secs(1))
                        }) =>
                {
                    self.set_route(now, from, ctx);
                }
                _ => {}
            }
        }
    }

    fn process_close_frames(&mut self, payload: &[u8], ctx: &mut Ctx<'_>) {
        for frame in frames(payload).flatten() {
            if let Frame::Close { .. } = frame {
                // Both sides closed: nothing more to say.
                self.state = SessionState::Closed;
                self.timers.clear();
                let _ = ctx;
                return;
            }
        }
    }

    fn on_peer_close(&mut self, now: Instant, code: u64, ctx: &mut Ctx<'_>) {
        let reason = if code == close_code::REFUSED {
            CloseReason::Refused
        } else {
            CloseReason::Peer { code }
        };
        if self.reported {
            ctx.events.push_back(Event::SessionClosed {
                session: self.id,
                peer: self.peer,
                reason,
            });
        }
        self.state = SessionState::Draining;
        self.timers.clear();
        self.timers
            .set(TimerKind::Close, now + self.discard_after());
    }

    fn on_pong(&mut self, now: Instant, id: u64, ctx: &mut Ctx<'_>) {
        let Some(pos) = self.pings_out.iter().position(|p| p.id == id) else {
            return;
        };
        let Some(p) = self.pings_out.remove(pos) else {
            return;
        };
        let rtt = now.saturating_duration_since(p.sent);
        self.rtt.sample(rtt);
        self.discard_after = Self::discard_after_for(&self.rtt);
        if p.app {
            ctx.events.push_back(Event::Pong {
                session: self.id,
                id,
                rtt,
            });
        }
    }

    /// Runs due timers.
    pub fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if let Some(keys) = self.keys.as_mut() {
            keys.handle_timeout(now);
        }
        if self.timers.take_expired(TimerKind::Close, now) {
            self.state = SessionState::Closed;
            self.timers.clear();
            return;
        }
        if self.timers.take_expired(TimerKind::HandshakeExpire, now) {
            trace!(session = ?self.id, "handshake timed out");
            self.terminate(CloseReason::HandshakeTimeout, ctx);
            return;
        }
        if self.timers.take_expired(TimerKind::Idle, now) {
            trace!(session = ?self.id, "idle timeout");
            self.terminate(CloseReason::IdleTimeout, ctx);
            return;
        }
        if self.timers.take_expired(TimerKind::HandshakeResend, now) {
            self.on_handshake_resend(now, ctx);
        }
        if self.timers.take_expired(TimerKind::Keepalive, now) && self.is_established() {
            self.queue_ping(now, false, ctx.config);
            self.timers.set(
                TimerKind::Keepalive,
                now + self.keepalive_interval(ctx.config),
            );
        }
        if self.timers.take_expired(TimerKind::PathProbe, now) {
            self.on_probe_timeout(now);
        }
        if let Some(tp) = self.tp.as_mut() {
            let mut fates = transport::Fates::default();
            tp.on_timeout(now, &mut fates);
            if fates.observed_lost && ctx.config.send_observed_addresses {
                self.send_observed = true;
            }
            if fates.candidates_lost {
                self.send_candidates = true;
            }
        }
        self.punch_timeout(now, ctx);
    }

    /// Whether `poll_transmit` may have something to send.
    pub fn wants_to_send(&self, now: Instant) -> bool {
        if let Some(hs) = &self.hs
            && hs.need_send
        {
            return true;
        }
        match self.state {
            SessionState::Established => {
                !self.pongs_to_send.is_empty()
                    || !self.pings_to_send.is_empty()
                    || self.path_response.is_some()
                    || self.probe.as_ref().is_some_and(|p| p.need_send)
                    || !self.relay_out.is_empty()
                    || self.send_observed
                    || self.send_candidates
                    || self.punch_next_timeout().is_some_and(|t| t <= now)
                    || self.tp.as_ref().is_some_and(|t| t.wants_to_send(now))
            }
            SessionState::Closing => self.close_pending,
            _ => false,
        }
    }
}
