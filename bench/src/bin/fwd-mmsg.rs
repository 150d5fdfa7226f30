//! Baseline forwarder: one thread, epoll + recvmmsg/sendmmsg. Each port latches the
//! first source it hears; what arrives on port `s` leaves port `s ^ 1` towards that
//! port's latched source. The "kernel floor" for the classic syscall path.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::AsRawFd;
use std::time::Instant;

use clap::Parser;
use ferrelay_bench::fwd::{FwdArgs, announce_ready};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};

/// Datagrams per recvmmsg/sendmmsg call.
const BATCH: usize = 64;
const BUF: usize = 2048;

fn main() -> anyhow::Result<()> {
    let args = FwdArgs::parse();
    let socks = args.bind_all()?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for (i, s) in socks.iter().enumerate() {
        epoll.add(s, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
    }
    let mut latched: Vec<Option<SockaddrStorage>> = vec![None; socks.len()];
    let mut rx_hdrs = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut tx_hdrs = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut bufs: Box<[[u8; BUF]; BATCH]> = Box::new([[0u8; BUF]; BATCH]);
    let mut lens = [0usize; BATCH];
    // Filled per batch up to its length; kept across batches so a batch does not
    // rebuild 64 sockaddr_storage values.
    let mut addrs: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    let mut events = vec![EpollEvent::empty(); 256];
    let deadline = Instant::now() + args.run_for();
    announce_ready("fwd-mmsg", socks.len());

    while Instant::now() < deadline {
        let n = match epoll.wait(&mut events, EpollTimeout::from(100u16)) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for ev in &events[..n] {
            let s = ev.data() as usize;
            loop {
                // Receive a batch; keep only the lengths and the first source (to latch).
                let mut got = 0;
                let mut first_src = None;
                {
                    let mut iov = bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
                    let res = match recvmmsg(
                        socks[s].as_raw_fd(),
                        &mut rx_hdrs,
                        iov.iter_mut(),
                        MsgFlags::MSG_DONTWAIT,
                        None,
                    ) {
                        Ok(r) => r,
                        // EAGAIN: drained. Anything else (an ICMP error surfacing):
                        // nothing to forward from this socket now.
                        Err(_) => break,
                    };
                    for m in res {
                        if first_src.is_none() {
                            first_src = m.address;
                        }
                        lens[got] = m.bytes;
                        got += 1;
                    }
                }
                if got == 0 {
                    break;
                }
                if latched[s].is_none() {
                    latched[s] = first_src;
                }
                if let Some(dest) = latched[s ^ 1] {
                    let out: [[IoSlice<'_>; 1]; BATCH] =
                        std::array::from_fn(|i| [IoSlice::new(&bufs[i][..lens[i]])]);
                    addrs[..got].fill(Some(dest));
                    let cmsgs: [ControlMessage<'_>; 0] = [];
                    // A full send buffer drops the batch, as a relay would.
                    let _ = sendmmsg(
                        socks[s ^ 1].as_raw_fd(),
                        &mut tx_hdrs,
                        out[..got].iter(),
                        &addrs[..got],
                        cmsgs,
                        MsgFlags::empty(),
                    );
                }
                if got < BATCH {
                    break;
                }
            }
        }
    }
    Ok(())
}
