//! Running a rendezvous server (directory + beacon + relay): standalone (`tern rendezvous`)
//! or embedded in the first daemon of a machine, which announces it in the runtime
//! directory so later daemons find it with no configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tern_core::rendezvous::ServerConfig;
use tern_core::{Config, Identity, PeerId};
use tern_driver_mio::{Endpoint, EndpointConfig};
use tracing::{info, warn};

use crate::error::{CliError, from_driver};
use crate::home::{hex32, runtime_dir, write_private};
use crate::store::Store;

/// A rendezvous server's address and key: `ADDR#KEY` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RdvAddr {
    /// Where it listens (directory, relay).
    pub server: SocketAddr,
    /// Its second address (beacon), if any.
    pub beacon: Option<SocketAddr>,
    /// Its key.
    pub key: PeerId,
}

impl RdvAddr {
    /// Parses `ADDR#KEY` or `ADDR,BEACON#KEY`.
    pub fn parse(s: &str) -> Result<Self, CliError> {
        let bad = || {
            CliError::new(
                "INVALID_ADDRESS",
                format!("{s:?} is not a rendezvous address"),
                "use ADDR#KEY as printed by `tern rendezvous`, e.g. 203.0.113.5:7400#3f2a…",
            )
        };
        let (addrs, key) = s.trim().split_once('#').ok_or_else(bad)?;
        let key: PeerId = key.parse().map_err(|_| bad())?;
        let mut parts = addrs.split(',');
        let server: SocketAddr = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let beacon = match parts.next() {
            Some(b) => Some(b.parse().map_err(|_| bad())?),
            None => None,
        };
        Ok(Self {
            server,
            beacon,
            key,
        })
    }
}

impl std::fmt::Display for RdvAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.beacon {
            Some(b) => write!(f, "{},{}#{}", self.server, b, self.key),
            None => write!(f, "{}#{}", self.server, self.key),
        }
    }
}

/// A running rendezvous server: two endpoints (directory/relay, beacon) with one identity.
pub struct RdvServer {
    /// The main endpoint.
    pub main: Endpoint,
    /// The beacon's second address.
    pub beacon: Endpoint,
    /// How clients reach it.
    pub addr: RdvAddr,
    stop: Arc<AtomicBool>,
    saver: Option<std::thread::JoinHandle<()>>,
}

impl RdvServer {
    /// Starts a server on `listen` (and `beacon`, default: the next port), restoring and
    /// periodically saving its directory to `store`.
    pub fn start(
        identity: Identity,
        listen: SocketAddr,
        beacon: Option<SocketAddr>,
        store: Option<&Path>,
    ) -> Result<Self, CliError> {
        let mut cfg = EndpointConfig::default();
        cfg.node.rendezvous_server = Some(ServerConfig::default());
        let main =
            Endpoint::bind(listen, identity.clone(), cfg).map_err(|e| bind_err(listen, &e))?;
        let beacon_addr = beacon.unwrap_or_else(|| {
            let mut b = main.local_addr();
            b.set_port(0);
            b
        });
        let mut bcfg = EndpointConfig::default();
        bcfg.node = Config::default();
        bcfg.node.send_observed_addresses = true;
        let beacon_ep = Endpoint::bind(beacon_addr, identity.clone(), bcfg)
            .map_err(|e| bind_err(beacon_addr, &e))?;
        let addr = RdvAddr {
            server: main.local_addr(),
            beacon: Some(beacon_ep.local_addr()),
            key: identity.peer_id(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut saver = None;
        if let Some(path) = store {
            let store = Store::open(path)?;
            if let Some(snap) = store.load()? {
                let n = snap.nodes.len();
                main.with_node(move |node, _| {
                    if let Some(s) = node.rendezvous_server_mut() {
                        s.restore(snap);
                    }
                })
                .map_err(|e| from_driver(&e))?;
                info!(nodes = n, "restored the directory");
            }
            let (ep, stop2) = (main.clone(), stop.clone());
            saver = Some(std::thread::spawn(move || save_loop(ep, store, stop2)));
        }
        Ok(Self {
            main,
            beacon: beacon_ep,
            addr,
            stop,
            saver,
        })
    }

    /// Saves a last time and stops.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.saver.take() {
            let _ = h.join();
        }
        self.main.shutdown();
        self.beacon.shutdown();
    }
}

