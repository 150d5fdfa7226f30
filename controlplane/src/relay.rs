//! The running relay: data-plane workers shared by the control-plane shards, the
//! NG threads (which also turn worker events into session counters), the NG TCP
//! listener, and the timer that polls stats and expires calls. `start` returns a
//! handle whose `shutdown` releases every port and thread.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferrelay_dataplane::{Backend, Dataplane, DataplaneConfig, DataplaneError, Event};
use ferrelay_engine::{EngineEvent, FlowId, FlowRule, FlowStats};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, IoBackend};
use crate::hosts::{HostWatch, LOCAL_REFRESH, LocalWatch, local_endpoints};
use crate::metrics::Observatory;
use crate::ng::commands::Controller;
use crate::ng::server::{self, Shared};
use crate::ng::shards::Shards;
use crate::ng::udp::{self, WorkerEventFd, WorkerEvents};
use crate::poll::{Budget, Poller};
use crate::session::backend::{BackendError, FlowCounters, MediaBackend};
use crate::session::{SessionConfig, Sessions, port_pools};

/// Stats queries per worker per tick, at least: counters for `query` and the
/// metrics stay fresh when a worker holds few flows.
const POLL_MIN: usize = 256;
/// At most. Past `POLL_MAX * timeout / 2` flows on one worker, a flow is polled
/// less often than the timeout wants: 245,760 at the default 60 s, 40,960 at a
/// 10 s timeout (the default port range gives a worker at most 10,001 flows).
/// A poll costs the worker a command and an event, and the NG thread the event:
/// well under a microsecond each.
const POLL_MAX: usize = 8192;
/// A tick's polls go out in this many rounds, spread over the tick, so that no
/// round is a burst: at most 1,024 queries a round, a sixteenth of the command
/// ring (signalling always finds room; an offer or answer queues about eight
/// commands) and a quarter of the worker's event ring (4,096 events), which
/// carries each answer back along with the final counts of every flow removed.
const POLL_ROUNDS: u32 = 8;
/// Command ring per worker. A full ring refuses the NG request; a burst of offers
/// from many proxy processes must fit (found with 4 clients on a 2-core host,
/// where the data plane's default of 1024 filled).
const COMMAND_RING: usize = 16_384;

/// Control-plane shards per NG thread when there are several: with a few per
/// thread, two threads rarely want the same shard at once (two threads on one
/// shard each: 60-62 µs per cycle against 56 with four each, on 2 cores). One NG
/// thread gets one shard: nothing else takes the lock often, and one shard keeps
/// the dense flow-slot index (`session::owners`), the smallest.
const SHARDS_PER_NG_THREAD: usize = 4;

/// How many shards `ng_threads` NG threads get.
fn shard_count(ng_threads: usize) -> usize {
    match ng_threads {
        0 | 1 => 1,
        n => (n * SHARDS_PER_NG_THREAD).min(usize::from(u16::MAX)),
    }
}

/// The data plane, shared by every shard: one lock around the worker handles,
/// held for a ring push, and the shard that started each flow slot, so worker
/// events go to the shard of their call.
#[derive(Debug)]
pub struct SharedDataplane {
    dp: Mutex<Option<Dataplane>>,
    workers: usize,
    /// Per worker, per flow slot: the generation of the flow last started there
    /// (high 48 bits) and its shard (low 16).
    owners: Vec<Box<[AtomicU64]>>,
}

/// Where a worker event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Shard(usize),
    /// The slot has been reused since (its id was freed before this late event
    /// came): only the flow's own shard knows it, so every shard is asked.
    Unknown,
}

