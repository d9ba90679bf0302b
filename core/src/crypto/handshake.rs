//! The Noise handshake, through `snow`: IK when the initiator knows the responder's key (the
//! normal case after a directory lookup), XX otherwise. Static keys are the X25519 keys
//! derived from each side's Ed25519 identity; each side also sends its Ed25519 key inside an
//! encrypted payload and the other checks that it maps to the static key Noise
//! authenticated, so one key proves both (see `identity`).
//!
//! Payloads (all encrypted except XX message 1, which is empty):
//!
//! | message | payload |
//! |---|---|
//! | IK 1 | initiator Ed25519 key (32), timestamp ns (u64), initiator reset token (16) |
//! | XX 1 | empty |
//! | 2 | status (u8), responder index (u32), AEAD choice (u8), responder reset token (16), [XX: responder Ed25519 key (32)] |
//! | XX 3 | initiator Ed25519 key (32), initiator reset token (16) |
//!
//! Reset tokens (see `reset`) are for the sender's own session index.
//!
//! Randomness for ephemeral keys comes from a per-handshake seed drawn from the node's
//! seeded RNG (a custom `snow` resolver), so whole runs are reproducible.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use snow::params::NoiseParams;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use super::aead::AeadKind;
use super::precompute::{DhHints, HintedDh, KeyCache};
use super::reset::{TOKEN_LEN, Token};
use crate::identity::{Identity, PeerId};

/// Largest Noise message tern sends (XX message 2 with its payload is 134 bytes).
pub const MAX_NOISE_MSG: usize = 256;

/// Noise pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Initiator knows the responder's static key: 1 round trip, initiator identity hidden.
    IK,
    /// Neither side knows the other: 1.5 round trips.
    XX,
}

/// Handshake suite: pattern plus Noise primitives. Encoded as one byte in the init header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    /// The pattern.
    pub pattern: Pattern,
    /// The handshake's own cipher and hash (the data AEAD is negotiated separately).
    pub cipher: HandshakeCipher,
}

/// The Noise cipher/hash pair used during the handshake itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeCipher {
    /// `AESGCM_SHA256`.
    AesGcmSha256,
    /// `ChaChaPoly_BLAKE2s`.
    ChaChaPolyBlake2s,
}

impl Suite {
    /// The wire id.
    pub fn id(self) -> u8 {
        let p = match self.pattern {
            Pattern::IK => 0,
            Pattern::XX => 1,
        };
        let c = match self.cipher {
            HandshakeCipher::AesGcmSha256 => 0,
            HandshakeCipher::ChaChaPolyBlake2s => 2,
        };
        p | c
    }

    /// Decodes a wire id.
    pub fn from_id(id: u8) -> Option<Self> {
        let pattern = match id & 1 {
            0 => Pattern::IK,
            _ => Pattern::XX,
        };
        let cipher = match id & !1 {
            0 => HandshakeCipher::AesGcmSha256,
            2 => HandshakeCipher::ChaChaPolyBlake2s,
            _ => return None,
        };
        Some(Self { pattern, cipher })
    }

    fn params(self) -> NoiseParams {
        let name = match (self.pattern, self.cipher) {
            (Pattern::IK, HandshakeCipher::AesGcmSha256) => "Noise_IK_25519_AESGCM_SHA256",
            (Pattern::XX, HandshakeCipher::AesGcmSha256) => "Noise_XX_25519_AESGCM_SHA256",
            (Pattern::IK, HandshakeCipher::ChaChaPolyBlake2s) => {
                "Noise_IK_25519_ChaChaPoly_BLAKE2s"
            }
            (Pattern::XX, HandshakeCipher::ChaChaPolyBlake2s) => {
                "Noise_XX_25519_ChaChaPoly_BLAKE2s"
            }
        };
        name.parse()
            .unwrap_or_else(|_| unreachable!("the four suite names are valid Noise names"))
    }
}

