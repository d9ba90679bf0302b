use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

const MS: Duration = Duration::from_millis(1);

fn rec(t0: Instant) -> Recovery<u32> {
    Recovery::new(RecoveryConfig::default(), t0, 1200)
}

fn send(r: &mut Recovery<u32>, now: Instant, counter: u64, frames: &[u32]) {
    for &f in frames {
        r.push_frame(f);
    }
    r.on_packet_sent(now, counter, 1200, true, false);
}

fn ack(
    r: &mut Recovery<u32>,
    now: Instant,
    ranges: &[(u64, u64)],
) -> (AckOutcome, Vec<(FrameFate, u32)>) {
    let mut got = Vec::new();
    let out = r
        .on_ack_received(now, ranges.iter().copied(), Duration::ZERO, |fate, f| {
            got.push((fate, f))
        })
        .unwrap();
    (out, got)
}

#[test]
fn ack_releases_frames_and_samples_rtt() {
    let t0 = crate::fuzzing::epoch();
    let mut r = rec(t0);
    send(&mut r, t0, 0, &[1, 2]);
    send(&mut r, t0, 1, &[3]);
    // Non-eliciting packets are not tracked.
    r.push_frame(99);
    r.on_packet_sent(t0, 2, 50, false, false);
    assert_eq!(r.bytes_in_flight(), 2400);
    assert_eq!(r.tracked_packets(), 2);
    let (out, got) = ack(&mut r, t0 + 40 * MS, &[(0, 2)]);
    assert_eq!(out.newly_acked, 2);
    assert_eq!(
        got,
        vec![
            (FrameFate::Acked, 1),
            (FrameFate::Acked, 2),
            (FrameFate::Acked, 3)
        ]
    );
    // Largest acked (2) was not tracked, so no RTT sample from this ACK.
    assert!(!r.rtt().has_sample());
    assert_eq!(r.bytes_in_flight(), 0);
    assert_eq!(r.tracked_packets(), 0);
    assert!(r.frames.is_empty());
    send(&mut r, t0 + 40 * MS, 3, &[4]);
    let (_, got) = ack(&mut r, t0 + 80 * MS, &[(3, 3)]);
    assert_eq!(got, vec![(FrameFate::Acked, 4)]);
    assert_eq!(r.rtt().latest(), 40 * MS);
    // Duplicate ACK: nothing new.
    let (out, got) = ack(&mut r, t0 + 90 * MS, &[(0, 3)]);
    assert_eq!((out.newly_acked, got.len()), (0, 0));
}

