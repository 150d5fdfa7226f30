//! compare-relays: ferrelay (the real binary, NG-driven) against rtpengine (userspace)
//! and the fwd-uring baseline under the same RTP load, in alternating rounds; with
//! `-aescm`/`-gcm` targets one leg of every call is SDES-SRTP, so the same run gives
//! the CPU cost of RTP<->SRTP bridging (the load generator keeps the SRTP leg's keys).
//! Writes `<out-dir>/<stem>-<date>.{json,md}` and lists them in the README.

use std::net::SocketAddr;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ferrelay_bench::e2e::args::{LoadArgs, ReportArgs};
use ferrelay_bench::e2e::relay::{self, RelayKind, RelaySpec};
use ferrelay_bench::e2e::run::{Forwarder, RunPlan, RunResult, measure, run_one};
use ferrelay_bench::e2e::summary::{
    self, BASELINE, CPU_METHOD, Results, loadavg, machine, paired_ratio, sh, summarise,
};
use ferrelay_srtp::Suite;
use ferrelay_tools::{NgCallOptions, NgCalls, NgClient};

#[derive(Debug, Parser)]
// The wrapper scripts pass defaults first and the caller's flags after: last one wins.
#[command(args_override_self = true)]
struct Args {
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    report: ReportArgs,
    /// Cores the relays are confined to (taskset list, e.g. `1-4`); default: the
    /// forwarder core. fwd-uring always runs on the forwarder core.
    #[arg(long)]
    relay_cpus: Option<String>,
    /// ferrelay data-plane workers.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Load generator sender threads and receiver threads (each), pinned round-robin
    /// over --load-cores.
    #[arg(long, default_value_t = 1)]
    load_threads: usize,
    /// The ferrelay binary (release build).
    #[arg(long)]
    ferrelay: Option<PathBuf>,
    #[arg(long, default_value = "/usr/bin/rtpengine")]
    rtpengine: PathBuf,
    /// rtpengine worker threads (ferrelay runs one data-plane worker).
    #[arg(long, default_value_t = 1)]
    rtpengine_threads: usize,
    /// What to run: ferrelay, rtpengine (plain RTP both legs), their -aescm and -gcm
    /// variants (B leg SDES-SRTP with that suite), fwd-uring.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ferrelay,rtpengine,fwd-uring"
    )]
    only: Vec<String>,
    /// File name stem of the results.
    #[arg(long, default_value = "compare-relays")]
    stem: String,
    /// Target of the SRTP bridging cost over plain, µs per packet (issue 4).
    #[arg(long, default_value_t = 0.5)]
    srtp_target_us: f64,
}

#[derive(Debug)]
enum Target {
    Baseline(Forwarder),
    /// A relay, and the SRTP suite of the B leg (`None`: plain on both legs).
    Relay(RelaySpec, Option<Suite>),
}

impl Target {
    fn name(&self) -> &str {
        match self {
            Target::Baseline(f) => &f.name,
            Target::Relay(r, _) => &r.name,
        }
    }
}

/// Splits `rtpengine-gcm` into the relay and the B leg's suite.
fn parse_target(name: &str) -> Option<(&str, Option<Suite>)> {
    let (relay, variant) = name.split_once('-').unwrap_or((name, ""));
    let suite = match variant {
        "" => None,
        "aescm" => Some(Suite::AesCm128HmacSha1_80),
        "gcm" => Some(Suite::AeadAes128Gcm),
        _ => return None,
    };
    matches!(relay, "ferrelay" | "rtpengine").then_some((relay, suite))
}

/// Head-to-head pairs worth a ratio, where both ran: relay vs relay, relay vs
/// baseline, and each SRTP variant vs the same relay's plain run.
fn pairs(names: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |a: String, b: String| {
        if names.contains(&a.as_str()) && names.contains(&b.as_str()) {
            out.push((a, b));
        }
    };
    for v in ["", "-aescm", "-gcm"] {
        push(format!("ferrelay{v}"), format!("rtpengine{v}"));
    }
    for r in ["ferrelay", "rtpengine"] {
        push(r.to_string(), BASELINE.to_string());
    }
    for r in ["ferrelay", "rtpengine"] {
        for v in ["-aescm", "-gcm"] {
            push(format!("{r}{v}"), r.to_string());
        }
    }
    out
}

