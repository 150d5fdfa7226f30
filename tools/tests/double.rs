//! The generator's measurements checked against a deterministic in-process relay
//! (a test double) that drops, duplicates, reorders and delays known packets and
//! counts what it did: the report must match those counts exactly, and latency
//! must show the injected delay.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferrelay_tools::modes::{self, Placer, RampConfig};
use ferrelay_tools::{CallAddrs, LoadConfig, LoadReport, LoadRun};

/// What the double does to the n-th packet (1-based) of each direction.
#[derive(Debug, Clone, Copy)]
struct Rules {
    /// n % 10 == 0 is dropped, n % 10 == 3 sent twice, n % 10 == 6 held back and
    /// sent right after packet n + 1 (one reorder). Off: forward everything once.
    mangle: bool,
    /// Every packet leaves this long after it arrived.
    delay: Duration,
}

/// What the double did, per the rules.
#[derive(Debug, Default, Clone, Copy)]
struct Done {
    forwarded: u64,
    dropped: u64,
    duplicated: u64,
    reordered: u64,
}

/// A packet waiting in the double: (due, arrival order, out socket, bytes).
type Queued = (Instant, u64, usize, Vec<u8>);

struct Double {
    calls: Vec<CallAddrs>,
    stop: Arc<AtomicBool>,
    done: Arc<Mutex<Done>>,
    thread: JoinHandle<()>,
}

impl Double {
    fn finish(self) -> Done {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        *self.done.lock().unwrap()
    }
}

