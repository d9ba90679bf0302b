//! An idle session costs (almost) nothing: with keepalives every second, two endpoints
//! (both peers, their driver threads and the async-io reactor) use under 1 % of a core over
//! 3 s of idleness. The only wall-clock bound in the tests, and a generous one: a busy loop
//! anywhere would use ~100 %. Alone in its test binary so no other test's CPU is counted.

#![allow(clippy::disallowed_methods)] // real sockets, real time

use std::time::{Duration, Instant};

use tern_driver_smol::{Endpoint, EndpointConfig, Identity};
use tern_udp::process_cpu_time;

#[test]
fn idle_session_uses_under_one_percent_of_a_core() {
    smol::block_on(async {
        let lo = "127.0.0.1:0".parse().unwrap();
        let mut config = EndpointConfig::default();
        config.node.keepalive_interval = Duration::from_secs(1);
        config.node.idle_timeout = Duration::from_secs(10);
        let server = Endpoint::bind(lo, Identity::from_secret([31; 32]), config.clone()).unwrap();
        let client = Endpoint::bind(lo, Identity::from_secret([32; 32]), config).unwrap();
        let session = client
            .connect(server.local_addr(), Some(server.peer_id()))
            .await
            .unwrap();
        let _peer = server.accept().await.unwrap();
        smol::Timer::after(Duration::from_millis(1500)).await;
        let rx0 = server.stats().unwrap().rx_datagrams;
        let cpu0 = process_cpu_time().unwrap();
        let t0 = Instant::now();
        smol::Timer::after(Duration::from_secs(3)).await;
        let cpu = process_cpu_time().unwrap() - cpu0;
        let wall = t0.elapsed();
        let rx = server.stats().unwrap().rx_datagrams - rx0;
        assert!(
            rx >= 2,
            "only {rx} datagrams in 3 s: keepalives are not flowing"
        );
        session.ping().await.unwrap();
        let share = cpu.as_secs_f64() / wall.as_secs_f64();
        eprintln!(
            "idle: {cpu:?} CPU over {wall:?} = {:.3} % of a core, {rx} datagrams",
            share * 100.0
        );
        assert!(
            share < 0.01,
            "idle endpoints used {:.2} % of a core",
            share * 100.0
        );
    });
}
