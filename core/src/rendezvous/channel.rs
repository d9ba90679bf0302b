//! Framing of rendezvous messages on a stream: each message is a 4-byte big-endian length
//! followed by that many bytes (at most [`MAX_MESSAGE`]). The reader is bounded: a length
//! above the maximum is a protocol error and the stream is reset.

use std::collections::VecDeque;

use super::msg::MAX_MESSAGE;

/// Virtual port of the rendezvous control channel on the server.
pub const RENDEZVOUS_PORT: u16 = 1;

/// A message length above the maximum arrived: reset the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rendezvous message too long")]
pub struct TooLong;

/// Reassembles length-prefixed messages from stream bytes.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) -> Result<(), TooLong> {
        if self.buf.len() + data.len() > 4 + MAX_MESSAGE + 4 + MAX_MESSAGE {
            return Err(TooLong);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Takes the next complete message, if any.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, TooLong> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_MESSAGE {
            return Err(TooLong);
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let msg = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(msg))
    }
}

/// Messages waiting for room on a stream (bounded: the oldest are dropped beyond
/// [`FrameWriter::MAX_QUEUED`] bytes, and the peer will re-ask).
#[derive(Debug, Default)]
pub struct FrameWriter {
    pending: VecDeque<u8>,
}

impl FrameWriter {
    /// Most bytes queued.
    pub const MAX_QUEUED: usize = 4 * (MAX_MESSAGE + 4);

    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues one message (length prefix added). Returns false if it was dropped.
    pub fn push(&mut self, msg: &[u8]) -> bool {
        if msg.len() > MAX_MESSAGE || self.pending.len() + 4 + msg.len() > Self::MAX_QUEUED {
            return false;
        }
        self.pending
            .extend((msg.len() as u32).to_be_bytes().iter().copied());
        self.pending.extend(msg.iter().copied());
        true
    }

    /// Whether bytes wait to be written.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Writes as much as `write` accepts; `write` returns the bytes it took.
    pub fn flush(&mut self, mut write: impl FnMut(&[u8]) -> usize) {
        while !self.pending.is_empty() {
            let (a, _) = self.pending.as_slices();
            let n = write(a);
            if n == 0 {
                return;
            }
            self.pending.drain(..n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reassemble_across_arbitrary_splits() {
        let mut w = FrameWriter::new();
        assert!(w.push(b"hello"));
        assert!(w.push(b""));
        assert!(w.push(&[7; 300]));
        let mut bytes = Vec::new();
        w.flush(|b| {
            let n = b.len().min(3);
            bytes.extend_from_slice(&b[..n]);
            n
        });
        assert!(w.is_empty());
        let mut r = FrameReader::new();
        let mut out = Vec::new();
        for chunk in bytes.chunks(5) {
            r.push(chunk).unwrap();
            while let Some(m) = r.next_message().unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, vec![b"hello".to_vec(), vec![], vec![7; 300]]);
    }

    #[test]
    fn oversize_lengths_are_refused() {
        let mut r = FrameReader::new();
        r.push(&u32::MAX.to_be_bytes()).unwrap();
        assert_eq!(r.next_message(), Err(TooLong));
        let mut w = FrameWriter::new();
        assert!(!w.push(&vec![0; MAX_MESSAGE + 1]));
    }
}
