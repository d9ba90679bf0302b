//! Directory records: what the directory knows about a node, the limits on every field, and
//! the directory-signed binding between an address and a key.

use std::fmt;

use crate::addr::Address;
use crate::identity::{Identity, PeerId};
use crate::wire::codec::{BufferTooSmall, Reader, Writer};

/// Longest hostname (DNS label rules: `a-z`, `0-9`, `-`, not at either end).
pub const MAX_HOSTNAME: usize = 63;
/// Longest tag (same alphabet as hostnames, plus `.` and `_`).
pub const MAX_TAG: usize = 32;
/// Most tags per node.
pub const MAX_TAGS: usize = 16;
/// Most published tools per node (MCP capability discovery).
pub const MAX_TOOLS: usize = 128;
/// Longest tool name.
pub const MAX_TOOL_NAME: usize = 64;
/// Longest tool description kept by the directory (longer ones are cut at a char boundary).
pub const MAX_TOOL_DESCRIPTION: usize = 200;

/// A field failed validation; the message says which and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// Bad hostname.
    #[error(
        "hostname {0:?} is invalid: use 1-63 characters a-z, 0-9 and '-', not starting or ending with '-'"
    )]
    Hostname(String),
    /// Bad tag.
    #[error("tag {0:?} is invalid: use 1-32 characters a-z, 0-9, '-', '_' and '.'")]
    Tag(String),
    /// Too many tags.
    #[error("too many tags: at most {MAX_TAGS}")]
    TooManyTags,
    /// Bad or too many tools.
    #[error("tool list is invalid: at most {MAX_TOOLS} tools, names 1-64 printable characters")]
    Tools,
}

/// Checks a hostname: lowercase DNS label.
pub fn validate_hostname(h: &str) -> Result<(), FieldError> {
    let ok = !h.is_empty()
        && h.len() <= MAX_HOSTNAME
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !h.starts_with('-')
        && !h.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(FieldError::Hostname(h.to_owned()))
    }
}

/// Checks a tag.
pub fn validate_tag(t: &str) -> Result<(), FieldError> {
    let ok = !t.is_empty()
        && t.len() <= MAX_TAG
        && t.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(FieldError::Tag(t.to_owned()))
    }
}

/// A tool an MCP server exposes, as published in the directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tool {
    /// Tool name.
    pub name: String,
    /// Short description (cut to [`MAX_TOOL_DESCRIPTION`]).
    pub description: String,
}

impl Tool {
    /// Builds a tool entry, cutting the description to the directory's limit.
    pub fn new(name: impl Into<String>, description: &str) -> Self {
        let mut end = description.len().min(MAX_TOOL_DESCRIPTION);
        while !description.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            name: name.into(),
            description: description[..end].to_owned(),
        }
    }
}

/// Checks a tool list.
pub fn validate_tools(tools: &[Tool]) -> Result<(), FieldError> {
    let ok = tools.len() <= MAX_TOOLS
        && tools.iter().all(|t| {
            !t.name.is_empty()
                && t.name.len() <= MAX_TOOL_NAME
                && !t.name.chars().any(char::is_control)
                && t.description.len() <= MAX_TOOL_DESCRIPTION
        });
    if ok { Ok(()) } else { Err(FieldError::Tools) }
}

/// The directory's signed statement "address `address` belongs to key `peer`, with this
/// hostname, until `expires_ms`". Anyone holding the directory's key can check it, so
/// records can be cached and forwarded without trusting the carrier.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedRecord {
    /// The node's key.
    pub peer: PeerId,
    /// Its overlay address.
    pub address: Address,
    /// Its hostname, if it has one.
    pub hostname: Option<String>,
    /// Unix time (ms) after which the record must not be used.
    pub expires_ms: u64,
    /// The directory's Ed25519 signature over the fields above.
    pub signature: [u8; 64],
}

impl fmt::Debug for SignedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRecord")
            .field("peer", &self.peer)
            .field("address", &self.address)
            .field("hostname", &self.hostname)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

const RECORD_DOMAIN: &[u8] = b"tern record v1";

