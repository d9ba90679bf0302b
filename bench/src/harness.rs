//! The contender interface and the statistics every row of the table is made of.
//!
//! A contender is anything that can move bytes between two endpoints on this machine:
//! the raw UDP ceiling, quinn, and (phase B) tern on each driver. Each implements
//! [`Contender`]; `main` runs every contender with the same parameters in the same
//! process and prints one markdown table, so rows are comparable.

use std::time::Duration;

/// A benchmark failed to run (setup, I/O, or the peer misbehaved).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An OS-level I/O error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// tern's socket layer refused to set up a socket.
    #[error("socket: {0}")]
    Socket(#[from] tern_udp::SocketError),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

impl BenchError {
    /// Wraps any displayable error.
    pub fn other(e: impl std::fmt::Display) -> Self {
        Self::Other(e.to_string())
    }
}

/// Result of moving `bytes` one way over one stream (or one flow).
#[derive(Clone, Debug)]
pub struct Throughput {
    /// Payload bytes that arrived.
    pub bytes: u64,
    /// From the first byte sent to the last byte acknowledged/received.
    pub elapsed: Duration,
    /// Process CPU time (both peers, all threads) over the transfer.
    pub cpu: Duration,
    /// Payload bytes offered but lost (raw UDP has no retransmission), 0 for streams.
    pub lost: u64,
}

impl Throughput {
    /// Payload MB/s (10^6 bytes per second).
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }

    /// CPU seconds per GB (10^9 bytes) of payload, both peers together.
    pub fn cpu_s_per_gb(&self) -> f64 {
        self.cpu.as_secs_f64() / (self.bytes as f64 / 1e9)
    }
}

/// Round-trip samples of small request/response exchanges.
#[derive(Clone, Debug)]
pub struct Rtt {
    /// One sample per request, after warm-up.
    pub samples: Vec<Duration>,
}

/// Handshake samples.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// Time from connect to an established session, one per handshake.
    pub samples: Vec<Duration>,
    /// Process CPU time (both peers) over all handshakes.
    pub cpu: Duration,
}

impl Handshake {
    /// CPU time per handshake, both peers together.
    pub fn cpu_per_handshake(&self) -> Duration {
        self.cpu / u32::try_from(self.samples.len().max(1)).unwrap_or(u32::MAX)
    }
}

/// Parameters shared by every contender in one run.
#[derive(Clone, Debug)]
pub struct Params {
    /// Bytes for the one-stream throughput test.
    pub bytes: u64,
    /// Request and response size for the RTT test.
    pub rtt_size: usize,
    /// Requests measured for the RTT test.
    pub rtt_requests: usize,
    /// Requests before measuring.
    pub rtt_warmup: usize,
    /// Handshakes measured.
    pub handshakes: usize,
}

/// Something the benchmark can measure. Methods return `Ok(None)` for a metric that does
/// not apply (raw UDP has no handshake).
pub trait Contender {
    /// Row label.
    fn name(&self) -> String;
    /// One stream (or flow) carrying `p.bytes` one way, timed until the receiver has it.
    fn throughput(&mut self, p: &Params) -> Result<Option<Throughput>, BenchError>;
    /// `p.rtt_requests` request/response exchanges of `p.rtt_size` bytes each way, after
    /// `p.rtt_warmup` unmeasured ones.
    fn rtt(&mut self, p: &Params) -> Result<Option<Rtt>, BenchError>;
    /// `p.handshakes` fresh sessions, each timed from connect to established.
    fn handshake(&mut self, p: &Params) -> Result<Option<Handshake>, BenchError>;
}

/// Median of values (by sorting a copy); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    percentile(values, 50.0)
}

/// Nearest-rank percentile `q` (0–100) of values; `None` when empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Durations as microseconds.
pub fn micros(samples: &[Duration]) -> Vec<f64> {
    samples.iter().map(|d| d.as_secs_f64() * 1e6).collect()
}

/// A metric measured over several runs: the median and the range.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// Median over runs.
    pub median: f64,
    /// Smallest run.
    pub min: f64,
    /// Largest run.
    pub max: f64,
}

impl Summary {
    /// Summarises per-run values; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Self> {
        Some(Self {
            median: median(values)?,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
        let s = Summary::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
    }
}
