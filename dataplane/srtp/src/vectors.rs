//! Published vectors and behaviour tests for the whole transform.

use crate::context::SrtpContext;
use crate::error::SrtpError;
use crate::kdf::SessionKeys;
use crate::params::{MasterKey, SrtpParams, Suite};

/// Bytes from hex text (whitespace ignored), for the vectors here and beside the code.
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn session(enc: &str, salt: &str, auth: &[u8; 20]) -> SessionKeys {
    let enc = unhex(enc);
    let salt_b = unhex(salt);
    let mut k = SessionKeys {
        enc: [0; 32],
        enc_len: enc.len(),
        auth: *auth,
        salt: [0; 14],
    };
    k.enc[..enc.len()].copy_from_slice(&enc);
    k.salt[..salt_b.len()].copy_from_slice(&salt_b);
    k
}

fn params(suite: Suite, seed: u8, window: u16) -> SrtpParams {
    let material: Vec<u8> = (0..suite.key_len() + suite.salt_len())
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    SrtpParams {
        suite,
        key: MasterKey::from_concatenated(suite, &material).unwrap(),
        replay_window: window,
    }
}

fn pair(suite: Suite) -> (SrtpContext, SrtpContext) {
    let p = params(suite, 9, 128);
    (SrtpContext::new(&p).unwrap(), SrtpContext::new(&p).unwrap())
}

/// RTP packet with `seq`, `ssrc` and a recognisable payload, in a buffer with tailroom.
fn rtp(seq: u16, ssrc: u32, payload_len: usize) -> ([u8; 1500], usize) {
    let mut b = [0u8; 1500];
    b[0] = 0x80;
    b[1] = 0;
    b[2..4].copy_from_slice(&seq.to_be_bytes());
    b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    b[8..12].copy_from_slice(&ssrc.to_be_bytes());
    for (i, x) in b[12..12 + payload_len].iter_mut().enumerate() {
        *x = (i as u8) ^ (seq as u8);
    }
    (b, 12 + payload_len)
}

/// Minimal receiver report from `ssrc` with one report block.
fn rtcp(ssrc: u32) -> ([u8; 1500], usize) {
    let mut b = [0u8; 1500];
    b[..8].copy_from_slice(&[0x81, 201, 0, 7, 0, 0, 0, 0]);
    b[4..8].copy_from_slice(&ssrc.to_be_bytes());
    for (i, x) in b[8..32].iter_mut().enumerate() {
        *x = 0xa0 + i as u8;
    }
    (b, 32)
}

// RFC 3711 Appendix B.2: AES-CM keystream for session key 2B7E15..., salt
// F0F1...FD, SSRC 0, index 0. Encrypting a zero payload exposes the keystream.
#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let k = session(
        "2B7E151628AED2A6ABF7158809CF4F3C",
        "F0F1F2F3F4F5F6F7F8F9FAFBFCFD",
        &[0; 20],
    );
    let mut ctx = SrtpContext::from_session_keys(Suite::AesCm128HmacSha1_80, &k, &k, 64);
    let mut b = [0u8; 12 + 48 + 10];
    b[0] = 0x80;
    assert_eq!(ctx.protect_rtp(&mut b, 60), Ok(70));
    assert_eq!(
        &b[12..60],
        &unhex(
            "E03EAD0935C95E80E166B16DD92B4EB4
             D23513162B02D0F72A43A2FE4A5F97AB
             41E95B3BB0A2E8DD477901E4FCA894C0"
        )[..]
    );
}

/// libsrtp's own known-answer packets (test/srtp_driver.c): SSRC 0xcafebabe,
/// seq 0x1234, 16 bytes of 0xab, protected from the master key below.
fn libsrtp_known_answer(suite: Suite, master: &str, protected: &str) {
    let p = SrtpParams {
        suite,
        key: MasterKey::from_concatenated(suite, &unhex(master)).unwrap(),
        replay_window: 128,
    };
    let mut plain = unhex("800f1234decafbadcafebabe");
    plain.extend_from_slice(&[0xab; 16]);
    let expected = unhex(protected);
    let mut b = [0u8; 64];
    b[..plain.len()].copy_from_slice(&plain);
    let n = SrtpContext::new(&p)
        .unwrap()
        .protect_rtp(&mut b, plain.len())
        .unwrap();
    assert_eq!(&b[..n], &expected[..], "{suite:?}");
    let m = SrtpContext::new(&p)
        .unwrap()
        .unprotect_rtp(&mut b, n)
        .unwrap();
    assert_eq!(&b[..m], &plain[..], "{suite:?}");
}

