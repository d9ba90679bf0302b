//! The rendezvous server's state: directory, trust relay and relay policy. Pure: it consumes
//! authenticated messages (the caller's tern session already proved who sent them) and the
//! time, and produces responses and pushes. The binary (`tern rendezvous`) or the simulator
//! connects it to a `Node`.
//!
//! Security rules, each a Pilot weakness (`pilot-reference.md` §6) turned around:
//! - A request is processed only if its signature by the session's own key checks out over
//!   the whole request, this server's key, a fresh time and an unseen nonce (S1, S4).
//! - A hostname belongs to the first key that registers it, and only that key can change or
//!   release it; addresses are random and bound to keys for good (S1, S2, S6).
//! - Trust is mutual and needs the target's own signed decision (S3, S13).
//! - Private nodes are invisible to `find`, and `resolve` gives their endpoints only to peers
//!   they trust (S6, S7). Nothing is listed wholesale.
//! - Relaying needs both ends registered and connected under their own keys, the target
//!   public or trusting the sender, and fits per-client byte and peer quotas (S8, S9).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::msg::{
    Endpoints, Entry, ErrorCode, MAX_FOUND, Message, PendingRequest, Push, Query, Registration,
    Request, Response,
};
use super::record::{SignedRecord, validate_hostname, validate_tag, validate_tools};
use crate::addr::Address;
use crate::identity::{Identity, PeerId};
use crate::rng::NodeRng;

/// Server limits, with defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Lifetime of signed records (default 1 h; nodes refresh long before).
    pub record_ttl: Duration,
    /// Largest accepted difference between a request's time and ours (default 5 min).
    pub max_clock_skew: Duration,
    /// Most registered nodes (default 100 000).
    pub max_nodes: usize,
    /// Most registrations from one IP address (default 64).
    pub max_nodes_per_ip: usize,
    /// Pending trust requests kept per target; the oldest is dropped (default 64).
    pub max_pending_per_target: usize,
    /// Requests per second per client, sustained (default 20) ...
    pub requests_per_sec: u32,
    /// ... and burst (default 50).
    pub request_burst: u32,
    /// Relayed bytes per second per client, sustained (default 4 MB/s) ...
    pub relay_bytes_per_sec: u64,
    /// ... and burst (default 8 MB).
    pub relay_burst: u64,
    /// Distinct peers one client may relay to at once (default 64).
    pub max_relay_peers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            record_ttl: Duration::from_secs(3600),
            max_clock_skew: Duration::from_secs(300),
            max_nodes: 100_000,
            max_nodes_per_ip: 64,
            max_pending_per_target: 64,
            requests_per_sec: 20,
            request_burst: 50,
            relay_bytes_per_sec: 4_000_000,
            relay_burst: 8_000_000,
            max_relay_peers: 64,
        }
    }
}

/// A token bucket (all arithmetic saturating).
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u64,
    last_ms: u64,
}

impl Bucket {
    fn full(cap: u64, now_ms: u64) -> Self {
        Self {
            tokens: cap,
            last_ms: now_ms,
        }
    }

    fn take(&mut self, n: u64, rate_per_sec: u64, cap: u64, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(rate_per_sec) / 1000)
            .min(cap);
        self.last_ms = now_ms.max(self.last_ms);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// A registered node, as stored (and persisted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredNode {
    /// Its key.
    pub peer: PeerId,
    /// Its address (bound to the key for good).
    pub address: Address,
    /// What it published.
    pub registration: Registration,
    /// IP it registered from (for the per-IP quota).
    pub ip: Option<IpAddr>,
}

/// A pending trust request, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRequest {
    /// Who asks.
    pub from: PeerId,
    /// Whom.
    pub to: PeerId,
    /// Note.
    pub note: String,
    /// When (unix ms).
    pub time_ms: u64,
}

/// Everything the server must keep across restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Registered nodes.
    pub nodes: Vec<StoredNode>,
    /// Mutual trust pairs (each pair once, smaller key first).
    pub trust: Vec<(PeerId, PeerId)>,
    /// Pending trust requests.
    pub pending: Vec<StoredRequest>,
}

