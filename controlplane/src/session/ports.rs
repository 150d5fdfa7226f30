//! The media port pool of one interface: RTP on an even port, RTCP on the next odd
//! one (RFC 3550 §11), both bound here so the relay owns them before it announces
//! them. Ports another process holds (the default range overlaps the kernel's
//! ephemeral range) are skipped, not fatal.
//!
//! A released pair whose sockets its worker kept (parked flows) waits in that
//! worker's list and goes to the next call placed there: a call then costs no
//! `socket`, `bind`, `setsockopt` or `close`, which were a fifth of the control
//! plane's work per call. Parking stops while the range is three quarters used,
//! and parked pairs are closed again when free ones run short, so one worker's
//! parked ports never starve another worker's calls. A parked pair rests
//! [`PARK_REST`] after its call ended before another call takes it: what was still
//! on its way to the old call (an echoing peer, a phone sending after BYE) is
//! drained by the parked flows instead of being latched by the new call. The
//! pairs of a call that no datagram ever reached (the worker's final counts of
//! every flow of the call say so: nobody was sending to it, and the relay sent
//! nothing from it that a peer could answer or echo) need no rest.

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The socket a new flow on a pair starts with: bound here, or a parked flow's.
pub use ferrelay_dataplane::FlowSocket;
use ferrelay_engine::FlowId;

/// Parked pairs one worker may keep: each holds two descriptors.
const PARK_PER_WORKER: usize = 1024;

/// How many of a worker's most recently parked pairs [`PortPool::quiet`] looks
/// through: the worker's final counts follow the park by a ring round trip, so
/// the pair is among the last ones parked; an older one simply rests.
const QUIET_LOOKBACK: usize = 64;

/// How long a pair rests after its call ended before its parked sockets go to
/// another call. Without it, with `--delete-delay 0`, a port could be handed to
/// a new call while an echoing peer of the old one still sent to it: the new
/// call latched onto that peer, and the two relayed the peer's echoes to each
/// other without end (seen with SIPp's `-rtp_echo`). The default delete-delay
/// (30 s) already rests ports longer.
pub const PARK_REST: Duration = Duration::from_secs(1);

/// Where the socket of one port of a pair is.
#[derive(Debug, Default)]
pub enum PortSocket {
    /// Bound here, not yet handed to a worker.
    Bound(UdpSocket),
    /// Kept by the call's worker under this parked flow, ready for a new flow.
    Parked(FlowId),
    /// With a live flow, or closed: a new flow binds the port again.
    #[default]
    Gone,
}

/// An even/odd port pair reserved in the pool. Its sockets are bound at allocation
/// (so the relay owns the ports before it announces them) and handed to the worker
/// when the flows are installed; the pool keeps the ports reserved until release.
#[derive(Debug)]
pub struct PortPair {
    pub rtp: PortSocket,
    pub rtcp: PortSocket,
    /// The even (RTP) port; RTCP is `port + 1`. The address is the pool's (the
    /// side's interface's), not repeated here.
    pub port: u16,
}

impl PortPair {
    fn slot(&mut self, k: usize) -> &mut PortSocket {
        if k == 0 {
            &mut self.rtp
        } else {
            &mut self.rtcp
        }
    }

    /// The socket of port `port + k` for a new flow: the one bound at allocation or
    /// parked by an earlier flow on it, or else a fresh bind of the same port on
    /// `ip`, the pair's interface's address.
    pub fn take(&mut self, k: usize, ip: IpAddr) -> std::io::Result<FlowSocket> {
        match std::mem::take(self.slot(k)) {
            PortSocket::Bound(s) => Ok(FlowSocket::New(s)),
            PortSocket::Parked(id) => Ok(FlowSocket::Parked(id)),
            PortSocket::Gone => bind(ip, self.port + k as u16).map(FlowSocket::New),
        }
    }

