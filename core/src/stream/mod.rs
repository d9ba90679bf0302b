//! Streams (placeholder while the pieces are tested).
pub mod flow;
pub mod recv;
pub mod send;
