//! Two tern nodes in memory, in virtual time: a Noise handshake and an encrypted ping,
//! printing every datagram. No sockets, no threads: the sans-IO core driven by a loop.
//!
//! `cargo run --release -p tern-core --example demo`
#![allow(clippy::disallowed_methods)] // the demo's virtual clock starts at the real clock

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_core::{Config, Event, Identity, Node};

const LATENCY: Duration = Duration::from_millis(10);

fn describe(bytes: &[u8]) -> &'static str {
    match bytes.first() {
        Some(0x01) => "handshake init (Noise IK, padded)",
        Some(0x02) => "handshake response",
        Some(0x03) => "handshake final",
        Some(0x04) => "cookie",
        Some(0x10 | 0x11) => "encrypted data",
        _ => "other",
    }
}

fn main() {
    let t0 = Instant::now();
    let unix = Duration::from_secs(1_800_000_000);
    let alpha_id = Identity::from_secret([0xA1; 32]);
    let bravo_id = Identity::from_secret([0xB2; 32]);
    let addrs: [SocketAddr; 2] = [
        "192.0.2.1:4001".parse().unwrap(),
        "192.0.2.2:4002".parse().unwrap(),
    ];
    let names = ["alpha", "bravo"];
    println!(
        "tern core demo: two nodes, one wire with {} ms latency, virtual time\n",
        LATENCY.as_millis()
    );
    for (name, id) in names.iter().zip([&alpha_id, &bravo_id]) {
        println!(
            "  {name}  address {}  peer {}",
            id.peer_id().default_address(),
            id.peer_id().short()
        );
    }
    let bravo_peer = bravo_id.peer_id();
    let mut nodes = [
        Node::new(alpha_id, Config::default(), [1; 32], t0, unix).expect("valid config"),
        Node::new(bravo_id, Config::default(), [2; 32], t0, unix).expect("valid config"),
    ];
    println!(
        "\nalpha dials bravo at {} knowing its key (Noise IK)\n",
        addrs[1]
    );
    let session = nodes[0]
        .connect(t0, addrs[1], Some(bravo_peer))
        .expect("connect");

    let mut now = t0;
    let mut wire: Vec<(Instant, usize, Vec<u8>)> = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut established = None;
    let mut ping_id = None;
    let mut done = false;
    while !done {
        for i in 0..2 {
            while let Some(t) = nodes[i].poll_transmit(now, &mut buf) {
                let ms = now.duration_since(t0).as_secs_f64() * 1e3;
                println!(
                    "  [{ms:7.3} ms] {} -> {}  {:5} B  {}",
                    names[i],
                    names[1 - i],
                    t.len,
                    describe(&buf[..t.len])
                );
                wire.push((now + LATENCY, 1 - i, buf[..t.len].to_vec()));
            }
            while let Some(e) = nodes[i].poll_event() {
                let ms = now.duration_since(t0).as_secs_f64() * 1e3;
                match e {
                    Event::SessionEstablished { peer, .. } => {
                        println!(
                            "  [{ms:7.3} ms] {}: session established with {}",
                            names[i],
                            peer.short()
                        );
                        if i == 0 {
                            established = Some(now);
                        }
                    }
                    Event::Pong { rtt, .. } if i == 0 => {
                        println!(
                            "  [{ms:7.3} ms] alpha: encrypted pong, rtt {:.1} ms",
                            rtt.as_secs_f64() * 1e3
                        );
                        done = true;
                    }
                    other => println!("  [{ms:7.3} ms] {}: {other:?}", names[i]),
                }
            }
        }
        if established.is_some()
            && ping_id.is_none()
            && now >= established.unwrap() + Duration::from_millis(30)
        {
            println!("\nalpha sends an encrypted ping\n");
            ping_id = Some(nodes[0].ping(now, session).expect("established"));
            continue;
        }
        // Advance virtual time to the next delivery or timer.
        let next_packet = wire.iter().map(|w| w.0).min();
        let next_timer = nodes.iter().filter_map(|n| n.poll_timeout()).min();
        let mut next = [next_packet, next_timer]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now);
        if let (Some(at), None) = (established, ping_id) {
            next = next.min(at + Duration::from_millis(30));
        }
        now = now.max(next);
        wire.sort_by_key(|w| w.0);
        while wire.first().is_some_and(|w| w.0 <= now) {
            let (_, to, mut bytes) = wire.remove(0);
            nodes[to].handle_datagram(now, addrs[1 - to], &mut bytes);
        }
        for n in &mut nodes {
            n.handle_timeout(now);
        }
    }
    let info = nodes[0].session_info(session).expect("live session");
    println!(
        "\nsession: {} keys, key generation {}, {} packets sent, {} received, smoothed rtt {:.1} ms",
        info.aead.map_or("-", |k| k.name()),
        info.key_generation,
        info.stats.tx_packets,
        info.stats.rx_packets,
        info.rtt.unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "dropped input: alpha {}, bravo {}",
        nodes[0].stats().drops.total(),
        nodes[1].stats().drops.total()
    );
}
