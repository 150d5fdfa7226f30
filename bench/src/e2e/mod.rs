//! The end-to-end forwarding comparison: each forwarder runs as its own process
//! pinned to one core, the load generator (in this process) on another, and the
//! forwarder's CPU per forwarded packet is read from procfs over a steady window.

pub mod cpu;
pub mod profile;
pub mod relay;
pub mod run;
pub mod summary;
