//! RTP fixed header, CSRC list, header extension and padding (RFC 3550 §5.1, §5.3.1,
//! RFC 8285).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |            contributing source (CSRC) identifiers             |
//! |                             ....                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      defined by profile       |           length              |  (if X)
//! |                        header extension                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                payload ...    | padding ...   | pad count     |  (pad if P)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use core::ops::Range;

use crate::error::{Result, WireError};

mod field {
    pub const FIXED_LEN: usize = 12;
    pub const SEQ: core::ops::Range<usize> = 2..4;
    pub const TIMESTAMP: core::ops::Range<usize> = 4..8;
    pub const SSRC: core::ops::Range<usize> = 8..12;
}

/// Length of the fixed RTP header in bytes.
pub const FIXED_HEADER_LEN: usize = field::FIXED_LEN;

/// A read (and, with `AsMut`, write) view over one RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<T: AsRef<[u8]>> RtpPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic until `check_len` passes.
    pub const fn new_unchecked(buffer: T) -> Self {
        RtpPacket { buffer }
    }

    /// Wraps and validates a buffer, so that no accessor can panic afterwards.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Wraps a buffer checking everything but the padding: for SRTP, where the pad
    /// count sits inside the encrypted payload and the last bytes are the auth tag
    /// (RFC 3711 §3.1). Accessors cannot panic; `payload_range` clamps a bogus pad
    /// count, so run `check_len` again once the payload is plain.
    pub fn new_checked_header(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_header_len()?;
        Ok(p)
    }

    /// Checks version, CSRC list, extension and padding lengths against the buffer.
    pub fn check_len(&self) -> Result<()> {
        let header_len = self.check_header_len()?;
        let b = self.buffer.as_ref();
        // RFC 3550 §5.1 P: the last octet counts the padding, itself included.
        if b[0] & 0x20 != 0 {
            let pad = usize::from(b[b.len() - 1]);
            if pad == 0 || header_len + pad > b.len() {
                return Err(WireError::BadPadding);
            }
        }
        Ok(())
    }

    /// Checks everything up to the payload and returns the header length.
    fn check_header_len(&self) -> Result<usize> {
        let b = self.buffer.as_ref();
        if b.len() < field::FIXED_LEN {
            return Err(WireError::Truncated);
        }
        // RFC 3550 §5.1: V is 2.
        if b[0] >> 6 != 2 {
            return Err(WireError::BadVersion);
        }
        let csrc_end = field::FIXED_LEN + 4 * usize::from(b[0] & 0x0f);
        if b.len() < csrc_end {
            return Err(WireError::Truncated);
        }
        let mut header_len = csrc_end;
        // RFC 3550 §5.3.1: a 4-byte extension header, then `length` 32-bit words.
        if b[0] & 0x10 != 0 {
            if b.len() < csrc_end + 4 {
                return Err(WireError::Truncated);
            }
            header_len = csrc_end + 4 + 4 * usize::from(be16(b, csrc_end + 2));
            if b.len() < header_len {
                return Err(WireError::BadExtension);
            }
        }
        Ok(header_len)
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole packet, as wrapped.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 6
    }

    pub fn has_padding(&self) -> bool {
        self.buffer.as_ref()[0] & 0x20 != 0
    }

    pub fn has_extension(&self) -> bool {
        self.buffer.as_ref()[0] & 0x10 != 0
    }

    pub fn csrc_count(&self) -> u8 {
        self.buffer.as_ref()[0] & 0x0f
    }

    pub fn marker(&self) -> bool {
        self.buffer.as_ref()[1] & 0x80 != 0
    }

    pub fn payload_type(&self) -> u8 {
        self.buffer.as_ref()[1] & 0x7f
    }

    pub fn sequence_number(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SEQ.start)
    }

    pub fn timestamp(&self) -> u32 {
        be32(self.buffer.as_ref(), field::TIMESTAMP.start)
    }

    pub fn ssrc(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SSRC.start)
    }

    /// The `i`-th contributing source, if the CSRC list has one.
    pub fn csrc(&self, i: usize) -> Option<u32> {
        if i >= usize::from(self.csrc_count()) {
            return None;
        }
        Some(be32(self.buffer.as_ref(), field::FIXED_LEN + 4 * i))
    }

    /// Every contributing source, in order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + '_ {
        (0..usize::from(self.csrc_count())).filter_map(move |i| self.csrc(i))
    }

    fn csrc_end(&self) -> usize {
        field::FIXED_LEN + 4 * usize::from(self.csrc_count())
    }

    /// Fixed header, CSRCs and extension: where the payload starts.
    pub fn header_len(&self) -> usize {
        let end = self.csrc_end();
        if self.has_extension() {
            end + 4 + 4 * usize::from(be16(self.buffer.as_ref(), end + 2))
        } else {
            end
        }
    }

    /// The 16-bit "defined by profile" field of the extension, if present.
    pub fn extension_profile(&self) -> Option<u16> {
        self.has_extension()
            .then(|| be16(self.buffer.as_ref(), self.csrc_end()))
    }

    /// The raw extension body (after its 4-byte header), if present.
    pub fn extension_data(&self) -> Option<&[u8]> {
        self.has_extension()
            .then(|| &self.buffer.as_ref()[self.csrc_end() + 4..self.header_len()])
    }

    /// The extension's elements when it uses an RFC 8285 profile; `None` otherwise.
    pub fn extension_elements(&self) -> Option<ExtElements<'_>> {
        let profile = ExtProfile::from_u16(self.extension_profile()?);
        match profile {
            ExtProfile::Other(_) => None,
            p => Some(ExtElements {
                profile: p,
                data: self.extension_data().unwrap_or(&[]),
            }),
        }
    }

    /// Number of padding bytes at the end (0 without the P bit).
    pub fn padding_len(&self) -> usize {
        let b = self.buffer.as_ref();
        if self.has_padding() {
            usize::from(b[b.len() - 1])
        } else {
            0
        }
    }

    /// Byte range of the payload within the packet.
    pub fn payload_range(&self) -> Range<usize> {
        let len = self.buffer.as_ref().len();
        let start = self.header_len();
        start..len.saturating_sub(self.padding_len()).max(start)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_range()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RtpPacket<T> {
    pub fn set_marker(&mut self, m: bool) {
        let b = self.buffer.as_mut();
        b[1] = (b[1] & 0x7f) | if m { 0x80 } else { 0 };
    }

    /// Writes the PT (7 bits; the high bit of `pt` is ignored), keeping the marker.
    pub fn set_payload_type(&mut self, pt: u8) {
        let b = self.buffer.as_mut();
        b[1] = (b[1] & 0x80) | (pt & 0x7f);
    }

    pub fn set_sequence_number(&mut self, seq: u16) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    pub fn set_timestamp(&mut self, ts: u32) {
        self.buffer.as_mut()[field::TIMESTAMP].copy_from_slice(&ts.to_be_bytes());
    }

    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buffer.as_mut()[field::SSRC].copy_from_slice(&ssrc.to_be_bytes());
    }

    /// The payload, writable in place (e.g. for a cipher).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }
}

