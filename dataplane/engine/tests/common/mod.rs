//! Packet builders and a two-leg call for the engine's integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;

use ferrelay_engine::{Component, Engine, EngineConfig, FlowId, FlowRule, Output, TAILROOM};

pub const MS: u64 = 1_000_000;
pub const SEC: u64 = 1_000_000_000;

pub fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, last], port))
}

/// An RTP packet: V=2, no CSRC/extension, the given fields and payload.
pub fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0x80, pt & 0x7f];
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&ssrc.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// A compound RTCP packet: an RR with no blocks from `ssrc`, then SDES with a CNAME.
pub fn rtcp_rr_sdes(ssrc: u32) -> Vec<u8> {
    let s = ssrc.to_be_bytes();
    let mut b = vec![0x80, 201, 0, 1, s[0], s[1], s[2], s[3]];
    b.extend_from_slice(&[0x81, 202, 0, 2, s[0], s[1], s[2], s[3], 1, 2, b'h', b'i']);
    b
}

/// Copies `pkt` into a buffer with tailroom, as the I/O shell hands it over.
pub fn with_tailroom(pkt: &[u8]) -> Vec<u8> {
    let mut b = pkt.to_vec();
    b.resize(pkt.len() + TAILROOM, 0);
    b
}

/// Alice (flow A, index 0) and Bob (flow B, index 1), RTP forwarded both ways.
pub struct Call {
    pub engine: Engine,
    pub a: FlowId,
    pub b: FlowId,
    pub alice: SocketAddr,
    pub bob: SocketAddr,
}

impl Call {
    /// Both legs latch-first with the given component and signalled remotes.
    pub fn new(component: Component, tweak: impl Fn(&mut FlowRule)) -> Call {
        let mut engine = Engine::new(EngineConfig {
            max_flows: 8,
            event_capacity: 16,
        });
        let (a, b) = (FlowId::new(0, 1), FlowId::new(1, 1));
        let (alice, bob) = (addr(1, 4000), addr(2, 5000));
        for (id, peer, remote) in [(a, b, alice), (b, a, bob)] {
            let mut r = FlowRule::new(component);
            r.remote = Some(remote);
            r.rtp_out = Some(Output { via: peer });
            r.rtcp_out = Some(Output { via: peer });
            tweak(&mut r);
            engine.insert(id, r).unwrap();
        }
        Call {
            engine,
            a,
            b,
            alice,
            bob,
        }
    }

    /// Feeds `pkt` to flow `id` from `src` and returns the action and the bytes.
    pub fn send(
        &mut self,
        now: u64,
        id: FlowId,
        src: SocketAddr,
        pkt: &[u8],
    ) -> (ferrelay_engine::Action, Vec<u8>) {
        let mut buf = with_tailroom(pkt);
        let act = self.engine.on_datagram(now, id, src, &mut buf, pkt.len());
        let out = match act {
            ferrelay_engine::Action::Forward { len, .. } => buf[..len].to_vec(),
            ferrelay_engine::Action::Drop(_) => Vec::new(),
        };
        (act, out)
    }
}
