//! The packet path in virtual time: forwarding, component handling, rewrites, drops,
//! slot reuse and stats, checked byte for byte.

mod common;

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use common::*;
use ferrelay_engine::{
    Action, Component, DropReason, EngineError, EngineEvent, FlowId, FlowRule, Output, SsrcRewrite,
};
use ferrelay_srtp::{MasterKey, SrtpParams, Suite};

#[test]
fn forwards_both_ways_with_exact_bytes() {
    let mut c = Call::new(Component::Rtp, |_| {});
    let p = rtp(0, 1, 160, 0xA11CE, b"hello");
    let (act, out) = c.send(0, c.a, c.alice, &p);
    assert_eq!(
        act,
        Action::Forward {
            via: c.b,
            dest: c.bob,
            len: p.len()
        }
    );
    assert_eq!(out, p);
    let q = rtp(8, 9, 900, 0xB0B, b"world!");
    let (act, out) = c.send(MS, c.b, c.bob, &q);
    assert_eq!(
        act,
        Action::Forward {
            via: c.a,
            dest: c.alice,
            len: q.len()
        }
    );
    assert_eq!(out, q);
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!((s.rx_packets, s.fwd_packets), (1, 1));
    assert_eq!((s.rx_bytes, s.fwd_bytes), (p.len() as u64, p.len() as u64));
    assert_eq!(s.remote, Some(c.alice));
    assert!(s.latched);
    let w = c.engine.worker_stats();
    assert_eq!((w.rx_packets, w.tx_packets, w.flows), (2, 2, 2));
    assert_eq!(w.tx_bytes, (p.len() + q.len()) as u64);
}

#[test]
fn latched_address_retargets_the_other_direction() {
    // Alice's SDP says port 4000, but NAT maps her to 4444: Bob's packets must follow.
    let mut c = Call::new(Component::Rtp, |_| {});
    let natted = addr(1, 4444);
    c.send(0, c.a, natted, &rtp(0, 1, 0, 1, b"x"));
    let (act, _) = c.send(MS, c.b, c.bob, &rtp(0, 1, 0, 2, b"y"));
    assert_eq!(
        act,
        Action::Forward {
            via: c.a,
            dest: natted,
            len: 13
        }
    );
    assert_eq!(
        c.engine.pop_event(),
        Some(EngineEvent::Latched {
            id: c.a,
            addr: natted
        })
    );
    assert_eq!(
        c.engine.pop_event(),
        Some(EngineEvent::Latched {
            id: c.b,
            addr: c.bob
        })
    );
    assert_eq!(c.engine.pop_event(), None);
}

#[test]
fn a_packet_is_never_sent_back_to_its_source() {
    // Alice's side latched onto Bob (a stale packet of his reached it first), so
    // Bob's packets would go back to Bob: dropped and counted, both ways, so an
    // echoing endpoint cannot bounce its media off the relay.
    let mut c = Call::new(Component::Rtp, |_| {});
    let (act, _) = c.send(0, c.a, c.bob, &rtp(0, 1, 0, 1, b"stale"));
    assert_eq!(act, Action::Drop(DropReason::Reflected));
    let (act, _) = c.send(MS, c.b, c.bob, &rtp(0, 1, 0, 2, b"echo"));
    assert_eq!(act, Action::Drop(DropReason::Reflected));
    let (act, _) = c.send(2 * MS, c.a, c.bob, &rtp(0, 2, 0, 3, b"echo"));
    assert_eq!(act, Action::Drop(DropReason::Reflected));
    let s = c.engine.flow_stats(c.b).unwrap();
    assert_eq!((s.drops, s.last_drop), (1, Some(DropReason::Reflected)));
    // Alice's side saw the stale packet and the later one.
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!((s.drops, s.last_drop), (2, Some(DropReason::Reflected)));
    assert_eq!(c.engine.flow_stats(c.b).unwrap().fwd_packets, 0);

    // The same with a link-local IPv6 peer, whose datagrams carry a scope id
    // the latch does not keep: still caught, not forwarded into a failing send.
    let mut c = Call::new(Component::Rtp, |_| {});
    let scoped = SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 7),
        5000,
        0,
        2,
    ));
    let (act, _) = c.send(0, c.a, scoped, &rtp(0, 1, 0, 1, b"stale"));
    assert!(matches!(act, Action::Forward { .. }), "{act:?}");
    let (act, _) = c.send(MS, c.b, scoped, &rtp(0, 1, 0, 2, b"echo"));
    assert_eq!(act, Action::Drop(DropReason::Reflected));
}

