//! Rendezvous messages and their binary codec. Messages travel over an encrypted tern
//! session between a node and the rendezvous server; on top of that, every request is
//! signed by the node's Ed25519 key over the *whole* request, the server's key, a time and a
//! nonce, so a captured request cannot be replayed, re-targeted or altered (Pilot S4), and a
//! trust decision carries the decider's own signature.
//!
//! ```text
//! request   = 0x01 req_id:u32 time_ms:u64 nonce:[16] body signature:[64]
//! response  = 0x02 req_id:u32 body
//! push      = 0x03 body
//! ```
//! The signature covers `"tern rdv v1" ‖ server key ‖ every request byte before it`.

use std::net::SocketAddr;

use super::record::{MAX_TAGS, MAX_TOOLS, SignedRecord, Tool};
use crate::identity::{Identity, PeerId};
use crate::wire::codec::{BufferTooSmall, Reader, Writer};

/// Largest encoded rendezvous message.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Most host candidates a node may publish.
pub const MAX_CANDIDATES: usize = 8;
/// Most entries in one `Found` answer.
pub const MAX_FOUND: usize = 64;
/// Longest free text (trust-request note, search words, error message).
pub const MAX_TEXT: usize = 512;

const SIG_DOMAIN: &[u8] = b"tern rdv v1";

/// What to look a node up by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// Its hostname.
    Hostname(String),
    /// Its overlay address.
    Address(crate::Address),
    /// Its key.
    Peer(PeerId),
}

/// A node's registration: everything it publishes. Registering again replaces it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registration {
    /// Wanted hostname (unique in the directory; first come, kept by its key).
    pub hostname: Option<String>,
    /// Capability tags.
    pub tags: Vec<String>,
    /// Published MCP tools (for `find` by words).
    pub tools: Vec<Tool>,
    /// Public nodes can be resolved and found by anyone; private ones only by peers they trust.
    pub public: bool,
    /// Host (LAN) addresses the node listens on.
    pub candidates: Vec<SocketAddr>,
}

/// A request body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Register or refresh.
    Register(Registration),
    /// Look a node up.
    Resolve(Query),
    /// Find public nodes (or nodes that trust the asker) whose tags, hostname or tools match
    /// the words, best first.
    Find {
        /// Space-separated words; a word `tag:x` matches only the tag `x`.
        words: String,
        /// Most results wanted.
        limit: u16,
    },
    /// Ask `target` to trust us (relayed by the server; the target decides).
    TrustRequest {
        /// Whom to ask.
        target: Query,
        /// A note for the target's operator.
        note: String,
    },
    /// Answer a trust request (signed by the deciding node).
    TrustDecision {
        /// Who asked.
        requester: PeerId,
        /// Approve or reject.
        approve: bool,
    },
    /// Withdraw trust in `peer` (both directions).
    Revoke {
        /// The peer.
        peer: PeerId,
    },
    /// List trust requests waiting for our decision.
    Pending,
    /// Remove our registration.
    Deregister,
}

/// How to reach a node, given only to peers allowed to know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// Host (LAN) addresses.
    pub host: Vec<SocketAddr>,
    /// Addresses the server observed the node's packets come from.
    pub reflexive: Vec<SocketAddr>,
}

/// One directory entry in a `Resolved`/`Found` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The signed binding.
    pub record: SignedRecord,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its published tools.
    pub tools: Vec<Tool>,
    /// Whether it is public.
    pub public: bool,
    /// Whether it is connected to the server now.
    pub online: bool,
    /// Endpoints, if the asker may see them.
    pub endpoints: Option<Endpoints>,
}

/// A pending trust request, as shown to its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    /// Who asks.
    pub from: SignedRecord,
    /// Their note.
    pub note: String,
    /// When it was made (unix ms).
    pub time_ms: u64,
}