/// Which header-extension format the "defined by profile" field announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtProfile {
    /// RFC 8285 §4.2: 0xBEDE, one-byte element headers.
    OneByte,
    /// RFC 8285 §4.3: 0x100 in the top 12 bits, two-byte element headers; the low
    /// 4 bits are "appbits".
    TwoByte { appbits: u8 },
    /// Any other profile: the body is exposed raw only.
    Other(u16),
}

impl ExtProfile {
    pub const fn from_u16(v: u16) -> Self {
        if v == 0xBEDE {
            ExtProfile::OneByte
        } else if v & 0xfff0 == 0x1000 {
            ExtProfile::TwoByte {
                appbits: (v & 0x0f) as u8,
            }
        } else {
            ExtProfile::Other(v)
        }
    }
}

/// One RFC 8285 header-extension element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtElement<'a> {
    pub id: u8,
    pub data: &'a [u8],
}

/// Iterates the elements of an RFC 8285 extension; stops at the end, at the one-byte
/// form's ID 15 (stop parsing), or at an element that would run past the body.
#[derive(Debug, Clone)]
pub struct ExtElements<'a> {
    profile: ExtProfile,
    data: &'a [u8],
}

impl<'a> Iterator for ExtElements<'a> {
    type Item = ExtElement<'a>;

