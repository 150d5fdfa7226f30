//! SDES key lines (`a=crypto`), parsed so the control plane can hand keys to the SRTP layer.
//!
//! ```text
//! a=crypto:<tag> <crypto-suite> <key-params> [<session-params>]
//!   key-params = key-param *(";" key-param)
//!   key-param  = key-method ":" key-info
//!   inline key-info = <base64 key||salt> ["|" ["2^"]lifetime] ["|" mki-value ":" mki-length]
//! a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4
//! ```
//!
//! RFC 4568 §9.1: <https://www.rfc-editor.org/rfc/rfc4568#section-9.1>

use core::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::error::Reason;

/// Peers send inline keys both padded and unpadded; accept both, write padded.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// One `a=crypto` line: a keying offer for one SRTP suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    /// Tag that the answer echoes to pick this line (RFC 4568 §9.1: 1 to 9 digits).
    pub tag: u32,
    /// Suite name as written, e.g. `AES_CM_128_HMAC_SHA1_80`, `AEAD_AES_256_GCM`.
    pub suite: String,
    /// Key parameters in order; SRTP uses one or more `inline:` keys.
    pub keys: Vec<KeyParam>,
    /// Session parameters (`UNENCRYPTED_SRTCP`, `KDR=`, ...) kept as tokens.
    pub session_params: Vec<String>,
}

/// One key parameter of an `a=crypto` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyParam {
    /// `inline:` key material (RFC 4568 §6.1).
    Inline(InlineKey),
    /// Another key method, kept verbatim as `method:info`.
    Other {
        /// The key method name.
        method: String,
        /// Everything after the first `:`.
        info: String,
    },
}

/// Inline master key and salt with optional lifetime and MKI (RFC 4568 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineKey {
    /// Concatenated master key and master salt, base64-decoded.
    pub key_salt: Vec<u8>,
    /// Packets this key may protect.
    pub lifetime: Option<Lifetime>,
    /// Master key identifier carried in each packet when several keys are in use.
    pub mki: Option<Mki>,
}

/// A master key lifetime in packets, written `2^n` or as a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// `2^n` packets.
    PowerOfTwo(u8),
    /// An exact number of packets.
    Packets(u64),
}

impl Lifetime {
    /// The lifetime in packets, saturating at `u64::MAX` for `2^64` and above.
    pub fn packets(self) -> u64 {
        match self {
            Self::PowerOfTwo(n) => 1u64.checked_shl(u32::from(n)).unwrap_or(u64::MAX),
            Self::Packets(n) => n,
        }
    }
}

/// A master key identifier: value and its length in bytes on the wire (1..=128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mki {
    /// MKI value.
    pub value: u64,
    /// Bytes the MKI occupies in each SRTP packet.
    pub length: u8,
}

impl Crypto {
    /// An SDES line with one inline key, as the relay offers on its own SRTP legs.
    pub fn new_inline(tag: u32, suite: impl Into<String>, key_salt: Vec<u8>) -> Self {
        Self {
            tag,
            suite: suite.into(),
            keys: vec![KeyParam::Inline(InlineKey {
                key_salt,
                lifetime: None,
                mki: None,
            })],
            session_params: Vec::new(),
        }
    }

    /// The first inline key, which is what SRTP with a single master key uses.
    pub fn inline_key(&self) -> Option<&InlineKey> {
        self.keys.iter().find_map(|k| match k {
            KeyParam::Inline(key) => Some(key),
            KeyParam::Other { .. } => None,
        })
    }

    /// Parses the value after `a=crypto:`.
    pub(crate) fn parse(value: &str) -> Result<Self, Reason> {
        let mut it = value.split_ascii_whitespace();
        let (Some(tag), Some(suite), Some(key_params)) = (it.next(), it.next(), it.next()) else {
            return Err(Reason::BadCrypto);
        };
        // RFC 4568 §9.1: tag = 1*9DIGIT
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Reason::BadCrypto);
        }
        let tag = tag.parse().map_err(|_| Reason::BadCrypto)?;
        let keys = key_params
            .split(';')
            .map(KeyParam::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            tag,
            suite: suite.to_owned(),
            keys,
            session_params: it.map(str::to_owned).collect(),
        })
    }
}

