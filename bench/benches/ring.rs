//! The command ring between control plane and worker. `ferrelay-dataplane` keeps its
//! ring type private, and it is built on `ringbuf`'s SPSC `HeapRb`, so this measures
//! `HeapRb` with the runtime's own element types (`Command`, `Event`).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrelay_dataplane::{Command, Event};
use ferrelay_engine::FlowId;
use ringbuf::HeapRb;
use ringbuf::traits::{Consumer, Producer, Split};

const BATCH: usize = 64;

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    let (mut cp, mut cc) = HeapRb::<Command>::new(1024).split();
    g.throughput(Throughput::Elements(1));
    g.bench_function("command_push_pop", |b| {
        let mut t = 0u64;
        b.iter(|| {
            t += 1;
            let cmd = Command::SetBlocked {
                id: FlowId::new(t as u32 & 1023, 1),
                blocked: t & 1 == 0,
            };
            assert!(cp.try_push(black_box(cmd)).is_ok());
            black_box(cc.try_pop())
        })
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("command_push_pop_batch64", |b| {
        b.iter(|| {
            for t in 0..BATCH as u64 {
                let cmd = Command::Query {
                    token: t,
                    id: Some(FlowId::new(t as u32, 1)),
                };
                assert!(cp.try_push(black_box(cmd)).is_ok());
            }
            for _ in 0..BATCH {
                black_box(cc.try_pop());
            }
        })
    });
    let (mut ep, mut ec) = HeapRb::<Event>::new(4096).split();
    let addr = SocketAddr::from(([127, 0, 0, 1], 40_000));
    g.bench_function("event_push_pop_batch64", |b| {
        b.iter(|| {
            for t in 0..BATCH as u32 {
                let ev = Event::Latched {
                    id: FlowId::new(t, 1),
                    addr,
                };
                assert!(ep.try_push(black_box(ev)).is_ok());
            }
            for _ in 0..BATCH {
                black_box(ec.try_pop());
            }
        })
    });
    g.finish();
}

fn fast() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! { name = benches; config = fast(); targets = ring }
criterion_main!(benches);
