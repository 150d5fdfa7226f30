//! The dashboard's live feed: one JSON frame per second over server-sent events,
//! with rates and interval latency computed from consecutive worker snapshots
//! (each client keeps its own previous snapshot, so clients never interfere).

use std::collections::HashMap;
use std::time::Instant;

use ferrelay_engine::{DropCounts, DropReason};
use hdrhistogram::Histogram;
use serde_json::{Value as Json, json};

use super::HttpState;
use crate::metrics::{WorkerSample, quantile_us};

/// Calls listed in the "top calls" chart.
const TOP_CALLS: usize = 8;

/// One worker's rates over the last interval between its reports.
#[derive(Debug, Clone, Copy, Default)]
struct Rates {
    rx_pps: f64,
    tx_pps: f64,
    drop_pps: f64,
    p50_us: f64,
    p99_us: f64,
    drops: [f64; DropReason::COUNT],
}

#[derive(Debug, Clone)]
struct Prev {
    at: Instant,
    rx: u64,
    tx: u64,
    drops: DropCounts,
    hist: Histogram<u64>,
    rates: Rates,
}

/// Per-client state of the live feed.
#[derive(Debug, Default)]
pub struct LiveFeed {
    seq: u64,
    workers: Vec<Option<Prev>>,
    calls: HashMap<String, u64>,
    calls_at: Option<Instant>,
}

fn per_s(now: u64, before: u64, secs: f64) -> f64 {
    now.saturating_sub(before) as f64 / secs
}

/// Rates between two reports of one worker; the interval histogram is the
/// difference of the cumulative ones.
fn rates(prev: &Prev, s: &WorkerSample) -> Rates {
    let e = &s.report.engine;
    let secs = s.at.saturating_duration_since(prev.at).as_secs_f64();
    if secs <= 0.0 {
        return prev.rates;
    }
    let mut interval = e.residence_ns.clone();
    if interval.subtract(&prev.hist).is_err() {
        interval = e.residence_ns.clone();
    }
    let mut drops = [0.0; DropReason::COUNT];
    for (r, n) in e.drops.iter() {
        drops[r.index()] = per_s(n, prev.drops.get(r), secs);
    }
    Rates {
        rx_pps: per_s(e.rx_packets, prev.rx, secs),
        tx_pps: per_s(e.tx_packets, prev.tx, secs),
        drop_pps: per_s(e.drops.total(), prev.drops.total(), secs),
        p50_us: quantile_us(&interval, 0.5),
        p99_us: quantile_us(&interval, 0.99),
        drops,
    }
}

