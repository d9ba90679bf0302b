//! `tern mcp expose`: serve an MCP server to trusted peers.
//!
//! On start: capability discovery (a throw-away server process, or throw-away HTTP
//! requests), then the tools are published in the directory. Then the daemon serves the
//! port (`serve-port`) and announces every incoming stream; each one is claimed
//! (`take-stream`) and gets its *own* server process (stdio) or its own HTTP client
//! session (`--http`), up to `--max-servers` at once. Beyond the cap, or when the server
//! cannot start, the client's first request gets a JSON-RPC error and the stream closes.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::child::{self, ServerProcess};
use super::client::{Answer, LineClient, Rpc};
use super::discover::{self, Discovery};
use super::jsonrpc::{self, Kind};
use super::{bridge, http_backend};
use crate::error::CliError;
use crate::ipc::{self, Request};

/// Default cap on concurrent server processes (one per connected client).
pub const DEFAULT_MAX_SERVERS: usize = 32;

/// What to expose.
#[derive(Clone, Debug)]
pub enum Backend {
    /// A stdio server command (argv).
    Stdio(Vec<String>),
    /// A streamable-HTTP server endpoint.
    Http(http_backend::Target),
}

/// Options of `tern mcp expose`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Virtual port to serve.
    pub port: u16,
    /// Tags to add to the node (besides `mcp`).
    pub tags: Vec<String>,
    /// Most server processes at once.
    pub max_servers: usize,
    /// Skip capability discovery (publish nothing).
    pub no_discover: bool,
    /// The server.
    pub backend: Backend,
}

/// Process groups of live servers, for the signal handler.
#[derive(Debug, Default)]
struct Live {
    groups: Mutex<BTreeSet<i32>>,
}

/// A stdio server process held together with its client (discovery).
struct ProcClient {
    client: LineClient,
    _process: ServerProcess,
}

impl Rpc for ProcClient {
    fn call(&mut self, method: &str, params: Value, t: Duration) -> Result<Answer, CliError> {
        self.client.call(method, params, t)
    }
    fn notify(&mut self, method: &str, params: Value) -> Result<(), CliError> {
        self.client.notify(method, params)
    }
}

/// Discovers the tools of `backend`.
pub fn discover_backend(backend: &Backend) -> Result<Discovery, CliError> {
    match backend {
        Backend::Stdio(argv) => discover::discover(&mut || {
            let (client, process) = LineClient::spawn_server(argv)?;
            Ok(Box::new(ProcClient {
                client,
                _process: process,
            }) as Box<dyn Rpc>)
        }),
        Backend::Http(t) => discover::discover(&mut || {
            Ok(Box::new(http_backend::HttpRpc::new(t.clone())) as Box<dyn Rpc>)
        }),
    }
}

/// Runs `tern mcp expose` until interrupted.
pub fn run(sock: &Path, opts: &Options, json_mode: bool) -> Result<(), CliError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TERN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    // The daemon must run before we start anything.
    ipc::call(sock, &Request::Info)?;
    let found = if opts.no_discover {
        None
    } else {
        Some(discover_backend(&opts.backend)?)
    };
    let mut tags = opts.tags.clone();
    if !tags.iter().any(|t| t == "mcp") {
        tags.push("mcp".into());
    }
    let tools = found.as_ref().map(|d| d.tools.clone()).unwrap_or_default();
    ipc::call(
        sock,
        &Request::PublishTools {
            tools: tools.clone(),
            tags: tags.clone(),
        },
    )?;
    // Serve the port before announcing success, so a taken port is an error here.
    let mut call = ipc::Call::start(sock, &Request::ServePort { port: opts.port })?;
    let live = Arc::new(Live::default());
    install_signal_handler(sock.to_path_buf(), live.clone());
    let summary = json!({
        "port": opts.port,
        "tools": tools.iter().map(|(n, d)| json!({"name": n, "description": d})).collect::<Vec<_>>(),
        "era": found.as_ref().map(|d| d.era.clone()),
        "server": found.as_ref().and_then(|d| d.server.clone()),
        "tags": tags,
        "max_servers": opts.max_servers,
    });
    let active = Arc::new(AtomicUsize::new(0));
    let sock = sock.to_path_buf();
    let mut announced = false;
    let result = call.finish(|p| {
        if p.get("serving").is_some() && !announced {
            announced = true;
            announce(json_mode, &summary, &opts.backend);
            return;
        }
        let Some(id) = p.get("stream").and_then(Value::as_u64) else {
            return;
        };
        let from = p
            .get("from")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                p.get("peer")
                    .and_then(Value::as_str)
                    .map(|k| k.chars().take(16).collect())
                    .unwrap_or_default()
            });
        let (sock, backend, live, active) = (
            sock.clone(),
            opts.backend.clone(),
            live.clone(),
            active.clone(),
        );
        let max = opts.max_servers;
        std::thread::spawn(move || {
            handle_stream(&sock, id, &from, &backend, &live, &active, max);
        });
    });
    result.map(|_| ())
}

