//! Congestion control: a [`Controller`] trait with quinn-like hooks and two implementations,
//! [`NewReno`] (RFC 9002 §7) and [`Cubic`] (RFC 9438). [`Congestion`] dispatches between them
//! without a heap allocation.
//!
//! Invariants every controller keeps, whatever the sequence of calls (checked by property
//! tests and the `congestion` fuzz target): the window is never below
//! [`Controller::min_window`] (two datagrams, so the sender can always make progress and a
//! window of zero never occurs), never above [`MAX_WINDOW`], acknowledgements never shrink it,
//! and congestion events never grow it. All arithmetic saturates.

mod cubic;
mod new_reno;

use std::time::Instant;

pub use cubic::Cubic;
pub use new_reno::NewReno;

use crate::recovery::rtt::RttEstimator;

/// Largest congestion window any controller reports (1 TiB): far beyond any real
/// bandwidth-delay product, and small enough that no arithmetic on it overflows.
pub const MAX_WINDOW: u64 = 1 << 40;

/// Which congestion controller a session uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CongestionKind {
    /// NewReno (RFC 9002 §7): simple, conservative; halves on loss.
    NewReno,
    /// CUBIC (RFC 9438): the default; recovers faster on long fat paths, reduces by 30 %.
    #[default]
    Cubic,
}

/// Initial congestion window for a datagram size (RFC 9002 §7.2:
/// `min(10 · mss, max(14720, 2 · mss))`).
pub fn default_initial_window(mss: u16) -> u64 {
    let mss = u64::from(mss);
    (10 * mss).min(14_720.max(2 * mss))
}

/// Congestion controller hooks, called by loss recovery. Byte counts are UDP payload bytes
/// of packets that count toward bytes in flight.
pub trait Controller: std::fmt::Debug {
    /// A packet of `bytes` was sent at `now`.
    fn on_sent(&mut self, now: Instant, bytes: u64) {
        let _ = (now, bytes);
    }

    /// A packet of `bytes`, sent at `sent`, was acknowledged at `now`. `app_limited` means the
    /// sender was not using its whole window when it sent, so the window should not grow
    /// (RFC 9002 §7.8).
    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    );

    /// Packets were declared lost (or ECN-CE reported); `sent` is when the newest of them was
    /// sent. At most one reduction happens per recovery period: events for packets sent
    /// before the current period began are ignored. `persistent` (RFC 9002 §7.6) collapses
    /// the window to the minimum.
    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        persistent: bool,
        lost_bytes: u64,
    );

    /// The path MTU changed; windows are rescaled to the new datagram size.
    fn on_mtu_update(&mut self, mss: u16);

    /// Bytes that may be in flight.
    fn window(&self) -> u64;

    /// The slow-start threshold (`u64::MAX` before the first congestion event).
    fn ssthresh(&self) -> u64;

    /// The window a new path starts with.
    fn initial_window(&self) -> u64;

    /// The smallest window ever used: two datagrams.
    fn min_window(&self) -> u64;
}

/// One of the built-in controllers, chosen by [`CongestionKind`] (enum dispatch: no boxing).
#[derive(Clone, Debug)]
pub enum Congestion {
    /// NewReno.
    NewReno(NewReno),
    /// CUBIC.
    Cubic(Cubic),
}

impl Congestion {
    /// A controller of `kind` for datagrams of `mss` bytes starting at `initial_window`
    /// bytes (clamped to at least the minimum window).
    pub fn new(kind: CongestionKind, mss: u16, initial_window: u64) -> Self {
        match kind {
            CongestionKind::NewReno => Self::NewReno(NewReno::new(mss, initial_window)),
            CongestionKind::Cubic => Self::Cubic(Cubic::new(mss, initial_window)),
        }
    }

    fn inner(&self) -> &dyn Controller {
        match self {
            Self::NewReno(c) => c,
            Self::Cubic(c) => c,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn Controller {
        match self {
            Self::NewReno(c) => c,
            Self::Cubic(c) => c,
        }
    }
}

impl Controller for Congestion {
    fn on_sent(&mut self, now: Instant, bytes: u64) {
        self.inner_mut().on_sent(now, bytes);
    }
    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.inner_mut().on_ack(now, sent, bytes, app_limited, rtt);
    }
    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        persistent: bool,
        lost_bytes: u64,
    ) {
        self.inner_mut()
            .on_congestion_event(now, sent, persistent, lost_bytes);
    }
    fn on_mtu_update(&mut self, mss: u16) {
        self.inner_mut().on_mtu_update(mss);
    }
    fn window(&self) -> u64 {
        self.inner().window()
    }
    fn ssthresh(&self) -> u64 {
        self.inner().ssthresh()
    }
    fn initial_window(&self) -> u64 {
        self.inner().initial_window()
    }
    fn min_window(&self) -> u64 {
        self.inner().min_window()
    }
}

/// Shared state of loss-based controllers: window, threshold, recovery period.
#[derive(Clone, Copy, Debug)]
struct Base {
    mss: u64,
    window: u64,
    ssthresh: u64,
    initial: u64,
    /// Start of the current recovery period; packets sent before it cause no new reduction
    /// and no growth.
    recovery_start: Option<Instant>,
}

