//! The daemon: one process per home, owning the node (through `tern-driver-mio`), serving
//! the control socket, the file and bench services, and (if it is the first on the machine
//! and no rendezvous is configured) the machine-local rendezvous.

mod handlers;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tern_core::rendezvous::msg::{Push, Query, Request as RdvRequest, Response as RdvResponse};
use tern_core::rendezvous::{Registration, Tool};
use tern_core::{
    Address, Config, Event, IncomingPolicy, PeerId, RendezvousConfig, RendezvousError,
};
use tern_driver_mio::{Endpoint, EndpointConfig, Session};
use tracing::{info, warn};

use crate::error::{CliError, from_driver};
use crate::home::{Home, Settings};
use crate::ipc;
use crate::rdv::{self, RdvAddr, RdvServer};

/// Port of the bench sink (reads everything, answers with the byte count).
pub const BENCH_PORT: u16 = 9;

/// Options of `tern daemon start` that override the saved settings.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    pub hostname: Option<String>,
    pub tags: Vec<String>,
    pub rendezvous: Option<String>,
    pub listen: Option<String>,
    pub public: Option<bool>,
}

/// Starts the daemon in the background and waits until it answers.
pub fn start(home: &Home, opts: &StartOptions, foreground: bool) -> Result<Value, CliError> {
    home.ensure()?;
    if home.running_pid().is_some() && ipc::ping_daemon(&home.socket_path(), Duration::from_secs(2))
    {
        return Err(CliError::new(
            "DAEMON_ALREADY_RUNNING",
            format!("a daemon already runs for {}", home.dir.display()),
            "stop it first (tern daemon stop) or use another --home",
        ));
    }
    let mut s = home.settings()?;
    if let Some(h) = &opts.hostname {
        tern_core::rendezvous::record::validate_hostname(h).map_err(|e| {
            CliError::invalid(e.to_string(), "use a-z, 0-9 and '-', at most 63 characters")
        })?;
        s.hostname = Some(h.clone());
    }
    if !opts.tags.is_empty() {
        for t in &opts.tags {
            tern_core::rendezvous::record::validate_tag(t)
                .map_err(|e| CliError::invalid(e.to_string(), "use a-z, 0-9, '-', '_' and '.'"))?;
        }
        s.tags = opts.tags.clone();
    }
    if let Some(r) = &opts.rendezvous {
        RdvAddr::parse(r)?;
        s.rendezvous = Some(r.clone());
    }
    if let Some(l) = &opts.listen {
        l.parse::<SocketAddr>().map_err(|_| {
            CliError::new(
                "INVALID_ADDRESS",
                format!("{l:?} is not a socket address"),
                "use IP:PORT, e.g. 0.0.0.0:4400",
            )
        })?;
        s.listen = Some(l.clone());
    }
    if let Some(p) = opts.public {
        s.public = p;
    }
    home.save_settings(&s)?;
    if foreground {
        run(home)?;
        return Ok(json!({}));
    }
    let exe =
        std::env::current_exe().map_err(|e| CliError::io("cannot find the tern executable", &e))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.log_path())
        .map_err(|e| CliError::io("cannot open the daemon log", &e))?;
    let log2 = log.try_clone().map_err(|e| CliError::io("log", &e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--home")
        .arg(&home.dir)
        .args(["daemon", "run"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::io("cannot start the daemon", &e))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CliError::new(
                "INTERNAL",
                format!("the daemon exited at start ({status})"),
                format!("see {}", home.log_path().display()),
            ));
        }
        if let Ok(info) = ipc::call(&home.socket_path(), &ipc::Request::Info) {
            // Wait briefly for the directory to assign the address.
            if info.get("registered").and_then(Value::as_bool) == Some(true)
                || Instant::now() > deadline
            {
                return Ok(info);
            }
        }
        if Instant::now() > deadline {
            return Err(CliError::new(
                "TIMEOUT",
                "the daemon did not come up",
                format!("see {}", home.log_path().display()),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the daemon and waits until it is gone.
pub fn stop(home: &Home) -> Result<Value, CliError> {
    let pid = home.running_pid();
    ipc::call(&home.socket_path(), &ipc::Request::Shutdown)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while home.running_pid().is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(json!({ "stopped": true, "pid": pid }))
}

/// Whether the daemon runs, and its info.
pub fn status(home: &Home) -> Result<Value, CliError> {
    let info = ipc::call(&home.socket_path(), &ipc::Request::Info).ok();
    Ok(json!({
        "running": info.is_some(),
        "pid": home.running_pid(),
        "home": home.dir,
        "log": home.log_path(),
        "socket": home.socket_path(),
        "info": info,
    }))
}

/// How long a command waits for the directory before giving up.
const ASK_DEADLINE: Duration = Duration::from_secs(10);
/// A directory request unanswered for this long is sent again.
const ASK_RETRY: Duration = Duration::from_secs(2);

/// Shared daemon state.
pub struct Daemon {
    pub home: Home,
    pub ep: Endpoint,
    pub settings: Mutex<Settings>,
    /// Hostnames and addresses learnt from the directory.
    pub names: Mutex<BTreeMap<PeerId, (Option<String>, Address)>>,
    pub started: Instant,
    pub rdv: RdvAddr,
    pub hosting: Mutex<Option<RdvServer>>,
    pub stop: AtomicBool,
}

impl Daemon {
    /// Sends a directory request and waits for the answer.
    ///
    /// Rides out a reconnection: while the control channel is down (the server restarted,
    /// say) it waits for it to come back, and a request that goes unanswered for
    /// [`ASK_RETRY`] is sent again. Gives up after [`ASK_DEADLINE`].
    pub fn ask(&self, req: RdvRequest) -> Result<RdvResponse, CliError> {
        let deadline = Instant::now() + ASK_DEADLINE;
        let unreachable = || {
            CliError::new(
                "RENDEZVOUS_UNREACHABLE",
                format!(
                    "not connected to the rendezvous server at {}",
                    self.rdv.server
                ),
                "check that it runs and is reachable (tern netcheck); the daemon keeps retrying",
            )
        };
        loop {
            let body = req.clone();
            let sent = self
                .ep
                .with_node(move |n, now| n.rendezvous_request(now, body))
                .map_err(|e| from_driver(&e))?;
            let id = match sent {
                Ok(id) => id,
                Err(RendezvousError::NotConfigured) => {
                    return Err(CliError::new(
                        "NO_RENDEZVOUS",
                        "no rendezvous server configured",
                        "start the daemon with --rendezvous ADDR#KEY",
                    ));
                }
                Err(_) if Instant::now() + Duration::from_millis(100) < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                Err(_) => return Err(unreachable()),
            };
            let retry_at = (Instant::now() + ASK_RETRY).min(deadline);
            let mut wait = Duration::from_micros(200);
            loop {
                if let Some(r) = self
                    .ep
                    .with_node(move |n, _| n.take_rendezvous_response(id))
                    .map_err(|e| from_driver(&e))?
                {
                    return Ok(r);
                }
                if Instant::now() > retry_at {
                    break;
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(20));
            }
            if Instant::now() >= deadline {
                return Err(CliError::new(
                    "TIMEOUT",
                    "the rendezvous server did not answer",
                    "check it with tern netcheck; try again",
                ));
            }
        }
    }

    /// Resolves a hostname, address or key to a peer (and remembers its name).
    pub fn resolve(&self, target: &str) -> Result<(PeerId, Option<String>, Address), CliError> {
        let query = parse_target(target)?;
        match self.ask(RdvRequest::Resolve(query))? {
            RdvResponse::Resolved(e) => {
                let r = &e.record;
                self.names
                    .lock()
                    .map_err(|_| CliError::internal("lock"))?
                    .insert(r.peer, (r.hostname.clone(), r.address));
                Ok((r.peer, r.hostname.clone(), r.address))
            }
            RdvResponse::Error { code, message } => Err(directory_error(code, &message, target)),
            other => Err(CliError::internal(format!("unexpected answer {other:?}"))),
        }
    }

    /// An established session with `peer`, reused or opened through the relay.
    pub fn session(&self, peer: PeerId) -> Result<Session, CliError> {
        if let Some(s) = self.ep.session_with(peer).map_err(|e| from_driver(&e))? {
            return Ok(s);
        }
        self.ep.connect_peer(peer).map_err(|e| from_driver(&e))
    }

    /// The human name of a peer.
    ///
    /// Looks the peer up in the directory the first time (and remembers the
    /// answer); falls back to the short key when the directory does not know it.
    pub fn label(&self, peer: &PeerId) -> String {
        let known = |m: &BTreeMap<PeerId, (Option<String>, Address)>| {
            m.get(peer)
                .map(|(h, a)| h.clone().unwrap_or_else(|| a.to_string()))
        };
        if let Some(l) = self.names.lock().ok().and_then(|m| known(&m)) {
            return l;
        }
        if let Ok(RdvResponse::Resolved(e)) = self.ask(RdvRequest::Resolve(Query::Peer(*peer))) {
            let r = &e.record;
            if let Ok(mut m) = self.names.lock() {
                m.insert(r.peer, (r.hostname.clone(), r.address));
                if let Some(l) = known(&m) {
                    return l;
                }
            }
        }
        peer.short()
    }

    /// Re-publishes the registration from the settings.
    pub fn publish(&self) -> Result<(), CliError> {
        let reg = registration(
            &*self
                .settings
                .lock()
                .map_err(|_| CliError::internal("lock"))?,
        );
        self.ep
            .with_node(move |n, now| n.set_registration(now, reg))
            .map_err(|e| from_driver(&e))
    }

    /// Saves the node's trust list.
    pub fn save_trust(&self) -> Result<(), CliError> {
        let list = self
            .ep
            .with_node(|n, _| n.trusted_peers())
            .map_err(|e| from_driver(&e))?;
        self.home.save_trust(&list)
    }
}

/// Maps a directory error to a CLI error.
pub fn directory_error(
    code: tern_core::rendezvous::ErrorCode,
    message: &str,
    target: &str,
) -> CliError {
    use tern_core::rendezvous::ErrorCode as C;
    match code {
        C::NotFound => CliError::new(
            "HOST_NOT_FOUND",
            format!("no node {target:?} in the directory"),
            "check the name (tern find --tag <cap> lists public nodes)",
        ),
        C::NotAllowed => CliError::new(
            "PRIVATE_NODE",
            format!("{target:?} is private and does not trust this node"),
            format!("ask it to trust you: tern handshake {target}"),
        ),
        C::HostnameTaken => CliError::new(
            "HOSTNAME_TAKEN",
            message.to_owned(),
            "choose another hostname: tern set-hostname <name>",
        ),
        C::InvalidField => {
            CliError::invalid(message.to_owned(), "see tern --help for the allowed forms")
        }
        C::RateLimited => CliError::new("TIMEOUT", message.to_owned(), "slow down and try again"),
        _ => CliError::new(
            "RENDEZVOUS_UNREACHABLE",
            format!("the directory refused: {message}"),
            "check the daemon log",
        ),
    }
}

/// Parses a command-line target: an overlay address, a 64-hex key, or a hostname.
pub fn parse_target(target: &str) -> Result<Query, CliError> {
    let t = target.trim();
    if let Ok(a) = t.parse::<Address>() {
        return Ok(Query::Address(a));
    }
    if t.contains(':') {
        let e = t
            .parse::<Address>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        return Err(CliError::new(
            "INVALID_ADDRESS",
            format!("{t:?} is not a valid address: {e}"),
            "addresses look like 0:0000.A91F.7C2E (tern info shows yours)",
        ));
    }
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        let p: PeerId = t.parse().map_err(|_| {
            CliError::new(
                "INVALID_ADDRESS",
                "not a valid peer key",
                "copy the key from tern info",
            )
        })?;
        return Ok(Query::Peer(p));
    }
    tern_core::rendezvous::record::validate_hostname(t).map_err(|e| {
        CliError::new(
            "INVALID_ADDRESS",
            format!("{t:?} is neither a hostname nor an address: {e}"),
            "use a hostname (e.g. my-mcp-server), an address (0:0000.A91F.7C2E) or a key",
        )
    })?;
    Ok(Query::Hostname(t.to_owned()))
}

fn registration(s: &Settings) -> Registration {
    Registration {
        hostname: s.hostname.clone(),
        tags: s.tags.clone(),
        tools: s
            .tools
            .iter()
            .map(|(n, d)| Tool::new(n.clone(), d))
            .collect(),
        public: s.public,
        candidates: Vec::new(),
    }
}

/// The local address the kernel would use to reach `dst` (one LAN candidate).
fn outbound_ip(dst: SocketAddr) -> Option<std::net::IpAddr> {
    let s = UdpSocket::bind(if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).ok()?;
    s.connect(dst).ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// Runs the daemon in this process until `shutdown`.
pub fn run(home: &Home) -> Result<(), CliError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TERN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    home.ensure()?;
    let identity = home.identity()?;
    let mut settings = home.settings()?;
    // Rendezvous: configured, or the machine-local one (hosting it if nobody does).
    let mut hosting = None;
    let rdv = match &settings.rendezvous {
        Some(r) => RdvAddr::parse(r)?,
        None => match rdv::find_local() {
            Some(a) => a,
            None => {
                let server = rdv::host_local()?;
                let a = server.addr;
                hosting = Some(server);
                a
            }
        },
    };
    let mut config = Config::default();
    config.incoming = if settings.public {
        IncomingPolicy::AcceptAll
    } else {
        IncomingPolicy::TrustedOnly
    };
    let mut rc = RendezvousConfig::new(rdv.server, rdv.key, registration(&settings));
    rc.beacon = rdv.beacon;
    config.rendezvous = Some(rc);
    let listen: SocketAddr = settings
        .listen
        .as_deref()
        .unwrap_or("0.0.0.0:0")
        .parse()
        .map_err(|_| CliError::invalid("bad listen address in settings", "fix settings.json"))?;
    let mut ecfg = EndpointConfig::default();
    ecfg.node = config;
    let ep = Endpoint::bind(listen, identity.clone(), ecfg).map_err(|e| {
        CliError::new(
            "ADDRESS_IN_USE",
            format!("cannot listen on {listen}: {e}"),
            "pick another address: tern daemon start --listen IP:PORT",
        )
    })?;
    let local = ep.local_addr();
    if settings.listen.is_none() || listen.port() == 0 {
        // Keep the port across restarts (NAT mappings and peers' caches stay valid).
        let mut keep = listen;
        keep.set_port(local.port());
        settings.listen = Some(keep.to_string());
        home.save_settings(&settings)?;
    }
    let host_ip = if local.ip().is_unspecified() {
        outbound_ip(rdv.server)
    } else {
        Some(local.ip())
    };
    let trust = home.trust()?;
    ep.with_node(move |n, now| {
        if let Some(ip) = host_ip {
            n.set_local_addresses(&[SocketAddr::new(ip, local.port())]);
        }
        for p in trust {
            n.set_trusted(now, p, true);
        }
    })
    .map_err(|e| from_driver(&e))?;
    let d = Arc::new(Daemon {
        home: home.clone(),
        ep: ep.clone(),
        settings: Mutex::new(settings),
        names: Mutex::new(BTreeMap::new()),
        started: Instant::now(),
        rdv,
        hosting: Mutex::new(hosting),
        stop: AtomicBool::new(false),
    });
    // Control socket (owner only).
    let sock = home.socket_path();
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock)
        .map_err(|e| CliError::io("cannot create the control socket", &e))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| CliError::io("cannot protect the control socket", &e))?;
    std::fs::write(home.pid_path(), std::process::id().to_string())
        .map_err(|e| CliError::io("cannot write the PID file", &e))?;
    info!(pid = std::process::id(), peer = %identity.peer_id(), %local, rendezvous = %rdv, "daemon running");
    spawn_services(&d)?;
    spawn_events(&d);
    for conn in listener.incoming() {
        if d.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        let d2 = d.clone();
        std::thread::spawn(move || handlers::serve(&d2, conn));
    }
    shutdown(&d);
    Ok(())
}

/// Stops everything and removes the socket and PID file.
pub fn shutdown(d: &Daemon) {
    info!("shutting down");
    d.ep.shutdown();
    if let Ok(mut h) = d.hosting.lock()
        && let Some(server) = h.take()
    {
        rdv::withdraw_local();
        server.shutdown();
    }
    let _ = std::fs::remove_file(d.home.socket_path());
    let _ = std::fs::remove_file(d.home.pid_path());
}

fn spawn_services(d: &Arc<Daemon>) -> Result<(), CliError> {
    // Incoming sessions live in the node; the handles are not needed.
    let ep = d.ep.clone();
    std::thread::spawn(move || {
        while let Ok(s) = ep.accept() {
            info!(peer = %s.peer(), "incoming session");
        }
    });
    // File service.
    let files =
        d.ep.listen(crate::files::FILE_PORT)
            .map_err(|e| from_driver(&e))?;
    let dir = d.home.received();
    let d2 = d.clone();
    std::thread::spawn(move || {
        while let Ok(stream) = files.accept() {
            let dir = dir.clone();
            let from = d2.label(&stream_peer(&d2, &stream));
            std::thread::spawn(move || match crate::files::receive(stream, &dir) {
                Ok(p) => info!(from, path = %p.display(), "file received"),
                Err(e) => warn!(from, error = %e.message, "file transfer failed"),
            });
        }
    });
    // Bench sink.
    let bench = d.ep.listen(BENCH_PORT).map_err(|e| from_driver(&e))?;
    std::thread::spawn(move || {
        while let Ok(mut stream) = bench.accept() {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                let mut total = 0u64;
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = stream.write_all(&total.to_be_bytes());
                let _ = stream.finish();
            });
        }
    });
    Ok(())
}

