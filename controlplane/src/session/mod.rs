//! Calls, their monologues and streams, the port pools, and the compilation of each
//! stream into flow rules for the worker that owns the call.
//!
//! Port contract (as rtpengine): the port in the **offer** reply's SDP is where the
//! *answering* party sends; the port in the **answer** reply's SDP is where the
//! *offering* party sends. Each party's side of an m= line owns an even/odd pair.
//!
//! Forking: answers from several branches (to-tags) of one offer each get a
//! monologue; the answerer's ports, which the offer told every fork, belong to
//! the branch that answered last (`negotiate::answerer`), and `delete` can end
//! one branch (`Call::branch_to_end`).

pub mod backend;
pub mod call;
mod calls;
pub mod flags;
pub mod loop_protect;
mod negotiate;
mod owners;
pub mod ports;
pub mod query;
mod rewrite;
pub mod sdes;
mod side;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use ferrelay_engine::FlowId;
use ferrelay_sdp::Sdp;
// Seeded at random per process (so call-ids cannot be chosen to collide), and
// cheaper than SipHash on the several lookups each request makes.
use foldhash::fast::RandomState;

use crate::config::{Config, InterfaceSpec};
use crate::ng::Value;
use backend::{FlowCounters, MediaBackend};
use call::Call;
use calls::{CallIndex, Calls};
use flags::Flags;
use loop_protect::{mark, passes_through};
use owners::FlowOwners;
use ports::{PortPair, PortPool};

/// The session limits the relay was started with.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub interfaces: Vec<InterfaceSpec>,
    pub port_min: u16,
    pub port_max: u16,
    pub timeout: Duration,
    pub silent_timeout: Duration,
    pub final_timeout: Option<Duration>,
    pub offer_timeout: Duration,
    pub delete_delay: Duration,
}

impl From<&Config> for SessionConfig {
    fn from(c: &Config) -> Self {
        SessionConfig {
            interfaces: c.interfaces.clone(),
            port_min: c.port_min,
            port_max: c.port_max,
            timeout: c.timeout,
            silent_timeout: c.silent_timeout,
            final_timeout: c.final_timeout,
            offer_timeout: c.offer_timeout,
            delete_delay: c.delete_delay,
        }
    }
}

/// Why a call ended, for the log line and the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Deleted,
    MediaTimeout,
    SilentTimeout,
    OfferTimeout,
    FinalTimeout,
    Shutdown,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Deleted => "deleted",
            EndReason::MediaTimeout => "media timeout",
            EndReason::SilentTimeout => "silent timeout",
            EndReason::OfferTimeout => "offer timeout",
            EndReason::FinalTimeout => "final timeout",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// Counters over the relay's lifetime, for `statistics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub managed: u64,
    pub rejected: u64,
    pub ended: [u64; 6],
    /// Packets/bytes/errors of calls that have ended.
    pub media: FlowCounters,
    pub call_seconds: u64,
}

/// The port pool of each interface, shared by every shard of the control plane
/// (each shard takes the lock only to hand out or take back a pair).
pub type SharedPools = Arc<[Mutex<PortPool>]>;

/// One pool per interface of `cfg`, for `workers` workers.
pub fn port_pools(cfg: &SessionConfig, workers: usize) -> SharedPools {
    cfg.interfaces
        .iter()
        .map(|i| Mutex::new(PortPool::new(i.local, cfg.port_min, cfg.port_max, workers)))
        .collect()
}

/// The port pools and the data plane: what a call consumes.
#[derive(Debug)]
struct Resources<B> {
    cfg: SessionConfig,
    pools: SharedPools,
    backend: B,
}

