//! tern-driver-mio on real UDP sockets over 127.0.0.1: handshakes, a 64 MiB stream checked
//! by SHA-256, 1,000 request/response pairs, datagrams, stream errors, GSO forced off, and
//! shutdown. Every assertion is on bytes, hashes, counts or reasons; no speed assertions.

#![allow(clippy::disallowed_methods)] // real sockets, real threads

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use common::{Pattern, pattern_digest};
use sha2::{Digest, Sha256};
use tern_driver_mio::{
    CloseReason, Endpoint, EndpointConfig, Error, Event, GsoState, Identity, UdpConfig, close_code,
};
use tern_udp::GsoOff;

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn endpoint(secret: u8) -> Endpoint {
    endpoint_with(secret, EndpointConfig::default())
}

fn endpoint_with(secret: u8, config: EndpointConfig) -> Endpoint {
    Endpoint::bind(lo(), Identity::from_secret([secret; 32]), config).expect("bind endpoint")
}

/// Sends `len` pattern bytes on a fresh stream to `port` and returns the digest the server
/// computed and the byte count it saw (the server answers with 8 + 32 bytes).
fn send_and_hash(client: &Endpoint, server: &Endpoint, port: u16, seed: u64, len: u64) {
    let listener = server.listen(port).unwrap();
    let receiver = thread::spawn(move || {
        let mut stream = listener.accept().expect("accept stream");
        let mut h = Sha256::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = stream.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            total += n as u64;
            h.update(&buf[..n]);
        }
        let digest: [u8; 32] = h.finalize().into();
        stream.write_all(&total.to_be_bytes()).unwrap();
        stream.write_all(&digest).unwrap();
        stream.finish().unwrap();
    });
    let session = client
        .connect(server.local_addr(), Some(server.peer_id()))
        .unwrap();
    let mut stream = session.open_stream(port).unwrap();
    let mut pattern = Pattern::new(seed, len);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = pattern.fill(&mut buf);
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).unwrap();
    }
    stream.finish().unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    receiver.join().unwrap();
    assert_eq!(answer.len(), 40);
    assert_eq!(u64::from_be_bytes(answer[..8].try_into().unwrap()), len);
    assert_eq!(answer[8..], pattern_digest(seed, len));
}

#[test]
fn handshake_ik_and_xx_authenticate_both_sides() {
    let server = endpoint(1);
    let client = endpoint(2);
    // IK: the client names the key it expects.
    let s = client
        .connect(server.local_addr(), Some(server.peer_id()))
        .unwrap();
    assert_eq!(s.peer(), server.peer_id());
    let accepted = server.accept().unwrap();
    assert_eq!(accepted.peer(), client.peer_id());
    // The ping round trip proves both directions carry encrypted traffic.
    let rtt = s.ping().unwrap();
    assert!(rtt > Duration::ZERO);
    assert!(accepted.ping().unwrap() > Duration::ZERO);
    // XX: no key given; whoever answers is reported.
    let s2 = client.connect(server.local_addr(), None).unwrap();
    assert_eq!(s2.peer(), server.peer_id());
    assert_ne!(s2.id(), s.id());
    assert_eq!(server.accept().unwrap().peer(), client.peer_id());
    let info = s.info().unwrap();
    assert_eq!(info.peer, Some(server.peer_id()));
    assert!(info.initiator);
    // Session-level events are reported in order.
    match client.next_event().unwrap() {
        Event::SessionEstablished {
            session,
            peer,
            initiator,
        } => {
            assert_eq!((session, peer, initiator), (s.id(), server.peer_id(), true));
        }
        other => panic!("unexpected event {other:?}"),
    }
}

