//! End to end through real loopback sockets, once per backend: two "phones" talk RTP
//! through two relay sockets owned by one worker.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ferrelay_dataplane::{
    Backend, BackendKind, Dataplane, DataplaneConfig, DataplaneError, Event, WorkerHandle,
    WorkerReport,
};
use ferrelay_engine::{Component, DropReason, FlowId, FlowRule, LatchMode, LocalEndpoints, Output};

fn config(backend: Backend) -> DataplaneConfig {
    DataplaneConfig {
        workers: 1,
        backend,
        max_flows_per_worker: 64,
        command_ring: 64,
        event_ring: 1024,
        recv_buffers: 16,
        stats_interval: Duration::from_millis(100),
        idle_after: Duration::from_secs(60),
        ..DataplaneConfig::default()
    }
}

/// Starts the data plane, or `None` (with the reason printed) when io_uring is
/// unavailable and the test forces it.
fn start(cfg: DataplaneConfig) -> Option<Dataplane> {
    let forced = cfg.backend;
    match Dataplane::start(cfg) {
        Ok(dp) => Some(dp),
        Err(DataplaneError::WorkerStart { reason, .. }) if forced == Backend::IoUring => {
            eprintln!("SKIP: io_uring backend unavailable here: {reason}");
            None
        }
        Err(e) => panic!("start failed: {e}"),
    }
}

fn phone() -> (UdpSocket, SocketAddr) {
    phone_on("127.0.0.1:0")
}

fn phone_on(bind: &str) -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind(bind).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(4 << 20)
        .unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

fn relay_socket() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

/// A minimal RTP packet (RFC 3550 §5.1) with a recognisable payload.
fn rtp(seq: u16, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(fill, 160));
    p
}

fn rule(remote: SocketAddr, latch: LatchMode, out: Option<FlowId>) -> FlowRule {
    let mut r = FlowRule::new(Component::Rtp);
    r.remote = Some(remote);
    r.latch = latch;
    r.rtp_out = out.map(|via| Output { via });
    r
}