impl<B: MediaBackend> Resources<B> {
    /// Interface `iface`'s pool; a panic elsewhere while it was held leaves it usable.
    fn pool(&self, iface: usize) -> MutexGuard<'_, PortPool> {
        self.pools[iface].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes the parked flows of a pair whose ports were freed (closing its
    /// sockets in the worker).
    fn close_parked(&mut self, worker: usize, pair: &PortPair) {
        for id in pair.parked() {
            if let Err(e) = self.backend.remove_flow(worker, id) {
                tracing::warn!(port = pair.port, error = %e, "closing a parked socket failed");
            }
        }
    }

    /// Closes the parked pairs interface `iface`'s pool took back.
    fn close_evicted(&mut self, iface: usize) {
        let evicted = self.pool(iface).take_evicted();
        for (w, pair) in evicted {
            self.close_parked(w, &pair);
        }
    }

    /// Frees a pair released by a call on `worker` that ended at `ended`: parked
    /// for a later call there, or closed.
    fn release(&mut self, iface: usize, worker: usize, pair: PortPair, ended: Instant) {
        let closed = self.pool(iface).release(pair, worker, ended);
        if let Some(pair) = closed {
            self.close_parked(worker, &pair);
        }
    }
}

/// Every call the relay anchors.
#[derive(Debug)]
pub struct Sessions<B> {
    res: Resources<B>,
    calls: Calls,
    /// Which call owns each installed flow, so worker events find it at once.
    owners: FlowOwners,
    /// Last counters of flows being removed, and the ended call they belonged to
    /// (see `quiet`), until the worker's final count arrives.
    retiring: HashMap<(usize, FlowId), (FlowCounters, Option<u64>), RandomState>,
    /// Ended calls whose ports may skip the rest, by a key of their own, while
    /// their flows' final counts come in (only while delete-delay is shorter than
    /// the rest).
    quiet: HashMap<u64, QuietCheck, RandomState>,
    next_quiet: u64,
    /// Port pairs of ended calls (due time, when the call ended, interface,
    /// worker), released once `delete_delay` has passed.
    draining: Vec<(Instant, Instant, usize, usize, PortPair)>,
    /// Calls per worker, to place a new call on the least loaded one.
    load: Vec<usize>,
    pub totals: Totals,
    started: Instant,
}

/// A call's index and flows as they were before a change, for the flow index.
#[derive(Debug, Default)]
struct Indexed {
    call: Option<CallIndex>,
    flows: Vec<(usize, FlowId)>,
}

/// An ended call's flows whose final counts are still to come: when none of them
/// received a datagram, the relay sent nothing either (it only forwards what it
/// receives), so no peer knows to send to its ports and they need no rest.
#[derive(Debug)]
struct QuietCheck {
    worker: usize,
    flows_left: usize,
    heard: bool,
    /// The call's port pairs: interface and RTP port.
    pairs: Vec<(usize, u16)>,
}

/// Wall-clock seconds for `query`; `u32` holds them until 2106.
fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

fn required<'a>(req: &'a Value, key: &str) -> Result<&'a str, String> {
    flags::lookup(req, key)
        .ok_or_else(|| format!("No {key} in message"))?
        .as_str()
        .ok_or_else(|| format!("'{key}' must be a string"))
}

impl<B: MediaBackend> Sessions<B> {
    /// Sessions with the port pools and the workers to themselves.
    pub fn new(cfg: SessionConfig, backend: B, now: Instant) -> Self {
        let pools = port_pools(&cfg, backend.workers().max(1));
        Self::build(cfg, pools, backend, FlowOwners::default(), now)
    }

    /// One shard's sessions: ports from `pools` and flow slots of the workers,
    /// both shared with the other shards.
    pub fn with_pools(cfg: SessionConfig, pools: SharedPools, backend: B, now: Instant) -> Self {
        Self::build(cfg, pools, backend, FlowOwners::sparse(), now)
    }

    fn build(
        cfg: SessionConfig,
        pools: SharedPools,
        backend: B,
        owners: FlowOwners,
        now: Instant,
    ) -> Self {
        let load = vec![0; backend.workers().max(1)];
        Sessions {
            res: Resources {
                cfg,
                pools,
                backend,
            },
            calls: Calls::default(),
            owners,
            retiring: HashMap::default(),
            quiet: HashMap::default(),
            next_quiet: 0,
            draining: Vec::new(),
            load,
            totals: Totals::default(),
            started: now,
        }
    }

    pub fn backend(&self) -> &B {
        &self.res.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.res.backend
    }

    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Port pairs held by live and draining calls.
    pub fn ports_in_use(&self) -> usize {
        (0..self.res.pools.len())
            .map(|i| self.res.pool(i).in_use())
            .sum()
    }

    /// Released port pairs whose sockets wait in their workers for the next call.
    pub fn ports_parked(&self) -> usize {
        (0..self.res.pools.len())
            .map(|i| self.res.pool(i).parked())
            .sum()
    }

