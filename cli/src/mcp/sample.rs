//! `tern mcp sample-server` (hidden): a tiny stdio MCP server built into tern, so the demo
//! and the overhead benchmark need no Python. It speaks just enough of both protocol eras:
//! `server/discover` (2026-07-28) and `initialize` (2025-11-25 and older), `tools/list`,
//! `tools/call` and `ping`. It exits when its stdin closes.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

use super::client::{LEGACY, MODERN};

const NAME: &str = "tern-sample";

/// Legacy revisions the sample accepts in `initialize`.
const LEGACY_VERSIONS: [&str; 4] = [LEGACY, "2025-06-18", "2025-03-26", "2024-11-05"];

fn tools() -> Value {
    json!([
        {
            "name": "forecast",
            "description": "Weather forecast for a city: temperature and sky for the next three days (made-up numbers).",
            "inputSchema": {
                "type": "object",
                "properties": { "city": { "type": "string" } },
                "required": ["city"]
            }
        },
        {
            "name": "add",
            "description": "Add two integers.",
            "inputSchema": {
                "type": "object",
                "properties": { "a": { "type": "integer" }, "b": { "type": "integer" } },
                "required": ["a", "b"]
            }
        },
        {
            "name": "echo",
            "description": "Echo text back unchanged.",
            "inputSchema": {
                "type": "object",
                "properties": { "text": { "type": "string" } },
                "required": ["text"]
            }
        }
    ])
}

/// A deterministic, made-up forecast.
fn forecast(city: &str) -> String {
    let h = city
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let skies = ["sunny", "cloudy", "light rain", "windy"];
    let days: Vec<String> = (0..3u32)
        .map(|d| {
            let t = 8 + (h >> (d * 5)) % 20;
            format!("{}°C {}", t, skies[((h >> (d * 3)) % 4) as usize])
        })
        .collect();
    format!("{city}: {}", days.join(", "))
}

fn text_result(text: String, is_error: bool) -> Value {
    json!({ "content": [{ "type": "text", "text": text }], "isError": is_error })
}

fn call_tool(params: &Value) -> Value {
    let args = &params["arguments"];
    match params["name"].as_str().unwrap_or("") {
        "forecast" => match args["city"].as_str() {
            Some(c) => text_result(forecast(c), false),
            None => text_result("missing argument: city".into(), true),
        },
        "add" => match (args["a"].as_i64(), args["b"].as_i64()) {
            (Some(a), Some(b)) => text_result(a.wrapping_add(b).to_string(), false),
            _ => text_result("a and b must be integers".into(), true),
        },
        "echo" => text_result(args["text"].as_str().unwrap_or("").to_owned(), false),
        other => text_result(format!("unknown tool {other:?}"), true),
    }
}

/// The answer to one message (`None` for notifications and responses).
pub fn answer(msg: &Value) -> Option<Value> {
    let id = msg.get("id").filter(|i| !i.is_null())?;
    let method = msg.get("method")?.as_str().unwrap_or("");
    let params = msg.get("params").cloned().unwrap_or(json!({}));
    let modern = params
        .pointer("/_meta/io.modelcontextprotocol~1protocolVersion")
        .is_some();
    let info = json!({ "name": NAME, "version": env!("CARGO_PKG_VERSION") });
    let result = match method {
        "server/discover" => json!({
            "supportedVersions": [MODERN],
            "capabilities": { "tools": {} },
            "cacheScope": "public",
            "ttlMs": 0,
            "resultType": "complete",
            "_meta": { "io.modelcontextprotocol/serverInfo": info },
        }),
        "initialize" => {
            let asked = params["protocolVersion"].as_str().unwrap_or(LEGACY);
            let v = if LEGACY_VERSIONS.contains(&asked) {
                asked
            } else {
                LEGACY
            };
            json!({ "protocolVersion": v, "capabilities": { "tools": {} }, "serverInfo": info })
        }
        "ping" => json!({}),
        "tools/list" => json!({ "tools": tools() }),
        "tools/call" => call_tool(&params),
        _ => {
            return Some(json!({
                "jsonrpc": "2.0", "id": id,
                "error": { "code": -32601, "message": format!("method not found: {method}") }
            }));
        }
    };
    let mut result = result;
    if modern && method != "server/discover" {
        result["resultType"] = json!("complete");
    }
    Some(json!({ "jsonrpc": "2.0", "id": id, "result": result }))
}

/// Serves stdin/stdout until stdin closes.
pub fn run() -> Result<(), crate::error::CliError> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let reply = match serde_json::from_str::<Value>(&line) {
            Ok(msg) => answer(&msg),
            Err(_) => Some(json!({
                "jsonrpc": "2.0", "id": null,
                "error": { "code": -32700, "message": "parse error" }
            })),
        };
        if let Some(r) = reply {
            let mut bytes = serde_json::to_vec(&r).unwrap_or_default();
            bytes.push(b'\n');
            if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_eras_and_the_tools_answer() {
        let d = answer(&json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":MODERN}}})).unwrap();
        assert_eq!(d["result"]["supportedVersions"][0], MODERN);
        let i = answer(&json!({"jsonrpc":"2.0","id":"x","method":"initialize","params":{"protocolVersion":"2025-06-18"}})).unwrap();
        assert_eq!(i["id"], "x");
        assert_eq!(i["result"]["protocolVersion"], "2025-06-18");
        let l = answer(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list"})).unwrap();
        assert_eq!(l["result"]["tools"][0]["name"], "forecast");
        let c = answer(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":40}}})).unwrap();
        assert_eq!(c["result"]["content"][0]["text"], "42");
        let f = answer(&json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"forecast","arguments":{"city":"Lisbon"}}})).unwrap();
        assert!(
            f["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("Lisbon: ")
        );
        assert!(answer(&json!({"jsonrpc":"2.0","method":"notifications/initialized"})).is_none());
        let e = answer(&json!({"jsonrpc":"2.0","id":5,"method":"nope"})).unwrap();
        assert_eq!(e["error"]["code"], -32601);
    }
}
