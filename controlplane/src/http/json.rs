//! The NG replies as JSON: `query` and `statistics` keep rtpengine's shape, so the
//! HTTP API and NG tell the same facts with the same names.

use std::sync::atomic::Ordering;
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
    /// Every call through the sessions' own `query`, one shard's lock at a time.
    pub fn calls(&self) -> Vec<CallView> {
        let mut out = Vec::new();
        for i in 0..self.ctl.len() {
            let c = self.ctl.lock(i);
            let s = &c.sessions;
            out.extend(s.call_ids().filter_map(|id| {
                let q = s.query(&dict([("call-id", Value::str(id))])).ok()?;
                Some(CallView {
                    call_id: id.to_string(),
                    info: q,
                })
            }));
        }
        out.sort_unstable_by(|a, b| a.call_id.cmp(&b.call_id));
        out
    }

    /// One call, or `None` if the relay does not know it.
    pub fn call(&self, call_id: &str) -> Option<CallView> {
        let c = self.ctl.lock(self.ctl.shard_of(call_id.as_bytes()));
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
        to_json(&self.ctl.statistics(Instant::now()))
    }

    /// What `/metrics` and the live feed need from the control plane.
    pub fn facts(&self, calls: &[CallView]) -> RelayFacts {
        let now = Instant::now();
        let st = self.ctl.stats_input(now);
        let t = &st.totals;
        let parked = self.ctl.lock(0).sessions.ports_parked() as u64;
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
            calls: st.calls,
            legs: calls.iter().map(|c| c.legs() as u64).sum(),
            port_pairs_in_use: st.port_pairs,
            // The pools are shared: any shard tells the whole count.
            port_pairs_parked: parked,
            port_pairs_total: self.port_pairs_total,
            ng_requests: self.ctl.sum(|c| c.executed),
            ng_commands: self.ctl.counts().iter().collect(),
            ng_cache_evictions: self.ctl.sum(|c| c.cache_evictions()),
            ng_cache_entries: self.ctl.sum(|c| c.cache_entries() as u64),
            ng_cache_bytes: self.ctl.sum(|c| c.cache_bytes() as u64),
            ng_queries_not_waited: self.ctl.queries_not_waited.load(Ordering::Relaxed),
            ng_tcp_refused: self.ctl.tcp_refused.load(Ordering::Relaxed),
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
