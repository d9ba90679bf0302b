//! Rendezvous: the directory (register with proof of key possession, signed address
//! bindings, unique hostnames, tags and published tools, resolve and find), the trust relay
//! (requests, signed decisions, revocation), and relay policy with quotas. Nodes reach the
//! server over ordinary encrypted tern sessions with its key pinned; on top of that every
//! request is signed (see `msg`).
//!
//! `server` is the sans-IO server state, `client` the node side; `record` holds the signed
//! address ↔ key binding and the field rules.

pub mod channel;
pub mod client;
pub mod msg;
pub mod record;
pub mod server;

pub use client::{Client, ClientEvent};
pub use msg::{Entry, ErrorCode, Message, Push, Query, Registration, Request, Response};
pub use record::{SignedRecord, Tool};
pub use server::{RelayDenied, Server, ServerConfig, Snapshot};
