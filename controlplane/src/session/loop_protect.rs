//! rtpengine's `loop-protect`: an SDP the relay rewrote carries
//! `a=rtpengine:<instance>` at the end of its session-level lines, and one that
//! comes back with our mark (the call looped through the SIP proxy) is answered
//! as it is, touching no call.

use std::sync::OnceLock;
use std::time::SystemTime;

use ferrelay_sdp::Sdp;

use super::flags::Flags;

/// The attribute `loop-protect` marks an SDP with, as rtpengine names it.
pub const LOOP_MARK: &str = "rtpengine";

/// This relay's `loop-protect` mark: 12 hex digits (as rtpengine's), random per
/// process and shared by its shards, so an SDP that comes back through any of
/// them is known.
pub fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut b = [0u8; 6];
        if getrandom::fill(&mut b).is_err() {
            // No OS randomness: still distinct per process and start.
            let t = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            b.copy_from_slice(&(t ^ u64::from(std::process::id()) << 40).to_be_bytes()[2..]);
        }
        b.iter().map(|x| format!("{x:02x}")).collect()
    })
}

/// `loop-protect` on an SDP this relay already rewrote (its session carries our
/// mark): the SDP went round the signalling and came back, so it is answered as
/// it is, and no call, port or flow is touched (rtpengine does the same).
pub(super) fn passes_through(sdp: &Sdp, flags: &Flags, call_id: &str) -> bool {
    let ours = flags.loop_protect && sdp.attributes(LOOP_MARK).any(|v| v == instance_id());
    if ours {
        tracing::debug!(call_id = %call_id, "SDP carries our loop-protect mark: passed through");
    }
    ours
}

/// With `loop-protect`, marks the rewritten SDP as this relay's.
pub(super) fn mark(sdp: &mut Sdp, flags: &Flags) {
    if flags.loop_protect
        && let Err(e) = sdp.push_attribute(LOOP_MARK, Some(instance_id()))
    {
        // A fixed name and hex digits: not reachable, but never worth a panic.
        tracing::warn!(error = %e, "loop-protect mark not added");
    }
}
