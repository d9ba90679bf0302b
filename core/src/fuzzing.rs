//! Fuzz-target bodies, shared by the `fuzz/` crate (libFuzzer) and by a plain `cargo test`
//! that replays the committed corpora in `fuzz/corpus/<target>/` on stable. Each function
//! panics only when an invariant is broken; every input, however malformed, must pass.
//! Not part of the stable API (enabled by the `fuzzing` feature).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::Unstructured;

use crate::crypto::cookie;
use crate::crypto::replay::{ReplayWindow, WINDOW};
use crate::wire::codec::Writer;
use crate::wire::frame::{Frame, frames};
use crate::wire::header::{self, COOKIE_LEN, Header};
use crate::{Config, Event, Identity, Node};

mod node_streams;
mod transport;
pub use node_streams::node_streams;
#[cfg(test)]
pub(crate) use transport::{StreamPair, pattern};
pub use transport::{congestion, epoch, recv_reassembly, sack_ranges, streams_ops};

/// `wire_decode`: header and frame parsers never panic, and whatever parses re-encodes to
/// something that parses back to the same value with the advertised length.
pub fn wire_decode(data: &[u8]) {
    if let Ok(h) = header::parse(data) {
        let mut out = [0u8; 2048];
        match h {
            Header::Init(init) => {
                let n = header::write_init(
                    &mut out,
                    init.suite,
                    init.aead_offer,
                    init.sender,
                    init.cookie.as_ref(),
                    init.mac1.is_some(),
                    init.noise,
                    header::INIT_MIN_LEN,
                );
                if let Ok(n) = n {
                    let total = n + if init.mac1.is_some() { COOKIE_LEN } else { 0 };
                    if let Ok(Header::Init(again)) = header::parse(&out[..total]) {
                        assert_eq!(again.sender, init.sender);
                        assert_eq!(again.noise, init.noise);
                        assert_eq!(again.cookie, init.cookie);
                    } else {
                        panic!("re-encoded init does not parse");
                    }
                }
            }
            Header::Response { receiver, noise } | Header::Final { receiver, noise } => {
                let ty = data[0];
                let n = header::write_handshake(&mut out, ty, receiver, noise).expect("fits");
                assert_eq!(&out[..n], data, "handshake header round trip");
            }
            Header::Cookie { receiver, cookie } => {
                let n = header::write_cookie(&mut out, receiver, &cookie).expect("fits");
                assert_eq!(&out[..n], data);
            }
            Header::Reject { receiver, reason } => {
                let n = header::write_reject(&mut out, receiver, reason).expect("fits");
                assert_eq!(&out[..n], data);
            }
            Header::Reset { index, token } => {
                let n = header::write_reset(&mut out, index, &token).expect("fits");
                assert_eq!(&out[..n], data);
            }
            Header::Data { .. } => {}
        }
    }
    // Frames: parse, re-encode each, parse again.
    let mut consumed = 0usize;
    for f in frames(data) {
        let Ok(f) = f else { break };
        consumed += f.encoded_len();
        let mut out = [0u8; 4096];
        let mut w = Writer::new(&mut out);
        f.encode(&mut w).expect("a parsed frame re-encodes");
        let n = w.len();
        if let Frame::Stream { .. } = f {
            // STREAM frames re-encode with an explicit length, which may differ in size.
        } else {
            assert_eq!(n, f.encoded_len(), "{f:?}");
        }
        if let Frame::Candidates { data } = f
            && let Some(h) = crate::nat::Hints::decode(data)
        {
            let mut hb = [0u8; 512];
            let mut hw = Writer::new(&mut hb);
            h.encode(&mut hw).expect("hints fit");
            let hn = hw.len();
            assert_eq!(crate::nat::Hints::decode(&hb[..hn]), Some(h));
        }
        let again: Vec<_> = frames(&out[..n]).collect();
        assert_eq!(again.len(), 1, "{f:?}");
        assert_eq!(again[0], Ok(f));
    }
    assert!(consumed <= data.len() || data.is_empty() || consumed > 0);
}

