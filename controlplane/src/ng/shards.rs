//! The control plane in shards: calls are spread over several [`Controller`]s by a
//! hash of their call-id, each behind its own lock, so NG threads working on
//! different calls run side by side instead of queueing on one lock (measured on
//! 2 cores: two threads sharing one lock cost 73 µs per offer+answer+delete cycle
//! against 51 µs for one thread, all of it in lock hand-offs).
//!
//! A request is routed by a scan of its top-level keys, before anything is decoded
//! or locked. Everything about one call (its retransmissions and their cached
//! replies included) lives in one shard. The shards share the port pools and the
//! data plane; `list` and `statistics` read every shard in turn.

use std::hash::{BuildHasher, RandomState};

use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::Value;
use super::commands::{Controller, NgCounts, error_reply, mentions_query, split_cookie};
use crate::session::backend::MediaBackend;
use crate::session::flags::{self, eq_norm};
use crate::session::query::{self, StatsInput};

/// The controllers of one relay, and the NG counters that belong to no call.
#[derive(Debug)]
pub struct Shards<B> {
    shards: Box<[Mutex<Controller<B>>]>,
    /// Randomly keyed, so nobody can aim every call of a flood at one shard.
    hasher: RandomState,
    /// `query` requests answered at once from the last polled counters because
    /// too many were already waiting for fresh ones (see `ng::server`).
    pub queries_not_waited: AtomicU64,
    /// NG TCP connections closed at once at the connection cap (`ng::server`).
    pub tcp_refused: AtomicU64,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The shard of its call (or shard 0 when it names none: it fails there).
    Shard(usize),
    /// `list` or `statistics`: every shard.
    All(Global),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    List,
    Statistics,
}

