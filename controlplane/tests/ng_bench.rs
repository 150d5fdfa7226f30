//! NG control-plane benchmarks against the real `ferrelay` binary and rtpengine,
//! both as child processes driven by the same in-test client in the same run:
//! offer+answer+delete cycles per second, each relay's own CPU time per cycle (from
//! `/proc/<pid>/task/*/schedstat`, so the client's share of a small host does not
//! hide the relay's capacity), and resident memory per established call.
//!
//! The client is cheap on purpose: every request is encoded before the measured
//! window, each client is one OS thread with a connected blocking socket (one
//! syscall to send, one to wait), and a reply is checked by a byte scan for its
//! cookie and `result: ok` instead of being decoded.
//!
//! The non-ignored smoke test runs 200 cycles against both so the harness cannot
//! rot; the benchmarks are `--ignored` (see `perf/ng/README.md` for the commands).
//! `FERRELAY_BENCH_CALLS`, `FERRELAY_BENCH_CLIENTS`, `FERRELAY_BENCH_WORKERS`,
//! `FERRELAY_BENCH_WARM`, `FERRELAY_BENCH_MUX`, `FERRELAY_BENCH_AGE_S` and
//! `FERRELAY_BENCH_NG_THREADS` change the load and the relay;
//! `FERRELAY_BENCH_JSON` names a file the numbers are written to.
//!
//! `FERRELAY_BENCH_RELAY_CPUS` and `FERRELAY_BENCH_CLIENT_CPUS` (CPU lists as
//! `taskset` reads them: `0`, `0-3,8`) confine every relay (each in turn, the
//! null responder too) to the first set and the client threads to the second, so
//! each relay gets the same cores and none shares them with its load. Unset,
//! everything shares every core. ferrelay's workers then default to one per
//! relay CPU. `FERRELAY_BENCH_RTPENGINE_ARGS` adds options to rtpengine's
//! command line in the rate benchmarks.
//!
//! `ng_rate_ceiling` adds a third process to the comparison: a null responder that
//! answers every datagram with `<cookie> d6:result2:oke` from one thread and does
//! nothing else. Its rate is what any relay answering on one thread could reach on
//! the host with this client, so it shows how much of a rate ratio the machine
//! leaves room for.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ferrelay::ng::Value;

/// The ferrelay binary measured: this build's, or `FERRELAY_BENCH_BIN` (another
/// build's, to compare two side by side in one period).
fn bin() -> String {
    std::env::var("FERRELAY_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ferrelay").into())
}

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
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = u.local_addr().unwrap().port();
    let t = std::net::TcpListener::bind(("127.0.0.1", p)).unwrap();
    drop((u, t));
    p
}

/// Answers `ping` within 5 s, or panics naming the relay.
fn wait_ping(ng: SocketAddr, who: &str) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..50 {
        s.send_to(b"p d7:command4:pinge", ng).unwrap();
        if s.recv_from(&mut buf).is_ok() {
            return;
        }
    }
    panic!("{who} did not answer ping on {ng}");
}

/// A CPU list as `taskset -c` takes it (`0`, `0-3,8`), as CPU numbers; panics
/// on a list `taskset` would refuse (spaces, a range running backwards), which
/// would otherwise surface as a relay that never answers.
fn cpu_list(list: &str) -> Vec<usize> {
    let num = |s: &str| -> usize {
        s.parse()
            .unwrap_or_else(|_| panic!("bad CPU number {s:?} in CPU list {list:?}"))
    };
    list.split(',')
        .flat_map(|item| {
            let (a, b) = item.split_once('-').unwrap_or((item, item));
            let (a, b) = (num(a), num(b));
            assert!(a <= b, "CPU range {item:?} runs backwards in {list:?}");
            a..=b
        })
        .collect()
}

/// `FERRELAY_BENCH_RELAY_CPUS`: where every relay runs, when set (checked).
fn relay_cpus() -> Option<String> {
    std::env::var("FERRELAY_BENCH_RELAY_CPUS")
        .ok()
        .inspect(|l| drop(cpu_list(l)))
}