impl KeyParam {
    fn parse(param: &str) -> Result<Self, Reason> {
        let (method, info) = param.split_once(':').ok_or(Reason::BadCrypto)?;
        if method.is_empty() || info.is_empty() {
            return Err(Reason::BadCrypto);
        }
        if method.eq_ignore_ascii_case("inline") {
            return InlineKey::parse(info).map(Self::Inline);
        }
        Ok(Self::Other {
            method: method.to_owned(),
            info: info.to_owned(),
        })
    }
}

impl InlineKey {
    /// RFC 4568 §6.1: `key-salt ["|" lifetime] ["|" mki]`, the MKI told apart by its `:`.
    fn parse(info: &str) -> Result<Self, Reason> {
        let mut parts = info.split('|');
        let b64 = parts.next().unwrap_or_default();
        let key_salt = LENIENT_B64.decode(b64).map_err(|_| Reason::BadCryptoKey)?;
        if key_salt.is_empty() {
            return Err(Reason::BadCryptoKey);
        }
        let (mut lifetime, mut mki) = (None, None);
        for part in parts {
            match part.split_once(':') {
                Some((value, length)) if mki.is_none() => {
                    let length: u8 = digits(length)?;
                    if !(1..=128).contains(&length) {
                        return Err(Reason::BadCryptoLifetimeOrMki);
                    }
                    mki = Some(Mki {
                        value: digits(value)?,
                        length,
                    });
                }
                None if lifetime.is_none() && mki.is_none() => {
                    lifetime = Some(match part.strip_prefix("2^") {
                        Some(exp) => Lifetime::PowerOfTwo(digits(exp)?),
                        None => Lifetime::Packets(digits(part)?),
                    });
                }
                _ => return Err(Reason::BadCryptoLifetimeOrMki),
            }
        }
        Ok(Self {
            key_salt,
            lifetime,
            mki,
        })
    }
}

/// Strict decimal: digits only, and it must fit.
fn digits<T: core::str::FromStr>(s: &str) -> Result<T, Reason> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reason::BadCryptoLifetimeOrMki);
    }
    s.parse().map_err(|_| Reason::BadCryptoLifetimeOrMki)
}

