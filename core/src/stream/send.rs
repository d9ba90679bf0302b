//! Send half of a stream: the buffer of written bytes, which ranges are in flight,
//! acknowledged or waiting for retransmission, the FIN, RESET and the peer's STOP_SENDING.
//!
//! The buffer holds bytes `[base, write_end)`: everything below `base` is acknowledged and
//! freed. `unsent` is the first byte never sent. Lost ranges go to a retransmit set that is
//! served before new data; acknowledged ranges above `base` are remembered so a late loss
//! report never resends acknowledged bytes. Both sets are bounded; on overflow they err on
//! the safe side (retransmit merges ranges, so a few acknowledged bytes may be resent; the
//! acknowledged set forgets its highest range and moves it to retransmit), so no byte is ever
//! forgotten — the property Pilot's truncation at close lacked. `write` accepts at most the
//! send buffer and never beyond the peer's stream credit, so memory per stream stays within
//! `min(send buffer, peer window)`.

use super::ring::ByteRing;
use crate::recovery::sack::RangeSet;

/// Most acknowledged or retransmit ranges tracked per stream (each is one sent frame's
/// worth at least; see the overflow policy above).
pub const MAX_SEND_RANGES: usize = 1024;

/// `write` could not take data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The send buffer is full or the peer's window is used up (it is not reading); wait for
    /// a `StreamWritable` event.
    #[error("stream blocked; wait for StreamWritable")]
    Blocked,
    /// The peer asked us to stop sending with this code (the stream was reset).
    #[error("peer stopped the stream with code {0}")]
    Stopped(u64),
    /// This side already finished or reset the stream.
    #[error("stream closed for writing")]
    Closed,
    /// The handle is stale or was never valid (the stream is gone).
    #[error("unknown or closed stream")]
    UnknownStream,
}

