//! The SRTP step of the packet path: per-flow contexts built when a rule is
//! installed, and the in-place decrypt/encrypt calls with their drop reasons.
//!
//! A context is ~2 KiB (session keys, per-SSRC ROC and replay windows), so each one
//! lives in its own box, allocated at `insert`/`update`, never per packet. The two
//! pointers of a flow sit in a dense array beside the flow slots (`FlowTable`), so
//! a packet starts loading its cache-cold context before its slot's miss resolves.

use ferrelay_srtp::{MasterKey, SrtpContext, SrtpError, SrtpParams, Suite};

use crate::error::{DropReason, EngineError};
use crate::rule::CryptoSpec;

/// Whether a datagram is RTP or RTCP, which picks the SRTP or SRTCP transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Rtp,
    Rtcp,
}

/// A context with the suite and master key it was built from: an update compares
/// them with the new rule's, so the flow slot need not keep the rule's SRTP
/// parameters (104 bytes in every slot, SRTP or not).
#[derive(Debug)]
pub(crate) struct Keyed {
    pub ctx: SrtpContext,
    suite: Suite,
    key: MasterKey,
}

/// The live SRTP contexts of one flow; both `None` for plain forwarding.
#[derive(Debug, Default)]
pub(crate) struct FlowCrypto {
    /// Verifies and decrypts what the flow's remote sends (`CryptoSpec.decrypt`).
    pub decrypt: Option<Box<Keyed>>,
    /// Encrypts what the flow forwards, after every rewrite (`CryptoSpec.encrypt`).
    pub encrypt: Option<Box<Keyed>>,
}

/// What an update does to one direction's context.
#[derive(Debug)]
pub(crate) enum Change {
    /// Same suite and master key: keep the context, its ROCs and replay windows.
    Keep,
    /// New, removed or changed keys: install this (a fresh context, or none).
    Replace(Option<Box<Keyed>>),
}

impl FlowCrypto {
    /// Builds the contexts a new rule asks for.
    pub(crate) fn build(spec: &CryptoSpec) -> Result<FlowCrypto, EngineError> {
        Ok(FlowCrypto {
            decrypt: spec.decrypt.as_ref().map(context).transpose()?,
            encrypt: spec.encrypt.as_ref().map(context).transpose()?,
        })
    }

    /// Starts loading both contexts' hot lines (see `SrtpContext::prefetch`).
    #[inline]
    pub(crate) fn prefetch(&self) {
        if let Some(c) = &self.decrypt {
            c.ctx.prefetch();
        }
        if let Some(c) = &self.encrypt {
            c.ctx.prefetch();
        }
    }

    /// Applies a change prepared by [`change`] (which cannot fail any more).
    pub(crate) fn apply(&mut self, decrypt: Change, encrypt: Change) {
        if let Change::Replace(c) = decrypt {
            self.decrypt = c;
        }
        if let Change::Replace(c) = encrypt {
            self.encrypt = c;
        }
    }
}

/// Decides what an update from `old` to `new` keys does, building any new context
/// first so a refused key leaves the flow untouched.
///
/// Same suite and key keep the context even if the replay window changed: a fresh
/// context under the same key would forget which indices were sent and could reuse
/// a keystream (RFC 3711 §9.1), and would reset the ROC the peers agree on.
pub(crate) fn change(old: Option<&Keyed>, new: Option<&SrtpParams>) -> Result<Change, EngineError> {
    match (old, new) {
        (Some(o), Some(n)) if o.suite == n.suite && o.key == n.key => Ok(Change::Keep),
        (None, None) => Ok(Change::Keep),
        (_, n) => Ok(Change::Replace(n.map(context).transpose()?)),
    }
}

/// One boxed context; key bytes never reach the error (it is a unit variant).
fn context(params: &SrtpParams) -> Result<Box<Keyed>, EngineError> {
    let ctx = SrtpContext::new(params).map_err(|_| EngineError::BadKey)?;
    Ok(Box::new(Keyed {
        ctx,
        suite: params.suite,
        key: params.key.clone(),
    }))
}

