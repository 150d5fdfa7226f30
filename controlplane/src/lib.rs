//! The ferrelay control plane: configuration, the NG control protocol (rtpengine's
//! bencode dialect over UDP and TCP), and the call sessions it compiles into flow
//! rules for the data plane.
//!
//! - [`config::Config`]: rtpengine's flags (and the same keys in TOML), validated.
//! - [`relay::start`]: starts workers, NG threads and listener, and timers; the
//!   returned [`relay::RelayHandle`] gives the bound NG addresses and `shutdown()`.
//! - [`ng::commands::Controller`]: one NG message in, the reply out (sans-IO), with
//!   the cookie cache; [`ng::shards::Shards`] spreads calls over several of them
//!   by call-id; [`ng::Value`] is the lossless bencode value.
//! - [`session::Sessions`]: calls, port pools and flow rules over any
//!   [`session::backend::MediaBackend`] (the real workers, or a test fake).
//! - [`http::start`]: `/metrics`, the JSON API and the live dashboard over the
//!   snapshots in [`metrics::Observatory`].
//! - [`logfmt::TextFormat`]: the text log line, written cheaply and escaped.
#![forbid(unsafe_code)]

pub mod config;
mod hosts;
pub mod http;
pub mod logfmt;
pub mod memory;
pub mod metrics;
pub mod ng;
pub mod poll;
pub mod relay;
pub mod session;
pub mod sip;
