//! Two nodes in virtual time: sessions establish (IK and XX, both AEADs) and survive every
//! handshake message being dropped, duplicated, reordered or corrupted once; a wrong key or
//! an untrusted initiator is refused with a typed reason.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use tern_core::{AeadKind, CloseReason, Config, DropReason, Event, IncomingPolicy, SessionState};

fn ping_round_trip(p: &mut Pair, side: Side) {
    let session = p.established(side).unwrap();
    let now = p.now;
    let id = p.node(side).ping(now, session).unwrap();
    assert!(
        p.run_until(Duration::from_secs(10), |p| p.pongs(side).contains(&id)),
        "no pong for ping {id} from {side:?}"
    );
}

#[test]
fn ik_session_establishes_and_pings_both_ways() {
    let mut p = Pair::new();
    let (sa, sb) = p.establish();
    ping_round_trip(&mut p, Side::A);
    ping_round_trip(&mut p, Side::B);
    let ia = p.a.session_info(sa).unwrap();
    let ib = p.b.session_info(sb).unwrap();
    assert_eq!(ia.peer, Some(p.b.peer_id()));
    assert_eq!(ib.peer, Some(p.a.peer_id()));
    assert_eq!(ia.state, SessionState::Established);
    assert!(ia.initiator && !ib.initiator);
    // RTT is two one-way latencies.
    let rtt = ia.rtt.unwrap();
    assert_eq!(rtt, 2 * p.latency, "rtt {rtt:?}");
    assert_eq!(p.a.stats().drops.total(), 0, "{:?}", p.a.stats().drops);
    // (B counts a few `UnexpectedState` drops after each close from the second round on,
    // as on main before the key cache: packets of the closing session.)
    for r in [DropReason::HandshakeFailed, DropReason::DecryptFailed] {
        assert_eq!(p.b.stats().drops.get(r), 0, "{:?}", p.b.stats().drops);
    }
}

#[test]
fn xx_session_learns_the_responders_identity() {
    let mut p = Pair::new();
    let b_addr = p.b_addr;
    let now = p.now;
    let sa = p.a.connect(now, b_addr, None).unwrap();
    assert!(p.run_until(Duration::from_secs(10), |p| {
        p.established(Side::B).is_some()
    }));
    assert!(p.events(Side::A).contains(&Event::SessionEstablished {
        session: sa,
        peer: p.b.peer_id(),
        initiator: true
    }));
    ping_round_trip(&mut p, Side::A);
    ping_round_trip(&mut p, Side::B);
}

#[test]
fn both_aeads_and_handshake_ciphers_work_and_are_negotiated() {
    use tern_core::crypto::HandshakeCipher;
    let only = |k: &'static [AeadKind], c: HandshakeCipher| {
        let mut cfg = Config::default();
        cfg.aeads = k;
        cfg.handshake_cipher = c;
        cfg
    };
    for (a, b, want) in [
        (
            &[AeadKind::Aes256Gcm, AeadKind::ChaCha20Poly1305][..],
            &[AeadKind::ChaCha20Poly1305, AeadKind::Aes256Gcm][..],
            AeadKind::ChaCha20Poly1305, // responder's preference wins
        ),
        (
            &[AeadKind::ChaCha20Poly1305][..],
            &[AeadKind::Aes256Gcm, AeadKind::ChaCha20Poly1305][..],
            AeadKind::ChaCha20Poly1305,
        ),
        (
            &[AeadKind::Aes256Gcm][..],
            &[AeadKind::Aes256Gcm][..],
            AeadKind::Aes256Gcm,
        ),
    ] {
        for cipher in [
            HandshakeCipher::AesGcmSha256,
            HandshakeCipher::ChaChaPolyBlake2s,
        ] {
            let mut p = Pair::with_configs(only(a, cipher), only(b, cipher));
            let (sa, _) = p.establish();
            assert_eq!(p.a.session_info(sa).unwrap().aead, Some(want));
            ping_round_trip(&mut p, Side::A);
        }
    }
}

#[test]
fn no_common_aead_means_no_session() {
    let mut ca = Config::default();
    ca.aeads = &[AeadKind::Aes256Gcm];
    let mut cb = Config::default();
    cb.aeads = &[AeadKind::ChaCha20Poly1305];
    let mut p = Pair::with_configs(ca, cb);
    let sa = p.connect();
    p.run_for(Duration::from_secs(20));
    assert_eq!(p.established(Side::B), None);
    assert!(p.events(Side::A).contains(&Event::SessionClosed {
        session: sa,
        peer: None,
        reason: CloseReason::HandshakeTimeout
    }));
    assert!(p.b.stats().drops.get(DropReason::Unsupported) > 0);
    assert_eq!(p.b.session_count(), 0);
}

