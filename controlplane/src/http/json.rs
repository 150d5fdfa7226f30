//! The NG replies as JSON: `query` and `statistics` keep rtpengine's shape, so the
//! HTTP API and NG tell the same facts with the same names.

use std::time::Instant;

use serde_json::{Map, Value as Json};

use super::HttpState;
use crate::metrics::RelayFacts;
use crate::ng::Value;
use crate::ng::bencode::dict;

/// Bencode to JSON: byte strings become (lossy UTF-8) strings.
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Int(n) => Json::from(*n),
        Value::Bytes(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
        Value::List(l) => Json::Array(l.iter().map(to_json).collect()),
        Value::Dict(d) => Json::Object(
            d.iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), to_json(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// One call as NG `query` tells it (without `result`), with its id.
#[derive(Debug, Clone)]
pub struct CallView {
    pub call_id: String,
    pub info: Value,
}

impl CallView {
    /// RTP plus RTCP packets the call's streams received.
    pub fn packets(&self) -> u64 {
        let part = |k: &str| {
            self.info
                .get("totals")
                .and_then(|t| t.get(k))
                .and_then(|s| s.get("packets"))
                .and_then(Value::as_int)
                .unwrap_or(0)
        };
        u64::try_from(part("RTP") + part("RTCP")).unwrap_or(0)
    }

    /// Legs (tags) of the call.
    pub fn legs(&self) -> usize {
        match self.info.get("tags") {
            Some(Value::Dict(d)) => d.len(),
            _ => 0,
        }
    }

    pub fn to_json(&self) -> Json {
        let mut j = to_json(&self.info);
        if let Json::Object(m) = &mut j {
            m.remove("result");
            m.insert("call-id".into(), Json::String(self.call_id.clone()));
        }
        j
    }
}

/// Port pairs in one interface's pool, as `PortPool::new` counts them.
fn pairs_in(min: u16, max: u16) -> u64 {
    let first = min.saturating_add(min % 2);
    if max > first {
        u64::from(max - first).div_ceil(2)
    } else {
        0
    }
}

impl HttpState {
    /// Every call through the sessions' own `list` and `query`, under one short lock.
    pub fn calls(&self) -> Vec<CallView> {
        let c = self.ctl.lock().unwrap_or_else(|p| p.into_inner());
        let s = &c.sessions;
        let req = dict([("limit", Value::Int(i64::MAX))]);
        let ids: Vec<String> = s
            .list(&req)
            .ok()
            .and_then(|v| {
                v.get("calls").and_then(Value::as_list).map(|l| {
                    l.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
            })
            .unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| {
                let q = s.query(&dict([("call-id", Value::str(&id))])).ok()?;
                Some(CallView {
                    call_id: id,
                    info: q,
                })
            })
            .collect()
    }

    /// One call, or `None` if the relay does not know it.
    pub fn call(&self, call_id: &str) -> Option<CallView> {
        let c = self.ctl.lock().unwrap_or_else(|p| p.into_inner());
        let q = c
            .sessions
            .query(&dict([("call-id", Value::str(call_id))]))
            .ok()?;
        Some(CallView {
            call_id: call_id.to_owned(),
            info: q,
        })
    }

    /// NG `statistics`, as JSON.
    pub fn statistics(&self) -> Json {
        let c = self.ctl.lock().unwrap_or_else(|p| p.into_inner());
        to_json(&c.sessions.statistics(Instant::now()))
    }

    /// What `/metrics` and the live feed need from the control plane.
    pub fn facts(&self, calls: &[CallView]) -> RelayFacts {
        let now = Instant::now();
        let c = self.ctl.lock().unwrap_or_else(|p| p.into_inner());
        let s = &c.sessions;
        let t = &s.totals;
        use crate::session::EndReason as R;
        let reasons = [
            R::Deleted,
            R::MediaTimeout,
            R::SilentTimeout,
            R::OfferTimeout,
            R::FinalTimeout,
            R::Shutdown,
        ];
        RelayFacts {
            calls: s.call_count() as u64,
            legs: calls.iter().map(|c| c.legs() as u64).sum(),
            port_pairs_in_use: s.ports_in_use() as u64,
            port_pairs_parked: s.ports_parked() as u64,
            port_pairs_total: self.port_pairs_total,
            ng_requests: c.executed,
            ng_commands: c.counts.iter().collect(),
            ng_cache_evictions: c.cache_evictions(),
            ng_queries_not_waited: c.queries_not_waited,
            ng_tcp_refused: c.tcp_refused,
            calls_managed: t.managed,
            calls_rejected: t.rejected,
            calls_ended: reasons
                .iter()
                .zip(t.ended)
                .map(|(r, n)| (label(*r), n))
                .collect(),
            uptime_s: self.obs.uptime(now).as_secs_f64(),
            command_ring_capacity: self.obs.command_ring_capacity() as u64,
        }
    }
}

/// `EndReason` as a metrics label (snake_case).
fn label(r: crate::session::EndReason) -> &'static str {
    use crate::session::EndReason as R;
    match r {
        R::Deleted => "deleted",
        R::MediaTimeout => "media_timeout",
        R::SilentTimeout => "silent_timeout",
        R::OfferTimeout => "offer_timeout",
        R::FinalTimeout => "final_timeout",
        R::Shutdown => "shutdown",
    }
}

/// Port pairs across every interface's pool.
pub fn port_pairs_total(cfg: &crate::config::Config) -> u64 {
    pairs_in(cfg.port_min, cfg.port_max) * cfg.interfaces.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencode_becomes_json() {
        let v = Value::Dict(vec![
            (b"z".to_vec(), Value::Int(-3)),
            (
                b"a".to_vec(),
                Value::List(vec![Value::str("x"), Value::Int(7)]),
            ),
            (b"b".to_vec(), Value::Bytes(vec![0xff, b'o'])),
        ]);
        let j = to_json(&v);
        assert_eq!(j["z"], -3);
        assert_eq!(j["a"], serde_json::json!(["x", 7]));
        assert_eq!(j["b"], "\u{fffd}o");
    }

    #[test]
    fn pool_pairs_match_the_pool() {
        // 30000..=40000: even starts 30000..=39998, 5000 pairs.
        assert_eq!(pairs_in(30_000, 40_000), 5_000);
        assert_eq!(pairs_in(30_001, 30_003), 1);
        assert_eq!(pairs_in(5, 5), 0);
    }
}