/// One frame's worth of stream data to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Offset of the first byte.
    pub offset: u64,
    /// Number of bytes (0 for a FIN-only or opening frame).
    pub len: usize,
    /// The frame carries the FIN.
    pub fin: bool,
    /// Bytes never sent before (charge them to the session's send credit).
    pub new_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fin {
    /// `finish` not called.
    Open,
    /// To be sent (or re-sent after loss).
    Pending,
    /// In flight.
    Sent,
    /// Acknowledged.
    Acked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reset {
    code: u64,
    final_size: u64,
    pending: bool,
    acked: bool,
}

/// The send half of one stream.
#[derive(Clone, Debug)]
pub struct SendStream {
    buf: ByteRing,
    base: u64,
    unsent: u64,
    acked: RangeSet,
    retransmit: RangeSet,
    capacity: u64,
    max_data: u64,
    fin: Fin,
    /// The opening (offset 0) frame must be sent even without data.
    open_pending: bool,
    open_acked: bool,
    reset: Option<Reset>,
    stop_code: Option<u64>,
}

impl SendStream {
    /// An empty stream buffering at most `capacity` bytes, with `max_data` initial credit
    /// from the peer. `announce` queues an opening frame so the peer learns of the stream
    /// (and its port) before any data is written.
    pub fn new(capacity: u64, max_data: u64, announce: bool) -> Self {
        Self {
            buf: ByteRing::new(),
            base: 0,
            unsent: 0,
            acked: RangeSet::new(MAX_SEND_RANGES),
            retransmit: RangeSet::new_merging(MAX_SEND_RANGES),
            capacity,
            max_data,
            fin: Fin::Open,
            open_pending: announce,
            open_acked: !announce,
            reset: None,
            stop_code: None,
        }
    }

    fn write_end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// Bytes `write` would accept now.
    pub fn write_room(&self) -> u64 {
        if self.reset.is_some() || self.fin != Fin::Open {
            return 0;
        }
        let buffered = self.buf.len() as u64;
        self.capacity
            .saturating_sub(buffered)
            .min(self.max_data.saturating_sub(self.write_end()))
    }

    /// Copies as much of `data` as the buffer and the peer's credit allow.
    ///
    /// # Errors
    /// [`WriteError::Blocked`] if nothing fits (and `data` is not empty),
    /// [`WriteError::Stopped`] after the peer's STOP_SENDING, [`WriteError::Closed`] after
    /// `finish` or `reset`.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        if let Some(code) = self.stop_code {
            return Err(WriteError::Stopped(code));
        }
        if self.reset.is_some() || self.fin != Fin::Open {
            return Err(WriteError::Closed);
        }
        let n = (self.write_room().min(data.len() as u64)) as usize;
        if n == 0 && !data.is_empty() {
            return Err(WriteError::Blocked);
        }
        self.buf.push(&data[..n]);
        Ok(n)
    }

    /// Marks the end of the stream after the bytes written so far.
    ///
    /// # Errors
    /// [`WriteError::Stopped`] or [`WriteError::Closed`] (already finished or reset).
    pub fn finish(&mut self) -> Result<(), WriteError> {
        if let Some(code) = self.stop_code {
            return Err(WriteError::Stopped(code));
        }
        if self.reset.is_some() || self.fin != Fin::Open {
            return Err(WriteError::Closed);
        }
        self.fin = Fin::Pending;
        Ok(())
    }

    /// Abandons sending with `code`: buffered data is dropped and a RESET_STREAM with the
    /// final size (everything ever sent) is queued. Returns false if there was nothing to
    /// reset (already reset, or everything including the FIN was acknowledged).
    pub fn reset(&mut self, code: u64) -> bool {
        if self.reset.is_some() || self.is_done() {
            return false;
        }
        self.reset = Some(Reset {
            code,
            final_size: self.unsent,
            pending: true,
            acked: false,
        });
        self.buf.clear();
        self.acked.clear();
        self.retransmit.clear();
        self.open_pending = false;
        true
    }

    /// The peer sent STOP_SENDING: the stream is reset with its code. Returns whether this
    /// changed anything (report `StreamStopped` then).
    pub fn on_stop_sending(&mut self, code: u64) -> bool {
        if self.stop_code.is_some() {
            return false;
        }
        self.stop_code = Some(code);
        self.reset(code)
    }

    /// The peer raised our stream credit. Returns true if the stream was blocked by it.
    pub fn on_max_data(&mut self, max: u64) -> bool {
        if max <= self.max_data {
            return false;
        }
        let was_blocked = self.max_data <= self.write_end();
        self.max_data = max;
        was_blocked
    }

    /// The peer's credit limit for this stream.
    pub fn max_data(&self) -> u64 {
        self.max_data
    }

    /// Whether new data is waiting only for stream credit.
    pub fn blocked_by_credit(&self) -> bool {
        self.reset.is_none() && self.unsent >= self.max_data && self.write_end() > self.unsent
    }

    /// A RESET_STREAM to send: `(code, final size)`; marks it sent.
    pub fn take_reset(&mut self) -> Option<(u64, u64)> {
        let r = self.reset.as_mut()?;
        if !r.pending {
            return None;
        }
        r.pending = false;
        Some((r.code, r.final_size))
    }

    /// Whether a RESET_STREAM waits to be sent.
    pub fn reset_pending(&self) -> bool {
        self.reset.is_some_and(|r| r.pending)
    }

    /// The RESET_STREAM was acknowledged.
    pub fn on_reset_acked(&mut self) {
        if let Some(r) = self.reset.as_mut() {
            r.acked = true;
        }
    }

    /// The RESET_STREAM was lost: send it again.
    pub fn on_reset_lost(&mut self) {
        if let Some(r) = self.reset.as_mut()
            && !r.acked
        {
            r.pending = true;
        }
    }

    fn contiguous_from(&self, offset: u64) -> usize {
        let idx = (offset - self.base) as usize;
        let (a, b) = self.buf.as_slices();
        if idx < a.len() {
            a.len() - idx
        } else {
            b.len().saturating_sub(idx - a.len())
        }
    }

    /// Whether [`SendStream::next_chunk`] would return something given unlimited session
    /// credit.
    pub fn has_data_to_send(&self) -> bool {
        if self.reset.is_some() {
            return false;
        }
        !self.retransmit.is_empty()
            || self.fin == Fin::Pending
            || (self.open_pending && self.unsent == 0)
            || (self.write_end() > self.unsent && self.unsent < self.max_data)
    }

    /// Takes the next frame's worth to send, at most `max_len` data bytes, new data limited
    /// by `session_credit`; retransmissions come first. The bytes are
    /// [`SendStream::data`]`(chunk.offset, chunk.len)`.
    pub fn next_chunk(&mut self, max_len: usize, session_credit: u64) -> Option<Chunk> {
        if self.reset.is_some() {
            return None;
        }
        let end = self.write_end();
        if let Some((lo, hi)) = self.retransmit.lowest() {
            let lo = lo.max(self.base);
            if lo <= hi {
                let len = (hi - lo + 1)
                    .min(max_len as u64)
                    .min(self.contiguous_from(lo) as u64) as usize;
                if len > 0 || max_len == 0 {
                    let fin = self.fin == Fin::Pending && lo + len as u64 == end;
                    if len > 0 {
                        self.retransmit.remove_range(lo, lo + len as u64 - 1);
                    }
                    if fin {
                        self.fin = Fin::Sent;
                    }
                    if len == 0 && !fin {
                        return None;
                    }
                    return Some(Chunk {
                        offset: lo,
                        len,
                        fin,
                        new_bytes: 0,
                    });
                }
            } else {
                self.retransmit.remove_below(self.base);
            }
        }
        let avail = end - self.unsent;
        let len = avail
            .min(max_len as u64)
            .min(self.max_data.saturating_sub(self.unsent))
            .min(session_credit);
        let len = if len > 0 {
            len.min(self.contiguous_from(self.unsent) as u64)
        } else {
            0
        } as usize;
        let offset = self.unsent;
        let fin = self.fin == Fin::Pending && offset + len as u64 == end;
        let open = self.open_pending && offset == 0;
        if len == 0 && !fin && !open {
            return None;
        }
        self.unsent += len as u64;
        if fin {
            self.fin = Fin::Sent;
        }
        if offset == 0 {
            self.open_pending = false;
        }
        Some(Chunk {
            offset,
            len,
            fin,
            new_bytes: len as u64,
        })
    }

    /// The bytes `offset..offset + len` (a range returned by [`SendStream::next_chunk`]).
    pub fn data(&self, offset: u64, len: usize) -> &[u8] {
        if len == 0 {
            return &[];
        }
        let idx = (offset - self.base) as usize;
        let (a, b) = self.buf.as_slices();
        if idx < a.len() {
            &a[idx..idx + len]
        } else {
            let i = idx - a.len();
            &b[i..i + len]
        }
    }

    /// A frame `offset..offset + len` (with `fin`) was acknowledged. Returns true if this
    /// completed the stream (every byte and the FIN acknowledged).
    pub fn on_ack(&mut self, offset: u64, len: usize, fin: bool) -> bool {
        if self.reset.is_some() || self.is_done() {
            return false;
        }
        if offset == 0 {
            self.open_acked = true;
            self.open_pending = false;
        }
        let end = offset.saturating_add(len as u64);
        if len > 0 && end > self.base && offset <= self.base && self.acked.is_empty() {
            // In-order fast path (the common case in a bulk transfer): the frame extends the
            // acknowledged prefix and no out-of-order range waits above it. Same result as
            // the general path below: insert, then at once consume the lowest range.
            self.buf.consume((end - self.base) as usize);
            self.base = end;
            self.retransmit.remove_below(end);
        } else if len > 0 && end > self.base {
            let lo = offset.max(self.base);
            let hi = end - 1;
            while self.acked.len_after_insert(lo, hi) > self.acked.max_ranges() {
                // Forget the highest acknowledged range: it will be resent (safe).
                let Some((l, h)) = self.acked.pop_highest() else {
                    break;
                };
                self.retransmit.insert_range(l, h);
            }
            self.acked.insert_range(lo, hi);
            self.retransmit.remove_range(lo, hi);
            if let Some((l, h)) = self.acked.lowest()
                && l <= self.base
            {
                let new_base = h + 1;
                self.buf.consume((new_base - self.base) as usize);
                self.base = new_base;
                self.acked.pop_lowest();
                self.retransmit.remove_below(self.base);
            }
        }
        if fin {
            self.fin = Fin::Acked;
        }
        self.is_done()
    }

    /// A frame `offset..offset + len` (with `fin`) was declared lost: queue whatever of it
    /// is not acknowledged for retransmission.
    pub fn on_lost(&mut self, offset: u64, len: usize, fin: bool) {
        if self.reset.is_some() {
            return;
        }
        if offset == 0 && !self.open_acked && len == 0 {
            self.open_pending = true;
        }
        let end = offset.saturating_add(len as u64);
        if len > 0 && end > self.base {
            let lo = offset.max(self.base);
            let hi = end - 1;
            self.retransmit.insert_range(lo, hi);
            for (al, ah) in self.acked.iter() {
                if ah < lo {
                    break;
                }
                if al <= hi {
                    self.retransmit.remove_range(al.max(lo), ah.min(hi));
                }
            }
        }
        if fin && self.fin == Fin::Sent {
            self.fin = Fin::Pending;
        }
    }

    /// Whether the send half is finished: every byte and the FIN acknowledged, or the reset
    /// acknowledged.
    pub fn is_done(&self) -> bool {
        match self.reset {
            Some(r) => r.acked,
            None => self.fin == Fin::Acked && self.base == self.write_end(),
        }
    }

    /// Whether the stream was reset (by us or on the peer's STOP_SENDING).
    pub fn is_reset(&self) -> bool {
        self.reset.is_some()
    }

    /// Whether `finish` was called.
    pub fn is_finished(&self) -> bool {
        self.fin != Fin::Open
    }

    /// Bytes written and not yet acknowledged.
    pub fn buffered(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Bytes acknowledged in order (everything below this offset).
    pub fn acked_offset(&self) -> u64 {
        self.base
    }

    /// Highest offset sent so far.
    pub fn sent_offset(&self) -> u64 {
        self.unsent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn write_limits_and_errors() {
        let mut s = SendStream::new(100, 50, true);
        assert_eq!(s.write(&[1; 80]), Ok(50));
        assert_eq!(s.write(&[1; 1]), Err(WriteError::Blocked));
        assert_eq!(s.write(&[]), Ok(0));
        assert!(s.on_max_data(200));
        assert_eq!(s.write(&[1; 80]), Ok(50));
        s.finish().unwrap();
        assert_eq!(s.write(&[1]), Err(WriteError::Closed));
        assert_eq!(s.finish(), Err(WriteError::Closed));
    }

    #[test]
    fn opening_frame_and_fin_only() {
        let mut s = SendStream::new(100, 100, true);
        let c = s.next_chunk(1000, 1000).unwrap();
        assert_eq!(
            c,
            Chunk {
                offset: 0,
                len: 0,
                fin: false,
                new_bytes: 0
            }
        );
        assert_eq!(s.next_chunk(1000, 1000), None);
        s.on_lost(0, 0, false);
        assert_eq!(s.next_chunk(1000, 1000).map(|c| c.offset), Some(0));
        s.on_ack(0, 0, false);
        s.finish().unwrap();
        let c = s.next_chunk(1000, 1000).unwrap();
        assert_eq!(
            c,
            Chunk {
                offset: 0,
                len: 0,
                fin: true,
                new_bytes: 0
            }
        );
        s.on_lost(0, 0, true);
        let c = s.next_chunk(1000, 1000).unwrap();
        assert!(c.fin);
        assert!(s.on_ack(0, 0, true));
        assert!(s.is_done());
    }

    #[test]
    fn retransmits_lost_before_new_and_never_acked_bytes() {
        let mut s = SendStream::new(1000, 1000, false);
        let data: Vec<u8> = (0..100).collect();
        s.write(&data).unwrap();
        let a = s.next_chunk(30, 1000).unwrap();
        let b = s.next_chunk(30, 1000).unwrap();
        assert_eq!((a.offset, a.len, b.offset, b.len), (0, 30, 30, 30));
        // Ack the middle of a, then lose all of a: only the unacked parts come back.
        s.on_ack(10, 10, false);
        s.on_lost(0, 30, false);
        let r1 = s.next_chunk(1000, 1000).unwrap();
        assert_eq!((r1.offset, r1.len, r1.new_bytes), (0, 10, 0));
        assert_eq!(s.data(r1.offset, r1.len), &data[0..10]);
        let r2 = s.next_chunk(1000, 1000).unwrap();
        assert_eq!((r2.offset, r2.len), (20, 10));
        let n = s.next_chunk(1000, 1000).unwrap();
        assert_eq!((n.offset, n.len, n.new_bytes), (60, 40, 40));
        // Session credit limits new data only.
        s.on_lost(0, 10, false);
        assert_eq!(s.next_chunk(1000, 0).map(|c| c.len), Some(10));
    }

    #[test]
    fn reset_and_stop() {
        let mut s = SendStream::new(100, 100, true);
        s.write(&[1; 40]).unwrap();
        let c = s.next_chunk(25, 1000).unwrap();
        assert!(s.on_stop_sending(9));
        assert_eq!(s.write(&[1]), Err(WriteError::Stopped(9)));
        assert_eq!(s.take_reset(), Some((9, 25)));
        assert_eq!(s.take_reset(), None);
        assert_eq!(s.next_chunk(1000, 1000), None);
        s.on_lost(c.offset, c.len, false);
        assert!(!s.has_data_to_send());
        s.on_reset_lost();
        assert_eq!(s.take_reset(), Some((9, 25)));
        s.on_reset_acked();
        assert!(s.is_done());
        assert!(!s.reset(1));
    }

    proptest! {
        /// Random loss, reordering and duplicate acknowledgements: the receiver model sees
        /// every byte, each byte is newly acknowledged exactly once, and the stream ends
        /// done with an empty buffer.
        #[test]
        fn every_byte_acked_exactly_once(
            len in 0usize..3000,
            ops in proptest::collection::vec((0u8..6, 1usize..400, any::<u16>()), 0..400),
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut s = SendStream::new(1000, 600, true);
            let mut written = 0usize;
            let mut credit = 600u64;
            let mut in_flight: Vec<Chunk> = Vec::new();
            let mut received = vec![false; len];
            let mut acked_bytes = vec![0u32; len];
            let mut finished = false;
            let step = |s: &mut SendStream, in_flight: &mut Vec<Chunk>, op: u8, n: usize, pick: u16, written: &mut usize, credit: &mut u64, received: &mut Vec<bool>, acked_bytes: &mut Vec<u32>, finished: &mut bool| {
                match op {
                    0 => {
                        if *written < len {
                            if let Ok(k) = s.write(&data[*written..(*written + n).min(len)]) { *written += k; }
                        } else if !*finished {
                            s.finish().unwrap();
                            *finished = true;
                        }
                    }
                    1 | 2 => {
                        if let Some(c) = s.next_chunk(n, u64::MAX) {
                            assert_eq!(s.data(c.offset, c.len), &data[c.offset as usize..c.offset as usize + c.len]);
                            in_flight.push(c);
                        }
                    }
                    3 if !in_flight.is_empty() => {
                        let c = in_flight.swap_remove(pick as usize % in_flight.len());
                        let before = s.acked_offset();
                        let _ = before;
                        for b in &mut received[c.offset as usize..c.offset as usize + c.len] { *b = true; }
                        // Count newly acknowledged bytes via the in-order base and ack ranges.
                        let was: Vec<bool> = (c.offset..c.offset + c.len as u64).map(|o| o < s.acked_offset() || s.acked.contains(o)).collect();
                        s.on_ack(c.offset, c.len, c.fin);
                        for (i, w) in was.iter().enumerate() {
                            if !w { acked_bytes[c.offset as usize + i] += 1; }
                        }
                    }
                    4 if !in_flight.is_empty() => {
                        let c = in_flight.swap_remove(pick as usize % in_flight.len());
                        s.on_lost(c.offset, c.len, c.fin);
                    }
                    _ => {
                        *credit += n as u64;
                        s.on_max_data(*credit);
                    }
                }
            };
            for (op, n, pick) in ops {
                step(&mut s, &mut in_flight, op, n, pick, &mut written, &mut credit, &mut received, &mut acked_bytes, &mut finished);
                prop_assert!(s.buffered() <= 1000);
            }
            // Drain: lose everything in flight, then send and ack in order until done.
            for c in std::mem::take(&mut in_flight) { s.on_lost(c.offset, c.len, c.fin); }
            s.on_max_data(u64::MAX / 2);
            let mut rounds = 0;
            while !s.is_done() {
                rounds += 1;
                prop_assert!(rounds < 100_000);
                if written < len {
                    written += s.write(&data[written..]).unwrap_or(0);
                } else if !finished {
                    s.finish().unwrap();
                    finished = true;
                }
                while let Some(c) = s.next_chunk(500, u64::MAX) {
                    in_flight.push(c);
                }
                for c in std::mem::take(&mut in_flight) {
                    step(&mut s, &mut vec![c], 3, 0, 0, &mut written, &mut credit, &mut received, &mut acked_bytes, &mut finished);
                }
            }
            prop_assert!(received.iter().all(|&r| r));
            prop_assert!(acked_bytes.iter().all(|&n| n == 1), "some byte acked {:?} times", acked_bytes.iter().find(|&&n| n != 1));
            prop_assert_eq!(s.buffered(), 0);
            prop_assert_eq!(s.acked_offset(), len as u64);
        }
    }
}
