//! The end-to-end forwarding comparison: each forwarder runs as its own process
//! pinned to one core, the load generator (in this process) on another, and the
//! forwarder's CPU per forwarded packet is read from procfs over a steady window.

pub mod args;
pub mod cpu;
pub mod profile;
/// The relay processes live in `ferrelay-tools`, shared with its tests.
pub use ferrelay_tools::relay_proc as relay;
pub mod run;
pub mod summary;
