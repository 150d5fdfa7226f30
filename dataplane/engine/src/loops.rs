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
//! The packet is judged as it is sent (after the rewrites and the encryption;
//! judging the plain packet before them would put the guard's call in the path
//! every packet takes, which cost 2–3 ns each). An SRTP loop repeats its bytes
//! (the index is the sequence number) and is also refused by the receiving
//! side's replay check on its second trip. An SRTCP loop is re-encrypted under
//! a fresh index every trip, so the guard cuts it on a plain relay-to-relay hop
//! if it has one. One encrypted on every hop is reasoned, not tested, to end
//! in the replay check of the flow where it entered: that flow's context has
//! seen the entering packet's index, and the relay's own indices for the same
//! SSRC reach it within the replay window (or start below it).
//!
//! The window is short (50 ms): a loop through the relay brings a packet back
//! within micro- to milliseconds, while the same bytes four times within 50 ms
//! from a real sender are redundant copies (a DTMF end packet is sent three
//! times; repeated RTCP feedback follows round trips). A loop whose trip takes
//! longer than a third of the window (about 16 ms: through far echoing peers)
//! is not cut here: its packets never spin the relay, but every packet the
//! sender adds keeps going round, so its traffic grows with the call's age.
//!
//! The repeats are kept per worker, not per flow: a loop runs through flows of
//! different calls (and workers), and every trip passes at least one relay-to-relay
//! send, whose worker sees the packet come back. The table is fixed-size and
//! allocated once, when the endpoints are set: no allocation on the packet path.

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use foldhash::fast::RandomState;

use crate::latch::Addr;

/// Bytes of a packet that identify it (its RTP or RTCP header and the start of
/// its payload): RTP's sequence number and timestamp make every packet of a
/// stream different within them.
pub const FINGERPRINT_BYTES: usize = 64;

/// The send that repeats a packet this many times in all is dropped (and every
/// later one within the window).
pub const LOOP_REPEATS: u32 = 4;

/// Repeats count only within this long of the first send (50 ms; see the module
/// docs).
pub const LOOP_WINDOW_NS: u64 = 50_000_000;

/// Sets of the repeat table, two entries each (16 KiB).
const SETS: usize = 512;

/// Times are kept in units of 2^20 ns (about 1.05 ms), 32 bits wrapping.
const UNIT_SHIFT: u32 = 20;
/// The window in those units, rounded up (48 units, 50.3 ms).
const WINDOW_UNITS: u32 = LOOP_WINDOW_NS.div_ceil(1 << UNIT_SHIFT) as u32;

/// The relay's own media endpoints: what a packet sent there reaches the relay
/// again. Empty (the default) turns the guard off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalEndpoints {
    ips: Box<[IpAddr]>,
    /// Some media socket is bound to a wildcard address, so every IPv4 loopback
    /// address (all of 127.0.0.0/8, not only 127.0.0.1) reaches it.
    loopback_v4: bool,
    port_min: u16,
    port_max: u16,
}

