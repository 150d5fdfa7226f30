//! Interop with libsrtp (through pylibsrtp) for every negotiable suite, both
//! directions, RTP and RTCP, across the 16-bit sequence wrap.
//!
//! Needs a Python with `pylibsrtp` (`python3 -m pip install pylibsrtp`): the
//! interpreter named by `FERRELAY_PYTHON` (scripts/test.sh points it at the
//! project's virtualenv), else `python3`. Without it the test fails, unless
//! `FERRELAY_SKIP_INTEROP=1` is set.

#[path = "../../../tests/interop/srtp/oracle.rs"]
mod oracle;

use ferrelay_srtp::{MasterKey, SrtpContext, SrtpError, SrtpParams, Suite};
use oracle::{Oracle, hex};

/// Deterministic test bytes (xorshift), so failures reproduce.
struct Bytes(u64);
impl Bytes {
    fn next(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 24) as u8
    }
}

fn rtp_packet(g: &mut Bytes, seq: u16, ssrc: u32, with_ext: bool) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    if with_ext {
        p[0] |= 0x10 | 0x01; // X = 1, CC = 1
        p.extend_from_slice(&[0, 0, 0, 9]); // CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]); // one-byte ext
    }
    let n = 1 + usize::from(g.next()) % 200;
    p.extend((0..n).map(|_| g.next()));
    p
}

fn rtcp_packet(g: &mut Bytes, ssrc: u32) -> Vec<u8> {
    // Receiver report with one report block, then an SDES-sized tail of bytes.
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..24).map(|_| g.next()));
    p
}

fn params(suite: Suite, g: &mut Bytes) -> SrtpParams {
    let material: Vec<u8> = (0..suite.key_len() + suite.salt_len())
        .map(|_| g.next())
        .collect();
    SrtpParams {
        suite,
        key: MasterKey::from_concatenated(suite, &material).unwrap(),
        replay_window: 1024,
    }
}

const SEQS: std::ops::Range<u32> = 65_400..65_800; // crosses the 16-bit wrap