/// Why a handshake message was not accepted. Network input: counted, never surfaced except
/// as a typed close reason where it is authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Noise rejected the message (wrong key, corrupted, replayed into the wrong state).
    #[error("noise message rejected")]
    Noise,
    /// The payload did not have the expected layout.
    #[error("bad handshake payload")]
    Payload,
    /// The Ed25519 key in the payload does not match the authenticated static key.
    #[error("identity does not match handshake key")]
    IdentityMismatch,
}

struct SeededRandom(ChaCha20Rng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

/// snow's primitives, with the ephemeral key drawn from `seed` and X25519 through
/// [`HintedDh`] (precomputed keys, see `precompute`).
struct SeededResolver {
    seed: [u8; 32],
    hints: DhHints,
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRandom(ChaCha20Rng::from_seed(self.seed))))
    }
    fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            snow::params::DHChoice::Curve25519 => Some(Box::new(HintedDh::new(self.hints.clone()))),
            _ => None,
        }
    }
    fn resolve_hash(&self, choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// One side of an in-progress handshake.
pub struct Handshake {
    state: Box<snow::HandshakeState>,
    suite: Suite,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// Everything needed to rebuild a handshake state from scratch. `snow` does not fully roll
/// back a failed `read_message` (its cipher key stays mixed), so after a corrupted or forged
/// message the state is rebuilt deterministically from these inputs (same seed, same
/// ephemeral, same messages) and the genuine message can still be read later.
#[derive(Clone)]
pub enum Recipe {
    /// An initiator that has written message 1.
    Initiator {
        /// Suite.
        suite: Suite,
        /// Responder key (IK).
        responder: Option<PeerId>,
        /// Noise prologue.
        prologue: Vec<u8>,
        /// Ephemeral seed.
        seed: [u8; 32],
        /// IK timestamp.
        timestamp_ns: u64,
        /// Our session index (its reset token goes in the IK payload).
        local_index: u32,
    },
    /// An XX responder that has read message 1 and written message 2.
    ResponderXx {
        /// Suite.
        suite: Suite,
        /// Noise prologue.
        prologue: Vec<u8>,
        /// Ephemeral seed.
        seed: [u8; 32],
        /// The initiator's message 1.
        init: Vec<u8>,
        /// Our session index sent in message 2.
        responder_index: u32,
        /// The AEAD chosen in message 2.
        aead: AeadKind,
    },
}

impl std::fmt::Debug for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recipe")
    }
}

impl Recipe {
    /// Rebuilds the handshake state this recipe describes.
    pub fn rebuild(&self, identity: &Identity) -> Result<Handshake, HandshakeError> {
        self.rebuild_with(identity, &mut KeyCache::new())
    }

    /// [`rebuild`](Self::rebuild) with the node's precomputed keys.
    pub(crate) fn rebuild_with(
        &self,
        identity: &Identity,
        keys: &mut KeyCache,
    ) -> Result<Handshake, HandshakeError> {
        let mut scratch = [0u8; MAX_NOISE_MSG];
        match self {
            Recipe::Initiator {
                suite,
                responder,
                prologue,
                seed,
                timestamp_ns,
                local_index,
            } => {
                let hints = keys.rebuild_hints(identity, responder.as_ref());
                let remote = initiator_remote(*suite, responder.as_ref(), keys)?;
                let mut hs = Handshake::initiator_hinted(
                    *suite,
                    identity,
                    remote.as_ref(),
                    prologue,
                    *seed,
                    hints,
                )?;
                hs.write_init(identity, *timestamp_ns, *local_index, &mut scratch)?;
                Ok(hs)
            }
            Recipe::ResponderXx {
                suite,
                prologue,
                seed,
                init,
                responder_index,
                aead,
            } => {
                let hints = keys.rebuild_hints(identity, None);
                let mut hs = Handshake::responder_hinted(*suite, identity, prologue, *seed, hints)?;
                hs.read_init_with(init, keys)?;
                hs.write_response(
                    identity,
                    STATUS_ACCEPT,
                    *responder_index,
                    *aead,
                    &mut scratch,
                )?;
                Ok(hs)
            }
        }
    }
}

