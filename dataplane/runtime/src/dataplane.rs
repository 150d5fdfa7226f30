//! Starting and stopping the pinned worker threads.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::command::{Command, Event};
use crate::config::{Backend, BackendKind, DataplaneConfig};
use crate::error::DataplaneError;
use crate::handle::{WorkerHandle, WorkerInfo};
use crate::io::mmsg::Mmsg;
use crate::io::uring::{self, Uring};
use crate::ring::{self, Rx, SpentTx, Tx};
use crate::worker::Core;

/// How long `start` waits for a worker to set up its I/O.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The running data plane: one handle and one thread per worker.
#[derive(Debug)]
pub struct Dataplane {
    handles: Vec<WorkerHandle>,
    threads: Vec<JoinHandle<()>>,
}

impl Dataplane {
    /// Spawns and pins the workers and waits until each has its I/O backend running.
    pub fn start(cfg: DataplaneConfig) -> Result<Dataplane, DataplaneError> {
        cfg.validate()?;
        let cores: Vec<usize> = match &cfg.cores {
            Some(c) => c.clone(),
            None => core_affinity::get_core_ids()
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.id)
                .collect(),
        };
        let mut dp = Dataplane {
            handles: Vec::with_capacity(cfg.workers),
            threads: Vec::with_capacity(cfg.workers),
        };
        for i in 0..cfg.workers {
            let core = if cores.is_empty() {
                None
            } else {
                Some(cores[i % cores.len()])
            };
            dp.spawn(i, &cfg, core)?;
        }
        Ok(dp)
    }

    fn spawn(
        &mut self,
        i: usize,
        cfg: &DataplaneConfig,
        core: Option<usize>,
    ) -> Result<(), DataplaneError> {
        let (cmd_tx, cmd_rx) = ring::channel::<Command>(cfg.command_ring)
            .map_err(|e| DataplaneError::io("command ring eventfd", e))?;
        let (ev_tx, ev_rx) = ring::channel::<Event>(cfg.event_ring)
            .map_err(|e| DataplaneError::io("event ring eventfd", e))?;
        let (spent_tx, spent_rx) = ring::spent_rules(cfg.command_ring);
        let stop = Arc::new(AtomicBool::new(false));
        let (init_tx, init_rx) = mpsc::sync_channel(1);
        let wcfg = cfg.clone();
        let wstop = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ferrelay-w{i}"))
            .spawn(move || {
                let rings = (cmd_rx, ev_tx, spent_tx);
                worker_main(i, wcfg, core, rings, wstop, init_tx)
            })
            .map_err(|e| DataplaneError::io("spawning worker thread", e))?;
        let info = match init_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(info)) => info,
            Ok(Err(reason)) => {
                let _ = thread.join();
                return Err(DataplaneError::WorkerStart { worker: i, reason });
            }
            Err(_) => {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                cmd_tx.wake();
                return Err(DataplaneError::WorkerStart {
                    worker: i,
                    reason: "no start report within 10 s".into(),
                });
            }
        };
        if let Some(reason) = &info.fallback_reason {
            tracing::warn!(worker = i, %reason, "io_uring unavailable, using recvmmsg");
        }
        self.handles.push(WorkerHandle::new(
            i,
            cmd_tx,
            ev_rx,
            spent_rx,
            cfg.max_flows_per_worker,
            info,
            stop,
        ));
        self.threads.push(thread);
        Ok(())
    }

    pub fn workers(&self) -> usize {
        self.handles.len()
    }

    /// The handle of worker `i`; all flows of one call should go to the same worker.
    pub fn worker(&mut self, i: usize) -> Option<&mut WorkerHandle> {
        self.handles.get_mut(i)
    }

    /// Every worker's handle, e.g. to poll all event fds.
    pub fn handles_mut(&mut self) -> &mut [WorkerHandle] {
        &mut self.handles
    }

    /// The backend each worker actually runs, in worker order.
    pub fn backend_in_use(&self) -> Vec<BackendKind> {
        self.handles.iter().map(|h| h.backend()).collect()
    }

    /// Stops every worker and joins its thread. Workers sleep on their command eventfd,
    /// so this returns within one loop turn of each worker.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for h in &mut self.handles {
            h.request_stop();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop_all();
    }
}

type InitReply = mpsc::SyncSender<Result<WorkerInfo, String>>;

fn worker_main(
    i: usize,
    cfg: DataplaneConfig,
    pin: Option<usize>,
    (commands, events, spent): (Rx<Command>, Tx<Event>, SpentTx),
    stop: Arc<AtomicBool>,
    init: InitReply,
) {
    let pinned_core =
        pin.filter(|&c| core_affinity::set_for_current(core_affinity::CoreId { id: c }));
    if let (Some(c), None) = (pin, pinned_core) {
        tracing::warn!(
            worker = i,
            core = c,
            "could not pin worker thread; running unpinned"
        );
    }
    let mut core = Core::new(i, &cfg, commands, events, spent, stop);
    let wake_fd = core.command_fd();
    let max = cfg.max_flows_per_worker;
    let try_uring = || uring::self_test().and_then(|()| Uring::new(cfg.recv_buffers, max, wake_fd));
    let info = |backend, fallback_reason| WorkerInfo {
        backend,
        fallback_reason,
        pinned_core,
    };
    match cfg.backend {
        Backend::IoUring => match try_uring() {
            Ok(mut u) => {
                let _ = init.send(Ok(info(BackendKind::IoUring, None)));
                core.set_backend(BackendKind::IoUring);
                u.run(&mut core);
            }
            Err(reason) => {
                let _ = init.send(Err(reason));
            }
        },
        Backend::Auto | Backend::Mmsg => {
            let fallback = if cfg.backend == Backend::Auto {
                match try_uring() {
                    Ok(mut u) => {
                        let _ = init.send(Ok(info(BackendKind::IoUring, None)));
                        core.set_backend(BackendKind::IoUring);
                        u.run(&mut core);
                        return;
                    }
                    Err(reason) => Some(reason),
                }
            } else {
                None
            };
            match Mmsg::new(max, wake_fd) {
                Ok(mut m) => {
                    let _ = init.send(Ok(info(BackendKind::Mmsg, fallback)));
                    core.set_backend(BackendKind::Mmsg);
                    m.run(&mut core);
                }
                Err(e) => {
                    let _ = init.send(Err(format!("epoll setup: {e}")));
                }
            }
        }
    }
}
