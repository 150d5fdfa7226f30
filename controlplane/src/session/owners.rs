//! Which call owns each installed flow, so a worker's event (stats, a refused
//! command) finds its call at once. A worker's flow ids are slots of its
//! preallocated table (at most 2^24, the runtime's limit), so the index is a
//! dense vector per worker holding the call's shared id: 16 bytes per flow
//! instead of a hash map entry and its spare buckets.

use std::sync::Arc;

use ferrelay_engine::FlowId;

/// Slot indexes beyond this are not indexed (the runtime refuses larger tables).
const MAX_INDEX: usize = 1 << 24;

/// The vector grows in steps of this many slots, not by doubling.
const STEP: usize = 1024;

/// Call ids by worker and flow slot. A slot names the call of the flow that last
/// held it; callers confirm the exact `FlowId` (with its generation) against the
/// call's own flows, which keeps stale events from a reused slot out.
#[derive(Debug, Default)]
pub struct FlowOwners {
    by_worker: Vec<Vec<Option<Arc<str>>>>,
}

impl FlowOwners {
    /// The call whose flow holds slot `id.index` on `worker`.
    pub fn get(&self, worker: usize, id: FlowId) -> Option<&Arc<str>> {
        self.by_worker.get(worker)?.get(id.index as usize)?.as_ref()
    }

    pub fn insert(&mut self, worker: usize, id: FlowId, call: Arc<str>) {
        let i = id.index as usize;
        if i >= MAX_INDEX {
            tracing::warn!(
                worker,
                index = i,
                "flow slot beyond the index; its events are ignored"
            );
            return;
        }
        if self.by_worker.len() <= worker {
            self.by_worker.resize_with(worker + 1, Vec::new);
        }
        let v = &mut self.by_worker[worker];
        if v.len() <= i {
            let want = (i + 1).next_multiple_of(STEP);
            v.reserve_exact(want - v.len());
            v.resize(want, None);
        }
        v[i] = Some(call);
    }

    /// Forgets the slot if `call` holds it.
    pub fn remove(&mut self, worker: usize, id: FlowId, call: &str) {
        if let Some(slot) = self
            .by_worker
            .get_mut(worker)
            .and_then(|v| v.get_mut(id.index as usize))
            .filter(|s| s.as_deref() == Some(call))
        {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_by_worker_grow_in_steps_and_forget() {
        let mut o = FlowOwners::default();
        let c: Arc<str> = "call".into();
        o.insert(1, FlowId::new(3, 7), c.clone());
        assert_eq!(o.get(1, FlowId::new(3, 7)).map(|s| &**s), Some("call"));
        // The slot, whatever the generation: the caller checks that.
        assert!(o.get(1, FlowId::new(3, 8)).is_some());
        assert!(o.get(0, FlowId::new(3, 7)).is_none());
        assert!(o.get(1, FlowId::new(4, 7)).is_none());
        assert_eq!(o.by_worker[1].len(), STEP);
        o.insert(1, FlowId::new(STEP as u32, 0), c.clone());
        assert_eq!(o.by_worker[1].len(), 2 * STEP);
        // Another call's removal leaves the slot alone.
        o.remove(1, FlowId::new(3, 7), "other");
        assert!(o.get(1, FlowId::new(3, 7)).is_some());
        o.remove(1, FlowId::new(3, 7), "call");
        assert!(o.get(1, FlowId::new(3, 7)).is_none());
        // Out of range: neither stored nor a panic.
        o.insert(0, FlowId::new(u32::MAX, 0), c);
        assert!(o.get(0, FlowId::new(u32::MAX, 0)).is_none());
        o.remove(5, FlowId::new(1, 0), "call");
    }
}
