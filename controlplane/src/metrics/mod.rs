//! What the HTTP side reads: the latest `WorkerStats` report of every worker, kept
//! by the NG threads as they apply worker events. Workers publish snapshots on their own schedule
//! (`stats_interval`); reading metrics takes this small lock, never a worker's time.

mod prom;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferrelay_dataplane::WorkerReport;

pub use prom::{RelayFacts, render};

/// One worker's latest periodic report and when it arrived.
#[derive(Debug, Clone)]
pub struct WorkerSample {
    pub report: WorkerReport,
    pub at: Instant,
    /// Commands the control plane could not queue because the ring was full.
    pub rejected_commands: u64,
}

/// The latest snapshot per worker, shared between the NG threads and HTTP.
#[derive(Debug)]
pub struct Observatory {
    started: Instant,
    command_ring_capacity: usize,
    workers: Mutex<Vec<Option<WorkerSample>>>,
}

impl Observatory {
    pub fn new(workers: usize, command_ring_capacity: usize, now: Instant) -> Self {
        Observatory {
            started: now,
            command_ring_capacity,
            workers: Mutex::new(vec![None; workers]),
        }
    }

    /// Keeps `report` as the worker's latest (answers to explicit queries too: they
    /// carry the same cumulative counters).
    pub fn publish(&self, report: WorkerReport, rejected_commands: u64, now: Instant) {
        let mut w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let i = report.worker;
        if i >= w.len() {
            w.resize(i + 1, None);
        }
        w[i] = Some(WorkerSample {
            report,
            at: now,
            rejected_commands,
        });
    }

    /// A copy of every worker's latest sample (`None` before its first report).
    pub fn samples(&self) -> Vec<Option<WorkerSample>> {
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    pub fn command_ring_capacity(&self) -> usize {
        self.command_ring_capacity
    }

    /// Ready once every worker has reported at least once.
    pub fn ready(&self) -> bool {
        let w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        !w.is_empty() && w.iter().all(Option::is_some)
    }
}

/// Residence quantile in microseconds of the packets recorded in `h` (0 when empty).
pub fn quantile_us(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}
