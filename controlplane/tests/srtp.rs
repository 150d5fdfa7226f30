//! End to end over loopback with SDES: NG offer/answer to an in-process relay, then
//! real RTP/SRTP through its ports. Each phone keys its own `SrtpContext` only from
//! the SDP it was handed, so a passing test proves the relay announced the keys it
//! really uses, and that each leg has its own.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use ferrelay::ng::Value;
use ferrelay_sdp::{Crypto, Sdp};
use ferrelay_srtp::{MasterKey, SrtpContext, SrtpParams, Suite};
use tokio::net::UdpSocket;

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn srtp_sdp(port: u16, proto: &str, crypto: &str) -> String {
    format!(
        "v=0\r\no=- 1545997027 1 IN IP4 127.0.0.1\r\ns=tester\r\nc=IN IP4 127.0.0.1\r\n\
         t=0 0\r\nm=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:{crypto}\r\n"
    )
}

fn context(suite: Suite, key_salt: &[u8]) -> SrtpContext {
    let key = MasterKey::from_concatenated(suite, key_salt).unwrap();
    SrtpContext::new(&SrtpParams {
        suite,
        key,
        replay_window: 128,
    })
    .unwrap()
}

/// The relay's a=crypto line for `suite` in a reply's SDP: (tag, key||salt).
fn relay_line(reply: &Value, suite: Suite) -> (u32, Vec<u8>) {
    let sdp = Sdp::parse(&reply_sdp(reply)).unwrap();
    let c = sdp.media()[0]
        .crypto()
        .find(|c| c.suite == suite.sdes_name())
        .unwrap_or_else(|| panic!("no {} line in {}", suite.sdes_name(), reply_sdp(reply)));
    (c.tag, c.inline_key().unwrap().key_salt.clone())
}

/// Sends packet `make(seq)` with a new sequence number each try (SRTP refuses
/// to send or accept one index twice) until one arrives at `sink`; returns the
/// sequence number sent last and what arrived.
async fn send_until_seq(
    from: &UdpSocket,
    to: SocketAddr,
    first_seq: u16,
    mut make: impl FnMut(u16) -> Vec<u8>,
    sink: &UdpSocket,
) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    for k in 0..20 {
        from.send_to(&make(first_seq + k), to).await.unwrap();
        if let Ok(r) =
            tokio::time::timeout(Duration::from_millis(100), sink.recv_from(&mut buf)).await
        {
            let (n, _) = r.unwrap();
            return buf[..n].to_vec();
        }
    }
    panic!("nothing arrived at {:?}", sink.local_addr());
}

