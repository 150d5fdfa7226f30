//! RustCrypto vs aws-lc-rs for the two SRTP hot-path shapes: AES-128-CTR over a
//! 160-byte payload plus HMAC-SHA1 over 172 + 4 bytes, and AES-128-GCM over 160
//! bytes with a 12-byte AAD. Keys are expanded once; the loop pays per packet.

use std::hint::black_box;
use std::time::Instant;

const N: u32 = 300_000;

fn best(mut f: impl FnMut(u32)) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..7 {
        let t = Instant::now();
        for i in 0..N {
            f(i);
        }
        best = best.min(t.elapsed().as_nanos() as f64 / N as f64);
    }
    best
}

fn main() {
    let key16 = [7u8; 16];
    let auth = [9u8; 20];
    let mut pkt = [0x55u8; 172 + 16];

    // RustCrypto AES-128-CTR + HMAC-SHA1-80
    {
        use aes::cipher::KeyInit;
        use ctr::cipher::{InnerIvInit, StreamCipher, StreamCipherCoreWrapper};
        use hmac::Mac;
        let aes = aes::Aes128::new_from_slice(&key16).unwrap();
        let mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&auth).unwrap();
        let ns = best(|i| {
            let mut iv = [0u8; 16];
            iv[8..12].copy_from_slice(&i.to_be_bytes());
            let core = ctr::CtrCore::<&aes::Aes128, ctr::flavors::Ctr128BE>::inner_iv_init(
                &aes,
                &iv.into(),
            );
            StreamCipherCoreWrapper::from_core(core).apply_keystream(&mut pkt[12..172]);
            let mut m = mac.clone();
            m.update(&pkt[..172]);
            m.update(&[0, 0, 0, 0]);
            let t = m.finalize().into_bytes();
            pkt[172..182].copy_from_slice(&t[..10]);
            black_box(&pkt);
        });
        println!("rustcrypto aes128-ctr(160)+hmac-sha1(176): {ns:.1} ns");
    }
    // aws-lc-rs AES-128-CTR + HMAC-SHA1-80
    {
        use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128};
        use aws_lc_rs::hmac;
        let k = EncryptingKey::ctr(UnboundCipherKey::new(&AES_128, &key16).unwrap()).unwrap();
        let hk = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &auth);
        let ns = best(|i| {
            let mut iv = [0u8; 16];
            iv[8..12].copy_from_slice(&i.to_be_bytes());
            k.less_safe_encrypt(&mut pkt[12..172], EncryptionContext::Iv128(iv.into()))
                .unwrap();
            let mut c = hmac::Context::with_key(&hk);
            c.update(&pkt[..172]);
            c.update(&[0, 0, 0, 0]);
            let t = c.sign();
            pkt[172..182].copy_from_slice(&t.as_ref()[..10]);
            black_box(&pkt);
        });
        println!("aws-lc-rs  aes128-ctr(160)+hmac-sha1(176): {ns:.1} ns");
    }
    // RustCrypto AES-128-GCM
    {
        use aes_gcm::aead::AeadInOut;
        use aes_gcm::KeyInit;
        let g = aes_gcm::Aes128Gcm::new_from_slice(&key16).unwrap();
        let ns = best(|i| {
            let mut n = [0u8; 12];
            n[8..12].copy_from_slice(&i.to_be_bytes());
            let (h, p) = pkt.split_at_mut(12);
            let t = g
                .encrypt_inout_detached(&n.into(), h, (&mut p[..160]).into())
                .unwrap();
            pkt[172..188].copy_from_slice(&t);
            black_box(&pkt);
        });
        println!("rustcrypto aes128-gcm(160, aad 12): {ns:.1} ns");
    }
    // aws-lc-rs AES-128-GCM
    {
        use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
        let k = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key16).unwrap());
        let ns = best(|i| {
            let mut n = [0u8; 12];
            n[8..12].copy_from_slice(&i.to_be_bytes());
            let (h, p) = pkt.split_at_mut(12);
            let t = k
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(n),
                    Aad::from(&h[..]),
                    &mut p[..160],
                )
                .unwrap();
            pkt[172..188].copy_from_slice(t.as_ref());
            black_box(&pkt);
        });
        println!("aws-lc-rs  aes128-gcm(160, aad 12): {ns:.1} ns");
    }
}
