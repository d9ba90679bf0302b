//! The rendezvous roles of a node.
//!
//! **Client** (`Config::rendezvous`): the node keeps an encrypted session with the pinned
//! rendezvous server (reconnecting with backoff), uses it as its relay, opens the control
//! stream on [`RENDEZVOUS_PORT`], registers (and refreshes) its hostname, tags and tools,
//! learns its reflexive address from the server (and from a second server address, which
//! tells whether its NAT's mapping depends on the destination), carries the application's
//! directory requests, and applies trust decisions locally as well as in the directory.
//!
//! **Server** (`Config::rendezvous_server`): the node answers the control streams with the
//! directory state machine ([`Server`]), tells every client its observed address, and
//! relays datagrams between registered nodes within the server's policy and quotas.
//!
//! Both are internal: the events of the rendezvous sessions and streams are consumed here,
//! and the application sees `Event::Registered`, `Event::RendezvousResponse` and
//! `Event::RendezvousPush` instead.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::Node;
use crate::event::{CloseReason, Event};
use crate::identity::PeerId;
use crate::ids::SessionId;
use crate::rendezvous::channel::{FrameReader, FrameWriter, RENDEZVOUS_PORT};
use crate::rendezvous::msg::{Push, Registration, Request, Response};
use crate::rendezvous::record::SignedRecord;
use crate::rendezvous::{Client, ClientEvent, Server, ServerConfig};
use crate::stream::StreamId;

/// Where and how a node registers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RendezvousConfig {
    /// The server's address.
    pub server: SocketAddr,
    /// A second address of the same server (another port or IP), used once to learn
    /// whether this node's NAT maps per destination. Optional.
    pub beacon: Option<SocketAddr>,
    /// The server's key, pinned: a server with another key is refused.
    pub key: PeerId,
    /// What to publish.
    pub registration: Registration,
    /// Re-register this often (default 5 min; records live an hour).
    pub refresh: Duration,
}

impl RendezvousConfig {
    /// A configuration with defaults for everything but the server.
    pub fn new(server: SocketAddr, key: PeerId, registration: Registration) -> Self {
        Self {
            server,
            beacon: None,
            key,
            registration,
            refresh: Duration::from_secs(300),
        }
    }
}

/// `Node::rendezvous_request` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RendezvousError {
    /// No rendezvous server is configured (`Config::rendezvous`).
    #[error("no rendezvous server configured")]
    NotConfigured,
    /// The control channel is not up yet (or is reconnecting); retry after
    /// `Event::Registered`.
    #[error("not connected to the rendezvous server yet")]
    NotConnected,
}

/// Why the node is not (or no longer) connected to its rendezvous server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RendezvousProblem {
    /// The server never answered our handshakes: it is down, its address is wrong, or UDP
    /// is blocked on the way (then only a relay over TCP/TLS 443 can help).
    Unreachable,
    /// We had a session and stopped hearing from the server (network lost, or the server
    /// went away); reconnecting.
    Lost,
    /// Whoever answers at the server's address holds another key than the pinned one.
    WrongKey,
    /// The server refused our session (its trust policy).
    Refused,
    /// The server closed the session with this code.
    Closed {
        /// The server's code (see `close_code`).
        code: u64,
    },
}

impl RendezvousProblem {
    fn of(reason: CloseReason, was_connected: bool) -> Self {
        match reason {
            CloseReason::HandshakeTimeout => RendezvousProblem::Unreachable,
            CloseReason::IdleTimeout if !was_connected => RendezvousProblem::Unreachable,
            CloseReason::IdleTimeout => RendezvousProblem::Lost,
            CloseReason::PeerMismatch { .. } => RendezvousProblem::WrongKey,
            CloseReason::Refused => RendezvousProblem::Refused,
            CloseReason::Peer { code } | CloseReason::Local { code } => {
                RendezvousProblem::Closed { code }
            }
            _ => RendezvousProblem::Lost,
        }
    }
}

