//! Call logic against a recording backend: which flows exist, their rules, and the
//! SDP handed back, without threads or packets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use ferrelay_engine::{Component, LatchMode, MismatchPolicy};
use ferrelay_sdp::Sdp;

use super::backend::fake::FakeBackend;
use super::loop_protect::instance_id;
use super::*;
use crate::config::InterfaceSpec;

/// Each test gets its own port range so parallel tests never collide.
static NEXT_RANGE: AtomicU16 = AtomicU16::new(42_000);

pub(super) fn cfg(pairs: u16) -> SessionConfig {
    let min = NEXT_RANGE.fetch_add(100, Ordering::Relaxed);
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    SessionConfig {
        interfaces: vec![InterfaceSpec {
            name: "default".into(),
            local: lo,
            advertised: "203.0.113.1".parse().unwrap(),
        }],
        port_min: min,
        port_max: min + pairs * 2 - 1,
        timeout: Duration::from_secs(60),
        silent_timeout: Duration::from_secs(3600),
        final_timeout: None,
        offer_timeout: Duration::from_secs(10),
        delete_delay: Duration::from_secs(30),
    }
}

pub(super) fn sdp(addr: &str, port: u16, extra: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n{extra}"
    )
}

pub(super) fn req(pairs: &[(&str, &str)], list: &[(&str, &[&str])]) -> Value {
    let mut d: Vec<(Vec<u8>, Value)> = pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), Value::str(v)))
        .collect();
    for (k, l) in list {
        d.push((
            k.as_bytes().to_vec(),
            Value::List(l.iter().map(|s| Value::str(s)).collect()),
        ));
    }
    Value::Dict(d)
}

/// The offer in call `id` from tag A: media at 192.0.2.10:5000.
pub(super) fn offer_req(id: &str, list: &[(&str, &[&str])]) -> Value {
    let offer = sdp("192.0.2.10", 5000, "");
    req(&[("call-id", id), ("from-tag", "A"), ("sdp", &offer)], list)
}

/// The answer in call `id` from tag B to A's offer: media at 198.51.100.2:7000.
pub(super) fn answer_req(id: &str, list: &[(&str, &[&str])]) -> Value {
    let answer = sdp("198.51.100.2", 7000, "");
    req(
        &[
            ("call-id", id),
            ("from-tag", "A"),
            ("to-tag", "B"),
            ("sdp", &answer),
        ],
        list,
    )
}

