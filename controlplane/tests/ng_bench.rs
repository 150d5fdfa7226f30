//! NG control-plane benchmarks against the real `ferrelay` binary and rtpengine,
//! both as child processes driven by the same in-test client in the same run:
//! offer+answer+delete cycles per second (and the ratio), and resident memory per
//! established call (RSS delta of each relay's own process, read from /proc).
//!
//! The non-ignored smoke test runs 200 cycles against both so the harness cannot
//! rot; the benchmarks are `--ignored` (see `perf/ng/README.md` for the commands).
//! `FERRELAY_BENCH_CALLS`, `FERRELAY_BENCH_CLIENTS` change the load;
//! `FERRELAY_BENCH_JSON` names a file the numbers are written to.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_ferrelay");

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `ferrelay` binary on loopback; killed on drop.
struct Ferrelay {
    child: Child,
    ng: SocketAddr,
}

impl Drop for Ferrelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP (NG listens on both).
fn free_port() -> u16 {
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = u.local_addr().unwrap().port();
    let t = std::net::TcpListener::bind(("127.0.0.1", p)).unwrap();
    drop((u, t));
    p
}

/// Answers `ping` within 5 s, or panics naming the relay.
async fn wait_ping(ng: SocketAddr, who: &str) {
    for _ in 0..50 {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(b"p d7:command4:pinge", ng).await.unwrap();
        let mut buf = [0u8; 64];
        if tokio::time::timeout(Duration::from_millis(100), s.recv_from(&mut buf))
            .await
            .is_ok()
        {
            return;
        }
    }
    panic!("{who} did not answer ping on {ng}");
}

