//! The structured session and media fields: o=, c= and m=.
//!
//! ```text
//! o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>
//! c=<nettype> <addrtype> <connection-address>[/<ttl>][/<number of addresses>]
//! m=<media> <port>[/<number of ports>] <proto> <fmt> ...
//! ```
//!
//! Fields are split on runs of spaces or tabs (lenient, as rtpengine is) and written back
//! with single spaces only when the relay changes the line.

use core::fmt;
use std::net::IpAddr;

use crate::error::Reason;

/// The origin (`o=`), which names the session; the relay rewrites its address and version.
///
/// RFC 8866 §5.2: <https://www.rfc-editor.org/rfc/rfc8866#section-5.2>
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The user's login on the originating host, or `-`.
    pub username: String,
    /// Numeric session id, kept as text: peers send ids longer than 64 bits.
    pub session_id: String,
    /// Numeric version, kept as text; bumped by [`crate::Sdp::bump_version`].
    pub session_version: String,
    /// Network type, `IN` in practice.
    pub nettype: String,
    /// Address type, `IP4` or `IP6`.
    pub addrtype: String,
    /// Unicast address or FQDN of the originating host.
    pub address: String,
}

impl Origin {
    /// Checks what `parse` checks, without building the fields.
    pub(crate) fn check(value: &str) -> Result<(), Reason> {
        match value.split_ascii_whitespace().count() {
            6 => Ok(()),
            _ => Err(Reason::BadOrigin),
        }
    }

    pub(crate) fn parse(value: &str) -> Result<Self, Reason> {
        let mut it = value.split_ascii_whitespace();
        let mut next = || it.next().map(str::to_owned).ok_or(Reason::BadOrigin);
        let origin = Self {
            username: next()?,
            session_id: next()?,
            session_version: next()?,
            nettype: next()?,
            addrtype: next()?,
            address: next()?,
        };
        if it.next().is_some() {
            return Err(Reason::BadOrigin);
        }
        Ok(origin)
    }

    /// Adds one to a decimal version (digit-wise, so any length works); `false` if not decimal.
    pub(crate) fn bump_version(&mut self) -> bool {
        if self.session_version.is_empty()
            || !self.session_version.bytes().all(|b| b.is_ascii_digit())
        {
            return false;
        }
        let mut digits = self.session_version.clone().into_bytes();
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
        self.session_version = digits.into_iter().map(char::from).collect();
        true
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.session_id,
            self.session_version,
            self.nettype,
            self.addrtype,
            self.address
        )
    }
}

/// An address as text in a stack buffer, the same text as `IpAddr`'s `Display`:
/// IPv4 is written digit by digit, without `fmt`, for the lines and replies the
/// relay writes on every offer and answer.
#[derive(Debug, Clone, Copy)]
pub struct IpText {
    /// `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255` is the longest text.
    buf: [u8; 45],
    len: usize,
}

