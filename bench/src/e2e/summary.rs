//! Medians across rounds, the relay-to-baseline ratios, and the result files.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

use super::profile::Profile;
use super::run::RunResult;

/// The baseline every relay is compared against, run by run.
pub const BASELINE: &str = "fwd-uring";
/// Issue targets: relay user CPU per packet, and relay total relative to the baseline.
pub const TARGET_USER_US: f64 = 0.5;
pub const TARGET_RATIO: f64 = 1.1;

/// Median of a forwarder's runs.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub forwarder: String,
    pub runs: usize,
    pub forwarded_pps: f64,
    pub user_us_per_pkt: f64,
    pub sys_us_per_pkt: f64,
    pub total_us_per_pkt: f64,
    pub oncpu_us_per_pkt: f64,
    pub core_util_pct: f64,
    pub loss_pct: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// User share from the perf profile run, if one was made.
    pub perf_user_pct: Option<f64>,
    /// `oncpu_us_per_pkt` x `perf_user_pct`: user CPU per packet without tick bias.
    pub perf_user_us_per_pkt: Option<f64>,
    /// Median over rounds of (this total / fwd-uring total in the same round).
    pub ratio_total_to_baseline: Option<f64>,
    /// Same with the schedstat on-CPU totals.
    pub ratio_oncpu_to_baseline: Option<f64>,
    /// Median NG call setup rate (offer+answer per second), where calls used NG.
    pub setup_calls_per_s: Option<f64>,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One forwarder against another: the median over rounds of the ratio of a metric
/// within each round (pairing by round cancels the machine's drift).
#[derive(Debug, Clone, Serialize)]
pub struct PairRatio {
    pub numerator: String,
    pub denominator: String,
    pub metric: &'static str,
    pub median: f64,
    /// Median over rounds of (numerator - denominator) in the same round, µs/pkt.
    pub median_diff_us: f64,
    pub rounds: usize,
}

/// [`PairRatio`] of on-CPU µs per packet, `None` when no round ran both.
pub fn paired_ratio(runs: &[RunResult], numerator: &str, denominator: &str) -> Option<PairRatio> {
    let pairs: Vec<(f64, f64)> = runs
        .iter()
        .filter(|r| r.forwarder == numerator)
        .filter_map(|r| {
            runs.iter()
                .find(|d| d.forwarder == denominator && d.round == r.round)
                .map(|d| (r.oncpu_us_per_pkt, d.oncpu_us_per_pkt))
        })
        .filter(|(n, d)| (n / d).is_finite())
        .collect();
    (!pairs.is_empty()).then(|| PairRatio {
        numerator: numerator.to_string(),
        denominator: denominator.to_string(),
        metric: "on-CPU µs/pkt",
        rounds: pairs.len(),
        median: median(pairs.iter().map(|(n, d)| n / d).collect()),
        median_diff_us: median(pairs.iter().map(|(n, d)| n - d).collect()),
    })
}

