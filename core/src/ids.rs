//! Generational handles. A handle names one session (or stream) for its whole life; once it
//! is gone, the slot may be reused but the old handle is rejected, never aliased.

use std::fmt;

/// Handle to a session. Copy it freely; a stale handle makes commands fail with
/// `UnknownSession`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl SessionId {
    /// Slot index (for logs and tables; not unique over time).
    pub fn index(self) -> u32 {
        self.index
    }

    /// Generation of the slot when this session was created.
    pub fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}.{}", self.index, self.generation)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