impl IpText {
    pub fn new(ip: IpAddr) -> Self {
        let mut t = IpText {
            buf: [0; 45],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, o) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    if o >= 100 {
                        t.push(b'0' + o / 100);
                    }
                    if o >= 10 {
                        t.push(b'0' + o / 10 % 10);
                    }
                    t.push(b'0' + o % 10);
                }
            }
            IpAddr::V6(v6) => {
                // Cannot fail: the buffer holds the longest IPv6 text.
                let _ = fmt::write(&mut t, format_args!("{v6}"));
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The `IP4` / `IP6` address type word for an address.
pub(crate) const fn addrtype(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// Connection data (`c=`): where the media is, which is what the relay replaces with itself.
///
/// RFC 8866 §5.7: <https://www.rfc-editor.org/rfc/rfc8866#section-5.7>
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The address; its family decides `IP4` or `IP6` on output.
    pub address: IpAddr,
    /// Multicast `/<ttl>[/<count>]` suffix as written (empty for unicast).
    pub suffix: String,
}

impl Connection {
    /// A unicast connection to `address`.
    pub fn new(address: IpAddr) -> Self {
        Self {
            address,
            suffix: String::new(),
        }
    }

    /// True for 0.0.0.0 or `::`, the RFC 2543 way of putting a stream on hold.
    pub fn is_unspecified(&self) -> bool {
        self.address.is_unspecified()
    }

    /// Parses `IN IP4|IP6 <address>[/...]`; also the tail of RFC 3605 `a=rtcp`.
    pub(crate) fn parse_fields<'a>(mut it: impl Iterator<Item = &'a str>) -> Result<Self, Reason> {
        let (Some(net), Some(ty), Some(addr), None) = (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(Reason::BadConnection);
        };
        if !net.eq_ignore_ascii_case("IN") {
            return Err(Reason::BadConnection);
        }
        let (host, suffix) = match addr.find('/') {
            Some(i) => (&addr[..i], &addr[i..]),
            None => (addr, ""),
        };
        let address: IpAddr = host.parse().map_err(|_| Reason::BadConnection)?;
        let family_ok = match address {
            IpAddr::V4(_) => ty.eq_ignore_ascii_case("IP4"),
            IpAddr::V6(_) => ty.eq_ignore_ascii_case("IP6"),
        };
        if !family_ok {
            return Err(Reason::BadConnection);
        }
        Ok(Self {
            address,
            suffix: suffix.to_owned(),
        })
    }

    pub(crate) fn parse(value: &str) -> Result<Self, Reason> {
        Self::parse_fields(value.split_ascii_whitespace())
    }

    /// The text after `c=` in pieces, so a line is built in one allocation.
    fn pieces<'a>(&'a self, ip: &'a IpText) -> [&'a str; 5] {
        [
            "IN ",
            addrtype(self.address),
            " ",
            ip.as_str(),
            &self.suffix,
        ]
    }

    /// The whole `c=` line, without `fmt`.
    pub(crate) fn line(&self) -> String {
        let ip = IpText::new(self.address);
        let pieces = self.pieces(&ip);
        let mut text = String::with_capacity(2 + pieces.iter().map(|p| p.len()).sum::<usize>());
        text.push_str("c=");
        pieces.iter().for_each(|p| text.push_str(p));
        text
    }
}

impl Connection {
    /// Writes the text after `c=` (also the tail of `a=rtcp`) without `fmt::write`.
    pub(crate) fn write_into(&self, w: &mut impl fmt::Write) -> fmt::Result {
        let ip = IpText::new(self.address);
        self.pieces(&ip).iter().try_for_each(|p| w.write_str(p))
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_into(f)
    }
}

/// The transport protocol of an m= line; decides RTP vs SRTP and AVP vs AVPF on each leg.
///
/// RFC 8866 §5.14, RFC 3711 §12 (SAVP), RFC 5124 (SAVPF), RFC 5764 §8 (UDP/TLS/...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Proto {
    /// `RTP/AVP`, plain RTP (RFC 3551).
    RtpAvp,
    /// `RTP/AVPF`, plain RTP with RTCP feedback (RFC 4585).
    RtpAvpf,
    /// `RTP/SAVP`, SRTP (RFC 3711), SDES keys in practice.
    RtpSavp,
    /// `RTP/SAVPF`, SRTP with feedback (RFC 5124).
    RtpSavpf,
    /// `UDP/TLS/RTP/SAVP`, DTLS-SRTP (RFC 5764).
    UdpTlsRtpSavp,
    /// `UDP/TLS/RTP/SAVPF`, DTLS-SRTP with feedback, the WebRTC profile.
    UdpTlsRtpSavpf,
    /// Anything else (`udp`, `UDP/BFCP`, `UDP/DTLS/SCTP`, ...), kept verbatim; must be one token.
    Other(String),
}

