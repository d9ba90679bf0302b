//! The paced probe schedule of one hole-punching attempt: every probe is the same
//! authenticated PATH_CHALLENGE (its data is random per attempt), sent to each target in turn
//! at a fixed pace, the real candidates repeatedly (both sides must have sent before either
//! NAT lets the other in), predicted and sprayed ports once.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Probes per second at most (paced: cheap routers drop bursts, and a malicious peer cannot
/// turn us into a flood source).
pub const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// Times each real candidate is probed.
pub const CANDIDATE_ROUNDS: usize = 8;
/// Time between rounds of candidate probes.
pub const ROUND_INTERVAL: Duration = Duration::from_millis(300);
/// An attempt gives up after this long.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Most probes one attempt sends (bounds what a peer's candidate list can make us send).
pub const MAX_PROBES: usize = 4096;

/// One hole-punching attempt.
#[derive(Clone, Debug)]
pub struct Punch {
    challenge: [u8; 8],
    queue: VecDeque<(Instant, SocketAddr, Option<SocketAddr>)>,
    targets: Vec<SocketAddr>,
    next_at: Instant,
    deadline: Instant,
    sent: usize,
}

impl Punch {
    /// Schedules probes: the first `candidates` of `targets` in [`CANDIDATE_ROUNDS`] rounds,
    /// the rest once; each from the default socket, and additionally the first candidate
    /// from every socket in `extra_sockets` (so an endpoint-dependent NAT opens one mapping
    /// per socket toward the peer: the hard side of birthday probing).
    pub fn new(
        now: Instant,
        challenge: [u8; 8],
        targets: Vec<SocketAddr>,
        candidates: usize,
        extra_sockets: &[SocketAddr],
    ) -> Self {
        let candidates = candidates.min(targets.len());
        let mut queue = VecDeque::new();
        for round in 0..CANDIDATE_ROUNDS {
            let at = now + ROUND_INTERVAL * round as u32;
            for t in &targets[..candidates] {
                queue.push_back((at, *t, None));
            }
            if round == 0 {
                if let Some(first) = targets.first() {
                    for s in extra_sockets {
                        queue.push_back((at, *first, Some(*s)));
                    }
                }
                for t in &targets[candidates..] {
                    queue.push_back((at, *t, None));
                }
            }
        }
        queue.truncate(MAX_PROBES);
        Self {
            challenge,
            queue,
            targets,
            next_at: now,
            deadline: now + ATTEMPT_TIMEOUT,
            sent: 0,
        }
    }

    /// The challenge data every probe carries.
    pub fn challenge(&self) -> [u8; 8] {
        self.challenge
    }

    /// The next probe due at `now` (destination, local socket), or `None`.
    pub fn poll(&mut self, now: Instant) -> Option<(SocketAddr, Option<SocketAddr>)> {
        if now >= self.deadline || now < self.next_at {
            return None;
        }
        let &(at, dst, src) = self.queue.front()?;
        if at > now {
            return None;
        }
        self.queue.pop_front();
        self.sent += 1;
        self.next_at = now + PROBE_INTERVAL;
        Some((dst, src))
    }

    /// When [`Punch::poll`] may next return a probe.
    pub fn next_timeout(&self) -> Option<Instant> {
        let &(at, _, _) = self.queue.front()?;
        Some(at.max(self.next_at)).filter(|t| *t < self.deadline)
    }

    /// Whether the attempt is over (every probe sent, or timed out).
    pub fn is_done(&self, now: Instant) -> bool {
        self.queue.is_empty() || now >= self.deadline
    }

    /// Whether a PATH_RESPONSE with `data` from `from` answers this attempt.
    pub fn answers(&self, from: SocketAddr, data: &[u8; 8]) -> bool {
        *data == self.challenge && (self.targets.contains(&from) || self.is_learned(from))
    }

    fn is_learned(&self, from: SocketAddr) -> bool {
        self.queue.iter().any(|(_, d, _)| *d == from)
    }

    /// Adds an address the peer's probes came from (peer-reflexive in ICE terms) at the
    /// front of the schedule.
    pub fn learn(&mut self, now: Instant, addr: SocketAddr) {
        if self.targets.contains(&addr) || self.queue.len() >= MAX_PROBES {
            return;
        }
        self.targets.push(addr);
        for round in 0..3u32 {
            self.queue
                .push_front((now + ROUND_INTERVAL * round, addr, None));
        }
        self.queue.make_contiguous().sort_by_key(|(at, _, _)| *at);
    }

    /// Probes sent so far.
    pub fn sent(&self) -> usize {
        self.sent
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a base instant
mod tests {
    use super::*;

    #[test]
    fn candidates_repeat_sprays_once_and_probes_are_paced() {
        let t0 = Instant::now();
        let c: Vec<SocketAddr> = vec!["1.1.1.1:1".parse().unwrap(), "2.2.2.2:2".parse().unwrap()];
        let spray: Vec<SocketAddr> = (0..10)
            .map(|p| format!("3.3.3.3:{}", 1000 + p).parse().unwrap())
            .collect();
        let mut targets = c.clone();
        targets.extend(&spray);
        let mut p = Punch::new(t0, [9; 8], targets, 2, &[]);
        let mut now = t0;
        let mut sent = Vec::new();
        while !p.is_done(now) {
            if let Some(probe) = p.poll(now) {
                sent.push((now, probe.0));
                assert!(p.poll(now).is_none(), "paced");
            }
            now = p.next_timeout().unwrap_or(now + ATTEMPT_TIMEOUT);
        }
        assert_eq!(
            sent.iter().filter(|s| s.1 == c[0]).count(),
            CANDIDATE_ROUNDS
        );
        assert_eq!(
            sent.iter().filter(|s| spray.contains(&s.1)).count(),
            spray.len()
        );
        assert!(sent.windows(2).all(|w| w[1].0 - w[0].0 >= PROBE_INTERVAL));
        assert!(p.answers(c[1], &[9; 8]));
        assert!(!p.answers(c[1], &[8; 8]));
        assert!(!p.answers("4.4.4.4:4".parse().unwrap(), &[9; 8]));
    }

    #[test]
    fn gives_up_after_the_timeout() {
        let t0 = Instant::now();
        let mut p = Punch::new(t0, [1; 8], vec!["1.1.1.1:1".parse().unwrap()], 1, &[]);
        assert!(p.poll(t0 + ATTEMPT_TIMEOUT).is_none());
        assert!(p.is_done(t0 + ATTEMPT_TIMEOUT));
    }
}
