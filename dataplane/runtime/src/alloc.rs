//! Flow slot allocation on the control side: a free list plus a generation per slot, so
//! a slot's id changes every time it is reused and a stale id never reaches a new flow.

use ferrelay_engine::FlowId;

/// Largest number of flow slots per worker (keeps socket tables small and ids dense).
pub const MAX_INDEX: u32 = 1 << 24;
/// Generations stay below 2^31 so the I/O shell can use bit 63 of `user_data` as a tag.
pub(crate) const GEN_MASK: u32 = (1 << 31) - 1;

/// Hands out `FlowId`s for one worker. Slot `i` is only reused after `release`, which the
/// handle calls once the worker's `RemoveFlow` is queued (the worker applies commands in
/// order, so the old flow is gone before the new one arrives).
#[derive(Debug)]
pub struct FlowIdAllocator {
    generations: Vec<u32>,
    live: Vec<bool>,
    free: Vec<u32>,
    next_fresh: u32,
}

impl FlowIdAllocator {
    /// An allocator for `max` slots; only the generation table is preallocated.
    pub fn new(max: u32) -> Self {
        let max = max.min(MAX_INDEX);
        FlowIdAllocator {
            generations: vec![0; max as usize],
            live: vec![false; max as usize],
            free: Vec::new(),
            next_fresh: 0,
        }
    }

    /// A new id, or `None` when every slot is live. Freed slots are reused first (LIFO,
    /// which keeps the worker's socket table hot in cache).
    pub fn alloc(&mut self) -> Option<FlowId> {
        let index = match self.free.pop() {
            Some(i) => i,
            None if (self.next_fresh as usize) < self.generations.len() => {
                self.next_fresh += 1;
                self.next_fresh - 1
            }
            None => return None,
        };
        self.live[index as usize] = true;
        Some(FlowId::new(index, self.generations[index as usize]))
    }

    /// True while `id` is the current, live holder of its slot.
    pub fn is_live(&self, id: FlowId) -> bool {
        let i = id.index as usize;
        i < self.live.len() && self.live[i] && self.generations[i] == id.generation
    }

    /// Frees the slot and bumps its generation. Returns false (and does nothing) for an
    /// id that is not live, so a double remove cannot free someone else's slot.
    pub fn release(&mut self, id: FlowId) -> bool {
        if !self.is_live(id) {
            return false;
        }
        let i = id.index as usize;
        self.live[i] = false;
        self.generations[i] = (self.generations[i] + 1) & GEN_MASK;
        self.free.push(id.index);
        true
    }

    /// The id that `renew(id)` will give: the same slot, the next generation.
    pub fn renewed(id: FlowId) -> FlowId {
        FlowId::new(id.index, (id.generation + 1) & GEN_MASK)
    }

    /// Passes the live `id`'s slot straight to a new id (the next generation), as
    /// `release` then `alloc` of that slot would; the slot never becomes free.
    /// Returns `None` (and does nothing) for an id that is not live.
    pub fn renew(&mut self, id: FlowId) -> Option<FlowId> {
        if !self.is_live(id) {
            return None;
        }
        let next = Self::renewed(id);
        self.generations[id.index as usize] = next.generation;
        Some(next)
    }

    /// Number of live flows.
    pub fn live_count(&self) -> usize {
        self.next_fresh as usize - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_changes_generation() {
        let mut a = FlowIdAllocator::new(2);
        let x = a.alloc().unwrap();
        let y = a.alloc().unwrap();
        assert_ne!(x.index, y.index);
        assert!(a.alloc().is_none(), "only two slots");
        assert!(a.release(x));
        let z = a.alloc().unwrap();
        assert_eq!(z.index, x.index);
        assert_ne!(z.generation, x.generation);
        assert!(!a.is_live(x));
        assert!(a.is_live(z));
        assert_eq!(a.live_count(), 2);
    }

    #[test]
    fn renew_passes_the_slot_to_the_next_generation() {
        let mut a = FlowIdAllocator::new(1);
        let x = a.alloc().unwrap();
        let y = a.renew(x).unwrap();
        assert_eq!(y, FlowIdAllocator::renewed(x));
        assert_eq!((y.index, y.generation), (x.index, x.generation + 1));
        assert!(!a.is_live(x) && a.is_live(y));
        assert!(a.renew(x).is_none(), "spent");
        assert!(!a.release(x));
        assert_eq!(a.live_count(), 1);
        assert!(a.alloc().is_none(), "the slot never became free");
        // Releasing the new holder frees the slot under yet another generation.
        assert!(a.release(y));
        let z = a.alloc().unwrap();
        assert_eq!((z.index, z.generation), (x.index, x.generation + 2));
        a.generations[0] = GEN_MASK;
        let w = a.renew(FlowId::new(0, GEN_MASK)).unwrap();
        assert_eq!(w.generation, 0, "wraps below the tag bit");
    }

    #[test]
    fn double_release_is_refused() {
        let mut a = FlowIdAllocator::new(4);
        let x = a.alloc().unwrap();
        assert!(a.release(x));
        assert!(!a.release(x));
        let y = a.alloc().unwrap();
        // The stale id must not free the slot's new holder.
        assert!(!a.release(x));
        assert!(a.is_live(y));
        assert_eq!(a.live_count(), 1);
    }

    #[test]
    fn generation_wraps_below_tag_bit() {
        let mut a = FlowIdAllocator::new(1);
        a.generations[0] = GEN_MASK;
        let x = a.alloc().unwrap();
        assert!(a.release(x));
        let y = a.alloc().unwrap();
        assert_eq!(y.generation, 0);
        assert_eq!(y.to_u64() >> 63, 0);
    }
}
