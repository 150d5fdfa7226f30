//! What a flow rule needs to build an SRTP context: suite and master key material.

use std::fmt;

/// SRTP protection profiles ferrelay speaks (RFC 4568 §6.2 names, RFC 6188, RFC 7714).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    AesCm256HmacSha1_80,
    AesCm256HmacSha1_32,
    AeadAes128Gcm,
    AeadAes256Gcm,
    /// No cipher, no tag: lets benchmarks separate transform cost from I/O cost.
    Null,
}

impl Suite {
    /// Every suite that can be negotiated (excludes `Null`), in the order offers list them.
    pub const NEGOTIABLE: [Suite; 6] = [
        Suite::AeadAes256Gcm,
        Suite::AeadAes128Gcm,
        Suite::AesCm256HmacSha1_80,
        Suite::AesCm256HmacSha1_32,
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
    ];

    /// The SDES crypto-suite name (RFC 4568 §6.2, RFC 6188 §7.1, RFC 7714 §14.2).
    pub fn sdes_name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AesCm256HmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            Suite::AesCm256HmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Suite::AeadAes256Gcm => "AEAD_AES_256_GCM",
            Suite::Null => "NULL",
        }
    }

    /// Parses an SDES crypto-suite name, case-insensitively.
    pub fn from_sdes_name(name: &str) -> Option<Suite> {
        Self::NEGOTIABLE
            .into_iter()
            .chain([Suite::Null])
            .find(|s| s.sdes_name().eq_ignore_ascii_case(name))
    }

    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 | Suite::AeadAes128Gcm => 16,
            Suite::AesCm256HmacSha1_80 | Suite::AesCm256HmacSha1_32 | Suite::AeadAes256Gcm => 32,
            Suite::Null => 0,
        }
    }

    /// Master salt length in bytes (14 for AES-CM, 12 for AEAD per RFC 7714 §12).
    pub fn salt_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm | Suite::AeadAes256Gcm => 12,
            Suite::Null => 0,
            _ => 14,
        }
    }

    /// Bytes the SRTP transform appends to an RTP packet (auth tag, or AEAD tag).
    pub fn rtp_overhead(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm256HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 | Suite::AesCm256HmacSha1_32 => 4,
            Suite::AeadAes128Gcm | Suite::AeadAes256Gcm => 16,
            Suite::Null => 0,
        }
    }

    /// Bytes the SRTCP transform appends to an RTCP packet: E flag + 31-bit index, then the tag.
    ///
    /// The AES-CM suites keep an 80-bit SRTCP tag even in their `_32` form (RFC 4568 §6.2).
    pub fn rtcp_overhead(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80
            | Suite::AesCm128HmacSha1_32
            | Suite::AesCm256HmacSha1_80
            | Suite::AesCm256HmacSha1_32 => 4 + 10,
            Suite::AeadAes128Gcm | Suite::AeadAes256Gcm => 4 + 16,
            Suite::Null => 0,
        }
    }
}

/// Why key material was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Key or salt length does not match the suite.
    Length { expected: usize, got: usize },
    /// A key with an MKI was offered; ferrelay does not use MKIs (RFC 3711 §3.1 allows omitting them).
    MkiUnsupported,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Length { expected, got } => {
                write!(
                    f,
                    "key||salt must be {expected} bytes for this suite, got {got}"
                )
            }
            KeyError::MkiUnsupported => f.write_str("keys with an MKI are not supported"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Master key and salt (RFC 3711 §8.2), stored inline so a rule needs no heap.
///
/// `Debug` never prints key bytes: keys must not reach logs.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    bytes: [u8; 46],
    key_len: u8,
    salt_len: u8,
}