/// `replay_window`: the bitmap window accepts exactly what an exact set model within the
/// window accepts.
pub fn replay_window(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut w = ReplayWindow::new();
    let mut seen = BTreeSet::new();
    let mut next = 0u64;
    // `Unstructured` yields defaults once exhausted, so loop on remaining input.
    while !u.is_empty() {
        let Ok((kind, delta)) = u.arbitrary::<(u8, u16)>() else {
            break;
        };
        let c = match kind % 4 {
            0 => next.saturating_add(u64::from(delta)),
            1 => next.saturating_sub(u64::from(delta)),
            2 => next.saturating_sub(u64::from(delta % 64)),
            _ => u64::from(delta) << (kind % 40),
        };
        let expect = !seen.contains(&c) && (c >= next || next - c <= WINDOW);
        assert_eq!(w.check(c), expect, "check {c} next {next}");
        assert_eq!(w.update(c), expect, "update {c} next {next}");
        if expect {
            seen.insert(c);
            next = next.max(c + 1);
        }
        assert_eq!(w.next_expected(), next);
    }
}

/// `rendezvous_msg`: the rendezvous decoder never panics, and decoded responses and pushes
/// re-encode to the same bytes. The same bytes also feed the stream framing (split at
/// arbitrary points, and written back through `FrameWriter` with a stingy stream) and the
/// CANDIDATES hints: whatever decodes re-encodes identically, and the probe plan and
/// schedule built from it stay within their bounds whatever the peer claims.
pub fn rendezvous_msg(data: &[u8]) {
    use crate::rendezvous::channel::{FrameReader, FrameWriter};
    use crate::rendezvous::msg::Message;
    // The stream framing around messages: arbitrary bytes never panic the reader, and it
    // never holds more than two maximal messages.
    let split = 1 + data.first().map_or(7, |b| usize::from(*b % 31));
    let mut reader = FrameReader::new();
    let mut messages = Vec::new();
    for chunk in data.chunks(split) {
        if reader.push(chunk).is_err() {
            break;
        }
        while let Ok(Some(m)) = reader.next_message() {
            let _ = Message::decode(&m);
            messages.push(m);
        }
    }
    // Whatever came out goes back through a writer and a stream that takes few bytes at a
    // time, and reassembles to the same messages.
    let mut writer = FrameWriter::new();
    for m in &messages {
        assert!(writer.push(m) || m.len() > crate::rendezvous::msg::MAX_MESSAGE);
    }
    let mut wire = Vec::new();
    while !writer.is_empty() {
        writer.flush(|b| {
            let n = b.len().min(split);
            wire.extend_from_slice(&b[..n]);
            n
        });
    }
    let mut again = FrameReader::new();
    let mut back = Vec::new();
    for chunk in wire.chunks(split.max(3)) {
        again.push(chunk).expect("re-framed messages fit");
        while let Ok(Some(m)) = again.next_message() {
            back.push(m);
        }
    }
    assert_eq!(back, messages, "framing round trip");
    hints(data);
    let Some(msg) = Message::decode(data) else {
        return;
    };
    let mut out = vec![0u8; crate::rendezvous::msg::MAX_MESSAGE];
    match &msg {
        Message::Response { req_id, body } => {
            let n = Message::encode_response(*req_id, body, &mut out).expect("re-encodes");
            assert_eq!(Message::decode(&out[..n]), Some(msg.clone()));
        }
        Message::Push(p) => {
            let n = Message::encode_push(p, &mut out).expect("re-encodes");
            assert_eq!(Message::decode(&out[..n]), Some(msg.clone()));
        }
        Message::Request(_) => {}
    }
}

