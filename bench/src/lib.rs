//! Benchmark harness shared by the criterion suites and the end-to-end runs.
#![forbid(unsafe_code)]

pub mod e2e;
pub mod fwd;
