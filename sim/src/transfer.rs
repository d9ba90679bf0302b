//! Stream transfers as a simulated application: both ends of a session run a [`Transfers`]
//! app sharing one [`TransferBook`]; each planned transfer opens a stream to its own virtual
//! port (`base_port + index`), writes a deterministic byte pattern of the planned size, and
//! finishes at once after the last write (write-then-close). The reader checks every byte
//! against the pattern as it arrives, notes when the end (FIN) was read, and can record a
//! timestamp for every read (per-stream delivery times).
//!
//! The receiving end finishes its own (empty) sending half when it accepts a stream and the
//! sender reads its receiving half to the end, so both halves close and the stream is freed
//! on both nodes: a complete stream life cycle.
//!
//! ```
//! use std::time::Duration;
//! use tern_sim::transfer::{Opener, TransferBook, TransferSpec, Transfers};
//! use tern_sim::{LinkPreset, Topology};
//!
//! let book = TransferBook::new(vec![TransferSpec::new(100_000, Opener::Dialer)]);
//! let mut t = Topology::new("doc_transfer", 1);
//! t.host("server").link(LinkPreset::Lan).app(Transfers::acceptor(&book)).add();
//! t.host("client").link(LinkPreset::Wifi).app(Transfers::dialer(&book, "server")).add();
//! let mut sim = t.build();
//! assert!(sim.run_until(Duration::from_secs(30), |_| book.all_done()));
//! book.check().unwrap();
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use tern_core::stream::{ReadError, WriteError};
use tern_core::{Event, OpenStreamError, SessionId, StreamId};

use crate::app::{App, AppCx};

/// First virtual port used for transfers (transfer `i` goes to `DEFAULT_BASE_PORT + i`).
pub const DEFAULT_BASE_PORT: u16 = 20_000;
/// Bytes moved per `write`/`read` call.
const CHUNK: usize = 32 << 10;
/// Timer tags: transfer starts are the index itself; pacing ticks `PACE_TAG + index`;
/// a stalled reader resumes at `RESUME_TAG + index`; pings at `PING_TAG`.
const PACE_TAG: u64 = 1 << 32;
const RESUME_TAG: u64 = 2 << 32;
const PING_TAG: u64 = 3 << 32;

/// Which end of the session opens (and writes) a transfer's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opener {
    /// The host that dialed.
    Dialer,
    /// The host that accepted the session.
    Acceptor,
}

/// One planned transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferSpec {
    /// Bytes to send.
    pub size: u64,
    /// When to open the stream (or as soon as the session is up, if later).
    pub start: Duration,
    /// Who sends.
    pub opener: Opener,
    /// Stream priority.
    pub priority: i8,
    /// `Some((bytes, every))`: write `bytes` every `every` (a paced message stream) instead
    /// of as fast as flow control allows.
    pub paced: Option<(u64, Duration)>,
    /// Record a timestamp for every write and every read.
    pub record: bool,
    /// The receiver accepts the stream but reads nothing until this time (a stalled
    /// application); `Duration::MAX` never reads.
    pub stall_reader_until: Option<Duration>,
    /// Only the [`Opener`] end running on this host (by name) opens it; `None`: any.
    pub host: Option<String>,
}

impl TransferSpec {
    /// A bulk transfer of `size` bytes opened by `opener` as soon as the session is up.
    pub fn new(size: u64, opener: Opener) -> Self {
        Self {
            size,
            start: Duration::ZERO,
            opener,
            priority: 0,
            paced: None,
            record: false,
            stall_reader_until: None,
            host: None,
        }
    }

    /// Only the opener end on host `name` opens this transfer (several dialers sharing a
    /// book with one acceptor).
    pub fn on_host(mut self, name: &str) -> Self {
        self.host = Some(name.to_owned());
        self
    }

    /// The receiver reads nothing until `until` (`Duration::MAX`: never).
    pub fn reader_stalled_until(mut self, until: Duration) -> Self {
        self.stall_reader_until = Some(until);
        self
    }

