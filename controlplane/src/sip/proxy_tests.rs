//! The proxy core in virtual time, with a media double that records NG commands.
use std::time::Duration;

use super::*;
use crate::ng::Value;
use crate::sip::media::SidePolicy;

/// Records every NG request; rewrites the m= port to 40000 + n.
#[derive(Default)]
struct FakeMedia {
    reqs: Vec<Value>,
    refuse: bool,
    /// The calls `list` reports.
    live: Vec<String>,
}

impl Media for FakeMedia {
    fn ng(&mut self, req: &Value, _now: Instant) -> Value {
        if req.get("command").and_then(Value::as_str) == Some("list") {
            let calls = self.live.iter().map(|c| Value::str(c)).collect();
            return Value::Dict(vec![
                (b"result".to_vec(), Value::str("ok")),
                (b"calls".to_vec(), Value::List(calls)),
            ]);
        }
        self.reqs.push(req.clone());
        if self.refuse {
            return crate::ng::commands::error_reply("refused");
        }
        let port = 40_000 + self.reqs.len();
        let sdp = req.get("sdp").and_then(Value::as_str).unwrap_or("");
        let out: String = sdp
            .split_inclusive('\n')
            .map(|l| match l.strip_prefix("m=audio ") {
                Some(rest) => format!(
                    "m=audio {port} {}",
                    rest.split_once(' ').map_or("", |x| x.1)
                ),
                None => l.to_owned(),
            })
            .collect();
        Value::Dict(vec![
            (b"result".to_vec(), Value::str("ok")),
            (b"sdp".to_vec(), Value::str(&out)),
        ])
    }
}

