//! Round-trip time estimation (RFC 9002 §5): latest, minimum, smoothed and variance, with the
//! peer's reported ACK delay subtracted only when that cannot push a sample below the minimum.

use std::time::Duration;

/// RTT assumed before the first sample (RFC 9002 §6.2.2: 333 ms).
pub const INITIAL_RTT: Duration = Duration::from_millis(333);
/// Timer granularity (RFC 9002 §6.1.2: 1 ms). The smallest loss delay and PTO variance term.
pub const GRANULARITY: Duration = Duration::from_millis(1);
/// Samples above this are clamped: a peer-reported delay or a stalled clock must not poison
/// the estimate with absurd values (one minute is far beyond any usable path).
pub const MAX_RTT_SAMPLE: Duration = Duration::from_secs(60);

/// Smoothed RTT estimator for one path.
#[derive(Clone, Copy, Debug)]
pub struct RttEstimator {
    latest: Duration,
    smoothed: Duration,
    var: Duration,
    min: Duration,
    has_sample: bool,
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self::new(INITIAL_RTT)
    }
}

impl RttEstimator {
    /// An estimator that assumes `initial` until the first sample (RFC 9002 §6.2.2).
    pub fn new(initial: Duration) -> Self {
        let initial = initial.min(MAX_RTT_SAMPLE);
        Self {
            latest: initial,
            smoothed: initial,
            var: initial / 2,
            min: initial,
            has_sample: false,
        }
    }

    /// Feeds one sample: `latest` is the time from sending the largest newly acknowledged
    /// packet to receiving its ACK, `ack_delay` what the peer says it held the ACK back
    /// (clamp it to the peer's `max_ack_delay` before passing it).
    pub fn update(&mut self, latest: Duration, ack_delay: Duration) {
        let latest = latest.min(MAX_RTT_SAMPLE);
        self.latest = latest;
        if !self.has_sample {
            self.has_sample = true;
            self.min = latest;
            self.smoothed = latest;
            self.var = latest / 2;
            return;
        }
        self.min = self.min.min(latest);
        // Subtract the ACK delay only if the result stays at or above the minimum RTT.
        let adjusted = if latest >= self.min.saturating_add(ack_delay) {
            latest - ack_delay
        } else {
            latest
        };
        let diff = self.smoothed.abs_diff(adjusted);
        self.var = (self.var * 3 + diff) / 4;
        self.smoothed = (self.smoothed * 7 + adjusted) / 8;
    }

    /// Whether any sample was taken.
    pub fn has_sample(&self) -> bool {
        self.has_sample
    }

    /// The most recent sample (the initial RTT before any).
    pub fn latest(&self) -> Duration {
        self.latest
    }

    /// Smoothed RTT.
    pub fn smoothed(&self) -> Duration {
        self.smoothed
    }

    /// RTT variance.
    pub fn var(&self) -> Duration {
        self.var
    }

    /// Minimum RTT seen (the initial RTT before any sample).
    pub fn min(&self) -> Duration {
        self.min
    }

    /// Probe timeout without backoff: `smoothed + max(4·var, granularity) + max_ack_delay`
    /// (RFC 9002 §6.2.1).
    pub fn pto_base(&self, max_ack_delay: Duration) -> Duration {
        self.smoothed + (self.var * 4).max(GRANULARITY) + max_ack_delay
    }

    /// Time-threshold loss delay: `9/8 · max(smoothed, latest)`, at least the granularity
    /// (RFC 9002 §6.1.2).
    pub fn loss_delay(&self) -> Duration {
        (self.smoothed.max(self.latest) * 9 / 8).max(GRANULARITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_sample_initialises() {
        let mut r = RttEstimator::default();
        assert!(!r.has_sample());
        assert_eq!(r.smoothed(), INITIAL_RTT);
        r.update(100 * MS, 50 * MS);
        assert_eq!(
            (r.smoothed(), r.var(), r.min(), r.latest()),
            (100 * MS, 50 * MS, 100 * MS, 100 * MS)
        );
    }

    #[test]
    fn ack_delay_subtracted_only_above_min() {
        let mut r = RttEstimator::default();
        r.update(100 * MS, Duration::ZERO);
        // 130 ms with 20 ms delay: adjusted 110 ms.
        r.update(130 * MS, 20 * MS);
        assert_eq!(r.smoothed(), (100 * MS * 7 + 110 * MS) / 8);
        // 105 ms with 20 ms delay would go below min (100): not subtracted.
        let before = r.smoothed();
        r.update(105 * MS, 20 * MS);
        assert_eq!(r.smoothed(), (before * 7 + 105 * MS) / 8);
        assert_eq!(r.min(), 100 * MS);
        r.update(80 * MS, Duration::ZERO);
        assert_eq!(r.min(), 80 * MS);
    }

    #[test]
    fn converges_and_clamps() {
        let mut r = RttEstimator::default();
        for _ in 0..200 {
            r.update(40 * MS, Duration::ZERO);
        }
        assert!(r.smoothed().abs_diff(40 * MS) < MS);
        assert!(r.var() < MS);
        assert_eq!(r.pto_base(25 * MS), r.smoothed() + MS + 25 * MS);
        r.update(Duration::from_secs(1_000_000), Duration::MAX);
        assert!(r.smoothed() <= MAX_RTT_SAMPLE);
        assert!(r.loss_delay() >= GRANULARITY);
    }
}
