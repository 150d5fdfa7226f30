//! Errors the control plane sees from the data plane, and why a command failed on a worker.

use ferrelay_engine::{EngineError, FlowId};

/// What went wrong when starting the data plane or handing it a command.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The worker's command ring is full: back-pressure, retry later (never blocks).
    #[error("command ring of worker {worker} is full")]
    RingFull { worker: usize },
    /// The id was not handed out by this worker handle (or was already removed).
    #[error("flow {0:?} is not known to this worker handle")]
    UnknownFlow(FlowId),
    /// Every flow slot of the worker is in use.
    #[error("worker {worker} has no free flow slot (max {max})")]
    TooManyFlows { worker: usize, max: u32 },
    /// The configuration cannot work (zero workers, ring sizes, buffer counts).
    #[error("invalid data-plane configuration: {0}")]
    Config(&'static str),
    /// A worker could not set up its I/O (the forced backend failed, eventfd, epoll).
    #[error("worker {worker} failed to start: {reason}")]
    WorkerStart { worker: usize, reason: String },
    /// An OS call on the control side failed.
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl DataplaneError {
    pub(crate) fn io(context: &'static str, source: std::io::Error) -> Self {
        DataplaneError::Io { context, source }
    }
}

/// Why a worker could not apply a command; reported in `Event::CommandFailed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// The engine refused it (unknown flow, slot in use, unsupported crypto, ...).
    Engine(EngineError),
    /// Registering the socket with the I/O backend failed with this errno.
    Io(i32),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Engine(e) => write!(f, "engine: {e}"),
            CommandError::Io(errno) => {
                write!(f, "io: {}", std::io::Error::from_raw_os_error(*errno))
            }
        }
    }
}
