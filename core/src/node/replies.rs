//! Stateless replies (cookies, reject hints, refusals): a small bounded queue of fixed-size
//! buffers. When it is full, new replies are dropped (and counted), never queued without
//! bound: a flood of inits cannot make the node buffer unbounded output.

use crate::session::Route;
use std::collections::VecDeque;

/// Most replies queued at once.
pub(crate) const MAX_REPLIES: usize = 256;
/// Largest stateless reply (an IK refusal is 61 bytes).
pub(crate) const MAX_REPLY_LEN: usize = 128;

pub(crate) struct Reply {
    dst: Route,
    len: usize,
    bytes: [u8; MAX_REPLY_LEN],
}

pub(crate) struct Replies {
    queue: VecDeque<Reply>,
}

impl Replies {
    pub fn new() -> Self {
        Self {
            queue: VecDeque::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues a reply built by `write`; returns false if the queue is full or the reply
    /// does not fit.
    pub fn push(&mut self, dst: Route, write: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        if self.queue.len() >= MAX_REPLIES {
            return false;
        }
        let mut bytes = [0u8; MAX_REPLY_LEN];
        let Some(len) = write(&mut bytes) else {
            return false;
        };
        self.queue.push_back(Reply { dst, len, bytes });
        true
    }

    /// Copies the next reply into `buf`; returns where it goes and its length.
    pub fn pop(&mut self, buf: &mut [u8]) -> Option<(Route, usize)> {
        let r = self.queue.pop_front()?;
        let out = buf.get_mut(..r.len)?;
        out.copy_from_slice(&r.bytes[..r.len]);
        Some((r.dst, r.len))
    }
}
