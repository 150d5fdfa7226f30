//! ferrelay-load: places calls through a relay (over NG, or on fixed port pairs),
//! sends RTP or SRTP both ways and reports loss, duplicates, reordering, jitter and
//! one-way latency. Modes: fixed load, ramp, soak.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ferrelay_srtp::Suite;
use ferrelay_tools::load::LoadRun;
use ferrelay_tools::modes::{self, Placer, RampConfig, Sampler};
use ferrelay_tools::{FixedPairs, LoadConfig, NgCallOptions, NgCalls, NgClient};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One run of --calls calls.
    Fixed,
    /// Fresh calls per step from --calls by --ramp-step up to --ramp-max; stops at
    /// the first step with loss >= --max-loss or p99 > --max-p99-us.
    Ramp,
    /// One long run printing a report line every --interval seconds.
    Soak,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Leg {
    Rtp,
    Srtp,
}

/// RTP/SRTP load generator for NG relays (ferrelay, rtpengine) and plain forwarders.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// NG address of the relay; calls are placed by offer/answer and deleted after.
    /// Without it, calls use fixed port pairs at --relay-ip/--base-port.
    #[arg(long)]
    ng: Option<SocketAddr>,
    /// Address the client sockets bind to and announce in SDP.
    #[arg(long, default_value = "127.0.0.1")]
    client_ip: IpAddr,
    /// Media on the offering (A) client's leg.
    #[arg(long, value_enum, default_value = "rtp")]
    a_leg: Leg,
    /// Media on the answering (B) client's leg.
    #[arg(long, value_enum, default_value = "rtp")]
    b_leg: Leg,
    /// SDES suite of SRTP legs.
    #[arg(long, default_value = "AES_CM_128_HMAC_SHA1_80")]
    suite: String,
    /// Fixed pairs: relay address the calls' ports live on.
    #[arg(long, default_value = "127.0.0.1")]
    relay_ip: IpAddr,
    /// Fixed pairs: call i uses base+2i (A side) and base+2i+1 (B side).
    #[arg(long, default_value_t = 30_000)]
    base_port: u16,
    #[arg(long, value_enum, default_value = "fixed")]
    mode: Mode,
    /// Calls (ramp: the first step).
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// Packets per second per direction per call (overrides --ptime).
    #[arg(long)]
    pps: Option<u32>,
    /// Packet time in ms: pps = 1000 / ptime.
    #[arg(long, default_value_t = 20)]
    ptime: u32,
    /// RTP payload bytes (packet = 12 + payload).
    #[arg(long, default_value_t = 160)]
    payload: usize,
    /// Sending time per run in seconds, warm-up included (soak: the whole soak).
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
    /// Ramp: calls added per step.
    #[arg(long, default_value_t = 100)]
    ramp_step: usize,
    /// Ramp: most calls tried.
    #[arg(long, default_value_t = 1000)]
    ramp_max: usize,
    /// Ramp: a step passes with loss below this percentage...
    #[arg(long, default_value_t = 0.1)]
    max_loss: f64,
    /// ... and p99 one-way latency at or below this many microseconds.
    #[arg(long, default_value_t = 10_000.0)]
    max_p99_us: f64,
    /// Soak: seconds between report lines.
    #[arg(long, default_value_t = 10.0)]
    interval: f64,
    /// NG reply timeout per try, ms.
    #[arg(long, default_value_t = 1000)]
    ng_timeout_ms: u64,
    /// Print the report as JSON (per-call figures included).
    #[arg(long)]
    json: bool,
    /// Leave out the progress bar even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

fn secs(v: f64, what: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        v.is_finite() && (0.0..=86_400.0).contains(&v),
        "--{what} must be within 0..=86400 seconds"
    );
    Ok(Duration::from_secs_f64(v))
}