#[test]
fn libsrtp_known_answer_aes_cm_128_hmac_sha1_80() {
    libsrtp_known_answer(
        Suite::AesCm128HmacSha1_80,
        "e1f97a0d3e018be0d64fa32c06de4139 0ec675ad498afeebb6960b3aabe6",
        "800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb",
    );
}

#[test]
fn libsrtp_known_answer_aes_256_cm_hmac_sha1_80() {
    libsrtp_known_answer(
        Suite::AesCm256HmacSha1_80,
        "f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6
         3b04803de51ee7c96423ab5b78d2",
        "800f1234decafbadcafebabe f1d9de17ff251ff1aa007774b0b4b40d a08d9d9a5b3a55d8873b",
    );
}

const GCM_RTP_PLAIN: &str = "8040f17b8041f8d35501a0b2
    47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573";

fn gcm_vector_rtp(suite: Suite, key: &str, protected: &str) {
    let k = session(key, "517569642070726f2071756f", &[0; 20]);
    let plain = unhex(GCM_RTP_PLAIN);
    let expected = unhex(protected);
    let mut tx = SrtpContext::from_session_keys(suite, &k, &k, 64);
    let mut b = [0u8; 128];
    b[..plain.len()].copy_from_slice(&plain);
    let n = tx.protect_rtp(&mut b, plain.len()).unwrap();
    assert_eq!(&b[..n], &expected[..]);
    let mut rx = SrtpContext::from_session_keys(suite, &k, &k, 64);
    let m = rx.unprotect_rtp(&mut b, n).unwrap();
    assert_eq!(&b[..m], &plain[..]);
}

// RFC 7714 §16.1.1 / §16.1.2: AEAD_AES_128_GCM SRTP encryption and decryption.
#[test]
fn rfc7714_16_1_aead_aes_128_gcm_rtp() {
    gcm_vector_rtp(
        Suite::AeadAes128Gcm,
        "000102030405060708090a0b0c0d0e0f",
        "8040f17b8041f8d35501a0b2
         f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833
         899d7f27beb16a9152cf765ee4390cce",
    );
}

// RFC 7714 §16.2.1 / §16.2.2: AEAD_AES_256_GCM SRTP encryption and decryption.
#[test]
fn rfc7714_16_2_aead_aes_256_gcm_rtp() {
    gcm_vector_rtp(
        Suite::AeadAes256Gcm,
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "8040f17b8041f8d35501a0b2
         32b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3b50b2a0276ffae0f1ba63799b87b
         7aa3db36dfffd6b0f9bb7878d7a76c13",
    );
}

// RFC 7714 §17.1 (SRTCP with AEAD_AES_128_GCM): sender report from SSRC
// 0x4d617273, SRTCP index 0x5d4; header | ciphertext | tag | E+index.
#[test]
fn rfc7714_aead_aes_128_gcm_srtcp() {
    let k = session(
        "000102030405060708090a0b0c0d0e0f",
        "517569642070726f2071756f",
        &[0; 20],
    );
    let plain = unhex(
        "81c8000d4d617273 4e5450314e5450325254502000 00042a0000e9304c756e61
         deadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
    );
    let expected = unhex(
        "81c8000d4d617273 63e94885dcdab67ca727d7662f6b7e997ff5c0f7
         6c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275b
         c84aa45896cf4d2fc5abf87245d9eade 800005d4",
    );
    let mut tx = SrtpContext::from_session_keys(Suite::AeadAes128Gcm, &k, &k, 64);
    tx.rtcp_tx_next = 0x5d4;
    let mut b = [0u8; 128];
    b[..plain.len()].copy_from_slice(&plain);
    let n = tx.protect_rtcp(&mut b, plain.len()).unwrap();
    assert_eq!(&b[..n], &expected[..]);
    let mut rx = SrtpContext::from_session_keys(Suite::AeadAes128Gcm, &k, &k, 64);
    let m = rx.unprotect_rtcp(&mut b, n).unwrap();
    assert_eq!(&b[..m], &plain[..]);
}

