//! Replies remembered by cookie so a retransmitted NG request (the proxy resends over
//! UDP when a reply is late or lost) is answered from memory instead of being
//! executed twice. Two generations: every `period` the older one is dropped, so an
//! entry lives between one and two periods with no per-entry timer.
//!
//! Both the entry count and the bytes held are bounded: a flood of distinct cookies,
//! or of requests with large replies (`list`, `statistics`, big SDPs), rotates the
//! current generation early, so the cache never holds more than two generations'
//! worth (`max_bytes` in all) whatever the request rate.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foldhash::fast::RandomState;

/// Bound on entries per generation so a flood of distinct cookies cannot grow
/// memory without limit; past it the current generation rotates early.
pub const MAX_ENTRIES: usize = 100_000;
/// Bound on the bytes both generations hold (keys, replies and per-entry overhead).
/// An offer's reply is about 0.5–2 KiB, so this keeps a minute of replies up to
/// several hundred offers per second before retransmission cover shrinks.
pub const MAX_BYTES: usize = 64 << 20;
/// What one entry costs beyond its key and reply: the entry header and the hash
/// table slot, rounded up.
const ENTRY_OVERHEAD: usize = 64;
/// Entries a generation's table keeps room for however quiet the relay is.
const MIN_TABLE: usize = 256;

/// A cookie and its reply in one shared buffer, found in the set by the cookie
/// alone. An NG reply starts with its cookie (`<cookie> <body>`), so the cache
/// keeps a reference to the very bytes that were sent: no copy per request.
#[derive(Debug)]
struct Entry {
    /// The cookie at the start, the reply from `reply_at` on.
    bytes: Bytes,
    cookie_len: usize,
    reply_at: usize,
}

impl Entry {
    fn cookie(&self) -> &[u8] {
        &self.bytes[..self.cookie_len]
    }

    fn reply(&self) -> Bytes {
        self.bytes.slice(self.reply_at..)
    }

    fn reply_len(&self) -> usize {
        self.bytes.len() - self.reply_at
    }
}

// Hash, Eq and Borrow all see the cookie only, so a set lookup by `&[u8]` works.
impl Borrow<[u8]> for Entry {
    fn borrow(&self) -> &[u8] {
        self.cookie()
    }
}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.cookie().hash(state);
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cookie() == other.cookie()
    }
}

impl Eq for Entry {}

/// The two-generation reply cache.
#[derive(Debug)]
pub struct CookieCache {
    current: HashSet<Entry, RandomState>,
    previous: HashSet<Entry, RandomState>,
    /// Bytes held by each generation (see `cost`).
    current_bytes: usize,
    previous_bytes: usize,
    max_bytes: usize,
    period: Duration,
    rotated_at: Instant,
    /// Entries dropped before their period was over (size or count bound), and
    /// replies too large to cache at all: retransmissions of those re-execute.
    pub evicted: u64,
}

fn cost(cookie: &[u8], reply: &[u8]) -> usize {
    cookie.len() + reply.len() + ENTRY_OVERHEAD
}

impl CookieCache {
    pub fn new(period: Duration, now: Instant) -> Self {
        Self::with_limit(period, MAX_BYTES, now)
    }

    /// A cache holding at most `max_bytes` over both generations.
    pub fn with_limit(period: Duration, max_bytes: usize, now: Instant) -> Self {
        CookieCache {
            current: HashSet::default(),
            previous: HashSet::default(),
            current_bytes: 0,
            previous_bytes: 0,
            max_bytes,
            period,
            rotated_at: now,
            evicted: 0,
        }
    }

    /// Drops the previous generation and starts a new current one.
    fn rotate(&mut self, now: Instant, early: bool) {
        if early {
            self.evicted += self.previous.len() as u64;
        }
        // The dropped generation's table, emptied, is the new current one: no
        // regrowth from nothing after every rotation at a steady rate.
        std::mem::swap(&mut self.previous, &mut self.current);
        self.current.clear();
        // But sized for the generation that just ended, not for the busiest one
        // ever: after a burst of set-ups the table would otherwise keep its
        // capacity (about 50 bytes an entry) for good. Shrunk only when it is
        // over four times that: a table sized for n holds up to about 2n (its
        // buckets double), so a rate that wavers does not reallocate it each time.
        let expect = self.previous.len().max(MIN_TABLE);
        if self.current.capacity() > 4 * expect {
            self.current.shrink_to(expect);
        }
        self.previous_bytes = std::mem::replace(&mut self.current_bytes, 0);
        self.rotated_at = now;
    }

