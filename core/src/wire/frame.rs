//! Frames: the plaintext inside a data packet's AEAD. A packet payload is a sequence of
//! frames, each a varint type followed by its fields. Parsing is zero-copy (`data` fields
//! borrow the decrypted datagram) and never panics; an unknown type makes the whole packet
//! malformed (frames are authenticated, so that only happens with a buggy or newer peer).
//!
//! | type | frame | fields |
//! |---|---|---|
//! | `0x00` | PADDING | (a run of zero bytes) |
//! | `0x01` | PING | id |
//! | `0x02` | PONG | id |
//! | `0x03` | ACK | largest, delay (µs), range count, first range, (gap, range)… |
//! | `0x04` | RESET_STREAM | stream, code, final size |
//! | `0x05` | STOP_SENDING | stream, code |
//! | `0x08..=0x0f` | STREAM | stream, [port u16 if offset = 0] [offset], [len], data; bits OFF=4 LEN=2 FIN=1 |
//! | `0x10` | MAX_DATA | max |
//! | `0x11` | MAX_STREAM_DATA | stream, max |
//! | `0x12` | MAX_STREAMS | max |
//! | `0x13` | DATA_BLOCKED | limit |
//! | `0x14` | STREAM_DATA_BLOCKED | stream, limit |
//! | `0x1a` | PATH_CHALLENGE | 8 bytes |
//! | `0x1b` | PATH_RESPONSE | 8 bytes |
//! | `0x1c` | CLOSE | code, reason (len-prefixed) |
//! | `0x30` | DATAGRAM | data (len-prefixed) |
//! | `0x40` | OBSERVED_ADDRESS | seq, socket address |
//! | `0x41` | APP | channel, data (len-prefixed) — small control messages for layers above (rendezvous) |
//! | `0x42` | RELAY | peer key (32), data (len-prefixed): a whole tern datagram to or from `peer` through a relay |
//! | `0x43` | CANDIDATES | data (len-prefixed): NAT hints and addresses to probe (see `nat::Hints`) |

use std::net::SocketAddr;

use super::codec::{BufferTooSmall, Reader, Writer, socket_addr_len};
use super::varint;

/// Frame type codes.
pub mod ty {
    /// PADDING.
    pub const PADDING: u64 = 0x00;
    /// PING.
    pub const PING: u64 = 0x01;
    /// PONG.
    pub const PONG: u64 = 0x02;
    /// ACK.
    pub const ACK: u64 = 0x03;
    /// RESET_STREAM.
    pub const RESET_STREAM: u64 = 0x04;
    /// STOP_SENDING.
    pub const STOP_SENDING: u64 = 0x05;
    /// First STREAM type (no offset, no length, no FIN).
    pub const STREAM: u64 = 0x08;
    /// STREAM bit: an offset field is present (absent means offset 0, and a port is present).
    pub const STREAM_OFF: u64 = 0x04;
    /// STREAM bit: a length field is present (absent means the data runs to the packet end).
    pub const STREAM_LEN: u64 = 0x02;
    /// STREAM bit: this frame carries the final byte.
    pub const STREAM_FIN: u64 = 0x01;
    /// MAX_DATA.
    pub const MAX_DATA: u64 = 0x10;
    /// MAX_STREAM_DATA.
    pub const MAX_STREAM_DATA: u64 = 0x11;
    /// MAX_STREAMS.
    pub const MAX_STREAMS: u64 = 0x12;
    /// DATA_BLOCKED.
    pub const DATA_BLOCKED: u64 = 0x13;
    /// STREAM_DATA_BLOCKED.
    pub const STREAM_DATA_BLOCKED: u64 = 0x14;
    /// PATH_CHALLENGE.
    pub const PATH_CHALLENGE: u64 = 0x1a;
    /// PATH_RESPONSE.
    pub const PATH_RESPONSE: u64 = 0x1b;
    /// CLOSE.
    pub const CLOSE: u64 = 0x1c;
    /// DATAGRAM.
    pub const DATAGRAM: u64 = 0x30;
    /// OBSERVED_ADDRESS.
    pub const OBSERVED_ADDRESS: u64 = 0x40;
    /// APP.
    pub const APP: u64 = 0x41;
    /// RELAY.
    pub const RELAY: u64 = 0x42;
    /// CANDIDATES.
    pub const CANDIDATES: u64 = 0x43;
}

