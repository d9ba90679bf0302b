//! Stateless resets: a peer that restarted (and so lost every session) makes the other side
//! close its stale session within one round trip instead of after the idle timeout; nobody
//! without the token can close a session; resets never amplify and are rate limited.

mod common;

use std::time::Duration;

use common::*;
use tern_core::{CloseReason, Config, DropReason, Event, Node, SessionId};

/// Replaces one side with a fresh node that has the same identity and address (a restart).
fn restart(p: &mut Pair, side: Side) {
    let unix = Duration::from_secs(1_800_000_000) + Duration::from_secs(60);
    let (id, seed) = match side {
        Side::A => (identity(1), [33; 32]),
        Side::B => (identity(2), [44; 32]),
    };
    *p.node(side) = Node::new(id, Config::default(), seed, p.now, unix).unwrap();
}

fn reset_close(p: &Pair, side: Side, session: SessionId) -> bool {
    p.events(side).iter().any(|e| {
        matches!(e, Event::SessionClosed { session: s, reason: CloseReason::PeerReset, .. } if *s == session)
    })
}

/// The survivor's session closes with `PeerReset` one round trip after it next sends, and
/// a new session to the restarted node then works.
fn survivor_learns_of_restart(xx: bool, restarted: Side) {
    let mut p = Pair::new();
    let sa = if xx {
        let b = p.b_addr;
        p.a.connect(p.now, b, None).unwrap()
    } else {
        p.connect()
    };
    assert!(
        p.run_until(Duration::from_secs(5), |p| p.established(Side::A).is_some()
            && p.established(Side::B).is_some())
    );
    let sb = p.established(Side::B).unwrap();
    let (survivor, session) = match restarted {
        Side::A => (Side::B, sb),
        Side::B => (Side::A, sa),
    };
    p.run_for(Duration::from_millis(100));
    restart(&mut p, restarted);
    let sent_at = p.now;
    let now = p.now;
    p.node(survivor).ping(now, session).unwrap();
    assert!(
        p.run_until(Duration::from_secs(5), |p| reset_close(
            p, survivor, session
        )),
        "no reset close: {:?}",
        p.events(survivor)
    );
    // One round trip (2 x 10 ms latency), not the 45 s idle timeout.
    assert!(
        p.now - sent_at <= Duration::from_millis(25),
        "took {:?}",
        p.now - sent_at
    );
    assert_eq!(p.node(survivor).stats().resets_received, 1);
    assert_eq!(p.node(restarted).stats().resets_sent, 1);
    assert!(p.node(survivor).session_info(session).is_none());

    // Reconnecting works (A always dials; after a restart of A, A dials B again).
    p.events_a.clear();
    p.events_b.clear();
    let s = p.connect();
    assert!(p.run_until(Duration::from_secs(5), |p| p.established(Side::A).is_some()));
    let now = p.now;
    let id = p.a.ping(now, s).unwrap();
    assert!(p.run_until(Duration::from_secs(5), |p| p.pongs(Side::A).contains(&id)));
}

#[test]
fn restarted_responder_resets_the_initiators_ik_session_within_one_round_trip() {
    survivor_learns_of_restart(false, Side::B);
}

#[test]
fn restarted_responder_resets_the_initiators_xx_session_within_one_round_trip() {
    survivor_learns_of_restart(true, Side::B);
}

#[test]
fn restarted_initiator_resets_the_responders_ik_session_within_one_round_trip() {
    survivor_learns_of_restart(false, Side::A);
}

#[test]
fn restarted_initiator_resets_the_responders_xx_session_within_one_round_trip() {
    survivor_learns_of_restart(true, Side::A);
}

#[test]
fn a_reset_without_the_right_token_is_counted_and_the_session_lives_on() {
    let mut p = Pair::new();
    let (sa, sb) = p.establish();
    // The attacker knows B's index for the session (it is in every packet header) but not
    // the token; try the right index with guessed tokens, and another node's real token.
    let _ = sb;
    let data = p
        .sent
        .iter()
        .find(|w| w.from == Side::A && w.ty() & 0xfe == 0x10)
        .unwrap();
    let index = u32::from_be_bytes(data.bytes[1..5].try_into().unwrap());
    let b_addr = p.b_addr;
    for token in [[0u8; 16], [0xff; 16], identity(9).reset_token(index)] {
        let mut pkt = vec![0x06];
        pkt.extend_from_slice(&index.to_be_bytes());
        pkt.extend_from_slice(&token);
        p.inject(Side::A, b_addr, &pkt);
    }
    assert_eq!(p.a.stats().drops.get(DropReason::ResetUnmatched), 3);
    assert_eq!(p.a.stats().resets_received, 0);
    let now = p.now;
    let id = p.a.ping(now, sa).unwrap();
    assert!(p.run_until(Duration::from_secs(2), |p| p.pongs(Side::A).contains(&id)));
    assert!(!reset_close(&p, Side::A, sa));
}

#[test]
fn resets_are_smaller_than_their_trigger_rate_limited_and_never_answer_small_packets() {
    let mut p = Pair::new();
    let from = "10.9.9.9:999".parse().unwrap();
    // Too short to be a data packet: no answer.
    p.inject(Side::B, from, &[0x10, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(p.b.stats().resets_sent, 0);
    // A flood of well-formed data headers for unknown indexes, all at one instant.
    for i in 0..500u32 {
        let mut pkt = vec![0x10];
        pkt.extend_from_slice(&(1000 + i).to_be_bytes());
        pkt.extend_from_slice(&[0u8; 8 + 16 + 4]);
        p.inject(Side::B, from, &pkt);
    }
    let resets: Vec<_> = p.sent.iter().filter(|w| w.ty() == 0x06).collect();
    assert_eq!(resets.len(), 64, "one window's worth");
    assert!(resets.iter().all(|w| w.bytes.len() == 21 && w.dst == from));
    assert_eq!(p.b.stats().resets_sent, 64);
    assert_eq!(p.b.stats().drops.get(DropReason::UnknownSession), 500);
    // The next window allows more.
    p.now += Duration::from_secs(1);
    let mut pkt = vec![0x10];
    pkt.extend_from_slice(&5u32.to_be_bytes());
    pkt.extend_from_slice(&[0u8; 28]);
    p.inject(Side::B, from, &pkt);
    assert_eq!(p.b.stats().resets_sent, 65);
}
