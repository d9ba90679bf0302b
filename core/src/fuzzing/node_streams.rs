//! `node_streams`: two `Node`s with an established session, driven by arbitrary stream
//! operations on both sides (open, write, finish, reset, stop, read, datagrams) and an
//! arbitrary network between them (delivery in any order, loss, duplication, corruption,
//! time steps), checked against a byte-exact model:
//!
//! * every byte read is the byte written at that offset (each stream writes a pattern keyed
//!   by its port), never beyond what was written;
//! * the end of a stream is read only after every byte, and only if the sender finished it;
//! * honest peers never close the session for a protocol violation;
//! * receive memory stays within the configured windows;
//! * after the network heals, every finished (and neither reset nor stopped) stream is
//!   read completely by the peer, with its end.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::Unstructured;

use crate::stream::{ReadError, StreamId};
use crate::{CloseReason, Config, Event, Identity, Node, close_code};

/// Ports: side 0 opens on even, side 1 on odd ports from here.
const BASE_PORT: u16 = 1000;
const MAX_OPENS: u16 = 24;

fn byte(port: u16, offset: u64) -> u8 {
    (u64::from(port)
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(offset.wrapping_mul(131))
        >> 3) as u8
}

#[derive(Debug, Default)]
struct Sent {
    id: Option<StreamId>,
    written: u64,
    finished: bool,
    reset: bool,
    /// The peer asked us to stop (our writes then fail).
    stopped_by_peer: bool,
}

#[derive(Debug, Default)]
struct Received {
    id: Option<StreamId>,
    read: u64,
    fin: bool,
    reset_seen: bool,
    stopped: bool,
}

struct Side {
    node: Node,
    addr: SocketAddr,
    session: Option<crate::SessionId>,
    /// Streams this side opened, by port.
    sent: BTreeMap<u16, Sent>,
    /// Streams the peer opened, by port.
    received: BTreeMap<u16, Received>,
    next_port: u16,
    closed: Option<CloseReason>,
}

fn config() -> Config {
    let mut c = Config::default();
    c.transport.stream_recv_window = 16 << 10;
    c.transport.session_recv_window = 32 << 10;
    c.transport.stream_send_buffer = 16 << 10;
    c.transport.max_streams = 4;
    c.transport.max_recv_ranges = 8;
    c.transport.datagram_send_queue = 4096;
    c.transport.datagram_recv_queue = 4096;
    c
}