/// Most ACK ranges a parser accepts in one frame; more is malformed. Bounds the work one
/// packet can cause.
pub const MAX_ACK_RANGES: u64 = 256;
/// Longest CLOSE reason accepted.
pub const MAX_CLOSE_REASON: usize = 256;

/// One decoded frame. Byte fields borrow the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame<'a> {
    /// `len` zero bytes.
    Padding {
        /// Number of padding bytes.
        len: usize,
    },
    /// Asks the peer for a PONG with the same id (also keeps the session alive).
    Ping {
        /// Opaque id echoed in the PONG.
        id: u64,
    },
    /// Answer to a PING.
    Pong {
        /// The PING's id.
        id: u64,
    },
    /// Acknowledges received packet counters.
    Ack(Ack<'a>),
    /// The sender abandons sending on a stream.
    ResetStream {
        /// Stream id.
        stream: u64,
        /// Application error code.
        code: u64,
        /// Final size of the stream in bytes.
        final_size: u64,
    },
    /// The sender no longer wants to receive on a stream.
    StopSending {
        /// Stream id.
        stream: u64,
        /// Application error code.
        code: u64,
    },
    /// Stream data.
    Stream {
        /// Stream id.
        stream: u64,
        /// Destination virtual port; present exactly when `offset == 0`.
        port: Option<u16>,
        /// Offset of `data` in the stream.
        offset: u64,
        /// The bytes.
        data: &'a [u8],
        /// `data` ends the stream.
        fin: bool,
    },
    /// Session-level flow-control credit.
    MaxData {
        /// Maximum total bytes the peer may send on all streams.
        max: u64,
    },
    /// Stream-level flow-control credit.
    MaxStreamData {
        /// Stream id.
        stream: u64,
        /// Maximum offset the peer may send on this stream.
        max: u64,
    },
    /// Stream-count credit.
    MaxStreams {
        /// Total streams the peer may open.
        max: u64,
    },
    /// The sender is blocked by session flow control.
    DataBlocked {
        /// The limit it hit.
        limit: u64,
    },
    /// The sender is blocked by stream flow control.
    StreamDataBlocked {
        /// Stream id.
        stream: u64,
        /// The limit it hit.
        limit: u64,
    },
    /// Path validation challenge.
    PathChallenge {
        /// Unpredictable data to echo.
        data: [u8; 8],
    },
    /// Path validation response.
    PathResponse {
        /// The challenge's data.
        data: [u8; 8],
    },
    /// The session is closing.
    Close {
        /// Close code.
        code: u64,
        /// Human-readable reason (UTF-8 expected, not required).
        reason: &'a [u8],
    },
    /// Unreliable datagram.
    Datagram {
        /// The payload.
        data: &'a [u8],
    },
    /// The address the sender saw this packet's peer come from (the beacon's answer).
    ObservedAddress {
        /// Increases with each new observation.
        seq: u64,
        /// The observed address.
        addr: SocketAddr,
    },
    /// A whole tern datagram carried through a relay: from a client to the relay it names
    /// the destination peer; from the relay to a client it names the source peer.
    Relay {
        /// The peer on the far side of the relay.
        peer: [u8; 32],
        /// The datagram.
        data: &'a [u8],
    },
    /// NAT-traversal candidates and hints (encoded `nat::Hints`).
    Candidates {
        /// The encoded hints.
        data: &'a [u8],
    },
    /// A small control message for a protocol layered on the session (e.g. rendezvous).
    App {
        /// Which layer the message is for.
        channel: u64,
        /// The message.
        data: &'a [u8],
    },
}

/// An ACK frame, kept in wire form; iterate with [`Ack::ranges`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack<'a> {
    /// Largest counter acknowledged.
    pub largest: u64,
    /// Time between receiving `largest` and sending this ACK, in microseconds.
    pub delay_us: u64,
    /// Number of additional ranges after the first.
    pub extra_ranges: u64,
    /// Counters below `largest` also acknowledged by the first range.
    pub first_range: u64,
    encoded_ranges: &'a [u8],
}

