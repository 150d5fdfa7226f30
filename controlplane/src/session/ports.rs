//! The media port pool of one interface: RTP on an even port, RTCP on the next odd
//! one (RFC 3550 §11), both bound here so the relay owns them before it announces
//! them. Ports another process holds (the default range overlaps the kernel's
//! ephemeral range) are skipped, not fatal.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};

/// An even/odd port pair reserved in the pool. Its sockets are bound at allocation
/// (so the relay owns the ports before announcing them) and handed to the worker
/// when the flows are installed; the pool keeps the ports reserved until release.
#[derive(Debug)]
pub struct PortPair {
    pub rtp: Option<UdpSocket>,
    pub rtcp: Option<UdpSocket>,
    /// The even (RTP) port; RTCP is `port + 1`.
    pub port: u16,
    pub ip: IpAddr,
}

impl PortPair {
    /// The socket of port `port + k` for a new flow: the one bound at allocation,
    /// or (after an earlier flow on it was removed) a fresh bind of the same port.
    pub fn take(&mut self, k: usize) -> std::io::Result<UdpSocket> {
        let slot = if k == 0 {
            &mut self.rtp
        } else {
            &mut self.rtcp
        };
        match slot.take() {
            Some(s) => Ok(s),
            None => bind(self.ip, self.port + k as u16),
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
    held: HashSet<u16>,
}

impl PortPool {
    pub fn new(addr: IpAddr, min: u16, max: u16) -> Self {
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
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Pairs handed out and not yet released.
    pub fn in_use(&self) -> usize {
        self.held.len()
    }

    /// Binds the next free pair, skipping ports in use here or by anyone else.
    pub fn alloc(&mut self) -> Result<PortPair, PoolError> {
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
                rtp: Some(rtp),
                rtcp: Some(rtcp),
                port,
                ip: self.addr,
            });
        }
        Err(PoolError::Exhausted(self.addr))
    }

    /// Returns a pair to the pool (closing any socket not handed out).
    pub fn release(&mut self, pair: PortPair) {
        self.held.remove(&pair.port);
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

    #[test]
    fn pairs_are_even_odd_and_exhaust() {
        // Odd min rounds up to the next even port.
        let mut p = PortPool::new(LO, 41_001, 41_009);
        let mut got = Vec::new();
        while let Ok(pair) = p.alloc() {
            assert_eq!(pair.port % 2, 0);
            let rtcp = pair.rtcp.as_ref().unwrap();
            assert_eq!(rtcp.local_addr().unwrap().port(), pair.port + 1);
            got.push(pair);
        }
        // 41002..41009 holds four pairs, minus any another process holds.
        assert!(got.len() <= 4 && !got.is_empty());
        assert_eq!(p.alloc().unwrap_err(), PoolError::Exhausted(LO));
        let first = got.remove(0);
        let port = first.port;
        p.release(first);
        assert_eq!(p.alloc().unwrap().port, port);
    }

    #[test]
    fn take_rebinds_after_hand_over() {
        let mut p = PortPool::new(LO, 41_501, 41_599);
        let mut pair = p.alloc().unwrap();
        let port = pair.port;
        let first = pair.take(0).unwrap();
        assert_eq!(first.local_addr().unwrap().port(), port);
        drop(first); // the worker closed it when its flow went away
        let again = pair.take(0).unwrap();
        assert_eq!(again.local_addr().unwrap().port(), port);
        assert_eq!(pair.take(1).unwrap().local_addr().unwrap().port(), port + 1);
    }

    #[test]
    fn busy_ports_are_skipped() {
        // Find four free ports in a row (other tests and processes share the host).
        let base = (41_100u16..41_900)
            .step_by(4)
            .find(|b| (0..4).all(|i| UdpSocket::bind((LO, b + i)).is_ok()))
            .expect("four free ports");
        // Someone else holds the first RTCP port: that pair is skipped.
        let blocker = UdpSocket::bind((LO, base + 1)).unwrap();
        let mut p = PortPool::new(LO, base, base + 3);
        let pair = p.alloc().unwrap();
        assert_eq!(pair.port, base + 2);
        assert!(p.alloc().is_err());
        drop(blocker);
    }
}