/// The CANDIDATES hints in `data` (if they decode): round trip, and bounded plans and
/// schedules against every kind of local NAT.
fn hints(data: &[u8]) {
    use crate::nat::{self, Hints, Mapping, ProbeBudget, Punch};
    let Some(peer) = Hints::decode(data) else {
        return;
    };
    let mut buf = [0u8; 512];
    let mut w = Writer::new(&mut buf);
    peer.encode(&mut w).expect("hints fit");
    let n = w.len();
    assert_eq!(Hints::decode(&buf[..n]).as_ref(), Some(&peer));
    let sockets: Vec<SocketAddr> = (0..300u16)
        .map(|p| SocketAddr::from(([10, 0, 0, 1], 40_000 + p)))
        .collect();
    let mut rng = crate::rng::NodeRng::new([7; 32]);
    for (mapping, step) in [
        (Mapping::Public, 0),
        (Mapping::EndpointIndependent, 0),
        (Mapping::EndpointDependent, 1),
        (Mapping::EndpointDependent, 20_000),
        (Mapping::Unknown, 0),
    ] {
        let ours = Hints {
            mapping,
            port_step: step,
            next_port: 0,
            epoch: 0,
            local_port: 4000,
            punch_sockets: sockets.len() as u16,
            host: vec![SocketAddr::from(([10, 0, 0, 1], 4000))],
            reflexive: vec![SocketAddr::from(([192, 0, 2, 1], 4000))],
        };
        let plan = nat::plan(&peer, &ours, sockets.len(), &mut rng);
        assert!(
            plan.candidates.len() <= nat::MAX_CANDIDATES + nat::PREDICT_SPAN as usize + 1,
            "{plan:?}"
        );
        assert!(plan.spray.len() <= nat::BIRTHDAY_PROBES);
        let peer_ips: BTreeSet<std::net::IpAddr> = peer
            .host
            .iter()
            .chain(&peer.reflexive)
            .map(SocketAddr::ip)
            .collect();
        for a in plan
            .candidates
            .iter()
            .chain(&plan.spray)
            .chain(&plan.socket_target)
        {
            assert!(
                peer_ips.contains(&a.ip()),
                "{a} is not one of the peer's addresses"
            );
        }
        assert!(plan.spray_delay <= Duration::from_secs(5));
        // The schedule: bounded, paced, and it ends.
        #[allow(clippy::disallowed_methods)] // a base instant for the schedule
        let t0 = Instant::now();
        let mut punch = Punch::new(t0, [1; 8], &plan, sockets.len());
        let mut budget = ProbeBudget::default();
        let (mut now, mut sent, mut last) = (t0, 0usize, None);
        while !punch.is_done(now) {
            if punch.poll(now, &mut budget, &sockets).is_some() {
                sent += 1;
                if let Some(l) = last {
                    assert!(now - l >= nat::punch::PROBE_INTERVAL);
                }
                last = Some(now);
            }
            now = punch.next_timeout().unwrap_or(punch.deadline()).max(now);
            assert!(now - t0 < Duration::from_secs(60), "the attempt ends");
            if punch.next_timeout().is_none() {
                now = punch.deadline();
            }
        }
        assert!(sent <= nat::punch::MAX_PROBES);
    }
}

