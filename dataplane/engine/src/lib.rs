//! The per-core forwarding engine, sans-IO: it takes `now`, the bytes and their
//! source, and says what to send. It never touches a socket or a clock, so every
//! test of the packet path runs in virtual time.
#![forbid(unsafe_code)]

pub mod rule;

pub use rule::{
    Component, CryptoSpec, FlowId, FlowRule, LatchMode, MismatchPolicy, Output, PtMap, SsrcRewrite,
};