impl<'a> Ack<'a> {
    /// The acknowledged ranges, highest first, as inclusive `(low, high)` pairs.
    pub fn ranges(&self) -> AckRanges<'a> {
        AckRanges {
            reader: Reader::new(self.encoded_ranges),
            next_high: None,
            first: Some((self.largest - self.first_range, self.largest)),
            left: self.extra_ranges,
        }
    }
}

/// Iterator over an [`Ack`]'s ranges (validated at parse time, so it cannot fail).
#[derive(Clone, Debug)]
pub struct AckRanges<'a> {
    reader: Reader<'a>,
    next_high: Option<u64>,
    first: Option<(u64, u64)>,
    left: u64,
}

impl Iterator for AckRanges<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        if let Some((lo, hi)) = self.first.take() {
            self.next_high = lo.checked_sub(2);
            return Some((lo, hi));
        }
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let gap = self.reader.varint()?;
        let len = self.reader.varint()?;
        let hi = self.next_high?.checked_sub(gap)?;
        let lo = hi.checked_sub(len)?;
        self.next_high = lo.checked_sub(2);
        Some((lo, hi))
    }
}

/// Why a frame sequence failed to parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A field ran past the end of the payload.
    #[error("truncated frame")]
    Truncated,
    /// Unknown frame type.
    #[error("unknown frame type {0:#x}")]
    UnknownType(u64),
    /// A field had an impossible value.
    #[error("malformed frame")]
    Malformed,
}

/// Iterator over the frames of a decrypted payload. Stops after the first error.
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    r: Reader<'a>,
    failed: bool,
}

/// Parses the frames of a decrypted payload lazily.
pub fn frames(payload: &[u8]) -> Frames<'_> {
    Frames {
        r: Reader::new(payload),
        failed: false,
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let res = parse_one(&mut self.r);
        if res.is_err() {
            self.failed = true;
        }
        Some(res)
    }
}

fn parse_one<'a>(r: &mut Reader<'a>) -> Result<Frame<'a>, FrameError> {
    use FrameError::{Malformed, Truncated};
    let t = r.varint().ok_or(Truncated)?;
    Ok(match t {
        ty::PADDING => {
            let mut len = 1;
            while r.peek_u8() == Some(0) {
                r.u8();
                len += 1;
            }
            Frame::Padding { len }
        }
        ty::PING => Frame::Ping {
            id: r.varint().ok_or(Truncated)?,
        },
        ty::PONG => Frame::Pong {
            id: r.varint().ok_or(Truncated)?,
        },
        ty::ACK => Frame::Ack(parse_ack(r)?),
        ty::RESET_STREAM => Frame::ResetStream {
            stream: r.varint().ok_or(Truncated)?,
            code: r.varint().ok_or(Truncated)?,
            final_size: r.varint().ok_or(Truncated)?,
        },
        ty::STOP_SENDING => Frame::StopSending {
            stream: r.varint().ok_or(Truncated)?,
            code: r.varint().ok_or(Truncated)?,
        },
        0x08..=0x0f => {
            let stream = r.varint().ok_or(Truncated)?;
            let (port, offset) = if t & ty::STREAM_OFF != 0 {
                let off = r.varint().ok_or(Truncated)?;
                if off == 0 {
                    // Offset 0 must use the short form that carries the port.
                    return Err(Malformed);
                }
                (None, off)
            } else {
                (Some(r.u16().ok_or(Truncated)?), 0)
            };
            let data = if t & ty::STREAM_LEN != 0 {
                r.varint_bytes().ok_or(Truncated)?
            } else {
                r.rest()
            };
            if offset
                .checked_add(data.len() as u64)
                .is_none_or(|end| end > varint::MAX)
            {
                return Err(Malformed);
            }
            Frame::Stream {
                stream,
                port,
                offset,
                data,
                fin: t & ty::STREAM_FIN != 0,
            }
        }
        ty::MAX_DATA => Frame::MaxData {
            max: r.varint().ok_or(Truncated)?,
        },
        ty::MAX_STREAM_DATA => Frame::MaxStreamData {
            stream: r.varint().ok_or(Truncated)?,
            max: r.varint().ok_or(Truncated)?,
        },
        ty::MAX_STREAMS => Frame::MaxStreams {
            max: r.varint().ok_or(Truncated)?,
        },
        ty::DATA_BLOCKED => Frame::DataBlocked {
            limit: r.varint().ok_or(Truncated)?,
        },
        ty::STREAM_DATA_BLOCKED => Frame::StreamDataBlocked {
            stream: r.varint().ok_or(Truncated)?,
            limit: r.varint().ok_or(Truncated)?,
        },
        ty::PATH_CHALLENGE => Frame::PathChallenge {
            data: r.array().ok_or(Truncated)?,
        },
        ty::PATH_RESPONSE => Frame::PathResponse {
            data: r.array().ok_or(Truncated)?,
        },
        ty::CLOSE => {
            let code = r.varint().ok_or(Truncated)?;
            let reason = r.varint_bytes().ok_or(Truncated)?;
            if reason.len() > MAX_CLOSE_REASON {
                return Err(Malformed);
            }
            Frame::Close { code, reason }
        }
        ty::DATAGRAM => Frame::Datagram {
            data: r.varint_bytes().ok_or(Truncated)?,
        },
        ty::OBSERVED_ADDRESS => Frame::ObservedAddress {
            seq: r.varint().ok_or(Truncated)?,
            addr: r.socket_addr().ok_or(Malformed)?,
        },
        ty::APP => Frame::App {
            channel: r.varint().ok_or(Truncated)?,
            data: r.varint_bytes().ok_or(Truncated)?,
        },
        ty::CANDIDATES => Frame::Candidates {
            data: r.varint_bytes().ok_or(Truncated)?,
        },
        ty::RELAY => Frame::Relay {
            peer: r.array().ok_or(Truncated)?,
            data: r.varint_bytes().ok_or(Truncated)?,
        },
        other => return Err(FrameError::UnknownType(other)),
    })
}