fn record_message(
    directory: &PeerId,
    peer: &PeerId,
    address: Address,
    hostname: Option<&str>,
    expires_ms: u64,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(RECORD_DOMAIN);
    out.extend_from_slice(directory.as_bytes());
    out.extend_from_slice(peer.as_bytes());
    out.extend_from_slice(&address.to_bytes());
    let h = hostname.unwrap_or("");
    out.push(h.len() as u8);
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&expires_ms.to_be_bytes());
}

impl SignedRecord {
    /// Signs a record with the directory's identity.
    pub fn sign(
        directory: &Identity,
        peer: PeerId,
        address: Address,
        hostname: Option<String>,
        expires_ms: u64,
    ) -> Self {
        let mut msg = Vec::with_capacity(128);
        record_message(
            &directory.peer_id(),
            &peer,
            address,
            hostname.as_deref(),
            expires_ms,
            &mut msg,
        );
        Self {
            peer,
            address,
            hostname,
            expires_ms,
            signature: directory.sign(&msg),
        }
    }

    /// Whether `directory` signed this record and it has not expired at `unix_ms`.
    pub fn verify(&self, directory: &PeerId, unix_ms: u64) -> bool {
        if unix_ms > self.expires_ms {
            return false;
        }
        let mut msg = Vec::with_capacity(128);
        record_message(
            directory,
            &self.peer,
            self.address,
            self.hostname.as_deref(),
            self.expires_ms,
            &mut msg,
        );
        directory.verify(&msg, &self.signature)
    }

    /// Encodes the record.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        w.bytes(self.peer.as_bytes())?;
        w.bytes(&self.address.to_bytes())?;
        w.varint_bytes(self.hostname.as_deref().unwrap_or("").as_bytes())?;
        w.u64(self.expires_ms)?;
        w.bytes(&self.signature)
    }

    /// Decodes a record (not verified: call [`SignedRecord::verify`]).
    pub fn decode(r: &mut Reader<'_>) -> Option<Self> {
        let peer = PeerId::from_bytes(r.array()?);
        let address = Address::from_bytes(r.array()?);
        let h = r.varint_bytes()?;
        if h.len() > MAX_HOSTNAME {
            return None;
        }
        let h = std::str::from_utf8(h).ok()?;
        let hostname = (!h.is_empty()).then(|| h.to_owned());
        Some(Self {
            peer,
            address,
            hostname,
            expires_ms: r.u64()?,
            signature: r.array()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_and_tag_rules() {
        for ok in ["a", "my-mcp-server", "x1", &"a".repeat(63)] {
            assert_eq!(validate_hostname(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "ä",
            &"a".repeat(64),
            "a b",
        ] {
            assert!(validate_hostname(bad).is_err(), "{bad}");
        }
        assert_eq!(validate_tag("mcp.search_v2"), Ok(()));
        assert!(validate_tag("Search").is_err());
        assert!(validate_tag(&"t".repeat(33)).is_err());
    }

    #[test]
    fn records_verify_only_with_the_right_key_and_before_expiry() {
        let dir = Identity::from_secret([1; 32]);
        let other = Identity::from_secret([2; 32]);
        let node = Identity::from_secret([3; 32]).peer_id();
        let rec = SignedRecord::sign(&dir, node, Address::new(0, 77), Some("alpha".into()), 1000);
        assert!(rec.verify(&dir.peer_id(), 999));
        assert!(!rec.verify(&dir.peer_id(), 1001), "expired");
        assert!(
            !rec.verify(&other.peer_id(), 999),
            "someone else's directory"
        );
        let mut forged = rec.clone();
        forged.hostname = Some("bravo".into());
        assert!(!forged.verify(&dir.peer_id(), 999));
        let mut buf = [0u8; 256];
        let mut w = Writer::new(&mut buf);
        rec.encode(&mut w).unwrap();
        let n = w.len();
        assert_eq!(SignedRecord::decode(&mut Reader::new(&buf[..n])), Some(rec));
    }

    #[test]
    fn tool_descriptions_are_cut_at_char_boundaries() {
        let t = Tool::new("search", &"é".repeat(150));
        assert!(t.description.len() <= MAX_TOOL_DESCRIPTION);
        assert!(t.description.chars().all(|c| c == 'é'));
    }
}
