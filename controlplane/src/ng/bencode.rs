//! Bencode (BEP 3) codec for the NG protocol: a lossless value type that keeps dict
//! keys in the order they came (Kamailio does not always sort them), strict errors,
//! and hard limits on nesting and size so hostile input cannot exhaust memory.
//!
//! ```text
//!  value  := int | bytes | list | dict
//!  int    := 'i' ['-'] digits 'e'          no leading zeros, no "-0"
//!  bytes  := len ':' <len raw bytes>       len without leading zeros
//!  list   := 'l' value* 'e'
//!  dict   := 'd' (bytes value)* 'e'
//! ```
//! <https://www.bittorrent.org/beps/bep_0003.html#bencoding>

use std::fmt;
use std::net::IpAddr;

use ferrelay_sdp::IpText;

/// Deepest nesting accepted; NG messages nest three or four levels.
pub const MAX_DEPTH: usize = 32;
/// Most elements (list items + dict entries) in one message.
pub const MAX_ELEMENTS: usize = 65_536;

/// One bencoded value, owned, order preserving.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(Vec<(Vec<u8>, Value)>),
}

/// Why a message does not decode. `Incomplete` is the only one a stream may outgrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ends inside a value: read more (TCP) or reject (UDP).
    Incomplete,
    /// Not bencode at byte `at`.
    Invalid {
        at: usize,
        what: &'static str,
    },
    TooDeep,
    TooManyElements,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Incomplete => f.write_str("truncated bencode"),
            DecodeError::Invalid { at, what } => write!(f, "invalid bencode at byte {at}: {what}"),
            DecodeError::TooDeep => write!(f, "bencode nested deeper than {MAX_DEPTH}"),
            DecodeError::TooManyElements => {
                write!(f, "bencode has more than {MAX_ELEMENTS} elements")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

impl Value {
    /// A byte-string value from text.
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// The bytes of a string value, as text if UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// Looks a key up in a dict (first match, as rtpengine does).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Decodes exactly one value filling all of `input`.
    pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
        let (v, used) = Self::decode_prefix(input)?;
        if used != input.len() {
            return Err(DecodeError::Invalid {
                at: used,
                what: "trailing bytes after the value",
            });
        }
        Ok(v)
    }

    /// Decodes one value from the front of `input`, returning it and the bytes used.
    pub fn decode_prefix(input: &[u8]) -> Result<(Value, usize), DecodeError> {
        let mut d = Decoder {
            buf: input,
            pos: 0,
            elements: 0,
        };
        let v = d.value(0)?;
        Ok((v, d.pos))
    }

    /// Appends the encoding of `self` to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                Writer::new(out).int(*i);
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(l) => {
                out.push(b'l');
                l.iter().for_each(|v| v.encode_into(out));
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Exactly how many bytes `encode_into` appends, so a reply buffer is
    /// allocated once instead of grown several times.
    pub fn encoded_len(&self) -> usize {
        match self {
            Value::Int(i) => 2 + usize::from(*i < 0) + digits(i.unsigned_abs()),
            Value::Bytes(b) => bytes_len(b),
            Value::List(l) => 2 + l.iter().map(Value::encoded_len).sum::<usize>(),
            Value::Dict(d) => {
                2 + d
                    .iter()
                    .map(|(k, v)| bytes_len(k) + v.encoded_len())
                    .sum::<usize>()
            }
        }
    }
}

fn bytes_len(b: &[u8]) -> usize {
    digits(b.len() as u64) + 1 + b.len()
}

/// Decimal digits of `n`.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// Appends `n` in decimal without going through `fmt` (which costs an allocation
/// and a formatter per length prefix on the reply path).
fn decimal(n: u64, out: &mut Vec<u8>) {
    // Most numbers in a reply are short key lengths and small counters: fixed-size
    // copies the compiler inlines, where a variable-length one calls memmove.
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    if n < 100 {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        return;
    }
    // Timestamps and byte counts: two digits per step from a table.
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    decimal(b.len() as u64, out);
    out.push(b':');
    out.extend_from_slice(b);
}

/// Streams bencode straight into a reply buffer, for replies built from session
/// state (`query`, `delete`, `statistics`): no value tree, no key copies, no
/// allocation but the buffer's own growth. The caller balances `dict`/`list` with
/// `end`; keys are written like any byte string, in the order the reply needs.
#[derive(Debug)]
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// Appends to `out` after what it already holds (a cookie, say).
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out }
    }

    /// Opens a dict: then alternate keys (`bytes`) and values, then `end`.
    pub fn dict(&mut self) -> &mut Self {
        self.out.push(b'd');
        self
    }

    /// Opens a list, closed by `end`.
    pub fn list(&mut self) -> &mut Self {
        self.out.push(b'l');
        self
    }

    /// Closes the innermost open dict or list.
    pub fn end(&mut self) -> &mut Self {
        self.out.push(b'e');
        self
    }

    /// A byte string of `len` bytes that `write` appends (a value serialised
    /// straight into the reply, with no copy of its own).
    pub fn bytes_with(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        decimal(len as u64, self.out);
        self.out.push(b':');
        let start = self.out.len();
        write(self.out);
        debug_assert_eq!(
            self.out.len() - start,
            len,
            "bytes_with wrote another length"
        );
        self
    }

    /// A byte string: a dict key or a value.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        encode_bytes(b, self.out);
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub fn int(&mut self, i: i64) -> &mut Self {
        self.out.push(b'i');
        if i < 0 {
            self.out.push(b'-');
        }
        decimal(i.unsigned_abs(), self.out);
        self.out.push(b'e');
        self
    }

    /// A counter, saturating at `i64::MAX` (bencode integers are signed here).
    pub fn uint(&mut self, u: u64) -> &mut Self {
        self.int(i64::try_from(u).unwrap_or(i64::MAX))
    }

    /// An address as the string `IpAddr`'s `Display` gives, without `to_string`.
    pub fn ip(&mut self, ip: IpAddr) -> &mut Self {
        self.str(IpText::new(ip).as_str())
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bytes(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Dict(d) => f
                .debug_map()
                .entries(d.iter().map(|(k, v)| (String::from_utf8_lossy(k), v)))
                .finish(),
        }
    }
}

