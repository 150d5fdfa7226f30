//! An in-process ferrelay on its own tokio runtime, shared by the test files.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use ferrelay::config::{Config, IoBackend};
use ferrelay::relay::{self, RelayHandle, RelayOptions};

/// A relay on its own runtime; the generator runs blocking on the test thread.
pub struct InProcess {
    rt: tokio::runtime::Runtime,
    handle: Option<RelayHandle>,
}

impl InProcess {
    pub fn start(port_min: u16) -> InProcess {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cfg = Config {
            listen_ng: "127.0.0.1:0".parse().unwrap(),
            listen_tcp_ng: "127.0.0.1:0".parse().unwrap(),
            port_min,
            port_max: port_min + 199,
            workers: 1,
            delete_delay: Duration::ZERO,
            io_backend: IoBackend::Auto,
            ..Config::default()
        };
        let handle = rt
            .block_on(relay::start(
                &cfg,
                RelayOptions {
                    tick: Duration::from_millis(100),
                },
            ))
            .expect("relay starts");
        InProcess {
            rt,
            handle: Some(handle),
        }
    }

    pub fn ng(&self) -> SocketAddr {
        self.handle.as_ref().unwrap().ng_udp
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.shutdown());
        }
    }
}
