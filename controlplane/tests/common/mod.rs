//! An in-process relay on loopback and a small NG client, shared by the tests.
#![allow(dead_code)]

pub mod rtpengine;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use ferrelay::config::{Config, IoBackend};
use ferrelay::ng::Value;
use ferrelay::ng::bencode::dict;
use ferrelay::relay::{self, RelayHandle, RelayOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Each relay in the test process gets its own media port range.
static NEXT_RANGE: AtomicU16 = AtomicU16::new(46_000);

pub const WAIT: Duration = Duration::from_secs(2);

pub async fn relay_with(tweak: impl FnOnce(&mut Config)) -> RelayHandle {
    relay_ticking(Duration::from_millis(100), tweak).await
}

/// A relay whose stats poll and timers run every `tick`.
pub async fn relay_ticking(tick: Duration, tweak: impl FnOnce(&mut Config)) -> RelayHandle {
    let min = NEXT_RANGE.fetch_add(200, Ordering::Relaxed);
    let mut cfg = Config {
        listen_ng: "127.0.0.1:0".parse().unwrap(),
        listen_tcp_ng: "127.0.0.1:0".parse().unwrap(),
        port_min: min,
        port_max: min + 199,
        workers: 1,
        io_backend: IoBackend::Auto,
        ..Config::default()
    };
    tweak(&mut cfg);
    relay::start(&cfg, RelayOptions { tick })
        .await
        .expect("relay starts")
}

pub async fn relay() -> RelayHandle {
    relay_with(|_| {}).await
}

/// Distinguishes the cookies of clients in one process: the relay's reply cache is
/// keyed by cookie alone (as rtpengine's), so cookies must be unique per request.
static NEXT_CLIENT: AtomicU16 = AtomicU16::new(0);

/// A UDP NG client with a cookie counter.
pub struct Ng {
    sock: UdpSocket,
    to: SocketAddr,
    client: u16,
    n: u32,
}

impl Ng {
    pub async fn new(to: SocketAddr) -> Ng {
        Ng {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            to,
            client: NEXT_CLIENT.fetch_add(1, Ordering::Relaxed),
            n: 0,
        }
    }

    /// Sends raw bytes, returns the raw reply.
    pub async fn raw(&self, msg: &[u8]) -> Vec<u8> {
        self.sock.send_to(msg, self.to).await.unwrap();
        let mut buf = vec![0u8; 65_536];
        let (n, _) = tokio::time::timeout(WAIT, self.sock.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("NG reply from {} within {WAIT:?}", self.to))
            .unwrap();
        buf.truncate(n);
        buf
    }

    /// Sends a request under a fresh cookie and decodes the reply dict.
    pub async fn call(&mut self, req: &Value) -> Value {
        self.n += 1;
        let cookie = format!("t{}_{}", self.client, self.n);
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend(req.encode());
        let reply = self.raw(&msg).await;
        let body = reply
            .strip_prefix(format!("{cookie} ").as_bytes())
            .unwrap_or_else(|| {
                panic!(
                    "reply to {cookie} carries its cookie: {:?}",
                    String::from_utf8_lossy(&reply)
                )
            });
        Value::decode(body).unwrap()
    }
}

/// One NG request over a fresh TCP connection.
pub async fn tcp_call(to: SocketAddr, cookie: &str, req: &Value) -> Value {
    let mut s = TcpStream::connect(to).await.unwrap();
    let mut msg = format!("{cookie} ").into_bytes();
    msg.extend(req.encode());
    // Split the message so the server has to reassemble it.
    let (a, b) = msg.split_at(msg.len() / 2);
    s.write_all(a).await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.write_all(b).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("TCP reply in time")
            .unwrap();
        assert!(n > 0, "connection closed before the reply");
        buf.extend_from_slice(&chunk[..n]);
        let body = &buf[cookie.len() + 1..];
        if let Ok(v) = Value::decode(body) {
            return v;
        }
    }
}

pub fn sdp(port: u16, extra: &str) -> String {
    format!(
        "v=0\r\no=- 1545997027 1 IN IP4 127.0.0.1\r\ns=tester\r\nc=IN IP4 127.0.0.1\r\n\
         t=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n{extra}"
    )
}

