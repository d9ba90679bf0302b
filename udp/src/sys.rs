//! The system-call layer: every `unsafe` block of the crate lives in this module, each with a
//! `// SAFETY:` comment. Everything above it (`socket.rs`, `set.rs`, `batch.rs`) is safe
//! Rust that decides *what* to send; this module only turns that into `sendmmsg`/`recvmmsg`
//! calls with control messages and back.
//!
//! Linux only: GSO (`UDP_SEGMENT`), GRO (`UDP_GRO`), `sendmmsg`/`recvmmsg` and the
//! `*BUFFORCE` options are Linux interfaces.

use std::io::{self, IoSliceMut};
use std::mem::{self, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use libc::{c_int, c_uint, c_void, socklen_t};

/// `UDP_SEGMENT` from `<linux/udp.h>`: per-socket option and per-message cmsg (a `u16`)
/// asking the kernel to split one send into segments of that size (UDP GSO, Linux ≥ 4.18).
pub(crate) const UDP_SEGMENT: c_int = 103;
/// `UDP_GRO` from `<linux/udp.h>`: socket option enabling receive coalescing; the
/// segment size then arrives as a cmsg (an `int`) on each coalesced message (Linux ≥ 5.0).
pub(crate) const UDP_GRO: c_int = 104;
/// `SO_SNDBUFFORCE` / `SO_RCVBUFFORCE` (asm-generic/socket.h; x86, arm, riscv, …): like
/// `SO_SNDBUF`/`SO_RCVBUF` but ignore `wmem_max`/`rmem_max` when the caller has
/// `CAP_NET_ADMIN`. Other architectures use other numbers; there we do not try.
#[cfg(not(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64",
    target_arch = "powerpc",
    target_arch = "powerpc64"
)))]
const FORCE_OPTS: Option<(c_int, c_int)> = Some((32, 33));
#[cfg(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64",
    target_arch = "powerpc",
    target_arch = "powerpc64"
))]
const FORCE_OPTS: Option<(c_int, c_int)> = None;

/// Messages per `sendmmsg`/`recvmmsg` call. The per-call arrays live on the stack (about
/// 11 KiB for sends, 13 KiB for receives), so no allocation happens per packet.
pub(crate) const BATCH: usize = 64;

/// Control-message space per outgoing message: `UDP_SEGMENT` (u16) + `IPV6_PKTINFO`
/// (20 bytes) both fit with headers and alignment in 64 bytes.
const SEND_CMSG_LEN: usize = 64;
/// Control-message space per incoming message: `UDP_GRO` (int) + `IP_PKTINFO` +
/// `IPV6_PKTINFO` (a dual-stack socket may get both) fit in 128 bytes.
const RECV_CMSG_LEN: usize = 128;

/// A control-message buffer aligned like `cmsghdr` (which holds a `size_t`).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf<const N: usize>([u8; N]);

/// Room for an IPv4 or IPv6 socket address in the kernel's layout.
#[derive(Clone, Copy)]
#[repr(C)]
union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl RawAddr {
    fn zeroed() -> Self {
        // SAFETY: both union members are plain C structs of integers and byte arrays, for
        // which the all-zero bit pattern is a valid value.
        unsafe { mem::zeroed() }
    }

    /// Writes `addr` in the kernel's layout; returns the length to pass as `msg_namelen`.
    fn encode(addr: &SocketAddr) -> (Self, socklen_t) {
        let mut raw = Self::zeroed();
        match addr {
            SocketAddr::V4(a) => {
                raw.v4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                (raw, size_of::<libc::sockaddr_in>() as socklen_t)
            }
            SocketAddr::V6(a) => {
                raw.v6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo().to_be(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                (raw, size_of::<libc::sockaddr_in6>() as socklen_t)
            }
        }
    }

    /// Reads back an address the kernel wrote (`len` = the returned `msg_namelen`).
    fn decode(&self, len: socklen_t) -> Option<SocketAddr> {
        // SAFETY: `sa_family` sits at the same offset in both members, and the union was
        // zero-initialised before the kernel wrote into it, so reading it is defined.
        let family = c_int::from(unsafe { self.v4.sin_family });
        if family == libc::AF_INET && len as usize >= size_of::<libc::sockaddr_in>() {
            // SAFETY: the kernel said it wrote a `sockaddr_in` of full length.
            let a = unsafe { self.v4 };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(a.sin_port),
            )))
        } else if family == libc::AF_INET6 && len as usize >= size_of::<libc::sockaddr_in6>() {
            // SAFETY: the kernel said it wrote a `sockaddr_in6` of full length.
            let a = unsafe { self.v6 };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        } else {
            None
        }
    }
}

