//! [`SrtpContext`]: one master key's SRTP/SRTCP transform, applied in place.
//!
//! SRTP packet (RFC 3711 §3.1; RFC 7714 §8 for AEAD, where the tag is 16 bytes):
//!
//! ```text
//!   0                   1                   2                   3
//!   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+<+
//!  |V=2|P|X|  CC   |M|     PT      |       sequence number         | |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |
//!  |                           timestamp                           | |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |
//!  |           synchronization source (SSRC) identifier            | |
//!  +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+ |
//!  |            contributing source (CSRC) identifiers             | |
//!  |                    RTP extension (OPTIONAL)                   | |
//!  +>+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |
//!  | |                          payload  ...                       | |
//!  | |                               +-------------------------------+ |
//!  | |                               | RTP padding   | RTP pad count | |
//!  +>+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+<+
//!  | ~                     authentication tag                        ~ |
//!  |                                                                   |
//!  +- Encrypted Portion                       Authenticated Portion ---+
//! ```

use crate::cipher::{AesCm, GCM_TAG, Gcm};
use crate::error::SrtpError;
use crate::kdf::SessionKeys;
use crate::mac::HmacSha1;
use crate::params::{KeyError, SrtpParams, Suite};
use crate::streams::StreamTable;
use std::fmt;
use std::hint::black_box;

/// One protocol's (RTP or RTCP) keyed transform, built once per context.
///
/// `repr(u8)` keeps the fields in this order: the 40-byte HMAC state and the
/// salt share the context's first line with its tag, the AES schedule follows.
#[derive(Clone)]
#[repr(u8)]
#[allow(clippy::large_enum_variant)] // two per context, built once, never moved per packet
pub(crate) enum Transform {
    Null,
    /// AES-CM + HMAC-SHA1 (RFC 3711 §4.1.1, §4.2.1; RFC 6188 for AES-256).
    CmHmac {
        mac: HmacSha1,
        salt: [u8; 14],
        tag_len: u8,
        aes: AesCm,
    },
    /// AEAD AES-GCM (RFC 7714).
    Gcm {
        aead: Gcm,
        salt: [u8; 12],
    },
}

impl Transform {
    /// Keys a transform from session keys; `tag_len` matters for AES-CM only.
    pub(crate) fn new(suite: Suite, keys: &SessionKeys, tag_len: u8) -> Transform {
        match suite {
            Suite::Null => Transform::Null,
            Suite::AeadAes128Gcm | Suite::AeadAes256Gcm => {
                let mut salt = [0u8; 12];
                salt.copy_from_slice(&keys.salt[..12]);
                Transform::Gcm {
                    aead: Gcm::new(keys.enc_key()),
                    salt,
                }
            }
            _ => Transform::CmHmac {
                aes: AesCm::new(keys.enc_key()),
                mac: HmacSha1::new(&keys.auth),
                salt: keys.salt,
                tag_len,
            },
        }
    }
}

/// RFC 3711 §4.1.1: IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16).
pub(crate) fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= s;
    }
    iv
}

/// XORs a 12-byte IV input into the session salt (RFC 7714 §8.1, §9.1).
pub(crate) fn gcm_nonce(salt: &[u8; 12], input: [u8; 12]) -> [u8; 12] {
    let mut n = *salt;
    for (b, s) in n.iter_mut().zip(input) {
        *b ^= s;
    }
    n
}

