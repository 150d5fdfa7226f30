//! End to end over loopback: NG offer/answer to an in-process relay, then real RTP
//! and RTCP through the relay's ports, checked byte for byte.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use ferrelay::ng::Value;

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_flows_both_ways_through_the_offered_ports() {
    // A poll far slower than the test: counters in the query come from the
    // query's own fetch.
    let relay = relay_ticking(Duration::from_secs(30), |_| {}).await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let a = bind().await;
    let b = bind().await;
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );

    let r = ng
        .call(&offer("call-1", "tagA", &sdp(pa, ""), vec![]))
        .await;
    // Offer reply: where the answerer (B) sends.
    let to_b_side = media_port(&reply_sdp(&r));
    let r = ng
        .call(&answer("call-1", "tagA", "tagB", &sdp(pb, ""), vec![]))
        .await;
    // Answer reply: where the offerer (A) sends.
    let to_a_side = media_port(&reply_sdp(&r));
    assert_ne!(to_a_side, to_b_side);

    let pkt = rtp(0, 1, 0x1111_1111, 0xAA);
    let (got, src) = send_until(&a, at(to_a_side), &pkt, &b).await;
    assert_eq!(got, pkt, "A->B bytes unchanged");
    assert_eq!(src, at(to_b_side), "B sees the relay's B-facing port");

    let pkt = rtp(0, 7, 0x2222_2222, 0xBB);
    let (got, src) = send_until(&b, at(to_b_side), &pkt, &a).await;
    assert_eq!(got, pkt, "B->A bytes unchanged");
    assert_eq!(src, at(to_a_side));

    // The query fetches the worker's counters before replying.
    let q = ng.call(&cmd("query", "call-1")).await;
    assert_eq!(result(&q), "ok", "{q:?}");
    let totals = q.get("totals").unwrap().get("RTP").unwrap();
    assert!(
        totals.get("packets").and_then(Value::as_int).unwrap() >= 2,
        "{q:?}"
    );
    let tag_a = q.get("tags").unwrap().get("tagA").unwrap();
    let stream = &tag_a.get("medias").unwrap().as_list().unwrap()[0]
        .get("streams")
        .unwrap()
        .as_list()
        .unwrap()[0];
    assert_eq!(
        stream.get("local port").and_then(Value::as_int),
        Some(i64::from(to_a_side))
    );

    let d = ng.call(&cmd("delete", "call-1")).await;
    assert_eq!(result(&d), "ok");
    // Within delete-delay (30 s by default) the call is still there, as in rtpengine.
    let q = ng.call(&cmd("query", "call-1")).await;
    assert_eq!(result(&q), "ok");
    relay.shutdown().await;
}

