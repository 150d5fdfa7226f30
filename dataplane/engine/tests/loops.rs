//! The loop guard on the packet path: two calls whose SDPs name each other's
//! relay ports chase a packet round and round until the guard cuts it, while a
//! call hairpinned through the relay twice passes every packet once.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::*;
use ferrelay_engine::loops::LOOP_REPEATS;
use ferrelay_engine::srtp::{MasterKey, SrtpParams, Suite};
use ferrelay_engine::{
    Action, Component, DropReason, Engine, EngineConfig, EngineEvent, FlowId, FlowRule,
    LocalEndpoints, Output,
};

const RELAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const BASE: u16 = 30_000;

/// The relay's port of flow slot `i`.
fn port_of(id: FlowId) -> SocketAddr {
    SocketAddr::from((RELAY, BASE + id.index as u16))
}

/// Four flows: call X (slots 0, 1) and call Y (slots 2, 3), each side forwarding
/// to the other side of its call, with the given signalled remotes.
fn relay(remotes: [SocketAddr; 4]) -> (Engine, [FlowId; 4]) {
    relay_with(remotes, Component::Rtp, |_, _| {})
}

/// `relay` with each flow's rule (by slot) tweaked.
fn relay_with(
    remotes: [SocketAddr; 4],
    component: Component,
    tweak: impl Fn(usize, &mut FlowRule),
) -> (Engine, [FlowId; 4]) {
    let mut engine = Engine::new(EngineConfig {
        max_flows: 8,
        event_capacity: 16,
    });
    engine.set_local(LocalEndpoints::new([IpAddr::V4(RELAY)], BASE, BASE + 99));
    let ids = [0, 1, 2, 3].map(|i| FlowId::new(i, 1));
    for (i, remote) in remotes.into_iter().enumerate() {
        let mut r = FlowRule::new(component);
        r.remote = Some(remote);
        r.rtp_out = Some(Output { via: ids[i ^ 1] });
        r.rtcp_out = Some(Output { via: ids[i ^ 1] });
        tweak(i, &mut r);
        engine.insert(ids[i], r).unwrap();
    }
    (engine, ids)
}

/// Sends made, where the last left the relay with its bytes, how it ended.
type Delivered = (usize, Option<(SocketAddr, Vec<u8>)>, Option<DropReason>);

/// Delivers `pkt` from `src` to flow `id`, then what the relay sends wherever it
/// sends it while that is one of its own ports, for at most `hops` sends.
/// Returns the sends made, where the last one went (if it left the relay) with
/// its bytes, and how it ended.
fn deliver(
    engine: &mut Engine,
    ids: &[FlowId; 4],
    mut id: FlowId,
    mut src: SocketAddr,
    pkt: &[u8],
    now: u64,
    hops: usize,
) -> Delivered {
    let mut sends = 0;
    let mut pkt = pkt.to_vec();
    while sends < hops {
        let mut buf = with_tailroom(&pkt);
        match engine.on_datagram(now + sends as u64, id, src, &mut buf, pkt.len()) {
            Action::Forward { via, dest, len } => {
                sends += 1;
                pkt = buf[..len].to_vec();
                match ids.iter().find(|f| port_of(**f) == dest) {
                    Some(next) => (id, src) = (*next, port_of(via)),
                    None => return (sends, Some((dest, pkt)), None),
                }
            }
            Action::Drop(r) => return (sends, None, Some(r)),
        }
    }
    (sends, None, None)
}

