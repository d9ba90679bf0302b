//! Control-socket requests: one thread per connection, one request per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tern_core::rendezvous::msg::{Request as RdvRequest, Response as RdvResponse};
use tern_core::{PathInfo, PeerId};

use super::{BENCH_PORT, Daemon, directory_error, parse_target};
use crate::error::{CliError, from_driver};
use crate::ipc::{Reply, Request, write_reply};

/// Serves one control connection.
pub fn serve(d: &Arc<Daemon>, conn: UnixStream) {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.len() > 1 << 20 {
        return;
    }
    let Ok(mut w) = reader.get_ref().try_clone() else {
        return;
    };
    let req: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            let _ = write_reply(
                &mut w,
                &err(CliError::new(
                    "PROTOCOL",
                    format!("bad request: {e}"),
                    "use the tern command of the same version",
                )),
            );
            return;
        }
    };
    let shutdown = matches!(req, Request::Shutdown);
    let mut progress = |v: Value| {
        let _ = write_reply(
            &mut w.try_clone().expect("socket"),
            &Reply::Progress { progress: v },
        );
    };
    let result = match req {
        Request::Connect { target, port } => return pipe(d, reader, &target, Some(port)),
        Request::Listen { port } => return pipe_listen(d, reader, port),
        other => handle(d, other, &mut progress),
    };
    let reply = match result {
        Ok(data) => Reply::Ok { ok: true, data },
        Err(e) => err(e),
    };
    let _ = write_reply(&mut w, &reply);
    if shutdown {
        super::shutdown(d);
        std::process::exit(0);
    }
}

fn err(e: CliError) -> Reply {
    Reply::Err {
        ok: false,
        error: e,
    }
}

fn handle(
    d: &Arc<Daemon>,
    req: Request,
    progress: &mut dyn FnMut(Value),
) -> Result<Value, CliError> {
    match req {
        Request::Info => info(d),
        Request::Shutdown => Ok(json!({ "stopping": true })),
        Request::SetHostname { hostname } => {
            tern_core::rendezvous::record::validate_hostname(&hostname).map_err(|e| {
                CliError::invalid(e.to_string(), "use a-z, 0-9 and '-', at most 63 characters")
            })?;
            let before = lock(d)?.hostname.clone();
            lock(d)?.hostname = Some(hostname.clone());
            match register_now(d) {
                Ok(v) => {
                    d.home.save_settings(&*lock(d)?)?;
                    Ok(v)
                }
                Err(e) => {
                    lock(d)?.hostname = before;
                    let _ = d.publish();
                    Err(e)
                }
            }
        }
        Request::SetTags { tags } => {
            for t in &tags {
                tern_core::rendezvous::record::validate_tag(t).map_err(|e| {
                    CliError::invalid(
                        e.to_string(),
                        "use a-z, 0-9, '-', '_' and '.', at most 32 characters",
                    )
                })?;
            }
            lock(d)?.tags = tags;
            d.home.save_settings(&*lock(d)?)?;
            register_now(d)
        }
        Request::SetPublic { public } => {
            lock(d)?.public = public;
            d.home.save_settings(&*lock(d)?)?;
            let policy = if public {
                tern_core::IncomingPolicy::AcceptAll
            } else {
                tern_core::IncomingPolicy::TrustedOnly
            };
            let _ = policy; // takes effect at the next daemon start for the handshake policy
            register_now(d)
        }
        Request::PublishTools { tools, tags } => {
            {
                let mut s = lock(d)?;
                s.tools = tools;
                for t in tags {
                    if !s.tags.contains(&t) {
                        s.tags.push(t);
                    }
                }
            }
            d.home.save_settings(&*lock(d)?)?;
            register_now(d)
        }
        Request::Find { host, tag, words } => find(d, host, tag, words),
        Request::Ping { target, count } => ping(d, &target, count, progress),
        Request::Handshake { target, note } => {
            let q = parse_target(&target)?;
            match d.ask(RdvRequest::TrustRequest { target: q, note })? {
                RdvResponse::Ok => Ok(json!({ "requested": target })),
                RdvResponse::Error { code, message } => {
                    Err(directory_error(code, &message, &target))
                }
                other => Err(CliError::internal(format!("unexpected {other:?}"))),
            }
        }
        Request::Pending => match d.ask(RdvRequest::Pending)? {
            RdvResponse::Pending(list) => Ok(Value::Array(
                list.iter()
                    .map(|p| {
                        json!({
                            "peer": p.from.peer.to_string(),
                            "hostname": p.from.hostname,
                            "address": p.from.address.to_string(),
                            "note": p.note,
                            "time_ms": p.time_ms,
                        })
                    })
                    .collect(),
            )),
            RdvResponse::Error { code, message } => Err(directory_error(code, &message, "pending")),
            other => Err(CliError::internal(format!("unexpected {other:?}"))),
        },
        Request::Approve { target } => decide(d, &target, true),
        Request::Reject { target } => decide(d, &target, false),
        Request::Trust { target: None } => {
            let list =
                d.ep.with_node(|n, _| n.trusted_peers())
                    .map_err(|e| from_driver(&e))?;
            Ok(Value::Array(
                list.iter()
                    .map(|p| json!({ "peer": p.to_string(), "name": d.label(p) }))
                    .collect(),
            ))
        }
        Request::Trust { target: Some(t) } => {
            let peer = peer_of(d, &t)?;
            d.ep.with_node(move |n, now| n.set_trusted(now, peer, true))
                .map_err(|e| from_driver(&e))?;
            d.save_trust()?;
            Ok(json!({ "trusted": peer.to_string() }))
        }
        Request::Untrust { target } => {
            let peer = peer_of(d, &target)?;
            // Directory (both ways, the peer is told) and locally (sessions are cut).
            let _ = d.ask(RdvRequest::Revoke { peer });
            d.ep.with_node(move |n, now| n.set_trusted(now, peer, false))
                .map_err(|e| from_driver(&e))?;
            d.save_trust()?;
            Ok(json!({ "untrusted": peer.to_string() }))
        }
        Request::Peers => peers(d),
        Request::Send { target, port, data } => send(d, &target, port, data.as_bytes()),
        Request::Recv {
            port,
            count,
            timeout_secs,
        } => recv(d, port, count, timeout_secs, progress),
        Request::SendFile { target, path } => send_file(d, &target, &path, progress),
        Request::Bench { target, mib } => bench(d, &target, mib, progress),
        Request::Netcheck => netcheck(d),
        Request::Connect { .. } | Request::Listen { .. } => {
            Err(CliError::internal("handled elsewhere"))
        }
    }
}

