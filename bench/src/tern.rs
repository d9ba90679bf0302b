//! tern on each driver, with the same wire protocol as the quinn row (`quic.rs`): on every
//! stream the client writes an 8-byte big-endian response length, then its payload, then
//! finishes; the server reads to the end and answers with that many bytes, or with the byte
//! count it received when the length is `u64::MAX`.
//!
//! * `tern-mio`: both endpoints with the blocking driver; each has its event-loop thread,
//!   and the server's application runs on a thread of its own (4 threads: the design's
//!   natural shape for a user who owns their threads).
//! * `tern-smol`: like the quinn row, each peer is one thread: the server's driver and its
//!   tasks on one local executor, the client's driver and the benchmark on another.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use tern_udp::process_cpu_time;

use crate::harness::{BenchError, Contender, Handshake, Params, Rtt, Throughput};

/// Ask the server for the count of bytes it received.
const COUNT_REPLY: u64 = u64::MAX;
/// Client write size for bulk transfer (as the quinn row).
const CHUNK: usize = 64 * 1024;
/// Server read buffer.
const READ_BUF: usize = 1 << 20;
/// Virtual port of the benchmark service.
const PORT: u16 = 80;

fn lo() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The reply to a request whose first 8 bytes were `hdr`, after `received` bytes in all.
fn reply_for(hdr: u64, received: u64) -> Vec<u8> {
    if hdr == COUNT_REPLY {
        received.to_be_bytes().to_vec()
    } else {
        vec![0x42u8; usize::try_from(hdr).unwrap_or(0).min(1 << 20)]
    }
}

// ---------------------------------------------------------------- mio

mod mio_row {
    use super::*;
    use tern_driver_mio::{Endpoint, EndpointConfig, Identity, Stream, close_code};

    /// Both endpoints with the blocking mio driver.
    #[derive(Debug)]
    pub struct TernMio {
        client: Endpoint,
        server: Endpoint,
        threads: Vec<thread::JoinHandle<()>>,
    }

    fn serve(s: &mut Stream, buf: &mut [u8]) -> Result<(), tern_driver_mio::Error> {
        let mut hdr = [0u8; 8];
        let mut have = 0usize;
        let mut received = 0u64;
        loop {
            let n = s.read(buf)?;
            if n == 0 {
                break;
            }
            if have < 8 {
                let k = (8 - have).min(n);
                hdr[have..have + k].copy_from_slice(&buf[..k]);
                have += k;
            }
            received += n as u64;
        }
        s.write_all(&reply_for(u64::from_be_bytes(hdr), received))?;
        s.finish()
    }

    impl TernMio {
        /// Binds both endpoints and starts the server's stream and session loops.
        ///
        /// # Errors
        /// Binding failed.
        pub fn new() -> Result<Self, BenchError> {
            let server = Endpoint::bind(
                lo(),
                Identity::from_secret([0x51; 32]),
                EndpointConfig::default(),
            )
            .map_err(BenchError::other)?;
            let client = Endpoint::bind(
                lo(),
                Identity::from_secret([0x52; 32]),
                EndpointConfig::default(),
            )
            .map_err(BenchError::other)?;
            let listener = server.listen(PORT).map_err(BenchError::other)?;
            let streams = thread::Builder::new()
                .name("tern-mio-server".into())
                .spawn(move || {
                    let mut buf = vec![0u8; READ_BUF];
                    while let Ok(mut s) = listener.accept() {
                        let _ = serve(&mut s, &mut buf);
                    }
                })?;
            let acceptor = server.clone();
            let sessions = thread::Builder::new()
                .name("tern-mio-accept".into())
                .spawn(move || while acceptor.accept().is_ok() {})?;
            Ok(Self {
                client,
                server,
                threads: vec![streams, sessions],
            })
        }

        fn connect(&self) -> Result<tern_driver_mio::Session, BenchError> {
            self.client
                .connect(self.server.local_addr(), Some(self.server.peer_id()))
                .map_err(BenchError::other)
        }
    }

