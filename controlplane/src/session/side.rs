//! One party's end of one m= line: the port pair it talks to, the two flows on
//! those ports, where it wants media, and what the worker last counted.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ferrelay_engine::{Component, CryptoSpec, FlowId, FlowRule, LatchMode, MismatchPolicy, Output};

use super::backend::FlowCounters;
use super::flags::Flags;
use super::ports::PortPair;
use super::rewrite::MediaNames;
use super::sdes::SideCrypto;
use crate::config::{InterfaceSpec, MAX_INTERFACES};

/// Silence before `media-handover` lets a new source take over the stream (the
/// engine also lets a newcomer with the latched SSRC move it at once).
pub const HANDOVER_AFTER: Duration = Duration::from_secs(1);

/// How a side learns and guards its remote (two bytes; the engine's
/// `MismatchPolicy` is built from it per rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub latch: LatchMode,
    pub mismatch: Mismatch,
}

/// rtpengine's source-mismatch behaviours, without the engine's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// `strict-source`.
    Drop,
    /// `media-handover`, after [`HANDOVER_AFTER`] of silence.
    Handover,
    /// The default: forward from anyone, keep the latch.
    Accept,
}

impl Policy {
    /// The engine's mismatch policy for this side's rules.
    pub fn on_mismatch(self) -> MismatchPolicy {
        match self.mismatch {
            Mismatch::Drop => MismatchPolicy::Drop,
            Mismatch::Handover => MismatchPolicy::Relatch {
                relatch_after_ns: HANDOVER_AFTER.as_nanos() as u64,
            },
            Mismatch::Accept => MismatchPolicy::Accept,
        }
    }
}

impl Policy {
    /// rtpengine's flags mapped to the engine's latch and mismatch modes.
    pub fn from_flags(f: &Flags) -> Policy {
        let latch = if f.trust_address || f.asymmetric {
            LatchMode::Fixed
        } else {
            LatchMode::LatchFirst
        };
        let mismatch = if f.strict_source {
            Mismatch::Drop
        } else if f.media_handover {
            Mismatch::Handover
        } else {
            Mismatch::Accept
        };
        Policy { latch, mismatch }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            latch: LatchMode::LatchFirst,
            mismatch: Mismatch::Accept,
        }
    }
}

/// What a side without SDES state reads as.
static PLAIN: SideCrypto = SideCrypto::PLAIN;

/// An address and port without IPv6 flow info and scope id: 20 bytes where
/// `SocketAddr` takes 32. SDP carries neither, and `query` shows neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

impl From<SocketAddr> for Endpoint {
    fn from(a: SocketAddr) -> Self {
        Endpoint {
            ip: a.ip(),
            port: a.port(),
        }
    }
}

impl From<Endpoint> for SocketAddr {
    fn from(e: Endpoint) -> Self {
        SocketAddr::new(e.ip, e.port)
    }
}

/// Packet, byte and error counts of a flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub packets: u64,
    pub bytes: u64,
    pub errors: u64,
}

/// One party's end of one m= line.
///
/// 192 bytes, so that a party's array of one side (most calls) takes the
/// allocator's 192-byte blocks: the rare state (SDES keys, counters of removed
/// flows, an RTCP address that is not the RTP one's or next to it) is boxed
/// together, the yes/no state and the policy share one word, the per-flow counts
/// are no wider than the worker's, and the interface's address is the
/// interface's, not repeated here.
#[derive(Debug)]
pub struct Side {
    /// Index of the interface the pair is bound on (and so of its address): one
    /// byte, as there are at most [`MAX_INTERFACES`].
    iface: u8,
    /// The flags below, the policy, and where RTCP goes ([`Side::remote_rtcp`]).
    bits: u16,
    /// The party sends to `pair.port` (RTP, or both when muxed) and `pair.port + 1`
    /// (RTCP); reserved until the call's ports are released.
    pub pair: PortPair,
    /// Installed flows on the pair: `[rtp-or-muxed, rtcp]`.
    pub flows: Option<[FlowId; 2]>,
    /// Where the party wants RTP (from its SDP); `None` before it is known or on
    /// hold. Set with [`Side::set_remotes`].
    remote_rtp: Option<Endpoint>,
    pub clock_rate: u32,
    /// The m= line's media type and protocol.
    pub names: MediaNames,
    /// What few sides have, boxed and only while there is any.
    cold: Option<Box<Cold>>,
    /// Packets, bytes and drops of `[rtp-or-muxed, rtcp]`, from the worker's
    /// stats. Drops are `u32`, as the worker counts them per flow.
    packets: [u64; 2],
    bytes: [u64; 2],
    errors: [u32; 2],
    /// Where the packets of `[rtp-or-muxed, rtcp]` come from, from the same stats.
    seen: [Option<Endpoint>; 2],
    /// Wall-clock second (unix) the counters of `[rtp, rtcp]` last grew.
    pub last_packet_unix: [u32; 2],
}