impl fmt::Display for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.tag, self.suite)?;
        for (i, key) in self.keys.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{key}")?;
        }
        for p in &self.session_params {
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

impl fmt::Display for KeyParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline(key) => {
                write!(
                    f,
                    "inline:{}",
                    base64::engine::general_purpose::STANDARD.encode(&key.key_salt)
                )?;
                match key.lifetime {
                    Some(Lifetime::PowerOfTwo(n)) => write!(f, "|2^{n}")?,
                    Some(Lifetime::Packets(n)) => write!(f, "|{n}")?,
                    None => {}
                }
                if let Some(mki) = key.mki {
                    write!(f, "|{}:{}", mki.value, mki.length)?;
                }
                Ok(())
            }
            Self::Other { method, info } => write!(f, "{method}:{info}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4568 §4 example key: 30 bytes (16 key + 14 salt), 40 base64 characters.
    const KEY: &str = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

    #[test]
    fn rfc4568_example_with_lifetime_and_mki() {
        let c =
            Crypto::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:32")).unwrap();
        assert_eq!((c.tag, c.suite.as_str()), (1, "AES_CM_128_HMAC_SHA1_80"));
        let key = c.inline_key().unwrap();
        assert_eq!(key.key_salt.len(), 30);
        assert_eq!(key.lifetime, Some(Lifetime::PowerOfTwo(20)));
        assert_eq!(key.lifetime.unwrap().packets(), 1 << 20);
        assert_eq!(
            key.mki,
            Some(Mki {
                value: 1,
                length: 32
            })
        );
        assert_eq!(
            c.to_string(),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:32")
        );
    }

    #[test]
    fn mki_without_lifetime_and_session_params() {
        let c = Crypto::parse(&format!(
            "2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|1:4 UNENCRYPTED_SRTCP KDR=1"
        ))
        .unwrap();
        assert_eq!(c.inline_key().unwrap().lifetime, None);
        assert_eq!(
            c.inline_key().unwrap().mki,
            Some(Mki {
                value: 1,
                length: 4
            })
        );
        assert_eq!(c.session_params, ["UNENCRYPTED_SRTCP", "KDR=1"]);
    }

    #[test]
    fn base64_with_or_without_padding() {
        // 46 bytes (AES-256 key + salt) need "==" padding; some peers leave it off.
        let key = vec![7u8; 46];
        let padded = base64::engine::general_purpose::STANDARD.encode(&key);
        assert!(padded.ends_with("=="));
        let unpadded = padded.trim_end_matches('=');
        for b64 in [padded.as_str(), unpadded] {
            let c = Crypto::parse(&format!("3 AES_256_CM_HMAC_SHA1_80 inline:{b64}")).unwrap();
            assert_eq!(c.inline_key().unwrap().key_salt, key);
            assert_eq!(
                c.to_string(),
                format!("3 AES_256_CM_HMAC_SHA1_80 inline:{padded}")
            );
        }
    }

    #[test]
    fn several_keys_and_unknown_method() {
        let c = Crypto::parse(&format!(
            "4 F8_128_HMAC_SHA1_80 inline:{KEY}|1000;foo:bar:baz"
        ))
        .unwrap();
        assert_eq!(c.keys.len(), 2);
        assert_eq!(
            c.inline_key().unwrap().lifetime,
            Some(Lifetime::Packets(1000))
        );
        assert_eq!(
            c.keys[1],
            KeyParam::Other {
                method: "foo".into(),
                info: "bar:baz".into()
            }
        );
        assert_eq!(
            c.to_string(),
            format!("4 F8_128_HMAC_SHA1_80 inline:{KEY}|1000;foo:bar:baz")
        );
    }

    #[test]
    fn malformed_lines_are_refused() {
        let cases = [
            ("", Reason::BadCrypto),
            ("1 AES_CM_128_HMAC_SHA1_80", Reason::BadCrypto),
            ("x AES_CM_128_HMAC_SHA1_80 inline:AAAA", Reason::BadCrypto),
            ("1234567890 S inline:AAAA", Reason::BadCrypto),
            ("1 S inline", Reason::BadCrypto),
            ("1 S inline:", Reason::BadCrypto),
            ("1 S inline:!!!!", Reason::BadCryptoKey),
            ("1 S inline:|2^20", Reason::BadCryptoKey),
            ("1 S inline:AAAA|2^x", Reason::BadCryptoLifetimeOrMki),
            ("1 S inline:AAAA|1:0", Reason::BadCryptoLifetimeOrMki),
            ("1 S inline:AAAA|1:129", Reason::BadCryptoLifetimeOrMki),
            ("1 S inline:AAAA|1:4|2^20", Reason::BadCryptoLifetimeOrMki),
            ("1 S inline:AAAA|5|6", Reason::BadCryptoLifetimeOrMki),
        ];
        for (value, reason) in cases {
            assert_eq!(Crypto::parse(value), Err(reason), "{value}");
        }
    }

    #[test]
    fn huge_lifetime_saturates() {
        assert_eq!(Lifetime::PowerOfTwo(64).packets(), u64::MAX);
        assert_eq!(Lifetime::PowerOfTwo(255).packets(), u64::MAX);
    }

    #[test]
    fn new_inline_round_trips() {
        let c = Crypto::new_inline(1, "AES_CM_128_HMAC_SHA1_80", (0u8..30).collect());
        assert_eq!(Crypto::parse(&c.to_string()).unwrap(), c);
    }
}
