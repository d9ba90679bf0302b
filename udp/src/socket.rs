//! The socket: set-up, batched GSO sends with run-time fallback, batched GRO receives.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{PmtuMode, UdpConfig};
use crate::error::SocketError;
use crate::sys::{self, BATCH, SendMsg};

/// Largest UDP payload in one IPv4 datagram (65535 − 20 − 8). GSO sends obey it as a
/// total, so one GSO send carries at most `65507 / segment_size` segments over IPv4.
pub const MAX_UDP_PAYLOAD_V4: usize = 65_507;
/// Largest UDP payload in one IPv6 datagram without jumbograms (65535 − 8).
pub const MAX_UDP_PAYLOAD_V6: usize = 65_527;
/// Messages handled per `sendmmsg`/`recvmmsg` system call.
pub const MAX_BATCH: usize = BATCH;

/// One outgoing datagram, or several of equal size for GSO.
///
/// The core's `poll_transmit` output maps onto it field for field:
/// `Transmit::from_parts(t.dst, &buf[..t.len], t.segment_size)`; the core's `src` (which
/// *socket* to use) chooses the socket through [`crate::SocketSet::route`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// Destination.
    pub dst: SocketAddr,
    /// The payload: one datagram, or with `segment_size` the concatenation of datagrams
    /// of that size (the last may be shorter).
    pub contents: &'a [u8],
    /// Size of each datagram in `contents`; `None` sends `contents` as one datagram. Must
    /// be between 1 and 65535 when set.
    pub segment_size: Option<usize>,
    /// Source IP to send from (`IP_PKTINFO`/`IPV6_PKTINFO`), for sockets bound to a
    /// wildcard address that must answer from the address a peer wrote to; `None` lets the
    /// routing table choose.
    pub src_ip: Option<IpAddr>,
}

impl<'a> Transmit<'a> {
    /// One datagram to `dst`.
    pub fn new(dst: SocketAddr, contents: &'a [u8]) -> Self {
        Self {
            dst,
            contents,
            segment_size: None,
            src_ip: None,
        }
    }

    /// Datagrams of `segment_size` bytes each (the last may be shorter) to `dst`.
    pub fn segmented(dst: SocketAddr, contents: &'a [u8], segment_size: usize) -> Self {
        Self {
            dst,
            contents,
            segment_size: Some(segment_size),
            src_ip: None,
        }
    }

    /// A transmit of `contents` to `dst`, segmented when `segment_size` is set (the shape
    /// of the core's `Transmit { dst, len, segment_size, .. }`).
    pub fn from_parts(dst: SocketAddr, contents: &'a [u8], segment_size: Option<usize>) -> Self {
        Self {
            dst,
            contents,
            segment_size,
            src_ip: None,
        }
    }

    /// Number of datagrams this transmit puts on the wire.
    pub fn datagram_count(&self) -> usize {
        match self.segment_size {
            Some(s) if s > 0 && self.contents.len() > s => self.contents.len().div_ceil(s),
            _ => 1,
        }
    }
}

/// Metadata of one received message (one datagram, or several coalesced by GRO).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    /// Sender. IPv4 peers of a dual-stack socket appear as plain IPv4 addresses.
    pub from: SocketAddr,
    /// The local address the datagram arrived on: the packet's destination IP
    /// (`IP_PKTINFO`) with the socket's port, or the bound address when pktinfo is off.
    /// Hand it to the core as `RecvMeta { from, local: Some(local) }`.
    pub local: SocketAddr,
    /// Bytes of intact datagrams at the start of the buffer. With `truncated`, the cut
    /// datagram is already excluded (so this may be 0).
    pub len: usize,
    /// Size of each datagram in the first `len` bytes (the last may be shorter). Equal to
    /// `len` unless GRO coalesced several datagrams; never 0.
    pub stride: usize,
    /// The message did not fit the buffer: bytes past `len` were lost (a datagram, or
    /// with GRO the tail of the coalesced run). Use bigger buffers (64 KiB with GRO).
    pub truncated: bool,
}

impl RecvMeta {
    /// An all-zero value, to fill arrays before a receive.
    pub const EMPTY: Self = Self {
        from: SocketAddr::V4(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0)),
        local: SocketAddr::V4(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0)),
        len: 0,
        stride: 1,
        truncated: false,
    };

    /// Number of datagrams in the first `len` bytes. Empty datagrams count as none (the
    /// core has nothing to do with them).
    pub fn datagram_count(&self) -> usize {
        self.len.div_ceil(self.stride)
    }

    /// Splits the first `len` bytes of `buf` (the buffer this message was received into)
    /// into its datagrams, mutable so the core can decrypt them in place.
    pub fn datagrams<'b>(&self, buf: &'b mut [u8]) -> std::slice::ChunksMut<'b, u8> {
        let len = self.len.min(buf.len());
        buf[..len].chunks_mut(self.stride.max(1))
    }
}