/// `FERRELAY_BENCH_CLIENT_CPUS`: the CPUs the client threads take in turn.
fn client_cpus() -> Vec<usize> {
    std::env::var("FERRELAY_BENCH_CLIENT_CPUS").map_or_else(|_| Vec::new(), |l| cpu_list(&l))
}

/// `program`, started on the relay CPUs when they are set.
fn relay_command(program: &str) -> Command {
    match relay_cpus() {
        Some(list) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &list, program]);
            c
        }
        None => Command::new(program),
    }
}

/// `FERRELAY_BENCH_RTPENGINE_ARGS`: more rtpengine options, split at whitespace
/// (`--num-threads=1` to try its best on one core).
fn rtpengine_args() -> Vec<String> {
    std::env::var("FERRELAY_BENCH_RTPENGINE_ARGS")
        .map(|a| a.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// ferrelay's workers: `FERRELAY_BENCH_WORKERS`, else one per relay CPU when
/// those are set, else 2.
fn workers() -> usize {
    let default = relay_cpus().map_or(2, |l| cpu_list(&l).len());
    env("FERRELAY_BENCH_WORKERS", default).max(1)
}

/// `--ng-threads` from `FERRELAY_BENCH_NG_THREADS`, or the relay's default.
fn ng_threads_arg() -> Vec<String> {
    std::env::var("FERRELAY_BENCH_NG_THREADS")
        .map(|n| vec!["--ng-threads".into(), n])
        .unwrap_or_default()
}

fn ferrelay(ports: (u16, u16), workers: usize, extra: &[&str]) -> Ferrelay {
    let ng: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = relay_command(&bin())
        .args(["--listen-ng", &ng.to_string()])
        .args(["--listen-tcp-ng", &ng.to_string()])
        .args(["--workers", &workers.to_string()])
        .args(ng_threads_arg().iter())
        .args(["--port-min", &ports.0.to_string()])
        .args(["--port-max", &ports.1.to_string()])
        .args(["--delete-delay", "0"])
        .args([
            "--log-level",
            &std::env::var("FERRELAY_BENCH_LOG_LEVEL").unwrap_or("info".into()),
        ])
        // Its own HTTP port, so two relays (or another test) never collide.
        .args(["--listen-http", &format!("127.0.0.1:{}", free_port())])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ferrelay binary starts");
    let f = Ferrelay { child, ng };
    wait_ping(ng, "ferrelay");
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

/// Open descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Time on CPU of one schedstat file (its first field, in ns).
fn schedstat_ns(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of every live thread of process `pid`, in ns. Exact (the scheduler's
/// own clock, not ticks) and per process, so it is fair under a loaded host.
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc/<pid>/task readable")
        .flatten()
        .map(|t| schedstat_ns(&t.path().join("schedstat")))
        .sum()
}

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    schedstat_ns(std::path::Path::new("/proc/thread-self/schedstat"))
}

/// Set in the null responder's process: the address it answers on.
const NULL_ENV: &str = "FERRELAY_BENCH_NULL_NG";

/// This test binary again, running only `null_responder`: a process of its own,
/// so its CPU is counted like a relay's. Killed on drop (as `Ferrelay`).
fn null_responder_process() -> Ferrelay {
    let ng: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let exe = std::env::current_exe().expect("test binary path");
    let child = relay_command(&exe.to_string_lossy())
        .args([
            "--ignored",
            "--exact",
            "null_responder",
            "--test-threads",
            "1",
        ])
        .env(NULL_ENV, ng.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test binary starts again");
    let f = Ferrelay { child, ng };
    wait_ping(f.ng, "null responder");
    f
}

/// Not a test: the body of the null responder's process (see the module doc),
/// which serves until it is killed. Without its variable it returns at once.
#[test]
#[ignore = "run by ng_rate_ceiling in a process of its own"]
fn null_responder() {
    let Ok(addr) = std::env::var(NULL_ENV) else {
        return;
    };
    let sock = UdpSocket::bind(addr.as_str()).expect("null responder binds");
    let mut buf = vec![0u8; 65_536];
    let mut out = Vec::with_capacity(256);
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let cookie = buf[..n].iter().position(|b| *b == b' ').unwrap_or(n);
        out.clear();
        out.extend_from_slice(&buf[..cookie]);
        out.extend_from_slice(b" d6:result2:oke");
        let _ = sock.send_to(&out, peer);
    }
}

/// A relay under test: its process and NG address.
struct Target {
    who: &'static str,
    pid: u32,
    ng: SocketAddr,
}

#[derive(Clone, Copy, PartialEq)]
enum Steps {
    /// offer, answer, delete: a whole call per iteration.
    Cycle,
    /// offer and answer only: calls stay established.
    Setup,
}

/// Every request of one client, encoded before the measured window: `steps`
/// messages per call, each `<cookie> <bencode>`.
struct Script {
    msgs: Vec<Vec<u8>>,
    steps: usize,
}

fn script(tag: &str, client: usize, calls: usize, steps: Steps, mux: bool) -> Script {
    let extra = if mux { "a=rtcp-mux\r\n" } else { "" };
    let (offer_sdp, answer_sdp) = (sdp(4000, extra), sdp(5000, extra));
    let mut msgs = Vec::with_capacity(calls * 3);
    let mut n = 0;
    let mut push = |v: Value| {
        n += 1;
        let mut m = format!("{tag}{client}_{n} ").into_bytes();
        m.extend(v.encode());
        msgs.push(m);
    };
    for i in 0..calls {
        let id = format!("{tag}-{client}-{i}");
        push(offer(&id, "A", &offer_sdp, vec![]));
        push(answer(&id, "A", "B", &answer_sdp, vec![]));
        if steps == Steps::Cycle {
            push(cmd("delete", &id));
        }
    }
    let steps = if steps == Steps::Cycle { 3 } else { 2 };
    Script { msgs, steps }
}

/// Whether `reply` answers `req` (same cookie) with `result: ok`, by a byte scan.
fn reply_ok(req: &[u8], reply: &[u8]) -> bool {
    let cookie = req
        .iter()
        .position(|b| *b == b' ')
        .map_or(req, |n| &req[..=n]);
    reply.starts_with(cookie) && reply.windows(12).any(|w| w == b"6:result2:ok")
}

/// What one client did.
struct ClientRun {
    /// Per call (all its steps).
    lat: Vec<Duration>,
    /// The client thread's own CPU time.
    cpu_ns: u64,
    /// The first reply that was not `ok`, if any (the run stopped there).
    failed: Option<String>,
}

fn run_client(ng: SocketAddr, s: &Script, cpu: Option<usize>) -> ClientRun {
    if let Some(id) = cpu {
        assert!(
            core_affinity::set_for_current(core_affinity::CoreId { id }),
            "client thread cannot run on CPU {id}"
        );
    }
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(ng).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = vec![0u8; 65_536];
    let mut lat = Vec::with_capacity(s.msgs.len() / s.steps);
    let cpu0 = thread_cpu_ns();
    let mut failed = None;
    'calls: for call in s.msgs.chunks(s.steps) {
        let t = Instant::now();
        for m in call {
            sock.send(m).unwrap();
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    failed = Some(format!("no reply within {WAIT:?}: {e}"));
                    break 'calls;
                }
            };
            if !reply_ok(m, &buf[..n]) {
                failed = Some(format!(
                    "request {:?} got {:?}",
                    String::from_utf8_lossy(&m[..m.len().min(80)]),
                    String::from_utf8_lossy(&buf[..n.min(300)])
                ));
                break 'calls;
            }
        }
        lat.push(t.elapsed());
    }
    ClientRun {
        lat,
        cpu_ns: thread_cpu_ns() - cpu0,
        failed,
    }
}

