//! The virtual clock. Simulated time is a [`Duration`] since the start of the run; nodes get
//! `Instant`s built as `epoch() + elapsed`, where [`epoch`] is one `Instant` taken once per
//! process. Only differences between instants ever matter, so runs are reproducible.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The process-wide base instant every simulated instant is measured from.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        // The only ambient clock read in tern-sim: `Instant` has no public constructor, so a
        // base must come from the OS once. Everything after is `epoch + Duration`, and nothing
        // depends on the base's absolute value.
        #[allow(clippy::disallowed_methods)]
        let base = Instant::now();
        base
    })
}

/// Converts simulated time to the `Instant` handed to a node.
pub fn instant(t: Duration) -> Instant {
    epoch() + t
}

/// Converts a node's `Instant` back to simulated time (instants before the epoch clamp to 0).
pub fn sim_time(i: Instant) -> Duration {
    i.saturating_duration_since(epoch())
}

/// The wall-clock time nodes believe it is at simulated time zero (a fixed date in 2027, so
/// handshake timestamps are reproducible).
pub const UNIX_START: Duration = Duration::from_secs(1_800_000_000);

/// A simulated time formatted as seconds with microseconds: `    12.345678s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SimTime(pub Duration);

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>6}.{:06}s", self.0.as_secs(), self.0.subsec_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_format() {
        let t = Duration::from_micros(12_345_678);
        assert_eq!(sim_time(instant(t)), t);
        assert_eq!(SimTime(t).to_string(), "    12.345678s");
        assert_eq!(epoch(), epoch());
    }
}