/// A side's rare state.
#[derive(Debug, Default)]
struct Cold {
    /// SDES keys of this leg (the party's and the relay's); most calls are plain.
    crypto: Option<SideCrypto>,
    /// Counters of flows already removed (re-offers that rejected the stream).
    retired: Tally,
    /// Where the party wants RTCP, when that is neither its RTP address nor the
    /// port after it there.
    rtcp: Option<Endpoint>,
}

impl Cold {
    fn is_empty(&self) -> bool {
        self.crypto.is_none() && self.retired == Tally::default() && self.rtcp.is_none()
    }
}

// `Side::bits`: yes/no state.
const MUXED: u16 = 1;
const MUX_SIGNALLED: u16 = 1 << 1;
const MUX_OFFERED: u16 = 1 << 2;
const REJECTED: u16 = 1 << 3;
const BLOCKED: u16 = 1 << 4;
const FAILED: u16 = 1 << 5;
// The policy: the latch mode, and the mismatch behaviour in two bits.
const FIXED_LATCH: u16 = 1 << 6;
const MISMATCH_SHIFT: u32 = 7;
const MISMATCH: u16 = 0b11 << MISMATCH_SHIFT;
// Where RTCP goes, in two bits: nowhere, the RTP address (muxed), the port
// after it, or `Cold::rtcp`.
const RTCP_SHIFT: u32 = 9;
const RTCP: u16 = 0b11 << RTCP_SHIFT;
const RTCP_NONE: u16 = 0;
const RTCP_SAME: u16 = 1 << RTCP_SHIFT;
const RTCP_NEXT: u16 = 2 << RTCP_SHIFT;
const RTCP_COLD: u16 = 3 << RTCP_SHIFT;