    /// Rotates when a period has passed (or the current generation is full).
    /// Called on every lookup and insert, and by the relay's ticker, so replies
    /// are let go on time even when no request comes.
    pub fn rotate_if_due(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.rotated_at);
        if age >= self.period {
            self.rotate(now, false);
            // Two periods without a rotation: what was current is stale too, and
            // neither generation's size says anything about the rate now.
            if age >= 2 * self.period {
                self.previous.clear();
                self.previous_bytes = 0;
                self.previous.shrink_to(MIN_TABLE);
                self.current.shrink_to(MIN_TABLE);
            }
        } else if self.current.len() >= MAX_ENTRIES {
            self.rotate(now, true);
        }
    }

    /// The stored reply for `cookie`, if the request was already answered (the
    /// same buffer, not a copy).
    pub fn get(&mut self, cookie: &[u8], now: Instant) -> Option<Bytes> {
        self.rotate_if_due(now);
        self.current
            .get(cookie)
            .or_else(|| self.previous.get(cookie))
            .map(Entry::reply)
    }

    /// Remembers the reply sent for `cookie`. A reply larger than half the byte
    /// bound is not kept (it would evict everything else for one retransmission).
    /// A reply that starts with its cookie, as NG replies do, is kept by
    /// reference.
    pub fn insert(&mut self, cookie: &[u8], reply: Bytes, now: Instant) {
        self.rotate_if_due(now);
        let c = cost(cookie, &reply);
        let half = self.max_bytes / 2;
        if c > half {
            self.evicted += 1;
            return;
        }
        if self.current_bytes + c > half {
            self.rotate(now, true);
        }
        let entry = if reply.starts_with(cookie) {
            Entry {
                bytes: reply,
                cookie_len: cookie.len(),
                reply_at: 0,
            }
        } else {
            Entry {
                bytes: [cookie, &reply[..]].concat().into(),
                cookie_len: cookie.len(),
                reply_at: cookie.len(),
            }
        };
        if let Some(old) = self.current.replace(entry) {
            self.current_bytes -= cookie.len() + old.reply_len() + ENTRY_OVERHEAD;
        }
        self.current_bytes += c;
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held over both generations, as counted against the bound.
    pub fn bytes(&self) -> usize {
        self.current_bytes + self.previous_bytes
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
        c.insert(b"a", Bytes::from_static(b"reply-a"), t0);
        assert_eq!(
            c.get(b"a", t0 + Duration::from_secs(29)).as_deref(),
            Some(&b"reply-a"[..])
        );
        // First rotation moves it to the previous generation: still served.
        assert_eq!(
            c.get(b"a", t0 + Duration::from_secs(31)).as_deref(),
            Some(&b"reply-a"[..])
        );
        c.insert(
            b"b",
            Bytes::from_static(b"reply-b"),
            t0 + Duration::from_secs(40),
        );
        // Second rotation drops it.
        assert_eq!(c.get(b"a", t0 + Duration::from_secs(62)).as_deref(), None);
        assert_eq!(
            c.get(b"b", t0 + Duration::from_secs(62)).as_deref(),
            Some(&b"reply-b"[..])
        );
        assert_eq!(c.get(b"zz", t0).as_deref(), None);
        assert_eq!(c.evicted, 0);
    }

    #[test]
    fn idle_for_two_periods_forgets_everything() {
        let t0 = Instant::now();
        let mut c = CookieCache::new(Duration::from_secs(30), t0);
        c.insert(b"a", Bytes::from_static(b"reply-a"), t0);
        assert_eq!(c.get(b"a", t0 + Duration::from_secs(61)).as_deref(), None);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn a_burst_does_not_keep_its_table_once_the_rate_falls() {
        let t0 = Instant::now();
        let p = Duration::from_secs(30);
        let at = |s| t0 + Duration::from_secs(s);
        let mut c = CookieCache::new(p, t0);
        // A steady rate keeps its tables: the one a rotation hands back, emptied,
        // still has room for a period's entries, so filling it reallocates nothing.
        for period in 0..4 {
            c.rotate_if_due(at(31 * period));
            if period >= 2 {
                assert!(c.current.is_empty());
                assert!(c.current.capacity() >= 2_000, "period {period}");
            }
            for i in 0..2_000 {
                c.insert(
                    format!("s{period}-{i}").as_bytes(),
                    Bytes::from_static(b"r"),
                    at(31 * period),
                );
            }
        }
        // A burst grows the current table far beyond that...
        for i in 0..20_000 {
            c.insert(
                format!("b{i}").as_bytes(),
                Bytes::from_static(b"r"),
                at(124),
            );
        }
        assert!(c.current.capacity() >= 20_000);
        // ...and it is served for one more period while the rate is low...
        c.insert(b"quiet", Bytes::from_static(b"r"), at(155));
        assert_eq!(c.get(b"b7", at(155)).as_deref(), Some(&b"r"[..]));
        // ...then let go: the next rotation empties it and sizes it for the
        // quiet period that just ended.
        c.rotate_if_due(at(186));
        assert_eq!(c.get(b"b7", at(186)), None);
        assert_eq!(c.get(b"quiet", at(186)).as_deref(), Some(&b"r"[..]));
        let held = |c: &CookieCache| c.current.capacity() + c.previous.capacity();
        assert!(held(&c) < 8_000, "{} entries of room still held", held(&c));
        // One more quiet period and the steady rate's table is sized down too.
        c.rotate_if_due(at(217));
        assert!(held(&c) < 4 * MIN_TABLE, "{} entries of room", held(&c));
        // Two periods with no rotation at all: both generations are dropped.
        c.insert(b"late", Bytes::from_static(b"r"), at(230));
        c.rotate_if_due(at(300));
        assert!(c.is_empty());
        assert!(held(&c) < 4 * MIN_TABLE, "{} entries of room", held(&c));
    }

    #[test]
    fn bounded_generation_rotates_early() {
        let t0 = Instant::now();
        let mut c = CookieCache::new(Duration::from_secs(30), t0);
        for i in 0..(MAX_ENTRIES * 2 + 10) {
            c.insert(i.to_string().as_bytes(), Bytes::from_static(b"r"), t0);
        }
        assert!(c.len() <= MAX_ENTRIES * 2);
        assert!(c.evicted >= MAX_ENTRIES as u64);
    }

    #[test]
    fn bytes_stay_under_the_bound_with_large_replies() {
        let t0 = Instant::now();
        let limit = 1 << 20;
        let mut c = CookieCache::with_limit(Duration::from_secs(30), limit, t0);
        let reply = vec![b'x'; 30_000];
        for i in 0..1_000 {
            c.insert(format!("k{i}").as_bytes(), Bytes::from(reply.clone()), t0);
            assert!(c.bytes() <= limit, "{} bytes held after {i}", c.bytes());
        }
        // The newest replies are still served, the oldest were evicted and counted.
        assert_eq!(c.get(b"k999", t0).as_deref(), Some(&reply[..]));
        assert_eq!(c.get(b"k0", t0).as_deref(), None);
        assert!(c.evicted > 900);
        // Both generations together hold about the bound, not 1,000 replies.
        assert!(c.len() * reply.len() <= limit);
        // One reply larger than half the bound is not kept at all.
        let before = c.evicted;
        c.insert(b"huge", Bytes::from(vec![b'y'; limit / 2 + 1]), t0);
        assert_eq!(c.get(b"huge", t0).as_deref(), None);
        assert_eq!(c.evicted, before + 1);
        assert!(c.bytes() <= limit);
    }

    #[test]
    fn replacing_an_entry_does_not_leak_its_bytes() {
        let t0 = Instant::now();
        let mut c = CookieCache::new(Duration::from_secs(30), t0);
        c.insert(b"a", Bytes::from(vec![0; 100]), t0);
        c.insert(b"a", Bytes::from(vec![1; 10]), t0);
        assert_eq!(c.bytes(), 1 + 10 + ENTRY_OVERHEAD);
        assert_eq!(c.get(b"a", t0).as_deref(), Some(&[1; 10][..]));
        // A cookie that is a prefix of another is its own entry.
        c.insert(b"ab", Bytes::from_static(b"x"), t0);
        assert_eq!(c.get(b"a", t0).as_deref(), Some(&[1; 10][..]));
        assert_eq!(c.get(b"ab", t0).as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn an_ng_reply_is_kept_by_reference() {
        let t0 = Instant::now();
        let mut c = CookieCache::new(Duration::from_secs(30), t0);
        let sent = Bytes::from(b"c1 d6:result4:ponge".to_vec());
        c.insert(b"c1", sent.clone(), t0);
        let again = c.get(b"c1", t0).unwrap();
        assert_eq!(again, sent);
        assert_eq!(again.as_ptr(), sent.as_ptr(), "the sent bytes, not a copy");
        assert_eq!(c.get(b"c", t0), None);
        assert_eq!(c.bytes(), 2 + sent.len() + ENTRY_OVERHEAD);
    }
}
