//! Two-sided stream tests over the [`StreamPair`] link of the fuzzing module: packets are
//! built and parsed exactly as a session does; loss, duplication of acknowledgements and
//! reordering are applied by hand.

use super::*;
use crate::fuzzing::{StreamPair, pattern};
use crate::wire::frame::Frame;

fn config() -> TransportConfig {
    TransportConfig::default()
}

/// Tiny deterministic generator for loss and reordering decisions.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Runs the link with `loss_pct` packet loss and reordering, letting `app` act after each
/// round, until nothing moves. Returns packets sent.
fn run(p: &mut StreamPair, loss_pct: u64, seed: u64, mut app: impl FnMut(&mut StreamPair)) -> u64 {
    let mut rng = Lcg(seed);
    let mut packets = 0;
    for _ in 0..200_000 {
        app(p);
        let mut sent = false;
        for i in 0..2 {
            for _ in 0..4 {
                if p.send(i) {
                    packets += 1;
                    sent = true;
                }
            }
        }
        let mut moved = false;
        for i in 0..2 {
            while !p.sides[i].flight.is_empty() {
                let pick = rng.next() as usize;
                let drop = rng.next() % 100 < loss_pct;
                let ack_lost = rng.next() % 100 < loss_pct;
                p.deliver(i, pick, drop, ack_lost)
                    .expect("protocol violation");
                moved = true;
            }
        }
        if !sent && !moved {
            app(p);
            if !p.sides.iter().any(|s| s.set.has_pending_output()) {
                return packets;
            }
        }
    }
    panic!("link never went quiet");
}

fn read_available(p: &mut StreamPair, i: usize, ids: &[StreamId]) {
    for &id in ids {
        while let Ok(Some(_)) = p.read(i, id, 4096) {}
    }
}

#[test]
fn transfers_under_loss_end_only_after_every_byte_and_go_quiet() {
    for (loss, seed) in [(0, 1), (2, 2), (10, 3), (20, 4)] {
        let mut p = StreamPair::new(&config());
        let sizes = [0usize, 1, 70_000, 300_000];
        let mut ids = Vec::new();
        for (k, _) in sizes.iter().enumerate() {
            ids.push(p.sides[0].set.open(80 + k as u16).unwrap());
        }
        let mut accepted: Vec<StreamId> = Vec::new();
        let mut left: Vec<usize> = sizes.to_vec();
        let mut finished = vec![false; sizes.len()];
        let packets = run(&mut p, loss, seed, |p| {
            for (k, &id) in ids.iter().enumerate() {
                while left[k] > 0 {
                    match p.write(0, id, left[k].min(10_000)) {
                        Ok(n) => left[k] -= n,
                        Err(_) => break,
                    }
                }
                if left[k] == 0 && !finished[k] {
                    p.sides[0].set.finish(id).unwrap();
                    finished[k] = true;
                }
            }
            for (id, _) in p.accept_all(1) {
                accepted.push(id);
            }
            read_available(p, 1, &accepted);
            // The receiver closes its half once it saw the end.
            for &id in &accepted {
                if p.sides[1].read.get(&id).is_some_and(|r| r.1) {
                    let _ = p.sides[1].set.finish(id);
                }
            }
            for &id in &ids {
                let _ = p.read(0, id, 4096);
            }
        });
        assert_eq!(accepted.len(), sizes.len(), "loss {loss}");
        // Every byte, in order, then the end; the sender saw every stream finish.
        let mut got: Vec<(u64, bool)> = p.sides[1].read.values().copied().collect();
        got.sort();
        let mut want: Vec<(u64, bool)> = sizes.iter().map(|&s| (s as u64, true)).collect();
        want.sort();
        assert_eq!(got, want, "loss {loss}");
        assert_eq!(p.sides[0].finished.len(), sizes.len(), "loss {loss}");
        // Both halves closed: every stream freed, and nothing more is ever sent.
        assert!(
            p.sides[0].set.is_empty() && p.sides[1].set.is_empty(),
            "loss {loss}"
        );
        for _ in 0..10 {
            assert!(
                !p.send(0) && !p.send(1),
                "closed streams keep talking (loss {loss})"
            );
        }
        assert!(packets > 0);
    }
}

