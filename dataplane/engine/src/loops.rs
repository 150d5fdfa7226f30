//! The media loop guard.
//!
//! A relay that forwards to its own ports can chase a packet around for ever: an
//! SDP that names one of the relay's ports (by mistake, or a call routed through
//! the relay twice whose legs meet again) turns the relay into a pinball machine
//! that spends whole cores moving the same few packets. Sending to its own ports
//! is not wrong in itself: a call hairpinned through the relay twice does exactly
//! that, and every packet passes the relay's ports once. A loop is a packet that
//! *comes back*: the same bytes, sent to the same local port, again and again.
//!
//! So the guard only looks at packets whose destination is one of the relay's own
//! media endpoints ([`LocalEndpoints`]: its interface addresses and port range),
//! and drops one that repeats, byte for byte in its first [`FINGERPRINT_BYTES`],
//! [`LOOP_REPEATS`] - 1 earlier sends to the same destination within
//! [`LOOP_WINDOW_NS`]. A looping packet is thus forwarded a few times and then
//! dropped, which breaks the loop; a hairpinned packet passes once and never
//! repeats (its sequence number and timestamp differ from every other packet).
//! Packets to any other destination cost the guard one flag test.
//!
//! The repeats are kept per worker, not per flow: a loop runs through flows of
//! different calls (and workers), and every trip passes at least one relay-to-relay
//! send, whose worker sees the packet come back. The table is fixed-size and
//! allocated once, when the endpoints are set: no allocation on the packet path.

use std::hash::BuildHasher;
use std::net::IpAddr;

use foldhash::fast::RandomState;

use crate::latch::Addr;

/// Bytes of a packet that identify it (its RTP or RTCP header and the start of
/// its payload): RTP's sequence number and timestamp make every packet of a
/// stream different within them.
pub const FINGERPRINT_BYTES: usize = 64;

/// The send that repeats a packet this many times in all is dropped (and every
/// later one within the window).
pub const LOOP_REPEATS: u32 = 4;

/// Repeats count only within this long of the first send (1 s): a loop brings a
/// packet back within micro- or milliseconds, while a sender that legitimately
/// repeats itself (an RTCP receiver report with nothing new to report) does so
/// seconds apart.
pub const LOOP_WINDOW_NS: u64 = 1_000_000_000;

/// Entries of the repeat table (a power of two).
const ENTRIES: usize = 1024;

/// The relay's own media endpoints: what a packet sent there reaches the relay
/// again. Empty (the default) turns the guard off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalEndpoints {
    ips: Box<[IpAddr]>,
    /// A wildcard bind: every address of that family is local.
    any_v4: bool,
    any_v6: bool,
    port_min: u16,
    port_max: u16,
}