impl LocalEndpoints {
    /// The addresses the relay's media sockets are reached at (bound and
    /// announced) with the media port range `port_min..=port_max`.
    ///
    /// An unspecified address (`0.0.0.0`, `::`) names no destination itself: a
    /// relay bound to one is reached at every address of the host, which the
    /// caller lists, and at loopback, which is added here: all of 127.0.0.0/8, and
    /// `::1` for `::`. A `::` bind takes IPv4 too (Linux's dual-stack default).
    pub fn new(ips: impl IntoIterator<Item = IpAddr>, port_min: u16, port_max: u16) -> Self {
        let mut loopback_v4 = false;
        let mut list = Vec::new();
        for ip in ips {
            match ip {
                IpAddr::V4(a) if a.is_unspecified() => loopback_v4 = true,
                IpAddr::V6(a) if a.is_unspecified() => {
                    loopback_v4 = true;
                    list.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
                }
                // An IPv4-mapped address as the IPv4 one a dual-stack socket reaches.
                ip => list.push(ip.to_canonical()),
            }
        }
        list.sort_unstable();
        list.dedup();
        LocalEndpoints {
            ips: list.into_boxed_slice(),
            loopback_v4,
            port_min,
            port_max,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ips.is_empty() && !self.loopback_v4
    }

    /// Whether a packet sent to `a` would arrive at one of the relay's sockets.
    pub fn reaches_relay(&self, a: SocketAddr) -> bool {
        self.contains(Addr::from(a))
    }

    pub(crate) fn contains(&self, a: Addr) -> bool {
        if a.port() < self.port_min || a.port() > self.port_max {
            return false;
        }
        // Linux delivers what is sent to an unspecified address to the host
        // itself (to the sending socket's own address, or loopback). An
        // IPv4-mapped address is judged as the IPv4 one it reaches.
        let ip = a.ip().to_canonical();
        (ip.is_unspecified() && !self.is_empty())
            || self.ips.binary_search(&ip).is_ok()
            || (self.loopback_v4 && matches!(ip, IpAddr::V4(v4) if v4.is_loopback()))
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// 0 for an empty entry (no fingerprint is 0).
    fingerprint: u64,
    /// When this fingerprint was first sent within the current window (units).
    first: u32,
    /// 0 for an empty entry.
    sends: u32,
}

/// Recent sends to local endpoints, by fingerprint, in a two-way set-associative
/// table: a new fingerprint takes the set's entry whose window is over, else the
/// one seen fewer times, else the newer, so a looping packet's count survives
/// other traffic.
#[derive(Debug)]
pub(crate) struct LoopGuard {
    entries: Box<[[Entry; 2]]>,
    hasher: RandomState,
}

impl LoopGuard {
    pub(crate) fn new() -> Self {
        LoopGuard {
            entries: vec![[Entry::default(); 2]; SETS].into_boxed_slice(),
            // A per-process seed: nobody outside can aim packets at one set.
            hasher: RandomState::default(),
        }
    }

    /// Records a send of `pkt` to the local endpoint `dest` at `now_ns`; true when
    /// it is a loop's repeat and must be dropped.
    #[inline]
    pub(crate) fn repeats(&mut self, now_ns: u64, dest: Addr, pkt: &[u8]) -> bool {
        let head = &pkt[..pkt.len().min(FINGERPRINT_BYTES)];
        let fingerprint = self.hasher.hash_one((dest, pkt.len(), head)).max(1);
        let set = &mut self.entries[fingerprint as usize % SETS];
        let now = (now_ns >> UNIT_SHIFT) as u32;
        let live = |e: &Entry| e.sends > 0 && now.wrapping_sub(e.first) < WINDOW_UNITS;
        if let Some(e) = set
            .iter_mut()
            .find(|e| e.fingerprint == fingerprint && live(e))
        {
            e.sends = e.sends.saturating_add(1);
            return e.sends >= LOOP_REPEATS;
        }
        // Keep what was seen more often, then what was seen first: a looping
        // packet's entry outlives the distinct packets between its trips.
        let [a, b] = &*set;
        let victim = match (live(a), live(b)) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) if a.sends != b.sends => usize::from(b.sends < a.sends),
            (true, true) => usize::from(b.first.wrapping_sub(a.first) < 1 << 31),
        };
        set[victim] = Entry {
            fingerprint,
            first: now,
            sends: 1,
        };
        false
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

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
        assert!(
            l.contains(addr("0.0.0.0:30000")),
            "sent from 127.0.0.1, it arrives at 127.0.0.1"
        );
        assert!(!l.contains(addr("127.0.0.2:30000")), "another address");
        assert!(!l.contains(addr("[::1]:30000")));
        assert!(!LocalEndpoints::default().contains(addr("127.0.0.1:30000")));
    }

