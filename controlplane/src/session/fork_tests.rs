//! Forked calls: answers from several branches of one offer, and `delete` of one
//! branch, checked against the flows a recording backend holds.

use std::time::{Duration, Instant};

use ferrelay_engine::LatchMode;

use super::backend::fake::FakeBackend;
use super::tests::{cfg, port_of, req, sdp};
use super::*;

/// Sessions whose `delete` takes effect at once (the delay has a test of its own).
fn sessions(pairs: u16) -> Sessions<FakeBackend> {
    let mut c = cfg(pairs);
    c.delete_delay = Duration::ZERO;
    Sessions::new(c, FakeBackend::new(2), Instant::now())
}

fn offer(s: &mut Sessions<FakeBackend>, call: &str) -> u16 {
    let o = sdp("192.0.2.10", 5000, "");
    let r = s.offer(
        &req(&[("call-id", call), ("from-tag", "A"), ("sdp", &o)], &[]),
        Instant::now(),
    );
    port_of(&r.unwrap())
}

fn answer(s: &mut Sessions<FakeBackend>, call: &str, tag: &str, port: u16) -> Result<u16, String> {
    let a = sdp("198.51.100.2", port, "");
    let r = req(
        &[
            ("call-id", call),
            ("from-tag", "A"),
            ("to-tag", tag),
            ("sdp", &a),
            ("via-branch", &format!("z9hG4bK-{tag}")),
        ],
        &[],
    );
    s.answer(&r, Instant::now()).map(|r| port_of(&r))
}

fn delete(s: &mut Sessions<FakeBackend>, pairs: &[(&str, &str)]) -> Result<Value, String> {
    s.delete(&req(pairs, &[]), Instant::now())
}

/// Where the flow on relay port `p` sends (its signalled remote's port).
fn remote_of(s: &Sessions<FakeBackend>, p: u16) -> Option<u16> {
    s.backend().rule_on(p).unwrap().1.remote.map(|a| a.port())
}

fn tags(s: &Sessions<FakeBackend>, call: &str) -> Vec<(String, usize)> {
    s.calls[call]
        .monologues
        .iter()
        .map(|m| (m.tag().to_string(), m.sides.len()))
        .collect()
}

#[test]
fn a_forked_answer_takes_the_media_on_the_ports_every_fork_was_offered() {
    let mut s = sessions(10);
    let to_b = offer(&mut s, "k");
    let to_a = answer(&mut s, "k", "B1", 6000).unwrap();
    assert_eq!(remote_of(&s, to_b), Some(6000));
    let before = s.backend().commands;
    // A second 18x/200 from another fork: same relay ports both ways.
    assert_eq!(answer(&mut s, "k", "B2", 7000), Ok(to_a));
    assert_eq!(remote_of(&s, to_b), Some(7000), "media from A goes to B2");
    assert_eq!(s.backend().flows.len(), 4, "no port or flow added");
    assert_eq!(s.ports_in_use(), 2);
    assert_eq!(
        tags(&s, "k"),
        [("A".into(), 1), ("B1".into(), 0), ("B2".into(), 1)]
    );
    assert_eq!(s.calls["k"].monologues[0].peer(), Some("B2"));
    // The fork's side first forgot B1's latched address (a Fixed rule), then
    // learns again.
    assert!(s.backend().commands >= before + 2 * 2);
    assert_eq!(
        s.backend().rule_on(to_b).unwrap().1.latch,
        LatchMode::LatchFirst
    );
    // B1 answers (its 200 after B2's 183): the media goes back to it.
    assert_eq!(answer(&mut s, "k", "B1", 6000), Ok(to_a));
    assert_eq!(remote_of(&s, to_b), Some(6000));
    assert_eq!(
        tags(&s, "k"),
        [("A".into(), 1), ("B1".into(), 1), ("B2".into(), 0)]
    );
    let q = s.query(&req(&[("call-id", "k")], &[])).unwrap();
    let t = q.get("tags").unwrap();
    assert!(t.get("B2").is_some() && t.get("B1").is_some());
}

#[test]
fn delete_of_the_losing_branch_keeps_the_call_and_its_media() {
    let mut s = sessions(10);
    let to_b = offer(&mut s, "k");
    answer(&mut s, "k", "B1", 6000).unwrap();
    answer(&mut s, "k", "B2", 7000).unwrap();
    delete(
        &mut s,
        &[("call-id", "k"), ("from-tag", "A"), ("to-tag", "B1")],
    )
    .unwrap();
    assert_eq!(tags(&s, "k"), [("A".into(), 1), ("B2".into(), 1)]);
    assert_eq!((s.backend().flows.len(), s.ports_in_use()), (4, 2));
    assert_eq!(remote_of(&s, to_b), Some(7000));
    // The last branch: the whole call.
    delete(
        &mut s,
        &[("call-id", "k"), ("from-tag", "A"), ("to-tag", "B2")],
    )
    .unwrap();
    assert!(!s.calls.contains_key("k"));
    assert_eq!((s.backend().flows.len(), s.ports_in_use()), (0, 0));
}

