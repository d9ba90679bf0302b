//! NewReno (RFC 9002 §7): slow start by bytes acknowledged, then one datagram per window
//! per round trip; halve on congestion, once per recovery period.

use std::time::Instant;

use super::{Base, Controller};
use crate::recovery::rtt::RttEstimator;

/// Loss reduction factor (RFC 9002 §7.3.2: `kLossReductionFactor` = 0.5).
const LOSS_REDUCTION_NUM: u64 = 1;
const LOSS_REDUCTION_DEN: u64 = 2;

/// NewReno congestion controller.
#[derive(Clone, Debug)]
pub struct NewReno {
    base: Base,
    /// Bytes acknowledged in congestion avoidance since the window last grew.
    acked_in_ca: u64,
}

impl NewReno {
    /// A controller for `mss`-byte datagrams starting at `initial_window` bytes.
    pub fn new(mss: u16, initial_window: u64) -> Self {
        Self {
            base: Base::new(mss, initial_window),
            acked_in_ca: 0,
        }
    }
}

impl Controller for NewReno {
    fn on_ack(
        &mut self,
        _now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        _rtt: &RttEstimator,
    ) {
        if app_limited || self.base.in_recovery(sent) {
            return;
        }
        let b = &mut self.base;
        if b.window < b.ssthresh {
            // Slow start, but never past ssthresh in one step.
            b.window = b.window.saturating_add(bytes).min(b.ssthresh);
        } else {
            self.acked_in_ca = self.acked_in_ca.saturating_add(bytes);
            if self.acked_in_ca >= b.window {
                let rounds = self.acked_in_ca / b.window;
                self.acked_in_ca -= rounds * b.window;
                b.window = b.window.saturating_add(rounds.saturating_mul(b.mss));
            }
        }
        b.clamp();
    }

    fn on_congestion_event(&mut self, now: Instant, sent: Instant, persistent: bool, _lost: u64) {
        let b = &mut self.base;
        if !b.in_recovery(sent) {
            b.recovery_start = Some(now);
            b.window = b.window / LOSS_REDUCTION_DEN * LOSS_REDUCTION_NUM;
            b.clamp();
            b.ssthresh = b.window;
            self.acked_in_ca = 0;
        }
        if persistent {
            b.window = b.min_window();
            self.acked_in_ca = 0;
        }
    }

    fn on_mtu_update(&mut self, mss: u16) {
        self.base.on_mtu_update(mss);
    }

    fn window(&self) -> u64 {
        self.base.window
    }

    fn ssthresh(&self) -> u64 {
        self.base.ssthresh
    }

    fn initial_window(&self) -> u64 {
        self.base.initial
    }

    fn min_window(&self) -> u64 {
        self.base.min_window()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn slow_start_then_halve_then_linear() {
        let t0 = crate::fuzzing::epoch();
        let rtt = RttEstimator::default();
        let mut c = NewReno::new(1000, 10_000);
        c.on_ack(t0, t0, 10_000, false, &rtt);
        assert_eq!(c.window(), 20_000);
        // App-limited acks do not grow the window.
        c.on_ack(t0, t0, 10_000, true, &rtt);
        assert_eq!(c.window(), 20_000);
        let t1 = t0 + Duration::from_millis(100);
        c.on_congestion_event(t1, t0, false, 1000);
        assert_eq!((c.window(), c.ssthresh()), (10_000, 10_000));
        // A second loss from the same flight: no second reduction.
        c.on_congestion_event(t1 + Duration::from_millis(1), t1, false, 1000);
        assert_eq!(c.window(), 10_000);
        // Acks for packets sent before recovery do not grow.
        c.on_ack(t1, t0, 5000, false, &rtt);
        assert_eq!(c.window(), 10_000);
        // One window of acks in CA: +1 MSS.
        let t2 = t1 + Duration::from_millis(10);
        c.on_ack(t2, t2, 9_999, false, &rtt);
        assert_eq!(c.window(), 10_000);
        c.on_ack(t2, t2, 1, false, &rtt);
        assert_eq!(c.window(), 11_000);
        c.on_congestion_event(
            t2 + Duration::from_millis(1),
            t2 + Duration::from_millis(1),
            true,
            0,
        );
        assert_eq!(c.window(), 2000);
    }
}
