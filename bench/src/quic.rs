//! quinn 0.11 (rustls + ring, TLS 1.3 AES-256-GCM, quinn's default transport config) over
//! loopback: the bar tern has to clear.
//!
//! Setup as in the perf anchors (§2.5): the server runs on its own thread with a
//! `current_thread` tokio runtime; the client runs on the calling thread with another one,
//! so each peer has a core, like two processes. Certificates are self-signed (rcgen).
//!
//! Wire protocol on every bidirectional stream: the client writes an 8-byte big-endian
//! response length, then its payload, then finishes; the server reads to the end and
//! answers with that many bytes, or with the byte count it received when the length is
//! `u64::MAX`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use quinn::{ClientConfig, Endpoint, ServerConfig};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use tern_udp::process_cpu_time;

use crate::harness::{BenchError, Contender, Handshake, Params, Rtt, Throughput};

/// Ask the server for the count of bytes it received.
const COUNT_REPLY: u64 = u64::MAX;
/// Client write size for bulk transfer.
const CHUNK: usize = 64 * 1024;

/// A quinn client endpoint on this thread and a quinn server on its own thread.
#[derive(Debug)]
pub struct Quinn {
    rt: tokio::runtime::Runtime,
    client: Endpoint,
    server_addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<thread::JoinHandle<()>>,
}

impl Quinn {
    /// Starts the server thread and the client endpoint, both on 127.0.0.1.
    ///
    /// # Errors
    /// Certificate generation, TLS configuration or socket binding failed.
    pub fn new() -> Result<Self, BenchError> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .map_err(BenchError::other)?;
        let cert: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
        let server_config = ServerConfig::with_single_cert(vec![cert.clone()], key.into())
            .map_err(BenchError::other)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).map_err(BenchError::other)?;
        let client_config =
            ClientConfig::with_root_certificates(Arc::new(roots)).map_err(BenchError::other)?;

        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let server = thread::Builder::new()
            .name("quinn-server".into())
            .spawn(move || run_server(server_config, addr_tx, shutdown_rx))?;
        let server_addr = addr_rx
            .recv()
            .map_err(|_| BenchError::other("quinn server thread died"))??;

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut client = {
            let _guard = rt.enter();
            Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?
        };
        client.set_default_client_config(client_config);
        Ok(Self {
            rt,
            client,
            server_addr,
            shutdown: Some(shutdown_tx),
            server: Some(server),
        })
    }

    async fn connect(&self) -> Result<quinn::Connection, BenchError> {
        self.client
            .connect(self.server_addr, "localhost")
            .map_err(BenchError::other)?
            .await
            .map_err(BenchError::other)
    }
}

impl Drop for Quinn {
    fn drop(&mut self) {
        self.client.close(0u32.into(), b"bye");
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.join();
        }
    }
}

fn run_server(
    config: ServerConfig,
    addr_tx: std::sync::mpsc::Sender<Result<SocketAddr, BenchError>>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = addr_tx.send(Err(e.into()));
            return;
        }
    };
    rt.block_on(async move {
        let endpoint = match Endpoint::server(config, SocketAddr::from(([127, 0, 0, 1], 0))) {
            Ok(e) => e,
            Err(e) => {
                let _ = addr_tx.send(Err(e.into()));
                return;
            }
        };
        let _ = addr_tx.send(endpoint.local_addr().map_err(BenchError::from));
        loop {
            tokio::select! {
                incoming = endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    tokio::spawn(async move {
                        let Ok(conn) = incoming.await else { return };
                        while let Ok((send, recv)) = conn.accept_bi().await {
                            tokio::spawn(serve_stream(send, recv));
                        }
                    });
                }
                _ = &mut shutdown => break,
            }
        }
        endpoint.close(0u32.into(), b"bye");
    });
}

