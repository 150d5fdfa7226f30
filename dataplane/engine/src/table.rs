//! The flow table: a slab of up to `max_flows` slots, indexed directly by
//! `FlowId.index` and guarded by the generation so a stale id never reaches a flow
//! that has since taken over the slot.
//!
//! The slab's memory is reserved once for `max_flows` but its slots are written
//! only up to the highest index used so far: flow ids are handed out densely from
//! 0, so the resident memory follows the most flows the worker has held, not the
//! configured port range (which every worker must be able to hold in full). A
//! slab that grows within its reservation never moves, so no insert copies it.
//!
//! SRTP contexts are not in the slot but in a dense array beside it, indexed the
//! same way: with many flows a packet finds both its slot and its context
//! cache-cold, and the context's address must not wait for the slot's miss
//! (`dataplane/engine/benches/srtp_footprint.rs`).

use crate::crypto::FlowCrypto;
use crate::error::EngineError;
use crate::latch::{Addr, Latch};

use crate::rule::{
    Component, CryptoSpec, FlowId, FlowRule, LatchMode, MismatchPolicy, Output, PtMap, SsrcRewrite,
};
use crate::stats::FlowCounters;

/// A flow's rule as the slot keeps it: [`FlowRule`] without its SRTP parameters
/// (the contexts remember their own suite and key, see `crypto::Keyed`) and with
/// the PT map out of line, present only when it maps something. Both would cost
/// every slot 232 bytes that plain, unmapped flows (most of them) never read.
///
/// `repr(C)`: the remote, which a peer flow reads to address its output, leads;
/// the clock rate fills the four bytes after it, then `FlowRule`'s order.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Rule {
    pub remote: Option<Addr>,
    pub clock_rate: u32,
    pub on_mismatch: Mismatch,
    pub rtp_out: Option<Output>,
    pub rtcp_out: Option<Output>,
    pub ssrc_rewrite: Option<SsrcRewrite>,
    pub component: Component,
    pub latch: LatchMode,
    pub blocked: bool,
    /// Whether `remote` is one of the relay's own endpoints (the loop guard
    /// watches what is sent there); set by the engine, which knows them.
    pub remote_local: bool,
    /// `None` for the identity map.
    pub pt_map: Option<Box<PtMap>>,
}

impl Rule {
    /// Splits a rule into what the slot keeps and the SRTP parameters.
    pub(crate) fn split(r: FlowRule) -> (Rule, CryptoSpec) {
        let pt_map = (!r.pt_map.is_identity()).then(|| Box::new(r.pt_map));
        let rule = Rule {
            remote: r.remote.map(Addr::from),
            on_mismatch: r.on_mismatch.into(),
            rtp_out: r.rtp_out,
            rtcp_out: r.rtcp_out,
            ssrc_rewrite: r.ssrc_rewrite,
            clock_rate: r.clock_rate,
            component: r.component,
            latch: r.latch,
            blocked: r.blocked,
            remote_local: false,
            pt_map,
        };
        (rule, r.crypto)
    }
}

/// [`MismatchPolicy`] in one word, where the enum takes two: 0 drops, 1 accepts,
/// `2 + n` relatches after `n` ns (at most `u64::MAX - 2`, some 585 years).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mismatch(u64);

impl From<MismatchPolicy> for Mismatch {
    fn from(p: MismatchPolicy) -> Self {
        Mismatch(match p {
            MismatchPolicy::Drop => 0,
            MismatchPolicy::Accept => 1,
            MismatchPolicy::Relatch { relatch_after_ns } => relatch_after_ns.saturating_add(2),
        })
    }
}

impl Mismatch {
    #[inline]
    pub(crate) fn policy(self) -> MismatchPolicy {
        match self.0 {
            0 => MismatchPolicy::Drop,
            1 => MismatchPolicy::Accept,
            n => MismatchPolicy::Relatch {
                relatch_after_ns: n - 2,
            },
        }
    }
}

/// The flow's current idle period in one word: the `now_ns` it began at (the
/// last packet accepted from the remote, or the first idle scan of a flow that
/// has had none), and in bit 63 whether a `MediaIdle` was queued for it. A packet
/// restarts the period and clears the bit in one store. `now_ns` stays below
/// 2^63 (292 years); all ones is "not begun".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Idle(u64);

