//! The worker's sockets, keyed by `FlowId.index`, each remembering its flow's generation
//! so completions and forwards for a stale id never touch a reused slot.

use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};

use ferrelay_engine::FlowId;

/// Preallocated socket slots; lookups are an index and a generation compare.
#[derive(Debug)]
pub struct SocketTable {
    slots: Vec<Option<(u32, UdpSocket)>>,
}

impl SocketTable {
    pub fn new(max_flows: u32) -> Self {
        let mut slots = Vec::with_capacity(max_flows as usize);
        slots.resize_with(max_flows as usize, || None);
        SocketTable { slots }
    }

    /// The socket fd of `id` if that exact generation is installed.
    #[inline]
    pub fn fd(&self, id: FlowId) -> Option<RawFd> {
        match self.slots.get(id.index as usize) {
            Some(Some((generation, s))) if *generation == id.generation => Some(s.as_raw_fd()),
            _ => None,
        }
    }

    /// Installs `sock` for `id`; a socket still in the slot (a missed remove) is closed.
    pub fn insert(&mut self, id: FlowId, sock: UdpSocket) -> Result<(), UdpSocket> {
        match self.slots.get_mut(id.index as usize) {
            Some(slot) => {
                *slot = Some((id.generation, sock));
                Ok(())
            }
            None => Err(sock),
        }
    }

    /// Moves `from`'s socket to `to` and returns its fd; fails, changing nothing,
    /// when `from` has no socket (`NotFound`) or `to` is out of range.
    pub fn rekey(&mut self, from: FlowId, to: FlowId) -> std::io::Result<RawFd> {
        if to.index as usize >= self.slots.len() {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        let sock = self.remove(from).ok_or(std::io::ErrorKind::NotFound)?;
        let fd = sock.as_raw_fd();
        // In range, checked above.
        let _ = self.insert(to, sock);
        Ok(fd)
    }

    /// Takes the socket of `id` out (generation must match).
    pub fn remove(&mut self, id: FlowId) -> Option<UdpSocket> {
        let slot = self.slots.get_mut(id.index as usize)?;
        match slot {
            Some((generation, _)) if *generation == id.generation => slot.take().map(|(_, s)| s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_generation_sees_nothing() {
        let mut t = SocketTable::new(2);
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let old = FlowId::new(1, 3);
        let new = FlowId::new(1, 4);
        t.insert(old, s).unwrap();
        assert!(t.fd(old).is_some());
        assert!(t.fd(new).is_none());
        assert!(t.remove(new).is_none());
        assert!(t.remove(old).is_some());
        assert!(t.fd(old).is_none());
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(
            t.insert(FlowId::new(2, 0), s).is_err(),
            "index out of range"
        );
    }

    #[test]
    fn rekey_moves_the_socket_or_changes_nothing() {
        let mut t = SocketTable::new(2);
        let (a, b) = (FlowId::new(0, 0), FlowId::new(1, 5));
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = s.as_raw_fd();
        t.insert(a, s).unwrap();
        assert!(t.rekey(a, FlowId::new(2, 0)).is_err(), "out of range");
        assert_eq!(t.fd(a), Some(fd), "left where it was");
        assert_eq!(t.rekey(a, b).unwrap(), fd);
        assert_eq!((t.fd(a), t.fd(b)), (None, Some(fd)));
        assert!(t.rekey(a, b).is_err(), "nothing left under a");
    }
}
