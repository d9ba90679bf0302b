//! Reliable, ordered, bidirectional streams multiplexed over one session, each opened to a
//! 16-bit virtual port on the peer; no head-of-line blocking between streams.
//!
//! [`StreamSet`] owns every stream of one session: id allocation, open/accept, per-stream and
//! per-session flow control, stream-count limits, priorities with fair round-robin among
//! equal priorities, and the frames that carry all of it. It is pure state: the session feeds
//! it decoded frames (`on_*`), asks it for frames to send (`write_control_frame`,
//! `write_stream_frame`), and reports what became of each sent frame
//! ([`StreamSet::on_frame_acked`], [`StreamSet::on_frame_lost`]) from loss recovery.
//!
//! **Ids.** A stream's wire id is `number << 1 | dir`, where `dir` is 0 for streams opened by
//! the session's initiator and 1 for the responder's. Wire ids are never reused in a session.
//! The application uses [`StreamId`] handles: slot index plus generation plus session, so a
//! stale handle is an error, never another stream.
//!
//! **Opening and ports.** `open(port)` queues an opening frame (a STREAM frame at offset 0,
//! the only form that carries the port), so the peer learns of the stream and its port
//! without waiting for data. A stream the peer opens is announced ([`StreamEvent::Opened`]
//! and [`StreamSet::accept`]) once its offset-0 frame has arrived; if several lower-numbered
//! peer streams are skipped, they are opened implicitly (as in QUIC), so a late frame for a
//! closed stream is recognised and ignored instead of reopening it. [`ECHO_PORT`] is the
//! well-known echo service.
//!
//! **Limits and drop policies (peer-fed state).**
//! * Streams: the peer may have at most [`TransportConfig::max_streams`] open; a frame for a
//!   higher number is a protocol violation ([`InputError::StreamLimit`]). Each fully closed
//!   peer stream grants one more (MAX_STREAMS).
//! * Bytes: per stream at most the stream window beyond what was read, per session at most
//!   the session window; more is a protocol violation ([`InputError::FlowControl`]).
//! * Fragments: at most [`TransportConfig::max_recv_ranges`] per stream; a frame needing more
//!   is refused ([`InputError::TooManyRanges`]): drop the packet without acknowledging it.
//! * Events are de-duplicated per stream (at most one pending of each kind), so the event
//!   queue is bounded by a small multiple of the number of streams.
//!
//! **Initial limits.** Both sides start from the same [`InitialLimits`] for each other (the
//! protocol defaults unless the handshake says otherwise) and raise them with MAX_DATA,
//! MAX_STREAM_DATA and MAX_STREAMS as soon as their configured windows are larger; credit is
//! absolute, so lost or reordered credit frames are harmless.

pub mod flow;
pub mod recv;
mod ring;
pub mod send;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use flow::{RecvWindow, SendCredit};
pub use recv::ReadError;
use recv::{RecvError, RecvStream};
use send::SendStream;
pub use send::WriteError;

use crate::ids::SessionId;
pub use crate::recovery::config::TransportConfig;
use crate::wire::codec::Writer;
use crate::wire::frame::{self, Frame};
use crate::wire::varint;

/// The well-known echo port: a node answers every byte written to a stream on this port
/// with the same byte (see [`StreamSet::echo`]); on by default, can be switched off.
pub const ECHO_PORT: u16 = 7;

/// Per-stream credit both sides assume before any MAX_STREAM_DATA (64 KiB).
pub const INITIAL_MAX_STREAM_DATA: u64 = 64 << 10;
/// Session credit both sides assume before any MAX_DATA (256 KiB).
pub const INITIAL_MAX_DATA: u64 = 256 << 10;
/// Streams each side may open before any MAX_STREAMS (16).
pub const INITIAL_MAX_STREAMS: u64 = 16;

/// Largest control frame [`StreamSet::write_control_frame`] writes (type + three varints).
pub const MAX_CONTROL_FRAME: usize = 1 + 3 * 8;

/// Limits each side assumes the other grants before any credit frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitialLimits {
    /// Bytes per stream.
    pub max_stream_data: u64,
    /// Bytes per session.
    pub max_data: u64,
    /// Streams.
    pub max_streams: u64,
}

impl Default for InitialLimits {
    fn default() -> Self {
        Self {
            max_stream_data: INITIAL_MAX_STREAM_DATA,
            max_data: INITIAL_MAX_DATA,
            max_streams: INITIAL_MAX_STREAMS,
        }
    }
}

/// Handle to a stream: session, slot and generation. Copy it freely; once the stream is
/// gone every command with it fails with `UnknownStream`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    session: SessionId,
    index: u32,
    generation: u32,
}

impl StreamId {
    /// The session the stream belongs to.
    pub fn session(self) -> SessionId {
        self.session
    }

    /// Slot index (not unique over time).
    pub fn index(self) -> u32 {
        self.index
    }

