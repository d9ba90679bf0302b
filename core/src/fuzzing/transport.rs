//! Check functions for the transport building blocks (`recv_reassembly`, `sack_ranges`,
//! `congestion`, `streams_ops`). Each decodes an operation sequence from raw bytes with
//! [`arbitrary::Unstructured`], drives one building block and compares it with a simple
//! reference model, panicking on any divergence or broken invariant.

use std::time::Instant;

/// A base instant for harnesses and tests. Only offsets from it are ever used, so runs stay
/// deterministic; this and `fixed_instant` are the only places outside the drivers that read
/// the clock.
pub fn epoch() -> Instant {
    use std::sync::OnceLock;
    static T0: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)] // the base of virtual time; only differences matter
    *T0.get_or_init(Instant::now)
}

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

/// Decodes operations until the input runs out (every byte drives an operation; a truncated
/// last operation is dropped).
fn ops<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>) -> Vec<T> {
    let mut out = Vec::new();
    while !u.is_empty() {
        match u.arbitrary() {
            Ok(op) => out.push(op),
            Err(_) => break,
        }
    }
    out
}

use crate::cc::{Congestion, CongestionKind, Controller, MAX_WINDOW};
use crate::ids::SessionId;
use crate::recovery::config::TransportConfig;
use crate::recovery::rtt::RttEstimator;
use crate::recovery::sack::{AckTracker, RangeSet};
use crate::stream::recv::{ReadError, RecvError, RecvStream};
use crate::stream::{InitialLimits, InputError, SentFrame, StreamEvent, StreamId, StreamSet};
use crate::wire::codec::Writer;
use crate::wire::frame::{Frame, frames};

// ===== recv_reassembly =====

#[derive(Arbitrary, Debug)]
enum ReassemblyOp {
    Insert {
        offset: u16,
        len: u8,
    },
    Read {
        n: u8,
    },
    /// A FIN below data already received: must be refused without change.
    BadFin {
        back: u8,
    },
}