#[test]
fn stale_handles_are_errors() {
    let mut p = StreamPair::new(&config());
    let id = p.sides[0].set.open(7).unwrap();
    p.sides[0].set.finish(id).unwrap();
    p.settle();
    let (peer, port) = p.accept_all(1)[0];
    assert_eq!(port, 7);
    assert_eq!(p.sides[1].set.read(peer, &mut [0; 8]), Ok(None));
    p.sides[1].set.finish(peer).unwrap();
    p.settle();
    assert_eq!(p.sides[0].set.read(id, &mut [0; 8]), Ok(None));
    // Both gone now.
    assert_eq!(
        p.sides[0].set.write(id, b"x"),
        Err(WriteError::UnknownStream)
    );
    assert_eq!(
        p.sides[0].set.read(id, &mut [0; 8]),
        Err(ReadError::UnknownStream)
    );
    assert_eq!(p.sides[1].set.finish(peer), Err(StreamError::UnknownStream));
    // A new stream may reuse the slot but never the handle or the wire id.
    let id2 = p.sides[0].set.open(7).unwrap();
    assert_eq!(id2.index(), id.index());
    assert_ne!(id2, id);
    assert_ne!(p.sides[0].set.wire_id(id2), Some(0));
}

#[test]
fn stream_limits_and_credit() {
    let mut p = StreamPair::new(&TransportConfig {
        max_streams: 20,
        ..config()
    });
    let mut ids = Vec::new();
    while let Ok(id) = p.sides[0].set.open(1) {
        ids.push(id);
    }
    // Before any MAX_STREAMS only the initial limit is known.
    assert_eq!(ids.len() as u64, INITIAL_MAX_STREAMS);
    p.settle();
    assert!(p.sides[0].events.contains(&StreamEvent::Available));
    while let Ok(id) = p.sides[0].set.open(1) {
        ids.push(id);
    }
    assert_eq!(ids.len(), 20);
    assert_eq!(p.sides[0].set.open(1), Err(OpenError::Blocked));
    // Close one completely: the peer grants one more.
    let peers = p.accept_all(1);
    let (a, b) = (ids[0], peers[0].0);
    p.sides[0].set.finish(a).unwrap();
    p.sides[1].set.finish(b).unwrap();
    p.settle();
    assert_eq!(p.sides[1].set.read(b, &mut []), Ok(None));
    p.settle();
    assert_eq!(p.sides[0].set.read(a, &mut []), Ok(None));
    p.settle();
    assert!(p.sides[0].set.open(1).is_ok());
    assert_eq!(p.sides[0].set.open(1), Err(OpenError::Blocked));
}

