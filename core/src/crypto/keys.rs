//! The data-key schedule of one session: one key per direction, split from the handshake,
//! and key updates ("rekey") by time and by packet count without losing traffic.
//!
//! Key updates follow QUIC (RFC 9001 §6): both directions share a *generation*; its low bit
//! is the key-phase bit in every data header. The next generation's secret is
//! `BLAKE2s-MAC(current secret, "tern key update")`, so old keys cannot be recomputed from new
//! ones. An endpoint starts an update only after it has received a packet in the current
//! generation (so the peer is known to hold it); the peer follows as soon as it decrypts a
//! packet with the next key. The previous receive key is kept until the update is confirmed
//! and a grace period passed, so reordered packets from before the switch still open.
//! Packet counters continue across generations, so the replay window spans them.

use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::aead::{AeadKind, OpenError, PacketKey};
use super::cookie::keyed_hash;
use crate::wire::header::TAG_LEN;

fn ratchet(secret: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(keyed_hash(secret, &[b"tern key update"]))
}

/// Which receive key opened a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// The current generation.
    Current,
    /// The previous generation (a packet sent before the last update).
    Previous,
    /// The next generation: the peer started a key update and we followed.
    Updated,
}

/// Both directions' keys for one session.
pub struct SessionKeys {
    kind: AeadKind,
    generation: u64,
    send_secret: Zeroizing<[u8; 32]>,
    send: PacketKey,
    recv_secret: Zeroizing<[u8; 32]>,
    recv: PacketKey,
    recv_next: PacketKey,
    recv_prev: Option<PacketKey>,
    prev_discard_at: Option<Instant>,
    /// Lowest counter opened with the current generation's receive key.
    first_recv_in_gen: Option<u64>,
    /// A packet of the current generation has been received from the peer.
    confirmed: bool,
    sent_in_gen: u64,
    gen_started: Instant,
    next_counter: u64,
    failed_opens: u64,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("kind", &self.kind)
            .field("generation", &self.generation)
            .field("next_counter", &self.next_counter)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Keys from the handshake split: `send` and `recv` secrets for this side.
    pub fn new(kind: AeadKind, send: [u8; 32], recv: [u8; 32], now: Instant) -> Self {
        let send_secret = Zeroizing::new(send);
        let recv_secret = Zeroizing::new(recv);
        let next = ratchet(&recv_secret);
        Self {
            kind,
            generation: 0,
            send: PacketKey::new(kind, &send_secret),
            recv: PacketKey::new(kind, &recv_secret),
            recv_next: PacketKey::new(kind, &next),
            send_secret,
            recv_secret,
            recv_prev: None,
            prev_discard_at: None,
            first_recv_in_gen: None,
            confirmed: false,
            sent_in_gen: 0,
            gen_started: now,
            next_counter: 0,
            failed_opens: 0,
        }
    }

    /// The negotiated AEAD.
    pub fn kind(&self) -> AeadKind {
        self.kind
    }

    /// Current key generation (number of key updates so far).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Key-phase bit for outgoing packets.
    pub fn key_phase(&self) -> bool {
        self.generation & 1 == 1
    }

    /// Counter the next sealed packet will use.
    pub fn next_counter(&self) -> u64 {
        self.next_counter
    }

    /// Failed decryptions so far (for the integrity limit).
    pub fn failed_opens(&self) -> u64 {
        self.failed_opens
    }

    /// The send counter is exhausted; the session must be closed and re-established.
    pub fn exhausted(&self) -> bool {
        self.next_counter >= u64::MAX - 1 || self.failed_opens >= self.kind.integrity_limit()
    }

    /// Whether a key update is due and allowed now.
    pub fn update_due(&self, now: Instant, max_packets: u64, max_age: Duration) -> bool {
        self.confirmed
            && self.recv_prev.is_none()
            && (self.sent_in_gen >= max_packets.min(self.kind.confidentiality_limit())
                || max_age.is_zero()
                || self
                    .gen_started
                    .checked_add(max_age)
                    .is_some_and(|due| now >= due))
    }

    /// Starts a key update: the next packet goes out under the next generation.
    pub fn initiate_update(&mut self, now: Instant, discard_after: Duration) {
        self.advance(now, discard_after);
        self.confirmed = false;
    }

    fn advance(&mut self, now: Instant, discard_after: Duration) {
        self.generation += 1;
        self.send_secret = ratchet(&self.send_secret);
        self.send = PacketKey::new(self.kind, &self.send_secret);
        self.recv_secret = ratchet(&self.recv_secret);
        let next_secret = ratchet(&self.recv_secret);
        let next = PacketKey::new(self.kind, &next_secret);
        let cur = std::mem::replace(&mut self.recv_next, next);
        let prev = std::mem::replace(&mut self.recv, cur);
        self.recv_prev = Some(prev);
        self.prev_discard_at = Some(now + discard_after);
        self.first_recv_in_gen = None;
        self.sent_in_gen = 0;
        self.gen_started = now;
    }

    /// Seals a packet in place: `header` is the associated data, `payload` is encrypted.
    /// Returns the counter used and the tag. The caller wrote the header with
    /// [`Self::next_counter`] and [`Self::key_phase`].
    pub fn seal(&mut self, header: &[u8], payload: &mut [u8]) -> (u64, [u8; TAG_LEN]) {
        let counter = self.next_counter;
        let tag = self.send.seal(counter, header, payload);
        self.next_counter += 1;
        self.sent_in_gen += 1;
        (counter, tag)
    }

