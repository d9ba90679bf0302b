//! Hole punching inside a session: both sides exchange CANDIDATES over the session they
//! already have (usually relayed), then probe the planned addresses with authenticated
//! PATH_CHALLENGEs at a paced rate (`nat::plan`, `nat::Punch`); the first answered probe
//! gives a validated direct path and the session moves there. When a direct path dies
//! (probe timeouts pile up, or the peer's new candidates no longer contain it) the session
//! falls back to the relay it came from and punches again: at once when either side's
//! candidates change (the exchange synchronises both sides), otherwise after a backoff.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Ctx, Route, Session, SessionState};
use crate::nat::{self, Hints, ProbeBudget, Punch};
use crate::time::earliest;

/// What this node knows about its own reachability (maintained by the node).
#[derive(Clone, Debug, Default)]
pub struct NatLocal {
    /// Local (host) addresses peers may reach directly (LAN candidates).
    pub host: Vec<SocketAddr>,
    /// Our address as the rendezvous server's two addresses see it.
    pub observed: [Option<SocketAddr>; 2],
    /// Extra local sockets for the hard side of birthday probing.
    pub punch_sockets: Vec<SocketAddr>,
    /// Bumped whenever what we would tell peers changes.
    pub generation: u64,
    /// Node-wide pacing of probes.
    pub budget: ProbeBudget,
    /// Probe destinations (from which local socket, to where) since the last observation,
    /// with when they were last probed: each new one opened a mapping on our NAT.
    probed: BTreeMap<(Option<SocketAddr>, SocketAddr), Instant>,
    /// Mappings our probes opened since the last observation (a sequential NAT's
    /// allocation pointer moved that many steps).
    fresh_mappings: u32,
}

/// Most probe destinations remembered for the allocation estimate.
const MAX_PROBED: usize = 4096;
/// A mapping nobody answered is assumed gone after this long (NATs commonly drop unreplied
/// UDP mappings after 30 s), so probing the destination again opens a new one.
const ASSUMED_MAPPING_LIFETIME: Duration = Duration::from_secs(25);

impl NatLocal {
    /// A probe went from `src` (our default socket if `None`) to `dst`.
    pub fn note_probe(&mut self, now: Instant, src: Option<SocketAddr>, dst: SocketAddr) {
        let full = self.probed.len() >= MAX_PROBED;
        let fresh = match self.probed.get_mut(&(src, dst)) {
            Some(last) => {
                let expired = now.saturating_duration_since(*last) >= ASSUMED_MAPPING_LIFETIME;
                *last = now;
                expired
            }
            None => {
                if !full {
                    self.probed.insert((src, dst), now);
                }
                true
            }
        };
        if fresh {
            self.fresh_mappings = self.fresh_mappings.saturating_add(1);
        }
    }

    /// New observations: the allocation estimate starts over from them.
    pub fn reset_allocation(&mut self) {
        self.probed.clear();
        self.fresh_mappings = 0;
    }

    /// The hints we send to peers.
    pub fn hints(&self) -> Hints {
        let (mapping, port_step) = Hints::classify(&self.host, self.observed);
        let mut reflexive: Vec<SocketAddr> = Vec::new();
        for o in self.observed.iter().flatten() {
            if !reflexive.contains(o) && !self.host.contains(o) {
                reflexive.push(*o);
            }
        }
        let mut hints = Hints {
            mapping,
            local_port: self.host.first().map_or(0, SocketAddr::port),
            port_step,
            next_port: 0,
            epoch: 0,
            punch_sockets: self.punch_sockets.len().min(nat::MAX_PUNCH_SOCKETS) as u16,
            host: self
                .host
                .iter()
                .copied()
                .take(nat::MAX_HOST_CANDIDATES)
                .collect(),
            reflexive,
        };
        // Behind a sequential NAT, where the next mapping will most likely land: every
        // mapping our probes opened since the observation moved the allocator on.
        if let (Some(step), Some(next)) = (hints.sequential_step(), hints.predicted_next()) {
            let ahead = i64::from(step) * i64::from(self.fresh_mappings);
            hints.next_port = u16::try_from(i64::from(next.port()) + ahead).unwrap_or(0);
        }
        hints
    }

    /// Whether there is anything worth telling a peer.
    pub fn has_candidates(&self) -> bool {
        !self.host.is_empty() || self.observed[0].is_some()
    }
}