#[test]
fn a_reader_that_stops_reading_blocks_only_its_stream() {
    let cfg = TransportConfig {
        stream_recv_window: 128 << 10,
        session_recv_window: 1 << 20,
        ..config()
    };
    let mut p = StreamPair::new(&cfg);
    let stuck = p.sides[0].set.open(1).unwrap();
    let flowing = p.sides[0].set.open(2).unwrap();
    let mut flowed = 0u64;
    let mut stuck_written = 0u64;
    let mut blocked = false;
    let mut accepted = Vec::new();
    for _ in 0..2000 {
        match p.write(0, stuck, 8192) {
            Ok(n) => stuck_written += n as u64,
            Err(WriteError::Blocked) => blocked = true,
            Err(e) => panic!("{e:?}"),
        }
        if let Ok(n) = p.write(0, flowing, 8192) {
            flowed += n as u64;
        }
        p.send(0);
        p.send(1);
        while !p.sides[0].flight.is_empty() {
            p.deliver(0, 0, false, false).unwrap();
        }
        while !p.sides[1].flight.is_empty() {
            p.deliver(1, 0, false, false).unwrap();
        }
        for (id, port) in p.accept_all(1) {
            accepted.push((id, port));
        }
        // Only the port-2 stream is read.
        for &(id, port) in &accepted {
            if port == 2 {
                while let Ok(Some(_)) = p.read(1, id, 65536) {}
            }
        }
        let (_, recv) = p.sides[1].set.buffered_bytes();
        assert!(
            recv <= cfg.stream_recv_window,
            "receive memory beyond the window: {recv}"
        );
        let (send, _) = p.sides[0].set.buffered_bytes();
        assert!(send <= 2 * cfg.stream_send_buffer);
    }
    assert!(blocked, "the sender was never told");
    // The stuck stream stopped at the receiver's window (initial credit plus one update at
    // most), the other kept flowing far beyond it.
    assert!(stuck_written <= cfg.stream_recv_window, "{stuck_written}");
    assert!(flowed > 10 * cfg.stream_recv_window, "{flowed}");
    // When the reader resumes, the writer is told it may write again.
    let (stuck_peer, _) = *accepted.iter().find(|(_, port)| *port == 1).unwrap();
    while let Ok(Some(_)) = p.read(1, stuck_peer, 65536) {}
    p.settle();
    assert!(
        p.sides[0]
            .events
            .contains(&StreamEvent::Writable { stream: stuck })
    );
}

#[test]
fn priorities_then_round_robin() {
    let mut p = StreamPair::new(&config());
    let low = p.sides[0].set.open(1).unwrap();
    let high = p.sides[0].set.open(2).unwrap();
    let (a, b) = (
        p.sides[0].set.open(3).unwrap(),
        p.sides[0].set.open(4).unwrap(),
    );
    p.settle();
    p.sides[0].set.set_priority(high, 5).unwrap();
    p.sides[0].set.set_priority(low, -1).unwrap();
    for id in [low, high, a, b] {
        p.write(0, id, 5000).unwrap();
    }
    let mut order = Vec::new();
    let mut buf = [0u8; 1200];
    loop {
        let mut w = Writer::new(&mut buf);
        let Some(SentFrame::Stream { stream, .. }) = p.sides[0].set.write_stream_frame(&mut w)
        else {
            break;
        };
        order.push(stream);
    }
    let first_not_high = order.iter().position(|&s| s != high).unwrap();
    assert!(order[..first_not_high].iter().all(|&s| s == high));
    let last_low = order.iter().position(|&s| s == low).unwrap();
    assert!(
        order[last_low..].iter().all(|&s| s == low),
        "low priority went before equal ones"
    );
    // a and b alternate.
    let mid: Vec<_> = order[first_not_high..last_low].to_vec();
    for pair in mid.windows(2) {
        assert_ne!(pair[0], pair[1], "no round robin: {mid:?}");
    }
}

#[test]
fn reset_and_stop_reach_the_peer() {
    let mut p = StreamPair::new(&config());
    let x = p.sides[0].set.open(1).unwrap();
    let y = p.sides[0].set.open(2).unwrap();
    p.write(0, x, 3000).unwrap();
    p.write(0, y, 3000).unwrap();
    p.settle();
    let peers = p.accept_all(1);
    let (px, py) = (peers[0].0, peers[1].0);
    // Reset: the reader learns the code after the data it already had, or at once.
    p.sides[0].set.reset(x, 42).unwrap();
    p.settle();
    assert!(p.sides[1].events.contains(&StreamEvent::Reset {
        stream: px,
        code: 42
    }));
    let mut buf = [0u8; 8192];
    assert_eq!(p.sides[1].set.read(px, &mut buf), Err(ReadError::Reset(42)));
    // Stop: the writer is told and its writes fail with the code.
    p.sides[1].set.stop(py, 9).unwrap();
    p.settle();
    assert!(
        p.sides[0]
            .events
            .contains(&StreamEvent::Stopped { stream: y, code: 9 })
    );
    assert_eq!(
        p.sides[0].set.write(y, b"more"),
        Err(WriteError::Stopped(9))
    );
    assert_eq!(p.sides[1].set.read(py, &mut buf), Err(ReadError::Closed));
}

