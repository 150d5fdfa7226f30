//! The stateful, media-anchoring proxy core (RFC 3261 §16), sans-IO: messages and
//! `now` in, datagrams/segments to send out. Requests get a server transaction, are
//! routed (Route, static routes, request-URI), stamped with Via, Record-Route and
//! Max-Forwards, and forwarded in a client transaction; responses pop our Via and go
//! back through the server transaction. SDP in between goes through [`Media`].

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::Instant;

use super::addr::{Transport, Uri, Via};
use super::media::Media;
use super::message::{Message, StartLine, param};
use super::proxy_fail::hop_request;
use super::route::Route;
use super::transaction::{ClientState, ClientTx, ServerTx, Timers, Verdict};

/// Where a message comes from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: Peer,
    pub bytes: Vec<u8>,
}

/// What the proxy is configured with.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Our address, as written into Via and Record-Route (UDP and TCP share it).
    pub local: SocketAddr,
    pub routes: Vec<Route>,
    pub timers: Timers,
}

/// (branch, sent-by or "", method); ACK matches its INVITE (RFC 3261 §17.2.3).
pub(super) type Key = (String, String, String);

#[derive(Debug)]
pub(super) struct ServerEntry {
    pub(super) tx: ServerTx,
    pub(super) peer: Peer,
    /// The request as received, to build our own responses from.
    pub(super) request: Message,
    pub(super) last: Option<Vec<u8>>,
    pub(super) client: Option<Key>,
}

#[derive(Debug)]
pub(super) struct ClientEntry {
    pub(super) tx: ClientTx,
    pub(super) peer: Peer,
    /// The request as forwarded.
    pub(super) request: Message,
    pub(super) bytes: Vec<u8>,
    pub(super) server: Option<Key>,
    /// The request carried an SDP offer (else a 2xx carries it: late offer).
    pub(super) offered: bool,
    pub(super) ack: Option<Vec<u8>>,
    pub(super) last_2xx: Option<Vec<u8>>,
    pub(super) cancel_pending: bool,
}

/// Per call: who called (to tell offers to the callee from offers to the caller),
/// and the route whose media policy applies.
#[derive(Debug, Clone)]
pub(super) struct Dialog {
    pub caller_tag: String,
    pub route: Option<usize>,
    /// When the INVITE passed, so a sweep spares dialogs still being set up.
    pub created: Instant,
}

/// The proxy: transactions, dialogs' media policy, and the routing table.
#[derive(Debug)]
pub struct Proxy {
    pub(super) cfg: ProxyConfig,
    pub(super) servers: HashMap<Key, ServerEntry>,
    pub(super) clients: HashMap<Key, ClientEntry>,
    pub(super) dialogs: HashMap<String, Dialog>,
    /// When dialogs whose call the relay no longer has are next forgotten.
    pub(super) next_sweep: Option<Instant>,
}

