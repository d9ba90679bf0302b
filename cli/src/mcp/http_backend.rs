//! `tern mcp expose --http URL`: each tern stream (stdio framing) becomes one HTTP client
//! session of a streamable-HTTP MCP server.
//!
//! Every line is POSTed as is (the body is the line's bytes). The answer — nothing (202),
//! a JSON body, or an SSE stream of messages — goes back as lines; raw newlines in a JSON
//! body can only be insignificant whitespace and become spaces, nothing else changes. The
//! headers the transport wants are derived from the message: `Mcp-Method`, `Mcp-Name`,
//! `MCP-Protocol-Version` (from `_meta` in the 2026-07-28 era, from the `initialize`
//! result before), `Mcp-Param-*` (from the `x-mcp-header` marks of the `tools/list`
//! results that went through), and the legacy `Mcp-Session-Id`. `Host` is the server's
//! own; no `Origin` is sent. A legacy session the server forgot (404) is re-initialised
//! from the cached `initialize` and the request retried once. A GET stream carries
//! server-initiated messages of a legacy session (405 is fine). The session is DELETEd
//! when the stream ends.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tracing::{debug, warn};

use super::client::{Answer, Rpc};
use super::http::{self, Body, Head, SseParser, Url};
use super::jsonrpc::{self, Kind};
use crate::error::CliError;

/// Requests of one stream POSTed at once (more wait).
const MAX_CONCURRENT_POSTS: usize = 16;

/// A streamable-HTTP MCP endpoint.
#[derive(Clone, Debug)]
pub struct Target {
    /// As given.
    pub url: String,
    parsed: Url,
}

impl Target {
    /// Parses an `http://` URL.
    pub fn parse(url: &str) -> Result<Self, CliError> {
        let parsed = Url::parse(url).ok_or_else(|| {
            CliError::invalid(
                format!("{url:?} is not an http:// URL"),
                "e.g. --http http://127.0.0.1:8000/mcp (tern itself encrypts between nodes)",
            )
        })?;
        Ok(Self {
            url: url.to_owned(),
            parsed,
        })
    }
}

/// What one HTTP client session remembers.
#[derive(Debug, Default)]
struct Ctx {
    session: Mutex<Option<String>>,
    /// Negotiated by `initialize` (legacy era).
    version: Mutex<Option<String>>,
    /// The client's `initialize` line, to re-initialise a forgotten session.
    init_line: Mutex<Option<Vec<u8>>>,
    /// Per tool: (argument, header name) pairs marked `x-mcp-header`.
    params: Mutex<BTreeMap<String, Vec<(String, String)>>>,
}

fn get<T: Clone>(m: &Mutex<T>) -> T {
    m.lock()
        .map(|g| g.clone())
        .unwrap_or_else(|p| p.into_inner().clone())
}

fn set<T>(m: &Mutex<T>, v: T) {
    if let Ok(mut g) = m.lock() {
        *g = v;
    }
}

/// Why an exchange failed.
#[derive(Debug)]
enum Failure {
    /// Could not talk to the server at all.
    Io(std::io::Error),
    /// The server answered with this status and body.
    Status(u16, Vec<u8>),
}

