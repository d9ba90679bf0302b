//! Receiver side of selective acknowledgement: the set of received packet counters as a
//! bounded list of ranges, and the bookkeeping that decides when an ACK frame goes out
//! (RFC 9000 §13.2).
//!
//! **Cap and drop policy.** The peer decides which counters arrive, so it could fragment the
//! set into one range per packet. [`RangeSet`] keeps at most `max_ranges` ranges; when an
//! insert would exceed that, the *lowest* range is forgotten. That is always safe for packet
//! counters: a forgotten counter is simply never acknowledged again, so at worst the peer
//! declares it lost and resends its frames in a new packet (duplicates are discarded by the
//! replay window before they get here, and stream data is idempotent).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::wire::codec::{BufferTooSmall, Writer};
use crate::wire::frame::{self, MAX_ACK_RANGES};
use crate::wire::varint;

/// Default number of received ranges tracked (and so, at most, reported in one ACK).
pub const DEFAULT_MAX_ACK_RANGES: usize = 64;

/// A set of `u64` values stored as disjoint, non-adjacent inclusive ranges, highest first,
/// holding at most `max_ranges` ranges: on overflow the lowest range is dropped
/// ([`RangeSet::new`]) or merged into the next ([`RangeSet::new_merging`]).
///
/// Allocation: the backing deque starts empty and grows only as ranges appear, never past
/// `max_ranges + 1` entries; it keeps its capacity afterwards (so steady-state use does not
/// allocate, and a set that never fragments costs nothing — a stream's sets are created with
/// caps in the thousands).
#[derive(Clone, Debug)]
pub struct RangeSet {
    /// Descending by both ends: `ranges[i].0 > ranges[i + 1].1 + 1`.
    ranges: VecDeque<(u64, u64)>,
    max_ranges: usize,
    merge_on_overflow: bool,
}

impl RangeSet {
    /// An empty set holding at most `max_ranges` ranges (at least 1).
    pub fn new(max_ranges: usize) -> Self {
        let max_ranges = max_ranges.max(1);
        Self {
            ranges: VecDeque::new(),
            max_ranges,
            merge_on_overflow: false,
        }
    }

    /// An empty set whose overflow policy is to merge the two lowest ranges (filling the gap
    /// between them) instead of dropping one. The set may so become a superset of what was
    /// inserted but never loses a value: the right policy for "bytes to retransmit", where
    /// resending a few extra bytes is harmless.
    pub fn new_merging(max_ranges: usize) -> Self {
        Self {
            merge_on_overflow: true,
            ..Self::new(max_ranges)
        }
    }

    /// Inserts one value; see [`RangeSet::insert_range`].
    pub fn insert(&mut self, v: u64) -> bool {
        self.insert_range(v, v)
    }

    /// Inserts the inclusive range `lo..=hi` (ignored if `lo > hi`). Returns whether any value
    /// was new. If the set then holds more than `max_ranges` ranges, the overflow policy
    /// applies: the lowest range is dropped (which may be the one just inserted), or for a
    /// [`RangeSet::new_merging`] set the two lowest ranges are merged.
    pub fn insert_range(&mut self, lo: u64, hi: u64) -> bool {
        let new = self.insert_uncapped(lo, hi);
        self.enforce_cap();
        new
    }

    /// Number of ranges the set would hold after inserting `lo..=hi` (before any cap).
    pub fn len_after_insert(&self, lo: u64, hi: u64) -> usize {
        if lo > hi {
            return self.ranges.len();
        }
        // Fast path: in-order data extends (or falls within) the highest range.
        if let Some(&(f_lo, f_hi)) = self.ranges.front()
            && lo >= f_lo
            && lo <= f_hi.saturating_add(1)
        {
            return self.ranges.len();
        }
        let a = self.ranges.partition_point(|r| r.0 > hi.saturating_add(1));
        let b = self.ranges.partition_point(|r| r.1.saturating_add(1) >= lo);
        if a >= b {
            self.ranges.len() + 1
        } else {
            self.ranges.len() - (b - a - 1)
        }
    }

    /// Removes and returns the highest range.
    pub fn pop_highest(&mut self) -> Option<(u64, u64)> {
        self.ranges.pop_front()
    }

