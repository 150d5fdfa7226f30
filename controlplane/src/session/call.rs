//! The state of one call: monologues (one per SIP tag) holding one side per m= line
//! ([`super::side`]).

use std::time::{Duration, Instant};

use ferrelay_engine::FlowId;

use super::flags::MuxFlags;
pub use super::side::{
    Endpoint, ForkMemo, HANDOVER_AFTER, Mismatch, Policy, Side, SideMemo, Tally,
};

/// One SIP party (tag) of a call.
#[derive(Debug)]
pub struct Monologue {
    /// The SIP tag (empty while an offer waits for the answerer's to-tag) and
    /// the tag of the party this one talks to, in one block: the party's tag,
    /// then the peer's. One allocation of both (24 bytes for two 10-byte tags,
    /// where two took 32) and one fat pointer here, where two took 32 bytes.
    tags: Box<str>,
    /// Bits 0-30: length of the party's tag in `tags`. Bit 31: the party has a
    /// peer, whose tag is the rest (it may be empty: the tagless answerer).
    tags_meta: u32,
    pub created_unix: u32,
    /// One side per m= line, in SDP order; a boxed slice, as the array only
    /// grows when a re-offer adds a line (48 bytes a party, not 80, so a call's
    /// two fit the allocator's 96-byte blocks).
    pub sides: Box<[Side]>,
    /// Rarely set names and options, boxed so a monologue without them stays small.
    names: Option<Box<TagNames>>,
}

/// What few monologues have: `label`, `via-branch`, a fork's kept answer and
/// pending end, and `rtcp-mux` options other than the defaults.
#[derive(Debug, Default)]
struct TagNames {
    label: Option<Box<str>>,
    /// `via-branch` of this party's last answer: names its fork in `delete`.
    via_branch: Option<Box<str>>,
    /// A fork's own answer, kept while another fork holds the media.
    memo: Option<ForkMemo>,
    /// `delete` named this fork: it ends alone at this instant (`delete-delay`).
    ending: Option<Instant>,
    /// The `rtcp-mux` options this party's last offer came with.
    mux_flags: MuxFlags,
}

impl Monologue {
    pub fn new(tag: &str, created_unix: u32) -> Monologue {
        let (tags, tags_meta) = tags(tag, None);
        Monologue {
            tags,
            tags_meta,
            created_unix,
            sides: Box::default(),
            names: None,
        }
    }
}

/// Bit 31 of `Monologue::tags_meta`: the party has a peer.
const HAS_PEER: u32 = 1 << 31;

/// A party's tag and its peer's as a monologue keeps them.
fn tags(tag: &str, peer: Option<&str>) -> (Box<str>, u32) {
    // NG and SIP messages are at most 1 MiB, so a tag is always far below 2^31
    // bytes; were one not, the split would still fall inside the text.
    let len = u32::try_from(tag.len())
        .unwrap_or(u32::MAX)
        .min(HAS_PEER - 1);
    let mut text = String::with_capacity(tag.len() + peer.map_or(0, str::len));
    text.push_str(tag);
    text.push_str(peer.unwrap_or_default());
    let meta = len | if peer.is_some() { HAS_PEER } else { 0 };
    (text.into_boxed_str(), meta)
}

impl Monologue {
    /// Where the party's tag ends in `tags`.
    fn split(&self) -> usize {
        ((self.tags_meta & !HAS_PEER) as usize).min(self.tags.len())
    }

    /// The SIP tag; empty while an offer waits for the answerer's to-tag.
    pub fn tag(&self) -> &str {
        self.tags.get(..self.split()).unwrap_or_default()
    }

    pub fn set_tag(&mut self, tag: &str) {
        if self.tag() != tag {
            (self.tags, self.tags_meta) = tags(tag, self.peer());
        }
    }

    /// Tag of the party this one talks to.
    pub fn peer(&self) -> Option<&str> {
        (self.tags_meta & HAS_PEER != 0).then(|| self.tags.get(self.split()..).unwrap_or_default())
    }

    pub fn set_peer(&mut self, peer: Option<&str>) {
        if self.peer() != peer {
            (self.tags, self.tags_meta) = tags(self.tag(), peer);
        }
    }

    /// The `label` the party was given.
    pub fn label(&self) -> Option<&str> {
        self.names.as_ref()?.label.as_deref()
    }