impl Proto {
    /// Maps the m= proto token; unknown tokens are kept as [`Proto::Other`].
    pub fn parse(token: &str) -> Self {
        match token {
            "RTP/AVP" => Self::RtpAvp,
            "RTP/AVPF" => Self::RtpAvpf,
            "RTP/SAVP" => Self::RtpSavp,
            "RTP/SAVPF" => Self::RtpSavpf,
            "UDP/TLS/RTP/SAVP" => Self::UdpTlsRtpSavp,
            "UDP/TLS/RTP/SAVPF" => Self::UdpTlsRtpSavpf,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The token as it appears on the m= line.
    pub fn as_str(&self) -> &str {
        match self {
            Self::RtpAvp => "RTP/AVP",
            Self::RtpAvpf => "RTP/AVPF",
            Self::RtpSavp => "RTP/SAVP",
            Self::RtpSavpf => "RTP/SAVPF",
            Self::UdpTlsRtpSavp => "UDP/TLS/RTP/SAVP",
            Self::UdpTlsRtpSavpf => "UDP/TLS/RTP/SAVPF",
            Self::Other(s) => s,
        }
    }

    /// True when the stream carries RTP, so the relay can anchor it.
    pub fn is_rtp(&self) -> bool {
        !matches!(self, Self::Other(_))
    }

    /// True for the SRTP profiles (SDES or DTLS keyed).
    pub fn is_srtp(&self) -> bool {
        matches!(
            self,
            Self::RtpSavp | Self::RtpSavpf | Self::UdpTlsRtpSavp | Self::UdpTlsRtpSavpf
        )
    }

    /// True when keys come from DTLS rather than a=crypto.
    pub fn is_dtls(&self) -> bool {
        matches!(self, Self::UdpTlsRtpSavp | Self::UdpTlsRtpSavpf)
    }

    /// True for the AVPF (RTCP feedback) profiles.
    pub fn is_feedback(&self) -> bool {
        matches!(self, Self::RtpAvpf | Self::RtpSavpf | Self::UdpTlsRtpSavpf)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parsed m= line.
///
/// RFC 8866 §5.14: <https://www.rfc-editor.org/rfc/rfc8866#section-5.14>
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaLine {
    pub media: String,
    pub port: u16,
    pub port_count: Option<u16>,
    pub proto: Proto,
    /// The formats, one space between each.
    pub formats: String,
}

impl MediaLine {
    pub(crate) fn parse(value: &str) -> Result<Self, Reason> {
        let mut it = value.split_ascii_whitespace();
        let (Some(media), Some(port), Some(proto)) = (it.next(), it.next(), it.next()) else {
            return Err(Reason::BadMediaLine);
        };
        let (port, port_count) = match port.split_once('/') {
            Some((p, n)) => (p, Some(parse_u16(n)?)),
            None => (port, None),
        };
        Ok(Self {
            media: media.to_owned(),
            port: parse_u16(port)?,
            port_count,
            proto: Proto::parse(proto),
            formats: join(it),
        })
    }
}

/// The words with one space between each (one allocation for an m= line's
/// formats, not one per format).
pub(crate) fn join<'a>(words: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for w in words {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// Strict decimal u16: digits only, so `+5` or `0x10` are refused.
fn parse_u16(s: &str) -> Result<u16, Reason> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reason::BadMediaPort);
    }
    s.parse().map_err(|_| Reason::BadMediaPort)
}

impl MediaLine {
    /// Writes the line's value piece by piece: into a `String` when the relay
    /// rewrites m= on every offer and answer (no `fmt::write`), or a formatter.
    pub(crate) fn write_into(&self, w: &mut impl fmt::Write) -> fmt::Result {
        w.write_str(&self.media)?;
        w.write_str(" ")?;
        w.write_str(Decimal::new(self.port).as_str())?;
        if let Some(n) = self.port_count {
            w.write_str("/")?;
            w.write_str(Decimal::new(n).as_str())?;
        }
        w.write_str(" ")?;
        w.write_str(self.proto.as_str())?;
        if !self.formats.is_empty() {
            w.write_str(" ")?;
            w.write_str(&self.formats)?;
        }
        Ok(())
    }
}

impl fmt::Display for MediaLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_into(f)
    }
}

/// A `u16` in decimal on the stack, without `fmt`.
pub(crate) struct Decimal {
    buf: [u8; 5],
    start: usize,
}