    impl Drop for TernMio {
        fn drop(&mut self) {
            self.client.shutdown();
            self.server.shutdown();
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    impl Contender for TernMio {
        fn name(&self) -> String {
            "tern-mio (RustCrypto AES-256-GCM)".to_owned()
        }

        fn throughput(&mut self, p: &Params) -> Result<Option<Throughput>, BenchError> {
            let session = self.connect()?;
            let chunk = vec![0x17u8; CHUNK];
            let cpu0 = process_cpu_time()?;
            let start = Instant::now();
            let mut s = session.open_stream(PORT).map_err(BenchError::other)?;
            s.write_all(&COUNT_REPLY.to_be_bytes())
                .map_err(BenchError::other)?;
            let mut left = p.bytes;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                s.write_all(&chunk[..n]).map_err(BenchError::other)?;
                left -= n as u64;
            }
            s.finish().map_err(BenchError::other)?;
            let mut reply = [0u8; 8];
            let mut got = 0;
            while got < 8 {
                let n = s.read(&mut reply[got..]).map_err(BenchError::other)?;
                if n == 0 {
                    return Err(BenchError::other("short reply"));
                }
                got += n;
            }
            let elapsed = start.elapsed();
            let cpu = process_cpu_time()? - cpu0;
            let counted = u64::from_be_bytes(reply);
            if counted != p.bytes + 8 {
                return Err(BenchError::other(format!("server counted {counted} bytes")));
            }
            drop(s);
            let _ = session.close(close_code::NORMAL);
            Ok(Some(Throughput {
                bytes: p.bytes,
                elapsed,
                cpu,
                lost: 0,
            }))
        }

        fn rtt(&mut self, p: &Params) -> Result<Option<Rtt>, BenchError> {
            let session = self.connect()?;
            let size = p.rtt_size.max(8);
            let mut request = vec![0x33u8; size];
            request[..8].copy_from_slice(&(size as u64).to_be_bytes());
            let mut buf = vec![0u8; size + 1];
            let mut samples = Vec::with_capacity(p.rtt_requests);
            for i in 0..p.rtt_warmup + p.rtt_requests {
                let t0 = Instant::now();
                // A new stream per request, as in the quinn row.
                let mut s = session.open_stream(PORT).map_err(BenchError::other)?;
                s.write_all(&request).map_err(BenchError::other)?;
                s.finish().map_err(BenchError::other)?;
                let mut got = 0;
                loop {
                    let n = s.read(&mut buf[got..]).map_err(BenchError::other)?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                if got != size {
                    return Err(BenchError::other("short response"));
                }
                if i >= p.rtt_warmup {
                    samples.push(t0.elapsed());
                }
            }
            let _ = session.close(close_code::NORMAL);
            Ok(Some(Rtt { samples }))
        }

        fn handshake(&mut self, p: &Params) -> Result<Option<Handshake>, BenchError> {
            let _ = self.connect()?.close(close_code::NORMAL);
            let mut samples = Vec::with_capacity(p.handshakes);
            let cpu0 = process_cpu_time()?;
            for _ in 0..p.handshakes {
                let t0 = Instant::now();
                let session = self.connect()?;
                samples.push(t0.elapsed());
                let _ = session.close(close_code::NORMAL);
            }
            let cpu = process_cpu_time()? - cpu0;
            thread::sleep(Duration::from_millis(10));
            Ok(Some(Handshake { samples, cpu }))
        }
    }
}

// ---------------------------------------------------------------- smol

mod smol_row {
    use super::*;
    use smol::LocalExecutor;
    use tern_driver_smol::{Endpoint, EndpointConfig, Identity, PeerId, Stream, close_code};

    /// The client's driver and the benchmark on this thread's executor; the server's driver
    /// and tasks on another thread's.
    pub struct TernSmol {
        ex: LocalExecutor<'static>,
        client: Endpoint,
        _driver: smol::Task<()>,
        server_addr: SocketAddr,
        server_id: PeerId,
        stop: Option<smol::channel::Sender<()>>,
        server: Option<thread::JoinHandle<()>>,
    }

