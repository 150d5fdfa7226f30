//! SIP messages (RFC 3261 §7): a careful parser into an owned form the proxy edits,
//! and the writer. Signalling is the control plane, so owned strings are fine here.
//!
//! ```text
//!  INVITE sip:bob@192.0.2.4 SIP/2.0        <- start line (request or status line)
//!  Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776
//!  v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1   <- compact names are expanded
//!  Max-Forwards: 70
//!  Content-Length: 129                       <- frames the body (required on TCP)
//!                                            <- empty line
//!  v=0 ...                                   <- body
//! ```
//!
//! Why not a crate: `rsip` (the most used Rust SIP parser) had its last release in
//! 2022 and parses into typed headers the proxy would re-serialise, losing unknown
//! forms; a proxy must forward headers it does not understand byte for byte. This
//! parser keeps every header as text and is fuzzed (`fuzz/fuzz_targets/sip.rs`).

use std::fmt::Write as _;

/// Largest message accepted (RFC 3261 §18.1.1 talks of MTU; TCP may carry more).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// More header lines than this is an attack, not a call.
pub const MAX_HEADERS: usize = 128;

/// Why bytes are not a SIP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message too large")]
    TooLarge,
    #[error("no end of headers")]
    Incomplete,
    #[error("headers are not UTF-8")]
    NotText,
    #[error("bad start line")]
    StartLine,
    #[error("bad header line")]
    Header,
    #[error("too many headers")]
    TooManyHeaders,
    #[error("bad Content-Length")]
    ContentLength,
}

/// Request line or status line (RFC 3261 §7.1, §7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

/// One header line, name in its canonical long form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

/// Compact forms (RFC 3261 §7.3.3, §20) to the long names.
fn canonical(name: &str) -> String {
    let long = match name.to_ascii_lowercase().as_str() {
        "v" | "via" => "Via",
        "f" | "from" => "From",
        "t" | "to" => "To",
        "i" | "call-id" => "Call-ID",
        "m" | "contact" => "Contact",
        "l" | "content-length" => "Content-Length",
        "c" | "content-type" => "Content-Type",
        "cseq" => "CSeq",
        "max-forwards" => "Max-Forwards",
        "route" => "Route",
        "record-route" => "Record-Route",
        _ => return name.to_owned(),
    };
    long.to_owned()
}

/// Headers whose comma-separated values are separate entries the proxy adds or
/// removes one at a time (RFC 3261 §7.3.1).
fn is_list(name: &str) -> bool {
    matches!(name, "Via" | "Route" | "Record-Route")
}

