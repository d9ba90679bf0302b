//! Several local sockets per node: the main one plus probing sockets for hole punching and
//! birthday-paradox port prediction.

use std::net::{IpAddr, SocketAddr};

use crate::config::UdpConfig;
use crate::error::SocketError;
use crate::socket::UdpSocket;

/// Default cap on sockets in a [`SocketSet`]: enough for a birthday-paradox probe of 256
/// ports against a hard NAT, small enough for default descriptor limits (1024).
pub const DEFAULT_MAX_SOCKETS: usize = 256;

/// A handle to a socket in a [`SocketSet`]. Generational: once the socket is removed the
/// handle stays invalid even when its slot is reused. [`SocketId::index`] is stable while
/// the socket lives and small, so it can serve as a poller token (`mio::Token`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketId {
    index: u32,
    generation: u32,
}

impl SocketId {
    /// The slot number (< the set's cap), for use as a poller token.
    pub fn index(self) -> usize {
        self.index as usize
    }
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    socket: Option<UdpSocket>,
}

/// The local sockets of one node, with a cap on their number.
///
/// The first socket added is the *primary* one: the core's transmits with `src: None` go
/// there. Transmits with `src: Some(addr)` go to the socket bound to `addr`
/// ([`route`](Self::route)).
#[derive(Debug)]
pub struct SocketSet {
    slots: Vec<Slot>,
    max: usize,
    len: usize,
    primary: Option<SocketId>,
}

impl SocketSet {
    /// An empty set holding at most `max_sockets` sockets (at least 1).
    pub fn new(max_sockets: usize) -> Self {
        Self {
            slots: Vec::new(),
            max: max_sockets.max(1),
            len: 0,
            primary: None,
        }
    }

    /// Binds a socket (see [`UdpSocket::bind`]) and adds it.
    ///
    /// # Errors
    /// [`SocketError::SetFull`] when the set is at its cap (nothing is bound then), or
    /// whatever [`UdpSocket::bind`] returns.
    pub fn bind(&mut self, addr: SocketAddr, config: &UdpConfig) -> Result<SocketId, SocketError> {
        if self.len >= self.max {
            return Err(SocketError::SetFull { max: self.max });
        }
        let socket = UdpSocket::bind(addr, config)?;
        self.insert(socket)
    }

    /// Adds an already bound socket. The first socket of an empty set becomes primary.
    ///
    /// # Errors
    /// [`SocketError::SetFull`] when the set is at its cap; the socket is dropped (closed).
    pub fn insert(&mut self, socket: UdpSocket) -> Result<SocketId, SocketError> {
        if self.len >= self.max {
            return Err(SocketError::SetFull { max: self.max });
        }
        let index = match self.slots.iter().position(|s| s.socket.is_none()) {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    socket: None,
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        slot.socket = Some(socket);
        self.len += 1;
        let id = SocketId {
            index: index as u32,
            generation: slot.generation,
        };
        if self.primary.is_none() {
            self.primary = Some(id);
        }
        Ok(id)
    }

    /// Removes and returns a socket (dropping it closes it; deregister it from your poller
    /// first). Removing the primary socket leaves the set without one until
    /// [`set_primary`](Self::set_primary). Returns `None` for a stale handle.
    pub fn remove(&mut self, id: SocketId) -> Option<UdpSocket> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.generation != id.generation {
            return None;
        }
        let socket = slot.socket.take()?;
        self.len -= 1;
        if self.primary == Some(id) {
            self.primary = None;
        }
        Some(socket)
    }

    /// The socket behind a handle, or `None` when the handle is stale.
    pub fn get(&self, id: SocketId) -> Option<&UdpSocket> {
        let slot = self.slots.get(id.index())?;
        (slot.generation == id.generation)
            .then_some(slot.socket.as_ref())
            .flatten()
    }

    /// The live socket in slot `index` (e.g. from a poller token) and its handle.
    pub fn by_index(&self, index: usize) -> Option<(SocketId, &UdpSocket)> {
        let slot = self.slots.get(index)?;
        let socket = slot.socket.as_ref()?;
        Some((
            SocketId {
                index: index as u32,
                generation: slot.generation,
            },
            socket,
        ))
    }

    /// Makes `id` the primary socket. Returns `false` (and changes nothing) for a stale
    /// handle.
    pub fn set_primary(&mut self, id: SocketId) -> bool {
        if self.get(id).is_none() {
            return false;
        }
        self.primary = Some(id);
        true
    }

    /// The primary socket, if any.
    pub fn primary(&self) -> Option<(SocketId, &UdpSocket)> {
        let id = self.primary?;
        Some((id, self.get(id)?))
    }

    /// The socket bound exactly to `local`, or else one bound to the wildcard address of
    /// the same family and port.
    pub fn by_local(&self, local: SocketAddr) -> Option<(SocketId, &UdpSocket)> {
        let mut wildcard = None;
        for (id, s) in self.iter() {
            let bound = s.local_addr();
            if bound == local {
                return Some((id, s));
            }
            if bound.port() == local.port()
                && bound.ip().is_unspecified()
                && bound.is_ipv4() == local.is_ipv4()
            {
                wildcard = Some((id, s));
            }
        }
        wildcard
    }

    /// Where a core transmit with source `src` goes: the primary socket for `None`, else
    /// the socket bound to `src`. The returned IP, when set, is the source address to put
    /// in [`crate::Transmit::src_ip`] (the socket is bound to a wildcard address). `None`
    /// when no socket matches (the probing socket was removed): drop the transmit.
    pub fn route(&self, src: Option<SocketAddr>) -> Option<(&UdpSocket, Option<IpAddr>)> {
        match src {
            None => self.primary().map(|(_, s)| (s, None)),
            Some(addr) => {
                let (_, s) = self.by_local(addr)?;
                let src_ip = (s.local_addr().ip().is_unspecified() && !addr.ip().is_unspecified())
                    .then_some(addr.ip());
                Some((s, src_ip))
            }
        }
    }

    /// All sockets with their handles, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketId, &UdpSocket)> + '_ {
        (0..self.slots.len()).filter_map(|i| self.by_index(i))
    }

    /// Number of sockets.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cap given to [`new`](Self::new).
    pub fn max_sockets(&self) -> usize {
        self.max
    }
}

impl Default for SocketSet {
    /// An empty set capped at [`DEFAULT_MAX_SOCKETS`].
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SOCKETS)
    }
}
