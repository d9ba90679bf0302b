//! Loss recovery (RFC 9002): the table of sent packets, ACK processing, loss detection by
//! packet and time threshold, the probe timeout (PTO) with exponential backoff, and the
//! per-path estimators it drives: [`rtt::RttEstimator`], the congestion controller
//! ([`crate::cc`]) and the [`pacing::Pacer`].
//!
//! [`Recovery`] is generic over `F`, a small `Copy` record of one frame sent (the session
//! decides what it needs to retransmit or release). While building a packet the session
//! calls [`Recovery::push_frame`] for each retransmittable frame, then
//! [`Recovery::on_packet_sent`]; when the packet is acknowledged or declared lost every
//! recorded frame is handed back exactly once through the callback of
//! [`Recovery::on_ack_received`] or [`Recovery::on_timeout`] with its [`FrameFate`].
//!
//! **Bounds.** Only ack-eliciting packets are tracked (an ACK-only packet needs no
//! retransmission and its frames are dropped at once). Tracked packets leave the table when
//! acknowledged or declared lost, and the session only sends while bytes in flight are below
//! the congestion window (plus at most two PTO probes), so the table holds at most about a
//! window of packets. ACK frames are peer input: ranges are intersected with the table, an
//! ACK for a counter never sent is a typed error, and the work per ACK is bounded by the
//! ranges in the frame (≤ 257) plus the packets it newly acknowledges.
//!
//! Allocation: the packet and frame rings are reused; they grow only while the window grows.

pub mod config;
pub mod pacing;
pub mod rtt;
pub mod sack;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::cc::{Congestion, CongestionKind, Controller};
pub use config::RecoveryConfig;
use pacing::Pacer;
use rtt::RttEstimator;

/// Packet reordering threshold before a packet is declared lost (RFC 9002 §6.1.1: 3).
pub const PACKET_THRESHOLD: u64 = 3;
/// Persistent congestion: this many PTO periods without any acknowledgement (RFC 9002
/// §7.6.1: 3).
pub const PERSISTENT_CONGESTION_THRESHOLD: u32 = 3;
/// Longest probe timeout after backoff unless [`RecoveryConfig::max_pto`] says less
/// (sessions cap it at a third of their idle timeout, so a path that still delivers some
/// packets gets several probes before the session gives up on it).
pub const MAX_PTO: Duration = Duration::from_secs(60);

/// What became of a recorded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameFate {
    /// The packet carrying it was acknowledged: release the data.
    Acked,
    /// The packet carrying it was declared lost: retransmit what is still needed.
    Lost,
}

/// The peer's ACK frame is impossible; the session should close with a protocol error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// It acknowledges a counter this side never sent.
    #[error("ACK for packet {0} which was never sent")]
    UnsentPacket(u64),
}

/// Result of processing an ACK frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckOutcome {
    /// Tracked packets newly acknowledged.
    pub newly_acked: u32,
    /// Packets declared lost by this ACK.
    pub lost: u32,
    /// Bytes of those lost packets.
    pub lost_bytes: u64,
    /// The loss included persistent congestion (window collapsed to the minimum).
    pub persistent_congestion: bool,
}

/// Result of [`Recovery::on_timeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutOutcome {
    /// The timer was not due (spurious or early call): nothing happened.
    Nothing,
    /// The time threshold declared packets lost; their frames went to the callback.
    Lost {
        /// Packets declared lost.
        packets: u32,
        /// Their bytes.
        bytes: u64,
    },
    /// The probe timeout fired: send this many ack-eliciting packets now, even beyond the
    /// congestion window (new data if any, else retransmit the oldest unacknowledged data,
    /// else a PING).
    Probe(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Live,
    Done,
}

#[derive(Clone, Copy, Debug)]
struct SentPacket {
    counter: u64,
    time_sent: Instant,
    size: u16,
    in_flight: bool,
    app_limited: bool,
    /// A PMTU probe: its loss says nothing about congestion (RFC 9000 §14.4).
    mtu_probe: bool,
    state: State,
    /// Absolute index of the first frame in the frame log.
    frames_start: u64,
    frames_len: u32,
}

