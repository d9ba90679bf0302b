//! Serving a port to a local program that handles many streams (`tern mcp expose`).
//!
//! `serve-port` keeps a listener for as long as its control connection stays open: each
//! stream a peer opens is parked here and announced as a progress line
//! `{"stream": N, "peer": KEY, "from": NAME}`. The program claims it with `take-stream`
//! on a new control connection, which then becomes that stream's raw byte pipe. Parked
//! streams are bounded in number and in time.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tern_driver_mio::Stream;
use tracing::{info, warn};

use super::Daemon;
use super::handlers::{splice, take_port};
use crate::error::{CliError, from_driver};
use crate::ipc::{Reply, write_reply};

/// Most streams waiting to be claimed, over all served ports.
pub const MAX_PARKED: usize = 256;
/// A stream not claimed within this time is dropped (the program died or is stuck).
pub const PARK_TIMEOUT: Duration = Duration::from_secs(15);

/// Streams accepted on served ports, waiting for `take-stream`.
#[derive(Debug, Default)]
pub struct Parked {
    next: AtomicU64,
    streams: Mutex<BTreeMap<u64, (Stream, Instant)>>,
}

impl Parked {
    fn park(&self, s: Stream) -> Option<u64> {
        let mut m = self.streams.lock().ok()?;
        m.retain(|_, (_, at)| at.elapsed() < PARK_TIMEOUT);
        if m.len() >= MAX_PARKED {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        m.insert(id, (s, Instant::now()));
        Some(id)
    }

    fn take(&self, id: u64) -> Option<Stream> {
        self.streams.lock().ok()?.remove(&id).map(|(s, _)| s)
    }
}

/// The process-wide parking lot (one daemon per process).
fn parked() -> &'static Parked {
    static P: std::sync::OnceLock<Parked> = std::sync::OnceLock::new();
    P.get_or_init(Parked::default)
}

/// `serve-port`: listen on `port` until the control connection closes.
pub fn serve_port(d: &Arc<Daemon>, reader: BufReader<UnixStream>, port: u16) {
    let Ok(mut w) = reader.get_ref().try_clone() else {
        return;
    };
    let listener = match take_port(d, port) {
        Ok(l) => l,
        Err(e) => {
            let _ = write_reply(
                &mut w,
                &Reply::Err {
                    ok: false,
                    error: e,
                },
            );
            return;
        }
    };
    if write_reply(
        &mut w,
        &Reply::Progress {
            progress: json!({ "serving": port }),
        },
    )
    .is_err()
    {
        return;
    }
    info!(port, "serving a port for a local program");
    // The program closing its end (or dying) stops the service.
    let closed = Arc::new(AtomicBool::new(false));
    {
        let closed = closed.clone();
        let mut r = reader;
        std::thread::spawn(move || {
            let mut b = [0u8; 64];
            while let Ok(n) = r.get_mut().read(&mut b) {
                if n == 0 {
                    break;
                }
            }
            closed.store(true, Ordering::SeqCst);
        });
    }
    let mut nap = Duration::from_micros(200);
    while !closed.load(Ordering::SeqCst) {
        match listener.try_accept() {
            Ok(Some(stream)) => {
                nap = Duration::from_micros(200);
                let peer = super::stream_peer(d, &stream);
                let name = d.names.lock().ok().and_then(|m| {
                    m.get(&peer)
                        .map(|(h, a)| h.clone().unwrap_or(a.to_string()))
                });
                if name.is_none() {
                    // Learn the name for next time without holding up this stream.
                    let d = d.clone();
                    std::thread::spawn(move || d.label(&peer));
                }
                let Some(id) = parked().park(stream) else {
                    warn!(port, "too many unclaimed streams; refusing one");
                    continue;
                };
                let line = Reply::Progress {
                    progress: json!({ "stream": id, "peer": peer.to_string(), "from": name }),
                };
                if write_reply(&mut w, &line).is_err() {
                    let _ = parked().take(id);
                    break;
                }
            }
            Ok(None) => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(5));
            }
            Err(e) => {
                let _ = write_reply(
                    &mut w,
                    &Reply::Err {
                        ok: false,
                        error: from_driver(&e),
                    },
                );
                break;
            }
        }
    }
    info!(port, "stopped serving the port");
}

/// `take-stream`: hand a parked stream to this connection as a raw pipe.
pub fn take_stream(mut reader: BufReader<UnixStream>, id: u64) {
    let Ok(mut w) = reader.get_ref().try_clone() else {
        return;
    };
    match parked().take(id) {
        None => {
            let _ = write_reply(
                &mut w,
                &Reply::Err {
                    ok: false,
                    error: CliError::new(
                        "NO_SUCH_STREAM",
                        format!("no waiting stream {id}"),
                        "it was claimed already or waited too long",
                    ),
                },
            );
        }
        Some(stream) => {
            let _ = write_reply(
                &mut w,
                &Reply::Ok {
                    ok: true,
                    data: json!({ "stream": id }),
                },
            );
            splice(stream, &mut reader);
        }
    }
}
