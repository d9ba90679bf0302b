//! Stateless reset tokens: how a node that lost a session (it restarted) tells the peer at
//! once, instead of leaving it to send into the void until its idle timeout.
//!
//! Each side sends, inside the encrypted handshake, the token for its own session index:
//! `BLAKE2s-MAC(reset_key, "tern reset" ‖ index)[..16]`, where `reset_key` is derived from
//! the node's long-term secret. A restarted node derives the same key, so when a data packet
//! arrives for an index it does not know, it answers with that index and its token (a
//! `RESET` packet, smaller than what triggered it, rate limited). The peer closes the
//! session only if the token equals the one the handshake gave it; nobody else can forge it.

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::cookie::keyed_hash;

/// Length of a reset token.
pub const TOKEN_LEN: usize = 16;

/// A stateless reset token.
pub type Token = [u8; TOKEN_LEN];

/// Derives tokens from the node's long-term secret.
#[derive(Clone)]
pub struct ResetKey(Zeroizing<[u8; 32]>);

impl ResetKey {
    /// The key for a node whose long-term secret seed is `secret`.
    pub fn new(secret: &[u8; 32]) -> Self {
        Self(Zeroizing::new(keyed_hash(
            secret,
            &[b"tern stateless reset key v1"],
        )))
    }

    /// The token for local session index `index`.
    pub fn token(&self, index: u32) -> Token {
        let full = keyed_hash(&self.0, &[b"tern reset", &index.to_be_bytes()]);
        let mut t = [0u8; TOKEN_LEN];
        t.copy_from_slice(&full[..TOKEN_LEN]);
        t
    }
}

impl std::fmt::Debug for ResetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResetKey(..)")
    }
}

/// Compares two tokens in constant time.
pub fn tokens_equal(a: &Token, b: &Token) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_per_secret_and_index_and_differ_otherwise() {
        let a = ResetKey::new(&[1; 32]);
        let a2 = ResetKey::new(&[1; 32]);
        let b = ResetKey::new(&[2; 32]);
        assert_eq!(
            a.token(7),
            a2.token(7),
            "a restarted node derives the same token"
        );
        assert_ne!(a.token(7), a.token(8));
        assert_ne!(a.token(7), b.token(7));
        assert!(tokens_equal(&a.token(7), &a2.token(7)));
        assert!(!tokens_equal(&a.token(7), &b.token(7)));
    }
}
