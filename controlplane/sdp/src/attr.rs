//! The attributes a relay acts on: rtpmap, rtcp, rtcp-mux, direction (crypto is in `crypto.rs`).
//!
//! ```text
//! a=<attribute-name>[:<attribute-value>]
//! a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]
//! a=rtcp:<port> [<nettype> <addrtype> <connection-address>]
//! a=sendrecv | a=sendonly | a=recvonly | a=inactive
//! ```
//!
//! Every other attribute, and an rtpmap the relay cannot read, is kept verbatim as `Other`.

use core::fmt;

use crate::crypto::Crypto;
use crate::error::Reason;
use crate::fields::{Connection, Decimal};

/// Which way media flows on a stream; `sendonly`/`inactive` from an offerer means hold.
///
/// RFC 8866 §6.7: <https://www.rfc-editor.org/rfc/rfc8866#section-6.7>
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `a=sendrecv`, the default when no direction is given.
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// Maps an attribute name to a direction, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }

    /// The attribute name for this direction.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    /// The direction the answerer sees: send and receive swap (RFC 3264 §6.1).
    pub const fn reversed(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            other => other,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dynamic payload type's codec: the relay needs the clock rate for jitter and timestamps.
///
/// RFC 8866 §6.6: <https://www.rfc-editor.org/rfc/rfc8866#section-6.6>
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtpmap {
    /// RTP payload type, 0..=127.
    pub payload_type: u8,
    /// Encoding name as written (`opus`, `PCMU`, `telephone-event`, ...).
    pub encoding: String,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Channels for audio (`/2`), absent means one.
    pub channels: Option<u16>,
}

impl Rtpmap {
    /// Parses the value after `a=rtpmap:`; `None` when unreadable (then kept as an unknown line).
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let mut it = value.split_ascii_whitespace();
        let (Some(pt), Some(codec), None) = (it.next(), it.next(), it.next()) else {
            return None;
        };
        let payload_type: u8 = pt.parse().ok().filter(|pt| *pt <= 127)?;
        let mut parts = codec.split('/');
        let encoding = parts.next().filter(|e| !e.is_empty())?.to_owned();
        let clock_rate = parts.next()?.parse().ok()?;
        let channels = match parts.next() {
            Some(ch) => Some(ch.parse().ok()?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            payload_type,
            encoding,
            clock_rate,
            channels,
        })
    }
}

impl fmt::Display for Rtpmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.payload_type, self.encoding, self.clock_rate
        )?;
        if let Some(ch) = self.channels {
            write!(f, "/{ch}")?;
        }
        Ok(())
    }
}

/// The RFC 3551 §6 static payload types: (encoding, clock rate, channels) for PT 0..=34.
///
/// <https://www.rfc-editor.org/rfc/rfc3551#section-6>
pub fn static_payload_type(pt: u8) -> Option<(&'static str, u32, u16)> {
    Some(match pt {
        0 => ("PCMU", 8000, 1),
        3 => ("GSM", 8000, 1),
        4 => ("G723", 8000, 1),
        5 => ("DVI4", 8000, 1),
        6 => ("DVI4", 16000, 1),
        7 => ("LPC", 8000, 1),
        8 => ("PCMA", 8000, 1),
        9 => ("G722", 8000, 1), // RFC 3551 §4.5.2: the RTP clock is 8000 though sampling is 16 kHz.
        10 => ("L16", 44100, 2),
        11 => ("L16", 44100, 1),
        12 => ("QCELP", 8000, 1),
        13 => ("CN", 8000, 1),
        14 => ("MPA", 90000, 1),
        15 => ("G728", 8000, 1),
        16 => ("DVI4", 11025, 1),
        17 => ("DVI4", 22050, 1),
        18 => ("G729", 8000, 1),
        25 => ("CelB", 90000, 1),
        26 => ("JPEG", 90000, 1),
        28 => ("nv", 90000, 1),
        31 => ("H261", 90000, 1),
        32 => ("MPV", 90000, 1),
        33 => ("MP2T", 90000, 1),
        34 => ("H263", 90000, 1),
        _ => return None,
    })
}

/// Where a stream's RTCP goes when it is not on RTP port + 1 (NATs, SBCs).
///
/// RFC 3605 §2.1: <https://www.rfc-editor.org/rfc/rfc3605#section-2.1>
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtcp {
    /// RTCP port.
    pub port: u16,
    /// RTCP address when it differs from the stream's c=.
    pub connection: Option<Connection>,
}

impl Rtcp {
    /// Parses the value after `a=rtcp:`.
    pub(crate) fn parse(value: &str) -> Result<Self, Reason> {
        let mut it = value.split_ascii_whitespace();
        let port = it.next().ok_or(Reason::BadRtcp)?;
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Reason::BadRtcp);
        }
        let port = port.parse().map_err(|_| Reason::BadRtcp)?;
        let mut rest = it.peekable();
        let connection = if rest.peek().is_some() {
            Some(Connection::parse_fields(rest).map_err(|_| Reason::BadRtcp)?)
        } else {
            None
        };
        Ok(Self { port, connection })
    }
}

