//! Attacks that work against Pilot (`pilot-reference.md` §6) and must fail against tern.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tern_core::crypto::cookie;
use tern_core::crypto::handshake::{Handshake, HandshakeCipher, Pattern, Suite};
use tern_core::wire::header::{self, COOKIE_LEN, DATA_HEADER_LEN, TAG_LEN};
use tern_core::{Config, DropReason, Event, PathInfo};

const INIT: u8 = 0x01;

fn data_packets(p: &Pair, from: Side) -> Vec<Wire> {
    p.sent
        .iter()
        .filter(|w| w.from == from && w.ty() & 0xfe == 0x10)
        .cloned()
        .collect()
}

fn ping(p: &mut Pair, side: Side) {
    let s = p.established(side).unwrap();
    let now = p.now;
    let id = p.node(side).ping(now, s).unwrap();
    assert!(
        p.run_until(Duration::from_secs(5), |p| p.pongs(side).contains(&id)),
        "ping {id} from {side:?} unanswered; a {:?} b {:?} drops b {:?}",
        p.events_a,
        p.events_b,
        p.b.stats().drops
    );
}

fn attacker() -> SocketAddr {
    "203.0.113.66:6666".parse().unwrap()
}

#[test]
fn replayed_data_packet_is_dropped_and_not_answered() {
    let mut p = Pair::new();
    p.establish();
    ping(&mut p, Side::A);
    // Let every packet in flight (delayed ACKs) arrive, so the capture was delivered once.
    p.run_for(Duration::from_millis(200));
    let captured = data_packets(&p, Side::A).last().unwrap().clone();
    let replays_before = p.b.stats().drops.get(DropReason::Replay);
    let sent_before = p.sent.len();
    for from in [p.a_addr, attacker()] {
        p.inject(Side::B, from, &captured.bytes);
    }
    assert_eq!(
        p.b.stats().drops.get(DropReason::Replay),
        replays_before + 2
    );
    assert_eq!(
        p.sent.len(),
        sent_before,
        "a replay must not trigger any answer"
    );
    ping(&mut p, Side::A);
}

#[test]
fn replayed_handshake_creates_no_second_session_and_redirects_nothing() {
    let mut p = Pair::new();
    let (_, sb) = p.establish();
    ping(&mut p, Side::A);
    let init = p.sent.iter().find(|w| w.ty() == INIT).unwrap().clone();
    let established_before = p.events_b.len();
    for from in [p.a_addr, attacker()] {
        p.inject(Side::B, from, &init.bytes);
        p.run_for(Duration::from_secs(1));
    }
    assert!(p.b.stats().drops.get(DropReason::HandshakeReplay) >= 2);
    assert_eq!(p.b.sessions().count(), 1);
    assert_eq!(p.b.pending_handshakes(), 0);
    assert!(
        !p.events_b[established_before..]
            .iter()
            .any(|e| matches!(e, Event::SessionEstablished { .. })),
        "{:?}",
        &p.events_b[established_before..]
    );
    assert_eq!(
        p.b.session_info(sb).unwrap().path,
        PathInfo::Direct(p.a_addr),
        "path unchanged"
    );
    assert_eq!(
        p.bytes_to.get(&attacker()).copied().unwrap_or(0),
        0,
        "nothing sent to the attacker"
    );
    ping(&mut p, Side::A);
    ping(&mut p, Side::B);
}

#[test]
fn replayed_init_to_a_restarted_responder_never_becomes_a_session() {
    let mut p = Pair::new();
    p.establish();
    let init = p.sent.iter().find(|w| w.ty() == INIT).unwrap().clone();
    // B restarts with the same identity and no memory of timestamps.
    let now = p.now;
    p.b = tern_core::Node::new(
        identity(2),
        Config::default(),
        [23; 32],
        now,
        Duration::from_secs(1_800_000_100),
    )
    .unwrap();
    p.events_b.clear();
    let mut bytes_to_attacker = 0;
    p.inject(Side::B, attacker(), &init.bytes);
    p.run_for(Duration::from_secs(30));
    bytes_to_attacker += p.bytes_to.get(&attacker()).copied().unwrap_or(0);
    assert!(p.events_b.is_empty(), "{:?}", p.events_b);
    assert_eq!(p.b.session_count(), 0, "the half-open handshake expired");
    assert!(bytes_to_attacker <= 3 * init.bytes.len() as u64);
}

#[test]
fn forged_huge_counter_does_not_move_the_replay_window() {
    // Pilot S10: one forged packet with counter ~2^64 killed a tunnel direction.
    let mut p = Pair::new();
    p.establish();
    ping(&mut p, Side::A);
    let genuine = data_packets(&p, Side::A).last().unwrap().clone();
    let mut forged = genuine.bytes.clone();
    forged[5..13].copy_from_slice(&(u64::MAX - 7).to_be_bytes());
    let fails = p.b.stats().drops.get(DropReason::DecryptFailed);
    p.inject(Side::B, p.a_addr, &forged);
    assert_eq!(p.b.stats().drops.get(DropReason::DecryptFailed), fails + 1);
    for _ in 0..20 {
        ping(&mut p, Side::A);
    }
    assert_eq!(p.b.stats().drops.get(DropReason::Replay), 0);
}

