//! The failure side of the proxy (RFC 3261 §9, §16.7–§16.10): CANCEL matching and
//! forwarding, 408 on Timer B/C/F, 503 on an unreachable next hop, and the timer
//! loop that drives every transaction.

use std::time::Instant;

use super::media::Media;
use super::message::{Header, Message, StartLine};
use super::proxy::{ClientEntry, Key, Outgoing, Peer, Proxy, ServerEntry};
use super::transaction::{ClientState, ClientTx, Fire, ServerTx};

impl Proxy {
    /// CANCEL (§16.10): answered here, then sent on for the matching INVITE.
    pub(super) fn on_cancel(
        &mut self,
        req: Message,
        key: Key,
        from: Peer,
        now: Instant,
        out: &mut Vec<Outgoing>,
    ) {
        let invite_key = (key.0.clone(), key.1.clone(), "INVITE".to_owned());
        let mut entry = ServerEntry {
            tx: ServerTx::new(false, from.transport.reliable(), self.cfg.timers),
            peer: from,
            request: req,
            last: None,
            client: None,
        };
        let Some(inv) = self.servers.get(&invite_key) else {
            self.reply(&mut entry, 481, "Call/Transaction Does Not Exist", now, out);
            self.servers.insert(key, entry);
            return;
        };
        let client = inv.client.clone();
        self.reply(&mut entry, 200, "OK", now, out);
        self.servers.insert(key, entry);
        let Some(ck) = client else { return };
        let Some(c) = self.clients.get_mut(&ck) else {
            return;
        };
        match c.tx.state {
            // §9.1: no CANCEL before a provisional response; sent when one comes.
            ClientState::Trying => c.cancel_pending = true,
            ClientState::Proceeding => self.send_cancel(&ck, now, out),
            _ => {}
        }
    }

    /// Sends CANCEL for the forwarded INVITE of client transaction `ck` (§9.1).
    pub(super) fn send_cancel(&mut self, ck: &Key, now: Instant, out: &mut Vec<Outgoing>) {
        let Some(c) = self.clients.get_mut(ck) else {
            return;
        };
        c.cancel_pending = false;
        let cancel = hop_request(&c.request, "CANCEL", None);
        let bytes = cancel.to_bytes();
        let peer = c.peer;
        let tx = ClientTx::new(false, peer.transport.reliable(), self.cfg.timers, now);
        let key = (ck.0.clone(), String::new(), "CANCEL".to_owned());
        self.clients.insert(
            key,
            ClientEntry {
                tx,
                peer,
                request: cancel,
                bytes: bytes.clone(),
                server: None,
                offered: false,
                ack: None,
                last_2xx: None,
                cancel_pending: false,
            },
        );
        Self::send(out, peer, bytes);
    }

    /// A transport failure toward `to` (refused connection, unreachable): every
    /// request still waiting there fails with 503 (RFC 3261 §16.7 step 9 / §18.4).
    pub fn on_unreachable(
        &mut self,
        to: Peer,
        now: Instant,
        media: &mut impl Media,
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let keys: Vec<Key> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                c.peer == to && matches!(c.tx.state, ClientState::Trying | ClientState::Proceeding)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.fail_client(&k, 503, "Service Unavailable", now, media, &mut out);
        }
        out
    }

    /// Ends a client transaction with a failure of our own upstream.
    pub(super) fn fail_client(
        &mut self,
        ck: &Key,
        code: u16,
        reason: &str,
        now: Instant,
        media: &mut impl Media,
        out: &mut Vec<Outgoing>,
    ) {
        let Some(c) = self.clients.remove(ck) else {
            return;
        };
        if c.tx.invite && c.tx.state == ClientState::Proceeding {
            // §16.8: Timer C cancels the branch downstream too.
            self.clients.insert(ck.clone(), c);
            self.send_cancel(ck, now, out);
            let Some(c) = self.clients.remove(ck) else {
                return;
            };
            return self.fail_upstream(c, code, reason, now, media, out);
        }
        self.fail_upstream(c, code, reason, now, media, out);
    }

    fn fail_upstream(
        &mut self,
        c: ClientEntry,
        code: u16,
        reason: &str,
        now: Instant,
        media: &mut impl Media,
        out: &mut Vec<Outgoing>,
    ) {
        if c.tx.invite && c.request.tag("To").is_none() {
            self.end_call(c.request.header("Call-ID").unwrap_or_default(), now, media);
        }
        if let Some(sk) = c.server {
            self.reply_key(&sk, code, reason, now, out);
        }
    }

    /// The earliest instant [`Proxy::poll`] has work.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let s = self.servers.values().filter_map(|s| s.tx.next_wakeup());
        let c = self.clients.values().map(|c| c.tx.next_wakeup());
        s.chain(c).min()
    }

    /// Runs every timer due at `now`.
    pub fn poll(&mut self, now: Instant, media: &mut impl Media) -> Vec<Outgoing> {
        let mut out = Vec::new();
        self.sweep_dialogs(now, media);
        let due: Vec<Key> = self
            .servers
            .iter()
            .filter(|(_, s)| s.tx.next_wakeup().is_some_and(|w| w <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            let Some(s) = self.servers.get_mut(&k) else {
                continue;
            };
            match s.tx.poll(now) {
                Some(Fire::Retransmit) => {
                    if let Some(b) = s.last.clone() {
                        Self::send(&mut out, s.peer, b);
                    }
                }
                Some(Fire::Terminated | Fire::Timeout) => {
                    self.servers.remove(&k);
                }
                None => {}
            }
        }
        let due: Vec<Key> = self
            .clients
            .iter()
            .filter(|(_, c)| c.tx.next_wakeup() <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            let Some(c) = self.clients.get_mut(&k) else {
                continue;
            };
            match c.tx.poll(now) {
                Some(Fire::Retransmit) => Self::send(&mut out, c.peer, c.bytes.clone()),
                Some(Fire::Timeout) => {
                    self.fail_client(&k, 408, "Request Timeout", now, media, &mut out);
                }
                Some(Fire::Terminated) => {
                    self.clients.remove(&k);
                }
                None => {}
            }
        }
        out
    }
}

/// A hop-by-hop request for a forwarded INVITE: CANCEL (§9.1) or the ACK of a
/// non-2xx (§17.1.1.3), same request-URI, top Via, Route and CSeq number.
pub(super) fn hop_request(inv: &Message, method: &str, to: Option<String>) -> Message {
    let mut headers = Vec::new();
    if let Some(v) = inv.header("Via") {
        headers.push(Header {
            name: "Via".into(),
            value: v.to_owned(),
        });
    }
    for h in &inv.headers {
        match h.name.as_str() {
            "Route" | "From" | "Call-ID" => headers.push(h.clone()),
            "To" => headers.push(Header {
                name: "To".into(),
                value: to.clone().unwrap_or_else(|| h.value.clone()),
            }),
            _ => {}
        }
    }
    let n = inv.cseq().map_or(1, |(n, _)| n);
    headers.push(Header {
        name: "CSeq".into(),
        value: format!("{n} {method}"),
    });
    headers.push(Header {
        name: "Max-Forwards".into(),
        value: "70".into(),
    });
    let uri = match &inv.start {
        StartLine::Request { uri, .. } => uri.clone(),
        StartLine::Response { .. } => String::new(),
    };
    Message {
        start: StartLine::Request {
            method: method.to_owned(),
            uri,
        },
        headers,
        body: Vec::new(),
    }
}