impl Base {
    fn new(mss: u16, initial_window: u64) -> Self {
        let mss = u64::from(mss.max(1));
        let initial = initial_window.clamp(2 * mss, MAX_WINDOW);
        Self {
            mss,
            window: initial,
            ssthresh: u64::MAX,
            initial,
            recovery_start: None,
        }
    }

    fn min_window(&self) -> u64 {
        2 * self.mss
    }

    fn in_recovery(&self, sent: Instant) -> bool {
        self.recovery_start.is_some_and(|r| sent <= r)
    }

    fn clamp(&mut self) {
        self.window = self.window.clamp(self.min_window(), MAX_WINDOW);
    }

    fn on_mtu_update(&mut self, mss: u16) {
        let new = u64::from(mss.max(1));
        // Keep the window's size in datagrams.
        let packets = self.window / self.mss;
        self.mss = new;
        self.window = packets.saturating_mul(new);
        if self.ssthresh != u64::MAX {
            self.ssthresh = self.ssthresh.max(self.min_window());
        }
        self.clamp();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[derive(Clone, Debug)]
    pub(crate) enum Op {
        Sent(u16),
        Ack {
            age_ms: u16,
            bytes: u32,
            app_limited: bool,
        },
        Loss {
            age_ms: u16,
            persistent: bool,
        },
        Mtu(u16),
        Advance(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            any::<u16>().prop_map(Op::Sent),
            (any::<u16>(), any::<u32>(), any::<bool>()).prop_map(|(age_ms, bytes, app_limited)| {
                Op::Ack {
                    age_ms,
                    bytes,
                    app_limited,
                }
            }),
            (any::<u16>(), any::<bool>())
                .prop_map(|(age_ms, persistent)| Op::Loss { age_ms, persistent }),
            (1200u16..=9000).prop_map(Op::Mtu),
            any::<u32>().prop_map(Op::Advance),
        ]
    }

    /// Applies `ops` and checks the invariants after each.
    pub(crate) fn check_invariants(kind: CongestionKind, iw: u64, ops: &[Op]) {
        let t0 = crate::fuzzing::epoch();
        let mut now = t0;
        let mut cc = Congestion::new(kind, 1200, iw);
        let mut rtt = RttEstimator::default();
        assert!(cc.window() >= cc.min_window());
        for op in ops {
            let before = cc.window();
            match *op {
                Op::Sent(b) => cc.on_sent(now, u64::from(b)),
                Op::Ack {
                    age_ms,
                    bytes,
                    app_limited,
                } => {
                    let age = Duration::from_millis(u64::from(age_ms));
                    let sent = now.checked_sub(age).unwrap_or(t0).max(t0);
                    rtt.update(now - sent, Duration::ZERO);
                    cc.on_ack(now, sent, u64::from(bytes), app_limited, &rtt);
                    assert!(
                        cc.window() >= before,
                        "{op:?}: ack shrank {before} -> {}",
                        cc.window()
                    );
                    if app_limited {
                        assert_eq!(cc.window(), before);
                    }
                }
                Op::Loss { age_ms, persistent } => {
                    let sent = now
                        .checked_sub(Duration::from_millis(u64::from(age_ms)))
                        .unwrap_or(t0)
                        .max(t0);
                    cc.on_congestion_event(now, sent, persistent, 1200);
                    assert!(
                        cc.window() <= before,
                        "{op:?}: loss grew {before} -> {}",
                        cc.window()
                    );
                }
                Op::Mtu(m) => cc.on_mtu_update(m),
                Op::Advance(us) => now += Duration::from_micros(u64::from(us)),
            }
            assert!(cc.window() >= cc.min_window(), "{op:?}");
            assert!(cc.window() <= MAX_WINDOW, "{op:?}");
        }
    }

    proptest! {
        #[test]
        fn invariants_new_reno(iw in 0u64..10_000_000, ops in proptest::collection::vec(op(), 0..300)) {
            check_invariants(CongestionKind::NewReno, iw, &ops);
        }

        #[test]
        fn invariants_cubic(iw in 0u64..10_000_000, ops in proptest::collection::vec(op(), 0..300)) {
            check_invariants(CongestionKind::Cubic, iw, &ops);
        }
    }

    #[test]
    fn initial_window_rfc9002() {
        assert_eq!(default_initial_window(1200), 12_000);
        assert_eq!(default_initial_window(1472), 14_720);
        assert_eq!(default_initial_window(9000), 18_000);
    }

    #[test]
    fn huge_acks_saturate() {
        for kind in [CongestionKind::NewReno, CongestionKind::Cubic] {
            let t0 = crate::fuzzing::epoch();
            let mut cc = Congestion::new(kind, 1200, 12_000);
            let rtt = RttEstimator::default();
            for i in 0..1000u32 {
                let now = t0 + Duration::from_secs(u64::from(i) * 1000);
                cc.on_ack(now, now, u64::MAX, false, &rtt);
            }
            assert_eq!(cc.window(), MAX_WINDOW);
            cc.on_congestion_event(
                t0 + Duration::from_secs(2_000_000),
                t0 + Duration::from_secs(2_000_000),
                true,
                u64::MAX,
            );
            assert_eq!(cc.window(), cc.min_window());
        }
    }
}