fn lock(d: &Daemon) -> Result<std::sync::MutexGuard<'_, crate::home::Settings>, CliError> {
    d.settings
        .lock()
        .map_err(|_| CliError::internal("settings lock poisoned"))
}

/// Re-registers and waits for the directory's verdict (hostname conflicts surface here).
fn register_now(d: &Daemon) -> Result<Value, CliError> {
    let reg = {
        let s = lock(d)?;
        tern_core::rendezvous::Registration {
            hostname: s.hostname.clone(),
            tags: s.tags.clone(),
            tools: s
                .tools
                .iter()
                .map(|(n, x)| tern_core::rendezvous::Tool::new(n.clone(), x))
                .collect(),
            public: s.public,
            candidates: Vec::new(),
        }
    };
    let r = d.ask(RdvRequest::Register(reg.clone()))?;
    match r {
        RdvResponse::Registered { record } => {
            d.publish()?;
            Ok(json!({ "address": record.address.to_string(), "hostname": record.hostname }))
        }
        RdvResponse::Error { code, message } => Err(directory_error(
            code,
            &message,
            reg.hostname.as_deref().unwrap_or(""),
        )),
        other => Err(CliError::internal(format!("unexpected {other:?}"))),
    }
}

fn info(d: &Daemon) -> Result<Value, CliError> {
    let (peer, status, stats, sessions) =
        d.ep.with_node(|n, _| {
            (
                n.peer_id(),
                n.rendezvous_status(),
                *n.stats(),
                n.sessions().count(),
            )
        })
        .map_err(|e| from_driver(&e))?;
    let s = lock(d)?.clone();
    let record = status.as_ref().and_then(|st| st.record.clone());
    let address = record
        .as_ref()
        .map_or_else(|| peer.default_address(), |r| r.address);
    Ok(json!({
        "pid": std::process::id(),
        "address": address.to_string(),
        "registered": record.is_some(),
        "hostname": s.hostname,
        "peer_id": peer.to_string(),
        "tags": s.tags,
        "public": s.public,
        "listen": d.ep.local_addr().to_string(),
        "rendezvous": d.rdv.to_string(),
        "rendezvous_connected": status.as_ref().is_some_and(|st| st.connected),
        "hosting_local_rendezvous": d.hosting.lock().map(|h| h.is_some()).unwrap_or(false),
        "observed": status.as_ref().map(|st| st.observed.iter().flatten().map(ToString::to_string).collect::<Vec<_>>()),
        "sessions": sessions,
        "uptime_secs": d.started.elapsed().as_secs(),
        "encryption": "Noise IK/XX (X25519) + AES-256-GCM/ChaCha20-Poly1305",
        "received_dir": d.home.received(),
        "dropped_packets": stats.drops.total(),
    }))
}

