//! HMAC-SHA1 (RFC 2104) driven block by block over the `sha1` crate's
//! compression function, so AES-CM can be stitched into it.
//!
//! The `hmac` crate hides its blocks behind a buffer: a packet's MAC could
//! only start after the whole payload was encrypted, and each packet copied a
//! 128-byte keyed state plus buffer. Here the keyed state is two 20-byte
//! chaining values computed once per key, full 64-byte blocks are compressed
//! straight from the packet (SHA-NI when the CPU has it, chosen by `sha1`), and
//! the caller may run AES on the next part of the payload between two blocks,
//! where it overlaps the SHA-1 dependency chain (see `cipher::AesCm::seal`).
//!
//! ```text
//!   HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m))          RFC 2104 §2
//!                 `-- outer --'    `-- inner --'  state after one block each, kept per key
//!   last block(s) = rest of m || trailer || 0x80 || 0.. || bit length (64, BE)   FIPS 180-4 §5.1.1
//! ```

use ctutils::CtEq;
use sha1::block_api::compress;
use sha1::{Digest, Sha1};

/// SHA-1 block size in bytes (FIPS 180-4 §1).
const BLOCK: usize = 64;
/// SHA-1 digest size in bytes.
pub(crate) const SHA1_LEN: usize = 20;
/// Initial hash value (FIPS 180-4 §5.3.1).
const H0: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// HMAC-SHA1 keyed once: the chaining values after `K ^ ipad` and `K ^ opad`.
///
/// 40 bytes, plain words, so a cold context's copy loads with its first line.
#[derive(Clone)]
pub(crate) struct HmacSha1 {
    inner: [u32; 5],
    outer: [u32; 5],
}

/// One message's inner hash in progress: chaining value and bytes hashed so far.
#[derive(Clone, Copy)]
pub(crate) struct MacRun {
    state: [u32; 5],
    len: u64,
}

