//! Handshake progress inside a session: the initiator's handling of responses, cookies and
//! reject hints, retransmission with backoff, and the responder's XX message 3.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Ctx, Route, Session, SessionState};
use crate::config::IncomingPolicy;
use crate::crypto::handshake::{Handshake, Pattern, Recipe, STATUS_REFUSED, Suite};
use crate::crypto::keys::SessionKeys;
use crate::event::{CloseReason, Event, close_code};
use crate::identity::PeerId;
use crate::session::DropReason;
use crate::time::TimerKind;
use crate::wire::header::{self, INIT_PROLOGUE_LEN, TYPE_FINAL, reject};

/// Longest gap between handshake retransmissions.
const MAX_RESEND_INTERVAL: Duration = Duration::from_secs(4);
/// Cookies honoured per handshake (a forged cookie flood cannot make us resend without end).
const MAX_COOKIE_USES: u8 = 3;

/// The Noise prologue binds the init header's first bytes (type, version, suite, AEAD offer,
/// sender index) into the handshake transcript.
pub(crate) fn prologue(init_header: &[u8; INIT_PROLOGUE_LEN]) -> [u8; 6 + INIT_PROLOGUE_LEN] {
    let mut p = [0u8; 6 + INIT_PROLOGUE_LEN];
    p[..6].copy_from_slice(b"tern/1");
    p[6..].copy_from_slice(init_header);
    p
}

/// The prologue header bytes of an init.
pub(crate) fn init_header(suite: Suite, offer: u8, sender: u32) -> [u8; INIT_PROLOGUE_LEN] {
    let s = sender.to_be_bytes();
    [
        header::TYPE_INIT,
        header::VERSION,
        suite.id(),
        offer,
        s[0],
        s[1],
        s[2],
        s[3],
    ]
}

/// Retransmission delay after `attempts` sends.
pub(crate) fn resend_delay(base: Duration, attempts: u32) -> Duration {
    (base * 2u32.saturating_pow(attempts.min(16))).min(MAX_RESEND_INTERVAL)
}

/// Starts an initiator handshake: returns the Noise state and message 1.
pub(crate) fn start_initiator(
    suite: Suite,
    ctx: &mut Ctx<'_>,
    responder: Option<&PeerId>,
    local_index: u32,
    timestamp_ns: u64,
) -> Result<(Handshake, Vec<u8>, Recipe), crate::crypto::handshake::HandshakeError> {
    let hdr = init_header(suite, ctx.config.aead_offer(), local_index);
    let responder = match suite.pattern {
        Pattern::IK => responder,
        Pattern::XX => None,
    };
    let remote = match responder {
        Some(p) => Some(
            ctx.keys
                .peer_x25519(p)
                .ok_or(crate::crypto::handshake::HandshakeError::Payload)?,
        ),
        None if suite.pattern == Pattern::IK => {
            return Err(crate::crypto::handshake::HandshakeError::Payload);
        }
        None => None,
    };
    let (seed, hints) = ctx.keys.initiator_hints(ctx.identity, responder, ctx.rng);
    let recipe = Recipe::Initiator {
        suite,
        responder: responder.copied(),
        prologue: prologue(&hdr).to_vec(),
        seed,
        timestamp_ns,
        local_index,
    };
    let Recipe::Initiator {
        prologue: p, seed, ..
    } = &recipe
    else {
        unreachable!("built just above")
    };
    let mut hs =
        Handshake::initiator_hinted(suite, ctx.identity, remote.as_ref(), p, *seed, hints)?;
    let mut msg = vec![0u8; crate::crypto::handshake::MAX_NOISE_MSG];
    let n = hs.write_init(ctx.identity, timestamp_ns, local_index, &mut msg)?;
    msg.truncate(n);
    Ok((hs, msg, recipe))
}