#[test]
fn unsent_ack_is_an_error_and_changes_nothing() {
    let t0 = crate::fuzzing::epoch();
    let mut r = rec(t0);
    assert_eq!(
        r.on_ack_received(t0, [(0u64, 0u64)].into_iter(), Duration::ZERO, |_, _| {}),
        Err(AckError::UnsentPacket(0))
    );
    send(&mut r, t0, 5, &[1]);
    assert_eq!(
        r.on_ack_received(t0, [(5u64, 6u64)].into_iter(), Duration::ZERO, |_, _| {}),
        Err(AckError::UnsentPacket(6))
    );
    assert_eq!(r.bytes_in_flight(), 1200);
    // Huge ranges are intersected with the table, not iterated.
    let mut n = 0;
    r.on_ack_received(t0, [(0u64, 5u64)].into_iter(), Duration::ZERO, |_, _| {
        n += 1
    })
    .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn packet_threshold_then_time_threshold() {
    let t0 = crate::fuzzing::epoch();
    let mut r = rec(t0);
    for c in 0..5u64 {
        send(&mut r, t0 + MS * c as u32, c, &[c as u32]);
    }
    let now = t0 + 50 * MS;
    let (out, got) = ack(&mut r, now, &[(4, 4)]);
    assert_eq!(out.lost, 2);
    assert_eq!(
        got,
        vec![
            (FrameFate::Acked, 4),
            (FrameFate::Lost, 0),
            (FrameFate::Lost, 1)
        ]
    );
    // 2 and 3 wait for the time threshold: 9/8 · 46 ms after they were sent.
    let deadline = r.loss_detection_deadline().unwrap();
    assert_eq!(deadline, t0 + 2 * MS + r.rtt().loss_delay());
    let window_after_first_loss = r.congestion().window();
    let mut lost = Vec::new();
    assert_eq!(
        r.on_timeout(deadline - MS, |fate, f| lost.push((fate, f))),
        TimeoutOutcome::Nothing
    );
    let res = r.on_timeout(deadline, |fate, f| lost.push((fate, f)));
    assert_eq!(
        res,
        TimeoutOutcome::Lost {
            packets: 1,
            bytes: 1200
        }
    );
    assert_eq!(lost, vec![(FrameFate::Lost, 2)]);
    // Same recovery period: no second reduction.
    assert_eq!(r.congestion().window(), window_after_first_loss);
    assert!(window_after_first_loss < 12_000);
}

#[test]
fn pto_backs_off_and_resets_on_ack() {
    let t0 = crate::fuzzing::epoch();
    let mut r = rec(t0);
    assert_eq!(r.loss_detection_deadline(), None);
    send(&mut r, t0, 0, &[7]);
    let d1 = r.loss_detection_deadline().unwrap();
    // No sample: 333 + 4·166.5 + 25 ms.
    assert_eq!(d1 - t0, r.rtt().pto_base(Duration::from_millis(25)));
    assert_eq!(r.on_timeout(d1, |_, _| panic!()), TimeoutOutcome::Probe(2));
    assert_eq!(r.pto_count(), 1);
    let d2 = r.loss_detection_deadline().unwrap();
    assert_eq!(d2 - t0, 2 * (d1 - t0));
    for _ in 0..40 {
        let _ = r.on_timeout(r.loss_detection_deadline().unwrap(), |_, _| {});
    }
    assert!(r.pto() <= MAX_PTO);
    let (fid, frames) = r.oldest_unacked().unwrap();
    assert_eq!((fid, frames.collect::<Vec<_>>()), (0, vec![7]));
    send(&mut r, t0 + Duration::from_secs(1), 1, &[8]);
    ack(&mut r, t0 + Duration::from_secs(2), &[(1, 1)]);
    assert_eq!(r.pto_count(), 0);
}

/// Regression (found by the simulator's transfer sweep): with the backoff capped only at
/// 60 s, a sender whose ACKs were lost in a burst probed at 25 s, then 51 s after the last
/// packet it heard, so the 45 s idle timeout ended a session whose path still delivered
/// most packets. The cap a session sets (a third of its idle timeout) keeps probes coming.
#[test]
fn pto_backoff_respects_the_configured_cap() {
    let t0 = crate::fuzzing::epoch();
    let cap = Duration::from_secs(15);
    let mut r: Recovery<u32> = Recovery::new(
        RecoveryConfig {
            max_pto: cap,
            ..RecoveryConfig::default()
        },
        t0,
        1200,
    );
    send(&mut r, t0, 0, &[7]);
    let mut now = t0;
    let mut probes = 0u64;
    while now < t0 + Duration::from_secs(45) {
        now = r.loss_detection_deadline().unwrap();
        assert_eq!(r.on_timeout(now, |_, _| {}), TimeoutOutcome::Probe(2));
        probes += 1;
        assert!(r.pto() <= cap);
        // The probe goes out (and is lost).
        send(&mut r, now, probes, &[7]);
    }
    assert!(probes >= 6, "{probes} probes in 45 s");
    // A cap below the base PTO does not shorten the base.
    let tiny: Recovery<u32> = Recovery::new(
        RecoveryConfig {
            max_pto: Duration::from_millis(1),
            ..RecoveryConfig::default()
        },
        t0,
        1200,
    );
    assert_eq!(tiny.pto(), tiny.rtt().pto_base(Duration::from_millis(25)));
}

#[test]
fn persistent_congestion_collapses_window() {
    let t0 = crate::fuzzing::epoch();
    let mut r = rec(t0);
    send(&mut r, t0, 0, &[0]);
    ack(&mut r, t0 + 10 * MS, &[(0, 0)]);
    // Packets 1..=10 sent over 10 s, all lost; 11 acknowledged.
    for c in 1..=11u64 {
        send(
            &mut r,
            t0 + 20 * MS + Duration::from_secs(1) * (c as u32),
            c,
            &[c as u32],
        );
    }
    let (out, _) = ack(&mut r, t0 + Duration::from_secs(12), &[(11, 11)]);
    assert_eq!(out.lost, 10);
    assert!(out.persistent_congestion);
    assert_eq!(r.congestion().window(), r.congestion().min_window());
    // A lost run interrupted by an acknowledged packet is not persistent.
    let mut r = rec(t0);
    send(&mut r, t0, 0, &[0]);
    ack(&mut r, t0 + 10 * MS, &[(0, 0)]);
    for c in 1..=11u64 {
        send(
            &mut r,
            t0 + 20 * MS + Duration::from_secs(1) * (c as u32),
            c,
            &[c as u32],
        );
    }
    let (out, _) = ack(
        &mut r,
        t0 + Duration::from_secs(12),
        &[(11, 11), (7, 7), (3, 3)],
    );
    assert!(!out.persistent_congestion);
}

#[derive(Clone, Debug)]
enum Op {
    Send(u8),
    Ack(u64, u64),
    Advance(u16),
    Timeout,
    Discard(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4).prop_map(Op::Send),
        (0u64..64, 0u64..8).prop_map(|(a, l)| Op::Ack(a, l)),
        any::<u16>().prop_map(Op::Advance),
        Just(Op::Timeout),
        (0u8..3).prop_map(Op::Discard),
    ]
}