    /// Opens a packet in place, choosing the key by phase bit and counter. On success with
    /// the next generation's key, follows the peer's key update. Replay checking is the
    /// caller's job (before and after).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        now: Instant,
        discard_after: Duration,
        key_phase: bool,
        counter: u64,
        header: &[u8],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<Opened, OpenError> {
        let res = if key_phase == self.key_phase() {
            self.recv
                .open(counter, header, payload, tag)
                .map(|()| Opened::Current)
        } else {
            let older = match self.first_recv_in_gen {
                Some(first) => counter < first,
                None => !self.confirmed,
            };
            match (&self.recv_prev, older) {
                (Some(prev), true) => prev
                    .open(counter, header, payload, tag)
                    .map(|()| Opened::Previous),
                _ => self
                    .recv_next
                    .open(counter, header, payload, tag)
                    .map(|()| Opened::Updated),
            }
        };
        match res {
            Ok(Opened::Updated) => {
                // The peer updated; follow it (our send key moves too).
                self.advance(now, discard_after);
                self.confirmed = true;
                self.first_recv_in_gen = Some(counter);
            }
            Ok(Opened::Current) => {
                self.confirmed = true;
                self.first_recv_in_gen =
                    Some(self.first_recv_in_gen.map_or(counter, |f| f.min(counter)));
            }
            Ok(Opened::Previous) => {}
            Err(_) => self.failed_opens += 1,
        }
        res
    }

    /// Drops the previous receive key once the update is confirmed and its grace period
    /// has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(at) = self.prev_discard_at
            && self.confirmed
            && now >= at
        {
            self.recv_prev = None;
            self.prev_discard_at = None;
        }
    }

    /// When [`Self::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.confirmed {
            self.prev_discard_at
        } else {
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take a base instant once
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(1);

    fn pair(now: Instant) -> (SessionKeys, SessionKeys) {
        let a = SessionKeys::new(AeadKind::Aes256Gcm, [1; 32], [2; 32], now);
        let b = SessionKeys::new(AeadKind::Aes256Gcm, [2; 32], [1; 32], now);
        (a, b)
    }

    /// Seals `msg` from `tx` and opens it at `rx`; returns how it opened.
    fn send(tx: &mut SessionKeys, rx: &mut SessionKeys, now: Instant) -> Result<Opened, OpenError> {
        let (c, phase, mut buf, tag) = seal_only(tx);
        rx.open(now, GRACE, phase, c, b"h", &mut buf, &tag)
    }

    fn seal_only(tx: &mut SessionKeys) -> (u64, bool, [u8; 8], [u8; TAG_LEN]) {
        let phase = tx.key_phase();
        let mut buf = *b"payload!";
        let (c, tag) = tx.seal(b"h", &mut buf);
        (c, phase, buf, tag)
    }

    #[test]
    fn update_is_followed_and_old_packets_still_open() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        assert_eq!(send(&mut a, &mut b, t0), Ok(Opened::Current));
        assert_eq!(send(&mut b, &mut a, t0), Ok(Opened::Current));
        // A packet sealed before the update, delivered after it.
        let late = seal_only(&mut a);
        assert!(a.update_due(t0, 1, Duration::from_secs(120)));
        a.initiate_update(t0, GRACE);
        assert_eq!(send(&mut a, &mut b, t0), Ok(Opened::Updated));
        assert_eq!(b.generation(), 1);
        let (c, phase, mut buf, tag) = late;
        assert_eq!(
            b.open(t0, GRACE, phase, c, b"h", &mut buf, &tag),
            Ok(Opened::Previous)
        );
        assert_eq!(&buf, b"payload!");
        assert_eq!(send(&mut b, &mut a, t0), Ok(Opened::Current));
        // After the grace period the previous key is gone.
        b.handle_timeout(t0 + GRACE);
        a.handle_timeout(t0 + GRACE);
        let (c2, _, mut buf2, tag2) = (c, phase, *b"payload!", tag);
        assert!(
            b.open(t0, GRACE, phase, c2, b"h", &mut buf2, &tag2)
                .is_err()
        );
    }

    #[test]
    fn no_second_update_before_confirmation() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        assert!(!a.update_due(t0, 0, Duration::ZERO), "nothing received yet");
        send(&mut b, &mut a, t0).unwrap();
        a.initiate_update(t0, GRACE);
        assert!(!a.update_due(t0 + GRACE * 10, 0, Duration::ZERO));
        send(&mut a, &mut b, t0).unwrap();
        send(&mut b, &mut a, t0).unwrap();
        a.handle_timeout(t0 + GRACE);
        assert!(a.update_due(t0 + GRACE, 0, Duration::ZERO));
    }

    #[test]
    fn many_updates_in_a_row() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        let mut now = t0;
        for round in 0..20 {
            send(&mut a, &mut b, now).unwrap();
            send(&mut b, &mut a, now).unwrap();
            now += GRACE;
            a.handle_timeout(now);
            b.handle_timeout(now);
            let (x, y) = if round % 2 == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            assert!(x.update_due(now, 0, Duration::MAX));
            x.initiate_update(now, GRACE);
            assert_eq!(send(x, y, now), Ok(Opened::Updated));
        }
        assert_eq!(a.generation(), 20);
        assert_eq!(b.generation(), 20);
    }

    #[test]
    fn forged_packets_count_toward_integrity_limit() {
        let t0 = Instant::now();
        let (_, mut b) = pair(t0);
        let mut buf = [0u8; 8];
        assert!(
            b.open(t0, GRACE, false, 0, b"h", &mut buf, &[0; TAG_LEN])
                .is_err()
        );
        assert!(
            b.open(t0, GRACE, true, 0, b"h", &mut buf, &[0; TAG_LEN])
                .is_err()
        );
        assert_eq!(b.failed_opens(), 2);
        assert_eq!(
            b.generation(),
            0,
            "a forged phase flip does not update keys"
        );
    }
}