    fn insert_uncapped(&mut self, lo: u64, hi: u64) -> bool {
        if lo > hi {
            return false;
        }
        // Fast paths: within, extending, or above the highest range.
        if let Some(front) = self.ranges.front_mut() {
            if lo >= front.0 && hi <= front.1 {
                return false;
            }
            if lo >= front.0 && lo <= front.1.saturating_add(1) {
                // Nothing lies above the highest range: extend it in place.
                front.1 = hi;
                return true;
            }
            if lo > front.1.saturating_add(1) {
                self.ranges.push_front((lo, hi));
                return true;
            }
        } else {
            self.ranges.push_back((lo, hi));
            return true;
        }
        // First range that could touch [lo, hi] from above: lo_i <= hi + 1.
        let a = self.ranges.partition_point(|r| r.0 > hi.saturating_add(1));
        // First range entirely below: hi_i + 1 < lo.
        let b = self.ranges.partition_point(|r| r.1.saturating_add(1) >= lo);
        if a >= b {
            self.ranges.insert(a, (lo, hi));
            return true;
        }
        let (top_lo, top_hi) = self.ranges[a];
        if a + 1 == b && top_lo <= lo && hi <= top_hi {
            return false;
        }
        let new_lo = lo.min(self.ranges[b - 1].0);
        let new_hi = hi.max(top_hi);
        self.ranges[a] = (new_lo, new_hi);
        self.ranges.drain(a + 1..b);
        true
    }

    fn enforce_cap(&mut self) {
        while self.ranges.len() > self.max_ranges {
            let Some((low_lo, _)) = self.ranges.pop_back() else {
                break;
            };
            if self.merge_on_overflow
                && let Some(back) = self.ranges.back_mut()
            {
                back.0 = low_lo;
            }
        }
    }

    /// Whether `v` is in the set.
    pub fn contains(&self, v: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.0 > v);
        self.ranges.get(i).is_some_and(|r| r.1 >= v)
    }

    /// Removes every value below `v`.
    pub fn remove_below(&mut self, v: u64) {
        while let Some(back) = self.ranges.back_mut() {
            if back.1 < v {
                self.ranges.pop_back();
            } else {
                back.0 = back.0.max(v);
                break;
            }
        }
    }

    /// Removes every value in `lo..=hi`.
    pub fn remove_range(&mut self, lo: u64, hi: u64) {
        if lo > hi {
            return;
        }
        let a = self.ranges.partition_point(|r| r.0 > hi);
        let b = self.ranges.partition_point(|r| r.1 >= lo);
        // Ranges a..b intersect [lo, hi].
        if a >= b {
            return;
        }
        let (top_lo, top_hi) = self.ranges[a];
        let (bot_lo, bot_hi) = self.ranges[b - 1];
        let _ = (top_lo, bot_hi);
        self.ranges.drain(a..b);
        let mut at = a;
        if top_hi > hi {
            self.ranges.insert(at, (hi + 1, top_hi));
            at += 1;
        }
        if bot_lo < lo {
            self.ranges.insert(at, (bot_lo, lo - 1));
        }
        self.enforce_cap();
    }

    /// Removes and returns the lowest range.
    pub fn pop_lowest(&mut self) -> Option<(u64, u64)> {
        self.ranges.pop_back()
    }

    /// The lowest range.
    pub fn lowest(&self) -> Option<(u64, u64)> {
        self.ranges.back().copied()
    }

    /// The largest value.
    pub fn max(&self) -> Option<u64> {
        self.ranges.front().map(|r| r.1)
    }

    /// The smallest value.
    pub fn min(&self) -> Option<u64> {
        self.ranges.back().map(|r| r.0)
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Most ranges held.
    pub fn max_ranges(&self) -> usize {
        self.max_ranges
    }

    /// Empties the set (keeps its capacity).
    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    /// The ranges, highest first, as inclusive `(low, high)` pairs.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().copied()
    }

    /// The ranges, highest first, as one slice (the form [`frame::write_ack`] takes).
    /// Rearranges the ring in place; never allocates.
    pub fn as_slice(&mut self) -> &[(u64, u64)] {
        self.ranges.make_contiguous()
    }
}

