//! Two endpoints on 127.0.0.1 with the smol driver: a server task that upper-cases every
//! request sent to virtual port 80, and a client that connects by key, sends a few
//! requests, pings and exchanges a datagram.
//!
//! ```sh
//! cargo run -p tern-driver-smol --example smol_request
//! ```

use smol::io::AsyncReadExt;
use tern_driver_smol::{Endpoint, EndpointConfig, Identity, close_code};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(async {
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
        smol::spawn(async move {
            while let Ok(mut stream) = listener.accept().await {
                smol::spawn(async move {
                    let mut request = Vec::new();
                    stream.read_to_end(&mut request).await?;
                    stream.write_all(&request.to_ascii_uppercase()).await?;
                    stream.finish()?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                })
                .detach();
            }
        })
        .detach();
        let acceptor = server.clone();
        smol::spawn(async move {
            // Datagrams: echo whatever arrives on the first session.
            if let Ok(session) = acceptor.accept().await {
                while let Ok(d) = session.recv_datagram().await {
                    let _ = session.send_datagram(&d);
                }
            }
        })
        .detach();

        let session = client
            .connect(server.local_addr(), Some(server.peer_id()))
            .await?;
        println!(
            "connected to {} (session {:?})",
            session.peer(),
            session.id()
        );
        for word in ["hello", "tern", "over smol"] {
            let mut stream = session.open_stream(80).await?;
            stream.write_all(word.as_bytes()).await?;
            stream.finish()?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await?;
            println!("{word:>10} -> {answer}");
        }
        println!("ping: {:?}", session.ping().await?);
        session.send_datagram(b"a datagram")?;
        println!(
            "datagram back: {:?}",
            String::from_utf8(session.recv_datagram().await?)?
        );
        session.close(close_code::NORMAL)?;
        client.shutdown().await;
        server.shutdown().await;
        Ok(())
    })
}
