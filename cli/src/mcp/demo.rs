//! The MCP part of `tern demo`: one daemon exposes tern's built-in sample MCP server, the
//! other finds it by what its tools do and calls a tool through `tern mcp connect`, the
//! way any MCP client would (no Python needed).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};

use super::client::{self, LineClient, Rpc};
use crate::error::CliError;

/// A background `tern mcp expose`, stopped (SIGTERM, so it ends its servers) on drop.
struct Exposed(std::process::Child);

impl Drop for Exposed {
    fn drop(&mut self) {
        if let Some(pid) = i32::try_from(self.0.id()).ok().and_then(Pid::from_raw) {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tern(exe: &Path, runtime: &Path, home: &Path) -> Command {
    let mut c = Command::new(exe);
    c.arg("--home").arg(home).env("TERN_RUNTIME_DIR", runtime);
    c
}

/// Runs the MCP story: `server` exposes, `client` finds and calls. `say` prints a line.
pub fn story(
    exe: &Path,
    runtime: &Path,
    (server, server_name): (&Path, &str),
    client_home: &Path,
    say: &dyn Fn(&str),
) -> Result<Value, CliError> {
    say("\n== MCP over tern: a server on one node, called from another ==\n");
    let mut expose = tern(exe, runtime, server)
        .args(["--json", "mcp", "expose", "--tag", "weather", "--"])
        .arg(exe)
        .args(["mcp", "sample-server"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| CliError::io("cannot run tern mcp expose", &e))?;
    let out = expose.stdout.take();
    let guard = Exposed(expose);
    let mut line = String::new();
    if let Some(out) = out {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let v: Value = serde_json::from_str(&line).unwrap_or_default();
    if v["status"] != "ok" {
        return Err(CliError::new(
            "MCP_SERVER_FAILED",
            "tern mcp expose did not start",
            "run it by hand to see why: tern mcp expose -- tern mcp sample-server",
        ));
    }
    let tools: Vec<&str> = v["data"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    say(&format!(
        "$ tern --home {server_name} mcp expose --tag weather -- tern mcp sample-server\n  exposing on port {} ({} tools: {}; discovered with {})",
        v["data"]["port"],
        tools.len(),
        tools.join(", "),
        v["data"]["era"].as_str().unwrap_or("?")
    ));
    // Found by a word from a tool's description.
    let found = tern(exe, runtime, client_home)
        .args(["--json", "mcp", "find", "weather", "forecast"])
        .output()
        .map_err(|e| CliError::io("cannot run tern mcp find", &e))?;
    let f: Value = serde_json::from_slice(&found.stdout).unwrap_or_default();
    let first = &f["data"][0];
    say(&format!(
        "$ tern mcp find weather forecast\n  {}  {}  matching: {}",
        first["address"].as_str().unwrap_or("-"),
        first["hostname"].as_str().unwrap_or("-"),
        first["matching_tools"]
    ));
    if first["hostname"].as_str() != Some(server_name) {
        return Err(CliError::new(
            "NO_MCP_SERVER",
            "tern mcp find did not find the demo server",
            "check the daemon logs",
        ));
    }
    // An MCP client spawns `tern mcp connect --tag weather` as its stdio server.
    let mut cmd = tern(exe, runtime, client_home);
    cmd.args(["mcp", "connect", "--tag", "weather"])
        .stderr(Stdio::null());
    let (mut c, mut child) = LineClient::spawn_command(cmd, "tern mcp connect")?;
    let t = Duration::from_secs(20);
    let init = client::initialize(&mut c, t)?.map_err(|e| {
        CliError::new(
            "MCP_SERVER_FAILED",
            format!("initialize failed: {e}"),
            "check the daemon logs",
        )
    })?;
    let start = Instant::now();
    let r = c
        .call(
            "tools/call",
            json!({ "name": "forecast", "arguments": { "city": "Lisbon" } }),
            t,
        )?
        .map_err(|e| {
            CliError::new(
                "MCP_SERVER_FAILED",
                format!("tools/call failed: {e}"),
                "check the daemon logs",
            )
        })?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let text = r["content"][0]["text"].as_str().unwrap_or("").to_owned();
    say(&format!(
        "$ (an MCP client runs `tern mcp connect --tag weather` as its server)\n  initialize → {} {}\n  tools/call forecast {{\"city\": \"Lisbon\"}} → {text}\n  MCP tool answered through tern in {ms:.2}ms",
        init["serverInfo"]["name"].as_str().unwrap_or("?"),
        init["protocolVersion"].as_str().unwrap_or("?"),
    ));
    drop(c);
    let _ = child.wait();
    drop(guard);
    if !text.starts_with("Lisbon: ") {
        return Err(CliError::new(
            "MCP_SERVER_FAILED",
            format!("unexpected answer {text:?}"),
            "this is a bug; please report it",
        ));
    }
    Ok(json!({ "tools": tools, "found": first["hostname"], "answer": text, "call_ms": ms }))
}
