//! Lines as read: the exact text and line end, so an untouched SDP is written back
//! byte for byte, plus the typed reading of the lines the relay acts on.
//!
//! ```text
//! <type>=<value><CRLF or LF>      RFC 8866 §5: one letter, "=", no space around it
//! a=<name>[:<value>]              RFC 8866 §5.13
//! ```

use core::fmt;
use core::ops::Deref;
use std::sync::Arc;

use crate::attr::Attr;
use crate::error::{Reason, SdpError};
use crate::fields::{Connection, Origin};

/// How a line ended in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Eol {
    /// `\r\n`, what RFC 8866 §5 asks for.
    CrLf,
    /// A bare `\n`, which RFC 8866 §5 tells parsers to accept.
    Lf,
    /// The last line had no line end.
    None,
}

impl Eol {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::CrLf => "\r\n",
            Self::Lf => "\n",
            Self::None => "",
        }
    }
}

/// What a line means to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An empty line, kept so the round trip stays exact.
    Blank,
    /// `o=`, checked to have its six fields; read into an [`Origin`] when asked
    /// (most descriptions pass through without anyone asking).
    Origin,
    /// `c=`.
    Connection(Connection),
    /// The `m=` line that opens a media section (its fields live in `Media`).
    Media,
    /// `a=`.
    Attr(Attr),
    /// Any other line (`v= s= i= u= e= p= b= t= r= z= k=`, unknown letters).
    Other,
}

/// A line's text: a span of the description as read, shared by all its lines
/// (one copy of the input, not one allocation per line), or text the relay wrote.
#[derive(Clone)]
pub(crate) enum Text {
    Span {
        src: Arc<str>,
        start: usize,
        end: usize,
    },
    Owned(String),
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            // Spans come from `split_lines` over `src` itself: in range, on
            // character boundaries.
            Text::Span { src, start, end } => src.get(*start..*end).unwrap_or_default(),
            Text::Owned(s) => s,
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Text {}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// One line: its text without the line end, the line end, and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub text: Text,
    pub eol: Eol,
    pub kind: Kind,
}

impl Line {
    /// A line the relay writes.
    pub(crate) fn new(text: String, eol: Eol, kind: Kind) -> Self {
        Self {
            text: Text::Owned(text),
            eol,
            kind,
        }
    }

    /// A line as read: `text` is a slice of `src`.
    pub(crate) fn read(src: &Arc<str>, text: &str, eol: Eol, kind: Kind) -> Self {
        let start = (text.as_ptr() as usize).wrapping_sub(src.as_ptr() as usize);
        let text = Text::Span {
            src: Arc::clone(src),
            start,
            end: start + text.len(),
        };
        Self { text, eol, kind }
    }

    /// The type letter, or 0 for a blank line.
    pub(crate) fn letter(&self) -> u8 {
        self.text.as_bytes().first().copied().unwrap_or(0)
    }

    /// For `a=` lines: the attribute name and its value (absent for flags like `a=rtcp-mux`).
    pub(crate) fn attribute(&self) -> Option<(&str, Option<&str>)> {
        if !matches!(self.kind, Kind::Attr(_)) {
            return None;
        }
        Some(split_attribute(self.text.get(2..).unwrap_or_default()))
    }

    /// True for an `a=` line with this name.
    pub(crate) fn is_attr(&self, name: &str) -> bool {
        self.attribute().is_some_and(|(n, _)| n == name)
    }

    /// Replaces the text and meaning, keeping the line end and position.
    pub(crate) fn replace(&mut self, text: String, kind: Kind) {
        self.text = Text::Owned(text);
        self.kind = kind;
    }
}

/// RFC 8866 §5.13: `a=<attribute-name>[:<attribute-value>]`.
pub(crate) fn split_attribute(body: &str) -> (&str, Option<&str>) {
    match body.split_once(':') {
        Some((name, value)) => (name, Some(value)),
        None => (body, None),
    }
}

/// Splits the input into (text, line end) pairs; a final line end yields no empty line.
pub(crate) fn split_lines(input: &str) -> impl Iterator<Item = (&str, Eol)> {
    let mut rest = input;
    core::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        Some(match rest.find('\n') {
            Some(i) => {
                let (line, tail) = (&rest[..i], &rest[i + 1..]);
                rest = tail;
                match line.strip_suffix('\r') {
                    Some(line) => (line, Eol::CrLf),
                    None => (line, Eol::Lf),
                }
            }
            None => {
                let line = rest;
                rest = "";
                (line, Eol::None)
            }
        })
    })
}