/// Error codes in `Response::Error`. Stable: the CLI maps them to its own codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Malformed request.
    BadRequest = 1,
    /// Signature, time or nonce check failed (includes replays).
    BadSignature = 2,
    /// The hostname belongs to another key.
    HostnameTaken = 3,
    /// No such node.
    NotFound = 4,
    /// The node exists but is private and does not trust the asker.
    NotAllowed = 5,
    /// A limit was hit (too many requests or registrations).
    RateLimited = 6,
    /// The asker must register first.
    NotRegistered = 7,
    /// A field is invalid (see the message).
    InvalidField = 8,
}

impl ErrorCode {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::BadRequest,
            2 => Self::BadSignature,
            3 => Self::HostnameTaken,
            4 => Self::NotFound,
            5 => Self::NotAllowed,
            6 => Self::RateLimited,
            7 => Self::NotRegistered,
            8 => Self::InvalidField,
            _ => return None,
        })
    }
}

/// A response body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// Registration accepted; here is our signed record.
    Registered {
        /// The record.
        record: SignedRecord,
    },
    /// Lookup result.
    Resolved(Box<Entry>),
    /// Search results, best first.
    Found(Vec<Entry>),
    /// Trust requests waiting for us.
    Pending(Vec<PendingRequest>),
    /// Done.
    Ok,
    /// Refused.
    Error {
        /// Why.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// Unsolicited server → node messages.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Push {
    /// Someone asks us to trust them.
    TrustRequested(PendingRequest),
    /// A peer answered our trust request (its signed decision was checked by the server).
    TrustDecided {
        /// The deciding peer.
        by: PeerId,
        /// Its decision.
        approve: bool,
    },
    /// A peer withdrew its trust in us.
    Revoked {
        /// The peer.
        by: PeerId,
    },
}

/// A decoded signed request (signature not yet checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRequest {
    /// Correlates the response.
    pub req_id: u32,
    /// Signer's wall clock (unix ms).
    pub time_ms: u64,
    /// Random, never reused.
    pub nonce: [u8; 16],
    /// The request.
    pub body: Request,
    /// Ed25519 signature.
    pub signature: [u8; 64],
    /// Length of the signed prefix of the encoding.
    signed_len: usize,
}

/// Any message on the rendezvous channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Node → server.
    Request(SignedRequest),
    /// Server → node, answering `req_id`.
    Response {
        /// The request answered.
        req_id: u32,
        /// The answer.
        body: Response,
    },
    /// Server → node, unsolicited.
    Push(Push),
}

fn text(r: &mut Reader<'_>, max: usize) -> Option<String> {
    let b = r.varint_bytes()?;
    if b.len() > max {
        return None;
    }
    String::from_utf8(b.to_vec()).ok()
}

fn opt_text(r: &mut Reader<'_>, max: usize) -> Option<Option<String>> {
    let s = text(r, max)?;
    Some((!s.is_empty()).then_some(s))
}

fn count(r: &mut Reader<'_>, max: usize) -> Option<usize> {
    let n = usize::try_from(r.varint()?).ok()?;
    (n <= max).then_some(n)
}

fn enc_query(w: &mut Writer<'_>, q: &Query) -> Result<(), BufferTooSmall> {
    match q {
        Query::Hostname(h) => {
            w.u8(1)?;
            w.varint_bytes(h.as_bytes())
        }
        Query::Address(a) => {
            w.u8(2)?;
            w.bytes(&a.to_bytes())
        }
        Query::Peer(p) => {
            w.u8(3)?;
            w.bytes(p.as_bytes())
        }
    }
}

fn dec_query(r: &mut Reader<'_>) -> Option<Query> {
    Some(match r.u8()? {
        1 => Query::Hostname(text(r, super::record::MAX_HOSTNAME)?),
        2 => Query::Address(crate::Address::from_bytes(r.array()?)),
        3 => Query::Peer(PeerId::from_bytes(r.array()?)),
        _ => return None,
    })
}

