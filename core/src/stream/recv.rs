//! Receive half of a stream: reassembly of out-of-order STREAM frames into an in-order byte
//! stream, the final size, RESET from the peer and STOP by the application.
//!
//! Storage is a ring holding bytes `[read_offset, read_offset + len)`; it grows only as far
//! as data actually arrives, and flow control keeps that within one stream window of the
//! read position, so memory per stream is bounded by the window. Which offsets have arrived
//! is a [`RangeSet`] of at most `max_ranges` out-of-order fragments (plus the in-order,
//! readable one): a frame that would need more is refused with
//! [`RecvError::TooManyRanges`] *before anything changes* — the session then drops the whole
//! packet without acknowledging it, so the peer resends it later. Data at the read position
//! is always accepted (it can only extend the readable fragment), so the hole at the bottom
//! always fills and the stream cannot deadlock on the cap. FIN is reported (`Ok(None)` from [`RecvStream::read`]) only after every byte
//! before it was read.

use super::flow::FlowControlError;
use super::ring::ByteRing;
use crate::recovery::sack::RangeSet;

/// A received frame or reset was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// Data beyond the advertised limit: protocol violation, close the session.
    #[error(transparent)]
    FlowControl(#[from] FlowControlError),
    /// Data beyond the final size, or two different final sizes: protocol violation.
    #[error("final size violated")]
    FinalSize,
    /// Accepting the frame would need more than the allowed number of out-of-order
    /// fragments. Not a violation: drop the packet unacknowledged; nothing was changed.
    #[error("too many out-of-order fragments")]
    TooManyRanges,
}

impl RecvError {
    /// Whether the session must be closed with a protocol error (otherwise only the packet
    /// is dropped, unacknowledged).
    pub fn is_protocol_violation(&self) -> bool {
        !matches!(self, Self::TooManyRanges)
    }
}

/// `read` could not return data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// No data available yet; wait for a `StreamReadable` event.
    #[error("no data available; wait for StreamReadable")]
    Blocked,
    /// The peer abandoned the stream with this code; no more data will come.
    #[error("stream reset by the peer with code {0}")]
    Reset(u64),
    /// This side stopped reading (`stop`) or already read the end.
    #[error("stream closed for reading")]
    Closed,
    /// The handle is stale or was never valid (the stream is gone).
    #[error("unknown or closed stream")]
    UnknownStream,
}

/// Where the receive half is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvState {
    /// Receiving; final size unknown.
    Recv,
    /// The FIN arrived; some bytes before it are missing or unread.
    SizeKnown,
    /// The application read every byte and was told about the end.
    DataRead,
    /// The peer reset the stream; the application has not been told yet.
    ResetRecvd(u64),
    /// The application was told about the reset.
    ResetRead,
}

/// Result of accepting a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ingest {
    /// How far this frame raised the highest offset received (charge it to the session's
    /// flow-control window).
    pub new_bytes: u64,
    /// Bytes that were discarded instead of buffered (stream stopped or reset) and so count
    /// as consumed at once (return them to the session window).
    pub released: u64,
}

/// The receive half of one stream.
#[derive(Clone, Debug)]
pub struct RecvStream {
    buf: ByteRing,
    read_offset: u64,
    received: RangeSet,
    max_ranges: usize,
    highest: u64,
    final_size: Option<u64>,
    state: RecvState,
    /// The application called `stop` with this code.
    stopped: Option<u64>,
}

impl RecvStream {
    /// An empty stream tracking at most `max_ranges` fragments.
    pub fn new(max_ranges: usize) -> Self {
        Self {
            buf: ByteRing::new(),
            read_offset: 0,
            received: RangeSet::new(max_ranges.saturating_add(1)),
            max_ranges,
            highest: 0,
            final_size: None,
            state: RecvState::Recv,
            stopped: None,
        }
    }