/// What the node knows about its rendezvous connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RendezvousStatus {
    /// The control channel is up.
    pub connected: bool,
    /// Why the last connection attempt failed or the last connection ended; cleared once
    /// connected.
    pub problem: Option<RendezvousProblem>,
    /// Connection attempts that failed in a row.
    pub failed_attempts: u32,
    /// Our signed record, once registered.
    pub record: Option<SignedRecord>,
    /// Our address as the server's first and second addresses see it.
    pub observed: [Option<SocketAddr>; 2],
    /// The session with the server (also our relay).
    pub session: Option<SessionId>,
}

impl RendezvousStatus {
    /// Whether the NAT in front of us maps per destination (both server addresses saw
    /// different ports), when known.
    pub fn endpoint_dependent_mapping(&self) -> Option<bool> {
        match self.observed {
            [Some(a), Some(b)] => Some(a != b),
            _ => None,
        }
    }
}

/// Most responses and pushes kept for the application to take.
const MAX_KEPT: usize = 256;
/// First and longest reconnect delay.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// After our reflexive address changed, how long to wait for the second server address's
/// observation before telling peers the new candidates anyway.
const RELEARN_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub(crate) struct ClientRole {
    config: RendezvousConfig,
    client: Client,
    session: Option<SessionId>,
    beacon: Option<SessionId>,
    stream: Option<StreamId>,
    reader: FrameReader,
    writer: FrameWriter,
    registration_req: Option<u32>,
    status: RendezvousStatus,
    responses: BTreeMap<u32, Response>,
    pushes: VecDeque<Push>,
    /// Requests the application made, by id.
    app_requests: BTreeMap<u32, ()>,
    next_connect: Option<Instant>,
    backoff: Duration,
    next_refresh: Option<Instant>,
    /// The session has been established at least once since it was opened.
    session_up: bool,
    /// Our reflexive address changed: peers get the new candidates once the beacon
    /// answered, or at this deadline.
    relearn_until: Option<Instant>,
}

#[derive(Debug)]
struct Conn {
    peer: PeerId,
    reader: FrameReader,
    writer: FrameWriter,
}

pub(crate) struct ServerRole {
    server: Server,
    conns: BTreeMap<StreamId, Conn>,
    by_peer: BTreeMap<PeerId, StreamId>,
}

impl std::fmt::Debug for ServerRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerRole")
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl ClientRole {
    pub fn new(config: RendezvousConfig, seed: [u8; 32], now: Instant) -> Self {
        Self {
            client: Client::new(config.key, seed),
            config,
            session: None,
            beacon: None,
            stream: None,
            reader: FrameReader::new(),
            writer: FrameWriter::new(),
            registration_req: None,
            status: RendezvousStatus::default(),
            responses: BTreeMap::new(),
            pushes: VecDeque::new(),
            app_requests: BTreeMap::new(),
            next_connect: Some(now),
            backoff: RECONNECT_MIN,
            next_refresh: None,
            session_up: false,
            relearn_until: None,
        }
    }
}

impl ServerRole {
    pub fn new(identity: crate::Identity, config: ServerConfig, seed: [u8; 32]) -> Self {
        Self {
            server: Server::new(identity, config, seed),
            conns: BTreeMap::new(),
            by_peer: BTreeMap::new(),
        }
    }
}

impl Node {
    /// Unix time in ms at `now`.
    fn unix_ms(&self, now: Instant) -> u64 {
        u64::try_from(self.clock.unix(now).as_millis()).unwrap_or(u64::MAX)
    }

    /// Sends a directory request (resolve, find, trust, ...) on the control channel; the
    /// answer arrives as `Event::RendezvousResponse` with the returned id (take it with
    /// [`Node::take_rendezvous_response`]). Trust decisions and revocations are also applied
    /// to this node's own trust list at once.
    pub fn rendezvous_request(
        &mut self,
        now: Instant,
        body: Request,
    ) -> Result<u32, RendezvousError> {
        let Some(role) = self.rdv_client.as_ref() else {
            return Err(RendezvousError::NotConfigured);
        };
        if role.stream.is_none() {
            return Err(RendezvousError::NotConnected);
        }
        match &body {
            Request::TrustDecision {
                requester,
                approve: true,
            } => self.set_trusted(now, *requester, true),
            Request::Revoke { peer } => self.set_trusted(now, *peer, false),
            _ => {}
        }
        let id = self
            .rdv_send(now, &body)
            .ok_or(RendezvousError::NotConnected)?;
        if let Some(role) = self.rdv_client.as_mut() {
            if role.app_requests.len() >= MAX_KEPT
                && let Some((&old, _)) = role.app_requests.iter().next()
            {
                role.app_requests.remove(&old);
            }
            role.app_requests.insert(id, ());
        }
        Ok(id)
    }

