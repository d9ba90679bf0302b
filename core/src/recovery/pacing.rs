//! Token-bucket pacer: spreads a congestion window's worth of packets over a round trip
//! instead of sending it as one burst (which overflows shallow router queues and self-induces
//! loss).
//!
//! Rate: `1.25 · window / smoothed_rtt` (the 1.25 lets the sender keep up with a growing
//! window, RFC 9002 §7.7). Bucket size: the bytes that rate allows in [`BURST_INTERVAL`],
//! clamped to `[MIN_BURST_PACKETS, MAX_BURST_PACKETS]` datagrams. Integer arithmetic in
//! `u128`, saturating; the pacer never blocks a packet forever (a packet larger than the
//! bucket is allowed once the bucket is full).

use std::time::{Duration, Instant};

/// Time's worth of sending allowed in one burst.
pub const BURST_INTERVAL: Duration = Duration::from_millis(2);
/// Smallest burst, in datagrams (so the pacer does not fire for every single packet).
pub const MIN_BURST_PACKETS: u64 = 10;
/// Largest burst, in datagrams.
pub const MAX_BURST_PACKETS: u64 = 256;

/// Token bucket pacer for one path.
#[derive(Clone, Debug)]
pub struct Pacer {
    tokens: u64,
    capacity: u64,
    last_refill: Instant,
    window: u64,
    mtu: u16,
}

impl Pacer {
    /// A pacer with a full bucket for `window` bytes in flight and `mtu`-byte datagrams.
    pub fn new(now: Instant, smoothed_rtt: Duration, window: u64, mtu: u16) -> Self {
        let capacity = capacity(smoothed_rtt, window, mtu);
        Self {
            tokens: capacity,
            capacity,
            last_refill: now,
            window,
            mtu,
        }
    }

    /// Takes `bytes` from the bucket after a packet was sent.
    pub fn on_sent(&mut self, bytes: u64) {
        self.tokens = self.tokens.saturating_sub(bytes);
    }

    /// Whether a packet of `bytes` may go at `now`: `None` if so, otherwise the instant it
    /// may (arm `TimerKind::Pacing` for it). Call again after that instant; a packet is never
    /// delayed by more than one refill of the bucket.
    pub fn delay(
        &mut self,
        now: Instant,
        smoothed_rtt: Duration,
        window: u64,
        mtu: u16,
        bytes: u64,
    ) -> Option<Instant> {
        if window != self.window || mtu != self.mtu {
            self.capacity = capacity(smoothed_rtt, window, mtu);
            self.tokens = self.tokens.min(self.capacity);
            self.window = window;
            self.mtu = mtu;
        }
        let needed = bytes.min(self.capacity);
        if self.tokens >= needed {
            // Enough in the bucket: the refill can wait until it runs short (it then adds
            // the whole elapsed time's worth, capped at the capacity as always).
            return None;
        }
        let rtt_ns = smoothed_rtt.as_nanos().max(1);
        // Rate in bytes per ns = 5·w / (4·rtt); `w` is never below two datagrams so the
        // bucket always refills.
        let w = u128::from(window.max(2 * u64::from(mtu.max(1))));
        let elapsed = now.saturating_duration_since(self.last_refill).as_nanos();
        let refill = elapsed.saturating_mul(w).saturating_mul(5) / rtt_ns / 4;
        if refill > 0 {
            let refill = u64::try_from(refill).unwrap_or(u64::MAX);
            self.tokens = self.tokens.saturating_add(refill).min(self.capacity);
            self.last_refill = now;
        }
        if self.tokens >= needed {
            return None;
        }
        // Tokens accrue from `last_refill`; round the wait up so the refill then suffices.
        let missing = u128::from(needed - self.tokens);
        let ns = missing
            .saturating_mul(rtt_ns)
            .saturating_mul(4)
            .div_ceil(w * 5)
            .max(1);
        let wait = Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX));
        let at = self
            .last_refill
            .checked_add(wait)
            .unwrap_or(now + smoothed_rtt);
        Some(at.max(now + Duration::from_nanos(1)))
    }
}

fn capacity(smoothed_rtt: Duration, window: u64, mtu: u16) -> u64 {
    let mtu = u64::from(mtu.max(1));
    let rtt_ns = smoothed_rtt.as_nanos().max(1);
    let burst = u128::from(window).saturating_mul(BURST_INTERVAL.as_nanos()) / rtt_ns;
    let burst = u64::try_from(burst).unwrap_or(u64::MAX);
    burst.clamp(MIN_BURST_PACKETS * mtu, MAX_BURST_PACKETS * mtu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_paces_at_window_per_rtt() {
        let t0 = crate::fuzzing::epoch();
        let rtt = Duration::from_millis(40);
        // 100 Mbit/s × 40 ms ≈ 500 kB window.
        let window = 500_000;
        let mut p = Pacer::new(t0, rtt, window, 1200);
        let mut now = t0;
        let mut sent = 0u64;
        // Simulate one RTT of sending as fast as the pacer allows.
        while now < t0 + rtt {
            match p.delay(now, rtt, window, 1200, 1200) {
                None => {
                    p.on_sent(1200);
                    sent += 1200;
                }
                Some(at) => {
                    assert!(at > now);
                    now = at;
                }
            }
        }
        // 1.25 windows per RTT plus the initial bucket.
        let cap = capacity(rtt, window, 1200);
        assert!(sent <= window * 5 / 4 + cap + 1200, "{sent}");
        assert!(sent >= window, "{sent}");
    }

    #[test]
    fn never_stuck_on_extreme_values() {
        let t0 = crate::fuzzing::epoch();
        let mut p = Pacer::new(t0, Duration::ZERO, 0, 0);
        p.on_sent(u64::MAX);
        let at = p.delay(t0, Duration::ZERO, 1, 1, u64::MAX).unwrap();
        assert!(at <= t0 + Duration::from_millis(1));
        assert_eq!(p.delay(at, Duration::ZERO, 1, 1, u64::MAX), None);
        let mut p = Pacer::new(t0, Duration::from_secs(60), u64::MAX, u16::MAX);
        p.on_sent(u64::MAX);
        let at = p
            .delay(t0, Duration::from_secs(60), u64::MAX, u16::MAX, 1200)
            .unwrap();
        assert!(at > t0);
        assert_eq!(
            p.delay(at, Duration::from_secs(60), u64::MAX, u16::MAX, 1200),
            None
        );
    }
}