/// Sent-packet table, loss detection and PTO for one path, with its RTT estimator,
/// congestion controller and pacer.
#[derive(Clone, Debug)]
pub struct Recovery<F> {
    config: RecoveryConfig,
    packets: VecDeque<SentPacket>,
    frames: VecDeque<F>,
    /// Absolute index of `frames[0]`.
    frames_base: u64,
    /// Frames pushed for the packet being built.
    pending_frames: u32,
    bytes_in_flight: u64,
    eliciting_in_flight: u32,
    largest_sent: Option<u64>,
    largest_acked: Option<u64>,
    loss_time: Option<Instant>,
    last_eliciting_sent: Option<Instant>,
    pto_count: u32,
    first_rtt_sample: Option<Instant>,
    rtt: RttEstimator,
    cc: Congestion,
    pacer: Pacer,
    mtu: u16,
    /// Packets declared lost so far (PMTU probes included).
    lost_packets: u64,
    /// Their bytes.
    lost_bytes: u64,
}

impl<F: Copy> Recovery<F> {
    /// Recovery state for a new path at `now` with datagrams of `mtu` bytes.
    pub fn new(config: RecoveryConfig, now: Instant, mtu: u16) -> Self {
        let rtt = RttEstimator::new(config.initial_rtt);
        let iw = config
            .initial_window
            .unwrap_or_else(|| crate::cc::default_initial_window(mtu));
        let cc = Congestion::new(config.congestion, mtu, iw);
        let pacer = Pacer::new(now, rtt.smoothed(), cc.window(), mtu);
        Self {
            config,
            packets: VecDeque::new(),
            frames: VecDeque::new(),
            frames_base: 0,
            pending_frames: 0,
            bytes_in_flight: 0,
            eliciting_in_flight: 0,
            largest_sent: None,
            largest_acked: None,
            loss_time: None,
            last_eliciting_sent: None,
            pto_count: 0,
            first_rtt_sample: None,
            rtt,
            cc,
            pacer,
            mtu,
            lost_packets: 0,
            lost_bytes: 0,
        }
    }

    /// Records one frame of the packet being built. Call [`Recovery::on_packet_sent`] when
    /// the packet is sealed, or [`Recovery::discard_pending`] if it is abandoned.
    pub fn push_frame(&mut self, frame: F) {
        self.frames.push_back(frame);
        self.pending_frames = self.pending_frames.saturating_add(1);
    }

    /// Forgets the frames pushed since the last sent packet (the packet was not sent).
    pub fn discard_pending(&mut self) {
        for _ in 0..self.pending_frames {
            self.frames.pop_back();
        }
        self.pending_frames = 0;
    }

    /// A packet with `counter` and `size` bytes was sent at `now`, carrying the frames pushed
    /// since the last call. Report *every* data packet sent on the path here, ACK-only ones
    /// included: an acknowledgement of a counter above the largest reported is treated as an
    /// ACK for a packet never sent ([`AckError::UnsentPacket`]). `ack_eliciting` packets are tracked and count toward bytes in
    /// flight; others are forgotten at once (with their frames). `app_limited` means the
    /// sender had no more data to fill the window. Counters must increase.
    pub fn on_packet_sent(
        &mut self,
        now: Instant,
        counter: u64,
        size: u16,
        ack_eliciting: bool,
        app_limited: bool,
    ) {
        self.record_sent(now, counter, size, ack_eliciting, app_limited, false);
    }

    /// Like [`Recovery::on_packet_sent`] for a PMTU probe (a padded PING of the probed size,
    /// with a frame recorded so the session learns its fate). It counts toward bytes in
    /// flight, but its loss is not a congestion signal and does not reduce the window.
    pub fn on_mtu_probe_sent(&mut self, now: Instant, counter: u64, size: u16) {
        self.record_sent(now, counter, size, true, true, true);
    }

