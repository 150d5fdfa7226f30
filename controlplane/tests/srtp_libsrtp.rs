//! End to end through the relay with libsrtp on the far side (issue 4): calls placed
//! by NG on an in-process relay, every SRTP/SRTCP packet a phone sends or receives
//! made or checked by libsrtp (pylibsrtp, through `tests/interop/srtp/oracle.py`),
//! keyed only from the SDP that phone was handed. So a pass proves the relay's
//! SRTP is libsrtp's SRTP, with the keys it announced, per leg.
//!
//! Needs pylibsrtp (see `oracle.rs`); fails without it unless `FERRELAY_SKIP_INTEROP=1`.

mod common;
#[path = "../../tests/interop/srtp/oracle.rs"]
mod oracle;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use ferrelay::ng::Value;
use ferrelay_sdp::{Crypto, Sdp};
use ferrelay_srtp::Suite;
use oracle::{Oracle, hex};
use tokio::net::UdpSocket;

/// RTP packets per direction after the flow is up.
const N: u16 = 40;
/// RTCP packets per direction.
const N_RTCP: usize = 3;

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn srtp_sdp(port: u16, crypto: &str) -> String {
    format!(
        "v=0\r\no=- 1545997027 1 IN IP4 127.0.0.1\r\ns=tester\r\nc=IN IP4 127.0.0.1\r\n\
         t=0 0\r\nm=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:{crypto}\r\n"
    )
}

/// The relay's a=crypto line for `suite` in a reply's SDP: (tag, key||salt).
fn relay_crypto(reply: &Value, suite: Suite) -> (u32, Vec<u8>) {
    let text = reply_sdp(reply);
    let sdp = Sdp::parse(&text).unwrap();
    let c = sdp.media()[0]
        .crypto()
        .find(|c| c.suite == suite.sdes_name())
        .unwrap_or_else(|| panic!("no {} line in {text}", suite.sdes_name()));
    (c.tag, c.inline_key().unwrap().key_salt.clone())
}

/// B's answer from `port`, keyed (tag, suite, key||salt) under the relay's offered tag.
async fn answer_srtp(
    ng: &mut Ng,
    call: &str,
    port: u16,
    (tag, suite, key): (u32, Suite, &[u8]),
) -> Value {
    let line = Crypto::new_inline(tag, suite.sdes_name(), key.to_vec()).to_string();
    let sdp = srtp_sdp(port, &line);
    ng.call(&answer(call, "tagA", "tagB", &sdp, vec![])).await
}

/// Deterministic key||salt for `suite`, distinct per `seed`.
fn key_for(suite: Suite, seed: u8) -> Vec<u8> {
    (0..suite.key_len() + suite.salt_len())
        .map(|i| {
            seed.wrapping_mul(31)
                .wrapping_add((i as u8).wrapping_mul(7))
        })
        .collect()
}

/// One phone as libsrtp sees it: the oracle session that unprotects what the relay
/// sends it (`rx`) and the one that protects what it sends (`tx`); `None` for a
/// plain RTP phone.
#[derive(Debug)]
struct Phone {
    rx: Option<String>,
    tx: Option<String>,
}

impl Phone {
    /// A phone whose SRTP is libsrtp's: sessions `<id>_rx` (keyed with the relay's
    /// key from the SDP this phone got) and `<id>_tx` (keyed with its own key).
    fn libsrtp(o: &mut Oracle, id: &str, suite: Suite, relay_key: &[u8], own_key: &[u8]) -> Phone {
        let name = suite.sdes_name();
        let (rx, tx) = (format!("{id}_rx"), format!("{id}_tx"));
        o.ask(&format!("new {rx} {name} in {}", hex(relay_key)))
            .unwrap();
        o.ask(&format!("new {tx} {name} out {}", hex(own_key)))
            .unwrap();
        Phone {
            rx: Some(rx),
            tx: Some(tx),
        }
    }

    /// What this phone puts on the wire for plaintext `p`.
    fn wire(&self, o: &mut Oracle, op: &str, p: &[u8]) -> Vec<u8> {
        match &self.tx {
            Some(s) => o.ask(&format!("{op} {s} {}", hex(p))).unwrap(),
            None => p.to_vec(),
        }
    }

    /// The plaintext of what the relay delivered to this phone.
    fn read(&self, o: &mut Oracle, op: &str, got: &[u8]) -> Vec<u8> {
        match &self.rx {
            Some(s) => o
                .ask(&format!("{op} {s} {}", hex(got)))
                .unwrap_or_else(|e| panic!("libsrtp {op} {s}: {e}")),
            None => got.to_vec(),
        }
    }
}

