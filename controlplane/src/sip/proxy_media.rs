//! Which NG command an SDP in SIP becomes (RFC 3264 / RFC 6337 §2): an offer in
//! INVITE, UPDATE or a 2xx to an offer-less INVITE; an answer in a response to an
//! offer or in the ACK after a late offer. BYE and failed initial INVITEs delete.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::ng::Value;

use super::media::{self, Media, SidePolicy};
use super::message::Message;
use super::proxy::Proxy;

/// How often dialogs are checked against the relay's calls.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Longer than Timer C (3 min): a call still being set up is never swept.
pub(super) const SWEEP_GRACE: Duration = Duration::from_secs(200);

impl Proxy {
    /// The media policy toward the side whose tag is `recipient` (`None`: the
    /// callee of a new call), and the route's flags.
    fn policy(&self, call_id: &str, recipient: Option<&str>) -> (SidePolicy, Vec<String>) {
        let Some(d) = self.dialogs.get(call_id) else {
            return Default::default();
        };
        let Some(r) = d.route.and_then(|i| self.cfg.routes.get(i)) else {
            return Default::default();
        };
        let side = if recipient == Some(d.caller_tag.as_str()) {
            &r.caller
        } else {
            &r.callee
        };
        (side.clone(), r.flags.clone())
    }

    /// Runs `command` on the message's SDP and puts the relay's SDP in its place.
    #[allow(clippy::too_many_arguments)]
    fn anchor(
        &self,
        msg: &mut Message,
        command: &str,
        from_tag: &str,
        to_tag: Option<&str>,
        recipient: Option<&str>,
        now: Instant,
        m: &mut impl Media,
    ) -> Result<(), String> {
        let call_id = msg.header("Call-ID").unwrap_or_default().to_owned();
        let (mut toward, flags) = self.policy(&call_id, recipient);
        if command == "answer" {
            // An answer keeps the offer's protocol (RFC 3264 §6): the relay answers
            // each side in what that side offered, so no policy applies here.
            toward = SidePolicy::default();
        }
        let req = media::request(
            command, &call_id, from_tag, to_tag, &msg.body, &toward, &flags,
        );
        msg.body = media::reply_sdp(&m.ng(&req, now))?;
        Ok(())
    }

    /// SDP in a request going downstream.
    pub(super) fn media_request(
        &mut self,
        req: &mut Message,
        method: &str,
        now: Instant,
        m: &mut impl Media,
    ) -> Result<(), String> {
        let from = req.tag("From").unwrap_or_default().to_owned();
        let to = req.tag("To").map(str::to_owned);
        match method {
            "INVITE" | "UPDATE" if req.has_sdp() => {
                self.anchor(req, "offer", &from, to.as_deref(), to.as_deref(), now, m)
            }
            // Late offer: the 2xx carried the callee's offer, the ACK the answer.
            "ACK" if req.has_sdp() => {
                let offerer = to.clone().unwrap_or_default();
                self.anchor(req, "answer", &offerer, Some(&from), to.as_deref(), now, m)
            }
            "BYE" => {
                self.end_call(req.header("Call-ID").unwrap_or_default(), now, m);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// SDP in a response going upstream.
    pub(super) fn media_response(
        &mut self,
        resp: &mut Message,
        offered: bool,
        now: Instant,
        m: &mut impl Media,
    ) -> Result<(), String> {
        let code = resp.code().unwrap_or(0);
        let method = resp.cseq().map(|(_, m)| m.to_owned()).unwrap_or_default();
        if !resp.has_sdp()
            || !(101..300).contains(&code)
            || !matches!(method.as_str(), "INVITE" | "UPDATE")
        {
            return Ok(());
        }
        let from = resp.tag("From").unwrap_or_default().to_owned();
        let to = resp.tag("To").unwrap_or_default().to_owned();
        if offered {
            self.anchor(resp, "answer", &from, Some(&to), Some(&from), now, m)
        } else if method == "INVITE" && code >= 200 {
            self.anchor(resp, "offer", &to, Some(&from), Some(&from), now, m)
        } else {
            Ok(())
        }
    }

    /// Deletes the call's media and forgets its dialog.
    pub(super) fn end_call(&mut self, call_id: &str, now: Instant, m: &mut impl Media) {
        self.dialogs.remove(call_id);
        let r = m.ng(&media::delete(call_id), now);
        tracing::debug!(call_id, result = ?r.get("result"), "media deleted");
    }

    /// Forgets the dialogs of calls the relay ended on its own (media timeout, NG
    /// delete): a call that never sees a BYE must not hold memory here for ever.
    /// Dialogs younger than [`SWEEP_GRACE`] are kept: a late-offer INVITE has no
    /// call in the relay until its 2xx.
    pub(super) fn sweep_dialogs(&mut self, now: Instant, m: &mut impl Media) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_EVERY);
        if self.dialogs.is_empty() {
            return;
        }
        let list = Value::Dict(vec![
            (b"command".to_vec(), Value::str("list")),
            (b"limit".to_vec(), Value::Int(i64::MAX)),
        ]);
        let reply = m.ng(&list, now);
        let Some(Value::List(calls)) = reply.get("calls") else {
            return;
        };
        let live: HashSet<&str> = calls.iter().filter_map(Value::as_str).collect();
        self.dialogs.retain(|id, d| {
            live.contains(id.as_str()) || now.saturating_duration_since(d.created) < SWEEP_GRACE
        });
    }
}