/// Polls the worker's events until `pick` accepts one or the deadline passes.
fn wait_for<T>(
    w: &mut WorkerHandle,
    within: Duration,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        w.ack_events();
        while let Some(ev) = w.try_recv_event() {
            if let Some(t) = pick(ev) {
                return Some(t);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

fn recv_exact(s: &UdpSocket, want: &[u8], from: SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, src) = s
        .recv_from(&mut buf)
        .expect("forwarded packet within 500 ms");
    assert_eq!(&buf[..n], want, "exact bytes");
    assert_eq!(src, from, "sent from the relay socket");
}

/// A call: relay socket `ra` serves phone A, `rb` serves phone B.
struct Call {
    a: UdpSocket,
    a_addr: SocketAddr,
    b: UdpSocket,
    b_addr: SocketAddr,
    ra: SocketAddr,
    rb: SocketAddr,
    fa: FlowId,
    fb: FlowId,
}

fn install_call(w: &mut WorkerHandle, latch: LatchMode) -> Call {
    let (a, a_addr) = phone();
    let (b, b_addr) = phone();
    let (ra_sock, ra) = relay_socket();
    let (rb_sock, rb) = relay_socket();
    let fb = w.add_flow(rb_sock, rule(b_addr, latch, None)).unwrap();
    let fa = w.add_flow(ra_sock, rule(a_addr, latch, Some(fb))).unwrap();
    w.update_flow(fb, rule(b_addr, latch, Some(fa))).unwrap();
    Call {
        a,
        a_addr,
        b,
        b_addr,
        ra,
        rb,
        fa,
        fb,
    }
}

fn forwards_both_ways_latches_and_answers_queries(backend: Backend) {
    let Some(mut dp) = start(config(backend)) else {
        return;
    };
    let w = dp.worker(0).unwrap();
    let c = install_call(w, LatchMode::LatchFirst);
    for seq in 0..20u16 {
        let p = rtp(seq, 0x1111, seq as u8);
        c.a.send_to(&p, c.ra).unwrap();
        recv_exact(&c.b, &p, c.rb);
        let q = rtp(seq, 0x2222, 0xA0 ^ seq as u8);
        c.b.send_to(&q, c.rb).unwrap();
        recv_exact(&c.a, &q, c.ra);
    }
    let mut latched = Vec::new();
    wait_for(w, Duration::from_secs(2), |ev| {
        if let Event::Latched { id, addr } = ev {
            latched.push((id, addr));
        }
        (latched.len() == 2).then_some(())
    })
    .expect("two Latched events");
    latched.sort();
    let mut want = vec![(c.fa, c.a_addr), (c.fb, c.b_addr)];
    want.sort();
    assert_eq!(latched, want);

    w.query(7, Some(c.fa)).unwrap();
    let stats = wait_for(w, Duration::from_secs(2), |ev| match ev {
        Event::FlowStats {
            token: 7,
            id,
            stats,
        } if id == c.fa => Some(stats),
        _ => None,
    })
    .expect("FlowStats answer");
    assert_eq!(stats.rx_packets, 20);
    assert_eq!(stats.fwd_packets, 20);
    assert!(stats.latched);

    w.query(8, None).unwrap();
    let report = wait_for(w, Duration::from_secs(2), |ev| match ev {
        Event::WorkerStats(r) if r.token == Some(8) => Some(r),
        _ => None,
    })
    .expect("WorkerStats answer");
    assert_eq!(report.engine.rx_packets, 40);
    assert_eq!(report.engine.tx_packets, 40);
    assert_eq!(report.io.rx_datagrams, 40);
    assert_eq!(
        report.engine.residence_ns.len(),
        40,
        "one residence sample per forward"
    );
    if backend != Backend::Auto {
        let kind = if backend == Backend::IoUring {
            BackendKind::IoUring
        } else {
            BackendKind::Mmsg
        };
        assert_eq!(report.backend, kind);
        assert_eq!(dp.backend_in_use(), vec![kind]);
    }
    dp.shutdown();
}

fn remove_stops_forwarding(backend: Backend) {
    let Some(mut dp) = start(config(backend)) else {
        return;
    };
    let w = dp.worker(0).unwrap();
    let c = install_call(w, LatchMode::Fixed);
    let p = rtp(1, 0x3333, 1);
    c.a.send_to(&p, c.ra).unwrap();
    recv_exact(&c.b, &p, c.rb);
    // B -> A still works after A's flow is gone? No: fb forwards via fa, which is removed.
    w.remove_flow(c.fa).unwrap();
    let removed = wait_for(w, Duration::from_secs(2), |ev| match ev {
        Event::FlowRemoved { id, stats } if id == c.fa => Some(stats),
        _ => None,
    })
    .expect("FlowRemoved");
    assert_eq!(removed.fwd_packets, 1);
    assert!(matches!(
        w.update_flow(c.fa, rule(c.a_addr, LatchMode::Fixed, None)),
        Err(DataplaneError::UnknownFlow(_))
    ));
    // The relay socket is closed: nothing from A reaches B.
    let _ = c.a.send_to(&rtp(2, 0x3333, 2), c.ra);
    // B's packets now have no output flow: dropped, not sent to A.
    c.b.send_to(&rtp(2, 0x4444, 2), c.rb).unwrap();
    let mut buf = [0u8; 2048];
    c.b.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    c.a.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        c.b.recv_from(&mut buf).is_err(),
        "nothing forwarded to B after remove"
    );
    assert!(
        c.a.recv_from(&mut buf).is_err(),
        "nothing forwarded to A via a removed flow"
    );
    // The slot is reused with a new generation and forwards again.
    let (ra2_sock, ra2) = relay_socket();
    let fa2 = w
        .add_flow(ra2_sock, rule(c.a_addr, LatchMode::Fixed, Some(c.fb)))
        .unwrap();
    assert_eq!(fa2.index, c.fa.index);
    assert_ne!(fa2.generation, c.fa.generation);
    let p = rtp(3, 0x3333, 3);
    c.a.send_to(&p, ra2).unwrap();
    recv_exact(&c.b, &p, c.rb);
    dp.shutdown();
}

/// A command queued before a datagram arrives applies to it, even when the
/// worker learns of both in one wake-up: here the command's own wake is held
/// back (deferred and never flushed), so only the datagram wakes the worker.
fn queued_command_applies_before_a_later_datagram(backend: Backend) {
    let Some(mut dp) = start(config(backend)) else {
        return;
    };
    let w = dp.worker(0).unwrap();
    let c = install_call(w, LatchMode::Fixed);
    let p = rtp(1, 0x7777, 1);
    c.a.send_to(&p, c.ra).unwrap();
    recv_exact(&c.b, &p, c.rb);
    w.set_deferred_wake(true);
    w.set_blocked(c.fa, true).unwrap();
    c.a.send_to(&rtp(2, 0x7777, 2), c.ra).unwrap();
    let mut buf = [0u8; 2048];
    c.b.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        c.b.recv_from(&mut buf).is_err(),
        "forwarded by the rule the queued command replaced"
    );
    c.b.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    w.set_blocked(c.fa, false).unwrap();
    w.flush_wakes();
    let p = rtp(3, 0x7777, 3);
    c.a.send_to(&p, c.ra).unwrap();
    recv_exact(&c.b, &p, c.rb);
    dp.shutdown();
}