fn find(
    d: &Daemon,
    host: Option<String>,
    tag: Option<String>,
    words: Option<String>,
) -> Result<Value, CliError> {
    if let Some(h) = host {
        let q = parse_target(&h)?;
        return match d.ask(RdvRequest::Resolve(q))? {
            RdvResponse::Resolved(e) => Ok(Value::Array(vec![entry_json(&e)])),
            RdvResponse::Error { code, message } => Err(directory_error(code, &message, &h)),
            other => Err(CliError::internal(format!("unexpected {other:?}"))),
        };
    }
    let words = match (tag, words) {
        (Some(t), _) => format!("tag:{t}"),
        (None, Some(w)) => w,
        (None, None) => {
            return Err(CliError::invalid(
                "nothing to find",
                "tern find <host> | tern find --tag <cap>",
            ));
        }
    };
    match d.ask(RdvRequest::Find {
        words: words.clone(),
        limit: 64,
    })? {
        RdvResponse::Found(v) => Ok(Value::Array(v.iter().map(entry_json).collect())),
        RdvResponse::Error { code, message } => Err(directory_error(code, &message, &words)),
        other => Err(CliError::internal(format!("unexpected {other:?}"))),
    }
}

fn entry_json(e: &tern_core::rendezvous::Entry) -> Value {
    json!({
        "hostname": e.record.hostname,
        "address": e.record.address.to_string(),
        "peer": e.record.peer.to_string(),
        "tags": e.tags,
        "tools": e.tools.iter().map(|t| json!({"name": t.name, "description": t.description})).collect::<Vec<_>>(),
        "public": e.public,
        "online": e.online,
    })
}

/// The peer for a target; a key works even when the directory does not know it.
fn peer_of(d: &Daemon, target: &str) -> Result<PeerId, CliError> {
    if let Ok(tern_core::rendezvous::Query::Peer(p)) = parse_target(target) {
        return Ok(p);
    }
    Ok(d.resolve(target)?.0)
}

fn decide(d: &Daemon, target: &str, approve: bool) -> Result<Value, CliError> {
    let requester = match parse_target(target)? {
        tern_core::rendezvous::Query::Peer(p) => p,
        _ => {
            // A pending requester may be private: find it in our pending list by name.
            let RdvResponse::Pending(list) = d.ask(RdvRequest::Pending)? else {
                return Err(CliError::internal("unexpected pending answer"));
            };
            list.iter()
                .find(|p| {
                    p.from.hostname.as_deref() == Some(target)
                        || p.from.address.to_string() == target
                })
                .map(|p| p.from.peer)
                .ok_or_else(|| {
                    CliError::new(
                        "NO_SUCH_REQUEST",
                        format!("no pending trust request from {target:?}"),
                        "tern pending lists them",
                    )
                })?
        }
    };
    match d.ask(RdvRequest::TrustDecision { requester, approve })? {
        RdvResponse::Ok => {
            d.save_trust()?;
            Ok(json!({ "peer": requester.to_string(), "approved": approve }))
        }
        RdvResponse::Error {
            code: tern_core::rendezvous::ErrorCode::NotFound,
            ..
        } => Err(CliError::new(
            "NO_SUCH_REQUEST",
            format!("no pending trust request from {target:?}"),
            "tern pending lists them",
        )),
        RdvResponse::Error { code, message } => Err(directory_error(code, &message, target)),
        other => Err(CliError::internal(format!("unexpected {other:?}"))),
    }
}

