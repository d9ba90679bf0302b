//! `tern mcp connect HOST --listen 127.0.0.1:PORT`: serve streamable HTTP at `/mcp` to
//! local MCP clients, carried over tern streams (stdio framing) to the exposed server.
//!
//! - Legacy era: an `initialize` POST opens a tern stream (so a server process of its own
//!   on the exposing side) and mints an `Mcp-Session-Id`; later POSTs of the session go on
//!   that stream, responses are routed to their POST by `id`; GET opens the SSE stream for
//!   server-initiated messages; DELETE closes the stream. Unknown sessions get 404.
//! - Stateless era (no session): each request borrows an idle stream from a small pool
//!   (one request per stream at a time, so ids never collide and no byte is rewritten).
//!   `Mcp-Method` must match the body (400, -32020). A client that goes away mid-request
//!   cancels it (`notifications/cancelled`).
//! - Always: loopback only, foreign `Origin` → 403, foreign `Host` → 421; a response is
//!   JSON when the answer comes first, else SSE with every message as it arrives.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tracing::{info, warn};

use super::http::{self, Body, Head};
use super::jsonrpc::{self, Kind};
use crate::error::CliError;
use crate::ipc::{self, Request};

/// The endpoint path.
pub const PATH: &str = "/mcp";
/// Most legacy sessions at once.
const MAX_SESSIONS: usize = 256;
/// Idle stateless streams kept for reuse.
const MAX_POOLED: usize = 8;
/// Messages kept for a session while nobody listens (oldest dropped first).
const MAX_BACKLOG: usize = 256;
/// Messages queued for one waiting HTTP response.
const QUEUE: usize = 1024;

/// What a waiting request gets.
enum Msg {
    /// A message for it (notification, server request) — more will follow.
    Line(Vec<u8>),
    /// Its response.
    Response(Vec<u8>),
    /// The stream ended first.
    Closed,
}

#[derive(Default)]
struct Router {
    /// Requests waiting for their response, oldest first.
    pending: Vec<(String, SyncSender<Msg>)>,
    /// The session's GET stream.
    get: Option<SyncSender<Vec<u8>>>,
    backlog: VecDeque<Vec<u8>>,
}

/// One tern stream to the exposed server.
struct Channel {
    writer: Mutex<UnixStream>,
    router: Mutex<Router>,
    closed: AtomicBool,
}

impl Channel {
    fn open(hub: &Hub) -> Result<Arc<Self>, CliError> {
        let mut call = ipc::Call::start(
            &hub.sock,
            &Request::Connect {
                target: hub.target.clone(),
                port: hub.port,
            },
        )?;
        call.finish(|_| {})?;
        let (conn, pre) = call.into_raw();
        let w = conn.try_clone().map_err(|e| CliError::io("socket", &e))?;
        let ch = Arc::new(Self {
            writer: Mutex::new(w),
            router: Mutex::new(Router::default()),
            closed: AtomicBool::new(false),
        });
        let c = ch.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(std::io::Cursor::new(pre).chain(conn));
            loop {
                let mut line = Vec::new();
                match r
                    .by_ref()
                    .take(jsonrpc::MAX_PEEK_LINE as u64)
                    .read_until(b'\n', &mut line)
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if line.last() != Some(&b'\n') {
                            line.push(b'\n');
                        }
                        c.route(line);
                    }
                }
            }
            c.closed.store(true, Ordering::SeqCst);
            if let Ok(mut r) = c.router.lock() {
                for (_, tx) in r.pending.drain(..) {
                    let _ = tx.try_send(Msg::Closed);
                }
                r.get = None;
            }
        });
        Ok(ch)
    }

    fn route(&self, line: Vec<u8>) {
        let Ok(mut r) = self.router.lock() else {
            return;
        };
        if let Kind::Response { id } = jsonrpc::peek(&line)
            && let Some(i) = r.pending.iter().position(|(p, _)| *p == id)
        {
            let (_, tx) = r.pending.remove(i);
            let _ = tx.send(Msg::Response(line));
            return;
        }
        if let Some(g) = &r.get {
            if g.try_send(line.clone()).is_ok() {
                return;
            }
            r.get = None;
        }
        if let Some((_, tx)) = r.pending.first()
            && tx.send(Msg::Line(line.clone())).is_ok()
        {
            return;
        }
        if r.backlog.len() >= MAX_BACKLOG {
            r.backlog.pop_front();
        }
        r.backlog.push_back(line);
    }

    fn register(&self, id: &str) -> Receiver<Msg> {
        let (tx, rx) = sync_channel(QUEUE);
        if let Ok(mut r) = self.router.lock() {
            if self.closed.load(Ordering::SeqCst) {
                let _ = tx.try_send(Msg::Closed);
            } else {
                // Messages nobody took yet go to the first request that waits.
                for l in r.backlog.drain(..) {
                    let _ = tx.try_send(Msg::Line(l));
                }
                r.pending.push((id.to_owned(), tx));
            }
        }
        rx
    }

    fn unregister(&self, id: &str) {
        if let Ok(mut r) = self.router.lock() {
            r.pending.retain(|(p, _)| p != id);
        }
    }

    fn send(&self, body: &[u8]) -> bool {
        let mut line = body.to_vec();
        line.push(b'\n');
        self.writer
            .lock()
            .map(|mut w| w.write_all(&line).is_ok())
            .unwrap_or(false)
    }

    fn close(&self) {
        if let Ok(w) = self.writer.lock() {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
    }
}