#[test]
fn every_suite_interoperates_with_libsrtp_both_ways() {
    let Some(mut o) = Oracle::start() else {
        return;
    };
    let mut g = Bytes(0x9e37_79b9_7f4a_7c15);
    for (n, suite) in Suite::NEGOTIABLE.into_iter().enumerate() {
        let name = suite.sdes_name();
        let p = params(suite, &mut g);
        let key = hex(p.key.concatenated());
        o.ask(&format!("new in{n} {name} in {key}")).unwrap();
        o.ask(&format!("new out{n} {name} out {key}")).unwrap();
        let mut ours_tx = SrtpContext::new(&p).unwrap();
        let mut ours_rx = SrtpContext::new(&p).unwrap();
        let mut rtp_same_bytes = 0;
        for (i, s) in SEQS.enumerate() {
            let ssrc = 0x1111_0000 + (i as u32 % 2);
            let plain = rtp_packet(&mut g, s as u16, ssrc, i % 3 == 0);

            // ferrelay protects, libsrtp unprotects.
            let mut buf = [0u8; 1500];
            buf[..plain.len()].copy_from_slice(&plain);
            let len = ours_tx.protect_rtp(&mut buf, plain.len()).unwrap();
            let theirs = o.ask(&format!("unprotect in{n} {}", hex(&buf[..len])));
            assert_eq!(
                theirs.as_deref(),
                Ok(&plain[..]),
                "{name}: libsrtp unprotect seq {s}"
            );

            // libsrtp protects, ferrelay unprotects; the bytes must match ours exactly.
            let protected = o.ask(&format!("protect out{n} {}", hex(&plain))).unwrap();
            if protected[..] == buf[..len] {
                rtp_same_bytes += 1;
            }
            let mut buf = [0u8; 1500];
            buf[..protected.len()].copy_from_slice(&protected);
            let got = ours_rx.unprotect_rtp(&mut buf, protected.len());
            assert_eq!(got, Ok(plain.len()), "{name}: ferrelay unprotect seq {s}");
            assert_eq!(&buf[..plain.len()], &plain[..], "{name}: seq {s}");

            // A tampered copy of an accepted packet is refused as a replay, before any MAC work.
            if i % 50 == 7 {
                let mut bad = protected.clone();
                let at = bad.len() - 1 - suite.rtp_overhead();
                bad[at] ^= 0x20;
                let mut buf = [0u8; 1500];
                buf[..bad.len()].copy_from_slice(&bad);
                assert_eq!(
                    ours_rx.unprotect_rtp(&mut buf, bad.len()),
                    Err(SrtpError::Replayed),
                    "{name}: same index again is a replay before any auth"
                );
            }
        }
        assert_eq!(
            rtp_same_bytes,
            SEQS.len(),
            "{name}: ferrelay and libsrtp SRTP bytes identical"
        );

        for i in 0..40u32 {
            let ssrc = 0x2222_0000 + (i % 2);
            let plain = rtcp_packet(&mut g, ssrc);
            let mut buf = [0u8; 1500];
            buf[..plain.len()].copy_from_slice(&plain);
            let len = ours_tx.protect_rtcp(&mut buf, plain.len()).unwrap();
            let theirs = o.ask(&format!("unprotect_rtcp in{n} {}", hex(&buf[..len])));
            assert_eq!(
                theirs.as_deref(),
                Ok(&plain[..]),
                "{name}: libsrtp unprotect_rtcp {i}"
            );

            let protected = o
                .ask(&format!("protect_rtcp out{n} {}", hex(&plain)))
                .unwrap();
            let mut buf = [0u8; 1500];
            buf[..protected.len()].copy_from_slice(&protected);
            let got = ours_rx.unprotect_rtcp(&mut buf, protected.len());
            assert_eq!(got, Ok(plain.len()), "{name}: ferrelay unprotect_rtcp {i}");
            assert_eq!(&buf[..plain.len()], &plain[..], "{name}: rtcp {i}");

            let mut tampered = protected.clone();
            tampered[10] ^= 1;
            let mut buf = [0u8; 1500];
            buf[..tampered.len()].copy_from_slice(&tampered);
            // Same index as the packet just accepted, so the replay check answers first.
            assert_eq!(
                ours_rx.unprotect_rtcp(&mut buf, tampered.len()),
                Err(SrtpError::Replayed),
                "{name}"
            );
        }
    }
}

#[test]
fn tampered_libsrtp_packets_fail_our_auth() {
    let Some(mut o) = Oracle::start() else {
        return;
    };
    let mut g = Bytes(42);
    for (n, suite) in Suite::NEGOTIABLE.into_iter().enumerate() {
        let name = suite.sdes_name();
        let p = params(suite, &mut g);
        o.ask(&format!(
            "new out{n} {name} out {}",
            hex(p.key.concatenated())
        ))
        .unwrap();
        let mut rx = SrtpContext::new(&p).unwrap();
        let plain = rtp_packet(&mut g, 500, 7, false);
        let mut protected = o.ask(&format!("protect out{n} {}", hex(&plain))).unwrap();
        protected[13] ^= 0x04;
        let mut buf = [0u8; 1500];
        buf[..protected.len()].copy_from_slice(&protected);
        assert_eq!(
            rx.unprotect_rtp(&mut buf, protected.len()),
            Err(SrtpError::AuthFailed),
            "{name}"
        );
        let plain = rtcp_packet(&mut g, 7);
        let mut protected = o
            .ask(&format!("protect_rtcp out{n} {}", hex(&plain)))
            .unwrap();
        protected[9] ^= 0x04;
        let mut buf = [0u8; 1500];
        buf[..protected.len()].copy_from_slice(&protected);
        assert_eq!(
            rx.unprotect_rtcp(&mut buf, protected.len()),
            Err(SrtpError::AuthFailed),
            "{name}"
        );
    }
}

