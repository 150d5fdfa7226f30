//! Optional profile pass: `perf record -e cpu-clock` on the forwarder during the
//! window, for a user/kernel split that does not depend on the scheduler tick.
//!
//! Why: with tick-based CPU accounting (CONFIG_TICK_CPU_ACCOUNTING) utime/stime are
//! sampled at HZ, and a paced load wakes the forwarder in step with the timer, so
//! the split can be biased. The software clock at an odd frequency samples far more
//! often and off the tick. Profile runs are separate from the measured rounds
//! because sampling costs the forwarder CPU.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

/// What one profile run found.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub forwarder: String,
    /// Percent of samples in user mode (everything not marked `[k]`).
    pub user_pct: f64,
    pub kernel_pct: f64,
    /// The hottest symbols, as `perf report` prints them.
    pub top: Vec<String>,
}

/// Starts sampling `pid` for `window`; the child ends by itself.
pub fn start(pid: u32, window: Duration, out: &Path) -> anyhow::Result<Child> {
    Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "4999", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(out)
        .args(["--", "sleep"])
        .arg(format!("{:.3}", window.as_secs_f64()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf record")
}

/// Parses `perf report --stdio --sort sym` lines: `  12.34%  [k] symbol`.
pub fn parse_report(text: &str, forwarder: &str, top_n: usize) -> Option<Profile> {
    let (mut user, mut kernel) = (0.0, 0.0);
    let mut top = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let mut f = l.split_whitespace();
        let Some(pct) = f
            .next()
            .and_then(|p| p.strip_suffix('%')?.parse::<f64>().ok())
        else {
            continue;
        };
        if f.next() == Some("[k]") {
            kernel += pct;
        } else {
            user += pct;
        }
        if top.len() < top_n {
            top.push(l.to_string());
        }
    }
    (user + kernel > 0.0).then(|| Profile {
        forwarder: forwarder.to_string(),
        user_pct: user,
        kernel_pct: kernel,
        top,
    })
}

/// Waits for `perf record` and reads its report.
pub fn finish(mut perf: Child, data: &Path, forwarder: &str) -> anyhow::Result<Profile> {
    let status = perf.wait()?;
    if !status.success() {
        bail!("perf record failed ({status}); is perf allowed here?");
    }
    let out = Command::new("perf")
        .args(["report", "--stdio", "--sort", "sym", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .context("perf report")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_report(&text, forwarder, 12).context("perf report had no samples")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_user_and_kernel() {
        let text = "# Samples: 1K\n#\n    60.00%  [k] udp_sendmsg\n    25.50%  [.] main\n\n    14.50%  [k] fget\n";
        let p = parse_report(text, "x", 2).unwrap();
        assert!((p.kernel_pct - 74.5).abs() < 1e-9);
        assert!((p.user_pct - 25.5).abs() < 1e-9);
        assert_eq!(p.top.len(), 2);
        assert!(parse_report("# nothing\n", "x", 3).is_none());
    }
}
