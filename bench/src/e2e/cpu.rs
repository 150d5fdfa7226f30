//! CPU time of another process, read from procfs: user and system time from
//! `/proc/PID/stat` (clock ticks, split but coarse) and on-CPU time from each
//! thread's `/proc/PID/task/TID/schedstat` (nanoseconds, not split).

use std::fs;
use std::io;

/// One reading of a process's CPU counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSample {
    /// `utime` (field 14 of proc_pid_stat(5)), clock ticks, all threads.
    pub utime_ticks: u64,
    /// `stime` (field 15), clock ticks, all threads.
    pub stime_ticks: u64,
    /// Sum over the live threads of schedstat's first field: ns on a CPU.
    pub on_cpu_ns: u64,
}

/// CPU time between two samples, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuDelta {
    pub user_s: f64,
    pub sys_s: f64,
    /// From schedstat: the precise total (user + system).
    pub on_cpu_s: f64,
}

/// `sysconf(_SC_CLK_TCK)`: what a tick of utime/stime is worth.
pub fn clock_ticks_per_sec() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|&v| v > 0)
        .unwrap_or(100)
}

/// Parses utime and stime out of a `/proc/PID/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.rfind(')')? + 1..];
    // After ")" come fields 3.. : state is index 0, utime (14) is index 11, stime index 12.
    let mut f = rest.split_ascii_whitespace().skip(11);
    let utime = f.next()?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    Some((utime, stime))
}

/// First field of a schedstat line: time spent on the CPU, ns.
pub fn parse_schedstat(line: &str) -> Option<u64> {
    line.split_ascii_whitespace().next()?.parse().ok()
}

impl CpuSample {
    pub fn read(pid: u32) -> io::Result<CpuSample> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "unparsable procfs line");
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let (utime_ticks, stime_ticks) = parse_stat(&stat).ok_or_else(bad)?;
        let mut on_cpu_ns = 0;
        for t in fs::read_dir(format!("/proc/{pid}/task"))? {
            let path = t?.path().join("schedstat");
            // A thread that exits between listing and reading is simply skipped.
            if let Ok(s) = fs::read_to_string(path) {
                on_cpu_ns += parse_schedstat(&s).ok_or_else(bad)?;
            }
        }
        Ok(CpuSample {
            utime_ticks,
            stime_ticks,
            on_cpu_ns,
        })
    }

    pub fn since(&self, earlier: &CpuSample, ticks_per_sec: u64) -> CpuDelta {
        let t = ticks_per_sec as f64;
        CpuDelta {
            user_s: self.utime_ticks.saturating_sub(earlier.utime_ticks) as f64 / t,
            sys_s: self.stime_ticks.saturating_sub(earlier.stime_ticks) as f64 / t,
            on_cpu_s: self.on_cpu_ns.saturating_sub(earlier.on_cpu_ns) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_awkward_comm() {
        let line = "4242 (fwd) (x y)) S 1 4242 4242 0 -1 4194560 120 0 0 0 731 264 0 0 20 0 3 0";
        assert_eq!(parse_stat(line), Some((731, 264)));
        assert_eq!(parse_stat("4242 (short) S 1"), None);
    }

    #[test]
    fn schedstat_first_field() {
        assert_eq!(parse_schedstat("937820695 148735 23\n"), Some(937_820_695));
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn reads_own_process_and_counts_work() {
        let pid = std::process::id();
        let a = CpuSample::read(pid).unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let b = CpuSample::read(pid).unwrap();
        let d = b.since(&a, clock_ticks_per_sec());
        // schedstat may be compiled out (reads as 0); when present it saw the spin
        // (how much of it depends on what else the machine runs) and no more than
        // the wall time across the test threads.
        assert!(b.on_cpu_ns == 0 || d.on_cpu_s > 0.0, "{d:?}");
        assert!(d.on_cpu_s < 5.0, "{d:?}");
        assert!(d.user_s >= 0.0 && d.sys_s >= 0.0);
    }
}