/// Summarises `runs` per forwarder, in first-seen order.
pub fn summarise(runs: &[RunResult], profiles: &[Profile]) -> Vec<Summary> {
    let mut names: Vec<&str> = Vec::new();
    for r in runs {
        if !names.contains(&r.forwarder.as_str()) {
            names.push(&r.forwarder);
        }
    }
    let base = |round: usize| {
        runs.iter()
            .find(|r| r.forwarder == BASELINE && r.round == round)
    };
    names
        .into_iter()
        .map(|name| {
            let mine: Vec<&RunResult> = runs.iter().filter(|r| r.forwarder == name).collect();
            let m = |f: fn(&RunResult) -> f64| median(mine.iter().map(|r| f(r)).collect());
            let ratio = |f: fn(&RunResult) -> f64| {
                let v: Vec<f64> = mine
                    .iter()
                    .filter_map(|r| base(r.round).map(|b| f(r) / f(b)))
                    .filter(|x| x.is_finite())
                    .collect();
                (!v.is_empty()).then(|| median(v))
            };
            let oncpu = m(|r| r.oncpu_us_per_pkt);
            let setups: Vec<f64> = mine.iter().filter_map(|r| r.setup_calls_per_s).collect();
            let perf_user_pct = profiles
                .iter()
                .find(|p| p.forwarder == name)
                .map(|p| p.user_pct);
            Summary {
                forwarder: name.to_string(),
                runs: mine.len(),
                perf_user_pct,
                perf_user_us_per_pkt: perf_user_pct.map(|p| oncpu * p / 100.0),
                forwarded_pps: m(|r| r.forwarded_pps),
                user_us_per_pkt: m(|r| r.user_us_per_pkt),
                sys_us_per_pkt: m(|r| r.sys_us_per_pkt),
                total_us_per_pkt: m(|r| r.total_us_per_pkt),
                oncpu_us_per_pkt: oncpu,
                core_util_pct: m(|r| r.core_util_pct),
                loss_pct: m(|r| r.loss_pct),
                p50_us: m(|r| r.p50_us),
                p99_us: m(|r| r.p99_us),
                ratio_total_to_baseline: ratio(|r| r.total_us_per_pkt),
                ratio_oncpu_to_baseline: ratio(|r| r.oncpu_us_per_pkt),
                setup_calls_per_s: (!setups.is_empty()).then(|| median(setups)),
            }
        })
        .collect()
}

/// Everything a result file holds.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Heading of the Markdown report.
    pub title: String,
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub plan: PlanInfo,
    pub cpu_method: &'static str,
    pub summary: Vec<Summary>,
    pub runs: Vec<RunResult>,
    /// Profile runs (perf cpu-clock), one per forwarder, apart from the rounds.
    pub profiles: Vec<Profile>,
    /// Forwarders that could not be run, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Head-to-head ratios beyond the baseline column (e.g. ferrelay / rtpengine).
    pub ratios: Vec<PairRatio>,
    /// Free-form observations the harness recorded (a peer's warnings, say).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub git_commit: String,
    /// /proc/loadavg when the comparison started and ended: other work on the
    /// machine shares its cores and shows up in latency and, less, in CPU.
    pub loadavg_start: String,
    pub loadavg_end: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanInfo {
    pub calls: usize,
    pub pps_per_direction: u32,
    pub packet_len: usize,
    pub offered_pps: u64,
    pub warmup_s: f64,
    pub window_s: f64,
    pub rounds: usize,
    pub forwarder_core: usize,
    pub load_cores: Vec<usize>,
}

pub const CPU_METHOD: &str = "user/sys: utime/stime from /proc/PID/stat (clock ticks, \
sysconf(_SC_CLK_TCK)), all threads; on-CPU: sum of /proc/PID/task/*/schedstat field 1 (ns). \
Both read at the start and end of the steady-state window; per packet = CPU / packets the \
load generator received in the same window.";

fn target_line(s: &Summary) -> String {
    // The perf split is the better estimate when there is one (see profile.rs).
    let user = s.perf_user_us_per_pkt.unwrap_or(s.user_us_per_pkt);
    let user_ok = user <= TARGET_USER_US;
    let ratio = s.ratio_oncpu_to_baseline.or(s.ratio_total_to_baseline);
    let ratio_ok = ratio.is_some_and(|r| r <= TARGET_RATIO);
    format!(
        "- **{}**: user {:.3} µs/pkt{} (target ≤ {TARGET_USER_US}: {}); total vs {BASELINE} {} (target ≤ {TARGET_RATIO}×: {})",
        s.forwarder,
        user,
        if s.perf_user_us_per_pkt.is_some() {
            format!(" (perf split; ticks say {:.3})", s.user_us_per_pkt)
        } else {
            String::new()
        },
        if user_ok { "met" } else { "NOT met" },
        ratio.map_or("n/a".to_string(), |r| format!("{r:.2}×")),
        match (ratio.is_some(), ratio_ok) {
            (false, _) => "not measured, no baseline in this run",
            (true, true) => "met",
            (true, false) => "NOT met",
        },
    )
}