async fn serve_stream(mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let mut hdr = [0u8; 8];
    if recv.read_exact(&mut hdr).await.is_err() {
        return;
    }
    let want = u64::from_be_bytes(hdr);
    let mut received = 8u64;
    while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
        received += chunk.bytes.len() as u64;
    }
    let reply = if want == COUNT_REPLY {
        received.to_be_bytes().to_vec()
    } else {
        vec![0x42u8; usize::try_from(want).unwrap_or(0).min(1 << 20)]
    };
    let _ = send.write_all(&reply).await;
    let _ = send.finish();
    // Keep the stream alive until the peer has the reply.
    let _ = send.stopped().await;
}

impl Contender for Quinn {
    fn name(&self) -> String {
        "quinn 0.11 (rustls/ring, AES-256-GCM)".to_owned()
    }

    fn throughput(&mut self, p: &Params) -> Result<Option<Throughput>, BenchError> {
        self.rt.block_on(async {
            let conn = self.connect().await?;
            let chunk = vec![0x17u8; CHUNK];
            let cpu0 = process_cpu_time()?;
            let start = Instant::now();
            let (mut send, mut recv) = conn.open_bi().await.map_err(BenchError::other)?;
            send.write_all(&COUNT_REPLY.to_be_bytes())
                .await
                .map_err(BenchError::other)?;
            let mut left = p.bytes;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                send.write_all(&chunk[..n])
                    .await
                    .map_err(BenchError::other)?;
                left -= n as u64;
            }
            send.finish().map_err(BenchError::other)?;
            let reply = recv.read_to_end(8).await.map_err(BenchError::other)?;
            let elapsed = start.elapsed();
            let cpu = process_cpu_time()? - cpu0;
            let got = u64::from_be_bytes(
                reply
                    .try_into()
                    .map_err(|_| BenchError::other("short reply"))?,
            );
            if got != p.bytes + 8 {
                return Err(BenchError::other(format!("server counted {got} bytes")));
            }
            conn.close(0u32.into(), b"done");
            Ok(Some(Throughput {
                bytes: p.bytes,
                elapsed,
                cpu,
                lost: 0,
            }))
        })
    }

    fn rtt(&mut self, p: &Params) -> Result<Option<Rtt>, BenchError> {
        self.rt.block_on(async {
            let conn = self.connect().await?;
            let size = p.rtt_size.max(8);
            let mut request = vec![0x33u8; size];
            request[..8].copy_from_slice(&(size as u64).to_be_bytes());
            let mut samples = Vec::with_capacity(p.rtt_requests);
            for i in 0..p.rtt_warmup + p.rtt_requests {
                let t0 = Instant::now();
                // A new stream per request, as an RPC over QUIC does.
                let (mut send, mut recv) = conn.open_bi().await.map_err(BenchError::other)?;
                send.write_all(&request).await.map_err(BenchError::other)?;
                send.finish().map_err(BenchError::other)?;
                let reply = recv.read_to_end(size).await.map_err(BenchError::other)?;
                if reply.len() != size {
                    return Err(BenchError::other("short response"));
                }
                if i >= p.rtt_warmup {
                    samples.push(t0.elapsed());
                }
            }
            conn.close(0u32.into(), b"done");
            Ok(Some(Rtt { samples }))
        })
    }

    fn handshake(&mut self, p: &Params) -> Result<Option<Handshake>, BenchError> {
        self.rt.block_on(async {
            // One unmeasured connection warms caches and the server's task.
            self.connect().await?.close(0u32.into(), b"warm");
            let mut samples = Vec::with_capacity(p.handshakes);
            let cpu0 = process_cpu_time()?;
            for _ in 0..p.handshakes {
                let t0 = Instant::now();
                let conn = self.connect().await?;
                samples.push(t0.elapsed());
                conn.close(0u32.into(), b"done");
            }
            let cpu = process_cpu_time()? - cpu0;
            // Let the closes drain before the next test.
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(Some(Handshake { samples, cpu }))
        })
    }
}
