//! Runs the load engine through a tiny in-test forwarder on 127.0.0.1 and checks
//! that what the report says matches what the forwarder did to the packets.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrelay_tools::{CallAddrs, LoadConfig, LoadRun};

/// Latching pair forwarder; `mangle(n)` decides per forwarded packet (counted per
/// pair side) how many copies to send: 0 drops, 2 duplicates.
fn forwarder(
    calls: usize,
    mangle: fn(u64) -> usize,
) -> (Vec<CallAddrs>, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let socks: Vec<UdpSocket> = (0..calls * 2)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let addrs: Vec<CallAddrs> = (0..calls)
        .map(|i| CallAddrs {
            a: socks[2 * i].local_addr().unwrap(),
            b: socks[2 * i + 1].local_addr().unwrap(),
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let h = std::thread::spawn(move || {
        let mut latched: Vec<Option<SocketAddr>> = vec![None; socks.len()];
        let mut count = vec![0u64; socks.len()];
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
            let mut idle = true;
            for i in 0..socks.len() {
                while let Ok((n, from)) = socks[i].recv_from(&mut buf) {
                    idle = false;
                    latched[i].get_or_insert(from);
                    let Some(to) = latched[i ^ 1] else { continue };
                    count[i] += 1;
                    for _ in 0..mangle(count[i]) {
                        let _ = socks[i ^ 1].send_to(&buf[..n], to);
                    }
                }
            }
            if idle {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    });
    (addrs, stop, h)
}

fn cfg() -> LoadConfig {
    LoadConfig {
        pps: 100,
        duration: Duration::from_millis(1500),
        warmup: Duration::from_millis(300),
        drain: Duration::from_millis(300),
        ..LoadConfig::default()
    }
}

#[test]
fn clean_forwarder_loses_nothing() {
    let (calls, stop, h) = forwarder(4, |_| 1);
    let r = LoadRun::start(cfg(), &calls).unwrap().wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    // 8 streams at 100 pps for 1.2 s measured, give or take a packet per stream.
    assert!((900..=1000).contains(&r.sent), "{r}");
    assert_eq!(r.received, r.sent, "{r}");
    assert_eq!((r.lost, r.duplicates, r.misrouted), (0, 0, 0), "{r}");
    assert_eq!(r.latency.samples, r.received, "{r}");
    assert!(
        r.latency.p50_us > 0.0 && r.latency.max_us < 100_000.0,
        "{r}"
    );
}

#[test]
fn drops_and_duplicates_are_reported() {
    // Every 10th packet dropped, every 7th duplicated (unless dropped).
    let (calls, stop, h) = forwarder(2, |n| {
        if n % 10 == 0 {
            0
        } else if n % 7 == 0 {
            2
        } else {
            1
        }
    });
    let r = LoadRun::start(cfg(), &calls).unwrap().wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    let loss = r.lost as f64 / r.sent as f64;
    assert!((0.07..=0.13).contains(&loss), "{r}");
    let dup = r.duplicates as f64 / r.sent as f64;
    assert!((0.09..=0.17).contains(&dup), "{r}");
    assert_eq!(r.received + r.lost, r.sent, "{r}");
    assert_eq!(r.reordered, 0, "{r}");
}
