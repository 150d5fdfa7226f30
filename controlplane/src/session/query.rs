//! `query` and `statistics` replies in rtpengine's shape (see sipwise/rtpengine
//! `daemon/call_interfaces.c`, `ng_call_stats` and `ng_stats_*`), so tools written
//! for rtpengine read them unchanged.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::backend::{FlowCounters, MediaBackend};
use super::call::{Call, Side};
use super::{Sessions, Totals, flags};
use crate::config::InterfaceSpec;
use crate::ng::Value;
use crate::ng::bencode::Writer;

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn endpoint(w: &mut Writer<'_>, a: Option<SocketAddr>) {
    w.dict();
    if let Some(a) = a {
        w.str("family").str(family(a.ip()));
        w.str("address").ip(a.ip());
        w.str("port").uint(u64::from(a.port()));
    }
    w.end();
}

fn stats(w: &mut Writer<'_>, c: &FlowCounters) {
    w.dict().str("packets").uint(c.packets);
    w.str("bytes").uint(c.bytes);
    w.str("errors").uint(c.errors).end();
}

fn stream(w: &mut Writer<'_>, side: &Side, ip: IpAddr, k: usize) {
    let signalled = if k == 0 {
        side.remote_rtp()
    } else {
        side.remote_rtcp()
    }
    .map(SocketAddr::from);
    let c = &side.counters(k);
    w.dict();
    w.str("local port")
        .uint(u64::from(side.pair.port) + k as u64);
    w.str("local address").ip(ip);
    w.str("family").str(family(ip));
    w.str("endpoint");
    endpoint(w, c.remote.or(signalled));
    w.str("advertised endpoint");
    endpoint(w, signalled);
    w.str("last packet")
        .uint(u64::from(side.last_packet_unix[k]));
    w.str("flags")
        .list()
        .str(if k == 0 { "RTP" } else { "RTCP" });
    if side.muxed() {
        w.str("RTCP-mux");
    }
    if c.remote.is_some() {
        w.str("filled");
    }
    // Not an rtpengine word (it has no refused streams); tools skip unknown flags.
    if side.failed() {
        w.str("failed");
    }
    w.end().str("stats");
    stats(w, c);
    w.end();
}

/// The `query` (and `delete`) reply for one call, `result: ok` first, appended
/// to `out` as bencode without building a value tree. `ifaces` are the media
/// interfaces the sides' indexes name.
pub fn call_info(call: &Call, ifaces: &[InterfaceSpec], out: &mut Vec<u8>) {
    let mut rtp = FlowCounters::default();
    let mut rtcp = FlowCounters::default();
    let w = &mut Writer::new(out);
    w.dict().str("result").str("ok");
    w.str("created").uint(u64::from(call.created_unix));
    w.str("last signal").uint(u64::from(call.last_signal_unix));
    w.str("tags").dict();
    for mono in &call.monologues {
        w.bytes(mono.tag().as_bytes()).dict();
        w.str("tag").str(mono.tag());
        w.str("created").uint(u64::from(mono.created_unix));
        if let Some(l) = mono.label() {
            w.str("label").str(l);
        }
        if let Some(p) = mono.peer() {
            w.str("in dialogue with").str(p);
        }
        w.str("medias").list();
        for (i, side) in mono.sides.iter().enumerate() {
            for (acc, c) in [
                (&mut rtp, &side.counters(0)),
                (&mut rtcp, &side.counters(1)),
            ] {
                acc.packets += c.packets;
                acc.bytes += c.bytes;
                acc.errors += c.errors;
            }
            let r = side.retired();
            rtp.packets += r.packets;
            rtp.bytes += r.bytes;
            rtp.errors += r.errors;
            w.dict().str("index").uint(i as u64 + 1);
            w.str("type").str(side.names.media());
            w.str("protocol").str(side.names.proto());
            w.str("streams").list();
            let ip = side.local_ip(ifaces).unwrap_or(IpAddr::from([0, 0, 0, 0]));
            stream(w, side, ip, 0);
            stream(w, side, ip, 1);
            w.end().str("flags").list();
            if side.muxed() {
                w.str("RTCP-mux");
            }
            if side.rejected() {
                w.str("rejected");
            }
            if side.blocked() {
                w.str("blocked");
            }
            // A worker refused the flows: nothing is relayed on this stream.
            if side.failed() {
                w.str("failed");
            }
            w.end().end();
        }
        w.end().end();
    }
    w.end().str("totals").dict().str("RTP");
    stats(w, &rtp);
    w.str("RTCP");
    stats(w, &rtcp);
    w.end().end();
}