/// Length of the RTP header including CSRCs and extension (RFC 3550 §5.1, §5.3.1).
fn rtp_header_len(buf: &[u8], len: usize) -> Result<usize, SrtpError> {
    let pkt = buf.get(..len).ok_or(SrtpError::Malformed)?;
    if pkt.len() < 12 || pkt[0] >> 6 != 2 {
        return Err(SrtpError::Malformed);
    }
    let mut hdr = 12 + 4 * usize::from(pkt[0] & 0x0f);
    if pkt[0] & 0x10 != 0 {
        let ext = pkt.get(hdr..hdr + 4).ok_or(SrtpError::Malformed)?;
        hdr += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    if hdr > len {
        return Err(SrtpError::Malformed);
    }
    Ok(hdr)
}

/// SRTP/SRTCP state for one master key: session keys plus per-SSRC counters.
///
/// Build one per direction (the engine's `CryptoSpec.decrypt` / `.encrypt`);
/// every call works in the caller's buffer and never allocates.
///
/// `repr(C, align(64))`, in the order a packet reads it: the RTP keys, then the
/// SSRC lookup and the states, the SRTCP keys last. With a thousand flows
/// taking turns a context is cache-cold at each packet, so what an RTP packet
/// reads sits in a few adjacent lines from the start of the context.
#[derive(Clone)]
#[repr(C, align(64))]
pub struct SrtpContext {
    pub(crate) suite: Suite,
    /// Next SRTCP index to send (RFC 3711 §3.4: from 0, +1 per packet).
    ///
    /// One counter for all SSRCs of the context: each SSRC still sees rising
    /// indices, and no slot recycling can ever reuse one under this key.
    pub(crate) rtcp_tx_next: u32,
    pub(crate) rtp: Transform,
    pub(crate) streams: StreamTable,
    pub(crate) rtcp: Transform,
}

impl fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpContext")
            .field("suite", &self.suite)
            .field("ssrcs", &self.streams.len())
            .field("replay_window", &self.streams.window())
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// Derives and expands all session keys once (RFC 3711 §4.3, KDR 0).
    pub fn new(params: &SrtpParams) -> Result<SrtpContext, KeyError> {
        let suite = params.suite;
        let (key, salt) = (params.key.key(), params.key.salt());
        if key.len() != suite.key_len() || salt.len() != suite.salt_len() {
            return Err(KeyError::Length {
                expected: suite.key_len() + suite.salt_len(),
                got: key.len() + salt.len(),
            });
        }
        let (rtp, rtcp) = if suite == Suite::Null {
            (Transform::Null, Transform::Null)
        } else {
            let rtp_keys = SessionKeys::derive(key, salt, false);
            let rtcp_keys = SessionKeys::derive(key, salt, true);
            (
                Transform::new(suite, &rtp_keys, suite.rtp_overhead() as u8),
                // RFC 4568 §6.2: SRTCP keeps the 80-bit tag in the _32 suites too.
                Transform::new(suite, &rtcp_keys, 10),
            )
        };
        Ok(SrtpContext {
            suite,
            rtp,
            rtcp,
            streams: StreamTable::new(params.replay_window),
            rtcp_tx_next: 0,
        })
    }

    /// Builds a context straight from session keys, for the RFC vectors that list them.
    #[cfg(test)]
    pub(crate) fn from_session_keys(
        suite: Suite,
        rtp: &SessionKeys,
        rtcp: &SessionKeys,
        replay_window: u16,
    ) -> SrtpContext {
        SrtpContext {
            suite,
            rtp: Transform::new(suite, rtp, suite.rtp_overhead() as u8),
            rtcp: Transform::new(suite, rtcp, 10),
            streams: StreamTable::new(replay_window),
            rtcp_tx_next: 0,
        }
    }

    /// Starts loading the context (its first line, the SSRC lookup and the
    /// windows of the stream used last) ahead of the packet that needs it.
    ///
    /// Call it as soon as the flow is known: with many flows a context is
    /// cache-cold, and these loads depend on nothing but the context's address,
    /// so their misses (and the page walk) overlap the caller's work. The keys
    /// follow the first line, where the hardware prefetcher picks them up.
    #[inline]
    pub fn prefetch(&self) {
        black_box(self.suite);
        self.streams.prefetch();
    }

    /// The suite this context was keyed for.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Tailroom `protect_rtp` needs beyond the packet (tag length).
    pub fn rtp_overhead(&self) -> usize {
        self.suite.rtp_overhead()
    }

    /// Tailroom `protect_rtcp` needs beyond the packet (SRTCP index + tag).
    pub fn rtcp_overhead(&self) -> usize {
        self.suite.rtcp_overhead()
    }

    /// Encrypts `buf[..len]` (an RTP packet) in place and appends the tag; returns the new length.
    ///
    /// Needs `buf.len() >= len + rtp_overhead()`. The packet index is estimated
    /// from the sequence number like a receiver would (RFC 3711 §3.3.1), and an
    /// index already sent is refused so a keystream is never used twice.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let hdr = rtp_header_len(buf, len)?;
        let overhead = self.suite.rtp_overhead();
        if buf.len() < len + overhead {
            return Err(SrtpError::BufferTooSmall);
        }
        if let Transform::Null = self.rtp {
            return Ok(len);
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let slot = self.streams.find_or_insert(ssrc);
        let state = &mut self.streams.touch(slot).rtp_tx;
        let index = state.estimate_rtp_index(seq)?;
        state.check(index)?;
        match &self.rtp {
            Transform::CmHmac {
                aes,
                mac,
                salt,
                tag_len,
            } => {
                // RFC 3711 §4.2: M = Authenticated Portion || ROC.
                let roc = ((index >> 16) as u32).to_be_bytes();
                let iv = cm_iv(salt, ssrc, index);
                let tag = aes.seal(mac, &iv, &mut buf[..len], hdr, &roc);
                let tag_len = usize::from(*tag_len);
                buf[len..len + tag_len].copy_from_slice(&tag[..tag_len]);
            }
            Transform::Gcm { aead, salt } => {
                let nonce = gcm_nonce(salt, rtp_iv_input(ssrc, index));
                // RFC 7714 §8.2: the header is the AAD, the payload the plaintext.
                let (head, rest) = buf.split_at_mut(hdr);
                let tag = aead.seal(&nonce, head, &mut rest[..len - hdr]);
                buf[len..len + GCM_TAG].copy_from_slice(&tag);
            }
            Transform::Null => {}
        }
        state.accept(index);
        Ok(len + overhead)
    }

    /// Verifies and decrypts `buf[..len]` (an SRTP packet) in place; returns the RTP length.
    ///
    /// Replay is checked before the tag (cheap refusal) and the window is
    /// updated only after the tag verified (RFC 3711 §3.3 steps 2 and 7).
    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let hdr = rtp_header_len(buf, len)?;
        if let Transform::Null = self.rtp {
            return Ok(len);
        }
        let tag_len = self.suite.rtp_overhead();
        if len < hdr + tag_len {
            return Err(SrtpError::Malformed);
        }
        let body = len - tag_len;
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let found = self.streams.find(ssrc);
        let index = match found {
            Some(i) => {
                let w = &self.streams.get(i).rtp_rx;
                let index = w.estimate_rtp_index(seq)?;
                w.check(index)?;
                index
            }
            // A new SSRC starts with ROC 0 (RFC 3711 §3.3.1).
            None => u64::from(seq),
        };
        match &self.rtp {
            Transform::CmHmac { aes, mac, salt, .. } => {
                let roc = ((index >> 16) as u32).to_be_bytes();
                let (pkt, tag) = buf[..len].split_at_mut(body);
                if !aes.open(mac, &cm_iv(salt, ssrc, index), pkt, hdr, &roc, tag) {
                    return Err(SrtpError::AuthFailed);
                }
            }
            Transform::Gcm { aead, salt } => {
                let nonce = gcm_nonce(salt, rtp_iv_input(ssrc, index));
                let (head, rest) = buf.split_at_mut(hdr);
                let (ct, tag) = rest[..len - hdr].split_at_mut(body - hdr);
                if !aead.open(&nonce, head, ct, tag) {
                    return Err(SrtpError::AuthFailed);
                }
            }
            Transform::Null => {}
        }
        let slot = found.unwrap_or_else(|| self.streams.find_or_insert(ssrc));
        self.streams.touch(slot).rtp_rx.accept(index);
        Ok(body)
    }
}

/// RFC 7714 §8.1: 00 00 || SSRC || ROC || SEQ, before the XOR with the salt.
fn rtp_iv_input(ssrc: u32, index: u64) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[2..6].copy_from_slice(&ssrc.to_be_bytes());
    v[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
    v
}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    // What an RTP packet reads is the first lines of the context: keys from the
    // first line on, the SSRC lookup right after them, the SRTCP keys last.
    #[test]
    fn hot_fields_lead_the_context() {
        assert_eq!(align_of::<SrtpContext>(), 64);
        assert!(offset_of!(SrtpContext, rtp) < 64);
        let keys_end = offset_of!(SrtpContext, rtp) + size_of::<Transform>();
        assert!(keys_end <= 512, "RTP keys end at {keys_end}");
        assert!(offset_of!(SrtpContext, streams) < keys_end + 64);
        assert!(offset_of!(SrtpContext, rtcp) > offset_of!(SrtpContext, streams));
        // Encrypt-only key schedules: AES-256's 240 bytes, not 480 with decryption keys.
        assert!(size_of::<Transform>() <= 448, "{}", size_of::<Transform>());
    }
}
