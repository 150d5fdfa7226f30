//! One provided-buffer ring per worker (`IORING_REGISTER_PBUF_RING`): the kernel picks a
//! buffer for each datagram a multishot receive delivers, and we hand buffers back by
//! bumping the ring's tail once per completion batch.
//!
//! ```text
//! ring (page aligned):  [addr u64 | len u32 | bid u16 | resv/tail u16] x entries
//!                         ^ entry 0's resv field is the shared tail
//! buffers (page aligned): bid 0 [BUF_SIZE] | bid 1 [BUF_SIZE] | ...
//!   each buffer: registered length = BUF_SIZE - TAILROOM, the rest is ours so the
//!   engine can grow a packet in place (SRTP tag) without the kernel ever writing there
//! ```

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use ferrelay_engine::TAILROOM;
use io_uring::types::BufRingEntry;

use super::BUF_SIZE;

/// The part of each buffer the kernel may fill.
pub const REG_LEN: usize = BUF_SIZE - TAILROOM;

/// Anonymous, page-aligned memory that is unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: anonymous private mapping, no fd or address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we created and nobody uses after drop
        // (the owning `Uring` drops the io_uring instance before its buffer ring).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The provided-buffer ring and its buffers.
#[derive(Debug)]
pub struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    entries: u16,
    /// Our copy of the tail; published to the kernel by `publish`.
    tail: u16,
    /// Buffers handed to the kernel and not yet returned in a completion.
    in_kernel: u32,
    pub bgid: u16,
}

impl BufRing {
    /// Allocates `entries` (a power of two) buffers; call `register` and `fill` next.
    pub fn new(entries: u16, bgid: u16) -> io::Result<Self> {
        if !entries.is_power_of_two() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let n = entries as usize;
        let ring = Mapping::new(n * std::mem::size_of::<BufRingEntry>())?;
        let bufs = Mapping::new(n * BUF_SIZE)?;
        Ok(BufRing {
            ring,
            bufs,
            entries,
            tail: 0,
            in_kernel: 0,
            bgid,
        })
    }

    /// Registers the ring with `submitter` under `bgid`.
    pub fn register(&self, submitter: &io_uring::Submitter<'_>) -> io::Result<()> {
        // SAFETY: the ring memory lives as long as `self`, and its owner (`Uring`) drops
        // the io_uring instance (which unregisters everything) before `self`.
        unsafe {
            submitter.register_buf_ring_with_flags(
                self.ring.ptr.as_ptr() as u64,
                self.entries,
                self.bgid,
                0,
            )
        }
    }

    /// Hands every buffer to the kernel.
    pub fn fill(&mut self) {
        for bid in 0..self.entries {
            self.recycle(bid);
        }
        self.publish();
    }

    /// Queues buffer `bid` for the kernel; visible after the next `publish`.
    #[inline]
    pub fn recycle(&mut self, bid: u16) {
        let mask = self.entries - 1;
        let slot = (self.tail & mask) as usize;
        let base = self.ring.ptr.as_ptr().cast::<BufRingEntry>();
        // SAFETY: `slot < entries`, so the entry lies inside the ring mapping; the kernel
        // only reads entries between its head and the published tail, and this one is
        // past the published tail. The setters leave entry 0's tail field alone.
        let entry = unsafe { &mut *base.add(slot) };
        entry.set_addr(self.buf_ptr(bid) as u64);
        entry.set_len(REG_LEN as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.in_kernel += 1;
    }

    /// Makes recycled buffers visible to the kernel (one release store).
    #[inline]
    pub fn publish(&self) {
        let base = self.ring.ptr.as_ptr().cast::<BufRingEntry>();
        // SAFETY: entry 0 is inside the mapping and initialised (zeroed by mmap);
        // `BufRingEntry::tail` only computes the address of its tail field.
        let tail = unsafe { BufRingEntry::tail(base) };
        // SAFETY: the tail is a naturally aligned u16 the kernel reads concurrently, so
        // it is only ever written through an atomic.
        let tail = unsafe { &*tail.cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// Notes that the kernel filled one buffer (a completion named it).
    #[inline]
    pub fn taken(&mut self) {
        self.in_kernel = self.in_kernel.saturating_sub(1);
    }

    /// True when the kernel holds no buffer: re-arming a receive now would fail at once.
    pub fn exhausted(&self) -> bool {
        self.in_kernel == 0
    }

    #[inline]
    pub fn buf_ptr(&self, bid: u16) -> *mut u8 {
        let bid = (bid & (self.entries - 1)) as usize;
        // SAFETY: `bid < entries`, so the offset stays inside the buffer mapping.
        unsafe { self.bufs.ptr.as_ptr().add(bid * BUF_SIZE) }
    }

    /// The whole buffer `bid` (registered part plus tail room).
    ///
    /// Only called for a buffer a completion just handed back to us, so the kernel is
    /// not writing it, and no other reference to it is alive.
    #[inline]
    pub fn buf_mut(&mut self, bid: u16) -> &mut [u8] {
        // SAFETY: in bounds (see `buf_ptr`); exclusive because the kernel returned this
        // bid and it is not in flight for a send, and `&mut self` keeps others out.
        unsafe { std::slice::from_raw_parts_mut(self.buf_ptr(bid), BUF_SIZE) }
    }
}