    /// Puts back what `take` handed out when the flow could not be started: a
    /// parked flow stays parked (a new socket is dropped, closing it).
    pub fn untake(&mut self, k: usize, s: FlowSocket) {
        if let FlowSocket::Parked(id) = s {
            *self.slot(k) = PortSocket::Parked(id);
        }
    }

    /// Records that the flow on port `port + k` was parked under `id`.
    pub fn park(&mut self, k: usize, id: FlowId) {
        *self.slot(k) = PortSocket::Parked(id);
    }

    /// The parked flows of this pair (to close them).
    pub fn parked(&self) -> impl Iterator<Item = FlowId> + '_ {
        [&self.rtp, &self.rtcp].into_iter().filter_map(|s| match s {
            PortSocket::Parked(id) => Some(*id),
            _ => None,
        })
    }

    /// True when both ports' sockets are parked, so the pair needs no syscall.
    fn reusable(&self) -> bool {
        matches!(
            (&self.rtp, &self.rtcp),
            (PortSocket::Parked(_), PortSocket::Parked(_))
        )
    }
}

/// A parked pair still resting, and when its call ended.
#[derive(Debug)]
struct Resting {
    ended: Instant,
    pair: PortPair,
}

/// One worker's parked pairs, oldest first in each list.
#[derive(Debug, Default)]
struct Parked {
    /// Pairs of calls that had no traffic at all: reusable at once.
    quiet: VecDeque<PortPair>,
    /// Pairs that did, or not yet known: reusable [`PARK_REST`] after `ended`.
    resting: VecDeque<Resting>,
}

impl Parked {
    fn len(&self) -> usize {
        self.quiet.len() + self.resting.len()
    }

    /// The next pair for a call at `now` that needs no rest.
    fn ready(&mut self, now: Instant) -> Option<PortPair> {
        if let Some(pair) = self.quiet.pop_front() {
            return Some(pair);
        }
        let rested = self
            .resting
            .front()
            .is_some_and(|r| now.saturating_duration_since(r.ended) >= PARK_REST);
        rested
            .then(|| self.resting.pop_front())
            .flatten()
            .map(|r| r.pair)
    }

    /// The oldest pair, rested or not (resting ones have waited longest).
    fn oldest(&mut self) -> Option<PortPair> {
        match self.resting.pop_front() {
            Some(r) => Some(r.pair),
            None => self.quiet.pop_front(),
        }
    }
}

/// Why no pair could be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("no free media port pair on {0}")]
    Exhausted(IpAddr),
}

/// Even/odd pairs on one local address within `[min, max]`.
#[derive(Debug)]
pub struct PortPool {
    addr: IpAddr,
    /// First even port of the range.
    first: u16,
    /// Number of pairs in the range.
    pairs: u32,
    /// Where the next search starts, so freed ports rest before reuse.
    cursor: u32,
    /// Pairs handed out, draining, or parked.
    held: HashSet<u16>,
    /// Released pairs whose sockets each worker kept.
    parked: Vec<Parked>,
    parked_total: usize,
    /// Parked pairs taken back to be closed: their flows must be removed in their
    /// worker (`take_evicted`).
    evicted: Vec<(usize, PortPair)>,
}