/// Verifies and decrypts `buf[..len]` in place; returns the plain length
/// (RFC 3711 §3.3 for SRTP, §3.4 for SRTCP).
#[inline]
pub(crate) fn unprotect(
    ctx: &mut SrtpContext,
    kind: Kind,
    buf: &mut [u8],
    len: usize,
) -> Result<usize, DropReason> {
    match kind {
        Kind::Rtp => ctx.unprotect_rtp(buf, len),
        Kind::Rtcp => ctx.unprotect_rtcp(buf, len),
    }
    .map_err(drop_reason)
}

/// Encrypts `buf[..len]` in place and appends the tag (and SRTCP index) into the
/// tailroom; returns the grown length.
#[inline]
pub(crate) fn protect(
    ctx: &mut SrtpContext,
    kind: Kind,
    buf: &mut [u8],
    len: usize,
) -> Result<usize, DropReason> {
    match kind {
        Kind::Rtp => ctx.protect_rtp(buf, len),
        Kind::Rtcp => ctx.protect_rtcp(buf, len),
    }
    .map_err(drop_reason)
}

/// The counter a failed transform bumps.
#[inline]
fn drop_reason(e: SrtpError) -> DropReason {
    match e {
        SrtpError::Malformed => DropReason::Malformed,
        SrtpError::BufferTooSmall => DropReason::NoTailroom,
        SrtpError::AuthFailed => DropReason::SrtpAuth,
        SrtpError::Replayed | SrtpError::TooOld => DropReason::SrtpReplay,
        SrtpError::IndexExhausted => DropReason::SrtpRekey,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrelay_srtp::{MasterKey, Suite};

    fn params(suite: Suite, fill: u8, window: u16) -> SrtpParams {
        let material = vec![fill; suite.key_len() + suite.salt_len()];
        SrtpParams {
            suite,
            key: MasterKey::from_concatenated(suite, &material).unwrap(),
            replay_window: window,
        }
    }

    #[test]
    fn every_srtp_error_has_its_drop_reason() {
        let want = [
            (SrtpError::Malformed, DropReason::Malformed),
            (SrtpError::BufferTooSmall, DropReason::NoTailroom),
            (SrtpError::AuthFailed, DropReason::SrtpAuth),
            (SrtpError::Replayed, DropReason::SrtpReplay),
            (SrtpError::TooOld, DropReason::SrtpReplay),
            (SrtpError::IndexExhausted, DropReason::SrtpRekey),
        ];
        assert_eq!(want.len(), SrtpError::ALL.len());
        for (e, r) in want {
            assert_eq!(drop_reason(e), r, "{e}");
        }
    }

    #[test]
    fn same_key_keeps_and_other_keys_replace() {
        let a = params(Suite::AesCm128HmacSha1_80, 1, 128);
        let wider = params(Suite::AesCm128HmacSha1_80, 1, 512);
        let b = params(Suite::AesCm128HmacSha1_80, 2, 128);
        let gcm = params(Suite::AeadAes128Gcm, 1, 128);
        // The context built from `a` remembers its suite and key.
        let ka = context(&a).unwrap();
        let a = &*ka;
        assert!(matches!(
            change(Some(a), Some(&params(Suite::AesCm128HmacSha1_80, 1, 128))),
            Ok(Change::Keep)
        ));
        assert!(matches!(change(Some(a), Some(&wider)), Ok(Change::Keep)));
        assert!(matches!(change(None, None), Ok(Change::Keep)));
        assert!(matches!(
            change(Some(a), Some(&b)),
            Ok(Change::Replace(Some(_)))
        ));
        assert!(matches!(
            change(Some(a), Some(&gcm)),
            Ok(Change::Replace(Some(_)))
        ));
        assert!(matches!(change(Some(a), None), Ok(Change::Replace(None))));
        assert!(matches!(
            change(None, Some(&params(Suite::AesCm128HmacSha1_80, 1, 128))),
            Ok(Change::Replace(Some(_)))
        ));
    }

    #[test]
    fn key_of_the_wrong_suite_is_refused() {
        let mut p = params(Suite::AesCm128HmacSha1_80, 1, 128);
        p.suite = Suite::AesCm256HmacSha1_80;
        assert_eq!(change(None, Some(&p)).unwrap_err(), EngineError::BadKey);
        let spec = CryptoSpec {
            decrypt: None,
            encrypt: Some(p),
        };
        assert_eq!(FlowCrypto::build(&spec).unwrap_err(), EngineError::BadKey);
    }
}
