//! The running relay: data-plane workers, NG listeners, the event pump that turns
//! worker events into session counters, and the timer that polls stats and expires
//! calls. `start` returns a handle whose `shutdown` releases every port and thread.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrelay_dataplane::{
    Backend, Dataplane, DataplaneConfig, Event, EventWaiter, WaitCanceller, Wake,
};
use ferrelay_engine::{FlowId, FlowRule, FlowStats};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, IoBackend};
use crate::metrics::Observatory;
use crate::ng::commands::Controller;
use crate::ng::server::{self, Shared};
use crate::session::backend::{BackendError, FlowCounters, MediaBackend};
use crate::session::{SessionConfig, Sessions};

/// Stats queries per worker per tick: a small share of the command ring, so
/// signalling always finds room (each offer or answer queues about eight commands).
const POLL_BUDGET: usize = 256;
/// Command ring per worker. A full ring refuses the NG request; a burst of offers
/// from many proxy processes must fit (found with 4 clients on a 2-core host,
/// where the data plane's default of 1024 filled).
const COMMAND_RING: usize = 16_384;

/// The data plane as the sessions see it.
#[derive(Debug)]
pub struct DataplaneBackend {
    dp: Option<Dataplane>,
}

impl DataplaneBackend {
    fn dp(&mut self) -> Result<&mut Dataplane, BackendError> {
        self.dp
            .as_mut()
            .ok_or_else(|| BackendError("data plane stopped".into()))
    }

    fn worker(&mut self, w: usize) -> Result<&mut ferrelay_dataplane::WorkerHandle, BackendError> {
        self.dp()?
            .worker(w)
            .ok_or_else(|| BackendError(format!("no worker {w}")))
    }

    /// Stops and joins every worker thread.
    pub fn shutdown(&mut self) {
        if let Some(dp) = self.dp.take() {
            dp.shutdown();
        }
    }
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

impl MediaBackend for DataplaneBackend {
    fn workers(&self) -> usize {
        self.dp.as_ref().map_or(0, Dataplane::workers)
    }

    fn add_flow(&mut self, w: usize, s: UdpSocket, rule: FlowRule) -> Result<FlowId, BackendError> {
        self.worker(w)?.add_flow(s, rule).map_err(err)
    }

    fn update_flow(&mut self, w: usize, id: FlowId, rule: FlowRule) -> Result<(), BackendError> {
        self.worker(w)?.update_flow(id, rule).map_err(err)
    }

    fn remove_flow(&mut self, w: usize, id: FlowId) -> Result<(), BackendError> {
        self.worker(w)?.remove_flow(id).map_err(err)
    }

    fn park_flow(&mut self, w: usize, id: FlowId) -> Result<bool, BackendError> {
        self.worker(w)?.park_flow(id).map(|()| true).map_err(err)
    }

    fn reuse_flow(
        &mut self,
        w: usize,
        parked: FlowId,
        rule: FlowRule,
    ) -> Result<FlowId, BackendError> {
        self.worker(w)?.reuse_flow(parked, rule).map_err(err)
    }

    fn set_blocked(&mut self, w: usize, id: FlowId, b: bool) -> Result<(), BackendError> {
        self.worker(w)?.set_blocked(id, b).map_err(err)
    }

    fn query_flow(&mut self, w: usize, id: FlowId) -> Result<(), BackendError> {
        self.worker(w)?.query(0, Some(id)).map_err(err)
    }

