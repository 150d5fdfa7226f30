//! SRTP bridging through real loopback sockets, once per backend: phone A speaks
//! plain RTP, phone B speaks SRTP, and each checks what arrives with its own keys.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ferrelay_dataplane::{Backend, BackendKind, Dataplane, DataplaneConfig, DataplaneError, Event};
use ferrelay_engine::srtp::{MasterKey, SrtpContext, SrtpParams, Suite};
use ferrelay_engine::{Component, DropReason, FlowId, FlowRule, LatchMode, Output, TAILROOM};

/// One worker, small rings: enough for a single call.
fn start(backend: Backend) -> Option<Dataplane> {
    let cfg = DataplaneConfig {
        workers: 1,
        backend,
        max_flows_per_worker: 16,
        command_ring: 32,
        event_ring: 256,
        recv_buffers: 16,
        stats_interval: Duration::from_millis(100),
        idle_after: Duration::from_secs(60),
        ..DataplaneConfig::default()
    };
    match Dataplane::start(cfg) {
        Ok(dp) => Some(dp),
        Err(DataplaneError::WorkerStart { reason, .. }) if backend == Backend::IoUring => {
            eprintln!("SKIP: io_uring backend unavailable here: {reason}");
            None
        }
        Err(e) => panic!("start failed: {e}"),
    }
}

/// A loopback socket with a short read timeout, so a missing packet fails fast.
fn bind() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

fn params(suite: Suite, seed: u8) -> SrtpParams {
    let material: Vec<u8> = (0..suite.key_len() + suite.salt_len())
        .map(|i| seed ^ (i as u8).wrapping_mul(7))
        .collect();
    SrtpParams {
        suite,
        key: MasterKey::from_concatenated(suite, &material).unwrap(),
        replay_window: 128,
    }
}

/// RTP (RFC 3550 §5.1) with a payload that differs per packet.
fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u16).map(|i| (i ^ seq) as u8));
    p
}

fn recv(s: &UdpSocket, from: SocketAddr) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let (n, src) = s.recv_from(&mut buf).expect("a packet within 500 ms");
    assert_eq!(src, from, "sent from the relay socket");
    buf[..n].to_vec()
}

fn rule(remote: SocketAddr, out: Option<FlowId>) -> FlowRule {
    let mut r = FlowRule::new(Component::Rtp);
    r.remote = Some(remote);
    r.latch = LatchMode::LatchFirst;
    r.rtp_out = out.map(|via| Output { via });
    r
}

fn plain_to_srtp_and_back(backend: Backend) {
    let Some(mut dp) = start(backend) else { return };
    let w = dp.worker(0).unwrap();
    let (a, a_addr) = bind();
    let (b, b_addr) = bind();
    let (ra_sock, ra) = bind();
    let (rb_sock, rb) = bind();
    // B's SDES keys: what the relay encrypts toward B, and what B encrypts with.
    let to_b = params(Suite::AesCm128HmacSha1_80, 0x11);
    let from_b = params(Suite::AeadAes128Gcm, 0x22);

    let mut rb_rule = rule(b_addr, None);
    rb_rule.crypto.decrypt = Some(from_b.clone());
    let fb = w.add_flow(rb_sock, rb_rule.clone()).unwrap();
    let mut ra_rule = rule(a_addr, Some(fb));
    ra_rule.crypto.encrypt = Some(to_b.clone());
    let fa = w.add_flow(ra_sock, ra_rule).unwrap();
    // Same keys again: the worker keeps B's decrypt context as it is.
    rb_rule.rtp_out = Some(Output { via: fa });
    w.update_flow(fb, rb_rule).unwrap();

    let mut b_rx = SrtpContext::new(&to_b).unwrap();
    let mut b_tx = SrtpContext::new(&from_b).unwrap();
    for seq in 0..20u16 {
        // A -> relay (encrypts) -> B, who decrypts A's exact packet.
        let p = rtp(seq, 0xA);
        a.send_to(&p, ra).unwrap();
        let mut got = recv(&b, rb);
        assert_eq!(got.len(), p.len() + 10, "HMAC-SHA1-80 tag appended");
        assert_ne!(got[12..p.len()], p[12..], "payload encrypted on the wire");
        let n = b_rx.unprotect_rtp(&mut got, p.len() + 10).unwrap();
        assert_eq!(&got[..n], &p[..]);

        // B -> relay (decrypts) -> A, who gets B's plain packet.
        let q = rtp(1000 + seq, 0xB);
        let mut srtp = q.clone();
        srtp.resize(q.len() + TAILROOM, 0);
        let n = b_tx.protect_rtp(&mut srtp, q.len()).unwrap();
        b.send_to(&srtp[..n], rb).unwrap();
        assert_eq!(recv(&a, ra), q);
    }

    // A forged packet from B is dropped; the next genuine one still passes.
    let q = rtp(2000, 0xB);
    let mut srtp = q.clone();
    srtp.resize(q.len() + TAILROOM, 0);
    let n = b_tx.protect_rtp(&mut srtp, q.len()).unwrap();
    let mut forged = srtp[..n].to_vec();
    forged[40] ^= 0x01;
    b.send_to(&forged, rb).unwrap();
    b.send_to(&srtp[..n], rb).unwrap();
    assert_eq!(recv(&a, ra), q, "only the genuine packet arrives");

    w.query(1, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let report = loop {
        assert!(Instant::now() < deadline, "no WorkerStats answer");
        w.ack_events();
        match w.try_recv_event() {
            Some(Event::WorkerStats(r)) if r.token == Some(1) => break r,
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    assert_eq!(report.engine.tx_packets, 41);
    assert_eq!(report.engine.drops.get(DropReason::SrtpAuth), 1);
    let kind = match backend {
        Backend::IoUring => BackendKind::IoUring,
        _ => BackendKind::Mmsg,
    };
    assert_eq!(report.backend, kind, "ran on the backend it names");
    dp.shutdown();
}

macro_rules! per_backend {
    ($($name:ident),*) => {
        mod io_uring {
            $( #[test] fn $name() { super::$name(ferrelay_dataplane::Backend::IoUring) } )*
        }
        mod mmsg {
            $( #[test] fn $name() { super::$name(ferrelay_dataplane::Backend::Mmsg) } )*
        }
    };
}

per_backend!(plain_to_srtp_and_back);
