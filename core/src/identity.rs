//! Long-term identity: an Ed25519 key pair, the [`PeerId`] derived from it, and the X25519
//! static key the Noise handshake uses (Edwards → Montgomery, so one key proves both).

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use zeroize::Zeroizing;

/// A peer's identity: its 32-byte Ed25519 public key.
///
/// Printed as 64 lower-case hex digits; [`PeerId::short`] gives the first 8 for logs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId([u8; 32]);

impl PeerId {
    /// Wraps raw public-key bytes. Use [`PeerId::verifying_key`] to check the bytes are a
    /// valid, non-weak Ed25519 point before trusting them.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes of the Ed25519 public key.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Decodes the Ed25519 key. Returns `None` for bytes that are not a point or are a weak
    /// (small-order) key; such a peer id can never authenticate.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        let vk = VerifyingKey::from_bytes(&self.0).ok()?;
        (!vk.is_weak()).then_some(vk)
    }

    /// The X25519 public key a handshake with this peer must see, or `None` if the peer id
    /// is not a valid key.
    pub fn x25519_public(&self) -> Option<[u8; 32]> {
        Some(self.verifying_key()?.to_montgomery().to_bytes())
    }

    /// Verifies an Ed25519 signature by this peer over `msg`.
    pub fn verify(&self, msg: &[u8], signature: &[u8; 64]) -> bool {
        let Some(vk) = self.verifying_key() else {
            return false;
        };
        vk.verify(msg, &Signature::from_bytes(signature)).is_ok()
    }

    /// The address a node uses when no directory assigned one: network 0, node number from
    /// a hash of the key. Stable for the key; not guaranteed unique (the directory's
    /// assignment is).
    pub fn default_address(&self) -> crate::Address {
        let h = crate::crypto::cookie::hash(&[b"tern address", &self.0]);
        crate::Address::new(0, u32::from_be_bytes([h[0], h[1], h[2], h[3]]))
    }

    /// First 8 hex digits, for logs and human output.
    pub fn short(&self) -> String {
        self.to_string()[..8].to_owned()
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

/// Why a string is not a valid [`PeerId`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerIdParseError {
    /// Not 64 hex digits.
    #[error("a peer id is 64 hex digits, got {0} characters")]
    Length(usize),
    /// A character that is not a hex digit.
    #[error("a peer id may only contain hex digits (0-9, a-f)")]
    NotHex,
    /// The bytes are not a usable Ed25519 public key.
    #[error("not a valid Ed25519 public key")]
    InvalidKey,
}

impl FromStr for PeerId {
    type Err = PeerIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(PeerIdParseError::Length(s.len()));
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(chunk).map_err(|_| PeerIdParseError::NotHex)?;
            out[i] = u8::from_str_radix(hex, 16).map_err(|_| PeerIdParseError::NotHex)?;
        }
        let id = PeerId(out);
        if id.verifying_key().is_none() {
            return Err(PeerIdParseError::InvalidKey);
        }
        Ok(id)
    }
}

/// A node's long-term secret: an Ed25519 signing key and the X25519 static secret derived
/// from it. Cheap to clone; the secret bytes are wiped on drop.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    x25519_secret: Zeroizing<[u8; 32]>,
    x25519_public: [u8; 32],
    peer_id: PeerId,
    reset: crate::crypto::reset::ResetKey,
}

impl Identity {
    /// Builds an identity from a 32-byte Ed25519 secret seed. Production callers draw the
    /// seed from the OS CSPRNG and persist it; tests use fixed seeds.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&secret);
        let vk = signing.verifying_key();
        // `to_scalar_bytes` is SHA-512(seed)[..32], unclamped; X25519 clamps on use, so this
        // gives the same key as libsodium's ed25519_sk_to_curve25519.
        let x25519_secret = Zeroizing::new(signing.to_scalar_bytes());
        let x25519_public = vk.to_montgomery().to_bytes();
        Self {
            signing,
            x25519_secret,
            x25519_public,
            peer_id: PeerId(vk.to_bytes()),
            reset: crate::crypto::reset::ResetKey::new(&secret),
        }
    }

    /// This identity's public id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The 32-byte secret seed (for persisting the identity).
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// Signs `msg` with the Ed25519 key.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// The derived X25519 static secret (unclamped scalar bytes) for the Noise handshake.
    pub(crate) fn x25519_secret(&self) -> &[u8; 32] {
        &self.x25519_secret
    }

    /// The stateless reset token this node gives peers for its session index `index`
    /// (the same after a restart: it derives from the long-term secret).
    pub fn reset_token(&self, index: u32) -> crate::crypto::reset::Token {
        self.reset.token(index)
    }

    /// The derived X25519 static public key.
    pub fn x25519_public(&self) -> [u8; 32] {
        self.x25519_public
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_x25519_key_matches_scalar_mult() {
        for i in 0u8..32 {
            let id = Identity::from_secret([i; 32]);
            let public =
                x25519_dalek::x25519(*id.x25519_secret(), x25519_dalek::X25519_BASEPOINT_BYTES);
            assert_eq!(public, id.x25519_public());
            assert_eq!(id.peer_id().x25519_public(), Some(public));
        }
    }

    #[test]
    fn libsodium_known_answer() {
        // libsodium test vector for crypto_sign_ed25519_{sk,pk}_to_curve25519.
        let seed = hex("421151a459faeade3d247115f94aedae42318124095afabe4d1451a559faedee");
        let id = Identity::from_secret(seed);
        assert_eq!(
            id.x25519_public(),
            hex("f1814f0e8ff1043d8a44d25babff3cedcae6c22c3edaa48f857ae70de2baae50")
        );
        let mut clamped = *id.x25519_secret();
        clamped[0] &= 248;
        clamped[31] &= 127;
        clamped[31] |= 64;
        assert_eq!(
            clamped,
            hex("8052030376d47112be7f73ed7a019293dd12ad910b654455798b4667d73de166")
        );
    }

    #[test]
    fn sign_and_verify() {
        let id = Identity::from_secret([7; 32]);
        let sig = id.sign(b"hello");
        assert!(id.peer_id().verify(b"hello", &sig));
        assert!(!id.peer_id().verify(b"hellO", &sig));
        let other = Identity::from_secret([8; 32]);
        assert!(!other.peer_id().verify(b"hello", &sig));
    }

    #[test]
    fn peer_id_text_round_trip_and_errors() {
        let id = Identity::from_secret([3; 32]).peer_id();
        assert_eq!(id.to_string().parse::<PeerId>(), Ok(id));
        assert_eq!("abc".parse::<PeerId>(), Err(PeerIdParseError::Length(3)));
        assert_eq!(
            "zz".repeat(32).parse::<PeerId>(),
            Err(PeerIdParseError::NotHex)
        );
        // The identity point (small order) is a weak key.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let weak_hex: String = weak.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            weak_hex.parse::<PeerId>(),
            Err(PeerIdParseError::InvalidKey)
        );
    }

    fn hex(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for i in 0..32 {
            out[i] = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
