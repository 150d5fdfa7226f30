//! Control errors (a command the engine refuses) and drop reasons (a packet it
//! refuses). Both are `Copy`: the hot path only bumps a counter indexed by the reason.

use core::fmt;

/// Why a control command (`insert`, `update`, `remove`, `set_blocked`) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineError {
    /// No live flow with this index and generation.
    UnknownFlow,
    /// The slot already holds a live flow.
    SlotInUse,
    /// `FlowId.index` is not below `EngineConfig::max_flows`.
    TooManyFlows,
    /// The id reuses the generation of the flow last removed from this slot, so packets
    /// still in flight for the old flow would reach the new one.
    StaleGeneration,
    /// The rule's SRTP key material does not fit its suite (key or salt length).
    BadKey,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineError::UnknownFlow => "no live flow with this id",
            EngineError::SlotInUse => "flow slot already in use",
            EngineError::TooManyFlows => "flow index beyond the worker's max_flows",
            EngineError::StaleGeneration => {
                "flow id reuses the generation of the slot's previous flow"
            }
            EngineError::BadKey => "SRTP master key or salt length does not fit the suite",
        })
    }
}

impl std::error::Error for EngineError {}

/// Why a datagram was not forwarded. Indexes the drop counter arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Looks like RTP/RTCP but fails the wire checks (or `len` exceeds the buffer).
    Malformed = 0,
    /// STUN, DTLS, ZRTP, TURN channel or an unknown first byte (RFC 7983).
    NotMedia,
    /// RTCP on an RTP-only port or RTP on an RTCP-only port.
    WrongComponent,
    /// No live flow with this id (missing, or a stale generation).
    UnknownFlow,
    /// The source is not the flow's remote and the mismatch policy refuses it.
    SourceMismatch,
    /// Media is blocked on this flow.
    Blocked,
    /// The rule has no output for this component, or the output flow is gone.
    NoOutput,
    /// The output flow has no remote address yet (neither signalled nor latched).
    NoDestination,
    /// SRTP/SRTCP authentication failed (RFC 3711 §3.4).
    SrtpAuth,
    /// SRTP/SRTCP replay check failed (RFC 3711 §3.3.2).
    SrtpReplay,
    /// The buffer lacks the tailroom an outgoing transform needs.
    NoTailroom,
    /// The SRTP ROC or SRTCP index would wrap: the keys must be replaced (RFC 3711 §9.2).
    SrtpRekey,
    /// The packet would go back to the address it came from: both sides of the
    /// call have latched onto one endpoint, and relaying would bounce its
    /// packets (an echoing peer's without end) between it and the relay.
    Reflected,
    /// The packet went to one of the relay's own ports and keeps coming back: a
    /// media loop through the relay (`crate::loops`), cut here.
    Loop,
}

impl DropReason {
    /// Number of reasons: the length of every drop counter array.
    pub const COUNT: usize = 14;

    /// Every reason, in index order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::NotMedia,
        DropReason::WrongComponent,
        DropReason::UnknownFlow,
        DropReason::SourceMismatch,
        DropReason::Blocked,
        DropReason::NoOutput,
        DropReason::NoDestination,
        DropReason::SrtpAuth,
        DropReason::SrtpReplay,
        DropReason::NoTailroom,
        DropReason::SrtpRekey,
        DropReason::Reflected,
        DropReason::Loop,
    ];

    /// Position in drop counter arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A stable snake_case name for metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NotMedia => "not_media",
            DropReason::WrongComponent => "wrong_component",
            DropReason::UnknownFlow => "unknown_flow",
            DropReason::SourceMismatch => "source_mismatch",
            DropReason::Blocked => "blocked",
            DropReason::NoOutput => "no_output",
            DropReason::NoDestination => "no_destination",
            DropReason::SrtpAuth => "srtp_auth",
            DropReason::SrtpReplay => "srtp_replay",
            DropReason::NoTailroom => "no_tailroom",
            DropReason::SrtpRekey => "srtp_rekey",
            DropReason::Reflected => "reflected",
            DropReason::Loop => "loop",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One counter per drop reason; `Copy`, no heap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts(pub [u64; DropReason::COUNT]);

