//! Log lines stamped with simulated time. With `SIM_LOG` set (`SIM_LOG=1` for the simulator's
//! trace, `SIM_LOG=trace|debug|info` to add the core's `tracing` output at that level), every
//! line reads `[    12.345678s] …`. The simulator updates a thread-local clock before each
//! step; the subscriber below formats core events with it.

use std::cell::Cell;
use std::fmt::Write as _;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span;
use tracing::{Event, Level, Metadata, Subscriber};

use crate::clock::SimTime;

thread_local! {
    static NOW: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Sets the simulated time log lines on this thread are stamped with.
pub fn set_now(now: Duration) {
    NOW.with(|n| n.set(now));
}

/// The simulated time of this thread's running simulation.
pub fn now() -> Duration {
    NOW.with(Cell::get)
}

/// What `SIM_LOG` asks for: `(print sim trace, core level)`.
pub fn from_env() -> (bool, Option<Level>) {
    match std::env::var("SIM_LOG").ok().as_deref() {
        None | Some("") | Some("0") => (false, None),
        Some("trace") => (true, Some(Level::TRACE)),
        Some("debug") => (true, Some(Level::DEBUG)),
        Some("info") => (true, Some(Level::INFO)),
        Some(_) => (true, None),
    }
}

/// A minimal `tracing` subscriber that prints events to stderr stamped with simulated time.
#[derive(Clone, Copy, Debug)]
pub struct SimLogger {
    level: Level,
}

impl SimLogger {
    /// Prints events at `level` and above.
    pub fn new(level: Level) -> Self {
        Self { level }
    }
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for SimLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.level
    }

    fn new_span(&self, _span: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _span: &span::Id, _values: &span::Record<'_>) {}

    fn record_follows_from(&self, _span: &span::Id, _follows: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut f = Fields(String::new());
        event.record(&mut f);
        let m = event.metadata();
        eprintln!("[{}] {} {}:{}", SimTime(now()), m.level(), m.target(), f.0);
    }

    fn enter(&self, _span: &span::Id) {}

    fn exit(&self, _span: &span::Id) {}
}
