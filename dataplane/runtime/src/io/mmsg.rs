//! The portable backend: level-triggered epoll, `recvmmsg` per ready socket into a
//! preallocated buffer pool, then `sendmmsg` grouped per output socket. Two syscalls per
//! socket per round instead of per packet; used when io_uring is missing or forbidden.

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use ferrelay_engine::{Action, FlowId};

use super::BUF_SIZE;
use super::addr::{self, RAW_ADDR_LEN, RawAddr};
use super::bufring::REG_LEN;
use super::table::{Rekeyed, SocketTable};
use crate::worker::{Core, SocketSet};

/// Datagrams per `recvmmsg` call.
const BATCH: usize = 32;
/// Receive buffers per round: several sockets' batches before one flush of sends.
const POOL: usize = 256;
const MAX_EVENTS: usize = 128;
/// epoll data of the command eventfd (socket keys never set bit 63).
const WAKE: u64 = 1 << 63;

/// One forward decided in this round: (output fd, receive slot, length), destination
/// in `dests[slot]`.
#[derive(Debug, Clone, Copy)]
struct Fwd {
    fd: RawFd,
    slot: u16,
    len: u32,
}

/// The recvmmsg/sendmmsg I/O shell of one worker.
pub(crate) struct Mmsg {
    epfd: OwnedFd,
    table: SocketTable,
    bufs: Vec<u8>,
    names: Box<[RawAddr]>,
    iovs: Box<[libc::iovec]>,
    rhdrs: Box<[libc::mmsghdr]>,
    flows: Box<[FlowId]>,
    fwd: Vec<Fwd>,
    dests: Box<[RawAddr]>,
    siovs: Box<[libc::iovec]>,
    shdrs: Box<[libc::mmsghdr]>,
    events: Box<[libc::epoll_event]>,
}

