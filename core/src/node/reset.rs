//! Stateless resets (see `crypto::reset`): answering data for sessions this node does not
//! have, and closing a session when its peer says it lost it.

use std::time::{Duration, Instant};

use tracing::debug;

use super::Node;
use crate::crypto::reset::{Token, tokens_equal};
use crate::event::CloseReason;
use crate::session::{DropReason, Route};
use crate::wire::header::{self, DATA_OVERHEAD, RESET_LEN};

/// Most resets sent per [`RESET_WINDOW`]; data for unknown sessions beyond that is only
/// counted. Keeps a restarted node (or a flood of junk) from turning into a reflector.
pub(crate) const MAX_RESETS_PER_WINDOW: u32 = 64;
/// The window of [`MAX_RESETS_PER_WINDOW`].
pub(crate) const RESET_WINDOW: Duration = Duration::from_secs(1);

/// Rate limit state for outgoing resets.
#[derive(Debug, Default)]
pub(crate) struct ResetLimiter {
    window_start: Option<Instant>,
    sent: u32,
}

impl ResetLimiter {
    fn allow(&mut self, now: Instant) -> bool {
        match self.window_start {
            Some(t) if now.saturating_duration_since(t) < RESET_WINDOW => {}
            _ => {
                self.window_start = Some(now);
                self.sent = 0;
            }
        }
        if self.sent >= MAX_RESETS_PER_WINDOW {
            return false;
        }
        self.sent += 1;
        true
    }
}

impl Node {
    /// A data packet of `len` bytes arrived for `index`, which no session here has: tell the
    /// sender (it holds a session we lost, e.g. across a restart). The reset is smaller than
    /// the packet that triggered it, so it cannot amplify.
    pub(super) fn send_reset(&mut self, now: Instant, route: Route, index: u32, len: usize) {
        const { assert!(RESET_LEN < DATA_OVERHEAD) };
        if len < DATA_OVERHEAD || !self.resets.allow(now) {
            return;
        }
        let token = self.identity.reset_token(index);
        if self
            .replies
            .push(route, |b| header::write_reset(b, index, &token).ok())
        {
            self.stats.resets_sent += 1;
        } else {
            self.stats.drops.add(DropReason::ReplyQueueFull);
        }
    }

    /// A stateless reset arrived: close the session whose peer index and token it names.
    pub(super) fn handle_reset(&mut self, route: Route, index: u32, token: &Token) {
        let slot = self.slots.iter().position(|s| {
            s.session.as_ref().is_some_and(|s| {
                s.remote_index == index
                    && s.peer_reset_token
                        .as_ref()
                        .is_some_and(|t| tokens_equal(t, token))
            })
        });
        let Some(slot) = slot else {
            self.stats.drops.add(DropReason::ResetUnmatched);
            return;
        };
        debug!(?route, "stateless reset: the peer lost the session");
        self.stats.resets_received += 1;
        self.with_session(slot as u32, |s, ctx| {
            s.terminate(CloseReason::PeerReset, ctx);
        });
    }
}
