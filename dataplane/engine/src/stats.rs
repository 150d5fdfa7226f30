//! Per-flow and per-worker statistics: counters, RFC 3550 A.1/A.3 sequence tracking
//! (extended sequence numbers, loss) and A.8 interarrival jitter. All fixed-size and
//! `Copy`; updating them never allocates.

use std::net::SocketAddr;

use hdrhistogram::Histogram;

use crate::error::{DropCounts, DropReason, FlowDrops};

/// RFC 3550 A.1: a jump of more than this many sequence numbers ahead is suspect.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: up to this many behind counts as reordering, not a restart.
const MAX_MISORDER: u16 = 100;
const RTP_SEQ_MOD: u32 = 1 << 16;

/// RFC 3550 A.1 source state, without the probation period: the control plane has
/// already told us this port carries media, so the first packet starts the count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SeqTracker {
    started: bool,
    max_seq: u16,
    /// Wrap count, shifted (A.1 `cycles`).
    cycles: u32,
    base_seq: u32,
    /// Sequence number after a large jump; a second packet there resyncs (A.1).
    bad_seq: u32,
    received: u64,
    /// `u32`, stopping at its maximum: four billion duplicates on one flow is not
    /// a count anyone reads, and the slot stays four cache lines.
    duplicates: u32,
    reordered: u32,
}

impl SeqTracker {
    /// Restarts counting at `seq` (A.1 `init_seq`).
    fn init(&mut self, seq: u16) {
        *self = SeqTracker {
            started: true,
            max_seq: seq,
            cycles: 0,
            base_seq: u32::from(seq),
            bad_seq: RTP_SEQ_MOD + 1,
            received: 0,
            duplicates: 0,
            reordered: 0,
        };
    }

    /// Accounts one packet (A.1 `update_seq`); false when it was judged a stray.
    #[inline]
    pub(crate) fn update(&mut self, seq: u16) -> bool {
        if !self.started {
            self.init(seq);
            self.received = 1;
            return true;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta == 0 {
            self.duplicates = self.duplicates.saturating_add(1);
        } else if udelta < MAX_DROPOUT {
            // In order, maybe with a gap. RFC 3550 A.1: count a wrap of the 16-bit space.
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if udelta <= (RTP_SEQ_MOD - u32::from(MAX_MISORDER)) as u16 {
            // A very large jump: resync only if the next packet follows it (A.1).
            if u32::from(seq) == self.bad_seq {
                self.init(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        } else {
            self.reordered = self.reordered.saturating_add(1);
        }
        self.received += 1;
        true
    }

    /// Highest sequence number seen, extended with the wrap count (A.3 `extended_max`).
    pub(crate) fn extended_max(&self) -> u64 {
        u64::from(self.cycles) + u64::from(self.max_seq)
    }

    /// A.3: `expected = extended_max - base_seq + 1`.
    pub(crate) fn expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        self.extended_max() + 1 - u64::from(self.base_seq)
    }

    /// A.3: `lost = expected - received` (negative with duplicates).
    pub(crate) fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }
}

/// RFC 3550 A.8 interarrival jitter, kept scaled by 16 as the integer form there does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct JitterEstimator {
    /// Arrival time of the first packet: arrival units are counted from it.
    base_ns: Stamp,
    transit: u32,
    jitter_x16: u32,
}

impl JitterEstimator {
    /// Folds in one packet that arrived at `now_ns` stamped `rtp_ts`.
    #[inline]
    pub(crate) fn update(&mut self, now_ns: u64, rtp_ts: u32, clock_rate: u32) {
        if clock_rate == 0 {
            return;
        }
        let first = self.base_ns.get().is_none();
        let base = self.base_ns.get_or_insert(now_ns);
        let arrival = ns_to_units(now_ns.saturating_sub(base), clock_rate);
        // A.8: transit = arrival - r->ts, both in timestamp units, modulo 2^32.
        let transit = arrival.wrapping_sub(rtp_ts);
        if !first {
            let d = (transit.wrapping_sub(self.transit) as i32).unsigned_abs();
            // A.8: J += (|D| - J) / 16, in the integer form `jitter += d - ((jitter + 8) >> 4)`.
            self.jitter_x16 = self
                .jitter_x16
                .wrapping_add(d)
                .wrapping_sub((self.jitter_x16 + 8) >> 4);
        }
        self.transit = transit;
    }

    /// Jitter in RTP timestamp units, as an RR reports it.
    pub(crate) fn units(&self) -> u32 {
        self.jitter_x16 >> 4
    }
}

/// A `now_ns` instant, or none, in 8 bytes where an `Option<u64>` takes 16:
/// `u64::MAX` stands for none, a time the worker's clock does not reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp(u64);

impl Default for Stamp {
    fn default() -> Self {
        Stamp::NONE
    }
}

impl Stamp {
    pub(crate) const NONE: Stamp = Stamp(u64::MAX);

    #[inline]
    pub(crate) fn get(self) -> Option<u64> {
        (self != Stamp::NONE).then_some(self.0)
    }