/// A getter and a setter for one bit of `Side::bits`.
macro_rules! flag {
    ($(#[$doc:meta])* $get:ident, $set:ident, $bit:expr) => {
        $(#[$doc])*
        pub fn $get(&self) -> bool {
            self.bits & $bit != 0
        }

        pub fn $set(&mut self, on: bool) {
            if on {
                self.bits |= $bit;
            } else {
                self.bits &= !$bit;
            }
        }
    };
}

impl Side {
    /// A side on interface `iface` ([`Side::iface_index`] makes one).
    pub fn new(iface: u8, pair: PortPair) -> Side {
        let mut side = Side {
            iface,
            bits: 0,
            pair,
            flows: None,
            remote_rtp: None,
            clock_rate: 8000,
            names: MediaNames::default(),
            cold: None,
            packets: [0; 2],
            bytes: [0; 2],
            errors: [0; 2],
            seen: [None; 2],
            last_packet_unix: [0; 2],
        };
        side.set_policy(Policy::default());
        side
    }

    flag!(
        /// The party sends and expects RTCP on the RTP port (RFC 5761).
        muxed, set_muxed, MUXED
    );
    flag!(
        /// The party's own SDP carried a=rtcp-mux.
        mux_signalled, set_mux_signalled, MUX_SIGNALLED
    );
    flag!(
        /// The relay offered rtcp-mux to this party.
        mux_offered, set_mux_offered, MUX_OFFERED
    );
    flag!(
        /// The party's m= port was 0: stream rejected or disabled, no flows.
        rejected, set_rejected, REJECTED
    );
    flag!(blocked, set_blocked, BLOCKED);
    flag!(
        /// A worker refused this side's flows: nothing is relayed to or from it
        /// until a new offer or answer installs them again.
        failed, set_failed, FAILED
    );

    pub fn policy(&self) -> Policy {
        Policy {
            latch: if self.bits & FIXED_LATCH != 0 {
                LatchMode::Fixed
            } else {
                LatchMode::LatchFirst
            },
            mismatch: match (self.bits & MISMATCH) >> MISMATCH_SHIFT {
                0 => Mismatch::Accept,
                1 => Mismatch::Drop,
                _ => Mismatch::Handover,
            },
        }
    }

    pub fn set_policy(&mut self, p: Policy) {
        let latch = match p.latch {
            LatchMode::Fixed => FIXED_LATCH,
            LatchMode::LatchFirst => 0,
        };
        let mismatch: u16 = match p.mismatch {
            Mismatch::Accept => 0,
            Mismatch::Drop => 1,
            Mismatch::Handover => 2,
        };
        self.bits = (self.bits & !(FIXED_LATCH | MISMATCH)) | latch | (mismatch << MISMATCH_SHIFT);
    }

    /// Where the party wants RTP.
    pub fn remote_rtp(&self) -> Option<Endpoint> {
        self.remote_rtp
    }

    /// Where the party wants RTCP.
    pub fn remote_rtcp(&self) -> Option<Endpoint> {
        match self.bits & RTCP {
            RTCP_SAME => self.remote_rtp,
            RTCP_NEXT => self.remote_rtp.map(|e| Endpoint {
                ip: e.ip,
                port: e.port.wrapping_add(1),
            }),
            RTCP_COLD => self.cold.as_ref().and_then(|c| c.rtcp),
            _ => None,
        }
    }

    /// Where the party wants RTP and RTCP.
    pub fn set_remotes(&mut self, rtp: Option<Endpoint>, rtcp: Option<Endpoint>) {
        self.remote_rtp = rtp;
        let at = match (rtp, rtcp) {
            (_, None) => RTCP_NONE,
            (Some(r), Some(c)) if c == r => RTCP_SAME,
            (Some(r), Some(c)) if c.ip == r.ip && r.port.checked_add(1) == Some(c.port) => {
                RTCP_NEXT
            }
            (_, Some(_)) => RTCP_COLD,
        };
        self.bits = (self.bits & !RTCP) | at;
        if at == RTCP_COLD {
            self.cold_mut().rtcp = rtcp;
        } else if let Some(c) = &mut self.cold {
            c.rtcp = None;
            self.trim_cold();
        }
    }

    fn cold_mut(&mut self) -> &mut Cold {
        self.cold.get_or_insert_default()
    }

    /// Frees the rare state when none is left.
    fn trim_cold(&mut self) {
        if self.cold.as_deref().is_some_and(Cold::is_empty) {
            self.cold = None;
        }
    }

    /// Index of the interface the pair is bound on.
    pub fn iface(&self) -> usize {
        usize::from(self.iface)
    }

    /// Interface `iface` as a side keeps it; an error beyond [`MAX_INTERFACES`],
    /// which the configuration refuses at startup.
    pub fn iface_index(iface: usize) -> Result<u8, String> {
        const { assert!(MAX_INTERFACES == 1 << u8::BITS) };
        u8::try_from(iface)
            .map_err(|_| format!("media interface {iface} beyond the {MAX_INTERFACES} allowed"))
    }

    /// The address the side's ports are bound on: its interface's, from the
    /// interfaces its index names.
    pub fn local_ip(&self, ifaces: &[InterfaceSpec]) -> Option<IpAddr> {
        ifaces.get(self.iface()).map(|i| i.local)
    }

    /// Counters of the flows removed from this side while it lived.
    pub fn retired(&self) -> Tally {
        self.cold.as_ref().map(|c| c.retired).unwrap_or_default()
    }

    /// The SDES state of this side (the plain one when it has none).
    pub fn crypto(&self) -> &SideCrypto {
        self.cold
            .as_ref()
            .and_then(|c| c.crypto.as_ref())
            .unwrap_or(&PLAIN)
    }

    /// The SDES state to change; [`Side::trim_crypto`] gives it back when plain.
    pub fn crypto_mut(&mut self) -> &mut SideCrypto {
        self.cold_mut().crypto.get_or_insert_default()
    }

    /// The SDES state, boxed, for a memo; `None` when plain.
    fn crypto_box(&self) -> Option<Box<SideCrypto>> {
        let c = self.crypto();
        (!c.is_plain()).then(|| Box::new(c.clone()))
    }

    fn set_crypto(&mut self, c: Option<Box<SideCrypto>>) {
        match c {
            Some(c) => *self.crypto_mut() = *c,
            None => {
                if let Some(cold) = &mut self.cold {
                    cold.crypto = None;
                }
                self.trim_cold();
            }
        }
    }

    /// What this side learnt from its party's SDP, for when another fork takes
    /// the side over (see [`ForkMemo`]); `peer` is the other party's side.
    pub fn memo(&self, peer: &Side) -> SideMemo {
        SideMemo {
            remote_rtp: self.remote_rtp,
            remote_rtcp: self.remote_rtcp(),
            mux_signalled: self.mux_signalled(),
            muxed: self.muxed(),
            peer_muxed: peer.muxed(),
            crypto: self.crypto_box(),
            peer_crypto: peer.crypto_box(),
        }
    }

    /// Puts back what [`Side::memo`] kept, on this side and its peer's.
    pub fn restore(&mut self, peer: &mut Side, m: SideMemo) {
        self.set_remotes(m.remote_rtp, m.remote_rtcp);
        self.set_mux_signalled(m.mux_signalled);
        self.set_muxed(m.muxed);
        peer.set_muxed(m.peer_muxed);
        self.set_crypto(m.crypto);
        peer.set_crypto(m.peer_crypto);
    }

    /// Frees the SDES state of a side that has none to keep.
    pub fn trim_crypto(&mut self) {
        if let Some(c) = &mut self.cold
            && c.crypto.as_ref().is_some_and(SideCrypto::is_plain)
        {
            c.crypto = None;
            self.trim_cold();
        }
    }

    /// The two rules of this side, forwarding to `peer`'s flows through `crypto`;
    /// `None` (keys not agreed yet) drops what arrives instead of forwarding it.
    pub fn rules(
        &self,
        peer: [FlowId; 2],
        peer_muxed: bool,
        crypto: Option<CryptoSpec>,
    ) -> [FlowRule; 2] {
        let rtcp_to = Output {
            via: if peer_muxed { peer[0] } else { peer[1] },
        };
        let mut rtp = FlowRule::new(Component::Muxed);
        rtp.remote = self.remote_rtp.map(SocketAddr::from);
        rtp.rtp_out = Some(Output { via: peer[0] });
        rtp.rtcp_out = Some(rtcp_to);
        let mut rtcp = FlowRule::new(Component::Rtcp);
        rtcp.remote = self.remote_rtcp().map(SocketAddr::from);
        rtcp.rtcp_out = Some(rtcp_to);
        let policy = self.policy();
        for r in [&mut rtp, &mut rtcp] {
            r.latch = policy.latch;
            r.on_mismatch = policy.on_mismatch();
            r.blocked = self.blocked();
            r.clock_rate = self.clock_rate;
            match &crypto {
                Some(c) => r.crypto = c.clone(),
                None => (r.rtp_out, r.rtcp_out) = (None, None),
            }
        }
        [rtp, rtcp]
    }

    /// A rule with no outputs, to install a flow before its peer exists.
    pub fn bare_rule(&self, which: usize) -> FlowRule {
        let mut r = FlowRule::new(if which == 0 {
            Component::Muxed
        } else {
            Component::Rtcp
        });
        r.remote = if which == 0 {
            self.remote_rtp
        } else {
            self.remote_rtcp()
        }
        .map(SocketAddr::from);
        let policy = self.policy();
        r.latch = policy.latch;
        r.on_mismatch = policy.on_mismatch();
        r.blocked = self.blocked();
        r
    }

    /// The counters of flow `k` (`[rtp-or-muxed, rtcp]`) as the worker last told.
    pub fn counters(&self, k: usize) -> FlowCounters {
        FlowCounters {
            packets: self.packets[k],
            bytes: self.bytes[k],
            errors: self.errors[k].into(),
            remote: self.seen[k].map(SocketAddr::from),
        }
    }

    /// Stores the worker's counters of flow `k`.
    pub fn set_counters(&mut self, k: usize, c: FlowCounters) {
        self.packets[k] = c.packets;
        self.bytes[k] = c.bytes;
        self.errors[k] = u32::try_from(c.errors).unwrap_or(u32::MAX);
        self.seen[k] = c.remote.map(Endpoint::from);
    }

    /// Moves the counters of flow `k` (being removed) into `retired`.
    pub fn retire(&mut self, k: usize) {
        let c = self.counters(k);
        (self.packets[k], self.bytes[k], self.errors[k]) = (0, 0, 0);
        self.seen[k] = None;
        if c.packets == 0 && c.bytes == 0 && c.errors == 0 {
            return;
        }
        let r = &mut self.cold_mut().retired;
        r.packets += c.packets;
        r.bytes += c.bytes;
        r.errors += c.errors;
    }

    /// Totals over live and removed flows.
    pub fn totals(&self) -> FlowCounters {
        let r = self.retired();
        let mut t = FlowCounters {
            packets: r.packets,
            bytes: r.bytes,
            errors: r.errors,
            remote: None,
        };
        for k in 0..2 {
            t.packets += self.packets[k];
            t.bytes += self.bytes[k];
            t.errors += u64::from(self.errors[k]);
        }
        t
    }
}

/// One stream as a fork's answer left it: where that fork wants media and the
/// keys it agreed, with the offerer's side of the same answer.
#[derive(Debug)]
pub struct SideMemo {
    remote_rtp: Option<Endpoint>,
    remote_rtcp: Option<Endpoint>,
    mux_signalled: bool,
    muxed: bool,
    peer_muxed: bool,
    crypto: Option<Box<SideCrypto>>,
    peer_crypto: Option<Box<SideCrypto>>,
}

/// A fork whose sides went to a later answer keeps, per stream, what its own
/// answer said, so that if the fork holding the media is deleted this one takes
/// over with its address and keys at once, not only once it sends or answers.
pub type ForkMemo = Box<[SideMemo]>;

#[cfg(test)]
mod tests {
    use super::*;

    fn side() -> Side {
        let pair = PortPair {
            rtp: Default::default(),
            rtcp: Default::default(),
            port: 5000,
        };
        Side::new(0, pair)
    }

    #[test]
    fn a_sides_flags_and_policy_share_a_word_without_touching_each_other() {
        let mut s = side();
        assert_eq!(s.policy(), Policy::default());
        type Flag = (fn(&Side) -> bool, fn(&mut Side, bool));
        let flags: [Flag; 6] = [
            (Side::muxed, Side::set_muxed),
            (Side::mux_signalled, Side::set_mux_signalled),
            (Side::mux_offered, Side::set_mux_offered),
            (Side::rejected, Side::set_rejected),
            (Side::blocked, Side::set_blocked),
            (Side::failed, Side::set_failed),
        ];
        let state = |s: &Side| flags.map(|(get, _)| get(s));
        for (i, (get, set)) in flags.iter().enumerate() {
            set(&mut s, true);
            assert!(get(&s));
            let mut want = [false; 6];
            want[i] = true;
            assert_eq!(state(&s), want, "flag {i} alone");
            set(&mut s, false);
        }
        s.set_muxed(true);
        s.set_failed(true);
        for latch in [LatchMode::Fixed, LatchMode::LatchFirst] {
            for mismatch in [Mismatch::Drop, Mismatch::Handover, Mismatch::Accept] {
                let p = Policy { latch, mismatch };
                s.set_policy(p);
                assert_eq!(s.policy(), p);
                assert_eq!(state(&s), [true, false, false, false, false, true]);
            }
        }
        let p = Policy {
            latch: LatchMode::Fixed,
            mismatch: Mismatch::Handover,
        };
        s.set_policy(p);
        s.set_remotes(None, None);
        s.set_remotes(
            Some(Endpoint::from(SocketAddr::from(([192, 0, 2, 1], 5000)))),
            Some(Endpoint::from(SocketAddr::from(([192, 0, 2, 7], 9)))),
        );
        assert_eq!(s.policy(), p, "remotes leave it");
        assert_eq!(state(&s), [true, false, false, false, false, true]);
    }

    #[test]
    fn rtcp_next_to_rtp_costs_no_box_and_anywhere_else_is_kept() {
        let e = |a: &str| Some(Endpoint::from(a.parse::<SocketAddr>().unwrap()));
        let mut s = side();
        s.set_policy(Policy {
            latch: LatchMode::Fixed,
            mismatch: Mismatch::Handover,
        });
        let cases = [
            (e("192.0.2.1:5000"), e("192.0.2.1:5001"), false),
            (e("192.0.2.1:5000"), e("192.0.2.1:5000"), false),
            (e("192.0.2.1:5000"), None, false),
            (None, None, false),
            (e("192.0.2.1:5000"), e("192.0.2.1:6000"), true),
            (e("192.0.2.1:5000"), e("198.51.100.1:5001"), true),
            (None, e("192.0.2.1:5001"), true),
            (e("[2001:db8::1]:65535"), e("[2001:db8::1]:0"), true),
            (e("[2001:db8::1]:4000"), e("[2001:db8::1]:4001"), false),
        ];
        for (rtp, rtcp, boxed) in cases {
            s.set_remotes(rtp, rtcp);
            assert_eq!((s.remote_rtp(), s.remote_rtcp()), (rtp, rtcp));
            assert_eq!(s.cold.is_some(), boxed, "{rtp:?} {rtcp:?}");
        }
        assert_eq!(
            s.policy(),
            Policy {
                latch: LatchMode::Fixed,
                mismatch: Mismatch::Handover,
            },
            "remotes leave the policy"
        );

        // The box is shared with the keys and the removed flows' counts, and
        // goes once none of them is left.
        s.set_remotes(e("192.0.2.1:5000"), e("192.0.2.9:7000"));
        s.crypto_mut();
        s.trim_crypto();
        assert!(s.cold.is_some(), "the RTCP address keeps it");
        s.set_remotes(e("192.0.2.1:5000"), e("192.0.2.1:5001"));
        assert!(
            s.cold.is_none(),
            "plain keys were trimmed, nothing else is left"
        );
        s.set_counters(
            1,
            FlowCounters {
                packets: 3,
                bytes: 300,
                errors: 1,
                remote: None,
            },
        );
        s.retire(1);
        assert_eq!(s.retired().packets, 3);
        s.set_remotes(e("192.0.2.1:5000"), e("192.0.2.9:7000"));
        s.set_remotes(None, None);
        assert!(s.cold.is_some(), "the counts keep it");
        assert_eq!(s.totals().bytes, 300);
    }

    #[test]
    fn interface_indexes_beyond_the_limit_are_refused() {
        assert_eq!(Side::iface_index(0), Ok(0));
        assert_eq!(Side::iface_index(MAX_INTERFACES - 1), Ok(255));
        assert!(Side::iface_index(MAX_INTERFACES).is_err());
        assert!(Side::iface_index(usize::MAX).is_err());
    }
}
