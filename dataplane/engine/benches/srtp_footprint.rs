//! The SRTP step at the footprint of a real bridging run: 500 calls, each with an
//! A flow (plain in, encrypt toward B) and a B flow (SRTP in, decrypt toward A), so
//! 1,000 flows and 500 + 500 contexts, visited round-robin like the relay sees them
//! at 50 pps per direction. Plain runs the same 1,000 flows without keys.
//!
//! `srtp_path.rs` times one flow whose context stays in L1 (`1_call` here is the
//! same); with 500 calls a context is touched once per 1,000 packets. The
//! `_evict` cases also dirty a scratch ring per packet (the same work in every
//! case of a group), standing in for the kernel's share of each packet, so a
//! context is L2-cold (`_l2`) or mostly memory-cold (`_l3`) again on its next
//! visit, as in the relay. Bridged − plain within a group, against `1_call`, is
//! what the contexts' footprint costs.
//!
//! Time is this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: on
//! the shared 2-core machine, time spent preempted would otherwise swamp the
//! difference being measured.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use nix::time::{ClockId, clock_gettime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrelay_engine::srtp::{MasterKey, SrtpContext, SrtpParams, Suite};
use ferrelay_engine::{
    Action, Component, Engine, EngineConfig, FlowId, FlowRule, Output, TAILROOM,
};

const LEN: usize = 172;
/// Packets per timed batch (one CPU-clock read pair each).
const BATCH: usize = 1000;
/// How hard a case pushes the contexts out of cache between their visits.
#[derive(Clone, Copy)]
enum Evict {
    None,
    /// 2 KiB dirtied per packet over a 2 MiB ring: 2 MB between two packets of a
    /// flow, twice L2 (1 MiB here), so contexts come back from L3.
    L2,
    /// 16 KiB per packet over a 32 MiB ring: 16 MB between visits, L3's size, so
    /// contexts mostly come back from memory, with TLB misses.
    L3,
}

impl Evict {
    /// Bytes dirtied per packet and the ring they walk.
    fn sizes(self) -> Option<(usize, usize)> {
        match self {
            Evict::None => None,
            Evict::L2 => Some((2 << 10, 2 << 20)),
            Evict::L3 => Some((16 << 10, 32 << 20)),
        }
    }
}

fn params(suite: Suite, call: u32, side: u8) -> SrtpParams {
    let mut material = vec![side; suite.key_len() + suite.salt_len()];
    material[..4].copy_from_slice(&call.to_be_bytes());
    SrtpParams {
        suite,
        key: MasterKey::from_concatenated(suite, &material).unwrap(),
        replay_window: 128,
    }
}

/// One remote (phone or trunk) of one flow, as the load generator would be.
struct Remote {
    flow: FlowId,
    addr: SocketAddr,
    ssrc: u32,
    /// The phone's context when the relay decrypts this flow.
    phone: Option<SrtpContext>,
}

struct Bed {
    engine: Engine,
    remotes: Vec<Remote>,
    seq: u16,
    now: u64,
    /// Which remote sent each packet of `batch`.
    from: Vec<usize>,
    /// One packet per flow, as they arrive this round.
    batch: Vec<Vec<u8>>,
    buf: Vec<u8>,
    evict: Evictor,
}

/// Stands in for the kernel's cache footprint per packet (see the module docs).
struct Evictor {
    ring: Vec<u8>,
    per_packet: usize,
    at: usize,
}

impl Evictor {
    /// Dirties the next `per_packet` bytes of the scratch ring, one byte a line.
    #[inline]
    fn touch(&mut self) {
        for i in (self.at..self.at + self.per_packet).step_by(64) {
            self.ring[i] = self.ring[i].wrapping_add(1);
        }
        self.at = (self.at + self.per_packet) % self.ring.len().max(1);
    }
}

