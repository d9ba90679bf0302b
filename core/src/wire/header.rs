//! Cleartext packet headers. Every tern datagram starts with one type byte:
//!
//! | type | packet | layout after the type byte |
//! |---|---|---|
//! | `0x01` | handshake init | version, suite, AEAD offer, sender index (u32), flags, [cookie 16], noise len (u16), noise, zero padding, [mac1 16] |
//! | `0x02` | handshake response | receiver index (u32), noise len (u16), noise |
//! | `0x03` | handshake final (XX msg 3) | receiver index (u32), noise len (u16), noise |
//! | `0x04` | cookie (retry) | receiver index (u32), cookie (16) |
//! | `0x05` | reject hint | receiver index (u32), reason (u8) |
//! | `0x06` | stateless reset | the unknown receiver index (u32), its reset token (16) |
//! | `0x10`/`0x11` | data (low bit = key phase) | receiver index (u32), counter (u64), AEAD ciphertext of frames, tag (16) |
//! | `0x20` | relay envelope | reserved for the rendezvous relay |
//!
//! All integers are big-endian. Handshake inits are padded to [`INIT_MIN_LEN`] so that no
//! response to an unvalidated address can exceed three times what it sent.

use super::codec::{BufferTooSmall, Reader, Writer};

/// Wire protocol version carried in handshake inits.
pub const VERSION: u8 = 1;
/// Type byte of a handshake init.
pub const TYPE_INIT: u8 = 0x01;
/// Type byte of a handshake response.
pub const TYPE_RESPONSE: u8 = 0x02;
/// Type byte of the third XX handshake message.
pub const TYPE_FINAL: u8 = 0x03;
/// Type byte of a cookie (stateless retry).
pub const TYPE_COOKIE: u8 = 0x04;
/// Type byte of an (unauthenticated) reject hint.
pub const TYPE_REJECT: u8 = 0x05;
/// Type byte of a stateless reset.
pub const TYPE_RESET: u8 = 0x06;
/// Length of a stateless reset: smaller than the smallest data packet that can trigger one.
pub const RESET_LEN: usize = 1 + 4 + crate::crypto::reset::TOKEN_LEN;
/// Type byte of a data packet with key phase 0 (`| 1` for phase 1).
pub const TYPE_DATA: u8 = 0x10;
/// Type byte reserved for relay envelopes.
pub const TYPE_RELAY: u8 = 0x20;

/// Length of the data packet header: type, receiver index, counter.
pub const DATA_HEADER_LEN: usize = 1 + 4 + 8;
/// Length of the AEAD tag that ends every data packet.
pub const TAG_LEN: usize = 16;
/// Smallest valid data packet (empty payload).
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + TAG_LEN;
/// Handshake inits are padded to at least this size (as QUIC pads its Initial packets).
pub const INIT_MIN_LEN: usize = 1200;
/// Length of cookies and MACs.
pub const COOKIE_LEN: usize = 16;
/// Length of the fixed part of an init before the optional cookie.
pub const INIT_FIXED_LEN: usize = 1 + 1 + 1 + 1 + 4 + 1;
/// Bytes of an init covered by the Noise prologue (type, version, suite, offer, sender).
pub const INIT_PROLOGUE_LEN: usize = 8;

/// Init flag: a cookie follows the fixed header.
pub const FLAG_COOKIE: u8 = 0x01;
/// Init flag: the last 16 bytes are a MAC keyed by the responder's public key.
pub const FLAG_MAC1: u8 = 0x02;

/// Reason codes carried by a reject hint.
pub mod reject {
    /// The init was not made for this node's key (MAC check failed).
    pub const WRONG_KEY: u8 = 1;
    /// Unsupported version or suite.
    pub const UNSUPPORTED: u8 = 2;
}

