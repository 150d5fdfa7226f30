//! One media section: the `m=` line and the lines under it, with the accessors and
//! rewrites a relay needs to anchor the stream.
//!
//! ```text
//! m=audio 49170 RTP/AVP 0 8 101      RFC 8866 §5.14
//! c=IN IP4 192.0.2.10                 optional; else the session c= applies
//! a=rtcp:49171                        RFC 3605; else RTCP is on port + 1
//! a=rtcp-mux                          RFC 5761; RTCP shares the RTP port
//! a=sendrecv                          RFC 8866 §6.7
//! a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:...   RFC 4568
//! ```

use std::net::{IpAddr, SocketAddr};

use crate::attr::{Attr, Direction, Rtcp, Rtpmap, is_ice, static_payload_type};
use crate::crypto::Crypto;
use crate::error::SdpError;
use crate::fields::{Connection, MediaLine, Proto};
use crate::line::{Eol, Kind, Line, append_index, attribute_line};
use crate::session::{Sdp, set_connection_in};

/// One `m=` section, its lines kept in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub(crate) header: Line,
    pub(crate) m: MediaLine,
    pub(crate) lines: Vec<Line>,
    pub(crate) eol: Eol,
}

impl Media {
    /// Media type: `audio`, `video`, `application`, `image`, ...
    pub fn media_type(&self) -> &str {
        &self.m.media
    }

    /// The port from m=; 0 means the stream is rejected or disabled.
    pub fn port(&self) -> u16 {
        self.m.port
    }

    /// The `/<number of ports>` of m=, when given.
    pub fn port_count(&self) -> Option<u16> {
        self.m.port_count
    }

    /// The transport protocol.
    pub fn proto(&self) -> &Proto {
        &self.m.proto
    }

