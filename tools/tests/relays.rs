//! ferrelay-load against real relays: the in-process ferrelay (plain, SRTP on one
//! leg, SRTP on both legs) and rtpengine (plain, userspace forwarding). Calls are
//! placed over NG by the generator's own call source, each client keyed only from
//! the SDP the relay gave it, so a clean run proves both directions of every call
//! went through the relay intact (and, for SRTP, that its announced keys are the
//! ones it uses).

use std::net::SocketAddr;
use std::time::Duration;

mod common;

use common::InProcess;
use ferrelay_tools::modes::{self, Placer};
use ferrelay_tools::relay_proc::{self, RelayProcess, RelaySpec};
use ferrelay_tools::{LoadConfig, LoadReport, NgCallOptions, NgCalls, NgClient};

fn cfg() -> LoadConfig {
    LoadConfig {
        pps: 50,
        duration: Duration::from_millis(2000),
        warmup: Duration::from_millis(500),
        drain: Duration::from_millis(300),
        ..LoadConfig::default()
    }
}

fn place_and_run(ng: SocketAddr, a_srtp: bool, b_srtp: bool, calls: usize) -> LoadReport {
    let client = NgClient::new(ng, Duration::from_millis(1000)).unwrap();
    let mut placer = Placer::Ng(NgCalls::new(
        client,
        NgCallOptions {
            a_srtp,
            b_srtp,
            call_id_prefix: format!("relays-{a_srtp}-{b_srtp}"),
            ..NgCallOptions::default()
        },
    ));
    modes::run_once(
        &mut placer,
        &cfg(),
        calls,
        Duration::from_millis(100),
        &mut |_| {},
    )
    .expect("load run")
}

/// Zero loss both ways, payload intact, every packet accounted for.
fn assert_clean(r: &LoadReport, srtp_streams: usize) {
    assert!(r.sent >= r.streams as u64 * 60, "{r}");
    assert!(r.clean(), "{r}");
    assert_eq!(r.received, r.sent, "{r}");
    assert_eq!(r.srtp_streams, srtp_streams, "{r}");
    assert_eq!((r.foreign, r.reordered), (0, 0), "{r}");
    let setup = r.setup.expect("NG setup figures");
    assert!(setup.calls_per_s > 0.0, "{r}");
    for c in &r.per_call {
        assert!(c.a_to_b.received > 0 && c.b_to_a.received > 0, "{c:?}");
    }
}

#[test]
fn ferrelay_plain() {
    let relay = InProcess::start(41_000);
    let r = place_and_run(relay.ng(), false, false, 4);
    assert_clean(&r, 0);
}

#[test]
fn ferrelay_srtp_on_one_leg() {
    let relay = InProcess::start(41_200);
    // B's leg is SRTP: A sends plain, B gets SRTP and sends SRTP.
    let r = place_and_run(relay.ng(), false, true, 3);
    assert_clean(&r, 3);
    // A's leg SRTP, B plain: the other direction of the bridge.
    let r = place_and_run(relay.ng(), true, false, 3);
    assert_clean(&r, 3);
}

#[test]
fn ferrelay_srtp_on_both_legs() {
    let relay = InProcess::start(41_400);
    let r = place_and_run(relay.ng(), true, true, 3);
    assert_clean(&r, 6);
}

#[test]
fn ferrelay_calls_are_deleted_after_the_run() {
    let relay = InProcess::start(41_600);
    let _ = place_and_run(relay.ng(), false, false, 2);
    let mut c = NgClient::new(relay.ng(), Duration::from_millis(1000)).unwrap();
    let list = c
        .call_ok(&ferrelay_tools::ng::request(vec![(
            "command",
            ferrelay::ng::Value::str("list"),
        )]))
        .unwrap();
    let ids = list
        .get("calls")
        .and_then(|v| v.as_list())
        .map_or(0, <[_]>::len);
    assert_eq!(ids, 0, "{list:?}");
}

/// rtpengine in userspace, started as the relay comparison starts it; killed when
/// dropped. Its log goes to the temporary directory.
fn rtpengine(port_min: u16) -> RelayProcess {
    let spec = RelaySpec::rtpengine(port_min, port_min + 199).unwrap();
    let logs = std::env::temp_dir().join(format!("ferrelay-tools-relays-{port_min}"));
    std::fs::create_dir_all(&logs).unwrap();
    relay_proc::start(&spec, None, &logs).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn rtpengine_plain() {
    let rtpe = rtpengine(42_000);
    let r = place_and_run(rtpe.ng, false, false, 3);
    assert_clean(&r, 0);
}

/// rtpengine's SDES against the generator's keys: bridged and re-keyed.
#[test]
fn rtpengine_srtp() {
    let rtpe = rtpengine(42_200);
    let r = place_and_run(rtpe.ng, false, true, 2);
    assert_clean(&r, 2);
    let r = place_and_run(rtpe.ng, true, true, 2);
    assert_clean(&r, 4);
}