#[test]
fn frames_are_never_accepted_unencrypted() {
    // Pilot S12: plaintext packets were always accepted. Build a data packet whose payload
    // is a plaintext PING frame with a zero tag, plus a bare frame as a whole datagram.
    let mut p = Pair::new();
    p.establish();
    let genuine = data_packets(&p, Side::A).last().unwrap().clone();
    let mut plain = genuine.bytes[..DATA_HEADER_LEN].to_vec();
    plain[5..13].copy_from_slice(&1_000u64.to_be_bytes());
    plain.extend_from_slice(&[0x01, 0x2a]); // PING id 42, in clear
    plain.extend_from_slice(&[0u8; TAG_LEN]);
    let sent = p.sent.len();
    let events = p.events_b.len();
    p.inject(Side::B, p.a_addr, &plain);
    p.inject(Side::B, p.a_addr, &[0x01, 0x2a]);
    p.inject(Side::B, p.a_addr, &[0x1c, 0x00, 0x00]); // a bare CLOSE frame
    assert_eq!(p.sent.len(), sent, "no answer to plaintext");
    assert_eq!(p.events_b.len(), events);
    assert!(p.b.stats().drops.get(DropReason::DecryptFailed) >= 1);
    ping(&mut p, Side::A);
}

#[test]
fn directions_use_different_keys_so_reflection_fails() {
    // Pilot S15 used one key both ways. A packet A sent, reflected back to A as if from B,
    // must not authenticate.
    let mut p = Pair::new();
    p.establish();
    ping(&mut p, Side::A);
    let from_a = data_packets(&p, Side::A).last().unwrap().clone();
    let from_b = data_packets(&p, Side::B).last().unwrap().clone();
    // Rewrite the receiver index so the reflected packet reaches A's session.
    let mut reflected = from_a.bytes.clone();
    reflected[1..5].copy_from_slice(&from_b.bytes[1..5]);
    let fails = p.a.stats().drops.get(DropReason::DecryptFailed);
    p.inject(Side::A, p.b_addr, &reflected);
    assert_eq!(p.a.stats().drops.get(DropReason::DecryptFailed), fails + 1);
}

#[test]
fn new_source_address_is_used_only_after_it_proves_itself() {
    let mut p = Pair::new();
    let (_, sb) = p.establish();
    ping(&mut p, Side::A);
    // An attacker races a copy of a genuine packet from its own address.
    let now = p.now;
    let sa = p.established(Side::A).unwrap();
    p.a.ping(now, sa).unwrap();
    let mut copied = None;
    p.hook = Some(Box::new(move |_w| {
        Verdict::Delay(Duration::from_millis(50))
    }));
    p.run_until(Duration::from_millis(5), |p| {
        p.sent.last().is_some_and(|w| w.from == Side::A)
    });
    if let Some(w) = p.sent.last() {
        copied = Some(w.bytes.clone());
    }
    p.hook = None;
    p.inject(Side::B, attacker(), &copied.unwrap());
    p.run_for(Duration::from_secs(10));
    let info = p.b.session_info(sb).unwrap();
    assert_eq!(
        info.path,
        PathInfo::Direct(p.a_addr),
        "path must not move to an unproven address"
    );
    assert!(
        !p.events_b
            .iter()
            .any(|e| matches!(e, Event::PathChanged { .. }))
    );
    // The attacker got at most 3x what it sent (a PATH_CHALLENGE or two).
    let to_attacker = p.bytes_to.get(&attacker()).copied().unwrap_or(0);
    assert!(to_attacker > 0, "the new address was challenged");
    assert!(
        to_attacker <= 3 * copied_len(&p),
        "sent {to_attacker} to an unvalidated address"
    );
    ping(&mut p, Side::A);
    ping(&mut p, Side::B);

    // A genuine move (NAT rebinding) is followed once validated.
    // The first packet from the new address triggers validation; answers sent before it
    // completes go to the old (now dead) path, as the path may only move once proven.
    let new_addr: SocketAddr = "10.0.0.1:1001".parse().unwrap();
    p.a_addr = new_addr;
    let now = p.now;
    p.a.ping(now, sa).unwrap();
    p.run_for(Duration::from_secs(2));
    assert_eq!(
        p.b.session_info(sb).unwrap().path,
        PathInfo::Direct(new_addr)
    );
    assert!(p.events_b.contains(&Event::PathChanged {
        session: sb,
        path: PathInfo::Direct(new_addr)
    }));
    ping(&mut p, Side::B);
    ping(&mut p, Side::A);
}