/// Sizes the kernel granted for the socket buffers, as `getsockopt` reports them. Linux
/// reports twice the usable payload capacity (it counts its bookkeeping), so a request of
/// 8 MiB that was fully granted reads 16 MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferSizes {
    /// `SO_SNDBUF` as read back.
    pub send: usize,
    /// `SO_RCVBUF` as read back.
    pub recv: usize,
}

/// Why GSO is not in use on a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GsoOff {
    /// Turned off by [`UdpConfig::gso`] or `TERN_NO_GSO=1`.
    Config,
    /// The kernel does not know `UDP_SEGMENT` (Linux < 4.18).
    Unsupported,
    /// A GSO send was refused (`EIO`: the egress device cannot checksum, `EINVAL`,
    /// `ENOPROTOOPT`) while the same datagrams went through one by one; or
    /// [`UdpSocket::disable_gso`] was called. The socket no longer tries.
    Refused,
}

/// Whether a socket segments sends in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoState {
    /// GSO is used, with at most this many segments per send (≥ 2).
    On {
        /// The cap from [`UdpConfig::max_gso_segments`].
        max_segments: usize,
    },
    /// GSO is not used: every datagram is its own message.
    Off(GsoOff),
}

const GSO_ON: u8 = 0;
const GSO_OFF_CONFIG: u8 = 1;
const GSO_OFF_UNSUPPORTED: u8 = 2;
const GSO_OFF_REFUSED: u8 = 3;

/// A non-blocking UDP socket with batched I/O and segmentation offload.
///
/// All methods take `&self`, so one socket can be shared by a reader and a writer
/// (e.g. inside `async_io::Async` or behind an `Arc`); the GSO fallback state is atomic.
/// Register [`AsRawFd::as_raw_fd`] / [`AsFd::as_fd`] with mio (`SourceFd`) or async-io.
#[derive(Debug)]
pub struct UdpSocket {
    inner: std::net::UdpSocket,
    local: SocketAddr,
    /// The socket's family is IPv6 (IPv4 destinations must be v4-mapped).
    v6: bool,
    gso_max: AtomicUsize,
    gso_state: AtomicU8,
    gro: bool,
    pktinfo: bool,
    pmtu: PmtuMode,
    buffers: BufferSizes,
}

impl UdpSocket {
    /// Creates a non-blocking UDP socket bound to `addr` (port 0 picks a free port) and
    /// configures it per `config`, after applying `TERN_NO_GSO` / `TERN_NO_GRO` from the
    /// environment.
    ///
    /// Buffer sizes, GSO and GRO are best effort: read back what you got with
    /// [`buffer_sizes`](Self::buffer_sizes), [`gso_state`](Self::gso_state) and
    /// [`gro_enabled`](Self::gro_enabled).
    ///
    /// # Errors
    /// [`SocketError::Create`] when no socket can be made, [`SocketError::Bind`] when the
    /// address is taken or not local, [`SocketError::Option`] when don't-fragment cannot be
    /// set (use [`PmtuMode::KernelDefault`] on such a kernel).
    pub fn bind(addr: SocketAddr, config: &UdpConfig) -> Result<Self, SocketError> {
        let config = config.clone().with_env_overrides(|k| std::env::var(k).ok());
        let v6 = addr.is_ipv6();
        let sock = Socket::new(
            Domain::for_address(addr),
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::UDP),
        )
        .map_err(SocketError::Create)?;
        let fd = sock.as_fd();
        if v6 {
            sock.set_only_v6(config.v6_only)
                .map_err(|source| SocketError::Option {
                    option: "IPV6_V6ONLY",
                    source,
                })?;
        }
        let buffers = BufferSizes {
            send: sys::set_buffer(fd, false, config.send_buffer, config.force_buffers).map_err(
                |source| SocketError::Option {
                    option: "SO_SNDBUF",
                    source,
                },
            )?,
            recv: sys::set_buffer(fd, true, config.recv_buffer, config.force_buffers).map_err(
                |source| SocketError::Option {
                    option: "SO_RCVBUF",
                    source,
                },
            )?,
        };
        set_pmtu(fd, v6, config.v6_only, config.pmtu)?;
        let pktinfo = config.pktinfo && set_pktinfo(fd, v6, config.v6_only);

