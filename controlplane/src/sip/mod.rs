//! ferrelay's own SIP front end (SBC mode): a stateful proxy (RFC 3261 §16) that
//! anchors the media of every call it routes, by turning SDP offers and answers
//! into the NG commands rtpengine's proxies send.
//!
//! - [`message`]: the parser and writer (fuzzed); [`addr`]: URIs and Via.
//! - [`transaction`]: client/server transaction timers A–M in virtual time.
//! - [`proxy::Proxy`]: the sans-IO proxy core; [`route`]: static routes and media
//!   policy; [`media`]: the bridge to the NG controller.
//! - [`server`]: the UDP and TCP listeners around the core.

pub mod addr;
pub mod config;
pub mod media;
pub mod message;
pub mod proxy;
mod proxy_fail;
mod proxy_media;
pub mod route;
pub mod server;
pub mod transaction;

pub use addr::Transport;
pub use proxy::{Outgoing, Peer, Proxy, ProxyConfig};
pub use route::Route;
pub use transaction::Timers;