    #[test]
    fn a_wildcard_bind_is_reached_at_all_of_loopback() {
        let v4 = LocalEndpoints::new([IpAddr::V4(Ipv4Addr::UNSPECIFIED)], 1000, 2000);
        assert!(!v4.is_empty(), "the guard is on");
        for a in ["127.0.0.1:1500", "127.0.0.2:1000", "127.255.255.254:2000"] {
            assert!(v4.contains(addr(a)), "{a}");
        }
        assert!(v4.contains(addr("[::ffff:127.0.0.3]:1500")), "IPv4-mapped");
        assert!(!v4.contains(addr("127.0.0.2:2001")), "above the range");
        assert!(v4.contains(addr("0.0.0.0:1500")), "the host itself");
        assert!(
            v4.contains(addr("[::ffff:0.0.0.0]:1500")),
            "the host itself"
        );
        assert!(
            !v4.contains(addr("192.0.2.1:1500")),
            "only what the caller lists"
        );
        assert!(
            !v4.contains(addr("[::1]:1500")),
            "an IPv4 bind takes no IPv6"
        );

        let v6 = LocalEndpoints::new([IpAddr::V6(Ipv6Addr::UNSPECIFIED)], 1000, 2000);
        assert!(v6.contains(addr("[::1]:1500")));
        assert!(v6.contains(addr("127.0.0.9:1500")), "dual-stack: IPv4 too");
        assert!(!v6.contains(addr("[2001:db8::7]:1500")));
        assert!(v6.contains(addr("[::]:1500")), "the host itself");
        assert!(
            !LocalEndpoints::default().contains(addr("0.0.0.0:1500")),
            "no endpoints: the guard is off"
        );

        // A specific loopback bind is reached at its own address only.
        let one = LocalEndpoints::new([IpAddr::V4(Ipv4Addr::LOCALHOST)], 1000, 2000);
        assert!(!one.contains(addr("127.0.0.2:1500")));
        assert!(one.contains(addr("[::ffff:127.0.0.1]:1500")), "IPv4-mapped");
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
    fn repeats_spread_beyond_the_window_are_not_a_loop() {
        let mut g = LoopGuard::new();
        let to = addr("127.0.0.1:30000");
        // A reduced-size PLI sent again every 20 ms, and an RTCP receiver report
        // with nothing to report every 5 s: never four within 50 ms.
        let pli = [0x81u8, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 9];
        for i in 0..50u64 {
            assert!(!g.repeats(i * 20_000_000, to, &pli), "PLI {i}");
            assert!(!g.repeats(i * 5_000_000_000, to, &rr), "report {i}");
        }
        // A window starts afresh after it ends.
        let t = 10_000 * LOOP_WINDOW_NS;
        for i in 0..(LOOP_REPEATS - 1) {
            assert!(!g.repeats(t + u64::from(i), to, &rr));
        }
        assert!(g.repeats(t + 5, to, &rr));
        // (Times are kept in units of about a millisecond: well after it.)
        assert!(!g.repeats(t + 2 * LOOP_WINDOW_NS, to, &rr));
    }

    /// A loop's entry, once seen twice, outlives any number of other packets
    /// sent to the relay's own ports between its trips.
    #[test]
    fn a_looping_packet_keeps_its_count_through_other_traffic() {
        let mut g = LoopGuard::new();
        let to = addr("127.0.0.1:30000");
        let looping = [0x80u8, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        let mut n = 0u32;
        let mut others = |g: &mut LoopGuard, count: u32, now: u64| {
            for _ in 0..count {
                n += 1;
                let mut p = [0x80u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8];
                p[4..8].copy_from_slice(&n.to_be_bytes());
                assert!(!g.repeats(now, to, &p));
            }
        };
        // The table already full of live entries (about four per set); the
        // loop's second trip follows its first at once.
        others(&mut g, 2_000, 0);
        assert!(!g.repeats(1, to, &looping));
        assert!(!g.repeats(3, to, &looping), "second trip");
        // Seen twice: 4,000 more (about eight per set) do not push it out.
        others(&mut g, 4_000, 4);
        assert!(!g.repeats(5, to, &looping), "third trip");
        assert!(g.repeats(6, to, &looping), "the fourth trip is cut");
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
