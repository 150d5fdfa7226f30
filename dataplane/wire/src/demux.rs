//! What arrived on a media port: RFC 7983 §7 first-byte demultiplexing, then RTP vs
//! RTCP on a muxed port (RFC 5761 §4).
//!
//! ```text
//!              +----------------+
//!              |        [0..3] -+--> STUN
//!              |      [16..19] -+--> ZRTP
//!  packet -->  |      [20..63] -+--> DTLS
//!              |      [64..79] -+--> TURN channel
//!              |    [128..191] -+--> RTP/RTCP  (2nd byte & 0x7f in 64..=95: RTCP)
//!              +----------------+
//! ```

/// The kind of a datagram, judged from its first two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketClass {
    Stun,
    Zrtp,
    Dtls,
    TurnChannel,
    Rtp,
    Rtcp,
    /// Empty, or a first byte no RFC 7983 range claims (4–15, 80–127, 192–255).
    Unknown,
}

/// RFC 5761 §4: with the marker bit cleared, RTCP packet types 192–223 read as
/// payload types 64–95, which RTP must not use on a muxed port.
#[inline]
pub const fn is_rtcp_packet_type(second_byte: u8) -> bool {
    matches!(second_byte & 0x7f, 64..=95)
}

/// Classifies a datagram; never reads past the first two bytes.
#[inline]
pub fn classify(buf: &[u8]) -> PacketClass {
    let Some(&first) = buf.first() else {
        return PacketClass::Unknown;
    };
    // RFC 7983 §7.
    match first {
        0..=3 => PacketClass::Stun,
        16..=19 => PacketClass::Zrtp,
        20..=63 => PacketClass::Dtls,
        64..=79 => PacketClass::TurnChannel,
        128..=191 => match buf.get(1) {
            Some(&b) if is_rtcp_packet_type(b) => PacketClass::Rtcp,
            Some(_) => PacketClass::Rtp,
            None => PacketClass::Unknown,
        },
        _ => PacketClass::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_ranges() {
        let expect = |b: u8| match b {
            0..=3 => PacketClass::Stun,
            16..=19 => PacketClass::Zrtp,
            20..=63 => PacketClass::Dtls,
            64..=79 => PacketClass::TurnChannel,
            128..=191 => PacketClass::Rtp,
            _ => PacketClass::Unknown,
        };
        for b in 0..=255u8 {
            assert_eq!(classify(&[b, 0]), expect(b), "first byte {b}");
        }
    }

    #[test]
    fn rtp_versus_rtcp_on_a_muxed_port() {
        for second in 0..=255u8 {
            let want = if (192..=223).contains(&(second | 0x80)) && second & 0x7f >= 64 {
                PacketClass::Rtcp
            } else {
                PacketClass::Rtp
            };
            assert_eq!(classify(&[0x80, second]), want, "second byte {second}");
        }
        assert_eq!(classify(&[0x80, 200]), PacketClass::Rtcp);
        assert_eq!(classify(&[0x81, 206]), PacketClass::Rtcp);
        assert_eq!(classify(&[0x80, 96]), PacketClass::Rtp);
        assert_eq!(classify(&[0x80, 0x80 | 96]), PacketClass::Rtp);
        assert_eq!(classify(&[0x80, 0x80 | 72]), PacketClass::Rtcp);
    }

    #[test]
    fn short_inputs() {
        assert_eq!(classify(&[]), PacketClass::Unknown);
        assert_eq!(classify(&[0x80]), PacketClass::Unknown);
        assert_eq!(classify(&[0x00]), PacketClass::Stun);
    }
}
