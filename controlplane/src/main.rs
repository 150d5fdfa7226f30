//! `ferrelay`: starts the relay with rtpengine-compatible flags and runs until
//! SIGTERM or SIGINT, then releases every port and worker thread.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ferrelay::config::{Cli, Config, LogFormat};
use ferrelay::http;
use ferrelay::logfmt::TextFormat;
use ferrelay::relay::{self, RelayOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Collects the calling thread's heap and purges, process-wide, every page
/// already given back to mimalloc's arenas, now instead of at some later
/// allocator call after the purge delay (see `ferrelay::memory`). Blocks freed
/// here for another thread's pages are collected by that thread or by mimalloc
/// when those pages come free.
fn return_freed() {
    // SAFETY: `mi_collect` takes no pointers and touches only the allocator's
    // own structures, under its own synchronisation: any thread may call it at
    // any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Shutdown must finish within this, or the process exits anyway.
const SHUTDOWN_LIMIT: Duration = Duration::from_millis(1800);

fn main() -> ExitCode {
    ferrelay::memory::on_release(return_freed);
    let cli = Cli::parse();
    let cfg = match Config::from_cli(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrelay: {e}");
            return ExitCode::from(2);
        }
    };
    // Colour only for a person at a terminal, never into log files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cfg.log_level))
        .with_target(false)
        .with_ansi(ansi);
    match cfg.log_format {
        // The default line, written at a fraction of the default's cost.
        LogFormat::Text => logs.event_format(TextFormat::new(ansi)).init(),
        // One JSON object a line, event fields at the top level for log shippers.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    // Every anchored stream holds four sockets (RTP and RTCP for each party): the
    // usual soft limit of 1024 descriptors would cap the relay near 250 calls.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(nofile = n, "descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the descriptor limit"),
    }
    // The control plane runs on this one thread: its tasks share one controller
    // lock, so more threads would only add wake-ups and lock hand-offs between
    // them (measured: CPU per NG request fell when it ran on one), and the cores
    // stay with the workers.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrelay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async {
        let handle = match relay::start(&cfg, RelayOptions::default()).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let pairs = http::port_pairs_total(&cfg);
        let web = match http::start(cfg.listen_http, &handle, pairs).await {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(addr = %cfg.listen_http, error = %e, "cannot listen for HTTP");
                None
            }
        };
        wait_for_signal().await;
        tracing::info!("signal received, shutting down");
        if let Some(w) = web {
            w.shutdown().await;
        }
        if tokio::time::timeout(SHUTDOWN_LIMIT, handle.shutdown())
            .await
            .is_err()
        {
            tracing::error!("shutdown took too long, exiting anyway");
        }
        ExitCode::SUCCESS
    });
    rt.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; running until killed");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
