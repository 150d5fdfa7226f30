//! The io_uring backend: one multishot `RecvMsg` per socket drawing from the worker's
//! provided-buffer ring, `SendMsg` straight out of the receive buffer (zero copy; the
//! buffer returns to the ring when the send completes), and one submit per batch.
//!
//! `user_data`: bit 63 clear = a receive, the rest is the socket's key in the
//! `SocketTable` (slot and epoch, so a parked socket passing to the next flow of its
//! slot keeps its armed receive); bit 63 set = our own operations, kind in bits
//! 32..40, buffer id low.

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};

use ferrelay_engine::{Action, FlowId};
use io_uring::squeue::Entry;
use io_uring::types::{Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode};

use super::addr::{self, RAW_ADDR_LEN, RawAddr};
use super::bufring::{BufRing, REG_LEN};
use super::table::{Rekeyed, SocketTable};
use crate::worker::{Core, SocketSet};

const TAG: u64 = 1 << 63;
const KIND_MASK: u64 = TAG | (0xff << 32);
const UD_WAKE: u64 = TAG | (1 << 32);
const UD_CANCEL: u64 = TAG | (2 << 32);
const UD_SEND: u64 = TAG | (3 << 32);
/// The buffer group id of the worker's only buffer ring.
const BGID: u16 = 0;

/// msghdr, iovec and destination of one in-flight send; indexed by buffer id, since a
/// buffer is in at most one send at a time.
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: RawAddr,
}

/// The io_uring I/O shell of one worker. Field order matters: the ring is dropped (and
/// every pending operation cancelled) before the memory those operations point into.
pub(crate) struct Uring {
    ring: IoUring,
    bufs: BufRing,
    table: SocketTable,
    slots: Box<[SendSlot]>,
    recv_hdr: Box<libc::msghdr>,
    wake_buf: Box<u64>,
    wake_fd: RawFd,
    /// Keys of sockets whose multishot receive ended and must be armed again.
    rearm: Vec<u64>,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring")
            .field("bufs", &self.bufs)
            .field("rearm", &self.rearm.len())
            .finish_non_exhaustive()
    }
}

/// A msghdr that asks only for the source name (no control data).
fn recv_template() -> libc::msghdr {
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_namelen = RAW_ADDR_LEN as libc::socklen_t;
    h
}

