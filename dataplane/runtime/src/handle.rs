//! The control plane's side of one worker: allocates flow ids, pushes commands without
//! ever blocking, and drains the worker's events after its eventfd fires.

use std::net::UdpSocket;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferrelay_engine::{FlowId, FlowRule, LocalEndpoints};

use crate::alloc::FlowIdAllocator;
use crate::command::{Command, Event, FlowSocket};
use crate::config::BackendKind;
use crate::error::DataplaneError;
use crate::io::sock;
use crate::ring::{EventFd, Rx, SpentRx, Tx};

/// What a worker reported when it started.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub backend: BackendKind,
    /// Why `Backend::Auto` fell back to recvmmsg, if it did.
    pub fallback_reason: Option<String>,
    /// The core the worker runs on, if pinning worked.
    pub pinned_core: Option<usize>,
}

/// Control-side handle of one worker. Not `Clone`: it is the only producer on the
/// worker's command ring and the only consumer of its event ring.
#[derive(Debug)]
pub struct WorkerHandle {
    index: usize,
    commands: Tx<Command>,
    events: Rx<Event>,
    /// Rule boxes the worker is done with, refilled for the next commands.
    spent: SpentRx,
    ids: FlowIdAllocator,
    max_flows: u32,
    rejected: u64,
    info: WorkerInfo,
    /// Commands are signalled by `flush_wakes`, not one eventfd write each.
    defer_wake: bool,
    /// A command was queued since the last wake.
    wake_pending: bool,
    pub(crate) stop: Arc<AtomicBool>,
}

impl WorkerHandle {
    pub(crate) fn new(
        index: usize,
        commands: Tx<Command>,
        events: Rx<Event>,
        spent: SpentRx,
        max_flows: u32,
        info: WorkerInfo,
        stop: Arc<AtomicBool>,
    ) -> Self {
        WorkerHandle {
            index,
            commands,
            events,
            spent,
            ids: FlowIdAllocator::new(max_flows),
            max_flows,
            rejected: 0,
            info,
            defer_wake: false,
            wake_pending: false,
            stop,
        }
    }

    fn send(&mut self, cmd: Command) -> Result<(), DataplaneError> {
        match self.commands.push(cmd) {
            Ok(()) => {
                if self.defer_wake {
                    self.wake_pending = true;
                } else {
                    self.commands.wake();
                }
                Ok(())
            }
            Err(_) => {
                self.rejected += 1;
                Err(DataplaneError::RingFull { worker: self.index })
            }
        }
    }

    /// `rule` in a box the worker handed back, or a new one.
    fn boxed(&mut self, rule: FlowRule) -> Box<FlowRule> {
        match self.spent.take() {
            Some(mut b) => {
                *b = rule;
                b
            }
            None => Box::new(rule),
        }
    }

    /// Checks room first so a full ring never costs the caller a flow id.
    fn ensure_room(&mut self) -> Result<(), DataplaneError> {
        if self.commands.occupied() >= self.commands.capacity() {
            self.rejected += 1;
            return Err(DataplaneError::RingFull { worker: self.index });
        }
        Ok(())
    }

    fn check_live(&self, id: FlowId) -> Result<(), DataplaneError> {
        if self.ids.is_live(id) {
            Ok(())
        } else {
            Err(DataplaneError::UnknownFlow(id))
        }
    }

    /// Hands `socket` (bound by the caller) and its rule to the worker. The socket is made
    /// nonblocking with large buffers here; on any error it is closed.
    /// The worker reports a refused rule as `Event::CommandFailed`; call `remove_flow`
    /// to free the id then.
    pub fn add_flow(
        &mut self,
        socket: UdpSocket,
        rule: FlowRule,
    ) -> Result<FlowId, DataplaneError> {
        self.ensure_room()?;
        sock::prepare(&socket).map_err(|e| DataplaneError::io("preparing flow socket", e))?;
        let id = self.ids.alloc().ok_or(DataplaneError::TooManyFlows {
            worker: self.index,
            max: self.max_flows,
        })?;
        let rule = self.boxed(rule);
        let socket = FlowSocket::New(socket);
        if let Err(e) = self.send(Command::AddFlow { id, socket, rule }) {
            self.ids.release(id);
            return Err(e);
        }
        Ok(id)
    }

