//! Between a party's SDP and the flows: what the relay learns from it (where the
//! party wants media) and how the SDP is rewritten onto the relay's ports for the
//! other party.

use std::net::{IpAddr, SocketAddr};

use ferrelay_sdp::{Direction, Media, Proto, Rtcp, Sdp};

use super::call::{Endpoint, Side};
use super::flags::Flags;

/// What one m= line of the outgoing SDP announces.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The relay port the receiving party sends to (0: stream rejected).
    pub port: u16,
    /// Announce a=rtcp-mux (RFC 5761 §5.1.1).
    pub mux: bool,
    /// a=rtcp names the RTP port itself (muxed only) instead of port + 1.
    pub rtcp_on_rtp_port: bool,
}

/// Refuses what the relay cannot do: DTLS-SRTP needs a DTLS endpoint, and with
/// `SDES-off` a change between RTP and SRTP has no keys.
pub fn check_protocols(sdp: &Sdp, flags: &Flags) -> Result<(), String> {
    let want = flags.transport_protocol.as_deref().map(Proto::parse);
    if let Some(w) = &want {
        if !w.is_rtp() {
            return Err(format!("Unsupported transport protocol '{w}'"));
        }
        if w.is_dtls() {
            return Err(format!(
                "Transport protocol '{w}' (DTLS-SRTP) is not supported yet"
            ));
        }
    }
    for m in sdp.media().iter().filter(|m| !m.is_rejected()) {
        let p = m.proto();
        if p.is_dtls() {
            return Err(format!(
                "Media protocol '{p}' (DTLS-SRTP) is not supported yet"
            ));
        }
        if let Some(w) = &want
            && flags.sdes.off
            && p.is_rtp()
            && w.is_srtp() != p.is_srtp()
        {
            return Err(format!(
                "Translating {p} to {w} needs SDES keys, but SDES is off for this call"
            ));
        }
    }
    Ok(())
}

/// Media types of RFC 8866 §5.14 and the IANA registry's common ones.
pub const MEDIA_TYPES: &[&str] = &["audio", "video", "text", "application", "message", "image"];

/// RTP profiles (RFC 3551, 3711, 4585, 5124, 5764) and the usual non-RTP ones.
pub const PROTOCOLS: &[&str] = &[
    "RTP/AVP",
    "RTP/SAVP",
    "RTP/AVPF",
    "RTP/SAVPF",
    "UDP/TLS/RTP/SAVP",
    "UDP/TLS/RTP/SAVPF",
    "udp",
    "UDP/BFCP",
    "TCP/MSRP",
    "TCP/TLS/MSRP",
    "UDP/DTLS/SCTP",
    "udptl",
];

/// A side's media type and protocol: indexes into [`MEDIA_TYPES`] and
/// [`PROTOCOLS`] (two bytes), with owned copies only for names outside them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaNames {
    media: u8,
    proto: u8,
    other: Option<Box<[Box<str>; 2]>>,
}

/// Index meaning "not in the table: see `other`".
const OTHER: u8 = u8::MAX;

fn index_in(s: &str, known: &[&str]) -> u8 {
    known
        .iter()
        .position(|k| *k == s)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(OTHER)
}

impl MediaNames {
    pub fn new(media: &str, proto: &str) -> MediaNames {
        let (mi, pi) = (index_in(media, MEDIA_TYPES), index_in(proto, PROTOCOLS));
        let other = (mi == OTHER || pi == OTHER).then(|| Box::new([media.into(), proto.into()]));
        MediaNames {
            media: mi,
            proto: pi,
            other,
        }
    }

    pub fn media(&self) -> &str {
        match (&self.other, self.media) {
            (Some(o), OTHER) => &o[0],
            (_, i) => MEDIA_TYPES.get(usize::from(i)).copied().unwrap_or(""),
        }
    }

    pub fn proto(&self) -> &str {
        match (&self.other, self.proto) {
            (Some(o), OTHER) => &o[1],
            (_, i) => PROTOCOLS.get(usize::from(i)).copied().unwrap_or(""),
        }
    }

    /// The same media type with another protocol.
    pub fn with_proto(&self, proto: &str) -> MediaNames {
        MediaNames::new(self.media(), proto)
    }
}