/// Receiver ACK state for one session: which counters arrived and when an ACK is owed.
///
/// Policy (RFC 9000 §13.2.1–2): an ACK is sent at once when a packet arrives out of order
/// (below the largest, or leaving a gap) or after `ack_eliciting_threshold` ack-eliciting
/// packets; otherwise at most `max_ack_delay` after the first unacknowledged ack-eliciting
/// packet. Packets that are not ack-eliciting (ACK-only) are recorded but never cause an ACK.
#[derive(Clone, Debug)]
pub struct AckTracker {
    ranges: RangeSet,
    largest: Option<(u64, Instant)>,
    eliciting_unacked: u32,
    /// Something not yet reported in an ACK frame was received.
    new_since_ack: bool,
    immediate: bool,
    deadline: Option<Instant>,
    max_ack_delay: Duration,
    threshold: u32,
}

impl AckTracker {
    /// A tracker holding at most `max_ranges` ranges, delaying ACKs by up to
    /// `max_ack_delay`, acknowledging at once every `ack_eliciting_threshold` (≥ 1) packets.
    pub fn new(max_ranges: usize, max_ack_delay: Duration, ack_eliciting_threshold: u32) -> Self {
        Self {
            ranges: RangeSet::new(max_ranges.min(MAX_ACK_RANGES as usize + 1)),
            largest: None,
            eliciting_unacked: 0,
            new_since_ack: false,
            immediate: false,
            deadline: None,
            max_ack_delay,
            threshold: ack_eliciting_threshold.max(1),
        }
    }

    /// Records an authenticated packet. Returns false if the counter was already recorded
    /// (or is below everything tracked and was immediately dropped by the cap).
    pub fn on_packet_received(&mut self, now: Instant, counter: u64, ack_eliciting: bool) -> bool {
        let out_of_order = match self.largest {
            None => false,
            Some((l, _)) => counter < l || counter > l.saturating_add(1),
        };
        if !self.ranges.insert(counter) {
            return false;
        }
        // The cap drops only the lowest ranges: `counter` survived unless every range left
        // lies above it (an O(1) check instead of a search).
        if self.ranges.min().is_none_or(|m| m > counter) {
            // Dropped at once by the range cap: too old to matter.
            return false;
        }
        if self.largest.is_none_or(|(l, _)| counter > l) {
            self.largest = Some((counter, now));
        }
        self.new_since_ack = true;
        if ack_eliciting {
            self.eliciting_unacked = self.eliciting_unacked.saturating_add(1);
            if out_of_order || self.eliciting_unacked >= self.threshold {
                self.immediate = true;
            } else if self.deadline.is_none() {
                self.deadline = Some(now + self.max_ack_delay);
            }
        }
        true
    }

    /// Whether an ACK frame should be sent now.
    pub fn wants_ack(&self, now: Instant) -> bool {
        self.immediate || self.deadline.is_some_and(|d| d <= now)
    }

    /// Whether there is something to acknowledge at all (an ACK may be piggybacked on any
    /// outgoing packet when this is true, even before it is due).
    pub fn has_unreported(&self) -> bool {
        self.new_since_ack
    }

    /// When the delayed ACK is due (for `TimerKind::Ack`); `None` when nothing is pending.
    /// An immediate ACK is reported as due at the time the triggering packet arrived.
    pub fn deadline(&self) -> Option<Instant> {
        if self.immediate {
            return self.largest.map(|(_, t)| t).or(self.deadline);
        }
        self.deadline
    }

    /// The largest counter received.
    pub fn largest(&self) -> Option<u64> {
        self.largest.map(|(l, _)| l)
    }

    /// The received ranges.
    pub fn ranges(&self) -> &RangeSet {
        &self.ranges
    }

    /// The peer acknowledged a packet of ours that carried an ACK frame whose largest counter
    /// was `largest`: it knows everything at or below it that we reported, so stop reporting
    /// counters below `largest` (keeps ACK frames small; RFC 9000 §13.2.4).
    pub fn on_ack_frame_acked(&mut self, largest: u64) {
        self.ranges.remove_below(largest);
    }