fn parse_ack<'a>(r: &mut Reader<'a>) -> Result<Ack<'a>, FrameError> {
    use FrameError::{Malformed, Truncated};
    let largest = r.varint().ok_or(Truncated)?;
    let delay_us = r.varint().ok_or(Truncated)?;
    let extra_ranges = r.varint().ok_or(Truncated)?;
    if extra_ranges > MAX_ACK_RANGES {
        return Err(Malformed);
    }
    let first_range = r.varint().ok_or(Truncated)?;
    // Highest counter the next range may end at: one missing counter below the previous one.
    let mut next_high = largest
        .checked_sub(first_range)
        .ok_or(Malformed)?
        .checked_sub(2);
    let start = r.position();
    let mut probe = r.clone();
    for _ in 0..extra_ranges {
        let gap = probe.varint().ok_or(Truncated)?;
        let len = probe.varint().ok_or(Truncated)?;
        // As in RFC 9000 §19.3.1: `gap` is the number of missing counters minus one.
        let hi = next_high
            .ok_or(Malformed)?
            .checked_sub(gap)
            .ok_or(Malformed)?;
        let lo = hi.checked_sub(len).ok_or(Malformed)?;
        next_high = lo.checked_sub(2);
    }
    let used = probe.position() - start;
    let encoded_ranges = r.bytes(used).ok_or(Truncated)?;
    Ok(Ack {
        largest,
        delay_us,
        extra_ranges,
        first_range,
        encoded_ranges,
    })
}

