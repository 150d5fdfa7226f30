//! The two SPSC rings between the control plane and a worker, each paired with an
//! eventfd so the consumer can sleep in the kernel instead of polling.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use ferrelay_engine::FlowRule;
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

/// A nonblocking eventfd: `notify` adds one, `drain` reads and resets the counter.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a negative return is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Another handle on the same eventfd (a `dup`: one counter, shared).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(EventFd(self.0.try_clone()?))
    }

    /// Wakes whoever waits on the fd. A saturated counter (EAGAIN) is already a wake-up.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local u64 to an fd we own.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Reads and clears the counter; 0 when nothing was signalled.
    pub fn drain(&self) -> u64 {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local u64.
        let n = unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        if n == 8 { v } else { 0 }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// The worker's end of the ring on which it hands spent rule boxes back.
pub struct SpentTx(HeapProd<Box<FlowRule>>);
/// The control plane's end: boxes to refill for the next commands.
pub struct SpentRx(HeapCons<Box<FlowRule>>);

impl SpentTx {
    /// Hands `b` back; drops it when the ring is full.
    pub fn give(&mut self, b: Box<FlowRule>) {
        let _ = self.0.try_push(b);
    }
}

impl SpentRx {
    /// A box the worker is done with, if any.
    pub fn take(&mut self) -> Option<Box<FlowRule>> {
        self.0.try_pop()
    }
}

impl std::fmt::Debug for SpentTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpentTx")
            .field("queued", &self.0.occupied_len())
            .finish()
    }
}

impl std::fmt::Debug for SpentRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpentRx")
            .field("queued", &self.0.occupied_len())
            .finish()
    }
}

/// A ring of `capacity` spent `Box<FlowRule>`s, from the worker back to the
/// control plane, with no eventfd (the control plane takes them when it next
/// sends a rule). Every `AddFlow` and `UpdateFlow` carries its rule boxed (a
/// rule is a few hundred bytes, too big for every ring slot); recycling the
/// boxes saves an allocation on the control thread and a cross-thread free on
/// the worker per command, which in the NG bench were ~3 % of the relay's CPU.
pub fn spent_rules(capacity: usize) -> (SpentTx, SpentRx) {
    let (prod, cons) = HeapRb::<Box<FlowRule>>::new(capacity).split();
    (SpentTx(prod), SpentRx(cons))
}

/// Producer half: pushes never block; a full ring hands the item back.
pub struct Tx<T> {
    prod: HeapProd<T>,
    wake: Arc<EventFd>,
}

/// Consumer half, with the eventfd the producer signals.
pub struct Rx<T> {
    cons: HeapCons<T>,
    wake: Arc<EventFd>,
}

/// A bounded SPSC ring of `capacity` items with its wake-up eventfd.
pub fn channel<T>(capacity: usize) -> io::Result<(Tx<T>, Rx<T>)> {
    let wake = Arc::new(EventFd::new()?);
    let (prod, cons) = HeapRb::<T>::new(capacity).split();
    Ok((
        Tx {
            prod,
            wake: wake.clone(),
        },
        Rx { cons, wake },
    ))
}

impl<T> Tx<T> {
    /// Queues `item` without waking the consumer (batch several, then `wake`).
    pub fn push(&mut self, item: T) -> Result<(), T> {
        self.prod.try_push(item)
    }

    /// Signals the consumer's eventfd.
    pub fn wake(&self) {
        self.wake.notify();
    }

    pub fn occupied(&self) -> usize {
        self.prod.occupied_len()
    }

    pub fn capacity(&self) -> usize {
        self.prod.capacity().get()
    }
}

impl<T> Rx<T> {
    pub fn pop(&mut self) -> Option<T> {
        self.cons.try_pop()
    }

    pub fn occupied(&self) -> usize {
        self.cons.occupied_len()
    }

    /// The eventfd to wait on (epoll, io_uring read, tokio `AsyncFd`).
    pub fn event_fd(&self) -> &EventFd {
        &self.wake
    }
}

impl<T> std::fmt::Debug for Tx<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("occupied", &self.occupied())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl<T> std::fmt::Debug for Rx<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rx")
            .field("occupied", &self.occupied())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spent_boxes_come_back_until_the_ring_is_full() {
        use ferrelay_engine::Component;
        let (mut tx, mut rx) = spent_rules(2);
        assert!(rx.take().is_none());
        let boxes: Vec<Box<FlowRule>> = (0..3)
            .map(|_| Box::new(FlowRule::new(Component::Rtcp)))
            .collect();
        let addrs: Vec<*const FlowRule> = boxes.iter().map(|b| &**b as *const _).collect();
        for b in boxes {
            tx.give(b);
        }
        // The same allocations, in order; the third was dropped, not queued.
        assert_eq!(rx.take().map(|b| &*b as *const _), Some(addrs[0]));
        assert_eq!(rx.take().map(|b| &*b as *const _), Some(addrs[1]));
        assert!(rx.take().is_none());
    }

    #[test]
    fn full_ring_returns_item_and_keeps_order() {
        let (mut tx, mut rx) = channel::<u32>(3).unwrap();
        for i in 0..3 {
            tx.push(i).unwrap();
        }
        assert_eq!(tx.push(99), Err(99));
        assert_eq!(tx.occupied(), 3);
        assert_eq!(rx.pop(), Some(0));
        tx.push(3).unwrap();
        assert_eq!(
            (rx.pop(), rx.pop(), rx.pop(), rx.pop()),
            (Some(1), Some(2), Some(3), None)
        );
    }

    #[test]
    fn eventfd_counts_and_resets() {
        let (tx, rx) = channel::<u8>(1).unwrap();
        assert_eq!(rx.event_fd().drain(), 0);
        tx.wake();
        tx.wake();
        assert_eq!(rx.event_fd().drain(), 2);
        assert_eq!(rx.event_fd().drain(), 0);
    }

    #[test]
    fn works_across_threads() {
        let (mut tx, mut rx) = channel::<u64>(8).unwrap();
        let t = std::thread::spawn(move || {
            let mut sent = 0u64;
            while sent < 10_000 {
                if tx.push(sent).is_ok() {
                    sent += 1;
                }
            }
        });
        let mut want = 0u64;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while want < 10_000 && std::time::Instant::now() < deadline {
            if let Some(v) = rx.pop() {
                assert_eq!(v, want);
                want += 1;
            }
        }
        t.join().unwrap();
        assert_eq!(want, 10_000);
    }
}
