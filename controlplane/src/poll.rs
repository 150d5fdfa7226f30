//! Which flows the ticker asks the workers about in each poll round (one call
//! of [`Poller::plan`]; the ticker makes several a tick, see `relay.rs`).
//!
//! A call's media timeout is driven by these polls: a call stays alive while a
//! poll finds one of its flows' packet counts grown (`Sessions::on_flow_stats`).
//! So every flow must be polled well within the timeout, however many flows a
//! worker holds. A fixed number of polls per worker and tick does not do that:
//! at 256 a tick, a worker holding 15,360 flows (7,680 calls on two workers) is
//! polled through once a minute, and calls with media would time out at the
//! default 60 s. The poll count of a worker is therefore sized from its flows so
//! that all of them are polled within a *cycle* of rounds (half the timeout),
//! between a floor (fresh counters for `query` and the metrics with few flows)
//! and a ceiling (room in the command and event rings for signalling).
//!
//! Each worker's flows are walked with a cursor of its own, so one worker's
//! flows never crowd out another's: with the flow list unchanged, every flow
//! of worker `w` is polled once every `ceil(flows(w) / polls(w))` rounds.

use ferrelay_engine::FlowId;

/// Polls one shard's flows; keep one per shard across rounds.
#[derive(Debug, Default)]
pub struct Poller {
    /// Per worker: position, in the worker's own flows, of the next to poll.
    cursor: Vec<usize>,
    /// Per worker, this round: its flows, the polls granted, and the walk's
    /// position in its flows.
    count: Vec<usize>,
    budget: Vec<usize>,
    seen: Vec<usize>,
    /// The flows chosen this round; kept so that rounds do not allocate.
    batch: Vec<(usize, FlowId)>,
}

/// How many polls a worker gets in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Every flow within this many rounds.
    pub cycle_rounds: usize,
    /// At least this many a round (or all the worker's flows, if fewer).
    pub min: usize,
    /// At most this many a round.
    pub max: usize,
}

impl Budget {
    /// Polls for a worker holding `flows` flows.
    fn polls(&self, flows: usize) -> usize {
        flows
            .div_ceil(self.cycle_rounds.max(1))
            .clamp(self.min, self.max.max(self.min))
            .min(flows)
    }
}

