//! The worker's sockets, keyed by `FlowId.index`, each remembering its flow's generation
//! so completions and forwards for a stale id never touch a reused slot.
//!
//! The I/O backend registers each socket under a *key* (io_uring `user_data`, epoll
//! data): the slot index and an epoch that is new for every socket put in a slot.
//! The key names the socket, not the flow, so when a parked socket passes to the
//! next flow of its slot (`rekey` to the same index, a new generation) the
//! registration stays as it is: no cancel and re-arm, no `epoll_ctl`. A completion
//! of a closed socket carries an old epoch and is recognised as stale.

use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};

use ferrelay_engine::FlowId;

/// Epochs stay below 2^31 so keys never set bit 63, which the backends keep for
/// their own operations.
const EPOCH_MASK: u32 = (1 << 31) - 1;

#[derive(Debug)]
struct Slot {
    generation: u32,
    epoch: u32,
    sock: UdpSocket,
}

/// What `rekey` did with the socket's registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rekeyed {
    /// Same slot: the registration under the old key now serves the new flow.
    Kept,
    /// Another slot: register `fd` under `key` and cancel the registration under
    /// `old` (its completions are stale from now on).
    Moved { fd: RawFd, key: u64, old: u64 },
}

/// Socket slots, reserved for `max` and written up to the highest index used
/// (as the engine's flow table: resident memory follows the flows held, not the
/// port range); lookups are an index and a generation (or epoch) compare.
#[derive(Debug)]
pub struct SocketTable {
    max: usize,
    slots: Vec<Option<Slot>>,
    next_epoch: u32,
}

const fn key(index: u32, epoch: u32) -> u64 {
    ((epoch as u64) << 32) | index as u64
}

impl SocketTable {
    pub fn new(max_flows: u32) -> Self {
        let max = max_flows as usize;
        SocketTable {
            max,
            slots: Vec::with_capacity(max),
            next_epoch: 0,
        }
    }

    /// The socket fd of `id` if that exact generation is installed.
    #[inline]
    pub fn fd(&self, id: FlowId) -> Option<RawFd> {
        match self.slots.get(id.index as usize) {
            Some(Some(s)) if s.generation == id.generation => Some(s.sock.as_raw_fd()),
            _ => None,
        }
    }

    /// The flow now served by the socket registered under `key`, and its fd;
    /// `None` once that socket has left the table.
    #[inline]
    pub fn resolve(&self, key: u64) -> Option<(FlowId, RawFd)> {
        let index = key as u32;
        match self.slots.get(index as usize) {
            Some(Some(s)) if u64::from(s.epoch) == key >> 32 => {
                Some((FlowId::new(index, s.generation), s.sock.as_raw_fd()))
            }
            _ => None,
        }
    }

    /// Installs `sock` for `id` and returns the key to register it under; a
    /// socket still in the slot (a missed remove) is closed.
    pub fn insert(&mut self, id: FlowId, sock: UdpSocket) -> Result<u64, UdpSocket> {
        let epoch = self.next_epoch;
        let i = id.index as usize;
        if i < self.max && i >= self.slots.len() {
            // Within the reservation: grows in place.
            self.slots.resize_with(i + 1, || None);
        }
        match self.slots.get_mut(i) {
            Some(slot) => {
                self.next_epoch = (epoch + 1) & EPOCH_MASK;
                *slot = Some(Slot {
                    generation: id.generation,
                    epoch,
                    sock,
                });
                Ok(key(id.index, epoch))
            }
            None => Err(sock),
        }
    }

