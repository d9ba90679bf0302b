//! `tern mcp connect`: be a stdio MCP server for a local client, by piping stdin/stdout
//! to an MCP server exposed on another node (or, with `--listen`, serve streamable HTTP).
//! Also `tern mcp find`, and the choice of a server by tag.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::jsonrpc::{self, Kind};
use crate::error::CliError;
use crate::ipc::{self, Request};

/// Picks the node to connect to: the target as given, or the best online node with
/// MCP tools carrying `tag`.
pub fn pick(sock: &Path, target: Option<String>, tag: Option<String>) -> Result<String, CliError> {
    match (target, tag) {
        (Some(t), None) => Ok(t),
        (None, Some(tag)) => {
            let found = ipc::call(
                sock,
                &Request::Find {
                    host: None,
                    tag: Some(tag.clone()),
                    words: None,
                },
            )?;
            let list = found.as_array().cloned().unwrap_or_default();
            let online = |e: &&Value| e["online"].as_bool() == Some(true);
            let with_tools = |e: &&Value| e["tools"].as_array().is_some_and(|t| !t.is_empty());
            let best = list
                .iter()
                .filter(online)
                .find(with_tools)
                .or_else(|| list.iter().find(online))
                .ok_or_else(|| {
                    CliError::new(
                        "NO_MCP_SERVER",
                        format!("no online node with the tag {tag:?}"),
                        "tern mcp find <words> lists MCP servers; a private one shows only after it trusts you",
                    )
                })?;
            Ok(best["address"].as_str().unwrap_or_default().to_owned())
        }
        (Some(_), Some(_)) => Err(CliError::invalid(
            "give a host or --tag, not both",
            "tern mcp connect <host> | tern mcp connect --tag <tag>",
        )),
        (None, None) => Err(CliError::invalid(
            "no MCP server given",
            "tern mcp connect <host|address> or tern mcp connect --tag <tag>",
        )),
    }
}

/// Runs the stdio bridge until either side ends. Exits with an error if the remote side
/// ended first (the MCP client should restart us, which gets it a fresh server).
pub fn stdio(sock: &Path, target: &str, port: u16) -> Result<(), CliError> {
    let mut call = ipc::Call::start(
        sock,
        &Request::Connect {
            target: target.to_owned(),
            port,
        },
    )
    .inspect_err(answer_first_request)?;
    call.finish(|_| {}).inspect_err(answer_first_request)?;
    let (conn, pre) = call.into_raw();
    let mut out = std::io::stdout().lock();
    out.write_all(&pre)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("stdout", &e))?;
    let client_done = Arc::new(AtomicBool::new(false));
    {
        let mut up = conn.try_clone().map_err(|e| CliError::io("socket", &e))?;
        let client_done = client_done.clone();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if up.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            client_done.store(true, Ordering::SeqCst);
            let _ = up.shutdown(std::net::Shutdown::Write);
        });
    }
    let mut down = conn;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match down.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                    // Our client is gone.
                    return Ok(());
                }
            }
        }
    }
    if client_done.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err(CliError::new(
            "CONNECTION_LOST",
            format!("the MCP server at {target} closed the connection"),
            "restart the client (each connection gets a fresh server); the exposing side's log says why",
        ))
    }
}

/// When the connection cannot be made, the MCP client is told in its own terms: its first
/// request gets a JSON-RPC error with the cause and the hint (the same goes to stderr).
fn answer_first_request(e: &CliError) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while line.len() < jsonrpc::MAX_PEEK_LINE {
            match stdin.read(&mut b) {
                Ok(1) if b[0] != b'\n' => line.push(b[0]),
                _ => break,
            }
        }
        let _ = tx.send(line);
    });
    if let Ok(line) = rx.recv_timeout(Duration::from_secs(3))
        && let Kind::Request { id, .. } = jsonrpc::peek(&line)
    {
        let msg = format!("{} (hint: {})", e.message, e.hint);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&jsonrpc::error_line(&id, &msg, &e.code));
        let _ = out.flush();
    }
}

/// `tern mcp find`: nodes whose MCP tools match the words, best first.
pub fn find(sock: &Path, words: &[String]) -> Result<Value, CliError> {
    let q = words.join(" ");
    let found = ipc::call(
        sock,
        &Request::Find {
            host: None,
            tag: None,
            words: Some(q.clone()),
        },
    )?;
    let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    let matches = |t: &Value| {
        let name = t["name"].as_str().unwrap_or("").to_lowercase();
        let desc = t["description"].as_str().unwrap_or("").to_lowercase();
        lower.iter().any(|w| {
            name.contains(w.as_str()) || desc.split(|c: char| !c.is_alphanumeric()).any(|d| d == w)
        })
    };
    let out: Vec<Value> = found
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["tools"].as_array().is_some_and(|t| t.iter().any(matches)))
        .map(|mut e| {
            let hits: Vec<Value> = e["tools"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter(|x| matches(x))
                        .map(|x| x["name"].clone())
                        .collect()
                })
                .unwrap_or_default();
            e["matching_tools"] = Value::Array(hits);
            e
        })
        .collect();
    Ok(Value::Array(out))
}