    /// Opens the stream at `start`.
    pub fn at(mut self, start: Duration) -> Self {
        self.start = start;
        self
    }

    /// Writes `bytes` every `every` instead of all at once.
    pub fn paced(mut self, bytes: u64, every: Duration) -> Self {
        self.paced = Some((bytes, every));
        self
    }

    /// Records per-write and per-read timestamps.
    pub fn recorded(mut self) -> Self {
        self.record = true;
        self
    }

    /// Sets the stream priority.
    pub fn priority(mut self, p: i8) -> Self {
        self.priority = p;
        self
    }
}

/// What happened to one transfer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferLog {
    /// The sender's stream, once opened.
    pub stream: Option<StreamId>,
    /// When the stream was opened.
    pub opened_at: Option<Duration>,
    /// Bytes the sender's `write` accepted.
    pub written: u64,
    /// When `finish` was called (right after the last write).
    pub write_done_at: Option<Duration>,
    /// `write` returned `Blocked` this many times.
    pub blocked_writes: u64,
    /// When the sender was told everything was acknowledged (`StreamFinished`).
    pub acked_at: Option<Duration>,
    /// The receiver's stream, once accepted.
    pub peer_stream: Option<StreamId>,
    /// When the receiver accepted it.
    pub accepted_at: Option<Duration>,
    /// Bytes read, all matching the pattern (reading stops at the first mismatch).
    pub read: u64,
    /// When the end of the stream was read.
    pub fin_at: Option<Duration>,
    /// `(time, total written)` after each write, if recorded.
    pub writes: Vec<(Duration, u64)>,
    /// `(time, total read)` after each read, if recorded.
    pub reads: Vec<(Duration, u64)>,
    /// Anything that went wrong (mismatch, reset, refused, FIN early, data after FIN…).
    pub errors: Vec<String>,
    /// `write` calls that returned `Blocked`, with their time, if recorded.
    pub blocked_at: Vec<Duration>,
}

impl TransferLog {
    /// When the receiver had read `bytes` in total (from the recorded reads).
    pub fn read_time(&self, bytes: u64) -> Option<Duration> {
        let i = self.reads.partition_point(|&(_, n)| n < bytes);
        self.reads.get(i).map(|&(t, _)| t)
    }

    /// When the sender had written `bytes` in total (from the recorded writes).
    pub fn write_time(&self, bytes: u64) -> Option<Duration> {
        let i = self.writes.partition_point(|&(_, n)| n < bytes);
        self.writes.get(i).map(|&(t, _)| t)
    }
}

/// The plan and the results, shared by both ends (`Rc`: the simulator is single-threaded).
#[derive(Clone)]
pub struct TransferBook {
    inner: Rc<RefCell<BookInner>>,
}

struct BookInner {
    specs: Vec<TransferSpec>,
    logs: Vec<TransferLog>,
    base_port: u16,
    /// Session-level problems (closed sessions).
    errors: Vec<String>,
}

impl fmt::Debug for TransferBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.inner.borrow();
        f.debug_struct("TransferBook")
            .field("transfers", &b.specs.len())
            .field(
                "done",
                &b.logs.iter().filter(|l| l.fin_at.is_some()).count(),
            )
            .finish()
    }
}

impl TransferBook {
    /// A plan; transfer `i` uses port [`DEFAULT_BASE_PORT`]` + i`.
    pub fn new(specs: Vec<TransferSpec>) -> Self {
        Self::with_base_port(specs, DEFAULT_BASE_PORT)
    }

    /// A plan using ports from `base_port`.
    pub fn with_base_port(specs: Vec<TransferSpec>, base_port: u16) -> Self {
        assert!(
            specs.len() <= usize::from(u16::MAX - base_port),
            "too many transfers for the port range"
        );
        let logs = vec![TransferLog::default(); specs.len()];
        Self {
            inner: Rc::new(RefCell::new(BookInner {
                specs,
                logs,
                base_port,
                errors: Vec::new(),
            })),
        }
    }