impl HmacSha1 {
    /// Computes the keyed inner and outer states (RFC 2104 §2; longer keys hashed first).
    pub(crate) fn new(key: &[u8]) -> HmacSha1 {
        let mut k = [0u8; BLOCK];
        if key.len() > BLOCK {
            k[..SHA1_LEN].copy_from_slice(&Sha1::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let keyed = |pad: u8| {
            let mut state = H0;
            compress(&mut state, &[k.map(|b| b ^ pad)]);
            state
        };
        HmacSha1 {
            inner: keyed(0x36),
            outer: keyed(0x5c),
        }
    }

    /// Starts a message: the inner state, one block (`K ^ ipad`) already hashed.
    #[inline]
    pub(crate) fn begin(&self) -> MacRun {
        MacRun {
            state: self.inner,
            len: BLOCK as u64,
        }
    }

    /// Full tag of `msg || trailer` in one call.
    pub(crate) fn tag<const N: usize>(&self, msg: &[u8], trailer: &[u8; N]) -> [u8; SHA1_LEN] {
        self.finish(self.begin().pad(msg, trailer))
    }

    /// Hashes a message's padded last blocks, then the outer hash; returns the tag.
    #[inline]
    pub(crate) fn finish(&self, last: Padded) -> [u8; SHA1_LEN] {
        let mut inner = last.state;
        compress(
            &mut inner,
            &last.bytes.as_chunks::<BLOCK>().0[..last.blocks],
        );
        // Outer hash: H((K ^ opad) || inner digest), one block.
        let mut outer = [0u8; BLOCK];
        for (o, w) in outer.chunks_exact_mut(4).zip(inner) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        outer[SHA1_LEN] = 0x80;
        outer[BLOCK - 8..].copy_from_slice(&(((BLOCK + SHA1_LEN) * 8) as u64).to_be_bytes());
        let mut state = self.outer;
        compress(&mut state, &[outer]);
        let mut tag = [0u8; SHA1_LEN];
        for (t, w) in tag.chunks_exact_mut(4).zip(state) {
            t.copy_from_slice(&w.to_be_bytes());
        }
        tag
    }
}

/// A message's last one or two blocks, padded and copied out of the packet.
///
/// Copied so that the packet's bytes may change (decrypt in place) before
/// these blocks are compressed.
pub(crate) struct Padded {
    state: [u32; 5],
    bytes: [u8; 2 * BLOCK],
    blocks: usize,
}

impl MacRun {
    /// Hashes whole blocks; the caller keeps what is left for `finish`.
    #[inline]
    pub(crate) fn blocks(&mut self, blocks: &[[u8; BLOCK]]) {
        if !blocks.is_empty() {
            compress(&mut self.state, blocks);
            self.len += (blocks.len() * BLOCK) as u64;
        }
    }

    /// Ends the message with `rest || trailer` (FIPS 180-4 §5.1.1 padding), copied out.
    #[inline]
    pub(crate) fn pad<const N: usize>(mut self, rest: &[u8], trailer: &[u8; N]) -> Padded {
        // Two blocks hold any rest under 64 bytes, a short trailer and the padding.
        const { assert!(N <= 8) };
        let (blocks, rest) = rest.as_chunks::<BLOCK>();
        self.blocks(blocks);
        let mut bytes = [0u8; 2 * BLOCK];
        let n = rest.len() + N;
        bytes[..rest.len()].copy_from_slice(rest);
        bytes[rest.len()..n].copy_from_slice(trailer);
        // A 1 bit, zeros, then the message length in bits (64 bits, big-endian).
        bytes[n] = 0x80;
        let end = if n + 9 <= BLOCK { BLOCK } else { 2 * BLOCK };
        let bits = (self.len + n as u64) * 8;
        bytes[end - 8..end].copy_from_slice(&bits.to_be_bytes());
        Padded {
            state: self.state,
            bytes,
            blocks: end / BLOCK,
        }
    }
}

/// Constant-time check of a received, possibly truncated tag (RFC 3711 §4.2: leftmost bits).
#[inline]
pub(crate) fn tag_matches(full: &[u8; SHA1_LEN], got: &[u8]) -> bool {
    !got.is_empty() && got.len() <= SHA1_LEN && full[..got.len()].ct_eq(got).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::unhex;
    use hmac::{Hmac, KeyInit, Mac};

    // RFC 2202 §3 test cases 1, 2, 3 and 6 (a key longer than a block).
    #[test]
    fn rfc2202_vectors() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 4] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b617318655057264e28bc0b6fb378c8ef146be00",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "125d7342b9ac11cd91a39af48aa17b4f63f175d3",
            ),
            (
                vec![0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "aa4ae5e15272d00e95705637ce8a3b55ed402112",
            ),
        ];
        for (key, msg, want) in cases {
            let tag = HmacSha1::new(&key).tag(&msg, &[]);
            assert_eq!(tag.to_vec(), unhex(want));
        }
    }

    // The block-by-block driver against the `hmac` crate for every length of a
    // message and its trailer up to three blocks, so each padding case is hit.
    #[test]
    fn matches_the_hmac_crate_at_every_length() {
        let key = [0x42u8; 20];
        let mac = HmacSha1::new(&key);
        let msg: Vec<u8> = (0..200u8).collect();
        for len in 0..msg.len() {
            let mut want = Hmac::<Sha1>::new_from_slice(&key).unwrap();
            want.update(&msg[..len]);
            want.update(&[1, 2, 3, 4]);
            let want: [u8; 20] = want.finalize().into_bytes().into();
            assert_eq!(mac.tag(&msg[..len], &[1, 2, 3, 4]), want, "{len}");
            // Whole blocks fed first, the rest at `pad`, as the stitched path does.
            let mut run = mac.begin();
            let (blocks, rest) = msg[..len].as_chunks::<BLOCK>();
            run.blocks(blocks);
            assert_eq!(mac.finish(run.pad(rest, &[1, 2, 3, 4])), want, "{len}");
        }
    }

    #[test]
    fn truncated_tags_compare_by_their_leftmost_bytes() {
        let full: [u8; 20] = std::array::from_fn(|i| i as u8);
        assert!(tag_matches(&full, &full[..10]));
        assert!(tag_matches(&full, &full[..4]));
        assert!(!tag_matches(&full, &full[1..11]));
        assert!(!tag_matches(&full, &[]));
        assert!(!tag_matches(&full, &[0; 21]));
    }
}
