//! The application's view of streams and datagrams: open, accept (by listening on virtual
//! ports), read, write, finish, reset, stop; unreliable datagrams; and the mapping of the
//! transport's stream events to node [`Event`]s, including the built-in echo service and
//! the refusal of streams to ports nobody listens on.

use super::Node;
use crate::datagram::DatagramError;
use crate::event::Event;
use crate::ids::SessionId;
use crate::session::SessionState;
use crate::stream::{ECHO_PORT, ReadError, StreamError, StreamEvent, StreamId, WriteError};

/// A packet observer for [`Node::fuzzing_packet_hook`] (feature `fuzzing`): sees the time
/// and the stream frames of each data packet; returning true loses the packet.
#[cfg(feature = "fuzzing")]
pub type PacketHookFn =
    Box<dyn FnMut(std::time::Instant, &[crate::stream::SentFrame]) -> bool + Send>;

/// Stream error code sent when a stream is opened to a port nobody listens on.
pub const REFUSED_PORT_CODE: u64 = 0x7e_0001;

/// `Node::open_stream` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenStreamError {
    /// The session handle is stale or was never valid.
    #[error("unknown or closed session")]
    UnknownSession,
    /// The session is not established yet; wait for `SessionEstablished`.
    #[error("session not established yet")]
    NotEstablished,
    /// The peer's stream limit is reached; wait for `Event::StreamsAvailable`.
    #[error("the peer's stream limit is reached; wait for StreamsAvailable")]
    Blocked,
}

/// `Node::send_datagram` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendDatagramError {
    /// The session handle is stale or was never valid.
    #[error("unknown or closed session")]
    UnknownSession,
    /// The session is not established yet.
    #[error("session not established yet")]
    NotEstablished,
    /// Larger than `max_datagram_size`; split it or use a stream.
    #[error("datagram of {size} bytes exceeds the path limit of {max}")]
    TooLarge {
        /// The datagram's size.
        size: usize,
        /// The current limit.
        max: usize,
    },
}

/// `Node::listen` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// Something already listens on this port.
    #[error("port {0} is already in use")]
    InUse(u16),
    /// Port 7 is served by the built-in echo; disable it with `Config::echo = false` first.
    #[error("port 7 is the built-in echo service")]
    Reserved(u16),
}

/// A borrowed handle to one stream (obtained from [`Node::stream`]). Dropping it lets the
/// node schedule whatever the calls made ready to send.
pub struct Stream<'a> {
    node: &'a mut Node,
    id: StreamId,
}

impl std::fmt::Debug for Stream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.id).finish()
    }
}

impl Stream<'_> {
    fn with<R>(&mut self, f: impl FnOnce(&mut crate::stream::StreamSet) -> R) -> Option<R> {
        let slot = self.id.session().index as usize;
        let s = self.node.slots.get_mut(slot)?.session.as_mut()?;
        Some(f(&mut s.tp.as_mut()?.streams))
    }

    /// This stream's handle.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Copies as much of `data` as flow control and the send buffer allow; returns the bytes
    /// taken. `Err(Blocked)`: nothing fits now, wait for `Event::StreamWritable`. After a
    /// short write (fewer bytes taken than offered) `StreamWritable` follows as well.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        let id = self.id;
        self.with(|s| s.write(id, data))
            .unwrap_or(Err(WriteError::UnknownStream))
    }

    /// Reads in-order bytes: `Ok(Some(n))` bytes, `Ok(None)` the peer finished and every byte
    /// was read, `Err(Blocked)` nothing yet (wait for `Event::StreamReadable`).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ReadError> {
        let id = self.id;
        self.with(|s| s.read(id, buf))
            .unwrap_or(Err(ReadError::UnknownStream))
    }

    /// Ends the sending half after everything written (FIN). `Event::StreamFinished` follows
    /// once the peer acknowledged it all.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        let id = self.id;
        self.with(|s| s.finish(id))
            .unwrap_or(Err(StreamError::UnknownStream))
    }

    /// Abandons the sending half with an application `code`.
    pub fn reset(&mut self, code: u64) -> Result<(), StreamError> {
        let id = self.id;
        self.with(|s| s.reset(id, code))
            .unwrap_or(Err(StreamError::UnknownStream))
    }

    /// Asks the peer to stop sending (our receiving half is discarded).
    pub fn stop(&mut self, code: u64) -> Result<(), StreamError> {
        let id = self.id;
        self.with(|s| s.stop(id, code))
            .unwrap_or(Err(StreamError::UnknownStream))
    }

    /// Higher priorities are sent first; equal priorities share round-robin.
    pub fn set_priority(&mut self, priority: i8) -> Result<(), StreamError> {
        let id = self.id;
        self.with(|s| s.set_priority(id, priority))
            .unwrap_or(Err(StreamError::UnknownStream))
    }

    /// The virtual port the stream was opened to.
    pub fn port(&mut self) -> Option<u16> {
        let id = self.id;
        self.with(|s| s.port(id)).flatten()
    }

    /// Bytes that `write` would accept now.
    pub fn write_room(&mut self) -> Option<u64> {
        let id = self.id;
        self.with(|s| s.write_room(id)).flatten()
    }
}