/// Sets an `int`-valued socket option.
pub(crate) fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor for the duration of the borrow; we pass a pointer to
    // a local `c_int` and its exact size, which the kernel only reads.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast::<c_void>(),
            size_of::<c_int>() as socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an `int`-valued socket option.
pub(crate) fn getsockopt_int(fd: BorrowedFd<'_>, level: c_int, name: c_int) -> io::Result<c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: `fd` is live; `value` and `len` are valid, writable locals and `len` holds the
    // size of `value`, so the kernel writes at most that many bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast::<c_void>(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks for a send (`recv == false`) or receive buffer of `bytes`, first within the
/// system limit, then (when `force` and the first grant is smaller) past it with the
/// `*BUFFORCE` option, which needs `CAP_NET_ADMIN` and otherwise fails harmlessly. Returns
/// what `getsockopt` then reports (Linux reports twice the usable size: it counts its own
/// bookkeeping).
pub(crate) fn set_buffer(
    fd: BorrowedFd<'_>,
    recv: bool,
    bytes: usize,
    force: bool,
) -> io::Result<usize> {
    let name = if recv {
        libc::SO_RCVBUF
    } else {
        libc::SO_SNDBUF
    };
    let want = c_int::try_from(bytes).unwrap_or(c_int::MAX / 2);
    // Failures of the plain option are not fatal: we report whatever we got.
    let _ = setsockopt_int(fd, libc::SOL_SOCKET, name, want);
    let granted = getsockopt_int(fd, libc::SOL_SOCKET, name)?;
    // The kernel doubles the request, so a full grant reads back as 2 × want.
    if force && granted < want.saturating_mul(2) {
        if let Some((snd_force, rcv_force)) = FORCE_OPTS {
            let force_name = if recv { rcv_force } else { snd_force };
            if let Err(e) = setsockopt_int(fd, libc::SOL_SOCKET, force_name, want) {
                tracing::debug!(%e, recv, "SO_*BUFFORCE refused; keeping the capped buffer");
            }
        }
    }
    Ok(usize::try_from(getsockopt_int(fd, libc::SOL_SOCKET, name)?).unwrap_or(0))
}

/// Waits until `fd` is readable (`write == false`) or writable, or `timeout` passes
/// (`None` = forever). Returns whether it became ready.
pub(crate) fn poll_fd(
    fd: BorrowedFd<'_>,
    write: bool,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: if write { libc::POLLOUT } else { libc::POLLIN },
        revents: 0,
    };
    let ms: c_int = match timeout {
        None => -1,
        // Round up so a 100 µs timeout does not become a busy 0 ms poll.
        Some(d) => c_int::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(c_int::MAX),
    };
    loop {
        // SAFETY: `pfd` is a valid, writable `pollfd` and we pass a count of exactly 1.
        let rc = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// CPU time (user + system) used so far by the whole process, all threads.
pub(crate) fn process_cpu_time() -> io::Result<Duration> {
    let mut ru = MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` points at writable memory of the right size and type; getrusage fills it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getrusage returned 0, so it initialised the struct (it was zeroed anyway).
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Ok(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// One message for [`send_batch`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct SendMsg<'a> {
    /// Destination, already in the socket's family (v4-mapped for a dual-stack socket).
    pub(crate) dst: SocketAddr,
    /// The bytes of this message (one datagram, or several for GSO).
    pub(crate) data: &'a [u8],
    /// GSO segment size; `None` for a single datagram.
    pub(crate) segment_size: Option<u16>,
    /// Source IP to send from (`IP_PKTINFO`/`IPV6_PKTINFO`); `None` lets routing choose.
    pub(crate) src_ip: Option<IpAddr>,
}

impl SendMsg<'static> {
    pub(crate) const EMPTY: Self = Self {
        dst: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        data: &[],
        segment_size: None,
        src_ip: None,
    };
}

/// Sends `msgs` (at most [`BATCH`]) with one `sendmmsg`. Returns how many messages the
/// kernel took (a prefix); an error means the first message was not sent.
pub(crate) fn send_batch(fd: BorrowedFd<'_>, msgs: &[SendMsg<'_>]) -> io::Result<usize> {
    let n = msgs.len().min(BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut addrs = [RawAddr::zeroed(); BATCH];
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    let mut cmsgs = [CmsgBuf([0u8; SEND_CMSG_LEN]); BATCH];
    // SAFETY: `mmsghdr` is a plain C struct (pointers, integers); all-zero is valid (null
    // pointers with zero lengths).
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };

    for (i, m) in msgs[..n].iter().enumerate() {
        let (raw, len) = RawAddr::encode(&m.dst);
        addrs[i] = raw;
        iovs[i].iov_base = m.data.as_ptr().cast_mut().cast::<c_void>();
        iovs[i].iov_len = m.data.len();
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&raw mut addrs[i]).cast::<c_void>();
        h.msg_namelen = len;
        h.msg_iov = &raw mut iovs[i];
        h.msg_iovlen = 1;
        let control_len = encode_send_cmsgs(h, &mut cmsgs[i], m);
        if control_len == 0 {
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
        }
    }
    loop {
        // SAFETY: every header points at live stack arrays (`addrs`, `iovs`, `cmsgs`) that
        // outlive the call, with matching lengths; the iovecs point into `msgs[..].data`,
        // which the kernel only reads (sendmmsg never writes through `iov_base`).
        let rc = unsafe { libc::sendmmsg(fd.as_raw_fd(), hdrs.as_mut_ptr(), n as c_uint, 0 as _) };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Fills the control messages of one outgoing message; returns the bytes used (0 = none).
fn encode_send_cmsgs(
    h: &mut libc::msghdr,
    buf: &mut CmsgBuf<SEND_CMSG_LEN>,
    m: &SendMsg<'_>,
) -> usize {
    if m.segment_size.is_none() && m.src_ip.is_none() {
        return 0;
    }
    h.msg_control = buf.0.as_mut_ptr().cast::<c_void>();
    h.msg_controllen = SEND_CMSG_LEN as _;
    let mut used = 0usize;
    // SAFETY: `h.msg_control`/`msg_controllen` describe `buf` (aligned for cmsghdr, large
    // enough for the two messages below, as the const assertion on the sizes shows), so
    // CMSG_FIRSTHDR/CMSG_NXTHDR return pointers inside it or null (checked before each
    // write; the sizing makes null impossible, so the check never fires); we write each payload
    // with `write_unaligned` within CMSG_LEN of its header.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        if let Some(seg) = m.segment_size {
            assert!(!c.is_null(), "cmsg buffer too small");
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as c_uint) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
            used += libc::CMSG_SPACE(size_of::<u16>() as c_uint) as usize;
            c = libc::CMSG_NXTHDR(h, c);
        }
        match (m.src_ip, m.dst) {
            (Some(IpAddr::V4(ip)), SocketAddr::V4(_)) => {
                assert!(!c.is_null(), "cmsg buffer too small");
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(ip.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as c_uint) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>(), info);
                used += libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as c_uint) as usize;
            }
            (Some(ip), SocketAddr::V6(_)) => {
                assert!(!c.is_null(), "cmsg buffer too small");
                let v6 = match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                (*c).cmsg_level = libc::IPPROTO_IPV6;
                (*c).cmsg_type = libc::IPV6_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as c_uint) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>(), info);
                used += libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as c_uint) as usize;
            }
            // An IPv6 source for an IPv4 destination cannot be expressed: let routing pick.
            _ => {}
        }
    }
    h.msg_controllen = used as _;
    if used == 0 {
        h.msg_control = std::ptr::null_mut();
    }
    used
}

const _: () = {
    // The send control buffer holds UDP_SEGMENT and the larger of the two pktinfos.
    // CMSG_SPACE is 16 + round8(payload) on 64-bit Linux: 24 + 40 = 64.
    assert!(SEND_CMSG_LEN >= 24 + 40);
    // The receive buffer holds UDP_GRO, IP_PKTINFO and IPV6_PKTINFO: 24 + 32 + 40 = 96.
    assert!(RECV_CMSG_LEN >= 24 + 32 + 40);
};

/// What the kernel told us about one received message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawRecv {
    /// Sender, as the kernel wrote it (v4-mapped on a dual-stack socket).
    pub(crate) from: Option<SocketAddr>,
    /// Destination IP of the packet (`IP_PKTINFO` / `IPV6_PKTINFO`), when enabled.
    pub(crate) dst_ip: Option<IpAddr>,
    /// Bytes written into the buffer.
    pub(crate) len: usize,
    /// GRO segment size (`UDP_GRO` cmsg), when the kernel coalesced datagrams.
    pub(crate) gro_size: Option<usize>,
    /// `MSG_TRUNC`: the message was longer than the buffer; the rest is lost.
    pub(crate) truncated: bool,
    /// `MSG_CTRUNC`: control messages did not fit (a bug in our sizing; logged).
    pub(crate) ctrunc: bool,
}

impl RawRecv {
    pub(crate) const EMPTY: Self = Self {
        from: None,
        dst_ip: None,
        len: 0,
        gro_size: None,
        truncated: false,
        ctrunc: false,
    };
}

/// Receives up to `min(bufs.len(), out.len(), BATCH)` messages with one `recvmmsg`, one
/// message per buffer. Returns how many arrived; `WouldBlock` when none is queued.
pub(crate) fn recv_batch(
    fd: BorrowedFd<'_>,
    bufs: &mut [IoSliceMut<'_>],
    out: &mut [RawRecv],
) -> io::Result<usize> {
    let n = bufs.len().min(out.len()).min(BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut addrs = [RawAddr::zeroed(); BATCH];
    let mut cmsgs = [CmsgBuf([0u8; RECV_CMSG_LEN]); BATCH];
    // SAFETY: `mmsghdr` is a plain C struct; all-zero is a valid value.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
    for i in 0..n {
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&raw mut addrs[i]).cast::<c_void>();
        h.msg_namelen = size_of::<RawAddr>() as socklen_t;
        // `IoSliceMut` is documented to be ABI-compatible with `iovec` on Unix.
        h.msg_iov = (&raw mut bufs[i]).cast::<libc::iovec>();
        h.msg_iovlen = 1;
        h.msg_control = cmsgs[i].0.as_mut_ptr().cast::<c_void>();
        h.msg_controllen = RECV_CMSG_LEN as _;
    }
    let got = loop {
        // SAFETY: each header points at live, writable stack storage (`addrs`, `cmsgs`) of
        // the advertised sizes, and at the caller's `IoSliceMut`, which borrows writable
        // buffers of the advertised lengths for the duration of the call. A null timeout
        // is allowed; the socket is non-blocking, so the call does not wait.
        let rc = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as c_uint,
                0 as _,
                std::ptr::null_mut(),
            )
        };
        if rc >= 0 {
            break rc as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    for i in 0..got {
        let h = &hdrs[i].msg_hdr;
        let mut r = RawRecv {
            from: addrs[i].decode(h.msg_namelen),
            dst_ip: None,
            len: hdrs[i].msg_len as usize,
            gro_size: None,
            truncated: h.msg_flags & libc::MSG_TRUNC != 0,
            ctrunc: h.msg_flags & libc::MSG_CTRUNC != 0,
        };
        decode_recv_cmsgs(h, &mut r);
        out[i] = r;
    }
    Ok(got)
}

/// Walks the control messages of one received message.
fn decode_recv_cmsgs(h: &libc::msghdr, r: &mut RawRecv) {
    if h.msg_controllen == 0 || h.msg_control.is_null() {
        return;
    }
    // SAFETY: the kernel set `msg_controllen` to the bytes it wrote into our buffer, so
    // CMSG_FIRSTHDR/CMSG_NXTHDR walk only headers inside it and return null past the end.
    // Each payload is read with `read_unaligned` only after checking that `cmsg_len`
    // covers it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            let level = (*c).cmsg_level;
            let kind = (*c).cmsg_type;
            let payload = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
            let data = libc::CMSG_DATA(c);
            if level == libc::SOL_UDP && kind == UDP_GRO && payload >= size_of::<c_int>() {
                let size = std::ptr::read_unaligned(data.cast::<c_int>());
                r.gro_size = usize::try_from(size).ok().filter(|&s| s > 0);
            } else if level == libc::IPPROTO_IP
                && kind == libc::IP_PKTINFO
                && payload >= size_of::<libc::in_pktinfo>()
            {
                let info = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                r.dst_ip = Some(IpAddr::V4(Ipv4Addr::from(
                    info.ipi_addr.s_addr.to_ne_bytes(),
                )));
            } else if level == libc::IPPROTO_IPV6
                && kind == libc::IPV6_PKTINFO
                && payload >= size_of::<libc::in6_pktinfo>()
            {
                let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                // A dual-stack socket may carry both; the IPv4 one is the more direct.
                if r.dst_ip.is_none() {
                    r.dst_ip = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_addr_round_trips_both_families() {
        let cases: [SocketAddr; 3] = [
            "127.0.0.1:4433".parse().unwrap(),
            "[::1]:9".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 65535, 7, 3)),
        ];
        for a in cases {
            let (raw, len) = RawAddr::encode(&a);
            assert_eq!(raw.decode(len), Some(a));
        }
        // A short length is refused rather than read past.
        let (raw, _) = RawAddr::encode(&cases[1]);
        assert_eq!(raw.decode(8), None);
    }
}
