//! `/metrics`: the worker snapshots and the control plane's facts in Prometheus
//! text form, encoded by `prometheus-client` at scrape time (a `Collector`, so
//! nothing is counted twice: the workers own the counters, this only reads them).

use std::fmt;

use ferrelay_engine::DropReason;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::WorkerSample;

/// Residence-latency bucket bounds (seconds): 1 µs to 100 ms, the range a relay's
/// receive-to-send time spans from idle to overloaded.
const RESIDENCE_BOUNDS_S: [f64; 16] = [
    1e-6, 2e-6, 5e-6, 10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 20e-3,
    50e-3, 100e-3,
];

/// Facts only the control plane knows, read under its lock by the HTTP side.
#[derive(Debug, Clone, Default)]
pub struct RelayFacts {
    pub calls: u64,
    pub legs: u64,
    /// Port pairs held (live and draining calls) and the pool's total.
    pub port_pairs_in_use: u64,
    /// Released pairs whose sockets their workers keep for the next call.
    pub port_pairs_parked: u64,
    pub port_pairs_total: u64,
    /// NG commands executed (reply-cache hits excluded).
    pub ng_requests: u64,
    /// NG requests by `(command, result)` (reply-cache hits excluded).
    pub ng_commands: Vec<(&'static str, &'static str, u64)>,
    /// NG replies dropped from the cookie cache before their time (its byte or
    /// entry bound), so a retransmission of theirs would be executed again.
    pub ng_cache_evictions: u64,
    /// NG replies the cookie cache holds now, and their bytes as its bound
    /// counts them: what retransmission cover costs (let go 30–60 s on).
    pub ng_cache_entries: u64,
    pub ng_cache_bytes: u64,
    /// NG `query` requests answered from the last poll because too many already
    /// waited for fresh counters.
    pub ng_queries_not_waited: u64,
    /// NG TCP connections refused at the connection cap.
    pub ng_tcp_refused: u64,
    pub calls_managed: u64,
    pub calls_rejected: u64,
    /// Ended calls by reason label.
    pub calls_ended: Vec<(&'static str, u64)>,
    pub uptime_s: f64,
    pub command_ring_capacity: u64,
}

#[derive(Debug)]
struct Scrape {
    facts: RelayFacts,
    workers: Vec<Option<WorkerSample>>,
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: f64) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, f64>(&v, None)
}

/// One labelled sample of a family.
fn counter_at(m: &mut MetricEncoder<'_>, labels: &[(&str, &str)], v: u64) -> fmt::Result {
    m.encode_family(&labels)?
        .encode_counter::<NoLabelSet, _, f64>(&v, None)
}

fn gauge_at(m: &mut MetricEncoder<'_>, labels: &[(&str, &str)], v: f64) -> fmt::Result {
    m.encode_family(&labels)?.encode_gauge(&v)
}

