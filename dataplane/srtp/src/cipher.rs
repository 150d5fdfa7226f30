//! Crypto backends behind one enum, keyed once per session key.
//!
//! Primitives come from the RustCrypto crates (`aes` + `ctr`, `sha1`'s
//! compression function under HMAC in `mac.rs`, `aes-gcm`), which pick AES-NI,
//! PCLMULQDQ and SHA-NI at run time. Everything expensive (AES key schedule,
//! HMAC inner/outer pads, GHASH key) happens in the constructors; a packet pays
//! for the cipher and the hash only.
//!
//! AES-CM + HMAC-SHA1 runs stitched ([`AesCm::seal`], [`AesCm::open`]): SHA-1
//! is one long dependency chain (4 compressions for a 172-byte packet) that
//! leaves the AES units idle, so the payload's keystream is applied in pieces
//! between the SHA-1 blocks and the out-of-order core overlaps them.
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
use std::fmt;

use crate::mac::{HmacSha1, SHA1_LEN, tag_matches};

/// SHA-1's block: the MAC consumes the packet in these steps.
const PIECE: usize = 64;
/// Payload bytes encrypted at a time when sealing: 8 AES blocks, the width the
/// `aes` backend pipelines (64-byte pieces took 3-10 ns more per packet).
const AES_PIECE: usize = 128;

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
            AesCm::A128(k) => ctr128(k, iv).apply_keystream(data),
            AesCm::A256(k) => ctr256(k, iv).apply_keystream(data),
        }
    }

    /// Encrypts `pkt[hdr..]` and returns the HMAC of `pkt || trailer` (RFC 3711 §3.3 steps 4-6).
    ///
    /// `hdr <= pkt.len()`. Each 64-byte SHA-1 block is hashed as soon as the
    /// payload it covers is encrypted (128 bytes at a time), and the next
    /// piece's AES runs under the SHA-1 latency of the blocks before it.
    pub(crate) fn seal<const N: usize>(
        &self,
        mac: &HmacSha1,
        iv: &[u8; 16],
        pkt: &mut [u8],
        hdr: usize,
        trailer: &[u8; N],
    ) -> [u8; SHA1_LEN] {
        match self {
            AesCm::A128(k) => seal(ctr128(k, iv), mac, pkt, hdr, trailer),
            AesCm::A256(k) => seal(ctr256(k, iv), mac, pkt, hdr, trailer),
        }
    }

    /// Verifies `tag` over `pkt || trailer`, then decrypts `pkt[hdr..]`
    /// (RFC 3711 §3.3 steps 5-6); false leaves `pkt` as it was.
    ///
    /// `hdr <= pkt.len()`. The payload is decrypted while SHA-1 hashes the last
    /// blocks (copied out first), and encrypted back if the tag is wrong.
    pub(crate) fn open<const N: usize>(
        &self,
        mac: &HmacSha1,
        iv: &[u8; 16],
        pkt: &mut [u8],
        hdr: usize,
        trailer: &[u8; N],
        tag: &[u8],
    ) -> bool {
        match self {
            AesCm::A128(k) => open(|| ctr128(k, iv), mac, pkt, hdr, trailer, tag),
            AesCm::A256(k) => open(|| ctr256(k, iv), mac, pkt, hdr, trailer, tag),
        }
    }
}

/// AES-128 keystream from counter block `iv`, borrowing the key schedule.
fn ctr128<'k>(k: &'k Aes128Enc, iv: &[u8; 16]) -> impl StreamCipher + 'k {
    StreamCipherCoreWrapper::from_core(CtrCore::<&Aes128Enc, Ctr128BE>::inner_iv_init(
        k,
        &(*iv).into(),
    ))
}

/// AES-256 keystream from counter block `iv`, borrowing the key schedule.
fn ctr256<'k>(k: &'k Aes256Enc, iv: &[u8; 16]) -> impl StreamCipher + 'k {
    StreamCipherCoreWrapper::from_core(CtrCore::<&Aes256Enc, Ctr128BE>::inner_iv_init(
        k,
        &(*iv).into(),
    ))
}

