//! ferrelay in the test process, on loopback, with an NG client for `query`.
//!
//! In-process rather than the binary: `ferrelay::relay::start` hands back the bound NG
//! address, shutdown is a call rather than a signal, and the suite does not depend on a
//! `ferrelay` binary having been built into some target directory first.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use ferrelay::config::{Config, IoBackend};
use ferrelay::ng::Value;
use ferrelay::ng::bencode::dict;
use ferrelay::relay::{self, RelayHandle, RelayOptions};

/// A running relay; dropping it shuts it down and releases its ports.
#[derive(Debug)]
pub struct Relay {
    rt: tokio::runtime::Runtime,
    handle: Option<RelayHandle>,
    ng: UdpSocket,
    cookie: u32,
}

impl Relay {
    /// Starts a one-worker relay with its media ports in `ports` and NG on a free
    /// loopback port; `tweak` adjusts the configuration first.
    pub fn start(ports: (u16, u16), tweak: impl FnOnce(&mut Config)) -> Relay {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut cfg = Config {
            listen_ng: "127.0.0.1:0".parse().expect("addr"),
            listen_tcp_ng: "127.0.0.1:0".parse().expect("addr"),
            port_min: ports.0,
            port_max: ports.1,
            workers: 1,
            io_backend: IoBackend::Auto,
            delete_delay: Duration::from_secs(1),
            ..Config::default()
        };
        tweak(&mut cfg);
        let opts = RelayOptions {
            tick: Duration::from_millis(100),
        };
        let handle = rt
            .block_on(relay::start(&cfg, opts))
            .unwrap_or_else(|e| panic!("ferrelay starts: {e}"));
        let ng = UdpSocket::bind("127.0.0.1:0").expect("NG client socket");
        ng.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        Relay {
            rt,
            handle: Some(handle),
            ng,
            cookie: 0,
        }
    }

    /// Where Kamailio's `rtpengine` module sends NG commands.
    pub fn ng_addr(&self) -> SocketAddr {
        self.handle().ng_udp
    }

    /// The running relay, for the addresses it bound (NG, SIP front end).
    pub fn handle(&self) -> &RelayHandle {
        self.handle.as_ref().expect("running")
    }

    /// Sends one NG command and returns the decoded reply.
    pub fn command(&mut self, req: &Value) -> Value {
        self.cookie += 1;
        let cookie = format!("interop{} ", self.cookie);
        let mut msg = cookie.clone().into_bytes();
        msg.extend(req.encode());
        self.ng.send_to(&msg, self.ng_addr()).expect("send NG");
        let mut buf = vec![0u8; 65_536];
        loop {
            let n = self
                .ng
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no NG reply from ferrelay: {e}"));
            if let Some(body) = buf[..n].strip_prefix(cookie.as_bytes()) {
                return Value::decode(body).expect("NG reply decodes");
            }
        }
    }

    /// RTP packets ferrelay received from each party of the call (tag, packets): the
    /// counts of rtpengine's `query` reply, first stream of each tag's first media.
    pub fn rtp_packets(&mut self, call_id: &str) -> Vec<(String, i64)> {
        let reply = self.command(&dict([
            ("command", Value::str("query")),
            ("call-id", Value::str(call_id)),
        ]));
        let result = reply.get("result").and_then(Value::as_str);
        assert_eq!(result, Some("ok"), "query {call_id}: {reply:?}");
        let Some(Value::Dict(tags)) = reply.get("tags") else {
            panic!("query reply without tags: {reply:?}");
        };
        tags.iter()
            .map(|(tag, info)| {
                let packets = info
                    .get("medias")
                    .and_then(Value::as_list)
                    .and_then(|m| m.first())
                    .and_then(|m| m.get("streams"))
                    .and_then(Value::as_list)
                    .and_then(|s| s.first())
                    .and_then(|s| s.get("stats"))
                    .and_then(|s| s.get("packets"))
                    .and_then(Value::as_int)
                    .unwrap_or_else(|| panic!("no RTP packet count in {info:?}"));
                (String::from_utf8_lossy(tag).into_owned(), packets)
            })
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(3), h.shutdown()).await
            });
        }
    }
}
