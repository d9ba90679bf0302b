//! The responder side of the handshake: what happens to an incoming init, in order of cost.
//!
//! 1. Cheap checks: version, suite, size (inits are padded to 1200 bytes so the response can
//!    never amplify), mac1 (IK: proves the sender knows our key; no Diffie-Hellman yet).
//! 2. Duplicate of a pending init (same initiator ephemeral): resend the cached response.
//! 3. Load: past `cookie_threshold` pending handshakes or `handshake_rate_limit` inits per
//!    second, an init must echo a cookie bound to its source address; otherwise it gets a
//!    16-byte cookie and the node keeps nothing.
//! 4. Noise: read message 1; for IK the initiator is authenticated and its timestamp must be
//!    newer than any seen before from that key (a replayed init is dropped).
//! 5. Trust: a private node answers untrusted peers with an authenticated refusal and keeps
//!    nothing.
//! 6. Only then: a half-open session, capped by `max_pending_handshakes`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use tracing::{debug, trace};

use super::Node;
use crate::config::IncomingPolicy;
use crate::crypto::cookie;
use crate::crypto::handshake::{Handshake, Pattern, Recipe, STATUS_ACCEPT, STATUS_REFUSED, Suite};
use crate::crypto::keys::SessionKeys;
use crate::event::Event;
use crate::identity::PeerId;
use crate::session::handshake::prologue;
use crate::session::{DropReason, HsState, Route, Session};
use crate::time::TimerKind;
use crate::wire::header::{
    self, INIT_MIN_LEN, INIT_PROLOGUE_LEN, Init, TYPE_RESPONSE, VERSION, reject,
};

/// Latest IK timestamp per initiator, bounded; the oldest entry is forgotten first.
#[derive(Debug)]
pub(crate) struct TimestampCache {
    cap: usize,
    latest: BTreeMap<PeerId, u64>,
    order: VecDeque<PeerId>,
}

impl TimestampCache {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            latest: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `ts` is newer than anything seen from `peer`.
    pub fn is_fresh(&self, peer: &PeerId, ts: u64) -> bool {
        self.latest.get(peer).is_none_or(|&seen| ts > seen)
    }

    pub fn record(&mut self, peer: PeerId, ts: u64) {
        if let Some(v) = self.latest.get_mut(&peer) {
            *v = (*v).max(ts);
            return;
        }
        if self.latest.len() >= self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.latest.remove(&old);
        }
        self.latest.insert(peer, ts);
        self.order.push_back(peer);
    }
}