/// Types one line other than `m=`; `number` is only used for the error.
pub(crate) fn classify(text: &str, number: usize) -> Result<Kind, SdpError> {
    if text.trim().is_empty() {
        return Ok(Kind::Blank);
    }
    let err = |reason| SdpError::new(number, reason);
    let bytes = text.as_bytes();
    if bytes.len() < 2 || !bytes[0].is_ascii_alphabetic() || bytes[1] != b'=' {
        return Err(err(Reason::BadLineSyntax));
    }
    let value = &text[2..];
    Ok(match bytes[0] {
        b'o' => {
            Origin::check(value).map_err(err)?;
            Kind::Origin
        }
        b'c' => Kind::Connection(Connection::parse(value).map_err(err)?),
        b'a' => {
            let (name, val) = split_attribute(value);
            Kind::Attr(Attr::parse(name, val).map_err(err)?)
        }
        _ => Kind::Other,
    })
}

/// Builds an `a=` line, refusing names that would not read back as the same attribute.
pub(crate) fn attribute_line(name: &str, value: Option<&str>, eol: Eol) -> Result<Line, SdpError> {
    if name.is_empty()
        || name
            .bytes()
            .any(|b| b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(SdpError::new(0, Reason::BadAttributeName));
    }
    let text = match value {
        Some(v) => format!("a={name}:{v}"),
        None => format!("a={name}"),
    };
    if text.contains(['\r', '\n']) {
        return Err(SdpError::new(0, Reason::BadLineSyntax));
    }
    let kind = classify(&text, 0)?;
    Ok(Line::new(text, eol, kind))
}

/// Index after the last non-blank line, where new attributes go (trailing blanks stay last).
pub(crate) fn append_index(lines: &[Line]) -> usize {
    lines
        .iter()
        .rposition(|l| !matches!(l.kind, Kind::Blank))
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_crlf_lf_and_missing_final_newline() {
        let lines: Vec<_> = split_lines("v=0\r\no=x\ns=-").collect();
        assert_eq!(
            lines,
            [("v=0", Eol::CrLf), ("o=x", Eol::Lf), ("s=-", Eol::None)]
        );
        let lines: Vec<_> = split_lines("v=0\r\n\r\n").collect();
        assert_eq!(lines, [("v=0", Eol::CrLf), ("", Eol::CrLf)]);
        assert_eq!(split_lines("").count(), 0);
    }

    #[test]
    fn classifies_and_names_the_line() {
        assert_eq!(classify("", 3), Ok(Kind::Blank));
        assert_eq!(classify("s=-", 3), Ok(Kind::Other));
        assert_eq!(
            classify("x", 7),
            Err(SdpError::new(7, Reason::BadLineSyntax))
        );
        assert_eq!(
            classify("a =b", 7),
            Err(SdpError::new(7, Reason::BadLineSyntax))
        );
        assert_eq!(
            classify("=b", 7),
            Err(SdpError::new(7, Reason::BadLineSyntax))
        );
        assert_eq!(
            classify("c=IN IP4 nope", 9),
            Err(SdpError::new(9, Reason::BadConnection))
        );
        assert_eq!(
            classify("a=rtcp:x", 4),
            Err(SdpError::new(4, Reason::BadRtcp))
        );
        assert_eq!(classify("a=foo:bar baz", 4), Ok(Kind::Attr(Attr::Other)));
    }

    #[test]
    fn attribute_lines_refuse_bad_names() {
        assert!(attribute_line("mid", Some("0"), Eol::CrLf).is_ok());
        assert!(
            attribute_line("rtcp-mux", None, Eol::CrLf)
                .unwrap()
                .is_attr("rtcp-mux")
        );
        for bad in ["", "a:b", "a b", "a\r"] {
            assert_eq!(
                attribute_line(bad, None, Eol::CrLf).unwrap_err().reason,
                Reason::BadAttributeName
            );
        }
        assert_eq!(
            attribute_line("x", Some("1\r\nm=audio"), Eol::CrLf)
                .unwrap_err()
                .reason,
            Reason::BadLineSyntax
        );
        assert_eq!(
            attribute_line("rtcp", Some("x"), Eol::CrLf)
                .unwrap_err()
                .reason,
            Reason::BadRtcp
        );
    }
}
