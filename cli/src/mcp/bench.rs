//! `tern mcp bench-call` (hidden): the round-trip time of `tools/call` against a stdio
//! server command, one call at a time. Run it against a server directly and against
//! `tern mcp connect` to the same server exposed on another node: the difference is what
//! tern adds (`scripts/bench-mcp.sh`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::{self, LineClient, Rpc};
use crate::error::CliError;

/// Untimed calls first (process start, session set-up, caches).
const WARM_UP: usize = 100;

/// Runs `calls` timed `tools/call add` requests; returns median, p99 and more in µs.
pub fn run(argv: &[String], calls: usize) -> Result<Value, CliError> {
    let (mut c, _process) = LineClient::spawn_server(argv)?;
    let timeout = Duration::from_secs(30);
    client::initialize(&mut c, timeout)?.map_err(|e| {
        CliError::new(
            "MCP_SERVER_FAILED",
            format!("initialize failed: {e}"),
            "check the server",
        )
    })?;
    let mut call = |i: usize| -> Result<Duration, CliError> {
        let t = Instant::now();
        let r = c.call(
            "tools/call",
            json!({ "name": "add", "arguments": { "a": i, "b": 1 } }),
            timeout,
        )?;
        let took = t.elapsed();
        let text = r
            .ok()
            .and_then(|v| v["content"][0]["text"].as_str().map(str::to_owned));
        if text.as_deref() != Some((i + 1).to_string().as_str()) {
            return Err(CliError::new(
                "MCP_SERVER_FAILED",
                format!("add({i}, 1) answered {text:?}"),
                "the server needs an add(a, b) tool",
            ));
        }
        Ok(took)
    };
    for i in 0..WARM_UP {
        call(i)?;
    }
    let mut us: Vec<f64> = (0..calls.max(1))
        .map(|i| call(i).map(|d| d.as_secs_f64() * 1e6))
        .collect::<Result<_, _>>()?;
    us.sort_by(f64::total_cmp);
    let pct = |p: f64| us[((us.len() as f64 * p).ceil() as usize).clamp(1, us.len()) - 1];
    Ok(json!({
        "calls": us.len(),
        "median_us": pct(0.5),
        "p99_us": pct(0.99),
        "min_us": us[0],
        "max_us": us[us.len() - 1],
        "mean_us": us.iter().sum::<f64>() / us.len() as f64,
    }))
}
