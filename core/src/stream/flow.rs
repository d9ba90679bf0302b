//! Flow control (RFC 9000 §4), per stream and per session: how much the peer lets us send
//! ([`SendCredit`]) and how much we let the peer send ([`RecvWindow`]).
//!
//! Credit is absolute (a maximum offset, or a maximum sum of offsets for the session), so
//! lost or reordered credit frames are harmless: only increases count. A window of zero
//! means *nothing* may be sent (never "unlimited", Pilot's bug). The receiver re-advertises
//! when the application has consumed an eighth of a window (as quinn does; at a half, the
//! sender idled for the last part of each window on loopback), so a steadily reading
//! receiver never stalls the sender, and a receiver that stops reading stops the sender after exactly one
//! window.

/// The peer sent beyond the credit we gave it: a protocol violation (close the session).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("flow control violated: offset {offset} beyond the limit {limit}")]
pub struct FlowControlError {
    /// The offset (or session total) the peer reached.
    pub offset: u64,
    /// The limit we had advertised.
    pub limit: u64,
}

/// Credit granted by the peer for sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendCredit {
    max: u64,
    used: u64,
    /// The limit at which a BLOCKED frame was last queued (one per limit).
    blocked_at: Option<u64>,
}

impl SendCredit {
    /// Credit up to `initial` bytes.
    pub fn new(initial: u64) -> Self {
        Self {
            max: initial,
            used: 0,
            blocked_at: None,
        }
    }

    /// Bytes that may still be sent.
    pub fn available(&self) -> u64 {
        self.max.saturating_sub(self.used)
    }

    /// The limit granted so far.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Bytes counted against the credit so far.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The peer raised the limit (MAX_DATA / MAX_STREAM_DATA). Returns true if credit went
    /// from none to some (wake blocked senders). Decreases are ignored (reordered frames).
    pub fn on_max(&mut self, max: u64) -> bool {
        if max <= self.max {
            return false;
        }
        let was_blocked = self.available() == 0;
        self.max = max;
        was_blocked
    }

    /// Counts `n` bytes as sent; at most [`SendCredit::available`] (more is clamped, which
    /// is a caller bug caught by tests).
    pub fn consume(&mut self, n: u64) {
        debug_assert!(n <= self.available());
        self.used = self.used.saturating_add(n).min(self.max);
    }

    /// If blocked at the current limit and not yet reported, returns the limit for a
    /// DATA_BLOCKED / STREAM_DATA_BLOCKED frame (once per limit).
    pub fn take_blocked(&mut self) -> Option<u64> {
        if self.available() == 0 && self.blocked_at != Some(self.max) {
            self.blocked_at = Some(self.max);
            return Some(self.max);
        }
        None
    }
}

/// The receive window we advertise to the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvWindow {
    window: u64,
    /// The limit the peer was last told.
    advertised: u64,
    /// Highest offset (or session total) the peer reached.
    received: u64,
    /// Bytes the application consumed (read or discarded).
    consumed: u64,
}

impl RecvWindow {
    /// A window of `window` bytes, advertised from the start (the initial limit is part of
    /// the session's transport settings).
    pub fn new(window: u64) -> Self {
        Self::with_initial(window, window)
    }

    /// A window of `window` bytes of which the peer initially assumes only `initial`
    /// (a protocol default); if `window` is at least twice `initial`, an update is wanted at
    /// once. `initial` above `window` is honoured (the peer was promised it).
    pub fn with_initial(window: u64, initial: u64) -> Self {
        Self {
            window: window.max(initial),
            advertised: initial,
            received: 0,
            consumed: 0,
        }
    }

    /// The peer's data reached `offset` (for a stream: the end of a frame; for the session:
    /// the sum of stream highs). Checks it against the advertised limit before anything is
    /// stored.
    ///
    /// # Errors
    /// [`FlowControlError`] if `offset` exceeds the advertised limit.
    pub fn check(&self, offset: u64) -> Result<(), FlowControlError> {
        if offset > self.advertised {
            return Err(FlowControlError {
                offset,
                limit: self.advertised,
            });
        }
        Ok(())
    }