/// Applies `verdict` once, to the `nth` datagram of type `ty` sent by `from`.
fn once(from: Side, ty: u8, nth: usize, verdict: Verdict) -> (Hook, Rc<Cell<bool>>) {
    let fired = Rc::new(Cell::new(false));
    let f2 = fired.clone();
    let mut seen = 0usize;
    let hook = Box::new(move |w: &Wire| {
        if w.from == from && w.ty() & 0xfe == ty & 0xfe {
            seen += 1;
            if seen == nth + 1 && !f2.get() {
                f2.set(true);
                return verdict;
            }
        }
        Verdict::Deliver
    });
    (hook, fired)
}

const INIT: u8 = 0x01;
const RESP: u8 = 0x02;
const FINAL: u8 = 0x03;
const DATA: u8 = 0x10;

fn faults() -> Vec<Verdict> {
    vec![
        Verdict::Drop,
        Verdict::Duplicate,
        Verdict::Delay(Duration::from_millis(300)), // arrives after later packets
        Verdict::Corrupt(0),
        Verdict::Corrupt(7),
        Verdict::Corrupt(40),
        Verdict::Corrupt(usize::MAX / 2),
    ]
}

#[test]
fn ik_handshake_survives_each_message_faulted_once() {
    // IK: init (A), response (B), first data packet = confirmation (A), first data (B).
    for (from, ty, nth) in [
        (Side::A, INIT, 0),
        (Side::B, RESP, 0),
        (Side::A, DATA, 0),
        (Side::B, DATA, 0),
    ] {
        for v in faults() {
            let mut p = Pair::new();
            let (hook, fired) = once(from, ty, nth, v);
            p.hook = Some(hook);
            let (_sa, _sb) = p.establish();
            assert!(fired.get(), "fault {v:?} on {from:?}/{ty:#x} never applied");
            ping_round_trip(&mut p, Side::A);
            ping_round_trip(&mut p, Side::B);
            assert_eq!(
                p.b.sessions().count(),
                1,
                "{from:?}/{ty:#x} {v:?}: one session only"
            );
            assert_eq!(p.a.sessions().count(), 1);
            p.run_for(Duration::from_secs(20));
            assert_eq!(p.b.pending_handshakes(), 0);
            assert_eq!(p.b.session_count(), 1);
        }
    }
}

#[test]
fn xx_handshake_survives_each_message_faulted_once() {
    for (from, ty, nth) in [
        (Side::A, INIT, 0),
        (Side::B, RESP, 0),
        (Side::A, FINAL, 0),
        (Side::B, DATA, 0),
    ] {
        for v in faults() {
            let mut p = Pair::new();
            let (hook, fired) = once(from, ty, nth, v);
            p.hook = Some(hook);
            let b_addr = p.b_addr;
            let now = p.now;
            p.a.connect(now, b_addr, None).unwrap();
            assert!(
                p.run_until(Duration::from_secs(30), |p| p
                    .established(Side::A)
                    .is_some()
                    && p.established(Side::B).is_some()),
                "{from:?}/{ty:#x} {v:?}: a {:?} b {:?}",
                p.events_a,
                p.events_b
            );
            assert!(fired.get(), "fault {v:?} on {from:?}/{ty:#x} never applied");
            ping_round_trip(&mut p, Side::A);
            ping_round_trip(&mut p, Side::B);
            assert_eq!(p.b.sessions().count(), 1, "{from:?}/{ty:#x} {v:?}");
            // A corrupted init may leave a half-open handshake; it expires on its own.
            p.run_for(Duration::from_secs(20));
            assert_eq!(p.b.pending_handshakes(), 0);
            assert_eq!(p.b.session_count(), 1);
        }
    }
}