impl Scrape {
    fn live(&self) -> impl Iterator<Item = (String, &WorkerSample)> {
        self.workers
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i.to_string(), s)))
    }

    /// A counter family with one sample per worker.
    fn per_worker(
        &self,
        e: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        f: impl Fn(&WorkerSample) -> u64,
    ) -> fmt::Result {
        let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (w, s) in self.live() {
            counter_at(&mut m, &[("worker", &w)], f(s))?;
        }
        Ok(())
    }

    fn per_worker_gauge(
        &self,
        e: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        f: impl Fn(&WorkerSample) -> f64,
    ) -> fmt::Result {
        let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (w, s) in self.live() {
            gauge_at(&mut m, &[("worker", &w)], f(s))?;
        }
        Ok(())
    }

    fn workers(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        self.per_worker(
            e,
            "ferrelay_worker_received_packets",
            "Datagrams the worker's engine received.",
            |s| s.report.engine.rx_packets,
        )?;
        self.per_worker(
            e,
            "ferrelay_worker_received_bytes",
            "Bytes the worker's engine received.",
            |s| s.report.engine.rx_bytes,
        )?;
        self.per_worker(
            e,
            "ferrelay_worker_sent_packets",
            "Datagrams the worker forwarded.",
            |s| s.report.engine.tx_packets,
        )?;
        self.per_worker(
            e,
            "ferrelay_worker_sent_bytes",
            "Bytes the worker forwarded.",
            |s| s.report.engine.tx_bytes,
        )?;
        let mut m = e.encode_descriptor(
            "ferrelay_worker_dropped_packets",
            "Datagrams the worker dropped, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (w, s) in self.live() {
            for (r, n) in s.report.engine.drops.iter() {
                counter_at(&mut m, &[("worker", &w), ("reason", r.as_str())], n)?;
            }
        }
        self.per_worker(
            e,
            "ferrelay_srtp_auth_failures",
            "SRTP/SRTCP packets whose authentication tag did not verify (RFC 3711 section 3.4).",
            |s| s.report.engine.drops.get(DropReason::SrtpAuth),
        )?;
        self.per_worker(
            e,
            "ferrelay_srtp_replays",
            "SRTP/SRTCP packets refused by the replay check (RFC 3711 section 3.3.2).",
            |s| s.report.engine.drops.get(DropReason::SrtpReplay),
        )?;
        self.per_worker_gauge(
            e,
            "ferrelay_worker_flows",
            "Flows installed on the worker.",
            |s| s.report.engine.flows as f64,
        )?;
        self.per_worker_gauge(
            e,
            "ferrelay_worker_command_ring_used",
            "Commands waiting in the worker's command ring at its last report.",
            |s| s.report.command_ring_occupied as f64,
        )?;
        let cap = self.facts.command_ring_capacity as f64;
        self.per_worker_gauge(
            e,
            "ferrelay_worker_command_ring_capacity",
            "Size of the worker's command ring.",
            |_| cap,
        )?;
        self.per_worker_gauge(
            e,
            "ferrelay_worker_event_ring_used",
            "Events waiting in the worker's event ring at its last report.",
            |s| s.report.event_ring_occupied as f64,
        )?;
        self.per_worker_gauge(
            e,
            "ferrelay_worker_event_ring_capacity",
            "Size of the worker's event ring.",
            |s| s.report.event_ring_capacity as f64,
        )?;
        self.per_worker(
            e,
            "ferrelay_worker_command_ring_full",
            "Commands refused because the worker's command ring was full.",
            |s| s.rejected_commands,
        )?;
        self.per_worker(
            e,
            "ferrelay_worker_events_lost",
            "Worker events lost to a full event ring.",
            |s| s.report.io.events_dropped + s.report.engine.events_overflow,
        )?;
        let mut m = e.encode_descriptor(
            "ferrelay_worker_io_errors",
            "Datagrams the I/O shell could not receive or send, by kind.",
            None,
            MetricType::Counter,
        )?;
        for (w, s) in self.live() {
            let io = &s.report.io;
            for (kind, n) in [
                ("rx_truncated", io.rx_truncated),
                ("rx_bad_source", io.rx_bad_source),
                ("rx_error", io.rx_errors),
                ("rx_no_buffers", io.rx_no_buffers),
                ("tx_error", io.tx_errors),
                ("tx_no_socket", io.tx_no_socket),
            ] {
                counter_at(&mut m, &[("worker", &w), ("kind", kind)], n)?;
            }
        }
        let mut m = e.encode_descriptor(
            "ferrelay_worker_io_backend",
            "The packet I/O backend each worker runs (1 for the one in use).",
            None,
            MetricType::Gauge,
        )?;
        for (w, s) in self.live() {
            gauge_at(
                &mut m,
                &[("worker", &w), ("backend", s.report.backend.as_str())],
                1.0,
            )?;
        }
        self.residence(e)
    }

    /// Receive-to-send time as a Prometheus histogram per worker, read from the
    /// worker's HDR histogram (the sum is its mean times its count).
    fn residence(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let mut m = e.encode_descriptor(
            "ferrelay_residence_seconds",
            "Time from receive to send handed to the kernel, per forwarded packet.",
            None,
            MetricType::Histogram,
        )?;
        for (w, s) in self.live() {
            let h = &s.report.engine.residence_ns;
            let mut below = 0u64;
            let mut buckets = Vec::with_capacity(RESIDENCE_BOUNDS_S.len() + 1);
            for b in RESIDENCE_BOUNDS_S {
                let ns = (b * 1e9) as u64;
                let upto = if h.is_empty() {
                    0
                } else {
                    h.count_between(0, ns)
                };
                buckets.push((b, upto.saturating_sub(below)));
                below = below.max(upto);
            }
            let count = h.len();
            buckets.push((f64::INFINITY, count.saturating_sub(below)));
            let sum = h.mean() * count as f64 / 1e9;
            m.encode_family(&[("worker", w.as_str())])?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        Ok(())
    }

    fn relay(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let f = &self.facts;
        gauge(
            e,
            "ferrelay_calls",
            "Calls the relay anchors.",
            f.calls as f64,
        )?;
        gauge(
            e,
            "ferrelay_legs",
            "Call legs (tags) across all calls.",
            f.legs as f64,
        )?;
        let flows: u64 = self
            .workers
            .iter()
            .flatten()
            .map(|s| s.report.engine.flows)
            .sum();
        gauge(
            e,
            "ferrelay_flows",
            "Flows installed across all workers.",
            flows as f64,
        )?;
        gauge(
            e,
            "ferrelay_ports_in_use",
            "Media ports held by live and draining calls.",
            (f.port_pairs_in_use * 2) as f64,
        )?;
        gauge(
            e,
            "ferrelay_ports_parked",
            "Free media ports whose sockets a worker keeps bound for its next call.",
            (f.port_pairs_parked * 2) as f64,
        )?;
        gauge(
            e,
            "ferrelay_ports_free",
            "Media ports left in the pools.",
            (f.port_pairs_total.saturating_sub(f.port_pairs_in_use) * 2) as f64,
        )?;
        counter(
            e,
            "ferrelay_ng_requests",
            "NG commands executed (replies served from the cookie cache excluded).",
            f.ng_requests,
        )?;
        let mut m = e.encode_descriptor(
            "ferrelay_ng_commands",
            "NG requests by command and result (unknown or undecodable: command=\"other\").",
            None,
            MetricType::Counter,
        )?;
        for (command, result, n) in &f.ng_commands {
            counter_at(&mut m, &[("command", command), ("result", result)], *n)?;
        }
        counter(
            e,
            "ferrelay_ng_cache_evictions",
            "NG replies evicted from the cookie cache early (byte or entry bound); a retransmission of theirs runs again.",
            f.ng_cache_evictions,
        )?;
        gauge(
            e,
            "ferrelay_ng_cache_entries",
            "NG replies held by the cookie cache for retransmissions (kept 30 to 60 s).",
            f.ng_cache_entries as f64,
        )?;
        gauge(
            e,
            "ferrelay_ng_cache_bytes",
            "Bytes the cookie cache holds: keys, replies and per-entry overhead, as its bound counts them.",
            f.ng_cache_bytes as f64,
        )?;
        counter(
            e,
            "ferrelay_ng_queries_not_waited",
            "NG queries answered from the last poll because too many waited for fresh counters.",
            f.ng_queries_not_waited,
        )?;
        counter(
            e,
            "ferrelay_ng_tcp_refused",
            "NG TCP connections closed at once because the connection cap was reached.",
            f.ng_tcp_refused,
        )?;
        counter(
            e,
            "ferrelay_calls_created",
            "Calls created by an offer.",
            f.calls_managed,
        )?;
        counter(
            e,
            "ferrelay_offers_rejected",
            "Offers refused (bad SDP, no ports, data plane refusal).",
            f.calls_rejected,
        )?;
        let mut m = e.encode_descriptor(
            "ferrelay_calls_ended",
            "Calls ended, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in &f.calls_ended {
            counter_at(&mut m, &[("reason", reason)], *n)?;
        }
        gauge(
            e,
            "ferrelay_uptime_seconds",
            "Seconds since the relay started.",
            f.uptime_s,
        )?;
        let mut m = e.encode_descriptor(
            "ferrelay_build_info",
            "The running build (value is always 1).",
            None,
            MetricType::Gauge,
        )?;
        gauge_at(&mut m, &[("version", env!("CARGO_PKG_VERSION"))], 1.0)
    }
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        self.relay(&mut e)?;
        self.workers(&mut e)
    }
}