#[derive(Debug)]
struct Online {
    observed: Vec<SocketAddr>,
    requests: Bucket,
    relay: Bucket,
    relay_peers: BTreeMap<PeerId, u64>,
    nonces: VecDeque<(u64, [u8; 16])>,
}

/// Why a relayed packet was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayDenied {
    /// The sender is not registered and connected.
    #[error("sender not registered")]
    SenderUnknown,
    /// The target is not registered or not connected.
    #[error("target unknown or offline")]
    TargetUnknown,
    /// The target is private and does not trust the sender.
    #[error("target does not accept this sender")]
    NotAllowed,
    /// The sender's byte or peer quota is used up.
    #[error("relay quota exceeded")]
    Quota,
}

/// Counters for `tern rendezvous` status and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Requests handled.
    pub requests: u64,
    /// Requests refused for a bad signature, stale time or replayed nonce.
    pub bad_signatures: u64,
    /// Requests refused by rate limits.
    pub rate_limited: u64,
    /// Packets relayed.
    pub relayed: u64,
    /// Packets refused by relay policy or quota.
    pub relay_denied: u64,
}

/// Directory + trust relay + relay policy.
pub struct Server {
    identity: Identity,
    config: ServerConfig,
    rng: NodeRng,
    nodes: BTreeMap<PeerId, StoredNode>,
    by_hostname: BTreeMap<String, PeerId>,
    by_address: BTreeMap<Address, PeerId>,
    per_ip: BTreeMap<IpAddr, usize>,
    trust: BTreeSet<(PeerId, PeerId)>,
    pending: BTreeMap<PeerId, VecDeque<StoredRequest>>,
    online: BTreeMap<PeerId, Online>,
    pushes: VecDeque<(PeerId, Vec<u8>)>,
    stats: ServerStats,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("nodes", &self.nodes.len())
            .field("online", &self.online.len())
            .finish_non_exhaustive()
    }
}

fn pair(a: PeerId, b: PeerId) -> (PeerId, PeerId) {
    if a <= b { (a, b) } else { (b, a) }
}

fn err(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error {
        code,
        message: message.into(),
    }
}

impl Server {
    /// A server with the given identity (its key is what nodes pin) and a seed for address
    /// assignment.
    pub fn new(identity: Identity, config: ServerConfig, seed: [u8; 32]) -> Self {
        Self {
            identity,
            config,
            rng: NodeRng::new(seed),
            nodes: BTreeMap::new(),
            by_hostname: BTreeMap::new(),
            by_address: BTreeMap::new(),
            per_ip: BTreeMap::new(),
            trust: BTreeSet::new(),
            pending: BTreeMap::new(),
            online: BTreeMap::new(),
            pushes: VecDeque::new(),
            stats: ServerStats::default(),
        }
    }

    /// The server's key.
    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// Counters.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// Number of registered nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Whether `a` and `b` trust each other according to the directory.
    pub fn trusts(&self, a: &PeerId, b: &PeerId) -> bool {
        self.trust.contains(&pair(*a, *b))
    }

    /// A session from `peer` is up, its packets seen from `observed`. Called again with each
    /// new observation (several server addresses give several).
    pub fn connected(&mut self, now_ms: u64, peer: PeerId, observed: SocketAddr) {
        let c = &self.config;
        let online = self.online.entry(peer).or_insert_with(|| Online {
            observed: Vec::new(),
            requests: Bucket::full(u64::from(c.request_burst), now_ms),
            relay: Bucket::full(c.relay_burst, now_ms),
            relay_peers: BTreeMap::new(),
            nonces: VecDeque::new(),
        });
        if !online.observed.contains(&observed) {
            if online.observed.len() >= super::msg::MAX_CANDIDATES {
                online.observed.remove(0);
            }
            online.observed.push(observed);
        }
        // Deliver trust requests that waited for this node.
        let waiting: Vec<StoredRequest> = self
            .pending
            .get(&peer)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default();
        for req in waiting {
            self.push_trust_request(now_ms, &req);
        }
    }

    /// All sessions from `peer` are gone.
    pub fn disconnected(&mut self, peer: &PeerId) {
        self.online.remove(peer);
    }

    /// Addresses the server observed for `peer` (its reflexive candidates).
    pub fn observed(&self, peer: &PeerId) -> &[SocketAddr] {
        self.online.get(peer).map_or(&[], |o| &o.observed)
    }

