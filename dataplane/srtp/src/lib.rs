//! SRTP/SRTCP transforms in place (RFC 3711, RFC 6188, RFC 7714).
//!
//! One [`SrtpContext`] holds the session keys of one master key, derived and
//! expanded once at construction, and a small fixed table of per-SSRC state
//! (rollover counter, replay window, SRTCP index). The per-packet calls work
//! in the caller's buffer and never allocate.
#![forbid(unsafe_code)]

mod cipher;
mod context;
mod error;
mod kdf;
pub mod params;
mod replay;
mod rtcp;
mod streams;
#[cfg(test)]
mod vectors;

pub use context::SrtpContext;
pub use error::SrtpError;
pub use params::{KeyError, MasterKey, SrtpParams, Suite};
pub use replay::{MAX_REPLAY_WINDOW, MIN_REPLAY_WINDOW};
pub use streams::MAX_SSRCS;
