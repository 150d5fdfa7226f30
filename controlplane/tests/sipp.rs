//! SIPp (Debian `sip-tester`) places 100 calls with RTP through the SIP front end:
//! UAC (`uac_pcap`, G.711 audio from a pcap) -> ferrelay -> UAS (`-rtp_echo`). Every
//! call must succeed, and the relay must have relayed the media of every call.
//! Needs `sipp` on PATH (scripts/deps/sip.apt); fails with a clear message if not.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use ferrelay::ng::Value;
use tokio::process::Command;

const CALLS: u32 = 100;
/// Calls per second: modest, so two cores run SIPp twice and the relay at once.
const RATE: u32 = 20;
/// Each `uac_pcap` call lasts about 9 s (8 s of audio, 1 s of DTMF).
const LIMIT: Duration = Duration::from_secs(45);

fn sipp() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("sipp"))
            .find(|f| f.is_file())
    });
    found.expect(
        "sipp not found on PATH: install Debian's sip-tester (listed in scripts/deps/sip.apt)",
    )
}

/// The directory `uac_pcap` resolves `pcap/g711a.pcap` against.
fn pcap_dir() -> tempdir::Dir {
    let share = std::path::Path::new("/usr/share/sip-tester");
    assert!(
        share.join("g711a.pcap").is_file(),
        "/usr/share/sip-tester/g711a.pcap missing: install sip-tester"
    );
    let d = tempdir::Dir::new("ferrelay-sipp");
    std::os::unix::fs::symlink(share, d.path.join("pcap")).unwrap();
    d
}

mod tempdir {
    /// A scratch directory removed on drop.
    pub struct Dir {
        pub path: std::path::PathBuf,
    }