    pub fn set_label(&mut self, label: &str) {
        self.names.get_or_insert_default().label = Some(label.into());
    }

    /// The `rtcp-mux` options this party's last offer came with.
    pub fn mux_flags(&self) -> MuxFlags {
        self.names.as_ref().map(|n| n.mux_flags).unwrap_or_default()
    }

    pub fn set_mux_flags(&mut self, f: MuxFlags) {
        if f != MuxFlags::default() || self.names.is_some() {
            self.names.get_or_insert_default().mux_flags = f;
        }
    }

    /// The `via-branch` of the party's last answer.
    pub fn via_branch(&self) -> Option<&str> {
        self.names.as_ref()?.via_branch.as_deref()
    }

    pub fn set_via_branch(&mut self, via: &str) {
        self.names.get_or_insert_default().via_branch = Some(via.into());
    }

    /// Keeps this fork's answer while another fork takes its sides.
    pub fn set_memo(&mut self, memo: ForkMemo) {
        self.names.get_or_insert_default().memo = Some(memo);
    }

    /// When a `delete` of this fork takes effect, if one is pending.
    pub fn ending(&self) -> Option<Instant> {
        self.names.as_ref()?.ending
    }

    /// Schedules (or, with `None`, calls off) the end of this fork.
    pub fn set_ending(&mut self, at: Option<Instant>) {
        if at.is_some() || self.ending().is_some() {
            self.names.get_or_insert_default().ending = at;
        }
    }

    /// Takes the kept answer back (the fork holds the media again).
    pub fn take_memo(&mut self) -> Option<ForkMemo> {
        self.names.as_mut()?.memo.take()
    }
}

/// One call (SIP call-id).
///
/// 96 bytes, the allocator's 96-byte blocks and not its 128-byte ones: the
/// instants after `created` are kept as nanoseconds since it (8 bytes each, not an
/// `Instant`'s 16), and the worker index in 4 bytes.
#[derive(Debug)]
pub struct Call {
    /// The call-id; the call table ([`super::calls`]) finds the call by it, so
    /// it never changes ([`Call::id`]).
    id: Box<str>,
    /// The worker that owns every flow of the call ([`Call::worker`]).
    worker: u32,
    pub created_unix: u32,
    pub last_signal_unix: u32,
    /// What the other instants count from ([`Call::created`]).
    created: Instant,
    pub monologues: Vec<Monologue>,
    /// When the last offer came ([`Call::offered_at`]).
    offered_at: Since,
    /// Last time packet counters grew, or the answer came ([`Call::last_media`]).
    last_media: Since,
    /// `delete` arrived: media keeps flowing until this instant (`delete-delay`),
    /// then the call ends; [`Since::NONE`] otherwise ([`Call::deleting`]).
    deleting: Since,
    /// An answer completed the call; until then the offer timeout applies.
    pub answered: bool,
    /// Every stream is on hold: the silent timeout applies instead.
    pub held: bool,
}

/// An instant as the nanoseconds after a call's creation (584 years fit). Instants
/// before the creation read as the creation: a call's timers only look forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Since(u64);

impl Since {
    /// No instant (`Call::deleting` when no `delete` is pending).
    const NONE: Since = Since(u64::MAX);

    fn new(origin: Instant, at: Instant) -> Since {
        let ns = at.saturating_duration_since(origin).as_nanos();
        Since(u64::try_from(ns).unwrap_or(u64::MAX - 1).min(u64::MAX - 1))
    }

    fn at(self, origin: Instant) -> Instant {
        origin + Duration::from_nanos(self.0)
    }
}

