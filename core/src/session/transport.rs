//! The reliable transport of an established session: streams, datagrams, ACKs, loss
//! recovery with congestion control and pacing, and PMTU discovery, glued to the packet
//! loop. The pieces live in `stream/`, `recovery/`, `cc/`, `datagram` and `mtu`; this file
//! decides what goes into each packet and what every acknowledgement or loss means.
//!
//! Packet contents, in order: ACK (when due, or piggybacked on anything else), PONGs and
//! PINGs, stream control frames (credit, resets), datagrams, then stream data. ACKs and
//! control frames ignore the congestion window; datagrams and stream data wait for it and for
//! the pacer. Probe timeouts send up to two ack-eliciting packets beyond the window.

use std::time::{Duration, Instant};

use crate::datagram::{self, DatagramQueue, WriteOutcome};
use crate::ids::SessionId;
use crate::mtu::{BASE_MTU, MtuChange, MtuDiscovery};
use crate::recovery::sack::AckTracker;
use crate::recovery::{FrameFate, Recovery, TimeoutOutcome};
use crate::session::stats::{FrameCounts, FrameKind};
use crate::stream::{InitialLimits, InputError, SentFrame, StreamSet, TransportConfig};
use crate::time::earliest;
use crate::wire::codec::Writer;
use crate::wire::frame::Frame;

/// What one sent frame was, as loss recovery records it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Sent {
    /// Stream data or stream control.
    Stream(SentFrame),
    /// An ACK frame whose largest counter was this.
    Ack(u64),
    /// A PING (probe or keepalive); not retransmitted.
    Ping,
    /// A PMTU probe packet.
    MtuProbe { counter: u64 },
    /// Marker for a packet larger than the base MTU (black-hole detection).
    Large { counter: u64, size: u16 },
    /// OBSERVED_ADDRESS (resent if lost).
    Observed,
    /// CANDIDATES (resent if lost).
    Candidates,
}

/// How a received frame affects the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameOutcome {
    /// Applied.
    Ok,
    /// Refused without fault (reassembly cap): do not acknowledge the packet.
    Refuse,
    /// A protocol violation: close the session.
    Violation,
}

/// What an acknowledgement or timeout reported back to the session.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Fates {
    pub observed_lost: bool,
    pub candidates_lost: bool,
}

pub(crate) struct Transport {
    pub streams: StreamSet,
    pub recovery: Recovery<Sent>,
    pub acks: AckTracker,
    pub dgram_out: DatagramQueue,
    pub dgram_in: DatagramQueue,
    pub mtu: MtuDiscovery,
    /// PTO probes still to send.
    pub probes: u8,
    /// The pacer holds data until then.
    pub pacing_until: Option<Instant>,
    pub max_ack_ranges: usize,
    /// A DatagramReceived event is owed.
    pub datagram_event: bool,
    /// Test hook: sees the stream frames of every packet and may lose it.
    #[cfg(feature = "fuzzing")]
    pub packet_hook: Option<PacketHook>,
}

