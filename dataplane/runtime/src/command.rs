//! What travels on the rings: commands to a worker, events back to the control plane.

use std::net::{SocketAddr, UdpSocket};

use ferrelay_engine::{EngineEvent, FlowId, FlowRule, FlowStats, LocalEndpoints, WorkerStats};

use crate::config::BackendKind;
use crate::error::CommandError;

/// One instruction for a worker; applied in ring order.
#[derive(Debug)]
pub enum Command {
    /// Install a flow and start receiving on its socket (the worker takes ownership
    /// of a new one, or moves a parked flow's socket to `id`).
    AddFlow {
        id: FlowId,
        socket: FlowSocket,
        rule: Box<FlowRule>,
    },
    /// Replace a flow's rule, keeping its stats and latched remote.
    UpdateFlow {
        id: FlowId,
        rule: Box<FlowRule>,
    },
    /// Stop receiving, close the socket, answer with `FlowRemoved` (nothing for a
    /// parked flow, whose counters were reported when it was parked).
    RemoveFlow {
        id: FlowId,
    },
    /// End the flow (answer with `FlowRemoved`) but keep its socket bound and
    /// receiving under `id`, dropping what arrives, until a new flow takes it over
    /// (`AddFlow` with `FlowSocket::Parked(id)`) or `RemoveFlow { id }` closes it.
    ParkFlow {
        id: FlowId,
    },
    SetBlocked {
        id: FlowId,
        blocked: bool,
    },
    /// `Some(id)`: answer `FlowStats`; `None`: answer `WorkerStats` with this token.
    Query {
        token: u64,
        id: Option<FlowId>,
    },
    /// The relay's own endpoints changed (the host gained or lost an address):
    /// the loop guard judges every flow's remote again. Rare, so boxed.
    SetLocal {
        local: Box<LocalEndpoints>,
    },
    /// Leave the loop; sockets close when the worker drops them.
    Shutdown,
}

/// Where a new flow's socket comes from.
#[derive(Debug)]
pub enum FlowSocket {
    /// A socket bound by the control plane, handed to the worker.
    New(UdpSocket),
    /// The socket the worker keeps for this parked flow: no socket, bind, setsockopt
    /// or close for a port reused across calls, and what arrived while parked was
    /// already received and dropped.
    Parked(FlowId),
}

/// What a worker reports; the control plane drains these after the event fd fires.
#[derive(Debug)]
pub enum Event {
    /// The flow learned its remote from traffic (symmetric RTP).
    Latched { id: FlowId, addr: SocketAddr },
    /// No media for `idle_ns` on this flow (sent once per idle period).
    MediaIdle { id: FlowId, idle_ns: u64 },
    /// Answer to `Query { id: Some(..) }`.
    FlowStats {
        token: u64,
        id: FlowId,
        stats: FlowStats,
    },
    /// The flow is gone; its final counters.
    FlowRemoved { id: FlowId, stats: FlowStats },
    /// Periodic (`token: None`) or queried worker snapshot.
    WorkerStats(Box<WorkerReport>),
    /// A command could not be applied; `id` is `None` for a worker-wide query.
    CommandFailed {
        id: Option<FlowId>,
        error: CommandError,
    },
    /// Any other engine event, passed through unchanged.
    Engine(EngineEvent),
}

/// A worker's snapshot: engine counters and residence histogram plus the I/O shell's own.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    pub worker: usize,
    /// `Some` when this answers a `Query`, `None` when periodic.
    pub token: Option<u64>,
    pub backend: BackendKind,
    pub engine: WorkerStats,
    pub io: IoCounters,
    /// Commands waiting in the ring when the snapshot was taken.
    pub command_ring_occupied: usize,
    /// Events waiting in the event ring when the snapshot was taken.
    pub event_ring_occupied: usize,
    pub event_ring_capacity: usize,
}

/// Counters of the I/O shell (the engine counts per-packet decisions itself).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Completion batches / epoll rounds that carried at least one datagram.
    pub rx_batches: u64,
    /// Datagrams handed to the engine.
    pub rx_datagrams: u64,
    /// Datagrams larger than a receive buffer (dropped).
    pub rx_truncated: u64,
    /// Datagrams whose source name could not be decoded (dropped).
    pub rx_bad_source: u64,
    /// Completions for a flow that was removed or replaced meanwhile (ignored).
    pub rx_stale: u64,
    /// Receive errors other than running out of buffers.
    pub rx_errors: u64,
    /// io_uring: multishot receives ended because provided buffers ran out.
    pub rx_no_buffers: u64,
    /// io_uring: multishot receives re-armed after they ended.
    pub rx_rearms: u64,
    /// Datagrams handed to the kernel for sending.
    pub tx_datagrams: u64,
    /// Sends the kernel refused (full socket buffer, unreachable, ...).
    pub tx_errors: u64,
    /// Forwards whose output flow has no socket on this worker.
    pub tx_no_socket: u64,
    /// Events dropped because the event ring was full.
    pub events_dropped: u64,
    /// Times the worker woke for commands.
    pub command_wakeups: u64,
}
