//! Key material computed ahead of time, so that a handshake's critical path holds only the
//! X25519 work that cannot be moved.
//!
//! Every Noise IK message waits for its sender's Diffie-Hellman work, so the connect
//! latency is the sum of both sides' X25519 operations. Measured on the project machine
//! (x25519-dalek / curve25519-dalek 4, serial field arithmetic for the Montgomery ladder,
//! see `BENCHMARKS.md`): a variable-base multiplication (one DH) costs ≈ 38 µs, a
//! fixed-base one (a public key) ≈ 11 µs, an Ed25519 → X25519 conversion of a peer id
//! (point decompression + inversion) ≈ 7 µs. Before this module a repeat IK handshake put
//! 8 DH + 4 public-key derivations + 4 conversions on the critical path; now it is 6 DH
//! and nothing else:
//!
//! * **The local static public key** comes from [`Identity`] (snow's stock resolver derived
//!   it again on every handshake build: one fixed-base multiplication per side).
//! * **Peer keys**: the X25519 form of a peer's Ed25519 id is memoised per peer after one
//!   validated conversion (it was converted up to three times per connect, and once more
//!   to check the identity in the payload).
//! * **Static-static DH** (`ss` in Noise IK) is a function of the two long-term keys only,
//!   so it is memoised per peer, as WireGuard does (`precomputed_static_static`). The
//!   initiator knows the responder's key up front and computes it itself before snow would
//!   (no extra cost). The responder learns the initiator's key only inside snow, so from
//!   the second contact with the same peer it computes the value once, after the
//!   handshake's answer has left ([`KeyCache::do_work`]), off the critical path. (Second
//!   contact, not first: a flood of one-off identities must not double the responder's
//!   work.)
//! * **The next ephemeral key pair** is generated after each handshake that used one, off
//!   the critical path, so the next handshake starts with its public key ready.
//!
//! All of it reaches snow as *hints* through a custom [`Dh`]: a hint is used only when it
//! matches the private key at hand (compared in constant time) or the public key of the
//! DH call, so a stale, missing or evicted hint costs time and never changes a result.
//! Deferred work runs in `Node::handle_timeout` once nothing is waiting to be sent.
//!
//! Known side channel, accepted: a cache hit makes the responder's answer about one DH
//! (≈ 38 µs) faster, so someone who can time answers precisely could tell a repeat
//! initiator from a new one. It learns nothing an on-path observer of the two endpoints'
//! addresses does not already see, and no key material depends on the timing.

use std::collections::{BTreeMap, VecDeque};

use rand_core::{RngCore, SeedableRng};
use snow::types::{Dh, Random};
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::identity::{Identity, PeerId};

/// Peers whose keys are memoised; the oldest is forgotten first. At most this many
/// static-static secrets (32 bytes each, wiped when dropped) are kept.
pub const PEER_CACHE: usize = 64;
/// Deferred static-static computations queued at most (one DH each).
const TODO_CAP: usize = 8;

/// An X25519 private key and its public key.
#[derive(Clone)]
pub(crate) struct KeyPair {
    secret: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl KeyPair {
    /// Derives the public key (one fixed-base multiplication).
    fn derive(secret: &[u8; 32]) -> Self {
        let public = PublicKey::from(&StaticSecret::from(*secret)).to_bytes();
        Self {
            secret: Zeroizing::new(*secret),
            public,
        }
    }

    fn matches(&self, secret: &[u8]) -> bool {
        bool::from(self.secret.as_slice().ct_eq(secret))
    }
}

/// One DH of `secret` with the public key `public` (X25519, clamping the scalar; the same
/// function snow's stock resolver computes). The scalar copy is wiped when dropped.
fn x25519(secret: &[u8; 32], public: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let shared = StaticSecret::from(*secret).diffie_hellman(&PublicKey::from(*public));
    Zeroizing::new(shared.to_bytes())
}

/// The first 32 bytes a ChaCha20 generator seeded with `seed` yields: what snow draws for
/// an ephemeral key from the handshake's seeded generator.
fn ephemeral_secret(seed: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(*seed);
    let mut secret = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut secret[..]);
    secret
}