/// A bar over the run's sending time with live rates; hidden when stdout is not a
/// terminal or a report goes to it as JSON.
fn bar(show: bool, cfg: &LoadConfig) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(cfg.duration.as_millis() as u64);
    b.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let pps = match a.pps {
        Some(p) => p,
        None => {
            anyhow::ensure!(
                a.ptime > 0 && a.ptime <= 1000,
                "--ptime must be 1..=1000 ms"
            );
            1000 / a.ptime
        }
    };
    let cfg = LoadConfig {
        pps,
        payload_len: a.payload,
        duration: secs(a.duration, "duration")?,
        warmup: secs(a.warmup, "warmup")?,
        drain: secs(a.drain, "drain")?,
        sender_threads: a.senders,
        receiver_threads: a.receivers,
        cpus: a.cpus.clone(),
    };
    let suite = Suite::from_sdes_name(&a.suite)
        .ok_or_else(|| anyhow::anyhow!("unknown SRTP suite {}", a.suite))?;
    let mut placer = match a.ng {
        Some(ng) => Placer::Ng(NgCalls::new(
            NgClient::new(ng, Duration::from_millis(a.ng_timeout_ms))?,
            NgCallOptions {
                client_ip: a.client_ip,
                a_srtp: a.a_leg == Leg::Srtp,
                b_srtp: a.b_leg == Leg::Srtp,
                suite,
                ptime_ms: 1000 / pps.max(1),
                ..NgCallOptions::default()
            },
        )),
        None => {
            anyhow::ensure!(
                a.a_leg == Leg::Rtp && a.b_leg == Leg::Rtp,
                "SRTP legs need keys exchanged over NG: give --ng"
            );
            Placer::Fixed(FixedPairs::new(a.relay_ip, a.base_port))
        }
    };
    let show = !a.no_progress && !a.json && std::io::stdout().is_terminal();
    let pb = bar(show && a.mode != Mode::Soak, &cfg);
    let mut sampler = Sampler::default();
    let mut tick = |run: &LoadRun| {
        let s = sampler.sample(run);
        pb.set_position((s.elapsed_s * 1000.0) as u64);
        pb.set_message(format!(
            "sent {} recv {} ({:.0}/{:.0} pps) srtp-err {} corrupt {}",
            s.sent, s.received, s.sent_pps, s.received_pps, s.srtp_errors, s.corrupt
        ));
    };
    match a.mode {
        Mode::Fixed => {
            let r = modes::run_once(
                &mut placer,
                &cfg,
                a.calls,
                Duration::from_millis(200),
                &mut tick,
            )?;
            pb.finish_and_clear();
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{r}");
            }
        }
        Mode::Soak => {
            let json = a.json;
            let mut s = Sampler::default();
            let mut line = |run: &LoadRun| {
                let x = s.sample(run);
                if json {
                    if let Ok(t) = serde_json::to_string(&x) {
                        println!("{t}");
                    }
                } else {
                    println!(
                        "t={:.0}s sent {} recv {} ({:.0}/{:.0} pps) srtp-err {} corrupt {}",
                        x.elapsed_s,
                        x.sent,
                        x.received,
                        x.sent_pps,
                        x.received_pps,
                        x.srtp_errors,
                        x.corrupt
                    );
                }
            };
            let r = modes::run_once(
                &mut placer,
                &cfg,
                a.calls,
                secs(a.interval, "interval")?,
                &mut line,
            )?;
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("{r}");
            }
        }
        Mode::Ramp => {
            let bounds = RampConfig {
                start: a.calls,
                step: a.ramp_step,
                max: a.ramp_max,
                loss_pct_max: a.max_loss,
                p99_max_us: a.max_p99_us,
            };
            let json = a.json;
            let mut step = |s: &modes::RampStep| {
                if !json {
                    pb.suspend(|| {
                        println!(
                            "step {} calls: {} (loss {:.3}%, p99 {:.0} us, {:.0} pps)",
                            s.calls,
                            if s.passed { "pass" } else { "FAIL" },
                            s.report.loss_pct,
                            s.report.latency.p99_us,
                            s.report.offered_pps
                        );
                    });
                }
            };
            let r = modes::ramp(
                &mut placer,
                &cfg,
                bounds,
                Duration::from_millis(200),
                &mut tick,
                &mut step,
            )?;
            pb.finish_and_clear();
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                match r.best_calls {
                    Some(c) => {
                        println!("highest passing: {c} calls ({:.0} pps offered)", r.best_pps)
                    }
                    None => println!("no step passed"),
                }
            }
        }
    }
    Ok(())
}
