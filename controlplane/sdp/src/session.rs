//! The whole description: session-level lines, then one [`Media`] per `m=` line.
//!
//! ```text
//! v=0                                   session level (RFC 8866 §5, order v o s i u e p c b t r z k a)
//! o=- 1 1 IN IP4 192.0.2.1
//! s=-
//! c=IN IP4 192.0.2.1
//! t=0 0
//! a=...
//! m=audio 49170 RTP/AVP 0 8             media level (RFC 8866 §5.14, order m i c b k a)
//! c=...
//! a=...
//! ```

use core::fmt;
use core::str::FromStr;
use std::net::IpAddr;
use std::sync::Arc;

use crate::attr::{Attr, Direction, is_ice};
use crate::error::{Reason, SdpError};
use crate::fields::{Connection, MediaLine, Origin, addrtype};
use crate::line::{Eol, Kind, Line, append_index, attribute_line, classify, split_lines};
use crate::media::Media;

/// Most m= lines one description may carry. Every stream costs the relay two port
/// pairs, so the bound keeps one offer from taking hundreds of ports; real offers
/// (audio, video, a few simulcast or data sections) stay far below it.
pub const MAX_MEDIA: usize = 64;

/// A parsed SDP that keeps every line and writes back unchanged lines byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    pub(crate) lines: Vec<Line>,
    pub(crate) media: Vec<Media>,
    /// Line end for lines the relay adds: the input's first line end (CRLF if it had none).
    pub(crate) eol: Eol,
}

impl Sdp {
    /// Parses SDP text with CRLF or LF line ends; refuses what the relay cannot act on.
    pub fn parse(input: &str) -> Result<Self, SdpError> {
        // One copy of the input, that every line's text points into.
        let src: Arc<str> = Arc::from(input);
        let input: &str = &src;
        let mut lines = split_lines(input)
            .enumerate()
            .map(|(i, (text, eol))| (i + 1, text, eol));
        let (_, first, first_eol) = lines.next().ok_or(SdpError::new(1, Reason::Empty))?;
        // RFC 8866 §5: "v=" first; §5.1: version 0.
        let version = first
            .strip_prefix("v=")
            .ok_or(SdpError::new(1, Reason::MissingVersion))?;
        if version.trim() != "0" {
            return Err(SdpError::new(1, Reason::BadVersion));
        }
        let eol = if first_eol == Eol::None {
            Eol::CrLf
        } else {
            first_eol
        };
        // Sized from one scan of the text: a `Line` is large, and growing each
        // vector line by line cost several copies per description.
        let counts = LineCounts::of(input);
        let mut session_lines = Vec::with_capacity(counts.lines(0));
        session_lines.push(Line::read(&src, first, first_eol, Kind::Other));
        let mut sdp = Self {
            lines: session_lines,
            media: Vec::with_capacity(counts.media),
            eol,
        };
        for (number, text, eol) in lines {
            if let Some(value) = text.strip_prefix("m=") {
                if sdp.media.len() == MAX_MEDIA {
                    return Err(SdpError::new(number, Reason::TooManyMedia));
                }
                let m = MediaLine::parse(value).map_err(|r| SdpError::new(number, r))?;
                let header = Line::read(&src, text, eol, Kind::Media);
                let eol = sdp.eol;
                let below = counts.lines(sdp.media.len() + 1);
                sdp.media.push(Media {
                    header,
                    m,
                    lines: Vec::with_capacity(below),
                    eol,
                });
                continue;
            }
            let line = Line::read(&src, text, eol, classify(text, number)?);
            match sdp.media.last_mut() {
                Some(media) => media.lines.push(line),
                None => sdp.lines.push(line),
            }
        }
        Ok(sdp)
    }