/// What a handshake's [`HintedDh`] objects may use instead of computing.
#[derive(Clone, Default)]
pub(crate) struct DhHints {
    /// The local static key pair.
    static_pair: Option<KeyPair>,
    /// The pre-generated ephemeral key pair.
    ephemeral: Option<KeyPair>,
    /// `DH(local static secret, remote)` by remote X25519 public key.
    memo: Vec<([u8; 32], Zeroizing<[u8; 32]>)>,
}

impl DhHints {
    /// Only the static key pair (no cache at hand: tests and fuzzing).
    pub(crate) fn for_identity(identity: &Identity) -> Self {
        Self {
            static_pair: Some(static_pair(identity)),
            ..Self::default()
        }
    }
}

fn static_pair(identity: &Identity) -> KeyPair {
    KeyPair {
        secret: Zeroizing::new(*identity.x25519_secret()),
        public: identity.x25519_public(),
    }
}

/// snow's X25519 with [`DhHints`]. Results are the same as snow's stock `Dh25519`.
pub(crate) struct HintedDh {
    key: Option<KeyPair>,
    /// The key is the local static key, so `hints.memo` applies to it.
    is_static: bool,
    hints: DhHints,
}

impl HintedDh {
    pub(crate) fn new(hints: DhHints) -> Self {
        Self {
            key: None,
            is_static: false,
            hints,
        }
    }

    fn adopt(&mut self, secret: &[u8; 32]) {
        fn hit<'a>(hint: &'a Option<KeyPair>, secret: &[u8]) -> Option<&'a KeyPair> {
            hint.as_ref().filter(|k| k.matches(secret))
        }
        let stat = hit(&self.hints.static_pair, &secret[..]);
        self.is_static = stat.is_some();
        let key = stat
            .or_else(|| hit(&self.hints.ephemeral, &secret[..]))
            .cloned()
            .unwrap_or_else(|| KeyPair::derive(secret));
        self.key = Some(key);
    }
}

impl Dh for HintedDh {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        32
    }

    fn priv_len(&self) -> usize {
        32
    }

    fn set(&mut self, privkey: &[u8]) {
        let mut secret = Zeroizing::new([0u8; 32]);
        let n = privkey.len().min(32);
        secret[..n].copy_from_slice(&privkey[..n]);
        self.adopt(&secret);
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.try_fill_bytes(&mut secret[..])?;
        self.adopt(&secret);
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        self.key.as_ref().map_or(&[0u8; 32][..], |k| &k.public[..])
    }

    fn privkey(&self) -> &[u8] {
        self.key.as_ref().map_or(&[0u8; 32][..], |k| &k.secret[..])
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let key = self.key.as_ref().ok_or(snow::Error::Dh)?;
        let remote: [u8; 32] = pubkey
            .get(..32)
            .and_then(|p| p.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        let dst = out.get_mut(..32).ok_or(snow::Error::Dh)?;
        if self.is_static
            && let Some((_, ss)) = self.hints.memo.iter().find(|(k, _)| *k == remote)
        {
            dst.copy_from_slice(&ss[..]);
            return Ok(());
        }
        dst.copy_from_slice(&x25519(&key.secret, &remote)[..]);
        Ok(())
    }
}

/// What is memoised about one peer.
struct PeerKeys {
    /// Its X25519 static public key (validated: from a non-weak Ed25519 key).
    x25519: [u8; 32],
    /// `DH(our static secret, its static public)`.
    ss: Option<Zeroizing<[u8; 32]>>,
    /// Handshakes it initiated to us (for the second-contact rule).
    contacts: u8,
}

/// A pre-generated ephemeral key: the seed its secret comes from, and the pair.
struct Spare {
    seed: [u8; 32],
    pair: KeyPair,
}

