//! RTCP packets and compound packets (RFC 3550 §6.4–§6.7, RFC 4585 §6.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|  RC/FMT |      PT       |  length (32-bit words - 1)    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 SSRC of sender (SR, RR, APP, FB)              |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |  SR only: NTP timestamp (64) | RTP timestamp | packet count |  |
//! |           octet count   (sender info, 20 bytes)              |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |                 report blocks, 24 bytes each (SR, RR)         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! A compound packet is several of these back to back; only the last may pad
//! (RFC 3550 §6.4.1, "padding").

use core::ops::Range;

use crate::error::{Result, WireError};

/// Size of the common RTCP header.
pub const HEADER_LEN: usize = 4;
/// Size of one SR/RR report block (RFC 3550 §6.4.1).
pub const REPORT_BLOCK_LEN: usize = 24;
/// Size of the SR sender-info section (RFC 3550 §6.4.1).
pub const SENDER_INFO_LEN: usize = 20;

/// RTCP packet types a relay recognises (RFC 3550 §12.1, RFC 4585 §6.1, RFC 3611).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RtcpType {
    /// 200, sender report.
    Sr,
    /// 201, receiver report.
    Rr,
    /// 202, source description.
    Sdes,
    /// 203, goodbye.
    Bye,
    /// 204, application-defined.
    App,
    /// 205, transport-layer feedback (NACK, TMMBR, ...).
    RtpFb,
    /// 206, payload-specific feedback (PLI, FIR, REMB, ...).
    PsFb,
    /// 207, extended reports.
    Xr,
    /// Anything else in the RTCP range.
    Other(u8),
}

impl RtcpType {
    pub const fn from_u8(v: u8) -> Self {
        match v {
            200 => RtcpType::Sr,
            201 => RtcpType::Rr,
            202 => RtcpType::Sdes,
            203 => RtcpType::Bye,
            204 => RtcpType::App,
            205 => RtcpType::RtpFb,
            206 => RtcpType::PsFb,
            207 => RtcpType::Xr,
            v => RtcpType::Other(v),
        }
    }

    pub const fn to_u8(self) -> u8 {
        match self {
            RtcpType::Sr => 200,
            RtcpType::Rr => 201,
            RtcpType::Sdes => 202,
            RtcpType::Bye => 203,
            RtcpType::App => 204,
            RtcpType::RtpFb => 205,
            RtcpType::PsFb => 206,
            RtcpType::Xr => 207,
            RtcpType::Other(v) => v,
        }
    }
}

