//! The per-core forwarding engine: `on_datagram` takes the bytes, their source and
//! `now`, and returns what to send. It owns the flow table, the stats and the event
//! queue of one worker; the I/O shell around it owns sockets and clocks.
//!
//! Packet path, in order (each step may end in a counted drop):
//! lookup → demux → (decrypt) → parse → source check/latch → account → block →
//! output lookup → rewrite → (encrypt) → (loop guard, for the relay's own ports)
//! → forward.

use std::net::SocketAddr;

use ferrelay_wire::{Compound, PacketClass, RtcpPacket, RtpPacket, classify};
use hdrhistogram::Histogram;

use crate::crypto::{self, FlowCrypto, Kind};
use crate::error::{DropReason, EngineError};
use crate::event::{EngineEvent, EventQueue};
use crate::latch::{Addr, Verdict};
use crate::loops::{LocalEndpoints, LoopGuard};
use crate::rule::{Component, FlowId, FlowRule, LatchMode, SsrcRewrite};
use crate::stats::{FlowStats, WorkerCounters, WorkerStats, residence_histogram};
use crate::table::{Flow, FlowTable, Rule};

/// Room the I/O shell leaves after each datagram so a transform (SRTP tag, MKI,
/// SRTCP index) can grow the packet in place.
pub const TAILROOM: usize = 64;

/// Sizes of the engine's tables (reserved up front, written as flows arrive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Flow slots; `FlowId.index` must be below this.
    pub max_flows: u32,
    /// Events held until `pop_event`; more are dropped and counted.
    pub event_capacity: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_flows: 16_384,
            event_capacity: 4_096,
        }
    }
}

/// What the I/O shell should do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send `buf[..len]` from the socket of flow `via` to `dest`.
    Forward {
        via: FlowId,
        dest: SocketAddr,
        len: usize,
    },
    /// Discard it; the reason is already counted.
    Drop(DropReason),
}

/// The forwarding engine of one worker. See the module docs for the packet path.
#[derive(Debug)]
pub struct Engine {
    table: FlowTable,
    events: EventQueue,
    counters: WorkerCounters,
    residence: Histogram<u64>,
    /// The relay's own media endpoints; empty until `set_local`.
    local: LocalEndpoints,
    /// Repeats of packets sent to `local`; `None` while it is empty.
    loops: Option<LoopGuard>,
}

impl Engine {
    /// Builds an engine with every table reserved up front.
    pub fn new(cfg: EngineConfig) -> Engine {
        Engine {
            table: FlowTable::new(cfg.max_flows),
            events: EventQueue::new(cfg.event_capacity),
            counters: WorkerCounters::default(),
            residence: residence_histogram(),
            local: LocalEndpoints::default(),
            loops: None,
        }
    }

    /// Tells the engine the relay's own media endpoints, which turns on the loop
    /// guard (`crate::loops`) for packets sent to them; empty turns it off.
    pub fn set_local(&mut self, local: LocalEndpoints) {
        // A guard already running keeps its table (and the repeats it counts).
        if local.is_empty() {
            self.loops = None;
        } else if self.loops.is_none() {
            self.loops = Some(LoopGuard::new());
        }
        self.local = local;
        for (_, flow) in self.table.iter_mut() {
            flow.rule.remote_local = is_local(&self.local, flow.rule.remote);
            flow.latch.addr_local = is_local(&self.local, flow.latch.addr);
        }
    }

    /// Adds a flow in the slot `id.index`, building its SRTP contexts and, when it
    /// maps payload types, its PT map: the only allocations a flow needs, made
    /// here (and in `update`) so its packet path never makes one.
    pub fn insert(&mut self, id: FlowId, rule: FlowRule) -> Result<(), EngineError> {
        let (mut rule, spec) = Rule::split(rule);
        rule.remote_local = is_local(&self.local, rule.remote);
        let srtp = FlowCrypto::build(&spec)?;
        self.table.insert(id, rule, srtp)
    }

