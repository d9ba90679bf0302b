//! Bounded queues of unreliable datagrams (DATAGRAM frames), one for sending and one for
//! receiving per session.
//!
//! **Drop policy.** Both queues are bounded in bytes; every datagram is charged its length
//! plus [`PER_DATAGRAM_OVERHEAD`] (so a flood of empty datagrams is bounded too). When a new
//! datagram does not fit, the *oldest* queued datagrams are dropped to make room and counted
//! in [`DatagramQueue::dropped`]: for unreliable traffic the newest data is the most useful
//! (a newer position update, a newer audio frame), and the sender never blocks. A datagram
//! larger than the whole queue or than [`DatagramQueue::max_size`] is refused with a typed
//! error instead.
//!
//! Allocation: the byte ring and the length ring are reserved up to the byte cap on first use
//! and reused afterwards.

use std::collections::VecDeque;

use crate::wire::codec::Writer;
use crate::wire::frame::ty;
use crate::wire::varint;

/// Bytes charged per queued datagram on top of its payload.
pub const PER_DATAGRAM_OVERHEAD: usize = 16;

/// A datagram could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// Larger than the largest datagram the path carries now (`max`, which tracks the path
    /// MTU); send less per datagram or use a stream.
    #[error("datagram of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The datagram's length.
        len: usize,
        /// The current maximum.
        max: usize,
    },
    /// The peer did not enable datagrams (maximum size 0).
    #[error("datagrams are disabled on this session")]
    Disabled,
}

/// What [`DatagramQueue::write_frame`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A DATAGRAM frame of this payload length was written.
    Written(usize),
    /// The front datagram does not fit in the room left; try again in a fresh packet.
    NoRoom,
    /// Nothing is queued.
    Empty,
}

/// A bounded FIFO of datagrams (drop-oldest on overflow).
#[derive(Clone, Debug)]
pub struct DatagramQueue {
    bytes: VecDeque<u8>,
    lens: VecDeque<usize>,
    charged: usize,
    cap: usize,
    max_size: usize,
    dropped: u64,
}

impl DatagramQueue {
    /// A queue charging at most `cap_bytes`, accepting datagrams of up to `max_size` bytes.
    pub fn new(cap_bytes: usize, max_size: usize) -> Self {
        Self {
            bytes: VecDeque::new(),
            lens: VecDeque::new(),
            charged: 0,
            cap: cap_bytes,
            max_size,
            dropped: 0,
        }
    }

    /// The largest datagram accepted.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Sets the largest datagram accepted (from the path MTU). Queued datagrams that no
    /// longer fit are dropped when they reach the front of a send queue.
    pub fn set_max_size(&mut self, max: usize) {
        self.max_size = max;
    }

    /// Queues a copy of `data`, dropping the oldest datagrams if needed.
    ///
    /// # Errors
    /// [`DatagramError::TooLarge`] if `data` exceeds [`DatagramQueue::max_size`] or the whole
    /// queue; [`DatagramError::Disabled`] if the maximum is 0. Nothing is queued or dropped
    /// then.
    pub fn push(&mut self, data: &[u8]) -> Result<(), DatagramError> {
        if self.max_size == 0 {
            return Err(DatagramError::Disabled);
        }
        let cost = data.len().saturating_add(PER_DATAGRAM_OVERHEAD);
        if data.len() > self.max_size || cost > self.cap {
            return Err(DatagramError::TooLarge {
                len: data.len(),
                max: self
                    .max_size
                    .min(self.cap.saturating_sub(PER_DATAGRAM_OVERHEAD)),
            });
        }
        if self.bytes.capacity() == 0 {
            self.bytes.reserve(self.cap);
            self.lens.reserve(self.cap / PER_DATAGRAM_OVERHEAD + 1);
        }
        while self.charged + cost > self.cap {
            self.drop_front();
            self.dropped += 1;
        }
        self.bytes.extend(data);
        self.lens.push_back(data.len());
        self.charged += cost;
        Ok(())
    }

    /// Like [`DatagramQueue::push`] for received datagrams: oversize ones are dropped and
    /// counted instead of returning an error (the peer does not get to make us fail).
    pub fn push_received(&mut self, data: &[u8]) {
        if self.push(data).is_err() {
            self.dropped += 1;
        }
    }

    fn drop_front(&mut self) {
        if let Some(len) = self.lens.pop_front() {
            self.bytes.drain(..len);
            self.charged -= len + PER_DATAGRAM_OVERHEAD;
        }
    }

    /// Length of the oldest datagram.
    pub fn peek_len(&self) -> Option<usize> {
        self.lens.front().copied()
    }

