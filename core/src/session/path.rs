//! Path validation: a packet from a new source address moves the session there only after
//! that address answers a PATH_CHALLENGE (RFC 9000 §8.2, §9). Until then it gets at most
//! three times the bytes it sent us, and the old path keeps carrying the traffic.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Ctx, Session};
use crate::event::Event;
use crate::identity::PeerId;
use crate::ids::SessionId;
use crate::time::TimerKind;

/// Bytes a relay adds around a relayed packet: the outer data header and tag (29) and the
/// RELAY frame header (type 2, peer key 32, length 2).
pub const RELAY_OVERHEAD: usize = 29 + 2 + 32 + 2;

/// Where a session's packets go (and where a datagram came from).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    /// Plain UDP to `remote`, from the local socket `local` (`None`: the default socket).
    Direct {
        /// Remote address.
        remote: SocketAddr,
        /// Local socket.
        local: Option<SocketAddr>,
    },
    /// Wrapped in the session `via` with a relay server, to or from the peer `peer`.
    Relay {
        /// This node's session with the relay.
        via: SessionId,
        /// The peer on the far side of the relay.
        peer: PeerId,
    },
}

impl Route {
    /// A direct route.
    pub fn direct(remote: SocketAddr, local: Option<SocketAddr>) -> Self {
        Route::Direct { remote, local }
    }

    /// The remote address of a direct route.
    pub fn remote(&self) -> Option<SocketAddr> {
        match self {
            Route::Direct { remote, .. } => Some(*remote),
            Route::Relay { .. } => None,
        }
    }

    /// Whether this is a relayed route.
    pub fn is_relay(&self) -> bool {
        matches!(self, Route::Relay { .. })
    }
}

/// The path a session uses, as reported to the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathInfo {
    /// Directly to this address.
    Direct(SocketAddr),
    /// Through the relay server `relay`.
    Relayed {
        /// The relay server's key.
        relay: PeerId,
    },
}

/// Challenges sent before a candidate path is given up.
const MAX_CHALLENGES: u32 = 5;
/// New paths tried per second at most (a peer cannot make us chase addresses).
const MIN_PROBE_SPACING: Duration = Duration::from_millis(100);

/// A path being validated.
#[derive(Clone, Debug)]
pub struct PathProbe {
    /// The candidate remote address.
    pub addr: SocketAddr,
    /// Local socket it was seen on.
    pub local: Option<SocketAddr>,
    /// The challenge data we expect back.
    pub challenge: [u8; 8],
    /// Challenges sent.
    pub sent: u32,
    /// Bytes received from the candidate (the amplification budget is 3x this).
    pub bytes_received: u64,
    /// Bytes sent to the candidate.
    pub bytes_sent: u64,
    /// A challenge should go out.
    pub need_send: bool,
    /// When this probe started.
    pub started: Instant,
}

impl PathProbe {
    /// Whether `n` more bytes may be sent without exceeding 3x what the address sent.
    pub fn may_send(&self, n: usize) -> bool {
        self.bytes_sent + n as u64 <= 3 * self.bytes_received
    }
}

impl Session {
    pub(super) fn start_probe(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        local: Option<SocketAddr>,
        len: usize,
        ctx: &mut Ctx<'_>,
    ) {
        if let Some(p) = &self.probe {
            if p.addr == addr {
                return;
            }
            if now.saturating_duration_since(p.started) < MIN_PROBE_SPACING {
                return;
            }
        }
        let mut challenge = [0u8; 8];
        ctx.rng.fill(&mut challenge);
        debug!(session = ?self.id, %addr, "validating new path");
        self.probe = Some(PathProbe {
            addr,
            local,
            challenge,
            sent: 0,
            bytes_received: len as u64,
            bytes_sent: 0,
            need_send: true,
            started: now,
        });
        self.timers.set(TimerKind::PathProbe, now + self.rtt.pto());
    }

    pub(super) fn on_path_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: Option<SocketAddr>,
        data: [u8; 8],
        ctx: &mut Ctx<'_>,
    ) {
        let Some(p) = &self.probe else { return };
        if p.challenge != data || p.addr != from {
            return;
        }
        debug!(session = ?self.id, %from, "path validated");
        let local = local.or(p.local);
        self.probe = None;
        self.timers.stop(TimerKind::PathProbe);
        self.set_route(now, Route::direct(from, local), ctx);
    }

    /// Moves the session to `route` and reports it.
    pub(crate) fn set_route(&mut self, now: Instant, route: Route, ctx: &mut Ctx<'_>) {
        if self.route == route {
            return;
        }
        self.route = route;
        self.on_route_change(now, route);
        self.stats.path_changes += 1;
        self.send_observed = ctx.config.send_observed_addresses;
        let path = match route {
            Route::Direct { remote, .. } => PathInfo::Direct(remote),
            Route::Relay { .. } => PathInfo::Relayed {
                relay: self.relay_peer.unwrap_or(PeerId::from_bytes([0; 32])),
            },
        };
        if self.reported {
            ctx.events.push_back(Event::PathChanged {
                session: self.id,
                path,
            });
        }
    }

    pub(super) fn on_probe_timeout(&mut self, now: Instant) {
        let pto = self.rtt.pto();
        let Some(p) = self.probe.as_mut() else { return };
        if p.sent >= MAX_CHALLENGES {
            self.probe = None;
            return;
        }
        p.need_send = true;
        self.timers
            .set(TimerKind::PathProbe, now + pto * 2u32.pow(p.sent.min(4)));
    }
}