fn enc_strings(w: &mut Writer<'_>, v: &[String]) -> Result<(), BufferTooSmall> {
    w.varint(v.len() as u64)?;
    for s in v {
        w.varint_bytes(s.as_bytes())?;
    }
    Ok(())
}

fn dec_strings(r: &mut Reader<'_>, max_n: usize, max_len: usize) -> Option<Vec<String>> {
    let n = count(r, max_n)?;
    (0..n).map(|_| text(r, max_len)).collect()
}

fn enc_tools(w: &mut Writer<'_>, v: &[Tool]) -> Result<(), BufferTooSmall> {
    w.varint(v.len() as u64)?;
    for t in v {
        w.varint_bytes(t.name.as_bytes())?;
        w.varint_bytes(t.description.as_bytes())?;
    }
    Ok(())
}

fn dec_tools(r: &mut Reader<'_>) -> Option<Vec<Tool>> {
    let n = count(r, MAX_TOOLS)?;
    (0..n)
        .map(|_| {
            Some(Tool {
                name: text(r, super::record::MAX_TOOL_NAME)?,
                description: text(r, super::record::MAX_TOOL_DESCRIPTION)?,
            })
        })
        .collect()
}

fn enc_addrs(w: &mut Writer<'_>, v: &[SocketAddr]) -> Result<(), BufferTooSmall> {
    w.varint(v.len() as u64)?;
    v.iter().try_for_each(|a| w.socket_addr(*a))
}

fn dec_addrs(r: &mut Reader<'_>) -> Option<Vec<SocketAddr>> {
    let n = count(r, MAX_CANDIDATES)?;
    (0..n).map(|_| r.socket_addr()).collect()
}

fn enc_request(w: &mut Writer<'_>, b: &Request) -> Result<(), BufferTooSmall> {
    match b {
        Request::Register(reg) => {
            w.u8(1)?;
            w.varint_bytes(reg.hostname.as_deref().unwrap_or("").as_bytes())?;
            enc_strings(w, &reg.tags)?;
            enc_tools(w, &reg.tools)?;
            w.u8(u8::from(reg.public))?;
            enc_addrs(w, &reg.candidates)
        }
        Request::Resolve(q) => {
            w.u8(2)?;
            enc_query(w, q)
        }
        Request::Find { words, limit } => {
            w.u8(3)?;
            w.varint_bytes(words.as_bytes())?;
            w.u16(*limit)
        }
        Request::TrustRequest { target, note } => {
            w.u8(4)?;
            enc_query(w, target)?;
            w.varint_bytes(note.as_bytes())
        }
        Request::TrustDecision { requester, approve } => {
            w.u8(5)?;
            w.bytes(requester.as_bytes())?;
            w.u8(u8::from(*approve))
        }
        Request::Revoke { peer } => {
            w.u8(6)?;
            w.bytes(peer.as_bytes())
        }
        Request::Pending => w.u8(7),
        Request::Deregister => w.u8(8),
    }
}

fn dec_request(r: &mut Reader<'_>) -> Option<Request> {
    Some(match r.u8()? {
        1 => Request::Register(Registration {
            hostname: opt_text(r, super::record::MAX_HOSTNAME)?,
            tags: dec_strings(r, MAX_TAGS, super::record::MAX_TAG)?,
            tools: dec_tools(r)?,
            public: r.u8()? != 0,
            candidates: dec_addrs(r)?,
        }),
        2 => Request::Resolve(dec_query(r)?),
        3 => Request::Find {
            words: text(r, MAX_TEXT)?,
            limit: r.u16()?,
        },
        4 => Request::TrustRequest {
            target: dec_query(r)?,
            note: text(r, MAX_TEXT)?,
        },
        5 => Request::TrustDecision {
            requester: PeerId::from_bytes(r.array()?),
            approve: r.u8()? != 0,
        },
        6 => Request::Revoke {
            peer: PeerId::from_bytes(r.array()?),
        },
        7 => Request::Pending,
        8 => Request::Deregister,
        _ => return None,
    })
}