fn bind_err(addr: SocketAddr, e: &tern_driver_mio::Error) -> CliError {
    CliError::new(
        "ADDRESS_IN_USE",
        format!("cannot listen on {addr}: {e}"),
        "pick another address with --listen, or stop what uses it",
    )
}

fn save_loop(ep: Endpoint, store: Store, stop: Arc<AtomicBool>) {
    let mut last = None;
    loop {
        let done = stop.load(Ordering::SeqCst);
        let snap = ep.with_node(|node, _| node.rendezvous_server().map(|s| s.snapshot()));
        if let Ok(Some(snap)) = snap
            && last.as_ref() != Some(&snap)
        {
            if let Err(e) = store.save(&snap) {
                warn!(error = %e.message, "cannot save the directory");
            }
            last = Some(snap);
        }
        if done {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The machine-local rendezvous announcement.
#[derive(Serialize, Deserialize)]
struct Announce {
    server: SocketAddr,
    beacon: Option<SocketAddr>,
    key: String,
    pid: u32,
}

fn announce_path() -> PathBuf {
    runtime_dir().join("local-rendezvous.json")
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The machine-local rendezvous announced by a running daemon, if any.
pub fn find_local() -> Option<RdvAddr> {
    let a: Announce = serde_json::from_slice(&std::fs::read(announce_path()).ok()?).ok()?;
    if !alive(a.pid) {
        return None;
    }
    Some(RdvAddr {
        server: a.server,
        beacon: a.beacon,
        key: a.key.parse().ok()?,
    })
}

/// Hosts the machine-local rendezvous on loopback and announces it; its key and directory
/// persist in the runtime directory so a restart keeps registrations.
pub fn host_local() -> Result<RdvServer, CliError> {
    let dir = runtime_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::io("cannot create the runtime directory", &e))?;
    let key_path = dir.join("local-rendezvous.key");
    let identity = match std::fs::read_to_string(&key_path)
        .ok()
        .and_then(|s| hex32(s.trim()))
    {
        Some(k) => Identity::from_secret(k),
        None => {
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).map_err(|e| CliError::internal(e.to_string()))?;
            let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
            write_private(&key_path, hex.as_bytes())?;
            Identity::from_secret(k)
        }
    };
    let server = RdvServer::start(
        identity,
        "127.0.0.1:0"
            .parse()
            .map_err(|_| CliError::internal("address"))?,
        None,
        Some(&dir.join("local-rendezvous.redb")),
    )?;
    let a = Announce {
        server: server.addr.server,
        beacon: server.addr.beacon,
        key: server.addr.key.to_string(),
        pid: std::process::id(),
    };
    write_private(
        &announce_path(),
        &serde_json::to_vec(&a).map_err(|e| CliError::internal(e.to_string()))?,
    )?;
    info!(addr = %server.addr, "hosting the machine-local rendezvous");
    Ok(server)
}

/// Removes our announcement (at shutdown), if it is ours.
pub fn withdraw_local() {
    if let Ok(b) = std::fs::read(announce_path())
        && let Ok(a) = serde_json::from_slice::<Announce>(&b)
        && a.pid == std::process::id()
    {
        let _ = std::fs::remove_file(announce_path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_addresses_parse_and_print() {
        let key = Identity::from_secret([1; 32]).peer_id();
        let s = format!("127.0.0.1:7400#{key}");
        let a = RdvAddr::parse(&s).unwrap();
        assert_eq!(a.server, "127.0.0.1:7400".parse().unwrap());
        assert_eq!(a.to_string(), s);
        let b = RdvAddr::parse(&format!("127.0.0.1:7400,127.0.0.1:7401#{key}")).unwrap();
        assert_eq!(b.beacon, Some("127.0.0.1:7401".parse().unwrap()));
        for bad in ["", "127.0.0.1:7400", "nope#key", &format!("x#{key}")] {
            assert_eq!(
                RdvAddr::parse(bad).unwrap_err().code,
                "INVALID_ADDRESS",
                "{bad}"
            );
        }
    }
}
