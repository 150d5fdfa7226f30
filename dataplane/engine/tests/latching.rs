//! Latching in virtual time: a NAT rebinding after silence keeps the call going, a
//! foreign sprayer (RTP bleed) never takes a live stream over.

mod common;

use common::*;
use ferrelay_engine::{Action, Component, DropReason, EngineEvent, MismatchPolicy};

const RELATCH_AFTER: u64 = 2 * SEC;

fn guarded() -> Call {
    Call::new(Component::Rtp, |r| {
        r.on_mismatch = MismatchPolicy::Relatch {
            relatch_after_ns: RELATCH_AFTER,
        }
    })
}

#[test]
fn nat_rebinding_after_silence_relatches_and_media_continues() {
    let mut c = guarded();
    let (before, after) = (addr(1, 40_000), addr(1, 40_001));
    let mut now = 0;
    for seq in 0..50u16 {
        now += 20 * MS;
        c.send(
            now,
            c.a,
            before,
            &rtp(0, seq, u32::from(seq) * 160, 0xCAFE, b"v"),
        );
    }
    // A 3 s pause (phone on hold), then the NAT hands out a new port. The SSRC is
    // new as well (the phone restarted its stream), so only the silence proves it.
    now += 3 * SEC;
    let p = rtp(0, 7, 0, 0xBEEF, b"w");
    let (act, out) = c.send(now, c.a, after, &p);
    assert!(matches!(act, Action::Forward { via, dest, .. } if via == c.b && dest == c.bob));
    assert_eq!(out, p);
    // Bob's media now goes to the new port.
    let (act, _) = c.send(now + MS, c.b, c.bob, &rtp(0, 1, 0, 0xB0B, b"b"));
    assert!(matches!(act, Action::Forward { dest, .. } if dest == after));
    // The old port, now a stranger, is refused while the new one is live.
    assert_eq!(
        c.send(now + 2 * MS, c.a, before, &rtp(0, 51, 0, 0xCAFE, b"v"))
            .0,
        Action::Drop(DropReason::SourceMismatch)
    );
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!((s.remote, s.relatches), (Some(after), 1));
    let latches: Vec<_> = std::iter::from_fn(|| c.engine.pop_event())
        .filter_map(|e| match e {
            EngineEvent::Latched { id, addr } if id == c.a => Some(addr),
            _ => None,
        })
        .collect();
    assert_eq!(latches, [before, after]);
}

#[test]
fn nat_rebinding_without_pause_is_proved_by_the_ssrc() {
    let mut c = guarded();
    let (before, after) = (addr(1, 40_000), addr(1, 40_001));
    c.send(0, c.a, before, &rtp(0, 1, 0, 0xCAFE, b"v"));
    let (act, _) = c.send(20 * MS, c.a, after, &rtp(0, 2, 160, 0xCAFE, b"v"));
    assert!(matches!(act, Action::Forward { .. }));
    assert_eq!(c.engine.flow_stats(c.a).unwrap().remote, Some(after));
    // Sequence accounting continues across the move: nothing lost.
    assert_eq!(c.engine.flow_stats(c.a).unwrap().rtp.lost, 0);
}

#[test]
fn foreign_sprayer_never_takes_over_a_live_stream() {
    let mut c = guarded();
    let alice = addr(1, 40_000);
    let mut now = 0;
    let mut attack = 0u64;
    for seq in 0..500u16 {
        now += 20 * MS;
        let (act, _) = c.send(
            now,
            c.a,
            alice,
            &rtp(0, seq, u32::from(seq) * 160, 0xCAFE, b"v"),
        );
        assert!(matches!(act, Action::Forward { .. }), "seq {seq}");
        // Ten spoofed packets per real one, with a guessed SSRC and many ports.
        for k in 0..10u16 {
            let src = addr(66, 6000 + k);
            let (act, _) = c.send(now + 1, c.a, src, &rtp(0, seq, 0, 0xBAD, b"evil"));
            assert_eq!(act, Action::Drop(DropReason::SourceMismatch));
            attack += 1;
        }
    }
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!(s.remote, Some(alice));
    assert_eq!(s.relatches, 0);
    assert_eq!(s.fwd_packets, 500);
    assert_eq!(
        (s.drops, s.last_drop),
        (attack, Some(DropReason::SourceMismatch))
    );
    // The sprayed packets never reached the stream's loss/jitter accounting.
    assert_eq!((s.rtp.ssrc, s.rtp.received, s.rtp.lost), (0xCAFE, 500, 0));
    // Bob's media still goes to Alice.
    let (act, _) = c.send(now + MS, c.b, c.bob, &rtp(0, 1, 0, 0xB0B, b"b"));
    assert!(matches!(act, Action::Forward { dest, .. } if dest == alice));
}

#[test]
fn strict_source_drops_and_accept_forwards_without_moving() {
    let mut c = Call::new(Component::Rtp, |r| r.on_mismatch = MismatchPolicy::Drop);
    c.send(0, c.a, c.alice, &rtp(0, 1, 0, 1, b""));
    assert_eq!(
        c.send(100 * SEC, c.a, addr(1, 1), &rtp(0, 2, 0, 1, b"")).0,
        Action::Drop(DropReason::SourceMismatch)
    );

    let mut c = Call::new(Component::Rtp, |r| r.on_mismatch = MismatchPolicy::Accept);
    c.send(0, c.a, c.alice, &rtp(0, 1, 0, 1, b""));
    let (act, _) = c.send(MS, c.a, addr(1, 1), &rtp(0, 2, 0, 9, b""));
    assert!(matches!(act, Action::Forward { dest, .. } if dest == c.bob));
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!(
        (s.remote, s.fwd_packets, s.ssrc_changes),
        (Some(c.alice), 2, 0)
    );
}

#[test]
fn switching_to_fixed_forgets_the_latch_and_trusts_the_sdp() {
    let mut c = Call::new(Component::Rtp, |_| {});
    let natted = addr(1, 4444);
    c.send(0, c.a, natted, &rtp(0, 1, 0, 1, b""));
    assert_eq!(c.engine.flow_stats(c.a).unwrap().remote, Some(natted));
    let mut r = ferrelay_engine::FlowRule::new(Component::Rtp);
    r.latch = ferrelay_engine::LatchMode::Fixed;
    r.on_mismatch = MismatchPolicy::Drop;
    r.remote = Some(c.alice);
    r.rtp_out = Some(ferrelay_engine::Output { via: c.b });
    c.engine.update(c.a, r).unwrap();
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!(
        (s.remote, s.latched, s.rx_packets),
        (Some(c.alice), false, 1)
    );
    assert_eq!(
        c.send(MS, c.a, natted, &rtp(0, 2, 0, 1, b"")).0,
        Action::Drop(DropReason::SourceMismatch)
    );
    assert!(matches!(
        c.send(2 * MS, c.a, c.alice, &rtp(0, 3, 0, 1, b"")).0,
        Action::Forward { .. }
    ));
    // Fixed never learns, so no new Latched event after the first one.
    let latched = std::iter::from_fn(|| c.engine.pop_event())
        .filter(|e| matches!(e, EngineEvent::Latched { .. }))
        .count();
    assert_eq!(latched, 1);
}