    /// Generation of the slot when the stream was created.
    pub fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{}.{}", self.session, self.index, self.generation)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Something the application should know about a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// The peer opened a stream to `port` (also queued for [`StreamSet::accept`]).
    Opened {
        /// The new stream.
        stream: StreamId,
        /// The virtual port it was opened to.
        port: u16,
    },
    /// Data (or the end, or a reset) can be read.
    Readable {
        /// The stream.
        stream: StreamId,
    },
    /// `write` can take data again after it returned `Blocked`.
    Writable {
        /// The stream.
        stream: StreamId,
    },
    /// Every byte written and the FIN were acknowledged by the peer.
    Finished {
        /// The stream.
        stream: StreamId,
    },
    /// The peer abandoned its sending half with this code.
    Reset {
        /// The stream.
        stream: StreamId,
        /// The peer's code.
        code: u64,
    },
    /// The peer asked us to stop sending; our sending half was reset with its code.
    Stopped {
        /// The stream.
        stream: StreamId,
        /// The peer's code.
        code: u64,
    },
    /// More streams may be opened (after `open` returned `Blocked`).
    Available,
}

/// `open` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The peer's stream limit is reached; wait for [`StreamEvent::Available`].
    #[error("peer's stream limit reached; wait for StreamsAvailable")]
    Blocked,
}

/// A command on an existing stream failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The handle is stale or was never valid.
    #[error("unknown or closed stream")]
    UnknownStream,
    /// That half of the stream is already closed (finished, reset or stopped).
    #[error("stream already closed in that direction")]
    Closed,
}

/// A frame from the peer was refused. All but [`InputError::TooManyRanges`] are protocol
/// violations: close the session ([`InputError::is_protocol_violation`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Data beyond a flow-control limit.
    #[error("flow control violated")]
    FlowControl,
    /// Data beyond the final size, or conflicting final sizes.
    #[error("final size violated")]
    FinalSize,
    /// A stream number above the limit we granted.
    #[error("stream limit exceeded")]
    StreamLimit,
    /// A frame for a stream of ours that we never opened.
    #[error("frame for a stream never opened")]
    StreamState,
    /// Too many out-of-order fragments on one stream: drop the packet unacknowledged.
    #[error("too many out-of-order fragments")]
    TooManyRanges,
}

impl InputError {
    /// Whether the session must close with a protocol error.
    pub fn is_protocol_violation(&self) -> bool {
        !matches!(self, Self::TooManyRanges)
    }
}

impl From<RecvError> for InputError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::FlowControl(_) => Self::FlowControl,
            RecvError::FinalSize => Self::FinalSize,
            RecvError::TooManyRanges => Self::TooManyRanges,
        }
    }
}

/// Record of one frame sent, for loss recovery (`Recovery<F>` stores it; hand it back to
/// [`StreamSet::on_frame_acked`] or [`StreamSet::on_frame_lost`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SentFrame {
    /// STREAM data.
    Stream {
        /// The stream.
        stream: StreamId,
        /// First byte.
        offset: u64,
        /// Byte count.
        len: u32,
        /// Carried the FIN.
        fin: bool,
    },
    /// RESET_STREAM.
    ResetStream {
        /// The stream.
        stream: StreamId,
    },
    /// STOP_SENDING.
    StopSending {
        /// The stream.
        stream: StreamId,
    },
    /// MAX_STREAM_DATA.
    MaxStreamData {
        /// The stream.
        stream: StreamId,
    },
    /// MAX_DATA.
    MaxData,
    /// MAX_STREAMS.
    MaxStreams,
    /// DATA_BLOCKED or STREAM_DATA_BLOCKED (not retransmitted).
    Blocked,
}

struct Stream {
    wire_id: u64,
    local: bool,
    port: Option<u16>,
    send: SendStream,
    recv: RecvStream,
    window: RecvWindow,
    priority: i8,
    /// In the send schedule.
    queued: bool,
    /// In the control queue.
    control_queued: bool,
    stop_sent: bool,
    max_stream_data_lost: bool,
    blocked_limit: Option<u64>,
    blocked_reported: Option<u64>,
    /// The application saw `Blocked` from write: report `Writable`.
    want_writable: bool,
    /// Report `Readable` when something becomes readable.
    want_readable: bool,
    announced: bool,
    finished_reported: bool,
}

impl Stream {
    fn control_wanted(&self) -> bool {
        self.send.reset_pending()
            || (self.recv.stop_wanted() && !self.stop_sent)
            || self.max_stream_data_wanted()
            || self.blocked_limit.is_some()
    }

    fn max_stream_data_wanted(&self) -> bool {
        self.recv.stopped().is_none()
            && !self.recv.all_received()
            && (self.window.update_wanted() || self.max_stream_data_lost)
    }
}

struct Slot {
    generation: u32,
    stream: Option<Stream>,
}

struct Level {
    priority: i8,
    queue: VecDeque<(u32, u32)>,
}

