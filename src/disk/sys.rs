//! Small safe wrappers over libc, for the few jobs std has no answer to:
//! preallocating a file, asking for a graceful stop on SIGINT/SIGTERM,
//! raising the open-file limit, and socket options std cannot set
//! (a bound source for `connect`, the multicast sockets of local
//! discovery, an IPv6 address's interface index).
//!
//! Owns: each `unsafe` libc call behind one safe function, and the
//! process-wide stop flag that the signal handlers set. Does not own: what
//! a stop means (the orchestrator polls [`stop_requested`] and winds down),
//! files and memory maps (that is [`crate::disk::storage`]).
//!
//! SIGPIPE: Rust binaries already set SIGPIPE to "ignore" before `main`, so a
//! write to a socket the peer closed returns `EPIPE` (an `io::Error`) rather
//! than killing the process. Nothing here touches it.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Allocates disk blocks for the first `len` bytes of `file`, growing it to
/// `len` if it is shorter (never shrinking it), so that a full disk is an
/// error now rather than a `SIGBUS` when a memory-mapped write later finds
/// no block to land in.
///
/// Uses the `fallocate` system call, not `posix_fallocate`: where the
/// filesystem cannot preallocate, glibc's `posix_fallocate` emulates it by
/// reading and writing a byte of every 4 KiB block, a pass over the whole
/// file on every start that nothing can stop. There (the call answers
/// `EOPNOTSUPP` or `EINVAL`: ZFS before 2.2, some network filesystems),
/// this falls back to checking the free space with `fstatvfs` and
/// extending the file with `set_len`. That file is sparse, so a disk
/// filled by someone else meanwhile can still fail a write later; the
/// check catches the common case of a disk that was simply too small.
pub fn fallocate(file: &File, len: u64) -> io::Result<()> {
    if len == 0 {
        // fallocate refuses a zero length with EINVAL; there is nothing to
        // allocate.
        return Ok(());
    }
    let off_len = libc::off_t::try_from(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{len} bytes is past the largest file offset this platform supports"),
        )
    })?;
    loop {
        // SAFETY: fallocate only reads its integer arguments; the
        // descriptor is valid for as long as `file` is borrowed.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, off_len) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP | libc::EINVAL) => return set_len_checked(file, len),
            _ => return Err(e),
        }
    }
}

/// Starts writing a file range's dirty pages to disk without waiting for
/// them (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that a later
/// `fdatasync` finds little left to write. A hint: where it fails, the
/// range waits for the kernel's own writeback as before.
pub fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return Ok(());
    };
    // SAFETY: sync_file_range only reads its integer arguments; the
    // descriptor is valid for as long as `file` is borrowed.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The fallback for [`fallocate`]: extend with `set_len` after checking that
/// the bytes still to be allocated fit in the free space (the file's current
/// length is taken as already allocated, a fine approximation).
fn set_len_checked(file: &File, len: u64) -> io::Result<()> {
    let current = file.metadata()?.len();
    if current >= len {
        return Ok(());
    }
    let need = len - current;
    let have = free_space(file)?;
    if need > have {
        // io::ErrorKind::StorageFull needs Rust 1.83; our MSRV is 1.80.
        return Err(io::Error::other(format!(
            "not enough free space: need {}, have {}",
            crate::util::units::format_bytes(need),
            crate::util::units::format_bytes(have)
        )));
    }
    file.set_len(len)
}

/// Bytes available to an unprivileged user on the filesystem holding `file`.
pub fn free_space(file: &File) -> io::Result<u64> {
    // SAFETY: statvfs is plain old data; all-zero is a valid value, and
    // fstatvfs overwrites it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable statvfs for the duration of the
    // call; the descriptor is valid while `file` is borrowed.
    let rc = unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // fsblkcnt_t and the block size are u32 or u64 depending on the
    // platform; `as u64` widens either.
    #[allow(clippy::unnecessary_cast)]
    let bytes = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
    Ok(bytes)
}

