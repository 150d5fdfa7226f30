//! The same NG transcripts sent to ferrelay and to rtpengine (the reference relay),
//! with the SDP replies compared after masking ports and the two documented
//! differences (rtpengine adds rtpmaps for static payload types and acts as an ICE
//! agent; ferrelay removes ICE). Then RTP through each, byte for byte.
//!
//! Needs rtpengine 10.5 (Debian `rtpengine-daemon`), which `scripts/setup.sh`
//! installs; without it these tests fail and say so.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use ferrelay::ng::Value;

async fn rtpengine() -> rtpengine::Rtpengine {
    rtpengine::start((48_000, 48_999), &[]).await
}

/// Masks ports and drops what the two relays legitimately do differently.
fn normalize(out: &str, input: &str) -> String {
    let mut m_port = 0u32;
    let mut lines = Vec::new();
    for l in out.split("\r\n").filter(|l| !l.is_empty()) {
        if l.starts_with("a=ice-") || l.starts_with("a=candidate") || l == "a=end-of-candidates" {
            continue;
        }
        if l.starts_with("a=rtpmap:") && !input.contains(l) {
            continue;
        }
        // `loop-protect`'s mark names each relay's random instance.
        if l.starts_with("a=rtpengine:") && !input.contains(l) {
            lines.push("a=rtpengine:INSTANCE".to_owned());
            continue;
        }
        if let Some(rest) = l.strip_prefix("m=") {
            let f: Vec<&str> = rest.splitn(3, ' ').collect();
            m_port = f[1].parse().unwrap();
            let p = if m_port == 0 { "0" } else { "PORT" };
            lines.push(format!("m={} {p} {}", f[0], f[2]));
        } else if let Some(rest) = l.strip_prefix("a=rtcp:") {
            let (num, tail) = rest.split_at(rest.find(' ').unwrap_or(rest.len()));
            let n: u32 = num.parse().unwrap();
            let rel = match n.checked_sub(m_port) {
                Some(0) => "PORT".to_owned(),
                Some(1) => "PORT+1".to_owned(),
                _ => format!("{n}?"),
            };
            lines.push(format!("a=rtcp:{rel}{tail}"));
        } else {
            lines.push(l.to_owned());
        }
    }
    // Attribute order within a section carries no meaning (RFC 8866 §5): compare
    // each section's a= lines as a sorted set.
    let mut out = Vec::new();
    let mut attrs: Vec<String> = Vec::new();
    for l in lines {
        if l.starts_with("a=") {
            attrs.push(l);
            continue;
        }
        attrs.sort();
        out.append(&mut attrs);
        out.push(l);
    }
    attrs.sort();
    out.append(&mut attrs);
    out.join("\n")
}

struct Step {
    req: Value,
    input: String,
}

