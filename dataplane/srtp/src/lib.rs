//! SRTP/SRTCP transforms in place (RFC 3711, RFC 6188, RFC 7714).
//!
//! One [`SrtpContext`] holds the session keys of one master key, derived and
//! expanded once at construction, and a small fixed table of per-SSRC state
//! (rollover counter, replay windows, SRTCP index; [`MAX_SSRCS`] slots,
//! least recently used recycled). The per-packet calls work in the caller's
//! buffer and never allocate.
//!
//! # How the engine uses it
//!
//! Build one context per direction when a rule is installed
//! (`CryptoSpec.decrypt` for what arrives, `CryptoSpec.encrypt` for what
//! leaves) and keep it with the flow; rebuild it only when the keys change,
//! since a new context forgets ROCs and replay windows. On the hot path:
//!
//! ```
//! use ferrelay_srtp::{MasterKey, SrtpContext, SrtpError, SrtpParams, Suite};
//!
//! let suite = Suite::AesCm128HmacSha1_80;
//! let key = MasterKey::from_concatenated(suite, &[7; 30]).unwrap();
//! let params = SrtpParams { suite, key, replay_window: 128 };
//! let mut encrypt = SrtpContext::new(&params).unwrap(); // far side's keys
//! let mut decrypt = SrtpContext::new(&params).unwrap(); // what the remote sends
//!
//! // The receive buffer has tailroom (engine TAILROOM = 64 >= any overhead).
//! let mut buf = [0u8; 1500];
//! buf[..12].copy_from_slice(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 42]);
//! let len = 12 + 160;
//!
//! // Plain in, SRTP out: grows by `rtp_overhead()` (the tag).
//! let len = encrypt.protect_rtp(&mut buf, len).unwrap();
//! assert_eq!(len, 172 + encrypt.rtp_overhead());
//!
//! // SRTP in: verified and decrypted in place; the tag is cut off.
//! let len = decrypt.unprotect_rtp(&mut buf, len).unwrap();
//! assert_eq!(len, 172);
//!
//! // Sending the same index twice is refused (a keystream is never reused);
//! // the receive side answers a duplicate the same way. Drop and count.
//! let mut again = buf;
//! assert_eq!(encrypt.protect_rtp(&mut again, 172), Err(SrtpError::Replayed));
//! ```
//!
//! Use `protect_rtcp` / `unprotect_rtcp` for RTCP (on a muxed port: the
//! second byte in 192..=223, RFC 5761 §4). Map
//! [`SrtpError`] to drop reasons: `AuthFailed` to an SRTP-auth drop,
//! `Replayed` and `TooOld` ([`SrtpError::is_replay`]) to an SRTP-replay drop,
//! `Malformed`/`BufferTooSmall` to a malformed drop, `IndexExhausted` to a
//! rekey-needed drop. [`SrtpError::as_str`] and [`SrtpError::index`] give
//! metric labels and counter slots.
#![forbid(unsafe_code)]

mod cipher;
mod context;
mod error;
mod kdf;
mod mac;
pub mod params;
mod replay;
mod rtcp;
mod streams;
#[cfg(test)]
mod vectors;

pub use context::SrtpContext;
pub use error::SrtpError;
pub use params::{KeyError, MasterKey, SrtpParams, Suite};
pub use replay::{MAX_REPLAY_WINDOW, MIN_REPLAY_WINDOW};
pub use streams::MAX_SSRCS;