/// Test hook (feature `fuzzing`): called for every data packet that carries stream frames,
/// with the time and those frames; when it returns true the packet is recorded as sent but
/// never leaves the node, exactly like a loss on the wire.
#[cfg(feature = "fuzzing")]
pub(crate) struct PacketHook {
    pub hook: crate::node::PacketHookFn,
    /// Stream frames of the packet being built.
    pub frames: Vec<SentFrame>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("in_flight", &self.recovery.bytes_in_flight())
            .field("mtu", &self.mtu.current())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// The transport of a session that just became established. Probe timeouts back off
    /// to at most a third of `idle_timeout`, so a path that still delivers a fraction of the
    /// packets is probed several times before the idle timer ends the session.
    pub fn new(
        session: SessionId,
        initiator: bool,
        config: &TransportConfig,
        idle_timeout: Duration,
        now: Instant,
    ) -> Self {
        let mtu = MtuDiscovery::new(config.max_mtu, config.mtu_raise_interval);
        let base = mtu.current();
        let mut recovery_config = config.recovery();
        recovery_config.max_pto = recovery_config.max_pto.min(idle_timeout / 3);
        Self {
            streams: StreamSet::new(session, initiator, config, InitialLimits::default()),
            recovery: Recovery::new(recovery_config, now, base),
            acks: AckTracker::new(
                config.max_ack_ranges,
                config.max_ack_delay,
                config.ack_eliciting_threshold,
            ),
            dgram_out: DatagramQueue::new(config.datagram_send_queue, datagram_room(base)),
            dgram_in: DatagramQueue::new(config.datagram_recv_queue, usize::from(config.max_mtu)),
            mtu,
            probes: 0,
            pacing_until: None,
            max_ack_ranges: config.max_ack_ranges,
            datagram_event: false,
            #[cfg(feature = "fuzzing")]
            packet_hook: None,
        }
    }

    /// Applies one transport frame from the peer.
    pub fn on_frame(&mut self, now: Instant, frame: &Frame<'_>, fates: &mut Fates) -> FrameOutcome {
        let res: Result<(), InputError> = match *frame {
            Frame::Ack(ack) => {
                let delay = Duration::from_micros(ack.delay_us);
                let Transport {
                    streams,
                    recovery,
                    acks,
                    mtu,
                    ..
                } = self;
                let outcome = recovery.on_ack_received(now, ack.ranges(), delay, |fate, sent| {
                    dispatch(now, fate, sent, streams, acks, mtu, fates);
                });
                if outcome.is_err() {
                    return FrameOutcome::Violation;
                }
                self.after_mtu_change();
                return FrameOutcome::Ok;
            }
            Frame::Stream {
                stream,
                port,
                offset,
                data,
                fin,
            } => self
                .streams
                .on_stream_frame(stream, port, offset, data, fin),
            Frame::ResetStream {
                stream,
                code,
                final_size,
            } => self.streams.on_reset_stream(stream, code, final_size),
            Frame::StopSending { stream, code } => self.streams.on_stop_sending(stream, code),
            Frame::MaxData { max } => {
                self.streams.on_max_data(max);
                Ok(())
            }
            Frame::MaxStreamData { stream, max } => self.streams.on_max_stream_data(stream, max),
            Frame::MaxStreams { max } => {
                self.streams.on_max_streams(max);
                Ok(())
            }
            Frame::DataBlocked { .. } | Frame::StreamDataBlocked { .. } => Ok(()),
            Frame::Datagram { data } => {
                self.dgram_in.push_received(data);
                self.datagram_event = true;
                Ok(())
            }
            _ => Ok(()),
        };
        match res {
            Ok(()) => FrameOutcome::Ok,
            Err(e) if e.is_protocol_violation() => FrameOutcome::Violation,
            Err(_) => FrameOutcome::Refuse,
        }
    }

    /// Runs the loss-detection timer.
    pub fn on_timeout(&mut self, now: Instant, fates: &mut Fates) {
        let Transport {
            streams,
            recovery,
            acks,
            mtu,
            probes,
            ..
        } = self;
        match recovery.on_timeout(now, |fate, sent| {
            dispatch(now, fate, sent, streams, acks, mtu, fates)
        }) {
            TimeoutOutcome::Probe(n) => *probes = n,
            TimeoutOutcome::Lost { .. } | TimeoutOutcome::Nothing => {}
        }
        self.mtu.handle_timeout(now);
        self.after_mtu_change();
        if self.pacing_until.is_some_and(|t| t <= now) {
            self.pacing_until = None;
        }
    }

    fn after_mtu_change(&mut self) {
        let cur = self.mtu.current();
        if self.dgram_out.max_size() != datagram_room(cur) {
            self.recovery.on_mtu_update(cur);
            self.dgram_out.set_max_size(datagram_room(cur));
        }
    }