    pub fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// `offer`: anchors the offerer's streams and returns the SDP for the answerer.
    pub fn offer(&mut self, req: &Value, now: Instant) -> Result<Value, String> {
        self.offer_sdp(req, now).map(|sdp| sdp_value(&sdp))
    }

    /// `offer` with its reply appended to `out` (nothing on an error).
    pub fn offer_into(
        &mut self,
        req: &Value,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        self.offer_sdp(req, now).map(|sdp| sdp_reply(&sdp, out))
    }

    /// `answer`: completes the call with the answerer's streams; returns its SDP
    /// rewritten for the offerer.
    pub fn answer(&mut self, req: &Value, now: Instant) -> Result<Value, String> {
        self.answer_sdp(req, now).map(|sdp| sdp_value(&sdp))
    }

    /// `answer` with its reply appended to `out` (nothing on an error).
    pub fn answer_into(
        &mut self,
        req: &Value,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        self.answer_sdp(req, now).map(|sdp| sdp_reply(&sdp, out))
    }

    fn offer_sdp(&mut self, req: &Value, now: Instant) -> Result<Sdp, String> {
        let call_id = required(req, "call-id")?;
        let from_tag = required(req, "from-tag")?;
        let to_tag = flags::string(req, "to-tag")?;
        let flags = Flags::parse(req)?;
        let mut sdp = parse_sdp(req)?;
        if passes_through(&sdp, &flags, call_id) {
            return Ok(sdp);
        }
        rewrite::check_protocols(&sdp, &flags)?;

        let before = self.flows_of(call_id);
        let is_new = !self.calls.contains_key(call_id);
        if is_new {
            let worker = (0..self.load.len())
                .min_by_key(|w| self.load[*w])
                .unwrap_or(0);
            self.calls
                .insert(Box::new(Call::new(call_id.into(), worker, now, unix_now())))
                .ok_or("Too many calls")?;
            self.load[worker] += 1;
            self.totals.managed += 1;
        }
        let call = self.calls.get_mut(call_id).expect("inserted above");
        call.set_deleting(None);
        let res =
            negotiate::offer_call(&mut self.res, call, from_tag, to_tag, &flags, &mut sdp, now);
        self.reindex(call_id, before);
        match res {
            Ok(()) => {
                // One info line when a call starts and one when it ends (with
                // its summary); each offer and answer of a call is debug detail.
                mark(&mut sdp, &flags);
                if is_new {
                    tracing::info!(call_id = %call_id, from_tag = %from_tag, "call created");
                } else {
                    tracing::debug!(call_id = %call_id, from_tag = %from_tag, "re-offer");
                }
                Ok(sdp)
            }
            Err(e) => {
                if is_new {
                    self.totals.managed -= 1;
                    self.totals.rejected += 1;
                    self.end_call(call_id, EndReason::Deleted, now, true);
                }
                tracing::info!(call_id = %call_id, error = %e, "offer refused");
                Err(e)
            }
        }
    }

    fn answer_sdp(&mut self, req: &Value, now: Instant) -> Result<Sdp, String> {
        let call_id = required(req, "call-id")?;
        let from_tag = required(req, "from-tag")?;
        let to_tag = required(req, "to-tag")?;
        let via_branch = flags::string(req, "via-branch")?;
        let flags = Flags::parse(req)?;
        let mut sdp = parse_sdp(req)?;
        if passes_through(&sdp, &flags, call_id) {
            return Ok(sdp);
        }
        rewrite::check_protocols(&sdp, &flags)?;
        let before = self.flows_of(call_id);
        let call = self
            .calls
            .get_mut(call_id)
            .ok_or_else(|| "Unknown call-id".to_owned())?;
        call.set_deleting(None);
        let res =
            negotiate::answer_call(&mut self.res, call, from_tag, to_tag, &flags, &mut sdp, now);
        // The answer's `via-branch` names its fork for a later `delete`.
        if let Some(v) = via_branch
            && res.is_ok()
            && let Some(m) = call.monologue(to_tag)
        {
            call.monologues[m].set_via_branch(v);
        }
        self.reindex(call_id, before);
        res?;
        mark(&mut sdp, &flags);
        tracing::debug!(call_id = %call_id, from_tag = %from_tag, to_tag = %to_tag, "answer");
        Ok(sdp)
    }