/// A parsed cleartext header. Borrowed fields point into the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header<'a> {
    /// Handshake init.
    Init(Init<'a>),
    /// Handshake response (Noise message 2).
    Response {
        /// The initiator's index this answers.
        receiver: u32,
        /// The Noise message.
        noise: &'a [u8],
    },
    /// Third XX message.
    Final {
        /// The responder's index.
        receiver: u32,
        /// The Noise message.
        noise: &'a [u8],
    },
    /// Stateless retry: resend the init with this cookie.
    Cookie {
        /// The initiator's index this answers.
        receiver: u32,
        /// Opaque cookie to echo.
        cookie: [u8; COOKIE_LEN],
    },
    /// Unauthenticated hint that the responder could not use the init.
    Reject {
        /// The initiator's index this answers.
        receiver: u32,
        /// See [`reject`].
        reason: u8,
    },
    /// "I have no session with this index": the sender lost its state (it restarted).
    /// Trusted only if the token equals the one its handshake gave.
    Reset {
        /// The index the sender did not know (the sender's old session index).
        index: u32,
        /// The reset token for that index.
        token: crate::crypto::reset::Token,
    },
    /// Encrypted data packet.
    Data {
        /// Key phase bit.
        key_phase: bool,
        /// The receiver's session index.
        receiver: u32,
        /// Packet counter (the AEAD nonce).
        counter: u64,
    },
}

/// Fields of a handshake init.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Init<'a> {
    /// Protocol version.
    pub version: u8,
    /// Handshake suite (pattern and primitives).
    pub suite: u8,
    /// Bitmask of data AEADs the initiator supports.
    pub aead_offer: u8,
    /// The initiator's session index.
    pub sender: u32,
    /// Cookie echoed from a retry, if any.
    pub cookie: Option<[u8; COOKIE_LEN]>,
    /// Noise message 1.
    pub noise: &'a [u8],
    /// MAC over everything before it, keyed by the responder's public key (IK only).
    pub mac1: Option<[u8; COOKIE_LEN]>,
    /// Length of the datagram the MAC covers (everything before `mac1`).
    pub mac1_covered: usize,
}

/// Why a datagram's header could not be parsed. Network input: counted, never returned to
/// the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Empty datagram or truncated header.
    #[error("truncated")]
    Truncated,
    /// Unknown type byte.
    #[error("unknown packet type")]
    UnknownType,
    /// A field had an impossible value.
    #[error("malformed")]
    Malformed,
}

/// Parses the cleartext header of a datagram. Never panics.
pub fn parse(buf: &[u8]) -> Result<Header<'_>, HeaderError> {
    let mut r = Reader::new(buf);
    let ty = r.u8().ok_or(HeaderError::Truncated)?;
    match ty {
        TYPE_INIT => parse_init(buf).map(Header::Init),
        TYPE_RESPONSE | TYPE_FINAL => {
            let receiver = r.u32().ok_or(HeaderError::Truncated)?;
            let len = r.u16().ok_or(HeaderError::Truncated)?;
            let noise = r.bytes(usize::from(len)).ok_or(HeaderError::Truncated)?;
            if !r.is_empty() {
                return Err(HeaderError::Malformed);
            }
            Ok(if ty == TYPE_RESPONSE {
                Header::Response { receiver, noise }
            } else {
                Header::Final { receiver, noise }
            })
        }
        TYPE_COOKIE => {
            let receiver = r.u32().ok_or(HeaderError::Truncated)?;
            let cookie = r.array().ok_or(HeaderError::Truncated)?;
            if !r.is_empty() {
                return Err(HeaderError::Malformed);
            }
            Ok(Header::Cookie { receiver, cookie })
        }
        TYPE_RESET => {
            let index = r.u32().ok_or(HeaderError::Truncated)?;
            let token = r.array().ok_or(HeaderError::Truncated)?;
            if !r.is_empty() {
                return Err(HeaderError::Malformed);
            }
            Ok(Header::Reset { index, token })
        }
        TYPE_REJECT => {
            let receiver = r.u32().ok_or(HeaderError::Truncated)?;
            let reason = r.u8().ok_or(HeaderError::Truncated)?;
            if !r.is_empty() {
                return Err(HeaderError::Malformed);
            }
            Ok(Header::Reject { receiver, reason })
        }
        0x10 | 0x11 => {
            let receiver = r.u32().ok_or(HeaderError::Truncated)?;
            let counter = r.u64().ok_or(HeaderError::Truncated)?;
            if r.remaining() < TAG_LEN {
                return Err(HeaderError::Truncated);
            }
            Ok(Header::Data {
                key_phase: ty & 1 == 1,
                receiver,
                counter,
            })
        }
        _ => Err(HeaderError::UnknownType),
    }
}