    fn next(&mut self) -> Option<ExtElement<'a>> {
        loop {
            let (&first, rest) = self.data.split_first()?;
            // RFC 8285 §4.2/§4.3: a zero byte is padding between elements.
            if first == 0 {
                self.data = rest;
                continue;
            }
            let (id, len, body) = match self.profile {
                ExtProfile::OneByte => {
                    let id = first >> 4;
                    // RFC 8285 §4.2: ID 15 is reserved; stop processing here.
                    if id == 15 {
                        self.data = &[];
                        return None;
                    }
                    (id, usize::from(first & 0x0f) + 1, rest)
                }
                ExtProfile::TwoByte { .. } => {
                    let (&len, body) = rest.split_first().or_else(|| {
                        self.data = &[];
                        None
                    })?;
                    (first, usize::from(len), body)
                }
                ExtProfile::Other(_) => return None,
            };
            if body.len() < len {
                self.data = &[];
                return None;
            }
            let (data, after) = body.split_at(len);
            self.data = after;
            return Some(ExtElement { id, data });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// V=2, M=1, PT=96, seq 0x1234, ts 0xdeadbeef, SSRC 0x01020304, payload "abc".
    const PLAIN: [u8; 15] = [
        0x80, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, b'a', b'b', b'c',
    ];

    #[test]
    fn deconstruct_plain() {
        let p = RtpPacket::new_checked(&PLAIN[..]).unwrap();
        assert_eq!(p.version(), 2);
        assert!(p.marker());
        assert!(!p.has_padding() && !p.has_extension());
        assert_eq!(p.payload_type(), 96);
        assert_eq!(p.sequence_number(), 0x1234);
        assert_eq!(p.timestamp(), 0xdead_beef);
        assert_eq!(p.ssrc(), 0x0102_0304);
        assert_eq!(p.csrc_count(), 0);
        assert_eq!(p.csrc(0), None);
        assert_eq!(p.header_len(), 12);
        assert_eq!(p.payload(), b"abc");
        assert_eq!(p.extension_profile(), None);
        assert!(p.extension_elements().is_none());
    }

    #[test]
    fn setters_rewrite_exact_bytes() {
        let mut buf = PLAIN;
        let mut p = RtpPacket::new_checked(&mut buf[..]).unwrap();
        p.set_payload_type(0x80 | 8);
        p.set_sequence_number(0xffff);
        p.set_timestamp(7);
        p.set_ssrc(0xa1b2_c3d4);
        p.set_marker(false);
        assert_eq!(
            buf,
            [
                0x80, 0x08, 0xff, 0xff, 0, 0, 0, 7, 0xa1, 0xb2, 0xc3, 0xd4, b'a', b'b', b'c'
            ]
        );
        let mut p = RtpPacket::new_checked(&mut buf[..]).unwrap();
        p.set_marker(true);
        assert_eq!(p.payload_type(), 8);
        p.payload_mut()[0] = b'z';
        assert_eq!(&buf[..2], &[0x80, 0x88]);
        assert_eq!(buf[12], b'z');
    }

    #[test]
    fn truncated_at_every_length() {
        for n in 0..12 {
            assert_eq!(
                RtpPacket::new_checked(&PLAIN[..n]).unwrap_err(),
                WireError::Truncated,
                "len {n}"
            );
        }
        assert!(RtpPacket::new_checked(&PLAIN[..12]).is_ok());
    }

    #[test]
    fn wrong_version() {
        let mut b = PLAIN;
        b[0] = 0x40;
        assert_eq!(
            RtpPacket::new_checked(&b[..]).unwrap_err(),
            WireError::BadVersion
        );
    }

    #[test]
    fn csrcs_and_their_truncation() {
        let mut b = vec![0x82, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        b.extend_from_slice(&[0, 0, 0, 0xaa, 0, 0, 0, 0xbb, 9]);
        for n in 12..20 {
            assert_eq!(
                RtpPacket::new_checked(&b[..n]).unwrap_err(),
                WireError::Truncated
            );
        }
        let p = RtpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.csrcs().collect::<Vec<_>>(), [0xaa, 0xbb]);
        assert_eq!(p.csrc(2), None);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.payload(), &[9]);
    }