async fn recv_in(s: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(wait, s.recv_from(&mut buf))
        .await
        .ok()?
        .unwrap();
    buf.truncate(n);
    Some(buf)
}

/// Media from `src` to `dst` through the relay port `to`: waits for the flow with
/// fresh sequence numbers (SRTP never reuses an index), then sends `N` packets in
/// lock-step and `N_RTCP` RTCP reports, each of which must arrive as exactly the
/// plaintext sent. Then a tampered SRTP packet (if `src` speaks SRTP) must be
/// dropped: the next packet `dst` sees is the good one sent after it.
async fn flow(
    what: &str,
    o: &mut Oracle,
    (src, (s_rtp, s_rtcp)): (&Phone, &(UdpSocket, UdpSocket)),
    (dst, (d_rtp, d_rtcp)): (&Phone, &(UdpSocket, UdpSocket)),
    to: u16,
    ssrc: u32,
) {
    let mut seq = 1u16;
    let mut got = None;
    for _ in 0..20 {
        s_rtp
            .send_to(&src.wire(o, "protect", &rtp(0, seq, ssrc, 0x11)), at(to))
            .await
            .unwrap();
        seq += 1;
        if let Some(g) = recv_in(d_rtp, Duration::from_millis(100)).await {
            got = Some(g);
            break;
        }
    }
    let got = got.unwrap_or_else(|| panic!("{what}: no RTP arrived"));
    let plain = dst.read(o, "unprotect", &got);
    let first = u16::from_be_bytes([plain[2], plain[3]]);
    assert_eq!(plain, rtp(0, first, ssrc, 0x11), "{what}: first packet");

    for k in 0..N {
        let p = rtp(0, seq, ssrc, k as u8);
        let wire = src.wire(o, "protect", &p);
        s_rtp.send_to(&wire, at(to)).await.unwrap();
        let got = recv_in(d_rtp, WAIT)
            .await
            .unwrap_or_else(|| panic!("{what}: seq {seq} lost"));
        if src.tx.is_some() && dst.rx.is_some() {
            assert_ne!(got, wire, "{what}: re-encrypted for the other leg");
        }
        assert_eq!(dst.read(o, "unprotect", &got), p, "{what}: seq {seq}");
        seq += 1;
    }

    for i in 0..N_RTCP {
        let mut sr = rtcp_sr(ssrc);
        sr[19] = i as u8;
        let wire = src.wire(o, "protect_rtcp", &sr);
        let mut got = None;
        // RTCP may need its own flow set up on the first report.
        for _ in 0..if i == 0 { 20 } else { 1 } {
            s_rtcp.send_to(&wire, at(to + 1)).await.unwrap();
            got = recv_in(
                d_rtcp,
                Duration::from_millis(if i == 0 { 100 } else { 2000 }),
            )
            .await;
            if got.is_some() {
                break;
            }
        }
        let got = got.unwrap_or_else(|| panic!("{what}: RTCP {i} lost"));
        assert_eq!(dst.read(o, "unprotect_rtcp", &got), sr, "{what}: RTCP {i}");
    }

    if src.tx.is_none() {
        return;
    }
    // A tampered SRTP packet under a fresh index fails authentication at the relay.
    let mut bad = src.wire(o, "protect", &rtp(0, seq, ssrc, 0xEE));
    bad[20] ^= 0x40;
    s_rtp.send_to(&bad, at(to)).await.unwrap();
    let good = rtp(0, seq + 1, ssrc, 0x77);
    let wire = src.wire(o, "protect", &good);
    s_rtp.send_to(&wire, at(to)).await.unwrap();
    let got = recv_in(d_rtp, WAIT)
        .await
        .expect("good packet after tampered");
    assert_eq!(
        dst.read(o, "unprotect", &got),
        good,
        "{what}: tampered packet dropped"
    );
    // Same for SRTCP: a flipped byte in the encrypted part must not be forwarded.
    let sr = rtcp_sr(ssrc ^ 1);
    let mut bad = src.wire(o, "protect_rtcp", &sr);
    bad[12] ^= 0x01;
    s_rtcp.send_to(&bad, at(to + 1)).await.unwrap();
    let wire = src.wire(o, "protect_rtcp", &rtcp_sr(ssrc));
    s_rtcp.send_to(&wire, at(to + 1)).await.unwrap();
    let got = recv_in(d_rtcp, WAIT)
        .await
        .expect("good RTCP after tampered");
    assert_eq!(
        dst.read(o, "unprotect_rtcp", &got),
        rtcp_sr(ssrc),
        "{what}: tampered SRTCP dropped"
    );
}