#[test]
fn a_loop_through_the_relays_own_ports_is_cut() {
    let [x_a, x_b, y_a, y_b] = [0, 1, 2, 3].map(|i| port_of(FlowId::new(i, 1)));
    // X's sides name Y's ports and Y's name X's: every send goes back to the relay.
    let (mut engine, ids) = relay([y_b, y_a, x_b, x_a]);
    let pkt = rtp(0, 1, 160, 0xC0FFEE, &[7; 160]);
    let (sends, left, end) = deliver(&mut engine, &ids, ids[0], addr(9, 4000), &pkt, 0, 10_000);
    assert_eq!(left, None, "it never leaves the relay");
    assert_eq!(end, Some(DropReason::Loop), "after {sends} sends");
    // Two relay-to-relay sends a trip, each destination seen LOOP_REPEATS - 1 times.
    assert!(sends <= 2 * LOOP_REPEATS as usize, "{sends} sends");

    let dropped_on = ids
        .iter()
        .find(|id| engine.flow_stats(**id).unwrap().last_drop == Some(DropReason::Loop))
        .copied()
        .unwrap();
    let mut reported = Vec::new();
    while let Some(ev) = engine.pop_event() {
        if let EngineEvent::LoopDetected { id } = ev {
            reported.push(id);
        }
    }
    assert_eq!(reported, vec![dropped_on]);
    assert_eq!(engine.worker_stats().drops.get(DropReason::Loop), 1);

    // The next packet goes round a few times too, and is cut the same way; the
    // flow already reported its loop.
    let next = rtp(0, 2, 320, 0xC0FFEE, &[7; 160]);
    let (sends, _, end) = deliver(
        &mut engine,
        &ids,
        ids[0],
        addr(9, 4000),
        &next,
        20 * MS,
        10_000,
    );
    assert_eq!(end, Some(DropReason::Loop));
    assert!(sends <= 2 * LOOP_REPEATS as usize, "{sends} sends");
    assert!(
        std::iter::from_fn(|| engine.pop_event())
            .all(|e| !matches!(e, EngineEvent::LoopDetected { .. }))
    );
}

#[test]
fn a_call_hairpinned_through_the_relay_passes_every_packet_once() {
    let (alice, bob) = (addr(1, 4000), addr(2, 5000));
    let y_a = port_of(FlowId::new(2, 1));
    let x_b = port_of(FlowId::new(1, 1));
    // Alice - X - (relay) - Y - Bob: X's far side is Y's near side and back.
    let (mut engine, ids) = relay([alice, y_a, x_b, bob]);
    for seq in 0..500u16 {
        let now = u64::from(seq) * 20 * MS;
        let pkt = rtp(0, seq, u32::from(seq) * 160, 0xA11CE, &[1; 160]);
        let (sends, left, end) = deliver(&mut engine, &ids, ids[0], alice, &pkt, now, 10);
        assert_eq!((sends, left, end), (2, Some((bob, pkt)), None), "seq {seq}");
        let pkt = rtp(0, seq, u32::from(seq) * 160, 0xB0B, &[2; 160]);
        let (sends, left, end) = deliver(&mut engine, &ids, ids[3], bob, &pkt, now, 10);
        assert_eq!(
            (sends, left, end),
            (2, Some((alice, pkt)), None),
            "seq {seq}"
        );
    }
    assert_eq!(engine.worker_stats().drops.total(), 0);
    // Counted as forwarded whether the packet went to the relay's own port or out.
    for id in ids {
        let s = engine.flow_stats(id).unwrap();
        assert_eq!((s.rx_packets, s.fwd_packets), (500, 500), "{id:?}");
    }
}

/// The same loop for RTCP, SRTCP-protected from X's far side to Y's near side:
/// every trip re-encrypts it under a fresh SRTCP index, so that hop's bytes
/// never repeat; the plain hop back to X's near side does, and is cut.
#[test]
fn an_srtcp_loop_with_a_plain_hop_is_cut() {
    let [x_a, x_b, y_a, y_b] = [0, 1, 2, 3].map(|i| port_of(FlowId::new(i, 1)));
    let key = MasterKey::from_concatenated(Suite::AesCm128HmacSha1_80, &[7; 30]).unwrap();
    let params = SrtpParams {
        suite: Suite::AesCm128HmacSha1_80,
        key,
        replay_window: 128,
    };
    let (mut engine, ids) = relay_with([y_b, y_a, x_b, x_a], Component::Rtcp, |i, r| {
        match i {
            // X's near side forwards out of X's far side, encrypting.
            0 => r.crypto.encrypt = Some(params.clone()),
            // Y's near side takes it, decrypting.
            2 => r.crypto.decrypt = Some(params.clone()),
            _ => {}
        }
    });
    let (sends, left, end) = deliver(
        &mut engine,
        &ids,
        ids[0],
        addr(9, 4001),
        &rtcp_rr_sdes(0x5EC),
        0,
        10_000,
    );
    assert_eq!(left, None);
    assert_eq!(end, Some(DropReason::Loop), "after {sends} sends");
    assert!(sends <= 2 * LOOP_REPEATS as usize, "{sends} sends");
    let cut_at = engine.flow_stats(ids[2]).unwrap();
    assert_eq!(cut_at.last_drop, Some(DropReason::Loop), "{cut_at:?}");
}

