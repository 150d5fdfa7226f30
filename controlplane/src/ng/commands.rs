//! One NG request in, one reply out: cookie handling, the reply cache, and the
//! command table (after rtpengine's `include/control_ng.h`). Sans-IO: the servers
//! feed bytes and send back what this returns.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::bencode::{DecodeError, Value, dict};
use super::cookie_cache::CookieCache;
use crate::session::backend::MediaBackend;
use crate::session::flags::eq_norm;
use crate::session::{Sessions, flags};

/// Longest cookie accepted; rtpengine's proxies send a few dozen bytes.
pub const MAX_COOKIE: usize = 256;
/// How long replies stay in the cache generation (rtpengine uses 30 s too).
pub const CACHE_PERIOD: Duration = Duration::from_secs(30);

/// The NG front of the relay: sessions plus the cookie cache.
#[derive(Debug)]
pub struct Controller<B> {
    pub sessions: Sessions<B>,
    cache: CookieCache,
    /// Commands executed (cache hits excluded), for tests and statistics.
    pub executed: u64,
    /// Requests by command and result, for `ferrelay_ng_commands_total`.
    pub counts: NgCounts,
    /// Where a reply is written before it is copied out at its exact size.
    scratch: Vec<u8>,
    /// The unused end of the block replies are copied into (see `REPLY_BLOCK`).
    replies: BytesMut,
}

/// Replies are copied out of `scratch` one after another into blocks of this
/// size and split off as `Bytes` that share the block: one allocation for
/// dozens of replies instead of one each. The cookie cache keeps replies in
/// the order they were made and drops them a generation at a time, so a block
/// is freed soon after its last reply goes; at most the blocks that straddle a
/// generation boundary outlive part of their replies.
const REPLY_BLOCK: usize = 64 << 10;

/// A scratch buffer that grew past this (a huge `list` reply) is not kept.
const SCRATCH_KEEP: usize = 64 << 10;

/// Splits `<cookie> <body>`; `None` without a cookie (nothing to reply to).
pub fn split_cookie(msg: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = msg.iter().take(MAX_COOKIE + 1).position(|b| *b == b' ')?;
    (sp > 0).then(|| (&msg[..sp], &msg[sp + 1..]))
}

/// Where one message of a TCP stream ends, if it is complete.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    /// Need more bytes.
    Partial,
    /// A complete message of this many bytes is at the front.
    Message(usize),
    /// The stream cannot be resynchronised: reply (when `cookie_len` is known) and close.
    Broken {
        cookie_len: Option<usize>,
        reason: String,
    },
}

/// Finds the end of the first `<cookie> <bencode>` in a stream buffer.
pub fn frame(buf: &[u8]) -> Framing {
    // Whitespace between messages (a client that ends each with a newline) is skipped
    // by the caller; here the buffer starts at a cookie.
    let Some(sp) = buf.iter().take(MAX_COOKIE + 1).position(|b| *b == b' ') else {
        return if buf.len() > MAX_COOKIE {
            Framing::Broken {
                cookie_len: None,
                reason: "no cookie".into(),
            }
        } else {
            Framing::Partial
        };
    };
    if sp == 0 {
        return Framing::Broken {
            cookie_len: None,
            reason: "empty cookie".into(),
        };
    }
    match Value::decode_prefix(&buf[sp + 1..]) {
        Ok((_, used)) => Framing::Message(sp + 1 + used),
        Err(DecodeError::Incomplete) => Framing::Partial,
        Err(e) => Framing::Broken {
            cookie_len: Some(sp),
            reason: format!("Failed to decode bencode: {e}"),
        },
    }
}

/// Whether `body` may be a `query` (it holds the bencoded word): a quick test
/// before decoding, jumping from one `5` to the next.
pub(crate) fn mentions_query(body: &[u8]) -> bool {
    // Built once: `memmem::find` would build its searcher per request.
    static QUERY: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"5:query"));
    QUERY.find(body).is_some()
}