/// A view over one RTCP packet; the buffer may extend past it (see `packet_len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<T: AsRef<[u8]>> RtcpPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic until `check_len` passes.
    pub const fn new_unchecked(buffer: T) -> Self {
        RtcpPacket { buffer }
    }

    /// Wraps and validates the first packet of the buffer.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks version, the length field and the fixed parts each known type needs.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        // RFC 3550 §6.4.1: V is 2.
        if b[0] >> 6 != 2 {
            return Err(WireError::BadVersion);
        }
        let len = self.packet_len();
        if b.len() < len {
            return Err(WireError::Truncated);
        }
        let count = usize::from(self.count());
        let need = match self.packet_type() {
            // RFC 3550 §6.4.1: SSRC, sender info, then RC report blocks.
            RtcpType::Sr => 8 + SENDER_INFO_LEN + REPORT_BLOCK_LEN * count,
            // RFC 3550 §6.4.2: SSRC, then RC report blocks.
            RtcpType::Rr => 8 + REPORT_BLOCK_LEN * count,
            // RFC 3550 §6.6: SC SSRC/CSRC identifiers.
            RtcpType::Bye => HEADER_LEN + 4 * count,
            // RFC 3550 §6.7: SSRC and a 4-byte name.
            RtcpType::App => 12,
            // RFC 4585 §6.1: sender SSRC and media SSRC.
            RtcpType::RtpFb | RtcpType::PsFb => 12,
            RtcpType::Xr => 8,
            RtcpType::Sdes | RtcpType::Other(_) => HEADER_LEN,
        };
        if len < need {
            return Err(WireError::BadLength);
        }
        if self.has_padding() {
            let pad = usize::from(b[len - 1]);
            if pad == 0 || pad > len - HEADER_LEN {
                return Err(WireError::BadPadding);
            }
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 6
    }

    pub fn has_padding(&self) -> bool {
        self.buffer.as_ref()[0] & 0x20 != 0
    }

    /// RC (SR/RR), SC (SDES/BYE), subtype (APP) or FMT (RTPFB/PSFB, RFC 4585 §6.1).
    pub fn count(&self) -> u8 {
        self.buffer.as_ref()[0] & 0x1f
    }

    pub fn packet_type(&self) -> RtcpType {
        RtcpType::from_u8(self.buffer.as_ref()[1])
    }

    /// The raw length field: the packet's size in 32-bit words, minus one.
    pub fn length_words(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[2], b[3]])
    }

    /// This packet's size in bytes, header and padding included.
    pub fn packet_len(&self) -> usize {
        (usize::from(self.length_words()) + 1) * 4
    }

    /// The packet's own bytes (the buffer may hold more after it).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.packet_len()]
    }

    /// The first SSRC after the header: the sender for SR/RR/APP/FB/XR, the first
    /// chunk's or the first leaving source for SDES/BYE. `None` if the packet has none.
    pub fn ssrc(&self) -> Option<u32> {
        (self.packet_len() >= 8 && self.first_word_is_ssrc()).then(|| be32(self.buffer.as_ref(), 4))
    }

    fn first_word_is_ssrc(&self) -> bool {
        match self.packet_type() {
            RtcpType::Sdes | RtcpType::Bye => self.count() > 0,
            RtcpType::Other(_) => false,
            _ => true,
        }
    }

    /// Padding bytes at the end of this packet (0 without the P bit).
    pub fn padding_len(&self) -> usize {
        if self.has_padding() {
            usize::from(self.buffer.as_ref()[self.packet_len() - 1])
        } else {
            0
        }
    }

    /// Bytes after the common header, up to the padding.
    pub fn body(&self) -> &[u8] {
        let end = self.packet_len() - self.padding_len();
        &self.buffer.as_ref()[HEADER_LEN..end.max(HEADER_LEN)]
    }

    /// SR sender info: NTP timestamp (64-bit), RTP timestamp, packets, octets.
    pub fn sender_info(&self) -> Option<SenderInfo> {
        if self.packet_type() != RtcpType::Sr {
            return None;
        }
        let b = self.buffer.as_ref();
        Some(SenderInfo {
            ntp: (u64::from(be32(b, 8)) << 32) | u64::from(be32(b, 12)),
            rtp_timestamp: be32(b, 16),
            packet_count: be32(b, 20),
            octet_count: be32(b, 24),
        })
    }

    fn report_blocks_start(&self) -> Option<usize> {
        match self.packet_type() {
            RtcpType::Sr => Some(8 + SENDER_INFO_LEN),
            RtcpType::Rr => Some(8),
            _ => None,
        }
    }

    /// The `i`-th report block of an SR or RR.
    pub fn report_block(&self, i: usize) -> Option<ReportBlock<&[u8]>> {
        let start = self.report_blocks_start()?;
        if i >= usize::from(self.count()) {
            return None;
        }
        let at = start + REPORT_BLOCK_LEN * i;
        Some(ReportBlock {
            buffer: &self.buffer.as_ref()[at..at + REPORT_BLOCK_LEN],
        })
    }

    /// Every report block of an SR or RR (none for other types).
    pub fn report_blocks(&self) -> impl Iterator<Item = ReportBlock<&[u8]>> + '_ {
        (0..usize::from(self.count())).map_while(move |i| self.report_block(i))
    }

    /// The media source SSRC of an RTPFB/PSFB packet (RFC 4585 §6.1).
    pub fn media_ssrc(&self) -> Option<u32> {
        matches!(self.packet_type(), RtcpType::RtpFb | RtcpType::PsFb)
            .then(|| be32(self.buffer.as_ref(), 8))
    }

    /// The feedback control information of an RTPFB/PSFB packet.
    pub fn fci(&self) -> Option<&[u8]> {
        matches!(self.packet_type(), RtcpType::RtpFb | RtcpType::PsFb).then(|| {
            let end = self.packet_len() - self.padding_len();
            &self.buffer.as_ref()[12..end.max(12)]
        })
    }

    /// The 4-byte ASCII name of an APP packet (RFC 3550 §6.7).
    pub fn app_name(&self) -> Option<[u8; 4]> {
        (self.packet_type() == RtcpType::App).then(|| {
            let b = self.buffer.as_ref();
            [b[8], b[9], b[10], b[11]]
        })
    }

    /// The SSRC/CSRC list of a BYE packet.
    pub fn bye_sources(&self) -> impl Iterator<Item = u32> + '_ {
        let n = if self.packet_type() == RtcpType::Bye {
            usize::from(self.count())
        } else {
            0
        };
        (0..n).map(move |i| be32(self.buffer.as_ref(), HEADER_LEN + 4 * i))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RtcpPacket<T> {
    /// Rewrites the first SSRC (see `ssrc`); returns false when the packet has none.
    pub fn set_ssrc(&mut self, ssrc: u32) -> bool {
        if self.ssrc().is_none() {
            return false;
        }
        self.buffer.as_mut()[4..8].copy_from_slice(&ssrc.to_be_bytes());
        true
    }

    /// Rewrites the media source SSRC of RTPFB/PSFB; false for other types.
    pub fn set_media_ssrc(&mut self, ssrc: u32) -> bool {
        if self.media_ssrc().is_none() {
            return false;
        }
        self.buffer.as_mut()[8..12].copy_from_slice(&ssrc.to_be_bytes());
        true
    }

    /// The `i`-th report block of an SR or RR, writable.
    pub fn report_block_mut(&mut self, i: usize) -> Option<ReportBlock<&mut [u8]>> {
        let start = self.report_blocks_start()?;
        if i >= usize::from(self.count()) {
            return None;
        }
        let at = start + REPORT_BLOCK_LEN * i;
        Some(ReportBlock {
            buffer: &mut self.buffer.as_mut()[at..at + REPORT_BLOCK_LEN],
        })
    }
}