fn enc_entry(w: &mut Writer<'_>, e: &Entry) -> Result<(), BufferTooSmall> {
    e.record.encode(w)?;
    enc_strings(w, &e.tags)?;
    enc_tools(w, &e.tools)?;
    w.u8(u8::from(e.public) | (u8::from(e.online) << 1))?;
    match &e.endpoints {
        None => w.u8(0),
        Some(ep) => {
            w.u8(1)?;
            enc_addrs(w, &ep.host)?;
            enc_addrs(w, &ep.reflexive)
        }
    }
}

fn dec_entry(r: &mut Reader<'_>) -> Option<Entry> {
    let record = SignedRecord::decode(r)?;
    let tags = dec_strings(r, MAX_TAGS, super::record::MAX_TAG)?;
    let tools = dec_tools(r)?;
    let flags = r.u8()?;
    let endpoints = match r.u8()? {
        0 => None,
        1 => Some(Endpoints {
            host: dec_addrs(r)?,
            reflexive: dec_addrs(r)?,
        }),
        _ => return None,
    };
    Some(Entry {
        record,
        tags,
        tools,
        public: flags & 1 != 0,
        online: flags & 2 != 0,
        endpoints,
    })
}

fn enc_pending(w: &mut Writer<'_>, p: &PendingRequest) -> Result<(), BufferTooSmall> {
    p.from.encode(w)?;
    w.varint_bytes(p.note.as_bytes())?;
    w.u64(p.time_ms)
}

fn dec_pending(r: &mut Reader<'_>) -> Option<PendingRequest> {
    Some(PendingRequest {
        from: SignedRecord::decode(r)?,
        note: text(r, MAX_TEXT)?,
        time_ms: r.u64()?,
    })
}

