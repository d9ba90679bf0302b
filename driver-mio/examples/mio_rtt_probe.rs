//! Diagnostic: where does a small request's round trip go with the blocking driver? Runs N
//! requests (new stream, 1 KiB each way) between two endpoints, the server's application on
//! a thread of its own (as in the bench), and prints percentiles and datagrams per request,
//! then the same for pings.
//!
//! ```sh
//! cargo run --release -p tern-driver-mio --example mio_rtt_probe
//! ```

#![allow(clippy::disallowed_methods)] // a latency probe reads the real clock

use std::time::Instant;

use tern_driver_mio::{Endpoint, EndpointConfig, Identity};

fn main() {
    let lo = "127.0.0.1:0".parse().unwrap();
    let server = Endpoint::bind(
        lo,
        Identity::from_secret([1; 32]),
        EndpointConfig::default(),
    )
    .unwrap();
    let client = Endpoint::bind(
        lo,
        Identity::from_secret([2; 32]),
        EndpointConfig::default(),
    )
    .unwrap();
    let listener = server.listen(80).unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok(mut s) = listener.accept() {
            let mut n = 0;
            loop {
                let k = s.read(&mut buf[n..]).unwrap();
                if k == 0 {
                    break;
                }
                n += k;
            }
            s.write_all(&buf[..n]).unwrap();
            s.finish().unwrap();
        }
    });
    let session = client
        .connect(server.local_addr(), Some(server.peer_id()))
        .unwrap();
    let req = vec![7u8; 1024];
    let n = 3000;
    let mut samples = Vec::with_capacity(n);
    let mut buf = vec![0u8; 2048];
    let c0 = client.stats().unwrap();
    let s0 = server.stats().unwrap();
    for _ in 0..n {
        let t0 = Instant::now();
        let mut s = session.open_stream(80).unwrap();
        s.write_all(&req).unwrap();
        s.finish().unwrap();
        let mut got = 0;
        loop {
            let k = s.read(&mut buf[got..]).unwrap();
            if k == 0 {
                break;
            }
            got += k;
        }
        assert_eq!(got, 1024);
        samples.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    let c1 = client.stats().unwrap();
    let s1 = server.stats().unwrap();
    samples.sort_by(f64::total_cmp);
    println!(
        "request: p50 {:.1} µs p90 {:.1} p99 {:.1}; datagrams/request client→ {:.2}, server→ {:.2}",
        samples[n / 2],
        samples[n * 9 / 10],
        samples[n * 99 / 100],
        (c1.tx_datagrams - c0.tx_datagrams) as f64 / n as f64,
        (s1.tx_datagrams - s0.tx_datagrams) as f64 / n as f64
    );
    let mut pings = Vec::with_capacity(n);
    for _ in 0..n {
        pings.push(session.ping().unwrap().as_secs_f64() * 1e6);
    }
    pings.sort_by(f64::total_cmp);
    println!(
        "ping (core rtt): p50 {:.1} µs p99 {:.1}",
        pings[n / 2],
        pings[n * 99 / 100]
    );
}
