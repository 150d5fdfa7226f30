//! Zero-copy views over RTP, RTCP and the RFC 7983 first-byte demultiplexer.
//!
//! Every view follows one contract (after smoltcp's `wire` module): `new_checked`
//! validates the lengths once, after which no accessor or setter can panic, and
//! nothing is copied or allocated. Setters exist where `T: AsMut<[u8]>` for the
//! fields a relay rewrites.
#![forbid(unsafe_code)]

pub mod demux;
pub mod error;
pub mod rtcp;
pub mod rtp;

pub use demux::{PacketClass, classify, is_rtcp_packet_type};
pub use error::{Result, WireError};
pub use rtcp::{Compound, CompoundIter, ReportBlock, RtcpPacket, RtcpType, SenderInfo};
pub use rtp::{ExtElement, ExtElements, ExtProfile, RtpPacket};