impl Drop for Stream<'_> {
    fn drop(&mut self) {
        let slot = self.id.session().index;
        self.node.after_session(slot);
    }
}

impl Node {
    /// Opens a stream to virtual `port` on the session's peer. The peer learns of it at once
    /// (even before data); if nobody listens there it is refused (`Event::StreamRefused`).
    pub fn open_stream(
        &mut self,
        session: SessionId,
        port: u16,
    ) -> Result<StreamId, OpenStreamError> {
        let slot = self
            .check(session)
            .map_err(|_| OpenStreamError::UnknownSession)?;
        let s = self.slots[slot as usize]
            .session
            .as_mut()
            .ok_or(OpenStreamError::UnknownSession)?;
        if s.state != SessionState::Established {
            return Err(OpenStreamError::NotEstablished);
        }
        let tp = s.tp.as_mut().ok_or(OpenStreamError::NotEstablished)?;
        let id = tp
            .streams
            .open(port)
            .map_err(|_| OpenStreamError::Blocked)?;
        self.after_session(slot);
        Ok(id)
    }

    /// A handle to a live stream, or `None` if it (or its session) is gone.
    pub fn stream(&mut self, id: StreamId) -> Option<Stream<'_>> {
        let session = id.session();
        self.check(session).ok()?;
        let s = self.slots[session.index as usize].session.as_ref()?;
        if s.state != SessionState::Established {
            return None;
        }
        s.tp.as_ref()?.streams.wire_id(id)?;
        Some(Stream { node: self, id })
    }

    /// Accepts streams the peers open to `port`: they are reported as `Event::StreamOpened`.
    /// Streams to ports nobody listens on are refused.
    pub fn listen(&mut self, port: u16) -> Result<(), ListenError> {
        if port == ECHO_PORT && self.config.echo {
            return Err(ListenError::Reserved(port));
        }
        if !self.listening.insert(port) {
            return Err(ListenError::InUse(port));
        }
        Ok(())
    }

    /// Stops accepting streams on `port` (open ones are unaffected). Returns whether it was
    /// listening.
    pub fn unlisten(&mut self, port: u16) -> bool {
        self.listening.remove(&port)
    }

    /// Queues an unreliable datagram (dropped, oldest first, if the queue overflows).
    pub fn send_datagram(
        &mut self,
        session: SessionId,
        data: &[u8],
    ) -> Result<(), SendDatagramError> {
        let slot = self
            .check(session)
            .map_err(|_| SendDatagramError::UnknownSession)?;
        let s = self.slots[slot as usize]
            .session
            .as_mut()
            .ok_or(SendDatagramError::UnknownSession)?;
        let tp = s.tp.as_mut().ok_or(SendDatagramError::NotEstablished)?;
        match tp.dgram_out.push(data) {
            Ok(()) => {}
            Err(DatagramError::TooLarge { .. } | DatagramError::Disabled) => {
                return Err(SendDatagramError::TooLarge {
                    size: data.len(),
                    max: tp.dgram_out.max_size(),
                });
            }
        }
        self.after_session(slot);
        Ok(())
    }

    /// Takes the oldest received datagram into `buf`; returns its length (longer datagrams
    /// are cut to `buf`, as with a UDP socket).
    pub fn recv_datagram(&mut self, session: SessionId, buf: &mut [u8]) -> Option<usize> {
        let slot = self.check(session).ok()?;
        let s = self.slots[slot as usize].session.as_mut()?;
        s.tp.as_mut()?.dgram_in.pop_into(buf)
    }

    /// Test hook (feature `fuzzing`, never in production builds): from now on, every data
    /// packet of `session` that carries stream frames is shown to `hook` with the time and
    /// its stream frames (stream, offset, length, FIN) before it leaves; if `hook` returns
    /// true the packet is recorded as sent but never leaves the node, exactly as if the
    /// network had lost it. Returns false for an unknown or unestablished session.
    #[cfg(feature = "fuzzing")]
    pub fn fuzzing_packet_hook(&mut self, session: SessionId, hook: PacketHookFn) -> bool {
        let Ok(slot) = self.check(session) else {
            return false;
        };
        let Some(tp) = self.slots[slot as usize]
            .session
            .as_mut()
            .and_then(|s| s.tp.as_mut())
        else {
            return false;
        };
        tp.packet_hook = Some(crate::session::transport::PacketHook {
            hook,
            frames: Vec::new(),
        });
        true
    }

    /// The largest datagram `send_datagram` accepts now (follows the path MTU).
    pub fn max_datagram_size(&self, session: SessionId) -> Option<usize> {
        let s = self.session(session)?;
        Some(s.tp.as_ref()?.dgram_out.max_size())
    }

    /// Turns the transport's stream events for `slot` into node events (after every change
    /// to the session): echo service, port refusal, datagram notifications.
    pub(super) fn drain_stream_events(&mut self, slot: u32) {
        let echo = self.config.echo;
        let Some(s) = self
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.session.as_mut())
        else {
            return;
        };
        let session = s.id;
        let reported = s.reported;
        let Some(tp) = s.tp.as_mut() else { return };
        if tp.datagram_event {
            tp.datagram_event = false;
            self.events.push_back(Event::DatagramReceived { session });
        }
        while tp.streams.accept().is_some() {}
        while let Some(e) = tp.streams.poll_event() {
            let ev = match e {
                StreamEvent::Opened { stream, port } => {
                    if port == ECHO_PORT && echo {
                        self.echo_streams.insert(stream);
                        let _ = tp.streams.echo(stream, &mut self.scratch_big);
                        None
                    } else if self.listening.contains(&port) {
                        Some(Event::StreamOpened { stream, port })
                    } else {
                        let _ = tp.streams.refuse(stream, REFUSED_PORT_CODE);
                        None
                    }
                }
                StreamEvent::Readable { stream } | StreamEvent::Writable { stream }
                    if self.echo_streams.contains(&stream) =>
                {
                    let _ = tp.streams.echo(stream, &mut self.scratch_big);
                    None
                }
                StreamEvent::Finished { stream } if self.echo_streams.remove(&stream) => None,
                StreamEvent::Readable { stream } => Some(Event::StreamReadable { stream }),
                StreamEvent::Writable { stream } => Some(Event::StreamWritable { stream }),
                StreamEvent::Finished { stream } => Some(Event::StreamFinished { stream }),
                // A refusal stops our sending half and resets the peer's: report it once.
                StreamEvent::Stopped { stream, code }
                    if code == REFUSED_PORT_CODE && tp.streams.is_local(stream) == Some(true) =>
                {
                    let port = tp.streams.port(stream).unwrap_or(0);
                    Some(Event::StreamRefused { stream, port })
                }
                StreamEvent::Reset { stream, code }
                    if code == REFUSED_PORT_CODE && tp.streams.is_local(stream) == Some(true) =>
                {
                    None
                }
                StreamEvent::Reset { stream, code } => {
                    self.echo_streams.remove(&stream);
                    Some(Event::StreamReset { stream, code })
                }
                StreamEvent::Stopped { stream, code } => {
                    Some(Event::StreamStopped { stream, code })
                }
                StreamEvent::Available => Some(Event::StreamsAvailable { session }),
            };
            if let Some(ev) = ev
                && reported
            {
                self.events.push_back(ev);
            }
        }
    }
}