    /// Earliest transport timer after `now`. A due ACK is not a timer: the session is then
    /// ready to send (see [`Transport::wants_to_send`]), and only sending clears it.
    pub fn next_timeout(&self, now: Instant) -> Option<Instant> {
        let t = earliest(
            self.recovery.loss_detection_deadline(),
            self.acks.deadline().filter(|d| *d > now),
        );
        earliest(earliest(t, self.pacing_until), self.mtu.next_timeout())
    }

    /// Whether a packet should go out now.
    pub fn wants_to_send(&self, now: Instant) -> bool {
        if self.acks.wants_ack(now) || self.probes > 0 {
            return true;
        }
        let data = self.streams.has_pending_output() || !self.dgram_out.is_empty();
        data && self.pacing_until.is_none_or(|t| t <= now)
    }

    /// Fills a packet: ACK, then `extra` (PINGs/PONGs written by the session), then stream
    /// control, datagrams, stream data. Returns whether anything ack-eliciting was written.
    /// The caller seals the packet and then calls [`Transport::on_sent`].
    pub fn fill(
        &mut self,
        now: Instant,
        w: &mut Writer<'_>,
        size_hint: usize,
        eliciting_already: bool,
        counts: &mut FrameCounts,
    ) -> (bool, bool) {
        let mut eliciting = eliciting_already;
        // Data may go if the window and pacer allow (probes ignore both).
        let probing = self.probes > 0;
        let mut data_ok = probing || self.recovery.can_send(size_hint as u64);
        if data_ok && !probing && (self.streams.has_pending_output() || !self.dgram_out.is_empty())
        {
            match self.recovery.pacing_delay(now, size_hint as u64) {
                None => self.pacing_until = None,
                Some(t) => {
                    self.pacing_until = Some(t);
                    data_ok = false;
                }
            }
        }
        // Control frames (credit, resets) are small and always allowed.
        while let Some(f) = self.streams.write_control_frame(w) {
            counts.add(control_kind(f));
            self.recovery.push_frame(Sent::Stream(f));
            eliciting = true;
        }
        let mut app_limited = true;
        if data_ok {
            while let WriteOutcome::Written(_) = self.dgram_out.write_frame(w) {
                counts.add(FrameKind::Datagram);
                eliciting = true;
            }
            while let Some(f) = self.streams.write_stream_frame(w) {
                counts.add(FrameKind::Stream);
                #[cfg(feature = "fuzzing")]
                if let Some(h) = self.packet_hook.as_mut() {
                    h.frames.push(f);
                }
                self.recovery.push_frame(Sent::Stream(f));
                eliciting = true;
            }
            app_limited = !self.streams.has_pending_output();
        }
        if probing && !eliciting && (Frame::Ping { id: 0 }).encode(w).is_ok() {
            counts.add(FrameKind::Ping);
            self.recovery.push_frame(Sent::Ping);
            eliciting = true;
        }
        (eliciting, app_limited)
    }

    /// Writes an ACK frame first in a packet if one is due (or `piggyback` and anything is
    /// unreported).
    pub fn write_ack(
        &mut self,
        now: Instant,
        w: &mut Writer<'_>,
        piggyback: bool,
        counts: &mut FrameCounts,
    ) -> bool {
        if !(self.acks.wants_ack(now) || piggyback && self.acks.has_unreported()) {
            return false;
        }
        match self.acks.write_ack(now, w, self.max_ack_ranges) {
            Ok(Some(largest)) => {
                counts.add(FrameKind::Ack);
                self.recovery.push_frame(Sent::Ack(largest));
                true
            }
            _ => false,
        }
    }