    /// Accepts a STREAM frame. `limit` is the stream's advertised flow-control limit and
    /// `session_credit` what is left of the session window; both are checked before anything
    /// changes.
    ///
    /// # Errors
    /// See [`RecvError`]; on error the stream is unchanged.
    pub fn ingest(
        &mut self,
        offset: u64,
        data: &[u8],
        fin: bool,
        limit: u64,
        session_credit: u64,
    ) -> Result<Ingest, RecvError> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(RecvError::FinalSize)?;
        if let Some(f) = self.final_size
            && (end > f || (fin && end != f))
        {
            return Err(RecvError::FinalSize);
        }
        if fin && end < self.highest {
            return Err(RecvError::FinalSize);
        }
        if end > limit {
            return Err(FlowControlError { offset: end, limit }.into());
        }
        let new_bytes = end.saturating_sub(self.highest);
        if new_bytes > session_credit {
            return Err(FlowControlError {
                offset: end,
                limit: self.highest + session_credit,
            }
            .into());
        }
        let discarding = self.stopped.is_some()
            || matches!(self.state, RecvState::ResetRecvd(_) | RecvState::ResetRead);
        // The part not yet read.
        let lo = offset.max(self.read_offset);
        if !discarding && lo < end {
            // Count out-of-order fragments only: the readable one (at the read position)
            // does not count, so in-order data is always accepted.
            let after = self.received.len_after_insert(lo, end - 1);
            let bottom = lo == self.read_offset
                || self
                    .received
                    .lowest()
                    .is_some_and(|(l, _)| l <= self.read_offset);
            if after - usize::from(bottom) > self.max_ranges {
                return Err(RecvError::TooManyRanges);
            }
        }
        // Accepted: commit.
        self.highest = self.highest.max(end);
        if fin {
            self.final_size = Some(end);
            if self.state == RecvState::Recv {
                self.state = RecvState::SizeKnown;
            }
        }
        if discarding {
            return Ok(Ingest {
                new_bytes,
                released: new_bytes,
            });
        }
        if lo < end {
            let start = (lo - self.read_offset) as usize;
            let stop = (end - self.read_offset) as usize;
            // Bytes between the old end and `start` are a hole: the ring leaves them as
            // they were (never read before they are received).
            self.buf.set_len_at_least(stop);
            self.buf.write_at(start, &data[(lo - offset) as usize..]);
            self.received.insert_range(lo, end - 1);
        }
        Ok(Ingest {
            new_bytes,
            released: 0,
        })
    }

    /// Bytes readable now, in order.
    pub fn readable_bytes(&self) -> u64 {
        match self.received.lowest() {
            Some((lo, hi)) if lo <= self.read_offset => hi + 1 - self.read_offset,
            _ => 0,
        }
    }

    /// Whether `read` would return something other than `Blocked` (data, the end, or a
    /// reset to report).
    pub fn is_readable(&self) -> bool {
        if self.stopped.is_some() {
            return false;
        }
        match self.state {
            RecvState::ResetRecvd(_) => true,
            RecvState::DataRead | RecvState::ResetRead => false,
            _ => self.readable_bytes() > 0 || self.final_size == Some(self.read_offset),
        }
    }

    /// Copies in-order bytes into `buf`. Returns `Ok(Some(n))` with `n > 0` (or `n == 0` for
    /// an empty `buf`), `Ok(None)` once every byte before the FIN was read, and the byte count
    /// consumed for flow control through `consumed`.
    ///
    /// # Errors
    /// [`ReadError::Blocked`] when nothing is available yet, [`ReadError::Reset`] once when
    /// the peer reset the stream, [`ReadError::Closed`] after `stop`, a reset was reported,
    /// or the end was read.
    pub fn read(&mut self, buf: &mut [u8], consumed: &mut u64) -> Result<Option<usize>, ReadError> {
        *consumed = 0;
        if self.stopped.is_some() {
            return Err(ReadError::Closed);
        }
        match self.state {
            RecvState::ResetRecvd(code) => {
                self.state = RecvState::ResetRead;
                return Err(ReadError::Reset(code));
            }
            RecvState::ResetRead | RecvState::DataRead => return Err(ReadError::Closed),
            RecvState::Recv | RecvState::SizeKnown => {}
        }
        let avail = self.readable_bytes();
        if avail == 0 {
            if self.final_size == Some(self.read_offset) {
                self.state = RecvState::DataRead;
                return Ok(None);
            }
            return Err(ReadError::Blocked);
        }
        let n = (avail.min(buf.len() as u64)) as usize;
        let (a, b) = self.buf.as_slices();
        let from_a = n.min(a.len());
        buf[..from_a].copy_from_slice(&a[..from_a]);
        buf[from_a..n].copy_from_slice(&b[..n - from_a]);
        self.buf.consume(n);
        self.read_offset += n as u64;
        self.received.remove_below(self.read_offset);
        *consumed = n as u64;
        Ok(Some(n))
    }

    /// The peer reset the stream at `final_size`. Returns the flow-control effect: the new
    /// bytes implied by the final size and every unread byte released.
    ///
    /// # Errors
    /// [`RecvError::FinalSize`] if the final size contradicts data or a FIN already received;
    /// [`RecvError::FlowControl`] if it exceeds `limit` or the session credit.
    pub fn on_reset(
        &mut self,
        code: u64,
        final_size: u64,
        limit: u64,
        session_credit: u64,
    ) -> Result<Ingest, RecvError> {
        if final_size < self.highest || self.final_size.is_some_and(|f| f != final_size) {
            return Err(RecvError::FinalSize);
        }
        if final_size > limit {
            return Err(FlowControlError {
                offset: final_size,
                limit,
            }
            .into());
        }
        let new_bytes = final_size - self.highest;
        if new_bytes > session_credit {
            return Err(FlowControlError {
                offset: final_size,
                limit: self.highest + session_credit,
            }
            .into());
        }
        if matches!(
            self.state,
            RecvState::ResetRecvd(_) | RecvState::ResetRead | RecvState::DataRead
        ) {
            // Duplicate reset, or everything was already read: nothing changes.
            return Ok(Ingest::default());
        }
        let released = if self.stopped.is_some() {
            // Bytes up to `highest` were released when they arrived or at `stop`.
            new_bytes
        } else {
            final_size - self.read_offset
        };
        self.highest = final_size;
        self.final_size = Some(final_size);
        self.state = if self.stopped.is_some() {
            RecvState::ResetRead
        } else {
            RecvState::ResetRecvd(code)
        };
        self.discard();
        Ok(Ingest {
            new_bytes,
            released,
        })
    }

    /// The application stops reading with `code` (send STOP_SENDING). Returns the buffered
    /// and future-unread bytes released now (those received but not read).
    pub fn stop(&mut self, code: u64) -> u64 {
        if self.stopped.is_some() {
            return 0;
        }
        self.stopped = Some(code);
        let released = self.highest - self.read_offset;
        self.read_offset = self.highest;
        self.discard();
        released
    }

    fn discard(&mut self) {
        self.buf.clear();
        self.received.clear();
    }

    /// The code given to `stop`, if any.
    pub fn stopped(&self) -> Option<u64> {
        self.stopped
    }

    /// Whether the peer should be asked to stop sending (STOP_SENDING): the application
    /// stopped and the peer has neither reset nor delivered everything.
    pub fn stop_wanted(&self) -> bool {
        self.stopped.is_some()
            && !matches!(self.state, RecvState::ResetRecvd(_) | RecvState::ResetRead)
            && self.final_size.is_none_or(|f| f != self.highest)
    }

    /// Whether the receive half is finished: the application read the end or learned of the
    /// reset, or it stopped and the final size is known.
    pub fn is_closed(&self) -> bool {
        match self.state {
            RecvState::DataRead | RecvState::ResetRead => true,
            _ => self.stopped.is_some() && self.final_size.is_some_and(|f| f == self.highest),
        }
    }

    /// Whether the final size is known and everything up to it arrived (no more data will
    /// come: stop sending credit updates).
    pub fn all_received(&self) -> bool {
        match self.final_size {
            Some(f) => {
                f == self.read_offset
                    || self
                        .received
                        .lowest()
                        .is_some_and(|(lo, hi)| lo <= self.read_offset && hi + 1 == f)
            }
            None => matches!(self.state, RecvState::ResetRecvd(_) | RecvState::ResetRead),
        }
    }

    /// The state.
    pub fn state(&self) -> RecvState {
        self.state
    }

    /// Offset of the next byte `read` returns.
    pub fn read_offset(&self) -> u64 {
        self.read_offset
    }

    /// Highest offset received.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// The final size, once known.
    pub fn final_size(&self) -> Option<u64> {
        self.final_size
    }

    /// Bytes held in the reassembly buffer (including holes).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(r: &mut RecvStream) -> (Vec<u8>, Result<Option<usize>, ReadError>) {
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let mut c = 0;
            match r.read(&mut buf, &mut c) {
                Ok(Some(n)) => out.extend_from_slice(&buf[..n]),
                other => return (out, other),
            }
        }
    }

    #[test]
    fn reorders_and_ends_only_after_every_byte() {
        let mut r = RecvStream::new(8);
        let data: Vec<u8> = (0..100).collect();
        // FIN first, then the middle, then the start.
        r.ingest(80, &data[80..], true, 1000, 1000).unwrap();
        assert_eq!(r.final_size(), Some(100));
        assert_eq!(read_all(&mut r), (vec![], Err(ReadError::Blocked)));
        r.ingest(40, &data[40..80], false, 1000, 1000).unwrap();
        assert_eq!(read_all(&mut r), (vec![], Err(ReadError::Blocked)));
        r.ingest(0, &data[..50], false, 1000, 1000).unwrap();
        assert!(r.all_received());
        assert_eq!(read_all(&mut r), (data.clone(), Ok(None)));
        assert!(r.is_closed());
        let mut c = 0;
        assert_eq!(r.read(&mut [0; 4], &mut c), Err(ReadError::Closed));
    }

    #[test]
    fn final_size_and_flow_violations_change_nothing() {
        let mut r = RecvStream::new(8);
        r.ingest(0, &[1; 10], false, 100, 100).unwrap();
        assert_eq!(
            r.ingest(0, &[1; 5], true, 100, 100),
            Err(RecvError::FinalSize)
        );
        assert!(matches!(
            r.ingest(95, &[1; 10], false, 100, 1000),
            Err(RecvError::FlowControl(_))
        ));
        assert!(matches!(
            r.ingest(10, &[1; 10], false, 100, 9),
            Err(RecvError::FlowControl(_))
        ));
        r.ingest(10, &[1; 10], true, 100, 100).unwrap();
        assert_eq!(
            r.ingest(20, &[1], false, 100, 100),
            Err(RecvError::FinalSize)
        );
        assert_eq!(
            r.ingest(0, &[1; 19], true, 100, 100),
            Err(RecvError::FinalSize)
        );
        assert_eq!(
            r.ingest(u64::MAX, &[1], false, u64::MAX, u64::MAX),
            Err(RecvError::FinalSize)
        );
        assert_eq!(r.on_reset(0, 19, 100, 100), Err(RecvError::FinalSize));
        assert_eq!(r.highest(), 20);
    }

    #[test]
    fn hole_cap_refuses_cleanly() {
        let mut r = RecvStream::new(3);
        for k in 1..=3u64 {
            r.ingest(k * 10, &[k as u8], false, 1000, 1000).unwrap();
        }
        let before = r.highest();
        assert_eq!(
            r.ingest(50, &[5], false, 1000, 1000),
            Err(RecvError::TooManyRanges)
        );
        assert_eq!(r.highest(), before);
        // Data at the read position is always accepted (no deadlock on the cap).
        r.ingest(0, &[0; 2], false, 1000, 1000).unwrap();
        assert_eq!(r.readable_bytes(), 2);
        assert_eq!(
            r.ingest(50, &[5], false, 1000, 1000),
            Err(RecvError::TooManyRanges)
        );
        // Filling or extending existing fragments is still fine.
        r.ingest(11, &[0; 9], false, 1000, 1000).unwrap();
        r.ingest(0, &[0; 10], false, 1000, 1000).unwrap();
        assert_eq!(r.readable_bytes(), 21);
        r.ingest(50, &[5], false, 1000, 1000).unwrap();
    }

    #[test]
    fn reset_and_stop() {
        let mut r = RecvStream::new(8);
        r.ingest(0, &[1; 10], false, 100, 100).unwrap();
        let ing = r.on_reset(7, 30, 100, 100).unwrap();
        assert_eq!(
            ing,
            Ingest {
                new_bytes: 20,
                released: 30
            }
        );
        let mut c = 0;
        assert_eq!(r.read(&mut [0; 4], &mut c), Err(ReadError::Reset(7)));
        assert_eq!(r.read(&mut [0; 4], &mut c), Err(ReadError::Closed));
        assert!(r.is_closed());
        // Duplicate reset: no effect.
        assert_eq!(r.on_reset(7, 30, 100, 100), Ok(Ingest::default()));

        let mut s = RecvStream::new(8);
        s.ingest(0, &[1; 10], false, 100, 100).unwrap();
        assert_eq!(s.stop(3), 10);
        assert!(s.stop_wanted());
        assert_eq!(
            s.ingest(10, &[1; 5], false, 100, 100),
            Ok(Ingest {
                new_bytes: 5,
                released: 5
            })
        );
        assert_eq!(s.buffered(), 0);
        assert_eq!(
            s.on_reset(9, 20, 100, 100),
            Ok(Ingest {
                new_bytes: 5,
                released: 5
            })
        );
        assert!(s.is_closed());
        assert!(!s.stop_wanted());
    }

    proptest! {
        /// Random fragments of a known byte string, in random order with duplicates, always
        /// reassemble into a prefix of it; with every fragment delivered, into all of it
        /// followed by the end.
        #[test]
        fn reassembly_matches_model(
            len in 0usize..600,
            frags in proptest::collection::vec((0usize..600, 0usize..80, any::<bool>()), 0..120),
            read_sizes in proptest::collection::vec(1usize..50, 1..40),
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut r = RecvStream::new(16);
            let mut out = Vec::new();
            let mut reads = read_sizes.iter().cycle();
            let mut ended = false;
            for (start, flen, read_now) in frags {
                let start = start.min(len);
                let end = (start + flen).min(len);
                let fin = end == len;
                match r.ingest(start as u64, &data[start..end], fin, 1 << 20, 1 << 20) {
                    Ok(_) | Err(RecvError::TooManyRanges) => {}
                    Err(e) => prop_assert!(false, "{e:?}"),
                }
                if read_now {
                    let mut buf = vec![0u8; *reads.next().unwrap()];
                    let mut c = 0;
                    match r.read(&mut buf, &mut c) {
                        Ok(Some(n)) => out.extend_from_slice(&buf[..n]),
                        Ok(None) => {
                            ended = true;
                            prop_assert_eq!(&out, &data);
                        }
                        Err(_) => {}
                    }
                }
                prop_assert_eq!(&out[..], &data[..out.len()]);
                prop_assert!(r.buffered() as u64 <= r.highest() - r.read_offset());
            }
            // Deliver the whole thing in order; everything must come out, then the end.
            r.ingest(0, &data, true, 1 << 20, 1 << 20).unwrap();
            let (rest, end) = read_all(&mut r);
            out.extend_from_slice(&rest);
            prop_assert_eq!(out, data);
            prop_assert_eq!(end, if ended { Err(ReadError::Closed) } else { Ok(None) });
        }
    }
}