fn path_name(p: PathInfo) -> &'static str {
    match p {
        PathInfo::Direct(_) => "direct",
        _ => "relayed",
    }
}

fn ping(
    d: &Daemon,
    target: &str,
    count: u32,
    progress: &mut dyn FnMut(Value),
) -> Result<Value, CliError> {
    let (peer, host, address) = d.resolve(target)?;
    let session = d.session(peer)?;
    let mut rtts = Vec::new();
    for i in 0..count.max(1) {
        let rtt = session.ping().map_err(|e| from_driver(&e))?;
        let path = session
            .info()
            .map(|i| path_name(i.path))
            .unwrap_or("relayed");
        rtts.push(rtt.as_secs_f64() * 1e3);
        progress(
            json!({ "seq": i, "address": address.to_string(), "hostname": host, "rtt_ms": rtt.as_secs_f64() * 1e3, "path": path }),
        );
        if i + 1 < count {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let path = session
        .info()
        .map(|i| path_name(i.path))
        .unwrap_or("relayed");
    let mut sorted = rtts.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(json!({
        "address": address.to_string(),
        "hostname": host,
        "peer": peer.to_string(),
        "replies": rtts.len(),
        "rtt_ms": rtts,
        "median_ms": sorted[sorted.len() / 2],
        "path": path,
    }))
}

fn peers(d: &Daemon) -> Result<Value, CliError> {
    let list = d.ep.sessions().map_err(|e| from_driver(&e))?;
    let rdv_key = d.rdv.key;
    Ok(Value::Array(
        list.iter()
            .filter(|s| s.peer.is_some_and(|p| p != rdv_key))
            .map(|s| {
                let peer = s.peer.unwrap_or(PeerId::from_bytes([0; 32]));
                json!({
                    "peer": peer.to_string(),
                    "name": d.label(&peer),
                    "path": path_name(s.path),
                    "remote": match s.path { PathInfo::Direct(a) => a.to_string(), _ => "relay".into() },
                    "rtt_ms": s.rtt.map(|r| r.as_secs_f64() * 1e3),
                    "encryption": s.aead.map(|a| a.name()),
                    "initiator": s.initiator,
                    "state": format!("{:?}", s.state),
                })
            })
            .collect(),
    ))
}

fn send(d: &Daemon, target: &str, port: u16, data: &[u8]) -> Result<Value, CliError> {
    let (peer, ..) = d.resolve(target)?;
    let session = d.session(peer)?;
    let mut s = session.open_stream(port).map_err(|e| from_driver(&e))?;
    s.write_all(data).map_err(|e| from_driver(&e))?;
    s.finish().map_err(|e| from_driver(&e))?;
    // A reply, if the service answers (the echo does); bounded.
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if reply.len() > 1 << 20 {
                    break;
                }
            }
            Err(e) => return Err(from_driver(&e)),
        }
    }
    Ok(json!({ "sent": data.len(), "reply": String::from_utf8_lossy(&reply) }))
}

fn take_port(d: &Daemon, port: u16) -> Result<tern_driver_mio::Listener, CliError> {
    if port == crate::files::FILE_PORT || port == BENCH_PORT || port == 7 || port == 1 {
        return Err(CliError::new(
            "PORT_IN_USE",
            format!("port {port} is a built-in service"),
            "pick another port",
        ));
    }
    d.ep.listen(port).map_err(|e| match e {
        tern_driver_mio::Error::Listen(_) => CliError::new(
            "PORT_IN_USE",
            format!("port {port} is already in use"),
            "pick another port or stop the other listener",
        ),
        e => from_driver(&e),
    })
}