impl MasterKey {
    /// Builds a master key from `key || salt` as SDES carries it (RFC 4568 §6.1).
    pub fn from_concatenated(suite: Suite, key_salt: &[u8]) -> Result<Self, KeyError> {
        let (kl, sl) = (suite.key_len(), suite.salt_len());
        if key_salt.len() != kl + sl {
            return Err(KeyError::Length {
                expected: kl + sl,
                got: key_salt.len(),
            });
        }
        let mut bytes = [0u8; 46];
        bytes[..key_salt.len()].copy_from_slice(key_salt);
        Ok(MasterKey {
            bytes,
            key_len: kl as u8,
            salt_len: sl as u8,
        })
    }

    pub fn key(&self) -> &[u8] {
        &self.bytes[..self.key_len as usize]
    }

    pub fn salt(&self) -> &[u8] {
        let k = self.key_len as usize;
        &self.bytes[k..k + self.salt_len as usize]
    }

    /// Builds a master key from an SDES `inline:` key whose MKI, if any, the parser found.
    ///
    /// ferrelay sends and expects SRTP without an MKI field (RFC 3711 §3.1 makes it
    /// optional), so a key that carries one is refused rather than silently misparsed.
    pub fn from_sdes(suite: Suite, key_salt: &[u8], has_mki: bool) -> Result<Self, KeyError> {
        if has_mki {
            return Err(KeyError::MkiUnsupported);
        }
        Self::from_concatenated(suite, key_salt)
    }

    /// `key || salt`, as SDES writes it.
    pub fn concatenated(&self) -> &[u8] {
        &self.bytes[..(self.key_len + self.salt_len) as usize]
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MasterKey({} + {} bytes, redacted)",
            self.key_len, self.salt_len
        )
    }
}

/// Everything needed to build one direction's SRTP/SRTCP context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpParams {
    pub suite: Suite,
    pub key: MasterKey,
    /// Replay window in packets (RFC 3711 §3.3.2 asks for at least 64).
    ///
    /// `SrtpContext` clamps it to `MIN_REPLAY_WINDOW..=MAX_REPLAY_WINDOW` (64..=1024).
    pub replay_window: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_names_round_trip() {
        for s in Suite::NEGOTIABLE {
            assert_eq!(Suite::from_sdes_name(s.sdes_name()), Some(s));
            let material = vec![7u8; s.key_len() + s.salt_len()];
            let k = MasterKey::from_concatenated(s, &material).unwrap();
            assert_eq!(k.key().len(), s.key_len());
            assert_eq!(k.salt().len(), s.salt_len());
            assert_eq!(k.concatenated(), &material[..]);
        }
        assert_eq!(
            Suite::from_sdes_name("aes_cm_128_hmac_sha1_80"),
            Some(Suite::AesCm128HmacSha1_80)
        );
        assert_eq!(Suite::from_sdes_name("F8_128_HMAC_SHA1_80"), None);
    }

    #[test]
    fn mki_is_refused_and_overheads_match_rfcs() {
        let m = [1u8; 30];
        assert_eq!(
            MasterKey::from_sdes(Suite::AesCm128HmacSha1_80, &m, true),
            Err(KeyError::MkiUnsupported)
        );
        assert!(MasterKey::from_sdes(Suite::AesCm128HmacSha1_80, &m, false).is_ok());
        assert_eq!(Suite::AesCm128HmacSha1_32.rtp_overhead(), 4);
        assert_eq!(Suite::AesCm128HmacSha1_32.rtcp_overhead(), 14);
        assert_eq!(Suite::AeadAes256Gcm.rtcp_overhead(), 20);
        assert_eq!(Suite::Null.rtcp_overhead(), 0);
    }

    #[test]
    fn wrong_length_is_refused_and_debug_hides_key() {
        let err = MasterKey::from_concatenated(Suite::AesCm128HmacSha1_80, &[1; 29]).unwrap_err();
        assert_eq!(
            err,
            KeyError::Length {
                expected: 30,
                got: 29
            }
        );
        let k = MasterKey::from_concatenated(Suite::AesCm128HmacSha1_80, &[0xAB; 30]).unwrap();
        let shown = format!("{k:?}");
        assert!(
            !shown.contains("171") && !shown.to_lowercase().contains("ab, "),
            "{shown}"
        );
    }
}