impl FakeMedia {
    fn commands(&self) -> Vec<String> {
        self.reqs
            .iter()
            .map(|r| {
                r.get("command")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    }
}

const ME: &str = "127.0.0.1:5060";
const A: &str = "127.0.0.1:5062";
const B: &str = "127.0.0.1:5070";
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn udp(a: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: a.parse().unwrap(),
    }
}

fn proxy(routes: Vec<Route>) -> Proxy {
    Proxy::new(ProxyConfig {
        local: ME.parse().unwrap(),
        routes,
        timers: Timers::default(),
    })
}

fn invite(branch: &str, extra: &str, sdp: bool) -> Vec<u8> {
    let body = if sdp { SDP } else { "" };
    let ct = if sdp {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    format!(
        "INVITE sip:bob@{B} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch={branch};rport\r\n\
         From: <sip:alice@{A}>;tag=at\r\nTo: <sip:bob@{B}>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
         {extra}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn parse(o: &Outgoing) -> Message {
    Message::parse(&o.bytes).unwrap()
}

/// Forwards an INVITE and returns what went downstream.
fn forward_invite(p: &mut Proxy, m: &mut FakeMedia, now: Instant, sdp: bool) -> Message {
    let out = p.on_message(
        &invite("z9hG4bKa1", "Max-Forwards: 70\r\n", sdp),
        udp(A),
        now,
        m,
    );
    assert_eq!(out.len(), 2, "100 Trying up, INVITE down");
    assert_eq!(out[0].to, udp(A));
    assert_eq!(parse(&out[0]).code(), Some(100));
    assert_eq!(out[1].to, udp(B));
    parse(&out[1])
}

fn respond(req: &Message, code: u16, body: &str) -> Vec<u8> {
    let mut r = response(req, code, "X");
    let to = req.header("To").unwrap_or_default();
    if !to.contains("tag=") {
        r.set_header("To", format!("{to};tag=bt"));
    }
    if !body.is_empty() {
        r.set_header("Content-Type", "application/sdp".into());
        r.body = body.as_bytes().to_vec();
    }
    r.to_bytes()
}

#[test]
fn via_record_route_max_forwards_and_media_offer() {
    let (mut p, mut m, now) = (proxy(vec![]), FakeMedia::default(), Instant::now());
    let fwd = forward_invite(&mut p, &mut m, now, true);
    let vias: Vec<&str> = fwd.headers_named("Via").collect();
    assert!(vias[0].starts_with(&format!("SIP/2.0/UDP {ME};branch=z9hG4bKfr")));
    assert_eq!(
        vias[1],
        format!("SIP/2.0/UDP {A};branch=z9hG4bKa1;rport=5062")
    );
    assert_eq!(fwd.header("Max-Forwards"), Some("69"));
    assert_eq!(
        fwd.header("Record-Route"),
        Some(format!("<sip:{ME};lr>").as_str())
    );
    assert!(String::from_utf8_lossy(&fwd.body).contains("m=audio 40001 "));
    assert_eq!(m.commands(), ["offer"]);
    assert_eq!(
        m.reqs[0].get("from-tag").and_then(Value::as_str),
        Some("at")
    );

    // The 200 goes up with our Via popped and its SDP as the answer.
    let out = p.on_message(&respond(&fwd, 200, SDP), udp(B), now, &mut m);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, udp(A));
    let up = parse(&out[0]);
    assert_eq!(up.headers_named("Via").count(), 1);
    assert!(String::from_utf8_lossy(&up.body).contains("m=audio 40002 "));
    assert_eq!(m.commands(), ["offer", "answer"]);
    assert_eq!(m.reqs[1].get("to-tag").and_then(Value::as_str), Some("bt"));
    // A retransmitted 200 goes up as the same bytes, without a second answer.
    let again = p.on_message(&respond(&fwd, 200, SDP), udp(B), now, &mut m);
    assert_eq!(again[0].bytes, out[0].bytes);
    assert_eq!(m.commands().len(), 2);
}

#[test]
fn retransmitted_invite_is_absorbed_and_timer_a_retransmits_downstream() {
    let (mut p, mut m, now) = (proxy(vec![]), FakeMedia::default(), Instant::now());
    let fwd = forward_invite(&mut p, &mut m, now, true);
    let again = p.on_message(&invite("z9hG4bKa1", "", true), udp(A), now, &mut m);
    assert_eq!(again.len(), 1, "only the 100 again, nothing downstream");
    assert_eq!(parse(&again[0]).code(), Some(100));
    assert_eq!(m.commands(), ["offer"], "no second offer");
    let t = p.poll(now + Duration::from_millis(500), &mut m);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].to, udp(B));
    assert_eq!(parse(&t[0]), fwd, "Timer A resends the same request");
    // Timer B: 408 upstream and the call's media deleted.
    let mut out = Vec::new();
    let mut at = now;
    while at < now + Duration::from_secs(33) {
        at += Duration::from_millis(100);
        out.extend(p.poll(at, &mut m));
    }
    let finals: Vec<_> = out
        .iter()
        .filter(|o| o.to == udp(A))
        .map(|o| parse(o).code())
        .collect();
    // Timer G repeats the 408 until an ACK that never comes.
    assert!(
        finals.len() >= 2 && finals.iter().all(|c| *c == Some(408)),
        "{finals:?}"
    );
    assert_eq!(m.commands(), ["offer", "delete"]);
}

#[test]
fn failure_final_is_acked_downstream_and_deletes_media() {
    let (mut p, mut m, now) = (proxy(vec![]), FakeMedia::default(), Instant::now());
    let fwd = forward_invite(&mut p, &mut m, now, true);
    let out = p.on_message(&respond(&fwd, 486, ""), udp(B), now, &mut m);
    assert_eq!(out.len(), 2);
    let ack = parse(&out[0]);
    assert_eq!((out[0].to, ack.method()), (udp(B), Some("ACK")));
    assert_eq!(
        ack.header("Via"),
        fwd.header("Via"),
        "same branch as the INVITE"
    );
    assert_eq!(ack.cseq(), Some((1, "ACK")));
    assert_eq!(parse(&out[1]).code(), Some(486));
    assert_eq!(m.commands(), ["offer", "delete"]);
    // The 486 again: absorbed, the ACK repeated; the upstream sees nothing.
    let again = p.on_message(&respond(&fwd, 486, ""), udp(B), now, &mut m);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].bytes, out[0].bytes);
    // Upstream's ACK of the 486 ends our server transaction, goes nowhere.
    let ack_up = String::from_utf8(invite("z9hG4bKa1", "", false))
        .unwrap()
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK")
        .replace(
            "To: <sip:bob@127.0.0.1:5070>",
            "To: <sip:bob@127.0.0.1:5070>;tag=bt",
        );
    assert!(
        p.on_message(ack_up.as_bytes(), udp(A), now, &mut m)
            .is_empty()
    );
}