/// Decoded payload of message 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponsePayload {
    /// 0 = accepted, 1 = refused by the responder's trust policy.
    pub status: u8,
    /// The responder's session index.
    pub responder_index: u32,
    /// The data AEAD the responder chose.
    pub aead: AeadKind,
    /// The responder's Ed25519 key (XX only; IK already knows it).
    pub responder: Option<PeerId>,
    /// The responder's stateless reset token for its index.
    pub reset_token: Token,
}

/// IK message-1 payload length.
const IK1_LEN: usize = 32 + 8 + TOKEN_LEN;
/// Message-2 payload length for IK (XX adds the responder's key).
const M2_IK_LEN: usize = 6 + TOKEN_LEN;
/// Message-2 payload length for XX.
const M2_XX_LEN: usize = M2_IK_LEN + 32;
/// XX message-3 payload length.
const XX3_LEN: usize = 32 + TOKEN_LEN;

/// Message-2 status: accepted.
pub const STATUS_ACCEPT: u8 = 0;
/// Message-2 status: the responder does not accept sessions from this initiator.
pub const STATUS_REFUSED: u8 = 1;

fn build(
    suite: Suite,
    identity: &Identity,
    remote: Option<&[u8; 32]>,
    prologue: &[u8],
    seed: [u8; 32],
    hints: DhHints,
    initiator: bool,
) -> Result<Handshake, HandshakeError> {
    let resolver = SeededResolver { seed, hints };
    let b = snow::Builder::with_resolver(suite.params(), Box::new(resolver))
        .local_private_key(identity.x25519_secret())
        .map_err(|_| HandshakeError::Noise)?
        .prologue(prologue)
        .map_err(|_| HandshakeError::Noise)?;
    let b = match remote {
        Some(r) => b.remote_public_key(r).map_err(|_| HandshakeError::Noise)?,
        None => b,
    };
    let state = if initiator {
        b.build_initiator()
    } else {
        b.build_responder()
    }
    .map_err(|_| HandshakeError::Noise)?;
    Ok(Handshake {
        state: Box::new(state),
        suite,
    })
}

/// Checks that `ed` is a valid Ed25519 key whose Montgomery form is the authenticated
/// X25519 static key `x` (conversions memoised in `keys`).
fn check_identity(ed: [u8; 32], x: &[u8], keys: &mut KeyCache) -> Result<PeerId, HandshakeError> {
    let id = PeerId::from_bytes(ed);
    if keys.identity_matches(&id, x) {
        Ok(id)
    } else {
        Err(HandshakeError::IdentityMismatch)
    }
}

/// The responder's X25519 key an initiator needs (IK), from the memo.
fn initiator_remote(
    suite: Suite,
    responder: Option<&PeerId>,
    keys: &mut KeyCache,
) -> Result<Option<[u8; 32]>, HandshakeError> {
    match (suite.pattern, responder) {
        (Pattern::IK, Some(p)) => Ok(Some(keys.peer_x25519(p).ok_or(HandshakeError::Payload)?)),
        (Pattern::IK, None) => Err(HandshakeError::Payload),
        (Pattern::XX, _) => Ok(None),
    }
}

impl Handshake {
    /// Starts an initiator. `responder` is required for IK and optional (ignored) for XX.
    pub fn initiator(
        suite: Suite,
        identity: &Identity,
        responder: Option<&PeerId>,
        prologue: &[u8],
        seed: [u8; 32],
    ) -> Result<Self, HandshakeError> {
        let remote = initiator_remote(suite, responder, &mut KeyCache::new())?;
        let hints = DhHints::for_identity(identity);
        build(
            suite,
            identity,
            remote.as_ref(),
            prologue,
            seed,
            hints,
            true,
        )
    }

    /// An initiator with precomputed keys: `remote` is the responder's X25519 key (IK).
    pub(crate) fn initiator_hinted(
        suite: Suite,
        identity: &Identity,
        remote: Option<&[u8; 32]>,
        prologue: &[u8],
        seed: [u8; 32],
        hints: DhHints,
    ) -> Result<Self, HandshakeError> {
        build(suite, identity, remote, prologue, seed, hints, true)
    }