fn copied_len(p: &Pair) -> u64 {
    data_packets(p, Side::A)
        .last()
        .map_or(0, |w| w.bytes.len() as u64)
}

/// Builds a valid IK init from `attacker_id` to the holder of `responder`.
fn forged_init(
    attacker_id: &tern_core::Identity,
    responder: &tern_core::PeerId,
    sender: u32,
    seed: u64,
    ts: u64,
) -> Vec<u8> {
    let suite = Suite {
        pattern: Pattern::IK,
        cipher: HandshakeCipher::AesGcmSha256,
    };
    let offer = 0x03;
    let s = sender.to_be_bytes();
    let hdr = [
        header::TYPE_INIT,
        header::VERSION,
        suite.id(),
        offer,
        s[0],
        s[1],
        s[2],
        s[3],
    ];
    let mut prologue = b"tern/1".to_vec();
    prologue.extend_from_slice(&hdr);
    let mut seed32 = [0u8; 32];
    seed32[..8].copy_from_slice(&seed.to_le_bytes());
    let mut hs =
        Handshake::initiator(suite, attacker_id, Some(responder), &prologue, seed32).unwrap();
    let mut noise = [0u8; 256];
    let n = hs.write_init(attacker_id, ts, sender, &mut noise).unwrap();
    let mut out = vec![0u8; 1500];
    let len = header::write_init(
        &mut out,
        suite.id(),
        offer,
        sender,
        None,
        true,
        &noise[..n],
        header::INIT_MIN_LEN,
    )
    .unwrap();
    let key = cookie::mac1_key(&responder.x25519_public().unwrap());
    let mac = cookie::mac1(&key, &out[..len]);
    out[len..len + COOKIE_LEN].copy_from_slice(&mac);
    out.truncate(len + COOKIE_LEN);
    out
}

#[test]
fn ten_thousand_spoofed_initiations_keep_bounded_state_and_get_cookies() {
    let mut p = Pair::new();
    let cfg = Config::default();
    let evil = identity(66);
    let b_id = p.b.peer_id();
    let mut received: std::collections::BTreeMap<SocketAddr, u64> = Default::default();
    for i in 0..10_000u32 {
        let from: SocketAddr = SocketAddr::from((
            [198, 18, (i >> 8) as u8, i as u8],
            40000 + (i % 1000) as u16,
        ));
        let init = forged_init(
            &evil,
            &b_id,
            0x1000 + i,
            u64::from(i),
            1_000_000 + u64::from(i),
        );
        *received.entry(from).or_default() += init.len() as u64;
        p.inject(Side::B, from, &init);
        assert!(p.b.pending_handshakes() <= cfg.max_pending_handshakes);
    }
    assert!(
        p.b.pending_handshakes() <= cfg.cookie_threshold,
        "{}",
        p.b.pending_handshakes()
    );
    assert!(p.b.stats().cookies_sent >= 10_000 - cfg.cookie_threshold as u64 - 16);
    assert!(p.b.session_count() <= cfg.cookie_threshold);
    assert!(
        p.events_b.is_empty(),
        "no session from spoofed inits: {:?}",
        &p.events_b[..p.events_b.len().min(3)]
    );
    // Never more than 3x what a spoofed address sent it.
    for (addr, got) in &received {
        let sent = p.bytes_to.get(addr).copied().unwrap_or(0);
        assert!(sent <= 3 * got, "{addr}: sent {sent} for {got}");
    }
    // A real client still gets in during the flood (it answers the cookie).
    let (_, _) = p.establish();
    ping(&mut p, Side::A);
    // Half-open state expires.
    p.run_for(Duration::from_secs(20));
    assert_eq!(p.b.pending_handshakes(), 0);
    assert_eq!(p.b.sessions().count(), 1);
}

#[test]
fn random_garbage_is_counted_and_harmless() {
    let mut p = Pair::new();
    p.establish();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let victim_index = data_packets(&p, Side::A).last().unwrap().bytes[1..5].to_vec();
    for i in 0..10_000usize {
        let len = 1 + (i * 7919) % 1400;
        let mut d = vec![0u8; len];
        for b in d.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        // Steer some of it at real packet types and the live session index.
        match i % 4 {
            0 => d[0] = 0x10,
            1 => {
                d[0] = 0x11;
                if len >= 5 {
                    d[1..5].copy_from_slice(&victim_index);
                }
            }
            2 => d[0] = (i % 6) as u8,
            _ => {}
        }
        p.inject(Side::B, attacker(), &d);
    }
    assert!(
        p.b.stats().drops.total() >= 9_000,
        "{:?}",
        p.b.stats().drops
    );
    assert_eq!(p.b.sessions().count(), 1);
    ping(&mut p, Side::A);
    ping(&mut p, Side::B);
}