    /// The instant, set to `now_ns` first if there was none.
    #[inline]
    pub(crate) fn get_or_insert(&mut self, now_ns: u64) -> u64 {
        if *self == Stamp::NONE {
            self.0 = now_ns.min(u64::MAX - 1);
        }
        self.0
    }
}

/// Converts a duration to timestamp units, modulo 2^32 as RTP timestamps are.
#[inline]
fn ns_to_units(ns: u64, rate: u32) -> u32 {
    match ns.checked_mul(u64::from(rate)) {
        Some(x) => (x / 1_000_000_000) as u32,
        None => (u128::from(ns) * u128::from(rate) / 1_000_000_000) as u32,
    }
}

/// Timestamp units to nanoseconds.
pub(crate) fn units_to_ns(units: u32, rate: u32) -> u64 {
    if rate == 0 {
        0
    } else {
        u64::from(units) * 1_000_000_000 / u64::from(rate)
    }
}

/// The RTP stream seen on a flow (the last SSRC), per RFC 3550 A.3 and A.8.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpStreamStats {
    /// SSRC of the stream the numbers below describe (0 before any RTP).
    pub ssrc: u32,
    /// RTP packets accounted by A.1 (since the stream started or resynced).
    pub received: u64,
    /// Highest sequence number seen, extended with wraps.
    pub extended_max_seq: u64,
    /// A.3 expected count.
    pub expected: u64,
    /// A.3 cumulative loss: expected - received (negative when duplicated).
    pub lost: i64,
    pub duplicates: u64,
    /// Packets older than the highest seen (late, not lost).
    pub reordered: u64,
    /// Interarrival jitter in RTP timestamp units (A.8).
    pub jitter: u32,
    /// The same jitter in nanoseconds (0 when the clock rate is unknown).
    pub jitter_ns: u64,
}

/// A snapshot of one flow's counters; `Copy`, no heap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Datagrams that arrived on this flow, whatever became of them.
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Datagrams forwarded from this flow, and their size as sent.
    pub fwd_packets: u64,
    pub fwd_bytes: u64,
    /// RTCP packets (compounds) accepted from the remote.
    pub rtcp_packets: u64,
    /// Datagrams that arrived on this flow and were dropped, for any reason (the
    /// worker's [`WorkerStats::drops`] count them by reason).
    pub drops: u64,
    /// Why the last of them was dropped.
    pub last_drop: Option<DropReason>,
    pub rtp: RtpStreamStats,
    /// Times the RTP SSRC changed mid-flow.
    pub ssrc_changes: u64,
    /// `now_ns` of the first and the last packet accepted from the remote.
    pub first_packet_ns: Option<u64>,
    pub last_packet_ns: Option<u64>,
    /// Where packets for this flow go now: the latched source, else the signalled one.
    pub remote: Option<SocketAddr>,
    pub latched: bool,
    /// Times the latch moved after the first latch (NAT rebinding, or relatch).
    pub relatches: u64,
    pub blocked: bool,
}

/// Per-flow mutable accounting behind `FlowStats`; `repr(C)` keeps what every
/// packet touches in the leading cache lines and the drop counters after them.
/// The last packet's time is not here: it is the start of the flow's idle period once a
/// packet has arrived (see `engine::snapshot`).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub(crate) struct FlowCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub fwd_packets: u64,
    pub fwd_bytes: u64,
    pub ssrc: Option<u32>,
    pub seq: SeqTracker,
    pub jitter: JitterEstimator,
    pub first_packet_ns: Stamp,
    /// The counts below stop at `u32::MAX` (the snapshot widens them): none of
    /// them nears it in a call's life, and 12 bytes fewer keep the slot at four
    /// cache lines.
    pub rtcp_packets: u32,
    pub ssrc_changes: u32,
    pub relatches: u32,
    pub drops: FlowDrops,
}

impl FlowCounters {
    /// Accounts an accepted RTP packet; true when its SSRC differs from the last one.
    #[inline]
    pub(crate) fn on_rtp(
        &mut self,
        now_ns: u64,
        ssrc: u32,
        seq: u16,
        ts: u32,
        clock_rate: u32,
    ) -> bool {
        let changed = self.ssrc.is_some_and(|s| s != ssrc);
        if self.ssrc != Some(ssrc) {
            self.ssrc = Some(ssrc);
            self.seq = SeqTracker::default();
            self.jitter = JitterEstimator::default();
        }
        if changed {
            self.ssrc_changes = self.ssrc_changes.saturating_add(1);
        }
        self.seq.update(seq);
        self.jitter.update(now_ns, ts, clock_rate);
        changed
    }