impl Frame<'_> {
    /// Bytes this frame takes when encoded (for ACKs, the size of the wire form it came from).
    pub fn encoded_len(&self) -> usize {
        let v = |x: u64| varint::size(x).unwrap_or(8);
        match *self {
            Frame::Padding { len } => len,
            Frame::Ping { id } | Frame::Pong { id } => 1 + v(id),
            Frame::Ack(a) => {
                1 + v(a.largest)
                    + v(a.delay_us)
                    + v(a.extra_ranges)
                    + v(a.first_range)
                    + a.encoded_ranges.len()
            }
            Frame::ResetStream {
                stream,
                code,
                final_size,
            } => 1 + v(stream) + v(code) + v(final_size),
            Frame::StopSending { stream, code } => 1 + v(stream) + v(code),
            Frame::Stream {
                stream,
                offset,
                data,
                ..
            } => stream_frame_len(stream, offset, data.len(), true),
            Frame::MaxData { max } | Frame::MaxStreams { max } => 1 + v(max),
            Frame::DataBlocked { limit } => 1 + v(limit),
            Frame::MaxStreamData { stream, max } => 1 + v(stream) + v(max),
            Frame::StreamDataBlocked { stream, limit } => 1 + v(stream) + v(limit),
            Frame::PathChallenge { .. } | Frame::PathResponse { .. } => 9,
            Frame::Close { code, reason } => 1 + v(code) + v(reason.len() as u64) + reason.len(),
            Frame::Datagram { data } => 1 + v(data.len() as u64) + data.len(),
            Frame::ObservedAddress { seq, addr } => {
                v(ty::OBSERVED_ADDRESS) + v(seq) + socket_addr_len(addr)
            }
            Frame::App { channel, data } => {
                v(ty::APP) + v(channel) + v(data.len() as u64) + data.len()
            }
            Frame::Relay { data, .. } => v(ty::RELAY) + 32 + v(data.len() as u64) + data.len(),
            Frame::Candidates { data } => v(ty::CANDIDATES) + v(data.len() as u64) + data.len(),
        }
    }

    /// Encodes the frame. STREAM frames are always written with an explicit length; use
    /// [`write_stream`] to choose. ACK frames are re-emitted from their wire form.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        match *self {
            Frame::Padding { len } => w.zeros(len),
            Frame::Ping { id } => {
                w.varint(ty::PING)?;
                w.varint(id)
            }
            Frame::Pong { id } => {
                w.varint(ty::PONG)?;
                w.varint(id)
            }
            Frame::Ack(a) => {
                w.varint(ty::ACK)?;
                w.varint(a.largest)?;
                w.varint(a.delay_us)?;
                w.varint(a.extra_ranges)?;
                w.varint(a.first_range)?;
                w.bytes(a.encoded_ranges)
            }
            Frame::ResetStream {
                stream,
                code,
                final_size,
            } => {
                w.varint(ty::RESET_STREAM)?;
                w.varint(stream)?;
                w.varint(code)?;
                w.varint(final_size)
            }
            Frame::StopSending { stream, code } => {
                w.varint(ty::STOP_SENDING)?;
                w.varint(stream)?;
                w.varint(code)
            }
            Frame::Stream {
                stream,
                port,
                offset,
                data,
                fin,
            } => write_stream(w, stream, port.unwrap_or(0), offset, data, fin, true),
            Frame::MaxData { max } => {
                w.varint(ty::MAX_DATA)?;
                w.varint(max)
            }
            Frame::MaxStreamData { stream, max } => {
                w.varint(ty::MAX_STREAM_DATA)?;
                w.varint(stream)?;
                w.varint(max)
            }
            Frame::MaxStreams { max } => {
                w.varint(ty::MAX_STREAMS)?;
                w.varint(max)
            }
            Frame::DataBlocked { limit } => {
                w.varint(ty::DATA_BLOCKED)?;
                w.varint(limit)
            }
            Frame::StreamDataBlocked { stream, limit } => {
                w.varint(ty::STREAM_DATA_BLOCKED)?;
                w.varint(stream)?;
                w.varint(limit)
            }
            Frame::PathChallenge { data } => {
                w.varint(ty::PATH_CHALLENGE)?;
                w.bytes(&data)
            }
            Frame::PathResponse { data } => {
                w.varint(ty::PATH_RESPONSE)?;
                w.bytes(&data)
            }
            Frame::Close { code, reason } => {
                w.varint(ty::CLOSE)?;
                w.varint(code)?;
                w.varint_bytes(&reason[..reason.len().min(MAX_CLOSE_REASON)])
            }
            Frame::Datagram { data } => {
                w.varint(ty::DATAGRAM)?;
                w.varint_bytes(data)
            }
            Frame::ObservedAddress { seq, addr } => {
                w.varint(ty::OBSERVED_ADDRESS)?;
                w.varint(seq)?;
                w.socket_addr(addr)
            }
            Frame::App { channel, data } => {
                w.varint(ty::APP)?;
                w.varint(channel)?;
                w.varint_bytes(data)
            }
            Frame::Relay { peer, data } => {
                w.varint(ty::RELAY)?;
                w.bytes(&peer)?;
                w.varint_bytes(data)
            }
            Frame::Candidates { data } => {
                w.varint(ty::CANDIDATES)?;
                w.varint_bytes(data)
            }
        }
    }
}

