//! The flat forwarding rule the control plane compiles for each flow, and the ids
//! that name flows. The data plane never sees SDP: everything it needs is here.

use std::net::SocketAddr;

use ferrelay_srtp::SrtpParams;

/// Names one flow slot on one worker: `index` is the slot (and the key the I/O shell
/// uses for the flow's socket), `generation` changes each time the slot is reused so a
/// stale handle never reaches a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId {
    pub index: u32,
    pub generation: u32,
}

impl FlowId {
    pub const fn new(index: u32, generation: u32) -> Self {
        FlowId { index, generation }
    }

    /// Packs the id into 64 bits (generation high), e.g. for io_uring `user_data`.
    pub const fn to_u64(self) -> u64 {
        ((self.generation as u64) << 32) | self.index as u64
    }

    pub const fn from_u64(v: u64) -> Self {
        FlowId {
            index: v as u32,
            generation: (v >> 32) as u32,
        }
    }
}

/// How the flow learns where its remote really is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchMode {
    /// Trust the signalled address (`trust-address`/`asymmetric`); never learn.
    Fixed,
    /// Symmetric RTP behind NAT: learn the remote from the first valid packet.
    LatchFirst,
}

/// What to do with a packet whose source is not the flow's (expected or latched) remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchPolicy {
    /// Drop and count (`strict-source`).
    Drop,
    /// Move the latch to the new source, but only under the RTP-bleed guard: the
    /// stream must have been silent from the current remote for `relatch_after_ns`,
    /// or the newcomer must prove it belongs (same SSRC as the latched stream).
    Relatch { relatch_after_ns: u64 },
    /// Forward packets from any source without moving the latch (rtpengine's default).
    Accept,
}

/// Whether the packets arriving on this flow's socket are RTP, RTCP or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// An RTP-only port (RTCP on its own port, RFC 3550 §11).
    Rtp,
    /// The RTCP port of a non-muxed stream.
    Rtcp,
    /// RTP and RTCP on one port, told apart by payload type (RFC 5761 §4).
    Muxed,
}

/// Where forwarded packets leave: out of the peer flow's socket, to the peer flow's
/// current remote (its latched address, or the signalled one until it latches).
///
/// Naming the peer *flow* rather than an address means a latch on the far side
/// re-targets this side's output with no command from the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub via: FlowId,
}

/// SSRC rewrite applied to forwarded RTP (and the matching RTCP sender SSRC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsrcRewrite {
    pub from: u32,
    pub to: u32,
}

/// Payload-type map: `map[pt]` is the PT written on the way out. Identity by default.
#[derive(Clone, PartialEq, Eq)]
pub struct PtMap(pub [u8; 128]);

impl PtMap {
    pub const IDENTITY: PtMap = {
        let mut m = [0u8; 128];
        let mut i = 0;
        while i < 128 {
            m[i] = i as u8;
            i += 1;
        }
        PtMap(m)
    };

    pub fn is_identity(&self) -> bool {
        *self == Self::IDENTITY
    }
}

impl Default for PtMap {
    fn default() -> Self {
        Self::IDENTITY
    }
}

impl std::fmt::Debug for PtMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let changed: Vec<(usize, u8)> = self
            .0
            .iter()
            .enumerate()
            .filter(|(i, v)| *i as u8 != **v)
            .map(|(i, v)| (i, *v))
            .collect();
        write!(f, "PtMap{changed:?}")
    }
}

/// The crypto transform of a flow: decrypt what arrives with the remote's keys,
/// encrypt what leaves with the keys the relay announced to the far side.
/// Both `None` is plain forwarding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CryptoSpec {
    /// Keys the sender on this flow's remote uses (SRTP in, plain after).
    pub decrypt: Option<SrtpParams>,
    /// Keys for what this flow forwards to its outputs (plain in, SRTP out).
    pub encrypt: Option<SrtpParams>,
}

/// One flow's complete forwarding rule.
///
/// `repr(C)` with the fields the packet path reads first, so they share the flow
/// slot's leading cache lines; the PT map and keys (read rarely) come last.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct FlowRule {
    /// Signalled remote (from SDP); `None` until known. Packets are sent to a flow's
    /// remote when it is some other flow's output.
    pub remote: Option<SocketAddr>,
    pub on_mismatch: MismatchPolicy,
    /// Where RTP arriving here is forwarded; `None` drops it (counted).
    pub rtp_out: Option<Output>,
    /// Where RTCP arriving here is forwarded; `None` drops it (counted).
    pub rtcp_out: Option<Output>,
    pub ssrc_rewrite: Option<SsrcRewrite>,
    /// RTP clock rate for RFC 3550 jitter (Hz); 0 when unknown (jitter not computed).
    pub clock_rate: u32,
    /// What arrives on this socket.
    pub component: Component,
    pub latch: LatchMode,
    /// Media blocked (`block media`): packets are counted and dropped.
    pub blocked: bool,
    pub pt_map: PtMap,
    pub crypto: CryptoSpec,
}

impl FlowRule {
    /// A plain-forwarding rule with rtpengine-like defaults: latch the first packet,
    /// accept (forward) packets from other sources without moving the latch.
    pub fn new(component: Component) -> Self {
        FlowRule {
            component,
            remote: None,
            latch: LatchMode::LatchFirst,
            on_mismatch: MismatchPolicy::Accept,
            rtp_out: None,
            rtcp_out: None,
            ssrc_rewrite: None,
            pt_map: PtMap::IDENTITY,
            blocked: false,
            crypto: CryptoSpec::default(),
            clock_rate: 8000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_id_packs_round_trip() {
        let id = FlowId::new(0xDEAD_BEEF, 0x1234_5678);
        assert_eq!(FlowId::from_u64(id.to_u64()), id);
    }

    #[test]
    fn pt_map_identity() {
        let mut m = PtMap::IDENTITY;
        assert!(m.is_identity());
        m.0[96] = 101;
        assert!(!m.is_identity());
        assert_eq!(format!("{m:?}"), "PtMap[(96, 101)]");
    }
}