/// Encrypt-then-MAC over one packet, AES one piece ahead of SHA-1.
#[inline(always)]
fn seal<S: StreamCipher, const N: usize>(
    mut ks: S,
    mac: &HmacSha1,
    pkt: &mut [u8],
    hdr: usize,
    trailer: &[u8; N],
) -> [u8; SHA1_LEN] {
    let len = pkt.len();
    let whole = len / PIECE * PIECE;
    let mut run = mac.begin();
    let mut done = hdr.min(len);
    let mut at = 0;
    while at < whole {
        // Encrypt what the next SHA-1 block covers, in pieces from the payload's start.
        let end = at + PIECE;
        while done < end {
            let to = (done + AES_PIECE).min(len);
            ks.apply_keystream(&mut pkt[done..to]);
            done = to;
        }
        run.blocks(pkt[at..end].as_chunks().0);
        at = end;
    }
    ks.apply_keystream(&mut pkt[done..]);
    mac.finish(run.pad(&pkt[whole..], trailer))
}

/// MAC-then-decrypt over one packet, the decryption under the last SHA-1 blocks.
#[inline(always)]
fn open<S: StreamCipher, const N: usize>(
    keystream: impl Fn() -> S,
    mac: &HmacSha1,
    pkt: &mut [u8],
    hdr: usize,
    trailer: &[u8; N],
    tag: &[u8],
) -> bool {
    let mut run = mac.begin();
    let (blocks, rest) = pkt.as_chunks::<PIECE>();
    run.blocks(blocks);
    let last = run.pad(rest, trailer);
    // Every ciphertext byte is hashed or copied into `last`: decrypt now.
    let hdr = hdr.min(pkt.len());
    keystream().apply_keystream(&mut pkt[hdr..]);
    if tag_matches(&mac.finish(last), tag) {
        return true;
    }
    keystream().apply_keystream(&mut pkt[hdr..]);
    false
}

impl fmt::Debug for AesCm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AesCm::A128(_) => "AesCm128",
            AesCm::A256(_) => "AesCm256",
        })
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

    /// The unstitched reference: whole payload through `apply`, then the `hmac` crate.
    fn reference(aes: &AesCm, key: &[u8], iv: &[u8; 16], pkt: &mut [u8], hdr: usize) -> [u8; 20] {
        use hmac::{Hmac, KeyInit, Mac};
        aes.apply(iv, &mut pkt[hdr..]);
        let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        m.update(pkt);
        m.update(&[0, 0, 0, 7]);
        m.finalize().into_bytes().into()
    }

    // Stitching changes the order of the work, never the bytes: every packet
    // length around the 64-byte SHA-1 and 16-byte AES boundaries, with headers
    // shorter and longer than a SHA-1 block, both key sizes.
    #[test]
    fn seal_and_open_match_the_unstitched_transform() {
        let auth = [0x5a; 20];
        let mac = HmacSha1::new(&auth);
        for key in [&[3u8; 16][..], &[4u8; 32][..]] {
            let aes = AesCm::new(key);
            let iv = [9u8; 16];
            for hdr in [0, 12, 16, 63, 64, 76, 140] {
                for len in hdr..hdr + 200 {
                    let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
                    let mut want = plain.clone();
                    let want_tag = reference(&aes, &auth, &iv, &mut want, hdr);
                    let mut got = plain.clone();
                    let tag = aes.seal(&mac, &iv, &mut got, hdr, &[0, 0, 0, 7]);
                    assert_eq!(
                        (got.as_slice(), tag),
                        (want.as_slice(), want_tag),
                        "{hdr} {len}"
                    );
                    assert!(aes.open(&mac, &iv, &mut got, hdr, &[0, 0, 0, 7], &tag[..10]));
                    assert_eq!(got, plain, "{hdr} {len}");
                }
            }
        }
    }

    #[test]
    fn open_refuses_a_wrong_tag_and_leaves_the_packet() {
        let mac = HmacSha1::new(&[1; 20]);
        let aes = AesCm::new(&[2; 16]);
        let iv = [3u8; 16];
        let mut pkt = [0x55u8; 172];
        let tag = aes.seal(&mac, &iv, &mut pkt, 12, &[0; 4]);
        let sealed = pkt;
        for bad in [&tag[..0], &tag[1..11], &[0u8; 21][..]] {
            assert!(!aes.open(&mac, &iv, &mut pkt, 12, &[0; 4], bad));
            assert_eq!(pkt, sealed);
        }
        // A flipped ciphertext bit, and the right tag under another ROC.
        pkt[100] ^= 1;
        assert!(!aes.open(&mac, &iv, &mut pkt, 12, &[0; 4], &tag[..10]));
        pkt[100] ^= 1;
        assert!(!aes.open(&mac, &iv, &mut pkt, 12, &[0, 0, 0, 1], &tag[..10]));
        assert_eq!(pkt, sealed);
        assert!(aes.open(&mac, &iv, &mut pkt, 12, &[0; 4], &tag[..4]));
        assert_eq!(pkt, [0x55; 172]);
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
