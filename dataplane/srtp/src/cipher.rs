//! Crypto backends behind one enum, keyed once per session key.
//!
//! Primitives come from the RustCrypto crates (`aes` + `ctr`, `hmac` + `sha1`,
//! `aes-gcm`), which pick AES-NI, PCLMULQDQ and SHA-NI at run time. Everything
//! expensive (AES key schedule, HMAC inner/outer pads, GHASH key) happens in
//! the constructors; a packet pays for the cipher and the hash only.
//!
//! Counter mode and GCM only ever run AES forward, so the encrypt-only key
//! schedules are kept (176/240 bytes instead of 352/480 with the decryption
//! round keys): a context's per-packet cache lines are what the relay pays for
//! when a thousand flows take turns (`dataplane/engine/benches/srtp_footprint.rs`).

use aes::{Aes128Enc, Aes256Enc};
use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::consts::U12;
use aes_gcm::{AesGcm, KeyInit};
use ctr::CtrCore;
use ctr::cipher::{InnerIvInit, StreamCipher, StreamCipherCoreWrapper};
use ctr::flavors::Ctr128BE;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::fmt;

/// AES in counter mode (RFC 3711 §4.1.1) with an expanded key schedule.
#[derive(Clone)]
pub(crate) enum AesCm {
    A128(Aes128Enc),
    A256(Aes256Enc),
}

impl AesCm {
    /// Expands a 16- or 32-byte key; callers pass lengths checked by `Suite`.
    pub(crate) fn new(key: &[u8]) -> AesCm {
        if key.len() == 32 {
            AesCm::A256(Aes256Enc::new_from_slice(key).expect("32-byte key"))
        } else {
            AesCm::A128(Aes128Enc::new_from_slice(key).expect("16-byte key"))
        }
    }

    /// XORs the keystream starting at counter block `iv` into `data`.
    pub(crate) fn apply(&self, iv: &[u8; 16], data: &mut [u8]) {
        match self {
            AesCm::A128(k) => {
                let core = CtrCore::<&Aes128Enc, Ctr128BE>::inner_iv_init(k, &(*iv).into());
                StreamCipherCoreWrapper::from_core(core).apply_keystream(data)
            }
            AesCm::A256(k) => {
                let core = CtrCore::<&Aes256Enc, Ctr128BE>::inner_iv_init(k, &(*iv).into());
                StreamCipherCoreWrapper::from_core(core).apply_keystream(data)
            }
        }
    }
}

impl fmt::Debug for AesCm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AesCm::A128(_) => "AesCm128",
            AesCm::A256(_) => "AesCm256",
        })
    }
}

/// HMAC-SHA1 whose keyed inner/outer state is computed once (RFC 3711 §4.2.1).
#[derive(Clone)]
pub(crate) struct HmacSha1 {
    keyed: Hmac<Sha1>,
}

impl HmacSha1 {
    pub(crate) fn new(key: &[u8]) -> HmacSha1 {
        HmacSha1 {
            keyed: Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length"),
        }
    }

    /// A fresh copy of the keyed state; taken before AES runs so its cold lines load early.
    #[inline]
    pub(crate) fn start(&self) -> Hmac<Sha1> {
        self.keyed.clone()
    }

    /// Full 20-byte tag over `msg || trailer`, from a state `start` returned.
    pub(crate) fn tag(mut m: Hmac<Sha1>, msg: &[u8], trailer: &[u8]) -> [u8; 20] {
        m.update(msg);
        m.update(trailer);
        m.finalize().into_bytes().into()
    }

    /// Constant-time check of a truncated tag over `msg || trailer`, from a state `start` returned.
    pub(crate) fn verify(mut m: Hmac<Sha1>, msg: &[u8], trailer: &[u8], tag: &[u8]) -> bool {
        m.update(msg);
        m.update(trailer);
        m.verify_truncated_left(tag).is_ok()
    }
}

impl fmt::Debug for HmacSha1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacSha1(redacted)")
    }
}

/// AES-GCM with a 12-byte nonce and 16-byte tag (RFC 7714 §5).
#[derive(Clone)]
pub(crate) enum Gcm {
    A128(AesGcm<Aes128Enc, U12>),
    A256(AesGcm<Aes256Enc, U12>),
}

/// Length of the AEAD authentication tag (RFC 7714 §5).
pub(crate) const GCM_TAG: usize = 16;

impl Gcm {
    pub(crate) fn new(key: &[u8]) -> Gcm {
        if key.len() == 32 {
            Gcm::A256(AesGcm::new_from_slice(key).expect("32-byte key"))
        } else {
            Gcm::A128(AesGcm::new_from_slice(key).expect("16-byte key"))
        }
    }

    /// Encrypts `data` in place and returns the tag.
    pub(crate) fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; GCM_TAG] {
        let n = (*nonce).into();
        let tag = match self {
            Gcm::A128(c) => c.encrypt_inout_detached(&n, aad, data.into()),
            Gcm::A256(c) => c.encrypt_inout_detached(&n, aad, data.into()),
        };
        // aes-gcm only refuses messages beyond 2^36 bytes; a datagram never is.
        tag.expect("datagram within GCM length bounds").into()
    }

    /// Verifies `tag` and only then decrypts `data` in place; false leaves `data` as it was.
    pub(crate) fn open(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8]) -> bool {
        let n = (*nonce).into();
        let Ok(t) = <[u8; GCM_TAG]>::try_from(tag) else {
            return false;
        };
        let t = t.into();
        match self {
            Gcm::A128(c) => c.decrypt_inout_detached(&n, aad, data.into(), &t).is_ok(),
            Gcm::A256(c) => c.decrypt_inout_detached(&n, aad, data.into(), &t).is_ok(),
        }
    }
}

impl fmt::Debug for Gcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Gcm::A128(_) => "AesGcm128",
            Gcm::A256(_) => "AesGcm256",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 2202 §3 test case 2: HMAC-SHA1 with key "Jefe", so the precomputed
    // state is checked against a published digest, split across both parts.
    #[test]
    fn hmac_sha1_rfc2202_case2() {
        let h = HmacSha1::new(b"Jefe");
        let tag = HmacSha1::tag(h.start(), b"what do ya want ", b"for nothing?");
        assert_eq!(
            tag.to_vec(),
            unhex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        );
        assert!(HmacSha1::verify(
            h.start(),
            b"what do ya want for nothing?",
            b"",
            &tag[..10]
        ));
        assert!(!HmacSha1::verify(
            h.start(),
            b"what do ya want for nothing!",
            b"",
            &tag[..10]
        ));
    }

    #[test]
    fn gcm_open_refuses_a_flipped_bit_and_leaves_data() {
        let g = Gcm::new(&[7u8; 16]);
        let mut data = *b"sixteen byte msg";
        let tag = g.seal(&[1; 12], b"hdr", &mut data);
        let sealed = data;
        data[3] ^= 1;
        assert!(!g.open(&[1; 12], b"hdr", &mut data, &tag));
        data[3] ^= 1;
        assert_eq!(data, sealed);
        assert!(g.open(&[1; 12], b"hdr", &mut data, &tag));
        assert_eq!(&data, b"sixteen byte msg");
    }
}