#[test]
fn stale_generation_and_slot_reuse() {
    let mut c = Call::new(Component::Rtp, |_| {});
    let p = rtp(0, 1, 0, 1, b"x");
    let stale = FlowId::new(c.a.index, c.a.generation + 1);
    assert_eq!(
        c.send(0, stale, c.alice, &p).0,
        Action::Drop(DropReason::UnknownFlow)
    );
    c.send(0, c.a, c.alice, &p);
    let final_stats = c.engine.remove(c.a).unwrap();
    assert_eq!(final_stats.rx_packets, 1);
    assert!(!c.engine.contains(c.a));
    // Bob's output named the old A: it is gone, so his packets have nowhere to go.
    assert_eq!(
        c.send(MS, c.b, c.bob, &p).0,
        Action::Drop(DropReason::NoOutput)
    );
    // Reusing the slot with the old generation is refused; a new one works.
    assert_eq!(
        c.engine.insert(c.a, FlowRule::new(Component::Rtp)),
        Err(EngineError::StaleGeneration)
    );
    let a2 = FlowId::new(c.a.index, c.a.generation + 1);
    let mut r = FlowRule::new(Component::Rtp);
    r.rtp_out = Some(Output { via: c.b });
    c.engine.insert(a2, r).unwrap();
    assert_eq!(
        c.send(2 * MS, c.a, c.alice, &p).0,
        Action::Drop(DropReason::UnknownFlow)
    );
    assert!(matches!(
        c.send(2 * MS, a2, c.alice, &p).0,
        Action::Forward { via, .. } if via == c.b
    ));
    assert_eq!(c.engine.flow_stats(a2).unwrap().rx_packets, 1);
    let mut ids: Vec<_> = c.engine.flow_ids().collect();
    ids.sort();
    assert_eq!(ids, [a2, c.b]);
    assert_eq!(
        c.engine.worker_stats().drops.get(DropReason::UnknownFlow),
        2
    );
    assert_eq!(c.engine.remove(c.a), Err(EngineError::UnknownFlow));
    assert_eq!(
        c.engine
            .insert(FlowId::new(8, 0), FlowRule::new(Component::Rtp)),
        Err(EngineError::TooManyFlows)
    );
    assert_eq!(
        c.engine.insert(c.b, FlowRule::new(Component::Rtp)),
        Err(EngineError::SlotInUse)
    );
}

#[test]
fn loss_across_sequence_wrap() {
    let mut c = Call::new(Component::Rtp, |_| {});
    let mut now = 0;
    // 65530..=65535 then 0..=9, with 65534 and 3 lost.
    for seq in (65530..=65535u16).chain(0..10) {
        now += 20 * MS;
        if seq == 65534 || seq == 3 {
            continue;
        }
        c.send(
            now,
            c.a,
            c.alice,
            &rtp(0, seq, u32::from(seq) * 160, 7, b"."),
        );
    }
    let s = c.engine.flow_stats(c.a).unwrap().rtp;
    assert_eq!(s.ssrc, 7);
    assert_eq!(s.extended_max_seq, 65536 + 9);
    assert_eq!(s.expected, 16);
    assert_eq!(s.received, 14);
    assert_eq!(s.lost, 2);
}

#[test]
fn jitter_through_the_engine() {
    let mut c = Call::new(Component::Rtp, |r| r.clock_rate = 8000);
    // Same sequence as the unit test: the third packet 10 ms late.
    for (i, at) in [0, 20, 50, 60].into_iter().enumerate() {
        let i = i as u16;
        c.send(
            at * MS,
            c.a,
            c.alice,
            &rtp(0, i, u32::from(i) * 160, 7, b"."),
        );
    }
    let s = c.engine.flow_stats(c.a).unwrap().rtp;
    assert_eq!(s.jitter, 9);
    assert_eq!(s.jitter_ns, 1_125_000);
}