/// Set by the SIGINT/SIGTERM handler; never cleared.
static STOP: AtomicBool = AtomicBool::new(false);

/// Set by the SIGHUP handler (when installed); taken by [`take_hangup`].
static HANGUP: AtomicBool = AtomicBool::new(false);

/// The signal handler: one atomic store, which is async-signal-safe.
extern "C" fn on_stop_signal(signal: libc::c_int) {
    if signal == libc::SIGHUP {
        HANGUP.store(true, Ordering::SeqCst);
    } else {
        STOP.store(true, Ordering::SeqCst);
    }
}

/// Like [`install_stop_handlers`], and SIGHUP sets a flag that
/// [`take_hangup`] reads (`shoal serve` rescans its watch folder) instead
/// of ending the process.
pub fn install_serve_handlers() {
    install_stop_handlers();
    install(libc::SIGHUP, 0);
}

/// Whether SIGHUP came since the last call.
pub fn take_hangup() -> bool {
    HANGUP.swap(false, Ordering::SeqCst)
}

/// Installs handlers so that SIGINT (Ctrl-C) and SIGTERM ask for a graceful
/// stop instead of killing the process: they only set a flag, which the
/// orchestrator polls with [`stop_requested`] to flush data and resume state
/// before exiting.
///
/// A second SIGINT kills the process as usual (the SIGINT handler is
/// installed with `SA_RESETHAND`, so the first one restores the default
/// action): a user whose stop hangs can always force-quit with another
/// Ctrl-C. Nothing already marked done is lost then, since resume state
/// records a piece only after its data was flushed. SIGTERM stays handled,
/// as service managers repeat it and follow it with SIGKILL anyway.
///
/// Handlers use `SA_RESTART`, so a blocking read or write in another thread
/// resumes rather than failing with `EINTR` (a socket read with a timeout
/// may still return `Interrupted`; std's `read_exact`/`write_all` retry it).
pub fn install_stop_handlers() {
    for (signal, extra) in [(libc::SIGINT, libc::SA_RESETHAND), (libc::SIGTERM, 0)] {
        install(signal, extra);
    }
}

/// Points `signal` at [`on_stop_signal`], with `SA_RESTART` and `extra`
/// flags.
fn install(signal: libc::c_int, extra: libc::c_int) {
    {
        // SAFETY: sigaction is plain old data; all-zero is a valid value
        // (empty mask, no flags) that we then fill in.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART | extra;
        // SAFETY: `action.sa_mask` is a valid sigset_t to initialise.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is fully initialised and the handler only does an
        // atomic store, which is async-signal-safe; the old action is not
        // wanted (null is allowed).
        let rc = unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
        // sigaction fails only for an invalid signal number or for
        // SIGKILL/SIGSTOP, neither of which can happen here.
        debug_assert_eq!(rc, 0, "sigaction({signal})");
    }
}