/// Every stream of one session (see the module docs).
pub struct StreamSet {
    session: SessionId,
    /// Direction bit of the streams this side opens.
    local_dir: u64,
    config: TransportConfig,
    initial: InitialLimits,
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_wire: BTreeMap<u64, u32>,
    /// The last `by_wire` hit, `(wire, index)`: a bulk transfer looks up the same stream for
    /// every frame. Cleared whenever `by_wire` changes.
    last_wire: Option<(u64, u32)>,
    next_local: u64,
    local_limit: u64,
    open_blocked: bool,
    remote_next: u64,
    /// Stream count granted to the peer (last MAX_STREAMS value written).
    remote_limit: u64,
    /// Peer streams allowed open at once.
    remote_concurrent: u64,
    /// Peer streams fully closed so far.
    remote_freed: u64,
    max_streams_pending: bool,
    send_credit: SendCredit,
    recv_window: RecvWindow,
    max_data_lost: bool,
    data_blocked: Option<u64>,
    levels: Vec<Level>,
    control: VecDeque<(u32, u32)>,
    events: VecDeque<StreamEvent>,
    incoming: VecDeque<StreamId>,
    /// Stream bytes sent for the first time.
    bytes_sent: u64,
    /// Stream bytes sent again after a loss.
    bytes_resent: u64,
}

impl fmt::Debug for StreamSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSet")
            .field("session", &self.session)
            .field("open", &self.by_wire.len())
            .field("next_local", &self.next_local)
            .field("remote_next", &self.remote_next)
            .finish_non_exhaustive()
    }
}

impl StreamSet {
    /// The streams of `session`. `initiator` says whether this side started the session (it
    /// decides the direction bit of stream ids). Both sides must use the same `initial`.
    pub fn new(
        session: SessionId,
        initiator: bool,
        config: &TransportConfig,
        initial: InitialLimits,
    ) -> Self {
        let remote_concurrent = config.max_streams.max(initial.max_streams);
        Self {
            session,
            local_dir: u64::from(!initiator),
            config: config.clone(),
            initial,
            slots: Vec::new(),
            free: Vec::new(),
            by_wire: BTreeMap::new(),
            last_wire: None,
            next_local: 0,
            local_limit: initial.max_streams,
            open_blocked: false,
            remote_next: 0,
            remote_limit: initial.max_streams,
            remote_concurrent,
            remote_freed: 0,
            max_streams_pending: remote_concurrent > initial.max_streams,
            send_credit: SendCredit::new(initial.max_data),
            recv_window: RecvWindow::with_initial(config.session_recv_window, initial.max_data),
            max_data_lost: false,
            data_blocked: None,
            levels: Vec::new(),
            control: VecDeque::new(),
            events: VecDeque::new(),
            incoming: VecDeque::new(),
            bytes_sent: 0,
            bytes_resent: 0,
        }
    }

    // ----- handles -----

    fn get(&self, id: StreamId) -> Option<&Stream> {
        if id.session != self.session {
            return None;
        }
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.stream.as_ref()
    }

    fn get_mut(&mut self, id: StreamId) -> Option<&mut Stream> {
        if id.session != self.session {
            return None;
        }
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.stream.as_mut()
    }

    fn handle(&self, index: u32) -> StreamId {
        StreamId {
            session: self.session,
            index,
            generation: self.slots[index as usize].generation,
        }
    }