    #[test]
    fn padding_is_validated_and_stripped() {
        // P set, payload "ab", 3 bytes of padding ending in count 3.
        let b = [0xa0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, b'a', b'b', 0, 0, 3];
        let p = RtpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.padding_len(), 3);
        assert_eq!(p.payload(), b"ab");
        // Pad count 0 and pad count past the header are both refused.
        let mut z = b;
        z[16] = 0;
        assert_eq!(
            RtpPacket::new_checked(&z[..]).unwrap_err(),
            WireError::BadPadding
        );
        z[16] = 6;
        assert_eq!(
            RtpPacket::new_checked(&z[..]).unwrap_err(),
            WireError::BadPadding
        );
        // Padding that eats the whole payload exactly is fine.
        z[16] = 5;
        assert_eq!(RtpPacket::new_checked(&z[..]).unwrap().payload(), b"");
    }

    #[test]
    fn header_only_check_for_srtp_ignores_the_tail() {
        // P set, but the last byte (an SRTP tag byte here) is 0xff: no valid pad count.
        let b = [0xa0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 9, 9, 0xff];
        assert_eq!(
            RtpPacket::new_checked(&b[..]).unwrap_err(),
            WireError::BadPadding
        );
        let p = RtpPacket::new_checked_header(&b[..]).unwrap();
        assert_eq!(p.ssrc(), 3);
        assert_eq!(p.payload(), b"");
        assert_eq!(p.payload_range(), 12..12);
        assert_eq!(
            RtpPacket::new_checked_header(&b[..11]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn one_byte_extension_elements() {
        // X set; 0xBEDE, 2 words: id 1 len 1 [0x11], pad 0, id 2 len 2 [0x21 0x22],
        // then id 15 (stop) and junk that must be ignored.
        let b = [
            0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, //
            0xbe, 0xde, 0x00, 0x02, //
            0x10, 0x11, 0x00, 0x21, 0x21, 0x22, 0xf0, 0x99, //
            b'p',
        ];
        let p = RtpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.extension_profile(), Some(0xbede));
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload(), b"p");
        let els: Vec<_> = p.extension_elements().unwrap().collect();
        assert_eq!(
            els,
            [
                ExtElement {
                    id: 1,
                    data: &[0x11]
                },
                ExtElement {
                    id: 2,
                    data: &[0x21, 0x22]
                }
            ]
        );
    }

    #[test]
    fn two_byte_extension_elements_and_overrun() {
        // 0x1003 (appbits 3), 1 word: id 7 len 1 [0xaa], id 9 len 5 (overruns: stops).
        let b = [
            0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, //
            0x10, 0x03, 0x00, 0x01, //
            0x07, 0x01, 0xaa, 0x09,
        ];
        let p = RtpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(
            ExtProfile::from_u16(p.extension_profile().unwrap()),
            ExtProfile::TwoByte { appbits: 3 }
        );
        let els: Vec<_> = p.extension_elements().unwrap().collect();
        assert_eq!(
            els,
            [ExtElement {
                id: 7,
                data: &[0xaa]
            }]
        );
        // Zero-length elements are legal in the two-byte form.
        let mut z = b;
        z[19] = 0;
        let z2 = [&z[..], &[0x05, 0x00, 0, 0]].concat();
        let mut z2 = z2;
        z2[15] = 2;
        let p = RtpPacket::new_checked(&z2[..]).unwrap();
        let els: Vec<_> = p.extension_elements().unwrap().collect();
        assert_eq!(els.len(), 2);
        assert_eq!(els[1], ExtElement { id: 5, data: &[] });
    }

    #[test]
    fn extension_lengths_impossible_or_truncated() {
        let b = [
            0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0x12, 0x34, 0x00, 0x01, 1, 2, 3, 4,
        ];
        for n in 12..16 {
            assert_eq!(
                RtpPacket::new_checked(&b[..n]).unwrap_err(),
                WireError::Truncated
            );
        }
        for n in 16..20 {
            assert_eq!(
                RtpPacket::new_checked(&b[..n]).unwrap_err(),
                WireError::BadExtension
            );
        }
        let p = RtpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.extension_data(), Some(&[1u8, 2, 3, 4][..]));
        assert!(
            p.extension_elements().is_none(),
            "unknown profile is raw only"
        );
        let mut big = b;
        big[14] = 0xff;
        big[15] = 0xff;
        assert_eq!(
            RtpPacket::new_checked(&big[..]).unwrap_err(),
            WireError::BadExtension
        );
    }

    #[test]
    fn every_prefix_of_every_flag_combination_never_panics() {
        for first in 0x80..=0xbfu8 {
            let mut b = [0u8; 40];
            b[0] = first;
            b[13] = 0x01; // tiny extension length when X lands at offset 12
            b[39] = 2;
            for n in 0..=b.len() {
                if let Ok(p) = RtpPacket::new_checked(&b[..n]) {
                    let _ = (p.payload(), p.csrcs().count(), p.extension_data());
                    if let Some(e) = p.extension_elements() {
                        let _ = e.count();
                    }
                }
            }
        }
    }
}
