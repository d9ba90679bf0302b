//! Turning one-datagram-at-a-time output into GSO runs.
//!
//! The core's `poll_transmit(now, &mut buf)` writes one datagram per call. A driver that
//! lets it write each datagram straight behind the previous one in a [`TransmitQueue`]
//! gets GSO for free: consecutive datagrams to the same destination with the same size
//! become one run, which the socket sends as one GSO message.

use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr};

use crate::config::DEFAULT_MAX_GSO_SEGMENTS;
use crate::socket::{MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6, Transmit, UdpSocket};

/// One run of equal-size datagrams (the last may be shorter) to one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    dst: SocketAddr,
    /// The core's socket selector (`Transmit::src`), passed to the router on flush.
    src: Option<SocketAddr>,
    start: usize,
    len: usize,
    segment: usize,
    segments: usize,
    /// A shorter datagram ended the run: nothing may follow it in the same run.
    closed: bool,
}

/// Outcome counters of a [`TransmitQueue`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Datagrams handed to a socket.
    pub sent: u64,
    /// Datagrams dropped because their run failed (e.g. `EMSGSIZE`) or had no socket.
    pub dropped: u64,
}

/// A send buffer that packs datagrams into GSO runs and flushes them with batched sends.
/// Allocated once; nothing is allocated per datagram.
///
/// ```text
/// while let Some(slot) = queue.slot(MAX_DATAGRAM) {
///     let Some(t) = node.poll_transmit(now, slot) else { break };
///     queue.commit(t.dst, t.src, t.len);
/// }
/// queue.flush(|src| sockets.route(src))?;   // WouldBlock: wait for writable, flush again
/// ```
#[derive(Debug)]
pub struct TransmitQueue {
    buf: Box<[u8]>,
    used: usize,
    runs: Vec<Run>,
    /// Runs already sent (from the front of `runs`).
    flushed: usize,
    max_runs: usize,
    max_segments: usize,
    stats: QueueStats,
}

impl TransmitQueue {
    /// A queue of `capacity` bytes holding at most `max_runs` runs (both at least 1).
    /// 1 MiB and 256 runs suit a bulk sender; runs are capped at
    /// [`DEFAULT_MAX_GSO_SEGMENTS`] datagrams and the 64 KiB IP limit.
    pub fn new(capacity: usize, max_runs: usize) -> Self {
        let max_runs = max_runs.max(1);
        Self {
            buf: vec![0u8; capacity.max(1)].into_boxed_slice(),
            used: 0,
            runs: Vec::with_capacity(max_runs),
            flushed: 0,
            max_runs,
            max_segments: DEFAULT_MAX_GSO_SEGMENTS,
            stats: QueueStats::default(),
        }
    }

    /// Space for the next datagram: `max_len` bytes right after the previous one, or
    /// `None` when the queue is full (flush first). Write the datagram at the start of the
    /// slice, then [`commit`](Self::commit) its length.
    pub fn slot(&mut self, max_len: usize) -> Option<&mut [u8]> {
        if self.used + max_len > self.buf.len() || self.runs.len() >= self.max_runs {
            return None;
        }
        Some(&mut self.buf[self.used..self.used + max_len])
    }

    /// Records the datagram of `len` bytes just written at the start of the last
    /// [`slot`](Self::slot), for `dst`, from the socket `src` selects (the core's
    /// `Transmit::src`).
    ///
    /// # Panics
    /// If `len` exceeds the buffer or no run slot is left: call [`slot`](Self::slot)
    /// first, as the loop above does, and commit at most the slot's length.
    pub fn commit(&mut self, dst: SocketAddr, src: Option<SocketAddr>, len: usize) {
        assert!(self.used + len <= self.buf.len(), "commit past the slot");
        let limit = if dst.is_ipv4() {
            MAX_UDP_PAYLOAD_V4
        } else {
            MAX_UDP_PAYLOAD_V6
        };
        let max_segments = self.max_segments;
        if let Some(last) = self.runs.last_mut() {
            let joins = !last.closed
                && last.dst == dst
                && last.src == src
                && len > 0
                && len <= last.segment
                && last.segments < max_segments
                && last.len + len <= limit
                && last.start + last.len == self.used;
            if joins {
                last.len += len;
                last.segments += 1;
                last.closed = len < last.segment;
                self.used += len;
                return;
            }
        }
        assert!(self.runs.len() < self.max_runs, "no run slot left");
        self.runs.push(Run {
            dst,
            src,
            start: self.used,
            len,
            segment: len.max(1),
            segments: 1,
            closed: false,
        });
        self.used += len;
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.flushed == self.runs.len()
    }

    /// Datagrams waiting to be sent.
    pub fn pending_datagrams(&self) -> usize {
        self.runs[self.flushed..].iter().map(|r| r.segments).sum()
    }