/// The Markdown report.
pub fn markdown(r: &Results) -> String {
    let mut o = String::new();
    let p = &r.plan;
    let _ = writeln!(o, "# {} — {}\n", r.title, r.date);
    let _ = writeln!(o, "Command: `{}`\n", r.command);
    let _ = writeln!(
        o,
        "Machine: {} ({} cores), kernel {}, commit `{}`; load average at start `{}`, at end `{}`\n",
        r.machine.cpu,
        r.machine.cores,
        r.machine.kernel,
        r.machine.git_commit,
        r.machine.loadavg_start,
        r.machine.loadavg_end
    );
    let _ = writeln!(
        o,
        "Load: {} calls × {} pps per direction, {}-byte RTP ({} pps offered), {} s warm-up, \
         {} s window, {} rounds (order reversed every other round). Forwarder on core {}, \
         load generator on cores {:?}. Loopback (127.0.0.1).\n",
        p.calls,
        p.pps_per_direction,
        p.packet_len,
        p.offered_pps,
        p.warmup_s,
        p.window_s,
        p.rounds,
        p.forwarder_core,
        p.load_cores
    );
    let _ = writeln!(o, "CPU method: {}\n", r.cpu_method);
    let _ = writeln!(o, "## Medians\n");
    let _ = writeln!(
        o,
        "| forwarder | user µs/pkt (ticks) | sys µs/pkt (ticks) | total µs/pkt (ticks) | on-CPU µs/pkt | user µs/pkt (perf split) | core % | ×{BASELINE} (total / on-CPU) | loss % | p50 µs | p99 µs | fwd pps | NG setup calls/s |"
    );
    let _ = writeln!(
        o,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in &r.summary {
        let ratio = match (s.ratio_total_to_baseline, s.ratio_oncpu_to_baseline) {
            (Some(a), Some(b)) => format!("{a:.2} / {b:.2}"),
            _ => "–".into(),
        };
        let _ = writeln!(
            o,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.1} | {} | {:.3} | {:.1} | {:.1} | {:.0} | {} |",
            s.forwarder,
            s.user_us_per_pkt,
            s.sys_us_per_pkt,
            s.total_us_per_pkt,
            s.oncpu_us_per_pkt,
            match (s.perf_user_us_per_pkt, s.perf_user_pct) {
                (Some(u), Some(p)) => format!("{u:.3} ({p:.1}%)"),
                _ => "–".into(),
            },
            s.core_util_pct,
            ratio,
            s.loss_pct,
            s.p50_us,
            s.p99_us,
            s.forwarded_pps,
            s.setup_calls_per_s
                .map_or("–".to_string(), |x| format!("{x:.0}"))
        );
    }
    if !r.ratios.is_empty() {
        let _ = writeln!(o, "\n## Head to head (median of per-round ratios)\n");
        for q in &r.ratios {
            let _ = writeln!(
                o,
                "- {} / {}: {:.2}× {} ({:+.3} µs/pkt; {} rounds)",
                q.numerator, q.denominator, q.median, q.metric, q.median_diff_us, q.rounds
            );
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(o, "\n## Notes\n");
        for n in &r.notes {
            let _ = writeln!(o, "- {n}");
        }
    }
    let relays: Vec<&Summary> = r
        .summary
        .iter()
        .filter(|s| s.forwarder.starts_with("ferrelay"))
        .collect();
    if !relays.is_empty() {
        let _ = writeln!(o, "\n## Targets\n");
        for s in relays {
            let _ = writeln!(o, "{}", target_line(s));
        }
    }
    if !r.profiles.is_empty() {
        let _ = writeln!(
            o,
            "\n## Profiles (perf record -e cpu-clock -F 4999, one extra run each)\n"
        );
        for p in &r.profiles {
            let _ = writeln!(
                o,
                "### {}: kernel {:.1}%, user {:.1}% of samples\n\n```",
                p.forwarder, p.kernel_pct, p.user_pct
            );
            for l in &p.top {
                let _ = writeln!(o, "{l}");
            }
            let _ = writeln!(o, "```\n");
        }
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(o, "\n## Not run\n");
        for (name, why) in &r.skipped {
            let _ = writeln!(o, "- {name}: {why}");
        }
    }
    let _ = writeln!(o, "\n## Every run\n");
    let _ = writeln!(
        o,
        "| round | forwarder | forwarded | user | sys | total | on-CPU | loadgen on-CPU | loss % | p50 | p99 | p99.9 | max |"
    );
    let _ = writeln!(
        o,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for x in &r.runs {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} | {:.1} | {:.1} | {:.1} |",
            x.round,
            x.forwarder,
            x.forwarded,
            x.user_us_per_pkt,
            x.sys_us_per_pkt,
            x.total_us_per_pkt,
            x.oncpu_us_per_pkt,
            x.loadgen_us_per_pkt,
            x.loss_pct,
            x.p50_us,
            x.p99_us,
            x.p999_us,
            x.max_us
        );
    }
    let _ = writeln!(
        o,
        "\nCPU columns are µs per forwarded packet; latency columns are one-way µs \
         (load generator -> forwarder -> load generator)."
    );
    o
}

