//! Building outgoing datagrams for a session, in the caller's buffer: handshake messages
//! first, then CLOSE, path validation, and the data packet with control frames. Data packets
//! are sealed in place; nothing is allocated.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Ctx, Session, SessionState};
use crate::crypto::cookie;
use crate::io::Transmit;
use crate::time::TimerKind;
use crate::wire::codec::Writer;
use crate::wire::frame::Frame;
use crate::wire::header::{self, COOKIE_LEN, DATA_HEADER_LEN, TAG_LEN};

impl Session {
    /// Writes at most one datagram for this session into `buf`.
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        ctx: &mut Ctx<'_>,
    ) -> Option<Transmit> {
        let max = buf.len().min(usize::from(ctx.config.max_udp_payload));
        if let Some(t) = self.poll_handshake(buf, ctx) {
            return Some(t);
        }
        let keys_ready = self.keys.is_some();
        match self.state {
            SessionState::Closing if keys_ready && self.close_pending => {
                self.close_pending = false;
                self.close_sends += 1;
                let code = self.close_code;
                let (remote, local) = (self.remote, self.local);
                return self.build_packet(now, &mut buf[..max], remote, local, ctx, |_, w| {
                    Frame::Close { code, reason: b"" }.encode(w).is_ok()
                });
            }
            SessionState::Established if keys_ready => {}
            _ => return None,
        }
        // Key update by time or packet count, before anything else is sealed.
        let discard_after = self.discard_after();
        if let Some(keys) = self.keys.as_mut()
            && keys.update_due(now, ctx.config.rekey_after_packets, ctx.config.rekey_after)
        {
            keys.initiate_update(now, discard_after);
            ctx.stats.key_updates += 1;
            self.stats.key_updates += 1;
        }
        if let Some((to, local, data)) = self.path_response.take() {
            let len = DATA_HEADER_LEN + 9 + TAG_LEN;
            let allowed = to == self.remote
                || self
                    .probe
                    .as_ref()
                    .is_some_and(|p| p.addr == to && p.may_send(len));
            if allowed {
                let t = self.build_packet(now, &mut buf[..max], to, local, ctx, |_, w| {
                    Frame::PathResponse { data }.encode(w).is_ok()
                });
                if let Some(p) = self.probe.as_mut()
                    && p.addr == to
                    && let Some(t) = &t
                {
                    p.bytes_sent += t.len as u64;
                }
                return t;
            }
            ctx.stats
                .drops
                .add(crate::session::DropReason::AmplificationLimit);
        }
        if let Some(p) = self.probe.as_ref()
            && p.need_send
        {
            let len = DATA_HEADER_LEN + 9 + TAG_LEN;
            if p.may_send(len) {
                let (to, local, data) = (p.addr, p.local, p.challenge);
                let t = self.build_packet(now, &mut buf[..max], to, local, ctx, |_, w| {
                    Frame::PathChallenge { data }.encode(w).is_ok()
                });
                if let (Some(p), Some(t)) = (self.probe.as_mut(), &t) {
                    p.bytes_sent += t.len as u64;
                    p.sent += 1;
                    p.need_send = false;
                }
                return t;
            }
            // Wait until the candidate sends more (or give up at the probe timeout).
            if let Some(p) = self.probe.as_mut() {
                p.need_send = false;
            }
        }
        if self.pongs_to_send.is_empty() && self.pings_to_send.is_empty() {
            return None;
        }
        let (remote, local) = (self.remote, self.local);
        self.build_packet(now, &mut buf[..max], remote, local, ctx, |s, w| {
            let mut wrote = false;
            while let Some(&id) = s.pongs_to_send.front() {
                if (Frame::Pong { id }).encode(w).is_err() {
                    break;
                }
                s.pongs_to_send.pop_front();
                wrote = true;
            }
            while let Some(&id) = s.pings_to_send.front() {
                if (Frame::Ping { id }).encode(w).is_err() {
                    break;
                }
                s.pings_to_send.pop_front();
                wrote = true;
            }
            wrote
        })
    }

    /// Handshake datagrams (init, response, final) are sent from `hs.msg`.
    fn poll_handshake(&mut self, buf: &mut [u8], ctx: &mut Ctx<'_>) -> Option<Transmit> {
        let hs = self.hs.as_mut()?;
        if !hs.need_send {
            return None;
        }
        hs.need_send = false;
        let len = match self.state {
            SessionState::InitSent => {
                let with_mac = hs.mac1_key.is_some();
                let n = header::write_init(
                    buf,
                    hs.suite.id(),
                    ctx.config.aead_offer(),
                    self.local_index,
                    hs.cookie.as_ref(),
                    with_mac,
                    &hs.msg,
                )
                .ok()?;
                match hs.mac1_key {
                    Some(key) => {
                        let mac = cookie::mac1(&key, &buf[..n]);
                        buf.get_mut(n..n + COOKIE_LEN)?.copy_from_slice(&mac);
                        n + COOKIE_LEN
                    }
                    None => n,
                }
            }
            _ => {
                let n = hs.msg.len();
                buf.get_mut(..n)?.copy_from_slice(&hs.msg);
                n
            }
        };
        let dst = hs.reply_to.unwrap_or(self.remote);
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += len as u64;
        Some(Transmit {
            dst,
            src: self.local,
            len,
            segment_size: None,
        })
    }

    /// Writes a data header, lets `fill` write frames, seals in place. `fill` returns whether
    /// it wrote anything; if not, nothing is sent.
    fn build_packet(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        dst: SocketAddr,
        src: Option<SocketAddr>,
        ctx: &mut Ctx<'_>,
        fill: impl FnOnce(&mut Session, &mut Writer<'_>) -> bool,
    ) -> Option<Transmit> {
        if buf.len() < DATA_HEADER_LEN + TAG_LEN + 1 {
            return None;
        }
        let keys = self.keys.as_ref()?;
        let (phase, counter) = (keys.key_phase(), keys.next_counter());
        let body_end = buf.len() - TAG_LEN;
        let (head, body) = buf[..body_end].split_at_mut(DATA_HEADER_LEN);
        header::write_data_header(head, phase, self.remote_index, counter).ok()?;
        let mut w = Writer::new(body);
        if !fill(self, &mut w) {
            return None;
        }
        let payload_len = w.len();
        let keys = self.keys.as_mut()?;
        let (head, rest) = buf.split_at_mut(DATA_HEADER_LEN);
        let (payload, tail) = rest.split_at_mut(payload_len);
        let (_, tag) = keys.seal(head, payload);
        tail[..TAG_LEN].copy_from_slice(&tag);
        let len = DATA_HEADER_LEN + payload_len + TAG_LEN;
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += len as u64;
        if self.state == SessionState::Established {
            self.timers
                .set(TimerKind::Keepalive, now + ctx.config.keepalive_interval);
        }
        Some(Transmit {
            dst,
            src,
            len,
            segment_size: None,
        })
    }
}