#[test]
fn cancel_waits_for_a_provisional_and_matches_the_invite() {
    let (mut p, mut m, now) = (proxy(vec![]), FakeMedia::default(), Instant::now());
    let fwd = forward_invite(&mut p, &mut m, now, true);
    let cancel = String::from_utf8(invite("z9hG4bKa1", "", false))
        .unwrap()
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL");
    let out = p.on_message(cancel.as_bytes(), udp(A), now, &mut m);
    assert_eq!(out.len(), 1, "200 to the CANCEL only: no provisional yet");
    assert_eq!(parse(&out[0]).code(), Some(200));
    let out = p.on_message(&respond(&fwd, 180, ""), udp(B), now, &mut m);
    let down: Vec<Message> = out.iter().filter(|o| o.to == udp(B)).map(parse).collect();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].method(), Some("CANCEL"));
    assert_eq!(down[0].header("Via"), fwd.header("Via"));
    // A CANCEL for an unknown transaction: 481.
    let stray = cancel.replace("z9hG4bKa1", "z9hG4bKzz");
    let out = p.on_message(stray.as_bytes(), udp(A), now, &mut m);
    assert_eq!(parse(&out[0]).code(), Some(481));
}

#[test]
fn loops_and_hop_limits() {
    let (mut p, mut m, now) = (proxy(vec![]), FakeMedia::default(), Instant::now());
    let fwd = forward_invite(&mut p, &mut m, now, false);
    // The forwarded request coming back unchanged is a loop.
    let out = p.on_message(&fwd.to_bytes(), udp(B), now, &mut m);
    assert_eq!(out.len(), 1);
    assert_eq!(parse(&out[0]).code(), Some(482));
    let out = p.on_message(
        &invite("z9hG4bKmf", "Max-Forwards: 0\r\n", false),
        udp(A),
        now,
        &mut m,
    );
    assert_eq!(parse(&out[0]).code(), Some(483));
    // Malformed: no Call-ID.
    let bad = String::from_utf8(invite("z9hG4bKbad", "", false))
        .unwrap()
        .replace("Call-ID: c1\r\n", "");
    let out = p.on_message(bad.as_bytes(), udp(A), now, &mut m);
    assert_eq!(parse(&out[0]).code(), Some(400));
    assert!(
        p.on_message(b"\x16\x03\x01garbage", udp(A), now, &mut m)
            .is_empty()
    );
}

