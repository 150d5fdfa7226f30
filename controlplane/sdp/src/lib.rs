//! SDP (RFC 8866) parsing and line-preserving rewriting for a media relay.
//!
//! The model keeps every line, its order and its line end, so an SDP the relay does not
//! change is written back byte for byte, and a rewrite touches only the lines the relay
//! owns (c=, m= port/proto, o= address/version, a=rtcp, a=rtcp-mux, direction, a=crypto,
//! ICE lines). Unknown lines and attributes are kept verbatim, as rtpengine does.
//!
//! Malformed input gives an [`SdpError`] naming the 1-based line and the reason; nothing
//! here panics on any input. Lenient where rtpengine is: unknown line types, unknown or
//! unreadable attributes (an odd `a=rtpmap` included) are kept verbatim. Strict where a
//! relay would otherwise act on garbage: `v=`, `o=`, `c=`, `m=`, `a=rtcp`, `a=crypto`.
//!
//! Line ends: each line keeps its own (CRLF, LF, or none on the last line). Lines a
//! rewrite adds take the first line's end, so an LF document stays LF;
//! [`Sdp::normalize_line_endings`] makes everything CRLF, as RFC 8866 §5 asks.
//!
//! Addresses and directions that depend on the session level are read through the
//! media section with the whole [`Sdp`] passed in (`m.rtp_addr(&sdp)`), because a
//! media section inherits c= and the direction from the session.
//!
//! ```
//! use ferrelay_sdp::{Direction, Proto, Rtcp, Sdp};
//!
//! let offer = "v=0\r\n\
//!     o=alice 2890844526 2890844526 IN IP4 10.0.0.5\r\n\
//!     s=-\r\n\
//!     c=IN IP4 10.0.0.5\r\n\
//!     t=0 0\r\n\
//!     m=audio 49170 RTP/AVP 0 101\r\n\
//!     a=rtpmap:101 telephone-event/8000\r\n\
//!     a=candidate:1 1 UDP 2130706431 10.0.0.5 49170 typ host\r\n\
//!     a=sendrecv\r\n";
//! let mut sdp = Sdp::parse(offer)?;
//! assert_eq!(sdp.to_string(), offer); // untouched: byte-identical
//!
//! // What the relay learns about the peer.
//! let m = &sdp.media()[0];
//! assert_eq!(m.rtp_addr(&sdp), Some("10.0.0.5:49170".parse().unwrap()));
//! assert_eq!(m.rtcp_port(), Some(49171));
//! assert_eq!(m.clock_rate(0), Some(8000)); // RFC 3551 static table
//! assert!(!m.is_on_hold(&sdp));
//!
//! // Anchor the stream on the relay.
//! let relay = "203.0.113.1".parse().unwrap();
//! sdp.set_origin_address(relay, true);
//! sdp.set_connection(relay);
//! sdp.remove_ice();
//! let m = &mut sdp.media_mut()[0];
//! m.set_port(30000);
//! m.set_rtcp(Some(Rtcp { port: 30001, connection: None }));
//! m.set_proto(Proto::RtpAvp);
//! m.set_direction(Direction::SendRecv);
//! sdp.normalize_line_endings(); // CRLF everywhere on the wire (RFC 8866 §5)
//!
//! assert_eq!(
//!     sdp.to_string(),
//!     "v=0\r\n\
//!     o=alice 2890844526 2890844527 IN IP4 203.0.113.1\r\n\
//!     s=-\r\n\
//!     c=IN IP4 203.0.113.1\r\n\
//!     t=0 0\r\n\
//!     m=audio 30000 RTP/AVP 0 101\r\n\
//!     a=rtpmap:101 telephone-event/8000\r\n\
//!     a=sendrecv\r\n\
//!     a=rtcp:30001\r\n"
//! );
//! # Ok::<(), ferrelay_sdp::SdpError>(())
//! ```
#![forbid(unsafe_code)]

mod attr;
mod crypto;
mod error;
mod fields;
mod line;
mod media;
mod session;

pub use attr::{Direction, Rtcp, Rtpmap, static_payload_type};
pub use crypto::{Crypto, InlineKey, KeyParam, Lifetime, Mki};
pub use error::{Reason, SdpError};
pub use fields::{Connection, IpText, Origin, Proto};
pub use media::Media;
pub use session::{MAX_MEDIA, Sdp};
