//! The backend-independent half of a worker: applying commands, publishing events and
//! stats, the idle scan and the timers. Each backend's loop calls into this between
//! completion batches, never per packet.

use std::io;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrelay_engine::{Component, Engine, EngineConfig, EngineEvent, FlowId, FlowRule};

use crate::command::{Command, Event, FlowSocket, IoCounters, WorkerReport};
use crate::config::{BackendKind, DataplaneConfig};
use crate::error::CommandError;
use crate::ring::{Rx, SpentTx, Tx};

/// What a backend does when flows come and go.
pub(crate) trait SocketSet {
    /// Starts receiving on `sock` for `id`; on error the socket is dropped.
    fn attach(&mut self, id: FlowId, sock: UdpSocket) -> io::Result<()>;
    /// Stops receiving for `id` and closes its socket; false if `id` had none.
    fn detach(&mut self, id: FlowId) -> bool;
    /// Moves `from`'s socket to `to` and receives for `to` from now on (a parked
    /// socket taken over by a new flow). Fails, changing nothing, if `from` has none.
    fn rekey(&mut self, from: FlowId, to: FlowId) -> io::Result<()>;
}

/// Engine, rings, counters and timers of one worker.
pub(crate) struct Core {
    pub worker: usize,
    pub engine: Engine,
    pub counters: IoCounters,
    pub busy_poll: bool,
    commands: Rx<Command>,
    events: Tx<Event>,
    /// Where the boxes of applied rules go back for reuse.
    spent: SpentTx,
    events_pending: bool,
    stop: Arc<AtomicBool>,
    backend: BackendKind,
    epoch: Instant,
    stats_every_ns: u64,
    next_stats_ns: u64,
    scan_every_ns: u64,
    next_scan_ns: u64,
    idle_after_ns: u64,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("worker", &self.worker)
            .field("backend", &self.backend)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Core {
    pub fn new(
        worker: usize,
        cfg: &DataplaneConfig,
        commands: Rx<Command>,
        events: Tx<Event>,
        spent: SpentTx,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let mut engine = Engine::new(EngineConfig {
            max_flows: cfg.max_flows_per_worker,
            event_capacity: cfg.event_ring,
        });
        engine.set_local(cfg.local.clone());
        let idle_after_ns = ns(cfg.idle_after);
        // Scan a few times per idle period so the event is at most 25% late, within bounds.
        let scan_every_ns = (idle_after_ns / 4).clamp(10_000_000, 1_000_000_000);
        let stats_every_ns = ns(cfg.stats_interval);
        Core {
            worker,
            engine,
            counters: IoCounters::default(),
            busy_poll: cfg.busy_poll,
            commands,
            events,
            spent,
            events_pending: false,
            stop,
            backend: BackendKind::Mmsg,
            epoch: Instant::now(),
            stats_every_ns,
            next_stats_ns: stats_every_ns,
            scan_every_ns,
            next_scan_ns: scan_every_ns,
            idle_after_ns,
        }
    }

    pub fn set_backend(&mut self, b: BackendKind) {
        self.backend = b;
    }

    /// Monotonic nanoseconds since the worker started (one vDSO call, no syscall).
    #[inline]
    pub fn now_ns(&self) -> u64 {
        ns(self.epoch.elapsed())
    }

    /// The raw fd the backend waits on for command wake-ups.
    pub fn command_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.commands.event_fd().as_raw_fd()
    }