impl Message {
    /// Encodes a response.
    pub fn encode_response(
        req_id: u32,
        body: &Response,
        out: &mut [u8],
    ) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::new(out);
        w.u8(2)?;
        w.u32(req_id)?;
        match body {
            Response::Registered { record } => {
                w.u8(1)?;
                record.encode(&mut w)?;
            }
            Response::Resolved(e) => {
                w.u8(2)?;
                enc_entry(&mut w, e)?;
            }
            Response::Found(v) => {
                w.u8(3)?;
                w.varint(v.len().min(MAX_FOUND) as u64)?;
                v.iter()
                    .take(MAX_FOUND)
                    .try_for_each(|e| enc_entry(&mut w, e))?;
            }
            Response::Pending(v) => {
                w.u8(4)?;
                w.varint(v.len().min(MAX_FOUND) as u64)?;
                v.iter()
                    .take(MAX_FOUND)
                    .try_for_each(|p| enc_pending(&mut w, p))?;
            }
            Response::Ok => w.u8(5)?,
            Response::Error { code, message } => {
                w.u8(6)?;
                w.u8(*code as u8)?;
                let mut end = message.len().min(MAX_TEXT);
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                w.varint_bytes(&message.as_bytes()[..end])?;
            }
        }
        Ok(w.len())
    }

    /// Encodes a push.
    pub fn encode_push(body: &Push, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::new(out);
        w.u8(3)?;
        match body {
            Push::TrustRequested(p) => {
                w.u8(1)?;
                enc_pending(&mut w, p)?;
            }
            Push::TrustDecided { by, approve } => {
                w.u8(2)?;
                w.bytes(by.as_bytes())?;
                w.u8(u8::from(*approve))?;
            }
            Push::Revoked { by } => {
                w.u8(3)?;
                w.bytes(by.as_bytes())?;
            }
        }
        Ok(w.len())
    }

    /// Encodes and signs a request for the server `server`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_request(
        identity: &Identity,
        server: &PeerId,
        req_id: u32,
        time_ms: u64,
        nonce: [u8; 16],
        body: &Request,
        out: &mut [u8],
    ) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::new(out);
        w.u8(1)?;
        w.u32(req_id)?;
        w.u64(time_ms)?;
        w.bytes(&nonce)?;
        enc_request(&mut w, body)?;
        let signed_len = w.len();
        let mut msg = Vec::with_capacity(SIG_DOMAIN.len() + 32 + signed_len);
        msg.extend_from_slice(SIG_DOMAIN);
        msg.extend_from_slice(server.as_bytes());
        msg.extend_from_slice(&w.written()[..signed_len]);
        let sig = identity.sign(&msg);
        w.bytes(&sig)?;
        Ok(w.len())
    }

    /// Decodes any message. Never panics; `None` for anything malformed or oversized.
    pub fn decode(buf: &[u8]) -> Option<Message> {
        if buf.len() > MAX_MESSAGE {
            return None;
        }
        let mut r = Reader::new(buf);
        let msg = match r.u8()? {
            1 => {
                let req_id = r.u32()?;
                let time_ms = r.u64()?;
                let nonce = r.array()?;
                let body = dec_request(&mut r)?;
                let signed_len = r.position();
                let signature = r.array()?;
                Message::Request(SignedRequest {
                    req_id,
                    time_ms,
                    nonce,
                    body,
                    signature,
                    signed_len,
                })
            }
            2 => {
                let req_id = r.u32()?;
                let body = match r.u8()? {
                    1 => Response::Registered {
                        record: SignedRecord::decode(&mut r)?,
                    },
                    2 => Response::Resolved(Box::new(dec_entry(&mut r)?)),
                    3 => {
                        let n = count(&mut r, MAX_FOUND)?;
                        Response::Found((0..n).map(|_| dec_entry(&mut r)).collect::<Option<_>>()?)
                    }
                    4 => {
                        let n = count(&mut r, MAX_FOUND)?;
                        Response::Pending(
                            (0..n).map(|_| dec_pending(&mut r)).collect::<Option<_>>()?,
                        )
                    }
                    5 => Response::Ok,
                    6 => Response::Error {
                        code: ErrorCode::from_u8(r.u8()?)?,
                        message: text(&mut r, MAX_TEXT)?,
                    },
                    _ => return None,
                };
                Message::Response { req_id, body }
            }
            3 => Message::Push(match r.u8()? {
                1 => Push::TrustRequested(dec_pending(&mut r)?),
                2 => Push::TrustDecided {
                    by: PeerId::from_bytes(r.array()?),
                    approve: r.u8()? != 0,
                },
                3 => Push::Revoked {
                    by: PeerId::from_bytes(r.array()?),
                },
                _ => return None,
            }),
            _ => return None,
        };
        r.is_empty().then_some(msg)
    }
}

