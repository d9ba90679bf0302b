//! Handshake CPU time and the packet-protection path (seal + open of 1200-byte payloads)
//! next to the bare `aes-gcm` / `chacha20poly1305` crates, in the same run.
//!
//! `cargo bench -p tern-core --bench crypto`
#![allow(clippy::disallowed_methods)] // benches read the real clock

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use tern_core::crypto::keys::SessionKeys;
use tern_core::crypto::replay::ReplayWindow;
use tern_core::wire::header::{self, DATA_HEADER_LEN, Header, TAG_LEN};
use tern_core::{AeadKind, Config, Event, Identity, Node};

const PAYLOAD: usize = 1200;

fn handshake(c: &mut Criterion) {
    let unix = Duration::from_secs(1_800_000_000);
    let (aa, ab): (SocketAddr, SocketAddr) =
        ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap());
    let mut g = c.benchmark_group("handshake");
    for (name, ik) in [("IK", true), ("XX", false)] {
        g.bench_function(BenchmarkId::new("node_pair", name), |bench| {
            let mut seed = 0u8;
            let mut buf = vec![0u8; 2048];
            bench.iter(|| {
                seed = seed.wrapping_add(1);
                let now = Instant::now();
                let mut a = Node::new(
                    Identity::from_secret([1; 32]),
                    Config::default(),
                    [seed; 32],
                    now,
                    unix,
                )
                .unwrap();
                let mut b = Node::new(
                    Identity::from_secret([2; 32]),
                    Config::default(),
                    [seed ^ 0xff; 32],
                    now,
                    unix,
                )
                .unwrap();
                let peer = ik.then(|| b.peer_id());
                a.connect(now, ab, peer).unwrap();
                let mut done = false;
                while !done {
                    while let Some(t) = a.poll_transmit(now, &mut buf) {
                        b.handle_datagram(now, aa, &mut buf[..t.len]);
                    }
                    while let Some(t) = b.poll_transmit(now, &mut buf) {
                        a.handle_datagram(now, ab, &mut buf[..t.len]);
                    }
                    while let Some(e) = b.poll_event() {
                        done |= matches!(e, Event::SessionEstablished { .. });
                    }
                }
                black_box((a, b))
            });
        });
    }
    g.finish();
}

/// Repeat IK handshakes between two long-lived nodes (what a reconnecting client and a
/// server see; the node caches are warm). Timed: `connect` to the initiator's
/// `SessionEstablished`, i.e. the critical path of both sides. Untimed between iterations:
/// the work a node defers until it is idle (`poll_timeout` answers "now"), the close, and
/// a virtual second so the handshake rate limit never asks for a cookie.
fn handshake_repeat(c: &mut Criterion) {
    let unix = Duration::from_secs(1_800_000_000);
    let (aa, ab): (SocketAddr, SocketAddr) =
        ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap());
    let mut g = c.benchmark_group("handshake");
    g.bench_function(BenchmarkId::new("node_pair_repeat", "IK"), |bench| {
        let mut now = Instant::now();
        let cfg = Config::default();
        let mut a = Node::new(
            Identity::from_secret([1; 32]),
            cfg.clone(),
            [1; 32],
            now,
            unix,
        )
        .unwrap();
        let mut b = Node::new(Identity::from_secret([2; 32]), cfg, [2; 32], now, unix).unwrap();
        let mut buf = vec![0u8; 2048];
        // Moves every datagram between the two nodes until both are quiet at `now`,
        // running due timers (and deferred work) too; returns whether A got established.
        let mut pump = |a: &mut Node, b: &mut Node, now: Instant, until_a_up: bool| -> bool {
            for _ in 0..64 {
                let mut moved = false;
                while let Some(t) = a.poll_transmit(now, &mut buf) {
                    b.handle_datagram(now, aa, &mut buf[..t.len]);
                    moved = true;
                }
                while let Some(t) = b.poll_transmit(now, &mut buf) {
                    a.handle_datagram(now, ab, &mut buf[..t.len]);
                    moved = true;
                }
                let mut up = false;
                while let Some(e) = a.poll_event() {
                    up |= matches!(e, Event::SessionEstablished { .. });
                }
                while b.poll_event().is_some() {}
                if until_a_up && up {
                    return true;
                }
                let due = |n: &Node| n.poll_timeout().is_some_and(|t| t <= now);
                if !until_a_up && (due(a) || due(b)) {
                    a.handle_timeout(now);
                    b.handle_timeout(now);
                    moved = true;
                }
                if !moved {
                    break;
                }
            }
            false
        };
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let s = a.connect(now, ab, Some(b.peer_id())).unwrap();
                assert!(pump(&mut a, &mut b, now, true), "no session");
                total += start.elapsed();
                pump(&mut a, &mut b, now, false);
                let _ = a.close(now, s, 0);
                pump(&mut a, &mut b, now, false);
                now += Duration::from_secs(5);
                a.handle_timeout(now);
                b.handle_timeout(now);
                pump(&mut a, &mut b, now, false);
            }
            black_box(&a);
            total
        });
    });
    g.finish();
}