    /// `delete`: as rtpengine with `--delete-delay`, media keeps being relayed (and
    /// the call answers `query`) for the delay, so the last packets after a BYE
    /// and late signalling are not lost; then the flows go and the ports are
    /// free at once. With no delay the call ends now. Tags that name one fork
    /// among several (see [`Call::branch_to_end`]) end that fork alone, at once.
    /// The reply (the call as `query` tells it) is appended to `out`; on an error
    /// nothing is.
    pub fn delete_into(
        &mut self,
        req: &Value,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let call_id = required(req, "call-id")?;
        let delay = self.res.cfg.delete_delay;
        let call = self
            .calls
            .get_mut(call_id)
            .ok_or_else(|| "Unknown call-id".to_owned())?;
        let mut tags = [None; 2];
        for (slot, key) in tags.iter_mut().zip(["from-tag", "to-tag"]) {
            if let Some(tag) = flags::string(req, key)? {
                *slot = Some(
                    call.monologue(tag)
                        .ok_or_else(|| format!("Unknown {key}"))?,
                );
            }
        }
        let via = flags::string(req, "via-branch")?;
        let start = out.len();
        query::call_info(call, &self.res.cfg.interfaces, out);
        if let Some(m) = call.branch_to_end(tags[0], tags[1], via) {
            if delay.is_zero() {
                let call_id = call_id.to_owned();
                self.end_branch(&call_id, m, now)
                    .inspect_err(|_| out.truncate(start))?;
            } else if call.monologues[m].ending().is_none() {
                // As for a whole call, the fork's media goes on for the delay
                // (a repeated delete keeps the first deadline).
                call.monologues[m].set_ending(Some(now + delay));
                tracing::info!(
                    call_id = %call_id, tag = %call.monologues[m].tag(), delay_s = delay.as_secs(),
                    "branch delete scheduled"
                );
            }
        } else if delay.is_zero() {
            let call_id = call_id.to_owned();
            self.end_call(&call_id, EndReason::Deleted, now, true);
        } else if call.deleting().is_none() {
            // A repeated delete keeps the first deadline.
            call.set_deleting(Some(now + delay));
            tracing::info!(call_id = %call_id, delay_s = delay.as_secs(), "delete scheduled");
        }
        Ok(())
    }

    /// `delete` with its reply as a value, for callers that read it.
    pub fn delete(&mut self, req: &Value, now: Instant) -> Result<Value, String> {
        let mut out = Vec::new();
        self.delete_into(req, now, &mut out)?;
        decoded(&out)
    }

    /// Ends one fork of a call that has others (`delete` of a branch). A branch
    /// left behind by a later answer holds no sides and just goes. The branch
    /// holding the media hands its sides to the most recent other fork, with
    /// that fork's own answer (address, keys) when one was kept; its flows forget
    /// what they latched and learn again from the heir's packets.
    fn end_branch(&mut self, call_id: &str, m: usize, now: Instant) -> Result<(), String> {
        let before = self.flows_of(call_id);
        let Some(call) = self.calls.get_mut(call_id) else {
            return Ok(());
        };
        let worker = call.worker();
        let gone = call.monologues.remove(m);
        tracing::info!(call_id = %call_id, tag = %gone.tag(), "branch deleted");
        let root_tag = gone.peer().unwrap_or_default();
        let root = call
            .monologue(root_tag)
            .filter(|r| call.monologues[*r].peer() == Some(gone.tag()));
        let heir = call
            .monologues
            .iter()
            .rposition(|x| x.peer() == Some(root_tag));
        let heir = heir.filter(|h| call.monologues[*h].sides.is_empty());
        let (Some(root), Some(heir)) = (root, heir) else {
            // A losing fork (or no fork free to take over): whatever it holds
            // (none after a later answer took the media) is freed with the delay
            // a deleted call's ports get.
            let at = now + self.res.cfg.delete_delay;
            self.retire_sides(call_id, worker, gone.sides, now, at, None);
            self.reindex(call_id, before);
            return Ok(());
        };
        let heir_tag = call.monologues[heir].tag().to_owned();
        call.monologues[root].set_peer(Some(&heir_tag));
        let (mr, mh) = negotiate::two(&mut call.monologues, root, heir);
        mh.sides = gone.sides;
        // The heir's own answer (kept when the gone fork displaced it) says where
        // it wants media and with which keys; without one, it is learnt again.
        let mut memo = mh
            .take_memo()
            .map(Vec::from)
            .unwrap_or_default()
            .into_iter();
        let res = mr
            .sides
            .iter_mut()
            .zip(mh.sides.iter_mut())
            .try_for_each(|(sr, sh)| {
                match memo.next() {
                    Some(m) => sh.restore(sr, m),
                    None => {
                        sh.set_remotes(None, None);
                    }
                }
                negotiate::unlatch(&mut self.res.backend, worker, sh)?;
                negotiate::sync_stream(
                    &mut self.res.backend,
                    &self.res.cfg.interfaces,
                    worker,
                    sr,
                    sh,
                )
            });
        self.reindex(call_id, before);
        res
    }

