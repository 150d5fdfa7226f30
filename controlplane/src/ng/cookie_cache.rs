//! Replies remembered by cookie so a retransmitted NG request (the proxy resends over
//! UDP when a reply is late or lost) is answered from memory instead of being
//! executed twice. Two generations: every `period` the older one is dropped, so an
//! entry lives between one and two periods with no per-entry timer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Bound on entries per generation so a flood of distinct cookies cannot grow
/// memory without limit; past it the current generation rotates early.
pub const MAX_ENTRIES: usize = 100_000;

/// The two-generation reply cache.
#[derive(Debug)]
pub struct CookieCache {
    current: HashMap<Vec<u8>, Vec<u8>>,
    previous: HashMap<Vec<u8>, Vec<u8>>,
    period: Duration,
    rotated_at: Instant,
}

impl CookieCache {
    pub fn new(period: Duration, now: Instant) -> Self {
        CookieCache {
            current: HashMap::new(),
            previous: HashMap::new(),
            period,
            rotated_at: now,
        }
    }

    fn rotate_if_due(&mut self, now: Instant) {
        if now.saturating_duration_since(self.rotated_at) >= self.period
            || self.current.len() >= MAX_ENTRIES
        {
            self.previous = std::mem::take(&mut self.current);
            self.rotated_at = now;
        }
    }

    /// The stored reply for `cookie`, if the request was already answered.
    pub fn get(&mut self, cookie: &[u8], now: Instant) -> Option<&[u8]> {
        self.rotate_if_due(now);
        self.current
            .get(cookie)
            .or_else(|| self.previous.get(cookie))
            .map(Vec::as_slice)
    }

    /// Remembers the reply sent for `cookie`.
    pub fn insert(&mut self, cookie: &[u8], reply: &[u8], now: Instant) {
        self.rotate_if_due(now);
        self.current.insert(cookie.to_vec(), reply.to_vec());
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_one_to_two_periods() {
        let t0 = Instant::now();
        let p = Duration::from_secs(30);
        let mut c = CookieCache::new(p, t0);
        c.insert(b"a", b"reply-a", t0);
        assert_eq!(
            c.get(b"a", t0 + Duration::from_secs(29)),
            Some(&b"reply-a"[..])
        );
        // First rotation moves it to the previous generation: still served.
        assert_eq!(
            c.get(b"a", t0 + Duration::from_secs(31)),
            Some(&b"reply-a"[..])
        );
        c.insert(b"b", b"reply-b", t0 + Duration::from_secs(40));
        // Second rotation drops it.
        assert_eq!(c.get(b"a", t0 + Duration::from_secs(62)), None);
        assert_eq!(
            c.get(b"b", t0 + Duration::from_secs(62)),
            Some(&b"reply-b"[..])
        );
        assert_eq!(c.get(b"zz", t0), None);
    }

    #[test]
    fn bounded_generation_rotates_early() {
        let t0 = Instant::now();
        let mut c = CookieCache::new(Duration::from_secs(30), t0);
        for i in 0..(MAX_ENTRIES * 2 + 10) {
            c.insert(i.to_string().as_bytes(), b"r", t0);
        }
        assert!(c.len() <= MAX_ENTRIES * 2);
    }
}