impl Rtcp {
    /// Writes the value after `a=rtcp:` without `fmt::write` (every offer and
    /// answer rewrites it).
    pub(crate) fn write_into(&self, w: &mut impl fmt::Write) -> fmt::Result {
        w.write_str(Decimal::new(self.port).as_str())?;
        if let Some(c) = &self.connection {
            w.write_str(" ")?;
            c.write_into(w)?;
        }
        Ok(())
    }
}

impl fmt::Display for Rtcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_into(f)
    }
}

/// An `a=` line as far as the relay understands it; the text stays the source of truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attr {
    Rtpmap(Rtpmap),
    Rtcp(Rtcp),
    RtcpMux,
    Direction(Direction),
    Crypto(Crypto),
    Other,
}

impl Attr {
    /// Types an attribute; only a=rtcp and a=crypto are refused when malformed, as the relay
    /// would otherwise send RTCP or keys to the wrong place.
    pub(crate) fn parse(name: &str, value: Option<&str>) -> Result<Self, Reason> {
        if let Some(dir) = Direction::from_name(name) {
            return Ok(Self::Direction(dir));
        }
        Ok(match (name, value) {
            ("rtpmap", Some(v)) => Rtpmap::parse(v).map_or(Self::Other, Self::Rtpmap),
            ("rtcp", Some(v)) => Self::Rtcp(Rtcp::parse(v)?),
            ("rtcp", None) => return Err(Reason::BadRtcp),
            ("rtcp-mux", _) => Self::RtcpMux,
            ("crypto", Some(v)) => Self::Crypto(Crypto::parse(v)?),
            ("crypto", None) => return Err(Reason::BadCrypto),
            _ => Self::Other,
        })
    }
}

/// True for the ICE attributes a relay strips when it anchors media (RFC 8839 §5).
pub(crate) fn is_ice(name: &str) -> bool {
    name.starts_with("ice-")
        || matches!(
            name,
            "candidate" | "remote-candidates" | "end-of-candidates"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtpmap_forms() {
        let r = Rtpmap::parse("111 opus/48000/2").unwrap();
        assert_eq!(
            (
                r.payload_type,
                r.encoding.as_str(),
                r.clock_rate,
                r.channels
            ),
            (111, "opus", 48000, Some(2))
        );
        assert_eq!(r.to_string(), "111 opus/48000/2");
        let r = Rtpmap::parse("101 telephone-event/8000").unwrap();
        assert_eq!((r.clock_rate, r.channels), (8000, None));
        for bad in [
            "128 x/8000",
            "96 /8000",
            "96 VP8",
            "96 VP8/x",
            "96 a/1/2/3",
            "x VP8/90000",
            "96",
        ] {
            assert_eq!(Rtpmap::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn rtcp_with_and_without_address() {
        let r = Rtcp::parse("53020").unwrap();
        assert_eq!((r.port, r.connection), (53020, None));
        let r = Rtcp::parse("53020 IN IP6 2001:db8::9").unwrap();
        assert_eq!(
            r.connection.as_ref().unwrap().address.to_string(),
            "2001:db8::9"
        );
        assert_eq!(r.to_string(), "53020 IN IP6 2001:db8::9");
        for bad in ["", "x", "70000", "5 IN IP4", "5 IN IP6 192.0.2.1", "-1"] {
            assert_eq!(Rtcp::parse(bad), Err(Reason::BadRtcp), "{bad}");
        }
    }

    #[test]
    fn static_table_matches_rfc3551() {
        assert_eq!(static_payload_type(0), Some(("PCMU", 8000, 1)));
        assert_eq!(static_payload_type(9).map(|p| p.1), Some(8000));
        assert_eq!(static_payload_type(10), Some(("L16", 44100, 2)));
        assert_eq!(static_payload_type(34).map(|p| p.1), Some(90000));
        for unassigned in [1, 2, 19, 20, 24, 27, 29, 30, 35, 96] {
            assert_eq!(static_payload_type(unassigned), None, "{unassigned}");
        }
    }

    #[test]
    fn directions_and_ice_names() {
        assert_eq!(Direction::from_name("sendonly"), Some(Direction::SendOnly));
        assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
        assert_eq!(Direction::Inactive.reversed(), Direction::Inactive);
        assert_eq!(Direction::from_name("sendrecv2"), None);
        for name in [
            "ice-ufrag",
            "ice-pwd",
            "ice-lite",
            "ice-options",
            "ice-mismatch",
        ] {
            assert!(is_ice(name), "{name}");
        }
        assert!(is_ice("candidate") && is_ice("remote-candidates") && is_ice("end-of-candidates"));
        assert!(!is_ice("mid") && !is_ice("icecream"));
    }
}