/// Records where the party of `side` wants media, per its m= line `m`.
pub fn learn_remote(side: &mut Side, m: &Media, sdp: &Sdp, flags: &Flags) {
    side.set_rejected(m.is_rejected());
    side.set_mux_signalled(m.rtcp_mux());
    side.names = MediaNames::new(m.media_type(), m.proto().as_str());
    side.clock_rate = m
        .payload_types()
        .next()
        .and_then(|pt| m.clock_rate(pt))
        .unwrap_or(8000);
    // rtpengine: `media-address` replaces the SDP address; `SIP-source-address`
    // uses the address the signalling came from.
    let over: Option<IpAddr> = flags.media_address.or(if flags.sip_source_address {
        flags.received_from
    } else {
        None
    });
    let fix = |a: SocketAddr| {
        let a = over.map_or(a, |ip| SocketAddr::new(ip, a.port()));
        // RFC 3264 §8.4: c=0.0.0.0 is hold; nowhere to send until it comes back.
        // So is its IPv4-mapped form, which a dual-stack socket would send to
        // the host itself.
        (!a.ip().to_canonical().is_unspecified() && a.port() != 0).then_some(a)
    };
    let rtp = m.rtp_addr(sdp).and_then(fix).map(Endpoint::from);
    let rtcp = if side.mux_signalled() {
        rtp
    } else {
        m.rtcp_addr(sdp).and_then(fix).map(Endpoint::from)
    };
    side.set_remotes(rtp, rtcp);
}

/// Rewrites `sdp` onto the relay: addresses, ports, a=rtcp, rtcp-mux, protocol,
/// origin; ICE lines always go (the relay is not an ICE agent, and candidates
/// pointing at the party would let media bypass it).
pub fn apply(sdp: &mut Sdp, adv: IpAddr, plan: &[Plan], flags: &Flags) {
    // A hold's 0.0.0.0 is kept so the other party still sees the hold.
    if sdp.connection().is_some_and(|c| !c.is_unspecified()) {
        sdp.set_connection(adv);
    }
    let proto = flags.transport_protocol.as_deref().map(Proto::parse);
    // Each stream states its direction explicitly, as rtpengine writes it
    // (RFC 8866 §6.7: absent means sendrecv, or the session-level value).
    let dirs: Vec<Direction> = sdp
        .media()
        .iter()
        .map(|m| m.effective_direction(sdp))
        .collect();
    for ((m, p), dir) in sdp.media_mut().iter_mut().zip(plan).zip(dirs) {
        if m.connection().is_some_and(|c| !c.is_unspecified()) {
            m.set_connection(adv);
        }
        m.set_port(p.port);
        if p.port == 0 {
            continue;
        }
        if m.direction().is_none() {
            m.set_direction(dir);
        }
        // RFC 3605 §2.1: say where RTCP goes, explicitly.
        let rtcp_port = if p.rtcp_on_rtp_port {
            p.port
        } else {
            p.port + 1
        };
        m.set_rtcp(Some(Rtcp {
            port: rtcp_port,
            connection: None,
        }));
        m.set_rtcp_mux(p.mux);
        if let Some(w) = &proto
            && m.proto().is_rtp()
        {
            m.set_proto(w.clone());
        }
    }
    sdp.remove_ice();
    if flags.replace_origin {
        sdp.set_origin_address(adv, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_names_known_and_other() {
        let d = MediaNames::default();
        assert_eq!((d.media(), d.proto()), ("audio", "RTP/AVP"));
        let v = MediaNames::new("video", "RTP/SAVPF");
        assert_eq!((v.media(), v.proto()), ("video", "RTP/SAVPF"));
        assert!(v.other.is_none(), "known names take no heap");
        let o = MediaNames::new("audio", "RTP/XYZ");
        assert_eq!((o.media(), o.proto()), ("audio", "RTP/XYZ"));
        let o = o.with_proto("RTP/AVPF");
        assert_eq!(
            (o.media(), o.proto(), o.other.is_none()),
            ("audio", "RTP/AVPF", true)
        );
        let x = MediaNames::new("x-thing", "udp");
        assert_eq!((x.media(), x.proto()), ("x-thing", "udp"));
    }
}