        // Probe GSO with a segment size of 0 (= off per socket): it succeeds exactly when
        // the kernel knows UDP_SEGMENT, and leaves per-socket segmentation off; we ask for
        // it per message with a cmsg instead.
        let (gso_state, gso_max) = if !config.gso || config.max_gso_segments < 2 {
            (GSO_OFF_CONFIG, 1)
        } else if sys::setsockopt_int(fd, libc::SOL_UDP, sys::UDP_SEGMENT, 0).is_ok() {
            (GSO_ON, config.max_gso_segments)
        } else {
            (GSO_OFF_UNSUPPORTED, 1)
        };
        let gro = config.gro && sys::setsockopt_int(fd, libc::SOL_UDP, sys::UDP_GRO, 1).is_ok();

        sock.bind(&addr.into())
            .map_err(|source| SocketError::Bind { addr, source })?;
        let local = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(addr);
        tracing::debug!(
            %local, ?buffers, gso_state, gro, pktinfo,
            "tern-udp socket bound"
        );
        Ok(Self {
            inner: sock.into(),
            local,
            v6,
            gso_max: AtomicUsize::new(gso_max),
            gso_state: AtomicU8::new(gso_state),
            gro,
            pktinfo,
            pmtu: config.pmtu,
            buffers,
        })
    }

    /// The address the socket is bound to (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The buffer sizes the kernel granted (see [`BufferSizes`] for the doubling).
    pub fn buffer_sizes(&self) -> BufferSizes {
        self.buffers
    }

    /// Whether sends are segmented by the kernel, and if not why.
    pub fn gso_state(&self) -> GsoState {
        match self.gso_state.load(Ordering::Relaxed) {
            GSO_ON => GsoState::On {
                max_segments: self.gso_max.load(Ordering::Relaxed),
            },
            GSO_OFF_CONFIG => GsoState::Off(GsoOff::Config),
            GSO_OFF_UNSUPPORTED => GsoState::Off(GsoOff::Unsupported),
            _ => GsoState::Off(GsoOff::Refused),
        }
    }

    /// Most datagrams one send carries: the GSO cap, or 1 when GSO is off. A driver
    /// building GSO batches with the core should ask for at most this many segments.
    pub fn max_gso_segments(&self) -> usize {
        self.gso_max.load(Ordering::Relaxed)
    }

    /// Stops using GSO on this socket, as if the kernel had refused it: every later send
    /// puts one datagram per message. Transmits with a segment size still work.
    pub fn disable_gso(&self) {
        self.mark_gso_refused(None);
    }

    /// Whether the kernel coalesces received datagrams (`UDP_GRO`); receive buffers then
    /// need 64 KiB each to avoid truncation.
    pub fn gro_enabled(&self) -> bool {
        self.gro
    }

    /// Whether received messages report their destination IP (`IP_PKTINFO`).
    pub fn pktinfo_enabled(&self) -> bool {
        self.pktinfo
    }

    /// The fragmentation policy in force.
    pub fn pmtu_mode(&self) -> PmtuMode {
        self.pmtu
    }

    /// The underlying std socket (non-blocking), e.g. for `connect` or options not
    /// covered here. Do not turn blocking mode on: the batch calls assume non-blocking.
    pub fn as_std(&self) -> &std::net::UdpSocket {
        &self.inner
    }

    /// Sends the transmits in order with as few system calls as possible (`sendmmsg`, and
    /// one GSO message per transmit while GSO is on).
    ///
    /// Returns how many transmits were sent completely (≥ 1). Send the rest later, e.g.
    /// when the socket is writable again.
    ///
    /// A transmit with more segments than [`max_gso_segments`](Self::max_gso_segments)
    /// or than fit the 64 KiB IP limit is split into several messages. When the kernel
    /// refuses a GSO message (`EIO`, `EINVAL`, `ENOPROTOOPT`) the socket re-sends those
    /// datagrams one per message; if that works it stops using GSO for good
    /// ([`GsoOff::Refused`]), otherwise GSO was not the problem and the error is returned.
    ///
    /// # Errors
    /// `WouldBlock` when nothing could be sent (the send buffer is full): wait until
    /// writable and call again. Any other error concerns `transmits[0]` alone (for example
    /// `EMSGSIZE` when it exceeds the path MTU with don't-fragment set, `InvalidInput` for a
    /// segment size of 0 or above 65535, `ENETUNREACH`): drop it and call again with
    /// `transmits[1..]`. If a transmit that needed several messages was interrupted by
    /// `WouldBlock` after some of them, it is not counted as sent, so the retry repeats
    /// those datagrams; the protocol discards duplicates.
    pub fn send(&self, transmits: &[Transmit<'_>]) -> io::Result<usize> {
        let fd = self.inner.as_fd();
        let mut done = 0usize; // transmits completely sent
        let mut offset = 0usize; // bytes of transmits[done] already sent
        // A GSO error makes us try the same datagrams without GSO before blaming GSO.
        let mut gso_suspect: Option<i32> = None;
        let mut msgs = [SendMsg::EMPTY; BATCH];
        // For each message: (transmit index, byte offset in it where the message ends).
        let mut ends = [(0usize, 0usize); BATCH];
        while done < transmits.len() {
            let gso_max = if gso_suspect.is_some() {
                1
            } else {
                self.gso_max.load(Ordering::Relaxed)
            };
            // Build one batch of messages starting at (done, offset).
            let mut count = 0usize;
            let (mut ti, mut off) = (done, offset);
            while count < BATCH && ti < transmits.len() {
                let t = &transmits[ti];
                let (msg, end) = match self.next_message(t, off, gso_max) {
                    Ok(m) => m,
                    Err(e) if count == 0 && done == ti => {
                        // The invalid transmit is first in line: report it.
                        return if done > 0 { Ok(done) } else { Err(e) };
                    }
                    // Send what precedes it; the next call reports it.
                    Err(_) => break,
                };
                msgs[count] = msg;
                ends[count] = (ti, end);
                count += 1;
                if end == t.contents.len() {
                    ti += 1;
                    off = 0;
                } else {
                    off = end;
                }
            }
            if count == 0 {
                break;
            }
            match sys::send_batch(fd, &msgs[..count]) {
                Ok(sent) => {
                    for &(t, end) in &ends[..sent] {
                        if end == transmits[t].contents.len() {
                            done = t + 1;
                            offset = 0;
                        } else {
                            done = t;
                            offset = end;
                        }
                    }
                    if sent > 0 {
                        if let Some(errno) = gso_suspect.take() {
                            // The datagrams went through one by one: GSO was the problem.
                            self.mark_gso_refused(Some(errno));
                        }
                    }
                    if sent < count {
                        // The kernel stopped early: the next message would block or fail.
                        // Let the next call (or iteration, if nothing was done) see why.
                        if done > 0 {
                            return Ok(done);
                        }
                    }
                }
                Err(e) => {
                    let errno = e.raw_os_error();
                    let gso_error =
                        matches!(errno, Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT));
                    if gso_error && msgs[0].segment_size.is_some() && gso_suspect.is_none() {
                        tracing::debug!(%e, "GSO send refused; retrying one datagram per message");
                        gso_suspect = errno;
                        continue;
                    }
                    return if done > 0 { Ok(done) } else { Err(e) };
                }
            }
        }
        Ok(done)
    }

    /// The message that starts at byte `off` of `t`, and the offset where it ends.
    fn next_message<'a>(
        &self,
        t: &Transmit<'a>,
        off: usize,
        gso_max: usize,
    ) -> io::Result<(SendMsg<'a>, usize)> {
        let dst = self.wire_dst(t.dst);
        let len = t.contents.len();
        let (seg, chunk) = match t.segment_size {
            Some(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "segment size of 0",
                ));
            }
            Some(s) if s > usize::from(u16::MAX) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "segment size above 65535",
                ));
            }
            // One datagram, or what remains fits in one segment.
            None => (None, len - off),
            Some(s) if len - off <= s => (None, len - off),
            Some(s) => {
                let limit = if dst.is_ipv4() || is_v4_mapped(&dst) {
                    MAX_UDP_PAYLOAD_V4
                } else {
                    MAX_UDP_PAYLOAD_V6
                };
                let per_msg = gso_max.min(limit / s).max(1);
                let chunk = (len - off).min(per_msg * s);
                if chunk > s {
                    (Some(s as u16), chunk)
                } else {
                    (None, chunk)
                }
            }
        };
        Ok((
            SendMsg {
                dst,
                data: &t.contents[off..off + chunk],
                segment_size: seg,
                src_ip: t.src_ip,
            },
            off + chunk,
        ))
    }

    /// The destination in this socket's family: IPv4 addresses become v4-mapped on an
    /// IPv6 socket (which then must not be `v6_only` for the send to work).
    fn wire_dst(&self, dst: SocketAddr) -> SocketAddr {
        match dst {
            SocketAddr::V4(a) if self.v6 => {
                SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
            }
            other => other,
        }
    }

    fn mark_gso_refused(&self, errno: Option<i32>) {
        let was = self.gso_state.swap(GSO_OFF_REFUSED, Ordering::Relaxed);
        self.gso_max.store(1, Ordering::Relaxed);
        if was == GSO_ON {
            match errno {
                Some(errno) => tracing::warn!(
                    local = %self.local,
                    error = %io::Error::from_raw_os_error(errno),
                    "kernel refused UDP GSO; sending one datagram per message from now on"
                ),
                None => tracing::debug!(local = %self.local, "GSO disabled by request"),
            }
        }
    }

    /// Receives up to `min(bufs.len(), meta.len(), MAX_BATCH)` messages with one
    /// `recvmmsg`, message `i` into `bufs[i]` and its metadata into `meta[i]`. With GRO one
    /// message may hold several datagrams: split it with [`RecvMeta::datagrams`].
    ///
    /// Returns how many messages arrived (≥ 1, or 0 when `bufs` or `meta` is empty).
    /// Nothing is allocated.
    ///
    /// # Errors
    /// `WouldBlock` when no datagram is queued: wait until readable. Other errors come
    /// from the OS (e.g. `EBADF`) and mean the socket is unusable.
    pub fn recv(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let n = bufs.len().min(meta.len()).min(BATCH);
        let mut raw = [sys::RawRecv::EMPTY; BATCH];
        let got = sys::recv_batch(self.inner.as_fd(), &mut bufs[..n], &mut raw[..n])?;
        for (m, r) in meta.iter_mut().zip(&raw[..got]) {
            *m = self.finish_meta(r);
        }
        Ok(got)
    }

    fn finish_meta(&self, r: &sys::RawRecv) -> RecvMeta {
        if r.ctrunc {
            tracing::warn!("control messages truncated on receive (GRO/pktinfo may be lost)");
        }
        let from = r.from.map(unmap).unwrap_or(self.local);
        let local = match r.dst_ip {
            Some(ip) => SocketAddr::new(unmap_ip(ip), self.local.port()),
            None => self.local,
        };
        let (len, stride) = match (r.truncated, r.gro_size) {
            (false, Some(s)) if s < r.len => (r.len, s),
            (false, _) => (r.len, r.len.max(1)),
            // Truncated run of coalesced datagrams: the whole segments before the cut are
            // intact datagrams; the one cut and those after it are lost.
            (true, Some(s)) => ((r.len / s) * s, s),
            // Truncated single datagram: nothing intact.
            (true, None) => (0, 1),
        };
        RecvMeta {
            from,
            local,
            len,
            stride,
            truncated: r.truncated,
        }
    }

    /// Waits until the socket is readable or `timeout` passes (`None` waits forever).
    /// Returns whether it is readable. For simple blocking users and tests; event loops
    /// register the descriptor with their poller instead.
    ///
    /// # Errors
    /// Only OS errors from `poll(2)` (e.g. `ENOMEM`).
    pub fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        sys::poll_fd(self.inner.as_fd(), false, timeout)
    }

    /// Waits until the socket is writable or `timeout` passes; see
    /// [`wait_readable`](Self::wait_readable).
    ///
    /// # Errors
    /// Only OS errors from `poll(2)`.
    pub fn wait_writable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        sys::poll_fd(self.inner.as_fd(), true, timeout)
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