impl SharedDataplane {
    pub(crate) fn new(dp: Dataplane, max_flows: u32) -> Self {
        let workers = dp.workers();
        let owners = (0..workers)
            .map(|_| (0..max_flows).map(|_| AtomicU64::new(u64::MAX)).collect())
            .collect();
        SharedDataplane {
            dp: Mutex::new(Some(dp)),
            workers,
            owners,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Dataplane>> {
        self.dp.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many workers there are.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Runs `f` on worker `w`'s handle under the lock.
    pub(crate) fn with<R>(
        &self,
        w: usize,
        f: impl FnOnce(&mut ferrelay_dataplane::WorkerHandle) -> Result<R, DataplaneError>,
    ) -> Result<R, BackendError> {
        let mut dp = self.lock();
        let dp = dp
            .as_mut()
            .ok_or_else(|| BackendError("data plane stopped".into()))?;
        let h = dp
            .worker(w)
            .ok_or_else(|| BackendError(format!("no worker {w}")))?;
        f(h).map_err(err)
    }

    fn set_owner(&self, w: usize, id: FlowId, shard: u16) {
        if let Some(o) = self.owners.get(w).and_then(|o| o.get(id.index as usize)) {
            o.store(
                (u64::from(id.generation) << 16) | u64::from(shard),
                Ordering::Relaxed,
            );
        }
    }

    /// The shard of flow `id` on worker `w`.
    fn owner(&self, w: usize, id: FlowId) -> Owner {
        match self.owners.get(w).and_then(|o| o.get(id.index as usize)) {
            Some(o) => {
                let v = o.load(Ordering::Relaxed);
                if v >> 16 == u64::from(id.generation) {
                    Owner::Shard((v & 0xffff) as usize)
                } else {
                    Owner::Unknown
                }
            }
            None => Owner::Unknown,
        }
    }

    /// Stops and joins every worker thread.
    pub fn shutdown(&self) {
        if let Some(dp) = self.lock().take() {
            dp.shutdown();
        }
    }
}

/// The data plane as one shard's sessions see it.
#[derive(Debug)]
pub struct DataplaneBackend {
    shard: u16,
    dp: Arc<SharedDataplane>,
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

impl MediaBackend for DataplaneBackend {
    fn workers(&self) -> usize {
        self.dp.workers
    }

    fn add_flow(&mut self, w: usize, s: UdpSocket, rule: FlowRule) -> Result<FlowId, BackendError> {
        let id = self.dp.with(w, |h| h.add_flow(s, rule))?;
        self.dp.set_owner(w, id, self.shard);
        Ok(id)
    }

    fn update_flow(&mut self, w: usize, id: FlowId, rule: FlowRule) -> Result<(), BackendError> {
        self.dp.with(w, |h| h.update_flow(id, rule))
    }

    fn remove_flow(&mut self, w: usize, id: FlowId) -> Result<(), BackendError> {
        self.dp.with(w, |h| h.remove_flow(id))
    }

    fn park_flow(&mut self, w: usize, id: FlowId) -> Result<bool, BackendError> {
        self.dp.with(w, |h| h.park_flow(id)).map(|()| true)
    }

    fn reuse_flow(
        &mut self,
        w: usize,
        parked: FlowId,
        rule: FlowRule,
    ) -> Result<FlowId, BackendError> {
        let id = self.dp.with(w, |h| h.reuse_flow(parked, rule))?;
        self.dp.set_owner(w, id, self.shard);
        Ok(id)
    }

    fn set_blocked(&mut self, w: usize, id: FlowId, b: bool) -> Result<(), BackendError> {
        self.dp.with(w, |h| h.set_blocked(id, b))
    }

    fn query_flow(&mut self, w: usize, id: FlowId) -> Result<(), BackendError> {
        self.dp.with(w, |h| h.query(0, Some(id)))
    }

    fn flush(&mut self) {
        if let Some(dp) = self.dp.lock().as_mut() {
            for h in dp.handles_mut() {
                h.flush_wakes();
            }
        }
    }
}

/// The counters the sessions keep, from the engine's snapshot.
fn counters(s: &FlowStats) -> FlowCounters {
    FlowCounters {
        packets: s.rx_packets,
        bytes: s.rx_bytes,
        errors: s.drops,
        remote: s.remote,
    }
}

/// Options the tests shorten.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// How often flow stats are polled and timers run.
    pub tick: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            tick: Duration::from_secs(1),
        }
    }
}

/// A started relay.
#[derive(Debug)]
pub struct RelayHandle {
    /// Where NG listens (the bound addresses, useful with port 0).
    pub ng_udp: SocketAddr,
    pub ng_tcp: SocketAddr,
    /// Where the SIP front end listens (UDP and TCP), when enabled.
    pub sip: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    /// The threads answering NG over UDP.
    ng_threads: udp::UdpThreads,
    /// The thread keeping the loop guard up with the host's addresses (a
    /// wildcard-bound relay only).
    hosts: Option<HostWatch>,
    tasks: Vec<JoinHandle<()>>,
    ctl: Shared<DataplaneBackend>,
    dp: Arc<SharedDataplane>,
    obs: Arc<Observatory>,
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("data plane: {0}")]
    Dataplane(#[from] ferrelay_dataplane::DataplaneError),
}

/// Starts workers, the shards, NG threads and listener, and the timers.
pub async fn start(cfg: &Config, opts: RelayOptions) -> Result<RelayHandle, StartError> {
    let listen = |addr: SocketAddr, e| StartError::Listen { addr, source: e };
    let udp = UdpSocket::bind(cfg.listen_ng).map_err(|e| listen(cfg.listen_ng, e))?;
    let tcp = tokio::net::TcpListener::bind(cfg.listen_tcp_ng)
        .await
        .map_err(|e| listen(cfg.listen_tcp_ng, e))?;
    let ng_udp = udp.local_addr().map_err(|e| listen(cfg.listen_ng, e))?;
    let ng_tcp = tcp.local_addr().map_err(|e| listen(cfg.listen_tcp_ng, e))?;
    let sip_front = crate::sip::server::bind_config(&cfg.sip)
        .await
        .map_err(|(a, e)| listen(a, e))?;
    let sip = sip_front.as_ref().map(|b| b.addr);

    // One flow per port; all flows of a call share a worker, so any worker may
    // end up holding every port of the range.
    let max_flows = ((u32::from(cfg.port_max) - u32::from(cfg.port_min) + 1)
        * cfg.interfaces.len() as u32)
        .min(ferrelay_dataplane::MAX_INDEX);
    let local = local_endpoints(cfg);
    let mut dp = Dataplane::start(DataplaneConfig {
        workers: cfg.workers,
        backend: match cfg.io_backend {
            IoBackend::Auto => Backend::Auto,
            IoBackend::IoUring => Backend::IoUring,
            IoBackend::Mmsg => Backend::Mmsg,
        },
        idle_after: cfg.timeout,
        command_ring: COMMAND_RING,
        max_flows_per_worker: max_flows,
        local: local.clone(),
        ..Default::default()
    })?;
    for (i, b) in dp.backend_in_use().iter().enumerate() {
        tracing::info!(worker = i, backend = b.as_str(), "worker started");
    }
    // Commands are batched per request (`MediaBackend::flush`), not one wake each.
    for h in dp.handles_mut() {
        h.set_deferred_wake(true);
    }
    let waiters = dp
        .handles_mut()
        .iter()
        .map(|h| h.event_waiter())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ferrelay_dataplane::DataplaneError::Io {
            context: "duplicating a worker's event eventfd",
            source,
        })?;
    let now = Instant::now();
    let shared = Arc::new(SharedDataplane::new(dp, max_flows));
    let scfg = SessionConfig::from(cfg);
    let pools = port_pools(&scfg, shared.workers.max(1));
    let n = shard_count(cfg.ng_threads);
    let shards = (0..n)
        .map(|i| {
            let backend = DataplaneBackend {
                shard: i as u16,
                dp: shared.clone(),
            };
            let sessions = if n == 1 {
                Sessions::new(scfg.clone(), backend, now)
            } else {
                Sessions::with_pools(scfg.clone(), pools.clone(), backend, now)
            };
            Controller::new(sessions, now)
        })
        .collect();
    let ctl: Shared<DataplaneBackend> = Arc::new(Shards::new(shards));
    let obs = Arc::new(Observatory::new(cfg.workers, COMMAND_RING, now));
    let (stop, stop_rx) = watch::channel(false);
    // One bound on waiting queries for both transports.
    let waits = server::QueryWaits::default();
    // The NG threads also apply the workers' events, each under the lock of its
    // call's shard.
    let events = {
        let (ctl, dp, obs) = (ctl.clone(), shared.clone(), obs.clone());
        WorkerEvents {
            fds: waiters
                .into_iter()
                .map(|w| Arc::new(w) as Arc<dyn WorkerEventFd>)
                .collect(),
            handler: Arc::new(move |w| worker_events(w, &ctl, &dp, &obs)),
        }
    };
    let ng_threads = udp::spawn(
        udp,
        cfg.ng_threads,
        ctl.clone(),
        waits.clone(),
        events,
        tokio::runtime::Handle::current(),
    )
    .map_err(|source| ferrelay_dataplane::DataplaneError::Io {
        context: "starting the NG threads",
        source,
    })?;
    let mut tasks = vec![tokio::spawn(server::serve_tcp(
        tcp,
        ctl.clone(),
        waits,
        stop_rx.clone(),
    ))];
    if let Some(front) = sip_front {
        tasks.push(front.spawn(ctl.clone(), stop_rx.clone()));
    }
    // Held calls time out after the silent timeout, the others after the timeout.
    let media_timeout = cfg.timeout.min(cfg.silent_timeout);
    // A wildcard-bound relay is reached at whatever addresses the host has.
    let hosts = if cfg.interfaces.iter().any(|i| i.local.is_unspecified()) {
        let watch = LocalWatch::new(cfg.clone(), local, shared.clone());
        let hosts = HostWatch::spawn(watch, LOCAL_REFRESH).map_err(|source| {
            ferrelay_dataplane::DataplaneError::Io {
                context: "starting the host-address watch",
                source,
            }
        })?;
        Some(hosts)
    } else {
        None
    };
    tasks.push(tokio::spawn(ticker(
        opts.tick,
        media_timeout,
        ctl.clone(),
        stop_rx,
    )));
    tracing::info!(
        %ng_udp,
        %ng_tcp,
        workers = cfg.workers,
        ng_threads = cfg.ng_threads,
        "ferrelay listening"
    );
    Ok(RelayHandle {
        ng_threads,
        hosts,
        ng_udp,
        ng_tcp,
        sip,
        stop,
        tasks,
        ctl,
        dp: shared,
        obs,
    })
}

