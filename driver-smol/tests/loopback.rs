//! tern-driver-smol on real UDP sockets over 127.0.0.1: handshakes, a 64 MiB stream checked
//! by SHA-256, 1,000 request/response pairs, datagrams, stream errors, GSO forced off,
//! close and shutdown, and a driver spawned on the caller's executor. Every assertion is on
//! bytes, hashes, counts or reasons; no speed assertions.

#![allow(clippy::disallowed_methods)] // real sockets, real threads

#[path = "../../driver-mio/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Pattern, pattern_digest};
use sha2::{Digest, Sha256};
use smol::io::AsyncReadExt;
use tern_driver_smol::{
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

/// Sends `len` pattern bytes on a fresh stream to `port`; the server answers with the byte
/// count and the SHA-256 it computed, which must match the pattern's.
async fn send_and_hash(client: &Endpoint, server: &Endpoint, port: u16, seed: u64, len: u64) {
    let listener = server.listen(port).unwrap();
    let receiver = smol::spawn(async move {
        let mut stream = listener.accept().await.expect("accept stream");
        let mut h = Sha256::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            total += n as u64;
            h.update(&buf[..n]);
        }
        let digest: [u8; 32] = h.finalize().into();
        stream.write_all(&total.to_be_bytes()).await.unwrap();
        stream.write_all(&digest).await.unwrap();
        stream.finish().unwrap();
    });
    let session = client
        .connect(server.local_addr(), Some(server.peer_id()))
        .await
        .unwrap();
    let mut stream = session.open_stream(port).await.unwrap();
    let mut pattern = Pattern::new(seed, len);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = pattern.fill(&mut buf);
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await.unwrap();
    }
    stream.finish().unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    receiver.await;
    assert_eq!(answer.len(), 40);
    assert_eq!(u64::from_be_bytes(answer[..8].try_into().unwrap()), len);
    assert_eq!(answer[8..], pattern_digest(seed, len));
}

#[test]
fn handshake_ik_and_xx_authenticate_both_sides() {
    smol::block_on(async {
        let server = endpoint(1);
        let client = endpoint(2);
        let s = client
            .connect(server.local_addr(), Some(server.peer_id()))
            .await
            .unwrap();
        assert_eq!(s.peer(), server.peer_id());
        let accepted = server.accept().await.unwrap();
        assert_eq!(accepted.peer(), client.peer_id());
        assert!(s.ping().await.unwrap() > Duration::ZERO);
        assert!(accepted.ping().await.unwrap() > Duration::ZERO);
        let s2 = client.connect(server.local_addr(), None).await.unwrap();
        assert_eq!(s2.peer(), server.peer_id());
        assert_ne!(s2.id(), s.id());
        assert_eq!(server.accept().await.unwrap().peer(), client.peer_id());
        let info = s.info().unwrap();
        assert_eq!(info.peer, Some(server.peer_id()));
        assert!(info.initiator);
        // Raw node access and session lookup by key.
        assert_eq!(client.with_node(|n, _| n.session_count()).unwrap(), 2);
        let latest = server.session_with(client.peer_id()).unwrap().unwrap();
        assert_eq!(latest.peer(), client.peer_id());
        let listener = server.listen(5).unwrap();
        assert!(listener.try_accept().unwrap().is_none());
        match client.next_event().await.unwrap() {
            Event::SessionEstablished {
                session,
                peer,
                initiator,
            } => assert_eq!((session, peer, initiator), (s.id(), server.peer_id(), true)),
            other => panic!("unexpected event {other:?}"),
        }
    });
}