fn scenario_steps() -> Vec<(&'static str, Vec<Step>)> {
    let o = |sdp: &str| {
        format!(
            "v=0\r\no=- 1545997027 1 IN IP4 198.51.100.1\r\ns=tester\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n{sdp}"
        )
    };
    let a = |sdp: &str| {
        format!("v=0\r\no=- 9 9 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n{sdp}")
    };
    let step = |req: Value, input: String| Step { req, input };
    let audio = "m=audio 2000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
    let answer_audio = "m=audio 3000 RTP/AVP 0\r\na=sendrecv\r\n";
    vec![
        ("plain with origin replaced", {
            let (so, sa) = (o(audio), a(answer_audio));
            vec![
                step(
                    offer("d1", "A", &so, vec![("replace", list(&["origin"]))]),
                    so,
                ),
                step(answer("d1", "A", "B", &sa, vec![]), sa),
            ]
        }),
        ("rtcp-mux demux", {
            let so = o("m=audio 2000 RTP/AVP 0\r\na=rtcp-mux\r\n");
            let sa = a(answer_audio);
            vec![
                step(
                    offer("d2", "A", &so, vec![("rtcp-mux", list(&["demux"]))]),
                    so,
                ),
                step(answer("d2", "A", "B", &sa, vec![]), sa),
            ]
        }),
        ("rtcp-mux passed through and accepted", {
            let so = o("m=audio 2000 RTP/AVP 0\r\na=rtcp-mux\r\n");
            let sa = a("m=audio 3000 RTP/AVP 0\r\na=rtcp-mux\r\n");
            vec![
                step(offer("d3", "A", &so, vec![]), so),
                step(answer("d3", "A", "B", &sa, vec![]), sa),
            ]
        }),
        ("hold and resume", {
            let (so, sa) = (o(audio), a(answer_audio));
            let hold = o(
                "m=audio 2000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n",
            );
            let held = a("m=audio 3000 RTP/AVP 0\r\na=recvonly\r\n");
            let to_b = || vec![("to-tag", Value::str("B"))];
            vec![
                step(offer("d4", "A", &so, vec![]), so.clone()),
                step(answer("d4", "A", "B", &sa, vec![]), sa.clone()),
                step(offer("d4", "A", &hold, to_b()), hold),
                step(answer("d4", "A", "B", &held, vec![]), held),
                step(offer("d4", "A", &so, to_b()), so),
            ]
        }),
        ("audio and a rejected video", {
            let so = o(
                "m=audio 2000 RTP/AVP 0\r\nm=video 2002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
            );
            let sa = a("m=audio 3000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n");
            vec![
                step(offer("d5", "A", &so, vec![]), so),
                step(answer("d5", "A", "B", &sa, vec![]), sa),
            ]
        }),
        // Ports are masked: rtpengine gives the offerer a new port for the second
        // fork's answer where ferrelay keeps the first one (both are valid SDP).
        ("forked answers from two branches", {
            let so = o(audio);
            let (b1, b2) = (
                a(answer_audio),
                a("m=audio 3002 RTP/AVP 0\r\na=sendrecv\r\n"),
            );
            vec![
                step(offer("d7", "A", &so, vec![]), so),
                step(answer("d7", "A", "B1", &b1, vec![]), b1),
                step(answer("d7", "A", "B2", &b2, vec![]), b2),
            ]
        }),
        ("AVP to AVPF", {
            let (so, sa) = (o(audio), a("m=audio 3000 RTP/AVPF 0\r\n"));
            vec![
                step(
                    offer(
                        "d6",
                        "A",
                        &so,
                        vec![("transport-protocol", Value::str("RTP/AVPF"))],
                    ),
                    so,
                ),
                step(
                    answer(
                        "d6",
                        "A",
                        "B",
                        &sa,
                        vec![("transport-protocol", Value::str("RTP/AVP"))],
                    ),
                    sa,
                ),
            ]
        }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdp_replies_match_rtpengine() {
    let reference = rtpengine().await;
    let relay = relay().await;
    let mut ours = Ng::new(relay.ng_udp).await;
    let mut theirs = Ng::new(reference.ng).await;
    let mut mismatches = Vec::new();
    for (name, steps) in scenario_steps() {
        for (i, s) in steps.iter().enumerate() {
            let a = normalize(&reply_sdp(&ours.call(&s.req).await), &s.input);
            let b = normalize(&reply_sdp(&theirs.call(&s.req).await), &s.input);
            if a != b {
                mismatches.push(format!(
                    "{name}, step {}:\n--- ferrelay\n{a}\n--- rtpengine\n{b}",
                    i + 1
                ));
            }
        }
    }
    relay.shutdown().await;
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

/// `loop-protect`: both relays mark what they rewrite in the same place, and both
/// answer an SDP that comes back with their own mark byte for byte as it came,
/// without a call (an answer of an unknown call included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_protect_matches_rtpengine() {
    let reference = rtpengine().await;
    let relay = relay().await;
    let so = "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n\
              a=tool:x\r\nm=audio 2000 RTP/AVP 0\r\na=sendrecv\r\n";
    let lp = || vec![("flags", list(&["loop-protect"]))];
    let mut outs = Vec::new();
    for to in [relay.ng_udp, reference.ng] {
        let mut ng = Ng::new(to).await;
        let out = reply_sdp(&ng.call(&offer("lp1", "A", so, lp())).await);
        // The mark ends the session section: after its own a= line, before m=.
        let lines: Vec<&str> = out.split("\r\n").collect();
        let m = lines.iter().position(|l| l.starts_with("m=")).unwrap();
        assert!(lines[m - 1].starts_with("a=rtpengine:"), "{to}: {out}");
        assert_eq!(lines[m - 2], "a=tool:x", "{to}: {out}");
        // The SDP loops back through the proxy, as an offer and as an answer.
        let again = ng.call(&offer("lp2", "A", &out, lp())).await;
        assert_eq!(reply_sdp(&again), out, "offer passed through at {to}");
        let again = ng.call(&answer("lp3", "A", "B", &out, lp())).await;
        assert_eq!(reply_sdp(&again), out, "answer passed through at {to}");
        let q = ng.call(&cmd("query", "lp2")).await;
        assert_eq!(result(&q), "error", "no call made at {to}: {q:?}");
        outs.push(normalize(&out, so));
    }
    relay.shutdown().await;
    assert_eq!(outs[0], outs[1], "ferrelay, then rtpengine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_relays_forward_the_same_bytes() {
    let reference = rtpengine().await;
    let relay = relay().await;
    for ng_addr in [relay.ng_udp, reference.ng] {
        let mut ng = Ng::new(ng_addr).await;
        let a = bind().await;
        let b = bind().await;
        let (pa, pb) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        let r = ng.call(&offer("fw", "A", &sdp(pa, ""), vec![])).await;
        let p_b = media_port(&reply_sdp(&r));
        let r = ng.call(&answer("fw", "A", "B", &sdp(pb, ""), vec![])).await;
        let p_a = media_port(&reply_sdp(&r));
        let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        for seq in 0..5u16 {
            let pkt = rtp(0, seq, 0x1234, seq as u8);
            let (got, src) = send_until(&a, at(p_a), &pkt, &b).await;
            assert_eq!((got, src), (pkt, at(p_b)), "relay at {ng_addr}");
            let pkt = rtp(0, seq, 0x5678, 0x80 | seq as u8);
            let (got, src) = send_until(&b, at(p_b), &pkt, &a).await;
            assert_eq!((got, src), (pkt, at(p_a)), "relay at {ng_addr}");
        }
        let d = ng.call(&cmd("delete", "fw")).await;
        assert_eq!(result(&d), "ok");
    }
    relay.shutdown().await;
}

/// Forking, the same script against both relays: after a second branch answers,
/// the offerer's media (sent where that answer's reply says) reaches the second
/// branch only, and the second branch's media (sent where the offer told every
/// fork) reaches the offerer. Then a delete of the losing branch keeps the call.
/// (Past that point they differ: rtpengine stops relaying the remaining branch
/// from the offered port, ferrelay keeps it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_relays_send_media_to_the_branch_that_answered_last() {
    let reference = rtpengine().await;
    let relay = relay().await;
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    for ng_addr in [relay.ng_udp, reference.ng] {
        let mut ng = Ng::new(ng_addr).await;
        let (a, b1, b2) = (bind().await, bind().await, bind().await);
        let port = |s: &tokio::net::UdpSocket| s.local_addr().unwrap().port();
        let r = ng.call(&offer("fk", "A", &sdp(port(&a), ""), vec![])).await;
        let p_b = media_port(&reply_sdp(&r));
        let r = ng
            .call(&answer("fk", "A", "B1", &sdp(port(&b1), ""), vec![]))
            .await;
        let p_a1 = media_port(&reply_sdp(&r));
        let pkt = rtp(0, 1, 0xA1, 1);
        assert_eq!(
            send_until(&a, at(p_a1), &pkt, &b1).await.0,
            pkt,
            "relay at {ng_addr}"
        );
        let r = ng
            .call(&answer("fk", "A", "B2", &sdp(port(&b2), ""), vec![]))
            .await;
        let p_a2 = media_port(&reply_sdp(&r));
        for seq in 2..5u16 {
            let pkt = rtp(0, seq, 0xA1, seq as u8);
            assert_eq!(
                send_until(&a, at(p_a2), &pkt, &b2).await.0,
                pkt,
                "relay at {ng_addr}"
            );
            let pkt = rtp(0, seq, 0xB2, 0x80 | seq as u8);
            assert_eq!(
                send_until(&b2, at(p_b), &pkt, &a).await.0,
                pkt,
                "relay at {ng_addr}"
            );
        }
        let mut buf = [0u8; 2048];
        let stray = tokio::time::timeout(Duration::from_millis(200), b1.recv_from(&mut buf)).await;
        assert!(
            stray.is_err(),
            "relay at {ng_addr}: the losing branch got A's media"
        );
        let del = to_dict(vec![
            ("command", Value::str("delete")),
            ("call-id", Value::str("fk")),
            ("from-tag", Value::str("A")),
            ("to-tag", Value::str("B1")),
        ]);
        assert_eq!(result(&ng.call(&del).await), "ok");
        let q = ng.call(&cmd("query", "fk")).await;
        assert_eq!(result(&q), "ok", "relay at {ng_addr}: the call lives on");
        let pkt = rtp(0, 9, 0xA1, 9);
        assert_eq!(
            send_until(&a, at(p_a2), &pkt, &b2).await.0,
            pkt,
            "relay at {ng_addr}"
        );
        assert_eq!(result(&ng.call(&cmd("delete", "fk")).await), "ok");
    }
    relay.shutdown().await;
}