#[test]
fn late_offer_in_the_2xx_is_answered_by_the_ack() {
    let (mut p, mut m, now) = (proxy(vec![]), FakeMedia::default(), Instant::now());
    let fwd = forward_invite(&mut p, &mut m, now, false);
    assert!(m.commands().is_empty());
    let out = p.on_message(&respond(&fwd, 200, SDP), udp(B), now, &mut m);
    assert!(String::from_utf8_lossy(&parse(&out[0]).body).contains("m=audio 40001 "));
    assert_eq!(m.commands(), ["offer"]);
    assert_eq!(
        m.reqs[0].get("from-tag").and_then(Value::as_str),
        Some("bt"),
        "B offers"
    );
    let ack = format!(
        "ACK sip:bob@{B} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKack\r\nRoute: <sip:{ME};lr>\r\n\
         From: <sip:alice@{A}>;tag=at\r\nTo: <sip:bob@{B}>;tag=bt\r\nCall-ID: c1\r\nCSeq: 1 ACK\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    let out = p.on_message(ack.as_bytes(), udp(A), now, &mut m);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, udp(B));
    let down = parse(&out[0]);
    assert!(down.header("Route").is_none(), "our Route popped");
    assert_eq!(m.commands(), ["offer", "answer"]);
    assert_eq!(
        m.reqs[1].get("from-tag").and_then(Value::as_str),
        Some("bt")
    );
    assert_eq!(m.reqs[1].get("to-tag").and_then(Value::as_str), Some("at"));
    assert!(String::from_utf8_lossy(&down.body).contains("m=audio 40002 "));
}

#[test]
fn routes_pick_next_hop_and_media_policy_per_side() {
    let route = Route {
        domain: Some("127.0.0.1".into()),
        user_prefix: Some("bo".into()),
        next_hop: Some("127.0.0.1:5090".parse().unwrap()),
        callee: SidePolicy {
            transport_protocol: Some("RTP/SAVP".into()),
        },
        caller: SidePolicy {
            transport_protocol: Some("RTP/AVP".into()),
        },
        ..Route::default()
    };
    let (mut p, mut m, now) = (proxy(vec![route]), FakeMedia::default(), Instant::now());
    let out = p.on_message(&invite("z9hG4bKr", "", true), udp(A), now, &mut m);
    assert_eq!(out[1].to, udp("127.0.0.1:5090"), "static next hop");
    let proto = |v: &Value| {
        v.get("transport-protocol")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    assert_eq!(
        proto(&m.reqs[0]).as_deref(),
        Some("RTP/SAVP"),
        "offer toward the callee"
    );
    let fwd = parse(&out[1]);
    p.on_message(&respond(&fwd, 200, SDP), udp("127.0.0.1:5090"), now, &mut m);
    assert_eq!(
        proto(&m.reqs[1]),
        None,
        "an answer keeps the offer's protocol"
    );
    // The callee's re-INVITE is an offer toward the caller: the caller's policy.
    let reinvite = format!(
        "INVITE sip:alice@{A} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKre\r\n\
         Route: <sip:{ME};lr>\r\nFrom: <sip:bob@{B}>;tag=bt\r\nTo: <sip:alice@{A}>;tag=at\r\n\
         Call-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    let out = p.on_message(reinvite.as_bytes(), udp("127.0.0.1:5090"), now, &mut m);
    assert_eq!(out[1].to, udp(A), "in-dialog request to the caller");
    assert_eq!(
        proto(&m.reqs[2]).as_deref(),
        Some("RTP/AVP"),
        "offer toward the caller"
    );
}

#[test]
fn refused_media_gives_488() {
    let (mut p, now) = (proxy(vec![]), Instant::now());
    let mut m = FakeMedia {
        refuse: true,
        ..FakeMedia::default()
    };
    let out = p.on_message(&invite("z9hG4bKx", "", true), udp(A), now, &mut m);
    let codes: Vec<_> = out.iter().map(|o| parse(o).code()).collect();
    assert_eq!(codes, [Some(100), Some(488)]);
}

#[test]
fn dialogs_of_calls_the_relay_ended_are_swept_after_the_grace() {
    let (mut p, mut m, now) = (proxy(vec![]), FakeMedia::default(), Instant::now());
    let fwd = forward_invite(&mut p, &mut m, now, true);
    p.on_message(&respond(&fwd, 200, SDP), udp(B), now, &mut m);
    assert_eq!(p.dialogs.len(), 1);
    m.live = vec!["c1".into()];
    let _ = p.poll(now + Duration::from_secs(300), &mut m);
    assert_eq!(p.dialogs.len(), 1, "the relay still has the call");
    m.live.clear();
    let _ = p.poll(now + Duration::from_secs(310), &mut m);
    assert_eq!(p.dialogs.len(), 1, "one sweep per 30 s");
    let _ = p.poll(now + Duration::from_secs(331), &mut m);
    assert!(
        p.dialogs.is_empty(),
        "call gone from the relay: dialog forgotten"
    );
    // A young dialog survives a sweep even before its call exists.
    forward_invite_branch(
        &mut p,
        &mut m,
        now + Duration::from_secs(340),
        "z9hG4bKyoung",
    );
    // 362 s: a sweep is due (the last ran at 331 s), Timer B (372 s) is not.
    let _ = p.poll(now + Duration::from_secs(362), &mut m);
    assert_eq!(p.dialogs.len(), 1);
}

fn forward_invite_branch(p: &mut Proxy, m: &mut FakeMedia, now: Instant, branch: &str) {
    let out = p.on_message(&invite(branch, "", false), udp(A), now, m);
    assert_eq!(out.len(), 2);
}
