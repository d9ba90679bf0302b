//! An idle session costs (almost) nothing: with keepalives every second, two endpoints
//! (both peers, all their threads) use under 1 % of a core over 3 s of idleness. This is the
//! only wall-clock bound in the tests, and it is generous: a busy loop anywhere would use
//! ~100 %. It runs alone in its test binary so no other test's CPU time is counted.

#![allow(clippy::disallowed_methods)] // real sockets, real time

use std::time::{Duration, Instant};

use tern_driver_mio::{Endpoint, EndpointConfig, Identity};
use tern_udp::process_cpu_time;

#[test]
fn idle_session_uses_under_one_percent_of_a_core() {
    let lo = "127.0.0.1:0".parse().unwrap();
    let mut config = EndpointConfig::default();
    // Keepalives every second so the window really contains some.
    config.node.keepalive_interval = Duration::from_secs(1);
    config.node.idle_timeout = Duration::from_secs(10);
    let server = Endpoint::bind(lo, Identity::from_secret([31; 32]), config.clone()).unwrap();
    let client = Endpoint::bind(lo, Identity::from_secret([32; 32]), config).unwrap();
    let session = client
        .connect(server.local_addr(), Some(server.peer_id()))
        .unwrap();
    let _peer = server.accept().unwrap();
    // Let the handshake's follow-up traffic (PMTU probes, ACKs) settle.
    std::thread::sleep(Duration::from_millis(1500));
    let rx0 = server.stats().unwrap().rx_datagrams;
    let cpu0 = process_cpu_time().unwrap();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let cpu = process_cpu_time().unwrap() - cpu0;
    let wall = t0.elapsed();
    let rx = server.stats().unwrap().rx_datagrams - rx0;
    // The session is alive and kept alive: keepalives (and their ACKs) did flow.
    assert!(
        rx >= 2,
        "only {rx} datagrams in 3 s: keepalives are not flowing"
    );
    session.ping().unwrap();
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
}