    /// The answer to request `req_id`, once `Event::RendezvousResponse` announced it.
    pub fn take_rendezvous_response(&mut self, req_id: u32) -> Option<Response> {
        self.rdv_client.as_mut()?.responses.remove(&req_id)
    }

    /// The next unsolicited server message (trust requests and decisions), announced by
    /// `Event::RendezvousPush`. Trust decisions were already applied locally.
    pub fn take_rendezvous_push(&mut self) -> Option<Push> {
        self.rdv_client.as_mut()?.pushes.pop_front()
    }

    /// The state of the rendezvous connection (`None` if none is configured).
    pub fn rendezvous_status(&self) -> Option<RendezvousStatus> {
        let role = self.rdv_client.as_ref()?;
        let mut st = role.status.clone();
        st.connected = role.stream.is_some();
        st.session = role.session;
        Some(st)
    }

    /// Changes what this node publishes and re-registers at once (if connected).
    pub fn set_registration(&mut self, now: Instant, registration: Registration) {
        let Some(role) = self.rdv_client.as_mut() else {
            return;
        };
        role.config.registration = registration;
        if role.stream.is_some() {
            self.rdv_register(now);
        }
    }

    /// Opens a session to `peer` through the rendezvous relay: the first bytes flow after one
    /// relayed handshake, with no hole punching to wait for.
    pub fn connect_peer(
        &mut self,
        now: Instant,
        peer: PeerId,
    ) -> Result<SessionId, crate::ConnectError> {
        let relay = self
            .rdv_client
            .as_ref()
            .and_then(|r| r.session.filter(|_| r.stream.is_some()))
            .ok_or(crate::ConnectError::NoRelay)?;
        self.connect_relayed(now, peer, relay)
    }

    fn rdv_send(&mut self, now: Instant, body: &Request) -> Option<u32> {
        let unix = self.unix_ms(now);
        let Node {
            rdv_client,
            identity,
            ..
        } = self;
        let role = rdv_client.as_mut()?;
        let stream = role.stream?;
        let (id, raw) = role.client.request(identity, unix, body);
        if !role.writer.push(&raw) {
            warn!("rendezvous request dropped: control channel backlog full");
            return None;
        }
        self.rdv_flush(stream);
        Some(id)
    }

    fn rdv_register(&mut self, now: Instant) {
        let Some(reg) = self
            .rdv_client
            .as_ref()
            .map(|r| r.config.registration.clone())
        else {
            return;
        };
        let id = self.rdv_send(now, &Request::Register(reg));
        if let Some(role) = self.rdv_client.as_mut() {
            role.registration_req = id;
            role.next_refresh = Some(now + role.config.refresh);
        }
    }

    /// Writes queued control bytes to a rendezvous stream (client or server side).
    fn rdv_flush(&mut self, stream: StreamId) {
        let mut writer = match (self.rdv_client.as_mut(), self.rdv_server.as_mut()) {
            (Some(c), _) if c.stream == Some(stream) => std::mem::take(&mut c.writer),
            (_, Some(s)) => match s.conns.get_mut(&stream) {
                Some(conn) => std::mem::take(&mut conn.writer),
                None => return,
            },
            _ => return,
        };
        if let Some(mut s) = self.stream(stream) {
            writer.flush(|b| s.write(b).unwrap_or(0));
        }
        match (self.rdv_client.as_mut(), self.rdv_server.as_mut()) {
            (Some(c), _) if c.stream == Some(stream) => c.writer = writer,
            (_, Some(s)) => {
                if let Some(conn) = s.conns.get_mut(&stream) {
                    conn.writer = writer;
                }
            }
            _ => {}
        }
    }