pub(super) fn reply_sdp(v: &Value) -> Sdp {
    Sdp::parse_bytes(v.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap()
}

pub(super) fn port_of(v: &Value) -> u16 {
    reply_sdp(v).media()[0].port()
}

pub(super) fn sessions(pairs: u16) -> Sessions<FakeBackend> {
    Sessions::new(cfg(pairs), FakeBackend::new(2), Instant::now())
}

#[test]
fn offer_answer_wires_both_directions() {
    let t0 = Instant::now();
    let mut s = sessions(10);
    let offer = sdp(
        "192.0.2.10",
        5000,
        "a=candidate:1 1 UDP 1 192.0.2.10 5000 typ host\r\n",
    );
    let r = s
        .offer(
            &req(
                &[("call-id", "c1"), ("from-tag", "A"), ("sdp", &offer)],
                &[],
            ),
            t0,
        )
        .unwrap();
    let out = reply_sdp(&r);
    let p = out.media()[0].port();
    assert_eq!(p % 2, 0);
    assert_eq!(out.connection().unwrap().address.to_string(), "203.0.113.1");
    assert_eq!(out.media()[0].rtcp_port(), Some(p + 1));
    assert_eq!(out.media()[0].candidates().count(), 0, "ICE removed");
    // Four flows: the answerer-facing pair is not yet pointed anywhere.
    assert_eq!(s.backend().flows.len(), 4);
    let (_, r_y) = s.backend().rule_on(p).unwrap();
    assert_eq!(r_y.remote, None);
    assert_eq!(r_y.component, Component::Muxed);

    let answer = sdp("198.51.100.20", 6000, "");
    let r = s
        .answer(
            &req(
                &[
                    ("call-id", "c1"),
                    ("from-tag", "A"),
                    ("to-tag", "B"),
                    ("sdp", &answer),
                ],
                &[],
            ),
            t0,
        )
        .unwrap();
    let q = port_of(&r);
    assert_ne!(p, q);
    let b = s.backend();
    let (fy, r_y) = b.rule_on(p).unwrap();
    let (fx, r_x) = b.rule_on(q).unwrap();
    // Answerer sends to p; forwarded out of q's socket to the offerer, and back.
    assert_eq!(r_y.remote, Some("198.51.100.20:6000".parse().unwrap()));
    assert_eq!(r_x.remote, Some("192.0.2.10:5000".parse().unwrap()));
    assert_eq!(r_y.rtp_out.unwrap().via, fx);
    assert_eq!(r_x.rtp_out.unwrap().via, fy);
    // RTCP port flows forward RTCP to the other party's RTCP flow.
    let (fx_rtcp, rx_rtcp) = b.rule_on(q + 1).unwrap();
    assert_eq!(rx_rtcp.component, Component::Rtcp);
    assert_eq!(rx_rtcp.remote, Some("192.0.2.10:5001".parse().unwrap()));
    assert_eq!(r_y.rtcp_out.unwrap().via, fx_rtcp);
    assert_eq!(r_x.latch, LatchMode::LatchFirst);
    assert_eq!(r_x.on_mismatch, MismatchPolicy::Accept);

    let info = s.query(&req(&[("call-id", "c1")], &[])).unwrap();
    let tags = info.get("tags").unwrap();
    assert!(tags.get("A").is_some() && tags.get("B").is_some());
}

#[test]
fn an_ipv4_mapped_unspecified_address_is_hold_too() {
    // Sent to from a dual-stack socket, `::ffff:0.0.0.0` reaches the host itself.
    let t0 = Instant::now();
    let mut s = sessions(10);
    let held =
        sdp("192.0.2.10", 5000, "").replace("c=IN IP4 192.0.2.10", "c=IN IP6 ::ffff:0.0.0.0");
    s.offer(
        &req(&[("call-id", "c"), ("from-tag", "A"), ("sdp", &held)], &[]),
        t0,
    )
    .unwrap();
    let a = answer_req("c", &[]);
    // The answer's port is the offerer's: its flow must send nowhere.
    let toward_offerer = port_of(&s.answer(&a, t0).unwrap());
    let (_, rule) = s.backend().rule_on(toward_offerer).unwrap();
    assert_eq!(rule.remote, None, "nothing is sent there");
}

#[test]
fn reoffer_and_hold_keep_ports() {
    let t0 = Instant::now();
    let mut s = sessions(10);
    let o = |sd: &str| req(&[("call-id", "c"), ("from-tag", "A"), ("sdp", sd)], &[]);
    let p1 = port_of(&s.offer(&o(&sdp("192.0.2.10", 5000, "")), t0).unwrap());
    let a = answer_req("c", &[]);
    let q1 = port_of(&s.answer(&a, t0).unwrap());
    let commands = s.backend().commands;
    // Re-INVITE with hold from the offerer, with to-tag now known.
    let hold = sdp("0.0.0.0", 5000, "a=sendonly\r\n");
    let r = s
        .offer(
            &req(
                &[
                    ("call-id", "c"),
                    ("from-tag", "A"),
                    ("to-tag", "B"),
                    ("sdp", &hold),
                ],
                &[],
            ),
            t0,
        )
        .unwrap();
    assert_eq!(port_of(&r), p1);
    assert!(
        reply_sdp(&r).connection().unwrap().is_unspecified(),
        "hold stays visible"
    );
    assert_eq!(s.backend().flows.len(), 4, "no new flows");
    assert!(s.backend().commands > commands);
    let (_, rx) = s.backend().rule_on(q1).unwrap();
    assert_eq!(rx.remote, None, "held party gets nothing sent");
    // Held calls use the silent timeout (3600 s), not the media timeout (60 s).
    assert!(s.tick(t0 + Duration::from_secs(120)).is_empty());
    assert_eq!(s.call_count(), 1);
    // Re-INVITE from the answerer (roles swap) still uses the same pairs.
    let r = s
        .offer(
            &req(
                &[
                    ("call-id", "c"),
                    ("from-tag", "B"),
                    ("to-tag", "A"),
                    ("sdp", &sdp("198.51.100.2", 7000, "")),
                ],
                &[],
            ),
            t0,
        )
        .unwrap();
    assert_eq!(port_of(&r), q1);
    assert_eq!(s.call_count(), 1);
    assert_eq!(s.backend().flows.len(), 4);
}

#[test]
fn rtcp_mux_offered_then_demuxed() {
    let t0 = Instant::now();
    let mut s = sessions(10);
    let offer = sdp("192.0.2.10", 5000, "a=rtcp-mux\r\n");
    let r = s
        .offer(
            &req(
                &[("call-id", "m"), ("from-tag", "A"), ("sdp", &offer)],
                &[("rtcp-mux", &["demux"])],
            ),
            t0,
        )
        .unwrap();
    let out = reply_sdp(&r);
    assert!(!out.media()[0].rtcp_mux(), "answerer is not offered mux");
    let p = out.media()[0].port();
    assert_eq!(out.media()[0].rtcp_port(), Some(p + 1));
    let a = answer_req("m", &[]);
    let r = s.answer(&a, t0).unwrap();
    let out = reply_sdp(&r);
    let q = out.media()[0].port();
    assert!(
        out.media()[0].rtcp_mux(),
        "offerer's mux accepted: relay demuxes"
    );
    assert_eq!(out.media()[0].rtcp_port(), Some(q));
    let b = s.backend();
    let (fx, _) = b.rule_on(q).unwrap();
    // RTCP from the answerer's RTCP port goes to the offerer's single port.
    let (_, ry_rtcp) = b.rule_on(p + 1).unwrap();
    assert_eq!(ry_rtcp.rtcp_out.unwrap().via, fx);
    // RTCP muxed on the offerer's port goes to the answerer's RTCP port.
    let (fy_rtcp, _) = b.rule_on(p + 1).unwrap();
    let (_, rx) = b.rule_on(q).unwrap();
    assert_eq!(rx.rtcp_out.unwrap().via, fy_rtcp);
}

#[test]
fn flags_map_to_policies() {
    let t0 = Instant::now();
    let mut s = sessions(10);
    let offer = sdp("192.0.2.10", 5000, "");
    let r = s
        .offer(
            &req(
                &[
                    ("call-id", "f"),
                    ("from-tag", "A"),
                    ("sdp", &offer),
                    ("transport-protocol", "RTP/AVPF"),
                ],
                &[
                    ("flags", &["trust-address", "strict-source"]),
                    ("replace", &["origin"]),
                ],
            ),
            t0,
        )
        .unwrap();
    let out = reply_sdp(&r);
    assert_eq!(out.media()[0].proto().as_str(), "RTP/AVPF");
    assert_eq!(out.origin().unwrap().address, "203.0.113.1");
    let a = answer_req("f", &[("flags", &["media-handover"])]);
    let q = port_of(&s.answer(&a, t0).unwrap());
    let (_, rx) = s.backend().rule_on(q).unwrap();
    assert_eq!(
        (rx.latch, rx.on_mismatch),
        (LatchMode::Fixed, MismatchPolicy::Drop)
    );
    let p = s.calls["f"].monologues[1].sides[0].pair.port;
    let (_, ry) = s.backend().rule_on(p).unwrap();
    assert!(matches!(ry.on_mismatch, MismatchPolicy::Relatch { .. }));
    // block media from A marks A's flows.
    s.set_blocked(&req(&[("call-id", "f"), ("from-tag", "A")], &[]), true)
        .unwrap();
    assert_eq!(s.backend().blocked.len(), 2);
}

#[test]
fn errors_are_clear() {
    let t0 = Instant::now();
    let mut s = sessions(1);
    let offer = sdp("192.0.2.10", 5000, "");
    let e = s
        .offer(&req(&[("from-tag", "A"), ("sdp", &offer)], &[]), t0)
        .unwrap_err();
    assert_eq!(e, "No call-id in message");
    let e = s
        .answer(
            &req(
                &[
                    ("call-id", "x"),
                    ("from-tag", "A"),
                    ("to-tag", "B"),
                    ("sdp", &offer),
                ],
                &[],
            ),
            t0,
        )
        .unwrap_err();
    assert_eq!(e, "Unknown call-id");
    let e = s
        .offer(
            &req(
                &[("call-id", "x"), ("from-tag", "A"), ("sdp", "garbage")],
                &[],
            ),
            t0,
        )
        .unwrap_err();
    assert!(e.starts_with("Failed to parse SDP"), "{e}");
    let e = s
        .offer(
            &req(
                &[
                    ("call-id", "x"),
                    ("from-tag", "A"),
                    ("sdp", &offer),
                    ("transport protocol", "RTP/SAVP"),
                ],
                &[("flags", &["SDES-off"])],
            ),
            t0,
        )
        .unwrap_err();
    assert!(e.contains("SDES is off"), "{e}");
    // One pair in the range: an offer needs two, so it fails and leaves nothing.
    let e = s
        .offer(
            &req(&[("call-id", "x"), ("from-tag", "A"), ("sdp", &offer)], &[]),
            t0,
        )
        .unwrap_err();
    assert_eq!(e, "Ran out of ports");
    assert_eq!(s.call_count(), 0);
    assert_eq!(s.ports_in_use(), 0);
    assert!(s.backend().flows.is_empty());
    assert_eq!(s.totals.rejected, 1);
}

#[test]
fn delete_frees_ports_after_delay_and_timers_fire() {
    let t0 = Instant::now();
    let mut s = sessions(10);
    let o = |id: &str| offer_req(id, &[]);
    s.offer(&o("d"), t0).unwrap();
    assert_eq!(s.ports_in_use(), 2);
    let r = s.delete(&req(&[("call-id", "d")], &[]), t0).unwrap();
    assert_eq!(r.get("result").and_then(Value::as_str), Some("ok"));
    // As rtpengine: media and the call live on for delete-delay (30 s here).
    assert_eq!(
        s.backend().flows.len(),
        4,
        "media still relayed after delete"
    );
    assert!(s.query(&req(&[("call-id", "d")], &[])).is_ok());
    // A repeated delete keeps the first deadline.
    s.delete(&req(&[("call-id", "d")], &[]), t0 + Duration::from_secs(20))
        .unwrap();
    assert!(s.tick(t0 + Duration::from_secs(29)).is_empty());
    assert_eq!((s.ports_in_use(), s.backend().flows.len()), (2, 4));
    assert_eq!(
        s.tick(t0 + Duration::from_secs(30)),
        vec![("d".to_owned(), EndReason::Deleted)]
    );
    assert!(
        s.backend().flows.is_empty(),
        "flows removed after the delay"
    );
    assert_eq!(s.ports_in_use(), 0, "and the ports free at once");
    assert_eq!(
        s.delete(&req(&[("call-id", "d")], &[]), t0).unwrap_err(),
        "Unknown call-id"
    );

    // Unanswered offer expires after offer-timeout (10 s here).
    s.offer(&o("t"), t0).unwrap();
    assert!(s.tick(t0 + Duration::from_secs(9)).is_empty());
    assert_eq!(
        s.tick(t0 + Duration::from_secs(10)),
        vec![("t".to_owned(), EndReason::OfferTimeout)]
    );

    // Answered call without media ends after --timeout; counters growing keep it.
    s.offer(&o("m"), t0).unwrap();
    let a = answer_req("m", &[]);
    s.answer(&a, t0).unwrap();
    let (w, f) = s.installed_flows().next().unwrap();
    let c = FlowCounters {
        packets: 5,
        bytes: 500,
        errors: 0,
        remote: Some(SocketAddr::from(([192, 0, 2, 10], 5000))),
    };
    s.on_flow_stats(w, f, c, t0 + Duration::from_secs(50));
    assert!(s.tick(t0 + Duration::from_secs(100)).is_empty());
    assert_eq!(
        s.tick(t0 + Duration::from_secs(110)),
        vec![("m".to_owned(), EndReason::MediaTimeout)]
    );
    let st = s.statistics(t0);
    let total = st
        .get("statistics")
        .unwrap()
        .get("totalstatistics")
        .unwrap();
    assert_eq!(
        total.get("timeoutsessions").and_then(Value::as_int),
        Some(1)
    );
    assert_eq!(
        total.get("offertimeoutsessions").and_then(Value::as_int),
        Some(1)
    );
    assert_eq!(total.get("relayedpackets").and_then(Value::as_int), Some(5));
}

#[test]
fn interfaces_by_direction_and_family_and_labels() {
    let t0 = Instant::now();
    let mut c = cfg(20);
    c.interfaces = vec![
        InterfaceSpec::parse("priv/127.0.0.1").unwrap(),
        InterfaceSpec::parse("pub6/::1").unwrap(),
    ];
    let mut s = Sessions::new(c, FakeBackend::new(1), t0);
    let offer = sdp("192.0.2.10", 5000, "");
    let r = s
        .offer(
            &req(
                &[
                    ("call-id", "i"),
                    ("from-tag", "A"),
                    ("sdp", &offer),
                    ("address family", "IP6"),
                    ("label", "caller"),
                ],
                &[],
            ),
            t0,
        )
        .unwrap();
    let out = reply_sdp(&r);
    assert_eq!(
        out.connection().unwrap().address,
        "::1".parse::<IpAddr>().unwrap()
    );
    assert!(
        String::from_utf8(out.to_bytes())
            .unwrap()
            .contains("c=IN IP6 ::1")
    );
    let a = answer_req("i", &[]);
    let out = reply_sdp(&s.answer(&a, t0).unwrap());
    // The offerer side stayed on the first (IPv4) interface.
    assert_eq!(out.connection().unwrap().address.to_string(), "127.0.0.1");
    let q = s.query(&req(&[("call-id", "i")], &[])).unwrap();
    let tag_a = q.get("tags").unwrap().get("A").unwrap();
    assert_eq!(tag_a.get("label").and_then(Value::as_str), Some("caller"));
    assert_eq!(
        tag_a.get("in dialogue with").and_then(Value::as_str),
        Some("B")
    );

    let e = s
        .offer(
            &req(
                &[("call-id", "j"), ("from-tag", "A"), ("sdp", &offer)],
                &[("direction", &["priv", "nope"])],
            ),
            t0,
        )
        .unwrap_err();
    assert_eq!(e, "Unknown interface 'nope'");
    let r = s
        .offer(
            &req(
                &[("call-id", "j"), ("from-tag", "A"), ("sdp", &offer)],
                &[("direction", &["pub6", "priv"])],
            ),
            t0,
        )
        .unwrap();
    assert_eq!(
        reply_sdp(&r).connection().unwrap().address.to_string(),
        "127.0.0.1"
    );
}

#[test]
fn several_media_and_a_rejected_one() {
    let t0 = Instant::now();
    let mut s = sessions(10);
    let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
                 m=audio 5000 RTP/AVP 0\r\nm=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                 m=image 0 udptl t38\r\n";
    let r = s
        .offer(
            &req(&[("call-id", "mm"), ("from-tag", "A"), ("sdp", offer)], &[]),
            t0,
        )
        .unwrap();
    let out = reply_sdp(&r);
    let ports: Vec<u16> = out.media().iter().map(|m| m.port()).collect();
    assert!(ports[0] != 0 && ports[1] != 0 && ports[0] != ports[1]);
    assert_eq!(ports[2], 0, "rejected stays rejected");
    // Two live streams x two parties x (RTP, RTCP).
    assert_eq!(s.backend().flows.len(), 8);
    let (_, video) = s.backend().rule_on(ports[1]).unwrap();
    assert_eq!(video.clock_rate, 90_000);
    // The answer accepts audio and rejects video: video's flows go away.
    let answer = "v=0\r\no=- 2 2 IN IP4 198.51.100.2\r\ns=-\r\nc=IN IP4 198.51.100.2\r\nt=0 0\r\n\
                  m=audio 7000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\nm=image 0 udptl t38\r\n";
    let r = s
        .answer(
            &req(
                &[
                    ("call-id", "mm"),
                    ("from-tag", "A"),
                    ("to-tag", "B"),
                    ("sdp", answer),
                ],
                &[],
            ),
            t0,
        )
        .unwrap();
    let out = reply_sdp(&r);
    assert_ne!(out.media()[0].port(), 0);
    assert_eq!(out.media()[1].port(), 0);
    assert_eq!(s.backend().flows.len(), 4);
    assert!(s.backend().rule_on(ports[1]).is_none());
    // A re-offer enabling video again binds its ports afresh, on the same numbers.
    let r = s
        .offer(
            &req(
                &[
                    ("call-id", "mm"),
                    ("from-tag", "A"),
                    ("to-tag", "B"),
                    ("sdp", offer),
                ],
                &[],
            ),
            t0,
        )
        .unwrap();
    assert_eq!(reply_sdp(&r).media()[1].port(), ports[1]);
    let a2 = answer.replace("m=video 0", "m=video 7002");
    s.answer(
        &req(
            &[
                ("call-id", "mm"),
                ("from-tag", "A"),
                ("to-tag", "B"),
                ("sdp", &a2),
            ],
            &[],
        ),
        t0,
    )
    .unwrap();
    assert_eq!(s.backend().flows.len(), 8);
    let (_, video) = s.backend().rule_on(ports[1]).unwrap();
    assert_eq!(video.remote, Some("198.51.100.2:7002".parse().unwrap()));
}

#[test]
fn reoffer_out_of_ports_then_answer_is_refused_not_a_panic() {
    let t0 = Instant::now();
    // Three pairs: the first call takes two, a re-offer adding video needs two more.
    let mut s = sessions(3);
    let one = sdp("192.0.2.10", 5000, "");
    let o = |sd: &str| req(&[("call-id", "p"), ("from-tag", "A"), ("sdp", sd)], &[]);
    s.offer(&o(&one), t0).unwrap();
    let two = format!("{one}m=video 5002 RTP/AVP 96\r\n");
    assert_eq!(s.offer(&o(&two), t0).unwrap_err(), "Ran out of ports");
    let ans = "v=0\r\no=- 2 2 IN IP4 198.51.100.2\r\ns=-\r\nc=IN IP4 198.51.100.2\r\nt=0 0\r\n\
               m=audio 7000 RTP/AVP 0\r\nm=video 7002 RTP/AVP 96\r\n";
    let a = req(
        &[
            ("call-id", "p"),
            ("from-tag", "A"),
            ("to-tag", "B"),
            ("sdp", ans),
        ],
        &[],
    );
    assert_eq!(
        s.answer(&a, t0).unwrap_err(),
        "The answer has more media than the offer"
    );
    assert_eq!(s.call_count(), 1, "the call survives");
}

#[test]
fn media_address_sip_source_and_final_timeout() {
    let t0 = Instant::now();
    let mut c = cfg(10);
    c.final_timeout = Some(Duration::from_secs(300));
    let mut s = Sessions::new(c, FakeBackend::new(1), t0);
    let offer = sdp("10.0.0.5", 5000, "");
    // SIP-source-address: the private SDP address is replaced by the signalling source.
    s.offer(
        &req(
            &[("call-id", "n"), ("from-tag", "A"), ("sdp", &offer)],
            &[
                ("flags", &["SIP-source-address"]),
                ("received-from", &["IP4", "203.0.113.50"]),
            ],
        ),
        t0,
    )
    .unwrap();
    let a = sdp("10.1.1.1", 7000, "");
    let r = s
        .answer(
            &req(
                &[
                    ("call-id", "n"),
                    ("from-tag", "A"),
                    ("to-tag", "B"),
                    ("sdp", &a),
                    ("media-address", "198.51.100.77"),
                ],
                &[],
            ),
            t0,
        )
        .unwrap();
    let q = port_of(&r);
    let (_, rx) = s.backend().rule_on(q).unwrap();
    assert_eq!(rx.remote, Some("203.0.113.50:5000".parse().unwrap()));
    let p = s.calls["n"].monologues[1].sides[0].pair.port;
    let (_, ry) = s.backend().rule_on(p).unwrap();
    assert_eq!(ry.remote, Some("198.51.100.77:7000".parse().unwrap()));
    // Media keeps flowing, but the call may not outlive --final-timeout.
    let (w, f) = s.installed_flows().next().unwrap();
    for (n, sec) in (0..300).step_by(10).enumerate() {
        let c = FlowCounters {
            packets: n as u64 + 1,
            ..Default::default()
        };
        s.on_flow_stats(w, f, c, t0 + Duration::from_secs(sec));
        assert!(s.tick(t0 + Duration::from_secs(sec)).is_empty());
    }
    assert_eq!(
        s.tick(t0 + Duration::from_secs(300)),
        vec![("n".to_owned(), EndReason::FinalTimeout)]
    );
}

#[test]
fn delete_without_delay_ends_at_once_and_a_new_offer_cancels_a_pending_delete() {
    let t0 = Instant::now();
    let mut c = cfg(10);
    c.delete_delay = Duration::ZERO;
    let mut s = Sessions::new(c, FakeBackend::new(1), t0);
    let o = |id: &str| offer_req(id, &[]);
    s.offer(&o("z"), t0).unwrap();
    s.delete(&req(&[("call-id", "z")], &[]), t0).unwrap();
    assert_eq!((s.call_count(), s.ports_in_use()), (0, 0));
    assert!(s.backend().flows.is_empty());

    let mut c = cfg(10);
    c.offer_timeout = Duration::from_secs(3600);
    let mut s = Sessions::new(c, FakeBackend::new(1), t0);
    s.offer(&o("r"), t0).unwrap();
    s.delete(&req(&[("call-id", "r")], &[]), t0).unwrap();
    // A re-offer within the delay (the call goes on): the deletion is called off.
    s.offer(&o("r"), t0 + Duration::from_secs(5)).unwrap();
    assert!(s.tick(t0 + Duration::from_secs(31)).is_empty());
    assert_eq!(s.call_count(), 1);
}

/// A call's parties and sides are held at exact capacity: `Vec` would round one
/// 576-byte side up to four, which was most of a call's memory.
#[test]
fn calls_hold_their_sides_at_exact_capacity() {
    let t0 = Instant::now();
    let mut s = sessions(10);
    s.offer(&offer_req("cap", &[]), t0).unwrap();
    let a = answer_req("cap", &[]);
    s.answer(&a, t0).unwrap();
    let call = &s.calls["cap"];
    assert_eq!(call.monologues.capacity(), 2);
    for m in &call.monologues {
        // The sides are a boxed slice, exact by construction: one per m= line.
        assert_eq!(m.sides.len(), 1, "{}", m.tag());
    }
}

#[test]
fn streamed_sdp_reply_is_the_value_reply() {
    for text in [
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\n",
        // No final line end, LF only: the writer adds the default where needed.
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\na=rtcp-mux",
    ] {
        let sdp = Sdp::parse(text).unwrap();
        let mut out = b"ck ".to_vec();
        sdp_reply(&sdp, &mut out);
        let mut want = b"ck ".to_vec();
        sdp_value(&sdp).encode_into(&mut want);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(want).unwrap()
        );
    }
}

