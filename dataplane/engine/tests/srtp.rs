//! SRTP through the packet path in virtual time: every output is checked by an
//! independent `SrtpContext` built from the same parameters, the way the phone on
//! the far side would check it.

mod common;

use common::*;
use ferrelay_engine::srtp::{MasterKey, SrtpContext, SrtpParams, Suite};
use ferrelay_engine::{Action, Component, DropReason, EngineEvent, FlowRule, SsrcRewrite};

/// Parameters with key material filled from `seed` (distinct seeds, distinct keys).
fn params(suite: Suite, seed: u8) -> SrtpParams {
    let material: Vec<u8> = (0..suite.key_len() + suite.salt_len())
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    SrtpParams {
        suite,
        key: MasterKey::from_concatenated(suite, &material).unwrap(),
        replay_window: 128,
    }
}

fn ctx(p: &SrtpParams) -> SrtpContext {
    SrtpContext::new(p).unwrap()
}

/// What a phone sends: `plain` protected with its own context.
fn protect_rtp(c: &mut SrtpContext, plain: &[u8]) -> Vec<u8> {
    let mut b = with_tailroom(plain);
    let n = c.protect_rtp(&mut b, plain.len()).unwrap();
    b.truncate(n);
    b
}

fn protect_rtcp(c: &mut SrtpContext, plain: &[u8]) -> Vec<u8> {
    let mut b = with_tailroom(plain);
    let n = c.protect_rtcp(&mut b, plain.len()).unwrap();
    b.truncate(n);
    b
}

/// What a phone receives: `srtp` verified and decrypted with its own context.
fn unprotect_rtp(c: &mut SrtpContext, srtp: &[u8]) -> Vec<u8> {
    let mut b = srtp.to_vec();
    let n = c.unprotect_rtp(&mut b, srtp.len()).unwrap();
    b.truncate(n);
    b
}

fn unprotect_rtcp(c: &mut SrtpContext, srtcp: &[u8]) -> Vec<u8> {
    let mut b = srtcp.to_vec();
    let n = c.unprotect_rtcp(&mut b, srtcp.len()).unwrap();
    b.truncate(n);
    b
}

fn forwarded(act: Action) -> usize {
    match act {
        Action::Forward { len, .. } => len,
        Action::Drop(r) => panic!("dropped: {r}"),
    }
}

#[test]
fn plain_in_srtp_out_after_the_rewrites() {
    let to_bob = params(Suite::AesCm128HmacSha1_80, 1);
    let mut c = Call::new(Component::Rtp, |_| {});
    let mut r = FlowRule::new(Component::Rtp);
    r.remote = Some(c.alice);
    r.rtp_out = Some(ferrelay_engine::Output { via: c.b });
    r.ssrc_rewrite = Some(SsrcRewrite { from: 0xA, to: 0xB });
    r.pt_map.0[0] = 8;
    r.crypto.encrypt = Some(to_bob.clone());
    c.engine.update(c.a, r).unwrap();

    let mut bob = ctx(&to_bob);
    for seq in 0..50u16 {
        let plain = rtp(0, seq, u32::from(seq) * 160, 0xA, &[seq as u8; 160]);
        let (act, out) = c.send(u64::from(seq) * 20 * MS, c.a, c.alice, &plain);
        assert_eq!(forwarded(act), plain.len() + 10);
        assert_ne!(out[12..172], plain[12..], "payload is encrypted");
        // Bob sees Alice's payload under the rewritten SSRC and PT.
        let want = rtp(8, seq, u32::from(seq) * 160, 0xB, &[seq as u8; 160]);
        assert_eq!(unprotect_rtp(&mut bob, &out), want);
    }
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!((s.rx_packets, s.fwd_packets), (50, 50));
    assert_eq!(s.fwd_bytes, 50 * 182);
}

#[test]
fn srtp_in_plain_out() {
    let from_alice = params(Suite::AesCm128HmacSha1_32, 2);
    let mut c = Call::new(Component::Rtp, |_| {});
    let mut r = FlowRule::new(Component::Rtp);
    r.remote = Some(c.alice);
    r.rtp_out = Some(ferrelay_engine::Output { via: c.b });
    r.crypto.decrypt = Some(from_alice.clone());
    c.engine.update(c.a, r).unwrap();

    let mut alice = ctx(&from_alice);
    for seq in 100..120u16 {
        let plain = rtp(0, seq, u32::from(seq) * 160, 0x5EED, b"alice speaks");
        let srtp = protect_rtp(&mut alice, &plain);
        assert_eq!(srtp.len(), plain.len() + 4);
        let (act, out) = c.send(u64::from(seq) * 20 * MS, c.a, c.alice, &srtp);
        assert_eq!(forwarded(act), plain.len());
        assert_eq!(out, plain);
    }
    // Stats come from the plain packets: 20 in order, none lost.
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!((s.rtp.ssrc, s.rtp.received, s.rtp.lost), (0x5EED, 20, 0));
}

