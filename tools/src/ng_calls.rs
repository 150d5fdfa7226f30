//! Calls set up over NG against a real relay (ferrelay, rtpengine): the A client
//! offers, the B client answers, each with its own socket's address in its SDP and,
//! on an SRTP leg, its own SDES key; the relay's replies give the addresses to send
//! to and the keys the relay protects with. `delete` tears them down.
//!
//! ```text
//!  A client --offer(SDP_A)-->  relay  --reply(SDP for B: relay addr b, relay key->B)
//!  B client --answer(SDP_B)--> relay  --reply(SDP for A: relay addr a, relay key->A)
//! ```

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrelay::ng::Value;
use ferrelay_sdp::{Crypto, Sdp};
use ferrelay_srtp::Suite;
use serde::Serialize;

use crate::call_source::{Call, CallAddrs, LegKeys};
use crate::ng::{NgClient, request};

/// What kind of calls to place.
#[derive(Debug, Clone)]
pub struct NgCallOptions {
    /// Address the client sockets bind to and announce in their SDP.
    pub client_ip: IpAddr,
    /// SDES-SRTP on the A (offering) client's leg.
    pub a_srtp: bool,
    /// SDES-SRTP on the B (answering) client's leg.
    pub b_srtp: bool,
    pub suite: Suite,
    /// Packet time announced in a=ptime, ms.
    pub ptime_ms: u32,
    /// Prefix of the call-ids, so concurrent runs do not collide.
    pub call_id_prefix: String,
}

impl Default for NgCallOptions {
    fn default() -> Self {
        NgCallOptions {
            client_ip: [127, 0, 0, 1].into(),
            a_srtp: false,
            b_srtp: false,
            suite: Suite::AesCm128HmacSha1_80,
            ptime_ms: 20,
            call_id_prefix: "ferrelay-load".into(),
        }
    }
}

/// How call setup went.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SetupStats {
    pub calls: usize,
    pub seconds: f64,
    /// Completed offer+answer pairs per second.
    pub calls_per_s: f64,
    /// Slowest offer+answer pair, milliseconds.
    pub max_ms: f64,
}

/// Places calls over NG and remembers them for [`NgCalls::teardown`].
#[derive(Debug)]
pub struct NgCalls {
    client: NgClient,
    opts: NgCallOptions,
    /// (call-id, from-tag) of every call set up and not yet deleted.
    live: Vec<String>,
    next: u64,
}

fn random_key(len: usize) -> anyhow::Result<Vec<u8>> {
    let mut k = vec![0u8; len];
    getrandom::fill(&mut k).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
    Ok(k)
}

/// Tag of the generator's own a=crypto line in an offer.
const OFFER_TAG: u32 = 1;

/// The SDP one client announces (RFC 4566 §5; a=crypto per RFC 4568 §9.1).
fn client_sdp(addr: SocketAddr, ptime_ms: u32, crypto: Option<&Crypto>) -> String {
    let (fam, ip) = match addr.ip() {
        IpAddr::V4(v4) => ("IP4", v4.to_string()),
        IpAddr::V6(v6) => ("IP6", v6.to_string()),
    };
    let proto = if crypto.is_some() {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    };
    let mut s = format!(
        "v=0\r\no=- {port} 1 IN {fam} {ip}\r\ns=ferrelay-load\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
         m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:{ptime_ms}\r\na=sendrecv\r\n",
        port = addr.port()
    );
    if let Some(c) = crypto {
        s.push_str(&format!("a=crypto:{c}\r\n"));
    }
    s
}

/// The relay's media address and, for an SRTP leg, its a=crypto line for `suite`.
fn read_reply(
    reply: &Value,
    relay: IpAddr,
    suite: Option<Suite>,
) -> anyhow::Result<(SocketAddr, Option<Crypto>)> {
    let text = reply
        .get("sdp")
        .and_then(Value::as_str)
        .context("reply without SDP")?;
    let sdp = Sdp::parse(text).map_err(|e| anyhow::anyhow!("relay SDP: {e}"))?;
    let m = sdp.media().first().context("relay SDP without m= line")?;
    let mut addr = m.rtp_addr(&sdp).context("relay SDP without address")?;
    if addr.ip().is_unspecified() {
        addr.set_ip(relay);
    }
    let crypto = match suite {
        None => None,
        Some(s) => Some(
            m.crypto()
                .find(|c| c.suite == s.sdes_name() && c.inline_key().is_some())
                .cloned()
                .with_context(|| format!("relay SDP has no {} line:\n{text}", s.sdes_name()))?,
        ),
    };
    Ok((addr, crypto))
}

fn bind(ip: IpAddr) -> anyhow::Result<UdpSocket> {
    UdpSocket::bind(SocketAddr::new(ip, 0)).context("binding a client socket")
}

impl NgCalls {
    pub fn new(client: NgClient, opts: NgCallOptions) -> NgCalls {
        NgCalls {
            client,
            opts,
            live: Vec::new(),
            next: 0,
        }
    }

    /// Calls set up and not yet deleted.
    pub fn active(&self) -> usize {
        self.live.len()
    }