/// `rendezvous_server`: arbitrary (mostly validly signed) requests from a handful of
/// identities, with time steps, connects from arbitrary addresses, disconnects and relay
/// requests, never panic the server, always get a decodable answer, never make a private
/// node visible to a peer it does not trust, and never let one client relay more than its
/// byte quota.
pub fn rendezvous_server(data: &[u8]) {
    use crate::rendezvous::msg::{Message, Query, Registration, Request, Response};
    use crate::rendezvous::{Server, ServerConfig};
    let mut u = Unstructured::new(data);
    let server_id = Identity::from_secret([250; 32]);
    let server_peer = server_id.peer_id();
    let config = ServerConfig {
        relay_bytes_per_sec: 2_000,
        relay_burst: 4_000,
        ..ServerConfig::default()
    };
    let (rate, burst) = (config.relay_bytes_per_sec, config.relay_burst);
    let mut server = Server::new(server_id, config, [1; 32]);
    // Per connected client: when its quota started and the bytes it was allowed since.
    let mut relayed: BTreeMap<crate::PeerId, (u64, u64)> = BTreeMap::new();
    let ids: Vec<Identity> = (1..=4u8).map(|i| Identity::from_secret([i; 32])).collect();
    let mut now = 1_800_000_000_000u64;
    let mut out = vec![0u8; crate::rendezvous::msg::MAX_MESSAGE];
    let mut nonce = 0u128;
    while !u.is_empty() {
        let Ok(who) = u.int_in_range(0..=3usize) else {
            break;
        };
        let id = &ids[who];
        let Ok(op) = u.int_in_range(0..=14u8) else {
            break;
        };
        let pick =
            |u: &mut Unstructured<'_>| ids[u.int_in_range(0..=3usize).unwrap_or(0)].peer_id();
        let body = match op {
            0 => {
                server.connected(
                    now,
                    id.peer_id(),
                    SocketAddr::from(([198, 51, 100, who as u8], 1000)),
                );
                relayed.entry(id.peer_id()).or_insert((now, 0));
                continue;
            }
            1 => {
                server.disconnected(&id.peer_id());
                relayed.remove(&id.peer_id());
                continue;
            }
            13 => {
                // Another observation, from anywhere (v4 or v6).
                let ip: [u8; 16] = u.arbitrary().unwrap_or([0; 16]);
                let port: u16 = u.arbitrary().unwrap_or(0);
                let addr = if ip[0] % 2 == 0 {
                    SocketAddr::from(([ip[1], ip[2], ip[3], ip[4]], port))
                } else {
                    SocketAddr::from((ip, port))
                };
                server.connected(now, id.peer_id(), addr);
                relayed.entry(id.peer_id()).or_insert((now, 0));
                assert!(
                    server.observed(&id.peer_id()).len() <= crate::rendezvous::msg::MAX_CANDIDATES
                );
                continue;
            }
            14 => {
                let to = pick(&mut u);
                let len = usize::from(u.arbitrary::<u16>().unwrap_or(0));
                if server.relay_allowed(now, &id.peer_id(), &to, len).is_ok() {
                    let (since, bytes) = relayed
                        .get_mut(&id.peer_id())
                        .expect("only connected clients relay");
                    *bytes += len as u64;
                    let allowed = burst + rate * (now - *since) / 1000;
                    assert!(*bytes <= allowed, "relayed {bytes} > quota {allowed}");
                }
                continue;
            }
            2 => {
                now += u64::from(u.arbitrary::<u16>().unwrap_or(0));
                continue;
            }
            3 => {
                let raw_len = u.int_in_range(0..=200usize).unwrap_or(0);
                let raw = u.bytes(raw_len).unwrap_or(&[]);
                if let Some(resp) = server.handle(now, id.peer_id(), raw) {
                    assert!(Message::decode(&resp).is_some());
                }
                continue;
            }
            4 => Request::Register(Registration {
                hostname: Some(["a", "b", "c"][u.int_in_range(0..=2usize).unwrap_or(0)].to_owned()),
                tags: vec!["mcp".into()],
                tools: vec![],
                public: u.arbitrary().unwrap_or(false),
                candidates: vec![],
            }),
            5 => Request::Resolve(Query::Peer(pick(&mut u))),
            6 => Request::Resolve(Query::Hostname("b".into())),
            7 => Request::Find {
                words: "mcp a b".into(),
                limit: 10,
            },
            8 => Request::TrustRequest {
                target: Query::Peer(pick(&mut u)),
                note: String::new(),
            },
            9 => Request::TrustDecision {
                requester: pick(&mut u),
                approve: u.arbitrary().unwrap_or(true),
            },
            10 => Request::Revoke { peer: pick(&mut u) },
            11 => Request::Pending,
            _ => Request::Deregister,
        };
        nonce += 1;
        let n = Message::encode_request(
            id,
            &server_peer,
            1,
            now,
            nonce.to_be_bytes(),
            &body,
            &mut out,
        )
        .expect("fits");
        let Some(resp) = server.handle(now, id.peer_id(), &out[..n]) else {
            panic!("a valid request got no answer");
        };
        let Some(Message::Response { body: resp, .. }) = Message::decode(&resp) else {
            panic!("undecodable answer");
        };
        // Whatever was answered, private nodes stay hidden from peers that do not trust them.
        let entries = match &resp {
            Response::Resolved(e) => vec![(**e).clone()],
            Response::Found(v) => v.clone(),
            _ => vec![],
        };
        for e in entries {
            if e.endpoints.is_some() || matches!(resp, Response::Found(_)) {
                assert!(
                    e.public
                        || e.record.peer == id.peer_id()
                        || server.trusts(&e.record.peer, &id.peer_id()),
                    "a private node leaked"
                );
            }
        }
    }
}

