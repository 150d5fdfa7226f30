//! Load generation and NG client tools.
//!
//! `ferrelay-load` places calls' worth of RTP through a relay and measures loss,
//! ordering and one-way latency. The engine lives here (not in the binary) so the
//! end-to-end benchmark drives the same code in-process.
#![forbid(unsafe_code)]

pub mod accounting;
pub mod call_source;
pub mod load;
pub mod modes;
pub mod ng;
pub mod ng_calls;
pub mod packet;
pub mod relay_proc;
pub mod report;

pub use call_source::{Call, CallAddrs, CallSource, FixedPairs, LegKeys};
pub use load::{LoadConfig, LoadRun};
pub use ng::NgClient;
pub use ng_calls::{NgCallOptions, NgCalls, SetupStats};
pub use report::LoadReport;
