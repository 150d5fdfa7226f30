//! Parked port pairs: an ended call's sockets kept by its worker, the rest they
//! take before another call gets them, and the calls whose ports skip it.

use std::time::{Duration, Instant};

use ferrelay_engine::FlowId;

use super::backend::FlowCounters;
use super::backend::fake::FakeBackend;
use super::ports::PARK_REST;
use super::tests::{answer_req, cfg, offer_req, port_of, req};
use super::*;

/// Sessions on one worker whose `delete` releases ports at once.
fn sessions(t0: Instant) -> Sessions<FakeBackend> {
    let mut c = cfg(10);
    c.delete_delay = Duration::ZERO;
    Sessions::new(c, FakeBackend::new(1), t0)
}

/// Offer and answer of call `id` at `t`; the relay's two RTP ports, sorted.
fn call(s: &mut Sessions<FakeBackend>, id: &str, t: Instant) -> [u16; 2] {
    let to_b = port_of(&s.offer(&offer_req(id, &[]), t).unwrap());
    let to_a = port_of(&s.answer(&answer_req(id, &[]), t).unwrap());
    let mut ports = [to_a, to_b];
    ports.sort_unstable();
    ports
}

#[test]
fn an_ended_calls_ports_are_parked_and_the_next_call_takes_them_over() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let first = call(&mut s, "p1", t0);
    s.delete(&req(&[("call-id", "p1")], &[]), t0).unwrap();
    // Ended: no flow forwards, but the worker keeps all four sockets.
    assert!(s.backend().flows.is_empty());
    assert_eq!(s.backend().parked.len(), 4);
    assert_eq!((s.ports_in_use(), s.ports_parked()), (0, 2));

    // A call right away gets other ports: the parked ones rest first, so what
    // was still on its way to the old call is not latched by the new one.
    let hurried = call(&mut s, "p0", t0);
    assert!(
        hurried.iter().all(|p| !first.contains(p)),
        "{hurried:?} {first:?}"
    );
    assert_eq!(s.backend().reused, 0);
    s.delete(&req(&[("call-id", "p0")], &[]), t0).unwrap();
    let later = t0 + PARK_REST;
    let second = call(&mut s, "p2", later);
    assert_eq!(second, first, "the same ports, not new ones");
    assert_eq!(
        s.backend().reused,
        4,
        "every flow took a parked socket over"
    );
    // The hurried call's pairs wait parked in turn.
    assert_eq!(s.backend().parked.len(), 4);
    assert_eq!((s.ports_in_use(), s.ports_parked()), (2, 2));
    // The reused flows forward between the new call's parties.
    let (_, rule) = s.backend().rule_on(first[0]).unwrap();
    assert!(rule.rtp_out.is_some());
    s.delete(&req(&[("call-id", "p2")], &[]), later).unwrap();
    assert_eq!(s.backend().parked.len(), 4 + 4);
}

#[test]
fn ports_no_datagram_reached_go_to_the_next_call_at_once() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    // The worker's final counts: one call's flows received nothing; in the other
    // only one side's RTP port got datagrams, which the relay sent on from the
    // other side's port, whose peer may answer or echo: both its pairs rest.
    let end = |s: &mut Sessions<FakeBackend>, id: &str, loud: &[u16]| {
        let before: Vec<_> = s.backend().parked.keys().copied().collect();
        s.delete(&req(&[("call-id", id)], &[]), t0).unwrap();
        let parked: Vec<_> = s
            .backend()
            .parked
            .iter()
            .filter(|(k, _)| !before.contains(k))
            .map(|(&(w, i), &port)| (w, i, port))
            .collect();
        assert_eq!(parked.len(), 4);
        for (w, i, port) in parked {
            let packets = u64::from(loud.contains(&port));
            s.on_flow_removed(
                w,
                FlowId::new(i, 0),
                FlowCounters {
                    packets,
                    ..FlowCounters::default()
                },
            );
        }
    };
    let silent = call(&mut s, "silent", t0);
    let loud = call(&mut s, "loud", t0);
    end(&mut s, "loud", &loud[..1]);
    end(&mut s, "silent", &[]);
    assert_eq!(s.ports_parked(), 4, "two pairs per call");
    // At the same instant: the silent call's ports are taken over, the other
    // call's rest.
    let next = call(&mut s, "next", t0);
    assert_eq!(next, silent);
    assert_eq!(s.backend().reused, 4);
    let after = call(&mut s, "after", t0);
    assert!(
        after.iter().all(|p| !loud.contains(p)),
        "{after:?} {loud:?}"
    );
    assert_eq!(s.backend().reused, 4);
}
