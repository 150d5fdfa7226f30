//! Real relays as child processes: the `ferrelay` binary and Debian's rtpengine
//! (userspace forwarding), optionally pinned with taskset, ready once they answer
//! an NG ping. Used by the relay comparison benchmark and the load generator's
//! tests against rtpengine, so both start it the same way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use ferrelay::ng::Value;

use crate::NgClient;
use crate::ng::{request, result};

/// Which relay and how to start it.
#[derive(Debug, Clone)]
pub struct RelaySpec {
    pub name: String,
    pub kind: RelayKind,
    pub ng: SocketAddr,
    pub port_min: u16,
    pub port_max: u16,
    /// ferrelay's data-plane workers (`--workers`); rtpengine takes its own count.
    pub workers: usize,
}

#[derive(Debug, Clone)]
pub enum RelayKind {
    /// The `ferrelay` binary at this path, one data-plane worker.
    Ferrelay(PathBuf),
    /// rtpengine (userspace only) at this path, with this many worker threads.
    Rtpengine { bin: PathBuf, threads: usize },
}

impl RelaySpec {
    /// Debian's rtpengine (`rtpengine-daemon`, from `PATH`) with NG on a free
    /// loopback port and media ports `port_min..=port_max`.
    pub fn rtpengine(port_min: u16, port_max: u16) -> std::io::Result<RelaySpec> {
        let ng = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
        Ok(RelaySpec {
            name: "rtpengine".into(),
            kind: RelayKind::Rtpengine {
                bin: "rtpengine".into(),
                threads: 1,
            },
            ng,
            port_min,
            port_max,
            workers: 1,
        })
    }
}

/// A running relay; killed (and its log kept) when dropped.
#[derive(Debug)]
pub struct RelayProcess {
    child: Child,
    /// Where it answers NG.
    pub ng: SocketAddr,
    pub log: PathBuf,
}

impl RelayProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines of the relay's stderr that contain any of `needles` (case-insensitive),
    /// at most `max` of them, for the report's notes.
    pub fn log_lines(&self, needles: &[&str], max: usize) -> (usize, Vec<String>) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let hits: Vec<&str> = text
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                needles.iter().any(|n| l.contains(n))
            })
            .collect();
        (
            hits.len(),
            hits.iter().take(max).map(|s| s.to_string()).collect(),
        )
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn args(spec: &RelaySpec) -> (PathBuf, Vec<String>) {
    let ip = spec.ng.ip();
    match &spec.kind {
        RelayKind::Ferrelay(bin) => {
            let tcp = SocketAddr::new(ip, spec.ng.port() + 1);
            (
                bin.clone(),
                vec![
                    format!("--listen-ng={}", spec.ng),
                    format!("--listen-tcp-ng={tcp}"),
                    format!("--interface={ip}"),
                    format!("--port-min={}", spec.port_min),
                    format!("--port-max={}", spec.port_max),
                    format!("--workers={}", spec.workers),
                    "--delete-delay=0".into(),
                    "--log-level=warn".into(),
                ],
            )
        }
        RelayKind::Rtpengine { bin, threads } => (
            bin.clone(),
            vec![
                "--table=-1".into(),
                "--config-file=none".into(),
                format!("--interface={ip}"),
                format!("--listen-ng={}", spec.ng),
                format!("--port-min={}", spec.port_min),
                format!("--port-max={}", spec.port_max),
                format!("--num-threads={threads}"),
                "--delete-delay=0".into(),
                "--foreground".into(),
                "--log-stderr".into(),
                // 4 = warnings: per-call info lines would cost CPU inside the window.
                "--log-level=4".into(),
            ],
        ),
    }
}

/// Starts the relay, on `cpus` (a taskset list such as `1` or `1-4`) when given,
/// its stderr in `log_dir`, and waits for NG `pong`.
pub fn start(spec: &RelaySpec, cpus: Option<&str>, log_dir: &Path) -> anyhow::Result<RelayProcess> {
    let (bin, a) = args(spec);
    let log = log_dir.join(format!("{}.log", spec.name));
    let err = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    let child = cmd
        .args(&a)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (rtpengine comes from Debian's rtpengine-daemon, \
                 installed by scripts/setup.sh)",
                bin.display()
            )
        })?;
    let mut p = RelayProcess {
        child,
        ng: spec.ng,
        log,
    };
    let mut ng = NgClient::new(spec.ng, Duration::from_millis(300))?;
    let ping = request(vec![("command", Value::str("ping"))]);
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        match ng.call(&ping) {
            Ok(r) if result(&r) == "pong" => return Ok(p),
            _ if Instant::now() >= until || p.child.try_wait().ok().flatten().is_some() => {
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                anyhow::bail!(
                    "{} did not answer an NG ping (exited, or 15 s passed); its log ends: {:?}",
                    spec.name,
                    tail.into_iter().rev().collect::<Vec<_>>()
                )
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_name_the_contracted_flags() {
        let spec = RelaySpec {
            name: "rtpengine".into(),
            kind: RelayKind::Rtpengine {
                bin: "/usr/bin/rtpengine".into(),
                threads: 1,
            },
            ng: "127.0.0.1:22222".parse().unwrap(),
            port_min: 50_000,
            port_max: 53_999,
            workers: 1,
        };
        let (_, a) = args(&spec);
        for f in [
            "--table=-1",
            "--config-file=none",
            "--foreground",
            "--log-stderr",
        ] {
            assert!(a.iter().any(|x| x == f), "{f} missing from {a:?}");
        }
        assert!(a.contains(&"--listen-ng=127.0.0.1:22222".to_string()));
        let f = RelaySpec {
            kind: RelayKind::Ferrelay("target/release/ferrelay".into()),
            ..spec
        };
        let (_, a) = args(&f);
        assert!(a.contains(&"--workers=1".to_string()));
        assert!(a.contains(&"--listen-tcp-ng=127.0.0.1:22223".to_string()));
    }
}
