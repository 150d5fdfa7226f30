//! The live dashboard in a real browser: headless Chromium (Debian `chromium`)
//! loads `/` from an in-process relay while RTP flows through four calls set up
//! by NG, and the test reads back, over the DevTools protocol, what the page's
//! charts received (the page writes its update and point counts into the DOM). A screenshot is kept in
//! `target/test-artifacts/dashboard.png`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use ferrelay::http;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value as Json, json};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const CALLS: usize = 4;
/// Packets per second per direction per call.
const PPS: u64 = 50;

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn chromium() -> String {
    std::env::var("FERRELAY_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Headless Chromium driven over the DevTools protocol (a WebSocket): the page
/// keeps its event stream open, so one-shot `--dump-dom` would read it before any
/// update arrived (and `--virtual-time-budget` waits on that stream forever).
struct Browser {
    child: Child,
    profile: PathBuf,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next: u64,
    session: Option<String>,
}

impl Browser {
    async fn launch() -> Browser {
        let profile =
            std::env::temp_dir().join(format!("ferrelay-chromium-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1440,1240",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): install Debian package `chromium` (scripts/deps/observability.apt)",
                    chromium()
                )
            });
        // Chromium writes its port and browser endpoint here once it listens.
        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(20);
        let endpoint = loop {
            if let Ok(t) = std::fs::read_to_string(&port_file)
                && let Some((port, path)) = t.split_once('\n')
                && !path.trim().is_empty()
            {
                break format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
            }
            if Instant::now() > deadline {
                let _ = child.start_kill();
                panic!("chromium never opened its DevTools port");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .expect("DevTools WebSocket");
        Browser {
            child,
            profile,
            ws,
            next: 0,
            session: None,
        }
    }

    /// One DevTools command; returns its `result` (events in between are skipped).
    async fn call(&mut self, method: &str, params: Json) -> Json {
        self.next += 1;
        let mut msg = json!({ "id": self.next, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no DevTools answer to {method}"))
                .expect("DevTools stream open")
                .unwrap();
            let Message::Text(t) = m else { continue };
            let v: Json = serde_json::from_str(t.as_str()).unwrap();
            if v["id"] == json!(self.next) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Opens `url` in a new page and talks to that page from now on.
    async fn open(&mut self, url: &str) {
        let t = self
            .call("Target.createTarget", json!({ "url": url }))
            .await;
        let target = t["targetId"].clone();
        let a = self
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await;
        self.session = Some(a["sessionId"].as_str().unwrap().to_owned());
    }

    async fn eval(&mut self, expr: &str) -> Json {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true }),
            )
            .await;
        r["result"]["value"].clone()
    }

    async fn screenshot(&mut self, to: &Path) -> usize {
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(to, &png).unwrap();
        png.len()
    }

    async fn close(mut self) {
        self.session = None;
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.call("Browser.close", json!({})),
        )
        .await;
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// What the page reports about itself: update count, last rates, chart points.
const PROBE: &str = r#"JSON.stringify({
  frames: +document.body.dataset.frames,
  pps: +(document.body.dataset.lastPps || 0),
  calls: +(document.body.dataset.lastCalls || -1),
  charts: Object.fromEntries([...document.querySelectorAll("canvas[data-points]")]
    .map(c => [c.id, +c.dataset.points])),
  conn: document.getElementById("conn").textContent
})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_charts_receive_live_data_in_chromium() {
    let relay = relay_with(|c| c.workers = 2).await;
    let web = http::start("127.0.0.1:0".parse().unwrap(), &relay, 100)
        .await
        .unwrap();
    let mut ng = Ng::new(relay.ng_udp).await;

    // Four calls, each with two parties sending to the relay.
    let mut legs = Vec::new();
    for i in 0..CALLS {
        let (a, b) = (bind().await, bind().await);
        let (pa, pb) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        let id = format!("dash-{i}");
        let r = ng.call(&offer(&id, "A", &sdp(pa, ""), vec![])).await;
        let to_b = media_port(&reply_sdp(&r));
        let r = ng.call(&answer(&id, "A", "B", &sdp(pb, ""), vec![])).await;
        let to_a = media_port(&reply_sdp(&r));
        send_until(&a, at(to_a), &rtp(0, 0, 0x100 + i as u32, 1), &b).await;
        legs.push((Arc::new(a), at(to_a)));
        legs.push((Arc::new(b), at(to_b)));
    }

    // Load for at most 30 s; stopped as soon as the browser is done.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, sent) = (stop.clone(), sent.clone());
        tokio::spawn(async move {
            let t0 = Instant::now();
            let mut iv = tokio::time::interval(Duration::from_millis(1000 / PPS));
            let mut seq = 1u16;
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(30) {
                iv.tick().await;
                for (k, (sock, to)) in legs.iter().enumerate() {
                    // Call k/2 sends at a rate rising with k, so the top-calls
                    // chart has an order to show.
                    if u64::from(seq) % (1 + (legs.len() - k) as u64 / 2) != 0 {
                        continue;
                    }
                    let pkt = rtp(0, seq, 0x100 + k as u32, 7);
                    if sock.send_to(&pkt, to).await.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                seq = seq.wrapping_add(1);
            }
        })
    };

    let deadline = Instant::now() + Duration::from_secs(5);
    while !relay.observatory().ready() {
        assert!(Instant::now() < deadline, "workers never reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let out_dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/test-artifacts"
    ));
    std::fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join("dashboard.png");

    let mut browser = Browser::launch().await;
    browser.open(&format!("http://{}/", web.addr)).await;
    // Updates come once a second; wait for enough of them to draw lines.
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        let v: Json = match browser.eval(PROBE).await {
            Json::String(s) => serde_json::from_str(&s).unwrap(),
            _ => json!({ "frames": 0 }),
        };
        if v["frames"].as_u64().unwrap_or(0) >= 6 {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "page got too few live updates: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let png = browser.screenshot(&shot).await;
    browser.close().await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    assert_eq!(page["conn"], "live", "{page}");
    assert!(
        page["pps"].as_f64().unwrap() > 0.0,
        "no packet rate reached the page: {page}"
    );
    assert_eq!(page["calls"], CALLS as u64, "{page}");
    for chart in ["c-pps", "c-lat", "c-drops", "c-calls", "c-ports"] {
        let points = page["charts"][chart].as_u64().unwrap_or(0);
        assert!(points >= 6, "chart {chart} has {points} points: {page}");
    }
    assert_eq!(
        page["charts"]["c-top"], CALLS as u64,
        "top-calls rows: {page}"
    );
    assert!(
        png > 20_000,
        "screenshot {} is only {png} bytes",
        shot.display()
    );
    assert!(sent.load(Ordering::Relaxed) > 0);
    web.shutdown().await;
    relay.shutdown().await;
}

/// `perf/render/render.py` turns a benchmark result and a `ferrelay-load --json`
/// report into one self-contained HTML page with a plot per section.
#[test]
fn report_renderer_renders_the_fixtures() {
    let python = std::env::var("FERRELAY_PYTHON").unwrap_or_else(|_| "python3".into());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out_dir = PathBuf::from(root).join("target/test-artifacts");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("report-fixture.html");
    let _ = std::fs::remove_file(&out);
    let run = std::process::Command::new(&python)
        .arg(format!("{root}/perf/render/render.py"))
        .arg("-o")
        .arg(&out)
        .arg(format!("{root}/perf/render/fixtures/bench-small.json"))
        .arg(format!("{root}/perf/render/fixtures/load-small.json"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} ({e}): set FERRELAY_PYTHON to the project venv")
        });
    assert!(
        run.status.success(),
        "render.py failed (matplotlib is pinned in tests/requirements.txt):\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let page = std::fs::read_to_string(&out).unwrap();
    // CPU per packet, latency and scaling for the benchmark; latency and per-call
    // histograms for the load report: five plots, all inline.
    assert_eq!(page.matches("<svg").count(), 5, "{page}");
    for text in [
        "fixture: ferrelay vs fwd-uring",
        "Scaling by worker count",
        "CPU per packet by relay",
        "Load report: load-small",
        "lost 3 (0.100 %)",
        "0.96×",
    ] {
        assert!(page.contains(text), "{text} missing from the report");
    }
    // Self-contained: nothing to fetch (XML namespaces in the SVGs are names only).
    for fetch in ["src=\"http", "href=\"http", "<link", "<script", "url(http"] {
        assert!(
            !page.contains(fetch),
            "external reference {fetch} in the report"
        );
    }
}
