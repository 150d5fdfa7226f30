//! The NG protocol against the in-process relay: golden offer/answer transcripts
//! (ports masked, as rtpengine's `t/auto-daemon-tests.pl` does), malformed
//! requests, TCP framing, and retransmissions answered from the cookie cache.

mod common;

use common::*;
use ferrelay::config::InterfaceSpec;
use ferrelay::ng::Value;
use ferrelay::ng::bencode::dict;

/// Replaces the m= and a=rtcp ports with PORT so transcripts are stable.
fn mask(sdp: &str) -> String {
    sdp.split_inclusive("\r\n")
        .map(|l| {
            if let Some(rest) = l.strip_prefix("m=") {
                let mut f: Vec<&str> = rest.splitn(3, ' ').collect();
                f[1] = "PORT";
                format!("m={}", f.join(" "))
            } else if let Some(rest) = l.strip_prefix("a=rtcp:") {
                let tail = rest.trim_start_matches(|c: char| c.is_ascii_digit());
                format!("a=rtcp:PORT{tail}")
            } else {
                l.to_owned()
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_offer_answer_delete() {
    let relay = relay_with(|c| {
        c.interfaces = vec![InterfaceSpec::parse("pub/127.0.0.1!203.0.113.9").unwrap()];
    })
    .await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let offer_sdp = "v=0\r\n\
        o=- 1545997027 1 IN IP4 198.51.100.1\r\n\
        s=tester\r\n\
        c=IN IP4 198.51.100.1\r\n\
        t=0 0\r\n\
        m=audio 2000 RTP/AVP 0 101\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=ice-ufrag:abcd\r\n\
        a=candidate:1 1 UDP 2130706431 198.51.100.1 2000 typ host\r\n\
        a=sendrecv\r\n";
    let r = ng
        .call(&offer(
            "golden",
            "from1",
            offer_sdp,
            vec![
                ("replace", list(&["origin"])),
                ("unknown-key", Value::Int(5)),
            ],
        ))
        .await;
    assert_eq!(
        mask(&reply_sdp(&r)),
        "v=0\r\n\
        o=- 1545997027 1 IN IP4 203.0.113.9\r\n\
        s=tester\r\n\
        c=IN IP4 203.0.113.9\r\n\
        t=0 0\r\n\
        m=audio PORT RTP/AVP 0 101\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=sendrecv\r\n\
        a=rtcp:PORT\r\n"
    );
    let answer_sdp = "v=0\r\n\
        o=- 9 9 IN IP4 192.0.2.5\r\n\
        s=-\r\n\
        c=IN IP4 192.0.2.5\r\n\
        t=0 0\r\n\
        m=audio 3000 RTP/AVP 0\r\n\
        a=sendrecv\r\n";
    let r = ng
        .call(&answer("golden", "from1", "to1", answer_sdp, vec![]))
        .await;
    assert_eq!(
        mask(&reply_sdp(&r)),
        "v=0\r\n\
        o=- 9 9 IN IP4 192.0.2.5\r\n\
        s=-\r\n\
        c=IN IP4 203.0.113.9\r\n\
        t=0 0\r\n\
        m=audio PORT RTP/AVP 0\r\n\
        a=sendrecv\r\n\
        a=rtcp:PORT\r\n"
    );
    let d = ng.call(&cmd("delete", "golden")).await;
    assert_eq!(result(&d), "ok");
    let tags = d.get("tags").unwrap();
    assert!(
        tags.get("from1").is_some() && tags.get("to1").is_some(),
        "{d:?}"
    );
    assert!(d.get("totals").is_some());
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_error_replies() {
    let relay = relay().await;
    let ng = Ng::new(relay.ng_udp).await;
    let cases: &[(&[u8], &str)] = &[
        (
            b"c1 d7:command4:ping",
            "Failed to decode bencode: truncated bencode",
        ),
        (b"c2 i5e", "Message is not a dictionary"),
        (b"c3 d7:command7:explodee", "Unrecognized command"),
        (
            b"c4 d7:command5:offer8:from-tag1:ae",
            "No call-id in message",
        ),
        (
            b"c5 d7:command5:offer7:call-id1:x8:from-tag1:a3:sdp7:garbagee",
            "Failed to parse SDP",
        ),
        (
            b"c6 d7:command6:answer7:call-id4:nonee",
            "No from-tag in message",
        ),
        (b"c7 d7:command5:query7:call-id4:nonee", "Unknown call-id"),
        (b"c8 d7:commandi3ee", "'command' must be a string"),
    ];
    for (msg, reason) in cases {
        let reply = ng.raw(msg).await;
        let cookie = &msg[..3];
        assert_eq!(&reply[..3], cookie);
        let v = Value::decode(&reply[3..]).unwrap();
        assert_eq!(result(&v), "error", "{v:?}");
        let got = v.get("error-reason").and_then(Value::as_str).unwrap();
        assert!(got.starts_with(reason), "{got} vs {reason}");
    }
    // Still alive.
    assert_eq!(
        ng.raw(b"ok d7:command4:pinge").await,
        b"ok d6:result4:ponge"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_carries_split_and_back_to_back_messages() {
    let relay = relay().await;
    let r = tcp_call(
        relay.ng_tcp,
        "tc1",
        &offer("tcp", "A", &sdp(5000, ""), vec![]),
    )
    .await;
    let p = media_port(&reply_sdp(&r));
    assert!(p > 0);
    let r = tcp_call(
        relay.ng_tcp,
        "tc2",
        &dict([("command", Value::str("ping"))]),
    )
    .await;
    assert_eq!(result(&r), "pong");

    // Two messages in one write, each answered in order.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(relay.ng_tcp).await.unwrap();
    s.write_all(b"a1 d7:command4:pingea2 d7:command4:pinge")
        .await
        .unwrap();
    let want = b"a1 d6:result4:pongea2 d6:result4:ponge";
    let mut got = Vec::new();
    let mut chunk = [0u8; 256];
    while got.len() < want.len() {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(got, want);
    // A broken stream gets an error for its cookie and is closed.
    s.write_all(b"zz x").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.starts_with(b"zz d6:result5:error"), "{rest:?}");
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmitted_cookie_gets_identical_reply_once_executed() {
    let relay = relay().await;
    let ng = Ng::new(relay.ng_udp).await;
    let mut msg = b"same ".to_vec();
    msg.extend(offer("rt", "A", &sdp(5000, ""), vec![]).encode());
    let first = ng.raw(&msg).await;
    let shards = relay.controller();
    let executed = shards.sum(|c| c.executed);
    let ports = shards.lock(0).sessions.ports_in_use();
    let second = ng.raw(&msg).await;
    assert_eq!(first, second, "identical bytes");
    assert_eq!(shards.sum(|c| c.executed), executed, "not executed again");
    assert_eq!(
        shards.lock(0).sessions.ports_in_use(),
        ports,
        "no second allocation"
    );
    relay.shutdown().await;
}

/// Requests that arrive together are served as one batch and the workers are woken
/// once after it. With the relay's stats tick an hour away, what else wakes a worker
/// is the event pump after the worker's own 1 s stats turn, so media through the
/// calls a burst set up must flow within 300 ms. A missing batch wake fails this
/// whenever no stats turn falls in that window (once in four tries without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_requests_is_answered_and_its_flows_installed() {
    let relay = relay_ticking(std::time::Duration::from_secs(3600), |_| {}).await;
    let client = bind().await;
    let calls = 8;
    let (a, b) = (bind().await, bind().await);
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let mut burst = Vec::new();
    for i in 0..calls {
        let id = format!("burst-{i}");
        let mut o = format!("o{i} ").into_bytes();
        o.extend(offer(&id, "A", &sdp(pa, ""), vec![]).encode());
        let mut an = format!("a{i} ").into_bytes();
        an.extend(answer(&id, "A", "B", &sdp(pb, ""), vec![]).encode());
        burst.push(o);
        burst.push(an);
    }
    // Everything is sent before any reply is read, so the server finds the
    // datagrams queued together.
    for m in &burst {
        client.send_to(m, relay.ng_udp).await.unwrap();
    }
    let mut answer_port = None;
    for _ in 0..burst.len() {
        let (reply, _) = recv(&client).await;
        let text = String::from_utf8_lossy(&reply);
        assert!(text.contains("6:result2:ok"), "{text}");
        // The last call's answer reply carries the port the caller sends to.
        if let Some(body) = reply.strip_prefix(format!("a{} ", calls - 1).as_bytes()) {
            answer_port = Some(media_port(&reply_sdp(&Value::decode(body).unwrap())));
        }
    }
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], answer_port.expect("answer reply")));
    let pkt = rtp(0, 1, 0x1234, 7);
    let mut buf = vec![0u8; 2048];
    let mut got = None;
    for _ in 0..15 {
        a.send_to(&pkt, to).await.unwrap();
        let wait = std::time::Duration::from_millis(20);
        if let Ok(r) = tokio::time::timeout(wait, b.recv_from(&mut buf)).await {
            got = Some(buf[..r.unwrap().0].to_vec());
            break;
        }
    }
    let got = got.expect("media through a call set up by the burst within 300 ms");
    assert_eq!(&got[12..], &pkt[12..], "payload forwarded");
    relay.shutdown().await;
}

/// Several NG threads and shards under concurrent clients: every request of
/// every client is answered `ok`, the calls left up are all listed and counted
/// once across the shards, the ended calls' ports come back (their slots reused
/// by other shards' calls), and media flows through a call placed in the rush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_over_several_ng_threads_and_shards() {
    let relay = relay_with(|c| {
        c.ng_threads = 3;
        c.workers = 2;
        // Ports come back at once, so the rush reuses them (and their flow slots).
        c.delete_delay = std::time::Duration::ZERO;
    })
    .await;
    let (clients, cycles, kept) = (6usize, 25usize, 2usize);
    let (a, b) = (bind().await, bind().await);
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let mut tasks = Vec::new();
    for k in 0..clients {
        let to = relay.ng_udp;
        tasks.push(tokio::spawn(async move {
            let mut ng = Ng::new(to).await;
            for i in 0..cycles + kept {
                let id = format!("rush-{k}-{i}");
                let r = ng.call(&offer(&id, "A", &sdp(pa, ""), vec![])).await;
                assert_eq!(result(&r), "ok", "{r:?}");
                let r = ng.call(&answer(&id, "A", "B", &sdp(pb, ""), vec![])).await;
                assert_eq!(result(&r), "ok", "{r:?}");
                // The first calls of each client stay up; the rest end.
                if i < kept {
                    continue;
                }
                let r = ng.call(&cmd("delete", &id)).await;
                assert_eq!(result(&r), "ok", "{r:?}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut ng = Ng::new(relay.ng_udp).await;
    let mut listed = listed_calls(&mut ng, 1000).await;
    listed.sort();
    let mut want: Vec<String> = (0..clients)
        .flat_map(|k| (0..kept).map(move |i| format!("rush-{k}-{i}")))
        .collect();
    want.sort();
    assert_eq!(listed, want);
    let st = ng
        .call(&dict([("command", Value::str("statistics"))]))
        .await;
    let stat = |part: &str, key: &str| {
        st.get("statistics")
            .and_then(|s| s.get(part))
            .and_then(|p| p.get(key))
            .and_then(Value::as_int)
    };
    let all = (clients * (cycles + kept)) as i64;
    assert_eq!(stat("totalstatistics", "managedsessions"), Some(all));
    assert_eq!(
        stat("totalstatistics", "regularterminatedsessions"),
        Some((clients * cycles) as i64)
    );
    assert_eq!(
        stat("currentstatistics", "sessionstotal"),
        Some((clients * kept) as i64)
    );
    // Only the calls still up hold ports (two pairs each); the others' came back.
    let mut in_use = None;
    for _ in 0..20 {
        let st = ng
            .call(&dict([("command", Value::str("statistics"))]))
            .await;
        in_use = st
            .get("statistics")
            .and_then(|s| s.get("totalstatistics"))
            .and_then(|t| t.get("portsinuse"))
            .and_then(Value::as_int);
        if in_use == Some((clients * kept * 4) as i64) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(in_use, Some((clients * kept * 4) as i64));

    // Media through a call placed in the rush (its offer told B where to send).
    let q = ng.call(&cmd("query", "rush-3-1")).await;
    assert_eq!(result(&q), "ok", "{q:?}");
    let r = ng
        .call(&answer("rush-3-1", "A", "B", &sdp(pb, ""), vec![]))
        .await;
    let to_a = media_port(&reply_sdp(&r));
    let pkt = rtp(0, 1, 0x5151, 9);
    let at = std::net::SocketAddr::from(([127, 0, 0, 1], to_a));
    assert_eq!(send_until(&a, at, &pkt, &b).await.0, pkt);
    // The worker's counters reach the call's shard.
    let mut packets = 0;
    for _ in 0..20 {
        let q = ng.call(&cmd("query", "rush-3-1")).await;
        packets = q
            .get("totals")
            .and_then(|t| t.get("RTP"))
            .and_then(|r| r.get("packets"))
            .and_then(Value::as_int)
            .unwrap_or(0);
        if packets > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(packets > 0, "the relayed packets are counted on the call");
    relay.shutdown().await;
}
