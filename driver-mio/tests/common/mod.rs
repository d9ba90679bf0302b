//! Helpers shared by the driver tests (the smol driver's tests include this file too):
//! deterministic payloads, and a lossy, reordering UDP proxy on 127.0.0.1.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Deterministic pseudo-random bytes: `len` bytes of stream `seed`, produced in chunks.
#[derive(Debug)]
pub struct Pattern {
    state: u64,
    left: u64,
}

impl Pattern {
    pub fn new(seed: u64, len: u64) -> Self {
        Self {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            left: len,
        }
    }

    /// Fills the start of `buf` with the next bytes; returns how many (0 at the end).
    pub fn fill(&mut self, buf: &mut [u8]) -> usize {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            // xorshift64*
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        self.left -= n as u64;
        n
    }
}

/// SHA-256 of the whole pattern, computed the same way a receiver would.
pub fn pattern_digest(seed: u64, len: u64) -> [u8; 32] {
    let mut p = Pattern::new(seed, len);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = p.fill(&mut buf);
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().into()
}

/// Counters of a [`LossyProxy`].
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub reordered: AtomicU64,
}

/// A UDP proxy between one client and `server`: the client sends to [`LossyProxy::addr`];
/// datagrams in both directions are dropped with probability `loss` and, with probability
/// `reorder`, held back and sent after the next datagram of the same direction.
#[derive(Debug)]
pub struct LossyProxy {
    pub addr: SocketAddr,
    pub stats: Arc<ProxyStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LossyProxy {
    pub fn start(server: SocketAddr, loss: f64, reorder: f64, seed: u64) -> Self {
        // tern-udp for its 8 MiB buffers (a std socket's default would add loss of its
        // own under bulk traffic); offloads off so every datagram is seen alone.
        let udp = tern_udp::UdpSocket::bind(
            "127.0.0.1:0".parse().unwrap(),
            &tern_udp::UdpConfig::without_offload(),
        )
        .expect("bind proxy");
        let addr = udp.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ProxyStats::default());
        let thread = {
            let stop = stop.clone();
            let stats = stats.clone();
            std::thread::spawn(move || {
                let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut next = move || {
                    rng ^= rng >> 12;
                    rng ^= rng << 25;
                    rng ^= rng >> 27;
                    (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
                };
                let mut client: Option<SocketAddr> = None;
                // One held-back datagram per direction (0: to server, 1: to client).
                let mut held: [Option<Vec<u8>>; 2] = [None, None];
                let mut buf = vec![0u8; 65536];
                let socket = udp.as_std();
                while !stop.load(Ordering::Relaxed) {
                    let received = match udp.wait_readable(Some(Duration::from_millis(20))) {
                        Ok(true) => socket.recv_from(&mut buf),
                        _ => Err(std::io::ErrorKind::WouldBlock.into()),
                    };
                    let Ok((n, from)) = received else {
                        // Quiet: release what was held so nothing waits forever.
                        for (dir, h) in held.iter_mut().enumerate() {
                            if let Some(d) = h.take() {
                                let to = if dir == 0 { Some(server) } else { client };
                                if let Some(to) = to {
                                    let _ = socket.send_to(&d, to);
                                }
                            }
                        }
                        continue;
                    };
                    let (dir, to) = if from == server {
                        match client {
                            Some(c) => (1, c),
                            None => continue,
                        }
                    } else {
                        client = Some(from);
                        (0, server)
                    };
                    if next() < loss {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if held[dir].is_none() && next() < reorder {
                        held[dir] = Some(buf[..n].to_vec());
                        stats.reordered.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let _ = socket.send_to(&buf[..n], to);
                    stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    if let Some(d) = held[dir].take() {
                        let _ = socket.send_to(&d, to);
                        stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Self {
            addr,
            stats,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
