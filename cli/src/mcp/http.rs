//! The little HTTP/1.1 that MCP's streamable-HTTP transport needs, over `std::net`:
//! message heads, bodies (`Content-Length`, chunked, or until close), chunked writing and
//! a server-sent-events parser. Both ends of tern's HTTP bridges use it; they only ever
//! talk to loopback (see the README's crate map for why no HTTP crate).

use std::io::{self, BufRead, Read, Write};

/// Largest message head accepted.
pub const MAX_HEAD: usize = 64 << 10;
/// Largest body read into memory (MCP messages can be several MB).
pub const MAX_BODY: usize = 64 << 20;

/// A start line and headers.
#[derive(Clone, Debug, Default)]
pub struct Head {
    /// `POST /mcp HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub start: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header (names compare case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The status code of a response head.
    pub fn status(&self) -> u16 {
        self.start
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Method and path of a request head.
    pub fn request_line(&self) -> (&str, &str) {
        let mut it = self.start.split_whitespace();
        (it.next().unwrap_or(""), it.next().unwrap_or(""))
    }

    /// Whether the body is chunked.
    fn chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    /// The media type, lower case, without parameters.
    pub fn content_type(&self) -> String {
        self.get("content-type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Reads a message head; `None` at a clean end of the connection.
pub fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut head = Head::default();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = r.by_ref().take(MAX_HEAD as u64).read_line(&mut line)?;
        if n == 0 {
            return if total == 0 {
                Ok(None)
            } else {
                Err(bad("connection closed inside a message head"))
            };
        }
        total += n;
        if total > MAX_HEAD || head.headers.len() > 128 {
            return Err(bad("message head too large"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if head.start.is_empty() {
            if line.is_empty() {
                continue; // tolerate stray CRLF between messages
            }
            head.start = line.to_owned();
            continue;
        }
        if line.is_empty() {
            return Ok(Some(head));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("malformed header"))?;
        head.headers
            .push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

/// A body reader: by length, chunked, or until the connection closes.
#[derive(Debug)]
pub struct Body<R> {
    inner: R,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Length(u64),
    /// Bytes left in the current chunk; `None` before the first chunk size.
    Chunked(Option<u64>),
    Close,
    Done,
}

impl<R: BufRead> Body<R> {
    /// The body of a message with `head`. `request` bodies without a length are empty;
    /// response bodies without one run until the connection closes.
    pub fn new(inner: R, head: &Head, request: bool) -> io::Result<Self> {
        let mode = if head.chunked() {
            Mode::Chunked(None)
        } else if let Some(len) = head.get("content-length") {
            let n: u64 = len.trim().parse().map_err(|_| bad("bad content-length"))?;
            if n == 0 { Mode::Done } else { Mode::Length(n) }
        } else if request {
            Mode::Done
        } else {
            Mode::Close
        };
        Ok(Self { inner, mode })
    }

    /// Reads the whole body (at most [`MAX_BODY`] bytes).
    pub fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.take(MAX_BODY as u64 + 1).read_to_end(&mut out)?;
        if out.len() > MAX_BODY {
            return Err(bad("body too large"));
        }
        Ok(out)
    }

    /// The underlying reader (for the next message on a kept-alive connection).
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match &mut self.mode {
                Mode::Done => return Ok(0),
                Mode::Close => return self.inner.read(buf),
                Mode::Length(left) => {
                    let max = (*left).min(buf.len() as u64) as usize;
                    let n = self.inner.read(&mut buf[..max])?;
                    if n == 0 {
                        return Err(bad("connection closed inside a body"));
                    }
                    *left -= n as u64;
                    if *left == 0 {
                        self.mode = Mode::Done;
                    }
                    return Ok(n);
                }
                Mode::Chunked(Some(0)) => {
                    // End of a chunk: its CRLF, then the next size.
                    let mut crlf = String::new();
                    self.inner.read_line(&mut crlf)?;
                    self.mode = Mode::Chunked(None);
                }
                Mode::Chunked(None) => {
                    let mut line = String::new();
                    self.inner.by_ref().take(1024).read_line(&mut line)?;
                    let size = line.trim().split(';').next().unwrap_or("");
                    let size = u64::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
                    if size == 0 {
                        // Trailers, up to the empty line.
                        loop {
                            let mut t = String::new();
                            let n = self.inner.by_ref().take(8192).read_line(&mut t)?;
                            if n == 0 || t.trim().is_empty() {
                                break;
                            }
                        }
                        self.mode = Mode::Done;
                        return Ok(0);
                    }
                    self.mode = Mode::Chunked(Some(size));
                }
                Mode::Chunked(Some(left)) => {
                    let max = (*left).min(buf.len() as u64) as usize;
                    let n = self.inner.read(&mut buf[..max])?;
                    if n == 0 {
                        return Err(bad("connection closed inside a chunk"));
                    }
                    *left -= n as u64;
                    return Ok(n);
                }
            }
        }
    }
}

/// Writes one chunk of a chunked body (nothing for empty data: that would end it).
pub fn write_chunk(w: &mut impl Write, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    w.write_all(&out)?;
    w.flush()
}

/// Ends a chunked body.
pub fn end_chunks(w: &mut impl Write) -> io::Result<()> {
    w.write_all(b"0\r\n\r\n")?;
    w.flush()
}

/// One server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `event:` (empty means "message").
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// `id:`, if any.
    pub id: Option<String>,
}

/// An incremental server-sent-events parser (comments, multi-line data, `id:`, `retry:`).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    cur: Event,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; calls `on_event` for every complete event.
    pub fn feed(&mut self, bytes: &[u8], mut on_event: impl FnMut(Event)) {
        for &b in bytes {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line_done(&line, &mut on_event);
            } else if self.line.len() < MAX_BODY {
                self.line.push(b);
            }
        }
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut impl FnMut(Event)) {
        if line.is_empty() {
            let ev = std::mem::take(&mut self.cur);
            if std::mem::take(&mut self.has_data) {
                on_event(ev);
            }
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.cur.data.push('\n');
                }
                self.cur.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.cur.event = value.to_owned(),
            "id" => self.cur.id = Some(value.to_owned()),
            _ => {} // retry: and unknown fields
        }
    }
}