/// Builds dicts in a readable way: `dict([("result", Value::str("pong"))])`.
pub fn dict<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Dict(
        entries
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    elements: usize,
}

impl Decoder<'_> {
    fn peek(&self) -> Result<u8, DecodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Incomplete)
    }

    fn bad(&self, what: &'static str) -> DecodeError {
        DecodeError::Invalid { at: self.pos, what }
    }

    fn count(&mut self) -> Result<(), DecodeError> {
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return Err(DecodeError::TooManyElements);
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let v = self.int_until(b'e')?;
                Ok(Value::Int(v))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.bytes()?)),
            b'l' | b'd' if depth >= MAX_DEPTH => Err(DecodeError::TooDeep),
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    self.count()?;
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut entries = Vec::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(self.bad("dict key is not a string"));
                    }
                    self.count()?;
                    let k = self.bytes()?;
                    let v = self.value(depth + 1)?;
                    entries.push((k, v));
                }
                self.pos += 1;
                Ok(Value::Dict(entries))
            }
            _ => Err(self.bad("expected i, l, d or a digit")),
        }
    }

    /// Parses a decimal integer up to `end` (strict: no leading zeros, no "-0").
    fn int_until(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        let neg = self.peek()? == b'-';
        if neg {
            self.pos += 1;
        }
        let digits_start = self.pos;
        let mut v: i64 = 0;
        loop {
            let c = self.peek()?;
            if c == end {
                break;
            }
            if !c.is_ascii_digit() {
                return Err(self.bad("not a digit"));
            }
            let d = i64::from(c - b'0');
            v = v
                .checked_mul(10)
                .and_then(|v| {
                    if neg {
                        v.checked_sub(d)
                    } else {
                        v.checked_add(d)
                    }
                })
                .ok_or(DecodeError::Invalid {
                    at: start,
                    what: "integer overflows i64",
                })?;
            self.pos += 1;
        }
        let ndigits = self.pos - digits_start;
        if ndigits == 0 {
            return Err(self.bad("empty integer"));
        }
        if self.buf[digits_start] == b'0' && (ndigits > 1 || neg) {
            return Err(DecodeError::Invalid {
                at: start,
                what: "leading zero or negative zero",
            });
        }
        self.pos += 1; // the terminator
        Ok(v)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let at = self.pos;
        if self.peek()? == b'-' {
            return Err(self.bad("negative string length"));
        }
        let len = self.int_until(b':')?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Invalid {
            at,
            what: "string length out of range",
        })?;
        // Checked against what is present before allocating: a hostile length
        // costs nothing.
        let end = self.pos.checked_add(len).ok_or(DecodeError::Invalid {
            at,
            what: "string length out of range",
        })?;
        if end > self.buf.len() {
            return Err(DecodeError::Incomplete);
        }
        let b = self.buf[self.pos..end].to_vec();
        self.pos = end;
        Ok(b)
    }
}