/// Size of a STREAM frame header plus data.
pub fn stream_frame_len(stream: u64, offset: u64, data_len: usize, with_len: bool) -> usize {
    let v = |x: u64| varint::size(x).unwrap_or(8);
    let off = if offset == 0 { 2 } else { v(offset) };
    let len = if with_len { v(data_len as u64) } else { 0 };
    1 + v(stream) + off + len + data_len
}

/// Writes a STREAM frame. With `with_len == false` the data must run to the end of the
/// packet. `port` is written only when `offset == 0`.
pub fn write_stream(
    w: &mut Writer<'_>,
    stream: u64,
    port: u16,
    offset: u64,
    data: &[u8],
    fin: bool,
    with_len: bool,
) -> Result<(), BufferTooSmall> {
    let mut t = ty::STREAM;
    if offset != 0 {
        t |= ty::STREAM_OFF;
    }
    if with_len {
        t |= ty::STREAM_LEN;
    }
    if fin {
        t |= ty::STREAM_FIN;
    }
    w.varint(t)?;
    w.varint(stream)?;
    if offset == 0 {
        w.u16(port)?;
    } else {
        w.varint(offset)?;
    }
    if with_len {
        w.varint(data.len() as u64)?;
    }
    w.bytes(data)
}

/// Writes an ACK frame from inclusive ranges given highest first. Ranges must be disjoint,
/// non-adjacent and descending; at most `max_ranges` are written (the lowest are dropped,
/// which is always safe: unacknowledged counters are just acknowledged later).
pub fn write_ack(
    w: &mut Writer<'_>,
    delay_us: u64,
    ranges: &[(u64, u64)],
    max_ranges: usize,
) -> Result<(), BufferTooSmall> {
    let Some(&(lo0, hi0)) = ranges.first() else {
        return Ok(());
    };
    let n = ranges
        .len()
        .min(max_ranges.max(1))
        .min(MAX_ACK_RANGES as usize + 1);
    w.varint(ty::ACK)?;
    w.varint(hi0)?;
    w.varint(delay_us)?;
    w.varint((n - 1) as u64)?;
    w.varint(hi0 - lo0)?;
    let mut prev_lo = lo0;
    for &(lo, hi) in &ranges[1..n] {
        // prev_lo - 1 is the first missing counter; hi is `gap` below the highest allowed.
        let gap = prev_lo - 2 - hi;
        w.varint(gap)?;
        w.varint(hi - lo)?;
        prev_lo = lo;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(f: Frame<'_>) {
        let mut buf = [0u8; 2048];
        let mut w = Writer::new(&mut buf);
        f.encode(&mut w).unwrap();
        let n = w.len();
        assert_eq!(n, f.encoded_len(), "{f:?}");
        let parsed: Vec<_> = frames(&buf[..n]).collect();
        assert_eq!(parsed, vec![Ok(f)]);
    }

    #[test]
    fn every_frame_round_trips() {
        let addr: SocketAddr = "192.0.2.7:4242".parse().unwrap();
        for f in [
            Frame::Padding { len: 7 },
            Frame::Ping { id: 0 },
            Frame::Ping { id: 1 << 40 },
            Frame::Pong { id: 99 },
            Frame::ResetStream {
                stream: 4,
                code: 9,
                final_size: 1 << 33,
            },
            Frame::StopSending { stream: 5, code: 0 },
            Frame::Stream {
                stream: 0,
                port: Some(7),
                offset: 0,
                data: b"hi",
                fin: false,
            },
            Frame::Stream {
                stream: 8,
                port: None,
                offset: 1000,
                data: b"",
                fin: true,
            },
            Frame::MaxData { max: 1 << 50 },
            Frame::MaxStreamData { stream: 3, max: 77 },
            Frame::MaxStreams { max: 100 },
            Frame::DataBlocked { limit: 5 },
            Frame::StreamDataBlocked {
                stream: 1,
                limit: 2,
            },
            Frame::PathChallenge {
                data: [1, 2, 3, 4, 5, 6, 7, 8],
            },
            Frame::PathResponse { data: [8; 8] },
            Frame::Close {
                code: 3,
                reason: b"bye",
            },
            Frame::Datagram { data: &[0xff; 300] },
            Frame::ObservedAddress { seq: 2, addr },
            Frame::App {
                channel: 1,
                data: b"{}",
            },
            Frame::Relay {
                peer: [7; 32],
                data: &[1; 1135],
            },
            Frame::Candidates {
                data: &[2, 15, 160, 0, 0, 0, 0, 0],
            },
        ] {
            round_trip(f);
        }
    }

    #[test]
    fn ack_ranges_round_trip() {
        let ranges = [(90, 100), (50, 80), (10, 10), (0, 5)];
        let mut buf = [0u8; 128];
        let mut w = Writer::new(&mut buf);
        write_ack(&mut w, 25, &ranges, 64).unwrap();
        let n = w.len();
        let f: Vec<_> = frames(&buf[..n]).collect();
        let Ok(Frame::Ack(ack)) = f[0] else {
            panic!("{f:?}")
        };
        assert_eq!(ack.largest, 100);
        assert_eq!(ack.delay_us, 25);
        assert_eq!(ack.ranges().collect::<Vec<_>>(), ranges.to_vec());
        round_trip(Frame::Ack(ack));
        // Truncating to two ranges keeps the highest.
        let mut w = Writer::new(&mut buf);
        write_ack(&mut w, 0, &ranges, 2).unwrap();
        let n = w.len();
        let Some(Ok(Frame::Ack(ack))) = frames(&buf[..n]).next() else {
            panic!()
        };
        assert_eq!(ack.ranges().collect::<Vec<_>>(), vec![(90, 100), (50, 80)]);
    }

    #[test]
    fn malformed_acks_are_rejected() {
        // first range larger than largest
        assert_eq!(
            frames(&[0x03, 5, 0, 0, 6]).next(),
            Some(Err(FrameError::Malformed))
        );
        // too many ranges
        let mut buf = [0u8; 16];
        let mut w = Writer::new(&mut buf);
        w.varint(ty::ACK).unwrap();
        w.varint(1000).unwrap();
        w.varint(0).unwrap();
        w.varint(MAX_ACK_RANGES + 1).unwrap();
        w.varint(0).unwrap();
        let n = w.len();
        assert_eq!(frames(&buf[..n]).next(), Some(Err(FrameError::Malformed)));
        // a gap that underflows below zero
        assert_eq!(
            frames(&[0x03, 5, 0, 1, 0, 10, 0]).next(),
            Some(Err(FrameError::Malformed))
        );
    }

    #[test]
    fn stream_frame_forms() {
        // No LEN bit: data runs to the end.
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        write_stream(&mut w, 4, 0, 10, b"abc", true, false).unwrap();
        let n = w.len();
        assert_eq!(n, stream_frame_len(4, 10, 3, false));
        let parsed: Vec<_> = frames(&buf[..n]).collect();
        assert_eq!(
            parsed,
            vec![Ok(Frame::Stream {
                stream: 4,
                port: None,
                offset: 10,
                data: b"abc",
                fin: true
            })]
        );
        // Explicit offset 0 is malformed (must use the port form).
        assert_eq!(
            frames(&[0x0e, 1, 0, 0]).next(),
            Some(Err(FrameError::Malformed))
        );
    }

    #[test]
    fn garbage_stops_the_iterator() {
        let mut it = frames(&[0x01, 0x05, 0x3e, 0x01, 0x01]);
        assert_eq!(it.next(), Some(Ok(Frame::Ping { id: 5 })));
        assert_eq!(it.next(), Some(Err(FrameError::UnknownType(0x3e))));
        assert_eq!(it.next(), None);
    }
}
