//! SDES negotiation against the recording backend: golden SDP transcripts (keys
//! and ports masked) and the crypto each flow rule ends up with.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use ferrelay_engine::CryptoSpec;
use ferrelay_sdp::{Crypto, Sdp};
use ferrelay_srtp::{MasterKey, SrtpParams, Suite};

use super::backend::fake::FakeBackend;
use super::*;
use crate::config::InterfaceSpec;

/// A port range of its own per test (above the one `tests.rs` walks through).
static NEXT_RANGE: AtomicU16 = AtomicU16::new(52_000);

fn sessions() -> Sessions<FakeBackend> {
    let min = NEXT_RANGE.fetch_add(40, Ordering::Relaxed);
    let cfg = SessionConfig {
        interfaces: vec![InterfaceSpec {
            name: "default".into(),
            local: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertised: "203.0.113.1".parse().unwrap(),
        }],
        port_min: min,
        port_max: min + 39,
        timeout: Duration::from_secs(60),
        silent_timeout: Duration::from_secs(3600),
        final_timeout: None,
        offer_timeout: Duration::from_secs(10),
        delete_delay: Duration::from_secs(30),
    };
    Sessions::new(cfg, FakeBackend::new(1), Instant::now())
}

fn sdp(addr: &str, port: u16, proto: &str, crypto: &[String]) -> String {
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n\
         m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    for c in crypto {
        s += &format!("a=crypto:{c}\r\n");
    }
    s
}

/// An a=crypto value with `fill` repeated as key||salt.
fn line(tag: u32, suite: Suite, fill: u8) -> String {
    let n = suite.key_len() + suite.salt_len();
    Crypto::new_inline(tag, suite.sdes_name(), vec![fill; n]).to_string()
}

fn key(suite: Suite, fill: u8) -> MasterKey {
    MasterKey::from_concatenated(suite, &vec![fill; suite.key_len() + suite.salt_len()]).unwrap()
}

fn req(cmd: &[(&str, &str)], flags: &[&str], sdes: &[&str]) -> Value {
    let mut d: Vec<(Vec<u8>, Value)> = cmd
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), Value::str(v)))
        .collect();
    let list = |l: &[&str]| Value::List(l.iter().map(|s| Value::str(s)).collect());
    d.push((b"flags".to_vec(), list(flags)));
    d.push((b"SDES".to_vec(), list(sdes)));
    Value::Dict(d)
}

fn offer(s: &mut Sessions<FakeBackend>, sdp: &str, proto: &str, flags: &[&str]) -> Sdp {
    offer_sdes(s, sdp, proto, flags, &[]).unwrap()
}