fn is_v4_mapped(a: &SocketAddr) -> bool {
    matches!(a, SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some())
}

/// `::ffff:a.b.c.d` → `a.b.c.d`, so dual-stack sockets report IPv4 peers as IPv4.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => a,
        },
        v4 => v4,
    }
}

fn unmap_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Sets the don't-fragment policy for the socket's family (both families on a dual-stack
/// socket).
fn set_pmtu(
    fd: BorrowedFd<'_>,
    v6: bool,
    v6_only: bool,
    mode: PmtuMode,
) -> Result<(), SocketError> {
    let (v4_val, v6_val) = match mode {
        PmtuMode::KernelDefault => return Ok(()),
        PmtuMode::Do => (libc::IP_PMTUDISC_DO, libc::IPV6_PMTUDISC_DO),
        PmtuMode::Probe => (libc::IP_PMTUDISC_PROBE, libc::IPV6_PMTUDISC_PROBE),
    };
    let opt = |option: &'static str| move |source| SocketError::Option { option, source };
    if !v6 || !v6_only {
        let r = sys::setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, v4_val);
        // On a dual-stack socket the IPv4 option is a bonus.
        if !v6 {
            r.map_err(opt("IP_MTU_DISCOVER"))?;
        }
    }
    if v6 {
        sys::setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, v6_val)
            .map_err(opt("IPV6_MTU_DISCOVER"))?;
        sys::setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)
            .map_err(opt("IPV6_DONTFRAG"))?;
    }
    Ok(())
}

