//! Runs N seal+open round trips of a 1200-byte payload through either tern's packet path or
//! the bare `aes-gcm` crate, for instruction counting under callgrind (deterministic, unlike
//! wall-clock timings on a shared machine):
//!
//! ```sh
//! cargo build --release -p tern-core --example packet_path
//! for p in tern bare; do for n in 0 20000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/packet_path $p $n 2>&1 | grep refs
//! done; done
//! ```
//! Instructions per packet = (refs at 20000 − refs at 0) / 20000.
#![allow(clippy::disallowed_methods)] // a single base instant

use std::time::{Duration, Instant};

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use tern_core::AeadKind;
use tern_core::crypto::keys::SessionKeys;
use tern_core::crypto::replay::ReplayWindow;
use tern_core::wire::header::{self, DATA_HEADER_LEN, Header, TAG_LEN};

const PAYLOAD: usize = 1200;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "tern".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let now = Instant::now();
    let mut checksum = 0u8;
    if which == "tern" {
        let mut tx = SessionKeys::new(AeadKind::Aes256Gcm, [1; 32], [2; 32], now);
        let mut rx = SessionKeys::new(AeadKind::Aes256Gcm, [2; 32], [1; 32], now);
        let mut win = ReplayWindow::new();
        let mut buf = vec![0u8; DATA_HEADER_LEN + PAYLOAD + TAG_LEN];
        for _ in 0..n {
            let counter = tx.next_counter();
            header::write_data_header(&mut buf[..DATA_HEADER_LEN], tx.key_phase(), 7, counter)
                .unwrap();
            let (head, rest) = buf.split_at_mut(DATA_HEADER_LEN);
            let (payload, tail) = rest.split_at_mut(PAYLOAD);
            let (_, tag) = tx.seal(head, payload);
            tail[..TAG_LEN].copy_from_slice(&tag);
            let Ok(Header::Data {
                key_phase, counter, ..
            }) = header::parse(&buf)
            else {
                panic!()
            };
            assert!(win.check(counter));
            let (head, rest) = buf.split_at_mut(DATA_HEADER_LEN);
            let (payload, tail) = rest.split_at_mut(PAYLOAD);
            let mut t = [0u8; TAG_LEN];
            t.copy_from_slice(&tail[..TAG_LEN]);
            rx.open(
                now,
                Duration::from_secs(1),
                key_phase,
                counter,
                head,
                payload,
                &t,
            )
            .unwrap();
            win.update(counter);
            checksum ^= buf[20];
        }
    } else {
        let cipher = Aes256Gcm::new(&[1u8; 32].into());
        let mut buf = vec![0u8; PAYLOAD];
        let aad = [0u8; DATA_HEADER_LEN];
        for i in 0..n {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&i.to_be_bytes());
            let tag = cipher
                .encrypt_inout_detached((&nonce).into(), &aad, buf.as_mut_slice().into())
                .unwrap();
            cipher
                .decrypt_inout_detached((&nonce).into(), &aad, buf.as_mut_slice().into(), &tag)
                .unwrap();
            checksum ^= buf[7];
        }
    }
    println!("{which} {n} {checksum}");
}