    /// Number of transfers.
    pub fn len(&self) -> usize {
        self.inner.borrow().specs.len()
    }

    /// Whether the plan is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The plan of transfer `i`.
    pub fn spec(&self, i: usize) -> TransferSpec {
        self.inner.borrow().specs[i].clone()
    }

    /// A copy of transfer `i`'s log.
    pub fn log(&self, i: usize) -> TransferLog {
        self.inner.borrow().logs[i].clone()
    }

    /// Runs `f` on transfer `i`'s log without copying it.
    pub fn with_log<R>(&self, i: usize, f: impl FnOnce(&TransferLog) -> R) -> R {
        f(&self.inner.borrow().logs[i])
    }

    /// Bytes read so far by transfer `i`'s receiver.
    pub fn read(&self, i: usize) -> u64 {
        self.inner.borrow().logs[i].read
    }

    /// Whether transfer `i`'s receiver read the end of the stream.
    pub fn done(&self, i: usize) -> bool {
        self.inner.borrow().logs[i].fin_at.is_some()
    }

    /// Whether every receiver read the end of its stream and every sender saw its data
    /// acknowledged.
    pub fn all_done(&self) -> bool {
        self.inner
            .borrow()
            .logs
            .iter()
            .all(|l| l.fin_at.is_some() && l.acked_at.is_some())
    }

    /// Whether any error was recorded.
    pub fn has_errors(&self) -> bool {
        let b = self.inner.borrow();
        !b.errors.is_empty() || b.logs.iter().any(|l| !l.errors.is_empty())
    }

    /// Checks every transfer: no error, every byte read exactly once in order (the pattern
    /// matched and the count equals the size), the end read, the sender told that
    /// everything was acknowledged.
    ///
    /// # Errors
    /// A description of every transfer that fails.
    pub fn check(&self) -> Result<(), String> {
        let b = self.inner.borrow();
        let mut bad = b.errors.clone();
        for (i, (s, l)) in b.specs.iter().zip(&b.logs).enumerate() {
            let mut why = l.errors.clone();
            if l.read != s.size {
                why.push(format!("read {} of {} bytes", l.read, s.size));
            }
            if l.fin_at.is_none() {
                why.push("end of stream not read".into());
            }
            if l.acked_at.is_none() {
                why.push("sender never saw StreamFinished".into());
            }
            if !why.is_empty() {
                bad.push(format!(
                    "transfer {i} ({} B, {:?}, written {}): {}",
                    s.size,
                    s.opener,
                    l.written,
                    why.join("; ")
                ));
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("\n"))
        }
    }

    fn record_error(&self, e: String) {
        self.inner.borrow_mut().errors.push(e);
    }
}

/// The byte at `offset` of transfer `index`'s stream: a keyed hash of the 8-byte word, so
/// any duplicated, skipped or misplaced run of bytes shows up.
pub fn pattern_byte(index: usize, offset: u64) -> u8 {
    word(index, offset / 8)[(offset % 8) as usize]
}

fn word(index: usize, w: u64) -> [u8; 8] {
    let mut z = (index as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(w)
        .wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).to_le_bytes()
}

/// Fills `buf` with the pattern from `offset` on.
pub fn fill_pattern(index: usize, offset: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let o = offset + i as u64;
        let w = word(index, o / 8);
        let start = (o % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&w[start..start + n]);
        i += n;
    }
}