fn stream_peer(d: &Daemon, s: &tern_driver_mio::Stream) -> PeerId {
    let sid = s.session_id();
    d.ep.with_node(move |n, _| n.session_info(sid).and_then(|i| i.peer))
        .ok()
        .flatten()
        .unwrap_or(PeerId::from_bytes([0; 32]))
}

fn spawn_events(d: &Arc<Daemon>) {
    let d = d.clone();
    std::thread::spawn(move || {
        while let Ok(e) = d.ep.next_event() {
            match e {
                Event::Registered { address } => info!(%address, "registered"),
                Event::RegistrationRefused { .. } => {
                    warn!("registration refused (hostname taken?)")
                }
                Event::RendezvousDisconnected => warn!("lost the rendezvous server; reconnecting"),
                Event::RendezvousPush => {
                    while let Ok(Some(p)) = d.ep.with_node(|n, _| n.take_rendezvous_push()) {
                        match p {
                            Push::TrustRequested(r) => info!(
                                from = r.from.hostname.as_deref().unwrap_or("?"),
                                note = r.note,
                                "trust request (tern pending / tern approve)"
                            ),
                            Push::TrustDecided { by, approve } => {
                                info!(%by, approve, "trust decision");
                                let _ = d.save_trust();
                            }
                            Push::Revoked { by } => {
                                info!(%by, "trust revoked by the peer");
                                let _ = d.save_trust();
                            }
                            _ => {}
                        }
                    }
                }
                Event::IncomingRefused { peer } => info!(%peer, "refused an untrusted peer"),
                Event::SessionClosed { peer, reason, .. } => {
                    info!(peer = ?peer.map(|p| p.short()), ?reason, "session closed")
                }
                Event::PathChanged { session, path } => info!(?session, ?path, "path changed"),
                _ => {}
            }
        }
    });
}