    /// Writes an ACK frame into `w` if anything was received, with as many ranges as fit in
    /// the room left (at most `max_ranges`), and resets the delayed-ACK state. Returns the
    /// frame's largest counter (record it so [`AckTracker::on_ack_frame_acked`] can be called
    /// when the packet carrying it is acknowledged), or `None` if nothing was written.
    ///
    /// # Errors
    /// [`BufferTooSmall`] if not even a one-range ACK fits; nothing is written then.
    pub fn write_ack(
        &mut self,
        now: Instant,
        w: &mut Writer<'_>,
        max_ranges: usize,
    ) -> Result<Option<u64>, BufferTooSmall> {
        let Some((largest, at)) = self.largest else {
            return Ok(None);
        };
        if self.ranges.is_empty() {
            return Ok(None);
        }
        let delay_us = u64::try_from(now.saturating_duration_since(at).as_micros())
            .unwrap_or(u64::MAX)
            .min(varint::MAX);
        let room = w.remaining();
        let ranges = self.ranges.as_slice();
        let n = fitting_ranges(ranges, delay_us, max_ranges, room);
        if n == 0 {
            return Err(BufferTooSmall);
        }
        frame::write_ack(w, delay_us, ranges, n)?;
        self.eliciting_unacked = 0;
        self.immediate = false;
        self.deadline = None;
        self.new_since_ack = false;
        Ok(Some(ranges[0].1.max(largest)))
    }
}

/// Encoded size of an ACK frame with the first `n` of `ranges`.
pub fn ack_frame_len(ranges: &[(u64, u64)], delay_us: u64, n: usize) -> usize {
    let v = |x: u64| varint::size(x).unwrap_or(8);
    let Some(&(lo0, hi0)) = ranges.first() else {
        return 0;
    };
    let n = n.clamp(1, ranges.len());
    let mut len = 1 + v(hi0) + v(delay_us) + v((n - 1) as u64) + v(hi0 - lo0);
    let mut prev_lo = lo0;
    for &(lo, hi) in &ranges[1..n] {
        len += v(prev_lo - 2 - hi) + v(hi - lo);
        prev_lo = lo;
    }
    len
}