/// The plain RTP packet whose sequence number the (possibly protected) `got` carries.
fn plain_for(got: &[u8], ssrc: u32, fill: u8) -> Vec<u8> {
    rtp(0, u16::from_be_bytes([got[2], got[3]]), ssrc, fill)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_offerer_and_srtp_answerer() {
    let relay = relay().await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let ((a, a_rtcp), (b, b_rtcp)) = (bind_pair().await, bind_pair().await);
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let suite = Suite::AesCm128HmacSha1_80;

    let more = vec![("transport-protocol", Value::str("RTP/SAVP"))];
    let r = ng.call(&offer("srtp-1", "tagA", &sdp(pa, ""), more)).await;
    assert_eq!(result(&r), "ok", "{r:?}");
    assert!(reply_sdp(&r).contains("RTP/SAVP"));
    let to_b_side = media_port(&reply_sdp(&r));
    let (tag, relay_to_b) = relay_line(&r, suite);
    let mut b_rx = context(suite, &relay_to_b);

    let b_key = [0x5Bu8; 30];
    let b_line = Crypto::new_inline(tag, suite.sdes_name(), b_key.to_vec()).to_string();
    let r = ng
        .call(&answer(
            "srtp-1",
            "tagA",
            "tagB",
            &srtp_sdp(pb, "RTP/SAVP", &b_line),
            vec![],
        ))
        .await;
    assert_eq!(result(&r), "ok", "{r:?}");
    let back = reply_sdp(&r);
    assert!(
        back.contains("RTP/AVP") && !back.contains("a=crypto"),
        "{back}"
    );
    let to_a_side = media_port(&back);
    let mut b_tx = context(suite, &b_key);

    // A sends plain; B gets SRTP under the key the offer reply gave it.
    let mut got = send_until_seq(&a, at(to_a_side), 1, |s| rtp(0, s, 0xA, 0xAA), &b).await;
    assert_eq!(got.len(), 172 + suite.rtp_overhead(), "SRTP toward B");
    let want = plain_for(&got, 0xA, 0xAA);
    assert_ne!(&got[12..172], &want[12..], "the payload is encrypted");
    let n = got.len();
    let n = b_rx.unprotect_rtp(&mut got, n).expect("B decrypts");
    assert_eq!(&got[..n], &want[..]);

    // B sends SRTP with its own key; A gets plain.
    let got = send_until_seq(
        &b,
        at(to_b_side),
        100,
        |s| {
            let mut p = rtp(0, s, 0xB, 0xBB);
            p.resize(172 + 64, 0);
            let n = b_tx.protect_rtp(&mut p, 172).unwrap();
            p.truncate(n);
            p
        },
        &a,
    )
    .await;
    assert_eq!(got, plain_for(&got, 0xB, 0xBB), "plain toward A");

    // RTCP: SRTCP from B under its key arrives plain at A, and A's plain RTCP
    // arrives as SRTCP that B authenticates with the relay's key.
    let sr = rtcp_sr(0xB);
    let got = send_until_seq(
        &b_rtcp,
        at(to_b_side + 1),
        0,
        |_| {
            let mut p = sr.clone();
            p.resize(sr.len() + 64, 0);
            let n = b_tx.protect_rtcp(&mut p, sr.len()).unwrap();
            p.truncate(n);
            p
        },
        &a_rtcp,
    )
    .await;
    assert_eq!(got, sr, "plain RTCP toward A");
    let sr = rtcp_sr(0xA);
    let mut got = send_until_seq(&a_rtcp, at(to_a_side + 1), 0, |_| sr.clone(), &b_rtcp).await;
    assert_eq!(
        got.len(),
        sr.len() + suite.rtcp_overhead(),
        "SRTCP toward B"
    );
    let n = got.len();
    let n = b_rx
        .unprotect_rtcp(&mut got, n)
        .expect("B authenticates SRTCP");
    assert_eq!(&got[..n], &sr[..]);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_both_sides_with_their_own_keys() {
    let relay = relay().await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let (a, b) = (bind().await, bind().await);
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let a_suite = Suite::AesCm128HmacSha1_80;
    let b_suite = Suite::AeadAes128Gcm;

    let a_key = [0x1Au8; 30];
    let a_line = Crypto::new_inline(1, a_suite.sdes_name(), a_key.to_vec()).to_string();
    let r = ng
        .call(&offer(
            "srtp-2",
            "tagA",
            &srtp_sdp(pa, "RTP/SAVP", &a_line),
            vec![],
        ))
        .await;
    assert_eq!(result(&r), "ok", "{r:?}");
    let to_b_side = media_port(&reply_sdp(&r));
    let (tag, relay_to_b) = relay_line(&r, b_suite);
    assert_ne!(relay_line(&r, a_suite).1, a_key, "A's key is not passed on");
    let mut b_rx = context(b_suite, &relay_to_b);

    let b_key = [0x2Bu8; 28];
    let b_line = Crypto::new_inline(tag, b_suite.sdes_name(), b_key.to_vec()).to_string();
    let r = ng
        .call(&answer(
            "srtp-2",
            "tagA",
            "tagB",
            &srtp_sdp(pb, "RTP/SAVP", &b_line),
            vec![],
        ))
        .await;
    assert_eq!(result(&r), "ok", "{r:?}");
    let to_a_side = media_port(&reply_sdp(&r));
    let (a_tag, relay_to_a) = relay_line(&r, a_suite);
    assert_eq!(a_tag, 1);
    assert_ne!(relay_to_a, b_key[..], "B's key is not passed on");
    let mut a_rx = context(a_suite, &relay_to_a);
    let mut a_tx = context(a_suite, &a_key);
    let mut b_tx = context(b_suite, &b_key);

    let protect = |ctx: &mut SrtpContext, s: u16, ssrc: u32, fill: u8| {
        let mut p = rtp(0, s, ssrc, fill);
        p.resize(172 + 64, 0);
        let n = ctx.protect_rtp(&mut p, 172).unwrap();
        p.truncate(n);
        p
    };
    let mut got = send_until_seq(
        &a,
        at(to_a_side),
        1,
        |s| protect(&mut a_tx, s, 0xA, 0xAA),
        &b,
    )
    .await;
    assert_eq!(
        got.len(),
        172 + b_suite.rtp_overhead(),
        "re-encrypted for B"
    );
    let n = got.len();
    let n = b_rx.unprotect_rtp(&mut got, n).expect("B decrypts");
    assert_eq!(&got[..n], &plain_for(&got, 0xA, 0xAA)[..]);

    let mut got = send_until_seq(
        &b,
        at(to_b_side),
        500,
        |s| protect(&mut b_tx, s, 0xB, 0xBB),
        &a,
    )
    .await;
    assert_eq!(
        got.len(),
        172 + a_suite.rtp_overhead(),
        "re-encrypted for A"
    );
    let n = got.len();
    let n = a_rx.unprotect_rtp(&mut got, n).expect("A decrypts");
    assert_eq!(&got[..n], &plain_for(&got, 0xB, 0xBB)[..]);
    relay.shutdown().await;
}