/// What a session does per packet: write the header, seal, then on the other side parse
/// the header, check the replay window, open, update the window.
fn tern_path(
    tx: &mut SessionKeys,
    rx: &mut SessionKeys,
    win: &mut ReplayWindow,
    now: Instant,
    buf: &mut [u8],
) {
    let counter = tx.next_counter();
    header::write_data_header(&mut buf[..DATA_HEADER_LEN], tx.key_phase(), 7, counter).unwrap();
    let (head, rest) = buf.split_at_mut(DATA_HEADER_LEN);
    let (payload, tail) = rest.split_at_mut(PAYLOAD);
    let (_, tag) = tx.seal(head, payload);
    tail[..TAG_LEN].copy_from_slice(&tag);
    let Ok(Header::Data {
        key_phase, counter, ..
    }) = header::parse(buf)
    else {
        panic!("parse")
    };
    assert!(win.check(counter));
    let (head, rest) = buf.split_at_mut(DATA_HEADER_LEN);
    let (payload, tail) = rest.split_at_mut(PAYLOAD);
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(&tail[..TAG_LEN]);
    rx.open(
        now,
        Duration::from_secs(1),
        key_phase,
        counter,
        head,
        payload,
        &t,
    )
    .unwrap();
    win.update(counter);
}

fn packet_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal_open_1200B");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    let now = Instant::now();
    for kind in AeadKind::ALL {
        let name = match kind {
            AeadKind::Aes256Gcm => "aes256gcm",
            _ => "chacha20poly1305",
        };
        g.bench_function(BenchmarkId::new("tern_packet_path", name), |bench| {
            let mut tx = SessionKeys::new(kind, [1; 32], [2; 32], now);
            let mut rx = SessionKeys::new(kind, [2; 32], [1; 32], now);
            let mut win = ReplayWindow::new();
            let mut buf = vec![0u8; DATA_HEADER_LEN + PAYLOAD + TAG_LEN];
            bench.iter(|| tern_path(&mut tx, &mut rx, &mut win, now, black_box(&mut buf)));
        });
        g.bench_function(BenchmarkId::new("bare_crate", name), |bench| {
            let mut buf = vec![0u8; PAYLOAD];
            let aad = [0u8; DATA_HEADER_LEN];
            let mut n = 0u64;
            match kind {
                AeadKind::Aes256Gcm => {
                    let cipher = Aes256Gcm::new(&[1u8; 32].into());
                    bench.iter(|| {
                        n += 1;
                        let mut nonce = [0u8; 12];
                        nonce[4..].copy_from_slice(&n.to_be_bytes());
                        let tag = cipher
                            .encrypt_inout_detached(
                                (&nonce).into(),
                                &aad,
                                buf.as_mut_slice().into(),
                            )
                            .unwrap();
                        cipher
                            .decrypt_inout_detached(
                                (&nonce).into(),
                                &aad,
                                buf.as_mut_slice().into(),
                                &tag,
                            )
                            .unwrap();
                    });
                }
                _ => {
                    let cipher = ChaCha20Poly1305::new(&[1u8; 32].into());
                    bench.iter(|| {
                        n += 1;
                        let mut nonce = [0u8; 12];
                        nonce[4..].copy_from_slice(&n.to_be_bytes());
                        let tag = cipher
                            .encrypt_inout_detached(
                                (&nonce).into(),
                                &aad,
                                buf.as_mut_slice().into(),
                            )
                            .unwrap();
                        cipher
                            .decrypt_inout_detached(
                                (&nonce).into(),
                                &aad,
                                buf.as_mut_slice().into(),
                                &tag,
                            )
                            .unwrap();
                    });
                }
            }
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = handshake, handshake_repeat, packet_path
}
criterion_main!(benches);
