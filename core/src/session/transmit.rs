//! Building outgoing datagrams for a session, in the caller's buffer: handshake messages
//! first, then CLOSE, path validation, relay frames, and the data packet with control frames.
//! Data packets are sealed in place; nothing is allocated.

use std::time::Instant;

use super::transport::Sent;
use super::{Ctx, Route, Session, SessionState, path::RELAY_OVERHEAD, stats::FrameKind};
use crate::crypto::cookie;
use crate::mtu::BASE_MTU;
use crate::time::TimerKind;
use crate::wire::codec::Writer;
use crate::wire::frame::Frame;
use crate::wire::header::{self, COOKIE_LEN, DATA_HEADER_LEN, TAG_LEN};

/// Largest packet for `route` given the node's payload limit.
pub(crate) fn max_for(route: &Route, max_udp_payload: usize) -> usize {
    match route {
        Route::Direct { .. } => max_udp_payload,
        Route::Relay { .. } => max_udp_payload.saturating_sub(RELAY_OVERHEAD),
    }
}

impl Session {
    /// Writes at most one datagram for this session into `buf`; returns where it goes and
    /// its length. Relayed routes get packets small enough to be wrapped by the relay.
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        ctx: &mut Ctx<'_>,
    ) -> Option<(Route, usize)> {
        let limit = buf.len().min(usize::from(ctx.config.max_udp_payload));
        if let Some(t) = self.poll_handshake(buf, limit, ctx) {
            return Some(t);
        }
        let keys_ready = self.keys.is_some();
        match self.state {
            SessionState::Closing if keys_ready && self.close_pending => {
                self.close_pending = false;
                self.close_sends += 1;
                let code = self.close_code;
                let route = self.route;
                let max = max_for(&route, limit);
                return self.build_packet(now, &mut buf[..max], route, ctx, |s, w| {
                    Frame::Close { code, reason: b"" }.encode(w).ok()?;
                    s.stats.tx_frames.add(FrameKind::Close);
                    Some(PacketMeta::UNTRACKED)
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
        if let Some((to, data)) = self.path_response.take() {
            // One response per challenge, no larger than it: never an amplifier. Answering
            // any address lets hole punching work (the peer's probe is how its NAT opened).
            let max = max_for(&to, limit);
            let t = self.build_packet(now, &mut buf[..max], to, ctx, |s, w| {
                Frame::PathResponse { data }.encode(w).ok()?;
                s.stats.tx_frames.add(FrameKind::PathResponse);
                Some(PacketMeta::UNTRACKED)
            });
            if let Some(p) = self.probe.as_mut()
                && to.remote() == Some(p.addr)
                && let Some((_, n)) = t
            {
                p.bytes_sent += n as u64;
            }
            return t;
        }
        if let Some(p) = self.probe.as_ref()
            && p.need_send
        {
            let len = DATA_HEADER_LEN + 9 + TAG_LEN;
            if p.may_send(len) {
                let to = Route::direct(p.addr, p.local);
                let data = p.challenge;
                let t = self.build_packet(now, &mut buf[..limit], to, ctx, |s, w| {
                    Frame::PathChallenge { data }.encode(w).ok()?;
                    s.stats.tx_frames.add(FrameKind::PathChallenge);
                    Some(PacketMeta::UNTRACKED)
                });
                if let (Some(p), Some((_, n))) = (self.probe.as_mut(), t) {
                    p.bytes_sent += n as u64;
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
        if self.send_observed
            && let Route::Direct { remote, .. } = self.route
        {
            self.send_observed = false;
            self.observed_seq += 1;
            let seq = self.observed_seq;
            let route = self.route;
            return self.build_packet(now, &mut buf[..limit], route, ctx, |s, w| {
                Frame::ObservedAddress { seq, addr: remote }
                    .encode(w)
                    .ok()?;
                s.stats.tx_frames.add(FrameKind::ObservedAddress);
                if let Some(tp) = s.tp.as_mut() {
                    tp.recovery.push_frame(Sent::Observed);
                }
                Some(PacketMeta {
                    eliciting: true,
                    app_limited: true,
                    mtu_probe: false,
                })
            });
        }
        self.send_observed = false;
        if self.send_candidates {
            self.send_candidates = false;
            self.candidates_gen = Some(ctx.nat.generation);
            // Before any probe: a probe would move a sequential NAT's prediction.
            let hints = self.candidates_to_send(ctx);
            let mut enc = [0u8; 512];
            let mut ew = Writer::new(&mut enc);
            if hints.encode(&mut ew).is_ok() {
                let n = ew.len();
                let route = self.route;
                let max = max_for(&route, limit);
                return self.build_packet(now, &mut buf[..max], route, ctx, |s, w| {
                    Frame::Candidates { data: &enc[..n] }.encode(w).ok()?;
                    s.stats.tx_frames.add(FrameKind::Candidates);
                    if let Some(tp) = s.tp.as_mut() {
                        tp.recovery.push_frame(Sent::Candidates);
                    }
                    Some(PacketMeta {
                        eliciting: true,
                        app_limited: true,
                        mtu_probe: false,
                    })
                });
            }
        }
        if let Some((to, data)) = self.poll_punch(now, ctx) {
            return self.build_packet(now, &mut buf[..limit], to, ctx, |s, w| {
                Frame::PathChallenge { data }.encode(w).ok()?;
                s.stats.tx_frames.add(FrameKind::PathChallenge);
                Some(PacketMeta::UNTRACKED)
            });
        }
        if let Some((peer, data)) = self.relay_out.front() {
            let (peer, data_len) = (*peer, data.len());
            let route = self.route;
            let max = max_for(&route, limit);
            let t = self.build_packet(now, &mut buf[..max], route, ctx, |s, w| {
                let (_, data) = s.relay_out.front()?;
                Frame::Relay {
                    peer: *peer.as_bytes(),
                    data,
                }
                .encode(w)
                .ok()?;
                s.stats.tx_frames.add(FrameKind::Relay);
                Some(PacketMeta::UNTRACKED)
            });
            if let Some((_, data)) = self.relay_out.pop_front() {
                self.relay_pool.push(data);
            }
            if t.is_none() {
                tracing::trace!(len = data_len, "relayed packet too large for this path");
                ctx.stats.drops.add(crate::session::DropReason::RelayDenied);
            }
            return t;
        }
        // PMTU probe: a padded PING of the size being tested (direct paths only).
        if let Route::Direct { .. } = self.route
            && let Some(size) = self.tp.as_mut().and_then(|t| t.poll_mtu_probe(now))
            && usize::from(size) <= buf.len()
        {
            let route = self.route;
            let t = self.build_packet(now, &mut buf[..usize::from(size)], route, ctx, |s, w| {
                (Frame::Ping { id: 0 }).encode(w).ok()?;
                w.zeros(w.remaining()).ok()?;
                s.stats.tx_frames.add(FrameKind::Ping);
                s.stats.tx_frames.add(FrameKind::Padding);
                Some(PacketMeta {
                    eliciting: true,
                    app_limited: true,
                    mtu_probe: true,
                })
            });
            if t.is_some() {
                return t;
            }
        }
        // Without the `fuzzing` test hook this runs once.
        #[cfg_attr(not(feature = "fuzzing"), allow(clippy::never_loop))]
        loop {
            let t = self.build_data_packet(now, buf, limit, ctx);
            #[cfg(feature = "fuzzing")]
            if t.is_some() && self.tp.as_mut().is_some_and(|tp| tp.packet_hook_loses(now)) {
                continue;
            }
            return t;
        }
    }

    /// The data packet: ACK, PONGs, PINGs, then the transport's frames.
    fn build_data_packet(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        limit: usize,
        ctx: &mut Ctx<'_>,
    ) -> Option<(Route, usize)> {
        let route = self.route;
        let max = self.max_packet(&route, buf.len(), limit);
        self.build_packet(now, &mut buf[..max], route, ctx, |s, w| {
            let tp = s.tp.as_mut()?;
            let other = !s.pongs_to_send.is_empty()
                || !s.pings_to_send.is_empty()
                || tp.probes > 0
                || tp.streams.has_pending_output()
                || !tp.dgram_out.is_empty();
            let counts = &mut s.stats.tx_frames;
            let acked = tp.write_ack(now, w, other, counts);
            let mut eliciting = false;
            let mut wrote_pong = false;
            while let Some(&id) = s.pongs_to_send.front() {
                if (Frame::Pong { id }).encode(w).is_err() {
                    break;
                }
                s.pongs_to_send.pop_front();
                counts.add(FrameKind::Pong);
                // Not ack-eliciting (see `handle_data`): the PONG answers a PING.
                wrote_pong = true;
            }
            while let Some(&id) = s.pings_to_send.front() {
                if (Frame::Ping { id }).encode(w).is_err() {
                    break;
                }
                s.pings_to_send.pop_front();
                counts.add(FrameKind::Ping);
                eliciting = true;
            }
            if eliciting {
                tp.recovery.push_frame(Sent::Ping);
            }
            let (eliciting, app_limited) = tp.fill(now, w, max, eliciting, counts);
            (acked || wrote_pong || eliciting).then_some(PacketMeta {
                eliciting,
                app_limited,
                mtu_probe: false,
            })
        })
    }

    /// Largest packet for `route`: the discovered path MTU on a direct route, what a relay
    /// can carry on a relayed one; never more than the caller's buffer.
    ///
    /// From the second probe timeout in a row on, probes use the base size: if the path MTU
    /// shrank, every full-size packet vanishes, nothing is acknowledged and no loss is ever
    /// declared, so the black-hole detector would never hear of it; a small probe gets
    /// through, and its acknowledgement declares the large packets lost.
    fn max_packet(&self, route: &Route, buf_len: usize, base: usize) -> usize {
        let mtu = self.tp.as_ref().map_or(base, |t| {
            if t.probes > 0 && t.recovery.pto_count() >= 2 {
                usize::from(BASE_MTU).max(base)
            } else {
                usize::from(t.mtu.current()).max(base)
            }
        });
        match route {
            Route::Direct { .. } => mtu.min(buf_len),
            Route::Relay { .. } => max_for(route, base).min(buf_len),
        }
    }

    /// Handshake datagrams (init, response, final) are sent from `hs.msg`.
    fn poll_handshake(
        &mut self,
        buf: &mut [u8],
        limit: usize,
        ctx: &mut Ctx<'_>,
    ) -> Option<(Route, usize)> {
        let hs = self.hs.as_mut()?;
        if !hs.need_send {
            return None;
        }
        hs.need_send = false;
        let dst = hs.reply_to.unwrap_or(self.route);
        let len = match self.state {
            SessionState::InitSent => {
                let with_mac = hs.mac1_key.is_some();
                let max = max_for(&dst, limit);
                let n = header::write_init(
                    &mut buf[..max],
                    hs.suite.id(),
                    ctx.config.aead_offer(),
                    self.local_index,
                    hs.cookie.as_ref(),
                    with_mac,
                    &hs.msg,
                    max,
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
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += len as u64;
        Some((dst, len))
    }

    /// Writes a data header, lets `fill` write frames, seals in place and reports the packet
    /// to loss recovery. `fill` returns `None` if it wrote nothing (nothing is sent then).
    pub(crate) fn build_packet(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        route: Route,
        ctx: &mut Ctx<'_>,
        fill: impl FnOnce(&mut Session, &mut Writer<'_>) -> Option<PacketMeta>,
    ) -> Option<(Route, usize)> {
        if buf.len() < DATA_HEADER_LEN + TAG_LEN + 1 {
            return None;
        }
        let keys = self.keys.as_ref()?;
        let (phase, counter) = (keys.key_phase(), keys.next_counter());
        let body_end = buf.len() - TAG_LEN;
        let (head, body) = buf[..body_end].split_at_mut(DATA_HEADER_LEN);
        header::write_data_header(head, phase, self.remote_index, counter).ok()?;
        let mut w = Writer::new(body);
        let meta = fill(self, &mut w).filter(|_| !w.is_empty());
        let Some(meta) = meta else {
            if let Some(tp) = self.tp.as_mut() {
                tp.discard();
            }
            return None;
        };
        let payload_len = w.len();
        let keys = self.keys.as_mut()?;
        let (head, rest) = buf.split_at_mut(DATA_HEADER_LEN);
        let (payload, tail) = rest.split_at_mut(payload_len);
        let (_, tag) = keys.seal(head, payload);
        tail[..TAG_LEN].copy_from_slice(&tag);
        let len = DATA_HEADER_LEN + payload_len + TAG_LEN;
        if let Some(tp) = self.tp.as_mut() {
            if meta.mtu_probe {
                tp.on_mtu_probe_sent(now, counter, u16::try_from(len).unwrap_or(u16::MAX));
            } else {
                tp.on_sent(now, counter, len, meta.eliciting, meta.app_limited);
            }
        }
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += len as u64;
        if self.state == SessionState::Established {
            let interval = self.keepalive_interval(ctx.config);
            self.timers.set(TimerKind::Keepalive, now + interval);
        }
        Some((route, len))
    }
}

/// What a built packet carried, for loss recovery.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PacketMeta {
    /// Contains a frame that elicits an ACK and is tracked for loss.
    pub eliciting: bool,
    /// The sender had nothing more to send (congestion control must not grow on it).
    pub app_limited: bool,
    /// A PMTU probe.
    pub mtu_probe: bool,
}

impl PacketMeta {
    /// A packet whose frames the session retransmits itself (not tracked for loss).
    pub(crate) const UNTRACKED: PacketMeta = PacketMeta {
        eliciting: false,
        app_limited: true,
        mtu_probe: false,
    };
}