    /// A responder with precomputed keys.
    pub(crate) fn responder_hinted(
        suite: Suite,
        identity: &Identity,
        prologue: &[u8],
        seed: [u8; 32],
        hints: DhHints,
    ) -> Result<Self, HandshakeError> {
        build(suite, identity, None, prologue, seed, hints, false)
    }

    /// Starts a responder.
    pub fn responder(
        suite: Suite,
        identity: &Identity,
        prologue: &[u8],
        seed: [u8; 32],
    ) -> Result<Self, HandshakeError> {
        let hints = DhHints::for_identity(identity);
        build(suite, identity, None, prologue, seed, hints, false)
    }

    /// The suite in use.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Writes message 1 into `out` (IK: with identity, timestamp and the reset token for
    /// `local_index`).
    pub fn write_init(
        &mut self,
        identity: &Identity,
        timestamp_ns: u64,
        local_index: u32,
        out: &mut [u8],
    ) -> Result<usize, HandshakeError> {
        let mut payload = [0u8; IK1_LEN];
        let len = match self.suite.pattern {
            Pattern::IK => {
                payload[..32].copy_from_slice(identity.peer_id().as_bytes());
                payload[32..40].copy_from_slice(&timestamp_ns.to_be_bytes());
                payload[40..].copy_from_slice(&identity.reset_token(local_index));
                IK1_LEN
            }
            Pattern::XX => 0,
        };
        self.state
            .write_message(&payload[..len], out)
            .map_err(|_| HandshakeError::Noise)
    }

    /// Reads message 1 as responder. For IK returns the initiator's id, timestamp and reset
    /// token.
    pub fn read_init(
        &mut self,
        msg: &[u8],
    ) -> Result<Option<(PeerId, u64, Token)>, HandshakeError> {
        self.read_init_with(msg, &mut KeyCache::new())
    }

