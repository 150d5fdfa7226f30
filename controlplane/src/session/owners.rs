//! Which call owns each installed flow, so a worker's event (stats, a refused
//! command) finds its call at once. A worker's flow ids are slots of its
//! table, handed out densely from 0 (at most 2^24, the runtime's limit).
//!
//! Sessions that have the workers to themselves index them densely: a vector
//! per worker holding the call's index ([`CallIndex`]), 4 bytes per slot instead
//! of a hash map entry and its spare buckets. Sessions that share the workers
//! with other control-plane shards see only some of the slots, and a dense vector
//! would grow to the highest slot any shard used: they keep a map of their own
//! flows (measured at 4,000 calls when a slot held a 16-byte shared id: eight
//! shards with dense vectors cost 3.56 KiB per established call, with maps 1.90;
//! one with its dense vector 1.61).

use std::collections::HashMap;

use ferrelay_engine::FlowId;
use foldhash::fast::RandomState;

use super::calls::CallIndex;

/// Slot indexes beyond this are not indexed (the runtime refuses larger tables).
const MAX_INDEX: usize = 1 << 24;

/// The vector grows in steps of this many slots, not by doubling.
const STEP: usize = 1024;

/// A dense slot no call holds.
const NONE: CallIndex = CallIndex::MAX;

/// Calls by worker and flow slot. A slot names the call of the flow that last
/// held it; callers confirm the exact `FlowId` (with its generation) against the
/// call's own flows, which keeps stale events from a reused slot, and from a call
/// that got a removed call's index, out.
#[derive(Debug)]
pub enum FlowOwners {
    /// Every slot of every worker.
    Dense(Vec<Vec<CallIndex>>),
    /// Only the slots of this shard's flows, by (worker, slot).
    Sparse(HashMap<(u32, u32), CallIndex, RandomState>),
}

impl Default for FlowOwners {
    fn default() -> Self {
        FlowOwners::Dense(Vec::new())
    }
}

fn key(worker: usize, id: FlowId) -> (u32, u32) {
    (u32::try_from(worker).unwrap_or(u32::MAX), id.index)
}

impl FlowOwners {
    /// The index for sessions that share the workers' slots with other shards.
    pub fn sparse() -> Self {
        FlowOwners::Sparse(HashMap::default())
    }

    /// The call whose flow holds slot `id.index` on `worker`.
    pub fn get(&self, worker: usize, id: FlowId) -> Option<CallIndex> {
        match self {
            FlowOwners::Dense(by_worker) => by_worker
                .get(worker)?
                .get(id.index as usize)
                .copied()
                .filter(|&c| c != NONE),
            FlowOwners::Sparse(m) => m.get(&key(worker, id)).copied(),
        }
    }

    pub fn insert(&mut self, worker: usize, id: FlowId, call: CallIndex) {
        let by_worker = match self {
            FlowOwners::Dense(v) => v,
            FlowOwners::Sparse(m) => {
                m.insert(key(worker, id), call);
                return;
            }
        };
        let i = id.index as usize;
        if i >= MAX_INDEX {
            tracing::warn!(
                worker,
                index = i,
                "flow slot beyond the index; its events are ignored"
            );
            return;
        }
        if by_worker.len() <= worker {
            by_worker.resize_with(worker + 1, Vec::new);
        }
        let v = &mut by_worker[worker];
        if v.len() <= i {
            let want = (i + 1).next_multiple_of(STEP);
            v.reserve_exact(want - v.len());
            v.resize(want, NONE);
        }
        v[i] = call;
    }

    /// Forgets the slot if `call` holds it.
    pub fn remove(&mut self, worker: usize, id: FlowId, call: CallIndex) {
        match self {
            FlowOwners::Dense(by_worker) => {
                if let Some(slot) = by_worker
                    .get_mut(worker)
                    .and_then(|v| v.get_mut(id.index as usize))
                    .filter(|s| **s == call)
                {
                    *slot = NONE;
                }
            }
            FlowOwners::Sparse(m) => {
                let k = key(worker, id);
                if m.get(&k) == Some(&call) {
                    m.remove(&k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What both forms must do alike.
    fn find_and_forget(mut o: FlowOwners) -> FlowOwners {
        let c: CallIndex = 5;
        o.insert(1, FlowId::new(3, 7), c);
        assert_eq!(o.get(1, FlowId::new(3, 7)), Some(c));
        // The slot, whatever the generation: the caller checks that.
        assert!(o.get(1, FlowId::new(3, 8)).is_some());
        assert!(o.get(0, FlowId::new(3, 7)).is_none());
        assert!(o.get(1, FlowId::new(4, 7)).is_none());
        // Another call's removal leaves the slot alone.
        o.remove(1, FlowId::new(3, 7), 6);
        assert!(o.get(1, FlowId::new(3, 7)).is_some());
        o.remove(1, FlowId::new(3, 7), c);
        assert!(o.get(1, FlowId::new(3, 7)).is_none());
        o.remove(5, FlowId::new(1, 0), c);
        o.insert(1, FlowId::new(STEP as u32, 0), c);
        assert!(o.get(1, FlowId::new(STEP as u32, 0)).is_some());
        o
    }

    #[test]
    fn dense_slots_grow_in_steps_and_forget() {
        let FlowOwners::Dense(by_worker) = find_and_forget(FlowOwners::default()) else {
            panic!("dense by default");
        };
        assert_eq!(by_worker[1].len(), 2 * STEP);
        // Out of range: neither stored nor a panic.
        let mut o = FlowOwners::default();
        o.insert(0, FlowId::new(u32::MAX, 0), 0);
        assert!(o.get(0, FlowId::new(u32::MAX, 0)).is_none());
    }

    #[test]
    fn sparse_slots_hold_only_what_was_inserted() {
        let FlowOwners::Sparse(m) = find_and_forget(FlowOwners::sparse()) else {
            panic!("sparse");
        };
        assert_eq!(m.len(), 1);
    }
}
