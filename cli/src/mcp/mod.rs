//! `tern mcp`: MCP servers over tern.
//!
//! - `expose -- CMD` serves a stdio MCP server to trusted peers on [`MCP_PORT`]: every
//!   stream gets its own server process (`bridge`, `child`); `--http URL` serves a
//!   streamable-HTTP server instead (`http_backend`).
//! - `connect HOST` is a stdio MCP server for a local client, piping to the remote one;
//!   `--listen 127.0.0.1:PORT` serves streamable HTTP to local clients (`http_listen`).
//! - `find WORDS` finds servers by what their tools do (`discover` published them).
//!
//! On the tern stream the payload is always stdio framing: one JSON-RPC message per line,
//! bytes untouched (`jsonrpc` only peeks).

mod bench;
mod bridge;
mod child;
mod client;
mod connect;
mod demo;
mod discover;
mod expose;
mod http;
mod http_backend;
mod http_listen;
mod jsonrpc;
mod sample;

use std::path::Path;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::error::CliError;

/// The virtual port MCP servers are exposed on unless `--port` says otherwise (Pilot's
/// "stdio" port: tern carries MCP in stdio framing).
pub const MCP_PORT: u16 = 1000;

pub use demo::story as demo_story;

/// `tern mcp …` subcommands.
#[derive(Subcommand, Debug)]
pub enum McpCmd {
    /// Serve an MCP server to trusted peers: `tern mcp expose -- python server.py`.
    Expose {
        /// Virtual port to serve on.
        #[arg(long, default_value_t = MCP_PORT)]
        port: u16,
        /// Capability tag to publish (repeatable; `mcp` is always added).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Expose a streamable-HTTP MCP server at this URL instead of a command.
        #[arg(long)]
        http: Option<String>,
        /// Most server processes (connected clients) at once.
        #[arg(long, default_value_t = expose::DEFAULT_MAX_SERVERS)]
        max_servers: usize,
        /// Do not probe the server's tools (nothing is published for `find`).
        #[arg(long)]
        no_discover: bool,
        /// The stdio MCP server command, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Be a stdio MCP server for a local client, connected to a remote one (use it as the
    /// command in any MCP client's config).
    Connect {
        /// Hostname, address or key of the exposing node.
        target: Option<String>,
        /// Pick the best online MCP server with this tag instead.
        #[arg(long)]
        tag: Option<String>,
        /// Virtual port.
        #[arg(long, default_value_t = MCP_PORT)]
        port: u16,
        /// Serve streamable HTTP on this loopback address (e.g. 127.0.0.1:8765) instead of
        /// stdio.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Find MCP servers whose tools match the words, best first.
    Find {
        /// Words matched against tool names and descriptions.
        #[arg(required = true)]
        words: Vec<String>,
    },
    /// A tiny built-in stdio MCP server (demo, benchmarks).
    #[command(hide = true)]
    SampleServer,
    /// Round-trip times of `tools/call` against a stdio server command (benchmarks).
    #[command(hide = true)]
    BenchCall {
        /// Timed calls.
        #[arg(long, default_value_t = 1000)]
        calls: usize,
        /// The server command, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
}

impl McpCmd {
    /// Whether stdout carries MCP messages (so errors must not go there as JSON
    /// envelopes).
    pub fn speaks_on_stdout(&self) -> bool {
        matches!(
            self,
            McpCmd::Connect { listen: None, .. } | McpCmd::SampleServer
        )
    }
}

/// Runs a `tern mcp` command.
pub fn run(sock: &Path, cmd: McpCmd, json_mode: bool) -> Result<(), CliError> {
    match cmd {
        McpCmd::Expose {
            port,
            tags,
            http,
            max_servers,
            no_discover,
            command,
        } => {
            let backend = match (http, command.is_empty()) {
                (Some(url), true) => expose::Backend::Http(http_backend::Target::parse(&url)?),
                (None, false) => expose::Backend::Stdio(command),
                (Some(_), false) => {
                    return Err(CliError::invalid(
                        "give a command or --http, not both",
                        "tern mcp expose -- <command> | tern mcp expose --http <url>",
                    ));
                }
                (None, true) => {
                    return Err(CliError::invalid(
                        "no MCP server given",
                        "tern mcp expose -- python server.py (or --http http://127.0.0.1:8000/mcp)",
                    ));
                }
            };
            for t in &tags {
                tern_core::rendezvous::record::validate_tag(t).map_err(|e| {
                    CliError::invalid(e.to_string(), "use a-z, 0-9, '-', '_' and '.'")
                })?;
            }
            if max_servers == 0 {
                return Err(CliError::invalid(
                    "--max-servers must be at least 1",
                    "e.g. --max-servers 32",
                ));
            }
            let opts = expose::Options {
                port,
                tags,
                max_servers,
                no_discover,
                backend,
            };
            expose::run(sock, &opts, json_mode)
        }
        McpCmd::Connect {
            target,
            tag,
            port,
            listen,
        } => {
            let target = connect::pick(sock, target, tag)?;
            match listen {
                None => connect::stdio(sock, &target, port),
                Some(addr) => http_listen::run(sock, &target, port, &addr, json_mode),
            }
        }
        McpCmd::Find { words } => {
            let found = connect::find(sock, &words)?;
            print_found(json_mode, &found);
            Ok(())
        }
        McpCmd::SampleServer => sample::run(),
        McpCmd::BenchCall { calls, command } => {
            let r = bench::run(&command, calls)?;
            if json_mode {
                println!("{}", json!({ "status": "ok", "data": r }));
            } else {
                println!(
                    "{} calls: median {:.1} µs, p99 {:.1} µs",
                    r["calls"],
                    r["median_us"].as_f64().unwrap_or(0.0),
                    r["p99_us"].as_f64().unwrap_or(0.0)
                );
            }
            Ok(())
        }
    }
}

fn print_found(json_mode: bool, found: &Value) {
    if json_mode {
        println!("{}", json!({ "status": "ok", "data": found }));
        return;
    }
    let list = found.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no MCP server matches");
    }
    for e in list {
        let names = |k: &str| {
            e[k].as_array()
                .map(|t| {
                    t.iter()
                        .map(|x| x.as_str().or(x["name"].as_str()).unwrap_or("").to_owned())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        println!(
            "{}  {}  {}  matching: {}  (tools: {})",
            e["address"].as_str().unwrap_or("-"),
            e["hostname"].as_str().unwrap_or("-"),
            if e["online"].as_bool() == Some(true) {
                "online"
            } else {
                "offline"
            },
            names("matching_tools"),
            names("tools"),
        );
    }
}