#[test]
fn wrong_key_and_unreachable_peer_fail_with_reasons() {
    smol::block_on(async {
        let server = endpoint(3);
        let mut config = EndpointConfig::default();
        config.node.handshake_timeout = Duration::from_millis(600);
        config.node.handshake_retransmit = Duration::from_millis(100);
        let client = endpoint_with(4, config);
        let stranger = Identity::from_secret([99; 32]).peer_id();
        match client.connect(server.local_addr(), Some(stranger)).await {
            Err(Error::SessionClosed(CloseReason::PeerMismatch { .. }))
            | Err(Error::SessionClosed(CloseReason::HandshakeTimeout)) => {}
            other => panic!("expected a failed handshake, got {other:?}"),
        }
        let silent = std::net::UdpSocket::bind(lo()).unwrap();
        match client
            .connect(silent.local_addr().unwrap(), Some(server.peer_id()))
            .await
        {
            Err(Error::SessionClosed(CloseReason::HandshakeTimeout)) => {}
            other => panic!("expected HandshakeTimeout, got {other:?}"),
        }
    });
}

#[test]
fn stream_of_64_mib_arrives_with_matching_sha256() {
    smol::block_on(async {
        let server = endpoint(5);
        let client = endpoint(6);
        send_and_hash(&client, &server, 80, 0xC0FFEE, 64 << 20).await;
        assert!(client.stats().unwrap().tx_bytes > 64 << 20);
    });
}

#[test]
fn a_thousand_requests_get_their_own_responses() {
    smol::block_on(async {
        let server = endpoint(7);
        let client = endpoint(8);
        let listener = server.listen(443).unwrap();
        let server_task = smol::spawn(async move {
            for _ in 0..1000 {
                let mut s = listener.accept().await.unwrap();
                let mut req = Vec::new();
                s.read_to_end(&mut req).await.unwrap();
                req.reverse();
                s.write_all(&req).await.unwrap();
                s.finish().unwrap();
            }
        });
        let session = client
            .connect(server.local_addr(), Some(server.peer_id()))
            .await
            .unwrap();
        for i in 0u32..1000 {
            let mut s = session.open_stream(443).await.unwrap();
            let req: Vec<u8> = format!("request {i} ").bytes().cycle().take(200).collect();
            s.write_all(&req).await.unwrap();
            s.finish().unwrap();
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).await.unwrap();
            let mut expected = req.clone();
            expected.reverse();
            assert_eq!(resp, expected, "request {i}");
        }
        server_task.await;
    });
}