/// NG requests by command and result. Unknown commands and undecodable messages
/// count under `other`, so a flood of junk is visible in metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NgCounts {
    ok: [u64; NgCounts::COMMANDS.len()],
    error: [u64; NgCounts::COMMANDS.len()],
}

impl NgCounts {
    /// Metric label of each command, in counter order; `other` last.
    pub const COMMANDS: [&'static str; 10] = [
        "ping",
        "offer",
        "answer",
        "delete",
        "query",
        "list",
        "statistics",
        "block_media",
        "unblock_media",
        "other",
    ];
    const OTHER: usize = Self::COMMANDS.len() - 1;

    /// The counter slot of a command as the request spells it (any case, `-`,
    /// `_` or space between words, as rtpengine accepts), found without
    /// building its normal form.
    fn index(command: &str) -> usize {
        Self::COMMANDS[..Self::OTHER]
            .iter()
            .position(|c| eq_norm(c.as_bytes(), command.as_bytes()))
            .unwrap_or(Self::OTHER)
    }

    /// The label of a command as the request spells it; `other` when unknown.
    fn label(command: &str) -> &'static str {
        Self::COMMANDS[Self::index(command)]
    }

    fn record(&mut self, i: usize, ok: bool) {
        let slot = if ok { &mut self.ok } else { &mut self.error };
        slot[i] += 1;
    }

    /// Adds another shard's counts.
    pub fn add(&mut self, other: &NgCounts) {
        for i in 0..Self::COMMANDS.len() {
            self.ok[i] += other.ok[i];
            self.error[i] += other.error[i];
        }
    }

    /// `(command, result, count)` for every pair, zeros included so series exist
    /// from the start.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        Self::COMMANDS
            .iter()
            .enumerate()
            .flat_map(|(i, c)| [(*c, "ok", self.ok[i]), (*c, "error", self.error[i])])
    }
}

/// `{result: error, error-reason: ...}` as rtpengine replies.
pub fn error_reply(reason: &str) -> Value {
    dict([
        ("result", Value::str("error")),
        ("error-reason", Value::str(reason)),
    ])
}

/// `<cookie> <encoded value>`.
pub fn with_cookie(cookie: &[u8], v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(cookie.len() + 1 + v.encoded_len());
    out.extend_from_slice(cookie);
    out.push(b' ');
    v.encode_into(&mut out);
    out
}

/// Appends `v`, growing `out` once at most.
fn encode(v: &Value, out: &mut Vec<u8>) {
    out.reserve(v.encoded_len());
    v.encode_into(out);
}

impl<B: MediaBackend> Controller<B> {
    pub fn new(sessions: Sessions<B>, now: Instant) -> Self {
        Controller {
            sessions,
            cache: CookieCache::new(CACHE_PERIOD, now),
            executed: 0,
            counts: NgCounts::default(),
            scratch: Vec::with_capacity(4096),
            replies: BytesMut::new(),
        }
    }

    /// Answers one complete message; `None` when it has no cookie to answer to.
    /// A cookie seen in the last 30–60 s gets the cached reply, with no side effect.
    pub fn handle(&mut self, msg: &[u8], now: Instant) -> Option<Bytes> {
        let reply = self.handle_unflushed(msg, now);
        self.flush();
        reply
    }

    /// Like `handle`, but the worker wake-ups it queues wait for `flush`: a server
    /// that drains several requests at once wakes each worker once for all of them.
    pub fn handle_unflushed(&mut self, msg: &[u8], now: Instant) -> Option<Bytes> {
        let (cookie, body) = split_cookie(msg)?;
        if let Some(r) = self.cache.get(cookie, now) {
            tracing::debug!(cookie = %String::from_utf8_lossy(cookie), "reply from cache");
            return Some(r);
        }
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        out.extend_from_slice(cookie);
        out.push(b' ');
        match Value::decode(body) {
            Ok(req) => self.execute_unflushed(&req, now, &mut out),
            Err(e) => {
                self.counts.record(NgCounts::OTHER, false);
                encode(
                    &error_reply(&format!("Failed to decode bencode: {e}")),
                    &mut out,
                );
            }
        }
        // Sent and cached as one slice of a reply block, of the reply's exact
        // size: the cache's byte bound then counts what it really holds, and
        // the scratch buffer, already grown, serves the next request without
        // reallocating.
        if self.replies.capacity() < out.len() {
            // The old block now belongs to the replies split off it.
            self.replies = BytesMut::with_capacity(REPLY_BLOCK.max(out.len()));
        }
        self.replies.extend_from_slice(&out);
        let reply = self.replies.split().freeze();
        if out.capacity() <= SCRATCH_KEEP {
            self.scratch = out;
        }
        self.cache.insert(cookie, reply.clone(), now);
        Some(reply)
    }