    /// Starts a new flow on the socket of `parked` (see `park_flow`), under a new
    /// id in the same slot (the next generation): the port is reused without a
    /// syscall on either side, and the worker's I/O keeps the socket's receive
    /// armed as it is. `parked` is spent once this returns `Ok`; on an error it is
    /// still parked. Datagrams the worker handles before it applies this are
    /// still the parked flow's, and dropped: nobody was told the port yet, so
    /// they are stale.
    pub fn reuse_flow(&mut self, parked: FlowId, rule: FlowRule) -> Result<FlowId, DataplaneError> {
        self.check_live(parked)?;
        self.ensure_room()?;
        let id = FlowIdAllocator::renewed(parked);
        let rule = self.boxed(rule);
        self.send(Command::AddFlow {
            id,
            socket: FlowSocket::Parked(parked),
            rule,
        })?;
        // Live, checked above; the worker applies commands in order, so `parked`
        // is gone from its slot before `id` arrives.
        self.ids.renew(parked);
        Ok(id)
    }

    /// Ends a flow (its final stats arrive as `Event::FlowRemoved`) but keeps its
    /// socket bound and receiving in the worker, dropping what arrives, so a later
    /// flow on the same port takes it over with `reuse_flow`; `remove_flow` closes
    /// it. The id stays allocated, as the parked socket's name, until then.
    pub fn park_flow(&mut self, id: FlowId) -> Result<(), DataplaneError> {
        self.check_live(id)?;
        self.send(Command::ParkFlow { id })
    }

    /// Replaces the rule of a live flow (stats and latched remote are kept).
    pub fn update_flow(&mut self, id: FlowId, rule: FlowRule) -> Result<(), DataplaneError> {
        self.check_live(id)?;
        let rule = self.boxed(rule);
        self.send(Command::UpdateFlow { id, rule })
    }

    /// Removes a flow, or closes a parked flow's socket; a live flow's final stats
    /// arrive as `Event::FlowRemoved`. The slot is free
    /// for a new id (with a new generation) as soon as this returns `Ok`.
    pub fn remove_flow(&mut self, id: FlowId) -> Result<(), DataplaneError> {
        self.check_live(id)?;
        self.send(Command::RemoveFlow { id })?;
        self.ids.release(id);
        Ok(())
    }

    /// Gives the worker's loop guard the relay's endpoints anew (see
    /// [`Command::SetLocal`]).
    pub fn set_local(&mut self, local: LocalEndpoints) -> Result<(), DataplaneError> {
        self.send(Command::SetLocal {
            local: Box::new(local),
        })
    }

    /// Blocks or unblocks media on a flow (packets counted and dropped).
    pub fn set_blocked(&mut self, id: FlowId, blocked: bool) -> Result<(), DataplaneError> {
        self.check_live(id)?;
        self.send(Command::SetBlocked { id, blocked })
    }

    /// Asks for `Event::FlowStats` (with `Some(id)`) or `Event::WorkerStats` (with `None`),
    /// tagged with `token` so the answer can be matched to the request.
    pub fn query(&mut self, token: u64, id: Option<FlowId>) -> Result<(), DataplaneError> {
        if let Some(id) = id {
            self.check_live(id)?;
        }
        self.send(Command::Query { token, id })
    }

    /// With `true`, queued commands wait for `flush_wakes` instead of waking the
    /// worker one by one: an offer queues about eight, and each wake is a syscall
    /// and, on a busy host, a context switch. The caller must flush after each
    /// batch.
    pub fn set_deferred_wake(&mut self, on: bool) {
        self.defer_wake = on;
        if !on {
            self.flush_wakes();
        }
    }

    /// Wakes the worker once if commands were queued since the last wake.
    pub fn flush_wakes(&mut self) {
        if self.wake_pending {
            self.wake_pending = false;
            self.commands.wake();
        }
    }