impl std::fmt::Debug for Mmsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mmsg").finish_non_exhaustive()
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Mmsg {
    pub fn new(max_flows: u32, wake_fd: RawFd) -> io::Result<Self> {
        // SAFETY: no pointers; the result is checked.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh epoll fd that nothing else owns.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: iovec/mmsghdr/epoll_event are plain old data; zero is a valid value.
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let mut m = Mmsg {
            epfd,
            table: SocketTable::new(max_flows),
            bufs: vec![0u8; POOL * BUF_SIZE],
            names: vec![RawAddr::zeroed(); POOL].into(),
            iovs: vec![zero_iov; POOL].into(),
            rhdrs: vec![zero_hdr; POOL].into(),
            flows: vec![FlowId::new(0, 0); POOL].into(),
            fwd: Vec::with_capacity(POOL),
            dests: vec![RawAddr::zeroed(); POOL].into(),
            siovs: vec![zero_iov; POOL].into(),
            shdrs: vec![zero_hdr; POOL].into(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS].into(),
        };
        for k in 0..POOL {
            m.iovs[k].iov_base = m.bufs[k * BUF_SIZE..].as_mut_ptr().cast();
            m.iovs[k].iov_len = REG_LEN;
            let h = &mut m.rhdrs[k].msg_hdr;
            h.msg_name = (&mut m.names[k] as *mut RawAddr).cast();
            h.msg_iov = &mut m.iovs[k];
            h.msg_iovlen = 1;
        }
        m.ctl(libc::EPOLL_CTL_ADD, wake_fd, WAKE)?;
        Ok(m)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: data,
        };
        // SAFETY: `ev` is a live local; the kernel copies it.
        cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Runs the worker loop until `Shutdown` or the stop flag.
    pub fn run(&mut self, core: &mut Core) {
        loop {
            if core.stopping() {
                break;
            }
            let now = core.now_ns();
            let timeout_ms = if core.busy_poll {
                0
            } else {
                let w = core.until_next_timer(now);
                // Round up so we never wake just before the timer is due.
                w.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            };
            // SAFETY: `events` is a live buffer of MAX_EVENTS entries.
            let n = unsafe {
                libc::epoll_wait(
                    self.epfd.as_raw_fd(),
                    self.events.as_mut_ptr(),
                    MAX_EVENTS as i32,
                    timeout_ms,
                )
            };
            let t0 = core.now_ns();
            if !core.apply_queued(self) {
                break;
            }
            let mut wake = false;
            let mut used = 0usize;
            for e in 0..n.max(0) as usize {
                let data = self.events[e].u64;
                if data == WAKE {
                    wake = true;
                    continue;
                }
                let Some((id, fd)) = self.table.resolve(data) else {
                    core.counters.rx_stale += 1;
                    continue;
                };
                if POOL - used < BATCH {
                    self.process(core, used, t0);
                    used = 0;
                }
                used += self.recv_batch(core, id, fd, used);
            }
            if used > 0 {
                self.process(core, used, t0);
            }
            if wake {
                core.drain_command_fd();
                if !core.apply_commands(self) {
                    break;
                }
            }
            core.on_timers(t0);
            core.flush_events();
        }
    }

    /// One `recvmmsg` on `fd` into slots `at..at + BATCH`; returns datagrams received.
    fn recv_batch(&mut self, core: &mut Core, id: FlowId, fd: RawFd, at: usize) -> usize {
        for h in &mut self.rhdrs[at..at + BATCH] {
            h.msg_hdr.msg_namelen = RAW_ADDR_LEN as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: the headers point at `names`, `iovs` and `bufs`, all preallocated and
        // alive; BATCH entries from `at` are inside `rhdrs`.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.rhdrs[at..].as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error().raw_os_error();
            if e != Some(libc::EAGAIN) && e != Some(libc::EINTR) {
                core.counters.rx_errors += 1;
            }
            return 0;
        }
        let got = got as usize;
        self.flows[at..at + got].fill(id);
        got
    }

    /// Hands slots `0..used` to the engine and sends what it forwards, grouped per socket.
    fn process(&mut self, core: &mut Core, used: usize, now: u64) {
        core.counters.rx_batches += 1;
        core.counters.rx_datagrams += used as u64;
        self.fwd.clear();
        for k in 0..used {
            let h = &self.rhdrs[k];
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                core.counters.rx_truncated += 1;
                continue;
            }
            let len = h.msg_len as usize;
            let namelen = (h.msg_hdr.msg_namelen as usize).min(RAW_ADDR_LEN);
            let Some(src) = addr::parse(&self.names[k].bytes[..namelen]) else {
                core.counters.rx_bad_source += 1;
                continue;
            };
            let buf = &mut self.bufs[k * BUF_SIZE..(k + 1) * BUF_SIZE];
            match core.engine.on_datagram(now, self.flows[k], src, buf, len) {
                Action::Forward { via, dest, len } => match self.table.fd(via) {
                    Some(fd) => {
                        self.dests[k].set(dest);
                        self.fwd.push(Fwd {
                            fd,
                            slot: k as u16,
                            len: len as u32,
                        });
                    }
                    None => core.counters.tx_no_socket += 1,
                },
                Action::Drop(_) => {}
            }
        }
        if self.fwd.is_empty() {
            return;
        }
        // Group per output socket; the slot breaks ties so each stream keeps its order.
        self.fwd.sort_unstable_by_key(|f| (f.fd, f.slot));
        let total = self.fwd.len();
        for (i, f) in self.fwd.iter().enumerate() {
            let k = f.slot as usize;
            self.siovs[i].iov_base = self.bufs[k * BUF_SIZE..].as_mut_ptr().cast();
            self.siovs[i].iov_len = f.len as usize;
            let h = &mut self.shdrs[i].msg_hdr;
            h.msg_name = (&mut self.dests[k] as *mut RawAddr).cast();
            h.msg_namelen = if self.dests[k].bytes[0..2] == (libc::AF_INET as u16).to_ne_bytes() {
                16
            } else {
                RAW_ADDR_LEN as libc::socklen_t
            };
            h.msg_iov = &mut self.siovs[i];
            h.msg_iovlen = 1;
        }
        let mut start = 0;
        while start < total {
            let fd = self.fwd[start].fd;
            let mut end = start + 1;
            while end < total && self.fwd[end].fd == fd {
                end += 1;
            }
            self.send_run(core, fd, start, end);
            start = end;
        }
        let resid = core.now_ns().saturating_sub(now);
        for _ in 0..total {
            core.engine.record_residence(resid);
        }
    }

    /// `sendmmsg` of headers `start..end` on `fd`; a refused datagram is counted and skipped.
    fn send_run(&mut self, core: &mut Core, fd: RawFd, mut start: usize, end: usize) {
        while start < end {
            // SAFETY: headers `start..end` are initialised and point into live buffers.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.shdrs[start..].as_mut_ptr(),
                    (end - start) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                core.counters.tx_datagrams += r as u64;
                start += r as usize;
            } else {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // Socket buffer full: the rest of this run would fail the same way.
                    Some(libc::EAGAIN) => {
                        core.counters.tx_errors += (end - start) as u64;
                        return;
                    }
                    // This datagram was refused (e.g. unreachable); try the next.
                    _ => {
                        core.counters.tx_errors += 1;
                        start += 1;
                    }
                }
            }
        }
    }
}

impl SocketSet for Mmsg {
    fn attach(&mut self, id: FlowId, sock: UdpSocket) -> io::Result<()> {
        let fd = sock.as_raw_fd();
        let key = self
            .table
            .insert(id, sock)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        if let Err(e) = self.ctl(libc::EPOLL_CTL_ADD, fd, key) {
            self.table.remove(id);
            return Err(e);
        }
        Ok(())
    }

    fn detach(&mut self, id: FlowId) -> bool {
        match self.table.remove(id) {
            Some((s, _)) => {
                let _ = self.ctl(libc::EPOLL_CTL_DEL, s.as_raw_fd(), 0);
                true
            }
            None => false,
        }
    }

    fn rekey(&mut self, from: FlowId, to: FlowId) -> io::Result<()> {
        match self.table.rekey(from, to)? {
            // Registered under the same key, which now names `to`.
            Rekeyed::Kept => Ok(()),
            Rekeyed::Moved { fd, key, .. } => {
                if let Err(e) = self.ctl(libc::EPOLL_CTL_MOD, fd, key) {
                    // Its events would carry a dead key: close it, as a failed
                    // attach does.
                    if let Some((s, _)) = self.table.remove(to) {
                        let _ = self.ctl(libc::EPOLL_CTL_DEL, s.as_raw_fd(), 0);
                    }
                    return Err(e);
                }
                Ok(())
            }
        }
    }
}