impl Bed {
    /// `calls` calls; `suite` makes every B flow decrypt and every A flow encrypt.
    fn new(calls: u32, suite: Option<Suite>, evict: Evict) -> Bed {
        let (per_packet, ring) = evict.sizes().unwrap_or((0, 0));
        let mut engine = Engine::new(EngineConfig {
            max_flows: 2 * calls,
            event_capacity: 4096,
        });
        let mut remotes = Vec::new();
        for call in 0..calls {
            let (a, b) = (FlowId::new(2 * call, 1), FlowId::new(2 * call + 1, 1));
            let port = 10_000 + 2 * call as u16;
            let alice = SocketAddr::from(([127, 0, 0, 1], port));
            let bob = SocketAddr::from(([127, 0, 0, 2], port));
            for (id, peer, remote) in [(a, b, alice), (b, a, bob)] {
                let mut r = FlowRule::new(Component::Rtp);
                r.remote = Some(remote);
                r.rtp_out = Some(Output { via: peer });
                if id == a {
                    r.crypto.encrypt = suite.map(|s| params(s, call, 2));
                } else {
                    r.crypto.decrypt = suite.map(|s| params(s, call, 1));
                }
                engine.insert(id, r).unwrap();
                let phone = (id == b)
                    .then(|| suite.map(|s| SrtpContext::new(&params(s, call, 1)).unwrap()))
                    .flatten();
                remotes.push(Remote {
                    flow: id,
                    addr: remote,
                    ssrc: 0x1000_0000 | id.index,
                    phone,
                });
            }
        }
        Bed {
            engine,
            remotes,
            seq: 0,
            now: 0,
            from: Vec::with_capacity(BATCH),
            batch: Vec::with_capacity(BATCH),
            buf: vec![0u8; LEN + 64 + TAILROOM],
            evict: Evictor {
                ring: vec![0u8; ring],
                per_packet,
                at: 0,
            },
        }
    }

    /// The next `BATCH` packets, flows in turn (SRTP from the phones of B flows).
    fn refill(&mut self) {
        self.batch.clear();
        self.from.clear();
        for k in 0..BATCH {
            let i = k % self.remotes.len();
            if i == 0 {
                self.seq = self.seq.wrapping_add(1);
            }
            let r = &mut self.remotes[i];
            let mut p = vec![0u8; LEN + TAILROOM];
            p[0] = 0x80;
            p[2..4].copy_from_slice(&self.seq.to_be_bytes());
            p[4..8].copy_from_slice(&(u32::from(self.seq) * 160).to_be_bytes());
            p[8..12].copy_from_slice(&r.ssrc.to_be_bytes());
            p[12..LEN].fill(0x55);
            let n = match &mut r.phone {
                Some(c) => c.protect_rtp(&mut p, LEN).unwrap(),
                None => LEN,
            };
            p.truncate(n);
            self.batch.push(p);
            self.from.push(i);
        }
    }

    /// Runs `iters` packets, flows in turn; only the engine (with the copy into the
    /// receive buffer and the eviction) is timed.
    fn run(&mut self, iters: u64) -> Duration {
        let mut spent = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            self.refill();
            let n = left.min(self.batch.len() as u64) as usize;
            let t = cpu_now();
            for (p, &i) in self.batch[..n].iter().zip(&self.from) {
                let r = &self.remotes[i];
                self.now += 20_000;
                self.evict.touch();
                self.buf[..p.len()].copy_from_slice(p);
                let act = self
                    .engine
                    .on_datagram(self.now, r.flow, r.addr, &mut self.buf, p.len());
                debug_assert!(matches!(act, Action::Forward { .. }), "{act:?}");
                black_box(act);
            }
            spent += cpu_now().saturating_sub(t);
            left -= n as u64;
        }
        spent
    }
}

/// CPU time this thread has used.
fn cpu_now() -> Duration {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_srtp_footprint_172B");
    g.throughput(Throughput::Elements(1));
    let cases: [(&str, Option<Suite>); 3] = [
        ("plain", None),
        (
            "bridge_aes_cm_128_hmac_sha1_80",
            Some(Suite::AesCm128HmacSha1_80),
        ),
        ("bridge_aead_aes_128_gcm", Some(Suite::AeadAes128Gcm)),
    ];
    // One call (contexts stay in L1, like `srtp_path.rs`), then 500 calls.
    for (calls, evict, tag) in [
        (1, Evict::None, "1_call"),
        (500, Evict::None, "500_calls"),
        (500, Evict::L2, "500_calls_evict_l2"),
        (500, Evict::L3, "500_calls_evict_l3"),
    ] {
        for (name, suite) in cases {
            let mut bed = Bed::new(calls, suite, evict);
            // Latch every flow so each timed packet is forwarded.
            bed.run(BATCH as u64);
            let name = format!("{tag}/{name}");
            g.bench_function(name, |b| b.iter_custom(|iters| bed.run(iters)));
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
