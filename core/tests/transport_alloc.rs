//! The transport building blocks compose into a packet loop that allocates nothing in steady
//! state: two endpoints, each a `StreamSet` + `Recovery` + `AckTracker`, exchange a bulk
//! stream transfer over a lossy in-memory link using fixed buffers only, under a counting
//! global allocator. This is also a sketch of how the session integrates them (phase B).
//! (Its own test binary: the allocator is process-wide.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_core::cc::Controller;
use tern_core::recovery::sack::AckTracker;
use tern_core::recovery::{FrameFate, Recovery, TimeoutOutcome};
use tern_core::stream::{InitialLimits, SentFrame, StreamId, StreamSet, TransportConfig};
use tern_core::wire::codec::Writer;
use tern_core::wire::frame::{Frame, frames};
use tern_core::{Config, Identity, Node, SessionId};

#[global_allocator]
static GLOBAL: tern_test_alloc::Counting = tern_test_alloc::Counting;

const MTU: usize = 1200;
const LINK_SLOTS: usize = 64;

/// What a packet carried, as loss recovery records it.
#[derive(Clone, Copy, Debug)]
enum Sent {
    Stream(SentFrame),
    Ack(u64),
    Ping,
}

struct Endpoint {
    streams: StreamSet,
    recovery: Recovery<Sent>,
    acks: AckTracker,
    next_counter: u64,
    probes: u8,
}

impl Endpoint {
    fn new(session: SessionId, initiator: bool, config: &TransportConfig, now: Instant) -> Self {
        Self {
            streams: StreamSet::new(session, initiator, config, InitialLimits::default()),
            recovery: Recovery::new(config.recovery(), now, MTU as u16),
            acks: AckTracker::new(
                config.max_ack_ranges,
                config.max_ack_delay,
                config.ack_eliciting_threshold,
            ),
            next_counter: 0,
            probes: 0,
        }
    }

    /// Builds one packet into `buf` (8-byte counter, then frames); returns its length.
    fn build(&mut self, now: Instant, buf: &mut [u8; MTU]) -> Option<usize> {
        let counter = self.next_counter;
        buf[..8].copy_from_slice(&counter.to_be_bytes());
        let mut w = Writer::new(&mut buf[8..]);
        let mut eliciting = false;
        if self.acks.has_unreported()
            && let Ok(Some(largest)) = self.acks.write_ack(now, &mut w, 32)
        {
            self.recovery.push_frame(Sent::Ack(largest));
        }
        let may_send = self.probes > 0 || self.recovery.can_send(MTU as u64);
        if may_send {
            while let Some(f) = self.streams.write_control_frame(&mut w) {
                self.recovery.push_frame(Sent::Stream(f));
                eliciting = true;
            }
            while let Some(f) = self.streams.write_stream_frame(&mut w) {
                self.recovery.push_frame(Sent::Stream(f));
                eliciting = true;
            }
            if self.probes > 0 && !eliciting && (Frame::Ping { id: 0 }).encode(&mut w).is_ok() {
                self.recovery.push_frame(Sent::Ping);
                eliciting = true;
            }
        }
        if w.is_empty() {
            self.recovery.discard_pending();
            return None;
        }
        if eliciting {
            self.probes = self.probes.saturating_sub(1);
        }
        let len = 8 + w.len();
        self.next_counter += 1;
        self.recovery
            .on_packet_sent(now, counter, len as u16, eliciting, false);
        Some(len)
    }

    /// Processes a received packet.
    fn receive(&mut self, now: Instant, packet: &[u8]) {
        let counter = u64::from_be_bytes(packet[..8].try_into().unwrap());
        let (streams, recovery, acks) = (&mut self.streams, &mut self.recovery, &mut self.acks);
        let mut eliciting = false;
        for f in frames(&packet[8..]) {
            let f = f.expect("own frames parse");
            let res = match f {
                Frame::Ack(ack) => {
                    let delay = Duration::from_micros(ack.delay_us);
                    recovery
                        .on_ack_received(now, ack.ranges(), delay, |fate, sent| {
                            match (fate, sent) {
                                (FrameFate::Acked, Sent::Stream(s)) => streams.on_frame_acked(s),
                                (FrameFate::Lost, Sent::Stream(s)) => streams.on_frame_lost(s),
                                (FrameFate::Acked, Sent::Ack(l)) => acks.on_ack_frame_acked(l),
                                _ => {}
                            }
                        })
                        .expect("valid ack");
                    continue;
                }
                Frame::Stream {
                    stream,
                    port,
                    offset,
                    data,
                    fin,
                } => streams.on_stream_frame(stream, port, offset, data, fin),
                Frame::MaxData { max } => {
                    streams.on_max_data(max);
                    Ok(())
                }
                Frame::MaxStreamData { stream, max } => streams.on_max_stream_data(stream, max),
                Frame::MaxStreams { max } => {
                    streams.on_max_streams(max);
                    Ok(())
                }
                Frame::ResetStream {
                    stream,
                    code,
                    final_size,
                } => streams.on_reset_stream(stream, code, final_size),
                Frame::StopSending { stream, code } => streams.on_stop_sending(stream, code),
                _ => Ok(()),
            };
            eliciting = true;
            if let Err(e) = res {
                assert!(!e.is_protocol_violation(), "{e:?}");
                // Refused (fragment cap): the packet is not acknowledged.
                return;
            }
        }
        acks.on_packet_received(now, counter, eliciting);
    }