    impl std::fmt::Debug for TernSmol {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TernSmol")
                .field("server", &self.server_addr)
                .finish_non_exhaustive()
        }
    }

    async fn serve(mut s: Stream, buf: &mut [u8]) -> Result<(), tern_driver_smol::Error> {
        let mut hdr = [0u8; 8];
        let mut have = 0usize;
        let mut received = 0u64;
        loop {
            let n = s.read(buf).await?;
            if n == 0 {
                break;
            }
            if have < 8 {
                let k = (8 - have).min(n);
                hdr[have..have + k].copy_from_slice(&buf[..k]);
                have += k;
            }
            received += n as u64;
        }
        s.write_all(&reply_for(u64::from_be_bytes(hdr), received))
            .await?;
        s.finish()
    }

    type Ready = Result<(SocketAddr, PeerId), BenchError>;

    fn run_server(ready: std::sync::mpsc::Sender<Ready>, stop: smol::channel::Receiver<()>) {
        let ex = LocalExecutor::new();
        let bound = Endpoint::bind_unspawned(
            lo(),
            Identity::from_secret([0x61; 32]),
            EndpointConfig::default(),
        );
        let (server, driver) = match bound {
            Ok(x) => x,
            Err(e) => {
                let _ = ready.send(Err(BenchError::other(e)));
                return;
            }
        };
        let driver = ex.spawn(driver);
        let listener = match server.listen(PORT) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(BenchError::other(e)));
                return;
            }
        };
        let _ = ready.send(Ok((server.local_addr(), server.peer_id())));
        smol::block_on(ex.run(async {
            // Streams are served one after the other: the client opens them one at a time.
            let streams = ex.spawn(async move {
                let mut buf = vec![0u8; READ_BUF];
                while let Ok(s) = listener.accept().await {
                    let _ = serve(s, &mut buf).await;
                }
            });
            let acceptor = server.clone();
            let sessions = ex.spawn(async move { while acceptor.accept().await.is_ok() {} });
            let _ = stop.recv().await;
            server.shutdown().await;
            drop(streams);
            drop(sessions);
            driver.await;
        }));
    }

    impl TernSmol {
        /// Starts the server thread and the client endpoint.
        ///
        /// # Errors
        /// Binding failed.
        pub fn new() -> Result<Self, BenchError> {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = smol::channel::bounded(1);
            let server = thread::Builder::new()
                .name("tern-smol-server".into())
                .spawn(move || run_server(ready_tx, stop_rx))?;
            let (server_addr, server_id) = ready_rx
                .recv()
                .map_err(|_| BenchError::other("tern-smol server thread died"))??;
            let ex = LocalExecutor::new();
            let (client, driver) = Endpoint::bind_unspawned(
                lo(),
                Identity::from_secret([0x62; 32]),
                EndpointConfig::default(),
            )
            .map_err(BenchError::other)?;
            let driver = ex.spawn(driver);
            Ok(Self {
                ex,
                client,
                _driver: driver,
                server_addr,
                server_id,
                stop: Some(stop_tx),
                server: Some(server),
            })
        }
    }

    impl Drop for TernSmol {
        fn drop(&mut self) {
            let client = self.client.clone();
            smol::block_on(self.ex.run(client.shutdown()));
            if let Some(stop) = self.stop.take() {
                let _ = stop.try_send(());
            }
            if let Some(h) = self.server.take() {
                let _ = h.join();
            }
        }
    }

    impl Contender for TernSmol {
        fn name(&self) -> String {
            "tern-smol (RustCrypto AES-256-GCM)".to_owned()
        }

        fn throughput(&mut self, p: &Params) -> Result<Option<Throughput>, BenchError> {
            let (client, addr, id) = (self.client.clone(), self.server_addr, self.server_id);
            smol::block_on(self.ex.run(async move {
                let session = client
                    .connect(addr, Some(id))
                    .await
                    .map_err(BenchError::other)?;
                let chunk = vec![0x17u8; CHUNK];
                let cpu0 = process_cpu_time()?;
                let start = Instant::now();
                let mut s = session.open_stream(PORT).await.map_err(BenchError::other)?;
                s.write_all(&COUNT_REPLY.to_be_bytes())
                    .await
                    .map_err(BenchError::other)?;
                let mut left = p.bytes;
                while left > 0 {
                    let n = left.min(CHUNK as u64) as usize;
                    s.write_all(&chunk[..n]).await.map_err(BenchError::other)?;
                    left -= n as u64;
                }
                s.finish().map_err(BenchError::other)?;
                let mut reply = [0u8; 8];
                let mut got = 0;
                while got < 8 {
                    let n = s.read(&mut reply[got..]).await.map_err(BenchError::other)?;
                    if n == 0 {
                        return Err(BenchError::other("short reply"));
                    }
                    got += n;
                }
                let elapsed = start.elapsed();
                let cpu = process_cpu_time()? - cpu0;
                let counted = u64::from_be_bytes(reply);
                if counted != p.bytes + 8 {
                    return Err(BenchError::other(format!("server counted {counted} bytes")));
                }
                drop(s);
                let _ = session.close(close_code::NORMAL);
                Ok(Some(Throughput {
                    bytes: p.bytes,
                    elapsed,
                    cpu,
                    lost: 0,
                }))
            }))
        }

        fn rtt(&mut self, p: &Params) -> Result<Option<Rtt>, BenchError> {
            let (client, addr, id) = (self.client.clone(), self.server_addr, self.server_id);
            smol::block_on(self.ex.run(async move {
                let session = client
                    .connect(addr, Some(id))
                    .await
                    .map_err(BenchError::other)?;
                let size = p.rtt_size.max(8);
                let mut request = vec![0x33u8; size];
                request[..8].copy_from_slice(&(size as u64).to_be_bytes());
                let mut buf = vec![0u8; size + 1];
                let mut samples = Vec::with_capacity(p.rtt_requests);
                for i in 0..p.rtt_warmup + p.rtt_requests {
                    let t0 = Instant::now();
                    let mut s = session.open_stream(PORT).await.map_err(BenchError::other)?;
                    s.write_all(&request).await.map_err(BenchError::other)?;
                    s.finish().map_err(BenchError::other)?;
                    let mut got = 0;
                    loop {
                        let n = s.read(&mut buf[got..]).await.map_err(BenchError::other)?;
                        if n == 0 {
                            break;
                        }
                        got += n;
                    }
                    if got != size {
                        return Err(BenchError::other("short response"));
                    }
                    if i >= p.rtt_warmup {
                        samples.push(t0.elapsed());
                    }
                }
                let _ = session.close(close_code::NORMAL);
                Ok(Some(Rtt { samples }))
            }))
        }

        fn handshake(&mut self, p: &Params) -> Result<Option<Handshake>, BenchError> {
            let (client, addr, id) = (self.client.clone(), self.server_addr, self.server_id);
            smol::block_on(self.ex.run(async move {
                let warm = client
                    .connect(addr, Some(id))
                    .await
                    .map_err(BenchError::other)?;
                let _ = warm.close(close_code::NORMAL);
                let mut samples = Vec::with_capacity(p.handshakes);
                let cpu0 = process_cpu_time()?;
                for _ in 0..p.handshakes {
                    let t0 = Instant::now();
                    let session = client
                        .connect(addr, Some(id))
                        .await
                        .map_err(BenchError::other)?;
                    samples.push(t0.elapsed());
                    let _ = session.close(close_code::NORMAL);
                }
                let cpu = process_cpu_time()? - cpu0;
                smol::Timer::after(Duration::from_millis(10)).await;
                Ok(Some(Handshake { samples, cpu }))
            }))
        }
    }
}

pub use mio_row::TernMio;
pub use smol_row::TernSmol;