#[test]
fn rtcp_mux_toward_one_side_demux_toward_the_other() {
    // A: muxed (WebRTC-ish); B: RTP port B, RTCP port Bc (classic SIP phone).
    let mut c = Call::new(Component::Rtp, |_| {});
    let bc = FlowId::new(2, 1);
    let phone_rtcp = addr(2, 5001);
    let mut r = FlowRule::new(Component::Muxed);
    r.remote = Some(c.alice);
    r.rtp_out = Some(Output { via: c.b });
    r.rtcp_out = Some(Output { via: bc });
    c.engine.update(c.a, r).unwrap();
    let mut r = FlowRule::new(Component::Rtcp);
    r.remote = Some(phone_rtcp);
    r.rtcp_out = Some(Output { via: c.a });
    c.engine.insert(bc, r).unwrap();

    let media = rtp(96, 1, 0, 0xA, b"m");
    let report = rtcp_rr_sdes(0xA);
    let (act, out) = c.send(0, c.a, c.alice, &media);
    assert_eq!(
        act,
        Action::Forward {
            via: c.b,
            dest: c.bob,
            len: media.len()
        }
    );
    assert_eq!(out, media);
    let (act, out) = c.send(MS, c.a, c.alice, &report);
    assert_eq!(
        act,
        Action::Forward {
            via: bc,
            dest: phone_rtcp,
            len: report.len()
        }
    );
    assert_eq!(out, report);
    // The phone's RTCP port sends back into the muxed leg.
    let back = rtcp_rr_sdes(0xB);
    let (act, out) = c.send(2 * MS, bc, phone_rtcp, &back);
    assert_eq!(
        act,
        Action::Forward {
            via: c.a,
            dest: c.alice,
            len: back.len()
        }
    );
    assert_eq!(out, back);
    // RTCP on the RTP-only port, RTP on the RTCP-only port: wrong component.
    assert_eq!(
        c.send(3 * MS, c.b, c.bob, &back).0,
        Action::Drop(DropReason::WrongComponent)
    );
    assert_eq!(
        c.send(3 * MS, bc, phone_rtcp, &media).0,
        Action::Drop(DropReason::WrongComponent)
    );
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!((s.rtcp_packets, s.rtp.received), (1, 1));
}

#[test]
fn not_media_malformed_and_missing_outputs() {
    let mut c = Call::new(Component::Muxed, |_| {});
    let stun = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    let dtls = [22, 0xfe, 0xfd, 0, 0];
    assert_eq!(
        c.send(0, c.a, c.alice, &stun).0,
        Action::Drop(DropReason::NotMedia)
    );
    assert_eq!(
        c.send(0, c.a, c.alice, &dtls).0,
        Action::Drop(DropReason::NotMedia)
    );
    assert_eq!(
        c.send(0, c.a, c.alice, &[0x80]).0,
        Action::Drop(DropReason::Malformed)
    );
    assert_eq!(
        c.send(0, c.a, c.alice, &[0x80, 0, 0, 1]).0,
        Action::Drop(DropReason::Malformed)
    );
    // A compound whose second packet is cut short.
    let report = rtcp_rr_sdes(1);
    assert_eq!(
        c.send(0, c.a, c.alice, &report[..report.len() - 1]).0,
        Action::Drop(DropReason::Malformed)
    );
    // `len` beyond the buffer is refused, not a panic.
    let mut buf = [0x80u8, 0, 0, 0];
    assert_eq!(
        c.engine.on_datagram(0, c.a, c.alice, &mut buf, 99),
        Action::Drop(DropReason::Malformed)
    );
    // Nothing was valid yet, so nothing latched.
    assert!(!c.engine.flow_stats(c.a).unwrap().latched);

    // No output for RTCP; then a peer without any remote.
    let mut r = FlowRule::new(Component::Muxed);
    r.rtp_out = Some(Output { via: c.b });
    c.engine.update(c.a, r).unwrap();
    assert_eq!(
        c.send(0, c.a, c.alice, &report).0,
        Action::Drop(DropReason::NoOutput)
    );
    let mut r = FlowRule::new(Component::Muxed);
    r.rtp_out = Some(Output { via: c.a });
    c.engine.update(c.b, r).unwrap();
    assert_eq!(
        c.send(0, c.a, c.alice, &rtp(0, 1, 0, 1, b"")).0,
        Action::Drop(DropReason::NoDestination)
    );
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!(s.rx_packets, 8);
    assert_eq!(s.fwd_packets, 0);
    // The flow counts them all and names the last reason; the worker, each reason.
    assert_eq!((s.drops, s.last_drop), (8, Some(DropReason::NoDestination)));
    let w = c.engine.worker_stats().drops;
    assert_eq!(w.get(DropReason::NotMedia), 2);
    assert_eq!(w.get(DropReason::Malformed), 4);
    assert_eq!(w.total(), s.drops);
}