/// Starts the relay, sets the calls up over NG, loads and measures it.
fn run_relay(
    spec: &RelaySpec,
    srtp: Option<Suite>,
    plan: &RunPlan,
    cpus: &str,
    round: usize,
    logs: &std::path::Path,
    notes: &mut Vec<String>,
) -> anyhow::Result<RunResult> {
    let p = relay::start(spec, Some(cpus), logs)?;
    let ng = NgClient::new(spec.ng, Duration::from_secs(1))?;
    let mut placer = NgCalls::new(
        ng,
        NgCallOptions {
            client_ip: plan.ip,
            b_srtp: srtp.is_some(),
            suite: srtp.unwrap_or(Suite::AesCm128HmacSha1_80),
            call_id_prefix: format!("{}-r{round}", spec.name),
            ..NgCallOptions::default()
        },
    );
    let (calls, stats) = placer.setup(plan.calls)?;
    let (mut r, _) = measure(&spec.name, p.pid(), calls, plan, round, None)?;
    r.setup_calls_per_s = Some(stats.calls_per_s);
    if r.srtp_errors > 0 {
        notes.push(format!(
            "round {round} {}: {} SRTP packets failed to verify at the load generator",
            spec.name, r.srtp_errors
        ));
    }
    let (n, lines) = p.log_lines(&["warn", "error", "crit", "discard"], 3);
    if n > 0 {
        notes.push(format!(
            "round {round} {}: {n} warning/error lines in its log, first: {}",
            spec.name,
            lines.join(" | ")
        ));
    }
    Ok(r)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    a.load.check()?;
    let dir = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .to_path_buf();
    let ferrelay_bin = a.ferrelay.clone().unwrap_or_else(|| dir.join("ferrelay"));
    let ng = |port: u16| SocketAddr::new(a.load.ip, port);
    let mut targets = Vec::new();
    for name in &a.only {
        if name == BASELINE {
            targets.push(Target::Baseline(Forwarder {
                name: BASELINE.into(),
                bin: dir.join("fwd-uring"),
                extra_args: vec![],
            }));
            continue;
        }
        let Some((relay, suite)) = parse_target(name) else {
            anyhow::bail!("unknown target {name:?} (ferrelay|rtpengine[-aescm|-gcm], {BASELINE})");
        };
        let kind = if relay == "ferrelay" {
            RelayKind::Ferrelay(ferrelay_bin.clone())
        } else {
            RelayKind::Rtpengine {
                bin: a.rtpengine.clone(),
                threads: a.rtpengine_threads,
            }
        };
        // rtpengine takes about 4 ports per call (RTP + RTCP per side).
        let (ng_port, port_min, port_max) = if relay == "ferrelay" {
            (22_240, 40_000, 44_999)
        } else {
            (22_250, 45_000, 54_999)
        };
        targets.push(Target::Relay(
            RelaySpec {
                name: name.clone(),
                kind,
                ng: ng(ng_port),
                port_min,
                port_max,
                workers: a.workers,
            },
            suite,
        ));
    }
    let plan = a.load.run_plan(a.load_threads);
    let relay_cpus = a
        .relay_cpus
        .clone()
        .unwrap_or_else(|| a.load.forwarder_core.to_string());
    let logs = std::env::temp_dir().join(format!("compare-relays-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    let mut machine = machine();
    if let Some(&c) = a.load.load_cores.first() {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }

    let mut runs = Vec::new();
    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut notes = Vec::new();
    for round in 0..a.load.rounds {
        let order: Vec<&Target> = if round % 2 == 0 {
            targets.iter().collect()
        } else {
            targets.iter().rev().collect()
        };
        for t in order {
            let started = std::time::Instant::now();
            let r = match t {
                Target::Baseline(f) => run_one(f, &plan, round, None).map(|(r, _)| r),
                Target::Relay(spec, srtp) => {
                    run_relay(spec, *srtp, &plan, &relay_cpus, round, &logs, &mut notes)
                }
            };
            match r {
                Ok(r) => {
                    eprintln!(
                        "round {round} {:<15} {:>7.0} pps  on-CPU {:.3} us/pkt (user {:.3} sys {:.3} ticks)  loss {:.3}%  p50 {:.1} p99 {:.1} us  setup {}  ({:.0} s)",
                        r.forwarder,
                        r.forwarded_pps,
                        r.oncpu_us_per_pkt,
                        r.user_us_per_pkt,
                        r.sys_us_per_pkt,
                        r.loss_pct,
                        r.p50_us,
                        r.p99_us,
                        r.setup_calls_per_s
                            .map_or("-".into(), |x| format!("{x:.0}/s")),
                        started.elapsed().as_secs_f64()
                    );
                    runs.push(r);
                }
                Err(e) => {
                    eprintln!("round {round} {}: {e:#}", t.name());
                    skipped.push((format!("{} (round {round})", t.name()), format!("{e:#}")));
                }
            }
        }
    }
    machine.loadavg_end = loadavg();
    let _ = std::fs::remove_dir_all(&logs);

    let names: Vec<&str> = targets.iter().map(Target::name).collect();
    let ratios: Vec<_> = pairs(&names)
        .iter()
        .filter_map(|(x, y)| paired_ratio(&runs, x, y))
        .collect();
    for q in ratios
        .iter()
        .filter(|q| q.numerator.starts_with("ferrelay-") && q.denominator == "ferrelay")
    {
        notes.push(format!(
            "Issue 4 target for {}: {:+.3} µs/pkt over plain (target ≤ {:.2}): {}",
            q.numerator,
            q.median_diff_us,
            a.srtp_target_us,
            if q.median_diff_us <= a.srtp_target_us {
                "met"
            } else {
                "NOT met"
            }
        ));
    }
    let date = sh("date", &["-u", "+%Y-%m-%d"]);
    let command = a.report.command();
    notes.push(format!(
        "Relays get their calls over NG (one offer+answer in flight; SDPs announce \
         the load generator's own client sockets; -aescm/-gcm make the B leg SDES-SRTP \
         with that suite, encrypted and checked by the generator); fwd-uring forwards a \
         fixed port layout. Each run starts a fresh relay process \
         confined to cores {relay_cpus}; rtpengine runs userspace only (--table=-1) with \
         --num-threads={} and log level 4, ferrelay with --workers={} and log level warn; \
         the load generator runs {} sender and {} receiver thread(s).",
        a.rtpengine_threads, a.workers, a.load_threads, a.load_threads
    ));
    let results = Results {
        title: format!("{}: CPU per forwarded packet", a.only.join(" vs ")),
        date: sh("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        command: command.clone(),
        machine,
        plan: a.load.plan_info(),
        cpu_method: CPU_METHOD,
        summary: summarise(&runs, &[]),
        runs,
        profiles: Vec::new(),
        skipped,
        ratios,
        notes,
    };
    let md = summary::markdown(&results);
    println!("{md}");
    if let Some(out) = &a.report.out_dir {
        let stem = format!("{}-{date}", a.stem);
        let mut headline: Vec<String> = results
            .summary
            .iter()
            .map(|s| format!("{} {:.2} µs/pkt", s.forwarder, s.oncpu_us_per_pkt))
            .collect();
        headline.extend(results.ratios.iter().map(|q| {
            format!(
                "{}/{} {:.2}× ({:+.2} µs)",
                q.numerator, q.denominator, q.median, q.median_diff_us
            )
        }));
        summary::write_results(
            out,
            &stem,
            &results,
            &md,
            &a.report.readme,
            &command,
            &headline.join(", "),
        )?;
        eprintln!("wrote {}/{stem}.{{json,md}}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names() {
        assert_eq!(parse_target("ferrelay"), Some(("ferrelay", None)));
        assert_eq!(
            parse_target("rtpengine-gcm"),
            Some(("rtpengine", Some(Suite::AeadAes128Gcm)))
        );
        assert_eq!(
            parse_target("ferrelay-aescm"),
            Some(("ferrelay", Some(Suite::AesCm128HmacSha1_80)))
        );
        assert_eq!(parse_target("ferrelay-rot13"), None);
        assert_eq!(parse_target("nginx"), None);
    }

    #[test]
    fn pairs_only_where_both_ran() {
        let p = pairs(&["ferrelay", "ferrelay-gcm", "rtpengine", "fwd-uring"]);
        let has = |a: &str, b: &str| p.iter().any(|(x, y)| x == a && y == b);
        assert!(has("ferrelay", "rtpengine"));
        assert!(has("ferrelay", "fwd-uring") && has("rtpengine", "fwd-uring"));
        assert!(has("ferrelay-gcm", "ferrelay"));
        assert!(!has("ferrelay-gcm", "rtpengine-gcm"));
        assert!(!has("ferrelay-aescm", "ferrelay"));
        assert_eq!(p.len(), 4);
    }
}