impl<B: MediaBackend> Shards<B> {
    /// Shards over `controllers` (at least one).
    pub fn new(controllers: Vec<Controller<B>>) -> Self {
        assert!(!controllers.is_empty(), "at least one shard");
        Shards {
            shards: controllers.into_iter().map(Mutex::new).collect(),
            hasher: RandomState::new(),
            queries_not_waited: AtomicU64::new(0),
            tcp_refused: AtomicU64::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Shard `i`; a panic elsewhere while it was held leaves it usable.
    pub fn lock(&self, i: usize) -> MutexGuard<'_, Controller<B>> {
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shard that holds the call `call_id`.
    pub fn shard_of(&self, call_id: &[u8]) -> usize {
        if self.shards.len() == 1 {
            return 0;
        }
        (self.hasher.hash_one(call_id) % self.shards.len() as u64) as usize
    }

    fn route(&self, body: &[u8]) -> Route {
        // One shard holds every call and answers `list` and `statistics` itself
        // (over the same sessions, so with the same bytes): nothing to look for.
        if self.shards.len() == 1 {
            return Route::Shard(0);
        }
        let keys = TopKeys::scan(body);
        match keys.command {
            Some(c) if eq_norm(c, b"list") => Route::All(Global::List),
            Some(c) if eq_norm(c, b"statistics") => Route::All(Global::Statistics),
            _ => Route::Shard(keys.call_id.map_or(0, |id| self.shard_of(id))),
        }
    }

    /// Answers one complete message (see [`Controller::handle`]); worker wake-ups
    /// wait for [`Shards::flush`]. Returns the shard it ran on, to flush.
    pub fn handle_unflushed(&self, msg: &[u8], now: Instant) -> (Option<Bytes>, usize) {
        let Some((cookie, body)) = split_cookie(msg) else {
            return (None, 0);
        };
        match self.route(body) {
            Route::Shard(i) => (self.lock(i).handle_unflushed(msg, now), i),
            Route::All(g) => (Some(self.global(cookie, body, g, now).into()), 0),
        }
    }

    /// Answers one message and wakes the workers for what it queued.
    pub fn handle(&self, msg: &[u8], now: Instant) -> Option<Bytes> {
        let (reply, shard) = self.handle_unflushed(msg, now);
        self.flush(shard);
        reply
    }

    /// Wakes every worker that shard `i` queued commands for.
    pub fn flush(&self, i: usize) {
        self.lock(i).flush();
    }

    /// See [`Controller::prefetch`]: true when a `query` asked for fresh counters.
    pub fn prefetch(&self, msg: &[u8], now: Instant) -> bool {
        let Some((_, body)) = split_cookie(msg) else {
            return false;
        };
        if !mentions_query(body) {
            return false;
        }
        match self.route(body) {
            Route::Shard(i) => self.lock(i).prefetch(msg, now),
            Route::All(_) => false,
        }
    }

    /// Runs one decoded request on its call's shard (the SIP front end's way in).
    pub fn execute(&self, req: &Value, now: Instant) -> Value {
        let shard = match flags::lookup(req, "call-id").and_then(Value::as_bytes) {
            Some(id) => self.shard_of(id),
            None => 0,
        };
        self.lock(shard).execute(req, now)
    }

    /// `list` or `statistics` over every shard, counted on shard 0.
    fn global(&self, cookie: &[u8], body: &[u8], g: Global, now: Instant) -> Vec<u8> {
        let (name, reply) = match (g, Value::decode(body)) {
            (_, Err(e)) => ("other", Err(format!("Failed to decode bencode: {e}"))),
            (Global::List, Ok(req)) => ("list", self.list(&req)),
            (Global::Statistics, Ok(_)) => ("statistics", Ok(None)),
        };
        self.lock(0).answered(name, reply.is_ok());
        let mut out = Vec::with_capacity(cookie.len() + 512);
        out.extend_from_slice(cookie);
        out.push(b' ');
        match reply {
            Ok(Some(v)) => v.encode_into(&mut out),
            Ok(None) => query::statistics_reply(&self.stats_input(now), &mut out),
            Err(e) => error_reply(&e).encode_into(&mut out),
        }
        out
    }

    /// NG `list` over every shard: call ids in order, at most `limit`.
    pub fn list(&self, req: &Value) -> Result<Option<Value>, String> {
        let limit = query::list_limit(req)?;
        let mut ids = Vec::new();
        for i in 0..self.shards.len() {
            ids.extend(self.lock(i).sessions.call_ids().map(Box::<str>::from));
        }
        ids.sort_unstable();
        Ok(Some(query::list_reply(
            ids.iter().map(|s| &**s).take(limit),
        )))
    }

    /// NG `statistics` over every shard.
    pub fn statistics(&self, now: Instant) -> Value {
        let mut out = Vec::new();
        query::statistics_reply(&self.stats_input(now), &mut out);
        // The writer's own output always decodes; an empty dict is unreachable.
        Value::decode(&out).unwrap_or(Value::Dict(Vec::new()))
    }

    /// The sums `statistics` and the metrics report.
    pub fn stats_input(&self, now: Instant) -> StatsInput {
        let mut sum = self.lock(0).sessions.stats_input(now);
        for i in 1..self.shards.len() {
            sum.add(&self.lock(i).sessions.stats_input(now));
        }
        sum
    }

    /// The sum of `f` over every shard.
    pub fn sum(&self, f: impl Fn(&Controller<B>) -> u64) -> u64 {
        (0..self.shards.len()).map(|i| f(&self.lock(i))).sum()
    }

    /// NG requests by command and result, over every shard.
    pub fn counts(&self) -> NgCounts {
        let mut c = NgCounts::default();
        for i in 0..self.shards.len() {
            c.add(&self.lock(i).counts);
        }
        c
    }

    /// Counts a `query` answered without waiting (see `ng::server::QueryWaits`).
    pub fn query_not_waited(&self) {
        self.queries_not_waited.fetch_add(1, Ordering::Relaxed);
    }
}

/// The string values of the first `command` and `call-id` keys of a request's
/// top-level dict (keys compared as the sessions compare them), found without
/// decoding or allocating: for every request that decodes, exactly what the
/// sessions will read (the `bencode` fuzz target checks this), so all requests
/// of a call reach its shard. A first key whose value is not a string yields
/// nothing, as the sessions refuse it. A malformed request may yield anything:
/// its shard's full decode gives the error reply.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TopKeys<'a> {
    pub command: Option<&'a [u8]>,
    pub call_id: Option<&'a [u8]>,
}

impl<'a> TopKeys<'a> {
    pub fn scan(body: &'a [u8]) -> Self {
        let mut keys = TopKeys::default();
        let _ = keys.walk(body);
        keys
    }

