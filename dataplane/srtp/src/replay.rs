//! Replay protection and RTP index estimation (RFC 3711 §3.3.1, §3.3.2, Appendix A).
//!
//! The window is a ring of bits indexed by `index % CAPACITY`; moving the top
//! forward clears the bits it passes, so the common in-order packet costs one
//! bit clear and one bit set instead of a multi-word shift.

use crate::error::SrtpError;

/// Largest replay window ferrelay keeps, in packets (16 x 64 bits).
pub const MAX_REPLAY_WINDOW: u16 = 1024;
/// Smallest replay window, the minimum RFC 3711 §3.3.2 asks for.
pub const MIN_REPLAY_WINDOW: u16 = 64;

const WORDS: usize = MAX_REPLAY_WINDOW as usize / 64;
const CAPACITY: u64 = MAX_REPLAY_WINDOW as u64;

/// Which packet indices were already seen, up to `size` behind the highest one.
#[derive(Debug, Clone)]
pub(crate) struct ReplayWindow {
    /// Highest index authenticated so far; meaningless until `started`.
    top: u64,
    started: bool,
    size: u64,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// A window of `size` packets, clamped to [`MIN_REPLAY_WINDOW`, `MAX_REPLAY_WINDOW`].
    pub(crate) fn new(size: u16) -> ReplayWindow {
        ReplayWindow {
            top: 0,
            started: false,
            size: u64::from(size.clamp(MIN_REPLAY_WINDOW, MAX_REPLAY_WINDOW)),
            bits: [0; WORDS],
        }
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
        if self.top - index >= self.size {
            return Err(SrtpError::TooOld);
        }
        let bit = index % CAPACITY;
        if self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0 {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    /// Records an authenticated index (RFC 3711 §3.3.2: update only after authentication).
    pub(crate) fn accept(&mut self, index: u64) {
        if !self.started {
            self.started = true;
            self.top = index;
            self.bits = [0; WORDS];
        } else if index > self.top {
            let ahead = index - self.top;
            if ahead >= CAPACITY {
                self.bits = [0; WORDS];
            } else {
                for i in self.top + 1..index {
                    let b = i % CAPACITY;
                    self.bits[(b / 64) as usize] &= !(1 << (b % 64));
                }
            }
            self.top = index;
        }
        let bit = index % CAPACITY;
        self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
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
        let mut w = ReplayWindow::new(64);
        w.accept(5);
        // Jump by exactly the ring capacity: slot of 5 is reused by 5 + 1024.
        w.accept(5 + CAPACITY);
        assert_eq!(w.check(5 + CAPACITY), Err(SrtpError::Replayed));
        assert_eq!(w.check(5 + CAPACITY - 1), Ok(()));
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