    /// The packet just sealed went out.
    pub fn on_sent(
        &mut self,
        now: Instant,
        counter: u64,
        size: usize,
        eliciting: bool,
        app_limited: bool,
    ) {
        let size16 = u16::try_from(size).unwrap_or(u16::MAX);
        if size16 > BASE_MTU && eliciting {
            self.recovery.push_frame(Sent::Large {
                counter,
                size: size16,
            });
        }
        self.recovery
            .on_packet_sent(now, counter, size16, eliciting, app_limited);
        if eliciting {
            self.probes = self.probes.saturating_sub(1);
        }
    }

    /// Test hook: whether the packet just built is to be lost (see [`PacketHook`]).
    #[cfg(feature = "fuzzing")]
    pub fn packet_hook_loses(&mut self, now: Instant) -> bool {
        let Some(h) = self.packet_hook.as_mut() else {
            return false;
        };
        if h.frames.is_empty() {
            return false;
        }
        let lose = (h.hook)(now, &h.frames);
        h.frames.clear();
        lose
    }

    /// The packet being built was abandoned.
    pub fn discard(&mut self) {
        self.recovery.discard_pending();
    }

    /// A PMTU probe size, if one is due.
    pub fn poll_mtu_probe(&mut self, now: Instant) -> Option<u16> {
        if self.probes > 0 {
            return None;
        }
        let size = self.mtu.poll_probe(now)?;
        self.recovery.can_send(u64::from(size)).then_some(size)
    }

    /// A PMTU probe went out.
    pub fn on_mtu_probe_sent(&mut self, now: Instant, counter: u64, size: u16) {
        self.recovery.push_frame(Sent::MtuProbe { counter });
        self.recovery.on_mtu_probe_sent(now, counter, size);
        self.mtu.on_probe_sent(counter, size);
    }
}

/// The frame type of a recorded stream control frame.
fn control_kind(f: SentFrame) -> FrameKind {
    match f {
        SentFrame::Stream { .. } => FrameKind::Stream,
        SentFrame::ResetStream { .. } => FrameKind::ResetStream,
        SentFrame::StopSending { .. } => FrameKind::StopSending,
        SentFrame::MaxStreamData { .. } => FrameKind::MaxStreamData,
        SentFrame::MaxData => FrameKind::MaxData,
        SentFrame::MaxStreams => FrameKind::MaxStreams,
        // DATA_BLOCKED and STREAM_DATA_BLOCKED share a record.
        SentFrame::Blocked => FrameKind::StreamDataBlocked,
    }
}

/// Datagram payload room in a packet of `mtu` bytes.
fn datagram_room(mtu: u16) -> usize {
    datagram::max_payload(usize::from(mtu).saturating_sub(crate::wire::header::DATA_OVERHEAD))
}

fn dispatch(
    now: Instant,
    fate: FrameFate,
    sent: Sent,
    streams: &mut StreamSet,
    acks: &mut AckTracker,
    mtu: &mut MtuDiscovery,
    fates: &mut Fates,
) {
    match (fate, sent) {
        (FrameFate::Acked, Sent::Stream(s)) => streams.on_frame_acked(s),
        (FrameFate::Lost, Sent::Stream(s)) => streams.on_frame_lost(s),
        (FrameFate::Acked, Sent::Ack(l)) => acks.on_ack_frame_acked(l),
        (FrameFate::Acked, Sent::MtuProbe { counter, .. }) => {
            mtu.on_probe_acked(now, counter);
        }
        (FrameFate::Lost, Sent::MtuProbe { counter, .. }) => mtu.on_probe_lost(now, counter),
        (FrameFate::Acked, Sent::Large { counter, size }) => mtu.on_packet_acked(counter, size),
        (FrameFate::Lost, Sent::Large { counter, size }) => {
            if let MtuChange::Lowered(_) = mtu.on_packet_lost(now, counter, size) {
                tracing::debug!("PMTU black hole detected; back to the base size");
            }
        }
        (FrameFate::Lost, Sent::Observed) => fates.observed_lost = true,
        (FrameFate::Lost, Sent::Candidates) => fates.candidates_lost = true,
        _ => {}
    }
}