pub fn offer(call: &str, from: &str, sdp: &str, more: Vec<(&str, Value)>) -> Value {
    let mut d = vec![
        ("command", Value::str("offer")),
        ("call-id", Value::str(call)),
        ("from-tag", Value::str(from)),
        ("sdp", Value::str(sdp)),
    ];
    d.extend(more);
    to_dict(d)
}

pub fn answer(call: &str, from: &str, to: &str, sdp: &str, more: Vec<(&str, Value)>) -> Value {
    let mut d = vec![
        ("command", Value::str("answer")),
        ("call-id", Value::str(call)),
        ("from-tag", Value::str(from)),
        ("to-tag", Value::str(to)),
        ("sdp", Value::str(sdp)),
    ];
    d.extend(more);
    to_dict(d)
}

pub fn cmd(command: &str, call: &str) -> Value {
    dict([
        ("command", Value::str(command)),
        ("call-id", Value::str(call)),
    ])
}

/// The call-ids of the relay's `list` reply, up to `limit`.
pub async fn listed_calls(ng: &mut Ng, limit: i64) -> Vec<String> {
    let list = ng
        .call(&dict([
            ("command", Value::str("list")),
            ("limit", Value::Int(limit)),
        ]))
        .await;
    list.get("calls")
        .and_then(Value::as_list)
        .unwrap_or_else(|| panic!("no calls list in {list:?}"))
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

pub fn to_dict(d: Vec<(&str, Value)>) -> Value {
    Value::Dict(
        d.into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

pub fn list(words: &[&str]) -> Value {
    Value::List(words.iter().map(|w| Value::str(w)).collect())
}

pub fn result(v: &Value) -> &str {
    v.get("result").and_then(Value::as_str).unwrap_or("")
}

pub fn reply_sdp(v: &Value) -> String {
    assert_eq!(result(v), "ok", "{v:?}");
    v.get("sdp").and_then(Value::as_str).unwrap().to_owned()
}

/// The m= port of the first stream of an SDP.
pub fn media_port(sdp: &str) -> u16 {
    let line = sdp.lines().find(|l| l.starts_with("m=")).unwrap();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

/// An RTP packet: PT, sequence number, SSRC and a payload marker.
pub fn rtp(pt: u8, seq: u16, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(fill, 160));
    p
}

/// A minimal RTCP sender report (RFC 3550 §6.4.1), 28 bytes.
pub fn rtcp_sr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xE0, 0, 0, 0, 0, 0, 0, 1]); // NTP timestamp
    p.extend_from_slice(&1234u32.to_be_bytes());
    p.extend_from_slice(&10u32.to_be_bytes());
    p.extend_from_slice(&1600u32.to_be_bytes());
    p
}

/// Receives one datagram within `WAIT`.
pub async fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(WAIT, s.recv_from(&mut buf))
        .await
        .expect("datagram in time")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

/// Sends `pkt` from `from` to `to` until `sink` receives it (the flow may still be
/// being installed by the worker); returns what arrived and its source.
pub async fn send_until(
    from: &UdpSocket,
    to: SocketAddr,
    pkt: &[u8],
    sink: &UdpSocket,
) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    for _ in 0..20 {
        from.send_to(pkt, to).await.unwrap();
        if let Ok(r) =
            tokio::time::timeout(Duration::from_millis(100), sink.recv_from(&mut buf)).await
        {
            let (n, src) = r.unwrap();
            return (buf[..n].to_vec(), src);
        }
    }
    panic!("nothing arrived at {:?}", sink.local_addr());
}

pub async fn bind() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Binds an even/odd pair on loopback (for a party that uses RTCP on port + 1).
pub async fn bind_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..100 {
        let a = bind().await;
        let p = a.local_addr().unwrap().port();
        if p % 2 != 0 || p == u16::MAX {
            continue;
        }
        if let Ok(b) = UdpSocket::bind(("127.0.0.1", p + 1)).await {
            return (a, b);
        }
    }
    panic!("no even/odd pair free");
}