impl Node {
    pub(super) fn handle_init(&mut self, now: Instant, from: Route, init: Init<'_>, bytes: &[u8]) {
        // Relayed inits come through an authenticated relay session: the relay vouches for
        // the source, so the anti-amplification size and the cookie do not apply.
        let relayed = from.is_relay();
        let drop = |node: &mut Node, r: DropReason| {
            node.stats.drops.add(r);
            trace!(?from, reason = r.name(), "init dropped");
        };
        let Some(suite) = Suite::from_id(init.suite).filter(|_| init.version == VERSION) else {
            return drop(self, DropReason::Unsupported);
        };
        if bytes.len() < INIT_MIN_LEN && !relayed {
            return drop(self, DropReason::TooShort);
        }
        let mac_ok = init
            .mac1
            .is_some_and(|m| cookie::mac1_ok(&self.mac1_key, &bytes[..init.mac1_covered], &m));
        if !mac_ok && (suite.pattern == Pattern::IK || init.mac1.is_some()) {
            if self.config.send_reject_hints
                && self.replies.push(from, |b| {
                    header::write_reject(b, init.sender, reject::WRONG_KEY).ok()
                })
            {
                self.stats.rejects_sent += 1;
            }
            return drop(self, DropReason::WrongKey);
        }
        let Some(eph) = init
            .noise
            .get(..32)
            .and_then(|e| <[u8; 32]>::try_from(e).ok())
        else {
            return drop(self, DropReason::HandshakeFailed);
        };
        // A retransmitted init for a handshake we already answered: answer again. The same
        // ephemeral with a different header is a corrupted or tampered copy of an XX init
        // (whose first message is not authenticated): the newer one replaces it.
        if let Some(&slot) = self.pending_by_ephemeral.get(&eph) {
            let st = &self.slots[slot as usize];
            let same = st.pending == Some(eph)
                && st.session.as_ref().is_some_and(|s| {
                    s.remote_index == init.sender
                        && s.hs.as_ref().is_some_and(|hs| hs.suite.id() == init.suite)
                });
            if same {
                if let Some(hs) = self.slots[slot as usize]
                    .session
                    .as_mut()
                    .and_then(|s| s.hs.as_mut())
                {
                    hs.need_send = true;
                    hs.reply_to = Some(from);
                }
                self.after_session(slot);
                return;
            }
            if st.pending == Some(eph) {
                self.release_slot(slot);
            }
        }
        // Load: require a cookie before doing any Diffie-Hellman work or keeping state.
        if now.saturating_duration_since(self.rate_window.0) >= Duration::from_secs(1) {
            self.rate_window = (now, 0);
        }
        self.rate_window.1 = self.rate_window.1.saturating_add(1);
        let under_load = self.pending >= self.config.cookie_threshold
            || self.rate_window.1 > self.config.handshake_rate_limit;
        if let (
            true,
            Route::Direct {
                remote: from_addr, ..
            },
        ) = (under_load, from)
        {
            let unix = self.unix_secs(now);
            let valid = init
                .cookie
                .is_some_and(|c| self.cookies.verify(unix, from_addr, init.sender, &c));
            if !valid {
                let c = self.cookies.make(unix, from_addr, init.sender);
                if self
                    .replies
                    .push(from, |b| header::write_cookie(b, init.sender, &c).ok())
                {
                    self.stats.cookies_sent += 1;
                } else {
                    self.stats.drops.add(DropReason::ReplyQueueFull);
                }
                return drop(self, DropReason::CookieRequired);
            }
        }
        if self.pending >= self.config.max_pending_handshakes {
            return drop(self, DropReason::PendingFull);
        }
        if self.live >= self.config.max_sessions {
            return drop(self, DropReason::SessionLimit);
        }
        let mut hdr = [0u8; INIT_PROLOGUE_LEN];
        hdr.copy_from_slice(&bytes[..INIT_PROLOGUE_LEN]);
        let (seed, hints) = self.keys.responder_hints(&self.identity, &mut self.rng);
        let prologue = prologue(&hdr);
        let Ok(mut noise) =
            Handshake::responder_hinted(suite, &self.identity, &prologue, seed, hints)
        else {
            return drop(self, DropReason::HandshakeFailed);
        };
        let initiator = match noise.read_init_with(init.noise, &mut self.keys) {
            Ok(i) => i,
            Err(e) => {
                debug!(?from, error = %e, "init rejected by noise");
                return drop(self, DropReason::HandshakeFailed);
            }
        };
        if let Some((peer, ts, _)) = initiator {
            if !self.timestamps.is_fresh(&peer, ts) {
                return drop(self, DropReason::HandshakeReplay);
            }
            if self.config.incoming == IncomingPolicy::TrustedOnly && !self.trusted.contains(&peer)
            {
                self.keys.spent(&seed);
                self.refuse(from, init.sender, noise, peer);
                return;
            }
        }
        let Some(aead) = self
            .config
            .aeads
            .iter()
            .copied()
            .find(|k| init.aead_offer & k.bit() != 0)
        else {
            return drop(self, DropReason::Unsupported);
        };
        let (slot, id, local_index) = self.alloc_slot();
        // The response uses the ephemeral key from `seed` (the spare, when there was one).
        self.keys.spent(&seed);
        let mut m2 = [0u8; crate::crypto::handshake::MAX_NOISE_MSG];
        let Ok(n) = noise.write_response(&self.identity, STATUS_ACCEPT, local_index, aead, &mut m2)
        else {
            self.release_slot(slot);
            return drop(self, DropReason::HandshakeFailed);
        };
        let mut datagram = vec![0u8; 7 + n];
        let Ok(len) = header::write_handshake(&mut datagram, TYPE_RESPONSE, init.sender, &m2[..n])
        else {
            self.release_slot(slot);
            return;
        };
        datagram.truncate(len);
        let mut reset_token = None;
        let (keys, peer, noise) = match initiator {
            Some((peer, ts, token)) => {
                self.timestamps.record(peer, ts);
                self.keys.note_initiator(&peer);
                reset_token = Some(token);
                let Some((i2r, r2i)) = noise.split() else {
                    self.release_slot(slot);
                    return;
                };
                (
                    Some(SessionKeys::new(aead, r2i, i2r, now)),
                    Some(peer),
                    None,
                )
            }
            None => (None, None, Some(noise)),
        };
        let recipe = noise.as_ref().map(|_| Recipe::ResponderXx {
            suite,
            prologue: prologue.to_vec(),
            seed,
            init: init.noise.to_vec(),
            responder_index: local_index,
            aead,
        });
        let hs = HsState {
            noise,
            recipe,
            suite,
            msg: datagram,
            cookie: None,
            cookie_uses: 0,
            attempts: 0,
            need_send: true,
            reply_to: Some(from),
            fell_back: false,
            mac1_key: None,
            aead,
        };
        let mut s = Session::new(id, local_index, false, from, hs, &self.config);
        s.remote_index = init.sender;
        s.keys = keys;
        s.peer = peer;
        if let Route::Relay { via, .. } = from {
            s.relay_peer = self.relays.get(&via).copied();
        }
        s.peer_reset_token = reset_token;
        s.timers.set(
            TimerKind::HandshakeExpire,
            now + self.config.handshake_timeout,
        );
        let st = &mut self.slots[slot as usize];
        st.session = Some(s);
        st.pending = Some(eph);
        self.pending += 1;
        self.pending_by_ephemeral.insert(eph, slot);
        self.after_session(slot);
    }

    /// Answers an authenticated but untrusted initiator with a signed-by-handshake refusal
    /// and keeps no state.
    fn refuse(&mut self, to: Route, sender: u32, mut noise: Handshake, peer: PeerId) {
        let aead = self.config.aeads[0];
        let mut m2 = [0u8; crate::crypto::handshake::MAX_NOISE_MSG];
        if let Ok(n) = noise.write_response(&self.identity, STATUS_REFUSED, 0, aead, &mut m2) {
            let queued = self.replies.push(to, |b| {
                header::write_handshake(b, TYPE_RESPONSE, sender, &m2[..n]).ok()
            });
            if !queued {
                self.stats.drops.add(DropReason::ReplyQueueFull);
            }
        }
        self.stats.handshakes_refused += 1;
        self.events.push_back(Event::IncomingRefused { peer });
        debug!(peer = %peer.short(), "refused untrusted initiator");
    }
}
