//! The ferrelay control plane: configuration, the NG control protocol (rtpengine's
//! bencode dialect over UDP and TCP), and the call sessions it compiles into flow
//! rules for the data plane.
#![forbid(unsafe_code)]

pub mod config;
pub mod ng;
pub mod relay;
pub mod session;