/// rtpengine's delete-delay: after `delete` media is still relayed for the delay,
/// then the flows go, the ports are closed and the call is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_for_delete_delay_then_stops() {
    let relay = relay_ticking(Duration::from_millis(50), |c| {
        c.delete_delay = Duration::from_secs(1);
    })
    .await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let (a, b) = (bind().await, bind().await);
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let r = ng.call(&offer("dd", "A", &sdp(pa, ""), vec![])).await;
    let to_b_side = media_port(&reply_sdp(&r));
    let r = ng.call(&answer("dd", "A", "B", &sdp(pb, ""), vec![])).await;
    let to_a_side = media_port(&reply_sdp(&r));
    let pkt = rtp(0, 1, 0x0D0D_0001, 1);
    send_until(&a, at(to_a_side), &pkt, &b).await;

    let deleted = std::time::Instant::now();
    assert_eq!(result(&ng.call(&cmd("delete", "dd")).await), "ok");
    // Still relayed in both directions after the delete.
    let pkt = rtp(0, 2, 0x0D0D_0001, 2);
    let (got, _) = send_until(&a, at(to_a_side), &pkt, &b).await;
    assert_eq!(got, pkt);
    let pkt = rtp(0, 3, 0x0D0D_0002, 3);
    let (got, _) = send_until(&b, at(to_b_side), &pkt, &a).await;
    assert_eq!(got, pkt);
    assert!(
        deleted.elapsed() < Duration::from_secs(1),
        "the checks above ran within the delay"
    );
    assert_eq!(result(&ng.call(&cmd("query", "dd")).await), "ok");

    // After the delay (plus a tick) the call is gone and nothing is relayed.
    tokio::time::sleep(Duration::from_millis(1300).saturating_sub(deleted.elapsed())).await;
    assert_eq!(result(&ng.call(&cmd("query", "dd")).await), "error");
    for seq in 10..15 {
        a.send_to(&rtp(0, seq, 0x0D0D_0001, 9), at(to_a_side))
            .await
            .unwrap();
    }
    let mut buf = [0u8; 1500];
    let late = tokio::time::timeout(Duration::from_millis(300), b.recv_from(&mut buf)).await;
    assert!(late.is_err(), "nothing relayed after delete-delay");
    // The ports went back to the pool with their sockets kept by the worker (the
    // datagrams above were drained by it): once they have rested, the next call
    // gets them and relays.
    tokio::time::sleep(ferrelay::session::ports::PARK_REST).await;
    let (c, d) = (bind().await, bind().await);
    let (pc, pd) = (
        c.local_addr().unwrap().port(),
        d.local_addr().unwrap().port(),
    );
    let r = ng.call(&offer("dd2", "C", &sdp(pc, ""), vec![])).await;
    let to_d_side = media_port(&reply_sdp(&r));
    let r = ng
        .call(&answer("dd2", "C", "D", &sdp(pd, ""), vec![]))
        .await;
    let to_c_side = media_port(&reply_sdp(&r));
    assert_eq!(
        (to_c_side, to_d_side),
        (to_a_side, to_b_side),
        "ports reused"
    );
    let pkt = rtp(0, 20, 0x0D0D_0003, 20);
    let (got, _) = send_until(&c, at(to_c_side), &pkt, &d).await;
    assert_eq!(got, pkt);
    let pkt = rtp(0, 21, 0x0D0D_0004, 21);
    let (got, _) = send_until(&d, at(to_d_side), &pkt, &c).await;
    assert_eq!(got, pkt);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latches_to_the_real_source_behind_nat() {
    let relay = relay().await;
    let mut ng = Ng::new(relay.ng_udp).await;
    // A signals one port but really sends from another (a NAT rewrote it).
    let a_signalled = bind().await;
    let a_real = bind().await;
    let b = bind().await;
    let ps = a_signalled.local_addr().unwrap().port();
    let pb = b.local_addr().unwrap().port();
    let r = ng.call(&offer("nat", "A", &sdp(ps, ""), vec![])).await;
    let to_b_side = media_port(&reply_sdp(&r));
    let r = ng
        .call(&answer("nat", "A", "B", &sdp(pb, ""), vec![]))
        .await;
    let to_a_side = media_port(&reply_sdp(&r));

    let pkt = rtp(0, 1, 0xABCD_0001, 1);
    let (got, _) = send_until(&a_real, at(to_a_side), &pkt, &b).await;
    assert_eq!(got, pkt);
    // B's media now goes to where A really is, not where A said.
    let back = rtp(0, 2, 0xABCD_0002, 2);
    let (got, src) = send_until(&b, at(to_b_side), &back, &a_real).await;
    assert_eq!(got, back);
    assert_eq!(src, at(to_a_side));
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), a_signalled.recv_from(&mut buf))
            .await
            .is_err(),
        "nothing goes to the signalled address once latched"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_reinvite_keep_ports_and_media() {
    let relay = relay().await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let a = bind().await;
    let b = bind().await;
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let r = ng.call(&offer("hold", "A", &sdp(pa, ""), vec![])).await;
    let p_b = media_port(&reply_sdp(&r));
    let r = ng
        .call(&answer("hold", "A", "B", &sdp(pb, ""), vec![]))
        .await;
    let p_a = media_port(&reply_sdp(&r));

    // Hold: re-offer with a=sendonly, then the answer with recvonly.
    let r = ng
        .call(&offer(
            "hold",
            "A",
            &sdp(pa, "a=sendonly\r\n"),
            vec![("to-tag", Value::str("B"))],
        ))
        .await;
    let held = reply_sdp(&r);
    assert_eq!(media_port(&held), p_b, "re-offer keeps the port");
    assert!(held.contains("a=sendonly"));
    let r = ng
        .call(&answer(
            "hold",
            "A",
            "B",
            &sdp(pb, "a=recvonly\r\n"),
            vec![],
        ))
        .await;
    assert_eq!(media_port(&reply_sdp(&r)), p_a);
    // Resume.
    let r = ng
        .call(&offer(
            "hold",
            "A",
            &sdp(pa, "a=sendrecv\r\n"),
            vec![("to-tag", Value::str("B"))],
        ))
        .await;
    assert_eq!(media_port(&reply_sdp(&r)), p_b);
    let r = ng
        .call(&answer("hold", "A", "B", &sdp(pb, ""), vec![]))
        .await;
    assert_eq!(media_port(&reply_sdp(&r)), p_a);
    let pkt = rtp(8, 100, 77, 0x5A);
    let (got, _) = send_until(&a, at(p_a), &pkt, &b).await;
    assert_eq!(got, pkt);
    let l = ng
        .call(&ferrelay::ng::bencode::dict([(
            "command",
            Value::str("list"),
        )]))
        .await;
    assert_eq!(
        l.get("calls").and_then(Value::as_list).map(<[_]>::len),
        Some(1)
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtcp_mux_on_one_side_demuxed_on_the_other() {
    let relay = relay().await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let a = bind().await; // muxed: RTP and RTCP on one port
    let (b_rtp, b_rtcp) = bind_pair().await;
    let pa = a.local_addr().unwrap().port();
    let pb = b_rtp.local_addr().unwrap().port();
    let r = ng
        .call(&offer(
            "mux",
            "A",
            &sdp(pa, "a=rtcp-mux\r\n"),
            vec![("rtcp-mux", list(&["demux"]))],
        ))
        .await;
    let out = reply_sdp(&r);
    assert!(
        !out.contains("a=rtcp-mux"),
        "B is offered plain RTCP: {out}"
    );
    let p_b = media_port(&out);
    assert!(out.contains(&format!("a=rtcp:{}", p_b + 1)));
    let r = ng
        .call(&answer("mux", "A", "B", &sdp(pb, ""), vec![]))
        .await;
    let out = reply_sdp(&r);
    let p_a = media_port(&out);
    assert!(out.contains("a=rtcp-mux"), "A's mux is accepted: {out}");

    // RTP from A's single port reaches B's RTP port ...
    let pkt = rtp(0, 1, 9, 1);
    let (got, _) = send_until(&a, at(p_a), &pkt, &b_rtp).await;
    assert_eq!(got, pkt);
    // ... and RTCP on the same port of A's reaches B's RTCP port, from the relay's.
    let sr = rtcp_sr(9);
    let (got, src) = send_until(&a, at(p_a), &sr, &b_rtcp).await;
    assert_eq!(got, sr);
    assert_eq!(src, at(p_b + 1));
    // B's RTCP from its RTCP port goes back muxed onto A's one port.
    let sr_b = rtcp_sr(10);
    let (got, src) = loop {
        let (got, src) = send_until(&b_rtcp, at(p_b + 1), &sr_b, &a).await;
        if got == sr_b {
            break (got, src);
        }
    };
    assert_eq!(got, sr_b);
    assert_eq!(src, at(p_a));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_offer_expires() {
    let relay = relay_with(|c| c.offer_timeout = Duration::from_secs(1)).await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let r = ng.call(&offer("late", "A", &sdp(4000, ""), vec![])).await;
    assert_eq!(result(&r), "ok");
    assert_eq!(result(&ng.call(&cmd("query", "late")).await), "ok");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let q = ng.call(&cmd("query", "late")).await;
    assert_eq!(
        q.get("error-reason").and_then(Value::as_str),
        Some("Unknown call-id")
    );
    let s = ng
        .call(&ferrelay::ng::bencode::dict([(
            "command",
            Value::str("statistics"),
        )]))
        .await;
    let t = s.get("statistics").unwrap().get("totalstatistics").unwrap();
    assert_eq!(
        t.get("offertimeoutsessions").and_then(Value::as_int),
        Some(1)
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_every_port() {
    let relay = relay_with(|c| (c.port_min, c.port_max) = (45_900, 45_999)).await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let r = ng.call(&offer("s", "A", &sdp(4000, ""), vec![])).await;
    let p = media_port(&reply_sdp(&r));
    let started = std::time::Instant::now();
    relay.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // The relay's ports are free again (io_uring lets go of its file references
    // asynchronously after the ring closes, so allow it a moment).
    let mut free = false;
    for _ in 0..50 {
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        {
            free = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(free, "ports {p}/{} released", p + 1);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_ends_the_call_but_media_keeps_it() {
    let relay = relay_with(|c| c.timeout = Duration::from_secs(1)).await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let a = bind().await;
    let b = bind().await;
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    for call in ["quiet", "busy"] {
        let r = ng.call(&offer(call, "A", &sdp(pa, ""), vec![])).await;
        assert_eq!(result(&r), "ok");
        let r = ng.call(&answer(call, "A", "B", &sdp(pb, ""), vec![])).await;
        assert_eq!(result(&r), "ok");
    }
    let q = ng.call(&cmd("query", "busy")).await;
    let tag_a = q.get("tags").unwrap().get("A").unwrap();
    let busy_port = tag_a.get("medias").unwrap().as_list().unwrap()[0]
        .get("streams")
        .unwrap()
        .as_list()
        .unwrap()[0]
        .get("local port")
        .and_then(Value::as_int)
        .unwrap() as u16;
    // 2 s of media on "busy" only, one packet every 100 ms.
    for seq in 0..20u16 {
        a.send_to(&rtp(0, seq, 5, 0), at(busy_port)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(result(&ng.call(&cmd("query", "busy")).await), "ok");
    let q = ng.call(&cmd("query", "quiet")).await;
    assert_eq!(
        q.get("error-reason").and_then(Value::as_str),
        Some("Unknown call-id")
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_media_through_a_v6_interface() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        panic!("IPv6 loopback is needed for this test");
    }
    let relay = relay_with(|c| {
        c.interfaces = vec![
            ferrelay::config::InterfaceSpec::parse("v4/127.0.0.1").unwrap(),
            ferrelay::config::InterfaceSpec::parse("v6/::1").unwrap(),
        ];
    })
    .await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let a = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    let b = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let v6 = |port: u16| {
        format!(
            "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
        )
    };
    let fam = || vec![("direction", list(&["v6", "v6"]))];
    let r = ng.call(&offer("six", "A", &v6(pa), fam())).await;
    let out = reply_sdp(&r);
    assert!(out.contains("c=IN IP6 ::1"), "{out}");
    let p_b = media_port(&out);
    let r = ng.call(&answer("six", "A", "B", &v6(pb), vec![])).await;
    let p_a = media_port(&reply_sdp(&r));
    let at6 = |p: u16| SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, p));
    let pkt = rtp(0, 1, 6, 6);
    let (got, src) = send_until(&a, at6(p_a), &pkt, &b).await;
    assert_eq!((got, src), (pkt.clone(), at6(p_b)));
    let (got, src) = send_until(&b, at6(p_b), &pkt, &a).await;
    assert_eq!((got, src), (pkt, at6(p_a)));
    relay.shutdown().await;
}

/// Forking: two branches answer one offer. Media from the offerer goes to the
/// branch that answered last, on the ports the offer told every fork; deleting
/// the losing branch keeps the call and its media (the branch goes after
/// delete-delay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forked_answer_takes_the_media_and_the_losing_branch_can_go() {
    let relay = relay_ticking(Duration::from_millis(50), |c| {
        c.delete_delay = Duration::from_millis(300);
    })
    .await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let (a, b1, b2) = (bind().await, bind().await, bind().await);
    let port = |s: &tokio::net::UdpSocket| s.local_addr().unwrap().port();
    let r = ng
        .call(&offer("fork", "A", &sdp(port(&a), ""), vec![]))
        .await;
    let to_b_side = media_port(&reply_sdp(&r));
    let r = ng
        .call(&answer("fork", "A", "B1", &sdp(port(&b1), ""), vec![]))
        .await;
    let to_a_side = media_port(&reply_sdp(&r));
    // B1's early media latches the B-facing port to B1.
    let pkt = rtp(0, 1, 0xB1B1_0001, 1);
    assert_eq!(send_until(&b1, at(to_b_side), &pkt, &a).await.0, pkt);
    let pkt = rtp(0, 1, 0xAAAA_0001, 2);
    assert_eq!(send_until(&a, at(to_a_side), &pkt, &b1).await.0, pkt);

    // B2 answers: same relay ports for A, and A's media now reaches B2.
    let r = ng
        .call(&answer("fork", "A", "B2", &sdp(port(&b2), ""), vec![]))
        .await;
    assert_eq!(media_port(&reply_sdp(&r)), to_a_side);
    let pkt = rtp(0, 2, 0xAAAA_0001, 3);
    let (got, src) = send_until(&a, at(to_a_side), &pkt, &b2).await;
    assert_eq!((got, src), (pkt, at(to_b_side)));
    let pkt = rtp(0, 1, 0xB2B2_0001, 4);
    assert_eq!(send_until(&b2, at(to_b_side), &pkt, &a).await.0, pkt);
    // The reply goes out before the worker applies the new rule, so a packet
    // sent in that window may still reach B1: drop what B1 has so far, then
    // nothing more of A's may reach it.
    let mut buf = [0u8; 2048];
    while b1.try_recv_from(&mut buf).is_ok() {}
    let pkt = rtp(0, 3, 0xAAAA_0001, 4);
    a.send_to(&pkt, at(to_a_side)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), b2.recv_from(&mut buf)).await;
    assert_eq!(&buf[..got.expect("B2 gets A's media").unwrap().0], &pkt[..]);
    let stray = tokio::time::timeout(Duration::from_millis(200), b1.recv_from(&mut buf)).await;
    assert!(stray.is_err(), "nothing of A's reaches the losing branch");

    // The losing branch goes; the call and its media stay.
    let mut del = cmd("delete", "fork");
    if let Value::Dict(d) = &mut del {
        d.push((b"from-tag".to_vec(), Value::str("A")));
        d.push((b"to-tag".to_vec(), Value::str("B1")));
    }
    assert_eq!(result(&ng.call(&del).await), "ok");
    // As a deleted call, the branch lives on for delete-delay, then goes.
    let q = ng.call(&cmd("query", "fork")).await;
    assert!(q.get("tags").unwrap().get("B1").is_some(), "{q:?}");
    tokio::time::sleep(Duration::from_millis(450)).await;
    let q = ng.call(&cmd("query", "fork")).await;
    let tags = q.get("tags").unwrap();
    assert!(
        tags.get("B1").is_none() && tags.get("B2").is_some(),
        "{q:?}"
    );
    let pkt = rtp(0, 4, 0xAAAA_0001, 5);
    assert_eq!(send_until(&a, at(to_a_side), &pkt, &b2).await.0, pkt);
    let pkt = rtp(0, 2, 0xB2B2_0001, 6);
    assert_eq!(send_until(&b2, at(to_b_side), &pkt, &a).await.0, pkt);
    relay.shutdown().await;
}

/// With `--delete-delay 0`, an ended call's ports go to the next call at once when
/// no datagram ever reached them (the worker's final counts say so), and rest
/// `PARK_REST` when media flowed, so a peer still sending to them is not latched
/// by the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_ports_are_reused_at_once_and_ports_with_media_rest() {
    let relay = relay_with(|c| c.delete_delay = Duration::ZERO).await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let (a, b) = (bind().await, bind().await);
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let mut call = async |id: &str| {
        let r = ng.call(&offer(id, "A", &sdp(pa, ""), vec![])).await;
        let to_b_side = media_port(&reply_sdp(&r));
        let r = ng.call(&answer(id, "A", "B", &sdp(pb, ""), vec![])).await;
        (media_port(&reply_sdp(&r)), to_b_side)
    };
    let started = std::time::Instant::now();
    let silent = call("quiet-1").await;
    let mut ng2 = Ng::new(relay.ng_udp).await;
    assert_eq!(result(&ng2.call(&cmd("delete", "quiet-1")).await), "ok");
    // The worker's final counts reach the control plane a ring round trip later.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let next = call("quiet-2").await;
    assert_eq!(next, silent, "the silent call's ports, without a rest");

    // This call has media: its ports rest after it ends.
    let (to_a_side, _) = next;
    send_until(&a, at(to_a_side), &rtp(0, 1, 0x5157_0001, 1), &b).await;
    assert_eq!(result(&ng2.call(&cmd("delete", "quiet-2")).await), "ok");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = call("quiet-3").await;
    assert!(
        started.elapsed() < ferrelay::session::ports::PARK_REST,
        "the checks ran within the rest"
    );
    assert!(
        after.0 != next.0 && after.0 != next.1 && after.1 != next.0 && after.1 != next.1,
        "{after:?} took ports of {next:?}, which had media"
    );
    relay.shutdown().await;
}

/// Sets up calls X and Y with the SDPs that route X's far side into Y's near side
/// (and back), as a call sent through the relay twice does: X's offerer at
/// `x_offerer`, Y's answerer at `y_answerer`. The ports X's offerer and Y's
/// answerer send to, and X's far side (Y's offerer).
async fn hairpin(ng: &mut Ng, x_offerer: u16, y_answerer: u16) -> (u16, u16, u16) {
    let r = ng
        .call(&offer("hp-x", "xa", &sdp(x_offerer, ""), vec![]))
        .await;
    let x_b = media_port(&reply_sdp(&r));
    // Y's offerer is X's far side: the relay's own port.
    let r = ng.call(&offer("hp-y", "ya", &sdp(x_b, ""), vec![])).await;
    let y_b = media_port(&reply_sdp(&r));
    let r = ng
        .call(&answer("hp-y", "ya", "yb", &sdp(y_answerer, ""), vec![]))
        .await;
    let y_a = media_port(&reply_sdp(&r));
    // X's answerer is Y's near side: the relay's own port again.
    let r = ng
        .call(&answer("hp-x", "xa", "xb", &sdp(y_a, ""), vec![]))
        .await;
    (media_port(&reply_sdp(&r)), y_b, x_b)
}

/// The workers' count of packets dropped as a media loop's repeats, as of their
/// last periodic reports (every second).
fn loop_drops(relay: &ferrelay::relay::RelayHandle) -> u64 {
    relay
        .observatory()
        .samples()
        .into_iter()
        .flatten()
        .map(|w| w.report.engine.drops.get(ferrelay_engine::DropReason::Loop))
        .sum()
}

/// A call routed through the relay twice (Alice - X - relay - Y - Bob) sends to
/// the relay's own ports on the way: every packet arrives once, unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_hairpinned_through_the_relay_passes_every_packet_once() {
    let relay = relay().await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let (alice, bob) = (bind().await, bind().await);
    let (to_x, to_y, _) = hairpin(
        &mut ng,
        alice.local_addr().unwrap().port(),
        bob.local_addr().unwrap().port(),
    )
    .await;
    // The first packet of each way may race the flows' installation.
    send_until(&alice, at(to_x), &rtp(0, 0, 0xA11CE, 1), &bob).await;
    send_until(&bob, at(to_y), &rtp(0, 0, 0xB0B, 2), &alice).await;
    for seq in 1..=50u16 {
        let pkt = rtp(0, seq, 0xA11CE, 1);
        alice.send_to(&pkt, at(to_x)).await.unwrap();
        assert_eq!(recv(&bob).await.0, pkt, "Alice's {seq} at Bob");
        let pkt = rtp(0, seq, 0xB0B, 2);
        bob.send_to(&pkt, at(to_y)).await.unwrap();
        assert_eq!(recv(&alice).await.0, pkt, "Bob's {seq} at Alice");
    }
    // Nothing more: no packet came twice.
    let mut buf = [0u8; 2048];
    for s in [&alice, &bob] {
        let more = tokio::time::timeout(Duration::from_millis(200), s.recv_from(&mut buf)).await;
        assert!(more.is_err(), "a packet arrived twice");
    }
    // A report made after the last packet (they come every second).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(loop_drops(&relay), 0);
    relay.shutdown().await;
}

/// The same two calls, but Y's answerer names the relay's port for X's offerer
/// (a re-INVITE that routes the call back into itself): a packet from Alice goes
/// X - Y - X - Y ... inside the relay for ever, two relay-to-relay sends a trip.
/// The relay cuts each such packet after a few trips and counts it. Two workers:
/// X and Y land on different ones, so the loop crosses between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_loop_through_the_relays_own_ports_is_cut() {
    let relay = relay_with(|c| c.workers = 2).await;
    let mut ng = Ng::new(relay.ng_udp).await;
    let (alice, bob) = (bind().await, bind().await);
    let (to_x, _, x_b) = hairpin(
        &mut ng,
        alice.local_addr().unwrap().port(),
        bob.local_addr().unwrap().port(),
    )
    .await;
    // Y re-negotiated: its answerer is now the relay's port for X's offerer.
    let r = ng.call(&offer("hp-y", "ya", &sdp(x_b, ""), vec![])).await;
    assert_eq!(result(&r), "ok");
    let r = ng
        .call(&answer("hp-y", "ya", "yb", &sdp(to_x, ""), vec![]))
        .await;
    assert_eq!(result(&r), "ok");
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Y's new answer reaches the worker a moment later: send fresh packets, 20 ms
    // apart, until the workers' reports show three of them cut (at most 4 s).
    let mut seq = 0u16;
    while loop_drops(&relay) < 3 && seq < 200 {
        seq += 1;
        alice
            .send_to(&rtp(0, seq, 0x100B, 3), at(to_x))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(loop_drops(&relay) >= 3, "{seq} packets sent, not 3 cut");
    // And nothing goes round any more: once the sending stopped, the workers'
    // receive counts stand still between two later reports, each worker's made
    // after the last packet (without the guard they grow by hundreds of
    // thousands a second).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = worker_rx(&relay);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let after = worker_rx(&relay);
    assert_eq!(before, after, "the relay still receives");
    // Each packet: Alice's send, then at most a few trips of two receives.
    let bound = u64::from(seq) * (1 + 2 * u64::from(ferrelay_engine::loops::LOOP_REPEATS));
    assert!(after <= bound, "{after} datagrams for {seq} packets");
    let per_worker: Vec<u64> = relay
        .observatory()
        .samples()
        .into_iter()
        .flatten()
        .map(|w| w.report.engine.rx_packets)
        .collect();
    assert!(
        per_worker.len() == 2 && per_worker.iter().all(|n| *n > 0),
        "the loop crossed both workers: {per_worker:?}"
    );
    relay.shutdown().await;
}

/// Datagrams the workers received, as of their last periodic reports.
fn worker_rx(relay: &ferrelay::relay::RelayHandle) -> u64 {
    relay
        .observatory()
        .samples()
        .into_iter()
        .flatten()
        .map(|w| w.report.engine.rx_packets)
        .sum()
}
