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

/// Every SRTP path on one muxed call: SRTP→SRTP with a suite change (RTP across the
/// sequence wrap, and SRTCP), plain→SRTP, and the replay and forged-tag drops.
#[test]
fn crypto_hot_path_never_allocates() {
    use ferrelay_engine::srtp::{MasterKey, SrtpContext, SrtpParams, Suite};
    use ferrelay_engine::{DropReason, FlowRule, Output};

    let params = |suite: Suite, fill: u8| SrtpParams {
        suite,
        key: MasterKey::from_concatenated(suite, &vec![fill; suite.key_len() + suite.salt_len()])
            .unwrap(),
        replay_window: 128,
    };
    let from_alice = params(Suite::AesCm128HmacSha1_80, 1);
    let to_bob = params(Suite::AeadAes128Gcm, 2);
    let to_alice = params(Suite::AesCm128HmacSha1_32, 3);
    let mut c = Call::new(Component::Muxed, |_| {});
    for (id, remote, peer) in [(c.a, c.alice, c.b), (c.b, c.bob, c.a)] {
        let mut r = FlowRule::new(Component::Muxed);
        r.remote = Some(remote);
        r.rtp_out = Some(Output { via: peer });
        r.rtcp_out = Some(Output { via: peer });
        if id == c.a {
            r.crypto.decrypt = Some(from_alice.clone());
            r.crypto.encrypt = Some(to_bob.clone());
        } else {
            r.crypto.encrypt = Some(to_alice.clone());
        }
        c.engine.update(id, r).unwrap();
    }
    // Alice's SRTP and SRTCP, built before arming.
    const N: u16 = 3_000;
    let mut alice = SrtpContext::new(&from_alice).unwrap();
    let protect = |pkt: Vec<u8>, rtcp: bool, ctx: &mut SrtpContext| {
        let mut b = with_tailroom(&pkt);
        let n = if rtcp {
            ctx.protect_rtcp(&mut b, pkt.len())
        } else {
            ctx.protect_rtp(&mut b, pkt.len())
        };
        b.truncate(n.unwrap());
        b
    };
    let media: Vec<Vec<u8>> = (0..=N)
        .map(|i| {
            let seq = 65_000u16.wrapping_add(i);
            protect(rtp(96, seq, 0, 0xA11CE, &[0x55; 160]), false, &mut alice)
        })
        .collect();
    // Each iteration, a forgery of the *next* packet: a fresh index, so only its tag fails.
    let srtp: Vec<(&Vec<u8>, Vec<u8>, Vec<u8>)> = (0..usize::from(N))
        .map(|i| {
            let mut forged = media[i + 1].clone();
            forged[30] ^= 1;
            let report = protect(rtcp_rr_sdes(0xA11CE), true, &mut alice);
            (&media[i], forged, report)
        })
        .collect();
    let bob_media = rtp(0, 0, 0, 0xB0B, &[0x66; 160]);
    let mut buf = vec![0u8; 1500];
    let mut forwarded = 0u64;
    let mut dropped = [0u64; DropReason::COUNT];

    ARMED.with(|a| a.set(true));
    let mut now = 0;
    for (i, (media, forged, report)) in srtp.iter().enumerate() {
        now += 20 * MS;
        let seq = 65_000u16.wrapping_add(i as u16);
        let cases: [(FlowId, std::net::SocketAddr, &[u8]); 5] = [
            (c.a, c.alice, media),
            (c.a, c.alice, media),
            (c.a, c.alice, forged),
            (c.a, c.alice, report),
            (c.b, c.bob, &bob_media),
        ];
        for (k, (id, src, pkt)) in cases.into_iter().enumerate() {
            buf[..pkt.len()].copy_from_slice(pkt);
            if k == 4 {
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
            }
            match c.engine.on_datagram(now, id, src, &mut buf, pkt.len()) {
                Action::Forward { .. } => forwarded += 1,
                Action::Drop(r) => dropped[r.index()] += 1,
            }
        }
        while c.engine.pop_event().is_some() {}
    }
    ARMED.with(|a| a.set(false));
    let allocs = ALLOCS.with(|n| n.get());

    assert_eq!(allocs, 0, "allocations on the SRTP hot path");
    let n = u64::from(N);
    assert_eq!(forwarded, 3 * n);
    assert_eq!(dropped[DropReason::SrtpReplay.index()], n);
    assert_eq!(dropped[DropReason::SrtpAuth.index()], n);
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!((s.rtp.received, s.rtp.lost, s.rtcp_packets), (n, 0, n));
}