/// rtpengine's `loop-protect`: the rewritten SDP carries `a=rtpengine:<instance>`
/// at session level; an SDP that comes back with our mark is answered as it is,
/// and touches no call. Checked against rtpengine 10.5 by hand: the same
/// placement, the same pass-through for offer and answer (even of an unknown
/// call), byte for byte.
#[test]
fn loop_protect_marks_the_sdp_and_passes_our_own_back_untouched() {
    let t0 = Instant::now();
    let mut s = sessions(10);
    let flags: &[(&str, &[&str])] = &[("flags", &["loop-protect"])];
    let offer = sdp("192.0.2.10", 5000, "").replace("t=0 0\r\n", "t=0 0\r\na=tool:x\r\n");
    let r = s
        .offer(
            &req(
                &[("call-id", "lp"), ("from-tag", "A"), ("sdp", &offer)],
                flags,
            ),
            t0,
        )
        .unwrap();
    let out = reply_sdp(&r);
    let mark = format!("a=rtpengine:{}\r\n", instance_id());
    let text = out.to_string();
    assert!(
        text.contains(&format!("a=tool:x\r\n{mark}m=audio")),
        "after the session's attributes, before m=: {text}"
    );
    assert_eq!(instance_id().len(), 12);
    assert!(instance_id().bytes().all(|b| b.is_ascii_hexdigit()));
    let flows = s.backend().flows.len();

    // The marked SDP comes back (the call looped through the proxy): as it was,
    // with no new call or flow, for an offer and for an answer alike.
    for (cmd, call) in [
        ("offer", "lp-again"),
        ("offer", "lp"),
        ("answer", "lp-unknown"),
    ] {
        let back = req(
            &[
                ("call-id", call),
                ("from-tag", "A"),
                ("to-tag", "B"),
                ("sdp", &text),
            ],
            flags,
        );
        let r = match cmd {
            "offer" => s.offer(&back, t0),
            _ => s.answer(&back, t0),
        }
        .unwrap();
        assert_eq!(
            r.get("sdp").and_then(Value::as_bytes),
            Some(text.as_bytes()),
            "{cmd} {call}"
        );
    }
    assert_eq!(s.call_count(), 1);
    assert_eq!(s.backend().flows.len(), flows);

    // Without the flag, or with another relay's mark, it is an SDP like any other.
    let r = s
        .offer(
            &req(
                &[("call-id", "lp-noflag"), ("from-tag", "A"), ("sdp", &text)],
                &[],
            ),
            t0,
        )
        .unwrap();
    assert_ne!(port_of(&r), out.media()[0].port());
    let other = offer.replace("a=tool:x", "a=rtpengine:0123456789ab");
    let r = s
        .offer(
            &req(
                &[("call-id", "lp-other"), ("from-tag", "A"), ("sdp", &other)],
                flags,
            ),
            t0,
        )
        .unwrap();
    let text = reply_sdp(&r).to_string();
    assert!(
        text.contains(&format!("a=rtpengine:0123456789ab\r\n{mark}")),
        "{text}"
    );
    assert_eq!(s.call_count(), 3);
}