impl Poller {
    /// The flows to poll this round out of `flows` (every installed flow of the
    /// shard as `(worker, id)`, in an order that changes little between rounds),
    /// for `workers` workers. Walks `flows` twice and allocates nothing once
    /// its buffers have grown.
    pub fn plan<I>(&mut self, flows: I, workers: usize, budget: Budget) -> &[(usize, FlowId)]
    where
        I: Iterator<Item = (usize, FlowId)> + Clone,
    {
        for v in [&mut self.count, &mut self.seen] {
            v.clear();
            v.resize(workers, 0);
        }
        self.cursor.resize(workers, 0);
        for (w, _) in flows.clone() {
            if let Some(n) = self.count.get_mut(w) {
                *n += 1;
            }
        }
        self.budget.clear();
        self.budget
            .extend(self.count.iter().map(|&n| budget.polls(n)));
        // A worker's flows may have shrunk below its cursor since the last round.
        for (c, &n) in self.cursor.iter_mut().zip(&self.count) {
            *c = if n == 0 { 0 } else { *c % n };
        }
        self.batch.clear();
        for (w, id) in flows {
            let Some(i) = self.seen.get_mut(w) else {
                continue; // no such worker
            };
            // Worker w's flows from its cursor on, wrapping: [cursor, cursor + budget).
            let n = self.count[w];
            if (*i + n - self.cursor[w]) % n < self.budget[w] {
                self.batch.push((w, id));
            }
            *i += 1;
        }
        for ((c, &n), &b) in self.cursor.iter_mut().zip(&self.count).zip(&self.budget) {
            if n > 0 {
                *c = (*c + b) % n;
            }
        }
        &self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flows(per_worker: &[usize]) -> Vec<(usize, FlowId)> {
        // Interleaved the way calls spread over workers, with uneven counts.
        let mut v = Vec::new();
        let most = per_worker.iter().copied().max().unwrap_or(0);
        for i in 0..most {
            for (w, &n) in per_worker.iter().enumerate() {
                if i < n {
                    v.push((w, FlowId::new(i as u32, 1)));
                }
            }
        }
        v
    }

    const BUDGET: Budget = Budget {
        cycle_rounds: 30,
        min: 256,
        max: 2048,
    };

    /// Ticks until every flow was polled at least once, and the most polls one
    /// worker got in a tick.
    fn cover(p: &mut Poller, fl: &[(usize, FlowId)], workers: usize, b: Budget) -> (usize, usize) {
        let mut polled = std::collections::HashSet::new();
        let mut most = 0;
        for tick in 1..=1000 {
            let batch = p.plan(fl.iter().copied(), workers, b);
            for w in 0..workers {
                most = most.max(batch.iter().filter(|(x, _)| *x == w).count());
            }
            polled.extend(batch.iter().copied());
            if polled.len() == fl.len() {
                return (tick, most);
            }
        }
        panic!("not covered in 1000 ticks");
    }

    #[test]
    fn every_flow_is_polled_within_the_cycle_however_many_a_worker_holds() {
        // 20,000 flows on one worker, 5,000 on the other: 256 polls a tick would
        // take 79 ticks to reach them all. Sized polls take 30 at most.
        let fl = flows(&[20_000, 5_000]);
        let mut p = Poller::default();
        let (ticks, most) = cover(&mut p, &fl, 2, BUDGET);
        assert!(ticks <= 30, "{ticks} ticks");
        assert_eq!(most, 20_000usize.div_ceil(30));
        // The second worker gets its floor, not the first worker's count.
        let batch = p.plan(fl.iter().copied(), 2, BUDGET);
        assert_eq!(batch.iter().filter(|(w, _)| *w == 1).count(), 256);
    }

    #[test]
    fn few_flows_are_all_polled_every_tick() {
        let fl = flows(&[100, 3]);
        let mut p = Poller::default();
        for _ in 0..3 {
            assert_eq!(p.plan(fl.iter().copied(), 2, BUDGET), &fl[..]);
        }
    }

    #[test]
    fn the_ceiling_holds_with_more_flows_than_a_cycle_can_cover() {
        let fl = flows(&[100_000]);
        let mut p = Poller::default();
        let (ticks, most) = cover(&mut p, &fl, 1, BUDGET);
        assert_eq!(most, 2048);
        assert_eq!(ticks, 100_000usize.div_ceil(2048));
    }

    #[test]
    fn one_workers_flows_first_do_not_starve_the_others() {
        // Worker 0's flows all come before worker 1's in the walk.
        let mut fl: Vec<_> = (0..3000).map(|i| (0, FlowId::new(i, 1))).collect();
        fl.extend((0..3000).map(|i| (1, FlowId::new(i, 1))));
        let mut p = Poller::default();
        let b = Budget {
            cycle_rounds: 10,
            min: 1,
            max: 10_000,
        };
        let (ticks, most) = cover(&mut p, &fl, 2, b);
        assert_eq!((ticks, most), (10, 300));
    }

    #[test]
    fn flows_going_away_keep_the_cursor_in_range() {
        let mut p = Poller::default();
        let many = flows(&[1000]);
        let b = Budget {
            cycle_rounds: 4,
            min: 1,
            max: 1000,
        };
        for _ in 0..3 {
            assert_eq!(p.plan(many.iter().copied(), 1, b).len(), 250);
        }
        // The cursor sat at 750; now there are 10 flows, polled 3 a tick.
        let few = flows(&[10]);
        let (ticks, _) = cover(&mut p, &few, 1, b);
        assert_eq!(ticks, 4);
        // Flows of a worker the shard does not know are skipped, not a panic.
        assert!(
            p.plan([(7, FlowId::new(0, 1))].into_iter(), 1, b)
                .is_empty()
        );
        assert!(p.plan(std::iter::empty(), 2, b).is_empty());
    }
}
