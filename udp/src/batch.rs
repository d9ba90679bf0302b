//! A reusable set of receive buffers, allocated once.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use crate::socket::{RecvMeta, UdpSocket};
use crate::sys::BATCH;

/// Receive slots sized to never truncate: larger than any UDP payload (65527 bytes), and
/// so large enough for a GRO-coalesced message.
pub const GRO_SLOT_LEN: usize = 1 << 16;

/// Receive buffers for [`UdpSocket::recv_batch`]: `slots` buffers of `slot_len` bytes in one
/// allocation made at construction, reused for every call.
#[derive(Debug)]
pub struct RecvBatch {
    storage: Box<[u8]>,
    slot_len: usize,
    meta: Box<[RecvMeta]>,
    filled: usize,
}

/// One received datagram, borrowed from a [`RecvBatch`].
#[derive(Debug)]
pub struct Datagram<'a> {
    /// Sender.
    pub from: SocketAddr,
    /// Local address it arrived on (see [`RecvMeta::local`]).
    pub local: SocketAddr,
    /// The datagram's bytes, mutable so the core can decrypt in place.
    pub data: &'a mut [u8],
}

impl RecvBatch {
    /// `slots` buffers (clamped to 1..=[`crate::MAX_BATCH`]) of `slot_len` bytes each
    /// (at least 1). Datagrams longer than `slot_len` arrive truncated and are dropped.
    pub fn new(slots: usize, slot_len: usize) -> Self {
        let slots = slots.clamp(1, BATCH);
        let slot_len = slot_len.max(1);
        Self {
            storage: vec![0u8; slots * slot_len].into_boxed_slice(),
            slot_len,
            meta: vec![RecvMeta::EMPTY; slots].into_boxed_slice(),
            filled: 0,
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.meta.len()
    }

    /// Bytes per slot.
    pub fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// Messages filled by the last receive.
    pub fn len(&self) -> usize {
        self.filled
    }

    /// Whether the last receive filled nothing.
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Metadata of the messages filled by the last receive.
    pub fn metas(&self) -> &[RecvMeta] {
        &self.meta[..self.filled]
    }

    /// Datagrams (after GRO splitting) filled by the last receive.
    pub fn datagram_count(&self) -> usize {
        self.metas().iter().map(RecvMeta::datagram_count).sum()
    }

    /// Messages that were truncated in the last receive (their cut datagrams are dropped).
    pub fn truncated_count(&self) -> usize {
        self.metas().iter().filter(|m| m.truncated).count()
    }

    /// Message `i` of the last receive with its intact bytes, or `None` past the end.
    pub fn message(&self, i: usize) -> Option<(&RecvMeta, &[u8])> {
        let meta = self.metas().get(i)?;
        let start = i * self.slot_len;
        Some((meta, &self.storage[start..start + meta.len]))
    }

    /// Every datagram of the last receive in arrival order, GRO runs split into their
    /// datagrams and truncated remains skipped.
    pub fn datagrams(&mut self) -> impl Iterator<Item = Datagram<'_>> + '_ {
        let filled = self.filled;
        self.storage
            .chunks_mut(self.slot_len)
            .zip(self.meta.iter())
            .take(filled)
            .flat_map(|(slot, meta)| {
                meta.datagrams(slot).map(move |data| Datagram {
                    from: meta.from,
                    local: meta.local,
                    data,
                })
            })
    }

    /// Runs one receive into the slots; used by [`UdpSocket::recv_batch`].
    fn fill(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.filled = 0;
        let mut chunks = self.storage.chunks_mut(self.slot_len);
        let mut slices: [IoSliceMut<'_>; BATCH] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
        let n = self.meta.len();
        let got = socket.recv(&mut slices[..n], &mut self.meta)?;
        self.filled = got;
        Ok(got)
    }
}

impl Default for RecvBatch {
    /// A full batch ([`crate::MAX_BATCH`] slots) of [`GRO_SLOT_LEN`] bytes each (4 MiB):
    /// never truncates, with or without GRO.
    fn default() -> Self {
        Self::new(BATCH, GRO_SLOT_LEN)
    }
}

impl UdpSocket {
    /// Receives one batch (up to [`RecvBatch::slots`] messages, one `recvmmsg`) into
    /// `batch`, replacing its previous contents. Returns the number of messages; iterate
    /// the datagrams with [`RecvBatch::datagrams`].
    ///
    /// # Errors
    /// `WouldBlock` when nothing is queued (the batch is then empty): wait until readable.
    /// Other errors come from the OS and mean the socket is unusable.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.fill(self)
    }
}