/// See the module docs.
pub fn node_streams(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let t0 = super::epoch();
    let mk = |n: u8, port: u16| Side {
        node: Node::new(
            Identity::from_secret([n; 32]),
            config(),
            [n; 32],
            t0,
            super::T0_UNIX,
        )
        .expect("valid config"),
        addr: SocketAddr::from(([10, 0, 0, n], port)),
        session: None,
        sent: BTreeMap::new(),
        received: BTreeMap::new(),
        next_port: BASE_PORT + u16::from(n - 1),
        closed: None,
    };
    let mut sides = [mk(1, 1), mk(2, 2)];
    for s in &mut sides {
        for p in 0..2 * MAX_OPENS {
            s.node.listen(BASE_PORT + p).expect("listen");
        }
    }
    let mut now = t0;
    let peer = sides[1].node.peer_id();
    let to = sides[1].addr;
    sides[0].node.connect(now, to, Some(peer)).expect("connect");
    let mut wire: VecDeque<(usize, Vec<u8>)> = VecDeque::new();
    let mut buf = vec![0u8; 2048];
    // Handshake over a clean link.
    for _ in 0..8 {
        collect(&mut sides, &mut wire, now, &mut buf);
        while let Some((i, mut d)) = wire.pop_front() {
            let from = sides[1 - i].addr;
            sides[i].node.handle_datagram(now, from, &mut d);
        }
        events(&mut sides);
    }
    assert!(
        sides.iter().all(|s| s.session.is_some()),
        "no session over a clean link"
    );

    while !u.is_empty() && sides.iter().all(|s| s.closed.is_none()) {
        let Ok(op) = u.int_in_range(0..=10u8) else {
            break;
        };
        let i = usize::from(u.arbitrary::<bool>().unwrap_or(false));
        match op {
            0 => open(&mut sides[i]),
            1 => {
                let n = u.int_in_range(0..=6000usize).unwrap_or(0);
                let pick = u.arbitrary::<u8>().unwrap_or(0);
                write(&mut sides[i], pick, n);
            }
            2 | 3 => {
                let pick = u.arbitrary::<u8>().unwrap_or(0);
                let s = &mut sides[i];
                if let Some((_, st)) = nth(&mut s.sent, pick)
                    && let Some(id) = st.id
                    && let Some(mut h) = s.node.stream(id)
                {
                    if op == 2 {
                        if h.finish().is_ok() {
                            st.finished = true;
                        }
                    } else if h.reset(7).is_ok() {
                        st.reset = true;
                    }
                }
            }
            4 => {
                let pick = u.arbitrary::<u8>().unwrap_or(0);
                let s = &mut sides[i];
                if let Some((_, r)) = nth(&mut s.received, pick)
                    && let Some(id) = r.id
                    && let Some(mut h) = s.node.stream(id)
                    && h.stop(9).is_ok()
                {
                    r.stopped = true;
                }
            }
            5 => {
                let pick = u.arbitrary::<u8>().unwrap_or(0);
                let n = u.int_in_range(1..=8000usize).unwrap_or(1);
                read_one(&mut sides, i, pick, n);
            }
            6 => collect(&mut sides, &mut wire, now, &mut buf),
            7 | 8 => {
                // Deliver up to k packets, each with its fate.
                let k = u.int_in_range(1..=16usize).unwrap_or(1);
                for _ in 0..k {
                    if wire.is_empty() {
                        break;
                    }
                    let at = u.choose_index(wire.len()).unwrap_or(0);
                    let Some((dst, mut d)) = wire.remove(at) else {
                        break;
                    };
                    match u.int_in_range(0..=9u8).unwrap_or(0) {
                        0 => continue,                         // lost
                        1 => wire.push_back((dst, d.clone())), // duplicated
                        2 => {
                            let at = u.choose_index(d.len()).unwrap_or(0);
                            d[at] ^= 0x20;
                        }
                        _ => {}
                    }
                    let from = sides[1 - dst].addr;
                    sides[dst].node.handle_datagram(now, from, &mut d);
                }
            }
            9 => {
                let ms = u.int_in_range(0..=3000u64).unwrap_or(0);
                now += Duration::from_millis(ms);
                for s in &mut sides {
                    s.node.handle_timeout(now);
                }
            }
            _ => {
                let n = u.int_in_range(0..=1500usize).unwrap_or(0);
                let s = &mut sides[i];
                if let Some(sess) = s.session {
                    let _ = s.node.send_datagram(sess, &buf[..n.min(buf.len())]);
                    let mut dg = [0u8; 64];
                    while s.node.recv_datagram(sess, &mut dg).is_some() {}
                }
            }
        }
        events(&mut sides);
        check_memory(&sides);
        // Bounded wire: a runaway sender would show up as an ever-growing queue.
        while wire.len() > 4096 {
            wire.pop_front();
        }
    }
    if sides.iter().any(|s| s.closed.is_some()) {
        return;
    }
    settle(&mut sides, &mut wire, now, &mut buf);
}

fn nth<V>(m: &mut BTreeMap<u16, V>, pick: u8) -> Option<(u16, &mut V)> {
    if m.is_empty() {
        return None;
    }
    let k = usize::from(pick) % m.len();
    m.iter_mut().nth(k).map(|(p, v)| (*p, v))
}

