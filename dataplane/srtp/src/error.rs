//! Per-packet failures: `Copy` values the engine turns into drop counters.

use std::fmt;

/// Why one packet could not be protected or unprotected.
///
/// Every variant is a per-packet verdict: the context stays usable and the
/// packet should be dropped and counted, never logged one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpError {
    /// Too short for its RTP/RTCP header, tag or trailer, or not version 2.
    Malformed,
    /// `buf` has no tailroom for the tag (and SRTCP index) the transform appends.
    BufferTooSmall,
    /// The authentication tag did not verify (RFC 3711 §3.3 step 5, RFC 7714 §7.2).
    AuthFailed,
    /// The packet index was already received inside the replay window (RFC 3711 §3.3.2).
    Replayed,
    /// The packet index is older than the replay window reaches (RFC 3711 §3.3.2).
    TooOld,
    /// The ROC or SRTCP index would wrap: the master key must be replaced (RFC 3711 §9.2).
    IndexExhausted,
}

impl SrtpError {
    /// Every variant, in `index()` order, so counter arrays can be labelled.
    pub const ALL: [SrtpError; 6] = [
        SrtpError::Malformed,
        SrtpError::BufferTooSmall,
        SrtpError::AuthFailed,
        SrtpError::Replayed,
        SrtpError::TooOld,
        SrtpError::IndexExhausted,
    ];

    /// Short stable name for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SrtpError::Malformed => "srtp_malformed",
            SrtpError::BufferTooSmall => "srtp_no_tailroom",
            SrtpError::AuthFailed => "srtp_auth",
            SrtpError::Replayed => "srtp_replay",
            SrtpError::TooOld => "srtp_too_old",
            SrtpError::IndexExhausted => "srtp_index_exhausted",
        }
    }

    /// Position in [`SrtpError::ALL`], for per-reason counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// True for both replay verdicts (duplicate and older than the window).
    pub fn is_replay(self) -> bool {
        matches!(self, SrtpError::Replayed | SrtpError::TooOld)
    }
}

impl fmt::Display for SrtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for SrtpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_all_order_and_names_are_distinct() {
        for (i, e) in SrtpError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
        let mut names: Vec<_> = SrtpError::ALL.iter().map(|e| e.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SrtpError::ALL.len());
        assert!(SrtpError::Replayed.is_replay() && SrtpError::TooOld.is_replay());
        assert!(!SrtpError::AuthFailed.is_replay());
    }
}
