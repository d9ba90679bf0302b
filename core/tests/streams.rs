//! Streams and datagrams between two nodes in virtual time: bytes arrive intact and in
//! order, FIN only after the last byte, echo on port 7, refusal of unlistened ports, loss
//! recovery, datagrams.

mod common;

use std::time::Duration;

use common::*;
use tern_core::{Event, StreamId};

fn pattern(offset: usize) -> u8 {
    (offset.wrapping_mul(131) % 251) as u8
}

/// Writes `total` bytes on `tx` (A) and reads them on the peer's stream; returns the bytes
/// read and whether the FIN was seen.
fn transfer(p: &mut Pair, tx: StreamId, total: usize, limit: Duration) -> (Vec<u8>, bool) {
    let mut written = 0usize;
    let mut got = Vec::with_capacity(total);
    let mut fin = false;
    let mut rx: Option<StreamId> = None;
    let mut finished_sent = false;
    let deadline = p.now + limit;
    let mut buf = vec![0u8; 64 << 10];
    while p.now < deadline && !fin {
        // Write as much as the stream takes.
        if written < total {
            let chunk: Vec<u8> = (written..(written + 32_768).min(total))
                .map(pattern)
                .collect();
            if let Some(mut s) = p.a.stream(tx)
                && let Ok(n) = s.write(&chunk)
            {
                written += n;
            }
        }
        if written == total && !finished_sent {
            p.a.stream(tx).unwrap().finish().unwrap();
            finished_sent = true;
        }
        if rx.is_none() {
            rx = p.events_b.iter().find_map(|e| match e {
                Event::StreamOpened { stream, .. } => Some(*stream),
                _ => None,
            });
        }
        if let Some(id) = rx
            && let Some(mut s) = p.b.stream(id)
        {
            loop {
                match s.read(&mut buf) {
                    Ok(Some(n)) => got.extend_from_slice(&buf[..n]),
                    Ok(None) => {
                        fin = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        let step_end = p.now + Duration::from_millis(5);
        p.run_for(step_end - p.now);
    }
    (got, fin)
}

#[test]
fn a_stream_carries_bytes_in_order_and_ends_with_fin() {
    let mut p = Pair::new();
    let (sa, _) = p.establish();
    p.b.listen(5000).unwrap();
    let tx = p.a.open_stream(sa, 5000).unwrap();
    let total = 3 << 20;
    let (got, fin) = transfer(&mut p, tx, total, Duration::from_secs(60));
    assert!(fin, "no FIN after {} of {total} bytes", got.len());
    assert_eq!(got.len(), total);
    assert!(
        got.iter().enumerate().all(|(i, b)| *b == pattern(i)),
        "corrupted"
    );
    p.run_for(Duration::from_secs(1));
    assert!(p.events_a.contains(&Event::StreamFinished { stream: tx }));
}

#[test]
fn a_lossy_link_still_delivers_every_byte_once() {
    let mut p = Pair::new();
    let mut n = 0u64;
    // 5 % loss, both directions, deterministic.
    p.hook = Some(Box::new(move |_| {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if (n >> 33) % 20 == 0 {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    }));
    let (sa, _) = p.establish();
    p.b.listen(5000).unwrap();
    let tx = p.a.open_stream(sa, 5000).unwrap();
    let total = 1 << 20;
    let (got, fin) = transfer(&mut p, tx, total, Duration::from_secs(120));
    assert!(fin);
    assert_eq!(got.len(), total);
    assert!(got.iter().enumerate().all(|(i, b)| *b == pattern(i)));
}

#[test]
fn echo_port_answers_and_unlistened_ports_are_refused() {
    let mut p = Pair::new();
    let (sa, _) = p.establish();
    let echo = p.a.open_stream(sa, 7).unwrap();
    {
        let mut s = p.a.stream(echo).unwrap();
        assert_eq!(s.write(b"hello, tern").unwrap(), 11);
        s.finish().unwrap();
    }
    p.run_for(Duration::from_secs(1));
    let mut buf = [0u8; 64];
    let mut s = p.a.stream(echo).unwrap();
    assert_eq!(s.read(&mut buf).unwrap(), Some(11));
    assert_eq!(&buf[..11], b"hello, tern");
    assert_eq!(
        s.read(&mut buf).unwrap(),
        None,
        "echo finishes after the peer finished"
    );
    drop(s);
    let nobody = p.a.open_stream(sa, 4444).unwrap();
    p.a.stream(nobody).unwrap().write(b"anyone?").unwrap();
    p.run_for(Duration::from_secs(1));
    assert!(
        p.events_a.contains(&Event::StreamRefused {
            stream: nobody,
            port: 4444
        }),
        "{:?}",
        p.events_a
    );
    assert!(
        !p.events_b
            .iter()
            .any(|e| matches!(e, Event::StreamOpened { .. }))
    );
}

#[test]
fn listening_twice_and_on_the_echo_port_are_typed_errors() {
    let mut p = Pair::new();
    p.b.listen(80).unwrap();
    assert_eq!(p.b.listen(80), Err(tern_core::ListenError::InUse(80)));
    assert_eq!(p.b.listen(7), Err(tern_core::ListenError::Reserved(7)));
    assert!(p.b.unlisten(80));
    assert!(p.b.listen(80).is_ok());
}

#[test]
fn datagrams_arrive_and_oversize_is_a_typed_error() {
    let mut p = Pair::new();
    let (sa, sb) = p.establish();
    let max = p.a.max_datagram_size(sa).unwrap();
    assert!(max >= 1100, "{max}");
    p.a.send_datagram(sa, b"unreliable hello").unwrap();
    p.run_for(Duration::from_millis(100));
    assert!(
        p.events_b
            .contains(&Event::DatagramReceived { session: sb })
    );
    let mut buf = [0u8; 2048];
    let n = p.b.recv_datagram(sb, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"unreliable hello");
    assert_eq!(p.b.recv_datagram(sb, &mut buf), None);
    // The limit follows the path MTU, which discovery raised meanwhile (no MTU limit here).
    let max_now = p.a.max_datagram_size(sa).unwrap();
    assert!(
        max_now > max,
        "PMTU discovery raised the datagram limit: {max} -> {max_now}"
    );
    let max = max_now;
    let too_big = vec![0u8; max + 1];
    assert_eq!(
        p.a.send_datagram(sa, &too_big),
        Err(tern_core::SendDatagramError::TooLarge { size: max + 1, max })
    );
}

#[test]
fn stale_stream_handles_are_rejected() {
    let mut p = Pair::new();
    let (sa, _) = p.establish();
    let s = p.a.open_stream(sa, 7).unwrap();
    let now = p.now;
    p.a.close(now, sa, 0).unwrap();
    assert!(p.a.stream(s).is_none());
    assert!(p.a.open_stream(sa, 7).is_err());
}