/// The `/metrics` body for these facts and worker samples, in the Prometheus text
/// format (0.0.4).
pub fn render(facts: RelayFacts, workers: Vec<Option<WorkerSample>>) -> String {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(Scrape { facts, workers }));
    let mut om = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail; an error would leave a truncated body.
    if prometheus_client::encoding::text::encode(&mut om, &reg).is_err() {
        return String::new();
    }
    to_prometheus_text(&om)
}

/// OpenMetrics names a counter family without `_total` and its samples with it;
/// the Prometheus text format (what `promtool check metrics` reads) names both
/// with it. Renames the `HELP`/`TYPE` lines of counters and drops `# EOF`.
fn to_prometheus_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len() + 64 * counters.len());
    for line in om.lines() {
        if line == "# EOF" {
            continue;
        }
        let head = ["# HELP ", "# TYPE "]
            .into_iter()
            .find(|h| line.starts_with(h));
        if let Some(h) = head {
            let rest = &line[h.len()..];
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                out.push_str(h);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_families_get_their_total_suffix() {
        let om = "# HELP a_x Things.\n# TYPE a_x counter\na_x_total{w=\"0\"} 3\n\
                  # HELP a_g Level.\n# TYPE a_g gauge\na_g 1.0\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_x_total Things.\n# TYPE a_x_total counter\na_x_total{w=\"0\"} 3\n\
             # HELP a_g Level.\n# TYPE a_g gauge\na_g 1.0\n"
        );
    }

    #[test]
    fn empty_relay_renders_every_relay_family() {
        let text = render(RelayFacts::default(), vec![None]);
        for name in [
            "ferrelay_calls ",
            "ferrelay_ports_free ",
            "ferrelay_ng_requests_total ",
            "ferrelay_build_info{",
            "# TYPE ferrelay_residence_seconds histogram",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        assert!(!text.contains("# EOF"));
    }
}
