//! QUIC-style variable-length integers (RFC 9000 §16): the two high bits of the first byte
//! give the length (1, 2, 4 or 8 bytes), the rest is the value, big-endian. Values up to
//! 2^62 - 1.

/// Largest value a varint can carry.
pub const MAX: u64 = (1 << 62) - 1;

/// Number of bytes `v` takes when encoded, or `None` if it exceeds [`MAX`].
pub const fn size(v: u64) -> Option<usize> {
    if v < (1 << 6) {
        Some(1)
    } else if v < (1 << 14) {
        Some(2)
    } else if v < (1 << 30) {
        Some(4)
    } else if v <= MAX {
        Some(8)
    } else {
        None
    }
}

/// Decodes a varint at the start of `buf`; returns the value and the bytes consumed.
pub fn decode(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    // One fixed-width big-endian load per length instead of a byte loop (hot: every frame
    // field goes through here).
    match first >> 6 {
        0 => Some((u64::from(first), 1)),
        1 => {
            let b: [u8; 2] = buf.get(..2)?.try_into().ok()?;
            Some((u64::from(u16::from_be_bytes(b) & 0x3fff), 2))
        }
        2 => {
            let b: [u8; 4] = buf.get(..4)?.try_into().ok()?;
            Some((u64::from(u32::from_be_bytes(b) & 0x3fff_ffff), 4))
        }
        _ => {
            let b: [u8; 8] = buf.get(..8)?.try_into().ok()?;
            Some((u64::from_be_bytes(b) & MAX, 8))
        }
    }
}

/// Encodes `v` at the start of `buf`; returns bytes written, or `None` if `v` is too large or
/// `buf` too short.
pub fn encode(v: u64, buf: &mut [u8]) -> Option<usize> {
    let len = size(v)?;
    let out = buf.get_mut(..len)?;
    // `size` bounds `v` for each width, so the casts below keep every bit.
    match len {
        1 => out[0] = v as u8,
        2 => out.copy_from_slice(&(v as u16 | 0x4000).to_be_bytes()),
        4 => out.copy_from_slice(&(v as u32 | 0x8000_0000).to_be_bytes()),
        _ => out.copy_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes()),
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9000_examples() {
        let cases: &[(&[u8], u64)] = &[
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ];
        for (bytes, v) in cases {
            assert_eq!(decode(bytes), Some((*v, bytes.len())));
            let mut out = [0u8; 8];
            let n = encode(*v, &mut out).unwrap();
            assert_eq!(&out[..n], *bytes);
        }
        // A non-minimal encoding still decodes.
        assert_eq!(decode(&[0x40, 0x25]), Some((37, 2)));
    }

    #[test]
    fn bounds() {
        let mut out = [0u8; 8];
        assert_eq!(encode(MAX + 1, &mut out), None);
        assert_eq!(encode(1 << 20, &mut out[..3]), None);
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[0xc0, 1, 2]), None);
        for v in [0, 63, 64, 16383, 16384, (1 << 30) - 1, 1 << 30, MAX] {
            let n = encode(v, &mut out).unwrap();
            assert_eq!(Some(n), size(v));
            assert_eq!(decode(&out[..n]), Some((v, n)));
        }
    }

    /// The byte-loop codec these replaced: both must agree on every input.
    fn reference_decode(buf: &[u8]) -> Option<(u64, usize)> {
        let first = *buf.first()?;
        let len = 1usize << (first >> 6);
        let bytes = buf.get(..len)?;
        let mut v = u64::from(first & 0x3f);
        for b in &bytes[1..] {
            v = (v << 8) | u64::from(*b);
        }
        Some((v, len))
    }

    proptest::proptest! {
        #[test]
        fn matches_reference(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..10),
                             v in 0u64..=u64::MAX) {
            proptest::prop_assert_eq!(decode(&bytes), reference_decode(&bytes));
            let mut out = [0u8; 8];
            match encode(v, &mut out) {
                Some(n) => {
                    proptest::prop_assert_eq!(Some(n), size(v));
                    proptest::prop_assert_eq!(reference_decode(&out[..n]), Some((v, n)));
                }
                None => proptest::prop_assert!(v > MAX),
            }
            let small = v >> (v % 64);
            if let Some(n) = encode(small, &mut out) {
                proptest::prop_assert_eq!(decode(&out[..n]), Some((small, n)));
            }
        }
    }
}
