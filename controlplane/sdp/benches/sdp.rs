//! What one offer costs the control plane: parse, write back, and a full anchoring pass.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrelay_sdp::{Direction, Proto, Rtcp, Sdp};

fn anchor(sdp: &mut Sdp, relay: IpAddr) {
    sdp.set_origin_address(relay, true);
    sdp.set_connection(relay);
    sdp.remove_ice();
    for (i, m) in sdp.media_mut().iter_mut().enumerate() {
        let port = 30000 + 2 * u16::try_from(i).unwrap_or(0);
        m.set_port(port);
        m.set_connection(relay);
        m.set_rtcp(Some(Rtcp {
            port: port + 1,
            connection: None,
        }));
        m.set_rtcp_mux(false);
        m.set_direction(Direction::SendRecv);
        m.set_proto(Proto::RtpAvp);
    }
}

fn bench(c: &mut Criterion) {
    let relay: IpAddr = "203.0.113.1".parse().unwrap();
    for (name, text) in [
        (
            "pjsua_srtp",
            include_str!("../tests/samples/pjsua_srtp.sdp"),
        ),
        (
            "chrome_webrtc_offer",
            include_str!("../tests/samples/chrome_webrtc_offer.sdp"),
        ),
    ] {
        let input = text.replace('\n', "\r\n");
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function("parse", |b| {
            b.iter(|| Sdp::parse(black_box(&input)).unwrap())
        });
        let parsed = Sdp::parse(&input).unwrap();
        g.bench_function("serialise", |b| b.iter(|| black_box(&parsed).to_string()));
        g.bench_function("parse_anchor_serialise", |b| {
            b.iter(|| {
                let mut sdp = Sdp::parse(black_box(&input)).unwrap();
                anchor(&mut sdp, relay);
                sdp.to_bytes()
            });
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