#[test]
fn protocol_violations_are_typed_and_change_nothing() {
    let cfg = config();
    let sid = SessionId {
        index: 0,
        generation: 0,
    };
    let mut s = StreamSet::new(sid, false, &cfg, InitialLimits::default());
    // Peer (initiator) stream 0: within the initial window is fine, beyond it is not.
    s.on_stream_frame(0, Some(80), 0, &[1; 100], false).unwrap();
    let over = INITIAL_MAX_STREAM_DATA;
    assert_eq!(
        s.on_stream_frame(0, None, over, &[1], false),
        Err(InputError::FlowControl)
    );
    // Stream numbers beyond the initial limit.
    assert_eq!(
        s.on_stream_frame(INITIAL_MAX_STREAMS << 1, Some(1), 0, &[], false),
        Err(InputError::StreamLimit)
    );
    // Our own (responder, odd) stream that we never opened.
    assert_eq!(
        s.on_stream_frame(1, Some(1), 0, &[], false),
        Err(InputError::StreamState)
    );
    assert_eq!(s.on_stop_sending(3, 0), Err(InputError::StreamState));
    // Final size conflicts.
    s.on_stream_frame(0, None, 100, &[1; 10], true).unwrap();
    assert_eq!(
        s.on_stream_frame(0, None, 100, &[1; 11], false),
        Err(InputError::FinalSize)
    );
    assert_eq!(s.on_reset_stream(0, 1, 50), Err(InputError::FinalSize));
    assert!(InputError::FlowControl.is_protocol_violation());
    assert!(!InputError::TooManyRanges.is_protocol_violation());
    // Session-level flow control: many streams each within their window but over the total.
    let mut s = StreamSet::new(sid, false, &cfg, InitialLimits::default());
    let per = INITIAL_MAX_STREAM_DATA;
    let mut total = 0;
    let mut err = None;
    for k in 0..INITIAL_MAX_STREAMS {
        match s.on_stream_frame(k << 1, None, per - 1, &[0], false) {
            Ok(()) => total += per,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(err, Some(InputError::FlowControl));
    assert!(total <= INITIAL_MAX_DATA);
}

#[test]
fn opening_frame_announces_port_and_out_of_order_data_waits() {
    let cfg = config();
    let sid = SessionId {
        index: 0,
        generation: 0,
    };
    let mut s = StreamSet::new(sid, false, &cfg, InitialLimits::default());
    // Data before the opening frame: buffered, not announced.
    s.on_stream_frame(4, None, 5, b"world", true).unwrap();
    assert_eq!(s.accept(), None);
    // Stream 4 implicitly opened 0 and 2 too; they are announced when their ports arrive.
    s.on_stream_frame(4, Some(7), 0, b"hello", false).unwrap();
    let (id, port) = s.accept().unwrap();
    assert_eq!(port, 7);
    assert_eq!(
        s.poll_event(),
        Some(StreamEvent::Opened {
            stream: id,
            port: 7
        })
    );
    assert_eq!(s.poll_event(), Some(StreamEvent::Readable { stream: id }));
    let mut buf = [0u8; 32];
    assert_eq!(s.read(id, &mut buf), Ok(Some(10)));
    assert_eq!(&buf[..10], b"helloworld");
    assert_eq!(s.read(id, &mut buf), Ok(None));
    // A reset for a stream never announced closes it quietly (and resets our half).
    s.on_reset_stream(0, 3, 0).unwrap();
    assert_eq!(s.accept(), None);
    let mut out = [0u8; 64];
    let mut w = Writer::new(&mut out);
    let f = s.write_control_frame(&mut w);
    assert!(matches!(
        f,
        Some(SentFrame::MaxData)
            | Some(SentFrame::MaxStreams)
            | Some(SentFrame::ResetStream { .. })
            | Some(SentFrame::MaxStreamData { .. })
    ));
}

#[test]
fn echo_and_refuse() {
    let mut p = StreamPair::new(&config());
    let e = p.sides[0].set.open(ECHO_PORT).unwrap();
    let r = p.sides[0].set.open(9999).unwrap();
    p.write(0, e, 50_000).unwrap();
    p.sides[0].set.finish(e).unwrap();
    let mut scratch = [0u8; 4096];
    let mut echoed = 0;
    let mut got = Vec::new();
    for _ in 0..1000 {
        p.settle();
        for (id, port) in p.accept_all(1) {
            if port == ECHO_PORT {
                got.push(id);
            } else {
                p.sides[1].set.refuse(id, 404).unwrap();
            }
        }
        for &id in &got {
            echoed += p.sides[1].set.echo(id, &mut scratch).unwrap_or(0);
        }
        if p.sides[0].finished.contains(&e) && p.sides[1].set.is_empty() {
            break;
        }
    }
    assert_eq!(echoed, 50_000);
    // The echoed bytes are the pattern of the stream as written.
    let wire = p.sides[0].set.wire_id(e).unwrap();
    let mut back = vec![0u8; 60_000];
    let mut n = 0;
    while let Ok(Some(k)) = p.sides[0].set.read(e, &mut back[n..]) {
        n += k;
    }
    assert_eq!(n, 50_000);
    assert!(
        back[..n]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern(wire, i as u64))
    );
    assert!(p.sides[0].events.contains(&StreamEvent::Stopped {
        stream: r,
        code: 404
    }));
    assert!(p.sides[0].events.contains(&StreamEvent::Reset {
        stream: r,
        code: 404
    }));
}

#[test]
fn frames_written_parse_back() {
    let mut p = StreamPair::new(&config());
    let id = p.sides[0].set.open(443).unwrap();
    p.write(0, id, 10).unwrap();
    let mut buf = [0u8; 1200];
    let mut w = Writer::new(&mut buf);
    while p.sides[0].set.write_control_frame(&mut w).is_some() {}
    let f = p.sides[0].set.write_stream_frame(&mut w).unwrap();
    assert_eq!(
        f,
        SentFrame::Stream {
            stream: id,
            offset: 0,
            len: 10,
            fin: false
        }
    );
    let n = w.len();
    let stream_frame = frame::frames(&buf[..n])
        .map(Result::unwrap)
        .find(|f| matches!(f, Frame::Stream { .. }))
        .unwrap();
    let Frame::Stream {
        stream,
        port,
        offset,
        data,
        fin,
    } = stream_frame
    else {
        unreachable!()
    };
    assert_eq!(
        (stream, port, offset, data.len(), fin),
        (0, Some(443), 0, 10, false)
    );
}

/// Regression (found by the simulator's transfer sweep): a `write` that took only part of
/// the data (the peer's credit ran out mid-write) did not arm `StreamWritable`, so a writer
/// that waited for the event after a short write stalled forever once credit came back.
#[test]
fn short_write_arms_writable() {
    let mut p = StreamPair::new(&config());
    let id = p.sides[0].set.open(80).unwrap();
    // The initial stream credit is 64 KiB: a 100 KiB write is short.
    let n = p.write(0, id, 100 << 10).unwrap();
    assert_eq!(n as u64, INITIAL_MAX_STREAM_DATA);
    let mut accepted = None;
    run(&mut p, 0, 7, |p| {
        if accepted.is_none() {
            accepted = p.sides[1].set.accept().map(|(s, _)| s);
        }
        if let Some(s) = accepted {
            while let Ok(Some(_)) = p.read(1, s, 8192) {}
        }
    });
    assert!(
        p.sides[0]
            .events
            .contains(&StreamEvent::Writable { stream: id }),
        "no StreamWritable after a short write: {:?}",
        p.sides[0].events
    );
    assert!(p.sides[0].set.write_room(id).unwrap() > 0);
}