/// RTCP feedback repeated through a hairpinned call (a reduced-size PLI every
/// 20 ms while a key frame is awaited) is not a loop.
#[test]
fn repeated_feedback_through_a_hairpin_passes() {
    let (alice, bob) = (addr(1, 4001), addr(2, 5001));
    let y_a = port_of(FlowId::new(2, 1));
    let x_b = port_of(FlowId::new(1, 1));
    let (mut engine, ids) = relay_with([alice, y_a, x_b, bob], Component::Rtcp, |_, _| {});
    let pli = [0x81u8, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
    for i in 0..20u64 {
        let (sends, left, end) = deliver(&mut engine, &ids, ids[0], alice, &pli, i * 20 * MS, 10);
        assert_eq!(
            (sends, left, end),
            (2, Some((bob, pli.to_vec())), None),
            "PLI {i}"
        );
    }
}

#[test]
fn without_local_endpoints_nothing_is_watched() {
    let [x_a, x_b, y_a, y_b] = [0, 1, 2, 3].map(|i| port_of(FlowId::new(i, 1)));
    let (mut engine, ids) = relay([y_b, y_a, x_b, x_a]);
    engine.set_local(LocalEndpoints::default());
    let pkt = rtp(0, 1, 160, 0xC0FFEE, &[7; 160]);
    // The loop spins until the test stops it: what the guard is for.
    let (sends, _, end) = deliver(&mut engine, &ids, ids[0], addr(9, 4000), &pkt, 0, 1_000);
    assert_eq!((sends, end), (1_000, None));
}

/// New endpoints (the relay's host-address re-read sends them) leave the guard's
/// table alone: a loop under way is cut after as many sends in all as without.
#[test]
fn new_endpoints_keep_the_repeats_counted_so_far() {
    let [x_a, x_b, y_a, y_b] = [0, 1, 2, 3].map(|i| port_of(FlowId::new(i, 1)));
    let pkt = rtp(0, 1, 160, 0xC0FFEE, &[7; 160]);
    let (mut engine, ids) = relay([y_b, y_a, x_b, x_a]);
    let (cut_after, _, end) = deliver(&mut engine, &ids, ids[0], addr(9, 4000), &pkt, 0, 1_000);
    assert_eq!(end, Some(DropReason::Loop));

    // The same loop on a fresh relay for one trip (four sends, back to where it
    // started), then new endpoints, then on from the same start.
    let trip = 4;
    assert!(
        cut_after > trip,
        "cut within the first trip ({cut_after} sends)"
    );
    let (mut engine, ids) = relay([y_b, y_a, x_b, x_a]);
    let (sends, _, end) = deliver(&mut engine, &ids, ids[0], addr(9, 4000), &pkt, 0, trip);
    assert_eq!((sends, end), (trip, None));
    let more = Ipv4Addr::new(198, 51, 100, 7);
    engine.set_local(LocalEndpoints::new(
        [IpAddr::V4(RELAY), IpAddr::V4(more)],
        BASE,
        BASE + 99,
    ));
    let (rest, _, end) = deliver(
        &mut engine,
        &ids,
        ids[0],
        addr(9, 4000),
        &pkt,
        trip as u64,
        1_000,
    );
    assert_eq!(end, Some(DropReason::Loop));
    assert_eq!(
        trip + rest,
        cut_after,
        "the repeats before the change were forgotten"
    );
}
