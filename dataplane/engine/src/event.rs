//! Events the engine reports to the control plane, through a bounded, preallocated
//! queue: a full queue drops the event and counts it, it never grows.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::rule::FlowId;

/// Something the control plane should hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineEvent {
    /// The flow learned (or moved) its remote from traffic (symmetric RTP).
    Latched { id: FlowId, addr: SocketAddr },
    /// No media on this flow for `idle_ns`; reported once per idle period.
    MediaIdle { id: FlowId, idle_ns: u64 },
    /// The RTP SSRC seen on this flow changed (a new stream restarts loss/jitter).
    SsrcChanged { id: FlowId, ssrc: u32 },
    /// A packet that arrived on this flow was dropped as a media loop's repeat
    /// (`DropReason::Loop`): the flow's first, then at most one about a minute
    /// while the loop lasts.
    LoopDetected { id: FlowId },
}

/// Bounded FIFO whose storage is allocated once, in `new`.
#[derive(Debug)]
pub(crate) struct EventQueue {
    q: VecDeque<EngineEvent>,
    cap: usize,
    overflow: u64,
}

impl EventQueue {
    pub(crate) fn new(cap: usize) -> Self {
        EventQueue {
            q: VecDeque::with_capacity(cap),
            cap,
            overflow: 0,
        }
    }

    /// Queues `ev` unless full; never reallocates because `len < cap <= capacity`.
    #[inline]
    pub(crate) fn push(&mut self, ev: EngineEvent) {
        if self.q.len() < self.cap {
            self.q.push_back(ev);
        } else {
            self.overflow += 1;
        }
    }

    pub(crate) fn pop(&mut self) -> Option<EngineEvent> {
        self.q.pop_front()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.q.len()
    }

    /// Events lost because the queue was full.
    pub(crate) fn overflow(&self) -> u64 {
        self.overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_counts_overflow() {
        let mut q = EventQueue::new(2);
        let ev = |i| EngineEvent::MediaIdle {
            id: FlowId::new(i, 0),
            idle_ns: 1,
        };
        for i in 0..5 {
            q.push(ev(i));
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.overflow(), 3);
        assert_eq!(q.pop(), Some(ev(0)));
        assert_eq!(q.pop(), Some(ev(1)));
        assert_eq!(q.pop(), None);
    }
}
