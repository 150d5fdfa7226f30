//! The packet path allocates nothing: a counting global allocator sees the same number
//! of allocations before and after hundreds of forwarded packets, on both backends.
//! Its own test binary, so no other test allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferrelay_dataplane::{Backend, Dataplane, DataplaneConfig};
use ferrelay_engine::{Component, FlowRule, LatchMode, Output};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn run(backend: Backend) {
    let cfg = DataplaneConfig {
        workers: 1,
        backend,
        max_flows_per_worker: 8,
        recv_buffers: 64,
        // No periodic snapshot (it clones the histogram) inside the measured window.
        stats_interval: Duration::from_secs(3600),
        idle_after: Duration::from_secs(3600),
        ..DataplaneConfig::default()
    };
    let mut dp = match Dataplane::start(cfg) {
        Ok(dp) => dp,
        Err(e) if backend == Backend::IoUring => {
            eprintln!("SKIP io_uring: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let w = dp.worker(0).unwrap();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    b.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let ra = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rb = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ra_addr = ra.local_addr().unwrap();
    let mut rule_b = FlowRule::new(Component::Rtp);
    rule_b.remote = Some(b.local_addr().unwrap());
    rule_b.latch = LatchMode::Fixed;
    let fb = w.add_flow(rb, rule_b).unwrap();
    let mut rule_a = FlowRule::new(Component::Rtp);
    rule_a.remote = Some(a.local_addr().unwrap());
    rule_a.rtp_out = Some(Output { via: fb });
    w.add_flow(ra, rule_a).unwrap();
    let mut pkt = [0u8; 172];
    pkt[0] = 0x80;
    let mut buf = [0u8; 2048];
    let mut relay = |n: u16| {
        for seq in 0..n {
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            a.send_to(&pkt, ra_addr).unwrap();
            let got = b.recv(&mut buf).expect("forwarded");
            assert_eq!(got, pkt.len());
        }
    };
    // Warm up: latching, first-packet stats state, lazily sized kernel-side things.
    relay(20);
    let before = ALLOCS.load(Ordering::Relaxed);
    relay(500);
    let after = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(
        after - before,
        0,
        "{backend:?}: allocations while forwarding 500 packets"
    );
    dp.shutdown();
}

#[test]
fn forwarding_does_not_allocate() {
    run(Backend::IoUring);
    run(Backend::Mmsg);
}
