//! Loopback load: N calls x R packets/s per direction through one worker, then the
//! worker thread's CPU time per forwarded packet (from /proc, so the generator's own
//! cost is not counted).
//!
//! `cargo run --release -p ferrelay-dataplane --example load -- [calls] [pps] [secs] [auto|uring|mmsg] [busy]`
//!
//! With `ext:PID:BASE_PORT` as the backend it drives an external forwarder instead
//! (port pair i = BASE+2i <-> BASE+2i+1, e.g. the bench crate's `fwd-uring`) and reads
//! the CPU of that process's first thread, for a like-for-like baseline.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use ferrelay_dataplane::{Backend, Dataplane, DataplaneConfig, Event};
use ferrelay_engine::{Component, FlowRule, LatchMode, Output};

/// (user ticks, system ticks, on-CPU ns) of the thread named `name` in process `pid`.
fn thread_cpu(pid: &str, name: &str) -> Option<(u64, u64, u64)> {
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let p = e.ok()?.path();
        let comm = std::fs::read_to_string(p.join("comm")).ok()?;
        if !name.is_empty() && comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(p.join("stat")).ok()?;
        let after = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        let sched = std::fs::read_to_string(p.join("schedstat")).ok()?;
        let run_ns = sched.split_whitespace().next()?.parse().ok()?;
        return Some((f[11].parse().ok()?, f[12].parse().ok()?, run_ns));
    }
    None
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let calls: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(500);
    let pps: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(50);
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let backend = match args.get(4).map(String::as_str) {
        Some("uring") => Backend::IoUring,
        Some("mmsg") => Backend::Mmsg,
        _ => Backend::Auto,
    };
    let busy_poll = args.get(5).is_some_and(|s| s == "busy");
    if let Some(ext) = args.get(4).and_then(|s| s.strip_prefix("ext:")) {
        let (pid, base) = ext.split_once(':').expect("ext:PID:BASE");
        let base: u16 = base.parse().expect("base port");
        let mut phones = Vec::new();
        for i in 0..calls as u16 {
            for side in 0..2 {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                let to: std::net::SocketAddr = ([127, 0, 0, 1], base + 2 * i + side).into();
                phones.push((s, to));
            }
        }
        let (sent, wall, before, after) = drive(&phones, pps, secs, || thread_cpu(pid, ""));
        report_cpu(calls, pps, wall, sent, sent as f64, before, after);
        return;
    }
    let cores = core_ids();
    let cfg = DataplaneConfig {
        workers: 1,
        cores: Some(vec![*cores.last().unwrap_or(&0)]),
        backend,
        busy_poll,
        max_flows_per_worker: (calls * 2 + 16) as u32,
        recv_buffers: 4096,
        ..DataplaneConfig::default()
    };
    let mut dp = Dataplane::start(cfg).expect("start");
    println!("backend: {:?}", dp.backend_in_use());
    let w = dp.worker(0).unwrap();
    let mut phones = Vec::new();
    for _ in 0..calls {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ra = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rb = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (ra_addr, rb_addr) = (ra.local_addr().unwrap(), rb.local_addr().unwrap());
        let rule = |remote, out: Option<ferrelay_engine::FlowId>| {
            let mut r = FlowRule::new(Component::Rtp);
            r.remote = Some(remote);
            r.latch = LatchMode::LatchFirst;
            r.rtp_out = out.map(|via| Output { via });
            r
        };
        let fb = w.add_flow(rb, rule(b.local_addr().unwrap(), None)).unwrap();
        let fa = w
            .add_flow(ra, rule(a.local_addr().unwrap(), Some(fb)))
            .unwrap();
        w.update_flow(fb, rule(b.local_addr().unwrap(), Some(fa)))
            .unwrap();
        phones.push((a, ra_addr));
        phones.push((b, rb_addr));
        // Drain the command ring as we go (ring is 1024 deep).
        if phones.len() % 256 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let (sent, wall, before, after) =
        drive(&phones, pps, secs, || thread_cpu("self", "ferrelay-w0"));
    w.query(1, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut report = None;
    while report.is_none() && Instant::now() < deadline {
        w.ack_events();
        while let Some(ev) = w.try_recv_event() {
            if let Event::WorkerStats(r) = ev
                && r.token == Some(1)
            {
                report = Some(r);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = report.expect("stats");
    let fwd = r.engine.tx_packets as f64;
    report_cpu(calls, pps, wall, sent, fwd, before, after);
    let h = &r.engine.residence_ns;
    println!(
        "residence ns: p50 {} p99 {} max {}; io {:?}",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max(),
        r.io
    );
    println!("drops {:?}", r.engine.drops);
    dp.shutdown();
}

fn core_ids() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

type Cpu = (u64, u64, u64);

/// Sends one packet from every phone each 1/pps seconds for `secs`; returns
/// (sent, wall, cpu before, cpu after).
fn drive(
    phones: &[(UdpSocket, std::net::SocketAddr)],
    pps: u64,
    secs: u64,
    cpu: impl Fn() -> Option<Cpu>,
) -> (u64, Duration, Cpu, Cpu) {
    let mut pkt = vec![0x80u8, 0];
    pkt.extend_from_slice(&[0; 10]);
    pkt.extend(std::iter::repeat_n(0xd5u8, 160));
    let tick = Duration::from_nanos(1_000_000_000 / pps.max(1));
    let before = cpu().expect("forwarder thread");
    let t0 = Instant::now();
    let mut next = t0;
    let mut seq: u16 = 0;
    let mut sent = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        seq = seq.wrapping_add(1);
        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
        pkt[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        for (i, (s, to)) in phones.iter().enumerate() {
            pkt[8..12].copy_from_slice(&(i as u32).to_be_bytes());
            if s.send_to(&pkt, to).is_ok() {
                sent += 1;
            }
        }
        next += tick;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    let after = cpu().expect("forwarder thread");
    (sent, t0.elapsed(), before, after)
}

fn report_cpu(
    calls: usize,
    pps: u64,
    wall: Duration,
    sent: u64,
    fwd: f64,
    before: Cpu,
    after: Cpu,
) {
    println!(
        "calls={calls} pps/dir={pps} wall={:.2}s sent={sent} forwarded={fwd} ({:.0} pps)",
        wall.as_secs_f64(),
        fwd / wall.as_secs_f64()
    );
    let hz = 100.0; // USER_HZ on Linux
    let user_s = (after.0 - before.0) as f64 / hz;
    let sys_s = (after.1 - before.1) as f64 / hz;
    let run_s = (after.2 - before.2) as f64 / 1e9;
    println!(
        "worker cpu: user {:.3}s sys {:.3}s on-cpu {:.3}s = {:.1}% of a core",
        user_s,
        sys_s,
        run_s,
        100.0 * run_s / wall.as_secs_f64()
    );
    println!(
        "per forwarded packet: user {:.3} us, sys {:.3} us, total on-cpu {:.3} us",
        user_s * 1e6 / fwd,
        sys_s * 1e6 / fwd,
        run_s * 1e6 / fwd
    );
}
