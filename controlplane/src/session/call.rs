//! The state of one call: monologues (one per SIP tag) holding one side per m= line.
//! A side owns the port pair its party talks to and the two flows on those ports.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrelay_engine::{Component, CryptoSpec, FlowId, FlowRule, LatchMode, MismatchPolicy, Output};

use super::backend::FlowCounters;
use super::flags::{Flags, MuxFlags};
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
/// 224 bytes, so that a party's array of one side (most calls) takes the
/// allocator's 224-byte blocks and not its 320-byte ones: the rare numbers are
/// boxed, the per-flow counts no wider than the worker's, and the interface's
/// address is the interface's, not repeated here.
#[derive(Debug)]
pub struct Side {
    /// Index of the interface the pair is bound on (and so of its address): one
    /// byte, as there are at most [`MAX_INTERFACES`].
    iface: u8,
    /// The party sends to `pair.port` (RTP, or both when muxed) and `pair.port + 1`
    /// (RTCP); reserved until the call's ports are released.
    pub pair: PortPair,
    /// Installed flows on the pair: `[rtp-or-muxed, rtcp]`.
    pub flows: Option<[FlowId; 2]>,
    /// Where the party wants RTP (from its SDP); `None` before it is known or on hold.
    pub remote_rtp: Option<Endpoint>,
    pub remote_rtcp: Option<Endpoint>,
    /// The party sends and expects RTCP on the RTP port (RFC 5761).
    pub muxed: bool,
    /// The party's own SDP carried a=rtcp-mux.
    pub mux_signalled: bool,
    /// The relay offered rtcp-mux to this party.
    pub mux_offered: bool,
    /// The party's m= port was 0: stream rejected or disabled, no flows.
    pub rejected: bool,
    pub policy: Policy,
    pub blocked: bool,
    pub clock_rate: u32,
    /// The m= line's media type and protocol.
    pub names: MediaNames,
    /// SDES keys of this leg (the party's and the relay's); boxed and only while
    /// there are any, since most calls are plain RTP.
    crypto: Option<Box<SideCrypto>>,
    /// Packets, bytes and drops of `[rtp-or-muxed, rtcp]`, from the worker's
    /// stats. Drops are `u32`, as the worker counts them per flow.
    packets: [u64; 2],
    bytes: [u64; 2],
    errors: [u32; 2],
    /// Where the packets of `[rtp-or-muxed, rtcp]` come from, from the same stats.
    seen: [Option<Endpoint>; 2],
    /// Counters of flows already removed (re-offers that rejected the stream);
    /// boxed, as most sides never have any.
    retired: Option<Box<Tally>>,
    /// Wall-clock second (unix) the counters of `[rtp, rtcp]` last grew.
    pub last_packet_unix: [u32; 2],
    /// A worker refused this side's flows: nothing is relayed to or from it until
    /// a new offer or answer installs them again.
    pub failed: bool,
}

