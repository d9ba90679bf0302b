//! `bench`: runs every contender (raw UDP ceiling, quinn, and later tern on each driver)
//! with the same parameters in one process and prints one markdown table.
//!
//! ```text
//! cargo run --release -p tern-bench --bin bench -- [--runs 5] [--mib 256] [--requests 10000]
//!     [--warmup 1000] [--handshakes 200] [--rtt-size 1024] [--datagram 1200]
//!     [--raw-rcvbuf-mib 64] [--only raw,quinn,tern-mio,tern-smol]
//! ```
//!
//! Adding a contender (phase B: `tern-mio`, `tern-smol`): implement
//! [`harness::Contender`] and push it in [`contenders`]; its row lands in the same table,
//! with ratios against the quinn row.

// Benchmarks measure real time; the determinism rules of clippy.toml are for the core and
// the simulator, and drivers (and this harness) own the real clock.
#![allow(clippy::disallowed_methods)]

mod harness;
mod quic;
mod raw;
mod tern;

use std::fmt::Write as _;
use std::net::SocketAddr;

use harness::{BenchError, Contender, Params, Summary, micros, percentile};
use raw::{RawMode, RawUdp};
use tern_udp::{GsoState, RecvBatch, Transmit, UdpConfig, UdpSocket};

/// Command-line options.
#[derive(Debug)]
struct Options {
    runs: usize,
    params: Params,
    datagram: usize,
    raw_rcvbuf: usize,
    only: Vec<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        runs: 5,
        params: Params {
            bytes: 256 << 20,
            rtt_size: 1024,
            rtt_requests: 10_000,
            rtt_warmup: 1_000,
            handshakes: 200,
        },
        datagram: 1200,
        raw_rcvbuf: 64 << 20,
        only: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--runs" => o.runs = num(value()?)?.max(1) as usize,
            "--mib" => o.params.bytes = num(value()?)? << 20,
            "--requests" => o.params.rtt_requests = num(value()?)?.max(1) as usize,
            "--warmup" => o.params.rtt_warmup = num(value()?)? as usize,
            "--handshakes" => o.params.handshakes = num(value()?)?.max(1) as usize,
            "--rtt-size" => o.params.rtt_size = num(value()?)? as usize,
            "--datagram" => o.datagram = num(value()?)?.clamp(16, 65_000) as usize,
            "--raw-rcvbuf-mib" => o.raw_rcvbuf = (num(value()?)? << 20) as usize,
            "--only" => o.only = value()?.split(',').map(str::to_owned).collect(),
            "-h" | "--help" => {
                return Err(
                    "usage: bench [--runs N] [--mib N] [--requests N] [--warmup N] \
                            [--handshakes N] [--rtt-size B] [--datagram B] [--raw-rcvbuf-mib N] \
                            [--only raw,quinn,tern-mio,tern-smol]"
                        .to_owned(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

/// Every contender of the run, in table order. Phase B adds tern's drivers here.
fn contenders(o: &Options) -> Result<Vec<Box<dyn Contender>>, BenchError> {
    let wanted = |kind: &str| o.only.is_empty() || o.only.iter().any(|k| k == kind);
    let mut v: Vec<Box<dyn Contender>> = Vec::new();
    if wanted("raw") {
        let modes = [
            (RawMode::SendTo, false),
            (RawMode::Sendmmsg, false),
            (RawMode::Gso, true), // the ping-pong floor is measured once, here
            (RawMode::Queue, false),
            (RawMode::GsoGro, false),
        ];
        for (mode, rtt) in modes {
            v.push(Box::new(RawUdp::new(mode, o.datagram, rtt, o.raw_rcvbuf)));
        }
    }
    if wanted("quinn") {
        v.push(Box::new(quic::Quinn::new()?));
    }
    if wanted("tern-mio") {
        v.push(Box::new(tern::TernMio::new()?));
    }
    if wanted("tern-smol") {
        v.push(Box::new(tern::TernSmol::new()?));
    }
    Ok(v)
}

/// Per-run values of one contender.
#[derive(Debug, Default)]
struct Row {
    name: String,
    mb_s: Vec<f64>,
    loss_pct: Vec<f64>,
    cpu_s_per_gb: Vec<f64>,
    rtt_p50: Vec<f64>,
    rtt_p99: Vec<f64>,
    hs_median: Vec<f64>,
    hs_cpu: Vec<f64>,
}

fn measure(c: &mut dyn Contender, o: &Options) -> Result<Row, BenchError> {
    let mut row = Row {
        name: c.name(),
        ..Row::default()
    };
    for run in 0..o.runs {
        eprintln!("  {} — run {}/{}", row.name, run + 1, o.runs);
        if let Some(t) = c.throughput(&o.params)? {
            row.mb_s.push(t.mb_per_s());
            row.cpu_s_per_gb.push(t.cpu_s_per_gb());
            row.loss_pct
                .push(100.0 * t.lost as f64 / (t.bytes + t.lost).max(1) as f64);
        }
        if let Some(r) = c.rtt(&o.params)? {
            let us = micros(&r.samples);
            row.rtt_p50.extend(percentile(&us, 50.0));
            row.rtt_p99.extend(percentile(&us, 99.0));
        }
        if let Some(h) = c.handshake(&o.params)? {
            row.hs_median.extend(percentile(&micros(&h.samples), 50.0));
            row.hs_cpu.push(h.cpu_per_handshake().as_secs_f64() * 1e6);
        }
    }
    Ok(row)
}

fn cell(values: &[f64], digits: usize) -> String {
    match Summary::of(values) {
        Some(s) if values.len() > 1 => {
            format!("{:.d$} ({:.d$}–{:.d$})", s.median, s.min, s.max, d = digits)
        }
        Some(s) => format!("{:.d$}", s.median, d = digits),
        None => "—".to_owned(),
    }
}

fn ratio(values: &[f64], base: Option<&[f64]>) -> String {
    match (Summary::of(values), base.and_then(Summary::of)) {
        (Some(v), Some(b)) if b.median > 0.0 => format!("{:.2}×", v.median / b.median),
        _ => "—".to_owned(),
    }
}

fn table(rows: &[Row]) -> String {
    let quinn = rows.iter().find(|r| r.name.starts_with("quinn"));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| contender | one stream MB/s | Gbit/s | × quinn | loss % | CPU s/GB | RTT p50 µs | RTT p99 µs | p50 × quinn | handshake µs (p50) | × quinn | CPU µs/handshake |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            cell(&r.mb_s, 0),
            Summary::of(&r.mb_s).map_or("—".to_owned(), |m| format!("{:.2}", m.median * 8e-3)),
            ratio(&r.mb_s, quinn.map(|q| q.mb_s.as_slice())),
            cell(&r.loss_pct, 1),
            cell(&r.cpu_s_per_gb, 2),
            cell(&r.rtt_p50, 1),
            cell(&r.rtt_p99, 1),
            ratio(&r.rtt_p50, quinn.map(|q| q.rtt_p50.as_slice())),
            cell(&r.hs_median, 0),
            ratio(&r.hs_median, quinn.map(|q| q.hs_median.as_slice())),
            cell(&r.hs_cpu, 0),
        );
    }
    s
}

/// What the kernel offers: GSO/GRO, granted buffers, and the most GSO segments per send it
/// accepts (probed by sending to a loopback socket).
fn probe_kernel() -> Result<String, BenchError> {
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let s = UdpSocket::bind(lo, &UdpConfig::default())?;
    let rx = UdpSocket::bind(lo, &UdpConfig::without_offload())?;
    let mut max_accepted = None;
    for n in [64usize, 128, 256] {
        let mut config = UdpConfig::default();
        config.max_gso_segments = n;
        let tx = UdpSocket::bind(lo, &config)?;
        let data = vec![1u8; n * 8];
        let _ = tx.send(&[Transmit::segmented(rx.local_addr(), &data, 8)]);
        if matches!(tx.gso_state(), GsoState::On { .. }) {
            max_accepted = Some(n);
        }
    }
    // Drain what the probes sent.
    let mut batch = RecvBatch::new(64, 2048);
    while rx.recv_batch(&mut batch).is_ok() {}
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    Ok(format!(
        "kernel {}; GSO: {:?}; GRO: {}; buffers granted (getsockopt, doubled by Linux): {:?}; \
         most GSO segments per send accepted: {}",
        release.trim(),
        s.gso_state(),
        s.gro_enabled(),
        s.buffer_sizes(),
        max_accepted.map_or("none of 64/128/256".to_owned(), |n| format!(
            "{n} (of 64/128/256 tried)"
        )),
    ))
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&o) {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}

fn run(o: &Options) -> Result<(), BenchError> {
    let probe = probe_kernel()?;
    eprintln!("{probe}");
    let mut rows = Vec::new();
    for mut c in contenders(o)? {
        rows.push(measure(c.as_mut(), o)?);
    }
    println!(
        "{} runs; one stream: {} MiB; RTT: {} B request + {} B response, {} requests after {} \
         warm-up (p50/p99 per run); handshakes: {} per run; cells: median over runs (min–max); \
         CPU = process user+system time, both peers.\n",
        o.runs,
        o.params.bytes >> 20,
        o.params.rtt_size,
        o.params.rtt_size,
        o.params.rtt_requests,
        o.params.rtt_warmup,
        o.params.handshakes,
    );
    println!("{probe}\n");
    print!("{}", table(&rows));
    Ok(())
}
