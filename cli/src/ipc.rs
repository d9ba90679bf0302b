//! The control protocol between the `tern` command and its daemon, over the daemon's Unix
//! socket (`<home>/daemon.sock`, mode 0600: only its user may talk to it).
//!
//! One request per connection: a JSON line `{"cmd": "...", ...}`. The daemon answers with
//! zero or more progress lines `{"progress": {...}}` and one final line: `{"ok": true,
//! "data": {...}}` or `{"ok": false, "error": {"code", "message", "hint"}}`. For `connect`
//! and `listen`, after a successful final line the connection carries the stream's raw
//! bytes both ways (a half-close of the socket finishes the stream).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CliError;

/// A command for the daemon.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// Identity, address, rendezvous and NAT status.
    Info,
    /// Stop the daemon.
    Shutdown,
    /// Change the published hostname.
    SetHostname {
        /// The new name.
        hostname: String,
    },
    /// Replace the capability tags.
    SetTags {
        /// The tags.
        tags: Vec<String>,
    },
    /// Make the node public or private.
    SetPublic {
        /// Public?
        public: bool,
    },
    /// Look nodes up in the directory.
    Find {
        /// By hostname.
        host: Option<String>,
        /// By tag.
        tag: Option<String>,
        /// By words (hostname, tags, tool names and descriptions).
        words: Option<String>,
    },
    /// Ping a peer `count` times.
    Ping {
        /// Hostname, address or key.
        target: String,
        /// Pings.
        count: u32,
    },
    /// Ask a peer to trust us.
    Handshake {
        /// Hostname, address or key.
        target: String,
        /// A note for its operator.
        note: String,
    },
    /// Trust requests waiting for our decision.
    Pending,
    /// Approve a pending trust request.
    Approve {
        /// Who asked (hostname, address or key).
        target: String,
    },
    /// Reject a pending trust request.
    Reject {
        /// Who asked.
        target: String,
    },
    /// List trusted peers, or trust one directly (without the directory).
    Trust {
        /// The key to trust (none: list).
        target: Option<String>,
    },
    /// Withdraw trust (both ways) and cut sessions.
    Untrust {
        /// Hostname, address or key.
        target: String,
    },
    /// Live sessions.
    Peers,
    /// Open a stream and pipe it through this connection.
    Connect {
        /// Hostname, address or key.
        target: String,
        /// Virtual port.
        port: u16,
    },
    /// Accept one stream on a port and pipe it through this connection.
    Listen {
        /// Virtual port.
        port: u16,
    },
    /// Send one message (a stream with `data`, finished) and return the reply, if any.
    Send {
        /// Hostname, address or key.
        target: String,
        /// Virtual port.
        port: u16,
        /// The message.
        data: String,
    },
    /// Receive `count` messages (whole streams) on a port.
    Recv {
        /// Virtual port.
        port: u16,
        /// How many.
        count: u32,
        /// Give up after this many seconds (0: wait forever).
        timeout_secs: u64,
    },
    /// Send a file (the daemon reads it: same user, same machine).
    SendFile {
        /// Hostname, address or key.
        target: String,
        /// Absolute path.
        path: String,
    },
    /// Throughput and RTT to a peer.
    Bench {
        /// Hostname, address or key.
        target: String,
        /// MiB to send.
        mib: u64,
    },
    /// NAT and rendezvous diagnostics.
    Netcheck,
    /// Publish MCP tools in the directory (used by `tern mcp expose`).
    PublishTools {
        /// (name, description) pairs.
        tools: Vec<(String, String)>,
        /// Tags to add.
        tags: Vec<String>,
    },
}

/// One line of the daemon's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    /// Intermediate progress.
    Progress {
        /// What happened.
        progress: Value,
    },
    /// Final success.
    Ok {
        /// Always true.
        ok: bool,
        /// The result.
        data: Value,
    },
    /// Final failure.
    Err {
        /// Always false.
        ok: bool,
        /// Why.
        error: CliError,
    },
}

/// A connection to the daemon with a request sent.
pub struct Call {
    reader: BufReader<UnixStream>,
}

impl Call {
    /// Connects to the daemon of `socket` and sends `req`.
    pub fn start(socket: &Path, req: &Request) -> Result<Self, CliError> {
        let mut s = UnixStream::connect(socket).map_err(|_| CliError::daemon_not_running())?;
        let mut line = serde_json::to_vec(req).map_err(|e| CliError::internal(e.to_string()))?;
        line.push(b'\n');
        s.write_all(&line)
            .map_err(|_| CliError::daemon_not_running())?;
        Ok(Self {
            reader: BufReader::new(s),
        })
    }

    /// Reads progress lines (handing each to `on_progress`) until the final answer.
    pub fn finish(&mut self, mut on_progress: impl FnMut(&Value)) -> Result<Value, CliError> {
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).map_err(|e| {
                CliError::new(
                    "PROTOCOL",
                    format!("lost the daemon: {e}"),
                    "check the daemon log",
                )
            })?;
            if n == 0 {
                return Err(CliError::new(
                    "PROTOCOL",
                    "the daemon closed the connection without an answer",
                    "check the daemon log (tern daemon status shows where it is)",
                ));
            }
            match serde_json::from_str::<Reply>(&line) {
                Ok(Reply::Progress { progress }) => on_progress(&progress),
                Ok(Reply::Ok { data, .. }) => return Ok(data),
                Ok(Reply::Err { error, .. }) => return Err(error),
                Err(e) => {
                    return Err(CliError::new(
                        "PROTOCOL",
                        format!("unreadable answer from the daemon: {e}"),
                        "the daemon may be another tern version: restart it (tern daemon stop; tern daemon start)",
                    ));
                }
            }
        }
    }

    /// The connection, for raw piping after a successful `connect`/`listen` answer. Bytes
    /// the reader already buffered are returned too.
    pub fn into_raw(self) -> (UnixStream, Vec<u8>) {
        let buffered = self.reader.buffer().to_vec();
        (self.reader.into_inner(), buffered)
    }
}

/// Sends `req` and waits for the final answer, ignoring progress.
pub fn call(socket: &Path, req: &Request) -> Result<Value, CliError> {
    Call::start(socket, req)?.finish(|_| {})
}

/// Whether a daemon answers on `socket` within `timeout`.
pub fn ping_daemon(socket: &Path, timeout: Duration) -> bool {
    let Ok(s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let mut c = Call {
        reader: BufReader::new(s),
    };
    let mut line = serde_json::to_vec(&Request::Info).unwrap_or_default();
    line.push(b'\n');
    if c.reader.get_mut().write_all(&line).is_err() {
        return false;
    }
    c.finish(|_| {}).is_ok()
}

/// Writes one reply line.
pub fn write_reply(w: &mut impl Write, r: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_have_stable_json() {
        let r = Request::Ping {
            target: "bravo".into(),
            count: 3,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"cmd":"ping","target":"bravo","count":3}"#
        );
        let back: Request =
            serde_json::from_str(r#"{"cmd":"set-hostname","hostname":"x"}"#).unwrap();
        assert_eq!(
            back,
            Request::SetHostname {
                hostname: "x".into()
            }
        );
        let e: Reply = serde_json::from_str(
            r#"{"ok":false,"error":{"code":"HOST_NOT_FOUND","message":"m","hint":"h"}}"#,
        )
        .unwrap();
        assert!(matches!(e, Reply::Err { error, .. } if error.code == "HOST_NOT_FOUND"));
        let p: Reply = serde_json::from_str(r#"{"progress":{"bytes":5}}"#).unwrap();
        assert!(matches!(p, Reply::Progress { .. }));
    }
}