/// `recv_reassembly` target: random fragments of a known byte string, in any order with
/// overlaps and duplicates, interleaved with reads. The bytes read must always be a prefix of
/// the string, the end must be reported only after the last byte, refusals (too many
/// fragments, bad final size) must change nothing, and the buffer never exceeds the data
/// span.
pub fn recv_reassembly(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let total = usize::from(u.arbitrary::<u16>().unwrap_or(0) % 4096);
    let max_ranges = usize::from(u.arbitrary::<u8>().unwrap_or(0) % 16) + 1;
    let model: Vec<u8> = (0..total).map(|i| (i * 31 + 7) as u8).collect();
    let mut r = RecvStream::new(max_ranges);
    let limit = total as u64;
    let mut out: Vec<u8> = Vec::new();
    let mut ended = false;
    let mut buf = [0u8; 256];
    let ops: Vec<ReassemblyOp> = ops(&mut u);
    for op in ops {
        match op {
            ReassemblyOp::Insert { offset, len } => {
                let start = usize::from(offset).min(total);
                let end = (start + usize::from(len)).min(total);
                let before = (r.highest(), r.readable_bytes(), r.final_size());
                match r.ingest(
                    start as u64,
                    &model[start..end],
                    end == total,
                    limit,
                    u64::MAX,
                ) {
                    Ok(_) => {}
                    Err(RecvError::TooManyRanges) => {
                        assert_eq!(before, (r.highest(), r.readable_bytes(), r.final_size()));
                    }
                    Err(e) => panic!("valid fragment refused: {e:?}"),
                }
            }
            ReassemblyOp::Read { n } => {
                let n = usize::from(n).min(buf.len());
                let mut c = 0;
                match r.read(&mut buf[..n], &mut c) {
                    Ok(Some(k)) => {
                        assert!(!ended);
                        assert_eq!(c, k as u64);
                        out.extend_from_slice(&buf[..k]);
                    }
                    Ok(None) => {
                        assert_eq!(out, model, "end reported before the last byte");
                        ended = true;
                    }
                    Err(ReadError::Blocked) => assert!(r.readable_bytes() == 0 || n == 0),
                    Err(ReadError::Closed) => assert!(ended),
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            ReassemblyOp::BadFin { back } => {
                let h = r.highest();
                let fake = h.saturating_sub(u64::from(back) + 1);
                if h > 0 {
                    let before = (r.highest(), r.readable_bytes(), r.final_size());
                    assert_eq!(
                        r.ingest(fake, &[], true, limit, u64::MAX),
                        Err(RecvError::FinalSize)
                    );
                    assert_eq!(before, (r.highest(), r.readable_bytes(), r.final_size()));
                }
            }
        }
        assert_eq!(
            &out[..],
            &model[..out.len()],
            "bytes out of order or corrupted"
        );
        assert!(r.buffered() as u64 <= r.highest() - r.read_offset());
    }
    // Deliver everything in order: the rest must come out, then the end (once).
    r.ingest(0, &model, true, limit, u64::MAX)
        .expect("in-order delivery refused");
    loop {
        let mut c = 0;
        match r.read(&mut buf, &mut c) {
            Ok(Some(k)) => out.extend_from_slice(&buf[..k]),
            Ok(None) => {
                assert!(!ended);
                break;
            }
            Err(ReadError::Closed) if ended => break,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(out, model);
}

// ===== sack_ranges =====

#[derive(Arbitrary, Debug)]
enum SackOp {
    Insert(u16),
    InsertRange(u16, u8),
    RemoveBelow(u16),
    RemoveRange(u16, u8),
    WriteAck { max_ranges: u8, room: u8 },
}

fn model_ranges(set: &BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &v in set.iter().rev() {
        match out.last_mut() {
            Some(r) if r.0 == v + 1 => r.0 = v,
            _ => out.push((v, v)),
        }
    }
    out
}

/// Applies the range cap to the model: drop the lowest ranges beyond `cap`.
fn model_cap(set: &mut BTreeSet<u64>, cap: usize) {
    loop {
        let r = model_ranges(set);
        if r.len() <= cap {
            return;
        }
        let (lo, hi) = r[r.len() - 1];
        for v in lo..=hi {
            set.remove(&v);
        }
    }
}

/// `sack_ranges` target: the receiver's bounded range set against a `BTreeSet<u64>` model
/// with the same drop-lowest cap, and ACK frames written from it, parsed back, against the
/// model's highest ranges (within the requested range count and the room given).
pub fn sack_ranges(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let cap = usize::from(u.arbitrary::<u8>().unwrap_or(0) % 32) + 1;
    let mut set = RangeSet::new(cap);
    let mut model = BTreeSet::new();
    let ops: Vec<SackOp> = ops(&mut u);
    for op in ops {
        match op {
            SackOp::Insert(v) => {
                let v = u64::from(v);
                let new = !model.contains(&v);
                assert_eq!(set.insert(v), new);
                model.insert(v);
            }
            SackOp::InsertRange(v, len) => {
                let (lo, hi) = (u64::from(v), u64::from(v) + u64::from(len));
                let new = (lo..=hi).any(|x| !model.contains(&x));
                assert_eq!(set.insert_range(lo, hi), new);
                model.extend(lo..=hi);
            }
            SackOp::RemoveBelow(v) => {
                set.remove_below(u64::from(v));
                model.retain(|&x| x >= u64::from(v));
            }
            SackOp::RemoveRange(v, len) => {
                let (lo, hi) = (u64::from(v), u64::from(v) + u64::from(len));
                set.remove_range(lo, hi);
                model.retain(|&x| x < lo || x > hi);
            }
            SackOp::WriteAck { max_ranges, room } => {
                let expect = model_ranges(&model);
                if expect.is_empty() {
                    continue;
                }
                let mut buf = [0u8; 300];
                let room = usize::from(room) + 8;
                let mut w = Writer::new(&mut buf[..room]);
                let max = usize::from(max_ranges) + 1;
                let n = {
                    let slice = set.as_slice();
                    crate::wire::frame::write_ack(&mut w, 0, slice, max.min(slice.len()))
                        .ok()
                        .map(|()| w.len())
                };
                let Some(n) = n else { continue };
                let Some(Ok(Frame::Ack(ack))) = frames(&buf[..n]).next() else {
                    panic!("ACK did not parse");
                };
                let got: Vec<_> = ack.ranges().collect();
                assert!(!got.is_empty() && got.len() <= max);
                assert_eq!(&got[..], &expect[..got.len()]);
            }
        }
        model_cap(&mut model, cap);
        assert_eq!(set.iter().collect::<Vec<_>>(), model_ranges(&model));
        assert!(set.len() <= cap);
    }
    // The ACK tracker on top: never more ranges than its cap, frames always parse.
    let t0 = epoch();
    let mut a = AckTracker::new(cap, Duration::from_millis(25), 2);
    for v in &model {
        a.on_packet_received(t0, *v, true);
    }
    let mut buf = [0u8; 1500];
    let mut w = Writer::new(&mut buf);
    if let Ok(Some(largest)) = a.write_ack(t0, &mut w, cap) {
        let n = w.len();
        let Some(Ok(Frame::Ack(ack))) = frames(&buf[..n]).next() else {
            panic!("tracker ACK did not parse");
        };
        assert_eq!(ack.largest, largest);
        assert!(ack.ranges().count() <= cap);
    }
}

// ===== congestion =====

#[derive(Arbitrary, Debug)]
enum CcOp {
    Sent(u16),
    Ack {
        age_ms: u16,
        bytes: u32,
        app_limited: bool,
    },
    Loss {
        age_ms: u16,
        persistent: bool,
    },
    Mtu(u16),
    Advance(u32),
}

/// `congestion` target: random sends, acknowledgements, losses (including persistent
/// congestion), MTU changes and time steps for NewReno and CUBIC. The window must stay within
/// `[min_window, MAX_WINDOW]`, acknowledgements must never shrink it, app-limited
/// acknowledgements never grow it, and congestion events never grow it.
pub fn congestion(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let kind = if u.arbitrary::<bool>().unwrap_or(false) {
        CongestionKind::Cubic
    } else {
        CongestionKind::NewReno
    };
    let iw = u.arbitrary::<u32>().map(u64::from).unwrap_or(0);
    let ops: Vec<CcOp> = ops(&mut u);
    let t0 = epoch();
    let mut now = t0;
    let mut cc = Congestion::new(kind, 1200, iw);
    let mut rtt = RttEstimator::default();
    for op in ops {
        let before = cc.window();
        match op {
            CcOp::Sent(b) => cc.on_sent(now, u64::from(b)),
            CcOp::Ack {
                age_ms,
                bytes,
                app_limited,
            } => {
                let sent = now
                    .checked_sub(Duration::from_millis(u64::from(age_ms)))
                    .unwrap_or(t0)
                    .max(t0);
                rtt.update(now - sent, Duration::ZERO);
                cc.on_ack(now, sent, u64::from(bytes), app_limited, &rtt);
                assert!(cc.window() >= before, "ack shrank the window");
                if app_limited {
                    assert_eq!(cc.window(), before, "app-limited ack grew the window");
                }
            }
            CcOp::Loss { age_ms, persistent } => {
                let sent = now
                    .checked_sub(Duration::from_millis(u64::from(age_ms)))
                    .unwrap_or(t0)
                    .max(t0);
                cc.on_congestion_event(now, sent, persistent, 1200);
                assert!(cc.window() <= before, "loss grew the window");
                if persistent {
                    assert_eq!(cc.window(), cc.min_window());
                }
            }
            CcOp::Mtu(m) => cc.on_mtu_update(m.max(1200)),
            CcOp::Advance(us) => now += Duration::from_micros(u64::from(us)),
        }
        assert!(cc.window() >= cc.min_window(), "window below the minimum");
        assert!(cc.window() <= MAX_WINDOW, "window above the maximum");
    }
}

// ===== streams_ops =====

/// Byte at `offset` of the stream with wire id `wire` (both sides can check it).
pub(crate) fn pattern(wire: u64, offset: u64) -> u8 {
    (wire.wrapping_mul(131).wrapping_add(offset.wrapping_mul(7)) % 251) as u8
}

/// One side of a [`StreamPair`]: its stream set and the application's view.
#[derive(Debug)]
pub(crate) struct Side {
    pub(crate) set: StreamSet,
    /// Bytes written per stream handle.
    pub(crate) written: BTreeMap<StreamId, u64>,
    /// Bytes read per stream handle, and whether the end was read.
    pub(crate) read: BTreeMap<StreamId, (u64, bool)>,
    pub(crate) finished: BTreeSet<StreamId>,
    pub(crate) events: Vec<StreamEvent>,
    /// Packets in flight to the peer: frames and their bytes.
    pub(crate) flight: VecDeque<(Vec<SentFrame>, Vec<u8>)>,
}

/// Two stream sets connected by a lossy, reordering "link" of whole packets, for tests and
/// the `streams_ops` target. Packets are built exactly as a session would (control frames,
/// then stream frames, into a bounded buffer), parsed with the real frame parser and fed to
/// the peer; their fate (acknowledged or lost) is reported back.
#[derive(Debug)]
pub(crate) struct StreamPair {
    pub(crate) sides: [Side; 2],
    pub(crate) mtu: usize,
}

impl StreamPair {
    pub(crate) fn new(config: &TransportConfig) -> Self {
        let s = |index, initiator| Side {
            set: StreamSet::new(
                SessionId {
                    index,
                    generation: 0,
                },
                initiator,
                config,
                InitialLimits::default(),
            ),
            written: BTreeMap::new(),
            read: BTreeMap::new(),
            finished: BTreeSet::new(),
            events: Vec::new(),
            flight: VecDeque::new(),
        };
        Self {
            sides: [s(0, true), s(1, false)],
            mtu: 1200,
        }
    }

    /// Writes pattern bytes to `id` on side `i`; returns bytes taken.
    pub(crate) fn write(
        &mut self,
        i: usize,
        id: StreamId,
        n: usize,
    ) -> Result<usize, crate::stream::WriteError> {
        let side = &mut self.sides[i];
        let Some(wire) = side.set.wire_id(id) else {
            return side.set.write(id, &[]);
        };
        let off = side.written.get(&id).copied().unwrap_or(0);
        let mut buf = vec![0u8; n];
        for (k, b) in buf.iter_mut().enumerate() {
            *b = pattern(wire, off + k as u64);
        }
        let w = side.set.write(id, &buf)?;
        *side.written.entry(id).or_default() += w as u64;
        Ok(w)
    }

    /// Reads from `id` on side `i`, checking every byte against the pattern.
    pub(crate) fn read(
        &mut self,
        i: usize,
        id: StreamId,
        n: usize,
    ) -> Result<Option<usize>, ReadError> {
        let side = &mut self.sides[i];
        let wire = side.set.wire_id(id);
        let mut buf = vec![0u8; n];
        let res = side.set.read(id, &mut buf);
        let entry = side.read.entry(id).or_default();
        match res {
            Ok(Some(k)) => {
                let wire = wire.expect("read data from an unknown stream");
                for (j, b) in buf[..k].iter().enumerate() {
                    assert_eq!(*b, pattern(wire, entry.0 + j as u64), "corrupted byte");
                }
                assert!(!entry.1, "data after the end");
                entry.0 += k as u64;
            }
            Ok(None) => entry.1 = true,
            Err(_) => {}
        }
        res
    }

    /// Builds one packet on side `i` and puts it in flight; false if nothing to send.
    pub(crate) fn send(&mut self, i: usize) -> bool {
        let mtu = self.mtu;
        let side = &mut self.sides[i];
        let mut buf = vec![0u8; mtu];
        let mut w = Writer::new(&mut buf);
        let mut sent = Vec::new();
        while let Some(f) = side.set.write_control_frame(&mut w) {
            sent.push(f);
        }
        while let Some(f) = side.set.write_stream_frame(&mut w) {
            sent.push(f);
        }
        if sent.is_empty() {
            return false;
        }
        let n = w.len();
        buf.truncate(n);
        side.flight.push_back((sent, buf));
        true
    }

    /// Delivers (or drops) the `pick`-th packet in flight from side `i`. A delivered packet
    /// is acknowledged unless `ack_lost`; a dropped or unacknowledged one is declared lost.
    /// Returns the peer's input error, if any (protocol violations are bugs here).
    pub(crate) fn deliver(
        &mut self,
        i: usize,
        pick: usize,
        drop: bool,
        ack_lost: bool,
    ) -> Result<(), InputError> {
        if self.sides[i].flight.is_empty() {
            return Ok(());
        }
        let k = pick % self.sides[i].flight.len();
        let Some((sent, bytes)) = self.sides[i].flight.remove(k) else {
            return Ok(());
        };
        let mut accepted = !drop;
        if !drop {
            let peer = &mut self.sides[1 - i].set;
            for f in frames(&bytes) {
                let res = match f.expect("our own frames must parse") {
                    Frame::Stream {
                        stream,
                        port,
                        offset,
                        data,
                        fin,
                    } => peer.on_stream_frame(stream, port, offset, data, fin),
                    Frame::ResetStream {
                        stream,
                        code,
                        final_size,
                    } => peer.on_reset_stream(stream, code, final_size),
                    Frame::StopSending { stream, code } => peer.on_stop_sending(stream, code),
                    Frame::MaxData { max } => {
                        peer.on_max_data(max);
                        Ok(())
                    }
                    Frame::MaxStreamData { stream, max } => peer.on_max_stream_data(stream, max),
                    Frame::MaxStreams { max } => {
                        peer.on_max_streams(max);
                        Ok(())
                    }
                    _ => Ok(()),
                };
                match res {
                    Ok(()) => {}
                    Err(InputError::TooManyRanges) => {
                        // The session drops the packet unacknowledged.
                        accepted = false;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            while let Some(e) = self.sides[1 - i].set.poll_event() {
                self.sides[1 - i].events.push(e);
            }
        }
        let side = &mut self.sides[i];
        for f in sent {
            if accepted && !ack_lost {
                side.set.on_frame_acked(f);
            } else {
                side.set.on_frame_lost(f);
            }
        }
        while let Some(e) = side.set.poll_event() {
            if let StreamEvent::Finished { stream } = e {
                side.finished.insert(stream);
            }
            side.events.push(e);
        }
        Ok(())
    }

    /// Runs both directions loss-free until nothing is left to send (bounded).
    pub(crate) fn settle(&mut self) {
        for _ in 0..100_000 {
            let a = self.send(0);
            let b = self.send(1);
            let mut moved = false;
            for i in 0..2 {
                while !self.sides[i].flight.is_empty() {
                    self.deliver(i, 0, false, false)
                        .expect("protocol violation between honest peers");
                    moved = true;
                }
            }
            if !a && !b && !moved {
                return;
            }
        }
        panic!("streams never went quiet");
    }

    /// Accepts every announced stream on side `i`.
    pub(crate) fn accept_all(&mut self, i: usize) -> Vec<(StreamId, u16)> {
        let mut out = Vec::new();
        while let Some(x) = self.sides[i].set.accept() {
            out.push(x);
        }
        out
    }
}

#[derive(Arbitrary, Debug)]
enum StreamOp {
    Open {
        side: bool,
        port: u16,
    },
    Accept {
        side: bool,
    },
    Write {
        side: bool,
        stream: u8,
        len: u16,
    },
    Read {
        side: bool,
        stream: u8,
        len: u16,
    },
    Finish {
        side: bool,
        stream: u8,
    },
    Reset {
        side: bool,
        stream: u8,
        code: u8,
    },
    Stop {
        side: bool,
        stream: u8,
        code: u8,
    },
    Priority {
        side: bool,
        stream: u8,
        priority: i8,
    },
    Send {
        side: bool,
    },
    Deliver {
        side: bool,
        pick: u8,
        drop: bool,
        ack_lost: bool,
    },
}

/// `streams_ops` target: two stream sets with random application operations and a lossy,
/// reordering link. No protocol violation between honest peers, every byte read matches what
/// was written at that offset, flow-control credit is never negative on either side, stream
/// ids are never reused, buffered memory stays within the configured windows, and after the
/// link heals every finished stream delivers all its bytes.
pub fn streams_ops(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let config = TransportConfig {
        stream_recv_window: 64 << 10,
        session_recv_window: 256 << 10,
        stream_send_buffer: 32 << 10,
        max_streams: 8,
        max_recv_ranges: usize::from(u.arbitrary::<u8>().unwrap_or(0) % 8) + 1,
        ..TransportConfig::default()
    };
    let mut p = StreamPair::new(&config);
    let mut handles: [Vec<StreamId>; 2] = [Vec::new(), Vec::new()];
    let mut wire_ids: [BTreeSet<u64>; 2] = [BTreeSet::new(), BTreeSet::new()];
    let mut wire_of: [BTreeMap<StreamId, u64>; 2] = [BTreeMap::new(), BTreeMap::new()];
    let mut stopped: [BTreeSet<StreamId>; 2] = [BTreeSet::new(), BTreeSet::new()];
    let ops: Vec<StreamOp> = ops(&mut u);
    let pick = |hs: &Vec<StreamId>, k: u8| (!hs.is_empty()).then(|| hs[usize::from(k) % hs.len()]);
    for op in ops {
        match op {
            StreamOp::Open { side, port } => {
                let i = usize::from(side);
                if let Ok(id) = p.sides[i].set.open(port) {
                    let wire = p.sides[i].set.wire_id(id).unwrap();
                    assert!(wire_ids[i].insert(wire), "stream id reused");
                    wire_of[i].insert(id, wire);
                    handles[i].push(id);
                }
            }
            StreamOp::Accept { side } => {
                let i = usize::from(side);
                for (id, _) in p.accept_all(i) {
                    let wire = p.sides[i].set.wire_id(id).unwrap();
                    assert!(wire_ids[i].insert(wire), "stream id reused");
                    wire_of[i].insert(id, wire);
                    handles[i].push(id);
                }
            }
            StreamOp::Write { side, stream, len } => {
                let i = usize::from(side);
                if let Some(id) = pick(&handles[i], stream) {
                    let _ = p.write(i, id, usize::from(len) % 8192);
                }
            }
            StreamOp::Read { side, stream, len } => {
                let i = usize::from(side);
                if let Some(id) = pick(&handles[i], stream) {
                    let _ = p.read(i, id, usize::from(len) % 8192);
                }
            }
            StreamOp::Finish { side, stream } => {
                let i = usize::from(side);
                if let Some(id) = pick(&handles[i], stream) {
                    let _ = p.sides[i].set.finish(id);
                }
            }
            StreamOp::Reset { side, stream, code } => {
                let i = usize::from(side);
                if let Some(id) = pick(&handles[i], stream) {
                    let _ = p.sides[i].set.reset(id, u64::from(code));
                }
            }
            StreamOp::Stop { side, stream, code } => {
                let i = usize::from(side);
                if let Some(id) = pick(&handles[i], stream) {
                    stopped[i].insert(id);
                    let _ = p.sides[i].set.stop(id, u64::from(code));
                }
            }
            StreamOp::Priority {
                side,
                stream,
                priority,
            } => {
                let i = usize::from(side);
                if let Some(id) = pick(&handles[i], stream) {
                    let _ = p.sides[i].set.set_priority(id, priority);
                }
            }
            StreamOp::Send { side } => {
                p.send(usize::from(side));
            }
            StreamOp::Deliver {
                side,
                pick,
                drop,
                ack_lost,
            } => {
                if let Err(e) = p.deliver(usize::from(side), usize::from(pick), drop, ack_lost) {
                    panic!("protocol violation between honest peers: {e:?}");
                }
            }
        }
        for side in &p.sides {
            let w = side.set.session_recv_window();
            assert!(w.advertised() >= w.received(), "negative session credit");
            assert!(w.consumed() <= w.received());
            let (send, recv) = side.set.buffered_bytes();
            assert!(send <= config.stream_send_buffer * side.set.len() as u64);
            assert!(
                recv <= config.session_recv_window,
                "receive memory beyond the window"
            );
        }
    }
    // Heal the link: finish what the application finished, read everything.
    for _ in 0..64 {
        p.settle();
        let mut progress = false;
        for i in 0..2 {
            for (id, _) in p.accept_all(i) {
                let wire = p.sides[i].set.wire_id(id).unwrap();
                assert!(wire_ids[i].insert(wire), "stream id reused");
                wire_of[i].insert(id, wire);
                handles[i].push(id);
            }
            for &id in &handles[i].clone() {
                while let Ok(Some(n)) = p.read(i, id, 65536) {
                    progress |= n > 0;
                }
            }
        }
        if !progress {
            break;
        }
    }
    // Every stream whose FIN was acknowledged delivered all its bytes, then the end, to the
    // peer's reader (unless the peer stopped reading it): no truncation at close.
    for i in 0..2 {
        for id in &p.sides[i].finished {
            let wire = wire_of[i][id];
            let written = p.sides[i].written.get(id).copied().unwrap_or(0);
            let Some((&peer_id, _)) = wire_of[1 - i].iter().find(|(_, w)| **w == wire) else {
                panic!("finished stream {wire} never reached the peer's application");
            };
            if stopped[1 - i].contains(&peer_id) {
                continue;
            }
            let got = p.sides[1 - i]
                .read
                .get(&peer_id)
                .copied()
                .unwrap_or((0, false));
            assert_eq!(got, (written, true), "stream {wire}: bytes read / end seen");
        }
    }
}

#[cfg(test)]
mod tests {
    /// Deterministic pseudo-random inputs (xorshift), so the check functions run as plain
    /// unit tests without libFuzzer.
    fn inputs(seed: u64, count: usize, max_len: usize) -> impl Iterator<Item = Vec<u8>> {
        let mut x = seed | 1;
        (0..count).map(move |_| {
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let len = (next() as usize) % max_len;
            (0..len).map(|_| next() as u8).collect()
        })
    }

    #[test]
    fn recv_reassembly_runs() {
        for d in inputs(1, 3000, 512) {
            super::recv_reassembly(&d);
        }
    }

    #[test]
    fn sack_ranges_runs() {
        for d in inputs(2, 3000, 512) {
            super::sack_ranges(&d);
        }
    }

    #[test]
    fn congestion_runs() {
        for d in inputs(3, 3000, 512) {
            super::congestion(&d);
        }
    }

    /// A longer sweep for a machine without libFuzzer:
    /// `TERN_SWEEP=100000 cargo test -p tern-core --lib long_sweep -- --ignored`.
    #[test]
    #[ignore = "long; run by hand"]
    fn long_sweep() {
        let n: usize = std::env::var("TERN_SWEEP")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        for d in inputs(11, n, 2048) {
            super::recv_reassembly(&d);
            super::sack_ranges(&d);
            super::congestion(&d);
        }
        for d in inputs(12, n / 4, 4096) {
            super::streams_ops(&d);
        }
    }

    #[test]
    fn streams_ops_runs() {
        for d in inputs(4, 2000, 1024) {
            super::streams_ops(&d);
        }
    }
}

#[cfg(test)]
mod corpus {
    //! Replays `fuzz/corpus/<target>/*` for the transport targets with `cargo test`, and
    //! (ignored) regenerates their seeds.
    use std::path::PathBuf;

    fn dir(target: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target)
    }

    fn replay(target: &str, f: fn(&[u8])) {
        let mut entries: Vec<_> = std::fs::read_dir(dir(target))
            .unwrap_or_else(|e| panic!("corpus {target}: {e}"))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        assert!(!entries.is_empty(), "empty corpus for {target}");
        for path in entries {
            f(&std::fs::read(&path).expect("readable corpus file"));
        }
    }

    #[test]
    fn recv_reassembly_corpus() {
        replay("recv_reassembly", super::recv_reassembly);
    }

    #[test]
    fn sack_ranges_corpus() {
        replay("sack_ranges", super::sack_ranges);
    }

    #[test]
    fn congestion_corpus() {
        replay("congestion", super::congestion);
    }

    #[test]
    fn streams_ops_corpus() {
        replay("streams_ops", super::streams_ops);
    }

    #[test]
    #[ignore = "writes files; run by hand to regenerate seeds"]
    fn write_transport_seeds() {
        for (k, (target, max_len)) in [
            ("recv_reassembly", 512usize),
            ("sack_ranges", 512),
            ("congestion", 512),
            ("streams_ops", 2048),
        ]
        .into_iter()
        .enumerate()
        {
            let d = dir(target);
            std::fs::create_dir_all(&d).expect("corpus dir");
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ k as u64;
            for i in 0..8 {
                let mut next = || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                let len = max_len / 8 * (i + 1);
                let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                std::fs::write(d.join(format!("seed-{i}")), data).expect("write seed");
            }
        }
    }
}