#[test]
fn datagrams_round_trip_and_oversize_is_refused() {
    smol::block_on(async {
        let server = endpoint(11);
        let client = endpoint(12);
        let session = client
            .connect(server.local_addr(), Some(server.peer_id()))
            .await
            .unwrap();
        let peer = server.accept().await.unwrap();
        let echo = smol::spawn(async move {
            for _ in 0..100 {
                let mut d = peer.recv_datagram().await.unwrap();
                d.push(0xEE);
                peer.send_datagram(&d).unwrap();
            }
        });
        let max = session.max_datagram_size().unwrap();
        assert!(max >= 1000, "max datagram {max}");
        for i in 0u32..100 {
            let msg: Vec<u8> = i.to_be_bytes().iter().copied().cycle().take(900).collect();
            session.send_datagram(&msg).unwrap();
            let back = session.recv_datagram().await.unwrap();
            assert_eq!(&back[..900], &msg[..]);
            assert_eq!(back[900], 0xEE);
        }
        echo.await;
        match session.send_datagram(&[0u8; 2000]) {
            Err(Error::Datagram(tern_core::SendDatagramError::TooLarge { size, max: m })) => {
                assert_eq!(size, 2000);
                assert!((max..1452).contains(&m), "limit {m}");
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    });
}

#[test]
fn refused_reset_and_stopped_streams_report_typed_errors() {
    smol::block_on(async {
        let server = endpoint(13);
        let client = endpoint(14);
        let listener = server.listen(9000).unwrap();
        let session = client
            .connect(server.local_addr(), Some(server.peer_id()))
            .await
            .unwrap();
        let mut refused = session.open_stream(9001).await.unwrap();
        let mut buf = [0u8; 16];
        match refused.read(&mut buf).await {
            Err(Error::Refused(9001)) => {}
            other => panic!("expected Refused, got {other:?}"),
        }
        let mut s = session.open_stream(9000).await.unwrap();
        s.write_all(b"hello").await.unwrap();
        let mut theirs = listener.accept().await.unwrap();
        let mut got = [0u8; 5];
        assert_eq!(theirs.read(&mut got).await.unwrap(), 5);
        assert_eq!(&got, b"hello");
        theirs.reset(77).unwrap();
        theirs.stop(78).unwrap();
        match s.read(&mut buf).await {
            Err(Error::Reset(77)) => {}
            other => panic!("expected Reset(77), got {other:?}"),
        }
        let mut stopped = None;
        for _ in 0..1000 {
            match s.write(&[0u8; 1000]).await {
                Ok(_) => smol::Timer::after(Duration::from_millis(1)).await,
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            };
        }
        assert!(
            matches!(stopped, Some(Error::Stopped(78))),
            "expected Stopped(78), got {stopped:?}"
        );
        let mut f = session.open_stream(9000).await.unwrap();
        f.finish().unwrap();
        assert!(matches!(f.write(b"x").await, Err(Error::StreamClosed)));
    });
}

#[test]
fn gso_forced_off_still_moves_16_mib_intact() {
    smol::block_on(async {
        let config = || {
            let mut c = EndpointConfig::default();
            c.udp = UdpConfig::without_offload();
            c
        };
        let server = endpoint_with(15, config());
        let client = endpoint_with(16, config());
        assert_eq!(client.gso_state().unwrap(), GsoState::Off(GsoOff::Config));
        send_and_hash(&client, &server, 80, 0xFA11, 16 << 20).await;
        assert_eq!(client.gso_state().unwrap(), GsoState::Off(GsoOff::Config));
    });
}

#[test]
fn close_and_shutdown_are_seen_by_the_peer() {
    smol::block_on(async {
        let server = endpoint(17);
        let client = endpoint(18);
        let s = client
            .connect(server.local_addr(), Some(server.peer_id()))
            .await
            .unwrap();
        let theirs = server.accept().await.unwrap();
        s.close(42).unwrap();
        assert_eq!(
            theirs.closed().await.unwrap(),
            Some(CloseReason::Peer { code: 42 })
        );
        assert_eq!(
            s.closed().await.unwrap(),
            Some(CloseReason::Local { code: 42 })
        );
        assert!(matches!(
            s.open_stream(7).await,
            Err(Error::SessionClosed(CloseReason::Local { code: 42 }))
        ));

        let s2 = client
            .connect(server.local_addr(), Some(server.peer_id()))
            .await
            .unwrap();
        let theirs2 = server.accept().await.unwrap();
        let blocked = {
            let theirs2 = theirs2.clone();
            smol::spawn(async move { theirs2.recv_datagram().await })
        };
        client.shutdown().await;
        assert_eq!(
            theirs2.closed().await.unwrap(),
            Some(CloseReason::Peer {
                code: close_code::NORMAL
            })
        );
        assert!(matches!(
            blocked.await,
            Err(Error::SessionClosed(CloseReason::Peer { code: 0 }))
        ));
        assert!(matches!(s2.ping().await, Err(Error::EndpointClosed)));
        assert!(matches!(client.accept().await, Err(Error::EndpointClosed)));
    });
}

#[test]
fn driver_on_the_callers_executor() {
    // Both endpoints and the application tasks on one thread's local executor.
    let ex = smol::LocalExecutor::new();
    let (server, sd) = Endpoint::bind_unspawned(
        lo(),
        Identity::from_secret([19; 32]),
        EndpointConfig::default(),
    )
    .unwrap();
    let (client, cd) = Endpoint::bind_unspawned(
        lo(),
        Identity::from_secret([20; 32]),
        EndpointConfig::default(),
    )
    .unwrap();
    let server_driver = ex.spawn(sd);
    let client_driver = ex.spawn(cd);
    smol::block_on(ex.run(async {
        let session = client
            .connect(server.local_addr(), Some(server.peer_id()))
            .await
            .unwrap();
        let mut s = session.open_stream(7).await.unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
        // 300 kB fits the echo's windows, so writing everything before reading is fine.
        s.write_all(&data).await.unwrap();
        s.finish().unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, data);
        client.shutdown().await;
        server.shutdown().await;
    }));
    smol::block_on(ex.run(async {
        server_driver.await;
        client_driver.await;
    }));
}
