//! The raw UDP ceiling: unencrypted datagrams from one thread to another over loopback,
//! through tern's socket layer. No protocol, no retransmission: what arrives counts, what
//! the receiver drops is reported as loss.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use tern_udp::{RecvBatch, Transmit, TransmitQueue, UdpConfig, UdpSocket, process_cpu_time};

use crate::harness::{BenchError, Contender, Params, Rtt, Throughput};

/// How the sender hands datagrams to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawMode {
    /// One `send_to` per datagram (std); the receiver uses `recvmmsg`.
    SendTo,
    /// `sendmmsg`, 64 datagrams per call, no GSO; the receiver uses `recvmmsg`.
    Sendmmsg,
    /// `sendmmsg` of GSO messages (54 × 1200 B each); the receiver uses `recvmmsg`, GRO off.
    /// This is the practical ceiling for a userspace transport here.
    Gso,
    /// Datagram by datagram into a [`TransmitQueue`] (a copy of each, as the core writes
    /// them), flushed as GSO runs: the path a driver takes; the receiver uses `recvmmsg`.
    Queue,
    /// GSO sender and a GRO receiver: on loopback the super-datagram is never split, so
    /// this is an upper bound that no real network path gives.
    GsoGro,
}

/// Raw UDP over loopback in one of the [`RawMode`]s.
#[derive(Debug)]
pub struct RawUdp {
    mode: RawMode,
    datagram: usize,
    /// Whether this row also measures the ping-pong floor (one row is enough).
    with_rtt: bool,
    /// Receive buffer requested for the receiver (forced past `rmem_max` as root).
    recv_buffer: usize,
}

impl RawUdp {
    /// A contender sending `datagram`-byte datagrams to a receiver with a `recv_buffer`-byte
    /// socket buffer.
    pub fn new(mode: RawMode, datagram: usize, with_rtt: bool, recv_buffer: usize) -> Self {
        Self {
            mode,
            datagram,
            with_rtt,
            recv_buffer,
        }
    }
}

