//! The per-core forwarding engine, sans-IO: it takes `now`, the bytes and their
//! source, and says what to send. It never touches a socket or a clock, so every
//! test of the packet path runs in virtual time.
#![forbid(unsafe_code)]

mod crypto;
mod engine;
pub mod error;
pub mod event;
mod latch;
pub mod loops;
pub mod rule;
pub mod stats;
mod table;

pub use engine::{Action, Engine, EngineConfig, TAILROOM};
pub use error::{DropCounts, DropReason, EngineError};
pub use event::EngineEvent;
/// The SRTP crate, so rule builders and tests name `SrtpParams` and friends
/// without a dependency of their own.
pub use ferrelay_srtp as srtp;
pub use loops::LocalEndpoints;
pub use rule::{
    Component, CryptoSpec, FlowId, FlowRule, LatchMode, MismatchPolicy, Output, PtMap, SsrcRewrite,
};
pub use stats::{FlowStats, RtpStreamStats, WorkerStats};
