//! rtpengine's NG control protocol: `<cookie> <bencode dict>` requests, replies with
//! the same cookie, over UDP datagrams or a TCP stream.

pub mod bencode;
pub mod commands;
pub mod cookie_cache;
pub mod server;
pub mod shards;
pub mod udp;

pub use bencode::{DecodeError, Value};
pub use cookie_cache::CookieCache;