impl DropCounts {
    #[inline]
    pub fn bump(&mut self, r: DropReason) {
        self.0[r.index()] += 1;
    }

    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(reason, count)` for every reason, zeros included.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.into_iter().map(|r| (r, self.get(r)))
    }
}

/// One flow's drops: how many, and why the last one was dropped. The worker's
/// [`DropCounts`] keep the count of every reason; per flow the control plane reads
/// only the total (a stream's `errors`), and a count per reason would take 52 of
/// every slot's bytes where these take 8 (the slot fits four cache lines, not
/// five). The count stops at `u32::MAX` rather than wrapping: the worker's totals
/// stay exact, and one flow dropping four billion packets has long since said
/// what it had to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FlowDrops {
    count: u32,
    last: Option<DropReason>,
    /// When a loop drop was last reported, in units of 2^30 ns (about 1.07 s,
    /// wrapping after some 19 hours); 0 before any. In the padding: the struct
    /// stays 8 bytes.
    loop_reported: u16,
}

/// A flow's loop drops are reported again after this many 2^30 ns units (about
/// a minute) while the loop lasts.
const LOOP_REPORT_EVERY: u16 = 56;

impl FlowDrops {
    /// Whether a loop drop at `now_ns` is to be reported: the flow's first, then
    /// at most one about a minute (a looping call would say so every packet).
    #[inline]
    pub(crate) fn loop_report_due(&mut self, now_ns: u64) -> bool {
        let now = ((now_ns >> 30) as u16).max(1);
        if self.loop_reported == 0 || now.wrapping_sub(self.loop_reported) >= LOOP_REPORT_EVERY {
            self.loop_reported = now;
            return true;
        }
        false
    }

    #[inline]
    pub(crate) fn bump(&mut self, r: DropReason) {
        self.count = self.count.saturating_add(1);
        self.last = Some(r);
    }

    /// How many datagrams the flow dropped.
    pub(crate) fn count(&self) -> u64 {
        self.count.into()
    }

    /// Why the last of them was dropped.
    pub(crate) fn last(&self) -> Option<DropReason> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_dense_and_names_unique() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn flow_drops_saturate_and_keep_the_last_reason() {
        let mut d = FlowDrops::default();
        assert_eq!((d.count(), d.last()), (0, None));
        d.count = u32::MAX - 1;
        d.bump(DropReason::SrtpAuth);
        d.bump(DropReason::SrtpAuth);
        assert_eq!(d.count(), u64::from(u32::MAX));
        d.bump(DropReason::Malformed);
        assert_eq!(d.count(), u64::from(u32::MAX), "stops, never wraps");
        assert_eq!(d.last(), Some(DropReason::Malformed));
        assert_eq!(core::mem::size_of::<FlowDrops>(), 8);
    }

    #[test]
    fn loop_drops_are_reported_first_and_then_once_a_minute() {
        let mut d = FlowDrops::default();
        let s = 1u64 << 30;
        assert!(d.loop_report_due(0), "the first, even at time 0");
        assert!(!d.loop_report_due(1_000));
        assert!(!d.loop_report_due(55 * s));
        assert!(d.loop_report_due(57 * s));
        assert!(!d.loop_report_due(60 * s));
        // Across the u16 wrap of the coarse clock.
        let late = (u64::from(u16::MAX) - 10) * s;
        assert!(d.loop_report_due(late));
        assert!(!d.loop_report_due(late + 30 * s));
        assert!(d.loop_report_due(late + 70 * s));
    }

    #[test]
    fn counts_add_up() {
        let mut c = DropCounts::default();
        c.bump(DropReason::Blocked);
        c.bump(DropReason::Blocked);
        c.bump(DropReason::NoTailroom);
        assert_eq!(c.get(DropReason::Blocked), 2);
        assert_eq!(c.total(), 3);
        assert_eq!(c.iter().filter(|(_, n)| *n > 0).count(), 2);
    }
}