    /// [`read_init`](Self::read_init) with the node's memoised peer keys.
    pub(crate) fn read_init_with(
        &mut self,
        msg: &[u8],
        keys: &mut KeyCache,
    ) -> Result<Option<(PeerId, u64, Token)>, HandshakeError> {
        let mut payload = [0u8; MAX_NOISE_MSG];
        let n = self
            .state
            .read_message(msg, &mut payload)
            .map_err(|_| HandshakeError::Noise)?;
        match self.suite.pattern {
            Pattern::IK => {
                if n != IK1_LEN {
                    return Err(HandshakeError::Payload);
                }
                let mut ed = [0u8; 32];
                ed.copy_from_slice(&payload[..32]);
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&payload[32..40]);
                let mut token = [0u8; TOKEN_LEN];
                token.copy_from_slice(&payload[40..IK1_LEN]);
                let rs = self
                    .state
                    .get_remote_static()
                    .ok_or(HandshakeError::Noise)?;
                let peer = check_identity(ed, rs, keys)?;
                Ok(Some((peer, u64::from_be_bytes(ts), token)))
            }
            Pattern::XX => {
                if n != 0 {
                    return Err(HandshakeError::Payload);
                }
                Ok(None)
            }
        }
    }

    /// Writes message 2 as responder (with the reset token for `responder_index`).
    pub fn write_response(
        &mut self,
        identity: &Identity,
        status: u8,
        responder_index: u32,
        aead: AeadKind,
        out: &mut [u8],
    ) -> Result<usize, HandshakeError> {
        let mut payload = [0u8; M2_XX_LEN];
        payload[0] = status;
        payload[1..5].copy_from_slice(&responder_index.to_be_bytes());
        payload[5] = aead.bit();
        payload[6..M2_IK_LEN].copy_from_slice(&identity.reset_token(responder_index));
        let len = match self.suite.pattern {
            Pattern::IK => M2_IK_LEN,
            Pattern::XX => {
                payload[M2_IK_LEN..].copy_from_slice(identity.peer_id().as_bytes());
                M2_XX_LEN
            }
        };
        self.state
            .write_message(&payload[..len], out)
            .map_err(|_| HandshakeError::Noise)
    }

    /// Reads message 2 as initiator.
    pub fn read_response(&mut self, msg: &[u8]) -> Result<ResponsePayload, HandshakeError> {
        self.read_response_with(msg, &mut KeyCache::new())
    }

    /// [`read_response`](Self::read_response) with the node's memoised peer keys.
    pub(crate) fn read_response_with(
        &mut self,
        msg: &[u8],
        keys: &mut KeyCache,
    ) -> Result<ResponsePayload, HandshakeError> {
        let mut payload = [0u8; MAX_NOISE_MSG];
        let n = self
            .state
            .read_message(msg, &mut payload)
            .map_err(|_| HandshakeError::Noise)?;
        let want = match self.suite.pattern {
            Pattern::IK => M2_IK_LEN,
            Pattern::XX => M2_XX_LEN,
        };
        if n != want {
            return Err(HandshakeError::Payload);
        }
        let aead = AeadKind::from_bit(payload[5]).ok_or(HandshakeError::Payload)?;
        let mut reset_token = [0u8; TOKEN_LEN];
        reset_token.copy_from_slice(&payload[6..M2_IK_LEN]);
        let responder = match self.suite.pattern {
            Pattern::IK => None,
            Pattern::XX => {
                let mut ed = [0u8; 32];
                ed.copy_from_slice(&payload[M2_IK_LEN..M2_XX_LEN]);
                let rs = self
                    .state
                    .get_remote_static()
                    .ok_or(HandshakeError::Noise)?;
                Some(check_identity(ed, rs, keys)?)
            }
        };
        Ok(ResponsePayload {
            status: payload[0],
            responder_index: u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]),
            aead,
            responder,
            reset_token,
        })
    }

    /// Writes XX message 3 as initiator (with the reset token for `local_index`).
    pub fn write_final(
        &mut self,
        identity: &Identity,
        local_index: u32,
        out: &mut [u8],
    ) -> Result<usize, HandshakeError> {
        let mut payload = [0u8; XX3_LEN];
        payload[..32].copy_from_slice(identity.peer_id().as_bytes());
        payload[32..].copy_from_slice(&identity.reset_token(local_index));
        self.state
            .write_message(&payload, out)
            .map_err(|_| HandshakeError::Noise)
    }

    /// Reads XX message 3 as responder; returns the initiator's id and reset token.
    pub fn read_final(&mut self, msg: &[u8]) -> Result<(PeerId, Token), HandshakeError> {
        self.read_final_with(msg, &mut KeyCache::new())
    }

    /// [`read_final`](Self::read_final) with the node's memoised peer keys.
    pub(crate) fn read_final_with(
        &mut self,
        msg: &[u8],
        keys: &mut KeyCache,
    ) -> Result<(PeerId, Token), HandshakeError> {
        let mut payload = [0u8; MAX_NOISE_MSG];
        let n = self
            .state
            .read_message(msg, &mut payload)
            .map_err(|_| HandshakeError::Noise)?;
        if n != XX3_LEN {
            return Err(HandshakeError::Payload);
        }
        let mut ed = [0u8; 32];
        ed.copy_from_slice(&payload[..32]);
        let mut token = [0u8; TOKEN_LEN];
        token.copy_from_slice(&payload[32..XX3_LEN]);
        let rs = self
            .state
            .get_remote_static()
            .ok_or(HandshakeError::Noise)?;
        Ok((check_identity(ed, rs, keys)?, token))
    }

    /// After the last message: the two data secrets as (initiator→responder,
    /// responder→initiator). `None` if the handshake is not finished.
    pub fn split(&mut self) -> Option<([u8; 32], [u8; 32])> {
        if !self.state.is_handshake_finished() {
            return None;
        }
        Some(self.state.dangerously_get_raw_split())
    }

    /// The handshake hash (channel binding), once finished.
    pub fn handshake_hash(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        let h = self.state.get_handshake_hash();
        let n = h.len().min(32);
        out[..n].copy_from_slice(&h[..n]);
        out
    }
}

