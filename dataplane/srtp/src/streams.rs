//! Per-SSRC state in a small fixed table with least-recently-used replacement.
//!
//! The SRTCP send index is not here but context-wide (see `SrtpContext`), so
//! recycling a slot can never restart an index that was already used.
//!
//! A context usually sees one or two SSRCs; eight slots cover SSRC changes and
//! RTX streams without a heap. A slot is taken only by a packet that
//! authenticated (receive) or that we protect (send), so forged SSRCs cannot
//! evict a live stream's rollover counter.

use std::hint::black_box;

use crate::replay::ReplayWindow;

/// How many SSRCs one context tracks before it recycles the least recently used.
pub const MAX_SSRCS: usize = 8;

/// Rollover counters and replay windows of one SSRC.
#[derive(Debug, Clone)]
pub(crate) struct StreamState {
    /// RTP packets received: its top is the highest index, so ROC = top >> 16 (RFC 3711 §3.3.1).
    pub(crate) rtp_rx: ReplayWindow,
    /// RTP packets sent: same estimation, so a relay needs no ROC from the sender.
    pub(crate) rtp_tx: ReplayWindow,
    /// SRTCP indices received (RFC 3711 §3.4: replay protection on the 31-bit index).
    pub(crate) rtcp_rx: ReplayWindow,
}

impl StreamState {
    fn new(window: u16) -> StreamState {
        StreamState {
            rtp_rx: ReplayWindow::new(window),
            rtp_tx: ReplayWindow::new(window),
            rtcp_rx: ReplayWindow::new(window),
        }
    }

    /// A fresh stream in the same storage (a recycled slot must not allocate).
    fn reset(&mut self) {
        self.rtp_rx.reset();
        self.rtp_tx.reset();
        self.rtcp_rx.reset();
    }
}

/// Fixed array of [`MAX_SSRCS`] slots, preallocated with the context.
///
/// The lookup part (SSRCs, recency order, count) fits in one cache line ahead
/// of the states, and a packet of the stream used last writes nothing in it:
/// recency is a move-to-front list, not a stamp written per packet.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct StreamTable {
    /// SSRC of each slot; slots `0..len` are in use, filled in order.
    ssrcs: [u32; MAX_SSRCS],
    /// Slot numbers in use, most recently used first.
    recency: [u8; MAX_SSRCS],
    len: u8,
    window: u16,
    states: [StreamState; MAX_SSRCS],
}

impl StreamTable {
    pub(crate) fn new(window: u16) -> StreamTable {
        StreamTable {
            ssrcs: [0; MAX_SSRCS],
            recency: [0; MAX_SSRCS],
            len: 0,
            window,
            states: std::array::from_fn(|_| StreamState::new(window)),
        }
    }

    /// Replay window size new streams get.
    pub(crate) fn window(&self) -> u16 {
        self.window
    }

    /// Slot of `ssrc`, if it has one; does not count as a use.
    #[inline]
    pub(crate) fn find(&self, ssrc: u32) -> Option<usize> {
        self.ssrcs[..usize::from(self.len)]
            .iter()
            .position(|&s| s == ssrc)
    }

    /// Slot of `ssrc`, recycling a free or the least recently used slot when it has none.
    pub(crate) fn find_or_insert(&mut self, ssrc: u32) -> usize {
        if let Some(i) = self.find(ssrc) {
            return i;
        }
        let len = usize::from(self.len);
        let victim = if len < MAX_SSRCS {
            // A free slot: the next in fill order, last in recency until touched.
            self.recency[len] = len as u8;
            self.len += 1;
            len
        } else {
            usize::from(self.recency[MAX_SSRCS - 1])
        };
        self.ssrcs[victim] = ssrc;
        self.states[victim].reset();
        victim
    }

    /// State of slot `i`, marked as most recently used.
    #[inline]
    pub(crate) fn touch(&mut self, i: usize) -> &mut StreamState {
        if usize::from(self.recency[0]) != i {
            let len = usize::from(self.len);
            if let Some(at) = self.recency[..len]
                .iter()
                .position(|&s| usize::from(s) == i)
            {
                self.recency[..=at].rotate_right(1);
            }
        }
        &mut self.states[i]
    }

    /// Loads the lookup line and the RTP windows of the stream used last.
    #[inline]
    pub(crate) fn prefetch(&self) {
        let last = &self.states[usize::from(self.recency[0])];
        black_box((self.ssrcs[0], last.rtp_rx.top(), last.rtp_tx.top()));
    }

    /// State of slot `i` without marking it used.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &StreamState {
        &self.states[i]
    }

    /// Number of SSRCs currently tracked.
    pub(crate) fn len(&self) -> usize {
        usize::from(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_fits_one_line_before_the_states() {
        assert!(std::mem::offset_of!(StreamTable, states) <= 64);
    }

    #[test]
    fn recency_survives_recycling_every_slot_twice() {
        let mut t = StreamTable::new(64);
        for ssrc in 0..3 * MAX_SSRCS as u32 {
            let i = t.find_or_insert(ssrc);
            t.touch(i).rtp_tx.accept(u64::from(ssrc));
            assert_eq!(t.find(ssrc), Some(i));
            // The oldest of the last MAX_SSRCS is still here, the one before is gone.
            if ssrc >= MAX_SSRCS as u32 {
                assert!(t.find(ssrc + 1 - MAX_SSRCS as u32).is_some());
                assert_eq!(t.find(ssrc - MAX_SSRCS as u32), None);
            }
        }
        assert_eq!(t.len(), MAX_SSRCS);
    }

    #[test]
    fn least_recently_used_slot_is_recycled() {
        let mut t = StreamTable::new(64);
        for ssrc in 0..MAX_SSRCS as u32 {
            let i = t.find_or_insert(ssrc);
            t.touch(i).rtp_tx.accept(u64::from(ssrc) + 100);
        }
        assert_eq!(t.len(), MAX_SSRCS);
        // Use SSRC 0 again so SSRC 1 becomes the oldest.
        let i0 = t.find(0).unwrap();
        t.touch(i0);
        let i = t.find_or_insert(999);
        t.touch(i);
        assert_eq!(t.find(1), None, "oldest SSRC evicted");
        assert_eq!(
            t.get(t.find(0).unwrap()).rtp_tx.top(),
            Some(100),
            "recent one kept"
        );
        assert_eq!(t.get(i).rtp_tx.top(), None, "new slot starts fresh");
        assert_eq!(t.len(), MAX_SSRCS);
    }
}