const T0_UNIX: Duration = Duration::from_secs(1_800_000_000);

fn responder_config() -> Config {
    Config {
        max_pending_handshakes: 8,
        cookie_threshold: 4,
        handshake_rate_limit: 16,
        ..Config::default()
    }
}

/// `handshake_responder`: arbitrary datagrams (optionally with a correct mac1 so they reach
/// the Noise layer) from arbitrary addresses never create more pending state than allowed,
/// never produce an event, and never get more than 3x their size back.
pub fn handshake_responder(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let now0 = fixed_instant();
    let config = responder_config();
    let max_pending = config.max_pending_handshakes;
    let id = Identity::from_secret([7; 32]);
    let mac_key = cookie::mac1_key(&id.x25519_public());
    let mut node = Node::new(id, config, [9; 32], now0, T0_UNIX).expect("valid config");
    let mut received: BTreeMap<SocketAddr, u64> = BTreeMap::new();
    let mut sent: BTreeMap<SocketAddr, u64> = BTreeMap::new();
    let mut buf = vec![0u8; 2048];
    let mut now = now0;
    while !u.is_empty() {
        let Ok(len) = u.int_in_range(0..=1400usize) else {
            break;
        };
        let Ok(bytes) = u.bytes(len) else { break };
        let mut d = bytes.to_vec();
        let port = u.int_in_range(1..=4u16).unwrap_or(1);
        let from = SocketAddr::from(([192, 0, 2, 1], port));
        if u.arbitrary::<bool>().unwrap_or(false) && d.len() > 1 + COOKIE_LEN {
            // Make it an init with a valid mac1, padded to the minimum.
            d[0] = header::TYPE_INIT;
            if d.len() < header::INIT_MIN_LEN {
                d.resize(header::INIT_MIN_LEN, 0);
            }
            let covered = d.len() - COOKIE_LEN;
            let mac = cookie::mac1(&mac_key, &d[..covered]);
            d[covered..].copy_from_slice(&mac);
        }
        *received.entry(from).or_default() += d.len() as u64;
        node.handle_datagram(now, from, &mut d);
        while let Some(t) = node.poll_transmit(now, &mut buf) {
            *sent.entry(t.dst).or_default() += t.len as u64;
        }
        assert!(node.pending_handshakes() <= max_pending);
        assert!(
            node.poll_event().is_none(),
            "no event before a handshake completes"
        );
        if u.arbitrary::<bool>().unwrap_or(false) {
            now += Duration::from_millis(u64::from(u.arbitrary::<u16>().unwrap_or(0)));
            node.handle_timeout(now);
        }
    }
    for (addr, n) in &sent {
        let got = received.get(addr).copied().unwrap_or(0);
        assert!(*n <= 3 * got, "sent {n} bytes to {addr} which sent {got}");
    }
}

