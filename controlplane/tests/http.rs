//! The HTTP side against an in-process relay with a real call and RTP through it:
//! `/metrics` passes `promtool check metrics` (Debian `prometheus`) and counts the
//! packets sent, the JSON API tells what NG `query` tells, the health probes answer,
//! and every metric the Grafana dashboard queries exists.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ferrelay::http::{self, to_json};
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `GET path` over HTTP/1.1 with `Connection: close`: (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("HTTP reply in time")
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// Names of the samples in a Prometheus text exposition.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no sample {prefix} in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn promtool_check(text: &str) {
    let promtool = std::env::var("FERRELAY_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {promtool} ({e}): install Debian package `prometheus` (scripts/deps/observability.apt)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- metrics ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_api_and_probes_over_a_live_call() {
    // Stats polls far apart: the call's counters change only when NG `query` asks,
    // so the HTTP view and the NG reply can be compared exactly.
    let relay = relay_ticking(Duration::from_secs(30), |_| {}).await;
    let web = http::start("127.0.0.1:0".parse().unwrap(), &relay, 100)
        .await
        .unwrap();
    let mut ng = Ng::new(relay.ng_udp).await;
    let (a, b) = (bind().await, bind().await);
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let r = ng.call(&offer("web-1", "tagA", &sdp(pa, ""), vec![])).await;
    let to_b_side = media_port(&reply_sdp(&r));
    let r = ng
        .call(&answer("web-1", "tagA", "tagB", &sdp(pb, ""), vec![]))
        .await;
    let to_a_side = media_port(&reply_sdp(&r));
    for seq in 0..20u16 {
        send_until(&a, at(to_a_side), &rtp(0, seq, 0x1111, 1), &b).await;
        send_until(&b, at(to_b_side), &rtp(0, seq, 0x2222, 2), &a).await;
    }

    assert_eq!(get(web.addr, "/healthz").await.0, 200);
    // Ready once every worker has published a report (every second), with the
    // packets above in it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let (st, m) = get(web.addr, "/metrics").await;
        assert_eq!(st, 200);
        if get(web.addr, "/readyz").await.0 == 200
            && m.contains("ferrelay_worker_sent_packets_total{worker=")
            && sample(&m, "ferrelay_worker_sent_packets_total{worker=\"0\"}") >= 40.0
        {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no worker report with 40 packets:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    promtool_check(&metrics);
    // `send_until` resends a packet only while the flow is being installed.
    let sent = sample(&metrics, "ferrelay_worker_sent_packets_total{worker=\"0\"}");
    assert!(sent >= 40.0);
    assert!(
        sample(
            &metrics,
            "ferrelay_worker_received_packets_total{worker=\"0\"}"
        ) >= sent
    );
    assert_eq!(sample(&metrics, "ferrelay_calls "), 1.0);
    assert_eq!(sample(&metrics, "ferrelay_legs "), 2.0);
    // Two parties, RTP and RTCP each: four flows, four ports.
    assert_eq!(sample(&metrics, "ferrelay_flows "), 4.0);
    assert_eq!(sample(&metrics, "ferrelay_ports_in_use "), 4.0);
    assert_eq!(sample(&metrics, "ferrelay_ports_free "), 196.0);
    assert_eq!(
        sample(&metrics, "ferrelay_residence_seconds_count{worker=\"0\"}"),
        sent
    );
    assert_eq!(
        sample(
            &metrics,
            "ferrelay_residence_seconds_bucket{le=\"+Inf\",worker=\"0\"}"
        ),
        sent
    );
    assert!(metrics.contains("ferrelay_worker_io_backend{worker=\"0\",backend="));
    assert!(sample(&metrics, "ferrelay_ng_requests_total ") >= 2.0);
    // The offer and the answer are held for retransmissions, with their bytes.
    let cached = sample(&metrics, "ferrelay_ng_cache_entries ");
    assert!(cached >= 2.0, "{cached} replies cached");
    assert!(sample(&metrics, "ferrelay_ng_cache_bytes ") > 64.0 * cached);
    // The NG server's bounds are visible, and nothing hit them here.
    for bound in [
        "ferrelay_ng_cache_evictions_total ",
        "ferrelay_ng_queries_not_waited_total ",
        "ferrelay_ng_tcp_refused_total ",
    ] {
        assert_eq!(sample(&metrics, bound), 0.0, "{bound}");
    }

    // The API tells what NG `query` tells, field for field.
    let q = ng.call(&cmd("query", "web-1")).await;
    assert_eq!(result(&q), "ok");
    let (st, body) = get(web.addr, "/api/v1/calls/web-1").await;
    assert_eq!(st, 200, "{body}");
    let mut want = to_json(&q);
    want.as_object_mut().unwrap().remove("result");
    want["call-id"] = Json::from("web-1");
    let got: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(got, want);
    assert!(
        got["totals"]["RTP"]["packets"].as_i64().unwrap() >= 40,
        "{got}"
    );

    let (st, body) = get(web.addr, "/api/v1/calls").await;
    assert_eq!(st, 200);
    let list: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(list["calls"].as_array().unwrap().len(), 1);
    assert_eq!(list["calls"][0], want);

    let (st, body) = get(web.addr, "/api/v1/calls/nope").await;
    assert_eq!(st, 404, "{body}");

    let (st, body) = get(web.addr, "/api/v1/stats").await;
    assert_eq!(st, 200);
    let stats: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(
        stats["statistics"]["currentstatistics"]["sessionsown"], 1,
        "{stats}"
    );
    assert_eq!(stats["relay"]["calls"], 1);
    assert_eq!(stats["relay"]["workers"].as_array().unwrap().len(), 1);

    let (st, page) = get(web.addr, "/").await;
    assert_eq!(st, 200);
    assert!(page.contains("dashboard.js"));
    assert_eq!(get(web.addr, "/dashboard.js").await.0, 200);

    grafana_queries_exist(&metrics);
    web.shutdown().await;
    relay.shutdown().await;
}

/// Every `ferrelay_*` name in the Grafana dashboard's queries is a sample name (or
/// the family of one) in `/metrics`.
fn grafana_queries_exist(metrics: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../perf/grafana/ferrelay.json");
    let dash: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .expect("perf/grafana/ferrelay.json is valid JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 6, "too few queries: {exprs:?}");
    let names = sample_names(metrics);
    let mut checked = 0;
    for e in &exprs {
        for (i, _) in e.match_indices("ferrelay_") {
            let name: String = e[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                names.contains(&name),
                "Grafana queries {name} (in `{e}`), not in /metrics: {names:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= exprs.len());
}

fn collect_exprs(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Json::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Json::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The binary with `--log-format json` writes one JSON object a line (the HTTP
/// listener's line carries its bound address) and serves `/healthz` there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_logs_json_and_serves_http() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferrelay"))
        .args([
            "--log-format",
            "json",
            "--listen-ng",
            "127.0.0.1:0",
            "--listen-tcp-ng",
            "127.0.0.1:0",
            "--listen-http",
            "127.0.0.1:0",
            "--port-min",
            "47800",
            "--port-max",
            "47899",
            "--workers",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let addr: SocketAddr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no HTTP listening line in {seen:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("ferrelay exited; logged {seen:?}"));
        let v: Json = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{v}");
        seen.push(line);
        if v["message"] == "HTTP metrics, API and dashboard listening" {
            break v["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    let (st, body) = get(addr, "/healthz").await;
    assert_eq!((st, body.as_str()), (200, "ok\n"));
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