    fn record_sent(
        &mut self,
        now: Instant,
        counter: u64,
        size: u16,
        ack_eliciting: bool,
        app_limited: bool,
        mtu_probe: bool,
    ) {
        debug_assert!(self.largest_sent.is_none_or(|l| counter > l));
        self.largest_sent = Some(self.largest_sent.map_or(counter, |l| l.max(counter)));
        let n = self.pending_frames;
        self.pending_frames = 0;
        if !ack_eliciting {
            for _ in 0..n {
                self.frames.pop_back();
            }
            return;
        }
        let frames_start = self.frames_base + self.frames.len() as u64 - u64::from(n);
        // RFC 9002 §7.8: a window the sender does not fill must not grow. Flow control (or
        // an application writing slowly) can keep bytes in flight far below the window
        // while every packet is "not application-limited"; growing on their ACKs would let
        // the window run away from what the path was ever shown to carry (the simulator saw
        // 3.7 MB windows on a path holding 1 MB). The window may grow while at least half
        // of it is in flight, in slow start and congestion avoidance alike: a stricter rule
        // for congestion avoidance (within three packets) starved paced flows, whose bytes
        // in flight trail the window, and two CUBIC flows then shared a bottleneck 76:100.
        let in_flight = self.bytes_in_flight.saturating_add(u64::from(size));
        let underused = in_flight.saturating_mul(2) < self.cc.window();
        self.packets.push_back(SentPacket {
            counter,
            time_sent: now,
            size,
            in_flight: true,
            app_limited: app_limited || underused,
            mtu_probe,
            state: State::Live,
            frames_start,
            frames_len: n,
        });
        self.bytes_in_flight = self.bytes_in_flight.saturating_add(u64::from(size));
        self.eliciting_in_flight += 1;
        self.last_eliciting_sent = Some(now);
        self.cc.on_sent(now, u64::from(size));
        self.pacer.on_sent(u64::from(size));
    }

    /// Processes an ACK frame: `ranges` are inclusive `(low, high)` pairs, highest first (as
    /// [`crate::wire::frame::Ack::ranges`] yields them), `ack_delay` the peer's reported
    /// delay. Newly acknowledged frames and frames of packets this ACK proves lost are passed
    /// to `on_frame`.
    ///
    /// # Errors
    /// [`AckError::UnsentPacket`] if a range reaches above the largest counter sent; nothing
    /// is changed then.
    pub fn on_ack_received(
        &mut self,
        now: Instant,
        ranges: impl Iterator<Item = (u64, u64)> + Clone,
        ack_delay: Duration,
        mut on_frame: impl FnMut(FrameFate, F),
    ) -> Result<AckOutcome, AckError> {
        let Some(largest) = ranges.clone().map(|r| r.1).max() else {
            return Ok(AckOutcome::default());
        };
        if self.largest_sent.is_none_or(|s| largest > s) {
            return Err(AckError::UnsentPacket(largest));
        }
        let mut out = AckOutcome::default();
        self.largest_acked = Some(self.largest_acked.map_or(largest, |l| l.max(largest)));
        let mut largest_newly: Option<(u64, Instant)> = None;
        for (lo, hi) in ranges {
            let lo = lo.min(hi);
            let start = self.packets.partition_point(|p| p.counter < lo);
            for i in start..self.packets.len() {
                let p = self.packets[i];
                if p.counter > hi {
                    break;
                }
                if p.state != State::Live {
                    continue;
                }
                self.packets[i].state = State::Done;
                out.newly_acked += 1;
                if largest_newly.is_none_or(|(c, _)| p.counter > c) {
                    largest_newly = Some((p.counter, p.time_sent));
                }
                self.remove_in_flight(&p);
                self.cc.on_ack(
                    now,
                    p.time_sent,
                    u64::from(p.size),
                    p.app_limited,
                    &self.rtt,
                );
                self.emit_frames(&p, FrameFate::Acked, &mut on_frame);
            }
        }
        if out.newly_acked == 0 {
            return Ok(out);
        }
        // RTT sample only when the largest acknowledged is newly acknowledged (§5.1).
        if let Some((c, sent)) = largest_newly
            && c == largest
        {
            let delay = ack_delay.min(self.config.peer_max_ack_delay);
            self.rtt.update(now.saturating_duration_since(sent), delay);
            self.first_rtt_sample.get_or_insert(now);
        }
        let (lost, bytes, persistent) = self.detect_lost(now, &mut on_frame);
        out.lost = lost;
        out.lost_bytes = bytes;
        out.persistent_congestion = persistent;
        self.pto_count = 0;
        self.compact();
        Ok(out)
    }

    /// Forgets the probe-timeout backoff (the session moved to another path: the timeouts
    /// counted the old one).
    pub fn reset_pto_backoff(&mut self) {
        self.pto_count = 0;
    }

