//! The run modes over one call placer: a fixed load (progress sampled on a tick,
//! which soak prints as periodic reports), and a ramp that places fresh calls per
//! step and keeps the highest call count meeting the loss and p99 bounds. Every
//! mode ends: runs last `LoadConfig::duration`, ramps have a finite step list.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use crate::call_source::{Call, CallAddrs, CallSource, FixedPairs};
use crate::load::{LoadConfig, LoadRun};
use crate::ng_calls::{NgCalls, SetupStats};
use crate::report::LoadReport;

/// Where a mode gets its calls.
#[derive(Debug)]
pub enum Placer {
    /// Fixed relay port pairs (forwarders without a control protocol).
    Fixed(FixedPairs),
    /// Offer/answer over NG; deleted again after each run.
    Ng(NgCalls),
    /// Relay port pairs known in advance (a run of `n` uses the first `n`).
    List(Vec<CallAddrs>),
}

impl Placer {
    /// Sets up `n` calls.
    pub fn place(&mut self, n: usize) -> anyhow::Result<(Vec<Call>, Option<SetupStats>)> {
        match self {
            Placer::Fixed(f) => Ok((f.calls(n)?.into_iter().map(Call::from).collect(), None)),
            Placer::Ng(ng) => {
                let (calls, stats) = ng.setup(n)?;
                Ok((calls, Some(stats)))
            }
            Placer::List(l) => {
                anyhow::ensure!(n <= l.len(), "{n} calls asked of a list of {}", l.len());
                Ok((l[..n].iter().map(|&c| Call::from(c)).collect(), None))
            }
        }
    }

    /// Tears down what [`Placer::place`] set up; returns the deletes refused.
    pub fn release(&mut self) -> anyhow::Result<usize> {
        match self {
            Placer::Fixed(_) | Placer::List(_) => Ok(0),
            Placer::Ng(ng) => ng.teardown(),
        }
    }
}

/// Live figures of a running load, as the progress bar and soak lines show them.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    pub elapsed_s: f64,
    pub sent: u64,
    pub received: u64,
    /// Packets per second sent and received since the previous sample.
    pub sent_pps: f64,
    pub received_pps: f64,
    pub srtp_errors: u64,
    pub corrupt: u64,
}

/// Reads successive [`Sample`]s of one run.
#[derive(Debug, Default)]
pub struct Sampler {
    last: Sample,
}

impl Sampler {
    pub fn sample(&mut self, run: &LoadRun) -> Sample {
        let live = run.live();
        let elapsed_s = run.elapsed().as_secs_f64();
        let (sent, received) = (
            live.sent.load(Ordering::Relaxed),
            live.received.load(Ordering::Relaxed),
        );
        let dt = elapsed_s - self.last.elapsed_s;
        let rate = |now: u64, before: u64| {
            if dt > 0.0 {
                (now - before) as f64 / dt
            } else {
                0.0
            }
        };
        let s = Sample {
            elapsed_s,
            sent,
            received,
            sent_pps: rate(sent, self.last.sent),
            received_pps: rate(received, self.last.received),
            srtp_errors: live.srtp_errors.load(Ordering::Relaxed),
            corrupt: live.corrupt.load(Ordering::Relaxed),
        };
        self.last = s;
        s
    }
}

/// Places `n` calls, runs the load, calling `on_tick` every `tick` while it
/// sends, tears the calls down and returns the report (with setup figures).
pub fn run_once(
    placer: &mut Placer,
    cfg: &LoadConfig,
    n: usize,
    tick: Duration,
    on_tick: &mut dyn FnMut(&LoadRun),
) -> anyhow::Result<LoadReport> {
    let (calls, setup) = placer.place(n)?;
    let result = drive(cfg, calls, tick, on_tick);
    // Tear down even when the run failed, so a relay is not left with our calls.
    let released = placer.release();
    let mut report = result?;
    released?;
    report.setup = setup;
    Ok(report)
}

fn drive(
    cfg: &LoadConfig,
    calls: Vec<Call>,
    tick: Duration,
    on_tick: &mut dyn FnMut(&LoadRun),
) -> anyhow::Result<LoadReport> {
    let run = LoadRun::start_calls(cfg.clone(), calls)?;
    let tick = tick.max(Duration::from_millis(10));
    while run.elapsed() < cfg.duration {
        std::thread::sleep(tick.min(cfg.duration.saturating_sub(run.elapsed())));
        on_tick(&run);
    }
    Ok(run.wait()?)
}

/// Bounds of a ramp: call counts `start, start+step, ..` up to `max`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RampConfig {
    pub start: usize,
    pub step: usize,
    pub max: usize,
    /// A step passes with loss below this (percent)...
    pub loss_pct_max: f64,
    /// ... and one-way p99 latency at or below this (microseconds).
    pub p99_max_us: f64,
}

impl RampConfig {
    /// The call counts the ramp tries, in order.
    pub fn counts(&self) -> Vec<usize> {
        let step = self.step.max(1);
        (0..)
            .map(|i| self.start + i * step)
            .take_while(|&c| c <= self.max)
            .collect()
    }

    /// Whether a step's report meets the bounds.
    pub fn passes(&self, r: &LoadReport) -> bool {
        r.sent > 0
            && r.loss_pct < self.loss_pct_max
            && r.latency.p99_us <= self.p99_max_us
            && r.srtp_errors == 0
            && r.corrupt == 0
    }
}

/// One step of a ramp.
#[derive(Debug, Clone, Serialize)]
pub struct RampStep {
    pub calls: usize,
    pub passed: bool,
    pub report: LoadReport,
}

/// What a ramp found: the highest passing step before the first failing one.
#[derive(Debug, Clone, Serialize)]
pub struct RampReport {
    pub bounds: RampConfig,
    pub steps: Vec<RampStep>,
    pub best_calls: Option<usize>,
    /// Offered packets per second (all streams) at the best step.
    pub best_pps: f64,
}

/// Runs the ramp, stopping at the first failing step; `on_step` sees each result.
pub fn ramp(
    placer: &mut Placer,
    cfg: &LoadConfig,
    bounds: RampConfig,
    tick: Duration,
    on_tick: &mut dyn FnMut(&LoadRun),
    on_step: &mut dyn FnMut(&RampStep),
) -> anyhow::Result<RampReport> {
    anyhow::ensure!(bounds.start > 0, "a ramp starts at one call or more");
    let mut out = RampReport {
        bounds,
        steps: Vec::new(),
        best_calls: None,
        best_pps: 0.0,
    };
    for calls in bounds.counts() {
        let report = run_once(placer, cfg, calls, tick, on_tick)?;
        let passed = bounds.passes(&report);
        if passed {
            out.best_calls = Some(calls);
            out.best_pps = report.offered_pps;
        }
        let step = RampStep {
            calls,
            passed,
            report,
        };
        on_step(&step);
        out.steps.push(step);
        if !passed {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_counts_are_bounded() {
        let b = RampConfig {
            start: 10,
            step: 25,
            max: 60,
            loss_pct_max: 0.1,
            p99_max_us: 1000.0,
        };
        assert_eq!(b.counts(), vec![10, 35, 60]);
        assert_eq!(
            RampConfig {
                step: 0,
                max: 12,
                ..b
            }
            .counts()
            .len(),
            3
        );
        assert!(RampConfig { start: 70, ..b }.counts().is_empty());
    }
}