/// Applies the events worker `w` has queued, each under the lock of its call's
/// shard (run by an NG thread when the worker's eventfd fires).
fn worker_events(
    w: usize,
    ctl: &Shards<DataplaneBackend>,
    dp: &SharedDataplane,
    obs: &Observatory,
) {
    let now = Instant::now();
    let mut events = Vec::new();
    let rejected = {
        let mut guard = dp.lock();
        let Some(h) = guard.as_mut().and_then(|d| d.worker(w)) else {
            return;
        };
        while let Some(ev) = h.try_recv_event() {
            events.push(ev);
        }
        h.rejected_commands()
    };
    // Per shard, the events of its flows.
    let mut routed: Vec<Vec<(usize, FlowEvent)>> = (0..ctl.len()).map(|_| Vec::new()).collect();
    route_events(w, &mut events, dp, obs, rejected, &mut routed, now);
    for (i, evs) in routed.into_iter().enumerate() {
        if evs.is_empty() {
            continue;
        }
        let mut c = ctl.lock(i);
        for (w, ev) in evs {
            apply_event(&mut c, w, ev, now);
        }
        // Refused flows were removed: their commands go out now.
        c.flush();
    }
}

/// A worker event about one flow, in the sessions' terms.
#[derive(Debug, Clone)]
enum FlowEvent {
    Stats(FlowId, FlowCounters),
    Removed(FlowId, FlowCounters),
    Latched(FlowId, SocketAddr),
    Refused(FlowId, String),
    Loop(FlowId),
}