    fn walk(&mut self, b: &'a [u8]) -> Option<()> {
        if b.first() != Some(&b'd') {
            return None;
        }
        let (mut seen_command, mut seen_call_id) = (false, false);
        let mut at = 1;
        while *b.get(at)? != b'e' {
            let (key, next) = string(b, at)?;
            let is_command = !seen_command && eq_norm(key, b"command");
            let is_call_id = !seen_call_id && eq_norm(key, b"call-id");
            seen_command |= is_command;
            seen_call_id |= is_call_id;
            if b.get(next).is_some_and(u8::is_ascii_digit) {
                let (v, end) = string(b, next)?;
                if is_command {
                    self.command = Some(v);
                } else if is_call_id {
                    self.call_id = Some(v);
                }
                at = end;
            } else {
                at = skip(b, next, 0)?;
            }
            if seen_command && seen_call_id {
                return Some(());
            }
        }
        Some(())
    }
}

/// A bencode string at `at`: its bytes and where the next value starts.
fn string(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let colon = at + b.get(at..)?.iter().take(21).position(|c| *c == b':')?;
    let len: usize = std::str::from_utf8(&b[at..colon]).ok()?.parse().ok()?;
    let end = (colon + 1).checked_add(len)?;
    Some((b.get(colon + 1..end)?, end))
}

/// Where the value at `at` ends (not validated beyond what finding its end needs).
fn skip(b: &[u8], at: usize, depth: usize) -> Option<usize> {
    if depth > super::bencode::MAX_DEPTH {
        return None;
    }
    match *b.get(at)? {
        b'i' => Some(at + b.get(at..)?.iter().position(|c| *c == b'e')? + 1),
        b'l' | b'd' => {
            let mut p = at + 1;
            while *b.get(p)? != b'e' {
                p = skip(b, p, depth + 1)?;
            }
            Some(p + 1)
        }
        b'0'..=b'9' => string(b, at).map(|(_, end)| end),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ng::bencode::dict;
    use crate::ng::commands::tests::session_config;
    use crate::ng::commands::with_cookie;
    use crate::session::backend::fake::FakeBackend;
    use crate::session::{Sessions, port_pools};

    #[test]
    fn top_keys_are_found_past_any_value() {
        let body =
            b"d3:sdp5:d1:xe5:flagsl1:ai3ee4:infod1:ai-4e1:bli1eee7:CALL_ID3:abc7:command5:offere";
        assert_eq!(
            TopKeys::scan(body),
            TopKeys {
                command: Some(b"offer".as_slice()),
                call_id: Some(b"abc".as_slice()),
            }
        );
        // The first key counts, as the sessions read it: not a string, no call.
        let first = b"d7:call-idi5e7:call-id1:x7:command4:pinge";
        assert_eq!(TopKeys::scan(first).call_id, None);
        assert_eq!(TopKeys::scan(first).command, Some(b"ping".as_slice()));
        // A nested call-id is not the request's.
        let nested = b"d4:infod7:call-id1:xe7:command4:pinge";
        assert_eq!(TopKeys::scan(nested).call_id, None);
        // Truncated or not a dict: nothing, whatever was seen before.
        for bad in [
            &b"d7:call-id3:ab"[..],
            b"i1e",
            b"",
            b"d7:call-idi1e",
            b"d4:infol",
        ] {
            assert_eq!(TopKeys::scan(bad).call_id, None, "{bad:?}");
        }
    }

    /// `n` shards sharing one pool of 500 pairs, as the relay builds them.
    fn sharded(n: usize) -> Shards<FakeBackend> {
        let mut cfg = session_config();
        cfg.port_max = cfg.port_min + 999;
        let pools = port_pools(&cfg, 1);
        let now = Instant::now();
        Shards::new(
            (0..n)
                .map(|_| {
                    let s =
                        Sessions::with_pools(cfg.clone(), pools.clone(), FakeBackend::new(1), now);
                    Controller::new(s, now)
                })
                .collect(),
        )
    }

    fn msg(cookie: &str, pairs: &[(&str, &str)]) -> Vec<u8> {
        let v = Value::Dict(
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), Value::str(v)))
                .collect(),
        );
        with_cookie(cookie.as_bytes(), &v)
    }

    fn ok(reply: Option<Bytes>) -> Value {
        let r = reply.expect("a reply");
        let (_, body) = split_cookie(&r).unwrap();
        let v = Value::decode(body).unwrap();
        assert_eq!(v.get("result").and_then(Value::as_str), Some("ok"), "{v:?}");
        v
    }

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

    #[test]
    fn one_shard_answers_list_and_statistics_as_the_global_path_does() {
        // One shard skips routing: its own `list` and `statistics` must give the
        // bytes that the path over every shard gives for the same calls.
        let (one, four) = (sharded(1), sharded(4));
        let now = Instant::now();
        for s in [&one, &four] {
            for i in 0..12 {
                let offer = msg(
                    &format!("o{i}"),
                    &[
                        ("command", "offer"),
                        ("call-id", &format!("call-{i}")),
                        ("from-tag", "a"),
                        ("sdp", SDP),
                    ],
                );
                ok(s.handle(&offer, now));
            }
        }
        for req in [
            msg("l1", &[("command", "list"), ("limit", "5")]),
            msg("l2", &[("command", "list")]),
            msg("s", &[("command", "statistics")]),
            msg("x", &[("command", "list"), ("limit", "-1")]),
        ] {
            let (a, b) = (one.handle(&req, now), four.handle(&req, now));
            assert_eq!(a, b, "{}", String::from_utf8_lossy(&req));
        }
        assert_eq!(one.counts(), four.counts());
    }

    #[test]
    fn calls_spread_over_shards_and_list_and_statistics_see_them_all() {
        let s = sharded(4);
        let now = Instant::now();
        let ids: Vec<String> = (0..40).map(|i| format!("call-{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            let offer = msg(
                &format!("o{i}"),
                &[
                    ("command", "offer"),
                    ("call-id", id),
                    ("from-tag", "a"),
                    ("sdp", SDP),
                ],
            );
            ok(s.handle(&offer, now));
        }
        // Each call is in the shard its id hashes to, and only there.
        let mut used = [0usize; 4];
        for id in &ids {
            let home = s.shard_of(id.as_bytes());
            used[home] += 1;
            for k in 0..4 {
                assert_eq!(s.lock(k).sessions.has_call(id), k == home, "{id} in {k}");
            }
        }
        assert!(
            used.iter().all(|n| *n > 0),
            "40 calls over 4 shards: {used:?}"
        );

        let list = ok(s.handle(&msg("l", &[("command", "list"), ("limit", "100")]), now));
        let listed: Vec<&str> = list
            .get("calls")
            .and_then(Value::as_list)
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(listed, want);
        let limited = ok(s.handle(&msg("l2", &[("command", "list"), ("limit", "3")]), now));
        assert_eq!(
            limited.get("calls").and_then(Value::as_list).unwrap().len(),
            3
        );

        let st = ok(s.handle(&msg("s", &[("command", "statistics")]), now));
        let stat = |v: &Value, part: &str, key: &str| {
            v.get("statistics")
                .and_then(|s| s.get(part))
                .and_then(|p| p.get(key))
                .and_then(Value::as_int)
        };
        assert_eq!(stat(&st, "currentstatistics", "sessionstotal"), Some(40));
        let total = st
            .get("statistics")
            .and_then(|s| s.get("totalstatistics"))
            .unwrap();
        assert_eq!(
            total.get("managedsessions").and_then(Value::as_int),
            Some(40)
        );
        // The pools are shared: ports are counted once, not once per shard.
        assert_eq!(
            total.get("portsinuse").and_then(Value::as_int),
            Some(40 * 2 * 2)
        );

        // A retransmitted offer is answered from its shard's cache, not redone.
        let again = msg(
            "o3",
            &[
                ("command", "offer"),
                ("call-id", &ids[3]),
                ("from-tag", "a"),
                ("sdp", SDP),
            ],
        );
        let executed = s.sum(|c| c.executed);
        ok(s.handle(&again, now));
        assert_eq!(s.sum(|c| c.executed), executed);
        // Every command is counted once, the global ones included.
        let counts = s.counts();
        let count = |cmd: &str| {
            counts
                .iter()
                .find(|(c, r, _)| *c == cmd && *r == "ok")
                .unwrap()
                .2
        };
        assert_eq!(
            (count("offer"), count("list"), count("statistics")),
            (40, 2, 1)
        );

        let del = msg("d", &[("command", "delete"), ("call-id", &ids[5])]);
        ok(s.handle(&del, now + Duration::from_millis(1)));
        let st = ok(s.handle(&msg("s2", &[("command", "statistics")]), now));
        assert_eq!(stat(&st, "currentstatistics", "sessionstotal"), Some(39));
    }

    #[test]
    fn requests_without_a_call_get_their_error_from_a_shard() {
        let s = sharded(3);
        let now = Instant::now();
        let r = s.handle(b"c1 d7:command5:offere", now).unwrap();
        assert!(String::from_utf8_lossy(&r).contains("No call-id in message"));
        let r = s.handle(b"c2 d7:command4:lis", now).unwrap();
        assert!(String::from_utf8_lossy(&r).contains("Failed to decode bencode"));
        assert_eq!(s.handle(b"nocookie", now), None);
        let ping = dict([("command", Value::str("ping"))]);
        let r = s.handle(&with_cookie(b"p", &ping), now).unwrap();
        assert_eq!(&r[..], b"p d6:result4:ponge");
    }
}