fn recv(
    d: &Daemon,
    port: u16,
    count: u32,
    timeout_secs: u64,
    progress: &mut dyn FnMut(Value),
) -> Result<Value, CliError> {
    let listener = take_port(d, port)?;
    let mut out = Vec::new();
    for _ in 0..count.max(1) {
        let stream = if timeout_secs == 0 {
            listener.accept().map_err(|e| from_driver(&e))?
        } else {
            accept_within(&listener, Duration::from_secs(timeout_secs))?
        };
        let from = d.label(&super::stream_peer(d, &stream));
        let mut stream = stream;
        let mut data = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    data.extend_from_slice(&buf[..n]);
                    if data.len() > 16 << 20 {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let msg = json!({ "from": from, "port": port, "data": String::from_utf8_lossy(&data) });
        progress(msg.clone());
        out.push(msg);
    }
    Ok(Value::Array(out))
}

fn accept_within(
    l: &tern_driver_mio::Listener,
    timeout: Duration,
) -> Result<tern_driver_mio::Stream, CliError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = l.try_accept().map_err(|e| from_driver(&e))? {
            return Ok(s);
        }
        if Instant::now() > deadline {
            return Err(CliError::new(
                "TIMEOUT",
                "nothing arrived in time",
                "raise --timeout, or check the sender",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send_file(
    d: &Daemon,
    target: &str,
    path: &str,
    progress: &mut dyn FnMut(Value),
) -> Result<Value, CliError> {
    let p = std::path::Path::new(path);
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            CliError::new(
                "FILE_ERROR",
                format!("{path} is not a file"),
                "give the path of a file",
            )
        })?
        .to_owned();
    if !p.is_file() {
        return Err(CliError::new(
            "FILE_ERROR",
            format!("{path} is not a readable file"),
            "check the path",
        ));
    }
    let (peer, ..) = d.resolve(target)?;
    let session = d.session(peer)?;
    let stream = session
        .open_stream(crate::files::FILE_PORT)
        .map_err(|e| from_driver(&e))?;
    let start = Instant::now();
    let mut last = Instant::now();
    let (saved, size, sha) = crate::files::send(
        stream,
        p,
        &name,
        |sent, total| {
            if last.elapsed() > Duration::from_millis(100) || sent == total {
                last = Instant::now();
                progress(json!({ "sent": sent, "total": total }));
            }
        },
        |s| s.finish().map_err(|e| from_driver(&e)),
    )?;
    let secs = start.elapsed().as_secs_f64();
    Ok(
        json!({ "name": saved, "bytes": size, "sha256": sha, "seconds": secs, "mib_per_s": size as f64 / (1 << 20) as f64 / secs.max(1e-9) }),
    )
}

fn bench(
    d: &Daemon,
    target: &str,
    mib: u64,
    progress: &mut dyn FnMut(Value),
) -> Result<Value, CliError> {
    let (peer, ..) = d.resolve(target)?;
    let session = d.session(peer)?;
    // RTT: a few pings.
    let mut rtts: Vec<f64> = (0..5)
        .map(|_| {
            session
                .ping()
                .map(|r| r.as_secs_f64() * 1e3)
                .map_err(|e| from_driver(&e))
        })
        .collect::<Result<_, _>>()?;
    rtts.sort_by(f64::total_cmp);
    let mut s = session
        .open_stream(BENCH_PORT)
        .map_err(|e| from_driver(&e))?;
    let chunk = vec![0x5au8; 1 << 16];
    let total = mib.max(1) << 20;
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n]).map_err(|e| from_driver(&e))?;
        sent += n as u64;
        if sent % (8 << 20) == 0 {
            progress(json!({ "sent": sent, "total": total }));
        }
    }
    s.finish().map_err(|e| from_driver(&e))?;
    let mut ack = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        match s.read(&mut ack[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(from_driver(&e)),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let received = u64::from_be_bytes(ack);
    if received != total {
        return Err(CliError::new(
            "CONNECTION_LOST",
            format!("the peer counted {received} of {total} bytes"),
            "try again",
        ));
    }
    let path = session
        .info()
        .map(|i| path_name(i.path))
        .unwrap_or("relayed");
    Ok(json!({
        "bytes": total,
        "seconds": secs,
        "mib_per_s": total as f64 / (1 << 20) as f64 / secs,
        "rtt_ms_median": rtts[rtts.len() / 2],
        "path": path,
    }))
}

fn netcheck(d: &Daemon) -> Result<Value, CliError> {
    let (status, local) =
        d.ep.with_node(|n, _| (n.rendezvous_status(), n.peer_id()))
            .map_err(|e| from_driver(&e))?;
    let _ = local;
    let st = status.ok_or_else(|| {
        CliError::new(
            "NO_RENDEZVOUS",
            "no rendezvous configured",
            "start the daemon with --rendezvous ADDR#KEY",
        )
    })?;
    let mapping = match st.endpoint_dependent_mapping() {
        Some(false) => "endpoint-independent (hole punching works with most peers)",
        Some(true) => {
            "endpoint-dependent (hard NAT: direct only with port prediction or to easy NATs)"
        }
        None => "unknown (one observation so far)",
    };
    let relay_rtt = st.session.and_then(|s| {
        let sess = d.ep.sessions().ok()?.into_iter().find(|i| i.id == s)?;
        sess.rtt
    });
    Ok(json!({
        "rendezvous": d.rdv.to_string(),
        "connected": st.connected,
        "reflexive": st.observed.iter().flatten().map(ToString::to_string).collect::<Vec<_>>(),
        "nat_mapping": mapping,
        "local": d.ep.local_addr().to_string(),
        "relay_rtt_ms": relay_rtt.map(|r| r.as_secs_f64() * 1e3),
        "udp": if st.connected { "works" } else { "no answer from the rendezvous over UDP" },
    }))
}

// ---- raw pipes ----

fn pipe(d: &Arc<Daemon>, mut reader: BufReader<UnixStream>, target: &str, port: Option<u16>) {
    let setup = (|| -> Result<(tern_driver_mio::Stream, Value), CliError> {
        let (peer, host, address) = d.resolve(target)?;
        let session = d.session(peer)?;
        let port = port.unwrap_or(0);
        let s = session.open_stream(port).map_err(|e| from_driver(&e))?;
        Ok((
            s,
            json!({ "connected": address.to_string(), "hostname": host, "port": port }),
        ))
    })();
    let mut w = reader.get_ref().try_clone().expect("socket");
    match setup {
        Err(e) => {
            let _ = write_reply(&mut w, &err(e));
        }
        Ok((stream, data)) => {
            let _ = write_reply(&mut w, &Reply::Ok { ok: true, data });
            splice(stream, &mut reader);
        }
    }
}

fn pipe_listen(d: &Arc<Daemon>, mut reader: BufReader<UnixStream>, port: u16) {
    let mut w = reader.get_ref().try_clone().expect("socket");
    let listener = match take_port(d, port) {
        Ok(l) => l,
        Err(e) => {
            let _ = write_reply(&mut w, &err(e));
            return;
        }
    };
    // Tell the client we listen, then wait for one stream.
    let _ = write_reply(
        &mut w,
        &Reply::Progress {
            progress: json!({ "listening": port }),
        },
    );
    match listener.accept() {
        Ok(stream) => {
            let from = d.label(&super::stream_peer(d, &stream));
            let _ = write_reply(
                &mut w,
                &Reply::Ok {
                    ok: true,
                    data: json!({ "from": from, "port": port }),
                },
            );
            drop(listener);
            splice(stream, &mut reader);
        }
        Err(e) => {
            let _ = write_reply(&mut w, &err(from_driver(&e)));
        }
    }
}

/// Copies bytes both ways between the control connection and a tern stream until both
/// directions end.
fn splice(stream: tern_driver_mio::Stream, reader: &mut BufReader<UnixStream>) {
    let mut to_peer = stream.try_clone();
    let mut from_peer = stream;
    let Ok(mut sock_w) = reader.get_ref().try_clone() else {
        return;
    };
    let down = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match from_peer.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sock_w.write_all(&buf[..n]).is_err() {
                        let _ = from_peer.stop(0);
                        break;
                    }
                }
            }
        }
        let _ = sock_w.shutdown(std::net::Shutdown::Write);
    });
    // Bytes the line reader already buffered belong to the stream.
    let buffered = reader.buffer().to_vec();
    reader.consume(buffered.len());
    if !buffered.is_empty() && to_peer.write_all(&buffered).is_err() {
        return;
    }
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match reader.get_mut().read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to_peer.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to_peer.finish();
    let _ = down.join();
}