    /// Offers and answers `n` calls one after the other.
    pub fn setup(&mut self, n: usize) -> anyhow::Result<(Vec<Call>, SetupStats)> {
        let t0 = Instant::now();
        let mut max = Duration::ZERO;
        let mut calls = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            calls.push(self.setup_one()?);
            max = max.max(t.elapsed());
        }
        let seconds = t0.elapsed().as_secs_f64();
        Ok((
            calls,
            SetupStats {
                calls: n,
                seconds,
                calls_per_s: if seconds > 0.0 {
                    n as f64 / seconds
                } else {
                    0.0
                },
                max_ms: max.as_secs_f64() * 1000.0,
            },
        ))
    }

    fn setup_one(&mut self) -> anyhow::Result<Call> {
        self.next += 1;
        let call_id = format!(
            "{}-{}-{}",
            self.opts.call_id_prefix,
            std::process::id(),
            self.next
        );
        let o = self.opts.clone();
        let relay_ip = self.client.relay().ip();
        let (sa, sb) = (bind(o.client_ip)?, bind(o.client_ip)?);
        let suite_name = o.suite.sdes_name();

        // Offer from A, with A's key when A's leg is SRTP.
        let a_key = if o.a_srtp {
            Some(random_key(o.suite.key_len() + o.suite.salt_len())?)
        } else {
            None
        };
        let a_line = a_key
            .as_ref()
            .map(|k| Crypto::new_inline(OFFER_TAG, suite_name, k.clone()));
        let mut offer = vec![
            ("command", Value::str("offer")),
            ("call-id", Value::str(&call_id)),
            ("from-tag", Value::str("load-a")),
            (
                "sdp",
                Value::str(&client_sdp(sa.local_addr()?, o.ptime_ms, a_line.as_ref())),
            ),
        ];
        if o.a_srtp != o.b_srtp {
            let proto = if o.b_srtp { "RTP/SAVP" } else { "RTP/AVP" };
            offer.push(("transport-protocol", Value::str(proto)));
        }
        let r = self.client.call_ok(&request(offer))?;
        self.live.push(call_id.clone());
        let (b_addr, to_b) = read_reply(&r, relay_ip, o.b_srtp.then_some(o.suite))?;

        // Answer from B, echoing the tag of the relay's line it accepts.
        let b_key = if o.b_srtp {
            Some(random_key(o.suite.key_len() + o.suite.salt_len())?)
        } else {
            None
        };
        let b_line = match (&to_b, &b_key) {
            (Some(c), Some(k)) => Some(Crypto::new_inline(c.tag, suite_name, k.clone())),
            _ => None,
        };
        let answer = vec![
            ("command", Value::str("answer")),
            ("call-id", Value::str(&call_id)),
            ("from-tag", Value::str("load-a")),
            ("to-tag", Value::str("load-b")),
            (
                "sdp",
                Value::str(&client_sdp(sb.local_addr()?, o.ptime_ms, b_line.as_ref())),
            ),
        ];
        let r = self.client.call_ok(&request(answer))?;
        let (a_addr, to_a) = read_reply(&r, relay_ip, o.a_srtp.then_some(o.suite))?;
        if let Some(c) = &to_a
            && c.tag != OFFER_TAG
        {
            bail!(
                "relay answered crypto tag {} to an offer of tag {OFFER_TAG}",
                c.tag
            );
        }
        let keys = |own: Option<Vec<u8>>, relay: Option<Crypto>| -> Option<LegKeys> {
            Some(LegKeys {
                suite: o.suite,
                send: own?,
                recv: relay?.inline_key()?.key_salt.clone(),
            })
        };
        Ok(Call {
            addrs: CallAddrs {
                a: a_addr,
                b: b_addr,
            },
            sockets: Some((sa, sb)),
            a_srtp: keys(a_key, to_a),
            b_srtp: keys(b_key, to_b),
        })
    }

    /// Deletes every call set up so far; returns how many the relay refused.
    pub fn teardown(&mut self) -> anyhow::Result<usize> {
        let mut failed = 0;
        for call_id in std::mem::take(&mut self.live) {
            let r = self.client.call(&request(vec![
                ("command", Value::str("delete")),
                ("call-id", Value::str(&call_id)),
                ("from-tag", Value::str("load-a")),
            ]))?;
            if crate::ng::result(&r) != "ok" {
                failed += 1;
            }
        }
        Ok(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_sdp_parses_back() {
        let c = Crypto::new_inline(1, "AES_CM_128_HMAC_SHA1_80", vec![9; 30]);
        let text = client_sdp("127.0.0.1:4000".parse().unwrap(), 20, Some(&c));
        let sdp = Sdp::parse(&text).unwrap();
        let m = &sdp.media()[0];
        assert_eq!(m.rtp_addr(&sdp), Some("127.0.0.1:4000".parse().unwrap()));
        assert!(m.proto().is_srtp());
        assert_eq!(
            m.crypto().next().unwrap().inline_key().unwrap().key_salt,
            vec![9; 30]
        );
        let v6 = client_sdp("[::1]:5000".parse().unwrap(), 20, None);
        assert!(
            v6.contains("c=IN IP6 ::1") && v6.contains("RTP/AVP"),
            "{v6}"
        );
    }

    #[test]
    fn reply_reading() {
        let c = Crypto::new_inline(3, "AES_CM_128_HMAC_SHA1_80", vec![4; 30]);
        let sdp = client_sdp("0.0.0.0:7000".parse().unwrap(), 20, Some(&c));
        let reply = request(vec![
            ("result", Value::str("ok")),
            ("sdp", Value::str(&sdp)),
        ]);
        let relay: IpAddr = [127, 0, 0, 9].into();
        let (addr, line) = read_reply(&reply, relay, Some(Suite::AesCm128HmacSha1_80)).unwrap();
        assert_eq!(addr, "127.0.0.9:7000".parse().unwrap());
        assert_eq!(line.unwrap().tag, 3);
        assert!(read_reply(&reply, relay, Some(Suite::AeadAes128Gcm)).is_err());
        let (_, none) = read_reply(&reply, relay, None).unwrap();
        assert!(none.is_none());
    }
}