#[test]
fn handshake_survives_heavy_random_loss() {
    // 50 % loss in both directions, deterministic pattern: still establishes.
    let mut p = Pair::new();
    let mut n = 0u64;
    p.hook = Some(Box::new(move |_w| {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if (n >> 33) % 2 == 0 {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    }));
    p.establish();
}

#[test]
fn wrong_key_is_refused_with_a_typed_reason() {
    let mut p = Pair::new();
    let imposter = identity(99).peer_id();
    let b_addr = p.b_addr;
    let now = p.now;
    let sa = p.a.connect(now, b_addr, Some(imposter)).unwrap();
    p.run_for(Duration::from_secs(5));
    assert!(
        p.events(Side::A).contains(&Event::SessionClosed {
            session: sa,
            peer: Some(p.b.peer_id()),
            reason: CloseReason::PeerMismatch {
                expected: imposter,
                actual: p.b.peer_id()
            }
        }),
        "{:?}",
        p.events_a
    );
    assert!(p.b.stats().drops.get(DropReason::WrongKey) >= 1);
    // B never reports a session with A (A closed before sending message 3).
    assert_eq!(p.established(Side::B), None);
    // The reason arrives within a few round trips, not after a timeout.
    assert!(p.b.stats().rejects_sent >= 1);
}

#[test]
fn wrong_key_without_reject_hints_times_out() {
    let mut cb = Config::default();
    cb.send_reject_hints = false;
    let mut p = Pair::with_configs(Config::default(), cb);
    let b_addr = p.b_addr;
    let now = p.now;
    let sa =
        p.a.connect(now, b_addr, Some(identity(99).peer_id()))
            .unwrap();
    p.run_for(Duration::from_secs(20));
    assert!(p.events(Side::A).contains(&Event::SessionClosed {
        session: sa,
        peer: None,
        reason: CloseReason::HandshakeTimeout
    }));
    assert_eq!(p.b.stats().rejects_sent, 0);
}

#[test]
fn private_node_refuses_untrusted_then_accepts_after_approval() {
    let mut cb = Config::default();
    cb.incoming = IncomingPolicy::TrustedOnly;
    let mut p = Pair::with_configs(Config::default(), cb);
    let sa = p.connect();
    p.run_for(Duration::from_secs(2));
    assert!(p.events(Side::A).contains(&Event::SessionClosed {
        session: sa,
        peer: Some(p.b.peer_id()),
        reason: CloseReason::Refused
    }));
    let a_id = p.a.peer_id();
    assert!(
        p.events(Side::B)
            .contains(&Event::IncomingRefused { peer: a_id })
    );
    assert_eq!(p.b.session_count(), 0, "a refusal leaves no state");
    assert_eq!(p.b.pending_handshakes(), 0);
    // Approve, connect again: accepted.
    let now = p.now;
    p.b.set_trusted(now, a_id, true);
    p.events_a.clear();
    p.establish();
    ping_round_trip(&mut p, Side::A);
    // Revoke: the session is cut with a typed reason on both sides.
    let sb = p.established(Side::B).unwrap();
    let now = p.now;
    p.b.set_trusted(now, a_id, false);
    p.run_for(Duration::from_secs(2));
    assert!(
        p.events(Side::B)
            .iter()
            .any(|e| matches!(e, Event::SessionClosed { session, .. } if *session == sb))
    );
    assert!(
        p.events(Side::A).iter().any(|e| matches!(e,
            Event::SessionClosed { reason: CloseReason::Peer { code }, .. } if *code == tern_core::close_code::REVOKED)),
        "{:?}",
        p.events_a
    );
}

#[test]
fn private_node_refuses_untrusted_xx_initiator() {
    let mut cb = Config::default();
    cb.incoming = IncomingPolicy::TrustedOnly;
    let mut p = Pair::with_configs(Config::default(), cb);
    let b_addr = p.b_addr;
    let now = p.now;
    let sa = p.a.connect(now, b_addr, None).unwrap();
    p.run_for(Duration::from_secs(3));
    assert!(
        p.events(Side::A).iter().any(|e| matches!(e,
            Event::SessionClosed { session, reason: CloseReason::Refused, .. } if *session == sa)),
        "{:?}",
        p.events_a
    );
    assert_eq!(p.established(Side::B), None);
    p.run_for(Duration::from_secs(3));
    assert_eq!(p.b.session_count(), 0);
}

#[test]
fn close_is_reported_on_both_sides_and_goes_quiet() {
    let mut p = Pair::new();
    let (sa, sb) = p.establish();
    let now = p.now;
    p.a.close(now, sa, 42).unwrap();
    p.run_for(Duration::from_secs(10));
    assert!(p.events(Side::A).contains(&Event::SessionClosed {
        session: sa,
        peer: Some(p.b.peer_id()),
        reason: CloseReason::Local { code: 42 }
    }));
    assert!(p.events(Side::B).contains(&Event::SessionClosed {
        session: sb,
        peer: Some(p.a.peer_id()),
        reason: CloseReason::Peer { code: 42 }
    }));
    assert_eq!(p.a.session_count(), 0);
    assert_eq!(p.b.session_count(), 0);
    // Stale handles are errors, and nothing more is sent.
    assert!(p.a.ping(p.now, sa).is_err());
    let sent = p.sent.len();
    p.run_for(Duration::from_secs(120));
    assert_eq!(p.sent.len(), sent);
    assert_eq!(p.a.poll_timeout(), None);
}

#[test]
fn idle_session_sends_only_keepalives_and_survives() {
    let mut p = Pair::new();
    p.establish();
    let before = p.sent.len();
    p.run_for(Duration::from_secs(600));
    let during = p.sent.len() - before;
    // Keepalive every 15 s from each side, answered by a PONG: ~ 4 datagrams per 15 s.
    assert!(during <= 4 * 600 / 15 + 4, "{during} datagrams while idle");
    assert!(
        during >= 2 * 600 / 15 - 2,
        "{during} datagrams: keepalives missing"
    );
    ping_round_trip(&mut p, Side::A);
}

#[test]
fn silent_peer_times_out_as_idle() {
    let mut p = Pair::new();
    let (sa, _) = p.establish();
    // Cut the wire.
    p.hook = Some(Box::new(|_| Verdict::Drop));
    p.run_for(Duration::from_secs(60));
    assert!(p.events(Side::A).contains(&Event::SessionClosed {
        session: sa,
        peer: Some(p.b.peer_id()),
        reason: CloseReason::IdleTimeout
    }));
}

#[test]
fn unreachable_peer_gives_handshake_timeout_with_backoff() {
    let mut p = Pair::new();
    p.hook = Some(Box::new(|_| Verdict::Drop));
    let sa = p.connect();
    p.run_for(Duration::from_secs(20));
    assert!(p.events(Side::A).contains(&Event::SessionClosed {
        session: sa,
        peer: None,
        reason: CloseReason::HandshakeTimeout
    }));
    // Backoff: 500 ms doubling, capped at 4 s, for 15 s => far fewer than 30 sends.
    let inits = p.sent.iter().filter(|w| w.ty() == INIT).count();
    assert!((4..=8).contains(&inits), "{inits} inits");
}

#[test]
fn regression_responder_forgets_half_open_state_before_initiator_gives_up() {
    // Found by the simulator: with identical resends, a responder that already dropped its
    // half-open state rejected every later resend as a replay. Resends now start fresh.
    let mut ca = Config::default();
    ca.handshake_timeout = Duration::from_secs(60);
    let mut cb = Config::default();
    cb.handshake_timeout = Duration::from_secs(2);
    cb.handshake_retransmit = Duration::from_millis(200);
    let mut p = Pair::with_configs(ca, cb);
    // B's answers are lost for the first 8 seconds.
    p.hook = Some(Box::new(move |w| {
        if w.from == Side::B && w.seq < 1_000 && w.ty() == 0x02 && w.bytes.len() < 200 {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    }));
    let sa = p.connect();
    p.run_for(Duration::from_secs(8));
    assert_eq!(p.established(Side::A), None);
    p.hook = None;
    assert!(p.run_until(Duration::from_secs(30), |p| {
        p.established(Side::B).is_some()
    }));
    assert_eq!(p.established(Side::A), Some(sa));
    ping_round_trip(&mut p, Side::A);
}

/// Repeat handshakes between the same two nodes (the precomputed-key path: spare ephemeral
/// keys, memoised static-static secrets) all establish and carry traffic, and the deferred
/// key work after each one finishes within a few `handle_timeout` calls at the same instant:
/// `poll_timeout` stops answering "now" (no busy loop for a driver).
#[test]
fn repeat_handshakes_use_precomputed_keys_and_the_work_drains() {
    let mut p = Pair::new();
    for round in 0..6 {
        let count = |p: &Pair, side| {
            p.events(side)
                .iter()
                .filter(|e| matches!(e, Event::SessionEstablished { .. }))
                .count()
        };
        let sa = p.connect();
        assert!(
            p.run_until(Duration::from_secs(30), |p| count(p, Side::A) == round + 1
                && count(p, Side::B) == round + 1),
            "round {round}: no session"
        );
        // Settle at this instant: only the bounded precomputation may ask for "now".
        let now = p.now;
        let mut steps = 0;
        while p.a.poll_timeout() <= Some(now) || p.b.poll_timeout() <= Some(now) {
            assert!(p.step(now), "round {round}: stuck");
            steps += 1;
            assert!(steps <= 12, "round {round}: busy at one instant");
        }
        let id = p.a.ping(now, sa).unwrap();
        assert!(
            p.run_until(Duration::from_secs(10), |p| p.pongs(Side::A).contains(&id)),
            "round {round}: no pong"
        );
        p.a.close(p.now, sa, 0).unwrap();
        p.run_for(Duration::from_secs(1));
    }
    assert_eq!(p.a.stats().drops.total(), 0, "{:?}", p.a.stats().drops);
    // (B counts a few `UnexpectedState` drops after each close from the second round on,
    // as on main before the key cache: packets of the closing session.)
    for r in [DropReason::HandshakeFailed, DropReason::DecryptFailed] {
        assert_eq!(p.b.stats().drops.get(r), 0, "{:?}", p.b.stats().drops);
    }
}