const ALL_SUITES: [Suite; 7] = [
    Suite::AesCm128HmacSha1_80,
    Suite::AesCm128HmacSha1_32,
    Suite::AesCm256HmacSha1_80,
    Suite::AesCm256HmacSha1_32,
    Suite::AeadAes128Gcm,
    Suite::AeadAes256Gcm,
    Suite::Null,
];

#[test]
fn round_trip_every_suite_rtp_with_csrc_and_extension() {
    for suite in ALL_SUITES {
        let (mut tx, mut rx) = pair(suite);
        for seq in [1u16, 2, 3, 100] {
            let (mut b, _) = rtp(seq, 0xdead_beef, 0);
            // CC = 1, X = 1: header is 12 + 4 (CSRC) + 4 + 8 (extension) = 28 bytes.
            b[0] = 0x80 | 0x10 | 0x01;
            b[12..16].copy_from_slice(&[1, 2, 3, 4]);
            b[16..20].copy_from_slice(&[0xbe, 0xde, 0, 2]);
            b[20..28].copy_from_slice(&[9; 8]);
            b[28..188].copy_from_slice(&[0x55; 160]);
            let plain = b;
            let n = tx.protect_rtp(&mut b, 188).unwrap();
            assert_eq!(n, 188 + suite.rtp_overhead(), "{suite:?}");
            assert_eq!(b[..28], plain[..28], "{suite:?}: header stays clear");
            if suite != Suite::Null {
                assert_ne!(b[28..188], plain[28..188], "{suite:?}: payload encrypted");
            }
            assert_eq!(rx.unprotect_rtp(&mut b, n), Ok(188), "{suite:?}");
            assert_eq!(b[..188], plain[..188], "{suite:?}");
        }
    }
}

#[test]
fn round_trip_every_suite_rtcp_and_index_increments() {
    for suite in ALL_SUITES {
        let (mut tx, mut rx) = pair(suite);
        for expect_index in 0u32..3 {
            let (mut b, len) = rtcp(0x0102_0304);
            let plain = b;
            let n = tx.protect_rtcp(&mut b, len).unwrap();
            assert_eq!(n, len + suite.rtcp_overhead(), "{suite:?}");
            if suite != Suite::Null {
                let at = if matches!(suite, Suite::AeadAes128Gcm | Suite::AeadAes256Gcm) {
                    n - 4
                } else {
                    len
                };
                let word = u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
                assert_eq!(word, 0x8000_0000 | expect_index, "{suite:?}: E=1, index");
                assert_ne!(b[8..len], plain[8..len], "{suite:?}");
            }
            assert_eq!(rx.unprotect_rtcp(&mut b, n), Ok(len), "{suite:?}");
            assert_eq!(b[..len], plain[..len], "{suite:?}");
        }
    }
}

#[test]
fn tampered_tag_header_or_payload_fails_auth_and_changes_nothing() {
    for suite in &ALL_SUITES[..6] {
        let (mut tx, mut rx) = pair(*suite);
        let (mut b, len) = rtp(7, 42, 160);
        let n = tx.protect_rtp(&mut b, len).unwrap();
        for flip in [1usize, 20, n - 1] {
            let mut t = b;
            t[flip] ^= 0x01;
            assert_eq!(
                rx.unprotect_rtp(&mut t, n),
                Err(SrtpError::AuthFailed),
                "{suite:?} byte {flip}"
            );
        }
        // The genuine packet is still accepted: failures left no state behind.
        assert_eq!(rx.unprotect_rtp(&mut b, n), Ok(len), "{suite:?}");

        let (mut c, clen) = rtcp(42);
        let n = tx.protect_rtcp(&mut c, clen).unwrap();
        let mut t = c;
        t[n - 5] ^= 0x80;
        assert_eq!(
            rx.unprotect_rtcp(&mut t, n),
            Err(SrtpError::AuthFailed),
            "{suite:?}"
        );
        assert_eq!(rx.unprotect_rtcp(&mut c, n), Ok(clen), "{suite:?}");
    }
}

