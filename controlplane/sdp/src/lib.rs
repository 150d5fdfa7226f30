//! SDP parsing and line-preserving rewriting.
#![forbid(unsafe_code)]
