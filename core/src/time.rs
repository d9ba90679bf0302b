//! Timers: a fixed table per session (quinn's `TimerTable`) and a lazily-invalidated min-heap
//! per node, so `poll_timeout` is O(1) and `handle_timeout` O(log n) per due session.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Why a session wants to wake up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TimerKind {
    /// Resend the last handshake message (or the confirmation PING) that got no answer.
    HandshakeResend,
    /// Give up on a handshake that has not completed.
    HandshakeExpire,
    /// Close the session: nothing authenticated was received for `idle_timeout`.
    Idle,
    /// Send a keepalive PING: nothing was sent for `keepalive_interval`.
    Keepalive,
    /// Drop the previous generation's receive key after a key update.
    KeyDiscard,
    /// Resend a PATH_CHALLENGE or give up on validating a new path.
    PathProbe,
    /// End of the closing/draining period; the session is then removed.
    Close,
    /// Loss detection or probe timeout (recovery).
    Loss,
    /// Send a delayed ACK.
    Ack,
    /// The pacer allows the next packet.
    Pacing,
    /// Path MTU probing.
    Mtu,
    /// Send queued NAT-traversal probes.
    Probe,
}

impl TimerKind {
    /// Number of kinds (size of a [`TimerTable`]).
    pub const COUNT: usize = 12;

    const ALL: [TimerKind; Self::COUNT] = [
        TimerKind::HandshakeResend,
        TimerKind::HandshakeExpire,
        TimerKind::Idle,
        TimerKind::Keepalive,
        TimerKind::KeyDiscard,
        TimerKind::PathProbe,
        TimerKind::Close,
        TimerKind::Loss,
        TimerKind::Ack,
        TimerKind::Pacing,
        TimerKind::Mtu,
        TimerKind::Probe,
    ];
}

/// The earlier of two optional deadlines (`None` is "never"). Cheaper than collecting them
/// into an array and taking `flatten().min()` on hot paths.
#[inline]
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// One deadline per [`TimerKind`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TimerTable {
    deadlines: [Option<Instant>; TimerKind::COUNT],
    /// The minimum of `deadlines`, kept up to date by every change so that
    /// [`TimerTable::next_at`] (asked after every packet) is O(1).
    earliest: Option<Instant>,
}

impl TimerTable {
    /// Sets (or moves) a timer.
    pub fn set(&mut self, kind: TimerKind, at: Instant) {
        let old = self.deadlines[kind as usize].replace(at);
        if self.earliest.is_none_or(|e| at <= e) {
            self.earliest = Some(at);
        } else if old == self.earliest {
            // The earliest timer moved later: another may be first now.
            self.recompute();
        }
    }

    /// Cancels a timer.
    pub fn stop(&mut self, kind: TimerKind) {
        let old = self.deadlines[kind as usize].take();
        if old.is_some() && old == self.earliest {
            self.recompute();
        }
    }

    /// The deadline of one timer.
    pub fn get(&self, kind: TimerKind) -> Option<Instant> {
        self.deadlines[kind as usize]
    }

    /// Whether `kind` is set and due at `now`; if so it is cleared.
    pub fn take_expired(&mut self, kind: TimerKind, now: Instant) -> bool {
        match self.deadlines[kind as usize] {
            Some(at) if at <= now => {
                self.stop(kind);
                true
            }
            _ => false,
        }
    }

    /// Cancels every timer.
    pub fn clear(&mut self) {
        self.deadlines = [None; TimerKind::COUNT];
        self.earliest = None;
    }

    /// The earliest deadline.
    pub fn next_at(&self) -> Option<Instant> {
        self.earliest
    }

    fn recompute(&mut self) {
        let mut best: Option<Instant> = None;
        for at in self.deadlines.iter().flatten() {
            if best.is_none_or(|b| *at < b) {
                best = Some(*at);
            }
        }
        self.earliest = best;
    }

    /// The earliest deadline and its kind.
    pub fn next(&self) -> Option<(Instant, TimerKind)> {
        let mut best: Option<(Instant, TimerKind)> = None;
        for (d, k) in self.deadlines.iter().zip(TimerKind::ALL) {
            if let Some(at) = *d
                && best.is_none_or(|(b, _)| at < b)
            {
                best = Some((at, k));
            }
        }
        best
    }
}

/// Min-heap of `(deadline, slot, generation)` with lazy invalidation: an entry is live only
/// while the slot's recorded deadline still equals it.
#[derive(Debug, Default)]
pub struct TimerHeap {
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
}

impl TimerHeap {
    /// Adds an entry.
    pub fn push(&mut self, at: Instant, slot: u32, generation: u32) {
        self.heap.push(Reverse((at, slot, generation)));
    }

    /// The earliest entry, live or not.
    pub fn peek(&self) -> Option<(Instant, u32, u32)> {
        self.heap.peek().map(|r| r.0)
    }

    /// Removes the earliest entry.
    pub fn pop(&mut self) -> Option<(Instant, u32, u32)> {
        self.heap.pop().map(|r| r.0)
    }

    /// Entries held (live and stale).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take a base instant once
mod tests {
    use super::*;
    use std::time::Duration;

    proptest::proptest! {
        /// The cached minimum always equals a full scan, whatever the order of changes.
        #[test]
        fn cached_earliest_matches_scan(
            ops in proptest::collection::vec((0u8..4, 0usize..TimerKind::COUNT, 0u64..50), 0..200)
        ) {
            let t0 = Instant::now();
            let mut t = TimerTable::default();
            for (op, k, v) in ops {
                let kind = TimerKind::ALL[k];
                let at = t0 + Duration::from_millis(v);
                match op {
                    0 | 1 => t.set(kind, at),
                    2 => t.stop(kind),
                    _ => {
                        t.take_expired(kind, at);
                    }
                }
                proptest::prop_assert_eq!(t.next_at(), t.next().map(|(at, _)| at));
            }
            t.clear();
            proptest::prop_assert_eq!(t.next_at(), None);
        }
    }

    #[test]
    fn table_reports_earliest() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(TimerKind::Idle, t0 + Duration::from_secs(5));
        t.set(TimerKind::Keepalive, t0 + Duration::from_secs(2));
        assert_eq!(
            t.next(),
            Some((t0 + Duration::from_secs(2), TimerKind::Keepalive))
        );
        assert!(!t.take_expired(TimerKind::Keepalive, t0));
        assert!(t.take_expired(TimerKind::Keepalive, t0 + Duration::from_secs(2)));
        assert_eq!(
            t.next(),
            Some((t0 + Duration::from_secs(5), TimerKind::Idle))
        );
    }
}
