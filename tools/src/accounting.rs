//! Per-stream receive accounting: unique packets, duplicates, reordering and
//! one-way latency. Pure state machines over sequence numbers, so the math is
//! tested with synthetic sequences and no sockets.

use hdrhistogram::Histogram;

/// Sequence numbers remembered behind the highest one, for duplicate detection.
pub const DUP_WINDOW: u64 = 1024;
const WORDS: usize = (DUP_WINDOW / 64) as usize;

/// What one arriving packet turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Newer than everything seen so far (gaps may be losses, or reorders to come).
    InOrder,
    /// Older than the highest seen, not seen before: counted once, as reordered.
    Reordered,
    /// Seen before.
    Duplicate,
    /// Older than the duplicate window: counted as reordered, duplicates not detectable.
    TooOld,
}

/// Receive state of one RTP stream.
///
/// Sequence numbers are extended past 16 bits the way RFC 3550 A.1 does: the
/// arriving seq is taken as the one nearest to the highest seen, in either direction.
#[derive(Debug, Clone)]
pub struct RxStream {
    /// Highest extended sequence number seen; `None` before the first packet.
    highest: Option<u64>,
    /// Bit `i` of the window: `highest - i` was seen (i < DUP_WINDOW).
    seen: [u64; WORDS],
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub first_ext_seq: u64,
    /// RFC 3550 §6.4.1 interarrival jitter, nanoseconds.
    pub jitter_ns: f64,
    /// Transit time (arrival minus send) of the previous packet, ns.
    last_transit: Option<i64>,
}

impl Default for RxStream {
    fn default() -> Self {
        Self::new()
    }
}

impl RxStream {
    pub const fn new() -> Self {
        RxStream {
            highest: None,
            seen: [0; WORDS],
            unique: 0,
            duplicates: 0,
            reordered: 0,
            first_ext_seq: 0,
            jitter_ns: 0.0,
            last_transit: None,
        }
    }

    /// Highest extended sequence number seen so far.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Accounts one packet with 16-bit sequence number `seq`.
    pub fn on_packet(&mut self, seq: u16) -> Arrival {
        let Some(highest) = self.highest else {
            // Start the extended space one cycle up so a reorder before the first
            // packet cannot go below zero.
            let ext = (1u64 << 16) + u64::from(seq);
            self.highest = Some(ext);
            self.first_ext_seq = ext;
            self.set_bit(0);
            self.unique = 1;
            return Arrival::InOrder;
        };
        // RFC 3550 A.1: nearest interpretation of the 16-bit delta.
        let delta = seq.wrapping_sub(highest as u16) as i16;
        let ext = highest.wrapping_add_signed(i64::from(delta));
        if ext > highest {
            self.shift((ext - highest).min(DUP_WINDOW));
            self.highest = Some(ext);
            self.set_bit(0);
            self.unique += 1;
            return Arrival::InOrder;
        }
        let behind = highest - ext;
        if behind >= DUP_WINDOW {
            self.unique += 1;
            self.reordered += 1;
            return Arrival::TooOld;
        }
        if self.bit(behind) {
            self.duplicates += 1;
            Arrival::Duplicate
        } else {
            self.set_bit(behind);
            self.unique += 1;
            self.reordered += 1;
            Arrival::Reordered
        }
    }

    /// Updates the interarrival jitter with one packet's transit time (RFC 3550
    /// §6.4.1: J += (|D| - J) / 16). The send time in the payload stands in for the
    /// RTP timestamp: same clock as arrival, so no rate conversion is needed.
    pub fn on_transit(&mut self, transit_ns: i64) {
        if let Some(prev) = self.last_transit {
            let d = (transit_ns - prev).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_transit = Some(transit_ns);
    }

    /// Packets missing given that the sender sent `sent` in the measured window.
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.unique)
    }

    fn bit(&self, behind: u64) -> bool {
        let i = behind as usize;
        self.seen[i / 64] & (1 << (i % 64)) != 0
    }

    fn set_bit(&mut self, behind: u64) {
        let i = behind as usize;
        self.seen[i / 64] |= 1 << (i % 64);
    }

    /// Moves the window forward by `n` (<= DUP_WINDOW) positions.
    fn shift(&mut self, n: u64) {
        if n >= DUP_WINDOW {
            self.seen = [0; WORDS];
            return;
        }
        let words = (n / 64) as usize;
        let bits = (n % 64) as u32;
        for i in (0..WORDS).rev() {
            let src = i.checked_sub(words);
            let hi = src.map_or(0, |s| self.seen[s]);
            let lo = src
                .and_then(|s| s.checked_sub(1))
                .map_or(0, |s| self.seen[s]);
            self.seen[i] = if bits == 0 {
                hi
            } else {
                (hi << bits) | (lo >> (64 - bits))
            };
        }
    }
}

