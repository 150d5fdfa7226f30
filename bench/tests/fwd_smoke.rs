//! Smoke test of the baseline forwarders: latch both sides of a pair on loopback
//! and check that exact bytes come out of the partner port, both ways.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Finds two consecutive free ports by binding them (released before the forwarder binds).
fn free_pair() -> u16 {
    for _ in 0..200 {
        let p = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            & !1;
        if p < 1024 || p == 65_534 {
            continue;
        }
        if UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port pair");
}

fn start(bin: &str) -> (Kill, u16) {
    let base = free_pair();
    let mut child = Command::new(bin)
        .args([
            "--base-port",
            &base.to_string(),
            "--pairs",
            "1",
            "--seconds",
            "20",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn forwarder");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready"), "forwarder said {line:?}");
    (Kill(child), base)
}

fn client(port: u16) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn forwards_both_ways(bin: &str) {
    let (_child, base) = start(bin);
    let a = client(base);
    let b = client(base + 1);
    let mut buf = [0u8; 2048];
    // B latches first; its packet has nowhere to go yet (A unknown) and is dropped.
    b.send(b"latch-b").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let msg: Vec<u8> = (0..172u8).collect();
    let mut got = None;
    for _ in 0..10 {
        a.send(&msg).unwrap();
        if let Ok(n) = b.recv(&mut buf) {
            got = Some(buf[..n].to_vec());
            break;
        }
    }
    assert_eq!(got.as_deref(), Some(&msg[..]), "A -> B");
    b.send(b"back to a").unwrap();
    let n = a.recv(&mut buf).expect("B -> A");
    assert_eq!(&buf[..n], b"back to a");
    // Nothing else arrives at A (the early B packet was dropped, not queued).
    assert!(a.recv(&mut buf).is_err());
}

#[test]
fn fwd_mmsg_forwards() {
    forwards_both_ways(env!("CARGO_BIN_EXE_fwd-mmsg"));
}

#[test]
fn fwd_uring_forwards() {
    forwards_both_ways(env!("CARGO_BIN_EXE_fwd-uring"));
}