impl Idle {
    const REPORTED: u64 = 1 << 63;
    pub(crate) const NONE: Idle = Idle(u64::MAX);

    /// A packet arrived: a new idle period begins at `now_ns`, not reported.
    #[inline]
    pub(crate) fn restart(&mut self, now_ns: u64) {
        // Below 2^63 - 1, so that with the report bit it is still not all ones.
        self.0 = now_ns.min(Self::REPORTED - 2);
    }

    /// When the period began, if one has.
    #[inline]
    pub(crate) fn since(self) -> Option<u64> {
        (self != Self::NONE).then_some(self.0 & !Self::REPORTED)
    }

    /// When the period began, beginning it at `now_ns` if none has.
    #[inline]
    pub(crate) fn since_or_start(&mut self, now_ns: u64) -> u64 {
        if *self == Self::NONE {
            self.restart(now_ns);
        }
        self.0 & !Self::REPORTED
    }

    pub(crate) fn reported(self) -> bool {
        self != Self::NONE && self.0 & Self::REPORTED != 0
    }

    pub(crate) fn set_reported(&mut self) {
        if *self != Self::NONE {
            self.0 |= Self::REPORTED;
        }
    }
}

/// A live flow: its rule and what the engine learned and counted.
///
/// `repr(C)`: the latch and the rule's leading fields (all a peer flow reads to
/// address its output) sit at the start of the slot, the counters after them.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Flow {
    pub latch: Latch,
    pub rule: Rule,
    pub counters: FlowCounters,
    /// Since when the flow has had no media, and whether that was reported.
    pub idle: Idle,
}

impl Flow {
    /// Whether what this flow sends reaches one of the relay's own endpoints.
    #[inline]
    pub(crate) fn sends_to_local(&self) -> bool {
        if self.latch.addr.is_some() {
            self.latch.addr_local
        } else {
            self.rule.remote_local
        }
    }

    fn new(rule: Rule) -> Self {
        Flow {
            rule,
            latch: Latch::default(),
            counters: FlowCounters::default(),
            idle: Idle::NONE,
        }
    }
}

/// `Slot::retired` of a slot no flow has left yet: generations stay below 2^31
/// (`FlowId::to_u64` keeps bit 63 free), so none equals it.
const NONE_RETIRED: u32 = u32::MAX;

#[derive(Debug)]
#[repr(C, align(64))]
struct Slot {
    generation: u32,
    /// Generation of the flow last removed from this slot (refused on reinsert);
    /// `NONE_RETIRED` before any. Not an `Option`: its tag would push the flow to
    /// offset 16 and the slot to the next cache line.
    retired: u32,
    flow: Option<Flow>,
}

/// Slab of flows, reserved for `max` and written up to the highest index used.
#[derive(Debug)]
pub(crate) struct FlowTable {
    max: usize,
    slots: Vec<Slot>,
    /// Boxed SRTP contexts of slot `i` at `crypto[i]`: two pointers a flow, four flows a line.
    crypto: Vec<FlowCrypto>,
    live: usize,
}

impl FlowTable {
    pub(crate) fn new(max_flows: u32) -> Self {
        let max = max_flows as usize;
        FlowTable {
            max,
            slots: Vec::with_capacity(max),
            crypto: Vec::with_capacity(max),
            live: 0,
        }
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }

    pub(crate) fn insert(
        &mut self,
        id: FlowId,
        rule: Rule,
        srtp: FlowCrypto,
    ) -> Result<(), EngineError> {
        let i = id.index as usize;
        if i >= self.max {
            return Err(EngineError::TooManyFlows);
        }
        if i >= self.slots.len() {
            // Within the reservation: the slab grows in place.
            self.slots.resize_with(i + 1, || Slot {
                generation: 0,
                retired: NONE_RETIRED,
                flow: None,
            });
            self.crypto.resize_with(i + 1, FlowCrypto::default);
        }
        let slot = &mut self.slots[i];
        if slot.flow.is_some() {
            return Err(EngineError::SlotInUse);
        }
        if slot.retired == id.generation {
            return Err(EngineError::StaleGeneration);
        }
        slot.generation = id.generation;
        slot.flow = Some(Flow::new(rule));
        self.crypto[id.index as usize] = srtp;
        self.live += 1;
        Ok(())
    }