    /// Next message to deliver to a connected node.
    pub fn poll_push(&mut self) -> Option<(PeerId, Vec<u8>)> {
        self.pushes.pop_front()
    }

    /// Handles one message from the authenticated session peer `from`. Returns the encoded
    /// response, or `None` if the bytes are not a request at all (the caller should count
    /// and drop). Never panics.
    pub fn handle(&mut self, now_ms: u64, from: PeerId, raw: &[u8]) -> Option<Vec<u8>> {
        let Some(Message::Request(req)) = Message::decode(raw) else {
            return None;
        };
        self.stats.requests += 1;
        let response = self.check_and_handle(now_ms, from, raw, &req);
        let mut out = vec![0u8; super::msg::MAX_MESSAGE];
        let n = Message::encode_response(req.req_id, &response, &mut out).ok()?;
        out.truncate(n);
        Some(out)
    }

    fn check_and_handle(
        &mut self,
        now_ms: u64,
        from: PeerId,
        raw: &[u8],
        req: &super::msg::SignedRequest,
    ) -> Response {
        let skew = u64::try_from(self.config.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        if !req.verify(raw, &from, &self.identity.peer_id()) {
            self.stats.bad_signatures += 1;
            return err(
                ErrorCode::BadSignature,
                "signature does not match the session key",
            );
        }
        if req.time_ms.abs_diff(now_ms) > skew {
            self.stats.bad_signatures += 1;
            return err(
                ErrorCode::BadSignature,
                "request time is too far from the server's clock; check the system time",
            );
        }
        let Some(online) = self.online.get_mut(&from) else {
            return err(
                ErrorCode::BadRequest,
                "no session registered with the server",
            );
        };
        if !online.requests.take(
            1,
            u64::from(self.config.requests_per_sec),
            u64::from(self.config.request_burst),
            now_ms,
        ) {
            self.stats.rate_limited += 1;
            return err(ErrorCode::RateLimited, "too many requests; slow down");
        }
        // Nonces: remembered for twice the skew window, then times alone reject replays.
        while online
            .nonces
            .front()
            .is_some_and(|(t, _)| t.saturating_add(2 * skew) < now_ms)
        {
            online.nonces.pop_front();
        }
        if online.nonces.iter().any(|(_, n)| *n == req.nonce) {
            self.stats.bad_signatures += 1;
            return err(ErrorCode::BadSignature, "replayed request");
        }
        if online.nonces.len() >= 4096 {
            self.stats.rate_limited += 1;
            return err(
                ErrorCode::RateLimited,
                "too many requests in the replay window",
            );
        }
        online.nonces.push_back((now_ms, req.nonce));
        match &req.body {
            Request::Register(reg) => self.register(now_ms, from, reg),
            Request::Resolve(q) => self.resolve(now_ms, from, q),
            Request::Find { words, limit } => self.find(now_ms, from, words, *limit),
            Request::TrustRequest { target, note } => {
                self.trust_request(now_ms, from, target, note)
            }
            Request::TrustDecision { requester, approve } => {
                self.trust_decision(from, *requester, *approve)
            }
            Request::Revoke { peer } => self.revoke(from, *peer),
            Request::Pending => self.list_pending(now_ms, from),
            Request::Deregister => self.deregister(from),
        }
    }

    fn register(&mut self, now_ms: u64, from: PeerId, reg: &Registration) -> Response {
        if let Some(h) = &reg.hostname
            && let Err(e) = validate_hostname(h)
        {
            return err(ErrorCode::InvalidField, e.to_string());
        }
        for t in &reg.tags {
            if let Err(e) = validate_tag(t) {
                return err(ErrorCode::InvalidField, e.to_string());
            }
        }
        if let Err(e) = validate_tools(&reg.tools) {
            return err(ErrorCode::InvalidField, e.to_string());
        }
        if let Some(h) = &reg.hostname
            && let Some(owner) = self.by_hostname.get(h)
            && *owner != from
        {
            return err(
                ErrorCode::HostnameTaken,
                format!("hostname {h:?} belongs to another key; choose another"),
            );
        }
        let ip = self
            .online
            .get(&from)
            .and_then(|o| o.observed.first())
            .map(SocketAddr::ip);
        let existing = self.nodes.get(&from).cloned();
        if existing.is_none() {
            if self.nodes.len() >= self.config.max_nodes {
                return err(ErrorCode::RateLimited, "directory full");
            }
            if let Some(ip) = ip
                && self.per_ip.get(&ip).copied().unwrap_or(0) >= self.config.max_nodes_per_ip
            {
                return err(
                    ErrorCode::RateLimited,
                    "too many registrations from this address",
                );
            }
        }
        let address = match &existing {
            Some(n) => n.address,
            None => loop {
                let node = self.rng.u32();
                let a = Address::new(0, node);
                if node != 0 && node != u32::MAX && !self.by_address.contains_key(&a) {
                    break a;
                }
            },
        };
        if let Some(old) = &existing
            && old.registration.hostname != reg.hostname
            && let Some(h) = &old.registration.hostname
        {
            self.by_hostname.remove(h);
        }
        if existing.is_none() {
            if let Some(ip) = ip {
                *self.per_ip.entry(ip).or_default() += 1;
            }
            self.by_address.insert(address, from);
        }
        if let Some(h) = &reg.hostname {
            self.by_hostname.insert(h.clone(), from);
        }
        let mut registration = reg.clone();
        registration.tags.sort();
        registration.tags.dedup();
        self.nodes.insert(
            from,
            StoredNode {
                peer: from,
                address,
                registration,
                ip: existing.as_ref().and_then(|n| n.ip).or(ip),
            },
        );
        Response::Registered {
            record: self.record(now_ms, &from),
        }
    }

    fn record(&self, now_ms: u64, peer: &PeerId) -> SignedRecord {
        let ttl = u64::try_from(self.config.record_ttl.as_millis()).unwrap_or(u64::MAX);
        let n = &self.nodes[peer];
        SignedRecord::sign(
            &self.identity,
            *peer,
            n.address,
            n.registration.hostname.clone(),
            now_ms.saturating_add(ttl),
        )
    }

    fn lookup(&self, q: &Query) -> Option<PeerId> {
        match q {
            Query::Hostname(h) => self.by_hostname.get(h).copied(),
            Query::Address(a) => self.by_address.get(a).copied(),
            Query::Peer(p) => self.nodes.contains_key(p).then_some(*p),
        }
    }

    /// Whether `asker` may see `target`'s details and endpoints.
    fn visible(&self, asker: &PeerId, target: &PeerId) -> bool {
        asker == target
            || self
                .nodes
                .get(target)
                .is_some_and(|n| n.registration.public)
            || self.trusts(asker, target)
    }

    fn entry(&self, now_ms: u64, asker: &PeerId, peer: &PeerId) -> Entry {
        let n = &self.nodes[peer];
        let online = self.online.get(peer);
        Entry {
            record: self.record(now_ms, peer),
            tags: n.registration.tags.clone(),
            tools: n.registration.tools.clone(),
            public: n.registration.public,
            online: online.is_some(),
            endpoints: self.visible(asker, peer).then(|| Endpoints {
                host: n.registration.candidates.clone(),
                reflexive: online.map(|o| o.observed.clone()).unwrap_or_default(),
            }),
        }
    }

    fn resolve(&mut self, now_ms: u64, from: PeerId, q: &Query) -> Response {
        let Some(peer) = self.lookup(q) else {
            return err(ErrorCode::NotFound, "no such node");
        };
        if !self.visible(&from, &peer) {
            return err(
                ErrorCode::NotAllowed,
                "the node is private; ask it to trust you first (tern handshake)",
            );
        }
        Response::Resolved(Box::new(self.entry(now_ms, &from, &peer)))
    }

    fn find(&mut self, now_ms: u64, from: PeerId, words: &str, limit: u16) -> Response {
        let words: Vec<String> = words
            .split_whitespace()
            .map(str::to_lowercase)
            .filter(|w| !w.is_empty())
            .take(16)
            .collect();
        if words.is_empty() {
            return err(ErrorCode::BadRequest, "give at least one word or tag:<tag>");
        }
        let mut scored: Vec<(u32, &StoredNode)> = Vec::new();
        for n in self.nodes.values() {
            if !self.visible(&from, &n.peer) || n.peer == from {
                continue;
            }
            if let Some(s) = score(&n.registration, &words) {
                scored.push((s, n));
            }
        }
        scored.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.registration.hostname.cmp(&b.1.registration.hostname))
                .then_with(|| a.1.peer.cmp(&b.1.peer))
        });
        let limit = usize::from(limit).clamp(1, MAX_FOUND);
        let peers: Vec<PeerId> = scored.iter().take(limit).map(|(_, n)| n.peer).collect();
        Response::Found(peers.iter().map(|p| self.entry(now_ms, &from, p)).collect())
    }

    fn trust_request(&mut self, now_ms: u64, from: PeerId, target: &Query, note: &str) -> Response {
        if !self.nodes.contains_key(&from) {
            return err(ErrorCode::NotRegistered, "register before asking for trust");
        }
        let Some(to) = self.lookup(target) else {
            return err(ErrorCode::NotFound, "no such node");
        };
        if to == from {
            return err(ErrorCode::BadRequest, "a node always trusts itself");
        }
        if self.trusts(&from, &to) {
            return Response::Ok;
        }
        let req = StoredRequest {
            from,
            to,
            note: note.to_owned(),
            time_ms: now_ms,
        };
        let q = self.pending.entry(to).or_default();
        q.retain(|r| r.from != from);
        if q.len() >= self.config.max_pending_per_target {
            q.pop_front();
        }
        q.push_back(req.clone());
        self.push_trust_request(now_ms, &req);
        Response::Ok
    }

    fn push_trust_request(&mut self, now_ms: u64, req: &StoredRequest) {
        if !self.online.contains_key(&req.to) || !self.nodes.contains_key(&req.from) {
            return;
        }
        let p = Push::TrustRequested(PendingRequest {
            from: self.record(now_ms, &req.from),
            note: req.note.clone(),
            time_ms: req.time_ms,
        });
        self.push(req.to, &p);
    }

    fn push(&mut self, to: PeerId, p: &Push) {
        if !self.online.contains_key(&to) {
            return;
        }
        let mut out = vec![0u8; 4096];
        if let Ok(n) = Message::encode_push(p, &mut out) {
            out.truncate(n);
            if self.pushes.len() < 65_536 {
                self.pushes.push_back((to, out));
            }
        }
    }

    fn trust_decision(&mut self, from: PeerId, requester: PeerId, approve: bool) -> Response {
        let Some(q) = self.pending.get_mut(&from) else {
            return err(ErrorCode::NotFound, "no pending request from that node");
        };
        let Some(pos) = q.iter().position(|r| r.from == requester) else {
            return err(ErrorCode::NotFound, "no pending request from that node");
        };
        q.remove(pos);
        if q.is_empty() {
            self.pending.remove(&from);
        }
        if approve {
            self.trust.insert(pair(from, requester));
        }
        self.push(requester, &Push::TrustDecided { by: from, approve });
        Response::Ok
    }

    fn revoke(&mut self, from: PeerId, peer: PeerId) -> Response {
        if self.trust.remove(&pair(from, peer)) {
            self.push(peer, &Push::Revoked { by: from });
        }
        if let Some(o) = self.online.get_mut(&from) {
            o.relay_peers.remove(&peer);
        }
        Response::Ok
    }

    fn list_pending(&mut self, now_ms: u64, from: PeerId) -> Response {
        let list = self
            .pending
            .get(&from)
            .map(|q| {
                q.iter()
                    .filter(|r| self.nodes.contains_key(&r.from))
                    .map(|r| PendingRequest {
                        from: self.record(now_ms, &r.from),
                        note: r.note.clone(),
                        time_ms: r.time_ms,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Response::Pending(list)
    }

    fn deregister(&mut self, from: PeerId) -> Response {
        if let Some(n) = self.nodes.remove(&from) {
            if let Some(h) = &n.registration.hostname {
                self.by_hostname.remove(h);
            }
            self.by_address.remove(&n.address);
            if let Some(ip) = n.ip
                && let Some(c) = self.per_ip.get_mut(&ip)
            {
                *c = c.saturating_sub(1);
            }
        }
        Response::Ok
    }

    /// Whether `from` may relay `bytes` to `to` now; charges the quota if so.
    pub fn relay_allowed(
        &mut self,
        now_ms: u64,
        from: &PeerId,
        to: &PeerId,
        bytes: usize,
    ) -> Result<(), RelayDenied> {
        let res = self.relay_check(now_ms, from, to, bytes);
        match res {
            Ok(()) => self.stats.relayed += 1,
            Err(_) => self.stats.relay_denied += 1,
        }
        res
    }

    fn relay_check(
        &mut self,
        now_ms: u64,
        from: &PeerId,
        to: &PeerId,
        bytes: usize,
    ) -> Result<(), RelayDenied> {
        if !self.nodes.contains_key(from) || !self.online.contains_key(from) {
            return Err(RelayDenied::SenderUnknown);
        }
        if !self.nodes.contains_key(to) || !self.online.contains_key(to) {
            return Err(RelayDenied::TargetUnknown);
        }
        // Allowed if the target accepts the sender, or answers it: the target relayed to the
        // sender within the last minute (a private node may dial a public one and get its
        // answers back, like a stateful firewall).
        let answering = self
            .online
            .get(to)
            .and_then(|o| o.relay_peers.get(from))
            .is_some_and(|last| now_ms.saturating_sub(*last) < 60_000);
        if !answering && !self.visible(from, to) {
            return Err(RelayDenied::NotAllowed);
        }
        let (rate, cap, max_peers) = (
            self.config.relay_bytes_per_sec,
            self.config.relay_burst,
            self.config.max_relay_peers,
        );
        let Some(o) = self.online.get_mut(from) else {
            return Err(RelayDenied::SenderUnknown);
        };
        // Peers idle for a minute free their slot.
        o.relay_peers
            .retain(|_, last| now_ms.saturating_sub(*last) < 60_000);
        if !o.relay_peers.contains_key(to) && o.relay_peers.len() >= max_peers {
            return Err(RelayDenied::Quota);
        }
        if !o.relay.take(bytes as u64, rate, cap, now_ms) {
            return Err(RelayDenied::Quota);
        }
        o.relay_peers.insert(*to, now_ms);
        Ok(())
    }

    /// Everything to persist.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            nodes: self.nodes.values().cloned().collect(),
            trust: self.trust.iter().copied().collect(),
            pending: self.pending.values().flatten().cloned().collect(),
        }
    }

    /// Restores persisted state (after a restart). Online state starts empty.
    pub fn restore(&mut self, snap: Snapshot) {
        for n in snap.nodes {
            if let Some(h) = &n.registration.hostname {
                self.by_hostname.insert(h.clone(), n.peer);
            }
            self.by_address.insert(n.address, n.peer);
            if let Some(ip) = n.ip {
                *self.per_ip.entry(ip).or_default() += 1;
            }
            self.nodes.insert(n.peer, n);
        }
        self.trust
            .extend(snap.trust.into_iter().map(|(a, b)| pair(a, b)));
        for r in snap.pending {
            let q = self.pending.entry(r.to).or_default();
            if q.len() < self.config.max_pending_per_target {
                q.push_back(r);
            }
        }
    }
}

/// Relevance of a registration to search words; `None` if a `tag:` filter fails or nothing
/// matches.
fn score(reg: &Registration, words: &[String]) -> Option<u32> {
    let mut s = 0u32;
    for w in words {
        if let Some(tag) = w.strip_prefix("tag:") {
            if !reg.tags.iter().any(|t| t == tag) {
                return None;
            }
            s += 10;
            continue;
        }
        if reg.tags.iter().any(|t| t == w) {
            s += 10;
        }
        if reg
            .hostname
            .as_deref()
            .is_some_and(|h| h.contains(w.as_str()))
        {
            s += 8;
        }
        for t in &reg.tools {
            let name = t.name.to_lowercase();
            if name == *w {
                s += 6;
            } else if name.contains(w.as_str()) {
                s += 4;
            }
            if t.description
                .to_lowercase()
                .split(|c: char| !c.is_alphanumeric())
                .any(|d| d == w)
            {
                s += 2;
            }
        }
    }
    (s > 0).then_some(s)
}