/// A parked flow's socket stays bound and drains what arrives; a flow that reuses
/// it forwards on the same port, starts with fresh counters and never sees what
/// came while parked; removing a parked flow closes its socket without an event.
fn parked_socket_is_reused_without_stale_packets(backend: Backend) {
    let Some(mut dp) = start(config(backend)) else {
        return;
    };
    let w = dp.worker(0).unwrap();
    let c = install_call(w, LatchMode::Fixed);
    let p = rtp(1, 0x5555, 1);
    c.a.send_to(&p, c.ra).unwrap();
    recv_exact(&c.b, &p, c.rb);

    w.park_flow(c.fa).unwrap();
    let parked = wait_for(w, Duration::from_secs(2), |ev| match ev {
        Event::FlowRemoved { id, stats } if id == c.fa => Some(stats),
        _ => None,
    })
    .expect("FlowRemoved for the parked flow");
    assert_eq!(parked.fwd_packets, 1);
    // Stale media on the parked port: received and dropped, never forwarded.
    for seq in 2..5u16 {
        c.a.send_to(&rtp(seq, 0x5555, 0xEE), c.ra).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        w.query(21, None).unwrap();
        let r = wait_for(w, Duration::from_secs(2), |ev| match ev {
            Event::WorkerStats(r) if r.token == Some(21) => Some(r),
            _ => None,
        })
        .expect("WorkerStats");
        if r.io.rx_datagrams == 4 {
            assert_eq!(r.engine.tx_packets, 1, "nothing forwarded while parked");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stale datagrams not drained: {:?}",
            r.io
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let fa2 = w
        .reuse_flow(c.fa, rule(c.a_addr, LatchMode::Fixed, Some(c.fb)))
        .unwrap();
    assert_ne!(fa2, c.fa);
    assert_eq!(
        fa2.index, c.fa.index,
        "the same slot, so the armed receive is kept"
    );
    assert!(matches!(
        w.update_flow(c.fa, rule(c.a_addr, LatchMode::Fixed, None)),
        Err(DataplaneError::UnknownFlow(_))
    ));
    assert!(
        w.reuse_flow(c.fa, FlowRule::new(Component::Rtp)).is_err(),
        "spent"
    );
    w.update_flow(c.fb, rule(c.b_addr, LatchMode::Fixed, Some(fa2)))
        .unwrap();
    // Until the worker has applied the reuse, what arrives is still the parked
    // flow's and dropped: wait for it (commands are applied in order).
    w.query(23, Some(fa2)).unwrap();
    wait_for(w, Duration::from_secs(2), |ev| {
        matches!(ev, Event::FlowStats { token: 23, .. }).then_some(())
    })
    .expect("the reuse applied");
    let p = rtp(9, 0x5555, 9);
    c.a.send_to(&p, c.ra).unwrap();
    recv_exact(&c.b, &p, c.rb);
    let q = rtp(9, 0x6666, 9);
    c.b.send_to(&q, c.rb).unwrap();
    recv_exact(&c.a, &q, c.ra);
    w.query(22, Some(fa2)).unwrap();
    let stats = wait_for(w, Duration::from_secs(2), |ev| match ev {
        Event::FlowStats {
            token: 22, stats, ..
        } => Some(stats),
        _ => None,
    })
    .expect("FlowStats of the new flow");
    assert_eq!((stats.rx_packets, stats.fwd_packets), (1, 1));

    // Closing a parked socket: no event, and the port is free again.
    w.park_flow(c.fb).unwrap();
    w.remove_flow(c.fb).unwrap();
    w.remove_flow(fa2).unwrap();
    // Only flow events count (periodic worker stats come and go).
    let mut flow_events = Vec::new();
    wait_for(w, Duration::from_millis(300), |ev| {
        match ev {
            Event::FlowRemoved { id, .. } => flow_events.push(("removed", id)),
            Event::CommandFailed { id, .. } => {
                flow_events.push(("failed", id.unwrap_or(FlowId::new(u32::MAX, 0))));
            }
            _ => {}
        }
        None::<()>
    });
    assert_eq!(flow_events, vec![("removed", c.fb), ("removed", fa2)]);
    let deadline = Instant::now() + Duration::from_secs(2);
    while UdpSocket::bind(c.rb).is_err() {
        assert!(Instant::now() < deadline, "parked socket never closed");
        std::thread::sleep(Duration::from_millis(10));
    }
    dp.shutdown();
}

/// More datagrams queued on a socket than the worker has receive buffers: the multishot
/// receive runs out of buffers, is re-armed, and every datagram is still forwarded.
fn burst_beyond_buffers_is_forwarded_completely(backend: Backend) {
    let cfg = config(backend);
    let burst = 4 * usize::from(cfg.recv_buffers);
    let Some(mut dp) = start(cfg) else { return };
    let w = dp.worker(0).unwrap();
    let (a, a_addr) = phone();
    let (b, b_addr) = phone();
    let (ra_sock, ra) = relay_socket();
    socket2::SockRef::from(&ra_sock)
        .set_recv_buffer_size(4 << 20)
        .unwrap();
    let (rb_sock, rb) = relay_socket();
    // Queue the whole burst before the worker sees the socket, so its first receive
    // finds 4x more datagrams than it has buffers.
    let sent: Vec<Vec<u8>> = (0..burst as u16).map(|s| rtp(s, 0x5555, s as u8)).collect();
    for p in &sent {
        a.send_to(p, ra).unwrap();
    }
    let fb = w
        .add_flow(rb_sock, rule(b_addr, LatchMode::Fixed, None))
        .unwrap();
    w.add_flow(ra_sock, rule(a_addr, LatchMode::Fixed, Some(fb)))
        .unwrap();
    for p in &sent {
        recv_exact(&b, p, rb);
    }
    w.query(1, None).unwrap();
    let report = wait_for(w, Duration::from_secs(2), |ev| match ev {
        Event::WorkerStats(r) if r.token == Some(1) => Some(r),
        _ => None,
    })
    .unwrap();
    assert_eq!(report.engine.tx_packets, burst as u64);
    if report.backend == BackendKind::IoUring {
        assert!(
            report.io.rx_no_buffers >= 1,
            "buffers ran out: {:?}",
            report.io
        );
        assert!(
            report.io.rx_rearms >= 1,
            "receive was re-armed: {:?}",
            report.io
        );
    }
    dp.shutdown();
}

fn full_command_ring_is_refused(backend: Backend) {
    let mut cfg = config(backend);
    cfg.command_ring = 4;
    let Some(mut dp) = start(cfg) else { return };
    let w = dp.worker(0).unwrap();
    let mut refused = false;
    for t in 0..100_000u64 {
        match w.query(t, None) {
            Ok(()) => {}
            Err(DataplaneError::RingFull { worker: 0 }) => {
                refused = true;
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(
        refused,
        "a 4-slot ring must fill when pushed in a tight loop"
    );
    assert!(w.rejected_commands() >= 1);
    // The worker keeps serving: the ring drains and commands are accepted again.
    let deadline = Instant::now() + Duration::from_secs(2);
    while w.query(u64::MAX, None).is_err() {
        assert!(Instant::now() < deadline, "ring never drained");
        std::thread::sleep(Duration::from_millis(1));
    }
    dp.shutdown();
}

fn shutdown_joins_quickly(backend: Backend) {
    let Some(mut dp) = start(config(backend)) else {
        return;
    };
    let w = dp.worker(0).unwrap();
    let _call = install_call(w, LatchMode::LatchFirst);
    // Let the worker go to sleep in the kernel first.
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    dp.shutdown();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
}

fn periodic_stats_arrive(backend: Backend) {
    let Some(mut dp) = start(config(backend)) else {
        return;
    };
    let w = dp.worker(0).unwrap();
    let got = wait_for(w, Duration::from_secs(2), |ev| match ev {
        Event::WorkerStats(r) if r.token.is_none() => Some(r),
        _ => None,
    });
    assert!(got.is_some(), "periodic WorkerStats every 100 ms");
    dp.shutdown();
}

/// The same call over IPv6 loopback: both address families go through the shell.
fn ipv6_call_forwards(backend: Backend) {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("SKIP: no IPv6 loopback here");
        return;
    }
    let Some(mut dp) = start(config(backend)) else {
        return;
    };
    let w = dp.worker(0).unwrap();
    let (a, a_addr) = phone_on("[::1]:0");
    let (b, b_addr) = phone_on("[::1]:0");
    let ra_sock = UdpSocket::bind("[::1]:0").unwrap();
    let rb_sock = UdpSocket::bind("[::1]:0").unwrap();
    let (ra, rb) = (ra_sock.local_addr().unwrap(), rb_sock.local_addr().unwrap());
    let fb = w
        .add_flow(rb_sock, rule(b_addr, LatchMode::LatchFirst, None))
        .unwrap();
    let fa = w
        .add_flow(ra_sock, rule(a_addr, LatchMode::LatchFirst, Some(fb)))
        .unwrap();
    w.update_flow(fb, rule(b_addr, LatchMode::LatchFirst, Some(fa)))
        .unwrap();
    for seq in 0..5u16 {
        let p = rtp(seq, 0x6666, 6);
        a.send_to(&p, ra).unwrap();
        recv_exact(&b, &p, rb);
        let q = rtp(seq, 0x7777, 7);
        b.send_to(&q, rb).unwrap();
        recv_exact(&a, &q, ra);
    }
    let latched = wait_for(w, Duration::from_secs(2), |ev| match ev {
        Event::Latched { id, addr } if id == fa => Some(addr),
        _ => None,
    });
    assert_eq!(latched, Some(a_addr));
    dp.shutdown();
}

/// A silent flow gets one `MediaIdle` from the worker's idle scan (timer driven, no
/// traffic needed to wake the worker).
fn idle_flow_reported(backend: Backend) {
    let mut cfg = config(backend);
    cfg.idle_after = Duration::from_millis(50);
    let Some(mut dp) = start(cfg) else { return };
    let w = dp.worker(0).unwrap();
    let c = install_call(w, LatchMode::LatchFirst);
    let idle = wait_for(w, Duration::from_secs(2), |ev| match ev {
        Event::MediaIdle { id, idle_ns } if id == c.fa => Some(idle_ns),
        _ => None,
    })
    .expect("MediaIdle within 2 s");
    assert!(idle >= 50_000_000, "idle {idle} ns");
    dp.shutdown();
}

/// A datagram bigger than a receive buffer is dropped and counted, never forwarded cut
/// short; the next normal packet still goes through.
fn oversized_datagram_is_dropped(backend: Backend) {
    let Some(mut dp) = start(config(backend)) else {
        return;
    };
    let w = dp.worker(0).unwrap();
    let c = install_call(w, LatchMode::Fixed);
    let mut big = rtp(1, 0x8888, 1);
    big.resize(4000, 0xee);
    c.a.send_to(&big, c.ra).unwrap();
    let p = rtp(2, 0x8888, 2);
    c.a.send_to(&p, c.ra).unwrap();
    recv_exact(&c.b, &p, c.rb);
    w.query(5, None).unwrap();
    let r = wait_for(w, Duration::from_secs(2), |ev| match ev {
        Event::WorkerStats(r) if r.token == Some(5) => Some(r),
        _ => None,
    })
    .unwrap();
    assert_eq!(r.io.rx_truncated, 1, "{:?}", r.io);
    assert_eq!(r.engine.tx_packets, 1);
    dp.shutdown();
}

/// The worker's snapshot, asked for with `token`.
fn worker_stats(w: &mut WorkerHandle, token: u64) -> Box<WorkerReport> {
    w.query(token, None).unwrap();
    wait_for(w, Duration::from_secs(2), |ev| match ev {
        Event::WorkerStats(r) if r.token == Some(token) => Some(r),
        _ => None,
    })
    .expect("WorkerStats")
}

/// The loop guard takes the relay's endpoints at run time (`set_local`, for a
/// host that gained an address): a loop that runs while they are unknown stops
/// once they are given. Flow X forwards through Y, whose remote is X's own port.
fn the_loop_guard_takes_new_endpoints_at_run_time(backend: Backend) {
    let Some(mut dp) = start(config(backend)) else {
        return;
    };
    let w = dp.worker(0).unwrap();
    let (a, a_addr) = phone();
    let (sx, ax) = relay_socket();
    let (sy, _) = relay_socket();
    let fy = w.add_flow(sy, rule(ax, LatchMode::Fixed, None)).unwrap();
    w.add_flow(sx, rule(a_addr, LatchMode::Fixed, Some(fy)))
        .unwrap();
    a.send_to(&rtp(1, 0x6666, 6), ax).unwrap();
    // Endpoints unknown (the default): one packet goes round and round.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut token = 0;
    loop {
        token += 1;
        let r = worker_stats(w, token);
        if r.engine.rx_packets > 100 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no loop: {} received",
            r.engine.rx_packets
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    w.set_local(LocalEndpoints::new(
        [IpAddr::V4(Ipv4Addr::LOCALHOST)],
        1,
        u16::MAX,
    ))
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let cut = loop {
        token += 1;
        let r = worker_stats(w, token);
        if r.engine.drops.get(DropReason::Loop) > 0 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "not cut: {} received",
            r.engine.rx_packets
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_millis(100));
    let later = worker_stats(w, token + 1);
    assert_eq!(
        later.engine.rx_packets, cut.engine.rx_packets,
        "the loop stopped"
    );
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

per_backend!(
    forwards_both_ways_latches_and_answers_queries,
    remove_stops_forwarding,
    queued_command_applies_before_a_later_datagram,
    parked_socket_is_reused_without_stale_packets,
    burst_beyond_buffers_is_forwarded_completely,
    full_command_ring_is_refused,
    shutdown_joins_quickly,
    periodic_stats_arrive,
    ipv6_call_forwards,
    idle_flow_reported,
    oversized_datagram_is_dropped,
    the_loop_guard_takes_new_endpoints_at_run_time
);

/// Each worker owns its flows: a call on worker 1 forwards while worker 0 idles.
#[test]
fn second_worker_forwards_its_own_call() {
    let mut cfg = config(Backend::Auto);
    cfg.workers = 2;
    let mut dp = Dataplane::start(cfg).unwrap();
    assert_eq!(dp.workers(), 2);
    assert_eq!(dp.backend_in_use().len(), 2);
    let w1 = dp.worker(1).unwrap();
    assert_eq!(w1.index(), 1);
    let c = install_call(w1, LatchMode::LatchFirst);
    let p = rtp(9, 0x9999, 9);
    c.a.send_to(&p, c.ra).unwrap();
    recv_exact(&c.b, &p, c.rb);
    w1.query(3, None).unwrap();
    let r1 = wait_for(w1, Duration::from_secs(2), |ev| match ev {
        Event::WorkerStats(r) if r.token == Some(3) => Some(r),
        _ => None,
    })
    .unwrap();
    assert_eq!((r1.worker, r1.engine.tx_packets), (1, 1));
    let w0 = dp.worker(0).unwrap();
    w0.query(4, None).unwrap();
    let r0 = wait_for(w0, Duration::from_secs(2), |ev| match ev {
        Event::WorkerStats(r) if r.token == Some(4) => Some(r),
        _ => None,
    })
    .unwrap();
    assert_eq!(
        (r0.worker, r0.engine.rx_packets, r0.engine.flows),
        (0, 0, 0)
    );
    assert!(dp.worker(2).is_none());
    dp.shutdown();
}

#[test]
fn auto_reports_its_choice() {
    let dp = Dataplane::start(config(Backend::Auto)).unwrap();
    let kinds = dp.backend_in_use();
    assert_eq!(kinds.len(), 1);
    let mut dp = dp;
    let info = dp.worker(0).unwrap().info().clone();
    eprintln!(
        "auto chose {:?} (fallback: {:?})",
        info.backend, info.fallback_reason
    );
    assert_eq!(
        info.backend == BackendKind::Mmsg,
        info.fallback_reason.is_some()
    );
    dp.shutdown();
}