/// Draws a 32-byte seed from `rng` (helper for callers holding a ChaCha RNG).
pub fn draw_seed(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut s = [0u8; 32];
    rng.fill_bytes(&mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Identity, Identity) {
        (
            Identity::from_secret([1; 32]),
            Identity::from_secret([2; 32]),
        )
    }

    #[test]
    fn ik_round_trip_gives_matching_opposite_keys() {
        let (a, b) = ids();
        for cipher in [
            HandshakeCipher::AesGcmSha256,
            HandshakeCipher::ChaChaPolyBlake2s,
        ] {
            let suite = Suite {
                pattern: Pattern::IK,
                cipher,
            };
            let mut i = Handshake::initiator(suite, &a, Some(&b.peer_id()), b"p", [3; 32]).unwrap();
            let mut r = Handshake::responder(suite, &b, b"p", [4; 32]).unwrap();
            let mut m = [0u8; 512];
            let n = i.write_init(&a, 77, 5, &mut m).unwrap();
            assert_eq!(
                r.read_init(&m[..n]).unwrap(),
                Some((a.peer_id(), 77, a.reset_token(5)))
            );
            let n = r
                .write_response(&b, STATUS_ACCEPT, 9, AeadKind::ChaCha20Poly1305, &mut m)
                .unwrap();
            let resp = i.read_response(&m[..n]).unwrap();
            assert_eq!(resp.responder_index, 9);
            assert_eq!(resp.reset_token, b.reset_token(9));
            assert_eq!(resp.aead, AeadKind::ChaCha20Poly1305);
            let (i1, i2) = i.split().unwrap();
            let (r1, r2) = r.split().unwrap();
            assert_eq!((i1, i2), (r1, r2));
            assert_ne!(i1, i2, "the two directions use different keys");
            assert_eq!(i.handshake_hash(), r.handshake_hash());
        }
    }

    #[test]
    fn xx_round_trip_learns_both_identities() {
        let (a, b) = ids();
        let suite = Suite {
            pattern: Pattern::XX,
            cipher: HandshakeCipher::AesGcmSha256,
        };
        let mut i = Handshake::initiator(suite, &a, None, b"p", [3; 32]).unwrap();
        let mut r = Handshake::responder(suite, &b, b"p", [4; 32]).unwrap();
        let mut m = [0u8; 512];
        let n = i.write_init(&a, 0, 5, &mut m).unwrap();
        assert_eq!(r.read_init(&m[..n]).unwrap(), None);
        let n = r
            .write_response(&b, STATUS_ACCEPT, 1, AeadKind::Aes256Gcm, &mut m)
            .unwrap();
        assert!(n <= MAX_NOISE_MSG);
        let resp = i.read_response(&m[..n]).unwrap();
        assert_eq!(resp.responder, Some(b.peer_id()));
        assert_eq!(resp.reset_token, b.reset_token(1));
        let n = i.write_final(&a, 5, &mut m).unwrap();
        assert_eq!(
            r.read_final(&m[..n]).unwrap(),
            (a.peer_id(), a.reset_token(5))
        );
        assert_eq!(i.split(), r.split());
    }

    #[test]
    fn ik_to_the_wrong_key_fails_and_prologue_is_bound() {
        let (a, b) = ids();
        let c = Identity::from_secret([5; 32]);
        let suite = Suite {
            pattern: Pattern::IK,
            cipher: HandshakeCipher::AesGcmSha256,
        };
        let mut i = Handshake::initiator(suite, &a, Some(&c.peer_id()), b"p", [3; 32]).unwrap();
        let mut r = Handshake::responder(suite, &b, b"p", [4; 32]).unwrap();
        let mut m = [0u8; 512];
        let n = i.write_init(&a, 1, 5, &mut m).unwrap();
        assert_eq!(r.read_init(&m[..n]), Err(HandshakeError::Noise));
        // Right key, different prologue (a tampered header): rejected.
        let mut i = Handshake::initiator(suite, &a, Some(&b.peer_id()), b"p", [3; 32]).unwrap();
        let mut r = Handshake::responder(suite, &b, b"q", [4; 32]).unwrap();
        let n = i.write_init(&a, 1, 5, &mut m).unwrap();
        assert_eq!(r.read_init(&m[..n]), Err(HandshakeError::Noise));
    }

    #[test]
    fn suite_ids_round_trip() {
        for id in 0..4 {
            assert_eq!(Suite::from_id(id).map(Suite::id), Some(id));
        }
        assert_eq!(Suite::from_id(4), None);
        assert_eq!(Suite::from_id(0xff), None);
    }
}
#[cfg(test)]
mod retry_tests {
    use super::*;
    #[test]
    fn xx_final_can_be_retried_after_a_corrupted_copy() {
        let (a, b) = (
            Identity::from_secret([1; 32]),
            Identity::from_secret([2; 32]),
        );
        let suite = Suite {
            pattern: Pattern::XX,
            cipher: HandshakeCipher::AesGcmSha256,
        };
        let mut i = Handshake::initiator(suite, &a, None, b"p", [3; 32]).unwrap();
        let mut r = Handshake::responder(suite, &b, b"p", [4; 32]).unwrap();
        let mut m = [0u8; 512];
        let n = i.write_init(&a, 0, 5, &mut m).unwrap();
        let init_msg = m[..n].to_vec();
        r.read_init(&m[..n]).unwrap();
        let n = r
            .write_response(&b, STATUS_ACCEPT, 1, AeadKind::Aes256Gcm, &mut m)
            .unwrap();
        i.read_response(&m[..n]).unwrap();
        let n = i.write_final(&a, 5, &mut m).unwrap();
        let recipe = Recipe::ResponderXx {
            suite,
            prologue: b"p".to_vec(),
            seed: [4; 32],
            init: init_msg,
            responder_index: 1,
            aead: AeadKind::Aes256Gcm,
        };
        for at in [0, 40, n - 1] {
            let mut bad = m;
            bad[at] ^= 0x40;
            assert!(r.read_final(&bad[..n]).is_err());
            r = recipe.rebuild(&b).unwrap();
        }
        assert_eq!(r.read_final(&m[..n]).unwrap().0, a.peer_id());
        assert_eq!(i.split(), r.split());
    }