impl Call {
    /// A call created at `now` (wall clock `unix`), its flows on `worker`.
    pub fn new(id: Box<str>, worker: usize, now: Instant, unix: u32) -> Call {
        Call {
            id,
            worker: u32::try_from(worker).expect("worker index fits u32"),
            created_unix: unix,
            last_signal_unix: unix,
            created: now,
            monologues: Vec::new(),
            offered_at: Since(0),
            last_media: Since(0),
            deleting: Since::NONE,
            answered: false,
            held: false,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the first offer came.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// The worker that owns every flow of the call.
    pub fn worker(&self) -> usize {
        self.worker as usize
    }

    /// When the last offer came.
    pub fn offered_at(&self) -> Instant {
        self.offered_at.at(self.created)
    }

    pub fn set_offered_at(&mut self, at: Instant) {
        self.offered_at = Since::new(self.created, at);
    }

    /// Last time packet counters grew, or the answer came.
    pub fn last_media(&self) -> Instant {
        self.last_media.at(self.created)
    }

    pub fn set_last_media(&mut self, at: Instant) {
        self.last_media = Since::new(self.created, at);
    }

    /// When a pending `delete` ends the call.
    pub fn deleting(&self) -> Option<Instant> {
        (self.deleting != Since::NONE).then(|| self.deleting.at(self.created))
    }

    pub fn set_deleting(&mut self, at: Option<Instant>) {
        self.deleting = at.map_or(Since::NONE, |t| Since::new(self.created, t));
    }

    pub fn monologue(&self, tag: &str) -> Option<usize> {
        self.monologues.iter().position(|m| m.tag() == tag)
    }

    /// How many monologues talk to `tag` (its forks, when more than one).
    fn branches_of(&self, tag: &str) -> usize {
        self.monologues
            .iter()
            .filter(|m| m.peer() == Some(tag))
            .count()
    }

    /// The monologue `m` when it is one of several branches of its peer: then it
    /// can end alone and the call goes on with the others.
    pub fn lone_branch(&self, m: usize, of: Option<usize>) -> Option<usize> {
        let peer = self.monologues[m].peer()?;
        let root = self.monologue(peer)?;
        (of.is_none_or(|o| o == root) && self.branches_of(peer) >= 2).then_some(m)
    }

    /// Which monologue a `delete` with these tags ends alone; `None`: the whole
    /// call. As rtpengine: `from-tag` with `to-tag` (or `via-branch`) names one
    /// dialogue, and only a fork among several ends alone; a `from-tag` alone ends
    /// that party, which is the whole call unless it is one such fork.
    pub fn branch_to_end(
        &self,
        from: Option<usize>,
        to: Option<usize>,
        via: Option<&str>,
    ) -> Option<usize> {
        let by_via = via.and_then(|v| {
            self.monologues
                .iter()
                .position(|m| m.via_branch() == Some(v))
        });
        let Some(f) = from else {
            return to.or(by_via).and_then(|t| self.lone_branch(t, None));
        };
        match to.or(by_via).filter(|t| *t != f) {
            Some(t) => self
                .lone_branch(t, Some(f))
                .or_else(|| self.lone_branch(f, Some(t))),
            None => self.lone_branch(f, None),
        }
    }

    /// All installed flows of the call.
    pub fn flows(&self) -> impl Iterator<Item = FlowId> + Clone + '_ {
        self.monologues
            .iter()
            .flat_map(|m| m.sides.iter())
            .filter_map(|s| s.flows)
            .flatten()
    }

    /// Packet total over every side, to notice media activity.
    pub fn packets(&self) -> u64 {
        self.monologues
            .iter()
            .flat_map(|m| m.sides.iter())
            .map(|s| s.totals().packets)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_parties_and_calls_fit_the_allocators_blocks() {
        // mimalloc's size classes step 96, 112, 128 and 192, 224, 256, 320: a
        // party's one-side array of 272 bytes took 320, of 224 bytes 224.
        assert!(size_of::<Side>() <= 192, "{}", size_of::<Side>());
        // And a call's two parties fit 96-byte blocks (160 when a party was 80).
        assert!(size_of::<Monologue>() <= 48, "{}", size_of::<Monologue>());
        assert!(size_of::<Call>() <= 96, "{}", size_of::<Call>());
    }

    #[test]
    fn a_party_keeps_its_tag_and_its_peers_apart() {
        let mut m = Monologue::new("as7d6f8a9b", 0);
        assert_eq!((m.tag(), m.peer()), ("as7d6f8a9b", None));
        m.set_peer(Some(""));
        assert_eq!((m.tag(), m.peer()), ("as7d6f8a9b", Some("")));
        m.set_peer(Some("bz1c2d3e4f"));
        assert_eq!((m.tag(), m.peer()), ("as7d6f8a9b", Some("bz1c2d3e4f")));
        assert_eq!(m.tags.len(), 20, "one block for both");
        m.set_tag("");
        assert_eq!((m.tag(), m.peer()), ("", Some("bz1c2d3e4f")));
        m.set_tag("é-ü");
        m.set_peer(None);
        assert_eq!((m.tag(), m.peer()), ("é-ü", None));
    }
}