    /// Replaces a flow's rule, keeping its stats and its latched remote (the latch is
    /// dropped if the new rule is `LatchMode::Fixed`, which never learns).
    ///
    /// An SRTP direction whose suite and master key are unchanged keeps its context
    /// (ROCs, replay windows, sent indices); changed keys get a fresh one. A refused
    /// key leaves the flow as it was.
    pub fn update(&mut self, id: FlowId, rule: FlowRule) -> Result<(), EngineError> {
        let (flow, srtp) = self
            .table
            .get_with_crypto(id)
            .ok_or(EngineError::UnknownFlow)?;
        let (mut rule, spec) = Rule::split(rule);
        rule.remote_local = is_local(&self.local, rule.remote);
        let decrypt = crypto::change(srtp.decrypt.as_deref(), spec.decrypt.as_ref())?;
        let encrypt = crypto::change(srtp.encrypt.as_deref(), spec.encrypt.as_ref())?;
        srtp.apply(decrypt, encrypt);
        if rule.latch == LatchMode::Fixed {
            flow.latch.addr = None;
        }
        flow.rule = rule;
        Ok(())
    }

    /// Removes a flow and returns its final stats. Its slot then refuses `id`'s
    /// generation, so reuse it with a new one.
    pub fn remove(&mut self, id: FlowId) -> Result<FlowStats, EngineError> {
        let flow = self.table.remove(id)?;
        Ok(snapshot(&flow))
    }

    /// Blocks or unblocks media on a flow (packets still count as received).
    pub fn set_blocked(&mut self, id: FlowId, blocked: bool) -> Result<(), EngineError> {
        let flow = self.table.get_mut(id).ok_or(EngineError::UnknownFlow)?;
        flow.rule.blocked = blocked;
        Ok(())
    }

    pub fn contains(&self, id: FlowId) -> bool {
        self.table.get(id).is_some()
    }