impl Session {
    /// Initiator: a response (Noise message 2) arrived.
    pub(crate) fn on_response(&mut self, now: Instant, noise: &[u8], ctx: &mut Ctx<'_>) {
        if self.state != SessionState::InitSent {
            ctx.stats.drops.add(DropReason::UnexpectedState);
            return;
        }
        let Some(hs) = self.hs.as_mut() else {
            ctx.stats.drops.add(DropReason::UnexpectedState);
            return;
        };
        let Some(noise_state) = hs.noise.as_mut() else {
            ctx.stats.drops.add(DropReason::UnexpectedState);
            return;
        };
        let payload = match noise_state.read_response_with(noise, ctx.keys) {
            Ok(p) => p,
            Err(e) => {
                debug!(session = ?self.id, error = %e, "bad handshake response");
                ctx.stats.drops.add(DropReason::HandshakeFailed);
                // Undo whatever the failed read left in the Noise state.
                hs.noise = hs
                    .recipe
                    .as_ref()
                    .and_then(|r| r.rebuild_with(ctx.identity, ctx.keys).ok());
                return;
            }
        };
        let pattern = hs.suite.pattern;
        let actual = match (pattern, payload.responder) {
            (Pattern::XX, Some(p)) => p,
            (Pattern::IK, _) => match self.expected_peer {
                Some(p) => p,
                None => return,
            },
            (Pattern::XX, None) => return,
        };
        if let Some(expected) = self.expected_peer
            && expected != actual
        {
            self.peer = Some(actual);
            self.terminate(CloseReason::PeerMismatch { expected, actual }, ctx);
            return;
        }
        self.peer = Some(actual);
        if payload.status == STATUS_REFUSED {
            self.terminate(CloseReason::Refused, ctx);
            return;
        }
        if !ctx.config.aeads.contains(&payload.aead) {
            ctx.stats.drops.add(DropReason::Unsupported);
            return;
        }
        let (i2r, r2i) = match pattern {
            Pattern::IK => {
                let Some(k) = noise_state.split() else {
                    ctx.stats.drops.add(DropReason::HandshakeFailed);
                    return;
                };
                hs.msg.clear();
                hs.need_send = false;
                k
            }
            Pattern::XX => {
                // XX finishes with our message 3, which we keep resending until the
                // responder shows it has the keys.
                let mut m3 = [0u8; crate::crypto::handshake::MAX_NOISE_MSG];
                let Ok(n) = noise_state.write_final(ctx.identity, self.local_index, &mut m3) else {
                    ctx.stats.drops.add(DropReason::HandshakeFailed);
                    return;
                };
                let Some(k) = noise_state.split() else {
                    ctx.stats.drops.add(DropReason::HandshakeFailed);
                    return;
                };
                let mut datagram = vec![0u8; 7 + n];
                let Ok(len) = header::write_handshake(
                    &mut datagram,
                    TYPE_FINAL,
                    payload.responder_index,
                    &m3[..n],
                ) else {
                    return;
                };
                datagram.truncate(len);
                hs.msg = datagram;
                hs.need_send = true;
                k
            }
        };
        hs.noise = None;
        hs.recipe = None;
        hs.attempts = 0;
        self.peer_reset_token = Some(payload.reset_token);
        self.finish_initiator(now, payload.responder_index, payload.aead, i2r, r2i, ctx);
    }

    fn finish_initiator(
        &mut self,
        now: Instant,
        remote_index: u32,
        aead: crate::crypto::AeadKind,
        i2r: [u8; 32],
        r2i: [u8; 32],
        ctx: &mut Ctx<'_>,
    ) {
        self.remote_index = remote_index;
        self.keys = Some(SessionKeys::new(aead, i2r, r2i, now));
        self.establish(now, ctx);
        // Until the responder answers, keep proving we hold the keys.
        self.timers.set(
            TimerKind::HandshakeResend,
            now + resend_delay(ctx.config.handshake_retransmit, 0),
        );
        self.timers.set(
            TimerKind::HandshakeExpire,
            now + ctx.config.handshake_timeout,
        );
    }

    /// Initiator: the responder asked for a cookie round trip.
    pub(crate) fn on_cookie(&mut self, cookie: [u8; 16], ctx: &mut Ctx<'_>) {
        let Some(hs) = self.hs.as_mut() else { return };
        if self.state != SessionState::InitSent || hs.cookie_uses >= MAX_COOKIE_USES {
            ctx.stats.drops.add(DropReason::UnexpectedState);
            return;
        }
        hs.cookie = Some(cookie);
        hs.cookie_uses += 1;
        hs.need_send = true;
    }

    /// Initiator: the responder could not use our IK init. If it says the key was wrong,
    /// fall back to XX once: XX authenticates whoever answers, so a real key mismatch becomes
    /// an authenticated `PeerMismatch` instead of a timeout.
    pub(crate) fn on_reject(&mut self, now: Instant, reason: u8, ctx: &mut Ctx<'_>) {
        let Some(hs) = self.hs.as_mut() else { return };
        if self.state != SessionState::InitSent
            || hs.fell_back
            || hs.suite.pattern != Pattern::IK
            || reason != reject::WRONG_KEY
        {
            ctx.stats.drops.add(DropReason::UnexpectedState);
            return;
        }
        let suite = Suite {
            pattern: Pattern::XX,
            cipher: hs.suite.cipher,
        };
        let ts = ctx.clock.timestamp(now);
        let Ok((noise, msg, recipe)) = start_initiator(suite, ctx, None, self.local_index, ts)
        else {
            return;
        };
        debug!(session = ?self.id, "IK rejected as wrong key; retrying with XX");
        let hs = self
            .hs
            .as_mut()
            .unwrap_or_else(|| unreachable!("checked above"));
        hs.noise = Some(noise);
        hs.recipe = Some(recipe);
        hs.suite = suite;
        hs.msg = msg;
        hs.mac1_key = None;
        hs.cookie = None;
        hs.fell_back = true;
        hs.need_send = true;
    }