#[test]
fn wrong_key_and_unreachable_peer_fail_with_reasons() {
    let server = endpoint(3);
    let mut config = EndpointConfig::default();
    config.node.handshake_timeout = Duration::from_millis(600);
    config.node.handshake_retransmit = Duration::from_millis(100);
    let client = endpoint_with(4, config);
    // A different key answers: the handshake is refused with PeerMismatch (or the
    // responder's reject hint ends it the same way).
    let stranger = Identity::from_secret([99; 32]).peer_id();
    match client.connect(server.local_addr(), Some(stranger)) {
        Err(Error::SessionClosed(CloseReason::PeerMismatch { .. }))
        | Err(Error::SessionClosed(CloseReason::HandshakeTimeout)) => {}
        other => panic!("expected a failed handshake, got {other:?}"),
    }
    // Nobody at that address: the handshake times out.
    let silent = std::net::UdpSocket::bind(lo()).unwrap();
    match client.connect(silent.local_addr().unwrap(), Some(server.peer_id())) {
        Err(Error::SessionClosed(CloseReason::HandshakeTimeout)) => {}
        other => panic!("expected HandshakeTimeout, got {other:?}"),
    }
}

#[test]
fn stream_of_64_mib_arrives_with_matching_sha256() {
    let server = endpoint(5);
    let client = endpoint(6);
    send_and_hash(&client, &server, 80, 0xC0FFEE, 64 << 20);
    let stats = client.stats().unwrap();
    assert!(stats.tx_bytes > 64 << 20, "{stats:?}");
}

#[test]
fn a_thousand_requests_get_their_own_responses() {
    let server = endpoint(7);
    let client = endpoint(8);
    let listener = server.listen(443).unwrap();
    let server_thread = thread::spawn(move || {
        for _ in 0..1000 {
            let mut s = listener.accept().unwrap();
            let mut req = Vec::new();
            s.read_to_end(&mut req).unwrap();
            // The response proves it answers this request: reversed bytes.
            req.reverse();
            s.write_all(&req).unwrap();
            s.finish().unwrap();
        }
    });
    let session = client
        .connect(server.local_addr(), Some(server.peer_id()))
        .unwrap();
    for i in 0u32..1000 {
        let mut s = session.open_stream(443).unwrap();
        let req: Vec<u8> = format!("request {i} ").bytes().cycle().take(200).collect();
        s.write_all(&req).unwrap();
        s.finish().unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let mut expected = req.clone();
        expected.reverse();
        assert_eq!(resp, expected, "request {i}");
    }
    server_thread.join().unwrap();
}

