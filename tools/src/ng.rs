//! A blocking NG client (rtpengine's control protocol over UDP): one cookie per
//! request, resent under the same cookie on timeout so the relay's reply cache
//! answers a retry instead of running the command twice.
//! <https://rtpengine.readthedocs.io/en/latest/ng_control_protocol.html>
//!
//! ```text
//!  datagram := cookie ' ' bencode-dict       request and reply alike
//! ```

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, bail};
use ferrelay::ng::Value;

/// Largest NG reply read (rtpengine's own UDP limit is 64 KiB).
const MAX_REPLY: usize = 65_536;

/// A UDP NG client bound to one relay.
#[derive(Debug)]
pub struct NgClient {
    sock: UdpSocket,
    to: SocketAddr,
    /// Random per client so runs minutes apart do not hit the relay's cookie cache.
    prefix: u32,
    n: u64,
    timeout: Duration,
    tries: u32,
}

impl NgClient {
    /// A client that waits `timeout` per try and tries three times.
    pub fn new(to: SocketAddr, timeout: Duration) -> anyhow::Result<NgClient> {
        let any: SocketAddr = match to {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sock = UdpSocket::bind(any).context("binding the NG client socket")?;
        sock.connect(to)?;
        let mut r = [0u8; 4];
        getrandom::fill(&mut r).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
        Ok(NgClient {
            sock,
            to,
            prefix: u32::from_be_bytes(r),
            n: 0,
            timeout,
            tries: 3,
        })
    }

    /// The relay this client talks to.
    pub fn relay(&self) -> SocketAddr {
        self.to
    }

    /// Sends `req` under a fresh cookie and returns the decoded reply dict.
    pub fn call(&mut self, req: &Value) -> anyhow::Result<Value> {
        self.n += 1;
        let cookie = format!("{:08x}_{}", self.prefix, self.n);
        let mut msg = Vec::with_capacity(cookie.len() + 256);
        msg.extend_from_slice(cookie.as_bytes());
        msg.push(b' ');
        req.encode_into(&mut msg);
        self.sock.set_read_timeout(Some(self.timeout))?;
        let mut buf = vec![0u8; MAX_REPLY];
        for _ in 0..self.tries {
            if let Err(e) = self.sock.send(&msg) {
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    // Nobody listening (yet): an ICMP error from an earlier send.
                    std::thread::sleep(self.timeout);
                    continue;
                }
                return Err(e).context(format!("NG request to {}", self.to));
            }
            loop {
                let n = match self.sock.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    // Port unreachable: the relay is not up (yet). Count it as a
                    // silent try, waited out like one.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        std::thread::sleep(self.timeout);
                        break;
                    }
                    Err(e) => return Err(e).context(format!("NG request to {}", self.to)),
                };
                // A late reply to an earlier request carries another cookie: skip it.
                let Some(body) = buf[..n]
                    .strip_prefix(cookie.as_bytes())
                    .and_then(|b| b.strip_prefix(b" "))
                else {
                    continue;
                };
                return Value::decode(body).map_err(|e| anyhow::anyhow!("NG reply: {e}"));
            }
        }
        bail!(
            "no NG reply from {} after {} tries of {:?}",
            self.to,
            self.tries,
            self.timeout
        )
    }

    /// Like [`NgClient::call`], but a reply whose `result` is not `ok`/`pong` is an error.
    pub fn call_ok(&mut self, req: &Value) -> anyhow::Result<Value> {
        let r = self.call(req)?;
        match result(&r) {
            "ok" | "pong" => Ok(r),
            other => bail!(
                "NG {} failed: {other}: {}",
                req.get("command").and_then(Value::as_str).unwrap_or("?"),
                r.get("error-reason")
                    .and_then(Value::as_str)
                    .unwrap_or("(no reason)")
            ),
        }
    }
}

/// A request dict from `(key, value)` pairs in order.
pub fn request(pairs: Vec<(&str, Value)>) -> Value {
    Value::Dict(
        pairs
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

/// The reply's `result` string, empty when absent.
pub fn result(v: &Value) -> &str {
    v.get("result").and_then(Value::as_str).unwrap_or("")
}

/// Bencode as JSON for people and scripts: byte strings become strings (lossy
/// UTF-8, which NG text always is); JSON objects list keys sorted.
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Bytes(b) => serde_json::Value::String(String::from_utf8_lossy(b).into_owned()),
        Value::List(l) => serde_json::Value::Array(l.iter().map(to_json).collect()),
        Value::Dict(d) => serde_json::Value::Object(
            d.iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_of_a_reply() {
        let v = request(vec![
            ("result", Value::str("ok")),
            ("created", Value::Int(17)),
            ("tags", Value::List(vec![Value::str("a"), Value::str("b")])),
        ]);
        assert_eq!(
            to_json(&v).to_string(),
            r#"{"created":17,"result":"ok","tags":["a","b"]}"#
        );
        assert_eq!(result(&v), "ok");
    }

    #[test]
    fn retries_then_reports_silence() {
        // A socket that never answers: three short tries, then a clear error.
        let mute = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut c = NgClient::new(mute.local_addr().unwrap(), Duration::from_millis(30)).unwrap();
        let t = std::time::Instant::now();
        let e = c.call(&request(vec![("command", Value::str("ping"))]));
        assert!(e.unwrap_err().to_string().contains("no NG reply"));
        assert!(t.elapsed() >= Duration::from_millis(90));
        let mut buf = [0u8; 256];
        let (n, _) = mute.recv_from(&mut buf).unwrap();
        assert!(buf[..n].ends_with(b" d7:command4:pinge"), "{:?}", &buf[..n]);
    }
}