/// Builds a ring with the cheapest task-run mode this kernel accepts.
fn build_ring(sq: u32, cq: u32) -> io::Result<IoUring> {
    let modes: [fn(&mut io_uring::Builder); 3] = [
        |b| {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag();
        },
        |b| {
            b.setup_coop_taskrun().setup_taskrun_flag();
        },
        |_| {},
    ];
    let mut last = io::Error::other("no ring mode tried");
    for mode in modes {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq).setup_clamp();
        mode(&mut b);
        match b.build(sq) {
            Ok(r) => return Ok(r),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Checks that the kernel has every opcode the backend uses.
fn probe(ring: &IoUring) -> Result<(), String> {
    let mut p = Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(|e| format!("io_uring probe: {e}"))?;
    let needed = [
        (opcode::RecvMsgMulti::CODE, "RecvMsg"),
        (opcode::SendMsg::CODE, "SendMsg"),
        (opcode::AsyncCancel::CODE, "AsyncCancel"),
        (opcode::Read::CODE, "Read"),
    ];
    for (code, name) in needed {
        if !p.is_supported(code) {
            return Err(format!("io_uring opcode {name} not supported"));
        }
    }
    Ok(())
}

impl Uring {
    /// Sets up ring, probe and buffers; `Err` carries the reason for Auto's fallback.
    pub fn new(recv_buffers: u16, max_flows: u32, wake_fd: RawFd) -> Result<Self, String> {
        let sq = u32::from(recv_buffers).clamp(256, 4096);
        let cq = (u32::from(recv_buffers) * 4).clamp(1024, 65536);
        let ring = build_ring(sq, cq).map_err(|e| format!("io_uring setup: {e}"))?;
        probe(&ring)?;
        let mut bufs =
            BufRing::new(recv_buffers, BGID).map_err(|e| format!("buffer memory: {e}"))?;
        bufs.register(&ring.submitter())
            .map_err(|e| format!("register_buf_ring: {e}"))?;
        bufs.fill();
        let slots = (0..recv_buffers)
            .map(|_| SendSlot {
                // SAFETY: msghdr/iovec are plain old data; zero is a valid empty value.
                hdr: unsafe { std::mem::zeroed() },
                // SAFETY: as above.
                iov: unsafe { std::mem::zeroed() },
                addr: RawAddr::zeroed(),
            })
            .collect();
        let mut u = Uring {
            ring,
            bufs,
            table: SocketTable::new(max_flows),
            slots,
            recv_hdr: Box::new(recv_template()),
            wake_buf: Box::new(0),
            wake_fd,
            rearm: Vec::with_capacity(max_flows as usize),
        };
        u.arm_wake();
        Ok(u)
    }

    /// Pushes `sqe`, submitting first if the queue is full. Fails only if submit fails.
    fn push(&mut self, sqe: &Entry) -> io::Result<()> {
        push_sqe(&mut self.ring, sqe)
    }

    fn arm_wake(&mut self) {
        let buf: *mut u64 = &mut *self.wake_buf;
        let sqe = opcode::Read::new(Fd(self.wake_fd), buf.cast(), 8)
            .build()
            .user_data(UD_WAKE);
        // A failed push means submit itself fails; the loop's next wait reports it.
        let _ = self.push(&sqe);
    }

    fn arm_recv(&mut self, key: u64, fd: RawFd) -> io::Result<()> {
        let sqe = opcode::RecvMsgMulti::new(Fd(fd), &*self.recv_hdr, BGID)
            .build()
            .user_data(key);
        self.push(&sqe)
    }

    /// Runs the worker loop until `Shutdown` or the stop flag.
    pub fn run(&mut self, core: &mut Core) {
        // Sends queued by the last batch and when that batch started: they reach the
        // kernel in the same io_uring_enter that waits for the next batch.
        let mut pending = 0u32;
        let mut batch_t0 = 0u64;
        loop {
            if core.stopping() {
                break;
            }
            let now = core.now_ns();
            let sends = pending as usize;
            if pending > 0 {
                let resid = now.saturating_sub(batch_t0);
                for _ in 0..pending {
                    core.engine.record_residence(resid);
                }
            }
            let wait = core.until_next_timer(now);
            let r = if core.busy_poll || wait.is_zero() || !self.ring.completion().is_empty() {
                self.ring.submit()
            } else {
                // Each queued send completes with one CQE (usually inline, during this
                // very call); waiting for one more than those means the same enter also
                // sleeps until the next datagram, command or timer.
                let ts = Timespec::from(wait);
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(sends + 1, &args)
            };
            if let Err(e) = r
                && !matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                )
            {
                core.counters.rx_errors += 1;
            }
            batch_t0 = core.now_ns();
            if !core.apply_queued(self) {
                break;
            }
            let (forwarded, wake) = self.drain(core, batch_t0);
            pending = forwarded;
            if wake {
                core.drain_command_fd();
                if !core.apply_commands(self) {
                    break;
                }
                self.arm_wake();
            }
            core.on_timers(batch_t0);
            core.flush_events();
        }
        // Queued sends still go out before the ring closes.
        if pending > 0 {
            let _ = self.ring.submit();
        }
    }

    /// Handles every completion that is ready; returns (packets sent, command wake-up).
    fn drain(&mut self, core: &mut Core, now: u64) -> (u32, bool) {
        let mut forwarded = 0u32;
        let mut wake = false;
        let mut datagrams = 0u64;
        let Uring {
            ring,
            bufs,
            table,
            slots,
            recv_hdr,
            rearm,
            ..
        } = self;
        let (submitter, mut sq, mut cq) = ring.split();
        cq.sync();
        for cqe in &mut cq {
            let ud = cqe.user_data();
            let res = cqe.result();
            let flags = cqe.flags();
            if ud & TAG != 0 {
                match ud & KIND_MASK {
                    UD_SEND => {
                        if res < 0 {
                            core.counters.tx_errors += 1;
                        } else {
                            core.counters.tx_datagrams += 1;
                        }
                        bufs.recycle(ud as u16);
                    }
                    UD_WAKE => wake = true,
                    _ => {}
                }
                continue;
            }
            let flow = table.resolve(ud);
            if !cqueue::more(flags) && flow.is_some() {
                // The multishot ended (ENOBUFS, error): packets wait in the socket queue
                // until it is armed again below, so none are lost.
                rearm.push(ud);
            }
            if res < 0 {
                if res == -libc::ENOBUFS {
                    core.counters.rx_no_buffers += 1;
                } else if res != -libc::ECANCELED {
                    core.counters.rx_errors += 1;
                }
                continue;
            }
            let Some(bid) = cqueue::buffer_select(flags) else {
                core.counters.rx_errors += 1;
                continue;
            };
            bufs.taken();
            let Some((id, _)) = flow else {
                core.counters.rx_stale += 1;
                bufs.recycle(bid);
                continue;
            };
            let buf = bufs.buf_mut(bid);
            // `res` is how much of the buffer the kernel filled (header, name, payload).
            let filled = (res as usize).min(REG_LEN);
            let Ok(msg) = RecvMsgOut::parse(&buf[..filled], recv_hdr) else {
                core.counters.rx_errors += 1;
                bufs.recycle(bid);
                continue;
            };
            if msg.is_payload_truncated() || msg.is_name_data_truncated() {
                core.counters.rx_truncated += 1;
                bufs.recycle(bid);
                continue;
            }
            let Some(src) = addr::parse(msg.name_data()) else {
                core.counters.rx_bad_source += 1;
                bufs.recycle(bid);
                continue;
            };
            let payload = msg.payload_data();
            let off = payload.as_ptr() as usize - buf.as_ptr() as usize;
            let len = payload.len();
            datagrams += 1;
            match core.engine.on_datagram(now, id, src, &mut buf[off..], len) {
                Action::Forward { via, dest, len } => {
                    let Some(fd) = table.fd(via) else {
                        core.counters.tx_no_socket += 1;
                        bufs.recycle(bid);
                        continue;
                    };
                    let slot = &mut slots[bid as usize];
                    slot.iov.iov_base = buf[off..].as_mut_ptr().cast();
                    slot.iov.iov_len = len;
                    slot.hdr.msg_namelen = slot.addr.set(dest);
                    slot.hdr.msg_name = (&mut slot.addr as *mut RawAddr).cast();
                    slot.hdr.msg_iov = &mut slot.iov;
                    slot.hdr.msg_iovlen = 1;
                    let sqe = opcode::SendMsg::new(Fd(fd), &slot.hdr)
                        .build()
                        .user_data(UD_SEND | u64::from(bid));
                    // SAFETY: the msghdr, iovec, address and payload all live in `slots`
                    // and `bufs`, which outlive the ring, and are not touched again until
                    // this send's completion returns the buffer.
                    let mut queued = unsafe { sq.push(&sqe) }.is_ok();
                    if !queued {
                        // SQ full: hand the kernel what we have and retry once.
                        sq.sync();
                        let _ = submitter.submit();
                        sq.sync();
                        // SAFETY: as above.
                        queued = unsafe { sq.push(&sqe) }.is_ok();
                    }
                    if queued {
                        forwarded += 1;
                    } else {
                        core.counters.tx_errors += 1;
                        bufs.recycle(bid);
                    }
                }
                Action::Drop(_) => bufs.recycle(bid),
            }
        }
        drop(cq);
        bufs.publish();
        if datagrams > 0 {
            core.counters.rx_batches += 1;
            core.counters.rx_datagrams += datagrams;
        }
        sq.sync();
        drop(sq);
        // Re-arm only while the kernel holds buffers; otherwise wait for sends to return some.
        if !self.rearm.is_empty() && !self.bufs.exhausted() {
            let mut pending = std::mem::take(&mut self.rearm);
            for key in pending.drain(..) {
                if let Some((_, fd)) = self.table.resolve(key) {
                    core.counters.rx_rearms += 1;
                    if self.arm_recv(key, fd).is_err() {
                        core.counters.rx_errors += 1;
                    }
                }
            }
            self.rearm = pending;
        }
        (forwarded, wake)
    }
}

/// Pushes one SQE, submitting to make room when the queue is full.
fn push_sqe(ring: &mut IoUring, sqe: &Entry) -> io::Result<()> {
    loop {
        // SAFETY: every SQE we build points into memory owned by `Uring` (msghdr
        // template, wake buffer, send slots, buffer ring) that outlives the ring.
        if unsafe { ring.submission().push(sqe) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

impl SocketSet for Uring {
    fn attach(&mut self, id: FlowId, sock: UdpSocket) -> io::Result<()> {
        let fd = sock.as_raw_fd();
        let key = self
            .table
            .insert(id, sock)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        if let Err(e) = self.arm_recv(key, fd) {
            self.table.remove(id);
            return Err(e);
        }
        Ok(())
    }

    fn detach(&mut self, id: FlowId) -> bool {
        let Some((_, key)) = self.table.remove(id) else {
            return false;
        };
        self.cancel_recv(key);
        true
    }

    fn rekey(&mut self, from: FlowId, to: FlowId) -> io::Result<()> {
        match self.table.rekey(from, to)? {
            // The armed receive goes on, now for `to`.
            Rekeyed::Kept => Ok(()),
            Rekeyed::Moved { fd, key, old } => {
                // The old receive's completions now carry a dead key and are dropped
                // as stale; datagrams queued meanwhile wait in the socket.
                self.cancel_recv(old);
                if let Err(e) = self.arm_recv(key, fd) {
                    self.table.remove(to);
                    return Err(e);
                }
                Ok(())
            }
        }
    }
}

impl Uring {
    fn cancel_recv(&mut self, key: u64) {
        let sqe = opcode::AsyncCancel::new(key).build().user_data(UD_CANCEL);
        let _ = self.push(&sqe);
    }
}

/// Proves the whole receive path on this kernel before a worker relies on it: a
/// multishot receive from the buffer ring gets one loopback datagram with its source.
/// Catches kernels that have the opcodes but not multishot or buffer rings, and
/// sandboxes that allow io_uring_setup but not the operations.
pub fn self_test() -> Result<(), String> {
    let wake = crate::ring::EventFd::new().map_err(|e| format!("eventfd: {e}"))?;
    let mut u = Uring::new(8, 1, wake.as_raw_fd())?;
    let fail = |what: &str, e: io::Error| format!("io_uring self-test {what}: {e}");
    let rx = UdpSocket::bind("127.0.0.1:0").map_err(|e| fail("bind", e))?;
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(|e| fail("bind", e))?;
    let to = rx.local_addr().map_err(|e| fail("local_addr", e))?;
    let from = tx.local_addr().map_err(|e| fail("local_addr", e))?;
    let id = FlowId::new(0, 0);
    u.attach(id, rx).map_err(|e| fail("arm", e))?;
    u.ring.submit().map_err(|e| fail("submit", e))?;
    tx.send_to(b"ferrelay-probe", to)
        .map_err(|e| fail("send", e))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    while std::time::Instant::now() < deadline {
        let ts = Timespec::new().nsec(50_000_000);
        let args = SubmitArgs::new().timespec(&ts);
        match u.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => return Err(fail("wait", e)),
        }
        let Uring {
            ring,
            bufs,
            recv_hdr,
            table,
            ..
        } = &mut u;
        for cqe in ring.completion() {
            if table.resolve(cqe.user_data()).map(|(f, _)| f) != Some(id) {
                continue;
            }
            if cqe.result() < 0 {
                let e = io::Error::from_raw_os_error(-cqe.result());
                return Err(fail("multishot recvmsg", e));
            }
            let bid = cqueue::buffer_select(cqe.flags())
                .ok_or_else(|| "io_uring self-test: no buffer selected".to_string())?;
            let buf = bufs.buf_mut(bid);
            let msg = RecvMsgOut::parse(&buf[..REG_LEN], recv_hdr)
                .map_err(|()| "io_uring self-test: bad recvmsg header".to_string())?;
            if msg.payload_data() != b"ferrelay-probe" || addr::parse(msg.name_data()) != Some(from)
            {
                return Err("io_uring self-test: payload or source mismatch".into());
            }
            return Ok(());
        }
    }
    Err("io_uring self-test: no completion within 500 ms".into())
}
