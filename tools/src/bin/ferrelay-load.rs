//! ferrelay-load: places N calls' worth of RTP through a relay's port pairs and
//! reports loss, duplicates, reordering and one-way latency.

use std::net::IpAddr;
use std::time::Duration;

use clap::Parser;
use ferrelay_tools::{CallSource, FixedPairs, LoadConfig, LoadRun};

/// RTP load generator (v0: fixed port pairs, plain RTP).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Relay address the calls' ports live on.
    #[arg(long, default_value = "127.0.0.1")]
    relay_ip: IpAddr,
    /// First relay port: call i uses base+2i (A side) and base+2i+1 (B side).
    #[arg(long, default_value_t = 30_000)]
    base_port: u16,
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// Packets per second per direction per call.
    #[arg(long, default_value_t = 50)]
    pps: u32,
    /// RTP payload bytes (packet = 12 + payload).
    #[arg(long, default_value_t = 160)]
    payload: usize,
    /// Sending time in seconds, warm-up included.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds at the start excluded from the statistics.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds to keep receiving after the last send.
    #[arg(long, default_value_t = 0.5)]
    drain: f64,
    #[arg(long, default_value_t = 1)]
    senders: usize,
    #[arg(long, default_value_t = 1)]
    receivers: usize,
    /// Comma-separated cores to pin load threads to (round-robin).
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn secs(v: f64, what: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        v.is_finite() && (0.0..=3600.0).contains(&v),
        "--{what} must be within 0..=3600 seconds"
    );
    Ok(Duration::from_secs_f64(v))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let cfg = LoadConfig {
        pps: a.pps,
        payload_len: a.payload,
        duration: secs(a.duration, "duration")?,
        warmup: secs(a.warmup, "warmup")?,
        drain: secs(a.drain, "drain")?,
        sender_threads: a.senders,
        receiver_threads: a.receivers,
        cpus: a.cpus,
    };
    let calls = FixedPairs::new(a.relay_ip, a.base_port).calls(a.calls)?;
    let report = LoadRun::start(cfg, &calls)?.wait()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