/// `node_datagram`: with an established session, arbitrary datagrams (raw, or steered at
/// the live session index and packet types, or mutated copies of genuine packets) plus time
/// steps never panic, never change authenticated state, and the session still works after.
pub fn node_datagram(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let t0 = fixed_instant();
    let mut a = Node::new(
        Identity::from_secret([1; 32]),
        Config::default(),
        [1; 32],
        t0,
        T0_UNIX,
    )
    .expect("valid config");
    let mut b = Node::new(
        Identity::from_secret([2; 32]),
        Config::default(),
        [2; 32],
        t0,
        T0_UNIX,
    )
    .expect("valid config");
    let addr_a = SocketAddr::from(([10, 0, 0, 1], 1));
    let addr_b = SocketAddr::from(([10, 0, 0, 2], 2));
    let mut buf = vec![0u8; 2048];
    let mut genuine: Vec<Vec<u8>> = Vec::new();
    let s = a.connect(t0, addr_b, Some(b.peer_id())).expect("connect");
    exchange(t0, &mut a, &mut b, addr_a, addr_b, &mut buf, &mut genuine);
    let sb = std::iter::from_fn(|| b.poll_event())
        .find_map(|e| match e {
            Event::SessionEstablished { session, .. } => Some(session),
            _ => None,
        })
        .expect("established");
    while a.poll_event().is_some() {}
    let mut now = t0;
    let before = b.session_info(sb).expect("live").stats.rx_packets;
    while !u.is_empty() {
        let Ok(op) = u.int_in_range(0..=3u8) else {
            break;
        };
        let mut d = match op {
            0 => {
                let Ok(len) = u.int_in_range(0..=1300usize) else {
                    break;
                };
                let Ok(bytes) = u.bytes(len) else { break };
                bytes.to_vec()
            }
            1 | 2 if !genuine.is_empty() => {
                let i = u.choose_index(genuine.len()).unwrap_or(0);
                let mut g = genuine[i].clone();
                let flips = u.int_in_range(0..=4usize).unwrap_or(0);
                for _ in 0..flips {
                    let at = u.choose_index(g.len()).unwrap_or(0);
                    g[at] ^= u.arbitrary::<u8>().unwrap_or(1) | 1;
                }
                if op == 2 {
                    // Keep the header, forge the rest.
                    let len = g.len();
                    if let Ok(fill) = u.bytes(len.saturating_sub(13)) {
                        g[13..13 + fill.len()].copy_from_slice(fill);
                    }
                }
                g
            }
            _ => {
                now += Duration::from_millis(u64::from(u.arbitrary::<u16>().unwrap_or(0)) % 5000);
                b.handle_timeout(now);
                continue;
            }
        };
        let from = if u.arbitrary::<bool>().unwrap_or(false) {
            addr_a
        } else {
            SocketAddr::from(([203, 0, 113, 5], 9))
        };
        b.handle_datagram(now, from, &mut d);
        let mut guard = 0u32;
        while let Some(t) = b.poll_transmit(now, &mut buf) {
            guard += 1;
            assert!(
                guard < 10_000,
                "poll_transmit loops: {:#x} len {} dst {}",
                buf[0],
                t.len,
                t.dst
            );
        }
        while let Some(e) = b.poll_event() {
            assert!(
                !matches!(e, Event::SessionEstablished { .. }),
                "forged input created a session: {e:?}"
            );
        }
    }
    // Mutated or forged packets never authenticate: the receive counter only moved for
    // genuine packets (each genuine packet can be accepted at most once, and they were all
    // delivered already during the handshake).
    if let Some(info) = b.session_info(sb) {
        assert_eq!(
            info.stats.rx_packets, before,
            "unauthenticated input was accepted"
        );
        // The session still works (unless the fuzzer let it idle out).
        now += Duration::from_millis(1);
        if a.ping(now, s).is_ok() {
            exchange(now, &mut a, &mut b, addr_a, addr_b, &mut buf, &mut genuine);
        }
    }
}

fn exchange(
    now: Instant,
    a: &mut Node,
    b: &mut Node,
    addr_a: SocketAddr,
    addr_b: SocketAddr,
    buf: &mut [u8],
    log: &mut Vec<Vec<u8>>,
) {
    for _ in 0..16 {
        let mut moved = false;
        while let Some(t) = a.poll_transmit(now, buf) {
            log.push(buf[..t.len].to_vec());
            b.handle_datagram(now, addr_a, &mut buf[..t.len]);
            moved = true;
        }
        while let Some(t) = b.poll_transmit(now, buf) {
            a.handle_datagram(now, addr_b, &mut buf[..t.len]);
            moved = true;
        }
        if !moved {
            break;
        }
    }
}

/// One process-wide base instant (fuzz targets run many inputs per process).
fn fixed_instant() -> Instant {
    use std::sync::OnceLock;
    static T0: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)] // the base of virtual time; only differences matter
    *T0.get_or_init(Instant::now)
}

#[cfg(test)]
mod corpus {
    //! Replays `fuzz/corpus/<target>/*` on stable with `cargo test`.
    use std::path::PathBuf;