/// Turns on destination-address reporting; returns whether it is on.
fn set_pktinfo(fd: BorrowedFd<'_>, v6: bool, v6_only: bool) -> bool {
    let mut ok = true;
    if !v6 || !v6_only {
        ok &= sys::setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1).is_ok() || v6;
    }
    if v6 {
        ok &= sys::setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1).is_ok();
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_mapping() {
        let v4: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5".parse().unwrap();
        assert!(is_v4_mapped(&mapped));
        assert!(!is_v4_mapped(&"[::1]:5".parse().unwrap()));
        assert_eq!(unmap(mapped), v4);
        assert_eq!(unmap(v4), v4);
        assert_eq!(
            unmap("[::1]:5".parse().unwrap()),
            "[::1]:5".parse().unwrap()
        );
    }

    #[test]
    fn transmit_datagram_count() {
        let dst: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let data = [0u8; 2500];
        assert_eq!(Transmit::new(dst, &data).datagram_count(), 1);
        assert_eq!(Transmit::segmented(dst, &data, 1000).datagram_count(), 3);
        assert_eq!(Transmit::segmented(dst, &data, 2500).datagram_count(), 1);
        assert_eq!(
            Transmit::segmented(dst, &data[..2000], 1000).datagram_count(),
            2
        );
    }

    #[test]
    fn truncation_keeps_only_whole_segments() {
        let sock = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), &UdpConfig::default())
            .expect("bind loopback");
        let raw = |len, gro_size, truncated| sys::RawRecv {
            from: Some("127.0.0.1:9".parse().unwrap()),
            dst_ip: None,
            len,
            gro_size,
            truncated,
            ctrunc: false,
        };
        let m = sock.finish_meta(&raw(1000, None, true));
        assert_eq!((m.len, m.datagram_count()), (0, 0));
        let m = sock.finish_meta(&raw(2500, Some(1000), true));
        assert_eq!((m.len, m.stride, m.datagram_count()), (2000, 1000, 2));
        let m = sock.finish_meta(&raw(2500, Some(1000), false));
        assert_eq!((m.len, m.stride, m.datagram_count()), (2500, 1000, 3));
        let m = sock.finish_meta(&raw(800, Some(1000), false));
        assert_eq!((m.len, m.stride, m.datagram_count()), (800, 800, 1));
        let m = sock.finish_meta(&raw(0, None, false));
        assert_eq!(m.datagram_count(), 0);
    }
}