fn parse_init(buf: &[u8]) -> Result<Init<'_>, HeaderError> {
    let mut r = Reader::new(buf);
    let _ty = r.u8();
    let version = r.u8().ok_or(HeaderError::Truncated)?;
    let suite = r.u8().ok_or(HeaderError::Truncated)?;
    let aead_offer = r.u8().ok_or(HeaderError::Truncated)?;
    let sender = r.u32().ok_or(HeaderError::Truncated)?;
    let flags = r.u8().ok_or(HeaderError::Truncated)?;
    if flags & !(FLAG_COOKIE | FLAG_MAC1) != 0 {
        return Err(HeaderError::Malformed);
    }
    let cookie = if flags & FLAG_COOKIE != 0 {
        Some(r.array().ok_or(HeaderError::Truncated)?)
    } else {
        None
    };
    let len = r.u16().ok_or(HeaderError::Truncated)?;
    let noise = r.bytes(usize::from(len)).ok_or(HeaderError::Truncated)?;
    let (mac1, mac1_covered) = if flags & FLAG_MAC1 != 0 {
        if r.remaining() < COOKIE_LEN {
            return Err(HeaderError::Truncated);
        }
        let covered = buf.len() - COOKIE_LEN;
        let mac: [u8; COOKIE_LEN] = buf[covered..]
            .try_into()
            .map_err(|_| HeaderError::Truncated)?;
        (Some(mac), covered)
    } else {
        (None, buf.len())
    };
    Ok(Init {
        version,
        suite,
        aead_offer,
        sender,
        cookie,
        noise,
        mac1,
        mac1_covered,
    })
}

/// Writes a handshake init (without mac1) padded so that, once the optional 16-byte mac1 is
/// appended, the datagram is at least `min(pad_to, INIT_MIN_LEN)` bytes (inits sent through
/// a relay are padded to what the relay can carry). Returns the length written.
#[allow(clippy::too_many_arguments)]
pub fn write_init(
    out: &mut [u8],
    suite: u8,
    aead_offer: u8,
    sender: u32,
    cookie: Option<&[u8; COOKIE_LEN]>,
    with_mac1: bool,
    noise: &[u8],
    pad_to: usize,
) -> Result<usize, BufferTooSmall> {
    let mut w = Writer::new(out);
    w.u8(TYPE_INIT)?;
    w.u8(VERSION)?;
    w.u8(suite)?;
    w.u8(aead_offer)?;
    w.u32(sender)?;
    let mut flags = 0;
    if cookie.is_some() {
        flags |= FLAG_COOKIE;
    }
    if with_mac1 {
        flags |= FLAG_MAC1;
    }
    w.u8(flags)?;
    if let Some(c) = cookie {
        w.bytes(c)?;
    }
    let len = u16::try_from(noise.len()).map_err(|_| BufferTooSmall)?;
    w.u16(len)?;
    w.bytes(noise)?;
    let mac_len = if with_mac1 { COOKIE_LEN } else { 0 };
    let pad = INIT_MIN_LEN.min(pad_to).saturating_sub(w.len() + mac_len);
    w.zeros(pad)?;
    Ok(w.len())
}

/// Writes a response or final message.
pub fn write_handshake(
    out: &mut [u8],
    ty: u8,
    receiver: u32,
    noise: &[u8],
) -> Result<usize, BufferTooSmall> {
    let mut w = Writer::new(out);
    w.u8(ty)?;
    w.u32(receiver)?;
    let len = u16::try_from(noise.len()).map_err(|_| BufferTooSmall)?;
    w.u16(len)?;
    w.bytes(noise)?;
    Ok(w.len())
}