    /// Gives `from`'s socket to `to`; fails, changing nothing, when `from` has no
    /// socket (`NotFound`) or `to` is out of range.
    pub fn rekey(&mut self, from: FlowId, to: FlowId) -> std::io::Result<Rekeyed> {
        if to.index as usize >= self.max {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        if from.index == to.index {
            return match self.slots.get_mut(from.index as usize) {
                Some(Some(s)) if s.generation == from.generation => {
                    s.generation = to.generation;
                    Ok(Rekeyed::Kept)
                }
                _ => Err(std::io::ErrorKind::NotFound.into()),
            };
        }
        let (sock, old) = self.remove(from).ok_or(std::io::ErrorKind::NotFound)?;
        let fd = sock.as_raw_fd();
        // In range, checked above.
        let key = self.insert(to, sock).unwrap_or_default();
        Ok(Rekeyed::Moved { fd, key, old })
    }

    /// Takes the socket of `id` out (generation must match), with the key it was
    /// registered under.
    pub fn remove(&mut self, id: FlowId) -> Option<(UdpSocket, u64)> {
        let slot = self.slots.get_mut(id.index as usize)?;
        match slot {
            Some(s) if s.generation == id.generation => {
                slot.take().map(|s| (s.sock, key(id.index, s.epoch)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").unwrap()
    }

    #[test]
    fn stale_generation_sees_nothing() {
        let mut t = SocketTable::new(2);
        let old = FlowId::new(1, 3);
        let new = FlowId::new(1, 4);
        let k = t.insert(old, sock()).unwrap();
        assert!(t.fd(old).is_some());
        assert_eq!(t.resolve(k).map(|(id, _)| id), Some(old));
        assert!(t.fd(new).is_none());
        assert!(t.remove(new).is_none());
        assert_eq!(t.remove(old).map(|(_, key)| key), Some(k));
        assert!(t.fd(old).is_none());
        assert!(t.resolve(k).is_none());
        assert!(
            t.insert(FlowId::new(2, 0), sock()).is_err(),
            "index out of range"
        );
    }

    #[test]
    fn slots_are_written_only_up_to_the_highest_index_used() {
        let mut t = SocketTable::new(1 << 20);
        assert_eq!(t.slots.len(), 0);
        let k = t.insert(FlowId::new(9, 0), sock()).unwrap();
        assert_eq!(t.slots.len(), 10);
        assert!(t.resolve(k).is_some());
        assert!(t.fd(FlowId::new(4, 0)).is_none());
        assert!(t.resolve(key(500, 0)).is_none(), "beyond the written slots");
        assert!(t.rekey(FlowId::new(9, 0), FlowId::new(1 << 20, 0)).is_err());
        assert!(matches!(
            t.rekey(FlowId::new(9, 0), FlowId::new(40, 0)),
            Ok(Rekeyed::Moved { .. })
        ));
        assert_eq!(t.slots.len(), 41);
    }

    #[test]
    fn every_socket_in_a_slot_gets_a_new_key() {
        let mut t = SocketTable::new(2);
        let (a, b) = (FlowId::new(1, 0), FlowId::new(1, 1));
        let ka = t.insert(a, sock()).unwrap();
        t.remove(a).unwrap();
        let kb = t.insert(b, sock()).unwrap();
        assert_ne!(ka, kb);
        // A late completion of the closed socket names nothing.
        assert!(t.resolve(ka).is_none());
        assert_eq!(t.resolve(kb).map(|(id, _)| id), Some(b));
        assert_eq!(ka & (1 << 63), 0, "bit 63 stays the backends'");
    }

    #[test]
    fn rekey_in_the_slot_keeps_the_registration() {
        let mut t = SocketTable::new(2);
        let (parked, next) = (FlowId::new(0, 7), FlowId::new(0, 8));
        let s = sock();
        let fd = s.as_raw_fd();
        let k = t.insert(parked, s).unwrap();
        assert!(
            t.rekey(FlowId::new(0, 6), next).is_err(),
            "stale generation"
        );
        assert_eq!(t.rekey(parked, next).unwrap(), Rekeyed::Kept);
        // The same key now resolves to the new flow.
        assert_eq!(t.resolve(k), Some((next, fd)));
        assert_eq!((t.fd(parked), t.fd(next)), (None, Some(fd)));
        assert!(t.rekey(parked, next).is_err(), "spent");
    }

    #[test]
    fn rekey_to_another_slot_moves_the_socket_or_changes_nothing() {
        let mut t = SocketTable::new(2);
        let (a, b) = (FlowId::new(0, 0), FlowId::new(1, 5));
        let s = sock();
        let fd = s.as_raw_fd();
        let ka = t.insert(a, s).unwrap();
        assert!(t.rekey(a, FlowId::new(2, 0)).is_err(), "out of range");
        assert_eq!(t.fd(a), Some(fd), "left where it was");
        let Rekeyed::Moved {
            fd: moved,
            key,
            old,
        } = t.rekey(a, b).unwrap()
        else {
            panic!("another slot must move");
        };
        assert_eq!((moved, old), (fd, ka));
        assert_eq!(t.resolve(key), Some((b, fd)));
        assert!(t.resolve(ka).is_none());
        assert_eq!((t.fd(a), t.fd(b)), (None, Some(fd)));
        assert!(t.rekey(a, b).is_err(), "nothing left under a");
    }
}