#[cfg(test)]
mod option_tests {
    use super::*;

    fn opt(s: &UdpSocket, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        sys::getsockopt_int(s.as_fd(), level, name).expect("getsockopt")
    }

    #[test]
    fn dont_fragment_and_pktinfo_are_set_per_family() {
        let s4 = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), &UdpConfig::default()).unwrap();
        assert_eq!(
            opt(&s4, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
            libc::IP_PMTUDISC_DO
        );
        assert_eq!(opt(&s4, libc::IPPROTO_IP, libc::IP_PKTINFO), 1);
        assert!(s4.pktinfo_enabled());

        let config = UdpConfig {
            pmtu: PmtuMode::Probe,
            ..UdpConfig::default()
        };
        let s6 = UdpSocket::bind("[::1]:0".parse().unwrap(), &config).unwrap();
        assert_eq!(
            opt(&s6, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER),
            libc::IPV6_PMTUDISC_PROBE
        );
        assert_eq!(opt(&s6, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG), 1);
        assert_eq!(opt(&s6, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO), 1);
        assert_eq!(opt(&s6, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY), 1);
        // The GSO probe leaves per-socket segmentation off (we segment per message).
        assert_eq!(opt(&s6, libc::SOL_UDP, sys::UDP_SEGMENT), 0);
        assert_eq!(
            opt(&s6, libc::SOL_UDP, sys::UDP_GRO),
            i32::from(s6.gro_enabled())
        );
    }
}
