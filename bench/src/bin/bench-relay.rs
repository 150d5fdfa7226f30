//! bench-relay: the ferrelay data plane on the baselines' port layout, for the
//! end-to-end comparison. One worker; pair i is flows base+2i <-> base+2i+1, each
//! latching its first source and forwarding through the other (plain RTP, no
//! rewrites), installed the way the control plane does it: add both, then update
//! each to name the other as its output.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use ferrelay_bench::fwd::{FwdArgs, announce_ready};
use ferrelay_dataplane::{
    Backend, Dataplane, DataplaneConfig, DataplaneError, Event, WorkerHandle, WorkerReport,
};
use ferrelay_engine::{Component, FlowId, FlowRule, Output};

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    fwd: FwdArgs,
    /// io_uring or mmsg.
    #[arg(long, default_value = "io_uring")]
    backend: String,
    /// Core the worker is pinned to.
    #[arg(long, default_value_t = 1)]
    core: usize,
    /// Provided receive buffers (same as fwd-uring's 4096 by default).
    #[arg(long, default_value_t = 4096)]
    recv_buffers: u16,
    /// Print the worker's counters to stderr every this many seconds (0 = never).
    #[arg(long, default_value_t = 0.0)]
    report_every: f64,
}

/// Retries a command while the worker's ring is full: setup back-pressure, not an error.
fn with_room<T>(
    h: &mut WorkerHandle,
    mut f: impl FnMut(&mut WorkerHandle) -> Result<T, DataplaneError>,
) -> Result<T, DataplaneError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f(h) {
            Err(DataplaneError::RingFull { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return other,
        }
    }
}

/// `add_flow` consumes the socket even when the ring is full, so each try gets a dup.
fn add_with_room(h: &mut WorkerHandle, s: &UdpSocket) -> anyhow::Result<FlowId> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match h.add_flow(s.try_clone()?, FlowRule::new(Component::Rtp)) {
            Err(DataplaneError::RingFull { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return other.context("adding a flow"),
        }
    }
}

fn print_report(r: &WorkerReport) {
    let e = &r.engine;
    let io = &r.io;
    let h = &e.residence_ns;
    eprintln!(
        "bench-relay {}: rx {} tx {} drops {} | rx batches {} ({:.1}/batch) tx errors {} no-buffers {} | residence ns p50 {} p99 {} max {}",
        r.backend.as_str(),
        e.rx_packets,
        e.tx_packets,
        e.drops.total(),
        io.rx_batches,
        io.rx_datagrams as f64 / io.rx_batches.max(1) as f64,
        io.tx_errors,
        io.rx_no_buffers,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    );
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let backend = match a.backend.as_str() {
        "io_uring" => Backend::IoUring,
        "mmsg" => Backend::Mmsg,
        other => anyhow::bail!("unknown backend {other:?} (io_uring|mmsg)"),
    };
    let socks = a.fwd.bind_all()?;
    let flows = socks.len() as u32;
    let mut dp = Dataplane::start(DataplaneConfig {
        workers: 1,
        cores: Some(vec![a.core]),
        backend,
        max_flows_per_worker: flows.max(2),
        recv_buffers: a.recv_buffers,
        ..DataplaneConfig::default()
    })
    .context("starting the data plane")?;
    let w = dp.worker(0).context("worker 0")?;

    let mut ids: Vec<FlowId> = Vec::with_capacity(socks.len());
    for s in &socks {
        ids.push(add_with_room(w, s)?);
    }
    drop(socks);
    for (i, &id) in ids.iter().enumerate() {
        let mut rule = FlowRule::new(Component::Rtp);
        rule.rtp_out = Some(Output { via: ids[i ^ 1] });
        with_room(w, |w| w.update_flow(id, rule.clone()))?;
    }
    announce_ready(&format!("ferrelay-{}", w.backend().as_str()), ids.len());

    let deadline = Instant::now() + a.fwd.run_for();
    let every = Duration::from_secs_f64(a.report_every.clamp(0.0, 3600.0));
    let mut next_report = Instant::now() + every;
    let mut failures = 0u64;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        w.ack_events();
        while let Some(ev) = w.try_recv_event() {
            match ev {
                Event::WorkerStats(r) if !every.is_zero() && Instant::now() >= next_report => {
                    next_report += every;
                    print_report(&r);
                }
                Event::CommandFailed { id, error } => {
                    failures += 1;
                    if failures <= 5 {
                        eprintln!("bench-relay: command for {id:?} failed: {error}");
                    }
                }
                _ => {}
            }
        }
    }
    dp.shutdown();
    Ok(())
}
