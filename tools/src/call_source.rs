//! Where calls come from: a fixed list of relay port pairs ([`FixedPairs`], for
//! forwarders without a control protocol), or offer/answer over NG
//! ([`crate::ng_calls::NgCalls`]), which also binds the client sockets it
//! announces and carries each leg's SRTP keys.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use ferrelay_srtp::{MasterKey, SrtpContext, SrtpParams, Suite};

/// The two relay addresses of one call: the A-side client sends to `a` and the
/// B-side client to `b`; the relay forwards `a` -> B client and `b` -> A client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallAddrs {
    pub a: SocketAddr,
    pub b: SocketAddr,
}

/// SDES keys of one SRTP leg as its client sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegKeys {
    pub suite: Suite,
    /// Key||salt the client protects with (its own, offered or answered by it).
    pub send: Vec<u8>,
    /// Key||salt the relay protects toward this client with (read from the relay's SDP).
    pub recv: Vec<u8>,
}

/// Replay window of the generator's receive contexts: the largest the SRTP crate
/// allows, so reordering a relay introduces is measured instead of refused.
const REPLAY_WINDOW: u16 = 1024;

impl LegKeys {
    fn context(&self, key_salt: &[u8]) -> anyhow::Result<SrtpContext> {
        let key = MasterKey::from_concatenated(self.suite, key_salt)
            .map_err(|e| anyhow::anyhow!("SRTP key: {e:?}"))?;
        SrtpContext::new(&SrtpParams {
            suite: self.suite,
            key,
            replay_window: REPLAY_WINDOW,
        })
        .map_err(|e| anyhow::anyhow!("SRTP context: {e:?}"))
    }

    /// The context protecting what this client sends.
    pub fn sender(&self) -> anyhow::Result<SrtpContext> {
        self.context(&self.send)
    }

    /// The context unprotecting what the relay sends this client.
    pub fn receiver(&self) -> anyhow::Result<SrtpContext> {
        self.context(&self.recv)
    }
}

/// One call as the load engine places it.
#[derive(Debug)]
pub struct Call {
    pub addrs: CallAddrs,
    /// Client sockets (A, B) already bound and announced to the relay; `None`
    /// binds fresh ones (for latching forwarders that learn the source).
    pub sockets: Option<(UdpSocket, UdpSocket)>,
    /// SRTP on the A client's leg; `None` is plain RTP.
    pub a_srtp: Option<LegKeys>,
    /// SRTP on the B client's leg.
    pub b_srtp: Option<LegKeys>,
}

impl From<CallAddrs> for Call {
    fn from(addrs: CallAddrs) -> Call {
        Call {
            addrs,
            sockets: None,
            a_srtp: None,
            b_srtp: None,
        }
    }
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

    #[test]
    fn leg_keys_pair_up() {
        // What one side's sender protects, a receiver keyed the same way opens.
        let suite = Suite::AesCm128HmacSha1_80;
        let a = LegKeys {
            suite,
            send: vec![1; 30],
            recv: vec![2; 30],
        };
        let b = LegKeys {
            suite,
            send: vec![2; 30],
            recv: vec![1; 30],
        };
        let mut pkt = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        pkt.extend([7u8; 20]);
        let plain = pkt.clone();
        pkt.resize(plain.len() + suite.rtp_overhead(), 0);
        let n = a
            .sender()
            .unwrap()
            .protect_rtp(&mut pkt, plain.len())
            .unwrap();
        let n = b.receiver().unwrap().unprotect_rtp(&mut pkt, n).unwrap();
        assert_eq!(&pkt[..n], &plain[..]);
        assert!(a.receiver().unwrap().unprotect_rtp(&mut pkt, n).is_err());
        assert!(
            LegKeys {
                send: vec![1; 3],
                ..a
            }
            .sender()
            .is_err()
        );
    }
}