proptest! {
    /// Every recorded frame comes back exactly once, bytes in flight match the live packets,
    /// and after everything is acknowledged the rings are empty.
    #[test]
    fn frames_accounted_exactly_once(ops in proptest::collection::vec(op(), 0..200)) {
        let t0 = crate::fuzzing::epoch();
        let mut now = t0;
        let mut r = rec(t0);
        let mut next_counter = 0u64;
        let mut last_sent: Option<u64> = None;
        let mut next_frame = 0u32;
        let mut fates: BTreeMap<u32, u32> = BTreeMap::new();
        let mut sent_frames = 0u32;
        for op in ops {
            match op {
                Op::Send(k) => {
                    for _ in 0..k {
                        r.push_frame(next_frame);
                        next_frame += 1;
                        sent_frames += 1;
                    }
                    r.on_packet_sent(now, next_counter, 1000, true, false);
                    last_sent = Some(next_counter);
                    next_counter += 1 + u64::from(k % 2);
                }
                Op::Discard(k) => {
                    for _ in 0..k {
                        r.push_frame(u32::MAX);
                    }
                    r.discard_pending();
                }
                Op::Ack(a, l) => {
                    let Some(last) = last_sent else { continue };
                    let hi = (a + l).min(last);
                    let lo = a.min(hi);
                    r.on_ack_received(now, [(lo, hi)].into_iter(), Duration::ZERO, |_, f| {
                        *fates.entry(f).or_default() += 1;
                    }).unwrap();
                }
                Op::Advance(ms) => now += Duration::from_millis(u64::from(ms)),
                Op::Timeout => {
                    let _ = r.on_timeout(now, |_, f| { *fates.entry(f).or_default() += 1; });
                }
            }
            let live: u64 = r.packets.iter().filter(|p| p.state == State::Live).map(|p| u64::from(p.size)).sum();
            prop_assert_eq!(live, r.bytes_in_flight());
            prop_assert!(fates.values().all(|&n| n == 1));
            prop_assert!(r.congestion().window() >= r.congestion().min_window());
        }
        if let Some(last) = last_sent {
            r.on_ack_received(now, [(0, last)].into_iter(), Duration::ZERO, |_, f| {
                *fates.entry(f).or_default() += 1;
            }).unwrap();
        }
        prop_assert_eq!(fates.len() as u32, sent_frames);
        prop_assert!(fates.values().all(|&n| n == 1));
        prop_assert!(!fates.contains_key(&u32::MAX));
        prop_assert_eq!(r.bytes_in_flight(), 0);
        prop_assert_eq!(r.tracked_packets(), 0);
        prop_assert!(r.frames.is_empty());
    }
}
