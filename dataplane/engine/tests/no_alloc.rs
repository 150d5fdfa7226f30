//! The hot path must not allocate: a counting global allocator watches thousands of
//! `on_datagram` calls over every path (forward, latch, relatch, rewrites, RTCP,
//! drops, events, residence) and must see zero allocations.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use ferrelay_engine::{Action, Component, FlowId, MismatchPolicy, SsrcRewrite};

/// Counts allocations made by the current thread while `ARMED` is set.
struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: forwards every call unchanged to `System`, only counting on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn hot_path_never_allocates() {
    let mut c = Call::new(Component::Muxed, |r| {
        r.on_mismatch = MismatchPolicy::Relatch {
            relatch_after_ns: 100 * MS,
        };
        r.ssrc_rewrite = Some(SsrcRewrite { from: 1, to: 2 });
        r.pt_map.0[96] = 97;
    });
    // Every packet built before arming; each iteration reuses one buffer.
    let media = rtp(96, 0, 0, 1, &[0x55; 160]);
    let foreign = rtp(96, 0, 0, 0xBAD, &[0x66; 160]);
    let report = rtcp_rr_sdes(1);
    let stun = [0u8, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    let stale = FlowId::new(c.a.index, c.a.generation + 9);
    let mut buf = vec![0u8; 1500];
    let mut forwarded = 0u64;
    let mut dropped = 0u64;

    ARMED.with(|a| a.set(true));
    let mut now = 0;
    for i in 0..5_000u32 {
        now += 20 * MS;
        let seq = (i % 65_536) as u16;
        // Alice's port moves every 1000 packets after a pause: relatch + event.
        let alice = addr(1, 4000 + (i / 1000) as u16);
        if i % 1000 == 0 {
            now += SEC;
        }
        let cases: [(FlowId, std::net::SocketAddr, &[u8]); 6] = [
            (c.a, alice, &media),
            (c.b, c.bob, &media),
            (c.a, alice, &report),
            (c.a, addr(66, 6), &foreign),
            (c.a, alice, &stun),
            (stale, alice, &media),
        ];
        for (id, src, pkt) in cases {
            buf[..pkt.len()].copy_from_slice(pkt);
            if pkt.len() == media.len() {
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
            }
            match c.engine.on_datagram(now, id, src, &mut buf, pkt.len()) {
                Action::Forward { .. } => {
                    forwarded += 1;
                    c.engine.record_residence(u64::from(i) * 10);
                }
                Action::Drop(_) => dropped += 1,
            }
        }
        // Events are drained by the shell; an idle scan every so often.
        while c.engine.pop_event().is_some() {}
        if i % 500 == 0 {
            c.engine.scan_idle(now, SEC);
        }
        let _ = c.engine.flow_stats(c.a);
    }
    ARMED.with(|a| a.set(false));
    let allocs = ALLOCS.with(|n| n.get());

    assert_eq!(allocs, 0, "allocations on the hot path");
    // The loop really exercised both outcomes.
    assert_eq!(forwarded, 3 * 5_000);
    assert_eq!(dropped, 3 * 5_000);
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!(s.relatches, 4);
    assert_eq!(c.engine.worker_stats().residence_ns.len(), forwarded);
}