struct Hub {
    sock: PathBuf,
    target: String,
    port: u16,
    sessions: Mutex<BTreeMap<String, Arc<Channel>>>,
    pool: Mutex<Vec<Arc<Channel>>>,
}

impl Hub {
    fn pooled(&self) -> Result<Arc<Channel>, CliError> {
        while let Some(c) = self.pool.lock().ok().and_then(|mut p| p.pop()) {
            if !c.closed.load(Ordering::SeqCst) {
                return Ok(c);
            }
        }
        Channel::open(self)
    }

    fn give_back(&self, c: Arc<Channel>) {
        if c.closed.load(Ordering::SeqCst) {
            return;
        }
        match self.pool.lock() {
            Ok(mut p) if p.len() < MAX_POOLED => p.push(c),
            _ => c.close(),
        }
    }
}

/// Serves HTTP on `addr` until killed.
pub fn run(
    sock: &Path,
    target: &str,
    port: u16,
    addr: &str,
    json_mode: bool,
) -> Result<(), CliError> {
    let addr: SocketAddr = addr.parse().map_err(|_| {
        CliError::new(
            "INVALID_ADDRESS",
            format!("{addr:?} is not an IP:PORT"),
            "e.g. --listen 127.0.0.1:8765",
        )
    })?;
    if !addr.ip().is_loopback() {
        return Err(CliError::new(
            "INVALID_ADDRESS",
            format!("{addr} is not a loopback address"),
            "local MCP clients only: use 127.0.0.1:PORT (tern carries the traffic between machines)",
        ));
    }
    let hub = Arc::new(Hub {
        sock: sock.to_path_buf(),
        target: target.to_owned(),
        port,
        sessions: Mutex::new(BTreeMap::new()),
        pool: Mutex::new(Vec::new()),
    });
    // Reach the server once now, so "not trusted" and friends show at start; the stream
    // is kept for the first stateless request.
    let first = Channel::open(&hub)?;
    hub.give_back(first);
    let listener = TcpListener::bind(addr).map_err(|e| {
        CliError::new(
            "ADDRESS_IN_USE",
            format!("cannot listen on {addr}: {e}"),
            "pick another --listen port",
        )
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::io("listener", &e))?;
    let url = format!("http://{local}{PATH}");
    if json_mode {
        println!(
            "{}",
            json!({ "status": "ok", "data": { "url": url, "target": target, "port": port } })
        );
    } else {
        println!("serving MCP (streamable HTTP) at {url} for {target}");
    }
    let _ = std::io::stdout().flush();
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let hub = hub.clone();
        std::thread::spawn(move || serve_conn(&hub, conn, local));
    }
    Ok(())
}

fn is_local_host(host: &str) -> bool {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        h.rsplit_once(':')
            .map_or(h, |(a, p)| if p.parse::<u16>().is_ok() { a } else { h })
    };
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn serve_conn(hub: &Hub, conn: TcpStream, _local: SocketAddr) {
    let _ = conn.set_nodelay(true);
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    loop {
        let Ok(Some(head)) = http::read_head(&mut r) else {
            return;
        };
        let Ok(mut body) = Body::new(r, &head, true) else {
            return;
        };
        let Ok(data) = body.read_all() else { return };
        r = body.into_inner();
        let close = head
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if respond(hub, &head, &data, &mut w).is_err() || close {
            return;
        }
    }
}

fn simple(
    w: &mut TcpStream,
    status: &str,
    extra: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        out.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    w.write_all(&bytes)?;
    w.flush()
}

fn rpc_error(id: Option<&str>, code: i64, message: &str) -> Vec<u8> {
    let id: Value = id
        .and_then(|i| serde_json::from_str(i).ok())
        .unwrap_or(Value::Null);
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
        .to_string()
        .into_bytes()
}