    /// The hot path. `buf[..len]` is the datagram that arrived on flow `id`'s socket
    /// from `src`; `buf.len() >= len + TAILROOM` so a transform may grow it in place.
    /// On `Forward`, `buf[..len]` (the new `len`) is what to send.
    #[inline]
    pub fn on_datagram(
        &mut self,
        now_ns: u64,
        id: FlowId,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Action {
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += len as u64;
        let mut out = self.forward(now_ns, id, src, buf, len);
        if let Ok((via, dest, len, true)) = out {
            out = self
                .pass_to_local(now_ns, id, dest, buf.get(..len).unwrap_or_default())
                .map(|()| (via, dest, len, true));
        }
        match out {
            Ok((via, dest, len, _)) => {
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += len as u64;
                Action::Forward { via, dest, len }
            }
            Err(reason) => {
                self.counters.drops.bump(reason);
                if let Some(flow) = self.table.get_mut(id) {
                    // The first loop drop, then at most one a minute: not per packet.
                    if reason == DropReason::Loop && flow.counters.drops.loop_report_due(now_ns) {
                        self.events.push(EngineEvent::LoopDetected { id });
                    }
                    flow.counters.drops.bump(reason);
                }
                Action::Drop(reason)
            }
        }
    }

    /// The loop guard's say on a packet `forward` sends to one of the relay's own
    /// ports: a hairpin passes once, a loop's packet keeps coming back, the same
    /// bytes to the same port (see `crate::loops`); then the flow's forwarded
    /// count, which `forward` left to it. Out of `forward`, which the packets
    /// that leave the relay (nearly all) take without it: inside, even never
    /// called, it cost every packet 2–3 ns (criterion, `forward_1000_flows`).
    #[inline(never)]
    fn pass_to_local(
        &mut self,
        now_ns: u64,
        id: FlowId,
        dest: SocketAddr,
        pkt: &[u8],
    ) -> Result<(), DropReason> {
        if let Some(guard) = self.loops.as_mut()
            && guard.repeats(now_ns, Addr::from(dest), pkt)
        {
            return Err(DropReason::Loop);
        }
        let flow = self.table.get_mut(id).ok_or(DropReason::UnknownFlow)?;
        flow.counters.fwd_packets += 1;
        flow.counters.fwd_bytes += pkt.len() as u64;
        Ok(())
    }

    fn forward(
        &mut self,
        now_ns: u64,
        id: FlowId,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Result<(FlowId, SocketAddr, usize, bool), DropReason> {
        let (flow, srtp) = self
            .table
            .get_with_crypto(id)
            .ok_or(DropReason::UnknownFlow)?;
        // With many flows taking turns a context is cache-cold: start its loads now,
        // beside the slot's, so they overlap the slot's miss and the parse and latch.
        srtp.prefetch();
        flow.counters.rx_packets += 1;
        flow.counters.rx_bytes += len as u64;
        let kind = kind_of(
            flow.rule.component,
            buf.get(..len).ok_or(DropReason::Malformed)?,
        )?;
        // RFC 3711 §3.3 / §3.4: verify and decrypt in place before anything trusts the
        // packet, so only authenticated packets move a latch or feed the stats. The
        // transform checks the header it needs (RTP fixed header with CSRCs and
        // extension; the first RTCP header and SSRC) itself; the full parse below
        // then runs on the plain packet.
        let mut len = len;
        if let Some(k) = srtp.decrypt.as_deref_mut() {
            len = crypto::unprotect(&mut k.ctx, kind, buf, len)?;
        }
        let pkt = buf.get_mut(..len).ok_or(DropReason::Malformed)?;

        // Parse once; keep only the fields later steps need.
        let (ssrc, rtp_fields) = match kind {
            Kind::Rtp => {
                let p = RtpPacket::new_checked(&*pkt).map_err(|_| DropReason::Malformed)?;
                (Some(p.ssrc()), Some((p.sequence_number(), p.timestamp())))
            }
            Kind::Rtcp => {
                let c = Compound::new_checked(pkt).map_err(|_| DropReason::Malformed)?;
                (c.iter().next().and_then(|p| p.ssrc()), None)
            }
        };

        let rule = &flow.rule;
        let verdict = flow.latch.check(
            rule.latch,
            rule.on_mismatch.policy(),
            rule.remote,
            src,
            ssrc,
            now_ns,
        );
        let from_remote = match verdict {
            Verdict::Mismatch => return Err(DropReason::SourceMismatch),
            Verdict::AcceptForeign => false,
            Verdict::Accept => true,
            Verdict::Latched { first } => {
                if !first {
                    flow.counters.relatches = flow.counters.relatches.saturating_add(1);
                }
                flow.latch.addr_local = self.local.contains(Addr::from(src));
                self.events.push(EngineEvent::Latched { id, addr: src });
                true
            }
        };
        if from_remote {
            account(flow, &mut self.events, id, now_ns, ssrc, rtp_fields);
        }
        if flow.rule.blocked {
            return Err(DropReason::Blocked);
        }
        let out = match kind {
            Kind::Rtp => flow.rule.rtp_out,
            Kind::Rtcp => flow.rule.rtcp_out,
        }
        .ok_or(DropReason::NoOutput)?;

        let peer = self.table.get(out.via).ok_or(DropReason::NoOutput)?;
        let dest = peer
            .latch
            .remote(peer.rule.remote)
            .ok_or(DropReason::NoDestination)?;
        // Never back to the sender: that is a loop, not a call. The ports, compared
        // first, differ for nearly every packet, so the full compare (an enum of
        // two address families) is rarely reached. Compared as the latch keeps
        // addresses (without IPv6 scope), so a scoped source that latched its
        // peer is caught too.
        if dest.port() == src.port() && dest == Addr::from(src) {
            return Err(DropReason::Reflected);
        }
        let to_local = peer.sends_to_local();
        let dest = SocketAddr::from(dest);
        // The peer rewrote the SSRC of the media it forwarded toward our remote, so our
        // remote's reports about that media name the rewritten SSRC.
        let peer_rewrite = match kind {
            Kind::Rtp => None,
            Kind::Rtcp => peer.rule.ssrc_rewrite,
        };

        let (flow, srtp) = self
            .table
            .get_with_crypto(id)
            .ok_or(DropReason::UnknownFlow)?;
        match kind {
            Kind::Rtp => rewrite_rtp(flow, pkt),
            Kind::Rtcp => rewrite_rtcp(flow.rule.ssrc_rewrite, peer_rewrite, pkt),
        }
        // RFC 3711 §3.3 / §3.4 sender side: encrypt after every rewrite of the plain
        // packet, growing it into the tailroom by the tag (and SRTCP index).
        if let Some(k) = srtp.encrypt.as_deref_mut() {
            len = crypto::protect(&mut k.ctx, kind, buf, len)?;
        }
        if to_local {
            // Counted by `pass_to_local` once the loop guard let it go.
            return Ok((out.via, dest, len, true));
        }
        flow.counters.fwd_packets += 1;
        flow.counters.fwd_bytes += len as u64;
        Ok((out.via, dest, len, false))
    }

    /// Records one forwarded packet's receive-to-send time; clamps past 10 s.
    #[inline]
    pub fn record_residence(&mut self, ns: u64) {
        self.residence.saturating_record(ns);
    }

    /// A snapshot of one flow's counters.
    pub fn flow_stats(&self, id: FlowId) -> Option<FlowStats> {
        self.table.get(id).map(snapshot)
    }

    /// A snapshot of the worker's counters and residence histogram (clones it).
    pub fn worker_stats(&self) -> WorkerStats {
        let c = &self.counters;
        WorkerStats {
            rx_packets: c.rx_packets,
            rx_bytes: c.rx_bytes,
            tx_packets: c.tx_packets,
            tx_bytes: c.tx_bytes,
            drops: c.drops,
            flows: self.table.live() as u64,
            events_overflow: self.events.overflow(),
            residence_ns: self.residence.clone(),
        }
    }

    /// Queues `MediaIdle` for each flow that has had no media for `idle_after_ns`,
    /// once per idle period. A flow that never saw media counts from its first scan.
    pub fn scan_idle(&mut self, now_ns: u64, idle_after_ns: u64) {
        for (id, flow) in self.table.iter_mut() {
            let since = flow.idle.since_or_start(now_ns);
            let idle_ns = now_ns.saturating_sub(since);
            if idle_ns >= idle_after_ns && !flow.idle.reported() {
                flow.idle.set_reported();
                self.events.push(EngineEvent::MediaIdle { id, idle_ns });
            }
        }
    }

    /// The oldest queued event.
    pub fn pop_event(&mut self) -> Option<EngineEvent> {
        self.events.pop()
    }

    /// Ids of every live flow, in slot order.
    pub fn flow_ids(&self) -> impl Iterator<Item = FlowId> + '_ {
        self.table.iter().map(|(id, _)| id)
    }
}

/// Whether `a` is one of the relay's own endpoints (none is).
fn is_local(local: &LocalEndpoints, a: Option<Addr>) -> bool {
    a.is_some_and(|a| local.contains(a))
}

/// Decides RTP or RTCP from the port's component and the first two bytes.
#[inline]
fn kind_of(component: Component, pkt: &[u8]) -> Result<Kind, DropReason> {
    let class = match classify(pkt) {
        PacketClass::Rtp => Kind::Rtp,
        PacketClass::Rtcp => Kind::Rtcp,
        // A first byte in the RTP range with nothing after it.
        PacketClass::Unknown if pkt.first().is_some_and(|b| (128..=191).contains(b)) => {
            return Err(DropReason::Malformed);
        }
        // RFC 7983: STUN, ZRTP, DTLS, TURN channel or junk: not ours to forward yet.
        _ => return Err(DropReason::NotMedia),
    };
    match (component, class) {
        (Component::Muxed, k) => Ok(k),
        (Component::Rtp, Kind::Rtp) => Ok(Kind::Rtp),
        (Component::Rtcp, Kind::Rtcp) => Ok(Kind::Rtcp),
        _ => Err(DropReason::WrongComponent),
    }
}

/// Per-flow accounting of a packet accepted from the flow's remote.
#[inline]
fn account(
    flow: &mut Flow,
    events: &mut EventQueue,
    id: FlowId,
    now_ns: u64,
    ssrc: Option<u32>,
    rtp_fields: Option<(u16, u32)>,
) {
    let c = &mut flow.counters;
    c.first_packet_ns.get_or_insert(now_ns);
    // Also the last packet's time, which the snapshot reads from here.
    flow.idle.restart(now_ns);
    match (ssrc, rtp_fields) {
        (Some(ssrc), Some((seq, ts))) => {
            if c.on_rtp(now_ns, ssrc, seq, ts, flow.rule.clock_rate) {
                events.push(EngineEvent::SsrcChanged { id, ssrc });
            }
        }
        _ => c.rtcp_packets = c.rtcp_packets.saturating_add(1),
    }
}

/// Applies the rule's SSRC rewrite and PT map to a plain RTP packet in place.
#[inline]
fn rewrite_rtp(flow: &Flow, pkt: &mut [u8]) {
    let rw = flow.rule.ssrc_rewrite;
    if rw.is_none() && flow.rule.pt_map.is_none() {
        return;
    }
    let Ok(mut p) = RtpPacket::new_checked(pkt) else {
        return;
    };
    if let Some(rw) = rw
        && p.ssrc() == rw.from
    {
        p.set_ssrc(rw.to);
    }
    if let Some(map) = &flow.rule.pt_map {
        let pt = p.payload_type();
        p.set_payload_type(map.0[usize::from(pt)]);
    }
}

/// Rewrites SSRCs in every packet of a plain RTCP compound: the sender (SR/RR,
/// SDES/BYE first source, APP, FB) by our own rewrite, and what the packet reports
/// on (report blocks, RFC 3550 §6.4.1; FB media source, RFC 4585 §6.1) back through
/// the inverse of the peer's rewrite, so feedback reaches the real sender.
#[inline]
fn rewrite_rtcp(own: Option<SsrcRewrite>, peer: Option<SsrcRewrite>, pkt: &mut [u8]) {
    if own.is_none() && peer.is_none() {
        return;
    }
    let mut at = 0;
    while let Some(rest) = pkt.get_mut(at..).filter(|r| !r.is_empty()) {
        let Ok(mut p) = RtcpPacket::new_checked(rest) else {
            return;
        };
        at += p.packet_len();
        if let Some(rw) = own
            && p.ssrc() == Some(rw.from)
        {
            p.set_ssrc(rw.to);
        }
        let Some(rw) = peer else { continue };
        if p.media_ssrc() == Some(rw.to) {
            p.set_media_ssrc(rw.from);
        }
        for i in 0..usize::from(p.count()) {
            match p.report_block_mut(i) {
                Some(mut b) if b.ssrc() == rw.to => b.set_ssrc(rw.from),
                Some(_) => {}
                None => break,
            }
        }
    }
}

/// Builds the public snapshot of a flow.
fn snapshot(flow: &Flow) -> FlowStats {
    let mut s = flow.counters.snapshot(flow.rule.clock_rate);
    // Every accepted packet restarts the idle period, and nothing else does once
    // one has arrived (the idle scan only starts the count of a flow without media).
    s.last_packet_ns = flow.counters.first_packet_ns.get().and(flow.idle.since());
    s.remote = flow.latch.remote(flow.rule.remote).map(SocketAddr::from);
    s.latched = flow.latch.addr.is_some();
    s.blocked = flow.rule.blocked;
    s
}