#[test]
fn libsrtp_authenticated_only_srtcp_verifies() {
    let Some(mut o) = Oracle::start() else {
        return;
    };
    let mut g = Bytes(7);
    for (n, suite) in Suite::NEGOTIABLE.into_iter().enumerate() {
        let name = suite.sdes_name();
        let p = params(suite, &mut g);
        o.ask(&format!(
            "new out{n} {name} out {} auth-only-rtcp",
            hex(p.key.concatenated())
        ))
        .unwrap();
        let mut rx = SrtpContext::new(&p).unwrap();
        for _ in 0..3 {
            let plain = rtcp_packet(&mut g, 0x4242);
            let protected = o
                .ask(&format!("protect_rtcp out{n} {}", hex(&plain)))
                .unwrap();
            assert_eq!(
                &protected[..plain.len()],
                &plain[..],
                "{name}: E=0 is clear"
            );
            let mut buf = [0u8; 1500];
            buf[..protected.len()].copy_from_slice(&protected);
            assert_eq!(
                rx.unprotect_rtcp(&mut buf, protected.len()),
                Ok(plain.len()),
                "{name}"
            );
            assert_eq!(&buf[..plain.len()], &plain[..], "{name}");
        }
    }
}

/// A relay bridging two SRTP legs: libsrtp (leg A) protects, ferrelay
/// unprotects with A's keys and protects with B's keys in the same buffer,
/// libsrtp (leg B) unprotects. Packets reach ferrelay reordered around the
/// 16-bit wrap, so its ROC estimate must agree with libsrtp's on both sides.
#[test]
fn srtp_to_srtp_bridge_with_reordering_across_the_wrap() {
    let Some(mut o) = Oracle::start() else {
        return;
    };
    let mut g = Bytes(0xfeed);
    for (n, suite) in Suite::NEGOTIABLE.into_iter().enumerate() {
        // Leg B uses a different suite, so the key schedule really changes.
        let other = Suite::NEGOTIABLE[(n + 1) % Suite::NEGOTIABLE.len()];
        let (pa, pb) = (params(suite, &mut g), params(other, &mut g));
        o.ask(&format!(
            "new a{n} {} out {}",
            suite.sdes_name(),
            hex(pa.key.concatenated())
        ))
        .unwrap();
        o.ask(&format!(
            "new b{n} {} in {}",
            other.sdes_name(),
            hex(pb.key.concatenated())
        ))
        .unwrap();
        let mut from_a = SrtpContext::new(&pa).unwrap();
        let mut to_b = SrtpContext::new(&pb).unwrap();

        let plains: Vec<Vec<u8>> = (65_500u32..65_600)
            .map(|s| rtp_packet(&mut g, s as u16, 0xabcd, s % 4 == 0))
            .collect();
        let protected: Vec<Vec<u8>> = plains
            .iter()
            .map(|p| o.ask(&format!("protect a{n} {}", hex(p))).unwrap())
            .collect();
        // Swap each pair: 1,0,3,2,... so packets arrive out of order across the wrap.
        for pair in (0..protected.len()).step_by(2) {
            for i in [pair + 1, pair] {
                let mut buf = [0u8; 1500];
                buf[..protected[i].len()].copy_from_slice(&protected[i]);
                let len = from_a.unprotect_rtp(&mut buf, protected[i].len()).unwrap();
                assert_eq!(&buf[..len], &plains[i][..], "{suite:?} packet {i}");
                let len = to_b.protect_rtp(&mut buf, len).unwrap();
                let theirs = o.ask(&format!("unprotect b{n} {}", hex(&buf[..len])));
                assert_eq!(
                    theirs.as_deref(),
                    Ok(&plains[i][..]),
                    "{suite:?} -> {other:?} packet {i}"
                );
            }
        }
    }
}