/// SR sender info (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// A view over one 24-byte SR/RR report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ReportBlock<T> {
    /// Wraps 24 bytes; `None` if shorter.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= REPORT_BLOCK_LEN).then_some(ReportBlock { buffer })
    }

    pub fn ssrc(&self) -> u32 {
        be32(self.buffer.as_ref(), 0)
    }

    pub fn fraction_lost(&self) -> u8 {
        self.buffer.as_ref()[4]
    }

    /// Cumulative number of packets lost: a signed 24-bit value.
    pub fn cumulative_lost(&self) -> i32 {
        let b = self.buffer.as_ref();
        i32::from_be_bytes([b[5], b[6], b[7], 0]) >> 8
    }

    pub fn extended_highest_seq(&self) -> u32 {
        be32(self.buffer.as_ref(), 8)
    }

    pub fn jitter(&self) -> u32 {
        be32(self.buffer.as_ref(), 12)
    }

    pub fn last_sr(&self) -> u32 {
        be32(self.buffer.as_ref(), 16)
    }

    pub fn delay_since_last_sr(&self) -> u32 {
        be32(self.buffer.as_ref(), 20)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ReportBlock<T> {
    /// Rewrites the SSRC the block reports on (the "SSRC_n" of RFC 3550 §6.4.1).
    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buffer.as_mut()[0..4].copy_from_slice(&ssrc.to_be_bytes());
    }
}

/// A validated compound RTCP packet (RFC 3550 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compound<'a> {
    data: &'a [u8],
}

impl<'a> Compound<'a> {
    /// Validates every packet, that they tile the buffer exactly, and that only the
    /// last one pads (RFC 3550 §6.4.1).
    pub fn new_checked(data: &'a [u8]) -> Result<Self> {
        if data.is_empty() {
            return Err(WireError::Truncated);
        }
        let mut at = 0;
        while at < data.len() {
            let p = RtcpPacket::new_checked(&data[at..])?;
            at += p.packet_len();
            if p.has_padding() && at != data.len() {
                return Err(WireError::BadPadding);
            }
        }
        Ok(Compound { data })
    }

    /// Iterates the packets.
    pub fn iter(&self) -> CompoundIter<'a> {
        CompoundIter {
            data: self.data,
            at: 0,
        }
    }

    /// Byte ranges of the packets, for rewriting them in the original buffer.
    pub fn ranges(&self) -> impl Iterator<Item = Range<usize>> + 'a {
        let base = self.data.as_ptr() as usize;
        self.iter().map(move |p| {
            let start = p.as_bytes().as_ptr() as usize - base;
            start..start + p.packet_len()
        })
    }
}

impl<'a> IntoIterator for Compound<'a> {
    type Item = RtcpPacket<&'a [u8]>;
    type IntoIter = CompoundIter<'a>;

    fn into_iter(self) -> CompoundIter<'a> {
        self.iter()
    }
}

