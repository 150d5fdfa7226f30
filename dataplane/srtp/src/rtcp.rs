//! SRTCP in place (RFC 3711 §3.4; RFC 7714 §9 for AEAD).
//!
//! AES-CM + HMAC-SHA1 (RFC 3711 §3.4, Figure 2):
//!
//! ```text
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+<+
//!  |V=2|P|    RC   |   PT=SR or RR   |             length          | |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |
//!  |                         SSRC of sender                        | |
//!  +>+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |
//!  | ~                   sender info, report blocks, ...           ~ |
//!  +>+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |
//!  | |E|                         SRTCP index                       | |
//!  | +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+<+
//!  | ~                     authentication tag (80 bits)              ~
//!  +- Encrypted Portion                    Authenticated Portion -----+
//! ```
//!
//! AEAD (RFC 7714 §9, Figure 3): `header(8) | ciphertext | tag(16) | E+index(4)`,
//! with AAD = `header(8) || E+index` when encrypted.

use crate::cipher::GCM_TAG;
use crate::context::{SrtpContext, Transform, cm_iv, gcm_nonce};
use crate::error::SrtpError;
use crate::mac::tag_matches;

/// Bytes of the E flag and 31-bit SRTCP index (RFC 3711 §3.4).
const ESRTCP: usize = 4;
/// The SRTCP tag of the AES-CM suites (RFC 4568 §6.2: 80 bits for both _80 and _32).
const CM_RTCP_TAG: usize = 10;
/// Largest SRTCP packet whose unencrypted (E=0) AEAD form we accept; its AAD is copied.
const MAX_AUTH_ONLY_AAD: usize = 2048;
/// RFC 3711 §3.4: the E bit.
const E_FLAG: u32 = 0x8000_0000;

/// The fixed 8-byte RTCP header every compound packet starts with (RFC 3550 §6.4.1).
fn rtcp_ssrc(buf: &[u8], len: usize) -> Result<u32, SrtpError> {
    let pkt = buf.get(..len).ok_or(SrtpError::Malformed)?;
    if pkt.len() < 8 || pkt[0] >> 6 != 2 {
        return Err(SrtpError::Malformed);
    }
    Ok(u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]))
}

/// RFC 7714 §9.1: 00 00 || SSRC || 00 00 || 0 || SRTCP index, before the XOR with the salt.
fn rtcp_iv_input(ssrc: u32, index: u32) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[2..6].copy_from_slice(&ssrc.to_be_bytes());
    v[8..12].copy_from_slice(&index.to_be_bytes());
    v
}

impl SrtpContext {
    /// Encrypts `buf[..len]` (a compound RTCP packet) in place, appends E+index and tag.
    ///
    /// Needs `buf.len() >= len + rtcp_overhead()`; returns the new length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let ssrc = rtcp_ssrc(buf, len)?;
        let overhead = self.suite.rtcp_overhead();
        if buf.len() < len + overhead {
            return Err(SrtpError::BufferTooSmall);
        }
        if let Transform::Null = self.rtcp {
            return Ok(len);
        }
        let index = self.rtcp_tx_next;
        // RFC 3711 §3.4 / §9.2: the 31-bit index must not wrap under one key.
        if index >= E_FLAG {
            return Err(SrtpError::IndexExhausted);
        }
        let e_index = (E_FLAG | index).to_be_bytes();
        match &self.rtcp {
            Transform::CmHmac { aes, mac, salt, .. } => {
                // RFC 3711 §4.1.1 with the SRTCP index as i.
                aes.apply(&cm_iv(salt, ssrc, u64::from(index)), &mut buf[8..len]);
                buf[len..len + ESRTCP].copy_from_slice(&e_index);
                let tag = mac.tag(&buf[..len + ESRTCP], &[]);
                buf[len + ESRTCP..len + ESRTCP + CM_RTCP_TAG].copy_from_slice(&tag[..CM_RTCP_TAG]);
            }
            Transform::Gcm { aead, salt } => {
                let nonce = gcm_nonce(salt, rtcp_iv_input(ssrc, index));
                // RFC 7714 §9.2: AAD = header || E+index.
                let mut aad = [0u8; 8 + ESRTCP];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&e_index);
                let tag = aead.seal(&nonce, &aad, &mut buf[8..len]);
                buf[len..len + GCM_TAG].copy_from_slice(&tag);
                buf[len + GCM_TAG..len + GCM_TAG + ESRTCP].copy_from_slice(&e_index);
            }
            Transform::Null => {}
        }
        self.rtcp_tx_next = index + 1;
        Ok(len + overhead)
    }

    /// Verifies and decrypts `buf[..len]` (an SRTCP packet) in place; returns the RTCP length.
    ///
    /// Packets sent with E=0 (authenticated, not encrypted) are verified and
    /// passed through as they are.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let ssrc = rtcp_ssrc(buf, len)?;
        if let Transform::Null = self.rtcp {
            return Ok(len);
        }
        let overhead = self.suite.rtcp_overhead();
        if len < 8 + overhead {
            return Err(SrtpError::Malformed);
        }
        let plain_len = len - overhead;
        let e_at = match self.rtcp {
            Transform::Gcm { .. } => len - ESRTCP,
            _ => plain_len,
        };
        let word = u32::from_be_bytes([buf[e_at], buf[e_at + 1], buf[e_at + 2], buf[e_at + 3]]);
        let encrypted = word & E_FLAG != 0;
        let index = word & !E_FLAG;
        let found = self.streams.find(ssrc);
        if let Some(i) = found {
            self.streams.get(i).rtcp_rx.check(u64::from(index))?;
        }
        match &self.rtcp {
            Transform::CmHmac { aes, mac, salt, .. } => {
                let signed = plain_len + ESRTCP;
                if !tag_matches(&mac.tag(&buf[..signed], &[]), &buf[signed..len]) {
                    return Err(SrtpError::AuthFailed);
                }
                if encrypted {
                    aes.apply(&cm_iv(salt, ssrc, u64::from(index)), &mut buf[8..plain_len]);
                }
            }
            Transform::Gcm { aead, salt } => {
                let nonce = gcm_nonce(salt, rtcp_iv_input(ssrc, index));
                let e_index = word.to_be_bytes();
                let ok = if encrypted {
                    let mut aad = [0u8; 8 + ESRTCP];
                    aad[..8].copy_from_slice(&buf[..8]);
                    aad[8..].copy_from_slice(&e_index);
                    let (ct, tag) = buf[8..plain_len + GCM_TAG].split_at_mut(plain_len - 8);
                    aead.open(&nonce, &aad, ct, tag)
                } else {
                    // RFC 7714 §9.2: unencrypted, the whole packet || E+index is the AAD.
                    if plain_len + ESRTCP > MAX_AUTH_ONLY_AAD {
                        return Err(SrtpError::Malformed);
                    }
                    let mut aad = [0u8; MAX_AUTH_ONLY_AAD];
                    aad[..plain_len].copy_from_slice(&buf[..plain_len]);
                    aad[plain_len..plain_len + ESRTCP].copy_from_slice(&e_index);
                    let tag = &buf[plain_len..plain_len + GCM_TAG];
                    aead.open(&nonce, &aad[..plain_len + ESRTCP], &mut [], tag)
                };
                if !ok {
                    return Err(SrtpError::AuthFailed);
                }
            }
            Transform::Null => {}
        }
        let slot = found.unwrap_or_else(|| self.streams.find_or_insert(ssrc));
        self.streams.touch(slot).rtcp_rx.accept(u64::from(index));
        Ok(plain_len)
    }
}