    fn replay(target: &str, f: fn(&[u8])) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut n = 0;
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {dir:?}: {e}"))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            let data = std::fs::read(&path).expect("readable corpus file");
            f(&data);
            n += 1;
        }
        assert!(n > 0, "empty corpus for {target}");
    }

    #[test]
    fn wire_decode_corpus() {
        replay("wire_decode", super::wire_decode);
    }

    #[test]
    fn replay_window_corpus() {
        replay("replay_window", super::replay_window);
    }

    #[test]
    fn handshake_responder_corpus() {
        replay("handshake_responder", super::handshake_responder);
    }

    #[test]
    fn node_datagram_corpus() {
        replay("node_datagram", super::node_datagram);
    }

    #[test]
    fn rendezvous_msg_corpus() {
        replay("rendezvous_msg", super::rendezvous_msg);
    }

    #[test]
    fn rendezvous_server_corpus() {
        replay("rendezvous_server", super::rendezvous_server);
    }

    #[test]
    fn node_streams_corpus() {
        replay("node_streams", super::node_streams);
    }

    /// Random inputs beyond the corpus (cheap, and catches regressions the corpus misses).
    #[test]
    fn node_streams_random_inputs() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..64 {
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let len = 64 + (i * 37) % 1500;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            super::node_streams(&data);
        }
    }
}

#[cfg(test)]
mod seeds {
    //! `cargo test -p tern-core --lib write_seed_corpus -- --ignored` regenerates the seed
    //! inputs (run once; the fuzzer grows the corpus from them).
    use super::*;
    use crate::wire::frame::write_ack;
    use std::path::PathBuf;