/// Iterator over the packets of a validated compound.
#[derive(Debug, Clone)]
pub struct CompoundIter<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Iterator for CompoundIter<'a> {
    type Item = RtcpPacket<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.at..).filter(|r| !r.is_empty())?;
        let p = RtcpPacket::new_checked(rest).ok()?;
        self.at += p.packet_len();
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SR from 0x11111111 with one report block about 0x22222222.
    fn sr() -> Vec<u8> {
        let mut b = vec![0x81, 200, 0, 12, 0x11, 0x11, 0x11, 0x11];
        b.extend_from_slice(&[0, 0, 0, 1, 0x80, 0, 0, 0]); // NTP 1.5 s
        b.extend_from_slice(&[0, 0, 0x03, 0xe8]); // RTP ts 1000
        b.extend_from_slice(&[0, 0, 0, 50, 0, 0, 0x1f, 0x40]); // 50 pkts, 8000 bytes
        b.extend_from_slice(&[0x22, 0x22, 0x22, 0x22, 64, 0xff, 0xff, 0xfe]);
        b.extend_from_slice(&[0, 1, 0, 5, 0, 0, 0, 9, 0xaa, 0xbb, 0xcc, 0xdd]);
        b.extend_from_slice(&[0, 0, 0, 7]);
        b
    }

    /// SDES with one chunk: SSRC 0x11111111, CNAME "ab", end.
    const SDES: [u8; 12] = [0x81, 202, 0, 2, 0x11, 0x11, 0x11, 0x11, 1, 2, b'a', b'b'];

    #[test]
    fn deconstruct_sr() {
        let b = sr();
        assert_eq!(b.len(), 52);
        let p = RtcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.packet_type(), RtcpType::Sr);
        assert_eq!(p.count(), 1);
        assert_eq!(p.packet_len(), 52);
        assert_eq!(p.ssrc(), Some(0x1111_1111));
        let si = p.sender_info().unwrap();
        assert_eq!(si.ntp, 0x1_8000_0000);
        assert_eq!(si.rtp_timestamp, 1000);
        assert_eq!((si.packet_count, si.octet_count), (50, 8000));
        let rb = p.report_block(0).unwrap();
        assert_eq!(rb.ssrc(), 0x2222_2222);
        assert_eq!(rb.fraction_lost(), 64);
        assert_eq!(rb.cumulative_lost(), -2);
        assert_eq!(rb.extended_highest_seq(), 0x0001_0005);
        assert_eq!(rb.jitter(), 9);
        assert_eq!(rb.last_sr(), 0xaabb_ccdd);
        assert_eq!(rb.delay_since_last_sr(), 7);
        assert!(p.report_block(1).is_none());
        assert_eq!(p.report_blocks().count(), 1);
        assert!(p.media_ssrc().is_none() && p.app_name().is_none());
    }

    #[test]
    fn report_block_and_media_ssrc_setters() {
        let mut b = sr();
        let mut p = RtcpPacket::new_checked(&mut b[..]).unwrap();
        p.report_block_mut(0).unwrap().set_ssrc(0x4444_4444);
        assert!(p.report_block_mut(1).is_none());
        assert!(!p.set_media_ssrc(1), "an SR has no media SSRC");
        assert_eq!(&b[28..32], &[0x44; 4]);
        let mut pli = [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        let mut p = RtcpPacket::new_checked(&mut pli[..]).unwrap();
        assert!(p.report_block_mut(0).is_none());
        assert!(p.set_media_ssrc(9));
        assert_eq!(&pli[8..12], &[0, 0, 0, 9]);
    }

    #[test]
    fn truncated_at_every_length() {
        let b = sr();
        for n in 0..b.len() {
            assert_eq!(
                RtcpPacket::new_checked(&b[..n]).unwrap_err(),
                WireError::Truncated,
                "len {n}"
            );
            assert!(Compound::new_checked(&b[..n]).is_err());
        }
    }

    #[test]
    fn impossible_counts_and_lengths() {
        let mut b = sr();
        b[0] = 0x82; // two report blocks claimed, room for one
        assert_eq!(
            RtcpPacket::new_checked(&b[..]).unwrap_err(),
            WireError::BadLength
        );
        let bye = [0x83, 203, 0, 1, 0, 0, 0, 1];
        assert_eq!(
            RtcpPacket::new_checked(&bye[..]).unwrap_err(),
            WireError::BadLength
        );
        let fb = [0x81, 205, 0, 1, 0, 0, 0, 1];
        assert_eq!(
            RtcpPacket::new_checked(&fb[..]).unwrap_err(),
            WireError::BadLength
        );
        let v1 = [0x41, 201, 0, 1, 0, 0, 0, 1];
        assert_eq!(
            RtcpPacket::new_checked(&v1[..]).unwrap_err(),
            WireError::BadVersion
        );
    }

    #[test]
    fn compound_iterates_and_rewrites_sender() {
        let mut buf = sr();
        buf.extend_from_slice(&SDES);
        let c = Compound::new_checked(&buf).unwrap();
        let types: Vec<_> = c.iter().map(|p| p.packet_type()).collect();
        assert_eq!(types, [RtcpType::Sr, RtcpType::Sdes]);
        let ranges: Vec<_> = c.ranges().collect();
        assert_eq!(ranges, [0..52, 52..64]);
        for r in ranges {
            let mut p = RtcpPacket::new_checked(&mut buf[r]).unwrap();
            assert!(p.set_ssrc(0x3333_3333));
        }
        assert_eq!(&buf[4..8], &[0x33; 4]);
        assert_eq!(&buf[56..60], &[0x33; 4]);
        // Trailing garbage that is not a whole packet makes the compound invalid.
        buf.push(0x80);
        assert_eq!(
            Compound::new_checked(&buf).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn padding_only_on_the_last_packet() {
        // RR with no blocks, padded by 4 (one word of padding).
        let rr_pad = [0xa0, 201, 0, 2, 0, 0, 0, 5, 0, 0, 0, 4];
        let p = RtcpPacket::new_checked(&rr_pad[..]).unwrap();
        assert_eq!(p.padding_len(), 4);
        assert_eq!(p.body(), &[0, 0, 0, 5]);
        let last = [&SDES[..], &rr_pad[..]].concat();
        assert!(Compound::new_checked(&last).is_ok());
        let first = [&rr_pad[..], &SDES[..]].concat();
        assert_eq!(
            Compound::new_checked(&first).unwrap_err(),
            WireError::BadPadding
        );
        let mut zero = rr_pad;
        zero[11] = 0;
        assert_eq!(
            RtcpPacket::new_checked(&zero[..]).unwrap_err(),
            WireError::BadPadding
        );
        zero[11] = 9;
        assert_eq!(
            RtcpPacket::new_checked(&zero[..]).unwrap_err(),
            WireError::BadPadding
        );
    }

    #[test]
    fn feedback_app_bye() {
        // PSFB PLI (FMT 1) from 1 about 2; RTPFB NACK (FMT 1) with one FCI word.
        let pli = [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        let p = RtcpPacket::new_checked(&pli[..]).unwrap();
        assert_eq!((p.packet_type(), p.count()), (RtcpType::PsFb, 1));
        assert_eq!((p.ssrc(), p.media_ssrc()), (Some(1), Some(2)));
        assert_eq!(p.fci(), Some(&[][..]));
        let nack = [0x81, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 10, 0, 3];
        let p = RtcpPacket::new_checked(&nack[..]).unwrap();
        assert_eq!(p.fci(), Some(&[0, 10, 0, 3][..]));
        let app = [0x80, 204, 0, 2, 0, 0, 0, 9, b'T', b'E', b'S', b'T'];
        let p = RtcpPacket::new_checked(&app[..]).unwrap();
        assert_eq!(p.app_name(), Some(*b"TEST"));
        let bye = [0x82, 203, 0, 2, 0, 0, 0, 7, 0, 0, 0, 8];
        let p = RtcpPacket::new_checked(&bye[..]).unwrap();
        assert_eq!(p.bye_sources().collect::<Vec<_>>(), [7, 8]);
        assert_eq!(p.ssrc(), Some(7));
        let empty_bye = [0x80, 203, 0, 0];
        let mut e = empty_bye;
        let mut p = RtcpPacket::new_checked(&mut e[..]).unwrap();
        assert_eq!(p.ssrc(), None);
        assert!(!p.set_ssrc(1));
        assert_eq!(e, empty_bye);
    }

    #[test]
    fn any_bytes_never_panic() {
        let mut b = [0u8; 36];
        for first in [0x80u8, 0x9f, 0xa1, 0xbf] {
            for pt in 190..=210u8 {
                for len in 0..10u8 {
                    b[0] = first;
                    b[1] = pt;
                    b[3] = len;
                    b[35] = len;
                    for n in 0..=b.len() {
                        if let Ok(c) = Compound::new_checked(&b[..n]) {
                            for p in c {
                                let _ = (p.ssrc(), p.body(), p.fci(), p.sender_info());
                                let _ = (p.report_blocks().count(), p.bye_sources().count());
                            }
                        }
                    }
                }
            }
        }
    }
}
