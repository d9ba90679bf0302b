//! Just enough JSON-RPC for a byte pipe: split a byte stream into lines without touching
//! it, peek at a line's `id` and `method`, and build the few error lines tern itself sends.
//!
//! MCP's stdio framing is one JSON-RPC message per `\n`-terminated line with no embedded
//! newlines, in both protocol eras. The bridge forwards bytes verbatim; this module only
//! *reads* copies of them, never re-encodes a message.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Longest line the tap keeps a copy of for peeking (the bytes themselves are forwarded
/// whatever their length). MCP lines can be several MB (large `tools/list` results).
pub const MAX_PEEK_LINE: usize = 64 << 20;

/// JSON-RPC "internal error": what tern answers when the server behind it cannot.
pub const INTERNAL_ERROR: i64 = -32603;

/// Splits a byte stream into complete lines (copies, for peeking) while the caller
/// forwards the original chunks untouched.
#[derive(Debug, Default)]
pub struct LineTap {
    buf: Vec<u8>,
    /// The current line grew past [`MAX_PEEK_LINE`]: skip it up to its newline.
    skipping: bool,
    /// Whether the last byte seen was a newline (or nothing was seen yet).
    at_line_start: bool,
    seen: bool,
}

impl LineTap {
    /// A tap at the start of a stream.
    pub fn new() -> Self {
        Self {
            at_line_start: true,
            ..Self::default()
        }
    }

    /// Feeds a chunk; calls `on_line` with every line it completes (without the `\n`).
    pub fn feed(&mut self, chunk: &[u8], mut on_line: impl FnMut(&[u8])) {
        if chunk.is_empty() {
            return;
        }
        self.seen = true;
        self.at_line_start = chunk.last() == Some(&b'\n');
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(pos);
            if !self.skipping {
                if self.buf.is_empty() {
                    on_line(head);
                } else {
                    self.buf.extend_from_slice(head);
                    on_line(&self.buf);
                }
            }
            self.buf.clear();
            self.skipping = false;
            rest = &tail[1..];
        }
        if !self.skipping {
            if self.buf.len() + rest.len() > MAX_PEEK_LINE {
                self.buf.clear();
                self.skipping = true;
            } else {
                self.buf.extend_from_slice(rest);
            }
        }
    }

    /// Whether the bytes so far end in the middle of a line (so an injected line must start
    /// with a newline).
    pub fn mid_line(&self) -> bool {
        self.seen && !self.at_line_start
    }
}

/// What a line is, as far as routing cares. Ids are in canonical JSON spelling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Has `id` and `method`.
    Request {
        /// The `id`.
        id: String,
        /// The method.
        method: String,
    },
    /// Has `method` and no `id`.
    Notification {
        /// The method.
        method: String,
    },
    /// Has `id` and no `method` (a result or an error).
    Response {
        /// The `id`.
        id: String,
    },
    /// Not a JSON-RPC object we understand (a banner, a batch, garbage, an empty line).
    Other,
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
}

/// Peeks at the `id` and `method` of one line.
pub fn peek(line: &[u8]) -> Kind {
    let line = trim(line);
    if line.first() != Some(&b'{') {
        return Kind::Other;
    }
    let Ok(p) = serde_json::from_slice::<Peek<'_>>(line) else {
        return Kind::Other;
    };
    // Ids are compared as JSON values: `1.0` and `1.00` are one id, as are `"\u0061"`
    // and `"a"`. The canonical spelling is valid JSON, fit for an error line.
    let id =
        p.id.map(|r| {
            serde_json::from_str::<serde_json::Value>(r.get())
                .map_or_else(|_| r.get().to_owned(), |v| v.to_string())
        })
        .filter(|id| id != "null");
    match (id, p.method) {
        (Some(id), Some(m)) => Kind::Request {
            id,
            method: m.into_owned(),
        },
        (None, Some(m)) => Kind::Notification {
            method: m.into_owned(),
        },
        (Some(id), None) => Kind::Response { id },
        (None, None) => Kind::Other,
    }
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// A JSON-RPC error response line (with its `\n`) for the request `raw_id`. `reason` is a
/// stable tern code (`SERVER_EXITED`, `BUSY`, …) carried in `error.data.tern`.
pub fn error_line(raw_id: &str, message: &str, reason: &str) -> Vec<u8> {
    let message = serde_json::to_string(&format!("tern: {message}")).unwrap_or_default();
    let reason = serde_json::to_string(reason).unwrap_or_default();
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{raw_id},\"error\":{{\"code\":{INTERNAL_ERROR},\"message\":{message},\"data\":{{\"tern\":{reason}}}}}}}\n"
    )
    .into_bytes()
}

