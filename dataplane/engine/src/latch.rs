//! Source checking and latching (symmetric RTP), with the guard against RTP-bleed
//! style hijacking: once a stream is latched, a newcomer takes it over only if it
//! proves it belongs (it sends the latched stream's SSRC) or the latched source has
//! gone silent for the configured time (a NAT rebinding after a pause).

use std::net::{IpAddr, SocketAddr};

use crate::rule::{LatchMode, MismatchPolicy};

/// An endpoint as the flow slot keeps it: address and port, without the IPv6
/// flow info and scope id that `SocketAddr` adds (20 bytes with its `Option`,
/// where `SocketAddr` takes 32). SDP names neither, rtpengine's own endpoint type
/// has neither. What is lost: a link-local peer that only latching could learn
/// is answered without its scope, so its replies do not reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Addr {
    ip: IpAddr,
    port: u16,
}

impl From<SocketAddr> for Addr {
    #[inline]
    fn from(a: SocketAddr) -> Self {
        Addr {
            ip: a.ip(),
            port: a.port(),
        }
    }
}

impl From<Addr> for SocketAddr {
    #[inline]
    fn from(a: Addr) -> Self {
        SocketAddr::new(a.ip, a.port)
    }
}

impl Addr {
    #[inline]
    pub(crate) fn port(self) -> u16 {
        self.port
    }

    #[inline]
    pub(crate) fn ip(self) -> IpAddr {
        self.ip
    }
}

/// What the latch learned from the packets it accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Latch {
    /// The latched source; `None` until the first valid packet (or with `Fixed`).
    pub addr: Option<Addr>,
    /// SSRC last sent by the latched source (the proof a rebinding source must show).
    pub ssrc: Option<u32>,
    /// `now_ns` of the last packet from the latched source.
    pub last_ns: u64,
    /// Whether `addr` is one of the relay's own endpoints (the loop guard
    /// watches what is sent there); set by the engine, which knows them.
    pub addr_local: bool,
}

/// The latch's verdict on one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// From the expected source (or nothing to check against): accept.
    Accept,
    /// From elsewhere, but the policy forwards it anyway; the latch stays.
    AcceptForeign,
    /// The latch now points at this source: accept and report it.
    Latched { first: bool },
    /// Refuse and count as a source mismatch.
    Mismatch,
}

impl Latch {
    /// Where the flow's packets go and come from now.
    #[inline]
    pub(crate) fn remote(&self, signalled: Option<Addr>) -> Option<Addr> {
        self.addr.or(signalled)
    }

    /// Judges a packet from `src` carrying `ssrc` (RTP SSRC or RTCP sender SSRC).
    #[inline]
    pub(crate) fn check(
        &mut self,
        mode: LatchMode,
        policy: MismatchPolicy,
        signalled: Option<Addr>,
        src: SocketAddr,
        ssrc: Option<u32>,
        now_ns: u64,
    ) -> Verdict {
        let src = Addr::from(src);
        let Some(expected) = self.addr.or(signalled) else {
            // Nothing signalled, nothing learned yet.
            return match mode {
                LatchMode::LatchFirst => self.latch(src, ssrc, now_ns, true),
                LatchMode::Fixed => Verdict::Accept,
            };
        };
        if src == expected {
            if mode == LatchMode::LatchFirst && self.addr.is_none() {
                // The signalled address proved right: latch it so later checks hold.
                return self.latch(src, ssrc, now_ns, true);
            }
            self.last_ns = now_ns;
            if ssrc.is_some() {
                self.ssrc = ssrc;
            }
            return Verdict::Accept;
        }
        if mode == LatchMode::LatchFirst && self.addr.is_none() {
            // Symmetric RTP: the first valid packet wins over the SDP address (NAT).
            return self.latch(src, ssrc, now_ns, true);
        }
        match policy {
            MismatchPolicy::Drop => Verdict::Mismatch,
            MismatchPolicy::Accept => Verdict::AcceptForeign,
            MismatchPolicy::Relatch { relatch_after_ns } => {
                if mode == LatchMode::Fixed {
                    return Verdict::Mismatch;
                }
                let proves_ssrc = ssrc.is_some() && ssrc == self.ssrc;
                let silent = now_ns.saturating_sub(self.last_ns) >= relatch_after_ns;
                if proves_ssrc || silent {
                    self.latch(src, ssrc, now_ns, false)
                } else {
                    Verdict::Mismatch
                }
            }
        }
    }

