//! `query` and `statistics` replies in rtpengine's shape (see sipwise/rtpengine
//! `daemon/call_interfaces.c`, `ng_call_stats` and `ng_stats_*`), so tools written
//! for rtpengine read them unchanged.

use std::net::SocketAddr;
use std::time::Instant;

use super::Sessions;
use super::backend::{FlowCounters, MediaBackend};
use super::call::{Call, Side};
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

/// The `statistics` reply.
pub fn statistics<B: MediaBackend>(s: &Sessions<B>, now: Instant) -> Value {
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