/// One-way latency in nanoseconds, merged across receiver threads at the end.
#[derive(Debug, Clone)]
pub struct Latency {
    pub hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        // 1 ns .. 60 s at 3 significant digits: fixed size, no resize on the receive path.
        let hist = Histogram::new_with_bounds(1, 60_000_000_000, 3)
            .expect("static histogram bounds are valid");
        Latency { hist }
    }

    /// Smallest latency recorded, ns (0 when empty).
    pub fn min_ns(&self) -> u64 {
        if self.hist.is_empty() {
            0
        } else {
            self.hist.min()
        }
    }

    pub fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns.max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides: addition cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    /// p50/p99/p99.9/max/mean in microseconds.
    pub fn summary_us(&self) -> LatencySummary {
        let q = |v: f64| self.hist.value_at_quantile(v) as f64 / 1000.0;
        LatencySummary {
            samples: self.hist.len(),
            min_us: self.min_ns() as f64 / 1000.0,
            p50_us: q(0.50),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: self.hist.max() as f64 / 1000.0,
            mean_us: self.hist.mean() / 1000.0,
        }
    }
}

/// Latency percentiles as reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seqs: &[u16]) -> (RxStream, Vec<Arrival>) {
        let mut s = RxStream::new();
        let a = seqs.iter().map(|&q| s.on_packet(q)).collect();
        (s, a)
    }

    #[test]
    fn in_order_no_loss() {
        let seqs: Vec<u16> = (100..200).collect();
        let (s, _) = feed(&seqs);
        assert_eq!(s.unique, 100);
        assert_eq!((s.duplicates, s.reordered), (0, 0));
        assert_eq!(s.lost(100), 0);
    }

    #[test]
    fn gaps_are_losses() {
        let (s, _) = feed(&[1, 2, 5, 6, 10]);
        assert_eq!(s.unique, 5);
        assert_eq!(s.lost(10), 5);
        assert_eq!(s.reordered, 0);
    }

    #[test]
    fn duplicates_and_reorders_are_told_apart() {
        let (s, a) = feed(&[1, 3, 2, 3, 2, 4, 1]);
        use Arrival::*;
        assert_eq!(
            a,
            vec![
                InOrder, InOrder, Reordered, Duplicate, Duplicate, InOrder, Duplicate
            ]
        );
        assert_eq!((s.unique, s.duplicates, s.reordered), (4, 3, 1));
        assert_eq!(s.lost(4), 0);
    }

    #[test]
    fn sixteen_bit_wrap_is_in_order() {
        let seqs: Vec<u16> = (0..300u32).map(|i| (65_400 + i) as u16).collect();
        let (s, a) = feed(&seqs);
        assert!(a.iter().all(|&x| x == Arrival::InOrder));
        assert_eq!(s.unique, 300);
        assert_eq!(s.highest().unwrap() - s.first_ext_seq, 299);
    }

    #[test]
    fn reorder_across_wrap() {
        let (s, a) = feed(&[65_534, 0, 65_535, 1, 0]);
        use Arrival::*;
        assert_eq!(a, vec![InOrder, InOrder, Reordered, InOrder, Duplicate]);
        assert_eq!((s.unique, s.duplicates, s.reordered), (4, 1, 1));
    }

    #[test]
    fn window_shift_keeps_bits_across_words() {
        let mut s = RxStream::new();
        for q in 0..200u16 {
            s.on_packet(q);
        }
        // 199 is highest; 70 is 129 behind (third word) and must still be seen.
        assert_eq!(s.on_packet(70), Arrival::Duplicate);
        // A jump larger than a word but inside the window.
        s.on_packet(300);
        assert_eq!(s.on_packet(199), Arrival::Duplicate);
        assert_eq!(s.on_packet(250), Arrival::Reordered);
        assert_eq!(s.on_packet(250), Arrival::Duplicate);
    }

    #[test]
    fn too_old_is_counted_not_dup_checked() {
        let mut s = RxStream::new();
        s.on_packet(0);
        s.on_packet(2000);
        assert_eq!(s.on_packet(1), Arrival::TooOld);
        assert_eq!(s.unique, 3);
        assert_eq!(s.reordered, 1);
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let mut s = RxStream::new();
        // Constant transit: no jitter.
        for _ in 0..10 {
            s.on_transit(5_000);
        }
        assert_eq!(s.jitter_ns, 0.0);
        // Alternating 1 ms difference: J converges to 1 ms from below.
        for i in 0..400 {
            s.on_transit(if i % 2 == 0 { 6_000_000 } else { 5_000_000 });
        }
        assert!((s.jitter_ns - 1_000_000.0).abs() < 1.0, "{}", s.jitter_ns);
        // One step: |D| / 16 from zero.
        let mut t = RxStream::new();
        t.on_transit(0);
        t.on_transit(1_600);
        assert_eq!(t.jitter_ns, 100.0);
    }

    #[test]
    fn latency_percentiles() {
        let mut l = Latency::new();
        for us in 1..=1000u64 {
            l.record(us * 1000);
        }
        let mut other = Latency::new();
        other.record(5_000_000);
        l.merge(&other);
        let s = l.summary_us();
        assert_eq!(s.samples, 1001);
        // HDR at 3 significant digits: within 0.5% (values round up within a bucket).
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.005;
        assert!(near(s.p50_us, 500.0), "{s:?}");
        assert!(near(s.p99_us, 990.0), "{s:?}");
        assert!(near(s.max_us, 5000.0), "{s:?}");
    }
}