/// The `statistics` reply, appended to `out`.
pub fn statistics<B: MediaBackend>(s: &Sessions<B>, now: Instant, out: &mut Vec<u8>) {
    statistics_reply(&stats_input(s, now), out);
}

/// What `statistics` reports, from one shard of the sessions or summed over all.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatsInput {
    pub calls: u64,
    pub totals: Totals,
    /// Media counters of the calls still up.
    pub live: FlowCounters,
    pub uptime_s: u64,
    /// Port pairs held. The pools are shared by the shards, so this is not summed.
    pub port_pairs: u64,
}

impl StatsInput {
    /// Adds another shard's part.
    pub fn add(&mut self, o: &StatsInput) {
        fn media(a: &mut FlowCounters, b: &FlowCounters) {
            a.packets += b.packets;
            a.bytes += b.bytes;
            a.errors += b.errors;
        }
        self.calls += o.calls;
        let (t, u) = (&mut self.totals, &o.totals);
        t.managed += u.managed;
        t.rejected += u.rejected;
        t.ended.iter_mut().zip(u.ended).for_each(|(a, b)| *a += b);
        media(&mut t.media, &u.media);
        t.call_seconds += u.call_seconds;
        media(&mut self.live, &o.live);
        self.uptime_s = self.uptime_s.max(o.uptime_s);
    }
}

/// This shard's part of `statistics`.
pub fn stats_input<B: MediaBackend>(s: &Sessions<B>, now: Instant) -> StatsInput {
    let mut live = FlowCounters::default();
    for call in s.calls.values() {
        for side in call.monologues.iter().flat_map(|m| m.sides.iter()) {
            let t = side.totals();
            live.packets += t.packets;
            live.bytes += t.bytes;
            live.errors += t.errors;
        }
    }
    StatsInput {
        calls: s.calls.len() as u64,
        totals: s.totals,
        live,
        uptime_s: s.uptime(now).as_secs(),
        port_pairs: s.ports_in_use() as u64,
    }
}

/// The `statistics` reply, appended to `out`.
pub fn statistics_reply(i: &StatsInput, out: &mut Vec<u8>) {
    let (t, live) = (&i.totals, &i.live);
    let ended: u64 = t.ended.iter().sum();
    let avg = t.call_seconds.checked_div(ended).unwrap_or(0);
    let w = &mut Writer::new(out);
    w.dict().str("result").str("ok");
    w.str("statistics").dict();
    w.str("currentstatistics").dict();
    w.str("sessionsown").uint(i.calls);
    w.str("sessionsforeign").uint(0);
    w.str("sessionstotal").uint(i.calls);
    w.str("transcodedmedia").uint(0);
    w.end().str("totalstatistics").dict();
    w.str("uptime").uint(i.uptime_s);
    w.str("managedsessions").uint(t.managed);
    w.str("rejectedsessions").uint(t.rejected);
    w.str("timeoutsessions").uint(t.ended[1]);
    w.str("silenttimeoutsessions").uint(t.ended[2]);
    w.str("offertimeoutsessions").uint(t.ended[3]);
    w.str("finaltimeoutsessions").uint(t.ended[4]);
    w.str("regularterminatedsessions").uint(t.ended[0]);
    w.str("forcedterminatedsessions").uint(t.ended[5]);
    w.str("relayedpackets").uint(t.media.packets + live.packets);
    w.str("relayedpacketerrors")
        .uint(t.media.errors + live.errors);
    w.str("relayedbytes").uint(t.media.bytes + live.bytes);
    w.str("avgcallduration").uint(avg);
    w.str("portsinuse").uint(i.port_pairs * 2);
    w.end().end().end();
}

/// The `limit` of a `list` request (rtpengine's default is 32).
pub fn list_limit(req: &Value) -> Result<usize, String> {
    match flags::lookup(req, "limit") {
        None => Ok(32),
        Some(Value::Int(n)) if *n >= 0 => Ok(*n as usize),
        Some(v) => v
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "'limit' must be a non-negative number".to_owned()),
    }
}

