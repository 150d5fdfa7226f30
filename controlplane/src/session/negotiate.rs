//! Offer and answer applied to a call: which party is which, the port pairs each
//! side needs, the flows between them, and the SDP rewritten onto the relay.

use std::net::IpAddr;
use std::time::Instant;

use ferrelay_engine::{FlowId, LatchMode};
use ferrelay_sdp::{Proto, Sdp};

use super::backend::MediaBackend;
use super::call::{Call, Monologue, Policy, Side};
use super::flags::{Family, Flags};
use super::ports::FlowSocket;
use super::{Resources, SessionConfig, rewrite, sdes, unix_now};
use crate::config::InterfaceSpec;

/// Index of the monologue named `tag`, created when new.
fn ensure_monologue(call: &mut Call, tag: &str) -> usize {
    match call.monologue(tag) {
        Some(i) => i,
        None => {
            // Exact, not Vec's minimum of four: a call lives long and there are many.
            call.monologues.reserve_exact(1);
            call.monologues.push(Monologue::new(tag, unix_now()));
            call.monologues.len() - 1
        }
    }
}

/// Picks the interface for a side: by name (`direction`), else by family, else the first.
fn pick_iface(
    cfg: &SessionConfig,
    name: Option<&str>,
    family: Option<Family>,
) -> Result<usize, String> {
    let ifs = &cfg.interfaces;
    if let Some(n) = name {
        return ifs
            .iter()
            .position(|i| i.name == n)
            .ok_or_else(|| format!("Unknown interface '{n}'"));
    }
    match family {
        None => Ok(0),
        Some(f) => ifs
            .iter()
            .position(|i| Family::of(i.local) == f)
            .ok_or_else(|| format!("No interface of address family {f:?}")),
    }
}

/// Makes sure monologue `m` has a side (with bound ports) for m= line `i`.
fn ensure_side<B: MediaBackend>(
    res: &mut Resources<B>,
    worker: usize,
    mono: &mut Monologue,
    i: usize,
    iface: usize,
    now: Instant,
) -> Result<(), String> {
    if mono.sides.len() > i {
        return Ok(());
    }
    let index = Side::iface_index(iface)?;
    // Exact capacity: Vec would round one side up to four (2.3 KiB per party),
    // and the boxed slice it goes back to keeps no spare.
    let mut sides = std::mem::take(&mut mono.sides).into_vec();
    sides.reserve_exact(i + 1 - sides.len());
    let mut added = Ok(());
    while sides.len() <= i {
        let pair = res.pool(iface).alloc(worker, now);
        res.close_evicted(iface);
        match pair {
            Ok(pair) => sides.push(Side::new(index, pair)),
            Err(_) => {
                added = Err("Ran out of ports".to_owned());
                break;
            }
        }
    }
    mono.sides = sides.into_boxed_slice();
    added
}

/// Ends flow `k` of a side: parked, so a later flow on its port takes the socket
/// over, where the backend can; removed otherwise.
pub(super) fn retire_flow<B: MediaBackend>(
    backend: &mut B,
    worker: usize,
    side: &mut Side,
    k: usize,
    id: FlowId,
) -> Result<(), String> {
    side.retire(k);
    end_flow(backend, worker, side, k, id)
}

/// [`retire_flow`] for a side that ends with it: its counters are already
/// counted, so they are not moved.
pub(super) fn end_flow<B: MediaBackend>(
    backend: &mut B,
    worker: usize,
    side: &mut Side,
    k: usize,
    id: FlowId,
) -> Result<(), String> {
    if backend.park_flow(worker, id).map_err(|e| e.to_string())? {
        side.pair.park(k, id);
    }
    Ok(())
}

