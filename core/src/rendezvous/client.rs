//! The node's side of the rendezvous protocol: builds signed requests (fresh nonce, current
//! time, bound to the pinned server key), matches responses to requests, checks every record
//! the server returns against the pinned key.

use std::collections::BTreeMap;

use super::msg::{Message, Push, Request, Response};
use super::record::SignedRecord;
use crate::identity::{Identity, PeerId};
use crate::rng::NodeRng;

/// Most requests awaiting an answer; older ones are forgotten (their answer is then dropped).
pub const MAX_OUTSTANDING: usize = 256;

/// What the client got from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The answer to request `req_id`.
    Response {
        /// The request.
        req_id: u32,
        /// The answer (records already verified).
        body: Response,
    },
    /// An unsolicited message.
    Push(Push),
}

/// Why a server message was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Not a valid message.
    #[error("malformed rendezvous message")]
    Malformed,
    /// A response to no outstanding request.
    #[error("unexpected response")]
    Unexpected,
    /// A record not signed by the pinned server key, or expired.
    #[error("record signature invalid")]
    BadRecord,
}

/// Rendezvous client state for one server.
#[derive(Debug)]
pub struct Client {
    server: PeerId,
    rng: NodeRng,
    next_id: u32,
    outstanding: BTreeMap<u32, ()>,
}

impl Client {
    /// A client for the server whose key is `server` (pinned in the node's config).
    pub fn new(server: PeerId, seed: [u8; 32]) -> Self {
        Self {
            server,
            rng: NodeRng::new(seed),
            next_id: 1,
            outstanding: BTreeMap::new(),
        }
    }

    /// The pinned server key.
    pub fn server(&self) -> PeerId {
        self.server
    }

    /// Encodes and signs `body`; returns its id and the bytes to send on the rendezvous
    /// channel.
    pub fn request(&mut self, identity: &Identity, unix_ms: u64, body: &Request) -> (u32, Vec<u8>) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut nonce = [0u8; 16];
        self.rng.fill(&mut nonce);
        let mut out = vec![0u8; super::msg::MAX_MESSAGE];
        let n = Message::encode_request(identity, &self.server, id, unix_ms, nonce, body, &mut out)
            .unwrap_or(0);
        out.truncate(n);
        if self.outstanding.len() >= MAX_OUTSTANDING
            && let Some((&oldest, _)) = self.outstanding.iter().next()
        {
            self.outstanding.remove(&oldest);
        }
        self.outstanding.insert(id, ());
        (id, out)
    }

    /// Decodes a server message; verifies records against the pinned key at `unix_ms`.
    pub fn handle(&mut self, unix_ms: u64, raw: &[u8]) -> Result<ClientEvent, ClientError> {
        let msg = Message::decode(raw).ok_or(ClientError::Malformed)?;
        let ok = |r: &SignedRecord| r.verify(&self.server, unix_ms);
        match msg {
            Message::Response { req_id, body } => {
                if self.outstanding.remove(&req_id).is_none() {
                    return Err(ClientError::Unexpected);
                }
                let valid = match &body {
                    Response::Registered { record } => ok(record),
                    Response::Resolved(e) => ok(&e.record),
                    Response::Found(v) => v.iter().all(|e| ok(&e.record)),
                    Response::Pending(v) => v.iter().all(|p| ok(&p.from)),
                    _ => true,
                };
                if !valid {
                    return Err(ClientError::BadRecord);
                }
                Ok(ClientEvent::Response { req_id, body })
            }
            Message::Push(p) => {
                if let Push::TrustRequested(req) = &p
                    && !ok(&req.from)
                {
                    return Err(ClientError::BadRecord);
                }
                Ok(ClientEvent::Push(p))
            }
            Message::Request(_) => Err(ClientError::Unexpected),
        }
    }
}