#[test]
fn replayed_and_too_old_packets_are_distinct_errors() {
    for suite in &ALL_SUITES[..6] {
        let p = params(*suite, 3, 64);
        let (mut tx, mut rx) = (SrtpContext::new(&p).unwrap(), SrtpContext::new(&p).unwrap());
        let mut sent = Vec::new();
        for seq in 1000u16..1100 {
            let (mut b, len) = rtp(seq, 5, 40);
            let n = tx.protect_rtp(&mut b, len).unwrap();
            sent.push((b, n));
        }
        // Deliver 1000, then 1099, then 1098 (late but inside the window).
        for i in [0usize, 99, 98] {
            let (mut b, n) = sent[i];
            assert!(rx.unprotect_rtp(&mut b, n).is_ok(), "{suite:?} {i}");
        }
        let (mut again, n) = sent[99];
        assert_eq!(
            rx.unprotect_rtp(&mut again, n),
            Err(SrtpError::Replayed),
            "{suite:?}"
        );
        let (mut old, n) = sent[1];
        assert_eq!(
            rx.unprotect_rtp(&mut old, n),
            Err(SrtpError::TooOld),
            "{suite:?}"
        );

        let (mut c, clen) = rtcp(5);
        let n = tx.protect_rtcp(&mut c, clen).unwrap();
        let copy = c;
        assert_eq!(rx.unprotect_rtcp(&mut c, n), Ok(clen));
        let mut c = copy;
        assert_eq!(
            rx.unprotect_rtcp(&mut c, n),
            Err(SrtpError::Replayed),
            "{suite:?}"
        );
    }
}

#[test]
fn roc_follows_the_16_bit_wrap_even_out_of_order() {
    for suite in &ALL_SUITES[..6] {
        let (mut tx, mut rx) = pair(*suite);
        let mut sent = Vec::new();
        for seq in [65_533u16, 65_534, 65_535, 0, 1, 2] {
            let (mut b, len) = rtp(seq, 77, 20);
            let n = tx.protect_rtp(&mut b, len).unwrap();
            sent.push((b, n, len));
        }
        // The tag covers ROC = 1 after the wrap: a receiver that never saw the
        // stream assumes ROC 0 and must refuse seq 0.
        let (mut lone, n, _) = sent[3];
        let (_, mut fresh) = pair(*suite);
        assert_eq!(
            fresh.unprotect_rtp(&mut lone, n),
            Err(SrtpError::AuthFailed),
            "{suite:?}"
        );

        for i in [0usize, 1, 3, 2, 5, 4] {
            let (mut b, n, len) = sent[i];
            assert_eq!(rx.unprotect_rtp(&mut b, n), Ok(len), "{suite:?} packet {i}");
            assert_eq!(
                b[..len],
                rtp(u16::from_be_bytes([b[2], b[3]]), 77, 20).0[..len]
            );
        }
        let slot = rx.streams.find(77).unwrap();
        assert_eq!(
            rx.streams.get(slot).rtp_rx.top(),
            Some((1 << 16) | 2),
            "{suite:?}: ROC 1"
        );
    }
}

#[test]
fn forged_ssrcs_cannot_evict_a_live_stream() {
    let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
    let (mut b, len) = rtp(65_535, 1, 20);
    let n = tx.protect_rtp(&mut b, len).unwrap();
    rx.unprotect_rtp(&mut b, n).unwrap();
    for ssrc in 100..200u32 {
        let (mut f, flen) = rtp(3, ssrc, 30);
        assert_eq!(rx.unprotect_rtp(&mut f, flen), Err(SrtpError::AuthFailed));
    }
    // SSRC 1 still has its state: the post-wrap packet needs ROC 1 to verify.
    let (mut b, len) = rtp(0, 1, 20);
    let n = tx.protect_rtp(&mut b, len).unwrap();
    assert_eq!(rx.unprotect_rtp(&mut b, n), Ok(len));
}

#[test]
fn sender_refuses_to_reuse_an_index() {
    let (mut tx, _) = pair(Suite::AeadAes128Gcm);
    let (mut b, len) = rtp(10, 1, 20);
    tx.protect_rtp(&mut b, len).unwrap();
    let (mut b, len) = rtp(10, 1, 20);
    assert_eq!(tx.protect_rtp(&mut b, len), Err(SrtpError::Replayed));
}