fn open(s: &mut Side) {
    let Some(sess) = s.session else { return };
    if s.next_port >= BASE_PORT + 2 * MAX_OPENS {
        return;
    }
    if let Ok(id) = s.node.open_stream(sess, s.next_port) {
        s.sent.insert(
            s.next_port,
            Sent {
                id: Some(id),
                ..Sent::default()
            },
        );
        s.next_port += 2;
    }
}

fn write(s: &mut Side, pick: u8, n: usize) {
    let Some((port, st)) = nth(&mut s.sent, pick) else {
        return;
    };
    let Some(id) = st.id else { return };
    let Some(mut h) = s.node.stream(id) else {
        return;
    };
    let data: Vec<u8> = (0..n as u64).map(|k| byte(port, st.written + k)).collect();
    match h.write(&data) {
        Ok(k) => {
            assert!(k <= n);
            assert!(
                !st.finished && !st.reset,
                "write accepted after finish/reset"
            );
            st.written += k as u64;
        }
        Err(crate::stream::WriteError::Stopped(_)) => st.stopped_by_peer = true,
        Err(_) => {}
    }
}

fn read_one(sides: &mut [Side; 2], i: usize, pick: u8, n: usize) {
    let (a, b) = sides.split_at_mut(1);
    let (me, peer) = if i == 0 {
        (&mut a[0], &b[0])
    } else {
        (&mut b[0], &a[0])
    };
    let Some((port, r)) = nth(&mut me.received, pick) else {
        return;
    };
    read_stream(&mut me.node, port, r, peer.sent.get(&port), n);
}

/// Reads up to `n` bytes (in several calls) and checks them against the sender's model.
fn read_stream(node: &mut Node, port: u16, r: &mut Received, sent: Option<&Sent>, n: usize) {
    let Some(id) = r.id else { return };
    let Some(mut h) = node.stream(id) else {
        return;
    };
    let mut buf = vec![0u8; n];
    loop {
        match h.read(&mut buf) {
            Ok(Some(k)) => {
                assert!(!r.fin, "data after the end");
                for (j, b) in buf[..k].iter().enumerate() {
                    assert_eq!(
                        *b,
                        byte(port, r.read + j as u64),
                        "port {port}: wrong byte at {}",
                        r.read + j as u64
                    );
                }
                r.read += k as u64;
                let written = sent.map_or(0, |s| s.written);
                assert!(
                    r.read <= written,
                    "port {port}: read {} of {written} written",
                    r.read
                );
                if k < buf.len() {
                    continue;
                }
                return;
            }
            Ok(None) => {
                let s = sent.expect("FIN on a stream nobody opened");
                assert!(
                    s.finished,
                    "port {port}: end read but the sender never finished"
                );
                assert_eq!(r.read, s.written, "port {port}: end before the last byte");
                r.fin = true;
                return;
            }
            Err(ReadError::Reset(_)) => {
                r.reset_seen = true;
                return;
            }
            Err(_) => return,
        }
    }
}

fn collect(
    sides: &mut [Side; 2],
    wire: &mut VecDeque<(usize, Vec<u8>)>,
    now: Instant,
    buf: &mut [u8],
) {
    for (i, s) in sides.iter_mut().enumerate() {
        let mut guard = 0;
        while let Some(t) = s.node.poll_transmit(now, buf) {
            wire.push_back((1 - i, buf[..t.len].to_vec()));
            guard += 1;
            assert!(guard < 100_000, "poll_transmit never ends");
        }
    }
}

fn events(sides: &mut [Side; 2]) {
    for s in sides.iter_mut() {
        while let Some(e) = s.node.poll_event() {
            match e {
                Event::SessionEstablished { session, .. } => s.session = Some(session),
                Event::SessionClosed { reason, .. } => {
                    assert!(
                        !matches!(
                            reason,
                            CloseReason::Local {
                                code: close_code::PROTOCOL_ERROR
                            } | CloseReason::Peer {
                                code: close_code::PROTOCOL_ERROR
                            }
                        ),
                        "honest peers closed for a protocol error"
                    );
                    s.closed = Some(reason);
                }
                Event::StreamOpened { stream, port } => {
                    let r = s.received.entry(port).or_default();
                    assert!(r.id.is_none(), "port {port} opened twice");
                    r.id = Some(stream);
                }
                Event::StreamStopped { stream, .. } => {
                    if let Some(st) = s.sent.values_mut().find(|st| st.id == Some(stream)) {
                        st.stopped_by_peer = true;
                    }
                }
                _ => {}
            }
        }
    }
}

