//! In-place packet protection with the data keys split from the handshake. One cipher object
//! per key (the AES key schedule runs once, not per packet); the nonce is 4 zero bytes and the
//! 64-bit packet counter, big-endian; the cleartext header is the associated data.

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;

use crate::wire::header::TAG_LEN;

/// A data-path AEAD. Negotiated in the handshake: the initiator offers a set, the responder
/// picks its most preferred one from that set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum AeadKind {
    /// AES-256-GCM (`aes-gcm`); the fastest choice on CPUs with AES instructions.
    Aes256Gcm,
    /// ChaCha20-Poly1305 (`chacha20poly1305`); constant-time everywhere, faster without AES-NI.
    ChaCha20Poly1305,
}

impl AeadKind {
    /// Both kinds, in no particular order.
    pub const ALL: [AeadKind; 2] = [AeadKind::Aes256Gcm, AeadKind::ChaCha20Poly1305];

    /// The bit this kind takes in a handshake offer.
    pub const fn bit(self) -> u8 {
        match self {
            AeadKind::Aes256Gcm => 0x01,
            AeadKind::ChaCha20Poly1305 => 0x02,
        }
    }

    /// Decodes a single-bit value.
    pub fn from_bit(bit: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.bit() == bit)
    }

    /// A short name for logs and `tern info`.
    pub const fn name(self) -> &'static str {
        match self {
            AeadKind::Aes256Gcm => "AES-256-GCM",
            AeadKind::ChaCha20Poly1305 => "ChaCha20-Poly1305",
        }
    }

    /// Packets one key may protect before it must be replaced (confidentiality limit,
    /// RFC 9001 §6.6: 2^23 for AES-GCM; ChaCha20-Poly1305's limit is beyond reach, so we
    /// use the same conservative figure for both).
    pub const fn confidentiality_limit(self) -> u64 {
        1 << 23
    }

    /// Failed decryptions tolerated on one session before it must be closed (integrity
    /// limit, RFC 9001 §6.6).
    pub const fn integrity_limit(self) -> u64 {
        match self {
            AeadKind::Aes256Gcm => 1 << 52,
            AeadKind::ChaCha20Poly1305 => 1 << 36,
        }
    }
}

/// One direction's packet key.
#[derive(Clone)]
pub enum PacketKey {
    /// AES-256-GCM.
    Aes(Box<Aes256Gcm>),
    /// ChaCha20-Poly1305.
    ChaCha(Box<ChaCha20Poly1305>),
}

impl std::fmt::Debug for PacketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PacketKey::Aes(_) => "PacketKey(AES-256-GCM)",
            PacketKey::ChaCha(_) => "PacketKey(ChaCha20-Poly1305)",
        })
    }
}

/// Decryption failed: the packet is forged, corrupted or under another key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenError;

fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}

impl PacketKey {
    /// Builds a key of `kind` from 32 secret bytes.
    pub fn new(kind: AeadKind, secret: &[u8; 32]) -> Self {
        match kind {
            AeadKind::Aes256Gcm => PacketKey::Aes(Box::new(Aes256Gcm::new(secret.into()))),
            AeadKind::ChaCha20Poly1305 => {
                PacketKey::ChaCha(Box::new(ChaCha20Poly1305::new(secret.into())))
            }
        }
    }

    /// Which AEAD this key uses.
    pub fn kind(&self) -> AeadKind {
        match self {
            PacketKey::Aes(_) => AeadKind::Aes256Gcm,
            PacketKey::ChaCha(_) => AeadKind::ChaCha20Poly1305,
        }
    }

    /// Encrypts `buf` in place and returns the tag.
    pub fn seal(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let n = nonce(counter);
        // Encryption only fails for inputs longer than 2^36 bytes, which a datagram cannot be.
        let tag = match self {
            PacketKey::Aes(c) => c.encrypt_inout_detached((&n).into(), aad, buf.into()),
            PacketKey::ChaCha(c) => c.encrypt_inout_detached((&n).into(), aad, buf.into()),
        };
        let mut out = [0u8; TAG_LEN];
        if let Ok(tag) = tag {
            out.copy_from_slice(&tag);
        }
        out
    }

    /// Decrypts `buf` in place if `tag` authenticates it with `aad`. On failure the buffer
    /// content is unspecified (the caller drops the packet).
    pub fn open(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        let n = nonce(counter);
        let res = match self {
            PacketKey::Aes(c) => c.decrypt_inout_detached((&n).into(), aad, buf.into(), tag.into()),
            PacketKey::ChaCha(c) => {
                c.decrypt_inout_detached((&n).into(), aad, buf.into(), tag.into())
            }
        };
        res.map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        for kind in AeadKind::ALL {
            let k = PacketKey::new(kind, &[7; 32]);
            let mut buf = *b"attack at dawn!!";
            let tag = k.seal(5, b"hdr", &mut buf);
            assert_ne!(&buf, b"attack at dawn!!");
            let sealed = buf;
            assert!(k.open(5, b"hdr", &mut buf, &tag).is_ok());
            assert_eq!(&buf, b"attack at dawn!!");
            // Wrong counter, wrong AAD, flipped bit, wrong key: all fail.
            let mut b = sealed;
            assert!(k.open(6, b"hdr", &mut b, &tag).is_err());
            let mut b = sealed;
            assert!(k.open(5, b"hdR", &mut b, &tag).is_err());
            let mut b = sealed;
            b[0] ^= 1;
            assert!(k.open(5, b"hdr", &mut b, &tag).is_err());
            let mut b = sealed;
            assert!(
                PacketKey::new(kind, &[8; 32])
                    .open(5, b"hdr", &mut b, &tag)
                    .is_err()
            );
        }
    }

    #[test]
    fn offer_bits_are_distinct() {
        assert_ne!(AeadKind::Aes256Gcm.bit(), AeadKind::ChaCha20Poly1305.bit());
        for k in AeadKind::ALL {
            assert_eq!(AeadKind::from_bit(k.bit()), Some(k));
        }
        assert_eq!(AeadKind::from_bit(0x03), None);
    }
}
