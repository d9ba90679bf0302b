//! A minimal MCP client for tern's own needs: capability discovery on expose, the demo and
//! the overhead benchmark. It talks to anything with stdio framing (a server process, or
//! `tern mcp connect`), and — through [`Rpc`] — to HTTP servers too.
//!
//! Unlike the bridge, this client does decode messages: they are its own requests.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::child::{Pipes, ServerProcess};
use crate::error::CliError;

/// The stateless protocol revision (no `initialize`, `_meta` on every request).
pub const MODERN: &str = "2026-07-28";
/// The newest `initialize`-based revision.
pub const LEGACY: &str = "2025-11-25";

/// The `_meta` a modern request carries.
pub fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

/// A JSON-RPC answer: the result, or the error object.
pub type Answer = Result<Value, Value>;

/// Something that carries JSON-RPC requests to one MCP server.
pub trait Rpc {
    /// Sends a request and waits up to `timeout` for its answer.
    fn call(&mut self, method: &str, params: Value, timeout: Duration) -> Result<Answer, CliError>;
    /// Sends a notification.
    fn notify(&mut self, method: &str, params: Value) -> Result<(), CliError>;
}

/// A client over stdio framing: writes lines to `stdin`, reads lines from a reader thread.
#[derive(Debug)]
pub struct LineClient {
    stdin: ChildStdin,
    lines: Receiver<Vec<u8>>,
    next_id: u64,
    /// What to call the other end in errors.
    label: String,
}

fn reader_thread(stdout: impl std::io::Read + Send + 'static, tx: SyncSender<Vec<u8>>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

impl LineClient {
    /// Starts a server process and a client for it. The process is killed when the
    /// returned [`ServerProcess`] is dropped.
    pub fn spawn_server(argv: &[String]) -> Result<(Self, ServerProcess), CliError> {
        let (p, Pipes { stdin, stdout }) = ServerProcess::spawn(argv)?;
        let (tx, rx) = sync_channel(256);
        reader_thread(stdout, tx);
        Ok((
            Self {
                stdin,
                lines: rx,
                next_id: 0,
                label: argv.first().cloned().unwrap_or_default(),
            },
            p,
        ))
    }

    /// Runs `cmd` (e.g. `tern mcp connect host`) as the server end.
    pub fn spawn_command(
        mut cmd: Command,
        label: &str,
    ) -> Result<(Self, std::process::Child), CliError> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| CliError::io("cannot start the MCP client command", &e))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(CliError::internal("child without pipes"));
        };
        let (tx, rx) = sync_channel(256);
        reader_thread(stdout, tx);
        Ok((
            Self {
                stdin,
                lines: rx,
                next_id: 0,
                label: label.to_owned(),
            },
            child,
        ))
    }

    fn send(&mut self, v: &Value) -> Result<(), CliError> {
        let mut line = serde_json::to_vec(v).map_err(|e| CliError::internal(e.to_string()))?;
        line.push(b'\n');
        self.stdin.write_all(&line).map_err(|e| {
            CliError::new(
                "MCP_SERVER_FAILED",
                format!("{} stopped reading: {e}", self.label),
                "check that the command is a stdio MCP server",
            )
        })
    }
}

impl Rpc for LineClient {
    fn call(&mut self, method: &str, params: Value, timeout: Duration) -> Result<Answer, CliError> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(CliError::new(
                        "TIMEOUT",
                        format!("{} did not answer {method} within {timeout:?}", self.label),
                        "check that the command is a stdio MCP server",
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(CliError::new(
                        "MCP_SERVER_FAILED",
                        format!("{} closed its output before answering {method}", self.label),
                        "run the server command by hand to see why it exits",
                    ));
                }
            };
            // Skip whatever is not our answer (banners, notifications, server requests).
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if v.get("method").is_some() || v.get("id") != Some(&json!(id)) {
                continue;
            }
            return Ok(match v.get("error") {
                Some(e) => Err(e.clone()),
                None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
            });
        }
    }

    fn notify(&mut self, method: &str, params: Value) -> Result<(), CliError> {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }))
    }
}

/// The legacy handshake: `initialize`, then `notifications/initialized`. Returns the
/// result.
pub fn initialize(c: &mut dyn Rpc, timeout: Duration) -> Result<Answer, CliError> {
    let r = c.call(
        "initialize",
        json!({
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": { "name": "tern", "version": env!("CARGO_PKG_VERSION") },
        }),
        timeout,
    )?;
    if r.is_ok() {
        c.notify("notifications/initialized", json!({}))?;
    }
    Ok(r)
}

/// Every tool, following `nextCursor` (at most `max_pages` pages).
pub fn list_tools(
    c: &mut dyn Rpc,
    modern: bool,
    timeout: Duration,
    max_pages: usize,
) -> Result<Vec<Value>, CliError> {
    let mut tools = Vec::new();
    let mut cursor: Option<Value> = None;
    for _ in 0..max_pages {
        let mut params = json!({});
        if modern {
            params["_meta"] = modern_meta();
        }
        if let Some(c) = cursor.take() {
            params["cursor"] = c;
        }
        let r = c.call("tools/list", params, timeout)?.map_err(|e| {
            CliError::new(
                "MCP_SERVER_FAILED",
                format!("tools/list failed: {e}"),
                "check the server's log",
            )
        })?;
        if let Some(list) = r.get("tools").and_then(Value::as_array) {
            tools.extend(list.iter().cloned());
        }
        match r.get("nextCursor") {
            Some(c) if !c.is_null() => cursor = Some(c.clone()),
            _ => break,
        }
    }
    Ok(tools)
}