/// Longest integer or length prefix the decoder accepts, terminator included
/// (`-9223372036854775808e`); past it a decode fails, so scanning can stop.
const MAX_NUMBER: usize = 21;

/// Finds where a value arriving over a stream may end, without decoding it, so a
/// reader decodes once per message instead of once per read: a peer trickling a
/// large message byte by byte then costs linear, not quadratic, work.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scan {
    /// Start of the next token not yet scanned.
    pos: usize,
    /// Open lists and dicts.
    depth: usize,
    /// A token was scanned, so depth 0 means the value is complete.
    started: bool,
}

impl Scan {
    /// Scans `buf` (the buffer of the previous call, maybe extended) from where it
    /// stopped. True when a value may end here or a byte breaks the token grammar;
    /// other errors (a dict key that is not a string) surface when the value closes.
    pub fn worth_decoding(&mut self, buf: &[u8]) -> bool {
        while !self.started || self.depth > 0 {
            let Some(&b) = buf.get(self.pos) else {
                return false;
            };
            let next = match b {
                b'd' | b'l' if self.depth >= MAX_DEPTH => return true,
                b'd' | b'l' => {
                    self.depth += 1;
                    self.pos + 1
                }
                b'e' if self.depth > 0 => {
                    self.depth -= 1;
                    self.pos + 1
                }
                b'i' => match number(buf, self.pos + 1, b'e') {
                    Ok((_, end)) => end,
                    Err(more) => return !more,
                },
                b'0'..=b'9' => match number(buf, self.pos, b':') {
                    Ok((len, at)) => match at.checked_add(len) {
                        Some(end) if end <= buf.len() => end,
                        Some(_) => return false,
                        None => return true,
                    },
                    Err(more) => return !more,
                },
                _ => return true,
            };
            self.pos = next;
            self.started = true;
        }
        true
    }
}

