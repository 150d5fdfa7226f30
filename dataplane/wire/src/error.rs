//! The one error type of the wire views: a `Copy` value the hot path can count.

use core::fmt;

/// Why a byte slice is not a valid packet of the expected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// Shorter than the fixed header, or than a length field inside it claims.
    Truncated,
    /// Version field is not 2 (RFC 3550 §5.1, §6.4.1).
    BadVersion,
    /// Padding flag set but the pad count is zero or runs into the header.
    BadPadding,
    /// A header extension whose length runs past the packet.
    BadExtension,
    /// A length or count field that cannot describe this packet.
    BadLength,
}

impl WireError {
    /// A stable name for counters and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::BadVersion => "bad_version",
            WireError::BadPadding => "bad_padding",
            WireError::BadExtension => "bad_extension",
            WireError::BadLength => "bad_length",
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "packet truncated",
            WireError::BadVersion => "version is not 2",
            WireError::BadPadding => "invalid padding length",
            WireError::BadExtension => "header extension runs past the packet",
            WireError::BadLength => "length or count field is inconsistent",
        })
    }
}

impl std::error::Error for WireError {}

/// Result of a wire-format check.
pub type Result<T> = core::result::Result<T, WireError>;
