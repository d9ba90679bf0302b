//! Two endpoints on 127.0.0.1 with the blocking mio driver: a server that upper-cases every
//! request sent to virtual port 80, and a client that connects by key, sends a few
//! requests, pings and exchanges a datagram.
//!
//! ```sh
//! cargo run -p tern-driver-mio --example mio_request
//! ```

use std::io::Read;
use std::thread;

use tern_driver_mio::{Endpoint, EndpointConfig, Identity, close_code};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lo = "127.0.0.1:0".parse()?;
    // Fixed secrets keep the example short; real nodes load or generate theirs.
    let server = Endpoint::bind(
        lo,
        Identity::from_secret([1; 32]),
        EndpointConfig::default(),
    )?;
    let client = Endpoint::bind(
        lo,
        Identity::from_secret([2; 32]),
        EndpointConfig::default(),
    )?;
    println!("server {} at {}", server.peer_id(), server.local_addr());

    let listener = server.listen(80)?;
    let acceptor = server.clone();
    thread::spawn(move || {
        // Datagrams: echo whatever arrives on the first session.
        if let Ok(session) = acceptor.accept() {
            thread::spawn(move || {
                while let Ok(d) = session.recv_datagram() {
                    let _ = session.send_datagram(&d);
                }
            });
        }
    });
    thread::spawn(move || {
        while let Ok(mut stream) = listener.accept() {
            thread::spawn(move || -> Result<(), tern_driver_mio::Error> {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = stream.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                stream.write_all(&request.to_ascii_uppercase())?;
                stream.finish()
            });
        }
    });

    let session = client.connect(server.local_addr(), Some(server.peer_id()))?;
    println!(
        "connected to {} (session {:?})",
        session.peer(),
        session.id()
    );
    for word in ["hello", "tern", "over mio"] {
        let mut stream = session.open_stream(80)?;
        stream.write_all(word.as_bytes())?;
        stream.finish()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        println!("{word:>10} -> {answer}");
    }
    println!("ping: {:?}", session.ping()?);
    session.send_datagram(b"a datagram")?;
    println!(
        "datagram back: {:?}",
        String::from_utf8(session.recv_datagram()?)?
    );
    session.close(close_code::NORMAL)?;
    client.shutdown();
    server.shutdown();
    Ok(())
}