thread_local! {
    /// Page faults on a mapped file page that no longer exists (the file
    /// was truncated under the map), as the SIGBUS guard counted them on
    /// this thread: a fault belongs to the thread whose write took it
    /// (SIGBUS from a memory access goes to the faulting thread). A const
    /// initialiser and no destructor make it a plain TLS access, safe in a
    /// signal handler.
    static BUS_FAULTS: AtomicUsize = const { AtomicUsize::new(0) };
    /// The memory this thread is copying into through [`guarded_copy`]
    /// (start, length): the only place a fault is repaired.
    static WINDOW: (AtomicUsize, AtomicUsize) = const { (AtomicUsize::new(0), AtomicUsize::new(0)) };
}
/// The page size, read once when the guard is installed.
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// SIGBUS handler: for a fault on a mapped page past the end of its file
/// (`BUS_ADRERR`) inside the window this thread is copying into through
/// [`guarded_copy`], maps a private zero page over the faulting page, so
/// the copy completes into memory nobody reads, and counts the fault; the
/// writer sees the count change and reports an error instead of dying.
/// Any other SIGBUS (another mapping, another thread, another cause) gets
/// the default action back and recurs: the process dies as it would have.
/// `mmap` is a plain system call here: no lock, no allocation.
extern "C" fn on_bus_error(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: errno is this thread's; the handler must leave it as it was.
    let errno = unsafe { *libc::__errno_location() };
    let page = PAGE_SIZE.load(Ordering::Relaxed);
    // SAFETY: the kernel passes a valid siginfo_t for an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let (from, len) = WINDOW.with(|(a, n)| (a.load(Ordering::SeqCst), n.load(Ordering::SeqCst)));
    let in_window = addr >= from && addr - from < len;
    let replaced = page != 0 && code == libc::BUS_ADRERR && in_window && {
        let start = addr & !(page - 1);
        // SAFETY: the page is inside a mapping of ours that faulted; mapping
        // anonymous memory over it with MAP_FIXED replaces only that page.
        let p = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        p != libc::MAP_FAILED
    };
    if replaced {
        BUS_FAULTS.with(|n| n.fetch_add(1, Ordering::SeqCst));
    } else {
        // SAFETY: restoring the default action is async-signal-safe; the
        // faulting instruction then runs again and the signal kills us.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Installs the SIGBUS guard (once; later calls do nothing). Writes go
/// through memory maps, and a file truncated under a map turns the next
/// write to a page past its new end into SIGBUS, which would kill the
/// process; with the guard the write is lost and [`bus_faults`] counts it.
pub fn install_bus_guard() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        PAGE_SIZE.store(usize::try_from(page).unwrap_or(4096), Ordering::Relaxed);
        // SAFETY: as for the stop handlers: all-zero is a valid sigaction.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_bus_error
            as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
            as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO;
        // SAFETY: `action.sa_mask` is a valid sigset_t to initialise.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is fully initialised; the handler is above.
        let rc = unsafe { libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) };
        debug_assert_eq!(rc, 0, "sigaction(SIGBUS)");
    });
}

/// Copies `src` into `dst` (a memory-mapped file's bytes) under the SIGBUS
/// guard: `false` if a page of `dst` was past the end of its file (it was
/// truncated under the map), in which case what went there is lost.
pub fn guarded_copy(dst: &mut [u8], src: &[u8]) -> bool {
    let faults = || BUS_FAULTS.with(|n| n.load(Ordering::SeqCst));
    let before = faults();
    WINDOW.with(|(a, n)| {
        a.store(dst.as_ptr() as usize, Ordering::SeqCst);
        n.store(dst.len(), Ordering::SeqCst);
    });
    // The fences keep the copy between arming the window and disarming it.
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    dst.copy_from_slice(src);
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    WINDOW.with(|(_, n)| n.store(0, Ordering::SeqCst));
    faults() == before
}

/// Whether SIGINT or SIGTERM arrived since [`install_stop_handlers`].
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The soft limit on open files.
pub fn open_file_limit() -> io::Result<u64> {
    // SAFETY: rlimit is plain old data; all-zero is valid and is overwritten.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is valid and writable for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(lim.rlim_cur as u64)
}

/// Raises the soft limit on open files to the hard limit and returns the
/// new soft limit, so that storage's cache of open files and many peers'
/// sockets have room. Called once by `main`.
pub fn raise_open_file_limit() -> io::Result<u64> {
    // SAFETY: rlimit is plain old data; all-zero is valid and is overwritten.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is valid and writable for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit read by the call only.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim = raised;
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(lim.rlim_cur as u64)
}

