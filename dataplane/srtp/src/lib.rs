//! SRTP/SRTCP key material and transforms.
//!
//! This crate will hold the in-place SRTP/SRTCP transforms (RFC 3711, RFC 6188,
//! RFC 7714). For now it defines the parameters a flow rule carries, so that the
//! engine has a seam to plug the transform into.
#![forbid(unsafe_code)]

pub mod params;

pub use params::{KeyError, MasterKey, SrtpParams, Suite};
