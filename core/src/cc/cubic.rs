//! CUBIC (RFC 9438): after a reduction the window follows `W(t) = C·(t − K)³ + W_max`
//! (in datagrams, `t` in seconds), concave up to the previous maximum and convex beyond it,
//! with a Reno-friendly floor so it is never slower than Reno. Slow start is as in NewReno.
//!
//! Constants: `C = 0.4`, `β = 0.7` (RFC 9438 §4.1, §4.6), fast convergence on (§4.7). The
//! cubic growth target is clamped to `[cwnd, 1.5·cwnd]` per ACK (§4.4), every float is
//! clamped before it is converted back, and every integer step saturates, so no input
//! sequence can overflow or zero the window.

use std::time::Instant;

use super::{Base, Controller, MAX_WINDOW};
use crate::recovery::rtt::RttEstimator;

/// Cubic scaling constant `C` (RFC 9438 §4.1).
pub const C: f64 = 0.4;
/// Multiplicative decrease factor `β_cubic` (RFC 9438 §4.6).
pub const BETA: f64 = 0.7;
/// Reno-friendly additive increase `α_cubic = 3(1 − β)/(1 + β)` (RFC 9438 §4.3).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// CUBIC congestion controller.
#[derive(Clone, Debug)]
pub struct Cubic {
    base: Base,
    /// Window just before the last reduction, in bytes.
    w_max: f64,
    /// Time until the window reaches `w_max` again, in seconds.
    k: f64,
    /// Start of the current congestion-avoidance epoch.
    epoch_start: Option<Instant>,
    /// Window the curve starts from at the epoch (`w_max`, or cwnd if above it).
    origin: f64,
    /// Reno-friendly window estimate, in bytes.
    w_est: f64,
    /// Fractional bytes of growth not yet applied.
    carry: f64,
}

impl Cubic {
    /// A controller for `mss`-byte datagrams starting at `initial_window` bytes.
    pub fn new(mss: u16, initial_window: u64) -> Self {
        Self {
            base: Base::new(mss, initial_window),
            w_max: 0.0,
            k: 0.0,
            epoch_start: None,
            origin: 0.0,
            w_est: 0.0,
            carry: 0.0,
        }
    }

    /// `W_cubic(t)` in bytes.
    fn w_cubic(&self, t: f64) -> f64 {
        let mss = self.base.mss as f64;
        let d = t - self.k;
        self.origin + C * d * d * d * mss
    }

    fn grow(&mut self, bytes: f64) {
        let total = self.carry + bytes;
        if !total.is_finite() || total <= 0.0 {
            self.carry = 0.0;
            return;
        }
        let whole = total.floor().min(MAX_WINDOW as f64);
        self.carry = (total - whole).clamp(0.0, 1.0);
        self.base.window = self.base.window.saturating_add(whole as u64);
    }
}