    fn flush(&mut self) {
        if let Some(dp) = self.dp.as_mut() {
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
        errors: s.drops.total(),
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
    tasks: Vec<JoinHandle<()>>,
    /// One event thread per worker, with what wakes it for shutdown.
    pumps: Vec<(WaitCanceller, std::thread::JoinHandle<()>)>,
    ctl: Shared<DataplaneBackend>,
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

/// Starts workers, NG listeners, the event pump and the timers.
pub async fn start(cfg: &Config, opts: RelayOptions) -> Result<RelayHandle, StartError> {
    let listen = |addr: SocketAddr, e| StartError::Listen { addr, source: e };
    let udp = tokio::net::UdpSocket::bind(cfg.listen_ng)
        .await
        .map_err(|e| listen(cfg.listen_ng, e))?;
    let tcp = tokio::net::TcpListener::bind(cfg.listen_tcp_ng)
        .await
        .map_err(|e| listen(cfg.listen_tcp_ng, e))?;
    let ng_udp = udp.local_addr().map_err(|e| listen(cfg.listen_ng, e))?;
    let ng_tcp = tcp.local_addr().map_err(|e| listen(cfg.listen_tcp_ng, e))?;
    let sip_front = crate::sip::server::bind_config(&cfg.sip)
        .await
        .map_err(|(a, e)| listen(a, e))?;
    let sip = sip_front.as_ref().map(|b| b.addr);

    let mut dp = Dataplane::start(DataplaneConfig {
        workers: cfg.workers,
        backend: match cfg.io_backend {
            IoBackend::Auto => Backend::Auto,
            IoBackend::IoUring => Backend::IoUring,
            IoBackend::Mmsg => Backend::Mmsg,
        },
        idle_after: cfg.timeout,
        command_ring: COMMAND_RING,
        // One flow per port; all flows of a call share a worker, so any worker may
        // end up holding every port of the range.
        max_flows_per_worker: ((u32::from(cfg.port_max) - u32::from(cfg.port_min) + 1)
            * cfg.interfaces.len() as u32)
            .min(ferrelay_dataplane::MAX_INDEX),
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
    let sessions = Sessions::new(
        SessionConfig::from(cfg),
        DataplaneBackend { dp: Some(dp) },
        now,
    );
    let ctl: Shared<DataplaneBackend> = Arc::new(Mutex::new(Controller::new(sessions, now)));
    let obs = Arc::new(Observatory::new(cfg.workers, COMMAND_RING, now));
    let (stop, stop_rx) = watch::channel(false);
    // One bound on waiting queries for both transports.
    let waits = server::QueryWaits::default();
    let mut tasks = vec![
        tokio::spawn(server::serve_udp(
            udp,
            ctl.clone(),
            waits.clone(),
            stop_rx.clone(),
        )),
        tokio::spawn(server::serve_tcp(tcp, ctl.clone(), waits, stop_rx.clone())),
    ];
    if let Some(front) = sip_front {
        tasks.push(front.spawn(ctl.clone(), stop_rx.clone()));
    }
    // Worker events are handled on the control thread, which runs every other
    // use of the sessions: no lock hand-off per event batch. The event threads
    // only turn a worker's eventfd into a wake-up of that task.
    let wake = Arc::new(Notify::new());
    tasks.push(tokio::spawn(handle_events(
        ctl.clone(),
        obs.clone(),
        wake.clone(),
        stop_rx.clone(),
    )));
    let mut pumps = Vec::new();
    for (w, waiter) in waiters.into_iter().enumerate() {
        let cancel = waiter.canceller();
        let wake = wake.clone();
        let t = std::thread::Builder::new()
            .name(format!("ferrelay-events-{w}"))
            .spawn(move || pump(w, &waiter, &wake))
            .map_err(|source| ferrelay_dataplane::DataplaneError::Io {
                context: "starting an event thread",
                source,
            })?;
        pumps.push((cancel, t));
    }
    tasks.push(tokio::spawn(ticker(opts.tick, ctl.clone(), stop_rx)));
    tracing::info!(%ng_udp, %ng_tcp, workers = cfg.workers, "ferrelay listening");
    Ok(RelayHandle {
        ng_udp,
        ng_tcp,
        sip,
        stop,
        tasks,
        pumps,
        ctl,
        obs,
    })
}

/// Wakes the event task as soon as worker `w`'s eventfd fires: a thread of its own
/// sleeps in the runtime's `EventWaiter` (tokio 1.54's `AsyncFd` registration is
/// `unsafe`, which this crate forbids), so an idle relay never wakes for events.
fn pump(w: usize, waiter: &EventWaiter, wake: &Notify) {
    loop {
        match waiter.wait(None) {
            Ok(Wake::Events) => {}
            Ok(Wake::Cancelled) => return,
            Ok(Wake::TimedOut) => continue,
            Err(e) => {
                tracing::error!(worker = w, error = %e, "waiting for worker events failed");
                return;
            }
        }
        // Reset before the task drains: an event queued after this wakes the next
        // wait (and the task again; wake-ups meanwhile coalesce into one).
        waiter.ack();
        wake.notify_one();
    }
}

/// Drains every worker's events into the sessions each time an event thread
/// signals, on the control thread.
async fn handle_events(
    ctl: Shared<DataplaneBackend>,
    obs: Arc<Observatory>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut events = Vec::new();
    loop {
        tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            () = wake.notified() => {}
        }
        let mut c = ctl.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        for w in 0..c.sessions.backend().workers() {
            drain_worker(&mut c, w, &obs, &mut events, now);
        }
        // Refused flows were removed: their commands go out now.
        c.sessions.backend_mut().flush();
    }
}

/// Applies the events worker `w` has queued.
fn drain_worker(
    c: &mut Controller<DataplaneBackend>,
    w: usize,
    obs: &Observatory,
    events: &mut Vec<Event>,
    now: Instant,
) {
    let Ok(h) = c.sessions.backend_mut().worker(w) else {
        return;
    };
    while let Some(ev) = h.try_recv_event() {
        events.push(ev);
    }
    let rejected = h.rejected_commands();
    for ev in events.drain(..) {
        match ev {
            Event::FlowStats { id, stats, .. } => {
                c.sessions.on_flow_stats(w, id, counters(&stats), now);
            }
            Event::FlowRemoved { id, stats } => {
                c.sessions.on_flow_removed(w, id, counters(&stats));
            }
            Event::Latched { id, addr } => {
                if let Some(call_id) = c.sessions.call_of(w, id) {
                    tracing::info!(call_id = %call_id, flow = id.index, remote = %addr, "latched");
                }
            }
            Event::WorkerStats(report) => {
                obs.publish(*report, rejected, now);
            }
            Event::CommandFailed { id, error } => {
                tracing::warn!(worker = w, flow = ?id, error = %error, "worker refused a command");
                if let Some(id) = id {
                    c.sessions.on_flow_refused(w, id, &error.to_string());
                }
            }
            _ => {}
        }
    }
}

/// Polls flow stats (bounded per tick) and runs the session timers.
async fn ticker(every: Duration, ctl: Shared<DataplaneBackend>, mut stop: watch::Receiver<bool>) {
    let mut iv = tokio::time::interval(every);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor = 0usize;
    loop {
        tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            _ = iv.tick() => {}
        }
        let mut c = ctl.lock().unwrap_or_else(|p| p.into_inner());
        c.sessions.tick(Instant::now());
        let flows = c.sessions.flows_to_poll();
        let workers = c.sessions.backend().workers().max(1);
        let mut sent = vec![0usize; workers];
        let n = flows.len();
        for k in 0..n {
            let (w, id) = flows[(cursor + k) % n];
            if sent[w] >= POLL_BUDGET {
                continue;
            }
            sent[w] += 1;
            let _ = c.sessions.backend_mut().query_flow(w, id);
        }
        c.sessions.backend_mut().flush();
        cursor = cursor.wrapping_add(POLL_BUDGET * workers);
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
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        for (cancel, t) in self.pumps {
            cancel.cancel();
            let _ = t.join();
        }
        let mut c = self.ctl.lock().unwrap_or_else(|p| p.into_inner());
        c.sessions.shutdown(Instant::now());
        c.sessions.backend_mut().shutdown();
        tracing::info!("ferrelay stopped");
    }
}
