//! The paced probe schedule of one hole-punching attempt. Every probe is the same
//! authenticated PATH_CHALLENGE (its data is random per attempt). The plan's candidates are
//! probed in [`CANDIDATE_ROUNDS`] rounds (both sides must have sent before either NAT lets
//! the other in); the hard side's extra sockets and the easy side's birthday spray go out
//! once, in the slots the candidates leave free. One probe per [`PROBE_INTERVAL`] per
//! session, at most [`MAX_PROBES`] per attempt, and a node-wide [`ProbeBudget`] on top: a
//! peer's candidate list cannot turn a node into a flood source.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::Plan;

/// Time between two probes of one attempt (200 per second).
pub const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// Times each candidate is probed.
pub const CANDIDATE_ROUNDS: usize = 8;
/// Time between rounds of candidate probes.
pub const ROUND_INTERVAL: Duration = Duration::from_millis(300);
/// An attempt gives up this long after its last scheduled probe.
pub const ATTEMPT_LINGER: Duration = Duration::from_secs(3);
/// Most probes one attempt sends (bounds what a peer's candidate list can make us send).
pub const MAX_PROBES: usize = 4096;
/// Probes per second a whole node sends at most, over all sessions.
pub const NODE_PROBES_PER_SEC: u32 = 1000;

/// A node-wide token bucket for hole-punching probes.
#[derive(Clone, Copy, Debug)]
pub struct ProbeBudget {
    tokens: u32,
    last: Option<Instant>,
}

impl Default for ProbeBudget {
    fn default() -> Self {
        Self {
            tokens: NODE_PROBES_PER_SEC / 10,
            last: None,
        }
    }
}

impl ProbeBudget {
    const CAP: u32 = NODE_PROBES_PER_SEC / 10;

    fn refill(&mut self, now: Instant) {
        let Some(last) = self.last else {
            self.last = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(last);
        let add = (elapsed.as_micros() * u128::from(NODE_PROBES_PER_SEC) / 1_000_000) as u64;
        if add > 0 {
            self.tokens = (u64::from(self.tokens) + add).min(u64::from(Self::CAP)) as u32;
            self.last = Some(now);
        }
    }

    /// Takes one probe's worth; false if the node is at its rate.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// When a token will next be available.
    pub fn next_available(&self, now: Instant) -> Instant {
        if self.tokens > 0 {
            return now;
        }
        let per = Duration::from_micros(1_000_000 / u64::from(NODE_PROBES_PER_SEC));
        self.last.map_or(now, |l| (l + per).max(now))
    }
}

/// Extra copies of the first candidate sent before anything else: behind an
/// endpoint-dependent NAT the first new destination decides the port it allocates, so a copy
/// lost before the NAT must not let the second candidate take that port.
pub const LEAD_COPIES: u8 = 2;
/// Most peer-reflexive addresses one attempt learns.
pub const MAX_LEARNED: usize = 16;
/// Most candidates probed in rounds (a plan has far fewer; this bounds a hostile one).
pub const MAX_ROUND_TARGETS: usize = 32;

/// One hole-punching attempt. Compact: the rounds, the sockets and the spray are cursors
/// over the plan, not a list of every probe (a few KiB per attempt at most).
#[derive(Clone, Debug)]
pub struct Punch {
    challenge: [u8; 8],
    start: Instant,
    /// Probed in rounds: `candidates[idx]` of round `round` is next.
    candidates: Vec<SocketAddr>,
    round: usize,
    idx: usize,
    lead_left: u8,
    /// Peer-reflexive addresses learned while punching, each probed a few times (first).
    learned: VecDeque<(Instant, SocketAddr)>,
    learned_targets: Vec<SocketAddr>,
    /// Hard side: one probe from each extra socket (by index) to this address.
    socket_target: Option<SocketAddr>,
    sockets_total: usize,
    sockets_sent: usize,
    /// Easy side: the birthday spray.
    spray_ip: Option<IpAddr>,
    spray_ports: Vec<u16>,
    spray_next: usize,
    spray_at: Instant,
    next_at: Instant,
    deadline: Instant,
    sent: usize,
}

impl Punch {
    /// Schedules the probes of `plan` from `now`; `sockets` is how many extra sockets we
    /// have (used when the plan has a socket target; [`Punch::poll`] gets the list).
    pub fn new(now: Instant, challenge: [u8; 8], plan: &Plan, sockets: usize) -> Self {
        let candidates: Vec<SocketAddr> = plan
            .candidates
            .iter()
            .copied()
            .take(MAX_ROUND_TARGETS)
            .collect();
        let sockets_total = if plan.socket_target.is_some() {
            sockets.min(super::MAX_PUNCH_SOCKETS)
        } else {
            0
        };
        let spray_ip = plan.spray.first().map(SocketAddr::ip);
        let spray_ports: Vec<u16> = plan
            .spray
            .iter()
            .filter(|a| Some(a.ip()) == spray_ip)
            .map(SocketAddr::port)
            .take(super::BIRTHDAY_PROBES)
            .collect();
        let probes = (candidates.len() * CANDIDATE_ROUNDS
            + usize::from(LEAD_COPIES)
            + sockets_total
            + spray_ports.len())
        .min(MAX_PROBES) as u32;
        let last_due = now
            + ROUND_INTERVAL * (CANDIDATE_ROUNDS as u32 - 1)
            + plan.spray_delay
            + PROBE_INTERVAL * probes;
        Self {
            challenge,
            start: now,
            candidates,
            round: 0,
            idx: 0,
            lead_left: LEAD_COPIES,
            learned: VecDeque::new(),
            learned_targets: Vec::new(),
            socket_target: plan.socket_target,
            sockets_total,
            sockets_sent: 0,
            spray_ip,
            spray_ports,
            spray_next: 0,
            spray_at: now + plan.spray_delay,
            next_at: now,
            deadline: last_due + ATTEMPT_LINGER,
            sent: 0,
        }
    }