impl SignedRequest {
    /// Checks the signature by `signer` for `server` against the original encoding `raw`.
    pub fn verify(&self, raw: &[u8], signer: &PeerId, server: &PeerId) -> bool {
        let Some(prefix) = raw.get(..self.signed_len) else {
            return false;
        };
        let mut msg = Vec::with_capacity(SIG_DOMAIN.len() + 32 + prefix.len());
        msg.extend_from_slice(SIG_DOMAIN);
        msg.extend_from_slice(server.as_bytes());
        msg.extend_from_slice(prefix);
        signer.verify(&msg, &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Address;

    fn ids() -> (Identity, Identity) {
        (
            Identity::from_secret([1; 32]),
            Identity::from_secret([9; 32]),
        )
    }

    #[test]
    fn requests_round_trip_and_verify() {
        let (node, server) = ids();
        let reqs = vec![
            Request::Register(Registration {
                hostname: Some("alpha".into()),
                tags: vec!["mcp".into(), "search".into()],
                tools: vec![Tool::new("lookup", "find papers by DOI")],
                public: true,
                candidates: vec!["192.168.1.2:4000".parse().unwrap()],
            }),
            Request::Resolve(Query::Hostname("bravo".into())),
            Request::Resolve(Query::Address(Address::new(0, 5))),
            Request::Find {
                words: "weather tag:mcp".into(),
                limit: 10,
            },
            Request::TrustRequest {
                target: Query::Peer(server.peer_id()),
                note: "hi".into(),
            },
            Request::TrustDecision {
                requester: server.peer_id(),
                approve: true,
            },
            Request::Revoke {
                peer: server.peer_id(),
            },
            Request::Pending,
            Request::Deregister,
        ];
        let mut buf = vec![0u8; 4096];
        for (i, body) in reqs.into_iter().enumerate() {
            let n = Message::encode_request(
                &node,
                &server.peer_id(),
                i as u32,
                1000,
                [i as u8; 16],
                &body,
                &mut buf,
            )
            .unwrap();
            let Some(Message::Request(req)) = Message::decode(&buf[..n]) else {
                panic!("{body:?}")
            };
            assert_eq!(req.body, body);
            assert!(req.verify(&buf[..n], &node.peer_id(), &server.peer_id()));
            // Another server, another signer, or any flipped byte: rejected.
            assert!(!req.verify(&buf[..n], &node.peer_id(), &node.peer_id()));
            assert!(!req.verify(&buf[..n], &server.peer_id(), &server.peer_id()));
            let mut bad = buf[..n].to_vec();
            bad[6] ^= 1;
            if let Some(Message::Request(r2)) = Message::decode(&bad) {
                assert!(!r2.verify(&bad, &node.peer_id(), &server.peer_id()));
            }
        }
    }

    #[test]
    fn responses_and_pushes_round_trip() {
        let (node, server) = ids();
        let record = SignedRecord::sign(
            &server,
            node.peer_id(),
            Address::new(0, 1),
            Some("a".into()),
            9,
        );
        let entry = Entry {
            record: record.clone(),
            tags: vec!["x".into()],
            tools: vec![Tool::new("t", "d")],
            public: false,
            online: true,
            endpoints: Some(Endpoints {
                host: vec!["10.0.0.1:1".parse().unwrap()],
                reflexive: vec![],
            }),
        };
        let pending = PendingRequest {
            from: record.clone(),
            note: "please".into(),
            time_ms: 5,
        };
        let mut buf = vec![0u8; 8192];
        for body in [
            Response::Registered {
                record: record.clone(),
            },
            Response::Resolved(Box::new(entry.clone())),
            Response::Found(vec![entry.clone(), entry.clone()]),
            Response::Pending(vec![pending.clone()]),
            Response::Ok,
            Response::Error {
                code: ErrorCode::HostnameTaken,
                message: "taken".into(),
            },
        ] {
            let n = Message::encode_response(7, &body, &mut buf).unwrap();
            assert_eq!(
                Message::decode(&buf[..n]),
                Some(Message::Response { req_id: 7, body })
            );
        }
        for p in [
            Push::TrustRequested(pending),
            Push::TrustDecided {
                by: node.peer_id(),
                approve: false,
            },
            Push::Revoked { by: node.peer_id() },
        ] {
            let n = Message::encode_push(&p, &mut buf).unwrap();
            assert_eq!(Message::decode(&buf[..n]), Some(Message::Push(p)));
        }
    }

    #[test]
    fn malformed_messages_are_none() {
        assert_eq!(Message::decode(&[]), None);
        assert_eq!(Message::decode(&[9]), None);
        assert_eq!(
            Message::decode(&[2, 0, 0, 0, 1, 5, 0]),
            None,
            "trailing byte"
        );
        // A count above the cap is refused before allocating.
        assert_eq!(Message::decode(&[2, 0, 0, 0, 1, 3, 0x80, 0, 0x10, 0]), None);
    }
}