    pub(crate) fn snapshot(&self, clock_rate: u32) -> FlowStats {
        let jitter = self.jitter.units();
        FlowStats {
            rx_packets: self.rx_packets,
            rx_bytes: self.rx_bytes,
            fwd_packets: self.fwd_packets,
            fwd_bytes: self.fwd_bytes,
            rtcp_packets: self.rtcp_packets.into(),
            drops: self.drops.count(),
            last_drop: self.drops.last(),
            rtp: RtpStreamStats {
                ssrc: self.ssrc.unwrap_or(0),
                received: self.seq.received,
                extended_max_seq: self.seq.extended_max(),
                expected: self.seq.expected(),
                lost: self.seq.lost(),
                duplicates: self.seq.duplicates.into(),
                reordered: self.seq.reordered.into(),
                jitter,
                jitter_ns: units_to_ns(jitter, clock_rate),
            },
            ssrc_changes: self.ssrc_changes.into(),
            first_packet_ns: self.first_packet_ns.get(),
            last_packet_ns: None,
            remote: None,
            latched: false,
            relatches: self.relatches.into(),
            blocked: false,
        }
    }
}

/// Lowest and highest residence latency the histogram tracks, in ns; values past the
/// top are clamped (saturating record), so recording never resizes.
pub const RESIDENCE_MIN_NS: u64 = 1;
pub const RESIDENCE_MAX_NS: u64 = 10_000_000_000;

/// A worker's counters and its residence-latency histogram.
#[derive(Debug, Clone)]
pub struct WorkerStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: DropCounts,
    /// Live flows.
    pub flows: u64,
    /// Events lost to a full event queue.
    pub events_overflow: u64,
    /// Time from receive to send handed to the kernel, per forwarded packet (ns).
    pub residence_ns: Histogram<u64>,
}

/// The worker-wide counters on the hot path (the histogram lives beside them).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WorkerCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: DropCounts,
}

/// A histogram with fixed bounds: `saturating_record` on it never allocates.
pub(crate) fn residence_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(RESIDENCE_MIN_NS, RESIDENCE_MAX_NS, 3)
        .expect("constant histogram bounds are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_across_the_16_bit_wrap() {
        let mut s = SeqTracker::default();
        // 65535 is lost; the rest arrive in order across the wrap.
        for seq in [65532, 65533, 65534, 0, 1, 2] {
            assert!(s.update(seq));
        }
        assert_eq!(s.extended_max(), 65536 + 2);
        assert_eq!(s.expected(), 7);
        assert_eq!(s.received, 6);
        assert_eq!(s.lost(), 1);
    }

    #[test]
    fn duplicates_and_reordering() {
        let mut s = SeqTracker::default();
        for seq in [10, 12, 11, 12, 13] {
            s.update(seq);
        }
        assert_eq!((s.duplicates, s.reordered), (1, 1));
        assert_eq!(s.expected(), 4);
        // A.3 counts the duplicate as received, so loss goes negative.
        assert_eq!(s.lost(), -1);
    }

    #[test]
    fn large_jump_resyncs_only_when_confirmed() {
        let mut s = SeqTracker::default();
        s.update(100);
        s.update(101);
        // One stray far ahead is ignored...
        assert!(!s.update(20_000));
        assert_eq!((s.received, s.extended_max()), (2, 101));
        // ...but a second packet right after it restarts the count there (A.1).
        assert!(s.update(20_001));
        assert_eq!((s.received, s.expected()), (1, 1));
        assert_eq!(s.extended_max(), 20_001);
    }

    #[test]
    fn jitter_matches_a_hand_computed_sequence() {
        // 8 kHz: one unit is 125 µs. Packets every 160 units (20 ms), the third 10 ms late.
        let mut j = JitterEstimator::default();
        let ms = 1_000_000;
        j.update(0, 0, 8000); // transit 0 (first packet: no D)
        j.update(20 * ms, 160, 8000); // transit 0, D 0: J = 0
        assert_eq!(j.units(), 0);
        j.update(50 * ms, 320, 8000); // arrival 400, transit 80, D 80: J = 80/16 = 5
        assert_eq!(j.units(), 5);
        j.update(60 * ms, 480, 8000); // transit 0, D 80: J = 5 + (80 - 5)/16 = 9.6875
        assert_eq!(j.units(), 9);
        assert_eq!(j.jitter_x16, 155);
        assert_eq!(units_to_ns(j.units(), 8000), 1_125_000);
    }

    #[test]
    fn jitter_needs_a_clock_rate_and_survives_huge_times() {
        let mut j = JitterEstimator::default();
        j.update(5, 1, 0);
        j.update(50_000_000, 9, 0);
        assert_eq!(j.units(), 0);
        // 300 days at 90 kHz overflows u64 ns * rate: the u128 path must agree.
        let day = 86_400_000_000_000u64;
        assert_eq!(
            ns_to_units(300 * day, 90_000),
            (300u128 * 86_400 * 90_000) as u32
        );
        assert_eq!(ns_to_units(1_000_000_000, 48_000), 48_000);
    }

    #[test]
    fn histogram_clamps_instead_of_growing() {
        let mut h = residence_histogram();
        let before = h.len();
        h.saturating_record(u64::MAX);
        h.saturating_record(0);
        h.saturating_record(1_500);
        assert_eq!(h.len(), before + 3);
        assert!(h.max() >= RESIDENCE_MAX_NS / 2);
    }
}