    /// Reads every complete message from a rendezvous stream.
    fn rdv_read(&mut self, stream: StreamId) -> Vec<Vec<u8>> {
        let mut chunk = [0u8; 4096];
        let mut bytes = Vec::new();
        let mut fin = false;
        if let Some(mut s) = self.stream(stream) {
            loop {
                match s.read(&mut chunk) {
                    Ok(Some(n)) => bytes.extend_from_slice(&chunk[..n]),
                    Ok(None) => {
                        fin = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        let reader = match (self.rdv_client.as_mut(), self.rdv_server.as_mut()) {
            (Some(c), _) if c.stream == Some(stream) => &mut c.reader,
            (_, Some(s)) => match s.conns.get_mut(&stream) {
                Some(conn) => &mut conn.reader,
                None => return Vec::new(),
            },
            _ => return Vec::new(),
        };
        let mut out = Vec::new();
        let mut bad = reader.push(&bytes).is_err();
        while !bad {
            match reader.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(_) => bad = true,
            }
        }
        if bad || fin {
            if let Some(mut s) = self.stream(stream) {
                let _ = s.reset(crate::event::close_code::PROTOCOL_ERROR);
            }
        }
        out
    }

    /// Runs the rendezvous roles' timers and internal events. Called after every input and
    /// command.
    pub(super) fn rdv_process(&mut self, now: Instant) {
        if self.rdv_client.is_none() && self.rdv_server.is_none() {
            return;
        }
        // Client timers: (re)connect and refresh.
        if let Some(role) = self.rdv_client.as_mut() {
            if role.next_connect.is_some_and(|t| t <= now) {
                role.next_connect = None;
                let (server, beacon, key) =
                    (role.config.server, role.config.beacon, role.config.key);
                match self.connect(now, server, Some(key)) {
                    Ok(s) => {
                        debug!(%server, "connecting to rendezvous");
                        let beacon_session =
                            beacon.and_then(|b| self.connect(now, b, Some(key)).ok());
                        if let Some(role) = self.rdv_client.as_mut() {
                            role.session = Some(s);
                            role.session_up = false;
                            role.beacon = beacon_session;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot connect to rendezvous");
                        if let Some(role) = self.rdv_client.as_mut() {
                            role.next_connect = Some(now + role.backoff);
                            role.backoff = (role.backoff * 2).min(RECONNECT_MAX);
                        }
                    }
                }
            }
            if let Some(role) = self.rdv_client.as_ref()
                && role.next_refresh.is_some_and(|t| t <= now)
            {
                self.rdv_register(now);
            }
            if let Some(role) = self.rdv_client.as_mut()
                && role.relearn_until.is_some_and(|t| t <= now)
            {
                role.relearn_until = None;
                self.nat_changed();
            }
        }
        // Internal events.
        let mut pending = std::mem::take(&mut self.events);
        let mut kept = std::mem::take(&mut self.events_spare);
        let mut rounds = 0;
        loop {
            while let Some(e) = pending.pop_front() {
                if !self.rdv_event(now, &e) {
                    kept.push_back(e);
                }
            }
            rounds += 1;
            if self.events.is_empty() || rounds > 8 {
                break;
            }
            std::mem::swap(&mut pending, &mut self.events);
        }
        kept.append(&mut self.events);
        self.events_spare = std::mem::replace(&mut self.events, kept);
        self.events_spare.clear();
        self.rdv_server_relay(now);
        self.rdv_server_pushes();
    }

    /// Handles one event if it belongs to a rendezvous role; returns whether it did.
    fn rdv_event(&mut self, now: Instant, e: &Event) -> bool {
        let (client_session, client_beacon, client_stream) = self
            .rdv_client
            .as_ref()
            .map_or((None, None, None), |r| (r.session, r.beacon, r.stream));
        match *e {
            Event::SessionEstablished { session, .. } if Some(session) == client_session => {
                if let Some(role) = self.rdv_client.as_mut() {
                    role.session_up = true;
                    role.status.problem = None;
                    role.status.failed_attempts = 0;
                }
                let _ = self.use_relay(session);
                if let Ok(stream) = self.open_stream(session, RENDEZVOUS_PORT)
                    && let Some(role) = self.rdv_client.as_mut()
                {
                    role.stream = Some(stream);
                    role.backoff = RECONNECT_MIN;
                    role.reader = FrameReader::new();
                    role.writer = FrameWriter::new();
                }
                self.rdv_register(now);
                true
            }
            Event::SessionEstablished { session, .. } if Some(session) == client_beacon => true,
            Event::SessionClosed {
                session, reason, ..
            } if Some(session) == client_session => {
                let mut was_up = false;
                let mut problem = RendezvousProblem::Lost;
                if let Some(role) = self.rdv_client.as_mut() {
                    was_up = role.session_up;
                    problem = RendezvousProblem::of(reason, was_up);
                    warn!(?problem, "rendezvous session closed; reconnecting");
                    role.session = None;
                    role.session_up = false;
                    role.stream = None;
                    role.next_refresh = None;
                    role.next_connect = Some(now + role.backoff);
                    role.backoff = (role.backoff * 2).min(RECONNECT_MAX);
                    role.status.problem = Some(problem);
                    if !was_up {
                        role.status.failed_attempts = role.status.failed_attempts.saturating_add(1);
                    }
                }
                self.events.push_back(if was_up {
                    Event::RendezvousDisconnected
                } else {
                    Event::RendezvousFailed { problem }
                });
                true
            }
            Event::SessionClosed { session, .. } if Some(session) == client_beacon => {
                if let Some(role) = self.rdv_client.as_mut() {
                    role.beacon = None;
                }
                true
            }
            Event::ObservedAddress { session, addr } if Some(session) == client_session => {
                let previous = self.nat.observed[0];
                if let Some(role) = self.rdv_client.as_mut() {
                    role.status.observed[0] = Some(addr);
                }
                if self.set_observed(0, Some(addr)) {
                    self.rdv_relearn(now, previous.is_some());
                }
                true
            }
            Event::ObservedAddress { session, addr } if Some(session) == client_beacon => {
                if let Some(role) = self.rdv_client.as_mut() {
                    role.status.observed[1] = Some(addr);
                    role.relearn_until = None;
                }
                self.set_observed(1, Some(addr));
                self.nat_changed();
                // One observation is all the second address is for.
                let _ = self.close(now, session, 0);
                true
            }
            Event::StreamReadable { stream } if Some(stream) == client_stream => {
                for m in self.rdv_read(stream) {
                    self.rdv_client_message(now, &m);
                }
                true
            }
            Event::StreamWritable { stream } if Some(stream) == client_stream => {
                self.rdv_flush(stream);
                true
            }
            Event::StreamReset { stream, .. }
            | Event::StreamStopped { stream, .. }
            | Event::StreamRefused { stream, .. }
                if Some(stream) == client_stream =>
            {
                // The server dropped the channel: reconnect from scratch.
                if let Some(s) = client_session {
                    let _ = self.close(now, s, crate::event::close_code::PROTOCOL_ERROR);
                }
                true
            }
            _ => self.rdv_server_event(now, e),
        }
    }

    fn rdv_client_message(&mut self, now: Instant, raw: &[u8]) {
        let unix = self.unix_ms(now);
        let Some(role) = self.rdv_client.as_mut() else {
            return;
        };
        match role.client.handle(unix, raw) {
            Ok(ClientEvent::Response { req_id, body }) => {
                if Some(req_id) == role.registration_req {
                    role.registration_req = None;
                    match body {
                        Response::Registered { record } => {
                            let address = record.address;
                            let first = role.status.record.is_none();
                            role.status.record = Some(record);
                            if first {
                                self.events.push_back(Event::Registered { address });
                            }
                        }
                        other => {
                            warn!(?other, "registration refused");
                            self.events.push_back(Event::RegistrationRefused { req_id });
                            role.responses.insert(req_id, other);
                        }
                    }
                } else if role.app_requests.remove(&req_id).is_some() {
                    if role.responses.len() >= MAX_KEPT
                        && let Some((&old, _)) = role.responses.iter().next()
                    {
                        role.responses.remove(&old);
                    }
                    role.responses.insert(req_id, body);
                    self.events.push_back(Event::RendezvousResponse { req_id });
                }
            }
            Ok(ClientEvent::Push(p)) => {
                match &p {
                    Push::TrustDecided { by, approve: true } => {
                        let by = *by;
                        self.set_trusted(now, by, true);
                    }
                    Push::Revoked { by } => {
                        let by = *by;
                        self.set_trusted(now, by, false);
                    }
                    _ => {}
                }
                if let Some(role) = self.rdv_client.as_mut() {
                    if role.pushes.len() >= MAX_KEPT {
                        role.pushes.pop_front();
                    }
                    role.pushes.push_back(p);
                }
                self.events.push_back(Event::RendezvousPush);
            }
            Err(e) => warn!(error = %e, "bad message from the rendezvous server"),
        }
    }

    /// Our reflexive address changed (or was learned): if it changed, the second server
    /// address's observation is stale too, so ask again; peers hear of the new candidates
    /// when it answers (or after [`RELEARN_WAIT`]).
    fn rdv_relearn(&mut self, now: Instant, changed: bool) {
        let Some(role) = self.rdv_client.as_ref() else {
            return;
        };
        let (beacon_addr, key, beacon_open) = (role.config.beacon, role.config.key, role.beacon);
        if changed {
            self.set_observed(1, None);
            if let Some(role) = self.rdv_client.as_mut() {
                role.status.observed[1] = None;
            }
        }
        match beacon_addr {
            Some(addr) if self.nat.observed[1].is_none() => {
                if beacon_open.is_none() {
                    let s = self.connect(now, addr, Some(key)).ok();
                    if let Some(role) = self.rdv_client.as_mut() {
                        role.beacon = s;
                    }
                }
                if let Some(role) = self.rdv_client.as_mut() {
                    role.relearn_until = Some(now + RELEARN_WAIT);
                }
            }
            _ => self.nat_changed(),
        }
    }

    /// The local network changed: our reflexive addresses are unknown until the server's
    /// two addresses see us again.
    pub(super) fn rdv_network_change(&mut self, now: Instant) {
        let Some(role) = self.rdv_client.as_mut() else {
            return;
        };
        role.status.observed = [None, None];
        let beacon = role.beacon.take();
        if let Some(b) = beacon {
            let _ = self.close(now, b, 0);
        }
        self.set_observed(0, None);
        self.set_observed(1, None);
        // The main session's observation arrives once the server has validated our new
        // path; the beacon's from a fresh session now.
        self.rdv_relearn(now, false);
    }

    // ---- server role ----

    fn rdv_server_event(&mut self, now: Instant, e: &Event) -> bool {
        if self.rdv_server.is_none() {
            return false;
        }
        let unix = self.unix_ms(now);
        match *e {
            Event::StreamOpened { stream, port } if port == RENDEZVOUS_PORT => {
                let session = stream.session();
                let info = self.session_info(session);
                let Some((peer, path)) = info.and_then(|i| Some((i.peer?, i.path))) else {
                    return true;
                };
                let Some(role) = self.rdv_server.as_mut() else {
                    return true;
                };
                if let crate::PathInfo::Direct(addr) = path {
                    role.server.connected(unix, peer, addr);
                }
                if let Some(old) = role.by_peer.insert(peer, stream) {
                    role.conns.remove(&old);
                }
                role.conns.insert(
                    stream,
                    Conn {
                        peer,
                        reader: FrameReader::new(),
                        writer: FrameWriter::new(),
                    },
                );
                // Data may already be waiting.
                self.rdv_server_read(now, stream);
                true
            }
            Event::StreamReadable { stream }
                if self
                    .rdv_server
                    .as_ref()
                    .is_some_and(|s| s.conns.contains_key(&stream)) =>
            {
                self.rdv_server_read(now, stream);
                true
            }
            Event::StreamWritable { stream }
                if self
                    .rdv_server
                    .as_ref()
                    .is_some_and(|s| s.conns.contains_key(&stream)) =>
            {
                self.rdv_flush(stream);
                true
            }
            Event::StreamReset { stream, .. } | Event::StreamStopped { stream, .. }
                if self
                    .rdv_server
                    .as_ref()
                    .is_some_and(|s| s.conns.contains_key(&stream)) =>
            {
                self.rdv_server_drop(stream);
                true
            }
            Event::SessionClosed {
                session,
                peer: Some(peer),
                ..
            } => {
                let stream = self
                    .rdv_server
                    .as_ref()
                    .and_then(|s| s.by_peer.get(&peer).copied())
                    .filter(|s| s.session() == session);
                if let Some(stream) = stream {
                    self.rdv_server_drop(stream);
                }
                false
            }
            Event::PathChanged {
                session,
                path: crate::PathInfo::Direct(addr),
            } => {
                if let Some(peer) = self.session_info(session).and_then(|i| i.peer)
                    && let Some(role) = self.rdv_server.as_mut()
                    && role.by_peer.contains_key(&peer)
                {
                    role.server.connected(unix, peer, addr);
                }
                false
            }
            _ => false,
        }
    }

    fn rdv_server_drop(&mut self, stream: StreamId) {
        if let Some(role) = self.rdv_server.as_mut()
            && let Some(conn) = role.conns.remove(&stream)
            && role.by_peer.get(&conn.peer) == Some(&stream)
        {
            role.by_peer.remove(&conn.peer);
            role.server.disconnected(&conn.peer);
        }
    }

    fn rdv_server_read(&mut self, now: Instant, stream: StreamId) {
        let unix = self.unix_ms(now);
        let messages = self.rdv_read(stream);
        for m in messages {
            let Some(role) = self.rdv_server.as_mut() else {
                return;
            };
            let Some(conn) = role.conns.get(&stream) else {
                return;
            };
            let peer = conn.peer;
            if let Some(resp) = role.server.handle(unix, peer, &m)
                && let Some(conn) = role.conns.get_mut(&stream)
            {
                conn.writer.push(&resp);
            }
        }
        self.rdv_flush(stream);
    }

    fn rdv_server_pushes(&mut self) {
        let mut streams = Vec::new();
        if let Some(role) = self.rdv_server.as_mut() {
            while let Some((peer, msg)) = role.server.poll_push() {
                if let Some(&stream) = role.by_peer.get(&peer)
                    && let Some(conn) = role.conns.get_mut(&stream)
                {
                    conn.writer.push(&msg);
                    streams.push(stream);
                }
            }
        }
        for s in streams {
            self.rdv_flush(s);
        }
    }

    fn rdv_server_relay(&mut self, now: Instant) {
        if self.rdv_server.is_none() {
            return;
        }
        let unix = self.unix_ms(now);
        let mut buf = std::mem::take(&mut self.scratch_big);
        while let Some(req) = self.poll_relay(&mut buf) {
            let allowed = self.rdv_server.as_mut().is_some_and(|r| {
                r.server
                    .relay_allowed(unix, &req.from, &req.to, req.len)
                    .is_ok()
            });
            if allowed {
                let _ = self.send_relay(req.from, req.to, &buf[..req.len]);
            } else {
                self.stats.drops.add(crate::DropReason::RelayDenied);
            }
        }
        self.scratch_big = buf;
    }

    /// Rendezvous server: the directory state (for status and persistence).
    pub fn rendezvous_server(&self) -> Option<&Server> {
        self.rdv_server.as_ref().map(|s| &s.server)
    }

    /// Rendezvous server: mutable directory state (to restore a snapshot at start).
    pub fn rendezvous_server_mut(&mut self) -> Option<&mut Server> {
        self.rdv_server.as_mut().map(|s| &mut s.server)
    }

    /// Earliest rendezvous timer.
    pub(super) fn rdv_poll_timeout(&self) -> Option<Instant> {
        let r = self.rdv_client.as_ref()?;
        [r.next_connect, r.next_refresh, r.relearn_until]
            .into_iter()
            .flatten()
            .min()
    }
}