#[test]
fn short_buffers_and_bad_headers_are_refused_without_panic() {
    for suite in ALL_SUITES {
        let (mut tx, mut rx) = pair(suite);
        let (mut b, len) = rtp(1, 1, 20);
        let overhead = suite.rtp_overhead();
        if overhead > 0 {
            assert_eq!(
                tx.protect_rtp(&mut b[..len + overhead - 1], len),
                Err(SrtpError::BufferTooSmall)
            );
        }
        assert_eq!(
            tx.protect_rtp(&mut b[..len], len + 1),
            Err(SrtpError::Malformed)
        );
        let mut v1 = b;
        v1[0] = 0x40;
        assert_eq!(tx.protect_rtp(&mut v1, len), Err(SrtpError::Malformed));
        // Extension header claims more words than the packet has.
        let mut ext = b;
        ext[0] = 0x90;
        ext[12..16].copy_from_slice(&[0xbe, 0xde, 0x10, 0]);
        assert_eq!(tx.protect_rtp(&mut ext, len), Err(SrtpError::Malformed));
        for short in 0..12 {
            assert_eq!(rx.unprotect_rtp(&mut b, short), Err(SrtpError::Malformed));
            assert_eq!(
                rx.unprotect_rtcp(&mut b, short.min(7)),
                Err(SrtpError::Malformed)
            );
        }
        if suite != Suite::Null {
            // Header alone with no room for a tag.
            assert_eq!(
                rx.unprotect_rtp(&mut b, 12 + overhead - 1),
                Err(SrtpError::Malformed)
            );
            assert_eq!(
                rx.unprotect_rtcp(&mut b, 8 + suite.rtcp_overhead() - 1),
                Err(SrtpError::Malformed)
            );
        }
    }
}

#[test]
fn wrong_key_length_for_suite_is_refused() {
    let p = params(Suite::AesCm128HmacSha1_80, 1, 64);
    let wrong = SrtpParams {
        suite: Suite::AeadAes256Gcm,
        ..p
    };
    assert!(SrtpContext::new(&wrong).is_err());
}

#[test]
fn rtcp_index_exhaustion_is_reported() {
    let (mut tx, _) = pair(Suite::AesCm128HmacSha1_80);
    tx.rtcp_tx_next = 0x7fff_ffff;
    let (mut c, clen) = rtcp(9);
    assert!(tx.protect_rtcp(&mut c, clen).is_ok());
    let (mut c, clen) = rtcp(9);
    assert_eq!(
        tx.protect_rtcp(&mut c, clen),
        Err(SrtpError::IndexExhausted)
    );
}

#[test]
fn srtcp_index_is_never_reused_even_after_slot_recycling() {
    let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
    let mut seen = Vec::new();
    // Twenty SSRCs through an eight-slot table, then the first one again.
    for ssrc in (0..20u32).chain([0]) {
        let (mut c, clen) = rtcp(ssrc);
        let n = tx.protect_rtcp(&mut c, clen).unwrap();
        seen.push(u32::from_be_bytes(c[clen..clen + 4].try_into().unwrap()) & 0x7fff_ffff);
        assert_eq!(rx.unprotect_rtcp(&mut c, n), Ok(clen), "ssrc {ssrc}");
    }
    assert_eq!(seen, (0..21).collect::<Vec<u32>>());
}

/// Garbage in never panics: random lengths (also past the buffer), random
/// bytes with the version bits set, random CSRC counts and extension lengths.
#[test]
fn random_garbage_is_refused_without_panic() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for suite in ALL_SUITES {
        let (mut tx, mut rx) = pair(suite);
        for _ in 0..4000 {
            let mut b = [0u8; 96];
            for chunk in b.chunks_mut(8) {
                chunk.copy_from_slice(&next().to_be_bytes());
            }
            b[0] = 0x80 | (b[0] & 0x3f);
            let len = (next() % 110) as usize;
            let ok_rtp = rx.unprotect_rtp(&mut b, len);
            let ok_rtcp = rx.unprotect_rtcp(&mut b, len);
            if suite != Suite::Null {
                assert!(
                    ok_rtp.is_err() && ok_rtcp.is_err(),
                    "{suite:?} accepted garbage"
                );
            }
            let _ = tx.protect_rtp(&mut b, len);
            let _ = tx.protect_rtcp(&mut b, len);
        }
    }
}