/// Connects to `dest` from the local address `source` (port chosen by the
/// kernel), within `timeout`: what `TcpStream::connect_timeout` does, plus
/// the `bind` std has no way to ask for. For `--bind` on a multi-homed host,
/// and for tests that need clients on several loopback addresses. A source
/// of the other address family than `dest` is not used.
pub fn connect_from(
    source: std::net::IpAddr,
    dest: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> io::Result<std::net::TcpStream> {
    use std::net::SocketAddr;
    if source.is_ipv4() != dest.is_ipv4() {
        return std::net::TcpStream::connect_timeout(&dest, timeout);
    }
    let stream = std::net::TcpStream::from(new_socket(
        family_of(dest),
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK,
    )?);
    let fd = stream.as_raw_fd();
    bind(fd, SocketAddr::new(source, 0))?;
    let (remote, remote_len) = sockaddr(dest);
    // SAFETY: `remote` is a valid sockaddr of `remote_len` bytes.
    let rc = unsafe {
        libc::connect(
            fd,
            (&remote as *const libc::sockaddr_storage).cast(),
            remote_len,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut poll, 1, ms) } {
            0 => return Err(io::ErrorKind::TimedOut.into()),
            n if n < 0 => return Err(io::Error::last_os_error()),
            _ => {}
        }
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// A UDP socket on the IPv4 multicast `group`, ready for local service
/// discovery: bound to the group's address and port with `SO_REUSEADDR`
/// (so that every client on the host can bind it, and the socket receives
/// only datagrams sent to the group), joined to the group on `interface`
/// and sending through it (`IP_MULTICAST_IF`; unspecified: the interface
/// the kernel routes multicast through), TTL 1 (the LAN only) and looped
/// back (other clients on this host hear us). std can set neither
/// `SO_REUSEADDR` nor `IP_MULTICAST_IF` before `bind`.
pub fn multicast_socket_v4(
    group: std::net::SocketAddrV4,
    interface: std::net::Ipv4Addr,
) -> io::Result<std::net::UdpSocket> {
    let in_addr = |ip: std::net::Ipv4Addr| libc::in_addr {
        s_addr: u32::from(ip).to_be(),
    };
    let join = libc::ip_mreq {
        imr_multiaddr: in_addr(*group.ip()),
        imr_interface: in_addr(interface),
    };
    multicast_socket(group.into(), |fd| {
        let level = libc::IPPROTO_IP;
        set_option(fd, level, libc::IP_MULTICAST_IF, &in_addr(interface))?;
        set_option(fd, level, libc::IP_MULTICAST_TTL, &MULTICAST_HOPS)?;
        set_option(fd, level, libc::IP_MULTICAST_LOOP, &ON)?;
        set_option(fd, level, libc::IP_ADD_MEMBERSHIP, &join)
    })
}

/// The IPv6 twin of [`multicast_socket_v4`]: the interface is an index
/// (0: the kernel's choice), set by `IPV6_MULTICAST_IF` and used for
/// `IPV6_JOIN_GROUP`; hop limit 1, looped back, and `IPV6_V6ONLY` (an
/// IPv4 datagram belongs to the IPv4 socket).
pub fn multicast_socket_v6(
    group: std::net::SocketAddrV6,
    interface: u32,
) -> io::Result<std::net::UdpSocket> {
    let index = libc::c_int::try_from(interface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))?;
    let join = libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr {
            s6_addr: group.ip().octets(),
        },
        ipv6mr_interface: interface,
    };
    multicast_socket(group.into(), |fd| {
        let level = libc::IPPROTO_IPV6;
        set_option(fd, level, libc::IPV6_V6ONLY, &ON)?;
        set_option(fd, level, libc::IPV6_MULTICAST_IF, &index)?;
        set_option(fd, level, libc::IPV6_MULTICAST_HOPS, &MULTICAST_HOPS)?;
        set_option(fd, level, libc::IPV6_MULTICAST_LOOP, &ON)?;
        // IPV6_JOIN_GROUP is Linux's IPV6_ADD_MEMBERSHIP.
        set_option(fd, level, libc::IPV6_ADD_MEMBERSHIP, &join)
    })
}

