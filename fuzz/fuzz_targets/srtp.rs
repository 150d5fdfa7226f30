#![no_main]
//! SRTP/SRTCP parsing of hostile packets: unprotect must never panic or accept
//! forged bytes; whatever protect accepts must round-trip through a fresh context.
use ferrelay_engine::srtp::{MasterKey, SrtpContext, SrtpParams, Suite};
use libfuzzer_sys::fuzz_target;

const SUITES: [Suite; 7] = [
    Suite::AesCm128HmacSha1_80,
    Suite::AesCm128HmacSha1_32,
    Suite::AesCm256HmacSha1_80,
    Suite::AesCm256HmacSha1_32,
    Suite::AeadAes128Gcm,
    Suite::AeadAes256Gcm,
    Suite::Null,
];

fn context(suite: Suite) -> SrtpContext {
    let material = [0x5a; 46];
    let key = MasterKey::from_concatenated(suite, &material[..suite.key_len() + suite.salt_len()])
        .expect("lengths come from the suite");
    SrtpContext::new(&SrtpParams {
        suite,
        key,
        replay_window: 64,
    })
    .expect("valid key")
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, packet)) = data.split_first() else {
        return;
    };
    if packet.len() > 1400 {
        return;
    }
    let suite = SUITES[usize::from(selector) % SUITES.len()];
    let rtcp = selector & 0x80 != 0;
    let mut buf = [0u8; 1500];
    buf[..packet.len()].copy_from_slice(packet);

    // Hostile input to the receive side: refused or decrypted, never a panic, and
    // a keyed suite never authenticates bytes nobody protected.
    let mut rx = context(suite);
    let got = if rtcp {
        rx.unprotect_rtcp(&mut buf, packet.len())
    } else {
        rx.unprotect_rtp(&mut buf, packet.len())
    };
    if suite != Suite::Null {
        assert!(got.is_err(), "forged {suite:?} packet authenticated");
    }

    // Whatever the send side accepts must come back byte for byte.
    buf[..packet.len()].copy_from_slice(packet);
    let mut tx = context(suite);
    let sealed = if rtcp {
        tx.protect_rtcp(&mut buf, packet.len())
    } else {
        tx.protect_rtp(&mut buf, packet.len())
    };
    if let Ok(len) = sealed {
        let mut rx = context(suite);
        let opened = if rtcp {
            rx.unprotect_rtcp(&mut buf, len)
        } else {
            rx.unprotect_rtp(&mut buf, len)
        };
        assert_eq!(opened, Ok(packet.len()), "{suite:?} round trip");
        assert_eq!(&buf[..packet.len()], packet, "{suite:?} round trip bytes");
    }
});
