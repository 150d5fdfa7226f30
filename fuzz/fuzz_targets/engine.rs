#![no_main]
//! Arbitrary datagrams from arbitrary sources into a muxed call with every rewrite on,
//! one side's remote on the relay's own ports (so the loop guard sees its output).
use ferrelay_engine::*;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

fuzz_target!(|data: &[u8]| {
    let mut e = Engine::new(EngineConfig { max_flows: 4, event_capacity: 8 });
    e.set_local(LocalEndpoints::new([std::net::IpAddr::from([127, 0, 0, 1])], 1000, 1999));
    for (i, port) in [(0u32, 1000u16), (1, 2000)] {
        let mut r = FlowRule::new(Component::Muxed);
        r.remote = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        (r.rtp_out, r.rtcp_out) = (Some(Output { via: FlowId::new(i ^ 1, 0) }), None);
        r.ssrc_rewrite = Some(SsrcRewrite { from: 1, to: 2 });
        r.pt_map.0[0] = 8;
        e.insert(FlowId::new(i, 0), r).unwrap();
    }
    let mut buf = [0u8; 1500 + TAILROOM];
    for (k, chunk) in data.split(|&b| b == 0xfe).take(64).enumerate() {
        let Some((&sel, pkt)) = chunk.split_first() else { continue };
        let n = pkt.len().min(1500);
        buf[..n].copy_from_slice(&pkt[..n]);
        let (id, src) = (FlowId::new(u32::from(sel & 3), 0), SocketAddr::from(([127, 0, 0, 1], u16::from(sel >> 2) * 1000)));
        if let Action::Forward { len, .. } = e.on_datagram(k as u64 * 1_000_000, id, src, &mut buf, n) {
            assert!(len <= n + TAILROOM);
        }
    }
    e.scan_idle(u64::MAX, 1);
    while e.pop_event().is_some() {}
});
