//! Hole punching inside a session: both sides exchange CANDIDATES over the session they
//! already have (usually relayed), then probe every candidate with authenticated
//! PATH_CHALLENGEs at a paced rate; the first answered probe gives a validated direct path
//! and the session moves there. When a direct path dies (probe timeouts pile up) the
//! session falls back to the relay it came from, and tries to punch again later.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Ctx, Route, Session, SessionState};
use crate::nat::{self, Hints, Mapping, Punch};

/// What this node knows about its own reachability (maintained by the node).
#[derive(Clone, Debug, Default)]
pub struct NatLocal {
    /// Local (host) addresses peers may reach directly (LAN candidates).
    pub host: Vec<SocketAddr>,
    /// Our address as the rendezvous server's two addresses see it.
    pub observed: [Option<SocketAddr>; 2],
    /// Extra local sockets for the hard side of birthday probing.
    pub punch_sockets: Vec<SocketAddr>,
}

impl NatLocal {
    /// Our mapping behaviour.
    pub fn mapping(&self) -> Mapping {
        Hints::classify(&self.host, self.observed).0
    }

    /// The hints we send to peers.
    pub fn hints(&self) -> Hints {
        let (mapping, port_step) = Hints::classify(&self.host, self.observed);
        let mut addrs: Vec<SocketAddr> = self.host.clone();
        for o in self.observed.iter().flatten() {
            if !addrs.contains(o) {
                addrs.push(*o);
            }
        }
        Hints {
            mapping,
            local_port: self.host.first().map_or(0, SocketAddr::port),
            port_step,
            addrs,
        }
    }
}

/// Try to punch again this long after an attempt failed or a direct path died.
const RETRY_PUNCH: Duration = Duration::from_secs(30);
/// Probe timeouts in a row that declare a direct path dead.
const DEAD_PATH_PTOS: u32 = 3;

impl Session {
    /// Handles the peer's CANDIDATES: starts a punching attempt if we are not direct yet, and
    /// answers with our own candidates once.
    pub(super) fn on_candidates(&mut self, now: Instant, data: &[u8], ctx: &mut Ctx<'_>) {
        let Some(hints) = Hints::decode(data) else {
            ctx.stats.drops.add(super::DropReason::BadFrames);
            return;
        };
        if !self.candidates_sent {
            self.send_candidates = true;
        }
        self.peer_hints = Some(hints);
        if self.route.is_relay() {
            self.start_punch(now, ctx);
        }
    }

    fn start_punch(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        let Some(hints) = self.peer_hints.as_ref() else {
            return;
        };
        let ours = ctx.nat.mapping();
        let targets = nat::targets(hints, ours, ctx.rng);
        if targets.is_empty() {
            return;
        }
        let candidates = hints.addrs.len();
        // The hard side of birthday probing opens one mapping per socket toward the peer.
        let extra: &[SocketAddr] = if ours == Mapping::EndpointDependent
            && matches!(
                hints.mapping,
                Mapping::EndpointIndependent | Mapping::Public
            ) {
            &ctx.nat.punch_sockets
        } else {
            &[]
        };
        let mut challenge = [0u8; 8];
        ctx.rng.fill(&mut challenge);
        debug!(session = ?self.id, targets = targets.len(), "hole punching");
        self.punch = Some(Punch::new(now, challenge, targets, candidates, extra));
        self.next_punch = None;
    }

    /// The next punching probe due now, if any.
    pub(super) fn poll_punch(&mut self, now: Instant) -> Option<(Route, [u8; 8])> {
        let p = self.punch.as_mut()?;
        let (dst, src) = p.poll(now)?;
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
        self.punch = None;
        if self.route.is_relay() {
            self.set_route(Route::direct(from, local), ctx);
        }
        true
    }

    /// Punching and path-health timers.
    pub(super) fn punch_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if self.state != SessionState::Established {
            return;
        }
        if self.punch.as_ref().is_some_and(|p| p.is_done(now)) {
            self.punch = None;
            if self.route.is_relay() {
                self.next_punch = Some(now + RETRY_PUNCH);
            }
        }
        if self.next_punch.is_some_and(|t| t <= now) {
            self.next_punch = None;
            if self.route.is_relay() {
                self.start_punch(now, ctx);
            }
        }
        // A dead direct path: back to the relay, punch again later.
        if let (Route::Direct { .. }, Some(relay)) = (self.route, self.relay_route)
            && self
                .tp
                .as_ref()
                .is_some_and(|t| t.recovery.pto_count() >= DEAD_PATH_PTOS)
        {
            debug!(session = ?self.id, "direct path dead; falling back to the relay");
            self.set_route(relay, ctx);
            self.next_punch = Some(now + RETRY_PUNCH / 3);
        }
    }

    /// Earliest punching timer.
    pub(super) fn punch_next_timeout(&self) -> Option<Instant> {
        [
            self.punch.as_ref().and_then(Punch::next_timeout),
            self.next_punch,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