    /// `query`: the call's tags, streams and counters in rtpengine's shape,
    /// appended to `out` (nothing on an error).
    pub fn query_into(&self, req: &Value, out: &mut Vec<u8>) -> Result<(), String> {
        let call_id = required(req, "call-id")?;
        let call = self
            .calls
            .get(call_id)
            .ok_or_else(|| "Unknown call-id".to_owned())?;
        query::call_info(call, &self.res.cfg.interfaces, out);
        Ok(())
    }

    /// `query` as a value, for the dashboard and tests.
    pub fn query(&self, req: &Value) -> Result<Value, String> {
        let mut out = Vec::new();
        self.query_into(req, &mut out)?;
        decoded(&out)
    }

    /// `list`: call-ids, at most `limit` (default 32, as rtpengine).
    pub fn list(&self, req: &Value) -> Result<Value, String> {
        let limit = query::list_limit(req)?;
        let mut ids: Vec<&str> = self.calls.ids().collect();
        ids.sort();
        Ok(query::list_reply(ids.into_iter().take(limit)))
    }

    /// The ids of every call here.
    pub fn call_ids(&self) -> impl Iterator<Item = &str> {
        self.calls.ids()
    }

    /// Whether the call `call_id` is here.
    pub fn has_call(&self, call_id: &str) -> bool {
        self.calls.contains_key(call_id)
    }

    /// `statistics`: current and lifetime totals in rtpengine's shape, appended
    /// to `out`.
    pub fn statistics_into(&self, now: Instant, out: &mut Vec<u8>) {
        query::statistics(self, now, out);
    }

    /// `statistics` as a value, for the dashboard and tests.
    pub fn statistics(&self, now: Instant) -> Value {
        let mut out = Vec::new();
        self.statistics_into(now, &mut out);
        // The writer's own output always decodes; an empty dict is unreachable.
        Value::decode(&out).unwrap_or(Value::Dict(Vec::new()))
    }

    /// This shard's part of `statistics`.
    pub fn stats_input(&self, now: Instant) -> query::StatsInput {
        query::stats_input(self, now)
    }

