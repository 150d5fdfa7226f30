//! Where calls come from. v0 has one source, a fixed list of relay port pairs;
//! an NG-driven source (offer/answer against a real relay) slots in behind the
//! same trait later.

use std::net::{IpAddr, SocketAddr};

/// The two relay addresses of one call: the A-side client sends to `a` and the
/// B-side client to `b`; the relay forwards `a` -> B client and `b` -> A client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallAddrs {
    pub a: SocketAddr,
    pub b: SocketAddr,
}

/// Supplies the calls a load run places.
pub trait CallSource {
    /// Sets up (if needed) and returns `n` calls.
    fn calls(&mut self, n: usize) -> anyhow::Result<Vec<CallAddrs>>;
}

/// Calls on a fixed relay port layout: call `i` is `base + 2i` <-> `base + 2i + 1`.
#[derive(Debug, Clone)]
pub struct FixedPairs {
    pub ip: IpAddr,
    pub base_port: u16,
}

impl FixedPairs {
    pub fn new(ip: IpAddr, base_port: u16) -> Self {
        FixedPairs { ip, base_port }
    }
}

impl CallSource for FixedPairs {
    fn calls(&mut self, n: usize) -> anyhow::Result<Vec<CallAddrs>> {
        let last = u32::from(self.base_port) + 2 * n as u32;
        anyhow::ensure!(
            last <= 65_536,
            "{n} calls from port {} run past 65535",
            self.base_port
        );
        Ok((0..n as u32)
            .map(|i| {
                let p = (u32::from(self.base_port) + 2 * i) as u16;
                CallAddrs {
                    a: SocketAddr::new(self.ip, p),
                    b: SocketAddr::new(self.ip, p + 1),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let mut s = FixedPairs::new([127, 0, 0, 1].into(), 30_000);
        let c = s.calls(3).unwrap();
        assert_eq!(c[2].a.port(), 30_004);
        assert_eq!(c[2].b.port(), 30_005);
        assert!(
            FixedPairs::new([127, 0, 0, 1].into(), 65_000)
                .calls(500)
                .is_err()
        );
    }
}
