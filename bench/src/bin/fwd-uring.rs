//! Baseline forwarder: one thread, io_uring. Each port has one multishot RecvMsg
//! drawing from a provided-buffer ring; a packet is sent with SendMsg straight out of
//! the buffer it arrived in (no copy), and the buffer goes back to the ring when the
//! send completes. All SQEs queued while handling one batch of completions go to the
//! kernel in the next single `io_uring_enter`, which also waits for the next batch.
//!
//! Same job as `fwd-mmsg`: port `s` latches its first source; packets arriving on `s`
//! leave `s ^ 1` towards that port's latched source.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Instant;

use clap::Parser;
use ferrelay_bench::fwd::{FwdArgs, RAW_ADDR_LEN, RawAddr, announce_ready};
use io_uring::types::{BufRingEntry, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode, squeue};

/// Provided buffers (power of two, at most 32768); also the number of sends in flight.
const BUFS: u16 = 4096;
const BUF_LEN: usize = 2048;
const BGID: u16 = 7;
const KIND_RECV: u64 = 1 << 40;
const KIND_SEND: u64 = 2 << 40;
const KIND_MASK: u64 = 0xff << 40;

/// The provided-buffer ring shared with the kernel: we write entries and the tail,
/// the kernel consumes from the head.
struct BufRing {
    entries: *mut BufRingEntry,
    layout: Layout,
    /// Our tail, published with [`BufRing::publish`] once per completion batch.
    tail: u16,
    /// The packet memory the entries point into: BUFS x BUF_LEN, never moved.
    mem: Box<[u8]>,
}

impl BufRing {
    fn new() -> io::Result<BufRing> {
        let layout = Layout::from_size_align(usize::from(BUFS) * size_of::<BufRingEntry>(), 4096)
            .map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size.
        let entries = unsafe { alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut r = BufRing {
            entries,
            layout,
            tail: 0,
            mem: vec![0u8; usize::from(BUFS) * BUF_LEN].into_boxed_slice(),
        };
        for bid in 0..BUFS {
            r.push(bid);
        }
        r.publish();
        Ok(r)
    }

    fn buf(&self, bid: u16) -> &[u8] {
        let at = usize::from(bid) * BUF_LEN;
        &self.mem[at..at + BUF_LEN]
    }

    /// Hands buffer `bid` back to the kernel (visible after `publish`).
    fn push(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (BUFS - 1));
        let addr = self.buf(bid).as_ptr() as u64;
        // SAFETY: `slot < BUFS`, inside the allocation; the kernel only reads entries
        // between its head and our published tail, and this one is past the tail.
        let e = unsafe { &mut *self.entries.add(slot) };
        e.set_addr(addr);
        e.set_len(BUF_LEN as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail lives inside entry 0, in our allocation, 2-byte aligned;
        // the kernel reads it concurrently, hence the atomic release store.
        let tail = unsafe { &*BufRingEntry::tail(self.entries).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring that used it is
        // dropped first (declared after it in `main`'s scope).
        unsafe { dealloc(self.entries.cast(), self.layout) };
    }
}

/// One in-flight SendMsg; slot `bid` belongs to the buffer it sends from, so the
/// slots need no allocator of their own.
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: [u8; RAW_ADDR_LEN],
}

/// A msghdr with no name, data or control (filled in per use).
fn empty_msghdr() -> libc::msghdr {
    libc::msghdr {
        msg_name: std::ptr::null_mut(),
        msg_namelen: 0,
        msg_iov: std::ptr::null_mut(),
        msg_iovlen: 0,
        msg_control: std::ptr::null_mut(),
        msg_controllen: 0,
        msg_flags: 0,
    }
}

fn push_sqe(
    sq: &mut io_uring::SubmissionQueue<'_>,
    submitter: &io_uring::Submitter<'_>,
    e: &squeue::Entry,
) -> io::Result<()> {
    loop {
        // SAFETY: every pointer in the entries we build (msghdrs, iovecs, names,
        // buffers) lives in `main` until the ring is dropped.
        if unsafe { sq.push(e) }.is_ok() {
            return Ok(());
        }
        sq.sync();
        submitter.submit()?;
        sq.sync();
    }
}

fn main() -> anyhow::Result<()> {
    let args = FwdArgs::parse();
    let socks = args.bind_all()?;
    let fds: Vec<Fd> = socks.iter().map(|s| Fd(s.as_raw_fd())).collect();

    // The template every multishot recv uses: room for an IPv6 source, no control data.
    let mut recv_hdr: Box<libc::msghdr> = Box::new(empty_msghdr());
    recv_hdr.msg_namelen = RAW_ADDR_LEN as u32;
    let mut slots: Box<[SendSlot]> = (0..BUFS)
        .map(|_| SendSlot {
            hdr: empty_msghdr(),
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            addr: [0; RAW_ADDR_LEN],
        })
        .collect();
    // Declared before the ring so they outlive every SQE that points at them.
    let mut latched: Vec<Option<RawAddr>> = vec![None; socks.len()];

    let mut bufs = BufRing::new()?;
    let mut ring: IoUring = IoUring::builder()
        .setup_cqsize(4 * u32::from(BUFS))
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(u32::from(BUFS))?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    anyhow::ensure!(
        probe.is_supported(opcode::RecvMsg::CODE) && probe.is_supported(opcode::SendMsg::CODE),
        "kernel lacks IORING_OP_RECVMSG/SENDMSG"
    );
    // SAFETY: the ring memory stays allocated (and unmoved) until `bufs` drops, after `ring`.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(bufs.entries as u64, BUFS, BGID, 0)?;
    }

