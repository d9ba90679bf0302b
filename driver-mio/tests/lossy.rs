//! 16 MiB through an in-test UDP proxy that drops 5 % of the datagrams in each direction and
//! reorders others: the bytes arrive intact (SHA-256), and the proxy really did drop and
//! reorder.

#![allow(clippy::disallowed_methods)] // real sockets, real threads

mod common;

use std::sync::atomic::Ordering;
use std::thread;

use common::{LossyProxy, Pattern, pattern_digest};
use sha2::{Digest, Sha256};
use tern_driver_mio::{Endpoint, EndpointConfig, Identity};

#[test]
fn sixteen_mib_through_five_percent_loss_and_reordering() {
    const LEN: u64 = 16 << 20;
    let lo = "127.0.0.1:0".parse().unwrap();
    let server = Endpoint::bind(
        lo,
        Identity::from_secret([21; 32]),
        EndpointConfig::default(),
    )
    .unwrap();
    let client = Endpoint::bind(
        lo,
        Identity::from_secret([22; 32]),
        EndpointConfig::default(),
    )
    .unwrap();
    let proxy = LossyProxy::start(server.local_addr(), 0.05, 0.05, 7);
    let listener = server.listen(80).unwrap();
    let receiver = thread::spawn(move || {
        let mut s = listener.accept().unwrap();
        let mut h = Sha256::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
            h.update(&buf[..n]);
        }
        (total, <[u8; 32]>::from(h.finalize()))
    });
    let session = client.connect(proxy.addr, Some(server.peer_id())).unwrap();
    let mut s = session.open_stream(80).unwrap();
    let mut pattern = Pattern::new(0x1055, LEN);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = pattern.fill(&mut buf);
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).unwrap();
    }
    s.finish().unwrap();
    let (total, digest) = receiver.join().unwrap();
    assert_eq!(total, LEN);
    assert_eq!(digest, pattern_digest(0x1055, LEN));
    let dropped = proxy.stats.dropped.load(Ordering::Relaxed);
    let reordered = proxy.stats.reordered.load(Ordering::Relaxed);
    let forwarded = proxy.stats.forwarded.load(Ordering::Relaxed);
    assert!(
        dropped > 100 && reordered > 100,
        "dropped {dropped}, reordered {reordered}"
    );
    let rate = dropped as f64 / (dropped + forwarded) as f64;
    assert!((0.03..0.07).contains(&rate), "loss rate {rate}");
}