fn check_memory(sides: &[Side; 2]) {
    let c = config();
    for s in sides {
        for info in s.node.sessions() {
            let Some(t) = info.transport else { continue };
            assert!(
                t.recv_buffered <= c.transport.session_recv_window,
                "{} bytes buffered for receiving",
                t.recv_buffered
            );
            assert!(
                t.send_buffered <= c.transport.stream_send_buffer * (t.streams as u64 + 1),
                "{} bytes buffered for sending over {} streams",
                t.send_buffered,
                t.streams
            );
        }
    }
}

/// Whether every finished stream (neither reset nor stopped) was read whole by the peer.
fn all_delivered(sides: &[Side; 2]) -> bool {
    (0..2).all(|i| {
        sides[i].sent.iter().all(|(port, st)| {
            !st.finished
                || st.reset
                || st.stopped_by_peer
                || sides[1 - i]
                    .received
                    .get(port)
                    .is_some_and(|r| r.fin || r.stopped || r.reset_seen)
        })
    })
}

/// Heals the network: delivers everything in order and reads every stream, jumping time to
/// the next timer whenever the link is quiet, until every finished stream was read whole
/// (bounded); then checks that it was.
fn settle(
    sides: &mut [Side; 2],
    wire: &mut VecDeque<(usize, Vec<u8>)>,
    mut now: Instant,
    buf: &mut [u8],
) {
    // At least 60 s of virtual time: the fuzzer may have left a multi-second RTT estimate
    // behind (time jumps between deliveries), so pacing and probes start out slow.
    for _ in 0..6000 {
        collect(sides, wire, now, buf);
        let quiet = wire.is_empty();
        while let Some((i, mut d)) = wire.pop_front() {
            let from = sides[1 - i].addr;
            sides[i].node.handle_datagram(now, from, &mut d);
        }
        events(sides);
        if sides.iter().any(|s| s.closed.is_some()) {
            return;
        }
        for i in 0..2 {
            let ports: Vec<u16> = sides[i].received.keys().copied().collect();
            for port in ports {
                let (a, b) = sides.split_at_mut(1);
                let (me, peer) = if i == 0 {
                    (&mut a[0], &b[0])
                } else {
                    (&mut b[0], &a[0])
                };
                let r = me.received.get_mut(&port).expect("key");
                if !r.fin && !r.stopped && !r.reset_seen {
                    read_stream(&mut me.node, port, r, peer.sent.get(&port), 16 << 10);
                }
            }
        }
        events(sides);
        if all_delivered(sides) {
            break;
        }
        now += Duration::from_millis(10);
        if quiet {
            // Nothing on the wire: skip to the next timer (a probe timeout, an ACK).
            let next = sides.iter().filter_map(|s| s.node.poll_timeout()).min();
            match next {
                Some(t) => now = now.max(t),
                None => break,
            }
        }
        for s in sides.iter_mut() {
            s.node.handle_timeout(now);
        }
    }
    for i in 0..2 {
        for (port, st) in &sides[i].sent {
            if !st.finished || st.reset || st.stopped_by_peer {
                continue;
            }
            let Some(r) = sides[1 - i].received.get(port) else {
                panic!("port {port}: finished stream never reached the peer");
            };
            if r.stopped || r.reset_seen {
                continue;
            }
            assert!(
                r.fin && r.read == st.written,
                "port {port}: peer read {} of {} written (end seen: {})",
                r.read,
                st.written,
                r.fin
            );
        }
    }
}