    /// Records that the peer's data reached `offset` (after [`RecvWindow::check`]).
    pub fn on_received(&mut self, offset: u64) {
        self.received = self.received.max(offset.min(self.advertised));
    }

    /// The application consumed `n` more bytes (clamped to what was received).
    pub fn on_consumed(&mut self, n: u64) {
        self.consumed = self.consumed.saturating_add(n).min(self.received);
    }

    /// If an eighth of a window or more was consumed since the last advertisement, raises the limit
    /// to `consumed + window` and returns it (send MAX_DATA / MAX_STREAM_DATA).
    pub fn take_update(&mut self) -> Option<u64> {
        if self.update_wanted() {
            self.advertised = self.consumed.saturating_add(self.window);
            return Some(self.advertised);
        }
        None
    }

    /// Whether [`RecvWindow::take_update`] would return a new limit.
    pub fn update_wanted(&self) -> bool {
        let next = self.consumed.saturating_add(self.window);
        next.saturating_sub(self.advertised) >= self.window.div_ceil(8).max(1)
    }

    /// The limit last advertised (re-send this when a credit frame was lost).
    pub fn advertised(&self) -> u64 {
        self.advertised
    }

    /// Highest offset received.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Bytes consumed.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Credit the peer still has: `advertised − received` (never negative).
    pub fn credit(&self) -> u64 {
        self.advertised - self.received
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn window_zero_means_zero() {
        let w = RecvWindow::new(0);
        assert!(w.check(1).is_err());
        assert!(w.check(0).is_ok());
        let mut c = SendCredit::new(0);
        assert_eq!(c.available(), 0);
        assert_eq!(c.take_blocked(), Some(0));
        assert_eq!(c.take_blocked(), None);
        assert!(c.on_max(10));
        assert!(!c.on_max(5));
        assert_eq!(c.available(), 10);
    }

    #[test]
    fn updates_after_an_eighth_of_a_window() {
        let mut w = RecvWindow::new(800);
        w.check(800).unwrap();
        w.on_received(800);
        assert_eq!(w.credit(), 0);
        w.on_consumed(99);
        assert_eq!(w.take_update(), None);
        w.on_consumed(1);
        assert_eq!(w.take_update(), Some(900));
        assert_eq!(w.credit(), 100);
        assert_eq!(
            w.check(901),
            Err(FlowControlError {
                offset: 901,
                limit: 900
            })
        );
    }

    proptest! {
        /// A well-behaved sender and receiver: credit never negative, the sender never
        /// exceeds the limit, and a reading receiver never stalls the sender for good.
        #[test]
        fn credit_never_negative(window in 1u64..1000, ops in proptest::collection::vec((0u8..3, 0u64..500), 0..300)) {
            let mut rx = RecvWindow::new(window);
            let mut tx = SendCredit::new(window);
            let mut in_transit_credit = None;
            for (op, n) in ops {
                match op {
                    0 => {
                        let n = n.min(tx.available());
                        tx.consume(n);
                        prop_assert!(rx.check(tx.used()).is_ok());
                        rx.on_received(tx.used());
                    }
                    1 => {
                        rx.on_consumed(n);
                        if let Some(m) = rx.take_update() {
                            in_transit_credit = Some(m);
                        }
                    }
                    _ => {
                        if let Some(m) = in_transit_credit.take() {
                            tx.on_max(m);
                        }
                    }
                }
                prop_assert!(rx.advertised() >= rx.received());
                prop_assert!(rx.consumed() <= rx.received());
                prop_assert!(tx.used() <= tx.max());
                prop_assert!(rx.advertised() - rx.consumed() <= window);
            }
            // Drain: consume everything and deliver credit; the sender gets room again.
            rx.on_consumed(u64::MAX);
            if let Some(m) = rx.take_update() { tx.on_max(m); }
            if let Some(m) = in_transit_credit { tx.on_max(m); }
            prop_assert_eq!(tx.max(), rx.advertised());
            prop_assert!(tx.available() > 0);
        }
    }
}