    /// Clears the command eventfd (the mmsg backend reads it; io_uring reads it itself).
    pub fn drain_command_fd(&self) {
        self.commands.event_fd().drain();
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Time until the next timer (stats or idle scan) is due; zero when overdue.
    pub fn until_next_timer(&self, now_ns: u64) -> Duration {
        let due = self.next_stats_ns.min(self.next_scan_ns);
        Duration::from_nanos(due.saturating_sub(now_ns))
    }

    /// Runs the timers that are due at `now_ns`.
    pub fn on_timers(&mut self, now_ns: u64) {
        if now_ns >= self.next_scan_ns {
            self.engine.scan_idle(now_ns, self.idle_after_ns);
            self.next_scan_ns = now_ns + self.scan_every_ns;
        }
        if now_ns >= self.next_stats_ns {
            self.publish_stats(None);
            self.next_stats_ns = now_ns + self.stats_every_ns;
        }
    }

    fn emit(&mut self, ev: Event) {
        if self.events.push(ev).is_ok() {
            self.events_pending = true;
        } else {
            self.counters.events_dropped += 1;
        }
    }

    /// Moves the engine's queued events onto the event ring and wakes the control plane
    /// once if anything was queued (one eventfd write per batch at most).
    pub fn flush_events(&mut self) {
        while let Some(ev) = self.engine.pop_event() {
            let ev = match ev {
                EngineEvent::Latched { id, addr } => Event::Latched { id, addr },
                EngineEvent::MediaIdle { id, idle_ns } => Event::MediaIdle { id, idle_ns },
                other => Event::Engine(other),
            };
            self.emit(ev);
        }
        if self.events_pending {
            self.events.wake();
            self.events_pending = false;
        }
    }

    fn publish_stats(&mut self, token: Option<u64>) {
        let report = WorkerReport {
            worker: self.worker,
            token,
            backend: self.backend,
            engine: self.engine.worker_stats(),
            io: self.counters,
            command_ring_occupied: self.commands.occupied(),
            event_ring_occupied: self.events.occupied(),
            event_ring_capacity: self.events.capacity(),
        };
        self.emit(Event::WorkerStats(Box::new(report)));
    }

    /// Applies the commands already queued, if any, before a batch of datagrams is
    /// handled. A proxy sends media as soon as it has a reply, and the control
    /// plane queues a request's commands before it replies (it only wakes the
    /// worker after): so a datagram sent after the reply finds its rule in place,
    /// even when it and the wake-up land in the same batch. One ring load per
    /// batch. Returns false once `Shutdown` was seen.
    pub fn apply_queued(&mut self, io: &mut impl SocketSet) -> bool {
        self.commands.occupied() == 0 || self.apply_commands(io)
    }

    /// Applies every queued command. Returns false once `Shutdown` was seen.
    pub fn apply_commands(&mut self, io: &mut impl SocketSet) -> bool {
        self.counters.command_wakeups += 1;
        while let Some(cmd) = self.commands.pop() {
            match cmd {
                Command::AddFlow { id, socket, rule } => {
                    let rule = self.unbox(rule);
                    if let Err(e) = self.engine.insert(id, rule) {
                        // The control plane frees `id` on this failure and has
                        // already forgotten a parked one: its socket closes here.
                        if let FlowSocket::Parked(old) = socket {
                            io.detach(old);
                        }
                        self.fail(Some(id), CommandError::Engine(e));
                        continue;
                    }
                    let attached = match socket {
                        FlowSocket::New(s) => io.attach(id, s),
                        FlowSocket::Parked(old) => io.rekey(old, id),
                    };
                    if let Err(e) = attached {
                        let _ = self.engine.remove(id);
                        self.fail(Some(id), CommandError::Io(e.raw_os_error().unwrap_or(0)));
                    }
                }
                Command::UpdateFlow { id, rule } => {
                    let rule = self.unbox(rule);
                    if let Err(e) = self.engine.update(id, rule) {
                        self.fail(Some(id), CommandError::Engine(e));
                    }
                }
                Command::RemoveFlow { id } => {
                    let had_socket = io.detach(id);
                    match self.engine.remove(id) {
                        Ok(stats) => self.emit(Event::FlowRemoved { id, stats }),
                        // A parked flow: its counters went out when it was parked.
                        Err(_) if had_socket => {}
                        Err(e) => self.fail(Some(id), CommandError::Engine(e)),
                    }
                }
                Command::ParkFlow { id } => match self.engine.remove(id) {
                    Ok(stats) => self.emit(Event::FlowRemoved { id, stats }),
                    Err(e) => self.fail(Some(id), CommandError::Engine(e)),
                },
                Command::SetBlocked { id, blocked } => {
                    if let Err(e) = self.engine.set_blocked(id, blocked) {
                        self.fail(Some(id), CommandError::Engine(e));
                    }
                }
                Command::Query {
                    token,
                    id: Some(id),
                } => match self.engine.flow_stats(id) {
                    Some(stats) => self.emit(Event::FlowStats { token, id, stats }),
                    None => self.fail(
                        Some(id),
                        CommandError::Engine(ferrelay_engine::EngineError::UnknownFlow),
                    ),
                },
                Command::Query { token, id: None } => self.publish_stats(Some(token)),
                Command::SetLocal { local } => self.engine.set_local(*local),
                Command::Shutdown => {
                    self.flush_events();
                    return false;
                }
            }
        }
        true
    }

    /// Takes the rule out of its box and hands the box back to the control plane
    /// (dropped here only when that ring is full). The box keeps an empty rule,
    /// so no key material lingers in it.
    fn unbox(&mut self, mut b: Box<FlowRule>) -> FlowRule {
        let rule = std::mem::replace(&mut *b, FlowRule::new(Component::Rtp));
        self.spent.give(b);
        rule
    }

    fn fail(&mut self, id: Option<FlowId>, error: CommandError) {
        self.emit(Event::CommandFailed { id, error });
    }
}
