//! The RTP packets the load generator sends: a plain RFC 3550 header followed by a
//! payload that carries the send time and the stream id, so the receiver can measure
//! one-way latency and check that each packet reached the socket it was meant for.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                             SSRC                              |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |                 send time, ns since run start (64 bits)       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           stream id                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        magic "FRLD"                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        fill: byte i = i ^ send_ns ^ stream (low bytes) ...    |
//! ```

/// RTP fixed header length (RFC 3550 §5.1, no CSRCs, no extension).
pub const RTP_HEADER: usize = 12;
/// Bytes of load-generator metadata at the start of the payload.
pub const META_LEN: usize = 16;
/// Marks a payload as ours.
pub const MAGIC: [u8; 4] = *b"FRLD";
/// 20 ms of G.711 at 8 kHz: 160 payload bytes, 160 timestamp units per packet.
pub const DEFAULT_PAYLOAD: usize = 160;
/// Payload type 0 (PCMU), RFC 3551 §6.
pub const PT_PCMU: u8 = 0;

/// The SSRC a stream sends with: unique per stream, stable across runs.
pub const fn ssrc_for(stream: u32) -> u32 {
    0x4652_0000 ^ stream.wrapping_mul(0x9E37_79B1)
}

/// Sender state of one RTP stream.
#[derive(Debug, Clone, Copy)]
pub struct TxStream {
    pub stream: u32,
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    /// RTP timestamp units per packet.
    pub ts_step: u32,
}

impl TxStream {
    /// Starts at a per-stream seq/timestamp offset, as real senders pick random ones
    /// (RFC 3550 §5.1), so receivers see wraps at different times.
    pub fn new(stream: u32, ts_step: u32) -> Self {
        let mix = stream.wrapping_mul(0x2545_F491);
        TxStream {
            stream,
            ssrc: ssrc_for(stream),
            seq: (mix >> 16) as u16,
            timestamp: mix,
            ts_step,
        }
    }

    /// Writes the next packet into `buf` (whose length is the packet length) and
    /// advances seq and timestamp.
    pub fn write_next(&mut self, buf: &mut [u8], send_ns: u64) {
        debug_assert!(buf.len() >= RTP_HEADER + META_LEN);
        buf[0] = 0x80; // V=2, no padding, no extension, CC=0 (RFC 3550 §5.1)
        buf[1] = PT_PCMU;
        buf[2..4].copy_from_slice(&self.seq.to_be_bytes());
        buf[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        buf[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        buf[12..20].copy_from_slice(&send_ns.to_be_bytes());
        buf[20..24].copy_from_slice(&self.stream.to_be_bytes());
        buf[24..28].copy_from_slice(&MAGIC);
        let k = fill_key(send_ns, self.stream);
        for (i, b) in buf.iter_mut().enumerate().skip(RTP_HEADER + META_LEN) {
            *b = (i as u8) ^ k;
        }
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(self.ts_step);
    }
}

/// The byte the payload fill is keyed with: changes per packet and per stream, so
/// a relay that mixes up or damages payloads is caught.
const fn fill_key(send_ns: u64, stream: u32) -> u8 {
    (send_ns as u8) ^ (stream as u8)
}

/// Whether the fill after the metadata is what [`TxStream::write_next`] wrote.
pub fn payload_intact(buf: &[u8], meta: &RxMeta) -> bool {
    let k = fill_key(meta.send_ns, meta.stream);
    buf.iter()
        .enumerate()
        .skip(RTP_HEADER + META_LEN)
        .all(|(i, &b)| b == (i as u8) ^ k)
}

/// The fields the receiver needs from one of our packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxMeta {
    pub seq: u16,
    pub ssrc: u32,
    pub send_ns: u64,
    pub stream: u32,
}

/// Why a received datagram was not counted as one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    TooShort,
    NotRtpV2,
    NoMagic,
}

/// Parses a packet we sent (after whatever the relay did to seq/SSRC/PT: only the
/// payload is trusted for identity).
pub fn parse(buf: &[u8]) -> Result<RxMeta, Foreign> {
    if buf.len() < RTP_HEADER + META_LEN {
        return Err(Foreign::TooShort);
    }
    if buf[0] >> 6 != 2 {
        return Err(Foreign::NotRtpV2);
    }
    if buf[24..28] != MAGIC {
        return Err(Foreign::NoMagic);
    }
    let u32_at = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let mut t = [0u8; 8];
    t.copy_from_slice(&buf[12..20]);
    Ok(RxMeta {
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        ssrc: u32_at(8),
        send_ns: u64::from_be_bytes(t),
        stream: u32_at(20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut tx = TxStream::new(7, 160);
        let first_seq = tx.seq;
        let mut buf = [0u8; RTP_HEADER + DEFAULT_PAYLOAD];
        tx.write_next(&mut buf, 123_456_789);
        assert_eq!(buf[0], 0x80);
        assert_eq!(buf.len(), 172);
        let m = parse(&buf).unwrap();
        assert_eq!(m.seq, first_seq);
        assert_eq!(m.ssrc, ssrc_for(7));
        assert_eq!(m.send_ns, 123_456_789);
        assert_eq!(m.stream, 7);
        let ts0 = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        tx.write_next(&mut buf, 5);
        let ts1 = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        assert_eq!(ts1.wrapping_sub(ts0), 160);
        assert_eq!(parse(&buf).unwrap().seq, first_seq.wrapping_add(1));
        let m = parse(&buf).unwrap();
        assert!(payload_intact(&buf, &m));
        buf[100] ^= 1;
        assert!(!payload_intact(&buf, &m));
    }

    #[test]
    fn rejects_foreign() {
        assert_eq!(parse(&[0x80; 10]), Err(Foreign::TooShort));
        let mut buf = [0u8; 40];
        assert_eq!(parse(&buf), Err(Foreign::NotRtpV2));
        buf[0] = 0x80;
        assert_eq!(parse(&buf), Err(Foreign::NoMagic));
    }

    #[test]
    fn ssrcs_differ() {
        assert_ne!(ssrc_for(0), ssrc_for(1));
        assert_ne!(ssrc_for(1), ssrc_for(2));
    }
}
