//! The wire format: cleartext headers, frames inside the encryption, varints and the
//! bounds-checked cursors they are built on. Everything here is zero-copy over slices and
//! never panics on any input (fuzzed by `wire_decode`).

pub mod codec;
pub mod frame;
pub mod header;
pub mod varint;

pub use codec::{BufferTooSmall, Reader, Writer};
pub use frame::{Ack, Frame, FrameError, Frames, frames};
pub use header::{Header, HeaderError, Init};
