//! Replay protection and RTP index estimation (RFC 3711 §3.3.1, §3.3.2, Appendix A).
//!
//! The window is a ring of bits indexed by `index % capacity`; moving the top
//! forward clears the bits it passes, so the common in-order packet costs one
//! bit clear and one bit set instead of a multi-word shift.
//!
//! The ring's capacity is the configured window rounded up to a power of two,
//! not the 1,024 maximum, and so is its storage: a window of up to 128 packets
//! keeps its two words beside `top` (40 bytes in all), a larger one has its
//! bits boxed when the context is built. With a thousand flows taking turns,
//! each packet's window costs one line, and contexts are small enough that
//! more of them stay cached (`dataplane/engine/benches/srtp_footprint.rs`).

use crate::error::SrtpError;

/// Largest replay window ferrelay keeps, in packets (16 x 64 bits).
pub const MAX_REPLAY_WINDOW: u16 = 1024;
/// Smallest replay window, the minimum RFC 3711 §3.3.2 asks for.
pub const MIN_REPLAY_WINDOW: u16 = 64;

const WORDS: usize = MAX_REPLAY_WINDOW as usize / 64;
/// Words kept in the window itself: up to 128 packets, the size ferrelay's SDES uses.
const INLINE_WORDS: usize = 2;

/// The ring's bits, sized to the configured window when the window is built.
#[derive(Debug, Clone)]
enum Bits {
    /// Windows of up to 128 packets: in line, beside `top`.
    Inline([u64; INLINE_WORDS]),
    /// Larger windows: allocated with the context, reused when a slot is recycled.
    Heap(Box<[u64; WORDS]>),
}

impl Bits {
    fn words(&self) -> &[u64] {
        match self {
            Bits::Inline(b) => b,
            Bits::Heap(b) => &b[..],
        }
    }

    fn words_mut(&mut self) -> &mut [u64] {
        match self {
            Bits::Inline(b) => b,
            Bits::Heap(b) => &mut b[..],
        }
    }
}

/// Which packet indices were already seen, up to `size` behind the highest one.
///
/// 40 bytes for a window of up to 128 packets (three per SSRC slot), not the
/// 152 a ring sized for the 1,024 maximum took: a context is a quarter the size.
#[derive(Debug, Clone)]
pub(crate) struct ReplayWindow {
    /// Highest index authenticated so far; meaningless until `started`.
    top: u64,
    size: u16,
    /// Ring capacity − 1: `size` rounded up to a power of two, minus one.
    mask: u16,
    started: bool,
    bits: Bits,
}

impl ReplayWindow {
    /// A window of `size` packets, clamped to [`MIN_REPLAY_WINDOW`, `MAX_REPLAY_WINDOW`].
    ///
    /// Allocates for windows above 128 packets; call it when a context is built.
    pub(crate) fn new(size: u16) -> ReplayWindow {
        let size = size.clamp(MIN_REPLAY_WINDOW, MAX_REPLAY_WINDOW);
        // At most MAX_REPLAY_WINDOW (a power of two), so no overflow.
        let capacity = size.next_power_of_two();
        let bits = if usize::from(capacity) <= INLINE_WORDS * 64 {
            Bits::Inline([0; INLINE_WORDS])
        } else {
            Bits::Heap(Box::new([0; WORDS]))
        };
        ReplayWindow {
            top: 0,
            size,
            mask: capacity - 1,
            started: false,
            bits,
        }
    }

    /// Forgets every index, keeping the size and the storage (no allocation).
    pub(crate) fn reset(&mut self) {
        self.top = 0;
        self.started = false;
        self.ring().fill(0);
    }

    /// Bits of the ring in use: `mask + 1` rounded to whole words.
    fn ring(&mut self) -> &mut [u64] {
        let words = (usize::from(self.mask) + 1) / 64;
        &mut self.bits.words_mut()[..words]
    }

    /// Word and bit of `index` in the ring.
    #[inline]
    fn slot(&self, index: u64) -> (usize, u64) {
        let bit = index & u64::from(self.mask);
        ((bit / 64) as usize, 1 << (bit % 64))
    }

    /// Highest accepted index, if any packet was accepted yet.
    pub(crate) fn top(&self) -> Option<u64> {
        self.started.then_some(self.top)
    }