    /// Counters since creation.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Sends every waiting run in order. `route` maps a run's `src` to the socket (and
    /// source IP) to use, typically [`crate::SocketSet::route`]; consecutive runs for the
    /// same socket go out in one [`UdpSocket::send`] call.
    ///
    /// A run the socket rejects (e.g. `EMSGSIZE`, which a path-MTU probe may provoke) or
    /// that has no socket is dropped and counted in [`QueueStats::dropped`]; the protocol
    /// treats it as loss.
    ///
    /// # Errors
    /// `WouldBlock` when a socket's buffer is full: the unsent runs stay queued; wait until
    /// writable and flush again. Other errors never escape (see above).
    pub fn flush<'s>(
        &mut self,
        mut route: impl FnMut(Option<SocketAddr>) -> Option<(&'s UdpSocket, Option<IpAddr>)>,
    ) -> io::Result<()> {
        const GROUP: usize = crate::sys::BATCH;
        while self.flushed < self.runs.len() {
            let first = self.runs[self.flushed];
            let Some((socket, src_ip)) = route(first.src) else {
                self.stats.dropped += first.segments as u64;
                self.flushed += 1;
                continue;
            };
            // The runs from here on that share this socket selector, up to one batch.
            let mut transmits = [Transmit::new(first.dst, &[]); GROUP];
            let mut n = 0;
            for r in self.runs[self.flushed..]
                .iter()
                .take_while(|r| r.src == first.src)
                .take(GROUP)
            {
                transmits[n] = Transmit {
                    dst: r.dst,
                    contents: &self.buf[r.start..r.start + r.len],
                    segment_size: (r.segments > 1).then_some(r.segment),
                    src_ip,
                };
                n += 1;
            }
            match socket.send(&transmits[..n]) {
                Ok(k) => {
                    for r in &self.runs[self.flushed..self.flushed + k] {
                        self.stats.sent += r.segments as u64;
                    }
                    self.flushed += k;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Err(e),
                Err(e) => {
                    tracing::debug!(%e, dst = %first.dst, "dropping a run the socket refused");
                    self.stats.dropped += first.segments as u64;
                    self.flushed += 1;
                }
            }
        }
        self.clear();
        Ok(())
    }

    /// Forgets everything queued (unsent datagrams are lost, not counted).
    pub fn clear(&mut self) {
        self.runs.clear();
        self.flushed = 0;
        self.used = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(q: &mut TransmitQueue, dst: SocketAddr, src: Option<SocketAddr>, len: usize) {
        let slot = q.slot(2000).expect("room");
        slot[..len].fill(len as u8);
        q.commit(dst, src, len);
    }

    #[test]
    fn runs_form_by_destination_size_and_source() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let mut q = TransmitQueue::new(1 << 20, 16);
        for _ in 0..3 {
            push(&mut q, a, None, 1200);
        }
        push(&mut q, a, None, 500); // short tail closes the run
        push(&mut q, a, None, 500); // so this starts a new one
        push(&mut q, b, None, 500); // other destination
        push(&mut q, b, Some(a), 500); // other socket
        push(&mut q, b, Some(a), 1200); // larger than the run's segment: new run
        let shape: Vec<(u16, usize, usize, bool)> = q
            .runs
            .iter()
            .map(|r| (r.dst.port(), r.segment, r.segments, r.closed))
            .collect();
        assert_eq!(
            shape,
            vec![
                (1, 1200, 4, true),
                (1, 500, 1, false),
                (2, 500, 1, false),
                (2, 500, 1, false),
                (2, 1200, 1, false),
            ]
        );
        assert_eq!(q.pending_datagrams(), 8);
        // Runs are contiguous in the buffer.
        let mut end = 0;
        for r in &q.runs {
            assert_eq!(r.start, end);
            end += r.len;
        }
    }

    #[test]
    fn runs_respect_segment_and_size_caps() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut q = TransmitQueue::new(1 << 20, 64);
        for _ in 0..(DEFAULT_MAX_GSO_SEGMENTS + 1) {
            push(&mut q, a, None, 100);
        }
        assert_eq!(q.runs.len(), 2);
        assert_eq!(q.runs[0].segments, DEFAULT_MAX_GSO_SEGMENTS);
        q.clear();
        // 1452-byte datagrams: 45 fit under the 65 507-byte IPv4 limit, the 46th starts a
        // new run.
        for _ in 0..46 {
            push(&mut q, a, None, 1452);
        }
        assert!(q.runs.iter().all(|r| r.len <= MAX_UDP_PAYLOAD_V4));
        assert_eq!(q.runs[0].segments, MAX_UDP_PAYLOAD_V4 / 1452);
    }

    #[test]
    fn a_full_queue_refuses_slots() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let mut q = TransmitQueue::new(4000, 2);
        push(&mut q, a, None, 1000);
        push(&mut q, b, None, 1000);
        // Both run slots are used: no slot, even with bytes to spare.
        assert!(q.slot(1000).is_none());
        let mut q2 = TransmitQueue::new(2500, 8);
        push(&mut q2, a, None, 1000);
        // Byte capacity runs out.
        assert!(q2.slot(2000).is_none());
        assert!(q2.slot(1500).is_some());
        q.clear();
        assert!(q.is_empty() && q.slot(2000).is_some());
    }
}
