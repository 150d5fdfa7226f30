//! Worker threads, command/event rings and the I/O shell around the engine.
//!
//! Each worker is a pinned thread that owns an [`ferrelay_engine::Engine`], its flows'
//! sockets and its receive buffers, and runs to completion over batches of datagrams
//! from io_uring (multishot `RecvMsg`, one provided-buffer ring, batched `SendMsg`) or,
//! where io_uring is unavailable, epoll + `recvmmsg`/`sendmmsg`. The control plane talks
//! to a worker through its [`WorkerHandle`]: commands on one bounded SPSC ring (a full
//! ring is an error, never a stall), events back on a second one, each with an eventfd.
//!
//! Relay residence (recorded per forwarded packet into the engine's histogram) runs from
//! the clock read after a completion batch is collected to the moment its sends are
//! handed to the kernel: with io_uring, the `io_uring_enter` that also waits for the
//! next batch (so it excludes the kernel's send work); with recvmmsg, after `sendmmsg`
//! returns (so it includes it). Both read the clock per batch, never per packet.
//!
//! ```no_run
//! use std::net::UdpSocket;
//! use ferrelay_dataplane::{Dataplane, DataplaneConfig, Event};
//! use ferrelay_engine::{Component, FlowRule, Output};
//!
//! let mut dp = Dataplane::start(DataplaneConfig { workers: 1, ..Default::default() })?;
//! let w = dp.worker(0).expect("worker 0");
//! // One call: caller A talks to relay port a, caller B to relay port b.
//! let a = w.add_flow(UdpSocket::bind("127.0.0.1:30000")?, FlowRule::new(Component::Rtp))?;
//! let b = w.add_flow(UdpSocket::bind("127.0.0.1:30002")?, FlowRule::new(Component::Rtp))?;
//! // What arrives on a leaves through b (to b's latched remote), and back.
//! let mut to_b = FlowRule::new(Component::Rtp);
//! to_b.rtp_out = Some(Output { via: b });
//! w.update_flow(a, to_b)?;
//! let mut to_a = FlowRule::new(Component::Rtp);
//! to_a.rtp_out = Some(Output { via: a });
//! w.update_flow(b, to_a)?;
//! // ... media flows; events (latching, idle, stats) arrive on w.event_fd():
//! w.ack_events();
//! while let Some(ev) = w.try_recv_event() {
//!     if let Event::Latched { id, addr } = ev {
//!         println!("{id:?} latched to {addr}");
//!     }
//! }
//! w.remove_flow(a)?;
//! w.remove_flow(b)?;
//! dp.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod alloc;
mod command;
mod config;
mod dataplane;
mod error;
mod handle;
mod io;
mod ring;
mod worker;

pub use alloc::{FlowIdAllocator, MAX_INDEX};
pub use command::{Command, Event, FlowSocket, IoCounters, WorkerReport};
pub use config::{Backend, BackendKind, DataplaneConfig};
pub use dataplane::Dataplane;
pub use error::{CommandError, DataplaneError};
pub use handle::{EventWaiter, WaitCanceller, Wake, WorkerHandle, WorkerInfo};

#[cfg(test)]
mod tests {
    /// The control plane moves these into its own tasks/threads.
    #[test]
    fn handles_are_send() {
        fn send<T: Send>() {}
        send::<crate::Dataplane>();
        send::<crate::WorkerHandle>();
        send::<crate::Event>();
        send::<crate::Command>();
    }

    /// The waiter wakes when the worker queues an event, sleeps again after
    /// `ack_events`, and returns `Cancelled` for good once cancelled from another
    /// thread, so the control plane can block on it instead of polling.
    #[test]
    fn event_waiter_wakes_on_events_and_on_cancel() {
        use crate::Wake;
        use std::time::{Duration, Instant};
        let mut dp = crate::Dataplane::start(crate::DataplaneConfig {
            workers: 1,
            backend: crate::Backend::Mmsg,
            max_flows_per_worker: 16,
            stats_interval: Duration::from_secs(3600),
            ..Default::default()
        })
        .expect("data plane starts");
        let h = dp.worker(0).expect("worker 0");
        let waiter = h.event_waiter().expect("waiter");
        h.ack_events();
        while h.try_recv_event().is_some() {}
        let quiet = Duration::from_millis(20);
        assert_eq!(waiter.wait(Some(quiet)).unwrap(), Wake::TimedOut);
        h.query(7, None).expect("query queued");
        assert_eq!(
            waiter.wait(Some(Duration::from_secs(2))).unwrap(),
            Wake::Events
        );
        h.ack_events();
        assert_eq!(waiter.wait(Some(quiet)).unwrap(), Wake::TimedOut);
        let ev = h.try_recv_event().expect("the queued report");
        assert!(matches!(ev, crate::Event::WorkerStats(r) if r.token == Some(7)));

        let cancel = waiter.canceller();
        let t = Instant::now();
        let blocked = std::thread::spawn(move || waiter.wait(None).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        cancel.cancel();
        assert_eq!(blocked.join().unwrap(), Wake::Cancelled);
        assert!(t.elapsed() < Duration::from_secs(2));
        dp.shutdown();
    }

    /// With deferred wakes, queued commands reach the worker only at
    /// `flush_wakes`; one flush applies them all.
    #[test]
    fn deferred_wakes_hold_commands_until_flushed() {
        use crate::Wake;
        use std::time::Duration;
        let mut dp = crate::Dataplane::start(crate::DataplaneConfig {
            workers: 1,
            backend: crate::Backend::Mmsg,
            max_flows_per_worker: 16,
            stats_interval: Duration::from_secs(3600),
            ..Default::default()
        })
        .expect("data plane starts");
        let h = dp.worker(0).expect("worker 0");
        let waiter = h.event_waiter().expect("waiter");
        h.ack_events();
        while h.try_recv_event().is_some() {}
        h.set_deferred_wake(true);
        h.query(1, None).unwrap();
        h.query(2, None).unwrap();
        assert_eq!(
            waiter.wait(Some(Duration::from_millis(100))).unwrap(),
            Wake::TimedOut,
            "not applied before the flush"
        );
        h.flush_wakes();
        let mut tokens = Vec::new();
        while tokens.len() < 2 {
            assert_eq!(
                waiter.wait(Some(Duration::from_secs(2))).unwrap(),
                Wake::Events
            );
            h.ack_events();
            while let Some(ev) = h.try_recv_event() {
                if let crate::Event::WorkerStats(r) = ev {
                    tokens.push(r.token);
                }
            }
        }
        assert_eq!(tokens, [Some(1), Some(2)]);
        dp.shutdown();
    }
}