#[test]
fn srtp_to_srtp_changes_suite_and_key_in_one_buffer() {
    let from_alice = params(Suite::AesCm128HmacSha1_80, 3);
    let to_bob = params(Suite::AeadAes128Gcm, 4);
    let from_bob = params(Suite::AeadAes256Gcm, 5);
    let to_alice = params(Suite::AesCm256HmacSha1_32, 6);
    let (fa, tb, fb, ta) = (
        from_alice.clone(),
        to_bob.clone(),
        from_bob.clone(),
        to_alice.clone(),
    );
    let mut c = Call::new(Component::Rtp, |_| {});
    for (id, remote, peer, dec, enc) in [(c.a, c.alice, c.b, fa, tb), (c.b, c.bob, c.a, fb, ta)] {
        let mut r = FlowRule::new(Component::Rtp);
        r.remote = Some(remote);
        r.rtp_out = Some(ferrelay_engine::Output { via: peer });
        r.crypto.decrypt = Some(dec);
        r.crypto.encrypt = Some(enc);
        c.engine.update(id, r).unwrap();
    }
    let (mut alice_tx, mut alice_rx) = (ctx(&from_alice), ctx(&to_alice));
    let (mut bob_tx, mut bob_rx) = (ctx(&from_bob), ctx(&to_bob));
    for seq in 0..30u16 {
        let now = u64::from(seq) * 20 * MS;
        let p = rtp(0, seq, 0, 0xA11CE, &[0xA0 ^ seq as u8; 160]);
        let (act, out) = c.send(now, c.a, c.alice, &protect_rtp(&mut alice_tx, &p));
        assert_eq!(forwarded(act), p.len() + 16, "GCM tag toward Bob");
        assert_eq!(unprotect_rtp(&mut bob_rx, &out), p);

        let q = rtp(0, seq, 0, 0xB0B, &[0xB0 ^ seq as u8; 160]);
        let (act, out) = c.send(now, c.b, c.bob, &protect_rtp(&mut bob_tx, &q));
        assert_eq!(forwarded(act), q.len() + 4, "32-bit tag toward Alice");
        assert_eq!(unprotect_rtp(&mut alice_rx, &out), q);
    }
}

#[test]
fn srtcp_both_ways_on_a_muxed_port() {
    let from_alice = params(Suite::AesCm128HmacSha1_80, 7);
    let to_bob = params(Suite::AeadAes128Gcm, 8);
    let from_bob = params(Suite::AeadAes128Gcm, 9);
    let to_alice = params(Suite::AesCm128HmacSha1_32, 10);
    let (fa, tb, fb, ta) = (
        from_alice.clone(),
        to_bob.clone(),
        from_bob.clone(),
        to_alice.clone(),
    );
    let mut c = Call::new(Component::Muxed, |_| {});
    for (id, remote, peer, dec, enc) in [(c.a, c.alice, c.b, fa, tb), (c.b, c.bob, c.a, fb, ta)] {
        let mut r = FlowRule::new(Component::Muxed);
        r.remote = Some(remote);
        r.rtp_out = Some(ferrelay_engine::Output { via: peer });
        r.rtcp_out = Some(ferrelay_engine::Output { via: peer });
        r.crypto.decrypt = Some(dec);
        r.crypto.encrypt = Some(enc);
        c.engine.update(id, r).unwrap();
    }
    let (mut alice_tx, mut alice_rx) = (ctx(&from_alice), ctx(&to_alice));
    let (mut bob_tx, mut bob_rx) = (ctx(&from_bob), ctx(&to_bob));
    for i in 0..10u16 {
        let now = u64::from(i) * 100 * MS;
        // RTP and RTCP interleaved on the one port, each through its own transform.
        let p = rtp(96, i, 0, 0xA11CE, b"media");
        let (_, out) = c.send(now, c.a, c.alice, &protect_rtp(&mut alice_tx, &p));
        assert_eq!(unprotect_rtp(&mut bob_rx, &out), p);

        let ra = rtcp_rr_sdes(0xA11CE);
        let (act, out) = c.send(now, c.a, c.alice, &protect_rtcp(&mut alice_tx, &ra));
        assert_eq!(forwarded(act), ra.len() + 4 + 16, "E+index and GCM tag");
        assert_eq!(unprotect_rtcp(&mut bob_rx, &out), ra);

        let rb = rtcp_rr_sdes(0xB0B);
        let (act, out) = c.send(now, c.b, c.bob, &protect_rtcp(&mut bob_tx, &rb));
        assert_eq!(forwarded(act), rb.len() + 4 + 10, "E+index and HMAC tag");
        assert_eq!(unprotect_rtcp(&mut alice_rx, &out), rb);
    }
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!((s.rtcp_packets, s.rtp.received), (10, 10));
}