    /// For a `query` not yet answered, asks the workers for the call's current
    /// counters; true when the caller should let the workers' events in (a few ms)
    /// before `handle`, so the reply carries them. `delete` does not wait: proxies
    /// block on its reply, and its counters are at most one poll interval old.
    pub fn prefetch(&mut self, msg: &[u8], now: Instant) -> bool {
        let Some((cookie, body)) = split_cookie(msg) else {
            return false;
        };
        // Only a query is prefetched: skip decoding every offer and answer twice,
        // and skip the cache lookup `handle` does anyway.
        if !mentions_query(body) || self.cache.get(cookie, now).is_some() {
            return false;
        }
        let Ok(req) = Value::decode(body) else {
            return false;
        };
        let Ok(Some(command)) = flags::string(&req, "command") else {
            return false;
        };
        if !eq_norm(command.as_bytes(), b"query") {
            return false;
        }
        let asked = match flags::string(&req, "call-id") {
            Ok(Some(id)) => self.sessions.refresh(id) > 0,
            _ => false,
        };
        self.sessions.backend_mut().flush();
        asked
    }

    /// Counts a read-only `command` answered across every shard (`ng::shards`).
    /// Its reply is not cached: a retransmission reads the shards again, which
    /// changes nothing.
    pub fn answered(&mut self, command: &str, ok: bool) {
        self.executed += 1;
        self.counts.record(NgCounts::index(command), ok);
    }

    /// Wakes every worker that has commands queued since the last flush.
    pub fn flush(&mut self) {
        self.sessions.backend_mut().flush();
    }

    /// Lets go of the replies whose retransmission cover has run out, even when
    /// no request comes to do it (the relay's ticker calls this each tick).
    /// Returns the bytes of replies let go.
    pub fn expire_replies(&mut self, now: Instant) -> usize {
        let held = self.cache.bytes();
        self.cache.rotate_if_due(now);
        held.saturating_sub(self.cache.bytes())
    }

    /// Replies the cookie cache holds now.
    pub fn cache_entries(&self) -> usize {
        self.cache.len()
    }