fn respond(hub: &Hub, head: &Head, body: &[u8], w: &mut TcpStream) -> std::io::Result<()> {
    let (method, path) = head.request_line();
    if let Some(origin) = head.get("origin") {
        let host = origin.split("://").nth(1).unwrap_or("");
        if !is_local_host(host) {
            return simple(
                w,
                "403 Forbidden",
                &[],
                &rpc_error(None, -32600, "foreign Origin refused"),
            );
        }
    }
    if head.get("host").is_some_and(|h| !is_local_host(h)) {
        return simple(w, "421 Misdirected Request", &[], b"");
    }
    if path.split('?').next() != Some(PATH) {
        return simple(w, "404 Not Found", &[], b"");
    }
    let sid = head.get("mcp-session-id").map(str::to_owned);
    let session = |sid: &str| hub.sessions.lock().ok().and_then(|s| s.get(sid).cloned());
    match method {
        "POST" => post(hub, head, body, sid, w),
        "GET" => {
            let Some(sid) = sid else {
                return simple(
                    w,
                    "405 Method Not Allowed",
                    &[("Allow", "POST, DELETE".into())],
                    b"",
                );
            };
            let Some(ch) = session(&sid) else {
                return simple(
                    w,
                    "404 Not Found",
                    &[],
                    &rpc_error(None, -32001, "session not found"),
                );
            };
            get_stream(&ch, w)
        }
        "DELETE" => {
            let Some(sid) = sid else {
                return simple(
                    w,
                    "405 Method Not Allowed",
                    &[("Allow", "POST".into())],
                    b"",
                );
            };
            match hub.sessions.lock().ok().and_then(|mut s| s.remove(&sid)) {
                Some(ch) => {
                    ch.close();
                    simple(w, "200 OK", &[], b"")
                }
                None => simple(w, "404 Not Found", &[], b""),
            }
        }
        _ => simple(
            w,
            "405 Method Not Allowed",
            &[("Allow", "GET, POST, DELETE".into())],
            b"",
        ),
    }
}