/// The digits from `at` up to `end` and the position after it; `Err(true)` when
/// more bytes may complete it, `Err(false)` when no decode can accept it.
fn number(buf: &[u8], at: usize, end: u8) -> Result<(usize, usize), bool> {
    let window = buf.get(at..).unwrap_or_default();
    let window = &window[..window.len().min(MAX_NUMBER)];
    match window.iter().position(|c| *c == end) {
        Some(n) => {
            let digits = &window[..n];
            // Signs and leading zeros are the decoder's to judge: any value will do.
            let len = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.trim_start_matches('-').parse::<usize>().ok());
            match len {
                Some(len) => Ok((len, at + n + 1)),
                None if digits.is_empty() || digits == b"-" => Ok((0, at + n + 1)),
                None => Err(false),
            }
        }
        None if window.len() < MAX_NUMBER => Err(true),
        None => Err(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_key_order() {
        let raw = b"d7:command4:ping1:ai-12e1:bl1:xi0eee";
        let v = Value::decode(raw).unwrap();
        assert_eq!(v.get("command").and_then(Value::as_str), Some("ping"));
        assert_eq!(v.get("a").and_then(Value::as_int), Some(-12));
        assert_eq!(v.get("b").and_then(Value::as_list).map(<[_]>::len), Some(2));
        assert_eq!(v.encode(), raw);
    }

    #[test]
    fn numbers_and_lengths_encode_exactly() {
        for (i, text) in [
            (0, "i0e"),
            (9, "i9e"),
            (10, "i10e"),
            (99, "i99e"),
            (100, "i100e"),
            (-1, "i-1e"),
            (-42, "i-42e"),
            (i64::MAX, "i9223372036854775807e"),
            (i64::MIN, "i-9223372036854775808e"),
        ] {
            let v = Value::Int(i);
            assert_eq!(v.encode(), text.as_bytes());
            assert_eq!(v.encoded_len(), text.len());
        }
        let long = Value::Bytes(vec![b'x'; 1000]);
        let enc = long.encode();
        assert!(enc.starts_with(b"1000:x"));
        let d = dict([("k", long), ("l", Value::List(vec![Value::str("")]))]);
        assert_eq!(d.encoded_len(), d.encode().len());
        assert_eq!(Value::decode(&d.encode()).unwrap(), d);
    }

    #[test]
    fn strict_integers() {
        for bad in [
            &b"i03e"[..],
            b"i-0e",
            b"ie",
            b"i-e",
            b"i1x2e",
            b"i99999999999999999999e",
        ] {
            assert!(
                matches!(Value::decode(bad), Err(DecodeError::Invalid { .. })),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(Value::decode(b"i0e").unwrap(), Value::Int(0));
        assert_eq!(
            Value::decode(b"i-9223372036854775808e").unwrap(),
            Value::Int(i64::MIN)
        );
    }

    #[test]
    fn strings_and_lengths() {
        assert_eq!(Value::decode(b"0:").unwrap(), Value::Bytes(vec![]));
        assert!(matches!(
            Value::decode(b"01:a"),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            Value::decode(b"-1:a"),
            Err(DecodeError::Invalid { .. })
        ));
        // A huge announced length is refused without allocating it.
        assert_eq!(
            Value::decode(b"9999999999999:abc"),
            Err(DecodeError::Incomplete)
        );
        assert!(matches!(
            Value::decode(b"99999999999999999999999:"),
            Err(DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn truncation_and_trailing_bytes() {
        let full = b"d7:command4:pinge";
        for n in 0..full.len() {
            assert_eq!(
                Value::decode(&full[..n]),
                Err(DecodeError::Incomplete),
                "{n}"
            );
        }
        assert!(matches!(
            Value::decode(b"d7:command4:pingeX"),
            Err(DecodeError::Invalid { at: 17, .. })
        ));
        let (v, used) = Value::decode_prefix(b"i1ei2e").unwrap();
        assert_eq!((v, used), (Value::Int(1), 3));
    }

    #[test]
    fn structure_errors() {
        assert!(matches!(
            Value::decode(b"di1ei2ee"),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            Value::decode(b"x"),
            Err(DecodeError::Invalid { .. })
        ));
        let deep: Vec<u8> = std::iter::repeat_n(b'l', MAX_DEPTH + 1)
            .chain(std::iter::repeat_n(b'e', MAX_DEPTH + 1))
            .collect();
        assert_eq!(Value::decode(&deep), Err(DecodeError::TooDeep));
        let ok: Vec<u8> = std::iter::repeat_n(b'l', MAX_DEPTH)
            .chain(std::iter::repeat_n(b'e', MAX_DEPTH))
            .collect();
        assert!(Value::decode(&ok).is_ok());
        let mut many = vec![b'l'];
        many.extend(std::iter::repeat_n(&b"i1e"[..], MAX_ELEMENTS + 1).flatten());
        many.push(b'e');
        assert_eq!(Value::decode(&many), Err(DecodeError::TooManyElements));
    }

    #[test]
    fn builder_and_debug() {
        let v = dict([("result", Value::str("pong")), ("n", Value::Int(3))]);
        assert_eq!(v.encode(), b"d6:result4:pong1:ni3ee");
        assert_eq!(format!("{v:?}"), r#"{"result": "pong", "n": 3}"#);
    }

    #[test]
    fn writer_matches_the_value_encoding() {
        let v = dict([
            ("result", Value::str("ok")),
            ("n", Value::Int(-7)),
            ("big", Value::Int(i64::MAX)),
            (
                "l",
                Value::List(vec![
                    Value::str(""),
                    Value::Dict(vec![]),
                    Value::List(vec![]),
                ]),
            ),
        ]);
        let mut out = b"cookie ".to_vec();
        let mut w = Writer::new(&mut out);
        w.dict().str("result").str("ok").str("n").int(-7);
        w.str("big").uint(u64::MAX).str("l").list().str("");
        w.dict().end().list().end().end().end();
        assert_eq!(&out[..7], b"cookie ");
        assert_eq!(out[7..], v.encode());
    }

    #[test]
    fn writer_addresses_read_as_display() {
        // The text itself is `ferrelay_sdp::IpText`'s, tested there edge by edge.
        for a in ["192.168.109.255", "::ffff:192.0.2.128"] {
            let ip: IpAddr = a.parse().unwrap();
            let mut out = Vec::new();
            Writer::new(&mut out).ip(ip);
            assert_eq!(out, Value::str(&ip.to_string()).encode(), "{a}");
        }
    }

    /// Feeds `input` one byte at a time; a scan must say "decode" whenever a decode
    /// succeeds, and by the end of a structurally closed input. Returns how often.
    fn drip(input: &[u8]) -> usize {
        let mut scan = Scan::default();
        let mut asked = 0;
        for k in 1..=input.len() {
            let prefix = &input[..k];
            let ready = scan.worth_decoding(prefix);
            let decoded = Value::decode_prefix(prefix);
            if decoded.is_ok() {
                assert!(ready, "scan hid {decoded:?} at {k} of {input:?}");
            }
            asked += usize::from(ready);
            if ready {
                scan = Scan::default();
                if decoded.is_err() {
                    break;
                }
            }
        }
        asked
    }

    #[test]
    fn scan_never_hides_a_complete_or_broken_value() {
        let valid: [&[u8]; 6] = [
            b"d7:command4:ping3:sdp12:v=0 d l e ie5:flagsl3:a:b5:i-12ee4:deepld1:xi-9ee0:e1:ni0ee",
            b"i-9223372036854775808e",
            b"0:",
            b"le",
            b"d1:al1:bi10eee",
            b"4:spam",
        ];
        for v in valid {
            assert_eq!(drip(v), 1, "{:?}", String::from_utf8_lossy(v));
        }
        let broken: [&[u8]; 9] = [
            b"x",
            b"i01e",
            b"i-0e",
            b"ie",
            b"d1:ai1ei2ee",
            b"di1ei2ee",
            b"i123456789012345678901234567890e",
            b"123456789012345678901234567890:x",
            b"l1:ae1:b",
        ];
        for v in broken {
            assert!(drip(v) >= 1, "{:?}", String::from_utf8_lossy(v));
        }
        let deep = vec![b'l'; MAX_DEPTH + 2];
        assert_eq!(drip(&deep), 1);
    }

    #[test]
    fn a_trickled_large_message_is_decoded_once() {
        // Dense small tokens trickled one byte per read made the NG TCP reader
        // decode the whole buffer on every read: 117 s of CPU for 48 KiB in a debug
        // build. The scan asks for one decode, at the end.
        let mut big = b"d3:sdpl".to_vec();
        big.extend_from_slice(&[b"1:e".repeat(60_000), b"li-1e0:ee".to_vec()].concat());
        big.extend_from_slice(b"4:keys300:");
        big.extend_from_slice(&[b'd'; 300]);
        big.extend_from_slice(b"7:command5:offere");
        let mut scan = Scan::default();
        let ready: Vec<usize> = (1..=big.len())
            .filter(|k| scan.worth_decoding(&big[..*k]))
            .collect();
        assert_eq!(ready, [big.len()]);
        assert!(Value::decode(&big).is_ok());
    }
}