    impl Dir {
        pub fn new(prefix: &str) -> Dir {
            let path = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A port free right now on loopback (UDP), for SIPp's SIP sockets, which it
/// binds at start.
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port()
}

/// The first of `len` ports from `from` up, a multiple of four, that are all free
/// on loopback right now, for SIPp's media. SIPp binds only its base media port
/// (and base + 2): a `uac_pcap` call n plays from and announces base + 4 (n - 1)
/// without binding it. Those ports must be neither the relay's media ports nor
/// another socket's, or the calls' SDP sends the relay's media to itself: calls
/// chain through each other's ports and through the UAS's echo, and every packet
/// is relayed many times over (CI saw 1.77 million relayed for 49,200). Below the
/// kernel's ephemeral range (32768 up by default), no port 0 bind lands there.
fn free_span(from: u16, len: u16) -> u16 {
    (from..32_768 - len)
        .step_by(4)
        .find(|b| (0..len).all(|i| std::net::UdpSocket::bind(("127.0.0.1", b + i)).is_ok()))
        .expect("a span of free ports below 32768 for SIPp's media")
}
/// Packets in one of SIPp's captures (classic pcap: 24-byte file header, then
/// 16-byte record headers with the captured length at offset 8).
fn pcap_packets(name: &str) -> i64 {
    let d = std::fs::read(std::path::Path::new("/usr/share/sip-tester").join(name)).unwrap();
    let (mut at, mut n) = (24usize, 0);
    while at + 16 <= d.len() {
        let len = u32::from_le_bytes(d[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + len;
        n += 1;
    }
    n
}

/// A counter of the NG `statistics` reply, from `currentstatistics` or `totalstatistics`.
fn stat(v: &Value, group: &str, key: &str) -> i64 {
    v.get("statistics")
        .and_then(|s| s.get(group))
        .and_then(|g| g.get(key))
        .and_then(Value::as_int)
        .unwrap_or_else(|| panic!("no {group}.{key} in {v:?}"))
}

/// Every live call's streams, one line each: local port, where its packets go
/// (the latched endpoint, else the signalled one) and how many it received. To
/// tell, should the media counts come out wrong, where the packets went.
async fn streams_now(ng: &mut Ng) -> Vec<String> {
    let mut lines = Vec::new();
    for id in listed_calls(ng, 1000).await {
        let q = ng.call(&cmd("query", &id)).await;
        let Some(Value::Dict(tags)) = q.get("tags") else {
            continue;
        };
        for (tag, t) in tags {
            let medias = t.get("medias").and_then(Value::as_list).unwrap_or_default();
            for stream in medias
                .iter()
                .filter_map(|m| m.get("streams").and_then(Value::as_list))
                .flatten()
            {
                let int = |v: Option<&Value>| v.and_then(Value::as_int).unwrap_or(-1);
                let ep = stream.get("endpoint");
                lines.push(format!(
                    "{id} {} :{} -> {}:{} rx {}",
                    String::from_utf8_lossy(tag),
                    int(stream.get("local port")),
                    ep.and_then(|e| e.get("address"))
                        .and_then(Value::as_str)
                        .unwrap_or("-"),
                    int(ep.and_then(|e| e.get("port"))),
                    int(stream.get("stats").and_then(|s| s.get("packets"))),
                ));
            }
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_places_100_calls_with_rtp_through_the_front_end() {
    let sipp = sipp();
    let dir = pcap_dir();
    let relay = relay_with(|c| {
        c.sip.listen = Some("127.0.0.1:0".parse().unwrap());
        c.delete_delay = Duration::ZERO;
        // Up to CALLS calls at once, four ports each.
        c.port_min = 56_000;
        c.port_max = 57_999;
    })
    .await;
    let proxy: SocketAddr = relay.sip.expect("SIP front end on");
    let (uas_port, uac_port) = (free_port(), free_port());
    // Media spans below the ephemeral range and the relay's (56000 up), apart.
    let per_call = 4 * CALLS as u16;
    let uac_media = free_span(20_000, per_call + 4);
    let uas_media = free_span(uac_media + per_call + 4, 4);
    let limit = format!("{}s", LIMIT.as_secs());

    let uas = Command::new(&sipp)
        .args(["-sn", "uas", "-i", "127.0.0.1", "-nostdin", "-rtp_echo"])
        .args(["-p", &uas_port.to_string(), "-mp", &uas_media.to_string()])
        .args(["-m", &CALLS.to_string(), "-timeout", &limit])
        .current_dir(&dir.path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp UAS starts");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let uac = Command::new(&sipp)
        .arg(format!("127.0.0.1:{uas_port}"))
        .args(["-sn", "uac_pcap", "-i", "127.0.0.1", "-nostdin"])
        .args(["-rsa", &proxy.to_string()])
        .args(["-p", &uac_port.to_string(), "-mp", &uac_media.to_string()])
        .args([
            "-m",
            &CALLS.to_string(),
            "-r",
            &RATE.to_string(),
            "-l",
            &CALLS.to_string(),
        ])
        .args(["-timeout", &limit, "-timeout_error"])
        .current_dir(&dir.path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp UAC starts");
    // Halfway through the calls' media, where every stream sends to.
    let mut ng = Ng::new(relay.ng_udp).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let midway = streams_now(&mut ng).await;
    let uac = tokio::time::timeout(LIMIT + Duration::from_secs(10), uac.wait_with_output())
        .await
        .expect("SIPp UAC finishes in time")
        .unwrap();
    let elapsed = started.elapsed();
    let uas = tokio::time::timeout(Duration::from_secs(10), uas.wait_with_output())
        .await
        .expect("SIPp UAS finishes after the last call")
        .unwrap();
    assert!(
        uac.status.success(),
        "SIPp UAC: not every call succeeded ({}): {}",
        uac.status,
        String::from_utf8_lossy(&uac.stderr)
    );
    assert!(
        uas.status.success(),
        "SIPp UAS ({}): {}",
        uas.status,
        String::from_utf8_lossy(&uas.stderr)
    );

    let s = ng
        .call(&to_dict(vec![("command", Value::str("statistics"))]))
        .await;
    assert_eq!(result(&s), "ok", "{s:?}");
    let managed = stat(&s, "totalstatistics", "managedsessions");
    let ended = stat(&s, "totalstatistics", "regularterminatedsessions");
    let packets = stat(&s, "totalstatistics", "relayedpackets");
    let own = stat(&s, "currentstatistics", "sessionsown");
    eprintln!(
        "sipp: {CALLS} calls at {RATE} cps in {elapsed:?}; relay: managed {managed}, \
         ended by BYE {ended}, relayed packets {packets}, calls left {own}"
    );
    assert_eq!(managed, i64::from(CALLS), "one anchored call per SIPp call");
    assert_eq!(ended, i64::from(CALLS), "every call deleted by its BYE");
    assert_eq!(own, 0, "no call left behind");
    // `uac_pcap` plays both captures per call; the UAS echoes each packet back.
    let per_call = pcap_packets("g711a.pcap") + pcap_packets("dtmf_2833_1.pcap");
    let expected = i64::from(CALLS) * 2 * per_call;
    eprintln!("relayed {packets} of {expected} packets (both ways, all calls)");
    // What the workers themselves counted (their last periodic reports, which may
    // lag by one publish): tells a miscount in the call totals from datagrams that
    // really arrived more than once.
    let (mut rx, mut tx, mut dropped) = (0, 0, 0);
    let mut reasons = std::collections::BTreeMap::new();
    for w in relay.observatory().samples().into_iter().flatten() {
        rx += w.report.engine.rx_packets;
        tx += w.report.engine.tx_packets;
        dropped += w.report.engine.drops.total();
        for (r, n) in w.report.engine.drops.iter().filter(|(_, n)| *n > 0) {
            *reasons.entry(r.as_str()).or_insert(0) += n;
        }
    }
    let workers =
        format!("workers received {rx}, sent {tx}, dropped {dropped} datagrams {reasons:?}");
    eprintln!("{workers}");
    let ports = format!(
        "SIPp: UAS SIP {uas_port}, media {uas_media}; UAC SIP {uac_port}, media {uac_media}; relay SIP {proxy}"
    );
    let bad = !(packets * 100 >= expected * 95 && packets <= expected);
    eprintln!("{ports}; {} streams 7 s in:", midway.len());
    for l in midway.iter().take(if bad { usize::MAX } else { 4 }) {
        eprintln!("  {l}");
    }
    // Loopback loses nothing on a quiet host; allow 5 % for a loaded CI machine.
    assert!(
        packets * 100 >= expected * 95 && packets <= expected,
        "media of every call relayed both ways ({packets} of {expected} packets; {workers})"
    );
    relay.shutdown().await;
}