impl PortPool {
    /// A pool for `workers` workers (parked pairs are per worker).
    pub fn new(addr: IpAddr, min: u16, max: u16, workers: usize) -> Self {
        let first = min.saturating_add(min % 2);
        let pairs = if max > first {
            (u32::from(max) - u32::from(first)).div_ceil(2)
        } else {
            0
        };
        PortPool {
            addr,
            first,
            pairs,
            cursor: 0,
            held: HashSet::new(),
            parked: (0..workers.max(1)).map(|_| Parked::default()).collect(),
            parked_total: 0,
            evicted: Vec::new(),
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Pairs handed out and not yet released (parked ones are not in use).
    pub fn in_use(&self) -> usize {
        self.held.len() - self.parked_total
    }

    /// Released pairs whose sockets their workers kept for reuse.
    pub fn parked(&self) -> usize {
        self.parked_total
    }

    /// Pairs that may be held before parking stops: a quarter stays free.
    fn park_limit(&self) -> usize {
        (self.pairs as usize).saturating_sub(self.pairs as usize / 4)
    }

    /// A pair for a call on `worker` at `now`: one parked there that is quiet or
    /// has rested (no syscall), else the next free pair, skipping ports in use
    /// here or by anyone else. When free pairs run short (or none binds), one
    /// parked there that has not rested yet is better than refusing the call.
    pub fn alloc(&mut self, worker: usize, now: Instant) -> Result<PortPair, PoolError> {
        if let Some(pair) = self.parked.get_mut(worker).and_then(|q| q.ready(now)) {
            self.parked_total -= 1;
            return Ok(pair);
        }
        // Free pairs running short: this worker's own parked pair, rested or not,
        // rather than a fresh one; else close a parked one elsewhere for the next
        // call.
        if self.held.len() >= self.park_limit() {
            if let Some(pair) = self.take_parked(worker) {
                return Ok(pair);
            }
            self.evict(1);
        }
        for _ in 0..self.pairs {
            let port = (u32::from(self.first) + 2 * self.cursor) as u16;
            self.cursor = (self.cursor + 1) % self.pairs;
            if self.held.contains(&port) {
                continue;
            }
            let Ok(rtp) = bind(self.addr, port) else {
                continue;
            };
            let Ok(rtcp) = bind(self.addr, port + 1) else {
                continue;
            };
            self.held.insert(port);
            return Ok(PortPair {
                rtp: PortSocket::Bound(rtp),
                rtcp: PortSocket::Bound(rtcp),
                port,
            });
        }
        // No free pair: one of this worker's parked pairs that has not rested yet
        // is better than refusing the call.
        if let Some(pair) = self.take_parked(worker) {
            return Ok(pair);
        }
        // Every pair is live or parked elsewhere: close the parked ones, so that
        // the ports are free again once their workers have let go of them.
        self.evict(self.parked_total);
        Err(PoolError::Exhausted(self.addr))
    }

    /// This worker's oldest parked pair, whether it has rested or not.
    fn take_parked(&mut self, worker: usize) -> Option<PortPair> {
        let pair = self.parked.get_mut(worker)?.oldest()?;
        self.parked_total -= 1;
        Some(pair)
    }

    /// The worker's final counts say no datagram reached any port of the call
    /// that held the pair on `port`, parked on `worker`: nobody is sending to it,
    /// so it needs no rest. Looks only through the last [`QUIET_LOOKBACK`] pairs
    /// parked there; returns whether it found the pair.
    pub fn quiet(&mut self, worker: usize, port: u16) -> bool {
        let Some(q) = self.parked.get_mut(worker) else {
            return false;
        };
        let len = q.resting.len();
        let from = len.saturating_sub(QUIET_LOOKBACK);
        let Some(i) = (from..len).rev().find(|&i| q.resting[i].pair.port == port) else {
            return false;
        };
        if let Some(r) = q.resting.remove(i) {
            q.quiet.push_back(r.pair);
        }
        true
    }

    /// Takes up to `n` parked pairs, oldest first from the longest lists, to close.
    fn evict(&mut self, n: usize) {
        for _ in 0..n {
            let Some((w, _)) = self
                .parked
                .iter()
                .enumerate()
                .max_by_key(|(_, q)| q.len())
                .filter(|(_, q)| q.len() > 0)
            else {
                return;
            };
            if let Some(pair) = self.parked[w].oldest() {
                self.parked_total -= 1;
                self.held.remove(&pair.port);
                self.evicted.push((w, pair));
            }
        }
    }

    /// Parked pairs to close: remove each parked flow in its worker (which closes
    /// the socket) and drop the pair.
    pub fn take_evicted(&mut self) -> Vec<(usize, PortPair)> {
        std::mem::take(&mut self.evicted)
    }

    /// Returns a pair released by a call on `worker` that ended at `ended`. When
    /// both its sockets are parked there and the range has room, it waits for a
    /// later call of that worker; otherwise its ports are freed and the pair is
    /// handed back so that its parked flows, if any, are removed (closing their
    /// sockets).
    pub fn release(&mut self, pair: PortPair, worker: usize, ended: Instant) -> Option<PortPair> {
        if pair.reusable()
            && self.held.len() <= self.park_limit()
            && let Some(q) = self.parked.get_mut(worker)
            && q.len() < PARK_PER_WORKER
        {
            q.resting.push_back(Resting { ended, pair });
            self.parked_total += 1;
            return None;
        }
        self.held.remove(&pair.port);
        let any = pair.parked().next().is_some();
        any.then_some(pair)
    }
}

fn bind(addr: IpAddr, port: u16) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind(SocketAddr::new(addr, port))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// One instant for a whole test; `rested()` is [`PARK_REST`] after it.
    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    fn rested() -> Instant {
        t0() + PARK_REST
    }

    fn sock(s: FlowSocket) -> UdpSocket {
        match s {
            FlowSocket::New(s) => s,
            FlowSocket::Parked(id) => panic!("parked {id:?}, not bound"),
        }
    }

    /// `n` free ports in a row, even first (other tests and processes share the host).
    fn free_run(n: u16, from: u16) -> u16 {
        (from..from + 300)
            .step_by(usize::from(n.next_multiple_of(2)))
            .find(|b| (0..n).all(|i| UdpSocket::bind((LO, b + i)).is_ok()))
            .expect("free ports")
    }

    #[test]
    fn pairs_are_even_odd_and_exhaust() {
        // Odd min rounds up to the next even port.
        let mut p = PortPool::new(LO, 41_001, 41_009, 1);
        let mut got = Vec::new();
        while let Ok(mut pair) = p.alloc(0, t0()) {
            assert_eq!(pair.port % 2, 0);
            let rtcp = sock(pair.take(1, LO).unwrap());
            assert_eq!(rtcp.local_addr().unwrap().port(), pair.port + 1);
            got.push(pair);
        }
        // 41002..41009 holds four pairs, minus any another process holds.
        assert!(got.len() <= 4 && !got.is_empty());
        assert_eq!(p.alloc(0, t0()).unwrap_err(), PoolError::Exhausted(LO));
        let first = got.remove(0);
        let port = first.port;
        assert!(
            p.release(first, 0, t0()).is_none(),
            "nothing parked to close"
        );
        assert_eq!(p.alloc(0, t0()).unwrap().port, port);
    }

    #[test]
    fn take_rebinds_after_hand_over() {
        let mut p = PortPool::new(LO, 41_501, 41_599, 1);
        let mut pair = p.alloc(0, t0()).unwrap();
        let port = pair.port;
        let first = sock(pair.take(0, LO).unwrap());
        assert_eq!(first.local_addr().unwrap().port(), port);
        drop(first); // the worker closed it when its flow went away
        let again = sock(pair.take(0, LO).unwrap());
        assert_eq!(again.local_addr().unwrap().port(), port);
        let rtcp = sock(pair.take(1, LO).unwrap());
        assert_eq!(rtcp.local_addr().unwrap().port(), port + 1);
    }

    #[test]
    fn busy_ports_are_skipped() {
        let base = free_run(4, 41_100);
        // Someone else holds the first RTCP port: that pair is skipped.
        let blocker = UdpSocket::bind((LO, base + 1)).unwrap();
        let mut p = PortPool::new(LO, base, base + 3, 1);
        let pair = p.alloc(0, t0()).unwrap();
        assert_eq!(pair.port, base + 2);
        assert!(p.alloc(0, t0()).is_err());
        drop(blocker);
    }

    /// A pair whose flows were parked, as the sessions leave it at call end, and
    /// its sockets, which the worker holds until it removes the parked flows.
    fn parked_pair(p: &mut PortPool, w: usize, ids: (u32, u32)) -> (PortPair, [FlowSocket; 2]) {
        let mut pair = p.alloc(w, t0()).unwrap();
        let socks = [pair.take(0, LO).unwrap(), pair.take(1, LO).unwrap()];
        pair.park(0, FlowId::new(ids.0, 0));
        pair.park(1, FlowId::new(ids.1, 0));
        (pair, socks)
    }

    #[test]
    fn parked_pairs_go_to_their_workers_next_call() {
        let base = free_run(16, 40_000);
        let mut p = PortPool::new(LO, base, base + 15, 2);
        let (pair, _held_by_worker) = parked_pair(&mut p, 0, (1, 2));
        let port = pair.port;
        assert!(
            p.release(pair, 0, t0()).is_none(),
            "parked, nothing to close"
        );
        assert_eq!((p.in_use(), p.parked()), (0, 1));
        // Another worker's call cannot use worker 0's sockets.
        let other = p.alloc(1, t0()).unwrap();
        assert_ne!(other.port, port);
        // Not before it has rested: that call gets a fresh pair.
        let fresh = p.alloc(0, t0() + PARK_REST / 2).unwrap();
        assert_ne!(fresh.port, port);
        assert_eq!(p.parked(), 1);
        let mut again = p.alloc(0, rested()).unwrap();
        assert_eq!(again.port, port);
        assert_eq!(p.parked(), 0);
        assert!(matches!(again.take(0, LO).unwrap(), FlowSocket::Parked(id) if id.index == 1));
        assert!(matches!(again.take(1, LO).unwrap(), FlowSocket::Parked(id) if id.index == 2));
        assert!(p.take_evicted().is_empty());
    }

    #[test]
    fn a_pair_no_datagram_reached_needs_no_rest() {
        let base = free_run(16, 40_800);
        let mut p = PortPool::new(LO, base, base + 15, 2);
        let (loud, _held_loud) = parked_pair(&mut p, 0, (1, 2));
        let (silent, _held_silent) = parked_pair(&mut p, 0, (3, 4));
        let (loud_port, silent_port) = (loud.port, silent.port);
        assert!(p.release(loud, 0, t0()).is_none());
        assert!(p.release(silent, 0, t0()).is_none());
        // Until it is known quiet, a pair rests.
        let fresh = p.alloc(0, t0()).unwrap();
        assert!(![loud_port, silent_port].contains(&fresh.port));
        assert!(p.quiet(0, silent_port));
        // Pairs the pool does not hold parked there are not found.
        assert!(!p.quiet(0, fresh.port), "not parked");
        assert!(!p.quiet(1, loud_port), "another worker");
        assert!(!p.quiet(7, loud_port), "no such worker");
        // Quiet: the next call takes the pair at once, though the older pair's
        // call ended at the same time; that one still rests.
        assert_eq!(p.alloc(0, t0()).unwrap().port, silent_port);
        assert_eq!(p.parked(), 1);
        assert_ne!(p.alloc(0, t0()).unwrap().port, loud_port);
        assert_eq!(p.alloc(0, rested()).unwrap().port, loud_port);
        assert_eq!(p.parked(), 0);
    }

    #[test]
    fn quiet_looks_back_only_so_far() {
        let n = QUIET_LOOKBACK as u32 + 1;
        // Twice the pairs needed, so that parking goes on (a quarter stays free).
        let ports = 4 * n as u16;
        let base = free_run(ports, 44_000);
        let mut p = PortPool::new(LO, base, base + ports - 1, 1);
        let mut held = Vec::new();
        let pairs: Vec<_> = (0..n)
            .map(|i| parked_pair(&mut p, 0, (2 * i, 2 * i + 1)))
            .collect();
        let mut ports = Vec::new();
        for (pair, socks) in pairs {
            held.push(socks);
            ports.push(pair.port);
            assert!(p.release(pair, 0, t0()).is_none());
        }
        // The first pair parked has QUIET_LOOKBACK pairs after it: not looked at.
        let (first, second) = (ports[0], ports[1]);
        assert!(!p.quiet(0, first));
        assert!(p.quiet(0, second), "the second one is");
    }

    #[test]
    fn with_no_free_pair_an_unrested_parked_one_is_used() {
        let base = free_run(2, 40_200);
        // One pair in the range: parked, it is all there is.
        let mut p = PortPool::new(LO, base, base + 1, 1);
        let (pair, _held_by_worker) = parked_pair(&mut p, 0, (1, 2));
        let port = pair.port;
        assert!(p.release(pair, 0, t0()).is_none());
        let again = p
            .alloc(0, t0())
            .expect("the parked pair rather than no pair");
        assert_eq!((again.port, p.parked()), (port, 0));
    }

    #[test]
    fn parking_leaves_a_quarter_free() {
        let base = free_run(16, 40_300);
        // Eight pairs: parking stops once six are held.
        let mut p = PortPool::new(LO, base, base + 15, 2);
        let pairs: Vec<_> = (0..7)
            .map(|i| parked_pair(&mut p, 0, (2 * i, 2 * i + 1)))
            .collect();
        let mut worker = std::collections::HashMap::new();
        let mut closed = Vec::new();
        for (pair, socks) in pairs {
            worker.insert(pair.port, socks);
            if let Some(back) = p.release(pair, 0, t0()) {
                closed.push(back.port);
                worker.remove(&back.port); // the worker removes its parked flows
            }
        }
        // Seven held when the first came back: over the limit, closed at once.
        assert_eq!((closed.len(), p.parked(), p.in_use()), (1, 6, 0));
        // Worker 1's calls take the free pairs; each one that finds six pairs held
        // closes a parked pair (oldest first) for the call after it.
        let mut live = Vec::new();
        for n in 1..=8 {
            live.push(p.alloc(1, t0()).expect("a pair for worker 1"));
            for (w, pair) in p.take_evicted() {
                assert_eq!(w, 0);
                assert!(pair.parked().count() == 2);
                worker.remove(&pair.port);
            }
            assert_eq!(p.parked(), 6usize.saturating_sub(n), "after {n} calls");
        }
        assert_eq!(p.alloc(1, t0()).unwrap_err(), PoolError::Exhausted(LO));
    }

    #[test]
    fn exhaustion_closes_parked_pairs_of_other_workers() {
        let base = free_run(16, 40_600);
        let mut p = PortPool::new(LO, base, base + 15, 2);
        // Six parked pairs on worker 0, whose sockets it holds until told to close.
        let mut worker = std::collections::HashMap::new();
        let pairs: Vec<_> = (0..6)
            .map(|i| parked_pair(&mut p, 0, (2 * i, 2 * i + 1)))
            .collect();
        for (pair, socks) in pairs {
            worker.insert(pair.port, socks);
            assert!(p.release(pair, 0, t0()).is_none());
        }
        assert_eq!(p.parked(), 6);
        // Worker 1's calls take the two free pairs, each taking a parked pair back.
        let live: Vec<_> = (0..2).map(|_| p.alloc(1, t0()).unwrap()).collect();
        assert_eq!(p.parked(), 4);
        // The third finds nothing that binds while worker 0 has not closed them
        // yet: it fails and every parked pair is taken back to be closed ...
        assert_eq!(p.alloc(1, t0()).unwrap_err(), PoolError::Exhausted(LO));
        let evicted = p.take_evicted();
        assert_eq!((evicted.len(), p.parked()), (6, 0));
        for (w, pair) in evicted {
            assert_eq!(w, 0);
            worker.remove(&pair.port);
        }
        // ... and once worker 0 has closed them, the next call gets one.
        assert!(p.alloc(1, t0()).is_ok());
        drop(live);
    }
}