/// One end of the transfers of a [`TransferBook`]: the dialer connects to the named host,
/// the acceptor waits; each opens the transfers planned for its side.
pub struct Transfers {
    book: TransferBook,
    role: Opener,
    target: Option<String>,
    session: Option<SessionId>,
    /// Streams this end sends on, by stream, with the transfer index.
    sending: BTreeMap<StreamId, usize>,
    /// Streams this end receives on.
    receiving: BTreeMap<StreamId, usize>,
    /// Transfers due to open (waiting for the session or stream credit).
    to_open: VecDeque<usize>,
    /// Paced transfers: bytes allowed so far.
    allowance: BTreeMap<usize, u64>,
    /// Send a PING on the session this often.
    ping_every: Option<Duration>,
    buf: Vec<u8>,
    expect: Vec<u8>,
}

impl fmt::Debug for Transfers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transfers")
            .field("role", &self.role)
            .field("target", &self.target)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Transfers {
    /// The end that dials `target` (a host name) with Noise IK.
    pub fn dialer(book: &TransferBook, target: &str) -> Self {
        Self::new(book, Opener::Dialer, Some(target.to_owned()))
    }

    /// The end that accepts the session.
    pub fn acceptor(book: &TransferBook) -> Self {
        Self::new(book, Opener::Acceptor, None)
    }

    fn new(book: &TransferBook, role: Opener, target: Option<String>) -> Self {
        Self {
            book: book.clone(),
            role,
            target,
            session: None,
            sending: BTreeMap::new(),
            receiving: BTreeMap::new(),
            to_open: VecDeque::new(),
            allowance: BTreeMap::new(),
            ping_every: None,
            buf: vec![0; CHUNK],
            expect: vec![0; CHUNK],
        }
    }

    /// Also pings the peer every `every` once the session is up (answers show up as
    /// `Event::Pong` in the host's events).
    pub fn pinging(mut self, every: Duration) -> Self {
        self.ping_every = Some(every);
        self
    }

    fn open_due(&mut self, cx: &mut AppCx<'_>) {
        let Some(session) = self.session else { return };
        while let Some(&i) = self.to_open.front() {
            let (port, priority, paced, record) = {
                let b = self.book.inner.borrow();
                let s = &b.specs[i];
                (b.base_port + i as u16, s.priority, s.paced, s.record)
            };
            let id = match cx.node.open_stream(session, port) {
                Ok(id) => id,
                Err(OpenStreamError::Blocked) => return, // StreamsAvailable will follow
                Err(e) => {
                    self.book
                        .record_error(format!("transfer {i}: open failed: {e}"));
                    self.to_open.pop_front();
                    continue;
                }
            };
            self.to_open.pop_front();
            if priority != 0
                && let Some(mut s) = cx.node.stream(id)
            {
                let _ = s.set_priority(priority);
            }
            {
                let mut b = self.book.inner.borrow_mut();
                let l = &mut b.logs[i];
                l.stream = Some(id);
                l.opened_at = Some(cx.elapsed());
                if record {
                    l.writes.push((cx.elapsed(), 0));
                }
            }
            self.sending.insert(id, i);
            if let Some((bytes, every)) = paced {
                self.allowance.insert(i, bytes);
                cx.set_timer(every, PACE_TAG + i as u64);
            }
            self.write(cx, id);
        }
    }

    /// Writes as much as the stream takes (up to the pacing allowance); finishes right after
    /// the last byte.
    fn write(&mut self, cx: &mut AppCx<'_>, id: StreamId) {
        let Some(&i) = self.sending.get(&id) else {
            return;
        };
        let (size, record) = {
            let b = self.book.inner.borrow();
            (b.specs[i].size, b.specs[i].record)
        };
        let limit = self.allowance.get(&i).map_or(size, |&a| a.min(size));
        let now = cx.elapsed();
        let Some(mut s) = cx.node.stream(id) else {
            return;
        };
        let mut b = self.book.inner.borrow_mut();
        let l = &mut b.logs[i];
        if l.write_done_at.is_some() {
            return;
        }
        while l.written < limit {
            let n = ((limit - l.written) as usize).min(self.buf.len());
            fill_pattern(i, l.written, &mut self.buf[..n]);
            match s.write(&self.buf[..n]) {
                Ok(k) => {
                    l.written += k as u64;
                    if record {
                        l.writes.push((now, l.written));
                    }
                    if k < n {
                        break;
                    }
                }
                Err(WriteError::Blocked) => {
                    l.blocked_writes += 1;
                    if record {
                        l.blocked_at.push(now);
                    }
                    break;
                }
                Err(e) => {
                    l.errors.push(format!("write failed at {}: {e}", l.written));
                    return;
                }
            }
        }
        if l.written == size {
            match s.finish() {
                Ok(()) => l.write_done_at = Some(now),
                Err(e) => l.errors.push(format!("finish failed: {e}")),
            }
        }
    }

    /// Reads everything available, checking it against the pattern.
    fn read(&mut self, cx: &mut AppCx<'_>, id: StreamId) {
        let now = cx.elapsed();
        if let Some(&i) = self.receiving.get(&id) {
            let stalled = self.book.inner.borrow().specs[i]
                .stall_reader_until
                .is_some_and(|t| now < t);
            if stalled {
                return;
            }
            let Some(mut s) = cx.node.stream(id) else {
                return;
            };
            let mut b = self.book.inner.borrow_mut();
            let BookInner { specs, logs, .. } = &mut *b;
            let (size, record) = (specs[i].size, specs[i].record);
            let l = &mut logs[i];
            loop {
                match s.read(&mut self.buf) {
                    Ok(Some(n)) => {
                        let data = &self.buf[..n];
                        let expect = &mut self.expect[..n];
                        fill_pattern(i, l.read, expect);
                        if let Some(k) = (0..n).find(|&k| data[k] != expect[k]) {
                            l.errors.push(format!("byte {} differs", l.read + k as u64));
                            let _ = s.stop(1);
                            return;
                        }
                        if l.fin_at.is_some() {
                            l.errors.push("data after the end".into());
                        }
                        l.read += n as u64;
                        if l.read > size {
                            l.errors
                                .push(format!("{} bytes, more than the {size} sent", l.read));
                        }
                        if record {
                            l.reads.push((now, l.read));
                        }
                    }
                    Ok(None) => {
                        if l.read != size {
                            l.errors
                                .push(format!("end of stream after {} of {size} bytes", l.read));
                        }
                        if l.fin_at.is_none() {
                            l.fin_at = Some(now);
                        }
                        return;
                    }
                    Err(ReadError::Blocked) => return,
                    Err(e) => {
                        if l.fin_at.is_none() {
                            l.errors.push(format!("read failed at {}: {e}", l.read));
                        }
                        return;
                    }
                }
            }
        }
        if self.sending.contains_key(&id) {
            // The receiver never writes: read our receiving half to its end so it closes.
            let Some(mut s) = cx.node.stream(id) else {
                return;
            };
            while let Ok(Some(_)) = s.read(&mut self.buf) {}
        }
    }
}

