//! Bounds-checked cursors over byte slices. Every read returns `Option`/`Result` instead of
//! panicking, so parsers built on them cannot panic on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::varint;

/// A read cursor over a borrowed slice (zero-copy: `bytes` returns sub-slices).
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// True when every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Takes the next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// Takes everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    /// Peeks at the next byte without consuming it.
    pub fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }

    /// Reads a varint.
    pub fn varint(&mut self) -> Option<u64> {
        let (v, n) = varint::decode(&self.buf[self.pos..])?;
        self.pos += n;
        Some(v)
    }

    /// Reads a varint length followed by that many bytes.
    pub fn varint_bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.bytes(n)
    }

    /// Reads a socket address: family byte (4 or 6), address bytes, big-endian port.
    pub fn socket_addr(&mut self) -> Option<SocketAddr> {
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            _ => return None,
        };
        Some(SocketAddr::new(ip, self.u16()?))
    }
}

/// The output buffer was too small for what was being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("buffer too small")]
pub struct BufferTooSmall;

/// A write cursor over a caller-owned buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Starts writing at the beginning of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// True if nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Room left in the buffer.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> Result<(), BufferTooSmall> {
        let end = self.pos.checked_add(b.len()).ok_or(BufferTooSmall)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(BufferTooSmall)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    /// Appends `n` zero bytes.
    pub fn zeros(&mut self, n: usize) -> Result<(), BufferTooSmall> {
        let end = self.pos.checked_add(n).ok_or(BufferTooSmall)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(BufferTooSmall)?
            .fill(0);
        self.pos = end;
        Ok(())
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> Result<(), BufferTooSmall> {
        self.bytes(&[v])
    }

    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) -> Result<(), BufferTooSmall> {
        self.bytes(&v.to_be_bytes())
    }

    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) -> Result<(), BufferTooSmall> {
        self.bytes(&v.to_be_bytes())
    }

    /// Appends a big-endian u64.
    pub fn u64(&mut self, v: u64) -> Result<(), BufferTooSmall> {
        self.bytes(&v.to_be_bytes())
    }

    /// Appends a varint. Values above [`varint::MAX`] are a caller bug and are reported as
    /// `BufferTooSmall` rather than silently truncated.
    pub fn varint(&mut self, v: u64) -> Result<(), BufferTooSmall> {
        let n = varint::encode(v, &mut self.buf[self.pos..]).ok_or(BufferTooSmall)?;
        self.pos += n;
        Ok(())
    }

    /// Appends a varint length and the bytes.
    pub fn varint_bytes(&mut self, b: &[u8]) -> Result<(), BufferTooSmall> {
        self.varint(b.len() as u64)?;
        self.bytes(b)
    }

    /// Appends a socket address (see [`Reader::socket_addr`]).
    pub fn socket_addr(&mut self, a: SocketAddr) -> Result<(), BufferTooSmall> {
        match a.ip() {
            IpAddr::V4(ip) => {
                self.u8(4)?;
                self.bytes(&ip.octets())?;
            }
            IpAddr::V6(ip) => {
                self.u8(6)?;
                self.bytes(&ip.octets())?;
            }
        }
        self.u16(a.port())
    }

    /// The written prefix of the buffer.
    pub fn written(&mut self) -> &mut [u8] {
        &mut self.buf[..self.pos]
    }
}

/// Encoded size of a socket address.
pub fn socket_addr_len(a: SocketAddr) -> usize {
    match a {
        SocketAddr::V4(_) => 1 + 4 + 2,
        SocketAddr::V6(_) => 1 + 16 + 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_reads_past_the_end() {
        let data = [1u8, 2, 3];
        let mut r = Reader::new(&data);
        assert_eq!(r.u16(), Some(0x0102));
        assert_eq!(r.u16(), None);
        assert_eq!(r.u8(), Some(3));
        assert_eq!(r.u8(), None);
        assert_eq!(r.bytes(usize::MAX), None);
        assert!(r.is_empty());
    }

    #[test]
    fn socket_addrs_round_trip() {
        let mut buf = [0u8; 64];
        for a in ["1.2.3.4:5", "[::1]:65535", "[2001:db8::7]:0"] {
            let a: SocketAddr = a.parse().unwrap();
            let mut w = Writer::new(&mut buf);
            w.socket_addr(a).unwrap();
            let n = w.len();
            assert_eq!(n, socket_addr_len(a));
            assert_eq!(Reader::new(&buf[..n]).socket_addr(), Some(a));
        }
        assert_eq!(Reader::new(&[5, 0, 0]).socket_addr(), None);
    }

    #[test]
    fn writer_reports_overflow() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        assert!(w.u16(1).is_ok());
        assert_eq!(w.u16(1), Err(BufferTooSmall));
        assert_eq!(w.len(), 2);
    }
}
