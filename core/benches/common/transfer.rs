//! Bulk transfer between two in-memory `Node`s (no sockets, no latency): the harness shared
//! by `benches/transfer.rs` (wall clock, criterion) and `examples/transfer_path.rs`
//! (instruction counts under callgrind). One side writes a stream as fast as it takes data,
//! the other reads it; every datagram goes straight from `poll_transmit` into the peer's
//! `handle_datagram` in one reused buffer. Also the baseline: the bare `aes-gcm` crate
//! sealing and opening the same stream bytes in packets of the size the transfer used.
#![allow(dead_code, clippy::disallowed_methods)] // a base instant; not every user needs all

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use tern_core::wire::header::{DATA_HEADER_LEN, TAG_LEN};
use tern_core::{Config, Event, Identity, Node, SessionId, StreamId};

/// Two nodes with an established session and one open stream.
pub struct Pipe {
    pub a: Node,
    pub b: Node,
    pub session: SessionId,
    tx: StreamId,
    rx: StreamId,
    now: Instant,
    addr_a: SocketAddr,
    addr_b: SocketAddr,
    buf: Vec<u8>,
    chunk: Vec<u8>,
    read_buf: Vec<u8>,
    /// Stream bytes read by the receiver so far.
    pub read: u64,
}

impl Pipe {
    /// Connects, opens the stream and moves 16 MiB to warm everything up (PMTU raised,
    /// windows grown, buffers at size).
    pub fn new() -> Self {
        let now = Instant::now();
        let unix = Duration::from_secs(1_800_000_000);
        let config = Config::default();
        let mut a = Node::new(
            Identity::from_secret([1; 32]),
            config.clone(),
            [1; 32],
            now,
            unix,
        )
        .unwrap();
        let mut b = Node::new(Identity::from_secret([2; 32]), config, [2; 32], now, unix).unwrap();
        b.listen(5000).unwrap();
        let (addr_a, addr_b): (SocketAddr, SocketAddr) =
            ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap());
        let session = a.connect(now, addr_b, Some(b.peer_id())).unwrap();
        let mut buf = vec![0u8; 2048];
        let mut rx = None;
        let mut t = now;
        let mut tx = None;
        while rx.is_none() {
            t += Duration::from_micros(100);
            while let Some(x) = a.poll_transmit(t, &mut buf) {
                b.handle_datagram(t, addr_a, &mut buf[..x.len]);
            }
            while let Some(x) = b.poll_transmit(t, &mut buf) {
                a.handle_datagram(t, addr_b, &mut buf[..x.len]);
            }
            while let Some(e) = a.poll_event() {
                if let Event::SessionEstablished { .. } = e {
                    let id = a.open_stream(session, 5000).unwrap();
                    a.stream(id).unwrap().write(b"x").unwrap();
                    tx = Some(id);
                }
            }
            while let Some(e) = b.poll_event() {
                if let Event::StreamOpened { stream, .. } = e {
                    rx = Some(stream);
                }
            }
            a.handle_timeout(t);
            b.handle_timeout(t);
        }
        let mut p = Self {
            a,
            b,
            session,
            tx: tx.unwrap(),
            rx: rx.unwrap(),
            now: t,
            addr_a,
            addr_b,
            buf,
            chunk: (0..64 << 10).map(|i| (i % 251) as u8).collect(),
            read_buf: vec![0u8; 64 << 10],
            read: 0,
        };
        p.transfer(16 << 20);
        p
    }

    /// Moves `bytes` more stream bytes from `a` to `b`.
    pub fn transfer(&mut self, bytes: u64) {
        let target = self.read + bytes;
        while self.read < target {
            if let Some(mut s) = self.a.stream(self.tx) {
                while let Ok(n) = s.write(&self.chunk) {
                    if n < self.chunk.len() {
                        break;
                    }
                }
            }
            while let Some(x) = self.a.poll_transmit(self.now, &mut self.buf) {
                self.b
                    .handle_datagram(self.now, self.addr_a, &mut self.buf[..x.len]);
            }
            if let Some(mut s) = self.b.stream(self.rx) {
                while let Ok(Some(n)) = s.read(&mut self.read_buf) {
                    self.read += n as u64;
                }
            }
            while let Some(x) = self.b.poll_transmit(self.now, &mut self.buf) {
                self.a
                    .handle_datagram(self.now, self.addr_b, &mut self.buf[..x.len]);
            }
            while self.a.poll_event().is_some() {}
            while self.b.poll_event().is_some() {}
            self.now += Duration::from_micros(10);
            self.a.handle_timeout(self.now);
            self.b.handle_timeout(self.now);
        }
    }

    /// (datagrams, bytes) both nodes sent so far.
    pub fn sent(&self) -> (u64, u64) {
        let (sa, sb) = (self.a.stats(), self.b.stats());
        (sa.tx_datagrams + sb.tx_datagrams, sa.tx_bytes + sb.tx_bytes)
    }
}

/// Stream bytes a full-size data packet carries (PMTU 1452: header, STREAM frame header
/// of about 10 bytes, tag).
pub const STREAM_BYTES_PER_PACKET: usize = 1452 - DATA_HEADER_LEN - TAG_LEN - 10;

/// The bare `aes-gcm` crate sealing and opening the same stream bytes, in packets of
/// [`STREAM_BYTES_PER_PACKET`].
pub struct BareAead {
    cipher: Aes256Gcm,
    buf: Vec<u8>,
    n: u64,
}

impl BareAead {
    /// A cipher with a fixed key.
    pub fn new() -> Self {
        Self {
            cipher: Aes256Gcm::new(&[1u8; 32].into()),
            buf: vec![0u8; STREAM_BYTES_PER_PACKET],
            n: 0,
        }
    }

    /// Seals and opens `bytes` of payload, packet by packet.
    pub fn seal_open(&mut self, bytes: u64) -> u8 {
        let aad = [0u8; DATA_HEADER_LEN];
        let packets = bytes.div_ceil(STREAM_BYTES_PER_PACKET as u64);
        let mut check = 0u8;
        for _ in 0..packets {
            self.n += 1;
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&self.n.to_be_bytes());
            let tag = self
                .cipher
                .encrypt_inout_detached((&nonce).into(), &aad, self.buf.as_mut_slice().into())
                .unwrap();
            self.cipher
                .decrypt_inout_detached((&nonce).into(), &aad, self.buf.as_mut_slice().into(), &tag)
                .unwrap();
            check ^= self.buf[7];
        }
        check
    }
}