fn offer_sdes(
    s: &mut Sessions<FakeBackend>,
    sdp: &str,
    proto: &str,
    flags: &[&str],
    sdes: &[&str],
) -> Result<Sdp, String> {
    let mut cmd = vec![("call-id", "c"), ("from-tag", "A"), ("sdp", sdp)];
    if !proto.is_empty() {
        cmd.push(("transport-protocol", proto));
    }
    let r = s.offer(&req(&cmd, flags, sdes), Instant::now())?;
    Ok(Sdp::parse_bytes(r.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap())
}

fn answer(s: &mut Sessions<FakeBackend>, sdp: &str) -> Result<Sdp, String> {
    answer_from(s, "B", sdp)
}

/// The answer of the party (or fork) tagged `tag`.
fn answer_from(s: &mut Sessions<FakeBackend>, tag: &str, sdp: &str) -> Result<Sdp, String> {
    let cmd = [
        ("call-id", "c"),
        ("from-tag", "A"),
        ("to-tag", tag),
        ("sdp", sdp),
    ];
    let r = s.answer(&req(&cmd, &[], &[]), Instant::now())?;
    Ok(Sdp::parse_bytes(r.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap())
}

/// The SDP text with the port of the m= line and every inline key masked.
fn masked(sdp: &Sdp) -> String {
    let port = sdp.media()[0].port();
    let text = String::from_utf8(sdp.to_bytes()).unwrap();
    text.split("\r\n")
        .map(|l| {
            let l = l
                .replace(&port.to_string(), "PORT")
                .replace(&(port + 1).to_string(), "PORT+1");
            match l.split_once("inline:") {
                Some((head, _)) => format!("{head}inline:KEY"),
                None => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `(tag, suite, key)` of each a=crypto line of the first m= line.
fn keys(sdp: &Sdp) -> Vec<(u32, Suite, MasterKey)> {
    sdp.media()[0]
        .crypto()
        .map(|c| {
            let suite = Suite::from_sdes_name(&c.suite).unwrap();
            let k = MasterKey::from_concatenated(suite, &c.inline_key().unwrap().key_salt);
            (c.tag, suite, k.unwrap())
        })
        .collect()
}

fn crypto_on(s: &Sessions<FakeBackend>, port: u16) -> (CryptoSpec, bool) {
    let (_, r) = s.backend().rule_on(port).unwrap();
    (r.crypto.clone(), r.rtp_out.is_some())
}

fn params(suite: Suite, key: MasterKey) -> SrtpParams {
    SrtpParams {
        suite,
        key,
        replay_window: 128,
    }
}

const HEAD: &str = "v=0\no=- 1 1 IN IP4 192.0.2.10\ns=-\nc=IN IP4 203.0.113.1\nt=0 0";

#[test]
fn plain_offerer_to_srtp_answerer() {
    let mut s = sessions();
    let out = offer(
        &mut s,
        &sdp("192.0.2.10", 5000, "RTP/AVP", &[]),
        "RTP/SAVP",
        &[],
    );
    assert_eq!(
        masked(&out),
        format!(
            "{HEAD}\nm=audio PORT RTP/SAVP 0\na=rtpmap:0 PCMU/8000\n\
             a=sendrecv\na=rtcp:PORT+1\n\
             a=crypto:1 AEAD_AES_256_GCM inline:KEY\na=crypto:2 AEAD_AES_128_GCM inline:KEY\n\
             a=crypto:3 AES_256_CM_HMAC_SHA1_80 inline:KEY\n\
             a=crypto:4 AES_256_CM_HMAC_SHA1_32 inline:KEY\n\
             a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:KEY\n\
             a=crypto:6 AES_CM_128_HMAC_SHA1_32 inline:KEY\n"
        )
    );
    let offered = keys(&out);
    assert_eq!(offered.len(), 6);
    for (i, (_, _, a)) in offered.iter().enumerate() {
        for (_, _, b) in &offered[i + 1..] {
            assert_ne!(a.key()[..16], b.key()[..16], "fresh key per suite");
        }
    }
    let to_b = out.media()[0].port();
    // Nothing flows before the answer names the suite.
    assert!(!crypto_on(&s, to_b).1);

    let b = line(5, Suite::AesCm128HmacSha1_80, 0xB0);
    let back = answer(&mut s, &sdp("198.51.100.20", 6000, "RTP/SAVP", &[b])).unwrap();
    assert_eq!(
        masked(&back).replace("198.51.100.20", "192.0.2.10"),
        format!(
            "{HEAD}\nm=audio PORT RTP/AVP 0\na=rtpmap:0 PCMU/8000\na=sendrecv\na=rtcp:PORT+1\n"
        )
    );
    let to_a = back.media()[0].port();
    let suite = Suite::AesCm128HmacSha1_80;
    // B's packets: decrypted with B's key, forwarded plain.
    let (c, fwd) = crypto_on(&s, to_b);
    assert!(fwd);
    assert_eq!(c.decrypt, Some(params(suite, key(suite, 0xB0))));
    assert_eq!(c.encrypt, None);
    assert_eq!(
        s.backend().rule_on(to_b + 1).unwrap().1.crypto,
        c,
        "SRTCP too"
    );
    // A's packets: encrypted with the relay key B got under tag 5.
    let (c, fwd) = crypto_on(&s, to_a);
    assert!(fwd);
    assert_eq!(c.decrypt, None);
    assert_eq!(c.encrypt, Some(params(suite, offered[4].2.clone())));
}

#[test]
fn srtp_offerer_to_plain_answerer_gets_its_first_enabled_suite() {
    let mut s = sessions();
    let a = [
        line(1, Suite::AesCm128HmacSha1_32, 0xA1),
        line(2, Suite::AesCm128HmacSha1_80, 0xA2),
        line(3, Suite::AeadAes128Gcm, 0xA3),
    ];
    let out = offer(
        &mut s,
        &sdp("192.0.2.10", 5000, "RTP/SAVP", &a),
        "RTP/AVP",
        &["SDES-no-AES_CM_128_HMAC_SHA1_32"],
    );
    assert_eq!(
        masked(&out),
        format!(
            "{HEAD}\nm=audio PORT RTP/AVP 0\na=rtpmap:0 PCMU/8000\na=sendrecv\na=rtcp:PORT+1\n"
        )
    );
    let back = answer(&mut s, &sdp("192.0.2.10", 6000, "RTP/AVP", &[])).unwrap();
    assert_eq!(
        masked(&back),
        format!(
            "{HEAD}\nm=audio PORT RTP/SAVP 0\na=rtpmap:0 PCMU/8000\n\
             a=sendrecv\na=rtcp:PORT+1\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:KEY\n"
        )
    );
    let suite = Suite::AesCm128HmacSha1_80;
    let relay = keys(&back).remove(0).2;
    assert_ne!(
        relay,
        key(suite, 0xA2),
        "the relay's own key, not A's echoed"
    );
    let (c, _) = crypto_on(&s, back.media()[0].port());
    assert_eq!(c.decrypt, Some(params(suite, key(suite, 0xA2))));
    assert_eq!(c.encrypt, None);
    let (c, _) = crypto_on(&s, out.media()[0].port());
    assert_eq!(c.decrypt, None);
    assert_eq!(c.encrypt, Some(params(suite, relay)));
}

#[test]
fn srtp_both_sides_is_rekeyed_per_side() {
    let mut s = sessions();
    let a = [line(7, Suite::AeadAes256Gcm, 0xA7)];
    let out = offer_sdes(
        &mut s,
        &sdp("192.0.2.10", 5000, "RTP/SAVPF", &a),
        "",
        &[],
        &["only-AES_CM_128_HMAC_SHA1_80", "only-AEAD_AES_256_GCM"],
    )
    .unwrap();
    assert_eq!(
        masked(&out),
        format!(
            "{HEAD}\nm=audio PORT RTP/SAVPF 0\na=rtpmap:0 PCMU/8000\n\
             a=crypto:1 AEAD_AES_256_GCM inline:KEY\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:KEY\n\
             a=sendrecv\na=rtcp:PORT+1\n"
        )
    );
    // B takes the other suite: each leg runs its own.
    let b = line(2, Suite::AesCm128HmacSha1_80, 0xB1);
    let back = answer(&mut s, &sdp("192.0.2.10", 6000, "RTP/SAVPF", &[b])).unwrap();
    let to_a_keys = keys(&back);
    assert_eq!(to_a_keys.len(), 1);
    assert_eq!((to_a_keys[0].0, to_a_keys[0].1), (7, Suite::AeadAes256Gcm));
    assert_ne!(to_a_keys[0].2, key(Suite::AeadAes256Gcm, 0xA7));
    let (to_a, to_b) = (back.media()[0].port(), out.media()[0].port());
    let (c, _) = crypto_on(&s, to_a);
    assert_eq!(
        c.decrypt,
        Some(params(
            Suite::AeadAes256Gcm,
            key(Suite::AeadAes256Gcm, 0xA7)
        ))
    );
    let cm = Suite::AesCm128HmacSha1_80;
    assert_eq!(c.encrypt, Some(params(cm, keys(&out)[1].2.clone())));
    let (c, _) = crypto_on(&s, to_b);
    assert_eq!(c.decrypt, Some(params(cm, key(cm, 0xB1))));
    assert_eq!(
        c.encrypt,
        Some(params(Suite::AeadAes256Gcm, to_a_keys[0].2.clone()))
    );
}

#[test]
fn reoffer_with_same_crypto_keeps_the_relay_keys() {
    let mut s = sessions();
    let a = [line(1, Suite::AesCm128HmacSha1_80, 0xA1)];
    let offer_sdp = sdp("192.0.2.10", 5000, "RTP/SAVP", &a);
    let first = offer(&mut s, &offer_sdp, "", &[]);
    let b = line(5, Suite::AesCm128HmacSha1_80, 0xB5);
    let answer_sdp = sdp("192.0.2.10", 6000, "RTP/SAVP", &[b]);
    let first_back = answer(&mut s, &answer_sdp).unwrap();
    let rules = |s: &Sessions<FakeBackend>| {
        let mut v: Vec<_> = s
            .backend()
            .flows
            .values()
            .map(|(_, r)| r.crypto.clone())
            .collect();
        v.sort_by_key(|c| format!("{c:?}"));
        v
    };
    let before = rules(&s);
    // A refused re-offer (MKI) changes nothing.
    let mki = line(1, Suite::AesCm128HmacSha1_80, 0xA1) + "|1:4";
    let e = offer_sdes(
        &mut s,
        &sdp("192.0.2.10", 5000, "RTP/SAVP", &[mki]),
        "",
        &[],
        &[],
    );
    assert!(e.unwrap_err().contains("MKI"));
    assert_eq!(rules(&s), before);
    let again = offer(&mut s, &offer_sdp, "", &[]);
    assert_eq!(keys(&again), keys(&first));
    assert_eq!(rules(&s), before, "media keeps flowing with the same keys");
    let again_back = answer(&mut s, &answer_sdp).unwrap();
    assert_eq!(keys(&again_back), keys(&first_back));
    assert_eq!(rules(&s), before);
}

#[test]
fn keys_padded_or_not_lifetime_accepted_mki_refused() {
    let mut s = sessions();
    // 28 bytes of AEAD_AES_128_GCM key||salt: base64 ends in "==" when padded.
    let unpadded = line(1, Suite::AeadAes128Gcm, 0xA1).replace('=', "") + "|2^31";
    let out = offer(
        &mut s,
        &sdp("192.0.2.10", 5000, "RTP/SAVP", &[unpadded]),
        "RTP/AVP",
        &[],
    );
    let back = answer(&mut s, &sdp("192.0.2.10", 6000, "RTP/AVP", &[])).unwrap();
    let text = String::from_utf8(back.to_bytes()).unwrap();
    assert!(
        text.contains("a=crypto:1 AEAD_AES_128_GCM inline:"),
        "{text}"
    );
    assert!(text.contains("==\r\n"), "written padded: {text}");
    let (c, _) = crypto_on(&s, back.media()[0].port());
    let suite = Suite::AeadAes128Gcm;
    assert_eq!(c.decrypt, Some(params(suite, key(suite, 0xA1))));
    drop(out);

    let mut s = sessions();
    let mki = line(1, Suite::AesCm128HmacSha1_80, 0xA1) + "|2^20|1:4";
    let e = offer_sdes(
        &mut s,
        &sdp("192.0.2.10", 5000, "RTP/SAVP", &[mki]),
        "",
        &[],
        &[],
    )
    .unwrap_err();
    assert!(e.contains("MKI") && e.contains("a=crypto:1"), "{e}");
    assert_eq!(s.call_count(), 0);
    let e = offer_sdes(
        &mut s,
        &sdp(
            "192.0.2.10",
            5000,
            "RTP/SAVP",
            &[line(1, Suite::AesCm128HmacSha1_80, 1)],
        ),
        "",
        &["SDES-only-AEAD_AES_256_GCM"],
        &[],
    )
    .unwrap_err();
    assert!(e.contains("disabled by SDES flags"), "{e}");
}

#[test]
fn sdes_off_passes_srtp_through_and_refuses_translation() {
    let mut s = sessions();
    let a = line(1, Suite::AesCm128HmacSha1_80, 0xA1);
    let out = offer(
        &mut s,
        &sdp("192.0.2.10", 5000, "RTP/SAVP", std::slice::from_ref(&a)),
        "",
        &["SDES-off"],
    );
    assert_eq!(out.media()[0].crypto().next().unwrap().to_string(), a);
    let b = line(1, Suite::AesCm128HmacSha1_80, 0xB1);
    let back = answer(
        &mut s,
        &sdp("192.0.2.10", 6000, "RTP/SAVP", std::slice::from_ref(&b)),
    )
    .unwrap();
    assert_eq!(back.media()[0].crypto().next().unwrap().to_string(), b);
    for (_, (_, r)) in s.backend().flows.iter() {
        assert_eq!(r.crypto, CryptoSpec::default());
    }
    let mut s = sessions();
    let e = offer_sdes(
        &mut s,
        &sdp("192.0.2.10", 5000, "RTP/AVP", &[]),
        "RTP/SAVP",
        &[],
        &["off"],
    )
    .unwrap_err();
    assert!(e.contains("SDES is off"), "{e}");
}

#[test]
fn answers_that_do_not_fit_the_offer_are_refused() {
    let mut s = sessions();
    offer(
        &mut s,
        &sdp("192.0.2.10", 5000, "RTP/AVP", &[]),
        "RTP/SAVP",
        &[],
    );
    let e = answer(
        &mut s,
        &sdp(
            "192.0.2.10",
            6000,
            "RTP/SAVP",
            &[line(9, Suite::AesCm128HmacSha1_80, 1)],
        ),
    )
    .unwrap_err();
    assert!(e.contains("tag 9 was not offered"), "{e}");
    let e = answer(
        &mut s,
        &sdp(
            "192.0.2.10",
            6000,
            "RTP/SAVP",
            &[line(1, Suite::AesCm128HmacSha1_80, 1)],
        ),
    )
    .unwrap_err();
    assert!(e.contains("AEAD_AES_256_GCM was offered"), "{e}");
    let e = answer(&mut s, &sdp("192.0.2.10", 6000, "RTP/AVP", &[])).unwrap_err();
    assert!(e.contains("SRTP (SDES) was offered"), "{e}");
    let mki = line(5, Suite::AesCm128HmacSha1_80, 1) + "|1:4";
    let e = answer(&mut s, &sdp("192.0.2.10", 6000, "RTP/SAVP", &[mki])).unwrap_err();
    assert!(e.contains("MKI"), "{e}");
}

#[test]
fn keys_stay_out_of_debug_output() {
    let mut s = sessions();
    let out = offer(
        &mut s,
        &sdp("192.0.2.10", 5000, "RTP/AVP", &[]),
        "RTP/SAVP",
        &[],
    );
    let b = line(5, Suite::AesCm128HmacSha1_80, 0xB0);
    answer(&mut s, &sdp("192.0.2.10", 6000, "RTP/SAVP", &[b])).unwrap();
    let shown = format!("{s:?}");
    assert!(shown.contains("redacted"));
    for (_, _, k) in keys(&out) {
        let hex: String = k.key()[..4].iter().map(|b| format!("{b}, ")).collect();
        assert!(!shown.contains(&hex), "key bytes in {shown}");
    }
    assert!(!shown.contains("176, 176"), "B's key bytes in Debug");
}

#[test]
fn reoffer_from_the_answerer_keeps_each_legs_relay_key() {
    let mut s = sessions();
    let out = offer(
        &mut s,
        &sdp("192.0.2.10", 5000, "RTP/AVP", &[]),
        "RTP/SAVP",
        &["SDES-only-AES_CM_128_HMAC_SHA1_80"],
    );
    let relay_to_b = keys(&out).remove(0);
    let b = line(1, Suite::AesCm128HmacSha1_80, 0xB1);
    answer(
        &mut s,
        &sdp("192.0.2.20", 6000, "RTP/SAVP", std::slice::from_ref(&b)),
    )
    .unwrap();

    // B re-INVITEs with the same key; A stays plain.
    let cmd = [
        ("call-id", "c"),
        ("from-tag", "B"),
        ("to-tag", "A"),
        ("transport-protocol", "RTP/AVP"),
    ];
    let b_sdp = sdp("192.0.2.20", 6000, "RTP/SAVP", &[b]);
    let mut cmd = cmd.to_vec();
    cmd.push(("sdp", &b_sdp));
    let r = s.offer(&req(&cmd, &[], &[]), Instant::now()).unwrap();
    let to_a = Sdp::parse_bytes(r.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
    assert_eq!(to_a.media()[0].proto().as_str(), "RTP/AVP");
    assert_eq!(to_a.media()[0].crypto().count(), 0);
    let a_sdp = sdp("192.0.2.10", 5000, "RTP/AVP", &[]);
    let cmd = [
        ("call-id", "c"),
        ("from-tag", "B"),
        ("to-tag", "A"),
        ("sdp", a_sdp.as_str()),
    ];
    let r = s.answer(&req(&cmd, &[], &[]), Instant::now()).unwrap();
    let to_b = Sdp::parse_bytes(r.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
    assert_eq!(to_b.media()[0].proto().as_str(), "RTP/SAVP");
    assert_eq!(
        keys(&to_b),
        vec![relay_to_b],
        "B keeps the relay key it had"
    );
}

/// Two forks answer with their own keys; when the one holding the media is
/// deleted, the other's key is in force at once (not the deleted fork's).
#[test]
fn the_fork_that_takes_over_decrypts_with_its_own_key() {
    let mut s = sessions();
    let out = offer(
        &mut s,
        &sdp("192.0.2.10", 5000, "RTP/AVP", &[]),
        "RTP/SAVP",
        &[],
    );
    let to_b = out.media()[0].port();
    let answer_as = |s: &mut Sessions<FakeBackend>, tag: &str, fill: u8, port: u16| {
        let b = line(5, Suite::AesCm128HmacSha1_80, fill);
        answer_from(s, tag, &sdp("198.51.100.20", port, "RTP/SAVP", &[b])).unwrap();
    };
    let suite = Suite::AesCm128HmacSha1_80;
    answer_as(&mut s, "B1", 0xB1, 6000);
    answer_as(&mut s, "B2", 0xB2, 7000);
    let (c, _) = crypto_on(&s, to_b);
    assert_eq!(c.decrypt, Some(params(suite, key(suite, 0xB2))));
    let cmd = [("call-id", "c"), ("from-tag", "B2"), ("to-tag", "A")];
    let t0 = Instant::now();
    s.delete(&req(&cmd, &[], &[]), t0).unwrap();
    s.tick(t0 + Duration::from_secs(30)); // delete-delay
    let (c, fwd) = crypto_on(&s, to_b);
    assert!(fwd);
    assert_eq!(c.decrypt, Some(params(suite, key(suite, 0xB1))));
    let rule = &s.backend().rule_on(to_b).unwrap().1;
    assert_eq!(rule.remote.map(|a| a.port()), Some(6000));
}