/// A muxed call whose flow A decrypts with `from_alice` and forwards plain.
fn decrypting_call(from_alice: &SrtpParams, tweak: impl Fn(&mut FlowRule)) -> Call {
    let mut c = Call::new(Component::Muxed, |_| {});
    let mut r = FlowRule::new(Component::Muxed);
    r.remote = Some(c.alice);
    r.rtp_out = Some(ferrelay_engine::Output { via: c.b });
    r.rtcp_out = Some(ferrelay_engine::Output { via: c.b });
    r.crypto.decrypt = Some(from_alice.clone());
    tweak(&mut r);
    c.engine.update(c.a, r).unwrap();
    c
}

#[test]
fn tampered_packets_are_dropped_and_never_latch() {
    let from_alice = params(Suite::AesCm128HmacSha1_80, 11);
    let mut c = decrypting_call(&from_alice, |_| {});
    let mut alice = ctx(&from_alice);
    let attacker = addr(66, 6666);

    // A valid packet with one payload bit flipped, from a would-be hijacker first.
    let mut bad = protect_rtp(&mut alice, &rtp(0, 1, 0, 0xA11CE, &[1; 160]));
    bad[20] ^= 1;
    let (act, _) = c.send(0, c.a, attacker, &bad);
    assert_eq!(act, Action::Drop(DropReason::SrtpAuth));
    // Tampered SRTCP too (flip a bit of the tag).
    let mut bad_rtcp = protect_rtcp(&mut alice, &rtcp_rr_sdes(0xA11CE));
    let last = bad_rtcp.len() - 1;
    bad_rtcp[last] ^= 0x80;
    let (act, _) = c.send(MS, c.a, attacker, &bad_rtcp);
    assert_eq!(act, Action::Drop(DropReason::SrtpAuth));

    let s = c.engine.flow_stats(c.a).unwrap();
    assert!(!s.latched, "forged packets must not latch");
    assert_eq!(s.remote, Some(c.alice));
    assert_eq!(
        (s.rtp.received, s.rtcp_packets, s.last_packet_ns),
        (0, 0, None)
    );
    assert_eq!((s.drops, s.last_drop), (2, Some(DropReason::SrtpAuth)));
    assert_eq!(c.engine.worker_stats().drops.get(DropReason::SrtpAuth), 2);
    assert_eq!(c.engine.pop_event(), None);

    // Alice's genuine packet latches her; a forged one later does not move the latch.
    let good = protect_rtp(&mut alice, &rtp(0, 2, 0, 0xA11CE, &[2; 160]));
    forwarded(c.send(2 * MS, c.a, c.alice, &good).0);
    assert_eq!(
        c.engine.pop_event(),
        Some(EngineEvent::Latched {
            id: c.a,
            addr: c.alice
        })
    );
    let (act, _) = c.send(3 * MS, c.a, attacker, &bad);
    assert_eq!(act, Action::Drop(DropReason::SrtpAuth));
    assert_eq!(c.engine.flow_stats(c.a).unwrap().remote, Some(c.alice));
}

#[test]
fn replays_are_dropped_and_counted() {
    let from_alice = params(Suite::AeadAes128Gcm, 12);
    let mut c = decrypting_call(&from_alice, |_| {});
    let mut alice = ctx(&from_alice);
    let first = protect_rtp(&mut alice, &rtp(0, 7, 0, 0xA11CE, b"once"));
    forwarded(c.send(0, c.a, c.alice, &first).0);
    let (act, _) = c.send(MS, c.a, c.alice, &first);
    assert_eq!(act, Action::Drop(DropReason::SrtpReplay));
    // Far older than the 128-packet window: also a replay verdict.
    for seq in 8..300u16 {
        let p = protect_rtp(&mut alice, &rtp(0, seq, 0, 0xA11CE, b"x"));
        forwarded(c.send(2 * MS, c.a, c.alice, &p).0);
    }
    let (act, _) = c.send(3 * MS, c.a, c.alice, &first);
    assert_eq!(act, Action::Drop(DropReason::SrtpReplay));
    let report = protect_rtcp(&mut alice, &rtcp_rr_sdes(0xA11CE));
    forwarded(c.send(4 * MS, c.a, c.alice, &report).0);
    let (act, _) = c.send(5 * MS, c.a, c.alice, &report);
    assert_eq!(act, Action::Drop(DropReason::SrtpReplay));

    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!((s.drops, s.last_drop), (3, Some(DropReason::SrtpReplay)));
    assert_eq!(s.rtp.duplicates, 0, "replays never reach the RTP stats");
    assert_eq!(c.engine.worker_stats().drops.get(DropReason::SrtpReplay), 3);
}