    /// The challenge data every probe carries.
    pub fn challenge(&self) -> [u8; 8] {
        self.challenge
    }

    fn round_at(&self) -> Option<Instant> {
        (self.round < CANDIDATE_ROUNDS && !self.candidates.is_empty())
            .then(|| self.start + ROUND_INTERVAL * self.round as u32)
    }

    fn sockets_at(&self) -> Option<Instant> {
        (self.sockets_sent < self.sockets_total).then_some(self.start)
    }

    fn spray_at(&self) -> Option<Instant> {
        (self.spray_next < self.spray_ports.len()).then_some(self.spray_at)
    }

    /// The earliest time something is due (before pacing).
    fn due(&self) -> Option<Instant> {
        if self.sent >= MAX_PROBES {
            return None;
        }
        [
            self.learned.front().map(|l| l.0),
            self.round_at(),
            self.sockets_at(),
            self.spray_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next probe due at `now` (destination, local socket: one of `sockets`, or `None`
    /// for the default one), or `None`. Takes a token from the node's `budget`.
    pub fn poll(
        &mut self,
        now: Instant,
        budget: &mut ProbeBudget,
        sockets: &[SocketAddr],
    ) -> Option<(SocketAddr, Option<SocketAddr>)> {
        if now >= self.deadline || now < self.next_at || self.due()? > now {
            return None;
        }
        if !budget.take(now) {
            // The node is at its probe rate: try again when a token is back.
            self.next_at = budget
                .next_available(now)
                .max(now + Duration::from_micros(100));
            return None;
        }
        self.sent += 1;
        self.next_at = now + PROBE_INTERVAL;
        // Learned addresses and candidate rounds first; the bulk fills the gaps.
        if self.learned.front().is_some_and(|l| l.0 <= now) {
            return self.learned.pop_front().map(|(_, a)| (a, None));
        }
        if self.round_at().is_some_and(|t| t <= now) {
            let dst = self.candidates[self.idx];
            if self.round == 0 && self.idx == 0 && self.lead_left > 0 {
                self.lead_left -= 1;
                return Some((dst, None));
            }
            self.idx += 1;
            if self.idx == self.candidates.len() {
                self.idx = 0;
                self.round += 1;
            }
            return Some((dst, None));
        }
        if let (Some(t), Some(dst)) = (self.sockets_at(), self.socket_target)
            && t <= now
        {
            let src = sockets.get(self.sockets_sent).copied();
            self.sockets_sent += 1;
            if src.is_some() {
                return Some((dst, src));
            }
        }
        if let (Some(t), Some(ip)) = (self.spray_at(), self.spray_ip)
            && t <= now
        {
            let port = self.spray_ports[self.spray_next];
            self.spray_next += 1;
            return Some((SocketAddr::new(ip, port), None));
        }
        None
    }

    /// When [`Punch::poll`] may next return a probe.
    pub fn next_timeout(&self) -> Option<Instant> {
        Some(self.due()?.max(self.next_at)).filter(|t| *t < self.deadline)
    }

    /// Whether the attempt is over (every probe sent and the answers had time to come, or
    /// timed out).
    pub fn is_done(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    fn is_target(&self, a: SocketAddr) -> bool {
        self.candidates.contains(&a)
            || self.learned_targets.contains(&a)
            || self.socket_target == Some(a)
            || (self.spray_ip == Some(a.ip()) && self.spray_ports.contains(&a.port()))
    }

    /// Whether a PATH_RESPONSE with `data` from `from` answers this attempt.
    pub fn answers(&self, from: SocketAddr, data: &[u8; 8]) -> bool {
        *data == self.challenge && self.is_target(from)
    }

    /// Adds an address the peer's probes came from (peer-reflexive in ICE terms) at the
    /// front of the schedule, a few times.
    pub fn learn(&mut self, now: Instant, addr: SocketAddr) {
        if self.is_target(addr) || self.learned_targets.len() >= MAX_LEARNED {
            return;
        }
        self.learned_targets.push(addr);
        for round in 0..3u32 {
            self.learned.push_back((now + ROUND_INTERVAL * round, addr));
        }
        self.learned.make_contiguous().sort_by_key(|(at, _)| *at);
        self.deadline = self.deadline.max(now + ROUND_INTERVAL * 3 + ATTEMPT_LINGER);
    }

    /// When the attempt ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
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

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn drain(
        p: &mut Punch,
        t0: Instant,
        sockets: &[SocketAddr],
    ) -> Vec<(Instant, SocketAddr, Option<SocketAddr>)> {
        let mut budget = ProbeBudget::default();
        let mut now = t0;
        let mut sent = Vec::new();
        while !p.is_done(now) {
            if let Some((dst, src)) = p.poll(now, &mut budget, sockets) {
                sent.push((now, dst, src));
                assert!(p.poll(now, &mut budget, sockets).is_none(), "paced");
            }
            now = p.next_timeout().unwrap_or(now + Duration::from_secs(60));
        }
        sent
    }

    #[test]
    fn candidates_repeat_bulk_goes_once_and_probes_are_paced() {
        let t0 = Instant::now();
        let plan = Plan {
            candidates: vec![a("1.1.1.1:1"), a("2.2.2.2:2")],
            spray: (0..10)
                .map(|p| a(&format!("3.3.3.3:{}", 1000 + p)))
                .collect(),
            spray_delay: Duration::from_millis(500),
            socket_target: Some(a("1.1.1.1:1")),
        };
        let sockets: Vec<SocketAddr> = (0..4)
            .map(|p| a(&format!("10.0.0.1:{}", 40000 + p)))
            .collect();
        let mut p = Punch::new(t0, [9; 8], &plan, sockets.len());
        let sent = drain(&mut p, t0, &sockets);
        assert_eq!(
            sent.iter().filter(|s| s.1 == plan.candidates[1]).count(),
            CANDIDATE_ROUNDS
        );
        // Candidates go first, the first one a few times; the sockets fill the gaps.
        for s in &sent[..=usize::from(LEAD_COPIES)] {
            assert_eq!((s.1, s.2), (plan.candidates[0], None));
        }
        assert_eq!(
            sent.iter()
                .filter(|s| s.1 == plan.candidates[0] && s.2.is_none())
                .count(),
            CANDIDATE_ROUNDS + usize::from(LEAD_COPIES)
        );
        let from_sockets: Vec<_> = sent.iter().filter_map(|s| s.2).collect();
        assert_eq!(from_sockets, sockets);
        let sprayed: Vec<_> = sent.iter().filter(|s| plan.spray.contains(&s.1)).collect();
        assert_eq!(sprayed.len(), plan.spray.len());
        assert!(sprayed.iter().all(|s| s.0 >= t0 + plan.spray_delay));
        assert!(sent.windows(2).all(|w| w[1].0 - w[0].0 >= PROBE_INTERVAL));
        assert!(p.answers(plan.candidates[1], &[9; 8]));
        assert!(p.answers(plan.spray[3], &[9; 8]));
        assert!(!p.answers(plan.candidates[1], &[8; 8]));
        assert!(!p.answers(a("4.4.4.4:4"), &[9; 8]));
    }

    #[test]
    fn a_huge_plan_is_capped() {
        let t0 = Instant::now();
        let plan = Plan {
            candidates: (0..1000)
                .map(|p| a(&format!("1.1.1.1:{}", 1000 + p)))
                .collect(),
            spray: (0..5000)
                .map(|p| a(&format!("2.2.2.2:{}", 1000 + p)))
                .collect(),
            ..Plan::default()
        };
        let mut p = Punch::new(t0, [1; 8], &plan, 0);
        let sent = drain(&mut p, t0, &[]);
        assert_eq!(
            sent.len(),
            MAX_ROUND_TARGETS * CANDIDATE_ROUNDS
                + usize::from(LEAD_COPIES)
                + crate::nat::BIRTHDAY_PROBES
        );
        assert!(sent.len() <= MAX_PROBES);
    }

    #[test]
    fn the_node_budget_paces_many_sessions() {
        let t0 = Instant::now();
        let plan = Plan {
            candidates: (0..50)
                .map(|p| a(&format!("1.1.1.1:{}", 1000 + p)))
                .collect(),
            ..Plan::default()
        };
        let mut punches: Vec<Punch> = (0..20).map(|_| Punch::new(t0, [1; 8], &plan, 0)).collect();
        let mut budget = ProbeBudget::default();
        let mut sent = 0u32;
        let mut now = t0;
        let end = t0 + Duration::from_secs(1);
        while now < end {
            for p in &mut punches {
                while p.poll(now, &mut budget, &[]).is_some() {
                    sent += 1;
                }
            }
            now += Duration::from_millis(1);
        }
        // One second: the burst plus the rate, not 20 sessions × 200.
        assert!(
            sent <= NODE_PROBES_PER_SEC + NODE_PROBES_PER_SEC / 10,
            "{sent}"
        );
    }

    #[test]
    fn gives_up_after_the_deadline() {
        let t0 = Instant::now();
        let plan = Plan {
            candidates: vec![a("1.1.1.1:1")],
            ..Plan::default()
        };
        let p = Punch::new(t0, [1; 8], &plan, 0);
        assert!(!p.is_done(t0));
        assert!(p.is_done(t0 + Duration::from_secs(30)));
    }
}