    /// Parses SDP bytes as they arrive in a SIP body or an NG `sdp` string.
    pub fn parse_bytes(input: &[u8]) -> Result<Self, SdpError> {
        match core::str::from_utf8(input) {
            Ok(s) => Self::parse(s),
            Err(e) => {
                let line = 1 + input[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                Err(SdpError::new(line, Reason::NotUtf8))
            }
        }
    }

    /// The media sections in order (one per m= line).
    pub fn media(&self) -> &[Media] {
        &self.media
    }

    /// The media sections, for rewriting.
    pub fn media_mut(&mut self) -> &mut [Media] {
        &mut self.media
    }

    /// The session origin (`o=`), absent only in non-conforming SDP.
    pub fn origin(&self) -> Option<Origin> {
        let line = self.lines.iter().find(|l| l.kind == Kind::Origin)?;
        // Checked when read or written.
        Origin::parse(line.text.get(2..)?).ok()
    }

    /// The session name (`s=`) text.
    pub fn session_name(&self) -> Option<&str> {
        self.lines
            .iter()
            .find(|l| l.letter() == b's')
            .and_then(|l| l.text.get(2..))
    }

    /// The first `t=` as (start, stop) NTP seconds; `(0, 0)` is an unbounded session.
    ///
    /// RFC 8866 §5.9: <https://www.rfc-editor.org/rfc/rfc8866#section-5.9>. `None` when
    /// absent or not two decimal numbers (the line is still kept verbatim).
    pub fn timing(&self) -> Option<(u64, u64)> {
        let line = self.lines.iter().find(|l| l.letter() == b't')?;
        let mut it = line.text.get(2..)?.split_ascii_whitespace();
        match (it.next(), it.next(), it.next()) {
            (Some(start), Some(stop), None) => Some((start.parse().ok()?, stop.parse().ok()?)),
            _ => None,
        }
    }

    /// The session-level connection (`c=`), the default for media without their own.
    pub fn connection(&self) -> Option<&Connection> {
        self.lines.iter().find_map(|l| match &l.kind {
            Kind::Connection(c) => Some(c),
            _ => None,
        })
    }

    /// The session-level direction, which media without their own inherit (RFC 8866 §6.7).
    pub fn direction(&self) -> Option<Direction> {
        self.lines.iter().find_map(|l| match l.kind {
            Kind::Attr(Attr::Direction(d)) => Some(d),
            _ => None,
        })
    }

    /// The first session-level `a=<name>` value (`Some("")` for a flag such as `a=ice-lite`).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes(name).next()
    }

    /// Every session-level `a=<name>` value in order.
    pub fn attributes<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.lines.iter().filter_map(move |l| match l.attribute() {
            Some((n, v)) if n == name => Some(v.unwrap_or("")),
            _ => None,
        })
    }

    /// Points the session-level c= at `address` (the relay), adding c= where RFC 8866 orders it.
    pub fn set_connection(&mut self, address: IpAddr) {
        let conn = Connection::new(address);
        set_connection_in(&mut self.lines, conn, self.eol, b"btrzka");
    }

    /// Writes the relay's address into o= and, when asked, bumps the version; false without o=.
    ///
    /// RFC 3264 §8: a changed description must carry a higher version.
    pub fn set_origin_address(&mut self, address: IpAddr, bump_version: bool) -> bool {
        self.update_origin(|o| {
            o.address = address.to_string();
            o.addrtype = addrtype(address).to_owned();
            if bump_version {
                o.bump_version();
            }
        })
    }

    /// Adds one to the o= version (RFC 3264 §8); false without o= or with a non-numeric version.
    pub fn bump_version(&mut self) -> bool {
        let mut bumped = false;
        self.update_origin(|o| bumped = o.bump_version()) && bumped
    }

    fn update_origin(&mut self, f: impl FnOnce(&mut Origin)) -> bool {
        let Some(line) = self.lines.iter_mut().find(|l| l.kind == Kind::Origin) else {
            return false;
        };
        let Some(Ok(mut origin)) = line.text.get(2..).map(Origin::parse) else {
            return false;
        };
        f(&mut origin);
        line.replace(format!("o={origin}"), Kind::Origin);
        true
    }

    /// Drops every ICE line at session and media level: the relay is the one endpoint now.
    pub fn remove_ice(&mut self) {
        self.lines
            .retain(|l| !l.attribute().is_some_and(|(n, _)| is_ice(n)));
        for m in &mut self.media {
            m.remove_ice();
        }
    }

    /// Appends a session-level `a=<name>[:<value>]` after the session's other
    /// lines, before the first m= line.
    pub fn push_attribute(&mut self, name: &str, value: Option<&str>) -> Result<(), SdpError> {
        let line = attribute_line(name, value, self.eol)?;
        let at = append_index(&self.lines);
        self.lines.insert(at, line);
        Ok(())
    }

    /// Removes every session-level `a=<name>` line; returns how many went.
    pub fn remove_attribute(&mut self, name: &str) -> usize {
        let before = self.lines.len();
        self.lines.retain(|l| !l.is_attr(name));
        before - self.lines.len()
    }

    /// Makes every line end CRLF, as RFC 8866 §5 asks of what the relay sends.
    pub fn normalize_line_endings(&mut self) {
        self.eol = Eol::CrLf;
        for line in self.all_lines_mut() {
            line.eol = Eol::CrLf;
        }
        for m in &mut self.media {
            m.eol = Eol::CrLf;
        }
    }

    /// The serialised SDP as bytes, ready for a SIP body or an NG reply: sized
    /// once, copied line by line, no `fmt`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text_len());
        self.write_to(&mut out);
        out
    }

    /// How many bytes `to_bytes` gives.
    pub fn text_len(&self) -> usize {
        self.pieces().map(str::len).sum()
    }

    /// Appends the serialised SDP (`text_len()` bytes) to `out`, an NG reply
    /// being written, say, with no copy of its own. The caller reserves room if
    /// it wants to: it has usually measured `text_len()` already.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.pieces()
            .for_each(|p| out.extend_from_slice(p.as_bytes()));
    }

    /// Each line's text, then its line end: the text as written out. A line
    /// without one gets the default unless last. That line was the input's last,
    /// and may end in a CR cut from its CRLF: then it gets a CRLF whatever the
    /// default, since a bare `\n` after that CR would read back as one CRLF and
    /// take the CR out of the line's text.
    fn pieces(&self) -> impl Iterator<Item = &str> {
        let mut lines = self.all_lines().peekable();
        core::iter::from_fn(move || {
            let line = lines.next()?;
            let eol = match line.eol {
                Eol::None if lines.peek().is_some() => {
                    if line.text.ends_with('\r') {
                        Eol::CrLf
                    } else {
                        self.eol
                    }
                }
                eol => eol,
            };
            Some([&*line.text, eol.as_str()])
        })
        .flatten()
    }

    fn all_lines(&self) -> impl Iterator<Item = &Line> {
        self.lines.iter().chain(
            self.media
                .iter()
                .flat_map(|m| core::iter::once(&m.header).chain(&m.lines)),
        )
    }

    fn all_lines_mut(&mut self) -> impl Iterator<Item = &mut Line> {
        self.lines.iter_mut().chain(
            self.media
                .iter_mut()
                .flat_map(|m| core::iter::once(&mut m.header).chain(m.lines.iter_mut())),
        )
    }
}