    /// Removes the oldest datagram, copying it into `buf`. Returns its full length; if `buf`
    /// is shorter, the rest is discarded (as with a UDP socket: check
    /// [`DatagramQueue::peek_len`] first).
    pub fn pop_into(&mut self, buf: &mut [u8]) -> Option<usize> {
        let len = self.lens.pop_front()?;
        let n = len.min(buf.len());
        let (a, b) = self.bytes.as_slices();
        let from_a = n.min(a.len());
        buf[..from_a].copy_from_slice(&a[..from_a]);
        buf[from_a..n].copy_from_slice(&b[..n - from_a]);
        self.bytes.drain(..len);
        self.charged -= len + PER_DATAGRAM_OVERHEAD;
        Some(len)
    }

    /// Writes the oldest datagram as a DATAGRAM frame into `w` if it fits in the room left.
    /// A datagram that has become larger than [`DatagramQueue::max_size`] (the path MTU
    /// shrank) is dropped and counted instead.
    pub fn write_frame(&mut self, w: &mut Writer<'_>) -> WriteOutcome {
        loop {
            let Some(len) = self.peek_len() else {
                return WriteOutcome::Empty;
            };
            if len > self.max_size {
                self.drop_front();
                self.dropped += 1;
                continue;
            }
            if frame_len(len) > w.remaining() {
                return WriteOutcome::NoRoom;
            }
            let data = &self.bytes.make_contiguous()[..len];
            // Cannot fail: the room was checked.
            if w.varint(ty::DATAGRAM).is_err() || w.varint_bytes(data).is_err() {
                return WriteOutcome::NoRoom;
            }
            self.drop_front();
            return WriteOutcome::Written(len);
        }
    }

    /// Datagrams dropped by the overflow policy (or oversize on receipt).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }
}

/// Encoded size of a DATAGRAM frame carrying `len` bytes.
pub fn frame_len(len: usize) -> usize {
    1 + varint::size(len as u64).unwrap_or(8) + len
}

/// The largest datagram payload that fits in one packet of `packet_room` bytes of frame space.
pub fn max_payload(packet_room: usize) -> usize {
    let mut n = packet_room.saturating_sub(1 + 2);
    while n > 0 && frame_len(n) > packet_room {
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::{Frame, frames};

    #[test]
    fn fifo_and_drop_oldest() {
        let mut q = DatagramQueue::new(3 * (100 + PER_DATAGRAM_OVERHEAD), 1000);
        for i in 0..5u8 {
            q.push(&[i; 100]).unwrap();
        }
        assert_eq!((q.len(), q.dropped()), (3, 2));
        let mut buf = [0u8; 100];
        assert_eq!(q.pop_into(&mut buf), Some(100));
        assert_eq!(buf, [2; 100]);
        // Short buffer: truncated, full length reported.
        let mut small = [0u8; 10];
        assert_eq!(q.pop_into(&mut small), Some(100));
        assert_eq!(small, [3; 10]);
        assert_eq!(q.pop_into(&mut buf), Some(100));
        assert_eq!(buf, [4; 100]);
        assert_eq!(q.pop_into(&mut buf), None);
        // Empty datagrams are bounded too.
        for _ in 0..1000 {
            q.push(&[]).unwrap();
        }
        assert!(q.len() <= 3 * (100 + PER_DATAGRAM_OVERHEAD) / PER_DATAGRAM_OVERHEAD);
    }

    #[test]
    fn oversize_is_a_typed_error() {
        let mut q = DatagramQueue::new(10_000, 1100);
        assert_eq!(
            q.push(&[0; 1101]),
            Err(DatagramError::TooLarge {
                len: 1101,
                max: 1100
            })
        );
        assert!(q.is_empty());
        q.set_max_size(0);
        assert_eq!(q.push(&[0; 1]), Err(DatagramError::Disabled));
        let mut r = DatagramQueue::new(10_000, 1100);
        r.push_received(&[0; 2000]);
        assert_eq!((r.len(), r.dropped()), (0, 1));
    }

    #[test]
    fn frames_fit_or_wait_and_shrunk_mtu_drops() {
        let mut q = DatagramQueue::new(10_000, 1100);
        q.push(b"hello").unwrap();
        q.push(&[7; 1000]).unwrap();
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        assert_eq!(q.write_frame(&mut w), WriteOutcome::Written(5));
        assert_eq!(q.write_frame(&mut w), WriteOutcome::NoRoom);
        let n = w.len();
        assert_eq!(
            frames(&buf[..n]).next(),
            Some(Ok(Frame::Datagram { data: b"hello" }))
        );
        q.set_max_size(500);
        let mut w = Writer::new(&mut buf);
        assert_eq!(q.write_frame(&mut w), WriteOutcome::Empty);
        assert_eq!(q.dropped(), 1);
        assert_eq!(max_payload(1200), 1197);
        assert_eq!(frame_len(max_payload(1200)), 1200);
        assert_eq!(max_payload(0), 0);
    }
}
