//! The calls of one set of sessions, by call-id and by a small index of their own.
//!
//! Each call lives in a slot of a slab and keeps that slot's index while it lives;
//! the hash table holds only those 4-byte indexes, hashed by the call's id, which
//! the call itself keeps. The flow index ([`super::owners`]) names a call by the
//! same 4 bytes. A map from a shared id to the boxed call, with the flow index
//! holding shared ids, took 24 bytes a call in the map and 16 per flow slot in the
//! index (four per call); this takes 4 in the table, 8 in the slab and 4 per slot.

use std::hash::BuildHasher;
use std::ops::Index;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::call::Call;

/// The index a call keeps for as long as it lives. A later call may get the same
/// index once this one is removed: holders of an index confirm what they find.
pub type CallIndex = u32;

#[derive(Debug, Default)]
pub struct Calls {
    /// The calls; `None` in the slots of removed calls (listed in `free`).
    slab: Vec<Option<Box<Call>>>,
    free: Vec<CallIndex>,
    /// Indexes of the slab's calls, hashed by id.
    table: HashTable<CallIndex>,
    hasher: RandomState,
}

/// The call in slot `i`, if any.
fn slot(slab: &[Option<Box<Call>>], i: CallIndex) -> Option<&Call> {
    slab.get(i as usize)?.as_deref()
}

impl Calls {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// The index of call `id`.
    pub fn find(&self, id: &str) -> Option<CallIndex> {
        let slab = &self.slab;
        self.table
            .find(self.hasher.hash_one(id), |&i| {
                slot(slab, i).is_some_and(|c| c.id() == id)
            })
            .copied()
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    pub fn get(&self, id: &str) -> Option<&Call> {
        self.at(self.find(id)?)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Call> {
        let i = self.find(id)?;
        self.at_mut(i)
    }

    /// The call at index `i`.
    pub fn at(&self, i: CallIndex) -> Option<&Call> {
        slot(&self.slab, i)
    }

    pub fn at_mut(&mut self, i: CallIndex) -> Option<&mut Call> {
        self.slab.get_mut(i as usize)?.as_deref_mut()
    }

    /// Adds a call whose id is not here yet (the caller checked) and returns its
    /// index. `None` once 2^32 - 1 calls are held, which memory rules out first.
    pub fn insert(&mut self, call: Box<Call>) -> Option<CallIndex> {
        debug_assert!(!self.contains_key(call.id()), "call {} twice", call.id());
        let hash = self.hasher.hash_one(call.id());
        let i = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(call);
                i
            }
            None => {
                // `CallIndex::MAX` stays free: the flow index's empty slot.
                let i = CallIndex::try_from(self.slab.len())
                    .ok()
                    .filter(|&i| i < CallIndex::MAX)?;
                self.slab.push(Some(call));
                i
            }
        };
        let Calls {
            slab,
            table,
            hasher,
            ..
        } = self;
        table.insert_unique(hash, i, |&j| {
            slot(slab, j).map_or(0, |c| hasher.hash_one(c.id()))
        });
        Some(i)
    }

    /// Takes call `id` out; its index may be given to a later call.
    pub fn remove(&mut self, id: &str) -> Option<Box<Call>> {
        let hash = self.hasher.hash_one(id);
        let Calls {
            slab, free, table, ..
        } = self;
        let (i, _) = table
            .find_entry(hash, |&i| slot(slab, i).is_some_and(|c| c.id() == id))
            .ok()?
            .remove();
        free.push(i);
        slab.get_mut(i as usize)?.take()
    }

    /// Every call, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &Call> + Clone {
        self.slab.iter().filter_map(|c| c.as_deref())
    }

    /// Every call's id.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.values().map(|c| c.id())
    }
}

impl Index<&str> for Calls {
    type Output = Call;

    /// The call `id`; panics when there is none (tests).
    fn index(&self, id: &str) -> &Call {
        self.get(id).expect("no such call")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn call(id: &str) -> Box<Call> {
        Box::new(Call::new(id.into(), 0, Instant::now(), 0))
    }

    #[test]
    fn calls_are_found_by_id_and_index_and_indexes_are_reused() {
        let mut c = Calls::default();
        let a = c.insert(call("a")).expect("room");
        let b = c.insert(call("b")).expect("room");
        assert_ne!(a, b);
        assert_eq!(c.len(), 2);
        assert_eq!(c.find("b"), Some(b));
        assert_eq!(c["a"].id(), "a");
        assert_eq!(c.at(b).map(|x| x.id()), Some("b"));
        assert!(c.get("nope").is_none());

        assert_eq!(
            c.remove("a").map(|x| Box::<str>::from(x.id())),
            Some("a".into())
        );
        assert!(c.remove("a").is_none());
        assert!(c.at(a).is_none(), "a removed call's index names nothing");
        assert_eq!(c.len(), 1);
        // The freed index goes to the next call, which is found by its own id.
        assert_eq!(c.insert(call("c")), Some(a));
        assert_eq!(c.find("c"), Some(a));
        assert!(!c.contains_key("a"));
        let mut ids: Vec<&str> = c.ids().collect();
        ids.sort_unstable();
        assert_eq!(ids, ["b", "c"]);
    }

    #[test]
    fn many_calls_survive_the_table_growing() {
        let mut c = Calls::default();
        for i in 0..5_000 {
            c.insert(call(&format!("call-{i}"))).expect("room");
        }
        for i in (0..5_000).step_by(2) {
            assert!(c.remove(&format!("call-{i}")).is_some());
        }
        assert_eq!(c.len(), 2_500);
        for i in 0..5_000 {
            assert_eq!(c.contains_key(&format!("call-{i}")), i % 2 == 1, "call-{i}");
        }
        assert_eq!(c.values().count(), 2_500);
    }
}
