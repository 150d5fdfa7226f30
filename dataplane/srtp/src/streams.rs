//! Per-SSRC state in a small fixed table with least-recently-used replacement.
//!
//! The SRTCP send index is not here but context-wide (see `SrtpContext`), so
//! recycling a slot can never restart an index that was already used.
//!
//! A context usually sees one or two SSRCs; eight slots cover SSRC changes and
//! RTX streams without a heap. A slot is taken only by a packet that
//! authenticated (receive) or that we protect (send), so forged SSRCs cannot
//! evict a live stream's rollover counter.

use crate::replay::ReplayWindow;

/// How many SSRCs one context tracks before it recycles the least recently used.
pub const MAX_SSRCS: usize = 8;

/// Rollover counters and replay windows of one SSRC.
#[derive(Debug, Clone)]
pub(crate) struct StreamState {
    pub(crate) ssrc: u32,
    /// RTP packets received: its top is the highest index, so ROC = top >> 16 (RFC 3711 §3.3.1).
    pub(crate) rtp_rx: ReplayWindow,
    /// RTP packets sent: same estimation, so a relay needs no ROC from the sender.
    pub(crate) rtp_tx: ReplayWindow,
    /// SRTCP indices received (RFC 3711 §3.4: replay protection on the 31-bit index).
    pub(crate) rtcp_rx: ReplayWindow,
}

impl StreamState {
    fn new(ssrc: u32, window: u16) -> StreamState {
        StreamState {
            ssrc,
            rtp_rx: ReplayWindow::new(window),
            rtp_tx: ReplayWindow::new(window),
            rtcp_rx: ReplayWindow::new(window),
        }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    used: bool,
    last_used: u64,
    state: StreamState,
}

/// Fixed array of [`MAX_SSRCS`] slots, preallocated with the context.
#[derive(Debug, Clone)]
pub(crate) struct StreamTable {
    window: u16,
    clock: u64,
    slots: [Slot; MAX_SSRCS],
}

impl StreamTable {
    pub(crate) fn new(window: u16) -> StreamTable {
        StreamTable {
            window,
            clock: 0,
            slots: std::array::from_fn(|_| Slot {
                used: false,
                last_used: 0,
                state: StreamState::new(0, window),
            }),
        }
    }

    /// Replay window size new streams get.
    pub(crate) fn window(&self) -> u16 {
        self.window
    }

    /// Slot of `ssrc`, if it has one; does not count as a use.
    pub(crate) fn find(&self, ssrc: u32) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.used && s.state.ssrc == ssrc)
    }

    /// Slot of `ssrc`, recycling a free or the least recently used slot when it has none.
    pub(crate) fn find_or_insert(&mut self, ssrc: u32) -> usize {
        if let Some(i) = self.find(ssrc) {
            return i;
        }
        let victim = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| (s.used, s.last_used))
            .map_or(0, |(i, _)| i);
        let slot = &mut self.slots[victim];
        slot.used = true;
        slot.state = StreamState::new(ssrc, self.window);
        victim
    }

    /// State of slot `i`, marked as most recently used.
    pub(crate) fn touch(&mut self, i: usize) -> &mut StreamState {
        self.clock += 1;
        let slot = &mut self.slots[i];
        slot.last_used = self.clock;
        &mut slot.state
    }

    /// State of slot `i` without marking it used.
    pub(crate) fn get(&self, i: usize) -> &StreamState {
        &self.slots[i].state
    }

    /// Number of SSRCs currently tracked.
    pub(crate) fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.used).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