    fn write(target: &str, name: &str, data: &[u8]) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(name), data).expect("write seed");
    }

    #[test]
    #[ignore = "writes files; run by hand to regenerate seeds"]
    fn write_seed_corpus() {
        // Real handshake and data packets from a two-node exchange.
        let t0 = fixed_instant();
        let mut a = Node::new(
            Identity::from_secret([1; 32]),
            Config::default(),
            [1; 32],
            t0,
            T0_UNIX,
        )
        .unwrap();
        let mut b = Node::new(
            Identity::from_secret([2; 32]),
            Config::default(),
            [2; 32],
            t0,
            T0_UNIX,
        )
        .unwrap();
        let (aa, ab) = (
            SocketAddr::from(([10, 0, 0, 1], 1)),
            SocketAddr::from(([10, 0, 0, 2], 2)),
        );
        let mut log = Vec::new();
        let mut buf = vec![0u8; 2048];
        a.connect(t0, ab, None).unwrap();
        exchange(t0, &mut a, &mut b, aa, ab, &mut buf, &mut log);
        for (i, p) in log.iter().enumerate() {
            write("wire_decode", &format!("packet-{i}"), p);
        }
        let mut out = [0u8; 64];
        let n = header::write_cookie(&mut out, 7, &[3; 16]).unwrap();
        write("wire_decode", "cookie", &out[..n]);
        let n = header::write_reject(&mut out, 7, 1).unwrap();
        write("wire_decode", "reject", &out[..n]);
        let mut fb = [0u8; 512];
        let mut w = Writer::new(&mut fb);
        for f in [
            Frame::Ping { id: 9 },
            Frame::Pong { id: 9 },
            Frame::Stream {
                stream: 4,
                port: Some(7),
                offset: 0,
                data: b"hello",
                fin: true,
            },
            Frame::Stream {
                stream: 4,
                port: None,
                offset: 99,
                data: b"x",
                fin: false,
            },
            Frame::ResetStream {
                stream: 1,
                code: 2,
                final_size: 3,
            },
            Frame::MaxData { max: 1 << 20 },
            Frame::PathChallenge { data: [1; 8] },
            Frame::Close {
                code: 1,
                reason: b"bye",
            },
            Frame::Datagram { data: b"dgram" },
            Frame::ObservedAddress { seq: 1, addr: aa },
            Frame::App {
                channel: 2,
                data: b"{}",
            },
        ] {
            f.encode(&mut w).unwrap();
        }
        write_ack(&mut w, 10, &[(50, 60), (10, 20), (0, 3)], 8).unwrap();
        let n = w.len();
        write("wire_decode", "frames", &fb[..n]);

        write(
            "replay_window",
            "walk",
            &[0, 1, 0, 5, 1, 2, 0, 0, 0, 0xff, 0xff, 2, 3, 0, 1, 0, 1, 9],
        );
        write(
            "replay_window",
            "far-jump",
            &[3, 0xff, 0xff, 1, 0, 1, 0, 0, 10, 2, 0, 4],
        );

        let init = log[0].clone();
        let mut hs = vec![0x05, 0xb0, 0x04];
        hs.extend_from_slice(&init[..init.len().min(1200)]);
        write("handshake_responder", "xx-init", &hs);
        write(
            "handshake_responder",
            "garbage",
            &[200, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 0, 0],
        );

        {
            use crate::rendezvous::msg::{Message, Push, Query, Request, Response};
            use crate::rendezvous::record::SignedRecord;
            let dir = Identity::from_secret([9; 32]);
            let rec = SignedRecord::sign(
                &dir,
                a.peer_id(),
                crate::Address::new(0, 7),
                Some("alpha".into()),
                99,
            );
            let mut out = vec![0u8; 4096];
            let n = Message::encode_response(1, &Response::Registered { record: rec }, &mut out)
                .unwrap();
            write("rendezvous_msg", "registered", &out[..n]);
            let n = Message::encode_push(
                &Push::TrustDecided {
                    by: a.peer_id(),
                    approve: true,
                },
                &mut out,
            )
            .unwrap();
            write("rendezvous_msg", "push", &out[..n]);
            let n = Message::encode_request(
                &dir,
                &a.peer_id(),
                3,
                5,
                [1; 16],
                &Request::Resolve(Query::Hostname("x".into())),
                &mut out,
            )
            .unwrap();
            write("rendezvous_msg", "request", &out[..n]);
        }
        // CANDIDATES hints of every NAT kind (the same target checks their plans).
        {
            use crate::nat::{Hints, Mapping};
            let host = vec![SocketAddr::from(([10, 1, 0, 2], 4000))];
            for (name, mapping, step, refl) in [
                ("hints-public", Mapping::Public, 0, vec![]),
                ("hints-eim", Mapping::EndpointIndependent, 0, vec![4000]),
                (
                    "hints-sequential",
                    Mapping::EndpointDependent,
                    1,
                    vec![20000, 20001],
                ),
                (
                    "hints-random",
                    Mapping::EndpointDependent,
                    23456,
                    vec![3100, 26556],
                ),
            ] {
                let h = Hints {
                    mapping,
                    local_port: 4000,
                    port_step: step,
                    next_port: 0,
                    punch_sockets: 256,
                    epoch: 0,
                    host: host.clone(),
                    reflexive: refl
                        .into_iter()
                        .map(|p| SocketAddr::from(([198, 18, 0, 2], p)))
                        .collect(),
                };
                let mut hb = [0u8; 512];
                let mut w = Writer::new(&mut hb);
                h.encode(&mut w).unwrap();
                let n = w.len();
                write("rendezvous_msg", name, &hb[..n]);
            }
        }
        write(
            "rendezvous_server",
            "register-resolve",
            &[0, 0, 0, 4, 0, 0, 1, 0, 1, 4, 1, 1, 5, 0, 1, 6, 2, 8, 0],
        );
        write(
            "rendezvous_server",
            "trust",
            &[
                0, 0, 1, 0, 0, 4, 1, 0, 4, 0, 1, 4, 1, 0, 8, 1, 1, 11, 1, 9, 0, 1, 0, 5, 1,
            ],
        );
        write(
            "node_datagram",
            "mixed",
            &[
                0, 20, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 1, 2, 1, 0, 3, 0xff, 0xff, 2, 0, 1,
            ],
        );
        write(
            "node_datagram",
            "genuine-mutations",
            &[1, 0, 2, 5, 7, 1, 1, 2, 3, 0, 9, 3, 0x10, 0x00],
        );
    }
}