impl FlowEvent {
    fn id(&self) -> FlowId {
        match self {
            FlowEvent::Stats(id, _)
            | FlowEvent::Removed(id, _)
            | FlowEvent::Latched(id, _)
            | FlowEvent::Refused(id, _)
            | FlowEvent::Loop(id) => *id,
        }
    }
}

/// Sorts worker `w`'s events by the shard of their flow; publishes its stats.
fn route_events(
    w: usize,
    events: &mut Vec<Event>,
    dp: &SharedDataplane,
    obs: &Observatory,
    rejected: u64,
    routed: &mut [Vec<(usize, FlowEvent)>],
    now: Instant,
) {
    for ev in events.drain(..) {
        let fe = match ev {
            Event::FlowStats { id, stats, .. } => FlowEvent::Stats(id, counters(&stats)),
            Event::FlowRemoved { id, stats } => FlowEvent::Removed(id, counters(&stats)),
            Event::Latched { id, addr } => FlowEvent::Latched(id, addr),
            Event::Engine(EngineEvent::LoopDetected { id }) => FlowEvent::Loop(id),
            Event::CommandFailed { id, error } => {
                tracing::warn!(worker = w, flow = ?id, error = %error, "worker refused a command");
                match id {
                    Some(id) => FlowEvent::Refused(id, error.to_string()),
                    None => continue,
                }
            }
            Event::WorkerStats(report) => {
                obs.publish(*report, rejected, now);
                continue;
            }
            _ => continue,
        };
        match dp.owner(w, fe.id()) {
            Owner::Shard(i) if i < routed.len() => routed[i].push((w, fe)),
            _ => {
                for r in routed.iter_mut() {
                    r.push((w, fe.clone()));
                }
            }
        }
    }
}

/// Applies one event of worker `w` to a shard's sessions (which ignore flows
/// they do not hold).
fn apply_event(c: &mut Controller<DataplaneBackend>, w: usize, ev: FlowEvent, now: Instant) {
    match ev {
        FlowEvent::Stats(id, counters) => c.sessions.on_flow_stats(w, id, counters, now),
        FlowEvent::Removed(id, counters) => c.sessions.on_flow_removed(w, id, counters),
        FlowEvent::Latched(id, addr) => {
            if let Some(call_id) = c.sessions.call_of(w, id) {
                tracing::info!(call_id = %call_id, flow = id.index, remote = %addr, "latched");
            }
        }
        FlowEvent::Refused(id, why) => c.sessions.on_flow_refused(w, id, &why),
        FlowEvent::Loop(id) => {
            if let Some(call_id) = c.sessions.call_of(w, id) {
                tracing::warn!(
                    call_id = %call_id,
                    flow = id.index,
                    "media loop through the relay's own ports: dropping its repeats"
                );
            }
        }
    }
}

