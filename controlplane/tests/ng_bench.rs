//! NG control-plane throughput and memory per call, against the in-process relay.
//! Ignored by default; run it in release:
//! `cargo test --release -p ferrelay --test ng_bench -- --ignored --nocapture`
//! (`FERRELAY_BENCH_CALLS`, `FERRELAY_BENCH_CLIENTS` change the load).

mod common;

use std::time::{Duration, Instant};

use common::*;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of this process in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark; run with --release -- --ignored --nocapture"]
async fn ng_offer_answer_delete_throughput() {
    let calls = env("FERRELAY_BENCH_CALLS", 2000);
    let clients = env("FERRELAY_BENCH_CLIENTS", 4).max(1);
    let relay = relay_with(|c| {
        (c.port_min, c.port_max) = (20_000, 39_999);
        c.workers = 2;
    })
    .await;
    let addr = relay.ng_udp;
    let rss0 = rss_kib();

    let run = |phase: &'static str| {
        let per = calls / clients;
        (0..clients)
            .map(|k| {
                tokio::spawn(async move {
                    let mut ng = Ng::new(addr).await;
                    let mut lat = Vec::with_capacity(per);
                    for i in 0..per {
                        let id = format!("bench-{k}-{i}");
                        let t = Instant::now();
                        match phase {
                            "setup" => {
                                let r = ng.call(&offer(&id, "A", &sdp(4000, ""), vec![])).await;
                                assert_eq!(result(&r), "ok", "{r:?}");
                                let r = ng
                                    .call(&answer(&id, "A", "B", &sdp(5000, ""), vec![]))
                                    .await;
                                assert_eq!(result(&r), "ok", "{r:?}");
                            }
                            _ => {
                                let r = ng.call(&cmd("delete", &id)).await;
                                assert_eq!(result(&r), "ok", "{r:?}");
                            }
                        }
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect::<Vec<_>>()
    };

    let t = Instant::now();
    let mut lat = Vec::new();
    for h in run("setup") {
        lat.extend(h.await.unwrap());
    }
    let setup = t.elapsed();
    let rss1 = rss_kib();
    let n = lat.len();
    lat.sort();
    let pct = |p: f64| lat[((n as f64 * p) as usize).min(n - 1)];
    println!(
        "setup (offer+answer) of {n} calls by {clients} clients: {:.0} calls/s, p50 {:?} p99 {:?} max {:?}",
        n as f64 / setup.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        lat[n - 1]
    );
    println!(
        "RSS {rss0} KiB -> {rss1} KiB with {n} live calls: {:.1} KiB per call",
        (rss1.saturating_sub(rss0)) as f64 / n as f64
    );
    let t = Instant::now();
    let mut lat = Vec::new();
    for h in run("delete") {
        lat.extend(h.await.unwrap());
    }
    let del = t.elapsed();
    println!(
        "delete of {} calls: {:.0} calls/s",
        lat.len(),
        lat.len() as f64 / del.as_secs_f64()
    );
    assert!(setup < Duration::from_secs(120));
    relay.shutdown().await;
}