    /// The format list as written (payload types for RTP).
    pub fn formats(&self) -> impl Iterator<Item = &str> + '_ {
        self.m.formats.split_ascii_whitespace()
    }

    /// The formats that are RTP payload types (0..=127), in offer order.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats()
            .filter_map(|f| f.parse::<u8>().ok().filter(|pt| *pt <= 127))
    }

    /// RFC 3264 §6: port 0 rejects (or, in an offer, disables) the stream.
    pub fn is_rejected(&self) -> bool {
        self.m.port == 0
    }

    /// The media-level c=, if this section has its own.
    pub fn connection(&self) -> Option<&Connection> {
        self.lines.iter().find_map(|l| match &l.kind {
            Kind::Connection(c) => Some(c),
            _ => None,
        })
    }

    /// The c= that applies: this section's own, else the session's (RFC 8866 §5.7).
    pub fn effective_connection<'a>(&'a self, sdp: &'a Sdp) -> Option<&'a Connection> {
        self.connection().or_else(|| sdp.connection())
    }

    /// Where the peer wants RTP: effective c= address and m= port.
    pub fn rtp_addr(&self, sdp: &Sdp) -> Option<SocketAddr> {
        self.effective_connection(sdp)
            .map(|c| SocketAddr::new(c.address, self.m.port))
    }

    /// The a=rtcp line, if any.
    pub fn rtcp(&self) -> Option<&Rtcp> {
        self.lines.iter().find_map(|l| match &l.kind {
            Kind::Attr(Attr::Rtcp(r)) => Some(r),
            _ => None,
        })
    }

    /// RTCP port: a=rtcp (RFC 3605) else RTP port + 1 (RFC 3550 §11).
    ///
    /// `None` for a rejected stream (port 0) without a=rtcp, or past 65535. With
    /// [`Media::rtcp_mux`] the peer sends RTCP on the RTP port instead.
    pub fn rtcp_port(&self) -> Option<u16> {
        match self.rtcp() {
            Some(r) => Some(r.port),
            None if self.m.port == 0 => None,
            None => self.m.port.checked_add(1),
        }
    }

    /// Where the peer wants RTCP: a=rtcp address else the effective c=, at [`Media::rtcp_port`].
    pub fn rtcp_addr(&self, sdp: &Sdp) -> Option<SocketAddr> {
        let addr: IpAddr = match self.rtcp().and_then(|r| r.connection.as_ref()) {
            Some(c) => c.address,
            None => self.effective_connection(sdp)?.address,
        };
        Some(SocketAddr::new(addr, self.rtcp_port()?))
    }

    /// RFC 5761 §5.1.1: RTP and RTCP share one port.
    pub fn rtcp_mux(&self) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(l.kind, Kind::Attr(Attr::RtcpMux)))
    }

    /// The direction attribute written in this section, if any.
    pub fn direction(&self) -> Option<Direction> {
        self.lines.iter().find_map(|l| match l.kind {
            Kind::Attr(Attr::Direction(d)) => Some(d),
            _ => None,
        })
    }

    /// The direction that applies: this section's, else the session's, else sendrecv.
    pub fn effective_direction(&self, sdp: &Sdp) -> Direction {
        self.direction()
            .or_else(|| sdp.direction())
            .unwrap_or(Direction::SendRecv)
    }

    /// Hold as peers signal it: sendonly/inactive (RFC 3264 §8.4) or c=0.0.0.0 (RFC 2543).
    ///
    /// With ICE, c=0.0.0.0 only means "no default candidate yet" (trickle ICE, RFC 8840), not hold.
    pub fn is_on_hold(&self, sdp: &Sdp) -> bool {
        let uses_ice = self.ice_ufrag().is_some() || sdp.attribute("ice-ufrag").is_some();
        let unspecified = self
            .effective_connection(sdp)
            .is_some_and(Connection::is_unspecified);
        matches!(
            self.effective_direction(sdp),
            Direction::SendOnly | Direction::Inactive
        ) || (unspecified && !uses_ice)
    }

    /// The a=rtpmap for a payload type.
    pub fn rtpmap(&self, pt: u8) -> Option<&Rtpmap> {
        self.rtpmaps().find(|r| r.payload_type == pt)
    }

    /// Every readable a=rtpmap in order.
    pub fn rtpmaps(&self) -> impl Iterator<Item = &Rtpmap> {
        self.lines.iter().filter_map(|l| match &l.kind {
            Kind::Attr(Attr::Rtpmap(r)) => Some(r),
            _ => None,
        })
    }

    /// RTP clock rate of a payload type: a=rtpmap, else the RFC 3551 static table.
    pub fn clock_rate(&self, pt: u8) -> Option<u32> {
        self.rtpmap(pt)
            .map(|r| r.clock_rate)
            .or_else(|| static_payload_type(pt).map(|s| s.1))
    }

    /// The a=fmtp parameters for a payload type (the text after `<pt> `).
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attributes("fmtp").find_map(|v| {
            let (p, params) = v.split_once(' ').unwrap_or((v, ""));
            (p.parse::<u8>().ok() == Some(pt)).then_some(params.trim_start())
        })
    }

    /// Every a=crypto line in order (RFC 4568).
    pub fn crypto(&self) -> impl Iterator<Item = &Crypto> {
        self.lines.iter().filter_map(|l| match &l.kind {
            Kind::Attr(Attr::Crypto(c)) => Some(c),
            _ => None,
        })
    }

    /// a=ice-ufrag (RFC 8839 §5.4).
    pub fn ice_ufrag(&self) -> Option<&str> {
        self.attribute("ice-ufrag")
    }

    /// a=ice-pwd (RFC 8839 §5.4).
    pub fn ice_pwd(&self) -> Option<&str> {
        self.attribute("ice-pwd")
    }

    /// a=ice-options (RFC 8839 §5.6).
    pub fn ice_options(&self) -> Option<&str> {
        self.attribute("ice-options")
    }

    /// Every a=candidate value in order (RFC 8839 §5.1).
    pub fn candidates(&self) -> impl Iterator<Item = &str> {
        self.attributes("candidate")
    }

    /// a=end-of-candidates present (RFC 8840).
    pub fn end_of_candidates(&self) -> bool {
        self.has_attribute("end-of-candidates")
    }

    /// a=mid, the stream's media identification (RFC 5888 §4), used by BUNDLE.
    pub fn mid(&self) -> Option<&str> {
        self.attribute("mid")
    }

    /// a=ptime in milliseconds (RFC 8866 §6.4); fractional values are truncated.
    pub fn ptime(&self) -> Option<u32> {
        let v = self.attribute("ptime")?.trim();
        v.split('.').next()?.parse().ok()
    }

    /// a=label (RFC 4574).
    pub fn label(&self) -> Option<&str> {
        self.attribute("label")
    }

    /// The first `a=<name>` value here (`Some("")` for a flag).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes(name).next()
    }

    /// Every `a=<name>` value here, in order.
    pub fn attributes<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.lines.iter().filter_map(move |l| match l.attribute() {
            Some((n, v)) if n == name => Some(v.unwrap_or("")),
            _ => None,
        })
    }

    /// True when an `a=<name>` line is present.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.lines.iter().any(|l| l.is_attr(name))
    }

    // ---- rewrites: each touches only its own lines and leaves the rest in place ----

    fn refresh_header(&mut self) {
        // Sized from the old line; a port or protocol change moves it a few bytes.
        let mut text = String::with_capacity(self.header.text.len() + 8);
        text.push_str("m=");
        // Writing into a String cannot fail.
        let _ = self.m.write_into(&mut text);
        self.header.replace(text, Kind::Media);
    }

    /// Puts the relay's port on m= (0 rejects the stream).
    pub fn set_port(&mut self, port: u16) {
        self.m.port = port;
        self.refresh_header();
    }

    /// Changes the transport, e.g. RTP/AVP to RTP/SAVP when the relay bridges to SRTP.
    pub fn set_proto(&mut self, proto: Proto) {
        self.m.proto = proto;
        self.refresh_header();
    }

    /// Keeps the formats `keep` accepts (rtpengine's codec-strip), dropping the a=rtpmap,
    /// a=fmtp and a=rtcp-fb lines of the ones removed; returns how many formats went.
    ///
    /// Lines that merely mention a removed type (`a=fmtp:97 apt=96`) are kept.
    pub fn retain_formats(&mut self, mut keep: impl FnMut(&str) -> bool) -> usize {
        let mut removed = Vec::new();
        let kept = crate::fields::join(self.formats().filter(|f| {
            let k = keep(f);
            if !k {
                removed.push(f.to_string());
            }
            k
        }));
        if removed.is_empty() {
            return 0;
        }
        self.m.formats = kept;
        // RFC 8866 §6.6 (rtpmap), §6.15 (fmtp), RFC 4585 §4.2 (rtcp-fb): "<pt> ..." values.
        self.lines.retain(|l| match l.attribute() {
            Some(("rtpmap" | "fmtp" | "rtcp-fb", Some(v))) => {
                let pt = v.split_ascii_whitespace().next().unwrap_or_default();
                !removed.iter().any(|r| r == pt)
            }
            _ => true,
        });
        self.refresh_header();
        removed.len()
    }

    /// Points this section's c= at `address`, adding a media c= after m=/i= when absent.
    pub fn set_connection(&mut self, address: IpAddr) {
        set_connection_in(&mut self.lines, Connection::new(address), self.eol, b"bka");
    }

    /// Sets (replacing in place), inserts or with `None` removes the a=rtcp line.
    pub fn set_rtcp(&mut self, rtcp: Option<Rtcp>) {
        let Some(rtcp) = rtcp else {
            self.lines
                .retain(|l| !matches!(l.kind, Kind::Attr(Attr::Rtcp(_))));
            return;
        };
        let mut text = String::with_capacity(16);
        text.push_str("a=rtcp:");
        // Writing into a String cannot fail.
        let _ = rtcp.write_into(&mut text);
        self.replace_or_append(|k| matches!(k, Attr::Rtcp(_)), text, Attr::Rtcp(rtcp));
    }

    /// Adds or removes a=rtcp-mux.
    pub fn set_rtcp_mux(&mut self, on: bool) {
        if on {
            if !self.rtcp_mux() {
                let at = append_index(&self.lines);
                self.lines.insert(
                    at,
                    Line::new("a=rtcp-mux".into(), self.eol, Kind::Attr(Attr::RtcpMux)),
                );
            }
        } else {
            self.lines
                .retain(|l| !matches!(l.kind, Kind::Attr(Attr::RtcpMux)));
        }
    }

    /// Writes one direction attribute in this section (replacing any), e.g. to forward hold.
    pub fn set_direction(&mut self, direction: Direction) {
        let text = ["a=", direction.as_str()].concat();
        self.replace_or_append(
            |k| matches!(k, Attr::Direction(_)),
            text,
            Attr::Direction(direction),
        );
    }

    /// Drops the ICE lines of this section (a=ice-*, a=candidate, ...).
    pub fn remove_ice(&mut self) {
        self.lines
            .retain(|l| !l.attribute().is_some_and(|(n, _)| is_ice(n)));
    }

    /// Drops every a=crypto line, e.g. when the relay terminates SRTP on this leg.
    pub fn remove_crypto(&mut self) {
        self.lines
            .retain(|l| !matches!(l.kind, Kind::Attr(Attr::Crypto(_))));
    }

    /// Appends one a=crypto line after the existing ones (or at the end of the section).
    pub fn add_crypto(&mut self, crypto: Crypto) {
        let at = self
            .lines
            .iter()
            .rposition(|l| matches!(l.kind, Kind::Attr(Attr::Crypto(_))))
            .map_or_else(|| append_index(&self.lines), |i| i + 1);
        self.lines.insert(at, crypto_line(crypto, self.eol));
    }

    /// Replaces all a=crypto lines with `cryptos`, where the first one stood.
    pub fn set_crypto(&mut self, cryptos: impl IntoIterator<Item = Crypto>) {
        let at = self
            .lines
            .iter()
            .position(|l| matches!(l.kind, Kind::Attr(Attr::Crypto(_))));
        self.remove_crypto();
        let at = at.unwrap_or_else(|| append_index(&self.lines));
        let eol = self.eol;
        self.lines
            .splice(at..at, cryptos.into_iter().map(|c| crypto_line(c, eol)));
    }

    /// Removes every `a=<name>` line here; returns how many went.
    pub fn remove_attribute(&mut self, name: &str) -> usize {
        let before = self.lines.len();
        self.lines.retain(|l| !l.is_attr(name));
        before - self.lines.len()
    }

    /// Appends `a=<name>[:<value>]`; the typed accessors see it (a bad a=rtcp is refused).
    pub fn push_attribute(&mut self, name: &str, value: Option<&str>) -> Result<(), SdpError> {
        let line = attribute_line(name, value, self.eol)?;
        let at = append_index(&self.lines);
        self.lines.insert(at, line);
        Ok(())
    }

    /// Replaces the first attribute matching `is` and drops the others, or appends.
    fn replace_or_append(&mut self, is: impl Fn(&Attr) -> bool, text: String, attr: Attr) {
        let matches = |l: &Line| matches!(&l.kind, Kind::Attr(a) if is(a));
        match self.lines.iter().position(matches) {
            Some(i) => {
                self.lines[i].replace(text, Kind::Attr(attr));
                let mut seen = 0usize;
                self.lines.retain(|l| {
                    let hit = matches(l);
                    seen += usize::from(hit);
                    !hit || seen == 1
                });
            }
            None => {
                let at = append_index(&self.lines);
                self.lines
                    .insert(at, Line::new(text, self.eol, Kind::Attr(attr)));
            }
        }
    }
}

fn crypto_line(crypto: Crypto, eol: Eol) -> Line {
    Line::new(
        format!("a=crypto:{crypto}"),
        eol,
        Kind::Attr(Attr::Crypto(crypto)),
    )
}
