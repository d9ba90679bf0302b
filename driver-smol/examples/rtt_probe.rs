//! Diagnostic: where does a small request's round trip go? Runs N requests (new stream,
//! 1 KiB each way) between two endpoints, both on one local executor or (`--threads`) the
//! server on a thread of its own, and prints percentiles and datagrams per request, then
//! the same for pings.
//!
//! ```sh
//! cargo run --release -p tern-driver-smol --example rtt_probe [-- --threads]
//! ```

#![allow(clippy::disallowed_methods)] // a latency probe reads the real clock

use std::time::Instant;

use smol::LocalExecutor;
use tern_driver_smol::{Endpoint, EndpointConfig, Identity};

fn main() {
    let ex = LocalExecutor::new();
    let lo = "127.0.0.1:0".parse().unwrap();
    let split = std::env::args().any(|a| a == "--threads");
    let (server, sd) = Endpoint::bind_unspawned(
        lo,
        Identity::from_secret([1; 32]),
        EndpointConfig::default(),
    )
    .unwrap();

    let (client, cd) = Endpoint::bind_unspawned(
        lo,
        Identity::from_secret([2; 32]),
        EndpointConfig::default(),
    )
    .unwrap();
    ex.spawn(cd).detach();
    let listener = server.listen(80).unwrap();
    let server_task = async move {
        while let Ok(mut s) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            loop {
                let k = s.read(&mut buf[n..]).await.unwrap();
                if k == 0 {
                    break;
                }
                n += k;
            }
            s.write_all(&buf[..n]).await.unwrap();
            s.finish().unwrap();
        }
    };
    if split {
        // The server on its own thread with its own executor, as in the bench.
        std::thread::spawn(move || {
            let sex = LocalExecutor::new();
            sex.spawn(sd).detach();
            sex.spawn(server_task).detach();
            smol::block_on(sex.run(std::future::pending::<()>()));
        });
    } else {
        ex.spawn(sd).detach();
        ex.spawn(server_task).detach();
    }
    smol::block_on(ex.run(async {
        let session = client
            .connect(server.local_addr(), Some(server.peer_id()))
            .await
            .unwrap();
        let req = vec![7u8; 1024];
        let mut samples = Vec::new();
        let n = 3000;
        let c0 = client.stats().unwrap();
        let s0 = server.stats().unwrap();
        for _ in 0..n {
            let t0 = Instant::now();
            let mut s = session.open_stream(80).await.unwrap();
            s.write_all(&req).await.unwrap();
            s.finish().unwrap();
            let mut buf = vec![0u8; 2048];
            let mut got = 0;
            loop {
                let k = s.read(&mut buf[got..]).await.unwrap();
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
        let mut pings = Vec::new();
        for _ in 0..n {
            pings.push(session.ping().await.unwrap().as_secs_f64() * 1e6);
        }
        pings.sort_by(f64::total_cmp);
        println!("ping (core rtt): p50 {:.1} µs p99 {:.1}", pings[n / 2], pings[n * 99 / 100]);
    }));
}
