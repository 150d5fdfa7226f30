//! `ferrelay-ng` run as a process against the in-process relay: ping, an
//! offer/answer with SDP from stdin and from a file, query, list, statistics and
//! delete, in bencode and JSON, with the exit status scripts rely on.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::InProcess;

fn ng(relay: &InProcess, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrelay-ng"))
        .arg("--ng")
        .arg(relay.ng().to_string())
        .args(["--timeout-ms", "500"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

#[test]
fn ping_in_bencode_and_json() {
    let relay = InProcess::start(43_000);
    let o = ng(&relay, &["ping"], None);
    assert!(o.status.success());
    assert_eq!(o.stdout, b"d6:result4:ponge\n");
    assert_eq!(
        json(&ng(&relay, &["--json", "ping"], None))["result"],
        "pong"
    );
}

#[test]
fn a_call_from_offer_to_delete() {
    let relay = InProcess::start(43_200);
    let keys = ["--call-id", "cli-1", "--from-tag", "ft"];
    let mut offer = vec!["offer", "--json"];
    offer.extend(keys);
    let r = json(&ng(&relay, &offer, Some(&sdp(5000))));
    assert_eq!(r["result"], "ok", "{r}");
    assert!(r["sdp"].as_str().unwrap().contains("m=audio "), "{r}");

    let file = std::env::temp_dir().join(format!("ferrelay-ng-{}.sdp", std::process::id()));
    std::fs::write(&file, sdp(5002)).unwrap();
    let mut answer = vec![
        "answer",
        "--json",
        "--to-tag",
        "tt",
        "--sdp",
        file.to_str().unwrap(),
    ];
    answer.extend(keys);
    let r = json(&ng(&relay, &answer, None));
    std::fs::remove_file(&file).unwrap();
    assert_eq!(r["result"], "ok", "{r}");

    let r = json(&ng(
        &relay,
        &["query", "--json", "--call-id", "cli-1"],
        None,
    ));
    assert_eq!(r["result"], "ok", "{r}");
    assert!(r.get("tags").is_some(), "{r}");

    let r = json(&ng(&relay, &["list", "--json"], None));
    assert_eq!(r["calls"], serde_json::json!(["cli-1"]), "{r}");

    let o = ng(&relay, &["statistics"], None);
    assert!(o.status.success());
    assert!(
        o.stdout.starts_with(b"d") && o.stdout.ends_with(b"e\n"),
        "bencode dict"
    );

    let r = json(&ng(
        &relay,
        &["delete", "--json", "--call-id", "cli-1", "--from-tag", "ft"],
        None,
    ));
    assert_eq!(r["result"], "ok", "{r}");
}

#[test]
fn failures_exit_nonzero() {
    let relay = InProcess::start(43_400);
    // No such call: the relay says error, the exit status says so too.
    let o = ng(
        &relay,
        &["delete", "--call-id", "nope", "--from-tag", "x"],
        None,
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("error"),
        "{o:?}"
    );
    // Not SDP on stdin: refused before anything is sent.
    let o = ng(
        &relay,
        &["offer", "--call-id", "c", "--from-tag", "f"],
        Some("hello"),
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("SDP"), "{o:?}");
}
