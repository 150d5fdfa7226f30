//! A peer process that dies with the test: its process group is killed on drop, also
//! when the test panics (Kamailio forks workers that would outlive their parent).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A started peer with its combined stdout/stderr in a log file.
#[derive(Debug)]
pub struct Peer {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Peer {
    /// Starts `cmd` with stdin closed and output going to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Peer {
        let out = File::create(log).expect("create log");
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Peer {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    /// The log so far, with the carriage returns of status lines made newlines.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).replace('\r', "\n"))
            .unwrap_or_default()
    }

    /// The last `n` meaningful lines of the log, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains("audio="))
            .collect();
        let from = lines.len().saturating_sub(n);
        format!(
            "--- {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            lines[from..].join("\n")
        )
    }

    /// Waits until the log holds `needle`; panics with the log's tail after `limit`.
    pub fn wait_log(&mut self, needle: &str, limit: Duration) {
        let seen = crate::wait_for(limit, || {
            if self.log().contains(needle) {
                return Some(());
            }
            match self.child.try_wait() {
                Ok(Some(status)) => panic!("{} exited ({status})\n{}", self.name, self.tail(30)),
                _ => None,
            }
        });
        if seen.is_none() {
            panic!(
                "{} did not log {needle:?} within {limit:?}\n{}",
                self.name,
                self.tail(30)
            );
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        // The group id is the child's pid (`process_group(0)`).
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A passing test leaves nothing behind; a failing one keeps its scratch
        // directory (configuration and logs) for reading.
        if let Some(dir) = self.log.parent()
            && !std::thread::panicking()
            && dir.starts_with(std::env::temp_dir())
            && dir.to_string_lossy().contains("ferrelay-interop-")
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