    fn insert(&mut self, stream: Stream) -> StreamId {
        let wire = stream.wire_id;
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize].stream = Some(stream);
                i
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    stream: Some(stream),
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.by_wire.insert(wire, index);
        self.last_wire = None;
        self.handle(index)
    }

    fn new_stream(&self, wire_id: u64, local: bool, port: Option<u16>) -> Stream {
        Stream {
            wire_id,
            local,
            port,
            send: SendStream::new(
                self.config.stream_send_buffer,
                self.initial.max_stream_data,
                local,
            ),
            recv: RecvStream::new(self.config.max_recv_ranges),
            window: RecvWindow::with_initial(
                self.config.stream_recv_window,
                self.initial.max_stream_data,
            ),
            priority: 0,
            queued: false,
            control_queued: false,
            stop_sent: false,
            max_stream_data_lost: false,
            blocked_limit: None,
            blocked_reported: None,
            want_writable: false,
            want_readable: true,
            announced: local,
            finished_reported: false,
        }
    }

    /// The wire id of a stream.
    pub fn wire_id(&self, id: StreamId) -> Option<u64> {
        self.get(id).map(|s| s.wire_id)
    }

    /// The virtual port a stream was opened to (`None` for a stale handle).
    pub fn port(&self, id: StreamId) -> Option<u16> {
        self.get(id).and_then(|s| s.port)
    }

    /// Whether this side opened the stream.
    pub fn is_local(&self, id: StreamId) -> Option<bool> {
        self.get(id).map(|s| s.local)
    }

    /// Streams currently held (open in at least one direction).
    pub fn len(&self) -> usize {
        self.by_wire.len()
    }

    /// Whether no stream is held.
    pub fn is_empty(&self) -> bool {
        self.by_wire.is_empty()
    }

    // ----- application commands -----

    /// Opens a stream to `port` on the peer. The peer learns of it at once (an opening frame
    /// is queued).
    ///
    /// # Errors
    /// [`OpenError::Blocked`] when the peer's stream limit is reached; a
    /// [`StreamEvent::Available`] follows when it grants more.
    pub fn open(&mut self, port: u16) -> Result<StreamId, OpenError> {
        if self.next_local >= self.local_limit {
            self.open_blocked = true;
            return Err(OpenError::Blocked);
        }
        let wire = (self.next_local << 1) | self.local_dir;
        self.next_local += 1;
        let stream = self.new_stream(wire, true, Some(port));
        let id = self.insert(stream);
        self.schedule(id);
        if self.get(id).is_some_and(Stream::max_stream_data_wanted) {
            self.queue_control(id);
        }
        Ok(id)
    }

    /// The next stream the peer opened that the application has not taken yet, with its
    /// port.
    pub fn accept(&mut self) -> Option<(StreamId, u16)> {
        while let Some(id) = self.incoming.pop_front() {
            if let Some(port) = self.port(id) {
                return Some((id, port));
            }
        }
        None
    }

    /// Writes as much of `data` as the send buffer and the peer's stream credit allow. When
    /// it takes less than all of `data`, a [`StreamEvent::Writable`] follows once room
    /// appears (as after `Blocked`), so a writer may wait for the event after a short write.
    ///
    /// # Errors
    /// [`WriteError::Blocked`] ⇒ wait for [`StreamEvent::Writable`]; see [`WriteError`].
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, WriteError> {
        let cap = self.config.stream_send_buffer;
        let s = self.get_mut(id).ok_or(WriteError::UnknownStream)?;
        match s.send.write(data) {
            Ok(n) => {
                if n < data.len() {
                    s.want_writable = true;
                }
                if n > 0 {
                    self.schedule(id);
                }
                Ok(n)
            }
            Err(WriteError::Blocked) => {
                s.want_writable = true;
                if s.send.blocked_by_credit() || s.send.write_room() == 0 {
                    let limit = s.send.max_data();
                    if s.blocked_reported != Some(limit) && s.send.buffered() < cap {
                        s.blocked_limit = Some(limit);
                        s.blocked_reported = Some(limit);
                        self.queue_control(id);
                    }
                }
                Err(WriteError::Blocked)
            }
            Err(e) => Err(e),
        }
    }

    /// Bytes `write` would take now.
    pub fn write_room(&self, id: StreamId) -> Option<u64> {
        self.get(id).map(|s| s.send.write_room())
    }

    /// Ends the sending half after the bytes written (FIN).
    ///
    /// # Errors
    /// [`StreamError::UnknownStream`], or [`StreamError::Closed`] if already finished or
    /// reset.
    pub fn finish(&mut self, id: StreamId) -> Result<(), StreamError> {
        let s = self.get_mut(id).ok_or(StreamError::UnknownStream)?;
        s.send.finish().map_err(|_| StreamError::Closed)?;
        self.schedule(id);
        Ok(())
    }

    /// Abandons the sending half with `code` (RESET_STREAM); unsent and unacknowledged data
    /// is dropped.
    ///
    /// # Errors
    /// [`StreamError::UnknownStream`], or [`StreamError::Closed`] if already reset or fully
    /// acknowledged.
    pub fn reset(&mut self, id: StreamId, code: u64) -> Result<(), StreamError> {
        let s = self.get_mut(id).ok_or(StreamError::UnknownStream)?;
        if !s.send.reset(code) {
            return Err(StreamError::Closed);
        }
        self.queue_control(id);
        Ok(())
    }

    /// Reads in-order bytes: `Ok(Some(n))`, `Ok(None)` at the end of the stream.
    ///
    /// # Errors
    /// [`ReadError::Blocked`] ⇒ wait for [`StreamEvent::Readable`]; see [`ReadError`].
    pub fn read(&mut self, id: StreamId, buf: &mut [u8]) -> Result<Option<usize>, ReadError> {
        let s = self.get_mut(id).ok_or(ReadError::UnknownStream)?;
        let mut consumed = 0;
        let res = s.recv.read(buf, &mut consumed);
        if consumed > 0 {
            s.window.on_consumed(consumed);
            let want = s.max_stream_data_wanted();
            self.recv_window.on_consumed(consumed);
            if want {
                self.queue_control(id);
            }
        }
        match res {
            Err(ReadError::Blocked) => {
                if let Some(s) = self.get_mut(id) {
                    s.want_readable = true;
                }
            }
            Ok(None) | Err(ReadError::Reset(_)) => self.try_free(id),
            _ => {}
        }
        res
    }

    /// Bytes readable now, in order.
    pub fn readable_bytes(&self, id: StreamId) -> Option<u64> {
        self.get(id).map(|s| s.recv.readable_bytes())
    }

    /// Stops receiving with `code` (STOP_SENDING): buffered data is discarded and the peer
    /// asked to reset.
    ///
    /// # Errors
    /// [`StreamError::UnknownStream`], or [`StreamError::Closed`] if already stopped or the
    /// end was read.
    pub fn stop(&mut self, id: StreamId, code: u64) -> Result<(), StreamError> {
        let s = self.get_mut(id).ok_or(StreamError::UnknownStream)?;
        if s.recv.stopped().is_some() || s.recv.is_closed() {
            return Err(StreamError::Closed);
        }
        let released = s.recv.stop(code);
        s.window.on_consumed(released);
        s.want_readable = false;
        self.recv_window.on_consumed(released);
        self.queue_control(id);
        self.try_free(id);
        Ok(())
    }

    /// Sets the stream's priority: higher goes first; equal priorities share round-robin.
    ///
    /// # Errors
    /// [`StreamError::UnknownStream`].
    pub fn set_priority(&mut self, id: StreamId, priority: i8) -> Result<(), StreamError> {
        let s = self.get_mut(id).ok_or(StreamError::UnknownStream)?;
        if s.priority == priority {
            return Ok(());
        }
        let old = s.priority;
        s.priority = priority;
        if s.queued {
            if let Some(l) = self.levels.iter_mut().find(|l| l.priority == old) {
                l.queue
                    .retain(|&(i, g)| (i, g) != (id.index, id.generation));
            }
            if let Some(s) = self.get_mut(id) {
                s.queued = false;
            }
            self.schedule(id);
        }
        Ok(())
    }

    /// Refuses a stream the peer opened (e.g. no listener on its port): stops receiving and
    /// resets sending, both with `code`, and removes it from the accept queue.
    ///
    /// # Errors
    /// [`StreamError::UnknownStream`].
    pub fn refuse(&mut self, id: StreamId, code: u64) -> Result<(), StreamError> {
        if self.get(id).is_none() {
            return Err(StreamError::UnknownStream);
        }
        self.incoming.retain(|&i| i != id);
        let _ = self.stop(id, code);
        let _ = self.reset(id, code);
        Ok(())
    }

    /// Echo service step for a stream on [`ECHO_PORT`]: moves readable bytes back into the
    /// sending half as far as it has room (using `scratch`), and finishes once the peer
    /// finished and everything was echoed. Returns bytes echoed.
    ///
    /// # Errors
    /// [`StreamError::UnknownStream`].
    pub fn echo(&mut self, id: StreamId, scratch: &mut [u8]) -> Result<usize, StreamError> {
        let mut total = 0;
        loop {
            let room = self.write_room(id).ok_or(StreamError::UnknownStream)?;
            let n = (room.min(scratch.len() as u64)) as usize;
            if n == 0 && self.readable_bytes(id) != Some(0) {
                break;
            }
            match self.read(id, &mut scratch[..n]) {
                Ok(Some(0)) | Err(_) => break,
                Ok(Some(k)) => {
                    let w = self.write(id, &scratch[..k]).unwrap_or(0);
                    debug_assert_eq!(w, k);
                    total += k;
                }
                Ok(None) => {
                    let _ = self.finish(id);
                    break;
                }
            }
        }
        Ok(total)
    }

    // ----- events -----

    /// The next stream event.
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    // ----- input from the peer -----

    /// `by_wire[wire]` through the one-entry cache.
    fn by_wire_get(&mut self, wire: u64) -> Option<u32> {
        if let Some((w, index)) = self.last_wire
            && w == wire
        {
            return Some(index);
        }
        let found = self.by_wire.get(&wire).copied();
        if let Some(index) = found {
            self.last_wire = Some((wire, index));
        }
        found
    }

    /// Finds the stream for a wire id, opening peer streams (and skipped lower ones) as
    /// needed. `Ok(None)`: the stream existed and is closed (ignore the frame).
    fn lookup(&mut self, wire: u64) -> Result<Option<u32>, InputError> {
        let number = wire >> 1;
        if wire & 1 == self.local_dir {
            if number >= self.next_local {
                return Err(InputError::StreamState);
            }
            return Ok(self.by_wire_get(wire));
        }
        if number >= self.remote_limit {
            return Err(InputError::StreamLimit);
        }
        if number < self.remote_next {
            return Ok(self.by_wire_get(wire));
        }
        let remote_dir = self.local_dir ^ 1;
        while self.remote_next <= number {
            let w = (self.remote_next << 1) | remote_dir;
            self.remote_next += 1;
            let s = self.new_stream(w, false, None);
            let id = self.insert(s);
            // Tell the peer our real window for it at once if larger than the initial.
            if self.get(id).is_some_and(Stream::max_stream_data_wanted) {
                self.queue_control(id);
            }
        }
        Ok(self.by_wire_get(wire))
    }

    /// A STREAM frame arrived.
    ///
    /// # Errors
    /// See [`InputError`]; on error nothing changed.
    pub fn on_stream_frame(
        &mut self,
        wire: u64,
        port: Option<u16>,
        offset: u64,
        data: &[u8],
        fin: bool,
    ) -> Result<(), InputError> {
        let Some(index) = self.lookup(wire)? else {
            return Ok(());
        };
        let id = self.handle(index);
        let credit = self.recv_window.credit();
        let Some(s) = self.get_mut(id) else {
            return Ok(());
        };
        let ing = s
            .recv
            .ingest(offset, data, fin, s.window.advertised(), credit)?;
        s.window.on_received(s.recv.highest());
        let mut announce = None;
        if let Some(p) = port
            && s.port.is_none()
        {
            s.port = Some(p);
            if !s.announced {
                s.announced = true;
                announce = Some(p);
            }
        }
        let readable = s.announced && s.want_readable && s.recv.is_readable();
        if readable {
            s.want_readable = false;
        }
        if ing.released > 0 {
            s.window.on_consumed(ing.released);
        }
        let control = s.control_wanted();
        // `try_free`'s own condition, checked here to skip its slot lookup per frame.
        let may_free = s.send.is_done() && s.recv.is_closed();
        self.account_received(ing);
        if let Some(port) = announce {
            self.incoming.push_back(id);
            self.events
                .push_back(StreamEvent::Opened { stream: id, port });
        }
        if readable {
            self.events.push_back(StreamEvent::Readable { stream: id });
        }
        if control {
            self.queue_control(id);
        }
        if may_free {
            self.try_free(id);
        }
        Ok(())
    }

    fn account_received(&mut self, ing: recv::Ingest) {
        let total = self.recv_window.received().saturating_add(ing.new_bytes);
        self.recv_window.on_received(total);
        self.recv_window.on_consumed(ing.released);
    }

    /// A RESET_STREAM arrived.
    ///
    /// # Errors
    /// See [`InputError`]; on error nothing changed.
    pub fn on_reset_stream(
        &mut self,
        wire: u64,
        code: u64,
        final_size: u64,
    ) -> Result<(), InputError> {
        let Some(index) = self.lookup(wire)? else {
            return Ok(());
        };
        let id = self.handle(index);
        let credit = self.recv_window.credit();
        let Some(s) = self.get_mut(id) else {
            return Ok(());
        };
        let before = s.recv.state();
        let ing = s
            .recv
            .on_reset(code, final_size, s.window.advertised(), credit)?;
        s.window.on_received(s.recv.highest());
        s.window.on_consumed(ing.released);
        let changed = s.recv.state() != before;
        let announced = s.announced;
        if changed && !announced {
            // Never shown to the application: close it quietly, resetting our half too so
            // the peer can free its side.
            let mut c = 0;
            let _ = s.recv.read(&mut [], &mut c);
            s.send.reset(0);
        }
        let readable = changed && announced && s.recv.is_readable();
        self.account_received(ing);
        if changed && !announced {
            self.queue_control(id);
        }
        if readable {
            self.events
                .push_back(StreamEvent::Reset { stream: id, code });
            if let Some(s) = self.get_mut(id)
                && s.want_readable
            {
                s.want_readable = false;
                self.events.push_back(StreamEvent::Readable { stream: id });
            }
        }
        self.try_free(id);
        Ok(())
    }

    /// A STOP_SENDING arrived: our sending half is reset with the peer's code.
    ///
    /// # Errors
    /// See [`InputError`].
    pub fn on_stop_sending(&mut self, wire: u64, code: u64) -> Result<(), InputError> {
        let Some(index) = self.lookup(wire)? else {
            return Ok(());
        };
        let id = self.handle(index);
        let Some(s) = self.get_mut(id) else {
            return Ok(());
        };
        if s.send.on_stop_sending(code) {
            let announced = s.announced;
            self.queue_control(id);
            if announced {
                self.events
                    .push_back(StreamEvent::Stopped { stream: id, code });
            }
        }
        Ok(())
    }

    /// A MAX_STREAM_DATA arrived.
    ///
    /// # Errors
    /// See [`InputError`].
    pub fn on_max_stream_data(&mut self, wire: u64, max: u64) -> Result<(), InputError> {
        let Some(index) = self.lookup(wire)? else {
            return Ok(());
        };
        let id = self.handle(index);
        let Some(s) = self.get_mut(id) else {
            return Ok(());
        };
        s.send.on_max_data(max);
        let writable = s.want_writable && s.send.write_room() > 0;
        if writable {
            s.want_writable = false;
            self.events.push_back(StreamEvent::Writable { stream: id });
        }
        self.schedule(id);
        Ok(())
    }

    /// A MAX_DATA arrived.
    pub fn on_max_data(&mut self, max: u64) {
        if self.send_credit.on_max(max) {
            // Streams parked on session credit go back into the schedule.
            for i in 0..self.slots.len() {
                if self.slots[i]
                    .stream
                    .as_ref()
                    .is_some_and(|s| !s.queued && s.send.has_data_to_send())
                {
                    let id = self.handle(i as u32);
                    self.schedule(id);
                }
            }
        }
    }

    /// A MAX_STREAMS arrived.
    pub fn on_max_streams(&mut self, max: u64) {
        if max > self.local_limit {
            self.local_limit = max;
            if self.open_blocked {
                self.open_blocked = false;
                self.events.push_back(StreamEvent::Available);
            }
        }
    }

    // ----- output -----

    fn schedule(&mut self, id: StreamId) {
        let Some(s) = self.get_mut(id) else {
            return;
        };
        if s.queued || !s.send.has_data_to_send() {
            return;
        }
        s.queued = true;
        let p = s.priority;
        let pos = self.levels.partition_point(|l| l.priority > p);
        if self.levels.get(pos).is_none_or(|l| l.priority != p) {
            self.levels.insert(
                pos,
                Level {
                    priority: p,
                    queue: VecDeque::new(),
                },
            );
        }
        self.levels[pos].queue.push_back((id.index, id.generation));
    }

    fn queue_control(&mut self, id: StreamId) {
        if let Some(s) = self.get_mut(id)
            && !s.control_queued
        {
            s.control_queued = true;
            self.control.push_back((id.index, id.generation));
        }
    }

    /// Whether anything waits to be sent (control or stream frames).
    pub fn has_pending_output(&self) -> bool {
        !self.control.is_empty()
            || self.max_streams_pending
            || self.max_data_lost
            || self.recv_window.update_wanted()
            || self.data_blocked.is_some()
            || self.levels.iter().any(|l| !l.queue.is_empty())
    }

    /// Writes one control frame (credit, RESET_STREAM, STOP_SENDING, BLOCKED) into `w` if
    /// one is pending and `w` has room for [`MAX_CONTROL_FRAME`] bytes. Call until `None`.
    pub fn write_control_frame(&mut self, w: &mut Writer<'_>) -> Option<SentFrame> {
        if w.remaining() < MAX_CONTROL_FRAME {
            return None;
        }
        if self.recv_window.update_wanted() || self.max_data_lost {
            self.max_data_lost = false;
            let max = self
                .recv_window
                .take_update()
                .unwrap_or(self.recv_window.advertised());
            (Frame::MaxData { max }).encode(w).ok()?;
            return Some(SentFrame::MaxData);
        }
        if self.max_streams_pending {
            self.max_streams_pending = false;
            let target = self.remote_concurrent.saturating_add(self.remote_freed);
            self.remote_limit = self.remote_limit.max(target);
            (Frame::MaxStreams {
                max: self.remote_limit,
            })
            .encode(w)
            .ok()?;
            return Some(SentFrame::MaxStreams);
        }
        if let Some(limit) = self.data_blocked.take() {
            (Frame::DataBlocked { limit }).encode(w).ok()?;
            return Some(SentFrame::Blocked);
        }
        while let Some(&(index, generation)) = self.control.front() {
            let id = StreamId {
                session: self.session,
                index,
                generation,
            };
            let Some(s) = self.get_mut(id) else {
                self.control.pop_front();
                continue;
            };
            let wire = s.wire_id;
            let out = if let Some((code, final_size)) = s.send.take_reset() {
                Some((
                    Frame::ResetStream {
                        stream: wire,
                        code,
                        final_size,
                    },
                    SentFrame::ResetStream { stream: id },
                ))
            } else if s.recv.stop_wanted() && !s.stop_sent {
                s.stop_sent = true;
                let code = s.recv.stopped().unwrap_or(0);
                Some((
                    Frame::StopSending { stream: wire, code },
                    SentFrame::StopSending { stream: id },
                ))
            } else if s.max_stream_data_wanted() {
                s.max_stream_data_lost = false;
                let max = s.window.take_update().unwrap_or(s.window.advertised());
                Some((
                    Frame::MaxStreamData { stream: wire, max },
                    SentFrame::MaxStreamData { stream: id },
                ))
            } else {
                s.blocked_limit.take().map(|limit| {
                    (
                        Frame::StreamDataBlocked {
                            stream: wire,
                            limit,
                        },
                        SentFrame::Blocked,
                    )
                })
            };
            if !s.control_wanted() {
                s.control_queued = false;
                self.control.pop_front();
            }
            if let Some((f, sent)) = out {
                f.encode(w).ok()?;
                return Some(sent);
            }
        }
        None
    }

    /// Writes one STREAM frame into `w`, from the highest-priority stream with something to
    /// send (round-robin among equal priorities), as large as the room allows. Returns its
    /// record, or `None` when nothing fits or nothing is sendable.
    pub fn write_stream_frame(&mut self, w: &mut Writer<'_>) -> Option<SentFrame> {
        let room = w.remaining();
        // The smallest STREAM frame header (type, stream id, offset of at least two bytes,
        // length) takes 5 bytes and the loop below writes nothing into `room <= header`:
        // a packet just filled by the previous frame ends here without walking the queues.
        if room <= 5 {
            return None;
        }
        for li in 0..self.levels.len() {
            let mut tries = self.levels[li].queue.len();
            while tries > 0 {
                tries -= 1;
                let Some(&(index, generation)) = self.levels[li].queue.front() else {
                    break;
                };
                let id = StreamId {
                    session: self.session,
                    index,
                    generation,
                };
                let credit = self.send_credit.available();
                let Some(s) = self.get_mut(id) else {
                    self.levels[li].queue.pop_front();
                    continue;
                };
                if !s.send.has_data_to_send() {
                    s.queued = false;
                    self.levels[li].queue.pop_front();
                    continue;
                }
                let v = |x: u64| varint::size(x).unwrap_or(8);
                let header = 1 + v(s.wire_id) + v(s.send.sent_offset()).max(2) + v(room as u64);
                if room <= header {
                    return None;
                }
                let Some(chunk) = s.send.next_chunk(room - header, credit) else {
                    // Blocked by credit: park it until credit arrives.
                    s.queued = false;
                    let stream_blocked = s.send.blocked_by_credit();
                    let limit = s.send.max_data();
                    if stream_blocked && s.blocked_reported != Some(limit) {
                        s.blocked_limit = Some(limit);
                        s.blocked_reported = Some(limit);
                    }
                    let control = s.control_wanted();
                    self.levels[li].queue.pop_front();
                    if control {
                        self.queue_control(id);
                    }
                    if credit == 0
                        && let Some(limit) = self.send_credit.take_blocked()
                    {
                        self.data_blocked = Some(limit);
                    }
                    continue;
                };
                let data = s.send.data(chunk.offset, chunk.len);
                let port = s.port.unwrap_or(0);
                if frame::write_stream(w, s.wire_id, port, chunk.offset, data, chunk.fin, true)
                    .is_err()
                {
                    // Cannot happen (room was computed); treat the chunk as lost.
                    s.send.on_lost(chunk.offset, chunk.len, chunk.fin);
                    return None;
                }
                let more = s.send.has_data_to_send();
                let writable = s.want_writable && s.send.write_room() > 0;
                if writable {
                    s.want_writable = false;
                }
                if !more {
                    s.queued = false;
                }
                self.send_credit.consume(chunk.new_bytes);
                self.bytes_sent += chunk.new_bytes;
                self.bytes_resent += chunk.len as u64 - chunk.new_bytes;
                let q = &mut self.levels[li].queue;
                q.pop_front();
                if more {
                    q.push_back((index, generation));
                }
                if writable {
                    self.events.push_back(StreamEvent::Writable { stream: id });
                }
                return Some(SentFrame::Stream {
                    stream: id,
                    offset: chunk.offset,
                    len: chunk.len as u32,
                    fin: chunk.fin,
                });
            }
        }
        None
    }

    // ----- fate of sent frames -----

    /// A frame recorded by [`StreamSet::write_stream_frame`] or
    /// [`StreamSet::write_control_frame`] was acknowledged.
    pub fn on_frame_acked(&mut self, f: SentFrame) {
        match f {
            SentFrame::Stream {
                stream,
                offset,
                len,
                fin,
            } => {
                let Some(s) = self.get_mut(stream) else {
                    return;
                };
                let done = s.send.on_ack(offset, len as usize, fin);
                let writable = s.want_writable && s.send.write_room() > 0;
                if writable {
                    s.want_writable = false;
                }
                let finished = done && !s.finished_reported && !s.send.is_reset();
                if finished {
                    s.finished_reported = true;
                }
                // Only a finished send half can free the stream (see `try_free`).
                let may_free = s.send.is_done();
                if writable {
                    self.events.push_back(StreamEvent::Writable { stream });
                }
                if finished {
                    self.events.push_back(StreamEvent::Finished { stream });
                }
                if may_free {
                    self.try_free(stream);
                }
            }
            SentFrame::ResetStream { stream } => {
                if let Some(s) = self.get_mut(stream) {
                    s.send.on_reset_acked();
                    self.try_free(stream);
                }
            }
            _ => {}
        }
    }

    /// A recorded frame was declared lost: whatever is still needed is queued again.
    pub fn on_frame_lost(&mut self, f: SentFrame) {
        match f {
            SentFrame::Stream {
                stream,
                offset,
                len,
                fin,
            } => {
                if let Some(s) = self.get_mut(stream) {
                    s.send.on_lost(offset, len as usize, fin);
                    self.schedule(stream);
                }
            }
            SentFrame::ResetStream { stream } => {
                if let Some(s) = self.get_mut(stream) {
                    s.send.on_reset_lost();
                    self.queue_control(stream);
                }
            }
            SentFrame::StopSending { stream } => {
                if let Some(s) = self.get_mut(stream) {
                    s.stop_sent = false;
                    if s.recv.stop_wanted() {
                        self.queue_control(stream);
                    }
                }
            }
            SentFrame::MaxStreamData { stream } => {
                if let Some(s) = self.get_mut(stream) {
                    s.max_stream_data_lost = true;
                    if s.max_stream_data_wanted() {
                        self.queue_control(stream);
                    }
                }
            }
            SentFrame::MaxData => self.max_data_lost = true,
            SentFrame::MaxStreams => self.max_streams_pending = true,
            SentFrame::Blocked => {}
        }
    }

    /// Frees a stream whose both halves are finished; a peer stream's slot is returned to
    /// the peer as stream credit.
    fn try_free(&mut self, id: StreamId) {
        let Some(s) = self.get(id) else {
            return;
        };
        if !(s.send.is_done() && s.recv.is_closed()) {
            return;
        }
        let (wire, local) = (s.wire_id, s.local);
        self.by_wire.remove(&wire);
        self.last_wire = None;
        let slot = &mut self.slots[id.index as usize];
        slot.stream = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        if !local {
            self.remote_freed += 1;
            self.max_streams_pending = true;
        }
    }

    // ----- introspection (tests, stats) -----

    /// Session receive window state.
    pub fn session_recv_window(&self) -> &RecvWindow {
        &self.recv_window
    }

    /// Session send credit.
    pub fn session_send_credit(&self) -> &SendCredit {
        &self.send_credit
    }

    /// Stream data bytes sent so far: `(first transmissions, retransmissions)`.
    pub fn bytes_sent(&self) -> (u64, u64) {
        (self.bytes_sent, self.bytes_resent)
    }

    /// Total bytes buffered for sending and receiving over all streams (for memory checks).
    pub fn buffered_bytes(&self) -> (u64, u64) {
        self.slots
            .iter()
            .filter_map(|s| s.stream.as_ref())
            .fold((0, 0), |(a, b), s| {
                (a + s.send.buffered(), b + s.recv.buffered() as u64)
            })
    }
}
