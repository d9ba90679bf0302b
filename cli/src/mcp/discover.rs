//! Capability discovery for `tern mcp expose`: what tools does the server offer?
//!
//! Each attempt uses a fresh connection (for stdio: a throw-away process), because servers
//! that speak both protocol eras lock onto the era of their first request. First
//! `server/discover` (the stateless 2026-07-28 era); on any error or silence,
//! `initialize` + `notifications/initialized` (the older era). Then `tools/list`,
//! following cursors.

use std::time::Duration;

use serde_json::{Value, json};

use super::client::{self, LEGACY, MODERN, Rpc};
use crate::error::CliError;

/// How long the era probe waits for `server/discover` (as long as the Python SDK's client
/// waits; a cold start of an SDK server on a busy machine takes seconds).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long other discovery requests may take (servers can be slow to start).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Most tools published in the directory.
pub const MAX_PUBLISHED: usize = 64;
/// Most `tools/list` pages followed.
const MAX_PAGES: usize = 32;

/// What discovery found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    /// The protocol revision the server answered with.
    pub era: String,
    /// The server's name, if it gave one.
    pub server: Option<String>,
    /// (name, short description) of each tool, in the server's order.
    pub tools: Vec<(String, String)>,
}

/// Runs discovery; `connect` opens a fresh connection for each attempt.
pub fn discover(
    connect: &mut dyn FnMut() -> Result<Box<dyn Rpc>, CliError>,
) -> Result<Discovery, CliError> {
    // The modern era first.
    let mut c = connect()?;
    let probe = c.call(
        "server/discover",
        json!({ "_meta": client::modern_meta() }),
        PROBE_TIMEOUT,
    );
    if let Ok(Ok(result)) = probe {
        let tools = client::list_tools(c.as_mut(), true, REQUEST_TIMEOUT, MAX_PAGES)?;
        return Ok(Discovery {
            era: MODERN.into(),
            server: server_name(&result),
            tools: summarize(&tools),
        });
    }
    drop(c);
    // The older era, on a fresh connection.
    let mut c = connect()?;
    let init = client::initialize(c.as_mut(), REQUEST_TIMEOUT)?.map_err(|e| {
        CliError::new(
            "MCP_SERVER_FAILED",
            format!("the server refused initialize: {e}"),
            "check that the command is an MCP server",
        )
    })?;
    let tools = client::list_tools(c.as_mut(), false, REQUEST_TIMEOUT, MAX_PAGES)?;
    Ok(Discovery {
        era: init
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(LEGACY)
            .to_owned(),
        server: server_name(&init),
        tools: summarize(&tools),
    })
}

fn server_name(result: &Value) -> Option<String> {
    result
        .get("serverInfo")
        .or_else(|| result.pointer("/_meta/io.modelcontextprotocol~1serverInfo"))
        .and_then(|s| s.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Names and one-line descriptions, fit for the directory: at most [`MAX_PUBLISHED`]
/// tools, names 1–64 printable characters, descriptions cut to their first sentence.
pub fn summarize(tools: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for t in tools {
        let Some(name) = t.get("name").and_then(Value::as_str) else {
            continue;
        };
        if name.is_empty()
            || name.len() > tern_core::rendezvous::record::MAX_TOOL_NAME
            || name.chars().any(char::is_control)
            || out.iter().any(|(n, _)| n == name)
        {
            continue;
        }
        let text = t
            .get("description")
            .and_then(Value::as_str)
            .or_else(|| t.get("title").and_then(Value::as_str))
            .unwrap_or("");
        out.push((name.to_owned(), short(text)));
        if out.len() == MAX_PUBLISHED {
            break;
        }
    }
    out
}

/// The first sentence (or line) of a description, whitespace collapsed, at most 160 bytes.
fn short(text: &str) -> String {
    let first_line = text.trim().lines().next().unwrap_or("");
    let sentence = match first_line.find(". ") {
        Some(i) => &first_line[..=i],
        None => first_line,
    };
    let mut s = sentence.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 160 {
        let mut end = 157;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::client::Answer;
    use std::collections::VecDeque;

    /// A scripted server: answers calls in order from a list; records what it was asked.
    struct Script {
        answers: VecDeque<Result<Answer, CliError>>,
        log: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    }

    impl Rpc for Script {
        fn call(&mut self, method: &str, params: Value, _: Duration) -> Result<Answer, CliError> {
            self.log.borrow_mut().push(format!("{method} {params}"));
            self.answers.pop_front().expect("unexpected call")
        }
        fn notify(&mut self, method: &str, _: Value) -> Result<(), CliError> {
            self.log.borrow_mut().push(method.to_owned());
            Ok(())
        }
    }

    #[test]
    fn modern_servers_are_listed_with_meta_and_cursors_are_followed() {
        let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut conns = VecDeque::from([Script {
            answers: VecDeque::from([
                Ok(Ok(json!({"serverInfo": {"name": "srv"}}))),
                Ok(Ok(
                    json!({"tools": [{"name": "a", "description": "First. Second."}], "nextCursor": "p2"}),
                )),
                Ok(Ok(json!({"tools": [{"name": "b", "title": "Bee"}]}))),
            ]),
            log: log.clone(),
        }]);
        let d = discover(&mut || Ok(Box::new(conns.pop_front().unwrap()) as Box<dyn Rpc>)).unwrap();
        assert_eq!(d.era, MODERN);
        assert_eq!(d.server.as_deref(), Some("srv"));
        assert_eq!(
            d.tools,
            vec![("a".into(), "First.".into()), ("b".into(), "Bee".into())]
        );
        let log = log.borrow();
        assert!(log[1].contains("io.modelcontextprotocol/protocolVersion"));
        assert!(log[2].contains("\"cursor\":\"p2\""));
    }

    #[test]
    fn legacy_servers_get_a_fresh_connection_and_initialize() {
        let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut conns = VecDeque::from([
            Script {
                answers: VecDeque::from([Ok(Err(json!({"code": -32601})))]),
                log: log.clone(),
            },
            Script {
                answers: VecDeque::from([
                    Ok(Ok(json!({"protocolVersion": "2025-06-18"}))),
                    Ok(Ok(
                        json!({"tools": [{"name": "x", "description": "Does x"}]}),
                    )),
                ]),
                log: log.clone(),
            },
        ]);
        let mut opened = 0;
        let d = discover(&mut || {
            opened += 1;
            Ok(Box::new(conns.pop_front().unwrap()) as Box<dyn Rpc>)
        })
        .unwrap();
        assert_eq!(opened, 2, "one connection per attempt");
        assert_eq!(d.era, "2025-06-18");
        assert_eq!(d.tools, vec![("x".into(), "Does x".into())]);
        let log = log.borrow();
        assert!(log[1].starts_with("initialize"));
        assert_eq!(log[2], "notifications/initialized");
        assert!(!log[3].contains("_meta"));
    }

    #[test]
    fn summaries_fit_the_directory() {
        let long = "word ".repeat(100);
        let tools = vec![
            json!({"name": "ok", "description": format!("  Line one\nline two")}),
            json!({"name": "", "description": "no name"}),
            json!({"name": "ok", "description": "duplicate"}),
            json!({"name": "x".repeat(65)}),
            json!({"name": "long", "description": long}),
        ];
        let s = summarize(&tools);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], ("ok".into(), "Line one".into()));
        assert!(s[1].1.len() <= 160 && s[1].1.ends_with("..."));
    }
}