#[test]
fn delete_of_the_live_branch_hands_the_media_to_the_other_fork() {
    let mut s = sessions(10);
    let to_b = offer(&mut s, "k");
    answer(&mut s, "k", "B1", 6000).unwrap();
    answer(&mut s, "k", "B2", 7000).unwrap();
    // The callee's side of a BYE names the tags the other way round.
    delete(
        &mut s,
        &[("call-id", "k"), ("from-tag", "B2"), ("to-tag", "A")],
    )
    .unwrap();
    assert_eq!(tags(&s, "k"), [("A".into(), 1), ("B1".into(), 1)]);
    assert_eq!(s.calls["k"].monologues[0].peer(), Some("B1"));
    assert_eq!((s.backend().flows.len(), s.ports_in_use()), (4, 2));
    // B1's own answer said where it wants media: it gets it at once.
    assert_eq!(remote_of(&s, to_b), Some(6000));
    assert!(s.calls["k"].deleting().is_none());
    answer(&mut s, "k", "B1", 6002).unwrap();
    assert_eq!(remote_of(&s, to_b), Some(6002));
}

#[test]
fn delete_by_via_branch_or_tag_alone_follows_rtpengine() {
    let mut s = sessions(20);
    offer(&mut s, "v");
    answer(&mut s, "v", "B1", 6000).unwrap();
    answer(&mut s, "v", "B2", 7000).unwrap();
    // via-branch names B1's fork.
    delete(
        &mut s,
        &[
            ("call-id", "v"),
            ("from-tag", "A"),
            ("via-branch", "z9hG4bK-B1"),
        ],
    )
    .unwrap();
    assert_eq!(tags(&s, "v"), [("A".into(), 1), ("B2".into(), 1)]);

    // from-tag alone: a fork among several ends alone ...
    offer(&mut s, "f");
    answer(&mut s, "f", "B1", 6000).unwrap();
    answer(&mut s, "f", "B2", 7000).unwrap();
    delete(&mut s, &[("call-id", "f"), ("from-tag", "B1")]).unwrap();
    assert_eq!(tags(&s, "f"), [("A".into(), 1), ("B2".into(), 1)]);
    // ... the offerer's tag ends the whole call.
    delete(&mut s, &[("call-id", "f"), ("from-tag", "A")]).unwrap();
    assert!(!s.calls.contains_key("f"));

    // An unforked call ends whole whatever the tags say, as before.
    offer(&mut s, "u");
    answer(&mut s, "u", "B", 6000).unwrap();
    assert_eq!(
        delete(&mut s, &[("call-id", "u"), ("to-tag", "X")]).unwrap_err(),
        "Unknown to-tag"
    );
    delete(
        &mut s,
        &[("call-id", "u"), ("from-tag", "A"), ("to-tag", "B")],
    )
    .unwrap();
    assert!(!s.calls.contains_key("u"));
}

#[test]
fn a_branch_delete_waits_for_delete_delay_and_a_new_answer_calls_it_off() {
    let t0 = Instant::now();
    let mut c = cfg(10);
    c.timeout = Duration::from_secs(3600); // no media in this test
    let mut s = Sessions::new(c, FakeBackend::new(1), t0);
    let to_b = offer(&mut s, "d");
    answer(&mut s, "d", "B1", 6000).unwrap();
    answer(&mut s, "d", "B2", 7000).unwrap();
    let live = [("call-id", "d"), ("from-tag", "A"), ("to-tag", "B2")];
    s.delete(&req(&live, &[]), t0).unwrap();
    // As for a whole call (30 s here): the fork and its media go on meanwhile,
    // and a repeated delete keeps the first deadline.
    s.delete(&req(&live, &[]), t0 + Duration::from_secs(20))
        .unwrap();
    s.tick(t0 + Duration::from_secs(29));
    assert_eq!(tags(&s, "d").len(), 3);
    assert_eq!(remote_of(&s, to_b), Some(7000));
    s.tick(t0 + Duration::from_secs(30));
    assert_eq!(tags(&s, "d"), [("A".into(), 1), ("B1".into(), 1)]);
    assert_eq!(remote_of(&s, to_b), Some(6000), "B1 takes over");

    // A fork that answers again within the delay stays.
    answer(&mut s, "d", "B2", 7002).unwrap();
    let b1 = [("call-id", "d"), ("from-tag", "A"), ("to-tag", "B1")];
    let b2 = [("call-id", "d"), ("from-tag", "A"), ("to-tag", "B2")];
    s.delete(&req(&b2, &[]), t0 + Duration::from_secs(40))
        .unwrap();
    answer(&mut s, "d", "B2", 7004).unwrap();
    s.tick(t0 + Duration::from_secs(75));
    assert_eq!(tags(&s, "d").len(), 3);
    assert_eq!(remote_of(&s, to_b), Some(7004));
    // Both forks deleted: the first to come due ends alone, the last one ends
    // the call with it.
    s.delete(&req(&b1, &[]), t0 + Duration::from_secs(80))
        .unwrap();
    s.delete(&req(&b2, &[]), t0 + Duration::from_secs(81))
        .unwrap();
    s.tick(t0 + Duration::from_secs(110));
    assert_eq!(tags(&s, "d"), [("A".into(), 1), ("B2".into(), 1)]);
    s.tick(t0 + Duration::from_secs(111));
    assert!(!s.calls.contains_key("d"));
    // The delay has passed already: the ports are free at once.
    assert_eq!((s.backend().flows.len(), s.ports_in_use()), (0, 0));
}
