//! rtpengine (the reference relay, Debian `rtpengine-daemon`) as a child process on
//! loopback, for the differential tests and the NG benchmark.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running rtpengine; killed on drop.
pub struct Rtpengine {
    child: Child,
    pub ng: SocketAddr,
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rtpengine {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts rtpengine with media ports `ports` and no delete delay, and waits until
/// it answers `ping`. Panics, saying so, when rtpengine is not installed.
pub async fn start(ports: (u16, u16), extra: &[&str]) -> Rtpengine {
    start_on(ports, extra, None).await
}

/// Like [`start`], on the CPUs of `cpus` (a `taskset` list such as `0` or `0-3`)
/// when given: its threads run there and nowhere else.
pub async fn start_on(ports: (u16, u16), extra: &[&str], cpus: Option<&str>) -> Rtpengine {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ng: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cmd = match cpus {
        Some(list) => {
            let mut c = Command::new("taskset");
            c.args(["-c", list, "rtpengine"]);
            c
        }
        None => Command::new("rtpengine"),
    };
    let child = cmd
        .args([
            "--config-file=none",
            "--table=-1",
            "--interface=127.0.0.1",
            &format!("--listen-ng={ng}"),
            &format!("--port-min={}", ports.0),
            &format!("--port-max={}", ports.1),
            "--delete-delay=0",
            "--foreground",
            "--log-stderr",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rtpengine is installed (apt-get install rtpengine-daemon)");
    let r = Rtpengine { child, ng };
    for _ in 0..50 {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(b"p d7:command4:pinge", ng).await.unwrap();
        let mut buf = [0u8; 64];
        if tokio::time::timeout(Duration::from_millis(100), s.recv_from(&mut buf))
            .await
            .is_ok()
        {
            return r;
        }
    }
    panic!("rtpengine did not start");
}