/// Starts flow `k` of a side on its port's socket (new or parked, or bound
/// again on `ip`, the side's interface's address).
fn start_flow<B: MediaBackend>(
    backend: &mut B,
    ip: IpAddr,
    worker: usize,
    side: &mut Side,
    k: usize,
) -> Result<FlowId, String> {
    let sock = side
        .pair
        .take(k, ip)
        .map_err(|e| format!("cannot bind media port {}: {e}", side.pair.port + k as u16))?;
    let rule = side.bare_rule(k);
    let started = match sock {
        FlowSocket::New(s) => backend.add_flow(worker, s, rule),
        FlowSocket::Parked(p) => backend.reuse_flow(worker, p, rule).inspect_err(|_| {
            side.pair.untake(k, FlowSocket::Parked(p));
        }),
    };
    started.map_err(|e| e.to_string())
}

/// Both monologues mutably: `(a, b)` with `a != b`.
pub(super) fn two<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    if a < b {
        let (l, r) = v.split_at_mut(b);
        (&mut l[a], &mut r[0])
    } else {
        let (l, r) = v.split_at_mut(a);
        (&mut r[0], &mut l[b])
    }
}

/// Installs or updates the four flows of m= line `i` between two parties, whose
/// sides' interface indexes name `ifaces`.
pub(super) fn sync_stream<B: MediaBackend>(
    backend: &mut B,
    ifaces: &[InterfaceSpec],
    worker: usize,
    sa: &mut Side,
    sb: &mut Side,
) -> Result<(), String> {
    if sa.rejected() || sb.rejected() {
        for s in [sa, sb] {
            if let Some(flows) = s.flows.take() {
                for (k, id) in flows.into_iter().enumerate() {
                    retire_flow(backend, worker, s, k, id)?;
                }
            }
        }
        return Ok(());
    }
    for s in [&mut *sa, &mut *sb] {
        if s.flows.is_none() {
            let ip = s.local_ip(ifaces).ok_or("no such media interface")?;
            let rtp = start_flow(backend, ip, worker, s, 0)?;
            let rtcp = match start_flow(backend, ip, worker, s, 1) {
                Ok(id) => id,
                Err(e) => {
                    // Do not leave the first flow of the pair behind.
                    let _ = retire_flow(backend, worker, s, 0, rtp);
                    return Err(e);
                }
            };
            s.flows = Some([rtp, rtcp]);
            s.set_failed(false);
        }
    }
    let (fa, fb) = (sa.flows.expect("installed"), sb.flows.expect("installed"));
    let ra = sa.rules(fb, sb.muxed(), sdes::spec(sa.crypto(), sb.crypto()));
    let rb = sb.rules(fa, sa.muxed(), sdes::spec(sb.crypto(), sa.crypto()));
    for (ids, rules) in [(fa, ra), (fb, rb)] {
        for (id, rule) in ids.into_iter().zip(rules) {
            backend
                .update_flow(worker, id, rule)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

pub(super) fn offer_call<B: MediaBackend>(
    res: &mut Resources<B>,
    call: &mut Call,
    from_tag: &str,
    to_tag: Option<&str>,
    flags: &Flags,
    sdp: &mut Sdp,
    now: Instant,
) -> Result<(), String> {
    let x = ensure_monologue(call, from_tag);
    let y = match to_tag {
        Some(t) => ensure_monologue(call, t),
        None => match call.monologues[x].peer().map(str::to_owned) {
            Some(p) => ensure_monologue(call, &p),
            None => ensure_monologue(call, ""),
        },
    };
    if x == y {
        return Err("from-tag and to-tag name the same party".into());
    }
    let x_iface = pick_iface(&res.cfg, flags.direction[0].as_deref(), None)?;
    let y_iface = pick_iface(
        &res.cfg,
        flags.direction[1].as_deref(),
        flags.address_family,
    )?;
    let worker = call.worker();
    let (mx, my) = two(&mut call.monologues, x, y);
    mx.set_peer(Some(my.tag()));
    my.set_peer(Some(mx.tag()));
    mx.set_mux_flags(flags.mux);
    if let Some(l) = &flags.label {
        mx.set_label(l);
    }
    let policy = Policy::from_flags(flags);
    let mut all_held = !sdp.media().is_empty();
    let mut plan = Vec::with_capacity(sdp.media().len());
    let mut edits = Vec::with_capacity(sdp.media().len());
    let want = flags.transport_protocol.as_deref().map(Proto::parse);
    for (i, m) in sdp.media().iter().enumerate() {
        ensure_side(res, worker, mx, i, x_iface, now)?;
        ensure_side(res, worker, my, i, y_iface, now)?;
        let (sx, sy) = (&mut mx.sides[i], &mut my.sides[i]);
        all_held &= m.is_on_hold(sdp);
        rewrite::learn_remote(sx, m, sdp, flags);
        sx.set_policy(policy);
        sy.set_rejected(sx.rejected());
        // Until the answer says otherwise, the answerer speaks what was offered.
        sy.clock_rate = sx.clock_rate;
        sy.names = match &flags.transport_protocol {
            Some(p) => sx.names.with_proto(p),
            None => sx.names.clone(),
        };
        sy.set_mux_offered(
            flags.mux.require
                || flags.mux.offer
                || (sx.mux_signalled() && !flags.mux.demux && !flags.mux.reject),
        );
        let edit = sdes::offer(
            sx.crypto_mut(),
            sy.crypto_mut(),
            m,
            want.as_ref(),
            &flags.sdes,
        );
        sx.trim_crypto();
        sy.trim_crypto();
        edits.push(edit?);
        sync_stream(&mut res.backend, &res.cfg.interfaces, worker, sx, sy)?;
        plan.push(rewrite::Plan {
            port: if sy.rejected() { 0 } else { sy.pair.port },
            mux: sy.mux_offered(),
            rtcp_on_rtp_port: flags.mux.require,
        });
    }
    let adv = res.cfg.interfaces[y_iface].advertised;
    rewrite::apply(sdp, adv, &plan, flags);
    for (m, e) in sdp.media_mut().iter_mut().zip(edits) {
        e.apply(m);
    }
    call.held = all_held;
    call.last_signal_unix = unix_now();
    if !call.answered {
        call.set_offered_at(now);
    }
    Ok(())
}

/// The monologue answering `x`'s offer as `to_tag`, and whether its sides just
/// moved to it from another branch (so their latched remote must be forgotten).
///
/// Forking (RFC 3261 §16.7, §13.2.2.4): every fork of an INVITE got the same offer
/// SDP, so all of them send to the ports of `x`'s one answerer slot. The first
/// answer tags the slot's tagless monologue; an answer from another branch gets a
/// monologue of its own and the slot's sides (ports and flows) move to it, so media
/// from `x` goes to the branch that answered last and no fork has to learn a new
/// port. A branch left behind keeps its tag (for `delete` and a later answer) and
/// no sides.
fn answerer(call: &mut Call, x: usize, to_tag: &str) -> Result<(usize, bool), String> {
    let x_tag = call.monologues[x].tag().to_owned();
    let live = call.monologues[x]
        .peer()
        .and_then(|p| call.monologue(p))
        .filter(|p| *p != x);
    let y = match call.monologue(to_tag) {
        Some(y) => y,
        None => match live {
            Some(l) if call.monologues[l].tag().is_empty() => {
                call.monologues[l].set_tag(to_tag);
                call.monologues[x].set_peer(Some(to_tag));
                return Ok((l, false));
            }
            Some(l) if call.monologues[l].peer() == Some(&*x_tag) => {
                call.monologues.reserve_exact(1);
                let mut m = Monologue::new(to_tag, unix_now());
                m.set_peer(Some(&x_tag));
                call.monologues.push(m);
                call.monologues.len() - 1
            }
            _ => return Err("Unknown to-tag".into()),
        },
    };
    let Some(l) = live.filter(|l| {
        *l != y
            && call.monologues[y].sides.is_empty()
            && call.monologues[*l].peer() == Some(&*x_tag)
    }) else {
        return Ok((y, false));
    };
    // Another branch answers: the answerer slot's sides follow it, and the
    // branch it displaces keeps what its own answer said.
    let memo = call.monologues[l]
        .sides
        .iter()
        .zip(&call.monologues[x].sides)
        .map(|(sl, sx)| sl.memo(sx))
        .collect();
    call.monologues[l].set_memo(memo);
    let sides = std::mem::take(&mut call.monologues[l].sides);
    call.monologues[y].sides = sides;
    call.monologues[y].take_memo();
    call.monologues[y].set_peer(Some(&x_tag));
    call.monologues[x].set_peer(Some(to_tag));
    tracing::info!(call_id = %call.id(), to_tag = %to_tag, "forked answer takes the media");
    Ok((y, true))
}

/// Makes the side's flows forget the remote they latched (the engine drops the
/// latch on a `Fixed` rule); the rules that follow make them learn again.
pub(super) fn unlatch<B: MediaBackend>(
    backend: &mut B,
    worker: usize,
    side: &Side,
) -> Result<(), String> {
    for (k, id) in side.flows.into_iter().flatten().enumerate() {
        let mut r = side.bare_rule(k);
        r.latch = LatchMode::Fixed;
        backend
            .update_flow(worker, id, r)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub(super) fn answer_call<B: MediaBackend>(
    res: &mut Resources<B>,
    call: &mut Call,
    from_tag: &str,
    to_tag: &str,
    flags: &Flags,
    sdp: &mut Sdp,
    now: Instant,
) -> Result<(), String> {
    let x = call.monologue(from_tag).ok_or("Unknown from-tag")?;
    let (y, relatch) = answerer(call, x, to_tag)?;
    if x == y {
        return Err("from-tag and to-tag name the same party".into());
    }
    let worker = call.worker();
    let (mx, my) = two(&mut call.monologues, x, y);
    // A fork that answers again is not ending any more.
    my.set_ending(None);
    // Both parties hold a side per offered stream (an offer that failed half way
    // may have left one short; such streams are refused rather than indexed).
    if sdp.media().len() > mx.sides.len().min(my.sides.len()) {
        return Err("The answer has more media than the offer".into());
    }
    if let Some(l) = &flags.label {
        my.set_label(l);
    }
    let policy = Policy::from_flags(flags);
    let mut plan = Vec::with_capacity(sdp.media().len());
    let mut edits = Vec::with_capacity(sdp.media().len());
    let mut iface = mx.sides.first().map_or(0, Side::iface);
    let mf = mx.mux_flags();
    for (i, m) in sdp.media().iter().enumerate() {
        let (sx, sy) = (&mut mx.sides[i], &mut my.sides[i]);
        rewrite::learn_remote(sy, m, sdp, flags);
        sy.set_policy(policy);
        sy.set_muxed(sy.mux_signalled() && sy.mux_offered());
        sx.set_muxed(
            sx.mux_signalled()
                && !mf.reject
                && (sy.muxed() || mf.demux || mf.accept || flags.mux.accept),
        );
        let rejected = sy.rejected() || sx.rejected();
        sx.set_rejected(rejected);
        sy.set_rejected(rejected);
        let x_proto = Proto::parse(sx.names.proto());
        let edit = sdes::answer(sx.crypto_mut(), sy.crypto_mut(), m, &x_proto);
        sx.trim_crypto();
        sy.trim_crypto();
        edits.push(edit?);
        if relatch {
            unlatch(&mut res.backend, worker, sy)?;
        }
        sync_stream(&mut res.backend, &res.cfg.interfaces, worker, sx, sy)?;
        iface = sx.iface();
        plan.push(rewrite::Plan {
            port: if rejected { 0 } else { sx.pair.port },
            mux: sx.muxed(),
            rtcp_on_rtp_port: sx.muxed(),
        });
    }
    let adv: IpAddr = res.cfg.interfaces[iface].advertised;
    rewrite::apply(sdp, adv, &plan, flags);
    for (m, e) in sdp.media_mut().iter_mut().zip(edits) {
        e.apply(m);
    }
    if !call.answered {
        call.answered = true;
        call.set_last_media(now);
    }
    call.last_signal_unix = unix_now();
    Ok(())
}
