//! ferrelay-wire on the hot path: RTP view + accessors, the rewrite setters, and the
//! RTCP compound walk a relay does on every RTCP packet.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrelay_wire::{Compound, RtpPacket, classify};

/// 172-byte G.711 RTP packet: 12-byte header + 160 payload.
fn rtp_plain() -> Vec<u8> {
    let mut p = vec![0u8; 172];
    p[..12].copy_from_slice(&[
        0x80, 0x00, 0x12, 0x34, 0x00, 0x00, 0x10, 0x00, 0xDE, 0xAD, 0xBE, 0xEF,
    ]);
    p
}

/// RTP with one CSRC and a one-byte-header extension (RFC 8285 §4.2) of two elements.
fn rtp_with_ext() -> Vec<u8> {
    let mut p = vec![
        0x91, 0x60, 0x12, 0x34, 0x00, 0x00, 0x10, 0x00, 0xDE, 0xAD, 0xBE, 0xEF, // X=1, CC=1
        0x01, 0x02, 0x03, 0x04, // CSRC
        0xBE, 0xDE, 0x00, 0x02, // profile, 2 words
        0x10, 0xAA, 0x21, 0xBB, 0xCC, 0x00, 0x00, 0x00, // id1 len1, id2 len2, padding
    ];
    p.resize(p.len() + 160, 0x55);
    p
}

/// SR with one report block + SDES CNAME: what a typical endpoint sends.
fn rtcp_compound() -> Vec<u8> {
    let mut v = vec![
        0x81, 200, 0x00, 0x0C, // SR, RC=1, length 12 words
        0xDE, 0xAD, 0xBE, 0xEF, // sender SSRC
        0xE8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // NTP
        0x00, 0x00, 0x10, 0x00, // RTP ts
        0x00, 0x00, 0x00, 0x64, // packets
        0x00, 0x00, 0x3E, 0x80, // octets
        0x01, 0x02, 0x03, 0x04, // report block: SSRC
        0x00, 0x00, 0x00, 0x00, // lost
        0x00, 0x00, 0x12, 0x34, // ext highest seq
        0x00, 0x00, 0x00, 0x10, // jitter
        0x00, 0x00, 0x00, 0x00, // LSR
        0x00, 0x00, 0x00, 0x00, // DLSR
    ];
    v.extend_from_slice(&[
        0x81, 202, 0x00, 0x04, // SDES, 1 chunk, length 4 words
        0xDE, 0xAD, 0xBE, 0xEF, // SSRC
        0x01, 0x08, b'r', b'e', b'l', b'a', b'y', b'@', b'h', b'o', // CNAME
        0x00, 0x00, // end + pad
    ]);
    v
}

fn wire(c: &mut Criterion) {
    let plain = rtp_plain();
    let ext = rtp_with_ext();
    let rtcp = rtcp_compound();
    assert!(RtpPacket::new_checked(&plain[..]).is_ok());
    assert!(RtpPacket::new_checked(&ext[..]).is_ok());
    assert_eq!(
        Compound::new_checked(&rtcp).map(|c| c.iter().count()),
        Ok(2)
    );

    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rtp_parse_accessors_172B", |b| {
        b.iter(|| {
            let p = RtpPacket::new_checked(black_box(&plain[..])).unwrap();
            black_box((
                p.sequence_number(),
                p.timestamp(),
                p.ssrc(),
                p.payload_type(),
                p.marker(),
                p.payload().len(),
            ))
        })
    });
    g.bench_function("rtp_parse_csrc_ext_walk", |b| {
        b.iter(|| {
            let p = RtpPacket::new_checked(black_box(&ext[..])).unwrap();
            let n = p.extension_elements().map_or(0, |e| e.count());
            black_box((p.ssrc(), p.csrcs().count(), n, p.payload().len()))
        })
    });
    let mut buf = plain.clone();
    g.bench_function("rtp_rewrite_ssrc_pt", |b| {
        b.iter(|| {
            let mut p = RtpPacket::new_checked(black_box(&mut buf[..])).unwrap();
            p.set_ssrc(black_box(0x0102_0304));
            p.set_payload_type(black_box(8));
        })
    });
    g.bench_function("demux_classify", |b| {
        b.iter(|| black_box(classify(black_box(&plain[..]))))
    });
    g.bench_function("rtcp_compound_walk_sr_sdes", |b| {
        b.iter(|| {
            let c = Compound::new_checked(black_box(&rtcp[..])).unwrap();
            let mut acc = 0u32;
            for p in c.iter() {
                acc ^= p.ssrc().unwrap_or(0);
                for rb in p.report_blocks() {
                    acc ^= rb.extended_highest_seq() ^ rb.jitter();
                }
            }
            black_box(acc)
        })
    });
    g.finish();
}

fn fast() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! { name = benches; config = fast(); targets = wire }
criterion_main!(benches);