/// First retry after a failed attempt; doubles per failure up to [`MAX_RETRY`].
const RETRY_PUNCH: Duration = Duration::from_secs(30);
/// Longest time between two attempts while relayed.
const MAX_RETRY: Duration = Duration::from_secs(480);
/// Punch again this long after falling back from a dead direct path (the other side
/// notices about as fast; the NAT mappings opened by either stay up far longer).
const REPUNCH_AFTER_FALLBACK: Duration = Duration::from_secs(2);
/// A retry asks the peer for fresh candidates first; without an answer it starts anyway
/// after this long.
const SYNC_WAIT: Duration = Duration::from_secs(3);
/// New candidates restart punching at most this often (a peer re-sending changed
/// candidates in a loop cannot make us start attempt after attempt).
const MIN_RESTART: Duration = Duration::from_secs(2);
/// Probe timeouts in a row that declare a direct path dead.
const DEAD_PATH_PTOS: u32 = 3;

impl Session {
    /// Handles the peer's CANDIDATES: remembers them, answers with ours when they changed
    /// (so both sides punch at about the same time), and punches if we are relayed, or if
    /// our direct path is no longer among them.
    pub(super) fn on_candidates(&mut self, now: Instant, data: &[u8], ctx: &mut Ctx<'_>) {
        let Some(hints) = Hints::decode(data) else {
            ctx.stats.drops.add(super::DropReason::BadFrames);
            return;
        };
        // What changed: its addresses or NAT (it moved: answer and punch anew), its epoch
        // (it asks for a synchronised retry: answer and punch), or only its running
        // estimate of a sequential NAT's next port (just remember it).
        let first = self.peer_hints.is_none();
        let (moved, sync) = self.peer_hints.as_ref().map_or((false, false), |h| {
            let material = |x: &Hints| Hints {
                next_port: 0,
                epoch: 0,
                ..x.clone()
            };
            (material(h) != material(&hints), h.epoch != hints.epoch)
        });
        if (moved || sync || (first && self.candidates_gen.is_none())) && ctx.nat.has_candidates() {
            self.announce_candidates();
        }
        if moved || sync {
            self.punch_failures = 0;
        }
        // Our direct path is stale if the peer no longer lists its address (its NAT or
        // address changed): back to the relay at once rather than after the probe timeouts.
        if let (Route::Direct { remote, .. }, Some(relay)) = (self.route, self.relay_route)
            && moved
            && stale(&hints, remote)
        {
            debug!(session = ?self.id, %remote, "peer's candidates moved; back to the relay");
            self.set_route(now, relay, ctx);
        }
        self.peer_hints = Some(hints);
        if !self.route.is_relay() {
            return;
        }
        let answer_to_ours = self.sync_until.is_some() && self.punch.is_none();
        if answer_to_ours || first || moved || sync {
            match self.punch_started {
                Some(t) if !answer_to_ours && now.saturating_duration_since(t) < MIN_RESTART => {
                    // Restart soon, not now (a peer cannot make us restart in a loop).
                    let at = t + MIN_RESTART;
                    self.sync_until = Some(self.sync_until.map_or(at, |n| n.min(at)));
                }
                _ => {
                    self.sync_until = None;
                    self.start_punch(now, ctx);
                }
            }
        }
    }

    fn start_punch(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        let Some(hints) = self.peer_hints.as_ref() else {
            return;
        };
        let ours = ctx.nat.hints();
        let plan = nat::plan(hints, &ours, ctx.nat.punch_sockets.len(), ctx.rng);
        if plan.is_empty() {
            return;
        }
        let mut challenge = [0u8; 8];
        ctx.rng.fill(&mut challenge);
        debug!(
            session = ?self.id,
            candidates = plan.candidates.len(),
            spray = plan.spray.len(),
            sockets = plan.socket_target.is_some(),
            "hole punching"
        );
        self.punch = Some(Punch::new(
            now,
            challenge,
            &plan,
            ctx.nat.punch_sockets.len(),
        ));
        self.punch_started = Some(now);
        self.next_punch = None;
    }

    /// The next punching probe due now, if any.
    pub(super) fn poll_punch(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) -> Option<(Route, [u8; 8])> {
        let p = self.punch.as_mut()?;
        let (dst, src) = p.poll(now, &mut ctx.nat.budget, &ctx.nat.punch_sockets)?;
        ctx.nat.note_probe(now, src, dst);
        ctx.stats.punch_probes += 1;
        Some((Route::direct(dst, src), p.challenge()))
    }

    /// A PATH_CHALLENGE arrived directly from `from` while punching: the peer's probe got
    /// through, so probe that address too (it may be a port we did not predict).
    pub(super) fn on_direct_challenge(&mut self, now: Instant, from: SocketAddr) {
        if let Some(p) = self.punch.as_mut() {
            p.learn(now, from);
        }
    }