/// The `list` reply naming `ids`.
pub fn list_reply<'a>(ids: impl Iterator<Item = &'a str>) -> Value {
    Value::Dict(vec![
        (b"result".to_vec(), Value::str("ok")),
        (
            b"calls".to_vec(),
            Value::List(ids.map(Value::str).collect()),
        ),
    ])
}

#[cfg(test)]
mod tests {
    //! The streamed replies against the value-tree builders they replaced, kept
    //! here as the reference: same keys, same order, same bytes.

    use std::net::{IpAddr, SocketAddr};
    use std::time::{Duration, Instant};

    use super::super::backend::fake::FakeBackend;
    use super::super::backend::{FlowCounters, MediaBackend};
    use super::super::call::{Call, Side};
    use super::super::tests::{cfg, req};
    use super::super::{SessionConfig, Sessions};
    use crate::config::InterfaceSpec;
    use crate::ng::Value;

    fn entry(k: &str, v: Value) -> (Vec<u8>, Value) {
        (k.as_bytes().to_vec(), v)
    }

    fn int(v: u64) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }

    fn endpoint(a: Option<SocketAddr>) -> Value {
        let Some(a) = a else {
            return Value::Dict(vec![]);
        };
        let family = if a.is_ipv4() { "IPv4" } else { "IPv6" };
        Value::Dict(vec![
            entry("family", Value::str(family)),
            entry("address", Value::str(&a.ip().to_string())),
            entry("port", int(u64::from(a.port()))),
        ])
    }

    fn stats(c: &FlowCounters) -> Value {
        Value::Dict(vec![
            entry("packets", int(c.packets)),
            entry("bytes", int(c.bytes)),
            entry("errors", int(c.errors)),
        ])
    }

    fn stream(side: &Side, ip: IpAddr, k: usize) -> Value {
        let signalled = if k == 0 {
            side.remote_rtp()
        } else {
            side.remote_rtcp()
        }
        .map(SocketAddr::from);
        let c = &side.counters(k);
        let mut flags = vec![Value::str(if k == 0 { "RTP" } else { "RTCP" })];
        if side.muxed() {
            flags.push(Value::str("RTCP-mux"));
        }
        if c.remote.is_some() {
            flags.push(Value::str("filled"));
        }
        if side.failed() {
            flags.push(Value::str("failed"));
        }
        let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
        Value::Dict(vec![
            entry("local port", int(u64::from(side.pair.port) + k as u64)),
            entry("local address", Value::str(&ip.to_string())),
            entry("family", Value::str(family)),
            entry("endpoint", endpoint(c.remote.or(signalled))),
            entry("advertised endpoint", endpoint(signalled)),
            entry("last packet", int(u64::from(side.last_packet_unix[k]))),
            entry("flags", Value::List(flags)),
            entry("stats", stats(c)),
        ])
    }

    /// The value-tree `call_info` as it was, `result` included.
    fn reference_call_info(call: &Call, ifaces: &[InterfaceSpec]) -> Value {
        let mut rtp = FlowCounters::default();
        let mut rtcp = FlowCounters::default();
        let mut tags = Vec::new();
        for mono in &call.monologues {
            let mut medias = Vec::new();
            for (i, side) in mono.sides.iter().enumerate() {
                for (acc, c) in [
                    (&mut rtp, &side.counters(0)),
                    (&mut rtcp, &side.counters(1)),
                ] {
                    acc.packets += c.packets;
                    acc.bytes += c.bytes;
                    acc.errors += c.errors;
                }
                let r = side.retired();
                rtp.packets += r.packets;
                rtp.bytes += r.bytes;
                rtp.errors += r.errors;
                let ip = ifaces[side.iface()].local;
                let mut mflags = Vec::new();
                for (on, word) in [
                    (side.muxed(), "RTCP-mux"),
                    (side.rejected(), "rejected"),
                    (side.blocked(), "blocked"),
                    (side.failed(), "failed"),
                ] {
                    if on {
                        mflags.push(Value::str(word));
                    }
                }
                medias.push(Value::Dict(vec![
                    entry("index", int(i as u64 + 1)),
                    entry("type", Value::str(side.names.media())),
                    entry("protocol", Value::str(side.names.proto())),
                    entry(
                        "streams",
                        Value::List(vec![stream(side, ip, 0), stream(side, ip, 1)]),
                    ),
                    entry("flags", Value::List(mflags)),
                ]));
            }
            let mut t = vec![
                entry("tag", Value::str(mono.tag())),
                entry("created", int(u64::from(mono.created_unix))),
            ];
            if let Some(l) = mono.label() {
                t.push(entry("label", Value::str(l)));
            }
            if let Some(p) = mono.peer() {
                t.push(entry("in dialogue with", Value::str(p)));
            }
            t.push(entry("medias", Value::List(medias)));
            tags.push((mono.tag().as_bytes().to_vec(), Value::Dict(t)));
        }
        Value::Dict(vec![
            entry("result", Value::str("ok")),
            entry("created", int(u64::from(call.created_unix))),
            entry("last signal", int(u64::from(call.last_signal_unix))),
            entry("tags", Value::Dict(tags)),
            entry(
                "totals",
                Value::Dict(vec![entry("RTP", stats(&rtp)), entry("RTCP", stats(&rtcp))]),
            ),
        ])
    }

    /// The value-tree `statistics` as it was.
    fn reference_statistics<B: MediaBackend>(s: &Sessions<B>, now: Instant) -> Value {
        let mut live = FlowCounters::default();
        for call in s.calls.values() {
            for side in call.monologues.iter().flat_map(|m| m.sides.iter()) {
                let t = side.totals();
                live.packets += t.packets;
                live.bytes += t.bytes;
                live.errors += t.errors;
            }
        }
        let t = &s.totals;
        let ended: u64 = t.ended.iter().sum();
        let avg = t.call_seconds.checked_div(ended).unwrap_or(0);
        let current = Value::Dict(vec![
            entry("sessionsown", int(s.calls.len() as u64)),
            entry("sessionsforeign", int(0)),
            entry("sessionstotal", int(s.calls.len() as u64)),
            entry("transcodedmedia", int(0)),
        ]);
        let total = Value::Dict(vec![
            entry("uptime", int(s.uptime(now).as_secs())),
            entry("managedsessions", int(t.managed)),
            entry("rejectedsessions", int(t.rejected)),
            entry("timeoutsessions", int(t.ended[1])),
            entry("silenttimeoutsessions", int(t.ended[2])),
            entry("offertimeoutsessions", int(t.ended[3])),
            entry("finaltimeoutsessions", int(t.ended[4])),
            entry("regularterminatedsessions", int(t.ended[0])),
            entry("forcedterminatedsessions", int(t.ended[5])),
            entry("relayedpackets", int(t.media.packets + live.packets)),
            entry("relayedpacketerrors", int(t.media.errors + live.errors)),
            entry("relayedbytes", int(t.media.bytes + live.bytes)),
            entry("avgcallduration", int(avg)),
            entry("portsinuse", int(s.ports_in_use() as u64 * 2)),
        ]);
        Value::Dict(vec![
            entry("result", Value::str("ok")),
            entry(
                "statistics",
                Value::Dict(vec![
                    entry("currentstatistics", current),
                    entry("totalstatistics", total),
                ]),
            ),
        ])
    }

    fn config() -> SessionConfig {
        let mut c = cfg(40);
        c.interfaces = vec![
            InterfaceSpec::parse("priv/127.0.0.1").unwrap(),
            InterfaceSpec::parse("pub6/::1").unwrap(),
        ];
        c.delete_delay = Duration::from_secs(30);
        c
    }

    /// audio muxed, video on its own RTCP port, a rejected text stream.
    fn offer_sdp(addr: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n\
             m=audio 5000 RTP/AVP 0 8\r\na=rtcp-mux\r\n\
             m=video 5002 RTP/AVPF 96\r\na=rtpmap:96 VP8/90000\r\n\
             m=text 0 RTP/AVP 98\r\n"
        )
    }

    fn answer_sdp(addr: &str, port: u16) -> String {
        format!(
            "v=0\r\no=- 2 2 IN IP6 {addr}\r\ns=-\r\nc=IN IP6 {addr}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtcp-mux\r\n\
             m=video {} RTP/AVPF 96\r\n\
             m=text 0 RTP/AVP 98\r\n",
            port + 2
        )
    }

    /// A forked call with labels, IPv4 and IPv6 legs, several medias, blocked and
    /// failed streams, latched endpoints and counters at the i64 edge.
    fn busy_sessions(now: Instant) -> Sessions<FakeBackend> {
        let mut s = Sessions::new(config(), FakeBackend::new(2), now);
        let offer = offer_sdp("192.0.2.10");
        s.offer(
            &req(
                &[
                    ("call-id", "q"),
                    ("from-tag", "A"),
                    ("sdp", &offer),
                    ("label", "caller"),
                    ("address family", "IP6"),
                ],
                &[("flags", &["symmetric"])],
            ),
            now,
        )
        .unwrap();
        for (tag, port) in [("B1", 6000), ("B2", 7000)] {
            let a = answer_sdp("2001:db8::2", port);
            let via = format!("z9hG4bK-{tag}");
            let r = req(
                &[
                    ("call-id", "q"),
                    ("from-tag", "A"),
                    ("to-tag", tag),
                    ("sdp", &a),
                    ("via-branch", &via),
                    ("label", "callee"),
                ],
                &[],
            );
            s.answer(&r, now).unwrap();
        }
        // A second, plain call, so statistics sums over more than one.
        let plain = offer_sdp("198.51.100.7");
        s.offer(
            &req(&[("call-id", "p"), ("from-tag", "X"), ("sdp", &plain)], &[]),
            now,
        )
        .unwrap();
        s.set_blocked(&req(&[("call-id", "q"), ("from-tag", "A")], &[]), true)
            .unwrap();
        let flows: Vec<_> = s.installed_flows().collect();
        assert!(flows.len() >= 8, "{flows:?}");
        for (n, (w, id)) in flows.iter().enumerate() {
            let latched: SocketAddr = if n % 2 == 0 {
                format!("203.0.113.{n}:{}", 9000 + n).parse().unwrap()
            } else {
                format!("[2001:db8::{n:x}]:{}", 9000 + n).parse().unwrap()
            };
            let c = FlowCounters {
                packets: 10 + n as u64,
                bytes: if n == 1 { 1 << 63 } else { 1000 * n as u64 },
                errors: n as u64 % 3,
                remote: (n % 3 != 2).then_some(latched),
            };
            s.on_flow_stats(*w, *id, c, now);
        }
        let (w, refused) = flows[flows.len() - 1];
        s.on_flow_refused(w, refused, "test");
        s
    }

    #[test]
    fn streamed_query_is_byte_for_byte_the_value_tree() {
        let now = Instant::now();
        let s = busy_sessions(now);
        let call = &s.calls["q"];
        assert_eq!(call.monologues.len(), 3);
        let sides: Vec<&Side> = call.monologues.iter().flat_map(|m| &m.sides).collect();
        assert!(sides.iter().any(|x| x.rejected()) && sides.iter().any(|x| x.muxed()));
        assert!(sides.iter().any(|x| x.blocked()));
        let ifaces = &s.res.cfg.interfaces;
        assert!(
            sides
                .iter()
                .any(|x| x.local_ip(ifaces).is_some_and(|ip| ip.is_ipv6()))
        );
        for call in s.calls.values() {
            let mut out = b"cookie ".to_vec();
            super::call_info(call, ifaces, &mut out);
            let want = reference_call_info(call, ifaces).encode();
            assert_eq!(
                String::from_utf8_lossy(&out[7..]),
                String::from_utf8_lossy(&want)
            );
            assert_eq!(out[7..], want);
        }
        let failed = s.calls.values().flat_map(|c| &c.monologues);
        assert!(failed.flat_map(|m| &m.sides).any(|x| x.failed()));
        // The public face: `query` decodes the same bytes.
        let q = s.query(&req(&[("call-id", "q")], &[])).unwrap();
        assert_eq!(q, reference_call_info(&s.calls["q"], ifaces));
        let tag_a = q.get("tags").and_then(|t| t.get("A"));
        let label = tag_a.and_then(|a| a.get("label")).and_then(Value::as_str);
        assert_eq!(label, Some("caller"));
        assert!(q.encode().windows(7).any(|w| w == b"blocked"));
        assert!(q.encode().windows(8).any(|w| w == b"RTCP-mux"));
    }

    #[test]
    fn streamed_statistics_is_byte_for_byte_the_value_tree() {
        let now = Instant::now();
        let mut s = busy_sessions(now);
        s.delete(&req(&[("call-id", "p")], &[]), now).unwrap();
        s.tick(now + Duration::from_secs(31));
        let later = now + Duration::from_secs(32);
        let mut out = Vec::new();
        super::statistics(&s, later, &mut out);
        assert_eq!(out, reference_statistics(&s, later).encode());
        assert_eq!(s.statistics(later), reference_statistics(&s, later));
        assert_eq!(s.totals.ended[0], 1);
    }
}