/// Lines of the session part and of each media section (m= lines not counted),
/// from one pass over the bytes, so `parse` allocates each vector once.
struct LineCounts {
    /// `[0]` the session part, `[k]` the k-th media section.
    per_part: [u16; MAX_MEDIA + 1],
    /// m= lines seen (past `MAX_MEDIA` the parse fails anyway).
    media: usize,
}

impl LineCounts {
    fn of(input: &str) -> Self {
        let mut c = LineCounts {
            per_part: [0; MAX_MEDIA + 1],
            media: 0,
        };
        let bytes = input.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            if bytes[start..].starts_with(b"m=") {
                c.media += 1;
            } else {
                let part = &mut c.per_part[c.media.min(MAX_MEDIA)];
                *part = part.saturating_add(1);
            }
            start = match bytes[start..].iter().position(|b| *b == b'\n') {
                Some(i) => start + i + 1,
                None => bytes.len(),
            };
        }
        c
    }

    /// Lines of part `k` (0: session), 0 past the table.
    fn lines(&self, k: usize) -> usize {
        self.per_part.get(k).map_or(0, |n| usize::from(*n))
    }
}

/// Replaces the first c= (dropping any further ones) or inserts one before the first line
/// whose letter is in `before` (the RFC 8866 §5 order), else at the end.
pub(crate) fn set_connection_in(lines: &mut Vec<Line>, conn: Connection, eol: Eol, before: &[u8]) {
    let text = conn.line();
    let kind = Kind::Connection(conn);
    match lines
        .iter()
        .position(|l| matches!(l.kind, Kind::Connection(_)))
    {
        Some(i) => {
            lines[i].replace(text, kind);
            let mut seen = 0usize;
            lines.retain(|l| {
                let is_c = matches!(l.kind, Kind::Connection(_));
                seen += usize::from(is_c);
                !is_c || seen == 1
            });
        }
        None => {
            let at = lines
                .iter()
                .position(|l| before.contains(&l.letter()))
                .unwrap_or_else(|| crate::line::append_index(lines));
            lines.insert(at, Line::new(text, eol, kind));
        }
    }
}

impl fmt::Display for Sdp {
    /// Writes each line with its own line end; a line without one gets the default unless last.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.pieces().try_for_each(|p| f.write_str(p))
    }
}

impl FromStr for Sdp {
    type Err = SdpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sizes_every_line_vector_exactly() {
        let texts = [
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n\
             m=video 4002 RTP/AVP 96\r\nm=text 0 RTP/AVP 98\r\na=x\r\n",
            "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\na=x",
            "v=0\r\ns=-\r\n\r\nm=audio 4000 RTP/AVP 0",
            "v=0\r\ns=-",
        ];
        for t in texts {
            let sdp = Sdp::parse(t).unwrap();
            assert_eq!(sdp.lines.capacity(), sdp.lines.len(), "{t:?}");
            assert_eq!(sdp.media.capacity(), sdp.media.len(), "{t:?}");
            for m in &sdp.media {
                assert_eq!(m.lines.capacity(), m.lines.len(), "{t:?}");
            }
            assert_eq!(sdp.to_bytes(), t.as_bytes());
            assert_eq!(sdp.to_string(), t);
        }
        let c = LineCounts::of("a=1\r\nb=2\r\nm=x\r\nm=y\nc=3");
        assert_eq!((c.media, c.lines(0), c.lines(1), c.lines(2)), (2, 2, 0, 1));
        assert_eq!(LineCounts::of("").lines(0), 0);
    }
}