/// Stdout of a command, or `unknown`.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The machine and commit a result belongs to.
pub fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        git_commit: sh("git", &["rev-parse", "--short", "HEAD"]),
        loadavg_start: loadavg(),
        loadavg_end: String::new(),
    }
}

/// The three load averages of /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Writes `<out>/<stem>.{json,md}` and the README line for them.
pub fn write_results(
    out: &Path,
    stem: &str,
    results: &impl Serialize,
    md: &str,
    readme: &Path,
    command: &str,
    headline: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join(format!("{stem}.json")),
        serde_json::to_string_pretty(results)?,
    )?;
    std::fs::write(out.join(format!("{stem}.md")), md)?;
    upsert_readme(readme, &format!("{stem}.md"), command, headline)?;
    Ok(())
}

/// Adds or replaces the README line for `file` (one line per result file).
pub fn upsert_readme(
    readme: &Path,
    file: &str,
    command: &str,
    headline: &str,
) -> std::io::Result<()> {
    let mut text = std::fs::read_to_string(readme).unwrap_or_else(|_| {
        "# Performance results\n\nEach result file and the exact command that produced it.\n\n## Results\n\n"
            .to_string()
    });
    let marker = format!("[`{file}`]");
    let line = format!("- [`{file}`](results/{file}) — `{command}` — {headline}");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if let Some(l) = lines.iter_mut().find(|l| l.contains(&marker)) {
        *l = line;
    } else if let Some(last) = lines.iter().rposition(|l| l.starts_with("- [`")) {
        // Keep the result list together, above any sections that follow it.
        lines.insert(last + 1, line);
    } else {
        lines.push(line);
    }
    text = lines.join("\n");
    text.push('\n');
    std::fs::write(readme, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, round: usize, user: f64, total: f64) -> RunResult {
        RunResult {
            forwarder: name.into(),
            round,
            window_s: 1.0,
            forwarded: 1000,
            forwarded_pps: 1000.0,
            user_us_per_pkt: user,
            sys_us_per_pkt: total - user,
            total_us_per_pkt: total,
            oncpu_us_per_pkt: total,
            core_util_pct: 10.0,
            loadgen_us_per_pkt: 1.0,
            sent: 1000,
            lost: 0,
            loss_pct: 0.0,
            duplicates: 0,
            reordered: 0,
            misrouted: 0,
            srtp_errors: 0,
            p50_us: 10.0,
            p99_us: 20.0,
            p999_us: 30.0,
            max_us: 40.0,
            setup_calls_per_s: None,
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn ratios_pair_runs_by_round() {
        let runs = vec![
            run(BASELINE, 0, 0.5, 10.0),
            run("ferrelay-io_uring", 0, 0.4, 11.0),
            run(BASELINE, 1, 0.5, 20.0),
            run("ferrelay-io_uring", 1, 0.6, 20.0),
            run(BASELINE, 2, 0.5, 10.0),
            run("ferrelay-io_uring", 2, 0.45, 15.0),
        ];
        let prof = Profile {
            forwarder: "ferrelay-io_uring".into(),
            user_pct: 5.0,
            kernel_pct: 95.0,
            top: vec![],
        };
        let s = summarise(&runs, std::slice::from_ref(&prof));
        assert_eq!(s.len(), 2);
        let relay = &s[1];
        // Per-round ratios 1.1, 1.0, 1.5 -> median 1.1; not the ratio of medians (15/10).
        assert!((relay.ratio_total_to_baseline.unwrap() - 1.1).abs() < 1e-9);
        assert!((relay.user_us_per_pkt - 0.45).abs() < 1e-9);
        assert_eq!(s[0].ratio_total_to_baseline, Some(1.0));
        // on-CPU median 15 x 5% user from the profile = 0.75, which beats the ticks' 0.45.
        assert_eq!(relay.perf_user_us_per_pkt, Some(0.75));
        assert!(
            target_line(relay).contains(
                "user 0.750 µs/pkt (perf split; ticks say 0.450) (target ≤ 0.5: NOT met)"
            ),
            "{}",
            target_line(relay)
        );
        assert_eq!(s[0].perf_user_us_per_pkt, None);
        assert!(target_line(relay).contains("1.10× (target ≤ 1.1×: met)"));
    }

    #[test]
    fn head_to_head_pairs_rounds_and_setup_median() {
        let mut runs = vec![
            run("ferrelay", 0, 0.1, 4.0),
            run("rtpengine", 0, 1.0, 16.0),
            run("ferrelay", 1, 0.1, 6.0),
            run("rtpengine", 1, 1.0, 12.0),
            run("rtpengine", 2, 1.0, 10.0),
        ];
        runs[0].setup_calls_per_s = Some(3000.0);
        runs[2].setup_calls_per_s = Some(1000.0);
        let q = paired_ratio(&runs, "ferrelay", "rtpengine").unwrap();
        // Rounds 0 and 1 only: 0.25 and 0.5; round 2 has no ferrelay run.
        assert_eq!(q.rounds, 2);
        assert!((q.median - 0.375).abs() < 1e-9, "{q:?}");
        // Differences -12 and -6 µs: median -9.
        assert!((q.median_diff_us + 9.0).abs() < 1e-9, "{q:?}");
        assert!(paired_ratio(&runs, "ferrelay", "fwd-uring").is_none());
        let s = summarise(&runs, &[]);
        assert_eq!(s[0].setup_calls_per_s, Some(2000.0));
        assert_eq!(s[1].setup_calls_per_s, None);
    }

    #[test]
    fn readme_upsert_replaces_same_file() {
        let dir = std::env::temp_dir().join(format!("ferrelay-readme-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("README.md");
        upsert_readme(&p, "e2e-forward-x.md", "cmd1", "h1").unwrap();
        upsert_readme(&p, "e2e-forward-y.md", "cmd2", "h2").unwrap();
        upsert_readme(&p, "e2e-forward-x.md", "cmd3", "h3").unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(
            t.contains("`cmd3`") && !t.contains("`cmd1`") && t.contains("`cmd2`"),
            "{t}"
        );
        assert_eq!(t.matches("e2e-forward-x.md`]").count(), 1);
        // A new file joins the list, above a section that follows it.
        let mut t2 = t.clone();
        t2.push_str("\n## Reading\n\ntext\n");
        std::fs::write(&p, t2).unwrap();
        upsert_readme(&p, "compare-relays-z.md", "cmd4", "h4").unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        let z = t.find("compare-relays-z.md").unwrap();
        assert!(
            z > t.find("e2e-forward-y.md").unwrap() && z < t.find("## Reading").unwrap(),
            "{t}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