const IDLE_END: Duration = Duration::from_millis(500);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Receives until a datagram from `marker` arrives or nothing comes for `IDLE_END`.
/// Returns the payload bytes received and when the last one arrived.
fn receive_until_marker(
    rx: &UdpSocket,
    marker: SocketAddr,
) -> Result<(u64, Option<Instant>), BenchError> {
    let mut batch = RecvBatch::default();
    let mut bytes = 0u64;
    let mut last = None;
    loop {
        match rx.recv_batch(&mut batch) {
            Ok(_) => {
                let mut end = false;
                for m in batch.metas() {
                    if m.from == marker {
                        end = true;
                    } else {
                        bytes += m.len as u64;
                    }
                }
                last = Some(Instant::now());
                if end {
                    return Ok((bytes, last));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !rx.wait_readable(Some(IDLE_END))? {
                    return Ok((bytes, last));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn send_all(tx: &UdpSocket, mut transmits: &[Transmit<'_>]) -> Result<(), BenchError> {
    while !transmits.is_empty() {
        match tx.send(transmits) {
            Ok(n) => transmits = &transmits[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                tx.wait_writable(Some(Duration::from_secs(1)))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl Contender for RawUdp {
    fn name(&self) -> String {
        let mode = match self.mode {
            RawMode::SendTo => "send_to → recvmmsg",
            RawMode::Sendmmsg => "sendmmsg → recvmmsg",
            RawMode::Gso => "sendmmsg+GSO → recvmmsg",
            RawMode::Queue => "TransmitQueue (GSO) → recvmmsg",
            RawMode::GsoGro => "GSO → GRO (loopback only)",
        };
        format!("raw UDP {} B, {mode}", self.datagram)
    }

    fn throughput(&mut self, p: &Params) -> Result<Option<Throughput>, BenchError> {
        let mut rx_config = UdpConfig::without_offload();
        rx_config.gro = self.mode == RawMode::GsoGro;
        rx_config.recv_buffer = self.recv_buffer;
        let rx = UdpSocket::bind(loopback(), &rx_config)?;
        let tx_config = match self.mode {
            RawMode::Gso | RawMode::GsoGro | RawMode::Queue => UdpConfig::default(),
            _ => UdpConfig::without_offload(),
        };
        let tx = UdpSocket::bind(loopback(), &tx_config)?;
        let marker = UdpSocket::bind(loopback(), &UdpConfig::without_offload())?;
        let dst = rx.local_addr();
        let marker_addr = marker.local_addr();
        let dg = self.datagram;
        let count = (p.bytes / dg as u64).max(1);

        let cpu0 = process_cpu_time()?;
        let start = Instant::now();
        let (bytes, last) = thread::scope(|s| -> Result<_, BenchError> {
            let receiver = s.spawn(|| receive_until_marker(&rx, marker_addr));
            let data = vec![0xA5u8; dg * 64];
            let mut left = count;
            match self.mode {
                RawMode::SendTo => {
                    let std = tx.as_std();
                    while left > 0 {
                        match std.send_to(&data[..dg], dst) {
                            Ok(_) => left -= 1,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                tx.wait_writable(Some(Duration::from_secs(1)))?;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                RawMode::Sendmmsg => {
                    let one: Vec<Transmit<'_>> = (0..64)
                        .map(|i| Transmit::new(dst, &data[i * dg..(i + 1) * dg]))
                        .collect();
                    while left > 0 {
                        let n = left.min(64) as usize;
                        send_all(&tx, &one[..n])?;
                        left -= n as u64;
                    }
                }
                RawMode::Queue => {
                    let mut queue = TransmitQueue::new(1 << 20, 256);
                    while left > 0 {
                        while left > 0 {
                            let Some(slot) = queue.slot(dg) else { break };
                            slot.copy_from_slice(&data[..dg]);
                            queue.commit(dst, None, dg);
                            left -= 1;
                        }
                        while let Err(e) = queue.flush(|_| Some((&tx, None))) {
                            if e.kind() != ErrorKind::WouldBlock {
                                return Err(e.into());
                            }
                            tx.wait_writable(Some(Duration::from_secs(1)))?;
                        }
                    }
                }
                RawMode::Gso | RawMode::GsoGro => {
                    let per_msg = (tern_udp::MAX_UDP_PAYLOAD_V4 / dg).min(tx.max_gso_segments());
                    let gso_buf = vec![0xA5u8; per_msg * dg];
                    let batch: Vec<Transmit<'_>> = (0..8)
                        .map(|_| Transmit::segmented(dst, &gso_buf, dg))
                        .collect();
                    let per_call = (8 * per_msg) as u64;
                    while left >= per_call {
                        send_all(&tx, &batch)?;
                        left -= per_call;
                    }
                    while left > 0 {
                        let n = left.min(per_msg as u64) as usize;
                        send_all(&tx, &[Transmit::segmented(dst, &gso_buf[..n * dg], dg)])?;
                        left -= n as u64;
                    }
                }
            }
            // Tell the receiver we are done (repeat: the marker can be dropped too).
            while !receiver.is_finished() {
                let _ = marker.send(&[Transmit::new(dst, &[0])]);
                thread::sleep(Duration::from_millis(5));
            }
            receiver
                .join()
                .map_err(|_| BenchError::other("receiver thread panicked"))?
        })?;
        let cpu = process_cpu_time()? - cpu0;
        let Some(last) = last else {
            return Err(BenchError::other("nothing arrived"));
        };
        let offered = count * dg as u64;
        Ok(Some(Throughput {
            bytes,
            elapsed: last - start,
            cpu,
            lost: offered.saturating_sub(bytes),
        }))
    }

    fn rtt(&mut self, p: &Params) -> Result<Option<Rtt>, BenchError> {
        if !self.with_rtt {
            return Ok(None);
        }
        let server = UdpSocket::bind(loopback(), &UdpConfig::default())?;
        let client = UdpSocket::bind(loopback(), &UdpConfig::default())?;
        let server_addr = server.local_addr();
        let size = p.rtt_size.max(2);
        thread::scope(|s| {
            // Echo server: waits in poll(2) like an event loop would; a 1-byte datagram
            // ends it.
            let echo = s.spawn(|| -> Result<(), BenchError> {
                let mut batch = RecvBatch::new(8, 65_536);
                loop {
                    match server.recv_batch(&mut batch) {
                        Ok(_) => {
                            for d in batch.datagrams() {
                                if d.data.len() == 1 {
                                    return Ok(());
                                }
                                send_all(&server, &[Transmit::new(d.from, d.data)])?;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            server.wait_readable(Some(Duration::from_secs(5)))?;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            });
            let request = vec![0x5Au8; size];
            let mut batch = RecvBatch::new(8, 65_536);
            let mut samples = Vec::with_capacity(p.rtt_requests);
            for i in 0..p.rtt_warmup + p.rtt_requests {
                let t0 = Instant::now();
                send_all(&client, &[Transmit::new(server_addr, &request)])?;
                loop {
                    match client.recv_batch(&mut batch) {
                        Ok(_) => break,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            if !client.wait_readable(Some(Duration::from_secs(1)))? {
                                return Err(BenchError::other("echo lost (loopback drop?)"));
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                if batch.datagram_count() != 1 || batch.message(0).map(|m| m.1.len()) != Some(size)
                {
                    return Err(BenchError::other("bad echo"));
                }
                if i >= p.rtt_warmup {
                    samples.push(t0.elapsed());
                }
            }
            send_all(&client, &[Transmit::new(server_addr, &[0])])?;
            echo.join()
                .map_err(|_| BenchError::other("echo thread panicked"))??;
            Ok(Some(Rtt { samples }))
        })
    }

    fn handshake(&mut self, _p: &Params) -> Result<Option<crate::harness::Handshake>, BenchError> {
        Ok(None)
    }
}
