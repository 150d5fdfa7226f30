//! SRTP transform cost per packet, per suite: 172-byte RTP (12-byte header +
//! 160-byte payload, one 20 ms G.711 frame), protect and unprotect in place.
//!
//! Same method as `bench/libsrtp/bench.c`, so `bench/srtp-compare.sh` can
//! put the two side by side: a batch of packets with consecutive sequence
//! numbers is prepared untimed, then protect runs timed over the batch (and,
//! for the unprotect benchmark, unprotect runs timed over a protected batch).

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use ferrelay_srtp::{MasterKey, SrtpContext, SrtpParams, Suite};
use std::time::{Duration, Instant};

const BATCH: usize = 1024;
const PKT: usize = 172;
const SLOT: usize = 256;

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
    // Same key bytes as bench.c: i * 31 + 9.
    let material: Vec<u8> = (0..suite.key_len() + suite.salt_len())
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(9))
        .collect();
    SrtpContext::new(&SrtpParams {
        suite,
        key: MasterKey::from_concatenated(suite, &material).expect("key length"),
        replay_window: 128,
    })
    .expect("context")
}

fn fill(pkt: &mut [u8; SLOT], seq: u16) {
    pkt[..PKT].fill(0);
    pkt[0] = 0x80;
    pkt[2..4].copy_from_slice(&seq.to_be_bytes());
    pkt[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    for (i, b) in pkt[12..PKT].iter_mut().enumerate() {
        *b = (((i + 12) * 7) as u8).wrapping_add(seq as u8);
    }
}

/// Protects one batch into `bufs`, returning the time protect took.
fn protect_batch(
    tx: &mut SrtpContext,
    bufs: &mut [[u8; SLOT]],
    lens: &mut [usize],
    seq: &mut u16,
) -> Duration {
    for b in bufs.iter_mut() {
        fill(b, *seq);
        *seq = seq.wrapping_add(1);
    }
    let t = Instant::now();
    for (b, l) in bufs.iter_mut().zip(lens.iter_mut()) {
        *l = tx.protect_rtp(black_box(b), PKT).expect("protect");
    }
    t.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp");
    group.throughput(Throughput::Elements(1));
    for suite in SUITES {
        let name = suite.sdes_name();
        group.bench_function(format!("{name}/protect"), |b| {
            let mut tx = context(suite);
            let mut bufs = vec![[0u8; SLOT]; BATCH];
            let mut lens = vec![0usize; BATCH];
            let mut seq = 1u16;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let n = left.min(BATCH);
                    total += protect_batch(&mut tx, &mut bufs[..n], &mut lens[..n], &mut seq);
                    left -= n;
                }
                total
            });
        });
        group.bench_function(format!("{name}/unprotect"), |b| {
            let mut tx = context(suite);
            let mut rx = context(suite);
            let mut bufs = vec![[0u8; SLOT]; BATCH];
            let mut lens = vec![0usize; BATCH];
            let mut seq = 1u16;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let n = left.min(BATCH);
                    protect_batch(&mut tx, &mut bufs[..n], &mut lens[..n], &mut seq);
                    let t = Instant::now();
                    for (b, l) in bufs[..n].iter_mut().zip(&lens[..n]) {
                        let got = rx.unprotect_rtp(black_box(b), *l).expect("unprotect");
                        debug_assert_eq!(got, PKT);
                    }
                    total += t.elapsed();
                    left -= n;
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