impl Controller for Cubic {
    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        if app_limited || self.base.in_recovery(sent) {
            return;
        }
        let b = &mut self.base;
        if b.window < b.ssthresh {
            b.window = b.window.saturating_add(bytes).min(b.ssthresh);
            b.clamp();
            return;
        }
        let mss = b.mss as f64;
        let cwnd = b.window as f64;
        let start = if let Some(s) = self.epoch_start {
            s
        } else {
            // New epoch (first ACK in congestion avoidance after a reduction or slow start).
            self.epoch_start = Some(now);
            if cwnd < self.w_max {
                self.k = ((self.w_max - cwnd) / mss / C).cbrt();
                self.origin = self.w_max;
            } else {
                self.k = 0.0;
                self.origin = cwnd;
            }
            self.w_est = cwnd;
            now
        };
        let t = now.saturating_duration_since(start).as_secs_f64() + rtt.smoothed().as_secs_f64();
        let target = self.w_cubic(t).clamp(cwnd, 1.5 * cwnd);
        // Reno-friendly estimate (α becomes 1 once past the old maximum, §4.3).
        let alpha = if self.w_est >= self.w_max { 1.0 } else { ALPHA };
        let acked = (bytes as f64).min(MAX_WINDOW as f64);
        self.w_est = (self.w_est + alpha * mss * acked / cwnd).min(MAX_WINDOW as f64);
        let inc = if self.w_est > target {
            self.w_est - cwnd
        } else {
            (target - cwnd) * acked / cwnd
        };
        self.grow(inc.max(0.0));
        self.base.clamp();
    }

    fn on_congestion_event(&mut self, now: Instant, sent: Instant, persistent: bool, _lost: u64) {
        if !self.base.in_recovery(sent) {
            let b = &mut self.base;
            b.recovery_start = Some(now);
            let cwnd = b.window as f64;
            // Fast convergence: release bandwidth for new flows when the maximum shrank.
            self.w_max = if cwnd < self.w_max {
                cwnd * (1.0 + BETA) / 2.0
            } else {
                cwnd
            };
            b.window = (cwnd * BETA) as u64;
            b.clamp();
            b.ssthresh = b.window;
            self.epoch_start = None;
            self.origin = 0.0;
            self.carry = 0.0;
        }
        if persistent {
            self.base.window = self.base.min_window();
            self.epoch_start = None;
            self.origin = 0.0;
            self.carry = 0.0;
        }
    }

    fn on_mtu_update(&mut self, mss: u16) {
        let old = self.base.mss as f64;
        self.base.on_mtu_update(mss);
        let scale = self.base.mss as f64 / old;
        self.w_max = (self.w_max * scale).min(MAX_WINDOW as f64);
        self.w_est = (self.w_est * scale).min(MAX_WINDOW as f64);
        self.origin = (self.origin * scale).min(MAX_WINDOW as f64);
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
    fn reduces_by_beta_and_regrows_to_w_max_around_k() {
        let t0 = crate::fuzzing::epoch();
        let mut rtt = RttEstimator::default();
        // A long RTT, so the cubic curve (not the Reno-friendly estimate) dominates.
        rtt.update(Duration::from_millis(400), Duration::ZERO);
        let mss = 1000u16;
        let mut c = Cubic::new(mss, 100_000);
        c.on_congestion_event(t0, t0, false, 1000);
        assert_eq!(c.window(), 70_000);
        assert_eq!(c.ssthresh(), 70_000);
        // K = cbrt(30 packets / 0.4) ≈ 4.2 s. Feed one window of ACKs per 400 ms RTT.
        let mut now = t0;
        let mut at_k = 0;
        for _ in 0..30 {
            now += Duration::from_millis(400);
            let w = c.window();
            c.on_ack(now, now, w, false, &rtt);
            if now.duration_since(t0) <= Duration::from_millis(4200) {
                at_k = c.window();
            }
        }
        // Near K the window is close to (not far above) the old maximum; later it exceeds it.
        assert!((90_000..=110_000).contains(&at_k), "{at_k}");
        assert!(c.window() > 100_000, "{}", c.window());
        // Fast convergence: a loss below the old maximum lowers w_max.
        let mut c2 = Cubic::new(mss, 100_000);
        c2.on_congestion_event(t0, t0, false, 0);
        let t1 = t0 + Duration::from_millis(10);
        c2.on_congestion_event(t1, t1, false, 0);
        assert!((c2.w_max - 70_000.0 * 0.85).abs() < 1.0);
        assert_eq!(c2.window(), 49_000);
    }

    #[test]
    fn reno_friendly_region_grows_at_least_linearly() {
        let t0 = crate::fuzzing::epoch();
        let mut rtt = RttEstimator::default();
        rtt.update(Duration::from_millis(1), Duration::ZERO);
        let mut c = Cubic::new(1000, 20_000);
        c.on_congestion_event(t0, t0, false, 0);
        let w0 = c.window();
        let mut now = t0;
        for _ in 0..20 {
            now += Duration::from_millis(1);
            let w = c.window();
            c.on_ack(now, now, w, false, &rtt);
        }
        // Over 20 tiny RTTs the cubic term is negligible; Reno-friendly α≈0.53 MSS/RTT holds.
        assert!(c.window() >= w0 + 20 * 500, "{} vs {}", c.window(), w0);
    }
}