    fn latch(&mut self, src: Addr, ssrc: Option<u32>, now_ns: u64, first: bool) -> Verdict {
        self.addr = Some(src);
        // Until the engine, which knows the relay's endpoints, says otherwise.
        self.addr_local = false;
        self.ssrc = ssrc;
        self.last_ns = now_ns;
        Verdict::Latched { first }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    /// A signalled remote.
    fn sig(port: u16) -> Option<Addr> {
        Some(a(port).into())
    }

    const RELATCH: MismatchPolicy = MismatchPolicy::Relatch {
        relatch_after_ns: 1_000_000_000,
    };

    #[test]
    fn first_packet_latches_even_against_the_sdp_address() {
        let mut l = Latch::default();
        let v = l.check(LatchMode::LatchFirst, RELATCH, sig(1), a(2), Some(7), 0);
        assert_eq!(v, Verdict::Latched { first: true });
        assert_eq!(l.remote(sig(1)), Some(a(2).into()));
        // The signalled address is now a stranger.
        assert_eq!(
            l.check(LatchMode::LatchFirst, RELATCH, sig(1), a(1), Some(9), 10),
            Verdict::Mismatch
        );
    }

    #[test]
    fn fixed_mode_never_learns() {
        let mut l = Latch::default();
        for policy in [MismatchPolicy::Drop, RELATCH] {
            assert_eq!(
                l.check(LatchMode::Fixed, policy, sig(1), a(2), Some(7), u64::MAX),
                Verdict::Mismatch
            );
        }
        assert_eq!(
            l.check(
                LatchMode::Fixed,
                MismatchPolicy::Accept,
                sig(1),
                a(2),
                None,
                0
            ),
            Verdict::AcceptForeign
        );
        assert_eq!(
            l.check(
                LatchMode::Fixed,
                MismatchPolicy::Drop,
                sig(1),
                a(1),
                None,
                0
            ),
            Verdict::Accept
        );
        assert_eq!(l.addr, None);
    }

    #[test]
    fn relatch_needs_the_ssrc_or_silence() {
        let mut l = Latch::default();
        l.check(LatchMode::LatchFirst, RELATCH, None, a(1), Some(7), 0);
        // Live stream, stranger with another SSRC: refused.
        assert_eq!(
            l.check(
                LatchMode::LatchFirst,
                RELATCH,
                None,
                a(2),
                Some(8),
                500_000_000
            ),
            Verdict::Mismatch
        );
        // Same SSRC from a new port (NAT rebinding without a pause): moves.
        assert_eq!(
            l.check(
                LatchMode::LatchFirst,
                RELATCH,
                None,
                a(3),
                Some(7),
                600_000_000
            ),
            Verdict::Latched { first: false }
        );
        // Silence of the latched source for the full period lets anyone take over.
        assert_eq!(
            l.check(
                LatchMode::LatchFirst,
                RELATCH,
                None,
                a(4),
                Some(9),
                1_600_000_000
            ),
            Verdict::Latched { first: false }
        );
        assert_eq!(l.addr, Some(Addr::from(a(4))));
    }

    #[test]
    fn endpoints_keep_address_and_port_only() {
        let v4 = a(5004);
        assert_eq!(SocketAddr::from(Addr::from(v4)), v4);
        let v6: SocketAddr = "[2001:db8::1]:5006".parse().unwrap();
        assert_eq!(SocketAddr::from(Addr::from(v6)), v6);
        let scoped = SocketAddr::V6(std::net::SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            5008,
            7,
            3,
        ));
        let back = SocketAddr::from(Addr::from(scoped));
        assert_eq!((back.ip(), back.port()), (scoped.ip(), 5008));
        // A scoped source still matches the latch it set.
        let mut l = Latch::default();
        let v = l.check(LatchMode::LatchFirst, RELATCH, None, scoped, None, 0);
        assert_eq!(v, Verdict::Latched { first: true });
        let v = l.check(LatchMode::LatchFirst, RELATCH, None, scoped, None, 1);
        assert_eq!(v, Verdict::Accept);
        assert_eq!(core::mem::size_of::<Option<Addr>>(), 20);
    }
}