/// The node's precomputed handshake keys. See the module documentation.
pub struct KeyCache {
    peers: BTreeMap<PeerId, PeerKeys>,
    /// Insertion order, for eviction.
    order: VecDeque<PeerId>,
    spare: Option<Spare>,
    /// A handshake used (or wanted) the spare: make a new one.
    refill: bool,
    /// Peers whose static-static secret is to be computed.
    todo: VecDeque<PeerId>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("peers", &self.peers.len())
            .field("spare", &self.spare.is_some())
            .field("todo", &self.todo.len())
            .finish()
    }
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyCache {
    /// An empty cache (no spare yet: the first handshake makes its own key).
    pub fn new() -> Self {
        Self {
            peers: BTreeMap::new(),
            order: VecDeque::new(),
            spare: None,
            refill: false,
            todo: VecDeque::new(),
        }
    }

    fn entry(&mut self, peer: &PeerId) -> Option<&mut PeerKeys> {
        if !self.peers.contains_key(peer) {
            let x25519 = peer.x25519_public()?;
            while self.peers.len() >= PEER_CACHE {
                let Some(old) = self.order.pop_front() else {
                    break;
                };
                self.peers.remove(&old);
            }
            self.peers.insert(
                *peer,
                PeerKeys {
                    x25519,
                    ss: None,
                    contacts: 0,
                },
            );
            self.order.push_back(*peer);
        }
        self.peers.get_mut(peer)
    }

    /// The X25519 static key of `peer`, or `None` if the id is not a valid (non-weak)
    /// Ed25519 key. Memoised.
    pub fn peer_x25519(&mut self, peer: &PeerId) -> Option<[u8; 32]> {
        self.entry(peer).map(|e| e.x25519)
    }

    /// Whether `ed` is a valid Ed25519 key whose X25519 form is `x` (the static key the
    /// handshake authenticated).
    pub(crate) fn identity_matches(&mut self, ed: &PeerId, x: &[u8]) -> bool {
        self.peer_x25519(ed).is_some_and(|k| k.as_slice() == x)
    }

    /// The ephemeral seed for a new handshake (the spare's when there is one) and the hints
    /// for it. With `responder` (IK initiator) the static-static secret with it is
    /// computed now if it is not memoised: snow would compute it at once anyway.
    pub(crate) fn initiator_hints(
        &mut self,
        identity: &Identity,
        responder: Option<&PeerId>,
        rng: &mut crate::rng::NodeRng,
    ) -> ([u8; 32], DhHints) {
        let mut hints = DhHints::for_identity(identity);
        if let Some(p) = responder
            && let Some(e) = self.entry(p)
        {
            let x = e.x25519;
            let ss =
                e.ss.get_or_insert_with(|| x25519(identity.x25519_secret(), &x))
                    .clone();
            hints.memo.push((x, ss));
        }
        let seed = self.take_spare(rng, &mut hints);
        (seed, hints)
    }

    /// The ephemeral seed and hints for answering an init: every memoised static-static
    /// secret (the initiator is not known before snow reads its message). The spare stays
    /// in the cache until [`spent`](Self::spent) says the response was written: an init
    /// that is rejected before that (bad MAC, replay, ...) generated no ephemeral key, so
    /// it must not cost a new spare (junk inits would otherwise add a key generation each).
    pub(crate) fn responder_hints(
        &mut self,
        identity: &Identity,
        rng: &mut crate::rng::NodeRng,
    ) -> ([u8; 32], DhHints) {
        let mut hints = DhHints::for_identity(identity);
        hints.memo.extend(
            self.peers
                .values()
                .filter_map(|e| e.ss.as_ref().map(|ss| (e.x25519, ss.clone()))),
        );
        let seed = match &self.spare {
            Some(s) => {
                hints.ephemeral = Some(s.pair.clone());
                s.seed
            }
            None => rng.seed(),
        };
        (seed, hints)
    }

    /// A responder is about to write its response with the ephemeral key drawn from
    /// `seed` (from [`responder_hints`](Self::responder_hints)): the spare, if that was it,
    /// is used up and a new one is to be made.
    pub(crate) fn spent(&mut self, seed: &[u8; 32]) {
        if self.spare.as_ref().is_some_and(|s| s.seed == *seed) {
            self.spare = None;
        }
        self.refill = true;
    }

    /// Hints for rebuilding a handshake state (no spare: the seed is given).
    pub(crate) fn rebuild_hints(
        &mut self,
        identity: &Identity,
        responder: Option<&PeerId>,
    ) -> DhHints {
        let mut hints = DhHints::for_identity(identity);
        if let Some(p) = responder
            && let Some(e) = self.entry(p)
            && let Some(ss) = &e.ss
        {
            hints.memo.push((e.x25519, ss.clone()));
        }
        hints
    }

    fn take_spare(&mut self, rng: &mut crate::rng::NodeRng, hints: &mut DhHints) -> [u8; 32] {
        self.refill = true;
        match self.spare.take() {
            Some(s) => {
                hints.ephemeral = Some(s.pair);
                s.seed
            }
            None => rng.seed(),
        }
    }

    /// A peer completed a handshake it initiated to us. From its second contact its
    /// static-static secret is computed by [`do_work`](Self::do_work).
    pub(crate) fn note_initiator(&mut self, peer: &PeerId) {
        let Some(e) = self.entry(peer) else { return };
        e.contacts = e.contacts.saturating_add(1);
        if e.ss.is_none()
            && e.contacts >= 2
            && self.todo.len() < TODO_CAP
            && !self.todo.contains(peer)
        {
            self.todo.push_back(*peer);
        }
    }

    /// Whether [`do_work`](Self::do_work) has something to do.
    pub fn has_work(&self) -> bool {
        self.refill || !self.todo.is_empty()
    }

    /// Does one piece of deferred work: a new spare ephemeral key, else one static-static
    /// secret. Returns whether more is left.
    pub(crate) fn do_work(&mut self, identity: &Identity, rng: &mut crate::rng::NodeRng) -> bool {
        if self.refill {
            self.refill = false;
            let seed = rng.seed();
            self.spare = Some(Spare {
                seed,
                pair: KeyPair::derive(&ephemeral_secret(&seed)),
            });
        } else if let Some(p) = self.todo.pop_front()
            && let Some(e) = self.peers.get_mut(&p)
            && e.ss.is_none()
        {
            e.ss = Some(x25519(identity.x25519_secret(), &e.x25519));
        }
        self.has_work()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snow::types::Dh;

    struct Fixed([u8; 32]);
    impl Random for Fixed {
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
            dest.copy_from_slice(&self.0[..dest.len()]);
            Ok(())
        }
    }

    fn dh(d: &HintedDh, pk: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        d.dh(pk, &mut out).unwrap();
        out
    }

    #[test]
    fn hinted_results_equal_plain_x25519_and_wrong_hints_are_ignored() {
        let id = Identity::from_secret([1; 32]);
        let peer = Identity::from_secret([2; 32]);
        let px = peer.x25519_public();
        let ss = x25519_dalek::x25519(*id.x25519_secret(), px);

        // A static key with a memo.
        let mut hints = DhHints::for_identity(&id);
        hints.memo.push((px, Zeroizing::new(ss)));
        let mut s = HintedDh::new(hints.clone());
        s.set(id.x25519_secret());
        assert_eq!(s.pubkey(), id.x25519_public());
        assert_eq!(dh(&s, &px), ss);

        // A lying memo is used only for the static key it was made for: an ephemeral key
        // (or another static key) computes.
        let mut lying = hints.clone();
        lying.memo[0].1 = Zeroizing::new([9; 32]);
        let mut e = HintedDh::new(lying.clone());
        e.generate(&mut Fixed([5; 32])).unwrap();
        let e_pub = PublicKey::from(&StaticSecret::from([5u8; 32])).to_bytes();
        assert_eq!(e.pubkey(), e_pub);
        assert_eq!(dh(&e, &px), x25519_dalek::x25519([5; 32], px));
        let mut other = HintedDh::new(lying);
        other.set(peer.x25519_secret());
        assert_eq!(other.pubkey(), peer.x25519_public());

        // A spare ephemeral is used only when the drawn secret is its own.
        let mut with_spare = DhHints::for_identity(&id);
        with_spare.ephemeral = Some(KeyPair {
            secret: Zeroizing::new([5; 32]),
            public: [7; 32],
        });
        let mut e = HintedDh::new(with_spare.clone());
        e.generate(&mut Fixed([5; 32])).unwrap();
        assert_eq!(e.pubkey(), [7; 32], "the hint is trusted when it matches");
        let mut e = HintedDh::new(with_spare);
        e.generate(&mut Fixed([6; 32])).unwrap();
        assert_eq!(
            e.pubkey(),
            PublicKey::from(&StaticSecret::from([6u8; 32])).to_bytes()
        );
    }

    #[test]
    fn spare_matches_what_snow_would_draw_and_is_refilled() {
        let id = Identity::from_secret([1; 32]);
        let mut rng = crate::rng::NodeRng::new([3; 32]);
        let mut cache = KeyCache::new();
        assert!(!cache.has_work());
        let (seed, hints) = cache.responder_hints(&id, &mut rng);
        assert!(hints.ephemeral.is_none());
        assert!(
            !cache.has_work(),
            "nothing is used until a response is written"
        );
        cache.spent(&seed);
        assert!(cache.has_work());
        assert!(!cache.do_work(&id, &mut rng));
        let (seed2, hints) = cache.responder_hints(&id, &mut rng);
        assert_ne!(seed, seed2);
        let pair = hints.ephemeral.unwrap();
        assert_eq!(*pair.secret, *ephemeral_secret(&seed2));
        assert_eq!(
            pair.public,
            KeyPair::derive(&ephemeral_secret(&seed2)).public
        );
        // An init rejected before the response keeps the spare for the next one.
        let (seed3, _) = cache.responder_hints(&id, &mut rng);
        assert_eq!(seed3, seed2);
        assert!(!cache.has_work());
        cache.spent(&seed3);
        assert!(cache.has_work());
        // The initiator always sends its ephemeral: the spare is taken at once.
        cache.do_work(&id, &mut rng);
        let (seed4, hints) = cache.initiator_hints(&id, None, &mut rng);
        assert!(hints.ephemeral.is_some());
        assert!(cache.has_work());
        assert_ne!(cache.initiator_hints(&id, None, &mut rng).0, seed4);
    }

    #[test]
    fn static_static_is_memoised_from_the_second_contact_and_bounded() {
        let id = Identity::from_secret([1; 32]);
        let mut rng = crate::rng::NodeRng::new([3; 32]);
        let mut cache = KeyCache::new();
        let peer = Identity::from_secret([2; 32]).peer_id();
        cache.note_initiator(&peer);
        while cache.do_work(&id, &mut rng) {}
        assert!(cache.responder_hints(&id, &mut rng).1.memo.is_empty());
        cache.note_initiator(&peer);
        while cache.do_work(&id, &mut rng) {}
        let memo = cache.responder_hints(&id, &mut rng).1.memo;
        assert_eq!(memo.len(), 1);
        let x = peer.x25519_public().unwrap();
        assert_eq!(memo[0].0, x);
        assert_eq!(*memo[0].1, x25519_dalek::x25519(*id.x25519_secret(), x));
        for i in 0..(PEER_CACHE as u32 + 10) {
            let mut s = [0u8; 32];
            s[..4].copy_from_slice(&i.to_be_bytes());
            s[31] = 0x77;
            let p = Identity::from_secret(s).peer_id();
            assert!(cache.peer_x25519(&p).is_some());
        }
        assert_eq!(cache.peers.len(), PEER_CACHE);
        assert_eq!(cache.order.len(), PEER_CACHE);
    }

    #[test]
    fn identity_check_rejects_mismatch_and_invalid_keys() {
        let mut cache = KeyCache::new();
        let a = Identity::from_secret([1; 32]);
        let b = Identity::from_secret([2; 32]);
        assert!(cache.identity_matches(&a.peer_id(), &a.x25519_public()));
        assert!(cache.identity_matches(&a.peer_id(), &a.x25519_public()));
        assert!(!cache.identity_matches(&a.peer_id(), &b.x25519_public()));
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert!(!cache.identity_matches(&PeerId::from_bytes(weak), &[0u8; 32]));
        assert!(cache.peers.len() == 1, "invalid keys are not cached");
    }

    use crate::crypto::aead::AeadKind;
    use crate::crypto::handshake::{Handshake, HandshakeCipher, Pattern, STATUS_ACCEPT, Suite};

    fn suite(pattern: Pattern) -> Suite {
        Suite {
            pattern,
            cipher: HandshakeCipher::ChaChaPolyBlake2s,
        }
    }

    /// Runs a handshake between two built states; returns both data keys and the hash,
    /// after checking that both sides agree.
    fn finish(
        mut i: Handshake,
        mut r: Handshake,
        a: &Identity,
        b: &Identity,
        ka: &mut KeyCache,
        kb: &mut KeyCache,
    ) -> ([u8; 32], [u8; 32], [u8; 32]) {
        let mut m = [0u8; 512];
        let n = i.write_init(a, 77, 5, &mut m).unwrap();
        let xx = r.read_init_with(&m[..n], kb).unwrap().is_none();
        let n = r
            .write_response(b, STATUS_ACCEPT, 9, AeadKind::ChaCha20Poly1305, &mut m)
            .unwrap();
        let resp = i.read_response_with(&m[..n], ka).unwrap();
        assert_eq!(resp.responder_index, 9);
        if xx {
            let n = i.write_final(a, 5, &mut m).unwrap();
            assert_eq!(r.read_final_with(&m[..n], kb).unwrap().0, a.peer_id());
        }
        let (i1, i2) = i.split().unwrap();
        assert_eq!(r.split().unwrap(), (i1, i2));
        assert_eq!(i.handshake_hash(), r.handshake_hash());
        (i1, i2, i.handshake_hash())
    }

    /// Hint sets that are wrong for the handshake at hand: another identity's static pair,
    /// a spare from another seed, a spare whose secret does not match (with a bogus public
    /// key), a memo for another peer, and finally the right hints.
    fn hint_variants(me: &Identity, other: &Identity, seed: [u8; 32]) -> Vec<DhHints> {
        let stranger = Identity::from_secret([0x33; 32]);
        let right_memo = (
            other.x25519_public(),
            x25519(me.x25519_secret(), &other.x25519_public()),
        );
        let mut v = vec![DhHints::for_identity(me), DhHints::for_identity(&stranger)];
        let mut h = DhHints::for_identity(me);
        h.ephemeral = Some(KeyPair::derive(&ephemeral_secret(&[0x99; 32])));
        v.push(h);
        let mut h = DhHints::for_identity(me);
        h.ephemeral = Some(KeyPair {
            secret: Zeroizing::new([7; 32]),
            public: [0; 32],
        });
        v.push(h);
        let mut h = DhHints::for_identity(me);
        h.memo.push((
            stranger.x25519_public(),
            x25519(me.x25519_secret(), &stranger.x25519_public()),
        ));
        v.push(h);
        // Another identity's static pair with our correct memo: the memo must not apply
        // to a key that is not ours.
        let mut h = DhHints::for_identity(&stranger);
        h.memo.push(right_memo.clone());
        v.push(h);
        let mut h = DhHints::for_identity(me);
        h.ephemeral = Some(KeyPair::derive(&ephemeral_secret(&seed)));
        h.memo.push(right_memo);
        v.push(h);
        v
    }

    #[test]
    fn stale_and_mismatched_hints_give_the_same_keys_as_no_hint() {
        let a = Identity::from_secret([1; 32]);
        let b = Identity::from_secret([2; 32]);
        let (si, sr) = ([3; 32], [4; 32]);
        for pattern in [Pattern::IK, Pattern::XX] {
            let s = suite(pattern);
            let responder = (pattern == Pattern::IK).then(|| b.peer_id());
            let plain = finish(
                Handshake::initiator(s, &a, responder.as_ref(), b"p", si).unwrap(),
                Handshake::responder(s, &b, b"p", sr).unwrap(),
                &a,
                &b,
                &mut KeyCache::new(),
                &mut KeyCache::new(),
            );
            let remote = (pattern == Pattern::IK).then(|| b.x25519_public());
            let ivs = hint_variants(&a, &b, si);
            let rvs = hint_variants(&b, &a, sr);
            for (n, ih) in ivs.iter().enumerate() {
                for (m, rh) in rvs.iter().enumerate() {
                    let i =
                        Handshake::initiator_hinted(s, &a, remote.as_ref(), b"p", si, ih.clone())
                            .unwrap();
                    let r = Handshake::responder_hinted(s, &b, b"p", sr, rh.clone()).unwrap();
                    let got = finish(i, r, &a, &b, &mut KeyCache::new(), &mut KeyCache::new());
                    assert_eq!(
                        got, plain,
                        "{pattern:?} initiator hints #{n}, responder #{m}"
                    );
                }
            }
        }
    }

    #[test]
    fn cached_and_plain_handshakes_interoperate() {
        let a = Identity::from_secret([1; 32]);
        let b = Identity::from_secret([2; 32]);
        let (mut ra, mut rb) = (
            crate::rng::NodeRng::new([5; 32]),
            crate::rng::NodeRng::new([6; 32]),
        );
        let (mut ka, mut kb) = (KeyCache::new(), KeyCache::new());
        for round in 0..4 {
            for pattern in [Pattern::IK, Pattern::XX] {
                let s = suite(pattern);
                let responder = (pattern == Pattern::IK).then(|| b.peer_id());
                for (ci, cr) in [(true, true), (true, false), (false, true), (false, false)] {
                    let (si, i) = if ci {
                        let (seed, hints) = ka.initiator_hints(&a, responder.as_ref(), &mut ra);
                        let remote = responder.as_ref().and_then(|p| ka.peer_x25519(p));
                        let hs =
                            Handshake::initiator_hinted(s, &a, remote.as_ref(), b"p", seed, hints);
                        (seed, hs.unwrap())
                    } else {
                        let seed = ra.seed();
                        let hs = Handshake::initiator(s, &a, responder.as_ref(), b"p", seed);
                        (seed, hs.unwrap())
                    };
                    let (sr, r) = if cr {
                        let (seed, hints) = kb.responder_hints(&b, &mut rb);
                        kb.spent(&seed);
                        let hs = Handshake::responder_hinted(s, &b, b"p", seed, hints);
                        (seed, hs.unwrap())
                    } else {
                        let seed = rb.seed();
                        (seed, Handshake::responder(s, &b, b"p", seed).unwrap())
                    };
                    let got = finish(i, r, &a, &b, &mut ka, &mut kb);
                    if pattern == Pattern::IK {
                        kb.note_initiator(&a.peer_id());
                    }
                    // The same seeds without any cache give the same keys.
                    let plain = finish(
                        Handshake::initiator(s, &a, responder.as_ref(), b"p", si).unwrap(),
                        Handshake::responder(s, &b, b"p", sr).unwrap(),
                        &a,
                        &b,
                        &mut KeyCache::new(),
                        &mut KeyCache::new(),
                    );
                    assert_eq!(got, plain, "round {round} {pattern:?} cached {ci}/{cr}");
                    while ka.do_work(&a, &mut ra) {}
                    while kb.do_work(&b, &mut rb) {}
                }
            }
        }
        // The cache was in use: spares on both sides, and the responder memoised the
        // static-static secret of its repeat initiator.
        assert!(ka.spare.is_some() && kb.spare.is_some());
        let memo = kb.responder_hints(&b, &mut rb).1.memo;
        assert_eq!(memo.len(), 1);
        assert_eq!(memo[0].0, a.x25519_public());
    }

    #[test]
    fn a_flood_of_identities_stays_bounded_and_adds_no_work() {
        let id = Identity::from_secret([1; 32]);
        let mut rng = crate::rng::NodeRng::new([3; 32]);
        let mut cache = KeyCache::new();
        let ids: Vec<PeerId> = (0..(PEER_CACHE as u32 * 3))
            .map(|i| {
                let mut s = [0x55u8; 32];
                s[..4].copy_from_slice(&i.to_be_bytes());
                Identity::from_secret(s).peer_id()
            })
            .collect();
        // One contact each (and junk inits that never got a response): no deferred work.
        for p in &ids {
            let _ = cache.responder_hints(&id, &mut rng);
            cache.note_initiator(p);
        }
        assert!(!cache.has_work());
        assert!(cache.peers.len() <= PEER_CACHE);
        assert_eq!(cache.order.len(), cache.peers.len());
        // Repeat contacts: at most TODO_CAP static-static secrets are queued.
        for p in &ids {
            cache.note_initiator(p);
            cache.note_initiator(p);
            assert!(cache.todo.len() <= TODO_CAP);
        }
        let mut steps = 0;
        while cache.has_work() {
            cache.do_work(&id, &mut rng);
            steps += 1;
        }
        assert!(steps <= TODO_CAP, "{steps} steps");
        assert!(cache.peers.len() <= PEER_CACHE);
        assert_eq!(cache.order.len(), cache.peers.len());
        let memo = cache.responder_hints(&id, &mut rng).1.memo;
        // (Here the queued peers were evicted again before the work ran: no secret at all.)
        assert!(memo.len() <= TODO_CAP);
        for (x, ss) in &memo {
            assert_eq!(**ss, x25519_dalek::x25519(*id.x25519_secret(), *x));
        }
    }
}
