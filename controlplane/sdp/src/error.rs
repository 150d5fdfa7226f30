//! Parse errors: which line, and why, so an operator can fix the peer's SDP.

/// A malformed SDP, with the 1-based line it was found on (0 for a line added by a rewrite).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {reason}")]
pub struct SdpError {
    /// 1-based line number in the parsed text; 0 when the line did not come from the input.
    pub line: usize,
    /// What is wrong with that line.
    pub reason: Reason,
}

impl SdpError {
    /// Ties a reason to the line it was found on.
    pub const fn new(line: usize, reason: Reason) -> Self {
        Self { line, reason }
    }
}

/// Why a line was refused; `Copy` so callers can match and count without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// The input holds no line at all.
    #[error("the SDP is empty")]
    Empty,
    /// The bytes are not UTF-8 (RFC 8866 §5 text is UTF-8 / US-ASCII).
    #[error("the SDP is not valid UTF-8")]
    NotUtf8,
    /// RFC 8866 §5: the first line must be `v=`.
    #[error("the first line must be v=0")]
    MissingVersion,
    /// RFC 8866 §5.1: only version 0 exists.
    #[error("unsupported SDP version (only v=0 exists)")]
    BadVersion,
    /// Not of the form `<letter>=<value>`.
    #[error("line is not of the form <type>=<value>")]
    BadLineSyntax,
    /// RFC 8866 §5.2 needs six fields.
    #[error("o= needs: username sess-id sess-version nettype addrtype address")]
    BadOrigin,
    /// RFC 8866 §5.7: the relay needs `IN IP4|IP6 <ip>` with a matching address family.
    #[error("c= must be 'IN IP4 <ipv4>' or 'IN IP6 <ipv6>'")]
    BadConnection,
    /// RFC 8866 §5.14: `m=<media> <port>[/<count>] <proto> <fmt> ...`.
    #[error("m= needs: media port[/count] proto [formats]")]
    BadMediaLine,
    /// The m= port (or its /count) is not a number in 0..=65535.
    #[error("m= port is not a number in 0..=65535")]
    BadMediaPort,
    /// RFC 3605 §2.1: `a=rtcp:<port> [IN IP4|IP6 <address>]`.
    #[error("a=rtcp must be '<port> [IN IP4|IP6 <address>]'")]
    BadRtcp,
    /// RFC 4568 §9.1: `a=crypto:<tag> <suite> <key-params> [<session-params>]`.
    #[error("a=crypto must be '<tag> <suite> <method>:<info>[;...] [params]'")]
    BadCrypto,
    /// RFC 4568 §6.1: the inline key is not base64.
    #[error("a=crypto inline key is not valid base64")]
    BadCryptoKey,
    /// RFC 4568 §6.1: lifetime or MKI is not `[2^]n` / `<mki>:<length>`.
    #[error("a=crypto lifetime or MKI is malformed")]
    BadCryptoLifetimeOrMki,
    /// More m= lines than [`crate::MAX_MEDIA`]: each costs the relay ports, so one
    /// description cannot drain the pool.
    #[error("too many m= lines (more than 64)")]
    TooManyMedia,
    /// An attribute added through the API has a name that cannot appear on an `a=` line.
    #[error("attribute name must be a non-empty token without ':' or whitespace")]
    BadAttributeName,
}
