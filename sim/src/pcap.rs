//! pcap export: every captured datagram becomes an IPv4 + UDP packet (LINKTYPE_RAW) stamped
//! with simulated time (starting at [`UNIX_START`](crate::clock::UNIX_START)), so a run can be
//! opened in Wireshark. The capture lives in memory; write it out with [`Pcap::write_to`].

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use crate::clock::UNIX_START;

/// LINKTYPE_RAW: packets start with the IP header.
pub const LINKTYPE_RAW: u32 = 101;

/// Which datagrams are captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// As each host sends them (inside addresses, before NATs and links).
    Sends,
    /// As each host receives them (after NATs and links).
    Deliveries,
    /// Both.
    Both,
}

/// An in-memory pcap file.
#[derive(Clone, Debug)]
pub struct Pcap {
    capture: Capture,
    buf: Vec<u8>,
    count: u64,
}

impl Pcap {
    /// An empty capture with the global header written.
    pub fn new(capture: Capture) -> Self {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        buf.extend_from_slice(&2u16.to_le_bytes());
        buf.extend_from_slice(&4u16.to_le_bytes());
        buf.extend_from_slice(&0i32.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&65_535u32.to_le_bytes());
        buf.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        Self {
            capture,
            buf,
            count: 0,
        }
    }

    /// What this capture records.
    pub fn capture(&self) -> Capture {
        self.capture
    }

    /// Appends one UDP datagram seen at simulated time `at`.
    pub fn record(&mut self, at: Duration, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
        let ts = UNIX_START + at;
        let total = 20 + 8 + payload.len();
        let captured = total.min(65_535);
        self.buf
            .extend_from_slice(&(ts.as_secs() as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&ts.subsec_micros().to_le_bytes());
        self.buf.extend_from_slice(&(captured as u32).to_le_bytes());
        self.buf.extend_from_slice(&(total as u32).to_le_bytes());
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total.min(65_535) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&(self.count as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.ip().octets());
        ip[16..20].copy_from_slice(&dst.ip().octets());
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        self.buf.extend_from_slice(&ip);
        self.buf.extend_from_slice(&src.port().to_be_bytes());
        self.buf.extend_from_slice(&dst.port().to_be_bytes());
        self.buf
            .extend_from_slice(&((8 + payload.len()).min(65_535) as u16).to_be_bytes());
        self.buf.extend_from_slice(&0u16.to_be_bytes());
        self.buf.extend_from_slice(&payload[..captured - 28]);
        self.count += 1;
    }

    /// Packets captured.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Writes the file. Fails with the I/O error.
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, &self.buf)
    }
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let mut p = Pcap::new(Capture::Both);
        let src: SocketAddrV4 = "10.0.0.2:4000".parse().unwrap();
        let dst: SocketAddrV4 = "198.18.0.1:5000".parse().unwrap();
        p.record(Duration::from_micros(1_500_000), src, dst, b"hello");
        let b = p.bytes();
        assert_eq!(&b[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(
            u32::from_le_bytes(b[20..24].try_into().unwrap()),
            LINKTYPE_RAW
        );
        let rec = &b[24..];
        assert_eq!(u32::from_le_bytes(rec[4..8].try_into().unwrap()), 500_000);
        assert_eq!(u32::from_le_bytes(rec[8..12].try_into().unwrap()), 33);
        let ip = &rec[16..];
        assert_eq!(ip[9], 17);
        assert_eq!(checksum(&ip[..20]), 0, "a valid IPv4 header sums to zero");
        assert_eq!(&ip[20..22], &4000u16.to_be_bytes());
        assert_eq!(&ip[28..], b"hello");
        assert_eq!(p.count(), 1);
    }
}