impl LiveFeed {
    /// The next frame: rates since this client's previous frame.
    pub fn frame(&mut self, st: &HttpState) -> Json {
        let now = Instant::now();
        let samples = st.obs.samples();
        let calls = st.calls();
        let facts = st.facts(&calls);
        self.workers.resize(samples.len(), None);
        let mut workers = Vec::new();
        let mut drops = [0.0; DropReason::COUNT];
        let mut flows = 0u64;
        for (i, s) in samples.iter().enumerate() {
            let Some(s) = s else { continue };
            let e = &s.report.engine;
            let r = match &self.workers[i] {
                Some(p) if p.at == s.at => p.rates,
                Some(p) => rates(p, s),
                None => Rates::default(),
            };
            for (d, v) in drops.iter_mut().zip(r.drops) {
                *d += v;
            }
            flows += e.flows;
            workers.push(json!({
                "worker": i,
                "backend": s.report.backend.as_str(),
                "rx_pps": r.rx_pps,
                "tx_pps": r.tx_pps,
                "drop_pps": r.drop_pps,
                "p50_us": r.p50_us,
                "p99_us": r.p99_us,
                "flows": e.flows,
                "command_ring_used": s.report.command_ring_occupied,
            }));
            self.workers[i] = Some(Prev {
                at: s.at,
                rx: e.rx_packets,
                tx: e.tx_packets,
                drops: e.drops,
                hist: e.residence_ns.clone(),
                rates: r,
            });
        }

        let secs = self
            .calls_at
            .map(|t| now.saturating_duration_since(t).as_secs_f64());
        let mut top: Vec<(String, f64)> = calls
            .iter()
            .map(|c| {
                let p = c.packets();
                let rate = match (secs, self.calls.get(&c.call_id)) {
                    (Some(dt), Some(before)) if dt > 0.0 => per_s(p, *before, dt),
                    _ => 0.0,
                };
                (c.call_id.clone(), rate)
            })
            .collect();
        self.calls = calls
            .iter()
            .map(|c| (c.call_id.clone(), c.packets()))
            .collect();
        self.calls_at = Some(now);
        top.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(TOP_CALLS);

        self.seq += 1;
        json!({
            "seq": self.seq,
            "uptime_s": facts.uptime_s,
            "calls": facts.calls,
            "legs": facts.legs,
            "flows": flows,
            "ports_in_use": facts.port_pairs_in_use * 2,
            "ports_total": facts.port_pairs_total * 2,
            "workers": workers,
            "drops": DropReason::ALL
                .iter()
                .map(|r| (r.as_str().to_owned(), Json::from(drops[r.index()])))
                .collect::<serde_json::Map<_, _>>(),
            "top_calls": top
                .into_iter()
                .map(|(id, pps)| json!({"call_id": id, "pps": pps}))
                .collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ferrelay_dataplane::{BackendKind, IoCounters, WorkerReport};
    use ferrelay_engine::WorkerStats;

    use super::*;

    fn sample(at: Instant, rx: u64, drops: u64, residence_ns: &[u64]) -> WorkerSample {
        let mut h = Histogram::new_with_bounds(1_000, 10_000_000_000, 3).unwrap();
        for ns in residence_ns {
            h.record(*ns).unwrap();
        }
        let mut d = DropCounts::default();
        for _ in 0..drops {
            d.bump(DropReason::SrtpAuth);
        }
        WorkerSample {
            report: WorkerReport {
                worker: 0,
                token: None,
                backend: BackendKind::Mmsg,
                engine: WorkerStats {
                    rx_packets: rx,
                    rx_bytes: rx * 172,
                    tx_packets: rx,
                    tx_bytes: rx * 172,
                    drops: d,
                    flows: 4,
                    events_overflow: 0,
                    residence_ns: h,
                },
                io: IoCounters::default(),
                command_ring_occupied: 0,
                event_ring_occupied: 0,
                event_ring_capacity: 64,
            },
            at,
            rejected_commands: 0,
        }
    }

    fn prev(s: &WorkerSample) -> Prev {
        let e = &s.report.engine;
        Prev {
            at: s.at,
            rx: e.rx_packets,
            tx: e.tx_packets,
            drops: e.drops,
            hist: e.residence_ns.clone(),
            rates: Rates::default(),
        }
    }

    #[test]
    fn rates_and_latency_cover_only_the_interval() {
        let t0 = Instant::now();
        // Before: 100 slow packets (1 ms). Interval: 500 more at 10 µs, 5 auth drops.
        let a = sample(t0, 100, 0, &[1_000_000; 100]);
        let mut later = vec![1_000_000; 100];
        later.extend([10_000; 500]);
        let b = sample(t0 + Duration::from_millis(500), 600, 5, &later);
        let r = rates(&prev(&a), &b);
        assert_eq!(r.rx_pps, 1000.0);
        assert_eq!(r.drop_pps, 10.0);
        assert_eq!(r.drops[DropReason::SrtpAuth.index()], 10.0);
        // The slow packets before the interval do not show in its p99.
        // (HDR histograms report the top of the 3-digit bucket: 10.239 µs.)
        assert!((10.0..10.3).contains(&r.p99_us), "{}", r.p99_us);
    }

    #[test]
    fn a_repeated_snapshot_keeps_the_last_rates() {
        let t0 = Instant::now();
        let a = sample(t0, 100, 0, &[]);
        let mut p = prev(&a);
        p.rates.rx_pps = 42.0;
        assert_eq!(rates(&p, &a).rx_pps, 42.0);
    }
}
