//! `Engine::on_datagram` forward path with 1000 flows (500 latched pairs) installed:
//! flow lookup, parse, source check, RTP stats, output lookup, and (in the second
//! case) SSRC + payload-type rewrite. Packets rotate over every flow so the lookup
//! walks the whole table, not one hot slot. The engine knows the relay's own
//! endpoints (127.0.0.1, ports 30000–39999, the flows' remotes outside them) as a
//! running relay's does; in the third case every remote is one of them, as in a
//! call hairpinned through the relay, so every packet also passes the loop guard.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrelay_engine::{
    Action, Component, Engine, EngineConfig, FlowId, FlowRule, LocalEndpoints, Output, PtMap,
    SsrcRewrite, TAILROOM,
};

const FLOWS: u32 = 1000;
const LEN: usize = 172;

/// Remote of flow `i` (a distinct loopback port per flow).
fn src(i: u32) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000 + i as u16))
}

fn ssrc(i: u32) -> u32 {
    0x1000_0000 + i
}

struct Bed {
    engine: Engine,
    ids: Vec<FlowId>,
    seq: Vec<u16>,
    buf: Vec<u8>,
}

impl Bed {
    fn new(rewrite: bool, hairpin: bool) -> Bed {
        let mut engine = Engine::new(EngineConfig {
            max_flows: 2 * FLOWS,
            event_capacity: 4 * FLOWS as usize,
        });
        let (min, max) = if hairpin {
            (40_000, 40_000 + FLOWS as u16)
        } else {
            (30_000, 39_999)
        };
        engine.set_local(LocalEndpoints::new([src(0).ip()], min, max));
        let ids: Vec<FlowId> = (0..FLOWS).map(|i| FlowId::new(i, 1)).collect();
        for (i, &id) in ids.iter().enumerate() {
            let mut rule = FlowRule::new(Component::Rtp);
            rule.rtp_out = Some(Output { via: ids[i ^ 1] });
            if rewrite {
                rule.ssrc_rewrite = Some(SsrcRewrite {
                    from: ssrc(i as u32),
                    to: 0xABCD_0000 + i as u32,
                });
                let mut m = PtMap::IDENTITY;
                m.0[0] = 8;
                rule.pt_map = m;
            }
            engine.insert(id, rule).expect("insert");
        }
        let mut bed = Bed {
            engine,
            ids,
            seq: vec![100; FLOWS as usize],
            buf: vec![0u8; LEN + TAILROOM],
        };
        // Latch every flow (the first packets of the first side have no destination yet).
        for i in 0..FLOWS {
            bed.packet(i, 0);
        }
        for i in 0..FLOWS {
            let a = bed.packet(i, 1);
            assert!(matches!(a, Action::Forward { len: LEN, .. }), "{a:?}");
        }
        while bed.engine.pop_event().is_some() {}
        bed
    }

    /// Writes flow `i`'s next RTP header and hands the packet to the engine.
    #[inline]
    fn packet(&mut self, i: u32, now_ns: u64) -> Action {
        let seq = &mut self.seq[i as usize];
        *seq = seq.wrapping_add(1);
        let h = &mut self.buf[..12];
        h[0] = 0x80;
        h[1] = 0;
        h[2..4].copy_from_slice(&seq.to_be_bytes());
        h[4..8].copy_from_slice(&(u32::from(*seq) * 160).to_be_bytes());
        h[8..12].copy_from_slice(&ssrc(i).to_be_bytes());
        self.engine
            .on_datagram(now_ns, self.ids[i as usize], src(i), &mut self.buf, LEN)
    }
}

fn engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    for (name, rewrite, hairpin) in [
        ("forward_1000_flows", false, false),
        ("forward_1000_flows_ssrc_pt_rewrite", true, false),
        ("forward_1000_flows_hairpin", false, true),
    ] {
        let mut bed = Bed::new(rewrite, hairpin);
        let mut i = 0u32;
        let mut now = 1_000_000u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % FLOWS;
                now += 20_000;
                black_box(bed.packet(i, now))
            })
        });
        if rewrite {
            assert_eq!(bed.buf[1] & 0x7f, 8, "payload type rewritten");
        }
    }
    g.finish();
}

fn fast() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! { name = benches; config = fast(); targets = engine }
criterion_main!(benches);