    pub(crate) fn remove(&mut self, id: FlowId) -> Result<Flow, EngineError> {
        let slot = self
            .slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation && s.flow.is_some())
            .ok_or(EngineError::UnknownFlow)?;
        slot.retired = slot.generation;
        self.live -= 1;
        self.crypto[id.index as usize] = FlowCrypto::default();
        slot.flow.take().ok_or(EngineError::UnknownFlow)
    }

    /// The live flow `id` names, if its generation is current.
    #[inline]
    pub(crate) fn get(&self, id: FlowId) -> Option<&Flow> {
        match self.slots.get(id.index as usize) {
            Some(s) if s.generation == id.generation => s.flow.as_ref(),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, id: FlowId) -> Option<&mut Flow> {
        match self.slots.get_mut(id.index as usize) {
            Some(s) if s.generation == id.generation => s.flow.as_mut(),
            _ => None,
        }
    }

    /// The live flow `id` names and its SRTP contexts.
    ///
    /// The contexts' address comes from the dense array, not from the slot, so
    /// loading them need not wait for the slot's cache miss.
    #[inline]
    pub(crate) fn get_with_crypto(&mut self, id: FlowId) -> Option<(&mut Flow, &mut FlowCrypto)> {
        let i = id.index as usize;
        let crypto = self.crypto.get_mut(i)?;
        match self.slots.get_mut(i) {
            Some(s) if s.generation == id.generation => s.flow.as_mut().map(|f| (f, crypto)),
            _ => None,
        }
    }

    /// Every live flow with its id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (FlowId, &Flow)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.flow
                .as_ref()
                .map(|f| (FlowId::new(i as u32, s.generation), f))
        })
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (FlowId, &mut Flow)> + '_ {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let g = s.generation;
            s.flow.as_mut().map(|f| (FlowId::new(i as u32, g), f))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use core::mem::{offset_of, size_of};

    #[test]
    fn hot_fields_lead_the_slot() {
        let flow = offset_of!(Slot, flow);
        let rule = flow + offset_of!(Flow, rule);
        // What a peer reads to address its output: generation, latch, signalled remote.
        assert!(flow + offset_of!(Flow, latch) + size_of::<Latch>() <= 128);
        assert!(rule + offset_of!(Rule, remote) + size_of::<Option<Addr>>() <= 128);
        // The forwarding decision's rule fields come before the PT map's pointer.
        assert!(offset_of!(Rule, blocked) < offset_of!(Rule, pt_map));
        assert_eq!(size_of::<Slot>() % 64, 0);
        // No SRTP parameters nor a PT map in the slot, no tag on `retired`, rare
        // counts in `u32`, drops as a count and the last reason, endpoints
        // without IPv6 scope, no separate last-packet time, times and the
        // mismatch policy without an `Option`'s or an enum's extra word: 256
        // bytes (four cache lines), not 704.
        assert!(size_of::<Slot>() <= 256, "{}", size_of::<Slot>());
        // SRTP state stays out of the slot: two pointers beside it, four flows a line.
        assert_eq!(size_of::<FlowCrypto>(), 2 * size_of::<usize>());
    }

    #[test]
    fn the_mismatch_word_keeps_the_policy() {
        for p in [
            MismatchPolicy::Drop,
            MismatchPolicy::Accept,
            MismatchPolicy::Relatch {
                relatch_after_ns: 0,
            },
            MismatchPolicy::Relatch {
                relatch_after_ns: 1_000_000_000,
            },
            MismatchPolicy::Relatch {
                relatch_after_ns: u64::MAX - 2,
            },
        ] {
            assert_eq!(Mismatch::from(p).policy(), p);
        }
        // Beyond what fits, the wait saturates (585 years) rather than wrapping.
        let far = MismatchPolicy::Relatch {
            relatch_after_ns: u64::MAX,
        };
        assert_eq!(
            Mismatch::from(far).policy(),
            MismatchPolicy::Relatch {
                relatch_after_ns: u64::MAX - 2
            }
        );
    }

    #[test]
    fn the_idle_word_keeps_the_period_and_the_report() {
        let mut i = Idle::NONE;
        assert_eq!((i.since(), i.reported()), (None, false));
        // Reporting a period that has not begun changes nothing.
        i.set_reported();
        assert_eq!(i, Idle::NONE);
        // A scan of a flow without media begins the period, once.
        assert_eq!(i.since_or_start(5), 5);
        assert_eq!(i.since_or_start(9), 5);
        i.set_reported();
        assert_eq!((i.since(), i.reported()), (Some(5), true));
        assert_eq!(i.since_or_start(20), 5, "the report keeps the start");
        // A packet begins a new, unreported period.
        i.restart(30);
        assert_eq!((i.since(), i.reported()), (Some(30), false));
        // Times beyond 2^63 cannot reach the report bit nor "not begun".
        i.restart(u64::MAX);
        assert_eq!(i.since(), Some((1 << 63) - 2));
        assert!(!i.reported());
        i.set_reported();
        assert!(i.reported());
        assert_ne!(i, Idle::NONE);
        assert_eq!(i.since(), Some((1 << 63) - 2));
    }

    #[test]
    fn slots_are_written_only_up_to_the_highest_index_used() {
        let max = 1 << 20;
        let mut t = FlowTable::new(max);
        let cap = t.slots.capacity();
        assert!(cap >= max as usize);
        assert_eq!(t.slots.len(), 0, "nothing written before the first flow");
        let rule = || Rule::split(FlowRule::new(Component::Rtp)).0;
        t.insert(FlowId::new(5, 1), rule(), FlowCrypto::default())
            .unwrap();
        assert_eq!((t.slots.len(), t.crypto.len()), (6, 6));
        // Below the high-water mark: the slots are there, empty.
        assert!(t.get(FlowId::new(3, 0)).is_none());
        t.insert(FlowId::new(3, 0), rule(), FlowCrypto::default())
            .unwrap();
        assert_eq!(t.slots.len(), 6);
        // Above it and beyond the reservation.
        assert!(t.get(FlowId::new(100, 0)).is_none());
        assert_eq!(
            t.insert(FlowId::new(max, 0), rule(), FlowCrypto::default()),
            Err(EngineError::TooManyFlows)
        );
        t.insert(FlowId::new(max - 1, 0), rule(), FlowCrypto::default())
            .unwrap();
        assert_eq!(t.slots.capacity(), cap, "grew in place, never moved");
        assert_eq!(t.iter().count(), 3);
    }

    #[test]
    fn generation_guards_the_slot() {
        let mut t = FlowTable::new(4);
        let old = FlowId::new(2, 5);
        t.insert(
            old,
            Rule::split(FlowRule::new(Component::Rtp)).0,
            FlowCrypto::default(),
        )
        .unwrap();
        assert_eq!(
            t.insert(
                FlowId::new(2, 6),
                Rule::split(FlowRule::new(Component::Rtp)).0,
                FlowCrypto::default()
            ),
            Err(EngineError::SlotInUse)
        );
        assert!(t.get(FlowId::new(2, 4)).is_none());
        assert!(t.get(old).is_some());
        t.remove(old).unwrap();
        assert_eq!(t.remove(old).unwrap_err(), EngineError::UnknownFlow);
        assert_eq!(
            t.insert(
                old,
                Rule::split(FlowRule::new(Component::Rtp)).0,
                FlowCrypto::default()
            ),
            Err(EngineError::StaleGeneration)
        );
        let new = FlowId::new(2, 6);
        t.insert(
            new,
            Rule::split(FlowRule::new(Component::Rtcp)).0,
            FlowCrypto::default(),
        )
        .unwrap();
        assert!(t.get(old).is_none());
        assert_eq!(t.iter().map(|(id, _)| id).collect::<Vec<_>>(), [new]);
        assert_eq!(t.live(), 1);
        assert_eq!(
            t.insert(
                FlowId::new(4, 0),
                Rule::split(FlowRule::new(Component::Rtp)).0,
                FlowCrypto::default()
            ),
            Err(EngineError::TooManyFlows)
        );
    }
}