fn announce(json_mode: bool, summary: &Value, backend: &Backend) {
    if json_mode {
        println!("{}", json!({ "status": "ok", "data": summary }));
    } else {
        let what = match backend {
            Backend::Stdio(argv) => argv.join(" "),
            Backend::Http(t) => t.url.clone(),
        };
        let names: Vec<&str> = summary["tools"]
            .as_array()
            .map(|l| l.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default();
        println!(
            "exposing {what} on port {} ({} tools: {}; {})",
            summary["port"],
            names.len(),
            names.join(", "),
            summary["era"].as_str().unwrap_or("not probed")
        );
        println!("trusted peers connect with: tern mcp connect <this host> (Ctrl-C stops)");
    }
    let _ = std::io::stdout().flush();
}

/// A slot under the cap; released on drop.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn take_slot(active: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
    let mut n = active.load(Ordering::SeqCst);
    loop {
        if n >= max {
            return None;
        }
        match active.compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return Some(Slot(active.clone())),
            Err(now) => n = now,
        }
    }
}

fn handle_stream(
    sock: &Path,
    id: u64,
    from: &str,
    backend: &Backend,
    live: &Live,
    active: &Arc<AtomicUsize>,
    max: usize,
) {
    let mut call = match ipc::Call::start(sock, &Request::TakeStream { stream: id }) {
        Ok(c) => c,
        Err(e) => return warn!(stream = id, error = %e.message, "cannot claim a stream"),
    };
    if let Err(e) = call.finish(|_| {}) {
        return warn!(stream = id, error = %e.message, "cannot claim a stream");
    }
    let (conn, pre) = call.into_raw();
    let Some(_slot) = take_slot(active, max) else {
        warn!(
            stream = id,
            from, max, "at the cap of server processes; refusing a client"
        );
        refuse(
            conn,
            pre,
            &format!("the server is busy: all {max} server processes are in use; try again later"),
            "BUSY",
        );
        return;
    };
    match backend {
        Backend::Stdio(argv) => {
            let (process, pipes) = match ServerProcess::spawn(argv) {
                Ok(p) => p,
                Err(e) => {
                    warn!(stream = id, error = %e.message, "cannot start the server");
                    refuse(conn, pre, &e.message, "SPAWN_FAILED");
                    return;
                }
            };
            let pid = process.id();
            let group = i32::try_from(pid).unwrap_or(0);
            if let Ok(mut g) = live.groups.lock() {
                g.insert(group);
            }
            info!(stream = id, from, pid, "client connected; server started");
            let process = Arc::new(Mutex::new(process));
            let out = bridge::run(conn, pre, process, pipes);
            if let Ok(mut g) = live.groups.lock() {
                g.remove(&group);
            }
            if out.failed_requests > 0 || out.server_first {
                warn!(
                    stream = id,
                    from,
                    pid,
                    exit = out.exit,
                    failed_requests = out.failed_requests,
                    "the server exited while its client was connected"
                );
            } else {
                info!(
                    stream = id,
                    from,
                    pid,
                    exit = out.exit,
                    "client done; server stopped"
                );
            }
        }
        Backend::Http(target) => {
            info!(stream = id, from, "client connected");
            http_backend::run(conn, pre, target);
            info!(stream = id, from, "client done");
        }
    }
}

/// Answers the client's first request with a JSON-RPC error, then closes the stream.
fn refuse(conn: UnixStream, pre: Vec<u8>, message: &str, reason: &str) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(std::io::Cursor::new(pre).chain(conn));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut line = Vec::new();
        match r
            .by_ref()
            .take(jsonrpc::MAX_PEEK_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if line.len() > jsonrpc::MAX_PEEK_LINE {
                    break;
                }
                if let Kind::Request { id, .. } = jsonrpc::peek(&line) {
                    let _ = w.write_all(&jsonrpc::error_line(&id, message, reason));
                    break;
                }
            }
        }
    }
    let _ = w.shutdown(std::net::Shutdown::Both);
}

/// On SIGINT/SIGTERM/SIGHUP: take the tools out of the directory, end every server
/// process group (TERM, then KILL), and exit.
fn install_signal_handler(sock: PathBuf, live: Arc<Live>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        warn!("cannot install signal handlers: servers may outlive tern on Ctrl-C");
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            info!(signal = sig, "stopping: ending every server process");
            let groups: Vec<i32> = live
                .groups
                .lock()
                .map(|g| g.iter().copied().collect())
                .unwrap_or_default();
            for sig in [Signal::TERM, Signal::KILL] {
                for g in &groups {
                    if let Some(pg) = Pid::from_raw(*g) {
                        let _ = kill_process_group(pg, sig);
                    }
                }
                if sig == Signal::TERM && !groups.is_empty() {
                    std::thread::sleep(child::GRACE / 4);
                }
            }
            let _ = ipc::call(
                &sock,
                &Request::PublishTools {
                    tools: Vec::new(),
                    tags: Vec::new(),
                },
            );
            std::process::exit(0);
        }
    });
}
