//! Stateless handshake cookies (address validation before any state is kept) and the mac1
//! check that lets a responder drop inits not made for its key without doing any
//! Diffie-Hellman work.
//!
//! A cookie is `BLAKE2s-MAC(epoch_secret, source address ‖ initiator index)[..16]`, where
//! `epoch_secret` is derived from the node's seed and the two-minute epoch of the wall
//! clock, so cookies need no table and expire by themselves (the current and the previous
//! epoch are accepted).

use std::net::SocketAddr;

use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::{Blake2s256, Blake2sMac256, Digest};
use subtle::ConstantTimeEq;

use crate::wire::header::COOKIE_LEN;

/// Cookies rotate every this many seconds of wall-clock time.
pub const EPOCH_SECS: u64 = 120;

/// Keyed BLAKE2s over `parts`, 32 bytes.
pub fn keyed_hash(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Blake2sMac256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("32-byte keys are valid BLAKE2s keys"));
    for p in parts {
        Update::update(&mut mac, p);
    }
    mac.finalize_fixed().into()
}

/// Unkeyed BLAKE2s over `parts`.
pub fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    for p in parts {
        Digest::update(&mut h, p);
    }
    h.finalize().into()
}

/// The node's cookie generator.
#[derive(Clone)]
pub struct CookieJar {
    master: [u8; 32],
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieJar")
    }
}

fn addr_bytes(addr: SocketAddr, out: &mut [u8; 18]) {
    match addr {
        SocketAddr::V4(a) => {
            out[..4].copy_from_slice(&a.ip().octets());
            out[4..16].fill(0);
        }
        SocketAddr::V6(a) => out[..16].copy_from_slice(&a.ip().octets()),
    }
    out[16..].copy_from_slice(&addr.port().to_be_bytes());
}

impl CookieJar {
    /// A jar keyed by secret bytes from the node's seed.
    pub fn new(master: [u8; 32]) -> Self {
        Self { master }
    }

    fn cookie_for(&self, epoch: u64, addr: SocketAddr, sender: u32) -> [u8; COOKIE_LEN] {
        let secret = keyed_hash(&self.master, &[b"tern cookie epoch", &epoch.to_be_bytes()]);
        let mut a = [0u8; 18];
        addr_bytes(addr, &mut a);
        let full = keyed_hash(&secret, &[&a, &sender.to_be_bytes()]);
        let mut out = [0u8; COOKIE_LEN];
        out.copy_from_slice(&full[..COOKIE_LEN]);
        out
    }

    /// The cookie to hand an initiator at `addr` using index `sender`.
    pub fn make(&self, unix_secs: u64, addr: SocketAddr, sender: u32) -> [u8; COOKIE_LEN] {
        self.cookie_for(unix_secs / EPOCH_SECS, addr, sender)
    }

    /// Whether `cookie` was made by this jar for `addr`/`sender` in this or the previous epoch.
    pub fn verify(
        &self,
        unix_secs: u64,
        addr: SocketAddr,
        sender: u32,
        cookie: &[u8; COOKIE_LEN],
    ) -> bool {
        let epoch = unix_secs / EPOCH_SECS;
        let now: bool = self.cookie_for(epoch, addr, sender).ct_eq(cookie).into();
        let prev: bool = epoch
            .checked_sub(1)
            .map(|e| self.cookie_for(e, addr, sender).ct_eq(cookie).into())
            .unwrap_or(false);
        now | prev
    }
}

/// The key for mac1 on inits sent to the holder of `x25519_public`.
pub fn mac1_key(x25519_public: &[u8; 32]) -> [u8; 32] {
    hash(&[b"tern mac1", x25519_public])
}

/// mac1 over `msg` with a key from [`mac1_key`].
pub fn mac1(key: &[u8; 32], msg: &[u8]) -> [u8; COOKIE_LEN] {
    let full = keyed_hash(key, &[msg]);
    let mut out = [0u8; COOKIE_LEN];
    out.copy_from_slice(&full[..COOKIE_LEN]);
    out
}

/// Constant-time check of a mac1.
pub fn mac1_ok(key: &[u8; 32], msg: &[u8], mac: &[u8; COOKIE_LEN]) -> bool {
    mac1(key, msg).ct_eq(mac).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_bind_address_index_and_epoch() {
        let jar = CookieJar::new([1; 32]);
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:5001".parse().unwrap();
        let c = jar.make(1000, a, 7);
        assert!(jar.verify(1000, a, 7, &c));
        assert!(
            jar.verify(1000 + EPOCH_SECS, a, 7, &c),
            "previous epoch still valid"
        );
        assert!(
            !jar.verify(1000 + 2 * EPOCH_SECS, a, 7, &c),
            "two epochs later: expired"
        );
        assert!(!jar.verify(1000, b, 7, &c));
        assert!(!jar.verify(1000, a, 8, &c));
        assert!(!CookieJar::new([2; 32]).verify(1000, a, 7, &c));
    }

    #[test]
    fn mac1_detects_wrong_key_and_tampering() {
        let k = mac1_key(&[9; 32]);
        let m = mac1(&k, b"init bytes");
        assert!(mac1_ok(&k, b"init bytes", &m));
        assert!(!mac1_ok(&k, b"init byteS", &m));
        assert!(!mac1_ok(&mac1_key(&[8; 32]), b"init bytes", &m));
    }
}
