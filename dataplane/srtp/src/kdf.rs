//! Session key derivation (RFC 3711 §4.3, RFC 6188 §7, RFC 7714 §11), once per context.
//!
//! The PRF is AES in counter mode keyed with the master key. With a key
//! derivation rate of 0 (the SDES and DTLS-SRTP default) `r = 0`, so the
//! IV is the master salt with the label XORed into byte 7:
//!
//! ```text
//!   byte:  0 ..... 6 | 7             | 8 ..... 13 | 14 15
//!   IV  =  salt[0..7] | salt[7]^label | salt[8..14] | 00 00   (block counter)
//! ```
//!
//! A 12-byte AEAD salt is zero-padded to 14 bytes first, as libsrtp does.

use crate::cipher::AesCm;

/// Key derivation labels (RFC 3711 §4.3.2 and §4.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Label {
    RtpEncryption = 0x00,
    RtpAuth = 0x01,
    RtpSalt = 0x02,
    RtcpEncryption = 0x03,
    RtcpAuth = 0x04,
    RtcpSalt = 0x05,
}

/// Fills `out` with PRF output for `label` (RFC 3711 §4.3.1 / §4.3.3).
pub(crate) fn derive(master_key: &[u8], master_salt: &[u8], label: Label, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    // RFC 3711 §4.3.1: x = key_id XOR master_salt, key_id = label || r, r = 0 (KDR 0).
    iv[7] ^= label as u8;
    out.fill(0);
    AesCm::new(master_key).apply(&iv, out);
}

/// Session keys of one direction of one protocol (RTP or RTCP).
#[derive(Clone)]
pub(crate) struct SessionKeys {
    pub(crate) enc: [u8; 32],
    pub(crate) enc_len: usize,
    pub(crate) auth: [u8; 20],
    pub(crate) salt: [u8; 14],
}

impl SessionKeys {
    /// Derives the encryption key, auth key and salt for RTP (`rtcp = false`) or RTCP.
    pub(crate) fn derive(master_key: &[u8], master_salt: &[u8], rtcp: bool) -> SessionKeys {
        let (le, la, ls) = if rtcp {
            (Label::RtcpEncryption, Label::RtcpAuth, Label::RtcpSalt)
        } else {
            (Label::RtpEncryption, Label::RtpAuth, Label::RtpSalt)
        };
        let mut k = SessionKeys {
            enc: [0; 32],
            enc_len: master_key.len(),
            auth: [0; 20],
            salt: [0; 14],
        };
        derive(master_key, master_salt, le, &mut k.enc[..master_key.len()]);
        // RFC 3711 §8.2: the session auth key is 160 bits for HMAC-SHA1.
        derive(master_key, master_salt, la, &mut k.auth);
        // RFC 3711 §4.3.2 (112-bit salt); RFC 7714 §11 (96-bit salt for AEAD).
        derive(
            master_key,
            master_salt,
            ls,
            &mut k.salt[..master_salt.len()],
        );
        k
    }

    pub(crate) fn enc_key(&self) -> &[u8] {
        &self.enc[..self.enc_len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::unhex;

    // RFC 3711 Appendix B.3: key derivation test vectors.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let mk = unhex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let ms = unhex("0EC675AD498AFEEBB6960B3AABE6");
        let k = SessionKeys::derive(&mk, &ms, false);
        assert_eq!(k.enc_key(), &unhex("C61E7A93744F39EE10734AFE3FF7A087")[..]);
        assert_eq!(&k.salt[..], &unhex("30CBBC08863D8C85D49DB34A9AE1")[..]);
        assert_eq!(
            &k.auth[..],
            &unhex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")[..]
        );
    }

    // RFC 6188 §7.2: AES_256_CM_PRF key derivation (32-byte master key, 14-byte salt).
    #[test]
    fn rfc6188_7_2_aes_256_key_derivation() {
        let mk = unhex("f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6");
        let ms = unhex("3b04803de51ee7c96423ab5b78d2");
        let k = SessionKeys::derive(&mk, &ms, false);
        assert_eq!(
            k.enc_key(),
            &unhex("5ba1064e30ec51613cad926c5a28ef731ec7fb397f70a960653caf06554cd8c4")[..]
        );
        assert_eq!(&k.salt[..], &unhex("fa31791685ca444a9e07c6c64e93")[..]);
        assert_eq!(
            &k.auth[..],
            &unhex("fd9c32d39ed5fbb5a9dc96b30818454d1313dc05")[..]
        );
    }
}