/// Writes a cookie reply.
pub fn write_cookie(
    out: &mut [u8],
    receiver: u32,
    cookie: &[u8; COOKIE_LEN],
) -> Result<usize, BufferTooSmall> {
    let mut w = Writer::new(out);
    w.u8(TYPE_COOKIE)?;
    w.u32(receiver)?;
    w.bytes(cookie)?;
    Ok(w.len())
}

/// Writes a stateless reset for `index`.
pub fn write_reset(
    out: &mut [u8],
    index: u32,
    token: &crate::crypto::reset::Token,
) -> Result<usize, BufferTooSmall> {
    let mut w = Writer::new(out);
    w.u8(TYPE_RESET)?;
    w.u32(index)?;
    w.bytes(token)?;
    Ok(w.len())
}

/// Writes a reject hint.
pub fn write_reject(out: &mut [u8], receiver: u32, reason: u8) -> Result<usize, BufferTooSmall> {
    let mut w = Writer::new(out);
    w.u8(TYPE_REJECT)?;
    w.u32(receiver)?;
    w.u8(reason)?;
    Ok(w.len())
}

/// Writes a data header; the caller appends the payload and the tag.
pub fn write_data_header(
    out: &mut [u8],
    key_phase: bool,
    receiver: u32,
    counter: u64,
) -> Result<usize, BufferTooSmall> {
    let mut w = Writer::new(out);
    w.u8(TYPE_DATA | u8::from(key_phase))?;
    w.u32(receiver)?;
    w.u64(counter)?;
    Ok(w.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_round_trip_with_cookie_and_mac() {
        let mut buf = [0u8; 1500];
        let noise = [9u8; 96];
        let n = write_init(
            &mut buf,
            3,
            0b11,
            0xdead_beef,
            Some(&[7; 16]),
            true,
            &noise,
            INIT_MIN_LEN,
        )
        .unwrap();
        buf[n..n + 16].copy_from_slice(&[5; 16]);
        let total = n + 16;
        assert_eq!(total, INIT_MIN_LEN);
        let Header::Init(init) = parse(&buf[..total]).unwrap() else {
            panic!("not an init")
        };
        assert_eq!(init.suite, 3);
        assert_eq!(init.aead_offer, 0b11);
        assert_eq!(init.sender, 0xdead_beef);
        assert_eq!(init.cookie, Some([7; 16]));
        assert_eq!(init.noise, &noise[..]);
        assert_eq!(init.mac1, Some([5; 16]));
        assert_eq!(init.mac1_covered, n);
    }

    #[test]
    fn short_and_unknown_packets_are_errors() {
        assert_eq!(parse(&[]), Err(HeaderError::Truncated));
        assert_eq!(parse(&[0x7f]), Err(HeaderError::UnknownType));
        assert_eq!(parse(&[TYPE_DATA, 0, 0, 0, 1]), Err(HeaderError::Truncated));
        // A data packet shorter than header + tag.
        let mut buf = [0u8; DATA_OVERHEAD - 1];
        buf[0] = TYPE_DATA;
        assert_eq!(parse(&buf), Err(HeaderError::Truncated));
        // Trailing bytes after a cookie are malformed, not ignored.
        let mut c = [0u8; 64];
        let n = write_cookie(&mut c, 1, &[1; 16]).unwrap();
        assert!(parse(&c[..n]).is_ok());
        assert_eq!(parse(&c[..n + 1]), Err(HeaderError::Malformed));
    }

    #[test]
    fn data_header_round_trip() {
        let mut buf = [0u8; 64];
        let n = write_data_header(&mut buf, true, 42, u64::MAX - 1).unwrap();
        assert_eq!(n, DATA_HEADER_LEN);
        assert_eq!(
            parse(&buf[..n + TAG_LEN]),
            Ok(Header::Data {
                key_phase: true,
                receiver: 42,
                counter: u64::MAX - 1
            })
        );
    }
}