    let (submitter, mut sq, mut cq) = ring.split();
    let arm = |s: usize| {
        opcode::RecvMsgMulti::new(fds[s], &*recv_hdr, BGID)
            .build()
            .user_data(KIND_RECV | s as u64)
    };
    for s in 0..socks.len() {
        push_sqe(&mut sq, &submitter, &arm(s))?;
    }
    sq.sync();
    let (mut forwarded, mut unlatched, mut errors) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + args.run_for();
    let ts = Timespec::new().nsec(100_000_000);
    announce_ready("fwd-uring", socks.len());

    while Instant::now() < deadline {
        let sargs = SubmitArgs::new().timespec(&ts);
        match submitter.submit_with_args(1, &sargs) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e.into()),
        }
        cq.sync();
        for cqe in &mut cq {
            let ud = cqe.user_data();
            let res = cqe.result();
            match ud & KIND_MASK {
                KIND_SEND => {
                    if res < 0 {
                        errors += 1;
                    } else {
                        forwarded += 1;
                    }
                    bufs.push((ud & 0xffff) as u16);
                }
                KIND_RECV => {
                    let s = (ud & 0xffff_ffff) as usize;
                    if !cqueue::more(cqe.flags()) {
                        // Multishot ended (ENOBUFS, or an error): re-arm.
                        push_sqe(&mut sq, &submitter, &arm(s))?;
                    }
                    let Some(bid) = cqueue::buffer_select(cqe.flags()) else {
                        if res != -libc::ENOBUFS {
                            errors += 1;
                        }
                        continue;
                    };
                    let buf = &bufs.buf(bid)[..res.max(0) as usize];
                    let Ok(msg) = RecvMsgOut::parse(buf, &recv_hdr) else {
                        errors += 1;
                        bufs.push(bid);
                        continue;
                    };
                    if latched[s].is_none() {
                        latched[s] = RawAddr::from_kernel(msg.name_data());
                    }
                    let Some(dest) = latched[s ^ 1] else {
                        unlatched += 1;
                        bufs.push(bid);
                        continue;
                    };
                    let payload = msg.payload_data();
                    let slot = &mut slots[usize::from(bid)];
                    slot.addr = dest.bytes;
                    slot.iov.iov_base = payload.as_ptr().cast_mut().cast();
                    slot.iov.iov_len = payload.len();
                    slot.hdr.msg_name = slot.addr.as_mut_ptr().cast();
                    slot.hdr.msg_namelen = u32::from(dest.len);
                    slot.hdr.msg_iov = &mut slot.iov;
                    slot.hdr.msg_iovlen = 1;
                    let send = opcode::SendMsg::new(fds[s ^ 1], &slot.hdr)
                        .build()
                        .user_data(KIND_SEND | u64::from(bid));
                    push_sqe(&mut sq, &submitter, &send)?;
                }
                _ => errors += 1,
            }
        }
        bufs.publish();
        sq.sync();
    }
    eprintln!(
        "fwd-uring: forwarded {forwarded}, dropped before latch {unlatched}, errors {errors}"
    );
    Ok(())
}
