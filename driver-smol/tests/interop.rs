//! The two drivers speak the same protocol: a mio endpoint and a smol endpoint exchange a
//! SHA-256-checked stream, requests, datagrams and pings, each side dialing the other.

#![allow(clippy::disallowed_methods)] // real sockets, real threads

#[path = "../../driver-mio/tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::thread;

use common::{Pattern, pattern_digest};
use sha2::{Digest, Sha256};
use smol::io::AsyncReadExt;
use tern_driver_mio as mio_drv;
use tern_driver_smol as smol_drv;

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

const LEN: u64 = 8 << 20;

#[test]
fn mio_client_smol_server() {
    let server = smol_drv::Endpoint::bind(
        lo(),
        smol_drv::Identity::from_secret([41; 32]),
        smol_drv::EndpointConfig::default(),
    )
    .unwrap();
    let client = mio_drv::Endpoint::bind(
        lo(),
        mio_drv::Identity::from_secret([42; 32]),
        mio_drv::EndpointConfig::default(),
    )
    .unwrap();
    let listener = server.listen(80).unwrap();
    let server_task = {
        let server = server.clone();
        thread::spawn(move || {
            smol::block_on(async {
                // Stream: hash everything, answer with the digest.
                let mut s = listener.accept().await.unwrap();
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 128 << 10];
                let mut total = 0u64;
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                    h.update(&buf[..n]);
                }
                let digest: [u8; 32] = h.finalize().into();
                s.write_all(&total.to_be_bytes()).await.unwrap();
                s.write_all(&digest).await.unwrap();
                s.finish().unwrap();
                // Datagrams: echo ten.
                let session = server.accept().await.unwrap();
                for _ in 0..10 {
                    let d = session.recv_datagram().await.unwrap();
                    session.send_datagram(&d).unwrap();
                }
                session.ping().await.unwrap();
            })
        })
    };
    let session = client
        .connect(server.local_addr(), Some(server.peer_id()))
        .unwrap();
    assert_eq!(session.peer(), server.peer_id());
    let mut s = session.open_stream(80).unwrap();
    let mut p = Pattern::new(5, LEN);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = p.fill(&mut buf);
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).unwrap();
    }
    s.finish().unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert_eq!(u64::from_be_bytes(answer[..8].try_into().unwrap()), LEN);
    assert_eq!(answer[8..], pattern_digest(5, LEN));
    for i in 0u8..10 {
        session.send_datagram(&[i; 300]).unwrap();
        assert_eq!(session.recv_datagram().unwrap(), vec![i; 300]);
    }
    session.ping().unwrap();
    server_task.join().unwrap();
}

#[test]
fn smol_client_mio_server() {
    let server = mio_drv::Endpoint::bind(
        lo(),
        mio_drv::Identity::from_secret([43; 32]),
        mio_drv::EndpointConfig::default(),
    )
    .unwrap();
    let client = smol_drv::Endpoint::bind(
        lo(),
        smol_drv::Identity::from_secret([44; 32]),
        smol_drv::EndpointConfig::default(),
    )
    .unwrap();
    let listener = server.listen(80).unwrap();
    let server_thread = thread::spawn(move || {
        // 100 requests: answer each with its reverse.
        for _ in 0..100 {
            let mut s = listener.accept().unwrap();
            let mut req = Vec::new();
            s.read_to_end(&mut req).unwrap();
            req.reverse();
            s.write_all(&req).unwrap();
            s.finish().unwrap();
        }
        // Then a big download the other way.
        let mut s = listener.accept().unwrap();
        let mut p = Pattern::new(6, LEN);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = p.fill(&mut buf);
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
        }
        s.finish().unwrap();
    });
    smol::block_on(async {
        let session = client.connect(server.local_addr(), None).await.unwrap();
        assert_eq!(session.peer(), server.peer_id());
        for i in 0u32..100 {
            let mut s = session.open_stream(80).await.unwrap();
            let req = format!("req {i}").into_bytes();
            s.write_all(&req).await.unwrap();
            s.finish().unwrap();
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).await.unwrap();
            let mut expected = req.clone();
            expected.reverse();
            assert_eq!(resp, expected);
        }
        let mut s = session.open_stream(80).await.unwrap();
        s.finish().unwrap();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 128 << 10];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
            h.update(&buf[..n]);
        }
        assert_eq!(total, LEN);
        assert_eq!(<[u8; 32]>::from(h.finalize()), pattern_digest(6, LEN));
        assert!(session.ping().await.unwrap() > std::time::Duration::ZERO);
    });
    server_thread.join().unwrap();
}