fn post(
    hub: &Hub,
    head: &Head,
    body: &[u8],
    sid: Option<String>,
    w: &mut TcpStream,
) -> std::io::Result<()> {
    let kind = jsonrpc::peek(body);
    if kind == Kind::Other {
        return simple(
            w,
            "400 Bad Request",
            &[],
            &rpc_error(None, -32700, "one JSON-RPC message per POST"),
        );
    }
    let (id, method) = match &kind {
        Kind::Request { id, method } => (Some(id.clone()), Some(method.clone())),
        Kind::Notification { method } => (None, Some(method.clone())),
        _ => (None, None),
    };
    if let (Some(h), Some(m)) = (head.get("mcp-method"), &method)
        && h != m
    {
        return simple(
            w,
            "400 Bad Request",
            &[],
            &rpc_error(
                id.as_deref(),
                -32020,
                &format!("Mcp-Method {h:?} does not match the body's {m:?}"),
            ),
        );
    }
    // Which stream: the session's, a new session's, or a pooled stateless one.
    let mut minted = None;
    let stateless;
    let ch = if let Some(sid) = &sid {
        stateless = false;
        match hub.sessions.lock().ok().and_then(|s| s.get(sid).cloned()) {
            Some(c) => c,
            None => {
                return simple(
                    w,
                    "404 Not Found",
                    &[],
                    &rpc_error(id.as_deref(), -32001, "session not found: initialize again"),
                );
            }
        }
    } else if method.as_deref() == Some("initialize") {
        stateless = false;
        if hub.sessions.lock().map(|s| s.len()).unwrap_or(MAX_SESSIONS) >= MAX_SESSIONS {
            return simple(
                w,
                "503 Service Unavailable",
                &[],
                &rpc_error(id.as_deref(), -32000, "too many sessions"),
            );
        }
        let c = match Channel::open(hub) {
            Ok(c) => c,
            Err(e) => return unreachable_answer(w, id.as_deref(), &e),
        };
        let mut b = [0u8; 16];
        let _ = getrandom::fill(&mut b);
        let s: String = b.iter().map(|x| format!("{x:02x}")).collect();
        if let Ok(mut m) = hub.sessions.lock() {
            m.insert(s.clone(), c.clone());
        }
        minted = Some(s);
        c
    } else {
        stateless = true;
        if id.is_none() {
            // Stateless notifications and responses have no stream to go to.
            return simple(w, "202 Accepted", &[], b"");
        }
        match hub.pooled() {
            Ok(c) => c,
            Err(e) => return unreachable_answer(w, id.as_deref(), &e),
        }
    };
    let Some(id) = id else {
        ch.send(body);
        return simple(w, "202 Accepted", &[], b"");
    };
    let rx = ch.register(&id);
    if !ch.send(body) {
        ch.unregister(&id);
    }
    let session_hdr: Vec<(&str, String)> = minted
        .iter()
        .map(|s| ("Mcp-Session-Id", s.clone()))
        .collect();
    let done = answer(w, &rx, &id, &session_hdr);
    if done.is_err() {
        // The client went away: cancel the request on the server.
        ch.unregister(&id);
        let cancel = format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{{\"requestId\":{id},\"reason\":\"the HTTP client disconnected\"}}}}"
        );
        ch.send(cancel.as_bytes());
        if stateless {
            ch.close();
        }
    } else if stateless {
        hub.give_back(ch);
    } else if ch.closed.load(Ordering::SeqCst) {
        // The server ended: the session is gone (the client gets 404 and starts over).
        if let Some(s) = sid.or(minted) {
            let _ = hub.sessions.lock().map(|mut m| m.remove(&s));
        }
    }
    done
}

fn unreachable_answer(w: &mut TcpStream, id: Option<&str>, e: &CliError) -> std::io::Result<()> {
    warn!(error = %e.message, "cannot reach the MCP server");
    let body = match id {
        Some(id) => jsonrpc::error_line(id, &format!("{} (hint: {})", e.message, e.hint), &e.code),
        None => rpc_error(None, -32603, &e.message),
    };
    simple(w, "502 Bad Gateway", &[], body.trim_ascii_end())
}

/// Writes the answer to one request: JSON if the response comes first, else SSE.
fn answer(
    w: &mut TcpStream,
    rx: &Receiver<Msg>,
    id: &str,
    extra: &[(&str, String)],
) -> std::io::Result<()> {
    let first = rx.recv().unwrap_or(Msg::Closed);
    let closed_error = || {
        jsonrpc::error_line(
            id,
            "the MCP server closed the connection before answering",
            "SERVER_EXITED",
        )
    };
    match first {
        Msg::Response(line) => return simple(w, "200 OK", extra, line.trim_ascii_end()),
        Msg::Closed => return simple(w, "200 OK", extra, closed_error().trim_ascii_end()),
        Msg::Line(line) => {
            sse_head(w, extra)?;
            sse_event(w, &line)?;
        }
    }
    loop {
        match rx.recv().unwrap_or(Msg::Closed) {
            Msg::Line(l) => sse_event(w, &l)?,
            Msg::Response(l) => {
                sse_event(w, &l)?;
                break;
            }
            Msg::Closed => {
                sse_event(w, &closed_error())?;
                break;
            }
        }
    }
    http::end_chunks(w)
}

fn sse_head(w: &mut TcpStream, extra: &[(&str, String)]) -> std::io::Result<()> {
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n",
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    w.write_all(out.as_bytes())?;
    w.flush()
}

fn sse_event(w: &mut TcpStream, line: &[u8]) -> std::io::Result<()> {
    let mut ev = b"event: message\ndata: ".to_vec();
    ev.extend_from_slice(line.trim_ascii_end());
    ev.extend_from_slice(b"\n\n");
    http::write_chunk(w, &ev)
}

/// The legacy GET stream: server-initiated messages of a session, with keep-alives.
fn get_stream(ch: &Channel, w: &mut TcpStream) -> std::io::Result<()> {
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
    let backlog: Vec<Vec<u8>> = match ch.router.lock() {
        Ok(mut r) => {
            r.get = Some(tx);
            r.backlog.drain(..).collect()
        }
        Err(_) => Vec::new(),
    };
    sse_head(w, &[])?;
    for l in backlog {
        sse_event(w, &l)?;
    }
    info!("a client opened the GET stream");
    loop {
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) => sse_event(w, &l)?,
            Err(RecvTimeoutError::Timeout) => http::write_chunk(w, b": keep-alive\n\n")?,
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    http::end_chunks(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_and_origins_pass() {
        for ok in [
            "localhost",
            "localhost:8765",
            "127.0.0.1:9",
            "127.0.0.1",
            "[::1]:80",
            "[::1]",
        ] {
            assert!(is_local_host(ok), "{ok}");
        }
        for bad in [
            "example.com",
            "evil.localhost.example:80",
            "10.0.0.1:80",
            "[fe80::1]:1",
            "",
        ] {
            assert!(!is_local_host(bad), "{bad}");
        }
    }
}