    /// Bytes the cookie cache holds, as its bound counts them.
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Replies evicted from the cookie cache before their time (or too large to
    /// keep): a retransmission of one of those is executed again.
    pub fn cache_evictions(&self) -> u64 {
        self.cache.evicted
    }

    /// Runs one decoded request; every failure becomes an error reply.
    pub fn execute(&mut self, req: &Value, now: Instant) -> Value {
        let mut out = Vec::new();
        self.execute_unflushed(req, now, &mut out);
        // One wake per worker for everything this request queued.
        self.flush();
        Value::decode(&out)
            .unwrap_or_else(|e| error_reply(&format!("internal: reply does not decode: {e}")))
    }

    /// Runs one decoded request and appends its encoded reply to `out`: the
    /// replies built from session state (`delete`, `query`, `statistics`) are
    /// streamed there, the others encoded from their value.
    fn execute_unflushed(&mut self, req: &Value, now: Instant, out: &mut Vec<u8>) {
        let command = match req {
            Value::Dict(_) => flags::string(req, "command")
                .and_then(|c| c.ok_or_else(|| "No command in message".to_owned())),
            _ => Err("Message is not a dictionary".to_owned()),
        };
        let command = match command {
            Ok(c) => NgCounts::label(c),
            Err(e) => {
                self.counts.record(NgCounts::OTHER, false);
                return encode(&error_reply(&e), out);
            }
        };
        self.executed += 1;
        let s = &mut self.sessions;
        // `None`: the reply is in `out` already.
        let res = match command {
            "ping" => Ok(Some(dict([("result", Value::str("pong"))]))),
            "offer" => s.offer_into(req, now, out).map(|()| None),
            "answer" => s.answer_into(req, now, out).map(|()| None),
            "delete" => s.delete_into(req, now, out).map(|()| None),
            "query" => s.query_into(req, out).map(|()| None),
            "list" => s.list(req).map(Some),
            "statistics" => {
                s.statistics_into(now, out);
                Ok(None)
            }
            "block_media" => s.set_blocked(req, true).map(Some),
            "unblock_media" => s.set_blocked(req, false).map(Some),
            _ => Err("Unrecognized command".to_owned()),
        };
        self.counts.record(NgCounts::index(command), res.is_ok());
        match res {
            Ok(Some(v)) => encode(&v, out),
            Ok(None) => {}
            Err(e) => encode(&error_reply(&e), out),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::config::InterfaceSpec;
    use crate::session::SessionConfig;
    use crate::session::backend::fake::FakeBackend;

    /// A controller over the recording fake backend, for the NG tests.
    pub(crate) fn controller() -> Controller<FakeBackend> {
        let now = Instant::now();
        Controller::new(
            Sessions::new(session_config(), FakeBackend::new(1), now),
            now,
        )
    }

    /// The sessions' limits for the NG tests: 50 port pairs on loopback.
    pub(crate) fn session_config() -> SessionConfig {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        SessionConfig {
            interfaces: vec![InterfaceSpec {
                name: "default".into(),
                local: lo,
                advertised: lo,
            }],
            port_min: 43_000,
            port_max: 43_099,
            timeout: Duration::from_secs(60),
            silent_timeout: Duration::from_secs(3600),
            final_timeout: None,
            offer_timeout: Duration::from_secs(60),
            delete_delay: Duration::from_secs(0),
        }
    }

    fn reply(c: &mut Controller<FakeBackend>, msg: &[u8]) -> String {
        String::from_utf8(c.handle(msg, Instant::now()).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn ping_pong_and_errors() {
        let mut c = controller();
        assert_eq!(
            reply(&mut c, b"abc d7:command4:pinge"),
            "abc d6:result4:ponge"
        );
        assert_eq!(
            reply(&mut c, b"k1 d7:command3:fooe"),
            "k1 d6:result5:error12:error-reason20:Unrecognized commande"
        );
        assert!(reply(&mut c, b"k2 d7:commande").contains("Failed to decode bencode"));
        assert!(reply(&mut c, b"k3 i1e").contains("Message is not a dictionary"));
        assert!(reply(&mut c, b"k4 d1:xi1ee").contains("No command in message"));
        assert!(reply(&mut c, b"k5 d7:command5:offere").contains("No call-id in message"));
        // Commands match in any case and with `-`, `_` or space between words.
        assert_eq!(
            reply(&mut c, b"k6 d7:command4:PiNGe"),
            "k6 d6:result4:ponge"
        );
        assert!(reply(&mut c, b"k7 d7:command11:Block-MEDIAe").contains("No call-id in message"));
        assert_eq!(c.handle(b"nocookie", Instant::now()), None);
        assert_eq!(c.handle(b" d7:command4:pinge", Instant::now()), None);
        let count = |cmd: &str, res: &str| {
            c.counts
                .iter()
                .find(|(c, r, _)| *c == cmd && *r == res)
                .map(|(_, _, n)| n)
                .unwrap()
        };
        assert_eq!(count("ping", "ok"), 2);
        assert_eq!(count("offer", "error"), 1);
        assert_eq!(count("block_media", "error"), 1);
        // Unknown command, bad bencode, not a dict, no command.
        assert_eq!(count("other", "error"), 4);
        assert_eq!(c.counts.iter().map(|(_, _, n)| n).sum::<u64>(), 8);
    }

    #[test]
    fn retransmission_is_answered_from_cache_without_side_effect() {
        let mut c = controller();
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let req = dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str("x")),
            ("from-tag", Value::str("a")),
            ("sdp", Value::str(sdp)),
        ]);
        let msg = with_cookie(b"c1", &req);
        let first = c.handle(&msg, Instant::now()).unwrap();
        let flows = c.sessions.backend().flows.len();
        let ports = c.sessions.ports_in_use();
        let again = c.handle(&msg, Instant::now()).unwrap();
        assert_eq!(first, again);
        assert_eq!(c.executed, 1);
        assert_eq!(c.sessions.backend().flows.len(), flows);
        assert_eq!(c.sessions.ports_in_use(), ports);
        // A new cookie is a new request (a re-offer keeps the ports).
        let third = c.handle(&with_cookie(b"c2", &req), Instant::now()).unwrap();
        assert_eq!(&third[3..], &first[3..]);
        assert_eq!(c.executed, 2);
    }

    #[test]
    fn replies_split_off_shared_blocks_stay_whole() {
        let mut c = controller();
        // Enough replies to fill several blocks, then a request larger than one.
        let n = 3 * REPLY_BLOCK / "k00000 d6:result4:ponge".len();
        let replies: Vec<Bytes> = (0..n)
            .map(|i| {
                c.handle(
                    format!("k{i:05} d7:command4:pinge").as_bytes(),
                    Instant::now(),
                )
                .unwrap()
            })
            .collect();
        let big = "x".repeat(REPLY_BLOCK + 10);
        let msg = format!("big d7:command4:ping3:pad{}:{big}e", big.len());
        assert_eq!(reply(&mut c, msg.as_bytes()), "big d6:result4:ponge");
        let after = reply(&mut c, b"next d7:command4:pinge");
        assert_eq!(after, "next d6:result4:ponge");
        for (i, r) in replies.iter().enumerate() {
            assert_eq!(&r[..], format!("k{i:05} d6:result4:ponge").as_bytes());
        }
        // Each cached reply is its own exact slice.
        let again = c
            .handle(b"k00007 d7:command4:pinge", Instant::now())
            .unwrap();
        assert_eq!(&again[..], b"k00007 d6:result4:ponge");
    }

    #[test]
    fn replies_expire_without_a_request_to_rotate_the_cache() {
        let mut c = controller();
        let t0 = Instant::now();
        let first = c.handle(b"p1 d7:command4:pinge", t0).unwrap();
        let held = c.cache.bytes();
        assert!(held > first.len());
        // Within its cover the reply stays, and a tick lets nothing go.
        assert_eq!(c.expire_replies(t0 + CACHE_PERIOD / 2), 0);
        assert_eq!(c.handle(b"p1 d7:command4:pinge", t0).unwrap(), first);
        assert_eq!(c.executed, 1, "answered from the cache");
        // Two periods on, the ticker alone lets it go and says how much.
        assert_eq!(c.expire_replies(t0 + 2 * CACHE_PERIOD), held);
        assert!(c.cache.is_empty());
    }

    #[test]
    fn query_word_is_found_anywhere() {
        assert!(mentions_query(b"d7:command5:querye"));
        assert!(mentions_query(b"d2:x15:55:query"));
        assert!(!mentions_query(b"d7:command5:offere"));
        assert!(!mentions_query(b"5:quer"));
        assert!(!mentions_query(b""));
    }

    #[test]
    fn stream_framing() {
        assert_eq!(frame(b"ab d7:command4:pi"), Framing::Partial);
        assert_eq!(frame(b"ab"), Framing::Partial);
        assert_eq!(frame(b"ab d7:command4:pingexyz"), Framing::Message(20));
        assert!(matches!(
            frame(b"ab x"),
            Framing::Broken {
                cookie_len: Some(2),
                ..
            }
        ));
        assert!(matches!(
            frame(&[b'a'; 300]),
            Framing::Broken {
                cookie_len: None,
                ..
            }
        ));
        assert!(matches!(
            frame(b" x"),
            Framing::Broken {
                cookie_len: None,
                ..
            }
        ));
    }
}
