//! How the data plane is sized and which I/O backend it uses.

use std::time::Duration;

use ferrelay_engine::LocalEndpoints;

/// Which I/O backend a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// io_uring when the kernel has every opcode we need, else recvmmsg (reason recorded).
    #[default]
    Auto,
    /// io_uring only; starting fails if the probe or ring setup fails.
    IoUring,
    /// epoll + recvmmsg/sendmmsg, works wherever Linux UDP works.
    Mmsg,
}

/// The backend a worker actually runs (never `Auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    IoUring,
    Mmsg,
}

impl BackendKind {
    /// Short name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::IoUring => "io_uring",
            BackendKind::Mmsg => "mmsg",
        }
    }
}

/// Everything the data plane needs to start; `Default` suits a small relay.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// Number of worker threads (each owns its flows, sockets and buffers).
    pub workers: usize,
    /// Cores to pin workers to, worker `i` on `cores[i % len]`; `None` = one per available core.
    pub cores: Option<Vec<usize>>,
    pub backend: Backend,
    /// Flow slots per worker (a call usually needs 2–4).
    pub max_flows_per_worker: u32,
    /// Command ring capacity per worker; a full ring is `RingFull`, never a stall.
    pub command_ring: usize,
    /// Event ring capacity per worker; the worker drops (and counts) events when it is full.
    pub event_ring: usize,
    /// Provided receive buffers per worker (io_uring: a power of two, at most 32768).
    pub recv_buffers: u16,
    /// Spin instead of sleeping in the kernel when idle (burns a core; off by default).
    pub busy_poll: bool,
    /// How often each worker publishes a `WorkerStats` event.
    pub stats_interval: Duration,
    /// Silence after which a flow gets one `MediaIdle` event.
    pub idle_after: Duration,
    /// The relay's own media endpoints, for the engine's loop guard (packets sent
    /// there that keep coming back are dropped); empty turns the guard off.
    pub local: LocalEndpoints,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cores: None,
            backend: Backend::Auto,
            max_flows_per_worker: 4096,
            command_ring: 1024,
            event_ring: 4096,
            recv_buffers: 1024,
            busy_poll: false,
            stats_interval: Duration::from_secs(1),
            idle_after: Duration::from_secs(30),
            local: LocalEndpoints::default(),
        }
    }
}

impl DataplaneConfig {
    pub(crate) fn validate(&self) -> Result<(), crate::DataplaneError> {
        use crate::DataplaneError::Config;
        if self.workers == 0 {
            return Err(Config("workers must be at least 1"));
        }
        if self.max_flows_per_worker == 0 || self.max_flows_per_worker > crate::alloc::MAX_INDEX {
            return Err(Config("max_flows_per_worker must be in 1..=2^24"));
        }
        if self.command_ring == 0 || self.event_ring == 0 {
            return Err(Config("ring capacities must be at least 1"));
        }
        if !self.recv_buffers.is_power_of_two() || self.recv_buffers > 32768 {
            return Err(Config("recv_buffers must be a power of two <= 32768"));
        }
        if self.stats_interval.is_zero() {
            return Err(Config("stats_interval must be > 0"));
        }
        if matches!(&self.cores, Some(c) if c.is_empty()) {
            return Err(Config("cores, when given, must not be empty"));
        }
        Ok(())
    }
}