    fn on_timers(&mut self, now: Instant) {
        let streams = &mut self.streams;
        let acks = &mut self.acks;
        match self
            .recovery
            .on_timeout(now, |fate, sent| match (fate, sent) {
                (FrameFate::Acked, Sent::Stream(s)) => streams.on_frame_acked(s),
                (FrameFate::Lost, Sent::Stream(s)) => streams.on_frame_lost(s),
                (FrameFate::Acked, Sent::Ack(l)) => acks.on_ack_frame_acked(l),
                _ => {}
            }) {
            TimeoutOutcome::Probe(n) => self.probes = n,
            TimeoutOutcome::Lost { .. } | TimeoutOutcome::Nothing => {}
        }
    }
}

fn byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

#[test]
fn steady_bulk_transfer_allocates_nothing() {
    tern_test_alloc::count_this_thread();
    #[allow(clippy::disallowed_methods)] // the base of virtual time; only differences matter
    let t0 = Instant::now();
    let unix = Duration::from_secs(1_800_000_000);
    // Two session handles from real nodes (the stream set only uses them as tags).
    let mut na = Node::new(
        Identity::from_secret([1; 32]),
        Config::default(),
        [1; 32],
        t0,
        unix,
    )
    .unwrap();
    let nb = Node::new(
        Identity::from_secret([2; 32]),
        Config::default(),
        [2; 32],
        t0,
        unix,
    )
    .unwrap();
    let addr_b: SocketAddr = "10.0.0.2:2".parse().unwrap();
    let session = na.connect(t0, addr_b, Some(nb.peer_id())).unwrap();

    let mut config = TransportConfig::default();
    config.stream_recv_window = 256 << 10;
    config.session_recv_window = 1 << 20;
    config.stream_send_buffer = 256 << 10;
    let mut a = Endpoint::new(session, true, &config, t0);
    let mut b = Endpoint::new(session, false, &config, t0);
    let tx: StreamId = a.streams.open(5000).unwrap();
    let mut rx: Option<StreamId> = None;

    let mut link: [[u8; MTU]; LINK_SLOTS] = [[0; MTU]; LINK_SLOTS];
    let mut link_len = [0usize; LINK_SLOTS];
    let mut chunk = [0u8; 16 << 10];
    let mut read_buf = [0u8; 16 << 10];
    let (mut written, mut read) = (0u64, 0u64);
    let mut now = t0;
    let mut sent_packets = 0u64;
    let mut measured_from = None;
    let (warmup, measured) = (4000, 4000);

    for round in 0..warmup + measured {
        if round == warmup {
            measured_from = Some((tern_test_alloc::allocations(), read));
        }
        now += Duration::from_micros(500);
        // Application: keep the sender's buffer full, drain the receiver.
        loop {
            for (k, c) in chunk.iter_mut().enumerate() {
                *c = byte(written + k as u64);
            }
            match a.streams.write(tx, &chunk) {
                Ok(n) if n > 0 => written += n as u64,
                _ => break,
            }
        }
        if rx.is_none() {
            rx = b.streams.accept().map(|(id, _)| id);
        }
        if let Some(id) = rx {
            while let Ok(Some(n)) = b.streams.read(id, &mut read_buf) {
                for (k, c) in read_buf[..n].iter().enumerate() {
                    assert_eq!(
                        *c,
                        byte(read + k as u64),
                        "corrupted at {}",
                        read + k as u64
                    );
                }
                read += n as u64;
            }
        }
        while b.streams.poll_event().is_some() {}
        while a.streams.poll_event().is_some() {}
        // Each side sends what it may (a → b data, b → a ACKs and credit), with 1-in-23 loss.
        for (from, to) in [(0usize, 1usize), (1, 0)] {
            let mut n = 0;
            {
                let ep = if from == 0 { &mut a } else { &mut b };
                while n < LINK_SLOTS {
                    let Some(len) = ep.build(now, &mut link[n]) else {
                        break;
                    };
                    link_len[n] = len;
                    n += 1;
                }
            }
            let peer = if to == 0 { &mut a } else { &mut b };
            for k in 0..n {
                sent_packets += 1;
                if sent_packets % 23 == 0 {
                    continue;
                }
                peer.receive(now, &link[k][..link_len[k]]);
            }
        }
        a.on_timers(now);
        b.on_timers(now);
    }
    let (allocs_before, read_before) = measured_from.unwrap();
    let allocs = tern_test_alloc::allocations() - allocs_before;
    let moved = read - read_before;
    assert!(
        moved > 10 << 20,
        "only {moved} bytes moved in the measured period"
    );
    eprintln!(
        "moved {moved} bytes in {measured} rounds ({} MiB/s of virtual time), {sent_packets} packets, cwnd {}, srtt {:?}",
        moved as f64 / (measured as f64 * 0.0005) / (1 << 20) as f64,
        a.recovery.congestion().window(),
        a.recovery.rtt().smoothed()
    );
    assert_eq!(allocs, 0, "{allocs} allocations while moving {moved} bytes");
    assert!(a.recovery.congestion().window() >= a.recovery.congestion().min_window());
}