    /// Retransmission timer for the handshake and the confirmation.
    pub(crate) fn on_handshake_resend(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        let base = ctx.config.handshake_retransmit;
        match self.state {
            SessionState::InitSent => {
                let Some(hs) = self.hs.as_mut() else { return };
                hs.attempts += 1;
                hs.need_send = true;
                let attempts = hs.attempts;
                // The first resend repeats the init byte for byte (the responder recognises
                // it and resends its cached answer). Later ones start a fresh handshake (new
                // ephemeral key and timestamp), so a responder that dropped its half-open
                // state, or restarted, can still answer: it would reject the old init as a
                // replay.
                if attempts >= 2 {
                    let suite = hs.suite;
                    let responder = match suite.pattern {
                        Pattern::IK => self.expected_peer,
                        Pattern::XX => None,
                    };
                    let ts = ctx.clock.timestamp(now);
                    if let Ok((noise, msg, recipe)) =
                        start_initiator(suite, ctx, responder.as_ref(), self.local_index, ts)
                        && let Some(hs) = self.hs.as_mut()
                    {
                        hs.noise = Some(noise);
                        hs.msg = msg;
                        hs.recipe = Some(recipe);
                    }
                }
                self.timers.set(
                    TimerKind::HandshakeResend,
                    now + resend_delay(base, attempts),
                );
            }
            SessionState::Established if !self.peer_confirmed && self.initiator => {
                let attempts = match self.hs.as_mut() {
                    Some(hs) => {
                        hs.attempts += 1;
                        hs.need_send = !hs.msg.is_empty();
                        hs.attempts
                    }
                    None => 1,
                };
                if self.pings_to_send.is_empty() {
                    self.queue_ping(now, false, ctx.config);
                }
                self.timers.set(
                    TimerKind::HandshakeResend,
                    now + resend_delay(base, attempts),
                );
            }
            _ => {}
        }
    }

    /// Responder: XX message 3 arrived.
    pub(crate) fn on_final(
        &mut self,
        now: Instant,
        from: Route,
        noise: &[u8],
        trust: &BTreeSet<PeerId>,
        ctx: &mut Ctx<'_>,
    ) {
        if self.state == SessionState::Established && !self.initiator {
            // A retransmitted message 3: our packets were lost. Answer with a PING.
            if self.pings_to_send.is_empty() {
                self.queue_ping(now, false, ctx.config);
            }
            return;
        }
        if self.state != SessionState::AwaitConfirm {
            ctx.stats.drops.add(DropReason::UnexpectedState);
            return;
        }
        let Some(hs) = self.hs.as_mut() else { return };
        let Some(noise_state) = hs.noise.as_mut() else {
            ctx.stats.drops.add(DropReason::UnexpectedState);
            return;
        };
        let Ok((peer, reset_token)) = noise_state.read_final_with(noise, ctx.keys) else {
            ctx.stats.drops.add(DropReason::HandshakeFailed);
            hs.noise = hs
                .recipe
                .as_ref()
                .and_then(|r| r.rebuild_with(ctx.identity, ctx.keys).ok());
            return;
        };
        let Some((i2r, r2i)) = noise_state.split() else {
            return;
        };
        let aead = hs.aead;
        self.keys = Some(SessionKeys::new(aead, r2i, i2r, now));
        self.peer = Some(peer);
        self.peer_reset_token = Some(reset_token);
        self.route = from;
        self.hs = None;
        self.peer_confirmed = true;
        self.timers.stop(TimerKind::HandshakeExpire);
        if ctx.config.incoming == IncomingPolicy::TrustedOnly && !trust.contains(&peer) {
            ctx.stats.handshakes_refused += 1;
            ctx.events.push_back(Event::IncomingRefused { peer });
            // Tell the initiator, authenticated, then forget it.
            self.state = SessionState::Closing;
            self.close_code = close_code::REFUSED;
            self.close_pending = true;
            self.timers.clear();
            self.timers
                .set(TimerKind::Close, now + Duration::from_secs(1));
            return;
        }
        self.establish(now, ctx);
    }
}
