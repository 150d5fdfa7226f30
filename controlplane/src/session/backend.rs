//! What the sessions need from the data plane, as a trait: the real workers in the
//! binary, a recording fake in the session tests (so call logic is tested without
//! threads or sockets).

use std::net::{SocketAddr, UdpSocket};

use ferrelay_engine::{FlowId, FlowRule};

/// A data-plane command that could not be queued, with its reason for the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data plane: {0}")]
pub struct BackendError(pub String);

/// The flow commands of the data plane, addressed by worker.
pub trait MediaBackend: Send + std::fmt::Debug {
    /// Number of workers; flows of one call all go to one of them.
    fn workers(&self) -> usize;
    /// Hands `socket` to `worker`, which starts forwarding per `rule`.
    fn add_flow(
        &mut self,
        worker: usize,
        socket: UdpSocket,
        rule: FlowRule,
    ) -> Result<FlowId, BackendError>;
    /// Replaces the rule, keeping counters and the latched remote.
    fn update_flow(
        &mut self,
        worker: usize,
        id: FlowId,
        rule: FlowRule,
    ) -> Result<(), BackendError>;
    /// Stops the flow and closes the worker's copy of its socket (also of a parked
    /// flow).
    fn remove_flow(&mut self, worker: usize, id: FlowId) -> Result<(), BackendError>;
    /// Stops the flow (its final counters arrive as for `remove_flow`) but has the
    /// worker keep its socket, bound and drained, for `reuse_flow`. Returns false
    /// when this backend cannot park, having removed the flow instead.
    fn park_flow(&mut self, worker: usize, id: FlowId) -> Result<bool, BackendError> {
        self.remove_flow(worker, id).map(|()| false)
    }
    /// Starts a new flow on the socket of parked flow `parked` (spent on success).
    fn reuse_flow(
        &mut self,
        worker: usize,
        parked: FlowId,
        rule: FlowRule,
    ) -> Result<FlowId, BackendError> {
        let _ = (worker, parked, rule);
        Err(BackendError("this data plane cannot reuse sockets".into()))
    }
    fn set_blocked(&mut self, worker: usize, id: FlowId, blocked: bool)
    -> Result<(), BackendError>;
    /// Asks for a stats snapshot of the flow (answered later as an event).
    fn query_flow(&mut self, worker: usize, id: FlowId) -> Result<(), BackendError>;
    /// Hands the commands queued so far to the workers (one wake-up each), for a
    /// backend that batches them; call after each request or timer turn.
    fn flush(&mut self) {}
}

/// The counters the sessions keep per flow, from the worker's stats events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounters {
    pub packets: u64,
    pub bytes: u64,
    /// Packets dropped on this flow for any reason.
    pub errors: u64,
    /// Where packets really come from (latched or last seen).
    pub remote: Option<SocketAddr>,
}

#[cfg(test)]
pub(crate) mod fake {
    //! A backend that records rules instead of forwarding.

    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug, Default)]
    pub struct FakeBackend {
        pub workers: usize,
        pub next: u32,
        /// Live flows: (worker, id) -> (local port, rule).
        pub flows: BTreeMap<(usize, u32), (u16, FlowRule)>,
        /// Parked flows: (worker, id) -> local port.
        pub parked: BTreeMap<(usize, u32), u16>,
        /// Flows started on a parked socket.
        pub reused: usize,
        pub blocked: Vec<(usize, FlowId, bool)>,
        pub commands: usize,
    }

    impl FakeBackend {
        pub fn new(workers: usize) -> Self {
            FakeBackend {
                workers,
                ..Default::default()
            }
        }

        /// The rule of the flow bound to local `port`.
        pub fn rule_on(&self, port: u16) -> Option<(FlowId, &FlowRule)> {
            self.flows
                .iter()
                .find(|(_, (p, _))| *p == port)
                .map(|((_, i), (_, r))| (FlowId::new(*i, 0), r))
        }

        /// Records a new flow on `port` under the next id.
        fn install(&mut self, worker: usize, port: u16, rule: FlowRule) -> FlowId {
            self.commands += 1;
            let id = FlowId::new(self.next, 0);
            self.next += 1;
            self.flows.insert((worker, id.index), (port, rule));
            id
        }
    }

    impl MediaBackend for FakeBackend {
        fn workers(&self) -> usize {
            self.workers
        }

        fn add_flow(
            &mut self,
            worker: usize,
            socket: UdpSocket,
            rule: FlowRule,
        ) -> Result<FlowId, BackendError> {
            let port = socket
                .local_addr()
                .map_err(|e| BackendError(e.to_string()))?;
            Ok(self.install(worker, port.port(), rule))
        }

        fn update_flow(
            &mut self,
            worker: usize,
            id: FlowId,
            rule: FlowRule,
        ) -> Result<(), BackendError> {
            self.commands += 1;
            let slot = self
                .flows
                .get_mut(&(worker, id.index))
                .ok_or_else(|| BackendError("unknown flow".into()))?;
            slot.1 = rule;
            Ok(())
        }

        fn remove_flow(&mut self, worker: usize, id: FlowId) -> Result<(), BackendError> {
            self.commands += 1;
            if self.parked.remove(&(worker, id.index)).is_some() {
                return Ok(());
            }
            self.flows
                .remove(&(worker, id.index))
                .map(|_| ())
                .ok_or_else(|| BackendError("unknown flow".into()))
        }

        fn park_flow(&mut self, worker: usize, id: FlowId) -> Result<bool, BackendError> {
            self.commands += 1;
            let (port, _) = self
                .flows
                .remove(&(worker, id.index))
                .ok_or_else(|| BackendError("unknown flow".into()))?;
            self.parked.insert((worker, id.index), port);
            Ok(true)
        }

        fn reuse_flow(
            &mut self,
            worker: usize,
            parked: FlowId,
            rule: FlowRule,
        ) -> Result<FlowId, BackendError> {
            let port = self
                .parked
                .remove(&(worker, parked.index))
                .ok_or_else(|| BackendError("not parked".into()))?;
            self.reused += 1;
            Ok(self.install(worker, port, rule))
        }

        fn set_blocked(
            &mut self,
            worker: usize,
            id: FlowId,
            blocked: bool,
        ) -> Result<(), BackendError> {
            self.blocked.push((worker, id, blocked));
            Ok(())
        }

        fn query_flow(&mut self, _worker: usize, _id: FlowId) -> Result<(), BackendError> {
            Ok(())
        }
    }
}