/// What one run of NG requests measured.
#[derive(Debug)]
struct Rate {
    calls: usize,
    secs: f64,
    p50: Duration,
    p99: Duration,
    /// The relay's CPU time over the run (all its threads).
    relay_cpu_ns: u64,
    /// The client threads' CPU time over the run.
    client_cpu_ns: u64,
    /// Why a client stopped early, if one did.
    failed: Option<String>,
}

impl Rate {
    fn per_s(&self) -> f64 {
        self.calls as f64 / self.secs
    }

    /// The relay's CPU per call in µs.
    fn cpu_us(&self) -> f64 {
        self.relay_cpu_ns as f64 / 1e3 / self.calls.max(1) as f64
    }

    fn client_cpu_us(&self) -> f64 {
        self.client_cpu_ns as f64 / 1e3 / self.calls.max(1) as f64
    }
}

/// `calls` calls over `clients` concurrent clients, each sending its requests one
/// after another. Latency is per call (all its steps); the relay's CPU is sampled
/// right before the first request and right after the last reply.
fn drive(t: &Target, calls: usize, clients: usize, tag: &str, steps: Steps, mux: bool) -> Rate {
    let per = calls / clients;
    let scripts: Vec<Script> = (0..clients)
        .map(|k| script(tag, k, per, steps, mux))
        .collect();
    let cpus = client_cpus();
    let cpu0 = cpu_ns(t.pid);
    let start = Instant::now();
    let runs: Vec<ClientRun> = std::thread::scope(|sc| {
        let hs: Vec<_> = scripts
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let cpu = (!cpus.is_empty()).then(|| cpus[k % cpus.len()]);
                sc.spawn(move || run_client(t.ng, s, cpu))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let relay_cpu_ns = cpu_ns(t.pid) - cpu0;
    let client_cpu_ns = runs.iter().map(|r| r.cpu_ns).sum();
    let failed = runs.iter().find_map(|r| r.failed.clone());
    let mut lat: Vec<Duration> = runs.into_iter().flat_map(|r| r.lat).collect();
    lat.sort();
    let n = lat.len();
    let pct = |p: f64| {
        lat.get(((n as f64 * p) as usize).min(n.saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Rate {
        calls: n,
        secs,
        p50: pct(0.5),
        p99: pct(0.99),
        relay_cpu_ns,
        client_cpu_ns,
        failed,
    }
}

/// Like `drive`, but every request must be answered `ok`.
fn drive_ok(t: &Target, calls: usize, clients: usize, tag: &str, steps: Steps) -> Rate {
    let r = drive(t, calls, clients, tag, steps, false);
    if let Some(f) = &r.failed {
        panic!("{}: {f}", t.who);
    }
    r
}

fn show(who: &str, r: &Rate) {
    println!(
        "{who:>9}: {} cycles in {:.2} s = {:.0} cycles/s (p50 {:?}, p99 {:?}); \
         relay CPU {:.2} s = {:.1} µs/cycle; client CPU {:.1} µs/cycle",
        r.calls,
        r.secs,
        r.per_s(),
        r.p50,
        r.p99,
        r.relay_cpu_ns as f64 / 1e9,
        r.cpu_us(),
        r.client_cpu_us(),
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The same cycles against both relays, ferrelay first, after a warm-up of each.
async fn compare(calls: usize, clients: usize, workers: usize) -> (Rate, Rate) {
    let f = ferrelay((30_000, 39_999), workers, &[]);
    let extra = rtpengine_args();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let r = rtpengine::start_on((40_000, 49_999), &extra, relay_cpus().as_deref()).await;
    println!(
        "ferrelay NG on {}, rtpengine NG on {}; relay CPUs {}, client CPUs {:?}",
        f.ng,
        r.ng,
        relay_cpus().unwrap_or_else(|| "any".into()),
        client_cpus()
    );
    let ft = Target {
        who: "ferrelay",
        pid: f.child.id(),
        ng: f.ng,
    };
    let rt = Target {
        who: "rtpengine",
        pid: r.pid(),
        ng: r.ng,
    };
    let warm = 500.min(calls);
    drive_ok(&ft, warm, clients, "w", Steps::Cycle);
    drive_ok(&rt, warm, clients, "w", Steps::Cycle);
    println!("load average before: {}", load_average());
    let fr = drive_ok(&ft, calls, clients, "b", Steps::Cycle);
    let rr = drive_ok(&rt, calls, clients, "b", Steps::Cycle);
    show("ferrelay", &fr);
    show("rtpengine", &rr);
    println!(
        "ferrelay/rtpengine: rate {:.2}x, CPU per cycle {:.2}x less (capacity on dedicated cores); load average after: {}",
        fr.per_s() / rr.per_s(),
        rr.cpu_us() / fr.cpu_us(),
        load_average()
    );
    (fr, rr)
}

/// Where the relays and clients ran, and rtpengine's added options, as JSON
/// members (none when unpinned and unchanged).
fn placement_json() -> String {
    // A JSON string: the lists are digits, commas and dashes once checked, but
    // rtpengine's options may hold anything; what JSON would need escaped goes.
    let quoted = |s: &str| {
        let kept: String = s
            .chars()
            .filter(|c| !c.is_control() && !matches!(c, '"' | '\\'))
            .collect();
        format!("\"{kept}\"")
    };
    let mut out = String::new();
    if let Some(relay) = relay_cpus() {
        out += &format!("  \"relay_cpus\": {},\n", quoted(&relay));
    }
    if let Ok(client) = std::env::var("FERRELAY_BENCH_CLIENT_CPUS") {
        drop(cpu_list(&client));
        out += &format!("  \"client_cpus\": {},\n", quoted(&client));
    }
    let args = rtpengine_args();
    if !args.is_empty() {
        out += &format!("  \"rtpengine_args\": {},\n", quoted(&args.join(" ")));
    }
    out
}

fn write_json(body: String) {
    if let Ok(path) = std::env::var("FERRELAY_BENCH_JSON") {
        std::fs::write(&path, body).expect("writing FERRELAY_BENCH_JSON");
        println!("wrote {path}");
    }
}

fn rate_json(r: &Rate) -> String {
    format!(
        r#"{{"calls": {}, "seconds": {:.3}, "calls_per_s": {:.0}, "p50_us": {}, "p99_us": {}, "relay_cpu_us_per_call": {:.1}, "client_cpu_us_per_call": {:.1}}}"#,
        r.calls,
        r.secs,
        r.per_s(),
        r.p50.as_micros(),
        r.p99.as_micros(),
        r.cpu_us(),
        r.client_cpu_us(),
    )
}

#[test]
fn cpu_lists_read_as_taskset_reads_them() {
    assert_eq!(cpu_list("0"), [0]);
    assert_eq!(cpu_list("0-3,8"), [0, 1, 2, 3, 8]);
    assert_eq!(cpu_list("2,4-5"), [2, 4, 5]);
    for bad in ["", "a", "1-", "3-1", "0,3-1", " 2", "2, 4"] {
        assert!(
            std::panic::catch_unwind(|| cpu_list(bad)).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn reply_check_needs_cookie_and_ok() {
    let req = b"b0_1 d7:command4:pinge";
    assert!(reply_ok(req, b"b0_1 d3:sdp3:x=16:result2:oke"));
    assert!(!reply_ok(req, b"b0_2 d6:result2:oke"));
    assert!(!reply_ok(req, b"b0_1 d6:result5:errore"));
    assert!(!reply_ok(req, b"b0_1"));
}

/// 200 cycles against both relays: every request answered `ok` by each, and each
/// relay's CPU was seen, so the benchmark below keeps working. No speed asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ng_cycles_smoke_against_both_relays() {
    let (f, r) = compare(200, 2, 1).await;
    assert_eq!((f.calls, r.calls), (200, 200));
    assert!(f.relay_cpu_ns > 0 && r.relay_cpu_ns > 0);
}

/// The null responder, ferrelay and rtpengine under the same cycles, in that order:
/// how close each relay's rate comes to what the host allows one answering thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; see perf/ng/README.md"]
async fn ng_rate_ceiling() {
    let calls = env("FERRELAY_BENCH_CALLS", 20_000);
    let clients = env("FERRELAY_BENCH_CLIENTS", 4).max(1);
    let workers = workers();
    let n = null_responder_process();
    let nt = Target {
        who: "null",
        pid: n.child.id(),
        ng: n.ng,
    };
    drive_ok(&nt, 500.min(calls), clients, "w", Steps::Cycle);
    let nr = drive_ok(&nt, calls, clients, "b", Steps::Cycle);
    drop(n);
    let (f, r) = compare(calls, clients, workers).await;
    show("null", &nr);
    println!(
        "null/rtpengine: rate {:.2}x (the most one answering thread gets here); \
         ferrelay reaches {:.0} % of the null responder's rate; load average after: {}",
        nr.per_s() / r.per_s(),
        100.0 * f.per_s() / nr.per_s(),
        load_average()
    );
    write_json(format!(
        "{{\n  \"bench\": \"ng cycles: null responder, ferrelay, rtpengine\",\n  \"clients\": {clients},\n  \"ferrelay_workers\": {workers},\n{}  \"load_average_after\": \"{}\",\n  \"null\": {},\n  \"ferrelay\": {},\n  \"rtpengine\": {},\n  \"null_rate_ratio\": {:.2},\n  \"rate_ratio\": {:.2},\n  \"cpu_per_cycle_ratio\": {:.2}\n}}\n",
        placement_json(),
        load_average(),
        rate_json(&nr),
        rate_json(&f),
        rate_json(&r),
        nr.per_s() / r.per_s(),
        f.per_s() / r.per_s(),
        r.cpu_us() / f.cpu_us(),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; see perf/ng/README.md"]
async fn ng_throughput_vs_rtpengine() {
    let calls = env("FERRELAY_BENCH_CALLS", 20_000);
    let clients = env("FERRELAY_BENCH_CLIENTS", 4).max(1);
    let workers = workers();
    let (f, r) = compare(calls, clients, workers).await;
    write_json(format!(
        "{{\n  \"bench\": \"ng offer+answer+delete cycles\",\n  \"clients\": {clients},\n  \"ferrelay_workers\": {workers},\n{}  \"load_average_after\": \"{}\",\n  \"ferrelay\": {},\n  \"rtpengine\": {},\n  \"rate_ratio\": {:.2},\n  \"cpu_per_cycle_ratio\": {:.2}\n}}\n",
        placement_json(),
        load_average(),
        rate_json(&f),
        rate_json(&r),
        f.per_s() / r.per_s(),
        r.cpu_us() / f.cpu_us(),
    ));
}

/// Waits until a relay's reply cache has let go of everything it held: two
/// pings `secs` apart (both relays keep a reply two 30 s generations, and
/// rotate on a request, ferrelay also on its ticker), then a little time for the
/// memory to be handed back.
fn age(ng: SocketAddr, who: &str, secs: usize) {
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(secs as u64));
        wait_ping(ng, who);
    }
    std::thread::sleep(Duration::from_millis(1500));
}

/// RSS of each relay's process before and after `calls` established calls (offer
/// and answer, no delete), over a port range wide enough for them. Set-up stops
/// at the first refusal (ports or descriptors run out) and the calls reached are
/// reported; `FERRELAY_BENCH_MUX=1` offers and answers rtcp-mux so a call needs
/// one port per party instead of two. `FERRELAY_BENCH_AGE_S=31` lets the reply
/// caches drop the warm-up's replies before the baseline and the set-up's after
/// it (two pings 31 s apart each time), and reports the RSS per call again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; see perf/ng/README.md"]
async fn memory_per_established_call() {
    let calls = env("FERRELAY_BENCH_CALLS", 4_000);
    let clients = env("FERRELAY_BENCH_CLIENTS", 4).max(1);
    let workers = workers();
    let mux = env("FERRELAY_BENCH_MUX", 0) != 0;
    let age_s = env("FERRELAY_BENCH_AGE_S", 0);
    // Calls without media must outlive the wait (both relays default to 60 s).
    let timeout = ["--timeout=3600"];
    let ports = (20_000, 65_000);
    let mut out = Vec::new();
    for who in ["ferrelay", "rtpengine"] {
        let (t, _guard): (Target, Box<dyn std::any::Any>) = if who == "ferrelay" {
            let f = ferrelay(ports, workers, &timeout);
            let t = Target {
                who: "ferrelay",
                pid: f.child.id(),
                ng: f.ng,
            };
            (t, Box::new(f))
        } else {
            let r = rtpengine::start_on(ports, &timeout, relay_cpus().as_deref()).await;
            let t = Target {
                who: "rtpengine",
                pid: r.pid(),
                ng: r.ng,
            };
            (t, Box::new(r))
        };
        // Whole calls first (set up and deleted), enough to wrap every worker's
        // 16k-entry command ring: fixed-size rings and tables get their pages
        // touched here, so only what established calls hold counts below.
        let warm = env("FERRELAY_BENCH_WARM", 6_000);
        drive_ok(&t, warm, clients, "w", Steps::Cycle);
        std::thread::sleep(Duration::from_millis(200));
        // With aging asked for, the warm-up's own replies go first, so that the
        // baseline holds none and the aged reading below compares like with like.
        if age_s > 0 {
            age(t.ng, who, age_s);
        }
        let (before, fd0) = (rss_kib(t.pid), fds(t.pid));
        let r = drive(&t, calls, clients, "m", Steps::Setup, mux);
        std::thread::sleep(Duration::from_millis(200));
        let (after, fd1) = (rss_kib(t.pid), fds(t.pid));
        // A client stops at its first refusal, after its last complete call.
        let per = (after.saturating_sub(before)) as f64 / r.calls.max(1) as f64;
        // The same calls once the reply caches have let go of their offer and
        // answer replies: both relays keep a reply two 30 s generations and rotate
        // when a request arrives at least 30 s after the last rotation, so two
        // pings that far apart empty both. What a call holds for its lifetime,
        // where the figure above adds what its set-up holds for one minute.
        let aged = match age_s {
            0 => None,
            secs => {
                age(t.ng, who, secs);
                let (a, fd2) = (rss_kib(t.pid), fds(t.pid));
                let per = (a.saturating_sub(before)) as f64 / r.calls.max(1) as f64;
                println!(
                    "{who:>9}: after {} s and two pings (reply cache emptied): RSS {a} KiB, \
                     {per:.2} KiB per call; descriptors {fd2} (the calls are still up)",
                    2 * secs
                );
                assert!(
                    fd2 + 16 >= fd1,
                    "{who} let calls go while aging: {fd1} -> {fd2} fds"
                );
                Some((a, per))
            }
        };
        println!(
            "{who:>9}: RSS {before} KiB -> {after} KiB with {} more established calls \
             (of {calls} asked, rtcp-mux {mux}): {per:.2} KiB per call; descriptors {fd0} -> {fd1} \
             ({:.2} per call)",
            r.calls,
            (fd1.saturating_sub(fd0)) as f64 / r.calls.max(1) as f64
        );
        if let Some(f) = &r.failed {
            println!("{who:>9}: set-up stopped: {f}");
        }
        let aged = aged.map_or(String::new(), |(a, per)| {
            format!(r#", "rss_aged_kib": {a}, "kib_per_call_aged": {per:.2}"#)
        });
        out.push(format!(
            r#""{who}": {{"calls_asked": {calls}, "calls": {}, "rtcp_mux": {mux}, "rss_before_kib": {before}, "rss_after_kib": {after}, "kib_per_call": {per:.2}, "fds_before": {fd0}, "fds_after": {fd1}{aged}}}"#,
            r.calls
        ));
    }
    write_json(format!(
        "{{\n  \"bench\": \"RSS delta per established call\",\n  \"ferrelay_workers\": {workers},\n  {}\n}}\n",
        out.join(",\n  ")
    ));
}
