//! `query` and `statistics` replies in rtpengine's shape (see sipwise/rtpengine
//! `daemon/call_interfaces.c`, `ng_call_stats` and `ng_stats_*`), so tools written
//! for rtpengine read them unchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::backend::{FlowCounters, MediaBackend};
use super::call::{Call, Side};
use super::{Sessions, Totals, flags};
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

fn stream(side: &Side, k: usize) -> Value {
    let signalled = if k == 0 {
        side.remote_rtp
    } else {
        side.remote_rtcp
    }
    .map(SocketAddr::from);
    let c = &side.counters(k);
    let mut flags = vec![Value::str(if k == 0 { "RTP" } else { "RTCP" })];
    if side.muxed {
        flags.push(Value::str("RTCP-mux"));
    }
    if c.remote.is_some() {
        flags.push(Value::str("filled"));
    }
    // Not an rtpengine word (it has no refused streams); tools skip unknown flags.
    if side.failed {
        flags.push(Value::str("failed"));
    }
    Value::Dict(vec![
        entry("local port", int(u64::from(side.pair.port) + k as u64)),
        entry("local address", Value::str(&side.pair.ip.to_string())),
        entry(
            "family",
            Value::str(if side.pair.ip.is_ipv4() {
                "IPv4"
            } else {
                "IPv6"
            }),
        ),
        entry("endpoint", endpoint(c.remote.or(signalled))),
        entry("advertised endpoint", endpoint(signalled)),
        entry("last packet", int(u64::from(side.last_packet_unix[k]))),
        entry("flags", Value::List(flags)),
        entry("stats", stats(c)),
    ])
}

/// The per-call part of `query` (and of the `delete` reply).
pub fn call_info(call: &Call) -> Value {
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
            rtp.packets += side.retired.packets;
            rtp.bytes += side.retired.bytes;
            rtp.errors += side.retired.errors;
            let mut mflags = Vec::new();
            if side.muxed {
                mflags.push(Value::str("RTCP-mux"));
            }
            if side.rejected {
                mflags.push(Value::str("rejected"));
            }
            if side.blocked {
                mflags.push(Value::str("blocked"));
            }
            // A worker refused the flows: nothing is relayed on this stream.
            if side.failed {
                mflags.push(Value::str("failed"));
            }
            medias.push(Value::Dict(vec![
                entry("index", int(i as u64 + 1)),
                entry("type", Value::str(side.names.media())),
                entry("protocol", Value::str(side.names.proto())),
                entry(
                    "streams",
                    Value::List(vec![stream(side, 0), stream(side, 1)]),
                ),
                entry("flags", Value::List(mflags)),
            ]));
        }
        let mut t = vec![
            entry("tag", Value::str(&mono.tag)),
            entry("created", int(u64::from(mono.created_unix))),
        ];
        if let Some(l) = mono.label() {
            t.push(entry("label", Value::str(l)));
        }
        if let Some(p) = &mono.peer {
            t.push(entry("in dialogue with", Value::str(p)));
        }
        t.push(entry("medias", Value::List(medias)));
        tags.push((mono.tag.as_bytes().to_vec(), Value::Dict(t)));
    }
    Value::Dict(vec![
        entry("created", int(u64::from(call.created_unix))),
        entry("last signal", int(u64::from(call.last_signal_unix))),
        entry("tags", Value::Dict(tags)),
        entry(
            "totals",
            Value::Dict(vec![entry("RTP", stats(&rtp)), entry("RTCP", stats(&rtcp))]),
        ),
    ])
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

/// The `statistics` reply.
pub fn statistics_reply(i: &StatsInput) -> Value {
    let (t, live) = (&i.totals, &i.live);
    let ended: u64 = t.ended.iter().sum();
    let avg = t.call_seconds.checked_div(ended).unwrap_or(0);
    let current = Value::Dict(vec![
        entry("sessionsown", int(i.calls)),
        entry("sessionsforeign", int(0)),
        entry("sessionstotal", int(i.calls)),
        entry("transcodedmedia", int(0)),
    ]);
    let total = Value::Dict(vec![
        entry("uptime", int(i.uptime_s)),
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
        entry("portsinuse", int(i.port_pairs * 2)),
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
pub fn list_reply<'a>(ids: impl Iterator<Item = &'a Arc<str>>) -> Value {
    Value::Dict(vec![
        entry("result", Value::str("ok")),
        entry("calls", Value::List(ids.map(|s| Value::str(s)).collect())),
    ])
}
