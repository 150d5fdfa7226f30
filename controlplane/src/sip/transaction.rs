//! Transaction state machines (RFC 3261 §17, with RFC 6026's Accepted state), sans-IO:
//! each takes `now` and tells the proxy what to (re)send. Timers A–K (and L, M):
//!
//! ```text
//!  client INVITE      Calling --1xx--> Proceeding --2xx--> Accepted (M) --> gone
//!   A: retransmit     (A, B)           (C)          \--300-699--> Completed (D) --> gone
//!  client non-INVITE  Trying (E, F) --1xx--> Proceeding (E, F) --final--> Completed (K)
//!  server INVITE      Proceeding --2xx--> Accepted (L)   --300-699--> Completed (G, H)
//!                     Completed --ACK--> Confirmed (I) --> gone
//!  server non-INVITE  Trying/Proceeding --final--> Completed (J) --> gone
//! ```

use std::time::{Duration, Instant};

/// The timer base values (RFC 3261 §17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate, 500 ms by default.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// Longest a message stays in the network (5 s).
    pub t4: Duration,
    /// How long a proxy waits for a final response after a provisional (> 3 min).
    pub c: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            c: Duration::from_secs(180),
        }
    }
}

/// What a timer asks of the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fire {
    /// Send the stored message again (A, E for requests, G for responses).
    Retransmit,
    /// No final response in time (B, F, C): the proxy answers 408 upstream.
    Timeout,
    /// The transaction ended (D, K, M, H, I, J, L): forget it.
    Terminated,
}

/// A client transaction's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Calling (INVITE) or Trying (non-INVITE).
    Trying,
    Proceeding,
    /// A 2xx to an INVITE passed (RFC 6026 §7.2): further 2xx go up too.
    Accepted,
    Completed,
}

/// What the proxy does with a response the client transaction saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it upstream.
    Forward,
    /// Pass it upstream and ACK it downstream (a 300–699 to an INVITE, §17.1.1.3).
    ForwardAndAck,
    /// A retransmission of a final response: absorb it (resend the ACK for INVITE).
    Absorb { resend_ack: bool },
}

/// One client transaction: retransmits its request and runs the timers.
#[derive(Debug, Clone)]
pub struct ClientTx {
    pub invite: bool,
    pub reliable: bool,
    pub state: ClientState,
    timers: Timers,
    /// Next retransmission (A or E) and its current interval.
    retx: Option<(Instant, Duration)>,
    /// B/F (no answer), C (no final), then D/K/M (linger).
    deadline: Instant,
}

impl ClientTx {
    /// Starts after the request was sent once at `now`.
    pub fn new(invite: bool, reliable: bool, timers: Timers, now: Instant) -> ClientTx {
        ClientTx {
            invite,
            reliable,
            state: ClientState::Trying,
            timers,
            retx: (!reliable).then(|| (now + timers.t1, timers.t1)),
            deadline: now + 64 * timers.t1,
        }
    }

    /// Feeds a response status code.
    pub fn on_response(&mut self, code: u16, now: Instant) -> Verdict {
        let t = self.timers;
        let linger = |d: Duration| if self.reliable { now } else { now + d };
        match (self.invite, self.state, code) {
            (_, ClientState::Completed, _) => Verdict::Absorb {
                resend_ack: self.invite && code >= 300,
            },
            (_, ClientState::Accepted, 200..=299) => Verdict::Forward,
            (_, ClientState::Accepted, _) => Verdict::Absorb { resend_ack: false },
            (_, _, 100..=199) => {
                if self.invite {
                    // §17.1.1.2: Timer A stops; §16.6 step 11: Timer C guards the rest.
                    self.retx = None;
                    self.deadline = now + t.c;
                } else if let Some((_, _)) = self.retx {
                    // §17.1.2.2: in Proceeding, retransmit every T2.
                    self.retx = Some((now + t.t2, t.t2));
                }
                self.state = ClientState::Proceeding;
                Verdict::Forward
            }
            (true, _, 200..=299) => {
                self.retx = None;
                self.state = ClientState::Accepted;
                self.deadline = now + 64 * t.t1; // Timer M
                Verdict::Forward
            }
            (true, _, _) => {
                self.retx = None;
                self.state = ClientState::Completed;
                self.deadline = linger(Duration::from_secs(32).max(64 * t.t1)); // Timer D
                Verdict::ForwardAndAck
            }
            (false, _, _) => {
                self.retx = None;
                self.state = ClientState::Completed;
                self.deadline = linger(t.t4); // Timer K
                Verdict::Forward
            }
        }
    }

