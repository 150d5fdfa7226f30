//! `Backend::Auto` under a seccomp filter that forbids io_uring (as Docker's default
//! profile does): the worker must fall back to recvmmsg, say why, and still forward.

use std::net::UdpSocket;
use std::time::Duration;

use ferrelay_dataplane::{Backend, BackendKind, Dataplane, DataplaneConfig, DataplaneError};
use ferrelay_engine::{Component, FlowRule, LatchMode, Output};

/// Installs a filter on the calling thread (inherited by threads it spawns) that makes
/// `io_uring_setup` fail with EPERM and allows everything else.
fn forbid_io_uring_setup() -> bool {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let insn = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    // seccomp_data.nr is at offset 0. The arch is not checked: this filter only ever
    // sees native syscalls from this test's own threads.
    let mut prog = [
        insn(LD_W_ABS, 0, 0, 0),
        insn(JEQ_K, 0, 1, libc::SYS_io_uring_setup as u32),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments only; affects this thread alone.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return false;
    }
    // SAFETY: `fprog` points at `prog`, both alive for the call; the kernel copies them.
    unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        ) == 0
    }
}

fn cfg(backend: Backend) -> DataplaneConfig {
    DataplaneConfig {
        workers: 1,
        backend,
        max_flows_per_worker: 8,
        recv_buffers: 16,
        ..DataplaneConfig::default()
    }
}

#[test]
fn auto_falls_back_when_io_uring_is_forbidden() {
    // A dedicated thread, so the filter never reaches the test harness's other threads.
    let outcome = std::thread::spawn(|| {
        if !forbid_io_uring_setup() {
            return None;
        }
        // Forced io_uring must fail to start, with the reason.
        let forced = Dataplane::start(cfg(Backend::IoUring));
        let forced_reason = match forced {
            Err(DataplaneError::WorkerStart { reason, .. }) => reason,
            other => panic!("forced io_uring under seccomp: {other:?}"),
        };
        let mut dp = Dataplane::start(cfg(Backend::Auto)).expect("auto starts");
        let info = dp.worker(0).unwrap().info().clone();
        // And it still forwards.
        let w = dp.worker(0).unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let ra = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rb = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ra_addr = ra.local_addr().unwrap();
        let mut rule_b = FlowRule::new(Component::Rtp);
        rule_b.remote = Some(b.local_addr().unwrap());
        rule_b.latch = LatchMode::Fixed;
        let fb = w.add_flow(rb, rule_b).unwrap();
        let mut rule_a = FlowRule::new(Component::Rtp);
        rule_a.remote = Some(a.local_addr().unwrap());
        rule_a.rtp_out = Some(Output { via: fb });
        w.add_flow(ra, rule_a).unwrap();
        let pkt = [0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9, 0xd5, 0xd5];
        a.send_to(&pkt, ra_addr).unwrap();
        let mut buf = [0u8; 64];
        let n = b.recv(&mut buf).expect("forwarded through the fallback");
        assert_eq!(&buf[..n], &pkt);
        dp.shutdown();
        Some((forced_reason, info))
    })
    .join()
    .unwrap();
    let Some((forced_reason, info)) = outcome else {
        eprintln!("SKIP: cannot install a seccomp filter here");
        return;
    };
    assert!(forced_reason.contains("io_uring"), "{forced_reason}");
    assert_eq!(info.backend, BackendKind::Mmsg);
    let why = info.fallback_reason.expect("fallback reason recorded");
    assert!(
        why.contains(&std::io::Error::from_raw_os_error(libc::EPERM).to_string()),
        "{why}"
    );
}
