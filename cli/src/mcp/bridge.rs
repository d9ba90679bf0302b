//! The stdio bridge of `tern mcp expose`: one tern stream (as the daemon's raw pipe) ↔ one
//! server process of its own.
//!
//! Bytes go through untouched, chunk by chunk, as soon as they arrive. A copy of each line
//! is peeked at for its `id`/`method` only, to know which requests are in flight: when the
//! server dies, each of them gets a JSON-RPC error instead of hanging, and the stream is
//! closed (the client restarts `tern mcp connect`, which gets a fresh process; a silent
//! respawn would hand a legacy client an uninitialised server). When the stream ends, the
//! server's stdin is closed and the process group is shut down (wait, TERM, KILL).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing::{debug, info};

use super::child::{self, Pipes, ServerProcess};
use super::jsonrpc::{self, InFlight, Kind, LineTap};

/// In-flight requests and whether the server is gone.
#[derive(Debug, Default)]
struct Shared {
    inflight: InFlight,
    dead: bool,
}

/// How a bridged stream ended.
#[derive(Debug)]
pub struct Outcome {
    /// The server's exit, described.
    pub exit: String,
    /// Requests answered with a synthetic error because the server died first.
    pub failed_requests: usize,
    /// Whether the server ended before the client did.
    pub server_first: bool,
}

/// Bridges `conn` (whose first bytes are `pre`) to a started server `process`. Returns
/// when both sides are done and the process is reaped.
pub fn run(
    conn: UnixStream,
    pre: Vec<u8>,
    process: Arc<Mutex<ServerProcess>>,
    pipes: Pipes,
) -> Outcome {
    let Pipes { stdin, stdout } = pipes;
    let shared = Arc::new(Mutex::new(Shared::default()));
    let client_ended = Arc::new(AtomicBool::new(false));
    let pid = process.lock().map(|p| p.id()).unwrap_or(0);

    // Client → server.
    let up = {
        let shared = shared.clone();
        let process = process.clone();
        let client_ended = client_ended.clone();
        let conn = conn.try_clone();
        std::thread::spawn(move || {
            let stdin = match conn {
                Ok(conn) => client_to_server(conn, pre, stdin, &shared),
                Err(_) => None,
            };
            client_ended.store(true, Ordering::SeqCst);
            // EOF to the server: the stdio shutdown's first step.
            drop(stdin);
            // The client is done (or the stream broke): stdin is closed; shut the server
            // down (wait, TERM, KILL), which also ends its stdout for the down side.
            if let Ok(mut p) = process.lock() {
                p.shut_down();
            }
        })
    };

    // Server → client, on this thread.
    let mut to_client = conn;
    let failed = server_to_client(stdout, &mut to_client, &shared);
    let server_first = !client_ended.load(Ordering::SeqCst);
    // The server closed its stdout: it exited or is about to. Close the stream so the
    // client (and the up thread, blocked reading it) see the end.
    let _ = to_client.shutdown(std::net::Shutdown::Both);
    let _ = up.join();
    let status = process.lock().ok().and_then(|mut p| p.shut_down());
    let exit = child::describe(status);
    debug!(pid, exit, failed, server_first, "stream done");
    Outcome {
        exit,
        failed_requests: failed,
        server_first,
    }
}

fn client_to_server(
    mut conn: UnixStream,
    pre: Vec<u8>,
    mut stdin: std::process::ChildStdin,
    shared: &Mutex<Shared>,
) -> Option<std::process::ChildStdin> {
    let mut tap = LineTap::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut chunk = pre;
    loop {
        if !chunk.is_empty() {
            tap.feed(&chunk, |line| {
                if let Kind::Request { id, method } = jsonrpc::peek(line)
                    && let Ok(mut s) = shared.lock()
                    && !s.dead
                {
                    s.inflight.sent(id, method);
                }
            });
            if stdin.write_all(&chunk).is_err() {
                // The server closed its stdin (it is exiting): the down side answers what is
                // in flight. Keep draining the client until the stream closes.
                drain(&mut conn, &mut buf);
                return None;
            }
            let _ = stdin.flush();
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => chunk = buf[..n].to_vec(),
        }
    }
    Some(stdin)
}

fn drain(conn: &mut UnixStream, buf: &mut [u8]) {
    while let Ok(n) = conn.read(buf) {
        if n == 0 {
            break;
        }
    }
}

/// Forwards the server's stdout; at its end, answers every request still in flight.
fn server_to_client(
    mut stdout: std::process::ChildStdout,
    conn: &mut UnixStream,
    shared: &Mutex<Shared>,
) -> usize {
    let mut tap = LineTap::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut client_gone = false;
    loop {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let chunk = &buf[..n];
                tap.feed(chunk, |line| {
                    if let Kind::Response { id } = jsonrpc::peek(line)
                        && let Ok(mut s) = shared.lock()
                    {
                        s.inflight.answered(&id);
                    }
                });
                if !client_gone && conn.write_all(chunk).is_err() {
                    // Keep reading so the server never blocks on a full pipe while it
                    // shuts down.
                    client_gone = true;
                }
            }
        }
    }
    let Ok(mut s) = shared.lock() else { return 0 };
    s.dead = true;
    let pending = s.inflight.drain();
    if pending.is_empty() || client_gone {
        return pending.len();
    }
    info!(
        requests = pending.len(),
        "the MCP server exited with requests in flight"
    );
    let mut out = Vec::new();
    if tap.mid_line() {
        out.push(b'\n');
    }
    for (id, method) in &pending {
        out.extend_from_slice(&jsonrpc::error_line(
            id,
            &format!("the MCP server process exited before answering {method}"),
            "SERVER_EXITED",
        ));
    }
    let _ = conn.write_all(&out);
    pending.len()
}