/// A UDP socket of `group`'s family with `SO_REUSEADDR` and the options
/// `options` sets, then bound to `group`.
fn multicast_socket(
    group: std::net::SocketAddr,
    options: impl FnOnce(libc::c_int) -> io::Result<()>,
) -> io::Result<std::net::UdpSocket> {
    let socket = new_socket(family_of(group), libc::SOCK_DGRAM)?;
    let fd = socket.as_raw_fd();
    set_option(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &ON)?;
    options(fd)?;
    bind(fd, group)?;
    Ok(socket.into())
}

/// The index of the interface that holds the IPv6 address `ip`
/// (`getifaddrs`, then `if_nametoindex`): where `--bind`'s address lives,
/// for the IPv6 multicast options. `NotFound` if no interface holds it.
pub fn interface_index(ip: std::net::Ipv6Addr) -> io::Result<u32> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list pointer into `list`, which we free
    // below with freeifaddrs, once, on every path.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a non-null node of the list getifaddrs made,
        // valid until freeifaddrs.
        let ifa = unsafe { &*entry };
        entry = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_addr points to a sockaddr at least as
        // large as its family's: a sockaddr_in6 when it says AF_INET6.
        let holds = unsafe {
            i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET6
                && (*ifa.ifa_addr.cast::<libc::sockaddr_in6>())
                    .sin6_addr
                    .s6_addr
                    == ip.octets()
        };
        if holds {
            // SAFETY: ifa_name is a NUL-terminated interface name.
            let index = unsafe { libc::if_nametoindex(ifa.ifa_name) };
            found = Some(match index {
                0 => Err(io::Error::last_os_error()),
                index => Ok(index),
            });
            break;
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once; nothing from
    // it is used after.
    unsafe { libc::freeifaddrs(list) };
    found.unwrap_or_else(|| {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface has the address {ip}"),
        ))
    })
}

/// An option value of 1: on.
const ON: libc::c_int = 1;
/// Multicast TTL / hop limit: 1, the local network only.
const MULTICAST_HOPS: libc::c_int = 1;