    /// Runs the loss-detection timer if due. Safe to call early or spuriously
    /// ([`TimeoutOutcome::Nothing`]).
    pub fn on_timeout(
        &mut self,
        now: Instant,
        mut on_frame: impl FnMut(FrameFate, F),
    ) -> TimeoutOutcome {
        let Some((at, is_loss)) = self.timer() else {
            return TimeoutOutcome::Nothing;
        };
        if at > now {
            return TimeoutOutcome::Nothing;
        }
        if is_loss {
            let (packets, bytes, _) = self.detect_lost(now, &mut on_frame);
            self.compact();
            return TimeoutOutcome::Lost { packets, bytes };
        }
        self.pto_count = self.pto_count.saturating_add(1);
        TimeoutOutcome::Probe(2)
    }

    /// When [`Recovery::on_timeout`] must run next (for `TimerKind::Loss`).
    pub fn loss_detection_deadline(&self) -> Option<Instant> {
        self.timer().map(|(at, _)| at)
    }

    fn timer(&self) -> Option<(Instant, bool)> {
        if let Some(t) = self.loss_time {
            return Some((t, true));
        }
        if self.eliciting_in_flight == 0 {
            return None;
        }
        let last = self.last_eliciting_sent?;
        Some((last + self.pto(), false))
    }

    /// The current probe timeout including backoff, at most [`RecoveryConfig::max_pto`]
    /// (but never below the un-backed-off PTO).
    pub fn pto(&self) -> Duration {
        let base = self.rtt.pto_base(self.config.peer_max_ack_delay);
        let factor = 1u32 << self.pto_count.min(16);
        let cap = self.config.max_pto.clamp(base, MAX_PTO.max(base));
        base.checked_mul(factor).unwrap_or(cap).min(cap)
    }

    /// Declares lost every live packet below the largest acknowledged that is past the packet
    /// or time threshold, and sets `loss_time` for the earliest one that is not yet.
    fn detect_lost(
        &mut self,
        now: Instant,
        on_frame: &mut impl FnMut(FrameFate, F),
    ) -> (u32, u64, bool) {
        self.loss_time = None;
        let Some(largest_acked) = self.largest_acked else {
            return (0, 0, false);
        };
        let loss_delay = self.rtt.loss_delay();
        let lost_send_time = now.checked_sub(loss_delay);
        let (mut lost, mut bytes) = (0u32, 0u64);
        let mut newest_lost: Option<Instant> = None;
        // Persistent congestion: a run of consecutive lost packets (no acknowledged packet
        // between them) spanning more than the threshold.
        let pc_period =
            self.rtt.pto_base(self.config.peer_max_ack_delay) * PERSISTENT_CONGESTION_THRESHOLD;
        let mut run: Option<(Instant, Instant)> = None;
        let mut persistent = false;
        for i in 0..self.packets.len() {
            let p = self.packets[i];
            if p.counter > largest_acked {
                break;
            }
            if p.state != State::Live {
                // An acknowledged packet breaks a run of losses.
                run = None;
                continue;
            }
            let by_time = lost_send_time.is_some_and(|t| p.time_sent <= t);
            let by_count = largest_acked >= p.counter.saturating_add(PACKET_THRESHOLD);
            if by_time || by_count {
                self.packets[i].state = State::Done;
                lost += 1;
                bytes = bytes.saturating_add(u64::from(p.size));
                self.remove_in_flight(&p);
                self.emit_frames(&p, FrameFate::Lost, on_frame);
                if p.mtu_probe {
                    continue;
                }
                newest_lost = Some(newest_lost.map_or(p.time_sent, |t| t.max(p.time_sent)));
                if self.first_rtt_sample.is_some_and(|s| p.time_sent > s) {
                    let (first, _) = *run.get_or_insert((p.time_sent, p.time_sent));
                    run = Some((first, p.time_sent));
                    if p.time_sent.saturating_duration_since(first) > pc_period {
                        persistent = true;
                    }
                }
            } else {
                let at = p.time_sent + loss_delay;
                self.loss_time = Some(self.loss_time.map_or(at, |t| t.min(at)));
            }
        }
        if let Some(sent) = newest_lost {
            self.cc.on_congestion_event(now, sent, persistent, bytes);
        }
        self.lost_packets = self.lost_packets.saturating_add(u64::from(lost));
        self.lost_bytes = self.lost_bytes.saturating_add(bytes);
        (lost, bytes, persistent)
    }

