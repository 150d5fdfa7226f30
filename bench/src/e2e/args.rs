//! The flags both end-to-end benchmarks (`e2e-forward`, `compare-relays`) take: the
//! load, the rounds, the cores, and where the report goes. One definition, flattened
//! into each binary's own arguments.

use std::net::IpAddr;
use std::path::PathBuf;

use std::time::Duration;

use super::run::RunPlan;
use super::summary::PlanInfo;

// The RTP load and the measurement rounds (a plain comment: clap would take a doc
// comment as the binary's description).
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// fwd-uring's and fwd-mmsg's fixed port layout starts here.
    #[arg(long, default_value_t = 30_000)]
    pub base_port: u16,
    #[arg(long, default_value_t = 500)]
    pub calls: usize,
    /// Packets per second per direction per call.
    #[arg(long, default_value_t = 50)]
    pub pps: u32,
    #[arg(long, default_value_t = 160)]
    pub payload: usize,
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Steady-state measurement window, seconds.
    #[arg(long, default_value_t = 8.0)]
    pub window: f64,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[arg(long, default_value_t = 1)]
    pub forwarder_core: usize,
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub load_cores: Vec<usize>,
}

impl LoadArgs {
    /// Refuses rounds and windows the harness cannot measure sensibly.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!((1..=10).contains(&self.rounds), "--rounds must be 1..=10");
        anyhow::ensure!(
            (0.5..=60.0).contains(&self.window) && (0.0..=30.0).contains(&self.warmup),
            "--window must be 0.5..=60 s and --warmup 0..=30 s"
        );
        Ok(())
    }

    /// The run these flags describe, with `load_threads` load generator threads.
    pub fn run_plan(&self, load_threads: usize) -> RunPlan {
        RunPlan {
            ip: self.ip,
            base_port: self.base_port,
            calls: self.calls,
            pps: self.pps,
            payload: self.payload,
            warmup: Duration::from_secs_f64(self.warmup),
            window: Duration::from_secs_f64(self.window),
            forwarder_core: self.forwarder_core,
            load_cores: self.load_cores.clone(),
            load_threads,
        }
    }

    /// The load as the report records it (12-byte RTP header plus payload).
    pub fn plan_info(&self) -> PlanInfo {
        PlanInfo {
            calls: self.calls,
            pps_per_direction: self.pps,
            packet_len: 12 + self.payload,
            offered_pps: self.calls as u64 * 2 * u64::from(self.pps),
            warmup_s: self.warmup,
            window_s: self.window,
            rounds: self.rounds,
            forwarder_core: self.forwarder_core,
            load_cores: self.load_cores.clone(),
        }
    }
}

// Where the results are written and how the command is recorded (plain comment, as above).
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Where the result files go; nothing is written without it.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// README that lists result files (updated when --out-dir is given).
    #[arg(long, default_value = "perf/README.md")]
    pub readme: PathBuf,
    /// The command line to record (the wrapper script passes its own).
    #[arg(long)]
    pub record_command: Option<String>,
}

impl ReportArgs {
    /// The command line the report records: the wrapper script's, else this one's.
    pub fn command(&self) -> String {
        self.record_command
            .clone()
            .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "))
            .trim()
            .to_string()
    }
}