impl Side {
    /// A side on interface `iface` ([`Side::iface_index`] makes one).
    pub fn new(iface: u8, pair: PortPair) -> Side {
        Side {
            iface,
            pair,
            flows: None,
            remote_rtp: None,
            remote_rtcp: None,
            muxed: false,
            mux_signalled: false,
            mux_offered: false,
            rejected: false,
            policy: Policy::default(),
            blocked: false,
            clock_rate: 8000,
            names: MediaNames::default(),
            crypto: None,
            packets: [0; 2],
            bytes: [0; 2],
            errors: [0; 2],
            seen: [None; 2],
            retired: None,
            last_packet_unix: [0; 2],
            failed: false,
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
        self.retired.as_deref().copied().unwrap_or_default()
    }

    /// The SDES state of this side (the plain one when it has none).
    pub fn crypto(&self) -> &SideCrypto {
        self.crypto.as_deref().unwrap_or(&PLAIN)
    }

    /// The SDES state to change; [`Side::trim_crypto`] gives it back when plain.
    pub fn crypto_mut(&mut self) -> &mut SideCrypto {
        self.crypto.get_or_insert_default()
    }

    /// What this side learnt from its party's SDP, for when another fork takes
    /// the side over (see [`ForkMemo`]); `peer` is the other party's side.
    pub fn memo(&self, peer: &Side) -> SideMemo {
        SideMemo {
            remote_rtp: self.remote_rtp,
            remote_rtcp: self.remote_rtcp,
            mux_signalled: self.mux_signalled,
            muxed: self.muxed,
            peer_muxed: peer.muxed,
            crypto: self.crypto.clone(),
            peer_crypto: peer.crypto.clone(),
        }
    }

    /// Puts back what [`Side::memo`] kept, on this side and its peer's.
    pub fn restore(&mut self, peer: &mut Side, m: SideMemo) {
        self.remote_rtp = m.remote_rtp;
        self.remote_rtcp = m.remote_rtcp;
        self.mux_signalled = m.mux_signalled;
        self.muxed = m.muxed;
        peer.muxed = m.peer_muxed;
        self.crypto = m.crypto;
        peer.crypto = m.peer_crypto;
    }

    /// Frees the SDES state of a side that has none to keep.
    pub fn trim_crypto(&mut self) {
        if self.crypto.as_deref().is_some_and(SideCrypto::is_plain) {
            self.crypto = None;
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
        rtcp.remote = self.remote_rtcp.map(SocketAddr::from);
        rtcp.rtcp_out = Some(rtcp_to);
        for r in [&mut rtp, &mut rtcp] {
            r.latch = self.policy.latch;
            r.on_mismatch = self.policy.on_mismatch();
            r.blocked = self.blocked;
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
            self.remote_rtcp
        }
        .map(SocketAddr::from);
        r.latch = self.policy.latch;
        r.on_mismatch = self.policy.on_mismatch();
        r.blocked = self.blocked;
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
        let r = self.retired.get_or_insert_default();
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

/// One SIP party (tag) of a call.
#[derive(Debug)]
pub struct Monologue {
    /// The SIP tag (empty while an offer waits for the answerer's to-tag) and
    /// the tag of the party this one talks to, in one block: the party's tag,
    /// then the peer's. One allocation of both (24 bytes for two 10-byte tags,
    /// where two took 32) and one fat pointer here, where two took 32 bytes.
    tags: Box<str>,
    /// Bits 0-30: length of the party's tag in `tags`. Bit 31: the party has a
    /// peer, whose tag is the rest (it may be empty: the tagless answerer).
    tags_meta: u32,
    pub created_unix: u32,
    /// One side per m= line, in SDP order; a boxed slice, as the array only
    /// grows when a re-offer adds a line (48 bytes a party, not 80, so a call's
    /// two fit the allocator's 96-byte blocks).
    pub sides: Box<[Side]>,
    /// Rarely set names and options, boxed so a monologue without them stays small.
    names: Option<Box<TagNames>>,
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

/// What few monologues have: `label`, `via-branch`, a fork's kept answer and
/// pending end, and `rtcp-mux` options other than the defaults.
#[derive(Debug, Default)]
struct TagNames {
    label: Option<Box<str>>,
    /// `via-branch` of this party's last answer: names its fork in `delete`.
    via_branch: Option<Box<str>>,
    /// A fork's own answer, kept while another fork holds the media.
    memo: Option<ForkMemo>,
    /// `delete` named this fork: it ends alone at this instant (`delete-delay`).
    ending: Option<Instant>,
    /// The `rtcp-mux` options this party's last offer came with.
    mux_flags: MuxFlags,
}

impl Monologue {
    pub fn new(tag: &str, created_unix: u32) -> Monologue {
        let (tags, tags_meta) = tags(tag, None);
        Monologue {
            tags,
            tags_meta,
            created_unix,
            sides: Box::default(),
            names: None,
        }
    }
}

/// Bit 31 of `Monologue::tags_meta`: the party has a peer.
const HAS_PEER: u32 = 1 << 31;

/// A party's tag and its peer's as a monologue keeps them.
fn tags(tag: &str, peer: Option<&str>) -> (Box<str>, u32) {
    // NG and SIP messages are at most 1 MiB, so a tag is always far below 2^31
    // bytes; were one not, the split would still fall inside the text.
    let len = u32::try_from(tag.len())
        .unwrap_or(u32::MAX)
        .min(HAS_PEER - 1);
    let mut text = String::with_capacity(tag.len() + peer.map_or(0, str::len));
    text.push_str(tag);
    text.push_str(peer.unwrap_or_default());
    let meta = len | if peer.is_some() { HAS_PEER } else { 0 };
    (text.into_boxed_str(), meta)
}

impl Monologue {
    /// Where the party's tag ends in `tags`.
    fn split(&self) -> usize {
        ((self.tags_meta & !HAS_PEER) as usize).min(self.tags.len())
    }

    /// The SIP tag; empty while an offer waits for the answerer's to-tag.
    pub fn tag(&self) -> &str {
        self.tags.get(..self.split()).unwrap_or_default()
    }

    pub fn set_tag(&mut self, tag: &str) {
        if self.tag() != tag {
            (self.tags, self.tags_meta) = tags(tag, self.peer());
        }
    }

    /// Tag of the party this one talks to.
    pub fn peer(&self) -> Option<&str> {
        (self.tags_meta & HAS_PEER != 0).then(|| self.tags.get(self.split()..).unwrap_or_default())
    }

    pub fn set_peer(&mut self, peer: Option<&str>) {
        if self.peer() != peer {
            (self.tags, self.tags_meta) = tags(self.tag(), peer);
        }
    }

    /// The `label` the party was given.
    pub fn label(&self) -> Option<&str> {
        self.names.as_ref()?.label.as_deref()
    }

    pub fn set_label(&mut self, label: &str) {
        self.names.get_or_insert_default().label = Some(label.into());
    }

    /// The `rtcp-mux` options this party's last offer came with.
    pub fn mux_flags(&self) -> MuxFlags {
        self.names.as_ref().map(|n| n.mux_flags).unwrap_or_default()
    }

    pub fn set_mux_flags(&mut self, f: MuxFlags) {
        if f != MuxFlags::default() || self.names.is_some() {
            self.names.get_or_insert_default().mux_flags = f;
        }
    }

    /// The `via-branch` of the party's last answer.
    pub fn via_branch(&self) -> Option<&str> {
        self.names.as_ref()?.via_branch.as_deref()
    }

    pub fn set_via_branch(&mut self, via: &str) {
        self.names.get_or_insert_default().via_branch = Some(via.into());
    }

    /// Keeps this fork's answer while another fork takes its sides.
    pub fn set_memo(&mut self, memo: ForkMemo) {
        self.names.get_or_insert_default().memo = Some(memo);
    }

    /// When a `delete` of this fork takes effect, if one is pending.
    pub fn ending(&self) -> Option<Instant> {
        self.names.as_ref()?.ending
    }

    /// Schedules (or, with `None`, calls off) the end of this fork.
    pub fn set_ending(&mut self, at: Option<Instant>) {
        if at.is_some() || self.ending().is_some() {
            self.names.get_or_insert_default().ending = at;
        }
    }

    /// Takes the kept answer back (the fork holds the media again).
    pub fn take_memo(&mut self) -> Option<ForkMemo> {
        self.names.as_mut()?.memo.take()
    }
}

/// One call (SIP call-id).
#[derive(Debug)]
pub struct Call {
    /// Shared with the call map's key and the flow index: one copy per call.
    pub id: Arc<str>,
    /// The worker that owns every flow of the call.
    pub worker: usize,
    pub created: Instant,
    pub created_unix: u32,
    pub last_signal_unix: u32,
    pub monologues: Vec<Monologue>,
    /// An answer completed the call; until then the offer timeout applies.
    pub answered: bool,
    pub offered_at: Instant,
    /// Last time packet counters grew (or the answer came).
    pub last_media: Instant,
    /// Every stream is on hold: the silent timeout applies instead.
    pub held: bool,
    /// `delete` arrived: media keeps flowing until this instant (`delete-delay`),
    /// then the call ends. A new offer or answer clears it.
    pub deleting: Option<Instant>,
}

impl Call {
    pub fn monologue(&self, tag: &str) -> Option<usize> {
        self.monologues.iter().position(|m| m.tag() == tag)
    }

    /// How many monologues talk to `tag` (its forks, when more than one).
    fn branches_of(&self, tag: &str) -> usize {
        self.monologues
            .iter()
            .filter(|m| m.peer() == Some(tag))
            .count()
    }

    /// The monologue `m` when it is one of several branches of its peer: then it
    /// can end alone and the call goes on with the others.
    pub fn lone_branch(&self, m: usize, of: Option<usize>) -> Option<usize> {
        let peer = self.monologues[m].peer()?;
        let root = self.monologue(peer)?;
        (of.is_none_or(|o| o == root) && self.branches_of(peer) >= 2).then_some(m)
    }

    /// Which monologue a `delete` with these tags ends alone; `None`: the whole
    /// call. As rtpengine: `from-tag` with `to-tag` (or `via-branch`) names one
    /// dialogue, and only a fork among several ends alone; a `from-tag` alone ends
    /// that party, which is the whole call unless it is one such fork.
    pub fn branch_to_end(
        &self,
        from: Option<usize>,
        to: Option<usize>,
        via: Option<&str>,
    ) -> Option<usize> {
        let by_via = via.and_then(|v| {
            self.monologues
                .iter()
                .position(|m| m.via_branch() == Some(v))
        });
        let Some(f) = from else {
            return to.or(by_via).and_then(|t| self.lone_branch(t, None));
        };
        match to.or(by_via).filter(|t| *t != f) {
            Some(t) => self
                .lone_branch(t, Some(f))
                .or_else(|| self.lone_branch(f, Some(t))),
            None => self.lone_branch(f, None),
        }
    }

    /// All installed flows of the call.
    pub fn flows(&self) -> impl Iterator<Item = FlowId> + Clone + '_ {
        self.monologues
            .iter()
            .flat_map(|m| m.sides.iter())
            .filter_map(|s| s.flows)
            .flatten()
    }

    /// Packet total over every side, to notice media activity.
    pub fn packets(&self) -> u64 {
        self.monologues
            .iter()
            .flat_map(|m| m.sides.iter())
            .map(|s| s.totals().packets)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_and_parties_fit_the_allocators_blocks() {
        // mimalloc's size classes step 192, 224, 256, 320: a party's one-side
        // array of 272 bytes took 320.
        assert!(size_of::<Side>() <= 224, "{}", size_of::<Side>());
        // And a call's two parties fit 96-byte blocks (160 when a party was 80).
        assert!(size_of::<Monologue>() <= 48, "{}", size_of::<Monologue>());
    }

    #[test]
    fn interface_indexes_beyond_the_limit_are_refused() {
        assert_eq!(Side::iface_index(0), Ok(0));
        assert_eq!(Side::iface_index(MAX_INTERFACES - 1), Ok(255));
        assert!(Side::iface_index(MAX_INTERFACES).is_err());
        assert!(Side::iface_index(usize::MAX).is_err());
    }

    #[test]
    fn a_party_keeps_its_tag_and_its_peers_apart() {
        let mut m = Monologue::new("as7d6f8a9b", 0);
        assert_eq!((m.tag(), m.peer()), ("as7d6f8a9b", None));
        m.set_peer(Some(""));
        assert_eq!((m.tag(), m.peer()), ("as7d6f8a9b", Some("")));
        m.set_peer(Some("bz1c2d3e4f"));
        assert_eq!((m.tag(), m.peer()), ("as7d6f8a9b", Some("bz1c2d3e4f")));
        assert_eq!(m.tags.len(), 20, "one block for both");
        m.set_tag("");
        assert_eq!((m.tag(), m.peer()), ("", Some("bz1c2d3e4f")));
        m.set_tag("é-ü");
        m.set_peer(None);
        assert_eq!((m.tag(), m.peer()), ("é-ü", None));
    }
}