#[test]
fn blocked_counts_and_drops() {
    let mut c = Call::new(Component::Rtp, |_| {});
    c.engine.set_blocked(c.a, true).unwrap();
    for seq in 0..3 {
        assert_eq!(
            c.send(0, c.a, c.alice, &rtp(0, seq, 0, 5, b"z")).0,
            Action::Drop(DropReason::Blocked)
        );
    }
    let s = c.engine.flow_stats(c.a).unwrap();
    assert!(s.blocked);
    assert_eq!((s.rx_packets, s.rtp.received, s.fwd_packets), (3, 3, 0));
    assert_eq!((s.drops, s.last_drop), (3, Some(DropReason::Blocked)));
    c.engine.set_blocked(c.a, false).unwrap();
    assert!(matches!(
        c.send(0, c.a, c.alice, &rtp(0, 3, 0, 5, b"z")).0,
        Action::Forward { .. }
    ));
    assert_eq!(
        c.engine.set_blocked(FlowId::new(7, 0), true),
        Err(EngineError::UnknownFlow)
    );
}

#[test]
fn pt_map_and_ssrc_rewrite_on_rtp_and_rtcp() {
    let mut c = Call::new(Component::Muxed, |r| {
        r.ssrc_rewrite = Some(SsrcRewrite {
            from: 0x1111_1111,
            to: 0x2222_2222,
        });
        r.pt_map.0[96] = 111;
    });
    let mut p = rtp(96, 1, 0, 0x1111_1111, b"pay");
    p[1] |= 0x80; // marker must survive the PT rewrite
    let (_, out) = c.send(0, c.a, c.alice, &p);
    let mut want = p.clone();
    want[1] = 0x80 | 111;
    want[8..12].copy_from_slice(&0x2222_2222u32.to_be_bytes());
    assert_eq!(out, want);
    // Another SSRC and an unmapped PT pass unchanged.
    let q = rtp(0, 2, 0, 0x3333_3333, b"pay");
    assert_eq!(c.send(MS, c.a, c.alice, &q).1, q);
    // RTCP: the sender SSRC of every packet in the compound.
    let r = rtcp_rr_sdes(0x1111_1111);
    let (_, out) = c.send(2 * MS, c.a, c.alice, &r);
    let mut want = r.clone();
    want[4..8].copy_from_slice(&0x2222_2222u32.to_be_bytes());
    want[12..16].copy_from_slice(&0x2222_2222u32.to_be_bytes());
    assert_eq!(out, want);
}

#[test]
fn events_latch_idle_and_ssrc_change() {
    let mut c = Call::new(Component::Rtp, |_| {});
    c.send(0, c.a, c.alice, &rtp(0, 1, 0, 1, b""));
    assert!(matches!(
        c.engine.pop_event(),
        Some(EngineEvent::Latched { .. })
    ));
    c.send(MS, c.a, c.alice, &rtp(0, 2, 0, 2, b""));
    assert_eq!(
        c.engine.pop_event(),
        Some(EngineEvent::SsrcChanged { id: c.a, ssrc: 2 })
    );
    assert_eq!(c.engine.flow_stats(c.a).unwrap().ssrc_changes, 1);
    // A saw media at 1 ms; B never did and counts from the first scan.
    c.engine.scan_idle(2 * SEC, 5 * SEC);
    assert_eq!(c.engine.pop_event(), None);
    c.engine.scan_idle(6 * SEC, 5 * SEC);
    assert_eq!(
        c.engine.pop_event(),
        Some(EngineEvent::MediaIdle {
            id: c.a,
            idle_ns: 6 * SEC - MS
        })
    );
    assert_eq!(c.engine.pop_event(), None);
    // Once per idle period: no repeat until media flows again.
    c.engine.scan_idle(7 * SEC, 5 * SEC);
    assert_eq!(
        c.engine.pop_event(),
        Some(EngineEvent::MediaIdle {
            id: c.b,
            idle_ns: 5 * SEC
        })
    );
    c.engine.scan_idle(30 * SEC, 5 * SEC);
    assert_eq!(c.engine.pop_event(), None);
    // The idle scans move neither flow's packet times: B, which counts idle time
    // from its first scan, still has none.
    let times = |c: &Call, id| {
        let s = c.engine.flow_stats(id).unwrap();
        (s.first_packet_ns, s.last_packet_ns)
    };
    assert_eq!(times(&c, c.a), (Some(0), Some(MS)));
    assert_eq!(times(&c, c.b), (None, None));
    c.send(31 * SEC, c.a, c.alice, &rtp(0, 3, 0, 2, b""));
    assert_eq!(times(&c, c.a), (Some(0), Some(31 * SEC)));
    c.engine.scan_idle(37 * SEC, 5 * SEC);
    assert_eq!(
        c.engine.pop_event(),
        Some(EngineEvent::MediaIdle {
            id: c.a,
            idle_ns: 6 * SEC
        })
    );
    assert_eq!(times(&c, c.a), (Some(0), Some(31 * SEC)));
}