#[test]
fn built_in_echo_answers_on_port_7() {
    let server = endpoint(9);
    let client = endpoint(10);
    let session = client
        .connect(server.local_addr(), Some(server.peer_id()))
        .unwrap();
    let mut s = session.open_stream(7).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    // 100 kB fits the echo's windows, so writing everything before reading is fine.
    s.write_all(&data).unwrap();
    s.finish().unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn datagrams_round_trip_and_oversize_is_refused() {
    let server = endpoint(11);
    let client = endpoint(12);
    let session = client
        .connect(server.local_addr(), Some(server.peer_id()))
        .unwrap();
    let peer = server.accept().unwrap();
    let echo = thread::spawn(move || {
        for _ in 0..100 {
            let mut d = peer.recv_datagram().unwrap();
            d.push(0xEE);
            peer.send_datagram(&d).unwrap();
        }
    });
    let max = session.max_datagram_size().unwrap();
    assert!(max >= 1000, "max datagram {max}");
    for i in 0u32..100 {
        let msg: Vec<u8> = i.to_be_bytes().iter().copied().cycle().take(900).collect();
        session.send_datagram(&msg).unwrap();
        // Loopback does not lose datagrams, but a datagram is unreliable by contract: the
        // test waits for each echo before sending the next, so nothing overflows.
        let back = session.recv_datagram().unwrap();
        assert_eq!(&back[..900], &msg[..]);
        assert_eq!(back[900], 0xEE);
    }
    echo.join().unwrap();
    // Larger than any path MTU this endpoint probes for (1452).
    match session.send_datagram(&[0u8; 2000]) {
        Err(Error::Datagram(tern_core::SendDatagramError::TooLarge { size, max: m })) => {
            assert_eq!(size, 2000);
            assert!((max..1452).contains(&m), "limit {m}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn refused_reset_and_stopped_streams_report_typed_errors() {
    let server = endpoint(13);
    let client = endpoint(14);
    let listener = server.listen(9000).unwrap();
    let session = client
        .connect(server.local_addr(), Some(server.peer_id()))
        .unwrap();

    // Nothing listens on 9001 there.
    let mut refused = session.open_stream(9001).unwrap();
    let mut buf = [0u8; 16];
    match refused.read(&mut buf) {
        Err(Error::Refused(9001)) => {}
        other => panic!("expected Refused, got {other:?}"),
    }

    // The server resets its half and stops ours.
    let mut s = session.open_stream(9000).unwrap();
    s.write_all(b"hello").unwrap();
    let mut theirs = listener.accept().unwrap();
    let mut got = [0u8; 5];
    assert_eq!(theirs.read(&mut got).unwrap(), 5);
    assert_eq!(&got, b"hello");
    theirs.reset(77).unwrap();
    theirs.stop(78).unwrap();
    match s.read(&mut buf) {
        Err(Error::Reset(77)) => {}
        other => panic!("expected Reset(77), got {other:?}"),
    }
    // Writes fail once the STOP_SENDING arrived (the first ones may still be taken).
    let mut stopped = None;
    for _ in 0..1000 {
        match s.write(&[0u8; 1000]) {
            Ok(_) => thread::sleep(Duration::from_millis(1)),
            Err(e) => {
                stopped = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(stopped, Some(Error::Stopped(78))),
        "expected Stopped(78), got {stopped:?}"
    );
    // A finished stream cannot be written again.
    let mut f = session.open_stream(9000).unwrap();
    f.finish().unwrap();
    assert!(matches!(f.write(b"x"), Err(Error::StreamClosed)));
}

#[test]
fn gso_forced_off_still_moves_16_mib_intact() {
    let config = || {
        let mut c = EndpointConfig::default();
        c.udp = UdpConfig::without_offload();
        c
    };
    let server = endpoint_with(15, config());
    let client = endpoint_with(16, config());
    assert_eq!(
        client.gso_state().unwrap(),
        GsoState::Off(GsoOff::Config),
        "GSO must be off for this test"
    );
    send_and_hash(&client, &server, 80, 0xFA11, 16 << 20);
    assert_eq!(client.gso_state().unwrap(), GsoState::Off(GsoOff::Config));
}

#[test]
fn close_and_shutdown_are_seen_by_the_peer() {
    let server = endpoint(17);
    let client = endpoint(18);
    let s = client
        .connect(server.local_addr(), Some(server.peer_id()))
        .unwrap();
    let theirs = server.accept().unwrap();
    // A read blocked on the server side is released when the client closes.
    let mut stream = s.open_stream(7).unwrap();
    stream.write_all(b"x").unwrap();
    s.close(42).unwrap();
    assert_eq!(
        theirs.closed().unwrap(),
        Some(CloseReason::Peer { code: 42 })
    );
    assert_eq!(s.closed().unwrap(), Some(CloseReason::Local { code: 42 }));
    assert!(matches!(
        s.open_stream(7),
        Err(Error::SessionClosed(CloseReason::Local { code: 42 }))
    ));

    // Shutdown closes every session with NORMAL and ends every handle.
    let s2 = client
        .connect(server.local_addr(), Some(server.peer_id()))
        .unwrap();
    let theirs2 = server.accept().unwrap();
    let blocked = {
        let theirs2 = theirs2.clone();
        thread::spawn(move || theirs2.recv_datagram())
    };
    client.shutdown();
    assert_eq!(
        theirs2.closed().unwrap(),
        Some(CloseReason::Peer {
            code: close_code::NORMAL
        })
    );
    assert!(matches!(
        blocked.join().unwrap(),
        Err(Error::SessionClosed(CloseReason::Peer { code: 0 }))
    ));
    assert!(matches!(s2.ping(), Err(Error::EndpointClosed)));
    assert!(matches!(client.accept(), Err(Error::EndpointClosed)));
    drop(stream);
}