    #[test]
    fn response_can_be_retried_after_a_corrupted_copy() {
        let (a, b) = (
            Identity::from_secret([1; 32]),
            Identity::from_secret([2; 32]),
        );
        for pattern in [Pattern::IK, Pattern::XX] {
            let suite = Suite {
                pattern,
                cipher: HandshakeCipher::AesGcmSha256,
            };
            let responder = (pattern == Pattern::IK).then(|| b.peer_id());
            let recipe = Recipe::Initiator {
                suite,
                responder,
                prologue: b"p".to_vec(),
                seed: [3; 32],
                timestamp_ns: 5,
                local_index: 7,
            };
            let mut i = recipe.rebuild(&a).unwrap();
            let mut again =
                Handshake::initiator(suite, &a, responder.as_ref(), b"p", [3; 32]).unwrap();
            let mut m = [0u8; 512];
            let n = again.write_init(&a, 5, 7, &mut m).unwrap();
            let mut r = Handshake::responder(suite, &b, b"p", [4; 32]).unwrap();
            r.read_init(&m[..n]).unwrap();
            let n = r
                .write_response(&b, STATUS_ACCEPT, 1, AeadKind::Aes256Gcm, &mut m)
                .unwrap();
            for at in [0, 33, n - 1] {
                let mut bad = m;
                bad[at] ^= 0x40;
                assert!(i.read_response(&bad[..n]).is_err());
                i = recipe.rebuild(&a).unwrap();
            }
            assert_eq!(i.read_response(&m[..n]).unwrap().responder_index, 1);
        }
    }
}