pub(super) fn short_hash(parts: &[&str]) -> String {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// A response built by the proxy itself (RFC 3261 §8.2.6), To-tagged when final.
pub fn response(req: &Message, code: u16, reason: &str) -> Message {
    let mut headers = Vec::new();
    for h in &req.headers {
        if matches!(h.name.as_str(), "Via" | "From" | "Call-ID" | "CSeq") {
            headers.push(h.clone());
        } else if h.name == "To" {
            let mut h = h.clone();
            if code >= 200 && param(&h.value, "tag").is_none() {
                let branch = req.header("Via").and_then(|v| param(v, "branch"));
                h.value = format!("{};tag=fr{}", h.value, short_hash(&[branch.unwrap_or("")]));
            }
            headers.push(h);
        }
    }
    Message {
        start: StartLine::Response {
            code,
            reason: reason.to_owned(),
        },
        headers,
        body: Vec::new(),
    }
}

impl Proxy {
    pub fn new(cfg: ProxyConfig) -> Proxy {
        Proxy {
            cfg,
            servers: HashMap::new(),
            clients: HashMap::new(),
            dialogs: HashMap::new(),
            next_sweep: None,
        }
    }

    /// Open transactions (server, client), for tests and statistics.
    pub fn transactions(&self) -> (usize, usize) {
        (self.servers.len(), self.clients.len())
    }

    /// Handles one message from `from`. Unparseable bytes are dropped; a request
    /// missing what a response needs gets 400 when a response can be addressed.
    pub fn on_message(
        &mut self,
        bytes: &[u8],
        from: Peer,
        now: Instant,
        media: &mut impl Media,
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let Ok(msg) = Message::parse(bytes) else {
            tracing::debug!(peer = %from.addr, "unparseable SIP dropped");
            return out;
        };
        match msg.start {
            StartLine::Request { .. } => self.on_request(msg, from, now, media, &mut out),
            StartLine::Response { .. } => self.on_response(msg, now, media, &mut out),
        }
        out
    }

    /// Our Via sent-by, Record-Route and loop-detection identity.
    pub(super) fn is_us(&self, host: &str, port: Option<u16>) -> bool {
        host.parse().ok() == Some(self.cfg.local.ip())
            && port.unwrap_or(5060) == self.cfg.local.port()
    }

    fn server_key(msg: &Message) -> Option<Key> {
        let top = msg.header("Via")?;
        let via = Via::parse(top)?;
        let method = match msg.method()? {
            "ACK" => "INVITE",
            m => m,
        };
        let sent_by = format!("{}:{}", via.host, via.port.unwrap_or(5060));
        Some((via.branch?.to_owned(), sent_by, method.to_owned()))
    }

    pub(super) fn send(out: &mut Vec<Outgoing>, to: Peer, bytes: Vec<u8>) {
        out.push(Outgoing { to, bytes });
    }

    fn on_request(
        &mut self,
        req: Message,
        from: Peer,
        now: Instant,
        media: &mut impl Media,
        out: &mut Vec<Outgoing>,
    ) {
        let method = req.method().unwrap_or_default().to_owned();
        // §8.2 / §16.3 step 1: what every request needs to be answered and routed.
        let valid = req.header("From").is_some_and(|f| Uri::parse(f).is_some())
            && req.header("To").is_some_and(|t| Uri::parse(t).is_some())
            && req.header("Call-ID").is_some_and(|c| !c.is_empty())
            && req.cseq().is_some_and(|(_, m)| m == method)
            && req
                .header("Max-Forwards")
                .is_none_or(|m| m.parse::<u8>().is_ok());
        let Some(key) = Self::server_key(&req) else {
            // No usable Via: no response can be addressed (§18.2.2).
            return;
        };
        if !valid {
            if method != "ACK" {
                Self::send(out, from, response(&req, 400, "Bad Request").to_bytes());
            }
            return;
        }
        if method == "ACK" {
            if let Some(s) = self.servers.get_mut(&key) {
                // The ACK of a non-2xx final: ends the server transaction (§17.2.1),
                // and its hop-by-hop twin was already sent downstream.
                s.tx.on_ack(now);
                return;
            }
            // An ACK for a 2xx is its own transaction-less request (§16.10 / §13.2.2.4).
            self.forward(req, from, None, now, media, out);
            return;
        }
        if let Some(s) = self.servers.get(&key) {
            // A retransmission: absorb it, repeating the last response (§17.2).
            if s.tx.on_retransmit()
                && let Some(last) = &s.last
            {
                Self::send(out, s.peer, last.clone());
            }
            return;
        }
        if method == "CANCEL" {
            self.on_cancel(req, key, from, now, out);
            return;
        }
        let invite = method == "INVITE";
        let mut entry = ServerEntry {
            tx: ServerTx::new(invite, from.transport.reliable(), self.cfg.timers),
            peer: from,
            request: req.clone(),
            last: None,
            client: None,
        };
        // §16.3 step 3: Max-Forwards 0 ends here.
        if req.header("Max-Forwards") == Some("0") {
            self.reply(&mut entry, 483, "Too Many Hops", now, out);
            self.servers.insert(key, entry);
            return;
        }
        // §16.3 step 4: our own Via with this request's loop hash is a loop.
        let loop_id = self.loop_hash(&req);
        let looped = req.headers_named("Via").any(|v| {
            Via::parse(v).is_some_and(|via| {
                self.is_us(via.host, via.port)
                    && via
                        .branch
                        .is_some_and(|b| b.starts_with(&format!("z9hG4bKfr{loop_id}.")))
            })
        });
        if looped {
            self.reply(&mut entry, 482, "Loop Detected", now, out);
            self.servers.insert(key, entry);
            return;
        }
        if invite {
            // §16.2: 100 Trying at once stops the upstream's Timer A.
            self.reply(&mut entry, 100, "Trying", now, out);
        }
        self.servers.insert(key.clone(), entry);
        self.forward(req, from, Some(key), now, media, out);
    }

    /// The part of the branch that stays the same when a request loops back
    /// unchanged (§16.6 step 8): request-URI, tags, Call-ID, CSeq.
    pub(super) fn loop_hash(&self, req: &Message) -> String {
        let uri = match &req.start {
            StartLine::Request { uri, .. } => uri.as_str(),
            StartLine::Response { .. } => "",
        };
        short_hash(&[
            uri,
            req.tag("From").unwrap_or(""),
            req.tag("To").unwrap_or(""),
            req.header("Call-ID").unwrap_or(""),
            req.header("CSeq").unwrap_or(""),
        ])
    }

    /// Sends a response of our own through a server transaction.
    pub(super) fn reply(
        &self,
        s: &mut ServerEntry,
        code: u16,
        reason: &str,
        now: Instant,
        out: &mut Vec<Outgoing>,
    ) {
        let bytes = response(&s.request, code, reason).to_bytes();
        s.tx.on_send(code, now);
        s.last = Some(bytes.clone());
        Self::send(out, s.peer, bytes);
    }

    /// Answers from the server transaction `key`, if it still exists.
    pub(super) fn reply_key(
        &mut self,
        key: &Key,
        code: u16,
        reason: &str,
        now: Instant,
        out: &mut Vec<Outgoing>,
    ) {
        if let Some(mut s) = self.servers.remove(key) {
            self.reply(&mut s, code, reason, now, out);
            self.servers.insert(key.clone(), s);
        }
    }

    /// Routes and forwards a request (§16.4–§16.6); `server` is its server
    /// transaction, `None` for an ACK to a 2xx.
    pub(super) fn forward(
        &mut self,
        mut req: Message,
        from: Peer,
        server: Option<Key>,
        now: Instant,
        media: &mut impl Media,
        out: &mut Vec<Outgoing>,
    ) {
        let method = req.method().unwrap_or_default().to_owned();
        let loop_id = self.loop_hash(&req);
        // §16.4: Routes naming us were put there by our Record-Route; pop them
        // (two when we double record-routed). The last one says which transport
        // the next hop was reached by (RFC 5658 §3.2).
        let mut hint = None;
        while let Some(r) = req.header("Route")
            && let Some(u) = Uri::parse(r).filter(|u| self.is_us(u.host, u.port))
        {
            hint = Some(u.transport);
            req.pop_front("Route");
        }
        let initial = req.tag("To").is_none();
        let (target, route) = match self.target(&req, hint) {
            Ok(t) => t,
            Err((code, reason)) => {
                if let Some(k) = server {
                    self.reply_key(&k, code, reason, now, out);
                }
                return;
            }
        };
        // §16.6 step 3: Max-Forwards.
        let mf = req
            .header("Max-Forwards")
            .and_then(|m| m.parse::<u8>().ok())
            .unwrap_or(71);
        req.set_header("Max-Forwards", mf.saturating_sub(1).to_string());
        // RFC 3581 §4 and §18.2.1: note where the request really came from.
        if let Some(top) = req.headers.iter_mut().find(|h| h.name == "Via") {
            top.value = stamp_received(&top.value, from.addr);
        }
        let me = self.cfg.local;
        let rr = |t: Transport| match t {
            Transport::Tcp => format!("<sip:{};transport=tcp;lr>", sock_uri(me)),
            Transport::Udp => format!("<sip:{};lr>", sock_uri(me)),
        };
        if initial && method == "INVITE" {
            // §16.6 step 4: stay on the path of in-dialog requests. Between two
            // transports, record-route twice (RFC 5658 §3.2): the entry on top is
            // how the callee reaches us, the one below how the caller does.
            if from.transport != target.transport {
                req.push_front("Record-Route", rr(from.transport));
            }
            req.push_front("Record-Route", rr(target.transport));
        }
        let top_branch = req
            .header("Via")
            .and_then(|v| param(v, "branch"))
            .unwrap_or("");
        let branch = if method == "ACK" {
            format!("z9hG4bKfr{loop_id}.ack{}", short_hash(&[top_branch]))
        } else {
            format!("z9hG4bKfr{loop_id}.{}", short_hash(&[top_branch]))
        };
        req.push_front(
            "Via",
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                target.transport.as_str(),
                sock_uri(me)
            ),
        );
        if initial
            && method == "INVITE"
            && let Some(tag) = req.tag("From")
        {
            let call_id = req.header("Call-ID").unwrap_or_default().to_owned();
            self.dialogs.insert(
                call_id,
                Dialog {
                    caller_tag: tag.to_owned(),
                    route,
                    created: now,
                },
            );
        }
        if let Err(why) = self.media_request(&mut req, &method, now, media) {
            tracing::info!(reason = %why, "media refused");
            if let Some(k) = server {
                self.reply_key(&k, 488, "Not Acceptable Here", now, out);
            }
            return;
        }
        let bytes = req.to_bytes();
        if let Some(sk) = server {
            let ck = (branch, String::new(), method.clone());
            if let Some(s) = self.servers.get_mut(&sk) {
                s.client = Some(ck.clone());
            }
            let tx = ClientTx::new(
                method == "INVITE",
                target.transport.reliable(),
                self.cfg.timers,
                now,
            );
            let offered = req.has_sdp();
            self.clients.insert(
                ck,
                ClientEntry {
                    tx,
                    peer: target,
                    request: req,
                    bytes: bytes.clone(),
                    server: Some(sk),
                    offered,
                    ack: None,
                    last_2xx: None,
                    cancel_pending: false,
                },
            );
        }
        Self::send(out, target, bytes);
    }

    /// The next hop: a remaining Route, else a static route, else the request-URI
    /// (over `hint`, the transport of our own popped Route, unless the URI names one).
    fn target(
        &self,
        req: &Message,
        hint: Option<Transport>,
    ) -> Result<(Peer, Option<usize>), (u16, &'static str)> {
        let StartLine::Request { uri, .. } = &req.start else {
            return Err((400, "Bad Request"));
        };
        let ruri = Uri::parse(uri).ok_or((416, "Unsupported URI Scheme"))?;
        let call_route = req
            .header("Call-ID")
            .and_then(|c| self.dialogs.get(c))
            .and_then(|d| d.route);
        if let Some(r) = req.header("Route") {
            let u = Uri::parse(r).ok_or((400, "Bad Request"))?;
            let addr = u.socket_addr().ok_or((503, "Service Unavailable"))?;
            return Ok((
                Peer {
                    transport: u.transport,
                    addr,
                },
                call_route,
            ));
        }
        let route = self.cfg.routes.iter().position(|r| r.matches(&ruri));
        let peer = match route.and_then(|i| self.cfg.routes[i].next_hop) {
            Some(addr) => Peer {
                transport: route.map_or(Transport::Udp, |i| self.cfg.routes[i].transport),
                addr,
            },
            None => Peer {
                transport: match ruri.transport {
                    Transport::Tcp => Transport::Tcp,
                    Transport::Udp => hint.unwrap_or(Transport::Udp),
                },
                addr: ruri.socket_addr().ok_or((503, "Service Unavailable"))?,
            },
        };
        if peer.addr == self.cfg.local {
            return Err((404, "Not Found"));
        }
        Ok((peer, route.or(call_route)))
    }

    /// A response from downstream (§16.7).
    fn on_response(
        &mut self,
        mut resp: Message,
        now: Instant,
        media: &mut impl Media,
        out: &mut Vec<Outgoing>,
    ) {
        let code = resp.code().unwrap_or(500);
        let Some(top) = resp.header("Via").and_then(Via::parse) else {
            return;
        };
        if !self.is_us(top.host, top.port) {
            // §16.7 step 1 of a stateless element: not ours, nowhere to send it.
            return;
        }
        let (Some(branch), Some((_, method))) = (top.branch.map(str::to_owned), resp.cseq()) else {
            return;
        };
        let method = method.to_owned();
        let ck = (branch, String::new(), method.clone());
        resp.pop_front("Via");
        let Some(c) = self.clients.get_mut(&ck) else {
            return;
        };
        let verdict = c.tx.on_response(code, now);
        let (peer, server) = (c.peer, c.server.clone());
        match verdict {
            Verdict::Absorb { resend_ack } => {
                if resend_ack && let Some(a) = c.ack.clone() {
                    Self::send(out, peer, a);
                }
                return;
            }
            Verdict::Forward if c.tx.state == ClientState::Accepted && c.last_2xx.is_some() => {
                // A retransmitted 2xx: the same rewritten bytes go up again.
                if let Some(s) = server.as_ref().and_then(|k| self.servers.get(k))
                    && let Some(b) = c.last_2xx.clone()
                {
                    Self::send(out, s.peer, b);
                }
                return;
            }
            Verdict::ForwardAndAck => {
                let to_tag = resp.header("To").map(str::to_owned);
                let ack = hop_request(&c.request, "ACK", to_tag).to_bytes();
                c.ack = Some(ack.clone());
                Self::send(out, peer, ack);
            }
            Verdict::Forward => {}
        }
        if (101..200).contains(&code) && c.cancel_pending {
            self.send_cancel(&ck, now, out);
        }
        let Some(c) = self.clients.get(&ck) else {
            return;
        };
        let (offered, initial) = (c.offered, c.request.tag("To").is_none());
        if let Err(why) = self.media_response(&mut resp, offered, now, media) {
            tracing::warn!(reason = %why, "media refused on a response; forwarded unchanged");
        }
        if method == "INVITE" && code >= 300 && initial {
            self.end_call(resp.header("Call-ID").unwrap_or_default(), now, media);
        }
        let bytes = resp.to_bytes();
        if (200..300).contains(&code)
            && let Some(c) = self.clients.get_mut(&ck)
        {
            c.last_2xx = Some(bytes.clone());
        }
        if let Some(sk) = server
            && let Some(s) = self.servers.get_mut(&sk)
        {
            s.tx.on_send(code, now);
            s.last = Some(bytes.clone());
            Self::send(out, s.peer, bytes);
        }
    }
}

/// `ip:port` as it goes into a SIP URI (IPv6 bracketed).
fn sock_uri(a: SocketAddr) -> String {
    a.to_string()
}

/// Adds `received` and fills `rport` on a Via (RFC 3261 §18.2.1, RFC 3581 §4).
fn stamp_received(via: &str, src: SocketAddr) -> String {
    let mut v = via.to_owned();
    if param(via, "rport") == Some("") {
        v = v
            .split(';')
            .map(|p| {
                if p.trim().eq_ignore_ascii_case("rport") {
                    format!("rport={}", src.port())
                } else {
                    p.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(";");
    }
    let sent_by_ip = Via::parse(via).and_then(|p| p.host.parse::<std::net::IpAddr>().ok());
    if sent_by_ip != Some(src.ip()) && param(via, "received").is_none() {
        v.push_str(&format!(";received={}", src.ip()));
    }
    v
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