    /// RFC 3711 §3.3.2: refuses an index already seen or behind the window; changes nothing.
    pub(crate) fn check(&self, index: u64) -> Result<(), SrtpError> {
        if !self.started || index > self.top {
            return Ok(());
        }
        if self.top - index >= u64::from(self.size) {
            return Err(SrtpError::TooOld);
        }
        let (word, bit) = self.slot(index);
        if self.bits.words()[word] & bit != 0 {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    /// Records an authenticated index (RFC 3711 §3.3.2: update only after authentication).
    pub(crate) fn accept(&mut self, index: u64) {
        if !self.started {
            self.started = true;
            self.top = index;
            self.ring().fill(0);
        } else if index > self.top {
            let ahead = index - self.top;
            if ahead > u64::from(self.mask) {
                self.ring().fill(0);
            } else {
                for i in self.top + 1..index {
                    let (word, bit) = self.slot(i);
                    self.bits.words_mut()[word] &= !bit;
                }
            }
            self.top = index;
        }
        let (word, bit) = self.slot(index);
        self.bits.words_mut()[word] |= bit;
    }

    /// RFC 3711 §3.3.1 / Appendix A: the 48-bit index a sequence number most likely has.
    ///
    /// Guesses ROC-1, ROC or ROC+1 relative to the highest sequence number
    /// seen (`s_l`). A first packet gets ROC 0. A guess before index 0 is
    /// [`SrtpError::TooOld`]; a ROC past 2^32-1 is [`SrtpError::IndexExhausted`].
    pub(crate) fn estimate_rtp_index(&self, seq: u16) -> Result<u64, SrtpError> {
        let Some(top) = self.top() else {
            return Ok(u64::from(seq));
        };
        let roc = (top >> 16) as i64;
        let s_l = i64::from(top as u16);
        let s = i64::from(seq);
        let v = if s_l < 32_768 {
            if s - s_l > 32_768 { roc - 1 } else { roc }
        } else if s_l - 32_768 > s {
            roc + 1
        } else {
            roc
        };
        if v < 0 {
            return Err(SrtpError::TooOld);
        }
        if v > i64::from(u32::MAX) {
            return Err(SrtpError::IndexExhausted);
        }
        Ok(((v as u64) << 16) | u64::from(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_window_accepts_anything_then_refuses_duplicates() {
        let mut w = ReplayWindow::new(64);
        assert_eq!(w.check(1000), Ok(()));
        w.accept(1000);
        assert_eq!(w.check(1000), Err(SrtpError::Replayed));
        assert_eq!(w.check(1001), Ok(()));
        assert_eq!(w.check(999), Ok(()));
        w.accept(999);
        assert_eq!(w.check(999), Err(SrtpError::Replayed));
    }

    #[test]
    fn too_old_is_distinct_from_replayed() {
        let mut w = ReplayWindow::new(64);
        w.accept(200);
        assert_eq!(w.check(200 - 63), Ok(()));
        assert_eq!(w.check(200 - 64), Err(SrtpError::TooOld));
        assert_eq!(w.check(0), Err(SrtpError::TooOld));
    }

    #[test]
    fn window_size_is_configurable_and_clamped() {
        let mut w = ReplayWindow::new(512);
        w.accept(10_000);
        assert_eq!(w.check(10_000 - 511), Ok(()));
        assert_eq!(w.check(10_000 - 512), Err(SrtpError::TooOld));
        let mut small = ReplayWindow::new(8);
        small.accept(100);
        assert_eq!(small.check(100 - 63), Ok(()), "clamped up to 64");
        let mut big = ReplayWindow::new(u16::MAX);
        big.accept(5000);
        assert_eq!(
            big.check(5000 - 1024),
            Err(SrtpError::TooOld),
            "clamped to 1024"
        );
    }

    #[test]
    fn moving_forward_forgets_bits_of_recycled_slots() {
        for (size, capacity) in [(64, 64), (100, 128), (1024, 1024)] {
            let mut w = ReplayWindow::new(size);
            w.accept(5);
            // Jump by exactly the ring capacity: the slot of 5 is reused.
            w.accept(5 + capacity);
            assert_eq!(w.check(5 + capacity), Err(SrtpError::Replayed));
            assert_eq!(w.check(5 + capacity - 1), Ok(()), "window {size}");
            // Past the capacity: the whole ring is cleared, so 5's old bit
            // does not make 5 + capacity look replayed.
            let mut w = ReplayWindow::new(size);
            w.accept(5);
            w.accept(6 + capacity);
            assert_eq!(w.check(5 + capacity), Ok(()), "window {size}");
        }
        // Step forward one at a time across a whole ring; earlier bits must not leak.
        let mut w = ReplayWindow::new(1024);
        w.accept(0);
        for i in 2..3000u64 {
            w.accept(i);
        }
        assert_eq!(w.check(2999 - 1023), Err(SrtpError::Replayed));
        w.accept(4000);
        for i in 3000..4000u64 {
            assert_eq!(w.check(i), Ok(()), "{i} never seen");
        }
    }

    #[test]
    fn ring_of_an_odd_window_remembers_every_index_in_it() {
        // Window 100 rides on a 128-bit ring: every index within 100 of the top
        // is remembered, whatever its position in the ring.
        let mut w = ReplayWindow::new(100);
        for i in (0..1000u64).step_by(3) {
            w.accept(i);
        }
        let top = 999;
        for i in top - 99..=top {
            let want = if i % 3 == 0 {
                Err(SrtpError::Replayed)
            } else {
                Ok(())
            };
            assert_eq!(w.check(i), want, "{i}");
        }
        assert_eq!(w.check(top - 100), Err(SrtpError::TooOld));
    }

    #[test]
    fn index_estimation_across_the_16_bit_wrap() {
        let mut w = ReplayWindow::new(128);
        assert_eq!(w.estimate_rtp_index(65_530), Ok(65_530));
        w.accept(65_530);
        // Forward across the wrap: ROC becomes 1.
        assert_eq!(w.estimate_rtp_index(3), Ok((1 << 16) | 3));
        w.accept((1 << 16) | 3);
        // A late packet from before the wrap keeps ROC 0.
        assert_eq!(w.estimate_rtp_index(65_534), Ok(65_534));
        // Near the middle of the sequence space, ROC stays.
        assert_eq!(w.estimate_rtp_index(32_000), Ok((1 << 16) | 32_000));
    }

    #[test]
    fn index_estimation_refuses_negative_and_exhausted() {
        let mut w = ReplayWindow::new(64);
        w.accept(100);
        // s_l = 100 < 32768 and seq far above: guess ROC - 1 = -1.
        assert_eq!(w.estimate_rtp_index(65_000), Err(SrtpError::TooOld));
        let mut w = ReplayWindow::new(64);
        w.accept((u64::from(u32::MAX) << 16) | 60_000);
        assert_eq!(w.estimate_rtp_index(10), Err(SrtpError::IndexExhausted));
        assert_eq!(
            w.estimate_rtp_index(60_001),
            Ok((u64::from(u32::MAX) << 16) | 60_001)
        );
    }
}