/// Splits a header value at commas outside quotes and angle brackets.
fn split_list(v: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut angle) = (Vec::new(), 0, false, false);
    for (i, c) in v.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(v[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(v[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// Where the header section ends: (end of headers, start of body).
fn header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, p + 4));
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| (p, p + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// For a stream (TCP): the length of the first complete message, `Ok(None)` when more
/// bytes are needed. RFC 3261 §18.3: Content-Length is mandatory on streams.
pub fn frame(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    Framer::default().next(buf)
}

/// [`frame`] for a buffer that grows between calls: remembers how far the header
/// search got and the length once known, so a peer trickling bytes one at a time
/// costs linear work, not a rescan of up to [`MAX_MESSAGE`] bytes per read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Framer {
    /// Bytes already searched for the end of the headers.
    scanned: usize,
    /// Length of the message once its headers are complete.
    total: Option<usize>,
}

impl Framer {
    /// Frames `buf`, which must extend the buffer of the previous call (call
    /// [`Framer::reset`] after removing bytes from its front); resets itself when a
    /// message is complete.
    pub fn next(&mut self, buf: &[u8]) -> Result<Option<usize>, ParseError> {
        let total = match self.total {
            Some(t) => t,
            None => {
                // A terminator split across reads starts at most 3 bytes back.
                let from = self.scanned.saturating_sub(3).min(buf.len());
                let Some((head, body)) = header_end(&buf[from..]) else {
                    self.scanned = buf.len();
                    return if buf.len() > MAX_MESSAGE {
                        Err(ParseError::TooLarge)
                    } else {
                        Ok(None)
                    };
                };
                let t = message_len(&buf[..from + head], from + body)?;
                self.total = Some(t);
                t
            }
        };
        if buf.len() < total {
            return Ok(None);
        }
        *self = Framer::default();
        Ok(Some(total))
    }

    /// Forgets progress: the buffer no longer starts where it did.
    pub fn reset(&mut self) {
        *self = Framer::default();
    }
}

/// Headers plus Content-Length, from the header block `head` whose body starts at `body`.
fn message_len(head: &[u8], body: usize) -> Result<usize, ParseError> {
    let text = std::str::from_utf8(head).map_err(|_| ParseError::NotText)?;
    let mut len = None;
    for line in text.lines().skip(1) {
        if let Some((n, v)) = line.split_once(':')
            && canonical(n.trim()) == "Content-Length"
        {
            len = Some(
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| ParseError::ContentLength)?,
            );
        }
    }
    // A huge Content-Length must not wrap the sum into a "complete" short frame.
    let total = body
        .checked_add(len.ok_or(ParseError::ContentLength)?)
        .ok_or(ParseError::TooLarge)?;
    if total > MAX_MESSAGE {
        return Err(ParseError::TooLarge);
    }
    Ok(total)
}

impl Message {
    /// Parses one message. For datagrams the body is what follows the headers, cut to
    /// Content-Length when given (RFC 3261 §18.3); a shorter body is an error.
    pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
        if buf.len() > MAX_MESSAGE {
            return Err(ParseError::TooLarge);
        }
        // RFC 3261 §7.5: empty lines before the start line are ignored.
        let skip = buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        let buf = &buf[skip..];
        let (head, body_at) = header_end(buf).ok_or(ParseError::Incomplete)?;
        let text = std::str::from_utf8(&buf[..head]).map_err(|_| ParseError::NotText)?;
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let start = parse_start(lines.next().ok_or(ParseError::StartLine)?)?;
        let mut raw: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // Folded continuation (RFC 3261 §7.3.1).
                let last = raw.last_mut().ok_or(ParseError::Header)?;
                let joined = format!("{} {}", last.1, line.trim());
                last.1 = joined.trim().to_owned();
                continue;
            }
            let (n, v) = line.split_once(':').ok_or(ParseError::Header)?;
            let n = n.trim_end();
            if n.is_empty() || !n.bytes().all(is_token) {
                return Err(ParseError::Header);
            }
            raw.push((canonical(n), v.trim().to_owned()));
            if raw.len() > MAX_HEADERS {
                return Err(ParseError::TooManyHeaders);
            }
        }
        let mut headers = Vec::with_capacity(raw.len());
        for (name, value) in raw {
            if is_list(&name) {
                for v in split_list(&value) {
                    headers.push(Header {
                        name: name.clone(),
                        value: v.to_owned(),
                    });
                }
            } else {
                headers.push(Header { name, value });
            }
        }
        if headers.len() > MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        let rest = &buf[body_at..];
        let body = match headers.iter().find(|h| h.name == "Content-Length") {
            Some(h) => {
                let n: usize = h.value.parse().map_err(|_| ParseError::ContentLength)?;
                rest.get(..n).ok_or(ParseError::ContentLength)?.to_vec()
            }
            None => rest.to_vec(),
        };
        Ok(Message {
            start,
            headers,
            body,
        })
    }

    /// The request method, if a request.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, if a response.
    pub fn code(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// First value of a header (names as [`canonical`] writes them).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every value of a header, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Replaces the first value of `name` or appends it.
    pub fn set_header(&mut self, name: &str, value: String) {
        match self.headers.iter_mut().find(|h| h.name == name) {
            Some(h) => h.value = value,
            None => self.headers.push(Header {
                name: name.to_owned(),
                value,
            }),
        }
    }

    /// Inserts a header before every other of the same name (Via, Record-Route).
    pub fn push_front(&mut self, name: &str, value: String) {
        let at = self
            .headers
            .iter()
            .position(|h| h.name == name)
            .unwrap_or(self.headers.len());
        self.headers.insert(
            at,
            Header {
                name: name.to_owned(),
                value,
            },
        );
    }

    /// Removes and returns the first value of `name`.
    pub fn pop_front(&mut self, name: &str) -> Option<String> {
        let at = self.headers.iter().position(|h| h.name == name)?;
        Some(self.headers.remove(at).value)
    }

    /// CSeq number and method (RFC 3261 §20.16).
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let (n, m) = self.header("CSeq")?.split_once(char::is_whitespace)?;
        Some((n.parse().ok()?, m.trim()))
    }

    /// The `tag` parameter of From or To.
    pub fn tag(&self, name: &str) -> Option<&str> {
        param(self.header(name)?, "tag")
    }

    /// Whether the body is an SDP (RFC 3264 offer or answer).
    pub fn has_sdp(&self) -> bool {
        !self.body.is_empty()
            && self
                .header("Content-Type")
                .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/sdp"))
    }

    /// Writes the message, Content-Length recomputed from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::with_capacity(512);
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(s, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(s, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for h in self.headers.iter().filter(|h| h.name != "Content-Length") {
            let _ = write!(s, "{}: {}\r\n", h.name, h.value);
        }
        let _ = write!(s, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// RFC 3261 §25.1 `token` characters.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn parse_start(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§7.2).
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code.parse().map_err(|_| ParseError::StartLine)?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::StartLine);
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.to_owned(),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version (§7.1).
    let mut it = line.split(' ');
    let (Some(method), Some(uri), Some("SIP/2.0"), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(ParseError::StartLine);
    };
    if method.is_empty() || !method.bytes().all(is_token) || uri.is_empty() || !uri.contains(':') {
        return Err(ParseError::StartLine);
    }
    Ok(StartLine::Request {
        method: method.to_owned(),
        uri: uri.to_owned(),
    })
}

/// A `;name=value` parameter of a header value (outside its `<uri>`), case-insensitive
/// name; a flag parameter (`;lr`) gives `""`.
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value.split_once(';').map_or("", |(_, p)| p),
    };
    params.split(';').map(str::trim).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