/// `AF_INET` or `AF_INET6`, as `addr` is.
fn family_of(addr: std::net::SocketAddr) -> libc::c_int {
    if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

/// A new socket (close-on-exec) of `family` and `kind`.
fn new_socket(family: libc::c_int, kind: libc::c_int) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: socket has no memory preconditions.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket nobody else owns; the OwnedFd closes it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Sets the socket option `level`/`name` of `fd` to `value`: a C `int` or
/// one of libc's plain option structs, as that option expects.
fn set_option<T: Copy>(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a live, initialised `T` of the size given, which
    // the kernel only reads; callers pass the type the option expects.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Binds `fd` to `addr`.
fn bind(fd: libc::c_int, addr: std::net::SocketAddr) -> io::Result<()> {
    let (addr, len) = sockaddr(addr);
    // SAFETY: `addr` is a valid sockaddr of `len` bytes.
    if unsafe { libc::bind(fd, (&addr as *const libc::sockaddr_storage).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `addr` as the C socket address `bind` and `connect` take.
fn sockaddr(addr: std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    use std::net::SocketAddr;
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and
            // suitably aligned for it.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Whether a socket read ended for no reason of the peer's: its timeout
/// passed, or a signal interrupted it. The caller just waits again.
pub fn is_wait_over(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// An `io::Error`'s message without Rust's " (os error N)" suffix, for
/// one-line messages that name the file themselves.
pub fn io_reason(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A file in the temp dir, removed when dropped.
    struct TempFile(PathBuf, File);

    impl TempFile {
        fn new(tag: &str) -> TempFile {
            let path = std::env::temp_dir().join(format!("shoal-sys-{}-{tag}", std::process::id()));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            TempFile(path, file)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn fallocate_sets_length_and_never_shrinks() {
        let t = TempFile::new("fallocate");
        fallocate(&t.1, 100_000).unwrap();
        assert_eq!(t.1.metadata().unwrap().len(), 100_000);
        fallocate(&t.1, 0).unwrap();
        fallocate(&t.1, 10).unwrap();
        assert_eq!(t.1.metadata().unwrap().len(), 100_000);
    }

    #[test]
    fn fallocate_beyond_the_disk_fails_cleanly() {
        let t = TempFile::new("fallocate-huge");
        let err = fallocate(&t.1, 1 << 60).unwrap_err();
        // EFBIG or ENOSPC from fallocate, depending on the filesystem,
        // or the free-space check of the fallback.
        assert!(
            matches!(err.raw_os_error(), Some(libc::EFBIG | libc::ENOSPC))
                || err.to_string().starts_with("not enough free space"),
            "{err}"
        );
        assert_eq!(t.1.metadata().unwrap().len(), 0);
    }

    #[test]
    fn fallback_checks_free_space() {
        let t = TempFile::new("fallback");
        assert!(free_space(&t.1).unwrap() > 0);
        let err = set_len_checked(&t.1, 1 << 60).unwrap_err().to_string();
        // The free space moves as others write; the need does not.
        assert!(
            err.starts_with("not enough free space: need 1.0 EiB, have "),
            "{err}"
        );
        assert_eq!(t.1.metadata().unwrap().len(), 0);
        set_len_checked(&t.1, 4096).unwrap();
        assert_eq!(t.1.metadata().unwrap().len(), 4096);
    }

    /// Runs in a child process (see `signals_ask_for_a_stop_then_force_quit`)
    /// so the stop flag of the test process, which other tests may read,
    /// stays clear. Ends by killing itself with a second SIGINT.
    #[test]
    fn stop_signal_child() {
        if std::env::var_os("SHOAL_SIGNAL_CHILD").is_none() {
            return;
        }
        assert!(!stop_requested());
        install_stop_handlers();
        // SAFETY: our SIGTERM handler is installed, so raising it runs the
        // handler (synchronously, in this thread) instead of terminating.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        assert!(stop_requested());
        // SAFETY: as above, for SIGINT; SA_RESETHAND restores the default
        // action on entry.
        assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
        assert!(stop_requested());
        // SAFETY: SIGINT's default action is now to terminate this (child)
        // process, which the parent test expects.
        unsafe { libc::raise(libc::SIGINT) };
        unreachable!("a second SIGINT should have killed the process");
    }

    #[test]
    fn signals_ask_for_a_stop_then_force_quit() {
        use std::os::unix::process::ExitStatusExt;
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "disk::sys::tests::stop_signal_child",
                "--nocapture",
            ])
            .args(["--test-threads", "1"])
            .env("SHOAL_SIGNAL_CHILD", "1")
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGINT),
            "child: {:?}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !stop_requested(),
            "the test process itself was not signalled"
        );
    }

    #[test]
    fn open_file_limit_does_not_go_down() {
        // SAFETY: rlimit is plain old data; all-zero is valid.
        let mut before: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: `before` is valid and writable for the call.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut before) },
            0
        );
        let now = raise_open_file_limit().unwrap();
        #[allow(clippy::unnecessary_cast)]
        let before = before.rlim_cur as u64;
        assert!(now >= before);
    }

    /// `::1` lives on `lo` (when this host has IPv6 at all); an address
    /// no interface holds is `NotFound`, not some interface.
    #[test]
    fn an_ipv6_address_names_its_interface() {
        let nobody = "2001:db8::dead:beef".parse().unwrap();
        let err = interface_index(nobody).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        if std::net::TcpListener::bind("[::1]:0").is_ok() {
            let lo = std::ffi::CString::new("lo").unwrap();
            // SAFETY: `lo` is a NUL-terminated name.
            let want = unsafe { libc::if_nametoindex(lo.as_ptr()) };
            assert_eq!(
                interface_index(std::net::Ipv6Addr::LOCALHOST).unwrap(),
                want
            );
        }
    }
}
