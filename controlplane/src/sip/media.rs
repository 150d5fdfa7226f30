//! Media anchoring through the NG controller: an SDP in SIP becomes the NG offer or
//! answer rtpengine's proxies would send, so flags and SDES policy behave exactly as
//! over NG (RFC 3264 offer/answer; which message carries which per RFC 6337 §2).

use std::time::Instant;

use crate::ng::Value;
use crate::ng::commands::Controller;
use crate::ng::shards::Shards;
use crate::session::backend::MediaBackend;

/// Whatever runs NG commands: the controller, or a test double.
pub trait Media {
    /// Runs one NG request dict, returns the reply dict.
    fn ng(&mut self, req: &Value, now: Instant) -> Value;
}

impl<B: MediaBackend> Media for Controller<B> {
    fn ng(&mut self, req: &Value, now: Instant) -> Value {
        self.execute(req, now)
    }
}

/// The relay's shards: each request runs on its call's shard.
impl<B: MediaBackend> Media for &Shards<B> {
    fn ng(&mut self, req: &Value, now: Instant) -> Value {
        self.execute(req, now)
    }
}

/// The per-route media policy for the side a message goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SidePolicy {
    /// NG `transport-protocol` toward that side (`RTP/SAVP` forces SDES-SRTP).
    pub transport_protocol: Option<String>,
}

/// Builds an NG offer or answer.
pub fn request(
    command: &str,
    call_id: &str,
    from_tag: &str,
    to_tag: Option<&str>,
    sdp: &[u8],
    toward: &SidePolicy,
    flags: &[String],
) -> Value {
    let mut d: Vec<(Vec<u8>, Value)> = vec![
        (b"command".to_vec(), Value::str(command)),
        (b"call-id".to_vec(), Value::str(call_id)),
        (b"from-tag".to_vec(), Value::str(from_tag)),
        (b"sdp".to_vec(), Value::Bytes(sdp.to_vec())),
    ];
    if let Some(t) = to_tag {
        d.push((b"to-tag".to_vec(), Value::str(t)));
    }
    if let Some(p) = &toward.transport_protocol {
        d.push((b"transport-protocol".to_vec(), Value::str(p)));
    }
    if !flags.is_empty() {
        d.push((
            b"flags".to_vec(),
            Value::List(flags.iter().map(|f| Value::str(f)).collect()),
        ));
    }
    Value::Dict(d.into_iter().collect())
}

/// The NG `delete` for a call.
pub fn delete(call_id: &str) -> Value {
    Value::Dict(
        [
            (b"command".to_vec(), Value::str("delete")),
            (b"call-id".to_vec(), Value::str(call_id)),
        ]
        .into_iter()
        .collect(),
    )
}

/// The rewritten SDP of an `ok` reply, or the error reason.
pub fn reply_sdp(reply: &Value) -> Result<Vec<u8>, String> {
    if reply.get("result").and_then(Value::as_str) != Some("ok") {
        let why = reply
            .get("error-reason")
            .and_then(Value::as_str)
            .unwrap_or("media relay refused");
        return Err(why.to_owned());
    }
    match reply.get("sdp") {
        Some(Value::Bytes(b)) => Ok(b.clone()),
        _ => Err("no SDP in the relay's reply".to_owned()),
    }
}
