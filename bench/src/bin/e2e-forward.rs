//! e2e-forward: CPU per forwarded packet of fwd-mmsg, fwd-uring and the ferrelay
//! relay (bench-relay, per backend) under the same RTP load, in alternating rounds.
//! Writes `<out-dir>/e2e-forward-<date>.{json,md}` and lists them in `perf/README.md`.

use anyhow::Context;
use clap::Parser;
use ferrelay_bench::e2e::args::{LoadArgs, ReportArgs};
use ferrelay_bench::e2e::run::{Forwarder, RunResult, run_one};
use ferrelay_bench::e2e::summary::{
    self, BASELINE, CPU_METHOD, Results, loadavg, machine, sh, summarise,
};

#[derive(Debug, Parser)]
// bench/e2e-forward.sh passes defaults first and the caller's flags after: last wins.
#[command(args_override_self = true)]
struct Args {
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    report: ReportArgs,
    /// ferrelay backends to run bench-relay with.
    #[arg(long, value_delimiter = ',', default_value = "io_uring,mmsg")]
    backend: Vec<String>,
    /// Skip the ferrelay relay (baselines only).
    #[arg(long)]
    no_relay: bool,
    /// After the rounds, one extra run per forwarder under `perf record -e cpu-clock`
    /// for a user/kernel split that does not depend on the scheduler tick.
    #[arg(long)]
    perf: bool,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    a.load.check()?;
    let dir = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .to_path_buf();
    let bin = |n: &str| dir.join(n);
    let mut forwarders = vec![
        Forwarder {
            name: "fwd-mmsg".into(),
            bin: bin("fwd-mmsg"),
            extra_args: vec![],
        },
        Forwarder {
            name: BASELINE.into(),
            bin: bin("fwd-uring"),
            extra_args: vec![],
        },
    ];
    let mut skipped = Vec::new();
    if !a.no_relay {
        for b in &a.backend {
            let relay = bin("bench-relay");
            if relay.exists() {
                forwarders.push(Forwarder {
                    name: format!("ferrelay-{b}"),
                    bin: relay,
                    extra_args: vec![
                        "--backend".into(),
                        b.clone(),
                        "--core".into(),
                        a.load.forwarder_core.to_string(),
                    ],
                });
            } else {
                skipped.push((format!("ferrelay-{b}"), "bench-relay not built".into()));
            }
        }
    }
    for f in &forwarders {
        anyhow::ensure!(
            f.bin.exists(),
            "{} not built (cargo build -p ferrelay-bench --release --bins)",
            f.bin.display()
        );
    }
    let plan = a.load.run_plan(1);
    let mut machine = machine();
    // The harness's own threads (timing, procfs reads) stay with the load.
    if let Some(&c) = a.load.load_cores.first() {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }

    let mut runs: Vec<RunResult> = Vec::new();
    for round in 0..a.load.rounds {
        // A B C, C B A, ...: slow drift of the machine hits every forwarder alike.
        let order: Vec<&Forwarder> = if round % 2 == 0 {
            forwarders.iter().collect()
        } else {
            forwarders.iter().rev().collect()
        };
        for f in order {
            match run_one(f, &plan, round, None) {
                Ok((r, _)) => {
                    eprintln!(
                        "round {round} {:<18} {:>7.0} pps  user {:.3}  sys {:.3}  total {:.3}  on-CPU {:.3} us/pkt  loss {:.3}%  p50 {:.1} p99 {:.1} us",
                        r.forwarder,
                        r.forwarded_pps,
                        r.user_us_per_pkt,
                        r.sys_us_per_pkt,
                        r.total_us_per_pkt,
                        r.oncpu_us_per_pkt,
                        r.loss_pct,
                        r.p50_us,
                        r.p99_us
                    );
                    runs.push(r);
                }
                Err(e) => {
                    eprintln!("round {round} {}: {e:#}", f.name);
                    if !skipped.iter().any(|(n, _)| *n == f.name) {
                        skipped.push((f.name.clone(), format!("{e:#}")));
                    }
                }
            }
        }
    }

    let mut profiles = Vec::new();
    if a.perf {
        let data = std::env::temp_dir().join(format!("e2e-forward-{}.perf", std::process::id()));
        for f in &forwarders {
            match run_one(f, &plan, usize::MAX, Some(&data)) {
                Ok((_, Some(p))) => {
                    eprintln!(
                        "profile {:<18} kernel {:.1}%  user {:.1}%",
                        p.forwarder, p.kernel_pct, p.user_pct
                    );
                    profiles.push(p);
                }
                Ok((_, None)) => {}
                Err(e) => eprintln!("profile {}: {e:#}", f.name),
            }
        }
        let _ = std::fs::remove_file(&data);
    }
    machine.loadavg_end = loadavg();
    let date = sh("date", &["-u", "+%Y-%m-%d"]);
    let command = a.report.command();
    let results = Results {
        title: "End-to-end forwarding CPU per packet".into(),
        date: sh("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        command: command.clone(),
        machine,
        plan: a.load.plan_info(),
        cpu_method: CPU_METHOD,
        summary: summarise(&runs, &profiles),
        runs,
        profiles,
        skipped,
        ratios: Vec::new(),
        notes: Vec::new(),
    };
    let md = summary::markdown(&results);
    println!("{md}");
    if let Some(out) = &a.report.out_dir {
        let stem = format!("e2e-forward-{date}");
        let headline = results
            .summary
            .iter()
            .map(|s| format!("{} {:.2} µs/pkt", s.forwarder, s.oncpu_us_per_pkt))
            .collect::<Vec<_>>()
            .join(", ");
        summary::write_results(
            out,
            &stem,
            &results,
            &md,
            &a.report.readme,
            &command,
            &headline,
        )?;
        eprintln!(
            "wrote {}/{stem}.{{json,md}} and {}",
            out.display(),
            a.report.readme.display()
        );
    }
    Ok(())
}