/// The poll budget for ticks of `every` and a media timeout of `timeout`: every
/// flow within half the timeout, so a call with media shows growing counters at
/// least twice before the timeout could end it. The shards share the per-worker
/// floor and ceiling.
fn poll_budget(every: Duration, timeout: Duration, shards: usize) -> Budget {
    let half = timeout.as_secs_f64() / 2.0;
    let round = every.as_secs_f64().max(1e-3) / f64::from(POLL_ROUNDS);
    let per_round = |n: usize| (n / POLL_ROUNDS as usize / shards.max(1)).max(1);
    Budget {
        cycle_rounds: (half / round).floor().max(1.0) as usize,
        min: per_round(POLL_MIN),
        max: per_round(POLL_MAX),
    }
}

/// Runs the session timers every `every` and polls flow stats in
/// [`POLL_ROUNDS`] rounds between (sized per worker, see [`crate::poll`]),
/// shard by shard.
async fn ticker(
    every: Duration,
    media_timeout: Duration,
    ctl: Shared<DataplaneBackend>,
    mut stop: watch::Receiver<bool>,
) {
    let round = (every / POLL_ROUNDS).max(Duration::from_millis(1));
    let mut iv = tokio::time::interval(round);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pollers: Vec<Poller> = (0..ctl.len()).map(|_| Poller::default()).collect();
    let budget = poll_budget(every, media_timeout, ctl.len());
    for n in 0u64.. {
        tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            _ = iv.tick() => {}
        }
        let timers = n % u64::from(POLL_ROUNDS) == 0;
        let mut released = 0;
        for (i, poller) in pollers.iter_mut().enumerate() {
            let mut c = ctl.lock(i);
            if timers {
                let now = Instant::now();
                c.sessions.tick(now);
                released += c.expire_replies(now);
            }
            let workers = c.sessions.backend().workers().max(1);
            let batch = poller.plan(c.sessions.installed_flows(), workers, budget);
            for &(w, id) in batch {
                let _ = c.sessions.backend_mut().query_flow(w, id);
            }
            c.sessions.backend_mut().flush();
        }
        if let Some(took) = crate::memory::released(released) {
            tracing::debug!(
                released,
                took_us = took.as_micros() as u64,
                "expired NG replies: freed memory handed back to the OS"
            );
        }
    }
}

impl RelayHandle {
    /// The controller, for in-process tests that look at the sessions.
    pub fn controller(&self) -> &Shared<DataplaneBackend> {
        &self.ctl
    }

    /// The workers' latest published snapshots, for metrics and the dashboard.
    pub fn observatory(&self) -> &Arc<Observatory> {
        &self.obs
    }

    /// Stops taking commands, ends every call, releases every port and joins the
    /// workers.
    pub async fn shutdown(self) {
        // Told first, joined after the NG threads: both wait out a poll.
        if let Some(h) = &self.hosts {
            h.signal_stop();
        }
        self.ng_threads.stop();
        drop(self.hosts);
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        for i in 0..self.ctl.len() {
            self.ctl.lock(i).sessions.shutdown(Instant::now());
        }
        self.dp.shutdown();
        tracing::info!("ferrelay stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_cover_every_flow_within_half_the_media_timeout() {
        let s = Duration::from_secs;
        // Defaults: 1 s ticks of eight poll rounds, 60 s timeout, one shard:
        // every flow within 240 rounds (30 s), 32 to 1,024 polls a round.
        assert_eq!(POLL_ROUNDS, 8);
        assert_eq!(
            poll_budget(s(1), s(60), 1),
            Budget {
                cycle_rounds: 240,
                min: 32,
                max: 1024
            }
        );
        // A round stays well inside the worker's rings.
        assert!(POLL_MAX / POLL_ROUNDS as usize <= COMMAND_RING / 16);
        // Four shards share the floor and the ceiling of a worker's polls.
        let b = poll_budget(s(1), s(60), 4);
        assert_eq!((b.min, b.max), (8, 256));
        // Short test ticks and timeouts; a timeout below a round still polls.
        assert_eq!(
            poll_budget(Duration::from_millis(50), s(2), 1).cycle_rounds,
            160
        );
        assert_eq!(
            poll_budget(s(1), Duration::from_millis(100), 1).cycle_rounds,
            1
        );
        assert_eq!(poll_budget(Duration::ZERO, s(1), 1).cycle_rounds, 4000);
    }
}