    /// The next event from the worker, if any. Call `ack_events` before draining so a
    /// wake-up that races with the drain is not lost.
    pub fn try_recv_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// Resets the event eventfd (it stays readable until acknowledged).
    pub fn ack_events(&self) {
        self.events.event_fd().drain();
    }

    /// The eventfd that becomes readable when the worker queued events, for a caller
    /// with its own epoll loop (`event_waiter` blocks on it without one).
    pub fn event_fd(&self) -> RawFd {
        self.events.event_fd().as_raw_fd()
    }

    /// A waiter that blocks a control-plane thread until this worker queues events,
    /// so events are handled as they come rather than by a polling timer. (tokio
    /// 1.54 made `AsyncFd` registration `unsafe`, so the control plane, which
    /// forbids `unsafe`, waits on a thread of its own with this instead.)
    pub fn event_waiter(&self) -> std::io::Result<EventWaiter> {
        Ok(EventWaiter {
            events: self.events.event_fd().try_clone()?,
            cancel: Arc::new(EventFd::new()?),
        })
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn info(&self) -> &WorkerInfo {
        &self.info
    }

    pub fn backend(&self) -> BackendKind {
        self.info.backend
    }

    /// Commands refused because the ring was full, since start.
    pub fn rejected_commands(&self) -> u64 {
        self.rejected
    }

    /// Flows this handle has added and not removed.
    pub fn live_flows(&self) -> usize {
        self.ids.live_count()
    }

    /// Asks the worker to stop (best effort: the stop flag works even on a full ring).
    pub(crate) fn request_stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.commands.push(Command::Shutdown);
        self.commands.wake();
    }
}

impl AsFd for WorkerHandle {
    /// The event eventfd, for callers that poll it themselves (registering it with
    /// tokio's `AsyncFd` is `unsafe` since tokio 1.54; see `event_waiter`).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.events.event_fd().as_fd()
    }
}

impl AsRawFd for WorkerHandle {
    fn as_raw_fd(&self) -> RawFd {
        self.event_fd()
    }
}

/// What ended an `EventWaiter::wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The worker queued events: `ack_events`, then drain them.
    Events,
    /// `WaitCanceller::cancel` was called; every later wait returns this at once.
    Cancelled,
    TimedOut,
}

/// Blocks until a worker's event eventfd is readable (a duplicate of it, sharing one
/// open file with the handle's, so `WorkerHandle::ack_events` clears both) or until
/// cancelled. Tokio-free; one per worker, used from one thread.
#[derive(Debug)]
pub struct EventWaiter {
    events: EventFd,
    cancel: Arc<EventFd>,
}

/// Wakes an `EventWaiter` for good, from any thread (shutdown).
#[derive(Debug, Clone)]
pub struct WaitCanceller(Arc<EventFd>);

impl WaitCanceller {
    pub fn cancel(&self) {
        self.0.notify();
    }
}

/// The worker's event eventfd, for a caller that waits on it in its own poll or
/// epoll set next to other descriptors (then `ack` and drain, as after `wait`).
impl AsFd for EventWaiter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }
}

impl EventWaiter {
    pub fn canceller(&self) -> WaitCanceller {
        WaitCanceller(self.cancel.clone())
    }

    /// Resets the worker's event eventfd, as `WorkerHandle::ack_events` does (same
    /// counter), for a waiter that hands the draining to another thread: ack here,
    /// then have that thread drain, so an event queued after the ack wakes the
    /// next `wait`.
    pub fn ack(&self) {
        self.events.drain();
    }

    /// Sleeps in poll(2) until events are queued, the waiter is cancelled, or
    /// `timeout` passes (`None`: no limit). Cancellation wins over events.
    pub fn wait(&self, timeout: Option<std::time::Duration>) -> std::io::Result<Wake> {
        let ms = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
        let mut fds = [
            libc::pollfd {
                fd: self.cancel.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.events.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: `fds` is a live array of two pollfds and the length passed is 2;
            // both descriptors are owned by `self` for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            return Ok(if fds[0].revents != 0 {
                Wake::Cancelled
            } else if fds[1].revents != 0 {
                Wake::Events
            } else {
                Wake::TimedOut
            });
        }
    }
}