    /// `block media` / `unblock media`: drop (and count) what a party sends.
    pub fn set_blocked(&mut self, req: &Value, blocked: bool) -> Result<Value, String> {
        let call_id = required(req, "call-id")?;
        let tag = flags::string(req, "from-tag")?;
        let call = self
            .calls
            .get_mut(call_id)
            .ok_or_else(|| "Unknown call-id".to_owned())?;
        let targets: Vec<usize> = match &tag {
            Some(t) => vec![call.monologue(t).ok_or("Unknown from-tag")?],
            None => (0..call.monologues.len()).collect(),
        };
        let worker = call.worker();
        for m in targets {
            for side in &mut call.monologues[m].sides {
                side.set_blocked(blocked);
                for id in side.flows.into_iter().flatten() {
                    self.res
                        .backend
                        .set_blocked(worker, id, blocked)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        tracing::info!(call_id = %call_id, tag = ?tag, blocked, "block media");
        Ok(Value::Dict(vec![(b"result".to_vec(), Value::str("ok"))]))
    }

    /// Stores a worker's counters for one flow; growing counters keep the call alive.
    pub fn on_flow_stats(&mut self, worker: usize, id: FlowId, c: FlowCounters, now: Instant) {
        let Some(call) = self
            .owners
            .get(worker, id)
            .and_then(|i| self.calls.at_mut(i))
        else {
            return; // removed meanwhile
        };
        let mut grew = false;
        for side in call.monologues.iter_mut().flat_map(|m| m.sides.iter_mut()) {
            let Some(k) = side.flows.and_then(|f| f.iter().position(|f| *f == id)) else {
                continue;
            };
            if c.packets > side.counters(k).packets {
                side.last_packet_unix[k] = unix_now();
                grew = true;
            }
            side.set_counters(k, c);
            break;
        }
        if grew {
            call.set_last_media(now);
        }
    }

    /// A removed flow's final counters: what arrived since the last poll is added to
    /// the lifetime totals, so `statistics` misses no packet. Once the last flow of
    /// an ended call tracked in `quiet` has reported, and none of them received a
    /// datagram, the pool is told its pairs need no rest.
    pub fn on_flow_removed(&mut self, worker: usize, id: FlowId, c: FlowCounters) {
        let Some((last, key)) = self.retiring.remove(&(worker, id)) else {
            return;
        };
        let t = &mut self.totals.media;
        t.packets += c.packets.saturating_sub(last.packets);
        t.bytes += c.bytes.saturating_sub(last.bytes);
        t.errors += c.errors.saturating_sub(last.errors);
        let Some(check) = key.and_then(|k| self.quiet.get_mut(&k)) else {
            return;
        };
        check.heard |= c.packets > 0;
        check.flows_left -= 1;
        if check.flows_left == 0
            && let Some(done) = key.and_then(|k| self.quiet.remove(&k))
            && !done.heard
        {
            for (iface, port) in done.pairs {
                self.res.pool(iface).quiet(done.worker, port);
            }
        }
    }

    /// A worker refused a command on a flow (`Event::CommandFailed`: an AddFlow or
    /// UpdateFlow it could not apply). The reply to that offer or answer has already
    /// gone, so the side is marked failed and logged, both flows of its pair are
    /// removed (which frees their ids) and a later offer or answer reinstalls them.
    pub fn on_flow_refused(&mut self, worker: usize, id: FlowId, why: &str) {
        let Some(call_id) = self
            .owners
            .get(worker, id)
            .and_then(|i| self.calls.at(i))
            .map(|c| c.id().to_string())
        else {
            return; // already removed, or a late answer about a flow that is gone
        };
        let before = self.flows_of(&call_id);
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let found = call.monologues.iter().enumerate().find_map(|(m, mono)| {
            let i = mono
                .sides
                .iter()
                .position(|s| s.flows.is_some_and(|f| f.contains(&id)))?;
            Some((m, i))
        });
        if let Some((m, i)) = found {
            let mono = &mut call.monologues[m];
            let side = &mut mono.sides[i];
            side.set_failed(true);
            for (k, f) in side.flows.take().into_iter().flatten().enumerate() {
                side.retire(k);
                if let Err(e) = self.res.backend.remove_flow(worker, f) {
                    tracing::warn!(call_id = %call_id, error = %e, "removing a refused flow failed");
                }
            }
            tracing::error!(
                call_id = %call_id, tag = %mono.tag(), port = mono.sides[i].pair.port, error = %why,
                "worker refused a flow; stream marked failed"
            );
        }
        self.reindex(&call_id, before);
    }

    /// The call a flow belongs to, for log lines about worker events.
    pub fn call_of(&self, worker: usize, id: FlowId) -> Option<&str> {
        let c = self.calls.at(self.owners.get(worker, id)?)?;
        c.flows().any(|f| f == id).then_some(c.id())
    }

    /// The call's index and its flows, for [`Sessions::reindex`] once they changed.
    fn flows_of(&self, call_id: &str) -> Indexed {
        let Some(i) = self.calls.find(call_id) else {
            return Indexed::default();
        };
        let flows = self
            .calls
            .at(i)
            .map(|c| c.flows().map(|f| (c.worker(), f)).collect());
        Indexed {
            call: Some(i),
            flows: flows.unwrap_or_default(),
        }
    }

    /// Brings the flow index up to date after the call's flows changed (or the
    /// call was added or removed).
    fn reindex(&mut self, call_id: &str, before: Indexed) {
        if let Some(i) = before.call {
            for (w, f) in before.flows {
                self.owners.remove(w, f, i);
            }
        }
        let Some(i) = self.calls.find(call_id) else {
            return;
        };
        if let Some(c) = self.calls.at(i) {
            for f in c.flows() {
                self.owners.insert(c.worker(), f, i);
            }
        }
    }

    /// Asks the workers for fresh counters of one call; returns how many were asked.
    pub fn refresh(&mut self, call_id: &str) -> usize {
        self.flows_of(call_id)
            .flows
            .into_iter()
            .filter(|(w, f)| self.res.backend.query_flow(*w, *f).is_ok())
            .count()
    }

    /// Every installed flow as `(worker, flow)`, call by call: what the ticker
    /// polls (`crate::poll`), so counters and media timeouts stay current.
    pub fn installed_flows(&self) -> impl Iterator<Item = (usize, FlowId)> + Clone + '_ {
        self.calls
            .values()
            .flat_map(|c| c.flows().map(move |f| (c.worker(), f)))
    }

    /// Runs the timers: offer, media, silent and final timeouts, and port release.
    /// Returns the calls that ended, with why.
    pub fn tick(&mut self, now: Instant) -> Vec<(String, EndReason)> {
        let cfg = &self.res.cfg;
        let mut ended = Vec::new();
        for call in self.calls.values() {
            let reason = if let Some(at) = call.deleting() {
                (now >= at).then_some(EndReason::Deleted)
            } else if let Some(f) = cfg.final_timeout
                && now.saturating_duration_since(call.created()) >= f
            {
                Some(EndReason::FinalTimeout)
            } else if !call.answered {
                (now.saturating_duration_since(call.offered_at()) >= cfg.offer_timeout)
                    .then_some(EndReason::OfferTimeout)
            } else if call.held {
                (now.saturating_duration_since(call.last_media()) >= cfg.silent_timeout)
                    .then_some(EndReason::SilentTimeout)
            } else {
                (now.saturating_duration_since(call.last_media()) >= cfg.timeout)
                    .then_some(EndReason::MediaTimeout)
            };
            if let Some(r) = reason {
                ended.push((call.id().to_string(), r));
            }
        }
        self.end_due_branches(now);
        for (id, r) in &ended {
            // A deleted call already had its delay; the others rest their ports.
            self.end_call(id, *r, now, *r == EndReason::Deleted);
        }
        // Final counts lost to a full event ring must not pin memory forever.
        if self.retiring.len() > 100_000 {
            self.retiring.clear();
            self.quiet.clear();
        }
        self.release_due(now);
        ended
    }

    /// Ends the forks whose delayed `delete` is due: alone while the call has
    /// other forks, else (the others went meanwhile) with the whole call.
    fn end_due_branches(&mut self, now: Instant) {
        let due: Vec<(Box<str>, Box<str>)> = self
            .calls
            .values()
            .flat_map(|c| {
                c.monologues
                    .iter()
                    .filter(|m| m.ending().is_some_and(|at| at <= now))
                    .map(|m| (Box::from(c.id()), Box::from(m.tag())))
            })
            .collect();
        for (call_id, tag) in due {
            let Some(call) = self.calls.get(&call_id) else {
                continue;
            };
            let Some(m) = call.monologue(&tag) else {
                continue;
            };
            if call.lone_branch(m, None).is_some() {
                if let Err(e) = self.end_branch(&call_id, m, now) {
                    tracing::warn!(call_id = %call_id, tag = %tag, error = %e, "ending a branch failed");
                }
            } else {
                self.end_call(&call_id, EndReason::Deleted, now, true);
            }
        }
    }

    fn release_due(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.draining.len() {
            if self.draining[i].0 <= now {
                let (_, ended, iface, worker, pair) = self.draining.swap_remove(i);
                self.res.release(iface, worker, pair, ended);
            } else {
                i += 1;
            }
        }
    }

    /// Ends every call (shutdown): flows removed, ports released at once.
    pub fn shutdown(&mut self, now: Instant) {
        let ids: Vec<Box<str>> = self.calls.ids().map(Box::from).collect();
        for id in ids {
            self.end_call(&id, EndReason::Shutdown, now, true);
        }
        // The workers close every socket, parked ones too, when they stop.
        self.draining.clear();
    }

    /// Removes the call's flows and schedules (or, `now_release`, performs) the
    /// release of its ports.
    fn end_call(&mut self, call_id: &str, reason: EndReason, now: Instant, release_now: bool) {
        let before = self.flows_of(call_id);
        let Some(call) = self.calls.remove(call_id) else {
            return;
        };
        self.reindex(call_id, before);
        self.load[call.worker()] = self.load[call.worker()].saturating_sub(1);
        let idx = reason as usize;
        self.totals.ended[idx] += 1;
        let lasted = now.saturating_duration_since(call.created());
        self.totals.call_seconds += lasted.as_secs();
        let (answered, packets) = (call.answered, call.packets());
        let at = if release_now {
            now
        } else {
            now + self.res.cfg.delete_delay
        };
        // Ports released within the rest may skip it if the call turns out to
        // have had no traffic at all.
        let key = (at.saturating_duration_since(now) < ports::PARK_REST).then(|| {
            self.next_quiet += 1;
            self.quiet.insert(
                self.next_quiet,
                QuietCheck {
                    worker: call.worker(),
                    flows_left: 0,
                    heard: false,
                    pairs: Vec::new(),
                },
            );
            self.next_quiet
        });
        let worker = call.worker();
        for mono in call.monologues {
            self.retire_sides(call_id, worker, mono.sides, now, at, key);
        }
        if let Some(k) = key
            && self.quiet.get(&k).is_some_and(|c| c.flows_left == 0)
        {
            self.quiet.remove(&k);
        }
        if release_now {
            self.release_due(now);
        }
        tracing::info!(
            call_id = %call_id,
            reason = reason.as_str(),
            answered,
            seconds = lasted.as_secs(),
            packets,
            "call ended"
        );
    }
}

impl<B: MediaBackend> Sessions<B> {
    /// Removes the sides' flows (their counters go to the totals), at `now`, and
    /// drains their ports until `at`.
    fn retire_sides(
        &mut self,
        call_id: &str,
        worker: usize,
        sides: Box<[call::Side]>,
        now: Instant,
        at: Instant,
        quiet: Option<u64>,
    ) {
        for mut side in sides.into_vec() {
            let t = side.totals();
            self.totals.media.packets += t.packets;
            self.totals.media.bytes += t.bytes;
            self.totals.media.errors += t.errors;
            for (k, id) in side.flows.take().into_iter().flatten().enumerate() {
                self.retiring
                    .insert((worker, id), (side.counters(k), quiet));
                if let Some(c) = quiet.and_then(|q| self.quiet.get_mut(&q)) {
                    c.flows_left += 1;
                }
                if let Err(e) = negotiate::end_flow(&mut self.res.backend, worker, &mut side, k, id)
                {
                    tracing::warn!(call_id = %call_id, error = %e, "flow removal failed");
                }
            }
            if let Some(c) = quiet.and_then(|q| self.quiet.get_mut(&q)) {
                c.pairs.push((side.iface(), side.pair.port));
            }
            self.draining
                .push((at, now, side.iface(), worker, side.pair));
        }
    }
}

/// A reply the writer streamed, back as a value.
fn decoded(out: &[u8]) -> Result<Value, String> {
    Value::decode(out).map_err(|e| format!("internal: reply does not decode: {e}"))
}

/// The reply to an offer or answer: `result: ok` and the rewritten SDP.
fn sdp_value(sdp: &Sdp) -> Value {
    Value::Dict(vec![
        (b"result".to_vec(), Value::str("ok")),
        (b"sdp".to_vec(), Value::Bytes(sdp.to_bytes())),
    ])
}

/// `sdp_value` written straight into a reply, the SDP serialised in place.
fn sdp_reply(sdp: &Sdp, out: &mut Vec<u8>) {
    let len = sdp.text_len();
    crate::ng::bencode::Writer::new(out)
        .dict()
        .str("result")
        .str("ok")
        .str("sdp")
        .bytes_with(len, |out| {
            out.reserve(len + 1);
            sdp.write_to(out);
        })
        .end();
}

fn parse_sdp(req: &Value) -> Result<Sdp, String> {
    let raw = flags::lookup(req, "sdp")
        .ok_or("No SDP body in message")?
        .as_bytes()
        .ok_or("'sdp' must be a string")?;
    Sdp::parse_bytes(raw).map_err(|e| format!("Failed to parse SDP: {e}"))
}

#[cfg(test)]
mod event_tests;
#[cfg(test)]
mod fork_tests;
#[cfg(test)]
mod park_tests;
#[cfg(test)]
mod sdes_tests;
#[cfg(test)]
mod tests;