impl Decimal {
    pub(crate) fn new(mut n: u16) -> Self {
        let mut d = Decimal {
            buf: [b'0'; 5],
            start: 5,
        };
        loop {
            d.start -= 1;
            d.buf[d.start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return d;
            }
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits are ever written.
        core::str::from_utf8(&self.buf[self.start..]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_fields_and_bump() {
        let mut o = Origin::parse("- 4858 9 IN IP4 192.0.2.1").unwrap();
        assert_eq!(o.session_id, "4858");
        assert_eq!(o.address, "192.0.2.1");
        assert!(o.bump_version());
        assert_eq!(o.session_version, "10");
        o.session_version = "99999999999999999999999".into();
        assert!(o.bump_version());
        assert_eq!(o.session_version, "100000000000000000000000");
        o.session_version = "x1".into();
        assert!(!o.bump_version());
        assert_eq!(Origin::parse("- 1 2 IN IP4"), Err(Reason::BadOrigin));
        assert_eq!(Origin::parse("- 1 2 IN IP4 a b"), Err(Reason::BadOrigin));
    }

    #[test]
    fn ip_text_reads_as_display() {
        for a in [
            "0.0.0.0",
            "9.10.99.100",
            "192.168.109.255",
            "255.255.255.255",
            "::",
            "::1",
            "2001:db8::8:800:200c:417a",
            "::ffff:192.0.2.128",
            "::ffff:255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(IpText::new(ip).as_str(), ip.to_string(), "{a}");
        }
    }

    #[test]
    fn connection_families_and_suffix() {
        let c = Connection::parse("IN IP4 224.2.1.1/127/3").unwrap();
        assert_eq!(c.address, "224.2.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(c.to_string(), "IN IP4 224.2.1.1/127/3");
        let c = Connection::parse("IN IP6 2001:db8::1").unwrap();
        assert_eq!(c.to_string(), "IN IP6 2001:db8::1");
        assert_eq!(c.line(), "c=IN IP6 2001:db8::1");
        assert!(
            Connection::parse("IN IP4 0.0.0.0")
                .unwrap()
                .is_unspecified()
        );
        for bad in [
            "IN IP4",
            "IN IP6 192.0.2.1",
            "IN IP4 2001:db8::1",
            "ATM NSAP 1",
            "IN IP4 host.example",
            "IN IP4 1.2.3.4 x",
        ] {
            assert_eq!(Connection::parse(bad), Err(Reason::BadConnection), "{bad}");
        }
    }

    #[test]
    fn media_line_ports_and_formats() {
        let m = MediaLine::parse("video 49170/2 RTP/AVP 31 32").unwrap();
        assert_eq!((m.port, m.port_count), (49170, Some(2)));
        assert_eq!(m.formats, "31 32");
        assert_eq!(m.to_string(), "video 49170/2 RTP/AVP 31 32");
        for n in [0, 7, 10, 99, 100, 9999, 10000, u16::MAX] {
            assert_eq!(Decimal::new(n).as_str(), n.to_string());
        }
        let m = MediaLine::parse("application 9 UDP/DTLS/SCTP webrtc-datachannel").unwrap();
        assert_eq!(m.proto, Proto::Other("UDP/DTLS/SCTP".into()));
        for bad in [
            "audio 65536 RTP/AVP 0",
            "audio -1 RTP/AVP 0",
            "audio x RTP/AVP 0",
            "audio 5/ RTP/AVP 0",
            "audio +5 RTP/AVP 0",
        ] {
            assert_eq!(MediaLine::parse(bad), Err(Reason::BadMediaPort), "{bad}");
        }
        assert_eq!(MediaLine::parse("audio 5000"), Err(Reason::BadMediaLine));
    }

    #[test]
    fn proto_classes() {
        assert!(Proto::parse("RTP/SAVPF").is_srtp());
        assert!(Proto::parse("UDP/TLS/RTP/SAVPF").is_dtls());
        assert!(!Proto::parse("RTP/AVP").is_srtp());
        assert!(Proto::parse("RTP/AVPF").is_feedback());
        assert!(!Proto::parse("udp").is_rtp());
        assert_eq!(
            Proto::parse("UDP/TLS/RTP/SAVP").as_str(),
            "UDP/TLS/RTP/SAVP"
        );
    }
}