impl App for Transfers {
    fn start(&mut self, cx: &mut AppCx<'_>) {
        let (n, base, starts): (usize, u16, Vec<(usize, Duration)>) = {
            let b = self.book.inner.borrow();
            let me = cx.host();
            let starts = b
                .specs
                .iter()
                .enumerate()
                .filter(|(_, s)| s.opener == self.role)
                .filter(|(_, s)| {
                    s.host
                        .as_deref()
                        .is_none_or(|h| cx.lookup(h).is_some_and(|p| p.host == me))
                })
                .map(|(i, s)| (i, s.start))
                .collect();
            (b.specs.len(), b.base_port, starts)
        };
        for i in 0..n {
            // Both ends listen on every port: either may open any transfer.
            let _ = cx.node.listen(base + i as u16);
        }
        for (i, at) in starts {
            cx.set_timer(at.saturating_sub(cx.elapsed()), i as u64);
        }
        if let Some(target) = self.target.clone() {
            let t = cx
                .lookup(&target)
                .unwrap_or_else(|| panic!("Transfers: no host named {target:?}"));
            let now = cx.now();
            cx.node
                .connect(now, t.addr, t.peer_id)
                .expect("Transfers: connect failed");
        }
    }

    fn on_event(&mut self, cx: &mut AppCx<'_>, event: &Event) {
        match *event {
            Event::SessionEstablished { session, .. } if self.session.is_none() => {
                self.session = Some(session);
                if let Some(every) = self.ping_every {
                    cx.set_timer(every, PING_TAG);
                }
                self.open_due(cx);
            }
            Event::SessionClosed {
                session, reason, ..
            } if Some(session) == self.session => {
                self.book
                    .record_error(format!("{:?} end: session closed: {reason:?}", self.role));
            }
            Event::StreamOpened { stream, port } => {
                let (base, n) = {
                    let b = self.book.inner.borrow();
                    (b.base_port, b.specs.len())
                };
                let i = usize::from(port.wrapping_sub(base));
                if i >= n {
                    return;
                }
                {
                    let mut b = self.book.inner.borrow_mut();
                    let l = &mut b.logs[i];
                    if l.peer_stream.is_some() {
                        l.errors.push("opened twice".into());
                    }
                    l.peer_stream = Some(stream);
                    l.accepted_at = Some(cx.elapsed());
                }
                self.receiving.insert(stream, i);
                let stall = self.book.inner.borrow().specs[i].stall_reader_until;
                if let Some(until) = stall
                    && until != Duration::MAX
                {
                    cx.set_timer(until.saturating_sub(cx.elapsed()), RESUME_TAG + i as u64);
                }
                // Nothing to say back: close our sending half at once.
                if let Some(mut s) = cx.node.stream(stream) {
                    let _ = s.finish();
                }
                self.read(cx, stream);
            }
            Event::StreamReadable { stream } => self.read(cx, stream),
            Event::StreamWritable { stream } => self.write(cx, stream),
            Event::StreamsAvailable { .. } => self.open_due(cx),
            Event::StreamFinished { stream } => {
                if let Some(&i) = self.sending.get(&stream) {
                    self.book.inner.borrow_mut().logs[i].acked_at = Some(cx.elapsed());
                }
            }
            Event::StreamReset { stream, code } | Event::StreamStopped { stream, code } => {
                let i = self.sending.get(&stream).or(self.receiving.get(&stream));
                if let Some(&i) = i {
                    self.book.inner.borrow_mut().logs[i]
                        .errors
                        .push(format!("{event:?} (code {code})"));
                }
            }
            Event::StreamRefused { stream, .. } => {
                if let Some(&i) = self.sending.get(&stream) {
                    self.book.inner.borrow_mut().logs[i]
                        .errors
                        .push("refused".into());
                }
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, cx: &mut AppCx<'_>, tag: u64) {
        if tag == PING_TAG {
            if let (Some(s), Some(every)) = (self.session, self.ping_every) {
                let now = cx.now();
                if cx.node.ping(now, s).is_ok() {
                    cx.set_timer(every, PING_TAG);
                }
            }
            return;
        }
        if tag >= RESUME_TAG {
            let i = (tag - RESUME_TAG) as usize;
            let id = self.book.inner.borrow().logs[i].peer_stream;
            if let Some(id) = id {
                self.read(cx, id);
            }
            return;
        }
        if tag >= PACE_TAG {
            let i = (tag - PACE_TAG) as usize;
            let (size, paced) = {
                let b = self.book.inner.borrow();
                (b.specs[i].size, b.specs[i].paced)
            };
            let Some((bytes, every)) = paced else { return };
            let a = self.allowance.entry(i).or_insert(0);
            *a = (*a + bytes).min(size);
            if *a < size {
                cx.set_timer(every, tag);
            }
            let id = self.book.inner.borrow().logs[i].stream;
            if let Some(id) = id {
                self.write(cx, id);
            }
            return;
        }
        self.to_open.push_back(tag as usize);
        self.open_due(cx);
    }
}