impl Ctx {
    /// The transport headers for `msg`.
    fn headers(&self, msg: &Value) -> Vec<(String, String)> {
        let mut h = Vec::new();
        let method = msg.get("method").and_then(Value::as_str);
        if let Some(m) = method {
            h.push(("Mcp-Method".into(), m.to_owned()));
        }
        let params = msg.get("params").unwrap_or(&Value::Null);
        let version = params
            .pointer("/_meta/io.modelcontextprotocol~1protocolVersion")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| get(&self.version));
        if let Some(v) = version {
            h.push(("MCP-Protocol-Version".into(), v));
        }
        let name = match method {
            Some("tools/call" | "prompts/get") => params.get("name").and_then(Value::as_str),
            Some("resources/read") => params.get("uri").and_then(Value::as_str),
            _ => None,
        };
        if let Some(n) = name {
            h.push(("Mcp-Name".into(), header_value(n)));
        }
        if method == Some("tools/call")
            && let Some(tool) = name
            && let Some(marks) = self.params.lock().ok().and_then(|p| p.get(tool).cloned())
        {
            for (arg, header) in marks {
                let v = match params.pointer(&format!(
                    "/arguments/{}",
                    arg.replace('~', "~0").replace('/', "~1")
                )) {
                    Some(Value::String(s)) => header_value(s),
                    Some(Value::Null) | None => continue,
                    Some(other) => other.to_string(),
                };
                h.push((format!("Mcp-Param-{header}"), v));
            }
        }
        if let Some(s) = get(&self.session) {
            h.push(("Mcp-Session-Id".into(), s));
        }
        h
    }

    /// Learns from a message the server sent (negotiated version, header marks).
    fn learn(&self, request_method: Option<&str>, line: &[u8]) {
        match request_method {
            Some("initialize") => {
                if let Ok(v) = serde_json::from_slice::<Value>(line)
                    && let Some(pv) = v.pointer("/result/protocolVersion").and_then(Value::as_str)
                {
                    set(&self.version, Some(pv.to_owned()));
                }
            }
            Some("tools/list") => {
                let Ok(v) = serde_json::from_slice::<Value>(line) else {
                    return;
                };
                let Some(tools) = v.pointer("/result/tools").and_then(Value::as_array) else {
                    return;
                };
                let Ok(mut p) = self.params.lock() else {
                    return;
                };
                for t in tools {
                    let (Some(name), Some(props)) = (
                        t["name"].as_str(),
                        t.pointer("/inputSchema/properties")
                            .and_then(Value::as_object),
                    ) else {
                        continue;
                    };
                    let marks: Vec<(String, String)> = props
                        .iter()
                        .filter_map(|(arg, s)| {
                            s.get("x-mcp-header")
                                .and_then(Value::as_str)
                                .map(|h| (arg.clone(), h.to_owned()))
                        })
                        .collect();
                    if !marks.is_empty() && p.len() < 4096 {
                        p.insert(name.to_owned(), marks);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A header value: printable ASCII as is, anything else as `=?base64?…?=`.
fn header_value(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) && s.trim() == s {
        s.to_owned()
    } else {
        format!("=?base64?{}?=", base64(s.as_bytes()))
    }
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn connect(t: &Target, read_timeout: Option<Duration>) -> std::io::Result<TcpStream> {
    let addr = (t.parsed.host.as_str(), t.parsed.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("the host has no address"))?;
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(read_timeout)?;
    Ok(s)
}

/// Sends one request (`method` with optional `body`) and returns the head and the body
/// reader.
fn send(
    t: &Target,
    method: &str,
    body: &[u8],
    headers: &[(String, String)],
    read_timeout: Option<Duration>,
) -> std::io::Result<(Head, Body<BufReader<TcpStream>>)> {
    let mut s = connect(t, read_timeout)?;
    let mut req = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json, text/event-stream\r\nConnection: close\r\n",
        t.parsed.path, t.parsed.authority
    );
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    for (k, v) in headers {
        if !v.contains(['\r', '\n']) {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(body);
    s.write_all(&out)?;
    let mut r = BufReader::new(s);
    let head = http::read_head(&mut r)?.ok_or_else(|| {
        std::io::Error::other("the server closed the connection without an answer")
    })?;
    let body = Body::new(r, &head, false)?;
    Ok((head, body))
}

/// POSTs `line`; hands each message of the answer (as a line) to `on_message`. Returns
/// the answer's head.
fn exchange(
    t: &Target,
    ctx: &Ctx,
    line: &[u8],
    msg: &Value,
    read_timeout: Option<Duration>,
    on_message: &mut dyn FnMut(&[u8]),
) -> Result<Head, Failure> {
    let headers = ctx.headers(msg);
    let (head, mut body) = send(t, "POST", line, &headers, read_timeout).map_err(Failure::Io)?;
    let status = head.status();
    if !(200..300).contains(&status) {
        return Err(Failure::Status(status, body.read_all().unwrap_or_default()));
    }
    if head.content_type() == "text/event-stream" {
        let mut sse = SseParser::default();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = body.read(&mut buf).map_err(Failure::Io)?;
            if n == 0 {
                break;
            }
            sse.feed(&buf[..n], |e| {
                if !e.data.trim().is_empty() {
                    on_message(&http::one_line(e.data.as_bytes()));
                }
            });
        }
    } else {
        let b = body.read_all().map_err(Failure::Io)?;
        if !b.trim_ascii().is_empty() {
            on_message(&http::one_line(&b));
        }
    }
    Ok(head)
}

/// Serves one tern stream (`conn`, whose first bytes are `pre`) against the HTTP server.
pub fn run(conn: UnixStream, pre: Vec<u8>, target: &Target) {
    let Ok(w) = conn.try_clone() else { return };
    let writer = Arc::new(Mutex::new(w));
    let ctx = Arc::new(Ctx::default());
    let slots = Arc::new((Mutex::new(0usize), Condvar::new()));
    let mut r = BufReader::new(std::io::Cursor::new(pre).chain(conn));
    loop {
        let mut line = Vec::new();
        match r
            .by_ref()
            .take(jsonrpc::MAX_PEEK_LINE as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') && line.len() >= jsonrpc::MAX_PEEK_LINE {
            warn!("a line longer than the limit; closing the stream");
            break;
        }
        let body = line.trim_ascii_end().to_vec();
        if body.trim_ascii().is_empty() {
            continue;
        }
        let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
            debug!("skipping a line that is not JSON");
            continue;
        };
        let kind = jsonrpc::peek(&body);
        let is_init = matches!(&kind, Kind::Request { method, .. } if method == "initialize");
        if is_init {
            set(&ctx.init_line, Some(body.clone()));
        }
        let is_request = matches!(kind, Kind::Request { .. });
        let job = {
            let (t, ctx, writer) = (target.clone(), ctx.clone(), writer.clone());
            move || handle(&t, &ctx, &writer, &body, &msg, &kind)
        };
        if is_request && !is_init {
            // Requests run side by side (a slow tool must not hold up the others).
            {
                let (m, cv) = &*slots;
                let mut n = m.lock().unwrap_or_else(|p| p.into_inner());
                while *n >= MAX_CONCURRENT_POSTS {
                    n = cv.wait(n).unwrap_or_else(|p| p.into_inner());
                }
                *n += 1;
            }
            let slots = slots.clone();
            std::thread::spawn(move || {
                job();
                let (m, cv) = &*slots;
                *m.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
                cv.notify_one();
            });
        } else {
            job();
            if is_init && get(&ctx.session).is_some() {
                spawn_get_stream(target, &ctx, &writer);
            }
        }
    }
    if let Some(s) = get(&ctx.session) {
        let _ = send(
            target,
            "DELETE",
            b"",
            &[("Mcp-Session-Id".into(), s)],
            Some(Duration::from_secs(5)),
        );
    }
    if let Ok(w) = writer.lock() {
        let _ = w.shutdown(std::net::Shutdown::Both);
    }
}

fn write_line(writer: &Mutex<UnixStream>, line: &[u8]) {
    if let Ok(mut w) = writer.lock() {
        let _ = w.write_all(line);
    }
}

/// POSTs one message and writes what comes back; errors become JSON-RPC errors for
/// requests.
fn handle(
    t: &Target,
    ctx: &Ctx,
    writer: &Mutex<UnixStream>,
    line: &[u8],
    msg: &Value,
    kind: &Kind,
) {
    let (req_id, method) = match kind {
        Kind::Request { id, method } => (Some(id.clone()), Some(method.as_str())),
        _ => (None, None),
    };
    let mut forward = |m: &[u8]| {
        if let Some(id) = &req_id
            && jsonrpc::peek(m) == (Kind::Response { id: id.clone() })
        {
            ctx.learn(method, m);
        }
        write_line(writer, m);
    };
    let mut result = exchange(t, ctx, line, msg, None, &mut forward);
    // A legacy session the server forgot: initialise again and retry once.
    if let Err(Failure::Status(404, _)) = &result
        && get(&ctx.session).is_some()
        && method != Some("initialize")
        && reinitialize(t, ctx)
    {
        result = exchange(t, ctx, line, msg, None, &mut forward);
    }
    match result {
        Ok(head) => {
            if method == Some("initialize")
                && let Some(s) = head.get("mcp-session-id")
            {
                set(&ctx.session, Some(s.to_owned()));
            }
        }
        Err(f) => {
            let Some(id) = req_id else { return };
            let (why, body) = match f {
                Failure::Io(e) => (
                    format!("cannot reach the MCP server at {}: {e}", t.url),
                    Vec::new(),
                ),
                Failure::Status(s, b) => {
                    (format!("the MCP server at {} answered HTTP {s}", t.url), b)
                }
            };
            // A JSON-RPC error for this very request goes through as the server wrote it.
            if jsonrpc::peek(&body) == (Kind::Response { id: id.clone() }) {
                write_line(writer, &http::one_line(&body));
            } else {
                warn!(%why, "HTTP request failed");
                write_line(writer, &jsonrpc::error_line(&id, &why, "MCP_HTTP"));
            }
        }
    }
}

/// Replays the cached `initialize` (its answer is ours, not the client's) and
/// `notifications/initialized`.
fn reinitialize(t: &Target, ctx: &Ctx) -> bool {
    let Some(init) = get(&ctx.init_line) else {
        return false;
    };
    set(&ctx.session, None);
    let Ok(msg) = serde_json::from_slice::<Value>(&init) else {
        return false;
    };
    let Ok(head) = exchange(
        t,
        ctx,
        &init,
        &msg,
        Some(Duration::from_secs(30)),
        &mut |m| {
            ctx.learn(Some("initialize"), m);
        },
    ) else {
        return false;
    };
    let Some(s) = head.get("mcp-session-id") else {
        return false;
    };
    set(&ctx.session, Some(s.to_owned()));
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let line = note.to_string().into_bytes();
    exchange(
        t,
        ctx,
        &line,
        &note,
        Some(Duration::from_secs(30)),
        &mut |_| {},
    )
    .is_ok()
}

/// The legacy GET stream of server-initiated messages (a 405 means the server has none).
fn spawn_get_stream(t: &Target, ctx: &Arc<Ctx>, writer: &Arc<Mutex<UnixStream>>) {
    let (t, ctx, writer) = (t.clone(), ctx.clone(), writer.clone());
    std::thread::spawn(move || {
        let mut headers = ctx.headers(&Value::Null);
        headers.retain(|(k, _)| k != "Mcp-Method");
        let Ok((head, mut body)) = send(&t, "GET", b"", &headers, None) else {
            return;
        };
        if head.status() != 200 || head.content_type() != "text/event-stream" {
            return;
        }
        let mut sse = SseParser::default();
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = body.read(&mut buf) {
            if n == 0 {
                break;
            }
            sse.feed(&buf[..n], |e| {
                if !e.data.trim().is_empty() {
                    write_line(&writer, &http::one_line(e.data.as_bytes()));
                }
            });
        }
    });
}

/// A request/response client over HTTP, for discovery.
#[derive(Debug)]
pub struct HttpRpc {
    target: Target,
    ctx: Ctx,
    next_id: u64,
}

impl HttpRpc {
    /// A client with no session yet.
    pub fn new(target: Target) -> Self {
        Self {
            target,
            ctx: Ctx::default(),
            next_id: 0,
        }
    }

    fn fail(&self, f: Failure) -> CliError {
        match f {
            Failure::Io(e) => CliError::new(
                "MCP_HTTP",
                format!("cannot reach the MCP server at {}: {e}", self.target.url),
                "check that the server runs and the URL (with its path, often /mcp) is right",
            ),
            Failure::Status(s, b) => CliError::new(
                "MCP_HTTP",
                format!(
                    "the MCP server at {} answered HTTP {s}: {}",
                    self.target.url,
                    String::from_utf8_lossy(&b[..b.len().min(200)])
                ),
                "check the URL (with its path, often /mcp)",
            ),
        }
    }
}

impl Rpc for HttpRpc {
    fn call(&mut self, method: &str, params: Value, timeout: Duration) -> Result<Answer, CliError> {
        self.next_id += 1;
        let msg =
            json!({ "jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params });
        let line = msg.to_string().into_bytes();
        let want = Kind::Response {
            id: self.next_id.to_string(),
        };
        let mut answer = None;
        let r = exchange(
            &self.target,
            &self.ctx,
            &line,
            &msg,
            Some(timeout),
            &mut |m| {
                if jsonrpc::peek(m) == want {
                    answer = serde_json::from_slice::<Value>(m).ok();
                }
            },
        );
        let head = match r {
            Ok(h) => h,
            // A JSON-RPC error in an HTTP error (e.g. 400 for an unknown method).
            Err(Failure::Status(_, b)) if jsonrpc::peek(&b) == want => {
                let v: Value = serde_json::from_slice(&b).unwrap_or_default();
                return Ok(Err(v["error"].clone()));
            }
            Err(f) => return Err(self.fail(f)),
        };
        if method == "initialize" {
            if let Some(s) = head.get("mcp-session-id") {
                set(&self.ctx.session, Some(s.to_owned()));
            }
            if let Some(v) = &answer
                && let Some(pv) = v.pointer("/result/protocolVersion").and_then(Value::as_str)
            {
                set(&self.ctx.version, Some(pv.to_owned()));
            }
        }
        let v = answer.ok_or_else(|| {
            CliError::new(
                "MCP_HTTP",
                format!(
                    "the MCP server at {} sent no answer to {method}",
                    self.target.url
                ),
                "check the server's log",
            )
        })?;
        Ok(match v.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
        })
    }

    fn notify(&mut self, method: &str, params: Value) -> Result<(), CliError> {
        let msg = json!({ "jsonrpc": "2.0", "method": method, "params": params });
        let line = msg.to_string().into_bytes();
        exchange(
            &self.target,
            &self.ctx,
            &line,
            &msg,
            Some(Duration::from_secs(10)),
            &mut |_| {},
        )
        .map(|_| ())
        .map_err(|f| self.fail(f))
    }
}

impl Drop for HttpRpc {
    fn drop(&mut self) {
        if let Some(s) = get(&self.ctx.session) {
            let _ = send(
                &self.target,
                "DELETE",
                b"",
                &[("Mcp-Session-Id".into(), s)],
                Some(Duration::from_secs(5)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_mirror_the_body() {
        let ctx = Ctx::default();
        ctx.learn(
            Some("tools/list"),
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"get","inputSchema":{"properties":{"region":{"type":"string","x-mcp-header":"Region"},"q":{"type":"string"}}}}]}}"#,
        );
        let msg = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
            "name":"get","arguments":{"region":"Zürich","q":"x"},
            "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}});
        let h = ctx.headers(&msg);
        let find = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(find("Mcp-Method"), Some("tools/call"));
        assert_eq!(find("Mcp-Name"), Some("get"));
        assert_eq!(find("MCP-Protocol-Version"), Some("2026-07-28"));
        assert_eq!(find("Mcp-Param-Region"), Some("=?base64?WsO8cmljaA==?="));
        assert_eq!(find("Mcp-Session-Id"), None);
        // Legacy: the version comes from initialize, the session from its answer.
        ctx.learn(
            Some("initialize"),
            br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18"}}"#,
        );
        set(&ctx.session, Some("abc".into()));
        let h = ctx.headers(
            &json!({"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///x"}}),
        );
        let find = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(find("MCP-Protocol-Version"), Some("2025-06-18"));
        assert_eq!(find("Mcp-Name"), Some("file:///x"));
        assert_eq!(find("Mcp-Session-Id"), Some("abc"));
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
