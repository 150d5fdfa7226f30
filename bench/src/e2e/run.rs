//! One measured run: start a forwarder process pinned to its core, load it from this
//! process on another core, and read its CPU over a steady-state window.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrelay_tools::{Call, CallSource, FixedPairs, LoadConfig, LoadRun};
use serde::Serialize;

use super::cpu::{CpuSample, clock_ticks_per_sec};

/// A forwarder to measure: a binary taking the `FwdArgs` command line plus extras.
#[derive(Debug, Clone)]
pub struct Forwarder {
    pub name: String,
    pub bin: PathBuf,
    pub extra_args: Vec<String>,
}

/// The shape of the load and the measurement.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub ip: IpAddr,
    pub base_port: u16,
    pub calls: usize,
    pub pps: u32,
    pub payload: usize,
    pub warmup: Duration,
    pub window: Duration,
    /// Core the forwarder process is confined to (taskset).
    pub forwarder_core: usize,
    /// Cores the load threads run on.
    pub load_cores: Vec<usize>,
    /// Sender threads and receiver threads of the load generator (each).
    pub load_threads: usize,
}

/// What one run measured. CPU figures are per packet forwarded in the window,
/// counted where the load generator received them.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub forwarder: String,
    pub round: usize,
    pub window_s: f64,
    pub forwarded: u64,
    pub forwarded_pps: f64,
    pub user_us_per_pkt: f64,
    pub sys_us_per_pkt: f64,
    /// utime + stime.
    pub total_us_per_pkt: f64,
    /// schedstat on-CPU time (ns-precise total), per packet.
    pub oncpu_us_per_pkt: f64,
    /// Share of one core the forwarder used in the window (schedstat).
    pub core_util_pct: f64,
    /// This process's (the load generator's) on-CPU time per packet, for context.
    pub loadgen_us_per_pkt: f64,
    pub sent: u64,
    pub lost: u64,
    pub loss_pct: f64,
    pub duplicates: u64,
    pub reordered: u64,
    pub misrouted: u64,
    /// Packets the generator's SRTP receive contexts refused (bridged legs only).
    pub srtp_errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Offer+answer pairs per second when the calls were set up over NG (one request
    /// in flight); `None` for fixed port layouts.
    pub setup_calls_per_s: Option<f64>,
}

/// Kills the forwarder however the run ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until every port of the layout can be bound again: an io_uring process's
/// sockets are released by the kernel's deferred ring teardown, after it has exited.
fn wait_ports_free(plan: &RunPlan) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let busy = (0..2 * plan.calls as u32).find(|i| {
            let port = plan.base_port + *i as u16;
            std::net::UdpSocket::bind((plan.ip, port)).is_err()
        });
        match busy {
            None => return Ok(()),
            Some(i) if Instant::now() >= deadline => {
                bail!("port {} still in use after 15 s", plan.base_port + i as u16)
            }
            Some(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn spawn(f: &Forwarder, plan: &RunPlan) -> anyhow::Result<Guard> {
    wait_ports_free(plan)?;
    let seconds = (plan.warmup + plan.window).as_secs_f64() + 30.0;
    let mut child = Command::new("taskset")
        .arg("-c")
        .arg(plan.forwarder_core.to_string())
        .arg(&f.bin)
        .args(["--ip", &plan.ip.to_string()])
        .args(["--base-port", &plan.base_port.to_string()])
        .args(["--pairs", &plan.calls.to_string()])
        .args(["--seconds", &format!("{seconds:.0}")])
        .args(&f.extra_args)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} under taskset", f.bin.display()))?;
    let stdout = child.stdout.take().context("forwarder stdout")?;
    let guard = Guard(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(Duration::from_secs(15)) {
        Ok(line) if line.starts_with("ready") => Ok(guard),
        Ok(line) => bail!("{} did not start: {line:?}", f.name),
        Err(_) => bail!("{} did not report ready within 15 s", f.name),
    }
}

/// Runs `f` once under the plan's load and measures it.
///
/// With `perf_data`, the window is also sampled by `perf record` (a profile run: its
/// CPU figures include perf's own cost and belong apart from the measured rounds).
pub fn run_one(
    f: &Forwarder,
    plan: &RunPlan,
    round: usize,
    perf_data: Option<&std::path::Path>,
) -> anyhow::Result<(RunResult, Option<super::profile::Profile>)> {
    let guard = spawn(f, plan)?;
    let calls = FixedPairs::new(plan.ip, plan.base_port).calls(plan.calls)?;
    let calls = calls.into_iter().map(Call::from).collect();
    let out = measure(&f.name, guard.0.id(), calls, plan, round, perf_data);
    drop(guard);
    out
}

/// Loads the relay process `pid` (already running, its `calls` set up) with the plan's
/// RTP and measures its CPU over the window. The caller stops the process afterwards.
pub fn measure(
    name: &str,
    pid: u32,
    calls: Vec<Call>,
    plan: &RunPlan,
    round: usize,
    perf_data: Option<&std::path::Path>,
) -> anyhow::Result<(RunResult, Option<super::profile::Profile>)> {
    let tail = Duration::from_millis(500);
    let cfg = LoadConfig {
        pps: plan.pps,
        payload_len: plan.payload,
        duration: plan.warmup + plan.window + tail,
        warmup: plan.warmup,
        drain: Duration::from_millis(300),
        sender_threads: plan.load_threads.max(1),
        receiver_threads: plan.load_threads.max(1),
        cpus: plan.load_cores.clone(),
    };
    let ticks = clock_ticks_per_sec();
    let me = std::process::id();
    let load = LoadRun::start_calls(cfg, calls)?;
    std::thread::sleep(plan.warmup);

    let c0 = CpuSample::read(pid)?;
    let l0 = CpuSample::read(me)?;
    let r0 = load.live().received.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let perf = perf_data
        .map(|p| super::profile::start(pid, plan.window, p))
        .transpose()?;
    std::thread::sleep(plan.window);
    let c1 = CpuSample::read(pid)?;
    let l1 = CpuSample::read(me)?;
    let r1 = load.live().received.load(Ordering::Relaxed);
    let window = t0.elapsed().as_secs_f64();

    let report = load.wait()?;
    let profile = match (perf, perf_data) {
        (Some(child), Some(p)) => Some(super::profile::finish(child, p, name)?),
        _ => None,
    };
    let fwd = r1 - r0;
    if fwd == 0 {
        bail!("{name}: nothing forwarded in the window");
    }
    let d = c1.since(&c0, ticks);
    let lg = l1.since(&l0, ticks);
    let per = |s: f64| s * 1e6 / fwd as f64;
    let result = RunResult {
        forwarder: name.to_string(),
        round,
        window_s: window,
        forwarded: fwd,
        forwarded_pps: fwd as f64 / window,
        user_us_per_pkt: per(d.user_s),
        sys_us_per_pkt: per(d.sys_s),
        total_us_per_pkt: per(d.user_s + d.sys_s),
        oncpu_us_per_pkt: per(d.on_cpu_s),
        core_util_pct: 100.0 * d.on_cpu_s / window,
        loadgen_us_per_pkt: per(lg.on_cpu_s),
        sent: report.sent,
        lost: report.lost,
        loss_pct: report.loss_pct,
        duplicates: report.duplicates,
        reordered: report.reordered,
        misrouted: report.misrouted,
        srtp_errors: report.srtp_errors,
        p50_us: report.latency.p50_us,
        p99_us: report.latency.p99_us,
        p999_us: report.latency.p999_us,
        max_us: report.latency.max_us,
        setup_calls_per_s: None,
    };
    Ok((result, profile))
}