/// How many of `ranges` (highest first) fit in an ACK frame of at most `room` bytes, capped by
/// `max_ranges` and the wire limit; 0 if not even one does.
fn fitting_ranges(ranges: &[(u64, u64)], delay_us: u64, max_ranges: usize, room: usize) -> usize {
    let cap = ranges
        .len()
        .min(max_ranges.max(1))
        .min(MAX_ACK_RANGES as usize + 1);
    let v = |x: u64| varint::size(x).unwrap_or(8);
    let Some(&(lo0, hi0)) = ranges.first() else {
        return 0;
    };
    // The range-count varint is at most 2 bytes for the wire cap (≤ 256); account for the
    // count actually used by recomputing at the end.
    let mut len = 1 + v(hi0) + v(delay_us) + v(hi0 - lo0);
    let mut n = 0;
    let mut prev_lo = lo0;
    for (i, &(lo, hi)) in ranges[..cap].iter().enumerate() {
        if i > 0 {
            len += v(prev_lo - 2 - hi) + v(hi - lo);
            prev_lo = lo;
        }
        if len + v(i as u64) > room {
            break;
        }
        n = i + 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::{Frame, frames};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn to_ranges(set: &BTreeSet<u64>) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &v in set.iter().rev() {
            match out.last_mut() {
                Some(r) if r.0 == v + 1 => r.0 = v,
                _ => out.push((v, v)),
            }
        }
        out
    }

    #[test]
    fn merges_and_splits() {
        let mut s = RangeSet::new(16);
        assert!(s.insert(5));
        assert!(s.insert(7));
        assert!(!s.insert(7));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(7, 7), (5, 5)]);
        assert!(s.insert(6));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(5, 7)]);
        assert!(s.insert_range(0, 100));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(0, 100)]);
        s.remove_range(10, 20);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(21, 100), (0, 9)]);
        s.remove_below(5);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(21, 100), (5, 9)]);
        assert!(s.contains(5) && s.contains(100) && !s.contains(10) && !s.contains(101));
        assert!(s.insert(u64::MAX));
        assert!(s.insert(u64::MAX - 1));
        assert_eq!(s.max(), Some(u64::MAX));
    }

    #[test]
    fn cap_drops_lowest() {
        let mut s = RangeSet::new(3);
        for v in [10, 20, 30, 40] {
            s.insert(v);
        }
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![(40, 40), (30, 30), (20, 20)]
        );
        // An insert below everything is dropped at once.
        s.insert(1);
        assert!(!s.contains(1));
        assert_eq!(s.len(), 3);
    }

    proptest! {
        #[test]
        fn matches_btreeset(ops in proptest::collection::vec((0u8..4, 0u64..200, 0u64..20), 0..200)) {
            let mut s = RangeSet::new(1000);
            let mut model = BTreeSet::new();
            for (op, a, len) in ops {
                let (lo, hi) = (a, a + len);
                match op {
                    0 | 1 => {
                        let new = (lo..=hi).any(|v| !model.contains(&v));
                        let mut m2 = model.clone();
                        m2.extend(lo..=hi);
                        prop_assert_eq!(s.len_after_insert(lo, hi), to_ranges(&m2).len());
                        prop_assert_eq!(s.insert_range(lo, hi), new);
                        model.extend(lo..=hi);
                    }
                    2 => {
                        s.remove_range(lo, hi);
                        for v in lo..=hi { model.remove(&v); }
                    }
                    _ => {
                        s.remove_below(a);
                        model.retain(|&v| v >= a);
                    }
                }
                prop_assert_eq!(s.iter().collect::<Vec<_>>(), to_ranges(&model));
            }
        }
    }

    #[test]
    fn merging_policy_keeps_a_superset() {
        let mut s = RangeSet::new_merging(2);
        for v in [10, 20, 30, 40] {
            s.insert(v);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(40, 40), (10, 30)]);
        assert_eq!(s.pop_highest(), Some((40, 40)));
        s.insert_range(0, 100);
        s.insert(200);
        s.remove_range(50, 50);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(200, 200), (0, 100)]);
    }

    #[test]
    fn ack_policy_and_frame() {
        let t0 = crate::fuzzing::epoch();
        let mut a = AckTracker::new(8, Duration::from_millis(25), 2);
        assert!(a.on_packet_received(t0, 0, true));
        assert!(!a.wants_ack(t0));
        assert_eq!(a.deadline(), Some(t0 + Duration::from_millis(25)));
        assert!(a.wants_ack(t0 + Duration::from_millis(25)));
        assert!(!a.on_packet_received(t0, 0, true));
        // Second eliciting packet: immediate.
        assert!(a.on_packet_received(t0, 1, true));
        assert!(a.wants_ack(t0));
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        let t1 = t0 + Duration::from_millis(3);
        assert_eq!(a.write_ack(t1, &mut w, 8), Ok(Some(1)));
        let n = w.len();
        let Some(Ok(Frame::Ack(ack))) = frames(&buf[..n]).next() else {
            panic!()
        };
        assert_eq!(ack.delay_us, 3000);
        assert_eq!(ack.ranges().collect::<Vec<_>>(), vec![(0, 1)]);
        assert!(!a.wants_ack(t1));
        // Out of order (gap): immediate even with one packet.
        a.on_packet_received(t1, 5, true);
        assert!(a.wants_ack(t1));
        // Non-eliciting never triggers.
        let mut b = AckTracker::new(8, Duration::from_millis(25), 2);
        b.on_packet_received(t0, 0, false);
        b.on_packet_received(t0, 3, false);
        assert!(!b.wants_ack(t0 + Duration::from_secs(1)) && b.deadline().is_none());
        assert!(b.has_unreported());
        b.on_ack_frame_acked(3);
        assert_eq!(b.ranges().iter().collect::<Vec<_>>(), vec![(3, 3)]);
    }

    #[test]
    fn ack_truncates_to_room() {
        let t0 = crate::fuzzing::epoch();
        let mut a = AckTracker::new(64, Duration::from_millis(25), 2);
        for c in (0..128).step_by(2) {
            a.on_packet_received(t0, c * 1000, true);
        }
        let mut buf = [0u8; 40];
        let mut w = Writer::new(&mut buf);
        a.write_ack(t0, &mut w, 64).unwrap();
        let n = w.len();
        assert!(n <= 40);
        let Some(Ok(Frame::Ack(ack))) = frames(&buf[..n]).next() else {
            panic!()
        };
        let got: Vec<_> = ack.ranges().collect();
        assert!(!got.is_empty());
        assert_eq!(got[0], (126_000, 126_000));
        assert_eq!(ack_frame_len(a.ranges.as_slice(), 0, got.len()), n);
        let mut tiny = [0u8; 2];
        let mut w = Writer::new(&mut tiny);
        assert_eq!(a.write_ack(t0, &mut w, 64), Err(BufferTooSmall));
        assert_eq!(w.len(), 0);
    }
}