    /// The earliest instant `poll` has something to do.
    pub fn next_wakeup(&self) -> Instant {
        self.retx
            .map_or(self.deadline, |(at, _)| at.min(self.deadline))
    }

    /// Runs the timers due at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<Fire> {
        if now >= self.deadline {
            return Some(match self.state {
                ClientState::Trying | ClientState::Proceeding => {
                    // B, F or C; the proxy then forgets the transaction.
                    self.retx = None;
                    Fire::Timeout
                }
                _ => Fire::Terminated,
            });
        }
        let (at, every) = self.retx?;
        if now < at {
            return None;
        }
        // Timer A doubles without bound (B stops it); E caps at T2 (§17.1.2.2).
        let next = if self.invite {
            every * 2
        } else {
            (every * 2).min(self.timers.t2)
        };
        self.retx = Some((now + next, next));
        Some(Fire::Retransmit)
    }
}

/// A server transaction's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Proceeding (INVITE) or Trying/Proceeding (non-INVITE).
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
}

/// One server transaction: absorbs request retransmissions and retransmits final
/// non-2xx INVITE responses until the ACK.
#[derive(Debug, Clone)]
pub struct ServerTx {
    pub invite: bool,
    pub reliable: bool,
    pub state: ServerState,
    timers: Timers,
    /// Timer G.
    retx: Option<(Instant, Duration)>,
    /// H, I, J or L; none while proceeding.
    deadline: Option<Instant>,
}

impl ServerTx {
    pub fn new(invite: bool, reliable: bool, timers: Timers) -> ServerTx {
        ServerTx {
            invite,
            reliable,
            state: ServerState::Proceeding,
            timers,
            retx: None,
            deadline: None,
        }
    }

    /// The proxy sent a response with this code.
    pub fn on_send(&mut self, code: u16, now: Instant) {
        let t = self.timers;
        if code < 200 || self.state != ServerState::Proceeding {
            return;
        }
        match (self.invite, code) {
            (true, 200..=299) => {
                self.state = ServerState::Accepted;
                self.deadline = Some(now + 64 * t.t1); // Timer L
            }
            (true, _) => {
                self.state = ServerState::Completed;
                self.retx = (!self.reliable).then(|| (now + t.t1, t.t1)); // Timer G
                self.deadline = Some(now + 64 * t.t1); // Timer H
            }
            (false, _) => {
                self.state = ServerState::Completed;
                let j = if self.reliable {
                    Duration::ZERO
                } else {
                    64 * t.t1
                };
                self.deadline = Some(now + j); // Timer J
            }
        }
    }

    /// A retransmission of the request arrived: whether to resend the last response
    /// (§17.2.1: not once a 2xx went out; §17.2.2 in every other state).
    pub fn on_retransmit(&self) -> bool {
        self.state != ServerState::Accepted && self.state != ServerState::Confirmed
    }

    /// An ACK matched this transaction (§17.2.1): stop G, start I.
    pub fn on_ack(&mut self, now: Instant) {
        if self.state == ServerState::Completed {
            self.state = ServerState::Confirmed;
            self.retx = None;
            let i = if self.reliable {
                Duration::ZERO
            } else {
                self.timers.t4
            };
            self.deadline = Some(now + i);
        }
    }

    /// The earliest instant `poll` has something to do.
    pub fn next_wakeup(&self) -> Option<Instant> {
        match (self.retx, self.deadline) {
            (Some((a, _)), Some(d)) => Some(a.min(d)),
            (Some((a, _)), None) => Some(a),
            (None, d) => d,
        }
    }

    /// Runs the timers due at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<Fire> {
        if self.deadline.is_some_and(|d| now >= d) {
            self.retx = None;
            return Some(Fire::Terminated);
        }
        let (at, every) = self.retx?;
        if now < at {
            return None;
        }
        let next = (every * 2).min(self.timers.t2);
        self.retx = Some((now + next, next));
        Some(Fire::Retransmit)
    }
}

#[cfg(test)]
#[path = "transaction_tests.rs"]
mod tests;