/// Starts the double for `calls` calls: latching socket pairs on 127.0.0.1, one
/// thread, a release queue ordered by due time (then arrival order).
fn double(calls: usize, rules: Rules) -> Double {
    let socks: Vec<UdpSocket> = (0..calls * 2)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let addrs = (0..calls)
        .map(|i| CallAddrs {
            a: socks[2 * i].local_addr().unwrap(),
            b: socks[2 * i + 1].local_addr().unwrap(),
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Mutex::new(Done::default()));
    let (stop2, done2) = (Arc::clone(&stop), Arc::clone(&done));
    let thread = std::thread::spawn(move || {
        let mut latched: Vec<Option<SocketAddr>> = vec![None; socks.len()];
        let mut count = vec![0u64; socks.len()];
        let mut held: Vec<Option<Vec<u8>>> = vec![None; socks.len()];
        let mut queue: BinaryHeap<Reverse<Queued>> = BinaryHeap::new();
        let mut order = 0u64;
        let mut d = Done::default();
        let mut buf = [0u8; 2048];
        let epoch = Instant::now();
        let deadline = epoch + Duration::from_secs(30);
        let mut push = |q: &mut BinaryHeap<_>, out: usize, p: Vec<u8>, at: Instant| {
            order += 1;
            q.push(Reverse((at + rules.delay, order, out, p)));
        };
        while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
            let mut idle = true;
            for i in 0..socks.len() {
                while let Ok((n, from)) = socks[i].recv_from(&mut buf) {
                    idle = false;
                    // Learn the latest source, as relays do, so a later run on fresh
                    // client sockets is forwarded to them.
                    latched[i] = Some(from);
                    // Until the other side has sent, there is nowhere to forward to;
                    // the generator's warm-up covers these.
                    if latched[i ^ 1].is_none() {
                        continue;
                    }
                    let now = Instant::now();
                    count[i] += 1;
                    let pkt = buf[..n].to_vec();
                    let k = count[i] % 10;
                    if rules.mangle && k == 0 {
                        d.dropped += 1;
                    } else if rules.mangle && k == 3 {
                        push(&mut queue, i ^ 1, pkt.clone(), now);
                        push(&mut queue, i ^ 1, pkt, now);
                        d.duplicated += 1;
                        d.forwarded += 1;
                    } else if rules.mangle && k == 6 {
                        held[i] = Some(pkt);
                    } else {
                        push(&mut queue, i ^ 1, pkt, now);
                        d.forwarded += 1;
                        if let Some(h) = held[i].take() {
                            push(&mut queue, i ^ 1, h, now);
                            d.forwarded += 1;
                            d.reordered += 1;
                        }
                    }
                }
            }
            let now = Instant::now();
            while queue.peek().is_some_and(|Reverse(e)| e.0 <= now) {
                let Reverse((_, _, out, p)) = queue.pop().unwrap();
                if let Some(to) = latched[out] {
                    let _ = socks[out].send_to(&p, to);
                }
            }
            if idle {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        *done2.lock().unwrap() = d;
    });
    Double {
        calls: addrs,
        stop,
        done,
        thread,
    }
}

/// 100 pps for 1.5 s per direction. Warm-up 0: every packet the double sees is
/// measured, so its counts and the report's can be compared exactly. Packets sent
/// before the other side latched are never forwarded; they are the only loss the
/// double did not choose, and the test accounts for them separately.
fn cfg() -> LoadConfig {
    LoadConfig {
        pps: 100,
        duration: Duration::from_millis(1500),
        warmup: Duration::ZERO,
        drain: Duration::from_millis(400),
        ..LoadConfig::default()
    }
}

fn run(calls: usize, rules: Rules) -> (LoadReport, Done) {
    let d = double(calls, rules);
    let r = LoadRun::start(cfg(), &d.calls).unwrap().wait().unwrap();
    (r, d.finish())
}

#[test]
fn drops_duplicates_and_reorders_are_counted_exactly() {
    let (r, d) = run(
        3,
        Rules {
            mangle: true,
            delay: Duration::ZERO,
        },
    );
    assert!(
        d.dropped > 20 && d.duplicated > 20 && d.reordered > 20,
        "{d:?}"
    );
    // Unique packets received = what the double forwarded (copies counted once).
    assert_eq!(r.received, d.forwarded, "{r}\n{d:?}");
    assert_eq!(r.duplicates, d.duplicated, "{r}\n{d:?}");
    assert_eq!(r.reordered, d.reordered, "{r}\n{d:?}");
    // Loss = the double's drops plus the packets it could not forward before
    // latching (sent - forwarded - dropped - still held at the end).
    let unlatched = r.sent - d.forwarded - d.dropped;
    assert!(
        unlatched <= 2 * 6,
        "at most ~1 packet per stream before latching (+ one held at the end): {unlatched}"
    );
    assert_eq!(r.lost, d.dropped + unlatched, "{r}\n{d:?}");
    assert_eq!((r.misrouted, r.foreign, r.corrupt), (0, 0, 0), "{r}");
    // Per call figures add up to the totals.
    let per: u64 = r
        .per_call
        .iter()
        .map(|c| c.a_to_b.duplicates + c.b_to_a.duplicates)
        .sum();
    assert_eq!(per, r.duplicates);
}

#[test]
fn clean_double_loses_nothing() {
    let (r, d) = run(
        4,
        Rules {
            mangle: false,
            delay: Duration::ZERO,
        },
    );
    assert_eq!(r.received, d.forwarded, "{r}");
    assert_eq!((r.duplicates, r.reordered, r.corrupt), (0, 0, 0), "{r}");
    assert_eq!(r.latency.samples, r.received, "{r}");
}

#[test]
fn injected_delay_shows_in_latency() {
    const DELAY: Duration = Duration::from_millis(30);
    let (r, d) = run(
        2,
        Rules {
            mangle: false,
            delay: DELAY,
        },
    );
    assert_eq!(r.received, d.forwarded, "{r}");
    assert_eq!(r.reordered, 0, "a constant delay keeps order: {r}");
    let delay_us = DELAY.as_micros() as f64;
    // Lower bound is hard: no packet can leave the double before its delay is up
    // (HDR rounds within 0.1% at 3 digits).
    assert!(r.latency.min_us >= delay_us * 0.999, "{r}");
    // Upper bound: the double polls every 100 us and the generator's receiver is
    // woken by epoll, so on an idle machine p50 is within ~1 ms of the delay. The
    // 10 ms margin is for a loaded 2-core CI machine descheduling either thread.
    assert!(r.latency.p50_us <= delay_us + 10_000.0, "{r}");
    // Jitter of a constant delay is the scheduling noise only: well under the delay.
    assert!(r.jitter_max_us < delay_us / 3.0, "{r}");
}

#[test]
fn ramp_stops_at_the_first_step_over_the_p99_bound() {
    // Every packet delayed 20 ms: a p99 bound of 5 ms fails the first step, a
    // bound of 1 s passes every step up to the maximum.
    let d = double(
        3,
        Rules {
            mangle: false,
            delay: Duration::from_millis(20),
        },
    );
    let cfg = LoadConfig {
        duration: Duration::from_millis(600),
        warmup: Duration::from_millis(200),
        drain: Duration::from_millis(200),
        ..cfg()
    };
    let mut placer = Placer::List(d.calls.clone());
    let bounds = RampConfig {
        start: 1,
        step: 1,
        max: 3,
        loss_pct_max: 0.1,
        p99_max_us: 5_000.0,
    };
    let tick = Duration::from_millis(100);
    let tight = modes::ramp(&mut placer, &cfg, bounds, tick, &mut |_| {}, &mut |_| {}).unwrap();
    assert_eq!(tight.steps.len(), 1, "{tight:?}");
    assert_eq!(tight.best_calls, None);
    let loose = RampConfig {
        p99_max_us: 1_000_000.0,
        ..bounds
    };
    let mut seen = Vec::new();
    let r = modes::ramp(&mut placer, &cfg, loose, tick, &mut |_| {}, &mut |s| {
        seen.push(s.calls)
    })
    .unwrap();
    d.finish();
    assert_eq!(seen, vec![1, 2, 3]);
    assert_eq!(r.best_calls, Some(3), "{r:?}");
    assert!(
        r.steps
            .iter()
            .all(|s| s.passed && s.report.calls == s.calls)
    );
}