#[test]
fn update_with_same_keys_keeps_roc_and_replay_state() {
    let from_alice = params(Suite::AesCm128HmacSha1_80, 13);
    let to_bob = params(Suite::AesCm128HmacSha1_80, 14);
    let rule = |c: &Call, dec: &SrtpParams, enc: &SrtpParams, window: u16| {
        let mut r = FlowRule::new(Component::Rtp);
        r.remote = Some(c.alice);
        r.rtp_out = Some(ferrelay_engine::Output { via: c.b });
        r.crypto.decrypt = Some(SrtpParams {
            replay_window: window,
            ..dec.clone()
        });
        r.crypto.encrypt = Some(enc.clone());
        r
    };
    let mut c = Call::new(Component::Rtp, |_| {});
    c.engine
        .update(c.a, rule(&c, &from_alice, &to_bob, 128))
        .unwrap();
    let (mut alice, mut bob) = (ctx(&from_alice), ctx(&to_bob));
    let mut now = 0;
    let mut sent = Vec::new();
    // Across the sequence wrap: both sides' ROC becomes 1.
    for seq in (65_530..=65_535u16).chain(0..5) {
        now += 20 * MS;
        let p = rtp(0, seq, 0, 0xA11CE, &[seq as u8; 40]);
        let srtp = protect_rtp(&mut alice, &p);
        let (act, out) = c.send(now, c.a, c.alice, &srtp);
        forwarded(act);
        assert_eq!(unprotect_rtp(&mut bob, &out), p);
        sent.push(srtp);
    }
    // Same keys (a wider replay window only): the contexts stay.
    c.engine
        .update(c.a, rule(&c, &from_alice, &to_bob, 256))
        .unwrap();
    let p = rtp(0, 5, 0, 0xA11CE, &[5; 40]);
    let (act, out) = c.send(now + 20 * MS, c.a, c.alice, &protect_rtp(&mut alice, &p));
    forwarded(act);
    assert_eq!(unprotect_rtp(&mut bob, &out), p, "ROC 1 kept on both sides");
    let (act, _) = c.send(now + 40 * MS, c.a, c.alice, sent.last().unwrap());
    assert_eq!(act, Action::Drop(DropReason::SrtpReplay), "window kept");

    // New keys on both sides: fresh contexts, and the phones rekey too.
    let (from_alice2, to_bob2) = (
        params(Suite::AesCm128HmacSha1_80, 15),
        params(Suite::AesCm128HmacSha1_80, 16),
    );
    c.engine
        .update(c.a, rule(&c, &from_alice2, &to_bob2, 128))
        .unwrap();
    let (mut alice, mut bob) = (ctx(&from_alice2), ctx(&to_bob2));
    let p = rtp(0, 6, 0, 0xA11CE, &[6; 40]);
    let (act, out) = c.send(now + 60 * MS, c.a, c.alice, &protect_rtp(&mut alice, &p));
    forwarded(act);
    assert_eq!(unprotect_rtp(&mut bob, &out), p);
    // A packet under the old key, at an index the new context has not seen, fails.
    let stale = protect_rtp(&mut ctx(&from_alice), &rtp(0, 7, 0, 0xA11CE, &[7; 40]));
    let (act, _) = c.send(now + 80 * MS, c.a, c.alice, &stale);
    assert_eq!(act, Action::Drop(DropReason::SrtpAuth));
}

#[test]
fn encrypt_without_tailroom_is_dropped_not_truncated() {
    let to_bob = params(Suite::AesCm128HmacSha1_80, 17);
    let mut c = Call::new(Component::Rtp, |_| {});
    let mut r = FlowRule::new(Component::Rtp);
    r.remote = Some(c.alice);
    r.rtp_out = Some(ferrelay_engine::Output { via: c.b });
    r.crypto.encrypt = Some(to_bob);
    c.engine.update(c.a, r).unwrap();
    let p = rtp(0, 1, 0, 1, b"no room");
    let mut buf = p.clone();
    let act = c.engine.on_datagram(0, c.a, c.alice, &mut buf, p.len());
    assert_eq!(act, Action::Drop(DropReason::NoTailroom));
    let s = c.engine.flow_stats(c.a).unwrap();
    assert_eq!((s.drops, s.last_drop), (1, Some(DropReason::NoTailroom)));
}