impl LocalEndpoints {
    /// The addresses the relay binds and announces (`0.0.0.0` or `::` for "every
    /// address of the family") with the media port range `port_min..=port_max`.
    pub fn new(ips: impl IntoIterator<Item = IpAddr>, port_min: u16, port_max: u16) -> Self {
        let mut list: Vec<IpAddr> = ips.into_iter().collect();
        list.sort_unstable();
        list.dedup();
        LocalEndpoints {
            any_v4: list.iter().any(|ip| ip.is_ipv4() && ip.is_unspecified()),
            any_v6: list.iter().any(|ip| ip.is_ipv6() && ip.is_unspecified()),
            ips: list.into_boxed_slice(),
            port_min,
            port_max,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ips.is_empty()
    }

    /// Whether a packet sent to `a` would arrive at one of the relay's sockets.
    pub(crate) fn contains(&self, a: Addr) -> bool {
        if a.port() < self.port_min || a.port() > self.port_max {
            return false;
        }
        let ip = a.ip();
        match ip {
            IpAddr::V4(_) if self.any_v4 => true,
            IpAddr::V6(_) if self.any_v6 => true,
            _ => self.ips.contains(&ip),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// 0 for an empty entry (no fingerprint is 0).
    fingerprint: u64,
    /// When this fingerprint was first sent within the current window.
    first_ns: u64,
    sends: u32,
}

/// Recent sends to local endpoints, by fingerprint, in a direct-mapped table: a
/// newer fingerprint takes over an entry.
#[derive(Debug)]
pub(crate) struct LoopGuard {
    entries: Box<[Entry]>,
    hasher: RandomState,
}

impl LoopGuard {
    pub(crate) fn new() -> Self {
        LoopGuard {
            entries: vec![Entry::default(); ENTRIES].into_boxed_slice(),
            // A per-process seed: nobody outside can aim packets at one entry.
            hasher: RandomState::default(),
        }
    }

    /// Records a send of `pkt` to the local endpoint `dest` at `now_ns`; true when
    /// it is a loop's repeat and must be dropped.
    #[inline]
    pub(crate) fn repeats(&mut self, now_ns: u64, dest: Addr, pkt: &[u8]) -> bool {
        let head = &pkt[..pkt.len().min(FINGERPRINT_BYTES)];
        let fingerprint = self.hasher.hash_one((dest, pkt.len(), head)).max(1);
        let e = &mut self.entries[fingerprint as usize % ENTRIES];
        if e.fingerprint == fingerprint && now_ns.saturating_sub(e.first_ns) < LOOP_WINDOW_NS {
            e.sends = e.sends.saturating_add(1);
            return e.sends >= LOOP_REPEATS;
        }
        *e = Entry {
            fingerprint,
            first_ns: now_ns,
            sends: 1,
        };
        false
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    use super::*;

    fn addr(s: &str) -> Addr {
        Addr::from(s.parse::<SocketAddr>().unwrap())
    }

    #[test]
    fn local_means_a_relay_address_and_a_port_of_its_range() {
        let l = LocalEndpoints::new(
            [
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
                IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
            ],
            30_000,
            30_099,
        );
        assert!(l.contains(addr("127.0.0.1:30000")));
        assert!(l.contains(addr("203.0.113.5:30099")), "advertised address");
        assert!(!l.contains(addr("127.0.0.1:29999")), "below the range");
        assert!(!l.contains(addr("127.0.0.1:30100")), "above the range");
        assert!(!l.contains(addr("127.0.0.2:30000")), "another address");
        assert!(!l.contains(addr("[::1]:30000")));
        assert!(!LocalEndpoints::default().contains(addr("127.0.0.1:30000")));
    }

    #[test]
    fn a_wildcard_bind_makes_its_whole_family_local() {
        let l = LocalEndpoints::new([IpAddr::V6(Ipv6Addr::UNSPECIFIED)], 1000, 2000);
        assert!(l.contains(addr("[2001:db8::7]:1500")));
        assert!(!l.contains(addr("192.0.2.1:1500")));
    }

    #[test]
    fn the_fourth_send_of_one_packet_within_the_window_is_a_loop() {
        let mut g = LoopGuard::new();
        let to = addr("127.0.0.1:30000");
        let pkt = [0x80u8, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        for i in 0..(LOOP_REPEATS - 1) {
            assert!(!g.repeats(u64::from(i), to, &pkt), "send {i} passes");
        }
        assert!(g.repeats(10, to, &pkt));
        assert!(g.repeats(11, to, &pkt), "and so is every later one");

        // Another destination or other bytes are other packets.
        assert!(!g.repeats(12, addr("127.0.0.1:30002"), &pkt));
        let mut next = pkt;
        next[3] = 2;
        assert!(!g.repeats(13, to, &next));
    }

    #[test]
    fn repeats_seconds_apart_are_not_a_loop() {
        let mut g = LoopGuard::new();
        let to = addr("127.0.0.1:30000");
        // An RTCP receiver report with nothing to report, every 5 s.
        let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 9];
        for i in 0..10u64 {
            assert!(!g.repeats(i * 5_000_000_000, to, &rr), "report {i}");
        }
        // A window starts afresh after it ends.
        let t = 100 * LOOP_WINDOW_NS;
        for i in 0..(LOOP_REPEATS - 1) {
            assert!(!g.repeats(t + u64::from(i), to, &rr));
        }
        assert!(g.repeats(t + 5, to, &rr));
        assert!(!g.repeats(t + LOOP_WINDOW_NS, to, &rr));
    }

    #[test]
    fn distinct_packets_to_one_endpoint_all_pass() {
        let mut g = LoopGuard::new();
        let to = addr("127.0.0.1:30000");
        for seq in 0..20_000u16 {
            let mut p = [0x80u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            assert!(!g.repeats(u64::from(seq), to, &p), "seq {seq}");
        }
    }
}
