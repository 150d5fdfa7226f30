//! The running relay: data-plane workers shared by the control-plane shards, the
//! NG threads (which also turn worker events into session counters), the NG TCP
//! listener, and the timer that polls stats and expires calls. `start` returns a
//! handle whose `shutdown` releases every port and thread.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferrelay_dataplane::{Backend, Dataplane, DataplaneConfig, DataplaneError, Event};
use ferrelay_engine::{EngineEvent, FlowId, FlowRule, FlowStats, LocalEndpoints};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, IoBackend};
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
    fn new(dp: Dataplane, max_flows: u32) -> Self {
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

    /// Runs `f` on worker `w`'s handle under the lock.
    fn with<R>(
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
    let hosts = cfg
        .interfaces
        .iter()
        .any(|i| i.local.is_unspecified())
        .then(|| LocalWatch::new(cfg.clone(), local, shared.clone()));
    let tick = ticker(opts.tick, media_timeout, ctl.clone(), hosts, stop_rx);
    tasks.push(tokio::spawn(async move { drop(tick.await) }));
    tracing::info!(
        %ng_udp,
        %ng_tcp,
        workers = cfg.workers,
        ng_threads = cfg.ng_threads,
        "ferrelay listening"
    );
    Ok(RelayHandle {
        ng_threads,
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

/// Where the relay's media sockets are reached, for the workers' loop guard:
/// every interface's bound and announced address and, for a wildcard bind, every
/// address the host has now (of both families for `::`, which takes IPv4 too;
/// the ticker reads them again every [`LOCAL_REFRESH`]); `LocalEndpoints` adds
/// loopback.
fn local_endpoints(cfg: &Config) -> LocalEndpoints {
    let wild = cfg.interfaces.iter().any(|i| i.local.is_unspecified());
    let host = if wild {
        host_addresses().unwrap_or_else(|e| {
            tracing::warn!(
                error = %e,
                "cannot list the host's addresses: the loop guard watches only the configured and loopback ones until it can"
            );
            Vec::new()
        })
    } else {
        Vec::new()
    };
    endpoints_with_host(cfg, host)
}

/// [`local_endpoints`] with the host's addresses given.
fn endpoints_with_host(cfg: &Config, host: Vec<IpAddr>) -> LocalEndpoints {
    let wild_v4 = cfg
        .interfaces
        .iter()
        .any(|i| i.local == Ipv4Addr::UNSPECIFIED);
    let wild_v6 = cfg
        .interfaces
        .iter()
        .any(|i| i.local == Ipv6Addr::UNSPECIFIED);
    let host = host
        .into_iter()
        .filter(|ip| wild_v6 || (wild_v4 && ip.is_ipv4()));
    let ips = cfg.interfaces.iter().flat_map(|i| [i.local, i.advertised]);
    LocalEndpoints::new(ips.chain(host), cfg.port_min, cfg.port_max)
}

/// The host's interface addresses (`getifaddrs`).
fn host_addresses() -> nix::Result<Vec<IpAddr>> {
    Ok(nix::ifaddrs::getifaddrs()?
        .filter_map(|a| {
            let a = a.address?;
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect())
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

/// How often a wildcard-bound relay reads the host's addresses again.
const LOCAL_REFRESH: Duration = Duration::from_secs(30);

/// The loop guard's endpoints of a wildcard-bound relay, kept up with the
/// host's addresses: the workers get them anew when they change.
struct LocalWatch {
    cfg: Config,
    /// What every worker was last sent.
    now: LocalEndpoints,
    /// A send failed part-way: some workers may hold another set than `now`, so
    /// the next refresh sends even an unchanged one.
    stale: bool,
    dp: Arc<SharedDataplane>,
}

impl LocalWatch {
    fn new(cfg: Config, now: LocalEndpoints, dp: Arc<SharedDataplane>) -> Self {
        LocalWatch {
            cfg,
            now,
            stale: false,
            dp,
        }
    }

    fn refresh(&mut self) {
        // An address list that cannot be read (descriptors running out, say) is
        // not an empty one: the workers keep what they have.
        let host = match host_addresses() {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list the host's addresses; kept the last");
                return;
            }
        };
        let next = endpoints_with_host(&self.cfg, host);
        if next == self.now && !self.stale {
            return;
        }
        for w in 0..self.dp.workers {
            let sent = self.dp.with(w, |h| {
                h.set_local(next.clone())?;
                h.flush_wakes();
                Ok(())
            });
            if let Err(e) = sent {
                tracing::warn!(worker = w, error = %e, "the loop guard's new endpoints were not sent");
                self.stale = true;
                return; // sent again at the next refresh
            }
        }
        if next != self.now {
            tracing::info!("the host's addresses changed: the loop guard watches the new ones");
        }
        self.now = next;
        self.stale = false;
    }
}

/// Runs the session timers every `every` and polls flow stats in
/// [`POLL_ROUNDS`] rounds between (sized per worker, see [`crate::poll`]),
/// shard by shard; reads the host's addresses again every [`LOCAL_REFRESH`]
/// when there is a `hosts` watch, which it gives back when stopped.
async fn ticker(
    every: Duration,
    media_timeout: Duration,
    ctl: Shared<DataplaneBackend>,
    mut hosts: Option<LocalWatch>,
    mut stop: watch::Receiver<bool>,
) -> Option<LocalWatch> {
    // tokio's clock, so that a test can move it on.
    let mut last_refresh = tokio::time::Instant::now();
    let round = (every / POLL_ROUNDS).max(Duration::from_millis(1));
    let mut iv = tokio::time::interval(round);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pollers: Vec<Poller> = (0..ctl.len()).map(|_| Poller::default()).collect();
    let budget = poll_budget(every, media_timeout, ctl.len());
    for n in 0u64.. {
        tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { return hosts },
            _ = iv.tick() => {}
        }
        let timers = n % u64::from(POLL_ROUNDS) == 0;
        if timers
            && let Some(w) = &mut hosts
            && last_refresh.elapsed() >= LOCAL_REFRESH
        {
            last_refresh = tokio::time::Instant::now();
            w.refresh();
        }
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
    hosts
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
        self.ng_threads.stop();
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
    use crate::config::InterfaceSpec;

    fn iface(local: &str, advertised: &str) -> InterfaceSpec {
        InterfaceSpec {
            name: "default".into(),
            local: local.parse().unwrap(),
            advertised: advertised.parse().unwrap(),
        }
    }

    /// One real worker, and the configuration of a relay bound to `0.0.0.0`.
    fn wildcard_relay() -> (Arc<SharedDataplane>, Config) {
        let dp = Dataplane::start(DataplaneConfig {
            workers: 1,
            max_flows_per_worker: 16,
            ..Default::default()
        })
        .expect("data plane");
        let cfg = Config {
            interfaces: vec![iface("0.0.0.0", "203.0.113.5")],
            ..Config::default()
        };
        (Arc::new(SharedDataplane::new(dp, 16)), cfg)
    }

    #[test]
    fn a_wildcard_relay_sends_the_workers_new_endpoints_when_they_change() {
        let (shared, cfg) = wildcard_relay();
        // As if the host had no address at startup.
        let mut w = LocalWatch::new(cfg.clone(), LocalEndpoints::default(), shared.clone());
        w.refresh();
        assert_eq!(w.now, local_endpoints(&cfg), "taken and sent");
        assert!(!w.stale);
        w.refresh();
        assert_eq!(w.now, local_endpoints(&cfg), "unchanged: nothing to send");
        shared.shutdown();
        // With the workers gone, the change waits for the next try, and so does
        // an unchanged set after a failed send.
        w.now = LocalEndpoints::default();
        w.refresh();
        assert_eq!(w.now, LocalEndpoints::default());
        assert!(w.stale, "sent again next time");
    }

    /// The ticker reads the host's addresses again once [`LOCAL_REFRESH`] has
    /// passed, and not before (tokio's clock, paused and moved on).
    #[tokio::test(start_paused = true)]
    async fn the_ticker_reads_the_host_addresses_again_each_refresh_period() {
        let (shared, cfg) = wildcard_relay();
        let now = Instant::now();
        let backend = DataplaneBackend {
            shard: 0,
            dp: shared.clone(),
        };
        let sessions = Sessions::new(SessionConfig::from(&cfg), backend, now);
        let ctl: Shared<DataplaneBackend> =
            Arc::new(Shards::new(vec![Controller::new(sessions, now)]));
        // As if the host had had no address at startup; what the watch holds
        // once the ticker ran for `run`.
        let after = |run: Duration| {
            let (stop, rx) = watch::channel(false);
            let watch = LocalWatch::new(cfg.clone(), LocalEndpoints::default(), shared.clone());
            let every = Duration::from_millis(100);
            let t = tokio::spawn(ticker(
                every,
                Duration::from_secs(60),
                ctl.clone(),
                Some(watch),
                rx,
            ));
            async move {
                tokio::time::sleep(run).await;
                stop.send(true).unwrap();
                t.await.unwrap().expect("the watch comes back").now
            }
        };
        let second = Duration::from_secs(1);
        assert_eq!(
            after(LOCAL_REFRESH - second).await,
            LocalEndpoints::default(),
            "read again before its time"
        );
        assert_eq!(
            after(LOCAL_REFRESH + second).await,
            local_endpoints(&cfg),
            "not read again, or not sent"
        );
        shared.shutdown();
    }

    #[test]
    fn the_loop_guard_watches_what_reaches_the_relays_sockets() {
        let at = |l: &LocalEndpoints, a: &str| l.reaches_relay(a.parse().unwrap());
        let cfg = |ifaces| Config {
            interfaces: ifaces,
            port_min: 30_000,
            port_max: 30_099,
            ..Config::default()
        };
        // A specific bind: its own and its announced address.
        let l = local_endpoints(&cfg(vec![iface("127.0.0.1", "203.0.113.5")]));
        assert!(at(&l, "127.0.0.1:30000") && at(&l, "203.0.113.5:30099"));
        assert!(!at(&l, "127.0.0.2:30000"), "not bound there");

        // A wildcard bind is reached at every address of the host, loopback's
        // whole range included, and at what it announces.
        let host: Vec<IpAddr> = ["10.1.2.3", "2001:db8::5"]
            .map(|a| a.parse().unwrap())
            .into();
        let l = endpoints_with_host(&cfg(vec![iface("0.0.0.0", "203.0.113.5")]), host.clone());
        for a in ["203.0.113.5:30000", "10.1.2.3:30000", "127.0.0.2:30000"] {
            assert!(at(&l, a), "{a}");
        }
        assert!(!at(&l, "[2001:db8::5]:30000"), "an IPv4 bind takes no IPv6");
        assert!(!at(&l, "[::1]:30000"), "an IPv4 bind takes no IPv6");
        assert!(!at(&l, "192.0.2.1:30000"), "not an address of this host");
        // `::` takes both families (Linux's dual-stack default).
        let l = endpoints_with_host(&cfg(vec![iface("::", "2001:db8::9")]), host.clone());
        for a in [
            "10.1.2.3:30000",
            "[2001:db8::5]:30000",
            "[::1]:30000",
            "127.0.0.2:30000",
        ] {
            assert!(at(&l, a), "{a}");
        }
        // A specific bind takes none of the host's other addresses.
        let l = endpoints_with_host(&cfg(vec![iface("127.0.0.1", "127.0.0.1")]), host);
        assert!(!at(&l, "10.1.2.3:30000"));
        // What the host really has is listed, and goes in for a wildcard bind.
        let l = local_endpoints(&cfg(vec![iface("0.0.0.0", "203.0.113.5")]));
        for ip in host_addresses()
            .unwrap()
            .into_iter()
            .filter(IpAddr::is_ipv4)
        {
            assert!(
                l.reaches_relay(SocketAddr::new(ip, 30_050)),
                "host address {ip}"
            );
        }
    }

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