/// A JSON text as one stdio line: raw CR/LF can only be insignificant whitespace in JSON
/// (inside strings they are escaped), so they become spaces; nothing else changes.
pub fn one_line(json: &[u8]) -> Vec<u8> {
    let trimmed = json.trim_ascii();
    let mut out: Vec<u8> = trimmed
        .iter()
        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
        .collect();
    out.push(b'\n');
    out
}

/// An `http://host:port/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `host:port` as written (for the `Host` header).
    pub authority: String,
    /// Host and port to connect to.
    pub host: String,
    /// The port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses a plain-`http` URL.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h.to_owned(), p.parse().ok()?)
            }
            _ => (authority.to_owned(), 80),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Some(Self {
            authority: authority.to_owned(),
            host,
            port,
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn heads_and_bodies_parse_in_every_framing() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\nNEXT";
        let mut r = BufReader::new(&raw[..]);
        let head = read_head(&mut r).unwrap().unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.content_type(), "text/event-stream");
        let mut body = Body::new(r, &head, false).unwrap();
        assert_eq!(body.read_all().unwrap(), b"hello world");
        let mut rest = String::new();
        body.into_inner().read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");

        let raw = b"POST /mcp HTTP/1.1\r\nHost: x\r\ncontent-length: 3\r\n\r\nabcdef";
        let mut r = BufReader::new(&raw[..]);
        let head = read_head(&mut r).unwrap().unwrap();
        assert_eq!(head.request_line(), ("POST", "/mcp"));
        assert_eq!(head.get("HOST"), Some("x"));
        assert_eq!(
            Body::new(r, &head, true).unwrap().read_all().unwrap(),
            b"abc"
        );

        let raw = b"HTTP/1.1 202 Accepted\r\n\r\n";
        let mut r = BufReader::new(&raw[..]);
        let head = read_head(&mut r).unwrap().unwrap();
        assert_eq!(head.status(), 202);
        assert!(read_head(&mut BufReader::new(&b""[..])).unwrap().is_none());
    }

    #[test]
    fn sse_events_split_anywhere_join_data_lines_and_skip_comments_and_priming() {
        let stream = b": keep-alive\r\nid: 1\r\ndata:\r\n\r\nevent: message\ndata: {\"a\":\ndata: 1}\nid: 2\nretry: 5\n\ndata: x\n\n";
        for split in 0..stream.len() {
            let mut p = SseParser::default();
            let mut got = Vec::new();
            p.feed(&stream[..split], |e| got.push(e));
            p.feed(&stream[split..], |e| got.push(e));
            let data: Vec<&str> = got.iter().map(|e| e.data.as_str()).collect();
            assert_eq!(data, vec!["", "{\"a\":\n1}", "x"], "split at {split}");
            assert_eq!(got[1].id.as_deref(), Some("2"));
            assert_eq!(got[1].event, "message");
        }
    }

    #[test]
    fn one_line_only_touches_insignificant_newlines() {
        assert_eq!(
            one_line(b"{\n  \"a\": \"x\\ny\"\r\n}\n"),
            b"{   \"a\": \"x\\ny\"  }\n".to_vec()
        );
    }

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:8765/mcp?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8765, "/mcp?x=1")
        );
        assert_eq!(u.authority, "127.0.0.1:8765");
        let u = Url::parse("http://localhost").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("localhost", 80, "/")
        );
        let u = Url::parse("http://[::1]:9/m").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        assert!(Url::parse("https://x/").is_none());
        assert!(Url::parse("http://u:p@x/").is_none());
    }
}
