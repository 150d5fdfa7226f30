//! What SRTP adds to `Engine::on_datagram` for one 172-byte RTP packet (12-byte
//! header, 160-byte payload): plain forwarding against encrypt, decrypt and
//! decrypt+encrypt with the two common suites. Packets (and the phone-side SRTP
//! that feeds the decrypt cases) are built outside the timed loop; each timed
//! packet is copied into the receive buffer, as the I/O shell's buffer would hold it.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrelay_engine::srtp::{MasterKey, SrtpContext, SrtpParams, Suite};
use ferrelay_engine::{
    Action, Component, Engine, EngineConfig, FlowId, FlowRule, Output, TAILROOM,
};

const LEN: usize = 172;
const BATCH: usize = 1024;

fn params(suite: Suite, fill: u8) -> SrtpParams {
    SrtpParams {
        suite,
        key: MasterKey::from_concatenated(suite, &vec![fill; suite.key_len() + suite.salt_len()])
            .unwrap(),
        replay_window: 128,
    }
}

/// One call (flows 0 and 1), flow 0 with the given transforms, both remotes latched.
struct Bed {
    engine: Engine,
    a: FlowId,
    alice: SocketAddr,
    /// The phone's context when flow 0 decrypts.
    phone: Option<SrtpContext>,
    seq: u16,
    batch: Vec<Vec<u8>>,
    buf: Vec<u8>,
}

impl Bed {
    fn new(decrypt: Option<Suite>, encrypt: Option<Suite>) -> Bed {
        let mut engine = Engine::new(EngineConfig {
            max_flows: 4,
            event_capacity: 64,
        });
        let (a, b) = (FlowId::new(0, 1), FlowId::new(1, 1));
        let alice = SocketAddr::from(([127, 0, 0, 1], 4000));
        let bob = SocketAddr::from(([127, 0, 0, 1], 5000));
        for (id, peer, remote) in [(a, b, alice), (b, a, bob)] {
            let mut r = FlowRule::new(Component::Rtp);
            r.remote = Some(remote);
            r.rtp_out = Some(Output { via: peer });
            if id == a {
                r.crypto.decrypt = decrypt.map(|s| params(s, 1));
                r.crypto.encrypt = encrypt.map(|s| params(s, 2));
            }
            engine.insert(id, r).unwrap();
        }
        Bed {
            engine,
            a,
            alice,
            phone: decrypt.map(|s| SrtpContext::new(&params(s, 1)).unwrap()),
            seq: 0,
            batch: Vec::with_capacity(BATCH),
            buf: vec![0u8; LEN + 64 + TAILROOM],
        }
    }

    /// The next `BATCH` packets as they arrive from Alice (SRTP if flow 0 decrypts).
    fn refill(&mut self) {
        self.batch.clear();
        for _ in 0..BATCH {
            self.seq = self.seq.wrapping_add(1);
            let mut p = vec![0u8; LEN + TAILROOM];
            p[0] = 0x80;
            p[2..4].copy_from_slice(&self.seq.to_be_bytes());
            p[4..8].copy_from_slice(&(u32::from(self.seq) * 160).to_be_bytes());
            p[8..12].copy_from_slice(&0xA11CEu32.to_be_bytes());
            p[12..LEN].fill(0x55);
            let n = match &mut self.phone {
                Some(c) => c.protect_rtp(&mut p, LEN).unwrap(),
                None => LEN,
            };
            p.truncate(n);
            self.batch.push(p);
        }
    }

    /// Runs `iters` packets through the engine; only `on_datagram` (and the copy
    /// into the receive buffer) is timed.
    fn run(&mut self, iters: u64) -> Duration {
        let mut spent = Duration::ZERO;
        let mut left = iters;
        let mut now = 0u64;
        while left > 0 {
            self.refill();
            let n = left.min(BATCH as u64) as usize;
            let t = Instant::now();
            for p in &self.batch[..n] {
                now += 20_000_000;
                self.buf[..p.len()].copy_from_slice(p);
                let act = self
                    .engine
                    .on_datagram(now, self.a, self.alice, &mut self.buf, p.len());
                debug_assert!(matches!(act, Action::Forward { .. }), "{act:?}");
                black_box(act);
            }
            spent += t.elapsed();
            left -= n as u64;
        }
        spent
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_srtp_172B");
    g.throughput(Throughput::Elements(1));
    let cm = Suite::AesCm128HmacSha1_80;
    let gcm = Suite::AeadAes128Gcm;
    let cases: [(&str, Option<Suite>, Option<Suite>); 6] = [
        ("plain", None, None),
        ("encrypt_aes_cm_128_hmac_sha1_80", None, Some(cm)),
        ("encrypt_aead_aes_128_gcm", None, Some(gcm)),
        ("decrypt_aes_cm_128_hmac_sha1_80", Some(cm), None),
        ("decrypt_aead_aes_128_gcm", Some(gcm), None),
        ("srtp_to_srtp_cm80_to_gcm", Some(cm), Some(gcm)),
    ];
    for (name, dec, enc) in cases {
        let mut bed = Bed::new(dec, enc);
        // Latch both sides so every timed packet is forwarded.
        bed.run(4);
        g.bench_function(name, |b| b.iter_custom(|iters| bed.run(iters)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
