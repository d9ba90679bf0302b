//! Relaying. A client marks its session with a rendezvous server as a relay
//! ([`Node::use_relay`]) and can then run sessions with other peers through it
//! ([`Node::connect_relayed`]): their datagrams travel inside RELAY frames of the encrypted
//! session with the server, so the server learns who talks to whom but can read nothing, and
//! every relayed datagram is authenticated twice (by the outer session and end to end).
//! A relay server ([`Config::relay_server`](crate::Config)) surfaces forwarding requests with
//! [`Node::poll_relay`]; the application checks its policy and quotas and forwards with
//! [`Node::send_relay`].

use std::collections::VecDeque;
use std::time::Instant;

use super::Node;
use crate::crypto::handshake::{Pattern, Suite};
use crate::error::{ConnectError, SessionError};
use crate::identity::PeerId;
use crate::ids::SessionId;
use crate::session::{DropReason, Route};

/// A relayed datagram waiting to be processed.
#[derive(Debug)]
pub(crate) struct RelayItem {
    pub via: SessionId,
    pub peer: PeerId,
    pub data: Vec<u8>,
}

/// Bounded queue of relayed datagrams with recycled buffers (no allocation once warm).
#[derive(Debug)]
pub struct RelayQueue {
    items: VecDeque<RelayItem>,
    pool: Vec<Vec<u8>>,
    cap: usize,
}

impl RelayQueue {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            items: VecDeque::new(),
            pool: Vec::new(),
            cap,
        }
    }

    /// Queues a copy of `data`; false (dropped) when full.
    pub(crate) fn push(&mut self, via: SessionId, peer: PeerId, data: &[u8]) -> bool {
        if self.items.len() >= self.cap {
            return false;
        }
        let mut v = self.pool.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(data);
        self.items.push_back(RelayItem { via, peer, data: v });
        true
    }

    pub(crate) fn pop(&mut self) -> Option<RelayItem> {
        self.items.pop_front()
    }

    pub(crate) fn recycle(&mut self, v: Vec<u8>) {
        if self.pool.len() < self.cap {
            self.pool.push(v);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A datagram a peer asked this relay server to forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayRequest {
    /// The authenticated sender (its session with us proved this key).
    pub from: PeerId,
    /// The peer it is for.
    pub to: PeerId,
    /// Bytes written into the caller's buffer.
    pub len: usize,
}

/// Why [`Node::send_relay`] did not forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// No established session with the target peer.
    #[error("the target peer is not connected to this relay")]
    NotConnected,
    /// The target's relay queue is full; the datagram was dropped.
    #[error("relay queue full")]
    QueueFull,
}

impl Node {
    /// Client: use the established session `session` (with a rendezvous server) as a relay.
    /// RELAY frames are accepted only from such sessions.
    pub fn use_relay(&mut self, session: SessionId) -> Result<(), SessionError> {
        let slot = self.check(session)?;
        let peer = self.slots[slot as usize]
            .session
            .as_ref()
            .and_then(|s| s.peer)
            .ok_or(SessionError::NotEstablished)?;
        self.relays.insert(session, peer);
        Ok(())
    }

    /// Client: starts a session with `peer` through the relay session `relay` (see
    /// [`Node::use_relay`]). The first bytes flow as soon as the handshake completes, with no
    /// hole punching; direct paths can be validated later and take over.
    pub fn connect_relayed(
        &mut self,
        now: Instant,
        peer: PeerId,
        relay: SessionId,
    ) -> Result<SessionId, ConnectError> {
        let Some(&relay_peer) = self.relays.get(&relay) else {
            return Err(ConnectError::NoRelay);
        };
        let id = self.start_connect(now, Route::Relay { via: relay, peer }, Some(peer))?;
        if let Some(s) = self.slots[id.index as usize].session.as_mut() {
            s.relay_peer = Some(relay_peer);
        }
        Ok(id)
    }

    /// Relay server: the next forwarding request, its datagram copied into `buf` (which
    /// must hold `max_udp_payload` bytes). Call until `None` after every input.
    pub fn poll_relay(&mut self, buf: &mut [u8]) -> Option<RelayRequest> {
        loop {
            let item = self.relay_requests.pop()?;
            let from = self.peer_of(item.via);
            let len = item.data.len();
            let fits = buf.len() >= len;
            if fits {
                buf[..len].copy_from_slice(&item.data);
            }
            self.relay_requests.recycle(item.data);
            match from {
                Some(from) if fits => {
                    return Some(RelayRequest {
                        from,
                        to: item.peer,
                        len,
                    });
                }
                _ => self.stats.drops.add(DropReason::RelayDenied),
            }
        }
    }

    /// Relay server: forwards `data` from `from` to the peer `to` (after the application
    /// checked its policy and quotas).
    pub fn send_relay(&mut self, from: PeerId, to: PeerId, data: &[u8]) -> Result<(), RelayError> {
        let Some(&id) = self.by_peer.get(&to) else {
            return Err(RelayError::NotConnected);
        };
        let Ok(slot) = self.check(id) else {
            return Err(RelayError::NotConnected);
        };
        let queued = self
            .with_session(slot, |s, _| s.queue_relay(from, data))
            .unwrap_or(false);
        if queued {
            Ok(())
        } else {
            self.stats.drops.add(DropReason::RelayQueueFull);
            Err(RelayError::QueueFull)
        }
    }

    /// The established session this node has with `peer` (most recent), if any.
    pub fn session_with(&self, peer: &PeerId) -> Option<SessionId> {
        self.by_peer.get(peer).copied()
    }

    fn peer_of(&self, id: SessionId) -> Option<PeerId> {
        self.session(id).and_then(|s| s.peer)
    }

    /// Processes RELAY frames the sessions just received.
    pub(super) fn drain_relay_in(&mut self, now: Instant) {
        while let Some(item) = self.relay_in.pop() {
            if self.config.relay_server {
                if !self.relay_requests.push(item.via, item.peer, &item.data) {
                    self.stats.drops.add(DropReason::RelayQueueFull);
                }
                self.relay_in.recycle(item.data);
            } else if self.relays.contains_key(&item.via) {
                let mut data = item.data;
                let route = Route::Relay {
                    via: item.via,
                    peer: item.peer,
                };
                self.handle_routed(now, route, &mut data);
                self.relay_in.recycle(data);
            } else {
                // RELAY frames from a session we never chose as relay: ignored.
                self.stats.drops.add(DropReason::RelayDenied);
                self.relay_in.recycle(item.data);
            }
        }
    }

    /// The handshake suite for a new outgoing session.
    pub(super) fn suite_for(&self, peer: Option<&PeerId>) -> Suite {
        Suite {
            pattern: if peer.is_some() {
                Pattern::IK
            } else {
                Pattern::XX
            },
            cipher: self.config.handshake_cipher,
        }
    }

    pub(super) fn relay_requests_pending(&self) -> bool {
        !self.relay_requests.is_empty()
    }
}