    /// A PATH_RESPONSE: does it answer our punching? Then move to that direct path.
    pub(super) fn on_punch_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: Option<SocketAddr>,
        data: &[u8; 8],
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let Some(p) = self.punch.as_ref() else {
            return false;
        };
        if !p.answers(from, data) {
            return false;
        }
        debug!(session = ?self.id, %from, probes = p.sent(), "direct path found");
        if self.route.is_relay() {
            self.set_route(now, Route::direct(from, local), ctx);
        }
        self.punch = None;
        true
    }

    /// Route bookkeeping for hole punching: a direct route ends punching; a relayed one
    /// schedules the next attempt.
    pub(super) fn on_route_change(&mut self, now: Instant, route: Route) {
        match route {
            Route::Direct { .. } => {
                self.punch = None;
                self.next_punch = None;
                self.sync_until = None;
                self.punch_failures = 0;
                self.last_direct_rx = Some(now);
            }
            Route::Relay { .. } => {
                self.last_direct_rx = None;
                if self.punch.is_none() && self.peer_hints.is_some() {
                    let at = now + REPUNCH_AFTER_FALLBACK;
                    self.next_punch = Some(self.next_punch.map_or(at, |t| t.min(at)));
                }
                // Packets in flight went down the dead path: probe the new one at once
                // instead of waiting out the backed-off probe timeout.
                if let Some(tp) = self.tp.as_mut()
                    && tp.recovery.bytes_in_flight() > 0
                {
                    tp.recovery.reset_pto_backoff();
                    tp.probes = tp.probes.max(2);
                }
            }
        }
    }

    /// Sends the peer our current candidates (taken now, before any further probe moves a
    /// sequential NAT's prediction; resent unchanged if the frame is lost).
    pub(super) fn announce_candidates(&mut self) {
        self.send_candidates = true;
        self.candidates_out = None;
    }

    /// The CANDIDATES body to send: the announced hints, taken on first use.
    pub(super) fn candidates_to_send(&mut self, ctx: &Ctx<'_>) -> Hints {
        let epoch = self.punch_epoch;
        self.candidates_out
            .get_or_insert_with(|| {
                let mut h = ctx.nat.hints();
                h.epoch = epoch;
                h
            })
            .clone()
    }

    /// Our own address changed: a direct path most likely died with it, so move to the
    /// relay now (the peer follows) and punch again once the new candidates are out.
    pub(crate) fn on_network_change(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        self.punch = None;
        self.punch_failures = 0;
        if let (Route::Direct { .. }, Some(relay)) = (self.route, self.relay_route) {
            self.set_route(now, relay, ctx);
        }
    }

    /// Our candidates changed (new address, new observation): tell the peer.
    pub(crate) fn on_local_candidates_changed(&mut self) {
        if self.state == SessionState::Established && self.relay_route.is_some() {
            self.announce_candidates();
            self.punch_failures = 0;
        }
    }

    /// Punching and path-health timers.
    pub(super) fn punch_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if self.state != SessionState::Established {
            return;
        }
        if self.punch.as_ref().is_some_and(|p| p.is_done(now)) {
            self.punch = None;
            if self.route.is_relay() {
                self.punch_failures = self.punch_failures.saturating_add(1);
                let backoff = RETRY_PUNCH
                    .saturating_mul(1 << (self.punch_failures - 1).min(8))
                    .min(MAX_RETRY);
                self.next_punch = Some(now + backoff);
            }
        }
        if self.next_punch.is_some_and(|t| t <= now) {
            self.next_punch = None;
            if self.route.is_relay() && self.peer_hints.is_some() {
                // Ask the peer to punch with us: it answers with its fresh candidates (a
                // sequential NAT's prediction moves with every attempt) and we start then.
                self.punch_epoch = self.punch_epoch.wrapping_add(1);
                self.announce_candidates();
                self.sync_until = Some(now + SYNC_WAIT);
            }
        }
        if self.sync_until.is_some_and(|t| t <= now) {
            self.sync_until = None;
            if self.route.is_relay() {
                self.start_punch(now, ctx);
            }
        }
        // A dead direct path: back to the relay, punch again soon.
        if let (Route::Direct { .. }, Some(relay)) = (self.route, self.relay_route)
            && self
                .tp
                .as_ref()
                .is_some_and(|t| t.recovery.pto_count() >= DEAD_PATH_PTOS)
        {
            debug!(session = ?self.id, "direct path dead; falling back to the relay");
            self.set_route(now, relay, ctx);
        }
    }

    /// Earliest punching timer.
    pub(super) fn punch_next_timeout(&self) -> Option<Instant> {
        let t = match self.punch.as_ref() {
            Some(p) => earliest(p.next_timeout(), Some(p.deadline())),
            None => None,
        };
        earliest(earliest(t, self.next_punch), self.sync_until)
    }
}

/// Whether `remote` is no longer a plausible address of the peer described by `hints`.
fn stale(hints: &Hints, remote: SocketAddr) -> bool {
    let listed = hints.host.iter().chain(&hints.reflexive);
    if hints.mapping.is_easy() {
        !listed.clone().any(|a| *a == remote)
    } else {
        !listed.clone().any(|a| a.ip() == remote.ip())
    }
}
