//! How a stream that a driver handle holds has ended, if it has: the per-stream state both
//! drivers keep so that every later call on the handle gets the same typed error.

use tern_core::{CloseReason, REFUSED_PORT_CODE};

use crate::DriverError as Error;

/// The end of one stream as its handle sees it: reset or stopped by the peer, refused (no
/// listener on the port we opened), or gone with its session.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamFate {
    port: u16,
    /// Opened by this side: a refusal code from the peer then means "no listener".
    local: bool,
    reset: Option<u64>,
    stopped: Option<u64>,
    refused: Option<u16>,
    closed: Option<CloseReason>,
}

impl StreamFate {
    /// A live stream to (or from) virtual `port`; `local` if this side opened it.
    #[must_use]
    pub fn new(port: u16, local: bool) -> Self {
        Self {
            port,
            local,
            ..Self::default()
        }
    }

    /// The peer reset the stream; on a stream we opened, the refusal code means the peer
    /// has no listener. Returns the error the pending read gets.
    pub fn on_reset(&mut self, code: u64) -> Error {
        if self.local && code == REFUSED_PORT_CODE {
            self.refused = Some(self.port);
            Error::Refused(self.port)
        } else {
            self.reset = Some(code);
            Error::Reset(code)
        }
    }

    /// A write found the stream stopped by the peer (the refusal code on a stream we opened
    /// means no listener). Returns the error the write gets.
    pub fn on_write_stopped(&mut self, code: u64) -> Error {
        if self.local && code == REFUSED_PORT_CODE {
            self.refused = Some(self.port);
            Error::Refused(self.port)
        } else {
            self.stopped = Some(code);
            Error::Stopped(code)
        }
    }

    /// The peer sent STOP_SENDING with `code`.
    pub fn on_stopped(&mut self, code: u64) {
        self.stopped = Some(code);
    }

    /// The peer refused the stream: nothing listens on `port`.
    pub fn on_refused(&mut self, port: u16) {
        self.refused = Some(port);
    }

    /// The stream's session ended.
    pub fn on_closed(&mut self, reason: CloseReason) {
        self.closed = Some(reason);
    }

    /// The code of the peer's STOP_SENDING, if it sent one.
    #[must_use]
    pub fn stopped(&self) -> Option<u64> {
        self.stopped
    }

    /// Why the session ended, if it has.
    #[must_use]
    pub fn closed(&self) -> Option<CloseReason> {
        self.closed
    }

    /// The error every further read gets, if the stream is dead for reading.
    #[must_use]
    pub fn read_error(&self) -> Option<Error> {
        if let Some(c) = self.reset {
            return Some(Error::Reset(c));
        }
        if let Some(p) = self.refused {
            return Some(Error::Refused(p));
        }
        self.closed.map(Error::SessionClosed)
    }

    /// The error every further write gets, if the stream is dead for writing.
    #[must_use]
    pub fn write_error(&self) -> Option<Error> {
        if let Some(c) = self.stopped {
            return Some(Error::Stopped(c));
        }
        if let Some(p) = self.refused {
            return Some(Error::Refused(p));
        }
        self.closed.map(Error::SessionClosed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_code_means_refused_only_on_a_stream_we_opened() {
        let mut ours = StreamFate::new(7, true);
        assert!(matches!(
            ours.on_reset(REFUSED_PORT_CODE),
            Error::Refused(7)
        ));
        assert!(matches!(ours.read_error(), Some(Error::Refused(7))));
        assert!(matches!(ours.write_error(), Some(Error::Refused(7))));

        let mut theirs = StreamFate::new(7, false);
        assert!(
            matches!(theirs.on_reset(REFUSED_PORT_CODE), Error::Reset(c) if c == REFUSED_PORT_CODE)
        );
        assert!(theirs.write_error().is_none());

        let mut w = StreamFate::new(9, false);
        assert!(matches!(w.on_write_stopped(3), Error::Stopped(3)));
        assert_eq!(w.stopped(), Some(3));
        assert!(matches!(w.write_error(), Some(Error::Stopped(3))));
        assert!(w.read_error().is_none());
    }

    #[test]
    fn a_closed_session_ends_both_directions() {
        let mut f = StreamFate::new(1, true);
        assert!(f.read_error().is_none() && f.write_error().is_none());
        f.on_closed(CloseReason::IdleTimeout);
        assert_eq!(f.closed(), Some(CloseReason::IdleTimeout));
        assert!(matches!(f.read_error(), Some(Error::SessionClosed(_))));
        assert!(matches!(f.write_error(), Some(Error::SessionClosed(_))));
    }
}