#[test]
fn event_queue_overflow_is_counted() {
    let mut c = Call::new(Component::Rtp, |_| {});
    // Capacity is 16: 40 SSRC changes overflow it without growing.
    for i in 0..40u32 {
        c.send(u64::from(i), c.a, c.alice, &rtp(0, i as u16, 0, i, b""));
    }
    let mut n = 0;
    while c.engine.pop_event().is_some() {
        n += 1;
    }
    assert_eq!(n, 16);
    assert_eq!(c.engine.worker_stats().events_overflow, 40 - 16);
}

#[test]
fn update_keeps_stats_and_latch_and_bad_keys_are_refused() {
    let mut c = Call::new(Component::Rtp, |_| {});
    let natted = addr(1, 4444);
    c.send(0, c.a, natted, &rtp(0, 1, 0, 1, b"x"));
    let mut r = FlowRule::new(Component::Rtp);
    r.remote = Some(addr(9, 9));
    r.rtp_out = Some(Output { via: c.b });
    c.engine.update(c.a, r.clone()).unwrap();
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!((s.rx_packets, s.remote, s.latched), (1, Some(natted), true));

    // A 128-bit key under a 256-bit suite: refused, and the flow keeps forwarding plain.
    let key = MasterKey::from_concatenated(Suite::AesCm128HmacSha1_80, &[1; 30]).unwrap();
    r.crypto.decrypt = Some(SrtpParams {
        suite: Suite::AesCm256HmacSha1_80,
        key,
        replay_window: 128,
    });
    assert_eq!(c.engine.update(c.a, r.clone()), Err(EngineError::BadKey));
    assert_eq!(
        c.engine.insert(FlowId::new(5, 0), r),
        Err(EngineError::BadKey)
    );
    assert!(!c.engine.contains(FlowId::new(5, 0)));
    let p = rtp(0, 2, 0, 1, b"still plain");
    assert_eq!(c.send(MS, c.a, natted, &p).1, p);
    assert_eq!(
        c.engine
            .update(FlowId::new(5, 0), FlowRule::new(Component::Rtp)),
        Err(EngineError::UnknownFlow)
    );
}

#[test]
fn residence_histogram_records() {
    let mut c = Call::new(Component::Rtp, |_| {});
    for ns in [800, 1_200, 2_000, u64::MAX] {
        c.engine.record_residence(ns);
    }
    let h = c.engine.worker_stats().residence_ns;
    assert_eq!(h.len(), 4);
    assert!(h.value_at_quantile(0.5) >= 1_190 && h.value_at_quantile(0.5) <= 1_210);
}

#[test]
fn feedback_about_rewritten_media_is_mapped_back() {
    // Alice's SSRC 0xA is rewritten to 0xAA toward Bob; Bob's SSRC is not rewritten.
    let mut c = Call::new(Component::Muxed, |_| {});
    let mut r = FlowRule::new(Component::Muxed);
    r.remote = Some(c.alice);
    r.rtp_out = Some(Output { via: c.b });
    r.rtcp_out = Some(Output { via: c.b });
    r.ssrc_rewrite = Some(SsrcRewrite {
        from: 0xA,
        to: 0xAA,
    });
    c.engine.update(c.a, r).unwrap();
    let (_, out) = c.send(0, c.a, c.alice, &rtp(0, 1, 0, 0xA, b"m"));
    assert_eq!(&out[8..12], &0xAAu32.to_be_bytes());

    // Bob: RR from 0xB with a block about 0xAA and one about a stranger 0xC, then a
    // PLI about 0xAA.
    let mut rr = vec![0x82, 201, 0, 13, 0, 0, 0, 0xB];
    for about in [0xAAu32, 0xC] {
        rr.extend_from_slice(&about.to_be_bytes());
        rr.extend_from_slice(&[0; 20]);
    }
    rr.extend_from_slice(&[0x81, 206, 0, 2, 0, 0, 0, 0xB, 0, 0, 0, 0xAA]);
    let (act, out) = c.send(MS, c.b, c.bob, &rr);
    assert!(matches!(act, Action::Forward { dest, .. } if dest == c.alice));
    let mut want = rr.clone();
    want[8..12].copy_from_slice(&0xAu32.to_be_bytes());
    want[64..68].copy_from_slice(&0xAu32.to_be_bytes());
    assert_eq!(out, want);
}