    fn remove_in_flight(&mut self, p: &SentPacket) {
        if p.in_flight {
            self.bytes_in_flight = self.bytes_in_flight.saturating_sub(u64::from(p.size));
            self.eliciting_in_flight = self.eliciting_in_flight.saturating_sub(1);
        }
    }

    fn emit_frames(
        &self,
        p: &SentPacket,
        fate: FrameFate,
        on_frame: &mut impl FnMut(FrameFate, F),
    ) {
        let start = p.frames_start.saturating_sub(self.frames_base);
        let Ok(start) = usize::try_from(start) else {
            return;
        };
        // Indexing (cheaper than building a `range` iterator for the one or two frames a
        // packet holds); a missing index is skipped rather than panicking.
        for i in start..start.saturating_add(p.frames_len as usize) {
            if let Some(f) = self.frames.get(i) {
                on_frame(fate, *f);
            }
        }
    }

    /// Pops finished packets (and their frames) off the front of the rings.
    fn compact(&mut self) {
        while let Some(p) = self.packets.front() {
            if p.state == State::Live {
                break;
            }
            self.packets.pop_front();
        }
        let keep_from = match self.packets.front() {
            Some(p) => p.frames_start,
            None => self.frames_base + self.frames.len() as u64 - u64::from(self.pending_frames),
        };
        while self.frames_base < keep_from && !self.frames.is_empty() {
            self.frames.pop_front();
            self.frames_base += 1;
        }
    }

    /// The frames of the oldest unacknowledged packet (what a PTO probe should resend when
    /// there is no new data), with its counter.
    pub fn oldest_unacked(&self) -> Option<(u64, impl Iterator<Item = F> + '_)> {
        let p = self.packets.iter().find(|p| p.state == State::Live)?;
        let start = usize::try_from(p.frames_start - self.frames_base).ok()?;
        Some((
            p.counter,
            self.frames
                .range(start..start + p.frames_len as usize)
                .copied(),
        ))
    }

    /// Whether a packet of `bytes` fits in the congestion window.
    pub fn can_send(&self, bytes: u64) -> bool {
        self.bytes_in_flight.saturating_add(bytes) <= self.cc.window()
    }

    /// When the pacer lets a packet of `bytes` go: `None` for now.
    pub fn pacing_delay(&mut self, now: Instant, bytes: u64) -> Option<Instant> {
        self.pacer
            .delay(now, self.rtt.smoothed(), self.cc.window(), self.mtu, bytes)
    }

    /// The path MTU changed (PMTU discovery); rescales the congestion window.
    pub fn on_mtu_update(&mut self, mtu: u16) {
        self.mtu = mtu;
        self.cc.on_mtu_update(mtu);
    }

    /// Bytes of tracked packets neither acknowledged nor declared lost.
    pub fn bytes_in_flight(&self) -> u64 {
        self.bytes_in_flight
    }

    /// Tracked packets neither acknowledged nor declared lost.
    pub fn packets_in_flight(&self) -> u32 {
        self.eliciting_in_flight
    }

    /// The RTT estimator.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// The congestion controller.
    pub fn congestion(&self) -> &Congestion {
        &self.cc
    }

    /// The congestion controller kind in use.
    pub fn congestion_kind(&self) -> CongestionKind {
        self.config.congestion
    }

    /// Consecutive PTOs without an acknowledgement.
    pub fn pto_count(&self) -> u32 {
        self.pto_count
    }

    /// The largest counter the peer acknowledged.
    pub fn largest_acked(&self) -> Option<u64> {
        self.largest_acked
    }

    /// Packets declared lost since the start (counting PMTU probes), and their bytes.
    pub fn lost(&self) -> (u64, u64) {
        (self.lost_packets, self.lost_bytes)
    }

    /// Entries in the sent-packet table (including finished ones not yet compacted).
    pub fn tracked_packets(&self) -> usize {
        self.packets.len()
    }
}

#[cfg(test)]
mod tests;