async fn ferrelay(ports: (u16, u16), workers: usize) -> Ferrelay {
    let ng: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = Command::new(BIN)
        .args(["--listen-ng", &ng.to_string()])
        .args(["--listen-tcp-ng", &ng.to_string()])
        .args(["--workers", &workers.to_string()])
        .args(["--port-min", &ports.0.to_string()])
        .args(["--port-max", &ports.1.to_string()])
        .args(["--delete-delay", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ferrelay binary starts");
    let f = Ferrelay { child, ng };
    wait_ping(ng, "ferrelay").await;
    f
}

/// Resident memory of process `pid` in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .expect("VmRSS readable")
}

/// What one run of NG requests measured.
#[derive(Debug)]
struct Rate {
    calls: usize,
    secs: f64,
    p50: Duration,
    p99: Duration,
}

impl Rate {
    fn per_s(&self) -> f64 {
        self.calls as f64 / self.secs
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Steps {
    /// offer, answer, delete: a whole call per iteration.
    Cycle,
    /// offer and answer only: calls stay established.
    Setup,
}

/// `calls` calls over `clients` concurrent clients, each sending its requests one
/// after another; every reply must be `ok`. Latency is per call (all its steps).
async fn drive(ng: SocketAddr, calls: usize, clients: usize, tag: &str, steps: Steps) -> Rate {
    let per = calls / clients;
    let t = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|k| {
            let tag = tag.to_owned();
            tokio::spawn(async move {
                let mut c = Ng::new(ng).await;
                let mut lat = Vec::with_capacity(per);
                for i in 0..per {
                    let id = format!("{tag}-{k}-{i}");
                    let t = Instant::now();
                    let r = c.call(&offer(&id, "A", &sdp(4000, ""), vec![])).await;
                    assert_eq!(result(&r), "ok", "offer {id}: {r:?}");
                    let r = c.call(&answer(&id, "A", "B", &sdp(5000, ""), vec![])).await;
                    assert_eq!(result(&r), "ok", "answer {id}: {r:?}");
                    if steps == Steps::Cycle {
                        let r = c.call(&cmd("delete", &id)).await;
                        assert_eq!(result(&r), "ok", "delete {id}: {r:?}");
                    }
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for h in tasks {
        lat.extend(h.await.unwrap());
    }
    let secs = t.elapsed().as_secs_f64();
    lat.sort();
    let n = lat.len();
    let pct = |p: f64| lat[((n as f64 * p) as usize).min(n - 1)];
    Rate {
        calls: n,
        secs,
        p50: pct(0.5),
        p99: pct(0.99),
    }
}

fn show(who: &str, r: &Rate) {
    println!(
        "{who:>9}: {} offer+answer+delete cycles in {:.2} s = {:.0} calls/s (p50 {:?}, p99 {:?} per call)",
        r.calls,
        r.secs,
        r.per_s(),
        r.p50,
        r.p99
    );
}

/// The same cycles against both relays, ferrelay first, after a warm-up of each.
async fn compare(calls: usize, clients: usize, workers: usize) -> (Rate, Rate) {
    let f = ferrelay((30_000, 39_999), workers).await;
    let r = rtpengine::start((40_000, 49_999), &[]).await;
    println!("ferrelay NG on {}, rtpengine NG on {}", f.ng, r.ng);
    drive(f.ng, 100.min(calls), clients, "warm", Steps::Cycle).await;
    drive(r.ng, 100.min(calls), clients, "warm", Steps::Cycle).await;
    let fr = drive(f.ng, calls, clients, "bench", Steps::Cycle).await;
    let rr = drive(r.ng, calls, clients, "bench", Steps::Cycle).await;
    show("ferrelay", &fr);
    show("rtpengine", &rr);
    println!("ratio ferrelay/rtpengine: {:.2}", fr.per_s() / rr.per_s());
    (fr, rr)
}

fn write_json(body: String) {
    if let Ok(path) = std::env::var("FERRELAY_BENCH_JSON") {
        std::fs::write(&path, body).expect("writing FERRELAY_BENCH_JSON");
        println!("wrote {path}");
    }
}

fn rate_json(r: &Rate) -> String {
    format!(
        r#"{{"calls": {}, "seconds": {:.3}, "calls_per_s": {:.0}, "p50_us": {}, "p99_us": {}}}"#,
        r.calls,
        r.secs,
        r.per_s(),
        r.p50.as_micros(),
        r.p99.as_micros()
    )
}

/// 200 cycles against both relays: every request answered `ok` by each, so the
/// benchmark below keeps working. No speed is asserted here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ng_cycles_smoke_against_both_relays() {
    let (f, r) = compare(200, 2, 1).await;
    assert_eq!((f.calls, r.calls), (200, 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark; see perf/ng/README.md"]
async fn ng_throughput_vs_rtpengine() {
    let calls = env("FERRELAY_BENCH_CALLS", 20_000);
    let clients = env("FERRELAY_BENCH_CLIENTS", 4).max(1);
    let workers = env("FERRELAY_BENCH_WORKERS", 2).max(1);
    let (f, r) = compare(calls, clients, workers).await;
    write_json(format!(
        "{{\n  \"bench\": \"ng offer+answer+delete cycles\",\n  \"clients\": {clients},\n  \"ferrelay_workers\": {workers},\n  \"ferrelay\": {},\n  \"rtpengine\": {},\n  \"ratio\": {:.2}\n}}\n",
        rate_json(&f),
        rate_json(&r),
        f.per_s() / r.per_s()
    ));
}

/// RSS of each relay's process before and after `calls` established calls (offer
/// and answer, no delete), over a port range wide enough for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark; see perf/ng/README.md"]
async fn memory_per_established_call() {
    // Four sockets per call: the calls must fit the descriptor hard limit.
    let calls = env("FERRELAY_BENCH_CALLS", 4_000);
    let clients = env("FERRELAY_BENCH_CLIENTS", 4).max(1);
    let workers = env("FERRELAY_BENCH_WORKERS", 2).max(1);
    let ports = (20_000, 65_000);
    let mut out = Vec::new();
    for who in ["ferrelay", "rtpengine"] {
        let (pid, ng, _guard): (u32, SocketAddr, Box<dyn std::any::Any>) = if who == "ferrelay" {
            let f = ferrelay(ports, workers).await;
            (f.child.id(), f.ng, Box::new(f))
        } else {
            let r = rtpengine::start(ports, &[]).await;
            (r.pid(), r.ng, Box::new(r))
        };
        // Whole calls first (set up and deleted), enough to wrap every worker's
        // 16k-entry command ring: fixed-size rings and tables get their pages
        // touched here, so only what established calls hold counts below.
        let warm = env("FERRELAY_BENCH_WARM", 6_000);
        drive(ng, warm, clients, "warm", Steps::Cycle).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_kib(pid);
        let r = drive(ng, calls, clients, "mem", Steps::Setup).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = rss_kib(pid);
        let per = (after.saturating_sub(before)) as f64 / r.calls as f64;
        println!(
            "{who:>9}: RSS {before} KiB -> {after} KiB with {} more established calls: {per:.2} KiB per call",
            r.calls
        );
        out.push(format!(
            r#""{who}": {{"calls": {}, "rss_before_kib": {before}, "rss_after_kib": {after}, "kib_per_call": {per:.2}}}"#,
            r.calls
        ));
    }
    write_json(format!(
        "{{\n  \"bench\": \"RSS delta per established call\",\n  \"ferrelay_workers\": {workers},\n  {}\n}}\n",
        out.join(",\n  ")
    ));
}
