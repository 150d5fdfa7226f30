//! Helpers shared by the end-to-end suites: starting real peers on loopback and
//! waiting for them, bounded in time.
#![forbid(unsafe_code)]

pub mod baresip;
pub mod call;
pub mod kamailio;
pub mod process;
pub mod relay;

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Fails the test, naming the Debian package, when a peer's program is missing:
/// a suite against a real peer must never pass without that peer.
pub fn require(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{program}` not found: install the Debian package `{package}` \
             (scripts/setup.sh installs scripts/deps/interop.apt)"
        )
    })
}

/// Phones measure packets against wall-clock talk time: running two calls at once on a
/// 2-core machine only adds noise, so the tests of one binary take turns.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `n` consecutive loopback ports free for both UDP and TCP when looked at
/// (baresip also opens TCP on its SIP port; Kamailio and the relay use UDP).
pub fn free_ports(n: u16) -> u16 {
    static SPREAD: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..200 {
        let k = SPREAD.fetch_add(1, Ordering::Relaxed);
        let base = 20_000 + ((seed.wrapping_add(k.wrapping_mul(613))) % 9_000) as u16 / n * n;
        let all_free = (base..base + n).all(|p| {
            UdpSocket::bind(("127.0.0.1", p)).is_ok() && TcpListener::bind(("127.0.0.1", p)).is_ok()
        });
        if all_free {
            return base;
        }
    }
    panic!("no block of {n} free loopback ports in 20000..29000")
}

/// A fresh scratch directory for one peer's configuration and logs; the peer removes
/// it when dropped, unless the test is failing.
pub fn scratch_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ferrelay-interop-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Polls `check` every 20 ms until it gives a value or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A template from `tests/kamailio/` (or any file under the crate) with `{{KEY}}`
/// placeholders filled; a placeholder left over is a bug in the test.
pub fn fill_template(rel: &str, vars: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read template {}: {e}", path.display()));
    for (k, v) in vars {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    assert!(
        !text.contains("{{"),
        "template {rel} has an unfilled placeholder"
    );
    text
}