/// Runs [`flow`] A -> B through A's relay port, then B -> A through B's.
async fn both_ways(
    what: &str,
    o: &mut Oracle,
    (pa, a, to_a_side): (&Phone, &(UdpSocket, UdpSocket), u16),
    (pb, b, to_b_side): (&Phone, &(UdpSocket, UdpSocket), u16),
    n: u32,
) {
    let ab = format!("{what}: A -> B");
    flow(&ab, o, (pa, a), (pb, b), to_a_side, 0xA0 + n).await;
    let ba = format!("{what}: B -> A");
    flow(&ba, o, (pb, b), (pa, a), to_b_side, 0xB0 + n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_a_to_srtp_b_checked_by_libsrtp() {
    let Some(mut o) = Oracle::start() else {
        return;
    };
    let relay = relay().await;
    let mut ng = Ng::new(relay.ng_udp).await;
    for (n, suite) in [Suite::AesCm128HmacSha1_80, Suite::AeadAes256Gcm]
        .into_iter()
        .enumerate()
    {
        let name = suite.sdes_name();
        let call = format!("libsrtp-plain-{n}");
        let (a, b) = (bind_pair().await, bind_pair().await);
        let (pa, pb) = (
            a.0.local_addr().unwrap().port(),
            b.0.local_addr().unwrap().port(),
        );

        let more = vec![("transport-protocol", Value::str("RTP/SAVP"))];
        let r = ng.call(&offer(&call, "tagA", &sdp(pa, ""), more)).await;
        let to_b_side = media_port(&reply_sdp(&r));
        let (tag, relay_to_b) = relay_crypto(&r, suite);

        let b_key = key_for(suite, 0xB0 + n as u8);
        let r = answer_srtp(&mut ng, &call, pb, (tag, suite, &b_key)).await;
        let back = reply_sdp(&r);
        assert!(!back.contains("a=crypto"), "A is plain: {back}");
        let to_a_side = media_port(&back);

        let pa_ = Phone { rx: None, tx: None };
        let pb_ = Phone::libsrtp(&mut o, &format!("b{n}"), suite, &relay_to_b, &b_key);
        let what = format!("plain A, SRTP B ({name})");
        both_ways(
            &what,
            &mut o,
            (&pa_, &a, to_a_side),
            (&pb_, &b, to_b_side),
            n as u32,
        )
        .await;
    }
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_a_to_srtp_b_with_other_suites_and_keys_checked_by_libsrtp() {
    let Some(mut o) = Oracle::start() else {
        return;
    };
    let relay = relay().await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let pairs = [
        (Suite::AesCm128HmacSha1_80, Suite::AeadAes256Gcm),
        (Suite::AeadAes128Gcm, Suite::AesCm128HmacSha1_32),
    ];
    for (n, (a_suite, b_suite)) in pairs.into_iter().enumerate() {
        let (an, bn) = (a_suite.sdes_name(), b_suite.sdes_name());
        let call = format!("libsrtp-srtp-{n}");
        let (a, b) = (bind_pair().await, bind_pair().await);
        let (pa, pb) = (
            a.0.local_addr().unwrap().port(),
            b.0.local_addr().unwrap().port(),
        );

        let a_key = key_for(a_suite, 0xA0 + n as u8);
        let a_line = Crypto::new_inline(1, an, a_key.clone()).to_string();
        let r = ng
            .call(&offer(&call, "tagA", &srtp_sdp(pa, &a_line), vec![]))
            .await;
        let to_b_side = media_port(&reply_sdp(&r));
        let (tag, relay_to_b) = relay_crypto(&r, b_suite);
        assert_ne!(
            relay_crypto(&r, a_suite).1,
            a_key,
            "A's key is not passed on"
        );

        let b_key = key_for(b_suite, 0xB0 + n as u8);
        let r = answer_srtp(&mut ng, &call, pb, (tag, b_suite, &b_key)).await;
        let to_a_side = media_port(&reply_sdp(&r));
        let (a_tag, relay_to_a) = relay_crypto(&r, a_suite);
        assert_eq!(a_tag, 1, "the answer keeps A's tag");
        assert_ne!(relay_to_a, b_key, "B's key is not passed on");

        let pa_ = Phone::libsrtp(&mut o, &format!("a{n}"), a_suite, &relay_to_a, &a_key);
        let pb_ = Phone::libsrtp(&mut o, &format!("b{n}"), b_suite, &relay_to_b, &b_key);
        let what = format!("SRTP A ({an}), SRTP B ({bn})");
        both_ways(
            &what,
            &mut o,
            (&pa_, &a, to_a_side),
            (&pb_, &b, to_b_side),
            n as u32,
        )
        .await;
    }
    relay.shutdown().await;
}
