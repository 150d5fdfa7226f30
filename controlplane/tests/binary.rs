//! The real `ferrelay` binary: startup errors name the key, NG answers, and
//! SIGTERM ends it within 2 s; bound to `0.0.0.0` in a network namespace of its
//! own, it hears an address added or removed there at once.

use std::io::Write;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ferrelay");

fn run_err(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_values_stop_startup_naming_the_key() {
    let (code, err) = run_err(&["--port-min", "10"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--port-min") && err.contains("below 1024"),
        "{err}"
    );
    let (code, err) = run_err(&["--interface", "x/not-an-ip"]);
    assert_eq!(code, 2);
    assert!(err.contains("--interface"), "{err}");

    let path = std::env::temp_dir().join(format!("ferrelay-test-{}.toml", std::process::id()));
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "timeout = 10\nworkers = 1\nport-max = 99999").unwrap();
    drop(f);
    let (code, err) = run_err(&["--config", path.to_str().unwrap()]);
    std::fs::remove_file(&path).ok();
    assert_eq!(code, 2);
    assert!(err.contains("line 3") && err.contains("port-max"), "{err}");
}

#[test]
fn answers_ng_and_exits_on_sigterm_within_two_seconds() {
    // The client's socket first, so that its port cannot be the one the relay
    // is about to bind.
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    // A free port for NG (UDP and TCP).
    let port = {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = u.local_addr().unwrap().port();
        let t = std::net::TcpListener::bind(("127.0.0.1", p)).unwrap();
        drop((u, t));
        p
    };
    let ng = format!("127.0.0.1:{port}");
    let log_path =
        std::env::temp_dir().join(format!("ferrelay-sigterm-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--listen-ng",
            &ng,
            "--listen-tcp-ng",
            &ng,
            "--workers",
            "1",
            "--port-min",
            "47000",
            "--port-max",
            "47099",
        ])
        // Its log, shown if it does not answer.
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log.try_clone().unwrap()))
        .spawn()
        .unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 256];
    let mut reply = None;
    for _ in 0..50 {
        c.send_to(b"p1 d7:command4:pinge", &ng).unwrap();
        if let Ok((n, _)) = c.recv_from(&mut buf) {
            reply = Some(buf[..n].to_vec());
            break;
        }
    }
    let exited = child.try_wait().unwrap();
    let logged = std::fs::read_to_string(&log_path).unwrap_or_default();
    std::fs::remove_file(&log_path).ok();
    assert_eq!(
        reply.as_deref(),
        Some(&b"p1 d6:result4:ponge"[..]),
        "no pong on {ng}; the relay exited: {exited:?}; its log:\n{logged}"
    );

    let t0 = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(3) {
            child.kill().ok();
            panic!("still running 3 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

/// A child process killed (and reaped) when dropped, a failed test included.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Reads `child`'s stdout lines into a channel, from a thread of its own.
fn log_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let out = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line containing `what` within `limit`, or a panic saying so.
fn wait_line(lines: &std::sync::mpsc::Receiver<String>, what: &str, limit: Duration) -> String {
    let t0 = Instant::now();
    while let Some(left) = limit.checked_sub(t0.elapsed()) {
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no log line with {what:?} within {limit:?}");
}

/// Runs `ip` in the user and network namespaces of process `pid`.
fn ip_in(pid: u32, args: &[&str]) {
    let status = Command::new("nsenter")
        .args([
            "--preserve-credentials",
            "-U",
            "-n",
            "-t",
            &pid.to_string(),
            "ip",
        ])
        .args(args)
        .status()
        .expect("nsenter (util-linux) runs");
    assert!(status.success(), "ip {args:?} in the relay's namespace");
}

/// A relay bound to `0.0.0.0` is reached at every address of its host, so its
/// loop guard must learn an address added while it runs (a VIP moved here,
/// a DHCP lease) at once, not at the next 30 s re-read. In a network namespace
/// of its own, holding only `lo`, inside a user namespace (`unshare -rn`), so
/// that no privilege is needed where unprivileged user namespaces are allowed.
#[test]
fn a_wildcard_relay_hears_the_host_addresses_change() {
    let mut child = Command::new("unshare")
        .args([
            "-rn",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
            BIN,
        ])
        .args([
            "--interface",
            "0.0.0.0!127.0.0.1",
            "--workers",
            "1",
            "--port-min",
            "47100",
            "--port-max",
            "47199",
            "--log-level",
            "info",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare (util-linux) runs");
    let lines = log_lines(&mut child);
    // Killed however the test ends.
    let child = KillOnDrop(child);
    let pid = child.0.id();
    wait_line(&lines, "ferrelay listening", Duration::from_secs(10));

    // Far sooner than the 30 s re-read: the kernel's announcement did it.
    let limit = Duration::from_secs(5);
    let t0 = Instant::now();
    ip_in(pid, &["addr", "add", "10.99.0.1/32", "dev", "lo"]);
    wait_line(&lines, "the host's addresses changed", limit);
    let added = t0.elapsed();
    let t0 = Instant::now();
    ip_in(pid, &["addr", "del", "10.99.0.1/32", "dev", "lo"]);
    wait_line(&lines, "the host's addresses changed", limit);
    let removed = t0.elapsed();
    drop(child);
    assert!(added < limit && removed < limit, "{added:?} {removed:?}");
}