/// Requests sent and not answered yet, by raw `id` (bounded by the caller's stream).
#[derive(Debug, Default)]
pub struct InFlight {
    ids: BTreeMap<String, String>,
}

/// Most requests tracked per stream; past that the oldest are forgotten (they would
/// simply get no synthetic error if the server died).
pub const MAX_IN_FLIGHT: usize = 65_536;

impl InFlight {
    /// Records a request.
    pub fn sent(&mut self, id: String, method: String) {
        if self.ids.len() >= MAX_IN_FLIGHT
            && let Some(first) = self.ids.keys().next().cloned()
        {
            self.ids.remove(&first);
        }
        self.ids.insert(id, method);
    }

    /// Records a response.
    pub fn answered(&mut self, id: &str) {
        self.ids.remove(id);
    }

    /// Every unanswered request (id, method), emptying the set.
    pub fn drain(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.ids).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_reads_ids_verbatim_and_ignores_everything_else() {
        assert_eq!(
            peek(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"x":"\n"}}"#),
            Kind::Request {
                id: "7".into(),
                method: "tools/call".into()
            }
        );
        assert_eq!(
            peek(br#"  {"method":"tools\/list","id":"a\"b"}  "#),
            Kind::Request {
                id: r#""a\"b""#.into(),
                method: "tools/list".into()
            }
        );
        assert_eq!(
            peek(br#"{"jsonrpc":"2.0","id":1.50,"result":{}}"#),
            Kind::Response { id: "1.5".into() }
        );
        assert_eq!(
            peek(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Kind::Notification {
                method: "notifications/initialized".into()
            }
        );
        assert_eq!(
            peek(br#"{"id":null,"error":{}}"#),
            Kind::Other,
            "a null id is nobody's"
        );
        for junk in [&b"Server starting..."[..], b"", b"[1,2]", b"{nope"] {
            assert_eq!(peek(junk), Kind::Other);
        }
    }

    #[test]
    fn the_tap_finds_lines_across_chunks_and_knows_when_it_is_mid_line() {
        let mut tap = LineTap::new();
        let mut lines = Vec::new();
        assert!(!tap.mid_line());
        tap.feed(b"{\"a\":1}\n{\"b\"", |l| lines.push(l.to_vec()));
        assert!(tap.mid_line());
        tap.feed(b":2}\n\n{\"c\":3}\n", |l| lines.push(l.to_vec()));
        assert!(!tap.mid_line());
        assert_eq!(
            lines,
            vec![
                b"{\"a\":1}".to_vec(),
                b"{\"b\":2}".to_vec(),
                Vec::new(),
                b"{\"c\":3}".to_vec()
            ]
        );
    }

    #[test]
    fn error_lines_are_valid_json_rpc_with_the_original_id() {
        let line = error_line(r#""abc""#, "the server \"x\" exited", "SERVER_EXITED");
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["id"], "abc");
        assert_eq!(v["error"]["code"], INTERNAL_ERROR);
        assert_eq!(v["error"]["message"], "tern: the server \"x\" exited");
        assert_eq!(v["error"]["data"]["tern"], "SERVER_EXITED");
        assert_eq!(
            peek(&line[..line.len() - 1]),
            Kind::Response {
                id: "\"abc\"".into()
            }
        );
    }
}
