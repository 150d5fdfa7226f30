//! Worker events against the sessions: counters, removals and refused commands
//! reach only the live flows of the call they name.

use std::time::Instant;

use super::backend::FlowCounters;
use super::tests::{answer_req, offer_req, req, sessions};
use super::*;

#[test]
fn worker_events_reach_only_live_flows() {
    let t0 = Instant::now();
    let mut s = sessions(10);
    s.offer(&offer_req("e", &[]), t0).unwrap();
    let flows: Vec<_> = s.installed_flows().collect();
    assert_eq!(flows.len(), 4);
    let (w, f) = flows[0];
    assert_eq!(s.call_of(w, f), Some("e"));
    let c = FlowCounters {
        packets: 3,
        bytes: 300,
        errors: 1,
        remote: None,
    };
    s.on_flow_stats(w, f, c, t0);
    let q = s.query(&req(&[("call-id", "e")], &[])).unwrap();
    let t = q.get("totals").unwrap();
    let sum = |k: &str| {
        ["RTP", "RTCP"]
            .iter()
            .map(|c| t.get(c).unwrap().get(k).and_then(Value::as_int).unwrap())
            .sum::<i64>()
    };
    assert_eq!((sum("packets"), sum("bytes"), sum("errors")), (3, 300, 1));
    s.delete(&req(&[("call-id", "e")], &[]), t0).unwrap();
    assert_eq!(
        s.call_of(w, f),
        Some("e"),
        "still relaying during delete-delay"
    );
    s.tick(t0 + Duration::from_secs(30));
    assert_eq!(s.call_of(w, f), None);
    // A late event for a removed flow is ignored.
    s.on_flow_stats(w, f, c, t0);
    assert_eq!(s.call_count(), 0);
    // The worker's final count adds what arrived after the last poll, once.
    let fin = FlowCounters {
        packets: 5,
        bytes: 500,
        ..c
    };
    s.on_flow_removed(w, f, fin);
    s.on_flow_removed(w, f, fin);
    let st = s.statistics(t0);
    let total = st
        .get("statistics")
        .unwrap()
        .get("totalstatistics")
        .unwrap();
    assert_eq!(total.get("relayedpackets").and_then(Value::as_int), Some(5));
    assert_eq!(total.get("relayedbytes").and_then(Value::as_int), Some(500));
}

#[test]
fn a_flow_the_worker_refused_is_freed_and_its_stream_marked_failed() {
    let t0 = Instant::now();
    let mut s = sessions(10);
    s.offer(&offer_req("f", &[]), t0).unwrap();
    let a = answer_req("f", &[]);
    s.answer(&a, t0).unwrap();
    assert_eq!(s.backend().flows.len(), 4);
    let (w, refused) = s.installed_flows().next().unwrap();
    s.on_flow_refused(w, refused, "flow slot already in use");
    // Both flows of that side are gone from the data plane and from the index.
    assert_eq!(s.backend().flows.len(), 2);
    assert_eq!(s.call_of(w, refused), None);
    assert_eq!(s.installed_flows().count(), 2);
    let failed: Vec<bool> = s.calls["f"]
        .monologues
        .iter()
        .flat_map(|m| m.sides.iter().map(|x| x.failed()))
        .collect();
    assert_eq!(failed.iter().filter(|f| **f).count(), 1, "{failed:?}");
    // `query` (and the HTTP API, which renders the same reply) shows which stream
    // failed: "failed" among the media's flags and each of its streams' flags.
    let q = s.query(&req(&[("call-id", "f")], &[])).unwrap();
    let flag_lists = |failed_only: bool| {
        let mut n = 0;
        let Some(Value::Dict(tags)) = q.get("tags") else {
            panic!("{q:?}")
        };
        for (_, t) in tags {
            for m in t.get("medias").unwrap().as_list().unwrap() {
                let has = |v: &Value| {
                    v.get("flags")
                        .unwrap()
                        .as_list()
                        .unwrap()
                        .iter()
                        .any(|f| f.as_str() == Some("failed"))
                };
                if has(m) == failed_only {
                    n += 1;
                    let streams = m.get("streams").unwrap().as_list().unwrap();
                    assert!(streams.iter().all(|st| has(st) == failed_only), "{q:?}");
                }
            }
        }
        n
    };
    assert_eq!((flag_lists(true), flag_lists(false)), (1, 1), "{q:?}");
    let json = crate::http::to_json(&q).to_string();
    assert_eq!(json.matches("\"failed\"").count(), 3, "{json}");
    // The worker's second refusal (the UpdateFlow that followed) changes nothing.
    s.on_flow_refused(w, refused, "no live flow with this id");
    assert_eq!(s.backend().flows.len(), 2);
    // A re-answer installs the side again and clears the mark.
    s.answer(&a, t0).unwrap();
    assert_eq!(s.backend().flows.len(), 4);
    assert!(
        s.calls["f"]
            .monologues
            .iter()
            .all(|m| m.sides.iter().all(|x| !x.failed() && x.flows.is_some()))
    );
    let q = s.query(&req(&[("call-id", "f")], &[])).unwrap();
    assert!(!crate::http::to_json(&q).to_string().contains("\"failed\""));
}
