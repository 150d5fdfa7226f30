//! The per-packet calls must not touch the heap: a counting allocator counts
//! every allocation this test's thread makes while thousands of packets go
//! through each suite, RTP and RTCP, in both directions, including refused
//! (replayed, tampered) packets. Only this thread's: the test harness's own
//! thread may allocate meanwhile (a process-wide count, as dhat's was, caught
//! it once on a loaded machine).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ferrelay_srtp::{MasterKey, SrtpContext, SrtpError, SrtpParams, Suite};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the allocator may run while thread-locals are torn down.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations this thread has made.
fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

const SUITES: [Suite; 7] = [
    Suite::AesCm128HmacSha1_80,
    Suite::AesCm128HmacSha1_32,
    Suite::AesCm256HmacSha1_80,
    Suite::AesCm256HmacSha1_32,
    Suite::AeadAes128Gcm,
    Suite::AeadAes256Gcm,
    Suite::Null,
];

fn context(suite: Suite) -> SrtpContext {
    let material = [0x5au8; 46];
    let n = suite.key_len() + suite.salt_len();
    SrtpContext::new(&SrtpParams {
        suite,
        key: MasterKey::from_concatenated(suite, &material[..n]).unwrap(),
        replay_window: 256,
    })
    .unwrap()
}

#[test]
fn per_packet_calls_never_allocate() {
    let mut contexts: Vec<(Suite, SrtpContext, SrtpContext)> = SUITES
        .iter()
        .map(|&s| (s, context(s), context(s)))
        .collect();

    let before = allocs();
    let mut refused = 0u32;
    for (suite, tx, rx) in &mut contexts {
        for i in 0..3000u32 {
            let mut buf = [0u8; 1500];
            buf[0] = 0x80;
            buf[2..4].copy_from_slice(&((i as u16).wrapping_add(60_000)).to_be_bytes());
            // Twelve SSRCs rotate through the eight-slot table: LRU recycling is exercised too.
            buf[8..12].copy_from_slice(&(i % 12).to_be_bytes());
            let n = tx.protect_rtp(&mut buf, 172).unwrap();
            let copy = buf;
            assert_eq!(rx.unprotect_rtp(&mut buf, n), Ok(172));
            let mut again = copy;
            if rx.unprotect_rtp(&mut again, n).is_err() {
                refused += 1;
            }
            if *suite != Suite::Null {
                let mut bad = copy;
                bad[20] ^= 1;
                buf = bad;
                // Tampered after a genuine copy was accepted: a replay, or auth failure.
                assert!(matches!(
                    rx.unprotect_rtp(&mut buf, n),
                    Err(SrtpError::Replayed | SrtpError::AuthFailed)
                ));
            }

            let mut c = [0u8; 1500];
            c[..8].copy_from_slice(&[0x81, 201, 0, 7, 0, 0, 0, (i % 3) as u8]);
            let m = tx.protect_rtcp(&mut c, 32).unwrap();
            assert_eq!(rx.unprotect_rtcp(&mut c, m), Ok(32));
        }
    }
    let after = allocs();
    assert!(refused > 0, "the replayed copies were refused");
    assert_eq!(
        after - before,
        0,
        "SRTP per-packet calls allocated {} blocks",
        after - before
    );
}
